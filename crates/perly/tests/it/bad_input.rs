//! Bad input gets a clear 4xx naming what is wrong; nothing valid is lost and
//! the server never answers 500.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

async fn raw(app: &TestApp, path: &str, key: Option<&str>, body: &'static str) -> (u16, Value) {
    let mut req = app
        .client
        .post(format!("{}{path}", app.base))
        .header("content-type", "application/json")
        .body(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn malformed_json_is_a_400_in_the_error_shape() {
    let app = spawn_app().await;
    let (status, body) = raw(&app, "/api/v1/events", Some(&app.key), "{\"events\": [").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "malformed_json");
    let (status, body) = raw(&app, "/api/v1/events", Some(&app.key), "{\"rows\": []}").await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["field"], "body");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("events"));
}

#[tokio::test]
async fn missing_malformed_unknown_or_revoked_keys_are_401() {
    let app = spawn_app().await;
    let body = Some(json!({"events": []}));
    for key in [None, Some("not-a-key"), Some("perly_unknown")] {
        let (status, resp) = app.send(Method::POST, "/api/v1/events", key, body.clone()).await;
        assert_eq!(status, 401, "{key:?}");
        assert_eq!(resp["error"]["code"], "unauthorized");
    }
    let resp = app
        .client
        .get(format!("{}/api/v1/customers", app.base))
        .header("authorization", "Basic abc")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 401);
    // A revoked key stops working.
    let keys = app.store.list_api_keys(app.ws).await.expect("keys");
    app.store
        .revoke_api_key(app.ws, keys[0].id, app.now())
        .await
        .expect("revoke");
    let (status, _) = app.get("/api/v1/customers").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn oversized_batches_and_bodies_are_413() {
    let app = spawn_app().await;
    let now = app.now();
    let rows: Vec<Value> = (0..1001)
        .map(|i| {
            event(
                &format!("e{i}"),
                "acme",
                now,
                json!({"type": "user_active", "user_id": "u"}),
            )
        })
        .collect();
    let (status, body) = app.post("/api/v1/events", json!({"events": rows})).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["field"], "events");
    let customers: Vec<Value> = (0..1001)
        .map(|i| json!({"external_id": format!("c{i}"), "name": "C"}))
        .collect();
    let (status, _) = app.post("/api/v1/customers", json!({"customers": customers})).await;
    assert_eq!(status, 413);
    let huge = "x".repeat(6 * 1024 * 1024);
    let (status, body) = app.post("/api/v1/events", json!({"events": [{"id": huge}]})).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "body_too_large");
}

#[tokio::test]
async fn each_bad_row_is_rejected_naming_its_field_and_the_rest_are_kept() {
    let app = spawn_app().await;
    app.customers(json!([{"external_id": "acme", "name": "Acme"}])).await;
    let now = app.now();
    let future = now + chrono::Duration::minutes(6);
    let rows = vec![
        event("good-1", "acme", now, json!({"type": "user_active", "user_id": "u1"})),
        event("b1", "acme", now, json!({"type": "teleported"})),
        event("b2", "ghost", now, json!({"type": "user_active", "user_id": "u1"})),
        json!({"id": "b3", "customer_id": "acme", "type": "user_active", "user_id": "u1", "occurred_at": "last tuesday"}),
        event("b4", "acme", future, json!({"type": "user_active", "user_id": "u1"})),
        event("b5", "acme", now, json!({"type": "nps_response", "score": 11})),
        event("b6", "acme", now, json!({"type": "payment_succeeded", "amount": -3.5})),
        event(
            "b7",
            "acme",
            now,
            json!({"type": "billing_retry_failed", "amount": -1, "attempt": 1}),
        ),
        json!("not an object"),
        event("good-2", "acme", now, json!({"type": "nps_response", "score": 0})),
    ];
    let body = app.events(rows).await;
    let expect = [
        (1, "unknown_event_type", "events[1].type"),
        (2, "unknown_customer", "events[2].customer_id"),
        (3, "invalid_timestamp", "events[3].occurred_at"),
        (4, "future_timestamp", "events[4].occurred_at"),
        (5, "out_of_range", "events[5].score"),
        (6, "negative_amount", "events[6].amount"),
        (7, "negative_amount", "events[7].amount"),
        (8, "invalid_row", "events[8]"),
    ];
    for (i, code, field) in expect {
        let r = &body["results"][i];
        assert_eq!(
            (
                r["status"].as_str(),
                r["error"]["code"].as_str(),
                r["error"]["field"].as_str()
            ),
            (Some("rejected"), Some(code), Some(field)),
            "{r}"
        );
        assert!(!r["error"]["message"].as_str().unwrap_or_default().is_empty());
    }
    assert_eq!(body["accepted"], 2);
    assert_eq!(body["results"][9]["status"], "accepted");
}

