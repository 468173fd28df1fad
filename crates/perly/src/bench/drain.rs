//! `perly bench drain`: how long a backlog of pending alerts takes to reach
//! Slack and Discord, on the real clock, against the stand-ins (which
//! enforce the vendors' rate limits and answer 429 past them).
//!
//! One workspace, one channel per platform that takes billing alerts, and
//! `alerts` failed billing retries (100 per customer) scored in one pass:
//! `alerts` deliveries queued on each channel at once, as after the
//! Salesforce import of the report. Then the real delivery worker
//! ([`Deliverer::run`], the server's settings) drains them. Reported per
//! channel: time to drain, messages and alerts per message, the stand-in's
//! 429s and its busiest windows (Slack 1 s and 60 s, Discord 2 s and 60 s),
//! and the worker's lease expiries. The storm guard is set out of reach by
//! default (`--storm-messages 100 --storm-window-minutes 1`: neither
//! platform allows 100 messages a minute), so what is measured is delivery
//! at the platforms' limits; with the default guard (10 per 10 minutes) the
//! backlog goes as nine messages and one storm digest.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, Utc};
use perly_delivery::worker::Deliverer;
use perly_domain::alerts::AlertKind;
use perly_domain::channels::{ChannelRules, Platform, StormGuard};
use perly_domain::customer::CustomerInput;
use perly_domain::event::{Event, EventKind};
use perly_standins::{DiscordStandin, OAuthApp, Received, SlackStandin};
use perly_store::{IngestMode, NewChannel};
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{bench_store, peak_rss_mb};

#[derive(Debug, Clone, clap::Args)]
pub struct DrainArgs {
    /// Alerts pending on each channel when the worker starts.
    #[arg(long, default_value_t = 5_000)]
    pub alerts: usize,
    /// slack, discord, or both (one channel each, drained at the same time).
    #[arg(long, default_value = "both")]
    pub platform: String,
    /// The channels' storm guard: most messages per window.
    #[arg(long, default_value_t = 100)]
    pub storm_messages: u32,
    /// The channels' storm guard: the window in minutes.
    #[arg(long, default_value_t = 1)]
    pub storm_window_minutes: u32,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3_600)]
    pub timeout_secs: u64,
}

const RETRIES_PER_CUSTOMER: usize = 100;

