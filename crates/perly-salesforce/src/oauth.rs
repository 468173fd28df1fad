//! The OAuth 2.0 web-server flow with PKCE, as a connected app runs it:
//!
//! 1. [`Pkce::new`] and [`random_state`] make the per-attempt secrets; the
//!    caller keeps both (e.g. in a signed cookie) and sends the admin to
//!    [`authorize_url`].
//! 2. Salesforce redirects back with `code` and `state`; the caller checks
//!    `state` and calls [`exchange_code`] with the verifier, getting a
//!    [`TokenGrant`]: access and refresh tokens, the org's `instance_url`
//!    and the identity URL naming the org and user.
//! 3. Later, [`refresh`] trades the stored refresh token for a new access
//!    token ([`crate::Client`] does this by itself on 401), and
//!    [`revoke`] ends the connection when the admin disconnects.
//!
//! All token posts are `application/x-www-form-urlencoded` with the client
//! id and secret in the body, as Salesforce documents. Tokens and secrets
//! are [`SecretString`]s; every type holding one has a redacting `Debug`.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use url::Url;

use perly_net::Outbound;

use crate::error::{body_error, parse_oauth_error, snippet, transport, Error, Result};
use crate::hosts::check_instance;

/// The most of a token or revoke answer Perly reads (a few hundred bytes
/// in practice).
pub const MAX_TOKEN_ANSWER_BYTES: usize = 1024 * 1024;

/// Scopes Perly asks for: `api` (REST, Bulk 2.0, Tooling and Chatter),
/// `refresh_token` (work while the admin is away) and `id` (the UserInfo
/// endpoint, which `api` alone does not open).
pub const SCOPES: &str = "api refresh_token id";

/// `login` makes the admin sign in again, so they pick the org on purpose
/// (not whichever org the browser happens to be signed in to); `consent`
/// shows the approval page every time, so the scopes asked for are the
/// scopes granted.
pub const PROMPT: &str = "login consent";

/// A connected app's credentials.
#[derive(Clone)]
pub struct OAuthApp {
    /// The connected app's consumer key.
    pub client_id: String,
    /// The connected app's consumer secret.
    pub client_secret: SecretString,
    /// The callback URL, exactly as registered on the connected app.
    pub redirect_uri: String,
}

impl fmt::Debug for OAuthApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthApp")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("redirect_uri", &self.redirect_uri)
            .finish()
    }
}

/// A PKCE pair (RFC 7636, `S256`). The verifier stays with Perly until the
/// code exchange; only the challenge goes into the authorize URL.
#[derive(Clone)]
pub struct Pkce {
    verifier: SecretString,
    challenge: String,
}

impl fmt::Debug for Pkce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkce")
            .field("verifier", &"<redacted>")
            .field("challenge", &self.challenge)
            .finish()
    }
}

impl Pkce {
    /// A fresh pair from 32 random bytes: a 43-character verifier (the
    /// RFC's minimum length, 256 bits of entropy).
    #[allow(clippy::new_without_default)]
    pub fn new() -> Pkce {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Pkce::from_bytes(&bytes)
    }

