//! Workspace B's key cannot read, write or even learn of workspace A's data.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn another_workspace_cannot_see_or_touch_customers_and_alerts() {
    let app = spawn_app().await;
    seat_only_scorecard(&app).await;
    app.customers(json!([{"external_id": "acme", "name": "Acme", "seats_purchased": 10}]))
        .await;
    let now = app.now();
    app.events(vec![event(
        "s1",
        "acme",
        now,
        json!({"type": "seats_changed", "seats_used": 9}),
    )])
    .await;
    app.rescore().await;
    app.events(vec![event(
        "r1",
        "acme",
        now,
        json!({"type": "billing_retry_failed", "amount": 5.0, "attempt": 1}),
    )])
    .await;
    app.rescore().await;
    assert_eq!(app.alerts("acme", "billing_retry_failed").await.len(), 1);

    let (_, b) = app.other_workspace("Other Co").await;
    let get = |path: &'static str| {
        let b = b.clone();
        let app = &app;
        async move { app.send(reqwest::Method::GET, path, Some(&b), None).await }
    };
    // Reading A's customer looks exactly like a customer that does not exist.
    let (status, mine) = get("/api/v1/customers/acme").await;
    let (status2, none) = get("/api/v1/customers/does-not-exist").await;
    assert_eq!((status, status2), (404, 404));
    assert_eq!(mine, none);
    assert_eq!(get("/api/v1/customers").await.1["items"], json!([]));
    assert_eq!(get("/api/v1/alerts").await.1["items"], json!([]));
    assert_eq!(get("/api/v1/alerts?customer_id=acme").await.1["items"], json!([]));

    // Writing events for A's customer is refused as an unknown customer.
    let (_, body) = app
        .send(
            reqwest::Method::POST,
            "/api/v1/events",
            Some(&b),
            Some(json!({"events": [event("x1", "acme", now, json!({"type": "user_active", "user_id": "u"}))]})),
        )
        .await;
    assert_eq!(body["results"][0]["error"]["code"], "unknown_customer");
    // The same event id in A is still A's own: B's namespace is separate.
    let (_, body) = app
        .send(
            reqwest::Method::POST,
            "/api/v1/customers",
            Some(&b),
            Some(json!({"customers": [{"external_id": "acme", "name": "B's Acme"}]})),
        )
        .await;
    assert_eq!(
        body["results"][0]["status"], "created",
        "B gets its own customer: {body}"
    );
    assert_eq!(app.customer("acme").await["name"], "Acme");
    let (_, body) = app
        .send(
            reqwest::Method::POST,
            "/api/v1/events",
            Some(&b),
            Some(json!({"events": [event("r1", "acme", now, json!({"type": "user_active", "user_id": "u"}))]})),
        )
        .await;
    assert_eq!(
        body["results"][0]["status"], "accepted",
        "event ids are per workspace: {body}"
    );
    // B's scorecard change does not touch A's.
    let (_, mut card) = get("/api/v1/scorecard").await;
    card["risk_bands"]["low"] = json!(95.0);
    let (status, _) = app
        .send(reqwest::Method::PUT, "/api/v1/scorecard", Some(&b), Some(card))
        .await;
    assert_eq!(status, 200);
    assert_eq!(app.get("/api/v1/scorecard").await.1["risk_bands"]["low"], 75.0);
}

#[tokio::test]
async fn secrets_are_encrypted_at_rest_and_scoped_to_their_workspace() {
    let app = spawn_app().await;
    let (b, _) = app.other_workspace("Other Co").await;
    let url = "https://hooks.slack.com/services/T000/B000/very-secret-token";
    app.store
        .put_secret(app.ws, "slack/customer-health", url, app.now())
        .await
        .expect("put");
    assert_eq!(
        app.store
            .get_secret(app.ws, "slack/customer-health")
            .await
            .expect("get")
            .as_deref(),
        Some(url)
    );
    assert_eq!(
        app.store.get_secret(b, "slack/customer-health").await.expect("get"),
        None
    );

    // What the database holds is ciphertext.
    if let Some(path) = app.database_file() {
        let raw = std::fs::read(&path).expect("read database file");
        let wal = std::fs::read(format!("{}-wal", path.display())).unwrap_or_default();
        let needle = b"very-secret-token";
        assert!(!raw.windows(needle.len()).any(|w| w == needle));
        assert!(!wal.windows(needle.len()).any(|w| w == needle));
    }
}
