//! Settings > Notifications over plain HTTP: the seed's four channels set up
//! through the forms, rules errors shown next to their field with nothing
//! saved, the dry run, the test message, the delivery log and the storm guard.

use perly_store::Role;
use serde_json::Value;

use crate::helpers::*;
use crate::web::{add_user, WebClient};

async fn admin(app: &TestApp) -> (WebClient, String) {
    add_user(app, "ana@example.com", Role::Admin).await;
    let web = WebClient::new(app);
    web.sign_in("ana@example.com", "correct horse battery").await;
    let (_, page, _) = web.get("/settings/notifications").await;
    let csrf = WebClient::csrf(&page);
    (web, csrf)
}

/// Adds a channel by webhook URL through the form; returns its page path.
async fn add(web: &WebClient, csrf: &str, platform: &str, name: &str, hook: &str) -> String {
    let (status, body, headers) = web
        .post(
            "/settings/notifications",
            &[
                ("csrf", csrf),
                ("platform", platform),
                ("name", name),
                ("webhook_url", hook),
            ],
        )
        .await;
    assert_eq!(status, 303, "{body}");
    headers["location"].to_str().expect("location").to_owned()
}

async fn channel(app: &TestApp, name: &str) -> Value {
    let (_, list) = app.get("/api/v1/channels").await;
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == name)
        .cloned()
        .expect("channel")
}

#[tokio::test]
async fn the_seed_table_is_set_up_through_the_forms_exactly_as_the_product_page_writes_it() {
    let app = spawn_app_with_standins().await;
    let (web, csrf) = admin(&app).await;
    let table: [(&str, &[&str], &str); 4] = [
        (
            "#customer-health",
            &[
                "customer_at_risk",
                "expansion_signal",
                "health_score_drop",
                "upsell_opportunity",
                "billing_retry_failed",
            ],
            "",
        ),
        ("#cs-escalations", &["customer_at_risk"], "high"),
        ("#revenue-signals", &["expansion_signal", "upsell_opportunity"], ""),
        ("#billing-alerts", &["billing_retry_failed"], ""),
    ];
    for (name, kinds, min_risk) in table {
        let hook = app.slack().create_webhook(name);
        let page = add(&web, &csrf, "slack", name, &hook).await;
        let mut form: Vec<(String, String)> = vec![
            ("csrf".into(), csrf.clone()),
            ("name".into(), name.into()),
            ("min_risk".into(), min_risk.into()),
            ("min_score_delta".into(), String::new()),
        ];
        for k in kinds {
            form.push((format!("kind_{k}"), "on".into()));
        }
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (status, body, _) = web.post(&page, &form).await;
        assert_eq!(status, 303, "{body}");
    }
    let (_, list, _) = web.get("/settings/notifications").await;
    for summary in [
        "All events · All levels",
        "Customer at risk only · High, Critical",
        "Expansion, Upsell · All levels",
        "Billing retry failed",
    ] {
        assert!(list.contains(summary), "{summary} missing from the list");
    }
    let escalations = channel(&app, "#cs-escalations").await;
    assert_eq!(
        escalations["rules"]["event_kinds"],
        serde_json::json!(["customer_at_risk"])
    );
    assert_eq!(escalations["rules"]["min_risk"], "high");
    let revenue = channel(&app, "#revenue-signals").await;
    assert_eq!(
        revenue["rules"]["event_kinds"],
        serde_json::json!(["expansion_signal", "upsell_opportunity"])
    );
}

#[tokio::test]
async fn bad_rules_and_webhooks_are_shown_at_their_field_and_nothing_is_saved() {
    let app = spawn_app_with_standins().await;
    let (web, csrf) = admin(&app).await;

    let (status, page, _) = web
        .post(
            "/settings/notifications",
            &[
                ("csrf", &csrf),
                ("platform", "slack"),
                ("name", "#x"),
                ("webhook_url", "https://hooks.slack.com.evil.example/services/T1/B1/x"),
            ],
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        page.contains("field-error") && page.contains("hooks.slack.com.evil.example"),
        "typed value kept"
    );
    assert_eq!(app.get("/api/v1/channels").await.1["items"], serde_json::json!([]));

    let hook = app.slack().create_webhook("#customer-health");
    let path = add(&web, &csrf, "slack", "#customer-health", &hook).await;
    let before = channel(&app, "#customer-health").await;
    let base = [
        ("csrf", csrf.as_str()),
        ("name", "#renamed"),
        ("kind_customer_at_risk", "on"),
        ("quiet_hours", "on"),
        ("day_mon", "on"),
    ];
    for (extra, expect) in [
        (
            vec![("time_zone", "Mars/Olympus"), ("opens", "09:00"), ("closes", "18:00")],
            "Mars/Olympus",
        ),
        (
            vec![("time_zone", "Europe/Paris"), ("opens", "25:00"), ("closes", "18:00")],
            "25:00",
        ),
    ] {
        let mut form = base.to_vec();
        form.extend(extra);
        let (status, page, _) = web.post(&path, &form).await;
        assert_eq!(status, 422, "{expect}");
        assert!(page.contains("field-error") && page.contains(expect), "{expect}");
    }
    let (status, page, _) = web
        .post(&path, &[("csrf", &csrf), ("name", "#renamed"), ("min_risk", "")])
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("choose at least one alert kind"));
    assert_eq!(channel(&app, "#customer-health").await, before, "nothing saved");
}

