//! The Slack stand-in over real HTTP, on port 0.

use std::collections::BTreeSet;

use reqwest::redirect::Policy;
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::*;

const REDIRECT: &str = "https://app.perly.example/integrations/slack/callback";

fn app() -> OAuthApp {
    OAuthApp {
        client_id: "33336676.569200954261".into(),
        client_secret: "slack-secret".into(),
    }
}

async fn spawn() -> (SlackStandin, reqwest::Client) {
    let slack = SlackStandin::start("127.0.0.1:0", app()).await.expect("start");
    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client");
    (slack, http)
}

fn example(name: &str) -> Value {
    let path = format!("{}/specs/examples/slack/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("example file")).expect("JSON")
}

/// Every key path of a JSON value (`incoming_webhook.url`, …).
fn key_paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let Value::Object(map) = v {
        for (k, v) in map {
            let path = format!("{prefix}{k}");
            key_paths(v, &format!("{path}."), out);
            out.insert(path);
        }
    }
}

fn query_of(location: &str) -> Vec<(String, String)> {
    url::Url::parse(location)
        .expect("location is a URL")
        .query_pairs()
        .into_owned()
        .collect()
}

/// Consent with Allow for `channel_id`; returns the code.
async fn consent(slack: &SlackStandin, http: &reqwest::Client, channel_id: &str) -> String {
    let res = http
        .post(format!("{}/oauth/v2/authorize", slack.base_url()))
        .form(&[
            ("client_id", app().client_id.as_str()),
            ("scope", "incoming-webhook"),
            ("redirect_uri", REDIRECT),
            ("state", "st4te"),
            ("channel", channel_id),
            ("decision", "allow"),
        ])
        .send()
        .await
        .expect("consent");
    assert_eq!(res.status(), StatusCode::FOUND);
    let location = res.headers()["location"].to_str().expect("ascii").to_owned();
    assert!(location.starts_with(REDIRECT), "{location}");
    let q = query_of(&location);
    assert_eq!(
        q.iter().find(|(k, _)| k == "state").map(|p| p.1.as_str()),
        Some("st4te")
    );
    q.into_iter().find(|(k, _)| k == "code").expect("code").1
}

async fn exchange(
    slack: &SlackStandin,
    http: &reqwest::Client,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> Value {
    let mut req = http
        .post(format!("{}/api/oauth.v2.access", slack.base_url()))
        .form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let res = req.send().await.expect("access");
    assert_eq!(res.status(), StatusCode::OK, "oauth.v2.access always answers 200");
    res.json().await.expect("JSON")
}

async fn post_json(http: &reqwest::Client, url: &str, body: &Value) -> (StatusCode, Option<String>, String) {
    let res = http.post(url).json(body).send().await.expect("post");
    let status = res.status();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().expect("ascii").to_owned());
    (status, retry, res.text().await.expect("text"))
}

