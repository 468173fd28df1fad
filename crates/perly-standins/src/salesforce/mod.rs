//! The Salesforce stand-in: two orgs (Production and Sandbox), each on its
//! own port, each port serving both the login endpoints and the instance
//! endpoints as a My Domain host does. So [`SalesforceStandin::login_url`]
//! is the production org's `instance_url` too, and `SELECT IsSandbox FROM
//! Organization` tells the two apart.
//!
//! A request moves like this: every call is logged by one middleware (which
//! also applies `Slow` faults) into the org's request list; `oauth` serves
//! `/services/oauth2/{authorize,token,revoke,userinfo}` and the identity URL
//! `/id/{orgId}/{userId}`; `rest` serves everything under
//! `/services/data/vXX.X/` behind one gate (Bearer token → 401
//! `INVALID_SESSION_ID`, API enabled → 403 `API_DISABLED_FOR_ORG`, daily
//! limit → 403 `REQUEST_LIMIT_EXCEEDED`, injected faults, then
//! `Sforce-Limit-Info: api-usage=USED/MAX` on the answer) and dispatches to
//! the REST resources (query, sObjects, describe, composite sObject
//! Collections, limits, Chatter feed elements), the Tooling API
//! (`tooling/query`, `tooling/sobjects/CustomField`) and `bulk` (Bulk API 2.0
//! query jobs with CSV results). `page` draws `GET /`.
//!
//! Data: `generate` computes every generated record from its index,
//! `catalog` holds the objects and fields (from the recorded describes),
//! `org` keeps only what changed (the overlay, inserted records, custom
//! fields, field-level security), `soql` parses queries and `query` runs them
//! lazily over scan positions, so a Bulk pull of millions of rows holds one
//! results page at a time. `save` validates and applies creates, updates
//! and deletes (REST, composite and Tooling share it). `ids` makes real-looking
//! 18-character ids with the case-safe suffix.
//!
//! Tests and `perly demo` drive an org through [`OrgHandle`]: read and
//! change records, add custom fields, set API usage, object access,
//! field-level security ([`OrgHandle::hide_field`]) and user permissions,
//! inject a [`SalesforceFault`], and read back every [`SalesforceRequest`].

mod bulk;
mod catalog;
mod generate;
mod ids;
mod oauth;
mod org;
mod page;
mod query;
mod rest;
mod save;
mod soql;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::{Request, State as AxumState};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{any, get, post};
use axum::Router;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use crate::grant::Codes;
use crate::server::{self, Serving};
use crate::OAuthApp;

pub use org::ObjectAccess;

use catalog::{Cell, FieldDef};
use org::Data;

/// The admin user's password on both orgs (the OAuth login page and the
/// username-password grant take it, with or without [`SECURITY_TOKEN`]
/// appended).
pub const ADMIN_PASSWORD: &str = "perly-standin-password";
/// The admin user's security token, which Salesforce has API clients append
/// to the password outside trusted IP ranges.
pub const SECURITY_TOKEN: &str = "StandInSecurityToken0";

/// Default daily API request allowance (`DailyApiRequests.Max`).
pub const DEFAULT_API_MAX: u64 = 100_000;

/// Sizes and seed of a generated org. Records are computed from their
/// index, so any size costs the same memory; only changes are stored.
#[derive(Debug, Clone, PartialEq)]
pub struct OrgSpec {
    pub accounts: u64,
    pub contacts_per_account: u64,
    pub opportunities_per_account: u64,
    pub tasks_per_account: u64,
    pub events_per_account: u64,
    pub seed: u64,
    /// Generated dates spread over the two years before this instant;
    /// fixed by default so that runs are reproducible.
    pub anchor: DateTime<Utc>,
    /// The first accounts, given rather than generated (a demo's own
    /// customers): name, the product's id in `Customer_Id__c`, and owner.
    /// Named accounts have no parent. Empty by default.
    pub named_accounts: Vec<NamedAccount>,
    /// The users who own records, in place of the default four (the admin
    /// stays). Empty by default.
    pub owners: Vec<OrgUser>,
    /// When not 0, Tasks and Events happen within this many days before
    /// the anchor (recent activity) instead of over two years.
    pub activity_days: u64,
}

/// An Account given by name (see [`OrgSpec::named_accounts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedAccount {
    pub name: String,
    /// The product's id of the customer, in the Account's `Customer_Id__c`.
    pub customer_id: String,
    /// The owner, by email, among [`OrgSpec::owners`] (else one of them).
    pub owner_email: Option<String>,
}

