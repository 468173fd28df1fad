//! `spawn_app()` and friends: the real server on port 0, a fresh database, a
//! controllable clock, and a client that speaks the public API.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, TimeZone, Utc};
use perly::config::Settings;
use perly::rescore::{PassStats, Rescorer};
use perly::server::Running;
use perly_delivery::worker::{Deliverer, DeliverySettings, DeliveryStats};
use perly_domain::ids::WorkspaceId;
use perly_standins::salesforce::{OrgSpec, SalesforceStandin};
use perly_standins::{DiscordStandin, OAuthApp, SlackStandin};
use perly_store::Store;
use perly_web::Clock;
use secrecy::SecretString;
use serde_json::{json, Value};
use sqlx::Connection;

/// A clock the test moves by hand, or that runs on its own faster than
/// the real one ([`TestClock::run_at_speed`]).
pub struct TestClock {
    at: Mutex<DateTime<Utc>>,
    /// When set: the real instant `at` was read, and how many times faster
    /// than the real clock time runs from there.
    speed: Mutex<Option<(std::time::Instant, f64)>>,
}

impl TestClock {
    fn new(at: DateTime<Utc>) -> Self {
        Self {
            at: Mutex::new(at),
            speed: Mutex::new(None),
        }
    }

    /// From now on the clock runs by itself, `factor` times faster than the
    /// real one (the server, the workers the test drives and stand-ins sped
    /// up by the same factor then share one time scale).
    pub fn run_at_speed(&self, factor: f64) {
        let now = self.now();
        *self.at.lock().expect("clock lock") = now;
        *self.speed.lock().expect("clock lock") = Some((std::time::Instant::now(), factor));
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        let at = *self.at.lock().expect("clock lock");
        match *self.speed.lock().expect("clock lock") {
            None => at,
            Some((since, factor)) => {
                at + Duration::from_std(since.elapsed().mul_f64(factor)).expect("a test's duration")
            }
        }
    }
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 12, 0, 0)
        .single()
        .expect("valid time")
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub clock: Arc<TestClock>,
    pub ws: WorkspaceId,
    pub key: String,
    /// The database the server runs on (to tamper with stored data).
    pub database_url: String,
    /// Local Slack and Discord, when the test asked for them.
    pub slack: Option<SlackStandin>,
    pub discord: Option<DiscordStandin>,
    pub salesforce: Option<SalesforceStandin>,
    pub _running: Running,
    _dir: tempfile::TempDir,
}

/// The OAuth app the stand-ins accept and the tests configure.
pub fn oauth_app(vendor: &str) -> OAuthApp {
    OAuthApp {
        client_id: format!("{vendor}-client-id"),
        client_secret: format!("{vendor}-client-secret"),
    }
}

/// Slack and Discord stand-ins on port 0, and settings pointing at them.
pub async fn standins(settings: &mut Settings) -> (SlackStandin, DiscordStandin) {
    let slack = SlackStandin::start("127.0.0.1:0", oauth_app("slack"))
        .await
        .expect("slack stand-in");
    let discord = DiscordStandin::start("127.0.0.1:0", oauth_app("discord"))
        .await
        .expect("discord stand-in");
    perly::demo::point_at_standins(settings, &slack, &oauth_app("slack"), &discord, &oauth_app("discord"));
    (slack, discord)
}

/// A direct connection to a test database (SQLite or PostgreSQL), for
/// tests that read or write rows behind the server's back.
pub async fn connect_database(url: &str) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(url)
        .await
        .expect("connect to the test database")
}

/// A fresh database URL: SQLite in a temp dir, or a new PostgreSQL database.
pub async fn fresh_database(dir: &tempfile::TempDir) -> String {
    match std::env::var("PERLY_TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => perly_store::db::create_scratch_postgres(&url)
            .await
            .expect("a fresh database on PERLY_TEST_DATABASE_URL's server"),
        _ => format!("sqlite://{}/perly.db", dir.path().display()),
    }
}

/// The tests' secret key: 32 random bytes as hex.
pub const TEST_SECRET_KEY: &str = "9f3c1a7e5b2d8c4f0a6e1b3d5c7f9a2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a";

pub fn test_settings(database_url: String, worker: bool) -> Settings {
    let mut s = Settings {
        database_url,
        listen: "127.0.0.1:0".into(),
        public_url: String::new(),
        secret_key: Some(SecretString::from(TEST_SECRET_KEY.to_owned())),
        ..Default::default()
    };
    s.scoring.worker = worker;
    s.delivery.worker = worker;
    s.sync.worker = worker;
    s.sync.job_poll_ms = 10;
    s.scoring.poll_interval_ms = 50;
    // The stand-ins run on 127.0.0.1.
    s.outbound.allow_private_networks = true;
    s
}

