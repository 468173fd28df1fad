//! Typed settings, loaded defaults → `--config` TOML file → environment
//! (`PERLY_SECTION__KEY`, e.g. `PERLY_DATABASE_URL`, `PERLY_SLACK__BASE_URL`).
//! Secrets are `SecretString`s: never serialised, redacted in `Debug` and in
//! `perly config print`.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Vendor endpoints and OAuth credentials of one integration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct VendorSettings {
    #[serde(deserialize_with = "text::string")]
    pub base_url: String,
    /// Slack only: incoming webhook URLs must start with it.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "text::optional")]
    pub hooks_url: Option<String>,
    /// Salesforce only: production and sandbox login hosts.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "text::optional")]
    pub login_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "text::optional")]
    pub sandbox_login_url: Option<String>,
    /// Discord application ids are all digits: see [`text`].
    #[serde(deserialize_with = "text::optional")]
    pub client_id: Option<String>,
    #[serde(skip_serializing, deserialize_with = "text::optional")]
    pub client_secret: Option<SecretString>,
}

/// Background scoring.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ScoringSettings {
    /// Customers scored per transaction.
    pub batch_size: usize,
    /// How often the worker looks for work when not woken (milliseconds).
    pub poll_interval_ms: u64,
    /// Customers not rescored for this many hours are rescored (decay of stale data).
    pub rescore_after_hours: i64,
    /// Run the rescoring worker in this process.
    pub worker: bool,
}

impl Default for ScoringSettings {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval_ms: 1000,
            rescore_after_hours: 24,
            worker: true,
        }
    }
}

/// The Slack/Discord delivery worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DeliveryConfig {
    /// Run the delivery worker in this process.
    pub worker: bool,
    /// How long a worker holds a channel without renewing its lease
    /// (seconds): renewed every third of it while a post is in flight; a
    /// crashed worker's channels come back after this.
    pub lease_secs: u64,
    /// Channels posted to at once.
    pub concurrency: usize,
    /// Timeout of one webhook post (milliseconds).
    pub timeout_ms: u64,
    /// How often to look for due alerts when not woken (milliseconds).
    pub poll_interval_ms: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            worker: true,
            lease_secs: 30,
            concurrency: 256,
            timeout_ms: 10_000,
            poll_interval_ms: 250,
        }
    }
}

impl DeliveryConfig {
    /// The worker's settings; `network` says whether webhooks may be on
    /// private networks (`[outbound]`).
    pub fn worker_settings(&self, network: perly_net::Policy) -> perly_delivery::worker::DeliverySettings {
        let timeout = std::time::Duration::from_millis(self.timeout_ms.clamp(100, 120_000));
        // The lease must outlast a post; it is renewed a third of the way
        // through while a post or its acknowledgement is in flight.
        let lease_secs = self.lease_secs.max(timeout.as_secs() + 1).clamp(3, 3_600);
        perly_delivery::worker::DeliverySettings {
            lease: chrono::Duration::seconds(lease_secs as i64),
            renew_every: std::time::Duration::from_millis(lease_secs * 1000 / 3),
            concurrency: self.concurrency.clamp(1, 10_000),
            timeout,
            poll: std::time::Duration::from_millis(self.poll_interval_ms.clamp(10, 60_000)),
            network,
        }
    }
}

/// The Salesforce sync worker (`[sync]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncConfig {
    /// Run the Salesforce sync worker in this process.
    pub worker: bool,
    /// How long a worker holds a sync without saving progress (seconds); a
    /// crashed worker's sync is picked up again after this.
    pub lease_secs: u64,
    /// How often to look for due syncs when not woken (milliseconds).
    pub poll_interval_ms: u64,
    /// First wait between polls of a Bulk query job (milliseconds).
    pub job_poll_ms: u64,
    /// Pause after Salesforce's limit answer or with Perly's share used up (minutes).
    pub limit_pause_minutes: i64,
    /// How often the outbox worker (score pushes, Tasks, Chatter posts)
    /// looks for due work when not woken (milliseconds).
    pub outbox_poll_ms: u64,
    /// First wait before retrying a push or action after a transient
    /// failure (seconds); it doubles per attempt, up to an hour.
    pub outbox_retry_secs: i64,
    /// The Account field a newly connected org matches customers on (its
    /// value is the customer's external id), set before the first sync so
    /// that it enriches the customers already there; unset: the Account
    /// Id. Each workspace can change it in Settings › Salesforce.
    pub external_id_field: Option<String>,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            worker: true,
            lease_secs: 120,
            poll_interval_ms: 5_000,
            job_poll_ms: 100,
            limit_pause_minutes: 30,
            outbox_poll_ms: 1_000,
            outbox_retry_secs: 15,
            external_id_field: None,
        }
    }
}

