//! The commands a newcomer runs, end to end through the real binary:
//! `perly demo` (seeds, serves, answers with the key it prints, reuses its
//! folder), and smoke runs of `perly bench` and `perly standin`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `perly` whose stdout lines arrive on a channel; killed on drop.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_perly"))
            .args(args)
            .env_remove("PERLY_DATABASE_URL")
            .env("PERLY_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("perly starts");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first line (within `within`) that starts with `prefix`.
    fn line(&mut self, prefix: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        if let Some(l) = self.seen.iter().find(|l| l.trim_start().starts_with(prefix)) {
            return l.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.trim_start().starts_with(prefix) {
                        return l;
                    }
                }
                Err(_) => panic!("no line starting {prefix:?} within {within:?}; got {:#?}", self.seen),
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn after<'a>(line: &'a str, prefix: &str) -> &'a str {
    line.trim_start()
        .strip_prefix(prefix)
        .map(str::trim)
        .unwrap_or_else(|| panic!("{line:?} does not start with {prefix:?}"))
}

async fn customers(url: &str, key: &str) -> Vec<Value> {
    let body: Value = reqwest::Client::new()
        .get(format!("{url}/api/v1/customers?limit=100"))
        .bearer_auth(key)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    body["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn perly_demo_seeds_serves_with_the_printed_key_and_reuses_its_folder() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8 path");
    let args = [
        "demo",
        "--data-dir",
        data,
        "--listen",
        "127.0.0.1:0",
        "--customers",
        "12",
    ];
    let mut demo = Running::start(&args);
    let running = demo.line("Perly demo is running at", Duration::from_secs(240));
    let url = after(&running, "Perly demo is running at").to_owned();
    let key = after(&demo.line("API key:", Duration::from_secs(5)), "API key:").to_owned();
    let slack = after(&demo.line("Slack:", Duration::from_secs(5)), "Slack:")
        .split_whitespace()
        .next()
        .expect("slack url")
        .to_owned();
    let seeded = customers(&url, &key).await;
    assert_eq!(seeded.len(), 12, "{seeded:?}");
    assert!(seeded.iter().any(|c| c["risk_level"] == "critical"), "{seeded:?}");
    // The sign-in page, the portfolio behind it, and the Slack stand-in answer.
    let login = reqwest::get(format!("{url}/login")).await.expect("login");
    assert_eq!(login.status(), 200);
    let standin = reqwest::get(&slack).await.expect("slack stand-in");
    assert_eq!(standin.status(), 200);
    drop(demo);

    // Again on the same folder: the same customers, not seeded twice.
    let mut again = Running::start(&args);
    again.line("Reusing the demo workspace", Duration::from_secs(60));
    let url = after(
        &again.line("Perly demo is running at", Duration::from_secs(60)),
        "Perly demo is running at",
    )
    .to_owned();
    let key = after(&again.line("API key:", Duration::from_secs(5)), "API key:").to_owned();
    let reused = customers(&url, &key).await;
    assert_eq!(reused.len(), 12);
}

/// `perly bench` runs its benchmarks end to end at a small size.
#[test]
fn perly_bench_runs_at_a_small_size() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_perly"))
            .args(args)
            .env_remove("PERLY_DATABASE_URL")
            .env("PERLY_LOG", "warn")
            .output()
            .expect("perly bench");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let quality = run(&["bench", "score-quality", "--customers", "2000", "--json"]);
    let report: Value = serde_json::from_str(&quality).unwrap_or_else(|e| panic!("{e}: {quality}"));
    assert_eq!(report["customers"], 2000, "{report}");
    let auc = report["auc"][0]["auc"]
        .as_f64()
        .unwrap_or_else(|| panic!("auc in {report}"));
    assert!((0.6..=1.0).contains(&auc), "the score ranks churners first: {report}");
    let ingest = run(&[
        "bench",
        "ingest",
        "--customers",
        "50",
        "--events",
        "2000",
        "--batch",
        "500",
        "--concurrency",
        "2",
    ]);
    assert!(ingest.contains("accepted:            2000 events"), "{ingest}");
    let rescore = run(&["bench", "rescore", "--customers", "200"]);
    assert!(rescore.contains("200 customers with 90 days of history"), "{rescore}");
    // Every alert of the delivery bench reaches the stand-ins (it fails
    // when none does), 20 on one channel: more than the default storm
    // guard lets through, which the bench sets out of reach.
    let delivery = run(&[
        "bench",
        "delivery",
        "--workspaces",
        "1",
        "--rate",
        "10",
        "--seconds",
        "2",
        "--platform",
        "mixed",
    ]);
    assert!(
        delivery.contains("20 alert messages expected, 20 received"),
        "{delivery}"
    );
    // Every score change reaches its Account, and every alert its Task and
    // post (the Accounts are given data enough for a verdict first).
    let push = run(&[
        "bench",
        "salesforce-push",
        "--accounts",
        "50",
        "--rate",
        "10",
        "--seconds",
        "2",
    ]);
    for line in [
        "score → Account: 20 seen",
        "alert → Task:    20 seen",
        "alert → post:    20 seen",
    ] {
        assert!(push.contains(line), "{line}: {push}");
    }
}

/// `perly standin salesforce` serves a generated org and says where, as one
/// JSON line; its login URL answers as Salesforce's token endpoint would.
#[tokio::test]
async fn perly_standin_salesforce_serves_a_generated_org() {
    let mut standin = Running::start(&[
        "standin",
        "salesforce",
        "--accounts",
        "5",
        "--listen",
        "127.0.0.1:0",
        "--sandbox-listen",
        "127.0.0.1:0",
    ]);
    let line = standin.line("{", Duration::from_secs(60));
    let info: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let login = info["login_url"]
        .as_str()
        .unwrap_or_else(|| panic!("login_url in {info}"));
    // A wrong password at the token endpoint: Salesforce's error shape.
    let answer = reqwest::Client::new()
        .post(format!("{login}/services/oauth2/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "nobody@example.com"),
            ("password", "x"),
        ])
        .send()
        .await
        .expect("token endpoint");
    assert_eq!(answer.status(), 400);
    let body: Value = answer.json().await.expect("json");
    assert!(body["error"].is_string(), "{body}");
}
