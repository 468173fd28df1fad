//! Channels, the delivery outbox and OAuth states, in SQL.
//!
//! How an alert leaves: [`route_alerts`] runs inside the transaction that
//! records alerts and writes one `deliveries` row per (alert, channel) whose
//! rules want it, with `run_at` set to now or, in quiet hours, to when
//! business hours open. A delivery worker then claims *channels*, not rows
//! ([`crate::delivery`]): a channel lease means one message in flight per
//! channel, and the channel's `next_attempt_at` carries pacing, backoff, the
//! vendor's Retry-After and storm-guard waits, so rows go out in order. The
//! worker posts with no transaction open and reports back with an
//! acknowledgement, which marks rows sent or dead, or the channel broken,
//! logs the attempt, and releases the lease. A crashed worker's lease
//! simply expires.
//!
//! Webhook URLs are encrypted with the store's cipher, bound to the
//! workspace and channel id; only a hint of them is ever read back for
//! display. A claimed channel whose webhook no configured key opens is
//! marked broken ([`crate::secrets::UNDECRYPTABLE_WEBHOOK`]) and left out of
//! the claim; the channels claimed with it are delivered as usual.

use std::collections::HashMap;

use base64::Engine;
use chrono::{DateTime, Utc};
use perly_domain::channels::{decide, ChannelRules, Decision};
use perly_domain::ids::{ChannelId, DeliveryId, UserId, WorkspaceId};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::model::*;
use crate::sql::{corrupt, ms, parse, time, value_rows, SqlStore, CHUNK};
use crate::{Error, Result};

use crate::auth::api_key_hash;

const CHANNEL_COLUMNS: &str = "id, platform, name, webhook_hint, source, rules, enabled, broken_reason, broken_at, \
     last_sent_at, created_at, updated_at";

/// Where a webhook points, without what makes it a credential: scheme, host
/// and the first characters of each path segment but the last.
pub fn webhook_hint(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let mut parts = rest.split('/').filter(|p| !p.is_empty());
    let host = parts.next().unwrap_or_default();
    let segments: Vec<&str> = parts.collect();
    let mut out = format!("{scheme}://{host}");
    if let Some((_, init)) = segments.split_last() {
        for seg in init {
            out.push('/');
            if seg.chars().count() > 8 {
                out.extend(seg.chars().take(4));
                out.push('…');
            } else {
                out.push_str(seg);
            }
        }
        out.push_str("/••••");
    }
    out
}

/// A webhook is sealed to its workspace and channel id.
pub(crate) fn webhook_context(ws: WorkspaceId, channel: impl std::fmt::Display) -> String {
    format!("{ws}/channel/{channel}")
}

/// An OAuth state's data is sealed to its workspace and state hash.
pub(crate) fn state_context(ws: WorkspaceId, hash: &str) -> String {
    crate::sql::secret_context(ws, &format!("oauth/{hash}"))
}

fn state_hash(state: &str) -> String {
    api_key_hash(state)
}

fn channel_from(row: &AnyRow, pending: &HashMap<String, i64>) -> Result<Channel> {
    let id: String = row.try_get("id")?;
    let enabled = row.try_get::<i64, _>("enabled")? != 0;
    let broken_reason: Option<String> = row.try_get("broken_reason")?;
    Ok(Channel {
        status: ChannelStatus::of(enabled, broken_reason.is_some()),
        id: parse("channel id", &id)?,
        platform: parse("platform", &row.try_get::<String, _>("platform")?)?,
        name: row.try_get("name")?,
        webhook_hint: row.try_get("webhook_hint")?,
        source: row.try_get("source")?,
        rules: serde_json::from_str(&row.try_get::<String, _>("rules")?).map_err(|e| corrupt("channel rules", e))?,
        enabled,
        broken_reason,
        broken_at: row.try_get::<Option<i64>, _>("broken_at")?.map(time),
        pending: pending.get(&id).copied().unwrap_or(0),
        last_sent_at: row.try_get::<Option<i64>, _>("last_sent_at")?.map(time),
        created_at: time(row.try_get("created_at")?),
        updated_at: time(row.try_get("updated_at")?),
    })
}

/// A newly recorded alert, as routing needs it.
pub(crate) struct NewAlert<'a> {
    pub id: String,
    pub customer_id: &'a str,
    pub draft: &'a perly_domain::alerts::AlertDraft,
}

