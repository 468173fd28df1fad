//! The stand-ins' own routes, which no vendor has: `GET /_standin/messages.json`
//! (everything the journal holds, as JSON) and the faults page
//! (`GET`/`POST /_standin/faults`) the demo uses to break a webhook by hand.
//! Both vendors mount them through the [`Control`] trait.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Json, Router};

use askama::Template;

use crate::journal::Journal;
use crate::server;
use crate::view::{self, FaultForm, FaultsPage, HookOption, PendingFault};

/// What the control routes need from a stand-in.
pub(crate) trait Control: Send + Sync + 'static {
    const VENDOR: &'static str;
    const DARK: bool;
    fn journal(&self) -> &Journal;
    fn base(&self) -> &str;
    /// Every webhook, as (full URL, label).
    fn hooks(&self) -> Vec<HookOption>;
    /// The journal key of a webhook URL.
    fn key_of(&self, url: &str) -> String;
    /// The full URL of a journal key (for the pending list).
    fn url_of(&self, key: &str) -> String;
}

pub(crate) fn routes<S: Control>() -> Router<Arc<S>> {
    Router::new()
        .route("/_standin/messages.json", get(messages_json::<S>))
        .route("/_standin/faults", get(faults::<S>).post(inject::<S>))
}

async fn messages_json<S: Control>(State(s): State<Arc<S>>) -> Response {
    Json(s.journal().requests()).into_response()
}

async fn faults<S: Control>(State(s): State<Arc<S>>) -> Response {
    let pending = s
        .journal()
        .pending()
        .into_iter()
        .map(|(key, fault)| PendingFault {
            url: s.url_of(&key),
            fault: view::describe(&fault),
        })
        .collect();
    let page = FaultsPage {
        vendor: S::VENDOR,
        dark: S::DARK,
        root: view::root(s.base()),
        hooks: s.hooks(),
        pending,
        kinds: view::fault_kinds(S::VENDOR),
    };
    server::page(StatusCode::OK, page.render())
}

async fn inject<S: Control>(State(s): State<Arc<S>>, Form(form): Form<FaultForm>) -> Response {
    let key = s.key_of(&form.webhook_url);
    if form.clear.is_some() {
        s.journal().clear_faults(&key);
    } else if let Some(fault) = form.fault() {
        tracing::info!(vendor = S::VENDOR, webhook = %form.webhook_url, fault = ?fault, "fault injected by hand");
        s.journal().inject(key, fault);
    }
    server::see_other(&format!("{}/_standin/faults", view::root(s.base())))
}
