//! The events API's writes on PostgreSQL: each group of batches
//! ([`crate::ingest_queue`]) in one transaction of a few statements whose
//! rows travel as arrays (`UNNEST`), through a small pool of sqlx's native
//! PostgreSQL driver (the `Any` driver has no array binds).
//!
//! Why: a batch of 1,000 events was ~10 statements of 500-row `VALUES`
//! lists (3,500 parameters each, parsed and planned every time). Here a
//! group is two statements whatever its size: find the customers, insert
//! the events (`ON CONFLICT DO NOTHING RETURNING` says which were new,
//! exactly, even with other replicas writing the same ids).
//!
//! Nothing else is written (a backfill's group also touches its
//! workspace's open events import): no lock on the customers' rows, no
//! mark. Each event carries its transaction's id and its import, and the
//! marker marks its customer for rescoring once that transaction is
//! certainly over ([`crate::event_marks`]). Before, each group locked and
//! marked its customers' `rollups` rows, and concurrent groups, which at
//! 100,000 customers always share some, waited for each other's commits
//! (BENCHMARKS.md, tenth session).
//!
//! The statements are prepared once per connection; each run is still
//! planned with its arrays (every PostgreSQL connection of Perly sets
//! `plan_cache_mode = force_custom_plan`, see [`crate::db::POSTGRES_SESSION`]):
//! a cached generic plan cannot see the arrays' sizes, and one made while
//! the customers table was still filling (no statistics yet) joined 4,000
//! ids against all 100,000 customers row by row, 28 s a statement. Planned
//! with its arrays, the join is a hash or index join (14–80 ms for 1,000
//! ids at 100,000 customers).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use perly_domain::ids::CustomerId;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use crate::ingest_queue::{Batch, GroupWriter};
use crate::sql::{ms, parse, retry_conflicts, ImportOf};
use crate::{IngestOutcome, Result};

/// Writer tasks: groups in flight at once (one lane left the other core
/// idle while a group's statements travelled).
pub(crate) const LANES: usize = 4;
/// Events per group at most: about one request's batch.
pub(crate) const GROUP_EVENTS: usize = 1_000;
/// Connections of the ingest pool: one per lane.
const CONNECTIONS: u32 = LANES as u32;

pub(crate) struct PostgresWriter {
    pool: PgPool,
}

impl PostgresWriter {
    /// A pool that connects on first use, with the same acquire timeout as
    /// the store's ([`crate::db::POSTGRES_ACQUIRE_TIMEOUT`]: an outage is a
    /// 503 within seconds).
    pub(crate) fn connect_lazy(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(CONNECTIONS)
            .acquire_timeout(crate::db::POSTGRES_ACQUIRE_TIMEOUT)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::Executor::execute(conn, crate::db::POSTGRES_SESSION).await?;
                    Ok(())
                })
            })
            .connect_lazy(url)?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl GroupWriter for PostgresWriter {
    async fn write(&self, group: Vec<Arc<Batch>>) -> Result<Vec<Vec<IngestOutcome>>> {
        retry_conflicts(|| async {
            let mut tx = self.pool.begin().await?;
            let out = store(&mut tx, &group).await?;
            tx.commit().await?;
            Ok(out)
        })
        .await
    }
}

/// A row to insert: (batch, row) in the group.
type At = (usize, usize);

