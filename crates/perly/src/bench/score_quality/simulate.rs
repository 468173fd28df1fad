//! The simulated population of `perly bench score-quality`: customers whose
//! hidden health drives what Perly sees, and whether they churn.
//!
//! # Hidden health
//!
//! Each customer has a latent value `z` per day over the last
//! [`HISTORY_DAYS`] days; its health is `h = sigmoid(z)` in 0–1. `z` follows
//! one of three trajectories plus AR(1) noise (φ 0.93, innovations of
//! sd 0.12, so day-to-day wobble with runs of a few weeks):
//! - stable (60%): `z` around N(1.3, 0.9), so most are healthy, some are not;
//! - declining (25%): healthy at first (N(1.3, 0.7)), then from an onset
//!   0–80 days ago `z` falls by 0.02–0.07 a day;
//! - recovering (15%): unhealthy at first (N(−0.8, 0.7)), then from an onset
//!   10–80 days ago `z` rises by 0.015–0.05 a day.
//!
//! # Churn
//!
//! Churn in the 30 days after "now" is drawn once with
//! `logit p = −4 + 6·(0.6 − h_now) − 3·Δh30 + contract + plan`, where `Δh30`
//! is the change of the noise-free trajectory over the last 30 days (a
//! decline raises the odds), `contract` is +1 for an annual contract renewing
//! within 30 days, −1 for one renewing later (locked in) and 0 for monthly
//! contracts, and `plan` is +0.3 on the starter plan. Healthy customers still
//! churn now and then (≈0.5–1% a month: budget cuts, acquisitions) and
//! unhealthy ones often stay: health explains churn, it does not decide it.
//! The AUC of `p` itself is the ceiling any score can reach on average.
//!
//! # What Perly sees
//!
//! Size is a seat count from a log-normal (median 12, 1–400); the plan
//! follows size (starter < 10 seats, pro < 60, enterprise) and MRR is seats ×
//! the plan's price. Every source below is driven by the day's health `h`:
//! - product usage (92% of customers): seat holders = purchased seats ×
//!   utilisation (0.25 + 0.7·h, ± a per-customer offset); each is active on
//!   a day with probability engagement (0.25–0.85 per customer) ×
//!   (0.15 + 0.85·h), a fifth of that at weekends for most customers, ramping
//!   up over a new customer's first three weeks. Daily active users are thus
//!   relative to size: a small steady customer has steady small usage;
//! - feature use: 8 features, the k-th adopted above a health of
//!   0.1 + 0.1·k, used on a day with probability up to 0.12, less in small
//!   teams;
//! - seat counts (75%, with product usage): weekly `seats_changed`, and the
//!   purchased seats known on the customer record;
//! - support tickets (65% have a helpdesk): opened at a daily rate growing
//!   with (1 − h)² and √seat holders, more often high or urgent when
//!   unhealthy, closed after an exponential time (mean 1.5–9.5 days, longer
//!   when unhealthy), so some are still open at "now";
//! - billing (70%): a monthly charge that fails with probability
//!   0.02 + 0.4·(1 − h)³, retried after 3, 5 and 7 days, each retry
//!   succeeding with probability 0.35 + 0.55·h; unhealthy customers may
//!   downgrade their plan (`plan_changed`);
//! - NPS (45% are surveyed): a response every 60 days on average, the score
//!   10·h + N(0.5, 1.5), clamped to 0–10;
//! - CRM (60%): calls, emails and meetings at a rate growing with size and
//!   shrinking when unhealthy (unhealthy accounts answer less); for annual
//!   contracts, the renewal opportunity (open within 60 days of the
//!   renewal, won when it passed in the last 90 days, left open past its
//!   date more often when unhealthy) and, for very healthy accounts, an
//!   expansion opportunity.
//!
//! # Sparsity
//!
//! 12% of customers are new (1–30 days of history), 10% are 30–90 days old,
//! the rest have the full 90 days. 12% have only one or two kinds of data
//! left after the draws above; a few have none at all (no score). Which
//! sources a customer has does not depend on its health, so every segment
//! has the same churn model.
//!
//! Everything is drawn from a [`StdRng`] seeded from the run's seed and the
//! customer's index (one stream for the hidden state, one for the events),
//! so a population is the same for the same seed and the same customer has
//! the same story whatever `--customers` says.

