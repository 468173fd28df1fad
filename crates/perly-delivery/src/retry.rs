//! The retry policy: what a vendor's answer to a webhook post means, and how
//! long to wait before trying again.
//!
//! [`classify`] reads the status, the body and the rate-limit headers and
//! says one of four things: delivered; try again (429, 408, 5xx, no answer),
//! honouring Slack's `Retry-After` and Discord's `retry_after`; the webhook
//! is gone (deleted, archived, revoked: the channel is marked broken and no
//! longer retried); or refused for good (a malformed payload: a dead letter
//! kept with the vendor's answer). [`backoff`] is capped exponential backoff
//! with full jitter for retries the vendor gave no time for.

use std::time::Duration;

use perly_domain::channels::Platform;
use rand::Rng;

/// What came back from one post.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    /// `Retry-After` (seconds, may be fractional on Discord).
    pub retry_after: Option<Duration>,
    /// Discord `X-RateLimit-Remaining`.
    pub rate_remaining: Option<u32>,
    /// Discord `X-RateLimit-Reset-After`.
    pub rate_reset_after: Option<Duration>,
}

impl Answer {
    /// Reads the answer's rate-limit headers.
    pub fn from_parts(status: u16, headers: &reqwest::header::HeaderMap, body: String) -> Self {
        let secs = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| Duration::from_secs_f64(s.min(86_400.0)))
        };
        Self {
            status,
            retry_after: secs("retry-after"),
            rate_remaining: headers
                .get("x-ratelimit-remaining")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok()),
            rate_reset_after: secs("x-ratelimit-reset-after"),
            body,
        }
    }
}

/// What to do after an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Delivered,
    /// Try again; after the vendor's wait when it gave one.
    Retry {
        after: Option<Duration>,
    },
    /// The webhook is gone: mark the channel broken with this reason.
    Gone(String),
    /// Refused for good (bad payload): keep as a dead letter.
    Refused,
}

/// Discord's JSON error code, if the body has one.
fn discord_code(body: &str) -> Option<i64> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("code").and_then(serde_json::Value::as_i64))
}

/// Discord's `retry_after` (seconds) from a 429 body.
fn discord_retry_after(body: &str) -> Option<Duration> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("retry_after").and_then(serde_json::Value::as_f64))
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(86_400.0)))
}

/// Classifies an answer from `platform`.
pub fn classify(platform: Platform, a: &Answer) -> Verdict {
    let status = a.status;
    if (200..300).contains(&status) {
        return Verdict::Delivered;
    }
    if status == 429 {
        let after = match platform {
            Platform::Discord => discord_retry_after(&a.body).or(a.retry_after),
            Platform::Slack => a.retry_after,
        };
        return Verdict::Retry { after };
    }
    if status == 408 || status >= 500 {
        return Verdict::Retry { after: a.retry_after };
    }
    let body = a.body.trim();
    match platform {
        Platform::Slack => match (status, body) {
            (404, _) | (410, _) => Verdict::Gone(format!(
                "Slack answered {status} {}: the channel or its webhook no longer exists",
                short(body)
            )),
            (403, _) | (401, _) => Verdict::Gone(format!(
                "Slack answered {status} {}: the webhook was revoked or posting is not allowed",
                short(body)
            )),
            _ => Verdict::Refused,
        },
        Platform::Discord => match (status, discord_code(body)) {
            (404, _) => Verdict::Gone(format!("Discord answered 404 {}: the webhook was deleted", short(body))),
            (401, _) | (403, _) => Verdict::Gone(format!(
                "Discord answered {status} {}: the webhook token is no longer valid",
                short(body)
            )),
            _ => Verdict::Refused,
        },
    }
}

/// The start of a vendor answer, for messages and logs.
pub fn short(body: &str) -> String {
    let flat: String = body.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    crate::message::truncate(flat.trim(), 300)
}

/// Backoff before retry number `attempts` (1 for the first retry): a random
/// wait in `[0, min(cap, base·2^(attempts-1))]`, at least `floor`.
pub fn backoff(attempts: u32, rng: &mut impl Rng) -> Duration {
    const BASE_MS: u64 = 1_000;
    const CAP_MS: u64 = 300_000;
    const FLOOR_MS: u64 = 250;
    let exp = attempts.saturating_sub(1).min(20);
    let ceiling = BASE_MS.saturating_mul(1 << exp).min(CAP_MS);
    Duration::from_millis(rng.gen_range(FLOOR_MS..=ceiling.max(FLOOR_MS)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            body: body.into(),
            ..Answer::default()
        }
    }

    #[test]
    fn slack_answers_are_classified_as_documented() {
        use Platform::Slack;
        assert_eq!(classify(Slack, &answer(200, "ok")), Verdict::Delivered);
        assert!(
            matches!(classify(Slack, &answer(404, "channel_not_found")), Verdict::Gone(r) if r.contains("channel_not_found"))
        );
        assert!(matches!(
            classify(Slack, &answer(410, "channel_is_archived")),
            Verdict::Gone(_)
        ));
        assert!(matches!(
            classify(Slack, &answer(403, "action_prohibited")),
            Verdict::Gone(_)
        ));
        assert!(matches!(
            classify(Slack, &answer(403, "invalid_token")),
            Verdict::Gone(_)
        ));
        assert_eq!(classify(Slack, &answer(400, "invalid_payload")), Verdict::Refused);
        assert_eq!(
            classify(Slack, &answer(500, "rollup_error")),
            Verdict::Retry { after: None }
        );
        let mut limited = answer(429, "");
        limited.retry_after = Some(Duration::from_secs(30));
        assert_eq!(
            classify(Slack, &limited),
            Verdict::Retry {
                after: Some(Duration::from_secs(30))
            }
        );
    }

    #[test]
    fn discord_answers_are_classified_as_documented() {
        use Platform::Discord;
        assert_eq!(classify(Discord, &answer(204, "")), Verdict::Delivered);
        assert!(matches!(
            classify(Discord, &answer(404, r#"{"message": "Unknown Webhook", "code": 10015}"#)),
            Verdict::Gone(r) if r.contains("Unknown Webhook")
        ));
        assert!(matches!(
            classify(
                Discord,
                &answer(401, r#"{"message": "Invalid Webhook Token", "code": 50027}"#)
            ),
            Verdict::Gone(_)
        ));
        assert_eq!(
            classify(
                Discord,
                &answer(400, r#"{"code": 50035, "message": "Invalid Form Body"}"#)
            ),
            Verdict::Refused
        );
        let limited = answer(
            429,
            r#"{"message": "You are being rate limited.", "retry_after": 0.64, "global": false}"#,
        );
        assert_eq!(
            classify(Discord, &limited),
            Verdict::Retry {
                after: Some(Duration::from_secs_f64(0.64))
            }
        );
        assert_eq!(classify(Discord, &answer(502, "")), Verdict::Retry { after: None });
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for attempts in 1..40 {
            let d = backoff(attempts, &mut rng);
            let ceiling = (1_000u64 << (attempts - 1).min(20)).min(300_000);
            assert!(d >= Duration::from_millis(250) && d <= Duration::from_millis(ceiling.max(250)));
        }
        let waits: std::collections::HashSet<_> = (0..20).map(|_| backoff(10, &mut rng)).collect();
        assert!(waits.len() > 10, "jitter spreads retries");
    }
}
