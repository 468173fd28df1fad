//! The pull: one sync run, object by object, with Bulk API 2.0 query jobs.
//!
//! For each object in [`perly_store::SYNC_OBJECTS`] order (Accounts first,
//! so everything else finds its customer) a run asks for every record with
//! `SystemModstamp >= watermark − overlap` (the watermark is the newest
//! SystemModstamp seen, Salesforce's own clock, so Perly's clock never
//! matters), creates
//! a `queryAll` job (so deleted records come back with `IsDeleted = true`),
//! waits for it, then reads its CSV pages by `Sforce-Locator`, writing each
//! page to the store and saving the job id and next locator with the run's
//! progress. A run that dies is claimed again and continues from the saved
//! locator (or, if the job is gone, runs the object's job again: writes are
//! upserts guarded by SystemModstamp, so reading a page twice changes
//! nothing). An object's watermark moves only once all its pages are in.
//!
//! Each query asks only for the fields the connected user can read: the
//! object's describe is read first (once per run, see
//! [`crate::field_access`]) and the wanted fields it does not list are left
//! out and noted on the object's progress (`hidden_fields`, with what Perly
//! goes without). A hidden field the object cannot do without (its account
//! lookup, say) fails that object, with the field named, and the run goes
//! on; an object the user cannot read at all is skipped. A field hidden in
//! an earlier run and readable now makes its object read in full once.
//!
//! What each object becomes: Accounts → customers (external id = Account Id
//! or the picked field; `ParentId` → parent; owner e-mail; deleted →
//! archived); Contacts, contact roles and Opportunities → `crm_records`
//! shown on the profile; Tasks and Events → `crm_activity` events, which feed
//! the relationship-recency measure.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use perly_domain::event::{ActivityType, Event, EventKind};
use perly_domain::ids::WorkspaceId;
use perly_domain::pulled_fields::{wanted_fields, HiddenField, BOOKKEEPING};
use perly_domain::salesforce::SyncSettings;
use perly_store::{CrmRecord, ObjectProgress, ObjectState, PulledAccount, PulledActivity, SalesforceSync, Store};
use serde_json::{Map, Value};

use crate::bulk::{JobInfo, JobState, Operation, ResultsPage};
use crate::client::Client;
use crate::error::Error;
use crate::field_access::{refuses_object, Describes};

/// Re-read this much before each watermark: records committed late with an
/// older SystemModstamp are not missed.
pub const OVERLAP: chrono::Duration = chrono::Duration::minutes(5);
/// Rows per results page asked for. Small pages keep the pull's memory
/// flat (two pages are in hand at a time: one written, the next being
/// read and converted) and cost no speed: measured on a 20,000-account
/// org, 1,000 rows a page peaked at 31 MB, 10,000 at 82 MB, 50,000 at
/// 194 MB, all at 14,000–16,000 records/s.
pub const PAGE_ROWS: u32 = 1_000;

/// How often the progress of a running object is saved (and the run's
/// lease renewed): a run that dies reads again at most this much, which
/// changes nothing (writes are upserts). Saving after every page cost two
/// write transactions per 1,000 rows.
pub const SAVE_EVERY: Duration = Duration::from_millis(500);

/// Jobs with fewer records than this are read in pages of
/// [`SMALL_PAGE_ROWS`]: their time goes to the job's fixed costs (creating
/// it, polling), not to the pages, and small pages keep the memory of the
/// many small incremental syncs low. Measured on a 20,000-account org
/// (every job under 50,000 records): 250-row pages peaked at 28 MB, 1,000-row
/// pages at 38 MB.
pub const SMALL_JOB: u64 = 100_000;
/// Rows per results page of a small job.
pub const SMALL_PAGE_ROWS: u32 = 250;

/// Rows per results page for a job of `records` records (`None`: not
/// told, so maybe large).
pub fn page_rows(records: Option<u64>) -> u32 {
    match records {
        Some(n) if n < SMALL_JOB => SMALL_PAGE_ROWS,
        _ => PAGE_ROWS,
    }
}

