//! The JSON API under `/api/v1`: one module per resource, each with its own
//! `router()`, plus the body and query extractors that keep malformed input
//! in the one error shape, and the OpenAPI document generated from the code.
//!
//! Every `/api/v1` route is registered through [`documented`]: the
//! `routes!` of each module take a handler's path and methods from its
//! `#[utoipa::path]`, which is also its operation in the OpenAPI document,
//! so a route cannot be served without being documented, nor documented
//! without being served.

pub mod alerts;
pub mod channels;
pub mod customers;
pub mod events;
pub mod imports;
pub mod openapi;
pub mod salesforce;
pub mod salesforce_rules;
pub mod scorecard;

use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use utoipa_axum::router::OpenApiRouter;

use crate::error::ApiError;
use crate::AppState;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 5 * 1024 * 1024;
/// Most rows in one batch.
pub const MAX_BATCH: usize = 1_000;

/// Every `/api/v1` route with its operation in the OpenAPI document.
pub fn documented() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(customers::router())
        .merge(events::router())
        .merge(alerts::router())
        .merge(imports::router())
        .merge(channels::router())
        .merge(scorecard::router())
        .merge(salesforce::router())
        .merge(salesforce_rules::router())
        .merge(openapi::router())
}

pub fn router() -> Router<AppState> {
    let (api, _) = documented().split_for_parts();
    api.route("/healthz", get(crate::health::healthz))
        .route("/readyz", get(crate::health::readyz))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// What a JSON request body must be, for the answer to a body that is not
/// a JSON object at all (a top-level array, string, number…).
pub trait JsonBody {
    /// e.g. "a JSON object with an `events` array".
    const EXPECTED: &'static str = "a JSON object";
}

/// The kind of JSON value a body holds at its top level, from its first
/// byte past whitespace (the body is known to be valid JSON).
fn top_level_kind(bytes: &[u8]) -> &'static str {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// A JSON body whose problems come back as `ApiError`s: 413 over the size
/// limit, 400 for malformed JSON, 422 naming the field for a wrong shape.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned + JsonBody> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e: BytesRejection| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(
                    "body_too_large",
                    format!("request body is larger than {MAX_BODY_BYTES} bytes"),
                )
            } else {
                ApiError::bad_request("unreadable_body", e.body_text())
            }
        })?;
        let malformed = |inner: serde_json::Error| {
            ApiError::bad_request("malformed_json", format!("request body is not valid JSON: {inner}"))
        };
        // Every body is an object. Anything else is refused as a whole,
        // saying what was expected: serde would read a top-level array as
        // the struct's fields in order and name its first element as wrong.
        let kind = top_level_kind(&bytes);
        if kind != "an object" {
            serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).map_err(malformed)?;
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!("expected {}, got {kind}", T::EXPECTED),
            )
            .with_field("body"));
        }
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de).map(ApiJson).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                malformed(inner)
            } else {
                let field = if path == "." { "body".to_owned() } else { path };
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", inner.to_string()).with_field(field)
            }
        })
    }
}

/// A list endpoint's page size: `default` when absent, else it must be
/// within 1..=`max` (422 `invalid_field` naming `limit` and the range).
pub fn page_limit(limit: Option<usize>, default: usize, max: usize) -> Result<usize, ApiError> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("`limit` must be between 1 and {max}; got {n}"),
        )
        .with_field("limit")),
    }
}

/// Query parameters whose problems come back as a 400 `ApiError`.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned> FromRequestParts<AppState> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de).map(ApiQuery).map_err(|e| {
            let field = e.path().to_string();
            ApiError::bad_request("invalid_query", e.into_inner().to_string()).with_field(field)
        })
    }
}

/// JSON values (numbers, strings, keys, arrays, objects…) the kept rows of
/// one body may hold together: a hundred a row on average, so rows of any
/// honest shape fit, while a body of tiny values (`[[0,0,0,…]]`) cannot
/// blow up into millions of parsed values.
pub const MAX_VALUES: usize = 100 * MAX_BATCH;

/// The rows of a batch as sent: the first [`MAX_BATCH`] (and one more, to
/// tell "too many") are kept, the rest only counted and skipped without
/// being built; the kept rows hold at most [`MAX_VALUES`] JSON values. So an
/// oversized body costs parsing but no memory.
#[derive(Debug, Default)]
pub struct Rows {
    pub rows: Vec<serde_json::Value>,
    /// How many rows the body held.
    pub sent: usize,
}

impl<'de> serde::Deserialize<'de> for Rows {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Rows;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of rows")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Rows, A::Error> {
                let budget = std::cell::Cell::new(MAX_VALUES);
                let mut out = Rows::default();
                loop {
                    let more = if out.rows.len() <= MAX_BATCH {
                        seq.next_element_seed(bounded::Seed(&budget))?.map(|v| out.rows.push(v))
                    } else {
                        seq.next_element::<serde::de::IgnoredAny>()?.map(|_| ())
                    };
                    if more.is_none() {
                        return Ok(out);
                    }
                    out.sent += 1;
                }
            }
        }

        d.deserialize_seq(Visitor)
    }
}

