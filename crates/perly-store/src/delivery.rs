//! The delivery outbox as the worker drives it: claim a channel, keep the
//! lease while posting, fold a storm into one digest, acknowledge.
//!
//! A claim leases *channels* ([`Deliveries::claim_deliveries`]): one message
//! in flight per channel. Each claim bumps the channel's `lease_token`, a
//! fencing token: renewals ([`Deliveries::renew_delivery_lease`]), releases
//! and acknowledgements name it and change nothing once another claim took
//! the channel, so a worker whose lease ran out cannot release or re-pace a
//! channel someone else now holds. A claim reads only what the next message
//! needs, whatever the backlog: up to `items` due rows (with their alerts),
//! the channel's rules, and the times of its newest accepted messages within
//! its storm guard's window. A storm digest reads its counts and the top
//! customers by MRR with [`Deliveries::storm_summary`], in SQL, and its
//! acknowledgement marks every row it stood for as sent in one statement.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use perly_domain::alerts::AlertKind;
use perly_domain::channels::{ChannelRules, Platform};
use perly_domain::ids::{ChannelId, DeliveryId, WorkspaceId};
use perly_domain::risk::RiskLevel;
use sqlx::Row;

use crate::channels::webhook_context;
use crate::model::AlertRecord;
use crate::secrets::UNDECRYPTABLE_WEBHOOK;
use crate::sql::{alert_from, corrupt, ms, params, parse, retry_conflicts, time, SqlStore, ALERT_COLUMNS, IN_CHUNK};
use crate::Result;

/// A channel a delivery worker holds, with what its next message needs.
#[derive(Debug, Clone)]
pub struct ClaimedChannel {
    pub id: ChannelId,
    pub workspace_id: WorkspaceId,
    pub platform: Platform,
    pub name: String,
    pub webhook_url: String,
    pub rules: ChannelRules,
    pub pace_tat: DateTime<Utc>,
    pub lease: Lease,
    /// The first due rows in order (oldest first), at most the `items`
    /// asked for: more than one message holds tells that more are waiting.
    pub items: Vec<OutboxItem>,
    /// When the channel's newest accepted messages went out, newest first:
    /// those inside the storm guard's window, at most its limit.
    pub recent_sends: Vec<DateTime<Utc>>,
}

/// A channel lease: held until `until`, fenced by `token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub token: i64,
    pub until: DateTime<Utc>,
}

/// One due outbox row.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    pub id: DeliveryId,
    pub attempts: i64,
    pub held: bool,
    /// `None` for a test message or a notice.
    pub alert: Option<AlertRecord>,
    /// A summary (of an import) instead of an alert.
    pub notice: Option<perly_domain::imports::NoticeText>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckOutcome {
    Sent,
    /// Try again at `next_attempt_at`.
    Retry,
    /// The webhook is gone: mark the channel broken with this reason.
    Broken(String),
    /// Refused for good: keep the rows as dead letters with the answer.
    Dead,
}

impl AckOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Retry => "retry",
            Self::Broken(_) => "broken",
            Self::Dead => "dead",
        }
    }
}

/// Every alert due on a channel, as one storm digest tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct StormSummary {
    /// Alerts waiting (test messages are not counted).
    pub alerts: i64,
    /// Distinct customers they are about.
    pub customers: i64,
    /// Alerts per (kind, risk level), most first.
    pub by_kind: Vec<(AlertKind, Option<RiskLevel>, i64)>,
    /// The customers with the highest MRR, highest first: name and MRR.
    pub top: Vec<(String, Option<f64>)>,
    /// When the oldest of them was queued.
    pub since: DateTime<Utc>,
    /// What a digest of them folds in: pass it to the acknowledgement.
    pub fold: Fold,
}

/// The rows a storm digest stands for: every pending alert row of the
/// channel due by `due_by`, up to `through` (ids are time-ordered, so rows
/// queued after the summary was read stay out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fold {
    pub through: DeliveryId,
    pub due_by: DateTime<Utc>,
}

