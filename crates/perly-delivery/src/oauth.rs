//! What both OAuth installs share: the result of a successful install (a
//! webhook and the vendor's details about it) and the ways one can fail,
//! each with a message fit to show the admin. The flows themselves are in
//! [`crate::slack::oauth`] and [`crate::discord::oauth`].

use perly_net::Outbound;
use secrecy::ExposeSecret;

/// The most of a token answer Perly reads (a few hundred bytes in practice).
pub const MAX_TOKEN_ANSWER_BYTES: usize = 1024 * 1024;

/// A webhook obtained by an OAuth install.
#[derive(Clone)]
pub struct Installed {
    /// What the channel is called in Perly at first (the admin may rename it).
    pub channel_name: String,
    pub webhook_url: String,
    /// Team/guild and channel ids, configuration URL: kept, never secret.
    pub details: serde_json::Value,
    /// The vendor did not say the channel's own name (Discord): the admin
    /// is asked to add it.
    pub unnamed_channel: bool,
}

impl std::fmt::Debug for Installed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Installed")
            .field("channel_name", &self.channel_name)
            .field("webhook_url", &"<redacted>")
            .field("details", &self.details)
            .finish()
    }
}

/// Why an install failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The vendor refused the exchange (`invalid_code`, `invalid_grant`, …).
    #[error("{vendor} refused the connection: {code}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        vendor: &'static str,
        code: String,
        description: Option<String>,
    },
    /// The vendor could not be reached or answered with something unusable.
    #[error("{vendor} could not be reached or answered unexpectedly: {detail}")]
    Unavailable { vendor: &'static str, detail: String },
    /// The returned webhook points somewhere Perly does not post to.
    #[error("{0}")]
    BadWebhook(#[from] crate::webhook::BadWebhook),
    /// OAuth is not configured (no client id or secret).
    #[error("{0} is not configured: set PERLY_{1}__CLIENT_ID and PERLY_{1}__CLIENT_SECRET")]
    NotConfigured(&'static str, &'static str),
}

/// OAuth settings of one vendor.
#[derive(Clone)]
pub struct OAuthClient {
    pub base_url: String,
    pub client_id: String,
    pub client_secret: secrecy::SecretString,
    /// Where vendor webhooks must live (Slack: the hooks URL; Discord: the base URL).
    pub webhook_base: String,
}

impl std::fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthClient")
            .field("base_url", &self.base_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

/// Posts a token-exchange form to `{base}{path}` with HTTP Basic client
/// authentication (as both vendors recommend) and returns the status and
/// body (at most [`MAX_TOKEN_ANSWER_BYTES`]); a transport failure is
/// `Unavailable` and never carries the URL.
pub(crate) async fn post_token_form(
    http: &Outbound,
    c: &OAuthClient,
    vendor: &'static str,
    path: &str,
    form: &[(&str, &str)],
) -> Result<(reqwest::StatusCode, String), InstallError> {
    let unavailable = |detail: String| InstallError::Unavailable { vendor, detail };
    let failed = |e: reqwest::Error| match perly_net::refusal(&e) {
        Some(r) => unavailable(r.to_string()),
        None => unavailable(e.without_url().to_string()),
    };
    let url = url::Url::parse(&format!("{}{path}", c.base_url.trim_end_matches('/')))
        .map_err(|e| unavailable(format!("the configured base URL is not a URL ({e})")))?;
    let resp = http
        .post(url)
        .map_err(|r| unavailable(r.to_string()))?
        .basic_auth(&c.client_id, Some(c.client_secret.expose_secret()))
        .form(form)
        .send()
        .await
        .map_err(failed)?;
    let status = resp.status();
    let body = perly_net::read_text_capped(resp, MAX_TOKEN_ANSWER_BYTES)
        .await
        .map_err(|e| match e {
            perly_net::BodyError::Transport(e) => failed(e),
            too_large => unavailable(too_large.to_string()),
        })?;
    Ok((status, body))
}

/// Vendor text fit to show an admin: no control characters, at most 200
/// characters.
pub(crate) fn clean(text: &str) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    crate::message::truncate(flat.trim(), 200)
}

/// `base` + `path` + the query, encoded.
pub(crate) fn url_with(base: &str, path: &str, query: &[(&str, &str)]) -> String {
    let q: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query)
        .finish();
    format!("{}{path}?{q}", base.trim_end_matches('/'))
}
