//! Ingest under abuse: one customer flooded with events keeps a bounded
//! rollup and a flat cost per batch, and an API key over its ingest rate
//! limit is answered 429 with `Retry-After` while other keys go on.

use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use crate::helpers::*;

const BATCHES: usize = 200;
const BATCH: usize = 1_000;

/// Event `i` of the flood: six kinds in turn, every list of the rollup
/// pushed past its limit (8,000 users, 2,000 features, 1,000 metrics, a new
/// ticket each time, a seat count and an NPS response every sixth event).
fn flood_event(i: usize, at: DateTime<Utc>) -> Value {
    let n = i / 6;
    let user = format!("user-{}", (i * 7_919) % 8_000);
    let kind = match i % 6 {
        0 => json!({"type": "nps_response", "score": n % 11}),
        1 => json!({"type": "seats_changed", "seats_used": n % 500 + 1, "seats_purchased": 600}),
        2 => {
            json!({"type": "usage_measured", "metric": format!("metric-{}", n % 1_000), "value": n % 900, "limit": 1000})
        }
        3 => json!({"type": "user_active", "user_id": user}),
        4 => json!({"type": "feature_used", "feature": format!("feature-{}", n % 2_000), "user_id": user}),
        _ => json!({"type": "ticket_opened", "ticket_id": format!("ticket-{i}"), "priority": "normal"}),
    };
    event(&format!("flood-{i}"), "whale", at, kind)
}

/// Bytes of every stored rollup, largest first.
async fn rollup_bytes(app: &TestApp) -> i64 {
    let sql = "SELECT CAST(length(data) AS BIGINT) FROM rollups ORDER BY 1 DESC LIMIT 1";
    let mut conn = connect_database(&app.database_url).await;
    sqlx::query_scalar(sql).fetch_one(&mut conn).await.expect("rollup size")
}

/// Gives PostgreSQL's planner the statistics a running database has: on a
/// fresh one autovacuum first analyzes the events table only after up to a
/// minute, and until then the duplicate lookup scans the whole table.
async fn analyze(app: &TestApp) {
    if app.database_url.starts_with("postgres") {
        app.execute_sql("ANALYZE").await;
    }
}

fn median(mut xs: Vec<StdDuration>) -> StdDuration {
    xs.sort();
    xs[xs.len() / 2]
}

#[tokio::test]
async fn a_customer_flooded_with_200_000_events_keeps_a_flat_cost_per_batch() {
    // The test clock stands still, so the rate limit would never refill: off.
    let app = spawn_app_with_settings(&|s| {
        s.ingest.rate_per_second = 0;
        s.ingest.workspace_rate_per_second = 0;
    })
    .await;
    app.customers(json!([{"external_id": "whale", "name": "Whale Inc", "seats_purchased": 600}]))
        .await;
    let total = BATCHES * BATCH;
    let start = app.now() - Duration::days(100);
    let step = Duration::days(100).num_milliseconds() / total as i64;
    let mut times = Vec::with_capacity(BATCHES);
    for b in 0..BATCHES {
        let rows: Vec<Value> = (b * BATCH..(b + 1) * BATCH)
            .map(|i| flood_event(i, start + Duration::milliseconds(step * i as i64)))
            .collect();
        let body = json!({ "events": rows });
        let sent = Instant::now();
        let (status, answer) = app.post("/api/v1/events", body).await;
        times.push(sent.elapsed());
        assert_eq!(status, 200, "batch {b}: {answer}");
        assert_eq!(answer["accepted"], BATCH, "batch {b}: {}", answer["results"][0]);
        if b == 0 {
            analyze(&app).await;
        }
    }
    let first = median(times[..20].to_vec());
    let last = median(times[BATCHES - 20..].to_vec());
    let bytes = rollup_bytes(&app).await;
    eprintln!("median per batch: first 20 {first:?}, last 20 {last:?}; rollup {bytes} bytes");
    assert!(
        last < first * 3,
        "a batch got slower as the customer grew: first 20 {first:?}, last 20 {last:?}"
    );
    // At most about 0.4 MB whatever is sent (see rollup::LIMITS); without
    // limits this flood makes it several MB.
    assert!(bytes < 450_000, "the stored rollup is {bytes} bytes");
}

