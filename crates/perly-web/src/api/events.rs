//! `POST /api/v1/events`: a batch of up to 1,000 events, parsed row by row.
//! Valid rows are stored in one transaction; each row gets its own answer
//! (accepted, duplicate, or rejected with the field that is wrong), so one
//! bad row never costs the others.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use perly_domain::event::parse_event;
use perly_domain::FieldError;
use perly_store::{IngestMode, IngestOutcome};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{check_batch, ApiJson, JsonBody};
use crate::auth::IngestWorkspace;
use crate::error::ApiError;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create))
}

/// One event as sent. `type` decides which of the other fields are required.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct EventRow {
    /// Your event id; sending the same id again is answered `duplicate`.
    id: String,
    /// The customer's `external_id`.
    customer_id: String,
    /// user_active, feature_used, seats_changed, ticket_opened, ticket_closed, usage_measured,
    /// payment_succeeded, payment_failed, billing_retry_failed, nps_response, plan_changed, crm_activity
    r#type: String,
    /// RFC 3339; at most 5 minutes in the future.
    occurred_at: DateTime<Utc>,
    /// user_active (required), feature_used (optional)
    user_id: Option<String>,
    /// feature_used
    feature: Option<String>,
    /// seats_changed
    seats_used: Option<u32>,
    /// seats_changed (optional)
    seats_purchased: Option<u32>,
    /// ticket_opened, ticket_closed
    ticket_id: Option<String>,
    /// ticket_opened: low, normal, high, urgent
    priority: Option<String>,
    /// usage_measured
    metric: Option<String>,
    /// usage_measured
    value: Option<f64>,
    /// usage_measured (optional): the plan limit for `metric`
    limit: Option<f64>,
    /// payment_succeeded, payment_failed, billing_retry_failed; zero or more
    amount: Option<f64>,
    /// payment_failed (optional)
    reason: Option<String>,
    /// billing_retry_failed
    attempt: Option<u32>,
    /// billing_retry_failed (optional)
    next_retry_at: Option<DateTime<Utc>>,
    /// nps_response: 0–10
    score: Option<u8>,
    /// plan_changed
    plan: Option<String>,
    /// plan_changed (optional)
    mrr: Option<f64>,
    /// crm_activity: call, email, meeting, other
    activity_type: Option<String>,
    /// crm_activity (optional)
    subject: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct EventsRequest {
    #[schema(value_type = Vec<EventRow>)]
    pub events: super::Rows,
    /// `true` for history (a backfill, a replay): the events are stored and
    /// scored, and the alerts they raise are recorded in the feed, but
    /// channels get one summary per import instead of a message per alert.
    /// Batches sent with it join the workspace's open events import, which
    /// is summarised once no batch has joined it for 60 seconds and its
    /// customers are rescored. Without it, events that occurred more than
    /// 24 hours before they arrive count as history too, and so does a
    /// customer's first verdict (its first score with a risk level).
    #[serde(default)]
    pub backfill: bool,
}

impl JsonBody for EventsRequest {
    const EXPECTED: &'static str = "a JSON object with an `events` array";
}

/// The answer for one row.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RowStatus {
    Accepted,
    Duplicate,
    Rejected,
}

#[derive(Serialize, ToSchema)]
pub struct EventResult {
    pub index: usize,
    pub id: Option<String>,
    pub status: RowStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<FieldError>,
}

#[derive(Serialize, ToSchema)]
pub struct EventsResponse {
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: usize,
    pub results: Vec<EventResult>,
}

/// Ingest a batch of events.
#[utoipa::path(post, path = "/api/v1/events", tag = "ingest", operation_id = "createEvents", request_body = EventsRequest,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Per-row results", body = EventsResponse),
        (status = 400, description = "Malformed JSON", body = crate::error::ErrorBody),
        (status = 401, description = "Missing, unknown, revoked or expired API key", body = crate::error::ErrorBody),
        (status = 413, description = "More than 1,000 rows or over 5 MB", body = crate::error::ErrorBody),
        (status = 429, description = "The API key, or its workspace with all its keys, is over its ingest rate limit \
            (rows per second, `[ingest]` settings; a body that is not a valid batch costs a full batch); \
            `Retry-After` says how many seconds to wait", body = crate::error::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before sending again"))),
        (status = 422, description = "Body is not `{\"events\": [...]}`, or its rows hold more than 100,000 JSON values", body = crate::error::ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    ws: IngestWorkspace,
    body: Result<ApiJson<EventsRequest>, ApiError>,
) -> Result<Json<EventsResponse>, ApiError> {
    let body = super::charged_rows(&state, &ws, body, |b| b.events.sent)?;
    let now = state.now();
    check_batch("events", body.events.sent)?;
    let mode = if body.backfill {
        IngestMode::Backfill
    } else {
        IngestMode::Live
    };
    let rows = body.events.rows;
    let mut results: Vec<EventResult> = Vec::with_capacity(rows.len());
    let mut valid = Vec::with_capacity(rows.len());
    let mut valid_index = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let id = row.get("id").and_then(|v| v.as_str()).map(str::to_owned);
        match parse_event(i, row, now) {
            Ok(e) => {
                valid.push(e);
                valid_index.push(i);
                results.push(EventResult {
                    index: i,
                    id,
                    status: RowStatus::Accepted,
                    error: None,
                });
            }
            Err(error) => results.push(EventResult {
                index: i,
                id,
                status: RowStatus::Rejected,
                error: Some(error),
            }),
        }
    }
    let outcomes = state.store.ingest_events(ws.id, &valid, mode, now).await?;
    for ((i, outcome), event) in valid_index.iter().zip(outcomes).zip(&valid) {
        let Some(r) = results.get_mut(*i) else { continue };
        match outcome {
            IngestOutcome::Accepted => {}
            IngestOutcome::Duplicate => r.status = RowStatus::Duplicate,
            IngestOutcome::UnknownCustomer => {
                r.status = RowStatus::Rejected;
                r.error = Some(FieldError::new(
                    "unknown_customer",
                    format!("events[{i}].customer_id"),
                    format!(
                        "no customer with external_id `{}`; create it with POST /api/v1/customers first",
                        event.customer_id
                    ),
                ));
            }
        }
    }
    let count = |f: fn(&RowStatus) -> bool| results.iter().filter(|r| f(&r.status)).count();
    let accepted = count(|s| matches!(s, RowStatus::Accepted));
    if accepted > 0 {
        state.rescore.notify_one();
    }
    let duplicates = count(|s| matches!(s, RowStatus::Duplicate));
    let rejected = count(|s| matches!(s, RowStatus::Rejected));
    state.metrics.ingested("event", "accepted", accepted);
    state.metrics.ingested("event", "duplicate", duplicates);
    state.metrics.ingested("event", "rejected", rejected);
    Ok(Json(EventsResponse {
        accepted,
        duplicates,
        rejected,
        results,
    }))
}
