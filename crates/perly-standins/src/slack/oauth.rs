//! Slack's OAuth v2 install: `GET /oauth/v2/authorize` shows the consent
//! page (or Slack's error page), `POST /oauth/v2/authorize` is the user's
//! decision (302 back to `redirect_uri` with `code` or
//! `error=access_denied`), and `POST /api/oauth.v2.access` exchanges the code
//! for a bot token and a new incoming webhook.
//!
//! `oauth.v2.access` always answers HTTP 200 with JSON; errors are
//! `{"ok": false, "error": CODE}` with the codes of Slack's method page
//! (`specs/slack/examples/oauth_v2_access_error_codes_doc_excerpt.json`).
//! Client credentials come by HTTP Basic (recommended) or form fields;
//! arguments may also be in the query string, as for any Web API method.

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

use super::page::ConsentPage;
use super::{Grant, Slack, APP_ID, AUTHED_USER_ID, BOT_USER_ID, TEAM_ID, TEAM_NAME};
use crate::grant;
use crate::server;
use crate::view::OAuthErrorPage;

/// The scope an incoming-webhook install needs.
const WEBHOOK_SCOPE: &str = "incoming-webhook";

type Params = HashMap<String, String>;

/// Why an authorize request gets the error page: (code, detail).
type Refusal = (&'static str, &'static str);

fn error_page(code: &str, detail: &str) -> Response {
    let page = OAuthErrorPage {
        vendor: "Slack",
        dark: false,
        code: code.into(),
        detail: detail.into(),
    };
    server::page(StatusCode::BAD_REQUEST, page.render())
}

/// The checks both authorize steps make; `Err` is Slack's error page.
fn check_request(s: &Slack, p: &Params) -> Result<(String, Vec<String>), Refusal> {
    let client_id = p.get("client_id").map(String::as_str).unwrap_or_default();
    if client_id != s.app.client_id {
        return Err(("invalid_client_id", "Value passed for client_id was invalid."));
    }
    let redirect_uri = p.get("redirect_uri").map(String::as_str).unwrap_or_default();
    if url::Url::parse(redirect_uri).is_err() {
        return Err((
            "bad_redirect_uri",
            "The redirect_uri is missing or is not an absolute URL.",
        ));
    }
    let scopes: Vec<String> = p
        .get("scope")
        .map(String::as_str)
        .unwrap_or_default()
        .split([',', ' '])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if !scopes.iter().any(|s| s == WEBHOOK_SCOPE) {
        return Err((
            "invalid_scope",
            "This app must request the incoming-webhook scope to post to a channel.",
        ));
    }
    Ok((redirect_uri.to_owned(), scopes))
}

/// `GET /oauth/v2/authorize`
pub(crate) async fn authorize(State(s): State<Arc<Slack>>, Query(p): Query<Params>) -> Response {
    let (redirect_uri, scopes) = match check_request(&s, &p) {
        Ok(ok) => ok,
        Err((code, detail)) => return error_page(code, detail),
    };
    let channels = s.lock().channels.clone();
    let page = ConsentPage {
        vendor: "Slack",
        dark: false,
        root: crate::view::root(&s.base),
        team: TEAM_NAME,
        scopes,
        channels,
        client_id: s.app.client_id.clone(),
        scope: p.get("scope").cloned().unwrap_or_default(),
        user_scope: p.get("user_scope").cloned().unwrap_or_default(),
        redirect_uri,
        state: p.get("state").cloned().unwrap_or_default(),
    };
    server::page(StatusCode::OK, page.render())
}

/// `POST /oauth/v2/authorize`: Allow or Cancel.
pub(crate) async fn decide(State(s): State<Arc<Slack>>, Form(p): Form<Params>) -> Response {
    let (redirect_uri, _) = match check_request(&s, &p) {
        Ok(ok) => ok,
        Err((code, detail)) => return error_page(code, detail),
    };
    let state = p.get("state").map(String::as_str).unwrap_or_default();
    let code;
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    if p.get("decision").map(String::as_str) == Some("allow") {
        let chosen = p.get("channel").map(String::as_str).unwrap_or_default();
        let mut st = s.lock();
        let Some(channel) = st.channels.iter().find(|c| c.id == chosen || c.name == chosen).cloned() else {
            drop(st);
            return error_page("channel_not_found", "Pick a channel to post to.");
        };
        code = format!(
            "{}.{}.{}",
            grant::random_digits(10),
            grant::random_digits(13),
            grant::random_alnum(64).to_ascii_lowercase()
        );
        let g = Grant {
            client_id: s.app.client_id.clone(),
            redirect_uri: Some(redirect_uri.clone()),
            channel,
        };
        st.codes.issue(code.clone(), g, Instant::now());
        pairs.push(("code", &code));
    } else {
        pairs.push(("error", "access_denied"));
    }
    if !state.is_empty() {
        pairs.push(("state", state));
    }
    match grant::redirect_to(&redirect_uri, &pairs) {
        Some(location) => server::found(&location),
        None => error_page("bad_redirect_uri", "The redirect_uri is not a URL."),
    }
}

