//! Customers: `POST /api/v1/customers` upserts a batch by `external_id` (per-row
//! results), `GET /api/v1/customers` lists them with filters and cursor pages,
//! `GET /api/v1/customers/{external_id}` shows one with its score explained.

use axum::extract::{Path, State};
use axum::Json;
use chrono::Duration;
use perly_domain::customer::parse_customer;
use perly_domain::risk::RiskLevel;
use perly_domain::FieldError;
use perly_store::{CrmRecord, CustomerDetail, CustomerQuery, CustomerSort, CustomerSummary, UpsertOutcome};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{check_batch, page_limit, ApiJson, ApiQuery, JsonBody};
use crate::auth::{IngestWorkspace, Workspace};
use crate::error::ApiError;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show))
        .routes(routes!(crm))
}

/// Most customers on one page.
pub const MAX_PAGE: usize = 500;

/// One customer as sent. Absent optional fields keep their stored value.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct CustomerRow {
    external_id: String,
    name: String,
    plan: Option<String>,
    mrr: Option<f64>,
    seats_purchased: Option<u32>,
    owner_email: Option<String>,
    parent_external_id: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct CustomersRequest {
    #[schema(value_type = Vec<CustomerRow>)]
    pub customers: super::Rows,
}

impl JsonBody for CustomersRequest {
    const EXPECTED: &'static str = "a JSON object with a `customers` array";
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CustomerRowStatus {
    Created,
    Updated,
    Rejected,
}

#[derive(Serialize, ToSchema)]
pub struct CustomerResult {
    pub index: usize,
    pub external_id: Option<String>,
    pub status: CustomerRowStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<FieldError>,
}

#[derive(Serialize, ToSchema)]
pub struct CustomersResponse {
    pub created: usize,
    pub updated: usize,
    pub rejected: usize,
    pub results: Vec<CustomerResult>,
}

/// Upsert a batch of customers by `external_id`.
#[utoipa::path(post, path = "/api/v1/customers", tag = "ingest", operation_id = "upsertCustomers", request_body = CustomersRequest,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Per-row results", body = CustomersResponse),
        (status = 400, description = "Malformed JSON", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, unknown, revoked or expired API key", body = crate::error::ErrorBody),
        (status = 413, description = "More than 1,000 rows or over 5 MB", body = crate::error::ErrorBody),
        (status = 422, description = "Body is not `{\"customers\": [...]}`, or its rows hold more than 100,000 JSON values", body = crate::error::ErrorBody),
        (status = 429, description = "The API key, or its workspace with all its keys, is over its ingest rate limit \
            (rows per second, `[ingest]` settings; a body that is not a valid batch costs a full batch); \
            `Retry-After` says how many seconds to wait", body = crate::error::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before sending again"))),
    ))]
