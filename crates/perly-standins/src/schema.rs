//! The bundled JSON Schemas (see `specs/README.md` for where each file comes
//! from) compiled once, and the one mechanical rewrite that makes their
//! errors point at the field at fault.
//!
//! The Discord spec writes nullable objects as `oneOf: [{type: null},
//! {$ref: X}]`; a failure inside `X` is then reported only as "oneOf failed"
//! at the parent. [`nullable_one_of_to_if_else`] turns each such pair into
//! `if: {type: null}, else: {$ref: X}`, which accepts exactly the same
//! documents but reports the inner error with its own path (needed to build
//! Discord's `errors` tree).

use jsonschema::Validator;
use serde_json::Value;

/// Compiles a bundled schema; a bundled schema that does not compile is a
/// build defect, caught by this crate's tests.
pub(crate) fn compile(schema: &Value) -> Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .expect("bundled JSON Schema compiles")
}

/// Parses a bundled schema text.
pub(crate) fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("bundled JSON Schema is JSON")
}

/// See the module doc.
pub(crate) fn nullable_one_of_to_if_else(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let nullable_ref = map.get("oneOf").and_then(|one_of| match one_of.as_array() {
                Some(items) if items.len() == 2 && items[0] == serde_json::json!({"type": "null"}) => {
                    Some(items[1].clone())
                }
                _ => None,
            });
            if let Some(inner) = nullable_ref {
                map.remove("oneOf");
                map.insert("if".into(), serde_json::json!({"type": "null"}));
                map.insert("else".into(), inner);
            }
            for v in map.values_mut() {
                nullable_one_of_to_if_else(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(nullable_one_of_to_if_else),
        _ => {}
    }
}

/// A JSON pointer split into unescaped segments (`/embeds/0/title` →
/// `["embeds", "0", "title"]`).
pub(crate) fn pointer_segments(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nullable_one_of_accepts_the_same_and_reports_the_inner_path() {
        let mut schema = json!({
            "type": "object",
            "properties": {"footer": {"oneOf": [{"type": "null"}, {"$ref": "#/$defs/F"}]}},
            "$defs": {"F": {"type": "object", "properties": {"text": {"type": "string", "maxLength": 3}}}}
        });
        nullable_one_of_to_if_else(&mut schema);
        let v = compile(&schema);
        assert!(v.is_valid(&json!({"footer": null})));
        assert!(v.is_valid(&json!({"footer": {"text": "abc"}})));
        let paths: Vec<String> = v
            .iter_errors(&json!({"footer": {"text": "abcd"}}))
            .map(|e| e.instance_path.to_string())
            .collect();
        assert_eq!(paths, vec!["/footer/text"]);
    }
}
