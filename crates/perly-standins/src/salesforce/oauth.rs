//! Salesforce's OAuth 2.0 endpoints on one org's host.
//!
//! `GET /services/oauth2/authorize` (web server flow: `response_type=code`,
//! `client_id`, `redirect_uri`, `scope`, `state`, optional PKCE
//! `code_challenge` + `code_challenge_method=S256`) shows the login and
//! consent page; its form posts back to the same path, where Allow (with
//! the right password) redirects with `code` and `state` and Deny with
//! `error=access_denied&error_description=end-user+denied+authorization`.
//! An unknown client never redirects: Salesforce shows its error page with
//! `error=invalid_client_id&error_description=client identifier invalid`.
//!
//! `POST /services/oauth2/token` takes `authorization_code` (code single
//! use, 15 minutes; `redirect_uri` must match; `code_verifier` checked
//! against the S256 challenge), `refresh_token` (no new refresh token in
//! the answer, as recorded) and `password` (username + password, for
//! clients such as simple-salesforce). Errors are HTTP 400 with
//! `{"error", "error_description"}` in Salesforce's words. `signature` is
//! Base64(HMAC-SHA256(client_secret, id + issued_at)) as documented.
//! `POST /services/oauth2/revoke` revokes a token (a refresh token takes
//! its access tokens with it); `userinfo` and the identity URL describe the
//! user, or answer 403 `Bad_OAuth_Token`.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::page::{ConsentPage, OAuthErrorPage};
use super::{Org, ADMIN_PASSWORD, SECURITY_TOKEN};
use crate::grant::{self, CodeError};
use crate::server;

type Params = HashMap<String, String>;

/// Authorization codes "expire after 15 minutes" (web server flow docs).
const CODE_LIFETIME: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// What the user approved.
#[derive(Clone, Debug)]
pub(crate) struct CodeGrant {
    client_id: String,
    redirect_uri: String,
    scope: String,
    challenge: Option<String>,
}

#[derive(Debug)]
struct AccessToken {
    refresh: Option<String>,
    live: bool,
}

#[derive(Debug)]
struct RefreshToken {
    client_id: String,
    scope: String,
    live: bool,
}

/// Tokens issued by one org.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    access: HashMap<String, AccessToken>,
    refresh: HashMap<String, RefreshToken>,
}

impl Tokens {
    pub(crate) fn issue_access(
        &mut self,
        org_id: &str,
        _client_id: &str,
        refresh: Option<String>,
        _scope: &str,
    ) -> String {
        let token = format!("{}!AR8AQ{}", &org_id[..15], grant::random_token(92).replace('-', "."));
        self.access.insert(token.clone(), AccessToken { refresh, live: true });
        token
    }

    pub(crate) fn issue_refresh(&mut self, client_id: &str, scope: &str) -> String {
        let token = format!("5Aep861{}", grant::random_alnum(80));
        self.refresh.insert(
            token.clone(),
            RefreshToken {
                client_id: client_id.into(),
                scope: scope.into(),
                live: true,
            },
        );
        token
    }

    pub(crate) fn valid(&self, token: &str) -> bool {
        self.access.get(token).is_some_and(|t| t.live)
    }

    pub(crate) fn expire_sessions(&mut self) {
        for t in self.access.values_mut() {
            t.live = false;
        }
    }

    pub(crate) fn revoke_all(&mut self) {
        self.expire_sessions();
        for t in self.refresh.values_mut() {
            t.live = false;
        }
    }

    pub(crate) fn live_refresh_tokens(&self) -> usize {
        self.refresh.values().filter(|t| t.live).count()
    }

    /// Revokes `token`; `false` if it was never issued or already revoked.
    fn revoke(&mut self, token: &str) -> bool {
        if let Some(r) = self.refresh.get_mut(token) {
            let was = r.live;
            r.live = false;
            for a in self.access.values_mut() {
                if a.refresh.as_deref() == Some(token) {
                    a.live = false;
                }
            }
            return was;
        }
        match self.access.get_mut(token) {
            Some(a) => std::mem::replace(&mut a.live, false),
            None => false,
        }
    }
}

/// `HMAC-SHA256(key, message)`.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// PKCE S256: `BASE64URL-NOPAD(SHA256(verifier))`.
pub(crate) fn s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn error(code: &str, description: &str) -> Response {
    server::json(
        StatusCode::BAD_REQUEST,
        &json!({"error": code, "error_description": description}),
    )
}

