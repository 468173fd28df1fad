//! All of Perly's SQL lives here. Handlers and workers hold an
//! `Arc<dyn Store>`; each method is one use case and owns its transaction.
//! Every method that touches workspace data takes the workspace id first and
//! every statement filters on it.
//!
//! Layout: [`Store`] is the trait, with its parts in supertraits of their
//! own ([`Accounts`]: workspaces, users, sessions, API keys and sign-in
//! throttling); [`sql::SqlStore`] implements them once for
//! both SQLite and PostgreSQL over sqlx's `Any` driver (the SQL is the same
//! text, with `$n` placeholders, and [`db::Dialect`] covers the few places the
//! two differ); each backend has its own migrations folder. [`auth`] hashes
//! passwords and API keys, [`cipher`] encrypts secrets at rest and
//! [`secrets`] stores and rotates them (trait [`Secrets`], a supertrait of
//! [`Store`]); [`portfolio`] reads the workspace-wide figures of the page at
//! `/` (trait [`Portfolio`]); [`delivery`] is the outbox as the delivery
//! worker drives it (trait [`Deliveries`]: claims, lease renewals, storm
//! digests, fenced acknowledgements); [`imports`] records history and
//! settles each import into one summary per channel (trait [`Imports`]);
//! [`ops`] answers readiness and the queue figures of `/metrics` (trait
//! [`Ops`]). [`migrations`] runs the migrations (append-only; databases
//! made from earlier edits of a migration file are brought forward) and
//! reports their status; [`backup`] copies a live SQLite database.

pub mod accounts;
pub mod auth;
pub mod backup;
pub mod channels;
pub mod cipher;
pub mod db;
pub mod delivery;
pub mod event_marks;
pub mod imports;
mod ingest_queue;
pub mod migrations;
pub mod model;
pub mod ops;
pub mod outage;
pub mod portfolio;
mod postgres_ingest;
pub mod salesforce;
pub mod salesforce_outbox;
pub mod secrets;
pub mod sql;
mod sqlite_claim;
mod sqlite_ingest;
mod sqlite_thread;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use perly_domain::customer::CustomerInput;
use perly_domain::event::Event;
use perly_domain::ids::{ActionId, ChannelId, RuleId, UserId, WorkspaceId};
use perly_domain::salesforce::{AutomationRule, SyncSettings};
use perly_domain::scorecard::Scorecard;

pub use accounts::{
    Accounts, KeyAuth, LockedBy, NewApiKey, SessionPolicy, SessionSummary, SigninAttempt, SigninChoice, SigninLimits,
};
pub use delivery::{AckOutcome, Acked, ClaimedChannel, Deliveries, DeliveryAck, Fold, Lease, OutboxItem, StormSummary};
pub use imports::Imports;
pub use model::*;
pub use ops::{ChannelState, Ops, OpsSnapshot, OutboxFigures, RecordedAlerts, SalesforceFigures};
pub use portfolio::{Mover, Portfolio, RiskTotal};
pub use salesforce::{
    ApiUsageSeen, AppliedAccounts, CrmRecord, NewSalesforceConnection, ObjectProgress, ObjectState, PulledAccount,
    PulledActivity, SalesforceConnection, SalesforceSync, SyncClaim, SyncState, SYNC_OBJECTS,
};
pub use salesforce_outbox::{
    action_marker, ActionOutcome, ActionState, ClaimedActions, ClaimedPushes, PushAck, PushOutcome, PushStatus,
    SalesforceAction, SalesforceRule, ScorePush,
};
pub use secrets::{Rotation, SealedValue, Secrets};

/// What can go wrong in the store, as the caller must decide on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// No connection to the database could be had or kept: the server is
    /// down or restarting, the network is cut, the pool timed out waiting
    /// for a connection. Transient by nature; callers answer 503 with
    /// `Retry-After` (HTTP) or back off (workers). See [`is_unreachable`].
    #[error("database unreachable")]
    Unreachable(#[source] sqlx::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// No configured secret key opens a stored value (the key changed).
    #[error("a stored {0} could not be decrypted (no configured secret key opens it)")]
    Undecryptable(String),
    #[error("migration failed")]
    Migrate(#[source] migrations::MigrationError),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => Self::NotFound,
            sqlx::Error::Database(d) if d.is_unique_violation() => Self::Conflict(d.message().to_owned()),
            // SQLSTATE class 22 (data exception), e.g. a NUL byte in text on PostgreSQL.
            sqlx::Error::Database(d) if d.code().is_some_and(|c| c.starts_with("22")) => {
                Self::Invalid(format!("the database refused a value: {}", d.message()))
            }
            _ if is_unreachable(&e) => Self::Unreachable(e),
            _ => Self::Unavailable(e),
        }
    }
}

