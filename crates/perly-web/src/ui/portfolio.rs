//! `/`: the portfolio, where the team lands after signing in. Customers and
//! MRR per risk level (with "not enough data yet" for those without one),
//! drawn as a server-side SVG with the numbers in a table beside it; the
//! week's biggest falls and rises (score now vs the score 7 days ago, from
//! score history); the latest alerts; and the last import's result (see
//! [`last_import`]).

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use chrono::Duration;
use perly_domain::ids::WorkspaceId;
use perly_domain::risk::RiskLevel;
use perly_store::{AlertQuery, Mover, RiskTotal};

use super::customers::{money, risk_words};
use super::session::CurrentUser;
use super::{path_segment, render, take_flash, when, Flash, Nav, UiError};
use crate::AppState;

/// Falls and rises shown, each.
const MOVERS: usize = 5;
/// Alerts shown.
const ALERTS: usize = 8;

pub fn router() -> Router<AppState> {
    Router::new().route("/", get(page))
}

/// One risk level's row: the table's numbers and the chart's bars.
pub struct LevelRow {
    /// `critical` … `low`, or `none` (not enough data yet).
    pub key: &'static str,
    pub label: &'static str,
    /// `/customers?risk=…`, empty for "not enough data yet" (no such filter).
    pub link: String,
    pub customers: i64,
    /// Share of all customers, e.g. `12%`.
    pub share: String,
    pub mrr: String,
    /// Bar geometry in the SVG.
    pub y: i64,
    pub customers_width: i64,
    pub mrr_width: i64,
}

/// The risk chart: one row per level, customers and MRR side by side.
pub struct RiskChart {
    pub width: i64,
    pub height: i64,
    pub label_x: i64,
    pub customers_x: i64,
    pub mrr_x: i64,
    pub bar_height: i64,
    pub rows: Vec<LevelRow>,
    pub total_customers: i64,
    pub total_mrr: String,
    /// Accessible description.
    pub summary: String,
}

const CHART_W: i64 = 680;
const ROW_H: i64 = 34;
const TOP: i64 = 26;
const LABEL_X: i64 = 8;
const CUSTOMERS_X: i64 = 205;
const MRR_X: i64 = 435;
/// The longest bar (leaves room for its number).
const BAR_MAX: i64 = 160;

/// Levels in the order shown, worst first, then "not enough data yet".
const LEVELS: [Option<RiskLevel>; 5] = [
    Some(RiskLevel::Critical),
    Some(RiskLevel::High),
    Some(RiskLevel::Medium),
    Some(RiskLevel::Low),
    None,
];

fn bar(value: f64, max: f64) -> i64 {
    if max <= 0.0 || value <= 0.0 {
        0
    } else {
        // At least 2 px, so a level with anything in it shows.
        ((value / max * BAR_MAX as f64).round() as i64).clamp(2, BAR_MAX)
    }
}

/// Pure geometry: the chart of the store's totals (levels missing from them count 0).
pub fn risk_chart(totals: &[RiskTotal]) -> RiskChart {
    let of = |level: Option<RiskLevel>| {
        totals
            .iter()
            .filter(|t| t.risk_level == level)
            .fold((0i64, 0.0f64), |(n, m), t| (n + t.customers, m + t.mrr))
    };
    let values: Vec<(Option<RiskLevel>, i64, f64)> = LEVELS
        .iter()
        .map(|l| {
            let (n, m) = of(*l);
            (*l, n, m)
        })
        .collect();
    let total_customers: i64 = values.iter().map(|v| v.1).sum();
    let total_mrr: f64 = values.iter().map(|v| v.2).sum();
    let max_customers = values.iter().map(|v| v.1).max().unwrap_or(0) as f64;
    let max_mrr = values.iter().map(|v| v.2).fold(0.0, f64::max);
    let rows: Vec<LevelRow> = values
        .iter()
        .enumerate()
        .map(|(i, (level, n, m))| {
            let (key, label) = match level {
                Some(l) => risk_words(Some(*l)),
                None => ("none", "Not enough data yet"),
            };
            let share = if total_customers > 0 {
                format!("{:.0}%", *n as f64 * 100.0 / total_customers as f64)
            } else {
                "0%".to_owned()
            };
            LevelRow {
                key,
                label,
                link: level
                    .map(|l| format!("/customers?risk={}", l.as_str()))
                    .unwrap_or_default(),
                customers: *n,
                share,
                mrr: money(Some(*m)),
                y: TOP + i as i64 * ROW_H,
                customers_width: bar(*n as f64, max_customers),
                mrr_width: bar(*m, max_mrr),
            }
        })
        .collect();
    let summary = rows
        .iter()
        .map(|r| format!("{}: {} customers, {} MRR", r.label, r.customers, r.mrr))
        .collect::<Vec<_>>()
        .join("; ");
    RiskChart {
        width: CHART_W,
        height: TOP + LEVELS.len() as i64 * ROW_H,
        label_x: LABEL_X,
        customers_x: CUSTOMERS_X,
        mrr_x: MRR_X,
        bar_height: ROW_H - 12,
        rows,
        total_customers,
        total_mrr: money(Some(total_mrr)),
        summary,
    }
}