/// The result of posting one message (one alert, a digest, or a storm
/// digest) to a channel.
#[derive(Debug, Clone)]
pub struct DeliveryAck {
    pub workspace_id: WorkspaceId,
    pub channel_id: ChannelId,
    /// The lease's token from the claim.
    pub lease_token: i64,
    pub delivery_ids: Vec<DeliveryId>,
    /// A storm digest: on `Sent`, every row of the fold is marked sent with it.
    pub fold: Option<Fold>,
    /// Alerts the message carried (0 for a test message); for a storm
    /// digest the rows it folded are counted instead.
    pub alerts: i64,
    pub outcome: AckOutcome,
    /// HTTP status, or `None` when no answer came (timeout, connection refused).
    pub status: Option<u16>,
    pub latency_ms: i64,
    /// The vendor's answer (or the network error), cut to a few hundred characters.
    pub answer: String,
    pub pace_tat: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    /// When the answer came: the attempt's time in the delivery log, the
    /// rows' `sent_at`, the channel's `last_sent_at`.
    pub at: DateTime<Utc>,
}

/// What an acknowledgement did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Acked {
    /// The lease was still this worker's: the channel was released, paced
    /// and (when so) marked broken. `false`: another claim took the channel
    /// meanwhile; only the facts were recorded (rows a sent message carried
    /// are marked sent, the attempt is logged), the channel was left alone.
    pub lease_held: bool,
    /// Alert rows marked sent (a storm digest counts every row it folded).
    pub sent: u64,
}

