//! Pages both stand-ins share: the OAuth error page and the faults page,
//! plus the small formatting helpers the vendor pages use. All pages are
//! askama templates under `templates/` (HTML-escaped by default); the
//! vendor-specific pages (consent, messages) live in `slack::page` and
//! `discord::page`.

use askama::Template;
use chrono::{DateTime, Utc};

use crate::{Fault, Received};

/// The vendor's error page for an authorize request it cannot serve.
#[derive(Template)]
#[template(path = "oauth_error.html")]
pub(crate) struct OAuthErrorPage {
    pub(crate) vendor: &'static str,
    pub(crate) dark: bool,
    pub(crate) code: String,
    pub(crate) detail: String,
}

/// A webhook the faults form can target.
pub(crate) struct HookOption {
    pub(crate) url: String,
    pub(crate) label: String,
}

/// A pending fault, described.
pub(crate) struct PendingFault {
    pub(crate) url: String,
    pub(crate) fault: String,
}

/// `GET /_standin/faults`: inject a fault into one webhook.
#[derive(Template)]
#[template(path = "faults.html")]
pub(crate) struct FaultsPage {
    pub(crate) vendor: &'static str,
    pub(crate) dark: bool,
    /// Path prefix of the stand-in's base URL ("" unless it is mounted).
    pub(crate) root: String,
    pub(crate) hooks: Vec<HookOption>,
    pub(crate) pending: Vec<PendingFault>,
    pub(crate) kinds: Vec<(&'static str, &'static str)>,
}

/// The fault kinds the form offers, as (value, label).
pub(crate) fn fault_kinds(vendor: &'static str) -> Vec<(&'static str, &'static str)> {
    let mut kinds = vec![
        ("status500", "500 Internal Server Error"),
        ("status502", "502 Bad Gateway"),
        ("status503", "503 Service Unavailable"),
        ("ratelimit", "429 rate limited"),
        ("delete", "webhook deleted (permanent)"),
        ("revoke", "token revoked (permanent)"),
        ("slow", "slow answers"),
    ];
    if vendor == "Slack" {
        kinds.insert(5, ("archive", "channel archived (permanent)"));
    }
    kinds
}

/// The form body of `POST /_standin/faults`.
#[derive(serde::Deserialize)]
pub(crate) struct FaultForm {
    pub(crate) webhook_url: String,
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) times: Option<String>,
    #[serde(default)]
    pub(crate) ms: Option<String>,
    #[serde(default)]
    pub(crate) clear: Option<String>,
}

impl FaultForm {
    /// The fault the form asks for; unknown kinds ask for none.
    pub(crate) fn fault(&self) -> Option<Fault> {
        let times = self.times.as_deref().and_then(|t| t.trim().parse().ok()).unwrap_or(1);
        let ms = self.ms.as_deref().and_then(|t| t.trim().parse().ok()).unwrap_or(2_000);
        Some(match self.kind.as_str() {
            "status500" => Fault::Status { status: 500, times },
            "status502" => Fault::Status { status: 502, times },
            "status503" => Fault::Status { status: 503, times },
            "ratelimit" => Fault::RateLimit {
                retry_after_ms: ms,
                times,
            },
            "delete" => Fault::Delete,
            "archive" => Fault::Archive,
            "revoke" => Fault::Revoke,
            "slow" => Fault::Slow { delay_ms: ms, times },
            _ => return None,
        })
    }
}

pub(crate) fn describe(fault: &Fault) -> String {
    match fault {
        Fault::Status { status, times } => format!("HTTP {status}, {times} more"),
        Fault::RateLimit { retry_after_ms, times } => {
            format!("429, retry after {retry_after_ms} ms, {times} more")
        }
        Fault::Delete => "deleted".into(),
        Fault::Archive => "archived".into(),
        Fault::Revoke => "revoked".into(),
        Fault::Slow { delay_ms, times } => format!("slow by {delay_ms} ms, {times} more"),
    }
}

/// The path part of a base URL, without a trailing slash ("" for a root).
pub(crate) fn root(base: &str) -> String {
    url::Url::parse(base)
        .map(|u| u.path().trim_end_matches('/').to_owned())
        .unwrap_or_default()
}

/// "2026-08-24 09:30:00 UTC"
pub(crate) fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The request body, pretty-printed, for the "raw" disclosure.
pub(crate) fn raw(r: &Received) -> String {
    serde_json::to_string_pretty(&r.body).unwrap_or_default()
}

/// A JSON value as display text: strings as-is, numbers printed, else empty.
pub(crate) fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// A link target only if it is http(s): nothing else goes into an `href`.
pub(crate) fn link(v: &serde_json::Value) -> Option<String> {
    let s = v.as_str()?;
    (s.starts_with("https://") || s.starts_with("http://")).then(|| s.to_owned())
}