    /// The pair whose verifier is `bytes` in base64url without padding.
    pub fn from_bytes(bytes: &[u8]) -> Pkce {
        Pkce::from_verifier(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The pair for a verifier kept from [`Pkce::new`] (e.g. read back
    /// from a cookie at the callback).
    pub fn from_verifier(verifier: String) -> Pkce {
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Pkce {
            verifier: SecretString::from(verifier),
            challenge,
        }
    }

    /// What to keep until the callback and send to [`exchange_code`].
    pub fn verifier(&self) -> &SecretString {
        &self.verifier
    }

    /// `base64url(SHA-256(verifier))`, for [`authorize_url`].
    pub fn challenge(&self) -> &str {
        &self.challenge
    }
}

/// A fresh `state` value: 128 random bits, base64url.
pub fn random_state() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `{base}{path}`, keeping any path prefix `base` already has (stand-ins
/// may live under one).
pub(crate) fn endpoint(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!("{}{}", base.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// Where to send the admin to approve Perly.
pub fn authorize_url(login_url: &Url, app: &OAuthApp, state: &str, pkce_challenge: &str) -> Url {
    let mut url = endpoint(login_url, "/services/oauth2/authorize");
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &app.client_id)
        .append_pair("redirect_uri", &app.redirect_uri)
        .append_pair("scope", SCOPES)
        .append_pair("state", state)
        .append_pair("code_challenge", pkce_challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("prompt", PROMPT);
    url
}

/// What the token endpoint hands out: on the code exchange always a refresh
/// token; on a refresh usually none (unless the connected app rotates
/// refresh tokens, in which case the new one must replace the stored one).
#[derive(Clone)]
pub struct TokenGrant {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    /// The org's API host (My Domain), for every later call.
    pub instance_url: Url,
    /// The identity URL, `https://login…/id/{org id}/{user id}`.
    pub id: String,
    pub issued_at: Option<DateTime<Utc>>,
    /// Scopes actually granted, space separated.
    pub scope: Option<String>,
}

/// A refresh-grant answer: the same shape as [`TokenGrant`].
pub type AccessGrant = TokenGrant;

impl fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenGrant")
            .field("access_token", &"<redacted>")
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "<redacted>"))
            .field("instance_url", &self.instance_url.as_str())
            .field("id", &self.id)
            .field("issued_at", &self.issued_at)
            .field("scope", &self.scope)
            .finish()
    }
}

impl TokenGrant {
    /// The org id, from the identity URL.
    pub fn organization_id(&self) -> Option<&str> {
        identity_part(&self.id, 2)
    }

    /// The connected user's id, from the identity URL.
    pub fn user_id(&self) -> Option<&str> {
        identity_part(&self.id, 1)
    }
}

/// The `n`th segment from the end of an identity URL (`…/id/{org}/{user}`).
fn identity_part(id: &str, from_end: usize) -> Option<&str> {
    let mut parts = id.trim_end_matches('/').rsplit('/');
    let user = parts.next()?;
    let org = parts.next()?;
    (parts.next()? == "id").then_some(if from_end == 1 { user } else { org })
}

#[derive(Deserialize)]
struct RawGrant {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    instance_url: String,
    id: String,
    #[serde(default)]
    issued_at: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

/// Reads a successful token answer.
pub(crate) fn parse_grant(body: &str) -> Result<TokenGrant> {
    let raw: RawGrant = serde_json::from_str(body).map_err(|e| Error::Protocol(format!("token answer: {e}")))?;
    let instance_url =
        Url::parse(&raw.instance_url).map_err(|e| Error::Protocol(format!("token answer instance_url: {e}")))?;
    let issued_at = raw
        .issued_at
        .as_deref()
        .and_then(|ms| ms.parse::<i64>().ok())
        .and_then(DateTime::from_timestamp_millis);
    Ok(TokenGrant {
        access_token: SecretString::from(raw.access_token),
        refresh_token: raw.refresh_token.map(SecretString::from),
        instance_url,
        id: raw.id,
        issued_at,
        scope: raw.scope,
    })
}

/// Posts a form to `{login_url}{path}`; returns the status and body text.
/// The caller has checked `login_url` against [`crate::hosts`].
async fn post_form(http: &Outbound, login_url: &Url, path: &str, form: &[(&str, &str)]) -> Result<(u16, String)> {
    let resp = http
        .post(endpoint(login_url, path))?
        .header(reqwest::header::ACCEPT, "application/json")
        .form(form)
        .send()
        .await
        .map_err(transport)?;
    let status = resp.status().as_u16();
    let body = perly_net::read_text_capped(resp, MAX_TOKEN_ANSWER_BYTES)
        .await
        .map_err(|e| body_error("token answer", e))?;
    Ok((status, body))
}

/// A token answer from `login_url`, whose `instance_url` must be a
/// Salesforce host (or `login_url` itself): Perly will send the tokens there.
fn checked_grant(body: &str, login_url: &Url) -> Result<TokenGrant> {
    let grant = parse_grant(body)?;
    check_instance(&grant.instance_url, login_url)?;
    Ok(grant)
}

/// A refused token post as an [`Error`].
fn token_error(status: u16, body: &str) -> Error {
    match parse_oauth_error(body) {
        Some(e) if status < 500 => Error::OAuth {
            error: snippet(&e.error),
            description: e.error_description.as_deref().map(snippet),
        },
        _ => Error::Api {
            status,
            code: format!("HTTP_{status}"),
            message: snippet(body),
            fields: Vec::new(),
        },
    }
}

/// Trades the callback's `code` (and the PKCE verifier) for tokens. An
/// answer naming an `instance_url` that is not Salesforce's is
/// [`Error::Refused`].
pub async fn exchange_code(
    http: &Outbound,
    login_url: &Url,
    app: &OAuthApp,
    code: &str,
    verifier: &SecretString,
) -> Result<TokenGrant> {
    let (status, body) = post_form(
        http,
        login_url,
        "/services/oauth2/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", &app.client_id),
            ("client_secret", app.client_secret.expose_secret()),
            ("redirect_uri", &app.redirect_uri),
            ("code_verifier", verifier.expose_secret()),
        ],
    )
    .await?;
    if !(200..300).contains(&status) {
        return Err(token_error(status, &body));
    }
    checked_grant(&body, login_url)
}

/// Trades a refresh token for a new access token. `invalid_grant` (revoked,
/// expired, user frozen, app uninstalled) is [`Error::ConnectionBroken`];
/// an `instance_url` that is not Salesforce's is [`Error::Refused`].
pub async fn refresh(
    http: &Outbound,
    login_url: &Url,
    app: &OAuthApp,
    refresh_token: &SecretString,
) -> Result<AccessGrant> {
    let (status, body) = post_form(
        http,
        login_url,
        "/services/oauth2/token",
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &app.client_id),
            ("client_secret", app.client_secret.expose_secret()),
            ("refresh_token", refresh_token.expose_secret()),
        ],
    )
    .await?;
    if !(200..300).contains(&status) {
        return Err(match token_error(status, &body) {
            Error::OAuth { error, description } if error == "invalid_grant" => {
                Error::ConnectionBroken(description.unwrap_or(error))
            }
            other => other,
        });
    }
    checked_grant(&body, login_url)
}

