//! Invariants checked over generated inputs: a score is always 0–100,
//! ingesting the same events twice changes nothing, and the order in which
//! events arrive does not change the rollup or the score; with every list
//! at its limit, folding still keeps what the module docs of `rollup` say.

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;

use crate::alerts::{detect, AlertState};
use crate::event::{ActivityType, Event, EventKind, OpportunityCategory, OpportunityStatus, TicketPriority};
use crate::rollup::{Limits, Rollup};
use crate::scorecard::{MeasureConfig, MeasureKind, Scorecard};
use crate::scoring::{score, CustomerFacts};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).single().expect("time")
}

fn kind() -> impl Strategy<Value = EventKind> {
    let user = (0..6u8).prop_map(|u| format!("u{u}"));
    prop_oneof![
        user.clone().prop_map(|user_id| EventKind::UserActive { user_id }),
        ((0..5u8), proptest::option::of(user)).prop_map(|(f, user_id)| EventKind::FeatureUsed {
            feature: format!("f{f}"),
            user_id
        }),
        ((0..60u32), proptest::option::of(1..60u32)).prop_map(|(seats_used, seats_purchased)| {
            EventKind::SeatsChanged {
                seats_used,
                seats_purchased,
            }
        }),
        ((0..4u8), (0..4u8)).prop_map(|(t, p)| EventKind::TicketOpened {
            ticket_id: format!("t{t}"),
            priority: [
                TicketPriority::Low,
                TicketPriority::Normal,
                TicketPriority::High,
                TicketPriority::Urgent
            ][p as usize],
        }),
        (0..4u8).prop_map(|t| EventKind::TicketClosed {
            ticket_id: format!("t{t}")
        }),
        ((0..3u8), (0.0..2000.0f64), proptest::option::of(1.0..1000.0f64)).prop_map(|(m, value, limit)| {
            EventKind::UsageMeasured {
                metric: format!("m{m}"),
                value,
                limit,
            }
        }),
        (0.0..1000.0f64).prop_map(|amount| EventKind::PaymentSucceeded { amount }),
        (0.0..1000.0f64).prop_map(|amount| EventKind::PaymentFailed { amount, reason: None }),
        ((0.0..1000.0f64), (1..5u32)).prop_map(|(amount, attempt)| EventKind::BillingRetryFailed {
            amount,
            attempt,
            next_retry_at: None
        }),
        (0..=10u8).prop_map(|score| EventKind::NpsResponse { score }),
        (0..4u8).prop_map(|p| EventKind::PlanChanged {
            plan: ["free", "starter", "pro", "enterprise"][p as usize].into(),
            mrr: None
        }),
        (0..3u8).prop_map(|a| EventKind::CrmActivity {
            activity_type: [ActivityType::Call, ActivityType::Email, ActivityType::Meeting][a as usize],
            subject: None,
        }),
        ((0..3u8), (0..4u8), (0..4u8)).prop_map(|(o, st, c)| EventKind::CrmOpportunity {
            opportunity_id: format!("006{o}"),
            status: [
                OpportunityStatus::Open,
                OpportunityStatus::Won,
                OpportunityStatus::Lost,
                OpportunityStatus::Deleted
            ][st as usize],
            category: [
                OpportunityCategory::Renewal,
                OpportunityCategory::Expansion,
                OpportunityCategory::NewBusiness,
                OpportunityCategory::Other
            ][c as usize],
            amount: Some(100.0),
            close_date: None,
            stage: None,
        }),
    ]
}

fn events() -> impl Strategy<Value = Vec<Event>> {
    proptest::collection::vec((kind(), 0..(200 * 24 * 60i64)), 0..120).prop_map(|rows| {
        rows.into_iter()
            .enumerate()
            .map(|(i, (kind, minutes_ago))| Event {
                id: format!("e{i}"),
                customer_id: "c".into(),
                occurred_at: now() - Duration::minutes(minutes_ago),
                kind,
            })
            .collect()
    })
}

