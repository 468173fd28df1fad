//! Checking webhook URLs before Perly stores them, so it never posts to an
//! arbitrary host: a Slack webhook must live under `PERLY_SLACK__HOOKS_URL`
//! at `/services/T…/B…/secret`, a Discord webhook under
//! `PERLY_DISCORD__BASE_URL` at `/api/webhooks/{id}/{token}` (or the
//! versioned `/api/v10/webhooks/…`). Scheme, host and port must match
//! exactly; a look-alike host (`hooks.slack.com.evil.example`) is refused.

use perly_domain::channels::Platform;
use url::Url;

/// Why a webhook URL was refused, in words for the admin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadWebhook(pub String);

/// Checks `raw` for `platform` against the configured base URL and returns
/// it normalised (no query string or fragment).
pub fn check(platform: Platform, raw: &str, base: &str) -> Result<String, BadWebhook> {
    let raw = raw.trim();
    let url = Url::parse(raw).map_err(|e| BadWebhook(format!("`{raw}` is not a URL ({e})")))?;
    let base_url =
        Url::parse(base).map_err(|_| BadWebhook(format!("the configured base URL `{base}` is not a URL")))?;
    let expected = match platform {
        Platform::Slack => format!("{}/services/T…/B…/…", base.trim_end_matches('/')),
        Platform::Discord => format!("{}/api/webhooks/{{id}}/{{token}}", base.trim_end_matches('/')),
    };
    let wrong = || BadWebhook(format!("a {} webhook URL looks like {expected}", platform.label()));
    if url.scheme() != base_url.scheme()
        || url.host_str() != base_url.host_str()
        || url.port_or_known_default() != base_url.port_or_known_default()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(wrong());
    }
    let prefix = base_url.path().trim_end_matches('/');
    let path = url.path().strip_prefix(prefix).ok_or_else(wrong)?;
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let ok = match platform {
        Platform::Slack => {
            matches!(segments.as_slice(), ["services", t, b, secret]
                if t.starts_with('T') && b.starts_with('B') && !secret.is_empty()
                && [t, b, secret].iter().all(|s| s.chars().all(|c| c.is_ascii_alphanumeric())))
        }
        Platform::Discord => {
            let rest = match segments.as_slice() {
                ["api", "webhooks", rest @ ..] => rest,
                ["api", v, "webhooks", rest @ ..] if v.starts_with('v') => rest,
                _ => &[][..],
            };
            matches!(rest, [id, token]
                if !id.is_empty() && id.chars().all(|c| c.is_ascii_digit())
                && !token.is_empty() && token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        }
    };
    if !ok {
        return Err(wrong());
    }
    let mut clean = url;
    clean.set_query(None);
    clean.set_fragment(None);
    Ok(clean.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_webhooks_must_live_under_the_hooks_url() {
        let base = "https://hooks.slack.com";
        let good = "https://hooks.slack.com/services/T9TK3CUKW/B0ABCDEF123/XXXXXXXXXXXXXXXXXXXXXXXX";
        assert_eq!(check(Platform::Slack, good, base).as_deref(), Ok(good));
        for bad in [
            "https://hooks.slack.com.evil.example/services/T1/B1/x",
            "http://hooks.slack.com/services/T1/B1/x",
            "https://user@hooks.slack.com/services/T1/B1/x",
            "https://hooks.slack.com/services/T1/B1",
            "https://hooks.slack.com/other/T1/B1/x",
            "not a url",
        ] {
            assert!(check(Platform::Slack, bad, base).is_err(), "{bad}");
        }
        // A stand-in with a port and a path prefix.
        assert!(check(
            Platform::Slack,
            "http://127.0.0.1:9/hooks/services/T1/B2/abc",
            "http://127.0.0.1:9/hooks"
        )
        .is_ok());
        assert!(check(
            Platform::Slack,
            "http://127.0.0.1:10/hooks/services/T1/B2/abc",
            "http://127.0.0.1:9/hooks"
        )
        .is_err());
    }

    #[test]
    fn discord_webhooks_must_live_under_the_discord_base_url() {
        let base = "https://discord.com";
        assert!(check(
            Platform::Discord,
            "https://discord.com/api/webhooks/347114750880120863/kKDdjX-a_1",
            base
        )
        .is_ok());
        assert!(check(Platform::Discord, "https://discord.com/api/v10/webhooks/1/t", base).is_ok());
        let e = check(Platform::Discord, "https://evil.example/api/webhooks/1/t", base).expect_err("other host");
        assert!(e.0.contains("https://discord.com/api/webhooks/{id}/{token}"), "{e}");
        assert!(check(Platform::Discord, "https://discord.com/api/webhooks/abc/t", base).is_err());
    }
}