/// Writes the outbox rows of newly recorded alerts, in the caller's
/// transaction: one per (alert, channel) whose rules want it. Broken
/// channels still get them (they go out after a reconnect); paused ones do not.
pub(crate) async fn route_alerts(
    store: &SqlStore,
    tx: &mut Transaction<'static, Any>,
    ws: WorkspaceId,
    alerts: &[NewAlert<'_>],
    now: DateTime<Utc>,
) -> Result<()> {
    if alerts.is_empty() {
        return Ok(());
    }
    let rows = sqlx::query("SELECT id, rules FROM channels WHERE workspace_id = $1 AND enabled = 1 ORDER BY id")
        .bind(ws.to_string())
        .fetch_all(&mut **tx)
        .await?;
    let mut channels = Vec::with_capacity(rows.len());
    for r in rows {
        let rules: ChannelRules =
            serde_json::from_str(&r.try_get::<String, _>("rules")?).map_err(|e| corrupt("channel rules", e))?;
        channels.push((r.try_get::<String, _>("id")?, rules));
    }
    let mut out = Vec::new();
    for a in alerts {
        for (channel, rules) in &channels {
            if let Decision::SendAt(at) = decide(rules, a.draft.kind, a.draft.risk_level, a.draft.delta, now) {
                out.push((channel.clone(), a.id.clone(), at > now, ms(at)));
            }
        }
    }
    let ws_s = ws.to_string();
    for chunk in out.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO deliveries (id, workspace_id, channel_id, alert_id, state, held, run_at, created_at) VALUES {} \
             ON CONFLICT (channel_id, alert_id) DO NOTHING",
            value_rows(1, chunk.len(), 8)
        );
        let sql = store.dialect().positional(sql);
        let mut q = sqlx::query(&sql);
        for (channel, alert, held, run_at) in chunk {
            q = q
                .bind(DeliveryId::new().to_string())
                .bind(ws_s.clone())
                .bind(channel.clone())
                .bind(alert.clone())
                .bind("pending")
                .bind(i64::from(*held))
                .bind(*run_at)
                .bind(ms(now));
        }
        q.execute(&mut **tx).await?;
    }
    // Each channel's earliest due time moves up to its earliest new row.
    let mut due: HashMap<&str, i64> = HashMap::new();
    for (channel, _, _, run_at) in &out {
        let e = due.entry(channel.as_str()).or_insert(*run_at);
        *e = (*e).min(*run_at);
    }
    for (channel, run_at) in due {
        mark_due(tx, ws, channel, run_at).await?;
    }
    Ok(())
}

