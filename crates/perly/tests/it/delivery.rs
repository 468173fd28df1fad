//! Alerts to Slack and Discord, end to end through the real server and the
//! stand-ins: events in → score → alert → outbox → message received, with
//! the channel rules of the product pages, quiet hours, rate limits,
//! retries, broken webhooks and dead letters.

use chrono::{Duration, TimeZone, Utc};
use perly_standins::Fault;
use serde_json::{json, Value};

use crate::helpers::*;

async fn setup() -> TestApp {
    let app = spawn_app_with_standins().await;
    seat_only_scorecard(&app).await;
    app.customers(json!([
        {"external_id": "acme", "name": "Acme Corp", "seats_purchased": 100},
        {"external_id": "globex", "name": "Globex", "seats_purchased": 100, "plan": "starter"},
        {"external_id": "initech", "name": "Initech", "seats_purchased": 100},
    ]))
    .await;
    // Scored customers (a customer with no score raises no alert).
    for c in ["acme", "globex", "initech"] {
        set_score(&app, c, 80).await;
    }
    app
}

fn rules(kinds: &[&str], min_risk: Option<&str>) -> Value {
    json!({"event_kinds": kinds, "min_risk": min_risk, "min_score_delta": null, "quiet_hours": null})
}

const ALL: [&str; 5] = [
    "customer_at_risk",
    "expansion_signal",
    "health_score_drop",
    "upsell_opportunity",
    "billing_retry_failed",
];

