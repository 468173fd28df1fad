//! What Perly writes to Salesforce, as two outboxes filled in the
//! transactions that decide it, and the automation rules that fill one.
//!
//! - **Score pushes** (`salesforce_pushes`): one row per Account with the
//!   latest score and risk level and what was last written. Recording scores
//!   ([`queue_score_pushes`], called by `record_scores`) updates the row only
//!   when a value changed; the row is pending while the two differ. A worker
//!   leases up to a batch of one workspace's due rows
//!   ([`SqlStore::claim_salesforce_pushes_once`]), writes them in one
//!   `composite/sobjects` call and acks each record on its own: written, to
//!   retry later, or given up (the Account is gone). A value that changed
//!   while the push was in flight leaves the row pending.
//! - **Automation actions** (`salesforce_actions`): recording an alert
//!   ([`queue_actions`]) asks each enabled rule what it does for it and adds
//!   at most one Task and one Chatter post per alert (a unique key). Each
//!   claim counts an attempt; an action claimed before may already exist in
//!   the org (the worker died before its ack), so the worker looks for its
//!   marker before creating it again.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use perly_domain::ids::{ActionId, AlertId, RuleId, WorkspaceId};
use perly_domain::risk::RiskLevel;
use perly_domain::salesforce::{ActionDraft, ActionKind, AlertContext, AutomationRule};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use utoipa::ToSchema;

use crate::channels::NewAlert;
use crate::sql::{corrupt, ms, params, parse, time, value_rows, SqlStore, CHUNK, IN_CHUNK};
use crate::{Error, Result};

type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// One Account's score waiting to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScorePush {
    pub account_sf_id: String,
    pub score: i64,
    pub risk_level: RiskLevel,
    /// When Perly calculated it (`Perly_Last_Updated__c`).
    pub scored_at: DateTime<Utc>,
    /// Earlier failed attempts.
    pub attempts: u32,
}

/// Leased pushes of one workspace.
#[derive(Debug, Clone)]
pub struct ClaimedPushes {
    pub workspace_id: WorkspaceId,
    pub pushes: Vec<ScorePush>,
}

/// How writing one Account ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    Written,
    /// Try again at `at` (locked row, 5xx, the fields not ready yet).
    Retry {
        error: String,
        at: DateTime<Utc>,
    },
    /// Not again until the score changes (the Account was deleted, say).
    GaveUp {
        error: String,
    },
}

/// The ack of one claimed push: the values that were sent and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushAck {
    pub account_sf_id: String,
    pub score: i64,
    pub risk_level: RiskLevel,
    pub outcome: PushOutcome,
}

/// The score push outbox of a workspace, for settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct PushStatus {
    /// Accounts whose latest score is not in Salesforce yet.
    pub pending: u64,
    /// Of those, how many failed at least once.
    pub retrying: u64,
    /// Accounts given up on (e.g. deleted in Salesforce) until their score changes.
    pub given_up: u64,
    pub last_pushed_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// A stored automation rule.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SalesforceRule {
    #[schema(value_type = String)]
    pub id: RuleId,
    #[serde(flatten)]
    pub rule: AutomationRule,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Where an action stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionState {
    Pending,
    Done,
    /// Refused for good, or Salesforce was disconnected.
    Dead,
}

impl ActionState {
    fn parse(s: &str) -> Result<Self> {
        match s {
            "pending" => Ok(Self::Pending),
            "done" => Ok(Self::Done),
            "dead" => Ok(Self::Dead),
            other => Err(corrupt("action state", other)),
        }
    }
}

/// One queued (or finished) Task or Chatter post.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SalesforceAction {
    #[schema(value_type = String)]
    pub id: ActionId,
    #[schema(value_type = String)]
    pub alert_id: AlertId,
    #[schema(value_type = String)]
    pub rule_id: RuleId,
    pub kind: ActionKind,
    pub account_sf_id: String,
    /// The Account's owner as last pulled (the Task's `OwnerId`).
    pub owner_id: Option<String>,
    pub draft: ActionDraft,
    /// Written into the record; found by the lookup before a re-create.
    pub marker: String,
    pub state: ActionState,
    /// Claims so far, this one included.
    pub attempts: u32,
    /// The Task or FeedItem id once written.
    pub remote_id: Option<String>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub done_at: Option<DateTime<Utc>>,
}