use chrono::{DateTime, Datelike, Duration, Utc, Weekday};
use perly_domain::event::{ActivityType, Event, EventKind, OpportunityCategory, OpportunityStatus, TicketPriority};
use perly_domain::scoring::CustomerFacts;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Days of history before "now" (day 0 is "now"'s day).
pub const HISTORY_DAYS: usize = 90;
/// Days after "now" in which churn is counted.
pub const CHURN_WINDOW_DAYS: u32 = 30;
const FEATURES: usize = 8;

/// How a customer's hidden health moves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trajectory {
    Stable,
    Declining { onset_days_ago: u32, per_day: f64 },
    Recovering { onset_days_ago: u32, per_day: f64 },
}

/// Which kinds of data a customer sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sources {
    pub product: bool,
    pub seats: bool,
    pub tickets: bool,
    pub billing: bool,
    pub nps: bool,
    pub crm: bool,
}

impl Sources {
    fn count(&self) -> usize {
        [self.product, self.seats, self.tickets, self.billing, self.nps, self.crm]
            .iter()
            .filter(|x| **x)
            .count()
    }
}

/// The contract: renewed every month, or yearly on a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    Monthly,
    /// Days from "now" to the next renewal (0–364).
    Annual {
        renews_in_days: u32,
    },
}

/// One customer's hidden state, what the records say about it, and its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub index: usize,
    pub external_id: String,
    /// Days since the customer started (history covers at most [`HISTORY_DAYS`]).
    pub age_days: u32,
    pub seats_purchased: u32,
    pub plan: &'static str,
    pub mrr: f64,
    pub contract: Contract,
    pub sources: Sources,
    pub trajectory: Trajectory,
    /// Share of days a seat holder is active when fully healthy.
    engagement: f64,
    /// Whether the team works weekdays only (quiet weekends).
    weekday_team: bool,
    /// Per-customer offset of seat utilisation.
    utilisation_offset: f64,
    /// Hidden health by days ago: `health[0]` is now, `health[HISTORY_DAYS]` the oldest.
    pub health: Vec<f64>,
    /// Change of the noise-free health over the last 30 days.
    pub trend_30d: f64,
    pub churn_probability: f64,
    /// Churns within [`CHURN_WINDOW_DAYS`] after now.
    pub churns: bool,
}

impl Customer {
    /// Hidden health now.
    #[cfg(test)]
    pub fn health_now(&self) -> f64 {
        self.health.first().copied().unwrap_or(0.5)
    }

    /// Days of history Perly can have (from the start, up to [`HISTORY_DAYS`]).
    pub fn history_days(&self) -> u32 {
        self.age_days.min(HISTORY_DAYS as u32)
    }

    /// What scoring knows besides events: the customer record.
    pub fn facts(&self) -> CustomerFacts {
        CustomerFacts {
            plan: Some(self.plan.to_owned()),
            seats_purchased: self.sources.seats.then_some(self.seats_purchased),
        }
    }

    fn health_at(&self, days_ago: usize) -> f64 {
        self.health.get(days_ago).copied().unwrap_or(0.5)
    }
}