/// The footers of the alerts a message carries ("Perly · Customer at risk").
fn kinds_of(platform: &str, body: &Value) -> Vec<String> {
    let items = match platform {
        "slack" => body["attachments"].as_array(),
        _ => body["embeds"].as_array(),
    };
    items
        .into_iter()
        .flatten()
        .map(|i| {
            let footer = if platform == "slack" {
                &i["footer"]
            } else {
                &i["footer"]["text"]
            };
            footer
                .as_str()
                .unwrap_or_default()
                .trim_start_matches("Perly · ")
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn an_alert_reaches_slack_and_discord_with_colour_link_score_delta_signals_and_action() {
    let app = setup().await;
    let slack_hook = app.slack().create_webhook("#cs-escalations");
    let discord_hook = app.discord().create_webhook("cs-escalations");
    app.channel(
        "slack",
        "#cs-escalations",
        &slack_hook,
        rules(&["customer_at_risk"], None),
    )
    .await;
    app.channel(
        "discord",
        "cs-escalations",
        &discord_hook,
        rules(&["customer_at_risk"], None),
    )
    .await;

    set_score(&app, "acme", 80).await;
    app.advance(Duration::days(7));
    set_score(&app, "acme", 45).await;
    let alert = app.alerts("acme", "customer_at_risk").await[0].clone();
    let stats = app.deliver().await;
    assert_eq!(stats.delivered, 2, "{stats:?}");

    let profile = format!("{}/customers/acme", app.base);
    let slack = app.slack().messages();
    assert_eq!(slack.len(), 1);
    let a = &slack[0].body["attachments"][0];
    assert_eq!(a["color"], "#E67E22", "high is orange");
    assert_eq!(a["title_link"], profile.as_str());
    assert!(a["title"]
        .as_str()
        .unwrap_or_default()
        .starts_with("Acme Corp — Risk escalated to High"));
    assert_eq!(a["fields"][0]["value"], "45 (−35)");
    let signals = alert["signals"].as_array().expect("signals");
    assert!(!signals.is_empty());
    for s in signals {
        let s = s.as_str().unwrap_or_default();
        assert!(a["fields"][2]["value"].as_str().unwrap_or_default().contains(s), "{s}");
    }
    assert_eq!(a["fields"][3]["value"], alert["suggested_action"]);
    assert!(slack[0].body["text"].as_str().unwrap_or_default().contains("Acme Corp"));

    let discord = app.discord().messages();
    assert_eq!(discord.len(), 1);
    let e = &discord[0].body["embeds"][0];
    assert_eq!(e["color"], 0xE67E22);
    assert_eq!(e["url"], profile.as_str());
    assert_eq!(e["fields"][0]["value"], "45 (−35)");
    assert_eq!(e["fields"][3]["value"].as_str(), alert["suggested_action"].as_str());
    assert_eq!(discord[0].body["allowed_mentions"], json!({"parse": []}));
    assert_eq!(discord[0].status, 200, "Perly waits for Discord to confirm");

    // Delivered once: nothing more goes out.
    assert_eq!(app.deliver().await.delivered, 0);
    assert_eq!(app.slack().requests().len(), 1);
}

#[tokio::test]
async fn the_seed_four_channel_table_routes_each_alert_to_exactly_the_matching_channels() {
    let app = setup().await;
    // The table of the Slack and Discord product pages, exactly as written.
    let table = [
        ("#customer-health", rules(&ALL, None)),
        ("#cs-escalations", rules(&["customer_at_risk"], Some("high"))),
        (
            "#revenue-signals",
            rules(&["expansion_signal", "upsell_opportunity"], None),
        ),
        ("#billing-alerts", rules(&["billing_retry_failed"], None)),
    ];
    for platform in ["slack", "discord"] {
        for (name, r) in &table {
            let hook = match platform {
                "slack" => app.slack().create_webhook(name),
                _ => app.discord().create_webhook(name.trim_start_matches('#')),
            };
            app.channel(platform, name, &hook, r.clone()).await;
        }
    }
    let (_, listed) = app.get("/api/v1/channels").await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(8));

    // Acme: at risk (high) and a health score drop. Globex: billing retry failed.
    // Initech: a plan limit 96% used (upsell). Initech at medium: no at-risk alert.
    for c in ["acme", "globex", "initech"] {
        set_score(&app, c, 80).await;
    }
    app.advance(Duration::days(7));
    set_score(&app, "acme", 45).await;
    billing_retry_failed(&app, "globex", 1).await;
    let now = app.now();
    app.events(vec![event(
        "initech-usage",
        "initech",
        now,
        json!({"type": "usage_measured", "metric": "api_calls", "value": 96.0, "limit": 100.0}),
    )])
    .await;
    app.rescore().await;
    app.deliver().await;

    let mut expected_all = vec![
        "Billing retry failed",
        "Customer at risk",
        "Health score drop",
        "Upsell opportunity",
    ];
    expected_all.sort();
    for platform in ["slack", "discord"] {
        let received = match platform {
            "slack" => app.slack().messages(),
            _ => app.discord().messages(),
        };
        let by_channel = |name: &str| -> Vec<String> {
            let mut kinds: Vec<String> = received
                .iter()
                .filter(|m| m.channel.trim_start_matches('#') == name.trim_start_matches('#'))
                .flat_map(|m| kinds_of(platform, &m.body))
                .collect();
            kinds.sort();
            kinds
        };
        assert_eq!(by_channel("#customer-health"), expected_all, "{platform}");
        assert_eq!(by_channel("#cs-escalations"), vec!["Customer at risk"], "{platform}");
        assert_eq!(by_channel("#revenue-signals"), vec!["Upsell opportunity"], "{platform}");
        assert_eq!(
            by_channel("#billing-alerts"),
            vec!["Billing retry failed"],
            "{platform}"
        );
    }
}

/// Monday 2 November 2026 12:00 UTC is 13:00 in Paris; the test moves on from there.
fn paris_hours() -> Value {
    json!({"time_zone": "Europe/Paris", "business_days": ["Mon", "Tue", "Wed", "Thu", "Fri"], "opens": "09:00", "closes": "18:00"})
}

#[tokio::test]
async fn quiet_hours_hold_alerts_then_deliver_them_as_one_digest_when_business_hours_open() {
    let app = setup().await;
    let hook = app.slack().create_webhook("#billing-alerts");
    let mut r = rules(&ALL, None);
    r["quiet_hours"] = paris_hours();
    let id = app.channel("slack", "#billing-alerts", &hook, r).await;
    set_score(&app, "globex", 60).await;
    app.deliver().await;
    app.slack().clear();

    // Saturday 7 November, 15:00 UTC: closed. Three retries fail.
    let saturday = Utc.with_ymd_and_hms(2026, 11, 7, 15, 0, 0).single().expect("time");
    app.advance(saturday - app.now());
    for attempt in 1..=3 {
        billing_retry_failed(&app, "globex", attempt).await;
        app.advance(Duration::minutes(10));
    }
    app.deliver().await;
    assert!(app.slack().requests().is_empty(), "held during quiet hours");
    let (_, channel) = app.get(&format!("/api/v1/channels/{id}")).await;
    assert_eq!(channel["pending"], 3, "{channel}");

    // Sunday: still closed.
    app.advance(Duration::days(1));
    app.deliver().await;
    assert!(app.slack().requests().is_empty());

    // Monday 9 November 08:00 UTC is 09:00 in Paris: one digest, not a burst.
    let monday = Utc.with_ymd_and_hms(2026, 11, 9, 8, 0, 0).single().expect("time");
    app.advance(monday - app.now());
    app.deliver().await;
    let received = app.slack().messages();
    assert_eq!(received.len(), 1, "one digest message");
    assert_eq!(received[0].body["attachments"].as_array().map(Vec::len), Some(3));
    assert!(received[0].body["text"]
        .as_str()
        .unwrap_or_default()
        .starts_with("3 Perly alerts"));
    let (_, channel) = app.get(&format!("/api/v1/channels/{id}")).await;
    assert_eq!(channel["pending"], 0);
}

#[tokio::test]
async fn a_critical_alert_goes_out_at_once_even_in_quiet_hours() {
    let app = setup().await;
    let hook = app.discord().create_webhook("cs-escalations");
    let mut r = rules(&["customer_at_risk"], None);
    r["quiet_hours"] = paris_hours();
    app.channel("discord", "cs-escalations", &hook, r).await;
    set_score(&app, "acme", 80).await;
    let saturday = Utc.with_ymd_and_hms(2026, 11, 7, 15, 0, 0).single().expect("time");
    app.advance(saturday - app.now());
    set_score(&app, "acme", 10).await;
    app.deliver().await;
    let received = app.discord().messages();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body["embeds"][0]["color"], 0xE74C3C, "critical is red");
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out_before_trying_again() {
    let app = setup().await;
    let hook = app.slack().create_webhook("#customer-health");
    let id = app.channel("slack", "#customer-health", &hook, rules(&ALL, None)).await;
    app.slack().inject(
        &hook,
        Fault::RateLimit {
            retry_after_ms: 30_000,
            times: 1,
        },
    );
    billing_retry_failed(&app, "globex", 1).await;
    app.deliver().await;
    let first = app.slack().requests();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].status, 429);

    // Ten seconds on, Slack's 30 s are not over: Perly does not ask again.
    app.advance(Duration::seconds(10));
    app.deliver().await;
    assert_eq!(app.slack().requests().len(), 1, "Retry-After is honoured");

    app.advance(Duration::seconds(21));
    app.deliver().await;
    assert_eq!(app.slack().messages().len(), 1);
    let (_, log) = app.get(&format!("/api/v1/channels/{id}/deliveries")).await;
    let outcomes: Vec<&str> = log["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| a["outcome"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(outcomes, vec!["sent", "retry"], "newest first");
    assert_eq!(log["items"][1]["status"], 429);
}

#[tokio::test]
async fn discord_retry_after_in_the_body_is_honoured() {
    let app = setup().await;
    let hook = app.discord().create_webhook("customer-health");
    app.channel("discord", "customer-health", &hook, rules(&ALL, None))
        .await;
    app.discord().inject(
        &hook,
        Fault::RateLimit {
            retry_after_ms: 5_000,
            times: 1,
        },
    );
    billing_retry_failed(&app, "globex", 1).await;
    app.deliver().await;
    app.advance(Duration::seconds(4));
    app.deliver().await;
    assert_eq!(app.discord().requests().len(), 1);
    app.advance(Duration::seconds(2));
    app.deliver().await;
    assert_eq!(app.discord().messages().len(), 1);
}

#[tokio::test]
async fn a_500_is_retried_with_backoff_until_it_is_delivered() {
    let app = setup().await;
    let hook = app.discord().create_webhook("customer-health");
    let id = app
        .channel("discord", "customer-health", &hook, rules(&ALL, None))
        .await;
    app.discord().inject(&hook, Fault::Status { status: 500, times: 2 });
    billing_retry_failed(&app, "globex", 1).await;
    for _ in 0..10 {
        app.deliver().await;
        if !app.discord().messages().is_empty() {
            break;
        }
        app.advance(Duration::seconds(3));
    }
    assert_eq!(app.discord().messages().len(), 1);
    let statuses: Vec<u16> = app.discord().requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![500, 500, 200]);
    let (_, log) = app.get(&format!("/api/v1/channels/{id}/deliveries")).await;
    assert_eq!(log["items"].as_array().map(Vec::len), Some(3));
    assert!(log["items"][0]["latency_ms"].is_i64());
}

