//! `GET /api/v1/alerts`: the alert feed, newest first, by kind and customer.

use axum::extract::State;
use axum::Json;
use perly_domain::alerts::AlertKind;
use perly_store::{AlertQuery, AlertRecord};
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

/// Most alerts on one page.
pub const MAX_PAGE: usize = 500;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// customer_at_risk, expansion_signal, health_score_drop, upsell_opportunity or billing_retry_failed.
    kind: Option<AlertKind>,
    /// A customer's external id.
    customer_id: Option<String>,
    /// Only alerts at this risk level.
    risk_level: Option<perly_domain::risk::RiskLevel>,
    /// Page size, 1–500 (default 50); outside that range the answer is 422 naming `limit`.
    #[param(minimum = 1, maximum = 500, default = 50)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AlertList {
    pub items: Vec<AlertRecord>,
    pub next_cursor: Option<String>,
}

/// The alert feed, newest first.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", operation_id = "listAlerts", params(ListParams),
    security(("api_key" = [])),
    responses((status = 200, body = AlertList), (status = 400, body = crate::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ws: Workspace,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Json<AlertList>, ApiError> {
    let query = AlertQuery {
        kind: p.kind,
        risk: p.risk_level,
        customer_external_id: p.customer_id,
        limit: page_limit(p.limit, 50, MAX_PAGE)?,
        cursor: p.cursor,
        since: None,
    };
    let page = state.store.list_alerts(ws.id, &query).await?;
    Ok(Json(AlertList {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}
