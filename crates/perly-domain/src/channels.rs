//! Per-channel rules for Slack and Discord: which alert kinds a channel takes,
//! the minimum risk level, the minimum score change, and quiet hours
//! (business days and hours in a time zone from the tz database; outside
//! them only critical alerts go out at once). [`decide`] is pure: for an
//! alert and a channel it says skip, send now, or hold until business hours
//! open. A held alert is never dropped: it gets the time it will go out.
//! The [`StormGuard`] caps the messages a channel receives per sliding
//! window (the delivery worker folds what is left into one digest).

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Duration, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::alerts::AlertKind;
use crate::risk::RiskLevel;
use crate::FieldError;

/// Where a channel lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    Slack,
    Discord,
}

impl Platform {
    pub const ALL: [Platform; 2] = [Self::Slack, Self::Discord];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Slack => "slack",
            Self::Discord => "discord",
        }
    }

    /// Words for people.
    pub fn label(self) -> &'static str {
        match self {
            Self::Slack => "Slack",
            Self::Discord => "Discord",
        }
    }
}

impl std::str::FromStr for Platform {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown platform `{s}`; expected slack or discord"))
    }
}

/// Business hours: outside them only critical alerts are sent at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QuietHours {
    /// IANA time zone, e.g. `Europe/Paris`.
    pub time_zone: String,
    /// Business days, e.g. `["Mon", "Tue", "Wed", "Thu", "Fri"]`.
    #[schema(value_type = Vec<String>)]
    pub business_days: Vec<Weekday>,
    /// Opening time, `HH:MM`, local.
    #[schema(value_type = String, example = "09:00")]
    #[serde(with = "hhmm")]
    pub opens: NaiveTime,
    /// Closing time, `HH:MM`, local (after `opens`; `24:00` is midnight at the end of the day).
    #[schema(value_type = String, example = "18:00")]
    #[serde(with = "hhmm")]
    pub closes: NaiveTime,
}

/// What a channel receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChannelRules {
    /// Alert kinds the channel takes (at least one).
    #[schema(min_items = 1)]
    pub event_kinds: BTreeSet<AlertKind>,
    /// Only alerts at this risk level or above.
    pub min_risk: Option<RiskLevel>,
    /// Only alerts whose score moved by at least this many points (0 to 100).
    #[schema(maximum = 100)]
    pub min_score_delta: Option<u32>,
    pub quiet_hours: Option<QuietHours>,
    /// At most this many messages per sliding window; the last one allowed
    /// in a window is a digest of everything waiting. Absent: the default
    /// (10 messages per 10 minutes).
    #[serde(default)]
    pub storm_guard: StormGuard,
}

/// A channel never receives more than `messages` messages in any
/// `window_minutes` minutes. While fewer than `messages − 1` went out in
/// the window, alerts go as usual (one message per alert, or a digest of up
/// to ten); the last message the window allows is, when more alerts wait
/// than one message holds, a digest of all of them (counts, the top
/// customers by MRR and a link to Perly's alert feed); then the channel
/// waits for the window to free a slot. Alerts folded into a digest stay in
/// the feed and count as delivered by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StormGuard {
    /// Most messages per window, 1–100 (default 10).
    #[schema(example = 10, minimum = 1, maximum = 100)]
    pub messages: u32,
    /// The sliding window in minutes, 1–1440 (default 10).
    #[schema(example = 10, minimum = 1, maximum = 1440)]
    pub window_minutes: u32,
}

impl StormGuard {
    pub const MESSAGES_MAX: u32 = 100;
    pub const WINDOW_MINUTES_MAX: u32 = 1_440;

    pub fn window(&self) -> Duration {
        Duration::minutes(i64::from(self.window_minutes))
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        if !(1..=Self::MESSAGES_MAX).contains(&self.messages) {
            return Err(FieldError::new(
                "invalid_field",
                "storm_guard.messages",
                format!("must be between 1 and {} messages", Self::MESSAGES_MAX),
            ));
        }
        if !(1..=Self::WINDOW_MINUTES_MAX).contains(&self.window_minutes) {
            return Err(FieldError::new(
                "invalid_field",
                "storm_guard.window_minutes",
                format!("must be between 1 and {} minutes (a day)", Self::WINDOW_MINUTES_MAX),
            ));
        }
        Ok(())
    }
}

