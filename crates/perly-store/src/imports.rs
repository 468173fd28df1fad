//! Imports: history that is scored and recorded but summarised to channels
//! once, not sent alert by alert (see [`perly_domain::imports`]).
//!
//! An import is `open` while it may still grow (an events import: until no
//! batch has joined it for a quiet period), `closed` once complete, and
//! `settled` once none of its customers waits for rescoring: then its
//! summary is written and each channel whose rules match at least one of
//! its alerts gets one notice in the delivery outbox, in one transaction.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use perly_domain::channels::{decide, ChannelRules, Decision};
use perly_domain::ids::{DeliveryId, ImportId, NoticeId, WorkspaceId};
use perly_domain::imports::{channel_notice, ImportSource, ImportSummary, ImportedAlert, KindCount, LevelCount, TOP};
use perly_domain::risk::RiskLevel;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::db::Dialect;
use crate::model::ImportRecord;
use crate::sql::{corrupt, ms, parse, retry_conflicts, time, SqlStore};
use crate::Result;

type Tx = Transaction<'static, Any>;

/// Imports as the rest of Perly uses them.
#[async_trait]
pub trait Imports: Send + Sync {
    /// Workspaces with an import not settled yet (the rescoring worker's
    /// schedule for [`Imports::settle_imports`]).
    async fn workspaces_with_imports(&self) -> Result<Vec<WorkspaceId>>;
    /// Closes events imports no batch joined since `quiet_since`, then
    /// settles every closed import none of whose customers waits for
    /// rescoring. Returns how many settled.
    async fn settle_imports(&self, ws: WorkspaceId, quiet_since: DateTime<Utc>, now: DateTime<Utc>) -> Result<usize>;
    /// Newest first.
    async fn list_imports(&self, ws: WorkspaceId, limit: usize) -> Result<Vec<ImportRecord>>;
}

/// Starts an import in the caller's transaction.
/// Starts an import: id, workspace, source, label, state, now.
pub(crate) const INSERT_IMPORT: &str =
    "INSERT INTO imports (id, workspace_id, source, label, state, started_at, last_activity_at, closed_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $6, CASE WHEN $5 = 'closed' THEN $6 ELSE NULL END)";
/// The open events import of a workspace ($2) has seen activity now ($1).
pub(crate) const TOUCH_EVENTS_IMPORT: &str =
    "UPDATE imports SET last_activity_at = $1 WHERE workspace_id = $2 AND source = 'events' AND state = 'open' \
     RETURNING id";
/// The open events import of a workspace ($1) if it saw activity after $2:
/// read without a lock, for writers that need not write the time again.
pub(crate) const FRESH_EVENTS_IMPORT: &str = "SELECT id FROM imports WHERE workspace_id = $1 AND source = 'events' \
     AND state = 'open' AND last_activity_at > $2 ORDER BY started_at DESC LIMIT 1";
pub(crate) const EVENTS_IMPORT_LABEL: &str = "History through the events API";

pub(crate) async fn create_import(
    tx: &mut Tx,
    ws: WorkspaceId,
    source: ImportSource,
    label: &str,
    state: &str,
    now: DateTime<Utc>,
) -> Result<ImportId> {
    let id = ImportId::new();
    sqlx::query(INSERT_IMPORT)
        .bind(id.to_string())
        .bind(ws.to_string())
        .bind(source.as_str())
        .bind(label.to_owned())
        .bind(state.to_owned())
        .bind(ms(now))
        .execute(&mut **tx)
        .await?;
    Ok(id)
}

/// The workspace's open events import (history arriving through the events
/// API), started if there is none; either way it has seen activity `now`.
pub(crate) async fn events_import(tx: &mut Tx, ws: WorkspaceId, now: DateTime<Utc>) -> Result<ImportId> {
    let row = sqlx::query(TOUCH_EVENTS_IMPORT)
        .bind(ms(now))
        .bind(ws.to_string())
        .fetch_optional(&mut **tx)
        .await?;
    match row {
        Some(r) => parse("import id", &r.try_get::<String, _>("id")?),
        None => create_import(tx, ws, ImportSource::Events, EVENTS_IMPORT_LABEL, "open", now).await,
    }
}

