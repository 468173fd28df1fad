//! The per-customer rollup: everything scoring needs, folded from raw events.
//!
//! Folding is idempotent (applying an event twice changes nothing) and
//! order-independent (any order of the same events gives the same rollup),
//! because every part is a set keyed by a stable hash, a day bitmap merged
//! with OR, or a "latest by (time, value)" register. Old entries are pruned
//! relative to the newest event seen (`horizon`), never the clock, so pruning
//! is order-independent too. The rollup is a cache of the events table: it can
//! always be rebuilt by folding the customer's events again.
//!
//! The rollup is stored as one blob per customer and rewritten by every batch
//! that touches the customer, so its size is bounded whatever a client sends:
//! every list keeps at most [`LIMITS`] entries, the ones with the largest
//! rank (newest first, then key). Ranks only grow as events arrive, and
//! retention drops the lowest ranks first, so an entry pushed out never comes
//! back with stale content and a late old event never evicts a newer one:
//! - the point lists (seats, payments, NPS) and the registers (usage per
//!   metric, opportunities, plan, activity) hold exactly the newest entries
//!   of the set of events folded in, in any order, applied once or twice;
//! - the accumulating maps (users, features, tickets) keep exactly the same
//!   keys with the same newest activity in any order; only when one of them
//!   is full can a key that was pushed out and came back have lost what it
//!   held before (older active days, an older ticket open or close).
//!
//! Below the limits (far above what one real customer sends in the windows
//! scoring reads) everything is exact, as it always was.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{ActivityType, Event, EventKind, OpportunityCategory, OpportunityStatus, TicketPriority};

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;
/// Entries from before the start of the day this many days before the
/// newest event's day are pruned (scoring and alerts read at most 180 days
/// back). Day-aligned, so pruning runs only when that day moves; it keeps up
/// to one day more than the 180 × 24 h before the newest event it used to.
const RETENTION_DAYS: i32 = 180;
/// Day bitmaps cover this many days up to the newest event's day.
const BITS_DAYS: i32 = 128;

/// How many entries each list of one customer's rollup keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Users with their active days (usage trend).
    pub users: usize,
    /// Feature names with their days of use (feature adoption, upsell).
    pub features: usize,
    /// Seat counts (seat utilisation, expansion over up to 90 days).
    pub seats: usize,
    /// Tickets (support load).
    pub tickets: usize,
    /// Payment events (billing health, retry alerts).
    pub payments: usize,
    /// Metered metrics, one reading each (upsell on plan limits).
    pub usage: usize,
    /// NPS responses (NPS).
    pub nps: usize,
    /// CRM opportunities (renewal outlook).
    pub opportunities: usize,
}

/// The limits every stored rollup is kept within. With every list full and
/// ids and names at their 200-character maximum a rollup encodes to about
/// 0.4 MB; a typical one is a few kB.
pub const LIMITS: Limits = Limits {
    users: 5_000,
    features: 500,
    seats: 1_000,
    tickets: 1_000,
    payments: 200,
    usage: 100,
    nps: 1_000,
    opportunities: 500,
};

/// Day number (days since the Unix epoch) of a millisecond timestamp.
pub fn day_of(ms: i64) -> i32 {
    ms.div_euclid(DAY_MS) as i32
}

/// A stable 64-bit hash (FNV-1a) for ids kept in rollups: stable across builds,
/// unlike `std`'s hasher.
pub fn stable_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Which of the last 128 days something happened on. Bit `k` is day `last_day - k`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayBits {
    pub last_day: i32,
    pub bits: u128,
}

impl DayBits {
    pub fn mark(&mut self, day: i32) {
        if self.bits == 0 {
            self.last_day = day;
            self.bits = 1;
        } else if day > self.last_day {
            let shift = (day - self.last_day) as u32;
            self.bits = if shift >= 128 { 0 } else { self.bits << shift };
            self.bits |= 1;
            self.last_day = day;
        } else if self.last_day - day < 128 {
            self.bits |= 1u128 << (self.last_day - day);
        }
    }

    /// Whether any day in `[from, to]` is marked.
    pub fn any_in(&self, from: i32, to: i32) -> bool {
        self.count_in(from, to) > 0
    }