#[tokio::test]
async fn a_deleted_webhook_marks_the_channel_broken_and_a_reconnect_sends_what_was_held() {
    let app = setup().await;
    for (platform, reason) in [("slack", "404"), ("discord", "Unknown Webhook")] {
        let hook = match platform {
            "slack" => app.slack().create_webhook("#customer-health"),
            _ => app.discord().create_webhook("customer-health"),
        };
        let id = app.channel(platform, "customer-health", &hook, rules(&ALL, None)).await;
        match platform {
            "slack" => app.slack().inject(&hook, Fault::Delete),
            _ => app.discord().inject(&hook, Fault::Delete),
        }
        billing_retry_failed(&app, "globex", if platform == "slack" { 1 } else { 2 }).await;
        app.deliver().await;
        let (_, channel) = app.get(&format!("/api/v1/channels/{id}")).await;
        assert_eq!(channel["status"], "broken", "{channel}");
        assert!(
            channel["broken_reason"].as_str().unwrap_or_default().contains(reason),
            "{channel}"
        );

        // No more attempts while broken, however long it waits.
        let before = match platform {
            "slack" => app.slack().requests().len(),
            _ => app.discord().requests().len(),
        };
        app.advance(Duration::hours(2));
        app.deliver().await;
        let after = match platform {
            "slack" => app.slack().requests().len(),
            _ => app.discord().requests().len(),
        };
        assert_eq!(before, after, "a broken channel is not retried");

        // The admin reconnects with a new webhook: the held alert goes out.
        let fresh = match platform {
            "slack" => app.slack().create_webhook("#customer-health"),
            _ => app.discord().create_webhook("customer-health"),
        };
        let (status, channel) = app
            .patch(&format!("/api/v1/channels/{id}"), json!({"webhook_url": fresh}))
            .await;
        assert_eq!(status, 200, "{channel}");
        assert_eq!(channel["status"], "active");
        app.deliver().await;
        let delivered = match platform {
            "slack" => app.slack().messages(),
            _ => app.discord().messages(),
        };
        assert_eq!(delivered.len(), 1, "{platform}");
        assert_eq!(delivered[0].webhook_url, fresh);
    }
}

