//! The web app in real headless Chromium (Debian's chromium and
//! chromium-driver), driven over WebDriver with fantoccini. Set
//! `PERLY_SCREENSHOTS=dir` to also save screenshots of the main pages.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration as StdDuration;

use fantoccini::{Client, ClientBuilder, Locator};
use perly_store::Role;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::web::add_user;

/// chromedriver plus a WebDriver session; both end on drop, with the
/// Chromium the driver started.
struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    /// chromedriver runs in a process group of its own, with the Chromium
    /// it starts: the whole group is killed, whether the test passed or
    /// panicked. Killing chromedriver alone left its Chromium running (about
    /// 190 processes and 16 GB resident after two runs of the suite).
    fn drop(&mut self) {
        let group = rustix::process::Pid::from_child(&self.driver);
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        let _ = self.driver.wait();
    }
}

impl Browser {
    async fn start() -> Self {
        // reqwest and fantoccini pull in different rustls backends; pick one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let driver_bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let port = free_port();
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {driver_bin} (apt-get install chromium chromium-driver): {e}"));
        let profile = tempfile::tempdir().expect("profile dir");
        let caps = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                         "--disable-dev-shm-usage", "--disable-component-update", "--disable-sync", "--no-first-run",
                         "--disable-quic", "--window-size=1280,1000", format!("--user-data-dir={}", profile.path().display())]
            }
        });
        let caps = caps.as_object().cloned().expect("object");
        let url = format!("http://127.0.0.1:{port}");
        let mut last_error = String::new();
        for _ in 0..100 {
            match ClientBuilder::rustls()
                .expect("tls")
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Self {
                        client,
                        driver,
                        _profile: profile,
                    }
                }
                Err(e) => last_error = e.to_string(),
            }
            tokio::time::sleep(StdDuration::from_millis(100)).await;
        }
        panic!("chromedriver did not start: {last_error}");
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("goto");
    }

    async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("text")
    }

    async fn texts(&self, css: &str) -> Vec<String> {
        let mut out = Vec::new();
        for e in self.client.find_all(Locator::Css(css)).await.expect("find_all") {
            out.push(e.text().await.expect("text"));
        }
        out
    }

    async fn fill(&self, css: &str, value: &str) {
        let e = self.find(css).await;
        e.clear().await.expect("clear");
        e.send_keys(value).await.expect("type");
    }

    /// Waits up to 5 s for an element.
    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(StdDuration::from_secs(5))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
    }

    /// Clicks, and when the click loads another page, waits until it has.
    async fn click(&self, css: &str) {
        let old = self.client.find(Locator::Css("html")).await.expect("page");
        let target = self.find(css).await;
        let navigates = target.tag_name().await.is_ok_and(|t| t == "a" || t == "button");
        target.click().await.expect("click");
        if navigates {
            for _ in 0..100 {
                if old.tag_name().await.is_err() {
                    return;
                }
                tokio::time::sleep(StdDuration::from_millis(50)).await;
            }
            panic!("clicking {css} did not load a page");
        }
    }

    async fn path(&self) -> String {
        let u = self.client.current_url().await.expect("url");
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        }
    }

    async fn sign_in(&self, base: &str, email: &str) {
        self.sign_in_with(base, email, "correct horse battery").await;
    }

    async fn sign_in_with(&self, base: &str, email: &str, password: &str) {
        self.goto(&format!("{base}/customers")).await;
        assert!(
            self.path().await.starts_with("/login"),
            "signed-out users are sent to sign in"
        );
        self.fill("#email", email).await;
        self.fill("#password", password).await;
        self.click("form button[type=submit]").await;
        assert_eq!(self.path().await, "/customers");
    }

    async fn screenshot(&self, name: &str) {
        if let Ok(dir) = std::env::var("PERLY_SCREENSHOTS") {
            let png = self.client.screenshot().await.expect("screenshot");
            std::fs::write(format!("{dir}/{name}.png"), png).expect("write screenshot");
        }
    }
}

/// A workspace with the demo's customers and history.
async fn seeded_app() -> TestApp {
    let app = spawn_app().await;
    perly::demo::seed(&app.store, app.ws, 40, app.now())
        .await
        .expect("seed");
    add_user(&app, "ana@example.com", Role::Admin).await;
    app
}

