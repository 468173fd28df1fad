//! `perly bench`: the figures in BENCHMARKS.md.
//!
//! - `ingest`: starts the real server (HTTP, store, rescoring worker) on a
//!   fresh database, pre-builds request bodies of 1,000 events, and sends them
//!   from concurrent clients. Reports events/s accepted, the time until
//!   rescoring has caught up, and the latency from "event accepted" to "new
//!   score visible through the API" measured by a probe during the load.
//! - `rescore`: loads N customers with 90 days of history (through the store's
//!   ingest path), then times one full rescore of all of them.
//!
//! - `delivery`: see [`delivery`]: event accepted → Slack/Discord message
//!   received, backlog and rate limits at many channels.
//! - `drain`: see [`drain`]: a backlog of thousands of pending alerts on one
//!   Slack and one Discord channel, drained at the platforms' limits.
//! - `salesforce-sync`: see [`salesforce_sync`]: one full initial sync of a
//!   generated org from the Salesforce stand-in, Bulk API 2.0 over HTTP.
//! - `score-quality`: see [`score_quality`]: how well the health score
//!   predicts churn in a simulated population (AUC, churn per risk level).
//!
//! All print the process's peak RSS (VmHWM).

mod delivery;
mod drain;
mod floor;
mod salesforce_push;
mod salesforce_sync;
mod score_quality;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use anyhow::{bail, Context};
use chrono::{Duration, Utc};
use perly_domain::customer::CustomerInput;
use perly_domain::event::{Event, EventKind};
use perly_store::{IngestMode, Store};
use perly_web::SystemClock;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::Settings;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchKind,
    /// Database to benchmark (default: a new SQLite file in a temp folder).
    /// For PostgreSQL give a URL to an empty database.
    #[arg(long, global = true)]
    pub database_url: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum BenchKind {
    /// Sustained ingest through POST /api/v1/events with rescoring keeping up;
    /// ends with the floor of the same run (the same rows inserted bare: on
    /// PostgreSQL into a table `perly_bench_floor_events` made beside
    /// `events` and dropped after).
    Ingest {
        #[arg(long, default_value_t = 100_000)]
        customers: usize,
        #[arg(long, default_value_t = 2_000_000)]
        events: usize,
        #[arg(long, default_value_t = 1_000)]
        batch: usize,
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Measure ingest alone (no rescoring worker).
        #[arg(long)]
        without_rescoring: bool,
        /// Send at this many events per second instead of as fast as possible.
        #[arg(long)]
        rate: Option<u64>,
    },
    /// One full rescore of customers with 90 days of history.
    Rescore {
        #[arg(long, default_value_t = 100_000)]
        customers: usize,
        /// Customers per rescoring slice (the server's `[scoring]
        /// batch_size`, 500 unless set).
        #[arg(long, default_value_t = 2_000)]
        batch: usize,
    },
    /// Event accepted → message received by the Slack/Discord stand-in.
    Delivery(delivery::DeliveryArgs),
    /// A backlog of pending alerts on one Slack and one Discord channel → drained (real clock).
    Drain(drain::DrainArgs),
    /// Score recalculated → value on the Account; alert → Task and Chatter post (Salesforce stand-in).
    SalesforcePush(salesforce_push::SalesforcePushArgs),
    /// One full initial Salesforce sync from the stand-in (Bulk API 2.0).
    SalesforceSync(salesforce_sync::SalesforceSyncArgs),
    /// How well the health score predicts churn, on a simulated population.
    ScoreQuality(score_quality::ScoreQualityArgs),
    /// Server time of the customers list and profile pages.
    Pages {
        #[arg(long, default_value_t = 100_000)]
        customers: usize,
        /// Requests per page kind.
        #[arg(long, default_value_t = 300)]
        requests: usize,
    },
}

fn peak_rss_mb() -> f64 {
    status_mb("self", "VmHWM:")
}

/// Resident memory now, in MB.
fn rss_mb() -> f64 {
    status_mb("self", "VmRSS:")
}

/// A kB line of `/proc/{process}/status` (`self` or a pid), as MB (0 when
/// unreadable).
fn status_mb(process: &str, line: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{process}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(line)).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Starts a new peak: VmHWM drops to the current RSS (Linux `clear_refs` 5),
/// so what the setup used (the admin's password hash, say) is not counted.
fn reset_peak_rss() {
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        eprintln!("cannot reset the peak RSS ({e}); figures include the setup");
    }
}

