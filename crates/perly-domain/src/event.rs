//! Ingested events: the public event types of `POST /api/v1/events` and their
//! parsing. Each row is parsed on its own so one bad row is rejected with an
//! error naming its field while the rest of the batch is kept.

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::FieldError;

/// How far in the future an `occurred_at` may be (clock skew allowance).
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);
/// Longest accepted id, customer id, user id, feature or metric name.
pub const MAX_ID_LEN: usize = 200;

/// One parsed, valid event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The caller's event id; ingest is idempotent on it.
    pub id: String,
    /// The customer's `external_id`.
    pub customer_id: String,
    pub occurred_at: DateTime<Utc>,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Support ticket priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketPriority {
    Low,
    Normal,
    High,
    Urgent,
}

impl TicketPriority {
    /// How much an open ticket of this priority weighs on support load.
    pub fn load(self) -> f64 {
        match self {
            Self::Low => 0.5,
            Self::Normal => 1.0,
            Self::High => 2.0,
            Self::Urgent => 4.0,
        }
    }
}

/// Kinds of CRM activity (calls, emails, meetings), from Salesforce or the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivityType {
    Call,
    Email,
    Meeting,
    Other,
}

/// Where a CRM opportunity stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpportunityStatus {
    Open,
    Won,
    Lost,
    /// Deleted in the CRM: no longer counts.
    Deleted,
}

/// What a CRM opportunity is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpportunityCategory {
    Renewal,
    Expansion,
    NewBusiness,
    Other,
}

impl OpportunityCategory {
    /// From Salesforce's `Opportunity.Type` (standard values "Existing
    /// Customer - Renewal", "Existing Customer - Upgrade", "New Customer", …).
    pub fn from_type(t: &str) -> Self {
        let t = t.to_ascii_lowercase();
        if t.contains("renew") {
            Self::Renewal
        } else if ["upgrade", "upsell", "expan", "add-on", "addon", "cross"]
            .iter()
            .any(|w| t.contains(w))
        {
            Self::Expansion
        } else if t.contains("new") {
            Self::NewBusiness
        } else {
            Self::Other
        }
    }
}

/// The event types and their fields, exactly as the public contract names them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    UserActive {
        user_id: String,
    },
    FeatureUsed {
        feature: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
    },
    SeatsChanged {
        seats_used: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seats_purchased: Option<u32>,
    },
    TicketOpened {
        ticket_id: String,
        priority: TicketPriority,
    },
    TicketClosed {
        ticket_id: String,
    },
    UsageMeasured {
        metric: String,
        value: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<f64>,
    },
    PaymentSucceeded {
        amount: f64,
    },
    PaymentFailed {
        amount: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    BillingRetryFailed {
        amount: f64,
        attempt: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next_retry_at: Option<DateTime<Utc>>,
    },
    NpsResponse {
        score: u8,
    },
    PlanChanged {
        plan: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mrr: Option<f64>,
    },
    /// Extension: a call, email or meeting with the account (CRM activity).
    CrmActivity {
        activity_type: ActivityType,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject: Option<String>,
    },
    /// Extension: the state of a CRM opportunity (renewal, expansion, …) as
    /// of `occurred_at`; the newest state of each opportunity counts.
    CrmOpportunity {
        opportunity_id: String,
        status: OpportunityStatus,
        category: OpportunityCategory,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        amount: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        close_date: Option<chrono::NaiveDate>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stage: Option<String>,
    },
}

/// All event type names, for error messages and the OpenAPI document.
pub const EVENT_TYPES: &[&str] = &[
    "user_active",
    "feature_used",
    "seats_changed",
    "ticket_opened",
    "ticket_closed",
    "usage_measured",
    "payment_succeeded",
    "payment_failed",
    "billing_retry_failed",
    "nps_response",
    "plan_changed",
    "crm_activity",
    "crm_opportunity",
];

