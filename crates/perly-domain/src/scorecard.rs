//! The per-workspace scorecard: which measures count, how much, where each
//! measure's 0 and 100 lie, the risk bands and the alert thresholds. Defaults
//! work out of the box; admins edit them through `PUT /api/v1/scorecard`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::risk::RiskBands;
use crate::FieldError;

/// The eight measures of the health score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MeasureKind {
    /// Average daily active users, last 30 days against the prior 30 (ratio).
    UsageTrend,
    /// Seats used / seats purchased.
    SeatUtilisation,
    /// Distinct features used in the last 30 days.
    FeatureAdoption,
    /// Failed payments and retries in the last 30 days.
    BillingHealth,
    /// Open tickets weighted by priority, plus recent ticket volume.
    SupportLoad,
    /// Days since the last CRM activity (call, email, meeting).
    RelationshipRecency,
    /// Recent NPS responses, decaying toward neutral with age.
    Nps,
    /// Renewal and expansion opportunities in the CRM: won, open, lost (0–1).
    RenewalOutlook,
}

impl MeasureKind {
    pub const ALL: [MeasureKind; 8] = [
        Self::UsageTrend,
        Self::SeatUtilisation,
        Self::FeatureAdoption,
        Self::BillingHealth,
        Self::SupportLoad,
        Self::RelationshipRecency,
        Self::Nps,
        Self::RenewalOutlook,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::UsageTrend => "usage_trend",
            Self::SeatUtilisation => "seat_utilisation",
            Self::FeatureAdoption => "feature_adoption",
            Self::BillingHealth => "billing_health",
            Self::SupportLoad => "support_load",
            Self::RelationshipRecency => "relationship_recency",
            Self::Nps => "nps",
            Self::RenewalOutlook => "renewal_outlook",
        }
    }

    /// The measure's name in words ("usage trend").
    pub fn label(self) -> &'static str {
        match self {
            Self::UsageTrend => "usage trend",
            Self::SeatUtilisation => "seat utilisation",
            Self::FeatureAdoption => "feature adoption",
            Self::BillingHealth => "billing health",
            Self::SupportLoad => "support load",
            Self::RelationshipRecency => "relationship recency",
            Self::Nps => "NPS",
            Self::RenewalOutlook => "renewal outlook",
        }
    }

    /// Plain words for coverage notes ("no NPS responses").
    pub fn missing_data(self) -> &'static str {
        match self {
            Self::UsageTrend => "no product usage (user_active events)",
            Self::SeatUtilisation => "no seat counts (seats_purchased and seats_changed)",
            Self::FeatureAdoption => "no feature usage (feature_used events)",
            Self::BillingHealth => "no billing events in the last 180 days",
            Self::SupportLoad => "no support tickets",
            Self::RelationshipRecency => "no CRM activity (calls, emails, meetings)",
            Self::Nps => "no NPS responses in the last 180 days",
            Self::RenewalOutlook => "no CRM opportunities (renewals, expansions) changed in the last 180 days",
        }
    }
}

/// How one measure counts: its weight and the raw values that map to 0 and 100
/// (linear in between, clamped; `bad` may be above `good` when less is better).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MeasureConfig {
    /// 0–1000; at least one measure above 0.
    #[schema(minimum = 0, maximum = 1000)]
    pub weight: f64,
    pub bad: f64,
    pub good: f64,
}

impl MeasureConfig {
    /// Maps a raw value to 0–100.
    pub fn points(&self, raw: f64) -> f64 {
        if (self.good - self.bad).abs() < f64::EPSILON {
            return if raw >= self.good { 100.0 } else { 0.0 };
        }
        let t = (raw - self.bad) / (self.good - self.bad);
        (t.clamp(0.0, 1.0)) * 100.0
    }
}

/// Thresholds of the alert kinds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertThresholds {
    /// Health score drop: points below the 7-day high (default 10).
    #[schema(exclusive_minimum = 0, maximum = 100)]
    pub drop_points: f64,
    /// Expansion: seats used / purchased at or above this (default 0.8)...
    #[schema(exclusive_minimum = 0, maximum = 2)]
    pub expansion_seat_ratio: f64,
    /// ...for at least this many days (default 14).
    #[schema(minimum = 1, maximum = 90)]
    pub expansion_days: u32,
    /// Expansion: average daily active users up by this share, last 30 days vs the prior 30 (default 0.25).
    #[schema(exclusive_minimum = 0, maximum = 10)]
    pub expansion_usage_growth: f64,
    /// Upsell: a plan limit used at or above this share (default 0.95).
    #[schema(exclusive_minimum = 0, maximum = 2)]
    pub upsell_limit_ratio: f64,
}

