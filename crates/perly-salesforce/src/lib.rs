//! Perly's Salesforce client: HTTP on reqwest, CSV on the `csv` crate, no
//! database, no web framework. It knows how to talk to one connected org;
//! what to pull and when, and where tokens are stored, belong to the caller.
//!
//! Layout, in the order a connection is used:
//!
//! - [`hosts`]: which login and instance hosts Perly talks to at all
//!   (Salesforce's own, or the configured login hosts); every request
//!   goes out through a [`perly_net::Outbound`], which keeps it off
//!   private networks, and every body is read with a cap
//!   ([`client::MAX_JSON_BYTES`], [`bulk::MAX_CSV_PAGE_BYTES`]).
//! - [`oauth`]: the web-server flow with PKCE — [`oauth::authorize_url`],
//!   [`oauth::exchange_code`], [`oauth::refresh`], [`oauth::revoke`].
//! - [`client`]: [`Client`], built from a stored [`Connection`]. Every call
//!   goes through one `send` that spends a [`Budget`], attaches the bearer
//!   token, refreshes it once on 401 and records the API usage header.
//! - [`limits`]: `Sforce-Limit-Info` parsing and the [`Budget`] (pure).
//! - [`rest`]: SOQL (REST and Tooling), describes, record creates, sObject
//!   Collections, Chatter posts, limits, user and org info — `impl Client`.
//! - [`bulk`]: Bulk API 2.0 query jobs and their CSV result pages.
//! - [`fields`]: Perly's three Account fields and
//!   [`fields::ensure_perly_fields`] (Tooling create + permission set).
//! - [`permissions`]: [`permissions::check`], what an admin must grant.
//! - [`chatter`], [`tasks`]: pure builders of the bodies Perly posts.
//! - [`error`]: the one [`Error`], whose variants are the caller's choices.
//!
//! On top of the client, Perly's use of it (with the store):
//!
//! - [`orgs`]: one [`Client`] per workspace, from the stored connection.
//! - [`pull`]: one sync run, object by object, through Bulk query jobs,
//!   resumable from its saved progress.
//! - [`sync`]: the worker that claims due syncs and records how they end.
//! - [`outbox`]: the worker that pushes scores onto Accounts and creates
//!   the Tasks and Chatter posts automation rules queue.
//! - [`metrics`]: what those workers count for `/metrics`.
//!
//! Secrets (`client_secret`, tokens, PKCE verifier) are
//! [`secrecy::SecretString`]s and never logged; types holding them redact
//! them in `Debug`.

pub mod bulk;
pub mod chatter;
pub mod client;
pub mod error;
pub mod field_access;
pub mod fields;
pub mod hosts;
pub mod limits;
pub mod metrics;
pub mod oauth;
pub mod orgs;
pub mod outbox;
pub mod permissions;
pub mod pull;
pub mod rest;
pub mod sync;
pub mod tasks;

pub use bulk::{JobInfo, JobState, Operation, ResultsPage, ResultsStream};
pub use client::{Client, Connection, API_VERSION};
pub use error::{Error, Result};
pub use limits::{ApiUsage, Budget};
pub use oauth::{AccessGrant, OAuthApp, Pkce, TokenGrant};
pub use rest::{
    FieldDescribe, Organization, PicklistValue, QueryPage, RecordError, SObjectDescribe, SObjectSummary, SaveResult,
    UserInfo,
};

#[cfg(test)]
pub(crate) mod fixtures {
    /// A file of `fixtures/` (copies of `shared/specs/salesforce`).
    pub fn spec(path: &str) -> String {
        let full = format!("{}/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
    }
}
