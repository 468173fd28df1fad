//! Settings › Salesforce › Automation Rules: the rules (when an alert of
//! chosen kinds, a risk level at or above a threshold, or a score drop of
//! at least N occurs: a Task for the account owner and/or a Chatter post),
//! adding one, turning one on or off, removing one, and the Tasks and posts
//! they made lately with how each went.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use perly_domain::alerts::AlertKind;
use perly_domain::ids::RuleId;
use perly_domain::risk::RiskLevel;
use perly_domain::salesforce::{AutomationRule, ChatterAction, RuleTrigger, TaskAction, TaskPriority};
use perly_store::{ActionState, SalesforceRule};

use super::oauth::short;
use super::session::CurrentUser;
use super::{redirect_with_flash, render, take_flash, when, Flash, Nav, UiError};
use crate::AppState;

const PAGE: &str = "/settings/salesforce/rules";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(PAGE, get(page).post(create))
        .route("/settings/salesforce/rules/{id}/toggle", post(toggle))
        .route("/settings/salesforce/rules/{id}/delete", post(delete))
}

pub struct RuleRow {
    pub id: String,
    pub name: String,
    pub enabled: bool,
    pub when: String,
    pub then: String,
}

pub struct ActionRow {
    pub at: String,
    pub customer: String,
    pub kind: &'static str,
    pub rule: String,
    pub state: &'static str,
    pub detail: String,
}

pub struct Choice {
    pub value: &'static str,
    pub label: &'static str,
}

#[derive(Template)]
#[template(path = "settings_salesforce_rules.html")]
struct RulesPage {
    nav: Option<Nav>,
    flash: Option<Flash>,
    tab: &'static str,
    can_edit: bool,
    csrf: String,
    connected: bool,
    rules: Vec<RuleRow>,
    actions: Vec<ActionRow>,
    kinds: Vec<Choice>,
    risks: Vec<Choice>,
}

/// "billing retry failed, or risk High or above, or a drop of 10+ points".
fn describe_when(w: &RuleTrigger) -> String {
    let mut parts: Vec<String> = w.alert_kinds.iter().map(|k| k.label().to_lowercase()).collect();
    if let Some(r) = w.min_risk {
        parts.push(format!("risk {} or above", r.label()));
    }
    if let Some(d) = w.min_score_drop {
        parts.push(format!("a drop of {d}+ points"));
    }
    parts.join(", or ")
}

fn describe_then(r: &AutomationRule) -> String {
    let mut parts = Vec::new();
    if let Some(t) = &r.task {
        parts.push(format!(
            "Task “{}” ({} priority, due in {} days)",
            t.subject,
            t.priority.as_str(),
            t.due_in_days
        ));
    }
    if r.chatter.is_some() {
        parts.push("Chatter post".to_owned());
    }
    parts.join(" and ")
}

fn rule_row(r: &SalesforceRule) -> RuleRow {
    RuleRow {
        id: r.id.to_string(),
        name: r.rule.name.clone(),
        enabled: r.rule.enabled,
        when: describe_when(&r.rule.when),
        then: describe_then(&r.rule),
    }
}

async fn page(State(state): State<AppState>, user: CurrentUser, headers: HeaderMap) -> Result<Response, UiError> {
    let flash = take_flash(&state, &headers);
    let had_flash = flash.is_some();
    let ws = user.session.workspace.id;
    let rules = state.store.salesforce_rules(ws).await?;
    let names: HashMap<RuleId, String> = rules.iter().map(|r| (r.id, r.rule.name.clone())).collect();
    let actions = state
        .store
        .salesforce_actions(ws, 50)
        .await?
        .into_iter()
        .map(|a| ActionRow {
            at: when(a.created_at),
            customer: a.draft.customer_name.clone(),
            kind: match a.kind {
                perly_domain::salesforce::ActionKind::Task => "Task",
                perly_domain::salesforce::ActionKind::Chatter => "Chatter post",
            },
            rule: names.get(&a.rule_id).cloned().unwrap_or(a.draft.rule_name.clone()),
            state: match a.state {
                ActionState::Pending if a.attempts > 0 => "retrying",
                ActionState::Pending => "queued",
                ActionState::Done => "done",
                ActionState::Dead => "failed",
            },
            detail: match a.state {
                ActionState::Done => a.remote_id.unwrap_or_default(),
                _ => a.last_error.unwrap_or_default(),
            },
        })
        .collect();
    let page = RulesPage {
        nav: Some(user.nav("settings")),
        flash,
        tab: "salesforce",
        can_edit: user.is_admin(),
        csrf: user.session.csrf_token.clone(),
        connected: state.store.salesforce_connection(ws).await?.is_some(),
        rules: rules.iter().map(rule_row).collect(),
        actions,
        kinds: AlertKind::ALL
            .iter()
            .map(|k| Choice {
                value: k.as_str(),
                label: k.label(),
            })
            .collect(),
        risks: RiskLevel::ALL
            .iter()
            .map(|r| Choice {
                value: r.as_str(),
                label: r.label(),
            })
            .collect(),
    };
    Ok(render(&state, StatusCode::OK, &page, had_flash))
}

