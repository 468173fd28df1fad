//! Discord execute-webhook payloads: one embed with an integer `color` (the
//! border), the customer linked to its profile, fields for score, risk,
//! signals and action, and a timestamp. `allowed_mentions: {"parse": []}`
//! means no text in the message can ping anyone (a customer named `@everyone`
//! included), and markdown in customer text is escaped. Every embed limit is
//! kept (title 256, description 4096, 25 fields, name 256, value 1024,
//! footer 2048, 6000 in total), truncating with "…"; no field is ever null.

use serde_json::{json, Value};

use crate::message::{risk_color, AlertMessage};
use crate::notice::Notice;

pub const TITLE_MAX: usize = 256;
pub const DESCRIPTION_MAX: usize = 4_096;
pub const FIELD_VALUE_MAX: usize = 1_024;
pub const FOOTER_MAX: usize = 2_048;
pub const EMBED_TOTAL_MAX: usize = 6_000;
pub const URL_MAX: usize = 2_048;

/// Escapes Discord markdown in `s` and keeps it within `max` characters,
/// never splitting an escape from its character; a cut ends with "…".
pub fn escape(s: &str, max: usize) -> String {
    crate::message::escape_within(s, max, |c| {
        if matches!(
            c,
            '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '#' | '[' | ']' | '(' | ')' | '-' | '<' | ':'
        ) {
            format!("\\{c}")
        } else {
            c.to_string()
        }
    })
}

/// Discord trims whitespace and refuses empty field values: never send one.
fn non_empty(s: String) -> String {
    if s.trim().is_empty() {
        "—".to_owned()
    } else {
        s
    }
}

/// The webhook payload for one alert.
pub fn render(m: &AlertMessage) -> Value {
    render_many(std::slice::from_ref(m))
}

/// Most embeds in one message (Discord's limit); a digest of more alerts
/// goes as several messages.
pub const EMBEDS_MAX: usize = 10;

/// One message for up to [`EMBEDS_MAX`] alerts (a digest when more than
/// one): an embed each, their sizes budgeted so that all of them together
/// stay within the 6000-character total.
pub fn render_many(alerts: &[AlertMessage]) -> Value {
    let alerts = &alerts[..alerts.len().min(EMBEDS_MAX)];
    let per = EMBED_TOTAL_MAX / alerts.len().max(1);
    // Field names, the short fields, description and footer take at most this.
    const FIXED: usize = 130;
    let title_max = TITLE_MAX.min(per / 5);
    let value_max = FIELD_VALUE_MAX.min(per.saturating_sub(title_max + FIXED) / 2);
    let embeds: Vec<Value> = alerts.iter().map(|m| embed(m, title_max, value_max)).collect();
    let mut payload = json!({
        "username": "Perly",
        "allowed_mentions": {"parse": []},
        "embeds": embeds,
    });
    if alerts.len() > 1 {
        payload["content"] = json!(format!("**{} Perly alerts**", alerts.len()));
    }
    payload
}

/// A message that says the channel is connected.
pub fn render_test(public_url: &str) -> Value {
    json!({
        "username": "Perly",
        "allowed_mentions": {"parse": []},
        "embeds": [{
            "title": "Perly test message",
            "description": "This channel is connected. Perly alerts (customer at risk, expansion signal, health score drop, upsell opportunity, billing retry failed) will appear here.",
            "color": 0x58_65_F2,
            "url": crate::message::truncate(public_url, URL_MAX),
            "footer": {"text": "Perly"},
        }],
    })
}

fn embed(m: &AlertMessage, title_max: usize, value_max: usize) -> Value {
    let title = escape(&format!("{} — {}", m.customer_name, m.headline), title_max);
    let signals = m
        .signals
        .iter()
        .map(|s| format!("• {}", escape(s, value_max)))
        .collect::<Vec<_>>()
        .join("\n");
    let signals = non_empty(crate::message::truncate(&signals, value_max));
    let action = non_empty(escape(&m.suggested_action, value_max));
    let risk = m.risk_level.label();
    // The risk level is one field (it was also the description, so it
    // showed twice); the colour says it too.
    let mut embed = json!({
        "title": non_empty(title),
        "color": risk_color(m.risk_level),
        "fields": [
            {"name": "Health score", "value": m.score_with_delta(), "inline": true},
            {"name": "Risk level", "value": risk, "inline": true},
            {"name": "Top signals", "value": signals, "inline": false},
            {"name": "Suggested action", "value": action, "inline": false},
        ],
        "footer": {"text": format!("Perly · {}", m.kind.label())},
        "timestamp": m.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    });
    // A link longer than Discord accepts is left out rather than refused.
    if m.profile_url.chars().count() <= URL_MAX {
        embed["url"] = json!(m.profile_url);
    }
    embed
}

