//! What an operator's tools read: a cheap round trip for readiness, and the
//! queue figures `/metrics` shows (the [`Ops`] part of the store, a
//! supertrait of [`crate::Store`]). Everything here is across workspaces
//! and aggregated: no customer, channel or workspace is named.
//!
//! Cost, whatever the size of the data: the rescoring queue is one
//! `COUNT`/`MIN` over the partial index `rollups_dirty` (only dirty rows are
//! in it, so an idle system reads nothing and a 100,000-customer rescore
//! reads 100,000 index entries, a few milliseconds); the outbox is one seek
//! per channel on `deliveries_due` (`(channel_id, state, run_at)`), so it
//! reads the pending rows, never the delivered history; Salesforce is one
//! row per connected org. Measured on PostgreSQL on a busy 2-core machine:
//! 50,000 of 100,000 customers marked, 13 ms (an index-only scan); 10,000
//! pending rows on 50 channels among 400,000 delivered ones, 13 ms (index
//! only, no heap fetch); nothing marked or pending, well under 1 ms.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use perly_domain::alerts::AlertKind;
use perly_domain::channels::Platform;
use perly_domain::salesforce::SyncSettings;
use sqlx::Row;

use crate::sql::{ms, parse, time, SqlStore};
use crate::Result;

/// The operator's view of the store.
#[async_trait]
pub trait Ops: Send + Sync {
    /// One cheap round trip to the database (readiness): fails when the
    /// database cannot be reached or cannot read Perly's tables.
    async fn ping(&self) -> Result<()>;
    /// The queues' figures at `now`, across all workspaces.
    async fn ops_snapshot(&self, now: DateTime<Utc>) -> Result<OpsSnapshot>;
    /// PostgreSQL: `ANALYZE`s each of Perly's tables whose rows changed by
    /// more than a tenth (and 50 rows) since its statistics were last taken,
    /// autovacuum's own threshold, and returns their names. The planner
    /// picks indexes from those statistics: without them (autovacuum turned
    /// off, or a fresh workspace importing 100,000 customers faster than it
    /// comes by) a lookup of one customer by external id was planned as a
    /// walk of a whole-workspace index, ~200 ms instead of 0.05. Where
    /// autovacuum runs, this only comes first. SQLite: nothing (its planner
    /// prefers the index that matches the most columns without statistics).
    async fn refresh_statistics(&self) -> Result<Vec<String>>;
}

/// Queue figures across all workspaces.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpsSnapshot {
    /// Customers marked for rescoring (dirty rollups).
    pub rescore_pending: u64,
    /// When the oldest of those was marked.
    pub rescore_oldest_mark: Option<DateTime<Utc>>,
    /// Pending outbox rows per (platform, channel state); a pair without
    /// channels is left out.
    pub outbox: Vec<OutboxFigures>,
    /// One entry per Salesforce connection.
    pub salesforce: Vec<SalesforceFigures>,
}

/// Whether a channel's rows can go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelState {
    Active,
    /// Paused by an admin.
    Paused,
    /// The vendor said the webhook is gone: held until reconnected.
    Broken,
}

impl ChannelState {
    pub const ALL: [ChannelState; 3] = [Self::Active, Self::Paused, Self::Broken];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Broken => "broken",
        }
    }
}

/// The outbox of the channels of one platform in one state.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxFigures {
    pub platform: Platform,
    pub state: ChannelState,
    /// Channels (with or without pending rows).
    pub channels: u64,
    /// Pending rows (due now, or held for quiet hours or a retry).
    pub pending: u64,
    /// Pending rows already due.
    pub due: u64,
    /// The largest number of pending rows on one channel.
    pub max_channel_pending: u64,
    /// When the longest-waiting due row fell due.
    pub oldest_due: Option<DateTime<Utc>>,
}

