//! Salesforce under `/api/v1/salesforce`: the connection and its API usage,
//! disconnect, the permission check, sync settings (checked against the
//! org's describe), the fields an admin can pick, and sync progress with
//! "Sync now". Connecting itself is a browser flow
//! (`/integrations/salesforce/connect`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use perly_domain::ids::WorkspaceId;
use perly_domain::pulled_fields::HiddenField;
use perly_domain::salesforce::SyncSettings;
use perly_store::{ObjectState, PushStatus, SalesforceConnection, SalesforceSync};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, JsonBody};
use crate::auth::Workspace;
use crate::error::ApiError;
use crate::salesforce::{self as sf, ConnectError};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(show, disconnect))
        .routes(routes!(check_permissions))
        .routes(routes!(update_settings))
        .routes(routes!(fields))
        .routes(routes!(ensure_fields))
        .routes(routes!(sync_status, sync_now))
}

impl JsonBody for SyncSettings {}

impl From<ConnectError> for ApiError {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Invalid(f) => f.into(),
            ConnectError::NotConnected => ApiError::new(
                StatusCode::CONFLICT,
                "salesforce_not_connected",
                "Salesforce is not connected: connect it in Settings › Integrations",
            ),
            ConnectError::NotConfigured => {
                ApiError::new(StatusCode::CONFLICT, "salesforce_not_configured", e.to_string())
            }
            ConnectError::Store(e) => e.into(),
            other => ApiError::new(StatusCode::BAD_GATEWAY, "salesforce_error", other.to_string()),
        }
    }
}

/// The org's daily API requests and Perly's share of them.
#[derive(Serialize, ToSchema)]
pub struct ApiUsage {
    pub used: u64,
    pub max: u64,
    /// The share of `max` Perly may use (percent).
    pub share_percent: u8,
    pub seen_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct SalesforceStatus {
    pub connected: bool,
    /// `connected`, `broken` (reconnect needed) or `not_connected`.
    pub status: &'static str,
    pub connection: Option<SalesforceConnection>,
    pub api_usage: Option<ApiUsage>,
    /// The score push outbox: Accounts waiting, retrying, given up.
    pub pushes: Option<PushStatus>,
}

/// The connection (never its tokens), its state and API usage.
#[utoipa::path(get, path = "/api/v1/salesforce", tag = "salesforce", operation_id = "getSalesforce", security(("api_key" = [])),
    responses((status = 200, body = SalesforceStatus)))]
pub async fn show(State(state): State<AppState>, ws: Workspace) -> Result<Json<SalesforceStatus>, ApiError> {
    let conn = state.store.salesforce_connection(ws.id).await?;
    let status = match &conn {
        None => "not_connected",
        Some(c) if c.broken_reason.is_some() => "broken",
        Some(_) => "connected",
    };
    let api_usage = conn.as_ref().and_then(|c| {
        c.api_usage.map(|u| ApiUsage {
            used: u.used,
            max: u.max,
            share_percent: c.settings.api_share_percent,
            seen_at: u.at,
        })
    });
    let pushes = match &conn {
        Some(_) => Some(state.store.salesforce_push_status(ws.id).await?),
        None => None,
    };
    Ok(Json(SalesforceStatus {
        connected: conn.is_some(),
        status,
        connection: conn,
        api_usage,
        pushes,
    }))
}

/// Revokes Perly's token at Salesforce and forgets the connection; pulled data stays.
#[utoipa::path(delete, path = "/api/v1/salesforce", tag = "salesforce", operation_id = "disconnectSalesforce", security(("api_key" = [])),
    responses((status = 204, description = "Disconnected"),
        (status = 409, description = "Salesforce is not connected (`salesforce_not_connected`)", body = crate::error::ErrorBody)))]
pub async fn disconnect(State(state): State<AppState>, ws: Workspace) -> Result<StatusCode, ApiError> {
    sf::disconnect(&state, ws.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Checks API access, object access and the right to create Perly's fields again.
#[utoipa::path(post, path = "/api/v1/salesforce/permissions", tag = "salesforce", operation_id = "checkSalesforcePermissions", security(("api_key" = [])),
    responses((status = 200, description = "`{\"complete\", \"missing\": [{\"what\", \"why\", \"grant\"}]}`", body = Object),
        (status = 409, description = "Salesforce is not connected (`salesforce_not_connected`) or not configured on this server (`salesforce_not_configured`)", body = crate::error::ErrorBody),
        (status = 502, description = "Salesforce refused the call or could not be reached (`salesforce_error`)", body = crate::error::ErrorBody)))]
pub async fn check_permissions(
    State(state): State<AppState>,
    ws: Workspace,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(sf::recheck(&state, ws.id).await?))
}

