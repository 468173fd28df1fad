//! `perly bench salesforce-push`: "score recalculated → value on the
//! Account" and "alert → Task and Chatter post in the org", through the
//! real server (HTTP ingest, rescoring, the Salesforce outbox worker) and
//! the Salesforce stand-in, on a fresh database.
//!
//! The org (`--accounts`, default 2,000) is synced first and every
//! Account's first push is waited out. Then failed billing retries are sent
//! at `--rate` per second, each for a different Account: each one changes
//! the customer's score and raises an alert that an automation rule turns
//! into a Task and a post. The stand-in is polled every 20 ms; latency is
//! from the event's acceptance to the first poll that sees the new score on
//! the Account (and the Task and post). Everything shares the two cores.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::Utc;
use perly_domain::salesforce::Environment;
use perly_standins::salesforce::{OrgSpec, SalesforceStandin};
use perly_standins::OAuthApp;
use perly_store::NewSalesforceConnection;
use perly_web::SystemClock;
use secrecy::SecretString;
use serde_json::json;

use super::{bench_store, peak_rss_mb, percentile};

#[derive(Debug, Clone, clap::Args)]
pub struct SalesforcePushArgs {
    #[arg(long, default_value_t = 2_000)]
    pub accounts: u64,
    /// Score changes (with alerts) per second.
    #[arg(long, default_value_t = 10)]
    pub rate: u64,
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
}

fn p(sorted: &[f64], q: f64) -> String {
    if sorted.is_empty() {
        "-".into()
    } else if q > 0.5 && q < 1.0 {
        super::tail(sorted, q)
    } else {
        format!("{:.0} ms", percentile(sorted, q))
    }
}