impl SyncConfig {
    pub fn worker_settings(&self) -> perly_salesforce::sync::SyncSettings {
        perly_salesforce::sync::SyncSettings {
            lease: chrono::Duration::seconds(self.lease_secs.clamp(5, 3_600) as i64),
            job_poll: std::time::Duration::from_millis(self.job_poll_ms.clamp(10, 60_000)),
            poll: std::time::Duration::from_millis(self.poll_interval_ms.clamp(10, 600_000)),
            limit_pause: chrono::Duration::minutes(self.limit_pause_minutes.clamp(1, 24 * 60)),
            ..perly_salesforce::sync::SyncSettings::default()
        }
    }

    pub fn outbox_settings(&self, public_url: &str) -> perly_salesforce::outbox::OutboxSettings {
        perly_salesforce::outbox::OutboxSettings {
            public_url: public_url.to_owned(),
            lease: chrono::Duration::seconds(self.lease_secs.clamp(5, 3_600) as i64),
            poll: std::time::Duration::from_millis(self.outbox_poll_ms.clamp(10, 600_000)),
            retry_after: chrono::Duration::seconds(self.outbox_retry_secs.clamp(0, 3_600)),
            limit_pause: chrono::Duration::minutes(self.limit_pause_minutes.clamp(1, 24 * 60)),
            ..perly_salesforce::outbox::OutboxSettings::default()
        }
    }
}

/// Outbound connections to vendors (`[outbound]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct OutboundSettings {
    /// Let Perly connect to loopback, private, link-local and other
    /// non-public addresses, and use plain-http Salesforce login URLs: for
    /// local stand-ins (tests, `perly demo`, benchmarks) only. Off by default.
    pub allow_private_networks: bool,
}

impl OutboundSettings {
    pub fn policy(&self) -> perly_net::Policy {
        perly_net::Policy {
            allow_private_networks: self.allow_private_networks,
        }
    }
}

/// Whether Perly is served over https (`[security] https`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HttpsMode {
    /// https when `public_url` starts with `https://`.
    #[default]
    Auto,
    /// Served over https, e.g. behind a TLS-terminating proxy.
    On,
    /// Plain http.
    Off,
}

impl Serialize for HttpsMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Auto => s.serialize_str("auto"),
            Self::On => s.serialize_bool(true),
            Self::Off => s.serialize_bool(false),
        }
    }
}

impl<'de> Deserialize<'de> for HttpsMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(true) => Ok(Self::On),
            Raw::Bool(false) => Ok(Self::Off),
            Raw::Text(t) => match t.trim().to_ascii_lowercase().as_str() {
                "auto" => Ok(Self::Auto),
                "true" => Ok(Self::On),
                "false" => Ok(Self::Off),
                other => Err(serde::de::Error::custom(format!(
                    "https must be auto, true or false, not `{other}`"
                ))),
            },
        }
    }
}