    /// Number of marked days in `[from, to]`.
    pub fn count_in(&self, from: i32, to: i32) -> u32 {
        if self.bits == 0 || to < from {
            return 0;
        }
        (from.max(self.last_day - 127)..=to.min(self.last_day))
            .filter(|d| self.bits & (1u128 << (self.last_day - d)) != 0)
            .count() as u32
    }

    /// Forgets days before `first_day`.
    pub fn retain_from(&mut self, first_day: i32) {
        if self.bits == 0 {
            return;
        }
        if self.last_day < first_day {
            *self = Self::default();
            return;
        }
        let keep = (self.last_day - first_day + 1) as u32;
        if keep < 128 {
            self.bits &= (1u128 << keep) - 1;
        }
    }

    /// The oldest marked day.
    pub fn oldest(&self) -> Option<i32> {
        (self.bits != 0).then(|| self.last_day - (127 - self.bits.leading_zeros() as i32))
    }

    /// The newest marked day.
    pub fn newest(&self) -> Option<i32> {
        (self.bits != 0).then_some(self.last_day)
    }
}

/// Days one user was active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDays {
    pub key: u64,
    pub days: DayBits,
}

/// Days one feature was used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureDays {
    pub name: String,
    pub days: DayBits,
}

/// A seat count at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeatPoint {
    pub at: i64,
    pub used: u32,
    pub purchased: Option<u32>,
}

/// One support ticket: its latest open and latest close (events may arrive in
/// any order). It is open when the latest open is after the latest close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub key: u64,
    pub opened_at: Option<i64>,
    pub priority: Option<TicketPriority>,
    pub closed_at: Option<i64>,
}

impl Ticket {
    /// Open at `at`: opened by then, and not closed between that open and `at`.
    pub fn is_open_at(&self, at: i64) -> bool {
        self.opened_at
            .is_some_and(|o| o <= at && self.closed_at.is_none_or(|c| c < o || c > at))
    }
}

/// Outcome of a payment event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PaymentOutcome {
    Succeeded,
    Failed,
    RetryFailed,
}

/// One payment event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    pub key: u64,
    pub at: i64,
    pub outcome: PaymentOutcome,
    pub amount: f64,
    pub attempt: u32,
    /// Kept for retry failures: one alert per failed retry, keyed by the event id.
    pub event_id: Option<String>,
}

/// The latest reading of one metered metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub metric: String,
    pub at: i64,
    pub value: f64,
    pub limit: Option<f64>,
}

/// One NPS response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NpsPoint {
    pub key: u64,
    pub at: i64,
    pub score: u8,
}

/// The latest plan change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanPoint {
    pub at: i64,
    pub plan: String,
    pub mrr: Option<f64>,
}

/// The newest CRM activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityPoint {
    pub at: i64,
    pub kind: ActivityType,
}

/// The newest known state of one CRM opportunity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OpportunityPoint {
    pub key: u64,
    /// When this state was recorded (the opportunity's last change).
    pub at: i64,
    pub status: OpportunityStatus,
    pub category: OpportunityCategory,
    pub amount: f64,
    /// Days since the epoch of the close date.
    pub close_day: Option<i32>,
}

/// Everything scoring needs about one customer, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rollup {
    /// Newest `occurred_at` folded in (ms); pruning is relative to it.
    pub horizon: i64,
    /// Sorted by key.
    pub users: Vec<UserDays>,
    /// Sorted by name.
    pub features: Vec<FeatureDays>,
    /// Sorted by time.
    pub seats: Vec<SeatPoint>,
    /// Sorted by key.
    pub tickets: Vec<Ticket>,
    /// Sorted by (time, key).
    pub payments: Vec<Payment>,
    /// One per metric, sorted by metric.
    pub usage: Vec<Usage>,
    /// Sorted by (time, key).
    pub nps: Vec<NpsPoint>,
    pub plan: Option<PlanPoint>,
    pub last_activity: Option<ActivityPoint>,
    /// How many CRM activities in the retention window (by day).
    pub activity_days: DayBits,
    /// Sorted by key: the newest state of each opportunity changed within
    /// the retention window.
    pub opportunities: Vec<OpportunityPoint>,
}

