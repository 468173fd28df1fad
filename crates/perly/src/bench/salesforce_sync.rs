//! `perly bench salesforce-sync`: one full initial sync of a generated org
//! (issue #6: per Account 2 Contacts, 1 Opportunity, 2 Tasks and 2 Events)
//! into a fresh database, through exactly what production runs.
//!
//! The stand-in runs in a child process (`perly standin salesforce`) so the
//! peak RSS and CPU time reported for Perly are Perly's alone; the child's
//! own figures are read from `/proc` and reported beside them. The
//! workspace connects the way an admin does: the server's connect step
//! builds the authorize URL, the stand-in's consent form is posted with the
//! admin's password, and the callback's code goes through the server's
//! finish step (code exchange, org and permission checks, the connection
//! and its encrypted refresh token saved by the store). Then the clock
//! starts and the real sync worker ([`Syncer::run_once`]) pulls every object
//! with Bulk API 2.0 over HTTP. A sampler notes when each object is done.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use anyhow::{bail, Context};
use chrono::Utc;
use perly_domain::salesforce::Environment;
use perly_salesforce::sync::{RunOutcome, Syncer};
use perly_store::{ObjectState, Role, Store};
use perly_web::SystemClock;
use tokio::io::AsyncBufReadExt;

use super::{bench_store, peak_rss_mb, reset_peak_rss, rss_mb};
use crate::standin::{SalesforceArgs, StandinInfo};

#[derive(Debug, Clone, clap::Args)]
pub struct SalesforceSyncArgs {
    /// Accounts in the generated org (7 more records per account).
    #[arg(long, default_value_t = 1_000_000)]
    pub accounts: u64,
    /// Run the stand-in inside this process (its memory and CPU then count
    /// as Perly's) instead of in a child process.
    #[arg(long)]
    pub standin_in_process: bool,
}

/// Where the stand-in runs: a child process (preferred) or this one.
enum Standin {
    Child(tokio::process::Child),
    InProcess(perly_standins::salesforce::SalesforceStandin),
}

impl Standin {
    async fn start(accounts: u64, in_process: bool) -> anyhow::Result<(Standin, StandinInfo)> {
        let args = SalesforceArgs {
            accounts,
            listen: "127.0.0.1:0".into(),
            sandbox_listen: "127.0.0.1:0".into(),
            client_id: "perly-bench".into(),
            client_secret: "perly-bench-secret".into(),
        };
        if in_process {
            let (standin, info) = crate::standin::start_salesforce(&args).await?;
            return Ok((Standin::InProcess(standin), info));
        }
        let exe = std::env::current_exe().context("cannot find the perly executable")?;
        let mut child = tokio::process::Command::new(exe)
            .args(["standin", "salesforce", "--accounts", &accounts.to_string()])
            .args(["--client-id", &args.client_id, "--client-secret", &args.client_secret])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start `perly standin salesforce`")?;
        let stdout = child.stdout.take().context("the stand-in's stdout")?;
        let mut line = String::new();
        tokio::io::BufReader::new(stdout).read_line(&mut line).await?;
        let info: StandinInfo = serde_json::from_str(line.trim())
            .with_context(|| format!("the stand-in did not describe itself: {line:?}"))?;
        Ok((Standin::Child(child), info))
    }

    /// The child's (peak RSS in MB, CPU seconds so far); `None` in process.
    fn child_usage(&self) -> Option<(f64, f64)> {
        match self {
            Standin::Child(c) => c.id().map(|pid| (proc_peak_rss_mb(pid), proc_cpu_secs(pid))),
            Standin::InProcess(_) => None,
        }
    }

    async fn stop(self) {
        match self {
            Standin::Child(mut c) => {
                let _ = c.kill().await;
            }
            Standin::InProcess(s) => s.shutdown(),
        }
    }
}

/// VmHWM of another process, in MB (0 when unreadable).
fn proc_peak_rss_mb(pid: u32) -> f64 {
    super::status_mb(&pid.to_string(), "VmHWM:")
}

/// User + system CPU time of a process (`/proc/PID/stat`, in USER_HZ =
/// 100 ticks per second on Linux), in seconds.
fn proc_cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces: fields are counted after its ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ')'.
    (tick(11) + tick(12)) / 100.0
}

