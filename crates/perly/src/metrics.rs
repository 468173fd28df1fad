//! Prometheus metrics and the operators' listener (`[metrics] listen`,
//! `PERLY_METRICS__LISTEN`): `GET /metrics` in the OpenMetrics text format
//! (what Prometheus scrapes), `GET /healthz` and `GET /readyz`. The
//! listener is off unless configured, and never part of the app's own
//! listener, so users never reach it; put it on loopback or an internal
//! network.
//!
//! What is counted as it happens (per process, since it started): HTTP
//! requests by route template and status class ([`perly_web::metrics`]),
//! ingested rows by result, customers rescored and alerts raised by kind
//! ([`crate::rescore::RescoreMetrics`]), Slack and Discord messages by
//! platform and outcome ([`perly_delivery::metrics`]), Salesforce rows
//! pulled and pushed and actions written ([`perly_salesforce::metrics`]).
//!
//! What is read from the database at scrape time ([`perly_store::Ops`]),
//! with a few cheap queries (see that module for their cost), so every
//! replica shows the same queue: the rescoring queue's depth and lag, the
//! outbox per platform and channel state (depth, due rows, the oldest due
//! row's age, the largest backlog of one channel), channels, Salesforce
//! connections and the fullest API budget. If those queries fail or take
//! longer than [`SCRAPE_DB_TIMEOUT`], `perly_database_up` is 0 and they are
//! left out of that scrape (never stale values).
//!
//! Nothing names a customer, a workspace, a channel or a secret: every
//! label value comes from a fixed set, and outbox figures are per platform
//! (two values) and channel state (three) rather than per channel, whose
//! number users decide.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use perly_delivery::metrics::DeliveryMetrics;
use perly_domain::channels::Platform;
use perly_salesforce::metrics::SalesforceMetrics;
use perly_store::{ChannelState, OpsSnapshot, Store};
use perly_web::metrics::WebMetrics;
use perly_web::Clock;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::rescore::RescoreMetrics;

/// How long the scrape-time database queries may take together.
pub const SCRAPE_DB_TIMEOUT: Duration = Duration::from_secs(5);

/// The OpenMetrics text format's content type.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A process's metrics: the registry of counters and histograms, and the
/// parts each component counts into.
pub struct Metrics {
    registry: Registry,
    pub web: Arc<WebMetrics>,
    pub delivery: Arc<DeliveryMetrics>,
    pub salesforce: Arc<SalesforceMetrics>,
    pub rescore: Arc<RescoreMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutboxLabels {
    platform: &'static str,
    /// `active`, `paused` or `broken`.
    channel_state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    /// `connected` or `broken`.
    state: &'static str,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let web = Arc::new(WebMetrics::default());
        let delivery = Arc::new(DeliveryMetrics::default());
        let salesforce = Arc::new(SalesforceMetrics::default());
        let rescore = Arc::new(RescoreMetrics::default());
        let build = Family::<VersionLabels, Gauge>::default();
        build
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("perly_build_info", "Perly's version (always 1)", build);
        web.register(&mut registry);
        rescore.register(&mut registry);
        delivery.register(&mut registry);
        salesforce.register(&mut registry);
        Self {
            registry,
            web,
            delivery,
            salesforce,
            rescore,
        }
    }

    /// The exposition: the counters, then the database's figures at `now`.
    pub async fn render(&self, store: &dyn Store, now: DateTime<Utc>) -> String {
        let snapshot = match tokio::time::timeout(SCRAPE_DB_TIMEOUT, store.ops_snapshot(now)).await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "metrics: the database figures could not be read");
                None
            }
            Err(_) => {
                tracing::warn!("metrics: the database figures took too long; left out of this scrape");
                None
            }
        };
        let scrape = scrape_registry(snapshot.as_ref(), now);
        let mut out = String::new();
        // Writing to a String cannot fail; the encoder's errors are only
        // the writer's.
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry)
            .and_then(|()| prometheus_client::encoding::text::encode_registry(&mut out, &scrape))
            .and_then(|()| prometheus_client::encoding::text::encode_eof(&mut out));
        out
    }
}

fn seconds_between(later: DateTime<Utc>, earlier: Option<DateTime<Utc>>) -> f64 {
    earlier.map_or(0.0, |t| ((later - t).num_milliseconds().max(0) as f64) / 1000.0)
}

