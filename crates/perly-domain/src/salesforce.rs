//! Salesforce settings and automation rules, pure: which org type a
//! connection is, how a sync maps and paces itself, and which alerts make a
//! Task or a Chatter post. The HTTP side lives in `perly-salesforce`, the
//! tables in `perly-store`.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::alerts::AlertKind;
use crate::risk::RiskLevel;
use crate::FieldError;

/// Which kind of org a connection logs in to. Refresh and revoke go back to
/// the login host that was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    /// `PERLY_SALESFORCE__LOGIN_URL` (login.salesforce.com).
    Production,
    /// `PERLY_SALESFORCE__SANDBOX_LOGIN_URL` (test.salesforce.com).
    Sandbox,
    /// The org's own My Domain login URL, production or sandbox.
    MyDomain,
}

impl Environment {
    pub const ALL: [Environment; 3] = [Self::Production, Self::Sandbox, Self::MyDomain];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Production => "production",
            Self::Sandbox => "sandbox",
            Self::MyDomain => "my_domain",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Production => "Production",
            Self::Sandbox => "Sandbox",
            Self::MyDomain => "My Domain",
        }
    }

    /// Parses the form and API value, naming the accepted ones on error.
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        Self::ALL.into_iter().find(|e| e.as_str() == s).ok_or_else(|| {
            FieldError::new(
                "invalid_field",
                "environment",
                format!("unknown org type `{s}`: use production, sandbox or my_domain"),
            )
        })
    }

    /// Whether an org that says `is_sandbox` may be connected as this type;
    /// `Err` explains the mismatch (the org is real, the choice was wrong).
    pub fn admits(self, is_sandbox: bool) -> Result<(), String> {
        match (self, is_sandbox) {
            (Self::Production, true) => {
                Err("this org is a Sandbox, but Production was chosen: connect it again with Sandbox".into())
            }
            (Self::Sandbox, false) => {
                Err("this org is a Production org, but Sandbox was chosen: connect it again with Production".into())
            }
            _ => Ok(()),
        }
    }
}

/// Default time between scheduled syncs: "every 2 hours".
pub const DEFAULT_SYNC_MINUTES: u32 = 120;
/// Default share of the org's daily API requests Perly may use.
pub const DEFAULT_API_SHARE_PERCENT: u8 = 50;

/// How a connection syncs; admins edit it in settings and through
/// `PUT /api/v1/salesforce/settings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct SyncSettings {
    /// An Account field whose value becomes the customer's `external_id`;
    /// `None`: the 18-character Account Id.
    pub external_id_field: Option<String>,
    /// Custom fields on Account pulled onto the customer profile.
    pub account_fields: Vec<String>,
    /// Custom fields on Contact pulled with each contact.
    pub contact_fields: Vec<String>,
    /// Minutes between scheduled syncs (15 to 1,440).
    #[schema(minimum = 15, maximum = 1440)]
    pub sync_interval_minutes: u32,
    /// The share of the org's daily API request limit Perly may use (1 to 90 %).
    #[schema(minimum = 1, maximum = 90)]
    pub api_share_percent: u8,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self {
            external_id_field: None,
            account_fields: Vec::new(),
            contact_fields: Vec::new(),
            sync_interval_minutes: DEFAULT_SYNC_MINUTES,
            api_share_percent: DEFAULT_API_SHARE_PERCENT,
        }
    }
}

/// Whether `s` is a plausible Salesforce field API name (`Name`,
/// `Region__c`, `ns__Tier__c`): letters, digits and underscores, starting
/// with a letter, at most 80 characters.
pub fn is_field_name(s: &str) -> bool {
    s.len() <= 80
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl SyncSettings {
    /// Checks shapes only; whether the fields exist in the org is checked
    /// against its describe when the settings are saved.
    pub fn validate(&self) -> Result<(), FieldError> {
        if !(15..=1440).contains(&self.sync_interval_minutes) {
            return Err(FieldError::new(
                "invalid_field",
                "sync_interval_minutes",
                "the sync interval must be between 15 and 1440 minutes",
            ));
        }
        if !(1..=90).contains(&self.api_share_percent) {
            return Err(FieldError::new(
                "invalid_field",
                "api_share_percent",
                "Perly's share of the daily API limit must be between 1 and 90 percent",
            ));
        }
        let lists = [
            ("external_id_field", self.external_id_field.iter().collect::<Vec<_>>()),
            ("account_fields", self.account_fields.iter().collect()),
            ("contact_fields", self.contact_fields.iter().collect()),
        ];
        for (key, names) in lists {
            if names.len() > 50 {
                return Err(FieldError::new("invalid_field", key, "pick at most 50 fields"));
            }
            if let Some(bad) = names.iter().find(|n| !is_field_name(n)) {
                return Err(FieldError::new(
                    "invalid_field",
                    key,
                    format!("`{bad}` is not a Salesforce field name"),
                ));
            }
        }
        Ok(())
    }
}

/// Task priority, as Salesforce's standard picklist spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum TaskPriority {
    High,
    Normal,
    Low,
}

