//! Salesforce in SQL: the connection (its refresh token encrypted in
//! `secrets`), sync runs and their progress, and what a pull writes.
//!
//! A sync moves like this: [`SqlStore::claim_salesforce_sync_once`] takes a
//! lease on one due connection (any workspace; the claim is the one query
//! that is not scoped, and everything after it is) and hands back the run to
//! continue, an unfinished one if a worker died in it, or a new one. The
//! worker saves progress page by page ([`SqlStore::save_salesforce_sync_once`],
//! which also renews the lease and fails once the lease is lost), writes
//! records with [`SqlStore::apply_salesforce_accounts_once`] and
//! [`SqlStore::apply_crm_records_once`] (upserts keyed by Salesforce id and
//! guarded by SystemModstamp, so a page read twice changes nothing) and
//! [`SqlStore::apply_salesforce_activities_once`] (Tasks and Events as events
//! of their Accounts' customers, idempotent on the event id), moves an
//! object's watermark when the object is done, and finishes the run.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use perly_domain::event::{ActivityType, Event, EventKind};
use perly_domain::ids::{CustomerId, SyncId, WorkspaceId};
use perly_domain::pulled_fields::HiddenField;
use perly_domain::salesforce::{Environment, SyncSettings};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;
use utoipa::ToSchema;

use crate::secrets::REFRESH_TOKEN;
use crate::sql::{corrupt, ms, parse, secret_context, time, value_rows, SqlStore, CHUNK};
use crate::{Error, Result};

/// What Perly keeps of a connected org (never the tokens).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SalesforceConnection {
    pub environment: Environment,
    /// The login host used; refresh and revoke go back to it.
    pub login_url: String,
    pub instance_url: String,
    pub org_id: String,
    pub org_name: String,
    pub user_id: String,
    pub username: String,
    /// Set when Salesforce refused the refresh token: reconnect to mend.
    pub broken_reason: Option<String>,
    pub broken_at: Option<DateTime<Utc>>,
    pub settings: SyncSettings,
    /// The last permission check (see `perly_salesforce::permissions`).
    #[schema(value_type = Object)]
    pub permissions: Option<serde_json::Value>,
    pub permissions_checked_at: Option<DateTime<Utc>>,
    /// The Perly custom fields' state (created, present, access granted).
    #[schema(value_type = Object)]
    pub fields: Option<serde_json::Value>,
    pub api_usage: Option<ApiUsageSeen>,
    /// No calls to the org before this (limit reached or share used up).
    pub paused_until: Option<DateTime<Utc>>,
    /// Per object, the SystemModstamp up to which everything is pulled.
    pub watermarks: BTreeMap<String, DateTime<Utc>>,
    pub next_sync_at: DateTime<Utc>,
    pub connected_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The org's API usage as `Sforce-Limit-Info` last said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiUsageSeen {
    pub used: u64,
    pub max: u64,
    pub at: DateTime<Utc>,
}

/// A connection as the OAuth callback completes it.
#[derive(Clone)]
pub struct NewSalesforceConnection {
    pub environment: Environment,
    pub login_url: String,
    pub instance_url: String,
    pub org_id: String,
    pub org_name: String,
    pub user_id: String,
    pub username: String,
    pub refresh_token: String,
    pub permissions: serde_json::Value,
}

impl std::fmt::Debug for NewSalesforceConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSalesforceConnection")
            .field("environment", &self.environment)
            .field("login_url", &self.login_url)
            .field("instance_url", &self.instance_url)
            .field("org_id", &self.org_id)
            .field("username", &self.username)
            .field("refresh_token", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// Where a sync run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    Running,
    Succeeded,
    Failed,
}

/// Where one object of a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ObjectState {
    Pending,
    Running,
    Done,
}

/// One object's progress, saved after every page so a run can resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ObjectProgress {
    /// The sObject (`Account`, `Contact`, …).
    pub object: String,
    pub state: ObjectState,
    /// Rows written so far in this run.
    pub rows: u64,
    /// Rows the Bulk job found, once it has finished.
    pub total: Option<u64>,
    /// The Bulk API 2.0 query job and the locator of the next page to read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locator: Option<String>,
    /// This run pulls records with a SystemModstamp from `since` (the
    /// watermark, less an overlap); `until` is the newest one seen so far,
    /// the next watermark.
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Set when the object was skipped (the connected user cannot read it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Set when the object could not be synced, with why: a field it cannot
    /// do without is hidden from the connected user (the other objects
    /// sync all the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    /// Fields Perly wants that the connected user cannot read (field-level
    /// security), as the object's describe said when this run's query was
    /// made: optional ones are left out of the query and the rest is pulled.
    #[serde(default)]
    pub hidden_fields: Vec<HiddenField>,
}

