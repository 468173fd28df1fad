//! The web app over plain HTTP: sign-in, CSRF, isolation, cookie flags,
//! throttling, roles, and forms that keep what was typed.

use perly_store::auth::hash_password;
use perly_store::Role;
use reqwest::redirect::Policy;
use serde_json::json;

use crate::helpers::*;

/// A browser-like client (cookies, no automatic redirects).
pub struct WebClient {
    pub client: reqwest::Client,
    pub base: String,
}

impl WebClient {
    pub fn new(app: &TestApp) -> Self {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(Policy::none())
            .build()
            .expect("client");
        Self {
            client,
            base: app.base.clone(),
        }
    }

    pub async fn get(&self, path: &str) -> (u16, String, reqwest::header::HeaderMap) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("get");
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        (status, r.text().await.unwrap_or_default(), headers)
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, String, reqwest::header::HeaderMap) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .form(form)
            .send()
            .await
            .expect("post");
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        (status, r.text().await.unwrap_or_default(), headers)
    }

    /// The CSRF token in a page's forms.
    /// The page's CSRF token; panics when the page has none, so a 403 in a
    /// test is never a missing token taken for a refusal.
    pub fn csrf(html: &str) -> String {
        html.split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| panic!("no CSRF token on the page: {html}"))
            .to_owned()
    }

    pub async fn sign_in(&self, email: &str, password: &str) -> (u16, reqwest::header::HeaderMap) {
        let (_, page, _) = self.get("/login").await;
        let csrf = Self::csrf(&page);
        let (status, _, headers) = self
            .post(
                "/login",
                &[
                    ("csrf", &csrf),
                    ("email", email),
                    ("password", password),
                    ("next", "/customers"),
                ],
            )
            .await;
        (status, headers)
    }
}

pub async fn add_user(app: &TestApp, email: &str, role: Role) {
    let hash = hash_password("correct horse battery").expect("hash");
    app.store
        .add_user(app.ws, email, &hash, role, app.now())
        .await
        .expect("user");
}

#[tokio::test]
async fn pages_need_a_session_and_sign_in_sets_a_safe_cookie() {
    let app = spawn_app().await;
    add_user(&app, "ana@example.com", Role::Admin).await;
    let web = WebClient::new(&app);
    let (status, _, headers) = web.get("/customers?risk=high").await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/login?next=%2Fcustomers%3Frisk%3Dhigh");
    let (status, headers) = web.sign_in("ana@example.com", "correct horse battery").await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/customers");
    let cookie = headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("perly_session="))
        .expect("session cookie")
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "plain http is not Secure: {cookie}");
    let names: Vec<&str> = headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert!(
        names.iter().all(|c| !c.starts_with("__")),
        "plain http keeps the cookie names without a prefix: {names:?}"
    );
    let (status, page, _) = web.get("/customers").await;
    assert_eq!(status, 200);
    assert!(page.contains("<h1>Customers</h1>"));
}

#[tokio::test]
async fn session_cookies_are_secure_when_served_over_https() {
    let dir = tempfile::tempdir().expect("dir");
    let mut settings = test_settings(fresh_database(&dir).await, false);
    settings.public_url = "https://perly.example.com".into();
    let store = perly::server::open_store(&settings, perly::cli::cipher(&settings, true).expect("cipher"))
        .await
        .expect("store");
    let running = perly::server::start(&settings, store.clone(), std::sync::Arc::new(perly_web::SystemClock))
        .await
        .expect("start");
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .expect("client");
    let base = format!("http://{}", running.addr);
    // Over https every cookie Perly sets is Secure, the sign-in CSRF cookie included.
    let login = client.get(format!("{base}/login")).send().await.expect("get");
    let csrf_cookie = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("__Host-perly_login_csrf="))
        .expect("csrf cookie")
        .to_owned();
    assert!(csrf_cookie.contains("Secure"), "{csrf_cookie}");

    // And so is the session cookie a sign-in sets: `__Host-` (Secure, Path=/,
    // no Domain), HttpOnly, SameSite=Lax. A client that keeps Secure cookies
    // off plain http: the test sends the CSRF cookie back by hand.
    let now = chrono::Utc::now();
    let ws = store.create_workspace("Acme CS", now).await.expect("workspace");
    let hash = hash_password("correct horse battery").expect("hash");
    store
        .add_user(ws.id, "ana@example.com", &hash, Role::Admin, now)
        .await
        .expect("user");
    let page = login.text().await.expect("page");
    let token = WebClient::csrf(&page);
    let pair = csrf_cookie.split(';').next().expect("cookie pair").to_owned();
    let signed_in = client
        .post(format!("{base}/login"))
        .header("cookie", pair)
        .form(&[
            ("csrf", token.as_str()),
            ("email", "ana@example.com"),
            ("password", "correct horse battery"),
        ])
        .send()
        .await
        .expect("post");
    assert_eq!(signed_in.status(), 303);
    let session = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("__Host-perly_session="))
        .expect("session cookie")
        .to_owned();
    for part in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(session.contains(part), "{part}: {session}");
    }
    assert!(!session.to_ascii_lowercase().contains("domain="), "{session}");
    running.stop().await;
}

