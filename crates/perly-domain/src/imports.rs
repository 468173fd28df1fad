//! History is not news. Facts that describe the past are scored and recorded
//! (the feed and the chart show what would have fired, and when), but a
//! channel gets one summary per import instead of a message per alert.
//!
//! How Perly tells live from historic:
//! - an **import**: a batch sent with `"backfill": true`, the first sync of a
//!   Salesforce connection, or a scorecard change; events older than
//!   [`LIVE_WINDOW_HOURS`] when they arrive join the workspace's open events
//!   import as well (late data is history too);
//! - a customer whose waiting data came from an import is rescored as
//!   history; live data for the same customer wins;
//! - in a live rescoring, a customer's **first verdict** (its first score
//!   with a risk level) is history as well: it describes how the account
//!   has been, not what just changed. Billing retry failures are news when
//!   the retry failed within the live window.
//!
//! An import settles once it is complete (an events import: no new batch for
//! a quiet period) and none of its customers waits for rescoring; each
//! channel whose rules match at least one of its alerts then gets one
//! summary ([`channel_notice`]).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::alerts::{AlertDraft, AlertKind};
use crate::money::dollars;
use crate::risk::RiskLevel;

/// Events older than this when they arrive are history.
pub const LIVE_WINDOW_HOURS: i64 = 24;

/// How many customers a summary names.
pub const TOP: usize = 10;

/// Where an import's data came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportSource {
    /// A backfill through the events API, or events that arrived late.
    Events,
    /// The first sync of a Salesforce connection.
    Salesforce,
    /// A scorecard change that rescored every customer.
    Scorecard,
}

impl ImportSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::Salesforce => "salesforce",
            Self::Scorecard => "scorecard",
        }
    }
}

impl std::str::FromStr for ImportSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "events" => Ok(Self::Events),
            "salesforce" => Ok(Self::Salesforce),
            "scorecard" => Ok(Self::Scorecard),
            other => Err(format!("unknown import source `{other}`")),
        }
    }
}

/// Whether an event that occurred at `at` and arrived at `now` is history.
pub fn is_late(at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    at < now - Duration::hours(LIVE_WINDOW_HOURS)
}

/// Whether an alert is news (sent to channels one by one) or history
/// (recorded in the feed and summarised once per import).
/// `live_data`: the customer was rescored for live data, not an import's;
/// `first_verdict`: this is the customer's first score with a risk level.
pub fn is_news(alert: &AlertDraft, live_data: bool, first_verdict: bool, now: DateTime<Utc>) -> bool {
    if !live_data {
        return false;
    }
    match alert.kind {
        AlertKind::BillingRetryFailed => !is_late(alert.occurred_at, now),
        _ => !first_verdict,
    }
}

/// Customers of an import at one risk level (`None`: not enough data yet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LevelCount {
    pub risk_level: Option<RiskLevel>,
    pub customers: u64,
    pub mrr: f64,
}

/// Alerts of one kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KindCount {
    pub kind: AlertKind,
    pub alerts: u64,
}

/// An alert recorded from an import, with what a summary shows of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportedAlert {
    pub kind: AlertKind,
    pub risk_level: RiskLevel,
    pub delta: Option<i64>,
    pub customer_external_id: String,
    pub customer_name: String,
    pub mrr: Option<f64>,
    pub score: i64,
}

/// What an import did, once settled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportSummary {
    /// Customers the import touched, per risk level after rescoring.
    pub levels: Vec<LevelCount>,
    /// Alerts recorded from history, per kind (not sent one by one).
    pub alerts: Vec<KindCount>,
    /// The import's at-risk customers (high or critical) with the most MRR.
    pub top: Vec<ImportedAlert>,
}

impl ImportSummary {
    pub fn customers(&self) -> u64 {
        self.levels.iter().map(|l| l.customers).sum()
    }

    /// "12 critical, 85 high, 400 medium, 1,300 low, 203 not enough data yet".
    pub fn levels_text(&self) -> String {
        let order = [
            Some(RiskLevel::Critical),
            Some(RiskLevel::High),
            Some(RiskLevel::Medium),
            Some(RiskLevel::Low),
            None,
        ];
        let parts: Vec<String> = order
            .iter()
            .filter_map(|level| {
                let n = self.levels.iter().find(|l| l.risk_level == *level)?.customers;
                (n > 0).then(|| match level {
                    Some(l) => format!("{} {}", count(n), l.as_str()),
                    None => format!("{} not enough data yet", count(n)),
                })
            })
            .collect();
        parts.join(", ")
    }
}

/// A summary message's text: the platform renderers lay it out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoticeText {
    pub title: String,
    pub lines: Vec<String>,
    /// "+27 more in Perly".
    pub more: Option<String>,
    /// The colour: the most severe level among what it reports.
    pub risk_level: Option<RiskLevel>,
}

pub use crate::money::count;

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", count(n), if n == 1 { one } else { many })
}

