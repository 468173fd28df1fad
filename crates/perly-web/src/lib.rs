//! Perly's HTTP edge. [`app`] builds the router (kept apart from serving so
//! tests and the binary share it); [`error::ApiError`] is the one error type,
//! mapped once to a status and the `{"error": {code, message, field}}` shape;
//! [`auth`] turns a bearer API key into the workspace every handler is scoped
//! to; `api/*` holds one module per resource.

pub mod api;
pub mod auth;
pub mod channels;
pub mod client_ip;
pub mod error;
pub mod health;
pub mod metrics;
pub mod rate_limit;
pub mod salesforce;
pub mod ui;

use std::sync::Arc;

use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use axum::Router;
use chrono::{DateTime, Utc};
use perly_store::{SessionPolicy, SigninLimits, Store};
use tokio::sync::Notify;
use tower_http::set_header::SetResponseHeaderLayer;

/// The clock, injected so tests and the demo can control time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    /// Woken after ingest so rescoring starts at once.
    pub rescore: Arc<Notify>,
    /// Woken when something is queued for delivery (a test message, a reconnect).
    pub deliver: Arc<Notify>,
    /// Slack and Discord endpoints and OAuth clients.
    pub integrations: channels::Integrations,
    /// Salesforce login hosts, connected orgs and the sync worker's wake-up.
    pub salesforce: salesforce::SalesforceSetup,
    /// Base URL of this server, for links (`PERLY_PUBLIC_URL`).
    pub public_url: String,
    /// https, trusted proxies, session lifetimes and sign-in limits.
    pub security: Security,
    /// Rows per second each API key may ingest.
    pub ingest_limit: Arc<rate_limit::IngestLimit>,
    /// Owner and plan filter choices per workspace, refreshed every minute.
    pub facets: Arc<ui::customers::FacetCache>,
    /// Request latencies and ingested rows (served by the binary's metrics listener).
    pub metrics: Arc<metrics::WebMetrics>,
}

impl AppState {
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Cookies are marked Secure when Perly is served over https.
    pub fn secure_cookies(&self) -> bool {
        self.security.https
    }
}

/// The security settings of the web app (`[security]` in the configuration).
#[derive(Debug, Clone, Default)]
pub struct Security {
    /// Perly is served over https, by itself or behind a TLS-terminating
    /// proxy: cookies are `Secure` and every answer carries HSTS. Set by
    /// configuration, never guessed from a request.
    pub https: bool,
    /// Proxies whose `X-Forwarded-For` names the client (sign-in throttling).
    pub trusted_proxies: client_ip::TrustedProxies,
    pub sessions: SessionPolicy,
    pub signin: SigninLimits,
}

/// Sent on every answer when served over https: browsers then refuse plain
/// http to this host (and its subdomains) for a year.
pub const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000; includeSubDomains";

/// The policy of every page: nothing from other hosts, no script, forms post
/// only here, no framing. A page whose form redirects to a vendor's OAuth
/// page (Connect Slack, Connect Salesforce) widens `form-action` to that
/// vendor's login origins only, since browsers apply it to the redirect too.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
     script-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The whole HTTP application: the JSON API and the web pages. Unknown
/// paths get a JSON 404 under `/api/` and a 404 page elsewhere.
pub fn app(state: AppState) -> Router {
    let routes = api::router()
        .merge(ui::router())
        .fallback(|uri: axum::http::Uri| async move {
            if uri.path().starts_with("/api/") {
                error::ApiError::new(axum::http::StatusCode::NOT_FOUND, "not_found", "no such endpoint").into_response()
            } else {
                ui::UiError::NotFound.into_response()
            }
        })
        // Headers on every answer: pages load nothing from other hosts, run
        // no inline script, cannot be framed, and keep URLs out of referrers.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        // Outermost: times every answer, by the route template it matched.
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            metrics::track,
        ));
    let routes = if state.security.https {
        routes.layer(SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(STRICT_TRANSPORT_SECURITY),
        ))
    } else {
        routes
    };
    routes.with_state(state)
}
