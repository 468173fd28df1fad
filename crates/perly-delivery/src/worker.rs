//! The delivery worker: claim → render → post → acknowledge.
//!
//! It claims *channels* with something due (a lease on the channel: one
//! message in flight per channel, rows in order), renders their due alerts
//! (one alert, or a digest of up to ten when several are due at once, as
//! after quiet hours or a rate-limit wait), posts with no transaction open,
//! classifies the answer with [`crate::retry`], and acknowledges in one short
//! transaction: rows sent, retried with backoff (or the vendor's wait), dead
//! letters, or the channel marked broken. Pacing ([`crate::pacing`]) keeps
//! each webhook within its platform's rate limit, the storm guard
//! ([`crate::storm`]) within the channel's own cap: the last message a window
//! allows carries everything waiting as one digest.
//!
//! Under a backlog: a claim reads only what the next message needs (at most
//! [`DIGEST_MAX`] + 1 rows, whatever is queued), the lease is renewed every
//! `renew_every` while a post or its acknowledgement is in flight (a slow
//! vendor or a busy database writer cannot make it run out), and the lease's
//! fencing token makes an acknowledgement that comes too late leave the
//! channel to whoever holds it now. A channel this worker has in flight is
//! never claimed again by it. Leases that ran out all the same are counted
//! ([`DeliveryStats::lease_expiries`], [`Deliverer::totals`]) and logged.
//!
//! Acknowledgements are written in groups ([`Acks`]): the answers of the
//! posts that finished while the previous group was being written go in one
//! transaction, so a worker with many channels in flight does not pay a
//! commit per post.
//!
//! [`Deliverer::run_once`] does passes at a given time until nothing more
//! can go, for tests; [`Deliverer::run`] keeps up to `concurrency` channels
//! in flight until cancelled, woken by new alerts or a short poll.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use perly_domain::channels::Platform;
use perly_domain::ids::ChannelId;
use perly_store::{AckOutcome, Acked, ClaimedChannel, DeliveryAck, Fold, Store};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::message::AlertMessage;
use crate::metrics::{outcome_label, DeliveryMetrics};
use crate::pacing::pace;
use crate::retry::{backoff, classify, short, Answer, Verdict};
use crate::storm::{self, Slot};
use crate::{discord, slack};

/// The worker's knobs (`[delivery]` in the configuration).
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// How long a claimed channel stays leased without a renewal; a crashed
    /// worker's channels come back after it.
    pub lease: chrono::Duration,
    /// How often (real time) the lease of a channel with a post or an
    /// acknowledgement in flight is renewed: well under `lease`.
    pub renew_every: Duration,
    /// Channels in flight at once.
    pub concurrency: usize,
    /// Timeout of one post.
    pub timeout: Duration,
    /// How often to look for due rows when not woken (held alerts, retries).
    pub poll: Duration,
    /// Whether webhooks may be on private networks (local stand-ins only).
    pub network: perly_net::Policy,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            lease: chrono::Duration::seconds(30),
            renew_every: Duration::from_secs(10),
            concurrency: 256,
            timeout: Duration::from_secs(10),
            poll: Duration::from_millis(250),
            network: perly_net::Policy::default(),
        }
    }
}

/// What a pass did (or, from [`Deliverer::totals`], everything since the
/// worker was built).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryStats {
    /// Messages the vendor accepted.
    pub messages: usize,
    /// Alerts (and test messages) those carried; a storm digest counts
    /// every alert it stood for.
    pub delivered: usize,
    pub retried: usize,
    pub broken: usize,
    pub dead: usize,
    /// Storm digests the vendor accepted (counted in `messages` too).
    pub storm_digests: usize,
    /// Claims given back because the channel's storm window was full.
    pub storm_waits: usize,
    /// Leases that ran out while this worker was posting or acknowledging,
    /// or that another claim took: zero unless the worker or the database
    /// stalled for longer than the lease.
    pub lease_expiries: usize,
}

impl DeliveryStats {
    fn add(&mut self, o: &DeliveryStats) {
        self.messages += o.messages;
        self.delivered += o.delivered;
        self.retried += o.retried;
        self.broken += o.broken;
        self.dead += o.dead;
        self.storm_digests += o.storm_digests;
        self.storm_waits += o.storm_waits;
        self.lease_expiries += o.lease_expiries;
    }