/// A user who owns records (see [`OrgSpec::owners`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgUser {
    pub first_name: String,
    pub last_name: String,
    /// At most 8 characters.
    pub alias: String,
    pub email: String,
}

impl Default for OrgSpec {
    fn default() -> Self {
        OrgSpec {
            accounts: 100,
            contacts_per_account: 2,
            opportunities_per_account: 1,
            tasks_per_account: 2,
            events_per_account: 2,
            seed: 7,
            anchor: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().unwrap_or_default(),
            named_accounts: Vec::new(),
            owners: Vec::new(),
            activity_days: 0,
        }
    }
}

/// A fault to inject into one org. Counted faults are used up call by
/// call, in the order injected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SalesforceFault {
    /// Every access token issued so far stops working (401
    /// `INVALID_SESSION_ID`); refresh tokens still work. Applied at once.
    ExpireSessions,
    /// The next `times` API calls answer 403 `REQUEST_LIMIT_EXCEEDED`.
    LimitExceeded { times: u32 },
    /// The next `times` calls whose path contains `path_contains` (any API
    /// call when `None`) answer `status` with Salesforce's body for it
    /// (500 `UNKNOWN_EXCEPTION`, 503 `SERVER_UNAVAILABLE`, …).
    Status {
        status: u16,
        times: u32,
        path_contains: Option<String>,
    },
    /// Records with these ids (every record when empty) fail in the next
    /// `times` saving calls (sObject create/update, composite collections)
    /// with `status_code` and `message`, e.g. `UNABLE_TO_LOCK_ROW`.
    FailRecords {
        ids: Vec<String>,
        status_code: String,
        message: String,
        times: u32,
    },
    /// Delay the next `times` calls by `delay_ms`.
    Slow { delay_ms: u64, times: u32 },
    /// The next `times` token answers (code exchange or refresh) name `url`
    /// as the org's `instance_url`: a hostile or broken login host sending
    /// the client somewhere else with the token.
    InstanceUrl { url: String, times: u32 },
    /// The next `times` `method` calls whose path contains `path_contains`
    /// do their work (a record is created, say) and then answer 500
    /// `UNKNOWN_EXCEPTION`, as when Salesforce times out after committing:
    /// the client cannot know the record exists.
    LoseResponses {
        method: String,
        path_contains: String,
        times: u32,
    },
}

/// One call the org answered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SalesforceRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub status: u16,
    pub at: DateTime<Utc>,
}

pub(crate) struct State {
    pub(crate) data: Data,
    pub(crate) tokens: oauth::Tokens,
    pub(crate) codes: Codes<oauth::CodeGrant>,
    pub(crate) usage: (u64, u64),
    pub(crate) faults: Vec<SalesforceFault>,
    pub(crate) requests: Vec<SalesforceRequest>,
    pub(crate) cursors: HashMap<String, rest::Cursor>,
    pub(crate) jobs: BTreeMap<String, bulk::Job>,
    pub(crate) next_id: u64,
    pub(crate) bulk_delay: Duration,
}

