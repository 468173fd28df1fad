//! The events API's writes on SQLite: one dedicated connection (rusqlite)
//! with prepared statements, committing the batches that arrive together
//! in one transaction (group commit).
//!
//! Why: through sqlx every statement is built on the async side and handed
//! to sqlx's SQLite thread, which waits between the statements of a
//! transaction, and each request commits on its own, writing the pages it
//! shares with the others (the end of the events table and of its indexes,
//! the rollups it marks) once per request. Here a request's rows are
//! prepared (payload JSON, timestamps) on the caller's task, then queued;
//! the writer takes every batch waiting, up to [`GROUP_EVENTS`] events, and
//! runs them in one transaction on a blocking thread with cached
//! statements. Each caller is answered after the commit: a 200 still
//! means committed.
//!
//! Serialization with sqlx's writer: SQLite allows one writer; the store's
//! other writes go through sqlx's one write connection. The writer holds
//! that pool connection while it writes, so the two never contend for the
//! lock (no `SQLITE_BUSY`), and the pool's queue keeps them fair. Other
//! processes (a `perly` command, a `sqlite3` shell) are waited for up to
//! [`crate::db::SQLITE_BUSY_TIMEOUT`]; past it the answer is
//! [`crate::Error::Unreachable`] (503 with `Retry-After`), as on sqlx.
//!
//! What is stored is exactly what the sqlx path (`SqlStore::store_events`,
//! still used by the Salesforce pull inside its own transactions and by
//! PostgreSQL) stores: the same rows, the same marks, the same import.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use perly_domain::event::Event;
use perly_domain::ids::{CustomerId, WorkspaceId};
use rusqlite::{params, Connection, OptionalExtension};
use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot};

use crate::sql::{ms, Origin};
use crate::{Error, IngestMode, IngestOutcome, Result};

/// Events per transaction at most: a group that large takes ~0.1 s, which
/// bounds the wait of the last caller in it.
const GROUP_EVENTS: usize = 20_000;
/// Batches waiting for the writer at most; callers beyond wait to queue
/// (back-pressure on the HTTP handlers instead of memory).
const QUEUE: usize = 64;

/// One request's rows, prepared on the caller's task.
struct Job {
    ws: WorkspaceId,
    rows: Vec<Row>,
    origin: Origin,
    now: DateTime<Utc>,
    queued: Instant,
    reply: oneshot::Sender<Result<Vec<IngestOutcome>>>,
}

struct Row {
    event_id: String,
    customer: String,
    kind: &'static str,
    occurred_at: i64,
    late: bool,
    payload: String,
}

/// The handle the store keeps; the writer task stops when it is dropped.
#[derive(Debug)]
pub(crate) struct SqliteIngest {
    queue: mpsc::Sender<Job>,
}