impl Default for StormGuard {
    /// Ten messages per ten minutes: a burst of activity still reads as
    /// individual alerts, an import or an outage reads as one summary.
    fn default() -> Self {
        Self {
            messages: 10,
            window_minutes: 10,
        }
    }
}

impl ChannelRules {
    /// Every kind, every level, no quiet hours.
    pub fn everything() -> Self {
        Self {
            event_kinds: AlertKind::ALL.into_iter().collect(),
            min_risk: None,
            min_score_delta: None,
            quiet_hours: None,
            storm_guard: StormGuard::default(),
        }
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        if self.event_kinds.is_empty() {
            return Err(FieldError::new(
                "invalid_field",
                "event_kinds",
                "choose at least one alert kind (customer_at_risk, expansion_signal, health_score_drop, upsell_opportunity, billing_retry_failed)",
            ));
        }
        if let Some(q) = &self.quiet_hours {
            q.zone()?;
            if q.business_days.is_empty() {
                return Err(FieldError::new(
                    "invalid_field",
                    "quiet_hours.business_days",
                    "choose at least one business day",
                ));
            }
            if q.opens >= q.closes {
                return Err(FieldError::new(
                    "invalid_field",
                    "quiet_hours.closes",
                    "closing time must be after opening time",
                ));
            }
        }
        if self.min_score_delta.is_some_and(|d| d > 100) {
            return Err(FieldError::new(
                "invalid_field",
                "min_score_delta",
                "must be between 0 and 100",
            ));
        }
        self.storm_guard.validate()
    }
}

impl QuietHours {
    fn zone(&self) -> Result<Tz, FieldError> {
        self.time_zone.parse::<Tz>().map_err(|_| {
            FieldError::new(
                "invalid_field",
                "quiet_hours.time_zone",
                format!(
                    "`{}` is not a time zone of the tz database (e.g. Europe/Paris)",
                    self.time_zone
                ),
            )
        })
    }

    /// Whether `now` is inside business hours.
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        let Ok(tz) = self.zone() else { return true };
        let local = now.with_timezone(&tz);
        let t = local.time();
        self.business_days.contains(&local.weekday()) && t >= self.opens && t < self.closes
    }

    /// The next moment business hours open, at or after `now`.
    pub fn next_open(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let Ok(tz) = self.zone() else { return now };
        if self.is_open(now) {
            return now;
        }
        let local_date = now.with_timezone(&tz).date_naive();
        for offset in 0..=8 {
            let date = local_date + Duration::days(offset);
            if !self.business_days.contains(&date.weekday()) {
                continue;
            }
            // The earliest valid instant of the opening time (DST gaps move it on).
            let mut t = date.and_time(self.opens);
            for _ in 0..180 {
                if let Some(at) = tz.from_local_datetime(&t).earliest() {
                    let at = at.with_timezone(&Utc);
                    if at >= now {
                        return at;
                    }
                    break;
                }
                t += Duration::minutes(1);
            }
        }
        now
    }
}