impl EventKind {
    /// The wire name of the type.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::UserActive { .. } => "user_active",
            Self::FeatureUsed { .. } => "feature_used",
            Self::SeatsChanged { .. } => "seats_changed",
            Self::TicketOpened { .. } => "ticket_opened",
            Self::TicketClosed { .. } => "ticket_closed",
            Self::UsageMeasured { .. } => "usage_measured",
            Self::PaymentSucceeded { .. } => "payment_succeeded",
            Self::PaymentFailed { .. } => "payment_failed",
            Self::BillingRetryFailed { .. } => "billing_retry_failed",
            Self::NpsResponse { .. } => "nps_response",
            Self::PlanChanged { .. } => "plan_changed",
            Self::CrmActivity { .. } => "crm_activity",
            Self::CrmOpportunity { .. } => "crm_opportunity",
        }
    }
}

/// Reads the fields of one JSON object, naming `prefix.field` in every error.
struct Row<'a> {
    obj: &'a Map<String, Value>,
    prefix: &'a str,
}

impl<'a> Row<'a> {
    fn path(&self, key: &str) -> String {
        format!("{}.{key}", self.prefix)
    }

    fn missing(&self, key: &str) -> FieldError {
        FieldError::new("missing_field", self.path(key), format!("`{key}` is required"))
    }

    fn invalid(&self, key: &str, message: impl Into<String>) -> FieldError {
        FieldError::new("invalid_field", self.path(key), message)
    }

    fn opt(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn opt_str(&self, key: &str) -> Result<Option<String>, FieldError> {
        match self.opt(key) {
            None => Ok(None),
            Some(Value::String(s)) => {
                let s = s.trim();
                if s.is_empty() {
                    Err(self.invalid(key, format!("`{key}` must not be empty")))
                } else if s.chars().any(char::is_control) {
                    Err(self.invalid(key, format!("`{key}` must not contain control characters")))
                } else if s.len() > MAX_ID_LEN {
                    Err(self.invalid(key, format!("`{key}` is longer than {MAX_ID_LEN} characters")))
                } else {
                    Ok(Some(s.to_owned()))
                }
            }
            Some(_) => Err(self.invalid(key, format!("`{key}` must be a string"))),
        }
    }

    fn str(&self, key: &str) -> Result<String, FieldError> {
        self.opt_str(key)?.ok_or_else(|| self.missing(key))
    }

    fn opt_text(&self, key: &str, max: usize) -> Result<Option<String>, FieldError> {
        match self.opt(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.contains('\0') => {
                Err(self.invalid(key, format!("`{key}` must not contain NUL characters")))
            }
            Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.clone())),
            Some(Value::String(_)) => Err(self.invalid(key, format!("`{key}` is longer than {max} characters"))),
            Some(_) => Err(self.invalid(key, format!("`{key}` must be a string"))),
        }
    }

    fn opt_amount(&self, key: &str) -> Result<Option<f64>, FieldError> {
        match self.opt(key) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(n) if n.is_finite() && n >= 0.0 => Ok(Some(n)),
                Some(_) => Err(FieldError::new(
                    "negative_amount",
                    self.path(key),
                    format!("`{key}` must be zero or more"),
                )),
                None => Err(self.invalid(key, format!("`{key}` must be a number"))),
            },
        }
    }

    fn amount(&self, key: &str) -> Result<f64, FieldError> {
        self.opt_amount(key)?.ok_or_else(|| self.missing(key))
    }

    fn opt_count(&self, key: &str) -> Result<Option<u32>, FieldError> {
        match self.opt(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| self.invalid(key, format!("`{key}` must be a whole number, zero or more"))),
        }
    }

    fn count(&self, key: &str) -> Result<u32, FieldError> {
        self.opt_count(key)?.ok_or_else(|| self.missing(key))
    }

    fn opt_time(&self, key: &str) -> Result<Option<DateTime<Utc>>, FieldError> {
        match self.opt(key) {
            None => Ok(None),
            Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
                .map(|t| Some(t.with_timezone(&Utc)))
                .map_err(|_| {
                    FieldError::new(
                        "invalid_timestamp",
                        self.path(key),
                        format!("`{key}` must be an RFC 3339 timestamp such as 2026-11-20T10:00:00Z"),
                    )
                }),
            Some(_) => Err(FieldError::new(
                "invalid_timestamp",
                self.path(key),
                format!("`{key}` must be an RFC 3339 timestamp string"),
            )),
        }
    }

    fn choice<T: serde::de::DeserializeOwned>(&self, key: &str, allowed: &str) -> Result<T, FieldError> {
        let v = self.opt(key).ok_or_else(|| self.missing(key))?;
        serde_json::from_value(v.clone()).map_err(|_| self.invalid(key, format!("`{key}` must be one of {allowed}")))
    }
}

