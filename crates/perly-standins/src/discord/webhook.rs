//! `POST /api/webhooks/{id}/{token}`: Discord's Execute Webhook.
//!
//! In order: unknown id → 404 `Unknown Webhook` (10015); wrong token → 401
//! `Invalid Webhook Token` (50027); an injected `Slow` fault delays; an
//! injected fault answers; the webhook window (5 per 2 s, scope `user`) and
//! the channel window (30 per 60 s, scope `shared`) answer 429; then the
//! body: not JSON → 400 50109; schema violations and empty embed field
//! names/values → 400 50035 `Invalid Form Body` with Discord's `errors`
//! tree; nothing to send → 400 50006; embeds over 6000 characters in total
//! → 400 50035 `MAX_EMBED_SIZE_EXCEEDED`. Accepted: 204, or 200 with the
//! message object when `?wait=true`. Every answer carries `X-RateLimit-*`.
//!
//! The schema's root is `anyOf` the execute body and the edit body; the
//! stand-in checks against the execute body (`IncomingWebhookRequestPartial`)
//! alone, which is stricter only for `username`, `avatar_url`, `tts`,
//! `thread_name` and `applied_tags`, as `limits_constructed.json` lists them.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{JsonType, ValidationError, Validator};
use serde_json::{json, Map, Value};

use super::{snowflake, Discord, WEBHOOK_NAME};
use crate::grant;
use crate::rate::WindowState;
use crate::schema;
use crate::{Fault, Received};

static EXECUTE: LazyLock<Validator> = LazyLock::new(|| {
    let mut s = schema::parse(include_str!("../../specs/discord_execute_webhook_request.schema.json"));
    if let Some(root) = s.as_object_mut() {
        root.remove("anyOf");
        root.insert(
            "$ref".into(),
            Value::String("#/$defs/IncomingWebhookRequestPartial".into()),
        );
    }
    schema::nullable_one_of_to_if_else(&mut s);
    schema::compile(&s)
});

/// The total across all embeds (message.mdx "Embed Limits").
const EMBED_TOTAL_MAX: usize = 6000;

/// One answer, before it becomes a response and a journal entry.
struct Answer {
    status: StatusCode,
    body: Option<Value>,
    window: Option<WindowState>,
    bucket: String,
    retry_after: Option<Duration>,
    scope: Option<&'static str>,
}

impl Answer {
    fn new(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            body: Some(body),
            window: None,
            bucket: String::new(),
            retry_after: None,
            scope: None,
        }
    }

    fn error(status: StatusCode, code: u32, message: &str) -> Self {
        Self::new(status, json!({"message": message, "code": code}))
    }

    fn rate_limited(retry_after: Duration, scope: &'static str) -> Self {
        let message = if scope == "shared" {
            "The resource is being rate limited."
        } else {
            "You are being rate limited."
        };
        let mut a = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"message": message, "retry_after": seconds(retry_after), "global": false}),
        );
        a.retry_after = Some(retry_after);
        a.scope = Some(scope);
        a
    }

    fn text(&self) -> String {
        self.body.as_ref().map(Value::to_string).unwrap_or_default()
    }

    fn into_response(self) -> Response {
        let mut headers = HeaderMap::new();
        let mut put = |name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), v);
            }
        };
        if let Some(w) = self.window {
            let reset = epoch_seconds() + w.reset_after.as_secs_f64();
            put("x-ratelimit-limit", w.limit.to_string());
            put("x-ratelimit-remaining", w.remaining.to_string());
            put("x-ratelimit-reset", format!("{reset:.3}"));
            put("x-ratelimit-reset-after", format!("{:.3}", w.reset_after.as_secs_f64()));
            put("x-ratelimit-bucket", self.bucket.clone());
        }
        if let Some(wait) = self.retry_after {
            let secs = wait.as_millis().div_ceil(1000).max(1);
            put("retry-after", secs.to_string());
        }
        if let Some(scope) = self.scope {
            put("x-ratelimit-scope", scope.to_owned());
        }
        match self.body {
            Some(body) => {
                put("content-type", "application/json".to_owned());
                (self.status, headers, body.to_string()).into_response()
            }
            None => (self.status, headers).into_response(),
        }
    }
}

