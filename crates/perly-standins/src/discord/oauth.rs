//! Discord's OAuth2 install with the `webhook.incoming` scope:
//! `GET /oauth2/authorize` shows the consent page ("Create a webhook": pick
//! a server and channel), `POST /oauth2/authorize` is the decision (302 back
//! with `code`, `state` and `guild_id`, or RFC 6749's `error=access_denied`),
//! and `POST /api/v10/oauth2/token` exchanges the code for an access token
//! and the new webhook (`oauth2_token_response_webhook_incoming_doc.json`).
//! As on Discord, the webhook object carries the guild and channel ids but
//! no names; with the `guilds` scope, `GET /api/v10/users/@me/guilds`
//! (Bearer access token) lists the user's guilds (partial guild objects:
//! `id`, `name`, `icon`, `banner`, `owner`, `permissions`, `features`),
//! sorted by id, with `before`, `after` and `limit` (1–200, default 200).
//!
//! The token endpoint takes only `application/x-www-form-urlencoded`; any
//! other body is read as no form at all, which Discord reports as
//! `unsupported_grant_type` (discord-api-docs issues #645, #5249). Errors
//! are RFC 6749 §5.2 bodies: 401 `invalid_client`, 400 `invalid_grant`
//! (`Invalid "code" in request.`, also for a `redirect_uri` that differs
//! from the authorize step), 400 `invalid_request` for missing parameters.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use serde_json::json;
use tokio::time::Instant;

use super::page::{ConsentPage, GuildOption};
use super::{Discord, Grant, APPLICATION_ID, WEBHOOK_NAME};
use crate::grant;
use crate::server;
use crate::view::OAuthErrorPage;

const WEBHOOK_SCOPE: &str = "webhook.incoming";
/// Seven days, as in every docs example.
const EXPIRES_IN: u64 = 604_800;

type Params = HashMap<String, String>;

/// Why an authorize request gets the error page: (code, detail).
type Refusal = (&'static str, &'static str);

fn error_page(code: &str, detail: &str) -> Response {
    let page = OAuthErrorPage {
        vendor: "Discord",
        dark: true,
        code: code.into(),
        detail: detail.into(),
    };
    server::page(StatusCode::BAD_REQUEST, page.render())
}

/// The checks both authorize steps make; `Err` is Discord's error page.
fn check_request(s: &Discord, p: &Params) -> Result<(String, Vec<String>), Refusal> {
    let client_id = p.get("client_id").map(String::as_str).unwrap_or_default();
    if client_id != s.app.client_id {
        return Err(("invalid_client", "Unknown Application. Invalid client_id."));
    }
    let redirect_uri = p.get("redirect_uri").map(String::as_str).unwrap_or_default();
    if url::Url::parse(redirect_uri).is_err() {
        return Err(("invalid_request", "Invalid OAuth2 redirect_uri"));
    }
    if p.get("response_type").map(String::as_str) != Some("code") {
        return Err((
            "unsupported_response_type",
            "Invalid response_type: only \"code\" is supported.",
        ));
    }
    let scopes: Vec<String> = p
        .get("scope")
        .map(String::as_str)
        .unwrap_or_default()
        .split([' ', '+'])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if !scopes.iter().any(|s| s == WEBHOOK_SCOPE) {
        return Err(("invalid_scope", "Invalid scope: this install needs webhook.incoming."));
    }
    Ok((redirect_uri.to_owned(), scopes))
}

