//! Risk levels and the bands that map a score to one, with hysteresis so a
//! score wobbling around a band edge does not flip the level back and forth.

use serde::{Deserialize, Serialize};

/// Churn-risk level, ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RiskLevel {
    Low,
    Medium,
    High,
    Critical,
}

impl RiskLevel {
    pub const ALL: [RiskLevel; 4] = [Self::Low, Self::Medium, Self::High, Self::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    /// Capitalised word for messages ("High").
    pub fn label(self) -> &'static str {
        match self {
            Self::Low => "Low",
            Self::Medium => "Medium",
            Self::High => "High",
            Self::Critical => "Critical",
        }
    }

    /// High and critical are "at risk".
    pub fn is_at_risk(self) -> bool {
        self >= Self::High
    }
}

impl std::str::FromStr for RiskLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "low" => Ok(Self::Low),
            "medium" => Ok(Self::Medium),
            "high" => Ok(Self::High),
            "critical" => Ok(Self::Critical),
            other => Err(format!(
                "unknown risk level `{other}`; expected low, medium, high or critical"
            )),
        }
    }
}

impl std::fmt::Display for RiskLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lowest score of each band; below `high` is critical.
/// Defaults: 75–100 low, 50–74 medium, 25–49 high, 0–24 critical.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RiskBands {
    /// Scores at or above are low risk (100 >= low > medium > high >= 0).
    #[schema(minimum = 0, maximum = 100)]
    pub low: f64,
    #[schema(minimum = 0, maximum = 100)]
    pub medium: f64,
    #[schema(minimum = 0, maximum = 100)]
    pub high: f64,
    /// Points a score must move past a band's edge before it leaves the band (0–10).
    #[schema(minimum = 0, maximum = 10)]
    pub hysteresis: f64,
}

impl Default for RiskBands {
    fn default() -> Self {
        Self {
            low: 75.0,
            medium: 50.0,
            high: 25.0,
            hysteresis: 2.0,
        }
    }
}

impl RiskBands {
    /// The band a score falls in, ignoring history.
    pub fn level(&self, score: f64) -> RiskLevel {
        if score >= self.low {
            RiskLevel::Low
        } else if score >= self.medium {
            RiskLevel::Medium
        } else if score >= self.high {
            RiskLevel::High
        } else {
            RiskLevel::Critical
        }
    }

    /// The neutral prior a measure without data counts at: the middle of the
    /// medium band (62.5 with the default bands).
    pub fn neutral(&self) -> f64 {
        (self.low + self.medium) / 2.0
    }

    /// The score range `[lo, hi)` of a band.
    fn range(&self, level: RiskLevel) -> (f64, f64) {
        match level {
            RiskLevel::Low => (self.low, f64::INFINITY),
            RiskLevel::Medium => (self.medium, self.low),
            RiskLevel::High => (self.high, self.medium),
            RiskLevel::Critical => (f64::NEG_INFINITY, self.high),
        }
    }

    /// The level for `score` given the previous level: the previous band holds
    /// until the score is more than `hysteresis` points outside it.
    pub fn level_with_hysteresis(&self, score: f64, previous: Option<RiskLevel>) -> RiskLevel {
        let raw = self.level(score);
        match previous {
            Some(prev) if prev != raw => {
                let (lo, hi) = self.range(prev);
                if score >= lo - self.hysteresis && score < hi + self.hysteresis {
                    prev
                } else {
                    raw
                }
            }
            _ => raw,
        }
    }

    /// Checks the bands are ordered and inside 0–100.
    pub fn validate(&self) -> Result<(), String> {
        let ok = (0.0..=100.0).contains(&self.low)
            && (0.0..=100.0).contains(&self.medium)
            && (0.0..=100.0).contains(&self.high)
            && self.low > self.medium
            && self.medium > self.high;
        if !ok {
            return Err("bands must satisfy 100 >= low > medium > high >= 0".into());
        }
        if !(0.0..=10.0).contains(&self.hysteresis) {
            return Err("hysteresis must be between 0 and 10 points".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(100.0, RiskLevel::Low)]
    #[case(75.0, RiskLevel::Low)]
    #[case(74.9, RiskLevel::Medium)]
    #[case(50.0, RiskLevel::Medium)]
    #[case(49.0, RiskLevel::High)]
    #[case(25.0, RiskLevel::High)]
    #[case(24.0, RiskLevel::Critical)]
    #[case(0.0, RiskLevel::Critical)]
    fn default_bands_match_the_design(#[case] score: f64, #[case] level: RiskLevel) {
        assert_eq!(RiskBands::default().level(score), level);
    }

    #[test]
    fn a_score_wobbling_at_an_edge_keeps_its_band() {
        let b = RiskBands::default();
        // In high (49), wobbling up to 51 stays high; 52 leaves.
        assert_eq!(b.level_with_hysteresis(51.0, Some(RiskLevel::High)), RiskLevel::High);
        assert_eq!(b.level_with_hysteresis(52.0, Some(RiskLevel::High)), RiskLevel::Medium);
        // In medium, dipping to 48 stays medium; 47.9 leaves.
        assert_eq!(
            b.level_with_hysteresis(48.0, Some(RiskLevel::Medium)),
            RiskLevel::Medium
        );
        assert_eq!(b.level_with_hysteresis(47.9, Some(RiskLevel::Medium)), RiskLevel::High);
        // A big jump goes straight to the raw band.
        assert_eq!(b.level_with_hysteresis(10.0, Some(RiskLevel::Low)), RiskLevel::Critical);
    }
}
