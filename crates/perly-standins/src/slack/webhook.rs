//! `POST /services/T…/B…/secret`: Slack's incoming webhook.
//!
//! In order: unknown webhook → 404 `no_service`; an injected `Slow` fault
//! delays; an injected fault answers; the per-webhook token bucket (five,
//! one a second) answers 429 with `Retry-After`; a body that is not JSON
//! sent as `application/json` → 400 `invalid_payload`; a payload the
//! bundled schema refuses → 400 `no_text` / `too_many_attachments` /
//! `invalid_blocks` / `invalid_attachments` / `invalid_payload`; otherwise
//! 200 `ok` (text/plain). Every answer is written to the journal.

use std::sync::{Arc, LazyLock};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use jsonschema::error::ValidationErrorKind;
use jsonschema::Validator;
use serde_json::{json, Value};

use super::Slack;
use crate::grant;
use crate::schema;
use crate::{Fault, Received};

static PAYLOAD: LazyLock<Validator> = LazyLock::new(|| {
    schema::compile(&schema::parse(include_str!(
        "../../specs/slack_incoming_webhook_payload.schema.json"
    )))
});

/// One answer, before it becomes a response and a journal entry.
struct Answer {
    status: StatusCode,
    body: String,
    json: bool,
    retry_after_secs: Option<u64>,
}

impl Answer {
    fn text(status: StatusCode, body: &str) -> Self {
        Self {
            status,
            body: body.to_owned(),
            json: false,
            retry_after_secs: None,
        }
    }

    /// Slack documents only the status and `Retry-After` for a webhook 429;
    /// the body is the one observed in 2023
    /// (`specs/slack/examples/rate_limit_429_examples.json`).
    fn rate_limited(secs: u64) -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            body: json!({"retry_after": secs, "ok": false, "error": "rate_limited"}).to_string(),
            json: true,
            retry_after_secs: Some(secs),
        }
    }

    fn into_response(self) -> Response {
        let mut headers = HeaderMap::new();
        let content_type = if self.json {
            "application/json"
        } else {
            "text/plain; charset=utf-8"
        };
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        (self.status, headers, self.body).into_response()
    }
}

/// Whole seconds, rounded up, at least one.
fn whole_seconds(ms: u128) -> u64 {
    u64::try_from(ms.div_ceil(1000)).unwrap_or(u64::MAX).max(1)
}

/// The body Slack gives with an injected status.
fn status_body(status: u16) -> &'static str {
    match status {
        400 => "invalid_payload",
        403 => "action_prohibited",
        404 => "channel_not_found",
        410 => "channel_is_archived",
        429 => "rate_limited",
        _ => "rollup_error",
    }
}

fn fault_answer(fault: &Fault) -> Option<Answer> {
    Some(match fault {
        Fault::Status { status, .. } => Answer::text(
            StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            status_body(*status),
        ),
        Fault::RateLimit { retry_after_ms, .. } => Answer::rate_limited(whole_seconds(u128::from(*retry_after_ms))),
        // 404 `channel_not_found` is the pair Slack documents (changelog
        // 2016-05-17); `no_service` has only an observed status.
        Fault::Delete => Answer::text(StatusCode::NOT_FOUND, "channel_not_found"),
        Fault::Archive => Answer::text(StatusCode::GONE, "channel_is_archived"),
        Fault::Revoke => Answer::text(StatusCode::FORBIDDEN, "invalid_token"),
        Fault::Slow { .. } => return None,
    })
}

/// The error code Slack gives for a payload, or `None` if it is accepted.
pub(crate) fn check_payload(payload: &Value) -> Option<&'static str> {
    if !payload.is_object() {
        return Some("invalid_payload");
    }
    let present = |k: &str| match payload.get(k) {
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Null) | None => false,
        Some(_) => true,
    };
    if !present("text") && !present("blocks") && !present("attachments") {
        return Some("no_text");
    }
    // The most specific answer wins, in this order.
    const ORDER: [&str; 5] = [
        "no_text",
        "too_many_attachments",
        "invalid_blocks",
        "invalid_attachments",
        "invalid_payload",
    ];
    PAYLOAD
        .iter_errors(payload)
        .map(|e| {
            let segments = schema::pointer_segments(e.instance_path.as_str());
            let first = segments.first().map(String::as_str);
            match (first, &e.kind) {
                (None, ValidationErrorKind::AnyOf) => "no_text",
                (Some("attachments"), ValidationErrorKind::MaxItems { .. }) if segments.len() == 1 => {
                    "too_many_attachments"
                }
                _ if segments.iter().any(|s| s == "blocks") => "invalid_blocks",
                (Some("attachments"), _) => "invalid_attachments",
                _ => "invalid_payload",
            }
        })
        .min_by_key(|code| ORDER.iter().position(|o| o == code))
}