/// Starts the app without the background worker: tests drive rescoring.
pub async fn spawn_app() -> TestApp {
    spawn_with(false).await
}

/// Starts the app with the background rescoring worker running.
pub async fn spawn_app_with_worker() -> TestApp {
    spawn_with(true).await
}

/// Starts the app with Slack and Discord stand-ins; tests drive rescoring
/// and delivery.
pub async fn spawn_app_with_standins() -> TestApp {
    spawn_inner(false, true).await
}

async fn spawn_with(worker: bool) -> TestApp {
    spawn_inner(worker, false).await
}

async fn spawn_inner(worker: bool, with_standins: bool) -> TestApp {
    spawn_full(worker, with_standins, None, &|_| {}).await
}

/// Starts the app with a Salesforce stand-in serving `org` (Production and
/// a Sandbox); tests drive syncs with [`TestApp::sync`].
pub async fn spawn_app_with_salesforce(org: OrgSpec) -> TestApp {
    spawn_full(false, false, Some((org, false)), &|_| {}).await
}

/// As [`spawn_app_with_salesforce`], with the test settings changed by `tweak` first.
pub async fn spawn_app_with_salesforce_and_settings(org: OrgSpec, tweak: &dyn Fn(&mut Settings)) -> TestApp {
    spawn_full(false, false, Some((org, false)), tweak).await
}

/// As [`spawn_app_with_salesforce`], with the Slack and Discord stand-ins too.
pub async fn spawn_app_with_salesforce_and_standins(org: OrgSpec) -> TestApp {
    spawn_full(false, true, Some((org, false)), &|_| {}).await
}

/// As [`spawn_app_with_standins`], with the test settings changed by `tweak` first.
pub async fn spawn_app_with_standins_and_settings(tweak: &dyn Fn(&mut Settings)) -> TestApp {
    spawn_full(false, true, None, tweak).await
}

/// As [`spawn_app_with_salesforce`], but with the Production and Sandbox
/// login hosts swapped (so choosing one org type lands on the other).
pub async fn spawn_app_with_swapped_salesforce_logins(org: OrgSpec) -> TestApp {
    spawn_full(false, false, Some((org, true)), &|_| {}).await
}

/// Starts the app without workers or stand-ins, with the test settings
/// changed by `tweak` first.
/// Starts the app with every background worker running, the Slack and
/// Discord stand-ins, and `tweak` applied to the settings.
pub async fn spawn_app_with_workers_and_standins(tweak: &dyn Fn(&mut Settings)) -> TestApp {
    spawn_full(true, true, None, tweak).await
}

pub async fn spawn_app_with_settings(tweak: &dyn Fn(&mut Settings)) -> TestApp {
    spawn_full(false, false, None, tweak).await
}

/// As [`spawn_app_with_standins`], with the test settings changed by `tweak` first.
pub async fn spawn_app_with_settings_and_standins(tweak: &dyn Fn(&mut Settings)) -> TestApp {
    spawn_full(false, true, None, tweak).await
}

/// As [`spawn_app_with_workers_and_standins`], on `database_url` (a
/// database the test brings, e.g. its own PostgreSQL server).
pub async fn spawn_app_with_workers_and_standins_on(database_url: String, tweak: &dyn Fn(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    spawn_full_on(dir, database_url, true, true, None, tweak).await
}

async fn spawn_full(
    worker: bool,
    with_standins: bool,
    org: Option<(OrgSpec, bool)>,
    tweak: &dyn Fn(&mut Settings),
) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let database_url = fresh_database(&dir).await;
    spawn_full_on(dir, database_url, worker, with_standins, org, tweak).await
}

