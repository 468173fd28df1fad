//! `/customers` (sortable, filterable, paged list) and `/customers/{id}` (the
//! profile: score, risk, delta, chart, signals, action, coverage, alerts,
//! events, and the CRM sections Salesforce fills).

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::Duration;
use perly_domain::risk::RiskLevel;
use perly_domain::scoring::Sentiment;
use perly_store::{AlertQuery, CustomerQuery, CustomerSort, CustomerSummary};

use super::chart::{self, Chart};
use super::session::CurrentUser;
use super::{path_segment, render, take_flash, when, Flash, Nav, UiError};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/customers", get(list))
        .route("/customers/{external_id}", get(show))
}

/// The owners and plans offered as filters, cached per workspace for a
/// minute: computing them reads an index entry per customer.
#[derive(Default)]
pub struct FacetCache {
    entries: std::sync::Mutex<HashMap<perly_domain::ids::WorkspaceId, (chrono::DateTime<chrono::Utc>, Facets)>>,
}

type Facets = (Vec<String>, Vec<String>);

impl FacetCache {
    async fn get(&self, state: &AppState, ws: perly_domain::ids::WorkspaceId) -> Result<Facets, UiError> {
        let now = state.now();
        let cached = self.entries.lock().ok().and_then(|m| m.get(&ws).cloned());
        if let Some((_, facets)) = cached.filter(|(at, _)| *at <= now && now - *at < Duration::minutes(1)) {
            return Ok(facets);
        }
        let facets = state.store.customer_facets(ws).await?;
        if let Ok(mut m) = self.entries.lock() {
            m.insert(ws, (now, facets.clone()));
        }
        Ok(facets)
    }
}

pub struct Filters {
    pub q: String,
    pub risk: String,
    pub owner: String,
    pub plan: String,
    pub sort: String,
}

pub struct Header {
    pub label: &'static str,
    pub link: String,
    pub arrow: &'static str,
    pub state: &'static str,
}

pub struct Row {
    pub external_id_path: String,
    pub name: String,
    pub score: String,
    pub risk: &'static str,
    pub risk_label: &'static str,
    pub delta: String,
    pub delta_class: &'static str,
    pub mrr: String,
    pub plan: String,
    pub owner: String,
}

#[derive(Template)]
#[template(path = "customers.html")]
struct ListPage {
    nav: Option<Nav>,
    flash: Option<Flash>,
    f: Filters,
    risks: Vec<&'static str>,
    owners: Vec<String>,
    plans: Vec<String>,
    headers: Vec<Header>,
    rows: Vec<Row>,
    first_link: String,
    next_link: String,
}

pub fn risk_words(r: Option<RiskLevel>) -> (&'static str, &'static str) {
    match r {
        Some(r) => (r.as_str(), r.label()),
        None => ("none", "Not scored"),
    }
}

pub fn delta_text(d: Option<i64>) -> (String, &'static str) {
    match d {
        Some(d) if d > 0 => (format!("+{d}"), "up"),
        Some(d) if d < 0 => (format!("−{}", -d), "down"),
        Some(_) => ("0".into(), ""),
        None => ("—".into(), ""),
    }
}

/// Money in tables: whole dollars (the formatter is shared with messages).
pub(crate) fn money(m: Option<f64>) -> String {
    m.map_or_else(|| "—".into(), perly_domain::money::whole_dollars)
}

fn row(c: &CustomerSummary) -> Row {
    let (risk, risk_label) = risk_words(c.risk_level);
    let (delta, delta_class) = delta_text(c.delta);
    Row {
        external_id_path: path_segment(&c.external_id),
        name: c.name.clone(),
        score: c.score.map_or("—".into(), |s| s.to_string()),
        risk,
        risk_label,
        delta,
        delta_class,
        mrr: money(c.mrr),
        plan: c.plan.clone().unwrap_or_else(|| "—".into()),
        owner: c.owner_email.clone().unwrap_or_else(|| "—".into()),
    }
}

