//! The health score: a weighted scorecard over eight measures, each mapped to
//! 0–100 between two thresholds. Every score carries its contributions, the
//! signals that cost it most in plain words with numbers, and one suggested
//! action.
//!
//! No verdict without data:
//! - A measure with no data counts at a neutral prior (the middle of the
//!   medium band, 62.5 by default) for its weight, so thin data pulls a score
//!   toward neutral instead of letting one measure decide it:
//!   `score = (Σ w·points over measures with data + Σ w·prior over the rest) / Σ w`.
//! - A score whose measures with data carry less than [`MIN_COVERAGE`] of
//!   the scorecard's weight has no risk level ("Not enough data yet"), and
//!   raises no alert. Usage trend only counts once 44 days of usage history
//!   exist, so a new customer's verdict waits for the other measures or for
//!   its history.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::TicketPriority;
use crate::risk::RiskLevel;
use crate::rollup::{day_of, PaymentOutcome, Rollup, DAY_MS};
use crate::scorecard::{MeasureKind, Scorecard};

/// What scoring knows about a customer besides its events.
#[derive(Debug, Clone, Default)]
pub struct CustomerFacts {
    pub plan: Option<String>,
    pub seats_purchased: Option<u32>,
}

/// One measure's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MeasureResult {
    pub measure: MeasureKind,
    /// The raw value (ratio, count, days…), in the unit the thresholds use.
    pub raw: f64,
    /// 0–100.
    pub points: f64,
    /// Normalised weight (the used measures' weights sum to 1).
    pub weight: f64,
    /// weight × points: this measure's share of the score.
    pub contribution: f64,
    /// Plain words with numbers.
    pub detail: String,
}

/// Whether a signal pulls the score down or speaks for the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sentiment {
    Negative,
    Positive,
}

/// A reason behind the score, e.g. "Daily active users down 60% vs prior 30 days (avg 42.0 → 17.0), −15 pts".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Signal {
    pub measure: MeasureKind,
    pub sentiment: Sentiment,
    pub text: String,
    /// Score points this measure costs (negative) or holds up (positive).
    pub points: f64,
}

/// A measure that had no data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MissingMeasure {
    pub measure: MeasureKind,
    pub reason: String,
}

/// The least share of the scorecard's weight that must have data for a
/// score to carry a risk level.
pub const MIN_COVERAGE: f64 = 0.5;

/// Which measures the score is based on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Coverage {
    pub used: usize,
    pub total: usize,
    pub missing: Vec<MissingMeasure>,
    /// "based on 5 of 8 measures", or "Not enough data yet (based on 1 of 8
    /// measures: billing health)".
    pub summary: String,
    /// Share (0–1) of the scorecard's weight carried by measures with data.
    #[serde(default = "one")]
    pub weight: f64,
    /// Whether that share reaches [`MIN_COVERAGE`]: only then does the score
    /// carry a risk level and raise alerts.
    #[serde(default = "yes")]
    pub enough: bool,
    /// The neutral prior that measures without data count at (0–100).
    #[serde(default)]
    pub prior: f64,
}

fn one() -> f64 {
    1.0
}

fn yes() -> bool {
    true
}

/// A computed health score with its reasons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Score {
    /// 0–100, rounded.
    pub score: i64,
    /// `None` while the score rests on too little data (see [`Coverage`]).
    pub risk_level: Option<RiskLevel>,
    pub measures: Vec<MeasureResult>,
    pub signals: Vec<Signal>,
    pub suggested_action: String,
    pub coverage: Coverage,
}