pub async fn run(url: Option<String>, dir: &tempfile::TempDir, a: DrainArgs) -> anyhow::Result<()> {
    let app = OAuthApp {
        client_id: "bench".into(),
        client_secret: "bench".into(),
    };
    let slack = SlackStandin::start("127.0.0.1:0", app.clone()).await?;
    let discord = DiscordStandin::start("127.0.0.1:0", app.clone()).await?;
    let (mut settings, store) = bench_store(url, dir).await?;
    crate::demo::point_at_standins(&mut settings, &slack, &app, &discord, &app);
    let guard = StormGuard {
        messages: a.storm_messages,
        window_minutes: a.storm_window_minutes,
    };
    guard
        .validate()
        .map_err(|e| anyhow::anyhow!("{}: {}", e.field, e.message))?;

    let setup = Instant::now();
    let now = Utc::now();
    let ws = store.create_workspace("Drain bench", now).await?;
    store
        .set_scorecard(ws.id, &super::billing_only_scorecard(), now)
        .await?;
    let platforms: Vec<Platform> = match a.platform.as_str() {
        "slack" => vec![Platform::Slack],
        "discord" => vec![Platform::Discord],
        _ => vec![Platform::Slack, Platform::Discord],
    };
    let mut channels = Vec::new();
    for p in &platforms {
        let webhook_url = match p {
            Platform::Slack => slack.create_webhook("#customer-health"),
            Platform::Discord => discord.create_webhook("customer-health"),
        };
        let new = NewChannel {
            platform: *p,
            name: "customer-health".into(),
            webhook_url,
            source: "pasted",
            details: json!({}),
            rules: ChannelRules {
                event_kinds: [AlertKind::BillingRetryFailed].into_iter().collect(),
                storm_guard: guard,
                ..ChannelRules::everything()
            },
        };
        channels.push((*p, store.create_channel(ws.id, &new, now).await?.id));
    }
    let customers = a.alerts.div_ceil(RETRIES_PER_CUSTOMER);
    let rows: Vec<CustomerInput> = (0..customers)
        .map(|c| CustomerInput {
            external_id: format!("c{c}"),
            name: format!("Customer {c}"),
            plan: Some("pro".into()),
            mrr: Some(10.0 * c as f64),
            seats_purchased: Some(10),
            owner_email: None,
            parent_external_id: None,
        })
        .collect();
    store.upsert_customers(ws.id, &rows, now).await?;
    let events: Vec<Event> = (0..a.alerts)
        .map(|i| Event {
            id: format!("retry-{i}"),
            customer_id: format!("c{}", i / RETRIES_PER_CUSTOMER),
            occurred_at: now - Duration::minutes(3) + Duration::milliseconds(i as i64),
            kind: EventKind::BillingRetryFailed {
                amount: 1665.0,
                attempt: (i % RETRIES_PER_CUSTOMER) as u32 + 1,
                next_retry_at: None,
            },
        })
        .collect();
    for chunk in events.chunks(1_000) {
        store.ingest_events(ws.id, chunk, IngestMode::Live, now).await?;
    }
    crate::rescore::Rescorer::new(store.clone(), 2_000)
        .run_once(now)
        .await?;
    let pending: HashMap<_, i64> = store
        .list_channels(ws.id)
        .await?
        .into_iter()
        .map(|c| (c.id, c.pending))
        .collect();
    println!(
        "{} alerts pending on {} ({}), storm guard {} per {} min; set up in {:.1} s ({})",
        a.alerts,
        platforms.iter().map(|p| p.label()).collect::<Vec<_>>().join(" and "),
        channels
            .iter()
            .map(|(p, id)| format!("{}: {}", p.label(), pending.get(id).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(", "),
        guard.messages,
        guard.window_minutes,
        setup.elapsed().as_secs_f64(),
        store.backend()
    );

    let worker = Deliverer::new(
        store.clone(),
        "http://127.0.0.1".into(),
        settings.delivery.worker_settings(settings.outbound.policy()),
    )?;
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let running = tokio::spawn(
        worker
            .clone()
            .run(Arc::new(Utc::now), Arc::new(Notify::new()), cancel.clone()),
    );
    let mut drained: HashMap<Platform, f64> = HashMap::new();
    let mut next_report = StdDuration::from_secs(60);
    while drained.len() < channels.len() {
        if started.elapsed() > StdDuration::from_secs(a.timeout_secs) {
            println!("gave up after {} s", a.timeout_secs);
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(200)).await;
        let left: HashMap<_, i64> = store
            .list_channels(ws.id)
            .await?
            .into_iter()
            .map(|c| (c.id, c.pending))
            .collect();
        for (p, id) in &channels {
            if !drained.contains_key(p) && left.get(id).copied().unwrap_or(0) == 0 {
                drained.insert(*p, started.elapsed().as_secs_f64());
            }
        }
        if started.elapsed() >= next_report {
            next_report += StdDuration::from_secs(60);
            println!(
                "  {:.0} s: {}",
                started.elapsed().as_secs_f64(),
                channels
                    .iter()
                    .map(|(p, id)| format!("{} {} pending", p.label(), left.get(id).copied().unwrap_or(0)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    cancel.cancel();
    running.await?;
    let totals = worker.totals();
    for (p, id) in &channels {
        // What the channel's delivery log says went out (a storm digest
        // counts every alert it stood for).
        let log = store.delivery_log(ws.id, *id, 1_000).await?;
        let logged: i64 = log.iter().filter(|a| a.outcome == "sent").map(|a| a.alerts).sum();
        let folded: i64 = log
            .iter()
            .filter(|a| a.outcome == "sent" && a.storm_digest)
            .map(|a| a.alerts)
            .sum();
        let received = match p {
            Platform::Slack => slack.requests(),
            Platform::Discord => discord.requests(),
        };
        let accepted: Vec<&Received> = received.iter().filter(|r| r.accepted()).collect();
        let limited = received.iter().filter(|r| r.status == 429).count();
        let per_message: Vec<usize> = accepted.iter().map(|r| alerts_in(&r.body)).collect();
        let carried: usize = per_message.iter().sum();
        let (short, short_secs, long) = match p {
            Platform::Slack => (busiest(&accepted, 1_000), 1, busiest(&accepted, 60_000)),
            Platform::Discord => (busiest(&accepted, 2_000), 2, busiest(&accepted, 60_000)),
        };
        match drained.get(p) {
            Some(secs) => println!(
                "{}: {} alerts drained in {:.1} s ({:.1} alerts/s) as {} messages ({} alerts in ordinary messages of at most {} \
                 each; {} storm digests standing for {}); {} 429s; busiest webhook window {} posts in {} s, {} in 60 s",
                p.label(),
                logged,
                secs,
                logged as f64 / secs,
                accepted.len(),
                carried,
                per_message.iter().max().copied().unwrap_or(0),
                per_message.iter().filter(|n| **n == 0).count(),
                folded,
                limited,
                short,
                short_secs,
                long
            ),
            None => println!("{}: not drained; {} messages so far", p.label(), accepted.len()),
        }
    }
    println!(
        "worker: {} messages, {} alerts, {} retries, {} lease expiries; peak RSS {:.0} MB",
        totals.messages,
        totals.delivered,
        totals.retried,
        totals.lease_expiries,
        peak_rss_mb()
    );
    Ok(())
}

/// Alerts in a message (attachments or embeds; a storm digest counts 0).
fn alerts_in(body: &serde_json::Value) -> usize {
    let items = body["attachments"].as_array().or(body["embeds"].as_array());
    items
        .into_iter()
        .flatten()
        .filter(|i| {
            let footer = i["footer"]
                .as_str()
                .or(i["footer"]["text"].as_str())
                .unwrap_or_default();
            footer.contains("Billing retry failed")
        })
        .count()
}

/// The most posts in any window of `ms` milliseconds (stand-in arrival times).
fn busiest(received: &[&Received], ms: u64) -> usize {
    let window = StdDuration::from_millis(ms);
    let times: Vec<_> = received.iter().map(|r| r.at_instant).collect();
    (0..times.len())
        .map(|i| times[i..].iter().take_while(|t| **t - times[i] < window).count())
        .max()
        .unwrap_or(0)
}