#[tokio::test]
async fn a_user_signs_in_sorts_and_filters_customers_and_opens_a_profile() {
    let app = seeded_app().await;
    let b = Browser::start().await;
    b.sign_in(&app.base, "ana@example.com").await;
    let names = b.texts("table.customers tbody th").await;
    assert_eq!(names.len(), 40, "{names:?}");
    b.screenshot("customers").await;

    // The list starts lowest score first; the Score header turns it around.
    b.click("thead a[href*='sort=-score']").await;
    assert_eq!(b.text("thead a[aria-sort]").await, "Score ▼");
    let scores: Vec<i64> = b
        .texts("table.customers tbody td:nth-child(2)")
        .await
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    assert!(
        scores.len() > 30 && scores.windows(2).all(|w| w[0] >= w[1]),
        "{scores:?}"
    );

    // Filter by risk.
    b.goto(&format!("{}/customers", app.base)).await;
    b.click("#risk option[value=high]").await;
    b.click("form.filters button").await;
    let risks = b.texts("table.customers tbody .risk").await;
    assert!(!risks.is_empty() && risks.iter().all(|r| r == "High"), "{risks:?}");

    // Open a profile: chart, signals, action.
    b.click("table.customers tbody th a").await;
    assert!(b.path().await.starts_with("/customers/"));
    let chart = b
        .client
        .find(Locator::Css("svg#chart path.line"))
        .await
        .expect("score line");
    assert!(chart
        .attr("d")
        .await
        .expect("attr")
        .is_some_and(|d| d.matches('L').count() > 30));
    assert!(!b.texts("ul.signals li").await.is_empty());
    assert!(b.text(".action").await.starts_with("Suggested action:"));
    b.screenshot("profile").await;

    b.goto(&format!("{}/alerts", app.base)).await;
    assert!(!b.texts("ol.feed li").await.is_empty());
    b.screenshot("alerts").await;
    b.click("ol.feed li a").await;
    assert!(
        b.path().await.starts_with("/customers/"),
        "each alert links to its customer"
    );
}

/// The portfolio of a demo-like workspace: the risk chart, movers and
/// alerts render (no script), and each part links where it says.
#[tokio::test]
async fn the_portfolio_shows_the_demo_workspace_at_a_glance() {
    let app = seeded_app().await;
    let b = Browser::start().await;
    b.sign_in(&app.base, "ana@example.com").await;
    b.click("header.top a.brand").await;
    assert_eq!(b.path().await, "/");
    assert_eq!(b.text("header.top nav a[aria-current=page]").await, "Portfolio");
    let bars = b
        .client
        .find_all(Locator::Css("svg#risk-chart rect.bar"))
        .await
        .expect("bars");
    assert_eq!(bars.len(), 10, "customers and MRR for five levels");
    let counts: Vec<i64> = b
        .texts("table.risk-totals td.customers")
        .await
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    assert_eq!(counts.iter().sum::<i64>(), 40, "{counts:?}");
    assert!(!b.texts("#falls tbody tr").await.is_empty(), "someone fell this week");
    assert!(!b.texts("#latest-alerts li").await.is_empty());
    assert_eq!(b.text("#last-import .empty").await, "No imports yet.");
    assert!(b
        .client
        .find_all(Locator::Css("script"))
        .await
        .expect("scripts")
        .is_empty());
    // The whole page in one picture.
    b.client.set_window_size(1280, 1500).await.expect("window size");
    b.screenshot("portfolio").await;
    b.click("#falls tbody th a").await;
    assert!(b.path().await.starts_with("/customers/"), "movers link to profiles");
}