#[tokio::test]
async fn archived_channels_and_revoked_tokens_mark_the_channel_broken_with_the_reason() {
    let app = setup().await;
    let cases = [
        ("slack", Fault::Archive, "channel_is_archived"),
        ("slack", Fault::Revoke, "invalid_token"),
        ("discord", Fault::Revoke, "Invalid Webhook Token"),
    ];
    let mut ids = Vec::new();
    for (platform, fault, _) in &cases {
        let hook = match *platform {
            "slack" => app.slack().create_webhook("#customer-health"),
            _ => app.discord().create_webhook("customer-health"),
        };
        match *platform {
            "slack" => app.slack().inject(&hook, fault.clone()),
            _ => app.discord().inject(&hook, fault.clone()),
        }
        ids.push(app.channel(platform, "customer-health", &hook, rules(&ALL, None)).await);
    }
    billing_retry_failed(&app, "globex", 1).await;
    app.deliver().await;
    for ((_, _, reason), id) in cases.iter().zip(&ids) {
        let (_, channel) = app.get(&format!("/api/v1/channels/{id}")).await;
        assert_eq!(channel["status"], "broken", "{channel}");
        assert!(
            channel["broken_reason"].as_str().unwrap_or_default().contains(reason),
            "{channel}"
        );
        assert_eq!(channel["pending"], 1, "the alert waits for a reconnect");
    }
}

