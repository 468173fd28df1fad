//! Settings › Salesforce: connect (Production, Sandbox or My Domain),
//! the connection's state (a broken one shows a reconnect button), the
//! permission check, sync progress with "Sync now", API usage, sync
//! settings, and disconnect. `/integrations/salesforce/connect` starts the
//! OAuth flow and `…/callback` completes it (see [`crate::salesforce`]).

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use perly_domain::salesforce::{Environment, SyncSettings};
use perly_store::{ObjectState, SalesforceConnection};

use super::channels::allow_form_targets;
use super::oauth::{short, to_vendor};
use super::session::CurrentUser;
use super::{redirect_with_flash, render, take_flash, when, Flash, Nav, UiError};
use crate::api::salesforce::{check_settings, request_sync, status_of, SyncStatus};
use crate::salesforce::{self as sf, ConnectError};
use crate::AppState;

const PAGE: &str = "/settings/salesforce";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(PAGE, get(page))
        .route("/settings/salesforce/sync", post(sync_now))
        .route("/settings/salesforce/permissions", post(recheck))
        .route("/settings/salesforce/fields", post(ensure_fields))
        .route("/settings/salesforce/settings", post(save_settings))
        .route("/settings/salesforce/disconnect", post(disconnect))
        .route(
            "/integrations/salesforce/connect",
            get(|| async { axum::response::Redirect::to(PAGE) }).post(connect),
        )
        .route("/integrations/salesforce/callback", get(callback))
}

pub struct ObjectRow {
    pub object: String,
    pub state: &'static str,
    pub rows: u64,
    pub total: String,
}

pub struct MissingRow {
    pub what: String,
    pub why: String,
    pub grant: String,
}

#[derive(Template)]
#[template(path = "settings_salesforce.html")]
struct SalesforcePage {
    nav: Option<Nav>,
    flash: Option<Flash>,
    tab: &'static str,
    can_edit: bool,
    csrf: String,
    configured: bool,
    connected: bool,
    org_name: String,
    environment: &'static str,
    username: String,
    instance_url: String,
    connected_at: String,
    broken_reason: String,
    permissions_checked: String,
    missing: Vec<MissingRow>,
    sync_state: String,
    /// A sync is running or about to start: the page reloads itself every
    /// few seconds (`<meta http-equiv="refresh">`) so its progress shows.
    refresh: bool,
    sync_percent: u8,
    sync_started: String,
    sync_rows: u64,
    sync_error: String,
    next_sync: String,
    objects: Vec<ObjectRow>,
    /// "Contact.Phone hidden: contacts show no phone", one per field the
    /// sync could not read.
    hidden_fields: Vec<String>,
    usage: String,
    paused_until: String,
    fields_state: String,
    fields_error: String,
    push_summary: String,
    push_error: String,
    external_id_field: String,
    account_fields: String,
    contact_fields: String,
    sync_interval_minutes: u32,
    api_share_percent: u8,
}