#[tokio::test]
async fn an_admin_changes_a_risk_band_and_it_takes_effect() {
    let app = seeded_app().await;
    let b = Browser::start().await;
    b.sign_in(&app.base, "ana@example.com").await;
    let (_, before) = app.get("/api/v1/customers?risk_level=low&limit=500").await;
    let low_before = before["items"].as_array().map_or(0, Vec::len);
    assert!(low_before > 0);

    b.goto(&format!("{}/settings/scoring", app.base)).await;
    b.screenshot("settings").await;
    b.fill("#band_low", "101").await;
    b.click("button[value=save]").await;
    assert!(
        b.text(".field-error").await.contains("low > medium"),
        "a bad band is refused by the field"
    );
    b.fill("#band_low", "99").await;
    b.click("button[value=preview]").await;
    assert!(b.text("#preview").await.contains("would change risk level"));
    b.click("button[value=save]").await;
    assert!(b.text(".flash").await.contains("Scoring saved"));

    app.rescore().await;
    let (_, after) = app.get("/api/v1/customers?risk_level=low&limit=500").await;
    let low_after = after["items"].as_array().map_or(0, Vec::len);
    assert!(
        low_after < low_before,
        "fewer customers are low risk: {low_before} → {low_after}"
    );
    b.goto(&format!("{}/customers?risk=low", app.base)).await;
    assert_eq!(
        b.texts("table.customers tbody .risk")
            .await
            .iter()
            .filter(|r| *r == "Low")
            .count(),
        low_after
    );
}

#[tokio::test]
async fn an_api_key_is_shown_once_and_refused_once_revoked() {
    let app = seeded_app().await;
    let b = Browser::start().await;
    b.sign_in(&app.base, "ana@example.com").await;
    b.goto(&format!("{}/settings/api-keys", app.base)).await;
    b.fill("#label", "browser test").await;
    b.click("form.card button[type=submit]").await;
    let key = b.text("#new-key").await;
    assert!(key.starts_with("perly_"), "{key}");
    let (status, _) = app
        .send(reqwest::Method::GET, "/api/v1/customers", Some(&key), None)
        .await;
    assert_eq!(status, 200);
    b.goto(&format!("{}/settings/api-keys", app.base)).await;
    assert!(
        b.client.find(Locator::Css("#new-key")).await.is_err(),
        "shown only once"
    );
    b.click("button[aria-label='Revoke key browser test']").await;
    assert!(b.text(".flash").await.contains("revoked"));
    let (status, body) = app
        .send(reqwest::Method::GET, "/api/v1/customers", Some(&key), None)
        .await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test]
async fn a_member_cannot_change_settings() {
    let app = seeded_app().await;
    add_user(&app, "mo@example.com", Role::Member).await;
    let b = Browser::start().await;
    b.sign_in(&app.base, "mo@example.com").await;
    b.goto(&format!("{}/settings/scoring", app.base)).await;
    let disabled = b
        .client
        .find(Locator::Css("form fieldset"))
        .await
        .expect("fieldset")
        .attr("disabled")
        .await
        .expect("attr");
    assert!(disabled.is_some(), "the scoring form is read-only");
    b.goto(&format!("{}/settings/api-keys", app.base)).await;
    assert!(
        b.client.find(Locator::Css("#label")).await.is_err(),
        "no create-key form for members"
    );
    assert!(
        b.client.find(Locator::Css("button.danger")).await.is_err(),
        "no revoke buttons for members"
    );
}

#[tokio::test]
async fn a_member_changes_their_password_from_settings() {
    let app = spawn_app().await;
    add_user(&app, "mo@example.com", Role::Member).await;
    let b = Browser::start().await;
    b.sign_in(&app.base, "mo@example.com").await;
    b.goto(&format!("{}/settings/scoring", app.base)).await;
    b.click("nav.subnav a[href='/settings/account']").await;
    assert_eq!(b.path().await, "/settings/account");
    let new = "a walk along the río in spring";
    b.fill("#current_password", "correct horse battery").await;
    b.fill("#new_password", new).await;
    b.fill("#confirm_password", new).await;
    b.click("form[action='/settings/account/password'] button[type=submit]")
        .await;
    assert_eq!(b.path().await, "/settings/account");
    assert!(b.text(".flash").await.starts_with("Password changed."));
    b.click("form[action='/logout'] button").await;
    b.sign_in_with(&app.base, "mo@example.com", new).await;
}