fn fail(code: &str) -> Response {
    server::json(StatusCode::OK, &json!({"ok": false, "error": code}))
}

/// Parses the method arguments as Slack does; `Err` is the error code.
fn arguments(headers: &HeaderMap, body: &[u8], query: Params) -> Result<Params, &'static str> {
    let mut args = query;
    let form = match grant::media_type(headers) {
        None if body.is_empty() => Params::new(),
        None => return Err("missing_post_type"),
        Some(t) if t == "application/x-www-form-urlencoded" || t == "text/plain" => grant::parse_form(body),
        Some(t) if t == "multipart/form-data" => multipart_fields(headers, body).ok_or("invalid_form_data")?,
        // oauth.v2.access takes no JSON arguments: they are simply not seen.
        Some(t) if t == "application/json" => Params::new(),
        Some(_) => return Err("invalid_post_type"),
    };
    args.extend(form);
    Ok(args)
}

/// The text fields of a `multipart/form-data` body (as `curl -F` sends).
fn multipart_fields(headers: &HeaderMap, body: &[u8]) -> Option<Params> {
    let content_type = headers.get(axum::http::header::CONTENT_TYPE)?.to_str().ok()?;
    let boundary = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()?
        .trim_matches('"');
    let text = std::str::from_utf8(body).ok()?;
    let delimiter = format!("--{boundary}");
    let mut fields = Params::new();
    for part in text.split(delimiter.as_str()).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let (head, value) = part.split_once("\r\n\r\n")?;
        let name = head
            .split(';')
            .filter_map(|p| p.trim().strip_prefix("name="))
            .next()?
            .split("\r\n")
            .next()?
            .trim_matches('"');
        fields.insert(name.to_owned(), value.trim_end_matches("\r\n").to_owned());
    }
    Some(fields)
}

/// `POST /api/oauth.v2.access`
pub(crate) async fn access(
    State(s): State<Arc<Slack>>,
    Query(query): Query<Params>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let args = match arguments(&headers, &body, query) {
        Ok(args) => args,
        Err(code) => return fail(code),
    };
    match args.get("grant_type").map(String::as_str) {
        None | Some("authorization_code") => {}
        Some("refresh_token") => return fail("invalid_refresh_token"),
        Some(_) => return fail("invalid_grant_type"),
    }
    let (client_id, client_secret) = grant::client_credentials(&headers, &args);
    if client_id.as_deref() != Some(s.app.client_id.as_str()) {
        return fail("invalid_client_id");
    }
    if client_secret.as_deref() != Some(s.app.client_secret.as_str()) {
        return fail("bad_client_secret");
    }
    let code = args.get("code").map(String::as_str).unwrap_or_default();
    let mut st = s.lock();
    let Ok(g) = st.codes.peek(code, Instant::now()) else {
        return fail("invalid_code");
    };
    if client_id.as_deref() != Some(g.client_id.as_str()) {
        return fail("invalid_code");
    }
    if let Some(sent) = args.get("redirect_uri") {
        if g.redirect_uri.as_deref() != Some(sent.as_str()) {
            return fail("bad_redirect_uri");
        }
    }
    st.codes.consume(code);
    let url = s.new_hook(&mut st, g.channel.clone());
    let service_id = st
        .hooks
        .values()
        .find(|h| h.url == url)
        .map(|h| h.service_id.clone())
        .unwrap_or_default();
    drop(st);
    let access_token = format!(
        "xoxb-{}-{}-{}",
        grant::random_digits(11),
        grant::random_digits(11),
        grant::random_alnum(24)
    );
    tracing::info!(channel = %g.channel.name, "slack stand-in: app installed");
    server::json(
        StatusCode::OK,
        &json!({
            "ok": true,
            "app_id": APP_ID,
            "authed_user": {"id": AUTHED_USER_ID},
            "scope": WEBHOOK_SCOPE,
            "token_type": "bot",
            "access_token": access_token,
            "bot_user_id": BOT_USER_ID,
            "team": {"id": TEAM_ID, "name": TEAM_NAME},
            "enterprise": null,
            "is_enterprise_install": false,
            "incoming_webhook": {
                "channel": g.channel.name,
                "channel_id": g.channel.id,
                "configuration_url": format!("{}/services/{service_id}", s.base),
                "url": url,
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_text_fields_are_read() {
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::header::CONTENT_TYPE,
            "multipart/form-data; boundary=XyZ".parse().expect("header"),
        );
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"code\"\r\n\r\n1234\r\n--XyZ\r\nContent-Disposition: form-data; name=\"client_id\"\r\n\r\n3336676.569200954261\r\n--XyZ--\r\n";
        let fields = multipart_fields(&headers, body.as_bytes()).expect("parsed");
        assert_eq!(fields.get("code").map(String::as_str), Some("1234"));
        assert_eq!(
            fields.get("client_id").map(String::as_str),
            Some("3336676.569200954261")
        );
    }
}