#[tokio::test]
async fn a_refused_payload_is_kept_as_a_dead_letter_and_the_channel_goes_on() {
    let app = setup().await;
    let hook = app.slack().create_webhook("#customer-health");
    let id = app.channel("slack", "#customer-health", &hook, rules(&ALL, None)).await;
    app.slack().inject(&hook, Fault::Status { status: 400, times: 1 });
    billing_retry_failed(&app, "globex", 1).await;
    app.deliver().await;
    let (_, channel) = app.get(&format!("/api/v1/channels/{id}")).await;
    assert_eq!(channel["status"], "active");
    assert_eq!(channel["pending"], 0);
    let (_, log) = app.get(&format!("/api/v1/channels/{id}/deliveries")).await;
    assert_eq!(log["items"][0]["outcome"], "dead");
    assert_eq!(log["items"][0]["status"], 400);
    assert!(!log["items"][0]["answer"].as_str().unwrap_or_default().is_empty());

    app.advance(Duration::minutes(1));
    billing_retry_failed(&app, "globex", 2).await;
    app.deliver().await;
    assert_eq!(app.slack().messages().len(), 1, "the next alert goes out");
}

#[tokio::test]
async fn a_test_message_is_sent_and_paused_channels_receive_nothing() {
    let app = setup().await;
    let hook = app.slack().create_webhook("#customer-health");
    let id = app.channel("slack", "#customer-health", &hook, rules(&ALL, None)).await;
    let (status, _) = app.post(&format!("/api/v1/channels/{id}/test"), json!({})).await;
    assert_eq!(status, 202);
    app.deliver().await;
    let m = app.slack().messages();
    assert_eq!(m.len(), 1);
    assert!(m[0].body["text"].as_str().unwrap_or_default().contains("test message"));

    let (_, paused) = app
        .patch(&format!("/api/v1/channels/{id}"), json!({"enabled": false}))
        .await;
    assert_eq!(paused["status"], "paused");
    billing_retry_failed(&app, "globex", 1).await;
    app.deliver().await;
    assert_eq!(app.slack().messages().len(), 1);
}

#[tokio::test]
async fn a_dry_run_counts_and_lists_the_alerts_the_rules_would_have_sent() {
    let app = setup().await;
    for c in ["acme", "globex"] {
        set_score(&app, c, 80).await;
    }
    app.advance(Duration::days(7));
    set_score(&app, "acme", 45).await;
    billing_retry_failed(&app, "globex", 1).await;
    let (status, all) = app
        .post("/api/v1/channels/dry-run", json!({"rules": rules(&ALL, None)}))
        .await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["matched"], 3, "{all}");
    let (_, escalations) = app
        .post(
            "/api/v1/channels/dry-run",
            json!({"rules": rules(&["customer_at_risk"], Some("high")), "days": 30}),
        )
        .await;
    assert_eq!(escalations["matched"], 1);
    assert_eq!(escalations["alerts"][0]["customer_external_id"], "acme");
    assert_eq!(escalations["alerts"][0]["kind"], "customer_at_risk");
}

