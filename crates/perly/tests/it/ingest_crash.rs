//! Crash safety of ingest: "a 200 means committed". Four clients post
//! batches of 1,000 events to the real `perly serve` process as fast as it
//! takes them, and the process is killed with SIGKILL in the middle of it.
//! Started again on the same database, it has every event of every batch it
//! answered 200 for. Sending every batch again afterwards (those answered
//! and those cut off by the kill) is answered 200 each time and stores each
//! event exactly once: ingest stays idempotent across the crash.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Value};

use crate::helpers::*;

const CUSTOMERS: usize = 500;
const CLIENTS: usize = 4;
const BATCH: usize = 1_000;
/// How long the clients post before the kill.
const LOAD: Duration = Duration::from_millis(1_500);
/// Batches answered 200 before the kill at least, or the test proves nothing.
const ANSWERED_BEFORE_KILL: usize = 4;

/// One batch a client sent: its event ids, its body (to send it again), and
/// whether the server answered 200 for it.
struct Sent {
    ids: Vec<String>,
    body: Vec<u8>,
    answered: bool,
}

/// What one client saw: every batch it sent, and answers that were neither
/// a 200 with every row accepted nor a broken connection.
#[derive(Default)]
struct Outcome {
    sent: Vec<Sent>,
    wrong: Vec<String>,
}

async fn start_server(database_url: &str, port: u16) -> ServeProcess {
    // Flat out may pass the default rate limit (20,000 rows a second): off,
    // so every batch goes to the database.
    let env = [
        ("PERLY_INGEST__RATE_PER_SECOND", "0".to_owned()),
        ("PERLY_INGEST__WORKSPACE_RATE_PER_SECOND", "0".to_owned()),
    ];
    spawn_serve(database_url, port, &env).await
}

/// Batch `n` of client `task`: ids `w{task}-b{n}-{i}`, customers spread over all of them.
fn batch(task: usize, n: usize, at: &str) -> (Vec<String>, Vec<u8>) {
    let ids: Vec<String> = (0..BATCH).map(|i| format!("w{task}-b{n}-{i}")).collect();
    let events: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            json!({
                "id": id,
                "customer_id": format!("c{}", (task * 131 + n * BATCH + i) % CUSTOMERS),
                "type": "user_active",
                "user_id": format!("u{}", i % 25),
                "occurred_at": at,
            })
        })
        .collect();
    let body = serde_json::to_vec(&json!({ "events": events })).expect("batch JSON");
    (ids, body)
}

/// Posts one batch: `Ok((status, body))` if the server answered, `Err` if
/// the connection failed (the server is gone). A 200 counts as answered even
/// if its body is cut off.
async fn post_batch(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    body: Vec<u8>,
) -> reqwest::Result<(u16, Option<Value>)> {
    let resp = client
        .post(format!("{base}/api/v1/events"))
        .bearer_auth(key)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await?;
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.ok();
    Ok((status, body))
}

/// One client: posts its batches one after the other until the connection
/// breaks, counting the 200s in `answered`.
async fn client_task(
    client: reqwest::Client,
    base: String,
    key: String,
    task: usize,
    at: String,
    answered: Arc<AtomicUsize>,
) -> Outcome {
    let mut out = Outcome::default();
    for n in 0.. {
        let (ids, body) = batch(task, n, &at);
        let result = post_batch(&client, &base, &key, body.clone()).await;
        let ok = matches!(result, Ok((200, _)));
        out.sent.push(Sent {
            ids,
            body,
            answered: ok,
        });
        match result {
            Ok((200, Some(b))) => {
                answered.fetch_add(1, Ordering::SeqCst);
                if b["accepted"] != json!(BATCH) {
                    out.wrong
                        .push(format!("w{task}-b{n}: 200 without every row accepted: {b}"));
                }
            }
            // A 200 whose body the kill cut off: answered, and the end.
            Ok((200, None)) => {
                answered.fetch_add(1, Ordering::SeqCst);
                break;
            }
            Ok((status, b)) => {
                out.wrong.push(format!("w{task}-b{n}: answered {status}: {b:?}"));
                break;
            }
            // The server is gone.
            Err(_) => break,
        }
    }
    out
}

/// Every event id stored for workspace `ws`, as many times as it is stored.
async fn stored_ids(database_url: &str, ws: &str) -> Vec<String> {
    let mut conn = connect_database(database_url).await;
    // A literal workspace id (a UUID), as placeholders differ between SQLite and PostgreSQL.
    let sql = format!("SELECT event_id FROM events WHERE workspace_id = '{ws}'");
    sqlx::query_scalar(&sql)
        .fetch_all(&mut conn)
        .await
        .expect("read the stored event ids")
}