fn query_string(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        s.append_pair(k, v);
    }
    s.finish()
}

async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, UiError> {
    let ws = user.session.workspace.id;
    let get = |k: &str| q.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let sort = CustomerSort::parse(&get("sort")).unwrap_or_default();
    let risk = get("risk").parse::<RiskLevel>().ok();
    let f = Filters {
        q: get("q"),
        risk: risk.map(|r| r.as_str().to_owned()).unwrap_or_default(),
        owner: get("owner"),
        plan: get("plan"),
        sort: sort.as_str().to_owned(),
    };
    let cursor = Some(get("cursor")).filter(|c| !c.is_empty());
    let query = CustomerQuery {
        risk,
        owner: Some(f.owner.clone()).filter(|s| !s.is_empty()),
        plan: Some(f.plan.clone()).filter(|s| !s.is_empty()),
        search: Some(f.q.clone()).filter(|s| !s.is_empty()),
        sort,
        limit: 50,
        cursor: cursor.clone(),
    };
    let page = state.store.list_customers(ws, &query).await?;
    let (owners, plans) = state.facets.get(&state, ws).await?;
    let base = |sort: &str, cursor: &str| {
        let qs = query_string(&[
            ("q", &f.q),
            ("risk", &f.risk),
            ("owner", &f.owner),
            ("plan", &f.plan),
            ("sort", sort),
            ("cursor", cursor),
        ]);
        format!("/customers?{qs}")
    };
    // Each sortable column toggles between its two directions.
    let column = |label: &'static str, asc: CustomerSort, desc: CustomerSort, first: CustomerSort| {
        let (next, arrow, state) = if sort == asc {
            (desc, " ▲", "ascending")
        } else if sort == desc {
            (asc, " ▼", "descending")
        } else {
            (first, "", "")
        };
        Header {
            label,
            link: base(next.as_str(), ""),
            arrow,
            state,
        }
    };
    let columns = vec![
        column(
            "Customer",
            CustomerSort::NameAsc,
            CustomerSort::NameDesc,
            CustomerSort::NameAsc,
        ),
        column(
            "Score",
            CustomerSort::ScoreAsc,
            CustomerSort::ScoreDesc,
            CustomerSort::ScoreAsc,
        ),
        Header {
            label: "Risk",
            link: String::new(),
            arrow: "",
            state: "",
        },
        column(
            "Δ 7 days",
            CustomerSort::DeltaAsc,
            CustomerSort::DeltaDesc,
            CustomerSort::DeltaAsc,
        ),
        column(
            "MRR",
            CustomerSort::MrrAsc,
            CustomerSort::MrrDesc,
            CustomerSort::MrrDesc,
        ),
        Header {
            label: "Plan",
            link: String::new(),
            arrow: "",
            state: "",
        },
        Header {
            label: "Owner",
            link: String::new(),
            arrow: "",
            state: "",
        },
    ];
    let flash = take_flash(&state, &headers);
    let had_flash = flash.is_some();
    let view = ListPage {
        nav: Some(user.nav("customers")),
        flash,
        risks: RiskLevel::ALL.iter().map(|r| r.as_str()).collect(),
        owners,
        plans,
        rows: page.items.iter().map(row).collect(),
        first_link: if cursor.is_some() {
            base(sort.as_str(), "")
        } else {
            String::new()
        },
        next_link: page
            .next_cursor
            .as_deref()
            .map(|c| base(sort.as_str(), c))
            .unwrap_or_default(),
        headers: columns,
        f,
    };
    Ok(render(&state, StatusCode::OK, &view, had_flash))
}

pub struct SignalView {
    pub text: String,
    pub class: &'static str,
}

pub struct MeasureView {
    pub name: &'static str,
    pub detail: String,
    pub points: String,
    pub weight: String,
}

pub struct AlertView {
    pub risk: &'static str,
    pub risk_label: &'static str,
    pub kind: &'static str,
    pub headline: String,
    pub time: String,
}