#[tokio::test]
async fn bad_customer_rows_are_rejected_and_good_ones_kept() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/api/v1/customers",
            json!({"customers": [
                {"external_id": "ok", "name": "OK"},
                {"external_id": "neg", "name": "Neg", "mrr": -1},
                {"name": "no id"},
                {"external_id": "mail", "name": "Mail", "owner_email": "nope"}
            ]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["created"], 1);
    assert_eq!(body["results"][1]["error"]["field"], "customers[1].mrr");
    assert_eq!(body["results"][2]["error"]["field"], "customers[2].external_id");
    assert_eq!(body["results"][3]["error"]["field"], "customers[3].owner_email");
    assert_eq!(app.get("/api/v1/customers/neg").await.0, 404);
}

#[tokio::test]
async fn odd_requests_never_get_a_500() {
    let app = spawn_app().await;
    let key = app.key.clone();
    let bodies: [&'static str; 9] = [
        "",
        "null",
        "[]",
        "{\"events\": null}",
        "{\"events\": {}}",
        "{\"events\": [null, 1, \"x\", []]}",
        "{\"events\": [{\"id\": 5, \"customer_id\": [], \"type\": {}, \"occurred_at\": 1}]}",
        "{\"customers\": [{\"external_id\": \"\\u0000\", \"name\": 1e400}]}",
        "\u{feff}{}",
    ];
    for path in ["/api/v1/events", "/api/v1/customers"] {
        for b in bodies {
            let (status, body) = raw(&app, path, Some(&key), b).await;
            assert!((200..500).contains(&status), "{path} {b:?} -> {status} {body}");
            if status >= 400 {
                assert!(body["error"]["code"].is_string(), "{path} {b:?} -> {body}");
            }
        }
    }
    for path in [
        "/api/v1/customers?limit=abc",
        "/api/v1/customers?sort=up",
        "/api/v1/customers?cursor=zzz",
        "/api/v1/alerts?kind=nope",
        "/api/v1/alerts?cursor=WzFd",
        "/api/v1/customers?risk_level=meh",
        "/api/v1/nothing",
    ] {
        let (status, body) = app.get(path).await;
        assert!((400..500).contains(&status), "{path} -> {status} {body}");
        assert!(body["error"]["code"].is_string(), "{path} -> {body}");
    }
}

#[tokio::test]
async fn control_characters_are_rejected_as_bad_input_on_every_backend() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/api/v1/customers",
            json!({"customers": [{"external_id": "ok", "name": "OK"}, {"external_id": "nul", "name": "A\u{0}B"}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][1]["error"]["field"], "customers[1].name");
    let now = app.now();
    let body = app
        .events(vec![
            event("a\u{0}b", "ok", now, json!({"type": "user_active", "user_id": "u"})),
            event(
                "fine",
                "ok",
                now,
                json!({"type": "payment_failed", "amount": 1.0, "reason": "x\u{0}y"}),
            ),
        ])
        .await;
    assert_eq!(body["results"][0]["error"]["field"], "events[0].id");
    assert_eq!(body["results"][1]["error"]["field"], "events[1].reason");
    for path in [
        "/api/v1/customers/%00",
        "/api/v1/customers?q=%00",
        "/api/v1/alerts?customer_id=%00",
    ] {
        let (status, body) = app.get(path).await;
        assert!((200..500).contains(&status), "{path} -> {status} {body}");
    }
}
