//! The Slack stand-in: one workspace ("Acme Customer Success", six seeded
//! channels) with an app install over OAuth v2 and incoming webhooks.
//!
//! A request moves like this: `oauth` serves `/oauth/v2/authorize` (consent
//! page and form) and `/api/oauth.v2.access` (code → bot token + a new
//! webhook); `webhook` serves `POST /services/T…/B…/secret` (fault,
//! rate limit, payload checks against the bundled schema, then `ok`) and
//! writes every answer to the journal; `page` draws the journal at `GET /`
//! as Slack would. State is in memory behind one mutex.

mod oauth;
mod page;
mod webhook;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;

use crate::control::{self, Control};
use crate::grant::{self, Codes};
use crate::journal::Journal;
use crate::rate::TokenBucket;
use crate::saved::{HookFile, SavedHook};
use crate::server::{self, Serving};
use crate::view::HookOption;
use crate::{Fault, OAuthApp, Received};

/// The workspace every install lands in (ids from Slack's own examples).
pub(crate) const TEAM_ID: &str = "T9TK3CUKW";
pub(crate) const TEAM_NAME: &str = "Acme Customer Success";
pub(crate) const APP_ID: &str = "A0KRD7HC3";
pub(crate) const BOT_USER_ID: &str = "U0KRQLJ9H";
pub(crate) const AUTHED_USER_ID: &str = "U0HTT3Q0G";

/// Seeded channels, as (id, name).
const CHANNELS: [(&str, &str); 6] = [
    ("C05002EAE", "#customer-health"),
    ("C05002EAF", "#cs-escalations"),
    ("C05002EB0", "#revenue-signals"),
    ("C05002EB1", "#billing-alerts"),
    ("C05002EB2", "#general"),
    ("C05002EB3", "#random"),
];

/// Slack's incoming-webhook limit: "1 per second, short bursts >1 allowed".
const BURST: u32 = 5;
const REFILL: Duration = Duration::from_secs(1);

/// A local Slack. Cheap to clone; all clones share one server and state.
#[derive(Clone)]
pub struct SlackStandin {
    inner: Arc<Slack>,
    serving: Option<Serving>,
}

#[derive(Clone, Debug)]
pub(crate) struct Channel {
    pub(crate) id: String,
    pub(crate) name: String,
}

pub(crate) struct Hook {
    pub(crate) url: String,
    pub(crate) service_id: String,
    pub(crate) channel: Channel,
    pub(crate) bucket: TokenBucket,
}

/// What the user approved on the consent page.
#[derive(Clone, Debug)]
pub(crate) struct Grant {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: Option<String>,
    pub(crate) channel: Channel,
}

pub(crate) struct Slack {
    pub(crate) base: String,
    pub(crate) app: OAuthApp,
    pub(crate) journal: Journal,
    state: Mutex<State>,
    saved: HookFile,
}

pub(crate) struct State {
    pub(crate) channels: Vec<Channel>,
    /// Keyed by `T…/B…/secret`.
    pub(crate) hooks: HashMap<String, Hook>,
    pub(crate) codes: Codes<Grant>,
}

impl Slack {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `#name` for `name` or `#name`.
    fn channel_name(name: &str) -> String {
        format!("#{}", name.trim().trim_start_matches('#'))
    }

    /// The channel called `name`, created if the workspace has none.
    pub(crate) fn channel(state: &mut State, name: &str) -> Channel {
        let name = Self::channel_name(name);
        if let Some(c) = state.channels.iter().find(|c| c.name == name) {
            return c.clone();
        }
        let c = Channel {
            id: format!("C0{}", grant::random_upper(9)),
            name,
        };
        state.channels.push(c.clone());
        c
    }

    /// A new webhook for `channel`, returning its URL.
    pub(crate) fn new_hook(&self, state: &mut State, channel: Channel) -> String {
        let service_id = format!("B0{}", grant::random_upper(9));
        let secret = grant::random_alnum(24);
        let key = format!("{TEAM_ID}/{service_id}/{secret}");
        let url = format!("{}/services/{key}", self.base);
        Self::insert_hook(state, key, url.clone(), service_id, channel);
        self.save(state);
        url
    }

    fn insert_hook(state: &mut State, key: String, url: String, service_id: String, channel: Channel) {
        state.hooks.insert(
            key,
            Hook {
                url,
                service_id,
                channel,
                bucket: TokenBucket::new(BURST, REFILL),
            },
        );
    }

    fn save(&self, state: &State) {
        let hooks: Vec<SavedHook> = state
            .hooks
            .values()
            .map(|h| SavedHook {
                url: h.url.clone(),
                channel: h.channel.name.clone(),
            })
            .collect();
        self.saved.save(&hooks);
    }

    /// Webhooks saved by an earlier run.
    fn restore(&self) {
        let mut state = self.lock();
        for h in self.saved.load() {
            let key = key_of(&h.url);
            let Some(service_id) = key.split('/').nth(1).map(str::to_owned) else {
                continue;
            };
            let channel = Self::channel(&mut state, &h.channel);
            Self::insert_hook(&mut state, key, h.url, service_id, channel);
        }
    }
}

impl Control for Slack {
    const VENDOR: &'static str = "Slack";
    const DARK: bool = false;

    fn journal(&self) -> &Journal {
        &self.journal
    }

    fn base(&self) -> &str {
        &self.base
    }

    fn hooks(&self) -> Vec<HookOption> {
        let state = self.lock();
        let mut hooks: Vec<HookOption> = state
            .hooks
            .values()
            .map(|h| HookOption {
                url: h.url.clone(),
                label: h.channel.name.clone(),
            })
            .collect();
        hooks.sort_by(|a, b| a.label.cmp(&b.label).then(a.url.cmp(&b.url)));
        hooks
    }

