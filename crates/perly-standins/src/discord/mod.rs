//! The Discord stand-in: two seeded guilds ("Acme CS", "Acme Sales") with
//! four text channels each, an OAuth2 install with the `webhook.incoming`
//! scope (plus `guilds`: `GET /users/@me/guilds` with the access token lists
//! the user's servers, which is how an app learns the server's name), and
//! Execute Webhook.
//!
//! A request moves like this: `oauth` serves `/oauth2/authorize` (consent
//! page and form) and `/api/v10/oauth2/token` (code → access token + a new
//! webhook); `webhook` serves `POST /api/webhooks/{id}/{token}` (also under
//! `/api/v6`…`/api/v10`): fault, rate limits (5 per 2 s per webhook, 30 per
//! 60 s per channel), payload checks against the bundled schema plus the
//! rules a schema cannot express, then 204 or (`?wait=true`) 200 with the
//! message; every answer carries `X-RateLimit-*` headers and is written to
//! the journal; `page` draws the journal at `GET /` as Discord would.

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
use crate::rate::FixedWindow;
use crate::saved::{HookFile, SavedHook};
use crate::server::{self, Serving};
use crate::view::HookOption;
use crate::{Fault, OAuthApp, Received};

/// The application every install belongs to.
pub(crate) const APPLICATION_ID: &str = "1187730590492196864";
/// The name Discord gives the webhook an install creates.
pub(crate) const WEBHOOK_NAME: &str = "Perly";

/// A seeded guild: id, name and its channels as (id, name).
type SeedGuild = (&'static str, &'static str, [(&'static str, &'static str); 4]);

const GUILDS: [SeedGuild; 2] = [
    (
        "1290926792226357250",
        "Acme CS",
        [
            ("1345626669224982402", "customer-health"),
            ("1345626669224982403", "cs-escalations"),
            ("1345626669224982404", "revenue-signals"),
            ("1345626669224982405", "billing-alerts"),
        ],
    ),
    (
        "1290926792226357251",
        "Acme Sales",
        [
            ("1345626669224982412", "customer-health"),
            ("1345626669224982413", "cs-escalations"),
            ("1345626669224982414", "revenue-signals"),
            ("1345626669224982415", "billing-alerts"),
        ],
    ),
];

/// Community-observed limits (`specs/discord/limits_constructed.json`).
const WEBHOOK_LIMIT: u32 = 5;
const WEBHOOK_WINDOW: Duration = Duration::from_secs(2);
const CHANNEL_LIMIT: u32 = 30;
const CHANNEL_WINDOW: Duration = Duration::from_secs(60);

/// A local Discord. Cheap to clone; all clones share one server and state.
#[derive(Clone)]
pub struct DiscordStandin {
    inner: Arc<Discord>,
    serving: Option<Serving>,
}

#[derive(Clone, Debug)]
pub(crate) struct Channel {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) guild_id: String,
    pub(crate) guild: String,
}

pub(crate) struct Hook {
    pub(crate) id: String,
    pub(crate) token: String,
    pub(crate) url: String,
    pub(crate) channel: Channel,
}

/// What the user approved on the consent page.
#[derive(Clone, Debug)]
pub(crate) struct Grant {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) scope: String,
    pub(crate) channel: Channel,
}

pub(crate) struct Discord {
    pub(crate) base: String,
    pub(crate) app: OAuthApp,
    pub(crate) journal: Journal,
    state: Mutex<State>,
    saved: HookFile,
}

pub(crate) struct State {
    pub(crate) channels: Vec<Channel>,
    /// Keyed by webhook id.
    pub(crate) hooks: HashMap<String, Hook>,
    pub(crate) codes: Codes<Grant>,
    /// Refresh token → granted scope.
    pub(crate) refresh_tokens: HashMap<String, String>,
    /// Access token → granted scope (for `GET /users/@me/guilds`).
    pub(crate) access_tokens: HashMap<String, String>,
    /// Per webhook id (known or not: Discord limits 404s too).
    pub(crate) webhook_windows: HashMap<String, FixedWindow>,
    /// Per channel id.
    pub(crate) channel_windows: HashMap<String, FixedWindow>,
}