pub struct EventView {
    pub kind: String,
    pub summary: String,
    pub time: String,
}

pub struct Profile {
    pub name: String,
    pub meta: String,
    pub score: String,
    pub risk: &'static str,
    pub risk_label: &'static str,
    pub delta: String,
    pub delta_class: &'static str,
    pub coverage: String,
    pub signals: Vec<SignalView>,
    pub action: String,
    pub missing: Vec<String>,
    pub measures: Vec<MeasureView>,
    pub alerts: Vec<AlertView>,
    pub events: Vec<EventView>,
    pub contacts: Vec<ContactView>,
    pub opportunities: Vec<OpportunityView>,
    pub activities: Vec<EventView>,
}

pub struct ContactView {
    pub name: String,
    pub title: String,
    pub email: String,
    pub roles: String,
}

pub struct OpportunityView {
    pub name: String,
    pub stage: String,
    pub amount: String,
    pub close_date: String,
    pub kind: String,
}

fn field(r: &perly_store::CrmRecord, k: &str) -> String {
    r.data.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_owned()
}

fn contact_views(crm: &crate::api::customers::CustomerCrm) -> Vec<ContactView> {
    crm.contacts
        .iter()
        .map(|c| {
            let mut roles: Vec<String> = crm
                .contact_roles
                .iter()
                .filter(|r| r.data.get("ContactId").and_then(|v| v.as_str()) == Some(c.sf_id.as_str()))
                .map(|r| field(r, "Role"))
                .filter(|r| !r.is_empty())
                .collect();
            roles.sort();
            roles.dedup();
            ContactView {
                name: format!("{} {}", field(c, "FirstName"), field(c, "LastName"))
                    .trim()
                    .to_owned(),
                title: field(c, "Title"),
                email: field(c, "Email"),
                roles: roles.join(", "),
            }
        })
        .collect()
}

fn opportunity_views(crm: &crate::api::customers::CustomerCrm) -> Vec<OpportunityView> {
    let mut opps: Vec<&perly_store::CrmRecord> = crm.opportunities.iter().collect();
    opps.sort_by_key(|o| std::cmp::Reverse(field(o, "CloseDate")));
    opps.into_iter()
        .map(|o| OpportunityView {
            name: field(o, "Name"),
            stage: field(o, "StageName"),
            amount: money(field(o, "Amount").parse::<f64>().ok()),
            close_date: field(o, "CloseDate"),
            kind: field(o, "Type"),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "customer.html")]
struct ProfilePage {
    nav: Option<Nav>,
    flash: Option<Flash>,
    c: Profile,
    chart: Chart,
}

pub fn measure_name(m: perly_domain::scorecard::MeasureKind) -> &'static str {
    use perly_domain::scorecard::MeasureKind as M;
    match m {
        M::UsageTrend => "Usage trend",
        M::SeatUtilisation => "Seat utilisation",
        M::FeatureAdoption => "Feature adoption",
        M::BillingHealth => "Billing health",
        M::SupportLoad => "Support load",
        M::RelationshipRecency => "Relationship recency",
        M::Nps => "NPS",
        M::RenewalOutlook => "Renewal outlook",
    }
}

/// One line about an event's fields, e.g. `user_id=u3`.
fn event_summary(payload: &serde_json::Value) -> String {
    payload
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "id" | "customer_id" | "occurred_at" | "type"))
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => format!("{k}={s}"),
                    other => format!("{k}={other}"),
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

