//! History is not news: a backfill through the events API and a scorecard
//! change are scored and recorded, and each channel gets at most one
//! summary; live facts right after still go out one by one.

use chrono::Duration;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::web::{add_user, WebClient};
use perly_store::Role;

const ALL: [&str; 5] = [
    "customer_at_risk",
    "expansion_signal",
    "health_score_drop",
    "upsell_opportunity",
    "billing_retry_failed",
];

/// A Slack and a Discord channel that take every alert.
async fn setup(customers: usize) -> TestApp {
    let app = spawn_app_with_standins().await;
    seat_only_scorecard(&app).await;
    let rules = json!({"event_kinds": ALL, "min_risk": null, "min_score_delta": null, "quiet_hours": null});
    let slack = app.slack().create_webhook("#customer-health");
    let discord = app.discord().create_webhook("customer-health");
    app.channel("slack", "#customer-health", &slack, rules.clone()).await;
    app.channel("discord", "customer-health", &discord, rules).await;
    let rows: Vec<Value> = (0..customers)
        .map(|i| {
            json!({"external_id": format!("c{i:03}"), "name": format!("Customer {i:03}"),
                   "seats_purchased": 100, "mrr": 100.0 * (i + 1) as f64})
        })
        .collect();
    app.customers(json!(rows)).await;
    app
}

#[tokio::test]
async fn a_60_day_backfill_for_100_customers_is_one_summary_per_channel_and_live_news_still_flows() {
    let app = setup(100).await;
    let now = app.now();
    // Sixty days of seat counts; every other customer slides from 80 to 20 seats used.
    let mut rows = Vec::new();
    for i in 0..100 {
        for d in (0..60).rev() {
            let used = if i % 2 == 0 { 20 + d } else { 70 };
            rows.push(event(
                &format!("c{i:03}-seats-{d}"),
                &format!("c{i:03}"),
                now - Duration::days(d),
                json!({"type": "seats_changed", "seats_used": used}),
            ));
        }
    }
    for chunk in rows.chunks(1000) {
        let (status, body) = app
            .post("/api/v1/events", json!({"events": chunk, "backfill": true}))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["accepted"], chunk.len(), "{body}");
    }
    app.rescore().await;
    let (_, feed) = app.get("/api/v1/alerts?kind=customer_at_risk&limit=500").await;
    let at_risk = feed["items"].as_array().expect("items");
    // What would have fired is in the feed: each sliding customer crossed
    // into high risk, then into critical.
    let customers: std::collections::BTreeSet<&str> = at_risk
        .iter()
        .filter_map(|a| a["customer_external_id"].as_str())
        .collect();
    assert_eq!(customers.len(), 50, "{feed}");
    assert_eq!(at_risk.len(), 100, "{feed}");
    assert!(at_risk.iter().all(|a| a["import_id"].is_string()), "{feed}");
    // Each is dated when it would have fired, not the day of the import:
    // the slide crossed into high risk weeks ago.
    for a in at_risk {
        let at: chrono::DateTime<chrono::Utc> = a["occurred_at"].as_str().expect("occurred_at").parse().expect("time");
        assert!(at < now - Duration::hours(12), "{a}");
        if a["risk_level"] == "high" {
            assert!(at < now - Duration::days(14), "{a}");
        }
    }
    // The chart shows the sixty days: a point per past day, sliding from
    // 79 seats (59 days ago) down to today's 20.
    let sliding = app.customer("c000").await;
    let history = sliding["history"].as_array().expect("history");
    assert_eq!(history.len(), 60, "{sliding}");
    assert_eq!(history[0]["score"], 79, "{sliding}");
    assert_eq!(history[history.len() - 1]["score"], 20, "{sliding}");
    assert!(history
        .windows(2)
        .all(|w| w[0]["score"].as_i64() >= w[1]["score"].as_i64()));
    let steady = app.customer("c001").await;
    assert!(steady["history"]
        .as_array()
        .expect("history")
        .iter()
        .all(|p| p["score"] == 70));
    assert_eq!(app.deliver().await.messages, 0, "nothing is sent one by one");

    // A quiet minute later the import settles: one summary per channel.
    app.advance(Duration::seconds(61));
    let pass = app.rescore().await;
    assert_eq!(pass.settled_imports, 1, "{pass:?}");
    app.deliver().await;
    for (platform, messages) in [("slack", app.slack().messages()), ("discord", app.discord().messages())] {
        assert_eq!(messages.len(), 1, "{platform}: one summary");
        // Discord's text comes with Markdown escaped: compare the words.
        let text = messages[0].body.to_string().replace('\\', "");
        assert!(
            text.contains("History through the events API: 100 customers"),
            "{platform}: {text}"
        );
        assert!(text.contains("100 alerts recorded in the feed"), "{platform}: {text}");
        // The top of the list is the at-risk customer with the most MRR.
        assert!(text.contains("Customer 098 ($9,900.00)"), "{platform}: {text}");
    }
    let (_, imports) = app.get("/api/v1/imports").await;
    assert_eq!(imports["items"][0]["state"], "settled", "{imports}");
    assert_eq!(imports["items"][0]["source"], "events");
    // The team sees the import's result where it lands.
    add_user(&app, "ana@example.com", Role::Member).await;
    let web = WebClient::new(&app);
    web.sign_in("ana@example.com", "correct horse battery").await;
    let (status, page, _) = web.get("/").await;
    assert_eq!(status, 200);
    assert!(page.contains("History through the events API"), "{page}");
    assert!(page.contains("100 customers: 50 critical, 50 medium"), "{page}");
    assert!(page.contains("Customer 098 ($9,900.00)"), "{page}");

    // A live billing retry failure right after is its own message.
    app.slack().clear();
    app.discord().clear();
    billing_retry_failed(&app, "c004", 1).await;
    let stats = app.deliver().await;
    assert_eq!(stats.messages, 2, "{stats:?}");
    let slack = app.slack().messages();
    assert_eq!(slack.len(), 1);
    assert!(slack[0].body.to_string().contains("Customer 004"), "{}", slack[0].body);
    assert!(slack[0].body.to_string().contains("Billing retry 1 failed"));
}

