//! The words and the form of channel rules on the settings pages: rules as
//! the product page's table writes them ("Customer at risk only · High,
//! Critical", "Expansion, Upsell · All levels"), quiet hours in words, and
//! the rules form parsed into [`ChannelRules`] with an error per field (what
//! the user typed is kept to show again). No store and no request here.

use std::collections::{BTreeSet, HashMap};

use chrono::{NaiveTime, Weekday};
use perly_domain::alerts::AlertKind;
use perly_domain::channels::{parse_time_of_day, ChannelRules, Platform, QuietHours, StormGuard};
use perly_domain::risk::RiskLevel;
use perly_store::Channel;

use crate::channels::{check_name, check_rules};
use crate::AppState;

// ---------- words ----------

/// Alert kinds as the product page's table writes them in a list.
pub(super) fn kind_short(k: AlertKind) -> &'static str {
    match k {
        AlertKind::ExpansionSignal => "Expansion",
        AlertKind::UpsellOpportunity => "Upsell",
        other => other.label(),
    }
}

/// "All events", "Customer at risk only", "Expansion, Upsell".
pub fn events_summary(kinds: &BTreeSet<AlertKind>) -> String {
    if AlertKind::ALL.iter().all(|k| kinds.contains(k)) {
        return "All events".to_owned();
    }
    match kinds.len() {
        0 => "No events".to_owned(),
        1 => kinds.iter().map(|k| format!("{} only", k.label())).collect::<String>(),
        _ => AlertKind::ALL
            .iter()
            .filter(|k| kinds.contains(k))
            .map(|k| kind_short(*k))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// "All levels", "High, Critical".
pub fn levels_summary(min: Option<RiskLevel>) -> String {
    match min {
        None | Some(RiskLevel::Low) => "All levels".to_owned(),
        Some(min) => RiskLevel::ALL
            .iter()
            .filter(|r| **r >= min)
            .map(|r| r.label())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// "Customer at risk only · High, Critical", plus the minimum score change when set.
pub fn rules_summary(rules: &ChannelRules) -> String {
    let mut s = format!(
        "{} · {}",
        events_summary(&rules.event_kinds),
        levels_summary(rules.min_risk)
    );
    if let Some(d) = rules.min_score_delta.filter(|d| *d > 0) {
        s.push_str(&format!(" · score changes of {d}+ points"));
    }
    s
}

pub(super) const WEEK: [Weekday; 7] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
    Weekday::Sat,
    Weekday::Sun,
];

/// "Mon–Fri", "Every day", "Mon, Wed, Fri".
pub(super) fn days_summary(days: &[Weekday]) -> String {
    let idx: Vec<usize> = WEEK
        .iter()
        .enumerate()
        .filter(|(_, d)| days.contains(d))
        .map(|(i, _)| i)
        .collect();
    match idx.as_slice() {
        [] => "no days".to_owned(),
        [_, _, _, _, _, _, _] => "Every day".to_owned(),
        [first, .., last] if idx.len() >= 3 && last - first + 1 == idx.len() => {
            format!("{}–{}", WEEK[*first], WEEK[*last])
        }
        _ => idx.iter().map(|i| WEEK[*i].to_string()).collect::<Vec<_>>().join(", "),
    }
}

pub(super) fn hhmm(t: NaiveTime) -> String {
    if t == NaiveTime::from_hms_opt(23, 59, 59).unwrap_or_default() {
        "24:00".to_owned()
    } else {
        t.format("%H:%M").to_string()
    }
}

/// "10 messages per 10 minutes".
pub fn storm_summary(g: &StormGuard) -> String {
    let messages = if g.messages == 1 {
        "1 message".to_owned()
    } else {
        format!("{} messages", g.messages)
    };
    let window = match g.window_minutes {
        1 => "minute".to_owned(),
        60 => "hour".to_owned(),
        1440 => "day".to_owned(),
        m if m % 60 == 0 => format!("{} hours", m / 60),
        m => format!("{m} minutes"),
    };
    format!("{messages} per {window}")
}

/// "Off", or "Mon–Fri 09:00–18:00 Europe/Paris".
pub fn quiet_summary(q: Option<&QuietHours>) -> String {
    match q {
        None => "Off".to_owned(),
        Some(q) => format!(
            "{} {}–{} {}",
            days_summary(&q.business_days),
            hhmm(q.opens),
            hhmm(q.closes),
            q.time_zone
        ),
    }
}

pub(super) fn status_words(c: &Channel) -> &'static str {
    match c.status.as_str() {
        "broken" => "Broken",
        "paused" => "Paused",
        _ => "Active",
    }
}

/// The shape a pasted webhook URL must have, for hints.
pub(super) fn webhook_shape(state: &AppState, p: Platform) -> String {
    let base = state.integrations.webhook_base(p).trim_end_matches('/');
    match p {
        Platform::Slack => format!("{base}/services/T…/B…/…"),
        Platform::Discord => format!("{base}/api/webhooks/{{id}}/{{token}}"),
    }
}

pub(super) fn env_prefix(p: Platform) -> &'static str {
    match p {
        Platform::Slack => "PERLY_SLACK",
        Platform::Discord => "PERLY_DISCORD",
    }
}

// ---------- the rules form ----------

pub struct CheckBox {
    pub key: String,
    pub label: &'static str,
    pub checked: bool,
}

pub struct Choice {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

/// What the rules form shows: the saved rules, or what the user typed.
pub struct RulesForm {
    pub name: String,
    pub kinds: Vec<CheckBox>,
    pub risks: Vec<Choice>,
    pub min_score_delta: String,
    pub quiet_hours: bool,
    pub time_zone: String,
    pub days: Vec<CheckBox>,
    pub opens: String,
    pub closes: String,
    pub storm_messages: String,
    pub storm_window_minutes: String,
}

pub(super) fn kind_key(k: AlertKind) -> String {
    format!("kind_{}", k.as_str())
}

pub(super) fn day_key(d: Weekday) -> String {
    format!("day_{}", d.to_string().to_lowercase())
}

pub(super) fn risk_choices(selected: &str) -> Vec<Choice> {
    std::iter::once(Choice {
        value: "",
        label: "All levels",
        selected: selected.is_empty(),
    })
    .chain(RiskLevel::ALL.iter().map(|r| Choice {
        value: r.as_str(),
        label: r.label(),
        selected: selected == r.as_str(),
    }))
    .collect()
}

pub(super) fn kind_boxes(checked: impl Fn(AlertKind) -> bool) -> Vec<CheckBox> {
    AlertKind::ALL
        .iter()
        .map(|k| CheckBox {
            key: kind_key(*k),
            label: k.label(),
            checked: checked(*k),
        })
        .collect()
}

pub(super) fn day_boxes(checked: impl Fn(Weekday) -> bool) -> Vec<CheckBox> {
    const NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    WEEK.iter()
        .zip(NAMES)
        .map(|(d, label)| CheckBox {
            key: day_key(*d),
            label,
            checked: checked(*d),
        })
        .collect()
}

impl RulesForm {
    /// The saved channel. Quiet hours that are off show a working-week default.
    pub fn of(name: &str, rules: &ChannelRules) -> Self {
        let q = rules.quiet_hours.as_ref();
        let business: Vec<Weekday> = q.map_or_else(|| WEEK[..5].to_vec(), |q| q.business_days.clone());
        Self {
            name: name.to_owned(),
            kinds: kind_boxes(|k| rules.event_kinds.contains(&k)),
            risks: risk_choices(rules.min_risk.map(RiskLevel::as_str).unwrap_or_default()),
            min_score_delta: rules.min_score_delta.map(|d| d.to_string()).unwrap_or_default(),
            quiet_hours: q.is_some(),
            time_zone: q.map_or_else(|| "UTC".to_owned(), |q| q.time_zone.clone()),
            days: day_boxes(|d| business.contains(&d)),
            opens: q.map_or_else(|| "09:00".to_owned(), |q| hhmm(q.opens)),
            closes: q.map_or_else(|| "18:00".to_owned(), |q| hhmm(q.closes)),
            storm_messages: rules.storm_guard.messages.to_string(),
            storm_window_minutes: rules.storm_guard.window_minutes.to_string(),
        }
    }

    /// What the user sent, as typed.
    pub fn typed(form: &HashMap<String, String>) -> Self {
        let text = |k: &str| form.get(k).cloned().unwrap_or_default();
        Self {
            name: text("name"),
            kinds: kind_boxes(|k| is_on(form, &kind_key(k))),
            risks: risk_choices(text("min_risk").trim()),
            min_score_delta: text("min_score_delta"),
            quiet_hours: is_on(form, "quiet_hours"),
            time_zone: text("time_zone"),
            days: day_boxes(|d| is_on(form, &day_key(d))),
            opens: text("opens"),
            closes: text("closes"),
            storm_messages: text("storm_messages"),
            storm_window_minutes: text("storm_window_minutes"),
        }
    }
}

pub(super) fn is_on(form: &HashMap<String, String>, key: &str) -> bool {
    form.get(key).is_some_and(|v| !v.is_empty())
}

/// Form field errors, keyed by the name of the form field they belong to.
pub type FieldErrors = HashMap<String, String>;

pub(super) fn time_error(raw: &str) -> String {
    format!("`{raw}` is not a time of day: use HH:MM, hours 00–23 and minutes 00–59 (or 24:00)")
}

/// Reads the rules form (`kind_*`, `min_risk`, `min_score_delta`,
/// `quiet_hours`, `time_zone`, `day_*`, `opens`, `closes`, `storm_messages`,
/// `storm_window_minutes`) into rules, or says what is wrong with each
/// field. Quiet-hours fields count only when `quiet_hours` is ticked; empty
/// storm-guard fields mean the default.
pub fn parse_rules(form: &HashMap<String, String>) -> Result<ChannelRules, FieldErrors> {
    let mut errors = FieldErrors::new();
    let text = |k: &str| form.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();

    let event_kinds: BTreeSet<AlertKind> = AlertKind::ALL
        .into_iter()
        .filter(|k| is_on(form, &kind_key(*k)))
        .collect();
    if event_kinds.is_empty() {
        errors.insert(
            "event_kinds".into(),
            "Nothing would be sent: choose at least one alert kind.".into(),
        );
    }

    let min_risk = match text("min_risk").as_str() {
        "" => None,
        raw => match raw.parse::<RiskLevel>() {
            Ok(r) => Some(r),
            Err(_) => {
                errors.insert(
                    "min_risk".into(),
                    "Choose All levels, Low, Medium, High or Critical.".into(),
                );
                None
            }
        },
    };

    let min_score_delta = match text("min_score_delta").as_str() {
        "" => None,
        raw => match raw.parse::<u32>() {
            Ok(d) if d <= 100 => Some(d),
            _ => {
                errors.insert(
                    "min_score_delta".into(),
                    "Enter a whole number of points from 0 to 100, or leave it empty for any change.".into(),
                );
                None
            }
        },
    };

    let quiet_hours = if is_on(form, "quiet_hours") {
        let business_days: Vec<Weekday> = WEEK.into_iter().filter(|d| is_on(form, &day_key(*d))).collect();
        if business_days.is_empty() {
            errors.insert("business_days".into(), "Choose at least one business day.".into());
        }
        let mut time = |key: &str| {
            let raw = text(key);
            let t = parse_time_of_day(&raw);
            if t.is_none() {
                errors.insert(key.to_owned(), time_error(&raw));
            }
            t
        };
        let (opens, closes) = (time("opens"), time("closes"));
        if let (Some(o), Some(c)) = (opens, closes) {
            if o >= c {
                errors.insert("closes".into(), "Closing time must be after opening time.".into());
            }
        }
        let time_zone = text("time_zone");
        let q = QuietHours {
            time_zone,
            business_days,
            opens: opens.unwrap_or_default(),
            closes: closes.unwrap_or_default(),
        };
        if q.time_zone.is_empty() {
            errors.insert(
                "time_zone".into(),
                "Enter a time zone of the tz database, e.g. Europe/Paris.".into(),
            );
        } else {
            // The domain knows the tz database; ask it about the zone alone.
            let zone_only = QuietHours {
                time_zone: q.time_zone.clone(),
                business_days: vec![Weekday::Mon],
                opens: NaiveTime::MIN,
                closes: NaiveTime::from_hms_opt(23, 59, 59).unwrap_or_default(),
            };
            let probe = ChannelRules {
                quiet_hours: Some(zone_only),
                ..ChannelRules::everything()
            };
            if let Err(e) = probe.validate() {
                errors.insert("time_zone".into(), e.message);
            }
        }
        Some(q)
    } else {
        None
    };

    let default = StormGuard::default();
    let mut whole = |key: &str, default: u32, max: u32, message: &str| match text(key).as_str() {
        "" => default,
        raw => match raw.parse::<u32>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                errors.insert(key.to_owned(), message.to_owned());
                default
            }
        },
    };
    let storm_guard = StormGuard {
        messages: whole(
            "storm_messages",
            default.messages,
            StormGuard::MESSAGES_MAX,
            "Enter a whole number of messages from 1 to 100.",
        ),
        window_minutes: whole(
            "storm_window_minutes",
            default.window_minutes,
            StormGuard::WINDOW_MINUTES_MAX,
            "Enter a whole number of minutes from 1 to 1440 (a day).",
        ),
    };

    if !errors.is_empty() {
        return Err(errors);
    }
    let rules = ChannelRules {
        event_kinds,
        min_risk,
        min_score_delta,
        quiet_hours,
        storm_guard,
    };
    // Whatever else the domain refuses, at the form field it belongs to.
    check_rules(&rules, "").map_err(|e| {
        let field = match e.field.as_str() {
            "quiet_hours.time_zone" => "time_zone",
            "quiet_hours.business_days" => "business_days",
            "quiet_hours.opens" => "opens",
            "quiet_hours.closes" => "closes",
            "min_score_delta" => "min_score_delta",
            "min_risk" => "min_risk",
            "storm_guard.messages" => "storm_messages",
            "storm_guard.window_minutes" => "storm_window_minutes",
            _ => "event_kinds",
        };
        HashMap::from([(field.to_owned(), e.message)])
    })?;
    Ok(rules)
}