/// A tail quantile of milliseconds, as text: "47.0 ms", or a dash when the
/// samples are too few for it to be more than the maximum (fewer than ten
/// beyond it: a p99 needs 1,000 samples, a p90 100).
fn tail(sorted: &[f64], p: f64) -> String {
    let needed = (10.0 / (1.0 - p)).round() as usize;
    if sorted.len() < needed {
        format!("– (n={} < {needed}, see max)", sorted.len())
    } else {
        format!("{:.1} ms", percentile(sorted, p))
    }
}

/// How long a probe waits before it looks for its score again, `waited`
/// after it sent its event: a tenth of that, between 10 and 250 ms. The
/// latency is known to 10 %, and ten probes waiting seconds each poll a few
/// times a second instead of a hundred (polled every 10 ms, their reads
/// were a fifth of PostgreSQL's time in a flood).
fn probe_poll(waited: StdDuration) -> StdDuration {
    (waited / 10).clamp(StdDuration::from_millis(10), StdDuration::from_millis(250))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn bench_store(url: Option<String>, dir: &tempfile::TempDir) -> anyhow::Result<(Settings, Arc<dyn Store>)> {
    let mut settings = Settings {
        database_url: url.unwrap_or_else(|| format!("sqlite://{}/bench.db", dir.path().display())),
        listen: "127.0.0.1:0".into(),
        public_url: String::new(),
        secret_key: Some(perly_store::cipher::SecretKey::generate().to_hex()),
        log: "warn".into(),
        // The benchmarks measure throughput, not the ingest rate limit.
        ingest: crate::config::IngestSettings {
            rate_per_second: 0,
            workspace_rate_per_second: 0,
            ..Default::default()
        },
        ..Default::default()
    };
    // Every benchmark talks to stand-ins on this machine.
    settings.outbound.allow_private_networks = true;
    let cipher = crate::cli::cipher(&settings, true)?;
    let store = crate::server::open_store(&settings, cipher).await?;
    Ok((settings, store))
}

/// A scorecard where billing health is everything: one failed billing
/// retry is enough data for a verdict, and raises one alert (the delivery
/// benchmarks measure delivery, not the coverage rule).
fn billing_only_scorecard() -> perly_domain::scorecard::Scorecard {
    use perly_domain::scorecard::{MeasureKind, Scorecard};
    let mut card = Scorecard::default();
    for (kind, m) in card.measures.iter_mut() {
        if *kind != MeasureKind::BillingHealth {
            m.weight = 0.0;
        }
    }
    card
}

fn customers(n: usize, prefix: &str) -> Vec<CustomerInput> {
    (0..n)
        .map(|i| CustomerInput {
            external_id: format!("{prefix}{i}"),
            name: format!("Customer {i}"),
            plan: Some("pro".into()),
            mrr: Some(500.0),
            seats_purchased: Some(20),
            owner_email: None,
            parent_external_id: None,
        })
        .collect()
}

fn random_event(rng: &mut StdRng, id: String, customer: String, now: chrono::DateTime<Utc>) -> Event {
    let kind = match rng.gen_range(0..100) {
        0..=59 => EventKind::UserActive {
            user_id: format!("u{}", rng.gen_range(0..20)),
        },
        60..=89 => EventKind::FeatureUsed {
            feature: format!("f{}", rng.gen_range(0..8)),
            user_id: Some(format!("u{}", rng.gen_range(0..20))),
        },
        90..=93 => EventKind::SeatsChanged {
            seats_used: rng.gen_range(5..20),
            seats_purchased: None,
        },
        94..=95 => EventKind::TicketOpened {
            ticket_id: format!("t{}", rng.gen_range(0..50)),
            priority: perly_domain::event::TicketPriority::Normal,
        },
        96 => EventKind::TicketClosed {
            ticket_id: format!("t{}", rng.gen_range(0..50)),
        },
        97 => EventKind::PaymentSucceeded { amount: 500.0 },
        98 => EventKind::NpsResponse {
            score: rng.gen_range(0..=10),
        },
        _ => EventKind::UsageMeasured {
            metric: "api_calls".into(),
            value: rng.gen_range(0.0..1000.0),
            limit: Some(1000.0),
        },
    };
    Event {
        id,
        customer_id: customer,
        occurred_at: now - Duration::minutes(rng.gen_range(0..43_200)),
        kind,
    }
}

pub async fn run(settings: Settings, args: BenchArgs) -> anyhow::Result<()> {
    crate::telemetry::init("warn", settings.log_format);
    let dir = tempfile::tempdir()?;
    match args.what {
        BenchKind::Ingest {
            customers: n,
            events,
            batch,
            concurrency,
            without_rescoring,
            rate,
        } => {
            let load = Load {
                customers: n,
                total: events,
                batch,
                concurrency,
                rescoring: !without_rescoring,
                rate,
            };
            ingest(args.database_url, &dir, load).await
        }
        BenchKind::Rescore { customers: n, batch } => rescore(args.database_url, &dir, n, batch).await,
        BenchKind::Pages { customers: n, requests } => pages(args.database_url, &dir, n, requests).await,
        BenchKind::Delivery(a) => delivery::run(args.database_url, &dir, a).await,
        BenchKind::Drain(a) => drain::run(args.database_url, &dir, a).await,
        BenchKind::SalesforcePush(a) => salesforce_push::run(args.database_url, &dir, a).await,
        BenchKind::SalesforceSync(a) => salesforce_sync::run(args.database_url, &dir, a).await,
        BenchKind::ScoreQuality(a) => score_quality::run(a),
    }
}

/// The shape of an ingest run.
struct Load {
    customers: usize,
    total: usize,
    batch: usize,
    concurrency: usize,
    rescoring: bool,
    rate: Option<u64>,
}

async fn ingest(url: Option<String>, dir: &tempfile::TempDir, load: Load) -> anyhow::Result<()> {
    let Load {
        customers: n,
        total,
        batch,
        concurrency,
        rescoring,
        rate,
    } = load;
    let batch = batch.max(1);
    let (mut settings, store) = bench_store(url.clone(), dir).await?;
    settings.scoring.worker = rescoring;
    settings.scoring.poll_interval_ms = 50;
    settings.scoring.batch_size = 2_000;
    let pace = rate.map_or("as fast as possible".to_owned(), |r| format!("at {r} events/s"));
    println!(
        "backend: {}; {n} customers, {total} events in batches of {batch}, {concurrency} clients, {pace}",
        store.backend()
    );
    let ws = store.create_workspace("Bench", Utc::now()).await?;
    let (_, key) = store
        .create_api_key(ws.id, &perly_store::NewApiKey::full("bench"), Utc::now())
        .await?;
    for chunk in customers(n, "c").chunks(1000) {
        store.upsert_customers(ws.id, chunk, Utc::now()).await?;
    }
    const PROBES: usize = 200;
    store
        .upsert_customers(ws.id, &customers(PROBES, "probe"), Utc::now())
        .await?;
    let running = crate::server::start(&settings, store.clone(), Arc::new(SystemClock)).await?;
    let base = format!("http://{}", running.addr);

    // Request bodies are built before the clock starts, one at a time, into
    // a file: the load generator reads each from the OS's file cache as it
    // sends it, so the peak RSS is the server's and the bodies in flight.
    let now = Utc::now();
    let bodies = Arc::new(Bodies::write(dir.path(), load_batches(n, total, batch, now))?);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency * 2)
        .build()?;

    // Probe: an event for a probe customer, then poll until its new score
    // is visible (every `probe_poll`).
    // PROBERS concurrent probes, each on its own probe customers, so a run
    // of half a minute gives the 1,000 samples a p99 needs.
    const PROBERS: usize = 10;
    let probes: Vec<_> = (0..PROBERS)
        .map(|p| {
            let (client, base, key, done) = (client.clone(), base.clone(), key.clone(), done.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut k = p;
                while rescoring && !done.load(Ordering::Relaxed) {
                    let customer = format!("probe{}", k % PROBES);
                    let sent_at = Utc::now();
                    let body = serde_json::json!({"events": [{"id": format!("probe-{k}"), "customer_id": customer,
                    "type": "nps_response", "score": k % 11, "occurred_at": sent_at.to_rfc3339()}]});
                    let started = Instant::now();
                    let ok = client
                        .post(format!("{base}/api/v1/events"))
                        .bearer_auth(&key)
                        .json(&body)
                        .send()
                        .await;
                    if ok.is_err() {
                        break;
                    }
                    loop {
                        let resp = client
                            .get(format!("{base}/api/v1/customers/{customer}"))
                            .bearer_auth(&key)
                            .send()
                            .await;
                        let scored = match resp {
                            Ok(r) => r.json::<serde_json::Value>().await.ok().and_then(|v| {
                                v["scored_at"]
                                    .as_str()
                                    .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                            }),
                            Err(_) => None,
                        };
                        if scored.is_some_and(|t| t >= sent_at) {
                            latencies.push(started.elapsed().as_secs_f64() * 1000.0);
                            break;
                        }
                        if started.elapsed() > StdDuration::from_secs(30) {
                            latencies.push(30_000.0);
                            break;
                        }
                        tokio::time::sleep(probe_poll(started.elapsed())).await;
                    }
                    k += PROBERS;
                    tokio::time::sleep(StdDuration::from_millis(50)).await;
                }
                latencies
            })
        })
        .collect();

    // The peak from here on: the setup's (building the bodies, the admin's
    // password hash) is not the server's.
    reset_peak_rss();
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..concurrency {
        let (client, base, key, bodies, next) =
            (client.clone(), base.clone(), key.clone(), bodies.clone(), next.clone());
        clients.push(tokio::spawn(async move {
            let mut accepted = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.read(i)? else { break };
                if let Some(r) = rate {
                    // Batch i is due i·batch/rate seconds after the start.
                    let due = started + StdDuration::from_secs_f64(i as f64 * batch as f64 / r.max(1) as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let resp = client
                    .post(format!("{base}/api/v1/events"))
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                if !resp.status().is_success() {
                    bail!("batch {i} answered {}", resp.status());
                }
                let v: serde_json::Value = resp.json().await?;
                accepted += v["accepted"].as_u64().unwrap_or(0);
            }
            Ok(accepted)
        }));
    }
    let mut accepted = 0;
    for c in clients {
        accepted += c.await.context("client task")??;
    }
    let ingest_secs = started.elapsed().as_secs_f64();
    // Every 200 ms, whether any customer is still marked (a count of the
    // marks polled every 20 ms took a core; every 200 ms, 40 % of one on
    // PostgreSQL).
    while rescoring && !store.rescore_caught_up(ws.id).await? {
        tokio::time::sleep(StdDuration::from_millis(200)).await;
    }
    let caught_up = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for probe in probes {
        lat.extend(probe.await.context("probe task")?);
    }
    lat.sort_by(f64::total_cmp);
    let rescored = running.metrics.rescore.scored.get();
    running.stop().await;
    println!("accepted:            {accepted} events");
    println!(
        "ingest:              {:.0} events/s ({ingest_secs:.1} s)",
        accepted as f64 / ingest_secs
    );
    println!(
        "rescoring caught up: {caught_up:.1} s after start ({:.0} events/s end to end)",
        accepted as f64 / caught_up
    );
    if rescoring {
        println!(
            "rescores:            {rescored} ({:.2} per customer of the load)",
            rescored as f64 / n.max(1) as f64
        );
    }
    println!(
        "accepted → score visible: n={} p50={:.0} ms p99={} max={:.0} ms",
        lat.len(),
        percentile(&lat, 0.5),
        tail(&lat, 0.99),
        lat.last().copied().unwrap_or(0.0)
    );
    println!(
        "peak RSS from the start of the load: {:.0} MB (server, probes and the {concurrency} bodies in flight; \
         the {:.0} MB of bodies are read from a file)",
        peak_rss_mb(),
        bodies.size as f64 / 1e6
    );
    drop(bodies);
    // The same rows again (same seed), built after the peak was read.
    let rows: Vec<Vec<Event>> = load_batches(n, total, batch, now).collect();
    let (floor, how) = match &url {
        Some(url) if store.backend() == "postgres" => (
            floor::postgres_insert(url, &rows, now).await?,
            "a copy of the events table, one connection, 1 INSERT … UNNEST and transaction per batch",
        ),
        _ => (
            floor::sqlite_insert(dir.path(), &rows, now).await?,
            "the same schema, bare rusqlite, 1 transaction per batch",
        ),
    };
    println!(
        "floor, same run:     {floor:.0} events/s (the same rows into {how}); Perly/floor {:.2}, floor/Perly {:.2}",
        accepted as f64 / ingest_secs / floor,
        floor / (accepted as f64 / ingest_secs)
    );
    Ok(())
}

