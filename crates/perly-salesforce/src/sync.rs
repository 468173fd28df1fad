//! The sync worker: claim a due connection, run its pull, record how it
//! ended, and say when the next one is due.
//!
//! How a run can end: all objects in → succeeded, next run after the
//! connection's interval; the refresh token refused → the connection is
//! marked broken (settings show a reconnect button) and the run failed;
//! Salesforce's `REQUEST_LIMIT_EXCEEDED` or Perly's share of the daily limit
//! used up → the connection pauses and the run continues after the pause,
//! never hammering; a network error or a 5xx → the run continues from its
//! saved progress a minute later; an object that cannot be synced because a
//! field it cannot do without is hidden from the connected user → that
//! object failed with the field named, the others pulled, and the run
//! failed with that reason; any other refusal → the run failed with
//! Salesforce's message. A worker that
//! dies mid-run simply loses its lease and another picks the run up.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use perly_store::{Store, SyncClaim, SyncState};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::metrics::SalesforceMetrics;
use crate::orgs::{OrgError, Orgs};
use crate::pull::{Pull, PullError};

pub type Now = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The sync worker's knobs (`[salesforce]` in the configuration).
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// How long a claimed run stays leased without a progress save.
    pub lease: chrono::Duration,
    /// First wait between polls of a Bulk job (it grows while the job runs).
    pub job_poll: Duration,
    /// How often to look for due syncs when not woken.
    pub poll: Duration,
    /// How long to wait after a limit answer before calling the org again.
    pub limit_pause: chrono::Duration,
    /// How long to wait after a network error or a 5xx.
    pub retry_after: chrono::Duration,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self {
            lease: chrono::Duration::minutes(2),
            job_poll: Duration::from_millis(100),
            poll: Duration::from_secs(5),
            limit_pause: chrono::Duration::minutes(30),
            retry_after: chrono::Duration::minutes(1),
        }
    }
}

/// How one claimed run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    Succeeded {
        rows: u64,
    },
    Failed(String),
    /// Stopped for now; continues at the next due time.
    Postponed(String),
    /// The connection is broken (refresh refused).
    Broken(String),
    /// Another worker holds the run now.
    LeaseLost,
}

#[derive(Clone)]
pub struct Syncer {
    store: Arc<dyn Store>,
    orgs: Arc<Orgs>,
    settings: SyncSettings,
    metrics: Arc<SalesforceMetrics>,
}

impl Syncer {
    pub fn new(store: Arc<dyn Store>, orgs: Arc<Orgs>, settings: SyncSettings) -> Self {
        Self {
            store,
            orgs,
            settings,
            metrics: Arc::default(),
        }
    }