/// Leased actions of one workspace.
#[derive(Debug, Clone)]
pub struct ClaimedActions {
    pub workspace_id: WorkspaceId,
    pub actions: Vec<SalesforceAction>,
}

/// How one attempt at an action ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionOutcome {
    Done { remote_id: String },
    Retry { error: String, at: DateTime<Utc> },
    Dead { error: String },
}

const RULE_COLUMNS: &str = "id, name, enabled, rule, created_at, updated_at";

fn rule_from(row: &AnyRow) -> Result<SalesforceRule> {
    let mut rule: AutomationRule =
        serde_json::from_str(&row.try_get::<String, _>("rule")?).map_err(|e| corrupt("salesforce rule", e))?;
    rule.name = row.try_get("name")?;
    rule.enabled = row.try_get::<i64, _>("enabled")? != 0;
    Ok(SalesforceRule {
        id: parse("rule id", &row.try_get::<String, _>("id")?)?,
        rule,
        created_at: time(row.try_get("created_at")?),
        updated_at: time(row.try_get("updated_at")?),
    })
}

const ACTION_COLUMNS: &str = "a.id, a.alert_id, a.rule_id, a.action, a.account_sf_id, a.body, a.marker, a.state, \
     a.attempts, a.remote_id, a.last_error, a.created_at, a.done_at, r.data AS account_data";

/// The join that finds an action's Account as pulled (for its owner).
const ACTION_FROM: &str = "salesforce_actions a LEFT JOIN crm_records r ON r.workspace_id = a.workspace_id \
     AND r.object = 'Account' AND r.sf_id = a.account_sf_id";

fn action_from(row: &AnyRow) -> Result<SalesforceAction> {
    let kind: String = row.try_get("action")?;
    let owner_id = row
        .try_get::<Option<String>, _>("account_data")?
        .and_then(|d| serde_json::from_str::<serde_json::Value>(&d).ok())
        .and_then(|d| d.get("OwnerId").and_then(|v| v.as_str()).map(str::to_owned));
    Ok(SalesforceAction {
        id: parse("action id", &row.try_get::<String, _>("id")?)?,
        alert_id: parse("alert id", &row.try_get::<String, _>("alert_id")?)?,
        rule_id: parse("rule id", &row.try_get::<String, _>("rule_id")?)?,
        kind: ActionKind::parse(&kind).ok_or_else(|| corrupt("action kind", &kind))?,
        account_sf_id: row.try_get("account_sf_id")?,
        owner_id,
        draft: serde_json::from_str(&row.try_get::<String, _>("body")?).map_err(|e| corrupt("action body", e))?,
        marker: row.try_get("marker")?,
        state: ActionState::parse(&row.try_get::<String, _>("state")?)?,
        attempts: row.try_get::<i64, _>("attempts")?.clamp(0, i64::from(u32::MAX)) as u32,
        remote_id: row.try_get("remote_id")?,
        last_error: row.try_get("last_error")?,
        created_at: time(row.try_get("created_at")?),
        done_at: row.try_get::<Option<i64>, _>("done_at")?.map(time),
    })
}

/// The marker of an alert's action: unique, and plain enough to survive
/// Salesforce's text fields.
pub fn action_marker(alert_id: AlertId, kind: ActionKind) -> String {
    format!("perly-alert:{alert_id}:{}", kind.as_str())
}

/// Which customers to queue pushes for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PushesFor {
    /// Customers just scored, by Perly id.
    Customers,
    /// Accounts just pulled, by Salesforce id: a first push for those
    /// already scored that Salesforce has no Perly values for yet.
    Accounts,
}

