//! The events API's writes on SQLite: one dedicated connection (rusqlite)
//! with prepared statements, writing each group of batches
//! ([`crate::ingest_queue`]) in one transaction on a thread of its own (`sqlite_thread`).
//!
//! Why: through sqlx every statement is built on the async side and handed
//! to sqlx's SQLite thread, which waits between the statements of a
//! transaction. Here the whole transaction runs on one thread with cached
//! statements, while the next requests are parsed and prepared on the
//! others.
//!
//! Serialization with sqlx's writer: SQLite allows one writer; the store's
//! other writes go through sqlx's one write connection. The writer holds
//! that pool connection while it writes, so the two never contend for the
//! lock (no `SQLITE_BUSY`), and the pool's queue keeps them fair. Other
//! processes (a `perly` command, a `sqlite3` shell) are waited for up to
//! [`crate::db::SQLITE_BUSY_TIMEOUT`]; past it the answer is
//! [`crate::Error::Unreachable`] (503 with `Retry-After`), as on sqlx.
//!
//! One page cache for the two writers: both connections open the file in
//! SQLite's shared-cache mode ([`crate::db`] asks it for sqlx's write
//! connection). In WAL mode a connection drops its whole page cache
//! whenever another connection has committed since its last transaction;
//! the two writers take turns all the time (a group of batches, then a
//! rescoring record), so each started cold and read the pages it writes
//! (rollups, customers, index leaves) back from the OS. Measured at
//! 100,000 customers with rescoring: 20.7–24.2 k events/s against
//! 16.2–18.3 k with caches of their own, a third less CPU in the kernel
//! (BENCHMARKS.md, issue 17). A shared cache locks tables between its
//! connections, outside SQLite's busy timeout: a statement that meets such
//! a lock waits for it by unlock notification (rusqlite's `unlock_notify`
//! feature; sqlx's statements do the same). In one server the two never
//! meet: the writer writes only while it holds sqlx's connection, and a
//! pool connection is returned only after its rollbacks are flushed. Two
//! stores of one process on one file (a test's) join the same cache and
//! share sqlx's one write pool of that file ([`crate::db`]), so their
//! writers take turns on it as well.
//!
//! What is stored is exactly what the sqlx path (`SqlStore::store_events`,
//! still used by the Salesforce pull inside its own transactions) stores:
//! the same rows, the same imports. Neither marks a customer: the marker
//! does, after the fact ([`crate::event_marks`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use perly_domain::ids::CustomerId;
use rusqlite::{params, Connection, OptionalExtension};
use sqlx::AnyPool;

use crate::ingest_queue::{Batch, GroupWriter};
use crate::sql::{ms, ImportOf};
use crate::sqlite_thread::ConnThread;
use crate::{Error, IngestOutcome, Result};

/// The writer's connection, and sqlx's write pool it serializes with.
pub(crate) struct SqliteWriter {
    path: String,
    conn: tokio::sync::OnceCell<ConnThread>,
    sqlx_writer: AnyPool,
}

impl SqliteWriter {
    /// The writer of the database at `path`. Its connection is opened by
    /// the first write, while that write holds sqlx's write connection:
    /// joining the shared cache waits for whatever the cache's other
    /// connection is doing (up to the busy timeout, when it waits for
    /// another process's lock), and that wait is the write's own.
    pub(crate) fn new(path: &str, sqlx_writer: AnyPool) -> Self {
        Self {
            path: path.to_owned(),
            conn: tokio::sync::OnceCell::new(),
            sqlx_writer,
        }
    }
}

/// Opens the writer's connection to `path`, on a thread of its own.
fn open(path: &str) -> Result<ConnThread> {
    let conn = open_shared(path)?;
    conn.busy_timeout(crate::db::SQLITE_BUSY_TIMEOUT).map_err(map_err)?;
    // The same settings as sqlx's writer; the file is in WAL mode already
    // (a setting of the file, made when sqlx connected; setting it again
    // would wait for a lock).
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
        .map_err(map_err)?;
    for pragma in crate::db::WRITER_PRAGMAS {
        conn.execute_batch(pragma).map_err(map_err)?;
    }
    conn.set_prepared_statement_cache_capacity(16);
    ConnThread::spawn("perly-sqlite-writer", conn)
}