/// Moves a channel's `next_due_at` up to `run_at` if that is earlier.
pub(crate) async fn mark_due(
    tx: &mut Transaction<'static, Any>,
    ws: WorkspaceId,
    channel: &str,
    run_at: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE channels SET next_due_at = CASE WHEN next_due_at IS NULL OR next_due_at > $3 THEN $3 ELSE next_due_at END \
         WHERE workspace_id = $1 AND id = $2",
    )
    .bind(ws.to_string())
    .bind(channel.to_owned())
    .bind(run_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl SqlStore {
    async fn pending_counts(&self, ws: WorkspaceId, channel: Option<ChannelId>) -> Result<HashMap<String, i64>> {
        let mut sql =
            "SELECT channel_id, COUNT(*) AS n FROM deliveries WHERE workspace_id = $1 AND state = 'pending'".to_owned();
        if channel.is_some() {
            sql.push_str(" AND channel_id = $2");
        }
        sql.push_str(" GROUP BY channel_id");
        let mut q = sqlx::query(&sql).bind(ws.to_string());
        if let Some(c) = channel {
            q = q.bind(c.to_string());
        }
        q.fetch_all(&self.pools.read)
            .await?
            .iter()
            .map(|r| Ok((r.try_get::<String, _>("channel_id")?, r.try_get::<i64, _>("n")?)))
            .collect()
    }

    pub(crate) async fn create_channel_once(
        &self,
        ws: WorkspaceId,
        new: &NewChannel,
        now: DateTime<Utc>,
    ) -> Result<Channel> {
        let id = ChannelId::new();
        let sealed = self.cipher.encrypt(&webhook_context(ws, id), &new.webhook_url);
        let rules = serde_json::to_string(&new.rules).map_err(|e| corrupt("channel rules", e))?;
        sqlx::query(
            "INSERT INTO channels (id, workspace_id, platform, name, webhook, webhook_hint, source, details, rules, \
             enabled, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $10)",
        )
        .bind(id.to_string())
        .bind(ws.to_string())
        .bind(new.platform.as_str())
        .bind(new.name.clone())
        .bind(sealed)
        .bind(webhook_hint(&new.webhook_url))
        .bind(new.source)
        .bind(new.details.to_string())
        .bind(rules)
        .bind(ms(now))
        .execute(&self.pools.write)
        .await?;
        self.get_channel_once(ws, id).await?.ok_or(Error::NotFound)
    }

    pub(crate) async fn list_channels_once(&self, ws: WorkspaceId) -> Result<Vec<Channel>> {
        let pending = self.pending_counts(ws, None).await?;
        sqlx::query(&format!(
            "SELECT {CHANNEL_COLUMNS} FROM channels WHERE workspace_id = $1 ORDER BY created_at, id"
        ))
        .bind(ws.to_string())
        .fetch_all(&self.pools.read)
        .await?
        .iter()
        .map(|r| channel_from(r, &pending))
        .collect()
    }

    pub(crate) async fn get_channel_once(&self, ws: WorkspaceId, id: ChannelId) -> Result<Option<Channel>> {
        let row = sqlx::query(&format!(
            "SELECT {CHANNEL_COLUMNS} FROM channels WHERE workspace_id = $1 AND id = $2"
        ))
        .bind(ws.to_string())
        .bind(id.to_string())
        .fetch_optional(&self.pools.write)
        .await?;
        match row {
            None => Ok(None),
            Some(r) => {
                let pending = self.pending_counts(ws, Some(id)).await?;
                channel_from(&r, &pending).map(Some)
            }
        }
    }

    pub(crate) async fn update_channel_once(
        &self,
        ws: WorkspaceId,
        id: ChannelId,
        u: &ChannelUpdate,
        now: DateTime<Utc>,
    ) -> Result<Channel> {
        let mut sets = vec!["updated_at = $3".to_owned()];
        let mut n = 3;
        let mut next = |col: &str, sets: &mut Vec<String>| {
            n += 1;
            sets.push(format!("{col} = ${n}"));
        };
        if u.name.is_some() {
            next("name", &mut sets);
        }
        if u.rules.is_some() {
            next("rules", &mut sets);
        }
        if u.enabled.is_some() {
            next("enabled", &mut sets);
        }
        if u.webhook_url.is_some() {
            next("webhook", &mut sets);
            next("webhook_hint", &mut sets);
            // A reconnect: deliveries resume at once.
            sets.push("broken_reason = NULL, broken_at = NULL, next_attempt_at = 0".to_owned());
        }
        if u.details.is_some() {
            next("details", &mut sets);
        }
        let sql = format!(
            "UPDATE channels SET {} WHERE workspace_id = $1 AND id = $2",
            sets.join(", ")
        );
        let mut q = sqlx::query(&sql)
            .bind(ws.to_string())
            .bind(id.to_string())
            .bind(ms(now));
        if let Some(name) = &u.name {
            q = q.bind(name.clone());
        }
        if let Some(rules) = &u.rules {
            q = q.bind(serde_json::to_string(rules).map_err(|e| corrupt("channel rules", e))?);
        }
        if let Some(enabled) = u.enabled {
            q = q.bind(i64::from(enabled));
        }
        if let Some(url) = &u.webhook_url {
            q = q
                .bind(self.cipher.encrypt(&webhook_context(ws, id), url))
                .bind(webhook_hint(url));
        }
        if let Some(details) = &u.details {
            q = q.bind(details.to_string());
        }
        if q.execute(&self.pools.write).await?.rows_affected() == 0 {
            return Err(Error::NotFound);
        }
        self.get_channel_once(ws, id).await?.ok_or(Error::NotFound)
    }

    pub(crate) async fn delete_channel_once(&self, ws: WorkspaceId, id: ChannelId) -> Result<()> {
        let mut tx = self.pools.write.begin().await?;
        for table in ["deliveries", "delivery_attempts"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE workspace_id = $1 AND channel_id = $2"
            ))
            .bind(ws.to_string())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        }
        let gone = sqlx::query("DELETE FROM channels WHERE workspace_id = $1 AND id = $2")
            .bind(ws.to_string())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if gone == 0 {
            return Err(Error::NotFound);
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn enqueue_test_message_once(
        &self,
        ws: WorkspaceId,
        id: ChannelId,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.pools.write.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO deliveries (id, workspace_id, channel_id, alert_id, state, held, run_at, created_at) \
             SELECT $1, $2, id, NULL, 'pending', 0, $3, $3 FROM channels WHERE workspace_id = $2 AND id = $4",
        )
        .bind(DeliveryId::new().to_string())
        .bind(ws.to_string())
        .bind(ms(now))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(Error::NotFound);
        }
        mark_due(&mut tx, ws, &id.to_string(), ms(now)).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn delivery_log_once(
        &self,
        ws: WorkspaceId,
        id: ChannelId,
        limit: usize,
    ) -> Result<Vec<DeliveryAttempt>> {
        sqlx::query(
            "SELECT at, alerts, status, latency_ms, outcome, answer, digest FROM delivery_attempts \
             WHERE workspace_id = $1 AND channel_id = $2 ORDER BY at DESC, id DESC LIMIT $3",
        )
        .bind(ws.to_string())
        .bind(id.to_string())
        .bind(limit.clamp(1, 1000) as i64)
        .fetch_all(&self.pools.read)
        .await?
        .iter()
        .map(|r| {
            Ok(DeliveryAttempt {
                at: time(r.try_get("at")?),
                alerts: r.try_get("alerts")?,
                status: r
                    .try_get::<Option<i64>, _>("status")?
                    .and_then(|s| u16::try_from(s).ok()),
                latency_ms: r.try_get("latency_ms")?,
                outcome: r.try_get("outcome")?,
                answer: r.try_get("answer")?,
                storm_digest: r.try_get::<i64, _>("digest")? != 0,
            })
        })
        .collect()
    }

    pub(crate) async fn create_oauth_state_once(
        &self,
        ws: WorkspaceId,
        user: UserId,
        provider: &str,
        data: &serde_json::Value,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<String> {
        let state = crate::auth::random_token(32);
        let hash = state_hash(&state);
        // The data may hold a PKCE verifier: sealed like any other secret.
        let sealed = self.cipher.encrypt(&state_context(ws, &hash), &data.to_string());
        sqlx::query(
            "INSERT INTO oauth_states (state_hash, workspace_id, user_id, provider, data, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(hash)
        .bind(ws.to_string())
        .bind(user.to_string())
        .bind(provider.to_owned())
        .bind(base64::engine::general_purpose::STANDARD.encode(sealed))
        .bind(ms(now))
        .bind(ms(now + ttl))
        .execute(&self.pools.write)
        .await?;
        // Forget flows that expired a day ago.
        sqlx::query("DELETE FROM oauth_states WHERE workspace_id = $1 AND expires_at < $2")
            .bind(ws.to_string())
            .bind(ms(now) - 86_400_000)
            .execute(&self.pools.write)
            .await?;
        Ok(state)
    }

    pub(crate) async fn take_oauth_state_once(
        &self,
        ws: WorkspaceId,
        user: UserId,
        provider: &str,
        state: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<OAuthState>> {
        let hash = state_hash(state);
        let row = sqlx::query(
            "UPDATE oauth_states SET used_at = $5 WHERE state_hash = $1 AND workspace_id = $2 AND user_id = $3 \
             AND provider = $4 AND used_at IS NULL AND expires_at > $5 RETURNING data",
        )
        .bind(hash.clone())
        .bind(ws.to_string())
        .bind(user.to_string())
        .bind(provider.to_owned())
        .bind(ms(now))
        .fetch_optional(&self.pools.write)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(r.try_get::<String, _>("data")?)
            .map_err(|e| corrupt("oauth state", e))?;
        let data = self
            .cipher
            .decrypt(&state_context(ws, &hash), &sealed)
            .map_err(|e| corrupt("oauth state", e))?;
        Ok(Some(OAuthState {
            workspace_id: ws,
            user_id: user,
            provider: provider.to_owned(),
            data: serde_json::from_str(&data).map_err(|e| corrupt("oauth state", e))?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_hints_hide_the_credential() {
        assert_eq!(
            webhook_hint("https://hooks.slack.com/services/T9TK3CUKW/B0ABCDEF123/XXXXXXXXXXXXXXXXXXXXXXXX"),
            "https://hooks.slack.com/services/T9TK…/B0AB…/••••"
        );
        let d = webhook_hint("https://discord.com/api/webhooks/347114750880120863/kKDdjXa1g9tKNs0-_yOw");
        assert_eq!(d, "https://discord.com/api/webhooks/3471…/••••");
        assert!(!d.contains("kKDd"));
    }
}
