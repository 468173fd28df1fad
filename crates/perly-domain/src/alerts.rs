//! Alert detection: a pure function of (previous state, new score, the
//! customer's rollup, workspace thresholds, now) that says which of the five
//! alert kinds fire, and returns the state to keep for next time.
//!
//! Each kind is an episode that fires once and re-arms only after recovery,
//! so the same fact never alerts twice:
//! - customer at risk: the band escalates into high or critical (high →
//!   critical is a new alert); re-arms when the band falls back to medium or
//!   low, which already carries the bands' hysteresis margin;
//! - health score drop: the score is at least `drop_points` below the 7-day
//!   high; the episode closes when half the drop is recovered;
//! - expansion signal: seats ≥ 80% used for 14 days or usage up ≥ 25%;
//! - upsell opportunity: a plan limit ≥ 95% used or a premium feature used on a
//!   lower plan (each trigger once per plan);
//! - billing retry failed: once per failed retry event.
//!
//! Every alert carries a dedupe key unique within the customer, so a replay
//! of the same detection is refused by the store as well.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::risk::RiskLevel;
use crate::rollup::{day_of, PaymentOutcome, Rollup, DAY_MS};
use crate::scorecard::Scorecard;
use crate::scoring::{CustomerFacts, Score, Sentiment};

/// The five alert kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    CustomerAtRisk,
    ExpansionSignal,
    HealthScoreDrop,
    UpsellOpportunity,
    BillingRetryFailed,
}

impl AlertKind {
    pub const ALL: [AlertKind; 5] = [
        Self::CustomerAtRisk,
        Self::ExpansionSignal,
        Self::HealthScoreDrop,
        Self::UpsellOpportunity,
        Self::BillingRetryFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CustomerAtRisk => "customer_at_risk",
            Self::ExpansionSignal => "expansion_signal",
            Self::HealthScoreDrop => "health_score_drop",
            Self::UpsellOpportunity => "upsell_opportunity",
            Self::BillingRetryFailed => "billing_retry_failed",
        }
    }

    /// Words for people ("Customer at risk").
    pub fn label(self) -> &'static str {
        match self {
            Self::CustomerAtRisk => "Customer at risk",
            Self::ExpansionSignal => "Expansion signal",
            Self::HealthScoreDrop => "Health score drop",
            Self::UpsellOpportunity => "Upsell opportunity",
            Self::BillingRetryFailed => "Billing retry failed",
        }
    }
}

impl std::str::FromStr for AlertKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown alert kind `{s}`; expected one of customer_at_risk, expansion_signal, health_score_drop, upsell_opportunity, billing_retry_failed"))
    }
}

/// A score at a moment, kept for the 7-day window (`max` is the highest score
/// merged into this point when close-together points were merged).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScorePoint {
    pub at: i64,
    pub score: i64,
    pub max: i64,
}

/// An open health-score-drop episode.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DropEpisode {
    pub peak: i64,
    pub trough: i64,
    pub opened_at: i64,
}

/// What detection remembers per customer between runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    /// The current risk band (gives the hysteresis).
    pub risk: Option<RiskLevel>,
    /// Highest level alerted in the current at-risk episode.
    pub at_risk: Option<RiskLevel>,
    pub drop: Option<DropEpisode>,
    /// The 7-day high only counts scores since the last drop episode closed.
    pub drop_rearmed_at: i64,
    pub expansion: bool,
    /// Active upsell triggers, as `plan:trigger`.
    pub upsell: Vec<String>,
    /// Retry-failure event ids already alerted, with their times.
    pub billing_alerted: Vec<(String, i64)>,
    /// Episode counters, for dedupe keys.
    pub seq: u32,
    /// Scores of the last 8 days.
    pub recent: Vec<ScorePoint>,
}

/// An alert to store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertDraft {
    pub kind: AlertKind,
    /// Unique within the customer: (kind, episode).
    pub dedupe_key: String,
    pub risk_level: RiskLevel,
    pub score: i64,
    /// Against the score 7 days ago (a drop: against the 7-day high); `None`
    /// when there is no score from 7 days ago to compare with.
    pub delta: Option<i64>,
    /// e.g. "Health score dropped to 32 (−18)"; messages put the customer's name before it.
    pub headline: String,
    pub signals: Vec<String>,
    pub suggested_action: String,
    pub occurred_at: DateTime<Utc>,
}