    fn of(outcome: &AckOutcome, items: usize) -> Self {
        let mut s = Self::default();
        match outcome {
            AckOutcome::Sent => {
                s.messages = 1;
                s.delivered = items;
            }
            AckOutcome::Retry => s.retried = 1,
            AckOutcome::Broken(_) => s.broken = 1,
            AckOutcome::Dead => s.dead = 1,
        }
        s
    }
}

/// Running totals shared by a worker and its clones.
#[derive(Debug, Default)]
struct Totals {
    messages: AtomicUsize,
    delivered: AtomicUsize,
    retried: AtomicUsize,
    broken: AtomicUsize,
    dead: AtomicUsize,
    storm_digests: AtomicUsize,
    storm_waits: AtomicUsize,
    lease_expiries: AtomicUsize,
}

impl Totals {
    fn add(&self, s: &DeliveryStats) {
        for (total, n) in [
            (&self.messages, s.messages),
            (&self.delivered, s.delivered),
            (&self.retried, s.retried),
            (&self.broken, s.broken),
            (&self.dead, s.dead),
            (&self.storm_digests, s.storm_digests),
            (&self.storm_waits, s.storm_waits),
            (&self.lease_expiries, s.lease_expiries),
        ] {
            total.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn snapshot(&self) -> DeliveryStats {
        let get = |a: &AtomicUsize| a.load(Ordering::Relaxed);
        DeliveryStats {
            messages: get(&self.messages),
            delivered: get(&self.delivered),
            retried: get(&self.retried),
            broken: get(&self.broken),
            dead: get(&self.dead),
            storm_digests: get(&self.storm_digests),
            storm_waits: get(&self.storm_waits),
            lease_expiries: get(&self.lease_expiries),
        }
    }
}

/// The lease of a channel in flight, as its renewals keep it.
struct HeldLease {
    /// Until when it is held (Unix ms), as last renewed.
    until_ms: AtomicI64,
    /// It ran out (a renewal or the acknowledgement came after `until`) or
    /// another claim took it.
    lost: AtomicBool,
}

impl HeldLease {
    /// Notes the time of a write under the lease: past `until`, it ran out.
    fn check(&self, at: DateTime<Utc>) {
        if at.timestamp_millis() > self.until_ms.load(Ordering::Relaxed) {
            self.lost.store(true, Ordering::Relaxed);
        }
    }
}

/// Posts `payload` to a stored webhook. An error never carries the URL: it
/// holds the webhook's secret.
async fn post(http: &perly_net::Outbound, url: &str, payload: &serde_json::Value) -> Result<reqwest::Response, String> {
    let url = url::Url::parse(url).map_err(|_| "the stored webhook URL is not a URL".to_owned())?;
    let req = http.post(url).map_err(|r| r.to_string())?;
    req.json(payload)
        .send()
        .await
        .map_err(|e| match perly_net::refusal(&e) {
            Some(r) => r.to_string(),
            None => e.without_url().to_string(),
        })
}

/// A source of the current time (only the binary reads the clock).
pub type Now = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The most of a webhook's answer Perly reads (Slack answers `ok`, Discord
/// the created message).
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;

#[derive(Clone)]
pub struct Deliverer {
    store: Arc<dyn Store>,
    http: perly_net::Outbound,
    public_url: String,
    settings: DeliverySettings,
    totals: Arc<Totals>,
    metrics: Arc<DeliveryMetrics>,
    acks: Arc<Acks>,
}

/// Acknowledgements a group writes at most.
const ACK_GROUP: usize = 256;

type AckRequest = (DeliveryAck, oneshot::Sender<perly_store::Result<Acked>>);

/// The worker's acknowledgement writer: one task that writes every
/// acknowledgement waiting in one transaction, then the next group. A post's
/// acknowledgement waits at most for the group in progress and its own.
/// Started on first use (on the runtime of the caller); it ends when the
/// last clone of its [`Deliverer`] is dropped.
struct Acks {
    store: Arc<dyn Store>,
    queue: std::sync::OnceLock<mpsc::UnboundedSender<AckRequest>>,
}

impl Acks {
    async fn ack(&self, ack: DeliveryAck) -> perly_store::Result<Acked> {
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(Self::write(self.store.clone(), rx));
            tx
        });
        let (reply, answer) = oneshot::channel();
        match queue.send((ack, reply)) {
            Ok(()) => answer.await.unwrap_or_else(|_| {
                // The writer task panicked with this one in its group: it
                // may or may not be written; the lease runs out either way.
                Err(perly_store::Error::Invalid("the acknowledgement writer stopped".into()))
            }),
            // The writer task is gone: written here, on its own.
            Err(mpsc::error::SendError((ack, _))) => Self::write_one(self.store.as_ref(), &ack).await,
        }
    }