/// Why a run stopped before the end.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Salesforce(#[from] Error),
    #[error("store: {0}")]
    Store(#[from] perly_store::Error),
    /// The runtime is shutting down under the run.
    #[error("stopped: {0}")]
    Stopped(String),
    /// One object cannot be synced; the run goes on with the others.
    #[error(transparent)]
    Object(#[from] ObjectError),
}

/// Why one object of a run was not pulled, while the others are.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The connected user cannot read the object at all: it is skipped.
    #[error("the connected user cannot read {object}")]
    Unreadable { object: String },
    /// Fields the object cannot be synced without are hidden from the
    /// connected user (field-level security): it is reported failed.
    #[error("{}", essential_hidden_message(object, fields))]
    EssentialHidden { object: String, fields: Vec<HiddenField> },
    /// Salesforce refused the object's query even after a fresh describe.
    #[error("{object} could not be synced: Salesforce refused its query ({error})")]
    Refused { object: String, error: Error },
}

fn essential_hidden_message(object: &str, fields: &[HiddenField]) -> String {
    let names: Vec<String> = fields.iter().map(HiddenField::qualified).collect();
    let effects: Vec<&str> = fields.iter().map(|f| f.effect.as_str()).collect();
    format!(
        "{object} could not be synced: the connected user cannot read {}, which Perly cannot do without ({}). \
         Give the connected user Read on {} (field-level security), then sync again",
        names.join(", "),
        effects.join("; "),
        if names.len() == 1 { "it" } else { "them" },
    )
}

/// What a pull needs besides the client: where to write and the clock.
pub struct Pull<'a> {
    pub store: &'a dyn Store,
    pub client: &'a Client,
    pub ws: WorkspaceId,
    pub settings: &'a SyncSettings,
    pub now: &'a (dyn Fn() -> DateTime<Utc> + Send + Sync),
    /// How long the run's lease lasts; progress saves renew it.
    pub lease: chrono::Duration,
    /// First wait between polls of a Bulk job.
    pub poll: Duration,
    /// Counts the rows pulled.
    pub metrics: &'a crate::metrics::SalesforceMetrics,
}