/// Whether `e` says the database cannot be reached (rather than that a
/// query failed): no connection within the pool's acquire timeout, an I/O
/// or TLS error (connection refused, reset, closed), a closed pool, a
/// crashed SQLite worker, a SQLite file another process keeps locked, or
/// PostgreSQL's SQLSTATE class 08 (connection
/// exception) and 57P01–57P03 (shutting down, restarting, starting up).
pub fn is_unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => match d.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
            Some(sqlite) => is_sqlite_busy(sqlite),
            None => d
                .code()
                .is_some_and(|c| c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03")),
        },
        _ => false,
    }
}

/// SQLITE_BUSY or SQLITE_LOCKED (with any extended code): another process
/// held the database file locked for longer than the connection's busy
/// timeout ([`db::SQLITE_BUSY_TIMEOUT`]), a `sqlite3` shell inside a
/// transaction, say. As for an outage, the answer is to try again later.
fn is_sqlite_busy(e: &sqlx::sqlite::SqliteError) -> bool {
    use sqlx::error::DatabaseError;
    e.code()
        .and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| matches!(c & 0xff, 5 | 6))
}

impl Error {
    /// Whether this is [`Error::Unreachable`]: a database outage, not a
    /// failure of the work itself.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable(_))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The one interface to Perly's data.
#[async_trait]
pub trait Store: Accounts + Deliveries + Imports + Ops + Portfolio + Secrets + Send + Sync + 'static {
    /// Which backend this is ("sqlite" or "postgres").
    fn backend(&self) -> &'static str;

    async fn scorecard(&self, ws: WorkspaceId) -> Result<Scorecard>;
    /// Saves a (validated) scorecard and marks every customer for rescoring.
    async fn set_scorecard(&self, ws: WorkspaceId, card: &Scorecard, now: DateTime<Utc>) -> Result<()>;

    // Ingest.
    async fn upsert_customers(
        &self,
        ws: WorkspaceId,
        rows: &[CustomerInput],
        now: DateTime<Utc>,
    ) -> Result<Vec<UpsertOutcome>>;
    /// Stores the events in one transaction, folds them into their customers'
    /// rollups and marks those customers for rescoring. One outcome per event.
    /// `mode`: live data, or a backfill of history (scored and recorded,
    /// summarised to channels once per import instead of alert by alert).
    async fn ingest_events(
        &self,
        ws: WorkspaceId,
        events: &[Event],
        mode: IngestMode,
        now: DateTime<Utc>,
    ) -> Result<Vec<IngestOutcome>>;

    // Scoring.
    /// Leases up to `limit` customers that need rescoring.
    async fn claim_rescore(&self, ws: WorkspaceId, limit: usize, now: DateTime<Utc>) -> Result<Vec<RescoreInput>>;
    /// Gives back the leases a [`Store::claim_rescore`] made at `claimed_at`
    /// took, when the work that followed failed (a database outage between
    /// the claim and [`Store::record_scores`], say): those customers are
    /// claimable again at once instead of when the lease runs out. Returns
    /// how many leases were given back.
    async fn release_rescore(&self, ws: WorkspaceId, claimed_at: DateTime<Utc>) -> Result<u64>;
    /// Writes scores, history and alerts in one transaction and clears the
    /// dirty mark of customers whose rollup did not change meanwhile.
    /// Returns how many alerts were new.
    async fn record_scores(&self, ws: WorkspaceId, results: &[RescoreResult], now: DateTime<Utc>) -> Result<usize> {
        Ok(self.record_scores_tallied(ws, results, now).await?.total())
    }
    /// As [`Store::record_scores`], telling the new alerts by kind and
    /// whether each is news (for `/metrics`).
    async fn record_scores_tallied(
        &self,
        ws: WorkspaceId,
        results: &[RescoreResult],
        now: DateTime<Utc>,
    ) -> Result<ops::RecordedAlerts>;
    /// Marks customers not scored since `before` for rescoring (decay).
    async fn mark_stale(&self, ws: WorkspaceId, before: DateTime<Utc>, now: DateTime<Utc>) -> Result<u64>;
    /// Workspaces with customers waiting for rescoring: the rescoring
    /// worker's schedule, across workspaces (it serves them all), so a pass
    /// touches only workspaces with work.
    async fn workspaces_to_rescore(&self) -> Result<Vec<WorkspaceId>>;
    /// How many customers wait for rescoring.
    async fn pending_rescore(&self, ws: WorkspaceId) -> Result<u64>;
    /// Whether no customer waits for rescoring: [`Store::pending_rescore`]
    /// is zero, told from the first marked customer's index entry instead
    /// of counting them all (a count of 100,000 marks took 79 ms on
    /// PostgreSQL, for a benchmark polling every 200 ms).
    async fn rescore_caught_up(&self, ws: WorkspaceId) -> Result<bool>;
    /// Whether this process's events API is writing: a batch queued or
    /// being written, or one answered less than `quiet` ago. The rescoring
    /// worker leaves the database's writer to it meanwhile (one claim or
    /// record at a time instead of claiming the next batch while recording
    /// the last). Other replicas' ingest is not seen.
    fn ingest_active(&self, quiet: std::time::Duration) -> bool;
    /// How many of this process's events API batches are queued or being
    /// written, less one: above zero, more than one caller waits for its
    /// commit (behind the database's writer, or rows the rescoring
    /// worker's records hold), and the rescoring worker takes the writer
    /// in shorter turns.
    fn ingest_waiting(&self) -> usize;