/// The batches `ids` come from, with how many of each batch's events they are
/// (`w0-b3: 1000`), for an assert message.
fn by_batch(ids: &HashSet<&String>) -> Vec<String> {
    let mut batches: BTreeMap<&str, usize> = BTreeMap::new();
    for id in ids {
        let batch = id.rsplit_once('-').map_or(id.as_str(), |(b, _)| b);
        *batches.entry(batch).or_default() += 1;
    }
    batches.into_iter().map(|(b, n)| format!("{b}: {n}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_during_flat_out_ingest_loses_no_event_it_answered_200_for() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("dir");
    let database_url = fresh_database(&dir).await;

    // A workspace and key, made before the server starts.
    let settings = test_settings(database_url.clone(), false);
    let (ws, key) = {
        let store = perly::server::open_store(&settings, perly::cli::cipher(&settings, true).expect("cipher"))
            .await
            .expect("store");
        let ws = store.create_workspace("Ingest Crash Co", Utc::now()).await.expect("ws");
        let key = store
            .create_api_key(ws.id, &perly_store::NewApiKey::full("ingest-crash"), Utc::now())
            .await
            .expect("key")
            .1;
        (ws.id.to_string(), key)
    };

    let port = free_port();
    let server = start_server(&database_url, port).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let customers: Vec<Value> = (0..CUSTOMERS)
        .map(|c| json!({"external_id": format!("c{c}"), "name": format!("c{c}"), "seats_purchased": 10}))
        .collect();
    let created: Value = client
        .post(format!("{}/api/v1/customers", server.base))
        .bearer_auth(&key)
        .json(&json!({ "customers": customers }))
        .send()
        .await
        .expect("post customers")
        .json()
        .await
        .expect("customers JSON");
    assert_eq!(created["rejected"], 0, "every customer created: {created}");

    // Flat-out load from four clients.
    let at = (Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    let answered = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|task| {
            tokio::spawn(client_task(
                client.clone(),
                server.base.clone(),
                key.clone(),
                task,
                at.clone(),
                answered.clone(),
            ))
        })
        .collect();
    let load_started = Instant::now();
    let deadline = load_started + Duration::from_secs(15);
    while load_started.elapsed() < LOAD || answered.load(Ordering::SeqCst) < ANSWERED_BEFORE_KILL {
        assert!(
            Instant::now() < deadline,
            "only {} batches answered 200 in 15 s of load",
            answered.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let answered_at_kill = answered.load(Ordering::SeqCst);
    server.kill();
    assert!(
        answered_at_kill >= ANSWERED_BEFORE_KILL,
        "at least {ANSWERED_BEFORE_KILL} batches answered 200 before the kill, got {answered_at_kill}"
    );
    let mut sent = Vec::new();
    let mut wrong = Vec::new();
    for t in tasks {
        let out = t.await.expect("client task");
        sent.extend(out.sent);
        wrong.extend(out.wrong);
    }
    assert!(
        wrong.is_empty(),
        "answers other than a full 200 before the kill: {wrong:#?}"
    );
    let answered_batches = sent.iter().filter(|s| s.answered).count();
    eprintln!(
        "{} batches sent in {:?}: {answered_batches} answered 200 ({answered_at_kill} at the kill), {} cut off by it",
        sent.len(),
        load_started.elapsed(),
        sent.len() - answered_batches
    );

    // Started again: every event of every batch answered 200 is there.
    let server = start_server(&database_url, port).await;
    let stored = stored_ids(&database_url, &ws).await;
    let stored: HashSet<String> = stored.into_iter().collect();
    let promised: HashSet<&String> = sent.iter().filter(|s| s.answered).flat_map(|s| &s.ids).collect();
    let missing: HashSet<&String> = promised.iter().filter(|id| !stored.contains(**id)).copied().collect();
    assert!(
        missing.is_empty(),
        "{} of the {} events of batches answered 200 are not stored after the kill; missing by batch: {:?}",
        missing.len(),
        promised.len(),
        by_batch(&missing)
    );

    // Every batch again: all answered, each event stored once.
    let per_client = sent.len().div_ceil(CLIENTS);
    let resends: Vec<_> = sent
        .chunks(per_client)
        .enumerate()
        .map(|(c, chunk)| {
            let work: Vec<(usize, Vec<u8>, bool)> = chunk
                .iter()
                .enumerate()
                .map(|(i, s)| (c * per_client + i, s.body.clone(), s.answered))
                .collect();
            let (client, base, key) = (client.clone(), server.base.clone(), key.clone());
            tokio::spawn(async move {
                let mut wrong = Vec::new();
                for (i, body, answered) in work {
                    match post_batch(&client, &base, &key, body).await {
                        Ok((200, Some(b))) => {
                            let (accepted, duplicates) = (b["accepted"].as_u64(), b["duplicates"].as_u64());
                            let total = accepted.zip(duplicates).map(|(a, d)| a + d);
                            if total != Some(BATCH as u64) || b["rejected"] != 0 {
                                wrong.push(format!("resend {i}: not every row accepted or duplicate: {b}"));
                            } else if answered && accepted != Some(0) {
                                wrong.push(format!("resend {i} of a batch answered 200: {accepted:?} rows new"));
                            }
                        }
                        Ok((status, b)) => wrong.push(format!("resend {i}: answered {status}: {b:?}")),
                        Err(e) => wrong.push(format!("resend {i}: {e}")),
                    }
                }
                wrong
            })
        })
        .collect();
    let mut wrong = Vec::new();
    for t in resends {
        wrong.extend(t.await.expect("resend task"));
    }
    assert!(wrong.is_empty(), "resending after the restart: {wrong:#?}");

    let stored = stored_ids(&database_url, &ws).await;
    let distinct: HashSet<&String> = stored.iter().collect();
    assert_eq!(
        stored.len(),
        distinct.len(),
        "{} event ids are stored more than once",
        stored.len() - distinct.len()
    );
    let sent_ids: HashSet<&String> = sent.iter().flat_map(|s| &s.ids).collect();
    let missing: HashSet<&String> = sent_ids.iter().filter(|id| !distinct.contains(**id)).copied().collect();
    assert!(
        missing.is_empty(),
        "{} sent events are not stored after resending; missing by batch: {:?}",
        missing.len(),
        by_batch(&missing)
    );
    assert_eq!(
        stored.len(),
        sent_ids.len(),
        "stored events = distinct ids sent ({} batches)",
        sent.len()
    );
    drop(server);
    eprintln!("{} events, {:?} in all", stored.len(), started.elapsed());
}
