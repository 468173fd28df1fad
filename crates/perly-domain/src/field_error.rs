//! The one error shape for bad input: a machine code, a sentence, and the path of
//! the field that is wrong (`events[3].customer_id`). The HTTP edge turns it into
//! `{"error": {"code", "message", "field"}}` or a per-row `rejected` result.

use serde::Serialize;

/// A problem with one field of the caller's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Stable machine-readable code, e.g. `unknown_customer`.
    pub code: String,
    /// What is wrong, in plain words.
    pub message: String,
    /// Path of the offending field, e.g. `events[3].occurred_at`.
    pub field: String,
}

impl FieldError {
    pub fn new(code: &str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
            field: field.into(),
        }
    }
}