#[tokio::test]
async fn a_key_over_its_ingest_rate_limit_waits_while_other_keys_go_on() {
    let app = spawn_app_with_settings(&|s| {
        s.ingest.rate_per_second = 10;
        s.ingest.burst = 20;
    })
    .await;
    // Rows are counted, not requests: 1 customer and 15 events leave 4.
    app.customers(json!([{"external_id": "acme", "name": "Acme"}])).await;
    let now = app.now();
    let rows = |from: usize, n: usize| -> Vec<Value> {
        (from..from + n)
            .map(|i| {
                event(
                    &format!("e{i}"),
                    "acme",
                    now,
                    json!({"type": "user_active", "user_id": "u1"}),
                )
            })
            .collect()
    };
    assert_eq!(app.events(rows(0, 15)).await["accepted"], 15);

    let refused = app
        .client
        .post(format!("{}/api/v1/events", app.base))
        .bearer_auth(&app.key)
        .json(&json!({ "events": rows(15, 10) }))
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status().as_u16(), 429);
    let retry_after: i64 = refused
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in whole seconds");
    assert_eq!(retry_after, 1, "6 rows short at 10 a second");
    let body: Value = refused.json().await.expect("JSON body");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    let five = vec![json!({"external_id": "b", "name": "B"}); 5];
    let (status, body) = app.post("/api/v1/customers", json!({ "customers": five })).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (429, &json!("rate_limited")),
        "{body}"
    );

    // Another key, even of the same workspace, has its own bucket.
    let (_, other) = app
        .store
        .create_api_key(app.ws, &perly_store::NewApiKey::full("other"), now)
        .await
        .expect("key");
    let (status, body) = app
        .send(
            reqwest::Method::POST,
            "/api/v1/events",
            Some(&other),
            Some(json!({ "events": rows(100, 20) })),
        )
        .await;
    assert_eq!((status, &body["accepted"]), (200, &json!(20)), "{body}");

    // After the wait the refused batch goes through: none of it was stored.
    app.advance(Duration::seconds(retry_after));
    let body = app.events(rows(15, 10)).await;
    assert_eq!(body["accepted"], 10, "{body}");

    // The OpenAPI document says so.
    let (_, doc) = app.send(reqwest::Method::GET, "/api/v1/openapi.json", None, None).await;
    for path in ["/api/v1/events", "/api/v1/customers"] {
        let answer = &doc["paths"][path]["post"]["responses"]["429"];
        assert!(answer["headers"].get("Retry-After").is_some(), "{path}: {answer}");
    }
}

#[tokio::test]
async fn many_keys_of_one_workspace_share_its_ceiling_and_oversized_bodies_are_charged() {
    let app = spawn_app_with_settings(&|s| {
        s.ingest.rate_per_second = 10;
        s.ingest.burst = 20;
        s.ingest.workspace_rate_per_second = 10;
        s.ingest.workspace_burst = 30;
    })
    .await;
    let now = app.now();
    let customers = |prefix: &str, n: usize| -> Value {
        let rows: Vec<Value> = (0..n)
            .map(|i| json!({"external_id": format!("{prefix}{i}"), "name": "C"}))
            .collect();
        json!({ "customers": rows })
    };
    let mut keys = Vec::new();
    for label in ["k1", "k2", "k3"] {
        let (_, key) = app
            .store
            .create_api_key(app.ws, &perly_store::NewApiKey::full(label), now)
            .await
            .expect("key");
        keys.push(key);
    }
    let post = |key: &str, body: Value| {
        let key = key.to_owned();
        let app = &app;
        async move {
            app.send(reqwest::Method::POST, "/api/v1/customers", Some(&key), Some(body))
                .await
        }
    };
    assert_eq!(post(&keys[0], customers("a", 20)).await.0, 200);
    assert_eq!(post(&keys[1], customers("b", 10)).await.0, 200);
    // A third key has a full bucket of its own, but the workspace is spent.
    let (status, body) = post(&keys[2], customers("c", 10)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (429, &json!("rate_limited")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("workspace"),
        "{body}"
    );
    // Another workspace is untouched.
    let (_, other) = app.other_workspace("Other Co").await;
    assert_eq!(post(&other, customers("o", 20)).await.0, 200);

    // An oversized body is refused (413) but still costs its rows, so it
    // cannot be repeated for free: the next small batch waits.
    let (_, fresh) = app.other_workspace("Fresh Co").await;
    let (status, body) = post(&fresh, customers("x", 1_001)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (413, &json!("batch_too_large")),
        "{body}"
    );
    let (status, body) = post(&fresh, customers("y", 1)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (429, &json!("rate_limited")),
        "{body}"
    );

    // A body that is not even a batch costs a full batch.
    let (_, broken) = app.other_workspace("Broken Co").await;
    let refused = app
        .client
        .post(format!("{}/api/v1/events", app.base))
        .bearer_auth(&broken)
        .header("content-type", "application/json")
        .body("{\"events\": [[0, 0, 0")
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status().as_u16(), 400);
    let (status, body) = post(&broken, customers("z", 1)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (429, &json!("rate_limited")),
        "{body}"
    );
    // And a body of tiny values past the budget is refused before it is built.
    let (_, tiny) = app.other_workspace("Tiny Co").await;
    let flood = format!("{{\"events\": [[{}]]}}", vec!["0"; 200_000].join(","));
    let refused = app
        .client
        .post(format!("{}/api/v1/events", app.base))
        .bearer_auth(&tiny)
        .header("content-type", "application/json")
        .body(flood)
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status().as_u16(), 422);
    let body: Value = refused.json().await.expect("JSON");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("JSON values"),
        "{body}"
    );
}
