//! The storm guard: a channel never receives more than `messages` messages
//! in any window of `window_minutes` ([`StormGuard`], one of the channel's
//! rules), whatever the cause (an import, an outage, a scorecard change).
//!
//! [`slot`] says, from the times of the channel's last accepted messages,
//! what the next message may be: while fewer than `messages − 1` went out
//! in the window, an ordinary one ([`Slot::Free`]); the last one the window
//! allows ([`Slot::Last`]) becomes, when more alerts wait than one message
//! holds, a digest of all of them ([`notice`]); at the limit the channel
//! waits until the oldest of those messages leaves the window
//! ([`Slot::Full`]). Checked before every message and measured at the same
//! times the messages went out, this keeps the cap over every window, not
//! only over fixed ten-minute blocks. All pure: `now` is an argument.

use chrono::{DateTime, Duration, Utc};
use perly_domain::alerts::AlertKind;
use perly_domain::channels::StormGuard;
use perly_domain::money::{count, dollars};
use perly_domain::risk::RiskLevel;
use perly_store::StormSummary;

use crate::notice::Notice;

/// What the next message on a channel may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Send as usual.
    Free,
    /// The last message the window allows: a digest of everything waiting
    /// if that is more than one message holds.
    Last,
    /// The window is full: nothing before `until`.
    Full { until: DateTime<Utc> },
}

/// The slot at `now`, given when the channel's messages went out (any
/// order; older ones than the window are ignored).
pub fn slot(guard: &StormGuard, sent: &[DateTime<Utc>], now: DateTime<Utc>) -> Slot {
    let window = guard.window();
    let mut inside: Vec<DateTime<Utc>> = sent.iter().copied().filter(|t| *t > now - window).collect();
    inside.sort_unstable_by(|a, b| b.cmp(a));
    let limit = guard.messages.max(1) as usize;
    if inside.len() >= limit {
        // When the limit-th newest leaves, one message fits again.
        Slot::Full {
            until: inside[limit - 1] + window,
        }
    } else if inside.len() + 1 == limit {
        Slot::Last
    } else {
        Slot::Free
    }
}

/// The earliest a channel may send again after a message at `at`: `at`,
/// or when its window frees a slot if that message filled it.
pub fn next_after_send(guard: &StormGuard, sent_before: &[DateTime<Utc>], at: DateTime<Utc>) -> DateTime<Utc> {
    let mut sent = sent_before.to_vec();
    sent.push(at);
    match slot(guard, &sent, at) {
        Slot::Full { until } => until,
        Slot::Free | Slot::Last => at,
    }
}

/// Customers named in a storm digest.
pub const TOP: usize = 10;