/// `GET /oauth2/authorize`
pub(crate) async fn authorize(State(s): State<Arc<Discord>>, Query(p): Query<Params>) -> Response {
    let (redirect_uri, scopes) = match check_request(&s, &p) {
        Ok(ok) => ok,
        Err((code, detail)) => return error_page(code, detail),
    };
    let channels = s.lock().channels.clone();
    let mut guilds: Vec<GuildOption> = Vec::new();
    for c in channels {
        match guilds.iter_mut().find(|g| g.name == c.guild) {
            Some(g) => g.channels.push(c),
            None => guilds.push(GuildOption {
                name: c.guild.clone(),
                channels: vec![c],
            }),
        }
    }
    let page = ConsentPage {
        vendor: "Discord",
        dark: true,
        root: crate::view::root(&s.base),
        scopes,
        guilds,
        client_id: s.app.client_id.clone(),
        scope: p.get("scope").cloned().unwrap_or_default(),
        redirect_uri,
        state: p.get("state").cloned().unwrap_or_default(),
    };
    server::page(StatusCode::OK, page.render())
}

/// `POST /oauth2/authorize`: Authorize or Cancel.
pub(crate) async fn decide(State(s): State<Arc<Discord>>, Form(p): Form<Params>) -> Response {
    let (redirect_uri, _) = match check_request(&s, &p) {
        Ok(ok) => ok,
        Err((code, detail)) => return error_page(code, detail),
    };
    let state = p.get("state").map(String::as_str).unwrap_or_default();
    let code;
    let guild_id;
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    if p.get("decision").map(String::as_str) == Some("allow") {
        let chosen = p.get("channel").map(String::as_str).unwrap_or_default();
        let mut st = s.lock();
        let Some(channel) = st.channels.iter().find(|c| c.id == chosen).cloned() else {
            drop(st);
            return error_page("invalid_request", "Pick a server and a channel for the webhook.");
        };
        code = grant::random_alnum(30);
        guild_id = channel.guild_id.clone();
        let g = Grant {
            client_id: s.app.client_id.clone(),
            redirect_uri: redirect_uri.clone(),
            scope: p.get("scope").cloned().unwrap_or_default(),
            channel,
        };
        st.codes.issue(code.clone(), g, Instant::now());
        pairs.push(("code", &code));
        if !state.is_empty() {
            pairs.push(("state", state));
        }
        pairs.push(("guild_id", &guild_id));
    } else {
        pairs.push(("error", "access_denied"));
        pairs.push((
            "error_description",
            "The resource owner or authorization server denied the request",
        ));
        if !state.is_empty() {
            pairs.push(("state", state));
        }
    }
    match grant::redirect_to(&redirect_uri, &pairs) {
        Some(location) => server::found(&location),
        None => error_page("invalid_request", "Invalid OAuth2 redirect_uri"),
    }
}

fn oauth_error(status: StatusCode, error: &str, description: Option<&str>) -> Response {
    let body = match description {
        Some(d) => json!({"error": error, "error_description": d}),
        None => json!({"error": error}),
    };
    server::json(status, &body)
}

/// `POST /api/v10/oauth2/token`
pub(crate) async fn token(State(s): State<Arc<Discord>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = match grant::media_type(&headers).as_deref() {
        Some("application/x-www-form-urlencoded") => grant::parse_form(&body),
        _ => Params::new(),
    };
    let grant_type = form.get("grant_type").map(String::as_str);
    if !matches!(grant_type, Some("authorization_code" | "refresh_token")) {
        let shown = grant_type.unwrap_or("None");
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            Some(&format!("Grant type {shown} is not supported")),
        );
    }
    let (client_id, client_secret) = grant::client_credentials(&headers, &form);
    if client_id.as_deref() != Some(s.app.client_id.as_str())
        || client_secret.as_deref() != Some(s.app.client_secret.as_str())
    {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", None);
    }
    if grant_type == Some("refresh_token") {
        return refresh(&s, &form);
    }
    let Some(code) = form.get("code") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("Missing \"code\" in request."),
        );
    };
    let Some(redirect_uri) = form.get("redirect_uri") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("Missing \"redirect_uri\" in request."),
        );
    };
    let mut st = s.lock();
    let g = match st.codes.peek(code, Instant::now()) {
        Ok(g) if Some(g.client_id.as_str()) == client_id.as_deref() => g,
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                Some("Invalid \"code\" in request."),
            )
        }
    };
    if &g.redirect_uri != redirect_uri {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            Some("Invalid \"redirect_uri\" in request."),
        );
    }
    st.codes.consume(code);
    let url = s.new_hook(&mut st, g.channel.clone());
    let (id, webhook_token) = st
        .hooks
        .values()
        .find(|h| h.url == url)
        .map(|h| (h.id.clone(), h.token.clone()))
        .unwrap_or_default();
    let refresh_token = grant::random_alnum(30);
    st.refresh_tokens.insert(refresh_token.clone(), g.scope.clone());
    let access_token = grant::random_alnum(30);
    st.access_tokens.insert(access_token.clone(), g.scope.clone());
    drop(st);
    tracing::info!(guild = %g.channel.guild, channel = %g.channel.name, "discord stand-in: webhook created");
    server::json(
        StatusCode::OK,
        &json!({
            "token_type": "Bearer",
            "access_token": access_token,
            "scope": g.scope,
            "expires_in": EXPIRES_IN,
            "refresh_token": refresh_token,
            "webhook": {
                "application_id": APPLICATION_ID,
                "name": WEBHOOK_NAME,
                "url": url,
                "channel_id": g.channel.id,
                "token": webhook_token,
                "type": 1,
                "avatar": null,
                "guild_id": g.channel.guild_id,
                "id": id,
            }
        }),
    )
}