/// The events of an ingest run, in batches, made as they are taken:
/// customers `c0…c{n-1}` drawn at random with a fixed seed (the same rows
/// for the floor).
fn load_batches(n: usize, total: usize, batch: usize, now: chrono::DateTime<Utc>) -> impl Iterator<Item = Vec<Event>> {
    let mut rng = StdRng::seed_from_u64(7);
    (0..total.div_ceil(batch)).map(move |b| {
        (0..batch.min(total - b * batch))
            .map(|i| {
                let customer = format!("c{}", rng.gen_range(0..n));
                random_event(&mut rng, format!("b{b}-{i}"), customer, now)
            })
            .collect()
    })
}

/// The request bodies of an ingest run, in a file of their own: held in
/// memory they took 66 MB of the process's peak (500,000 events), which is
/// the load generator's, not the server's.
struct Bodies {
    file: std::fs::File,
    /// Each body's offset and length in the file.
    at: Vec<(u64, usize)>,
    /// The bytes of all the bodies.
    size: u64,
}

impl Bodies {
    /// Writes one `{"events": […]}` body per batch to a file in `dir`.
    fn write(dir: &std::path::Path, batches: impl Iterator<Item = Vec<Event>>) -> anyhow::Result<Self> {
        use std::io::Write;
        let path = dir.join("bodies.json");
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        let (mut at, mut size) = (Vec::new(), 0u64);
        for events in batches {
            let body = serde_json::to_vec(&serde_json::json!({ "events": events }))?;
            out.write_all(&body)?;
            at.push((size, body.len()));
            size += body.len() as u64;
        }
        out.flush()?;
        Ok(Self {
            file: std::fs::File::open(&path)?,
            at,
            size,
        })
    }

