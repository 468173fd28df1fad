//! Slack incoming-webhook payloads: a top-level `text` (the notification and
//! fallback) and one legacy attachment, whose `color` draws the sidebar.
//! Customer-supplied text is escaped as Slack documents (`&`, `<`, `>`), so a
//! customer named `<!channel>` is shown, not broadcast.

use serde_json::{json, Value};

use crate::message::{risk_color, AlertMessage};
use crate::notice::Notice;

/// Recommended maximum of `text` (longer text is truncated by Slack).
pub const TEXT_MAX: usize = 4_000;
/// Field values are kept within Block Kit's section limit, to be safe.
pub const FIELD_MAX: usize = 2_000;
pub const TITLE_MAX: usize = 256;

/// Escapes `s` for Slack and keeps the result within `max` characters,
/// never cutting an entity in half; a cut ends with "…".
pub fn escape(s: &str, max: usize) -> String {
    crate::message::escape_within(s, max, escaped)
}

fn escaped(c: char) -> String {
    match c {
        '&' => "&amp;".into(),
        '<' => "&lt;".into(),
        '>' => "&gt;".into(),
        c => c.to_string(),
    }
}

/// The webhook payload for one alert.
pub fn render(m: &AlertMessage) -> Value {
    render_many(std::slice::from_ref(m))
}

/// Most alerts in one digest message (as on Discord, so both platforms
/// carry the same content).
pub const ATTACHMENTS_MAX: usize = 10;
/// Slack truncates messages over 40,000 characters; a digest stays well under.
const MESSAGE_BUDGET: usize = 30_000;

/// One message for up to [`ATTACHMENTS_MAX`] alerts (a digest when more
/// than one): the notification `text`, then a coloured attachment each.
pub fn render_many(alerts: &[AlertMessage]) -> Value {
    let alerts = &alerts[..alerts.len().min(ATTACHMENTS_MAX)];
    let field_max = FIELD_MAX.min(MESSAGE_BUDGET / alerts.len().max(1) / 3);
    let text = match alerts {
        [m] => escape(
            &format!(
                "{}: {}, risk {}",
                m.customer_name,
                m.headline.to_lowercase_first(),
                m.risk_level.label()
            ),
            TEXT_MAX,
        ),
        many => {
            let mut names: Vec<&str> = Vec::new();
            for m in many {
                if !names.contains(&m.customer_name.as_str()) {
                    names.push(&m.customer_name);
                }
            }
            escape(&format!("{} Perly alerts: {}", many.len(), names.join(", ")), TEXT_MAX)
        }
    };
    let attachments: Vec<Value> = alerts.iter().map(|m| attachment(m, field_max)).collect();
    json!({"text": text, "attachments": attachments})
}

/// A message that says the channel is connected.
pub fn render_test(public_url: &str) -> Value {
    json!({
        "text": "Perly test message: this channel is connected.",
        "attachments": [{
            "color": "#5865F2",
            "fallback": "Perly test message: this channel is connected.",
            "title": "Perly test message",
            "title_link": public_url,
            "text": "Perly alerts (customer at risk, expansion signal, health score drop, upsell opportunity, billing retry failed) will appear here.",
            "footer": "Perly",
        }],
    })
}

/// Most characters of a notice's attachment text (Block Kit's section
/// limit, well inside Slack's 40,000-character message).
pub const NOTICE_TEXT_MAX: usize = 3_000;

/// A [`Notice`] (a storm digest, an import summary): the title as the
/// notification `text`, and one attachment in the notice's colour whose
/// title links to `link`, with the lines below it. Every text is escaped
/// and kept within Slack's limits.
pub fn render_notice(n: &Notice) -> Value {
    let title = escape(&n.title, TITLE_MAX);
    let body = n.body(NOTICE_TEXT_MAX, escape);
    let mut attachment = json!({
        "color": format!("#{:06X}", n.color()),
        "fallback": escape(&n.title, FIELD_MAX),
        "title": title,
        "text": body,
        "footer": "Perly",
    });
    if !n.link.is_empty() {
        attachment["title_link"] = json!(n.link);
    }
    json!({"text": escape(&n.title, TEXT_MAX), "attachments": [attachment]})
}

fn attachment(m: &AlertMessage, field_max: usize) -> Value {
    let name = escape(&m.customer_name, 200);
    let headline = escape(&m.headline, TITLE_MAX);
    let signals = m
        .signals
        .iter()
        .map(|s| format!("• {s}"))
        .collect::<Vec<_>>()
        .join("\n");
    let signals = if signals.is_empty() {
        "—".to_owned()
    } else {
        escape(&signals, field_max)
    };
    let action = escape(&m.suggested_action, field_max);
    let risk = m.risk_level.label();
    let fallback = escape(
        &format!(
            "{}: {}. Risk level: {risk}. Signals: {}. Suggested: {}.",
            m.customer_name,
            m.headline,
            m.signals.join(", "),
            m.suggested_action
        ),
        field_max,
    );
    json!({
        "color": format!("#{:06X}", risk_color(m.risk_level)),
        "fallback": fallback,
        "title": escape_title(&name, &headline),
        "title_link": m.profile_url,
        "fields": [
            {"title": "Health score", "value": m.score_with_delta(), "short": true},
            {"title": "Risk level", "value": risk, "short": true},
            {"title": "Top signals", "value": signals, "short": false},
            {"title": "Suggested action", "value": if action.is_empty() { "—".to_owned() } else { action }, "short": false},
        ],
        "footer": format!("Perly · {}", m.kind.label()),
        "ts": m.occurred_at.timestamp(),
    })
}

