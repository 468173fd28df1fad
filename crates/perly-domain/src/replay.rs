//! History replayed: a customer whose first verdict comes from an import
//! (a backfill through the events API, a first Salesforce sync) is scored
//! as of the end of each past day its data covers, so its chart shows
//! where it stood and its alert feed shows what would have fired and when.
//! Alerts found this way are history: recorded, never sent one by one.
//!
//! Scoring reads the rollup as of a moment ([`crate::scoring::score`] only
//! counts what happened by then), so a past day's score is the one Perly
//! would have computed on that day, except for what the rollup keeps only
//! the newest of (the plan, the last CRM activity, one reading per metered
//! metric): a day before that newest reading sees none.

use chrono::{DateTime, TimeZone, Utc};

use crate::alerts::{detect, AlertDraft, AlertState};
use crate::risk::RiskLevel;
use crate::rollup::{day_of, Rollup, DAY_MS};
use crate::scorecard::Scorecard;
use crate::scoring::{score, CustomerFacts};

/// At most this many past days are replayed (the charts show 90).
pub const REPLAY_DAYS: i32 = 90;

/// One replayed day's verdict, for the chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PastScore {
    pub at: DateTime<Utc>,
    pub score: i64,
    pub risk_level: RiskLevel,
}

/// What replaying a customer's past found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Replayed {
    /// Detection's memory after the last replayed day: the state to score
    /// the present with.
    pub state: AlertState,
    /// A verdict per past day with enough data, oldest first.
    pub points: Vec<PastScore>,
    /// Alerts that would have fired, each dated when it would have.
    pub alerts: Vec<AlertDraft>,
}

/// Scores the customer at the end of each day from its oldest data (at
/// most [`REPLAY_DAYS`] back) up to the day before `now`, starting from
/// `state`. Days without a verdict (too little data yet) leave no point
/// and raise nothing, as they would have live.
pub fn replay(
    rollup: &Rollup,
    facts: &CustomerFacts,
    card: &Scorecard,
    state: &AlertState,
    now: DateTime<Utc>,
) -> Replayed {
    let mut out = Replayed {
        state: state.clone(),
        ..Replayed::default()
    };
    let today = day_of(now.timestamp_millis());
    let Some(oldest) = rollup.oldest_day() else {
        return out;
    };
    for day in oldest.max(today - REPLAY_DAYS)..today {
        let end_ms = i64::from(day + 1) * DAY_MS - 1;
        let Some(at) = Utc.timestamp_millis_opt(end_ms).single() else {
            continue;
        };
        let Some(s) = score(rollup, facts, card, out.state.risk, at) else {
            continue;
        };
        let assessment = detect(&out.state, &s, rollup, facts, card, at);
        out.state = assessment.state;
        out.alerts.extend(assessment.alerts);
        if let Some(risk_level) = s.risk_level {
            out.points.push(PastScore {
                at,
                score: s.score,
                risk_level,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::AlertKind;
    use crate::event::{Event, EventKind};
    use crate::scorecard::MeasureKind;
    use chrono::Duration;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).single().expect("time")
    }

    fn billing_only() -> Scorecard {
        let mut card = Scorecard::default();
        for (kind, m) in card.measures.iter_mut() {
            if *kind != MeasureKind::BillingHealth {
                m.weight = 0.0;
            }
        }
        card
    }

    fn payment(id: &str, days_ago: i64, kind: EventKind) -> Event {
        Event {
            id: id.into(),
            customer_id: "c1".into(),
            occurred_at: now() - Duration::days(days_ago),
            kind,
        }
    }

    fn succeeded(amount: f64) -> EventKind {
        EventKind::PaymentSucceeded { amount }
    }

    fn retry(attempt: u32) -> EventKind {
        EventKind::BillingRetryFailed {
            amount: 1665.0,
            attempt,
            next_retry_at: None,
        }
    }

    #[test]
    fn a_backfilled_past_is_scored_day_by_day_and_its_alerts_dated_when_they_fired() {
        let mut r = Rollup::default();
        r.apply_all(&[
            payment("p1", 40, succeeded(1665.0)),
            payment("r1", 20, retry(1)),
            payment("r2", 19, retry(2)),
            payment("r3", 18, retry(3)),
        ]);
        let out = replay(
            &r,
            &CustomerFacts::default(),
            &billing_only(),
            &AlertState::default(),
            now(),
        );
        // A verdict for each day from the first payment to yesterday.
        assert_eq!(out.points.len(), 40, "{:?}", out.points);
        assert!(out.points.windows(2).all(|w| w[0].at < w[1].at));
        let first = out.points[0];
        let last = out.points[out.points.len() - 1];
        assert_eq!(
            day_of(first.at.timestamp_millis()),
            day_of((now() - Duration::days(40)).timestamp_millis())
        );
        assert!(last.at < now());
        assert!(last.score < first.score, "{first:?} → {last:?}");
        // Each failed retry fired once, dated when it happened.
        let retries: Vec<_> = out
            .alerts
            .iter()
            .filter(|a| a.kind == AlertKind::BillingRetryFailed)
            .map(|a| a.occurred_at)
            .collect();
        assert_eq!(retries, [20, 19, 18].map(|d| now() - Duration::days(d)).to_vec());
        assert!(out.alerts.iter().all(|a| a.occurred_at < now()));
        assert_eq!(out.state.risk, Some(last.risk_level));
    }

    #[test]
    fn nothing_is_replayed_without_data_or_before_ninety_days() {
        let out = replay(
            &Rollup::default(),
            &CustomerFacts::default(),
            &billing_only(),
            &AlertState::default(),
            now(),
        );
        assert!(out.points.is_empty() && out.alerts.is_empty());
        let mut r = Rollup::default();
        r.apply(&payment("p1", 150, succeeded(10.0)));
        r.apply(&payment("p2", 1, succeeded(10.0)));
        let out = replay(
            &r,
            &CustomerFacts::default(),
            &billing_only(),
            &AlertState::default(),
            now(),
        );
        assert_eq!(out.points.len(), REPLAY_DAYS as usize);
    }
}