pub async fn run(url: Option<String>, dir: &tempfile::TempDir, a: SalesforcePushArgs) -> anyhow::Result<()> {
    let app = OAuthApp {
        client_id: "bench".into(),
        client_secret: "bench".into(),
    };
    let sf = SalesforceStandin::start(
        "127.0.0.1:0",
        "127.0.0.1:0",
        OrgSpec {
            accounts: a.accounts,
            ..OrgSpec::default()
        },
        vec![app.clone()],
    )
    .await?;
    let org = sf.production();
    let (mut settings, store) = bench_store(url, dir).await?;
    settings.salesforce.login_url = Some(sf.login_url());
    settings.salesforce.sandbox_login_url = Some(sf.sandbox_login_url());
    settings.salesforce.client_id = Some(app.client_id.clone());
    settings.salesforce.client_secret = Some(SecretString::from(app.client_secret.clone()));
    settings.sync.job_poll_ms = 50;
    settings.sync.poll_interval_ms = 200;
    let now = Utc::now();
    let ws = store.create_workspace("Bench Co", now).await?;
    let (_, key) = store
        .create_api_key(ws.id, &perly_store::NewApiKey::full("bench"), now)
        .await?;
    let new = NewSalesforceConnection {
        environment: Environment::Production,
        login_url: sf.login_url(),
        instance_url: org.base_url(),
        org_id: org.org_id(),
        org_name: "Bench Org".into(),
        user_id: org.admin_user_id(),
        username: org.admin_username(),
        refresh_token: org.issue_refresh_token(&app.client_id),
        permissions: json!({"complete": true, "missing": []}),
    };
    store.save_salesforce_connection(ws.id, &new, now).await?;
    store
        .create_salesforce_rule(
            ws.id,
            &serde_json::from_value(json!({
                "name": "Billing trouble",
                "when": {"alert_kinds": ["billing_retry_failed"]},
                "task": {"subject": "Call {customer} about billing", "due_in_days": 1, "priority": "High"},
                "chatter": {},
            }))?,
            now,
        )
        .await?;
    store.request_salesforce_sync(ws.id, now).await?;
    let running = crate::server::start(&settings, store.clone(), Arc::new(SystemClock)).await?;
    let base = format!("http://{}", running.addr);
    let client = reqwest::Client::new();

    // Sync, first score of everyone, first push of everyone. A customer
    // gets a risk level (and so a push and alerts) only once measures
    // carrying half the scorecard's weight have data: seats, features,
    // billing and support give every Account 53 of 100.
    let setup = Instant::now();
    let limit = StdDuration::from_secs(60 + a.accounts / 100);
    let wait = |what: &'static str| {
        anyhow::ensure!(setup.elapsed() < limit, "setup did not finish in {limit:?}: {what}");
        Ok(())
    };
    while store
        .salesforce_syncs(ws.id, 1)
        .await?
        .first()
        .is_none_or(|s| s.state != perly_store::SyncState::Succeeded)
    {
        wait("the first sync")?;
        tokio::time::sleep(StdDuration::from_millis(200)).await;
    }
    send_verdict_data(&client, &base, &key, &org, a.accounts).await?;
    loop {
        let pushes = store.salesforce_push_status(ws.id).await?;
        if store.rescore_caught_up(ws.id).await? && pushes.pending == 0 && pushes.last_pushed_at.is_some() {
            break;
        }
        wait("scores and first pushes")?;
        tokio::time::sleep(StdDuration::from_millis(200)).await;
    }
    println!(
        "setup: {} accounts synced, given data, scored and pushed in {:.1} s",
        a.accounts,
        setup.elapsed().as_secs_f64()
    );

    let total = (a.rate * a.seconds).min(a.accounts) as usize;
    let field = "Perly_Last_Updated__c";
    let mut sent: HashMap<String, (Instant, serde_json::Value)> = HashMap::new();
    let mut score_ms = Vec::new();
    let mut task_ms = Vec::new();
    let mut post_ms = Vec::new();
    let mut seen_task: HashMap<String, ()> = HashMap::new();
    let mut seen_post: HashMap<String, ()> = HashMap::new();
    let started = Instant::now();
    let interval = StdDuration::from_secs_f64(1.0 / a.rate.max(1) as f64);
    let mut next = 0usize;
    let deadline_after = StdDuration::from_secs(a.seconds + 120);
    while (score_ms.len() < total || task_ms.len() < total || post_ms.len() < total)
        && started.elapsed() < deadline_after
    {
        while next < total && started.elapsed() >= interval * next as u32 {
            let account = org.account_id(next as u64);
            let before = org
                .record("Account", &account)
                .map(|r| r[field].clone())
                .unwrap_or_default();
            let retry = json!({
                "id": format!("bench-retry-{account}"), "customer_id": account, "type": "billing_retry_failed",
                "occurred_at": Utc::now().to_rfc3339(), "amount": 99.0, "attempt": 1,
            });
            post_events(&client, &base, &key, vec![retry]).await?;
            sent.insert(account, (Instant::now(), before));
            next += 1;
        }
        let tasks = org.records("Task");
        let posts = org.records("FeedItem");
        for (account, (at, _)) in &sent {
            let ms = at.elapsed().as_secs_f64() * 1000.0;
            if !seen_task.contains_key(account)
                && tasks.iter().any(|t| {
                    t["WhatId"].as_str() == Some(account.as_str())
                        && t["Description"].as_str().is_some_and(|d| d.contains("perly-alert:"))
                })
            {
                seen_task.insert(account.clone(), ());
                task_ms.push(ms);
            }
            if !seen_post.contains_key(account)
                && posts.iter().any(|f| f["ParentId"].as_str() == Some(account.as_str()))
            {
                seen_post.insert(account.clone(), ());
                post_ms.push(ms);
            }
        }
        let changed: Vec<String> = sent
            .iter()
            .filter(|(_, (_, before))| *before != json!("seen"))
            .filter(|(acc, (_, before))| org.record("Account", acc).is_some_and(|r| r[field] != *before))
            .map(|(acc, _)| acc.clone())
            .collect();
        for acc in changed {
            if let Some((at, _)) = sent.get(&acc) {
                score_ms.push(at.elapsed().as_secs_f64() * 1000.0);
            }
            // Seen: keep it for the Task and post checks, but not again here.
            if let Some(entry) = sent.get_mut(&acc) {
                entry.1 = json!("seen");
            }
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    for v in [&mut score_ms, &mut task_ms, &mut post_ms] {
        v.sort_by(f64::total_cmp);
    }
    println!(
        "{total} score changes with alerts at {}/s over {} s ({} accounts)",
        a.rate, a.seconds, a.accounts
    );
    println!(
        "score → Account: {} seen, p50 {}, p99 {}, max {}",
        score_ms.len(),
        p(&score_ms, 0.5),
        p(&score_ms, 0.99),
        p(&score_ms, 1.0)
    );
    println!(
        "alert → Task:    {} seen, p50 {}, p99 {}, max {}",
        task_ms.len(),
        p(&task_ms, 0.5),
        p(&task_ms, 0.99),
        p(&task_ms, 1.0)
    );
    println!(
        "alert → post:    {} seen, p50 {}, p99 {}, max {}",
        post_ms.len(),
        p(&post_ms, 0.5),
        p(&post_ms, 0.99),
        p(&post_ms, 1.0)
    );
    println!("peak RSS (server + stand-in + load): {:.0} MB", peak_rss_mb());
    running.cancel.cancel();
    Ok(())
}

/// Seats, a feature, a paid invoice and a closed ticket for every Account
/// (its Salesforce id is its external id), a week ago, in batches of 1,000.
async fn send_verdict_data(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    org: &perly_standins::salesforce::OrgHandle,
    accounts: u64,
) -> anyhow::Result<()> {
    let at = (Utc::now() - chrono::Duration::days(7)).to_rfc3339();
    let ids: Vec<String> = (0..accounts).map(|i| org.account_id(i)).collect();
    for chunk in ids.chunks(200) {
        let mut events = Vec::with_capacity(chunk.len() * 5);
        for account in chunk {
            let e = |kind: &str, fields: serde_json::Value| {
                let mut v = json!({"id": format!("bench-setup-{kind}-{account}"), "customer_id": account,
                    "type": kind, "occurred_at": at});
                if let (Some(v), Some(f)) = (v.as_object_mut(), fields.as_object()) {
                    v.extend(f.clone());
                }
                v
            };
            events.push(e("seats_changed", json!({"seats_used": 8, "seats_purchased": 10})));
            events.push(e("feature_used", json!({"feature": "reports"})));
            events.push(e("payment_succeeded", json!({"amount": 99.0})));
            events.push(e(
                "ticket_opened",
                json!({"ticket_id": format!("t-{account}"), "priority": "low"}),
            ));
            events.push(e("ticket_closed", json!({"ticket_id": format!("t-{account}")})));
        }
        post_events(client, base, key, events).await?;
    }
    Ok(())
}

/// Sends `events` to the events API and fails unless every one of them is
/// accepted (a rejected event is answered 200 too, with its error).
async fn post_events(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    events: Vec<serde_json::Value>,
) -> anyhow::Result<()> {
    let n = events.len() as u64;
    let answer: serde_json::Value = client
        .post(format!("{base}/api/v1/events"))
        .bearer_auth(key)
        .json(&json!({ "events": events }))
        .timeout(StdDuration::from_secs(10))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    anyhow::ensure!(
        answer["accepted"].as_u64() == Some(n),
        "events not all accepted: {answer}"
    );
    Ok(())
}