    /// One acknowledgement in a transaction of its own.
    async fn write_one(store: &dyn Store, ack: &DeliveryAck) -> perly_store::Result<Acked> {
        let mut acked = store.ack_deliveries(std::slice::from_ref(ack)).await?;
        Ok(acked.pop().unwrap_or_default())
    }

    async fn write(store: Arc<dyn Store>, mut rx: mpsc::UnboundedReceiver<AckRequest>) {
        let mut group: Vec<AckRequest> = Vec::with_capacity(ACK_GROUP);
        while rx.recv_many(&mut group, ACK_GROUP).await > 0 {
            let (acks, replies): (Vec<DeliveryAck>, Vec<_>) = group.drain(..).unzip();
            match store.ack_deliveries(&acks).await {
                Ok(acked) => {
                    for (reply, a) in replies.into_iter().zip(acked) {
                        let _ = reply.send(Ok(a));
                    }
                }
                Err(e) if acks.len() == 1 => {
                    if let Some(reply) = replies.into_iter().next() {
                        let _ = reply.send(Err(e));
                    }
                }
                // One bad acknowledgement must not fail the others: each
                // is written on its own.
                Err(e) => {
                    tracing::warn!(acks = acks.len(), error = %e, "delivery: a group of acknowledgements failed; writing them one by one");
                    for (ack, reply) in acks.iter().zip(replies) {
                        let _ = reply.send(Self::write_one(store.as_ref(), ack).await);
                    }
                }
            }
        }
    }
}

/// Due rows a claim reads per channel: one message's worth, and one more
/// to tell whether more are waiting than one message holds.
const CLAIM_ITEMS: usize = DIGEST_MAX + 1;

impl Deliverer {
    /// A worker posting through a client that follows no redirects (one
    /// could post elsewhere) and reaches no private network unless
    /// `settings.network` allows it. Fails only if no HTTP client can be
    /// built (no TLS backend).
    pub fn new(store: Arc<dyn Store>, public_url: String, settings: DeliverySettings) -> Result<Self, reqwest::Error> {
        let http = perly_net::Outbound::new(settings.network, |b| {
            b.timeout(settings.timeout)
                .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
                .pool_max_idle_per_host(settings.concurrency)
        })?;
        Ok(Self {
            acks: Arc::new(Acks {
                store: store.clone(),
                queue: std::sync::OnceLock::new(),
            }),
            store,
            http,
            public_url,
            settings,
            totals: Arc::new(Totals::default()),
            metrics: Arc::default(),
        })
    }

