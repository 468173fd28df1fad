//! The authenticated connection to one org. A [`Client`] holds what Perly
//! stores about a connection ([`Connection`]: login host, instance host,
//! refresh token), the current access token and the last API usage
//! Salesforce reported. Every API call of this crate goes through one
//! private `send`, which in order:
//!
//! 1. refuses the call if Perly's [`Budget`] share is used up
//!    ([`Error::OverBudget`], nothing sent), then waits [`Budget::pace`];
//! 2. attaches `Authorization: Bearer …`, fetching an access token by the
//!    refresh grant first if there is none yet;
//! 3. on a 401 (`INVALID_SESSION_ID`) refreshes the access token once —
//!    one refresh for all concurrent callers — and retries once; a second
//!    401 is [`Error::SessionExpired`], a refused refresh
//!    [`Error::ConnectionBroken`] (remembered: later calls fail at once);
//! 4. records `Sforce-Limit-Info` from every answer ([`Client::usage`]);
//! 5. turns error answers into [`Error`]s (`REQUEST_LIMIT_EXCEEDED` is
//!    [`Error::LimitExceeded`] and is never retried).
//!
//! The REST, Bulk, Tooling and Chatter calls themselves live in
//! [`crate::rest`] and [`crate::bulk`] as further `impl Client` blocks.
//! Tokens never reach a log line or a `Debug` output.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use perly_net::Outbound;
use reqwest::{header, Method, StatusCode};
use secrecy::{ExposeSecret as _, SecretString};
use serde::de::DeserializeOwned;
use url::Url;

use crate::error::{body_error, from_response, transport, Error, Result};
use crate::limits::{parse_limit_info, ApiUsage, Budget};
use crate::oauth::{self, OAuthApp};

/// The REST API version every path uses (`/services/data/v61.0/…`).
pub const API_VERSION: &str = "v61.0";

/// The most of one JSON answer (a query page, a describe, a job's state,
/// an error) Perly reads; a larger answer is [`Error::Protocol`].
pub const MAX_JSON_BYTES: usize = 8 * 1024 * 1024;

/// What Perly keeps about one Salesforce connection.
#[derive(Clone)]
pub struct Connection {
    /// Where tokens are refreshed and revoked: `https://login.salesforce.com`,
    /// `https://test.salesforce.com` or the org's My Domain.
    pub login_url: Url,
    /// The org's API host, from the token answer's `instance_url`.
    pub instance_url: Url,
    pub refresh_token: SecretString,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("login_url", &self.login_url.as_str())
            .field("instance_url", &self.instance_url.as_str())
            .field("refresh_token", &"<redacted>")
            .finish()
    }
}

/// A Salesforce API client for one org; cheap to clone (all clones share
/// the token, the usage figures and the single refresh).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: Outbound,
    app: OAuthApp,
    login_url: Url,
    instance_url: Url,
    budget: Budget,
    auth: Mutex<Auth>,
    /// Held while a refresh grant is in flight, so concurrent 401s share one.
    refreshing: tokio::sync::Mutex<()>,
    usage: Mutex<Option<ApiUsage>>,
}

struct Auth {
    access: Option<SecretString>,
    /// Bumped on every new access token; tells a caller that saw a 401 with
    /// token `n` whether someone else already replaced it.
    generation: u64,
    refresh_token: SecretString,
    /// Whether a refresh answer rotated the refresh token.
    rotated: bool,
    /// Set once a refresh was refused: the connection needs a reconnect.
    broken: Option<String>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("instance_url", &self.inner.instance_url.as_str())
            .field("budget", &self.inner.budget)
            .field("usage", &self.usage())
            .finish_non_exhaustive()
    }
}

/// Locks a std mutex, carrying on after a panic elsewhere (the guarded
/// data stays consistent: every critical section is a few assignments).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One request, kept so it can be sent again after a refresh.
pub(crate) struct Request {
    pub method: Method,
    pub url: Url,
    pub json: Option<String>,
    pub accept: &'static str,
}

impl Request {
    pub(crate) fn new(method: Method, url: Url) -> Request {
        Request {
            method,
            url,
            json: None,
            accept: "application/json",
        }
    }

    pub(crate) fn json(mut self, body: &impl serde::Serialize) -> Result<Request> {
        let text = serde_json::to_string(body).map_err(|e| Error::Protocol(format!("request body: {e}")))?;
        self.json = Some(text);
        Ok(self)
    }
}

impl Client {
    /// A client for `conn`. No request is made until the first API call.
    /// The caller has checked `conn`'s hosts (see [`crate::hosts`]);
    /// `http` keeps every call off private networks.
    pub fn new(http: Outbound, app: OAuthApp, conn: Connection, budget: Budget) -> Client {
        Client {
            inner: Arc::new(Inner {
                http,
                app,
                login_url: conn.login_url,
                instance_url: conn.instance_url,
                budget,
                auth: Mutex::new(Auth {
                    access: None,
                    generation: 0,
                    refresh_token: conn.refresh_token,
                    rotated: false,
                    broken: None,
                }),
                refreshing: tokio::sync::Mutex::new(()),
                usage: Mutex::new(None),
            }),
        }
    }