#[tokio::test]
async fn wrong_passwords_are_throttled_even_for_the_right_one_afterwards() {
    let app = spawn_app().await;
    add_user(&app, "ana@example.com", Role::Admin).await;
    let web = WebClient::new(&app);
    for _ in 0..10 {
        let (status, _) = web.sign_in("ana@example.com", "wrong").await;
        assert_eq!(status, 401);
    }
    let (status, _) = web.sign_in("ana@example.com", "correct horse battery").await;
    assert_eq!(status, 429, "locked after ten failures from this address");
    app.advance(chrono::Duration::minutes(16));
    let (status, _) = web.sign_in("ana@example.com", "correct horse battery").await;
    assert_eq!(status, 303, "open again after the window");
}

#[tokio::test]
async fn forms_without_the_csrf_token_are_refused() {
    let app = spawn_app().await;
    add_user(&app, "ana@example.com", Role::Admin).await;
    let web = WebClient::new(&app);
    web.sign_in("ana@example.com", "correct horse battery").await;
    let before = app.store.list_api_keys(app.ws).await.expect("keys").len();
    let (status, _, _) = web.post("/settings/api-keys", &[("label", "sneaky")]).await;
    assert_eq!(status, 403);
    let (status, _, _) = web
        .post("/settings/api-keys", &[("label", "sneaky"), ("csrf", "forged")])
        .await;
    assert_eq!(status, 403);
    assert_eq!(
        app.store.list_api_keys(app.ws).await.expect("keys").len(),
        before,
        "nothing created"
    );
    // The sign-in form needs its own token too.
    let fresh = WebClient::new(&app);
    let (status, _, _) = fresh
        .post(
            "/login",
            &[("email", "ana@example.com"), ("password", "correct horse battery")],
        )
        .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn another_workspaces_customer_page_is_a_404() {
    let app = spawn_app().await;
    app.customers(json!([{"external_id": "acme", "name": "Acme"}])).await;
    let (other, _) = app.other_workspace("Other Co").await;
    let hash = hash_password("correct horse battery").expect("hash");
    app.store
        .add_user(other, "bo@other.example", &hash, Role::Admin, app.now())
        .await
        .expect("user");
    let web = WebClient::new(&app);
    web.sign_in("bo@other.example", "correct horse battery").await;
    let (status, page, _) = web.get("/customers/acme").await;
    assert_eq!(status, 404);
    assert!(page.contains("Page not found"));
    let (_, list, _) = web.get("/customers").await;
    assert!(!list.contains("Acme"));
    let (status, page, _) = web.get("/no/such/page").await;
    assert_eq!((status, page.contains("Page not found")), (404, true));
}

#[tokio::test]
async fn members_see_settings_but_cannot_change_them() {
    let app = spawn_app().await;
    add_user(&app, "mo@example.com", Role::Member).await;
    let web = WebClient::new(&app);
    web.sign_in("mo@example.com", "correct horse battery").await;
    let (status, page, _) = web.get("/settings/scoring").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("<fieldset disabled>"),
        "the form is read-only for members"
    );
    let csrf = WebClient::csrf(&page);
    let (status, _, _) = web
        .post("/settings/api-keys", &[("csrf", &csrf), ("label", "mine")])
        .await;
    assert_eq!(status, 403);
    let (status, _, _) = web
        .post("/settings/scoring", &[("csrf", &csrf), ("band_low", "90")])
        .await;
    assert_eq!(status, 403);
    assert_eq!(app.get("/api/v1/scorecard").await.1["risk_bands"]["low"], 75.0);
}

