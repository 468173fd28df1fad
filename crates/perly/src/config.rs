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
    pub base_url: String,
    /// Slack only: incoming webhook URLs must start with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hooks_url: Option<String>,
    /// Salesforce only: production and sandbox login hosts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox_login_url: Option<String>,
    pub client_id: Option<String>,
    #[serde(skip_serializing)]
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
    /// How long a worker holds a channel while posting (seconds); a crashed
    /// worker's channels come back after this.
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
    pub fn worker_settings(&self) -> perly_delivery::worker::DeliverySettings {
        let timeout = std::time::Duration::from_millis(self.timeout_ms.clamp(100, 120_000));
        perly_delivery::worker::DeliverySettings {
            // The lease must outlast a post.
            lease: chrono::Duration::seconds(self.lease_secs.max(timeout.as_secs() + 1) as i64),
            concurrency: self.concurrency.clamp(1, 10_000),
            timeout,
            poll: std::time::Duration::from_millis(self.poll_interval_ms.clamp(10, 60_000)),
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

/// The per-API-key ingest rate limit (`[ingest]`), in rows (events or
/// customers) on `POST /api/v1/events` and `POST /api/v1/customers`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct IngestSettings {
    /// Rows per second one key may send, per server process; 0 turns the limit off.
    pub rate_per_second: u32,
    /// Rows one key may send at once before the rate applies.
    pub burst: u32,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            rate_per_second: 20_000,
            burst: 100_000,
        }
    }
}

/// All of Perly's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// Address to listen on.
    pub listen: String,
    /// Base URL used in links and OAuth redirect URIs.
    pub public_url: String,
    /// Encrypts secrets at rest. Required by `perly serve`.
    #[serde(skip_serializing)]
    pub secret_key: Option<SecretString>,
    /// Folder for the SQLite file and demo data.
    pub data_dir: PathBuf,
    /// Log filter (`tracing` env-filter syntax).
    pub log: String,
    pub scoring: ScoringSettings,
    pub delivery: DeliveryConfig,
    pub sync: SyncConfig,
    pub ingest: IngestSettings,
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
            data_dir: PathBuf::from("data"),
            log: "info".into(),
            scoring: ScoringSettings::default(),
            delivery: DeliveryConfig::default(),
            sync: SyncConfig::default(),
            ingest: IngestSettings::default(),
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
        fig.merge(Env::prefixed("PERLY_").split("__"))
            .extract()
            .map_err(Box::new)
    }

    /// The effective settings as TOML, secrets shown only as set/unset.
    pub fn to_redacted_toml(&self) -> String {
        let mut out = toml::to_string_pretty(self).unwrap_or_default();
        let mark = |s: &Option<SecretString>| match s {
            Some(v) if !v.expose_secret().is_empty() => "\"<set>\"",
            _ => "\"<unset>\"",
        };
        out.push_str(&format!(
            "\n# secrets (values never printed)\n# secret_key = {}\n# slack.client_secret = {}\n# discord.client_secret = {}\n# salesforce.client_secret = {}\n",
            mark(&self.secret_key),
            mark(&self.slack.client_secret),
            mark(&self.discord.client_secret),
            mark(&self.salesforce.client_secret),
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail fixes the closure's error type
    fn environment_overrides_defaults_and_secrets_never_print() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("PERLY_DATABASE_URL", "postgres://x/y");
            jail.set_env("PERLY_SLACK__BASE_URL", "http://127.0.0.1:9999");
            jail.set_env("PERLY_SECRET_KEY", "super-secret-value");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.database_url, "postgres://x/y");
            assert_eq!(s.slack.base_url, "http://127.0.0.1:9999");
            assert_eq!(s.listen, "127.0.0.1:8080");
            let printed = s.to_redacted_toml();
            assert!(!printed.contains("super-secret-value"));
            assert!(printed.contains("secret_key = \"<set>\""));
            assert!(!format!("{s:?}").contains("super-secret-value"));
            Ok(())
        });
    }
}