/// The scrape-time figures as a registry of their own, built for one
/// scrape (so a failed read leaves them out instead of showing old values).
fn scrape_registry(snapshot: Option<&OpsSnapshot>, now: DateTime<Utc>) -> Registry {
    let mut registry = Registry::default();
    let up = Gauge::<i64>::default();
    up.set(i64::from(snapshot.is_some()));
    registry.register(
        "perly_database_up",
        "1 when this scrape read the queue figures from the database, 0 when it could not (they are then left out)",
        up,
    );
    let Some(s) = snapshot else {
        return registry;
    };

    let depth = Gauge::<i64>::default();
    depth.set(s.rescore_pending as i64);
    registry.register(
        "perly_rescore_queue_customers",
        "Customers marked for rescoring (all workspaces)",
        depth,
    );
    let lag = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    lag.set(seconds_between(now, s.rescore_oldest_mark));
    registry.register_with_unit(
        "perly_rescore_queue_lag",
        "Age of the oldest rescoring mark (0 when none is waiting)",
        Unit::Seconds,
        lag,
    );

    let channels = Family::<OutboxLabels, Gauge>::default();
    let pending = Family::<OutboxLabels, Gauge>::default();
    let due = Family::<OutboxLabels, Gauge>::default();
    let largest = Family::<OutboxLabels, Gauge>::default();
    let age = Family::<OutboxLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for platform in Platform::ALL {
        for state in ChannelState::ALL {
            let labels = OutboxLabels {
                platform: platform.as_str(),
                channel_state: state.as_str(),
            };
            let o = s.outbox.iter().find(|o| o.platform == platform && o.state == state);
            let of = |f: fn(&perly_store::OutboxFigures) -> u64| o.map_or(0, f) as i64;
            channels.get_or_create(&labels).set(of(|o| o.channels));
            pending.get_or_create(&labels).set(of(|o| o.pending));
            due.get_or_create(&labels).set(of(|o| o.due));
            largest.get_or_create(&labels).set(of(|o| o.max_channel_pending));
            age.get_or_create(&labels)
                .set(seconds_between(now, o.and_then(|o| o.oldest_due)));
        }
    }
    registry.register(
        "perly_channels",
        "Slack and Discord channels, by platform and state",
        channels,
    );
    registry.register(
        "perly_outbox_pending",
        "Outbox rows (one per alert and channel, or a test message or import summary) not yet sent, by platform and channel state",
        pending,
    );
    registry.register(
        "perly_outbox_due",
        "Pending outbox rows already due (not held for quiet hours), by platform and channel state",
        due,
    );
    registry.register(
        "perly_outbox_channel_pending_max",
        "The most pending outbox rows of any one channel, by platform and channel state",
        largest,
    );
    registry.register_with_unit(
        "perly_outbox_oldest_due_age",
        "How long the longest-waiting due outbox row has been due (0 when none), by platform and channel state",
        Unit::Seconds,
        age,
    );

    let connections = Family::<ConnectionLabels, Gauge>::default();
    for (state, broken) in [("connected", false), ("broken", true)] {
        let n = s.salesforce.iter().filter(|c| c.broken == broken).count();
        connections.get_or_create(&ConnectionLabels { state }).set(n as i64);
    }
    registry.register(
        "perly_salesforce_connections",
        "Connected Salesforce orgs, by state",
        connections,
    );
    let budget = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    budget.set(
        s.salesforce
            .iter()
            .filter(|c| !c.broken)
            .filter_map(|c| c.budget_used())
            .fold(0.0, f64::max),
    );
    registry.register_with_unit(
        "perly_salesforce_api_budget_used",
        "The largest share of Perly's API budget used in any connected org (the org's calls in the last 24 h over Perly's share of its daily limit, as Salesforce last reported; at 1 Perly pauses)",
        Unit::Other("ratio".to_owned()),
        budget,
    );
    registry
}

#[derive(Clone)]
struct Served {
    metrics: Arc<Metrics>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

async fn metrics(State(s): State<Served>) -> Response {
    let body = s.metrics.render(s.store.as_ref(), s.clock.now()).await;
    (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

async fn readyz(State(s): State<Served>) -> Response {
    perly_web::health::readiness(s.store.as_ref()).await
}

/// The operators' router: `/metrics`, `/healthz`, `/readyz`.
pub fn router(metrics: Arc<Metrics>, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Router {
    Router::new()
        .route("/metrics", get(self::metrics))
        .route("/healthz", get(perly_web::health::healthz))
        .route("/readyz", get(readyz))
        .with_state(Served { metrics, store, clock })
}

/// Binds `listen` and serves the operators' router until `cancel`.
pub async fn serve(
    listen: &str,
    metrics: Arc<Metrics>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} for metrics ([metrics] listen)"))?;
    let addr = listener.local_addr()?;
    let app = router(metrics, store, clock);
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok((addr, task))
}
