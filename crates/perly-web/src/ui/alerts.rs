//! `/alerts`: the alert feed, newest first, filtered by kind, risk and
//! customer; every alert links to its customer.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use perly_domain::alerts::AlertKind;
use perly_domain::risk::RiskLevel;
use perly_store::AlertQuery;

use super::customers::risk_words;
use super::session::CurrentUser;
use super::{path_segment, render, take_flash, when, Flash, Nav, UiError};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/alerts", get(list))
}

pub struct Filters {
    pub kind: String,
    pub risk: String,
    pub customer: String,
}

pub struct KindOption {
    pub value: &'static str,
    pub label: &'static str,
}

pub struct Row {
    pub risk: &'static str,
    pub risk_label: &'static str,
    pub kind: &'static str,
    pub customer: String,
    pub customer_path: String,
    pub time: String,
    pub headline: String,
    pub signals: Vec<String>,
    pub action: String,
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct ListPage {
    nav: Option<Nav>,
    flash: Option<Flash>,
    f: Filters,
    kinds: Vec<KindOption>,
    risks: Vec<&'static str>,
    rows: Vec<Row>,
    next_link: String,
}

async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, UiError> {
    let get = |k: &str| q.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let kind = get("kind").parse::<AlertKind>().ok();
    let risk = get("risk").parse::<RiskLevel>().ok();
    let f = Filters {
        kind: kind.map(|k| k.as_str().to_owned()).unwrap_or_default(),
        risk: risk.map(|r| r.as_str().to_owned()).unwrap_or_default(),
        customer: get("customer"),
    };
    let query = AlertQuery {
        kind,
        risk,
        customer_external_id: Some(f.customer.clone()).filter(|c| !c.is_empty()),
        limit: 50,
        cursor: Some(get("cursor")).filter(|c| !c.is_empty()),
        since: None,
    };
    let page = state.store.list_alerts(user.session.workspace.id, &query).await?;
    let next_link = page
        .next_cursor
        .as_deref()
        .map(|c| {
            let mut s = form_urlencoded::Serializer::new(String::new());
            for (k, v) in [
                ("kind", f.kind.as_str()),
                ("risk", f.risk.as_str()),
                ("customer", f.customer.as_str()),
                ("cursor", c),
            ] {
                if !v.is_empty() {
                    s.append_pair(k, v);
                }
            }
            format!("/alerts?{}", s.finish())
        })
        .unwrap_or_default();
    let rows = page
        .items
        .iter()
        .map(|a| {
            let (risk, risk_label) = risk_words(Some(a.risk_level));
            Row {
                risk,
                risk_label,
                kind: a.kind.label(),
                customer: a.customer_name.clone(),
                customer_path: path_segment(&a.customer_external_id),
                time: when(a.occurred_at),
                headline: a.headline.clone(),
                signals: a.signals.clone(),
                action: a.suggested_action.clone(),
            }
        })
        .collect();
    let flash = take_flash(&state, &headers);
    let had_flash = flash.is_some();
    let view = ListPage {
        nav: Some(user.nav("alerts")),
        flash,
        f,
        kinds: AlertKind::ALL
            .iter()
            .map(|k| KindOption {
                value: k.as_str(),
                label: k.label(),
            })
            .collect(),
        risks: RiskLevel::ALL.iter().map(|r| r.as_str()).collect(),
        rows,
        next_link,
    };
    Ok(render(&state, StatusCode::OK, &view, had_flash))
}
