//! [`SqlStore`]: the [`Store`] implementation for SQLite and PostgreSQL.
//!
//! Times are stored as Unix milliseconds and ids as text, so the same SQL
//! (with `$n` placeholders, which both backends accept) and the same row
//! decoding serve both. Batches are written with multi-row statements in
//! chunks that stay under SQLite's parameter limit.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use futures::TryStreamExt;
use perly_domain::alerts::AlertState;
use perly_domain::customer::CustomerInput;
use perly_domain::event::Event;
use perly_domain::ids::{ActionId, AlertId, ChannelId, CustomerId, ImportId, RuleId, UserId, WorkspaceId};
use perly_domain::rollup::Rollup;
use perly_domain::salesforce::{AutomationRule, SyncSettings};
use perly_domain::scorecard::Scorecard;
use perly_domain::scoring::{CustomerFacts, Score};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::cipher::SecretCipher;
use crate::db::{Dialect, Pools};
use crate::model::*;
use crate::salesforce::{
    AppliedAccounts, CrmRecord, NewSalesforceConnection, PulledAccount, PulledActivity, SalesforceConnection,
    SalesforceSync, SyncClaim,
};
use crate::salesforce_outbox::{
    ActionOutcome, ClaimedActions, ClaimedPushes, PushAck, PushStatus, SalesforceAction, SalesforceRule,
};
use crate::{Error, Result, Store};

/// Rows per multi-row statement: at most 13 parameters a row, 6,500 a
/// statement (SQLite allows 32,766, PostgreSQL 65,535). 500 instead of 100
/// took a 300,000-account Salesforce sync from 53.4 s to 50.3 s.
pub(crate) const CHUNK: usize = 500;
/// Ids per `IN (…)` list.
pub(crate) const IN_CHUNK: usize = 500;
/// How long a rescoring lease lasts before another worker may take the row.
const LEASE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
/// Where stored events come from: live data, or history (a backfill, an
/// import such as a first Salesforce sync). Live events older than the live
/// window count as history too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Live,
    Backfill,
    Import(ImportId),
}

/// Which import a customer's new events belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ImportOf {
    /// None: live data.
    Live,
    Import(ImportId),
    /// The workspace's open events import (started if there is none).
    EventsImport,
}

impl Origin {
    /// Where a customer's new events from this origin go: with an import
    /// they are part of it; live events go live when one of them
    /// (`any_live`) is within the live window, and otherwise, like a
    /// backfill, to the events import. (Live data for the customer already
    /// waiting wins over an import when it is marked.)
    pub(crate) fn import_of(self, any_live: bool) -> ImportOf {
        match self {
            Self::Import(id) => ImportOf::Import(id),
            Self::Live if any_live => ImportOf::Live,
            Self::Live | Self::Backfill => ImportOf::EventsImport,
        }
    }
}

/// Marks a rollup for rescoring, keeping the time it first became dirty
/// (`$2` is now): rescoring takes the longest-waiting customers first.
/// The version moves too, so a rescoring pass already holding the old inputs
/// does not clear the mark when it records.
const MARK_DIRTY: &str =
    "dirty = 1, version = rollups.version + 1, dirty_at = CASE WHEN rollups.dirty = 1 THEN rollups.dirty_at ELSE $2 END";

/// Runs a query written with [`Dialect::json_rows`] and parses its rows.
pub(crate) async fn fetch_json_rows<'q, T: serde::de::DeserializeOwned>(
    q: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    conn: &mut sqlx::AnyConnection,
) -> Result<Vec<T>> {
    let text: String = q.fetch_one(conn).await?.try_get(0)?;
    serde_json::from_str(&text).map_err(|e| corrupt("query rows", e))
}

/// Rollup encoding version, written as the first byte. Format 3 has format
/// 2's layout and is always within `rollup::LIMITS`; a format-2 blob (from
/// before the limits) is read and trimmed to them.
const ROLLUP_FORMAT: u8 = 3;
const ROLLUP_FORMAT_UNLIMITED: u8 = 2;

/// Unfolded events a rescoring claim holds at most before folding them into
/// their customers' rollups (about 10 MB of events).
const FOLD_EVERY: usize = 50_000;

/// A claim's customers taking their new events as the rows stream in,
/// folded into their rollups [`FOLD_EVERY`] events at a time.
pub(crate) struct Folding<'a> {
    inputs: &'a mut [RescoreInput],
    at: HashMap<CustomerId, usize>,
    pending: usize,
}

impl<'a> Folding<'a> {
    pub(crate) fn new(inputs: &'a mut [RescoreInput]) -> Self {
        let at = inputs.iter().enumerate().map(|(i, c)| (c.customer_id, i)).collect();
        Self { inputs, at, pending: 0 }
    }

    /// An event (`seq`, `payload`) of `customer`, if it is one of the
    /// claim's customers.
    pub(crate) fn add(&mut self, customer: CustomerId, seq: i64, payload: &str) -> Result<()> {
        let Some(input) = self.at.get(&customer).and_then(|i| self.inputs.get_mut(*i)) else {
            return Ok(());
        };
        let event: Event = serde_json::from_str(payload).map_err(|e| corrupt("event payload", e))?;
        input.unfolded.push(event);
        input.through = input.through.max(seq);
        self.pending += 1;
        if self.pending >= FOLD_EVERY {
            self.fold();
        }
        Ok(())
    }

    /// Folds what is waiting.
    pub(crate) fn fold(&mut self) {
        for input in self.inputs.iter_mut() {
            input.fold();
        }
        self.pending = 0;
    }
}

/// A claim's columns of `n` customers (bound: the workspace three times,
/// then the ids). The customers are found by their keys: with the
/// workspace columns indexable, SQLite walked all of the workspace's
/// rollups (by `rollups_by_last_import`) or customers (by a sort index) for
/// each chunk of ids, looking each row up in the list: a full rescore of
/// 100,000 customers read 100,000 rows per 500 claimed.
pub(crate) fn claim_rows_sql(dialect: Dialect, n: usize) -> String {
    dialect.positional(format!(
        "SELECT r.customer_id, r.version, b.data, b.{} AS folded_seq, r.dirty_import, c.plan, c.seats_purchased, \
         s.alert_state FROM rollups r JOIN customers c ON c.id = r.customer_id \
         LEFT JOIN rollup_blobs b ON b.customer_id = r.customer_id AND b.workspace_id = r.workspace_id \
         LEFT JOIN customer_scores s ON s.customer_id = r.customer_id AND s.workspace_id = $1 \
         WHERE {} = $2 AND {} = $3 AND r.customer_id IN ({})",
        folded_column(dialect),
        dialect.unindexed("r.workspace_id"),
        dialect.unindexed("c.workspace_id"),
        params(4, n)
    ))
}

/// The column of `rollup_blobs` that says which events a blob folded: on
/// SQLite `folded_seq`, the newest event's `seq` (its one writer commits
/// events in `seq` order); on PostgreSQL `folded_xid`, a bound of
/// transaction ids below which every event is folded and from which none
/// is ([`crate::event_marks`]).
pub(crate) fn folded_column(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "folded_seq",
        Dialect::Postgres => "folded_xid",
    }
}

/// The events each of `n` claimed customers got since its rollup was
/// folded, below the marker's `through` (`$2`): one range of the customer
/// index per customer. The column `seq` is what the blob will say it
/// folded through: on PostgreSQL the transaction id (the claim records its
/// bound instead).
///
/// On SQLite (bound: the workspace, `through`, then the ids) the ranges
/// start at each blob's `folded_seq`. The join order is forced (CROSS
/// JOIN): left to itself SQLite reads `events` first, by customer, and
/// cannot start the range at `folded_seq`, which comes from the blob, so it
/// read every event of each claimed customer. `r` is found by its key, not
/// by the workspace index.
///
/// On PostgreSQL (bound: the workspace, `through`, then each customer's id
/// and `folded_xid` as the claim read them) the rollups and blobs are not
/// read again: with a database bigger than PostgreSQL's buffers, their
/// index and heap pages were a third of the pages the claim read from the
/// disk cache.
pub(crate) fn claim_events_sql(dialect: Dialect, n: usize) -> String {
    match dialect {
        Dialect::Sqlite => dialect.positional(format!(
            "SELECT e.customer_id, e.seq AS seq, e.payload FROM rollups r \
             LEFT JOIN rollup_blobs b ON b.customer_id = r.customer_id AND b.workspace_id = r.workspace_id \
             CROSS JOIN events e WHERE e.workspace_id = r.workspace_id AND e.customer_id = r.customer_id \
             AND e.seq > COALESCE(b.folded_seq, 0) AND {} = $1 AND e.seq < $2 AND r.customer_id IN ({})",
            dialect.unindexed("r.workspace_id"),
            params(3, n)
        )),
        Dialect::Postgres => {
            let ranges: Vec<String> = (0..n)
                .map(|i| match i {
                    0 => "($3::text, $4::bigint)".to_owned(),
                    _ => format!("(${}, ${})", 3 + 2 * i, 4 + 2 * i),
                })
                .collect();
            // The events are read customer by customer (`LATERAL`, kept a
            // subquery by `OFFSET 0`): joined plainly, PostgreSQL hashed the
            // values and scanned the workspace's whole `events` table for
            // each claim when its statistics said the workspace was small
            // (a full rescore of 20,000 customers: 75 s instead of 4).
            format!(
                "SELECT c.id AS customer_id, e.xid AS seq, e.payload FROM (VALUES {}) AS c(id, folded) \
                 CROSS JOIN LATERAL (SELECT e.xid, e.payload FROM events e WHERE e.workspace_id = $1 \
                 AND e.customer_id = c.id AND e.xid >= c.folded AND e.xid < $2 OFFSET 0) e",
                ranges.join(", ")
            )
        }
    }
}

/// All the events of a customer whose rollup is folded again, below the
/// marker's `through` (`$3`).
pub(crate) fn refold_events_sql(dialect: Dialect) -> String {
    let position = crate::event_marks::position_column(dialect);
    dialect.positional(format!(
        "SELECT {position} AS seq, payload FROM events WHERE workspace_id = $1 AND customer_id = $2 AND {position} < $3"
    ))
}

/// The marker's `through`, read in a claim's snapshot: the claim folds the
/// events below it, whose marks it sees ([`crate::event_marks`]).
pub(crate) const MARKED_THROUGH: &str = "SELECT through FROM event_marks WHERE id = 1";

