//! The Salesforce sync under field-level security, through the real server
//! and the stand-in: fields hidden from the integration user are left out
//! of the queries (Salesforce refuses a query naming one), every record is
//! still pulled, and the skipped fields are named, with what each would
//! have fed, on Settings › Salesforce, in the API and by the permission
//! check; a hidden field an object cannot do without fails that object,
//! with the field named, while the others sync.

use std::collections::BTreeSet;

use perly_salesforce::sync::RunOutcome;
use perly_standins::salesforce::OrgHandle;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::salesforce::{admin, connect, small_org};

/// Hidden from the integration user in the first test, with what each
/// feeds.
const HIDDEN: [(&str, &str, &str); 4] = [
    ("Account", "AnnualRevenue", "annual revenue unknown"),
    ("Contact", "Phone", "contacts show no phone"),
    ("Opportunity", "Amount", "renewal value unknown"),
    ("Opportunity", "Probability", "win probability unknown"),
];

const OBJECTS: [&str; 7] = [
    "Account",
    "Contact",
    "AccountContactRole",
    "Opportunity",
    "OpportunityContactRole",
    "Task",
    "Event",
];

/// How many records of `object` the org holds, deleted ones included
/// (`queryAll`, as the sync reads), asked of the org itself.
async fn org_count(org: &OrgHandle, object: &str) -> u64 {
    let token = org.issue_token(&oauth_app("salesforce").client_id);
    let url = format!("{}/services/data/v61.0/queryAll", org.base_url());
    let body: Value = reqwest::Client::new()
        .get(&url)
        .query(&[("q", format!("SELECT COUNT() FROM {object}"))])
        .bearer_auth(&token)
        .send()
        .await
        .expect("count")
        .json()
        .await
        .expect("json");
    body["totalSize"].as_u64().unwrap_or_else(|| panic!("{object}: {body}"))
}

/// Rows the run pulled per object, from `GET /api/v1/salesforce/sync`.
fn rows_of(sync: &Value, object: &str) -> u64 {
    object_of(sync, object)["rows"].as_u64().unwrap_or_default()
}

fn object_of(sync: &Value, object: &str) -> Value {
    sync["current"]["objects"]
        .as_array()
        .and_then(|objects| objects.iter().find(|o| o["object"] == object))
        .cloned()
        .unwrap_or_default()
}

/// `(object, field, effect)` of a `hidden_fields` list.
fn hidden_set(list: &Value) -> BTreeSet<(String, String, String)> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            let s = |k: &str| h[k].as_str().unwrap_or_default().to_owned();
            (s("object"), s("field"), s("effect"))
        })
        .collect()
}

fn expected_hidden() -> BTreeSet<(String, String, String)> {
    HIDDEN
        .iter()
        .map(|(o, f, e)| ((*o).to_owned(), (*f).to_owned(), (*e).to_owned()))
        .collect()
}

/// The missing items' `what`s of a stored or answered permission report.
fn whats(report: &Value) -> Vec<String> {
    report["missing"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["what"].as_str().map(str::to_owned))
        .collect()
}

/// Every pulled record of `object` kept for the org's accounts.
async fn kept(app: &TestApp, org: &OrgHandle, object: &str) -> Vec<perly_store::CrmRecord> {
    let mut out = Vec::new();
    for i in 0..small_org().accounts {
        let records = app
            .store
            .crm_records_for(app.ws, &org.account_id(i))
            .await
            .expect("records");
        out.extend(records.into_iter().filter(|r| r.object == object));
    }
    out
}

