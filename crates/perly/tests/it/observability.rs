//! What operators see: `/metrics` scraped from the real server's metrics
//! listener after ingest, rescoring, alerts, deliveries and a Salesforce
//! sync, parsed by the Prometheus project's OpenMetrics parser
//! (`tests/parse_openmetrics.py`, `prometheus_client` pinned in
//! `tests/requirements.txt`; a missing python3 or package fails the test);
//! `/readyz` ready, and not ready when the database is unreachable, dropped
//! or silent; and the log formats of the real binary on a pipe.

use std::collections::HashMap;
use std::time::{Duration as StdDuration, Instant};

use chrono::Duration;
use perly_standins::Fault;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::salesforce::{admin, connect, small_org};

#[derive(Debug, Deserialize)]
struct Family {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    samples: Vec<Sample>,
}

#[derive(Debug, Deserialize)]
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: Value,
}

/// One parsed scrape.
struct Scrape {
    families: Vec<Family>,
}

impl Scrape {
    fn family(&self, name: &str) -> &Family {
        self.families
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no family {name} in the scrape"))
    }

    /// The value of the one sample named `sample` with exactly `labels`.
    fn value(&self, sample: &str, labels: &[(&str, &str)]) -> f64 {
        let want: HashMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let found: Vec<&Sample> = self
            .families
            .iter()
            .flat_map(|f| &f.samples)
            .filter(|s| s.name == sample && s.labels == want)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one sample {sample}{labels:?} expected, found {found:?}"
        );
        found[0].value.as_f64().unwrap_or(f64::NAN)
    }

    /// The sum of the samples named `sample` (every label set).
    fn sum(&self, sample: &str) -> f64 {
        self.families
            .iter()
            .flat_map(|f| &f.samples)
            .filter(|s| s.name == sample)
            .filter_map(|s| s.value.as_f64())
            .sum()
    }

    fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.families.iter().flat_map(|f| &f.samples)
    }
}

/// Parses an exposition with `prometheus_client`'s OpenMetrics parser.
async fn parse(text: &str) -> Scrape {
    use tokio::io::AsyncWriteExt;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/parse_openmetrics.py");
    let mut child = tokio::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("could not run python3 ({e}): install Python 3 and `pip install -r crates/perly/tests/requirements.txt`")
        });
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(text.as_bytes()).await.expect("write the exposition");
    drop(stdin);
    let out = child.wait_with_output().await.expect("parser ran");
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    Scrape {
        families: serde_json::from_slice(&out.stdout).expect("the parser's JSON"),
    }
}

fn metrics_url(app: &TestApp) -> String {
    let addr = app._running.metrics_addr.expect("started with [metrics] listen");
    format!("http://{addr}/metrics")
}

async fn scrape(app: &TestApp) -> (Scrape, String) {
    let resp = app.client.get(metrics_url(app)).send().await.expect("scrape");
    assert_eq!(resp.status(), 200);
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{content_type}"
    );
    let text = resp.text().await.expect("exposition");
    (parse(&text).await, text)
}

fn with_metrics(s: &mut perly::config::Settings) {
    s.metrics.listen = Some("127.0.0.1:0".into());
}

fn rules(kinds: &[&str]) -> Value {
    json!({"event_kinds": kinds, "min_risk": null, "min_score_delta": null, "quiet_hours": null})
}

fn seats(id: &str, customer: &str, at: chrono::DateTime<chrono::Utc>, used: u32) -> Value {
    event(id, customer, at, json!({"type": "seats_changed", "seats_used": used}))
}