async fn show(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    Path(external_id): Path<String>,
) -> Result<Response, UiError> {
    let ws = user.session.workspace.id;
    let now = state.now();
    let detail = state
        .store
        .get_customer(ws, &external_id, now - Duration::days(90))
        .await?
        .ok_or(UiError::NotFound)?;
    let alerts = state
        .store
        .list_alerts(
            ws,
            &AlertQuery {
                customer_external_id: Some(external_id.clone()),
                limit: 200,
                ..Default::default()
            },
        )
        .await?
        .items;
    let events = state.store.recent_events(ws, &external_id, 15).await?;
    let crm = crate::api::customers::crm_of(&state, ws, &external_id).await?;
    let activities: Vec<EventView> = state
        .store
        .recent_events(ws, &external_id, 200)
        .await?
        .iter()
        .filter(|e| e.r#type == "crm_activity")
        .take(10)
        .map(|e| EventView {
            kind: e
                .payload
                .get("activity_type")
                .and_then(|v| v.as_str())
                .unwrap_or("other")
                .to_owned(),
            summary: e
                .payload
                .get("subject")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned(),
            time: when(e.occurred_at),
        })
        .collect();
    let card = state.store.scorecard(ws).await?;
    let s = &detail.summary;
    let (risk, risk_label) = risk_words(s.risk_level);
    let (delta, delta_class) = delta_text(s.delta);
    let mut meta = vec![
        format!("Plan: {}", s.plan.clone().unwrap_or_else(|| "—".into())),
        format!("MRR: {}", money(s.mrr)),
    ];
    if let Some(seats) = s.seats_purchased {
        meta.push(format!("{seats} seats"));
    }
    if let Some(o) = &s.owner_email {
        meta.push(format!("Owner: {o}"));
    }
    if let Some(p) = &s.parent_external_id {
        meta.push(format!("Parent: {p}"));
    }
    let ex = detail.explanation.as_ref();
    let profile = Profile {
        name: s.name.clone(),
        meta: meta.join(" · "),
        score: s.score.map_or("—".into(), |v| v.to_string()),
        risk,
        risk_label,
        delta,
        delta_class,
        coverage: ex.map_or("no data yet".into(), |e| e.coverage.summary.clone()),
        signals: ex
            .map(|e| {
                e.signals
                    .iter()
                    .map(|x| SignalView {
                        text: x.text.clone(),
                        class: if x.sentiment == Sentiment::Positive {
                            "positive"
                        } else {
                            "negative"
                        },
                    })
                    .collect()
            })
            .unwrap_or_default(),
        action: ex.map(|e| e.suggested_action.clone()).unwrap_or_default(),
        missing: ex
            .map(|e| {
                e.coverage
                    .missing
                    .iter()
                    .map(|m| format!("{}: {}", measure_name(m.measure), m.reason))
                    .collect()
            })
            .unwrap_or_default(),
        measures: ex
            .map(|e| {
                e.measures
                    .iter()
                    .map(|m| MeasureView {
                        name: measure_name(m.measure),
                        detail: m.detail.clone(),
                        points: format!("{:.0}", m.points),
                        weight: format!("{:.0}%", m.weight * 100.0),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        alerts: alerts
            .iter()
            .take(10)
            .map(|a| {
                let (risk, risk_label) = risk_words(Some(a.risk_level));
                AlertView {
                    risk,
                    risk_label,
                    kind: a.kind.label(),
                    headline: a.headline.clone(),
                    time: when(a.occurred_at),
                }
            })
            .collect(),
        events: events
            .iter()
            .map(|e| EventView {
                kind: e.r#type.clone(),
                summary: event_summary(&e.payload),
                time: when(e.occurred_at),
            })
            .collect(),
        contacts: crm.as_ref().map(contact_views).unwrap_or_default(),
        opportunities: crm.as_ref().map(opportunity_views).unwrap_or_default(),
        activities,
    };
    let chart = chart::build(&detail.history, &alerts, &card.risk_bands, now, 90);
    let flash = take_flash(&state, &headers);
    let had_flash = flash.is_some();
    let page = ProfilePage {
        nav: Some(user.nav("customers")),
        flash,
        c: profile,
        chart,
    };
    Ok(render(&state, StatusCode::OK, &page, had_flash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_has_thousands_separators() {
        assert_eq!(money(Some(4200.0)), "$4,200");
        assert_eq!(money(Some(1234567.4)), "$1,234,567");
        assert_eq!(money(None), "—");
    }
}