fn error_page(org: &Org, code: &str, description: &str) -> Response {
    let page = OAuthErrorPage {
        vendor: "Salesforce",
        dark: false,
        org: org.label(),
        code: code.into(),
        description: description.into(),
    };
    server::page(StatusCode::BAD_REQUEST, page.render())
}

/// Checks of both authorize steps; `Err` is the error page or redirect.
fn check_authorize(org: &Org, p: &Params) -> Result<String, Box<Response>> {
    let client_id = p.get("client_id").map(String::as_str).unwrap_or_default();
    if !org.apps.iter().any(|a| a.client_id == client_id) {
        return Err(Box::new(error_page(
            org,
            "invalid_client_id",
            "client identifier invalid",
        )));
    }
    let redirect_uri = p.get("redirect_uri").cloned().unwrap_or_default();
    if url::Url::parse(&redirect_uri).is_err() {
        return Err(Box::new(error_page(
            org,
            "redirect_uri_mismatch",
            "redirect_uri must match configuration",
        )));
    }
    let state = p.get("state").map(String::as_str).unwrap_or_default();
    let fail = |code: &str, description: &str| {
        let mut pairs = vec![("error", code), ("error_description", description)];
        if !state.is_empty() {
            pairs.push(("state", state));
        }
        grant::redirect_to(&redirect_uri, &pairs)
            .map_or_else(|| error_page(org, code, description), |l| server::found(&l))
    };
    if p.get("response_type").map(String::as_str) != Some("code") {
        return Err(Box::new(fail(
            "unsupported_response_type",
            "response type not supported",
        )));
    }
    let method = p.get("code_challenge_method").map(String::as_str).unwrap_or_default();
    if p.get("code_challenge").is_some_and(|c| !c.is_empty()) && !method.is_empty() && method != "S256" {
        return Err(Box::new(fail("invalid_request", "invalid code_challenge_method")));
    }
    Ok(redirect_uri)
}

/// What a scope lets the app do, as Salesforce's consent page words it.
fn scope_text(scope: &str) -> String {
    match scope {
        "api" => "Manage user data via APIs (api)".into(),
        "refresh_token" | "offline_access" => "Perform requests at any time (refresh_token, offline_access)".into(),
        "full" => "Full access (full)".into(),
        "id" | "profile" | "email" => format!("Access the identity URL service ({scope})"),
        "openid" => "Access unique user identifiers (openid)".into(),
        "web" => "Access the Salesforce API Platform (web)".into(),
        "chatter_api" => "Access Connect REST API resources (chatter_api)".into(),
        other => format!("Use the {other} scope"),
    }
}

fn consent(org: &Org, p: &Params, login_error: Option<&str>) -> Response {
    let st = org.lock();
    let client_id = p.get("client_id").cloned().unwrap_or_default();
    let scope = p.get("scope").cloned().unwrap_or_default();
    let page = ConsentPage {
        vendor: "Salesforce",
        dark: false,
        org: org.label(),
        org_name: st.data.gen.org_name.clone(),
        username: p.get("username").cloned().unwrap_or_else(|| st.data.gen.username(0)),
        password_hint: ADMIN_PASSWORD,
        login_error: login_error.map(str::to_owned),
        scopes: scope.split_whitespace().map(scope_text).collect(),
        response_type: p.get("response_type").cloned().unwrap_or_default(),
        client_id,
        redirect_uri: p.get("redirect_uri").cloned().unwrap_or_default(),
        scope,
        state: p.get("state").cloned().unwrap_or_default(),
        code_challenge: p.get("code_challenge").cloned().unwrap_or_default(),
        code_challenge_method: p.get("code_challenge_method").cloned().unwrap_or_default(),
    };
    drop(st);
    server::page(StatusCode::OK, page.render())
}

/// `GET /services/oauth2/authorize`
pub(crate) async fn authorize(State(org): State<Arc<Org>>, Query(p): Query<Params>) -> Response {
    match check_authorize(&org, &p) {
        Ok(_) => consent(&org, &p, None),
        Err(r) => *r,
    }
}

fn password_ok(given: &str) -> bool {
    given == ADMIN_PASSWORD || given == format!("{ADMIN_PASSWORD}{SECURITY_TOKEN}")
}

