//! Channels under `/api/v1/channels`: list, create (paste a webhook URL;
//! OAuth connects from the settings pages), show, update (rename, rules,
//! pause, reconnect with a new webhook), delete, send a test message, the
//! delivery log, and dry runs of rules over the last 30 days. Webhook URLs
//! are write-only: answers carry only a hint of them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use perly_domain::channels::{ChannelRules, Platform};
use perly_domain::ids::ChannelId;
use perly_store::{Channel, ChannelUpdate, DeliveryAttempt};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{page_limit, ApiJson, ApiQuery, JsonBody};
use crate::auth::Workspace;
use crate::channels::{check_name, check_rules, check_webhook, dry_run, pasted, DryRun};
use crate::error::ApiError;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(dry_run_rules))
        .routes(routes!(show, update, delete))
        .routes(routes!(test))
        .routes(routes!(deliveries))
        .routes(routes!(dry_run_channel))
}

/// Most delivery attempts on one page of the log.
pub const MAX_LOG_PAGE: usize = 1000;

#[derive(Serialize, ToSchema)]
pub struct ChannelList {
    pub items: Vec<Channel>,
}

/// A channel from a pasted webhook URL.
#[derive(Deserialize, ToSchema)]
pub struct CreateChannel {
    pub platform: Platform,
    /// e.g. `#customer-health`.
    pub name: String,
    /// Slack: under `PERLY_SLACK__HOOKS_URL`; Discord: `{PERLY_DISCORD__BASE_URL}/api/webhooks/{id}/{token}`.
    pub webhook_url: String,
    /// Defaults to every alert kind, every level, no quiet hours, and the
    /// default storm guard (at most 10 messages per 10 minutes).
    pub rules: Option<ChannelRules>,
}

impl JsonBody for CreateChannel {}

/// Changes; absent fields stay as they are.
#[derive(Deserialize, ToSchema)]
pub struct UpdateChannel {
    pub name: Option<String>,
    /// The whole rules object; a `storm_guard` left out is the default.
    pub rules: Option<ChannelRules>,
    /// `false` pauses the channel (it receives nothing), `true` resumes it.
    pub enabled: Option<bool>,
    /// A new webhook (reconnect): clears the broken mark, held alerts go out.
    pub webhook_url: Option<String>,
}

impl JsonBody for UpdateChannel {}

fn channel_id(raw: &str) -> Result<ChannelId, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found("channel"))
}

async fn load(state: &AppState, ws: &Workspace, id: &str) -> Result<Channel, ApiError> {
    state
        .store
        .get_channel(ws.id, channel_id(id)?)
        .await?
        .ok_or_else(|| ApiError::not_found("channel"))
}

/// Every channel of the workspace, with status (active, paused, broken) and pending count.
#[utoipa::path(get, path = "/api/v1/channels", tag = "channels", operation_id = "listChannels", security(("api_key" = [])),
    responses((status = 200, body = ChannelList)))]
pub async fn list(State(state): State<AppState>, ws: Workspace) -> Result<Json<ChannelList>, ApiError> {
    Ok(Json(ChannelList {
        items: state.store.list_channels(ws.id).await?,
    }))
}

/// Adds a channel from a webhook URL.
#[utoipa::path(post, path = "/api/v1/channels", tag = "channels", operation_id = "createChannel", request_body = CreateChannel,
    security(("api_key" = [])),
    responses((status = 201, body = Channel), (status = 422, body = crate::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    ws: Workspace,
    ApiJson(body): ApiJson<CreateChannel>,
) -> Result<(StatusCode, Json<Channel>), ApiError> {
    let rules = body.rules.unwrap_or_else(ChannelRules::everything);
    let new = pasted(&state, body.platform, &body.name, &body.webhook_url, rules)?;
    let channel = state.store.create_channel(ws.id, &new, state.now()).await?;
    Ok((StatusCode::CREATED, Json(channel)))
}

/// One channel: platform, name, status, rules, webhook hint and pending count.
#[utoipa::path(get, path = "/api/v1/channels/{id}", tag = "channels", operation_id = "getChannel", security(("api_key" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Channel), (status = 404, body = crate::error::ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
) -> Result<Json<Channel>, ApiError> {
    Ok(Json(load(&state, &ws, &id).await?))
}

