//! Slack's pages: the consent page of the install, and `GET /` which draws
//! every webhook request, newest first, as Slack shows a message: the
//! `text`, then each attachment with its colour bar, linked bold title,
//! fields (short ones side by side), footer and time; Block Kit blocks as
//! headers, sections, context lines and buttons. Refused requests show their
//! status and Slack's answer.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{TimeZone, Utc};
use serde_json::Value;

use super::{Channel, Slack};
use crate::server;
use crate::view::{self, link, text};

/// `GET /oauth/v2/authorize`
#[derive(Template)]
#[template(path = "slack_consent.html")]
pub(crate) struct ConsentPage {
    pub(crate) vendor: &'static str,
    pub(crate) dark: bool,
    pub(crate) root: String,
    pub(crate) team: &'static str,
    pub(crate) scopes: Vec<String>,
    pub(crate) channels: Vec<Channel>,
    pub(crate) client_id: String,
    pub(crate) scope: String,
    pub(crate) user_scope: String,
    pub(crate) redirect_uri: String,
    pub(crate) state: String,
}

impl ConsentPage {
    /// What a scope lets the app do, in Slack's words.
    fn scope_text(&self, scope: &str) -> String {
        match scope {
            "incoming-webhook" => "Post messages to a specific channel in Slack".into(),
            "commands" => "Add shortcuts and/or slash commands that people can use".into(),
            "chat:write" => "Send messages as Perly".into(),
            other => format!("Use the {other} scope"),
        }
    }
}

#[derive(Template)]
#[template(path = "slack_messages.html")]
struct MessagesPage {
    vendor: &'static str,
    dark: bool,
    root: String,
    team: &'static str,
    items: Vec<Item>,
}

struct Item {
    channel: String,
    webhook_url: String,
    time: String,
    accepted: bool,
    status: u16,
    answer: String,
    text: String,
    blocks: Vec<Block>,
    attachments: Vec<Attachment>,
    raw: String,
}

struct Attachment {
    color: String,
    pretext: String,
    author_name: String,
    title: String,
    title_link: Option<String>,
    text: String,
    fields: Vec<Field>,
    blocks: Vec<Block>,
    footer: String,
    ts: String,
}

struct Field {
    title: String,
    value: String,
    short: bool,
}

struct Block {
    kind: String,
    text: String,
    fields: Vec<String>,
    elements: Vec<String>,
    buttons: Vec<Button>,
}

struct Button {
    text: String,
    url: Option<String>,
}

/// Slack's named colours, a hex code with or without `#`, or Slack's grey.
fn color(v: &Value) -> String {
    match v.as_str().unwrap_or_default() {
        "good" => "#2EB67D".into(),
        "warning" => "#ECB22E".into(),
        "danger" => "#E01E5A".into(),
        s => {
            let hex = s.trim_start_matches('#');
            if hex.len() == 6 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
                format!("#{hex}")
            } else {
                "#DDDDDD".into()
            }
        }
    }
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

fn blocks(v: &Value) -> Vec<Block> {
    array(v)
        .iter()
        .map(|b| Block {
            kind: text(&b["type"]),
            text: text(&b["text"]["text"]),
            fields: array(&b["fields"]).iter().map(|f| text(&f["text"])).collect(),
            elements: array(&b["elements"])
                .iter()
                .filter(|e| e["type"] != "button")
                .map(|e| {
                    let t = text(&e["text"]);
                    if t.is_empty() {
                        text(&e["alt_text"])
                    } else {
                        t
                    }
                })
                .collect(),
            buttons: array(&b["elements"])
                .iter()
                .filter(|e| e["type"] == "button")
                .map(|e| Button {
                    text: text(&e["text"]["text"]),
                    url: link(&e["url"]),
                })
                .collect(),
        })
        .collect()
}

fn ts(v: &Value) -> String {
    let secs = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    // Whole seconds are all a footer shows.
    #[allow(clippy::cast_possible_truncation)]
    secs.and_then(|s| Utc.timestamp_opt(s as i64, 0).single())
        .map(|t| t.format("%b %-d, %Y at %H:%M UTC").to_string())
        .unwrap_or_default()
}

fn item(r: &crate::Received) -> Item {
    let b = &r.body;
    Item {
        channel: r.channel.clone(),
        webhook_url: r.webhook_url.clone(),
        time: view::time(r.at),
        accepted: r.accepted(),
        status: r.status,
        answer: r.answer.clone(),
        text: text(&b["text"]),
        blocks: blocks(&b["blocks"]),
        attachments: array(&b["attachments"])
            .iter()
            .map(|a| Attachment {
                color: color(&a["color"]),
                pretext: text(&a["pretext"]),
                author_name: text(&a["author_name"]),
                title: text(&a["title"]),
                title_link: link(&a["title_link"]),
                text: text(&a["text"]),
                fields: array(&a["fields"])
                    .iter()
                    .map(|f| Field {
                        title: text(&f["title"]),
                        value: text(&f["value"]),
                        short: f["short"].as_bool().unwrap_or(false),
                    })
                    .collect(),
                blocks: blocks(&a["blocks"]),
                footer: text(&a["footer"]),
                ts: ts(&a["ts"]),
            })
            .collect(),
        raw: view::raw(r),
    }
}

/// `GET /` and `GET /_standin/messages`
pub(crate) async fn messages(State(s): State<Arc<Slack>>) -> Response {
    let items = s.journal.requests().iter().rev().map(item).collect();
    let page = MessagesPage {
        vendor: "Slack",
        dark: false,
        root: view::root(&s.base),
        team: super::TEAM_NAME,
        items,
    };
    server::page(StatusCode::OK, page.render())
}

/// `GET /services/{B…}`: a webhook's `configuration_url`; the stand-in's
/// configuration is its faults page.
pub(crate) async fn configuration(State(s): State<Arc<Slack>>) -> Response {
    server::see_other(&format!("{}/_standin/faults", view::root(&s.base)))
}
