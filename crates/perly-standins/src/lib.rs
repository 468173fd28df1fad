//! Local stand-ins for Slack, Discord and Salesforce that speak the
//! vendors' real HTTP protocol. Slack and Discord: the OAuth install
//! (authorize page, consent, code, token exchange that hands back an
//! incoming webhook) and the webhook itself, with the vendors' statuses,
//! bodies, headers, payload limits and rate limits as written down in
//! `shared/specs/{slack,discord}` (bundled copies of the schemas live in
//! this crate's `specs/` folder). Salesforce: a production and a sandbox
//! org, each with OAuth (web server flow with PKCE, refresh, password
//! grant, revoke, userinfo), the REST API (SOQL query and paging, describe,
//! sObject CRUD, sObject Collections, limits, Chatter), the Tooling API
//! (custom fields, hidden until field-level security grants them) and Bulk
//! API 2.0 query jobs, over a generated org of any size
//! (`shared/specs/salesforce`).
//!
//! Perly's integration tests and `perly demo` both use them. A test starts
//! one with [`SlackStandin::start`], [`DiscordStandin::start`] or
//! [`SalesforceStandin::start`] on port 0, points Perly's settings at its
//! base URL, drives Perly, then reads back what arrived with `messages()` /
//! `requests()` (Salesforce: [`OrgHandle::records`], [`OrgHandle::record`])
//! and injects failures with `inject()` and a [`Fault`] or
//! [`SalesforceFault`]. A person can watch the same traffic at `GET /` on
//! each stand-in, drawn as the vendor would draw it.
//!
//! Layout: [`slack`] and [`discord`] each own their routes and vendor rules
//! (`oauth`, `webhook`, `page` in the same shape); [`salesforce`] is larger
//! (its module doc lists its parts: `oauth`, `rest`, `bulk`, `soql`,
//! `query`, `org`, `generate`, `catalog`, `save`, `ids`, `page`). Shared
//! pieces are the request `journal` (what arrived, which faults are
//! pending), `grant` (authorization codes and client credentials), `rate`
//! (token bucket and fixed window, pure over `now`), `schema` (loading the
//! bundled JSON Schemas), `control` (the stand-ins' own `/_standin/*`
//! routes: messages as JSON, the faults form), `server` (bind and serve)
//! and `view` (askama pages).

// A describe field is one `serde_json::json!` of 60 keys.
#![recursion_limit = "256"]

pub mod discord;
pub mod salesforce;
pub mod slack;

mod control;
mod grant;
mod journal;
mod rate;
mod saved;
mod schema;
mod server;
mod view;

pub use discord::DiscordStandin;
pub use salesforce::{ObjectAccess, OrgHandle, OrgSpec, SalesforceFault, SalesforceRequest, SalesforceStandin};
pub use slack::SlackStandin;

/// One OAuth client the stand-in accepts.
#[derive(Clone, Debug)]
pub struct OAuthApp {
    pub client_id: String,
    pub client_secret: String,
}

/// A fault to inject for one webhook (identified by its full URL as returned
/// by the stand-in). Counted faults are used up in the order they were
/// injected; `Slow` is applied on top of whatever the answer is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer the next `times` requests with this HTTP status and the
    /// vendor's body for it (Slack 500 → `rollup_error`; Discord 500 →
    /// `{"message": "500: Internal Server Error", "code": 0}`).
    Status { status: u16, times: u32 },
    /// Answer the next `times` requests with 429 and a retry-after of
    /// `retry_after_ms` (Slack: `Retry-After` in whole seconds, rounded up;
    /// Discord: `retry_after` in float seconds plus the `X-RateLimit-*`
    /// headers with scope `user`).
    RateLimit { retry_after_ms: u64, times: u32 },
    /// The webhook was deleted: Slack 404 `channel_not_found` (a URL the
    /// stand-in never issued gets 404 `no_service`), Discord 404
    /// `Unknown Webhook` (10015). Permanent.
    Delete,
    /// The channel was archived: Slack 410 `channel_is_archived`. Discord has
    /// no archived channels; there it acts as [`Fault::Delete`]. Permanent.
    Archive,
    /// The token was revoked: Slack 403 `invalid_token`, Discord 401
    /// `Invalid Webhook Token` (50027). Permanent.
    Revoke,
    /// Delay each answer by `delay_ms`, for the next `times` requests.
    Slow { delay_ms: u64, times: u32 },
}

/// A webhook request the stand-in answered, accepted (2xx) or refused.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Received {
    /// Full URL it was posted to, without the query string.
    pub webhook_url: String,
    /// Slack: `#customer-health`; Discord: `customer-health` (see `guild`).
    /// Empty when the webhook is unknown.
    pub channel: String,
    /// Discord only: the guild (server) the channel belongs to.
    pub guild: Option<String>,
    /// The request body as JSON; a body that was not JSON is kept as a
    /// JSON string of its text.
    pub body: serde_json::Value,
    /// The HTTP status the stand-in answered.
    pub status: u16,
    /// The body the stand-in answered (empty for 204).
    pub answer: String,
    /// When the request arrived.
    pub at: chrono::DateTime<chrono::Utc>,
    /// When the request arrived, on tokio's monotonic clock (for latency and
    /// pacing assertions; honours `tokio::time::pause`).
    #[serde(skip)]
    pub at_instant: tokio::time::Instant,
}

impl Received {
    /// Whether the stand-in accepted the message (2xx).
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
}