    /// Seeds the access token (e.g. the one the code exchange just
    /// returned), saving the first refresh.
    pub fn with_access_token(self, access_token: SecretString) -> Client {
        {
            let mut auth = lock(&self.inner.auth);
            auth.access = Some(access_token);
            auth.generation += 1;
        }
        self
    }

    /// The org's API host.
    pub fn instance_url(&self) -> &Url {
        &self.inner.instance_url
    }

    /// The budget this client spends.
    pub fn budget(&self) -> Budget {
        self.inner.budget
    }

    /// The org's API usage as last reported by Salesforce (`None` before the
    /// first answer).
    pub fn usage(&self) -> Option<ApiUsage> {
        *lock(&self.inner.usage)
    }

    /// The connection as it stands now. If the connected app rotates
    /// refresh tokens, `refresh_token` here is the newest one; see
    /// [`Client::refresh_token_rotated`].
    pub fn connection(&self) -> Connection {
        Connection {
            login_url: self.inner.login_url.clone(),
            instance_url: self.inner.instance_url.clone(),
            refresh_token: lock(&self.inner.auth).refresh_token.clone(),
        }
    }

    /// Whether Salesforce handed out a new refresh token since this client
    /// was made; if so, store [`Client::connection`]'s, the old one is dead.
    pub fn refresh_token_rotated(&self) -> bool {
        lock(&self.inner.auth).rotated
    }

    /// `{instance}/services/data/v61.0/{segments…}`, each segment encoded.
    pub(crate) fn data_url(&self, segments: &[&str]) -> Result<Url> {
        let mut all = vec!["services", "data", API_VERSION];
        all.extend_from_slice(segments);
        self.instance_path(&all)
    }

    /// `{instance}/{segments…}`, each segment encoded.
    pub(crate) fn instance_path(&self, segments: &[&str]) -> Result<Url> {
        let mut url = self.inner.instance_url.clone();
        url.set_query(None);
        url.path_segments_mut()
            .map_err(|()| Error::Protocol("instance URL cannot carry a path".into()))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// A path Salesforce handed back (`nextRecordsUrl`), on the instance.
    pub(crate) fn instance_relative(&self, path: &str) -> Result<Url> {
        if !path.starts_with('/') {
            return Err(Error::Protocol(format!("unexpected resource path {path:?}")));
        }
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let mut url = oauth::endpoint(&self.inner.instance_url, path);
        if !query.is_empty() {
            url.set_query(Some(query));
        }
        Ok(url)
    }

    /// Sends and reads a JSON answer.
    pub(crate) async fn send_json<T: DeserializeOwned>(&self, req: Request) -> Result<T> {
        let what = format!("{} {}", req.method, req.url.path());
        let resp = self.send(req).await?;
        let bytes = perly_net::read_capped(resp, MAX_JSON_BYTES)
            .await
            .map_err(|e| body_error(&what, e))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Protocol(format!("{what}: {e}")))
    }

    /// The one way out to the API: budget, pacing, bearer token, one
    /// refresh-and-retry on 401, usage recording, error mapping. Returns
    /// only 2xx answers.
    pub(crate) async fn send(&self, req: Request) -> Result<reqwest::Response> {
        let budget = self.inner.budget;
        if let Some(usage) = self.usage() {
            budget.check(usage)?;
            if let Some(delay) = budget.pace(usage) {
                tracing::debug!(%usage, delay_ms = delay.as_millis() as u64, "pacing Salesforce calls");
                tokio::time::sleep(delay).await;
            }
        }
        let (mut token, mut generation) = self.access_token().await?;
        let mut retried = false;
        loop {
            let resp = self.dispatch(&req, &token).await?;
            let status = resp.status();
            if status.is_success() {
                return Ok(resp);
            }
            let body = perly_net::read_text_capped(resp, MAX_JSON_BYTES)
                .await
                .map_err(|e| body_error(&format!("{} {}", req.method, req.url.path()), e))?;
            if status == StatusCode::UNAUTHORIZED {
                if retried {
                    tracing::warn!(method = %req.method, path = req.url.path(), "Salesforce refused a freshly refreshed session");
                    return Err(Error::SessionExpired);
                }
                retried = true;
                tracing::debug!(method = %req.method, path = req.url.path(), "Salesforce session expired, refreshing");
                self.renew(Some(generation)).await?;
                (token, generation) = self.access_token().await?;
                continue;
            }
            let err = from_response(status.as_u16(), &body);
            tracing::debug!(method = %req.method, path = req.url.path(), status = status.as_u16(), code = err.code().unwrap_or_default(), "Salesforce error answer");
            return Err(err);
        }
    }