/// One sync run.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SalesforceSync {
    #[schema(value_type = String)]
    pub id: SyncId,
    /// `connect`, `schedule` or `manual`.
    pub trigger: String,
    pub state: SyncState,
    pub objects: Vec<ObjectProgress>,
    pub rows: u64,
    pub last_error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl SalesforceSync {
    /// 0–100: finished objects, and rows read of the current one's total.
    pub fn percent(&self) -> u8 {
        if self.state == SyncState::Succeeded {
            return 100;
        }
        if self.objects.is_empty() {
            return 0;
        }
        let per = 100.0 / self.objects.len() as f64;
        let mut p = 0.0;
        for o in &self.objects {
            p += match (o.state, o.total) {
                (ObjectState::Done, _) => per,
                (ObjectState::Running, Some(total)) if total > 0 => per * (o.rows.min(total) as f64 / total as f64),
                _ => 0.0,
            };
        }
        p.floor().clamp(0.0, 99.0) as u8
    }
}

/// A claimed run: the connection it is for and where it stands.
#[derive(Debug, Clone)]
pub struct SyncClaim {
    pub workspace_id: WorkspaceId,
    pub connection: SalesforceConnection,
    pub sync: SalesforceSync,
}

/// One pulled Account.
#[derive(Debug, Clone, PartialEq)]
pub struct PulledAccount {
    /// The 18-character Account Id.
    pub sf_id: String,
    /// The customer's `external_id`: the Id or the picked external id field.
    pub external_id: String,
    pub name: String,
    pub parent_sf_id: Option<String>,
    pub owner_email: Option<String>,
    pub deleted: bool,
    pub modstamp: DateTime<Utc>,
    /// Pulled fields kept for the profile (standard and picked custom ones).
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// One pulled Contact, contact role, Opportunity, Task or Event.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CrmRecord {
    pub object: String,
    pub sf_id: String,
    pub account_sf_id: Option<String>,
    pub modstamp: DateTime<Utc>,
    pub deleted: bool,
    #[schema(value_type = Object)]
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// One pulled Task or Event on an Account: it becomes a `crm_activity`
/// event (id `salesforce:{sf_id}`) of the Account's customer.
#[derive(Debug, Clone, PartialEq)]
pub struct PulledActivity {
    pub sf_id: String,
    pub account_sf_id: String,
    /// When it happened (or is due).
    pub at: DateTime<Utc>,
    pub kind: ActivityType,
    pub subject: Option<String>,
}

/// What applying a page of Accounts did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppliedAccounts {
    pub upserted: u64,
    pub archived: u64,
}

const CONNECTION_COLUMNS: &str = "environment, login_url, instance_url, org_id, org_name, user_id, username, \
     broken_reason, broken_at, settings, permissions, permissions_checked_at, fields, api_used, api_max, api_seen_at, \
     paused_until, watermarks, next_sync_at, connected_at, updated_at";

const SYNC_COLUMNS: &str = "id, trigger, state, progress, rows, last_error, started_at, updated_at, finished_at";

/// The objects a sync pulls, in order: accounts first so that everything
/// else finds its customer.
pub const SYNC_OBJECTS: [&str; 7] = [
    "Account",
    "Contact",
    "AccountContactRole",
    "Opportunity",
    "OpportunityContactRole",
    "Task",
    "Event",
];

fn json_of<T: Serialize>(what: &str, v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| corrupt(what, e))
}

fn from_json<T: for<'de> Deserialize<'de>>(what: &str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}

fn opt_time(row: &AnyRow, col: &str) -> Result<Option<DateTime<Utc>>> {
    Ok(row.try_get::<Option<i64>, _>(col)?.map(time))
}

fn connection_from(row: &AnyRow) -> Result<SalesforceConnection> {
    let environment: String = row.try_get("environment")?;
    let environment = Environment::parse(&environment).map_err(|e| corrupt("salesforce environment", e.message))?;
    let api_usage = match (
        row.try_get::<Option<i64>, _>("api_used")?,
        row.try_get::<Option<i64>, _>("api_max")?,
        row.try_get::<Option<i64>, _>("api_seen_at")?,
    ) {
        (Some(used), Some(max), Some(at)) => Some(ApiUsageSeen {
            used: used.max(0) as u64,
            max: max.max(0) as u64,
            at: time(at),
        }),
        _ => None,
    };
    let watermarks: BTreeMap<String, i64> =
        from_json("salesforce watermarks", &row.try_get::<String, _>("watermarks")?)?;
    Ok(SalesforceConnection {
        environment,
        login_url: row.try_get("login_url")?,
        instance_url: row.try_get("instance_url")?,
        org_id: row.try_get("org_id")?,
        org_name: row.try_get("org_name")?,
        user_id: row.try_get("user_id")?,
        username: row.try_get("username")?,
        broken_reason: row.try_get("broken_reason")?,
        broken_at: opt_time(row, "broken_at")?,
        settings: from_json("salesforce settings", &row.try_get::<String, _>("settings")?)?,
        permissions: row
            .try_get::<Option<String>, _>("permissions")?
            .map(|s| from_json("salesforce permissions", &s))
            .transpose()?,
        permissions_checked_at: opt_time(row, "permissions_checked_at")?,
        fields: row
            .try_get::<Option<String>, _>("fields")?
            .map(|s| from_json("salesforce fields", &s))
            .transpose()?,
        api_usage,
        paused_until: opt_time(row, "paused_until")?,
        watermarks: watermarks.into_iter().map(|(k, v)| (k, time(v))).collect(),
        next_sync_at: time(row.try_get("next_sync_at")?),
        connected_at: time(row.try_get("connected_at")?),
        updated_at: time(row.try_get("updated_at")?),
    })
}