/// `POST /services/oauth2/authorize`: the login + consent form.
pub(crate) async fn decide(State(org): State<Arc<Org>>, Form(p): Form<Params>) -> Response {
    let redirect_uri = match check_authorize(&org, &p) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let state = p.get("state").cloned().unwrap_or_default();
    let mut pairs: Vec<(&str, String)> = Vec::new();
    if p.get("decision").map(String::as_str) == Some("allow") {
        let username = p.get("username").map(String::as_str).unwrap_or_default();
        let right_user = org.lock().data.gen.username(0) == username;
        if !right_user || !password_ok(p.get("password").map(String::as_str).unwrap_or_default()) {
            return consent(
                &org,
                &p,
                Some("Please check your username and password. If you still can't log in, contact your Salesforce administrator."),
            );
        }
        let code = format!("aPrx{}==", grant::random_alnum(76));
        let challenge = p.get("code_challenge").filter(|c| !c.is_empty()).cloned();
        let g = CodeGrant {
            client_id: p.get("client_id").cloned().unwrap_or_default(),
            redirect_uri: redirect_uri.clone(),
            scope: p.get("scope").cloned().unwrap_or_default(),
            challenge,
        };
        org.lock().codes.issue(code.clone(), g, Instant::now());
        pairs.push(("code", code));
    } else {
        pairs.push(("error", "access_denied".into()));
        pairs.push(("error_description", "end-user denied authorization".into()));
    }
    if !state.is_empty() {
        pairs.push(("state", state));
    }
    let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    match grant::redirect_to(&redirect_uri, &borrowed) {
        Some(location) => server::found(&location),
        None => error_page(&org, "redirect_uri_mismatch", "redirect_uri must match configuration"),
    }
}

/// The identity URL of the admin user on this org.
fn identity_url(org: &Org, org_id: &str, user_id: &str) -> String {
    format!("{}/id/{org_id}/{user_id}", org.base)
}

/// `POST /services/oauth2/token`
pub(crate) async fn token(State(org): State<Arc<Org>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = grant::parse_form(&body);
    let (client_id, client_secret) = grant::client_credentials(&headers, &form);
    let grant_type = form.get("grant_type").map(String::as_str).unwrap_or_default();
    if !matches!(grant_type, "authorization_code" | "refresh_token" | "password") {
        return error("unsupported_grant_type", "grant type not supported");
    }
    let Some(app) = org
        .apps
        .iter()
        .find(|a| Some(a.client_id.as_str()) == client_id.as_deref())
    else {
        return error("invalid_client_id", "client identifier invalid");
    };
    let secret_ok = client_secret.as_deref() == Some(app.client_secret.as_str());
    let mut st = org.lock();
    let org_id = st.data.gen.org_id.clone();
    let user_id = st.data.admin_id();
    let (scope, refresh) = match grant_type {
        "authorization_code" => {
            let code = form.get("code").map(String::as_str).unwrap_or_default();
            let g = match st.codes.peek_within(code, Instant::now(), CODE_LIFETIME) {
                Ok(g) => g,
                Err(CodeError::Expired) => return error("invalid_grant", "expired authorization code"),
                Err(_) => return error("invalid_grant", "invalid authorization code"),
            };
            if g.client_id != app.client_id {
                return error("invalid_grant", "invalid authorization code");
            }
            if form.get("redirect_uri").map(String::as_str) != Some(g.redirect_uri.as_str()) {
                return error("redirect_uri_mismatch", "redirect_uri must match configuration");
            }
            if let Some(challenge) = &g.challenge {
                let verifier = form.get("code_verifier").map(String::as_str).unwrap_or_default();
                if s256(verifier) != *challenge {
                    return error("invalid_grant", "invalid code verifier");
                }
            }
            if !secret_ok {
                return error("invalid_client", "invalid client credentials");
            }
            st.codes.consume(code);
            let scope = if g.scope.is_empty() {
                "api refresh_token".to_owned()
            } else {
                g.scope.clone()
            };
            let wants_refresh = scope
                .split_whitespace()
                .any(|s| matches!(s, "refresh_token" | "offline_access" | "full"));
            let refresh = wants_refresh.then(|| st.tokens.issue_refresh(&app.client_id, &scope));
            (scope, refresh)
        }
        "refresh_token" => {
            if !secret_ok && client_secret.is_some() {
                return error("invalid_client", "invalid client credentials");
            }
            let given = form.get("refresh_token").map(String::as_str).unwrap_or_default();
            let Some(r) = st
                .tokens
                .refresh
                .get(given)
                .filter(|r| r.live && r.client_id == app.client_id)
            else {
                return error("invalid_grant", "expired access/refresh token");
            };
            let scope = r.scope.clone();
            let access = st
                .tokens
                .issue_access(&org_id, &app.client_id, Some(given.to_owned()), &scope);
            let instance = st.take_instance_fault();
            drop(st);
            return token_answer(&org, app, &access, None, &scope, &org_id, &user_id, instance);
        }
        _ => {
            if !secret_ok {
                return error("invalid_client", "invalid client credentials");
            }
            let username = form.get("username").map(String::as_str).unwrap_or_default();
            let password = form.get("password").map(String::as_str).unwrap_or_default();
            if username != st.data.gen.username(0) || !password_ok(password) {
                return error("invalid_grant", "authentication failure");
            }
            ("api web full refresh_token".to_owned(), None)
        }
    };
    let access = st.tokens.issue_access(&org_id, &app.client_id, refresh.clone(), &scope);
    let instance = st.take_instance_fault();
    drop(st);
    tracing::info!(org = org.label(), grant_type, "salesforce stand-in: token issued");
    token_answer(
        &org,
        app,
        &access,
        refresh.as_deref(),
        &scope,
        &org_id,
        &user_id,
        instance,
    )
}