impl Pull<'_> {
    /// Runs (or continues) `sync` to its end. Progress is saved as it goes;
    /// on error the caller records it and the run stays resumable.
    pub async fn run(&self, sync: &mut SalesforceSync) -> Result<(), PullError> {
        let mut run = RunContext {
            describes: Describes::default(),
            previously_hidden: self.previously_hidden(sync).await?,
        };
        for i in 0..sync.objects.len() {
            if sync.objects[i].state == ObjectState::Done {
                continue;
            }
            // Roles read through their parent: without it, they cannot be read.
            let parent_skipped = parent_of(&sync.objects[i].object)
                .is_some_and(|parent| sync.objects.iter().any(|o| o.object == parent && o.skipped.is_some()));
            if parent_skipped {
                let p = &mut sync.objects[i];
                p.state = ObjectState::Done;
                p.skipped = Some(format!(
                    "skipped: read through {}, which the connected user cannot read",
                    parent_of(&p.object).unwrap_or_default()
                ));
                self.save(sync).await?;
                continue;
            }
            match self.object(sync, i, &mut run).await {
                // The connected user cannot read this object: the rest of
                // the org still syncs; the permission check says what to grant.
                Err(PullError::Object(ObjectError::Unreadable { .. })) => {
                    self.end_object(sync, i, |p| {
                        p.skipped = Some(format!("skipped: the connected user cannot read {}", p.object));
                    })
                    .await?;
                }
                Err(PullError::Salesforce(e)) if refuses_object(&e) => {
                    self.end_object(sync, i, |p| {
                        p.skipped = Some(format!("skipped: the connected user cannot read {} ({e})", p.object));
                    })
                    .await?;
                }
                // A field it cannot do without is hidden: this object fails,
                // the others sync, and its watermark stays where it was.
                Err(PullError::Object(e)) => {
                    self.end_object(sync, i, |p| p.failed = Some(e.to_string())).await?;
                }
                other => other?,
            }
        }
        Ok(())
    }

    /// Per object, the fields the newest earlier run that queried it found
    /// hidden.
    async fn previously_hidden(&self, sync: &SalesforceSync) -> Result<HashMap<String, Vec<String>>, PullError> {
        let runs = self.store.salesforce_syncs(self.ws, 10).await?;
        let mut out = HashMap::new();
        for object in sync.objects.iter().map(|o| o.object.as_str()) {
            let latest = runs.iter().filter(|r| r.id != sync.id).find_map(|r| {
                r.objects
                    .iter()
                    .find(|o| o.object == object && o.state != ObjectState::Pending && o.skipped.is_none())
            });
            if let Some(p) = latest {
                out.insert(
                    object.to_owned(),
                    p.hidden_fields.iter().map(|h| h.field.clone()).collect(),
                );
            }
        }
        Ok(out)
    }

    /// Ends object `i` without pulling it (skipped or failed, as `mark`
    /// says) and saves the run.
    async fn end_object(
        &self,
        sync: &mut SalesforceSync,
        i: usize,
        mark: impl FnOnce(&mut ObjectProgress),
    ) -> Result<(), PullError> {
        let p = &mut sync.objects[i];
        mark(p);
        tracing::warn!(
            workspace_id = %self.ws,
            object = %p.object,
            skipped = p.skipped.as_deref().unwrap_or_default(),
            failed = p.failed.as_deref().unwrap_or_default(),
            "salesforce object not pulled"
        );
        p.state = ObjectState::Done;
        p.job_id = None;
        p.locator = None;
        self.save(sync).await
    }

    async fn save(&self, sync: &SalesforceSync) -> Result<(), PullError> {
        self.store
            .save_salesforce_sync(self.ws, sync, self.lease, (self.now)())
            .await?;
        crate::orgs::record_usage(self.store, self.ws, self.client, (self.now)()).await?;
        Ok(())
    }

    async fn object(&self, sync: &mut SalesforceSync, i: usize, run: &mut RunContext) -> Result<(), PullError> {
        let object = sync.objects[i].object.clone();
        sync.objects[i].state = ObjectState::Running;
        // A saved job is reused if Salesforce still has it; else start over.
        let job = match sync.objects[i].job_id.clone() {
            Some(id) => match self.client.job(&id).await {
                Ok(job) if !matches!(job.state, JobState::Failed | JobState::Aborted) => Some(job.id),
                Ok(_) => None,
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        let job_id = match job {
            Some(id) => id,
            None => {
                let job = self.create_job(sync, i, run).await?;
                let p = &mut sync.objects[i];
                p.job_id = Some(job.id.clone());
                p.locator = None;
                p.rows = 0;
                p.total = None;
                self.save(sync).await?;
                job.id
            }
        };
        let done = self.client.wait_for_job(&job_id, self.poll).await?;
        sync.objects[i].total = done.number_records_processed;
        let rows_per_page = page_rows(done.number_records_processed);
        self.save(sync).await?;
        let locator = sync.objects[i].locator.clone();
        let mut page = self.batch(&object, &job_id, locator.as_deref(), rows_per_page).await?;
        let mut saved = std::time::Instant::now();
        loop {
            // The next page downloads and is converted while this one is written.
            let next = async {
                match page.next_locator.as_deref() {
                    Some(locator) => self
                        .batch(&object, &job_id, Some(locator), rows_per_page)
                        .await
                        .map(Some),
                    None => Ok(None),
                }
            };
            let (written, next) = tokio::join!(self.write(&page.rows), next);
            written?;
            let n = page.n;
            self.metrics.pulled(&object, n);
            let p = &mut sync.objects[i];
            p.rows += n;
            p.until = p.until.max(page.newest);
            p.locator = page.next_locator.clone();
            sync.rows += n;
            if page.next_locator.is_none() {
                break;
            }
            if saved.elapsed() >= SAVE_EVERY {
                self.save(sync).await?;
                saved = std::time::Instant::now();
            }
            match next? {
                Some(next) => page = next,
                None => break,
            }
        }
        if let Some(newest) = sync.objects[i].until {
            self.store
                .advance_salesforce_watermark(self.ws, &object, newest)
                .await?;
        }
        let p = &mut sync.objects[i];
        p.state = ObjectState::Done;
        p.job_id = None;
        p.locator = None;
        self.save(sync).await?;
        // Results are kept by Salesforce for days; free them now.
        if let Err(e) = self.client.delete_job(&job_id).await {
            tracing::debug!(error = %e, "could not delete a finished bulk job");
        }
        Ok(())
    }

    /// Creates object `i`'s query job for the wanted fields its describe
    /// lists (field-level security hides the others, and Salesforce refuses
    /// a query naming any of them). Optional hidden fields are left out and
    /// noted on the object's progress; a hidden essential one fails the
    /// object. Refused with `INVALID_FIELD` anyway (a field hidden since the
    /// describe), the describes are read again and the job tried once more.
    async fn create_job(
        &self,
        sync: &mut SalesforceSync,
        i: usize,
        run: &mut RunContext,
    ) -> Result<JobInfo, PullError> {
        let object = sync.objects[i].object.clone();
        let wanted = wanted_fields(&object, self.settings);
        let mut described_again = false;
        loop {
            let Some(plan) = run.describes.plan(self.client, &object, &wanted).await? else {
                return Err(ObjectError::Unreadable { object }.into());
            };
            sync.objects[i].hidden_fields = plan.hidden.clone();
            let essential = plan.essential_hidden();
            if !essential.is_empty() {
                return Err(ObjectError::EssentialHidden {
                    object,
                    fields: essential,
                }
                .into());
            }
            // A field hidden before and readable now: records that have not
            // changed since would never bring it, so this object is read
            // in full once (rows already kept are simply rewritten).
            let now_readable = run
                .previously_hidden
                .get(&object)
                .is_some_and(|before| before.iter().any(|f| plan.fields.contains(f)));
            if now_readable && sync.objects[i].since.is_some() {
                tracing::info!(workspace_id = %self.ws, object = %object, "salesforce fields became readable: reading the object in full");
                sync.objects[i].since = None;
            }
            let soql = soql_for(&object, &plan.fields, &sync.objects[i]);
            match self.client.create_query_job(&soql, Operation::QueryAll).await {
                Ok(job) => return Ok(job),
                Err(e) if e.code() == Some("INVALID_FIELD") && !described_again => {
                    tracing::info!(workspace_id = %self.ws, object = %object, error = %e, "salesforce fields changed under the query: describing again");
                    run.describes.forget();
                    described_again = true;
                }
                Err(e) if e.code() == Some("INVALID_FIELD") => {
                    return Err(ObjectError::Refused { object, error: e }.into());
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Reads one page and turns it into store rows. The conversion runs on
    /// a blocking-pool thread: it is the pull's own CPU work, and the task
    /// that drives the writes of the page before is not held up by it.
    async fn batch(&self, object: &str, job_id: &str, locator: Option<&str>, rows: u32) -> Result<Batch, PullError> {
        let page = self.client.results_page(job_id, locator, Some(rows)).await?;
        let (object, settings, now) = (object.to_owned(), self.settings.clone(), (self.now)());
        match tokio::task::spawn_blocking(move || Batch::of(&object, &page, &settings, now)).await {
            Ok(batch) => Ok(batch),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(PullError::Stopped(e.to_string())),
        }
    }

    /// Writes one page's rows, each page in its own transaction(s).
    async fn write(&self, rows: &Rows) -> Result<(), PullError> {
        let now = (self.now)();
        match rows {
            Rows::Accounts(rows) => {
                self.store.apply_salesforce_accounts(self.ws, rows, now).await?;
            }
            Rows::Activities(rows) => {
                self.store.apply_salesforce_activities(self.ws, rows, now).await?;
            }
            Rows::Records(rows) => {
                self.store.apply_crm_records(self.ws, rows).await?;
            }
            Rows::Opportunities(rows, events) => {
                self.store.apply_crm_records(self.ws, rows).await?;
                self.store.apply_salesforce_events(self.ws, events, now).await?;
            }
        }
        Ok(())
    }
}

/// What one run keeps between its objects: the describes read so far, and
/// the fields earlier runs found hidden.
struct RunContext {
    describes: Describes,
    previously_hidden: HashMap<String, Vec<String>>,
}

/// One results page, converted: what the store takes, how many rows the
/// page held and its newest SystemModstamp.
struct Batch {
    rows: Rows,
    n: u64,
    newest: Option<DateTime<Utc>>,
    next_locator: Option<String>,
}

/// What each object becomes in the store.
enum Rows {
    Accounts(Vec<PulledAccount>),
    /// Tasks and Events that happened (deleted ones and those still to
    /// come say nothing about recency).
    Activities(Vec<PulledActivity>),
    Records(Vec<CrmRecord>),
    /// Kept for the profile, and each change is an event for the score.
    Opportunities(Vec<CrmRecord>, Vec<(String, Event)>),
}

impl Batch {
    fn of(object: &str, page: &ResultsPage, settings: &SyncSettings, now: DateTime<Utc>) -> Self {
        let cells = Cells::new(page);
        let newest = page.rows.iter().filter_map(|r| cells.modstamp(r)).max();
        let (rows, n) = match object {
            "Account" => {
                let rows = accounts(page, &cells, settings);
                let n = rows.len();
                (Rows::Accounts(rows), n)
            }
            "Task" | "Event" => {
                let rows = activities(object, page, &cells);
                let n = rows.len();
                let happened = rows
                    .into_iter()
                    .filter(|a| !a.deleted && a.row.at <= now)
                    .map(|a| a.row)
                    .collect();
                (Rows::Activities(happened), n)
            }
            "Opportunity" => {
                let rows = records(object, page, &cells);
                let events = rows.iter().filter_map(|r| opportunity_event(r, now)).collect();
                let n = rows.len();
                (Rows::Opportunities(rows, events), n)
            }
            _ => {
                let rows = records(object, page, &cells);
                let n = rows.len();
                (Rows::Records(rows), n)
            }
        };
        Self {
            rows,
            n: n as u64,
            newest,
            next_locator: page.next_locator.clone(),
        }
    }
}

/// An Opportunity's state as a `crm_opportunity` event: one per change
/// (the id carries the SystemModstamp), a deletion included.
/// Returned with its Account Id; the store fills in the customer.
fn opportunity_event(r: &CrmRecord, now: DateTime<Utc>) -> Option<(String, Event)> {
    use perly_domain::event::{OpportunityCategory, OpportunityStatus};
    let account = r.account_sf_id.clone()?;
    let text = |k: &str| r.data.get(k).and_then(|v| v.as_str()).filter(|s| !s.is_empty());
    let flag = |k: &str| {
        r.data
            .get(k)
            .is_some_and(|v| v.as_bool() == Some(true) || v.as_str() == Some("true"))
    };
    let status = match (r.deleted, flag("IsClosed"), flag("IsWon")) {
        (true, _, _) => OpportunityStatus::Deleted,
        (false, true, true) => OpportunityStatus::Won,
        (false, true, false) => OpportunityStatus::Lost,
        (false, false, _) => OpportunityStatus::Open,
    };
    let at = r.modstamp.min(now);
    let kind = EventKind::CrmOpportunity {
        opportunity_id: r.sf_id.clone(),
        status,
        category: OpportunityCategory::from_type(text("Type").unwrap_or_default()),
        amount: r
            .data
            .get("Amount")
            .and_then(|v| v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
            .filter(|a| a.is_finite() && *a >= 0.0),
        close_date: text("CloseDate").and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()),
        stage: text("StageName").map(str::to_owned),
    };
    let event = Event {
        id: format!("salesforce:{}@{}", r.sf_id, r.modstamp.timestamp_millis()),
        customer_id: String::new(),
        occurred_at: at,
        kind,
    };
    Some((account, event))
}

/// The object a role is read through (`Opportunity.AccountId`).
fn parent_of(object: &str) -> Option<&'static str> {
    match object {
        "OpportunityContactRole" => Some("Opportunity"),
        "AccountContactRole" => Some("Contact"),
        _ => None,
    }
}

/// `2024-01-02T03:04:05.000Z`, as SOQL datetime literals are written.
fn soql_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The Bulk query for one object's window, asking for `fields` (the
/// bookkeeping columns first, as [`wanted_fields`] orders them).
pub fn soql_for(object: &str, fields: &[String], p: &ObjectProgress) -> String {
    let mut soql = format!("SELECT {} FROM {object}", fields.join(", "));
    let mut filters = Vec::new();
    if let Some(since) = p.since {
        filters.push(format!("SystemModstamp >= {}", soql_time(since - OVERLAP)));
    }
    if !filters.is_empty() {
        soql.push_str(" WHERE ");
        soql.push_str(&filters.join(" AND "));
    }
    soql
}

/// Where a page's columns are, looked up once per page (case-insensitive,
/// as SOQL names are). Bulk CSV: an empty cell is null.
struct Cells {
    columns: Vec<String>,
    id: Option<usize>,
    deleted: Option<usize>,
    modstamp: Option<usize>,
}

impl Cells {
    fn new(page: &ResultsPage) -> Self {
        Self {
            id: page.column("Id"),
            deleted: page.column("IsDeleted"),
            modstamp: page.column("SystemModstamp"),
            columns: page.columns.clone(),
        }
    }

    fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.eq_ignore_ascii_case(name))
    }

    fn id<'r>(&self, row: &'r csv::StringRecord) -> Option<&'r str> {
        at(row, self.id)
    }

    fn deleted(&self, row: &csv::StringRecord) -> bool {
        is_true(at(row, self.deleted))
    }

    fn modstamp(&self, row: &csv::StringRecord) -> Option<DateTime<Utc>> {
        at(row, self.modstamp).and_then(parse_time)
    }

    /// Every non-empty column but the bookkeeping ones, as JSON.
    fn data(&self, row: &csv::StringRecord) -> Map<String, Value> {
        let mut m = Map::new();
        for (i, c) in self.columns.iter().enumerate() {
            if BOOKKEEPING.contains(&c.as_str()) {
                continue;
            }
            if let Some(v) = crate::bulk::cell(row, i) {
                m.insert(c.clone(), Value::String(v.to_owned()));
            }
        }
        m
    }
}

