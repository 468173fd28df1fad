//! The rescoring worker: claims customers whose inputs changed (or whose score
//! went stale), scores them and detects alerts with the pure domain
//! functions, and records scores, history and alerts in one transaction per
//! batch. `run_once` does one full pass and is what tests and the demo drive;
//! `run` loops until cancelled, woken by ingest or a poll interval.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use perly_domain::alerts::detect;
use perly_domain::ids::WorkspaceId;
use perly_domain::imports::is_news;
use perly_domain::replay::replay;
use perly_domain::scorecard::Scorecard;
use perly_domain::scoring::score;
use perly_store::{RecordedAlerts, RescoreInput, RescoreResult, Store};
use perly_web::Clock;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Scores one leased customer (pure), and says of each alert whether it is
/// news or history ([`perly_domain::imports::is_news`]). A customer whose
/// first verdict comes from an import has its past replayed first
/// ([`perly_domain::replay`]): a point per past day for the chart, and the
/// alerts that would have fired, dated when they would have (history).
pub fn rescore(mut input: RescoreInput, card: &Scorecard, now: DateTime<Utc>) -> RescoreResult {
    let changed = input.fold();
    let live = input.import.is_none();
    let never_judged = input.state.risk.is_none() && input.state.recent.is_empty();
    let past = (!live && never_judged).then(|| replay(&input.rollup, &input.facts, card, &input.state, now));
    let (state, past, mut alerts) = match past {
        Some(r) => (r.state, r.points, r.alerts),
        None => (input.state, Vec::new(), Vec::new()),
    };
    let first_verdict = state.risk.is_none();
    let replayed = alerts.len();
    let scored = score(&input.rollup, &input.facts, card, state.risk, now).map(|s| {
        let mut assessment = detect(&state, &s, &input.rollup, &input.facts, card, now);
        alerts.append(&mut assessment.alerts);
        assessment.alerts = alerts;
        (s, assessment)
    });
    let news = scored.as_ref().map_or_else(Vec::new, |(_, a)| {
        a.alerts
            .iter()
            .enumerate()
            .map(|(i, alert)| i >= replayed && is_news(alert, live, first_verdict, now))
            .collect()
    });
    RescoreResult {
        customer_id: input.customer_id,
        version: input.version,
        lease_until: input.lease_until,
        scored,
        import: input.import,
        news,
        past,
        folded: changed.then_some((input.rollup, input.through)),
    }
}

/// A batch claimed for rescoring, waiting to be scored and recorded.
struct Claimed {
    ws: WorkspaceId,
    card: Arc<Scorecard>,
    /// The time the claim was made at (its leases run from it).
    claimed_at: DateTime<Utc>,
    inputs: Vec<RescoreInput>,
    /// Whether the batch was full: more may be waiting.
    full: bool,
}

/// How long after the events API's last write the rescoring pass still
/// leaves the writer to it (see `Rescorer::pass`).
pub const INGEST_QUIET: Duration = Duration::from_millis(500);

/// Customers per slice at most while the events API's callers wait for
/// the database's writer (see `Rescorer::pass`).
const INGEST_BATCH: usize = 250;

/// Batches of the events API in flight beyond the first
/// ([`Store::ingest_waiting`]) from which its callers count as waiting.
pub const INGEST_WAITING: usize = 1;

/// Batches of the events API in flight beyond the first from which
/// ingest has a backlog: with the bench's 4 clients, all of them waiting
/// for the writer (see `Rescorer::pass`).
pub const INGEST_BACKLOG: usize = 3;

/// The longest the pass steps aside for ingest between two slices.
const YIELD_AT_MOST: Duration = Duration::from_millis(250);

/// How long the pass steps aside for ingest after a slice that took
/// `slice`, with `waiting` batches of the events API in flight beyond the
/// first: as long as the slice took (at most [`YIELD_AT_MOST`]) when they
/// are at least `backlog`, else not at all.
pub fn step_aside(waiting: usize, backlog: usize, slice: Duration) -> Option<Duration> {
    (waiting >= backlog).then(|| slice.min(YIELD_AT_MOST))
}

/// How long an events import stays open after its last batch.
pub const IMPORT_QUIET: chrono::Duration = chrono::Duration::seconds(60);

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassStats {
    pub scored: usize,
    pub alerts: usize,
    /// Workspaces whose rescoring failed in this pass (each is logged).
    pub failed_workspaces: usize,
    /// Imports settled (summarised to channels) in this pass.
    pub settled_imports: usize,
    /// Times the pass stepped aside for ingest's backlog ([`step_aside`]).
    pub stepped_aside: usize,
}