#[tokio::test]
async fn the_channel_page_runs_a_dry_run_sends_a_test_message_and_shows_the_delivery_log() {
    let app = spawn_app_with_standins().await;
    let (web, csrf) = admin(&app).await;
    seat_only_scorecard(&app).await;
    app.customers(serde_json::json!([{"external_id": "acme", "name": "Acme Corp", "seats_purchased": 100}]))
        .await;
    set_score(&app, "acme", 80).await;
    billing_retry_failed(&app, "acme", 1).await;

    let hook = app.discord().create_webhook("customer-health");
    let path = add(&web, &csrf, "discord", "customer-health", &hook).await;
    let (status, page, _) = web
        .post(
            &format!("{path}/dry-run"),
            &[
                ("csrf", &csrf),
                ("name", "customer-health"),
                ("kind_billing_retry_failed", "on"),
            ],
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        page.contains("would have received 1 alert"),
        "dry run counts the retry alert"
    );
    assert!(page.contains("Acme Corp"));

    let (status, _, _) = web.post(&format!("{path}/test"), &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    app.deliver().await;
    assert_eq!(app.discord().messages().len(), 1);
    let (_, page, _) = web.get(&path).await;
    // One row of the delivery log, the test message's, accepted by Discord
    // (200: Perly posts with `?wait=true`); "Nothing sent yet." would not match.
    assert!(
        page.contains(r#"<span class="outcome sent">sent</span></td><td class="num">200</td>"#),
        "the delivery log shows the attempt: {page}"
    );
    assert!(page.contains("<td>test message</td></tr>"), "{page}");
    assert!(!page.contains("Nothing sent yet."), "{page}");
    assert!(
        !page.contains(hook.rsplit('/').next().unwrap_or("x")),
        "the webhook token is never shown"
    );
}

#[tokio::test]
async fn the_storm_guard_is_edited_with_the_rules_and_shown_with_them() {
    let app = spawn_app_with_standins().await;
    let (web, csrf) = admin(&app).await;
    let hook = app.slack().create_webhook("#billing-alerts");
    let path = add(&web, &csrf, "slack", "#billing-alerts", &hook).await;
    let (_, page, _) = web.get(&path).await;
    assert!(page.contains("Storm guard"), "{page}");
    assert!(
        page.contains(r#"name="storm_messages" value="10""#),
        "the default is shown"
    );
    assert!(page.contains("at most 10 messages per 10 minutes"));
    let default = serde_json::json!({"messages": 10, "window_minutes": 10});
    assert_eq!(channel(&app, "#billing-alerts").await["rules"]["storm_guard"], default);

    let form = |messages: &'static str, minutes: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("name", "#billing-alerts".to_owned()),
            ("kind_billing_retry_failed", "on".to_owned()),
            ("storm_messages", messages.to_owned()),
            ("storm_window_minutes", minutes.to_owned()),
        ]
    };
    let bad = form("0", "10");
    let bad: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, page, _) = web.post(&path, &bad).await;
    assert_eq!(status, 422);
    assert!(page.contains("field-error") && page.contains("from 1 to 100"), "{page}");
    assert_eq!(
        channel(&app, "#billing-alerts").await["rules"]["storm_guard"],
        default,
        "nothing saved"
    );

    let good = form("3", "60");
    let good: Vec<(&str, &str)> = good.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, body, _) = web.post(&path, &good).await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(
        channel(&app, "#billing-alerts").await["rules"]["storm_guard"],
        serde_json::json!({"messages": 3, "window_minutes": 60})
    );
    let (_, list, _) = web.get("/settings/notifications").await;
    assert!(list.contains("3 messages per hour"), "shown in the list");
}