/// Queues the current score of these customers (by id or by Account id, see
/// [`PushesFor`]) wherever it differs from what was queued last, in the
/// caller's transaction. Customers not from Salesforce, unscored or archived
/// ones, and workspaces without a connection are left out.
pub(crate) async fn queue_score_pushes(
    store: &SqlStore,
    tx: &mut Tx,
    ws: WorkspaceId,
    keys: &[String],
    by: PushesFor,
    now: DateTime<Utc>,
) -> Result<()> {
    // The customers are found by the listed keys (ids by primary key,
    // Salesforce ids by `customers_by_crm_id`): left indexable, SQLite
    // walked the workspace's customers with a risk level (or a Salesforce
    // id) for each chunk, looking each up in the list.
    let dialect = store.dialect();
    let (column, workspace) = match by {
        PushesFor::Customers => ("c.id", dialect.unindexed("c.workspace_id")),
        PushesFor::Accounts => ("c.crm_id", "c.workspace_id".to_owned()),
    };
    let risk = dialect.unindexed("c.risk_level");
    // Only a change of value re-opens a row; a new row is always pending.
    let on_conflict = match by {
        PushesFor::Customers => {
            "DO UPDATE SET customer_id = excluded.customer_id, score = excluded.score, risk_level = excluded.risk_level, \
             scored_at = excluded.scored_at, updated_at = excluded.updated_at, \
             pending = CASE WHEN salesforce_pushes.pushed_score = excluded.score \
                 AND salesforce_pushes.pushed_risk_level = excluded.risk_level THEN 0 ELSE 1 END, \
             attempts = CASE WHEN salesforce_pushes.pending = 1 THEN salesforce_pushes.attempts ELSE 0 END, \
             next_attempt_at = CASE WHEN salesforce_pushes.pending = 1 THEN salesforce_pushes.next_attempt_at \
                 ELSE excluded.next_attempt_at END \
             WHERE salesforce_pushes.score <> excluded.score OR salesforce_pushes.risk_level <> excluded.risk_level"
        }
        PushesFor::Accounts => "DO NOTHING",
    };
    let ws_s = ws.to_string();
    let now_ms = ms(now);
    if keys.is_empty() {
        return Ok(());
    }
    // Most workspaces have no Salesforce connection: one lookup instead of
    // a statement per 500 customers that finds each of them to push nothing
    // (an eighth of a full rescore's time).
    let connected = sqlx::query("SELECT 1 AS one FROM salesforce_connections WHERE workspace_id = $1")
        .bind(ws_s.clone())
        .fetch_optional(&mut **tx)
        .await?
        .is_some();
    if !connected {
        return Ok(());
    }
    for chunk in keys.chunks(IN_CHUNK) {
        let sql = format!(
            "INSERT INTO salesforce_pushes (workspace_id, account_sf_id, customer_id, score, risk_level, scored_at, \
             pending, attempts, next_attempt_at, updated_at) \
             SELECT c.workspace_id, c.crm_id, c.id, c.score, c.risk_level, COALESCE(c.scored_at, $2), 1, 0, $2, $2 \
             FROM customers c WHERE {workspace} = $1 AND {column} IN ({}) AND c.crm_id IS NOT NULL \
             AND c.score IS NOT NULL AND {risk} IS NOT NULL AND c.archived_at IS NULL \
             AND EXISTS (SELECT 1 FROM salesforce_connections s WHERE s.workspace_id = c.workspace_id) \
             ON CONFLICT (workspace_id, account_sf_id) {on_conflict}",
            params(3, chunk.len())
        );
        let sql = store.dialect().positional(sql);
        let mut q = sqlx::query(&sql).bind(ws_s.clone()).bind(now_ms);
        for k in chunk {
            q = q.bind(k.clone());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Queues the Tasks and Chatter posts that enabled rules want for newly
/// recorded alerts, in the caller's transaction: at most one of each kind
/// per alert (the first matching rule's), only for customers from
/// Salesforce, only while connected.
pub(crate) async fn queue_actions(
    store: &SqlStore,
    tx: &mut Tx,
    ws: WorkspaceId,
    alerts: &[NewAlert<'_>],
    now: DateTime<Utc>,
) -> Result<()> {
    if alerts.is_empty() {
        return Ok(());
    }
    let ws_s = ws.to_string();
    let rows = sqlx::query(&format!(
        "SELECT {RULE_COLUMNS} FROM salesforce_rules WHERE workspace_id = $1 AND enabled = 1 \
         AND EXISTS (SELECT 1 FROM salesforce_connections s WHERE s.workspace_id = $1 AND s.broken_reason IS NULL) \
         ORDER BY created_at, id"
    ))
    .bind(ws_s.clone())
    .fetch_all(&mut **tx)
    .await?;
    if rows.is_empty() {
        return Ok(());
    }
    let rules = rows.iter().map(rule_from).collect::<Result<Vec<_>>>()?;
    // The alerts' customers that came from Salesforce.
    let mut ids: Vec<&str> = alerts.iter().map(|a| a.customer_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut customers: HashMap<String, (String, String, String)> = HashMap::new();
    for chunk in ids.chunks(IN_CHUNK) {
        // By primary key: with `workspace_id` indexable, SQLite walked the
        // workspace's customers with a Salesforce id for each chunk.
        let sql = format!(
            "SELECT id, external_id, name, crm_id FROM customers WHERE {} = $1 AND crm_id IS NOT NULL AND id IN ({})",
            store.dialect().unindexed("workspace_id"),
            params(2, chunk.len())
        );
        let sql = store.dialect().positional(sql);
        let mut q = sqlx::query(&sql).bind(ws_s.clone());
        for id in chunk {
            q = q.bind((*id).to_owned());
        }
        for r in q.fetch_all(&mut **tx).await? {
            customers.insert(
                r.try_get("id")?,
                (r.try_get("external_id")?, r.try_get("name")?, r.try_get("crm_id")?),
            );
        }
    }
    let mut out: Vec<(String, &SalesforceRule, ActionKind, String, ActionDraft)> = Vec::new();
    for a in alerts {
        let Some((external_id, name, crm_id)) = customers.get(a.customer_id) else {
            continue;
        };
        let cx = AlertContext {
            alert: a.draft,
            customer_name: name,
            customer_external_id: external_id,
        };
        for rule in &rules {
            for (kind, draft) in rule.rule.actions_for(&cx) {
                if !out.iter().any(|(id, _, k, _, _)| *id == a.id && *k == kind) {
                    out.push((a.id.clone(), rule, kind, crm_id.clone(), draft));
                }
            }
        }
    }
    let now_ms = ms(now);
    for chunk in out.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO salesforce_actions (id, workspace_id, alert_id, rule_id, action, account_sf_id, body, marker, \
             state, attempts, next_attempt_at, created_at) VALUES {} ON CONFLICT (workspace_id, alert_id, action) DO NOTHING",
            value_rows(1, chunk.len(), 12)
        );
        let sql = store.dialect().positional(sql);
        let mut q = sqlx::query(&sql);
        for (alert_id, rule, kind, account, draft) in chunk {
            let alert: AlertId = parse("alert id", alert_id)?;
            let body = serde_json::to_string(draft).map_err(|e| corrupt("action body", e))?;
            q = q
                .bind(ActionId::new().to_string())
                .bind(ws_s.clone())
                .bind(alert_id.clone())
                .bind(rule.id.to_string())
                .bind(kind.as_str())
                .bind(account.clone())
                .bind(body)
                .bind(action_marker(alert, *kind))
                .bind("pending")
                .bind(0_i64)
                .bind(now_ms)
                .bind(now_ms);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

impl SqlStore {
    /// The workspace whose due, unleased row of `table` (one matching
    /// `waiting`) has waited longest, among connections that may be called
    /// now (not broken, not paused). The one unscoped outbox query.
    async fn due_workspace(&self, table: &str, waiting: &str, now_ms: i64) -> Result<Option<(WorkspaceId, String)>> {
        let sql = format!(
            "SELECT o.workspace_id FROM {table} o WHERE o.{waiting} AND o.next_attempt_at <= $1 \
             AND (o.lease_until IS NULL OR o.lease_until <= $1) \
             AND EXISTS (SELECT 1 FROM salesforce_connections s WHERE s.workspace_id = o.workspace_id \
             AND s.broken_reason IS NULL AND (s.paused_until IS NULL OR s.paused_until <= $1)) \
             ORDER BY o.next_attempt_at LIMIT 1"
        );
        let Some(row) = sqlx::query(&sql).bind(now_ms).fetch_optional(&self.pools.write).await? else {
            return Ok(None);
        };
        let ws_s: String = row.try_get("workspace_id")?;
        Ok(Some((parse("workspace id", &ws_s)?, ws_s)))
    }

    pub(crate) async fn claim_salesforce_pushes_once(
        &self,
        limit: usize,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Option<ClaimedPushes>> {
        let now_ms = ms(now);
        let Some((ws, ws_s)) = self.due_workspace("salesforce_pushes", "pending = 1", now_ms).await? else {
            return Ok(None);
        };
        let sql = self.dialect().positional(
            "UPDATE salesforce_pushes SET lease_until = $3 WHERE workspace_id = $2 AND account_sf_id IN (\
             SELECT account_sf_id FROM salesforce_pushes WHERE workspace_id = $2 AND pending = 1 AND next_attempt_at <= $1 \
             AND (lease_until IS NULL OR lease_until <= $1) ORDER BY next_attempt_at LIMIT $4) \
             AND (lease_until IS NULL OR lease_until <= $1) \
             RETURNING account_sf_id, score, risk_level, scored_at, attempts"
                .to_owned(),
        );
        let rows = sqlx::query(&sql)
            .bind(now_ms)
            .bind(ws_s)
            .bind(ms(now + lease))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pools.write)
            .await?;
        let mut pushes = rows
            .iter()
            .map(|r| {
                Ok(ScorePush {
                    account_sf_id: r.try_get("account_sf_id")?,
                    score: r.try_get("score")?,
                    risk_level: parse("risk level", &r.try_get::<String, _>("risk_level")?)?,
                    scored_at: time(r.try_get("scored_at")?),
                    attempts: r.try_get::<i64, _>("attempts")?.clamp(0, i64::from(u32::MAX)) as u32,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if pushes.is_empty() {
            return Ok(None);
        }
        pushes.sort_by(|a, b| a.account_sf_id.cmp(&b.account_sf_id));
        Ok(Some(ClaimedPushes {
            workspace_id: ws,
            pushes,
        }))
    }

    pub(crate) async fn ack_salesforce_pushes_once(
        &self,
        ws: WorkspaceId,
        acks: &[PushAck],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let ws_s = ws.to_string();
        let now_ms = ms(now);
        let mut tx = self.pools.write.begin().await?;
        for ack in acks {
            let key = (ws_s.clone(), ack.account_sf_id.clone());
            let q = match &ack.outcome {
                // Pending again if the score changed while this push was in flight.
                PushOutcome::Written => sqlx::query(
                    "UPDATE salesforce_pushes SET pushed_score = $3, pushed_risk_level = $4, pushed_at = $5, \
                     pending = CASE WHEN score = $3 AND risk_level = $4 THEN 0 ELSE 1 END, attempts = 0, \
                     next_attempt_at = $5, lease_until = NULL, last_error = NULL, updated_at = $5 \
                     WHERE workspace_id = $1 AND account_sf_id = $2",
                )
                .bind(key.0)
                .bind(key.1)
                .bind(ack.score)
                .bind(ack.risk_level.as_str())
                .bind(now_ms),
                PushOutcome::Retry { error, at } => sqlx::query(
                    "UPDATE salesforce_pushes SET attempts = attempts + 1, next_attempt_at = $3, lease_until = NULL, \
                     last_error = $4, updated_at = $5 WHERE workspace_id = $1 AND account_sf_id = $2",
                )
                .bind(key.0)
                .bind(key.1)
                .bind(ms(*at))
                .bind(error.clone())
                .bind(now_ms),
                // Given up on these values; a newer score is still pushed.
                PushOutcome::GaveUp { error } => sqlx::query(
                    "UPDATE salesforce_pushes SET pending = CASE WHEN score = $3 AND risk_level = $4 THEN 0 ELSE 1 END, \
                     attempts = attempts + 1, lease_until = NULL, last_error = $6, updated_at = $5 \
                     WHERE workspace_id = $1 AND account_sf_id = $2",
                )
                .bind(key.0)
                .bind(key.1)
                .bind(ack.score)
                .bind(ack.risk_level.as_str())
                .bind(now_ms)
                .bind(error.clone()),
            };
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn salesforce_push_status_once(&self, ws: WorkspaceId) -> Result<PushStatus> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(CASE WHEN pending = 1 THEN 1 ELSE 0 END), 0) AS pending, \
             COALESCE(SUM(CASE WHEN pending = 1 AND attempts > 0 THEN 1 ELSE 0 END), 0) AS retrying, \
             COALESCE(SUM(CASE WHEN pending = 0 AND last_error IS NOT NULL THEN 1 ELSE 0 END), 0) AS given_up, \
             MAX(pushed_at) AS last_pushed_at FROM salesforce_pushes WHERE workspace_id = $1",
        )
        .bind(ws.to_string())
        .fetch_one(&self.pools.read)
        .await?;
        let last_error = sqlx::query(
            "SELECT last_error FROM salesforce_pushes WHERE workspace_id = $1 AND last_error IS NOT NULL \
             ORDER BY updated_at DESC LIMIT 1",
        )
        .bind(ws.to_string())
        .fetch_optional(&self.pools.read)
        .await?
        .map(|r| r.try_get::<String, _>("last_error"))
        .transpose()?;
        let n = |c: &str| -> Result<u64> { Ok(row.try_get::<i64, _>(c)?.max(0) as u64) };
        Ok(PushStatus {
            pending: n("pending")?,
            retrying: n("retrying")?,
            given_up: n("given_up")?,
            last_pushed_at: row.try_get::<Option<i64>, _>("last_pushed_at")?.map(time),
            last_error,
        })
    }

    pub(crate) async fn create_salesforce_rule_once(
        &self,
        ws: WorkspaceId,
        rule: &AutomationRule,
        now: DateTime<Utc>,
    ) -> Result<SalesforceRule> {
        let id = RuleId::new();
        sqlx::query(
            "INSERT INTO salesforce_rules (id, workspace_id, name, enabled, rule, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(id.to_string())
        .bind(ws.to_string())
        .bind(rule.name.trim().to_owned())
        .bind(i64::from(rule.enabled))
        .bind(serde_json::to_string(rule).map_err(|e| corrupt("salesforce rule", e))?)
        .bind(ms(now))
        .execute(&self.pools.write)
        .await?;
        self.salesforce_rule_once(ws, id).await?.ok_or(Error::NotFound)
    }

    pub(crate) async fn salesforce_rule_once(&self, ws: WorkspaceId, id: RuleId) -> Result<Option<SalesforceRule>> {
        sqlx::query(&format!(
            "SELECT {RULE_COLUMNS} FROM salesforce_rules WHERE workspace_id = $1 AND id = $2"
        ))
        .bind(ws.to_string())
        .bind(id.to_string())
        .fetch_optional(&self.pools.write)
        .await?
        .as_ref()
        .map(rule_from)
        .transpose()
    }

    pub(crate) async fn salesforce_rules_once(&self, ws: WorkspaceId) -> Result<Vec<SalesforceRule>> {
        sqlx::query(&format!(
            "SELECT {RULE_COLUMNS} FROM salesforce_rules WHERE workspace_id = $1 ORDER BY created_at, id"
        ))
        .bind(ws.to_string())
        .fetch_all(&self.pools.read)
        .await?
        .iter()
        .map(rule_from)
        .collect()
    }

    pub(crate) async fn update_salesforce_rule_once(
        &self,
        ws: WorkspaceId,
        id: RuleId,
        rule: &AutomationRule,
        now: DateTime<Utc>,
    ) -> Result<SalesforceRule> {
        let done = sqlx::query(
            "UPDATE salesforce_rules SET name = $3, enabled = $4, rule = $5, updated_at = $6 WHERE workspace_id = $1 AND id = $2",
        )
        .bind(ws.to_string())
        .bind(id.to_string())
        .bind(rule.name.trim().to_owned())
        .bind(i64::from(rule.enabled))
        .bind(serde_json::to_string(rule).map_err(|e| corrupt("salesforce rule", e))?)
        .bind(ms(now))
        .execute(&self.pools.write)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound);
        }
        self.salesforce_rule_once(ws, id).await?.ok_or(Error::NotFound)
    }

    /// Queued actions of the rule stay: they were decided while it existed.
    pub(crate) async fn delete_salesforce_rule_once(&self, ws: WorkspaceId, id: RuleId) -> Result<()> {
        let done = sqlx::query("DELETE FROM salesforce_rules WHERE workspace_id = $1 AND id = $2")
            .bind(ws.to_string())
            .bind(id.to_string())
            .execute(&self.pools.write)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound);
        }
        Ok(())
    }

    pub(crate) async fn claim_salesforce_actions_once(
        &self,
        limit: usize,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Option<ClaimedActions>> {
        let now_ms = ms(now);
        let Some((ws, ws_s)) = self
            .due_workspace("salesforce_actions", "state = 'pending'", now_ms)
            .await?
        else {
            return Ok(None);
        };
        let claimed: Vec<String> = sqlx::query(
            "UPDATE salesforce_actions SET lease_until = $3, attempts = attempts + 1 WHERE workspace_id = $2 AND id IN (\
             SELECT id FROM salesforce_actions WHERE workspace_id = $2 AND state = 'pending' AND next_attempt_at <= $1 \
             AND (lease_until IS NULL OR lease_until <= $1) ORDER BY next_attempt_at, id LIMIT $4) \
             AND state = 'pending' AND (lease_until IS NULL OR lease_until <= $1) RETURNING id",
        )
        .bind(now_ms)
        .bind(ws_s.clone())
        .bind(ms(now + lease))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pools.write)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>("id"))
        .collect::<Result<_, _>>()?;
        if claimed.is_empty() {
            return Ok(None);
        }
        // By primary key: with `workspace_id` indexable, SQLite walked the
        // workspace's actions (by `alerts_by_import`).
        let sql = format!(
            "SELECT {ACTION_COLUMNS} FROM {ACTION_FROM} WHERE {} = $1 AND a.id IN ({}) ORDER BY a.created_at, a.id",
            self.dialect().unindexed("a.workspace_id"),
            params(2, claimed.len())
        );
        let sql = self.dialect().positional(sql);
        let mut q = sqlx::query(&sql).bind(ws_s);
        for id in claimed {
            q = q.bind(id);
        }
        let actions = q
            .fetch_all(&self.pools.write)
            .await?
            .iter()
            .map(action_from)
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(ClaimedActions {
            workspace_id: ws,
            actions,
        }))
    }

    pub(crate) async fn ack_salesforce_action_once(
        &self,
        ws: WorkspaceId,
        id: ActionId,
        outcome: &ActionOutcome,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let q = match outcome {
            ActionOutcome::Done { remote_id } => sqlx::query(
                "UPDATE salesforce_actions SET state = 'done', remote_id = $3, done_at = $4, lease_until = NULL, \
                 last_error = NULL WHERE workspace_id = $1 AND id = $2",
            )
            .bind(ws.to_string())
            .bind(id.to_string())
            .bind(remote_id.clone())
            .bind(ms(now)),
            ActionOutcome::Retry { error, at } => sqlx::query(
                "UPDATE salesforce_actions SET next_attempt_at = $3, last_error = $4, lease_until = NULL \
                 WHERE workspace_id = $1 AND id = $2 AND state = 'pending'",
            )
            .bind(ws.to_string())
            .bind(id.to_string())
            .bind(ms(*at))
            .bind(error.clone()),
            ActionOutcome::Dead { error } => sqlx::query(
                "UPDATE salesforce_actions SET state = 'dead', last_error = $3, done_at = $4, lease_until = NULL \
                 WHERE workspace_id = $1 AND id = $2 AND state = 'pending'",
            )
            .bind(ws.to_string())
            .bind(id.to_string())
            .bind(error.clone())
            .bind(ms(now)),
        };
        q.execute(&self.pools.write).await?;
        Ok(())
    }

    pub(crate) async fn salesforce_actions_once(&self, ws: WorkspaceId, limit: usize) -> Result<Vec<SalesforceAction>> {
        sqlx::query(&format!(
            "SELECT {ACTION_COLUMNS} FROM {ACTION_FROM} WHERE a.workspace_id = $1 ORDER BY a.created_at DESC, a.id DESC LIMIT $2"
        ))
        .bind(ws.to_string())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pools.read)
        .await?
        .iter()
        .map(action_from)
        .collect()
    }
}