/// The storm digest for everything due on a channel: what happened, to how
/// many customers, since when; the top customers by MRR; why it came as
/// one message; a link to Perly's alert feed, where every alert is.
pub fn notice(s: &StormSummary, guard: &StormGuard, public_url: &str, now: DateTime<Utc>) -> Notice {
    let span = span(now - s.since);
    let customers = s.customers.max(0) as u64;
    let alerts = s.alerts.max(0) as u64;
    let kinds: Vec<AlertKind> = {
        let mut k: Vec<AlertKind> = s.by_kind.iter().map(|(k, _, _)| *k).collect();
        k.sort();
        k.dedup();
        k
    };
    let risks: Vec<Option<RiskLevel>> = {
        let mut r: Vec<Option<RiskLevel>> = s.by_kind.iter().map(|(_, r, _)| *r).collect();
        r.sort();
        r.dedup();
        r
    };
    let who = plural(customers, "customer", "customers");
    let title = match (kinds.as_slice(), risks.as_slice()) {
        ([AlertKind::CustomerAtRisk], [Some(r)]) => {
            format!("{who} moved into {} risk {span}", r.label().to_lowercase())
        }
        ([AlertKind::CustomerAtRisk], _) => format!("{who} became at risk {span}"),
        ([AlertKind::BillingRetryFailed], _) => format!(
            "{} failed for {who} {span}",
            plural(alerts, "billing retry", "billing retries")
        ),
        ([AlertKind::HealthScoreDrop], _) => format!("Health scores dropped for {who} {span}"),
        ([AlertKind::ExpansionSignal], _) => format!("Expansion signals for {who} {span}"),
        ([AlertKind::UpsellOpportunity], _) => format!("Upsell opportunities for {who} {span}"),
        _ => format!("{} for {who} {span}", plural(alerts, "alert", "alerts")),
    };
    let mut lines = Vec::new();
    if kinds.len() > 1 {
        let mut per_kind: Vec<(AlertKind, i64)> = Vec::new();
        for (k, _, n) in &s.by_kind {
            match per_kind.iter_mut().find(|(pk, _)| pk == k) {
                Some((_, total)) => *total += n,
                None => per_kind.push((*k, *n)),
            }
        }
        per_kind.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let parts: Vec<String> = per_kind
            .iter()
            .map(|(k, n)| format!("{} {}", k.label(), count(*n as u64)))
            .collect();
        lines.push(parts.join(" · "));
    }
    if !s.top.is_empty() {
        let names: Vec<String> = s
            .top
            .iter()
            .map(|(name, mrr)| match mrr {
                Some(m) => format!("{name} ({})", dollars(*m)),
                None => name.clone(),
            })
            .collect();
        lines.push(format!("Top {} by MRR: {}", s.top.len(), names.join(", ")));
    }
    lines.push(format!(
        "This channel gets at most {} per {}: these alerts come as this one message. Every alert is in Perly's alert feed.",
        plural(u64::from(guard.messages), "message", "messages"),
        minutes(guard.window_minutes)
    ));
    let left = customers.saturating_sub(s.top.len() as u64);
    Notice {
        title,
        lines,
        more: (left > 0).then(|| format!("+{} more in Perly", count(left))),
        link: format!("{}/alerts", public_url.trim_end_matches('/')),
        risk: s.by_kind.iter().filter_map(|(_, r, _)| *r).max(),
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{} {many}", count(n))
    }
}

/// "10 minutes", "an hour", "2 hours", "a day".
fn minutes(m: u32) -> String {
    match m {
        1 => "minute".to_owned(),
        60 => "hour".to_owned(),
        1440 => "day".to_owned(),
        m if m % 60 == 0 => format!("{} hours", m / 60),
        m => format!("{m} minutes"),
    }
}

