//! Salesforce automation under `/api/v1/salesforce`: the rules (when an
//! alert of chosen kinds, a risk level at or above a threshold, or a score
//! drop of at least N occurs, create a Task and/or a Chatter post), and the
//! actions they queued with how each went.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use perly_domain::ids::RuleId;
use perly_domain::salesforce::AutomationRule;
use perly_store::{SalesforceAction, SalesforceRule};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, JsonBody};
use crate::auth::Workspace;
use crate::error::ApiError;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, update, delete))
        .routes(routes!(actions))
}

impl JsonBody for AutomationRule {}

#[derive(Serialize, ToSchema)]
pub struct RuleList {
    pub items: Vec<SalesforceRule>,
}

#[derive(Serialize, ToSchema)]
pub struct ActionList {
    /// The newest 100, newest first.
    pub items: Vec<SalesforceAction>,
}

fn rule_id(raw: &str) -> Result<RuleId, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found("rule"))
}

/// The workspace's automation rules.
#[utoipa::path(get, path = "/api/v1/salesforce/rules", tag = "salesforce", operation_id = "listSalesforceRules", security(("api_key" = [])),
    responses((status = 200, body = RuleList)))]
pub async fn list(State(state): State<AppState>, ws: Workspace) -> Result<Json<RuleList>, ApiError> {
    Ok(Json(RuleList {
        items: state.store.salesforce_rules(ws.id).await?,
    }))
}

/// Adds a rule. It needs a condition and at least one action.
#[utoipa::path(post, path = "/api/v1/salesforce/rules", tag = "salesforce", operation_id = "createSalesforceRule", request_body = AutomationRule,
    security(("api_key" = [])),
    responses((status = 201, body = SalesforceRule), (status = 422, body = crate::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    ws: Workspace,
    ApiJson(body): ApiJson<AutomationRule>,
) -> Result<(StatusCode, Json<SalesforceRule>), ApiError> {
    body.validate()?;
    let rule = state.store.create_salesforce_rule(ws.id, &body, state.now()).await?;
    Ok((StatusCode::CREATED, Json(rule)))
}

/// One automation rule.
#[utoipa::path(get, path = "/api/v1/salesforce/rules/{id}", tag = "salesforce", operation_id = "getSalesforceRule", security(("api_key" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = SalesforceRule), (status = 404, body = crate::error::ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
) -> Result<Json<SalesforceRule>, ApiError> {
    state
        .store
        .salesforce_rule(ws.id, rule_id(&id)?)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("rule"))
}

/// Replaces a rule.
#[utoipa::path(put, path = "/api/v1/salesforce/rules/{id}", tag = "salesforce", operation_id = "replaceSalesforceRule", request_body = AutomationRule,
    security(("api_key" = [])), params(("id" = String, Path)),
    responses((status = 200, body = SalesforceRule), (status = 404, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AutomationRule>,
) -> Result<Json<SalesforceRule>, ApiError> {
    let id = rule_id(&id)?;
    body.validate()?;
    match state.store.update_salesforce_rule(ws.id, id, &body, state.now()).await {
        Err(perly_store::Error::NotFound) => Err(ApiError::not_found("rule")),
        other => Ok(Json(other?)),
    }
}

/// Removes a rule; Tasks and posts it already queued still go out.
#[utoipa::path(delete, path = "/api/v1/salesforce/rules/{id}", tag = "salesforce", operation_id = "deleteSalesforceRule", security(("api_key" = [])),
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    match state.store.delete_salesforce_rule(ws.id, rule_id(&id)?).await {
        Err(perly_store::Error::NotFound) => Err(ApiError::not_found("rule")),
        other => other.map(|()| StatusCode::NO_CONTENT).map_err(Into::into),
    }
}

/// Tasks and Chatter posts queued by rules, newest first, with their state.
#[utoipa::path(get, path = "/api/v1/salesforce/actions", tag = "salesforce", operation_id = "listSalesforceActions", security(("api_key" = [])),
    responses((status = 200, body = ActionList)))]
pub async fn actions(State(state): State<AppState>, ws: Workspace) -> Result<Json<ActionList>, ApiError> {
    Ok(Json(ActionList {
        items: state.store.salesforce_actions(ws.id, 100).await?,
    }))
}