fn missing_rows(conn: &SalesforceConnection) -> Vec<MissingRow> {
    let text = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default().to_owned();
    conn.permissions
        .as_ref()
        .and_then(|p| p.get("missing"))
        .and_then(|m| m.as_array())
        .map(|items| {
            items
                .iter()
                .map(|m| MissingRow {
                    what: text(m, "what"),
                    why: text(m, "why"),
                    grant: text(m, "grant"),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// "Ready (made by Perly)", "Ready (already there)" or "Not ready".
fn fields_state(fields: &serde_json::Value) -> String {
    if fields.get("ready").and_then(|r| r.as_bool()) != Some(true) {
        return if fields.is_null() {
            "not checked yet".to_owned()
        } else {
            "not ready".to_owned()
        };
    }
    let made = fields.get("fields").and_then(|f| f.as_array()).is_some_and(|f| {
        f.iter()
            .any(|f| f.get("field").and_then(|x| x.as_str()) == Some("created"))
    });
    if made {
        "ready (Perly made them and gave itself access through the Perly_Integration permission set)".to_owned()
    } else {
        "ready (they were already there)".to_owned()
    }
}

fn object_rows(status: &SyncStatus) -> Vec<ObjectRow> {
    status
        .current
        .as_ref()
        .map(|s| {
            s.objects
                .iter()
                .map(|o| ObjectRow {
                    object: o.object.clone(),
                    state: match (o.state, &o.skipped, &o.failed) {
                        (_, Some(_), _) => "skipped (no read access)",
                        (_, _, Some(_)) => "failed",
                        (ObjectState::Pending, _, _) => "waiting",
                        (ObjectState::Running, _, _) => "running",
                        (ObjectState::Done, _, _) => "done",
                    },
                    rows: o.rows,
                    total: o.total.map(|t| t.to_string()).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a sync is running, or due within the last minute on a working
/// connection (requested, about to be claimed by the sync worker).
fn sync_in_progress(
    status: &SyncStatus,
    conn: Option<&SalesforceConnection>,
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    let starting = conn.is_some_and(|c| {
        c.broken_reason.is_none()
            && c.paused_until.is_none_or(|p| p <= now)
            && c.next_sync_at <= now
            && now - c.next_sync_at < chrono::Duration::minutes(1)
    });
    status.state == "running" || starting
}

/// Login hosts the connect form may redirect to: the configured
/// Production and Sandbox origins, and for a My Domain only https hosts
/// under Salesforce's domains (`https://*.salesforce.com`,
/// `https://*.force.com`), the only ones [`sf::login_url`] accepts.
fn login_origins(state: &AppState) -> Vec<String> {
    state.salesforce.orgs.hosts().form_action_sources()
}

async fn page(State(state): State<AppState>, user: CurrentUser, headers: HeaderMap) -> Result<Response, UiError> {
    let flash = take_flash(&state, &headers);
    let had_flash = flash.is_some();
    let ws = user.session.workspace.id;
    let conn = state.store.salesforce_connection(ws).await?;
    let status = status_of(&state, ws).await.map_err(|_| UiError::Internal)?;
    let settings = conn.as_ref().map(|c| c.settings.clone()).unwrap_or_default();
    let pushes = state.store.salesforce_push_status(ws).await?;
    let fields = conn.as_ref().and_then(|c| c.fields.clone()).unwrap_or_default();
    let page = SalesforcePage {
        nav: Some(user.nav("settings")),
        flash,
        tab: "salesforce",
        can_edit: user.is_admin(),
        csrf: user.session.csrf_token.clone(),
        configured: state.salesforce.orgs.app().is_some(),
        connected: conn.is_some(),
        org_name: conn.as_ref().map(|c| c.org_name.clone()).unwrap_or_default(),
        environment: conn.as_ref().map_or("", |c| c.environment.label()),
        username: conn.as_ref().map(|c| c.username.clone()).unwrap_or_default(),
        instance_url: conn.as_ref().map(|c| c.instance_url.clone()).unwrap_or_default(),
        connected_at: conn.as_ref().map(|c| when(c.connected_at)).unwrap_or_default(),
        broken_reason: conn.as_ref().and_then(|c| c.broken_reason.clone()).unwrap_or_default(),
        permissions_checked: conn
            .as_ref()
            .and_then(|c| c.permissions_checked_at)
            .map(when)
            .unwrap_or_default(),
        missing: conn.as_ref().map(missing_rows).unwrap_or_default(),
        sync_state: status.state.clone(),
        refresh: sync_in_progress(&status, conn.as_ref(), state.now()),
        sync_percent: status.percent,
        sync_started: status.started_at.map(when).unwrap_or_default(),
        sync_rows: status.rows,
        sync_error: status.last_error.clone().unwrap_or_default(),
        next_sync: status.next_sync_at.map(when).unwrap_or_default(),
        objects: object_rows(&status),
        hidden_fields: status
            .hidden_fields
            .iter()
            .map(|h| {
                if h.essential {
                    format!("{} ({} is not synced without it)", h.line(), h.object)
                } else {
                    h.line()
                }
            })
            .collect(),
        usage: conn
            .as_ref()
            .and_then(|c| {
                c.api_usage.map(|u| {
                    format!(
                        "{} of {} API requests used in the last 24 hours; Perly keeps to {}% ({} requests).",
                        u.used,
                        u.max,
                        c.settings.api_share_percent,
                        u.max * u64::from(c.settings.api_share_percent) / 100
                    )
                })
            })
            .unwrap_or_default(),
        paused_until: conn
            .as_ref()
            .and_then(|c| c.paused_until)
            .filter(|t| *t > state.now())
            .map(when)
            .unwrap_or_default(),
        fields_state: fields_state(&fields),
        fields_error: fields
            .get("error")
            .and_then(|e| e.as_str())
            .unwrap_or_default()
            .to_owned(),
        push_summary: format!(
            "{} Account(s) waiting to be written ({} retrying), {} given up until their score changes.{}",
            pushes.pending,
            pushes.retrying,
            pushes.given_up,
            pushes
                .last_pushed_at
                .map(|t| format!(" Last written {}.", when(t)))
                .unwrap_or_default()
        ),
        push_error: pushes.last_error.unwrap_or_default(),
        external_id_field: settings.external_id_field.clone().unwrap_or_default(),
        account_fields: settings.account_fields.join(", "),
        contact_fields: settings.contact_fields.join(", "),
        sync_interval_minutes: settings.sync_interval_minutes,
        api_share_percent: settings.api_share_percent,
    };
    let resp = render(&state, StatusCode::OK, &page, had_flash);
    Ok(allow_form_targets(resp, &login_origins(&state)))
}

fn flash_error(state: &AppState, e: &ConnectError) -> Response {
    redirect_with_flash(state, PAGE, "error", &short(&e.to_string()))
}

/// `POST /integrations/salesforce/connect` (org type, My Domain URL).
async fn connect(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    user.check_admin_form(&form)?;
    let env = match Environment::parse(form.get("environment").map(String::as_str).unwrap_or("production")) {
        Ok(e) => e,
        Err(e) => return Ok(flash_error(&state, &ConnectError::Invalid(e))),
    };
    let url = match sf::start(
        &state,
        user.session.workspace.id,
        user.session.user.id,
        env,
        form.get("my_domain_url").map(String::as_str),
    )
    .await
    {
        Ok(url) => url,
        Err(ConnectError::Store(e)) => return Err(e.into()),
        Err(e) => return Ok(flash_error(&state, &e)),
    };
    to_vendor(url.as_str(), crate::salesforce::PROVIDER)
}

/// `GET /integrations/salesforce/callback?code=&state=` (or `?error=`).
async fn callback(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, UiError> {
    user.require_admin()?;
    match sf::finish(&state, user.session.workspace.id, user.session.user.id, &q).await {
        Ok((conn, report)) => {
            let mut text = format!(
                "Connected {} ({}) as {}. The first sync has started.",
                conn.org_name,
                conn.environment.label(),
                conn.username
            );
            if !report.is_complete() {
                text.push_str(&format!(
                    " {} permission(s) are missing: see below what to grant.",
                    report.missing.len()
                ));
            }
            tracing::info!(workspace_id = %user.session.workspace.id, "salesforce connected");
            Ok(redirect_with_flash(&state, PAGE, "info", &short(&text)))
        }
        Err(ConnectError::Store(e)) => Err(e.into()),
        Err(e) => {
            tracing::warn!(error = %e, "salesforce connect failed");
            Ok(flash_error(&state, &e))
        }
    }
}

async fn sync_now(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    user.check_admin_form(&form)?;
    let ws = user.session.workspace.id;
    Ok(match request_sync(&state, ws).await {
        Ok(()) => redirect_with_flash(&state, PAGE, "info", "Sync started."),
        Err(e) => redirect_with_flash(&state, PAGE, "error", &short(&e.message)),
    })
}

async fn recheck(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    user.check_admin_form(&form)?;
    Ok(match sf::recheck(&state, user.session.workspace.id).await {
        Ok(report) if report.get("complete").and_then(|c| c.as_bool()) == Some(true) => redirect_with_flash(
            &state,
            PAGE,
            "info",
            "Permissions checked: Perly has everything it needs.",
        ),
        Ok(_) => redirect_with_flash(
            &state,
            PAGE,
            "error",
            "Permissions checked: some are missing, see below.",
        ),
        Err(ConnectError::Store(e)) => return Err(e.into()),
        Err(e) => flash_error(&state, &e),
    })
}

async fn ensure_fields(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    user.check_admin_form(&form)?;
    let ws = user.session.workspace.id;
    let client = match sf::connected(&state, ws).await {
        Ok((_, c)) => c,
        Err(ConnectError::Store(e)) => return Err(e.into()),
        Err(e) => return Ok(flash_error(&state, &e)),
    };
    Ok(
        match perly_salesforce::outbox::ensure_fields(state.store.as_ref(), ws, &client, state.now()).await {
            Ok(_) => {
                state.salesforce.wake_outbox.notify_one();
                redirect_with_flash(&state, PAGE, "info", "Perly's fields are ready on Account.")
            }
            Err(e) => flash_error(&state, &ConnectError::from(e)),
        },
    )
}

fn list(raw: Option<&String>) -> Vec<String> {
    raw.map(|s| {
        s.split([',', '\n', ' '])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    })
    .unwrap_or_default()
}

async fn save_settings(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    user.check_admin_form(&form)?;
    let number = |k: &str, default: u32| {
        form.get(k)
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(default)
    };
    let settings = SyncSettings {
        external_id_field: form
            .get("external_id_field")
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty()),
        account_fields: list(form.get("account_fields")),
        contact_fields: list(form.get("contact_fields")),
        sync_interval_minutes: number("sync_interval_minutes", 0),
        api_share_percent: u8::try_from(number("api_share_percent", 0)).unwrap_or(0),
    };
    let ws = user.session.workspace.id;
    if let Err(e) = check_settings(&state, ws, &settings).await {
        return Ok(redirect_with_flash(&state, PAGE, "error", &short(&e.message)));
    }
    state
        .store
        .update_salesforce_settings(ws, &settings, state.now())
        .await?;
    state.salesforce.orgs.forget(ws);
    Ok(redirect_with_flash(&state, PAGE, "info", "Sync settings saved."))
}

async fn disconnect(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    user.check_admin_form(&form)?;
    Ok(match sf::disconnect(&state, user.session.workspace.id).await {
        Ok(()) => redirect_with_flash(
            &state,
            PAGE,
            "info",
            "Salesforce disconnected: Perly's access was revoked. Pulled data stays in Perly.",
        ),
        Err(ConnectError::Store(e)) => return Err(e.into()),
        Err(e) => flash_error(&state, &e),
    })
}
