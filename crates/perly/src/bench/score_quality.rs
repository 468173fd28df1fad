//! `perly bench score-quality`: how well the health score predicts churn.
//!
//! A simulated population ([`simulate`]) whose hidden health drives the
//! events Perly sees and whether each customer churns in the 30 days after
//! "now". Each customer's events are folded into a [`Rollup`] with
//! [`Rollup::apply_all`] (what ingest does) and scored with Perly's own
//! [`scoring::score`] under the default [`Scorecard`], once, at "now", with
//! no previous risk level (so no band hysteresis), the way a first pass of
//! the rescoring worker scores a customer. Nothing touches a database: this
//! measures the scoring, not the plumbing.
//!
//! Reported ([`report`]): the AUC of (100 − score) for churn, exact from
//! ranks with ties counted half, for all scored customers and per data
//! coverage segment, each next to its ceiling: the AUC of the simulator's
//! own churn probability on the same customers (churn is drawn at random
//! from that probability, so no score can rank better on average); and the
//! churn rate per risk level, with rows for customers scored without a level
//! ("not enough data yet") and customers with no score at all.
//!
//! "Now" is a fixed instant so a seed always gives the same figures.

mod auc;
mod report;
mod simulate;

use std::time::Instant;

use chrono::{DateTime, TimeZone, Utc};
use perly_domain::risk::RiskLevel;
use perly_domain::rollup::Rollup;
use perly_domain::scorecard::Scorecard;
use perly_domain::scoring::{self, Score};

use report::{Band, Observation, Report, RunInfo};

#[derive(Debug, Clone, clap::Args)]
pub struct ScoreQualityArgs {
    /// Simulated customers.
    #[arg(long, default_value_t = 5_000)]
    pub customers: usize,
    /// Seed of the simulation: the same seed gives the same population.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The instant the simulated customers are scored at.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0)
        .single()
        .unwrap_or(DateTime::UNIX_EPOCH)
}

/// The risk level a score puts a customer in; `None` is "not enough data
/// yet" (the coverage rule of `perly_domain::scoring`).
fn risk_level(score: &Score) -> Option<RiskLevel> {
    score.risk_level
}

fn band(score: Option<&Score>) -> Band {
    match score {
        None => Band::NoScore,
        Some(s) => risk_level(s).map_or(Band::NotEnoughData, Band::Risk),
    }
}

/// Simulates and scores `customers` customers (pure: `now` is an argument).
/// Returns the observations and how many events were folded.
fn observe(seed: u64, customers: usize, now: DateTime<Utc>) -> (Vec<Observation>, usize) {
    let card = Scorecard::default();
    let mut events = 0;
    let observations = (0..customers)
        .map(|i| {
            let c = simulate::customer(seed, i);
            let evs = simulate::events(seed, &c, now);
            events += evs.len();
            let mut rollup = Rollup::default();
            rollup.apply_all(&evs);
            let score = scoring::score(&rollup, &c.facts(), &card, None, now);
            Observation {
                churned: c.churns,
                churn_probability: c.churn_probability,
                score: score.as_ref().map(|s| s.score),
                band: band(score.as_ref()),
                measures_used: score.as_ref().map_or(0, |s| s.coverage.used),
                history_days: c.history_days(),
            }
        })
        .collect();
    (observations, events)
}

pub fn run(args: ScoreQualityArgs) -> anyhow::Result<()> {
    let now = now();
    let started = Instant::now();
    let (observations, events) = observe(args.seed, args.customers, now);
    let report = Report::build(
        &observations,
        RunInfo {
            seed: args.seed,
            now: now.to_rfc3339(),
            events,
            seconds: started.elapsed().as_secs_f64(),
        },
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_population_is_scored_the_same_way_twice_and_only_the_unscored_are_no_score() {
        let (a, events) = observe(9, 60, now());
        let (b, _) = observe(9, 60, now());
        assert_eq!(a, b);
        assert!(events > 0);
        assert!(a.iter().any(|o| o.score.is_some()), "some customers are scored");
        for o in &a {
            assert_eq!(o.score.is_none(), o.band == Band::NoScore, "{o:?}");
        }
    }
}