async fn spawn_full_on(
    dir: tempfile::TempDir,
    database_url: String,
    worker: bool,
    with_standins: bool,
    org: Option<(OrgSpec, bool)>,
    tweak: &dyn Fn(&mut Settings),
) -> TestApp {
    let mut settings = test_settings(database_url.clone(), worker);
    let salesforce = match org {
        Some((org, swapped)) => {
            let sf = SalesforceStandin::start("127.0.0.1:0", "127.0.0.1:0", org, vec![oauth_app("salesforce")])
                .await
                .expect("salesforce stand-in");
            let (production, sandbox) = if swapped {
                (sf.sandbox_login_url(), sf.login_url())
            } else {
                (sf.login_url(), sf.sandbox_login_url())
            };
            settings.salesforce.login_url = Some(production);
            settings.salesforce.sandbox_login_url = Some(sandbox);
            settings.salesforce.client_id = Some(oauth_app("salesforce").client_id);
            settings.salesforce.client_secret = Some(SecretString::from(oauth_app("salesforce").client_secret));
            Some(sf)
        }
        None => None,
    };
    let (slack, discord) = if with_standins {
        let (s, d) = standins(&mut settings).await;
        (Some(s), Some(d))
    } else {
        (None, None)
    };
    tweak(&mut settings);
    let cipher = perly::cli::cipher(&settings, true).expect("cipher");
    let store = perly::server::open_store(&settings, cipher).await.expect("open store");
    let clock = Arc::new(TestClock::new(t0()));
    let ws = store.create_workspace("Test Co", t0()).await.expect("workspace");
    let (_, key) = store
        .create_api_key(ws.id, &perly_store::NewApiKey::full("test"), t0())
        .await
        .expect("key");
    let running = perly::server::start(&settings, store.clone(), clock.clone())
        .await
        .expect("start");
    TestApp {
        base: format!("http://{}", running.addr),
        client: reqwest::Client::new(),
        store,
        clock,
        ws: ws.id,
        key,
        database_url,
        slack,
        discord,
        salesforce,
        _running: running,
        _dir: dir,
    }
}

impl TestApp {
    /// The Salesforce stand-in (the test must have asked for it).
    pub fn sf(&self) -> &SalesforceStandin {
        self.salesforce
            .as_ref()
            .expect("started with spawn_app_with_salesforce")
    }

    /// Runs every due Salesforce sync to its end at the test clock's time.
    pub async fn sync(&self) -> Vec<perly_salesforce::sync::RunOutcome> {
        let syncer = perly_salesforce::sync::Syncer::new(
            self.store.clone(),
            self._running.state.salesforce.orgs.clone(),
            perly_salesforce::sync::SyncSettings {
                job_poll: std::time::Duration::from_millis(10),
                ..Default::default()
            },
        )
        .with_metrics(self._running.metrics.salesforce.clone());
        let clock = self.clock.clone();
        syncer.run_once(Arc::new(move || clock.now())).await.expect("sync")
    }

    /// Writes every due score push, Task and Chatter post at the test
    /// clock's time.
    pub async fn outbox(&self) -> perly_salesforce::outbox::OutboxStats {
        let outbox = perly_salesforce::outbox::Outbox::new(
            self.store.clone(),
            self._running.state.salesforce.orgs.clone(),
            perly_salesforce::outbox::OutboxSettings {
                public_url: self.base.clone(),
                ..Default::default()
            },
        )
        .with_metrics(self._running.metrics.salesforce.clone());
        let clock = self.clock.clone();
        outbox.run_once(Arc::new(move || clock.now())).await.expect("outbox")
    }

    /// Runs one SQL statement on the server's database behind its back, as
    /// a fault or an attacker with database access would (PostgreSQL `$n`
    /// placeholders are not used: pass literal SQL).
    pub async fn execute_sql(&self, sql: &str) -> u64 {
        let mut conn = connect_database(&self.database_url).await;
        sqlx::query(sql)
            .execute(&mut conn)
            .await
            .expect("run SQL")
            .rows_affected()
    }

