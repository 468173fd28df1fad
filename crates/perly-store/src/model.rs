//! The records the store reads and writes. Those that the API returns derive
//! `Serialize` and `ToSchema`, so the OpenAPI document is generated from them.

use chrono::{DateTime, Utc};
use perly_domain::alerts::{AlertKind, AlertState, Assessment};
use perly_domain::channels::{ChannelRules, Platform};
use perly_domain::ids::{AlertId, ApiKeyId, ChannelId, CustomerId, ImportId, UserId, WorkspaceId};
use perly_domain::imports::{ImportSource, ImportSummary};
use perly_domain::risk::RiskLevel;
use perly_domain::rollup::Rollup;
use perly_domain::scoring::{CustomerFacts, Score};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub name: String,
    pub slug: String,
    pub created_at: DateTime<Utc>,
}

/// Admins change settings; members read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Self::Admin),
            "member" => Ok(Self::Member),
            other => Err(format!("unknown role `{other}`; expected admin or member")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct User {
    pub id: UserId,
    pub workspace_id: WorkspaceId,
    pub email: String,
    #[serde(skip)]
    pub password_hash: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ApiKey {
    #[schema(value_type = String)]
    pub id: ApiKeyId,
    pub label: String,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// What the key may do.
    pub scope: ApiScope,
    /// After this the key is refused (`None`: never).
    pub expires_at: Option<DateTime<Utc>>,
    /// The last request made with the key (to the minute).
    pub last_used_at: Option<DateTime<Utc>>,
}

/// What an API key may do. `Full` is the default, as the public contract
/// has always said; `Ingest` is for the systems that only send data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApiScope {
    /// Every endpoint of the API.
    Full,
    /// Only `POST /api/v1/customers` and `POST /api/v1/events`: no reads,
    /// no settings, no channels.
    Ingest,
}

impl ApiScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Ingest => "ingest",
        }
    }
}

impl std::str::FromStr for ApiScope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "full" => Ok(Self::Full),
            "ingest" => Ok(Self::Ingest),
            other => Err(format!("unknown API key scope `{other}` (expected `ingest` or `full`)")),
        }
    }
}

/// Whether an upserted customer was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpsertOutcome {
    Created,
    Updated,
}

/// What happened to one ingested event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestOutcome {
    Accepted,
    /// The same event id was seen before (or earlier in this batch).
    Duplicate,
    /// No (live) customer has this external id in the workspace.
    UnknownCustomer,
}

/// A customer leased for rescoring.
#[derive(Debug, Clone)]
pub struct RescoreInput {
    pub customer_id: CustomerId,
    pub version: i64,
    /// The lease the claim took (ms since the epoch, `rollups.lease_until`):
    /// recording gives the customer back only while it still holds it.
    pub lease_until: i64,
    pub rollup: Rollup,
    pub facts: CustomerFacts,
    pub state: AlertState,
    /// The import whose data waits to be scored; `None` for live data.
    pub import: Option<ImportId>,
    /// The customer's events stored since `rollup` was last folded: ingest
    /// only appends events, and each is folded in once, before the
    /// customer's next score ([`RescoreInput::fold`]).
    pub unfolded: Vec<perly_domain::event::Event>,
    /// The newest stored event (`events.seq`) in `rollup` once `unfolded`
    /// is folded in.
    pub through: i64,
    /// Events of this claim already folded into `rollup` (a claim folds as
    /// it reads, to bound its memory).
    pub folded: usize,
}

impl RescoreInput {
    /// Folds the events stored since the rollup was last folded into it.
    /// Returns whether the rollup changed since it was read (and is to be
    /// stored again), counting what was folded before.
    pub fn fold(&mut self) -> bool {
        if !self.unfolded.is_empty() {
            self.rollup.apply_all(&self.unfolded);
            self.folded += self.unfolded.len();
            self.unfolded = Vec::new();
        }
        self.folded > 0
    }
}

/// The outcome of rescoring one customer.
#[derive(Debug, Clone)]
pub struct RescoreResult {
    pub customer_id: CustomerId,
    pub version: i64,
    /// From [`RescoreInput::lease_until`].
    pub lease_until: i64,
    /// `None` when the customer has no data to score yet.
    pub scored: Option<(Score, Assessment)>,
    /// The import this rescoring belongs to (from [`RescoreInput::import`]).
    pub import: Option<ImportId>,
    /// Per alert of the assessment: news (sent to channels one by one) or
    /// history (recorded with an import, summarised once).
    pub news: Vec<bool>,
    /// Verdicts of past days replayed from an import, for the chart.
    pub past: Vec<perly_domain::replay::PastScore>,
    /// The rollup with the new events folded in, to store, and the newest
    /// event in it; `None` when no new event was folded.
    pub folded: Option<(Rollup, i64)>,
}