#[tokio::test]
async fn hidden_fields_are_left_out_named_with_what_they_feed_and_every_record_is_pulled() {
    let app = spawn_app_with_salesforce(small_org()).await;
    let org = app.sf().production();
    for (object, field, _) in HIDDEN {
        assert!(org.hide_field(object, field), "{object}.{field}");
    }
    let web = admin(&app).await;
    let flash = connect(&web, "production", "").await;
    assert!(flash.contains("4 permission(s) are missing"), "{flash}");

    // The permission check at connect names each field, and what to grant.
    let (_, status) = app.get("/api/v1/salesforce").await;
    let report = &status["connection"]["permissions"];
    assert_eq!(report["complete"], false, "{report}");
    assert_eq!(hidden_set(&report["hidden_fields"]), expected_hidden(), "{report}");
    let mut asked = whats(report);
    asked.sort();
    assert_eq!(
        asked,
        [
            "Read access to Account.AnnualRevenue",
            "Read access to Contact.Phone",
            "Read access to Opportunity.Amount",
            "Read access to Opportunity.Probability",
        ]
    );
    let (_, page, _) = web.get("/settings/salesforce").await;
    assert!(page.contains("Read access to Contact.Phone"), "{page}");
    assert!(page.contains("without it, contacts show no phone"), "{page}");
    assert!(page.contains("Set Field-Level Security"), "{page}");

    // The sync leaves them out and pulls every record there is.
    let outcomes = app.sync().await;
    assert!(
        matches!(outcomes.as_slice(), [RunOutcome::Succeeded { .. }]),
        "{outcomes:?}"
    );
    let (_, sync) = app.get("/api/v1/salesforce/sync").await;
    assert_eq!(sync["state"], "succeeded", "{sync}");
    for object in OBJECTS {
        let in_org = org_count(&org, object).await;
        assert!(in_org > 0, "the org has {object}s");
        assert_eq!(rows_of(&sync, object), in_org, "{object}s pulled");
    }
    let (_, customers) = app.get("/api/v1/customers?limit=200").await;
    assert_eq!(
        customers["items"].as_array().map(Vec::len),
        Some(small_org().accounts as usize)
    );
    let contacts = kept(&app, &org, "Contact").await;
    assert_eq!(contacts.len() as u64, org_count(&org, "Contact").await);
    assert!(contacts
        .iter()
        .all(|c| c.data.contains_key("Email") && !c.data.contains_key("Phone")));
    let opportunities = kept(&app, &org, "Opportunity").await;
    assert_eq!(opportunities.len() as u64, org_count(&org, "Opportunity").await);
    assert!(opportunities.iter().all(|o| o.data.contains_key("StageName")
        && !o.data.contains_key("Amount")
        && !o.data.contains_key("Probability")));
    let accounts = kept(&app, &org, "Account").await;
    assert!(accounts
        .iter()
        .all(|a| a.data.contains_key("Industry") && !a.data.contains_key("AnnualRevenue")));

    // The API names the skipped fields, overall and per object.
    assert_eq!(hidden_set(&sync["hidden_fields"]), expected_hidden(), "{sync}");
    let contact = object_of(&sync, "Contact");
    assert_eq!(contact["hidden_fields"][0]["field"], "Phone", "{contact}");
    assert_eq!(contact["hidden_fields"][0]["essential"], false);
    assert_eq!(object_of(&sync, "Task")["hidden_fields"], json!([]));
    let (_, doc) = app.get("/api/v1/openapi.json").await;
    let schemas = &doc["components"]["schemas"];
    assert!(
        schemas["SyncStatus"]["properties"]["hidden_fields"].is_object(),
        "documented"
    );
    assert!(schemas["ObjectProgress"]["properties"]["failed"].is_object());
    assert!(schemas["HiddenField"]["properties"]["effect"].is_object());

    // And so does the page.
    let (_, page, _) = web.get("/settings/salesforce").await;
    for line in [
        "Account.AnnualRevenue hidden: annual revenue unknown",
        "Contact.Phone hidden: contacts show no phone",
        "Opportunity.Amount hidden: renewal value unknown",
        "Opportunity.Probability hidden: win probability unknown",
    ] {
        assert!(page.contains(line), "{line} on the page");
    }

    // Checking again names them too.
    let (status, again) = app.post("/api/v1/salesforce/permissions", json!({})).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(hidden_set(&again["hidden_fields"]), expected_hidden());
    assert!(whats(&again).contains(&"Read access to Opportunity.Amount".to_owned()));

    // Read granted again: the next sync reads the fields, on records that
    // did not change too, and nothing is said to be hidden any more.
    for (object, field, _) in HIDDEN {
        assert!(org.show_field(object, field));
    }
    app.advance(chrono::Duration::hours(3));
    let (status, _) = app.post("/api/v1/salesforce/sync", json!({})).await;
    assert_eq!(status, 202);
    assert!(matches!(app.sync().await.as_slice(), [RunOutcome::Succeeded { .. }]));
    let (_, sync) = app.get("/api/v1/salesforce/sync").await;
    assert_eq!(sync["hidden_fields"], json!([]), "{sync}");
    let contacts = kept(&app, &org, "Contact").await;
    assert!(
        contacts.iter().all(|c| c.data.contains_key("Phone")),
        "phones filled in"
    );
    let opportunities = kept(&app, &org, "Opportunity").await;
    assert!(opportunities.iter().all(|o| o.data.contains_key("Amount")));
    assert!(
        rows_of(&sync, "Task") < org_count(&org, "Task").await,
        "Tasks stay incremental: none changed"
    );
    let (_, page, _) = web.get("/settings/salesforce").await;
    assert!(!page.contains("hidden: contacts show no phone"), "{page}");
}