fn sync_from(row: &AnyRow) -> Result<SalesforceSync> {
    let state: String = row.try_get("state")?;
    let state = match state.as_str() {
        "running" => SyncState::Running,
        "succeeded" => SyncState::Succeeded,
        "failed" => SyncState::Failed,
        other => return Err(corrupt("sync state", other)),
    };
    Ok(SalesforceSync {
        id: parse("sync id", &row.try_get::<String, _>("id")?)?,
        trigger: row.try_get("trigger")?,
        state,
        objects: from_json("sync progress", &row.try_get::<String, _>("progress")?)?,
        rows: row.try_get::<i64, _>("rows")?.max(0) as u64,
        last_error: row.try_get("last_error")?,
        started_at: time(row.try_get("started_at")?),
        updated_at: time(row.try_get("updated_at")?),
        finished_at: opt_time(row, "finished_at")?,
    })
}

fn state_str(s: SyncState) -> &'static str {
    match s {
        SyncState::Running => "running",
        SyncState::Succeeded => "succeeded",
        SyncState::Failed => "failed",
    }
}

/// The import of the workspace's running sync (a first pull), if any.
async fn running_import(tx: &mut Tx, ws: WorkspaceId) -> Result<Option<perly_domain::ids::ImportId>> {
    let row = sqlx::query(
        "SELECT import_id FROM salesforce_syncs WHERE workspace_id = $1 AND state = 'running' AND import_id IS NOT NULL \
         ORDER BY started_at DESC LIMIT 1",
    )
    .bind(ws.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    match row {
        Some(r) => Ok(Some(parse("import id", &r.try_get::<String, _>("import_id")?)?)),
        None => Ok(None),
    }
}

/// A fresh run: every object pending, each window starting at its watermark.
fn new_sync(trigger: &str, watermarks: &BTreeMap<String, DateTime<Utc>>, now: DateTime<Utc>) -> SalesforceSync {
    SalesforceSync {
        id: SyncId::new(),
        trigger: trigger.to_owned(),
        state: SyncState::Running,
        objects: SYNC_OBJECTS
            .iter()
            .map(|o| ObjectProgress {
                object: (*o).to_owned(),
                state: ObjectState::Pending,
                rows: 0,
                total: None,
                job_id: None,
                locator: None,
                since: watermarks.get(*o).copied(),
                until: None,
                skipped: None,
                failed: None,
                hidden_fields: Vec::new(),
            })
            .collect(),
        rows: 0,
        last_error: None,
        started_at: now,
        updated_at: now,
        finished_at: None,
    }
}

type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// Ends the workspace's running sync, if any, with `reason`.
async fn fail_running_syncs(tx: &mut Tx, ws: WorkspaceId, reason: &str, now: DateTime<Utc>) -> Result<()> {
    sqlx::query(
        "UPDATE salesforce_syncs SET state = 'failed', last_error = $3, finished_at = $2, updated_at = $2 \
         WHERE workspace_id = $1 AND state = 'running'",
    )
    .bind(ws.to_string())
    .bind(ms(now))
    .bind(reason.to_owned())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Saves a running sync's progress; how many rows it touched (0: not running).
async fn write_progress(tx: &mut Tx, ws: WorkspaceId, sync: &SalesforceSync, now: DateTime<Utc>) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE salesforce_syncs SET progress = $3, rows = $4, last_error = $5, updated_at = $6 \
         WHERE workspace_id = $1 AND id = $2 AND state = 'running'",
    )
    .bind(ws.to_string())
    .bind(sync.id.to_string())
    .bind(json_of("sync progress", &sync.objects)?)
    .bind(sync.rows as i64)
    .bind(sync.last_error.clone())
    .bind(ms(now))
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

impl SqlStore {
    pub(crate) async fn save_salesforce_connection_once(
        &self,
        ws: WorkspaceId,
        new: &NewSalesforceConnection,
        now: DateTime<Utc>,
    ) -> Result<SalesforceConnection> {
        let mut tx = self.pools.write.begin().await?;
        let previous =
            sqlx::query("SELECT org_id, settings, watermarks FROM salesforce_connections WHERE workspace_id = $1")
                .bind(ws.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        // Reconnecting the same org keeps its settings and watermarks; another org starts afresh.
        let (settings, watermarks) = match previous {
            Some(r) if r.try_get::<String, _>("org_id")? == new.org_id => (
                r.try_get::<String, _>("settings")?,
                r.try_get::<String, _>("watermarks")?,
            ),
            _ => (
                json_of("salesforce settings", &SyncSettings::default())?,
                "{}".to_owned(),
            ),
        };
        sqlx::query("DELETE FROM salesforce_connections WHERE workspace_id = $1")
            .bind(ws.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO salesforce_connections (workspace_id, environment, login_url, instance_url, org_id, org_name, \
             user_id, username, settings, permissions, permissions_checked_at, watermarks, next_sync_at, connected_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $11, $11, $11)",
        )
        .bind(ws.to_string())
        .bind(new.environment.as_str())
        .bind(new.login_url.clone())
        .bind(new.instance_url.clone())
        .bind(new.org_id.clone())
        .bind(new.org_name.clone())
        .bind(new.user_id.clone())
        .bind(new.username.clone())
        .bind(settings)
        .bind(json_of("salesforce permissions", &new.permissions)?)
        .bind(ms(now))
        .bind(watermarks)
        .execute(&mut *tx)
        .await?;
        let sealed = self
            .cipher
            .encrypt(&secret_context(ws, REFRESH_TOKEN), &new.refresh_token);
        sqlx::query(
            "INSERT INTO secrets (workspace_id, name, ciphertext, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (workspace_id, name) DO UPDATE SET ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
        )
        .bind(ws.to_string())
        .bind(REFRESH_TOKEN)
        .bind(sealed)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
        // A run a previous connection left unfinished is over.
        fail_running_syncs(&mut tx, ws, "the connection was replaced", now).await?;
        tx.commit().await?;
        self.salesforce_connection_once(ws).await?.ok_or(Error::NotFound)
    }

    pub(crate) async fn salesforce_connection_once(&self, ws: WorkspaceId) -> Result<Option<SalesforceConnection>> {
        let row = sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM salesforce_connections WHERE workspace_id = $1"
        ))
        .bind(ws.to_string())
        .fetch_optional(&self.pools.read)
        .await?;
        row.as_ref().map(connection_from).transpose()
    }

    pub(crate) async fn salesforce_refresh_token_once(&self, ws: WorkspaceId) -> Result<Option<String>> {
        crate::Secrets::get_secret(self, ws, REFRESH_TOKEN).await
    }

    pub(crate) async fn delete_salesforce_connection_once(&self, ws: WorkspaceId, now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.pools.write.begin().await?;
        for sql in [
            "DELETE FROM salesforce_connections WHERE workspace_id = $1",
            "DELETE FROM secrets WHERE workspace_id = $1 AND name = 'salesforce/refresh_token'",
            "DELETE FROM salesforce_pushes WHERE workspace_id = $1",
        ] {
            sqlx::query(sql).bind(ws.to_string()).execute(&mut *tx).await?;
        }
        fail_running_syncs(&mut tx, ws, "Salesforce was disconnected", now).await?;
        sqlx::query(
            "UPDATE salesforce_actions SET state = 'dead', last_error = 'Salesforce was disconnected', done_at = $2 \
             WHERE workspace_id = $1 AND state = 'pending'",
        )
        .bind(ws.to_string())
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn mark_salesforce_broken_once(
        &self,
        ws: WorkspaceId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE salesforce_connections SET broken_reason = $2, broken_at = $3, updated_at = $3, sync_lease_until = NULL \
             WHERE workspace_id = $1",
        )
        .bind(ws.to_string())
        .bind(reason.to_owned())
        .bind(ms(now))
        .execute(&self.pools.write)
        .await?;
        Ok(())
    }

    pub(crate) async fn update_salesforce_settings_once(
        &self,
        ws: WorkspaceId,
        settings: &SyncSettings,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let done =
            sqlx::query("UPDATE salesforce_connections SET settings = $2, updated_at = $3 WHERE workspace_id = $1")
                .bind(ws.to_string())
                .bind(json_of("salesforce settings", settings)?)
                .bind(ms(now))
                .execute(&self.pools.write)
                .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound);
        }
        Ok(())
    }

    pub(crate) async fn record_salesforce_checks_once(
        &self,
        ws: WorkspaceId,
        permissions: Option<&serde_json::Value>,
        fields: Option<&serde_json::Value>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE salesforce_connections SET permissions = COALESCE($2, permissions), \
             permissions_checked_at = CASE WHEN $2 IS NULL THEN permissions_checked_at ELSE $4 END, \
             fields = COALESCE($3, fields), updated_at = $4 WHERE workspace_id = $1",
        )
        .bind(ws.to_string())
        .bind(permissions.map(|p| p.to_string()))
        .bind(fields.map(|f| f.to_string()))
        .bind(ms(now))
        .execute(&self.pools.write)
        .await?;
        Ok(())
    }

    pub(crate) async fn record_salesforce_usage_once(
        &self,
        ws: WorkspaceId,
        usage: Option<(u64, u64)>,
        paused_until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let (used, max) = usage.map_or((None, None), |(u, m)| (Some(u as i64), Some(m as i64)));
        sqlx::query(
            "UPDATE salesforce_connections SET api_used = COALESCE($2, api_used), api_max = COALESCE($3, api_max), \
             api_seen_at = CASE WHEN $2 IS NULL THEN api_seen_at ELSE $5 END, \
             paused_until = CASE WHEN $4 IS NULL THEN paused_until ELSE $4 END WHERE workspace_id = $1",
        )
        .bind(ws.to_string())
        .bind(used)
        .bind(max)
        .bind(paused_until.map(ms))
        .bind(ms(now))
        .execute(&self.pools.write)
        .await?;
        Ok(())
    }

    pub(crate) async fn request_salesforce_sync_once(&self, ws: WorkspaceId, now: DateTime<Utc>) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE salesforce_connections SET next_sync_at = $2, sync_requested_at = $2 \
             WHERE workspace_id = $1 AND broken_reason IS NULL",
        )
        .bind(ws.to_string())
        .bind(ms(now))
        .execute(&self.pools.write)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub(crate) async fn claim_salesforce_sync_once(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Option<SyncClaim>> {
        let now_ms = ms(now);
        let mut tx = self.pools.write.begin().await?;
        let sql = format!(
            "UPDATE salesforce_connections SET sync_lease_until = $2 WHERE workspace_id IN (\
             SELECT c.workspace_id FROM salesforce_connections c WHERE c.next_sync_at <= $1 AND c.broken_reason IS NULL \
             AND (c.sync_lease_until IS NULL OR c.sync_lease_until < $1) AND (c.paused_until IS NULL OR c.paused_until <= $1) \
             ORDER BY c.next_sync_at LIMIT 1{}) RETURNING workspace_id, sync_requested_at",
            self.dialect().skip_locked()
        );
        let Some(row) = sqlx::query(&sql)
            .bind(now_ms)
            .bind(now_ms + lease.num_milliseconds())
            .fetch_optional(&mut *tx)
            .await?
        else {
            tx.commit().await?;
            return Ok(None);
        };
        let ws: WorkspaceId = parse("workspace id", &row.try_get::<String, _>("workspace_id")?)?;
        let requested = row.try_get::<Option<i64>, _>("sync_requested_at")?.is_some();
        let conn_row = sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM salesforce_connections WHERE workspace_id = $1"
        ))
        .bind(ws.to_string())
        .fetch_one(&mut *tx)
        .await?;
        let connection = connection_from(&conn_row)?;
        let unfinished = sqlx::query(&format!(
            "SELECT {SYNC_COLUMNS} FROM salesforce_syncs WHERE workspace_id = $1 AND state = 'running' \
             ORDER BY started_at DESC LIMIT 1"
        ))
        .bind(ws.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let sync = match unfinished {
            Some(r) => sync_from(&r)?,
            None => {
                let trigger = if requested {
                    "manual"
                } else if connection.watermarks.is_empty() {
                    "connect"
                } else {
                    "schedule"
                };
                let sync = new_sync(trigger, &connection.watermarks, now);
                // A first pull brings the org's history: an import, whose
                // alerts are summarised once instead of sent one by one.
                let import = if connection.watermarks.is_empty() {
                    let id = crate::imports::create_import(
                        &mut tx,
                        ws,
                        perly_domain::imports::ImportSource::Salesforce,
                        "First Salesforce sync",
                        "open",
                        now,
                    )
                    .await?;
                    Some(id.to_string())
                } else {
                    None
                };
                sqlx::query(&format!(
                    "INSERT INTO salesforce_syncs (workspace_id, {SYNC_COLUMNS}, import_id) VALUES ($1, $2, $3, 'running', $4, 0, NULL, $5, $5, NULL, $6)"
                ))
                .bind(ws.to_string())
                .bind(sync.id.to_string())
                .bind(sync.trigger.clone())
                .bind(json_of("sync progress", &sync.objects)?)
                .bind(now_ms)
                .bind(import)
                .execute(&mut *tx)
                .await?;
                sync
            }
        };
        tx.commit().await?;
        Ok(Some(SyncClaim {
            workspace_id: ws,
            connection,
            sync,
        }))
    }

    /// Saves progress and renews the lease; `Conflict` when the lease was
    /// lost (another worker took the run over) or the run is no longer running.
    pub(crate) async fn save_salesforce_sync_once(
        &self,
        ws: WorkspaceId,
        sync: &SalesforceSync,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.pools.write.begin().await?;
        let held = sqlx::query(
            "UPDATE salesforce_connections SET sync_lease_until = $2 WHERE workspace_id = $1 AND sync_lease_until >= $3",
        )
        .bind(ws.to_string())
        .bind(ms(now + lease))
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
        if held.rows_affected() == 0 {
            return Err(Error::Conflict("the sync lease was lost".into()));
        }
        if write_progress(&mut tx, ws, sync, now).await? == 0 {
            return Err(Error::Conflict("the sync is no longer running".into()));
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn advance_salesforce_watermark_once(
        &self,
        ws: WorkspaceId,
        object: &str,
        until: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.pools.write.begin().await?;
        let Some(row) = sqlx::query("SELECT watermarks FROM salesforce_connections WHERE workspace_id = $1")
            .bind(ws.to_string())
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Err(Error::NotFound);
        };
        let mut marks: BTreeMap<String, i64> =
            from_json("salesforce watermarks", &row.try_get::<String, _>("watermarks")?)?;
        let entry = marks.entry(object.to_owned()).or_insert(i64::MIN);
        *entry = (*entry).max(ms(until));
        sqlx::query("UPDATE salesforce_connections SET watermarks = $2 WHERE workspace_id = $1")
            .bind(ws.to_string())
            .bind(json_of("salesforce watermarks", &marks)?)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends a run, releases the lease and sets when the next one is due.
    pub(crate) async fn finish_salesforce_sync_once(
        &self,
        ws: WorkspaceId,
        sync: &SalesforceSync,
        next_sync_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.pools.write.begin().await?;
        sqlx::query(
            "UPDATE salesforce_syncs SET state = $3, progress = $4, rows = $5, last_error = $6, updated_at = $7, finished_at = $7 \
             WHERE workspace_id = $1 AND id = $2",
        )
        .bind(ws.to_string())
        .bind(sync.id.to_string())
        .bind(state_str(sync.state))
        .bind(json_of("sync progress", &sync.objects)?)
        .bind(sync.rows as i64)
        .bind(sync.last_error.clone())
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
        // Its import (a first pull) is complete: it settles once rescored.
        sqlx::query(
            "UPDATE imports SET state = 'closed', closed_at = $3 WHERE workspace_id = $1 AND state = 'open' \
             AND id = (SELECT import_id FROM salesforce_syncs WHERE workspace_id = $1 AND id = $2)",
        )
        .bind(ws.to_string())
        .bind(sync.id.to_string())
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
        // "Sync now" pressed while this run was going stands; otherwise the
        // schedule sets the next one.
        sqlx::query(
            "UPDATE salesforce_connections SET sync_lease_until = NULL, \
             next_sync_at = CASE WHEN sync_requested_at > $3 THEN sync_requested_at ELSE $2 END, \
             sync_requested_at = NULL WHERE workspace_id = $1",
        )
        .bind(ws.to_string())
        .bind(ms(next_sync_at))
        .bind(ms(sync.started_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Keeps a run resumable after an error: saves its progress and the
    /// error, releases the lease, and makes it due again at `retry_at`.
    pub(crate) async fn postpone_salesforce_sync_once(
        &self,
        ws: WorkspaceId,
        sync: &SalesforceSync,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.pools.write.begin().await?;
        write_progress(&mut tx, ws, sync, now).await?;
        sqlx::query(
            "UPDATE salesforce_connections SET sync_lease_until = NULL, next_sync_at = $2 WHERE workspace_id = $1",
        )
        .bind(ws.to_string())
        .bind(ms(retry_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn salesforce_syncs_once(&self, ws: WorkspaceId, limit: usize) -> Result<Vec<SalesforceSync>> {
        let rows = sqlx::query(&format!(
            "SELECT {SYNC_COLUMNS} FROM salesforce_syncs WHERE workspace_id = $1 ORDER BY started_at DESC, id DESC LIMIT $2"
        ))
        .bind(ws.to_string())
        .bind(limit as i64)
        .fetch_all(&self.pools.read)
        .await?;
        rows.iter().map(sync_from).collect()
    }

    /// Upserts pulled Accounts as customers (and their fields as a
    /// `crm_records` row), archives the deleted ones. New customers are
    /// scored; a changed name or owner does not need a rescore.
    pub(crate) async fn apply_salesforce_accounts_once(
        &self,
        ws: WorkspaceId,
        rows: &[PulledAccount],
        now: DateTime<Utc>,
    ) -> Result<AppliedAccounts> {
        let ws_s = ws.to_string();
        let now_ms = ms(now);
        let mut out = AppliedAccounts::default();
        let mut tx = self.pools.write.begin().await?;
        // Parents pulled earlier: their customers' external ids.
        let mut parents: Vec<&str> = rows.iter().filter_map(|r| r.parent_sf_id.as_deref()).collect();
        parents.sort_unstable();
        parents.dedup();
        let mut external_of: HashMap<String, String> = self.crm_external_ids_in(&mut tx, ws, &parents).await?;
        for r in rows.iter().filter(|r| !r.deleted) {
            external_of.insert(r.sf_id.clone(), r.external_id.clone());
        }
        let live: Vec<&PulledAccount> = rows.iter().filter(|r| !r.deleted).collect();
        // The rollup itself lives in `rollup_blobs`, made when first folded.
        let empty: Vec<u8> = Vec::new();
        let import = running_import(&mut tx, ws).await?.map(|id| id.to_string());
        for chunk in live.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO customers (id, workspace_id, external_id, name, owner_email, parent_external_id, crm_id, created_at, updated_at) \
                 VALUES {} ON CONFLICT (workspace_id, external_id) DO UPDATE SET name = excluded.name, \
                 owner_email = COALESCE(excluded.owner_email, customers.owner_email), parent_external_id = excluded.parent_external_id, \
                 crm_id = excluded.crm_id, updated_at = excluded.updated_at, archived_at = NULL",
                value_rows(1, chunk.len(), 9)
            );
            let sql = self.dialect().positional(sql);
            let mut q = sqlx::query(&sql);
            // A fresh id per row: it is stored only where the row is new.
            let fresh: Vec<String> = chunk
                .iter()
                .map(|_| perly_domain::ids::CustomerId::new().to_string())
                .collect();
            for (r, id) in chunk.iter().zip(&fresh) {
                let parent = r
                    .parent_sf_id
                    .as_ref()
                    .map(|p| external_of.get(p).cloned().unwrap_or_else(|| p.clone()));
                q = q
                    .bind(id.clone())
                    .bind(ws_s.clone())
                    .bind(r.external_id.clone())
                    .bind(r.name.clone())
                    .bind(r.owner_email.clone())
                    .bind(parent)
                    .bind(r.sf_id.clone())
                    .bind(now_ms)
                    .bind(now_ms);
            }
            q.execute(&mut *tx).await?;
            // New customers get an empty rollup, dirty so they are scored:
            // the fresh ids that were stored are exactly the new customers.
            // Looked up by primary key, a plan that needs no table
            // statistics (a first bulk load outruns them).
            let sql = format!(
                "INSERT INTO rollups (customer_id, workspace_id, data, version, dirty, dirty_at, updated_at, dirty_import, last_import) \
                 SELECT id, workspace_id, $2, 0, 1, $3, $3, $4, $4 FROM customers WHERE {} = $1 AND id IN ({}) \
                 ON CONFLICT (customer_id) DO NOTHING",
                self.dialect().unindexed("workspace_id"),
                crate::sql::params(5, fresh.len())
            );
            let sql = self.dialect().positional(sql);
            let mut q = sqlx::query(&sql)
                .bind(ws_s.clone())
                .bind(empty.clone())
                .bind(now_ms)
                .bind(import.clone());
            for id in fresh {
                q = q.bind(id);
            }
            q.execute(&mut *tx).await?;
            out.upserted += chunk.len() as u64;
        }
        let deleted: Vec<&str> = rows.iter().filter(|r| r.deleted).map(|r| r.sf_id.as_str()).collect();
        for chunk in deleted.chunks(CHUNK) {
            let sql = format!(
                "UPDATE customers SET archived_at = $2, updated_at = $2 WHERE workspace_id = $1 AND archived_at IS NULL \
                 AND crm_id IN ({})",
                crate::sql::params(3, chunk.len())
            );
            let sql = self.dialect().positional(sql);
            let mut q = sqlx::query(&sql).bind(ws_s.clone()).bind(now_ms);
            for id in chunk {
                q = q.bind((*id).to_owned());
            }
            out.archived += q.execute(&mut *tx).await?.rows_affected();
        }
        let records: Vec<CrmRecord> = rows
            .iter()
            .map(|r| CrmRecord {
                object: "Account".into(),
                sf_id: r.sf_id.clone(),
                account_sf_id: Some(r.sf_id.clone()),
                modstamp: r.modstamp,
                deleted: r.deleted,
                data: r.data.clone(),
            })
            .collect();
        self.upsert_crm_records(&mut tx, ws, &records).await?;
        let live_ids: Vec<String> = live.iter().map(|r| r.sf_id.clone()).collect();
        crate::salesforce_outbox::queue_score_pushes(
            self,
            &mut tx,
            ws,
            &live_ids,
            crate::salesforce_outbox::PushesFor::Accounts,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(out)
    }

    pub(crate) async fn apply_crm_records_once(&self, ws: WorkspaceId, rows: &[CrmRecord]) -> Result<u64> {
        let mut tx = self.pools.write.begin().await?;
        let n = self.upsert_crm_records(&mut tx, ws, rows).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn upsert_crm_records(&self, tx: &mut Tx, ws: WorkspaceId, rows: &[CrmRecord]) -> Result<u64> {
        let ws_s = ws.to_string();
        let mut n = 0;
        for chunk in rows.chunks(CHUNK) {
            // An older copy of a record (a page read again) never overwrites a newer one.
            let sql = format!(
                "INSERT INTO crm_records (workspace_id, object, sf_id, account_sf_id, modstamp, deleted, data) VALUES {} \
                 ON CONFLICT (workspace_id, object, sf_id) DO UPDATE SET account_sf_id = excluded.account_sf_id, \
                 modstamp = excluded.modstamp, deleted = excluded.deleted, data = excluded.data \
                 WHERE excluded.modstamp >= crm_records.modstamp",
                value_rows(1, chunk.len(), 7)
            );
            let sql = self.dialect().positional(sql);
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(ws_s.clone())
                    .bind(r.object.clone())
                    .bind(r.sf_id.clone())
                    .bind(r.account_sf_id.clone())
                    .bind(ms(r.modstamp))
                    .bind(i64::from(r.deleted))
                    .bind(json_of("crm record", &r.data)?);
            }
            n += q.execute(&mut **tx).await?.rows_affected();
        }
        Ok(n)
    }

    /// Account Id → external id of the live customers.
    async fn crm_external_ids_in(
        &self,
        tx: &mut Tx,
        ws: WorkspaceId,
        sf_ids: &[&str],
    ) -> Result<HashMap<String, String>> {
        let customers = self.customers_of_accounts(tx, ws, sf_ids).await?;
        Ok(customers
            .into_iter()
            .map(|(account, (_, external_id))| (account, external_id))
            .collect())
    }

    /// Stores a page of pulled Tasks and Events in one transaction as
    /// `crm_activity` events of their Accounts' live customers, exactly as
    /// [`Store::ingest_events`](crate::Store::ingest_events) stores events
    /// (an id seen before is skipped; new ones are folded into the rollups,
    /// which are marked for rescoring). Activities on Accounts without a
    /// live customer are left out. Returns how many events were new.
    pub(crate) async fn apply_salesforce_activities_once(
        &self,
        ws: WorkspaceId,
        rows: &[PulledActivity],
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let events: Vec<(&str, Event)> = rows
            .iter()
            .map(|r| {
                let event = Event {
                    id: format!("salesforce:{}", r.sf_id),
                    customer_id: String::new(),
                    occurred_at: r.at,
                    kind: EventKind::CrmActivity {
                        activity_type: r.kind,
                        subject: r.subject.clone(),
                    },
                };
                (r.account_sf_id.as_str(), event)
            })
            .collect();
        self.store_account_events(ws, events, now).await
    }

    /// Stores events of Accounts (Opportunity changes) on their live
    /// customers; see [`Store::apply_salesforce_events`](crate::Store::apply_salesforce_events).
    pub(crate) async fn apply_salesforce_events_once(
        &self,
        ws: WorkspaceId,
        rows: &[(String, Event)],
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let events = rows.iter().map(|(a, e)| (a.as_str(), e.clone())).collect();
        self.store_account_events(ws, events, now).await
    }

    /// One transaction: each event goes to its Account's live customer
    /// (whose external id it gets), the first of each id only.
    async fn store_account_events(&self, ws: WorkspaceId, rows: Vec<(&str, Event)>, now: DateTime<Utc>) -> Result<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        let mut tx = self.pools.write.begin().await?;
        let mut accounts: Vec<&str> = rows.iter().map(|(a, _)| *a).collect();
        accounts.sort_unstable();
        accounts.dedup();
        let customers = self.customers_of_accounts(&mut tx, ws, &accounts).await?;
        let mut seen = HashSet::with_capacity(rows.len());
        let events: Vec<(CustomerId, Event)> = rows
            .into_iter()
            .filter_map(|(account, mut event)| {
                let (id, external_id) = customers.get(account)?;
                if !seen.insert(event.id.clone()) {
                    return None;
                }
                event.customer_id = external_id.clone();
                Some((*id, event))
            })
            .collect();
        let refs: Vec<(CustomerId, &Event)> = events.iter().map(|(id, e)| (*id, e)).collect();
        let origin = match running_import(&mut tx, ws).await? {
            Some(id) => crate::sql::Origin::Import(id),
            None => crate::sql::Origin::Live,
        };
        let inserted = self.store_events(&mut tx, ws, &refs, origin, now).await?;
        tx.commit().await?;
        Ok(inserted.len() as u64)
    }

    /// Account Id → (customer id, external id) of the live customers.
    async fn customers_of_accounts(
        &self,
        tx: &mut Tx,
        ws: WorkspaceId,
        sf_ids: &[&str],
    ) -> Result<HashMap<String, (CustomerId, String)>> {
        let mut out = HashMap::with_capacity(sf_ids.len());
        for chunk in sf_ids.chunks(crate::sql::IN_CHUNK) {
            let inner = format!(
                "SELECT id, crm_id, external_id FROM customers WHERE workspace_id = $1 AND archived_at IS NULL \
                 AND crm_id IN ({})",
                crate::sql::params(2, chunk.len())
            );
            let sql = self
                .dialect()
                .positional(self.dialect().json_rows(&inner, "id, crm_id, external_id"));
            let mut q = sqlx::query(&sql).bind(ws.to_string());
            for id in chunk {
                q = q.bind((*id).to_owned());
            }
            for (id, crm_id, external_id) in crate::sql::fetch_json_rows::<(String, String, String)>(q, tx).await? {
                out.insert(crm_id, (parse("customer id", &id)?, external_id));
            }
        }
        Ok(out)
    }

    /// The pulled records of one customer's Account (not deleted), newest first per object.
    pub(crate) async fn crm_records_for_once(&self, ws: WorkspaceId, external_id: &str) -> Result<Vec<CrmRecord>> {
        let rows = sqlx::query(
            "SELECT r.object, r.sf_id, r.account_sf_id, r.modstamp, r.deleted, r.data FROM crm_records r \
             JOIN customers c ON c.workspace_id = r.workspace_id AND c.crm_id = r.account_sf_id \
             WHERE r.workspace_id = $1 AND c.external_id = $2 AND c.archived_at IS NULL AND r.deleted = 0 \
             ORDER BY r.object, r.modstamp DESC LIMIT 500",
        )
        .bind(ws.to_string())
        .bind(external_id.to_owned())
        .fetch_all(&self.pools.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CrmRecord {
                    object: r.try_get("object")?,
                    sf_id: r.try_get("sf_id")?,
                    account_sf_id: r.try_get("account_sf_id")?,
                    modstamp: time(r.try_get("modstamp")?),
                    deleted: r.try_get::<i64, _>("deleted")? != 0,
                    data: from_json("crm record", &r.try_get::<String, _>("data")?)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_counts_done_objects_and_rows_of_the_running_one() {
        let now = Utc::now();
        let mut s = new_sync("connect", &BTreeMap::new(), now);
        assert_eq!(s.percent(), 0);
        s.objects[0].state = ObjectState::Done;
        s.objects[1].state = ObjectState::Running;
        s.objects[1].total = Some(100);
        s.objects[1].rows = 50;
        // 1/7 done plus half of 1/7.
        assert_eq!(s.percent(), 21);
        s.state = SyncState::Succeeded;
        assert_eq!(s.percent(), 100);
    }
}