/// The outcome of one detection run.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub state: AlertState,
    pub alerts: Vec<AlertDraft>,
    /// Score now minus the score 7 days ago; `None` without a score from
    /// 7 days ago (a customer scored for the first time, say).
    pub delta: Option<i64>,
}

const WEEK_MS: i64 = 7 * DAY_MS;
/// Points closer together than this are merged in `recent`.
const MERGE_MS: i64 = 30 * 60 * 1000;

fn signed(n: i64) -> String {
    if n < 0 {
        format!("−{}", -n)
    } else {
        format!("+{n}")
    }
}

/// Decides which alerts fire for a new score.
pub fn detect(
    prev: &AlertState,
    score: &Score,
    rollup: &Rollup,
    facts: &CustomerFacts,
    card: &Scorecard,
    now: DateTime<Utc>,
) -> Assessment {
    let now_ms = now.timestamp_millis();
    let mut state = prev.clone();
    let mut alerts = Vec::new();
    let s = score.score;
    // Delta against a stated baseline: the score a week ago (kept points
    // reach 8 days back), never a younger one.
    let baseline = state
        .recent
        .iter()
        .rev()
        .find(|p| p.at <= now_ms - WEEK_MS)
        .map(|p| p.score);
    let delta = baseline.map(|b| s - b);
    // No verdict without data: a score on too little data raises nothing
    // and is not remembered as a baseline.
    let Some(risk) = score.risk_level else {
        return Assessment { state, alerts, delta };
    };

    let negative: Vec<String> = score
        .signals
        .iter()
        .filter(|x| x.sentiment == Sentiment::Negative)
        .map(|x| x.text.clone())
        .collect();
    let mut draft = |state: &mut AlertState,
                     kind: AlertKind,
                     key: String,
                     delta: Option<i64>,
                     headline: String,
                     signals: Vec<String>,
                     action: String| {
        state.seq += 1;
        alerts.push(AlertDraft {
            kind,
            dedupe_key: format!("{}:{key}", kind.as_str()),
            risk_level: risk,
            score: s,
            delta,
            headline,
            signals,
            suggested_action: action,
            occurred_at: now,
        });
    };

    // Customer at risk.
    if risk.is_at_risk() {
        if state.at_risk.is_none_or(|alerted| risk > alerted) {
            let key = format!("{}", state.seq + 1);
            draft(
                &mut state,
                AlertKind::CustomerAtRisk,
                key,
                delta,
                match delta {
                    Some(d) => format!(
                        "Risk escalated to {} — health score {s} ({} in 7 days)",
                        risk.label(),
                        signed(d)
                    ),
                    None => format!("Risk escalated to {} — health score {s}", risk.label()),
                },
                negative.clone(),
                score.suggested_action.clone(),
            );
            state.at_risk = Some(risk);
        }
    } else {
        state.at_risk = None;
    }
    state.risk = Some(risk);

    // Health score drop against the 7-day high (since the last episode closed).
    let window_start = (now_ms - WEEK_MS).max(state.drop_rearmed_at);
    let high = state
        .recent
        .iter()
        .filter(|p| p.at >= window_start)
        .map(|p| p.max)
        .chain(std::iter::once(s))
        .max()
        .unwrap_or(s);
    match state.drop {
        Some(mut ep) => {
            ep.trough = ep.trough.min(s);
            if (s - ep.trough) * 2 >= ep.peak - ep.trough {
                state.drop = None;
                state.drop_rearmed_at = now_ms;
            } else {
                state.drop = Some(ep);
            }
        }
        // A drop needs a real baseline: a customer scored for less than a
        // week has none (its first scores may rest on data still arriving).
        None if baseline.is_some() && (high - s) as f64 >= card.alerts.drop_points => {
            let key = format!("{}", state.seq + 1);
            draft(
                &mut state,
                AlertKind::HealthScoreDrop,
                key,
                Some(s - high),
                format!("Health score dropped to {s} ({})", signed(s - high)),
                negative.clone(),
                score.suggested_action.clone(),
            );
            state.drop = Some(DropEpisode {
                peak: high,
                trough: s,
                opened_at: now_ms,
            });
        }
        None => {}
    }

    // Expansion signal.
    let thresholds = &card.alerts;
    let today = day_of(now_ms);
    let seats_now = seat_ratio(rollup, facts, now_ms);
    let seats_sustained = seats_now.is_some()
        && seats_held_since(
            rollup,
            facts,
            thresholds.expansion_seat_ratio,
            now_ms - i64::from(thresholds.expansion_days) * DAY_MS,
            now_ms,
        );
    // Usage growth needs a prior window with history and at least one active user a day.
    let (last, prior) = rollup.dau_windows(today).unwrap_or((0.0, 0.0));
    let growth = if prior >= 1.0 { last / prior - 1.0 } else { 0.0 };
    let growing = growth >= thresholds.expansion_usage_growth;
    if !state.expansion && (seats_sustained || growing) {
        let mut facts_text = Vec::new();
        if let (true, Some((used, purchased, ratio))) = (seats_sustained, seats_now) {
            facts_text.push(format!(
                "Seats {used} of {purchased} used ({:.0}%) for {}+ days",
                ratio * 100.0,
                thresholds.expansion_days
            ));
        }
        if growing {
            facts_text.push(format!(
                "Daily active users up {:.0}% vs prior 30 days (avg {prior:.1} → {last:.1})",
                growth * 100.0
            ));
        }
        let headline = format!("Expansion signal: {}", facts_text.first().cloned().unwrap_or_default());
        let action = if seats_sustained {
            "Talk to the account owner about adding seats"
        } else {
            "Talk to the account owner about a plan with room to grow"
        };
        let key = format!("{}", state.seq + 1);
        draft(
            &mut state,
            AlertKind::ExpansionSignal,
            key,
            delta,
            headline,
            facts_text,
            action.to_owned(),
        );
        state.expansion = true;
    } else if state.expansion {
        let seats_low = seats_now.is_none_or(|(_, _, r)| r < thresholds.expansion_seat_ratio - 0.05);
        if seats_low && growth < thresholds.expansion_usage_growth / 2.0 {
            state.expansion = false;
        }
    }

    // Upsell opportunity.
    let plan = rollup
        .plan
        .as_ref()
        .map(|p| p.plan.clone())
        .or_else(|| facts.plan.clone())
        .unwrap_or_default();
    let triggers = upsell_triggers(rollup, facts, card, &plan, now_ms);
    let new: Vec<_> = triggers
        .iter()
        .filter(|(key, _, _)| !state.upsell.contains(key))
        .cloned()
        .collect();
    // Keep a trigger armed while it still holds with a margin, so a reading
    // that wobbles around the limit does not alert again.
    let held = upsell_triggers_with_margin(rollup, facts, card, &plan, now_ms);
    state.upsell.retain(|k| held.iter().any(|(h, _, _)| h == k));
    if !new.is_empty() {
        for (key, _, _) in &new {
            state.upsell.push(key.clone());
        }
        state.upsell.sort();
        state.upsell.dedup();
        let texts: Vec<String> = new.iter().map(|(_, t, _)| t.clone()).collect();
        let action = new.first().map(|(_, _, a)| a.clone()).unwrap_or_default();
        let key = format!("{}", state.seq + 1);
        draft(
            &mut state,
            AlertKind::UpsellOpportunity,
            key,
            delta,
            format!("Upsell opportunity: {}", texts.join("; ")),
            texts,
            action,
        );
    }

    // Billing retry failed: one alert per failed retry event in the last week.
    state.billing_alerted.retain(|(_, at)| *at > now_ms - 30 * DAY_MS);
    let retries: Vec<_> = rollup
        .payments
        .iter()
        .filter(|p| p.outcome == PaymentOutcome::RetryFailed && p.at <= now_ms && p.at > now_ms - WEEK_MS)
        .filter_map(|p| p.event_id.clone().map(|id| (id, p.at, p.attempt, p.amount)))
        .filter(|(id, _, _, _)| !state.billing_alerted.iter().any(|(a, _)| a == id))
        .collect();
    let mut retried_at = Vec::new();
    for (id, at, attempt, amount) in retries {
        let mut signals = vec![format!(
            "Retry attempt {attempt} for {} failed",
            crate::money::dollars(amount)
        )];
        signals.extend(negative.iter().cloned());
        draft(
            &mut state,
            AlertKind::BillingRetryFailed,
            id.clone(),
            delta,
            format!("Billing retry {attempt} failed ({})", crate::money::dollars(amount)),
            signals,
            "Contact the customer to update their payment method before the next retry".to_owned(),
        );
        state.billing_alerted.push((id, at));
        retried_at.push(at);
    }
    // A billing retry alert is dated when the retry failed.
    for (a, at) in alerts
        .iter_mut()
        .filter(|a| a.kind == AlertKind::BillingRetryFailed)
        .zip(retried_at)
    {
        if let Some(t) = DateTime::from_timestamp_millis(at) {
            a.occurred_at = t;
        }
    }

    // Remember this score for the 7-day window.
    match state.recent.last_mut() {
        Some(last) if now_ms - last.at < MERGE_MS && now_ms >= last.at => {
            last.at = now_ms;
            last.score = s;
            last.max = last.max.max(s);
        }
        _ => state.recent.push(ScorePoint {
            at: now_ms,
            score: s,
            max: s,
        }),
    }
    state.recent.retain(|p| p.at > now_ms - 8 * DAY_MS);
    if state.recent.len() > 400 {
        let excess = state.recent.len() - 400;
        state.recent.drain(..excess);
    }

    Assessment { state, alerts, delta }
}