/// Makes Perly's three Account fields and their access now (each only when
/// missing) and answers their state, as also stored on the connection.
#[utoipa::path(post, path = "/api/v1/salesforce/perly-fields", tag = "salesforce", operation_id = "ensureSalesforcePerlyFields", security(("api_key" = [])),
    responses((status = 200, description = "`{\"ready\", \"checked_at\", \"permission_set\", \"assignment\", \"fields\": [...]}`", body = Object),
        (status = 409, description = "Salesforce is not connected (`salesforce_not_connected`) or not configured on this server (`salesforce_not_configured`)", body = crate::error::ErrorBody),
        (status = 502, description = "Salesforce refused the call or could not be reached (`salesforce_error`)", body = crate::error::ErrorBody)))]
pub async fn ensure_fields(State(state): State<AppState>, ws: Workspace) -> Result<Json<serde_json::Value>, ApiError> {
    let (_, client) = sf::connected(&state, ws.id).await?;
    let now = state.now();
    let report = perly_salesforce::outbox::ensure_fields(state.store.as_ref(), ws.id, &client, now)
        .await
        .map_err(ConnectError::from)?;
    state.salesforce.wake_outbox.notify_one();
    Ok(Json(perly_salesforce::outbox::fields_json(&report, now)))
}

/// Fields an admin can pick, from the org's describe.
#[derive(Serialize, ToSchema)]
pub struct PickableFields {
    pub account: Vec<PickableField>,
    pub contact: Vec<PickableField>,
}

#[derive(Serialize, ToSchema)]
pub struct PickableField {
    pub name: String,
    pub label: String,
    #[serde(rename = "type")]
    pub field_type: String,
    pub custom: bool,
    /// Marked "External ID" or unique: can serve as the customer's external id.
    pub external_id: bool,
}

async fn describe_fields(
    client: &perly_salesforce::client::Client,
    object: &str,
) -> Result<Vec<PickableField>, ApiError> {
    let d = client.describe(object).await.map_err(ConnectError::from)?;
    Ok(d.fields
        .into_iter()
        .map(|f| PickableField {
            external_id: f.external_id || f.unique || f.name == "Id",
            name: f.name,
            label: f.label,
            field_type: f.type_,
            custom: f.custom,
        })
        .collect())
}

/// Account and Contact fields from the org's describe, to pick from.
#[utoipa::path(get, path = "/api/v1/salesforce/fields", tag = "salesforce", operation_id = "listSalesforceFields", security(("api_key" = [])),
    responses((status = 200, body = PickableFields),
        (status = 409, description = "Salesforce is not connected (`salesforce_not_connected`) or not configured on this server (`salesforce_not_configured`)", body = crate::error::ErrorBody),
        (status = 502, description = "Salesforce refused the call or could not be reached (`salesforce_error`)", body = crate::error::ErrorBody)))]
pub async fn fields(State(state): State<AppState>, ws: Workspace) -> Result<Json<PickableFields>, ApiError> {
    let (_, client) = sf::connected(&state, ws.id).await?;
    Ok(Json(PickableFields {
        account: describe_fields(&client, "Account").await?,
        contact: describe_fields(&client, "Contact").await?,
    }))
}

/// Checks picked fields against the org: each must exist on its object.
pub async fn check_settings(state: &AppState, ws: WorkspaceId, settings: &SyncSettings) -> Result<(), ApiError> {
    settings.validate()?;
    let picked_account: Vec<&String> = settings
        .external_id_field
        .iter()
        .chain(&settings.account_fields)
        .collect();
    if picked_account.is_empty() && settings.contact_fields.is_empty() {
        return Ok(());
    }
    let (_, client) = sf::connected(state, ws).await?;
    let account = describe_fields(&client, "Account").await?;
    let contact = if settings.contact_fields.is_empty() {
        Vec::new()
    } else {
        describe_fields(&client, "Contact").await?
    };
    let missing = |list: &[PickableField], name: &str| !list.iter().any(|f| f.name.eq_ignore_ascii_case(name));
    if let Some(f) = settings.external_id_field.as_ref() {
        if missing(&account, f) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_salesforce_field",
                format!("Account has no field `{f}` (or the connected user cannot see it)"),
            )
            .with_field("external_id_field"));
        }
    }
    for (key, object, names, list) in [
        ("account_fields", "Account", &settings.account_fields, &account),
        ("contact_fields", "Contact", &settings.contact_fields, &contact),
    ] {
        if let Some(f) = names.iter().find(|n| missing(list, n)) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_salesforce_field",
                format!("{object} has no field `{f}` (or the connected user cannot see it)"),
            )
            .with_field(key));
        }
    }
    Ok(())
}

/// Replaces the sync settings; picked fields must exist in the org.
#[utoipa::path(put, path = "/api/v1/salesforce/settings", tag = "salesforce", operation_id = "replaceSalesforceSettings", request_body = SyncSettings,
    security(("api_key" = [])),
    responses((status = 200, body = SyncSettings),
        (status = 409, description = "Salesforce is not connected (`salesforce_not_connected`) or not configured on this server (`salesforce_not_configured`)", body = crate::error::ErrorBody),
        (status = 422, description = "A value is out of range, or a picked field is not in the org (`unknown_salesforce_field`, naming the setting)", body = crate::error::ErrorBody),
        (status = 502, description = "Salesforce refused the call or could not be reached (`salesforce_error`)", body = crate::error::ErrorBody)))]