#[tokio::test]
async fn an_admin_connects_slack_and_discord_by_clicking_through_oauth_and_sees_alerts_arrive() {
    let app = spawn_app_with_standins().await;
    add_user(&app, "ana@example.com", Role::Admin).await;
    let b = Browser::start().await;
    b.sign_in(&app.base, "ana@example.com").await;
    for (vendor, allow) in [("slack", "Allow"), ("discord", "Authorize")] {
        b.goto(&format!("{}/settings/notifications", app.base)).await;
        // The form posts to Perly, which redirects to the vendor's consent page.
        b.click(&format!("form[action='/integrations/{vendor}/connect'] button"))
            .await;
        let consent = b.client.current_url().await.expect("url");
        let standin = match vendor {
            "slack" => app.slack().base_url(),
            _ => app.discord().base_url(),
        };
        let standin = reqwest::Url::parse(&standin).expect("url");
        assert_eq!(consent.port(), standin.port(), "on the {vendor} stand-in");
        if vendor == "slack" {
            b.screenshot("slack-consent").await;
        }
        b.click("button[value=allow]").await;
        assert!(
            b.path().await.starts_with("/settings/notifications/"),
            "{}",
            b.path().await
        );
        let flash = b.text(".flash").await;
        assert!(flash.starts_with("Connected"), "{flash} ({allow})");
    }
    b.goto(&format!("{}/settings/notifications", app.base)).await;
    b.screenshot("notifications").await;

    seat_only_scorecard(&app).await;
    app.customers(json!([{"external_id": "acme", "name": "Acme Corp", "seats_purchased": 100}]))
        .await;
    set_score(&app, "acme", 80).await;
    app.advance(chrono::Duration::days(1));
    set_score(&app, "acme", 45).await;
    app.deliver().await;
    for (standin, name) in [
        (app.slack().base_url(), "slack-standin"),
        (app.discord().base_url(), "discord-standin"),
    ] {
        b.goto(&standin).await;
        let page = b.client.source().await.expect("source");
        assert!(page.contains("Acme Corp"), "{name} shows the alert");
        b.screenshot(name).await;
    }
}

#[tokio::test]
async fn an_import_reaches_the_slack_and_discord_stand_ins_as_one_summary() {
    let app = spawn_app_with_standins().await;
    seat_only_scorecard(&app).await;
    let rules = json!({"event_kinds": ["customer_at_risk", "health_score_drop", "billing_retry_failed"],
                       "min_risk": null, "min_score_delta": null, "quiet_hours": null});
    let slack = app.slack().create_webhook("#customer-health");
    let discord = app.discord().create_webhook("customer-health");
    app.channel("slack", "#customer-health", &slack, rules.clone()).await;
    app.channel("discord", "customer-health", &discord, rules).await;
    let names = [
        "Acme Corp",
        "Globex",
        "Initech",
        "Umbrella",
        "Hooli",
        "Soylent",
        "Stark Industries",
        "Wayne Enterprises",
        "Tyrell",
        "Cyberdyne",
        "Wonka",
        "Vandelay",
        "Oceanic",
        "Massive Dynamic",
        "Aperture",
    ];
    let rows: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| json!({"external_id": format!("c{i}"), "name": n, "seats_purchased": 100, "mrr": 4200.0 - 250.0 * i as f64}))
        .collect();
    app.customers(json!(rows)).await;
    // Thirty days of seat counts: two thirds slide into high or critical risk.
    let now = app.now();
    let mut events = Vec::new();
    for i in 0..names.len() {
        for d in (0..30).rev() {
            let used = if i % 3 == 2 { 80 } else { 10 + d * 2 };
            events.push(event(
                &format!("c{i}-seats-{d}"),
                &format!("c{i}"),
                now - chrono::Duration::days(d as i64),
                json!({"type": "seats_changed", "seats_used": used}),
            ));
        }
    }
    let (status, body) = app
        .post("/api/v1/events", json!({"events": events, "backfill": true}))
        .await;
    assert_eq!(status, 200, "{body}");
    app.rescore().await;
    app.advance(chrono::Duration::seconds(61));
    app.rescore().await;
    app.deliver().await;
    assert_eq!(app.slack().messages().len(), 1);
    assert_eq!(app.discord().messages().len(), 1);

    let b = Browser::start().await;
    for (standin, name) in [
        (app.slack().base_url(), "slack-summary"),
        (app.discord().base_url(), "discord-summary"),
    ] {
        b.goto(&standin).await;
        let page = b.client.source().await.expect("source");
        assert!(
            page.contains("History through the events API: 15 customers"),
            "{name}: {page}"
        );
        // Where each customer stands now (10 of 100 seats used), not the
        // score of its alert from the day it crossed into critical.
        assert!(
            page.contains("Acme Corp ($4,200.00): critical, score 10"),
            "{name}: {page}"
        );
        b.screenshot(name).await;
    }
}