/// A token answer; `instance` replaces the org's own `instance_url` (an
/// injected [`super::SalesforceFault::InstanceUrl`]).
#[allow(clippy::too_many_arguments)]
fn token_answer(
    org: &Org,
    app: &crate::OAuthApp,
    access: &str,
    refresh: Option<&str>,
    scope: &str,
    org_id: &str,
    user_id: &str,
    instance: Option<String>,
) -> Response {
    let id = identity_url(org, org_id, user_id);
    let issued_at = chrono::Utc::now().timestamp_millis().to_string();
    let signature = base64::engine::general_purpose::STANDARD.encode(hmac_sha256(
        app.client_secret.as_bytes(),
        format!("{id}{issued_at}").as_bytes(),
    ));
    let mut body = json!({
        "access_token": access,
        "signature": signature,
        "scope": scope,
        "instance_url": instance.unwrap_or_else(|| org.base.clone()),
        "id": id,
        "token_type": "Bearer",
        "issued_at": issued_at,
    });
    if let Some(r) = refresh {
        body["refresh_token"] = json!(r);
    }
    server::json(StatusCode::OK, &body)
}

/// `POST /services/oauth2/revoke` (`token` in the form or, for GET, the
/// query string).
pub(crate) async fn revoke(State(org): State<Arc<Org>>, Query(q): Query<Params>, body: Bytes) -> Response {
    let mut form = grant::parse_form(&body);
    form.extend(q);
    let token = form.get("token").map(String::as_str).unwrap_or_default();
    if org.lock().tokens.revoke(token) {
        StatusCode::OK.into_response()
    } else {
        server::json(StatusCode::BAD_REQUEST, &json!({"error": "invalid_token"}))
    }
}

/// The Bearer token of a request, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("oauth")).then(|| token.trim().to_owned())
}

fn bad_token() -> Response {
    (StatusCode::FORBIDDEN, "Bad_OAuth_Token").into_response()
}

fn user_urls(org: &Org, org_id: &str, user_id: &str) -> Value {
    let b = &org.base;
    json!({
        "enterprise": format!("{b}/services/Soap/c/{{version}}/{org_id}"),
        "metadata": format!("{b}/services/Soap/m/{{version}}/{org_id}"),
        "partner": format!("{b}/services/Soap/u/{{version}}/{org_id}"),
        "rest": format!("{b}/services/data/v{{version}}/"),
        "sobjects": format!("{b}/services/data/v{{version}}/sobjects/"),
        "search": format!("{b}/services/data/v{{version}}/search/"),
        "query": format!("{b}/services/data/v{{version}}/query/"),
        "recent": format!("{b}/services/data/v{{version}}/recent/"),
        "tooling_soap": format!("{b}/services/Soap/T/{{version}}/{org_id}"),
        "tooling_rest": format!("{b}/services/data/v{{version}}/tooling/"),
        "profile": format!("{b}/{user_id}"),
        "feeds": format!("{b}/services/data/v{{version}}/chatter/feeds"),
        "groups": format!("{b}/services/data/v{{version}}/chatter/groups"),
        "users": format!("{b}/services/data/v{{version}}/chatter/users"),
        "feed_items": format!("{b}/services/data/v{{version}}/chatter/feed-items"),
        "feed_elements": format!("{b}/services/data/v{{version}}/chatter/feed-elements"),
        "custom_domain": b,
    })
}

