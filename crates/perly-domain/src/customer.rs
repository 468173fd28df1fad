//! Customer accounts as the ingest API receives them (`POST /api/v1/customers`),
//! parsed row by row with errors that name the field.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::FieldError;

/// One customer row of an upsert batch. Absent optional fields leave the
/// stored value as it is; `name` is required.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerInput {
    pub external_id: String,
    pub name: String,
    pub plan: Option<String>,
    pub mrr: Option<f64>,
    pub seats_purchased: Option<u32>,
    pub owner_email: Option<String>,
    pub parent_external_id: Option<String>,
}

const MAX_NAME: usize = 300;

/// Whether `s` looks like an email address (`local@domain.tld`, no spaces):
/// the one check for customers' owners, CLI users and the users form.
pub fn is_email(s: &str) -> bool {
    s.split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.') && !s.contains(' '))
}

/// Percent-encodes an external id for a URL path segment, as in the
/// profile link `/customers/{segment}` (pages and Slack/Discord messages).
pub fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn text(
    row: &serde_json::Map<String, Value>,
    prefix: &str,
    key: &str,
    max: usize,
) -> Result<Option<String>, FieldError> {
    let field = format!("{prefix}.{key}");
    match row.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.is_empty() {
                Err(FieldError::new(
                    "invalid_field",
                    field,
                    format!("`{key}` must not be empty"),
                ))
            } else if s.chars().any(char::is_control) {
                Err(FieldError::new(
                    "invalid_field",
                    field,
                    format!("`{key}` must not contain control characters"),
                ))
            } else if s.chars().count() > max {
                Err(FieldError::new(
                    "invalid_field",
                    field,
                    format!("`{key}` is longer than {max} characters"),
                ))
            } else {
                Ok(Some(s.to_owned()))
            }
        }
        Some(_) => Err(FieldError::new(
            "invalid_field",
            field,
            format!("`{key}` must be a string"),
        )),
    }
}

/// Parses row `index` of a customers batch.
pub fn parse_customer(index: usize, value: &Value) -> Result<CustomerInput, FieldError> {
    let prefix = format!("customers[{index}]");
    let Some(row) = value.as_object() else {
        return Err(FieldError::new(
            "invalid_row",
            prefix,
            "each customer must be a JSON object",
        ));
    };
    let external_id = text(row, &prefix, "external_id", crate::event::MAX_ID_LEN)?.ok_or_else(|| {
        FieldError::new(
            "missing_field",
            format!("{prefix}.external_id"),
            "`external_id` is required",
        )
    })?;
    let name = text(row, &prefix, "name", MAX_NAME)?
        .ok_or_else(|| FieldError::new("missing_field", format!("{prefix}.name"), "`name` is required"))?;
    let plan = text(row, &prefix, "plan", 100)?;
    let mrr = match row.get("mrr") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64() {
            Some(n) if n.is_finite() && n >= 0.0 => Some(n),
            Some(_) => {
                return Err(FieldError::new(
                    "negative_amount",
                    format!("{prefix}.mrr"),
                    "`mrr` must be zero or more",
                ))
            }
            None => {
                return Err(FieldError::new(
                    "invalid_field",
                    format!("{prefix}.mrr"),
                    "`mrr` must be a number",
                ))
            }
        },
    };
    let seats_purchased = match row.get("seats_purchased") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| {
            FieldError::new(
                "invalid_field",
                format!("{prefix}.seats_purchased"),
                "`seats_purchased` must be a whole number, zero or more",
            )
        })?),
    };
    let owner_email = text(row, &prefix, "owner_email", 320)?;
    if let Some(email) = &owner_email {
        if !is_email(email) {
            return Err(FieldError::new(
                "invalid_field",
                format!("{prefix}.owner_email"),
                "`owner_email` must be an email address",
            ));
        }
    }
    let parent_external_id = text(row, &prefix, "parent_external_id", crate::event::MAX_ID_LEN)?;
    if parent_external_id.as_deref() == Some(external_id.as_str()) {
        return Err(FieldError::new(
            "invalid_field",
            format!("{prefix}.parent_external_id"),
            "a customer cannot be its own parent",
        ));
    }
    Ok(CustomerInput {
        external_id,
        name,
        plan,
        mrr,
        seats_purchased,
        owner_email,
        parent_external_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_full_row_parses() {
        let c = parse_customer(
            0,
            &json!({"external_id": "acme", "name": "Acme Corp", "plan": "pro", "mrr": 4200.0,
                    "seats_purchased": 50, "owner_email": "ana@example.com", "parent_external_id": null}),
        )
        .expect("valid");
        assert_eq!(c.seats_purchased, Some(50));
        assert_eq!(c.parent_external_id, None);
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse_customer(2, &json!({"external_id": "a", "name": "A", "mrr": -1})).expect_err("bad");
        assert_eq!(e.field, "customers[2].mrr");
        let e = parse_customer(1, &json!({"name": "A"})).expect_err("bad");
        assert_eq!(e.field, "customers[1].external_id");
        let e = parse_customer(0, &json!({"external_id": "a", "name": "A", "owner_email": "nope"})).expect_err("bad");
        assert_eq!(e.field, "customers[0].owner_email");
    }
}
