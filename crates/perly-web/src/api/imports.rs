//! `GET /api/v1/imports`: backfills, first Salesforce syncs and scorecard
//! changes, newest first, each with its summary once settled. Their alerts
//! are in the feed (with `import_id`); channels got one summary each.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use perly_store::ImportRecord;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ApiQuery;
use crate::auth::Workspace;
use crate::error::ApiError;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/imports", get(list))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// How many, 1–100 (default 20).
    limit: Option<usize>,
}

#[derive(Serialize, ToSchema)]
pub struct ImportList {
    pub items: Vec<ImportRecord>,
}

/// Imports, newest first.
#[utoipa::path(get, path = "/api/v1/imports", tag = "alerts", params(ListParams),
    security(("api_key" = [])),
    responses((status = 200, body = ImportList), (status = 400, body = crate::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ws: Workspace,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Json<ImportList>, ApiError> {
    let limit = p.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "limit must be between 1 and 100",
        )
        .with_field("limit"));
    }
    let items = state.store.list_imports(ws.id, limit).await?;
    Ok(Json(ImportList { items }))
}