    /// Body `i`, or `None` past the last.
    fn read(&self, i: usize) -> anyhow::Result<Option<Vec<u8>>> {
        use std::os::unix::fs::FileExt;
        let Some(&(offset, len)) = self.at.get(i) else {
            return Ok(None);
        };
        let mut body = vec![0; len];
        self.file.read_exact_at(&mut body, offset)?;
        Ok(Some(body))
    }
}

async fn rescore(url: Option<String>, dir: &tempfile::TempDir, n: usize, batch: usize) -> anyhow::Result<()> {
    let (_, store) = bench_store(url, dir).await?;
    println!(
        "backend: {}; {n} customers with 90 days of history, {batch} a slice",
        store.backend()
    );
    let ws = store.create_workspace("Bench", Utc::now()).await?;
    let now = Utc::now();
    let load = Instant::now();
    let mut rng = StdRng::seed_from_u64(11);
    let mut events = 0usize;
    for (chunk_no, chunk) in customers(n, "c").chunks(1000).enumerate() {
        store.upsert_customers(ws.id, chunk, now).await?;
        // Per customer: 4 users active on about half the days, a feature a
        // day, weekly seat counts, monthly payments, a ticket, an NPS answer.
        let mut batch = Vec::new();
        for c in chunk {
            for d in 0..90i64 {
                let day = now - Duration::days(89 - d) - Duration::hours(2);
                let id = |k: &str| format!("{}-{d}-{k}", c.external_id);
                for u in 0..4 {
                    if rng.gen_bool(0.5) {
                        batch.push(Event {
                            id: id(&format!("u{u}")),
                            customer_id: c.external_id.clone(),
                            occurred_at: day,
                            kind: EventKind::UserActive {
                                user_id: format!("u{u}"),
                            },
                        });
                    }
                }
                batch.push(Event {
                    id: id("f"),
                    customer_id: c.external_id.clone(),
                    occurred_at: day,
                    kind: EventKind::FeatureUsed {
                        feature: format!("f{}", rng.gen_range(0..6)),
                        user_id: None,
                    },
                });
                if d % 7 == 0 {
                    batch.push(Event {
                        id: id("s"),
                        customer_id: c.external_id.clone(),
                        occurred_at: day,
                        kind: EventKind::SeatsChanged {
                            seats_used: rng.gen_range(8..20),
                            seats_purchased: None,
                        },
                    });
                }
                if d % 30 == 0 {
                    batch.push(Event {
                        id: id("p"),
                        customer_id: c.external_id.clone(),
                        occurred_at: day,
                        kind: EventKind::PaymentSucceeded { amount: 500.0 },
                    });
                }
                if d == 40 {
                    batch.push(Event {
                        id: id("n"),
                        customer_id: c.external_id.clone(),
                        occurred_at: day,
                        kind: EventKind::NpsResponse {
                            score: rng.gen_range(0..=10),
                        },
                    });
                    batch.push(Event {
                        id: id("t"),
                        customer_id: c.external_id.clone(),
                        occurred_at: day,
                        kind: EventKind::TicketOpened {
                            ticket_id: "t1".into(),
                            priority: perly_domain::event::TicketPriority::High,
                        },
                    });
                }
            }
        }
        events += batch.len();
        for b in batch.chunks(5000) {
            store.ingest_events(ws.id, b, IngestMode::Live, now).await?;
        }
        if chunk_no % 10 == 9 {
            println!(
                "  loaded {} customers, {events} events ({:.0} s)",
                (chunk_no + 1) * 1000,
                load.elapsed().as_secs_f64()
            );
        }
    }
    println!("loaded {events} events in {:.1} s", load.elapsed().as_secs_f64());
    let rescorer = crate::rescore::Rescorer::new(store.clone(), batch);
    // A first pass scores everything once (so alert state exists), then the timed full rescore.
    let first = Instant::now();
    let stats = rescorer.run_once(now).await?;
    println!(
        "first pass (folds every event): {} customers in {:.2} s, peak RSS so far {:.0} MB",
        stats.scored,
        first.elapsed().as_secs_f64(),
        peak_rss_mb()
    );
    store
        .set_scorecard(ws.id, &perly_domain::scorecard::Scorecard::default(), now)
        .await?;
    let started = Instant::now();
    let stats = rescorer.run_once(now + Duration::hours(1)).await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "full rescore: {} customers in {secs:.2} s ({:.0} customers/s), {} alerts",
        stats.scored,
        stats.scored as f64 / secs,
        stats.alerts
    );
    println!("peak RSS: {:.0} MB", peak_rss_mb());
    Ok(())
}