fn scorecard() -> impl Strategy<Value = Scorecard> {
    proptest::collection::vec(((0.0..100.0f64), (-50.0..50.0f64), (-50.0..50.0f64)), 7).prop_map(|cfgs| {
        let mut card = Scorecard::default();
        for (kind, (weight, bad, good)) in MeasureKind::ALL.into_iter().zip(cfgs) {
            let good = if (good - bad).abs() < 0.01 { bad + 1.0 } else { good };
            card.measures.insert(kind, MeasureConfig { weight, bad, good });
        }
        card
    })
}

fn fold(events: &[Event]) -> Rollup {
    let mut r = Rollup::default();
    for e in events {
        r.apply(e);
    }
    r
}

/// Limits small enough for the generated events to overflow every list.
const TINY: Limits = Limits {
    users: 2,
    features: 2,
    seats: 3,
    tickets: 2,
    payments: 2,
    usage: 2,
    nps: 3,
    opportunities: 2,
};

const UNLIMITED: Limits = Limits {
    users: usize::MAX,
    features: usize::MAX,
    seats: usize::MAX,
    tickets: usize::MAX,
    payments: usize::MAX,
    usage: usize::MAX,
    nps: usize::MAX,
    opportunities: usize::MAX,
};

/// A deterministic shuffle from `seed`.
fn shuffle(evs: &[Event], seed: u64) -> Vec<Event> {
    let mut out = evs.to_vec();
    let mut state = seed | 1;
    for i in (1..out.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.swap(i, (state % (i as u64 + 1)) as usize);
    }
    out
}

fn fold_within(events: &[Event], limits: &Limits) -> Rollup {
    let mut r = Rollup::default();
    for e in events {
        r.apply_within(e, limits);
    }
    r
}