#[tokio::test]
async fn installing_through_the_consent_page_returns_a_working_webhook() {
    let (slack, http) = spawn().await;
    let page = http
        .get(format!("{}/oauth/v2/authorize", slack.base_url()))
        .query(&[
            ("client_id", app().client_id.as_str()),
            ("scope", "incoming-webhook"),
            ("user_scope", ""),
            ("redirect_uri", REDIRECT),
            ("state", "st4te"),
        ])
        .send()
        .await
        .expect("authorize");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert!(html.contains("Perly is requesting permission to access the Acme Customer Success Slack workspace"));
    assert!(html.contains(r#"<select id="channel" name="channel">"#));
    for c in [
        "#customer-health",
        "#cs-escalations",
        "#revenue-signals",
        "#billing-alerts",
        "#general",
        "#random",
    ] {
        assert!(html.contains(c), "{c} offered");
    }
    assert!(html.contains(r#"name="decision" value="allow">Allow"#));
    assert!(html.contains(r#"name="decision" value="deny">Cancel"#));
    assert!(html.contains(r#"name="state" value="st4te""#));

    let code = consent(&slack, &http, "C05002EAF").await;
    let token = exchange(
        &slack,
        &http,
        &[("code", &code), ("redirect_uri", REDIRECT)],
        Some((&app().client_id, &app().client_secret)),
    )
    .await;
    let (mut got, mut want) = (BTreeSet::new(), BTreeSet::new());
    key_paths(&token, "", &mut got);
    key_paths(
        &example("oauth_v2_access_response_incoming_webhook_constructed.json"),
        "",
        &mut want,
    );
    assert_eq!(got, want, "same shape as Slack's example");
    assert_eq!(token["ok"], true);
    assert_eq!(token["incoming_webhook"]["channel"], "#cs-escalations");
    assert_eq!(token["incoming_webhook"]["channel_id"], "C05002EAF");
    let url = token["incoming_webhook"]["url"].as_str().expect("url");
    assert!(url.starts_with(&format!("{}/services/T9TK3CUKW/B", slack.hooks_url())));
    assert_eq!(url.rsplit('/').next().map(str::len), Some(24), "24-character secret");

    let res = http
        .post(url)
        .json(&json!({"text": "Hello, world."}))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(res.text().await.expect("body"), "ok");
    let got = slack.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].channel, "#cs-escalations");
    assert_eq!(got[0].webhook_url, url);
    assert_eq!(got[0].body, json!({"text": "Hello, world."}));
    assert_eq!((got[0].status, got[0].answer.as_str()), (200, "ok"));
}

#[tokio::test]
async fn cancelling_consent_redirects_with_access_denied() {
    let (slack, http) = spawn().await;
    let res = http
        .post(format!("{}/oauth/v2/authorize", slack.base_url()))
        .form(&[
            ("client_id", app().client_id.as_str()),
            ("scope", "incoming-webhook"),
            ("redirect_uri", REDIRECT),
            ("state", "3f9c2a6e0b8d4e51a7c1d2e3f4a5b6c7"),
            ("channel", "C05002EAE"),
            ("decision", "deny"),
        ])
        .send()
        .await
        .expect("deny");
    assert_eq!(res.status(), StatusCode::FOUND);
    assert_eq!(
        res.headers()["location"],
        "https://app.perly.example/integrations/slack/callback?error=access_denied&state=3f9c2a6e0b8d4e51a7c1d2e3f4a5b6c7"
    );
}

#[tokio::test]
async fn the_authorize_page_refuses_unknown_clients_and_missing_scopes() {
    let (slack, http) = spawn().await;
    let get = |client_id: &'static str, scope: &'static str| {
        http.get(format!("{}/oauth/v2/authorize", slack.base_url()))
            .query(&[("client_id", client_id), ("scope", scope), ("redirect_uri", REDIRECT)])
            .send()
    };
    let res = get("nope", "incoming-webhook").await.expect("get");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.expect("html").contains("invalid_client_id"));
    let res = get("33336676.569200954261", "commands").await.expect("get");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.expect("html").contains("invalid_scope"));
}

#[tokio::test]
async fn the_token_exchange_refuses_as_slack_does() {
    let (slack, http) = spawn().await;
    let (id, secret) = (app().client_id, app().client_secret);
    let code = consent(&slack, &http, "C05002EAE").await;
    let err = |v: Value| v["error"].as_str().map(str::to_owned);

    let bad_secret = exchange(&slack, &http, &[("code", &code)], Some((&id, "wrong"))).await;
    assert_eq!(bad_secret, json!({"ok": false, "error": "bad_client_secret"}));
    let unknown = exchange(&slack, &http, &[("code", &code)], Some(("who", &secret))).await;
    assert_eq!(err(unknown).as_deref(), Some("invalid_client_id"));
    let redirect = exchange(
        &slack,
        &http,
        &[("code", &code), ("redirect_uri", "https://evil.example/cb")],
        Some((&id, &secret)),
    )
    .await;
    assert_eq!(err(redirect).as_deref(), Some("bad_redirect_uri"));
    let grant_type = exchange(
        &slack,
        &http,
        &[("code", &code), ("grant_type", "password")],
        Some((&id, &secret)),
    )
    .await;
    assert_eq!(err(grant_type).as_deref(), Some("invalid_grant_type"));

    // Credentials in form fields (the docs' curl example) work too.
    let ok = exchange(
        &slack,
        &http,
        &[("code", &code), ("client_id", &id), ("client_secret", &secret)],
        None,
    )
    .await;
    assert_eq!(ok["ok"], true, "{ok}");
    let reused = exchange(&slack, &http, &[("code", &code)], Some((&id, &secret))).await;
    assert_eq!(err(reused).as_deref(), Some("invalid_code"));
    let unknown_code = exchange(&slack, &http, &[("code", "1234")], Some((&id, &secret))).await;
    assert_eq!(err(unknown_code).as_deref(), Some("invalid_code"));
}

#[tokio::test]
async fn the_example_payloads_in_the_specs_are_accepted() {
    let (slack, http) = spawn().await;
    for name in [
        "incoming_webhook_request_doc_hello.json",
        "incoming_webhook_request_doc_blocks.json",
        "incoming_webhook_request_perly_attachment_constructed.json",
        "incoming_webhook_request_perly_blocks_in_attachment_constructed.json",
        "legacy_attachment_doc_example.json",
    ] {
        let hook = slack.create_webhook("customer-health");
        let (status, _, body) = post_json(&http, &hook, &example(name)).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"), "{name}");
    }
    assert_eq!(slack.messages().len(), 5);
    assert!(slack.messages().iter().all(|m| m.channel == "#customer-health"));
}

#[tokio::test]
async fn invalid_payloads_are_refused_with_slacks_codes() {
    let (slack, http) = spawn().await;
    let hook = slack.create_webhook("#billing-alerts");
    let (status, _, body) = post_json(&http, &hook, &json!({"username": "x"})).await;
    assert_eq!((status, body.as_str()), (StatusCode::BAD_REQUEST, "no_text"));
    let too_many: Vec<Value> = (0..101).map(|i| json!({"fallback": format!("{i}")})).collect();
    let (status, _, body) = post_json(&http, &hook, &json!({"attachments": too_many})).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::BAD_REQUEST, "too_many_attachments")
    );
    let (_, _, body) = post_json(
        &http,
        &hook,
        &json!({"text": "t", "blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "x"}}]}),
    )
    .await;
    assert_eq!(body, "invalid_blocks");

    let res = http
        .post(&hook)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("text=hi")
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(res.text().await.expect("body"), "invalid_payload");
    let res = http
        .post(&hook)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(res.text().await.expect("body"), "invalid_payload");

    let unknown = format!(
        "{}/services/T9TK3CUKW/B0NOPE/abcdefghijklmnopqrstuvwx",
        slack.hooks_url()
    );
    let (status, _, body) = post_json(&http, &unknown, &json!({"text": "hi"})).await;
    assert_eq!((status, body.as_str()), (StatusCode::NOT_FOUND, "no_service"));

    assert!(slack.messages().is_empty());
    let refused = slack.requests();
    assert_eq!(refused.len(), 6);
    assert_eq!(refused[0].answer, "no_text");
    assert_eq!(refused[5].channel, "", "unknown webhooks have no channel");
}

#[tokio::test]
async fn posting_faster_than_slack_allows_gets_429_with_retry_after() {
    let (slack, http) = spawn().await;
    let hook = slack.create_webhook("#customer-health");
    for i in 0..5 {
        let (status, _, _) = post_json(&http, &hook, &json!({"text": format!("burst {i}")})).await;
        assert_eq!(status, StatusCode::OK, "a burst of five is allowed");
    }
    // The bucket refills at one post a second in real time: on a loaded
    // machine a token may come back before the sixth post, so keep posting
    // (far faster than one a second) until Slack says no.
    let mut accepted = 5;
    let (status, retry, body) = loop {
        let answer = post_json(&http, &hook, &json!({"text": "one too many"})).await;
        if answer.0 != StatusCode::OK || accepted == 20 {
            break answer;
        }
        accepted += 1;
    };
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry.as_deref(), Some("1"));
    let body: Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(body, json!({"retry_after": 1, "ok": false, "error": "rate_limited"}));
    assert_eq!(slack.messages().len(), accepted, "a refused post is not kept");
    assert_eq!(slack.requests().len(), accepted + 1);
    // Another webhook has its own bucket.
    let other = slack.create_webhook("#customer-health");
    assert_eq!(post_json(&http, &other, &json!({"text": "hi"})).await.0, StatusCode::OK);
}

#[tokio::test]
async fn injected_faults_answer_as_slack_does() {
    let (slack, http) = spawn().await;
    let hi = json!({"text": "hi"});

    let hook = slack.create_webhook("#customer-health");
    slack.inject(&hook, Fault::Status { status: 500, times: 2 });
    for _ in 0..2 {
        let (status, _, body) = post_json(&http, &hook, &hi).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::INTERNAL_SERVER_ERROR, "rollup_error")
        );
    }
    assert_eq!(post_json(&http, &hook, &hi).await.0, StatusCode::OK, "used up");

    let hook = slack.create_webhook("#customer-health");
    slack.inject(
        &hook,
        Fault::RateLimit {
            retry_after_ms: 2_500,
            times: 1,
        },
    );
    let (status, retry, _) = post_json(&http, &hook, &hi).await;
    assert_eq!((status, retry.as_deref()), (StatusCode::TOO_MANY_REQUESTS, Some("3")));
    assert_eq!(post_json(&http, &hook, &hi).await.0, StatusCode::OK);

    for (fault, status, answer) in [
        (Fault::Delete, StatusCode::NOT_FOUND, "channel_not_found"),
        (Fault::Archive, StatusCode::GONE, "channel_is_archived"),
        (Fault::Revoke, StatusCode::FORBIDDEN, "invalid_token"),
    ] {
        let hook = slack.create_webhook("#customer-health");
        slack.inject(&hook, fault.clone());
        for _ in 0..2 {
            let (got, _, body) = post_json(&http, &hook, &hi).await;
            assert_eq!((got, body.as_str()), (status, answer), "{fault:?} is permanent");
        }
    }

    let hook = slack.create_webhook("#customer-health");
    slack.inject(
        &hook,
        Fault::Slow {
            delay_ms: 150,
            times: 1,
        },
    );
    let started = std::time::Instant::now();
    assert_eq!(post_json(&http, &hook, &hi).await.0, StatusCode::OK);
    assert!(started.elapsed() >= std::time::Duration::from_millis(150));
}

#[tokio::test]
async fn the_messages_page_draws_attachments_and_escapes_user_text() {
    let (slack, http) = spawn().await;
    let hook = slack.create_webhook("#customer-health");
    let mut alert = example("incoming_webhook_request_perly_attachment_constructed.json");
    alert["attachments"][0]["title"] = json!("<script>alert(1)</script> Acme");
    assert_eq!(post_json(&http, &hook, &alert).await.0, StatusCode::OK);
    assert_eq!(post_json(&http, &hook, &json!({})).await.0, StatusCode::BAD_REQUEST);

    let html = http
        .get(slack.base_url())
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(html.contains(r#"<meta http-equiv="refresh" content="3">"#));
    assert!(html.contains("background: #E67E22"), "colour bar");
    assert!(html.contains(r#"<a href="https://app.perly.example/customers/acme-corp">"#));
    assert!(
        html.contains("&lt;script&gt;") || html.contains("&#60;script&#62;"),
        "escaped"
    );
    assert!(!html.contains("<script>alert"));
    assert!(html.contains("Health score") && html.contains("Perly · Health score drop"));
    assert!(html.contains("Refused: HTTP 400"));
    assert!(
        html.find("Refused").expect("refused shown") < html.find("Health score").expect("alert shown"),
        "newest first"
    );

    let all: Value = http
        .get(format!("{}/_standin/messages.json", slack.base_url()))
        .send()
        .await
        .expect("json")
        .json()
        .await
        .expect("JSON");
    assert_eq!(all.as_array().map(Vec::len), Some(2));
    assert_eq!(all[1]["status"], 400);
}

#[tokio::test]
async fn the_faults_form_injects_a_fault() {
    let (slack, http) = spawn().await;
    let hook = slack.create_webhook("#customer-health");
    let page = http
        .get(format!("{}/_standin/faults", slack.base_url()))
        .send()
        .await
        .expect("page");
    assert!(page.text().await.expect("html").contains(&hook));
    let res = http
        .post(format!("{}/_standin/faults", slack.base_url()))
        .form(&[("webhook_url", hook.as_str()), ("kind", "archive")])
        .send()
        .await
        .expect("inject");
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        post_json(&http, &hook, &json!({"text": "hi"})).await.0,
        StatusCode::GONE
    );
    slack.clear();
    assert!(slack.requests().is_empty());
}

#[tokio::test]
async fn saved_webhooks_keep_working_in_the_next_run() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("slack-hooks.json");
    let first = SlackStandin::start_saved("127.0.0.1:0", app(), &file)
        .await
        .expect("start");
    let url = first.create_webhook("#customer-health");
    first.shutdown();
    let second = SlackStandin::start_saved("127.0.0.1:0", app(), &file)
        .await
        .expect("again");
    let path = url.split("/services/").nth(1).expect("path");
    let client = reqwest::Client::new();
    let answer = client
        .post(format!("{}/services/{path}", second.hooks_url()))
        .json(&json!({"text": "still here"}))
        .send()
        .await
        .expect("post");
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(second.messages()[0].channel, "#customer-health");
    // Unknown webhooks are still refused.
    let answer = client
        .post(format!("{}/services/T1/B1/nope", second.hooks_url()))
        .json(&json!({"text": "x"}))
        .send()
        .await
        .expect("post");
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
}
