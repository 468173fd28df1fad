//! API keys through the real server: scopes (`ingest` may only send
//! customers and events), expiry, when a key was last used, and creating
//! keys with a scope and an expiry in Settings.

use perly_store::model::ApiScope;
use perly_store::{NewApiKey, Role};
use reqwest::Method;
use serde_json::json;

use crate::helpers::*;
use crate::web::{add_user, WebClient};

async fn key(app: &TestApp, scope: ApiScope, expires_in: Option<chrono::Duration>) -> String {
    let new = NewApiKey {
        label: format!("{scope:?}"),
        scope,
        expires_at: expires_in.map(|d| app.now() + d),
    };
    app.store.create_api_key(app.ws, &new, app.now()).await.expect("key").1
}

#[tokio::test]
async fn api_key_of_scope_ingest_sends_customers_and_events_and_nothing_else() {
    let app = spawn_app().await;
    let ingest = key(&app, ApiScope::Ingest, None).await;
    let customers = json!({"customers": [{"external_id": "acme", "name": "Acme"}]});
    let (status, body) = app
        .send(Method::POST, "/api/v1/customers", Some(&ingest), Some(customers))
        .await;
    assert_eq!((status, &body["created"]), (200, &json!(1)), "{body}");
    let events = json!({"events": [event("e1", "acme", app.now(), json!({"type": "user_active", "user_id": "u1"}))]});
    let (status, body) = app
        .send(Method::POST, "/api/v1/events", Some(&ingest), Some(events))
        .await;
    assert_eq!((status, &body["accepted"]), (200, &json!(1)), "{body}");

    let channel = json!({"platform": "slack", "name": "x", "webhook_url": "https://hooks.slack.com/services/T/B/x"});
    for (method, path, body) in [
        (Method::GET, "/api/v1/customers", None),
        (Method::GET, "/api/v1/customers/acme", None),
        (Method::GET, "/api/v1/alerts", None),
        (Method::GET, "/api/v1/channels", None),
        (Method::POST, "/api/v1/channels", Some(channel)),
        (Method::GET, "/api/v1/scorecard", None),
        (Method::GET, "/api/v1/salesforce", None),
    ] {
        let (status, body) = app.send(method.clone(), path, Some(&ingest), body).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "insufficient_scope", "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("`ingest`") && message.contains("`full`"), "{message}");
    }

    // A full key (the test app's own) works everywhere.
    for path in [
        "/api/v1/customers",
        "/api/v1/customers/acme",
        "/api/v1/channels",
        "/api/v1/scorecard",
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    app.customers(json!([{"external_id": "globex", "name": "Globex"}]))
        .await;
}

#[tokio::test]
async fn api_key_past_its_expiry_is_refused() {
    let app = spawn_app().await;
    let expiring = key(&app, ApiScope::Full, Some(chrono::Duration::days(1))).await;
    let (status, _) = app.send(Method::GET, "/api/v1/customers", Some(&expiring), None).await;
    assert_eq!(status, 200);
    app.advance(chrono::Duration::days(1));
    let (status, body) = app.send(Method::GET, "/api/v1/customers", Some(&expiring), None).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("expired"),
        "{body}"
    );
    let (status, _) = app.get("/api/v1/customers").await;
    assert_eq!(status, 200, "other keys are unaffected");
}

#[tokio::test]
async fn api_key_last_use_is_recorded_at_most_once_a_minute_and_shown_in_settings() {
    let app = spawn_app().await;
    add_user(&app, "ana@example.com", Role::Admin).await;
    let web = WebClient::new(&app);
    web.sign_in("ana@example.com", "correct horse battery").await;
    let (_, page, _) = web.get("/settings/api-keys").await;
    assert!(page.contains("<td class=\"key-last-used\">never</td>"), "{page}");

    let first = app.now();
    app.get("/api/v1/customers").await;
    let last_used = || async {
        let keys = app.store.list_api_keys(app.ws).await.expect("keys");
        keys.iter().find(|k| k.label == "test").and_then(|k| k.last_used_at)
    };
    assert_eq!(last_used().await, Some(first));
    let (_, page, _) = web.get("/settings/api-keys").await;
    assert!(
        page.contains("<td class=\"key-last-used\">2026-11-02 12:00 UTC</td>"),
        "{page}"
    );

    app.advance(chrono::Duration::seconds(59));
    app.get("/api/v1/customers").await;
    assert_eq!(last_used().await, Some(first), "not written again within a minute");
    app.advance(chrono::Duration::seconds(2));
    app.get("/api/v1/customers").await;
    assert_eq!(last_used().await, Some(app.now()));
}

#[tokio::test]
async fn api_key_created_in_settings_has_the_chosen_scope_and_expiry() {
    let app = spawn_app().await;
    add_user(&app, "ana@example.com", Role::Admin).await;
    let web = WebClient::new(&app);
    web.sign_in("ana@example.com", "correct horse battery").await;
    let (_, page, _) = web.get("/settings/api-keys").await;
    let csrf = WebClient::csrf(&page);

    let (status, page, _) = web
        .post(
            "/settings/api-keys",
            &[
                ("csrf", &csrf),
                ("label", "billing"),
                ("scope", "ingest"),
                ("expires_in_days", "0"),
            ],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("Enter a number of days from 1 to 3650") && page.contains("value=\"billing\""));

    let (status, page, _) = web
        .post(
            "/settings/api-keys",
            &[
                ("csrf", &csrf),
                ("label", "billing"),
                ("scope", "ingest"),
                ("expires_in_days", "30"),
            ],
        )
        .await;
    assert_eq!(status, 201, "{page}");
    let plaintext = page
        .split("<code id=\"new-key\">")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .expect("the new key is shown")
        .to_owned();
    assert!(page.contains("<td class=\"key-scope\">ingest</td>"), "{page}");
    assert!(page.contains("2026-12-02 12:00 UTC"), "the expiry is shown: {page}");
    let keys = app.store.list_api_keys(app.ws).await.expect("keys");
    let billing = keys.iter().find(|k| k.label == "billing").expect("created");
    assert_eq!(billing.scope, ApiScope::Ingest);
    assert_eq!(billing.expires_at, Some(app.now() + chrono::Duration::days(30)));

    let (status, _) = app
        .send(
            Method::POST,
            "/api/v1/customers",
            Some(&plaintext),
            Some(json!({"customers": [{"external_id": "a", "name": "A"}]})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = app.send(Method::GET, "/api/v1/customers", Some(&plaintext), None).await;
    assert_eq!(status, 403);

    // No scope chosen: full, as always.
    let (status, _, _) = web
        .post("/settings/api-keys", &[("csrf", &csrf), ("label", "dashboards")])
        .await;
    assert_eq!(status, 201);
    let keys = app.store.list_api_keys(app.ws).await.expect("keys");
    let dashboards = keys.iter().find(|k| k.label == "dashboards").expect("created");
    assert_eq!((dashboards.scope, dashboards.expires_at), (ApiScope::Full, None));
}
