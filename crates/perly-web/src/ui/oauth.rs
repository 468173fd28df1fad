//! Connecting Slack and Discord with OAuth from Settings > Notifications.
//! `POST /integrations/{slack,discord}/connect` stores a single-use state
//! bound to the admin (10 minutes) and sends the browser to the vendor's
//! consent page; `…/callback` redeems the state, exchanges the code for a
//! webhook and creates the channel (or gives a broken one its new webhook).
//! A denied consent, a bad, replayed, foreign or expired state, and a failed
//! exchange each say what happened and store nothing. OAuth codes and states
//! are never logged.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Router};

use axum::http::{header, HeaderValue, StatusCode};
use perly_delivery::oauth::{InstallError, Installed};
use perly_domain::channels::{ChannelRules, Platform};
use perly_domain::ids::ChannelId;
use perly_store::{ChannelUpdate, NewChannel};

use super::channel_rules::env_prefix;
use super::channels::{allow_oauth_redirects, channel_path, load, OAUTH_STATE_MINUTES};
use super::session::CurrentUser;
use super::{redirect_with_flash, render, Flash, MessagePage, Nav, UiError};
use crate::channels::check_name;
use crate::AppState;

/// `/integrations/{slack,discord}/connect` and `…/callback`.
pub fn router() -> Router<AppState> {
    Platform::ALL.into_iter().fold(Router::new(), |router, p| {
        let base = format!("/integrations/{}", p.as_str());
        router
            .route(
                &format!("{base}/connect"),
                get(
                    move |s: State<AppState>, u: CurrentUser, q: Query<HashMap<String, String>>| {
                        connect_page(s, u, q, p)
                    },
                )
                .post(move |s: State<AppState>, u: CurrentUser, f: Form<HashMap<String, String>>| connect(s, u, f, p)),
            )
            .route(
                &format!("{base}/callback"),
                get(move |s: State<AppState>, u: CurrentUser, q: Query<HashMap<String, String>>| callback(s, u, q, p)),
            )
    })
}

fn redirect_uri(state: &AppState, p: Platform) -> String {
    format!(
        "{}/integrations/{}/callback",
        state.public_url.trim_end_matches('/'),
        p.as_str()
    )
}

fn not_configured(p: Platform) -> String {
    InstallError::NotConfigured(p.label(), &env_prefix(p)["PERLY_".len()..]).to_string()
}

#[derive(Template)]
#[template(path = "settings_connect.html")]
struct ConnectPage {
    nav: Option<Nav>,
    flash: Option<Flash>,
    tab: &'static str,
    can_edit: bool,
    csrf: String,
    key: &'static str,
    label: &'static str,
    configured: bool,
    env: &'static str,
    channel_id: String,
    channel_name: String,
}

/// `GET …/connect`: a page with the button, so links to it work.
async fn connect_page(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(q): Query<HashMap<String, String>>,
    p: Platform,
) -> Result<Response, UiError> {
    let channel = match q.get("channel_id").filter(|v| !v.is_empty()) {
        Some(id) => Some(load(&state, &user, id).await?).filter(|c| c.platform == p),
        None => None,
    };
    let page = ConnectPage {
        nav: Some(user.nav("settings")),
        flash: None,
        tab: "notifications",
        can_edit: user.is_admin(),
        csrf: user.session.csrf_token.clone(),
        key: p.as_str(),
        label: p.label(),
        configured: state.integrations.oauth(p).is_some(),
        env: env_prefix(p),
        channel_id: channel.as_ref().map(|c| c.id.to_string()).unwrap_or_default(),
        channel_name: channel.map(|c| c.name).unwrap_or_default(),
    };
    Ok(allow_oauth_redirects(
        &state,
        render(&state, StatusCode::OK, &page, false),
    ))
}

/// `POST …/connect`: starts the flow and sends the browser to the vendor.
async fn connect(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<HashMap<String, String>>,
    p: Platform,
) -> Result<Response, UiError> {
    user.check_admin_form(&form)?;
    let Some(client) = state.integrations.oauth(p) else {
        return Ok(redirect_with_flash(
            &state,
            "/settings/notifications",
            "error",
            &format!("{} Or add the channel by webhook URL below.", not_configured(p)),
        ));
    };
    let channel_id = match form.get("channel_id").map(|v| v.trim()).filter(|v| !v.is_empty()) {
        Some(id) => {
            let c = load(&state, &user, id).await?;
            if c.platform != p {
                return Err(UiError::NotFound);
            }
            Some(c.id.to_string())
        }
        None => None,
    };
    let ws = user.session.workspace.id;
    let now = state.now();
    let oauth_state = state
        .store
        .create_oauth_state(
            ws,
            user.session.user.id,
            p.as_str(),
            &serde_json::json!({ "channel_id": channel_id }),
            now,
            chrono::Duration::minutes(OAUTH_STATE_MINUTES),
        )
        .await?;
    let uri = redirect_uri(&state, p);
    let url = match p {
        Platform::Slack => perly_delivery::slack::oauth::authorize_url(client, &uri, &oauth_state),
        Platform::Discord => perly_delivery::discord::oauth::authorize_url(client, &uri, &oauth_state),
    };
    to_vendor(&url, p.as_str())
}

