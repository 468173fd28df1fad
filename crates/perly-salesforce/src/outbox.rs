//! The outbox worker: writes what Perly decided into the org, seconds
//! after it was decided. Two queues, both filled by the store in the
//! transactions that record scores and alerts (see
//! `perly_store::salesforce_outbox`):
//!
//! - **Score pushes**: up to 200 Accounts of one workspace per
//!   `composite/sobjects` PATCH (`allOrNone: false`), each record acked on
//!   its own. Before the first push, and again after Salesforce says a field
//!   is missing, [`ensure_fields`] makes the three fields and their access
//!   (looking before creating, so it is safe to repeat).
//! - **Actions**: a Task for the Account's owner or a Chatter post on the
//!   Account. Each carries a marker (`perly-alert:{alert}:{kind}`); an action
//!   claimed before (the worker may have died between the create and the
//!   ack) is looked up by its marker first and only created if not found.
//!   So an alert gets one Task and one post, across retries and crashes.
//!
//! Failures: a broken connection marks it broken (pushes wait for a
//! reconnect); the org's limit or Perly's share pauses the connection; a
//! network error, a 5xx or a locked row is retried with a growing delay;
//! anything else Salesforce refuses is kept as the row's last error (a
//! push gives up on those values, an action is dead).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use perly_domain::ids::WorkspaceId;
use perly_domain::salesforce::ActionKind;
use perly_store::{
    ActionOutcome, ClaimedActions, ClaimedPushes, PushAck, PushOutcome, SalesforceAction, SalesforceConnection,
    ScorePush, Store,
};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::chatter::{FeedPost, Markup};
use crate::client::Client;
use crate::error::Error;
use crate::fields::{ensure_perly_fields, FieldsReport, Presence, PERLY_FIELDS};
use crate::metrics::SalesforceMetrics;
use crate::orgs::{OrgError, Orgs};
use crate::rest::soql_string;
use crate::sync::Now;
use crate::tasks::NewTask;

/// Accounts per `composite/sobjects` call: Salesforce's maximum.
pub const PUSH_BATCH: usize = 200;

/// The outbox worker's knobs (`[sync]` in the configuration).
#[derive(Debug, Clone)]
pub struct OutboxSettings {
    /// `PERLY_PUBLIC_URL`, for the profile link in Tasks and posts.
    pub public_url: String,
    /// How long a claimed batch stays leased.
    pub lease: chrono::Duration,
    /// How often to look for due work when not woken.
    pub poll: Duration,
    /// First delay after a transient failure; doubles per attempt.
    pub retry_after: chrono::Duration,
    /// The longest delay between attempts.
    pub max_retry_after: chrono::Duration,
    /// How long to wait after a limit answer.
    pub limit_pause: chrono::Duration,
    /// How long to wait before trying to make the fields again.
    pub fields_retry: chrono::Duration,
    /// Attempts before an action is given up.
    pub max_attempts: u32,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        Self {
            public_url: String::new(),
            lease: chrono::Duration::minutes(2),
            poll: Duration::from_secs(1),
            retry_after: chrono::Duration::seconds(15),
            max_retry_after: chrono::Duration::hours(1),
            limit_pause: chrono::Duration::minutes(30),
            fields_retry: chrono::Duration::minutes(10),
            max_attempts: 12,
        }
    }
}

/// What one [`Outbox::run_once`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OutboxStats {
    /// Accounts written.
    pub pushed: usize,
    /// Tasks and posts created (or found by their marker).
    pub actions: usize,
    /// Rows put back for later.
    pub deferred: usize,
}

/// Why a whole batch stopped (as opposed to one record failing).
enum Stop {
    /// Try again at this time.
    Later(String, DateTime<Utc>),
    Store(perly_store::Error),
}

impl From<perly_store::Error> for Stop {
    fn from(e: perly_store::Error) -> Self {
        Self::Store(e)
    }
}

