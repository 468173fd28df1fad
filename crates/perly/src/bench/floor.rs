//! The floor under `perly bench ingest` on SQLite, measured in the same run:
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

    // Rows built before the clock starts, as the load generator's bodies are.
    let ws = WorkspaceId::new().to_string();
    let mut ids: HashMap<&str, String> = HashMap::new();
    let received = received.timestamp_millis();
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