impl Default for AlertThresholds {
    fn default() -> Self {
        Self {
            drop_points: 10.0,
            expansion_seat_ratio: 0.8,
            expansion_days: 14,
            expansion_usage_growth: 0.25,
            upsell_limit_ratio: 0.95,
        }
    }
}

/// A workspace's whole scoring configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Scorecard {
    #[schema(value_type = BTreeMap<String, MeasureConfig>)]
    pub measures: BTreeMap<MeasureKind, MeasureConfig>,
    pub risk_bands: RiskBands,
    pub alerts: AlertThresholds,
    /// Plans from lowest to highest, for "premium feature used on a lower plan".
    pub plans: Vec<String>,
    /// Premium features and the lowest plan that includes each.
    pub premium_features: BTreeMap<String, String>,
    /// Half-life, in days, with which NPS responses fade toward neutral.
    #[schema(exclusive_minimum = 0, maximum = 3650)]
    pub nps_half_life_days: f64,
}

impl Default for Scorecard {
    fn default() -> Self {
        let m = |weight, bad, good| MeasureConfig { weight, bad, good };
        let measures = BTreeMap::from([
            (MeasureKind::UsageTrend, m(22.0, 0.5, 1.0)),
            (MeasureKind::SeatUtilisation, m(13.0, 0.4, 0.85)),
            (MeasureKind::FeatureAdoption, m(13.0, 1.0, 5.0)),
            (MeasureKind::BillingHealth, m(18.0, 3.0, 0.0)),
            (MeasureKind::SupportLoad, m(9.0, 8.0, 0.0)),
            (MeasureKind::RelationshipRecency, m(10.0, 90.0, 14.0)),
            (MeasureKind::Nps, m(5.0, 3.0, 9.0)),
            (MeasureKind::RenewalOutlook, m(10.0, 0.0, 1.0)),
        ]);
        Self {
            measures,
            risk_bands: RiskBands::default(),
            alerts: AlertThresholds::default(),
            plans: ["free", "starter", "pro", "enterprise"].map(String::from).to_vec(),
            premium_features: BTreeMap::new(),
            nps_half_life_days: 90.0,
        }
    }
}

impl Scorecard {
    /// What changed from `self` to `new`, in words for a summary:
    /// "weights: usage trend 22 → 30; bands: low from 75 → 80".
    pub fn describe_change(&self, new: &Scorecard) -> String {
        let n = |x: f64| {
            if x.fract() == 0.0 {
                format!("{x:.0}")
            } else {
                format!("{x}")
            }
        };
        let mut weights = Vec::new();
        let mut thresholds = Vec::new();
        for kind in MeasureKind::ALL {
            let (a, b) = (self.measures.get(&kind), new.measures.get(&kind));
            let (wa, wb) = (a.map_or(0.0, |m| m.weight), b.map_or(0.0, |m| m.weight));
            if wa != wb {
                weights.push(format!("{} {} → {}", kind.label(), n(wa), n(wb)));
            }
            if let (Some(a), Some(b)) = (a, b) {
                if a.bad != b.bad || a.good != b.good {
                    thresholds.push(kind.label().to_owned());
                }
            }
        }
        let mut parts = Vec::new();
        if !weights.is_empty() {
            parts.push(format!("weights: {}", weights.join(", ")));
        }
        if !thresholds.is_empty() {
            parts.push(format!("thresholds of {}", thresholds.join(", ")));
        }
        let (ba, bb) = (&self.risk_bands, &new.risk_bands);
        let mut bands = Vec::new();
        for (name, x, y) in [
            ("low", ba.low, bb.low),
            ("medium", ba.medium, bb.medium),
            ("high", ba.high, bb.high),
        ] {
            if x != y {
                bands.push(format!("{name} from {} → {}", n(x), n(y)));
            }
        }
        if ba.hysteresis != bb.hysteresis {
            bands.push(format!("margin {} → {}", n(ba.hysteresis), n(bb.hysteresis)));
        }
        if !bands.is_empty() {
            parts.push(format!("bands: {}", bands.join(", ")));
        }
        if self.alerts != new.alerts {
            parts.push("alert thresholds".into());
        }
        if self.plans != new.plans || self.premium_features != new.premium_features {
            parts.push("plans and premium features".into());
        }
        if self.nps_half_life_days != new.nps_half_life_days {
            parts.push("NPS half-life".into());
        }
        if parts.is_empty() {
            "saved unchanged".into()
        } else {
            parts.join("; ")
        }
    }

    /// Rank of a plan in `plans` (unknown plans rank lowest).
    pub fn plan_rank(&self, plan: &str) -> Option<usize> {
        self.plans.iter().position(|p| p.eq_ignore_ascii_case(plan))
    }