/// Sort orders of the customer list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, ToSchema)]
pub enum CustomerSort {
    /// Lowest score first (unscored last).
    #[default]
    #[serde(rename = "score")]
    ScoreAsc,
    #[serde(rename = "-score")]
    ScoreDesc,
    #[serde(rename = "name")]
    NameAsc,
    #[serde(rename = "-name")]
    NameDesc,
    /// Largest drop first.
    #[serde(rename = "delta")]
    DeltaAsc,
    #[serde(rename = "-delta")]
    DeltaDesc,
    #[serde(rename = "mrr")]
    MrrAsc,
    /// Largest accounts first.
    #[serde(rename = "-mrr")]
    MrrDesc,
}

impl CustomerSort {
    pub const ALL: [CustomerSort; 8] = [
        Self::ScoreAsc,
        Self::ScoreDesc,
        Self::NameAsc,
        Self::NameDesc,
        Self::DeltaAsc,
        Self::DeltaDesc,
        Self::MrrAsc,
        Self::MrrDesc,
    ];

    /// The query-string value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ScoreAsc => "score",
            Self::ScoreDesc => "-score",
            Self::NameAsc => "name",
            Self::NameDesc => "-name",
            Self::DeltaAsc => "delta",
            Self::DeltaDesc => "-delta",
            Self::MrrAsc => "mrr",
            Self::MrrDesc => "-mrr",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

#[derive(Debug, Clone, Default)]
pub struct CustomerQuery {
    pub risk: Option<RiskLevel>,
    /// Exact owner email.
    pub owner: Option<String>,
    /// Exact plan.
    pub plan: Option<String>,
    /// Case-insensitive substring of the name.
    pub search: Option<String>,
    pub sort: CustomerSort,
    pub limit: usize,
    /// Opaque cursor from the previous page.
    pub cursor: Option<String>,
}

/// A page of results with the cursor of the next page, if any.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CustomerSummary {
    #[serde(skip)]
    pub id: CustomerId,
    pub external_id: String,
    pub name: String,
    pub plan: Option<String>,
    pub mrr: Option<f64>,
    pub seats_purchased: Option<i64>,
    pub owner_email: Option<String>,
    pub parent_external_id: Option<String>,
    /// 0–100, or null before the first score.
    pub score: Option<i64>,
    /// Null before the first score, and while the score rests on too little
    /// data for a verdict (see the customer's `coverage`).
    pub risk_level: Option<RiskLevel>,
    /// Score now minus the score 7 days ago; null without a score from 7 days ago.
    pub delta: Option<i64>,
    pub scored_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HistoryPoint {
    pub at: DateTime<Utc>,
    pub score: i64,
    pub risk_level: RiskLevel,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CustomerDetail {
    #[serde(flatten)]
    pub summary: CustomerSummary,
    /// Which measures the latest score rests on (as in `explanation`). With
    /// `enough: false` the score carries no risk level (`risk_level: null`)
    /// and raises no alert: "Not enough data yet (based on 1 of 8 measures: …)".
    pub coverage: Option<perly_domain::scoring::Coverage>,
    /// Measures, signals, suggested action and coverage of the latest score.
    pub explanation: Option<Score>,
    pub history: Vec<HistoryPoint>,
    pub recent_alerts: Vec<AlertRecord>,
}

#[derive(Debug, Clone, Default)]
pub struct AlertQuery {
    pub kind: Option<AlertKind>,
    /// Only alerts that occurred at or after this time.
    pub since: Option<DateTime<Utc>>,
    pub risk: Option<RiskLevel>,
    pub customer_external_id: Option<String>,
    pub limit: usize,
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AlertRecord {
    #[schema(value_type = String)]
    pub id: AlertId,
    pub kind: AlertKind,
    pub customer_external_id: String,
    pub customer_name: String,
    pub risk_level: RiskLevel,
    pub score: i64,
    /// Against the score 7 days ago (a drop: the 7-day high); null without one.
    pub delta: Option<i64>,
    pub headline: String,
    pub signals: Vec<String>,
    pub suggested_action: String,
    pub occurred_at: DateTime<Utc>,
    /// Set when the alert was recorded from history (a backfill, a first
    /// Salesforce sync, a scorecard change, a first verdict): it is in the
    /// feed and in its import's summary, not sent on its own.
    #[schema(value_type = Option<String>)]
    pub import_id: Option<ImportId>,
}

/// A signed-in browser session.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub workspace: Workspace,
    /// Token every form must carry.
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
    /// The last request seen (to the minute): the session ends after the
    /// idle timeout without one.
    pub last_seen_at: DateTime<Utc>,
}

/// A stored event, for the customer profile.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EventRecord {
    pub id: String,
    pub r#type: String,
    pub occurred_at: DateTime<Utc>,
    /// The event as received (normalised).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

/// How many scored customers have each (score, risk level): enough to preview
/// a change of risk bands without reading every customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScoreBucket {
    pub score: i64,
    pub risk_level: Option<RiskLevel>,
    pub customers: i64,
}

// ---------- channels and the delivery outbox ----------

/// A Slack or Discord channel that receives alerts. The webhook itself is
/// never part of it: only a hint of where it points.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Channel {
    #[schema(value_type = String)]
    pub id: ChannelId,
    pub platform: Platform,
    pub name: String,
    /// The webhook's host and the start of its path; the rest is hidden.
    pub webhook_hint: String,
    /// `oauth` or `pasted`.
    pub source: String,
    pub rules: ChannelRules,
    /// active, paused (receives nothing) or broken (the vendor said the
    /// webhook is gone; alerts wait for a reconnect).
    pub status: ChannelStatus,
    /// A paused channel receives nothing.
    pub enabled: bool,
    /// Set when the vendor said the webhook is gone (deleted, archived,
    /// revoked). Alerts wait until an admin reconnects the channel.
    pub broken_reason: Option<String>,
    pub broken_at: Option<DateTime<Utc>>,
    /// Alerts waiting to go out (held for quiet hours, or queued).
    pub pending: i64,
    pub last_sent_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelStatus {
    Active,
    Paused,
    Broken,
}

impl ChannelStatus {
    pub fn of(enabled: bool, broken: bool) -> Self {
        match (broken, enabled) {
            (true, _) => Self::Broken,
            (false, false) => Self::Paused,
            (false, true) => Self::Active,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Broken => "broken",
        }
    }
}

/// A channel to create; `webhook_url` is encrypted before it is stored.
#[derive(Debug, Clone)]
pub struct NewChannel {
    pub platform: Platform,
    pub name: String,
    pub webhook_url: String,
    pub source: &'static str,
    /// Vendor details from the OAuth exchange (team, guild, channel ids), as JSON.
    pub details: serde_json::Value,
    pub rules: ChannelRules,
}

/// What an update changes; `None` leaves a value alone. A new webhook
/// (reconnect) clears the broken mark.
#[derive(Debug, Clone, Default)]
pub struct ChannelUpdate {
    pub name: Option<String>,
    pub rules: Option<ChannelRules>,
    pub enabled: Option<bool>,
    pub webhook_url: Option<String>,
    pub details: Option<serde_json::Value>,
}

/// An import: a backfill, a first Salesforce sync or a scorecard change,
/// whose alerts are recorded from history and summarised once.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ImportRecord {
    #[schema(value_type = String)]
    pub id: ImportId,
    pub source: ImportSource,
    /// "Backfill through the events API", "First Salesforce sync", "Scorecard change: …".
    pub label: String,
    /// `open` (may still grow), `closed` (complete, its customers being
    /// rescored) or `settled` (summarised to channels).
    pub state: String,
    pub started_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub settled_at: Option<DateTime<Utc>>,
    /// Once settled.
    pub summary: Option<ImportSummary>,
}

/// Whether ingested events are live or a backfill of history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IngestMode {
    /// Live data: alerts go to channels one by one (events older than
    /// [`perly_domain::imports::LIVE_WINDOW_HOURS`] still count as history).
    #[default]
    Live,
    /// History: scored and recorded, summarised once per import.
    Backfill,
}

/// One line of a channel's delivery log.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DeliveryAttempt {
    pub at: DateTime<Utc>,
    /// How many alerts the message carried (a digest carries several; a test message none).
    pub alerts: i64,
    pub status: Option<u16>,
    pub latency_ms: i64,
    /// sent, retry, broken or dead.
    pub outcome: String,
    pub answer: String,
    /// A storm digest: one message that stood for every alert waiting on
    /// the channel (`alerts` of them), sent because the channel reached its
    /// storm guard's limit. Those alerts count as delivered by it.
    pub storm_digest: bool,
}

/// A started OAuth flow, returned once when its state is redeemed.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuthState {
    pub workspace_id: WorkspaceId,
    pub user_id: UserId,
    pub provider: String,
    /// What the flow needs back (e.g. the channel being reconnected), as JSON.
    pub data: serde_json::Value,
}
