//! The workers are woken, not found by their polls: ingest wakes rescoring,
//! and recorded alerts wake delivery. The tests run the real workers with
//! their poll intervals at a minute (longer than the defaults, 1 s and
//! 250 ms), so only a wake-up can make the alert arrive within seconds.
//! Also the stale sweep: scores that age without new data are redone.

use std::time::{Duration as StdDuration, Instant};

use chrono::Duration;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn ingest_wakes_rescoring_and_a_new_alert_wakes_delivery() {
    let app = spawn_app_with_workers_and_standins(&|s| {
        s.scoring.poll_interval_ms = 60_000;
        s.delivery.poll_interval_ms = 60_000;
    })
    .await;
    scorecard_of(&app, &["billing_health"]).await;
    let hook = app.slack().create_webhook("#billing");
    let rules = json!({"event_kinds": ["billing_retry_failed"], "min_risk": null, "min_score_delta": null, "quiet_hours": null});
    app.channel("slack", "#billing", &hook, rules).await;
    app.customers(json!([{"external_id": "acme", "name": "Acme Corp", "mrr": 420.0}]))
        .await;
    // Let the workers finish the passes they start with and go to sleep.
    tokio::time::sleep(StdDuration::from_millis(500)).await;

    let started = Instant::now();
    let now = app.now();
    app.events(vec![event(
        "acme-retry-1",
        "acme",
        now,
        json!({"type": "billing_retry_failed", "amount": 420.0, "attempt": 1}),
    )])
    .await;
    // Ingest woke rescoring: the score is there well before a poll.
    loop {
        let c = app.customer("acme").await;
        if c["score"].is_number() {
            break;
        }
        assert!(started.elapsed() < StdDuration::from_secs(10), "not rescored: {c}");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    // The alert woke delivery: Slack has it well before a poll.
    while app.slack().messages().is_empty() {
        assert!(
            started.elapsed() < StdDuration::from_secs(10),
            "not delivered within 10 s (polls are a minute)"
        );
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    let body = app.slack().messages()[0].body.to_string();
    assert!(
        body.contains("Acme Corp") && body.contains("Billing retry 1 failed"),
        "{body}"
    );
}

#[tokio::test]
async fn the_stale_sweep_rescores_customers_whose_data_has_aged() {
    let app = spawn_app().await;
    scorecard_of(&app, &["relationship_recency"]).await;
    app.customers(json!([{"external_id": "acme", "name": "Acme Corp"}]))
        .await;
    let now = app.now();
    app.events(vec![event(
        "acme-call",
        "acme",
        now,
        json!({"type": "crm_activity", "activity_type": "call"}),
    )])
    .await;
    app.rescore().await;
    assert_eq!(app.customer("acme").await["score"], 100);

    // Two months of silence: no event arrives, so nothing marks the customer…
    app.advance(Duration::days(60));
    assert_eq!(app.rescore().await.scored, 0);
    assert_eq!(app.customer("acme").await["score"], 100, "still the old score");
    // …until the sweep finds its score older than a day and redoes it.
    let rescorer = perly::rescore::Rescorer::new(app.store.clone(), 100);
    let marked = rescorer.mark_stale(app.now(), Duration::days(1)).await.expect("sweep");
    assert_eq!(marked, 1);
    assert_eq!(app.rescore().await.scored, 1);
    let aged = app.customer("acme").await;
    assert!(aged["score"].as_i64().expect("score") < 100, "{aged}");
    assert!(
        aged["explanation"]["measures"][0]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("60 days ago"),
        "{aged}"
    );
    // A fresh score is left alone.
    assert_eq!(
        rescorer.mark_stale(app.now(), Duration::days(1)).await.expect("sweep"),
        0
    );
}
