//! The floors under `perly bench ingest`, measured in the same run. SQLite:
//! the same rows (the events of the same request bodies, with the same
//! payload JSON) inserted into the same schema (a database made by Perly's
//! migrations, so the same table and indexes) by a bare rusqlite loop: one
//! prepared statement, one transaction per batch, the writer's pragmas. No
//! HTTP, no JSON parsing, no customer lookup, no duplicate check, no marks:
//! what SQLite itself costs, so the ratio to Perly stands on a noisy day.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Utc};
use perly_domain::event::Event;
use perly_domain::ids::{CustomerId, WorkspaceId};

/// One event as the floors insert it: (event id, customer id, type,
/// occurred at, payload).
type FloorRow = (String, String, &'static str, i64, String);

/// The rows of `batches`, built before a floor's clock starts (as the load
/// generator's bodies are): each external customer id gets a customer id of
/// Perly's form, the payload is the JSON Perly stores.
fn floor_rows(batches: &[Vec<Event>]) -> anyhow::Result<Vec<Vec<FloorRow>>> {
    let mut ids: HashMap<&str, String> = HashMap::new();
    let mut rows = Vec::with_capacity(batches.len());
    for batch in batches {
        let mut out = Vec::with_capacity(batch.len());
        for e in batch {
            let cid = ids
                .entry(e.customer_id.as_str())
                .or_insert_with(|| CustomerId::new().to_string())
                .clone();
            out.push((
                e.id.clone(),
                cid,
                e.kind.type_name(),
                e.occurred_at.timestamp_millis(),
                serde_json::to_string(e)?,
            ));
        }
        rows.push(out);
    }
    Ok(rows)
}

/// Inserts `batches` into a new database in `dir`; answers events/s.
pub async fn sqlite_insert(
    dir: &std::path::Path,
    batches: &[Vec<Event>],
    received: DateTime<Utc>,
) -> anyhow::Result<f64> {
    let path = dir.join("floor.db");
    let url = format!("sqlite://{}", path.display());
    let pools = perly_store::db::connect(&url)
        .await
        .context("migrate the floor database")?;
    pools.write.close().await;
    pools.read.close().await;

    let ws = WorkspaceId::new().to_string();
    let received = received.timestamp_millis();
    let rows = floor_rows(batches)?;
    let events: usize = rows.iter().map(Vec::len).sum();
    tokio::task::spawn_blocking(move || -> anyhow::Result<f64> {
        let mut conn = rusqlite::Connection::open(&path)?;
        conn.execute_batch(
            "PRAGMA synchronous = NORMAL; PRAGMA temp_store = MEMORY; \
             PRAGMA wal_autocheckpoint = 20000; PRAGMA cache_size = -65536;",
        )?;
        let started = Instant::now();
        for batch in &rows {
            let tx = conn.transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO events (workspace_id, event_id, customer_id, type, occurred_at, received_at, payload) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for (id, cid, kind, at, payload) in batch {
                    insert.execute(rusqlite::params![ws, id, cid, kind, at, received, payload])?;
                }
            }
            tx.commit()?;
        }
        Ok(events as f64 / started.elapsed().as_secs_f64())
    })
    .await?
}

/// The table the PostgreSQL floor fills, beside Perly's own in the bench's
/// database, and drops when done.
const PG_FLOOR_TABLE: &str = "perly_bench_floor_events";

/// The floor on PostgreSQL: the same rows inserted into a copy of Perly's
/// `events` table (`LIKE events INCLUDING ALL`: the same columns, defaults
/// and indexes) in the bench's database, by one connection, one
/// transaction and one `INSERT … SELECT FROM UNNEST` of arrays per batch
/// (Perly's own statement shape, without its duplicate check). Answers
/// events/s.
pub async fn postgres_insert(url: &str, batches: &[Vec<Event>], received: DateTime<Utc>) -> anyhow::Result<f64> {
    use sqlx::postgres::PgPoolOptions;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .context("connect for the floor")?;
    sqlx::query(&format!("DROP TABLE IF EXISTS {PG_FLOOR_TABLE}"))
        .execute(&pool)
        .await?;
    sqlx::query(&format!("CREATE TABLE {PG_FLOOR_TABLE} (LIKE events INCLUDING ALL)"))
        .execute(&pool)
        .await?;
    let ws = WorkspaceId::new().to_string();
    let received = received.timestamp_millis();
    let rows = floor_rows(batches)?;
    let events: usize = rows.iter().map(Vec::len).sum();
    let insert = format!(
        "INSERT INTO {PG_FLOOR_TABLE} (workspace_id, event_id, customer_id, type, occurred_at, received_at, payload) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::text[])"
    );
    let started = Instant::now();
    for batch in &rows {
        let n = batch.len();
        let mut tx = pool.begin().await?;
        sqlx::query(&insert)
            .bind(vec![ws.as_str(); n])
            .bind(batch.iter().map(|r| r.0.as_str()).collect::<Vec<_>>())
            .bind(batch.iter().map(|r| r.1.as_str()).collect::<Vec<_>>())
            .bind(batch.iter().map(|r| r.2).collect::<Vec<_>>())
            .bind(batch.iter().map(|r| r.3).collect::<Vec<_>>())
            .bind(vec![received; n])
            .bind(batch.iter().map(|r| r.4.as_str()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    let rate = events as f64 / started.elapsed().as_secs_f64();
    sqlx::query(&format!("DROP TABLE {PG_FLOOR_TABLE}"))
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(rate)
}