impl State {
    /// A fresh id with `prefix` for stand-in objects (jobs, cursors).
    pub(crate) fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        ids::make(prefix, self.data.gen.pod, self.next_id)
    }

    /// Uses up one answer of the first `Slow` fault.
    fn take_delay(&mut self) -> Option<Duration> {
        let i = self
            .faults
            .iter()
            .position(|f| matches!(f, SalesforceFault::Slow { .. }))?;
        let SalesforceFault::Slow { delay_ms, times } = &mut self.faults[i] else {
            return None;
        };
        let delay = Duration::from_millis(*delay_ms);
        *times = times.saturating_sub(1);
        if *times == 0 {
            self.faults.remove(i);
        }
        Some(delay)
    }

    /// Uses up one `InstanceUrl` answer, if any is pending.
    pub(crate) fn take_instance_fault(&mut self) -> Option<String> {
        let i = self
            .faults
            .iter()
            .position(|f| matches!(f, SalesforceFault::InstanceUrl { .. }))?;
        let SalesforceFault::InstanceUrl { url, times } = &mut self.faults[i] else {
            return None;
        };
        let url = url.clone();
        *times = times.saturating_sub(1);
        if *times == 0 {
            self.faults.remove(i);
        }
        Some(url)
    }

    /// Uses up one `LimitExceeded` answer, if any is pending.
    pub(crate) fn take_limit_fault(&mut self) -> bool {
        let Some(i) = self
            .faults
            .iter()
            .position(|f| matches!(f, SalesforceFault::LimitExceeded { .. }))
        else {
            return false;
        };
        if let SalesforceFault::LimitExceeded { times } = &mut self.faults[i] {
            *times = times.saturating_sub(1);
            if *times == 0 {
                self.faults.remove(i);
            }
        }
        true
    }

    /// Uses up one `Status` answer for a call to `path`.
    pub(crate) fn take_status_fault(&mut self, path: &str) -> Option<u16> {
        let i = self.faults.iter().position(|f| match f {
            SalesforceFault::Status { path_contains, .. } => match path_contains {
                Some(p) => path.contains(p.as_str()),
                None => path.starts_with("/services/data/"),
            },
            _ => false,
        })?;
        let SalesforceFault::Status { status, times, .. } = &mut self.faults[i] else {
            return None;
        };
        let s = *status;
        *times = times.saturating_sub(1);
        if *times == 0 {
            self.faults.remove(i);
        }
        Some(s)
    }

    /// Uses up one `LoseResponses` fault for a `method` call to `path`.
    pub(crate) fn take_lost_response(&mut self, path: &str, method: &str) -> bool {
        let Some(i) = self.faults.iter().position(|f| match f {
            SalesforceFault::LoseResponses {
                method: m,
                path_contains,
                ..
            } => m.eq_ignore_ascii_case(method) && path.contains(path_contains.as_str()),
            _ => false,
        }) else {
            return false;
        };
        if let SalesforceFault::LoseResponses { times, .. } = &mut self.faults[i] {
            *times = times.saturating_sub(1);
            if *times == 0 {
                self.faults.remove(i);
            }
        }
        true
    }

    /// The pending per-record failure, if any: (ids, code, message). The
    /// caller uses it up with [`State::use_record_fault`] when it applied.
    pub(crate) fn record_fault(&self) -> Option<(Vec<String>, String, String)> {
        self.faults.iter().find_map(|f| match f {
            SalesforceFault::FailRecords {
                ids,
                status_code,
                message,
                ..
            } => Some((ids.clone(), status_code.clone(), message.clone())),
            _ => None,
        })
    }

    pub(crate) fn use_record_fault(&mut self) {
        let Some(i) = self
            .faults
            .iter()
            .position(|f| matches!(f, SalesforceFault::FailRecords { .. }))
        else {
            return;
        };
        if let SalesforceFault::FailRecords { times, .. } = &mut self.faults[i] {
            *times = times.saturating_sub(1);
            if *times == 0 {
                self.faults.remove(i);
            }
        }
    }
}

/// One org: its base URL, the OAuth clients it knows, and its state.
pub(crate) struct Org {
    pub(crate) base: String,
    pub(crate) sandbox: bool,
    pub(crate) apps: Vec<OAuthApp>,
    state: Mutex<State>,
}

impl Org {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn label(&self) -> &'static str {
        if self.sandbox {
            "Sandbox"
        } else {
            "Production"
        }
    }
}