/// Sign-in throttling, sessions and https (`[security]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SecuritySettings {
    /// Proxies (addresses or CIDR ranges) whose `X-Forwarded-For` names the
    /// client; from any other peer the header is ignored.
    #[serde(deserialize_with = "text::list")]
    pub trusted_proxies: Vec<String>,
    /// `auto` (https when `public_url` is https), `true` or `false`: Secure
    /// cookies and HSTS.
    pub https: HttpsMode,
    /// A session without a request for this long ends (the 7-day cap holds too).
    pub session_idle_minutes: i64,
    /// The window failed sign-ins are counted in.
    pub signin_window_minutes: i64,
    /// Failed sign-ins per (email, client IP) in the window before that pair is refused.
    pub signin_max_failures: u32,
    /// Failed sign-ins per client IP, any email, in the window before that IP is refused.
    pub signin_max_failures_per_ip: u32,
    /// Failed sign-ins per email, from any IP, within an hour before that
    /// email is refused (from everywhere, its owner too, until they age out).
    pub signin_max_failures_per_email: u32,
}

impl Default for SecuritySettings {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            https: HttpsMode::Auto,
            session_idle_minutes: 12 * 60,
            signin_window_minutes: 15,
            signin_max_failures: 10,
            signin_max_failures_per_ip: 50,
            signin_max_failures_per_email: 100,
        }
    }
}

impl SecuritySettings {
    /// The web app's security settings for a server reached at `public_url`.
    pub fn web(&self, public_url: &str) -> Result<perly_web::Security, String> {
        let defaults = perly_store::SessionPolicy::default();
        Ok(perly_web::Security {
            https: match self.https {
                HttpsMode::Auto => public_url.starts_with("https://"),
                HttpsMode::On => true,
                HttpsMode::Off => false,
            },
            trusted_proxies: perly_web::client_ip::TrustedProxies::parse(&self.trusted_proxies)
                .map_err(|e| format!("[security] trusted_proxies: {e}"))?,
            sessions: perly_store::SessionPolicy {
                idle: chrono::Duration::minutes(self.session_idle_minutes.clamp(1, defaults.max_age.num_minutes())),
                ..defaults
            },
            signin: perly_store::SigninLimits {
                per_email_ip: self.signin_max_failures.clamp(1, 100_000),
                per_ip: self.signin_max_failures_per_ip.clamp(1, 100_000),
                window: chrono::Duration::minutes(self.signin_window_minutes.clamp(1, 24 * 60)),
                per_email: self.signin_max_failures_per_email.clamp(1, 100_000),
                ..perly_store::SigninLimits::default()
            },
        })
    }
}

/// The per-API-key ingest rate limit (`[ingest]`), in rows (events or
/// customers) on `POST /api/v1/events` and `POST /api/v1/customers`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct IngestSettings {
    /// Rows per second one key may send, per server process; 0 turns the limit off.
    pub rate_per_second: u32,
    /// Rows one key may send at once before the rate applies.
    pub burst: u32,
    /// Rows per second one workspace may send with all its keys together,
    /// per server process; 0 turns this ceiling off.
    pub workspace_rate_per_second: u32,
    /// Rows one workspace may send at once before its rate applies.
    pub workspace_burst: u32,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            rate_per_second: 20_000,
            burst: 100_000,
            workspace_rate_per_second: 40_000,
            workspace_burst: 200_000,
        }
    }
}

impl IngestSettings {
    /// The web app's ingest buckets.
    pub fn limit(&self) -> perly_web::rate_limit::IngestLimit {
        use perly_web::rate_limit::{IngestLimit, Rate};
        IngestLimit::new(
            Rate {
                per_second: self.rate_per_second,
                burst: self.burst,
            },
            Rate {
                per_second: self.workspace_rate_per_second,
                burst: self.workspace_burst,
            },
        )
    }
}

/// How log lines are written (`log_format`, `PERLY_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event; colours only on a terminal.
    #[default]
    Text,
    /// One JSON object per line (tracing-subscriber's JSON formatter).
    Json,
}

/// Prometheus metrics and probes for operators (`[metrics]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricsSettings {
    /// Address of the operators' listener, serving `/metrics` (Prometheus,
    /// OpenMetrics text), `/healthz` and `/readyz`. Unset (the default):
    /// no such listener, and `/metrics` is served nowhere. Keep it on
    /// loopback or an internal network: it is not for users.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "text::optional")]
    pub listen: Option<String>,
}