#[tokio::test]
async fn metrics_count_ingest_rescoring_alerts_deliveries_and_http_by_route_and_name_no_customer() {
    let app = spawn_app_with_standins_and_settings(&with_metrics).await;
    // Not on the app's own listener: users never reach it.
    let (status, _) = app.send(reqwest::Method::GET, "/metrics", None, None).await;
    assert_eq!(status, 404);

    seat_only_scorecard(&app).await;
    // Customers: two created and one refused; a minute later one more
    // created and one updated. (A new customer waits for its first score.)
    let (status, body) = app
        .post(
            "/api/v1/customers",
            json!({"customers": [
                {"external_id": "acme", "name": "Acme Corp", "seats_purchased": 100},
                {"external_id": "globex", "name": "Globex", "seats_purchased": 100},
                {"external_id": "nameless"},
            ]}),
        )
        .await;
    assert_eq!(
        (status, body["created"].clone(), body["rejected"].clone()),
        (200, json!(2), json!(1)),
        "{body}"
    );
    app.advance(Duration::seconds(60));
    app.customers(json!([
        {"external_id": "initech", "name": "Initech", "seats_purchased": 100},
        {"external_id": "acme", "name": "Acme Corp", "seats_purchased": 100},
    ]))
    .await;
    // A Slack and a Discord channel for customers at risk (the Discord
    // one is paused once it holds an alert).
    let slack_hook = app.slack().create_webhook("#cs-escalations");
    app.channel("slack", "#cs-escalations", &slack_hook, rules(&["customer_at_risk"]))
        .await;
    let discord_hook = app.discord().create_webhook("cs-paused");
    let paused = app
        .channel("discord", "cs-paused", &discord_hook, rules(&["customer_at_risk"]))
        .await;

    // Events: three accepted, one duplicate, two rejected.
    let t = app.now();
    let body = app
        .events(vec![
            seats("a-1", "acme", t, 80),
            seats("g-1", "globex", t, 80),
            seats("i-1", "initech", t, 80),
            seats("a-1", "acme", t, 80),
            json!({"id": "x-1", "customer_id": "acme", "type": "no_such_type", "occurred_at": t.to_rfc3339()}),
            seats("u-1", "unknown-customer", t, 10),
        ])
        .await;
    assert_eq!(
        (&body["accepted"], &body["duplicates"], &body["rejected"]),
        (&json!(3), &json!(1), &json!(2)),
        "{body}"
    );
    app.get("/api/v1/customers/acme").await;
    app.get("/api/v1/customers/globex").await;
    app.send(reqwest::Method::GET, "/no/such/acme/page", None, None).await;

    // The queue before rescoring: three customers, the first marked 90 s ago.
    app.advance(Duration::seconds(30));
    let (m, text) = scrape(&app).await;
    assert_eq!(m.family("perly_ingest_rows").kind, "counter");
    let rows = |kind: &str, result: &str| m.value("perly_ingest_rows_total", &[("kind", kind), ("result", result)]);
    assert_eq!(rows("event", "accepted"), 3.0);
    assert_eq!(rows("event", "duplicate"), 1.0);
    assert_eq!(rows("event", "rejected"), 2.0);
    assert_eq!(rows("customer", "created"), 3.0);
    assert_eq!(rows("customer", "updated"), 1.0);
    assert_eq!(rows("customer", "rejected"), 1.0);
    assert_eq!(m.family("perly_rescore_queue_customers").kind, "gauge");
    assert_eq!(m.value("perly_rescore_queue_customers", &[]), 3.0);
    assert_eq!(m.value("perly_rescore_queue_lag_seconds", &[]), 90.0);
    assert_eq!(m.value("perly_database_up", &[]), 1.0);

    // HTTP latency by the route template, never the path as sent.
    assert_eq!(m.family("perly_http_request_duration_seconds").kind, "histogram");
    let count = |method: &str, route: &str, status: &str| {
        m.value(
            "perly_http_request_duration_seconds_count",
            &[("method", method), ("route", route), ("status", status)],
        )
    };
    assert_eq!(count("POST", "/api/v1/events", "2xx"), 1.0);
    assert_eq!(count("POST", "/api/v1/customers", "2xx"), 2.0);
    assert_eq!(count("GET", "/api/v1/customers/{external_id}", "2xx"), 2.0);
    assert_eq!(
        count("GET", "unmatched", "4xx"),
        2.0,
        "/metrics on the app, and /no/such/acme/page"
    );
    let inf = m.value(
        "perly_http_request_duration_seconds_bucket",
        &[
            ("method", "GET"),
            ("route", "/api/v1/customers/{external_id}"),
            ("status", "2xx"),
            ("le", "+Inf"),
        ],
    );
    assert_eq!(inf, 2.0);

    // Rescoring empties the queue; a fall to 45 raises one live alert.
    app.rescore().await;
    let (m, _) = scrape(&app).await;
    assert_eq!(m.value("perly_rescore_queue_customers", &[]), 0.0);
    assert_eq!(m.value("perly_rescore_queue_lag_seconds", &[]), 0.0);
    assert_eq!(m.value("perly_rescore_customers_total", &[]), 3.0);
    app.advance(Duration::days(7));
    set_score(&app, "acme", 45).await;
    assert_eq!(app.alerts("acme", "customer_at_risk").await.len(), 1);
    let (status, body) = app
        .patch(&format!("/api/v1/channels/{paused}"), json!({"enabled": false}))
        .await;
    assert_eq!(status, 200, "{body}");
    app.advance(Duration::seconds(30));
    let (m, _) = scrape(&app).await;
    let alerts = |kind: &str, origin: &str| m.value("perly_alerts_raised_total", &[("kind", kind), ("origin", origin)]);
    assert_eq!(alerts("customer_at_risk", "live"), 1.0);
    let (_, feed) = app.get("/api/v1/alerts?limit=500").await;
    let in_feed = feed["items"].as_array().map_or(0, Vec::len) as f64;
    assert_eq!(
        m.sum("perly_alerts_raised_total"),
        in_feed,
        "every alert counted once: {feed}"
    );
    assert_eq!(m.value("perly_rescore_customers_total", &[]), 4.0);
    // The outbox: one row due 30 s on the Slack channel, one held by the paused channel.
    let outbox = |m: &Scrape, name: &str, platform: &str, state: &str| {
        m.value(name, &[("platform", platform), ("channel_state", state)])
    };
    assert_eq!(outbox(&m, "perly_channels", "slack", "active"), 1.0);
    assert_eq!(outbox(&m, "perly_channels", "discord", "paused"), 1.0);
    assert_eq!(outbox(&m, "perly_channels", "discord", "active"), 0.0);
    assert_eq!(outbox(&m, "perly_outbox_pending", "slack", "active"), 1.0);
    assert_eq!(outbox(&m, "perly_outbox_due", "slack", "active"), 1.0);
    assert_eq!(outbox(&m, "perly_outbox_channel_pending_max", "slack", "active"), 1.0);
    assert_eq!(
        outbox(&m, "perly_outbox_oldest_due_age_seconds", "slack", "active"),
        30.0
    );
    assert_eq!(outbox(&m, "perly_outbox_pending", "discord", "paused"), 1.0);

    // Slack fails once (500), then takes the message.
    app.slack().inject(&slack_hook, Fault::Status { status: 500, times: 1 });
    app.deliver().await;
    app.advance(Duration::hours(1));
    let stats = app.deliver().await;
    assert_eq!(stats.delivered, 1, "{stats:?}");
    assert_eq!(app.slack().messages().len(), 1);
    let (m, text_after) = scrape(&app).await;
    let messages = |platform: &str, outcome: &str| {
        m.value(
            "perly_delivery_messages_total",
            &[("platform", platform), ("outcome", outcome)],
        )
    };
    assert_eq!(messages("slack", "retry"), 1.0);
    assert_eq!(messages("slack", "sent"), 1.0);
    assert_eq!(messages("discord", "sent"), 0.0, "a paused channel posts nothing");
    assert_eq!(m.value("perly_delivery_alerts_total", &[("platform", "slack")]), 1.0);
    assert_eq!(
        m.value("perly_delivery_post_duration_seconds_count", &[("platform", "slack")]),
        2.0
    );
    assert_eq!(outbox(&m, "perly_outbox_pending", "slack", "active"), 0.0);
    assert_eq!(
        outbox(&m, "perly_outbox_oldest_due_age_seconds", "slack", "active"),
        0.0
    );
    assert_eq!(outbox(&m, "perly_outbox_pending", "discord", "paused"), 1.0);
    assert_eq!(
        m.value(
            "perly_http_request_duration_seconds_count",
            &[
                ("method", "PATCH"),
                ("route", "/api/v1/channels/{id}"),
                ("status", "2xx")
            ]
        ),
        1.0
    );

    // No label value names a customer, a workspace, a channel or a key,
    // and routes are templates.
    let ws = app.ws.to_string();
    let forbidden = [
        "acme",
        "Acme",
        "globex",
        "initech",
        "nameless",
        "unknown-customer",
        &ws,
        &paused,
        &app.key,
    ];
    for s in m.samples() {
        for (k, v) in &s.labels {
            assert!(
                !forbidden.iter().any(|f| v.contains(f)),
                "{}{{{k}=\"{v}\"}} names something of a workspace",
                s.name
            );
            if k == "route" {
                assert!(v == "unmatched" || v.starts_with('/'), "{v}");
            }
        }
    }
    for body in [&text, &text_after] {
        assert!(!body.contains("Acme Corp") && !body.contains(&slack_hook));
    }
}

