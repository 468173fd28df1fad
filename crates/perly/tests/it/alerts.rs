//! Each of the five alert kinds fires exactly once for its scenario, and not
//! again on re-sent events or a score that wobbles. A scorecard that counts
//! only seat utilisation (0 → 100 linearly) lets a test set the score exactly.

use chrono::Duration;
use serde_json::{json, Value};

use crate::helpers::*;

/// Sets the score of `customer` (100 seats) to `score` a day later, and rescores.
async fn score_day(app: &TestApp, customer: &str, score: u32) -> Vec<Value> {
    app.advance(Duration::days(1));
    let now = app.now();
    let id = format!("{customer}-seats-{}", now.timestamp());
    let row = event(
        &id,
        customer,
        now,
        json!({"type": "seats_changed", "seats_used": score}),
    );
    app.events(vec![row.clone()]).await;
    app.rescore().await;
    vec![row]
}

async fn setup(customer: &str) -> TestApp {
    let app = spawn_app().await;
    seat_only_scorecard(&app).await;
    app.customers(json!([{"external_id": customer, "name": "Acme", "seats_purchased": 100}]))
        .await;
    app
}

async fn run_scores(app: &TestApp, customer: &str, scores: &[u32]) -> Vec<Value> {
    let mut sent = Vec::new();
    for s in scores {
        sent.extend(score_day(app, customer, *s).await);
        assert_eq!(app.customer(customer).await["score"], *s);
    }
    sent
}

/// Re-sends everything: duplicates mark nobody for rescoring. Then rescores
/// every customer all the same (as the stale sweep does): nothing new may
/// fire from the state already stored.
async fn resend(app: &TestApp, rows: Vec<Value>) {
    for chunk in rows.chunks(1000) {
        let body = app.events(chunk.to_vec()).await;
        assert_eq!(body["accepted"], 0);
    }
    assert_eq!(app.rescore().await.scored, 0, "duplicates change nothing to rescore");
    assert!(app.rescore_everyone().await > 0);
}

#[tokio::test]
async fn customer_at_risk_fires_once_per_episode_despite_a_wobbling_score() {
    let app = setup("acme").await;
    // 49 enters high; 51/48/50/49 wobble inside the ±2 margin; 20 escalates to
    // critical; 60 recovers; 45 is a new episode.
    let sent = run_scores(&app, "acme", &[80, 49, 51, 48, 50, 49, 20, 30, 60, 45]).await;
    let fired = app.alerts("acme", "customer_at_risk").await;
    let levels: Vec<&str> = fired
        .iter()
        .rev()
        .map(|a| a["risk_level"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(levels, vec!["high", "critical", "high"]);
    resend(&app, sent).await;
    assert_eq!(app.alerts("acme", "customer_at_risk").await.len(), 3);

    // The alert carries everything a message needs.
    let a = &fired[0];
    assert_eq!(a["customer_name"], "Acme");
    assert_eq!(a["score"], 45);
    assert!(a["headline"]
        .as_str()
        .unwrap_or_default()
        .starts_with("Risk escalated to High — health score 45"));
    assert!(!a["suggested_action"].as_str().unwrap_or_default().is_empty());
    assert!(a["occurred_at"].is_string() && a["delta"].is_i64() && a["signals"].is_array());
}

#[tokio::test]
async fn health_score_drop_fires_once_for_a_slow_slide() {
    let app = setup("acme").await;
    let sent = run_scores(&app, "acme", &[90, 87, 84, 82, 80, 79, 81, 80, 79]).await;
    let fired = app.alerts("acme", "health_score_drop").await;
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0]["score"], 80);
    assert_eq!(fired[0]["delta"], -10);
    assert_eq!(fired[0]["headline"], "Health score dropped to 80 (−10)");
    resend(&app, sent).await;
    assert_eq!(app.alerts("acme", "health_score_drop").await.len(), 1);
}

#[tokio::test]
async fn expansion_signal_fires_once_after_two_weeks_of_high_seat_use() {
    let app = setup("acme").await;
    let sent = run_scores(&app, "acme", &[85; 13]).await;
    assert!(
        app.alerts("acme", "expansion_signal").await.is_empty(),
        "13 days is not yet 14"
    );
    let mut more = run_scores(&app, "acme", &[86, 85, 87, 84, 85]).await;
    let fired = app.alerts("acme", "expansion_signal").await;
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert!(
        fired[0]["signals"][0]
            .as_str()
            .unwrap_or_default()
            .contains("85 of 100 used (85%) for 14+ days"),
        "{fired:?}"
    );
    more.extend(sent);
    resend(&app, more).await;
    assert_eq!(app.alerts("acme", "expansion_signal").await.len(), 1);
}

#[tokio::test]
async fn upsell_opportunity_fires_once_when_a_plan_limit_is_nearly_used() {
    let app = setup("acme").await;
    run_scores(&app, "acme", &[50]).await;
    let mut sent = Vec::new();
    for (i, value) in [80.0, 96.0, 94.0, 97.0, 96.0].iter().enumerate() {
        app.advance(Duration::days(1));
        let row = event(
            &format!("usage-{i}"),
            "acme",
            app.now(),
            json!({"type": "usage_measured", "metric": "api_calls", "value": value, "limit": 100.0}),
        );
        app.events(vec![row.clone()]).await;
        sent.push(row);
        app.rescore().await;
    }
    let fired = app.alerts("acme", "upsell_opportunity").await;
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert!(fired[0]["headline"]
        .as_str()
        .unwrap_or_default()
        .contains("api_calls at 96% of the plan limit"));
    resend(&app, sent).await;
    assert_eq!(app.alerts("acme", "upsell_opportunity").await.len(), 1);
}

#[tokio::test]
async fn billing_retry_failed_alerts_once_per_failed_retry() {
    let app = setup("acme").await;
    run_scores(&app, "acme", &[70]).await;
    let now = app.now();
    let rows = vec![
        event(
            "retry-1",
            "acme",
            now - Duration::hours(3),
            json!({"type": "billing_retry_failed", "amount": 420.0, "attempt": 1}),
        ),
        event(
            "retry-2",
            "acme",
            now,
            json!({"type": "billing_retry_failed", "amount": 420.0, "attempt": 2,
            "next_retry_at": "2026-11-10T10:00:00Z"}),
        ),
    ];
    app.events(rows.clone()).await;
    app.rescore().await;
    let fired = app.alerts("acme", "billing_retry_failed").await;
    assert_eq!(fired.len(), 2, "{fired:?}");
    assert!(fired
        .iter()
        .any(|a| a["headline"] == "Billing retry 2 failed ($420.00)"));
    resend(&app, rows).await;
    run_scores(&app, "acme", &[70]).await;
    assert_eq!(app.alerts("acme", "billing_retry_failed").await.len(), 2);
}