    /// Checks everything an admin may have typed; errors name the field.
    pub fn validate(&self) -> Result<(), FieldError> {
        let mut total = 0.0;
        for (kind, m) in &self.measures {
            let field = format!("measures.{}", kind.as_str());
            if !(m.weight.is_finite() && m.weight >= 0.0 && m.weight <= 1000.0) {
                return Err(FieldError::new(
                    "invalid_field",
                    format!("{field}.weight"),
                    "weight must be between 0 and 1000",
                ));
            }
            if !(m.bad.is_finite() && m.good.is_finite()) || (m.bad - m.good).abs() < f64::EPSILON {
                return Err(FieldError::new(
                    "invalid_field",
                    format!("{field}.good"),
                    "`bad` and `good` must be different numbers",
                ));
            }
            total += m.weight;
        }
        if total <= 0.0 {
            return Err(FieldError::new(
                "invalid_field",
                "measures",
                "at least one measure needs a weight above zero",
            ));
        }
        self.risk_bands
            .validate()
            .map_err(|m| FieldError::new("invalid_field", "risk_bands", m))?;
        let a = &self.alerts;
        if !(a.drop_points > 0.0 && a.drop_points <= 100.0) {
            return Err(FieldError::new(
                "invalid_field",
                "alerts.drop_points",
                "must be between 0 and 100",
            ));
        }
        if !(a.expansion_seat_ratio > 0.0 && a.expansion_seat_ratio <= 2.0) {
            return Err(FieldError::new(
                "invalid_field",
                "alerts.expansion_seat_ratio",
                "must be between 0 and 2",
            ));
        }
        if a.expansion_days == 0 || a.expansion_days > 90 {
            return Err(FieldError::new(
                "invalid_field",
                "alerts.expansion_days",
                "must be between 1 and 90",
            ));
        }
        if !(a.expansion_usage_growth > 0.0 && a.expansion_usage_growth <= 10.0) {
            return Err(FieldError::new(
                "invalid_field",
                "alerts.expansion_usage_growth",
                "must be between 0 and 10",
            ));
        }
        if !(a.upsell_limit_ratio > 0.0 && a.upsell_limit_ratio <= 2.0) {
            return Err(FieldError::new(
                "invalid_field",
                "alerts.upsell_limit_ratio",
                "must be between 0 and 2",
            ));
        }
        for (feature, plan) in &self.premium_features {
            if self.plan_rank(plan).is_none() {
                return Err(FieldError::new(
                    "invalid_field",
                    format!("premium_features.{feature}"),
                    format!("plan `{plan}` is not in `plans`"),
                ));
            }
        }
        if !(self.nps_half_life_days > 0.0 && self.nps_half_life_days <= 3650.0) {
            return Err(FieldError::new(
                "invalid_field",
                "nps_half_life_days",
                "must be between 0 and 3650",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_described_in_words() {
        let old = Scorecard::default();
        let mut new = old.clone();
        if let Some(m) = new.measures.get_mut(&MeasureKind::UsageTrend) {
            m.weight = 30.0;
        }
        new.risk_bands.low = 80.0;
        assert_eq!(
            old.describe_change(&new),
            "weights: usage trend 22 → 30; bands: low from 75 → 80"
        );
        assert_eq!(old.describe_change(&old), "saved unchanged");
    }

    #[test]
    fn defaults_are_valid_and_weigh_100() {
        let s = Scorecard::default();
        s.validate().expect("defaults valid");
        assert_eq!(s.measures.values().map(|m| m.weight).sum::<f64>(), 100.0);
    }

    #[test]
    fn points_are_linear_and_clamped_in_both_directions() {
        let up = MeasureConfig {
            weight: 1.0,
            bad: 0.5,
            good: 1.0,
        };
        assert_eq!(up.points(0.75), 50.0);
        assert_eq!(up.points(3.0), 100.0);
        assert_eq!(up.points(0.1), 0.0);
        let down = MeasureConfig {
            weight: 1.0,
            bad: 3.0,
            good: 0.0,
        };
        assert_eq!(down.points(0.0), 100.0);
        assert_eq!(down.points(1.5), 50.0);
        assert_eq!(down.points(9.0), 0.0);
    }

    #[test]
    fn validation_names_the_bad_field() {
        let mut s = Scorecard::default();
        s.risk_bands.medium = 90.0;
        assert_eq!(s.validate().expect_err("bad").field, "risk_bands");
        let mut s = Scorecard::default();
        s.premium_features.insert("sso".into(), "platinum".into());
        assert_eq!(s.validate().expect_err("bad").field, "premium_features.sso");
    }
}