#[tokio::test]
async fn metrics_count_salesforce_rows_pulled_and_pushed_and_the_api_budget() {
    let app = spawn_app_with_salesforce_and_settings(small_org(), &with_metrics).await;
    let web = admin(&app).await;
    connect(&web, "production", "").await;
    let rows = match app.sync().await.as_slice() {
        [perly_salesforce::sync::RunOutcome::Succeeded { rows }] => *rows,
        other => panic!("one successful run expected, got {other:?}"),
    };
    let (m, _) = scrape(&app).await;
    let pulled = |object: &str| m.value("perly_salesforce_rows_pulled_total", &[("object", object)]);
    assert_eq!(pulled("Account"), 30.0);
    assert_eq!(m.sum("perly_salesforce_rows_pulled_total"), rows as f64);
    assert_eq!(
        m.value("perly_salesforce_syncs_total", &[("outcome", "succeeded")]),
        1.0
    );
    assert_eq!(m.value("perly_salesforce_connections", &[("state", "connected")]), 1.0);
    // What the org reported last, over Perly's share (50 % by default).
    let (_, status) = app.get("/api/v1/salesforce").await;
    let used = status["api_usage"]["used"].as_f64().expect("usage reported");
    let max = status["api_usage"]["max"].as_f64().expect("max reported");
    assert!(used > 0.0, "{status}");
    let budget = m.value("perly_salesforce_api_budget_used_ratio", &[]);
    assert!((budget - used / (max * 0.5)).abs() < 1e-9, "{budget} vs {used}/{max}");

    // A score pushed onto its Account.
    seat_only_scorecard(&app).await;
    let account = app.sf().production().account_id(0);
    let name = app.customer(&account).await["name"].clone();
    app.customers(json!([{"external_id": account, "name": name, "seats_purchased": 100}]))
        .await;
    app.advance(Duration::minutes(1));
    set_score(&app, &account, 35).await;
    assert_eq!(app.outbox().await.pushed, 1);
    let (m, _) = scrape(&app).await;
    assert_eq!(
        m.value("perly_salesforce_rows_pushed_total", &[("outcome", "written")]),
        1.0
    );
    assert_eq!(
        m.value("perly_salesforce_rows_pushed_total", &[("outcome", "retry")]),
        0.0
    );
}

