//! `GET /api/v1/imports`: backfills, first Salesforce syncs and scorecard
//! changes, newest first, each with its summary once settled. Their alerts
//! are in the feed (with `import_id`); channels got one summary each.

use axum::extract::State;
use axum::Json;
use perly_store::ImportRecord;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{page_limit, ApiQuery};
use crate::auth::Workspace;
use crate::error::ApiError;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// Most imports on one page.
pub const MAX_PAGE: usize = 100;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// How many, 1–100 (default 20); outside that range the answer is 422 naming `limit`.
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<usize>,
}

#[derive(Serialize, ToSchema)]
pub struct ImportList {
    pub items: Vec<ImportRecord>,
}

/// Imports, newest first.
#[utoipa::path(get, path = "/api/v1/imports", tag = "alerts", operation_id = "listImports", params(ListParams),
    security(("api_key" = [])),
    responses((status = 200, body = ImportList), (status = 400, body = crate::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ws: Workspace,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Json<ImportList>, ApiError> {
    let limit = page_limit(p.limit, 20, MAX_PAGE)?;
    let items = state.store.list_imports(ws.id, limit).await?;
    Ok(Json(ImportList { items }))
}