#[tokio::test]
async fn a_form_with_errors_shows_them_by_the_field_keeps_the_input_and_changes_nothing() {
    let app = spawn_app().await;
    add_user(&app, "ana@example.com", Role::Admin).await;
    let web = WebClient::new(&app);
    web.sign_in("ana@example.com", "correct horse battery").await;
    let (_, page, _) = web.get("/settings/scoring").await;
    let csrf = WebClient::csrf(&page);
    // Every field as shown, with two bad ones.
    let mut fields: Vec<(String, String)> = page
        .split("<input id=\"")
        .skip(1)
        .filter_map(|rest| {
            let name = rest.split("name=\"").nth(1)?.split('"').next()?.to_owned();
            let value = rest.split("value=\"").nth(1)?.split('"').next()?.to_owned();
            Some((name, value))
        })
        .collect();
    for (name, value) in fields.iter_mut() {
        if name == "usage_trend_weight" {
            *value = "lots".into();
        }
    }
    let mut form: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    form.push(("csrf", &csrf));
    form.push(("action", "save"));
    let (status, page, _) = web.post("/settings/scoring", &form).await;
    assert_eq!(status, 422);
    assert!(page.contains("value=\"lots\""), "keeps what was typed");
    assert!(page.contains("Enter a number"));
    assert_eq!(
        app.get("/api/v1/scorecard").await.1["measures"]["usage_trend"]["weight"],
        22.0,
        "the default, unchanged"
    );

    let (_, page, _) = web.get("/settings/users").await;
    let csrf = WebClient::csrf(&page);
    let (status, page, _) = web
        .post(
            "/settings/users",
            &[
                ("csrf", &csrf),
                ("email", "not-an-email"),
                ("role", "member"),
                ("password", "elevenchars"),
            ],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("value=\"not-an-email\""));
    assert!(page.contains("Enter an email address") && page.contains("Use at least 12 characters"));
    assert_eq!(app.store.list_users(app.ws).await.expect("users").len(), 1);
    // Long enough, but one of the most common passwords: refused, and the list named.
    let (status, page, _) = web
        .post(
            "/settings/users",
            &[
                ("csrf", &csrf),
                ("email", "cy@example.com"),
                ("role", "member"),
                ("password", "Password1234"),
            ],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("list of common passwords"), "{page}");
    assert_eq!(app.store.list_users(app.ws).await.expect("users").len(), 1);
    // Any Unicode, 12 characters and up to 128, is taken.
    let long = "ñandú ".repeat(21) + "ñ!";
    assert_eq!(long.chars().count(), 128);
    let (status, _, _) = web
        .post(
            "/settings/users",
            &[
                ("csrf", &csrf),
                ("email", "cy@example.com"),
                ("role", "member"),
                ("password", &long),
            ],
        )
        .await;
    assert_eq!(status, 303);
    let fresh = WebClient::new(&app);
    assert_eq!(
        fresh.sign_in("cy@example.com", &long).await.0,
        303,
        "the new user signs in with it"
    );
}

#[tokio::test]
async fn admins_manage_users_and_keys_from_settings() {
    let app = spawn_app().await;
    add_user(&app, "ana@example.com", Role::Admin).await;
    add_user(&app, "bo@example.com", Role::Member).await;
    let web = WebClient::new(&app);
    web.sign_in("ana@example.com", "correct horse battery").await;
    let (_, page, _) = web.get("/settings/users").await;
    let csrf = WebClient::csrf(&page);
    let users = app.store.list_users(app.ws).await.expect("users");
    let bo = users.iter().find(|u| u.email == "bo@example.com").expect("bo");
    let me = users.iter().find(|u| u.email == "ana@example.com").expect("ana");

    let (status, _, _) = web
        .post(
            &format!("/settings/users/{}/role", bo.id),
            &[("csrf", &csrf), ("role", "admin")],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(
        app.store.find_user(app.ws, bo.id).await.expect("find").map(|u| u.role),
        Some(Role::Admin)
    );
    // Nobody locks themselves out.
    web.post(
        &format!("/settings/users/{}/role", me.id),
        &[("csrf", &csrf), ("role", "member")],
    )
    .await;
    web.post(&format!("/settings/users/{}/remove", me.id), &[("csrf", &csrf)])
        .await;
    assert_eq!(
        app.store.find_user(app.ws, me.id).await.expect("find").map(|u| u.role),
        Some(Role::Admin)
    );
    let (status, _, _) = web
        .post(&format!("/settings/users/{}/remove", bo.id), &[("csrf", &csrf)])
        .await;
    assert_eq!(status, 303);
    assert!(app.store.find_user(app.ws, bo.id).await.expect("find").is_none());
    let (status, _) = WebClient::new(&app)
        .sign_in("bo@example.com", "correct horse battery")
        .await;
    assert_eq!(status, 401, "a removed user cannot sign in");

    // An API key needs a label; the error sits by the field and nothing is created.
    let keys_before = app.store.list_api_keys(app.ws).await.expect("keys").len();
    let (status, page, _) = web
        .post("/settings/api-keys", &[("csrf", &csrf), ("label", "  ")])
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("class=\"field-error\"") && page.contains("Give the key a label"));
    assert_eq!(app.store.list_api_keys(app.ws).await.expect("keys").len(), keys_before);
}

#[tokio::test]
async fn pages_forbid_framing_inline_script_and_other_hosts() {
    let app = spawn_app().await;
    let web = WebClient::new(&app);
    let (_, _, headers) = web.get("/login").await;
    let csp = headers
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        csp.contains("default-src 'self'")
            && csp.contains("frame-ancestors 'none'")
            && csp.contains("script-src 'none'"),
        "{csp}"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
}
