//! Wiring for `perly serve` (and `perly demo`): open the store, bind the
//! listener, start the HTTP app and the background workers, and stop them all
//! on cancellation.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use perly_store::cipher::SecretCipher;
use perly_store::sql::SqlStore;
use perly_store::Store;
use perly_web::{AppState, Clock};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use perly_delivery::oauth::OAuthClient;
use perly_delivery::worker::Deliverer;
use perly_salesforce::hosts::LoginHosts;
use perly_salesforce::orgs::Orgs;
use perly_salesforce::outbox::Outbox;
use perly_salesforce::sync::Syncer;
use perly_web::channels::Integrations;
use perly_web::salesforce::SalesforceSetup;

use crate::config::{Settings, VendorSettings};
use crate::metrics::Metrics;
use crate::rescore::Rescorer;

/// Opens the configured database (running migrations).
pub async fn open_store(settings: &Settings, cipher: SecretCipher) -> anyhow::Result<Arc<dyn Store>> {
    let store = SqlStore::connect(&settings.database_url, cipher)
        .await
        .with_context(|| format!("cannot open database {}", redact_url(&settings.database_url)))?;
    Ok(Arc::new(store))
}

/// A database URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = match (base.find("://"), base.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &base[s + 3..at];
            let user = creds.split(':').next().unwrap_or_default();
            format!("{}://{user}:***@{}", &base[..s], &base[at + 1..])
        }
        _ => base.to_owned(),
    };
    // `?password=…` (and `sslpassword`) is another way to give it.
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.to_ascii_lowercase().contains("password") => format!("{k}=***"),
                _ => kv.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

/// Vendor endpoints and OAuth clients from the settings. OAuth for a vendor
/// is on when both its client id and secret are set.
pub fn integrations(settings: &Settings) -> anyhow::Result<Integrations> {
    let oauth = |v: &VendorSettings, webhook_base: &str| match (&v.client_id, &v.client_secret) {
        (Some(id), Some(secret)) if !id.is_empty() => Some(OAuthClient {
            base_url: v.base_url.trim_end_matches('/').to_owned(),
            client_id: id.clone(),
            client_secret: secret.clone(),
            webhook_base: webhook_base.to_owned(),
        }),
        _ => None,
    };
    let hooks = settings
        .slack
        .hooks_url
        .clone()
        .unwrap_or_else(|| "https://hooks.slack.com".into());
    let hooks = hooks.trim_end_matches('/').to_owned();
    let discord = settings.discord.base_url.trim_end_matches('/').to_owned();
    Ok(Integrations {
        slack: oauth(&settings.slack, &hooks),
        discord: oauth(&settings.discord, &discord),
        slack_hooks_url: hooks,
        discord_base_url: discord,
        http: perly_net::Outbound::new(settings.outbound.policy(), |b| b.timeout(Duration::from_secs(15)))
            .context("cannot build the HTTP client")?,
    })
}

