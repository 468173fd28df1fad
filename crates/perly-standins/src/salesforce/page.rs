//! The org's pages: the OAuth login + consent page and its error page, and
//! `GET /`, which shows what Perly did to the org: recently changed
//! Accounts with their `Perly…__c` values, Tasks and Chatter posts created
//! through the API, and the latest API calls. `GET /_standin/requests.json`
//! is the call log as JSON.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::catalog::{Cell, Kind};
use super::org::RowKey;
use super::Org;
use crate::server;

#[derive(Template)]
#[template(path = "salesforce_consent.html")]
pub(crate) struct ConsentPage {
    pub(crate) vendor: &'static str,
    pub(crate) dark: bool,
    pub(crate) org: &'static str,
    pub(crate) org_name: String,
    pub(crate) username: String,
    pub(crate) password_hint: &'static str,
    pub(crate) login_error: Option<String>,
    pub(crate) scopes: Vec<String>,
    pub(crate) response_type: String,
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) scope: String,
    pub(crate) state: String,
    pub(crate) code_challenge: String,
    pub(crate) code_challenge_method: String,
}

#[derive(Template)]
#[template(path = "salesforce_oauth_error.html")]
pub(crate) struct OAuthErrorPage {
    pub(crate) vendor: &'static str,
    pub(crate) dark: bool,
    pub(crate) org: &'static str,
    pub(crate) code: String,
    pub(crate) description: String,
}

struct AccountRow {
    id: String,
    name: String,
    modified: String,
    values: Vec<String>,
}

struct TaskRow {
    created: String,
    subject: String,
    what: String,
    priority: String,
    status: String,
    due: String,
}

struct PostRow {
    created: String,
    parent: String,
    body: String,
}

struct CallRow {
    at: String,
    method: String,
    path: String,
    status: u16,
}

#[derive(Template)]
#[template(path = "salesforce_org.html")]
struct OrgPage {
    vendor: &'static str,
    dark: bool,
    org: &'static str,
    org_name: String,
    used: u64,
    max: u64,
    perly_fields: Vec<String>,
    accounts: Vec<AccountRow>,
    tasks: Vec<TaskRow>,
    posts: Vec<PostRow>,
    calls: Vec<CallRow>,
}

fn shown(c: &Cell) -> String {
    match c {
        Cell::Null => String::new(),
        Cell::DateTime(ms) => super::catalog::rest_datetime(*ms),
        other => {
            let mut s = String::new();
            other.write_csv(&mut s);
            s
        }
    }
}

/// `GET /`
pub(crate) async fn home(State(org): State<Arc<Org>>) -> Response {
    let st = org.lock();
    let d = &st.data;
    let get = |kind: Kind, key: RowKey, name: &str| {
        let t = d.table(kind);
        t.col(name).map(|c| shown(&t.value(&d.gen, key, c))).unwrap_or_default()
    };
    let accounts_t = d.table(Kind::Account);
    let perly_cols: Vec<usize> = (0..accounts_t.columns().len())
        .filter(|c| accounts_t.field(*c).name.starts_with("Perly"))
        .collect();
    let mut changed: Vec<RowKey> = accounts_t
        .overlay
        .keys()
        .map(|i| RowKey::Generated(*i))
        .chain(accounts_t.inserted.keys().map(|s| RowKey::Inserted(*s)))
        .collect();
    changed.sort_by_key(|k| std::cmp::Reverse(get(Kind::Account, *k, "SystemModstamp")));
    let accounts = changed
        .into_iter()
        .take(50)
        .map(|k| AccountRow {
            id: accounts_t.id_of(&d.gen, k),
            name: get(Kind::Account, k, "Name"),
            modified: get(Kind::Account, k, "SystemModstamp"),
            values: perly_cols
                .iter()
                .map(|c| shown(&accounts_t.value(&d.gen, k, *c)))
                .collect(),
        })
        .collect();
    let task_t = d.table(Kind::Task);
    let tasks = task_t
        .inserted
        .keys()
        .rev()
        .take(50)
        .map(|s| {
            let k = RowKey::Inserted(*s);
            TaskRow {
                created: get(Kind::Task, k, "CreatedDate"),
                subject: get(Kind::Task, k, "Subject"),
                what: get(Kind::Task, k, "WhatId"),
                priority: get(Kind::Task, k, "Priority"),
                status: get(Kind::Task, k, "Status"),
                due: get(Kind::Task, k, "ActivityDate"),
            }
        })
        .collect();
    let posts = d
        .table(Kind::FeedItem)
        .inserted
        .keys()
        .rev()
        .take(50)
        .map(|s| {
            let k = RowKey::Inserted(*s);
            PostRow {
                created: get(Kind::FeedItem, k, "CreatedDate"),
                parent: get(Kind::FeedItem, k, "ParentId"),
                body: get(Kind::FeedItem, k, "Body"),
            }
        })
        .collect();
    let calls = st
        .requests
        .iter()
        .rev()
        .take(100)
        .map(|r| CallRow {
            at: crate::view::time(r.at),
            method: r.method.clone(),
            path: r.path.clone(),
            status: r.status,
        })
        .collect();
    let page = OrgPage {
        vendor: "Salesforce",
        dark: false,
        org: org.label(),
        org_name: d.gen.org_name.clone(),
        used: st.usage.0,
        max: st.usage.1,
        perly_fields: perly_cols.iter().map(|c| accounts_t.field(*c).name.clone()).collect(),
        accounts,
        tasks,
        posts,
        calls,
    };
    drop(st);
    server::page(StatusCode::OK, page.render())
}

/// `GET /_standin/requests.json`
pub(crate) async fn requests_json(State(org): State<Arc<Org>>) -> Response {
    Json(org.lock().requests.clone()).into_response()
}