/// The rescoring worker's Prometheus metrics.
#[derive(Debug, Default)]
pub struct RescoreMetrics {
    /// Customers scored.
    pub scored: Counter,
    /// New alerts by kind and origin (`live`: news, sent to channels as it
    /// happens; `history`: from an import or a first verdict, summarised).
    pub alerts: Family<AlertLabels, Counter>,
    /// Workspaces whose rescoring or import settling failed in a pass.
    pub failures: Counter,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    pub kind: &'static str,
    pub origin: &'static str,
}

impl RescoreMetrics {
    /// Registers the metrics, every alert kind and origin starting at 0.
    pub fn register(&self, registry: &mut Registry) {
        for kind in perly_domain::alerts::AlertKind::ALL {
            for origin in ["live", "history"] {
                self.alerts
                    .get_or_create(&AlertLabels {
                        kind: kind.as_str(),
                        origin,
                    })
                    .inc_by(0);
            }
        }
        registry.register(
            "perly_rescore_customers",
            "Customers scored by the rescoring worker",
            self.scored.clone(),
        );
        registry.register(
            "perly_alerts_raised",
            "New alerts recorded, by kind and origin (live: news for channels; history: from an import or a first verdict)",
            self.alerts.clone(),
        );
        registry.register(
            "perly_rescore_failures",
            "Workspaces whose rescoring or import settling failed in a pass (each is logged)",
            self.failures.clone(),
        );
    }

    fn recorded(&self, r: &RecordedAlerts) {
        for (kind, news, n) in &r.counts {
            let labels = AlertLabels {
                kind: kind.as_str(),
                origin: if *news { "live" } else { "history" },
            };
            self.alerts.get_or_create(&labels).inc_by(*n as u64);
        }
    }
}

/// A claim whose batch failed: its workspace and when it was made.
type FailedClaim = (WorkspaceId, DateTime<Utc>);

#[derive(Clone)]
pub struct Rescorer {
    store: Arc<dyn Store>,
    batch: usize,
    metrics: Arc<RescoreMetrics>,
    /// Woken when new alerts (and their outbox rows) are recorded.
    delivery: Option<Arc<Notify>>,
    /// Woken whenever scores are recorded (the Salesforce outbox).
    scores: Option<Arc<Notify>>,
    /// Claims whose work failed after the claim (workspace, claimed at),
    /// given back at the start of the next pass.
    unreleased: Arc<std::sync::Mutex<Vec<FailedClaim>>>,
    ingest_quiet: Duration,
    ingest_waiting: usize,
    ingest_backlog: usize,
}

impl Rescorer {
    pub fn new(store: Arc<dyn Store>, batch: usize) -> Self {
        Self {
            store,
            batch: batch.max(1),
            metrics: Arc::default(),
            delivery: None,
            scores: None,
            unreleased: Arc::default(),
            ingest_quiet: INGEST_QUIET,
            ingest_waiting: INGEST_WAITING,
            ingest_backlog: INGEST_BACKLOG,
        }
    }

