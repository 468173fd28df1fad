//! Marking the customers of new events for rescoring, after the fact
//! (issue 17), on both databases.
//!
//! Ingest only appends events ([`crate::sqlite_ingest`],
//! [`crate::postgres_ingest`], and the Salesforce pull's
//! `SqlStore::store_events`): it reads and writes no customer's row. Each
//! event carries a position (below) and the import it belongs to
//! (`events.import_id`, NULL for live data). Before, every batch read each
//! of its customers' `rollups` row and often wrote it: on PostgreSQL
//! concurrent batches waited for each other's locks on the rows they
//! shared (85–88 % of their waits), on SQLite the marks were about 45 % of
//! the one writer's time at 100,000 customers (BENCHMARKS.md).
//!
//! The marker ([`SqlStore::mark_new_events`]) marks the customers of the
//! events from `event_marks.through` up to a bound below which every event
//! is final, with the mark ingest used to write, then moves `through` to
//! the bound. A rescoring claim folds a customer's events below
//! `event_marks.through` as its snapshot sees it, from where its blob
//! stopped: it folds only events whose marks it sees, so a live event is
//! never scored under an import's mark. Each event is thus marked once and
//! folded once. A customer whose events are marked while a claim holds it
//! has its version moved, so that claim does not clear its mark, and the
//! next claim folds them.
//!
//! **SQLite:** the position is `seq`. The one writer commits events in
//! `seq` order, so the bound is the newest `seq` plus one, read inside the
//! marker's write transaction: no event can appear below it later. A blob
//! says the newest `seq` it folded (`rollup_blobs.folded_seq`).
//!
//! **PostgreSQL:** the position is the id of the transaction that stored
//! the event (`events.xid`). Transaction ids are not commit order, but
//! every transaction with an id below the oldest one still running (a
//! snapshot's `xmin`; see [`next_statements_bound`] for transactions of
//! other databases) has ended: the events below that bound are final, and
//! no event can appear below it later. A blob says the bound it folded
//! through (`rollup_blobs.folded_xid`).
//!
//! A transaction of Perly's PostgreSQL database that writes and stays open
//! holds the bound back: events stored after it are scored once it ends.
//! Perly's own writes are short; read-only transactions (`pg_dump`,
//! reports) have no id and hold nothing; other databases' transactions are
//! not waited for.
//!
//! A database restored with `pg_restore` into another cluster keeps the
//! source's transaction ids, which may be ahead of the new cluster's: new
//! events would then sort below what was folded. The marker sees its
//! `through` ahead of the current transaction id and rebases: every event
//! gets 1 (folded) or 2 (not yet), every stored rollup `folded_xid` 2, and
//! the customers of the events not folded yet are marked. The server runs
//! the marker when it connects, before it takes any event: an event stored
//! in the new cluster before the rebase could not be told from the
//! restored ones by its id. (An SQLite backup is a copy of the file: its
//! `seq`s go on from where they were.)

use sqlx::Row;

use crate::db::Dialect;
use crate::sql::SqlStore;
use crate::Result;

/// Whether marking a rollup for `import` (an SQL expression, NULL for live
/// data) would change nothing of it but its version: it is marked for the
/// same data already and no rescoring claim holds it. The marker skips
/// such rows, which spares a write per customer (at 100,000 customers,
/// when ingest marked batch by batch, those writes were most of its time:
/// each lands on its own page of `rollups` and of its indexes). The version only tells a claim in flight
/// that new data came; without a lease there is no claim, and the next one
/// reads the new events. A rollup never marked by data (version 0: a new
/// customer's) is marked, so that its version says live data came (see
/// the mark's `dirty_import`). A release of leases moves the version too
/// ([`Store::release_rescore`]). Never NULL.
///
/// `r` names the row as it is now: on PostgreSQL the marker's locked copy,
/// not the statement's snapshot of the table (see [`mark_sql`]).
fn already_marked(r: &str, import: &str) -> String {
    format!(
        "COALESCE({r}.dirty = 1 AND {r}.version > 0 AND {r}.lease_until IS NULL AND CASE WHEN {import} IS NULL \
         THEN {r}.dirty_import IS NULL ELSE {r}.last_import = {import} AND ({r}.dirty_import = {import} \
         OR {r}.dirty_import IS NULL) END, FALSE)"
    )
}

/// The column that places an event for the marker and the claims: `seq`
/// on SQLite, the transaction's id on PostgreSQL (see the module's doc).
pub(crate) fn position_column(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "seq",
        Dialect::Postgres => "xid",
    }
}