/// `303 See Other` to a vendor's consent page, never cached.
pub(super) fn to_vendor(url: &str, provider: &str) -> Result<Response, UiError> {
    let location = HeaderValue::from_str(url).map_err(|_| {
        tracing::error!(provider, "the OAuth authorize URL is not a valid header value");
        UiError::Internal
    })?;
    let mut resp = StatusCode::SEE_OTHER.into_response();
    resp.headers_mut().insert(header::LOCATION, location);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// What the callback page says when the state is unknown, used or expired.
const EXPIRED: &str = "This connection link expired or was already used. Start again from Settings > Notifications.";

fn callback_message(state: &AppState, user: &CurrentUser, text: &str) -> Response {
    let page = MessagePage {
        nav: Some(user.nav("settings")),
        flash: None,
        heading: "Connection not completed".to_owned(),
        text: text.to_owned(),
    };
    render(state, StatusCode::BAD_REQUEST, &page, false)
}

/// A flash-sized vendor message (the flash travels in a cookie).
pub(super) fn short(text: &str) -> String {
    const MAX: usize = 400;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

/// `GET …/callback?code=&state=` (or `?error=…&state=`): redeems the state
/// once, exchanges the code, stores the channel. Nothing is stored on any
/// failure. Neither the code nor the state is ever logged.
async fn callback(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(q): Query<HashMap<String, String>>,
    p: Platform,
) -> Result<Response, UiError> {
    user.require_admin()?;
    let ws = user.session.workspace.id;
    let sent_state = q.get("state").map(String::as_str).unwrap_or_default();
    if sent_state.is_empty() {
        return Ok(callback_message(&state, &user, EXPIRED));
    }
    let Some(flow) = state
        .store
        .take_oauth_state(ws, user.session.user.id, p.as_str(), sent_state, state.now())
        .await?
    else {
        return Ok(callback_message(&state, &user, EXPIRED));
    };
    let list = "/settings/notifications";
    if let Some(error) = q.get("error") {
        let text = if error == "access_denied" {
            format!(
                "{} connection cancelled: you did not allow access. Nothing was saved.",
                p.label()
            )
        } else {
            // Only a plain error code is repeated back.
            let code = Some(error.as_str())
                .filter(|e| e.len() <= 64 && e.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            format!("{} did not connect{code}. Nothing was saved.", p.label())
        };
        return Ok(redirect_with_flash(&state, list, "error", &text));
    }
    let Some(code) = q.get("code").filter(|c| !c.is_empty()) else {
        return Ok(redirect_with_flash(
            &state,
            list,
            "error",
            &format!("{} sent no authorization code back. Nothing was saved.", p.label()),
        ));
    };
    let Some(client) = state.integrations.oauth(p) else {
        return Ok(redirect_with_flash(&state, list, "error", &not_configured(p)));
    };
    let uri = redirect_uri(&state, p);
    let http = &state.integrations.http;
    let installed = match p {
        Platform::Slack => perly_delivery::slack::oauth::exchange(http, client, code, &uri).await,
        Platform::Discord => perly_delivery::discord::oauth::exchange(http, client, code, &uri).await,
    };
    let installed: Installed = match installed {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(provider = p.as_str(), error = %e, "OAuth install failed");
            return Ok(redirect_with_flash(
                &state,
                list,
                "error",
                &short(&format!("{e}. Nothing was saved.")),
            ));
        }
    };
    let reconnecting: Option<ChannelId> = flow
        .data
        .get("channel_id")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse().ok());
    let now = state.now();
    let unnamed = installed.unnamed_channel;
    let existing = match reconnecting {
        Some(id) => state.store.get_channel(ws, id).await?.filter(|c| c.platform == p),
        None => None,
    };
    let created = existing.is_none();
    let channel = match existing {
        Some(c) => {
            let update = ChannelUpdate {
                webhook_url: Some(installed.webhook_url),
                details: Some(installed.details),
                ..ChannelUpdate::default()
            };
            state.store.update_channel(ws, c.id, &update, now).await?
        }
        // A new channel (or one removed while its reconnect was under way).
        None => {
            let name = check_name(&installed.channel_name, "name").unwrap_or_else(|_| format!("{} channel", p.label()));
            let new = NewChannel {
                platform: p,
                name,
                webhook_url: installed.webhook_url,
                source: "oauth",
                details: installed.details,
                rules: ChannelRules::everything(),
            };
            state.store.create_channel(ws, &new, now).await?
        }
    };
    state.deliver.notify_one();
    tracing::info!(channel_id = %channel.id, provider = p.as_str(), "channel connected with OAuth");
    let mut text = format!("Connected {}. Alerts are active.", channel.name);
    if unnamed && created {
        text.push_str(&format!(
            " {} does not tell apps which channel you picked: add its name below (e.g. “{} #alerts”) so everyone knows where alerts go.",
            p.label(),
            channel.name
        ));
    }
    Ok(redirect_with_flash(&state, &channel_path(&channel), "info", &text))
}