/// `POST /services/{team}/{service}/{secret}`
pub(crate) async fn post(
    State(s): State<Arc<Slack>>,
    Path((team, service, secret)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let arrived = s.journal.now();
    let at = s.journal.now_utc();
    let key = format!("{team}/{service}/{secret}");
    let url = format!("{}/services/{key}", s.base);
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let recorded_body = parsed
        .clone()
        .unwrap_or_else(|| Value::String(String::from_utf8_lossy(&body).into_owned()));

    let channel = s.lock().hooks.get(&key).map(|h| h.channel.name.clone());
    let answer = match channel {
        None => Answer::text(StatusCode::NOT_FOUND, "no_service"),
        Some(_) => {
            if let Some(delay) = s.journal.take_delay(&key) {
                tokio::time::sleep(delay).await;
            }
            answer(&s, &key, &headers, parsed.as_ref())
        }
    };
    tracing::debug!(webhook = %url, status = answer.status.as_u16(), "slack stand-in answered");
    s.journal.record(Received {
        webhook_url: url,
        channel: channel.unwrap_or_default(),
        guild: None,
        body: recorded_body,
        status: answer.status.as_u16(),
        answer: answer.body.clone(),
        at,
        at_instant: arrived,
    });
    answer.into_response()
}

fn answer(s: &Slack, key: &str, headers: &HeaderMap, payload: Option<&Value>) -> Answer {
    if let Some(answer) = s.journal.take_fault(key).as_ref().and_then(fault_answer) {
        return answer;
    }
    let limited = s.lock().hooks.get_mut(key).map(|h| h.bucket.try_take(s.journal.now()));
    if let Some(Err(wait)) = limited {
        return Answer::rate_limited(whole_seconds(wait.as_millis()));
    }
    if grant::media_type(headers).as_deref() != Some("application/json") {
        return Answer::text(StatusCode::BAD_REQUEST, "invalid_payload");
    }
    let Some(payload) = payload else {
        return Answer::text(StatusCode::BAD_REQUEST, "invalid_payload");
    };
    match check_payload(payload) {
        Some(code) => Answer::text(StatusCode::BAD_REQUEST, code),
        None => Answer::text(StatusCode::OK, "ok"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_errors_map_to_slack_codes() {
        assert_eq!(check_payload(&json!({"text": "Hello, world."})), None);
        assert_eq!(check_payload(&json!({})), Some("no_text"));
        assert_eq!(check_payload(&json!({"text": "  "})), Some("no_text"));
        assert_eq!(check_payload(&json!([1])), Some("invalid_payload"));
        assert_eq!(check_payload(&json!({"text": 5})), Some("invalid_payload"));
        let many: Vec<Value> = (0..101).map(|_| json!({"fallback": "x"})).collect();
        assert_eq!(
            check_payload(&json!({"attachments": many})),
            Some("too_many_attachments")
        );
        assert_eq!(
            check_payload(&json!({"attachments": [{"color": "orange"}]})),
            Some("invalid_attachments")
        );
        let header = "x".repeat(151);
        assert_eq!(
            check_payload(&json!({"blocks": [{"type": "header", "text": {"type": "plain_text", "text": header}}]})),
            Some("invalid_blocks")
        );
        assert_eq!(
            check_payload(&json!({"text": "t", "attachments": [{"blocks": [{"type": "section"}]}]})),
            Some("invalid_blocks")
        );
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        assert_eq!(whole_seconds(1), 1);
        assert_eq!(whole_seconds(1000), 1);
        assert_eq!(whole_seconds(1001), 2);
        assert_eq!(whole_seconds(0), 1);
    }
}
