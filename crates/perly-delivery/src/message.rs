//! What an alert says, whatever the platform, and the text helpers both
//! renderers share (truncation with an ellipsis, counted in characters).

use chrono::{DateTime, Utc};
use perly_domain::alerts::AlertKind;
use perly_domain::risk::RiskLevel;
use perly_store::AlertRecord;

/// One alert, ready to render.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertMessage {
    pub customer_name: String,
    /// Link to the customer's profile in Perly.
    pub profile_url: String,
    pub kind: AlertKind,
    pub risk_level: RiskLevel,
    pub score: i64,
    /// `None` without a score from 7 days ago to compare with.
    pub delta: Option<i64>,
    /// e.g. "Health score dropped to 32 (−18)".
    pub headline: String,
    pub signals: Vec<String>,
    pub suggested_action: String,
    pub occurred_at: DateTime<Utc>,
}

impl AlertMessage {
    /// From a stored alert; `public_url` is `PERLY_PUBLIC_URL`.
    pub fn from_record(a: &AlertRecord, public_url: &str) -> Self {
        let segment = perly_domain::customer::path_segment(&a.customer_external_id);
        Self {
            customer_name: a.customer_name.clone(),
            profile_url: format!("{}/customers/{segment}", public_url.trim_end_matches('/')),
            kind: a.kind,
            risk_level: a.risk_level,
            score: a.score,
            delta: a.delta,
            headline: a.headline.clone(),
            signals: a.signals.clone(),
            suggested_action: a.suggested_action.clone(),
            occurred_at: a.occurred_at,
        }
    }

    /// "32 (−18)", or "32" without a delta.
    pub fn score_with_delta(&self) -> String {
        let Some(d) = self.delta else {
            return self.score.to_string();
        };
        let delta = if d > 0 {
            format!("+{d}")
        } else if d < 0 {
            format!("−{}", -d)
        } else {
            "±0".to_owned()
        };
        format!("{} ({delta})", self.score)
    }
}

/// Colour of a risk level: critical red, high orange, medium yellow, low green.
pub fn risk_color(risk: RiskLevel) -> u32 {
    match risk {
        RiskLevel::Critical => 0xE7_4C_3C,
        RiskLevel::High => 0xE6_7E_22,
        RiskLevel::Medium => 0xF1_C4_0F,
        RiskLevel::Low => 0x2E_CC_71,
    }
}

/// Cuts `s` to at most `max` characters, ending with "…" when it was cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// Escapes `s` character by character with `piece` and keeps the result
/// within `max` characters, never splitting an escape; a cut ends with "…".
/// Each platform supplies its own `piece` (Slack entities, Discord backslashes).
pub fn escape_within(s: &str, max: usize, piece: impl Fn(char) -> String) -> String {
    let total: usize = s.chars().map(|c| piece(c).chars().count()).sum();
    let budget = if total <= max { max } else { max.saturating_sub(1) };
    let mut out = String::new();
    let mut len = 0;
    for c in s.chars() {
        let p = piece(c);
        let n = p.chars().count();
        if len + n > budget {
            out.push('…');
            return out;
        }
        out.push_str(&p);
        len += n;
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::TimeZone;

    pub fn sample() -> AlertMessage {
        AlertMessage {
            customer_name: "Acme Corp".into(),
            profile_url: "https://app.perly.example/customers/acme-corp".into(),
            kind: AlertKind::HealthScoreDrop,
            risk_level: RiskLevel::High,
            score: 32,
            delta: Some(-18),
            headline: "Health score dropped to 32 (−18)".into(),
            signals: vec![
                "Login frequency down 60%".into(),
                "Payment failed twice".into(),
                "Support tickets up".into(),
            ],
            suggested_action: "Schedule a check-in call with the account owner".into(),
            occurred_at: Utc.with_ymd_and_hms(2026, 8, 24, 9, 30, 0).single().expect("time"),
        }
    }

    #[test]
    fn truncation_counts_characters_and_marks_the_cut() {
        assert_eq!(truncate("héllo", 5), "héllo");
        assert_eq!(truncate("héllo world", 5), "héll…");
        assert_eq!(truncate("abc", 0), "");
    }

    #[test]
    fn colours_follow_the_risk() {
        assert_eq!(risk_color(RiskLevel::High), 15105570);
        assert_eq!(sample().score_with_delta(), "32 (−18)");
    }
}