/// "in the last 10 minutes" for how long the alerts have been waiting
/// (rounded up; at least a minute).
fn span(d: Duration) -> String {
    let mins = (d.num_seconds().max(1) + 59) / 60;
    if mins <= 1 {
        "in the last minute".to_owned()
    } else if mins < 120 {
        format!("in the last {mins} minutes")
    } else if mins < 48 * 60 {
        format!("in the last {} hours", (mins + 59) / 60)
    } else {
        format!("in the last {} days", (mins + 24 * 60 - 1) / (24 * 60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use perly_domain::ids::DeliveryId;
    use perly_store::Fold;
    use proptest::prelude::*;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 5, 9, 0, 0).single().expect("time") + Duration::seconds(s)
    }

    const TEN_PER_TEN: StormGuard = StormGuard {
        messages: 10,
        window_minutes: 10,
    };

    #[test]
    fn ordinary_until_the_last_slot_then_wait_for_the_window() {
        let sent: Vec<_> = (0..8).map(t).collect();
        assert_eq!(slot(&TEN_PER_TEN, &sent, t(9)), Slot::Free);
        let sent: Vec<_> = (0..9).map(t).collect();
        assert_eq!(slot(&TEN_PER_TEN, &sent, t(9)), Slot::Last);
        let sent: Vec<_> = (0..10).map(t).collect();
        // The oldest (t0) leaves the window at t0 + 10 min.
        assert_eq!(slot(&TEN_PER_TEN, &sent, t(10)), Slot::Full { until: t(600) });
        assert_eq!(slot(&TEN_PER_TEN, &sent, t(600)), Slot::Last);
        assert_eq!(next_after_send(&TEN_PER_TEN, &sent[..9], t(9)), t(600));
        assert_eq!(next_after_send(&TEN_PER_TEN, &sent[..5], t(9)), t(9));
        // Old messages do not count.
        assert_eq!(slot(&TEN_PER_TEN, &[t(-600)], t(0)), Slot::Free);
    }

    proptest! {
        /// Whatever the arrivals, a channel that follows `slot` never gets
        /// more than `messages` messages in any window.
        #[test]
        fn the_cap_holds_over_every_window(
            messages in 1u32..12,
            window_minutes in 1u32..15,
            gaps in proptest::collection::vec(0i64..200, 1..300),
        ) {
            let guard = StormGuard { messages, window_minutes };
            let mut now = t(0);
            let mut sent: Vec<DateTime<Utc>> = Vec::new();
            for g in gaps {
                now += Duration::seconds(g);
                match slot(&guard, &sent, now) {
                    Slot::Full { until } => {
                        prop_assert!(until > now);
                        now = until;
                        let freed = !matches!(slot(&guard, &sent, now), Slot::Full { .. });
                        prop_assert!(freed, "still full at {}", now);
                    }
                    Slot::Free | Slot::Last => {}
                }
                sent.push(now);
            }
            let w = guard.window();
            for (i, start) in sent.iter().enumerate() {
                let n = sent[i..].iter().take_while(|x| **x - *start < w).count();
                prop_assert!(n <= messages as usize, "{n} messages in a window");
            }
        }
    }

    fn summary(by_kind: Vec<(AlertKind, Option<RiskLevel>, i64)>, customers: i64) -> StormSummary {
        StormSummary {
            alerts: by_kind.iter().map(|(_, _, n)| n).sum(),
            customers,
            by_kind,
            top: vec![
                ("Acme Corp".into(), Some(4200.0)),
                ("Globex".into(), Some(1665.0)),
                ("Initech".into(), None),
            ],
            since: t(0),
            fold: Fold {
                through: DeliveryId::new(),
                due_by: t(600),
            },
        }
    }

    #[test]
    fn a_risk_storm_reads_as_customers_moving_into_a_risk_level() {
        let s = summary(vec![(AlertKind::CustomerAtRisk, Some(RiskLevel::High), 37)], 37);
        let n = notice(&s, &TEN_PER_TEN, "https://perly.example/", t(600));
        assert_eq!(n.title, "37 customers moved into high risk in the last 10 minutes");
        assert_eq!(
            n.lines[0],
            "Top 3 by MRR: Acme Corp ($4,200.00), Globex ($1,665.00), Initech"
        );
        assert!(
            n.lines[1].contains("at most 10 messages per 10 minutes"),
            "{:?}",
            n.lines
        );
        assert_eq!(n.more.as_deref(), Some("+34 more in Perly"));
        assert_eq!(n.link, "https://perly.example/alerts");
        assert_eq!(n.risk, Some(RiskLevel::High));
    }

    #[test]
    fn a_mixed_storm_counts_each_kind() {
        let s = summary(
            vec![
                (AlertKind::BillingRetryFailed, Some(RiskLevel::Low), 4_000),
                (AlertKind::CustomerAtRisk, Some(RiskLevel::Critical), 15),
                (AlertKind::BillingRetryFailed, Some(RiskLevel::High), 100),
            ],
            3_000,
        );
        let n = notice(&s, &TEN_PER_TEN, "https://perly.example", t(3 * 3600));
        assert_eq!(n.title, "4,115 alerts for 3,000 customers in the last 3 hours");
        assert_eq!(n.lines[0], "Billing retry failed 4,100 · Customer at risk 15");
        assert_eq!(n.more.as_deref(), Some("+2,997 more in Perly"));
        assert_eq!(n.risk, Some(RiskLevel::Critical));
        let billing = summary(vec![(AlertKind::BillingRetryFailed, Some(RiskLevel::Low), 500)], 1);
        let n = notice(&billing, &TEN_PER_TEN, "https://perly.example", t(30));
        assert_eq!(n.title, "500 billing retries failed for 1 customer in the last minute");
        assert_eq!(n.more, None);
    }
}