/// `HH:MM` times of day, with a clear error for anything else.
mod hhmm {
    use chrono::NaiveTime;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &NaiveTime, s: S) -> Result<S::Ok, S::Error> {
        if *t == NaiveTime::from_hms_opt(23, 59, 59).unwrap_or_default() {
            return s.serialize_str("24:00");
        }
        s.serialize_str(&t.format("%H:%M").to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveTime, D::Error> {
        let raw = String::deserialize(d)?;
        parse(&raw).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{raw}` is not a time of day: use HH:MM, hours 00–23 and minutes 00–59 (or 24:00)"
            ))
        })
    }

    /// `HH:MM`; `24:00` is the end of the day.
    pub fn parse(raw: &str) -> Option<NaiveTime> {
        let (h, m) = raw.trim().split_once(':')?;
        if h.len() != 2 || m.len() != 2 {
            return None;
        }
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        if h == 24 && m == 0 {
            return NaiveTime::from_hms_opt(23, 59, 59);
        }
        NaiveTime::from_hms_opt(h, m, 0)
    }
}

pub use hhmm::parse as parse_time_of_day;

/// What to do with one alert for one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The channel's rules do not want it.
    Skip,
    /// Send at this time (now, or when business hours open).
    SendAt(DateTime<Utc>),
}

/// Decides for one alert (kind, risk, score delta) and one channel at `now`.
/// An alert without a delta (no score from 7 days ago) moved by no known
/// amount: it meets no minimum delta.
pub fn decide(
    rules: &ChannelRules,
    kind: AlertKind,
    risk: RiskLevel,
    delta: Option<i64>,
    now: DateTime<Utc>,
) -> Decision {
    let delta = delta.unwrap_or(0);
    if !rules.event_kinds.contains(&kind) {
        return Decision::Skip;
    }
    if rules.min_risk.is_some_and(|min| risk < min) {
        return Decision::Skip;
    }
    if rules
        .min_score_delta
        .is_some_and(|min| delta.unsigned_abs() < u64::from(min))
    {
        return Decision::Skip;
    }
    match &rules.quiet_hours {
        Some(q) if risk != RiskLevel::Critical => Decision::SendAt(q.next_open(now)),
        _ => Decision::SendAt(now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    fn kinds(k: &[AlertKind]) -> BTreeSet<AlertKind> {
        k.iter().copied().collect()
    }

    /// The four channels of the Slack and Discord product pages, exactly.
    fn seed_channels() -> Vec<(&'static str, ChannelRules)> {
        use AlertKind::*;
        vec![
            ("#customer-health", ChannelRules::everything()),
            (
                "#cs-escalations",
                ChannelRules {
                    event_kinds: kinds(&[CustomerAtRisk]),
                    min_risk: Some(RiskLevel::High),
                    ..ChannelRules::everything()
                },
            ),
            (
                "#revenue-signals",
                ChannelRules {
                    event_kinds: kinds(&[ExpansionSignal, UpsellOpportunity]),
                    ..ChannelRules::everything()
                },
            ),
            (
                "#billing-alerts",
                ChannelRules {
                    event_kinds: kinds(&[BillingRetryFailed]),
                    ..ChannelRules::everything()
                },
            ),
        ]
    }

    #[test]
    fn the_seed_table_routes_each_alert_to_exactly_the_matching_channels() {
        let now = at("2026-11-24T10:00:00Z");
        let routed = |kind, risk| -> Vec<&str> {
            seed_channels()
                .into_iter()
                .filter(|(_, r)| decide(r, kind, risk, Some(-5), now) != Decision::Skip)
                .map(|(n, _)| n)
                .collect()
        };
        use AlertKind::*;
        assert_eq!(
            routed(CustomerAtRisk, RiskLevel::High),
            vec!["#customer-health", "#cs-escalations"]
        );
        assert_eq!(routed(CustomerAtRisk, RiskLevel::Medium), vec!["#customer-health"]);
        assert_eq!(
            routed(ExpansionSignal, RiskLevel::Low),
            vec!["#customer-health", "#revenue-signals"]
        );
        assert_eq!(
            routed(UpsellOpportunity, RiskLevel::Medium),
            vec!["#customer-health", "#revenue-signals"]
        );
        assert_eq!(
            routed(BillingRetryFailed, RiskLevel::Low),
            vec!["#customer-health", "#billing-alerts"]
        );
        assert_eq!(routed(HealthScoreDrop, RiskLevel::Critical), vec!["#customer-health"]);
    }

    fn paris_office() -> QuietHours {
        use Weekday::*;
        QuietHours {
            time_zone: "Europe/Paris".into(),
            business_days: vec![Mon, Tue, Wed, Thu, Fri],
            opens: NaiveTime::from_hms_opt(9, 0, 0).expect("time"),
            closes: NaiveTime::from_hms_opt(18, 0, 0).expect("time"),
        }
    }

    #[test]
    fn outside_business_hours_only_critical_goes_now_and_the_rest_waits_for_opening() {
        let rules = ChannelRules {
            quiet_hours: Some(paris_office()),
            ..ChannelRules::everything()
        };
        // Saturday 2026-11-28 15:00 UTC: held until Monday 09:00 Paris (08:00 UTC in winter).
        let sat = at("2026-11-28T15:00:00Z");
        assert_eq!(
            decide(&rules, AlertKind::HealthScoreDrop, RiskLevel::High, Some(-12), sat),
            Decision::SendAt(at("2026-11-30T08:00:00Z"))
        );
        assert_eq!(
            decide(&rules, AlertKind::CustomerAtRisk, RiskLevel::Critical, Some(-30), sat),
            Decision::SendAt(sat)
        );
        // Tuesday 10:00 Paris is open.
        let tue = at("2026-11-24T09:00:00Z");
        assert_eq!(
            decide(&rules, AlertKind::ExpansionSignal, RiskLevel::Low, Some(0), tue),
            Decision::SendAt(tue)
        );
        // Summer time: 09:00 Paris is 07:00 UTC.
        assert_eq!(
            paris_office().next_open(at("2026-07-04T12:00:00Z")),
            at("2026-07-06T07:00:00Z")
        );
    }

    #[test]
    fn minimum_risk_and_delta_filter() {
        let rules = ChannelRules {
            min_risk: Some(RiskLevel::High),
            min_score_delta: Some(15),
            ..ChannelRules::everything()
        };
        let now = at("2026-11-24T10:00:00Z");
        assert_eq!(
            decide(&rules, AlertKind::HealthScoreDrop, RiskLevel::High, Some(-14), now),
            Decision::Skip
        );
        assert_eq!(
            decide(&rules, AlertKind::HealthScoreDrop, RiskLevel::Medium, Some(-20), now),
            Decision::Skip
        );
        assert_eq!(
            decide(&rules, AlertKind::HealthScoreDrop, RiskLevel::High, Some(-15), now),
            Decision::SendAt(now)
        );
    }

    #[test]
    fn bad_rules_name_the_field() {
        let mut q = paris_office();
        q.time_zone = "Mars/Olympus".into();
        let rules = ChannelRules {
            quiet_hours: Some(q),
            ..ChannelRules::everything()
        };
        assert_eq!(rules.validate().expect_err("bad").field, "quiet_hours.time_zone");
        let mut q = paris_office();
        q.closes = q.opens;
        let rules = ChannelRules {
            quiet_hours: Some(q),
            ..ChannelRules::everything()
        };
        assert_eq!(rules.validate().expect_err("bad").field, "quiet_hours.closes");
        for (messages, window_minutes, field) in [
            (0, 10, "storm_guard.messages"),
            (101, 10, "storm_guard.messages"),
            (10, 0, "storm_guard.window_minutes"),
            (10, 1441, "storm_guard.window_minutes"),
        ] {
            let rules = ChannelRules {
                storm_guard: StormGuard {
                    messages,
                    window_minutes,
                },
                ..ChannelRules::everything()
            };
            assert_eq!(rules.validate().expect_err("bad").field, field);
        }
    }

    #[test]
    fn rules_saved_before_the_storm_guard_get_the_default() {
        let old = r#"{"event_kinds":["customer_at_risk"],"min_risk":null,"min_score_delta":null,"quiet_hours":null}"#;
        let rules: ChannelRules = serde_json::from_str(old).expect("old rules parse");
        assert_eq!(rules.storm_guard, StormGuard::default());
        assert_eq!(rules.storm_guard.window(), Duration::minutes(10));
        assert!(rules.validate().is_ok());
    }

    proptest! {
        #[test]
        fn quiet_hours_never_drop_an_alert(minutes in 0i64..(60 * 24 * 400), risk in 0..4usize, zone in 0..4usize) {
            let mut q = paris_office();
            q.time_zone = ["Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"][zone].into();
            let rules = ChannelRules { quiet_hours: Some(q.clone()), ..ChannelRules::everything() };
            let now = at("2026-01-01T00:00:00Z") + Duration::minutes(minutes);
            match decide(&rules, AlertKind::HealthScoreDrop, RiskLevel::ALL[risk], Some(-20), now) {
                Decision::Skip => prop_assert!(false, "a matching alert was dropped"),
                Decision::SendAt(t) => {
                    prop_assert!(t >= now && t - now <= Duration::days(4));
                    prop_assert!(RiskLevel::ALL[risk] == RiskLevel::Critical || q.is_open(t));
                }
            }
        }
    }
}