/// What folding a set of events within `limits` must give: every event
/// folded in without limits, then the lowest ranks dropped.
fn exact(events: &[Event], limits: &Limits) -> Rollup {
    let mut r = fold_within(events, &UNLIMITED);
    r.enforce(limits);
    r
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Any order, with any events sent twice, at tiny limits: the point lists
    /// and registers are exactly the newest of the set; the users, features
    /// and tickets kept are exactly the most recently active ones, each
    /// holding a part of what it holds in the exact rollup.
    #[test]
    fn folding_within_limits_keeps_the_newest_whatever_the_order(
        evs in events(),
        seed in any::<u64>(),
        again in 0..120usize,
        batch in prop_oneof![Just(1usize), 1..40usize],
    ) {
        let mut sequence = shuffle(&evs, seed);
        sequence.extend(evs.iter().take(again).cloned());
        // One by one, or in batches as the store folds them.
        let mut got = Rollup::default();
        for chunk in sequence.chunks(batch) {
            if batch == 1 {
                got.apply_within(&chunk[0], &TINY);
            } else {
                got.apply_all_within(chunk, &TINY);
            }
        }
        let want = exact(&evs, &TINY);
        prop_assert_eq!(got.horizon, want.horizon);
        prop_assert_eq!(&got.seats, &want.seats);
        prop_assert_eq!(&got.payments, &want.payments);
        prop_assert_eq!(&got.usage, &want.usage);
        prop_assert_eq!(&got.nps, &want.nps);
        prop_assert_eq!(&got.plan, &want.plan);
        prop_assert_eq!(&got.last_activity, &want.last_activity);
        prop_assert_eq!(&got.activity_days, &want.activity_days);
        prop_assert_eq!(&got.opportunities, &want.opportunities);
        prop_assert_eq!(got.users.len(), want.users.len());
        for (g, w) in got.users.iter().zip(&want.users) {
            prop_assert_eq!((g.key, g.days.last_day), (w.key, w.days.last_day));
            prop_assert_eq!(g.days.bits & !w.days.bits, 0, "a user's days are a part of the exact ones");
        }
        prop_assert_eq!(got.features.len(), want.features.len());
        for (g, w) in got.features.iter().zip(&want.features) {
            prop_assert_eq!((&g.name, g.days.last_day), (&w.name, w.days.last_day));
            prop_assert_eq!(g.days.bits & !w.days.bits, 0, "a feature's days are a part of the exact ones");
        }
        prop_assert_eq!(got.tickets.len(), want.tickets.len());
        for (g, w) in got.tickets.iter().zip(&want.tickets) {
            prop_assert_eq!(g.key, w.key);
            prop_assert_eq!(g.opened_at.max(g.closed_at), w.opened_at.max(w.closed_at));
            prop_assert!(g.opened_at <= w.opened_at && g.closed_at <= w.closed_at, "{:?} vs {:?}", g, w);
        }
    }

    /// The default limits are far above the generated data: nothing is
    /// dropped, so folding is exact.
    #[test]
    fn the_default_limits_drop_nothing_from_normal_data(evs in events()) {
        prop_assert_eq!(fold(&evs), fold_within(&evs, &UNLIMITED));
    }

    /// The score is the weighted mean of its measures' points and, for the
    /// weight without data, the neutral prior: each measure weighs its
    /// scorecard weight over the scorecard's total, and the score lies
    /// between the lowest and the highest of the parts it averages. (A
    /// clamp to 0–100 cannot hide a weighting mistake from this.)
    #[test]
    fn the_score_is_the_weighted_mean_of_its_parts(evs in events(), card in prop_oneof![Just(Scorecard::default()), scorecard()], seats in proptest::option::of(0..80u32)) {
        let facts = CustomerFacts { plan: Some("pro".into()), seats_purchased: seats };
        let r = fold(&evs);
        if let Some(s) = score(&r, &facts, &card, None, now()) {
            let total: f64 = card.measures.values().map(|m| m.weight).filter(|w| *w > 0.0).sum();
            let mut covered = 0.0;
            let mut mean = 0.0;
            let (mut lo, mut hi) = (f64::MAX, f64::MIN);
            for m in &s.measures {
                let w = card.measures[&m.measure].weight / total;
                prop_assert!((m.weight - w).abs() < 1e-9, "{:?} weighs {} not {}", m.measure, m.weight, w);
                prop_assert!((0.0..=100.0).contains(&m.points));
                covered += w;
                mean += w * m.points;
                lo = lo.min(m.points);
                hi = hi.max(m.points);
            }
            prop_assert!((s.coverage.weight - covered).abs() < 1e-9);
            if covered < 1.0 - 1e-9 {
                mean += (1.0 - covered) * s.coverage.prior;
                lo = lo.min(s.coverage.prior);
                hi = hi.max(s.coverage.prior);
            }
            prop_assert!((s.score as f64 - mean).abs() <= 0.5 + 1e-9, "score {} vs mean {}", s.score, mean);
            prop_assert!(lo.round() <= s.score as f64 && s.score as f64 <= hi.round(), "{} not in [{lo}, {hi}]", s.score);
            // Detection never panics and never repeats itself on the same input.
            let first = detect(&AlertState::default(), &s, &r, &facts, &card, now());
            let again = detect(&first.state, &s, &r, &facts, &card, now());
            prop_assert!(again.alerts.is_empty(), "{:?}", again.alerts);
        }
    }

    #[test]
    fn ingesting_the_same_events_twice_changes_nothing(evs in events()) {
        let once = fold(&evs);
        let mut twice = once.clone();
        for e in &evs {
            twice.apply(e);
        }
        prop_assert_eq!(once, twice);
    }

    #[test]
    fn the_order_of_events_does_not_change_the_result(evs in events(), seed in any::<u64>()) {
        let shuffled = shuffle(&evs, seed);
        let a = fold(&evs);
        let b = fold(&shuffled);
        prop_assert_eq!(&a, &b);
        let card = Scorecard::default();
        let facts = CustomerFacts::default();
        prop_assert_eq!(score(&a, &facts, &card, None, now()), score(&b, &facts, &card, None, now()));
    }
}
