//! `perly bench delivery`: alerts from "event accepted" to "message received
//! by the Slack/Discord stand-in", through the real server (HTTP ingest,
//! rescoring, the outbox and the delivery worker) on a fresh database.
//!
//! Each workspace gets `channels_per_workspace` channels that take every
//! alert, and customers whose failed billing retries each raise exactly one
//! alert. Events are sent at `rate` alerts per second, round-robin over the
//! workspaces, so each channel sees an even share. Reported: latency
//! percentiles, the backlog (alerts accepted but not yet received) sampled
//! every second, the stand-ins' 429s and the busiest webhook's posts per
//! window against the platform's limit, and peak RSS. The stand-ins and the
//! load generator run in the same process and share its two cores.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use anyhow::bail;
use chrono::{DateTime, Utc};
use perly_domain::channels::{ChannelRules, Platform, StormGuard};
use perly_standins::{DiscordStandin, OAuthApp, Received, SlackStandin};
use perly_store::NewChannel;
use perly_web::SystemClock;
use serde_json::json;

use super::{bench_store, peak_rss_mb, percentile};

#[derive(Debug, Clone, clap::Args)]
pub struct DeliveryArgs {
    /// Workspaces (each with its own channels and customers).
    #[arg(long, default_value_t = 100)]
    pub workspaces: usize,
    #[arg(long, default_value_t = 1)]
    pub channels_per_workspace: usize,
    /// Alerts per second, across all workspaces.
    #[arg(long, default_value_t = 100)]
    pub rate: u64,
    /// How long to send.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// slack, discord, or mixed (alternating channels).
    #[arg(long, default_value = "slack")]
    pub platform: String,
}

const CUSTOMERS_PER_WORKSPACE: usize = 10;