/// A [`Notice`] (a storm digest, an import summary): one embed in the
/// notice's colour, its title linking to `link`, the lines as its
/// description; markdown escaped, nobody pinged, every embed limit kept
/// (title 256, description 4096, 6000 in total).
pub fn render_notice(n: &Notice) -> Value {
    let mut embed = json!({
        "title": non_empty(escape(&n.title, TITLE_MAX)),
        "color": n.color(),
        "description": non_empty(n.body(DESCRIPTION_MAX, escape)),
        "footer": {"text": "Perly"},
    });
    if !n.link.is_empty() && n.link.chars().count() <= URL_MAX {
        embed["url"] = json!(n.link);
    }
    json!({
        "username": "Perly",
        "allowed_mentions": {"parse": []},
        "embeds": [embed],
    })
}

/// Characters Discord counts toward an embed's 6000 total.
pub fn embed_size(embed: &Value) -> usize {
    let len = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
    let mut n = len(&embed["title"])
        + len(&embed["description"])
        + len(&embed["footer"]["text"])
        + len(&embed["author"]["name"]);
    if let Some(fields) = embed["fields"].as_array() {
        n += fields.iter().map(|f| len(&f["name"]) + len(&f["value"])).sum::<usize>();
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::tests::sample;
    use crate::notice::Notice;
    use perly_domain::alerts::AlertKind;
    use perly_domain::risk::RiskLevel;
    use proptest::prelude::*;

    /// Discord's execute-webhook request schema (see `specs/README.md`).
    fn schema() -> jsonschema::Validator {
        let text = include_str!("../../specs/discord_execute_webhook_request.schema.json");
        let schema: Value = serde_json::from_str(text).expect("schema is JSON");
        jsonschema::validator_for(&schema).expect("valid schema")
    }

    fn no_nulls(v: &Value) -> bool {
        match v {
            Value::Null => false,
            Value::Array(a) => a.iter().all(no_nulls),
            Value::Object(o) => o.values().all(no_nulls),
            _ => true,
        }
    }

    #[test]
    fn the_alert_reads_as_the_product_page_shows_it() {
        let p = render(&sample());
        let e = &p["embeds"][0];
        assert_eq!(e["color"], 15105570);
        assert_eq!(e["title"], "Acme Corp — Health score dropped to 32 \\(−18\\)");
        assert_eq!(e["url"], "https://app.perly.example/customers/acme-corp");
        assert_eq!(e["fields"][0]["value"], "32 (−18)");
        assert_eq!(e["timestamp"], "2026-08-24T09:30:00.000Z");
        assert_eq!(p["allowed_mentions"], json!({"parse": []}));
        assert!(schema().is_valid(&p));
        // The schema has teeth: an over-long title is refused.
        let mut bad = p.clone();
        bad["embeds"][0]["title"] = json!("x".repeat(TITLE_MAX + 1));
        assert!(!schema().is_valid(&bad));
    }

    #[test]
    fn the_risk_level_is_shown_once() {
        let p = render(&sample());
        let e = &p["embeds"][0];
        let text = e.to_string();
        assert_eq!(text.matches("High").count(), 1, "{text}");
        assert_eq!(e["fields"][1]["name"], "Risk level");
        assert_eq!(e["fields"][1]["value"], "High");
    }

    #[test]
    fn a_notice_is_one_linked_embed_with_its_lines() {
        let p = render_notice(&crate::notice::tests::sample());
        assert!(schema().is_valid(&p), "{p}");
        let e = &p["embeds"][0];
        assert_eq!(e["title"], "37 customers moved into high risk in the last 10 minutes");
        assert_eq!(e["url"], "https://app.perly.example/alerts");
        assert_eq!(e["color"], 15105570);
        let d = e["description"].as_str().unwrap_or_default();
        assert!(d.starts_with("Top 10 by MRR\\: Acme Corp \\($4,200.00\\)"), "{d}");
        assert!(d.ends_with("\n+27 more in Perly"), "{d}");
        assert_eq!(p["allowed_mentions"], json!({"parse": []}));
    }

    #[test]
    fn the_test_message_validates() {
        assert!(schema().is_valid(&render_test("http://127.0.0.1:8080")));
    }

    #[test]
    fn customer_text_cannot_ping_or_format() {
        let mut m = sample();
        m.customer_name = "@everyone **Acme** `x`".into();
        let p = render(&m);
        assert_eq!(p["allowed_mentions"]["parse"], json!([]));
        assert!(p["embeds"][0]["title"]
            .as_str()
            .unwrap_or_default()
            .starts_with("@everyone \\*\\*Acme\\*\\* \\`x\\`"));
    }

    fn message() -> impl Strategy<Value = crate::message::AlertMessage> {
        (
            ".{0,400}",
            proptest::collection::vec(".{0,600}", 0..6),
            ".{0,1500}",
            ".{0,300}",
            0..4usize,
            0..5usize,
            -100i64..100,
            0i64..=100,
            "[a-z0-9-]{1,3000}",
        )
            .prop_map(|(name, signals, action, headline, risk, kind, delta, score, path)| {
                let mut m = sample();
                m.customer_name = name;
                m.signals = signals;
                m.suggested_action = action;
                m.headline = headline;
                m.risk_level = RiskLevel::ALL[risk];
                m.kind = AlertKind::ALL[kind];
                m.delta = Some(delta);
                m.score = score;
                m.profile_url = format!("https://app.perly.example/customers/{path}");
                m
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn every_digest_validates_and_keeps_the_total_within_6000(ms in proptest::collection::vec(message(), 1..14)) {
            let p = render_many(&ms);
            prop_assert!(schema().is_valid(&p), "{p}");
            prop_assert!(no_nulls(&p));
            let embeds = p["embeds"].as_array().cloned().unwrap_or_default();
            prop_assert_eq!(embeds.len(), ms.len().min(EMBEDS_MAX));
            prop_assert!(embeds.iter().map(embed_size).sum::<usize>() <= EMBED_TOTAL_MAX);
        }

        #[test]
        fn every_notice_validates_and_keeps_discords_limits(
            title in ".{0,600}",
            lines in proptest::collection::vec(".{0,400}", 0..60),
            more in proptest::option::of(".{0,300}"),
            path in "[a-z0-9/-]{0,2100}",
        ) {
            let n = Notice {
                title,
                lines,
                more,
                link: format!("https://app.perly.example/{path}"),
                risk: None,
            };
            let p = render_notice(&n);
            prop_assert!(schema().is_valid(&p), "{p}");
            prop_assert!(no_nulls(&p));
            let e = &p["embeds"][0];
            prop_assert!(embed_size(e) <= EMBED_TOTAL_MAX);
            prop_assert!(e["title"].as_str().is_some_and(|t| t.chars().count() <= TITLE_MAX && !t.trim().is_empty()));
            prop_assert!(e["description"].as_str().is_some_and(|d| d.chars().count() <= DESCRIPTION_MAX && !d.trim().is_empty()));
        }

        #[test]
        fn every_payload_validates_against_the_discord_schema_and_limits(m in message()) {
            let p = render(&m);
            prop_assert!(schema().is_valid(&p), "{p}");
            prop_assert!(no_nulls(&p));
            let e = &p["embeds"][0];
            prop_assert!(embed_size(e) <= EMBED_TOTAL_MAX);
            prop_assert!(e["title"].as_str().is_some_and(|t| t.chars().count() <= TITLE_MAX && !t.trim().is_empty()));
            for f in e["fields"].as_array().into_iter().flatten() {
                let v = f["value"].as_str().unwrap_or_default();
                prop_assert!(v.chars().count() <= FIELD_VALUE_MAX && !v.trim().is_empty(), "{v:?}");
            }
        }
    }
}
