//! Discord's OAuth2 install with the `webhook.incoming` scope: the user
//! picks a server and channel on Discord's authorize page (and needs Manage
//! Webhooks there), Discord redirects back with a `code`, and the token
//! endpoint (form-encoded only, client auth by HTTP Basic) answers with an
//! access token and the new `webhook`. Perly keeps only the webhook; it needs
//! no access token to post.
//!
//! Naming: the webhook object carries the server (`guild_id`) and channel
//! (`channel_id`) ids but neither name, and Discord's API offers a user
//! token no way to read a channel (`GET /channels/{id}` takes a bot token).
//! The server's name is documented for a user token: with the `guilds`
//! scope, `GET /users/@me/guilds` lists the user's servers (a user is in at
//! most 200, one page of `limit=200`). So Perly asks for `guilds` too, reads
//! that list once with the access token from the exchange (then forgets
//! the token), and names the channel after its server; the admin can add
//! the channel's name on the channel's page.

use serde::Deserialize;

use crate::oauth::{clean, post_token_form, url_with, InstallError, Installed, OAuthClient};

/// `webhook.incoming` makes the webhook; `guilds` lets Perly read the
/// server's name (see the module docs).
pub const SCOPE: &str = "webhook.incoming guilds";

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
    access_token: Option<String>,
    scope: Option<String>,
    webhook: Option<Webhook>,
}

/// A partial guild of `GET /users/@me/guilds`.
#[derive(Deserialize)]
struct PartialGuild {
    id: String,
    name: String,
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
    let granted_guilds = token
        .scope
        .as_deref()
        .is_some_and(|s| s.split([' ', '+']).any(|x| x == "guilds"));
    let guild_name = match (&token.access_token, &hook.guild_id) {
        (Some(access), Some(guild)) if granted_guilds => guild_name(http, c, access, guild).await,
        _ => None,
    };
    Ok(Installed {
        channel_name: channel_name(guild_name.as_deref()),
        webhook_url,
        details: serde_json::json!({
            "webhook_id": hook.id,
            "webhook_name": hook.name,
            "guild_id": hook.guild_id,
            "guild_name": guild_name,
            "channel_id": hook.channel_id,
        }),
        unnamed_channel: true,
    })
}

/// What a new channel is called: after its server when its name is known
/// (never after a numeric id).
pub fn channel_name(guild: Option<&str>) -> String {
    match guild.map(clean).filter(|g| !g.is_empty()) {
        Some(g) => g,
        None => "Discord channel".into(),
    }
}

/// The name of server `guild_id` from `GET {base}/api/v10/users/@me/guilds`
/// with the install's access token; `None` (logged) when it cannot be read:
/// the install stands without it.
async fn guild_name(http: &perly_net::Outbound, c: &OAuthClient, access_token: &str, guild_id: &str) -> Option<String> {
    let url = url::Url::parse(&format!(
        "{}/api/v10/users/@me/guilds?limit=200",
        c.base_url.trim_end_matches('/')
    ))
    .ok()?;
    let read = async {
        let resp = http
            .request(reqwest::Method::GET, url)
            .map_err(|r| r.to_string())?
            .bearer_auth(access_token)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = resp.status();
        let body = perly_net::read_text_capped(resp, crate::oauth::MAX_TOKEN_ANSWER_BYTES)
            .await
            .map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        serde_json::from_str::<Vec<PartialGuild>>(&body).map_err(|_| "the answer is not a list of guilds".to_owned())
    };
    match read.await {
        Ok(guilds) => guilds.into_iter().find(|g| g.id == guild_id).map(|g| g.name),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the Discord server's name; the channel keeps a generic one");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_is_named_after_its_server_never_its_id() {
        assert_eq!(channel_name(Some("My Server")), "My Server");
        assert_eq!(channel_name(Some("  Tabs\tand\nlines ")), "Tabs and lines");
        assert_eq!(channel_name(Some("")), "Discord channel");
        assert_eq!(channel_name(None), "Discord channel");
    }

    #[test]
    fn the_install_asks_for_the_server_names_too() {
        let c = OAuthClient {
            base_url: "https://discord.com".into(),
            client_id: "1".into(),
            client_secret: secrecy::SecretString::from("s".to_owned()),
            webhook_base: "https://discord.com".into(),
        };
        let url = authorize_url(&c, "https://perly.example/cb", "st");
        assert!(url.contains("scope=webhook.incoming+guilds"), "{url}");
    }
}