pub async fn run(url: Option<String>, dir: &tempfile::TempDir, a: DeliveryArgs) -> anyhow::Result<()> {
    let app = OAuthApp {
        client_id: "bench".into(),
        client_secret: "bench".into(),
    };
    let slack = SlackStandin::start("127.0.0.1:0", app.clone()).await?;
    let discord = DiscordStandin::start("127.0.0.1:0", app.clone()).await?;
    let (mut settings, store) = bench_store(url, dir).await?;
    crate::demo::point_at_standins(&mut settings, &slack, &app, &discord, &app);
    settings.scoring.poll_interval_ms = 1000;

    let setup = Instant::now();
    let now = Utc::now();
    let mut keys = Vec::with_capacity(a.workspaces);
    let mut n = 0usize;
    for w in 0..a.workspaces {
        let ws = store.create_workspace(&format!("Bench {w}"), now).await?;
        let (_, key) = store
            .create_api_key(ws.id, &perly_store::NewApiKey::full("bench"), now)
            .await?;
        let customers: Vec<_> = (0..CUSTOMERS_PER_WORKSPACE)
            .map(|c| perly_domain::customer::CustomerInput {
                external_id: format!("c{c}"),
                name: format!("w{w}c{c}"),
                plan: Some("pro".into()),
                mrr: Some(100.0),
                seats_purchased: Some(10),
                owner_email: None,
                parent_external_id: None,
            })
            .collect();
        store.upsert_customers(ws.id, &customers, now).await?;
        store
            .set_scorecard(ws.id, &super::billing_only_scorecard(), now)
            .await?;
        for c in 0..a.channels_per_workspace {
            let platform = match (a.platform.as_str(), n % 2) {
                ("discord", _) | ("mixed", 1) => Platform::Discord,
                _ => Platform::Slack,
            };
            n += 1;
            let name = format!("w{w}-ch{c}");
            let webhook_url = match platform {
                Platform::Slack => slack.create_webhook(&format!("#{name}")),
                Platform::Discord => discord.create_webhook(&name),
            };
            let new = NewChannel {
                platform,
                name,
                webhook_url,
                source: "pasted",
                details: json!({}),
                // The storm guard out of reach (1 alert/s per channel is
                // 60 a minute): this measures delivery, not the guard.
                rules: ChannelRules {
                    storm_guard: StormGuard {
                        messages: 100,
                        window_minutes: 1,
                    },
                    ..ChannelRules::everything()
                },
            };
            store.create_channel(ws.id, &new, now).await?;
        }
        keys.push(key);
    }
    println!(
        "{} workspaces, {} channels ({}), set up in {:.1} s",
        a.workspaces,
        n,
        a.platform,
        setup.elapsed().as_secs_f64()
    );

    let running = crate::server::start(&settings, store.clone(), Arc::new(SystemClock)).await?;
    let base = format!("http://{}", running.addr);
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;

    // Sends one event per tick slot, round-robin over workspaces.
    let total = (a.rate * a.seconds) as usize;
    let interval = StdDuration::from_secs_f64(1.0 / a.rate as f64);
    let started = Instant::now();
    let mut accepted: HashMap<String, DateTime<Utc>> = HashMap::with_capacity(total);
    let mut backlog_samples = Vec::new();
    let mut next_sample = StdDuration::from_secs(1);
    let mut pending = futures::stream::FuturesUnordered::new();
    let mut tally = Tally::default();
    use futures::StreamExt;
    for i in 0..total {
        let due = interval * i as u32;
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            // Collect answers while waiting for the next slot.
            let sleep = tokio::time::sleep(wait);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    Some(done) = pending.next(), if !pending.is_empty() => {
                        let (title, answered): (String, Option<DateTime<Utc>>) = done;
                        if let Some(at) = answered { accepted.insert(title, at); }
                    }
                }
            }
        }
        let w = i % a.workspaces;
        let round = i / a.workspaces;
        let c = round % CUSTOMERS_PER_WORKSPACE;
        let attempt = round / CUSTOMERS_PER_WORKSPACE + 1;
        let body = json!({"events": [{
            "id": format!("r{attempt}-c{c}"),
            "customer_id": format!("c{c}"),
            "type": "billing_retry_failed",
            "occurred_at": Utc::now().to_rfc3339(),
            "amount": 10.0,
            "attempt": attempt,
        }]});
        let title = format!("w{w}c{c} — Billing retry {attempt} failed ($10.00)");
        let req = client
            .post(format!("{base}/api/v1/events"))
            .bearer_auth(&keys[w])
            .json(&body)
            .send();
        // Latency starts when the server's answer arrives, stamped here,
        // not when this loop next gets round to the finished request.
        pending.push(async move {
            let answer = req.await;
            let at = Utc::now();
            let ok = matches!(answer, Ok(r) if r.status().is_success());
            (title, ok.then_some(at))
        });
        if started.elapsed() >= next_sample {
            tally.poll(&slack, &discord);
            let expected = accepted.len() * a.channels_per_workspace;
            backlog_samples.push((next_sample.as_secs(), expected.saturating_sub(tally.alerts)));
            next_sample += StdDuration::from_secs(1);
        }
    }
    while let Some((title, answered)) = pending.next().await {
        if let Some(at) = answered {
            accepted.insert(title, at);
        }
    }
    let sent_for = started.elapsed();
    // Wait for the tail.
    let deadline = Instant::now() + StdDuration::from_secs(60);
    loop {
        tally.poll(&slack, &discord);
        if tally.alerts >= accepted.len() * a.channels_per_workspace || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(250)).await;
    }
    let drained = started.elapsed();
    let received = tally.messages;
    let mut latencies = Vec::new();
    let mut seen = 0usize;
    for m in &received {
        for title in titles(&m.body) {
            if let Some(t) = accepted.get(&title) {
                latencies.push((m.at - *t).num_microseconds().unwrap_or(0) as f64 / 1000.0);
                seen += 1;
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    let limited = tally.limited;
    println!(
        "sent {} events in {:.1} s ({:.0}/s); {} accepted; {} alert messages expected, {} received (in {} posts) after {:.1} s",
        total,
        sent_for.as_secs_f64(),
        total as f64 / sent_for.as_secs_f64(),
        accepted.len(),
        accepted.len() * a.channels_per_workspace,
        seen,
        received.len(),
        drained.as_secs_f64()
    );
    if !latencies.is_empty() {
        println!(
            "accepted → received: n={}, p50 {:.1} ms, p90 {}, p99 {}, max {:.1} ms",
            latencies.len(),
            percentile(&latencies, 0.5),
            super::tail(&latencies, 0.9),
            super::tail(&latencies, 0.99),
            latencies.last().copied().unwrap_or(0.0)
        );
    }
    let max_backlog = backlog_samples.iter().map(|(_, b)| *b).max().unwrap_or(0);
    let last: Vec<String> = backlog_samples
        .iter()
        .rev()
        .take(5)
        .rev()
        .map(|(s, b)| format!("{s}s:{b}"))
        .collect();
    println!(
        "backlog (accepted, not yet received) max {max_backlog}; last samples {}",
        last.join(" ")
    );
    let (slack_1s, discord_2s, discord_60s) = busiest(&received);
    println!(
        "429s from the stand-ins: {limited}; busiest webhook: Slack {slack_1s} posts in 1 s, Discord {discord_2s} in 2 s and {discord_60s} in 60 s"
    );
    println!(
        "peak RSS {:.0} MB (server, stand-ins and load generator)",
        peak_rss_mb()
    );
    running.stop().await;
    if seen == 0 && !accepted.is_empty() {
        bail!("no alert reached the stand-ins: the benchmark measured nothing");
    }
    Ok(())
}

/// Alert titles in a Slack or Discord message ("w3c1 — Billing retry 2 failed ($10.00)").
fn titles(body: &serde_json::Value) -> Vec<String> {
    let slack = body["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["title"].as_str());
    // Discord escapes markdown: "w3c1 — Billing retry 2 failed \(10.00\)".
    let discord = body["embeds"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["title"].as_str());
    slack.chain(discord).map(|t| t.replace('\\', "")).collect()
}

/// What the stand-ins received, read a little at a time while the load runs.
#[derive(Default)]
struct Tally {
    slack_read: usize,
    discord_read: usize,
    /// Accepted posts.
    messages: Vec<Received>,
    /// Retry alerts those carried.
    alerts: usize,
    /// 429 answers.
    limited: usize,
}

impl Tally {
    fn poll(&mut self, slack: &SlackStandin, discord: &DiscordStandin) {
        let fresh_slack = slack.requests_from(self.slack_read);
        let fresh_discord = discord.requests_from(self.discord_read);
        self.slack_read += fresh_slack.len();
        self.discord_read += fresh_discord.len();
        for r in fresh_slack.into_iter().chain(fresh_discord) {
            if r.status == 429 {
                self.limited += 1;
            }
            if r.accepted() {
                self.alerts += titles(&r.body).iter().filter(|t| t.contains("Billing retry")).count();
                self.messages.push(r);
            }
        }
    }
}

/// The most posts one webhook got in 1 s (Slack) and in 2 s and 60 s (Discord).
fn busiest(received: &[Received]) -> (usize, usize, usize) {
    let mut by_hook: HashMap<&str, Vec<DateTime<Utc>>> = HashMap::new();
    for m in received {
        by_hook.entry(m.webhook_url.as_str()).or_default().push(m.at);
    }
    let window = |times: &[DateTime<Utc>], ms: i64| {
        (0..times.len())
            .map(|i| {
                times[i..]
                    .iter()
                    .take_while(|t| (**t - times[i]).num_milliseconds() < ms)
                    .count()
            })
            .max()
            .unwrap_or(0)
    };
    let (mut s1, mut d2, mut d60) = (0, 0, 0);
    for (hook, mut times) in by_hook {
        times.sort();
        if hook.contains("/api/webhooks/") {
            d2 = d2.max(window(&times, 2_000));
            d60 = d60.max(window(&times, 60_000));
        } else {
            s1 = s1.max(window(&times, 1_000));
        }
    }
    (s1, d2, d60)
}