/// (used, purchased, ratio) at `at`.
fn seat_ratio(r: &Rollup, facts: &CustomerFacts, at: i64) -> Option<(u32, u32, f64)> {
    let p = r.seats_at(at)?;
    let purchased = p.purchased.or(facts.seats_purchased).filter(|n| *n > 0)?;
    Some((p.used, purchased, f64::from(p.used) / f64::from(purchased)))
}

/// Whether seat utilisation stayed at or above `ratio` from `from` to `to`.
fn seats_held_since(r: &Rollup, facts: &CustomerFacts, ratio: f64, from: i64, to: i64) -> bool {
    let at_start = seat_ratio(r, facts, from).is_some_and(|(_, _, x)| x >= ratio);
    at_start
        && r.seats.iter().filter(|p| p.at > from && p.at <= to).all(|p| {
            p.purchased
                .or(facts.seats_purchased)
                .filter(|n| *n > 0)
                .is_some_and(|n| f64::from(p.used) / f64::from(n) >= ratio)
        })
}

type Trigger = (String, String, String);

fn upsell_triggers(r: &Rollup, facts: &CustomerFacts, card: &Scorecard, plan: &str, now_ms: i64) -> Vec<Trigger> {
    triggers_at(r, facts, card, plan, now_ms, card.alerts.upsell_limit_ratio, 30)
}