/// Scores a customer at `now`. `previous_risk` gives the band hysteresis.
/// Returns `None` when no measure has any data yet.
pub fn score(
    rollup: &Rollup,
    facts: &CustomerFacts,
    card: &Scorecard,
    previous_risk: Option<RiskLevel>,
    now: DateTime<Utc>,
) -> Option<Score> {
    let now_ms = now.timestamp_millis();
    let mut raw_results = Vec::new();
    let mut missing = Vec::new();
    let mut total = 0;
    let mut total_weight = 0.0;
    for (kind, cfg) in &card.measures {
        if cfg.weight <= 0.0 {
            continue;
        }
        total += 1;
        total_weight += cfg.weight;
        match measure(*kind, rollup, facts, card, now_ms) {
            Ok((raw, points, detail)) => raw_results.push((*kind, cfg.weight, raw, points, detail)),
            Err(reason) => missing.push(MissingMeasure { measure: *kind, reason }),
        }
    }
    let used_weight: f64 = raw_results.iter().map(|r| r.1).sum();
    if raw_results.is_empty() || used_weight <= 0.0 || total_weight <= 0.0 {
        return None;
    }
    let measures: Vec<MeasureResult> = raw_results
        .into_iter()
        .map(|(measure, w, raw, points, detail)| {
            let weight = w / total_weight;
            MeasureResult {
                measure,
                raw,
                points,
                weight,
                contribution: weight * points,
                detail,
            }
        })
        .collect();
    let share = (used_weight / total_weight).clamp(0.0, 1.0);
    let prior = card.risk_bands.neutral();
    let exact: f64 = measures.iter().map(|m| m.contribution).sum::<f64>() + (1.0 - share) * prior;
    let score = exact.round().clamp(0.0, 100.0) as i64;
    let enough = share + 1e-9 >= MIN_COVERAGE;
    let risk_level = enough.then(|| card.risk_bands.level_with_hysteresis(score as f64, previous_risk));
    let signals = signals(&measures);
    let suggested_action = suggested_action(&signals, &measures);
    let used = measures.len();
    let based_on = format!("based on {used} of {total} measures");
    let summary = if enough {
        based_on
    } else {
        let names: Vec<&str> = measures.iter().map(|m| m.measure.label()).collect();
        format!("Not enough data yet ({based_on}: {})", names.join(", "))
    };
    let coverage = Coverage {
        used,
        total,
        summary,
        missing,
        weight: share,
        enough,
        prior,
    };
    Some(Score {
        score,
        risk_level,
        measures,
        signals,
        suggested_action,
        coverage,
    })
}

fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

fn times(n: f64) -> String {
    match n.round() as i64 {
        1 => "once".into(),
        2 => "twice".into(),
        n => format!("{n} times"),
    }
}