/// All of Perly's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// `sqlite://…` or `postgres://…`.
    #[serde(deserialize_with = "text::string")]
    pub database_url: String,
    /// Address to listen on.
    #[serde(deserialize_with = "text::string")]
    pub listen: String,
    /// Base URL used in links and OAuth redirect URIs.
    #[serde(deserialize_with = "text::string")]
    pub public_url: String,
    /// Encrypts secrets at rest: 32 random bytes as hex or base64
    /// (`perly secrets generate`). Required by `perly serve`.
    #[serde(skip_serializing, deserialize_with = "text::optional")]
    pub secret_key: Option<SecretString>,
    /// Keys `secret_key` replaced: they still decrypt, never encrypt, until
    /// `perly secrets rotate` has re-encrypted everything. A list, or one
    /// string with the keys separated by commas. An older Perly's
    /// passphrase is accepted here (decrypt-only).
    #[serde(skip_serializing, deserialize_with = "text::list")]
    pub previous_secret_keys: Vec<SecretString>,
    /// Folder for the SQLite file and demo data.
    #[serde(deserialize_with = "text::string")]
    pub data_dir: PathBuf,
    /// Log filter (`tracing` env-filter syntax).
    #[serde(deserialize_with = "text::string")]
    pub log: String,
    /// `text` (human-readable) or `json` (one object per line).
    pub log_format: LogFormat,
    pub scoring: ScoringSettings,
    pub delivery: DeliveryConfig,
    pub sync: SyncConfig,
    pub outbound: OutboundSettings,
    pub security: SecuritySettings,
    pub ingest: IngestSettings,
    pub metrics: MetricsSettings,
    pub slack: VendorSettings,
    pub discord: VendorSettings,
    pub salesforce: VendorSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            database_url: "sqlite://data/perly.db".into(),
            listen: "127.0.0.1:8080".into(),
            public_url: "http://127.0.0.1:8080".into(),
            secret_key: None,
            previous_secret_keys: Vec::new(),
            data_dir: PathBuf::from("data"),
            log: "info".into(),
            log_format: LogFormat::Text,
            scoring: ScoringSettings::default(),
            delivery: DeliveryConfig::default(),
            sync: SyncConfig::default(),
            outbound: OutboundSettings::default(),
            security: SecuritySettings::default(),
            ingest: IngestSettings::default(),
            metrics: MetricsSettings::default(),
            slack: VendorSettings {
                base_url: "https://slack.com".into(),
                hooks_url: Some("https://hooks.slack.com".into()),
                ..Default::default()
            },
            discord: VendorSettings {
                base_url: "https://discord.com".into(),
                ..Default::default()
            },
            salesforce: VendorSettings {
                base_url: "https://login.salesforce.com".into(),
                login_url: Some("https://login.salesforce.com".into()),
                sandbox_login_url: Some("https://test.salesforce.com".into()),
                ..Default::default()
            },
        }
    }
}

impl Settings {
    /// Defaults, then the file (if given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, Box<figment::Error>> {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(Box::new(figment::Error::from(format!(
                    "config file {} does not exist",
                    path.display()
                ))));
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        fig.merge(environment()).extract().map_err(Box::new)
    }

    /// The effective settings as TOML, secrets shown only as set/unset.
    pub fn to_redacted_toml(&self) -> String {
        // The database URL may carry a password: shown as `user:***@host`.
        let shown = Settings {
            database_url: crate::server::redact_url(&self.database_url),
            ..self.clone()
        };
        let mut out = toml::to_string_pretty(&shown).unwrap_or_default();
        let mark = |s: &Option<SecretString>| match s {
            Some(v) if !v.expose_secret().is_empty() => "\"<set>\"",
            _ => "\"<unset>\"",
        };
        out.push_str(&format!(
            "\n# secrets (values never printed)\n# secret_key = {}\n# previous_secret_keys = {} set\n# slack.client_secret = {}\n# discord.client_secret = {}\n# salesforce.client_secret = {}\n",
            mark(&self.secret_key),
            self.previous_secret_keys.len(),
            mark(&self.slack.client_secret),
            mark(&self.discord.client_secret),
            mark(&self.salesforce.client_secret),
        ));
        out
    }
}