/// A customer whose score moved this week.
pub struct MoverView {
    pub name: String,
    pub path: String,
    pub before: i64,
    pub score: i64,
    /// `−12` or `+8`.
    pub change: String,
    pub risk: &'static str,
    pub risk_label: &'static str,
    pub mrr: String,
}

fn mover_view(m: &Mover) -> MoverView {
    let (risk, risk_label) = match m.risk_level {
        Some(l) => risk_words(Some(l)),
        None => ("none", "Not enough data yet"),
    };
    let change = m.change();
    MoverView {
        name: m.name.clone(),
        path: path_segment(&m.external_id),
        before: m.score_before,
        score: m.score,
        change: if change > 0 {
            format!("+{change}")
        } else {
            format!("−{}", -change)
        },
        risk,
        risk_label,
        mrr: money(m.mrr),
    }
}

pub struct AlertView {
    pub risk: &'static str,
    pub risk_label: &'static str,
    pub kind: &'static str,
    pub customer: String,
    pub customer_path: String,
    pub headline: String,
    pub time: String,
}

// ---------------------------------------------------------------------
// Last import: a Salesforce first sync, an event backfill or a scorecard
// change, with its summary (`portfolio_last_import.html`).

/// The newest import of the workspace, as the "Last import" panel shows it.
pub struct LastImport {
    /// What was imported, e.g. "Salesforce first sync".
    pub kind: String,
    /// When it finished (or "running").
    pub when: String,
    /// One line per figure of its summary.
    pub summary: Vec<String>,
    /// Where to see more, if anywhere.
    pub link: String,
}

/// The newest import of `ws`, if any: its label, state and summary (the
/// figures each channel's one summary message was made of).
async fn last_import(state: &AppState, ws: WorkspaceId) -> Result<Option<LastImport>, UiError> {
    let Some(i) = state.store.list_imports(ws, 1).await?.into_iter().next() else {
        return Ok(None);
    };
    let when = match (&i.settled_at, &i.closed_at) {
        (Some(t), _) => format!("summarised {}", t.format("%Y-%m-%d %H:%M UTC")),
        (None, Some(_)) => "complete, customers being rescored".to_owned(),
        (None, None) => format!("running since {}", i.started_at.format("%Y-%m-%d %H:%M UTC")),
    };
    let mut summary = Vec::new();
    if let Some(s) = &i.summary {
        let levels = s.levels_text();
        summary.push(format!(
            "{} customers{}",
            perly_domain::imports::count(s.customers()),
            if levels.is_empty() {
                String::new()
            } else {
                format!(": {levels}")
            }
        ));
        let alerts: u64 = s.alerts.iter().map(|k| k.alerts).sum();
        if alerts > 0 {
            let kinds: Vec<String> = s
                .alerts
                .iter()
                .map(|k| {
                    format!(
                        "{} {}",
                        perly_domain::imports::count(k.alerts),
                        k.kind.label().to_lowercase()
                    )
                })
                .collect();
            summary.push(format!(
                "{} alerts recorded in the feed, summarised to channels once: {}",
                perly_domain::imports::count(alerts),
                kinds.join(", ")
            ));
        }
        if !s.top.is_empty() {
            let names: Vec<String> = s
                .top
                .iter()
                .map(|a| match a.mrr {
                    Some(m) => format!("{} ({})", a.customer_name, perly_domain::money::dollars(m)),
                    None => a.customer_name.clone(),
                })
                .collect();
            summary.push(format!("At risk, by MRR: {}", names.join(", ")));
        }
    }
    Ok(Some(LastImport {
        kind: i.label,
        when,
        summary,
        link: "/alerts".to_owned(),
    }))
}
// ---------------------------------------------------------------------