/// Computes one measure: (raw, points, detail) or why there is no data.
fn measure(
    kind: MeasureKind,
    r: &Rollup,
    facts: &CustomerFacts,
    card: &Scorecard,
    now_ms: i64,
) -> Result<(f64, f64, String), String> {
    let cfg = card
        .measures
        .get(&kind)
        .copied()
        .ok_or_else(|| kind.missing_data().to_owned())?;
    let today = day_of(now_ms);
    let no_data = || kind.missing_data().to_owned();
    match kind {
        MeasureKind::UsageTrend => {
            if r.users.is_empty() {
                return Err(no_data());
            }
            let Some((last, prior)) = r.dau_windows(today) else {
                return Err("less than 44 days of usage history to compare against".into());
            };
            let ratio = if prior > 0.0 {
                last / prior
            } else if last > 0.0 {
                2.0
            } else {
                0.0
            };
            let change = ratio - 1.0;
            let detail = if prior == 0.0 && last == 0.0 {
                "No active users in the last 60 days".to_owned()
            } else if prior == 0.0 {
                format!("Daily active users back from none to avg {last:.1} vs prior 30 days")
            } else if change.abs() < 0.05 {
                format!("Daily active users steady vs prior 30 days (avg {prior:.1} → {last:.1})")
            } else {
                let dir = if change < 0.0 { "down" } else { "up" };
                format!(
                    "Daily active users {dir} {} vs prior 30 days (avg {prior:.1} → {last:.1})",
                    pct(change.abs())
                )
            };
            Ok((ratio, cfg.points(ratio), detail))
        }
        MeasureKind::SeatUtilisation => {
            let point = r.seats_at(now_ms);
            let purchased = point.and_then(|p| p.purchased).or(facts.seats_purchased);
            let (Some(used), Some(purchased)) = (point.map(|p| p.used), purchased) else {
                return Err(no_data());
            };
            if purchased == 0 {
                return Err("seats_purchased is 0".into());
            }
            let ratio = f64::from(used) / f64::from(purchased);
            Ok((
                ratio,
                cfg.points(ratio),
                format!("Seat utilisation {} ({used} of {purchased} seats)", pct(ratio)),
            ))
        }
        MeasureKind::FeatureAdoption => {
            if r.features.is_empty() {
                return Err(no_data());
            }
            let used = r.features_used(today - 29, today).count() as f64;
            let prior = r.features_used(today - 59, today - 30).count() as f64;
            let detail = format!("{used:.0} features used in the last 30 days (prior 30 days: {prior:.0})");
            Ok((used, cfg.points(used), detail))
        }
        MeasureKind::BillingHealth => {
            let from = now_ms - 30 * DAY_MS;
            let relevant: Vec<_> = r
                .payments
                .iter()
                .filter(|p| p.at <= now_ms && p.at > now_ms - 180 * DAY_MS)
                .collect();
            if relevant.is_empty() {
                return Err(no_data());
            }
            let last_success = relevant
                .iter()
                .filter(|p| p.outcome == PaymentOutcome::Succeeded)
                .map(|p| p.at)
                .max();
            let mut weighted = 0.0;
            let (mut failed, mut retries) = (0, 0);
            for p in relevant
                .iter()
                .filter(|p| p.at > from && p.outcome != PaymentOutcome::Succeeded)
            {
                if p.outcome == PaymentOutcome::Failed {
                    failed += 1;
                } else {
                    retries += 1;
                }
                // A later successful payment halves the weight of earlier failures.
                weighted += if last_success.is_some_and(|s| s > p.at) {
                    0.5
                } else {
                    1.0
                };
            }
            let detail = match (failed, retries) {
                (0, 0) => "No failed payments in the last 30 days".to_owned(),
                (f, 0) => format!("Payment failed {} in the last 30 days", times(f64::from(f))),
                (0, r) => format!("Billing retry failed {} in the last 30 days", times(f64::from(r))),
                (f, r) => format!(
                    "Payment failed {} and retries failed {} in the last 30 days",
                    times(f64::from(f)),
                    times(f64::from(r))
                ),
            };
            let detail = if weighted > 0.0 && last_success.is_some_and(|s| s > from) {
                format!("{detail}, since paid")
            } else {
                detail
            };
            Ok((weighted, cfg.points(weighted), detail))
        }
        MeasureKind::SupportLoad => {
            if r.tickets.is_empty() {
                return Err(no_data());
            }
            let open: Vec<_> = r.tickets.iter().filter(|t| t.is_open_at(now_ms)).collect();
            let urgent = open.iter().filter(|t| t.priority >= Some(TicketPriority::High)).count();
            let opened_in = |from: i64, to: i64| {
                r.tickets
                    .iter()
                    .filter(|t| t.opened_at.is_some_and(|o| o > from && o <= to))
                    .count()
            };
            let recent = opened_in(now_ms - 30 * DAY_MS, now_ms);
            let prior = opened_in(now_ms - 60 * DAY_MS, now_ms - 30 * DAY_MS);
            let load: f64 = open
                .iter()
                .map(|t| t.priority.unwrap_or(TicketPriority::Normal).load())
                .sum::<f64>()
                + 0.25 * recent as f64;
            let trend = if recent > prior {
                "up"
            } else if recent < prior {
                "down"
            } else {
                "flat"
            };
            let detail = format!(
                "Support tickets {trend}: {recent} opened in the last 30 days vs {prior} before; {} open ({urgent} high or urgent)",
                open.len()
            );
            Ok((load, cfg.points(load), detail))
        }
        MeasureKind::RelationshipRecency => {
            let Some(a) = r.last_activity.filter(|a| a.at <= now_ms) else {
                return Err(no_data());
            };
            let days = ((now_ms - a.at) as f64 / DAY_MS as f64).floor();
            let touches = r.activity_days.count_in(today - 89, today);
            Ok((
                days,
                cfg.points(days),
                format!("Last CRM activity {days:.0} days ago ({touches} days with contact in 90 days)"),
            ))
        }
        MeasureKind::Nps => {
            let recent: Vec<_> = r
                .nps
                .iter()
                .filter(|p| p.at <= now_ms && p.at > now_ms - 180 * DAY_MS)
                .collect();
            let Some(latest) = recent.last() else {
                return Err(no_data());
            };
            let half_life = card.nps_half_life_days.max(1.0);
            let points: f64 = recent
                .iter()
                .map(|p| {
                    let age_days = (now_ms - p.at) as f64 / DAY_MS as f64;
                    let fade = 0.5f64.powf(age_days / half_life);
                    50.0 + (cfg.points(f64::from(p.score)) - 50.0) * fade
                })
                .sum::<f64>()
                / recent.len() as f64;
            let age = (now_ms - latest.at) / DAY_MS;
            let detail = format!(
                "Latest NPS response {} of 10, {age} days ago ({} in 180 days)",
                latest.score,
                recent.len()
            );
            Ok((f64::from(latest.score), points, detail))
        }
        MeasureKind::RenewalOutlook => {
            let (raw, detail) = renewal_outlook(r, today, now_ms).ok_or_else(no_data)?;
            Ok((raw, cfg.points(raw), detail))
        }
    }
}