/// The delivery outbox, as the delivery worker uses it.
#[async_trait]
pub trait Deliveries: Send + Sync {
    /// Leases up to `limit` channels, in any workspace, that have something
    /// due and may send now (not paused, not broken, not leased, past
    /// pacing, backoff and storm waits, not in `skip`), with up to `items`
    /// due rows each. One lease per channel: one message in flight. The only
    /// outbox query not scoped by a workspace: the worker serves them all,
    /// and each claimed channel names its own.
    async fn claim_deliveries(
        &self,
        limit: usize,
        items: usize,
        skip: &[ChannelId],
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Vec<ClaimedChannel>>;
    /// Extends a held lease to `until`; `false` when the lease is no longer
    /// this token's (another claim took the channel) or was released.
    async fn renew_delivery_lease(
        &self,
        ws: WorkspaceId,
        channel: ChannelId,
        token: i64,
        until: DateTime<Utc>,
    ) -> Result<bool>;
    /// Gives a claimed channel back without posting, not to be claimed
    /// before `next_attempt_at` (a storm guard's full window); `false` when
    /// the lease was no longer this token's.
    async fn release_delivery(
        &self,
        ws: WorkspaceId,
        channel: ChannelId,
        token: i64,
        next_attempt_at: DateTime<Utc>,
    ) -> Result<bool>;
    /// Everything due on a channel at `now`, summed up for a storm digest
    /// (`top` customers by MRR). `None` when no alert is due.
    async fn storm_summary(
        &self,
        ws: WorkspaceId,
        channel: ChannelId,
        now: DateTime<Utc>,
        top: usize,
    ) -> Result<Option<StormSummary>>;
    /// Records how attempts ended and, for each whose lease is still the
    /// acknowledgement's, releases and paces its channel: one transaction
    /// for the whole group (all or none), one [`Acked`] per
    /// acknowledgement, in order. A worker posting to many channels at once
    /// writes their answers together instead of one commit per post.
    async fn ack_deliveries(&self, acks: &[DeliveryAck]) -> Result<Vec<Acked>>;
}

#[async_trait]
impl Deliveries for SqlStore {
    async fn claim_deliveries(
        &self,
        limit: usize,
        items: usize,
        skip: &[ChannelId],
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Vec<ClaimedChannel>> {
        retry_conflicts(|| self.claim_deliveries_once(limit, items, skip, now, lease)).await
    }

    async fn renew_delivery_lease(
        &self,
        ws: WorkspaceId,
        channel: ChannelId,
        token: i64,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE channels SET lease_until = $4 WHERE workspace_id = $1 AND id = $2 AND lease_token = $3 \
             AND lease_until IS NOT NULL",
        )
        .bind(ws.to_string())
        .bind(channel.to_string())
        .bind(token)
        .bind(ms(until))
        .execute(&self.pools.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_delivery(
        &self,
        ws: WorkspaceId,
        channel: ChannelId,
        token: i64,
        next_attempt_at: DateTime<Utc>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE channels SET lease_until = NULL, \
             next_attempt_at = CASE WHEN next_attempt_at > $4 THEN next_attempt_at ELSE $4 END \
             WHERE workspace_id = $1 AND id = $2 AND lease_token = $3",
        )
        .bind(ws.to_string())
        .bind(channel.to_string())
        .bind(token)
        .bind(ms(next_attempt_at))
        .execute(&self.pools.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn storm_summary(
        &self,
        ws: WorkspaceId,
        channel: ChannelId,
        now: DateTime<Utc>,
        top: usize,
    ) -> Result<Option<StormSummary>> {
        self.storm_summary_once(ws, channel, now, top).await
    }

    async fn ack_deliveries(&self, acks: &[DeliveryAck]) -> Result<Vec<Acked>> {
        retry_conflicts(|| self.ack_deliveries_once(acks)).await
    }
}

/// The due rows of one channel: `$1` workspace, `$2` channel, `$3` now.
/// Counts and folds walk `deliveries_due` (channel, state, run_at).
const DUE: &str = "d.workspace_id = $1 AND d.channel_id = $2 AND d.state = 'pending' AND d.run_at <= $3";

impl SqlStore {
    async fn claim_deliveries_once(
        &self,
        limit: usize,
        items: usize,
        skip: &[ChannelId],
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Vec<ClaimedChannel>> {
        let now_ms = ms(now);
        let until = now + lease;
        // Channels this worker already has in flight are left out (a lease
        // only guards against other workers).
        let skip: Vec<String> = skip.iter().take(IN_CHUNK * 4).map(ToString::to_string).collect();
        let not_in = if skip.is_empty() {
            String::new()
        } else {
            format!(" AND c.id NOT IN ({})", params(4, skip.len()))
        };
        let sql = format!(
            "UPDATE channels SET lease_until = $2, lease_token = lease_token + 1 WHERE id IN (\
             SELECT c.id FROM channels c WHERE c.next_due_at <= $1 AND c.next_attempt_at <= $1 \
             AND c.enabled = 1 AND c.broken_reason IS NULL AND (c.lease_until IS NULL OR c.lease_until < $1){not_in} \
             ORDER BY c.next_due_at LIMIT $3{}) \
             RETURNING id, workspace_id, platform, name, webhook, rules, pace_tat, lease_token",
            self.dialect().skip_locked()
        );
        let mut q = sqlx::query(&sql).bind(now_ms).bind(ms(until)).bind(limit as i64);
        for id in &skip {
            q = q.bind(id.clone());
        }
        let mut tx = self.pools.write.begin().await?;
        let rows = q.fetch_all(&mut *tx).await?;
        tx.commit().await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for r in rows {
            let id: ChannelId = parse("channel id", &r.try_get::<String, _>("id")?)?;
            let ws: WorkspaceId = parse("workspace id", &r.try_get::<String, _>("workspace_id")?)?;
            let sealed: Vec<u8> = r.try_get("webhook")?;
            let Ok(webhook_url) = self.cipher.decrypt(&webhook_context(ws, id), &sealed) else {
                // Only this channel stops; the others claimed with it go on.
                self.mark_undecryptable(ws, id, now).await?;
                continue;
            };
            let rules: ChannelRules =
                serde_json::from_str(&r.try_get::<String, _>("rules")?).map_err(|e| corrupt("channel rules", e))?;
            claimed.push(ClaimedChannel {
                id,
                workspace_id: ws,
                platform: parse("platform", &r.try_get::<String, _>("platform")?)?,
                name: r.try_get("name")?,
                webhook_url,
                pace_tat: time(r.try_get("pace_tat")?),
                lease: Lease {
                    token: r.try_get("lease_token")?,
                    until,
                },
                items: Vec::new(),
                recent_sends: Vec::new(),
                rules,
            });
        }
        for c in &mut claimed {
            c.items = self.due_items(c.workspace_id, c.id, now, items).await?;
            c.recent_sends = self.recent_sends(c, now).await?;
        }
        Ok(claimed)
    }

    /// The first `limit` due rows of a channel, with their alerts.
    async fn due_items(
        &self,
        ws: WorkspaceId,
        channel: ChannelId,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxItem>> {
        // The first rows in id order: SQLite walks `deliveries_by_channel`
        // (channel, state, id) and stops after `limit`, instead of reading
        // every due row by time and sorting them.
        let sql = format!(
            "SELECT d.id AS delivery_id, d.attempts, d.held, d.alert_id, {ALERT_COLUMNS}, \
             n.title AS notice_title, n.lines AS notice_lines, n.more AS notice_more, n.risk_level AS notice_risk \
             FROM deliveries d \
             LEFT JOIN alerts a ON a.id = d.alert_id AND a.workspace_id = d.workspace_id \
             LEFT JOIN customers c ON c.id = a.customer_id AND c.workspace_id = d.workspace_id \
             LEFT JOIN notices n ON n.id = d.notice_id AND n.workspace_id = d.workspace_id \
             WHERE d.workspace_id = $1 AND d.channel_id = $2 AND d.state = 'pending' AND {} <= $3 \
             ORDER BY d.id LIMIT $4",
            self.dialect().unindexed("d.run_at")
        );
        let rows = sqlx::query(&sql)
            .bind(ws.to_string())
            .bind(channel.to_string())
            .bind(ms(now))
            .bind(limit as i64)
            .fetch_all(&self.pools.read)
            .await?;
        rows.iter()
            .map(|r| {
                let alert = match r.try_get::<Option<String>, _>("alert_id")? {
                    Some(_) => Some(alert_from(r)?),
                    None => None,
                };
                let notice = match r.try_get::<Option<String>, _>("notice_title")? {
                    Some(title) => Some(perly_domain::imports::NoticeText {
                        title,
                        lines: serde_json::from_str(&r.try_get::<String, _>("notice_lines")?)
                            .map_err(|e| corrupt("notice", e))?,
                        more: r.try_get("notice_more")?,
                        risk_level: match r.try_get::<Option<String>, _>("notice_risk")? {
                            Some(l) => Some(parse("risk level", &l)?),
                            None => None,
                        },
                    }),
                    None => None,
                };
                Ok(OutboxItem {
                    id: parse("delivery id", &r.try_get::<String, _>("delivery_id")?)?,
                    attempts: r.try_get("attempts")?,
                    held: r.try_get::<i64, _>("held")? != 0,
                    alert,
                    notice,
                })
            })
            .collect()
    }

    /// The channel's accepted messages inside its storm window, newest
    /// first, at most its limit (the delivery log is the record).
    async fn recent_sends(&self, c: &ClaimedChannel, now: DateTime<Utc>) -> Result<Vec<DateTime<Utc>>> {
        let guard = c.rules.storm_guard;
        let rows = sqlx::query(
            "SELECT at FROM delivery_attempts WHERE workspace_id = $1 AND channel_id = $2 AND at > $3 \
             AND outcome = 'sent' ORDER BY at DESC LIMIT $4",
        )
        .bind(c.workspace_id.to_string())
        .bind(c.id.to_string())
        .bind(ms(now - guard.window()))
        .bind(i64::from(guard.messages))
        .fetch_all(&self.pools.read)
        .await?;
        rows.iter().map(|r| Ok(time(r.try_get("at")?))).collect()
    }

    async fn storm_summary_once(
        &self,
        ws: WorkspaceId,
        channel: ChannelId,
        now: DateTime<Utc>,
        top: usize,
    ) -> Result<Option<StormSummary>> {
        let (ws_s, ch, now_ms) = (ws.to_string(), channel.to_string(), ms(now));
        let from = format!(
            "FROM deliveries d JOIN alerts a ON a.id = d.alert_id AND a.workspace_id = d.workspace_id WHERE {DUE}"
        );
        let totals = sqlx::query(&format!(
            "SELECT COUNT(*) AS alerts, COUNT(DISTINCT a.customer_id) AS customers, MIN(d.created_at) AS since, \
             MAX(d.id) AS through {from}"
        ))
        .bind(ws_s.clone())
        .bind(ch.clone())
        .bind(now_ms)
        .fetch_one(&self.pools.read)
        .await?;
        let alerts: i64 = totals.try_get("alerts")?;
        let Some(through) = totals.try_get::<Option<String>, _>("through")? else {
            return Ok(None);
        };
        if alerts == 0 {
            return Ok(None);
        }
        let kinds = sqlx::query(&format!(
            "SELECT a.kind, a.risk_level, COUNT(*) AS n {from} GROUP BY a.kind, a.risk_level ORDER BY n DESC"
        ))
        .bind(ws_s.clone())
        .bind(ch.clone())
        .bind(now_ms)
        .fetch_all(&self.pools.read)
        .await?;
        let mut by_kind = Vec::with_capacity(kinds.len());
        for r in kinds {
            let risk = match r.try_get::<Option<String>, _>("risk_level")? {
                Some(s) => Some(parse::<RiskLevel>("risk level", &s)?),
                None => None,
            };
            by_kind.push((
                parse("alert kind", &r.try_get::<String, _>("kind")?)?,
                risk,
                r.try_get("n")?,
            ));
        }
        // The storm's customers by key (`unindexed`): not a walk of all the
        // workspace's customers by one of its indexes.
        let top_rows = sqlx::query(&format!(
            "SELECT cu.name, cu.mrr FROM customers cu WHERE {} = $1 AND cu.id IN (\
             SELECT a.customer_id {from}) ORDER BY COALESCE(cu.mrr, -1.0) DESC, cu.name, cu.id LIMIT $4",
            self.dialect().unindexed("cu.workspace_id")
        ))
        .bind(ws_s)
        .bind(ch)
        .bind(now_ms)
        .bind(top as i64)
        .fetch_all(&self.pools.read)
        .await?;
        let top = top_rows
            .iter()
            .map(|r| Ok((r.try_get::<String, _>("name")?, r.try_get::<Option<f64>, _>("mrr")?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(StormSummary {
            alerts,
            customers: totals.try_get("customers")?,
            by_kind,
            top,
            since: time(totals.try_get::<Option<i64>, _>("since")?.unwrap_or(now_ms)),
            fold: Fold {
                through: parse("delivery id", &through)?,
                due_by: now,
            },
        }))
    }

    /// Marks a claimed channel broken because no configured key opens its
    /// webhook, releases it, and says so in its delivery log.
    async fn mark_undecryptable(&self, ws: WorkspaceId, id: ChannelId, now: DateTime<Utc>) -> Result<()> {
        tracing::warn!(workspace_id = %ws, channel_id = %id, "channel webhook could not be decrypted; channel marked broken");
        let mut tx = self.pools.write.begin().await?;
        sqlx::query(
            "UPDATE channels SET broken_reason = $3, broken_at = $4, lease_until = NULL \
             WHERE workspace_id = $1 AND id = $2",
        )
        .bind(ws.to_string())
        .bind(id.to_string())
        .bind(UNDECRYPTABLE_WEBHOOK)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO delivery_attempts (id, workspace_id, channel_id, at, alerts, status, latency_ms, outcome, answer) \
             VALUES ($1, $2, $3, $4, 0, NULL, 0, $5, $6)",
        )
        .bind(DeliveryId::new().to_string())
        .bind(ws.to_string())
        .bind(id.to_string())
        .bind(ms(now))
        .bind(AckOutcome::Broken(String::new()).as_str())
        .bind(UNDECRYPTABLE_WEBHOOK)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn ack_deliveries_once(&self, acks: &[DeliveryAck]) -> Result<Vec<Acked>> {
        // In channel order: two groups (two replicas' workers) never take
        // the same channels' rows in opposite orders.
        let mut order: Vec<usize> = (0..acks.len()).collect();
        order.sort_by_key(|&i| (acks[i].channel_id, i));
        let mut out = vec![Acked::default(); acks.len()];
        let mut tx = self.pools.write.begin().await?;
        for i in order {
            out[i] = ack_one(&mut tx, &acks[i]).await?;
        }
        tx.commit().await?;
        Ok(out)
    }
}

/// One acknowledgement, in the group's transaction.
async fn ack_one(tx: &mut sqlx::Transaction<'static, sqlx::Any>, ack: &DeliveryAck) -> Result<Acked> {
    let ws_s = ack.workspace_id.to_string();
    let channel = ack.channel_id.to_string();
    let now_ms = ms(ack.at);
    // Fenced: the channel is released, paced and marked only while the
    // lease is still this acknowledgement's.
    let broken = match &ack.outcome {
        AckOutcome::Broken(reason) => Some(reason.clone()),
        _ => None,
    };
    let sent = matches!(ack.outcome, AckOutcome::Sent);
    let held = sqlx::query(
        "UPDATE channels SET lease_until = NULL, pace_tat = $4, next_attempt_at = $5, \
             last_sent_at = CASE WHEN $6 = 1 THEN $7 ELSE last_sent_at END, \
             broken_reason = COALESCE($8, broken_reason), broken_at = CASE WHEN $8 IS NULL THEN broken_at ELSE $7 END \
             WHERE workspace_id = $1 AND id = $2 AND lease_token = $3",
    )
    .bind(ws_s.clone())
    .bind(channel.clone())
    .bind(ack.lease_token)
    .bind(ms(ack.pace_tat))
    .bind(ms(ack.next_attempt_at))
    .bind(i64::from(sent))
    .bind(now_ms)
    .bind(broken)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    // The rows: what the vendor answered is a fact whoever holds the
    // channel now, but a stale worker records only messages that went
    // out (its retries and dead letters are the new holder's to decide).
    let mut rows_sent = 0;
    if held || sent {
        let ids: Vec<String> = ack.delivery_ids.iter().map(ToString::to_string).collect();
        for chunk in ids.chunks(IN_CHUNK) {
            let (set, bind_error) = match ack.outcome {
                AckOutcome::Sent => ("state = 'sent', sent_at = $3, attempts = attempts + 1", false),
                AckOutcome::Dead => ("state = 'dead', attempts = attempts + 1, last_error = $3", true),
                AckOutcome::Retry | AckOutcome::Broken(_) => ("attempts = attempts + 1, last_error = $3", true),
            };
            let sql = format!(
                    "UPDATE deliveries SET {set} WHERE workspace_id = $1 AND channel_id = $2 AND state = 'pending' AND id IN ({})",
                    params(4, chunk.len())
                );
            let mut q = sqlx::query(&sql).bind(ws_s.clone()).bind(channel.clone());
            q = if bind_error {
                q.bind(ack.answer.clone())
            } else {
                q.bind(now_ms)
            };
            for id in chunk {
                q = q.bind(id.clone());
            }
            let n = q.execute(&mut **tx).await?.rows_affected();
            if sent {
                rows_sent += n;
            }
        }
        if let (true, Some(fold)) = (sent, ack.fold) {
            rows_sent += sqlx::query(
                "UPDATE deliveries SET state = 'sent', sent_at = $3, attempts = attempts + 1 \
                     WHERE workspace_id = $1 AND channel_id = $2 AND state = 'pending' AND alert_id IS NOT NULL \
                     AND run_at <= $4 AND id <= $5",
            )
            .bind(ws_s.clone())
            .bind(channel.clone())
            .bind(now_ms)
            .bind(ms(fold.due_by))
            .bind(fold.through.to_string())
            .execute(&mut **tx)
            .await?
            .rows_affected();
        }
    }
    // The channel's earliest due row, after the rows above.
    sqlx::query(
        "UPDATE channels SET next_due_at = (SELECT MIN(d.run_at) FROM deliveries d \
             WHERE d.workspace_id = $1 AND d.channel_id = $2 AND d.state = 'pending') \
             WHERE workspace_id = $1 AND id = $2",
    )
    .bind(ws_s.clone())
    .bind(channel.clone())
    .execute(&mut **tx)
    .await?;
    let alerts = if ack.fold.is_some() && sent {
        rows_sent as i64
    } else {
        ack.alerts
    };
    let answer = if held {
        ack.answer.clone()
    } else {
        format!("lease lost before this answer was recorded; {}", ack.answer)
    };
    sqlx::query(
        "INSERT INTO delivery_attempts (id, workspace_id, channel_id, at, alerts, status, latency_ms, outcome, \
             answer, digest) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(DeliveryId::new().to_string())
    .bind(ws_s)
    .bind(channel)
    .bind(now_ms)
    .bind(alerts)
    .bind(ack.status.map(i64::from))
    .bind(ack.latency_ms)
    .bind(ack.outcome.as_str())
    .bind(answer)
    .bind(i64::from(ack.fold.is_some()))
    .execute(&mut **tx)
    .await?;
    Ok(Acked {
        lease_held: held,
        sent: rows_sent,
    })
}
