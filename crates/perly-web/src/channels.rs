//! What the API and the settings pages share about channels: the vendor
//! endpoints and OAuth clients ([`Integrations`]), checking a new channel
//! (name, webhook URL against the vendor host, rules), and the dry run
//! ("with these rules this channel would have received N alerts in the last
//! 30 days"). One way to do each, whichever edge asks.

use chrono::{DateTime, Duration, Utc};
use perly_delivery::oauth::OAuthClient;
use perly_domain::channels::{decide, ChannelRules, Decision, Platform};
use perly_domain::ids::WorkspaceId;
use perly_domain::FieldError;
use perly_store::{AlertQuery, AlertRecord, NewChannel};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;

/// Vendor endpoints and OAuth clients.
#[derive(Clone, Debug)]
pub struct Integrations {
    /// Slack OAuth (None until `PERLY_SLACK__CLIENT_ID`/`SECRET` are set).
    pub slack: Option<OAuthClient>,
    pub discord: Option<OAuthClient>,
    /// Slack webhooks must start with this (`PERLY_SLACK__HOOKS_URL`).
    pub slack_hooks_url: String,
    /// Discord webhooks live under this (`PERLY_DISCORD__BASE_URL`).
    pub discord_base_url: String,
    /// For OAuth exchanges (no redirects, no private networks unless allowed).
    pub http: perly_net::Outbound,
}

impl Integrations {
    pub fn oauth(&self, p: Platform) -> Option<&OAuthClient> {
        match p {
            Platform::Slack => self.slack.as_ref(),
            Platform::Discord => self.discord.as_ref(),
        }
    }

    pub fn webhook_base(&self, p: Platform) -> &str {
        match p {
            Platform::Slack => &self.slack_hooks_url,
            Platform::Discord => &self.discord_base_url,
        }
    }
}

/// Longest channel name.
pub const NAME_MAX: usize = 100;

pub fn check_name(name: &str, field: &str) -> Result<String, FieldError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > NAME_MAX {
        return Err(FieldError::new(
            "invalid_field",
            field,
            format!("a channel name is 1 to {NAME_MAX} characters, e.g. #customer-health"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(FieldError::new(
            "invalid_field",
            field,
            "a channel name cannot hold control characters",
        ));
    }
    Ok(name.to_owned())
}

/// Rules with the field path under `prefix` (e.g. `rules.`) on errors.
pub fn check_rules(rules: &ChannelRules, prefix: &str) -> Result<(), FieldError> {
    rules.validate().map_err(|mut e| {
        e.field = format!("{prefix}{}", e.field);
        e
    })
}

pub fn check_webhook(state: &AppState, platform: Platform, url: &str, field: &str) -> Result<String, FieldError> {
    perly_delivery::webhook::check(platform, url, state.integrations.webhook_base(platform))
        .map_err(|e| FieldError::new("invalid_webhook_url", field, e.0))
}

/// A pasted channel, checked field by field.
pub fn pasted(
    state: &AppState,
    platform: Platform,
    name: &str,
    webhook_url: &str,
    rules: ChannelRules,
) -> Result<NewChannel, FieldError> {
    let name = check_name(name, "name")?;
    let webhook_url = check_webhook(state, platform, webhook_url, "webhook_url")?;
    check_rules(&rules, "rules.")?;
    Ok(NewChannel {
        platform,
        name,
        webhook_url,
        source: "pasted",
        details: serde_json::json!({}),
        rules,
    })
}

/// What a dry run found.
#[derive(Debug, Serialize, ToSchema)]
pub struct DryRun {
    pub days: i64,
    /// Alerts of the period the channel's rules take.
    pub matched: usize,
    /// Of those, how many quiet hours would have held until business hours.
    pub held: usize,
    /// Alerts looked at.
    pub considered: usize,
    /// The matched alerts, newest first (at most 200 listed).
    pub alerts: Vec<AlertRecord>,
}

/// Runs `rules` over the workspace's alerts of the last `days` days.
pub async fn dry_run(
    state: &AppState,
    ws: WorkspaceId,
    rules: &ChannelRules,
    days: i64,
    now: DateTime<Utc>,
) -> Result<DryRun, perly_store::Error> {
    let days = days.clamp(1, 90);
    let mut query = AlertQuery {
        since: Some(now - Duration::days(days)),
        limit: 500,
        ..AlertQuery::default()
    };
    let (mut matched, mut held, mut considered) = (0, 0, 0);
    let mut listed = Vec::new();
    loop {
        let page = state.store.list_alerts(ws, &query).await?;
        for a in page.items {
            considered += 1;
            if let Decision::SendAt(at) = decide(rules, a.kind, a.risk_level, a.delta, a.occurred_at) {
                matched += 1;
                if at > a.occurred_at {
                    held += 1;
                }
                if listed.len() < 200 {
                    listed.push(a);
                }
            }
        }
        match page.next_cursor {
            Some(c) if considered < 100_000 => query.cursor = Some(c),
            _ => break,
        }
    }
    Ok(DryRun {
        days,
        matched,
        held,
        considered,
        alerts: listed,
    })
}