/// `GET /services/oauth2/userinfo` (OpenID Connect claims).
pub(crate) async fn userinfo(State(org): State<Arc<Org>>, headers: HeaderMap) -> Response {
    let st = org.lock();
    if !bearer(&headers).is_some_and(|t| st.tokens.valid(&t)) {
        return bad_token();
    }
    let g = &st.data.gen;
    let org_id = g.org_id.clone();
    let user_id = g.user_id(0);
    let body = json!({
        "sub": identity_url(&org, &org_id, &user_id),
        "user_id": user_id,
        "organization_id": org_id,
        "preferred_username": g.username(0),
        "nickname": g.user_alias(0),
        "name": g.user_name(0),
        "email": g.user_email(0),
        "email_verified": true,
        "given_name": g.user_first(0),
        "family_name": g.user_last(0),
        "zoneinfo": "America/Los_Angeles",
        "photos": {"picture": format!("{}/profilephoto/005/F", org.base), "thumbnail": format!("{}/profilephoto/005/T", org.base)},
        "profile": format!("{}/{user_id}", org.base),
        "picture": format!("{}/profilephoto/005/F", org.base),
        "address": {},
        "is_salesforce_integration_user": false,
        "urls": user_urls(&org, &org_id, &user_id),
        "active": true,
        "user_type": "STANDARD",
        "language": "en_US",
        "locale": "en_US",
        "utcOffset": -28_800_000,
        "updated_at": "2024-01-02T03:04:05Z",
        "is_app_installed": true,
    });
    drop(st);
    server::json(StatusCode::OK, &body)
}

/// `GET /id/{orgId}/{userId}`: the identity URL.
pub(crate) async fn identity(
    State(org): State<Arc<Org>>,
    Path((org_id, user_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let st = org.lock();
    if !bearer(&headers).is_some_and(|t| st.tokens.valid(&t)) {
        return bad_token();
    }
    let g = &st.data.gen;
    if super::ids::id15(&org_id) != super::ids::id15(&g.org_id)
        || super::ids::id15(&user_id) != super::ids::id15(&g.user_id(0))
    {
        return (StatusCode::FORBIDDEN, "Bad_Id").into_response();
    }
    let (org_id, user_id) = (g.org_id.clone(), g.user_id(0));
    let body = json!({
        "id": identity_url(&org, &org_id, &user_id),
        "asserted_user": true,
        "user_id": user_id,
        "organization_id": org_id,
        "username": g.username(0),
        "nick_name": g.user_alias(0),
        "display_name": g.user_name(0),
        "email": g.user_email(0),
        "email_verified": true,
        "first_name": g.user_first(0),
        "last_name": g.user_last(0),
        "timezone": "America/Los_Angeles",
        "photos": {"picture": format!("{}/profilephoto/005/F", org.base), "thumbnail": format!("{}/profilephoto/005/T", org.base)},
        "addr_street": null, "addr_city": null, "addr_state": null, "addr_country": null, "addr_zip": null,
        "mobile_phone": null,
        "mobile_phone_verified": false,
        "is_lightning_login_user": false,
        "status": {"created_date": null, "body": null},
        "urls": user_urls(&org, &org_id, &user_id),
        "active": true,
        "user_type": "STANDARD",
        "language": "en_US",
        "locale": "en_US",
        "utcOffset": -28_800_000,
        "last_modified_date": "2024-01-02T03:04:05.000Z",
        "is_app_installed": true,
    });
    drop(st);
    server::json(StatusCode::OK, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn s256_is_unpadded_base64url_of_sha256() {
        // Cross-checked with Python's hashlib + base64.urlsafe_b64encode.
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gXFcq4ejk"),
            "GU1kqj02YyrSo6zWfssbJB1TvsOhz4695HB8WBFaQQs"
        );
    }

    #[test]
    fn revoking_a_refresh_token_kills_its_access_tokens() {
        let mut t = Tokens::default();
        let r = t.issue_refresh("c", "api");
        let a1 = t.issue_access("00D5e0000000001AAA", "c", Some(r.clone()), "api");
        let a2 = t.issue_access("00D5e0000000001AAA", "c", None, "api");
        assert!(t.valid(&a1) && t.valid(&a2));
        assert!(t.revoke(&r));
        assert!(!t.valid(&a1));
        assert!(t.valid(&a2));
        assert!(!t.revoke(&r), "already revoked");
        assert!(!t.revoke("nope"));
    }
}