pub async fn run(url: Option<String>, dir: &tempfile::TempDir, a: SalesforceSyncArgs) -> anyhow::Result<()> {
    let (standin, info) = Standin::start(a.accounts, a.standin_in_process).await?;
    let (mut settings, store) = bench_store(url, dir).await?;
    settings.salesforce.login_url = Some(info.login_url.clone());
    settings.salesforce.sandbox_login_url = Some(info.sandbox_login_url.clone());
    settings.salesforce.client_id = Some(info.client_id.clone());
    settings.salesforce.client_secret = Some(secrecy::SecretString::from(info.client_secret.clone()));
    // Only the sync runs, and only when this bench says so.
    settings.scoring.worker = false;
    settings.delivery.worker = false;
    settings.sync.worker = false;
    println!(
        "backend: {}; org of {} accounts (stand-in {})",
        store.backend(),
        a.accounts,
        if a.standin_in_process {
            "in this process"
        } else {
            "in a child process"
        }
    );
    let running = crate::server::start(&settings, store.clone(), Arc::new(SystemClock)).await?;
    let ws = store.create_workspace("Bench", Utc::now()).await?;
    connect(&running.state, ws.id, &info).await?;

    let syncer = Syncer::new(
        store.clone(),
        running.state.salesforce.orgs.clone(),
        settings.sync.worker_settings(),
    );
    let rss_before = rss_mb();
    reset_peak_rss();
    let sampler = tokio::spawn(sample(store.clone(), ws.id));
    let cpu_before = (proc_cpu_secs(std::process::id()), standin.child_usage());
    let started = Instant::now();
    let outcomes = syncer.run_once(Arc::new(Utc::now)).await?;
    let secs = started.elapsed().as_secs_f64();
    sampler.abort();
    let perly_cpu = proc_cpu_secs(std::process::id()) - cpu_before.0;
    let child = standin.child_usage();
    let rows = match outcomes.as_slice() {
        [RunOutcome::Succeeded { rows }] => *rows,
        other => bail!("the sync did not succeed: {other:?}"),
    };
    let sync = store
        .salesforce_syncs(ws.id, 1)
        .await?
        .into_iter()
        .next()
        .context("the sync run is recorded")?;
    println!("{:<24} {:>10}", "object", "rows");
    for o in &sync.objects {
        println!("{:<24} {:>10}", o.object, o.rows);
    }
    let issue_rows: u64 = sync
        .objects
        .iter()
        .filter(|o| ["Account", "Contact", "Opportunity", "Task", "Event"].contains(&o.object.as_str()))
        .map(|o| o.rows)
        .sum();
    println!(
        "initial sync:        {rows} records in {secs:.1} s ({:.0} records/s)",
        rows as f64 / secs
    );
    println!(
        "  of which Account, Contact, Opportunity, Task, Event: {issue_rows} ({:.0} records/s over the whole run)",
        issue_rows as f64 / secs
    );
    println!(
        "customers created:   {} (waiting for their first score)",
        store.pending_rescore(ws.id).await?
    );
    println!(
        "perly:               peak RSS {:.0} MB during the sync (RSS {rss_before:.0} MB when it started), CPU {perly_cpu:.1} s",
        peak_rss_mb()
    );
    if let (Some((_, before)), Some((rss, after))) = (cpu_before.1, child) {
        println!(
            "stand-in (child):    peak RSS {rss:.0} MB, CPU {:.1} s during the sync",
            after - before
        );
    }
    running.stop().await;
    standin.stop().await;
    Ok(())
}

/// Connects the workspace as an admin would: Perly's connect step, the
/// stand-in's consent form (posted with the admin's password), Perly's
/// callback step. The connection is saved by the store.
async fn connect(
    state: &perly_web::AppState,
    ws: perly_domain::ids::WorkspaceId,
    info: &StandinInfo,
) -> anyhow::Result<()> {
    let now = Utc::now();
    let hash = perly_store::auth::hash_password("bench-password").map_err(|e| anyhow::anyhow!(e))?;
    let user = state
        .store
        .add_user(ws, "bench@example.com", &hash, Role::Admin, now)
        .await?;
    let authorize = perly_web::salesforce::start(state, ws, user.id, Environment::Production, None).await?;
    // The consent form carries the authorize parameters back, with the login.
    let mut form: Vec<(String, String)> = authorize.query_pairs().into_owned().collect();
    form.push(("username".into(), info.username.clone()));
    form.push(("password".into(), info.password.clone()));
    form.push(("decision".into(), "allow".into()));
    let mut action = authorize.clone();
    action.set_query(None);
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let answer = browser.post(action.as_str()).form(&form).send().await?;
    let location = answer
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .context("the consent form did not redirect back")?;
    let callback = reqwest::Url::parse(location).with_context(|| format!("callback {location}"))?;
    let query: HashMap<String, String> = callback.query_pairs().into_owned().collect();
    let (conn, _) = perly_web::salesforce::finish(state, ws, user.id, &query).await?;
    println!("connected: {} ({}) as {}", conn.org_name, conn.org_id, conn.username);
    Ok(())
}

/// Prints each object's time as it finishes, and the rows so far every ten
/// seconds, from the run's saved progress.
async fn sample(store: Arc<dyn Store>, ws: perly_domain::ids::WorkspaceId) {
    let started = Instant::now();
    let mut done: Vec<String> = Vec::new();
    let mut last_object_at = 0.0;
    let mut last_print = 0.0;
    loop {
        tokio::time::sleep(StdDuration::from_millis(500)).await;
        let Ok(Some(sync)) = store.salesforce_syncs(ws, 1).await.map(|s| s.into_iter().next()) else {
            continue;
        };
        let t = started.elapsed().as_secs_f64();
        for o in &sync.objects {
            if o.state == ObjectState::Done && !done.contains(&o.object) {
                println!(
                    "  {:<24} {:>9} rows done at {t:>6.1} s ({:.1} s, peak RSS {:.0} MB)",
                    o.object,
                    o.rows,
                    t - last_object_at,
                    peak_rss_mb()
                );
                done.push(o.object.clone());
                last_object_at = t;
            }
        }
        if t - last_print >= 10.0 {
            println!("  … {} rows at {t:.0} s", sync.rows);
            last_print = t;
        }
    }
}