/// `grant_type=refresh_token`: a new token pair, no new webhook.
fn refresh(s: &Discord, form: &Params) -> Response {
    let Some(old) = form.get("refresh_token") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("Missing \"refresh_token\" in request."),
        );
    };
    let mut st = s.lock();
    let Some(scope) = st.refresh_tokens.remove(old) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            Some("Invalid \"refresh_token\" in request."),
        );
    };
    let refresh_token = grant::random_alnum(30);
    st.refresh_tokens.insert(refresh_token.clone(), scope.clone());
    let access_token = grant::random_alnum(30);
    st.access_tokens.insert(access_token.clone(), scope.clone());
    server::json(
        StatusCode::OK,
        &json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": EXPIRES_IN,
            "refresh_token": refresh_token,
            "scope": scope,
        }),
    )
}

/// `GET /api/v10/users/@me/guilds`: the user's guilds, for a Bearer token
/// granted `guilds` (401 without a known token, 403 without the scope).
pub(crate) async fn my_guilds(State(s): State<Arc<Discord>>, headers: HeaderMap, Query(p): Query<Params>) -> Response {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let st = s.lock();
    let Some(scope) = st.access_tokens.get(token) else {
        return server::json(
            StatusCode::UNAUTHORIZED,
            &json!({"message": "401: Unauthorized", "code": 0}),
        );
    };
    if !scope.split([' ', '+']).any(|x| x == "guilds") {
        return server::json(
            StatusCode::FORBIDDEN,
            &json!({"message": "Missing Access", "code": 50001}),
        );
    }
    let snowflake = |k: &str| p.get(k).and_then(|v| v.parse::<u64>().ok());
    let (after, before) = (snowflake("after"), snowflake("before"));
    let limit = p
        .get("limit")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(200)
        .clamp(1, 200);
    let mut guilds: Vec<(u64, String)> = Vec::new();
    for c in &st.channels {
        if let Ok(id) = c.guild_id.parse::<u64>() {
            if !guilds.iter().any(|(g, _)| *g == id) {
                guilds.push((id, c.guild.clone()));
            }
        }
    }
    drop(st);
    guilds.sort();
    let page: Vec<serde_json::Value> = guilds
        .into_iter()
        .filter(|(id, _)| after.is_none_or(|a| *id > a) && before.is_none_or(|b| *id < b))
        .take(limit)
        .map(|(id, name)| {
            json!({
                "id": id.to_string(),
                "name": name,
                "icon": null,
                "banner": null,
                "owner": true,
                "permissions": "2251799813685247",
                "features": [],
            })
        })
        .collect();
    server::json(StatusCode::OK, &serde_json::Value::Array(page))
}
