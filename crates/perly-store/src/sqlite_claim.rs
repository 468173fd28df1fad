//! The rescoring claim's reads on SQLite: each claimed customer's rollup,
//! facts and alert state, then its new events, folded as they stream, on
//! one read-only rusqlite connection with cached prepared statements, on a
//! thread of its own (`sqlite_thread`; the statements are the sqlx path's, see
//! `SqlStore::claim_rescore_once`, which PostgreSQL still uses).
//!
//! Why: through sqlx every row crosses a channel from its SQLite thread to
//! the async task that asked. A claim that folds a customer's whole history
//! streams hundreds of thousands of event rows: the first pass of a full
//! rescore of 20,000 customers (5.76 M events) took 29.0 s through sqlx and
//! 7.4 s here. Under ingest it changed nothing measurable: there the
//! claim's statements wait for the two busy cores, not for the channel
//! (BENCHMARKS.md, issue 17).
//!
//! A WAL reader: it never blocks the writers, and each statement sees the
//! last commit (the claim's leases are committed before it reads).

use perly_domain::ids::{CustomerId, WorkspaceId};
use rusqlite::{params, params_from_iter, Connection, OpenFlags};

use crate::db::Dialect;
use crate::sql::{claim_events_sql, claim_rows_sql, parse, ClaimedRow, Folding, IN_CHUNK, REFOLD_EVENTS};
use crate::sqlite_ingest::map_err;
use crate::sqlite_thread::ConnThread;
use crate::{Error, RescoreInput, Result};

/// The rescoring claims' read connection.
#[derive(Debug)]
pub(crate) struct SqliteClaimReader {
    conn: ConnThread,
}

impl SqliteClaimReader {
    /// Opens a read-only connection to the database at `path`.
    pub(crate) fn open(path: &str) -> Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(map_err)?;
        conn.busy_timeout(crate::db::SQLITE_BUSY_TIMEOUT).map_err(map_err)?;
        conn.set_prepared_statement_cache_capacity(8);
        Ok(Self {
            conn: ConnThread::spawn("perly-sqlite-claims", conn)?,
        })
    }

    /// The rescoring inputs of `claimed` (customer ids of workspace `ws`),
    /// their new events folded in.
    pub(crate) async fn read(
        &self,
        ws: WorkspaceId,
        claimed: Vec<String>,
        lease_until: i64,
    ) -> Result<Vec<RescoreInput>> {
        self.conn
            .run(move |conn| read(conn, &ws.to_string(), &claimed, lease_until))
            .await?
    }
}

fn read(conn: &Connection, ws: &str, claimed: &[String], lease_until: i64) -> Result<Vec<RescoreInput>> {
    // One snapshot for all the reads: a claim whose lease ran out may
    // record a customer's blob between reading the blob and reading the
    // events after its `folded_seq`; read apart, the old blob would take
    // only the events after the new one's, and lose those in between.
    let snapshot = conn.unchecked_transaction().map_err(map_err)?;
    let mut out = Vec::with_capacity(claimed.len());
    for chunk in claimed.chunks(IN_CHUNK) {
        let first = out.len();
        let mut refold = Vec::new();
        {
            let mut rows = conn
                .prepare_cached(&claim_rows_sql(Dialect::Sqlite, chunk.len()))
                .map_err(map_err)?;
            let bound = [ws, ws, ws].into_iter().chain(chunk.iter().map(String::as_str));
            let mut q = rows.query(params_from_iter(bound)).map_err(map_err)?;
            while let Some(r) = q.next().map_err(map_err)? {
                let row = ClaimedRow {
                    customer_id: r.get(0).map_err(map_err)?,
                    version: r.get(1).map_err(map_err)?,
                    data: r.get(2).map_err(map_err)?,
                    folded_seq: r.get(3).map_err(map_err)?,
                    dirty_import: r.get(4).map_err(map_err)?,
                    plan: r.get(5).map_err(map_err)?,
                    seats_purchased: r.get(6).map_err(map_err)?,
                    alert_state: r.get(7).map_err(map_err)?,
                };
                out.push(row.input(lease_until, &mut refold)?);
            }
        }
        let mut folding = Folding::new(&mut out[first..]);
        {
            let mut events = conn
                .prepare_cached(&claim_events_sql(Dialect::Sqlite, chunk.len()))
                .map_err(map_err)?;
            let bound = std::iter::once(ws).chain(chunk.iter().map(String::as_str));
            let mut q = events.query(params_from_iter(bound)).map_err(map_err)?;
            while let Some(r) = q.next().map_err(map_err)? {
                let customer: CustomerId = parse(
                    "customer id",
                    r.get_ref(0).map_err(map_err)?.as_str().map_err(from_sql)?,
                )?;
                // A refolded customer's events all come from the query below.
                if !refold.contains(&customer) {
                    let payload = r.get_ref(2).map_err(map_err)?.as_str().map_err(from_sql)?;
                    folding.add(customer, r.get(1).map_err(map_err)?, payload)?;
                }
            }
        }
        if !refold.is_empty() {
            let sql = Dialect::Sqlite.positional(REFOLD_EVENTS.to_owned());
            let mut all = conn.prepare_cached(&sql).map_err(map_err)?;
            for id in &refold {
                let mut q = all.query(params![ws, id.to_string()]).map_err(map_err)?;
                while let Some(r) = q.next().map_err(map_err)? {
                    let payload = r.get_ref(1).map_err(map_err)?.as_str().map_err(from_sql)?;
                    folding.add(*id, r.get(0).map_err(map_err)?, payload)?;
                }
            }
        }
        folding.fold();
    }
    snapshot.commit().map_err(map_err)?;
    Ok(out)
}

fn from_sql(e: rusqlite::types::FromSqlError) -> Error {
    crate::sql::corrupt("claimed row", e)
}