impl SqliteIngest {
    /// Opens the writer's connection to `path` and starts its task.
    pub(crate) fn start(path: &str, sqlx_writer: AnyPool) -> Result<Self> {
        let conn = open(path)?;
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(rx, sqlx_writer, Arc::new(Mutex::new(conn))));
        Ok(Self { queue })
    }

    /// Stores `events` of workspace `ws` as the events API does: see
    /// [`crate::Store::ingest_events`].
    pub(crate) async fn ingest(
        &self,
        ws: WorkspaceId,
        events: &[Event],
        mode: IngestMode,
        now: DateTime<Utc>,
    ) -> Result<Vec<IngestOutcome>> {
        let rows = events
            .iter()
            .map(|e| {
                Ok(Row {
                    event_id: e.id.clone(),
                    customer: e.customer_id.clone(),
                    kind: e.kind.type_name(),
                    occurred_at: ms(e.occurred_at),
                    late: perly_domain::imports::is_late(e.occurred_at, now),
                    payload: serde_json::to_string(e).map_err(|err| crate::sql::corrupt("event", err))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let origin = match mode {
            IngestMode::Live => Origin::Live,
            IngestMode::Backfill => Origin::Backfill,
        };
        let (reply, answer) = oneshot::channel();
        let job = Job {
            ws,
            rows,
            origin,
            now,
            queued: Instant::now(),
            reply,
        };
        self.queue.send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> Error {
    Error::Unreachable(sqlx::Error::WorkerCrashed)
}

fn open(path: &str) -> Result<Connection> {
    let conn = Connection::open(path).map_err(map_err)?;
    conn.busy_timeout(crate::db::SQLITE_BUSY_TIMEOUT).map_err(map_err)?;
    // The same settings as sqlx's writer (see `db::WRITER_PRAGMAS`); the
    // file is in WAL mode already (a setting of the file, made when sqlx
    // connected; setting it again would wait for a lock).
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
         PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 20000; PRAGMA cache_size = -65536;",
    )
    .map_err(map_err)?;
    conn.set_prepared_statement_cache_capacity(16);
    Ok(conn)
}

async fn run(mut rx: mpsc::Receiver<Job>, sqlx_writer: AnyPool, conn: Arc<Mutex<Connection>>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        // Hold sqlx's one write connection: no other write runs meanwhile.
        let held = sqlx_writer.acquire().await;
        // Batches that arrived while waiting for it join the group.
        let mut events = jobs[0].rows.len();
        while events < GROUP_EVENTS {
            match rx.try_recv() {
                Ok(job) => {
                    events += job.rows.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let held = match held {
            Ok(c) => c,
            Err(e) => {
                let e = Error::from(e);
                for job in jobs {
                    let _ = job.reply.send(Err(clone_err(&e)));
                }
                continue;
            }
        };
        let answers = write(conn.clone(), jobs).await;
        drop(held);
        for (reply, answer) in answers {
            let _ = reply.send(answer);
        }
    }
}

type Answers = Vec<(oneshot::Sender<Result<Vec<IngestOutcome>>>, Result<Vec<IngestOutcome>>)>;

/// Writes the group in one transaction; if that fails for a reason other
/// than an outage, each batch again in its own, so one batch's failure is
/// not the others'.
async fn write(conn: Arc<Mutex<Connection>>, jobs: Vec<Job>) -> Answers {
    let done = tokio::task::spawn_blocking(move || {
        let mut conn = match conn.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        let group: Vec<&Job> = jobs.iter().collect();
        let answers: Vec<Result<Vec<IngestOutcome>>> = match transaction(&mut conn, &group) {
            Ok(all) => all.into_iter().map(Ok).collect(),
            Err(e) if e.is_unreachable() || jobs.len() == 1 => jobs.iter().map(|_| Err(clone_err(&e))).collect(),
            Err(_) => jobs
                .iter()
                .map(|job| transaction(&mut conn, &[job]).map(|mut one| one.remove(0)))
                .collect(),
        };
        jobs.into_iter().map(|j| j.reply).zip(answers).collect::<Answers>()
    })
    .await;
    done.unwrap_or_default()
}

/// A copy of a store error to hand to every caller of a group.
fn clone_err(e: &Error) -> Error {
    match e {
        Error::Unreachable(_) => Error::Unreachable(sqlx::Error::Protocol(e.to_string())),
        Error::Invalid(m) => Error::Invalid(m.clone()),
        Error::Conflict(m) => Error::Conflict(m.clone()),
        Error::Corrupt(m) => Error::Corrupt(m.clone()),
        other => Error::Unavailable(sqlx::Error::Protocol(other.to_string())),
    }
}

fn transaction(conn: &mut Connection, jobs: &[&Job]) -> Result<Vec<Vec<IngestOutcome>>> {
    // A request waits for the write lock at most the busy timeout in all,
    // counting its wait behind sqlx's writes (which may themselves have
    // waited for another process).
    let waited = jobs.iter().map(|j| j.queued.elapsed()).max().unwrap_or_default();
    let left = crate::db::SQLITE_BUSY_TIMEOUT
        .saturating_sub(waited)
        .max(Duration::from_millis(100));
    conn.busy_timeout(left).map_err(map_err)?;
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(map_err)?;
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        out.push(store(&tx, job)?);
    }
    tx.commit().map_err(map_err)?;
    Ok(out)
}

/// One batch: the rows of known customers, first of each id in the batch,
/// not stored before, are inserted; their customers are marked for
/// rescoring (see `SqlStore::store_events` for the import rules).
fn store(tx: &rusqlite::Transaction<'_>, job: &Job) -> Result<Vec<IngestOutcome>> {
    let ws = job.ws.to_string();
    let received = ms(job.now);
    let mut outcomes = vec![IngestOutcome::UnknownCustomer; job.rows.len()];
    let mut customers: HashMap<&str, Option<CustomerId>> = HashMap::new();
    let mut seen: HashSet<&str> = HashSet::with_capacity(job.rows.len());
    // Per customer with new events: whether one of them is live.
    let mut marked: HashMap<CustomerId, bool> = HashMap::new();
    {
        let mut find = tx
            .prepare_cached(
                "SELECT id FROM customers WHERE workspace_id = ?1 AND external_id = ?2 AND archived_at IS NULL",
            )
            .map_err(map_err)?;
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO events (workspace_id, event_id, customer_id, type, occurred_at, received_at, payload) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (workspace_id, event_id) DO NOTHING",
            )
            .map_err(map_err)?;
        for (i, row) in job.rows.iter().enumerate() {
            let cid = match customers.get(row.customer.as_str()) {
                Some(known) => *known,
                None => {
                    let id: Option<String> = find
                        .query_row(params![ws, row.customer], |r| r.get(0))
                        .optional()
                        .map_err(map_err)?;
                    let id = id
                        .map(|s| crate::sql::parse::<CustomerId>("customer id", &s))
                        .transpose()?;
                    customers.insert(&row.customer, id);
                    id
                }
            };
            let Some(cid) = cid else { continue };
            if !seen.insert(&row.event_id) {
                outcomes[i] = IngestOutcome::Duplicate;
                continue;
            }
            let stored = insert
                .execute(params![
                    ws,
                    row.event_id,
                    cid.to_string(),
                    row.kind,
                    row.occurred_at,
                    received,
                    row.payload
                ])
                .map_err(map_err)?;
            if stored == 1 {
                outcomes[i] = IngestOutcome::Accepted;
                *marked.entry(cid).or_default() |= !row.late;
            } else {
                outcomes[i] = IngestOutcome::Duplicate;
            }
        }
    }
    let mut events_import: Option<String> = None;
    let mut mark = tx
        .prepare_cached(
            "UPDATE rollups SET version = version + 1, dirty = 1, \
             dirty_at = CASE WHEN dirty = 1 THEN dirty_at ELSE ?2 END, updated_at = ?2, \
             dirty_import = CASE WHEN ?4 IS NULL OR (dirty = 1 AND dirty_import IS NULL AND version > 0) \
             THEN NULL ELSE ?4 END, last_import = COALESCE(?4, last_import) \
             WHERE workspace_id = ?3 AND customer_id = ?1",
        )
        .map_err(map_err)?;
    let mut marked: Vec<(CustomerId, bool)> = marked.into_iter().collect();
    marked.sort_unstable();
    for (cid, any_live) in marked {
        let import = match job.origin.import_of(any_live) {
            crate::sql::ImportOf::Live => None,
            crate::sql::ImportOf::Import(id) => Some(id.to_string()),
            crate::sql::ImportOf::EventsImport => Some(match &events_import {
                Some(id) => id.clone(),
                None => {
                    let id = open_events_import(tx, &ws, received)?;
                    events_import = Some(id.clone());
                    id
                }
            }),
        };
        mark.execute(params![cid.to_string(), received, ws, import])
            .map_err(map_err)?;
    }
    Ok(outcomes)
}

/// The workspace's open events import, started if there is none (as
/// `imports::events_import`).
fn open_events_import(tx: &rusqlite::Transaction<'_>, ws: &str, now: i64) -> Result<String> {
    let open: Option<String> = tx
        .query_row(crate::imports::TOUCH_EVENTS_IMPORT, params![now, ws], |r| r.get(0))
        .optional()
        .map_err(map_err)?;
    if let Some(id) = open {
        return Ok(id);
    }
    let id = perly_domain::ids::ImportId::new().to_string();
    tx.execute(
        crate::imports::INSERT_IMPORT,
        params![
            id,
            ws,
            perly_domain::imports::ImportSource::Events.as_str(),
            crate::imports::EVENTS_IMPORT_LABEL,
            "open",
            now
        ],
    )
    .map_err(map_err)?;
    Ok(id)
}

/// A rusqlite error as the store's: a lock another process keeps past the
/// busy timeout is an outage, as on sqlx ([`crate::is_unreachable`]).
fn map_err(e: rusqlite::Error) -> Error {
    let busy = matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    );
    let source = sqlx::Error::Protocol(format!("SQLite: {e}"));
    if busy {
        Error::Unreachable(source)
    } else {
        Error::Unavailable(source)
    }
}