#[async_trait]
impl GroupWriter for SqliteWriter {
    async fn write(&self, group: Vec<Arc<Batch>>) -> Result<Vec<Vec<IngestOutcome>>> {
        // Hold sqlx's one write connection: no other write runs meanwhile.
        let held = self.sqlx_writer.acquire().await?;
        let conn = self.conn.get_or_try_init(|| async { open(&self.path) }).await?;
        let done = conn.run(move |conn| transaction(conn, &group)).await;
        drop(held);
        done?
    }
}

/// Opens `path` read-write in shared-cache mode (see the module's doc).
fn open_shared(path: &str) -> Result<Connection> {
    use rusqlite::OpenFlags;
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_SHARED_CACHE,
    )
    .map_err(map_err)
}

fn transaction(conn: &mut Connection, jobs: &[Arc<Batch>]) -> Result<Vec<Vec<IngestOutcome>>> {
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

/// An event's customer, live (not archived), by its external id: answered
/// by the covering index alone (migration `20261207000001`). Through the
/// unique index, each lookup also read the customer's row, a random page
/// of the wide `customers` table at 100,000 customers (a tenth of the
/// writer's time went to lookups). SQLite's planner prefers the unique
/// index (one row by its key), hence `INDEXED BY`.
const FIND_CUSTOMER: &str = "SELECT id FROM customers INDEXED BY customers_live_by_external_id \
     WHERE workspace_id = ?1 AND external_id = ?2 AND archived_at IS NULL";

/// One batch: the rows of known customers, first of each id in the batch,
/// not stored before, are inserted with their imports (see
/// `SqlStore::store_events` for the import rules); the marker marks their
/// customers for rescoring ([`crate::event_marks`]).
fn store(tx: &rusqlite::Transaction<'_>, job: &Batch) -> Result<Vec<IngestOutcome>> {
    let ws = job.ws.to_string();
    let received = ms(job.now);
    let mut outcomes = vec![IngestOutcome::UnknownCustomer; job.rows.len()];
    let mut customers: HashMap<&str, Option<CustomerId>> = HashMap::new();
    let mut seen: HashSet<&str> = HashSet::with_capacity(job.rows.len());
    // A batch of an import: that import's id, as text once.
    let origin_import = match job.origin.import_of(false) {
        ImportOf::Import(id) => Some(id.to_string()),
        ImportOf::Live | ImportOf::EventsImport => None,
    };
    let mut events_import: Option<String> = None;
    let mut find = tx.prepare_cached(FIND_CUSTOMER).map_err(map_err)?;
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO events (workspace_id, event_id, customer_id, type, occurred_at, received_at, payload, import_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (workspace_id, event_id) DO NOTHING",
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
        let import: Option<&str> = match job.origin.import_of(!row.late) {
            ImportOf::Live => None,
            ImportOf::Import(_) => origin_import.as_deref(),
            ImportOf::EventsImport => {
                if events_import.is_none() {
                    events_import = Some(open_events_import(tx, &ws, received)?);
                }
                events_import.as_deref()
            }
        };
        let stored = insert
            .execute(params![
                ws,
                row.event_id,
                cid.to_string(),
                row.kind,
                row.occurred_at,
                received,
                row.payload,
                import
            ])
            .map_err(map_err)?;
        outcomes[i] = if stored == 1 {
            IngestOutcome::Accepted
        } else {
            IngestOutcome::Duplicate
        };
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
pub(crate) fn map_err(e: rusqlite::Error) -> Error {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A migrated database in a folder of its own (kept while the folder is).
    async fn fresh() -> (tempfile::TempDir, String, crate::db::Pools) {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}/perly.db", dir.path().display());
        let pools = crate::db::connect(&url).await.expect("connect");
        (dir, url, pools)
    }

    fn count(conn: &Connection) -> rusqlite::Result<i64> {
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
    }

    /// The writer's connection and sqlx's write connection are one page
    /// cache: while sqlx's writer is inside a write transaction, the
    /// writer's read of the table waits for its end (a shared cache's
    /// table lock, waited for by unlock notification) and then sees its
    /// row, where a connection of its own would read the last commit at
    /// once. The readers keep caches of their own and read on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_writer_and_sqlx_writer_share_one_page_cache_and_the_readers_do_not() {
        let (_dir, url, pools) = fresh().await;
        let path = crate::db::sqlite_path(&url).expect("path");
        let writer = open_shared(path).expect("writer");
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&pools.write)
            .await
            .expect("create");
        sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&pools.write)
            .await
            .expect("insert");
        assert_eq!(count(&writer).expect("count"), 1);

        let mut tx = pools.write.begin().await.expect("begin");
        sqlx::query("INSERT INTO t VALUES (2)")
            .execute(&mut *tx)
            .await
            .expect("insert");
        let reading = std::thread::spawn(move || count(&writer));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !reading.is_finished(),
            "the writer read a table the other connection of its cache is writing"
        );
        let read: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&pools.read)
            .await
            .expect("a reader reads the last commit");
        assert_eq!(read, 1);
        tx.commit().await.expect("commit");

        let read = tokio::task::spawn_blocking(move || reading.join())
            .await
            .expect("join")
            .expect("the writer's read")
            .expect("count");
        assert_eq!(read, 2, "the writer's read waited for the commit");
    }

    /// The events API finds a customer in the covering index alone (no
    /// read of the customer's row), and only a customer not archived.
    #[tokio::test]
    async fn the_customer_lookup_reads_one_covering_index_and_finds_live_customers_only() {
        let (_dir, url, pools) = fresh().await;
        sqlx::query("INSERT INTO workspaces (id, name, slug, created_at) VALUES ('w1', 'W', 'w', 0)")
            .execute(&pools.write)
            .await
            .expect("workspace");
        sqlx::query(
            "INSERT INTO customers (id, workspace_id, external_id, name, created_at, updated_at, archived_at) \
             VALUES ('c1', 'w1', 'acme', 'Acme', 0, 0, NULL), ('c2', 'w1', 'gone', 'Gone', 0, 0, 5)",
        )
        .execute(&pools.write)
        .await
        .expect("customers");
        let conn = open_shared(crate::db::sqlite_path(&url).expect("path")).expect("open");
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {FIND_CUSTOMER}"))
            .expect("plan")
            .query_map(params!["w1", "acme"], |r| r.get(3))
            .expect("plan rows")
            .collect::<rusqlite::Result<_>>()
            .expect("plan rows");
        assert_eq!(
            plan,
            ["SEARCH customers USING COVERING INDEX customers_live_by_external_id (workspace_id=? AND external_id=?)"]
        );
        let find = |external: &str| -> Option<String> {
            conn.query_row(FIND_CUSTOMER, params!["w1", external], |r| r.get(0))
                .optional()
                .expect("find")
        };
        assert_eq!(find("acme").as_deref(), Some("c1"));
        assert_eq!(find("gone"), None, "an archived customer takes no events");
        assert_eq!(find("nobody"), None);
    }

    /// Both writer connections let the WAL grow to the same 80,000 pages
    /// before their commit checkpoints it (`db::WRITER_PRAGMAS`).
    #[tokio::test]
    async fn both_writers_checkpoint_the_wal_every_80000_pages() {
        let (_dir, url, pools) = fresh().await;
        let sqlx_writer: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
            .fetch_one(&pools.write)
            .await
            .expect("sqlx writer");
        assert_eq!(sqlx_writer, 80_000);
        let writer = open(crate::db::sqlite_path(&url).expect("path")).expect("open");
        let ingest_writer = writer
            .run(|c| c.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get::<_, i64>(0)))
            .await
            .expect("run")
            .expect("ingest writer");
        assert_eq!(ingest_writer, 80_000);
    }
}