/// The new events' customers from `$1` (`through`) to `$2` (the bound),
/// marked as ingest marked them batch by batch: one row per customer, live
/// when one of its new events is live (NULL import, which wins over an
/// import), counted in the import of its history if it has some
/// (`last_import`), waiting since its oldest new event arrived. A customer
/// marked for the same already, and not claimed, is skipped (as
/// [`already_marked`]). On PostgreSQL rows are locked in customer order
/// first, as rescoring and upserts lock them, so the marker and a record
/// never wait for each other in a cycle (SQLite has one writer); whether a
/// row is marked already is read from the locked row (`l`), which is its
/// newest version: the `UPDATE`'s own scan reads the statement's
/// snapshot, and a row that fails its condition there is skipped without
/// a look at a newer version. A customer a claim leased (or a record
/// cleared) after that snapshot was taken looked marked and unclaimed, was
/// skipped, and the claim, which folds only what was marked before, then
/// cleared its mark: its new events waited for its next one.
fn mark_sql(dialect: Dialect) -> String {
    let (live, locked, join_locked, current) = match dialect {
        Dialect::Sqlite => ("max(import_id IS NULL)", "", "", "rollups"),
        Dialect::Postgres => (
            "bool_or(import_id IS NULL)",
            ", locked AS (SELECT r.workspace_id, r.customer_id, r.dirty, r.version, r.lease_until, r.dirty_import, \
             r.last_import FROM rollups r JOIN new n \
             ON r.workspace_id = n.workspace_id AND r.customer_id = n.customer_id ORDER BY r.customer_id FOR UPDATE OF r)",
            " JOIN locked l ON l.workspace_id = v.workspace_id AND l.customer_id = v.customer_id",
            "l",
        ),
    };
    let position = position_column(dialect);
    dialect.positional(format!(
        "WITH new AS (SELECT workspace_id, customer_id, {live} AS live, max(import_id) AS import, \
         min(received_at) AS since, max(received_at) AS latest FROM events WHERE {position} >= $1 AND {position} < $2 \
         GROUP BY workspace_id, customer_id){locked} \
         UPDATE rollups SET version = rollups.version + 1, dirty = 1, \
         dirty_at = CASE WHEN rollups.dirty = 1 THEN rollups.dirty_at ELSE v.since END, updated_at = v.latest, \
         dirty_import = CASE WHEN v.live OR v.import IS NULL OR (rollups.dirty = 1 AND rollups.dirty_import IS NULL \
         AND rollups.version > 0) THEN NULL ELSE v.import END, last_import = COALESCE(v.import, rollups.last_import) \
         FROM new v{join_locked} \
         WHERE rollups.workspace_id = v.workspace_id AND rollups.customer_id = v.customer_id \
         AND NOT ({} AND (NOT v.live OR {current}.dirty_import IS NULL))",
        already_marked(current, "v.import")
    ))
}

/// Taken first by a transaction that stores no event (a rescoring record,
/// which runs beside the next claim, and the marker): a shared advisory lock (two-key
/// form, keys "Perl" and 1), held to its end. Its transaction id only
/// exists once it writes, after this, so while the id shows the lock shows
/// too, and the bound does not wait for it.
pub const WRITES_NO_EVENTS: &str = "SELECT pg_advisory_xact_lock_shared(1348825708, 1)";

/// Events the SQLite marker marks in one transaction at most: a flood's
/// backlog is marked in slices, with ingest's groups in between.
const SQLITE_SLICE: i64 = 20_000;

/// The marker's working memory for grouping new events by customer.
const MARKER_WORK_MEM: &str = "SET LOCAL work_mem = '64MB'";

/// A bound on transaction ids for the statements that run after the
/// marker's first one (not for that one's own snapshot): every transaction
/// below it that may store events has ended before those statements start,
/// so its events are in their snapshots, and every transaction to come gets
/// an id above it.
///
/// It is the first statement's snapshot `xmax` or its oldest transaction
/// still running, not counting:
/// * the ones known to run in another database of the cluster (they cannot
///   write Perly's events, and a long one, another application's or a
///   test's next door, would hold scoring back);
/// * autovacuum's (an `ANALYZE` has an id while it writes its statistics,
///   and never an event);
/// * the ones holding [`WRITES_NO_EVENTS`] (the rescoring worker's records,
///   which would hold back the claim pipelined beside them);
/// * the ones that have ended since the snapshot was taken (over before the
///   next statement starts).
///
/// A transaction whose session is not visible (`pg_stat_activity` hides
/// other roles' sessions without `pg_read_all_stats`) and that still runs
/// is counted.
///
/// The order of the reads is what makes this safe and live (see
/// [`excluded`] and [`running`]): the snapshot, then the sessions and
/// their locks, then whether each transaction of the snapshot still runs.
/// One that still runs at the last read ran at the second, so its
/// session showed it with its database and its lock. Read in one
/// statement, the status came first: a transaction of another database
/// that ended between the two reads showed no session, counted as one of
/// Perly's, and held every event stored after it back for one pass (a
/// test that asserts after one pass failed in CI with many databases
/// busy).
async fn next_statements_bound(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    snapshot: &str,
    xmax: i64,
) -> Result<i64> {
    let excluded = excluded(tx).await?;
    let running = running(tx, snapshot).await?;
    Ok(bound(xmax, &running, &excluded))
}

