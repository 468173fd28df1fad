//! Slack's OAuth v2 install with the `incoming-webhook` scope: the user
//! picks a channel on Slack's authorize page, Slack redirects back with a
//! `code`, and `oauth.v2.access` exchanges it for a webhook. The exchange
//! authenticates with HTTP Basic (as Slack recommends) and answers HTTP 200
//! with `ok: false` on errors, so the body decides, not the status.

use serde::Deserialize;

use crate::oauth::{clean, post_token_form, url_with, InstallError, Installed, OAuthClient};

pub const SCOPE: &str = "incoming-webhook";

/// Where to send the admin: `{base}/oauth/v2/authorize?…`.
pub fn authorize_url(c: &OAuthClient, redirect_uri: &str, state: &str) -> String {
    url_with(
        &c.base_url,
        "/oauth/v2/authorize",
        &[
            ("client_id", c.client_id.as_str()),
            ("scope", SCOPE),
            ("redirect_uri", redirect_uri),
            ("state", state),
        ],
    )
}

#[derive(Deserialize)]
struct Access {
    ok: bool,
    error: Option<String>,
    team: Option<Team>,
    incoming_webhook: Option<Hook>,
}

#[derive(Deserialize)]
struct Team {
    id: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct Hook {
    url: String,
    channel: Option<String>,
    channel_id: Option<String>,
    configuration_url: Option<String>,
}

/// Exchanges `code` at `{base}/api/oauth.v2.access`.
pub async fn exchange(
    http: &perly_net::Outbound,
    c: &OAuthClient,
    code: &str,
    redirect_uri: &str,
) -> Result<Installed, InstallError> {
    let unavailable = |detail: String| InstallError::Unavailable {
        vendor: "Slack",
        detail,
    };
    let (status, body) = post_token_form(
        http,
        c,
        "Slack",
        "/api/oauth.v2.access",
        &[("code", code), ("redirect_uri", redirect_uri)],
    )
    .await?;
    let access: Access = serde_json::from_str(&body)
        .map_err(|_| unavailable(format!("HTTP {status}, body is not the JSON of oauth.v2.access")))?;
    if !access.ok {
        return Err(InstallError::Refused {
            vendor: "Slack",
            code: clean(access.error.as_deref().unwrap_or("unknown_error")),
            description: None,
        });
    }
    let hook = access.incoming_webhook.ok_or_else(|| {
        unavailable("the answer has no incoming_webhook (was the incoming-webhook scope granted?)".into())
    })?;
    let webhook_url = crate::webhook::check(perly_domain::channels::Platform::Slack, &hook.url, &c.webhook_base)?;
    let team = access.team.unwrap_or(Team { id: None, name: None });
    Ok(Installed {
        channel_name: hook.channel.clone().unwrap_or_else(|| "Slack channel".into()),
        webhook_url,
        details: serde_json::json!({
            "team_id": team.id,
            "team_name": team.name,
            "channel": hook.channel,
            "channel_id": hook.channel_id,
            "configuration_url": hook.configuration_url,
        }),
        unnamed_channel: false,
    })
}