async fn pages(url: Option<String>, dir: &tempfile::TempDir, n: usize, requests: usize) -> anyhow::Result<()> {
    let (mut settings, store) = bench_store(url, dir).await?;
    settings.scoring.worker = false;
    println!("backend: {}; {n} customers", store.backend());
    let ws = store.create_workspace("Bench", Utc::now()).await?;
    let now = Utc::now();
    let mut rng = StdRng::seed_from_u64(5);
    let load = Instant::now();
    let owners = [
        "ana@example.com",
        "ben@example.com",
        "chloe@example.com",
        "dev@example.com",
    ];
    for (chunk_no, chunk) in customers(n, "c").chunks(1000).enumerate() {
        let mut rows = chunk.to_vec();
        for (i, r) in rows.iter_mut().enumerate() {
            r.owner_email = Some(owners[(chunk_no + i) % owners.len()].to_owned());
            r.mrr = Some(f64::from(rng.gen_range(100..20_000)));
        }
        store.upsert_customers(ws.id, &rows, now).await?;
        // A little history per customer: a score, a few days of use, an NPS answer.
        let mut events = Vec::new();
        for c in chunk {
            for d in 0..5 {
                let at = now - Duration::days(d * 7);
                events.push(Event {
                    id: format!("{}-n{d}", c.external_id),
                    customer_id: c.external_id.clone(),
                    occurred_at: at,
                    kind: EventKind::NpsResponse {
                        score: rng.gen_range(0..=10),
                    },
                });
                events.push(Event {
                    id: format!("{}-u{d}", c.external_id),
                    customer_id: c.external_id.clone(),
                    occurred_at: at,
                    kind: EventKind::UserActive { user_id: "u1".into() },
                });
            }
        }
        store.ingest_events(ws.id, &events, IngestMode::Live, now).await?;
    }
    crate::rescore::Rescorer::new(store.clone(), 2_000)
        .run_once(now)
        .await?;
    println!("loaded and scored in {:.1} s", load.elapsed().as_secs_f64());
    let hash = perly_store::auth::hash_password("bench-password").map_err(|e| anyhow::anyhow!(e))?;
    let user = store
        .add_user(ws.id, "bench@example.com", &hash, perly_store::Role::Admin, now)
        .await?;
    let token = store
        .create_session(
            ws.id,
            user.id,
            &user.password_hash,
            now,
            &perly_store::SessionPolicy::default(),
        )
        .await?;
    let running = crate::server::start(&settings, store.clone(), Arc::new(SystemClock)).await?;
    let base = format!("http://{}", running.addr);
    let client = reqwest::Client::new();
    let cookie = format!("perly_session={token}");
    let time = |path: String| {
        let (client, cookie) = (client.clone(), cookie.clone());
        async move {
            let started = Instant::now();
            let resp = client.get(&path).header("cookie", cookie).send().await?;
            let status = resp.status();
            let body = resp.text().await?;
            if !status.is_success() {
                bail!("{path} answered {status}");
            }
            Ok::<(f64, String), anyhow::Error>((started.elapsed().as_secs_f64() * 1000.0, body))
        }
    };
    let list_paths = [
        "/customers",
        "/customers?sort=-score",
        "/customers?sort=-mrr",
        "/customers?sort=delta",
        "/customers?risk=high",
        "/customers?owner=ben%40example.com&sort=name",
        "/customers?q=customer+4242",
    ];
    let mut report = Vec::new();
    for path in list_paths {
        let mut lat = Vec::new();
        for _ in 0..requests.div_ceil(list_paths.len()).max(20) {
            lat.push(time(format!("{base}{path}")).await?.0);
        }
        lat.sort_by(f64::total_cmp);
        report.push((path.to_owned(), lat));
    }
    // Deep paging: follow "Next page" 20 times.
    let mut lat = Vec::new();
    let mut next = format!("{base}/customers?sort=-score");
    for _ in 0..20 {
        let (ms, body) = time(next.clone()).await?;
        lat.push(ms);
        match body
            .split("href=\"")
            .find_map(|r| r.split('"').next().filter(|h| h.contains("cursor=")))
        {
            Some(h) => next = format!("{base}{}", h.replace("&amp;", "&")),
            None => break,
        }
    }
    lat.sort_by(f64::total_cmp);
    report.push(("next pages (20 deep)".to_owned(), lat));
    let mut lat = Vec::new();
    for i in 0..requests {
        lat.push(
            time(format!("{base}/customers/c{}", rng.gen_range(0..n).max(i % n)))
                .await?
                .0,
        );
    }
    lat.sort_by(f64::total_cmp);
    report.push(("/customers/{id} (profile)".to_owned(), lat));
    running.stop().await;
    println!("{:<48} {:>6} {:>8} {:>8} {:>8}", "page", "n", "p50 ms", "p99", "max ms");
    for (path, lat) in report {
        println!(
            "{path:<48} {:>6} {:>8.1} {:>8} {:>8.1}",
            lat.len(),
            percentile(&lat, 0.5),
            tail(&lat, 0.99),
            lat.last().copied().unwrap_or(0.0)
        );
    }
    println!("peak RSS: {:.0} MB", peak_rss_mb());
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_p99_needs_a_thousand_samples() {
        let few: Vec<f64> = (1..=300).map(f64::from).collect();
        assert_eq!(super::tail(&few, 0.99), "– (n=300 < 1000, see max)");
        let many: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(super::tail(&many, 0.99), "990.0 ms");
        assert_eq!(super::tail(&few, 0.9), "270.0 ms");
    }

    #[test]
    fn a_probe_polls_at_a_tenth_of_its_wait_between_10_and_250_ms() {
        use std::time::Duration;
        assert_eq!(super::probe_poll(Duration::from_millis(30)), Duration::from_millis(10));
        assert_eq!(super::probe_poll(Duration::from_millis(800)), Duration::from_millis(80));
        assert_eq!(super::probe_poll(Duration::from_secs(20)), Duration::from_millis(250));
    }
}