/// Reads name and rules together; nothing is saved unless both are right.
pub(super) fn parse_channel_form(form: &HashMap<String, String>) -> Result<(String, ChannelRules), FieldErrors> {
    let name = check_name(form.get("name").map(String::as_str).unwrap_or_default(), "name");
    let rules = parse_rules(form);
    match (name, rules) {
        (Ok(n), Ok(r)) => Ok((n, r)),
        (name, rules) => {
            let mut errors = rules.err().unwrap_or_default();
            if let Err(e) = name {
                errors.insert("name".into(), e.message);
            }
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AlertKind::*;

    fn kinds(k: &[AlertKind]) -> BTreeSet<AlertKind> {
        k.iter().copied().collect()
    }

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn the_seed_table_reads_as_on_the_product_page() {
        assert_eq!(rules_summary(&ChannelRules::everything()), "All events · All levels");
        let escalations = ChannelRules {
            event_kinds: kinds(&[CustomerAtRisk]),
            min_risk: Some(RiskLevel::High),
            ..ChannelRules::everything()
        };
        assert_eq!(rules_summary(&escalations), "Customer at risk only · High, Critical");
        let revenue = ChannelRules {
            event_kinds: kinds(&[ExpansionSignal, UpsellOpportunity]),
            ..ChannelRules::everything()
        };
        assert_eq!(rules_summary(&revenue), "Expansion, Upsell · All levels");
        let billing = ChannelRules {
            event_kinds: kinds(&[BillingRetryFailed]),
            ..ChannelRules::everything()
        };
        assert_eq!(rules_summary(&billing), "Billing retry failed only · All levels");
        let drops = ChannelRules {
            min_score_delta: Some(15),
            min_risk: Some(RiskLevel::Critical),
            ..ChannelRules::everything()
        };
        assert_eq!(
            rules_summary(&drops),
            "All events · Critical · score changes of 15+ points"
        );
    }

    #[test]
    fn quiet_hours_read_as_days_hours_and_zone() {
        let q = QuietHours {
            time_zone: "Europe/Paris".into(),
            business_days: vec![Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri],
            opens: NaiveTime::from_hms_opt(9, 0, 0).expect("time"),
            closes: NaiveTime::from_hms_opt(23, 59, 59).expect("time"),
        };
        assert_eq!(quiet_summary(Some(&q)), "Mon–Fri 09:00–24:00 Europe/Paris");
        assert_eq!(quiet_summary(None), "Off");
        assert_eq!(
            days_summary(&[Weekday::Mon, Weekday::Wed, Weekday::Fri]),
            "Mon, Wed, Fri"
        );
        assert_eq!(days_summary(&WEEK), "Every day");
        assert_eq!(days_summary(&[Weekday::Sat, Weekday::Sun]), "Sat, Sun");
    }

    #[test]
    fn the_rules_form_becomes_rules() {
        let f = form(&[
            ("kind_customer_at_risk", "on"),
            ("min_risk", "high"),
            ("min_score_delta", "15"),
            ("quiet_hours", "on"),
            ("time_zone", "Europe/Paris"),
            ("day_mon", "on"),
            ("day_fri", "on"),
            ("opens", "09:00"),
            ("closes", "24:00"),
        ]);
        let rules = parse_rules(&f).expect("valid");
        assert_eq!(rules.event_kinds, kinds(&[CustomerAtRisk]));
        assert_eq!(rules.min_risk, Some(RiskLevel::High));
        assert_eq!(rules.min_score_delta, Some(15));
        let q = rules.quiet_hours.expect("quiet hours");
        assert_eq!(q.business_days, vec![Weekday::Mon, Weekday::Fri]);
        assert_eq!(hhmm(q.closes), "24:00");
        // And back: the saved rules fill the same fields.
        let shown = RulesForm::of("#x", &parse_rules(&f).expect("valid"));
        assert!(shown
            .kinds
            .iter()
            .any(|k| k.key == "kind_customer_at_risk" && k.checked));
        assert!(shown.risks.iter().any(|r| r.value == "high" && r.selected));
        assert_eq!((shown.opens.as_str(), shown.closes.as_str()), ("09:00", "24:00"));
    }

    #[test]
    fn quiet_hours_fields_count_only_when_ticked() {
        let f = form(&[
            ("kind_expansion_signal", "on"),
            ("time_zone", "Mars/Olympus"),
            ("opens", "25:00"),
        ]);
        let rules = parse_rules(&f).expect("valid");
        assert_eq!(rules.quiet_hours, None);
        assert_eq!(rules.min_risk, None);
    }

    #[test]
    fn each_bad_field_gets_its_own_error() {
        let f = form(&[
            ("min_risk", "severe"),
            ("min_score_delta", "-3"),
            ("quiet_hours", "on"),
            ("time_zone", "Mars/Olympus"),
            ("opens", "25:00"),
            ("closes", "18:00"),
        ]);
        let errors = parse_rules(&f).expect_err("invalid");
        assert!(errors["event_kinds"].contains("choose at least one alert kind"));
        assert!(errors["time_zone"].contains("Mars/Olympus"));
        assert!(errors["opens"].contains("25:00"));
        assert!(errors.contains_key("min_risk"));
        assert!(errors.contains_key("min_score_delta"));
        assert!(errors.contains_key("business_days"));
        assert!(!errors.contains_key("closes"));
    }

    #[test]
    fn the_storm_guard_is_read_from_the_form_and_shown_in_words() {
        let f = form(&[
            ("kind_billing_retry_failed", "on"),
            ("storm_messages", "5"),
            ("storm_window_minutes", "60"),
        ]);
        let rules = parse_rules(&f).expect("valid");
        assert_eq!(
            rules.storm_guard,
            StormGuard {
                messages: 5,
                window_minutes: 60
            }
        );
        assert_eq!(storm_summary(&rules.storm_guard), "5 messages per hour");
        assert_eq!(storm_summary(&StormGuard::default()), "10 messages per 10 minutes");
        let shown = RulesForm::of("#x", &rules);
        assert_eq!(
            (shown.storm_messages.as_str(), shown.storm_window_minutes.as_str()),
            ("5", "60")
        );
        // Empty means the default; out of range is refused per field.
        let defaulted = parse_rules(&form(&[("kind_billing_retry_failed", "on")])).expect("valid");
        assert_eq!(defaulted.storm_guard, StormGuard::default());
        let errors = parse_rules(&form(&[
            ("kind_billing_retry_failed", "on"),
            ("storm_messages", "0"),
            ("storm_window_minutes", "2000"),
        ]))
        .expect_err("invalid");
        assert!(errors["storm_messages"].contains("1 to 100"));
        assert!(errors["storm_window_minutes"].contains("1 to 1440"));
    }

    #[test]
    fn closing_must_follow_opening() {
        let f = form(&[
            ("kind_health_score_drop", "on"),
            ("quiet_hours", "on"),
            ("time_zone", "America/New_York"),
            ("day_tue", "on"),
            ("opens", "18:00"),
            ("closes", "09:00"),
        ]);
        let errors = parse_rules(&f).expect_err("invalid");
        assert_eq!(errors.keys().collect::<Vec<_>>(), vec!["closes"]);
    }

    #[test]
    fn a_name_error_comes_with_the_rules_errors() {
        let errors = parse_channel_form(&form(&[("name", "  ")])).expect_err("invalid");
        assert!(errors.contains_key("name"));
        assert!(errors.contains_key("event_kinds"));
    }
}