fn upsell_triggers_with_margin(
    r: &Rollup,
    facts: &CustomerFacts,
    card: &Scorecard,
    plan: &str,
    now_ms: i64,
) -> Vec<Trigger> {
    triggers_at(r, facts, card, plan, now_ms, card.alerts.upsell_limit_ratio - 0.1, 45)
}

fn triggers_at(
    r: &Rollup,
    facts: &CustomerFacts,
    card: &Scorecard,
    plan: &str,
    now_ms: i64,
    ratio: f64,
    feature_days: i32,
) -> Vec<Trigger> {
    let mut out = Vec::new();
    for u in &r.usage {
        let Some(limit) = u.limit.filter(|l| *l > 0.0) else {
            continue;
        };
        if u.at > now_ms || u.at < now_ms - 30 * DAY_MS {
            continue;
        }
        let used = u.value / limit;
        if used >= ratio {
            out.push((
                format!("{plan}:limit:{}", u.metric),
                format!(
                    "{} at {:.0}% of the plan limit ({} of {})",
                    u.metric,
                    used * 100.0,
                    u.value,
                    limit
                ),
                "Propose the next plan before they hit the limit".to_owned(),
            ));
        }
    }
    if let Some((used, purchased, x)) = seat_ratio(r, facts, now_ms) {
        if x >= ratio {
            out.push((
                format!("{plan}:limit:seats"),
                format!("Seats at {:.0}% of purchased ({used} of {purchased})", x * 100.0),
                "Propose more seats or the next plan".to_owned(),
            ));
        }
    }
    let rank = card.plan_rank(plan);
    let today = day_of(now_ms);
    for (feature, min_plan) in &card.premium_features {
        let needs = card.plan_rank(min_plan);
        let below = match (rank, needs) {
            (Some(have), Some(need)) => have < need,
            (None, Some(_)) => true,
            _ => false,
        };
        let used = r
            .features
            .iter()
            .any(|f| &f.name == feature && f.days.any_in(today - feature_days + 1, today));
        if below && used {
            let on = if plan.is_empty() {
                "no plan".to_owned()
            } else {
                format!("the {plan} plan")
            };
            out.push((
                format!("{plan}:premium:{feature}"),
                format!("Premium feature {feature} used on {on} (included from {min_plan})"),
                format!("Offer the {min_plan} plan, which includes {feature}"),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoring::{Coverage, Score};
    use chrono::{Duration, TimeZone};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).single().expect("time")
    }

    fn sc(score: i64, prev: Option<RiskLevel>) -> Score {
        Score {
            score,
            risk_level: Some(
                Scorecard::default()
                    .risk_bands
                    .level_with_hysteresis(score as f64, prev),
            ),
            measures: vec![],
            signals: vec![],
            suggested_action: "Call them".into(),
            coverage: Coverage {
                used: 5,
                total: 8,
                missing: vec![],
                summary: String::new(),
                weight: 0.8,
                enough: true,
                prior: 62.5,
            },
        }
    }

    /// A score on too little data: no risk level.
    fn thin(score: i64) -> Score {
        let mut s = sc(score, None);
        s.risk_level = None;
        s.coverage.enough = false;
        s.coverage.weight = 0.2;
        s
    }

    /// Runs detection over a sequence of daily scores and returns the kinds fired per day.
    fn run(scores: &[i64]) -> Vec<Vec<AlertKind>> {
        let card = Scorecard::default();
        let mut state = AlertState::default();
        let mut out = Vec::new();
        for (i, s) in scores.iter().enumerate() {
            let now = t0() + Duration::days(i as i64);
            let a = detect(
                &state,
                &sc(*s, state.risk),
                &Rollup::default(),
                &CustomerFacts::default(),
                &card,
                now,
            );
            out.push(a.alerts.iter().map(|x| x.kind).collect());
            state = a.state;
        }
        out
    }

    #[test]
    fn a_first_score_has_no_delta_and_raises_no_drop() {
        let card = Scorecard::default();
        // Minutes apart, 90 then 30: no score from 7 days ago, so no delta
        // and no drop, only the band's escalation.
        let first = detect(
            &AlertState::default(),
            &sc(90, None),
            &Rollup::default(),
            &CustomerFacts::default(),
            &card,
            t0(),
        );
        assert_eq!(first.delta, None);
        assert!(first.alerts.is_empty(), "{:?}", first.alerts);
        let later = t0() + Duration::minutes(40);
        let second = detect(
            &first.state,
            &sc(30, first.state.risk),
            &Rollup::default(),
            &CustomerFacts::default(),
            &card,
            later,
        );
        assert_eq!(second.delta, None);
        let kinds: Vec<_> = second.alerts.iter().map(|a| a.kind).collect();
        assert_eq!(kinds, vec![AlertKind::CustomerAtRisk]);
        assert_eq!(second.alerts[0].delta, None);
        assert_eq!(second.alerts[0].headline, "Risk escalated to High — health score 30");
    }

    #[test]
    fn the_delta_is_against_the_score_7_days_ago_only() {
        let card = Scorecard::default();
        let mut state = AlertState::default();
        for (day, s) in [(0, 80), (3, 78), (6, 76)] {
            let a = detect(
                &state,
                &sc(s, state.risk),
                &Rollup::default(),
                &CustomerFacts::default(),
                &card,
                t0() + Duration::days(day),
            );
            assert_eq!(a.delta, None, "day {day}: younger than a week");
            state = a.state;
        }
        let a = detect(
            &state,
            &sc(70, state.risk),
            &Rollup::default(),
            &CustomerFacts::default(),
            &card,
            t0() + Duration::days(7),
        );
        assert_eq!(a.delta, Some(-10), "against day 0's 80");
    }

    #[test]
    fn a_score_on_thin_data_raises_nothing_and_is_no_baseline() {
        let card = Scorecard::default();
        let mut state = AlertState::default();
        for day in 0..10 {
            let a = detect(
                &state,
                &thin(5),
                &Rollup::default(),
                &CustomerFacts::default(),
                &card,
                t0() + Duration::days(day),
            );
            assert!(a.alerts.is_empty(), "{:?}", a.alerts);
            state = a.state;
        }
        assert!(state.recent.is_empty());
        assert_eq!(state.risk, None);
        // Once the data is there it gains a level (and alerts on it), with no delta yet.
        let a = detect(
            &state,
            &sc(20, None),
            &Rollup::default(),
            &CustomerFacts::default(),
            &card,
            t0() + Duration::days(10),
        );
        assert_eq!(a.state.risk, Some(RiskLevel::Critical));
        assert_eq!(a.delta, None);
        assert_eq!(
            a.alerts.iter().map(|x| x.kind).collect::<Vec<_>>(),
            vec![AlertKind::CustomerAtRisk]
        );
    }

    #[test]
    fn at_risk_fires_once_per_episode_and_again_on_escalation() {
        let fired = run(&[80, 45, 44, 51, 46, 20, 30, 60, 45]);
        let at_risk: Vec<usize> = fired
            .iter()
            .enumerate()
            .filter(|(_, k)| k.contains(&AlertKind::CustomerAtRisk))
            .map(|(i, _)| i)
            .collect();
        // 45: into high. 51 and 46: wobble inside the margin. 20: critical (escalation).
        // 30: still at risk. 60: recovered. 45: a new episode.
        assert_eq!(at_risk, vec![1, 5, 8]);
    }

    #[test]
    fn drop_fires_against_the_weekly_high_and_closes_at_half_recovery() {
        // A week at 90 gives a baseline; then a slow slide 90 → 80 over four days fires once.
        let mut scores = vec![90; 8];
        scores.extend([87, 84, 82, 80, 79, 85, 86, 75]);
        let fired = run(&scores);
        let drops: Vec<usize> = fired
            .iter()
            .enumerate()
            .filter(|(_, k)| k.contains(&AlertKind::HealthScoreDrop))
            .map(|(i, _)| i - 8)
            .collect();
        // Day 3 of the slide: 90→80 fires. Day 5: 85 recovers half of 90→79 → closes.
        // Day 7: 75 is 11 below the high since re-arming (86) → fires again.
        assert_eq!(drops, vec![3, 7]);
    }

    #[test]
    fn a_new_customer_ramping_up_is_not_an_expansion_signal_until_it_has_history() {
        let now = t0();
        let mut r = Rollup::default();
        // Active for the last 40 days only, with usage rising: too new to compare.
        for d in 0..40 {
            for u in 0..(2 + (40 - d) / 5) {
                r.apply(&crate::event::Event {
                    id: format!("e{d}-{u}"),
                    customer_id: "c".into(),
                    occurred_at: now - Duration::days(d),
                    kind: crate::event::EventKind::UserActive {
                        user_id: format!("u{u}"),
                    },
                });
            }
        }
        let card = Scorecard::default();
        let a = detect(
            &AlertState::default(),
            &sc(80, None),
            &r,
            &CustomerFacts::default(),
            &card,
            now,
        );
        assert!(
            a.alerts.iter().all(|x| x.kind != AlertKind::ExpansionSignal),
            "{:?}",
            a.alerts
        );
        // Thirty days on, with sustained growth, it is one.
        for d in 0..30 {
            for u in 0..12 {
                r.apply(&crate::event::Event {
                    id: format!("later{d}-{u}"),
                    customer_id: "c".into(),
                    occurred_at: now + Duration::days(30 - d),
                    kind: crate::event::EventKind::UserActive {
                        user_id: format!("u{u}"),
                    },
                });
            }
        }
        let later = now + Duration::days(30);
        let a = detect(&a.state, &sc(80, None), &r, &CustomerFacts::default(), &card, later);
        assert!(
            a.alerts.iter().any(|x| x.kind == AlertKind::ExpansionSignal),
            "{:?}",
            a.alerts
        );
    }

    #[test]
    fn a_steady_score_never_alerts() {
        assert!(run(&[70, 70, 71, 70, 69, 70, 70, 70]).iter().all(|k| k.is_empty()));
    }
}