#[tokio::test]
async fn bad_channel_input_names_the_field_and_saves_nothing() {
    let app = setup().await;
    let good = app.slack().create_webhook("#customer-health");
    let cases = [
        (
            json!({"platform": "slack", "name": "#x", "webhook_url": "https://evil.example/services/T1/B1/x"}),
            "webhook_url",
        ),
        (
            json!({"platform": "discord", "name": "#x", "webhook_url": good}),
            "webhook_url",
        ),
        (
            json!({"platform": "slack", "name": "#x", "webhook_url": good,
                   "rules": {"event_kinds": ALL, "quiet_hours": {"time_zone": "Mars/Olympus", "business_days": ["Mon"], "opens": "09:00", "closes": "17:00"}}}),
            "rules.quiet_hours.time_zone",
        ),
        (
            json!({"platform": "slack", "name": "#x", "webhook_url": good,
                   "rules": {"event_kinds": ALL, "quiet_hours": {"time_zone": "Europe/Paris", "business_days": ["Mon"], "opens": "25:00", "closes": "17:00"}}}),
            "rules.quiet_hours.opens",
        ),
        (
            json!({"platform": "slack", "name": "#x", "webhook_url": good,
                   "rules": {"event_kinds": ALL, "quiet_hours": {"time_zone": "Europe/Paris", "business_days": ["Mon"], "opens": "18:00", "closes": "09:00"}}}),
            "rules.quiet_hours.closes",
        ),
        (
            json!({"platform": "slack", "name": "#x", "webhook_url": good, "rules": {"event_kinds": []}}),
            "rules.event_kinds",
        ),
        (json!({"platform": "slack", "name": "  ", "webhook_url": good}), "name"),
        (
            json!({"platform": "teams", "name": "#x", "webhook_url": good}),
            "platform",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = app.post("/api/v1/channels", body.clone()).await;
        assert_eq!(status, 422, "{body} → {answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
        assert!(!answer["error"]["message"].as_str().unwrap_or_default().is_empty());
    }
    let (_, listed) = app.get("/api/v1/channels").await;
    assert_eq!(listed["items"], json!([]), "nothing saved");

    // An update with a bad rule changes nothing either.
    let id = app.channel("slack", "#customer-health", &good, rules(&ALL, None)).await;
    let (status, answer) = app
        .patch(
            &format!("/api/v1/channels/{id}"),
            json!({"name": "#renamed", "rules": {"event_kinds": []}}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(answer["error"]["field"], "rules.event_kinds");
    let (_, channel) = app.get(&format!("/api/v1/channels/{id}")).await;
    assert_eq!(channel["name"], "#customer-health");
    assert_eq!(app.get("/api/v1/channels/not-an-id").await.0, 404);
}

#[tokio::test]
async fn webhook_urls_are_encrypted_at_rest_never_shown_and_scoped_to_the_workspace() {
    let app = setup().await;
    let hook = app.slack().create_webhook("#customer-health");
    let id = app.channel("slack", "#customer-health", &hook, rules(&ALL, None)).await;
    let secret = hook.rsplit('/').next().expect("secret part").to_owned();
    let (_, listed) = app.get("/api/v1/channels").await;
    assert!(!listed.to_string().contains(&secret), "{listed}");
    assert!(listed["items"][0]["webhook_hint"]
        .as_str()
        .unwrap_or_default()
        .ends_with("/••••"));
    if let Some(file) = app.database_file() {
        let bytes = std::fs::read(&file).expect("db");
        let wal = std::fs::read(file.with_extension("db-wal")).unwrap_or_default();
        for b in [bytes, wal] {
            assert!(
                !b.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "webhook stored in the clear"
            );
        }
    }
    let (_, other_key) = app.other_workspace("Other Co").await;
    let other = Some(other_key.as_str());
    let path = format!("/api/v1/channels/{id}");
    assert_eq!(app.send(reqwest::Method::GET, &path, other, None).await.0, 404);
    assert_eq!(app.send(reqwest::Method::DELETE, &path, other, None).await.0, 404);
    let (_, theirs) = app.send(reqwest::Method::GET, "/api/v1/channels", other, None).await;
    assert_eq!(theirs["items"], json!([]));
    assert_eq!(app.delete(&path).await.0, 204);
    assert_eq!(app.get(&path).await.0, 404);
}
