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
use crate::sql::{
    claim_events_sql, claim_rows_sql, parse, refold_events_sql, ClaimedRow, Folding, IN_CHUNK, MARKED_THROUGH,
};
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
    // The events below the marker's `through` (`crate::event_marks`).
    let through: i64 = conn
        .prepare_cached(MARKED_THROUGH)
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(map_err)?;
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
            let through: &dyn rusqlite::ToSql = &through;
            let bound = [&ws as &dyn rusqlite::ToSql, through]
                .into_iter()
                .chain(chunk.iter().map(|id| id as &dyn rusqlite::ToSql));
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
            let mut all = conn
                .prepare_cached(&refold_events_sql(Dialect::Sqlite))
                .map_err(map_err)?;
            for id in &refold {
                let mut q = all.query(params![ws, id.to_string(), through]).map_err(map_err)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use perly_domain::ids::{CustomerId, WorkspaceId};

    /// A claim folds a customer's events below the marker's `through` only:
    /// an event stored after the marker ran has no mark yet, and folded now
    /// a live event of a customer waiting for an import would be scored as
    /// that import's history. The next claim, after the next mark, folds it.
    #[tokio::test]
    async fn a_claim_folds_only_the_events_the_marker_has_reached() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}/perly.db", dir.path().display());
        let pools = crate::db::connect(&url).await.expect("connect");
        let (ws, customer) = (WorkspaceId::new(), CustomerId::new());
        for sql in [
            format!("INSERT INTO workspaces (id, name, slug, created_at) VALUES ('{ws}', 'W', 'w', 0)"),
            format!(
                "INSERT INTO customers (id, workspace_id, external_id, name, created_at, updated_at) \
                 VALUES ('{customer}', '{ws}', 'acme', 'Acme', 0, 0)"
            ),
            format!(
                "INSERT INTO rollups (customer_id, workspace_id, data, version, dirty, updated_at) \
                 VALUES ('{customer}', '{ws}', x'', 1, 1, 0)"
            ),
        ] {
            sqlx::query(&sql).execute(&pools.write).await.expect("set up");
        }
        for seq in 1..=3 {
            let payload = format!(
                r#"{{"id":"nps-{seq}","customer_id":"acme","occurred_at":"2026-12-01T00:00:00Z","type":"nps_response","score":9}}"#
            );
            sqlx::query(
                "INSERT INTO events (seq, workspace_id, event_id, customer_id, type, occurred_at, received_at, payload) \
                 VALUES (?1, ?2, ?3, ?4, 'nps_response', 0, 0, ?5)",
            )
            .bind(seq)
            .bind(ws.to_string())
            .bind(format!("nps-{seq}"))
            .bind(customer.to_string())
            .bind(payload)
            .execute(&pools.write)
            .await
            .expect("event");
        }
        let reader = SqliteClaimReader::open(crate::db::sqlite_path(&url).expect("path")).expect("reader");
        let claim = async |through: i64| {
            sqlx::query("UPDATE event_marks SET through = ?1")
                .bind(through)
                .execute(&pools.write)
                .await
                .expect("through");
            let mut inputs = reader.read(ws, vec![customer.to_string()], 0).await.expect("read");
            let input = inputs.pop().expect("the customer");
            (input.through, input.folded + input.unfolded.len())
        };
        assert_eq!(claim(3).await, (2, 2), "the two marked events, not the third");
        assert_eq!(claim(4).await, (3, 3), "all three once the third is marked");
    }
}