    // Reading.
    async fn list_customers(&self, ws: WorkspaceId, query: &CustomerQuery) -> Result<Page<CustomerSummary>>;
    async fn get_customer(
        &self,
        ws: WorkspaceId,
        external_id: &str,
        history_since: DateTime<Utc>,
    ) -> Result<Option<CustomerDetail>>;
    async fn list_alerts(&self, ws: WorkspaceId, query: &AlertQuery) -> Result<Page<AlertRecord>>;
    /// The newest events of a customer.
    async fn recent_events(&self, ws: WorkspaceId, external_id: &str, limit: usize) -> Result<Vec<EventRecord>>;
    /// Scored customers counted by (score, risk level).
    async fn score_buckets(&self, ws: WorkspaceId) -> Result<Vec<ScoreBucket>>;
    /// Distinct owners and plans, for filters.
    async fn customer_facets(&self, ws: WorkspaceId) -> Result<(Vec<String>, Vec<String>)>;

    // Channels (Slack and Discord) and their delivery outbox.
    async fn create_channel(&self, ws: WorkspaceId, new: &NewChannel, now: DateTime<Utc>) -> Result<Channel>;
    async fn list_channels(&self, ws: WorkspaceId) -> Result<Vec<Channel>>;
    async fn get_channel(&self, ws: WorkspaceId, id: ChannelId) -> Result<Option<Channel>>;
    /// Changes name, rules, paused state or webhook (a new webhook clears
    /// the broken mark, so held alerts go out).
    async fn update_channel(
        &self,
        ws: WorkspaceId,
        id: ChannelId,
        update: &ChannelUpdate,
        now: DateTime<Utc>,
    ) -> Result<Channel>;
    /// Removes a channel with its outbox rows and delivery log.
    async fn delete_channel(&self, ws: WorkspaceId, id: ChannelId) -> Result<()>;
    /// Queues a test message for the channel (it goes out like an alert).
    async fn enqueue_test_message(&self, ws: WorkspaceId, id: ChannelId, now: DateTime<Utc>) -> Result<()>;
    /// The newest attempts to post to a channel.
    async fn delivery_log(&self, ws: WorkspaceId, id: ChannelId, limit: usize) -> Result<Vec<DeliveryAttempt>>;
    // OAuth flows.
    /// Starts a flow: returns the random state to send (only its hash is kept).
    async fn create_oauth_state(
        &self,
        ws: WorkspaceId,
        user: UserId,
        provider: &str,
        data: &serde_json::Value,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<String>;
    /// Redeems a state once: `None` when unknown, expired, already used, or
    /// started by someone else or for another provider.
    async fn take_oauth_state(
        &self,
        ws: WorkspaceId,
        user: UserId,
        provider: &str,
        state: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<OAuthState>>;

    // Salesforce: the connection (refresh token encrypted), sync runs, pulled records.
    /// Saves a completed OAuth connection and its refresh token in one
    /// transaction; reconnecting the same org keeps settings and watermarks.
    async fn save_salesforce_connection(
        &self,
        ws: WorkspaceId,
        new: &NewSalesforceConnection,
        now: DateTime<Utc>,
    ) -> Result<SalesforceConnection>;
    async fn salesforce_connection(&self, ws: WorkspaceId) -> Result<Option<SalesforceConnection>>;
    async fn salesforce_refresh_token(&self, ws: WorkspaceId) -> Result<Option<String>>;
    /// Forgets the connection, its token and pending pushes; pulled data stays.
    async fn delete_salesforce_connection(&self, ws: WorkspaceId, now: DateTime<Utc>) -> Result<()>;
    /// Salesforce refused the refresh token: stop until reconnected.
    async fn mark_salesforce_broken(&self, ws: WorkspaceId, reason: &str, now: DateTime<Utc>) -> Result<()>;
    async fn update_salesforce_settings(
        &self,
        ws: WorkspaceId,
        settings: &SyncSettings,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// Stores a permission check and/or the custom fields' state (JSON).
    async fn record_salesforce_checks(
        &self,
        ws: WorkspaceId,
        permissions: Option<&serde_json::Value>,
        fields: Option<&serde_json::Value>,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// Stores the org's API usage (used, max) and, when set, a pause.
    async fn record_salesforce_usage(
        &self,
        ws: WorkspaceId,
        usage: Option<(u64, u64)>,
        paused_until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// "Sync now": `false` when there is no working connection.
    async fn request_salesforce_sync(&self, ws: WorkspaceId, now: DateTime<Utc>) -> Result<bool>;
    /// Claims one due sync (any workspace): the unfinished run to resume or a new one.
    async fn claim_salesforce_sync(&self, now: DateTime<Utc>, lease: chrono::Duration) -> Result<Option<SyncClaim>>;
    /// Saves progress and renews the lease; `Conflict` once the lease is lost.
    async fn save_salesforce_sync(
        &self,
        ws: WorkspaceId,
        sync: &SalesforceSync,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<()>;
    async fn advance_salesforce_watermark(&self, ws: WorkspaceId, object: &str, until: DateTime<Utc>) -> Result<()>;
    async fn finish_salesforce_sync(
        &self,
        ws: WorkspaceId,
        sync: &SalesforceSync,
        next_sync_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// Keeps a run resumable after an error; it is due again at `retry_at`.
    async fn postpone_salesforce_sync(
        &self,
        ws: WorkspaceId,
        sync: &SalesforceSync,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// Newest first.
    async fn salesforce_syncs(&self, ws: WorkspaceId, limit: usize) -> Result<Vec<SalesforceSync>>;
    async fn apply_salesforce_accounts(
        &self,
        ws: WorkspaceId,
        rows: &[PulledAccount],
        now: DateTime<Utc>,
    ) -> Result<AppliedAccounts>;
    async fn apply_crm_records(&self, ws: WorkspaceId, rows: &[CrmRecord]) -> Result<u64>;
    /// A customer's pulled contacts, roles, opportunities and activities.
    async fn crm_records_for(&self, ws: WorkspaceId, external_id: &str) -> Result<Vec<CrmRecord>>;
    /// Stores a page of pulled Tasks and Events, in one transaction, as
    /// `crm_activity` events of their Accounts' customers: the same rows and
    /// rollups as [`Store::ingest_events`], without the round trip through
    /// external ids. Returns how many were new.
    async fn apply_salesforce_activities(
        &self,
        ws: WorkspaceId,
        rows: &[PulledActivity],
        now: DateTime<Utc>,
    ) -> Result<u64>;

    /// Stores events of Salesforce Accounts (Opportunity changes), in one
    /// transaction, on the Accounts' live customers (each event's
    /// `customer_id` is set to the customer's external id), as
    /// [`Store::ingest_events`] stores events. Events of Accounts without a
    /// live customer are left out. Returns how many were new.
    async fn apply_salesforce_events(
        &self,
        ws: WorkspaceId,
        rows: &[(String, perly_domain::event::Event)],
        now: DateTime<Utc>,
    ) -> Result<u64>;

    // Salesforce outboxes: score pushes and automation actions, and the rules.
    /// Leases up to `limit` due score pushes of one workspace (any workspace
    /// whose connection may be called now; the one unscoped outbox query).
    async fn claim_salesforce_pushes(
        &self,
        limit: usize,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Option<ClaimedPushes>>;
    /// Records how each claimed push went and releases it.
    async fn ack_salesforce_pushes(&self, ws: WorkspaceId, acks: &[PushAck], now: DateTime<Utc>) -> Result<()>;
    async fn salesforce_push_status(&self, ws: WorkspaceId) -> Result<PushStatus>;
    /// Saves a (validated) rule.
    async fn create_salesforce_rule(
        &self,
        ws: WorkspaceId,
        rule: &AutomationRule,
        now: DateTime<Utc>,
    ) -> Result<SalesforceRule>;
    async fn salesforce_rule(&self, ws: WorkspaceId, id: RuleId) -> Result<Option<SalesforceRule>>;
    async fn salesforce_rules(&self, ws: WorkspaceId) -> Result<Vec<SalesforceRule>>;
    async fn update_salesforce_rule(
        &self,
        ws: WorkspaceId,
        id: RuleId,
        rule: &AutomationRule,
        now: DateTime<Utc>,
    ) -> Result<SalesforceRule>;
    async fn delete_salesforce_rule(&self, ws: WorkspaceId, id: RuleId) -> Result<()>;
    /// Leases up to `limit` due actions of one workspace; each claim counts an attempt.
    async fn claim_salesforce_actions(
        &self,
        limit: usize,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Option<ClaimedActions>>;
    async fn ack_salesforce_action(
        &self,
        ws: WorkspaceId,
        id: ActionId,
        outcome: &ActionOutcome,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// Newest first.
    async fn salesforce_actions(&self, ws: WorkspaceId, limit: usize) -> Result<Vec<SalesforceAction>>;
}

/// Re-exported for callers that need to name ids.
pub use perly_domain::ids;
