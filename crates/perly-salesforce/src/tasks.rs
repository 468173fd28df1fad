//! Builds the body of the follow-up `Task` Perly creates for an account
//! owner when a customer's risk rises ([`crate::Client::create`] with
//! `"Task"`). Pure; text is cut to Salesforce's field lengths so a long
//! alert never makes the create fail with `STRING_TOO_LONG`.

use chrono::NaiveDate;
use perly_domain::salesforce::TaskPriority;
use serde_json::{json, Value};

/// `Subject` holds at most this many characters.
pub const SUBJECT_MAX: usize = 255;
/// `Description` (Comments) holds at most this many characters.
pub const DESCRIPTION_MAX: usize = 32_000;

/// A task to create, `Not Started`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    pub subject: String,
    /// The record the task is about (the Account).
    pub what_id: String,
    /// Who should do it; `None` leaves it to Salesforce (the connected user).
    pub owner_id: Option<String>,
    /// The due date.
    pub activity_date: NaiveDate,
    pub priority: TaskPriority,
    pub description: String,
}

/// `text` cut to `max` characters (not bytes), ending in `…` when cut.
pub fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some(_) => {
            let keep: String = text.chars().take(max.saturating_sub(1)).collect();
            format!("{keep}…")
        }
    }
}

impl NewTask {
    /// The `POST /sobjects/Task` body.
    pub fn to_body(&self) -> Value {
        let mut body = json!({
            "Subject": cut(&self.subject, SUBJECT_MAX),
            "WhatId": self.what_id,
            "ActivityDate": self.activity_date.format("%Y-%m-%d").to_string(),
            "Priority": self.priority.as_str(),
            "Status": "Not Started",
            "Description": cut(&self.description, DESCRIPTION_MAX),
        });
        if let (Some(owner), Some(map)) = (&self.owner_id, body.as_object_mut()) {
            map.insert("OwnerId".into(), Value::String(owner.clone()));
        }
        body
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::fixtures::spec;

    fn task() -> NewTask {
        NewTask {
            subject: "Perly: Acme Corp moved to HIGH churn risk (score 42, -18)".into(),
            what_id: "0015e00000AbCdEAAV".into(),
            owner_id: Some("0055e000001AbCdAAA".into()),
            activity_date: NaiveDate::from_ymd_opt(2024, 6, 4).unwrap(),
            priority: TaskPriority::High,
            description: "Signals: Login frequency down 60%; Payment failed twice; Support tickets up.\nSuggested action: Schedule a check-in call with the account owner.\nPerly profile: https://perly.example.com/customers/acme".into(),
        }
    }

    #[test]
    fn builds_the_task_of_the_spec() {
        let file: Value = serde_json::from_str(&spec("activities/task_create_request_constructed.json")).unwrap();
        assert_eq!(task().to_body(), file["body"]);
    }

    #[test]
    fn without_an_owner_the_field_is_left_out() {
        let mut t = task();
        t.owner_id = None;
        assert!(t.to_body().get("OwnerId").is_none());
    }

    #[test]
    fn long_subjects_are_cut_on_a_character_boundary() {
        let mut t = task();
        t.subject = "é".repeat(300);
        let body = t.to_body();
        let subject = body["Subject"].as_str().unwrap();
        assert_eq!(subject.chars().count(), SUBJECT_MAX);
        assert!(subject.ends_with('…'));
        assert_eq!(cut("short", SUBJECT_MAX), "short");
        assert_eq!(cut(&"a".repeat(255), SUBJECT_MAX), "a".repeat(255));
    }
}