impl TaskPriority {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::High => "High",
            Self::Normal => "Normal",
            Self::Low => "Low",
        }
    }
}

/// Create a Task for the account owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskAction {
    /// The Task's subject, 1 to 200 characters (leading and trailing spaces
    /// aside); `{customer}` and `{risk}` are filled in.
    #[schema(min_length = 1)]
    pub subject: String,
    /// Due this many days after the alert (0 to 365).
    #[schema(maximum = 365)]
    pub due_in_days: u32,
    pub priority: TaskPriority,
}

/// Post to the account's Chatter feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChatterAction {}

/// When a rule fires: any of the conditions that are set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct RuleTrigger {
    /// An alert of one of these kinds.
    pub alert_kinds: BTreeSet<AlertKind>,
    /// An alert at this risk level or above.
    pub min_risk: Option<RiskLevel>,
    /// An alert whose score fell by at least this many points (1 to 100).
    #[schema(minimum = 1, maximum = 100)]
    pub min_score_drop: Option<u32>,
}

/// One automation rule (Settings > Salesforce > Automation Rules).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AutomationRule {
    /// 1 to 100 characters (leading and trailing spaces aside).
    #[schema(min_length = 1)]
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub when: RuleTrigger,
    #[serde(default)]
    pub task: Option<TaskAction>,
    #[serde(default)]
    pub chatter: Option<ChatterAction>,
}

fn yes() -> bool {
    true
}

/// What a rule looks at in an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertFacts {
    pub kind: AlertKind,
    pub risk_level: RiskLevel,
    /// Score change that the alert reports (negative: a drop), if it has one.
    pub delta: Option<i64>,
}

impl AutomationRule {
    pub fn validate(&self) -> Result<(), FieldError> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(FieldError::new(
                "invalid_field",
                "name",
                "a rule needs a name of 1 to 100 characters",
            ));
        }
        if self.task.is_none() && self.chatter.is_none() {
            return Err(FieldError::new(
                "invalid_field",
                "task",
                "a rule needs at least one action: a task, a chatter post, or both",
            ));
        }
        let w = &self.when;
        if w.alert_kinds.is_empty() && w.min_risk.is_none() && w.min_score_drop.is_none() {
            return Err(FieldError::new(
                "invalid_field",
                "when",
                "a rule needs a condition: alert_kinds, min_risk or min_score_drop",
            ));
        }
        if w.min_score_drop.is_some_and(|d| d == 0 || d > 100) {
            return Err(FieldError::new(
                "invalid_field",
                "when.min_score_drop",
                "a score drop must be between 1 and 100 points",
            ));
        }
        if let Some(task) = &self.task {
            let subject = task.subject.trim();
            if subject.is_empty() || subject.chars().count() > 200 {
                return Err(FieldError::new(
                    "invalid_field",
                    "task.subject",
                    "a task subject must be 1 to 200 characters",
                ));
            }
            if task.due_in_days > 365 {
                return Err(FieldError::new(
                    "invalid_field",
                    "task.due_in_days",
                    "a task must fall due within 365 days",
                ));
            }
        }
        Ok(())
    }

    /// Whether this rule acts on an alert with these facts.
    pub fn matches(&self, alert: &AlertFacts) -> bool {
        if !self.enabled {
            return false;
        }
        let w = &self.when;
        w.alert_kinds.contains(&alert.kind)
            || w.min_risk.is_some_and(|min| alert.risk_level >= min)
            || w.min_score_drop
                .is_some_and(|drop| alert.delta.is_some_and(|d| d <= -i64::from(drop)))
    }

    /// The task subject with `{customer}` and `{risk}` filled in, cut to
    /// Salesforce's 255 characters.
    pub fn task_subject(task: &TaskAction, customer: &str, risk: RiskLevel) -> String {
        let s = task
            .subject
            .replace("{customer}", customer)
            .replace("{risk}", risk.label());
        s.chars().take(255).collect()
    }
}

/// What an automation rule does for an alert: one of each per alert at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Task,
    Chatter,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Task => "task",
            Self::Chatter => "chatter",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "task" => Some(Self::Task),
            "chatter" => Some(Self::Chatter),
            _ => None,
        }
    }
}

/// A queued Task or Chatter post, as the rule and the alert decided it when
/// the alert was recorded: what the Salesforce side needs to write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ActionDraft {
    pub rule_name: String,
    pub customer_name: String,
    /// For the link to the customer's Perly profile.
    pub customer_external_id: String,
    pub alert_kind: AlertKind,
    pub risk_level: RiskLevel,
    pub score: i64,
    /// `None` when the alert has no score from 7 days ago to compare with.
    pub delta: Option<i64>,
    pub headline: String,
    pub signals: Vec<String>,
    pub suggested_action: String,
    /// Task only: the filled-in subject, due date and priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskDraft>,
}

/// The Task part of an [`ActionDraft`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskDraft {
    pub subject: String,
    #[schema(value_type = String, format = Date)]
    pub due: chrono::NaiveDate,
    pub priority: TaskPriority,
}

