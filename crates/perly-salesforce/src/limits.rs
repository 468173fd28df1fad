//! API-limit accounting, pure. Salesforce reports the org's rolling 24-hour
//! API usage on every REST answer in `Sforce-Limit-Info: api-usage=25/5000`;
//! [`parse_limit_info`] reads it into an [`ApiUsage`]. The org's allotment is
//! shared with every other integration, so Perly only spends a [`Budget`]
//! share of it: [`Budget::check`] refuses a call once the share is used and
//! [`Budget::pace`] slows calls down as the share runs out, so Perly tapers
//! off instead of hitting the wall at full speed.

use std::fmt;
use std::time::Duration;

use crate::error::{Error, Result};

/// The org's API calls in the last 24 hours, as Salesforce last reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiUsage {
    pub used: u64,
    pub max: u64,
}

impl fmt::Display for ApiUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.used, self.max)
    }
}

/// Reads the org-wide `api-usage=used/max` entry of a `Sforce-Limit-Info`
/// header; other entries (`per-app-api-usage=17/250(appName=…)`) are
/// ignored. `None` when there is no readable org-wide entry.
pub fn parse_limit_info(header: &str) -> Option<ApiUsage> {
    header
        .split([';', ','])
        .map(str::trim)
        .find_map(|entry| entry.strip_prefix("api-usage="))
        .and_then(|value| {
            let (used, max) = value.split_once('/')?;
            let max = max
                .trim()
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap_or_default();
            Some(ApiUsage {
                used: used.trim().parse().ok()?,
                max: max.parse().ok()?,
            })
        })
}

/// Usage from which pacing starts, as a fraction of the allowed calls.
const PACE_FROM: f64 = 0.8;
/// The delay when the allowed share is (almost) used up.
const PACE_MAX: Duration = Duration::from_secs(4);

/// How much of the org's daily API allotment Perly may use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Fraction of the org's daily maximum, `0.0..=1.0`.
    pub share: f64,
}

impl Default for Budget {
    /// Half of the org's allotment: the rest stays for the customer's other
    /// integrations and users.
    fn default() -> Self {
        Budget { share: 0.5 }
    }
}

impl Budget {
    /// A budget of `share` of the org's allotment, clamped to `0.0..=1.0`
    /// (a NaN share allows nothing).
    pub fn new(share: f64) -> Budget {
        let share = if share.is_nan() { 0.0 } else { share.clamp(0.0, 1.0) };
        Budget { share }
    }

    /// The number of calls Perly may make out of the org's `max`.
    pub fn allowed(&self, max: u64) -> u64 {
        // `as` saturates for floats; the product is never above `max`.
        (max as f64 * Budget::new(self.share).share).floor() as u64
    }

    /// Refuses once Perly's share is used up.
    pub fn check(&self, usage: ApiUsage) -> Result<()> {
        let allowed = self.allowed(usage.max);
        if usage.used >= allowed {
            return Err(Error::OverBudget { usage, allowed });
        }
        Ok(())
    }

    /// How long to wait before the next call: nothing below 80% of the
    /// allowed calls, then a delay growing linearly to four seconds at the
    /// allowance. `None` means "go ahead now".
    pub fn pace(&self, usage: ApiUsage) -> Option<Duration> {
        let allowed = self.allowed(usage.max);
        if allowed == 0 {
            return Some(PACE_MAX);
        }
        let ratio = usage.used as f64 / allowed as f64;
        if ratio < PACE_FROM {
            return None;
        }
        let fraction = ((ratio - PACE_FROM) / (1.0 - PACE_FROM)).min(1.0);
        let delay = PACE_MAX.mul_f64(fraction);
        (!delay.is_zero()).then_some(delay)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::fixtures::spec;

    fn usage(used: u64, max: u64) -> ApiUsage {
        ApiUsage { used, max }
    }

    #[test]
    fn every_spec_header_example_parses_to_the_org_wide_usage() {
        let file: serde_json::Value =
            serde_json::from_str(&spec("rest/sforce_limit_info_header_examples.json")).unwrap();
        let parsed: Vec<_> = file["examples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| parse_limit_info(e.as_str().unwrap()))
            .collect();
        assert_eq!(parsed, vec![Some(usage(18, 5000)), Some(usage(25, 5000))]);
    }

    #[test]
    fn per_app_usage_alone_is_not_org_usage() {
        assert_eq!(parse_limit_info("per-app-api-usage=17/250(appName=sample-app)"), None);
    }

    #[test]
    fn entry_order_and_spacing_do_not_matter() {
        assert_eq!(
            parse_limit_info("per-app-api-usage=17/250(appName=x);api-usage= 7/100 "),
            Some(usage(7, 100))
        );
    }

    #[test]
    fn garbage_is_none() {
        for h in ["", "api-usage=", "api-usage=a/b", "api-usage=5", "nothing"] {
            assert_eq!(parse_limit_info(h), None, "{h}");
        }
    }

    #[test]
    fn the_default_budget_is_half_the_org() {
        assert_eq!(Budget::default().allowed(5000), 2500);
        assert_eq!(Budget::new(2.0).allowed(5000), 5000);
        assert_eq!(Budget::new(-1.0).allowed(5000), 0);
        assert_eq!(Budget::new(f64::NAN).allowed(5000), 0);
    }

    #[test]
    fn check_refuses_at_the_allowance() {
        let b = Budget::default();
        assert!(b.check(usage(2499, 5000)).is_ok());
        match b.check(usage(2500, 5000)) {
            Err(Error::OverBudget { usage: u, allowed }) => {
                assert_eq!(u, usage(2500, 5000));
                assert_eq!(allowed, 2500);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_pacing_below_eighty_percent_of_the_allowance() {
        let b = Budget::default();
        assert_eq!(b.pace(usage(0, 5000)), None);
        assert_eq!(b.pace(usage(1999, 5000)), None);
        assert_eq!(b.pace(usage(2000, 5000)), None);
    }

    #[test]
    fn pacing_grows_to_a_few_seconds_at_the_allowance() {
        let b = Budget::default();
        let mut last = Duration::ZERO;
        for used in (2001..=2500).step_by(50) {
            let d = b.pace(usage(used, 5000)).unwrap();
            assert!(d >= last, "{used}: {d:?} < {last:?}");
            last = d;
        }
        assert_eq!(b.pace(usage(2500, 5000)), Some(PACE_MAX));
        assert_eq!(b.pace(usage(9999, 5000)), Some(PACE_MAX));
        let half_way = b.pace(usage(2250, 5000)).unwrap();
        assert!((half_way.as_secs_f64() - 2.0).abs() < 0.01, "{half_way:?}");
    }

    #[test]
    fn a_zero_budget_always_paces_and_refuses() {
        let b = Budget::new(0.0);
        assert_eq!(b.pace(usage(0, 5000)), Some(PACE_MAX));
        assert!(b.check(usage(0, 5000)).is_err());
    }
}