/// Revokes a refresh token (and its access tokens) or one access token.
/// A token Salesforce no longer knows (`invalid_token`) counts as revoked,
/// so disconnecting twice is not an error.
pub async fn revoke(http: &Outbound, login_url: &Url, token: &SecretString) -> Result<()> {
    let (status, body) = post_form(
        http,
        login_url,
        "/services/oauth2/revoke",
        &[("token", token.expose_secret())],
    )
    .await?;
    if (200..300).contains(&status) {
        return Ok(());
    }
    match token_error(status, &body) {
        Error::OAuth { error, .. } if error == "invalid_token" => Ok(()),
        other => Err(other),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::fixtures::spec;

    fn app() -> OAuthApp {
        OAuthApp {
            client_id: "3MVG9.client".into(),
            client_secret: SecretString::from("s3cr3t"),
            redirect_uri: "https://perly.example.com/integrations/salesforce/callback".into(),
        }
    }

    #[test]
    fn pkce_matches_rfc_7636_appendix_b() {
        let bytes = [
            116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186, 22, 212, 37, 77, 105, 214, 191,
            240, 91, 88, 5, 88, 83, 132, 141, 121,
        ];
        let pkce = Pkce::from_bytes(&bytes);
        assert_eq!(
            pkce.verifier().expose_secret(),
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        );
        assert_eq!(pkce.challenge(), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn fresh_pkce_verifiers_are_43_url_safe_chars_and_differ() {
        let a = Pkce::new();
        let b = Pkce::new();
        let v = a.verifier().expose_secret();
        assert_eq!(v.len(), 43);
        assert!(v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(v, b.verifier().expose_secret());
        assert_eq!(Pkce::from_verifier(v.to_string()).challenge(), a.challenge());
    }

    #[test]
    fn pkce_debug_hides_the_verifier() {
        let p = Pkce::from_verifier("verifier-value".into());
        assert!(!format!("{p:?}").contains("verifier-value"));
    }

    #[test]
    fn state_is_128_bits() {
        assert_eq!(random_state().len(), 22);
        assert_ne!(random_state(), random_state());
    }

    #[test]
    fn authorize_url_carries_every_parameter() {
        let login = Url::parse("https://test.salesforce.com").unwrap();
        let url = authorize_url(&login, &app(), "st4te", "ch4llenge");
        assert_eq!(url.path(), "/services/oauth2/authorize");
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], "3MVG9.client");
        assert_eq!(
            q["redirect_uri"],
            "https://perly.example.com/integrations/salesforce/callback"
        );
        assert_eq!(q["scope"], "api refresh_token id");
        assert_eq!(q["state"], "st4te");
        assert_eq!(q["code_challenge"], "ch4llenge");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["prompt"], "login consent");
        assert_eq!(q.len(), 8);
        assert!(!url.as_str().contains("s3cr3t"));
    }

    #[test]
    fn authorize_url_keeps_a_path_prefix() {
        let login = Url::parse("http://127.0.0.1:9000/sf/").unwrap();
        let url = authorize_url(&login, &app(), "s", "c");
        assert_eq!(url.path(), "/sf/services/oauth2/authorize");
    }

    #[test]
    fn code_grant_file_parses() {
        let g = parse_grant(&spec("oauth/token_response_authorization_code_constructed.json")).unwrap();
        assert!(g.access_token.expose_secret().starts_with("00Dxx0000001gPL!"));
        assert!(g.refresh_token.is_some());
        assert_eq!(g.instance_url.as_str(), "https://acme.my.salesforce.com/");
        assert_eq!(g.organization_id(), Some("00Dxx0000001gPLEAY"));
        assert_eq!(g.user_id(), Some("005xx000001SwiUAAS"));
        assert_eq!(g.issued_at.unwrap().timestamp_millis(), 1_708_058_728_442);
        assert_eq!(g.scope.as_deref(), Some("refresh_token api full"));
    }

    #[test]
    fn refresh_grant_file_has_no_refresh_token() {
        let g = parse_grant(&spec("oauth/token_response_refresh_cloudsfdc.json")).unwrap();
        assert!(g.refresh_token.is_none());
        assert_eq!(g.instance_url.host_str(), Some("xxxx.my.salesforce.com"));
    }

    #[test]
    fn classic_grant_file_without_scope_parses() {
        let g = parse_grant(&spec("oauth/token_response_classic_doc_example.json")).unwrap();
        assert!(g.scope.is_none());
        assert_eq!(g.user_id(), Some("005x00000012Q9P"));
    }

    #[test]
    fn grant_debug_hides_tokens() {
        let g = parse_grant(&spec("oauth/token_response_authorization_code_constructed.json")).unwrap();
        let shown = format!("{g:?}");
        assert!(!shown.contains("00Dxx0000001gPL!"), "{shown}");
        assert!(!shown.contains("5Aep861"), "{shown}");
        assert!(!format!("{:?}", app()).contains("s3cr3t"));
    }

    #[test]
    fn a_grant_naming_a_foreign_instance_is_refused() {
        let login = Url::parse("https://login.salesforce.com").unwrap();
        let good = spec("oauth/token_response_authorization_code_constructed.json");
        assert!(checked_grant(&good, &login).is_ok());
        for bad in [
            "http://127.0.0.1:5432",
            "https://169.254.169.254/latest/meta-data",
            "https://evil.example.com",
            "https://acme.my.salesforce.com/services/data/v61.0/sobjects",
            "https://acme.my.salesforce.com:8443",
        ] {
            let body = good.replace("https://acme.my.salesforce.com", bad);
            let e = checked_grant(&body, &login).expect_err(bad);
            assert!(
                matches!(&e, Error::Refused(m) if m.contains("does not call")),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn token_errors_map_to_oauth_errors() {
        let e = token_error(400, &spec("oauth/token_error_invalid_grant_expired.json"));
        assert!(
            matches!(&e, Error::OAuth { error, description: Some(d) } if error == "invalid_grant" && d == "expired access/refresh token")
        );
        assert!(matches!(token_error(503, "down"), Error::Api { status: 503, .. }));
    }
}