    /// The SQLite file, when the test runs on SQLite.
    pub fn database_file(&self) -> Option<std::path::PathBuf> {
        let path = self._dir.path().join("perly.db");
        path.exists().then_some(path)
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn advance(&self, by: Duration) {
        let mut t = self.clock.at.lock().expect("clock lock");
        *t += by;
    }

    /// A second workspace with its own key.
    pub async fn other_workspace(&self, name: &str) -> (WorkspaceId, String) {
        let ws = self.store.create_workspace(name, self.now()).await.expect("workspace");
        let (_, key) = self
            .store
            .create_api_key(ws.id, &perly_store::NewApiKey::full("other"), self.now())
            .await
            .expect("key");
        (ws.id, key)
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, Some(&self.key.clone()), None)
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(&self.key.clone()), Some(body))
            .await
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PUT, path, Some(&self.key.clone()), Some(body))
            .await
    }

    /// Posts customers and asserts every row was taken.
    pub async fn customers(&self, rows: Value) {
        let (status, body) = self.post("/api/v1/customers", json!({ "customers": rows })).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["rejected"], 0, "{body}");
    }

    /// Posts events and returns the response body (asserting 200).
    pub async fn events(&self, rows: Vec<Value>) -> Value {
        let (status, body) = self.post("/api/v1/events", json!({ "events": rows })).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Delivers everything due at the test clock's time.
    pub async fn deliver(&self) -> DeliveryStats {
        Deliverer::new(
            self.store.clone(),
            self._running.state.public_url.clone(),
            DeliverySettings {
                network: perly_net::Policy::LOCAL,
                ..DeliverySettings::default()
            },
        )
        .expect("deliverer")
        .with_metrics(self._running.metrics.delivery.clone())
        .run_once(self.now())
        .await
        .expect("deliver")
    }

    pub fn slack(&self) -> &SlackStandin {
        self.slack.as_ref().expect("started with stand-ins")
    }

    pub fn discord(&self) -> &DiscordStandin {
        self.discord.as_ref().expect("started with stand-ins")
    }

    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PATCH, path, Some(&self.key.clone()), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::DELETE, path, Some(&self.key.clone()), None)
            .await
    }

    /// Adds a channel from a webhook URL; returns its id.
    pub async fn channel(&self, platform: &str, name: &str, webhook_url: &str, rules: Value) -> String {
        let (status, body) = self
            .post(
                "/api/v1/channels",
                json!({"platform": platform, "name": name, "webhook_url": webhook_url, "rules": rules}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().expect("channel id").to_owned()
    }

    /// One rescoring pass at the test clock's time.
    pub async fn rescore(&self) -> PassStats {
        self.rescore_in_batches(500).await
    }

    /// Scores customers a test claimed itself (default scorecard) and
    /// records the results at `at`, as a rescoring pass does after its claim.
    pub async fn score_and_record(&self, claimed: Vec<perly_store::RescoreInput>, at: DateTime<Utc>) {
        let card = perly_domain::scorecard::Scorecard::default();
        let results: Vec<_> = claimed
            .into_iter()
            .map(|c| perly::rescore::rescore(c, &card, at))
            .collect();
        self.store.record_scores(self.ws, &results, at).await.expect("record");
    }

    /// One rescoring pass at the test clock's time, `batch` customers at a time.
    pub async fn rescore_in_batches(&self, batch: usize) -> PassStats {
        Rescorer::new(self.store.clone(), batch)
            .with_metrics(self._running.metrics.rescore.clone())
            .run_once(self.now())
            .await
            .expect("rescore")
    }

    /// Marks every customer of the workspace for rescoring, as the stale
    /// sweep does, and rescores: returns how many were scored.
    pub async fn rescore_everyone(&self) -> usize {
        let now = self.now();
        self.store
            .mark_stale(self.ws, now + chrono::Duration::seconds(1), now)
            .await
            .expect("mark stale");
        self.rescore().await.scored
    }

    pub async fn customer(&self, external_id: &str) -> Value {
        let (status, body) = self.get(&format!("/api/v1/customers/{external_id}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Alerts of one kind for one customer.
    pub async fn alerts(&self, customer: &str, kind: &str) -> Vec<Value> {
        let (status, body) = self
            .get(&format!("/api/v1/alerts?customer_id={customer}&kind={kind}&limit=500"))
            .await;
        assert_eq!(status, 200, "{body}");
        body["items"].as_array().cloned().unwrap_or_default()
    }
}

/// An event row.
pub fn event(id: &str, customer: &str, at: DateTime<Utc>, kind: Value) -> Value {
    let mut row = json!({"id": id, "customer_id": customer, "occurred_at": at.to_rfc3339()});
    if let (Some(r), Some(k)) = (row.as_object_mut(), kind.as_object()) {
        for (key, v) in k {
            r.insert(key.clone(), v.clone());
        }
    }
    row
}

/// `users` users active every day from `from_days_ago` to `to_days_ago` (inclusive).
pub fn activity(customer: &str, users: usize, from_days_ago: i64, to_days_ago: i64, now: DateTime<Utc>) -> Vec<Value> {
    let mut out = Vec::new();
    for d in (to_days_ago..=from_days_ago).rev() {
        for u in 0..users {
            let at = now - Duration::days(d);
            out.push(event(
                &format!("{customer}-act-{}-{u}", at.date_naive()),
                customer,
                at,
                json!({"type": "user_active", "user_id": format!("u{u}")}),
            ));
        }
    }
    out
}

/// Sends events in batches of 1,000.
pub async fn send_all(app: &TestApp, rows: Vec<Value>) {
    for chunk in rows.chunks(1000) {
        let body = app.events(chunk.to_vec()).await;
        assert_eq!(body["rejected"], 0, "{body}");
    }
}

/// Only the named measures count (their default weights and thresholds),
/// so data for just those covers the whole scorecard.
pub async fn scorecard_of(app: &TestApp, kept: &[&str]) {
    let (_, mut card) = app.get("/api/v1/scorecard").await;
    let measures = card["measures"].as_object_mut().expect("measures");
    for (name, m) in measures.iter_mut() {
        if !kept.contains(&name.as_str()) {
            m["weight"] = json!(0.0);
        }
    }
    let (status, body) = app.put("/api/v1/scorecard", card).await;
    assert_eq!(status, 200, "{body}");
}

/// Only seat utilisation counts (0 → 100 linearly), so a test sets scores exactly.
pub async fn seat_only_scorecard(app: &TestApp) {
    let (_, mut card) = app.get("/api/v1/scorecard").await;
    let measures = card["measures"].as_object_mut().expect("measures");
    for (name, m) in measures.iter_mut() {
        m["weight"] = json!(if name == "seat_utilisation" { 1.0 } else { 0.0 });
    }
    card["measures"]["seat_utilisation"]["bad"] = json!(0.0);
    card["measures"]["seat_utilisation"]["good"] = json!(1.0);
    let (status, body) = app.put("/api/v1/scorecard", card).await;
    assert_eq!(status, 200, "{body}");
}

/// Sets `customer`'s score (100 seats) at the test clock's time and rescores.
pub async fn set_score(app: &TestApp, customer: &str, score: u32) {
    let now = app.now();
    app.events(vec![event(
        &format!("{customer}-seats-{}-{score}", now.timestamp_millis()),
        customer,
        now,
        json!({"type": "seats_changed", "seats_used": score}),
    )])
    .await;
    app.rescore().await;
}

pub async fn billing_retry_failed(app: &TestApp, customer: &str, attempt: u32) {
    let now = app.now();
    app.events(vec![event(
        &format!("{customer}-retry-{attempt}-{}", now.timestamp_millis()),
        customer,
        now,
        json!({"type": "billing_retry_failed", "amount": 420.0, "attempt": attempt}),
    )])
    .await;
    app.rescore().await;
}

/// A free local port (for processes that must be told theirs).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A real `perly serve` process (for the crash tests), killed when dropped
/// so a failing test leaves no server behind.
pub struct ServeProcess {
    child: std::process::Child,
    pub base: String,
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServeProcess {
    /// SIGKILL: no shutdown, no draining.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

/// Starts `perly serve` on `database_url` and `port` with these extra
/// environment variables (secret key as in [`test_settings`]), and waits
/// until `/healthz` answers.
pub async fn spawn_serve(database_url: &str, port: u16, env: &[(&str, String)]) -> ServeProcess {
    let base = format!("http://127.0.0.1:{port}");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_perly"))
        .arg("serve")
        .env("PERLY_DATABASE_URL", database_url)
        .env("PERLY_LISTEN", format!("127.0.0.1:{port}"))
        .env("PERLY_PUBLIC_URL", &base)
        .env("PERLY_SECRET_KEY", TEST_SECRET_KEY)
        .env("PERLY_SCORING__POLL_INTERVAL_MS", "50")
        .env("PERLY_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("start perly serve");
    let server = ServeProcess { child, base };
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{}/healthz", server.base)).send().await {
            if r.status().is_success() {
                return server;
            }
        }
        assert!(std::time::Instant::now() < deadline, "perly serve did not come up");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Starts the app on a database that already holds a workspace (migrating
/// it first, as `perly serve` does), with that workspace and one of its API
/// keys, the clock at `at`, no background workers; with `with_standins`,
/// the Slack and Discord stand-ins too.
pub async fn spawn_app_on(
    dir: tempfile::TempDir,
    database_url: String,
    ws: WorkspaceId,
    key: &str,
    at: DateTime<Utc>,
    with_standins: bool,
) -> TestApp {
    let mut settings = test_settings(database_url.clone(), false);
    let (slack, discord) = if with_standins {
        let (s, d) = standins(&mut settings).await;
        (Some(s), Some(d))
    } else {
        (None, None)
    };
    let cipher = perly::cli::cipher(&settings, true).expect("cipher");
    let store = perly::server::open_store(&settings, cipher)
        .await
        .expect("open store (migrating it)");
    let clock = Arc::new(TestClock::new(at));
    let running = perly::server::start(&settings, store.clone(), clock.clone())
        .await
        .expect("start");
    TestApp {
        base: format!("http://{}", running.addr),
        client: reqwest::Client::new(),
        store,
        clock,
        ws,
        key: key.to_owned(),
        database_url,
        slack,
        discord,
        salesforce: None,
        _running: running,
        _dir: dir,
    }
}