fn import_from(r: &AnyRow) -> Result<ImportRecord> {
    let summary = match r.try_get::<Option<String>, _>("summary")? {
        Some(s) => Some(serde_json::from_str(&s).map_err(|e| corrupt("import summary", e))?),
        None => None,
    };
    Ok(ImportRecord {
        id: parse("import id", &r.try_get::<String, _>("id")?)?,
        source: parse("import source", &r.try_get::<String, _>("source")?)?,
        label: r.try_get("label")?,
        state: r.try_get("state")?,
        started_at: time(r.try_get("started_at")?),
        closed_at: r.try_get::<Option<i64>, _>("closed_at")?.map(time),
        settled_at: r.try_get::<Option<i64>, _>("settled_at")?.map(time),
        summary,
    })
}

/// An import's customers by risk level (count, MRR), for its summary.
///
/// Each customer is found by its key from the import's rollups, never by
/// walking the workspace's customers: PostgreSQL without fresh statistics
/// (a big import, settled before the next `ANALYZE`) planned the join as a
/// walk of the workspace's customers with a scan of the import's rollups
/// for each one, 3 s at 5,000 customers and growing with the square. On
/// PostgreSQL the customer is a `LATERAL` subquery whose only condition is
/// the key (`OFFSET 0` keeps the other conditions out of it, so no index on
/// the workspace can serve it); SQLite's `CROSS JOIN` keeps the rollups
/// outside.
pub(crate) fn import_levels_sql(dialect: Dialect) -> String {
    let from = match dialect {
        Dialect::Postgres => {
            "FROM rollups r CROSS JOIN LATERAL (SELECT workspace_id, risk_level, mrr, archived_at FROM customers \
             WHERE id = r.customer_id OFFSET 0) c"
        }
        Dialect::Sqlite => "FROM rollups r CROSS JOIN customers c ON c.id = r.customer_id",
    };
    format!(
        "SELECT c.risk_level, COUNT(*) AS n, SUM(COALESCE(c.mrr, 0.0)) AS mrr {from} \
         WHERE r.workspace_id = $1 AND r.last_import = $2 AND c.workspace_id = r.workspace_id \
         AND c.archived_at IS NULL GROUP BY c.risk_level"
    )
}

/// The workspace's (`$1`) closed imports that nothing waits for: no
/// customer marked for them, and none of their events past the marker's
/// position (the marker marks customers after the fact, see
/// `event_marks`; the pass that settles ran the marker before its claims).
/// Those events are read by their position (on SQLite the workspace column
/// is kept out of the plan: by the customer index it read every event of
/// the workspace).
fn ready_imports_sql(dialect: Dialect) -> String {
    let position = crate::event_marks::position_column(dialect);
    format!(
        "SELECT i.id, i.label FROM imports i WHERE i.workspace_id = $1 AND i.state = 'closed' AND NOT EXISTS \
         (SELECT 1 FROM rollups r WHERE r.workspace_id = $1 AND r.dirty = 1 AND r.dirty_import = i.id) \
         AND NOT EXISTS (SELECT 1 FROM events e WHERE e.{position} >= (SELECT through FROM event_marks WHERE id = 1) \
         AND {} = $1 AND e.import_id = i.id) ORDER BY i.started_at",
        dialect.unindexed("e.workspace_id")
    )
}

impl SqlStore {
    async fn settle_imports_once(
        &self,
        ws: WorkspaceId,
        quiet_since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        let ws_s = ws.to_string();
        let mut tx = self.pools.write.begin().await?;
        sqlx::query(
            "UPDATE imports SET state = 'closed', closed_at = $3 WHERE workspace_id = $1 AND state = 'open' \
             AND source = 'events' AND last_activity_at < $2",
        )
        .bind(ws_s.clone())
        .bind(ms(quiet_since))
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
        let ready = sqlx::query(&ready_imports_sql(self.dialect()))
            .bind(ws_s.clone())
            .fetch_all(&mut *tx)
            .await?;
        let mut settled = 0;
        for r in ready {
            let id: String = r.try_get("id")?;
            let label: String = r.try_get("label")?;
            self.settle(&mut tx, ws, &id, &label, now).await?;
            settled += 1;
        }
        tx.commit().await?;
        Ok(settled)
    }