#[tokio::test]
async fn a_hidden_account_lookup_fails_its_object_with_the_field_named_while_the_others_sync() {
    let app = spawn_app_with_salesforce(small_org()).await;
    let org = app.sf().production();
    assert!(org.hide_field("Opportunity", "AccountId"));
    let web = admin(&app).await;
    connect(&web, "production", "").await;
    let (_, status) = app.get("/api/v1/salesforce").await;
    let report = &status["connection"]["permissions"];
    let missing = report["missing"].as_array().cloned().unwrap_or_default();
    let lookup = missing
        .iter()
        .find(|m| m["what"] == "Read access to Opportunity.AccountId")
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(
        lookup["why"],
        "Perly cannot sync opportunities without it: opportunities cannot be tied to their accounts"
    );

    let outcomes = app.sync().await;
    let [RunOutcome::Failed(reason)] = outcomes.as_slice() else {
        panic!("one failed run expected, got {outcomes:?}");
    };
    assert!(
        reason.contains("Opportunity could not be synced: the connected user cannot read Opportunity.AccountId"),
        "{reason}"
    );
    let (_, sync) = app.get("/api/v1/salesforce/sync").await;
    assert_eq!(sync["state"], "failed", "{sync}");
    assert_eq!(sync["last_error"].as_str(), Some(reason.as_str()));
    let opportunity = object_of(&sync, "Opportunity");
    assert!(
        opportunity["failed"]
            .as_str()
            .is_some_and(|f| f.contains("Opportunity.AccountId") && f.contains("field-level security")),
        "{opportunity}"
    );
    assert_eq!(opportunity["rows"], 0);
    assert_eq!(opportunity["hidden_fields"][0]["essential"], true);
    // Its roles are read through the same lookup: they fail, naming it.
    let roles = object_of(&sync, "OpportunityContactRole");
    assert!(
        roles["failed"]
            .as_str()
            .is_some_and(|f| f.contains("OpportunityContactRole.Opportunity.AccountId")),
        "{roles}"
    );
    // The other objects synced in full.
    for object in ["Account", "Contact", "AccountContactRole", "Task", "Event"] {
        assert!(object_of(&sync, object)["failed"].is_null(), "{object}");
        assert_eq!(
            rows_of(&sync, object),
            org_count(&org, object).await,
            "{object}s pulled"
        );
    }
    assert!(kept(&app, &org, "Opportunity").await.is_empty());
    assert_eq!(
        kept(&app, &org, "Contact").await.len() as u64,
        org_count(&org, "Contact").await
    );
    // Its watermark did not move: nothing of it was read.
    let (_, status) = app.get("/api/v1/salesforce").await;
    let marks = &status["connection"]["watermarks"];
    assert!(
        marks["Contact"].is_string() && marks["Opportunity"].is_null(),
        "{marks}"
    );

    let (_, page, _) = web.get("/settings/salesforce").await;
    assert!(page.contains("<td>Opportunity</td><td>failed</td>"), "{page}");
    assert!(
        page.contains(
            "Opportunity.AccountId hidden: opportunities cannot be tied to their accounts (Opportunity is not synced without it)"
        ),
        "{page}"
    );
    assert!(
        page.contains("Opportunity could not be synced: the connected user cannot read Opportunity.AccountId"),
        "{page}"
    );

    // Granted: the next run brings every opportunity.
    assert!(org.show_field("Opportunity", "AccountId"));
    let (status, _) = app.post("/api/v1/salesforce/sync", json!({})).await;
    assert_eq!(status, 202);
    assert!(matches!(app.sync().await.as_slice(), [RunOutcome::Succeeded { .. }]));
    assert_eq!(
        kept(&app, &org, "Opportunity").await.len() as u64,
        org_count(&org, "Opportunity").await
    );
}
