//! API-key authentication: `Authorization: Bearer <key>` becomes the
//! [`Workspace`] context that scopes every query of the request. A missing,
//! malformed, unknown or revoked key is a 401 that says which.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use perly_domain::ids::{ApiKeyId, WorkspaceId};

use crate::error::ApiError;
use crate::AppState;

/// The workspace a request acts for.
#[derive(Debug, Clone, Copy)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub key: ApiKeyId,
}

impl FromRequestParts<AppState> for Workspace {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer <api key>` header"))?;
        let key = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <api key>`"))?;
        match state.store.authenticate_api_key(key).await? {
            Some((id, key)) => Ok(Self { id, key }),
            None => Err(ApiError::unauthorized("unknown or revoked API key")),
        }
    }
}
