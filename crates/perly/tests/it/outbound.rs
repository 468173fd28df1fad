//! Outbound URLs an admin or a vendor controls, through the real server
//! (issue 14, items 1 and 7). A listener on 127.0.0.1 stands for an
//! internal service (a database, the cloud metadata endpoint) and records
//! every connection: a My Domain URL, a token answer's `instance_url`, a
//! stored connection or a webhook pointing at it must never reach it. With
//! private networks not allowed (the default), a name that resolves to
//! loopback is refused at connect time. The Salesforce settings page lets
//! its forms lead only to the login hosts it offers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use perly_domain::salesforce::Environment;
use perly_standins::salesforce::SalesforceFault;
use perly_store::NewSalesforceConnection;
use secrecy::SecretString;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;
use crate::oauth::location;
use crate::salesforce::{admin, callback, consent, small_org, start};
use crate::web::WebClient;

/// A stand-in for an internal service: counts connections and answers
/// each with a 500, so a client that does connect fails fast.
struct Listener {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl Listener {
    async fn start() -> Listener {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = socket.read(&mut buf).await;
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        Listener { port, hits }
    }

    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// The `state` parameter of an authorize URL.
fn state_of(authorize: &str) -> String {
    reqwest::Url::parse(authorize)
        .ok()
        .and_then(|u| u.query_pairs().find(|(k, _)| k == "state").map(|(_, v)| v.into_owned()))
        .unwrap_or_default()
}

/// Plays a hostile "My Domain": if Perly sent the browser to it, it sends
/// the browser straight back to Perly's callback with a code, as a real
/// login page would, so Perly goes on to the token exchange there.
async fn play_hostile_login_page(web: &WebClient, authorize: &str) {
    if authorize.starts_with('/') {
        return;
    }
    let path = format!(
        "/integrations/salesforce/callback?code=attacker-code&state={}",
        state_of(authorize)
    );
    let _ = web.get(&path).await;
}

#[tokio::test]
async fn a_my_domain_off_salesforce_is_refused_naming_the_field_and_never_contacted() {
    let app = spawn_app_with_salesforce(small_org()).await;
    let web = admin(&app).await;
    let internal = Listener::start().await;
    let bad = [
        internal.url("http"),
        internal.url("https"),
        format!("http://localhost:{}", internal.port),
        "https://evil.example.com".to_owned(),
        "https://169.254.169.254".to_owned(),
        "https://10.0.0.1".to_owned(),
        "https://[::1]".to_owned(),
        "https://salesforce.com.evil.example".to_owned(),
        "https://acme.my.salesforce.com:8443".to_owned(),
        "https://acme.my.salesforce.com/services/oauth2".to_owned(),
    ];
    for url in &bad {
        let (status, to) = start(&web, "my_domain", url).await;
        play_hostile_login_page(&web, &to).await;
        assert_eq!(status, 303, "{url}");
        assert_eq!(
            to, "/settings/salesforce",
            "{url} must not be where the browser is sent"
        );
        let (_, page, _) = web.get(&to).await;
        assert!(page.contains("My Domain URL is refused"), "{url}: {page}");
    }
    assert_eq!(internal.hits(), 0, "the internal service was contacted");
    let (_, body) = app.get("/api/v1/salesforce").await;
    assert_eq!(body["status"], "not_connected");

    // A real My Domain goes on to Salesforce's page.
    let (status, to) = start(&web, "my_domain", "https://acme.my.salesforce.com").await;
    assert_eq!(status, 303);
    assert!(
        to.starts_with("https://acme.my.salesforce.com/services/oauth2/authorize?"),
        "{to}"
    );
}

#[tokio::test]
async fn a_token_answer_naming_a_foreign_instance_connects_nothing_and_that_host_is_never_called() {
    let app = spawn_app_with_salesforce(small_org()).await;
    let web = admin(&app).await;
    let internal = Listener::start().await;
    for instance in [
        internal.url("http"),
        "https://evil.example.com".to_owned(),
        "https://169.254.169.254".to_owned(),
    ] {
        app.sf().production().inject(SalesforceFault::InstanceUrl {
            url: instance.clone(),
            times: 1,
        });
        let (status, authorize) = start(&web, "production", "").await;
        assert_eq!(status, 303);
        let back = consent(&authorize, "allow").await;
        let (_, page) = callback(&web, &back).await;
        assert!(
            page.contains("which Perly does not call") && page.contains("nothing was connected"),
            "{instance}: {page}"
        );
    }
    assert_eq!(internal.hits(), 0, "the token was sent to the internal service");
    let (_, body) = app.get("/api/v1/salesforce").await;
    assert_eq!(body["status"], "not_connected", "{body}");
    assert!(app.sf().production().pending_faults().is_empty());
}

#[tokio::test]
async fn a_stored_connection_naming_a_private_instance_is_not_used() {
    let app = spawn_app_with_salesforce(small_org()).await;
    let internal = Listener::start().await;
    let conn = NewSalesforceConnection {
        environment: Environment::Production,
        login_url: app.sf().login_url(),
        instance_url: internal.url("http"),
        org_id: "00D000000000001".into(),
        org_name: "Tampered".into(),
        user_id: "005000000000001".into(),
        username: "admin@example.com".into(),
        refresh_token: "refresh".into(),
        permissions: json!({"complete": true, "missing": []}),
    };
    app.store
        .save_salesforce_connection(app.ws, &conn, app.now())
        .await
        .expect("save");
    let (status, body) = app.get("/api/v1/salesforce/fields").await;
    assert_eq!(status, 502, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("which Perly does not call") && message.contains("reconnect Salesforce"),
        "{body}"
    );
    app.sync().await;
    assert_eq!(internal.hits(), 0, "the stored instance was called");
}

#[tokio::test]
async fn without_the_opt_in_a_login_host_resolving_to_loopback_is_never_contacted() {
    let internal = Listener::start().await;
    let login = format!("https://localhost:{}", internal.port);
    let app = spawn_app_with_settings(&|s| {
        s.outbound.allow_private_networks = false;
        s.salesforce.login_url = Some(login.clone());
        s.salesforce.sandbox_login_url = Some(login.clone());
        s.salesforce.client_id = Some("salesforce-client-id".into());
        s.salesforce.client_secret = Some(SecretString::from("salesforce-client-secret".to_owned()));
    })
    .await;
    let web = admin(&app).await;
    let (status, authorize) = start(&web, "production", "").await;
    assert_eq!(status, 303);
    assert!(authorize.starts_with(&login), "{authorize}");
    // The login page sends the admin back with a code: Perly would now
    // post the client secret to the login host.
    let (_, _, headers) = web
        .get(&format!(
            "/integrations/salesforce/callback?code=c&state={}",
            state_of(&authorize)
        ))
        .await;
    let (_, page, _) = web.get(&location(&headers)).await;
    assert!(
        page.contains("localhost resolves to a loopback address") && page.contains("private networks"),
        "{page}"
    );
    assert_eq!(internal.hits(), 0);
}

#[tokio::test]
async fn plain_http_salesforce_login_urls_need_the_opt_in() {
    let dir = tempfile::tempdir().expect("dir");
    let mut settings = test_settings(fresh_database(&dir).await, false);
    settings.outbound.allow_private_networks = false;
    settings.salesforce.login_url = Some("http://login.example.com".into());
    let cipher = perly::cli::cipher(&settings, true).expect("cipher");
    let store = perly::server::open_store(&settings, cipher).await.expect("store");
    let clock = Arc::new(perly_web::SystemClock);
    let err = perly::server::start(&settings, store, clock)
        .await
        .err()
        .expect("refused at start");
    assert!(
        err.to_string()
            .contains("PERLY_SALESFORCE__LOGIN_URL must start with https://"),
        "{err}"
    );
}

#[tokio::test]
async fn webhooks_off_the_vendor_hosts_are_refused_and_never_posted_to() {
    let app = spawn_app_with_standins().await;
    let internal = Listener::start().await;
    for (platform, url) in [
        ("slack", format!("{}/services/T1/B1/secret", internal.url("http"))),
        ("discord", format!("{}/api/webhooks/1/token", internal.url("http"))),
        ("slack", "http://169.254.169.254/services/T1/B1/secret".to_owned()),
    ] {
        let (status, body) = app
            .post(
                "/api/v1/channels",
                json!({"platform": platform, "name": "#x", "webhook_url": url}),
            )
            .await;
        assert_eq!(status, 422, "{platform} {url}: {body}");
        assert_eq!(body["error"]["field"], "webhook_url", "{body}");
    }
    app.deliver().await;
    assert_eq!(internal.hits(), 0);
}

#[tokio::test]
async fn the_salesforce_page_lets_forms_lead_only_to_the_login_hosts_it_offers() {
    let app = spawn_app_with_salesforce(small_org()).await;
    let web = admin(&app).await;
    let (status, _, headers) = web.get("/settings/salesforce").await;
    assert_eq!(status, 200);
    let csp = headers
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let form_action: Vec<&str> = csp
        .split(';')
        .map(str::trim)
        .find_map(|d| d.strip_prefix("form-action "))
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        form_action,
        [
            "'self'",
            app.sf().login_url().as_str(),
            app.sf().sandbox_login_url().as_str(),
            "https://*.salesforce.com",
            "https://*.force.com"
        ],
        "{csp}"
    );
    for rest in ["frame-ancestors 'none'", "script-src 'none'", "default-src 'self'"] {
        assert!(csp.contains(rest), "{csp}");
    }
    // Other pages keep forms on Perly.
    let (_, _, headers) = web.get("/settings/scoring").await;
    let csp = headers
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(csp.contains("form-action 'self';"), "{csp}");
}