/// Seconds as Discord writes them: a float with at most three decimals.
fn seconds(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

fn epoch_seconds() -> f64 {
    let now = chrono::Utc::now();
    now.timestamp_millis() as f64 / 1000.0
}

/// A stable bucket id per webhook, as Discord's opaque hash.
fn bucket(id: &str) -> String {
    let mut h = DefaultHasher::new();
    id.hash(&mut h);
    format!("{:016x}", h.finish())
}

fn fault_answer(fault: &Fault) -> Option<Answer> {
    Some(match fault {
        Fault::Status { status, .. } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let reason = status.canonical_reason().unwrap_or("Error");
            Answer::error(status, 0, &format!("{}: {reason}", status.as_u16()))
        }
        Fault::RateLimit { retry_after_ms, .. } => Answer::rate_limited(Duration::from_millis(*retry_after_ms), "user"),
        Fault::Delete | Fault::Archive => Answer::error(StatusCode::NOT_FOUND, 10015, "Unknown Webhook"),
        Fault::Revoke => Answer::error(StatusCode::UNAUTHORIZED, 50027, "Invalid Webhook Token"),
        Fault::Slow { .. } => return None,
    })
}

/// Adds `{code, message}` under `path` in Discord's `errors` tree.
fn put_error(tree: &mut Map<String, Value>, path: &[String], code: &str, message: &str) {
    let mut node = tree;
    for segment in path {
        let next = node.entry(segment.clone()).or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(map) = next else { return };
        node = map;
    }
    let errors = node.entry("_errors").or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(list) = errors {
        list.push(json!({"code": code, "message": message}));
    }
}

