//! Perly writing to Salesforce, through the real server and the stand-in:
//! its three Account fields made when missing and left alone when present,
//! changed scores pushed (once, per record, with a locked row retried and
//! a deleted Account given up), automation rules that make exactly one
//! Task and one Chatter post per alert even when the first attempt fails or
//! its answer is lost, and rules refused by name when they lack an action.

use perly_standins::salesforce::{OrgHandle, OrgSpec, SalesforceFault};
use serde_json::{json, Value};

use crate::helpers::*;
use crate::salesforce::{admin, connect, small_org};

const FIELDS: [&str; 3] = ["Perly_Health_Score__c", "Perly_Risk_Level__c", "Perly_Last_Updated__c"];

fn custom_field_creates(org: &OrgHandle) -> usize {
    org.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/tooling/sobjects/CustomField"))
        .count()
}

fn collection_patches(org: &OrgHandle) -> usize {
    org.requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with("/composite/sobjects"))
        .count()
}

/// A connected, synced app whose scores are set by seat use alone.
async fn synced_app(org: OrgSpec) -> TestApp {
    let app = spawn_app_with_salesforce(org).await;
    let web = admin(&app).await;
    connect(&web, "production", "").await;
    assert!(matches!(
        app.sync().await.as_slice(),
        [perly_salesforce::sync::RunOutcome::Succeeded { .. }]
    ));
    seat_only_scorecard(&app).await;
    app
}

/// Gives the Account's customer 100 seats, so `set_score` sets its score.
async fn with_seats(app: &TestApp, account: &str) {
    let name = app.customer(account).await["name"].clone();
    app.customers(json!([{"external_id": account, "name": name, "seats_purchased": 100}]))
        .await;
}

#[tokio::test]
async fn perly_fields_are_created_when_missing_and_left_alone_when_present() {
    // An org without the fields: connecting makes them, the permission set
    // and its assignment, and the fields become readable and writable.
    let app = spawn_app_with_salesforce(small_org()).await;
    let web = admin(&app).await;
    let org = app.sf().production();
    assert!(org
        .record("Account", &org.account_id(0))
        .is_some_and(|a| a.get(FIELDS[0]).is_none()));
    connect(&web, "production", "").await;
    assert_eq!(custom_field_creates(&org), 3);
    let (_, status) = app.get("/api/v1/salesforce").await;
    let fields = &status["connection"]["fields"];
    assert_eq!(fields["ready"], true, "{status}");
    for (i, name) in FIELDS.iter().enumerate() {
        assert_eq!(fields["fields"][i]["api_name"], *name);
        assert_eq!(fields["fields"][i]["field"], "created", "{fields}");
    }
    assert_eq!(fields["permission_set"], "created");
    let sets = org.records("PermissionSet");
    assert!(sets.iter().any(|s| s["Name"] == "Perly_Integration"), "{sets:?}");

    // On demand again: everything is there, nothing is made twice.
    let (code, again) = app.post("/api/v1/salesforce/perly-fields", json!({})).await;
    assert_eq!(code, 200, "{again}");
    assert!(again["fields"]
        .as_array()
        .is_some_and(|f| f.iter().all(|f| f["field"] == "present" && f["access"] == "present")));
    assert_eq!(again["permission_set"], "present");
    assert_eq!(again["assignment"], "present");
    assert_eq!(custom_field_creates(&org), 3, "no field created twice");

    // An org where an admin made the fields already: they are left alone.
    let app = spawn_app_with_salesforce(small_org()).await;
    let web = admin(&app).await;
    let org = app.sf().production();
    org.add_custom_field("Account", FIELDS[0], "Number", "Perly Health Score");
    org.add_custom_field("Account", FIELDS[1], "Picklist", "Perly Risk Level");
    org.add_custom_field("Account", FIELDS[2], "DateTime", "Perly Last Updated");
    connect(&web, "production", "").await;
    assert_eq!(custom_field_creates(&org), 0, "present fields are not created again");
    let (_, status) = app.get("/api/v1/salesforce").await;
    let fields = &status["connection"]["fields"];
    assert_eq!(fields["ready"], true, "{status}");
    assert!(fields["fields"]
        .as_array()
        .is_some_and(|f| f.iter().all(|f| f["field"] == "present")));
}