#[derive(Clone)]
pub struct Outbox {
    store: Arc<dyn Store>,
    orgs: Arc<Orgs>,
    settings: OutboxSettings,
    metrics: Arc<SalesforceMetrics>,
}

impl Outbox {
    pub fn new(store: Arc<dyn Store>, orgs: Arc<Orgs>, settings: OutboxSettings) -> Self {
        Self {
            store,
            orgs,
            settings,
            metrics: Arc::default(),
        }
    }

    /// Counts pushes and actions into `metrics` (the server's registry).
    pub fn with_metrics(mut self, metrics: Arc<SalesforceMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Writes everything due at `now` until nothing is; for tests and benches.
    pub async fn run_once(&self, now: Now) -> perly_store::Result<OutboxStats> {
        let mut total = OutboxStats::default();
        loop {
            let round = self.round(&now).await?;
            if round == OutboxStats::default() {
                return Ok(total);
            }
            total.pushed += round.pushed;
            total.actions += round.actions;
            total.deferred += round.deferred;
        }
    }

    /// Works until cancelled, woken when scores are recorded or every `poll`.
    pub async fn run(self, now: Now, wake: Arc<Notify>, cancel: CancellationToken) {
        let mut backoff = perly_store::outage::Backoff::new("salesforce outbox");
        loop {
            let pause = match self.round(&now).await {
                Ok(r) if r != OutboxStats::default() => {
                    backoff.succeeded();
                    continue;
                }
                Ok(_) => {
                    backoff.succeeded();
                    self.settings.poll
                }
                Err(e) => backoff.failed(&e).max(self.settings.poll),
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// One batch of actions (they are what people wait for) and one of pushes.
    async fn round(&self, now: &Now) -> perly_store::Result<OutboxStats> {
        let mut stats = OutboxStats::default();
        if let Some(claim) = self
            .store
            .claim_salesforce_actions(20, now(), self.settings.lease)
            .await?
        {
            self.act(claim, now, &mut stats).await?;
        }
        if let Some(claim) = self
            .store
            .claim_salesforce_pushes(PUSH_BATCH, now(), self.settings.lease)
            .await?
        {
            self.push(claim, now, &mut stats).await?;
        }
        Ok(stats)
    }

    /// The delay before attempt `attempts + 1`.
    fn backoff(&self, attempts: u32, now: DateTime<Utc>) -> DateTime<Utc> {
        let factor = 1_i32 << attempts.min(12);
        now + (self.settings.retry_after * factor).min(self.settings.max_retry_after)
    }

    /// The connection and client, or when to try again.
    async fn client(&self, ws: WorkspaceId, now: DateTime<Utc>) -> Result<(SalesforceConnection, Client), Stop> {
        match self.orgs.connected(ws, now).await {
            Ok(c) => Ok(c),
            Err(OrgError::Store(e)) => Err(Stop::Store(e)),
            Err(e) => Err(Stop::Later(e.to_string(), now + self.settings.fields_retry)),
        }
    }

    /// What a whole-call failure means for the batch; records a broken
    /// connection or a pause on the way.
    async fn after_call_error(&self, ws: WorkspaceId, e: Error, attempts: u32, now: DateTime<Utc>) -> Stop {
        let message = e.to_string();
        let recorded = match &e {
            Error::ConnectionBroken(_) => {
                let reason = crate::orgs::broken_reason(&message);
                self.orgs.forget(ws);
                self.store.mark_salesforce_broken(ws, &reason, now).await
            }
            Error::LimitExceeded { .. } | Error::OverBudget { .. } => {
                let until = now + self.settings.limit_pause;
                tracing::warn!(workspace_id = %ws, until = %until, "salesforce outbox paused at the API limit");
                return match self.store.record_salesforce_usage(ws, None, Some(until), now).await {
                    Ok(()) => Stop::Later(message, until),
                    Err(e) => Stop::Store(e),
                };
            }
            _ => Ok(()),
        };
        match recorded {
            Ok(()) => Stop::Later(message, self.backoff(attempts, now)),
            Err(e) => Stop::Store(e),
        }
    }

    // Score pushes.

    async fn push(&self, claim: ClaimedPushes, now: &Now, stats: &mut OutboxStats) -> perly_store::Result<()> {
        let ws = claim.workspace_id;
        let attempts = claim.pushes.iter().map(|p| p.attempts).max().unwrap_or(0);
        let acks = match self.push_batch(ws, &claim.pushes, attempts, now).await {
            Ok(acks) => acks,
            Err(Stop::Store(e)) => return Err(e),
            Err(Stop::Later(error, at)) => {
                tracing::info!(workspace_id = %ws, error = %error, "salesforce score push deferred");
                claim
                    .pushes
                    .iter()
                    .map(|p| {
                        ack(
                            p,
                            PushOutcome::Retry {
                                error: error.clone(),
                                at,
                            },
                        )
                    })
                    .collect()
            }
        };
        for a in &acks {
            let label = match a.outcome {
                PushOutcome::Written => {
                    stats.pushed += 1;
                    "written"
                }
                PushOutcome::Retry { .. } => {
                    stats.deferred += 1;
                    "retry"
                }
                PushOutcome::GaveUp { .. } => {
                    stats.deferred += 1;
                    "given_up"
                }
            };
            SalesforceMetrics::count(&self.metrics.pushes, label, 1);
        }
        self.store.ack_salesforce_pushes(ws, &acks, now()).await
    }

    async fn push_batch(
        &self,
        ws: WorkspaceId,
        pushes: &[ScorePush],
        attempts: u32,
        now: &Now,
    ) -> Result<Vec<PushAck>, Stop> {
        let (conn, client) = self.client(ws, now()).await?;
        if !fields_ready(&conn) {
            let retry_after = fields_checked_at(&conn).map(|t| t + self.settings.fields_retry);
            if let Some(at) = retry_after.filter(|t| *t > now()) {
                return Err(Stop::Later(fields_error(&conn), at));
            }
            if let Err(e) = ensure_fields(self.store.as_ref(), ws, &client, now()).await {
                return Err(self.after_call_error(ws, e, attempts, now()).await);
            }
        }
        let records: Vec<Value> = pushes.iter().map(account_record).collect();
        let results = client.update_collection(&records).await;
        crate::orgs::record_usage(self.store.as_ref(), ws, &client, now()).await?;
        let results = match results {
            Ok(r) => r,
            Err(e) if is_field_error(e.code()) => {
                self.fields_gone(ws, &e.to_string(), now()).await?;
                return Err(Stop::Later(e.to_string(), now() + self.settings.fields_retry));
            }
            Err(e) => return Err(self.after_call_error(ws, e, attempts, now()).await),
        };
        if results.len() != pushes.len() {
            let error = format!(
                "Salesforce answered {} results for {} records",
                results.len(),
                pushes.len()
            );
            return Err(Stop::Later(error, self.backoff(attempts, now())));
        }
        let mut fields_missing = None;
        let acks = pushes
            .iter()
            .zip(results)
            .map(|(p, r)| {
                if r.success {
                    return ack(p, PushOutcome::Written);
                }
                let code = r.errors.first().map(|e| e.status_code.as_str()).unwrap_or_default();
                let error = r
                    .errors
                    .iter()
                    .map(|e| format!("{}: {}", e.status_code, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                let outcome = if crate::error::is_transient_code(code) {
                    PushOutcome::Retry {
                        error,
                        at: self.backoff(p.attempts, now()),
                    }
                } else if is_field_error(Some(code)) {
                    fields_missing = Some(error.clone());
                    PushOutcome::Retry {
                        error,
                        at: now() + self.settings.fields_retry,
                    }
                } else {
                    // The Account is gone or refuses these values: not again
                    // until the score changes.
                    PushOutcome::GaveUp { error }
                };
                ack(p, outcome)
            })
            .collect();
        if let Some(error) = fields_missing {
            self.fields_gone(ws, &error, now()).await?;
        }
        Ok(acks)
    }

    /// Salesforce says a Perly field is missing or not writable: make it
    /// again before the next push.
    async fn fields_gone(&self, ws: WorkspaceId, error: &str, now: DateTime<Utc>) -> perly_store::Result<()> {
        let state = json!({"ready": false, "checked_at": now - self.settings.fields_retry, "error": error});
        self.store.record_salesforce_checks(ws, None, Some(&state), now).await
    }

    // Actions.

    async fn act(&self, claim: ClaimedActions, now: &Now, stats: &mut OutboxStats) -> perly_store::Result<()> {
        let ws = claim.workspace_id;
        let client = match self.client(ws, now()).await {
            Ok((_, c)) => c,
            Err(Stop::Store(e)) => return Err(e),
            Err(Stop::Later(error, at)) => {
                for a in &claim.actions {
                    let outcome = ActionOutcome::Retry {
                        error: error.clone(),
                        at,
                    };
                    self.store.ack_salesforce_action(ws, a.id, &outcome, now()).await?;
                    stats.deferred += 1;
                    self.metrics.action(a.kind.as_str(), "retry");
                }
                return Ok(());
            }
        };
        let mut stop: Option<(String, DateTime<Utc>)> = None;
        for a in &claim.actions {
            let outcome = match &stop {
                // After a limit or a broken connection, the rest wait too.
                Some((error, at)) => ActionOutcome::Retry {
                    error: error.clone(),
                    at: *at,
                },
                None => match self.write_action(&client, a).await {
                    Ok(remote_id) => ActionOutcome::Done { remote_id },
                    Err(e) if e.is_transient() && a.attempts < self.settings.max_attempts => ActionOutcome::Retry {
                        error: e.to_string(),
                        at: self.backoff(a.attempts, now()),
                    },
                    Err(
                        e @ (Error::ConnectionBroken(_)
                        | Error::LimitExceeded { .. }
                        | Error::OverBudget { .. }
                        | Error::SessionExpired),
                    ) => match self.after_call_error(ws, e, a.attempts, now()).await {
                        Stop::Store(e) => return Err(e),
                        Stop::Later(error, at) => {
                            stop = Some((error.clone(), at));
                            ActionOutcome::Retry { error, at }
                        }
                    },
                    Err(e) => ActionOutcome::Dead { error: e.to_string() },
                },
            };
            match &outcome {
                ActionOutcome::Done { remote_id } => {
                    stats.actions += 1;
                    tracing::info!(workspace_id = %ws, alert_id = %a.alert_id, kind = a.kind.as_str(), id = %remote_id, "salesforce action written");
                }
                ActionOutcome::Retry { error, .. } => {
                    stats.deferred += 1;
                    tracing::info!(workspace_id = %ws, alert_id = %a.alert_id, kind = a.kind.as_str(), error = %error, "salesforce action deferred");
                }
                ActionOutcome::Dead { error } => {
                    tracing::warn!(workspace_id = %ws, alert_id = %a.alert_id, kind = a.kind.as_str(), error = %error, "salesforce action refused");
                }
            }
            let label = match &outcome {
                ActionOutcome::Done { .. } => "done",
                ActionOutcome::Retry { .. } => "retry",
                ActionOutcome::Dead { .. } => "dead",
            };
            self.metrics.action(a.kind.as_str(), label);
            self.store.ack_salesforce_action(ws, a.id, &outcome, now()).await?;
        }
        crate::orgs::record_usage(self.store.as_ref(), ws, &client, now()).await
    }

    /// Creates the Task or post unless an earlier attempt already did;
    /// returns its id.
    async fn write_action(&self, client: &Client, a: &SalesforceAction) -> Result<String, Error> {
        if a.attempts > 1 {
            if let Some(id) = find_by_marker(client, a).await? {
                tracing::info!(alert_id = %a.alert_id, id = %id, "salesforce action found by its marker, not created again");
                return Ok(id);
            }
        }
        match a.kind {
            ActionKind::Task => {
                let body = task_body(a, &self.settings.public_url)?;
                client.create("Task", &body).await
            }
            ActionKind::Chatter => client.post_feed_element(&post_body(a, &self.settings.public_url)).await,
        }
    }
}

/// Makes Perly's fields (and their access) in the org and records how it
/// went on the connection: at connect, on demand and before pushes.
pub async fn ensure_fields(
    store: &dyn Store,
    ws: WorkspaceId,
    client: &Client,
    now: DateTime<Utc>,
) -> Result<FieldsReport, Error> {
    let result = ensure_perly_fields(client).await;
    let state = match &result {
        Ok(report) => fields_json(report, now),
        Err(e) => json!({"ready": false, "checked_at": now, "error": e.to_string()}),
    };
    if let Err(e) = store.record_salesforce_checks(ws, None, Some(&state), now).await {
        tracing::warn!(error = %e, "could not record the Salesforce fields' state");
    }
    if let Ok(report) = &result {
        if report.changed_anything() {
            tracing::info!(workspace_id = %ws, "made Perly's fields ready in Salesforce");
        }
    }
    result
}

fn ack(p: &ScorePush, outcome: PushOutcome) -> PushAck {
    PushAck {
        account_sf_id: p.account_sf_id.clone(),
        score: p.score,
        risk_level: p.risk_level,
        outcome,
    }
}

/// The Account record of a push, for sObject Collections.
pub fn account_record(p: &ScorePush) -> Value {
    json!({
        "attributes": {"type": "Account"},
        "id": p.account_sf_id,
        PERLY_FIELDS[0].api_name: p.score.clamp(0, 100),
        PERLY_FIELDS[1].api_name: p.risk_level.label(),
        PERLY_FIELDS[2].api_name: p.scored_at.to_rfc3339_opts(SecondsFormat::Millis, true),
    })
}

/// Codes that mean a Perly field is missing or not writable for Perly.
fn is_field_error(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("INVALID_FIELD" | "INVALID_FIELD_FOR_INSERT_UPDATE" | "NO_SUCH_COLUMN")
    )
}

/// The stored state of Perly's fields, for settings and the API.
pub fn fields_json(report: &FieldsReport, now: DateTime<Utc>) -> Value {
    let presence = |p: Presence| match p {
        Presence::Created => "created",
        Presence::AlreadyPresent => "present",
    };
    json!({
        "ready": true,
        "checked_at": now,
        "permission_set": presence(report.permission_set),
        "assignment": presence(report.assignment),
        "fields": report.fields.iter().map(|f| json!({
            "api_name": f.api_name,
            "field": presence(f.field),
            "access": match f.access {
                crate::fields::Access::GrantedNow => "granted",
                crate::fields::Access::AlreadyGranted => "present",
            },
        })).collect::<Vec<_>>(),
    })
}

fn fields_ready(conn: &SalesforceConnection) -> bool {
    conn.fields
        .as_ref()
        .and_then(|f| f.get("ready"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

fn fields_checked_at(conn: &SalesforceConnection) -> Option<DateTime<Utc>> {
    conn.fields
        .as_ref()
        .and_then(|f| f.get("checked_at"))
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

fn fields_error(conn: &SalesforceConnection) -> String {
    let error = conn
        .fields
        .as_ref()
        .and_then(|f| f.get("error"))
        .and_then(Value::as_str)
        .unwrap_or("not made yet");
    format!("Perly's fields on Account are not ready: {error}")
}

fn profile_url(a: &SalesforceAction, public_url: &str) -> String {
    format!(
        "{}/customers/{}",
        public_url.trim_end_matches('/'),
        perly_domain::customer::path_segment(&a.draft.customer_external_id)
    )
}

/// The Task for an action: the owner's, due as the rule says, with the
/// signals, the suggested action, the profile link and the marker.
pub fn task_body(a: &SalesforceAction, public_url: &str) -> Result<Value, Error> {
    let d = &a.draft;
    let task = d
        .task
        .as_ref()
        .ok_or_else(|| Error::Protocol(format!("action {} is a Task without its details", a.id)))?;
    let mut description = format!("{}: {}\n", d.customer_name, d.headline);
    if !d.signals.is_empty() {
        description.push_str(&format!("Signals: {}.\n", d.signals.join("; ")));
    }
    description.push_str(&format!(
        "Health score {}, risk {}.\nSuggested action: {}\nPerly profile: {}\nRule: {}\nPerly reference: {}",
        score_text(d.score, d.delta),
        d.risk_level.label(),
        d.suggested_action,
        profile_url(a, public_url),
        d.rule_name,
        a.marker
    ));
    Ok(NewTask {
        subject: task.subject.clone(),
        what_id: a.account_sf_id.clone(),
        owner_id: a.owner_id.clone(),
        activity_date: task.due,
        priority: task.priority,
        description,
    }
    .to_body())
}

/// "32 (+5)", or "32" without a delta.
fn score_text(score: i64, delta: Option<i64>) -> String {
    match delta {
        Some(d) => format!("{score} ({d:+})"),
        None => score.to_string(),
    }
}

/// The Chatter post for an action: headline, signals as a list, the
/// profile link, the owner mentioned, and the marker.
pub fn post_body(a: &SalesforceAction, public_url: &str) -> Value {
    let d = &a.draft;
    let mut post = FeedPost::new(a.account_sf_id.clone())
        .begin(Markup::Paragraph)
        .bold(format!("Perly: {}", d.headline))
        .text(format!(
            " (health score {}, risk {})",
            score_text(d.score, d.delta).replace(" (", ", ").replace(')', ""),
            d.risk_level.label()
        ))
        .end(Markup::Paragraph);
    if !d.signals.is_empty() {
        post = post.begin(Markup::UnorderedList);
        for s in &d.signals {
            post = post.begin(Markup::ListItem).text(s.clone()).end(Markup::ListItem);
        }
        post = post.end(Markup::UnorderedList);
    }
    post = post.paragraph(format!("Suggested action: {}", d.suggested_action));
    if let Some(owner) = &a.owner_id {
        post = post
            .begin(Markup::Paragraph)
            .mention(owner.clone())
            .text(" ")
            .end(Markup::Paragraph);
    }
    post.paragraph(format!("Profile: {}", profile_url(a, public_url)))
        .paragraph(format!("Perly reference: {}", a.marker))
        .to_body()
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MarkedRow {
    id: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    body: Option<String>,
}

/// The Task or FeedItem an earlier attempt created, found by its marker.
/// Descriptions and bodies cannot be filtered in SOQL, so the query narrows
/// by record and subject and the marker is checked here.
async fn find_by_marker(client: &Client, a: &SalesforceAction) -> Result<Option<String>, Error> {
    let soql = match a.kind {
        ActionKind::Task => {
            let subject = a.draft.task.as_ref().map(|t| t.subject.as_str()).unwrap_or_default();
            format!(
                "SELECT Id, Description FROM Task WHERE WhatId = {} AND Subject = {}",
                soql_string(&a.account_sf_id),
                soql_string(&crate::tasks::cut(subject, crate::tasks::SUBJECT_MAX))
            )
        }
        ActionKind::Chatter => format!(
            "SELECT Id, Body FROM FeedItem WHERE ParentId = {} AND CreatedDate >= {}",
            soql_string(&a.account_sf_id),
            (a.created_at - chrono::Duration::minutes(5)).to_rfc3339_opts(SecondsFormat::Millis, true)
        ),
    };
    let rows: Vec<MarkedRow> = client.query(&soql).await?;
    Ok(rows
        .into_iter()
        .find(|r| {
            r.description
                .as_deref()
                .or(r.body.as_deref())
                .is_some_and(|t| t.contains(&a.marker))
        })
        .map(|r| r.id))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use perly_domain::alerts::AlertKind;
    use perly_domain::ids::{ActionId, AlertId, RuleId};
    use perly_domain::risk::RiskLevel;
    use perly_domain::salesforce::{ActionDraft, TaskDraft, TaskPriority};
    use perly_store::ActionState;

    fn action(kind: ActionKind) -> SalesforceAction {
        let alert = AlertId::new();
        SalesforceAction {
            id: ActionId::new(),
            alert_id: alert,
            rule_id: RuleId::new(),
            kind,
            account_sf_id: "0015e00000AbCdEAAV".into(),
            owner_id: Some("0055e000001AbCdAAA".into()),
            draft: ActionDraft {
                rule_name: "At risk".into(),
                customer_name: "Acme Corp".into(),
                customer_external_id: "acme/eu".into(),
                alert_kind: AlertKind::CustomerAtRisk,
                risk_level: RiskLevel::High,
                score: 42,
                delta: Some(-18),
                headline: "moved to high churn risk".into(),
                signals: vec!["Logins down 60%".into(), "Payment failed twice".into()],
                suggested_action: "Schedule a check-in call".into(),
                task: Some(TaskDraft {
                    subject: "Call Acme Corp".into(),
                    due: chrono::NaiveDate::from_ymd_opt(2026, 12, 5).unwrap(),
                    priority: TaskPriority::High,
                }),
            },
            marker: perly_store::action_marker(alert, kind),
            state: ActionState::Pending,
            attempts: 1,
            remote_id: None,
            last_error: None,
            created_at: Utc::now(),
            done_at: None,
        }
    }

    #[test]
    fn a_task_carries_owner_due_date_signals_link_and_marker() {
        let a = action(ActionKind::Task);
        let body = task_body(&a, "https://perly.example.com/").unwrap();
        assert_eq!(body["OwnerId"], "0055e000001AbCdAAA");
        assert_eq!(body["WhatId"], "0015e00000AbCdEAAV");
        assert_eq!(body["ActivityDate"], "2026-12-05");
        assert_eq!(body["Priority"], "High");
        let d = body["Description"].as_str().unwrap();
        assert!(d.contains("Signals: Logins down 60%; Payment failed twice."), "{d}");
        assert!(d.contains("https://perly.example.com/customers/acme%2Feu"), "{d}");
        assert!(d.ends_with(&a.marker), "{d}");
    }

    #[test]
    fn a_post_lists_the_signals_mentions_the_owner_and_ends_with_the_marker() {
        let a = action(ActionKind::Chatter);
        let body = post_body(&a, "https://perly.example.com");
        assert_eq!(body["subjectId"], "0015e00000AbCdEAAV");
        let segments = body["body"]["messageSegments"].as_array().unwrap();
        assert!(segments
            .iter()
            .any(|s| s["type"] == "Mention" && s["id"] == "0055e000001AbCdAAA"));
        assert!(segments.iter().any(|s| s["text"] == "Payment failed twice"));
        let text: String = segments.iter().filter_map(|s| s["text"].as_str()).collect();
        assert!(text.ends_with(&a.marker), "{text}");
    }

    #[test]
    fn account_records_carry_the_three_fields() {
        let p = ScorePush {
            account_sf_id: "001A".into(),
            score: 42,
            risk_level: RiskLevel::Critical,
            scored_at: chrono::DateTime::parse_from_rfc3339("2026-12-02T10:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            attempts: 0,
        };
        assert_eq!(
            account_record(&p),
            json!({"attributes": {"type": "Account"}, "id": "001A", "Perly_Health_Score__c": 42,
                   "Perly_Risk_Level__c": "Critical", "Perly_Last_Updated__c": "2026-12-02T10:00:00.000Z"})
        );
    }
}