impl State {
    pub(crate) fn webhook_window(&mut self, id: &str) -> &mut FixedWindow {
        self.webhook_windows
            .entry(id.to_owned())
            .or_insert_with(|| FixedWindow::new(WEBHOOK_LIMIT, WEBHOOK_WINDOW))
    }

    pub(crate) fn channel_window(&mut self, id: &str) -> &mut FixedWindow {
        self.channel_windows
            .entry(id.to_owned())
            .or_insert_with(|| FixedWindow::new(CHANNEL_LIMIT, CHANNEL_WINDOW))
    }
}

/// A snowflake-looking id: 19 digits.
pub(crate) fn snowflake() -> String {
    grant::random_digits(19)
}

impl Discord {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The channel for `name`: `customer-health` or `#customer-health` (in
    /// the first guild that has it) or `Acme Sales/customer-health`; created
    /// in the first guild if no guild has it.
    pub(crate) fn channel(state: &mut State, name: &str) -> Channel {
        let (guild, channel) = match name.split_once('/') {
            Some((g, c)) => (Some(g.trim()), c),
            None => (None, name),
        };
        let channel = channel.trim().trim_start_matches('#').to_owned();
        if let Some(c) = state
            .channels
            .iter()
            .find(|c| c.name == channel && guild.is_none_or(|g| c.guild == g))
        {
            return c.clone();
        }
        let (guild_id, guild) = match guild {
            Some(g) => match state.channels.iter().find(|c| c.guild == g) {
                Some(c) => (c.guild_id.clone(), c.guild.clone()),
                None => (snowflake(), g.to_owned()),
            },
            None => (GUILDS[0].0.to_owned(), GUILDS[0].1.to_owned()),
        };
        let c = Channel {
            id: snowflake(),
            name: channel,
            guild_id,
            guild,
        };
        state.channels.push(c.clone());
        c
    }

    /// A new webhook for `channel`, returning its URL.
    pub(crate) fn new_hook(&self, state: &mut State, channel: Channel) -> String {
        let id = snowflake();
        let token = grant::random_token(68);
        let url = format!("{}/api/webhooks/{id}/{token}", self.base);
        state.hooks.insert(
            id.clone(),
            Hook {
                id,
                token,
                url: url.clone(),
                channel,
            },
        );
        self.save(state);
        url
    }

    fn save(&self, state: &State) {
        let hooks: Vec<SavedHook> = state
            .hooks
            .values()
            .map(|h| SavedHook {
                url: h.url.clone(),
                channel: format!("{}/{}", h.channel.guild, h.channel.name),
            })
            .collect();
        self.saved.save(&hooks);
    }

    /// Webhooks saved by an earlier run.
    fn restore(&self) {
        let mut state = self.lock();
        for h in self.saved.load() {
            let path = h.url.split('?').next().unwrap_or_default();
            let mut parts = path.rsplit('/');
            let (Some(token), Some(id)) = (parts.next(), parts.next()) else {
                continue;
            };
            let (id, token) = (id.to_owned(), token.to_owned());
            let channel = Self::channel(&mut state, &h.channel);
            state.hooks.insert(
                id.clone(),
                Hook {
                    id,
                    token,
                    url: h.url,
                    channel,
                },
            );
        }
    }
}

impl Control for Discord {
    const VENDOR: &'static str = "Discord";
    const DARK: bool = true;

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
                label: format!("{} #{}", h.channel.guild, h.channel.name),
            })
            .collect();
        hooks.sort_by(|a, b| a.label.cmp(&b.label).then(a.url.cmp(&b.url)));
        hooks
    }

    fn key_of(&self, url: &str) -> String {
        key_of(url)
    }

    fn url_of(&self, key: &str) -> String {
        self.lock()
            .hooks
            .get(key)
            .map(|h| h.url.clone())
            .unwrap_or_else(|| format!("{}/api/webhooks/{key}/…", self.base))
    }
}

/// The webhook id: the path segment after `webhooks`.
fn key_of(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let segments: Vec<&str> = path.split('/').collect();
    match segments.iter().rposition(|s| *s == "webhooks") {
        Some(i) => segments.get(i + 1).copied().unwrap_or_default().to_owned(),
        None => path.to_owned(),
    }
}