/// "Acme Corp — Health score dropped to 32 (−18)", within the title limit.
fn escape_title(name: &str, headline: &str) -> String {
    let title = format!("{name} — {headline}");
    if title.chars().count() <= TITLE_MAX {
        title
    } else {
        crate::message::truncate(&title, TITLE_MAX)
    }
}

trait LowerFirst {
    fn to_lowercase_first(&self) -> String;
}

impl LowerFirst for String {
    /// "Health score dropped…" → "health score dropped…" (for "Acme: health…").
    fn to_lowercase_first(&self) -> String {
        let mut c = self.chars();
        match c.next() {
            Some(f) => f.to_lowercase().chain(c).collect(),
            None => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::tests::sample;

    #[test]
    fn the_alert_reads_as_the_product_page_shows_it() {
        let p = render(&sample());
        assert_eq!(p["text"], "Acme Corp: health score dropped to 32 (−18), risk High");
        let a = &p["attachments"][0];
        assert_eq!(a["color"], "#E67E22");
        assert_eq!(a["title"], "Acme Corp — Health score dropped to 32 (−18)");
        assert_eq!(a["title_link"], "https://app.perly.example/customers/acme-corp");
        assert_eq!(a["fields"][0]["value"], "32 (−18)");
        assert_eq!(
            a["fields"][2]["value"],
            "• Login frequency down 60%\n• Payment failed twice\n• Support tickets up"
        );
        assert_eq!(
            a["fields"][3]["value"],
            "Schedule a check-in call with the account owner"
        );
        assert_eq!(a["footer"], "Perly · Health score drop");
    }

    #[test]
    fn customer_text_cannot_ping_or_inject_links() {
        let mut m = sample();
        m.customer_name = "<!channel> & <https://evil.example|click>".into();
        let p = render(&m).to_string();
        assert!(!p.contains("<!channel>") && !p.contains("<https://evil"), "{p}");
        assert!(p.contains("&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;"));
    }

    #[test]
    fn a_digest_lists_each_alert_with_its_own_colour() {
        let mut low = sample();
        low.customer_name = "Globex".into();
        low.risk_level = perly_domain::risk::RiskLevel::Low;
        let p = render_many(&[sample(), low]);
        assert_eq!(p["text"], "2 Perly alerts: Acme Corp, Globex");
        assert_eq!(p["attachments"][0]["color"], "#E67E22");
        assert_eq!(p["attachments"][1]["color"], "#2ECC71");
        let many: Vec<_> = (0..25).map(|_| sample()).collect();
        assert_eq!(
            render_many(&many)["attachments"].as_array().map(Vec::len),
            Some(ATTACHMENTS_MAX)
        );
    }

    #[test]
    fn a_notice_is_one_linked_attachment_with_its_lines() {
        let p = render_notice(&crate::notice::tests::sample());
        assert_eq!(p["text"], "37 customers moved into high risk in the last 10 minutes");
        let a = &p["attachments"][0];
        assert_eq!(a["color"], "#E67E22");
        assert_eq!(a["title_link"], "https://app.perly.example/alerts");
        let text = a["text"].as_str().unwrap_or_default();
        assert!(
            text.starts_with("Top 10 by MRR: Acme Corp ($4,200.00), Globex ($3,100.00)\n"),
            "{text}"
        );
        assert!(text.ends_with("\n+27 more in Perly"), "{text}");
    }

    #[test]
    fn a_notice_of_hostile_or_huge_text_stays_escaped_and_within_limits() {
        let mut n = crate::notice::tests::sample();
        n.title = "<!channel> ".repeat(1_000);
        n.lines = (0..500).map(|i| format!("<@U{i}> & {}", "x".repeat(200))).collect();
        let p = render_notice(&n);
        let all = p.to_string();
        assert!(!all.contains("<!channel>") && !all.contains("<@U"), "nothing pings");
        assert!(p["text"].as_str().unwrap_or_default().chars().count() <= TEXT_MAX);
        let a = &p["attachments"][0];
        assert!(a["title"].as_str().unwrap_or_default().chars().count() <= TITLE_MAX);
        let text = a["text"].as_str().unwrap_or_default();
        assert!(text.chars().count() <= NOTICE_TEXT_MAX);
        assert!(
            text.ends_with("…\n+27 more in Perly"),
            "whole lines, then what did not fit"
        );
    }

    #[test]
    fn escaping_never_cuts_an_entity_and_respects_the_limit() {
        assert_eq!(escape("a&b", 10), "a&amp;b");
        assert_eq!(escape("<<<<", 7), "&lt;…");
        let long = "&".repeat(5_000);
        let e = escape(&long, TEXT_MAX);
        assert!(e.chars().count() <= TEXT_MAX && e.ends_with('…'));
    }
}