/// Renames, changes rules, pauses/resumes, or reconnects with a new webhook.
#[utoipa::path(patch, path = "/api/v1/channels/{id}", tag = "channels", operation_id = "updateChannel", request_body = UpdateChannel,
    security(("api_key" = [])), params(("id" = String, Path)),
    responses((status = 200, body = Channel), (status = 404, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateChannel>,
) -> Result<Json<Channel>, ApiError> {
    let current = load(&state, &ws, &id).await?;
    let update = ChannelUpdate {
        name: body.name.as_deref().map(|n| check_name(n, "name")).transpose()?,
        rules: match body.rules {
            Some(r) => {
                check_rules(&r, "rules.")?;
                Some(r)
            }
            None => None,
        },
        enabled: body.enabled,
        webhook_url: body
            .webhook_url
            .as_deref()
            .map(|u| check_webhook(&state, current.platform, u, "webhook_url"))
            .transpose()?,
        details: None,
    };
    let channel = state
        .store
        .update_channel(ws.id, current.id, &update, state.now())
        .await?;
    state.deliver.notify_one();
    Ok(Json(channel))
}

/// Removes a channel, its queued alerts and its delivery log.
#[utoipa::path(delete, path = "/api/v1/channels/{id}", tag = "channels", operation_id = "deleteChannel", security(("api_key" = [])),
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.store.delete_channel(ws.id, channel_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct Queued {
    pub queued: bool,
}

/// Queues a test message; it goes out like an alert (see the delivery log).
#[utoipa::path(post, path = "/api/v1/channels/{id}/test", tag = "channels", operation_id = "testChannel", security(("api_key" = [])),
    params(("id" = String, Path)),
    responses((status = 202, body = Queued), (status = 404, body = crate::error::ErrorBody)))]
pub async fn test(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Queued>), ApiError> {
    state
        .store
        .enqueue_test_message(ws.id, channel_id(&id)?, state.now())
        .await?;
    state.deliver.notify_one();
    Ok((StatusCode::ACCEPTED, Json(Queued { queued: true })))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    /// 1–1000, default 100; outside that range the answer is 422 naming `limit`.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<usize>,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryLog {
    pub items: Vec<DeliveryAttempt>,
}

/// Every attempt to post to the channel, newest first: time, status, latency, answer,
/// and whether it was a storm digest standing for every alert then waiting.
#[utoipa::path(get, path = "/api/v1/channels/{id}/deliveries", tag = "channels", operation_id = "listChannelDeliveries", security(("api_key" = [])),
    params(("id" = String, Path), LogParams),
    responses((status = 200, body = DeliveryLog), (status = 404, body = crate::error::ErrorBody)))]
pub async fn deliveries(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<LogParams>,
) -> Result<Json<DeliveryLog>, ApiError> {
    let limit = page_limit(p.limit, 100, MAX_LOG_PAGE)?;
    let channel = load(&state, &ws, &id).await?;
    Ok(Json(DeliveryLog {
        items: state.store.delivery_log(ws.id, channel.id, limit).await?,
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct DryRunRequest {
    pub rules: ChannelRules,
    /// Days to look back, 1–90 (default 30).
    pub days: Option<i64>,
}

impl JsonBody for DryRunRequest {}

/// How many of the last N days' alerts these rules would have sent.
#[utoipa::path(post, path = "/api/v1/channels/dry-run", tag = "channels", operation_id = "dryRunRules", request_body = DryRunRequest,
    security(("api_key" = [])),
    responses((status = 200, body = DryRun), (status = 422, body = crate::error::ErrorBody)))]
pub async fn dry_run_rules(
    State(state): State<AppState>,
    ws: Workspace,
    ApiJson(body): ApiJson<DryRunRequest>,
) -> Result<Json<DryRun>, ApiError> {
    check_rules(&body.rules, "rules.")?;
    Ok(Json(
        dry_run(&state, ws.id, &body.rules, body.days.unwrap_or(30), state.now()).await?,
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DryRunParams {
    /// Days to look back, 1–90 (default 30).
    days: Option<i64>,
}

/// How many of the last N days' alerts this channel's rules would have sent.
#[utoipa::path(get, path = "/api/v1/channels/{id}/dry-run", tag = "channels", operation_id = "dryRunChannel", security(("api_key" = [])),
    params(("id" = String, Path), DryRunParams),
    responses((status = 200, body = DryRun), (status = 404, body = crate::error::ErrorBody)))]
pub async fn dry_run_channel(
    State(state): State<AppState>,
    ws: Workspace,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<DryRunParams>,
) -> Result<Json<DryRun>, ApiError> {
    let channel = load(&state, &ws, &id).await?;
    Ok(Json(
        dry_run(&state, ws.id, &channel.rules, p.days.unwrap_or(30), state.now()).await?,
    ))
}