    /// Counts rows pulled and runs ended into `metrics` (the server's registry).
    pub fn with_metrics(mut self, metrics: Arc<SalesforceMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Claims and runs due syncs at `now` until none is due; for tests.
    pub async fn run_once(&self, now: Now) -> perly_store::Result<Vec<RunOutcome>> {
        let mut out = Vec::new();
        while let Some(claim) = self.store.claim_salesforce_sync(now(), self.settings.lease).await? {
            out.push(self.run_claim(claim, &now).await?);
        }
        Ok(out)
    }

    /// Runs syncs until cancelled, woken by "Sync now" or a short poll.
    pub async fn run(self, now: Now, wake: Arc<Notify>, cancel: CancellationToken) {
        let mut backoff = perly_store::outage::Backoff::new("salesforce sync");
        loop {
            let mut pause = self.settings.poll;
            match self.store.claim_salesforce_sync(now(), self.settings.lease).await {
                Ok(Some(claim)) => {
                    backoff.succeeded();
                    let me = self.clone();
                    let now = now.clone();
                    // One run per task: a large org's first sync never holds up the others.
                    tokio::spawn(async move {
                        if let Err(e) = me.run_claim(claim, &now).await {
                            tracing::warn!(error = %e, "salesforce sync: could not record the outcome");
                        }
                    });
                    continue;
                }
                Ok(None) => backoff.succeeded(),
                Err(e) => pause = backoff.failed(&e).max(pause),
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    async fn run_claim(&self, claim: SyncClaim, now: &Now) -> perly_store::Result<RunOutcome> {
        let outcome = self.run_claim_inner(claim, now).await;
        let label = match &outcome {
            Ok(RunOutcome::Succeeded { .. }) => "succeeded",
            Ok(RunOutcome::Failed(_)) => "failed",
            Ok(RunOutcome::Postponed(_)) => "postponed",
            Ok(RunOutcome::Broken(_)) => "broken",
            Ok(RunOutcome::LeaseLost) => "lease_lost",
            Err(_) => "error",
        };
        SalesforceMetrics::count(&self.metrics.syncs, label, 1);
        outcome
    }

    async fn run_claim_inner(&self, claim: SyncClaim, now: &Now) -> perly_store::Result<RunOutcome> {
        let SyncClaim {
            workspace_id: ws,
            connection,
            mut sync,
        } = claim;
        let client = match self.orgs.client(ws, &connection, now()).await {
            Ok(c) => c,
            Err(OrgError::Store(e)) => return Err(e),
            Err(e) => {
                sync.state = SyncState::Failed;
                sync.last_error = Some(e.to_string());
                let next = now() + interval(&connection.settings);
                self.store.finish_salesforce_sync(ws, &sync, next, now()).await?;
                return Ok(RunOutcome::Failed(e.to_string()));
            }
        };
        let pull = Pull {
            store: self.store.as_ref(),
            client: &client,
            ws,
            settings: &connection.settings,
            now: now.as_ref(),
            lease: self.settings.lease,
            poll: self.settings.job_poll,
            metrics: &self.metrics,
        };
        let result = pull.run(&mut sync).await;
        crate::orgs::record_usage(self.store.as_ref(), ws, &client, now()).await?;
        let at = now();
        match result {
            // Every object ran, but some could not be synced (a field they
            // cannot do without is hidden): the run failed, naming them;
            // what the others brought is in.
            Ok(()) if sync.objects.iter().any(|o| o.failed.is_some()) => {
                let reasons: Vec<&str> = sync.objects.iter().filter_map(|o| o.failed.as_deref()).collect();
                let message = reasons.join("; ");
                sync.state = SyncState::Failed;
                sync.last_error = Some(message.clone());
                self.store
                    .finish_salesforce_sync(ws, &sync, at + interval(&connection.settings), at)
                    .await?;
                tracing::warn!(workspace_id = %ws, rows = sync.rows, error = %message, "salesforce sync finished without some objects");
                Ok(RunOutcome::Failed(message))
            }
            Ok(()) => {
                sync.state = SyncState::Succeeded;
                sync.last_error = None;
                self.store
                    .finish_salesforce_sync(ws, &sync, at + interval(&connection.settings), at)
                    .await?;
                tracing::info!(workspace_id = %ws, rows = sync.rows, "salesforce sync finished");
                Ok(RunOutcome::Succeeded { rows: sync.rows })
            }
            Err(PullError::Store(perly_store::Error::Conflict(_))) => Ok(RunOutcome::LeaseLost),
            Err(PullError::Store(e)) => {
                sync.last_error = Some("Perly's database failed during the sync; it will continue".into());
                self.store
                    .postpone_salesforce_sync(ws, &sync, at + self.settings.retry_after, at)
                    .await?;
                Err(e)
            }
            Err(PullError::Salesforce(e)) => self.after_error(ws, sync, e, &connection.settings, at).await,
            // The pull ends such an object itself and goes on; should one
            // come out here, the run failed with it.
            Err(PullError::Object(e)) => {
                let message = e.to_string();
                sync.state = SyncState::Failed;
                sync.last_error = Some(message.clone());
                self.store
                    .finish_salesforce_sync(ws, &sync, at + interval(&connection.settings), at)
                    .await?;
                Ok(RunOutcome::Failed(message))
            }
            Err(PullError::Stopped(reason)) => {
                self.store
                    .postpone_salesforce_sync(ws, &sync, at + self.settings.retry_after, at)
                    .await?;
                Ok(RunOutcome::Failed(reason))
            }
        }
    }

    async fn after_error(
        &self,
        ws: perly_domain::ids::WorkspaceId,
        mut sync: perly_store::SalesforceSync,
        e: Error,
        settings: &perly_domain::salesforce::SyncSettings,
        at: DateTime<Utc>,
    ) -> perly_store::Result<RunOutcome> {
        let message = e.to_string();
        sync.last_error = Some(message.clone());
        match e {
            Error::ConnectionBroken(_) => {
                let reason = crate::orgs::broken_reason(&message);
                self.store.mark_salesforce_broken(ws, &reason, at).await?;
                self.orgs.forget(ws);
                sync.state = SyncState::Failed;
                self.store
                    .finish_salesforce_sync(ws, &sync, at + interval(settings), at)
                    .await?;
                tracing::warn!(workspace_id = %ws, "salesforce connection broken");
                Ok(RunOutcome::Broken(reason))
            }
            Error::LimitExceeded { .. } | Error::OverBudget { .. } => {
                let until = at + self.settings.limit_pause;
                self.store.record_salesforce_usage(ws, None, Some(until), at).await?;
                self.store.postpone_salesforce_sync(ws, &sync, until, at).await?;
                tracing::warn!(workspace_id = %ws, until = %until, "salesforce sync paused at the API limit");
                Ok(RunOutcome::Postponed(message))
            }
            e if e.is_transient() => {
                self.store
                    .postpone_salesforce_sync(ws, &sync, at + self.settings.retry_after, at)
                    .await?;
                Ok(RunOutcome::Postponed(message))
            }
            _ => {
                sync.state = SyncState::Failed;
                self.store
                    .finish_salesforce_sync(ws, &sync, at + interval(settings), at)
                    .await?;
                Ok(RunOutcome::Failed(message))
            }
        }
    }
}

fn interval(settings: &perly_domain::salesforce::SyncSettings) -> chrono::Duration {
    chrono::Duration::minutes(i64::from(settings.sync_interval_minutes))
}