/// The claim's columns of one customer (rollup, blob, facts, alert state),
/// as read by either driver.
pub(crate) struct ClaimedRow {
    pub customer_id: String,
    pub version: i64,
    pub data: Option<Vec<u8>>,
    pub folded_seq: Option<i64>,
    pub dirty_import: Option<String>,
    pub plan: Option<String>,
    pub seats_purchased: Option<i64>,
    pub alert_state: Option<String>,
}

impl ClaimedRow {
    /// The customer's rescoring input, its new events not read yet. A
    /// customer whose stored rollup cannot be read (a format change) is
    /// added to `refold`: it folds all its events again.
    pub(crate) fn input(self, lease_until: i64, refold: &mut Vec<CustomerId>) -> Result<RescoreInput> {
        let customer_id: CustomerId = parse("customer id", &self.customer_id)?;
        let (rollup, through) = match self.data {
            None => (Rollup::default(), 0),
            Some(data) => match decode_rollup(&data) {
                Some(r) => (r, self.folded_seq.unwrap_or(0)),
                None => {
                    tracing::warn!(customer_id = %customer_id, "stored rollup unreadable; folding all its events again");
                    refold.push(customer_id);
                    (Rollup::default(), 0)
                }
            },
        };
        let state = match self.alert_state {
            None => AlertState::default(),
            Some(s) => serde_json::from_str(&s).map_err(|e| corrupt("alert state", e))?,
        };
        Ok(RescoreInput {
            customer_id,
            version: self.version,
            lease_until,
            rollup,
            facts: CustomerFacts {
                plan: self.plan,
                seats_purchased: self.seats_purchased.and_then(|n| u32::try_from(n).ok()),
            },
            state,
            import: self.dirty_import.map(|id| parse("import id", &id)).transpose()?,
            unfolded: Vec::new(),
            folded: 0,
            through,
        })
    }
}

/// A scored customer as the record writes it: id, score, risk level,
/// delta, explanation and alert state (JSON).
type ScoredRow<'a> = (String, i64, Option<&'a str>, Option<i64>, String, String);

/// Writes the score, risk level and delta of up to [`CHUNK`] scored
/// customers, whose rows are locked. Without `scored_at` only the customers
/// whose values moved are written; with it (PostgreSQL) every one, stamped.
async fn update_scores(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    dialect: Dialect,
    ws: &str,
    chunk: &[ScoredRow<'_>],
    scored_at: Option<i64>,
) -> Result<()> {
    let (stamp, moved) = match scored_at {
        Some(_) => (format!(", scored_at = ${}", chunk.len() * 5 + 1), ""),
        None => (
            String::new(),
            " AND (customers.score IS DISTINCT FROM v.column2 OR customers.risk_level IS DISTINCT FROM v.column3 \
             OR customers.delta IS DISTINCT FROM v.column4)",
        ),
    };
    let sql = dialect.positional(format!(
        "UPDATE customers SET score = v.column2, sort_score = v.column2, risk_level = v.column3, delta = v.column4{stamp} \
         FROM (VALUES {}) AS v WHERE customers.workspace_id = v.column5 AND customers.id = v.column1{moved}",
        value_rows(1, chunk.len(), 5)
    ));
    let mut q = sqlx::query(&sql);
    for (cid, score, risk, delta, _, _) in chunk {
        q = q
            .bind(cid.clone())
            .bind(*score)
            .bind(*risk)
            .bind(*delta)
            .bind(ws.to_owned());
    }
    if let Some(at) = scored_at {
        q = q.bind(at);
    }
    q.execute(&mut **tx).await?;
    Ok(())
}

/// The SQL store.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pub(crate) pools: Pools,
    pub(crate) cipher: SecretCipher,
    /// The events API's group-commit queue ([`crate::ingest_queue`]),
    /// started on first use.
    ingest: Arc<IngestLane>,
    /// SQLite: the rescoring claims' read connection
    /// ([`crate::sqlite_claim`]), opened on first use.
    claims: Arc<tokio::sync::OnceCell<crate::sqlite_claim::SqliteClaimReader>>,
}

#[derive(Debug)]
struct IngestLane {
    url: String,
    queue: tokio::sync::OnceCell<crate::ingest_queue::IngestQueue>,
}

impl IngestLane {
    fn of(url: &str) -> Arc<Self> {
        Arc::new(Self {
            url: url.to_owned(),
            queue: tokio::sync::OnceCell::new(),
        })
    }
}

impl SqlStore {
    /// Connects, migrates, and keeps the cipher for secrets.
    /// On PostgreSQL the marker runs once before anything is served, so
    /// that a database restored into a younger cluster is renumbered before
    /// new events arrive ([`crate::event_marks`]).
    pub async fn connect(url: &str, cipher: SecretCipher) -> Result<Self> {
        let store = Self {
            pools: crate::db::connect(url).await?,
            cipher,
            ingest: IngestLane::of(url),
            claims: Arc::default(),
        };
        store.mark_new_events().await?;
        Ok(store)
    }

    /// As [`SqlStore::connect`], but connecting on first use and without
    /// migrations ([`crate::db::connect_lazy`]).
    pub fn connect_lazy(url: &str, cipher: SecretCipher) -> Result<Self> {
        Ok(Self {
            pools: crate::db::connect_lazy(url)?,
            cipher,
            ingest: IngestLane::of(url),
            claims: Arc::default(),
        })
    }

    pub(crate) fn dialect(&self) -> Dialect {
        self.pools.dialect
    }
}

/// Runs a transaction again (up to three times) when PostgreSQL aborted it
/// for a deadlock or a serialization failure: both mean "nothing was written,
/// try again".
pub(crate) async fn retry_conflicts<T, F, Fut>(mut run: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut attempt = 0;
    loop {
        match run().await {
            Err(Error::Unavailable(sqlx::Error::Database(e)))
                if attempt < 2 && matches!(e.code().as_deref(), Some("40P01" | "40001")) =>
            {
                attempt += 1;
                tracing::warn!(attempt, code = ?e.code(), "transaction conflict, retrying");
                tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
            }
            other => return other,
        }
    }
}

/// What a secret's encryption is bound to: its workspace and name.
pub(crate) fn secret_context(ws: WorkspaceId, name: &str) -> String {
    format!("{ws}/{name}")
}

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("{what}: {e}"))
}

pub(crate) fn parse<T: std::str::FromStr>(what: &str, s: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| corrupt(what, e))
}

/// `$from, $from+1, …` for `n` parameters.
pub(crate) fn params(from: usize, n: usize) -> String {
    let mut out = String::with_capacity(n * 6);
    push_params(&mut out, from, n);
    out
}

/// `($from, …), (…)` for `rows` rows of `width` parameters. Written into
/// one buffer: batch statements are built for every chunk of every page.
pub(crate) fn value_rows(from: usize, rows: usize, width: usize) -> String {
    let mut out = String::with_capacity(rows * (width * 7 + 4));
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        push_params(&mut out, from + r * width, width);
        out.push(')');
    }
    out
}

fn push_params(out: &mut String, from: usize, n: usize) {
    use std::fmt::Write;
    for i in from..from + n {
        if i > from {
            out.push_str(", ");
        }
        // Writing to a String cannot fail.
        let _ = write!(out, "${i}");
    }
}

pub(crate) fn encode_rollup(r: &Rollup) -> Result<Vec<u8>> {
    let mut out = vec![ROLLUP_FORMAT];
    out.extend(postcard::to_allocvec(r).map_err(|e| corrupt("rollup", e))?);
    Ok(out)
}

fn decode_rollup(data: &[u8]) -> Option<Rollup> {
    match data.split_first() {
        Some((&ROLLUP_FORMAT, rest)) => postcard::from_bytes(rest).ok(),
        Some((&ROLLUP_FORMAT_UNLIMITED, rest)) => {
            let mut r: Rollup = postcard::from_bytes(rest).ok()?;
            r.enforce(&perly_domain::rollup::LIMITS);
            Some(r)
        }
        _ => None,
    }
}

fn encode_cursor(value: &serde_json::Value, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::json!([value, id]).to_string())
}

fn decode_cursor(cursor: &str) -> Result<(serde_json::Value, String)> {
    let bad = || Error::Invalid("cursor is not one this API returned".to_owned());
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    match v.as_array().map(Vec::as_slice) {
        Some([value, serde_json::Value::String(id)]) => Ok((value.clone(), id.clone())),
        _ => Err(bad()),
    }
}

const CUSTOMER_COLUMNS: &str = "c.id, c.external_id, c.name, c.plan, c.mrr, c.seats_purchased, c.owner_email, \
     c.parent_external_id, c.score, c.risk_level, c.delta, c.scored_at";

fn customer_from(row: &AnyRow) -> Result<CustomerSummary> {
    Ok(CustomerSummary {
        id: parse("customer id", &row.try_get::<String, _>("id")?)?,
        external_id: row.try_get("external_id")?,
        name: row.try_get("name")?,
        plan: row.try_get("plan")?,
        mrr: row.try_get("mrr")?,
        seats_purchased: row.try_get("seats_purchased")?,
        owner_email: row.try_get("owner_email")?,
        parent_external_id: row.try_get("parent_external_id")?,
        score: row.try_get("score")?,
        risk_level: row
            .try_get::<Option<String>, _>("risk_level")?
            .map(|r| parse("risk level", &r))
            .transpose()?,
        delta: row.try_get("delta")?,
        scored_at: row.try_get::<Option<i64>, _>("scored_at")?.map(time),
    })
}

/// The ORDER BY expression of a sort and whether it descends. Unscored
/// customers (and missing values) sort last either way.
fn sort_expression(sort: CustomerSort) -> (&'static str, bool) {
    match sort {
        CustomerSort::ScoreAsc => ("c.sort_score", false),
        CustomerSort::ScoreDesc => ("(CASE WHEN c.score IS NULL THEN -1 ELSE c.score END)", true),
        CustomerSort::NameAsc => ("c.name", false),
        CustomerSort::NameDesc => ("c.name", true),
        CustomerSort::DeltaAsc => ("(CASE WHEN c.delta IS NULL THEN 1000 ELSE c.delta END)", false),
        CustomerSort::DeltaDesc => ("(CASE WHEN c.delta IS NULL THEN -1000 ELSE c.delta END)", true),
        CustomerSort::MrrAsc => ("(CASE WHEN c.mrr IS NULL THEN 1e300 ELSE c.mrr END)", false),
        CustomerSort::MrrDesc => ("(CASE WHEN c.mrr IS NULL THEN -1.0 ELSE c.mrr END)", true),
    }
}

/// A value to bind: a filter or the sort key of a cursor.
enum SortValue {
    Int(i64),
    Real(f64),
    Text(String),
}