#[tokio::test]
async fn a_customer_waiting_for_live_data_still_counts_in_the_import_that_adds_its_history() {
    let app = setup(2).await;
    let now = app.now();
    let seats = |id: &str, customer: &str, at, used: u32| {
        event(id, customer, at, json!({"type": "seats_changed", "seats_used": used}))
    };
    // c000 has live data waiting to be scored when its history arrives
    // (ingest skips marking a customer marked already: not this one, whose
    // import changes); c001 gets history only.
    app.rescore().await;
    let (status, body) = app
        .post("/api/v1/events", json!({"events": [seats("live", "c000", now, 50)]}))
        .await;
    assert_eq!(status, 200, "{body}");
    let history: Vec<Value> = ["c000", "c001"]
        .iter()
        .flat_map(|c| (1..5).map(move |d| (c, d)))
        .map(|(c, d)| seats(&format!("{c}-{d}"), c, now - Duration::days(d), 60))
        .collect();
    let (status, body) = app
        .post("/api/v1/events", json!({"events": history, "backfill": true}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 8, "{body}");
    app.rescore().await;
    app.advance(Duration::seconds(61));
    assert_eq!(app.rescore().await.settled_imports, 1);
    let (_, imports) = app.get("/api/v1/imports").await;
    let import = &imports["items"][0];
    assert_eq!(import["state"], "settled", "{imports}");
    let customers: u64 = import["summary"]["levels"]
        .as_array()
        .expect("levels")
        .iter()
        .filter_map(|l| l["customers"].as_u64())
        .sum();
    assert_eq!(customers, 2, "{import}");
}

#[tokio::test]
async fn a_scorecard_change_that_moves_100_customers_sends_at_most_one_message_per_channel() {
    let app = setup(100).await;
    let now = app.now();
    let rows: Vec<Value> = (0..100)
        .map(|i| {
            event(
                &format!("c{i:03}-seats"),
                &format!("c{i:03}"),
                now,
                json!({"type": "seats_changed", "seats_used": 60}),
            )
        })
        .collect();
    app.events(rows).await;
    app.rescore().await;
    let (_, medium) = app.get("/api/v1/customers?risk_level=medium&limit=500").await;
    assert_eq!(medium["items"].as_array().map(Vec::len), Some(100));
    app.advance(Duration::days(1));
    app.rescore().await;
    app.deliver().await;
    app.slack().clear();
    app.discord().clear();

    // Raise the bands: 60 is now high for every customer.
    let (_, mut card) = app.get("/api/v1/scorecard").await;
    card["risk_bands"]["low"] = json!(85.0);
    card["risk_bands"]["medium"] = json!(70.0);
    let (status, body) = app.put("/api/v1/scorecard", card).await;
    assert_eq!(status, 200, "{body}");
    app.rescore().await;
    let (_, high) = app.get("/api/v1/customers?risk_level=high&limit=500").await;
    assert_eq!(high["items"].as_array().map(Vec::len), Some(100), "moved");
    let (_, feed) = app.get("/api/v1/alerts?kind=customer_at_risk&limit=500").await;
    assert_eq!(feed["items"].as_array().map(Vec::len), Some(100), "all in the feed");
    app.deliver().await;
    for (platform, messages) in [("slack", app.slack().messages()), ("discord", app.discord().messages())] {
        assert_eq!(messages.len(), 1, "{platform}: at most one message");
        // Discord's text comes with Markdown escaped: compare the words.
        let text = messages[0].body.to_string().replace('\\', "");
        assert!(
            text.contains("Scorecard change (bands: low from 75 → 85, medium from 50 → 70)"),
            "{platform}: names the change: {text}"
        );
    }
}

#[tokio::test]
async fn a_first_time_customer_has_no_delta_and_no_drop_alert() {
    let app = setup(1).await;
    set_score(&app, "c000", 90).await;
    let first = app.customer("c000").await;
    assert!(first["delta"].is_null(), "{first}");
    // Forty minutes later it falls 60 points: no score from 7 days ago, no drop.
    app.advance(Duration::minutes(40));
    set_score(&app, "c000", 30).await;
    let later = app.customer("c000").await;
    assert!(later["delta"].is_null(), "{later}");
    assert!(app.alerts("c000", "health_score_drop").await.is_empty());
    // A week on, against a real baseline, a fall is a drop.
    app.advance(Duration::days(7));
    set_score(&app, "c000", 15).await;
    let week = app.customer("c000").await;
    assert_eq!(week["delta"], -15, "against 30, seven days ago: {week}");
    assert_eq!(app.alerts("c000", "health_score_drop").await.len(), 1);
}

#[tokio::test]
async fn a_first_salesforce_sync_of_300_accounts_is_at_most_one_summary_per_channel() {
    let app = spawn_app_with_salesforce_and_standins(perly_standins::OrgSpec {
        accounts: 300,
        ..perly_standins::OrgSpec::default()
    })
    .await;
    // The CRM measures are the whole scorecard, so the pulled activity and
    // opportunities alone give every account a verdict.
    scorecard_of(&app, &["relationship_recency", "renewal_outlook"]).await;
    let rules = json!({"event_kinds": ALL, "min_risk": null, "min_score_delta": null, "quiet_hours": null});
    let slack = app.slack().create_webhook("#customer-health");
    let discord = app.discord().create_webhook("customer-health");
    app.channel("slack", "#customer-health", &slack, rules.clone()).await;
    app.channel("discord", "customer-health", &discord, rules).await;

    let web = crate::salesforce::admin(&app).await;
    crate::salesforce::connect(&web, "production", "").await;
    app.sync().await;
    app.rescore().await;
    app.rescore().await;
    app.deliver().await;

    let (_, feed) = app.get("/api/v1/alerts?limit=500").await;
    let alerts = feed["items"].as_array().expect("items");
    assert!(!alerts.is_empty(), "the import's verdicts raised alerts: {feed}");
    assert!(
        alerts.iter().all(|a| a["import_id"].is_string()),
        "all from history: {feed}"
    );
    let (_, imports) = app.get("/api/v1/imports").await;
    let first = &imports["items"][0];
    assert_eq!(first["source"], "salesforce", "{imports}");
    assert_eq!(first["state"], "settled", "{imports}");
    for (platform, messages) in [("slack", app.slack().messages()), ("discord", app.discord().messages())] {
        assert_eq!(messages.len(), 1, "{platform}: one summary, no per-customer messages");
        let text = messages[0].body.to_string().replace('\\', "");
        assert!(
            text.contains("First Salesforce sync: 300 customers"),
            "{platform}: {text}"
        );
    }
}