/// The Salesforce OAuth app (None until a client id and secret are set),
/// login hosts and the orgs registry. Refuses plain-http login URLs unless
/// private networks are allowed (local stand-ins).
pub fn salesforce(settings: &Settings, store: Arc<dyn Store>, public_url: &str) -> anyhow::Result<SalesforceSetup> {
    let v = &settings.salesforce;
    let app = match (&v.client_id, &v.client_secret) {
        (Some(id), Some(secret)) if !id.is_empty() => Some(perly_salesforce::OAuthApp {
            client_id: id.clone(),
            client_secret: secret.clone(),
            redirect_uri: format!("{}/integrations/salesforce/callback", public_url.trim_end_matches('/')),
        }),
        _ => None,
    };
    let policy = settings.outbound.policy();
    let http = perly_net::Outbound::new(policy, |b| b.timeout(Duration::from_secs(120)))
        .context("cannot build the HTTP client")?;
    let hosts = LoginHosts::new(
        v.login_url.as_deref().unwrap_or("https://login.salesforce.com"),
        v.sandbox_login_url.as_deref().unwrap_or("https://test.salesforce.com"),
        policy.allow_private_networks,
    )?;
    Ok(SalesforceSetup {
        orgs: Arc::new(Orgs::new(store, http, app, hosts)),
        wake_sync: Arc::new(Notify::new()),
        wake_outbox: Arc::new(Notify::new()),
        default_external_id_field: settings.sync.external_id_field.clone().filter(|f| !f.trim().is_empty()),
    })
}

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    /// The operators' listener (`/metrics`, `/healthz`, `/readyz`), when
    /// `[metrics] listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    /// This server's metrics (its workers count into them).
    pub metrics: Arc<Metrics>,
    pub state: AppState,
    pub cancel: CancellationToken,
    pub tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops the workers and the listener and waits for them.
    pub async fn stop(self) {
        self.cancel.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Binds `settings.listen` and starts the app and the rescoring worker.
pub async fn start(settings: &Settings, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> anyhow::Result<Running> {
    let listener = TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let public_url = if settings.public_url.is_empty() {
        format!("http://{addr}")
    } else {
        settings.public_url.clone()
    };
    let security = settings
        .security
        .web(&public_url)
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let metrics = Arc::new(Metrics::new());
    let state = AppState {
        store: store.clone(),
        clock: clock.clone(),
        rescore: Arc::new(Notify::new()),
        deliver: Arc::new(Notify::new()),
        integrations: integrations(settings)?,
        salesforce: salesforce(settings, store.clone(), &public_url)?,
        public_url,
        security,
        ingest_limit: Arc::new(settings.ingest.limit()),
        facets: Arc::default(),
        metrics: metrics.web.clone(),
    };
    let cancel = CancellationToken::new();
    // Spans name the method and path only: query strings can carry OAuth
    // codes and states, which must never reach the logs.
    let app = perly_web::app(state.clone()).layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(
        |req: &axum::http::Request<axum::body::Body>| {
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
        },
    ));
    let http_cancel = cancel.clone();
    let http = tokio::spawn(async move {
        // The peer address is the client's for the sign-in throttle (or
        // that of a proxy named in `[security] trusted_proxies`).
        let served = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(http_cancel.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "http server stopped");
        }
    });
    let mut tasks = vec![http];
    let metrics_addr = match settings.metrics.listen.as_deref().filter(|l| !l.trim().is_empty()) {
        Some(listen) => {
            let (addr, task) =
                crate::metrics::serve(listen, metrics.clone(), store.clone(), clock.clone(), cancel.clone()).await?;
            tasks.push(task);
            Some(addr)
        }
        None => None,
    };
    if settings.delivery.worker {
        let worker = Deliverer::new(
            store.clone(),
            state.public_url.clone(),
            settings.delivery.worker_settings(settings.outbound.policy()),
        )
        .context("cannot build the delivery worker's HTTP client")?
        .with_metrics(metrics.delivery.clone());
        let clock = clock.clone();
        tasks.push(tokio::spawn(worker.run(
            Arc::new(move || clock.now()),
            state.deliver.clone(),
            cancel.clone(),
        )));
    }
    if settings.sync.worker {
        let worker = Syncer::new(
            store.clone(),
            state.salesforce.orgs.clone(),
            settings.sync.worker_settings(),
        )
        .with_metrics(metrics.salesforce.clone());
        let clock = clock.clone();
        tasks.push(tokio::spawn(worker.run(
            Arc::new(move || clock.now()),
            state.salesforce.wake_sync.clone(),
            cancel.clone(),
        )));
    }
    if settings.sync.worker {
        let worker = Outbox::new(
            store.clone(),
            state.salesforce.orgs.clone(),
            settings.sync.outbox_settings(&state.public_url),
        )
        .with_metrics(metrics.salesforce.clone());
        let clock = clock.clone();
        tasks.push(tokio::spawn(worker.run(
            Arc::new(move || clock.now()),
            state.salesforce.wake_outbox.clone(),
            cancel.clone(),
        )));
    }
    if store.backend() == "postgres" {
        tasks.push(tokio::spawn(keep_statistics(store.clone(), cancel.clone())));
    }
    if settings.scoring.worker {
        let worker = Rescorer::new(store, settings.scoring.batch_size)
            .with_metrics(metrics.rescore.clone())
            .waking(state.deliver.clone())
            .waking_on_scores(state.salesforce.wake_outbox.clone());
        tasks.push(tokio::spawn(worker.run(
            clock,
            state.rescore.clone(),
            Duration::from_millis(settings.scoring.poll_interval_ms.max(10)),
            chrono::Duration::hours(settings.scoring.rescore_after_hours.max(1)),
            cancel.clone(),
        )));
    }
    Ok(Running {
        addr,
        metrics_addr,
        metrics,
        state,
        cancel,
        tasks,
    })
}

/// How often the planner's statistics are checked (PostgreSQL).
const STATISTICS_EVERY: Duration = Duration::from_secs(30);

/// Keeps PostgreSQL's planner statistics of Perly's tables fresh
/// ([`perly_store::Ops::refresh_statistics`]): at start and every
/// [`STATISTICS_EVERY`], until `cancel`.
async fn keep_statistics(store: Arc<dyn Store>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(STATISTICS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        match store.refresh_statistics().await {
            Ok(tables) if !tables.is_empty() => tracing::info!(tables = ?tables, "planner statistics refreshed"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "refreshing the planner statistics failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_passwords_are_hidden_in_messages() {
        assert_eq!(
            redact_url("postgres://u:hunter2@db:5432/p"),
            "postgres://u:***@db:5432/p"
        );
        assert_eq!(redact_url("sqlite://data/perly.db"), "sqlite://data/perly.db");
    }

    #[test]
    fn database_passwords_are_masked_wherever_the_url_holds_them() {
        assert_eq!(
            redact_url("postgres://perly:S3cret@db:5432/perly"),
            "postgres://perly:***@db:5432/perly"
        );
        assert_eq!(
            redact_url("postgres://db/perly?user=perly&password=S3cret&sslmode=require"),
            "postgres://db/perly?user=perly&password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://u:p@h/db?sslpassword=x"),
            "postgres://u:***@h/db?sslpassword=***"
        );
        assert_eq!(redact_url("sqlite://data/perly.db"), "sqlite://data/perly.db");
    }
}
