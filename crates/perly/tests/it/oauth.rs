//! Connecting Slack and Discord with OAuth from Settings > Notifications,
//! through the real server and the stand-ins' authorize pages and token
//! endpoints: the happy path ends with a working channel; a denied consent,
//! a bad, replayed, foreign or expired state, and a failed exchange each
//! show a clear message and store nothing.

use chrono::Duration;
use perly_store::Role;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::web::{add_user, WebClient};

/// The vendor's side, as a browser would see it (no redirects followed).
pub(crate) fn vendor_browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

pub(crate) fn location(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

pub(crate) fn unescape(s: &str) -> String {
    s.replace("&amp;", "&")
        .replace("&#x2f;", "/")
        .replace("&#47;", "/")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
}

/// Hidden inputs of a consent page, and the first channel offered.
fn consent_form(html: &str) -> (Vec<(String, String)>, String) {
    let mut fields = Vec::new();
    for part in html.split("<input type=\"hidden\" ").skip(1) {
        let name = part.split("name=\"").nth(1).and_then(|r| r.split('"').next());
        let value = part.split("value=\"").nth(1).and_then(|r| r.split('"').next());
        if let (Some(n), Some(v)) = (name, value) {
            fields.push((n.to_owned(), unescape(v)));
        }
    }
    let channel = html
        .split("<option value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .map(unescape)
        .unwrap_or_default();
    (fields, channel)
}

async fn admin(app: &TestApp) -> WebClient {
    add_user(app, "ana@example.com", Role::Admin).await;
    let web = WebClient::new(app);
    let (status, _) = web.sign_in("ana@example.com", "correct horse battery").await;
    assert_eq!(status, 303);
    web
}

/// Clicks "Connect" in Perly: returns the vendor authorize URL.
async fn connect(web: &WebClient, vendor: &str) -> String {
    let (status, page, _) = web.get("/settings/notifications").await;
    assert_eq!(status, 200);
    let csrf = WebClient::csrf(&page);
    let (status, _, headers) = web
        .post(&format!("/integrations/{vendor}/connect"), &[("csrf", &csrf)])
        .await;
    assert_eq!(status, 303);
    location(&headers)
}

/// Approves (or denies) on the vendor's page: returns Perly's callback URL.
async fn consent(authorize: &str, decision: &str) -> String {
    let browser = vendor_browser();
    let page = browser.get(authorize).send().await.expect("authorize page");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    let (mut fields, channel) = consent_form(&html);
    fields.push(("channel".into(), channel));
    fields.push(("decision".into(), decision.into()));
    let action = authorize.split('?').next().expect("action");
    let answer = browser.post(action).form(&fields).send().await.expect("consent");
    assert!(answer.status().is_redirection(), "{}", answer.status());
    location(answer.headers())
}

/// Follows the vendor's redirect back into Perly, signed in as `web`.
async fn callback(web: &WebClient, url: &str) -> (u16, String, String) {
    let path = url.strip_prefix(&web.base).expect("callback on Perly");
    let (status, body, headers) = web.get(path).await;
    (status, body, location(&headers))
}

async fn channels(app: &TestApp) -> Vec<Value> {
    app.get("/api/v1/channels").await.1["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn slack_and_discord_connect_with_oauth_and_the_channel_receives_alerts() {
    let app = spawn_app_with_standins().await;
    let web = admin(&app).await;
    for vendor in ["slack", "discord"] {
        let authorize = connect(&web, vendor).await;
        let expected = match vendor {
            "slack" => format!("{}/oauth/v2/authorize?", app.slack().base_url()),
            _ => format!("{}/oauth2/authorize?", app.discord().base_url()),
        };
        assert!(authorize.starts_with(&expected), "{authorize}");
        let scope = if vendor == "slack" {
            "scope=incoming-webhook"
        } else {
            "scope=webhook.incoming+guilds"
        };
        assert!(authorize.contains(scope) && authorize.contains("state="), "{authorize}");
        let back = consent(&authorize, "allow").await;
        assert!(back.contains("code=") && back.contains("state="), "{back}");
        let (status, _, to) = callback(&web, &back).await;
        assert_eq!(status, 303, "{vendor}");
        assert!(to.starts_with("/settings/notifications/"), "{to}");
        let (status, page, _) = web.get(&to).await;
        assert_eq!(status, 200);
        assert!(page.contains("Connected"), "the flash says so");
        if vendor == "discord" {
            assert!(
                page.contains("Connected Acme CS.") && page.contains("Acme CS #alerts"),
                "named after the server picked on the consent page, with a hint to add the channel: {page}"
            );
        }
    }
    let list = channels(&app).await;
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|c| c["source"] == "oauth" && c["status"] == "active"));
    assert_eq!(list[0]["platform"], "slack");
    assert!(
        list[0]["name"].as_str().unwrap_or_default().starts_with('#'),
        "{}",
        list[0]
    );
    // Discord's token answer names no server or channel; the server's name
    // comes from GET /users/@me/guilds (scope `guilds`), never the numeric id.
    assert_eq!(list[1]["platform"], "discord");
    assert_eq!(list[1]["name"], "Acme CS", "{}", list[1]);

    // The installed webhooks work: an alert arrives on both.
    seat_only_scorecard(&app).await;
    app.customers(json!([{"external_id": "acme", "name": "Acme Corp", "seats_purchased": 100}]))
        .await;
    set_score(&app, "acme", 80).await;
    billing_retry_failed(&app, "acme", 1).await;
    app.deliver().await;
    assert_eq!(app.slack().messages().len(), 1);
    assert_eq!(app.discord().messages().len(), 1);
}

#[tokio::test]
async fn a_denied_consent_stores_nothing_and_says_so() {
    let app = spawn_app_with_standins().await;
    let web = admin(&app).await;
    for vendor in ["slack", "discord"] {
        let back = consent(&connect(&web, vendor).await, "deny").await;
        assert!(back.contains("error=access_denied"), "{back}");
        let (status, _, to) = callback(&web, &back).await;
        assert_eq!(status, 303);
        assert_eq!(to, "/settings/notifications");
        let (_, page, _) = web.get(&to).await;
        assert!(
            page.contains("cancelled") && page.contains("Nothing was saved"),
            "{vendor}"
        );
    }
    assert!(channels(&app).await.is_empty());
}

#[tokio::test]
async fn bad_replayed_foreign_and_expired_states_are_refused_and_store_nothing() {
    let app = spawn_app_with_standins().await;
    let web = admin(&app).await;

    // A replayed callback: the first one connects, the second is refused.
    let back = consent(&connect(&web, "slack").await, "allow").await;
    assert_eq!(callback(&web, &back).await.0, 303);
    let (status, page, _) = callback(&web, &back).await;
    assert_eq!(status, 400);
    assert!(page.contains("expired or was already used"), "{page}");
    assert_eq!(channels(&app).await.len(), 1);

    // A state Perly never issued.
    let forged = format!("{}/integrations/slack/callback?code=abc&state=forged", app.base);
    assert_eq!(callback(&web, &forged).await.0, 400);

    // A state started by another admin cannot be finished by this one.
    add_user(&app, "bo@example.com", Role::Admin).await;
    let other = WebClient::new(&app);
    other.sign_in("bo@example.com", "correct horse battery").await;
    let theirs = consent(&connect(&other, "discord").await, "allow").await;
    assert_eq!(callback(&web, &theirs).await.0, 400);

    // A state older than ten minutes.
    let late = consent(&connect(&web, "discord").await, "allow").await;
    app.advance(Duration::minutes(11));
    assert_eq!(callback(&web, &late).await.0, 400);
    assert_eq!(channels(&app).await.len(), 1, "nothing stored by any of them");
}

#[tokio::test]
async fn a_failed_token_exchange_shows_the_vendors_error_and_stores_nothing() {
    let app = spawn_app_with_standins().await;
    let web = admin(&app).await;
    for vendor in ["slack", "discord"] {
        let back = consent(&connect(&web, vendor).await, "allow").await;
        // The code is swapped for one the vendor never issued.
        let (head, tail) = back.split_once("code=").expect("code");
        let rest = tail.split_once('&').map(|(_, r)| format!("&{r}")).unwrap_or_default();
        let bad = format!("{head}code=not-a-real-code{rest}");
        let (status, _, to) = callback(&web, &bad).await;
        assert_eq!(status, 303, "{vendor}");
        let (_, page, _) = web.get(&to).await;
        let code = if vendor == "slack" {
            "invalid_code"
        } else {
            "invalid_grant"
        };
        assert!(
            page.contains(code) && page.contains("Nothing was saved"),
            "{vendor}: {page}"
        );
    }
    assert!(channels(&app).await.is_empty());
}

#[tokio::test]
async fn members_cannot_connect_channels() {
    let app = spawn_app_with_standins().await;
    add_user(&app, "mo@example.com", Role::Member).await;
    let web = WebClient::new(&app);
    web.sign_in("mo@example.com", "correct horse battery").await;
    let (_, page, _) = web.get("/settings/notifications").await;
    let csrf = WebClient::csrf(&page);
    let (status, _, _) = web.post("/integrations/slack/connect", &[("csrf", &csrf)]).await;
    assert_eq!(status, 403);
}