/// The cell of `row` in `column`, `None` when null or when the page has no
/// such column.
fn at(row: &csv::StringRecord, column: Option<usize>) -> Option<&str> {
    column.and_then(|i| crate::bulk::cell(row, i))
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    // Bulk CSV writes `2024-01-02T03:04:05.000Z`; REST adds `+0000`.
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.3f%z"))
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(12, 0, 0))
                .map(|t| t.and_utc())
        })
}

fn is_true(s: Option<&str>) -> bool {
    s.is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn accounts(page: &ResultsPage, c: &Cells, settings: &SyncSettings) -> Vec<PulledAccount> {
    let name = c.column("Name");
    let parent = c.column("ParentId");
    let owner_email = c.column("Owner.Email");
    let external_id = settings.external_id_field.as_deref().and_then(|f| c.column(f));
    page.rows
        .iter()
        .filter_map(|r| {
            let sf_id = c.id(r)?.to_owned();
            Some(PulledAccount {
                external_id: at(r, external_id).map_or_else(|| sf_id.clone(), str::to_owned),
                name: at(r, name).unwrap_or(&sf_id).to_owned(),
                parent_sf_id: at(r, parent).map(str::to_owned),
                owner_email: at(r, owner_email).map(str::to_owned),
                deleted: c.deleted(r),
                modstamp: c.modstamp(r).unwrap_or_default(),
                data: c.data(r),
                sf_id,
            })
        })
        .collect()
}

fn records(object: &str, page: &ResultsPage, c: &Cells) -> Vec<CrmRecord> {
    let account = match object {
        "OpportunityContactRole" => c.column("Opportunity.AccountId"),
        _ => c.column("AccountId"),
    };
    page.rows
        .iter()
        .filter_map(|r| {
            Some(CrmRecord {
                object: object.to_owned(),
                sf_id: c.id(r)?.to_owned(),
                account_sf_id: at(r, account).map(str::to_owned),
                modstamp: c.modstamp(r).unwrap_or_default(),
                deleted: c.deleted(r),
                data: c.data(r),
            })
        })
        .collect()
}

struct Activity {
    row: PulledActivity,
    deleted: bool,
}

/// Tasks or Events on an Account (`WhatId` starting `001`), with when each
/// happened and whether it was a call, an email or a meeting.
fn activities(object: &str, page: &ResultsPage, c: &Cells) -> Vec<Activity> {
    let what = c.column("WhatId");
    let subject = c.column("Subject");
    let created = c.column("CreatedDate");
    let (when, subtype, kind) = if object == "Event" {
        (c.column("ActivityDateTime"), None, None)
    } else {
        (c.column("ActivityDate"), c.column("TaskSubtype"), c.column("Type"))
    };
    page.rows
        .iter()
        .filter_map(|r| {
            let account = at(r, what).filter(|w| w.starts_with("001"))?;
            let kind = if object == "Event" {
                ActivityType::Meeting
            } else {
                match at(r, subtype).or(at(r, kind)).unwrap_or_default() {
                    s if s.eq_ignore_ascii_case("call") => ActivityType::Call,
                    s if s.eq_ignore_ascii_case("email") => ActivityType::Email,
                    _ => ActivityType::Other,
                }
            };
            let happened = at(r, when).or(at(r, created)).and_then(parse_time)?;
            Some(Activity {
                row: PulledActivity {
                    sf_id: c.id(r)?.to_owned(),
                    account_sf_id: account.to_owned(),
                    at: happened,
                    kind,
                    subject: at(r, subject).map(|s| s.chars().take(200).collect()),
                },
                deleted: c.deleted(r),
            })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn progress(since: Option<&str>, until: Option<&str>) -> ObjectProgress {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).ok();
        ObjectProgress {
            object: "Account".into(),
            state: ObjectState::Pending,
            rows: 0,
            total: None,
            job_id: None,
            locator: None,
            since: since.and_then(t),
            until: until.and_then(t),
            skipped: None,
            failed: None,
            hidden_fields: Vec::new(),
        }
    }

    #[test]
    fn small_jobs_are_read_in_small_pages() {
        assert_eq!(page_rows(Some(0)), SMALL_PAGE_ROWS);
        assert_eq!(page_rows(Some(SMALL_JOB - 1)), SMALL_PAGE_ROWS);
        assert_eq!(page_rows(Some(SMALL_JOB)), PAGE_ROWS);
        assert_eq!(page_rows(None), PAGE_ROWS);
    }

    #[test]
    fn incremental_queries_overlap_the_watermark() {
        let settings = SyncSettings {
            external_id_field: Some("Perly_External_Id__c".into()),
            account_fields: vec!["CustomerPriority__c".into(), "Name".into()],
            ..SyncSettings::default()
        };
        let names = |object: &str, settings: &SyncSettings| -> Vec<String> {
            wanted_fields(object, settings).into_iter().map(|f| f.name).collect()
        };
        let soql = soql_for(
            "Account",
            &names("Account", &settings),
            &progress(Some("2026-12-01T10:00:00Z"), Some("2026-12-01T12:00:00Z")),
        );
        assert_eq!(
            soql,
            "SELECT Id, IsDeleted, SystemModstamp, Name, ParentId, OwnerId, Owner.Email, Type, Industry, AnnualRevenue, \
             NumberOfEmployees, Perly_External_Id__c, CustomerPriority__c FROM Account \
             WHERE SystemModstamp >= 2026-12-01T09:55:00.000Z"
        );
        let first = soql_for(
            "Contact",
            &names("Contact", &SyncSettings::default()),
            &progress(None, Some("2026-12-01T12:00:00Z")),
        );
        assert!(first.ends_with("FROM Contact"));
    }

    #[test]
    fn opportunities_become_one_event_per_change() {
        use perly_domain::event::{OpportunityCategory, OpportunityStatus};
        let now = Utc::now();
        let mut data = Map::new();
        for (k, v) in [
            ("Type", "Existing Customer - Renewal"),
            ("IsClosed", "true"),
            ("IsWon", "false"),
            ("Amount", "12000.5"),
            ("CloseDate", "2026-11-30"),
            ("StageName", "Closed Lost"),
        ] {
            data.insert(k.into(), Value::String(v.into()));
        }
        let r = CrmRecord {
            object: "Opportunity".into(),
            sf_id: "006A".into(),
            account_sf_id: Some("001A".into()),
            modstamp: now - chrono::Duration::hours(1),
            deleted: false,
            data,
        };
        let (account, event) = opportunity_event(&r, now).unwrap();
        assert_eq!(account, "001A");
        assert_eq!(event.id, format!("salesforce:006A@{}", r.modstamp.timestamp_millis()));
        let EventKind::CrmOpportunity {
            status,
            category,
            amount,
            close_date,
            ..
        } = event.kind
        else {
            panic!("an opportunity event");
        };
        assert_eq!(
            (status, category),
            (OpportunityStatus::Lost, OpportunityCategory::Renewal)
        );
        assert_eq!(amount, Some(12000.5));
        assert_eq!(close_date.map(|d| d.to_string()).as_deref(), Some("2026-11-30"));
        let gone = CrmRecord { deleted: true, ..r };
        assert!(matches!(
            opportunity_event(&gone, now).map(|(_, e)| e.kind),
            Some(EventKind::CrmOpportunity {
                status: OpportunityStatus::Deleted,
                ..
            })
        ));
    }

    #[test]
    fn times_parse_in_bulk_and_rest_shapes() {
        let a = parse_time("2024-01-02T03:04:05.000Z");
        assert_eq!(a, parse_time("2024-01-02T03:04:05.000+0000"));
        assert!(a.is_some());
        assert_eq!(
            parse_time("2024-01-02").map(|t| t.to_rfc3339()),
            Some("2024-01-02T12:00:00+00:00".to_owned())
        );
    }
}
