//! What `perly bench score-quality` reports: the AUC per segment and the
//! churn rate per risk level, as a table or as JSON.

use perly_domain::risk::RiskLevel;
use serde::Serialize;

use super::auc::auc;

/// Usage trend needs this many days of history (30 + 14 to compare against).
pub const ESTABLISHED_DAYS: u32 = 44;

/// The row of the risk table a customer falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Band {
    Risk(RiskLevel),
    /// Scored, but with too little data for a risk level.
    NotEnoughData,
    /// No measure had any data.
    NoScore,
}

impl Band {
    const ROWS: [Band; 6] = [
        Band::Risk(RiskLevel::Low),
        Band::Risk(RiskLevel::Medium),
        Band::Risk(RiskLevel::High),
        Band::Risk(RiskLevel::Critical),
        Band::NotEnoughData,
        Band::NoScore,
    ];

    fn name(self) -> &'static str {
        match self {
            Band::Risk(l) => l.as_str(),
            Band::NotEnoughData => "not enough data yet",
            Band::NoScore => "no score",
        }
    }
}

/// One simulated customer as scored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    pub churned: bool,
    /// The simulator's churn probability (the ceiling's predictor).
    pub churn_probability: f64,
    pub score: Option<i64>,
    pub band: Band,
    pub measures_used: usize,
    pub history_days: u32,
}

