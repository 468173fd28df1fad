//! Crash safety of delivery: the real `perly serve` process is killed with
//! SIGKILL while alerts are on their way to Slack, started again on the same
//! database, and every alert reaches every channel. A message in flight at
//! the kill may be posted again (the webhook gives no way to know it
//! arrived); nothing else is ever sent twice, and nothing is lost.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::Utc;
use perly_standins::{Fault, SlackStandin};
use serde_json::{json, Value};

use crate::helpers::*;

const CUSTOMERS: usize = 10;
const RETRIES: usize = 10;
const CHANNELS: usize = 4;

async fn start_server(database_url: &str, slack: &SlackStandin, port: u16) -> ServeProcess {
    let env = [
        ("PERLY_SLACK__BASE_URL", slack.base_url()),
        ("PERLY_SLACK__HOOKS_URL", slack.hooks_url()),
        ("PERLY_DELIVERY__TIMEOUT_MS", "1000".to_owned()),
        ("PERLY_DELIVERY__LEASE_SECS", "5".to_owned()),
        ("PERLY_OUTBOUND__ALLOW_PRIVATE_NETWORKS", "true".to_owned()),
    ];
    spawn_serve(database_url, port, &env).await
}

async fn post(
    client: &reqwest::Client,
    server: &ServeProcess,
    key: &str,
    path: &str,
    body: Value,
) -> reqwest::Result<Value> {
    client
        .post(format!("{}{path}", server.base))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await?
        .json()
        .await
}

fn retry_event(customer: usize, attempt: usize) -> Value {
    json!({
        "id": format!("c{customer}-retry-{attempt}"),
        "customer_id": format!("c{customer}"),
        "type": "billing_retry_failed",
        "occurred_at": Utc::now().to_rfc3339(),
        "amount": 99.0,
        "attempt": attempt,
    })
}