#[derive(Template)]
#[template(path = "portfolio.html")]
struct PortfolioPage {
    nav: Option<Nav>,
    flash: Option<Flash>,
    chart: RiskChart,
    falls: Vec<MoverView>,
    rises: Vec<MoverView>,
    week_start: String,
    alerts: Vec<AlertView>,
    last_import: Option<LastImport>,
}

async fn page(State(state): State<AppState>, user: CurrentUser, headers: HeaderMap) -> Result<Response, UiError> {
    let ws = user.session.workspace.id;
    let now = state.now();
    let since = now - Duration::days(7);
    let totals = state.store.risk_summary(ws).await?;
    let movers = state.store.movers(ws, since, MOVERS).await?;
    let alerts = state
        .store
        .list_alerts(
            ws,
            &AlertQuery {
                limit: ALERTS,
                ..Default::default()
            },
        )
        .await?
        .items;
    let flash = take_flash(&state, &headers);
    let had_flash = flash.is_some();
    let view = PortfolioPage {
        nav: Some(user.nav("portfolio")),
        flash,
        chart: risk_chart(&totals),
        falls: movers.iter().filter(|m| m.change() < 0).map(mover_view).collect(),
        rises: movers.iter().filter(|m| m.change() > 0).map(mover_view).collect(),
        week_start: since.format("%b %-d").to_string(),
        alerts: alerts
            .iter()
            .map(|a| {
                let (risk, risk_label) = risk_words(Some(a.risk_level));
                AlertView {
                    risk,
                    risk_label,
                    kind: a.kind.label(),
                    customer: a.customer_name.clone(),
                    customer_path: path_segment(&a.customer_external_id),
                    headline: a.headline.clone(),
                    time: when(a.occurred_at),
                }
            })
            .collect(),
        last_import: last_import(&state, ws).await?,
    };
    Ok(render(&state, StatusCode::OK, &view, had_flash))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(level: Option<RiskLevel>, customers: i64, mrr: f64) -> RiskTotal {
        RiskTotal {
            risk_level: level,
            customers,
            mrr,
        }
    }

    #[test]
    fn every_level_has_a_row_and_the_largest_bar_is_full_length() {
        let c = risk_chart(&[
            total(Some(RiskLevel::High), 3, 900.0),
            total(Some(RiskLevel::Low), 6, 300.0),
            total(None, 1, 0.0),
        ]);
        let keys: Vec<&str> = c.rows.iter().map(|r| r.key).collect();
        assert_eq!(keys, ["critical", "high", "medium", "low", "none"]);
        assert_eq!(c.total_customers, 10);
        assert_eq!(c.total_mrr, "$1,200");
        let row = |k: &str| c.rows.iter().find(|r| r.key == k).expect("row");
        assert_eq!(row("low").customers_width, BAR_MAX);
        assert_eq!(row("high").customers_width, BAR_MAX / 2);
        assert_eq!(row("high").mrr_width, BAR_MAX);
        assert_eq!(row("critical").customers_width, 0);
        assert_eq!(row("none").mrr_width, 0);
        assert_eq!(row("none").customers_width, (BAR_MAX as f64 / 6.0).round() as i64);
        assert_eq!(row("low").share, "60%");
        assert_eq!(row("none").label, "Not enough data yet");
        assert!(row("none").link.is_empty());
        assert_eq!(row("critical").link, "/customers?risk=critical");
    }

    #[test]
    fn an_empty_workspace_draws_no_bars() {
        let c = risk_chart(&[]);
        assert!(c.rows.iter().all(|r| r.customers_width == 0 && r.mrr_width == 0));
        assert_eq!(c.total_customers, 0);
    }
}