/// Logs every call (method, path, query, status) and applies `Slow`.
async fn log(AxumState(org): AxumState<Arc<Org>>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let delay = if path.starts_with("/services/") {
        org.lock().take_delay()
    } else {
        None
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let response = next.run(request).await;
    let status = response.status().as_u16();
    if path != "/" && !path.starts_with("/_standin") {
        org.lock().requests.push(SalesforceRequest {
            method,
            path,
            query,
            status,
            at: Utc::now(),
        });
    }
    response
}

fn router(org: Arc<Org>) -> Router {
    Router::new()
        .route("/", get(page::home))
        .route("/_standin/requests.json", get(page::requests_json))
        .route("/services/oauth2/authorize", get(oauth::authorize).post(oauth::decide))
        .route("/services/oauth2/token", post(oauth::token))
        .route("/services/oauth2/revoke", get(oauth::revoke).post(oauth::revoke))
        .route("/services/oauth2/userinfo", get(oauth::userinfo).post(oauth::userinfo))
        .route("/id/{org_id}/{user_id}", get(oauth::identity))
        .route("/services/data", get(rest::versions))
        .route("/services/data/", get(rest::versions))
        .route("/services/data/{*rest}", any(rest::dispatch))
        .layer(axum::middleware::from_fn_with_state(org.clone(), log))
        .with_state(org)
}

/// A local Salesforce with a production and a sandbox org. Cheap to clone;
/// all clones share the servers and state.
#[derive(Clone)]
pub struct SalesforceStandin {
    production: OrgHandle,
    sandbox: OrgHandle,
    serving: Vec<Serving>,
}

impl SalesforceStandin {
    /// Binds both addresses (e.g. `"127.0.0.1:0"` twice) and serves the two
    /// orgs on the current tokio runtime until
    /// [`SalesforceStandin::shutdown`] or the runtime ends. Both orgs get
    /// the same generated data layout from `org` (own ids per org) and
    /// accept the same OAuth `apps`.
    pub async fn start(
        production_addr: &str,
        sandbox_addr: &str,
        org: OrgSpec,
        apps: Vec<OAuthApp>,
    ) -> std::io::Result<Self> {
        let (p_listener, p_local) = server::bind(production_addr).await?;
        let (s_listener, s_local) = server::bind(sandbox_addr).await?;
        let production = OrgHandle::new(server::base_url(p_local), false, org.clone(), apps.clone());
        let sandbox = OrgHandle::new(server::base_url(s_local), true, org, apps);
        let serving = vec![
            server::spawn_title_case(p_listener, router(production.inner.clone()), "salesforce"),
            server::spawn_title_case(s_listener, router(sandbox.inner.clone()), "salesforce-sandbox"),
        ];
        Ok(SalesforceStandin {
            production,
            sandbox,
            serving,
        })
    }

    /// The production org's base URL (`http://127.0.0.1:P`): its login
    /// host and its `instance_url`.
    pub fn login_url(&self) -> String {
        self.production.base_url()
    }

    /// The sandbox org's base URL: its login host and its `instance_url`.
    pub fn sandbox_login_url(&self) -> String {
        self.sandbox.base_url()
    }

    pub fn production(&self) -> OrgHandle {
        self.production.clone()
    }

    pub fn sandbox(&self) -> OrgHandle {
        self.sandbox.clone()
    }

    /// Stops both servers (all clones).
    pub fn shutdown(&self) {
        for s in &self.serving {
            s.stop();
        }
    }
}

impl std::fmt::Debug for SalesforceStandin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SalesforceStandin")
            .field("login_url", &self.production.inner.base)
            .field("sandbox_login_url", &self.sandbox.inner.base)
            .finish_non_exhaustive()
    }
}

/// Test and demo access to one org. Cheap to clone.
#[derive(Clone)]
pub struct OrgHandle {
    inner: Arc<Org>,
}

impl std::fmt::Debug for OrgHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrgHandle")
            .field("base_url", &self.inner.base)
            .finish_non_exhaustive()
    }
}

impl OrgHandle {
    fn new(base: String, sandbox: bool, spec: OrgSpec, apps: Vec<OAuthApp>) -> OrgHandle {
        let gen = generate::Gen::new(spec, sandbox);
        let state = State {
            data: Data::new(gen),
            tokens: oauth::Tokens::default(),
            codes: Codes::default(),
            usage: (0, DEFAULT_API_MAX),
            faults: Vec::new(),
            requests: Vec::new(),
            cursors: HashMap::new(),
            jobs: BTreeMap::new(),
            next_id: 0,
            bulk_delay: Duration::ZERO,
        };
        OrgHandle {
            inner: Arc::new(Org {
                base,
                sandbox,
                apps,
                state: Mutex::new(state),
            }),
        }
    }

    /// `http://127.0.0.1:P`: login host and instance URL of this org.
    pub fn base_url(&self) -> String {
        self.inner.base.clone()
    }

    /// The 18-character `Organization.Id`.
    pub fn org_id(&self) -> String {
        self.inner.lock().data.gen.org_id.clone()
    }

    /// The admin user every login signs in as.
    pub fn admin_user_id(&self) -> String {
        self.inner.lock().data.admin_id()
    }

    /// The admin user's username (the sandbox's has `.staging` appended).
    pub fn admin_username(&self) -> String {
        self.inner.lock().data.gen.username(0)
    }

    /// The id of generated account `index` (0-based).
    pub fn account_id(&self, index: u64) -> String {
        self.inner.lock().data.gen.account_id(index)
    }

    pub fn contact_id(&self, index: u64) -> String {
        self.inner.lock().data.gen.contact_id(index)
    }

    pub fn opportunity_id(&self, index: u64) -> String {
        self.inner.lock().data.gen.opportunity_id(index)
    }