/// The alerts one Slack message carries, by title ("c3 — Billing retry 5 failed ($99.00)").
fn alerts_in(body: &Value) -> Vec<String> {
    body["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["title"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_server_killed_while_delivering_loses_no_alert_and_resends_only_what_was_in_flight() {
    let dir = tempfile::tempdir().expect("dir");
    let database_url = fresh_database(&dir).await;
    let slack = SlackStandin::start("127.0.0.1:0", oauth_app("slack"))
        .await
        .expect("slack");

    // A workspace and key, made before the server starts.
    let settings = test_settings(database_url.clone(), false);
    let key = {
        let store = perly::server::open_store(&settings, perly::cli::cipher(&settings, true).expect("cipher"))
            .await
            .expect("store");
        let ws = store.create_workspace("Crash Co", Utc::now()).await.expect("ws");
        store
            .create_api_key(ws.id, &perly_store::NewApiKey::full("crash"), Utc::now())
            .await
            .expect("key")
            .1
    };

    let port = free_port();
    let mut server = start_server(&database_url, &slack, port).await;
    let client = reqwest::Client::new();
    let customers: Vec<Value> = (0..CUSTOMERS)
        .map(|c| json!({"external_id": format!("c{c}"), "name": format!("c{c}"), "seats_purchased": 10}))
        .collect();
    post(
        &client,
        &server,
        &key,
        "/api/v1/customers",
        json!({ "customers": customers }),
    )
    .await
    .expect("customers");
    // Billing health is the whole scorecard, so a failed retry alone is data
    // enough for a verdict (and its alert).
    let card: Value = client
        .get(format!("{}/api/v1/scorecard", server.base))
        .bearer_auth(&key)
        .send()
        .await
        .expect("scorecard")
        .json()
        .await
        .expect("scorecard json");
    let mut card = card;
    if let Some(measures) = card["measures"].as_object_mut() {
        for (name, m) in measures.iter_mut() {
            if name != "billing_health" {
                m["weight"] = json!(0.0);
            }
        }
    }
    let saved = client
        .put(format!("{}/api/v1/scorecard", server.base))
        .bearer_auth(&key)
        .json(&card)
        .send()
        .await
        .expect("put scorecard");
    assert!(saved.status().is_success());
    let mut hooks = Vec::new();
    for n in 0..CHANNELS {
        let hook = slack.create_webhook(&format!("#alerts-{n}"));
        // Each post takes a while, so posts are in flight when the kill comes.
        slack.inject(
            &hook,
            Fault::Slow {
                delay_ms: 40,
                times: 10_000,
            },
        );
        // A storm guard this test never reaches: every alert is looked for
        // by its title, so none may be folded into a storm digest.
        let rules = json!({"event_kinds": ["customer_at_risk", "expansion_signal", "health_score_drop",
            "upsell_opportunity", "billing_retry_failed"], "min_risk": null, "min_score_delta": null,
            "quiet_hours": null, "storm_guard": {"messages": 100, "window_minutes": 1}});
        let body = json!({"platform": "slack", "name": format!("#alerts-{n}"), "webhook_url": hook, "rules": rules});
        let created = post(&client, &server, &key, "/api/v1/channels", body)
            .await
            .expect("channel");
        assert!(created["id"].is_string(), "{created}");
        hooks.push(hook);
    }

    // Retries fail in waves; the server is killed mid-way.
    let mut all_events = Vec::new();
    for attempt in 1..=RETRIES {
        let wave: Vec<Value> = (0..CUSTOMERS).map(|c| retry_event(c, attempt)).collect();
        all_events.extend(wave.clone());
        let _ = post(&client, &server, &key, "/api/v1/events", json!({ "events": wave })).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        if attempt == RETRIES / 2 {
            // Wait until deliveries are under way, then kill.
            let deadline = Instant::now() + Duration::from_secs(10);
            while slack.requests().len() < CHANNELS && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            server.kill();
            let before = slack.requests().len();
            assert!(before > 0, "deliveries were under way at the kill");
            server = start_server(&database_url, &slack, port).await;
        }
    }
    // Whatever the dead server may not have taken is sent again (ingest is idempotent).
    for chunk in all_events.chunks(100) {
        post(&client, &server, &key, "/api/v1/events", json!({ "events": chunk }))
            .await
            .expect("resend");
    }

    let expected: HashSet<String> = (0..CUSTOMERS)
        .flat_map(|c| (1..=RETRIES).map(move |a| format!("c{c} — Billing retry {a} failed ($99.00)")))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let messages = slack.messages();
        let complete = hooks.iter().all(|h| {
            let got: HashSet<String> = messages
                .iter()
                .filter(|m| &m.webhook_url == h)
                .flat_map(|m| alerts_in(&m.body))
                .collect();
            expected.is_subset(&got)
        });
        if complete {
            break;
        }
        assert!(Instant::now() < deadline, "not every alert reached every channel");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(server);

    // None lost; a repeat only of the one message each channel had in flight.
    let messages = slack.messages();
    for h in &hooks {
        let mine: Vec<Vec<String>> = messages
            .iter()
            .filter(|m| &m.webhook_url == h)
            .map(|m| alerts_in(&m.body))
            .collect();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut repeated_from = HashSet::new();
        for (i, alerts) in mine.iter().enumerate() {
            for a in alerts {
                if let Some(first) = seen.get(a.as_str()) {
                    repeated_from.insert(*first);
                } else {
                    seen.insert(a, i);
                }
            }
        }
        eprintln!(
            "{h}: {} messages, alerts of {} message(s) repeated after the kill",
            mine.len(),
            repeated_from.len()
        );
        assert!(
            repeated_from.len() <= 1,
            "{h}: alerts of {} different messages were sent twice",
            repeated_from.len()
        );
        // Falling scores raise at-risk and drop alerts too; the retries are all there.
        let retries: HashSet<String> = seen
            .keys()
            .filter(|t| t.contains("Billing retry"))
            .map(|t| (*t).to_owned())
            .collect();
        assert_eq!(retries, expected, "{h}: every retry alert, once");
    }
}