    /// Sends once with `token` and records the usage header.
    async fn dispatch(&self, req: &Request, token: &SecretString) -> Result<reqwest::Response> {
        let mut builder = self
            .inner
            .http
            .request(req.method.clone(), req.url.clone())?
            .bearer_auth(token.expose_secret())
            .header(header::ACCEPT, req.accept);
        if let Some(json) = &req.json {
            builder = builder
                .header(header::CONTENT_TYPE, "application/json")
                .body(json.clone());
        }
        let resp = builder.send().await.map_err(transport)?;
        if let Some(usage) = resp
            .headers()
            .get("sforce-limit-info")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_limit_info)
        {
            *lock(&self.inner.usage) = Some(usage);
        }
        Ok(resp)
    }

    /// The current access token and its generation, refreshing first when
    /// there is none.
    async fn access_token(&self) -> Result<(SecretString, u64)> {
        loop {
            {
                let auth = lock(&self.inner.auth);
                if let Some(reason) = &auth.broken {
                    return Err(Error::ConnectionBroken(reason.clone()));
                }
                if let Some(token) = &auth.access {
                    return Ok((token.clone(), auth.generation));
                }
            }
            self.renew(None).await?;
        }
    }

    /// Gets a new access token unless another caller already replaced the
    /// one that failed (`seen`: the generation that got the 401; `None`:
    /// there was no token).
    async fn renew(&self, seen: Option<u64>) -> Result<()> {
        let _single_flight = self.inner.refreshing.lock().await;
        let refresh_token = {
            let auth = lock(&self.inner.auth);
            if let Some(reason) = &auth.broken {
                return Err(Error::ConnectionBroken(reason.clone()));
            }
            let replaced = match seen {
                Some(generation) => auth.generation != generation,
                None => auth.access.is_some(),
            };
            if replaced && auth.access.is_some() {
                return Ok(());
            }
            auth.refresh_token.clone()
        };
        match oauth::refresh(&self.inner.http, &self.inner.login_url, &self.inner.app, &refresh_token).await {
            Ok(grant) => {
                let mut auth = lock(&self.inner.auth);
                auth.access = Some(grant.access_token);
                auth.generation += 1;
                if let Some(rotated) = grant.refresh_token {
                    auth.refresh_token = rotated;
                    auth.rotated = true;
                }
                tracing::debug!(generation = auth.generation, "Salesforce access token refreshed");
                Ok(())
            }
            Err(Error::ConnectionBroken(reason)) => {
                tracing::warn!(reason = %reason, "Salesforce refused the refresh token; the connection must be reconnected");
                let mut auth = lock(&self.inner.auth);
                auth.access = None;
                auth.broken = Some(reason.clone());
                Err(Error::ConnectionBroken(reason))
            }
            Err(other) => Err(other),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn client(instance: &str) -> Client {
        Client::new(
            Outbound::new(perly_net::Policy::default(), |b| b).unwrap(),
            OAuthApp {
                client_id: "id".into(),
                client_secret: SecretString::from("secret"),
                redirect_uri: "https://perly.example.com/cb".into(),
            },
            Connection {
                login_url: Url::parse("https://login.salesforce.com").unwrap(),
                instance_url: Url::parse(instance).unwrap(),
                refresh_token: SecretString::from("refresh-secret"),
            },
            Budget::default(),
        )
    }

    #[test]
    fn data_urls_are_versioned_and_encoded() {
        let c = client("https://acme.my.salesforce.com");
        assert_eq!(
            c.data_url(&["sobjects", "Account", "describe"]).unwrap().as_str(),
            "https://acme.my.salesforce.com/services/data/v61.0/sobjects/Account/describe"
        );
        assert_eq!(
            c.data_url(&["sobjects", "a/b?c"]).unwrap().path(),
            "/services/data/v61.0/sobjects/a%2Fb%3Fc"
        );
        let prefixed = client("http://127.0.0.1:1/sf/");
        assert_eq!(
            prefixed.data_url(&["limits"]).unwrap().path(),
            "/sf/services/data/v61.0/limits"
        );
    }

    #[test]
    fn next_records_urls_stay_on_the_instance() {
        let c = client("https://acme.my.salesforce.com");
        assert_eq!(
            c.instance_relative("/services/data/v61.0/query/01gD0000002HU6KIAW-2000")
                .unwrap()
                .as_str(),
            "https://acme.my.salesforce.com/services/data/v61.0/query/01gD0000002HU6KIAW-2000"
        );
        assert!(c.instance_relative("https://evil.example.com/x").is_err());
    }

    #[test]
    fn debug_output_hides_tokens() {
        let c = client("https://acme.my.salesforce.com").with_access_token(SecretString::from("access-secret"));
        let shown = format!("{c:?} {:?}", c.connection());
        assert!(!shown.contains("access-secret"), "{shown}");
        assert!(!shown.contains("refresh-secret"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
