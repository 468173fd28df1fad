//! A database outage under load (issue 16, item 8). The test starts its own
//! PostgreSQL server (never the shared one: it stops it), runs the real
//! server with every worker on it, and keeps clients posting event batches
//! while it stops the server and starts it again. During the outage every
//! request answers 503 `database_unavailable` with `Retry-After` within
//! ~3 s (none hangs) and `/readyz` is 503; afterwards requests succeed
//! again, the workers resume without a restart (an event sent then is
//! scored and its alert reaches Slack) and no accepted event is lost.
//!
//! A second test does the same for a SQLite file another process keeps
//! locked.
//!
//! The first runs whatever `PERLY_TEST_DATABASE_URL` says, and fails (does not
//! skip) when the PostgreSQL binaries are missing: set `PERLY_TEST_PG_BIN`
//! to their folder if they are not in `/usr/lib/postgresql/15/bin`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

const DEFAULT_PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A private PostgreSQL server in a temp dir, on a free port; stopped
/// (immediately) when dropped.
struct PrivatePostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// Run the binaries as the `postgres` OS user (they refuse root).
    as_postgres: bool,
}

impl PrivatePostgres {
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self
            .command(tool)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn init() -> Self {
        let bin = PathBuf::from(std::env::var("PERLY_TEST_PG_BIN").unwrap_or_else(|_| DEFAULT_PG_BIN.to_owned()));
        for tool in ["initdb", "pg_ctl", "postgres"] {
            assert!(
                bin.join(tool).is_file(),
                "this test starts its own PostgreSQL server and needs {}: install PostgreSQL 15's server \
                 binaries or set PERLY_TEST_PG_BIN to their folder",
                bin.join(tool).display()
            );
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let as_postgres = is_root();
        if as_postgres {
            let uid = id_of("-u");
            let gid = id_of("-g");
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the temp dir to postgres");
        }
        let pg = Self {
            bin,
            dir,
            port: free_port(),
            as_postgres,
        };
        let data = pg.data();
        pg.run(
            "initdb",
            &["-D", path(&data), "--auth=trust", "-U", "postgres", "--no-sync"],
        );
        pg
    }

    fn start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            path(self.dir.path())
        );
        let log = self.dir.path().join("log");
        self.run(
            "pg_ctl",
            &["-D", path(&self.data()), "-o", &opts, "-l", path(&log), "-w", "start"],
        );
    }

    fn stop(&self, mode: &str) {
        self.run("pg_ctl", &["-D", path(&self.data()), "-m", mode, "-w", "stop"]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-D", path(&self.data()), "-m", "immediate", "stop"])
            .output();
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

fn id_of(flag: &str) -> u32 {
    let out = Command::new("id").args([flag, "postgres"]).output().expect("id");
    assert!(
        out.status.success(),
        "running as root needs a `postgres` OS user to run PostgreSQL"
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a numeric id")
}

/// When a request was sent, relative to the outage.
const BEFORE: u8 = 0;
const DOWN: u8 = 1;
const AFTER: u8 = 2;

#[derive(Debug)]
struct Answer {
    phase: u8,
    took: Duration,
    status: Option<u16>,
    retry_after: Option<String>,
    code: Option<String>,
    accepted: Vec<String>,
    error: Option<String>,
}

async fn post_events(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    ids: &[String],
    now: chrono::DateTime<chrono::Utc>,
) -> Answer {
    let rows: Vec<Value> = ids
        .iter()
        .map(|id| event(id, "acme", now, json!({"type": "user_active", "user_id": "u1"})))
        .collect();
    let started = Instant::now();
    let sent = client
        .post(format!("{base}/api/v1/events"))
        .bearer_auth(key)
        .json(&json!({ "events": rows }))
        .send()
        .await;
    let mut answer = Answer {
        phase: 0,
        took: Duration::ZERO,
        status: None,
        retry_after: None,
        code: None,
        accepted: Vec::new(),
        error: None,
    };
    match sent {
        Ok(r) => {
            answer.status = Some(r.status().as_u16());
            answer.retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body: Value = r.json().await.unwrap_or(Value::Null);
            answer.code = body["error"]["code"].as_str().map(str::to_owned);
            if let Some(results) = body["results"].as_array() {
                answer.accepted = results
                    .iter()
                    .filter(|r| r["status"] == "accepted")
                    .filter_map(|r| r["id"].as_str().map(str::to_owned))
                    .collect();
            }
        }
        Err(e) => answer.error = Some(e.to_string()),
    }
    answer.took = started.elapsed();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_answers_503_quickly_and_everything_resumes_by_itself() {
    let pg = PrivatePostgres::init();
    pg.start();
    let app = spawn_app_with_workers_and_standins_on(pg.url(), &|_| {}).await;
    scorecard_of(&app, &["billing_health"]).await;
    let hook = app.slack().create_webhook("#billing");
    let rules = json!({"event_kinds": ["billing_retry_failed"], "min_risk": null, "min_score_delta": null, "quiet_hours": null});
    app.channel("slack", "#billing", &hook, rules).await;
    app.customers(json!([{"external_id": "acme", "name": "Acme Corp", "mrr": 420.0}]))
        .await;

    // Clients posting batches of 5 events, continuously.
    let phase = Arc::new(AtomicU8::new(BEFORE));
    let done = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(Vec::<Answer>::new()));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let mut load = Vec::new();
    for n in 0..3 {
        let (phase, done, answers, client) = (phase.clone(), done.clone(), answers.clone(), client.clone());
        let (base, key, now) = (app.base.clone(), app.key.clone(), app.now());
        load.push(tokio::spawn(async move {
            let mut batch = 0;
            while !done.load(Ordering::SeqCst) {
                batch += 1;
                let ids: Vec<String> = (0..5).map(|i| format!("load-{n}-{batch}-{i}")).collect();
                let at = phase.load(Ordering::SeqCst);
                let mut a = post_events(&client, &base, &key, &ids, now).await;
                // A request counts for the outage only if it started and ended in it.
                a.phase = if at == phase.load(Ordering::SeqCst) { at } else { BEFORE };
                answers.lock().expect("answers").push(a);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    pg.stop("fast");
    phase.store(DOWN, Ordering::SeqCst);
    let outage = Instant::now();
    // While the database is down, readiness says so, quickly.
    while outage.elapsed() < Duration::from_secs(5) {
        let started = Instant::now();
        let r = client
            .get(format!("{}/readyz", app.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("readyz during the outage got no answer: {e}"));
        assert_eq!(r.status(), 503, "readyz during the outage");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "readyz took {:?}",
            started.elapsed()
        );
        // A read of the API is 503 too.
        let started = Instant::now();
        let r = client
            .get(format!("{}/api/v1/customers", app.base))
            .bearer_auth(&app.key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("a read during the outage got no answer (it hung): {e}"));
        assert_eq!(r.status(), 503, "a read during the outage");
        assert!(r.headers().contains_key("retry-after"));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "a read took {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    phase.store(AFTER, Ordering::SeqCst);
    pg.start();
    let back = Instant::now();
    // Requests succeed again within a few seconds, without a restart.
    loop {
        let ok = answers
            .lock()
            .expect("answers")
            .iter()
            .any(|a| a.phase == AFTER && a.status == Some(200));
        if ok {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "no request succeeded within 10 s of the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered_in = back.elapsed();
    done.store(true, Ordering::SeqCst);
    for l in load {
        l.await.expect("load task");
    }
    let answers = std::mem::take(&mut *answers.lock().expect("answers"));

    // During the outage: every request 503 database_unavailable with Retry-After, within 3 s.
    let down: Vec<&Answer> = answers.iter().filter(|a| a.phase == DOWN).collect();
    assert!(down.len() >= 5, "too few requests during the outage: {}", down.len());
    for a in &down {
        assert_eq!(a.status, Some(503), "during the outage: {a:?}");
        assert!(a.retry_after.is_some(), "no Retry-After: {a:?}");
        assert_eq!(a.code.as_deref(), Some("database_unavailable"), "{a:?}");
        assert!(a.took < Duration::from_secs(3), "a request took {:?}: {a:?}", a.took);
    }
    // Around it: only 200 or 503, and nothing hangs.
    for a in &answers {
        assert!(matches!(a.status, Some(200 | 503)), "{a:?}");
        assert!(a.took < Duration::from_secs(5), "a request took {:?}: {a:?}", a.took);
    }
    assert!(answers.iter().any(|a| a.phase == BEFORE && a.status == Some(200)));

    // Workers resume: an event sent now is scored and its alert reaches Slack.
    let sent = Instant::now();
    app.events(vec![event(
        "acme-retry-1",
        "acme",
        app.now(),
        json!({"type": "billing_retry_failed", "amount": 420.0, "attempt": 1}),
    )])
    .await;
    loop {
        let delivered = app
            .slack()
            .messages()
            .iter()
            .any(|m| m.body.to_string().contains("Billing retry 1 failed"));
        if delivered {
            break;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(30),
            "the alert of an event sent after the outage was not delivered within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // No accepted event was lost.
    let mut conn = connect_database(&pg.url()).await;
    let stored: Vec<String> = sqlx::query_scalar("SELECT event_id FROM events")
        .fetch_all(&mut conn)
        .await
        .expect("stored events");
    let accepted: Vec<&String> = answers
        .iter()
        .filter(|a| a.status == Some(200))
        .flat_map(|a| &a.accepted)
        .collect();
    assert!(!accepted.is_empty());
    let lost: Vec<&&String> = accepted.iter().filter(|id| !stored.contains(id)).collect();
    assert!(lost.is_empty(), "accepted events lost: {lost:?}");
    eprintln!(
        "outage: {} requests during it, all 503; recovered in {recovered_in:?}; alert {:?} after the event",
        down.len(),
        sent.elapsed()
    );
}

/// SQLite's counterpart: another process (a `sqlite3` shell in a
/// transaction, say) holds the database file's write lock. Writes wait for it
/// up to the busy timeout, then answer 503 `database_unavailable` with
/// `Retry-After` instead of a bare 503 after 10 s; once the lock is gone,
/// writes succeed again. Runs on SQLite whatever the suite's backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_file_locked_by_another_process_answers_503_with_retry_after() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("perly.db");
    let app = spawn_app_with_workers_and_standins_on(format!("sqlite://{}", path.display()), &|_| {}).await;
    app.customers(json!([{"external_id": "acme", "name": "Acme Corp"}]))
        .await;

    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("a second connection");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .expect("take the write lock");

    let client = reqwest::Client::new();
    let ids = vec!["locked-1".to_owned()];
    let a = post_events(&client, &app.base, &app.key, &ids, app.now()).await;
    assert_eq!(a.status, Some(503), "{a:?}");
    assert_eq!(a.code.as_deref(), Some("database_unavailable"), "{a:?}");
    assert!(a.retry_after.is_some(), "no Retry-After: {a:?}");
    assert!(a.took < Duration::from_secs(6), "took {:?}", a.took);
    // Reads do not need the write lock.
    let (status, _) = app.get("/api/v1/customers").await;
    assert_eq!(status, 200);

    sqlx::query("ROLLBACK")
        .execute(&mut other)
        .await
        .expect("release the lock");
    let a = post_events(&client, &app.base, &app.key, &ids, app.now()).await;
    assert_eq!(a.status, Some(200), "{a:?}");
    assert_eq!(a.accepted, ids);
}