impl SortValue {
    /// The sort key of a row, matching [`sort_expression`].
    fn of(sort: CustomerSort, c: &CustomerSummary) -> Self {
        match sort {
            CustomerSort::ScoreAsc => Self::Int(c.score.unwrap_or(1000)),
            CustomerSort::ScoreDesc => Self::Int(c.score.unwrap_or(-1)),
            CustomerSort::NameAsc | CustomerSort::NameDesc => Self::Text(c.name.clone()),
            CustomerSort::DeltaAsc => Self::Int(c.delta.unwrap_or(1000)),
            CustomerSort::DeltaDesc => Self::Int(c.delta.unwrap_or(-1000)),
            CustomerSort::MrrAsc => Self::Real(c.mrr.unwrap_or(1e300)),
            CustomerSort::MrrDesc => Self::Real(c.mrr.unwrap_or(-1.0)),
        }
    }

    fn from_cursor(sort: CustomerSort, v: &serde_json::Value) -> Result<Self> {
        let bad = || Error::Invalid("cursor is not one this API returned".into());
        Ok(match sort {
            CustomerSort::NameAsc | CustomerSort::NameDesc => Self::Text(v.as_str().ok_or_else(bad)?.to_owned()),
            CustomerSort::MrrAsc | CustomerSort::MrrDesc => Self::Real(v.as_f64().ok_or_else(bad)?),
            _ => Self::Int(v.as_i64().ok_or_else(bad)?),
        })
    }

    fn to_json(&self) -> serde_json::Value {
        match self {
            Self::Int(v) => serde_json::json!(v),
            Self::Real(v) => serde_json::json!(v),
            Self::Text(v) => serde_json::json!(v),
        }
    }
}

pub(crate) const ALERT_COLUMNS: &str =
    "a.id, a.kind, c.external_id, c.name, a.risk_level, a.score, a.delta, a.headline, \
     a.signals, a.suggested_action, a.occurred_at, a.import_id";

pub(crate) fn alert_from(row: &AnyRow) -> Result<AlertRecord> {
    Ok(AlertRecord {
        id: parse("alert id", &row.try_get::<String, _>("id")?)?,
        kind: parse("alert kind", &row.try_get::<String, _>("kind")?)?,
        customer_external_id: row.try_get("external_id")?,
        customer_name: row.try_get("name")?,
        risk_level: parse("risk level", &row.try_get::<String, _>("risk_level")?)?,
        score: row.try_get("score")?,
        delta: row.try_get("delta")?,
        headline: row.try_get("headline")?,
        signals: serde_json::from_str(&row.try_get::<String, _>("signals")?).map_err(|e| corrupt("signals", e))?,
        suggested_action: row.try_get("suggested_action")?,
        occurred_at: time(row.try_get("occurred_at")?),
        import_id: match row.try_get::<Option<String>, _>("import_id")? {
            Some(id) => Some(parse("import id", &id)?),
            None => None,
        },
    })
}

impl SqlStore {
    /// The id of a live customer.
    async fn customer_id(&self, ws: WorkspaceId, external_id: &str) -> Result<Option<CustomerId>> {
        let row = sqlx::query(
            "SELECT id FROM customers WHERE workspace_id = $1 AND external_id = $2 AND archived_at IS NULL",
        )
        .bind(ws.to_string())
        .bind(external_id.to_owned())
        .fetch_optional(&self.pools.read)
        .await?;
        row.map(|r| parse("customer id", &r.try_get::<String, _>("id")?))
            .transpose()
    }

