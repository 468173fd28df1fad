//! The Discord stand-in over real HTTP, on port 0.

use std::collections::BTreeSet;

use reqwest::redirect::Policy;
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::*;
use crate::schema;

const REDIRECT: &str = "https://nicememe.website/";
const CS_ESCALATIONS_SALES: &str = "1345626669224982413";

fn app() -> OAuthApp {
    OAuthApp {
        client_id: "157730590492196864".into(),
        client_secret: "discord-secret".into(),
    }
}

async fn spawn() -> (DiscordStandin, reqwest::Client) {
    let discord = DiscordStandin::start("127.0.0.1:0", app()).await.expect("start");
    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client");
    (discord, http)
}

fn example(name: &str) -> Value {
    let path = format!("{}/specs/examples/discord/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("example file")).expect("JSON")
}

fn bundled(name: &str) -> jsonschema::Validator {
    let path = format!("{}/specs/{name}", env!("CARGO_MANIFEST_DIR"));
    schema::compile(&schema::parse(&std::fs::read_to_string(path).expect("schema file")))
}

fn assert_valid(schema: &jsonschema::Validator, v: &Value) {
    let errors: Vec<String> = schema
        .iter_errors(v)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{errors:?} in {v}");
}

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

fn consent_form<'a>(channel: &'a str, decision: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("response_type", "code"),
        ("client_id", "157730590492196864"),
        ("scope", "webhook.incoming"),
        ("redirect_uri", REDIRECT),
        ("state", "15773059ghq9183habn"),
        ("channel", channel),
        ("decision", decision),
    ]
}

async fn consent(d: &DiscordStandin, http: &reqwest::Client, channel: &str) -> String {
    let res = http
        .post(format!("{}/oauth2/authorize", d.base_url()))
        .form(&consent_form(channel, "allow"))
        .send()
        .await
        .expect("consent");
    assert_eq!(res.status(), StatusCode::FOUND);
    let location = res.headers()["location"].to_str().expect("ascii").to_owned();
    let q = query_of(&location);
    let keys: Vec<&str> = q.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["code", "state", "guild_id"], "{location}");
    assert_eq!(q[1].1, "15773059ghq9183habn");
    q[0].1.clone()
}

async fn token(d: &DiscordStandin, http: &reqwest::Client, form: &[(&str, &str)], secret: &str) -> (StatusCode, Value) {
    let res = http
        .post(format!("{}/api/v10/oauth2/token", d.base_url()))
        .basic_auth(app().client_id, Some(secret))
        .form(form)
        .send()
        .await
        .expect("token");
    (res.status(), res.json().await.expect("JSON"))
}

async fn execute(http: &reqwest::Client, url: &str, body: &Value) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let res = http.post(url).json(body).send().await.expect("post");
    (res.status(), res.headers().clone(), res.text().await.expect("text"))
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).expect("JSON body")
}