/// The transactions that cannot store events, as their 32-bit ids: those
/// of other databases, of autovacuum and of the holders of
/// [`WRITES_NO_EVENTS`]. `pg_stat_activity` is read once per transaction
/// (PostgreSQL keeps what the first read saw until the transaction ends),
/// `pg_locks` as it is now; both after the snapshot was taken. A lock seen
/// held is held by the transaction the session showed, if that one still
/// runs: the lock is taken before the id exists.
async fn excluded(tx: &mut sqlx::Transaction<'static, sqlx::Any>) -> Result<std::collections::HashSet<i64>> {
    let rows = sqlx::query(
        "SELECT a.backend_xid::text::bigint AS x FROM pg_stat_activity a WHERE a.backend_xid IS NOT NULL \
         AND (a.datname IS DISTINCT FROM current_database() OR a.backend_type = 'autovacuum worker' \
         OR EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory' \
         AND l.classid = 1348825708::oid AND l.objid = 1::oid AND l.objsubid = 2 AND l.granted))",
    )
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(|r| Ok(r.try_get::<i64, _>("x")?)).collect()
}

/// The transactions of `snapshot` still running, read after [`excluded`]:
/// (full id, 32-bit id).
async fn running(tx: &mut sqlx::Transaction<'static, sqlx::Any>, snapshot: &str) -> Result<Vec<(i64, i64)>> {
    let rows = sqlx::query(
        "SELECT x::text::bigint AS x, x::xid::text::bigint AS short FROM pg_snapshot_xip($1::text::pg_snapshot) AS x \
         WHERE pg_xact_status(x) = 'in progress'",
    )
    .bind(snapshot)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get::<i64, _>("x")?, r.try_get::<i64, _>("short")?)))
        .collect()
}

/// The snapshot's `xmax`, or the oldest of the `running` transactions
/// (full id, 32-bit id) that is not `excluded` (32-bit ids), if lower.
fn bound(xmax: i64, running: &[(i64, i64)], excluded: &std::collections::HashSet<i64>) -> i64 {
    running
        .iter()
        .filter(|(_, short)| !excluded.contains(short))
        .map(|(x, _)| *x)
        .fold(xmax, i64::min)
}

impl SqlStore {
    /// Marks the customers of the events stored since the last run for
    /// rescoring. Returns the customers marked. Another replica marking at
    /// the same moment makes this a no-op on PostgreSQL: it marks the same
    /// events.
    pub async fn mark_new_events(&self) -> Result<u64> {
        match self.dialect() {
            Dialect::Sqlite => self.mark_new_events_sqlite().await,
            Dialect::Postgres => crate::sql::retry_conflicts(|| self.mark_new_events_once()).await,
        }
    }

    /// SQLite: the events up to the newest when it starts, a slice of
    /// [`SQLITE_SLICE`] at a time, each in a transaction of its own on
    /// sqlx's write connection, so that ingest's groups take turns with
    /// the slices of a flood's backlog.
    async fn mark_new_events_sqlite(&self) -> Result<u64> {
        let mut marked = 0;
        let mut newest = None;
        loop {
            let mut tx = self.pools.write.begin().await?;
            // Read inside the write transaction: no other writer runs while
            // it holds sqlx's one write connection (nor the events API's,
            // which holds it too while it writes).
            let row = sqlx::query(
                "SELECT through, (SELECT COALESCE(MAX(seq), 0) + 1 FROM events) AS bound \
                 FROM event_marks WHERE id = 1",
            )
            .fetch_one(&mut *tx)
            .await?;
            let (through, bound): (i64, i64) = (row.try_get("through")?, row.try_get("bound")?);
            let bound = bound.min(*newest.get_or_insert(bound));
            let slice_end = bound.min(through.saturating_add(SQLITE_SLICE));
            if slice_end <= through {
                return Ok(marked);
            }
            marked += mark_range(&mut tx, Dialect::Sqlite, through, slice_end).await?;
            tx.commit().await?;
        }
    }