/// The facts of a newly recorded alert that rules look at and actions carry.
#[derive(Debug, Clone, Copy)]
pub struct AlertContext<'a> {
    pub alert: &'a crate::alerts::AlertDraft,
    pub customer_name: &'a str,
    pub customer_external_id: &'a str,
}

impl AutomationRule {
    /// The actions this rule takes for an alert (none when it does not match).
    pub fn actions_for(&self, cx: &AlertContext<'_>) -> Vec<(ActionKind, ActionDraft)> {
        let a = cx.alert;
        let facts = AlertFacts {
            kind: a.kind,
            risk_level: a.risk_level,
            delta: a.delta,
        };
        if !self.matches(&facts) {
            return Vec::new();
        }
        let draft = |task: Option<TaskDraft>| ActionDraft {
            rule_name: self.name.clone(),
            customer_name: cx.customer_name.to_owned(),
            customer_external_id: cx.customer_external_id.to_owned(),
            alert_kind: a.kind,
            risk_level: a.risk_level,
            score: a.score,
            delta: a.delta,
            headline: a.headline.clone(),
            signals: a.signals.clone(),
            suggested_action: a.suggested_action.clone(),
            task,
        };
        let mut out = Vec::new();
        if let Some(t) = &self.task {
            let due = a.occurred_at.date_naive() + chrono::Days::new(u64::from(t.due_in_days));
            out.push((
                ActionKind::Task,
                draft(Some(TaskDraft {
                    subject: Self::task_subject(t, cx.customer_name, a.risk_level),
                    due,
                    priority: t.priority,
                })),
            ));
        }
        if self.chatter.is_some() {
            out.push((ActionKind::Chatter, draft(None)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> AutomationRule {
        AutomationRule {
            name: "At risk".into(),
            enabled: true,
            when: RuleTrigger {
                alert_kinds: [AlertKind::CustomerAtRisk].into_iter().collect(),
                min_risk: None,
                min_score_drop: None,
            },
            task: Some(TaskAction {
                subject: "Call {customer}: risk {risk}".into(),
                due_in_days: 3,
                priority: TaskPriority::High,
            }),
            chatter: None,
        }
    }

    fn facts(kind: AlertKind, risk: RiskLevel, delta: i64) -> AlertFacts {
        AlertFacts {
            kind,
            risk_level: risk,
            delta: Some(delta),
        }
    }

    #[test]
    fn a_rule_fires_on_any_of_its_conditions() {
        let mut r = rule();
        assert!(r.matches(&facts(AlertKind::CustomerAtRisk, RiskLevel::High, -20)));
        assert!(!r.matches(&facts(AlertKind::HealthScoreDrop, RiskLevel::High, -20)));
        r.when.min_score_drop = Some(15);
        assert!(r.matches(&facts(AlertKind::HealthScoreDrop, RiskLevel::Medium, -15)));
        assert!(!r.matches(&facts(AlertKind::HealthScoreDrop, RiskLevel::Medium, -14)));
        r.when.min_risk = Some(RiskLevel::Critical);
        assert!(r.matches(&facts(AlertKind::BillingRetryFailed, RiskLevel::Critical, 0)));
        r.enabled = false;
        assert!(!r.matches(&facts(AlertKind::CustomerAtRisk, RiskLevel::Critical, -50)));
    }

    #[test]
    fn a_rule_without_an_action_or_a_condition_is_refused_by_name() {
        let mut r = rule();
        r.task = None;
        assert_eq!(r.validate().map_err(|e| e.field), Err("task".to_owned()));
        let mut r = rule();
        r.when = RuleTrigger::default();
        assert_eq!(r.validate().map_err(|e| e.field), Err("when".to_owned()));
        assert!(rule().validate().is_ok());
    }

    #[test]
    fn subjects_fill_in_customer_and_risk() {
        let r = rule();
        let task = r
            .task
            .as_ref()
            .map(|t| AutomationRule::task_subject(t, "Acme", RiskLevel::High));
        assert_eq!(task.as_deref(), Some("Call Acme: risk High"));
    }

    #[test]
    fn org_type_mismatches_are_explained() {
        assert!(Environment::Production.admits(false).is_ok());
        assert!(Environment::MyDomain.admits(true).is_ok());
        assert!(Environment::Production
            .admits(true)
            .is_err_and(|e| e.contains("Sandbox")));
        assert!(Environment::parse("staging").is_err_and(|e| e.field == "environment"));
    }

    #[test]
    fn settings_name_the_bad_field() {
        let mut s = SyncSettings::default();
        assert!(s.validate().is_ok());
        s.account_fields = vec!["Region__c".into(), "bad name".into()];
        assert_eq!(s.validate().map_err(|e| e.field), Err("account_fields".to_owned()));
        let s = SyncSettings {
            sync_interval_minutes: 5,
            ..SyncSettings::default()
        };
        assert_eq!(
            s.validate().map_err(|e| e.field),
            Err("sync_interval_minutes".to_owned())
        );
    }
}
