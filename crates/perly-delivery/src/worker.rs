//! The delivery worker: claim → render → post → acknowledge.
//!
//! It claims *channels* with something due (a lease on the channel: one
//! message in flight per channel, rows in order), renders their due alerts
//! (one alert, or a digest of up to ten when several are due at once, as
//! after quiet hours or a rate-limit wait), posts with no transaction open,
//! classifies the answer with [`crate::retry`], and acknowledges in one short
//! transaction: rows sent, retried with backoff (or the vendor's wait), dead
//! letters, or the channel marked broken. Pacing ([`crate::pacing`]) keeps
//! each webhook within its platform's rate limit.
//!
//! [`Deliverer::run_once`] does passes at a given time until nothing more
//! can go, for tests; [`Deliverer::run`] keeps up to `concurrency` channels
//! in flight until cancelled, woken by new alerts or a short poll.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use perly_domain::channels::Platform;
use perly_domain::ids::ChannelId;
use perly_store::{AckOutcome, ClaimedChannel, DeliveryAck, Store};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::message::AlertMessage;
use crate::pacing::pace;
use crate::retry::{backoff, classify, short, Answer, Verdict};
use crate::{discord, slack};

/// The worker's knobs (`[delivery]` in the configuration).
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// How long a claimed channel stays leased: longer than any post takes.
    pub lease: chrono::Duration,
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
            concurrency: 256,
            timeout: Duration::from_secs(10),
            poll: Duration::from_millis(250),
            network: perly_net::Policy::default(),
        }
    }
}

/// What a pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryStats {
    /// Messages the vendor accepted.
    pub messages: usize,
    /// Alerts (and test messages) those carried.
    pub delivered: usize,
    pub retried: usize,
    pub broken: usize,
    pub dead: usize,
}

impl DeliveryStats {
    fn add(&mut self, o: &AckOutcome, items: usize) {
        match o {
            AckOutcome::Sent => {
                self.messages += 1;
                self.delivered += items;
            }
            AckOutcome::Retry => self.retried += 1,
            AckOutcome::Broken(_) => self.broken += 1,
            AckOutcome::Dead => self.dead += 1,
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
}

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
            store,
            http,
            public_url,
            settings,
        })
    }

    /// Delivers everything that can go at `now`, round after round, until
    /// nothing more is due (pacing and backoff are judged at `now` too).
    pub async fn run_once(&self, now: DateTime<Utc>) -> perly_store::Result<DeliveryStats> {
        let mut stats = DeliveryStats::default();
        let clock: Now = Arc::new(move || now);
        for _ in 0..1_000 {
            let claimed = self
                .store
                .claim_deliveries(self.settings.concurrency, now, self.settings.lease)
                .await?;
            if claimed.is_empty() {
                break;
            }
            let results: Vec<_> = futures::stream::iter(claimed)
                .map(|c| self.deliver(c, clock.clone()))
                .buffer_unordered(self.settings.concurrency)
                .collect()
                .await;
            for r in results {
                let (outcome, items) = r?;
                stats.add(&outcome, items);
            }
        }
        Ok(stats)
    }

    /// Runs until `cancel`, keeping up to `concurrency` channels in flight.
    pub async fn run(self, now: Now, wake: Arc<Notify>, cancel: CancellationToken) {
        let mut inflight: JoinSet<perly_store::Result<(AckOutcome, usize)>> = JoinSet::new();
        let mut tasks: HashMap<tokio::task::Id, ChannelId> = HashMap::new();
        // Channels this worker is posting to. A lease that ran out while a
        // post or its acknowledgement was slow lets the claim return the
        // channel again: it must not get a second message in flight.
        let mut busy: HashSet<ChannelId> = HashSet::new();
        loop {
            let free = self.settings.concurrency.saturating_sub(inflight.len());
            if free > 0 {
                match self.store.claim_deliveries(free, now(), self.settings.lease).await {
                    Ok(claimed) => {
                        for c in claimed {
                            if !busy.insert(c.id) {
                                tracing::warn!(channel_id = %c.id, "delivery: lease ran out while posting; not posting twice");
                                continue;
                            }
                            let me = self.clone();
                            let now = now.clone();
                            let id = c.id;
                            let task = inflight.spawn(async move { me.deliver(c, now).await });
                            tasks.insert(task.id(), id);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "delivery: claim failed, will retry"),
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                Some(done) = inflight.join_next_with_id(), if !inflight.is_empty() => {
                    let task = match &done {
                        Ok((task, _)) => *task,
                        Err(e) => e.id(),
                    };
                    let channel = tasks.remove(&task);
                    if let Some(c) = channel {
                        busy.remove(&c);
                    }
                    match done {
                        Ok((_, Err(e))) => tracing::warn!(channel_id = ?channel, error = %e, "delivery: acknowledging failed; the lease will expire and the row go again"),
                        Err(e) => tracing::error!(channel_id = ?channel, error = %e, "delivery task failed"),
                        Ok(_) => {}
                    }
                }
                _ = wake.notified() => {}
                _ = tokio::time::sleep(self.settings.poll) => {}
            }
        }
        // Let posts in flight finish and be acknowledged (their leases would
        // otherwise hold the channels until they expire).
        let drain = async { while inflight.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(self.settings.timeout + Duration::from_secs(1), drain).await;
    }

    /// Posts one message to a claimed channel and acknowledges the outcome.
    async fn deliver(&self, c: ClaimedChannel, now: Now) -> perly_store::Result<(AckOutcome, usize)> {
        let batch = batch(&c);
        let payload = self.render(&c, &batch);
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
                        let (tat, mut next) = p.after_post(c.pace_tat, at);
                        if a.rate_remaining == Some(0) {
                            if let Some(reset) = a.rate_reset_after {
                                next = next.max(at + chrono_dur(reset));
                            }
                        }
                        // Either way the vendor took a post: pacing counts it.
                        let outcome = if verdict == Verdict::Delivered {
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
                tracing::debug!(channel_id = %c.id, alerts = batch.len(), latency_ms, "delivered")
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
            channel_id: c.id,
            delivery_ids: batch.iter().map(|i| i.id).collect(),
            alerts: batch.iter().filter(|i| i.alert.is_some()).count() as i64,
            outcome: outcome.clone(),
            status,
            latency_ms,
            answer: text,
            pace_tat,
            next_attempt_at,
        };
        self.store.ack_delivery(c.workspace_id, &ack, at).await?;
        Ok((outcome, batch.len()))
    }

    fn render(&self, c: &ClaimedChannel, batch: &[&perly_store::OutboxItem]) -> serde_json::Value {
        if let Some(notice) = batch.first().and_then(|i| i.notice.as_ref()) {
            // A summary links to the portfolio, where imports are seen.
            let link = format!("{}/", self.public_url.trim_end_matches('/'));
            return match c.platform {
                Platform::Slack => slack::message::render_notice(notice, &link),
                Platform::Discord => discord::message::render_notice(notice, &link),
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