/// The rule a submitted form describes, or what is wrong with it.
fn rule_from_form(form: &[(String, String)]) -> Result<AutomationRule, String> {
    let one = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    };
    let mut alert_kinds = std::collections::BTreeSet::new();
    for (_, v) in form.iter().filter(|(n, _)| n == "alert_kinds") {
        alert_kinds.insert(v.parse::<AlertKind>()?);
    }
    let min_risk = one("min_risk")
        .map(|v| v.parse::<RiskLevel>().map_err(|_| format!("unknown risk level `{v}`")))
        .transpose()?;
    let min_score_drop = one("min_score_drop")
        .map(|v| {
            v.parse::<u32>()
                .map_err(|_| format!("the score drop must be a whole number of points, not `{v}`"))
        })
        .transpose()?;
    let task = match one("task") {
        None => None,
        Some(_) => Some(TaskAction {
            subject: one("task_subject").unwrap_or_default().to_owned(),
            due_in_days: one("task_due_in_days")
                .map(|v| {
                    v.parse::<u32>()
                        .map_err(|_| format!("days until due must be a whole number, not `{v}`"))
                })
                .transpose()?
                .unwrap_or(3),
            priority: match one("task_priority").unwrap_or("Normal") {
                "High" => TaskPriority::High,
                "Low" => TaskPriority::Low,
                "Normal" => TaskPriority::Normal,
                other => return Err(format!("unknown Task priority `{other}`")),
            },
        }),
    };
    let rule = AutomationRule {
        name: one("name").unwrap_or_default().to_owned(),
        enabled: true,
        when: RuleTrigger {
            alert_kinds,
            min_risk,
            min_score_drop,
        },
        task,
        chatter: one("chatter").map(|_| ChatterAction {}),
    };
    rule.validate().map_err(|e| e.message)?;
    Ok(rule)
}

async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, UiError> {
    let fields: HashMap<String, String> = form.iter().cloned().collect();
    user.check_admin_form(&fields)?;
    let rule = match rule_from_form(&form) {
        Ok(r) => r,
        Err(why) => return Ok(redirect_with_flash(&state, PAGE, "error", &short(&why))),
    };
    state
        .store
        .create_salesforce_rule(user.session.workspace.id, &rule, state.now())
        .await?;
    Ok(redirect_with_flash(
        &state,
        PAGE,
        "info",
        &format!("Rule “{}” added.", rule.name),
    ))
}

async fn load(state: &AppState, user: &CurrentUser, id: &str) -> Result<SalesforceRule, UiError> {
    let id: RuleId = id.parse().map_err(|_| UiError::NotFound)?;
    state
        .store
        .salesforce_rule(user.session.workspace.id, id)
        .await?
        .ok_or(UiError::NotFound)
}

async fn toggle(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    user.check_admin_form(&form)?;
    let mut rule = load(&state, &user, &id).await?;
    rule.rule.enabled = !rule.rule.enabled;
    state
        .store
        .update_salesforce_rule(user.session.workspace.id, rule.id, &rule.rule, state.now())
        .await?;
    let what = if rule.rule.enabled { "on" } else { "off" };
    Ok(redirect_with_flash(
        &state,
        PAGE,
        "info",
        &format!("Rule “{}” turned {what}.", rule.rule.name),
    ))
}

async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    user.check_admin_form(&form)?;
    let rule = load(&state, &user, &id).await?;
    state
        .store
        .delete_salesforce_rule(user.session.workspace.id, rule.id)
        .await?;
    Ok(redirect_with_flash(
        &state,
        PAGE,
        "info",
        &format!("Rule “{}” removed.", rule.rule.name),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn a_form_becomes_a_rule() {
        let rule = rule_from_form(&form(&[
            ("name", "Billing"),
            ("alert_kinds", "billing_retry_failed"),
            ("alert_kinds", "customer_at_risk"),
            ("min_score_drop", "15"),
            ("task", "on"),
            ("task_subject", "Call {customer}"),
            ("task_due_in_days", "2"),
            ("task_priority", "High"),
        ]))
        .expect("valid");
        assert_eq!(rule.when.alert_kinds.len(), 2);
        assert_eq!(rule.when.min_score_drop, Some(15));
        assert_eq!(
            rule.task.map(|t| (t.due_in_days, t.priority)),
            Some((2, TaskPriority::High))
        );
        assert!(rule.chatter.is_none());
        assert_eq!(
            describe_when(&RuleTrigger {
                min_risk: Some(RiskLevel::High),
                ..Default::default()
            }),
            "risk High or above"
        );
    }

    #[test]
    fn a_form_without_an_action_or_with_a_bad_number_says_what_is_wrong() {
        let e = rule_from_form(&form(&[("name", "x"), ("min_risk", "high")])).expect_err("no action");
        assert!(e.contains("at least one action"), "{e}");
        let e = rule_from_form(&form(&[("name", "x"), ("min_score_drop", "ten"), ("chatter", "on")])).expect_err("nan");
        assert!(e.contains("`ten`"), "{e}");
    }
}