    /// Locks rollup rows in id order (PostgreSQL; SQLite has one writer).
    async fn lock_rollup_rows(
        &self,
        tx: &mut Transaction<'static, Any>,
        ws: WorkspaceId,
        sorted: &[CustomerId],
    ) -> Result<()> {
        if self.dialect() == Dialect::Sqlite {
            return Ok(());
        }
        for chunk in sorted.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT customer_id FROM rollups WHERE workspace_id = $1 AND customer_id IN ({}) ORDER BY customer_id FOR UPDATE",
                params(2, chunk.len())
            );
            let sql = self.dialect().positional(sql);
            let mut q = sqlx::query(&sql).bind(ws.to_string());
            for id in chunk {
                q = q.bind(id.to_string());
            }
            q.fetch_all(&mut **tx).await?;
        }
        Ok(())
    }

    async fn resolve_customers(
        &self,
        tx: &mut Transaction<'static, Any>,
        ws: WorkspaceId,
        external_ids: &[&str],
        include_archived: bool,
    ) -> Result<HashMap<String, CustomerId>> {
        let mut out = HashMap::new();
        for chunk in external_ids.chunks(IN_CHUNK) {
            let inner = format!(
                "SELECT id, external_id FROM customers WHERE workspace_id = $1 AND external_id IN ({}){}",
                params(2, chunk.len()),
                if include_archived {
                    ""
                } else {
                    " AND archived_at IS NULL"
                }
            );
            let sql = self
                .dialect()
                .positional(self.dialect().json_rows(&inner, "id, external_id"));
            // Planned with its ids each time on PostgreSQL (`force_custom_plan`,
            // `db::POSTGRES_SESSION`): a cached generic plan made before the
            // table had statistics scanned every customer for each statement
            // (1.2 s for 500 ids at 100,000 customers).
            let mut q = sqlx::query(&sql).bind(ws.to_string());
            for e in chunk {
                q = q.bind(e.to_string());
            }
            for (id, external_id) in fetch_json_rows::<(String, String)>(q, tx).await? {
                out.insert(external_id, parse("customer id", &id)?);
            }
        }
        Ok(out)
    }

    async fn upsert_customers_once(
        &self,
        ws: WorkspaceId,
        rows: &[CustomerInput],
        now: DateTime<Utc>,
    ) -> Result<Vec<UpsertOutcome>> {
        let mut tx = self.pools.write.begin().await?;
        let external: Vec<&str> = rows.iter().map(|r| r.external_id.as_str()).collect();
        let mut known = self.resolve_customers(&mut tx, ws, &external, true).await?;
        // Same lock order as ingest and rescoring: rollups first, by id.
        let mut existing: Vec<CustomerId> = known.values().copied().collect();
        existing.sort();
        self.lock_rollup_rows(&mut tx, ws, &existing).await?;
        // The rollup itself lives in `rollup_blobs`, made when first folded.
        let empty: Vec<u8> = Vec::new();
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let seats = row.seats_purchased.map(i64::from);
            if let Some(id) = known.get(&row.external_id) {
                sqlx::query(
                    "UPDATE customers SET name = $3, plan = COALESCE($4, plan), mrr = COALESCE($5, mrr), \
                     seats_purchased = COALESCE($6, seats_purchased), owner_email = COALESCE($7, owner_email), \
                     parent_external_id = COALESCE($8, parent_external_id), updated_at = $9, archived_at = NULL \
                     WHERE workspace_id = $1 AND id = $2",
                )
                .bind(ws.to_string())
                .bind(id.to_string())
                .bind(row.name.clone())
                .bind(row.plan.clone())
                .bind(row.mrr)
                .bind(seats)
                .bind(row.owner_email.clone())
                .bind(row.parent_external_id.clone())
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
                sqlx::query(&format!(
                    "UPDATE rollups SET {MARK_DIRTY} WHERE workspace_id = $1 AND customer_id = $3"
                ))
                .bind(ws.to_string())
                .bind(ms(now))
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
                out.push(UpsertOutcome::Updated);
            } else {
                let id = CustomerId::new();
                sqlx::query(
                    "INSERT INTO customers (id, workspace_id, external_id, name, plan, mrr, seats_purchased, owner_email, \
                     parent_external_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
                )
                .bind(id.to_string())
                .bind(ws.to_string())
                .bind(row.external_id.clone())
                .bind(row.name.clone())
                .bind(row.plan.clone())
                .bind(row.mrr)
                .bind(seats)
                .bind(row.owner_email.clone())
                .bind(row.parent_external_id.clone())
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO rollups (customer_id, workspace_id, data, version, dirty, dirty_at, updated_at) \
                     VALUES ($1, $2, $3, 0, 1, $4, $4)",
                )
                .bind(id.to_string())
                .bind(ws.to_string())
                .bind(empty.clone())
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
                known.insert(row.external_id.clone(), id);
                out.push(UpsertOutcome::Created);
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Inserts events of known customers (ids unique within `rows`) with
    /// their imports, and skips those already stored; the marker marks the
    /// customers of the new ones for rescoring ([`crate::event_marks`]).
    /// Returns the ids of the events that were new. Used by the Salesforce
    /// pull (the events API has its own writers, `sqlite_ingest` and
    /// `postgres_ingest`).
    pub(crate) async fn store_events(
        &self,
        tx: &mut Transaction<'static, Any>,
        ws: WorkspaceId,
        rows: &[(CustomerId, &Event)],
        origin: Origin,
        now: DateTime<Utc>,
    ) -> Result<HashSet<String>> {
        let ws_s = ws.to_string();
        let received = ms(now);
        // No customer's row is locked or written: the marker marks the
        // customers of new events ([`crate::event_marks`]). The ids not
        // stored yet are the new ones: exactly on SQLite (one writer); on
        // PostgreSQL the insert also says which rows it stored, since a
        // transaction for other customers may store one of the same ids
        // meanwhile.
        let mut inserted: HashSet<String> = rows.iter().map(|(_, e)| e.id.clone()).collect();
        let wanted: Vec<&str> = inserted.iter().map(String::as_str).collect();
        let mut stored = Vec::new();
        for chunk in wanted.chunks(IN_CHUNK) {
            let inner = format!(
                "SELECT event_id FROM events WHERE workspace_id = $1 AND event_id IN ({})",
                params(2, chunk.len())
            );
            let sql = self.dialect().positional(self.dialect().json_rows(&inner, "event_id"));
            let mut q = sqlx::query(&sql).bind(ws_s.clone());
            for id in chunk {
                q = q.bind((*id).to_owned());
            }
            stored.extend(fetch_json_rows::<(String,)>(q, tx).await?);
        }
        for (id,) in stored {
            inserted.remove(&id);
        }
        // The first row of each new id.
        let mut pending = inserted.clone();
        let new: Vec<&(CustomerId, &Event)> = rows.iter().filter(|(_, e)| pending.remove(&e.id)).collect();
        // Each customer's import: a customer whose new events are all
        // history waits to be scored as part of an import (live data for
        // it, now or already waiting, wins; a new customer's empty rollup,
        // version 0, waits for no live data).
        let mut new_of: BTreeMap<CustomerId, Vec<&Event>> = BTreeMap::new();
        for (cid, e) in &new {
            new_of.entry(*cid).or_default().push(e);
        }
        let mut import_of: HashMap<CustomerId, Option<String>> = HashMap::with_capacity(new_of.len());
        let mut events_import: Option<String> = None;
        for (cid, evs) in &new_of {
            let any_live = evs.iter().any(|e| !perly_domain::imports::is_late(e.occurred_at, now));
            let import = match origin.import_of(any_live) {
                ImportOf::Live => None,
                ImportOf::Import(id) => Some(id.to_string()),
                ImportOf::EventsImport => match &events_import {
                    Some(id) => Some(id.clone()),
                    None => {
                        let id = crate::imports::events_import(tx, ws, now).await?.to_string();
                        events_import = Some(id.clone());
                        Some(id)
                    }
                },
            };
            import_of.insert(*cid, import);
        }
        let mut taken: HashSet<String> = HashSet::new();
        for chunk in new.chunks(CHUNK) {
            // Each row carries its import, for the marker.
            let insert = format!(
                "INSERT INTO events (workspace_id, event_id, customer_id, type, occurred_at, received_at, payload, \
                 import_id) VALUES {} ON CONFLICT (workspace_id, event_id) DO NOTHING",
                value_rows(1, chunk.len(), 8)
            );
            let answering = self.dialect().inserted_json(&insert, "event_id");
            let sql = self.dialect().positional(answering.clone().unwrap_or(insert));
            let mut q = sqlx::query(&sql);
            for (cid, e) in chunk {
                let payload = serde_json::to_string(e).map_err(|err| corrupt("event", err))?;
                q = q
                    .bind(ws_s.clone())
                    .bind(e.id.clone())
                    .bind(cid.to_string())
                    .bind(e.kind.type_name())
                    .bind(ms(e.occurred_at))
                    .bind(received)
                    .bind(payload)
                    .bind(import_of.get(cid).cloned().flatten());
            }
            match answering {
                Some(_) => {
                    let stored: HashSet<String> = fetch_json_rows::<(String,)>(q, tx)
                        .await?
                        .into_iter()
                        .map(|(id,)| id)
                        .collect();
                    taken.extend(
                        chunk
                            .iter()
                            .map(|(_, e)| &e.id)
                            .filter(|id| !stored.contains(*id))
                            .cloned(),
                    );
                }
                None => {
                    q.execute(&mut **tx).await?;
                }
            }
        }
        inserted.retain(|id| !taken.contains(id));
        Ok(inserted)
    }

    async fn claim_rescore_once(&self, ws: WorkspaceId, limit: usize, now: DateTime<Utc>) -> Result<Vec<RescoreInput>> {
        let now_ms = ms(now);
        let lease_until = now_ms + LEASE_MS;
        // PostgreSQL: the customers of the events stored since the last
        // pass are marked first ([`crate::event_marks`]).
        self.mark_new_events().await?;
        let mut tx = self.pools.write.begin().await?;
        // The claimed rows are found by key: with `workspace_id` indexable,
        // SQLite walked all of the workspace's rollups (by
        // `rollups_by_last_import`) looking each up in the claim's list, so
        // a full rescore of 100,000 customers read 100,000 rows per claim.
        let sql = format!(
            "UPDATE rollups SET lease_until = $3 WHERE {} = $1 AND customer_id IN (\
             SELECT customer_id FROM rollups WHERE workspace_id = $1 AND dirty = 1 \
             AND (lease_until IS NULL OR lease_until < $2) ORDER BY dirty_at LIMIT $4{}) RETURNING customer_id",
            self.dialect().unindexed("workspace_id"),
            self.dialect().skip_locked()
        );
        let claimed: Vec<String> = sqlx::query(&sql)
            .bind(ws.to_string())
            .bind(now_ms)
            .bind(lease_until)
            .bind(limit as i64)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get("customer_id"))
            .collect::<Result<_, _>>()?;
        tx.commit().await?;
        if self.dialect() == Dialect::Sqlite {
            let reader = self
                .claims
                .get_or_try_init(|| async {
                    let path = crate::db::sqlite_path(&self.ingest.url)
                        .ok_or_else(|| Error::Invalid("SQLite URL needs a file path".into()))?;
                    crate::sqlite_claim::SqliteClaimReader::open(path)
                })
                .await?;
            return reader.read(ws, claimed, lease_until).await;
        }
        // One snapshot for all the reads (see `sqlite_claim::read`): a claim
        // whose lease ran out may record a blob between the two reads.
        let mut snapshot = self.pools.read.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *snapshot)
            .await?;
        // The claim folds the events the marker has marked, no further
        // ([`crate::event_marks`]): they are final (their transactions
        // ended before the marker's statement), in this snapshot, and their
        // marks too, so the customer's import (`dirty_import`) and version
        // read below already count them. An event the marker has not
        // reached is left for the claim after it: folded now, a live event
        // of a customer waiting for an import would be scored as history.
        let refold_sql = refold_events_sql(self.dialect());
        let bound: i64 = sqlx::query(MARKED_THROUGH)
            .fetch_one(&mut *snapshot)
            .await?
            .try_get("through")?;
        let mut out = Vec::with_capacity(claimed.len());
        for chunk in claimed.chunks(IN_CHUNK) {
            let sql = claim_rows_sql(self.dialect(), chunk.len());
            let mut q = sqlx::query(&sql)
                .bind(ws.to_string())
                .bind(ws.to_string())
                .bind(ws.to_string());
            for id in chunk {
                q = q.bind(id.clone());
            }
            let first = out.len();
            // Customers whose stored rollup cannot be read (a format change)
            // fold all their events again.
            let mut refold = Vec::new();
            for row in q.fetch_all(&mut *snapshot).await? {
                let claimed = ClaimedRow {
                    customer_id: row.try_get("customer_id")?,
                    version: row.try_get("version")?,
                    data: row.try_get("data")?,
                    folded_seq: row.try_get("folded_seq")?,
                    dirty_import: row.try_get("dirty_import")?,
                    plan: row.try_get("plan")?,
                    seats_purchased: row.try_get("seats_purchased")?,
                    alert_state: row.try_get("alert_state")?,
                };
                out.push(claimed.input(lease_until, &mut refold)?);
            }
            let fresh = &mut out[first..];
            if fresh.is_empty() {
                continue;
            }
            let sql = claim_events_sql(self.dialect(), fresh.len());
            let mut q = sqlx::query(&sql).bind(ws.to_string()).bind(bound);
            for input in fresh.iter() {
                q = q.bind(input.customer_id.to_string()).bind(input.through);
            }
            // Streamed and folded as they come, FOLD_EVERY events at a
            // time: a claim of customers with 90 days of history each is
            // half a million events, which held at once (rows, then events)
            // took the rescoring of a big import past 400 MB.
            let mut folding = Folding::new(fresh);
            let mut rows = q.fetch(&mut *snapshot);
            while let Some(row) = rows.try_next().await? {
                let customer_id: CustomerId = parse("customer id", &row.try_get::<String, _>("customer_id")?)?;
                // A refolded customer's events all come from the query below.
                if !refold.contains(&customer_id) {
                    folding.add(customer_id, row.try_get("seq")?, &row.try_get::<String, _>("payload")?)?;
                }
            }
            drop(rows);
            for id in &refold {
                let mut all = sqlx::query(&refold_sql)
                    .bind(ws.to_string())
                    .bind(id.to_string())
                    .bind(bound)
                    .fetch(&mut *snapshot);
                while let Some(row) = all.try_next().await? {
                    folding.add(*id, row.try_get("seq")?, &row.try_get::<String, _>("payload")?)?;
                }
            }
            folding.fold();
            // Folded through the bound, whatever the newest event's id.
            for input in out[first..].iter_mut() {
                input.through = bound;
            }
        }
        snapshot.commit().await?;
        Ok(out)
    }

    async fn record_scores_once(
        &self,
        ws: WorkspaceId,
        results: &[RescoreResult],
        now: DateTime<Utc>,
    ) -> Result<crate::ops::RecordedAlerts> {
        let now_ms = ms(now);
        let hour = now_ms - now_ms.rem_euclid(HOUR_MS);
        let ws_s = ws.to_string();
        // Serialise outside the transaction.
        let mut scored = Vec::new();
        let mut unscored = Vec::new();
        let mut alerts = Vec::new();
        // Replayed past days' verdicts (chart points).
        let mut past = Vec::new();
        // Alerts recorded from history without an import of their own (a
        // first verdict, say) join the workspace's open events import.
        let mut needs_events_import = Vec::new();
        for r in results {
            let cid = r.customer_id.to_string();
            match &r.scored {
                Some((score, assessment)) => {
                    let explanation = serde_json::to_string(score).map_err(|e| corrupt("score", e))?;
                    let state = serde_json::to_string(&assessment.state).map_err(|e| corrupt("alert state", e))?;
                    for (i, a) in assessment.alerts.iter().enumerate() {
                        let signals = serde_json::to_string(&a.signals).map_err(|e| corrupt("signals", e))?;
                        let news = r.news.get(i).copied().unwrap_or(false);
                        let import = if news { None } else { r.import.map(|id| id.to_string()) };
                        if !news && import.is_none() {
                            needs_events_import.push(cid.clone());
                        }
                        alerts.push((cid.clone(), a, signals, news, import));
                    }
                    for p in &r.past {
                        let at = ms(p.at);
                        past.push((cid.clone(), at - at.rem_euclid(HOUR_MS), p.score, p.risk_level.as_str()));
                    }
                    scored.push((
                        cid,
                        score.score,
                        score.risk_level.map(|l| l.as_str()),
                        assessment.delta,
                        explanation,
                        state,
                    ));
                }
                None => unscored.push(cid),
            }
        }
        let mut tx = self.pools.write.begin().await?;
        if self.dialect() == Dialect::Postgres {
            // A record stores no event: so marked, it does not hold back the
            // bound of the claims it runs beside ([`crate::event_marks`]).
            sqlx::query(crate::event_marks::WRITES_NO_EVENTS)
                .execute(&mut *tx)
                .await?;
        }
        // The customers' rollups rows are locked (in id order, as SQLite's
        // ingest, the marker and upserts lock them) as late as possible:
        // those wait for them, and a batch of 2,000 customers takes over a
        // second to record on PostgreSQL. Before them come only the rows no other
        // writer takes (scores, history, alerts and their outbox, blobs);
        // after them the customers and their Salesforce pushes, which
        // upserts and the Salesforce pull take after the rollups too. A
        // batch that joins the open events import locks them first: ingest
        // takes the import's row after the rollups.
        let mut ids: Vec<CustomerId> = results.iter().map(|r| r.customer_id).collect();
        ids.sort();
        let locked_first = !needs_events_import.is_empty();
        if locked_first {
            self.lock_rollup_rows(&mut tx, ws, &ids).await?;
            let import = crate::imports::events_import(&mut tx, ws, now).await?.to_string();
            for a in alerts.iter_mut().filter(|a| !a.3 && a.4.is_none()) {
                a.4 = Some(import.clone());
            }
            needs_events_import.sort();
            needs_events_import.dedup();
            for chunk in needs_events_import.chunks(IN_CHUNK) {
                let sql = format!(
                    "UPDATE rollups SET last_import = $2 WHERE {} = $1 AND customer_id IN ({})",
                    self.dialect().unindexed("workspace_id"),
                    params(3, chunk.len())
                );
                let sql = self.dialect().positional(sql);
                let mut q = sqlx::query(&sql).bind(ws_s.clone()).bind(import.clone());
                for cid in chunk {
                    q = q.bind(cid.clone());
                }
                q.execute(&mut *tx).await?;
            }
        }
        for chunk in scored.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO customer_scores (customer_id, workspace_id, explanation, alert_state) VALUES {} \
                 ON CONFLICT (customer_id) DO UPDATE SET explanation = excluded.explanation, alert_state = excluded.alert_state \
                 WHERE customer_scores.workspace_id = excluded.workspace_id",
                value_rows(1, chunk.len(), 4)
            );
            let sql = self.dialect().positional(sql);
            let mut q = sqlx::query(&sql);
            for (cid, _, _, _, explanation, state) in chunk {
                q = q
                    .bind(cid.clone())
                    .bind(ws_s.clone())
                    .bind(explanation.clone())
                    .bind(state.clone());
            }
            q.execute(&mut *tx).await?;
        }
        // History keeps verdicts only: a score on too little data is no
        // point of the chart and no baseline. Each customer's verdict now,
        // then the past days replayed from an import.
        let mut history: Vec<_> = scored
            .iter()
            .filter_map(|c| c.2.map(|risk| (c.0.clone(), hour, c.1, risk)))
            .collect();
        history.append(&mut past);
        for chunk in history.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO score_history (workspace_id, customer_id, at, score, risk_level) VALUES {} \
                 ON CONFLICT (customer_id, at) DO UPDATE SET score = excluded.score, risk_level = excluded.risk_level \
                 WHERE score_history.workspace_id = excluded.workspace_id",
                value_rows(1, chunk.len(), 5)
            );
            let sql = self.dialect().positional(sql);
            let mut q = sqlx::query(&sql);
            for (cid, at, score, risk) in chunk {
                q = q
                    .bind(ws_s.clone())
                    .bind(cid.clone())
                    .bind(*at)
                    .bind(*score)
                    .bind(*risk);
            }
            q.execute(&mut *tx).await?;
        }
        let mut inserted = crate::ops::RecordedAlerts::default();
        for chunk in alerts.chunks(CHUNK / 2) {
            let sql = format!(
                "INSERT INTO alerts (id, workspace_id, customer_id, kind, dedupe_key, risk_level, score, delta, \
                 headline, signals, suggested_action, occurred_at, created_at, import_id) VALUES {} \
                 ON CONFLICT (workspace_id, customer_id, dedupe_key) DO NOTHING RETURNING id",
                value_rows(1, chunk.len(), 14)
            );
            let sql = self.dialect().positional(sql);
            let mut q = sqlx::query(&sql);
            let ids: Vec<String> = chunk.iter().map(|_| AlertId::new().to_string()).collect();
            for ((cid, a, signals, _, import), id) in chunk.iter().zip(&ids) {
                q = q
                    .bind(id.clone())
                    .bind(ws_s.clone())
                    .bind(cid.clone())
                    .bind(a.kind.as_str())
                    .bind(a.dedupe_key.clone())
                    .bind(a.risk_level.as_str())
                    .bind(a.score)
                    .bind(a.delta)
                    .bind(a.headline.clone())
                    .bind(signals.clone())
                    .bind(a.suggested_action.clone())
                    .bind(ms(a.occurred_at))
                    .bind(now_ms)
                    .bind(import.clone());
            }
            let new_ids: HashSet<String> = q
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get::<String, _>("id"))
                .collect::<Result<_, _>>()?;
            for ((_, a, _, news, _), id) in chunk.iter().zip(&ids) {
                if new_ids.contains(id) {
                    inserted.add(a.kind, *news);
                }
            }
            // Each new alert's outbox rows, in this same transaction: news
            // only (history is summarised once its import settles).
            let fresh: Vec<crate::channels::NewAlert<'_>> = chunk
                .iter()
                .zip(ids)
                .filter(|((_, _, _, news, _), id)| *news && new_ids.contains(id))
                .map(|((cid, a, _, _, _), id)| crate::channels::NewAlert {
                    id,
                    customer_id: cid,
                    draft: a,
                })
                .collect();
            crate::channels::route_alerts(self, &mut tx, ws, &fresh, now).await?;
            crate::salesforce_outbox::queue_actions(self, &mut tx, ws, &fresh, now).await?;
        }
        // The rollups with new events folded in: never replaced by one that
        // folded fewer (a claim whose lease ran out, finishing late).
        let mut blobs = Vec::new();
        for r in results {
            if let Some((rollup, through)) = &r.folded {
                blobs.push((r.customer_id.to_string(), encode_rollup(rollup)?, *through));
            }
        }
        for chunk in blobs.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO rollup_blobs (customer_id, workspace_id, data, {folded}) VALUES {} \
                 ON CONFLICT (customer_id) DO UPDATE SET data = excluded.data, {folded} = excluded.{folded} \
                 WHERE rollup_blobs.workspace_id = excluded.workspace_id AND rollup_blobs.{folded} <= excluded.{folded}",
                value_rows(1, chunk.len(), 4),
                folded = folded_column(self.dialect())
            );
            let sql = self.dialect().positional(sql);
            let mut q = sqlx::query(&sql);
            for (cid, data, through) in chunk {
                q = q.bind(cid.clone()).bind(ws_s.clone()).bind(data.clone()).bind(*through);
            }
            q.execute(&mut *tx).await?;
        }
        if !locked_first {
            self.lock_rollup_rows(&mut tx, ws, &ids).await?;
        }
        // SQLite rewrites a row's entries in the customers' sort indexes
        // (six of them) whenever one of their columns is set, changed or
        // not: only the customers whose score, risk or delta moved are
        // written with them, every customer's `scored_at` after. PostgreSQL
        // writes a new version of the row for each UPDATE, with new entries
        // in every one of its 14 indexes unless no indexed column changed
        // and the page has room (a HOT update): one UPDATE a customer, with
        // its `scored_at`, which an unchanged score leaves HOT.
        let stamped_with_score = self.dialect() == Dialect::Postgres;
        for chunk in scored.chunks(CHUNK) {
            let scored_at = stamped_with_score.then_some(now_ms);
            update_scores(&mut tx, self.dialect(), &ws_s, chunk, scored_at).await?;
        }
        // Every customer of the batch, scored or not, was rescored now.
        let stamped: Vec<&String> = if stamped_with_score {
            unscored.iter().collect()
        } else {
            scored.iter().map(|s| &s.0).chain(&unscored).collect()
        };
        for chunk in stamped.chunks(IN_CHUNK) {
            let sql = format!(
                "UPDATE customers SET scored_at = $1 WHERE {} = $2 AND id IN ({})",
                self.dialect().unindexed("workspace_id"),
                params(3, chunk.len())
            );
            let sql = self.dialect().positional(sql);
            let mut q = sqlx::query(&sql).bind(now_ms).bind(ws_s.clone());
            for cid in chunk {
                q = q.bind((*cid).clone());
            }
            q.execute(&mut *tx).await?;
        }
        let scored_ids: Vec<String> = scored.iter().map(|s| s.0.clone()).collect();
        crate::salesforce_outbox::queue_score_pushes(
            self,
            &mut tx,
            ws,
            &scored_ids,
            crate::salesforce_outbox::PushesFor::Customers,
            now,
        )
        .await?;
        // Marked again if its version moved since the claim (new data came
        // while it was leased), and queued again as of the claim: claims
        // take the longest waiting first, and a customer whose data keeps
        // coming would otherwise keep its first mark's time and be claimed
        // before every customer marked since, pass after pass, while those
        // waited (with 250 customers a slice, 500 busy ones starved the
        // rest for as long as ingest lasted). The lease given back only if
        // this claim still holds it: a later claim's lease (this one ran
        // out) keeps ingest moving the version for that claim
        // ([`crate::event_marks::already_marked`]).
        for chunk in results.chunks(CHUNK) {
            let sql = format!(
                "UPDATE rollups SET dirty = CASE WHEN rollups.version = v.column2 THEN 0 ELSE 1 END, \
                 dirty_at = CASE WHEN rollups.version = v.column2 THEN rollups.dirty_at ELSE v.column4 - {LEASE_MS} END, \
                 lease_until = CASE WHEN rollups.lease_until = v.column4 THEN NULL ELSE rollups.lease_until END, \
                 dirty_import = CASE WHEN rollups.version = v.column2 THEN NULL ELSE rollups.dirty_import END \
                 FROM (VALUES {}) AS v WHERE rollups.workspace_id = v.column3 AND rollups.customer_id = v.column1",
                value_rows(1, chunk.len(), 4)
            );
            let sql = self.dialect().positional(sql);
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(r.customer_id.to_string())
                    .bind(r.version)
                    .bind(ws_s.clone())
                    .bind(r.lease_until);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        match self.dialect() {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }

    async fn upsert_customers(
        &self,
        ws: WorkspaceId,
        rows: &[CustomerInput],
        now: DateTime<Utc>,
    ) -> Result<Vec<UpsertOutcome>> {
        retry_conflicts(|| self.upsert_customers_once(ws, rows, now)).await
    }

    async fn ingest_events(
        &self,
        ws: WorkspaceId,
        events: &[Event],
        mode: IngestMode,
        now: DateTime<Utc>,
    ) -> Result<Vec<IngestOutcome>> {
        let lane = &self.ingest;
        let queue = lane
            .queue
            .get_or_try_init(|| async {
                Ok::<_, Error>(match self.dialect() {
                    Dialect::Sqlite => {
                        let path = crate::db::sqlite_path(&lane.url)
                            .ok_or_else(|| Error::Invalid("SQLite URL needs a file path".into()))?;
                        crate::ingest_queue::IngestQueue::start(
                            crate::sqlite_ingest::SqliteWriter::new(path, self.pools.write.clone()),
                            1,
                            crate::ingest_queue::GROUP_EVENTS,
                        )
                    }
                    Dialect::Postgres => crate::ingest_queue::IngestQueue::start(
                        crate::postgres_ingest::PostgresWriter::connect_lazy(&lane.url)?,
                        crate::postgres_ingest::LANES,
                        crate::postgres_ingest::GROUP_EVENTS,
                    ),
                })
            })
            .await?;
        queue.ingest(ws, events, mode, now).await
    }

    fn ingest_active(&self, quiet: std::time::Duration) -> bool {
        self.ingest.queue.get().is_some_and(|q| q.is_active(quiet))
    }

    fn ingest_waiting(&self) -> usize {
        self.ingest.queue.get().map_or(0, |q| q.waiting())
    }

    async fn claim_rescore(&self, ws: WorkspaceId, limit: usize, now: DateTime<Utc>) -> Result<Vec<RescoreInput>> {
        retry_conflicts(|| self.claim_rescore_once(ws, limit, now)).await
    }

    async fn release_rescore(&self, ws: WorkspaceId, claimed_at: DateTime<Utc>) -> Result<u64> {
        // A claim at `claimed_at` set `lease_until` to this exact value; the
        // rows that still hold it are that claim's (a later claim of the same
        // row, after the lease ran out, set another value), or another
        // replica's that claimed in the same millisecond. The version moves,
        // so such a claim still in flight does not clear its rows' marks
        // when it records: with the lease gone, ingest no longer moves the
        // version for it (`already_marked`). Version 0 (no data mark yet)
        // stays: ingest marks such rows whatever their lease, and the
        // version would say live data came.
        let done = sqlx::query(
            "UPDATE rollups SET lease_until = NULL, version = CASE WHEN version > 0 THEN version + 1 ELSE version END \
             WHERE workspace_id = $1 AND lease_until = $2",
        )
        .bind(ws.to_string())
        .bind(ms(claimed_at) + LEASE_MS)
        .execute(&self.pools.write)
        .await?;
        Ok(done.rows_affected())
    }

    async fn record_scores_tallied(
        &self,
        ws: WorkspaceId,
        results: &[RescoreResult],
        now: DateTime<Utc>,
    ) -> Result<crate::ops::RecordedAlerts> {
        retry_conflicts(|| self.record_scores_once(ws, results, now)).await
    }

    async fn scorecard(&self, ws: WorkspaceId) -> Result<Scorecard> {
        let row = sqlx::query("SELECT scorecard FROM workspaces WHERE id = $1")
            .bind(ws.to_string())
            .fetch_optional(&self.pools.read)
            .await?
            .ok_or(Error::NotFound)?;
        match row.try_get::<Option<String>, _>("scorecard")? {
            None => Ok(Scorecard::default()),
            Some(json) => serde_json::from_str(&json).map_err(|e| corrupt("scorecard", e)),
        }
    }

    async fn set_scorecard(&self, ws: WorkspaceId, card: &Scorecard, now: DateTime<Utc>) -> Result<()> {
        let json = serde_json::to_string(card).map_err(|e| corrupt("scorecard", e))?;
        let old = self.scorecard(ws).await?;
        let mut tx = self.pools.write.begin().await?;
        sqlx::query("UPDATE workspaces SET scorecard = $2 WHERE id = $1")
            .bind(ws.to_string())
            .bind(json)
            .execute(&mut *tx)
            .await?;
        // Rescoring every customer for a new scorecard is not news: an
        // import, complete at once, summarised when it settles (customers
        // with live data waiting stay live). Before anyone was scored
        // (a new workspace's first scorecard) there is nothing to summarise.
        let scored =
            sqlx::query("SELECT 1 AS one FROM customers WHERE workspace_id = $1 AND scored_at IS NOT NULL LIMIT 1")
                .bind(ws.to_string())
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
        if !scored {
            sqlx::query(&format!("UPDATE rollups SET {MARK_DIRTY} WHERE workspace_id = $1"))
                .bind(ws.to_string())
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(());
        }
        let label = format!("Scorecard change ({})", old.describe_change(card));
        let import = crate::imports::create_import(
            &mut tx,
            ws,
            perly_domain::imports::ImportSource::Scorecard,
            &label,
            "closed",
            now,
        )
        .await?;
        sqlx::query(&format!(
            "UPDATE rollups SET {MARK_DIRTY}, dirty_import = CASE WHEN rollups.dirty = 1 AND rollups.dirty_import IS NULL \
             THEN NULL ELSE $3 END, last_import = $3 WHERE workspace_id = $1"
        ))
        .bind(ws.to_string())
        .bind(ms(now))
        .bind(import.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn mark_stale(&self, ws: WorkspaceId, before: DateTime<Utc>, now: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE rollups SET dirty = 1, dirty_at = $2 WHERE workspace_id = $1 AND dirty = 0 AND customer_id IN \
             (SELECT id FROM customers WHERE workspace_id = $1 AND archived_at IS NULL AND (scored_at IS NULL OR scored_at < $3))",
        )
        .bind(ws.to_string())
        .bind(ms(now))
        .bind(ms(before))
        .execute(&self.pools.write)
        .await?;
        Ok(done.rows_affected())
    }

    async fn workspaces_to_rescore(&self) -> Result<Vec<WorkspaceId>> {
        self.mark_new_events().await?;
        sqlx::query("SELECT DISTINCT workspace_id FROM rollups WHERE dirty = 1")
            .fetch_all(&self.pools.read)
            .await?
            .iter()
            .map(|r| parse("workspace id", &r.try_get::<String, _>("workspace_id")?))
            .collect()
    }

    async fn pending_rescore(&self, ws: WorkspaceId) -> Result<u64> {
        self.mark_new_events().await?;
        let row = sqlx::query("SELECT COUNT(*) AS n FROM rollups WHERE workspace_id = $1 AND dirty = 1")
            .bind(ws.to_string())
            .fetch_one(&self.pools.read)
            .await?;
        Ok(row.try_get::<i64, _>("n")?.max(0) as u64)
    }

    async fn rescore_caught_up(&self, ws: WorkspaceId) -> Result<bool> {
        self.mark_new_events().await?;
        let marked = sqlx::query("SELECT 1 AS one FROM rollups WHERE workspace_id = $1 AND dirty = 1 LIMIT 1")
            .bind(ws.to_string())
            .fetch_optional(&self.pools.read)
            .await?;
        Ok(marked.is_none())
    }

    async fn list_customers(&self, ws: WorkspaceId, query: &CustomerQuery) -> Result<Page<CustomerSummary>> {
        let limit = query.limit.clamp(1, 500);
        let sort = query.sort;
        let (expr, desc) = sort_expression(sort);
        let (cmp, dir) = if desc { ("<", "DESC") } else { (">", "ASC") };
        let searching = query.search.as_deref().is_some_and(|q| !q.trim().is_empty());
        let hint = if searching { self.dialect().scan_hint() } else { "" };
        let mut sql = format!(
            "SELECT {CUSTOMER_COLUMNS} FROM customers c{hint} WHERE c.workspace_id = $1 AND c.archived_at IS NULL"
        );
        let mut args: Vec<SortValue> = Vec::new();
        let mut filter = |sql: &mut String, clause: &str, value: SortValue| {
            args.push(value);
            sql.push_str(&clause.replace("$?", &format!("${}", args.len() + 1)));
        };
        if let Some(r) = query.risk {
            filter(
                &mut sql,
                " AND c.risk_level = $?",
                SortValue::Text(r.as_str().to_owned()),
            );
        }
        if let Some(o) = &query.owner {
            filter(&mut sql, " AND c.owner_email = $?", SortValue::Text(o.clone()));
        }
        if let Some(p) = &query.plan {
            filter(&mut sql, " AND c.plan = $?", SortValue::Text(p.clone()));
        }
        if let Some(q) = query.search.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            let escaped = q.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            filter(
                &mut sql,
                " AND LOWER(c.name) LIKE LOWER($?) ESCAPE '\\'",
                SortValue::Text(format!("%{escaped}%")),
            );
        }
        if let Some((value, id)) = query.cursor.as_deref().map(decode_cursor).transpose()? {
            let value = SortValue::from_cursor(sort, &value)?;
            filter(&mut sql, &format!(" AND ({expr}, c.id) {cmp} ($?, "), value);
            filter(&mut sql, "$?)", SortValue::Text(id));
        }
        sql.push_str(&format!(" ORDER BY {expr} {dir}, c.id {dir} LIMIT ${}", args.len() + 2));
        let sql = self.dialect().positional(sql);
        let mut q = sqlx::query(&sql).bind(ws.to_string());
        for a in args {
            q = match a {
                SortValue::Int(v) => q.bind(v),
                SortValue::Real(v) => q.bind(v),
                SortValue::Text(v) => q.bind(v),
            };
        }
        let rows = q.bind((limit + 1) as i64).fetch_all(&self.pools.read).await?;
        let mut items = rows.iter().map(customer_from).collect::<Result<Vec<_>>>()?;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items
                .last()
                .map(|c| encode_cursor(&SortValue::of(sort, c).to_json(), &c.id.to_string()))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    async fn get_customer(
        &self,
        ws: WorkspaceId,
        external_id: &str,
        history_since: DateTime<Utc>,
    ) -> Result<Option<CustomerDetail>> {
        let sql = format!(
            "SELECT {CUSTOMER_COLUMNS}, s.explanation FROM customers c \
             LEFT JOIN customer_scores s ON s.customer_id = c.id AND s.workspace_id = $1 \
             WHERE c.workspace_id = $1 AND c.external_id = $2 AND c.archived_at IS NULL"
        );
        let Some(row) = sqlx::query(&sql)
            .bind(ws.to_string())
            .bind(external_id.to_owned())
            .fetch_optional(&self.pools.read)
            .await?
        else {
            return Ok(None);
        };
        let summary = customer_from(&row)?;
        let explanation: Option<Score> = row
            .try_get::<Option<String>, _>("explanation")?
            .map(|s| serde_json::from_str(&s).map_err(|e| corrupt("explanation", e)))
            .transpose()?;
        let history = sqlx::query(
            "SELECT at, score, risk_level FROM score_history WHERE workspace_id = $1 AND customer_id = $2 AND at >= $3 ORDER BY at",
        )
        .bind(ws.to_string())
        .bind(summary.id.to_string())
        .bind(ms(history_since))
        .fetch_all(&self.pools.read)
        .await?
        .iter()
        .map(|r| -> Result<HistoryPoint> {
            Ok(HistoryPoint {
                at: time(r.try_get("at")?),
                score: r.try_get("score")?,
                risk_level: parse("risk level", &r.try_get::<String, _>("risk_level")?)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        let recent_alerts = self
            .list_alerts(
                ws,
                &AlertQuery {
                    customer_external_id: Some(external_id.to_owned()),
                    limit: 20,
                    ..Default::default()
                },
            )
            .await?
            .items;
        Ok(Some(CustomerDetail {
            summary,
            coverage: explanation.as_ref().map(|e| e.coverage.clone()),
            explanation,
            history,
            recent_alerts,
        }))
    }

    async fn list_alerts(&self, ws: WorkspaceId, query: &AlertQuery) -> Result<Page<AlertRecord>> {
        let limit = query.limit.clamp(1, 500);
        let mut sql = format!(
            "SELECT {ALERT_COLUMNS} FROM alerts a JOIN customers c ON c.id = a.customer_id \
             WHERE a.workspace_id = $1 AND c.workspace_id = $1"
        );
        let mut n = 1;
        if query.kind.is_some() {
            n += 1;
            sql.push_str(&format!(" AND a.kind = ${n}"));
        }
        // Filter by the customer's id, so the (workspace, customer, time) index is used.
        let customer = match &query.customer_external_id {
            Some(external) => match self.customer_id(ws, external).await? {
                Some(id) => Some(id),
                None => {
                    return Ok(Page {
                        items: Vec::new(),
                        next_cursor: None,
                    })
                }
            },
            None => None,
        };
        if customer.is_some() {
            n += 1;
            sql.push_str(&format!(" AND a.customer_id = ${n}"));
        }
        if query.risk.is_some() {
            n += 1;
            sql.push_str(&format!(" AND a.risk_level = ${n}"));
        }
        if query.since.is_some() {
            n += 1;
            sql.push_str(&format!(" AND a.occurred_at >= ${n}"));
        }
        let cursor = query.cursor.as_deref().map(decode_cursor).transpose()?;
        if cursor.is_some() {
            sql.push_str(&format!(" AND (a.occurred_at, a.id) < (${}, ${})", n + 1, n + 2));
            n += 2;
        }
        sql.push_str(&format!(" ORDER BY a.occurred_at DESC, a.id DESC LIMIT ${}", n + 1));
        let sql = self.dialect().positional(sql);
        let mut q = sqlx::query(&sql).bind(ws.to_string());
        if let Some(k) = query.kind {
            q = q.bind(k.as_str());
        }
        if let Some(c) = customer {
            q = q.bind(c.to_string());
        }
        if let Some(r) = query.risk {
            q = q.bind(r.as_str());
        }
        if let Some(since) = query.since {
            q = q.bind(ms(since));
        }
        if let Some((value, id)) = &cursor {
            let at = value
                .as_i64()
                .ok_or_else(|| Error::Invalid("cursor is not one this API returned".into()))?;
            q = q.bind(at).bind(id.clone());
        }
        let rows = q.bind((limit + 1) as i64).fetch_all(&self.pools.read).await?;
        let mut items = rows.iter().map(alert_from).collect::<Result<Vec<_>>>()?;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items
                .last()
                .map(|a| encode_cursor(&serde_json::json!(ms(a.occurred_at)), &a.id.to_string()))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    async fn recent_events(&self, ws: WorkspaceId, external_id: &str, limit: usize) -> Result<Vec<EventRecord>> {
        let Some(customer) = self.customer_id(ws, external_id).await? else {
            return Ok(Vec::new());
        };
        sqlx::query(
            "SELECT event_id, type, occurred_at, payload FROM events \
             WHERE workspace_id = $1 AND customer_id = $2 ORDER BY occurred_at DESC LIMIT $3",
        )
        .bind(ws.to_string())
        .bind(customer.to_string())
        .bind(limit.clamp(1, 500) as i64)
        .fetch_all(&self.pools.read)
        .await?
        .iter()
        .map(|r| {
            Ok(EventRecord {
                id: r.try_get("event_id")?,
                r#type: r.try_get("type")?,
                occurred_at: time(r.try_get("occurred_at")?),
                payload: serde_json::from_str(&r.try_get::<String, _>("payload")?).map_err(|e| corrupt("event", e))?,
            })
        })
        .collect()
    }

    async fn score_buckets(&self, ws: WorkspaceId) -> Result<Vec<ScoreBucket>> {
        sqlx::query(
            "SELECT score, risk_level, COUNT(*) AS n FROM customers WHERE workspace_id = $1 AND archived_at IS NULL \
             AND score IS NOT NULL GROUP BY score, risk_level",
        )
        .bind(ws.to_string())
        .fetch_all(&self.pools.read)
        .await?
        .iter()
        .map(|r| {
            Ok(ScoreBucket {
                score: r.try_get("score")?,
                risk_level: r
                    .try_get::<Option<String>, _>("risk_level")?
                    .map(|s| parse("risk level", &s))
                    .transpose()?,
                customers: r.try_get("n")?,
            })
        })
        .collect()
    }

    async fn customer_facets(&self, ws: WorkspaceId) -> Result<(Vec<String>, Vec<String>)> {
        let column = |sql: &'static str| {
            let ws = ws.to_string();
            async move {
                sqlx::query(sql)
                    .bind(ws)
                    .fetch_all(&self.pools.read)
                    .await?
                    .iter()
                    .map(|r| r.try_get::<String, _>("v").map_err(Error::from))
                    .collect::<Result<Vec<String>>>()
            }
        };
        let owners = column(
            "SELECT DISTINCT owner_email AS v FROM customers WHERE workspace_id = $1 AND owner_email IS NOT NULL ORDER BY v LIMIT 200",
        )
        .await?;
        let plans =
            column("SELECT DISTINCT plan AS v FROM customers WHERE workspace_id = $1 AND plan IS NOT NULL ORDER BY v LIMIT 200")
                .await?;
        Ok((owners, plans))
    }

    async fn create_channel(&self, ws: WorkspaceId, new: &NewChannel, now: DateTime<Utc>) -> Result<Channel> {
        self.create_channel_once(ws, new, now).await
    }

    async fn list_channels(&self, ws: WorkspaceId) -> Result<Vec<Channel>> {
        self.list_channels_once(ws).await
    }

    async fn get_channel(&self, ws: WorkspaceId, id: ChannelId) -> Result<Option<Channel>> {
        self.get_channel_once(ws, id).await
    }

    async fn update_channel(
        &self,
        ws: WorkspaceId,
        id: ChannelId,
        update: &ChannelUpdate,
        now: DateTime<Utc>,
    ) -> Result<Channel> {
        self.update_channel_once(ws, id, update, now).await
    }

    async fn delete_channel(&self, ws: WorkspaceId, id: ChannelId) -> Result<()> {
        retry_conflicts(|| self.delete_channel_once(ws, id)).await
    }

    async fn enqueue_test_message(&self, ws: WorkspaceId, id: ChannelId, now: DateTime<Utc>) -> Result<()> {
        self.enqueue_test_message_once(ws, id, now).await
    }

    async fn delivery_log(&self, ws: WorkspaceId, id: ChannelId, limit: usize) -> Result<Vec<DeliveryAttempt>> {
        self.delivery_log_once(ws, id, limit).await
    }

    async fn create_oauth_state(
        &self,
        ws: WorkspaceId,
        user: UserId,
        provider: &str,
        data: &serde_json::Value,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<String> {
        self.create_oauth_state_once(ws, user, provider, data, now, ttl).await
    }

    async fn take_oauth_state(
        &self,
        ws: WorkspaceId,
        user: UserId,
        provider: &str,
        state: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<OAuthState>> {
        self.take_oauth_state_once(ws, user, provider, state, now).await
    }

    async fn save_salesforce_connection(
        &self,
        ws: WorkspaceId,
        new: &NewSalesforceConnection,
        now: DateTime<Utc>,
    ) -> Result<SalesforceConnection> {
        retry_conflicts(|| self.save_salesforce_connection_once(ws, new, now)).await
    }

    async fn salesforce_connection(&self, ws: WorkspaceId) -> Result<Option<SalesforceConnection>> {
        self.salesforce_connection_once(ws).await
    }

    async fn salesforce_refresh_token(&self, ws: WorkspaceId) -> Result<Option<String>> {
        self.salesforce_refresh_token_once(ws).await
    }

    async fn delete_salesforce_connection(&self, ws: WorkspaceId, now: DateTime<Utc>) -> Result<()> {
        retry_conflicts(|| self.delete_salesforce_connection_once(ws, now)).await
    }

    async fn mark_salesforce_broken(&self, ws: WorkspaceId, reason: &str, now: DateTime<Utc>) -> Result<()> {
        self.mark_salesforce_broken_once(ws, reason, now).await
    }

    async fn update_salesforce_settings(
        &self,
        ws: WorkspaceId,
        settings: &SyncSettings,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.update_salesforce_settings_once(ws, settings, now).await
    }

    async fn record_salesforce_checks(
        &self,
        ws: WorkspaceId,
        permissions: Option<&serde_json::Value>,
        fields: Option<&serde_json::Value>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.record_salesforce_checks_once(ws, permissions, fields, now).await
    }

    async fn record_salesforce_usage(
        &self,
        ws: WorkspaceId,
        usage: Option<(u64, u64)>,
        paused_until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.record_salesforce_usage_once(ws, usage, paused_until, now).await
    }

    async fn request_salesforce_sync(&self, ws: WorkspaceId, now: DateTime<Utc>) -> Result<bool> {
        self.request_salesforce_sync_once(ws, now).await
    }

    async fn claim_salesforce_sync(&self, now: DateTime<Utc>, lease: chrono::Duration) -> Result<Option<SyncClaim>> {
        retry_conflicts(|| self.claim_salesforce_sync_once(now, lease)).await
    }

    async fn save_salesforce_sync(
        &self,
        ws: WorkspaceId,
        sync: &SalesforceSync,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<()> {
        retry_conflicts(|| self.save_salesforce_sync_once(ws, sync, lease, now)).await
    }

    async fn advance_salesforce_watermark(&self, ws: WorkspaceId, object: &str, until: DateTime<Utc>) -> Result<()> {
        retry_conflicts(|| self.advance_salesforce_watermark_once(ws, object, until)).await
    }

    async fn finish_salesforce_sync(
        &self,
        ws: WorkspaceId,
        sync: &SalesforceSync,
        next_sync_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        retry_conflicts(|| self.finish_salesforce_sync_once(ws, sync, next_sync_at, now)).await
    }

    async fn postpone_salesforce_sync(
        &self,
        ws: WorkspaceId,
        sync: &SalesforceSync,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        retry_conflicts(|| self.postpone_salesforce_sync_once(ws, sync, retry_at, now)).await
    }

    async fn salesforce_syncs(&self, ws: WorkspaceId, limit: usize) -> Result<Vec<SalesforceSync>> {
        self.salesforce_syncs_once(ws, limit).await
    }

    async fn apply_salesforce_accounts(
        &self,
        ws: WorkspaceId,
        rows: &[PulledAccount],
        now: DateTime<Utc>,
    ) -> Result<AppliedAccounts> {
        retry_conflicts(|| self.apply_salesforce_accounts_once(ws, rows, now)).await
    }

    async fn apply_crm_records(&self, ws: WorkspaceId, rows: &[CrmRecord]) -> Result<u64> {
        retry_conflicts(|| self.apply_crm_records_once(ws, rows)).await
    }

    async fn crm_records_for(&self, ws: WorkspaceId, external_id: &str) -> Result<Vec<CrmRecord>> {
        self.crm_records_for_once(ws, external_id).await
    }

    async fn claim_salesforce_pushes(
        &self,
        limit: usize,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Option<ClaimedPushes>> {
        retry_conflicts(|| self.claim_salesforce_pushes_once(limit, now, lease)).await
    }

    async fn ack_salesforce_pushes(&self, ws: WorkspaceId, acks: &[PushAck], now: DateTime<Utc>) -> Result<()> {
        retry_conflicts(|| self.ack_salesforce_pushes_once(ws, acks, now)).await
    }

    async fn salesforce_push_status(&self, ws: WorkspaceId) -> Result<PushStatus> {
        self.salesforce_push_status_once(ws).await
    }

    async fn create_salesforce_rule(
        &self,
        ws: WorkspaceId,
        rule: &AutomationRule,
        now: DateTime<Utc>,
    ) -> Result<SalesforceRule> {
        self.create_salesforce_rule_once(ws, rule, now).await
    }

    async fn salesforce_rule(&self, ws: WorkspaceId, id: RuleId) -> Result<Option<SalesforceRule>> {
        self.salesforce_rule_once(ws, id).await
    }

    async fn salesforce_rules(&self, ws: WorkspaceId) -> Result<Vec<SalesforceRule>> {
        self.salesforce_rules_once(ws).await
    }

    async fn update_salesforce_rule(
        &self,
        ws: WorkspaceId,
        id: RuleId,
        rule: &AutomationRule,
        now: DateTime<Utc>,
    ) -> Result<SalesforceRule> {
        self.update_salesforce_rule_once(ws, id, rule, now).await
    }

    async fn delete_salesforce_rule(&self, ws: WorkspaceId, id: RuleId) -> Result<()> {
        self.delete_salesforce_rule_once(ws, id).await
    }

    async fn claim_salesforce_actions(
        &self,
        limit: usize,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Option<ClaimedActions>> {
        retry_conflicts(|| self.claim_salesforce_actions_once(limit, now, lease)).await
    }

    async fn ack_salesforce_action(
        &self,
        ws: WorkspaceId,
        id: ActionId,
        outcome: &ActionOutcome,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.ack_salesforce_action_once(ws, id, outcome, now).await
    }

    async fn salesforce_actions(&self, ws: WorkspaceId, limit: usize) -> Result<Vec<SalesforceAction>> {
        self.salesforce_actions_once(ws, limit).await
    }

    async fn apply_salesforce_activities(
        &self,
        ws: WorkspaceId,
        rows: &[PulledActivity],
        now: DateTime<Utc>,
    ) -> Result<u64> {
        retry_conflicts(|| self.apply_salesforce_activities_once(ws, rows, now)).await
    }

    async fn apply_salesforce_events(
        &self,
        ws: WorkspaceId,
        rows: &[(String, Event)],
        now: DateTime<Utc>,
    ) -> Result<u64> {
        retry_conflicts(|| self.apply_salesforce_events_once(ws, rows, now)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The claim's reads find the claimed customers by their keys, never by
    /// walking the workspace (what SQLite, without table statistics, picked
    /// for the rows when the workspace columns were indexable: 100,000 row
    /// visits per chunk of 500 at 100,000 customers).
    #[tokio::test]
    async fn claim_reads_look_customers_up_by_key_on_sqlite() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}/plan.db", dir.path().display());
        let pools = crate::db::connect(&url).await.expect("migrate");
        pools.write.close().await;
        pools.read.close().await;
        let conn = rusqlite::Connection::open(dir.path().join("plan.db")).expect("open");
        for (sql, bound) in [
            (claim_rows_sql(Dialect::Sqlite, IN_CHUNK), IN_CHUNK + 3),
            (claim_events_sql(Dialect::Sqlite, IN_CHUNK), IN_CHUNK + 2),
        ] {
            let mut plan = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).expect("explain");
            let steps: Vec<String> = plan
                .query_map(rusqlite::params_from_iter(vec!["x"; bound]), |r| r.get(3))
                .expect("plan")
                .collect::<Result<_, _>>()
                .expect("steps");
            assert!(
                steps
                    .iter()
                    .all(|s| !s.contains("(workspace_id=?)") && !s.starts_with("SCAN")),
                "{sql}\n{steps:#?}"
            );
        }
    }

    #[test]
    fn placeholders_number_rows_in_order() {
        assert_eq!(value_rows(1, 2, 2), "($1, $2), ($3, $4)");
        assert_eq!(params(3, 2), "$3, $4");
    }

    #[test]
    fn rollups_round_trip_and_reject_unknown_formats() {
        let r = Rollup {
            horizon: 42,
            ..Default::default()
        };
        let data = encode_rollup(&r).expect("encode");
        assert_eq!(decode_rollup(&data), Some(r));
        assert_eq!(decode_rollup(&[99, 1, 2]), None);
    }

    /// Every list full, every id and name at its longest: what one customer's
    /// stored rollup can cost at most.
    #[test]
    fn a_rollup_with_every_list_full_stays_under_450_kb() {
        use perly_domain::event::{Event, EventKind, TicketPriority, MAX_ID_LEN};
        use perly_domain::rollup::LIMITS;
        let now = Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).single().expect("time");
        let long = |prefix: &str, i: usize| format!("{prefix}{i}-{}", "x".repeat(MAX_ID_LEN))[..MAX_ID_LEN].to_owned();
        let mut r = Rollup::default();
        let mut n = 0;
        let mut apply = |r: &mut Rollup, days_ago: i64, kind: EventKind| {
            n += 1;
            r.apply(&Event {
                id: long(&format!("e{n}-"), 0),
                customer_id: "c".into(),
                occurred_at: now - chrono::Duration::minutes(days_ago * 1440 + (n % 1440) as i64),
                kind,
            });
        };
        for i in 0..LIMITS.users + 100 {
            for days_ago in [120, 0] {
                apply(&mut r, days_ago, EventKind::UserActive { user_id: long("u", i) });
            }
        }
        for i in 0..LIMITS.features + 100 {
            for days_ago in [120, 0] {
                let kind = EventKind::FeatureUsed {
                    feature: long("f", i),
                    user_id: None,
                };
                apply(&mut r, days_ago, kind);
            }
        }
        for i in 0..LIMITS.seats + 100 {
            apply(
                &mut r,
                1,
                EventKind::SeatsChanged {
                    seats_used: 10_000 + i as u32,
                    seats_purchased: Some(100_000),
                },
            );
        }
        for i in 0..LIMITS.tickets + 100 {
            let kind = EventKind::TicketOpened {
                ticket_id: long("t", i),
                priority: TicketPriority::Urgent,
            };
            apply(&mut r, 1, kind);
        }
        for i in 0..LIMITS.payments + 100 {
            let kind = EventKind::BillingRetryFailed {
                amount: 1234.5 + i as f64,
                attempt: 3,
                next_retry_at: None,
            };
            apply(&mut r, 1, kind);
        }
        for i in 0..LIMITS.usage + 100 {
            apply(
                &mut r,
                1,
                EventKind::UsageMeasured {
                    metric: long("m", i),
                    value: 1.5,
                    limit: Some(2.5),
                },
            );
        }
        for _ in 0..LIMITS.nps + 100 {
            apply(&mut r, 1, EventKind::NpsResponse { score: 7 });
        }
        for i in 0..LIMITS.opportunities + 100 {
            let kind = serde_json::from_value(serde_json::json!({
                "type": "crm_opportunity", "opportunity_id": long("o", i), "status": "open",
                "category": "renewal", "amount": 5000.5, "close_date": "2027-01-31",
            }))
            .expect("kind");
            apply(&mut r, 1, kind);
        }
        assert_eq!(r.users.len(), LIMITS.users);
        assert_eq!(r.nps.len(), LIMITS.nps);
        assert_eq!(r.opportunities.len(), LIMITS.opportunities);
        let size = encode_rollup(&r).expect("encode").len();
        assert!(size < 450_000, "{size} bytes");
    }

    #[test]
    fn a_format_2_rollup_is_read_and_trimmed_to_the_limits() {
        use perly_domain::rollup::{NpsPoint, LIMITS};
        let horizon = 20_000 * perly_domain::rollup::DAY_MS;
        let nps = (0..LIMITS.nps as i64 + 50)
            .map(|i| NpsPoint {
                key: i as u64,
                at: horizon - i * 60_000,
                score: 9,
            })
            .rev()
            .collect::<Vec<_>>();
        let unlimited = Rollup {
            horizon,
            nps: nps.clone(),
            ..Default::default()
        };
        let mut data = vec![2];
        data.extend(postcard::to_allocvec(&unlimited).expect("encode"));
        let read = decode_rollup(&data).expect("format 2 is still read");
        assert_eq!(read.nps, nps[50..].to_vec(), "the newest responses are kept");
        assert_eq!(encode_rollup(&read).expect("encode").first(), Some(&ROLLUP_FORMAT));
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = encode_cursor(&serde_json::json!(42), "abc");
        assert_eq!(
            decode_cursor(&c).expect("decodes"),
            (serde_json::json!(42), "abc".to_owned())
        );
        assert!(decode_cursor("!!!").is_err());
    }
}