fn upsert_sorted<T, K: Ord>(
    v: &mut Vec<T>,
    key: K,
    key_of: impl Fn(&T) -> K,
    make: impl FnOnce() -> T,
) -> Option<&mut T> {
    match v.binary_search_by(|x| key_of(x).cmp(&key)) {
        Ok(i) => v.get_mut(i),
        Err(i) => {
            v.insert(i, make());
            v.get_mut(i)
        }
    }
}

/// Once `v` holds more than `high`, keeps the `cap` entries that `rank`
/// orders last, in their order. Ranks are unique within a list (they end
/// with the entry's key).
fn keep_top<T>(v: &mut Vec<T>, (cap, high): (usize, usize), rank: impl Fn(&T, &T) -> Ordering) {
    if v.len() <= high {
        return;
    }
    let excess = v.len().saturating_sub(cap);
    if excess == 1 {
        // The usual case: one entry too many after an insert.
        let lowest = v.iter().enumerate().min_by(|a, b| rank(a.1, b.1)).map(|(i, _)| i);
        if let Some(i) = lowest {
            v.remove(i);
        }
    } else if excess > 1 {
        let mut order: Vec<usize> = (0..v.len()).collect();
        order.sort_by(|a, b| rank(&v[*a], &v[*b]));
        let mut dropped = vec![false; v.len()];
        for i in order.into_iter().take(excess) {
            dropped[i] = true;
        }
        let mut i = 0;
        v.retain(|_| {
            i += 1;
            !dropped[i - 1]
        });
    }
}