/// Discord's code and message for one schema violation, and where it goes.
fn describe(e: &ValidationError) -> (Vec<String>, String, String) {
    let mut path = schema::pointer_segments(e.instance_path.as_str());
    let shown = match e.instance.as_ref() {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let (code, message) = match &e.kind {
        ValidationErrorKind::MaxLength { limit } | ValidationErrorKind::MaxItems { limit } => {
            ("BASE_TYPE_MAX_LENGTH", format!("Must be {limit} or fewer in length."))
        }
        ValidationErrorKind::MinLength { limit } | ValidationErrorKind::MinItems { limit } => {
            ("BASE_TYPE_MIN_LENGTH", format!("Must be {limit} or more in length."))
        }
        ValidationErrorKind::Required { property } => {
            path.push(property.as_str().unwrap_or_default().to_owned());
            ("BASE_TYPE_REQUIRED", "This field is required".to_owned())
        }
        ValidationErrorKind::Maximum { limit } => (
            "NUMBER_TYPE_MAX",
            format!("int value should be less than or equal to {limit}."),
        ),
        ValidationErrorKind::Minimum { limit } => (
            "NUMBER_TYPE_MIN",
            format!("int value should be greater than or equal to {limit}."),
        ),
        ValidationErrorKind::Type { kind } => {
            let expected = match kind {
                TypeKind::Single(t) => *t,
                TypeKind::Multiple(set) => set.iter().find(|t| *t != JsonType::Null).unwrap_or(JsonType::Null),
            };
            match expected {
                JsonType::Object => (
                    "MODEL_TYPE_CONVERT",
                    "Only dictionaries may be used in a ModelType".to_owned(),
                ),
                JsonType::Array => (
                    "LIST_TYPE_CONVERT",
                    "Only iterables may be used in a ListType".to_owned(),
                ),
                JsonType::Integer | JsonType::Number => {
                    ("NUMBER_TYPE_COERCE", format!("Value \"{shown}\" is not int."))
                }
                JsonType::Boolean => (
                    "BOOLEAN_TYPE_CONVERT",
                    format!("Could not interpret \"{shown}\" as boolean."),
                ),
                JsonType::String | JsonType::Null => (
                    "STRING_TYPE_CONVERT",
                    format!("Could not interpret \"{shown}\" as string."),
                ),
            }
        }
        ValidationErrorKind::Format { format } if format == "uri" => {
            ("URL_TYPE_INVALID_URL", "Not a well formed URL.".to_owned())
        }
        ValidationErrorKind::Format { format } if format == "date-time" => (
            "DATE_TIME_TYPE_PARSE",
            format!("Could not parse {shown}. Should be ISO8601."),
        ),
        ValidationErrorKind::Enum { options } => ("BASE_TYPE_CHOICES", format!("Value must be one of {options}.")),
        ValidationErrorKind::Constant { expected_value } => {
            ("BASE_TYPE_CHOICES", format!("Value must be one of ({expected_value})."))
        }
        _ => ("BASE_TYPE_INVALID", "Invalid value.".to_owned()),
    };
    (path, code.to_owned(), message)
}

fn array(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

fn chars(v: &Value) -> usize {
    v.as_str().map(|s| s.trim().chars().count()).unwrap_or(0)
}

/// Discord's 400 body for a payload, or `None` if it is accepted.
pub(crate) fn check_payload(payload: &Value) -> Option<Value> {
    let mut tree = Map::new();
    for e in EXECUTE.iter_errors(payload) {
        let (path, code, message) = describe(&e);
        put_error(&mut tree, &path, &code, &message);
    }
    let embeds = array(payload.get("embeds"));
    for (i, embed) in embeds.iter().enumerate() {
        for (j, field) in array(embed.get("fields")).iter().enumerate() {
            for key in ["name", "value"] {
                if field.get(key).is_some_and(|v| v.is_string() && chars(v) == 0) {
                    let path = ["embeds", &i.to_string(), "fields", &j.to_string(), key].map(str::to_owned);
                    put_error(&mut tree, &path, "BASE_TYPE_REQUIRED", "This field is required");
                }
            }
        }
    }
    if !tree.is_empty() {
        return Some(json!({"code": 50035, "errors": tree, "message": "Invalid Form Body"}));
    }
    let has = |k: &str| match payload.get(k) {
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(_)) => true,
        _ => false,
    };
    if !["content", "embeds", "components", "poll"].into_iter().any(has) {
        return Some(json!({"message": "Cannot send an empty message", "code": 50006}));
    }
    let total: usize = embeds
        .iter()
        .map(|e| {
            chars(&e["title"])
                + chars(&e["description"])
                + chars(&e["footer"]["text"])
                + chars(&e["author"]["name"])
                + array(e.get("fields"))
                    .iter()
                    .map(|f| chars(&f["name"]) + chars(&f["value"]))
                    .sum::<usize>()
        })
        .sum();
    if total > EMBED_TOTAL_MAX {
        return Some(json!({
            "code": 50035,
            "message": "Invalid Form Body",
            "errors": {"embeds": {"_errors": [{
                "code": "MAX_EMBED_SIZE_EXCEEDED",
                "message": "Embed size exceeds maximum size of 6000"
            }]}}
        }));
    }
    None
}

/// The message object of `?wait=true` (`message_response.schema.json`).
fn message(hook_id: &str, channel_id: &str, payload: &Value) -> Value {
    let now = chrono::Utc::now();
    let timestamp = now.to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
    let embeds: Vec<Value> = array(payload.get("embeds"))
        .iter()
        .map(|e| {
            let mut e = e.clone();
            if let Some(map) = e.as_object_mut() {
                map.retain(|_, v| !v.is_null());
                map.insert("type".into(), json!("rich"));
                if let Some(Value::Array(fields)) = map.get_mut("fields") {
                    for f in fields.iter_mut() {
                        if f.get("inline").is_none_or(Value::is_null) {
                            f["inline"] = json!(false);
                        }
                    }
                }
                if let Some(ts) = map.get("timestamp").and_then(Value::as_str) {
                    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(ts) {
                        let t = t.with_timezone(&chrono::Utc);
                        map.insert(
                            "timestamp".into(),
                            json!(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false)),
                        );
                    }
                }
            }
            e
        })
        .collect();
    let username = payload.get("username").and_then(Value::as_str).unwrap_or(WEBHOOK_NAME);
    json!({
        "type": 0,
        "content": payload.get("content").and_then(Value::as_str).unwrap_or_default(),
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": embeds,
        "timestamp": timestamp,
        "edited_timestamp": null,
        "flags": payload.get("flags").and_then(Value::as_i64).unwrap_or(0),
        "components": [],
        "id": snowflake(),
        "channel_id": channel_id,
        "author": {
            "id": hook_id,
            "username": username,
            "avatar": null,
            "discriminator": "0000",
            "public_flags": 0,
            "flags": 0,
            "bot": true,
            "global_name": null,
            "primary_guild": null
        },
        "pinned": false,
        "mention_everyone": false,
        "tts": payload.get("tts").and_then(Value::as_bool).unwrap_or(false),
        "webhook_id": hook_id,
    })
}