    async fn mark_new_events_once(&self) -> Result<u64> {
        let mut tx = self.pools.write.begin().await?;
        // The marker stores no event: the claims beside it need not wait.
        sqlx::query(WRITES_NO_EVENTS).execute(&mut *tx).await?;
        // Grouping the events of a flood by customer took more than the
        // default 4 MB of working memory and spilled to temporary files
        // (350 MB written in one benchmark run): one marker runs at a time.
        sqlx::query(MARKER_WORK_MEM).execute(&mut *tx).await?;
        let row = sqlx::query(
            "SELECT through, pg_current_snapshot()::text AS snapshot, \
             pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax, \
             pg_current_xact_id()::text::bigint AS current \
             FROM event_marks WHERE id = 1 FOR UPDATE SKIP LOCKED",
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(0);
        };
        let (through, snapshot, xmax, current): (i64, String, i64, i64) = (
            row.try_get("through")?,
            row.try_get("snapshot")?,
            row.try_get("xmax")?,
            row.try_get("current")?,
        );
        if through > current {
            let marked = rebase(&mut tx, through, current).await?;
            tx.commit().await?;
            return Ok(marked);
        }
        let bound = next_statements_bound(&mut tx, &snapshot, xmax).await?;
        if bound <= through {
            return Ok(0);
        }
        let marked = mark_range(&mut tx, Dialect::Postgres, through, bound).await?;
        tx.commit().await?;
        Ok(marked)
    }
}

/// Marks the customers of the events from `from` to `to` ([`mark_sql`]).
/// Returns the customers marked.
async fn mark(tx: &mut sqlx::Transaction<'static, sqlx::Any>, dialect: Dialect, from: i64, to: i64) -> Result<u64> {
    Ok(sqlx::query(&mark_sql(dialect))
        .bind(from)
        .bind(to)
        .execute(&mut **tx)
        .await?
        .rows_affected())
}

/// Marks the customers of the events from `through` to `bound` and moves
/// the marker's position to `bound` (never back). Returns the customers
/// marked.
async fn mark_range(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    dialect: Dialect,
    through: i64,
    bound: i64,
) -> Result<u64> {
    let marked = mark(tx, dialect, through, bound).await?;
    sqlx::query("UPDATE event_marks SET through = CASE WHEN through > $1 THEN through ELSE $1 END WHERE id = 1")
        .bind(bound)
        .execute(&mut **tx)
        .await?;
    Ok(marked)
}

/// After a restore into a cluster whose transaction ids are behind the
/// source's: renumbers every event as folded (1) or not (2), every stored
/// rollup's bound to 2, marks the customers of the events not folded (a
/// claim before this may have cleared their marks without folding them,
/// its bound being below theirs), and starts the marker at the current id.
async fn rebase(tx: &mut sqlx::Transaction<'static, sqlx::Any>, through: i64, current: i64) -> Result<u64> {
    tracing::warn!(
        marker_through = through,
        current_transaction = current,
        "the events' transaction ids are ahead of this database's (restored into another cluster?): renumbering them"
    );
    sqlx::query(
        "UPDATE events e SET xid = CASE WHEN e.xid >= COALESCE((SELECT b.folded_xid FROM rollup_blobs b \
         WHERE b.customer_id = e.customer_id AND b.workspace_id = e.workspace_id), 0) THEN 2 ELSE 1 END",
    )
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE rollup_blobs SET folded_xid = 2")
        .execute(&mut **tx)
        .await?;
    let marked = mark(tx, Dialect::Postgres, 2, 3).await?;
    sqlx::query("UPDATE event_marks SET through = $1 WHERE id = 1")
        .bind(current)
        .execute(&mut **tx)
        .await?;
    Ok(marked)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bound is the snapshot's `xmax` or the oldest running transaction
    /// that may store events, by its full id; the excluded ones are known
    /// by their 32-bit ids (a session shows no more), which differ from the
    /// full ones after the first wraparound.
    #[test]
    fn the_bound_is_the_oldest_running_transaction_that_may_store_events() {
        let epoch = 1_i64 << 32;
        let running = [(epoch + 100, 100), (epoch + 105, 105), (epoch + 103, 103)];
        let none = std::collections::HashSet::new();
        assert_eq!(bound(epoch + 110, &running, &none), epoch + 100);
        let other_databases = std::collections::HashSet::from([100, 103]);
        assert_eq!(bound(epoch + 110, &running, &other_databases), epoch + 105);
        let all = std::collections::HashSet::from([100, 103, 105]);
        assert_eq!(
            bound(epoch + 110, &running, &all),
            epoch + 110,
            "nothing running counts: xmax"
        );
        assert_eq!(bound(epoch + 90, &[], &none), epoch + 90);
    }
}
