//! Discord's pages: the consent page of the install ("Create a webhook":
//! pick a server and channel) and `GET /`, which draws every webhook
//! request, newest first, as Discord shows a webhook message: the author
//! with its BOT tag, `content`, then each embed as a dark card with a left
//! border in its colour, linked title, description, fields (inline ones side
//! by side), footer and timestamp. Refused requests show status and answer.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::{Channel, Discord, WEBHOOK_NAME};
use crate::server;
use crate::view::{self, link, text};

pub(crate) struct GuildOption {
    pub(crate) name: String,
    pub(crate) channels: Vec<Channel>,
}

/// `GET /oauth2/authorize`
#[derive(Template)]
#[template(path = "discord_consent.html")]
pub(crate) struct ConsentPage {
    pub(crate) vendor: &'static str,
    pub(crate) dark: bool,
    pub(crate) root: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) guilds: Vec<GuildOption>,
    pub(crate) client_id: String,
    pub(crate) scope: String,
    pub(crate) redirect_uri: String,
    pub(crate) state: String,
}

#[derive(Template)]
#[template(path = "discord_messages.html")]
struct MessagesPage {
    vendor: &'static str,
    dark: bool,
    root: String,
    items: Vec<Item>,
}

struct Item {
    place: String,
    webhook_url: String,
    username: String,
    time: String,
    accepted: bool,
    status: u16,
    answer: String,
    content: String,
    embeds: Vec<Embed>,
    raw: String,
}

struct Embed {
    color: String,
    author: String,
    title: String,
    url: Option<String>,
    description: String,
    fields: Vec<Field>,
    footer: String,
    timestamp: String,
}

struct Field {
    name: String,
    value: String,
    inline: bool,
}

/// An integer colour as `#RRGGBB`; Discord's grey when absent.
fn color(v: &Value) -> String {
    match v.as_u64() {
        Some(c) if c <= 0xFF_FFFF => format!("#{c:06X}"),
        _ => "#1E1F22".into(),
    }
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

fn timestamp(v: &Value) -> String {
    v.as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| view::time(t.with_timezone(&chrono::Utc)))
        .unwrap_or_default()
}

/// Text as Discord shows it: markdown escapes (`\(`) become the character,
/// and bold/italic/strike markers are dropped (the page shows plain text).
fn md(v: &Value) -> String {
    let raw = text(v);
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek().is_some_and(|n| n.is_ascii_punctuation()) => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            '*' | '~' if chars.peek() == Some(&c) => {
                chars.next();
            }
            c => out.push(c),
        }
    }
    out
}

fn item(r: &crate::Received) -> Item {
    let b = &r.body;
    let place = match (&r.guild, r.channel.is_empty()) {
        (_, true) => "(unknown webhook)".to_owned(),
        (Some(g), false) => format!("{g} › #{}", r.channel),
        (None, false) => format!("#{}", r.channel),
    };
    let username = b["username"].as_str().unwrap_or(WEBHOOK_NAME).to_owned();
    Item {
        place,
        webhook_url: r.webhook_url.clone(),
        username,
        time: view::time(r.at),
        accepted: r.accepted(),
        status: r.status,
        answer: r.answer.clone(),
        content: md(&b["content"]),
        embeds: array(&b["embeds"])
            .iter()
            .map(|e| Embed {
                color: color(&e["color"]),
                author: text(&e["author"]["name"]),
                title: md(&e["title"]),
                url: link(&e["url"]),
                description: md(&e["description"]),
                fields: array(&e["fields"])
                    .iter()
                    .map(|f| Field {
                        name: md(&f["name"]),
                        value: md(&f["value"]),
                        inline: f["inline"].as_bool().unwrap_or(false),
                    })
                    .collect(),
                footer: md(&e["footer"]["text"]),
                timestamp: timestamp(&e["timestamp"]),
            })
            .collect(),
        raw: view::raw(r),
    }
}

/// `GET /` and `GET /_standin/messages`
pub(crate) async fn messages(State(s): State<Arc<Discord>>) -> Response {
    let items = s.journal.requests().iter().rev().map(item).collect();
    let page = MessagesPage {
        vendor: "Discord",
        dark: true,
        root: view::root(&s.base),
        items,
    };
    server::page(StatusCode::OK, page.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_escapes_and_bold_markers_read_as_discord_shows_them() {
        assert_eq!(
            md(&serde_json::json!("Risk level: **High** \\(−35\\) ~~x~~")),
            "Risk level: High (−35) x"
        );
    }
}