/// The `PERLY_` environment. Figment reads every value as a TOML-like
/// scalar, so `007` would arrive as the number 7 and `1.10` as 1.1; a value
/// that a number would not spell back the same way is kept as the text it
/// was. (Numbers that do spell back, like a 19-digit Discord id, are turned
/// back into text by [`text`] where a setting is text.)
fn environment() -> Figment {
    let env = Env::prefixed("PERLY_").split("__");
    let verbatim: Vec<(String, String)> = env
        .iter()
        .filter(|(_, raw)| !spells_back(raw))
        .map(|(key, raw)| (key.as_str().to_owned(), raw))
        .collect();
    let skip: Vec<String> = verbatim.iter().map(|(k, _)| k.clone()).collect();
    let mut fig = Figment::from(env.filter(move |key| {
        // `filter` sees the name after the prefix and the split: `SLACK.CLIENT_ID`.
        !skip.contains(&key.as_str().to_ascii_lowercase())
    }));
    for (key, raw) in verbatim {
        fig = fig.merge(Serialized::default(&key, raw));
    }
    fig
}

/// Whether figment's reading of `raw` (a number, or anything else) gives
/// back `raw` when written out again.
fn spells_back(raw: &str) -> bool {
    use figment::value::{Num, Value};
    let parsed: Value = match raw.parse() {
        Ok(v) => v,
        Err(never) => match never {},
    };
    match parsed {
        Value::Num(_, n) => {
            let written = match n {
                Num::F32(f) => f.to_string(),
                Num::F64(f) => f.to_string(),
                n => n
                    .to_u128()
                    .map(|u| u.to_string())
                    .or_else(|| n.to_i128().map(|i| i.to_string()))
                    .unwrap_or_default(),
            };
            written == raw
        }
        _ => true,
    }
}

/// Text settings that also take numbers and booleans: `client_id =
/// 1234567890123456789` in TOML, or `PERLY_DISCORD__CLIENT_ID=…` (Discord's
/// application ids are all digits), arrive as numbers and are kept as the
/// digits they were.
mod text {
    use std::fmt;

    use serde::de::{self, Deserializer, Visitor};

    struct Text;

