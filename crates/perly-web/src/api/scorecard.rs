//! `GET/PUT /api/v1/scorecard`: the workspace's weights, thresholds, risk
//! bands and alert thresholds. A saved scorecard rescores every customer.

use axum::extract::State;
use axum::Json;
use perly_domain::scorecard::Scorecard;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, JsonBody};
use crate::auth::Workspace;
use crate::error::ApiError;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show, update))
}

impl JsonBody for Scorecard {}

/// The workspace's scorecard.
#[utoipa::path(get, path = "/api/v1/scorecard", tag = "scoring", operation_id = "getScorecard", security(("api_key" = [])),
    responses((status = 200, body = Scorecard)))]
pub async fn show(State(state): State<AppState>, ws: Workspace) -> Result<Json<Scorecard>, ApiError> {
    Ok(Json(state.store.scorecard(ws.id).await?))
}

/// Replace the scorecard; every customer is rescored with it.
#[utoipa::path(put, path = "/api/v1/scorecard", tag = "scoring", operation_id = "replaceScorecard", request_body = Scorecard,
    security(("api_key" = [])),
    responses((status = 200, body = Scorecard), (status = 422, description = "Invalid value, with the field", body = crate::error::ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    ws: Workspace,
    ApiJson(card): ApiJson<Scorecard>,
) -> Result<Json<Scorecard>, ApiError> {
    card.validate()?;
    state.store.set_scorecard(ws.id, &card, state.now()).await?;
    state.rescore.notify_one();
    Ok(Json(card))
}
