//! The one error type of the HTTP edge and the one JSON shape of errors:
//! `{"error": {"code": "…", "message": "…", "field": "…"}}`. 5xx bodies say
//! nothing internal; the cause is logged once here.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use perly_domain::FieldError;
use serde::Serialize;

/// Seconds a client is told to wait (`Retry-After`) while the database
/// cannot be reached.
pub const DATABASE_RETRY_AFTER: u64 = 5;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub field: Option<String>,
    /// Seconds to wait, sent as `Retry-After` (429 and 503 answers).
    pub retry_after: Option<u64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    pub fn too_large(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, code, message)
    }

    /// 429 `rate_limited`, with `Retry-After: {seconds}`.
    pub fn too_many_requests(seconds: u64, message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(seconds),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
        }
    }

    /// 503 `database_unavailable`, with `Retry-After`: the database cannot
    /// be reached (an outage, a restart); the client should try again.
    pub fn database_unavailable() -> Self {
        Self {
            retry_after: Some(DATABASE_RETRY_AFTER),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "the database cannot be reached; try again shortly",
            )
        }
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "something went wrong on our side",
        )
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: e.code,
            message: e.message,
            field: Some(e.field),
            retry_after: None,
        }
    }
}

impl From<perly_store::Error> for ApiError {
    fn from(e: perly_store::Error) -> Self {
        use perly_store::Error as E;
        match e {
            E::NotFound => Self::not_found("resource"),
            E::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            E::Invalid(m) => Self::bad_request("invalid", m),
            E::Unreachable(ref source) => {
                tracing::warn!(error = %source, "database unreachable; answering 503");
                Self::database_unavailable()
            }
            E::Unavailable(ref source) => {
                tracing::error!(error = %source, "database unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the database is unavailable, try again",
                )
            }
            other => {
                tracing::error!(error = %other, "store error");
                Self::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                field: self.field,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unreachable() -> perly_store::Error {
        perly_store::Error::from(sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )))
    }

    #[test]
    fn an_unreachable_database_is_503_with_retry_after_on_the_api_and_the_pages() {
        let api = ApiError::from(unreachable()).into_response();
        assert_eq!(api.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            api.headers()[header::RETRY_AFTER],
            DATABASE_RETRY_AFTER.to_string().as_str()
        );
        let page = crate::ui::UiError::from(unreachable()).into_response();
        assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            page.headers()[header::RETRY_AFTER],
            DATABASE_RETRY_AFTER.to_string().as_str()
        );
        // A query that fails is not an outage: no Retry-After.
        let failed = ApiError::from(perly_store::Error::from(sqlx::Error::ColumnNotFound("x".into())));
        assert_eq!(failed.retry_after, None);
        assert_eq!(ApiError::from(unreachable()).code, "database_unavailable");
    }
}