    impl<'de> Visitor<'de> for Text {
        type Value = String;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string (or a number, read as its digits)")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
            Ok(v)
        }
        fn visit_char<E: de::Error>(self, v: char) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u128<E: de::Error>(self, v: u128) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i128<E: de::Error>(self, v: i128) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
            Ok(v.to_string())
        }
    }

    struct Optional;

    impl<'de> Visitor<'de> for Optional {
        type Value = Option<String>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string (or a number, read as its digits)")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(Text).map(Some)
        }
    }

    /// A required text setting.
    pub fn string<'de, D: Deserializer<'de>, T: From<String>>(d: D) -> Result<T, D::Error> {
        d.deserialize_any(Text).map(T::from)
    }

    /// An optional text setting.
    pub fn optional<'de, D: Deserializer<'de>, T: From<String>>(d: D) -> Result<Option<T>, D::Error> {
        Ok(d.deserialize_option(Optional)?.map(T::from))
    }

    /// One item of a list, as text.
    struct Item(String);

    impl<'de> serde::Deserialize<'de> for Item {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(Text).map(Item)
        }
    }

    /// A list setting: a TOML array, or (what an environment variable
    /// holds) one text of items separated by commas, each trimmed, empty
    /// ones dropped. Items that are numbers are taken as their digits.
    pub fn list<'de, D: Deserializer<'de>, T: From<String>>(d: D) -> Result<Vec<T>, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            List(Vec<Item>),
            One(Item),
        }
        Ok(match <Raw as serde::Deserialize>::deserialize(d)? {
            Raw::List(items) => items.into_iter().map(|Item(s)| T::from(s)).collect(),
            Raw::One(Item(s)) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| T::from(s.to_owned()))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail fixes the closure's error type
    fn environment_overrides_defaults_and_secrets_never_print() {
        figment::Jail::expect_with(|jail| {
            jail.set_env(
                "PERLY_DATABASE_URL",
                "postgres://perly:DbPassw0rd@db.internal:5432/perly",
            );
            jail.set_env("PERLY_SLACK__BASE_URL", "http://127.0.0.1:9999");
            jail.set_env("PERLY_SECRET_KEY", "super-secret-value");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.database_url, "postgres://perly:DbPassw0rd@db.internal:5432/perly");
            assert_eq!(s.slack.base_url, "http://127.0.0.1:9999");
            assert_eq!(s.listen, "127.0.0.1:8080");
            let printed = s.to_redacted_toml();
            assert!(!printed.contains("super-secret-value"));
            assert!(!printed.contains("DbPassw0rd"), "{printed}");
            assert!(
                printed.contains("postgres://perly:***@db.internal:5432/perly"),
                "{printed}"
            );
            assert!(printed.contains("secret_key = \"<set>\""));
            assert!(!format!("{s:?}").contains("super-secret-value"));
            assert!(
                !s.outbound.allow_private_networks,
                "private networks are off by default"
            );
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail fixes the closure's error type
    fn private_networks_are_allowed_only_when_asked() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("PERLY_OUTBOUND__ALLOW_PRIVATE_NETWORKS", "true");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert!(s.outbound.policy().allow_private_networks);
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail fixes the closure's error type
    fn metrics_are_off_and_logs_are_text_unless_asked() {
        figment::Jail::expect_with(|jail| {
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.metrics.listen, None, "no metrics listener by default");
            assert_eq!(s.log_format, LogFormat::Text);
            jail.set_env("PERLY_METRICS__LISTEN", "127.0.0.1:9464");
            jail.set_env("PERLY_LOG_FORMAT", "json");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.metrics.listen.as_deref(), Some("127.0.0.1:9464"));
            assert_eq!(s.log_format, LogFormat::Json);
            jail.set_env("PERLY_LOG_FORMAT", "xml");
            assert!(Settings::load(None).is_err(), "an unknown format is refused");
            Ok(())
        });
    }

    const DISCORD_ID: &str = "1234567890123456789";

    #[test]
    #[allow(clippy::result_large_err)]
    fn all_digit_client_ids_and_secrets_load_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            for vendor in ["SLACK", "DISCORD", "SALESFORCE"] {
                jail.set_env(format!("PERLY_{vendor}__CLIENT_ID"), DISCORD_ID);
                jail.set_env(format!("PERLY_{vendor}__CLIENT_SECRET"), "9876543210987654321");
            }
            // Digits a number would not spell back: leading zeros, a decimal.
            jail.set_env("PERLY_SECRET_KEY", "0012345678901234567890");
            jail.set_env("PERLY_LOG", "1.10");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            for v in [&s.slack, &s.discord, &s.salesforce] {
                assert_eq!(v.client_id.as_deref(), Some(DISCORD_ID));
                let secret = v.client_secret.as_ref().map(|s| s.expose_secret().to_owned());
                assert_eq!(secret.as_deref(), Some("9876543210987654321"));
            }
            let key = s.secret_key.as_ref().map(|k| k.expose_secret().to_owned());
            assert_eq!(key.as_deref(), Some("0012345678901234567890"));
            assert_eq!(s.log, "1.10");
            // Numbers still load as numbers.
            jail.set_env("PERLY_SCORING__BATCH_SIZE", "250");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.scoring.batch_size, 250);
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn all_digit_client_ids_and_secrets_load_from_toml() {
        figment::Jail::expect_with(|jail| {
            let mut file = String::new();
            for vendor in ["slack", "discord", "salesforce"] {
                // (A bare TOML integer stops at i64::MAX; bigger ones need quotes.)
                file.push_str(&format!(
                    "[{vendor}]\nclient_id = {DISCORD_ID}\nclient_secret = 9123456789012345678\n"
                ));
            }
            jail.create_file("perly.toml", &file)?;
            let s = Settings::load(Some(Path::new("perly.toml"))).map_err(|e| e.to_string())?;
            for v in [&s.slack, &s.discord, &s.salesforce] {
                assert_eq!(v.client_id.as_deref(), Some(DISCORD_ID));
                let secret = v.client_secret.as_ref().map(|s| s.expose_secret().to_owned());
                assert_eq!(secret.as_deref(), Some("9123456789012345678"));
            }
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail fixes the closure's error type
    fn previous_secret_keys_come_as_a_list_or_separated_by_commas_and_never_print() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "perly.toml",
                "previous_secret_keys = [\"old, with a comma\", \"second\"]",
            )?;
            let s = Settings::load(Some(Path::new("perly.toml"))).map_err(|e| e.to_string())?;
            let keys: Vec<&str> = s.previous_secret_keys.iter().map(|k| k.expose_secret()).collect();
            assert_eq!(keys, ["old, with a comma", "second"]);

            jail.set_env("PERLY_PREVIOUS_SECRET_KEYS", "first-old-key,second-old-key");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            let keys: Vec<&str> = s.previous_secret_keys.iter().map(|k| k.expose_secret()).collect();
            assert_eq!(keys, ["first-old-key", "second-old-key"]);
            let printed = s.to_redacted_toml();
            assert!(!printed.contains("first-old-key"), "{printed}");
            assert!(printed.contains("previous_secret_keys = 2 set"), "{printed}");
            assert!(!format!("{s:?}").contains("first-old-key"));

            jail.set_env("PERLY_PREVIOUS_SECRET_KEYS", "12345678");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.previous_secret_keys.len(), 1);
            assert_eq!(s.previous_secret_keys[0].expose_secret(), "12345678");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail fixes the closure's error type
    fn security_settings_come_from_the_environment_and_the_file() {
        figment::Jail::expect_with(|jail| {
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            let web = s.security.web("https://perly.example.com").map_err(|e| e.to_string())?;
            assert!(web.https, "auto follows an https public URL");
            assert_eq!(
                web.signin.per_email, 100,
                "ASVS V2.2.1: at most 100 failures an hour per account"
            );
            assert_eq!(web.signin.email_window, chrono::Duration::hours(1));
            assert!(
                !s.security
                    .web("http://127.0.0.1:8080")
                    .map_err(|e| e.to_string())?
                    .https
            );

            jail.set_env("PERLY_SECURITY__HTTPS", "true");
            jail.set_env("PERLY_SECURITY__TRUSTED_PROXIES", "10.0.0.1, 10.1.0.0/16");
            jail.set_env("PERLY_SECURITY__SESSION_IDLE_MINUTES", "30");
            jail.set_env("PERLY_SECURITY__SIGNIN_MAX_FAILURES_PER_EMAIL", "40");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.security.https, HttpsMode::On);
            assert_eq!(s.security.trusted_proxies, ["10.0.0.1", "10.1.0.0/16"]);
            let web = s.security.web("http://127.0.0.1:8080").map_err(|e| e.to_string())?;
            assert!(web.https, "set, not guessed: behind a TLS-terminating proxy");
            assert_eq!(web.sessions.idle, chrono::Duration::minutes(30));
            assert_eq!(web.signin.per_email, 40);
            assert!(web.trusted_proxies.contains("10.1.2.3".parse().map_err(|_| "ip")?));

            jail.set_env("PERLY_SECURITY__HTTPS", "false");
            jail.set_env("PERLY_SECURITY__TRUSTED_PROXIES", "[\"192.0.2.1\"]");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.security.https, HttpsMode::Off);
            assert!(
                !s.security
                    .web("https://perly.example.com")
                    .map_err(|e| e.to_string())?
                    .https
            );
            assert_eq!(s.security.trusted_proxies, ["192.0.2.1"]);

            jail.create_file(
                "perly.toml",
                "[security]\nhttps = \"auto\"\ntrusted_proxies = [\"not-an-ip\"]\n",
            )?;
            jail.clear_env();
            let s = Settings::load(Some(Path::new("perly.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(s.security.https, HttpsMode::Auto);
            let err = s.security.web("http://x").expect_err("a bad proxy is refused");
            assert!(err.contains("not-an-ip"), "{err}");
            Ok(())
        });
    }
}