    /// Counts what this worker does into `metrics` (the server's registry);
    /// without it, into metrics nobody reads.
    pub fn with_metrics(mut self, metrics: Arc<DeliveryMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Everything this worker (and its clones) did since it was built,
    /// lease expiries included.
    pub fn totals(&self) -> DeliveryStats {
        self.totals.snapshot()
    }

    /// Delivers everything that can go at `now`, round after round, until
    /// nothing more is due (pacing, backoff and storm windows are judged at
    /// `now` too).
    pub async fn run_once(&self, now: DateTime<Utc>) -> perly_store::Result<DeliveryStats> {
        let mut stats = DeliveryStats::default();
        let clock: Now = Arc::new(move || now);
        for _ in 0..1_000 {
            let claimed = self
                .store
                .claim_deliveries(self.settings.concurrency, CLAIM_ITEMS, &[], now, self.settings.lease)
                .await?;
            if claimed.is_empty() {
                break;
            }
            let results: Vec<_> = futures::stream::iter(claimed)
                .map(|c| self.deliver(c, clock.clone()))
                .buffer_unordered(self.settings.concurrency)
                .collect()
                .await;
            let mut progress = false;
            for r in results {
                let s = r?;
                progress |= s
                    != DeliveryStats {
                        storm_waits: s.storm_waits,
                        ..DeliveryStats::default()
                    };
                stats.add(&s);
            }
            if !progress {
                // Only full storm windows: nothing more goes at `now`.
                break;
            }
        }
        Ok(stats)
    }

    /// Runs until `cancel`, keeping up to `concurrency` channels in flight.
    pub async fn run(self, now: Now, wake: Arc<Notify>, cancel: CancellationToken) {
        let mut inflight: JoinSet<perly_store::Result<DeliveryStats>> = JoinSet::new();
        // The channel each task posts to: this worker's channels in flight,
        // which its claims leave out (their leases are its own).
        let mut tasks: HashMap<tokio::task::Id, ChannelId> = HashMap::new();
        let mut backoff = perly_store::outage::Backoff::new("delivery");
        loop {
            let mut pause = self.settings.poll;
            // Channels whose message is done may be claimed again at once.
            while let Some(done) = inflight.try_join_next_with_id() {
                Self::finished(done, &mut tasks);
            }
            let free = self.settings.concurrency.saturating_sub(inflight.len());
            if free > 0 {
                let busy: Vec<ChannelId> = tasks.values().copied().collect();
                match self
                    .store
                    .claim_deliveries(free, CLAIM_ITEMS, &busy, now(), self.settings.lease)
                    .await
                {
                    Ok(claimed) => {
                        backoff.succeeded();
                        for c in claimed {
                            if busy.contains(&c.id) {
                                // Only past the claim's limit on left-out ids.
                                tracing::warn!(channel_id = %c.id, "delivery: claimed a channel already in flight; giving it back");
                                let (ws, id, token, at) = (c.workspace_id, c.id, c.lease.token, now());
                                if let Err(e) = self.store.release_delivery(ws, id, token, at).await {
                                    tracing::warn!(channel_id = %id, error = %e, "delivery: giving a claim back failed; its lease will expire");
                                }
                                continue;
                            }
                            let me = self.clone();
                            let now = now.clone();
                            let id = c.id;
                            let task = inflight.spawn(async move { me.deliver(c, now).await });
                            tasks.insert(task.id(), id);
                        }
                    }
                    Err(e) => pause = backoff.failed(&e).max(pause),
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                Some(done) = inflight.join_next_with_id(), if !inflight.is_empty() => {
                    Self::finished(done, &mut tasks);
                }
                _ = wake.notified() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
        // Let posts in flight finish and be acknowledged (their leases would
        // otherwise hold the channels until they expire).
        let drain = async { while inflight.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(self.settings.timeout + Duration::from_secs(1), drain).await;
    }

    fn finished(
        done: Result<(tokio::task::Id, perly_store::Result<DeliveryStats>), tokio::task::JoinError>,
        tasks: &mut HashMap<tokio::task::Id, ChannelId>,
    ) {
        let task = match &done {
            Ok((task, _)) => *task,
            Err(e) => e.id(),
        };
        let channel = tasks.remove(&task);
        match done {
            Ok((_, Err(e))) => {
                tracing::warn!(channel_id = ?channel, error = %e, "delivery: acknowledging failed; the lease will expire and the row go again")
            }
            Err(e) => tracing::error!(channel_id = ?channel, error = %e, "delivery task failed"),
            Ok(_) => {}
        }
    }

    /// Posts one message to a claimed channel and acknowledges the outcome,
    /// renewing the channel's lease every `renew_every` meanwhile.
    async fn deliver(&self, c: ClaimedChannel, now: Now) -> perly_store::Result<DeliveryStats> {
        let lease = HeldLease {
            until_ms: AtomicI64::new(c.lease.until.timestamp_millis()),
            lost: AtomicBool::new(false),
        };
        let renewals = async {
            let mut tick = tokio::time::interval(self.settings.renew_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let at = now();
                lease.check(at);
                let until = at + self.settings.lease;
                match self
                    .store
                    .renew_delivery_lease(c.workspace_id, c.id, c.lease.token, until)
                    .await
                {
                    Ok(true) => lease.until_ms.store(until.timestamp_millis(), Ordering::Relaxed),
                    // Released by the acknowledgement racing this renewal,
                    // or taken by another claim: the acknowledgement says which.
                    Ok(false) => {}
                    Err(e) => tracing::warn!(channel_id = %c.id, error = %e, "delivery: renewing the lease failed"),
                }
            }
        };
        let result = tokio::select! {
            r = self.post_and_ack(&c, &now, &lease) => r,
            never = renewals => never,
        };
        let mut stats = result?;
        if lease.lost.load(Ordering::Relaxed) {
            tracing::warn!(channel_id = %c.id, "delivery: lease ran out while posting");
            stats.lease_expiries += 1;
            self.metrics.lease_expiries.inc();
        }
        self.totals.add(&stats);
        Ok(stats)
    }

    async fn post_and_ack(
        &self,
        c: &ClaimedChannel,
        now: &Now,
        lease: &HeldLease,
    ) -> perly_store::Result<DeliveryStats> {
        let claimed_at = now();
        let guard = c.rules.storm_guard;
        let slot = storm::slot(&guard, &c.recent_sends, claimed_at);
        if let Slot::Full { until } = slot {
            // Claimed in the instant the window filled (or its limit was
            // just lowered): give it back until the window frees a slot.
            lease.check(now());
            if !self
                .store
                .release_delivery(c.workspace_id, c.id, c.lease.token, until)
                .await?
            {
                lease.lost.store(true, Ordering::Relaxed);
            }
            self.metrics.message(c.platform, "storm_wait");
            return Ok(DeliveryStats {
                storm_waits: 1,
                ..DeliveryStats::default()
            });
        }
        let batch = batch(c);
        let waiting = c.items.iter().filter(|i| i.alert.is_some()).count();
        let mut digest: Option<(Fold, i64)> = None;
        let payload = if slot == Slot::Last && waiting > DIGEST_MAX && batch.len() == DIGEST_MAX {
            match self
                .store
                .storm_summary(c.workspace_id, c.id, claimed_at, storm::TOP)
                .await?
            {
                Some(summary) => {
                    digest = Some((summary.fold, summary.alerts));
                    let notice = storm::notice(&summary, &guard, &self.public_url, claimed_at);
                    match c.platform {
                        Platform::Slack => slack::message::render_notice(&notice),
                        Platform::Discord => discord::message::render_notice(&notice),
                    }
                }
                None => self.render(c, &batch),
            }
        } else {
            self.render(c, &batch)
        };
        let started = Instant::now();
        let mut url = c.webhook_url.clone();
        if c.platform == Platform::Discord {
            // Wait for Discord to confirm the message was created.
            url.push_str(if url.contains('?') { "&wait=true" } else { "?wait=true" });
        }
        let answer = match post(&self.http, &url, &payload).await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                let body = match perly_net::read_text_capped(resp, MAX_ANSWER_BYTES).await {
                    Ok(body) => body,
                    Err(e) => e.to_string(),
                };
                Ok(Answer::from_parts(status, &headers, body))
            }
            Err(e) => Err(e),
        };
        let latency_ms = started.elapsed().as_millis() as i64;
        self.metrics.posted(c.platform, started.elapsed().as_secs_f64());
        let at = now();
        let attempts = batch.iter().map(|i| i.attempts).max().unwrap_or(0) + 1;
        let p = pace(c.platform);
        let (outcome, status, text, pace_tat, next_attempt_at) = match &answer {
            Err(e) => {
                let wait = backoff(attempts as u32, &mut rand::thread_rng());
                (AckOutcome::Retry, None, e.clone(), c.pace_tat, at + chrono_dur(wait))
            }
            Ok(a) => {
                let text = short(&a.body);
                match classify(c.platform, a) {
                    verdict @ (Verdict::Delivered | Verdict::Refused) => {
                        let (tat, mut next) = p.after_answer(c.pace_tat, at, a);
                        // Either way the vendor took a post: pacing counts it.
                        let outcome = if verdict == Verdict::Delivered {
                            // A message that fills the storm window holds
                            // the channel until the window frees a slot.
                            next = next.max(storm::next_after_send(&guard, &c.recent_sends, at));
                            AckOutcome::Sent
                        } else {
                            AckOutcome::Dead
                        };
                        (outcome, Some(a.status), text, tat, next)
                    }
                    Verdict::Retry { after } => {
                        let wait = after.unwrap_or_else(|| backoff(attempts as u32, &mut rand::thread_rng()));
                        (
                            AckOutcome::Retry,
                            Some(a.status),
                            text,
                            c.pace_tat,
                            at + chrono_dur(wait),
                        )
                    }
                    Verdict::Gone(reason) => (AckOutcome::Broken(reason), Some(a.status), text, c.pace_tat, at),
                }
            }
        };
        match &outcome {
            AckOutcome::Sent => {
                tracing::debug!(channel_id = %c.id, alerts = batch.len(), storm_digest = digest.is_some(), latency_ms, "delivered")
            }
            AckOutcome::Retry => tracing::warn!(
                channel_id = %c.id, status = ?status, attempts, answer = %text,
                retry_at = %next_attempt_at, "delivery failed, will retry"
            ),
            AckOutcome::Broken(reason) => {
                tracing::warn!(channel_id = %c.id, status = ?status, reason = %reason, "channel broken, deliveries held")
            }
            AckOutcome::Dead => tracing::warn!(
                channel_id = %c.id, status = ?status, answer = %text, "message refused, kept as a dead letter"
            ),
        }
        let ack = DeliveryAck {
            workspace_id: c.workspace_id,
            channel_id: c.id,
            lease_token: c.lease.token,
            delivery_ids: batch.iter().map(|i| i.id).collect(),
            fold: digest.map(|(fold, _)| fold),
            alerts: match digest {
                Some((_, n)) => n,
                None => batch.iter().filter(|i| i.alert.is_some()).count() as i64,
            },
            outcome: outcome.clone(),
            status,
            latency_ms,
            answer: text,
            pace_tat,
            next_attempt_at,
            at,
        };
        let acked = self.acks.ack(ack).await?;
        lease.check(at);
        if !acked.lease_held {
            lease.lost.store(true, Ordering::Relaxed);
        }
        let mut stats = match digest {
            Some(_) => DeliveryStats::of(&outcome, acked.sent as usize),
            None => DeliveryStats::of(&outcome, batch.len()),
        };
        if digest.is_some() && outcome == AckOutcome::Sent {
            stats.storm_digests = 1;
        }
        self.metrics.message(c.platform, outcome_label(&outcome));
        if outcome == AckOutcome::Sent {
            self.metrics.delivered(c.platform, stats.delivered);
        }
        Ok(stats)
    }

    fn render(&self, c: &ClaimedChannel, batch: &[&perly_store::OutboxItem]) -> serde_json::Value {
        if let Some(text) = batch.first().and_then(|i| i.notice.as_ref()) {
            // A summary links to the portfolio, where imports are seen.
            let link = format!("{}/", self.public_url.trim_end_matches('/'));
            let notice = crate::notice::Notice::from_text(text, link);
            return match c.platform {
                Platform::Slack => slack::message::render_notice(&notice),
                Platform::Discord => discord::message::render_notice(&notice),
            };
        }
        let alerts: Vec<AlertMessage> = batch
            .iter()
            .filter_map(|i| i.alert.as_ref())
            .map(|a| AlertMessage::from_record(a, &self.public_url))
            .collect();
        match (c.platform, alerts.is_empty()) {
            (Platform::Slack, true) => slack::message::render_test(&self.public_url),
            (Platform::Discord, true) => discord::message::render_test(&self.public_url),
            (Platform::Slack, false) => slack::message::render_many(&alerts),
            (Platform::Discord, false) => discord::message::render_many(&alerts),
        }
    }
}

/// Most alerts in one message: the platforms' embed/attachment budget.
pub const DIGEST_MAX: usize = discord::message::EMBEDS_MAX;

/// What goes in the next message: a test message or a summary alone, or
/// the due alerts in order, up to [`DIGEST_MAX`].
fn batch(c: &ClaimedChannel) -> Vec<&perly_store::OutboxItem> {
    match c.items.first() {
        None => Vec::new(),
        Some(first) if first.alert.is_none() => vec![first],
        Some(_) => c
            .items
            .iter()
            .take_while(|i| i.alert.is_some())
            .take(DIGEST_MAX)
            .collect(),
    }
}

fn chrono_dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}