impl DiscordStandin {
    /// Binds `addr` (e.g. `"127.0.0.1:0"`) and serves the stand-in on the
    /// current tokio runtime until [`DiscordStandin::shutdown`] or the
    /// runtime ends.
    pub async fn start(addr: &str, app: OAuthApp) -> std::io::Result<Self> {
        let (listener, local) = server::bind(addr).await?;
        let mut standin = Self::new(server::base_url(local), app);
        standin.serving = Some(server::spawn(listener, standin.router(), "discord"));
        Ok(standin)
    }

    /// Like [`DiscordStandin::start`], keeping webhooks in `file` across
    /// runs (for `perly demo`, whose stored webhooks must keep working).
    pub async fn start_saved(addr: &str, app: OAuthApp, file: impl Into<std::path::PathBuf>) -> std::io::Result<Self> {
        let (listener, local) = server::bind(addr).await?;
        let mut standin = Self::new(server::base_url(local), app);
        if let Some(inner) = Arc::get_mut(&mut standin.inner) {
            inner.saved = HookFile(Some(file.into()));
        }
        standin.inner.restore();
        standin.serving = Some(server::spawn(listener, standin.router(), "discord"));
        Ok(standin)
    }

    /// A stand-in that is not served yet: mount [`DiscordStandin::router`]
    /// so that it answers at `base_url` (which may carry a path prefix).
    pub fn new(base_url: impl Into<String>, app: OAuthApp) -> Self {
        let channels = GUILDS
            .iter()
            .flat_map(|(guild_id, guild, channels)| {
                channels.iter().map(|(id, name)| Channel {
                    id: (*id).into(),
                    name: (*name).into(),
                    guild_id: (*guild_id).into(),
                    guild: (*guild).into(),
                })
            })
            .collect();
        let inner = Discord {
            base: base_url.into().trim_end_matches('/').to_owned(),
            app,
            journal: Journal::default(),
            state: Mutex::new(State {
                channels,
                hooks: HashMap::new(),
                codes: Codes::default(),
                refresh_tokens: HashMap::new(),
                access_tokens: HashMap::new(),
                webhook_windows: HashMap::new(),
                channel_windows: HashMap::new(),
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
        let mut router = Router::new()
            .route("/", get(page::messages))
            .route("/_standin/messages", get(page::messages))
            .route("/oauth2/authorize", get(oauth::authorize).post(oauth::decide))
            .route("/api/oauth2/authorize", get(oauth::authorize).post(oauth::decide))
            .route("/api/oauth2/token", post(oauth::token))
            .route("/api/users/@me/guilds", get(oauth::my_guilds))
            .route("/api/webhooks/{id}/{token}", post(webhook::post));
        for v in 6..=10 {
            router = router
                .route(&format!("/api/v{v}/oauth2/token"), post(oauth::token))
                .route(&format!("/api/v{v}/users/@me/guilds"), get(oauth::my_guilds))
                .route(&format!("/api/v{v}/webhooks/{{id}}/{{token}}"), post(webhook::post));
        }
        router
            .merge(control::routes::<Discord>())
            .with_state(self.inner.clone())
    }

    /// `http://127.0.0.1:PORT`: serves `/oauth2/authorize`,
    /// `/api/v10/oauth2/token` and `/api/webhooks/{id}/{token}`.
    pub fn base_url(&self) -> String {
        self.inner.base.clone()
    }

    /// A webhook for `channel` (`customer-health`, or `Acme Sales/customer-health`
    /// for the second guild), as if the app had been installed earlier;
    /// returns `{base}/api/webhooks/{id}/{token}`.
    pub fn create_webhook(&self, channel: &str) -> String {
        let mut state = self.inner.lock();
        let channel = Discord::channel(&mut state, channel);
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

    /// Stops the server started by [`DiscordStandin::start`] (all clones).
    pub fn shutdown(&self) {
        if let Some(s) = &self.serving {
            s.stop();
        }
    }
}

impl std::fmt::Debug for DiscordStandin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordStandin")
            .field("base_url", &self.inner.base)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