#[tokio::test]
async fn a_changed_score_is_pushed_onto_the_account_once_and_failures_are_handled_per_record() {
    let app = synced_app(small_org()).await;
    let org = app.sf().production();
    let first = org.account_id(0);
    let second = org.account_id(1);
    let third = org.account_id(2);
    // Accounts without a score yet push nothing.
    app.rescore().await;
    assert_eq!(app.outbox().await.pushed, 0);
    assert_eq!(collection_patches(&org), 0);

    // A score is pushed: the three values land on the Account.
    for a in [&first, &second, &third] {
        with_seats(&app, a).await;
    }
    app.advance(chrono::Duration::minutes(1));
    set_score(&app, &first, 35).await;
    let customer = app.customer(&first).await;
    assert_eq!(customer["score"], 35, "{customer}");
    let stats = app.outbox().await;
    assert_eq!(stats.pushed, 1, "{stats:?}");
    let account = org.record("Account", &first).expect("account");
    assert_eq!(account[FIELDS[0]], 35.0, "{account}");
    let scored_at = customer["scored_at"].as_str().unwrap_or_default();
    assert_eq!(
        account[FIELDS[2]].as_str().map(|t| t[..19].to_owned()),
        Some(scored_at[..19].to_owned()),
        "{account} / {customer}"
    );
    let risk = customer["risk_level"].as_str().unwrap_or_default();
    assert_eq!(
        account[FIELDS[1]].as_str().map(str::to_lowercase).as_deref(),
        Some(risk),
        "{account}"
    );
    let patches = collection_patches(&org);

    // Rescoring to the same values pushes nothing.
    app.advance(chrono::Duration::minutes(1));
    set_score(&app, &first, 35).await;
    assert_eq!(app.outbox().await.pushed, 0);
    assert_eq!(collection_patches(&org), patches, "no call without a change");

    // One record locked, one deleted: the rest is written, the locked one
    // retried later, the deleted one given up.
    org.inject(SalesforceFault::FailRecords {
        ids: vec![second.clone()],
        status_code: "UNABLE_TO_LOCK_ROW".into(),
        message: "unable to obtain exclusive access to this record".into(),
        times: 1,
    });
    org.delete("Account", &third);
    app.advance(chrono::Duration::minutes(1));
    set_score(&app, &first, 60).await;
    set_score(&app, &second, 61).await;
    set_score(&app, &third, 62).await;
    let stats = app.outbox().await;
    assert_eq!((stats.pushed, stats.deferred), (1, 2), "{stats:?}");
    assert_eq!(org.record("Account", &first).expect("a")[FIELDS[0]], 60.0);
    assert_ne!(org.record("Account", &second).expect("b")[FIELDS[0]], 61.0);
    let (_, status) = app.get("/api/v1/salesforce").await;
    assert_eq!(status["pushes"]["pending"], 1, "{status}");
    assert_eq!(status["pushes"]["given_up"], 1, "{status}");
    // Not before its backoff; then it goes.
    assert_eq!(app.outbox().await.pushed, 0);
    app.advance(chrono::Duration::minutes(2));
    assert_eq!(app.outbox().await.pushed, 1);
    assert_eq!(org.record("Account", &second).expect("b")[FIELDS[0]], 61.0);
    let (_, status) = app.get("/api/v1/salesforce").await;
    assert_eq!(status["pushes"]["pending"], 0, "{status}");
}

fn marked(org: &OrgHandle, object: &str, text_field: &str, marker: &str) -> Vec<Value> {
    org.records(object)
        .into_iter()
        .filter(|r| r[text_field].as_str().is_some_and(|t| t.contains(marker)))
        .collect()
}