/// The commercial outlook from CRM opportunities, 0 (a renewal lost) to 1
/// (a renewal or expansion won), with the reason in words. Looks at what
/// changed in the last 180 days and what is still open.
fn renewal_outlook(r: &Rollup, today: i32, now_ms: i64) -> Option<(f64, String)> {
    use crate::event::{OpportunityCategory as C, OpportunityStatus as S};
    let live: Vec<_> = r
        .opportunities
        .iter()
        .filter(|o| o.at <= now_ms && o.status != S::Deleted)
        .collect();
    if live.is_empty() {
        return None;
    }
    let money = |a: f64| if a > 0.0 { format!(" ({:.0})", a) } else { String::new() };
    let newest = |status: S, cats: &[C]| {
        live.iter()
            .filter(|o| o.status == status && cats.contains(&o.category))
            .max_by_key(|o| o.at)
            .copied()
    };
    if let Some(o) = newest(S::Lost, &[C::Renewal]) {
        return Some((0.0, format!("Renewal opportunity lost{}", money(o.amount))));
    }
    if let Some(o) = newest(S::Won, &[C::Renewal, C::Expansion]) {
        let what = if o.category == C::Renewal {
            "Renewal"
        } else {
            "Expansion"
        };
        return Some((1.0, format!("{what} opportunity won{}", money(o.amount))));
    }
    if let Some(o) = newest(S::Open, &[C::Expansion]) {
        return Some((0.8, format!("Expansion opportunity open{}", money(o.amount))));
    }
    let renewal = live
        .iter()
        .filter(|o| o.status == S::Open && o.category == C::Renewal)
        .min_by_key(|o| o.close_day.unwrap_or(i32::MAX));
    if let Some(o) = renewal {
        return Some(match o.close_day.map(|d| d - today) {
            Some(days) if days < 0 => (
                0.25,
                format!("Renewal opportunity overdue: close date passed {} days ago", -days),
            ),
            Some(days) if days <= 30 => (0.5, format!("Renewal opportunity closes in {days} days, still open")),
            Some(days) => (0.7, format!("Renewal opportunity open, closes in {days} days")),
            None => (0.6, "Renewal opportunity open".to_owned()),
        });
    }
    if let Some(o) = newest(S::Won, &[C::NewBusiness, C::Other]) {
        return Some((0.8, format!("Opportunity won{}", money(o.amount))));
    }
    if newest(S::Lost, &[C::Expansion, C::NewBusiness, C::Other]).is_some() {
        return Some((0.4, "Opportunity lost".to_owned()));
    }
    Some((0.6, "Opportunity open".to_owned()))
}