/// A stream of random numbers for one customer: `stream` 0 is the hidden
/// state, 1 the events.
fn rng_for(seed: u64, index: usize, stream: u64) -> StdRng {
    StdRng::seed_from_u64(splitmix(seed ^ splitmix((index as u64) << 1 | stream)))
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// A normal draw (Box–Muller).
fn normal(rng: &mut StdRng, mean: f64, sd: f64) -> f64 {
    let u1: f64 = 1.0 - rng.gen::<f64>();
    let u2: f64 = rng.gen();
    mean + sd * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn chance(rng: &mut StdRng, p: f64) -> bool {
    rng.gen::<f64>() < p
}

/// The hidden state and outcome of customer `index` (no events: see [`events`]).
pub fn customer(seed: u64, index: usize) -> Customer {
    let mut rng = rng_for(seed, index, 0);
    let age_days = match rng.gen_range(0..100) {
        0..=11 => rng.gen_range(1..30),
        12..=21 => rng.gen_range(30..90),
        _ => rng.gen_range(90..1500),
    };
    let seats_purchased = normal(&mut rng, 12f64.ln(), 1.0).exp().round().clamp(1.0, 400.0) as u32;
    let (plan, price, plan_logit) = match seats_purchased {
        0..=9 => ("starter", 12.0, 0.3),
        10..=59 => ("pro", 25.0, 0.0),
        _ => ("enterprise", 40.0, 0.0),
    };
    let contract = if chance(&mut rng, 0.55) {
        Contract::Annual {
            renews_in_days: rng.gen_range(0..365),
        }
    } else {
        Contract::Monthly
    };
    let sources = sources(&mut rng);

    let trajectory = match rng.gen_range(0..100) {
        0..=59 => Trajectory::Stable,
        60..=84 => Trajectory::Declining {
            onset_days_ago: rng.gen_range(0..=80),
            per_day: rng.gen_range(0.02..0.07),
        },
        _ => Trajectory::Recovering {
            onset_days_ago: rng.gen_range(10..=80),
            per_day: rng.gen_range(0.015..0.05),
        },
    };
    let start = match trajectory {
        Trajectory::Stable => normal(&mut rng, 1.3, 0.9),
        Trajectory::Declining { .. } => normal(&mut rng, 1.3, 0.7),
        Trajectory::Recovering { .. } => normal(&mut rng, -0.8, 0.7),
    };
    let smooth = |days_ago: usize| -> f64 {
        let since = |onset: u32| f64::from(onset).min(HISTORY_DAYS as f64) - days_ago as f64;
        match trajectory {
            Trajectory::Stable => start,
            Trajectory::Declining {
                onset_days_ago,
                per_day,
            } => start - per_day * since(onset_days_ago).max(0.0),
            Trajectory::Recovering {
                onset_days_ago,
                per_day,
            } => (start + per_day * since(onset_days_ago).max(0.0)).min(2.5),
        }
    };
    // AR(1) noise from the oldest day to now, started from its stationary spread.
    let mut noise = normal(&mut rng, 0.0, 0.33);
    let mut health = vec![0.0; HISTORY_DAYS + 1];
    for days_ago in (0..=HISTORY_DAYS).rev() {
        noise = 0.93 * noise + normal(&mut rng, 0.0, 0.12);
        health[days_ago] = sigmoid(smooth(days_ago) + noise);
    }
    let trend_30d = sigmoid(smooth(0)) - sigmoid(smooth(30));
    let health_now = health[0];
    let contract_logit = match contract {
        Contract::Monthly => 0.0,
        Contract::Annual { renews_in_days } if renews_in_days < CHURN_WINDOW_DAYS => 1.0,
        Contract::Annual { .. } => -1.0,
    };
    let logit = -4.0 + 6.0 * (0.6 - health_now) - 3.0 * trend_30d + contract_logit + plan_logit;
    let churn_probability = sigmoid(logit);
    let churns = chance(&mut rng, churn_probability);
    Customer {
        index,
        external_id: format!("sim{index}"),
        age_days,
        seats_purchased,
        plan,
        mrr: f64::from(seats_purchased) * price,
        contract,
        sources,
        trajectory,
        engagement: rng.gen_range(0.25..0.85),
        weekday_team: chance(&mut rng, 0.8),
        utilisation_offset: normal(&mut rng, 0.0, 0.08),
        health,
        trend_30d,
        churn_probability,
        churns,
    }
}

/// Which data a customer sends: each source on its own, then some
/// customers cut down to one or two kinds.
fn sources(rng: &mut StdRng) -> Sources {
    let product = chance(rng, 0.92);
    let mut s = Sources {
        product,
        seats: product && chance(rng, 0.75 / 0.92),
        tickets: chance(rng, 0.65),
        billing: chance(rng, 0.70),
        nps: chance(rng, 0.45),
        crm: chance(rng, 0.60),
    };
    if chance(rng, 0.12) {
        let keep = rng.gen_range(1..=2);
        while s.count() > keep {
            match rng.gen_range(0..6) {
                0 => {
                    s.product = false;
                    s.seats = false;
                }
                1 => s.seats = false,
                2 => s.tickets = false,
                3 => s.billing = false,
                4 => s.nps = false,
                _ => s.crm = false,
            }
        }
    }
    s
}

/// Builds events with ids unique within the customer.
struct Emitter {
    customer: String,
    now: DateTime<Utc>,
    events: Vec<Event>,
}

impl Emitter {
    /// An event `minute` minutes into the working day `days_ago` days before
    /// now (08:00 on "now"'s day is 4 hours before now), never after now.
    fn push(&mut self, days_ago: usize, minute: i64, kind: EventKind) {
        let at = self.at(days_ago, minute).min(self.now);
        self.push_at(at, kind);
    }

    fn push_at(&mut self, at: DateTime<Utc>, kind: EventKind) {
        let n = self.events.len();
        self.events.push(Event {
            id: format!("{}-{n}", self.customer),
            customer_id: self.customer.clone(),
            occurred_at: at,
            kind,
        });
    }

    fn at(&self, days_ago: usize, minute: i64) -> DateTime<Utc> {
        self.now - Duration::days(days_ago as i64) - Duration::hours(4) + Duration::minutes(minute)
    }
}

/// The events Perly receives about `c` up to `now`.
pub fn events(seed: u64, c: &Customer, now: DateTime<Utc>) -> Vec<Event> {
    let mut rng = rng_for(seed, c.index, 1);
    let mut out = Emitter {
        customer: c.external_id.clone(),
        now,
        events: Vec::new(),
    };
    let first = c.history_days().saturating_sub(1) as usize;
    let s = c.sources;
    let mut open_failure: Option<usize> = None;
    let billing_phase = rng.gen_range(0..30usize);
    let seat_phase = rng.gen_range(0..7usize);
    let mut downgraded = false;
    for days_ago in (0..=first).rev() {
        let h = c.health_at(days_ago);
        let day = now - Duration::days(days_ago as i64);
        let weekend = matches!(day.weekday(), Weekday::Sat | Weekday::Sun);
        let pace = if weekend && c.weekday_team { 0.2 } else { 1.0 };
        // A new customer ramps up over its first three weeks.
        let ramp = (f64::from(c.age_days.saturating_sub(days_ago as u32)) / 21.0).clamp(0.3, 1.0);
        let utilisation = (0.25 + 0.7 * h + c.utilisation_offset).clamp(0.05, 1.15) * ramp;
        let holders = ((f64::from(c.seats_purchased) * utilisation).round() as u32).max(1);
        if s.product {
            let p = c.engagement * (0.15 + 0.85 * h) * pace;
            for u in 0..holders {
                if chance(&mut rng, p) {
                    let minute = rng.gen_range(0..600);
                    out.push(
                        days_ago,
                        minute,
                        EventKind::UserActive {
                            user_id: format!("u{u}"),
                        },
                    );
                }
            }
            let team = f64::from(holders) / (f64::from(holders) + 2.0);
            for k in 0..FEATURES {
                let threshold = 0.1 + 0.1 * k as f64;
                if chance(&mut rng, 0.12 * sigmoid((h - threshold) * 12.0) * team * pace) {
                    let minute = rng.gen_range(0..600);
                    out.push(
                        days_ago,
                        minute,
                        EventKind::FeatureUsed {
                            feature: format!("f{k}"),
                            user_id: None,
                        },
                    );
                }
            }
        }
        if s.seats && days_ago % 7 == seat_phase {
            out.push(
                days_ago,
                0,
                EventKind::SeatsChanged {
                    seats_used: holders,
                    seats_purchased: Some(c.seats_purchased),
                },
            );
        }
        if s.tickets {
            let rate = (0.004 + 0.05 * (1.0 - h).powi(2)) * f64::from(holders).sqrt();
            if chance(&mut rng, rate.min(0.9)) {
                ticket(&mut rng, &mut out, days_ago, h);
            }
        }
        if s.billing {
            billing_day(&mut rng, &mut out, c, days_ago, billing_phase, &mut open_failure, h);
            if !downgraded && h < 0.35 && c.plan != "starter" && chance(&mut rng, 0.01) {
                downgraded = true;
                out.push(
                    days_ago,
                    60,
                    EventKind::PlanChanged {
                        plan: "starter".into(),
                        mrr: Some(f64::from(c.seats_purchased) * 12.0),
                    },
                );
            }
        }
        if s.nps && chance(&mut rng, 1.0 / 60.0) {
            let score = normal(&mut rng, 10.0 * h + 0.5, 1.5).round().clamp(0.0, 10.0) as u8;
            out.push(days_ago, 300, EventKind::NpsResponse { score });
        }
        if s.crm {
            let size = (f64::from(c.seats_purchased) / 50.0).min(1.0);
            if chance(&mut rng, (0.02 + 0.06 * size) * (0.4 + 0.6 * h) * pace) {
                let activity_type = match rng.gen_range(0..4) {
                    0 | 1 => ActivityType::Email,
                    2 => ActivityType::Call,
                    _ => ActivityType::Meeting,
                };
                out.push(
                    days_ago,
                    120,
                    EventKind::CrmActivity {
                        activity_type,
                        subject: None,
                    },
                );
            }
        }
    }
    if s.crm {
        opportunities(&mut rng, &mut out, c, first);
    }
    out.events
}

fn ticket(rng: &mut StdRng, out: &mut Emitter, days_ago: usize, h: f64) {
    let unhealthy = 1.0 - h;
    let u: f64 = rng.gen();
    let priority = if u < 0.03 + 0.2 * unhealthy {
        TicketPriority::Urgent
    } else if u < 0.13 + 0.45 * unhealthy {
        TicketPriority::High
    } else if u < 0.33 + 0.45 * unhealthy {
        TicketPriority::Low
    } else {
        TicketPriority::Normal
    };
    let ticket_id = format!("t{}", out.events.len());
    let minute = rng.gen_range(0..600);
    out.push(
        days_ago,
        minute,
        EventKind::TicketOpened {
            ticket_id: ticket_id.clone(),
            priority,
        },
    );
    // Exponential time to close; still open if that is after now.
    let mean_minutes = (1.5 + 8.0 * unhealthy) * 1440.0;
    let after = (-(1.0 - rng.gen::<f64>()).ln() * mean_minutes) as i64;
    let closed_at = out.at(days_ago, minute) + Duration::minutes(after.max(1));
    if closed_at <= out.now {
        out.push_at(closed_at, EventKind::TicketClosed { ticket_id });
    }
}

/// A monthly charge on the customer's billing day, and retries of a failed
/// one after 3, 5 and 7 days.
fn billing_day(
    rng: &mut StdRng,
    out: &mut Emitter,
    c: &Customer,
    days_ago: usize,
    phase: usize,
    open_failure: &mut Option<usize>,
    h: f64,
) {
    let amount = c.mrr;
    if let Some(failed_days_ago) = *open_failure {
        let attempt = match failed_days_ago - days_ago {
            3 => 1,
            5 => 2,
            7 => 3,
            _ => 0,
        };
        if attempt > 0 {
            if chance(rng, 0.35 + 0.55 * h) {
                out.push(days_ago, 30, EventKind::PaymentSucceeded { amount });
                *open_failure = None;
            } else {
                out.push(
                    days_ago,
                    30,
                    EventKind::BillingRetryFailed {
                        amount,
                        attempt,
                        next_retry_at: None,
                    },
                );
                if attempt == 3 {
                    *open_failure = None;
                }
            }
        }
    }
    if days_ago % 30 == phase {
        if chance(rng, 0.02 + 0.4 * (1.0 - h).powi(3)) {
            out.push(
                days_ago,
                30,
                EventKind::PaymentFailed {
                    amount,
                    reason: Some("card_declined".into()),
                },
            );
            *open_failure = Some(days_ago);
        } else {
            out.push(days_ago, 30, EventKind::PaymentSucceeded { amount });
        }
    }
}

/// The renewal opportunity of an annual contract near its renewal, and an
/// expansion opportunity for very healthy accounts.
fn opportunities(rng: &mut StdRng, out: &mut Emitter, c: &Customer, first: usize) {
    let now = out.now;
    let day = move |days_ago: i64| (now - Duration::days(days_ago)).date_naive();
    if let Contract::Annual { renews_in_days } = c.contract {
        let renews_in = i64::from(renews_in_days);
        let renewed_days_ago = 365 - renews_in;
        let renewal = |status, close_in: i64| EventKind::CrmOpportunity {
            opportunity_id: format!("renewal-{close_in}"),
            status,
            category: OpportunityCategory::Renewal,
            amount: Some(c.mrr * 12.0),
            close_date: Some(day(-close_in)),
            stage: None,
        };
        if renews_in <= 60 {
            // Opened 60 days before the renewal (or when the history starts).
            let opened = (60 - renews_in).min(first as i64).max(0) as usize;
            out.push(opened, 90, renewal(OpportunityStatus::Open, renews_in));
        } else if renewed_days_ago <= 90 && (renewed_days_ago as usize) <= first {
            let at = renewed_days_ago as usize;
            let h = c.health_at(at);
            // Unhealthy renewals often sit open past their date.
            let status = if chance(rng, 0.5 * (1.0 - h).powi(2)) {
                OpportunityStatus::Open
            } else {
                OpportunityStatus::Won
            };
            out.push(at, 90, renewal(status, -renewed_days_ago));
        }
    }
    let h = c.health_at(first.min(30));
    if h > 0.85 && chance(rng, 0.15) {
        let at = rng.gen_range(0..=first.min(90));
        let status = if chance(rng, 0.5) {
            OpportunityStatus::Won
        } else {
            OpportunityStatus::Open
        };
        out.push(
            at,
            100,
            EventKind::CrmOpportunity {
                opportunity_id: "expansion".into(),
                status,
                category: OpportunityCategory::Expansion,
                amount: Some(c.mrr * 3.0),
                close_date: Some(day(at as i64 - 30)),
                stage: None,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).single().expect("time")
    }

    #[test]
    fn the_same_seed_gives_the_same_population() {
        for i in 0..40 {
            let (a, b) = (customer(7, i), customer(7, i));
            assert_eq!(a, b);
            assert_eq!(events(7, &a, now()), events(7, &b, now()));
        }
        let differs = (0..40).any(|i| customer(7, i) != customer(8, i));
        assert!(differs, "another seed gives another population");
    }

    #[test]
    fn churn_depends_on_hidden_health() {
        let mut population: Vec<Customer> = (0..5_000).map(|i| customer(3, i)).collect();
        population.sort_by(|a, b| a.health_now().total_cmp(&b.health_now()));
        let decile = population.len() / 10;
        let rate = |cs: &[Customer]| cs.iter().filter(|c| c.churns).count() as f64 / cs.len() as f64;
        let worst = rate(&population[..decile]);
        let best = rate(&population[population.len() - decile..]);
        assert!(worst > best + 0.1, "worst decile {worst:.3} vs best {best:.3}");
    }

    #[test]
    fn events_stay_within_the_history_and_before_now() {
        for i in 0..40 {
            let c = customer(5, i);
            let oldest = now() - Duration::days(i64::from(c.history_days()));
            for e in events(5, &c, now()) {
                assert!(e.occurred_at <= now(), "{e:?}");
                assert!(e.occurred_at >= oldest, "{e:?} before the customer's history");
            }
        }
    }
}