async fn store(tx: &mut Transaction<'static, Postgres>, group: &[Arc<Batch>]) -> Result<Vec<Vec<IngestOutcome>>> {
    let mut outcomes: Vec<Vec<IngestOutcome>> = group
        .iter()
        .map(|b| vec![IngestOutcome::UnknownCustomer; b.rows.len()])
        .collect();

    // Each batch's workspace as text, once.
    let wss_of: Vec<String> = group.iter().map(|b| b.ws.to_string()).collect();

    // The customers, by workspace and external id.
    let mut wanted: Vec<(&str, &str)> = Vec::new();
    for (b, ws) in group.iter().zip(&wss_of) {
        wanted.extend(b.rows.iter().map(|r| (ws.as_str(), r.customer.as_str())));
    }
    wanted.sort_unstable();
    wanted.dedup();
    let (wss, externals): (Vec<String>, Vec<String>) =
        wanted.into_iter().map(|(w, e)| (w.to_owned(), e.to_owned())).unzip();
    let found: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT c.workspace_id, c.external_id, c.id FROM customers c \
         JOIN UNNEST($1::text[], $2::text[]) AS w(workspace_id, external_id) \
         ON c.workspace_id = w.workspace_id AND c.external_id = w.external_id WHERE c.archived_at IS NULL",
    )
    .bind(&wss)
    .bind(&externals)
    .fetch_all(&mut **tx)
    .await?;
    let mut customers: HashMap<(&str, &str), CustomerId> = HashMap::with_capacity(found.len());
    for (ws, external, id) in &found {
        customers.insert((ws.as_str(), external.as_str()), parse("customer id", id)?);
    }

    // The first row of each (workspace, id) in the group, of a known customer.
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    let mut rows: Vec<(At, CustomerId)> = Vec::new();
    for (bi, b) in group.iter().enumerate() {
        let ws = wss_of[bi].as_str();
        for (ri, r) in b.rows.iter().enumerate() {
            let Some(cid) = customers.get(&(ws, r.customer.as_str())) else {
                continue;
            };
            if !seen.insert((ws, r.event_id.as_str())) {
                outcomes[bi][ri] = IngestOutcome::Duplicate;
                continue;
            }
            rows.push(((bi, ri), *cid));
        }
    }

    // Each row's import (NULL for live data): the marker
    // ([`crate::event_marks`]) marks its customer from it.
    let now = group.iter().map(|b| ms(b.now)).max().unwrap_or_default();
    let mut events_imports: HashMap<&str, String> = HashMap::new();
    let mut c_import: Vec<Option<String>> = Vec::with_capacity(rows.len());
    for ((bi, ri), _) in &rows {
        let (b, r) = (&group[*bi], &group[*bi].rows[*ri]);
        let ws = wss_of[*bi].as_str();
        c_import.push(match b.origin.import_of(!r.late) {
            ImportOf::Live => None,
            ImportOf::Import(id) => Some(id.to_string()),
            ImportOf::EventsImport => Some(match events_imports.get(ws) {
                Some(id) => id.clone(),
                None => {
                    let id = events_import(tx, ws, now).await?;
                    events_imports.insert(ws, id.clone());
                    id
                }
            }),
        });
    }

    // Insert; the rows that come back were new.
    let n = rows.len();
    let (mut c_ws, mut c_id, mut c_customer, mut c_kind, mut c_at, mut c_received, mut c_payload) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for ((bi, ri), cid) in &rows {
        let (b, r) = (&group[*bi], &group[*bi].rows[*ri]);
        c_ws.push(wss_of[*bi].as_str());
        c_id.push(r.event_id.as_str());
        c_customer.push(cid.to_string());
        c_kind.push(r.kind);
        c_at.push(r.occurred_at);
        c_received.push(ms(b.now));
        c_payload.push(r.payload.as_str());
    }
    let stored: Vec<(String, String)> = sqlx::query_as(
        "INSERT INTO events (workspace_id, event_id, customer_id, type, occurred_at, received_at, payload, import_id) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::text[], \
         $8::text[]) ON CONFLICT (workspace_id, event_id) DO NOTHING RETURNING workspace_id, event_id",
    )
    .bind(&c_ws)
    .bind(&c_id)
    .bind(&c_customer)
    .bind(&c_kind)
    .bind(&c_at)
    .bind(&c_received)
    .bind(&c_payload)
    .bind(&c_import)
    .fetch_all(&mut **tx)
    .await?;
    let stored: HashSet<(&str, &str)> = stored.iter().map(|(w, e)| (w.as_str(), e.as_str())).collect();
    for ((bi, ri), _) in &rows {
        let new = stored.contains(&(wss_of[*bi].as_str(), group[*bi].rows[*ri].event_id.as_str()));
        outcomes[*bi][*ri] = if new {
            IngestOutcome::Accepted
        } else {
            IngestOutcome::Duplicate
        };
    }
    Ok(outcomes)
}

/// How stale the open events import's `last_activity_at` may get before a
/// group writes it again. Imports close after a minute without activity
/// (`IMPORT_QUIET`); a group that wrote it every time held the import's
/// row locked until its commit, and every lane with history waited for it.
const TOUCH_EVERY_MS: i64 = 1_000;

/// The workspace's open events import, started if there is none (as
/// `imports::events_import`). Its activity time is written only when it is
/// over [`TOUCH_EVERY_MS`] old: an import seen active within the last
/// second is not closed for the next 59 seconds.
async fn events_import(tx: &mut Transaction<'static, Postgres>, ws: &str, now: i64) -> Result<String> {
    let fresh: Option<(String,)> = sqlx::query_as(crate::imports::FRESH_EVENTS_IMPORT)
        .bind(ws)
        .bind(now - TOUCH_EVERY_MS)
        .fetch_optional(&mut **tx)
        .await?;
    if let Some((id,)) = fresh {
        return Ok(id);
    }
    let open: Option<(String,)> = sqlx::query_as(crate::imports::TOUCH_EVENTS_IMPORT)
        .bind(now)
        .bind(ws)
        .fetch_optional(&mut **tx)
        .await?;
    if let Some((id,)) = open {
        return Ok(id);
    }
    let id = perly_domain::ids::ImportId::new().to_string();
    sqlx::query(crate::imports::INSERT_IMPORT)
        .bind(&id)
        .bind(ws)
        .bind(perly_domain::imports::ImportSource::Events.as_str())
        .bind(crate::imports::EVENTS_IMPORT_LABEL)
        .bind("open")
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(id)
}
