use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn customers_and_events_are_ingested_with_per_row_results() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/api/v1/customers",
            json!({"customers": [
                {"external_id": "acme", "name": "Acme Corp", "plan": "pro", "mrr": 4200.0, "seats_purchased": 50,
                 "owner_email": "ana@example.com", "parent_external_id": null},
                {"external_id": "acme-eu", "name": "Acme EU", "parent_external_id": "acme"}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["created"].as_u64(), body["updated"].as_u64()), (Some(2), Some(0)));

    // Upserting again updates, keeping fields that were not sent.
    let (_, body) = app
        .post(
            "/api/v1/customers",
            json!({"customers": [{"external_id": "acme", "name": "Acme Corporation"}]}),
        )
        .await;
    assert_eq!(body["results"][0]["status"], "updated");
    let acme = app.customer("acme").await;
    assert_eq!(acme["name"], "Acme Corporation");
    assert_eq!(acme["plan"], "pro");
    assert_eq!(acme["seats_purchased"], 50);

    let now = app.now();
    let body = app
        .events(vec![
            event("evt_1", "acme", now, json!({"type": "user_active", "user_id": "u1"})),
            event(
                "evt_2",
                "acme",
                now,
                json!({"type": "ticket_opened", "ticket_id": "t1", "priority": "urgent"}),
            ),
        ])
        .await;
    assert_eq!(body["accepted"], 2, "{body}");
    assert_eq!(
        body["results"][1],
        json!({"index": 1, "id": "evt_2", "status": "accepted"})
    );
}

#[tokio::test]
async fn a_resent_batch_is_answered_duplicate_and_changes_nothing() {
    let app = spawn_app().await;
    app.customers(json!([{"external_id": "acme", "name": "Acme", "seats_purchased": 10}]))
        .await;
    let now = app.now();
    let mut batch = activity("acme", 4, 59, 0, now);
    batch.push(event(
        "pf1",
        "acme",
        now,
        json!({"type": "payment_failed", "amount": 100.0}),
    ));
    batch.push(event(
        "rf1",
        "acme",
        now,
        json!({"type": "billing_retry_failed", "amount": 100.0, "attempt": 1}),
    ));
    send_all(&app, batch.clone()).await;
    app.rescore().await;
    let before = app.customer("acme").await;
    let alerts_before = app.get("/api/v1/alerts?customer_id=acme").await.1;

    let again = app.events(batch[..1000.min(batch.len())].to_vec()).await;
    assert_eq!(again["accepted"], 0);
    assert_eq!(again["duplicates"].as_u64(), Some(1000.min(batch.len()) as u64));
    send_all_duplicates(&app, batch).await;
    assert_eq!(app.rescore().await.scored, 0, "duplicates mark nobody for rescoring");
    // Rescored all the same, the stored events give the same score and no new alert.
    assert_eq!(app.rescore_everyone().await, 1);
    let after = app.customer("acme").await;
    assert_eq!(before["score"], after["score"]);
    assert_eq!(before["explanation"], after["explanation"]);
    assert_eq!(alerts_before, app.get("/api/v1/alerts?customer_id=acme").await.1);
}

async fn send_all_duplicates(app: &TestApp, rows: Vec<serde_json::Value>) {
    for chunk in rows.chunks(1000) {
        let body = app.events(chunk.to_vec()).await;
        assert_eq!(body["accepted"], 0, "{body}");
    }
}

#[tokio::test]
async fn duplicate_ids_within_one_batch_are_accepted_once() {
    let app = spawn_app().await;
    app.customers(json!([{"external_id": "acme", "name": "Acme"}])).await;
    let now = app.now();
    let e = event("same", "acme", now, json!({"type": "user_active", "user_id": "u1"}));
    let body = app.events(vec![e.clone(), e]).await;
    assert_eq!(body["results"][0]["status"], "accepted");
    assert_eq!(body["results"][1]["status"], "duplicate");
}

#[tokio::test]
async fn a_batch_with_bad_rows_keeps_the_good_ones() {
    let app = spawn_app().await;
    app.customers(json!([{"external_id": "acme", "name": "Acme"}])).await;
    let now = app.now();
    let body = app
        .events(vec![
            event("ok1", "acme", now, json!({"type": "user_active", "user_id": "u1"})),
            event("bad1", "nobody", now, json!({"type": "user_active", "user_id": "u1"})),
            event("bad2", "acme", now, json!({"type": "nps_response", "score": 11})),
            event("ok2", "acme", now, json!({"type": "nps_response", "score": 9})),
        ])
        .await;
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(2), Some(2)),
        "{body}"
    );
    assert_eq!(body["results"][1]["error"]["code"], "unknown_customer");
    assert_eq!(body["results"][1]["error"]["field"], "events[1].customer_id");
    assert_eq!(body["results"][2]["error"]["field"], "events[2].score");
    // The good rows were stored: re-sending them is a duplicate.
    let again = app
        .events(vec![event(
            "ok2",
            "acme",
            now,
            json!({"type": "nps_response", "score": 9}),
        )])
        .await;
    assert_eq!(again["results"][0]["status"], "duplicate");
    // And the bad ones were not: fixed, they are accepted.
    let fixed = app
        .events(vec![event(
            "bad2",
            "acme",
            now,
            json!({"type": "nps_response", "score": 10}),
        )])
        .await;
    assert_eq!(fixed["results"][0]["status"], "accepted");
}

#[tokio::test]
async fn the_openapi_document_describes_the_api() {
    let app = spawn_app().await;
    let (status, doc) = app.send(reqwest::Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, 200);
    for path in [
        "/api/v1/events",
        "/api/v1/customers",
        "/api/v1/customers/{external_id}",
        "/api/v1/alerts",
        "/api/v1/scorecard",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"].get("CustomerDetail").is_some());
}

/// Two batches sent at once carry the same event ids for two customers:
/// each id is stored once and accepted by exactly one of them (on
/// PostgreSQL the two transactions really run side by side).
#[tokio::test]
async fn one_event_id_sent_at_once_for_two_customers_is_accepted_once() {
    let app = spawn_app().await;
    app.customers(json!([{"external_id": "acme", "name": "Acme"}, {"external_id": "globex", "name": "Globex"}]))
        .await;
    let now = app.now();
    for round in 0..10 {
        let batch = |customer: &str| -> Vec<serde_json::Value> {
            (0..50)
                .map(|i| {
                    event(
                        &format!("race_{round}_{i}"),
                        customer,
                        now,
                        json!({"type": "ticket_opened", "ticket_id": format!("t{i}"), "priority": "low"}),
                    )
                })
                .collect()
        };
        let (a, b) = tokio::join!(app.events(batch("acme")), app.events(batch("globex")));
        for i in 0..50 {
            let statuses = [&a["results"][i]["status"], &b["results"][i]["status"]];
            let accepted = statuses.iter().filter(|s| **s == "accepted").count();
            assert_eq!(accepted, 1, "round {round}, event {i}: {statuses:?}");
        }
        assert_eq!(
            a["accepted"].as_u64().unwrap_or(0) + b["accepted"].as_u64().unwrap_or(0),
            50
        );
    }
}