/// Once a list sorted oldest first holds more than `high`, keeps its
/// newest `cap` entries.
fn keep_newest<T>(v: &mut Vec<T>, (cap, high): (usize, usize)) {
    if v.len() > high {
        let excess = v.len() - cap;
        v.drain(..excess);
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

impl Rollup {
    /// Folds one event in, keeping the rollup within [`LIMITS`]. Applying
    /// the same event again changes nothing (with a full users, features or
    /// tickets list, see the module docs for what holds).
    pub fn apply(&mut self, event: &Event) {
        self.apply_within(event, &LIMITS);
    }

    /// Folds one event in, keeping the rollup within `limits`.
    pub fn apply_within(&mut self, event: &Event, limits: &Limits) {
        self.fold(event);
        self.keep_within(limits, 0);
    }

    /// Folds a batch of events in, keeping the rollup within [`LIMITS`].
    /// Cheaper than [`Rollup::apply`] one by one once lists are full (they
    /// are trimmed in bulk), with the same guarantees (see the module docs).
    pub fn apply_all<'a>(&mut self, events: impl IntoIterator<Item = &'a Event>) {
        self.apply_all_within(events, &LIMITS);
    }

    /// [`Rollup::apply_all`] within `limits`.
    pub fn apply_all_within<'a>(&mut self, events: impl IntoIterator<Item = &'a Event>, limits: &Limits) {
        for event in events {
            self.fold(event);
            // Let a full list grow by a quarter before trimming it back:
            // one sort per many inserts instead of a scan per insert.
            self.keep_within(limits, 4);
        }
        self.keep_within(limits, 0);
    }

    fn fold(&mut self, event: &Event) {
        let at = ms(event.occurred_at);
        let day = day_of(at);
        let day_before = day_of(self.horizon);
        match &event.kind {
            EventKind::UserActive { user_id } => self.mark_user(user_id, day),
            EventKind::FeatureUsed { feature, user_id } => {
                if let Some(u) = user_id {
                    self.mark_user(u, day);
                }
                let i = match self.features.binary_search_by(|f| f.name.as_str().cmp(feature)) {
                    Ok(i) => Some(i),
                    Err(i) => {
                        self.features.insert(
                            i,
                            FeatureDays {
                                name: feature.clone(),
                                days: DayBits::default(),
                            },
                        );
                        Some(i)
                    }
                };
                if let Some(f) = i.and_then(|i| self.features.get_mut(i)) {
                    f.days.mark(day);
                }
            }
            EventKind::SeatsChanged {
                seats_used,
                seats_purchased,
            } => {
                let p = SeatPoint {
                    at,
                    used: *seats_used,
                    purchased: *seats_purchased,
                };
                // Latest by (time, values) wins for equal times, so order never matters.
                match self.seats.binary_search_by(|x| x.at.cmp(&at)) {
                    Ok(i) => {
                        if let Some(x) = self.seats.get_mut(i) {
                            if p > *x {
                                *x = p;
                            }
                        }
                    }
                    Err(i) => self.seats.insert(i, p),
                }
            }
            EventKind::TicketOpened { ticket_id, priority } => {
                if let Some(t) = self.ticket(ticket_id) {
                    // The latest open (with its priority) wins, so a reopened ticket is open again.
                    if Some((at, *priority)) > t.opened_at.zip(t.priority) {
                        t.opened_at = Some(at);
                        t.priority = Some(*priority);
                    }
                }
            }
            EventKind::TicketClosed { ticket_id } => {
                if let Some(t) = self.ticket(ticket_id) {
                    t.closed_at = Some(t.closed_at.map_or(at, |c| c.max(at)));
                }
            }
            EventKind::UsageMeasured { metric, value, limit } => {
                let new = Usage {
                    metric: metric.clone(),
                    at,
                    value: *value,
                    limit: *limit,
                };
                match self.usage.binary_search_by(|u| u.metric.as_str().cmp(metric)) {
                    Ok(i) => {
                        if let Some(u) = self.usage.get_mut(i) {
                            let newer = (new.at, new.value, new.limit.unwrap_or(-1.0))
                                .partial_cmp(&(u.at, u.value, u.limit.unwrap_or(-1.0)))
                                .is_some_and(|o| o.is_gt());
                            if newer {
                                *u = new;
                            }
                        }
                    }
                    Err(i) => self.usage.insert(i, new),
                }
            }
            EventKind::PaymentSucceeded { amount } => self.payment(event, at, PaymentOutcome::Succeeded, *amount, 0),
            EventKind::PaymentFailed { amount, .. } => self.payment(event, at, PaymentOutcome::Failed, *amount, 0),
            EventKind::BillingRetryFailed { amount, attempt, .. } => {
                self.payment(event, at, PaymentOutcome::RetryFailed, *amount, *attempt)
            }
            EventKind::NpsResponse { score } => {
                let p = NpsPoint {
                    key: stable_hash(&event.id),
                    at,
                    score: *score,
                };
                if let Err(i) = self.nps.binary_search_by(|x| (x.at, x.key).cmp(&(p.at, p.key))) {
                    self.nps.insert(i, p);
                }
            }
            EventKind::PlanChanged { plan, mrr } => {
                let newer = match &self.plan {
                    None => true,
                    Some(p) => (at, plan.as_str()) > (p.at, p.plan.as_str()),
                };
                if newer {
                    self.plan = Some(PlanPoint {
                        at,
                        plan: plan.clone(),
                        mrr: *mrr,
                    });
                }
            }
            EventKind::CrmActivity { activity_type, .. } => {
                let newer = self.last_activity.is_none_or(|a| (at, *activity_type) > (a.at, a.kind));
                if newer {
                    self.last_activity = Some(ActivityPoint {
                        at,
                        kind: *activity_type,
                    });
                }
                self.activity_days.mark(day);
            }
            EventKind::CrmOpportunity {
                opportunity_id,
                status,
                category,
                amount,
                close_date,
                ..
            } => {
                let p = OpportunityPoint {
                    key: stable_hash(opportunity_id),
                    at,
                    status: *status,
                    category: *category,
                    amount: amount.unwrap_or(0.0),
                    close_day: close_date.map(|d| (d - chrono::NaiveDate::default()).num_days() as i32),
                };
                let rank = |o: &OpportunityPoint| (o.at, o.status, o.category, o.close_day, o.amount.to_bits());
                if let Some(o) = upsert_sorted(&mut self.opportunities, p.key, |o| o.key, || p) {
                    // The newest state wins, whatever order the events came in.
                    if rank(&p) > rank(o) {
                        *o = p;
                    }
                }
            }
        }
        if at > self.horizon {
            self.horizon = at;
        }
        // The retention window moves a day at a time: prune when it moved, or
        // when this event fell (partly) behind it.
        let today = day_of(self.horizon);
        if today != day_before || day < today - (BITS_DAYS - 1) {
            self.prune();
        }
    }

    /// Prunes and trims a rollup that may have been folded without limits
    /// (one stored before they existed) to what folding keeps.
    pub fn enforce(&mut self, limits: &Limits) {
        self.prune();
        self.keep_within(limits, 0);
    }

    /// Trims every list to its limit, dropping the lowest ranks (oldest, then
    /// smallest key). Ranks only grow as events are folded in, so what is
    /// dropped here never outranks what stays. With `slack` > 0 a list is
    /// only trimmed once it is over its limit by more than 1/`slack` of it
    /// (at least one entry).
    fn keep_within(&mut self, limits: &Limits, slack: usize) {
        let l = |cap: usize| match slack {
            0 => (cap, cap),
            n => (cap, cap.saturating_add((cap / n).max(1))),
        };
        keep_top(&mut self.users, l(limits.users), |a, b| {
            (a.days.newest(), a.key).cmp(&(b.days.newest(), b.key))
        });
        keep_top(&mut self.features, l(limits.features), |a, b| {
            (a.days.newest(), &a.name).cmp(&(b.days.newest(), &b.name))
        });
        keep_newest(&mut self.seats, l(limits.seats));
        keep_top(&mut self.tickets, l(limits.tickets), |a, b| {
            (a.opened_at.max(a.closed_at), a.key).cmp(&(b.opened_at.max(b.closed_at), b.key))
        });
        keep_newest(&mut self.payments, l(limits.payments));
        keep_top(&mut self.usage, l(limits.usage), |a, b| {
            (a.at, &a.metric).cmp(&(b.at, &b.metric))
        });
        keep_newest(&mut self.nps, l(limits.nps));
        keep_top(&mut self.opportunities, l(limits.opportunities), |a, b| {
            (a.at, a.key).cmp(&(b.at, b.key))
        });
    }

    fn mark_user(&mut self, user_id: &str, day: i32) {
        let key = stable_hash(user_id);
        if let Some(u) = upsert_sorted(
            &mut self.users,
            key,
            |u| u.key,
            || UserDays {
                key,
                days: DayBits::default(),
            },
        ) {
            u.days.mark(day);
        }
    }

    fn ticket(&mut self, ticket_id: &str) -> Option<&mut Ticket> {
        let key = stable_hash(ticket_id);
        upsert_sorted(
            &mut self.tickets,
            key,
            |t| t.key,
            || Ticket {
                key,
                opened_at: None,
                priority: None,
                closed_at: None,
            },
        )
    }

    fn payment(&mut self, event: &Event, at: i64, outcome: PaymentOutcome, amount: f64, attempt: u32) {
        let key = stable_hash(&event.id);
        if let Err(i) = self.payments.binary_search_by(|p| (p.at, p.key).cmp(&(at, key))) {
            let event_id = (outcome == PaymentOutcome::RetryFailed).then(|| event.id.clone());
            self.payments.insert(
                i,
                Payment {
                    key,
                    at,
                    outcome,
                    amount,
                    attempt,
                    event_id,
                },
            );
        }
    }

    /// Drops what is older than the retention window before `horizon`'s day.
    /// Pruning works field by field (a day bit, a ticket's open or close) so
    /// the result is the same whichever order the events came in.
    fn prune(&mut self) {
        let today = day_of(self.horizon);
        let cutoff = i64::from(today - RETENTION_DAYS) * DAY_MS;
        let cutoff_day = today - (BITS_DAYS - 1);
        for u in &mut self.users {
            u.days.retain_from(cutoff_day);
        }
        self.users.retain(|u| u.days.bits != 0);
        for f in &mut self.features {
            f.days.retain_from(cutoff_day);
        }
        self.features.retain(|f| f.days.bits != 0);
        self.activity_days.retain_from(cutoff_day);
        // Keep the newest seat point before the cutoff: it says what held then.
        let first_kept = self.seats.iter().rposition(|s| s.at < cutoff).unwrap_or(0);
        self.seats.drain(..first_kept);
        // A ticket with no open or close inside the window is forgotten
        // (an open ticket untouched for that long is treated as abandoned).
        for t in &mut self.tickets {
            if t.opened_at.is_some_and(|o| o < cutoff) {
                t.opened_at = None;
                t.priority = None;
            }
            if t.closed_at.is_some_and(|c| c < cutoff) {
                t.closed_at = None;
            }
        }
        self.tickets.retain(|t| t.opened_at.is_some() || t.closed_at.is_some());
        // Payments and NPS responses are sorted by time.
        let old = self.payments.partition_point(|p| p.at < cutoff);
        self.payments.drain(..old);
        let old = self.nps.partition_point(|p| p.at < cutoff);
        self.nps.drain(..old);
        self.usage.retain(|u| u.at >= cutoff);
        self.opportunities.retain(|o| o.at >= cutoff);
    }

    /// The day of the oldest fact the rollup holds, if any.
    pub fn oldest_day(&self) -> Option<i32> {
        let at = |ms: i64| Some(day_of(ms));
        [
            self.users.iter().filter_map(|u| u.days.oldest()).min(),
            self.features.iter().filter_map(|f| f.days.oldest()).min(),
            self.seats.first().and_then(|p| at(p.at)),
            self.tickets
                .iter()
                .filter_map(|t| t.opened_at.or(t.closed_at))
                .min()
                .and_then(at),
            self.payments.first().and_then(|p| at(p.at)),
            self.usage.iter().map(|u| u.at).min().and_then(at),
            self.nps.first().and_then(|p| at(p.at)),
            self.plan.as_ref().and_then(|p| at(p.at)),
            self.last_activity.and_then(|a| at(a.at)),
            self.activity_days.oldest(),
            self.opportunities.iter().map(|o| o.at).min().and_then(at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The latest seat point at or before `at`.
    pub fn seats_at(&self, at: i64) -> Option<SeatPoint> {
        self.seats.iter().rev().find(|s| s.at <= at).copied()
    }

    /// Active user-days in `[from_day, to_day]`.
    pub fn user_days(&self, from_day: i32, to_day: i32) -> u32 {
        self.users.iter().map(|u| u.days.count_in(from_day, to_day)).sum()
    }

    /// Average daily active users over the last 30 days and over the prior 30,
    /// counting only days since the first activity seen. `None` when the
    /// prior window has fewer than 14 days of history (too new to compare).
    pub fn dau_windows(&self, today: i32) -> Option<(f64, f64)> {
        let first = self.users.iter().filter_map(|u| u.days.oldest()).min()?;
        let prior_from = (today - 59).max(first);
        let prior_days = today - 30 - prior_from + 1;
        if prior_days < 14 {
            return None;
        }
        let last = f64::from(self.user_days(today - 29, today)) / 30.0;
        let prior = f64::from(self.user_days(prior_from, today - 30)) / f64::from(prior_days);
        Some((last, prior))
    }

    /// Distinct users active in `[from_day, to_day]`.
    pub fn distinct_users(&self, from_day: i32, to_day: i32) -> u32 {
        self.users.iter().filter(|u| u.days.any_in(from_day, to_day)).count() as u32
    }

    /// Features used in `[from_day, to_day]`.
    pub fn features_used(&self, from_day: i32, to_day: i32) -> impl Iterator<Item = &str> {
        self.features
            .iter()
            .filter(move |f| f.days.any_in(from_day, to_day))
            .map(|f| f.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ev(id: &str, day: u32, kind: EventKind) -> Event {
        Event {
            id: id.into(),
            customer_id: "c".into(),
            occurred_at: Utc.with_ymd_and_hms(2026, 10, day, 12, 0, 0).single().expect("time"),
            kind,
        }
    }

    fn nps(n: usize, at: DateTime<Utc>) -> Event {
        Event {
            id: format!("n{n}"),
            customer_id: "c".into(),
            occurred_at: at,
            kind: EventKind::NpsResponse { score: (n % 11) as u8 },
        }
    }

    #[test]
    fn many_nps_responses_keep_the_newest_and_a_late_old_one_changes_nothing() {
        let start = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).single().expect("time");
        let n = LIMITS.nps * 3;
        let mut r = Rollup::default();
        for i in 0..n {
            r.apply(&nps(i, start + chrono::Duration::minutes(i as i64)));
        }
        assert_eq!(r.nps.len(), LIMITS.nps);
        let oldest_kept = start + chrono::Duration::minutes((n - LIMITS.nps) as i64);
        assert_eq!(r.nps.first().map(|p| p.at), Some(ms(oldest_kept)));
        // A response older than every kept one, arriving late, evicts nothing
        // and is not kept; one sent again changes nothing.
        let before = r.clone();
        r.apply(&nps(n, start - chrono::Duration::days(1)));
        r.apply(&nps(n - 1, start + chrono::Duration::minutes(n as i64 - 1)));
        assert_eq!(r, before);
        // A late one newer than the oldest kept takes its place.
        r.apply(&nps(n + 1, oldest_kept + chrono::Duration::seconds(30)));
        assert_eq!(r.nps.len(), LIMITS.nps);
        assert_eq!(
            r.nps.first().map(|p| p.at),
            Some(ms(oldest_kept + chrono::Duration::seconds(30)))
        );
    }

    #[test]
    fn an_event_older_than_the_retention_window_is_not_kept() {
        let mut r = Rollup::default();
        r.apply(&ev("new", 20, EventKind::NpsResponse { score: 9 }));
        let mut old = ev("old", 20, EventKind::NpsResponse { score: 0 });
        old.occurred_at -= chrono::Duration::days(i64::from(RETENTION_DAYS) + 1);
        let before = r.clone();
        r.apply(&old);
        assert_eq!(r, before);
    }

    #[test]
    fn a_full_list_keeps_the_most_recently_active_keys() {
        let mut r = Rollup::default();
        let limits = Limits { users: 2, ..LIMITS };
        let active = |r: &mut Rollup, user: &str, day: u32| {
            r.apply_within(
                &ev(
                    &format!("{user}@{day}"),
                    day,
                    EventKind::UserActive { user_id: user.into() },
                ),
                &limits,
            )
        };
        active(&mut r, "a", 3);
        active(&mut r, "b", 5);
        active(&mut r, "c", 1);
        let kept = |r: &Rollup| r.users.iter().map(|u| u.key).collect::<Vec<_>>();
        let mut want = vec![stable_hash("a"), stable_hash("b")];
        want.sort();
        assert_eq!(kept(&r), want, "c was active before both: it is not kept");
        active(&mut r, "c", 9);
        let mut want = vec![stable_hash("b"), stable_hash("c")];
        want.sort();
        assert_eq!(kept(&r), want, "c is now the most recent: a makes room");
    }

    #[test]
    fn day_bits_count_and_shift() {
        let mut b = DayBits::default();
        b.mark(100);
        b.mark(90);
        b.mark(100);
        assert_eq!(b.count_in(0, 200), 2);
        b.mark(300);
        assert_eq!(b.count_in(0, 200), 0);
        assert_eq!(b.newest(), Some(300));
        assert_eq!(b.oldest(), Some(300));
        b.mark(250);
        assert_eq!(b.oldest(), Some(250));
    }

    #[test]
    fn a_reopened_ticket_is_open_again() {
        let mut r = Rollup::default();
        r.apply(&ev(
            "e1",
            2,
            EventKind::TicketOpened {
                ticket_id: "t".into(),
                priority: TicketPriority::Low,
            },
        ));
        r.apply(&ev("e2", 3, EventKind::TicketClosed { ticket_id: "t".into() }));
        r.apply(&ev(
            "e3",
            4,
            EventKind::TicketOpened {
                ticket_id: "t".into(),
                priority: TicketPriority::Urgent,
            },
        ));
        assert!(r.tickets[0].is_open_at(i64::MAX));
        assert_eq!(r.tickets[0].priority, Some(TicketPriority::Urgent));
    }

    #[test]
    fn ticket_close_before_open_still_closes() {
        let close = ev("e2", 3, EventKind::TicketClosed { ticket_id: "t".into() });
        let open = ev(
            "e1",
            2,
            EventKind::TicketOpened {
                ticket_id: "t".into(),
                priority: TicketPriority::High,
            },
        );
        let mut a = Rollup::default();
        a.apply(&close);
        a.apply(&open);
        let mut b = Rollup::default();
        b.apply(&open);
        b.apply(&close);
        assert_eq!(a, b);
        assert!(!a.tickets[0].is_open_at(i64::MAX));
    }
}