/// One channel's summary of an import: the import's label and totals, and
/// of the alerts that match the channel's rules (`matched`), a count per
/// kind and the top [`TOP`] customers by MRR.
pub fn channel_notice(label: &str, summary: &ImportSummary, matched: &[ImportedAlert]) -> NoticeText {
    let customers = summary.customers();
    let mut title = format!("{label}: {}", plural(customers, "customer", "customers"));
    let levels = summary.levels_text();
    if !levels.is_empty() {
        title.push_str(&format!(" ({levels})"));
    }
    let mut lines = Vec::new();
    let mut kinds: Vec<(AlertKind, u64)> = Vec::new();
    for a in matched {
        match kinds.iter_mut().find(|(k, _)| *k == a.kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((a.kind, 1)),
        }
    }
    kinds.sort();
    if !kinds.is_empty() {
        let parts: Vec<String> = kinds
            .iter()
            .map(|(k, n)| format!("{} {}", count(*n), k.label().to_lowercase()))
            .collect();
        lines.push(format!(
            "{} recorded in the feed, not sent one by one: {}",
            plural(matched.len() as u64, "alert", "alerts"),
            parts.join(", ")
        ));
    }
    // One line per customer, the most MRR first; a customer once.
    let mut by_mrr: Vec<&ImportedAlert> = matched.iter().collect();
    by_mrr.sort_by(|a, b| {
        b.mrr
            .unwrap_or(0.0)
            .total_cmp(&a.mrr.unwrap_or(0.0))
            .then(b.risk_level.cmp(&a.risk_level))
            .then(a.customer_external_id.cmp(&b.customer_external_id))
    });
    let mut seen = std::collections::HashSet::new();
    let distinct: Vec<&ImportedAlert> = by_mrr
        .into_iter()
        .filter(|a| seen.insert(a.customer_external_id.clone()))
        .collect();
    if !distinct.is_empty() {
        lines.push(format!("Top {} by MRR:", distinct.len().min(TOP)));
    }
    for a in distinct.iter().take(TOP) {
        let mrr = a.mrr.map(dollars).unwrap_or_else(|| "no MRR".into());
        lines.push(format!(
            "{} ({mrr}): {}, score {}",
            a.customer_name,
            a.risk_level.label().to_lowercase(),
            a.score
        ));
    }
    let more = (distinct.len() > TOP).then(|| format!("+{} more in Perly", count((distinct.len() - TOP) as u64)));
    NoticeText {
        title,
        lines,
        more,
        risk_level: matched.iter().map(|a| a.risk_level).max(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 4, 12, 0, 0).single().expect("time")
    }

    fn alert(kind: AlertKind, at: DateTime<Utc>) -> AlertDraft {
        AlertDraft {
            kind,
            dedupe_key: "k".into(),
            risk_level: RiskLevel::High,
            score: 30,
            delta: None,
            headline: String::new(),
            signals: vec![],
            suggested_action: String::new(),
            occurred_at: at,
        }
    }

    #[test]
    fn history_is_not_news() {
        let at_risk = alert(AlertKind::CustomerAtRisk, now());
        assert!(is_news(&at_risk, true, false, now()));
        assert!(!is_news(&at_risk, false, false, now()), "an import's data");
        assert!(!is_news(&at_risk, true, true, now()), "a first verdict");
        let retry = alert(AlertKind::BillingRetryFailed, now() - Duration::hours(2));
        assert!(
            is_news(&retry, true, true, now()),
            "a fresh retry failure is news even on a first verdict"
        );
        let old = alert(AlertKind::BillingRetryFailed, now() - Duration::hours(30));
        assert!(
            !is_news(&old, true, false, now()),
            "a retry that failed yesterday morning is history"
        );
        assert!(!is_news(&retry, false, false, now()), "a backfilled retry");
    }

    fn imported(name: &str, mrr: f64, level: RiskLevel) -> ImportedAlert {
        ImportedAlert {
            kind: AlertKind::CustomerAtRisk,
            risk_level: level,
            delta: None,
            customer_external_id: name.to_lowercase(),
            customer_name: name.into(),
            mrr: Some(mrr),
            score: 20,
        }
    }

    #[test]
    fn a_summary_counts_levels_and_names_the_top_ten_by_mrr() {
        let summary = ImportSummary {
            levels: vec![
                LevelCount {
                    risk_level: Some(RiskLevel::Critical),
                    customers: 12,
                    mrr: 0.0,
                },
                LevelCount {
                    risk_level: Some(RiskLevel::High),
                    customers: 85,
                    mrr: 0.0,
                },
                LevelCount {
                    risk_level: Some(RiskLevel::Low),
                    customers: 1_700,
                    mrr: 0.0,
                },
                LevelCount {
                    risk_level: None,
                    customers: 203,
                    mrr: 0.0,
                },
            ],
            alerts: vec![],
            top: vec![],
        };
        let matched: Vec<ImportedAlert> = (0..12)
            .map(|i| {
                imported(
                    &format!("C{i:02}"),
                    100.0 * f64::from(i),
                    if i == 3 { RiskLevel::Critical } else { RiskLevel::High },
                )
            })
            .collect();
        let n = channel_notice("Imported from Salesforce", &summary, &matched);
        assert_eq!(
            n.title,
            "Imported from Salesforce: 2,000 customers (12 critical, 85 high, 1,700 low, 203 not enough data yet)"
        );
        assert_eq!(
            n.lines[0],
            "12 alerts recorded in the feed, not sent one by one: 12 customer at risk"
        );
        assert_eq!(n.lines[1], "Top 10 by MRR:");
        assert_eq!(n.lines[2], "C11 ($1,100.00): high, score 20");
        assert_eq!(n.lines.len(), 12);
        assert_eq!(n.more.as_deref(), Some("+2 more in Perly"));
        assert_eq!(n.risk_level, Some(RiskLevel::Critical));
    }
}