#[tokio::test]
async fn installing_through_the_consent_page_returns_a_working_webhook() {
    let (d, http) = spawn().await;
    let page = http
        .get(format!("{}/oauth2/authorize", d.base_url()))
        .query(&[
            ("response_type", "code"),
            ("client_id", "157730590492196864"),
            ("scope", "webhook.incoming"),
            ("state", "15773059ghq9183habn"),
            ("redirect_uri", REDIRECT),
        ])
        .send()
        .await
        .expect("authorize");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert!(html.contains("Perly wants to access your account"));
    assert!(html.contains("Create a webhook"));
    assert!(html.contains(r#"name="channel""#));
    assert!(html.contains("Acme CS") && html.contains("Acme Sales"));
    assert!(html.contains(&format!(r#"value="{CS_ESCALATIONS_SALES}""#)));
    assert!(html.contains(r#"name="decision" value="allow">Authorize"#));
    assert!(html.contains(r#"name="decision" value="deny">Cancel"#));

    let code = consent(&d, &http, CS_ESCALATIONS_SALES).await;
    let (status, body) = token(
        &d,
        &http,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ],
        "discord-secret",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_valid(
        &bundled("discord_oauth2_token_response_webhook_incoming.schema.json"),
        &body,
    );
    let (mut got, mut want) = (BTreeSet::new(), BTreeSet::new());
    key_paths(&body, "", &mut got);
    key_paths(
        &example("oauth2_token_response_webhook_incoming_doc.json"),
        "",
        &mut want,
    );
    assert_eq!(got, want, "same shape as the docs' example");
    let hook = &body["webhook"];
    assert_eq!(hook["channel_id"], CS_ESCALATIONS_SALES);
    assert_eq!(hook["guild_id"], "1290926792226357251");
    let url = hook["url"].as_str().expect("url");
    assert_eq!(
        url,
        format!(
            "{}/api/webhooks/{}/{}",
            d.base_url(),
            hook["id"].as_str().expect("id"),
            hook["token"].as_str().expect("token")
        )
    );

    let perly = example("execute_webhook_request_perly_constructed.json");
    let (status, headers, text) = execute(&http, &format!("{url}?wait=true"), &perly).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let message = json_of(&text);
    assert_valid(&bundled("discord_message_response.schema.json"), &message);
    assert_eq!(message["embeds"][0]["color"], 15105570);
    assert_eq!(message["embeds"][0]["type"], "rich");
    assert_eq!(message["channel_id"], CS_ESCALATIONS_SALES);
    assert_eq!(message["webhook_id"], hook["id"]);
    assert_eq!(headers["x-ratelimit-limit"], "5");
    assert_eq!(headers["x-ratelimit-remaining"], "4");

    let (status, headers, text) = execute(&http, url, &perly).await;
    assert_eq!((status, text.as_str()), (StatusCode::NO_CONTENT, ""));
    assert_eq!(headers["x-ratelimit-remaining"], "3");
    for h in ["x-ratelimit-reset", "x-ratelimit-reset-after", "x-ratelimit-bucket"] {
        assert!(headers.contains_key(h), "{h}");
    }
    let after: f64 = headers["x-ratelimit-reset-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("float");
    assert!(after > 0.0 && after <= 2.0);

    let got = d.messages();
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].channel.as_str(), got[0].guild.as_deref()),
        ("cs-escalations", Some("Acme Sales"))
    );
    assert_eq!(got[0].status, 200);
    assert_eq!(got[1].status, 204);
    assert_eq!(got[0].webhook_url, url, "recorded without the query string");
}

#[tokio::test]
async fn cancelling_consent_redirects_with_access_denied() {
    let (d, http) = spawn().await;
    let res = http
        .post(format!("{}/oauth2/authorize", d.base_url()))
        .form(&consent_form(CS_ESCALATIONS_SALES, "deny"))
        .send()
        .await
        .expect("deny");
    assert_eq!(res.status(), StatusCode::FOUND);
    assert_eq!(
        res.headers()["location"],
        "https://nicememe.website/?error=access_denied&error_description=The+resource+owner+or+authorization+server+denied+the+request&state=15773059ghq9183habn"
    );
}

#[tokio::test]
async fn the_authorize_page_refuses_unknown_clients_and_missing_scopes() {
    let (d, http) = spawn().await;
    let get = |client_id: &'static str, scope: &'static str| {
        http.get(format!("{}/oauth2/authorize", d.base_url()))
            .query(&[
                ("response_type", "code"),
                ("client_id", client_id),
                ("scope", scope),
                ("redirect_uri", REDIRECT),
            ])
            .send()
    };
    let res = get("1", "webhook.incoming").await.expect("get");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.expect("html").contains("invalid_client"));
    let res = get("157730590492196864", "identify").await.expect("get");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.expect("html").contains("invalid_scope"));
}

#[tokio::test]
async fn the_token_exchange_refuses_as_discord_does() {
    let (d, http) = spawn().await;
    let code = consent(&d, &http, CS_ESCALATIONS_SALES).await;
    let form = |code: &str, redirect: &str| {
        vec![
            ("grant_type".to_owned(), "authorization_code".to_owned()),
            ("code".to_owned(), code.to_owned()),
            ("redirect_uri".to_owned(), redirect.to_owned()),
        ]
    };
    let send = |f: Vec<(String, String)>, secret: &'static str| {
        let http = http.clone();
        let url = format!("{}/api/v10/oauth2/token", d.base_url());
        async move {
            let res = http
                .post(url)
                .basic_auth("157730590492196864", Some(secret))
                .form(&f)
                .send()
                .await
                .expect("token");
            (res.status(), res.json::<Value>().await.expect("JSON"))
        }
    };

    let (status, body) = send(form(&code, REDIRECT), "wrong").await;
    assert_eq!(
        (status, body),
        (StatusCode::UNAUTHORIZED, json!({"error": "invalid_client"}))
    );
    let (status, body) = send(form(&code, "https://evil.example/"), "discord-secret").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"error": "invalid_grant", "error_description": "Invalid \"redirect_uri\" in request."})
    );
    let (status, _) = send(form(&code, REDIRECT), "discord-secret").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = send(form(&code, REDIRECT), "discord-secret").await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            example("oauth2_token_error_invalid_grant_observed.json")
        ),
        "reused code"
    );
    let (status, body) = send(form("NhhvTDYsFcdgNLnnLijcl7Ku7bEEeee", REDIRECT), "discord-secret").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );

    // JSON is not read at all: Discord reports the missing grant type.
    let res = http
        .post(format!("{}/api/v10/oauth2/token", d.base_url()))
        .basic_auth("157730590492196864", Some("discord-secret"))
        .json(&json!({"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}))
        .send()
        .await
        .expect("token");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = res.json().await.expect("JSON");
    assert_eq!(body["error"], "unsupported_grant_type");
}

#[tokio::test]
async fn refresh_tokens_can_be_exchanged_once() {
    let (d, http) = spawn().await;
    let code = consent(&d, &http, CS_ESCALATIONS_SALES).await;
    let (_, body) = token(
        &d,
        &http,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ],
        "discord-secret",
    )
    .await;
    let refresh = body["refresh_token"].as_str().expect("refresh token").to_owned();
    let (status, body) = token(
        &d,
        &http,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        "discord-secret",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["token_type"], "Bearer");
    assert!(body.get("webhook").is_none());
    let (status, _) = token(
        &d,
        &http,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        "discord-secret",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn unknown_webhooks_and_wrong_tokens_get_discords_errors() {
    let (d, http) = spawn().await;
    let hook = d.create_webhook("customer-health");
    let hi = json!({"content": "hi"});
    let (status, headers, text) = execute(&http, &format!("{}/api/webhooks/1/abc", d.base_url()), &hi).await;
    assert_eq!(
        (status, json_of(&text)),
        (
            StatusCode::NOT_FOUND,
            example("error_404_unknown_webhook_observed.json")
        )
    );
    assert!(
        headers.contains_key("x-ratelimit-limit"),
        "every answer carries rate-limit headers"
    );
    let wrong = format!("{}x", hook);
    let (status, _, text) = execute(&http, &wrong, &hi).await;
    assert_eq!(
        (status, json_of(&text)),
        (
            StatusCode::UNAUTHORIZED,
            example("error_401_invalid_webhook_token_observed.json")
        )
    );
    // The versioned path reaches the same webhook.
    let versioned = hook.replace("/api/webhooks/", "/api/v10/webhooks/");
    assert_eq!(execute(&http, &versioned, &hi).await.0, StatusCode::NO_CONTENT);
    assert_eq!(d.messages().len(), 1);
    assert_eq!(d.requests().len(), 3);
}

#[tokio::test]
async fn invalid_payloads_are_refused_with_discords_bodies() {
    let (d, http) = spawn().await;
    let hook = d.create_webhook("customer-health");
    let refused = |body: Value| {
        let http = http.clone();
        let hook = hook.clone();
        async move {
            let (status, _, text) = execute(&http, &hook, &body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
            json_of(&text)
        }
    };
    let body = refused(json!({"embeds": [{"title": "t".repeat(300)}]})).await;
    assert_eq!(body["code"], 50035);
    assert_eq!(body["message"], "Invalid Form Body");
    assert_eq!(
        body["errors"]["embeds"]["0"]["title"]["_errors"][0]["code"],
        "BASE_TYPE_MAX_LENGTH"
    );
    assert_valid(
        &bundled("discord_error_response_corrected_constructed.schema.json"),
        &body,
    );

    let big: Vec<Value> = (0..4).map(|_| json!({"description": "d".repeat(1600)})).collect();
    assert_eq!(
        refused(json!({"embeds": big})).await,
        example("error_400_embed_total_too_large_observed.json")
    );
    assert_eq!(
        refused(json!({"username": "Perly"})).await,
        example("error_400_empty_message_observed.json")
    );
    let body = refused(json!({"embeds": [{"fields": [{"name": "ok", "value": "   "}]}]})).await;
    assert_eq!(
        body["errors"]["embeds"]["0"]["fields"]["0"]["value"]["_errors"][0]["code"],
        "BASE_TYPE_REQUIRED"
    );

    // Rate limit is 5 per 2 s: the sixth request needs another webhook.
    let hook = d.create_webhook("cs-escalations");
    let res = http
        .post(&hook)
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(res.json::<Value>().await.expect("JSON")["code"], 50109);
    assert!(d.messages().is_empty());
}

#[tokio::test]
async fn posting_too_fast_gets_429_per_webhook_then_per_channel() {
    let (d, http) = spawn().await;
    let hi = json!({"content": "hi"});
    let hook = d.create_webhook("revenue-signals");
    for _ in 0..5 {
        assert_eq!(execute(&http, &hook, &hi).await.0, StatusCode::NO_CONTENT);
    }
    let (status, headers, text) = execute(&http, &hook, &hi).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let body = json_of(&text);
    assert_valid(
        &bundled("discord_ratelimited_response_corrected_constructed.schema.json"),
        &body,
    );
    assert_eq!(body["message"], "You are being rate limited.");
    assert_eq!(body["global"], false);
    let retry = body["retry_after"].as_f64().expect("float seconds");
    assert!(retry > 0.0 && retry <= 2.0);
    // Whole seconds, rounded up from the body's float (how long is left of
    // the 2 s window depends on how fast the five posts went).
    let header: f64 = headers["retry-after"]
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert_eq!(header, retry.ceil(), "{retry}");
    assert_eq!(headers["x-ratelimit-scope"], "user");
    assert_eq!(headers["x-ratelimit-remaining"], "0");

    // 30 per 60 s per channel, shared by its webhooks.
    let mut posted = 5;
    while posted < 30 {
        let other = d.create_webhook("revenue-signals");
        for _ in 0..5 {
            assert_eq!(execute(&http, &other, &hi).await.0, StatusCode::NO_CONTENT);
            posted += 1;
        }
    }
    let fresh = d.create_webhook("revenue-signals");
    let (status, headers, text) = execute(&http, &fresh, &hi).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["x-ratelimit-scope"], "shared");
    assert_eq!(json_of(&text)["message"], "The resource is being rate limited.");
    assert_eq!(
        headers["x-ratelimit-remaining"], "5",
        "the webhook's own bucket is untouched"
    );
    // Another channel is not affected.
    let elsewhere = d.create_webhook("billing-alerts");
    assert_eq!(execute(&http, &elsewhere, &hi).await.0, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn injected_faults_answer_as_discord_does() {
    let (d, http) = spawn().await;
    let hi = json!({"content": "hi"});

    let hook = d.create_webhook("customer-health");
    d.inject(&hook, Fault::Status { status: 500, times: 1 });
    d.inject(&hook, Fault::Status { status: 502, times: 1 });
    let (status, _, text) = execute(&http, &hook, &hi).await;
    assert_eq!(
        (status, json_of(&text)),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"message": "500: Internal Server Error", "code": 0})
        )
    );
    let (status, _, text) = execute(&http, &hook, &hi).await;
    assert_eq!(
        (status, json_of(&text)),
        (
            StatusCode::BAD_GATEWAY,
            json!({"message": "502: Bad Gateway", "code": 0})
        )
    );
    assert_eq!(execute(&http, &hook, &hi).await.0, StatusCode::NO_CONTENT);

    let hook = d.create_webhook("customer-health");
    d.inject(
        &hook,
        Fault::RateLimit {
            retry_after_ms: 5_000,
            times: 1,
        },
    );
    let (status, headers, text) = execute(&http, &hook, &hi).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        json_of(&text),
        json!({"message": "You are being rate limited.", "retry_after": 5.0, "global": false})
    );
    assert_eq!(headers["retry-after"], "5");
    assert_eq!(headers["x-ratelimit-scope"], "user");
    assert_eq!(headers["x-ratelimit-reset-after"], "5.000");
    assert_eq!(execute(&http, &hook, &hi).await.0, StatusCode::NO_CONTENT);

    for (fault, status, answer) in [
        (
            Fault::Delete,
            StatusCode::NOT_FOUND,
            example("error_404_unknown_webhook_observed.json"),
        ),
        (
            Fault::Archive,
            StatusCode::NOT_FOUND,
            example("error_404_unknown_webhook_observed.json"),
        ),
        (
            Fault::Revoke,
            StatusCode::UNAUTHORIZED,
            example("error_401_invalid_webhook_token_observed.json"),
        ),
    ] {
        let hook = d.create_webhook("customer-health");
        d.inject(&hook, fault.clone());
        for _ in 0..2 {
            let (got, _, text) = execute(&http, &hook, &hi).await;
            assert_eq!(
                (got, json_of(&text)),
                (status, answer.clone()),
                "{fault:?} is permanent"
            );
        }
    }

    let hook = d.create_webhook("customer-health");
    d.inject(
        &hook,
        Fault::Slow {
            delay_ms: 150,
            times: 1,
        },
    );
    let started = std::time::Instant::now();
    assert_eq!(execute(&http, &hook, &hi).await.0, StatusCode::NO_CONTENT);
    assert!(started.elapsed() >= std::time::Duration::from_millis(150));
}

#[tokio::test]
async fn the_messages_page_draws_embeds_and_escapes_user_text() {
    let (d, http) = spawn().await;
    let hook = d.create_webhook("Acme Sales/customer-health");
    let mut alert = example("execute_webhook_request_perly_constructed.json");
    alert["embeds"][0]["description"] = json!("<img src=x onerror=alert(1)>");
    assert_eq!(execute(&http, &hook, &alert).await.0, StatusCode::NO_CONTENT);
    let html = http
        .get(d.base_url())
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(html.contains(r#"<meta http-equiv="refresh" content="3">"#));
    assert!(html.contains("border-left-color: #E67E22"), "embed colour");
    assert!(html.contains(r#"<a href="https://app.perly.example/customers/acme-corp">"#));
    assert!(!html.contains("<img src=x"));
    assert!(html.contains("Acme Sales › #customer-health"));
    assert!(html.contains(r#"class="inline""#) && html.contains("Top signals"));
    assert!(html.contains("2026-08-24 09:30:00 UTC"));
}

/// With `guilds` granted, the install's access token lists the user's
/// servers by name (the token answer carries only ids); without the scope
/// or with an unknown token, Discord refuses.
#[tokio::test]
async fn the_guilds_scope_lets_the_access_token_read_the_server_names() {
    let (d, http) = spawn().await;
    let mut form = consent_form(CS_ESCALATIONS_SALES, "allow");
    form[2] = ("scope", "webhook.incoming guilds");
    let res = http
        .post(format!("{}/oauth2/authorize", d.base_url()))
        .form(&form)
        .send()
        .await
        .expect("consent");
    let code = query_of(res.headers()["location"].to_str().expect("ascii"))[0]
        .1
        .clone();
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
    ];
    let (status, body) = token(&d, &http, &exchange, "discord-secret").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["webhook"].get("guild_name").is_none(),
        "no names in the token answer"
    );
    let guild_id = body["webhook"]["guild_id"].as_str().expect("guild id").to_owned();
    let access = body["access_token"].as_str().expect("access token").to_owned();
    let guilds = |token: String, query: &'static str| {
        let http = http.clone();
        let url = format!("{}/api/v10/users/@me/guilds{query}", d.base_url());
        async move {
            let res = http.get(url).bearer_auth(token).send().await.expect("guilds");
            (res.status(), res.json::<Value>().await.expect("JSON"))
        }
    };
    let (status, list) = guilds(access.clone(), "").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let names: Vec<(&str, &str)> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|g| Some((g["id"].as_str()?, g["name"].as_str()?)))
        .collect();
    assert_eq!(
        names,
        [
            ("1290926792226357250", "Acme CS"),
            ("1290926792226357251", "Acme Sales")
        ]
    );
    assert_eq!(guild_id, "1290926792226357251", "the server of the picked channel");
    let (_, after) = guilds(access.clone(), "?after=1290926792226357250&limit=1").await;
    assert_eq!(after[0]["name"], "Acme Sales");
    assert_eq!(after.as_array().map(Vec::len), Some(1));

    let (status, body) = guilds("not-a-token".into(), "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // A token without `guilds`.
    let code = consent(&d, &http, CS_ESCALATIONS_SALES).await;
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
    ];
    let (_, body) = token(&d, &http, &exchange, "discord-secret").await;
    let access = body["access_token"].as_str().expect("access token").to_owned();
    let (status, body) = guilds(access, "").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], 50001);
}