pub async fn update_settings(
    State(state): State<AppState>,
    ws: Workspace,
    ApiJson(body): ApiJson<SyncSettings>,
) -> Result<Json<SyncSettings>, ApiError> {
    if state.store.salesforce_connection(ws.id).await?.is_none() {
        return Err(ConnectError::NotConnected.into());
    }
    check_settings(&state, ws.id, &body).await?;
    state
        .store
        .update_salesforce_settings(ws.id, &body, state.now())
        .await?;
    state.salesforce.orgs.forget(ws.id);
    Ok(Json(body))
}

/// Where syncing stands: the current or last run with per-object progress.
#[derive(Serialize, ToSchema)]
pub struct SyncStatus {
    /// `running`, `succeeded`, `failed`, or `never` before the first run.
    pub state: String,
    /// 0–100.
    pub percent: u8,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    pub rows: u64,
    pub last_error: Option<String>,
    pub next_sync_at: Option<chrono::DateTime<chrono::Utc>>,
    pub current: Option<SalesforceSync>,
    /// The last ten runs, newest first.
    pub history: Vec<SalesforceSync>,
    /// Fields the sync wants that the connected user cannot read
    /// (field-level security), as each object's latest query found them,
    /// with what Perly goes without (`effect`). Optional ones are left out
    /// of the query and the rest is pulled; an `essential` one fails its
    /// object. Per run: `current.objects[].hidden_fields`.
    pub hidden_fields: Vec<HiddenField>,
}

/// For each object, the hidden fields of the newest run that got as far as
/// querying it.
fn latest_hidden_fields(history: &[SalesforceSync]) -> Vec<HiddenField> {
    let mut out = Vec::new();
    for object in perly_store::SYNC_OBJECTS {
        let latest = history.iter().find_map(|run| {
            run.objects
                .iter()
                .find(|o| o.object == object && o.state != ObjectState::Pending && o.skipped.is_none())
        });
        if let Some(p) = latest {
            out.extend(p.hidden_fields.iter().cloned());
        }
    }
    out
}

pub async fn status_of(state: &AppState, ws: WorkspaceId) -> Result<SyncStatus, ApiError> {
    let conn = state.store.salesforce_connection(ws).await?;
    let history = state.store.salesforce_syncs(ws, 10).await?;
    let current = history.first().cloned();
    Ok(SyncStatus {
        state: current
            .as_ref()
            .map(|s| {
                serde_json::to_value(s.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
            })
            .unwrap_or_default()
            .unwrap_or_else(|| "never".to_owned()),
        percent: current.as_ref().map_or(0, SalesforceSync::percent),
        started_at: current.as_ref().map(|s| s.started_at),
        finished_at: current.as_ref().and_then(|s| s.finished_at),
        rows: current.as_ref().map_or(0, |s| s.rows),
        last_error: current.as_ref().and_then(|s| s.last_error.clone()),
        next_sync_at: conn.filter(|c| c.broken_reason.is_none()).map(|c| c.next_sync_at),
        hidden_fields: latest_hidden_fields(&history),
        current,
        history,
    })
}

/// Where syncing stands: the current or last run with per-object progress, and the last ten runs.
#[utoipa::path(get, path = "/api/v1/salesforce/sync", tag = "salesforce", operation_id = "getSalesforceSync", security(("api_key" = [])),
    responses((status = 200, body = SyncStatus)))]
pub async fn sync_status(State(state): State<AppState>, ws: Workspace) -> Result<Json<SyncStatus>, ApiError> {
    Ok(Json(status_of(&state, ws.id).await?))
}

/// Starts a sync now (or right after the one running).
#[utoipa::path(post, path = "/api/v1/salesforce/sync", tag = "salesforce", operation_id = "startSalesforceSync", security(("api_key" = [])),
    responses((status = 202, body = SyncStatus),
        (status = 409, description = "Salesforce is not connected (`salesforce_not_connected`) or its connection is broken (`salesforce_broken`)", body = crate::error::ErrorBody)))]
pub async fn sync_now(
    State(state): State<AppState>,
    ws: Workspace,
) -> Result<(StatusCode, Json<SyncStatus>), ApiError> {
    request_sync(&state, ws.id).await?;
    Ok((StatusCode::ACCEPTED, Json(status_of(&state, ws.id).await?)))
}

pub async fn request_sync(state: &AppState, ws: WorkspaceId) -> Result<(), ApiError> {
    match state.store.salesforce_connection(ws).await? {
        None => Err(ConnectError::NotConnected.into()),
        Some(c) if c.broken_reason.is_some() => Err(ApiError::new(
            StatusCode::CONFLICT,
            "salesforce_broken",
            format!(
                "the Salesforce connection is broken ({}): reconnect it in Settings › Integrations",
                c.broken_reason.unwrap_or_default()
            ),
        )),
        Some(_) => {
            state.store.request_salesforce_sync(ws, state.now()).await?;
            state.salesforce.wake_sync.notify_one();
            Ok(())
        }
    }
}