/// One Salesforce connection's API usage, as Salesforce last reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct SalesforceFigures {
    pub broken: bool,
    /// The org's API calls in the last 24 hours and its daily maximum.
    pub api_used: Option<u64>,
    pub api_max: Option<u64>,
    /// Perly's share of the maximum (percent).
    pub share_percent: u8,
}

impl SalesforceFigures {
    /// How much of Perly's share of the org's limit is used (1.0: all of
    /// it, when Perly pauses); `None` before Salesforce reported usage.
    pub fn budget_used(&self) -> Option<f64> {
        let (used, max) = (self.api_used?, self.api_max?);
        let allowed = max as f64 * f64::from(self.share_percent) / 100.0;
        (allowed > 0.0).then(|| used as f64 / allowed)
    }
}

/// The new alerts one [`crate::Store::record_scores_tallied`] stored, by
/// kind and news/history (a dedupe key seen before stores nothing and is
/// not counted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordedAlerts {
    /// (kind, news, how many); each pair at most once.
    pub counts: Vec<(AlertKind, bool, usize)>,
}

impl RecordedAlerts {
    pub fn add(&mut self, kind: AlertKind, news: bool) {
        match self.counts.iter_mut().find(|(k, n, _)| *k == kind && *n == news) {
            Some((_, _, count)) => *count += 1,
            None => self.counts.push((kind, news, 1)),
        }
    }

    /// All new alerts.
    pub fn total(&self) -> usize {
        self.counts.iter().map(|(_, _, n)| n).sum()
    }
}

#[async_trait]
impl Ops for SqlStore {
    async fn ping(&self) -> Result<()> {
        // Reads a page of a real table, so a database that accepts
        // connections but lost Perly's schema is not ready either.
        sqlx::query("SELECT 1 FROM workspaces LIMIT 1")
            .fetch_optional(&self.pools.read)
            .await?;
        Ok(())
    }