    /// Counts what the worker does into `metrics` (the server's registry).
    pub fn with_metrics(mut self, metrics: Arc<RescoreMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// How long after the events API's last write a pass still runs one
    /// claim or record at a time ([`INGEST_QUIET`] unless set).
    pub fn with_ingest_quiet(mut self, quiet: Duration) -> Self {
        self.ingest_quiet = quiet;
        self
    }

    /// From how many events API batches in flight beyond the first slices
    /// are short ([`INGEST_WAITING`] unless set).
    pub fn with_ingest_waiting(mut self, batches: usize) -> Self {
        self.ingest_waiting = batches;
        self
    }

    /// From how many events API batches in flight beyond the first the
    /// pass steps aside between slices ([`INGEST_BACKLOG`] unless set).
    pub fn with_ingest_backlog(mut self, batches: usize) -> Self {
        self.ingest_backlog = batches;
        self
    }

    /// Wakes the delivery worker whenever a batch records alerts.
    pub fn waking(mut self, delivery: Arc<Notify>) -> Self {
        self.delivery = Some(delivery);
        self
    }

    /// Wakes the Salesforce outbox whenever a batch records scores.
    pub fn waking_on_scores(mut self, outbox: Arc<Notify>) -> Self {
        self.scores = Some(outbox);
        self
    }

    /// Rescores every customer that is waiting, in every workspace, at `now`.
    pub async fn run_once(&self, now: DateTime<Utc>) -> perly_store::Result<PassStats> {
        self.pass(&|| now).await
    }

    /// As [`Rescorer::run_once`], reading the time from `now` for each batch.
    pub async fn run_once_with_clock(
        &self,
        now: &(dyn Fn() -> DateTime<Utc> + Sync),
    ) -> perly_store::Result<PassStats> {
        self.pass(now).await
    }

    /// One pass, round-robin: each round gives every workspace with work
    /// one batch (a slice), until none has any left. A workspace with a
    /// big backlog (a scorecard edit, an import) so never holds up the
    /// others for more than a batch at a time, and one whose work fails (its
    /// stored data is corrupt, say) is logged and left out of the rest of
    /// the pass while the others carry on. `now` is read for each batch, so
    /// a long pass stamps scores with the time they were computed.
    ///
    /// Pipelined: the next slice is claimed (its rows and new events read)
    /// while the last one is scored and recorded, so a pass keeps both
    /// cores busy (a claim's reads and a record's writes run on different
    /// connections). At most one claimed batch waits; a workspace whose
    /// batch fails after its next one was claimed has that one scored too,
    /// then leaves the pass.
    ///
    /// Not while the events API is writing ([`Store::ingest_active`]):
    /// claims and records share the database's one writer with ingest, and
    /// overlapped they took so much of it that ingest at 100,000 customers
    /// fell from 10.6–11.1 k to 6.8 k events/s (BENCHMARKS.md). Then the
    /// slice in flight is finished before the next is claimed. And while
    /// ingest's callers wait for the writer ([`Store::ingest_waiting`] at
    /// least [`INGEST_WAITING`]), slices are at most [`INGEST_BATCH`]
    /// customers: a record holds the writer while they wait, and a shorter
    /// one lets them through sooner (at 100,000 customers flat out, 2,000 a
    /// slice: 9.0 k events/s; 250: 20–21 k/s, and fewer rescores, 1.9
    /// instead of 3.4 a customer, as each folds more events). At a pace
    /// the writer keeps up with, slices stay whole: more of them, each
    /// shorter, doubled the p99 from event to score at 5,000 events/s.
    ///
    /// When ingest has a backlog (at least [`INGEST_BACKLOG`] batches
    /// waiting), the pass steps aside after each slice for as long as the
    /// slice took ([`step_aside`]): rescoring then takes at most half the
    /// time, ingest's callers get the writer and the cores, and a customer
    /// rescored later folds more of its events at once. On SQLite at
    /// 100,000 customers flat out: 19.0–20.4 k events/s accepted instead
    /// of 17.4–17.8 k, rescoring caught up 42.5–47.5 s after the start
    /// instead of 47.5–48.7 s, 1.57–1.59 rescores a customer instead of
    /// 1.64–1.66. From a backlog of one batch it also slowed scores at
    /// 5,000 events/s (BENCHMARKS.md, "Fourteenth session").
    async fn pass(&self, now: &(dyn Fn() -> DateTime<Utc> + Sync)) -> perly_store::Result<PassStats> {
        let mut stats = PassStats::default();
        self.release_failed_claims().await?;
        let mut queue: VecDeque<(WorkspaceId, Option<Arc<Scorecard>>)> = self
            .store
            .workspaces_to_rescore()
            .await?
            .into_iter()
            .map(|ws| (ws, None))
            .collect();
        let mut failed: HashSet<WorkspaceId> = HashSet::new();
        let mut in_flight: Option<Claimed> = None;
        loop {
            let next = queue.pop_front();
            if next.is_none() && in_flight.is_none() {
                break;
            }
            // The batch in flight first: it reads the clock before the
            // claim does, so scores are stamped in the order they were claimed.
            let finishing = in_flight.take().map(|c| (c.ws, c));
            let finish = async {
                match finishing {
                    Some((ws, c)) => Some((ws, self.finish(c, now, &mut stats).await)),
                    None => None,
                }
            };
            let claim = async {
                match next {
                    Some((ws, card)) => Some((ws, self.claim(ws, card, now).await)),
                    None => None,
                }
            };
            let started = std::time::Instant::now();
            let (finished, claimed) = if self.store.ingest_active(self.ingest_quiet) {
                let finished = finish.await;
                (finished, claim.await)
            } else {
                tokio::join!(finish, claim)
            };
            let mut outage = None;
            if let Some((ws, Err(e))) = finished {
                if e.is_unreachable() {
                    outage = Some(e);
                } else if failed.insert(ws) {
                    self.failed(ws, &e, &mut stats);
                }
            }
            match claimed {
                Some((_, Ok(Some(c)))) if outage.is_some() => {
                    // Its leases are given back once the database answers.
                    self.unreleased
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((c.ws, c.claimed_at));
                }
                Some((ws, Ok(Some(c)))) => {
                    if c.full && !failed.contains(&ws) {
                        queue.push_back((ws, Some(c.card.clone())));
                    }
                    in_flight = Some(c);
                }
                Some((_, Ok(None))) | None => {}
                Some((_, Err(e))) if e.is_unreachable() => outage = outage.or(Some(e)),
                Some((ws, Err(e))) => {
                    if failed.insert(ws) {
                        self.failed(ws, &e, &mut stats);
                    }
                }
            }
            // An outage fails every workspace alike: the pass stops and the
            // loop backs off (one log line, not one per workspace).
            if let Some(e) = outage {
                return Err(e);
            }
            queue.retain(|(ws, _)| !failed.contains(ws));
            // Only between slices: with nothing left, the pass ends.
            let more = in_flight.is_some() || !queue.is_empty();
            let pause = more
                .then(|| step_aside(self.store.ingest_waiting(), self.ingest_backlog, started.elapsed()))
                .flatten();
            if let Some(pause) = pause {
                stats.stepped_aside += 1;
                tokio::time::sleep(pause).await;
            }
        }
        self.settle(now(), &mut stats).await?;
        Ok(stats)
    }

    /// Counts and logs the failure of a workspace's slice.
    fn failed(&self, ws: WorkspaceId, e: &perly_store::Error, stats: &mut PassStats) {
        stats.failed_workspaces += 1;
        self.metrics.failures.inc();
        tracing::error!(workspace_id = %ws, error = %e, "rescoring this workspace failed; the others carry on");
    }

    /// Settles the imports whose customers are all rescored: each channel
    /// gets its one summary.
    async fn settle(&self, now: DateTime<Utc>, stats: &mut PassStats) -> perly_store::Result<()> {
        for ws in self.store.workspaces_with_imports().await? {
            match self.store.settle_imports(ws, now - IMPORT_QUIET, now).await {
                Ok(n) => stats.settled_imports += n,
                Err(e) => {
                    stats.failed_workspaces += 1;
                    self.metrics.failures.inc();
                    tracing::error!(workspace_id = %ws, error = %e, "settling this workspace's imports failed; the others carry on");
                }
            }
        }
        if stats.settled_imports > 0 {
            if let Some(d) = &self.delivery {
                d.notify_one();
            }
        }
        Ok(())
    }

    /// Claims a batch of `ws` (its scorecard read first if not known yet);
    /// `None` when nobody is waiting.
    async fn claim(
        &self,
        ws: WorkspaceId,
        card: Option<Arc<Scorecard>>,
        now: &(dyn Fn() -> DateTime<Utc> + Sync),
    ) -> perly_store::Result<Option<Claimed>> {
        let card = match card {
            Some(card) => card,
            None => Arc::new(self.store.scorecard(ws).await?),
        };
        let at = now();
        let limit = if self.store.ingest_waiting() >= self.ingest_waiting {
            self.batch.min(INGEST_BATCH)
        } else {
            self.batch
        };
        let inputs = match self.store.claim_rescore(ws, limit, at).await {
            Ok(inputs) => inputs,
            Err(e) => {
                if e.is_unreachable() {
                    // The claim may have committed (its leases held) even
                    // if its answer failed: give it back once the database
                    // answers, instead of leaving those customers to wait
                    // out the lease.
                    self.unreleased.lock().unwrap_or_else(|e| e.into_inner()).push((ws, at));
                }
                return Err(e);
            }
        };
        if inputs.is_empty() {
            return Ok(None);
        }
        Ok(Some(Claimed {
            ws,
            full: inputs.len() >= limit,
            card,
            claimed_at: at,
            inputs,
        }))
    }

    /// Scores a claimed batch and records the scores.
    ///
    /// The scores are computed and stamped at a time read after the claim:
    /// the claim may wait for the database's writer (an ingest group
    /// commit) while new events are stored, and it reads them; stamped with
    /// the time before, a score could look older than an event it counts,
    /// and a client waiting for a score newer than its event would wait for
    /// the customer's next change.
    async fn finish(
        &self,
        claimed: Claimed,
        now: &(dyn Fn() -> DateTime<Utc> + Sync),
        stats: &mut PassStats,
    ) -> perly_store::Result<()> {
        let Claimed {
            ws,
            card,
            claimed_at,
            inputs,
            ..
        } = claimed;
        let at = now().max(claimed_at);
        let scored = self.score_and_record(ws, card, inputs, at).await;
        if matches!(&scored, Err(e) if e.is_unreachable()) {
            // The record may have failed after the claim committed: give
            // the leases back once the database answers. (Other failures
            // keep their lease, so a batch that cannot be scored is not
            // retried on every pass.)
            self.unreleased
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((ws, claimed_at));
        }
        let (recorded, scored) = scored?;
        stats.scored += scored;
        self.metrics.scored.inc_by(scored as u64);
        self.metrics.recorded(&recorded);
        let alerts = recorded.total();
        if let Some(s) = &self.scores {
            s.notify_one();
        }
        if alerts > 0 {
            if let Some(d) = &self.delivery {
                d.notify_one();
            }
        }
        stats.alerts += alerts;
        Ok(())
    }

    async fn score_and_record(
        &self,
        ws: WorkspaceId,
        card: Arc<Scorecard>,
        claimed: Vec<RescoreInput>,
        at: DateTime<Utc>,
    ) -> perly_store::Result<(RecordedAlerts, usize)> {
        let results =
            tokio::task::spawn_blocking(move || claimed.into_iter().map(|c| rescore(c, &card, at)).collect::<Vec<_>>())
                .await
                .map_err(|e| perly_store::Error::Corrupt(format!("scoring task failed: {e}")))?;
        let recorded = self.store.record_scores_tallied(ws, &results, at).await?;
        Ok((recorded, results.len()))
    }

    /// Gives back the leases of claims whose work failed (see
    /// [`Store::release_rescore`]); those still failing stay for the next pass.
    async fn release_failed_claims(&self) -> perly_store::Result<()> {
        let failed = std::mem::take(&mut *self.unreleased.lock().unwrap_or_else(|e| e.into_inner()));
        let mut left = Vec::new();
        let mut error = None;
        for (ws, at) in failed {
            if error.is_some() {
                left.push((ws, at));
                continue;
            }
            match self.store.release_rescore(ws, at).await {
                Ok(n) if n > 0 => {
                    tracing::info!(workspace_id = %ws, customers = n, "gave back the rescoring leases of a failed batch")
                }
                Ok(_) => {}
                Err(e) => {
                    left.push((ws, at));
                    error = Some(e);
                }
            }
        }
        self.unreleased.lock().unwrap_or_else(|e| e.into_inner()).extend(left);
        error.map_or(Ok(()), Err)
    }

    /// Marks customers not scored within `after` for rescoring.
    pub async fn mark_stale(&self, now: DateTime<Utc>, after: chrono::Duration) -> perly_store::Result<u64> {
        let mut n = 0;
        for ws in self.store.list_workspaces().await? {
            match self.store.mark_stale(ws.id, now - after, now).await {
                Ok(marked) => n += marked,
                Err(e) => {
                    tracing::error!(workspace_id = %ws.id, error = %e, "stale sweep of this workspace failed; the others carry on")
                }
            }
        }
        Ok(n)
    }

    /// Loops until `cancel`: a pass whenever woken or every `poll`, and a
    /// stale sweep every hour.
    pub async fn run(
        self,
        clock: Arc<dyn Clock>,
        wake: Arc<Notify>,
        poll: Duration,
        stale_after: chrono::Duration,
        cancel: CancellationToken,
    ) {
        // The first sweep waits a minute: at start-up the writer belongs to
        // work that is waiting (a sweep touches every workspace).
        let mut last_sweep: Option<DateTime<Utc>> = Some(clock.now() - chrono::Duration::minutes(59));
        let mut backoff = perly_store::outage::Backoff::new("rescoring");
        loop {
            let now = clock.now();
            if last_sweep.is_none_or(|t| now - t > chrono::Duration::hours(1)) {
                match self.mark_stale(now, stale_after).await {
                    Ok(n) if n > 0 => tracing::info!(customers = n, "stale scores marked for rescoring"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "stale sweep failed"),
                }
                last_sweep = Some(now);
            }
            let read = || clock.now();
            let pause = match self.pass(&read).await {
                Ok(s) => {
                    backoff.succeeded();
                    if s.scored > 0 {
                        tracing::debug!(scored = s.scored, alerts = s.alerts, "rescoring pass");
                    }
                    poll
                }
                Err(e) => backoff.failed(&e).max(poll),
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pass_steps_aside_for_as_long_as_its_slice_took_only_when_ingest_has_a_backlog() {
        let slice = Duration::from_millis(80);
        assert_eq!(step_aside(INGEST_BACKLOG - 1, INGEST_BACKLOG, slice), None);
        assert_eq!(step_aside(INGEST_BACKLOG, INGEST_BACKLOG, slice), Some(slice));
        assert_eq!(
            step_aside(INGEST_BACKLOG + 5, INGEST_BACKLOG, Duration::from_secs(3)),
            Some(YIELD_AT_MOST),
            "a long slice is not followed by a long pause"
        );
    }
}