    fn key_of(&self, url: &str) -> String {
        key_of(url)
    }

    fn url_of(&self, key: &str) -> String {
        format!("{}/services/{key}", self.base)
    }
}

/// `T…/B…/secret`: the last three path segments after `services`.
fn key_of(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match segments.iter().rposition(|s| *s == "services") {
        Some(i) => segments[i + 1..].join("/"),
        None => path.to_owned(),
    }
}

impl SlackStandin {
    /// Binds `addr` (e.g. `"127.0.0.1:0"`) and serves the stand-in on the
    /// current tokio runtime until [`SlackStandin::shutdown`] or the runtime
    /// ends.
    pub async fn start(addr: &str, app: OAuthApp) -> std::io::Result<Self> {
        let (listener, local) = server::bind(addr).await?;
        let mut standin = Self::new(server::base_url(local), app);
        standin.serving = Some(server::spawn(listener, standin.router(), "slack"));
        Ok(standin)
    }

    /// Like [`SlackStandin::start`], keeping webhooks in `file` across runs
    /// (for `perly demo`, whose stored webhooks must keep working).
    pub async fn start_saved(addr: &str, app: OAuthApp, file: impl Into<std::path::PathBuf>) -> std::io::Result<Self> {
        let (listener, local) = server::bind(addr).await?;
        let mut standin = Self::new(server::base_url(local), app);
        if let Some(inner) = Arc::get_mut(&mut standin.inner) {
            inner.saved = HookFile(Some(file.into()));
        }
        standin.inner.restore();
        standin.serving = Some(server::spawn(listener, standin.router(), "slack"));
        Ok(standin)
    }

    /// A stand-in that is not served yet: mount [`SlackStandin::router`] so
    /// that it answers at `base_url` (which may carry a path prefix, e.g.
    /// `http://127.0.0.1:8080/_slack`, for a router nested at `/_slack`).
    pub fn new(base_url: impl Into<String>, app: OAuthApp) -> Self {
        let channels = CHANNELS
            .iter()
            .map(|(id, name)| Channel {
                id: (*id).into(),
                name: (*name).into(),
            })
            .collect();
        let inner = Slack {
            base: base_url.into().trim_end_matches('/').to_owned(),
            app,
            journal: Journal::default(),
            state: Mutex::new(State {
                channels,
                hooks: HashMap::new(),
                codes: Codes::default(),
            }),
            saved: HookFile::default(),
        };
        Self {
            inner: Arc::new(inner),
            serving: None,
        }
    }

    /// The whole stand-in as a router: OAuth, webhooks, the messages page
    /// and the `/_standin/*` control routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(page::messages))
            .route("/_standin/messages", get(page::messages))
            .route("/oauth/v2/authorize", get(oauth::authorize).post(oauth::decide))
            .route("/api/oauth.v2.access", post(oauth::access))
            .route("/services/{team}/{service}/{secret}", post(webhook::post))
            .route("/services/{service}", get(page::configuration))
            .merge(control::routes::<Slack>())
            .with_state(self.inner.clone())
    }

    /// `http://127.0.0.1:PORT`: serves `/oauth/v2/authorize` and
    /// `/api/oauth.v2.access`.
    pub fn base_url(&self) -> String {
        self.inner.base.clone()
    }

    /// Where webhooks live (`{hooks_url}/services/T…/B…/secret`); the same
    /// server as [`SlackStandin::base_url`].
    pub fn hooks_url(&self) -> String {
        self.inner.base.clone()
    }

    /// A webhook for `channel` (`#customer-health` or `customer-health`), as
    /// if the app had been installed earlier; returns its URL.
    pub fn create_webhook(&self, channel: &str) -> String {
        let mut state = self.inner.lock();
        let channel = Slack::channel(&mut state, channel);
        self.inner.new_hook(&mut state, channel)
    }

    /// Every accepted message (2xx), in arrival order.
    pub fn messages(&self) -> Vec<Received> {
        self.inner.journal.messages()
    }

    /// Every webhook POST, accepted or not, in arrival order.
    pub fn requests(&self) -> Vec<Received> {
        self.inner.journal.requests()
    }

    /// Webhook POSTs from the `from`-th on: what arrived since a reader last
    /// looked, without copying the whole journal.
    pub fn requests_from(&self, from: usize) -> Vec<Received> {
        self.inner.journal.requests_from(from)
    }

    /// Queues `fault` for the webhook at `webhook_url`.
    pub fn inject(&self, webhook_url: &str, fault: Fault) {
        self.inner.journal.inject(key_of(webhook_url), fault);
    }

    /// Runs the stand-in's clock `factor` times faster than the real one
    /// from now on (rate limits, `Retry-After`, arrival times): for tests
    /// that drive Perly with a clock sped up by the same factor. 1.0 goes
    /// back to the real clock.
    pub fn speed_up(&self, factor: f64) {
        self.inner.journal.speed_up(factor);
    }

    /// Moves the stand-in's clock on by `by`: for tests that move Perly's
    /// clock by hand and want the rate limits to see the same time.
    pub fn advance(&self, by: std::time::Duration) {
        self.inner.journal.advance(by);
    }

    /// Forgets every message and request (webhooks and faults stay).
    pub fn clear(&self) {
        self.inner.journal.clear();
    }

    /// Stops the server started by [`SlackStandin::start`] (all clones).
    pub fn shutdown(&self) {
        if let Some(s) = &self.serving {
            s.stop();
        }
    }
}

impl std::fmt::Debug for SlackStandin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackStandin")
            .field("base_url", &self.inner.base)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