/// How the run was set up.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub seed: u64,
    pub now: String,
    pub events: usize,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SegmentAuc {
    pub segment: &'static str,
    pub customers: usize,
    pub churned: usize,
    /// `None` when the segment lacks churners or stayers.
    pub auc: Option<f64>,
    pub standard_error: Option<f64>,
    /// The AUC of the true churn probability on the same customers.
    pub ceiling_auc: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LevelRow {
    pub level: &'static str,
    pub customers: usize,
    pub churned: usize,
    pub churn_rate: Option<f64>,
    /// Share of all churners in this row.
    pub share_of_churners: f64,
    /// The mean of the simulator's churn probability in this row: the churn
    /// rate to expect without the luck of the draw.
    pub expected_churn_rate: Option<f64>,
    /// Customers in this row with less than [`ESTABLISHED_DAYS`] of history.
    pub new_customers: usize,
    /// The churn rate of the others.
    pub established_churn_rate: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub run: RunInfo,
    pub customers: usize,
    pub churned: usize,
    pub churn_rate: f64,
    /// AUC of (100 − score) for churn in the next 30 days, by segment; the
    /// last row is the hidden health itself (the ceiling).
    pub auc: Vec<SegmentAuc>,
    pub risk_levels: Vec<LevelRow>,
    /// Whether the churn rate rises from low to critical (levels with customers).
    pub churn_rises_with_risk: bool,
}

fn rate(obs: &[&Observation]) -> Option<f64> {
    (!obs.is_empty()).then(|| obs.iter().filter(|o| o.churned).count() as f64 / obs.len() as f64)
}

/// The AUC of (100 − score) over the scored customers of a segment, and its ceiling.
fn segment(name: &'static str, obs: &[&Observation]) -> SegmentAuc {
    let scored: Vec<&Observation> = obs.iter().copied().filter(|o| o.score.is_some()).collect();
    let pairs = |predictor: &dyn Fn(&Observation) -> f64| -> Vec<(f64, bool)> {
        scored.iter().map(|o| (predictor(o), o.churned)).collect()
    };
    let a = auc(&pairs(&|o| 100.0 - o.score.unwrap_or(0) as f64));
    let ceiling = auc(&pairs(&|o| o.churn_probability));
    SegmentAuc {
        segment: name,
        customers: scored.len(),
        churned: scored.iter().filter(|o| o.churned).count(),
        auc: a.map(|a| a.auc),
        standard_error: a.map(|a| a.standard_error),
        ceiling_auc: ceiling.map(|a| a.auc),
    }
}

impl Report {
    pub fn build(obs: &[Observation], run: RunInfo) -> Report {
        let all: Vec<&Observation> = obs.iter().collect();
        let churned = obs.iter().filter(|o| o.churned).count();
        let within = |keep: &dyn Fn(&Observation) -> bool| all.iter().copied().filter(|o| keep(o)).collect::<Vec<_>>();
        let auc = vec![
            segment("all scored", &all),
            segment("full data (6-8 of 8 measures)", &within(&|o| o.measures_used >= 6)),
            segment(
                "partial data (4-5 measures)",
                &within(&|o| (4..=5).contains(&o.measures_used)),
            ),
            segment("sparse data (1-3 measures)", &within(&|o| o.measures_used <= 3)),
            segment(
                "established (>= 44 days of history)",
                &within(&|o| o.history_days >= ESTABLISHED_DAYS),
            ),
            segment(
                "new (< 44 days of history)",
                &within(&|o| o.history_days < ESTABLISHED_DAYS),
            ),
        ];
        let risk_levels: Vec<LevelRow> = Band::ROWS
            .iter()
            .map(|band| {
                let rows = within(&|o| o.band == *band);
                let c = rows.iter().filter(|o| o.churned).count();
                let established: Vec<&Observation> = rows
                    .iter()
                    .copied()
                    .filter(|o| o.history_days >= ESTABLISHED_DAYS)
                    .collect();
                LevelRow {
                    level: band.name(),
                    customers: rows.len(),
                    churned: c,
                    churn_rate: rate(&rows),
                    expected_churn_rate: (!rows.is_empty())
                        .then(|| rows.iter().map(|o| o.churn_probability).sum::<f64>() / rows.len() as f64),
                    share_of_churners: if churned == 0 { 0.0 } else { c as f64 / churned as f64 },
                    new_customers: rows.len() - established.len(),
                    established_churn_rate: rate(&established),
                }
            })
            .collect();
        let rates: Vec<f64> = risk_levels
            .iter()
            .take(RiskLevel::ALL.len())
            .filter_map(|r| r.churn_rate)
            .collect();
        let churn_rises_with_risk = rates.windows(2).all(|w| w[0] < w[1]);
        Report {
            run,
            customers: obs.len(),
            churned,
            churn_rate: if obs.is_empty() {
                0.0
            } else {
                churned as f64 / obs.len() as f64
            },
            auc,
            risk_levels,
            churn_rises_with_risk,
        }
    }

    /// The readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let pct = |x: f64| format!("{:.1}%", x * 100.0);
        out += &format!(
            "{} simulated customers (seed {}), now = {}; {} events folded and scored in {:.1} s\n",
            self.customers, self.run.seed, self.run.now, self.run.events, self.run.seconds
        );
        out += &format!(
            "churned in the next 30 days: {} ({})\n\n",
            self.churned,
            pct(self.churn_rate)
        );
        out += "AUC of (100 - score) for churn in the next 30 days (ties count half);\n";
        out += "ceiling: AUC of the simulator's own churn probability on the same customers\n";
        out += &format!(
            "{:<38} {:>9} {:>8} {:>7} {:>8} {:>8}\n",
            "segment", "customers", "churned", "AUC", "±1.96 SE", "ceiling"
        );
        let num = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.3}"));
        for s in &self.auc {
            out += &format!(
                "{:<38} {:>9} {:>8} {:>7} {:>8} {:>8}\n",
                s.segment,
                s.customers,
                s.churned,
                num(s.auc),
                num(s.standard_error.map(|se| 1.96 * se)),
                num(s.ceiling_auc)
            );
        }
        out += "\nChurn in the next 30 days by risk level\n";
        out += &format!(
            "{:<22} {:>9} {:>8} {:>10} {:>9} {:>9} {:>10} {:>16}\n",
            "risk level",
            "customers",
            "churned",
            "churn rate",
            "expected",
            "of churn",
            "new (<44d)",
            "rate w/o the new"
        );
        for r in &self.risk_levels {
            out += &format!(
                "{:<22} {:>9} {:>8} {:>10} {:>9} {:>9} {:>10} {:>16}\n",
                r.level,
                r.customers,
                r.churned,
                r.churn_rate.map_or("-".into(), pct),
                r.expected_churn_rate.map_or("-".into(), pct),
                pct(r.share_of_churners),
                r.new_customers,
                r.established_churn_rate.map_or("-".into(), pct)
            );
        }
        out += &format!(
            "churn rate rises from low to critical: {}\n",
            if self.churn_rises_with_risk { "yes" } else { "NO" }
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(score: Option<i64>, band: Band, churned: bool) -> Observation {
        Observation {
            churned,
            churn_probability: 0.5,
            score,
            band,
            measures_used: 7,
            history_days: 90,
        }
    }

    #[test]
    fn rows_count_customers_and_churn_per_level() {
        let low = Band::Risk(RiskLevel::Low);
        let critical = Band::Risk(RiskLevel::Critical);
        let r = Report::build(
            &[
                obs(Some(90), low, false),
                obs(Some(80), low, false),
                obs(Some(10), critical, true),
                obs(Some(20), critical, false),
                obs(None, Band::NoScore, true),
            ],
            RunInfo {
                seed: 1,
                now: String::new(),
                events: 0,
                seconds: 0.0,
            },
        );
        let row = |name: &str| r.risk_levels.iter().find(|l| l.level == name).expect("row");
        assert_eq!((row("low").customers, row("low").churned), (2, 0));
        assert_eq!(row("critical").churn_rate, Some(0.5));
        assert_eq!(row("no score").churned, 1);
        assert_eq!(row("not enough data yet").churn_rate, None);
        assert!(r.churn_rises_with_risk);
        assert_eq!(r.auc[0].customers, 4, "unscored customers are not ranked");
        assert_eq!(r.auc[0].auc, Some(1.0));
    }
}
