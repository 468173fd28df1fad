//! Discord's OAuth2 install with the `webhook.incoming` scope: the user
//! picks a server and channel on Discord's authorize page (and needs Manage
//! Webhooks there), Discord redirects back with a `code`, and the token
//! endpoint (form-encoded only, client auth by HTTP Basic) answers with an
//! access token and the new `webhook`. Perly keeps only the webhook; it needs
//! no access token to post.

use serde::Deserialize;

use crate::oauth::{clean, post_token_form, url_with, InstallError, Installed, OAuthClient};

pub const SCOPE: &str = "webhook.incoming";

/// Where to send the admin: `{base}/oauth2/authorize?…`.
pub fn authorize_url(c: &OAuthClient, redirect_uri: &str, state: &str) -> String {
    url_with(
        &c.base_url,
        "/oauth2/authorize",
        &[
            ("response_type", "code"),
            ("client_id", c.client_id.as_str()),
            ("scope", SCOPE),
            ("state", state),
            ("redirect_uri", redirect_uri),
        ],
    )
}

#[derive(Deserialize)]
struct Token {
    webhook: Option<Webhook>,
}

#[derive(Deserialize)]
struct Webhook {
    url: String,
    id: Option<String>,
    name: Option<String>,
    channel_id: Option<String>,
    guild_id: Option<String>,
}

#[derive(Deserialize)]
struct TokenError {
    error: String,
    error_description: Option<String>,
}

/// Exchanges `code` at `{base}/api/v10/oauth2/token`.
pub async fn exchange(
    http: &perly_net::Outbound,
    c: &OAuthClient,
    code: &str,
    redirect_uri: &str,
) -> Result<Installed, InstallError> {
    let unavailable = |detail: String| InstallError::Unavailable {
        vendor: "Discord",
        detail,
    };
    let (status, body) = post_token_form(
        http,
        c,
        "Discord",
        "/api/v10/oauth2/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
        ],
    )
    .await?;
    if !status.is_success() {
        return Err(match serde_json::from_str::<TokenError>(&body) {
            Ok(e) => InstallError::Refused {
                vendor: "Discord",
                code: clean(&e.error),
                description: e.error_description.as_deref().map(clean),
            },
            Err(_) => unavailable(format!("HTTP {status}")),
        });
    }
    let token: Token =
        serde_json::from_str(&body).map_err(|_| unavailable(format!("HTTP {status}, body is not a token answer")))?;
    let hook = token
        .webhook
        .ok_or_else(|| unavailable("the answer has no webhook (was the webhook.incoming scope granted?)".into()))?;
    let webhook_url = crate::webhook::check(perly_domain::channels::Platform::Discord, &hook.url, &c.webhook_base)?;
    let channel_name = match (&hook.name, &hook.channel_id) {
        (_, Some(id)) => format!("Discord channel {id}"),
        (Some(name), None) => name.clone(),
        (None, None) => "Discord channel".into(),
    };
    Ok(Installed {
        channel_name,
        webhook_url,
        details: serde_json::json!({
            "webhook_id": hook.id,
            "webhook_name": hook.name,
            "guild_id": hook.guild_id,
            "channel_id": hook.channel_id,
        }),
    })
}