/// A `serde_json::Value` built against a budget of values.
mod bounded {
    use std::cell::Cell;
    use std::fmt;

    use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Value};

    use super::MAX_VALUES;

    pub struct Seed<'a>(pub &'a Cell<usize>);

    impl<'de> DeserializeSeed<'de> for Seed<'_> {
        type Value = Value;

        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(Build(self.0))
        }
    }

    struct Build<'a>(&'a Cell<usize>);

    impl Build<'_> {
        fn spend<E: de::Error>(&self) -> Result<(), E> {
            match self.0.get().checked_sub(1) {
                Some(left) => {
                    self.0.set(left);
                    Ok(())
                }
                None => Err(E::custom(format!(
                    "the rows hold more than {MAX_VALUES} JSON values; send fewer or smaller rows"
                ))),
            }
        }
    }

    impl<'de> Visitor<'de> for Build<'_> {
        type Value = Value;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
            self.spend()?;
            Ok(Value::Bool(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
            self.spend()?;
            Ok(Value::from(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
            self.spend()?;
            Ok(Value::from(v))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
            self.spend()?;
            Ok(Value::from(v))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
            self.spend()?;
            Ok(Value::String(v.to_owned()))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
            self.spend()?;
            Ok(Value::String(v))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
            self.spend()?;
            Ok(Value::Null)
        }
        fn visit_none<E: de::Error>(self) -> Result<Value, E> {
            self.visit_unit()
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            self.spend()?;
            let mut out = Vec::new();
            while let Some(v) = seq.next_element_seed(Seed(self.0))? {
                out.push(v);
            }
            Ok(Value::Array(out))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            self.spend()?;
            let mut out = Map::new();
            while let Some(key) = map.next_key::<String>()? {
                self.spend()?;
                let value = map.next_value_seed(Seed(self.0))?;
                out.insert(key, value);
            }
            Ok(Value::Object(out))
        }
    }
}

/// The rows an ingest body holds, charged to the key's and the workspace's
/// rate limit before anything else is checked: an oversized body costs its
/// rows, and one that is not even a valid batch costs a full batch, so
/// neither is free to repeat.
pub fn charged_rows<T>(
    state: &AppState,
    ws: &crate::auth::IngestWorkspace,
    body: Result<ApiJson<T>, ApiError>,
    sent: impl FnOnce(&T) -> usize,
) -> Result<T, ApiError> {
    let now = state.now();
    match body {
        Ok(ApiJson(body)) => {
            state.ingest_limit.take(ws.id, ws.key, sent(&body), now)?;
            Ok(body)
        }
        Err(refused) => {
            state.ingest_limit.take(ws.id, ws.key, MAX_BATCH, now)?;
            Err(refused)
        }
    }
}

/// Checks a batch's size: 413 naming the field when over [`MAX_BATCH`].
pub fn check_batch(field: &str, len: usize) -> Result<(), ApiError> {
    if len > MAX_BATCH {
        return Err(ApiError::too_large(
            "batch_too_large",
            format!("`{field}` has {len} rows; at most {MAX_BATCH} are accepted per request"),
        )
        .with_field(field));
    }
    if len == 0 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_batch",
            format!("`{field}` is empty"),
        )
        .with_field(field));
    }
    Ok(())
}

#[cfg(test)]
mod rows_tests {
    use super::*;

    #[test]
    fn rows_past_the_batch_limit_are_counted_but_not_kept() {
        let body = format!("[{}]", vec!["{\"id\":\"x\"}"; 5_000].join(","));
        let rows: Rows = serde_json::from_str(&body).expect("rows");
        assert_eq!(rows.sent, 5_000);
        assert_eq!(rows.rows.len(), MAX_BATCH + 1);
        let few: Rows = serde_json::from_str("[1, 2, 3]").expect("rows");
        assert_eq!((few.sent, few.rows.len()), (3, 3));
        assert!(serde_json::from_str::<Rows>("{\"id\": 1}").is_err());
    }

    #[test]
    fn rows_are_built_as_json_within_a_budget_of_values() {
        let rows: Rows =
            serde_json::from_str(r#"[{"id": "e1", "n": [1, 2.5, true, null], "m": {"k": "v"}}]"#).expect("rows");
        assert_eq!(
            rows.rows[0],
            serde_json::json!({"id": "e1", "n": [1, 2.5, true, null], "m": {"k": "v"}})
        );
        // One row of tiny values past the budget is refused, not built.
        let flood = format!("[[{}]]", vec!["0"; MAX_VALUES + 1].join(","));
        let err = serde_json::from_str::<Rows>(&flood).expect_err("over the budget");
        assert!(err.to_string().contains("JSON values"), "{err}");
        // So are many rows that share it.
        let row = format!("[{}]", vec!["0"; 200].join(","));
        let many = format!("[{}]", vec![row.as_str(); MAX_BATCH].join(","));
        assert!(serde_json::from_str::<Rows>(&many).is_err());
    }
}