    /// The id of generated user `index` (0 is the admin, 1.. own records).
    pub fn user_id(&self, index: u64) -> String {
        self.inner.lock().data.gen.user_id(index)
    }

    /// The record's current field values (custom fields included, hidden
    /// ones too), deleted or not; `None` if there is no such record.
    pub fn record(&self, object: &str, id: &str) -> Option<Value> {
        let st = self.inner.lock();
        let kind = st.data.kind_named(object)?;
        let key = st.data.table(kind).key_of(&st.data.gen, id)?;
        Some(st.data.record_json(kind, key, false, ""))
    }

    /// Every stored record of `object`: those created since start, and
    /// generated ones that were changed. Meant for small objects (Task,
    /// FeedItem, CustomField, PermissionSet, …).
    pub fn records(&self, object: &str) -> Vec<Value> {
        let st = self.inner.lock();
        let Some(kind) = st.data.kind_named(object) else {
            return Vec::new();
        };
        let t = st.data.table(kind);
        let mut changed: Vec<u64> = t.overlay.keys().copied().collect();
        changed.sort_unstable();
        changed
            .into_iter()
            .map(org::RowKey::Generated)
            .chain(t.inserted.keys().map(|s| org::RowKey::Inserted(*s)))
            .map(|k| st.data.record_json(kind, k, false, ""))
            .collect()
    }

    /// Sets fields on a record as an admin would in the UI (no validation,
    /// no API usage); stamps `LastModifiedDate` and `SystemModstamp`.
    /// Unknown objects, ids or fields are ignored.
    pub fn update(&self, object: &str, id: &str, fields: Value) {
        let mut st = self.inner.lock();
        let Some(kind) = st.data.kind_named(object) else {
            return;
        };
        let Some(key) = st.data.table(kind).key_of(&st.data.gen, id) else {
            return;
        };
        let values = save::loose_values(&st.data, kind, &fields);
        st.data.update(kind, key, values);
    }

    /// Creates a record as an admin would in the UI; returns its id (empty
    /// for an unknown object).
    pub fn insert(&self, object: &str, fields: Value) -> String {
        let mut st = self.inner.lock();
        let Some(kind) = st.data.kind_named(object) else {
            return String::new();
        };
        let values = save::loose_values(&st.data, kind, &fields);
        st.data.insert(kind, values)
    }

    /// Moves a record to the recycle bin (`IsDeleted` true, seen by
    /// `queryAll` only).
    pub fn delete(&self, object: &str, id: &str) {
        let mut st = self.inner.lock();
        let Some(kind) = st.data.kind_named(object) else {
            return;
        };
        if let Some(key) = st.data.table(kind).key_of(&st.data.gen, id) {
            st.data.delete(kind, key);
        }
    }

    /// Adds a custom field visible and editable to the user (as if an admin
    /// had created it and granted field-level security). `field_type` is a
    /// describe type: `double`, `picklist`, `datetime`, `date`, `string`,
    /// `boolean`, `currency`, `percent`, `textarea`.
    pub fn add_custom_field(&self, object: &str, api_name: &str, field_type: &str, label: &str) {
        let mut st = self.inner.lock();
        let Some(kind) = st.data.kind_named(object) else {
            return;
        };
        let ty = org::field_type_of(org::metadata_type(field_type)).unwrap_or(catalog::FieldType::String);
        let def = FieldDef::new(api_name, label, ty);
        let now = st.data.stamp();
        let name = st.data.table(kind).name();
        st.data.add_field(kind, def);
        let metadata = serde_json::json!({"label": label, "type": org::metadata_type(field_type)});
        st.data.insert_custom_field_record(name, api_name, metadata, now);
    }

    /// Takes Read on `object.field` away from the user, as an admin
    /// unticking "Visible" in Set Field-Level Security would: the object's
    /// describe no longer lists the field, a SOQL query or Bulk query job
    /// naming it (or a parent field through it) is refused with 400
    /// `INVALID_FIELD` ("No such column 'Phone' on entity 'Contact'…"),
    /// records read through the API leave it out and writes to it are
    /// refused. Salesforce sets field-level security only on fields its
    /// describe calls `permissionable` (not the Id, system fields or
    /// required ones): for those, and for unknown objects or fields, nothing
    /// changes and `false` is answered.
    pub fn hide_field(&self, object: &str, field: &str) -> bool {
        self.set_field_hidden(object, field, true)
    }