    /// Writes an import's summary and its channels' notices.
    async fn settle(&self, tx: &mut Tx, ws: WorkspaceId, id: &str, label: &str, now: DateTime<Utc>) -> Result<()> {
        let ws_s = ws.to_string();
        let mut levels = Vec::new();
        for r in sqlx::query(&import_levels_sql(self.dialect()))
            .bind(ws_s.clone())
            .bind(id.to_owned())
            .fetch_all(&mut **tx)
            .await?
        {
            let risk_level = match r.try_get::<Option<String>, _>("risk_level")? {
                Some(s) => Some(parse::<RiskLevel>("risk level", &s)?),
                None => None,
            };
            levels.push(LevelCount {
                risk_level,
                customers: r.try_get::<i64, _>("n")?.max(0) as u64,
                mrr: r.try_get::<Option<f64>, _>("mrr")?.unwrap_or(0.0),
            });
        }
        levels.sort_by_key(|l| std::cmp::Reverse(l.risk_level));
        let mut alerts = Vec::new();
        // Where each customer stands now (the summary's top list).
        let mut current: HashMap<String, Option<(i64, RiskLevel)>> = HashMap::new();
        for r in sqlx::query(
            "SELECT a.kind, a.risk_level, a.delta, a.score, c.external_id, c.name, c.mrr, \
             c.score AS now_score, c.risk_level AS now_risk FROM alerts a \
             JOIN customers c ON c.id = a.customer_id AND c.workspace_id = a.workspace_id \
             WHERE a.workspace_id = $1 AND a.import_id = $2 ORDER BY a.occurred_at, a.id",
        )
        .bind(ws_s.clone())
        .bind(id.to_owned())
        .fetch_all(&mut **tx)
        .await?
        {
            let now_risk = match r.try_get::<Option<String>, _>("now_risk")? {
                Some(l) => Some(parse::<RiskLevel>("risk level", &l)?),
                None => None,
            };
            let now_score: Option<i64> = r.try_get("now_score")?;
            current.insert(r.try_get::<String, _>("external_id")?, now_score.zip(now_risk));
            alerts.push(ImportedAlert {
                kind: parse("alert kind", &r.try_get::<String, _>("kind")?)?,
                risk_level: parse("risk level", &r.try_get::<String, _>("risk_level")?)?,
                delta: r.try_get("delta")?,
                score: r.try_get("score")?,
                customer_external_id: r.try_get("external_id")?,
                customer_name: r.try_get("name")?,
                mrr: r.try_get("mrr")?,
            });
        }
        let mut kinds: HashMap<_, u64> = HashMap::new();
        for a in &alerts {
            *kinds.entry(a.kind).or_default() += 1;
        }
        let mut kinds: Vec<KindCount> = kinds
            .into_iter()
            .map(|(kind, alerts)| KindCount { kind, alerts })
            .collect();
        kinds.sort_by_key(|k| k.kind);
        let mut top: Vec<ImportedAlert> = alerts.iter().filter(|a| a.risk_level.is_at_risk()).cloned().collect();
        top.sort_by(|a, b| b.mrr.unwrap_or(0.0).total_cmp(&a.mrr.unwrap_or(0.0)));
        let mut seen = std::collections::HashSet::new();
        top.retain(|a| seen.insert(a.customer_external_id.clone()));
        top.truncate(TOP);
        // Summaries name where each customer stands now, not the score of
        // the alert (a replayed one may be weeks old).
        let standing = |a: &ImportedAlert| {
            let mut a = a.clone();
            if let Some(Some((score, risk))) = current.get(&a.customer_external_id) {
                a.score = *score;
                a.risk_level = *risk;
            }
            a
        };
        let top: Vec<ImportedAlert> = top.iter().map(standing).collect();
        let summary = ImportSummary {
            levels,
            alerts: kinds,
            top,
        };
        // One notice per channel whose rules match at least one alert.
        let channels =
            sqlx::query("SELECT id, rules FROM channels WHERE workspace_id = $1 AND enabled = 1 ORDER BY id")
                .bind(ws_s.clone())
                .fetch_all(&mut **tx)
                .await?;
        for c in channels {
            let channel: String = c.try_get("id")?;
            let rules: ChannelRules =
                serde_json::from_str(&c.try_get::<String, _>("rules")?).map_err(|e| corrupt("channel rules", e))?;
            let mut run_at: Option<DateTime<Utc>> = None;
            let matched: Vec<ImportedAlert> = alerts
                .iter()
                .filter(|a| match decide(&rules, a.kind, a.risk_level, a.delta, now) {
                    Decision::SendAt(at) => {
                        run_at = Some(run_at.map_or(at, |t| t.min(at)));
                        true
                    }
                    Decision::Skip => false,
                })
                .cloned()
                .collect();
            let Some(run_at) = run_at else { continue };
            let shown: Vec<ImportedAlert> = matched.iter().map(standing).collect();
            let text = channel_notice(label, &summary, &shown);
            let notice = NoticeId::new().to_string();
            sqlx::query(
                "INSERT INTO notices (id, workspace_id, import_id, title, lines, more, risk_level, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(notice.clone())
            .bind(ws_s.clone())
            .bind(id.to_owned())
            .bind(text.title.clone())
            .bind(serde_json::to_string(&text.lines).map_err(|e| corrupt("notice", e))?)
            .bind(text.more.clone())
            .bind(text.risk_level.map(|l| l.as_str()))
            .bind(ms(now))
            .execute(&mut **tx)
            .await?;
            sqlx::query(
                "INSERT INTO deliveries (id, workspace_id, channel_id, alert_id, notice_id, state, held, run_at, created_at) \
                 VALUES ($1, $2, $3, NULL, $4, 'pending', $5, $6, $7)",
            )
            .bind(DeliveryId::new().to_string())
            .bind(ws_s.clone())
            .bind(channel.clone())
            .bind(notice)
            .bind(i64::from(run_at > now))
            .bind(ms(run_at))
            .bind(ms(now))
            .execute(&mut **tx)
            .await?;
            crate::channels::mark_due(tx, ws, &channel, ms(run_at)).await?;
        }
        sqlx::query(
            "UPDATE imports SET state = 'settled', settled_at = $3, summary = $4 WHERE workspace_id = $1 AND id = $2",
        )
        .bind(ws_s)
        .bind(id.to_owned())
        .bind(ms(now))
        .bind(serde_json::to_string(&summary).map_err(|e| corrupt("import summary", e))?)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

#[async_trait]
impl Imports for SqlStore {
    async fn workspaces_with_imports(&self) -> Result<Vec<WorkspaceId>> {
        sqlx::query("SELECT DISTINCT workspace_id FROM imports WHERE state IN ('open', 'closed')")
            .fetch_all(&self.pools.read)
            .await?
            .iter()
            .map(|r| parse("workspace id", &r.try_get::<String, _>("workspace_id")?))
            .collect()
    }

    async fn settle_imports(&self, ws: WorkspaceId, quiet_since: DateTime<Utc>, now: DateTime<Utc>) -> Result<usize> {
        retry_conflicts(|| self.settle_imports_once(ws, quiet_since, now)).await
    }

    async fn list_imports(&self, ws: WorkspaceId, limit: usize) -> Result<Vec<ImportRecord>> {
        sqlx::query(
            "SELECT id, source, label, state, started_at, closed_at, settled_at, summary FROM imports \
             WHERE workspace_id = $1 ORDER BY started_at DESC, id DESC LIMIT $2",
        )
        .bind(ws.to_string())
        .bind(limit.clamp(1, 100) as i64)
        .fetch_all(&self.pools.read)
        .await?
        .iter()
        .map(import_from)
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On SQLite an import's events not marked yet are found from the
    /// marker's position on (a range of `seq`), not among all of the
    /// workspace's events by the customer index.
    #[tokio::test]
    async fn ready_imports_read_only_the_events_past_the_marker_on_sqlite() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}/plan.db", dir.path().display());
        let pools = crate::db::connect(&url).await.expect("migrate");
        let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {}", ready_imports_sql(Dialect::Sqlite)))
            .bind("w")
            .fetch_all(&pools.read)
            .await
            .expect("plan")
            .iter()
            .map(|r| r.try_get::<String, _>("detail"))
            .collect::<std::result::Result<_, _>>()
            .expect("steps");
        assert!(
            plan.iter().any(|s| s == "SEARCH e USING INTEGER PRIMARY KEY (rowid>?)"),
            "{plan:#?}"
        );
    }

    const CUSTOMERS: i64 = 5_000;

    /// `CUSTOMERS` customers of one import, written behind the store's back so no
    /// statistics exist (as after a big import, before the next `ANALYZE`).
    /// The summary's count is right, and each customer is found by its key:
    /// the old join walked the workspace's customers and scanned the
    /// import's rollups for each (3 s here, growing with the square).
    async fn levels_of_a_big_import(url: &str, dialect: Dialect) {
        let pools = crate::db::connect(url).await.expect("migrate");
        let mut conn = pools.write.acquire().await.expect("connection");
        let ws = WorkspaceId::new().to_string();
        sqlx::query("INSERT INTO workspaces (id, name, slug, created_at) VALUES ($1, 'W', 'w', 0)")
            .bind(ws.clone())
            .execute(&mut *conn)
            .await
            .expect("workspace");
        sqlx::query(
            "INSERT INTO customers (id, workspace_id, external_id, name, risk_level, mrr, created_at, updated_at) \
             SELECT 'c-' || n, $1, 'e-' || n, 'C', CASE WHEN n % 2 = 0 THEN 'high' ELSE 'low' END, 10.0, 0, 0 \
             FROM (WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < $2) SELECT n FROM s) AS g",
        )
        .bind(ws.clone())
        .bind(CUSTOMERS)
        .execute(&mut *conn)
        .await
        .expect("customers");
        sqlx::query(
            "INSERT INTO rollups (customer_id, workspace_id, data, version, dirty, updated_at, last_import) \
             SELECT id, workspace_id, $2, 1, 0, 0, 'imp' FROM customers WHERE workspace_id = $1",
        )
        .bind(ws.clone())
        .bind(Vec::<u8>::new())
        .execute(&mut *conn)
        .await
        .expect("rollups");
        let sql = import_levels_sql(dialect);
        // PostgreSQL's plan is one text column a line; SQLite's steps are
        // the fourth column of its query plan.
        let (explain, column) = match dialect {
            Dialect::Postgres => ("EXPLAIN", 0),
            Dialect::Sqlite => ("EXPLAIN QUERY PLAN", 3),
        };
        let plan: Vec<String> = sqlx::query(&format!("{explain} {sql}"))
            .bind(ws.clone())
            .bind("imp")
            .fetch_all(&mut *conn)
            .await
            .expect("explain")
            .iter()
            .map(|r| r.try_get::<String, _>(column).expect("plan line"))
            .collect();
        let by_key = match dialect {
            Dialect::Postgres => {
                plan.iter().any(|l| l.contains("customers_pkey")) && !plan.iter().any(|l| l.contains("Join Filter"))
            }
            Dialect::Sqlite => plan
                .iter()
                .any(|l| l.starts_with("SEARCH c USING INDEX sqlite_autoindex_customers_1 (id=?)")),
        };
        assert!(
            by_key,
            "customers not found by key ({} lines):\n{}",
            plan.len(),
            plan.join("\n")
        );
        let started = std::time::Instant::now();
        let rows = sqlx::query(&sql)
            .bind(ws.clone())
            .bind("imp")
            .fetch_all(&mut *conn)
            .await
            .expect("levels");
        let levels: Vec<(Option<String>, i64, f64)> = rows
            .iter()
            .map(|r| {
                (
                    r.try_get(0).expect("level"),
                    r.try_get(1).expect("n"),
                    r.try_get(2).expect("mrr"),
                )
            })
            .collect();
        assert_eq!(levels.iter().map(|l| l.1).sum::<i64>(), CUSTOMERS, "{levels:?}");
        assert!(
            levels
                .iter()
                .all(|l| l.1 == CUSTOMERS / 2 && (l.2 - 10.0 * (CUSTOMERS / 2) as f64).abs() < 1e-6),
            "{levels:?}"
        );
        eprintln!(
            "{dialect:?}: the levels of {CUSTOMERS} customers in {:?}",
            started.elapsed()
        );
        drop(conn);
        pools.write.close().await;
        pools.read.close().await;
    }

    #[tokio::test]
    async fn an_import_summary_finds_its_customers_by_key_on_sqlite() {
        let dir = tempfile::tempdir().expect("dir");
        levels_of_a_big_import(&format!("sqlite://{}/levels.db", dir.path().display()), Dialect::Sqlite).await;
    }

    #[tokio::test]
    async fn an_import_summary_finds_its_customers_by_key_on_postgres() {
        let Some(url) = std::env::var("PERLY_TEST_DATABASE_URL")
            .ok()
            .filter(|u| u.starts_with("postgres"))
        else {
            return;
        };
        let url = crate::db::create_scratch_postgres(&url)
            .await
            .expect("a fresh database");
        levels_of_a_big_import(&url, Dialect::Postgres).await;
    }
}