/// The JSON body, or Discord's answer for a body it cannot read.
fn read_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, Answer> {
    match grant::media_type(headers).as_deref() {
        Some("application/json") => serde_json::from_slice(body).map_err(|_| {
            Answer::error(
                StatusCode::BAD_REQUEST,
                50109,
                "The request body contains invalid JSON.",
            )
        }),
        Some("application/x-www-form-urlencoded") => Ok(Value::Object(
            grant::parse_form(body)
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        )),
        _ => Err(Answer::new(
            StatusCode::BAD_REQUEST,
            json!({
                "code": 50035,
                "errors": {"_errors": [{
                    "code": "CONTENT_TYPE_INVALID",
                    "message": "Expected \"Content-Type\" header to be one of {'application/json', 'application/x-www-form-urlencoded', 'multipart/form-data'}."
                }]},
                "message": "Invalid Form Body"
            }),
        )),
    }
}

/// `POST /api/webhooks/{id}/{token}` (and `/api/v{n}/…`)
pub(crate) async fn post(
    State(s): State<Arc<Discord>>,
    Path((id, token)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let arrived = s.journal.now();
    let at = s.journal.now_utc();
    let url = format!("{}/api/webhooks/{id}/{token}", s.base);
    let parsed = read_body(&headers, &body);
    let recorded_body = match &parsed {
        Ok(v) => v.clone(),
        Err(_) => Value::String(String::from_utf8_lossy(&body).into_owned()),
    };
    let wait = query
        .get("wait")
        .is_some_and(|w| w.eq_ignore_ascii_case("true") || w == "1");

    let hook = s.lock().hooks.get(&id).map(|h| (h.token.clone(), h.channel.clone()));
    let mut answer = match &hook {
        None => Answer::error(StatusCode::NOT_FOUND, 10015, "Unknown Webhook"),
        Some((expected, _)) if *expected != token => {
            Answer::error(StatusCode::UNAUTHORIZED, 50027, "Invalid Webhook Token")
        }
        Some((_, channel)) => {
            if let Some(delay) = s.journal.take_delay(&id) {
                tokio::time::sleep(delay).await;
            }
            execute(&s, &id, &channel.id, parsed, wait)
        }
    };
    if answer.window.is_none() {
        answer.window = Some(s.lock().webhook_window(&id).state(s.journal.now()));
    }
    answer.bucket = bucket(&id);
    let text = answer.text();
    tracing::debug!(webhook_id = %id, status = answer.status.as_u16(), "discord stand-in answered");
    s.journal.record(Received {
        webhook_url: url,
        channel: hook.as_ref().map(|(_, c)| c.name.clone()).unwrap_or_default(),
        guild: hook.as_ref().map(|(_, c)| c.guild.clone()),
        body: recorded_body,
        status: answer.status.as_u16(),
        answer: text,
        at,
        at_instant: arrived,
    });
    answer.into_response()
}

fn execute(s: &Discord, id: &str, channel_id: &str, parsed: Result<Value, Answer>, wait: bool) -> Answer {
    if let Some(fault) = s.journal.take_fault(id) {
        if let Some(mut answer) = fault_answer(&fault) {
            if answer.scope.is_some() {
                // An injected limit: the bucket is empty until it lifts.
                answer.window = Some(WindowState {
                    limit: super::WEBHOOK_LIMIT,
                    remaining: 0,
                    reset_after: answer.retry_after.unwrap_or_default(),
                });
            }
            return answer;
        }
    }
    let now = s.journal.now();
    let window = {
        let mut st = s.lock();
        let hook_full = st.webhook_window(id).is_full(now);
        let channel_state = st.channel_window(channel_id).state(now);
        if hook_full {
            let w = st.webhook_window(id).state(now);
            let mut a = Answer::rate_limited(w.reset_after, "user");
            a.window = Some(w);
            return a;
        }
        if channel_state.remaining == 0 {
            let mut a = Answer::rate_limited(channel_state.reset_after, "shared");
            a.window = Some(st.webhook_window(id).state(now));
            return a;
        }
        st.channel_window(channel_id).hit(now);
        st.webhook_window(id).hit(now)
    };
    let mut answer = match parsed {
        Err(a) => a,
        Ok(payload) => match check_payload(&payload) {
            Some(body) => Answer::new(StatusCode::BAD_REQUEST, body),
            None if wait => Answer::new(StatusCode::OK, message(id, channel_id, &payload)),
            None => Answer {
                status: StatusCode::NO_CONTENT,
                body: None,
                window: None,
                bucket: String::new(),
                retry_after: None,
                scope: None,
            },
        },
    };
    answer.window = Some(window);
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(name: &str) -> Value {
        let path = format!("{}/specs/examples/discord/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).expect("example file")).expect("JSON")
    }

    #[test]
    fn the_perly_example_is_accepted() {
        assert_eq!(
            check_payload(&example("execute_webhook_request_perly_constructed.json")),
            None
        );
    }

    #[test]
    fn a_long_title_is_an_invalid_form_body_at_its_path() {
        let body = check_payload(&json!({"embeds": [{"title": "t".repeat(300)}]}));
        assert_eq!(
            body,
            Some(json!({
                "code": 50035,
                "message": "Invalid Form Body",
                "errors": {"embeds": {"0": {"title": {"_errors": [
                    {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 256 or fewer in length."}
                ]}}}}
            }))
        );
    }

    #[test]
    fn long_content_gives_the_observed_body() {
        let body = check_payload(&json!({"content": "x".repeat(2001)}));
        assert_eq!(body, Some(example("error_400_content_too_long_observed.json")));
    }

    #[test]
    fn embeds_over_6000_characters_give_the_observed_body() {
        let embeds: Vec<Value> = (0..2).map(|_| json!({"description": "d".repeat(3001)})).collect();
        let body = check_payload(&json!({"embeds": embeds}));
        assert_eq!(body, Some(example("error_400_embed_total_too_large_observed.json")));
    }

    #[test]
    fn empty_messages_and_blank_field_names_are_refused() {
        assert_eq!(
            check_payload(&json!({})),
            Some(example("error_400_empty_message_observed.json"))
        );
        assert_eq!(
            check_payload(&json!({"content": "  "})),
            Some(example("error_400_empty_message_observed.json"))
        );
        let body = check_payload(&json!({"embeds": [{"fields": [{"name": " ", "value": "v"}]}]}));
        assert_eq!(
            body.as_ref()
                .map(|b| b["errors"]["embeds"]["0"]["fields"]["0"]["name"]["_errors"][0]["code"].clone()),
            Some(json!("BASE_TYPE_REQUIRED"))
        );
    }

    #[test]
    fn missing_field_value_and_bad_color_are_located() {
        let body =
            check_payload(&json!({"embeds": [{"color": 16777216, "fields": [{"name": "n"}]}]})).expect("refused");
        assert_eq!(body["code"], 50035);
        let e = &body["errors"]["embeds"]["0"];
        assert_eq!(e["color"]["_errors"][0]["code"], "NUMBER_TYPE_MAX");
        assert_eq!(e["fields"]["0"]["value"]["_errors"][0]["code"], "BASE_TYPE_REQUIRED");
    }
}