// Readiness.

async fn get_json(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let resp = client.get(url).send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn readyz_is_ready_with_a_database_and_healthz_answers_on_both_listeners() {
    let app = spawn_app_with_settings(&with_metrics).await;
    let ops = format!("http://{}", app._running.metrics_addr.expect("metrics listener"));
    for base in [&app.base, &ops] {
        let (status, body) = get_json(&app.client, &format!("{base}/readyz")).await;
        assert_eq!((status, body), (200, json!({"status": "ready"})), "{base}");
        let (status, body) = get_json(&app.client, &format!("{base}/healthz")).await;
        assert_eq!((status, body), (200, json!({"status": "ok"})), "{base}");
    }
}

/// Starts the real server on a store whose database cannot be reached.
async fn serve_unreachable(url: &str) -> perly::server::Running {
    let settings = test_settings(url.to_owned(), false);
    let cipher = perly::cli::cipher(&settings, true).expect("cipher");
    let store = perly_store::sql::SqlStore::connect_lazy(url, cipher).expect("a lazy store");
    let mut settings = settings;
    with_metrics(&mut settings);
    perly::server::start(
        &settings,
        std::sync::Arc::new(store),
        std::sync::Arc::new(perly_web::SystemClock),
    )
    .await
    .expect("start")
}

/// `/readyz` answers 503 naming the database, within the check's timeout.
async fn assert_not_ready(base: &str) -> Value {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let (status, body) = get_json(&client, &format!("{base}/readyz")).await;
    assert!(started.elapsed() < StdDuration::from_secs(4), "{:?}", started.elapsed());
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not_ready", "{body}");
    assert_eq!(body["problems"][0]["check"], "database", "{body}");
    assert!(
        body["problems"][0]["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    body
}

#[tokio::test]
async fn readyz_is_503_naming_the_database_when_it_cannot_be_reached() {
    let dir = tempfile::tempdir().expect("dir");
    let url = match std::env::var("PERLY_TEST_DATABASE_URL") {
        // PostgreSQL on a port nobody listens on.
        Ok(url) if url.starts_with("postgres") => format!("postgres://postgres@127.0.0.1:{}/perly", free_port()),
        // A SQLite file in a folder that does not exist (and is not made).
        _ => format!("sqlite://{}/missing/perly.db?mode=rw", dir.path().display()),
    };
    let running = serve_unreachable(&url).await;
    let body = assert_not_ready(&format!("http://{}", running.addr)).await;
    assert!(
        !body.to_string().contains("127.0.0.1") && !body.to_string().contains("missing"),
        "{body}"
    );
    assert_not_ready(&format!("http://{}", running.metrics_addr.expect("metrics"))).await;
    // Liveness does not ask the database.
    let (status, _) = get_json(&reqwest::Client::new(), &format!("http://{}/healthz", running.addr)).await;
    assert_eq!(status, 200);
    // The scrape still answers, saying the database figures are missing.
    let text = reqwest::get(format!("http://{}/metrics", running.metrics_addr.expect("metrics")))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    let m = parse(&text).await;
    assert_eq!(m.value("perly_database_up", &[]), 0.0);
    assert!(m.families.iter().all(|f| f.name != "perly_rescore_queue_customers"));
    running.stop().await;
}

#[tokio::test]
async fn readyz_is_503_within_its_timeout_when_the_database_never_answers() {
    // Accepts connections and says nothing: a hung database server.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let held = std::thread::spawn(move || {
        let mut open = Vec::new();
        for conn in silent.incoming().take(8) {
            open.push(conn);
        }
        open
    });
    let running = serve_unreachable(&format!("postgres://postgres@127.0.0.1:{port}/perly")).await;
    let body = assert_not_ready(&format!("http://{}", running.addr)).await;
    // The pool's acquire timeout (2 s on PostgreSQL) and the check's own
    // (2 s) run out together: either names the hang.
    let error = body["problems"][0]["error"].as_str().unwrap_or_default();
    assert!(
        ["did not answer within 2 s", "no connection available"].contains(&error),
        "{body}"
    );
    running.stop().await;
    drop(held);
}

#[tokio::test]
async fn readyz_turns_503_when_the_postgres_database_is_dropped_under_the_server() {
    let Ok(admin_url) = std::env::var("PERLY_TEST_DATABASE_URL") else {
        // SQLite: a file the server holds open cannot be taken away from it.
        return;
    };
    let app = spawn_app_with_settings(&with_metrics).await;
    let (status, _) = get_json(&app.client, &format!("{}/readyz", app.base)).await;
    assert_eq!(status, 200);
    let name = app.database_url.rsplit('/').next().expect("database name").to_owned();
    let mut conn = connect_database(&admin_url).await;
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .expect("drop the test database");
    assert_not_ready(&app.base).await;
    let (m, _) = scrape(&app).await;
    assert_eq!(m.value("perly_database_up", &[]), 0.0);
}

// Logs.

/// Runs `perly serve` with stdout on a pipe and `env`, until it has logged
/// that it listens and answered a request; returns what it wrote.
async fn serve_output(env: &[(&str, &str)]) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_perly"))
        .arg("serve")
        .env(
            "PERLY_DATABASE_URL",
            format!("sqlite://{}/perly.db", dir.path().display()),
        )
        .env("PERLY_LISTEN", format!("127.0.0.1:{port}"))
        .env("PERLY_SECRET_KEY", TEST_SECRET_KEY)
        .env("PERLY_LOG", "info,tower_http=debug")
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start perly serve");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut text = String::new();
    let listening = tokio::time::timeout(StdDuration::from_secs(60), async {
        let mut line = String::new();
        while out.read_line(&mut line).await.expect("read") > 0 {
            text.push_str(&line);
            if line.contains("perly is listening") {
                return true;
            }
            line.clear();
        }
        false
    })
    .await;
    assert_eq!(listening, Ok(true), "{text}");
    let resp = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .expect("healthz");
    assert_eq!(resp.status(), 200);
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    child.start_kill().expect("kill");
    let mut rest = String::new();
    out.read_to_string(&mut rest).await.expect("read the rest");
    text.push_str(&rest);
    let _ = child.wait().await;
    text
}

#[tokio::test]
async fn logs_on_a_pipe_have_no_colour_codes_and_json_logs_are_one_object_a_line() {
    let text = serve_output(&[]).await;
    assert!(text.contains("perly is listening"), "{text}");
    assert!(text.contains("/healthz"), "the request's span is logged: {text}");
    assert!(
        !text.contains('\u{1b}'),
        "no ANSI escape codes off a terminal: {text:?}"
    );

    let text = serve_output(&[("PERLY_LOG_FORMAT", "json")]).await;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 2, "{text}");
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{line}");
    }
    let listening = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "perly is listening")
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(listening["level"], "INFO");
    assert_eq!(listening["backend"], "sqlite", "fields at the top level: {listening}");
    assert!(
        lines.iter().any(|l| l.contains("\"path\":\"/healthz\"")),
        "the request span's fields: {text}"
    );
}

#[tokio::test]
async fn an_unknown_log_format_is_refused_by_name() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_perly"))
        .args(["config", "print"])
        .env("PERLY_LOG_FORMAT", "xml")
        .output()
        .expect("run perly");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("log_format") && err.contains("xml"), "{err}");
}
