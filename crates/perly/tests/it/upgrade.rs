//! Upgrades never break an install. A database laid out as an earlier
//! build left it (that build's migrations, applied through sqlx as that
//! build did, and rows as it wrote them: `tests/fixtures/upgrade`) is
//! migrated by Perly's real code when the server starts, and everything in
//! it reads back through the API and the web app, and keeps working.

use chrono::{DateTime, Duration, Utc};
use perly_domain::ids::WorkspaceId;
use perly_store::db::Dialect;
use perly_store::migrations;
use serde_json::{json, Value};
use sqlx::any::AnyPoolOptions;
use sqlx::Executor;

use crate::helpers::*;
use crate::web::WebClient;

const INIT: i64 = 20261124000001;
const SESSIONS: i64 = 20261124000002;
const CHANNELS: i64 = 20261201000001;

/// A fresh database (SQLite or PostgreSQL, as the tests run) as an earlier
/// build left it: its migrations `set` and the rows of `fixture`.
async fn earlier_database(dir: &tempfile::TempDir, set: &[(i64, Option<&str>)], fixture: [&str; 2]) -> String {
    let url = fresh_database(dir).await;
    let dialect = Dialect::from_url(&url).expect("database URL");
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&match dialect {
            Dialect::Sqlite => format!("{url}?mode=rwc"),
            Dialect::Postgres => url.clone(),
        })
        .await
        .expect("connect");
    migrations::apply_as_of(&pool, dialect, set)
        .await
        .expect("the earlier build's migrations");
    let rows = match dialect {
        Dialect::Sqlite => fixture[0],
        Dialect::Postgres => fixture[1],
    };
    (&pool).execute(rows).await.expect("the fixture's rows");
    pool.close().await;
    url
}

fn at(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("a time: {v}"))
}

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