pub async fn create(
    State(state): State<AppState>,
    ws: IngestWorkspace,
    body: Result<ApiJson<CustomersRequest>, ApiError>,
) -> Result<Json<CustomersResponse>, ApiError> {
    let body = super::charged_rows(&state, &ws, body, |b| b.customers.sent)?;
    check_batch("customers", body.customers.sent)?;
    let rows = body.customers.rows;
    let mut results = Vec::with_capacity(rows.len());
    let mut valid = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let external_id = row.get("external_id").and_then(|v| v.as_str()).map(str::to_owned);
        match parse_customer(i, row) {
            Ok(c) => {
                valid.push((i, c));
                results.push(CustomerResult {
                    index: i,
                    external_id,
                    status: CustomerRowStatus::Created,
                    error: None,
                });
            }
            Err(e) => results.push(CustomerResult {
                index: i,
                external_id,
                status: CustomerRowStatus::Rejected,
                error: Some(e),
            }),
        }
    }
    let rows: Vec<_> = valid.iter().map(|(_, c)| c.clone()).collect();
    let outcomes = state.store.upsert_customers(ws.id, &rows, state.now()).await?;
    for ((i, _), outcome) in valid.iter().zip(outcomes) {
        if let (Some(r), UpsertOutcome::Updated) = (results.get_mut(*i), outcome) {
            r.status = CustomerRowStatus::Updated;
        }
    }
    if !rows.is_empty() {
        state.rescore.notify_one();
    }
    let count = |f: fn(&CustomerRowStatus) -> bool| results.iter().filter(|r| f(&r.status)).count();
    let created = count(|s| matches!(s, CustomerRowStatus::Created));
    let updated = count(|s| matches!(s, CustomerRowStatus::Updated));
    let rejected = count(|s| matches!(s, CustomerRowStatus::Rejected));
    state.metrics.ingested("customer", "created", created);
    state.metrics.ingested("customer", "updated", updated);
    state.metrics.ingested("customer", "rejected", rejected);
    Ok(Json(CustomersResponse {
        created,
        updated,
        rejected,
        results,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only customers at this risk level.
    risk_level: Option<RiskLevel>,
    /// Only customers of this owner (exact email).
    owner_email: Option<String>,
    /// Only customers on this plan.
    plan: Option<String>,
    /// Name contains this (case-insensitive).
    q: Option<String>,
    /// `score` (lowest first, the default), `-score`, `name`, `-name`, `delta` (largest drop first), `-delta`, `mrr`, `-mrr`.
    #[param(value_type = Option<String>)]
    sort: Option<CustomerSort>,
    /// Page size, 1–500 (default 50); outside that range the answer is 422 naming `limit`.
    #[param(minimum = 1, maximum = 500, default = 50)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CustomerList {
    pub items: Vec<CustomerSummary>,
    pub next_cursor: Option<String>,
}

/// List customers.
#[utoipa::path(get, path = "/api/v1/customers", tag = "customers", operation_id = "listCustomers", params(ListParams),
    security(("api_key" = [])),
    responses((status = 200, body = CustomerList), (status = 400, body = crate::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ws: Workspace,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Json<CustomerList>, ApiError> {
    let query = CustomerQuery {
        risk: p.risk_level,
        owner: p.owner_email,
        plan: p.plan,
        search: p.q,
        sort: p.sort.unwrap_or_default(),
        limit: page_limit(p.limit, 50, MAX_PAGE)?,
        cursor: p.cursor,
    };
    let page = state.store.list_customers(ws.id, &query).await?;
    Ok(Json(CustomerList {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// One customer: score, risk level, delta, signals, suggested action, coverage and 90 days of history.
#[utoipa::path(get, path = "/api/v1/customers/{external_id}", tag = "customers", operation_id = "getCustomer",
    params(("external_id" = String, Path, description = "The customer's external id", example = "acme")),
    security(("api_key" = [])),
    responses((status = 200, body = CustomerDetail), (status = 404, body = crate::error::ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    ws: Workspace,
    Path(external_id): Path<String>,
) -> Result<Json<CustomerDetail>, ApiError> {
    let since = state.now() - Duration::days(90);
    state
        .store
        .get_customer(ws.id, &external_id, since)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("customer"))
}

/// What Salesforce says about a customer, as last pulled.
#[derive(Serialize, ToSchema)]
pub struct CustomerCrm {
    /// The Account's pulled fields (standard and picked custom ones).
    pub account: Option<CrmRecord>,
    pub contacts: Vec<CrmRecord>,
    /// AccountContactRole and OpportunityContactRole rows.
    pub contact_roles: Vec<CrmRecord>,
    pub opportunities: Vec<CrmRecord>,
}

/// The customer's Salesforce Account, contacts, contact roles and
/// opportunities (empty lists for a customer not from Salesforce).
#[utoipa::path(get, path = "/api/v1/customers/{external_id}/crm", tag = "customers", operation_id = "getCustomerCrm",
    security(("api_key" = [])),
    params(("external_id" = String, Path, description = "The customer's external id", example = "acme")),
    responses((status = 200, body = CustomerCrm), (status = 404, body = crate::error::ErrorBody)))]
pub async fn crm(
    State(state): State<AppState>,
    ws: Workspace,
    Path(external_id): Path<String>,
) -> Result<Json<CustomerCrm>, ApiError> {
    Ok(Json(
        crm_of(&state, ws.id, &external_id)
            .await?
            .ok_or_else(|| ApiError::not_found("customer"))?,
    ))
}

/// A live customer's CRM records, sorted into their kinds; `None` when
/// there is no such customer.
pub async fn crm_of(
    state: &AppState,
    ws: perly_domain::ids::WorkspaceId,
    external_id: &str,
) -> Result<Option<CustomerCrm>, perly_store::Error> {
    if state.store.get_customer(ws, external_id, state.now()).await?.is_none() {
        return Ok(None);
    }
    let mut out = CustomerCrm {
        account: None,
        contacts: Vec::new(),
        contact_roles: Vec::new(),
        opportunities: Vec::new(),
    };
    for r in state.store.crm_records_for(ws, external_id).await? {
        if r.deleted {
            continue;
        }
        match r.object.as_str() {
            "Account" => out.account = Some(r),
            "Contact" => out.contacts.push(r),
            "AccountContactRole" | "OpportunityContactRole" => out.contact_roles.push(r),
            "Opportunity" => out.opportunities.push(r),
            _ => {}
        }
    }
    Ok(Some(out))
}