/// Earliest accepted `occurred_at`: older rows are almost surely a unit mistake.
fn earliest_accepted() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Parses row `index` of an events batch. `now` bounds `occurred_at` from above.
pub fn parse_event(index: usize, value: &Value, now: DateTime<Utc>) -> Result<Event, FieldError> {
    let prefix = format!("events[{index}]");
    let Some(obj) = value.as_object() else {
        return Err(FieldError::new(
            "invalid_row",
            prefix,
            "each event must be a JSON object",
        ));
    };
    let row = Row { obj, prefix: &prefix };
    let id = row.str("id")?;
    let customer_id = row.str("customer_id")?;
    let type_name = match row.opt("type") {
        None => return Err(row.missing("type")),
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(row.invalid("type", "`type` must be a string")),
    };
    let occurred_at = row.opt_time("occurred_at")?.ok_or_else(|| row.missing("occurred_at"))?;
    if occurred_at > now + MAX_CLOCK_SKEW {
        return Err(FieldError::new(
            "future_timestamp",
            row.path("occurred_at"),
            "`occurred_at` is more than 5 minutes in the future",
        ));
    }
    if occurred_at < earliest_accepted() {
        return Err(FieldError::new(
            "invalid_timestamp",
            row.path("occurred_at"),
            "`occurred_at` is before 2000-01-01",
        ));
    }
    let kind = match type_name {
        "user_active" => EventKind::UserActive {
            user_id: row.str("user_id")?,
        },
        "feature_used" => EventKind::FeatureUsed {
            feature: row.str("feature")?,
            user_id: row.opt_str("user_id")?,
        },
        "seats_changed" => EventKind::SeatsChanged {
            seats_used: row.count("seats_used")?,
            seats_purchased: row.opt_count("seats_purchased")?,
        },
        "ticket_opened" => EventKind::TicketOpened {
            ticket_id: row.str("ticket_id")?,
            priority: row.choice("priority", "low, normal, high, urgent")?,
        },
        "ticket_closed" => EventKind::TicketClosed {
            ticket_id: row.str("ticket_id")?,
        },
        "usage_measured" => {
            let value = row.amount("value")?;
            let limit = row.opt_amount("limit")?;
            if limit == Some(0.0) {
                return Err(row.invalid("limit", "`limit` must be greater than zero"));
            }
            EventKind::UsageMeasured {
                metric: row.str("metric")?,
                value,
                limit,
            }
        }
        "payment_succeeded" => EventKind::PaymentSucceeded {
            amount: row.amount("amount")?,
        },
        "payment_failed" => EventKind::PaymentFailed {
            amount: row.amount("amount")?,
            reason: row.opt_text("reason", 500)?,
        },
        "billing_retry_failed" => EventKind::BillingRetryFailed {
            amount: row.amount("amount")?,
            attempt: row.count("attempt")?,
            next_retry_at: row.opt_time("next_retry_at")?,
        },
        "nps_response" => {
            let score = match row.opt("score") {
                None => return Err(row.missing("score")),
                Some(v) => v.as_u64().filter(|s| *s <= 10),
            };
            let score = score.ok_or_else(|| {
                FieldError::new(
                    "out_of_range",
                    row.path("score"),
                    "`score` must be a whole number from 0 to 10",
                )
            })?;
            EventKind::NpsResponse { score: score as u8 }
        }
        "plan_changed" => EventKind::PlanChanged {
            plan: row.str("plan")?,
            mrr: row.opt_amount("mrr")?,
        },
        "crm_activity" => EventKind::CrmActivity {
            activity_type: row.choice("activity_type", "call, email, meeting, other")?,
            subject: row.opt_text("subject", 500)?,
        },
        "crm_opportunity" => {
            let close_date = match row.opt_text("close_date", 10)? {
                None => None,
                Some(d) => Some(
                    chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d")
                        .map_err(|_| row.invalid("close_date", "`close_date` must be a date like 2026-12-31"))?,
                ),
            };
            EventKind::CrmOpportunity {
                opportunity_id: row.str("opportunity_id")?,
                status: row.choice("status", "open, won, lost, deleted")?,
                category: row.choice("category", "renewal, expansion, new_business, other")?,
                amount: row.opt_amount("amount")?,
                close_date,
                stage: row.opt_text("stage", 255)?,
            }
        }
        other => {
            return Err(FieldError::new(
                "unknown_event_type",
                row.path("type"),
                format!(
                    "unknown event type `{}`; expected one of {}",
                    truncate(other, 60),
                    EVENT_TYPES.join(", ")
                ),
            ))
        }
    };
    Ok(Event {
        id,
        customer_id,
        occurred_at,
        kind,
    })
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0)
            .single()
            .expect("valid time")
    }

    fn row(extra: Value) -> Value {
        let mut base = json!({"id": "evt_1", "customer_id": "acme", "occurred_at": "2026-11-20T10:00:00Z"});
        if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        base
    }

    #[rstest]
    #[case(json!({"type": "user_active", "user_id": "u1"}))]
    #[case(json!({"type": "feature_used", "feature": "reports"}))]
    #[case(json!({"type": "seats_changed", "seats_used": 10, "seats_purchased": 20}))]
    #[case(json!({"type": "ticket_opened", "ticket_id": "t1", "priority": "urgent"}))]
    #[case(json!({"type": "ticket_closed", "ticket_id": "t1"}))]
    #[case(json!({"type": "usage_measured", "metric": "api_calls", "value": 10.0, "limit": 100.0}))]
    #[case(json!({"type": "payment_succeeded", "amount": 10.5}))]
    #[case(json!({"type": "payment_failed", "amount": 10.5, "reason": "card_declined"}))]
    #[case(json!({"type": "billing_retry_failed", "amount": 10.5, "attempt": 2, "next_retry_at": "2026-11-22T10:00:00Z"}))]
    #[case(json!({"type": "nps_response", "score": 10}))]
    #[case(json!({"type": "plan_changed", "plan": "pro", "mrr": 100}))]
    #[case(json!({"type": "crm_activity", "activity_type": "meeting"}))]
    #[case(json!({"type": "crm_opportunity", "opportunity_id": "006A", "status": "open", "category": "renewal", "amount": 1200, "close_date": "2026-12-31"}))]
    fn every_public_event_type_parses(#[case] extra: Value) {
        let e = parse_event(0, &row(extra.clone()), now()).expect("valid event");
        assert_eq!(Some(e.kind.type_name()), extra["type"].as_str());
        // The stored form round-trips.
        let stored = serde_json::to_value(&e).expect("serialise");
        assert_eq!(serde_json::from_value::<Event>(stored).expect("deserialise"), e);
    }

    #[rstest]
    #[case(json!({"type": "nope"}), "unknown_event_type", "events[4].type")]
    #[case(json!({"type": "nps_response", "score": 11}), "out_of_range", "events[4].score")]
    #[case(json!({"type": "nps_response", "score": -1}), "out_of_range", "events[4].score")]
    #[case(json!({"type": "payment_failed", "amount": -5}), "negative_amount", "events[4].amount")]
    #[case(json!({"type": "user_active"}), "missing_field", "events[4].user_id")]
    #[case(json!({"type": "user_active", "user_id": "u", "occurred_at": "yesterday"}), "invalid_timestamp", "events[4].occurred_at")]
    #[case(json!({"type": "user_active", "user_id": "u", "occurred_at": "2026-11-24T12:06:00Z"}), "future_timestamp", "events[4].occurred_at")]
    #[case(json!({"type": "ticket_opened", "ticket_id": "t", "priority": "meh"}), "invalid_field", "events[4].priority")]
    #[case(json!({"type": "user_active", "user_id": "u", "customer_id": 7}), "invalid_field", "events[4].customer_id")]
    fn bad_rows_name_the_field(#[case] extra: Value, #[case] code: &str, #[case] field: &str) {
        let err = parse_event(4, &row(extra), now()).expect_err("must be rejected");
        assert_eq!((err.code.as_str(), err.field.as_str()), (code, field), "{err}");
    }

    #[test]
    fn a_timestamp_within_the_clock_skew_allowance_is_accepted() {
        let r = row(json!({"type": "user_active", "user_id": "u", "occurred_at": "2026-11-24T12:04:00Z"}));
        assert!(parse_event(0, &r, now()).is_ok());
    }
}