#[tokio::test]
async fn a_rule_makes_exactly_one_task_and_one_post_even_when_the_first_attempts_fail() {
    let app = synced_app(small_org()).await;
    let org = app.sf().production();
    let account = org.account_id(4);
    let (status, rule) = app
        .post(
            "/api/v1/salesforce/rules",
            json!({
                "name": "Billing trouble",
                "when": {"alert_kinds": ["billing_retry_failed"]},
                "task": {"subject": "Call {customer} about billing ({risk})", "due_in_days": 2, "priority": "High"},
                "chatter": {},
            }),
        )
        .await;
    assert_eq!(status, 201, "{rule}");
    with_seats(&app, &account).await;
    set_score(&app, &account, 80).await;
    app.outbox().await;

    // The Task is created but its answer is lost; the post fails with a 503.
    org.inject(SalesforceFault::LoseResponses {
        method: "POST".into(),
        path_contains: "/sobjects/Task".into(),
        times: 1,
    });
    org.inject(SalesforceFault::Status {
        status: 503,
        times: 1,
        path_contains: Some("/chatter/feed-elements".into()),
    });
    billing_retry_failed(&app, &account, 1).await;
    let alerts = app.alerts(&account, "billing_retry_failed").await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert_id = alerts[0]["id"].as_str().unwrap_or_default().to_owned();
    let stats = app.outbox().await;
    assert_eq!((stats.actions, stats.deferred), (0, 2), "{stats:?}");
    let task_marker = format!("perly-alert:{alert_id}:task");
    let post_marker = format!("perly-alert:{alert_id}:chatter");
    assert_eq!(
        marked(&org, "Task", "Description", &task_marker).len(),
        1,
        "created, answer lost"
    );
    assert_eq!(marked(&org, "FeedItem", "Body", &post_marker).len(), 0);

    // After the backoff: the Task is found by its marker, the post is made.
    app.advance(chrono::Duration::minutes(1));
    let stats = app.outbox().await;
    assert_eq!(stats.actions, 2, "{stats:?}");
    app.advance(chrono::Duration::hours(2));
    assert_eq!(app.outbox().await.actions, 0, "nothing more to do");
    let tasks = marked(&org, "Task", "Description", &task_marker);
    assert_eq!(tasks.len(), 1, "exactly one Task: {tasks:?}");
    let posts = marked(&org, "FeedItem", "Body", &post_marker);
    assert_eq!(posts.len(), 1, "exactly one post: {posts:?}");
    let task = &tasks[0];
    let owner = org.record("Account", &account).expect("account")["OwnerId"].clone();
    assert_eq!(task["OwnerId"], owner, "the account owner's Task");
    assert_eq!(task["WhatId"], account.as_str());
    assert_eq!(task["Priority"], "High");
    let due =
        (app.now() - chrono::Duration::hours(2) - chrono::Duration::minutes(1)).date_naive() + chrono::Days::new(2);
    assert_eq!(task["ActivityDate"], due.format("%Y-%m-%d").to_string());
    let name = app.customer(&account).await["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        task["Subject"]
            .as_str()
            .is_some_and(|s| s.starts_with(&format!("Call {name} about billing"))),
        "{task}"
    );
    let description = task["Description"].as_str().unwrap_or_default();
    assert!(
        description.contains(&format!("{}/customers/{account}", app.base)),
        "{description}"
    );
    assert!(description.contains("Signals:"), "{description}");
    assert_eq!(posts[0]["ParentId"], account.as_str());

    let (_, actions) = app.get("/api/v1/salesforce/actions").await;
    let items = actions["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 2, "{actions}");
    assert!(
        items.iter().all(|a| a["state"] == "done" && a["remote_id"].is_string()),
        "{actions}"
    );
    assert_eq!(
        items
            .iter()
            .find(|a| a["kind"] == "task")
            .map(|a| a["attempts"].clone()),
        Some(json!(2))
    );

    // A disabled rule makes nothing for the next alert.
    let id = rule["id"].as_str().unwrap_or_default();
    let mut off = rule.clone();
    off["enabled"] = json!(false);
    let (status, body) = app.put(&format!("/api/v1/salesforce/rules/{id}"), off).await;
    assert_eq!(status, 200, "{body}");
    app.advance(chrono::Duration::days(2));
    billing_retry_failed(&app, &account, 2).await;
    assert_eq!(app.outbox().await.actions, 0);
}

#[tokio::test]
async fn a_rule_without_an_action_or_a_condition_is_refused_by_name_and_nothing_is_saved() {
    let app = spawn_app_with_salesforce(small_org()).await;
    for (body, field) in [
        (json!({"name": "Nothing to do", "when": {"min_risk": "high"}}), "task"),
        (json!({"name": "Never", "when": {}, "chatter": {}}), "when"),
        (
            json!({"name": "", "when": {"min_score_drop": 10}, "chatter": {}}),
            "name",
        ),
        (
            json!({"name": "Zero", "when": {"min_score_drop": 0}, "chatter": {}}),
            "when.min_score_drop",
        ),
    ] {
        let (status, answer) = app.post("/api/v1/salesforce/rules", body.clone()).await;
        assert_eq!(status, 422, "{body} → {answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
        assert!(answer["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (status, answer) = app
        .post(
            "/api/v1/salesforce/rules",
            json!({"name": "Typo", "when": {"alert_kinds": ["customer_at_rsk"]}, "chatter": {}}),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["error"]["field"]
            .as_str()
            .is_some_and(|f| f.starts_with("when.alert_kinds")),
        "{answer}"
    );
    let (_, list) = app.get("/api/v1/salesforce/rules").await;
    assert_eq!(list["items"], json!([]), "nothing half-saved: {list}");
    let (status, _) = app.get("/api/v1/salesforce/rules/not-a-rule").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn automation_rules_are_managed_in_settings_and_bad_forms_are_explained() {
    let app = spawn_app_with_salesforce(small_org()).await;
    let web = admin(&app).await;
    connect(&web, "production", "").await;
    let (status, page, _) = web.get("/settings/salesforce").await;
    assert_eq!(status, 200);
    assert!(page.contains("Automation Rules"), "sub-tab link");
    assert!(
        page.contains("Fields: <strong>ready (Perly made them"),
        "fields state shown"
    );
    let (status, page, _) = web.get("/settings/salesforce/rules").await;
    assert_eq!(status, 200);
    assert!(page.contains("No rules yet."));
    let csrf = crate::web::WebClient::csrf(&page);

    // No action: refused, with the reason, and nothing saved.
    let (status, _, headers) = web
        .post(
            "/settings/salesforce/rules",
            &[("csrf", &csrf), ("name", "Only a condition"), ("min_risk", "high")],
        )
        .await;
    assert_eq!(status, 303);
    let (_, page, _) = web.get(&crate::oauth::location(&headers)).await;
    assert!(page.contains("a rule needs at least one action"), "{page}");
    assert!(page.contains("No rules yet."));

    let (status, _, headers) = web
        .post(
            "/settings/salesforce/rules",
            &[
                ("csrf", &csrf),
                ("name", "Risky accounts"),
                ("min_risk", "high"),
                ("alert_kinds", "health_score_drop"),
                ("task", "on"),
                ("task_subject", "Call {customer}"),
                ("task_due_in_days", "2"),
                ("task_priority", "High"),
                ("chatter", "on"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    let (_, page, _) = web.get(&crate::oauth::location(&headers)).await;
    assert!(page.contains("Rule “Risky accounts” added."), "{page}");
    assert!(page.contains("health score drop, or risk High or above"), "{page}");
    let (_, list) = app.get("/api/v1/salesforce/rules").await;
    let rule = &list["items"][0];
    assert_eq!(rule["name"], "Risky accounts");
    assert_eq!(rule["task"]["priority"], "High");
    assert_eq!(rule["chatter"], json!({}));
    let id = rule["id"].as_str().unwrap_or_default().to_owned();

    let (status, _, _) = web
        .post(&format!("/settings/salesforce/rules/{id}/toggle"), &[("csrf", &csrf)])
        .await;
    assert_eq!(status, 303);
    let (_, one) = app.get(&format!("/api/v1/salesforce/rules/{id}")).await;
    assert_eq!(one["enabled"], false, "{one}");
    let (status, _, _) = web
        .post(&format!("/settings/salesforce/rules/{id}/delete"), &[("csrf", &csrf)])
        .await;
    assert_eq!(status, 303);
    let (_, list) = app.get("/api/v1/salesforce/rules").await;
    assert_eq!(list["items"], json!([]));
}