/// The measures that cost the most (up to three), or what holds a healthy score up.
fn signals(measures: &[MeasureResult]) -> Vec<Signal> {
    let mut costly: Vec<_> = measures
        .iter()
        .map(|m| (m, m.weight * (100.0 - m.points)))
        .filter(|(m, lost)| m.points < 60.0 && *lost >= 1.0)
        .collect();
    costly.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.measure.cmp(&b.0.measure)));
    if !costly.is_empty() {
        return costly
            .into_iter()
            .take(3)
            .map(|(m, lost)| Signal {
                measure: m.measure,
                sentiment: Sentiment::Negative,
                text: format!("{}, −{lost:.0} pts", m.detail),
                points: -lost.round(),
            })
            .collect();
    }
    let mut strong: Vec<_> = measures.iter().filter(|m| m.points >= 80.0).collect();
    strong.sort_by(|a, b| {
        b.contribution
            .total_cmp(&a.contribution)
            .then(a.measure.cmp(&b.measure))
    });
    strong
        .into_iter()
        .take(2)
        .map(|m| Signal {
            measure: m.measure,
            sentiment: Sentiment::Positive,
            text: m.detail.clone(),
            points: m.contribution.round(),
        })
        .collect()
}

/// One action per dominant signal, from a table.
fn suggested_action(signals: &[Signal], measures: &[MeasureResult]) -> String {
    let top = signals.iter().find(|s| s.sentiment == Sentiment::Negative);
    let action = match top.map(|s| s.measure) {
        Some(MeasureKind::UsageTrend) => "Schedule a check-in call with the account owner to learn why usage fell",
        Some(MeasureKind::SeatUtilisation) => "Run an adoption session to get unused seats active",
        Some(MeasureKind::FeatureAdoption) => "Offer a training session on the features they are not using",
        Some(MeasureKind::BillingHealth) => "Contact the billing contact to update the payment method",
        Some(MeasureKind::RenewalOutlook) => "Work the renewal with the account owner before it slips away",
        Some(MeasureKind::SupportLoad) => "Review open tickets with the support lead and escalate the urgent ones",
        Some(MeasureKind::RelationshipRecency) => "Reach out to the account: there has been no contact for weeks",
        Some(MeasureKind::Nps) => "Follow up on the low NPS response with the account owner",
        None => {
            let seats_high = measures
                .iter()
                .any(|m| m.measure == MeasureKind::SeatUtilisation && m.raw >= 0.8);
            if seats_high {
                "Talk to the account owner about adding seats"
            } else {
                "No action needed: keep the regular check-in cadence"
            }
        }
    };
    action.to_owned()
}

#[cfg(test)]
mod tests {

    fn opportunity(
        status: &str,
        category: &str,
        close: &str,
        at: chrono::DateTime<chrono::Utc>,
        id: &str,
    ) -> crate::event::Event {
        crate::event::Event {
            id: format!("{id}@{}", at.timestamp_millis()),
            customer_id: "c".into(),
            occurred_at: at,
            kind: serde_json::from_value(serde_json::json!({
                "type": "crm_opportunity", "opportunity_id": id, "status": status, "category": category,
                "amount": 5000, "close_date": close,
            }))
            .expect("kind"),
        }
    }