    async fn refresh_statistics(&self) -> Result<Vec<String>> {
        if self.dialect() == crate::db::Dialect::Sqlite {
            return Ok(Vec::new());
        }
        // `n_live_tup` counts inserts since the table was made, whether or
        // not it was ever analyzed; `n_mod_since_analyze` every insert,
        // update and delete since the last `ANALYZE` (or ever).
        let stale: Vec<(String, String)> = sqlx::query(
            "SELECT relname::text AS relname, format('%I.%I', schemaname, relname) AS quoted FROM pg_stat_user_tables \
             WHERE schemaname = current_schema() AND n_mod_since_analyze > 50 + n_live_tup / 10 ORDER BY relname",
        )
        .fetch_all(&self.pools.read)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("relname")?, r.try_get("quoted")?)))
        .collect::<Result<_>>()?;
        for (_, quoted) in &stale {
            sqlx::query(&format!("ANALYZE {quoted}"))
                .execute(&self.pools.write)
                .await?;
        }
        Ok(stale.into_iter().map(|(name, _)| name).collect())
    }

    async fn ops_snapshot(&self, now: DateTime<Utc>) -> Result<OpsSnapshot> {
        let mut out = OpsSnapshot::default();
        // Marks from before `dirty_at` existed are 0: not an age.
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(CASE WHEN dirty_at > 0 THEN dirty_at END) AS oldest \
             FROM rollups WHERE dirty = 1",
        )
        .fetch_one(&self.pools.read)
        .await?;
        out.rescore_pending = row.try_get::<i64, _>("n")?.max(0) as u64;
        out.rescore_oldest_mark = row.try_get::<Option<i64>, _>("oldest")?.map(time);

        let channels = sqlx::query(
            "SELECT c.platform, c.enabled, CASE WHEN c.broken_at IS NULL THEN 0 ELSE 1 END AS broken, \
             (SELECT COUNT(*) FROM deliveries d WHERE d.channel_id = c.id AND d.state = 'pending') AS pending, \
             (SELECT COUNT(*) FROM deliveries d WHERE d.channel_id = c.id AND d.state = 'pending' \
                AND d.run_at <= $1) AS due, \
             (SELECT MIN(d.run_at) FROM deliveries d WHERE d.channel_id = c.id AND d.state = 'pending' \
                AND d.run_at <= $1) AS oldest_due \
             FROM channels c",
        )
        .bind(ms(now))
        .fetch_all(&self.pools.read)
        .await?;
        for r in &channels {
            let platform: Platform = parse("platform", &r.try_get::<String, _>("platform")?)?;
            let state = if r.try_get::<i64, _>("broken")? != 0 {
                ChannelState::Broken
            } else if r.try_get::<i64, _>("enabled")? == 0 {
                ChannelState::Paused
            } else {
                ChannelState::Active
            };
            let pending = r.try_get::<i64, _>("pending")?.max(0) as u64;
            let due = r.try_get::<i64, _>("due")?.max(0) as u64;
            let oldest_due = r.try_get::<Option<i64>, _>("oldest_due")?.map(time);
            let i = match out
                .outbox
                .iter()
                .position(|o| o.platform == platform && o.state == state)
            {
                Some(i) => i,
                None => {
                    out.outbox.push(OutboxFigures {
                        platform,
                        state,
                        channels: 0,
                        pending: 0,
                        due: 0,
                        max_channel_pending: 0,
                        oldest_due: None,
                    });
                    out.outbox.len() - 1
                }
            };
            let o = &mut out.outbox[i];
            o.channels += 1;
            o.pending += pending;
            o.due += due;
            o.max_channel_pending = o.max_channel_pending.max(pending);
            o.oldest_due = match (o.oldest_due, oldest_due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }

        let orgs = sqlx::query(
            "SELECT CASE WHEN broken_at IS NULL THEN 0 ELSE 1 END AS broken, api_used, api_max, settings \
             FROM salesforce_connections",
        )
        .fetch_all(&self.pools.read)
        .await?;
        for r in &orgs {
            // A connection whose settings do not read keeps the default share.
            let settings: SyncSettings = serde_json::from_str(&r.try_get::<String, _>("settings")?).unwrap_or_default();
            out.salesforce.push(SalesforceFigures {
                broken: r.try_get::<i64, _>("broken")? != 0,
                api_used: r.try_get::<Option<i64>, _>("api_used")?.map(|n| n.max(0) as u64),
                api_max: r.try_get::<Option<i64>, _>("api_max")?.map(|n| n.max(0) as u64),
                share_percent: settings.api_share_percent,
            });
        }
        Ok(out)
    }
}

impl crate::Error {
    /// What went wrong in a few words that name no host, user or value:
    /// for answers anyone may read (readiness); the error itself is for
    /// the log.
    pub fn summary(&self) -> &'static str {
        match self {
            Self::Unavailable(e) | Self::Unreachable(e) => match e {
                sqlx::Error::Io(_) | sqlx::Error::Tls(_) => "cannot connect",
                sqlx::Error::PoolTimedOut => "no connection available",
                sqlx::Error::PoolClosed => "connection pool closed",
                sqlx::Error::Database(_) => "the query failed",
                _ => "unavailable",
            },
            Self::NotFound | Self::Conflict(_) | Self::Invalid(_) | Self::Corrupt(_) | Self::Undecryptable(_) => {
                "the query failed"
            }
            Self::Migrate(_) => "migrations failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_perly_share_of_the_org_limit() {
        let f = SalesforceFigures {
            broken: false,
            api_used: Some(2_500),
            api_max: Some(10_000),
            share_percent: 50,
        };
        assert_eq!(f.budget_used(), Some(0.5));
        assert_eq!(
            SalesforceFigures {
                api_used: None,
                ..f.clone()
            }
            .budget_used(),
            None
        );
        assert_eq!(SalesforceFigures { api_max: Some(0), ..f }.budget_used(), None);
    }
}