/// The first build with a store (66cd4ed): 20261124000001_init.sql as it
/// was then, explanation and alert state on the customers row, rollups in
/// a format Perly no longer reads.
#[tokio::test]
async fn a_database_of_the_first_build_reads_back_and_keeps_working_after_the_upgrade() {
    let dir = tempfile::tempdir().expect("dir");
    let url = earlier_database(
        &dir,
        &[(INIT, Some("66cd4ed"))],
        [
            include_str!("../fixtures/upgrade/sqlite/66cd4ed.sql"),
            include_str!("../fixtures/upgrade/postgres/66cd4ed.sql"),
        ],
    )
    .await;
    let ws: WorkspaceId = "019a2b00-0000-7000-8000-000000000001".parse().expect("id");
    let app = spawn_app_on(
        dir,
        url,
        ws,
        "perly_UpgradeFixtureKeyOfTheOldestDatabase0000001",
        t0(),
        false,
    )
    .await;

    // Customers and their scores, as the old build left them.
    let (status, list) = app.get("/api/v1/customers?sort=name").await;
    assert_eq!(status, 200, "{list}");
    let rows: Vec<Value> = items(&list)
        .iter()
        .map(|c| {
            json!([
                c["external_id"],
                c["name"],
                c["plan"],
                c["mrr"],
                c["score"],
                c["risk_level"],
                c["delta"],
                c["owner_email"],
                c["parent_external_id"]
            ])
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            json!([
                "acme",
                "Acme Corp",
                "pro",
                4200.0,
                42,
                "high",
                -12,
                "ana@upgrade.example",
                null
            ]),
            json!([
                "globex",
                "Globex",
                "enterprise",
                9900.5,
                88,
                "low",
                3,
                "ana@upgrade.example",
                null
            ]),
            json!(["initech", "Initech", "starter", null, null, null, null, null, "acme"]),
        ]
    );

    // The explanation moved from the customers row to customer_scores.
    let acme = app.customer("acme").await;
    assert_eq!(at(&acme["scored_at"]), t0() - Duration::days(1));
    let explanation = &acme["explanation"];
    assert_eq!(explanation["score"], 42, "{acme}");
    assert_eq!(explanation["signals"][0]["text"], "42 of 100 seats used (42%), −58 pts");
    assert_eq!(
        explanation["suggested_action"],
        "Book a call with the account owner this week"
    );
    assert_eq!(acme["coverage"]["summary"], "based on 1 of 1 measures");
    assert_eq!(
        acme["coverage"]["enough"], true,
        "a score from before coverage weights carried its risk level"
    );
    let history: Vec<(i64, &str)> = acme["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|p| {
            (
                p["score"].as_i64().unwrap_or(-1),
                p["risk_level"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(history, [(54, "medium"), (50, "medium"), (42, "high")]);
    assert_eq!(acme["recent_alerts"].as_array().map(Vec::len), Some(1), "{acme}");

    // The alert feed.
    let (_, alerts) = app.get("/api/v1/alerts").await;
    let alerts = items(&alerts);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0];
    assert_eq!(
        (
            &a["kind"],
            &a["customer_external_id"],
            &a["customer_name"],
            &a["risk_level"],
            &a["score"],
            &a["delta"]
        ),
        (
            &json!("customer_at_risk"),
            &json!("acme"),
            &json!("Acme Corp"),
            &json!("high"),
            &json!(42),
            &json!(-12)
        )
    );
    assert_eq!(a["headline"], "Moved into high risk (health score 42)");
    assert_eq!(a["signals"], json!(["42 of 100 seats used (42%), −58 pts"]));
    assert_eq!(at(&a["occurred_at"]), t0() - Duration::days(1));

    // The scorecard saved then (seven measures, seat utilisation only).
    let (_, card) = app.get("/api/v1/scorecard").await;
    assert_eq!(card["measures"]["seat_utilisation"]["weight"], 1.0, "{card}");
    assert_eq!(card["measures"]["usage_trend"]["weight"], 0.0, "{card}");

    // The stored events: one sent again is a duplicate, and rescoring folds
    // them again (Globex's newest came after its last score).
    let again = app
        .events(vec![event(
            "globex-seats-2",
            "globex",
            t0() - Duration::days(1),
            json!({"type": "seats_changed", "seats_used": 90, "seats_purchased": 100}),
        )])
        .await;
    assert_eq!(
        (again["accepted"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(1)),
        "{again}"
    );
    app.rescore().await;
    let globex = app.customer("globex").await;
    assert_eq!(
        (&globex["score"], &globex["risk_level"]),
        (&json!(90), &json!("low")),
        "{globex}"
    );
    assert_eq!(globex["explanation"]["measures"][0]["raw"], 0.9, "{globex}");
    let last = globex["history"].as_array().and_then(|h| h.last()).cloned();
    assert_eq!(last.map(|p| p["score"].clone()), Some(json!(90)));

    // New data goes in and is scored as usual.
    app.events(vec![event(
        "initech-seats-1",
        "initech",
        t0(),
        json!({"type": "seats_changed", "seats_used": 7, "seats_purchased": 10}),
    )])
    .await;
    app.rescore().await;
    let initech = app.customer("initech").await;
    assert_eq!(
        (&initech["score"], &initech["risk_level"]),
        (&json!(70), &json!("medium")),
        "{initech}"
    );

    // The admin signs in with the old password and sees the stored events.
    let web = WebClient {
        client: reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        base: app.base.clone(),
    };
    let (status, _) = web.sign_in("ana@upgrade.example", "correct horse battery").await;
    assert_eq!(status, 303, "sign-in");
    let (status, page, _) = web.get("/customers/acme").await;
    assert_eq!(status, 200);
    assert!(page.contains("Acme Corp"), "{page}");
    assert!(
        page.contains("<code>seats_changed</code>") && page.contains("<code>user_active</code>"),
        "{page}"
    );
}

/// The first build with Slack and Discord delivery (b3c074b): channels
/// without `next_due_at`, one broken with an alert waiting in the outbox.
#[tokio::test]
async fn a_database_of_the_first_delivery_build_keeps_its_channels_and_sends_what_waited() {
    let dir = tempfile::tempdir().expect("dir");
    let url = earlier_database(
        &dir,
        &[(INIT, None), (SESSIONS, None), (CHANNELS, Some("b3c074b"))],
        [
            include_str!("../fixtures/upgrade/sqlite/b3c074b.sql"),
            include_str!("../fixtures/upgrade/postgres/b3c074b.sql"),
        ],
    )
    .await;
    let ws: WorkspaceId = "019a2c00-0000-7000-8000-000000000001".parse().expect("id");
    let app = spawn_app_on(
        dir,
        url,
        ws,
        "perly_UpgradeFixtureKeyOfTheChannelsDatabase00002",
        t0(),
        true,
    )
    .await;
    let slack_id = "019a2c00-0000-7000-8000-000000000031";

    let umbrella = app.customer("umbrella").await;
    assert_eq!(
        (&umbrella["score"], &umbrella["risk_level"], &umbrella["delta"]),
        (&json!(30), &json!("high"), &json!(-20)),
        "{umbrella}"
    );
    assert_eq!(
        umbrella["explanation"]["suggested_action"],
        "Call the champion and review the rollout plan"
    );
    assert_eq!(umbrella["recent_alerts"].as_array().map(Vec::len), Some(2));
    assert_eq!(app.customer("hooli").await["score"], 80);

    // The channels, as they were: rules (with the storm guard's default
    // written down by a later migration), state, what waits.
    let (status, channels) = app.get("/api/v1/channels").await;
    assert_eq!(status, 200, "{channels}");
    let channels = items(&channels);
    assert_eq!(channels.len(), 2, "{channels:?}");
    let slack = channels
        .iter()
        .find(|c| c["id"] == slack_id)
        .expect("the Slack channel");
    assert_eq!(
        (&slack["platform"], &slack["name"], &slack["source"], &slack["status"]),
        (
            &json!("slack"),
            &json!("#cs-alerts"),
            &json!("pasted"),
            &json!("broken")
        )
    );
    assert_eq!(
        slack["broken_reason"],
        "Slack answered 404 no_service: the webhook was deleted"
    );
    assert_eq!(
        slack["webhook_hint"],
        "https://hooks.slack.com/services/T0AB…/B0CD…/••••"
    );
    assert_eq!(
        slack["rules"]["event_kinds"],
        json!(["customer_at_risk", "health_score_drop"])
    );
    assert_eq!(slack["rules"]["min_risk"], "high");
    assert_eq!(
        slack["rules"]["storm_guard"],
        json!({"messages": 10, "window_minutes": 10})
    );
    assert_eq!(slack["pending"], 1, "the drop alert waits");
    assert_eq!(
        at(&slack["last_sent_at"]),
        t0() - Duration::days(1) + Duration::minutes(1)
    );
    let discord = channels
        .iter()
        .find(|c| c["platform"] == "discord")
        .expect("the Discord channel");
    assert_eq!(
        (&discord["name"], &discord["status"], &discord["source"]),
        (&json!("#renewals"), &json!("paused"), &json!("oauth"))
    );
    assert_eq!(discord["rules"]["quiet_hours"]["time_zone"], "Europe/Paris");

    // The delivery log.
    assert_eq!(
        delivery_log(&app, slack_id).await,
        vec![json!(["broken", 404, 1, false]), json!(["sent", 200, 1, false])],
        "newest first"
    );

    // The admin reconnects the channel: the alert that waited goes out.
    let hook = app.slack().create_webhook("#cs-alerts");
    let (status, channel) = app
        .patch(&format!("/api/v1/channels/{slack_id}"), json!({"webhook_url": hook}))
        .await;
    assert_eq!(status, 200, "{channel}");
    assert_eq!(channel["status"], "active");
    app.deliver().await;
    let sent = app.slack().messages();
    assert_eq!(sent.len(), 1, "the waiting alert is delivered once");
    assert_eq!(sent[0].webhook_url, hook);
    assert!(sent[0].body.to_string().contains("Umbrella Corp"), "{}", sent[0].body);
    assert_eq!(delivery_log(&app, slack_id).await[0], json!(["sent", 200, 1, false]));
    let (_, channel) = app.get(&format!("/api/v1/channels/{slack_id}")).await;
    assert_eq!(channel["pending"], 0, "{channel}");
}

/// A channel's delivery log, newest first: (outcome, status, alerts, storm digest).
async fn delivery_log(app: &TestApp, channel: &str) -> Vec<Value> {
    let (status, log) = app.get(&format!("/api/v1/channels/{channel}/deliveries")).await;
    assert_eq!(status, 200, "{log}");
    items(&log)
        .iter()
        .map(|a| json!([a["outcome"], a["status"], a["alerts"], a["storm_digest"]]))
        .collect()
}