    /// Gives Read on a field hidden with [`OrgHandle::hide_field`] back.
    pub fn show_field(&self, object: &str, field: &str) -> bool {
        self.set_field_hidden(object, field, false)
    }

    fn set_field_hidden(&self, object: &str, field: &str, hidden: bool) -> bool {
        let mut st = self.inner.lock();
        let Some(kind) = st.data.kind_named(object) else {
            return false;
        };
        let Some(col) = st.data.table(kind).col(field) else {
            return false;
        };
        st.data.set_hidden(kind, col, hidden)
    }

    /// Sets the rolling 24-hour API usage (`api-usage=USED/MAX`).
    pub fn set_api_usage(&self, used: u64, max: u64) {
        self.inner.lock().usage = (used, max);
    }

    pub fn api_usage(&self) -> (u64, u64) {
        self.inner.lock().usage
    }

    /// What the user may do with `object` (reflected in describeGlobal,
    /// describe and query: without read the object is "not supported").
    pub fn set_access(&self, object: &str, access: ObjectAccess) {
        let mut st = self.inner.lock();
        if let Some(kind) = st.data.kind_named(object) {
            st.data.access.insert(kind, access);
        }
    }

    /// Turns off `PermissionsApiEnabled`: every API call answers 403
    /// `API_DISABLED_FOR_ORG`.
    pub fn disable_api(&self) {
        self.set_user_permission("PermissionsApiEnabled", false);
    }

    /// Sets a user permission as `UserPermissionAccess` reports it, e.g.
    /// `PermissionsModifyAllData` (the `Permissions` prefix is optional).
    pub fn set_user_permission(&self, name: &str, granted: bool) {
        let full = if name.starts_with("Permissions") {
            name.to_owned()
        } else {
            format!("Permissions{name}")
        };
        let mut st = self.inner.lock();
        if let Some(p) = catalog::USER_PERMISSIONS.iter().find(|p| p.eq_ignore_ascii_case(&full)) {
            st.data.set_permission(p, granted);
        }
    }

    /// How long a Bulk query job stays `InProgress` after its first poll
    /// (default zero: complete on the poll after that).
    pub fn set_bulk_delay(&self, delay: Duration) {
        self.inner.lock().bulk_delay = delay;
    }

    pub fn inject(&self, fault: SalesforceFault) {
        let mut st = self.inner.lock();
        match fault {
            SalesforceFault::ExpireSessions => st.tokens.expire_sessions(),
            other => st.faults.push(other),
        }
    }

    /// Faults still pending, in injection order.
    pub fn pending_faults(&self) -> Vec<SalesforceFault> {
        self.inner.lock().faults.clone()
    }

    /// Every call answered, in arrival order.
    pub fn requests(&self) -> Vec<SalesforceRequest> {
        self.inner.lock().requests.clone()
    }

    /// Invalidates every access and refresh token (refresh then answers
    /// `invalid_grant` / `expired access/refresh token`).
    pub fn revoke_all(&self) {
        self.inner.lock().tokens.revoke_all();
    }

    /// Refresh tokens issued and not revoked.
    pub fn live_refresh_tokens(&self) -> usize {
        self.inner.lock().tokens.live_refresh_tokens()
    }

    /// A refresh token for the admin user, as if `client_id` had completed
    /// the web-server flow with scopes `api refresh_token` (for tests and
    /// benches that start past the OAuth dance).
    pub fn issue_refresh_token(&self, client_id: &str) -> String {
        self.inner.lock().tokens.issue_refresh(client_id, "api refresh_token")
    }

    /// An access token for the admin user, as if a client had logged in
    /// (for tests that start past the OAuth dance).
    pub fn issue_token(&self, client_id: &str) -> String {
        let mut st = self.inner.lock();
        let org_id = st.data.gen.org_id.clone();
        st.tokens.issue_access(&org_id, client_id, None, "api refresh_token")
    }
}

/// Cell for a handle's loose JSON values (re-exported for `save`).
pub(crate) fn loose_cell(v: &Value) -> Cell {
    match v {
        Value::Null => Cell::Null,
        Value::Bool(b) => Cell::Bool(*b),
        Value::Number(n) => n
            .as_i64()
            .map_or_else(|| Cell::Num(n.as_f64().unwrap_or_default()), Cell::Int),
        Value::String(s) => Cell::text(s.clone()),
        other => Cell::Json(Box::new(other.clone())),
    }
}

#[cfg(test)]
mod tests;