    #[test]
    fn renewal_outlook_reads_the_newest_state_of_each_opportunity() {
        let now = chrono::Utc::now();
        let today = crate::rollup::day_of(now.timestamp_millis());
        let outlook = |events: &[crate::event::Event]| {
            let mut r = crate::rollup::Rollup::default();
            for e in events {
                r.apply(e);
            }
            renewal_outlook(&r, today, now.timestamp_millis())
        };
        assert_eq!(outlook(&[]), None);
        let soon = (now + chrono::Duration::days(10)).date_naive().to_string();
        let open = opportunity("open", "renewal", &soon, now - chrono::Duration::days(3), "006R");
        let (raw, why) = outlook(std::slice::from_ref(&open)).expect("data");
        assert_eq!(raw, 0.5, "{why}");
        assert!(why.contains("closes in 10 days"), "{why}");
        // The same renewal lost later: the newest state counts, in any order.
        let lost = opportunity("lost", "renewal", &soon, now - chrono::Duration::days(1), "006R");
        assert_eq!(outlook(&[open.clone(), lost.clone()]).map(|o| o.0), Some(0.0));
        assert_eq!(outlook(&[lost.clone(), open.clone()]).map(|o| o.0), Some(0.0));
        let won = opportunity("won", "expansion", &soon, now - chrono::Duration::days(2), "006E");
        assert_eq!(outlook(&[open.clone(), won]).map(|o| o.0), Some(1.0));
        let deleted = opportunity("deleted", "renewal", &soon, now, "006R");
        assert_eq!(
            outlook(&[open, lost, deleted]),
            None,
            "a deleted opportunity no longer counts"
        );
    }
    use super::*;
    use crate::event::{Event, EventKind};
    use chrono::{Duration, TimeZone};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).single().expect("time")
    }

    fn ev(n: usize, days_ago: i64, kind: EventKind) -> Event {
        Event {
            id: format!("e{n}"),
            customer_id: "c".into(),
            occurred_at: now() - Duration::days(days_ago),
            kind,
        }
    }

    fn active(users: usize, from_days_ago: i64, to_days_ago: i64, r: &mut Rollup) {
        let mut n = 0;
        for d in to_days_ago..=from_days_ago {
            for u in 0..users {
                n += 1;
                r.apply(&ev(
                    n,
                    d,
                    EventKind::UserActive {
                        user_id: format!("u{u}"),
                    },
                ));
            }
        }
    }

    #[test]
    fn no_data_means_no_score() {
        assert!(score(
            &Rollup::default(),
            &CustomerFacts::default(),
            &Scorecard::default(),
            None,
            now()
        )
        .is_none());
    }

    #[test]
    fn falling_usage_is_the_top_signal_with_numbers() {
        let mut r = Rollup::default();
        active(10, 59, 30, &mut r);
        active(4, 29, 0, &mut r);
        let s = score(&r, &CustomerFacts::default(), &Scorecard::default(), None, now()).expect("scored");
        let top = &s.signals[0];
        assert_eq!(top.measure, MeasureKind::UsageTrend);
        assert!(top.text.contains("down 60%"), "{}", top.text);
        assert!(top.text.contains("10.0 → 4.0"), "{}", top.text);
        assert!(s.suggested_action.contains("check-in call"));
        assert_eq!(s.coverage.used, 1);
        // Usage alone is 22% of the weight: no verdict yet.
        assert_eq!(
            s.coverage.summary,
            "Not enough data yet (based on 1 of 8 measures: usage trend)"
        );
        assert_eq!(s.risk_level, None);
    }

    #[test]
    fn a_small_steady_customer_is_healthy() {
        let mut r = Rollup::default();
        active(2, 59, 0, &mut r);
        let facts = CustomerFacts {
            plan: None,
            seats_purchased: Some(3),
        };
        r.apply(&ev(
            9999,
            5,
            EventKind::SeatsChanged {
                seats_used: 3,
                seats_purchased: None,
            },
        ));
        for (i, d) in [40, 10].into_iter().enumerate() {
            r.apply(&ev(9000 + i, d, EventKind::PaymentSucceeded { amount: 50.0 }));
        }
        for (i, f) in ["reports", "exports", "alerts", "api", "sso"].into_iter().enumerate() {
            r.apply(&ev(
                9100 + i,
                3,
                EventKind::FeatureUsed {
                    feature: f.into(),
                    user_id: None,
                },
            ));
        }
        let s = score(&r, &facts, &Scorecard::default(), None, now()).expect("scored");
        // Usage, seats, features and billing: 66% of the weight, all at 100;
        // the missing third counts at the neutral 62.5.
        assert!(s.coverage.enough, "{:?}", s.coverage);
        assert_eq!(s.score, 87);
        assert_eq!(s.risk_level, Some(RiskLevel::Low));
        assert!(s.signals.iter().all(|x| x.sentiment == Sentiment::Positive));
    }

    #[test]
    fn thin_data_shrinks_toward_neutral_and_carries_no_risk_level() {
        let card = Scorecard::default();
        let mut r = Rollup::default();
        r.apply(&ev(1, 2, EventKind::NpsResponse { score: 0 }));
        let s = score(&r, &CustomerFacts::default(), &card, None, now()).expect("scored");
        // NPS alone (5% of the weight) at 0 points: 0.05·0 + 0.95·62.5.
        assert_eq!(s.score, 59);
        assert_eq!(s.risk_level, None);
        assert!(!s.coverage.enough);
        assert!((s.coverage.weight - 0.05).abs() < 1e-9);
        assert_eq!(s.coverage.prior, 62.5);
        assert_eq!(
            s.coverage.summary,
            "Not enough data yet (based on 1 of 8 measures: NPS)"
        );
        // Even with the previous level given, thin data gives no level.
        let again = score(&r, &CustomerFacts::default(), &card, Some(RiskLevel::Low), now()).expect("scored");
        assert_eq!(again.risk_level, None);
    }

    #[test]
    fn half_of_the_weight_is_enough_for_a_verdict() {
        let mut card = Scorecard::default();
        // Only billing (18) and NPS (5) count, weights 1 and 1: each half.
        for (k, m) in card.measures.iter_mut() {
            m.weight = match k {
                MeasureKind::BillingHealth | MeasureKind::Nps => 1.0,
                _ => 0.0,
            };
        }
        let mut r = Rollup::default();
        r.apply(&ev(1, 3, EventKind::PaymentSucceeded { amount: 10.0 }));
        let s = score(&r, &CustomerFacts::default(), &card, None, now()).expect("scored");
        assert!(s.coverage.enough);
        assert_eq!(s.coverage.summary, "based on 1 of 2 measures");
        // Billing at 100 for half the weight, the neutral prior for the rest.
        assert_eq!(s.score, 81);
        assert_eq!(s.risk_level, Some(RiskLevel::Low));
    }

    #[test]
    fn failed_payments_lower_the_score_and_say_so() {
        let mut r = Rollup::default();
        r.apply(&ev(
            1,
            10,
            EventKind::PaymentFailed {
                amount: 10.0,
                reason: None,
            },
        ));
        r.apply(&ev(
            2,
            3,
            EventKind::PaymentFailed {
                amount: 10.0,
                reason: None,
            },
        ));
        let s = score(&r, &CustomerFacts::default(), &Scorecard::default(), None, now()).expect("scored");
        // Billing alone is 18% of the weight: pulled below the neutral 62.5, no verdict.
        assert!(s.score < 62, "{}", s.score);
        assert_eq!(s.risk_level, None);
        assert!(
            s.signals[0]
                .text
                .starts_with("Payment failed twice in the last 30 days"),
            "{}",
            s.signals[0].text
        );
        assert!(s.suggested_action.contains("payment method"));
    }
}
