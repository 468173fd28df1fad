//! API-key authentication: `Authorization: Bearer <key>` becomes the
//! workspace context that scopes every query of the request. A missing,
//! malformed, unknown, revoked or expired key is a 401 that says which.
//!
//! Keys have a scope. Handlers take [`Workspace`], which needs scope
//! `full`, unless they are one of the two ingest endpoints (`POST
//! /api/v1/customers`, `POST /api/v1/events`), which take
//! [`IngestWorkspace`] and also accept scope `ingest`. So a new endpoint is
//! closed to ingest keys unless it says otherwise; an ingest key elsewhere
//! gets a 403 `insufficient_scope` that names its scope.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::StatusCode;
use perly_domain::ids::{ApiKeyId, WorkspaceId};
use perly_store::model::ApiScope;
use perly_store::KeyAuth;

use crate::error::ApiError;
use crate::AppState;

/// The workspace a request acts for, with a key of scope `full`.
#[derive(Debug, Clone, Copy)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub key: ApiKeyId,
}

/// The workspace an ingest request acts for: a key of scope `ingest` or `full`.
#[derive(Debug, Clone, Copy)]
pub struct IngestWorkspace {
    pub id: WorkspaceId,
    pub key: ApiKeyId,
}

async fn authenticate(parts: &Parts, state: &AppState) -> Result<KeyAuth, ApiError> {
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
    state
        .store
        .authenticate_api_key(key, state.now())
        .await?
        .ok_or_else(|| ApiError::unauthorized("unknown, revoked or expired API key"))
}

impl FromRequestParts<AppState> for Workspace {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let auth = authenticate(parts, state).await?;
        match auth.scope {
            ApiScope::Full => Ok(Self {
                id: auth.workspace,
                key: auth.key,
            }),
            ApiScope::Ingest => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "this API key has scope `ingest`, which allows only POST /api/v1/customers and \
                 POST /api/v1/events; this endpoint needs a key of scope `full`",
            )),
        }
    }
}

impl FromRequestParts<AppState> for IngestWorkspace {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let auth = authenticate(parts, state).await?;
        match auth.scope {
            ApiScope::Full | ApiScope::Ingest => Ok(Self {
                id: auth.workspace,
                key: auth.key,
            }),
        }
    }
}
