//! Salesforce through the real server and the stand-in: connecting
//! (Production, Sandbox, a My Domain of the wrong org type, a refused
//! consent, a bad state), then full and incremental syncs with an update, a
//! delete, a re-parented account and a new custom field, a token that
//! expires mid-sync, a limit answer that pauses Perly, and a revoked token
//! that marks the connection broken. Also: pulled Tasks and Events are
//! stored and scored exactly as the same events sent to the events API.

use perly_domain::event::{ActivityType, Event, EventKind};
use perly_salesforce::sync::RunOutcome;
use perly_standins::salesforce::{OrgSpec, SalesforceFault, ADMIN_PASSWORD};
use perly_store::{PulledAccount, PulledActivity, Role};
use serde_json::{json, Value};

use crate::helpers::*;
use crate::oauth::{location, unescape, vendor_browser};
use crate::web::{add_user, WebClient};

/// Every `<input … name= value=>` of the stand-in's login and consent form.
fn form_fields(html: &str) -> Vec<(String, String)> {
    html.split("<input ")
        .skip(1)
        .filter_map(|part| {
            let name = part.split("name=\"").nth(1)?.split('"').next()?;
            let value = part
                .split("value=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("");
            Some((name.to_owned(), unescape(value)))
        })
        .collect()
}

pub(crate) async fn admin(app: &TestApp) -> WebClient {
    add_user(app, "ana@example.com", Role::Admin).await;
    let web = WebClient::new(app);
    let (status, _) = web.sign_in("ana@example.com", "correct horse battery").await;
    assert_eq!(status, 303);
    web
}

/// Clicks "Connect Salesforce" with an org type: the authorize URL.
pub(crate) async fn start(web: &WebClient, environment: &str, my_domain: &str) -> (u16, String) {
    let (status, page, _) = web.get("/settings/salesforce").await;
    assert_eq!(status, 200);
    let csrf = WebClient::csrf(&page);
    let (status, _, headers) = web
        .post(
            "/integrations/salesforce/connect",
            &[
                ("csrf", &csrf),
                ("environment", environment),
                ("my_domain_url", my_domain),
            ],
        )
        .await;
    (status, location(&headers))
}

/// Signs in on the stand-in and allows or denies: Perly's callback URL.
pub(crate) async fn consent(authorize: &str, decision: &str) -> String {
    let b = vendor_browser();
    let page = b.get(authorize).send().await.expect("authorize page");
    assert_eq!(page.status(), 200, "{authorize}");
    let html = page.text().await.expect("html");
    let mut fields: Vec<(String, String)> = form_fields(&html)
        .into_iter()
        .filter(|(n, _)| n != "password")
        .collect();
    fields.push(("password".into(), ADMIN_PASSWORD.into()));
    fields.push(("decision".into(), decision.into()));
    let action = format!(
        "{}/services/oauth2/authorize",
        authorize.split("/services/").next().unwrap_or_default()
    );
    let answer = b.post(&action).form(&fields).send().await.expect("consent");
    assert!(answer.status().is_redirection(), "{}", answer.status());
    location(answer.headers())
}

/// Follows the redirect back into Perly: (status, flash page text).
pub(crate) async fn callback(web: &WebClient, url: &str) -> (u16, String) {
    let path = url.strip_prefix(&web.base).expect("callback on Perly");
    let (status, _, headers) = web.get(path).await;
    let to = location(&headers);
    let (_, page, _) = web.get(&to).await;
    (status, page)
}

/// Connects the workspace to an org type and returns the settings page.
pub(crate) async fn connect(web: &WebClient, environment: &str, my_domain: &str) -> String {
    let (status, authorize) = start(web, environment, my_domain).await;
    assert_eq!(status, 303, "{authorize}");
    let back = consent(&authorize, "allow").await;
    let (status, page) = callback(web, &back).await;
    assert_eq!(status, 303);
    page
}

pub(crate) fn small_org() -> OrgSpec {
    OrgSpec {
        accounts: 30,
        ..OrgSpec::default()
    }
}

#[tokio::test]
async fn production_and_sandbox_connect_with_pkce_and_store_the_token_encrypted() {
    let app = spawn_app_with_salesforce(small_org()).await;
    let web = admin(&app).await;
    let (status, authorize) = start(&web, "production", "").await;
    assert_eq!(status, 303);
    assert!(
        authorize.starts_with(&format!("{}/services/oauth2/authorize?", app.sf().login_url())),
        "{authorize}"
    );
    for part in [
        "code_challenge=",
        "code_challenge_method=S256",
        "scope=api+refresh_token",
        "state=",
    ] {
        assert!(authorize.contains(part), "{part} in {authorize}");
    }
    let back = consent(&authorize, "allow").await;
    let (status, page) = callback(&web, &back).await;
    assert_eq!(status, 303);
    assert!(page.contains("Connected"), "{page}");
    let (_, body) = app.get("/api/v1/salesforce").await;
    assert_eq!(body["status"], "connected", "{body}");
    assert_eq!(body["connection"]["environment"], "production");
    assert_eq!(body["connection"]["instance_url"], app.sf().login_url());
    assert!(!body.to_string().contains("token"), "no token in the answer: {body}");
    // The refresh token is stored, sealed: not readable in the database.
    let token = app
        .store
        .salesforce_refresh_token(app.ws)
        .await
        .expect("read")
        .expect("stored");
    if let Some(file) = app.database_file() {
        let bytes = std::fs::read(file).expect("db file");
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "refresh token in plaintext"
        );
    }

    // Reconnecting as Sandbox talks to the sandbox login host.
    let page = connect(&web, "sandbox", "").await;
    assert!(page.contains("Sandbox"), "{page}");
    let (_, body) = app.get("/api/v1/salesforce").await;
    assert_eq!(body["connection"]["environment"], "sandbox");
    assert_eq!(body["connection"]["login_url"], app.sf().sandbox_login_url());
    assert_eq!(body["connection"]["org_id"], app.sf().sandbox().org_id());
}

#[tokio::test]
async fn a_refused_consent_a_bad_state_and_a_wrong_org_type_connect_nothing() {
    let app = spawn_app_with_salesforce(small_org()).await;
    let web = admin(&app).await;

    let (_, authorize) = start(&web, "production", "").await;
    let back = consent(&authorize, "deny").await;
    assert!(back.contains("error=access_denied"), "{back}");
    let (_, page) = callback(&web, &back).await;
    assert!(page.contains("refused"), "{page}");

    let (_, page) = callback(
        &web,
        &format!("{}/integrations/salesforce/callback?code=x&state=forged", web.base),
    )
    .await;
    assert!(page.contains("expired or was already used"), "{page}");

    let (_, authorize) = start(&web, "my_domain", "").await;
    assert!(
        authorize.starts_with("/settings/salesforce"),
        "a My Domain needs its URL: {authorize}"
    );
    let sandbox = app.sf().sandbox_login_url();
    let (status, authorize) = start(&web, "my_domain", &sandbox).await;
    assert_eq!(status, 303);
    assert!(authorize.starts_with(&sandbox), "{authorize}");
    let (_, page, _) = web.get("/settings/salesforce").await;
    let csrf = WebClient::csrf(&page);
    let (status, _, headers) = web
        .post(
            "/integrations/salesforce/connect",
            &[("csrf", &csrf), ("environment", "staging")],
        )
        .await;
    assert_eq!(status, 303);
    let (_, page, _) = web.get(&location(&headers)).await;
    assert!(page.contains("unknown org type"), "{page}");

    let (_, body) = app.get("/api/v1/salesforce").await;
    assert_eq!(body["status"], "not_connected", "nothing half-saved: {body}");
    assert!(app
        .store
        .salesforce_refresh_token(app.ws)
        .await
        .expect("read")
        .is_none());
}

#[tokio::test]
async fn a_production_choice_on_a_sandbox_org_is_refused_and_its_token_revoked() {
    let app = spawn_app_with_swapped_salesforce_logins(small_org()).await;
    let web = admin(&app).await;
    let (status, authorize) = start(&web, "production", "").await;
    assert_eq!(status, 303);
    assert!(authorize.starts_with(&app.sf().sandbox_login_url()), "{authorize}");
    let back = consent(&authorize, "allow").await;
    let (_, page) = callback(&web, &back).await;
    assert!(page.contains("this org is a Sandbox"), "{page}");
    let (_, body) = app.get("/api/v1/salesforce").await;
    assert_eq!(body["status"], "not_connected");
    assert!(
        app.sf()
            .sandbox()
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/oauth2/revoke")),
        "the token Perly will not use is revoked"
    );
}

async fn customers(app: &TestApp) -> Vec<Value> {
    let (status, body) = app.get("/api/v1/customers?limit=200").await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().cloned().unwrap_or_default()
}

fn succeeded(outcomes: &[RunOutcome]) -> u64 {
    match outcomes {
        [RunOutcome::Succeeded { rows }] => *rows,
        other => panic!("one successful run expected, got {other:?}"),
    }
}

#[tokio::test]
async fn full_then_incremental_sync_with_update_delete_reparent_and_a_new_custom_field() {
    let app = spawn_app_with_salesforce(small_org()).await;
    let web = admin(&app).await;
    connect(&web, "production", "").await;
    let org = app.sf().production();

    let rows = succeeded(&app.sync().await);
    // 30 accounts, 60 contacts, 30 opportunities, 120 activities and the roles.
    assert!(rows >= 240, "{rows} rows");
    let list = customers(&app).await;
    assert_eq!(list.len(), 30);
    let first = org.account_id(0);
    assert_eq!(first.len(), 18);
    let (status, one) = app.get(&format!("/api/v1/customers/{first}")).await;
    assert_eq!(status, 200, "{one}");
    let (_, status_body) = app.get("/api/v1/salesforce/sync").await;
    assert_eq!(status_body["state"], "succeeded", "{status_body}");
    assert_eq!(status_body["percent"], 100);
    assert_eq!(status_body["current"]["objects"].as_array().map(Vec::len), Some(7));

    // Changes in the org: a rename, a delete, a re-parent, a new custom field.
    let renamed = org.account_id(1);
    let deleted = org.account_id(2);
    let moved = org.account_id(3);
    org.update("Account", &renamed, json!({"Name": "Renamed Holdings"}));
    org.delete("Account", &deleted);
    org.update("Account", &moved, json!({"ParentId": first}));
    org.add_custom_field("Account", "Region__c", "Text", "Region");
    org.update("Account", &renamed, json!({"Region__c": "EMEA"}));

    // The new field is picked in settings; a field that does not exist is refused by name.
    let (status, body) = app
        .put("/api/v1/salesforce/settings", json!({"account_fields": ["Nope__c"]}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "account_fields");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("Nope__c"));
    let (status, body) = app
        .put("/api/v1/salesforce/settings", json!({"account_fields": ["Region__c"]}))
        .await;
    assert_eq!(status, 200, "{body}");

    let (status, _) = app.post("/api/v1/salesforce/sync", json!({})).await;
    assert_eq!(status, 202);
    let rows = succeeded(&app.sync().await);
    assert!(
        rows < 100,
        "incremental: only what changed (and the overlap), got {rows}"
    );

    let (_, r) = app.get(&format!("/api/v1/customers/{renamed}")).await;
    assert_eq!(r["name"], "Renamed Holdings", "{r}");
    let (status, _) = app.get(&format!("/api/v1/customers/{deleted}")).await;
    assert_eq!(status, 404, "a deleted account's customer is archived");
    assert_eq!(customers(&app).await.len(), 29);
    let (_, m) = app.get(&format!("/api/v1/customers/{moved}")).await;
    assert_eq!(m["parent_external_id"], first, "{m}");
    let fields = app.store.crm_records_for(app.ws, &renamed).await.expect("records");
    let account = fields.iter().find(|r| r.object == "Account").expect("account record");
    assert_eq!(account.data.get("Region__c").and_then(Value::as_str), Some("EMEA"));
    assert!(fields.iter().any(|r| r.object == "Contact"), "contacts pulled");
    assert!(fields.iter().any(|r| r.object == "Opportunity"), "opportunities pulled");
}

#[tokio::test]
async fn an_expired_session_mid_sync_is_refreshed_and_a_limit_answer_pauses_instead_of_hammering() {
    let app = spawn_app_with_salesforce(small_org()).await;
    let web = admin(&app).await;
    connect(&web, "production", "").await;
    let org = app.sf().production();
    org.inject(SalesforceFault::ExpireSessions);
    succeeded(&app.sync().await);
    assert!(
        org.requests().iter().any(|r| r.status == 401),
        "the expired session was seen and refreshed"
    );

    org.inject(SalesforceFault::LimitExceeded { times: 50 });
    let (status, _) = app.post("/api/v1/salesforce/sync", json!({})).await;
    assert_eq!(status, 202);
    let before = org.requests().len();
    let outcomes = app.sync().await;
    assert!(
        matches!(outcomes.as_slice(), [RunOutcome::Postponed(_)]),
        "{outcomes:?}"
    );
    let calls = org.requests().len() - before;
    assert!(calls <= 2, "one refused call, not a retry storm: {calls}");
    // Paused: nothing is due until the pause is over.
    assert!(app.sync().await.is_empty());
    let (_, body) = app.get("/api/v1/salesforce").await;
    assert!(body["connection"]["paused_until"].is_string(), "{body}");
    let (_, page, _) = web.get("/settings/salesforce").await;
    assert!(page.contains("pausing its Salesforce calls"), "{page}");
}

#[tokio::test]
async fn a_revoked_token_marks_the_connection_broken_with_a_reconnect_button() {
    let app = spawn_app_with_salesforce(small_org()).await;
    let web = admin(&app).await;
    connect(&web, "production", "").await;
    let org = app.sf().production();
    org.revoke_all();
    let outcomes = app.sync().await;
    assert!(matches!(outcomes.as_slice(), [RunOutcome::Broken(_)]), "{outcomes:?}");
    let (_, body) = app.get("/api/v1/salesforce").await;
    assert_eq!(body["status"], "broken", "{body}");
    let (status, body) = app.post("/api/v1/salesforce/sync", json!({})).await;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["code"], "salesforce_broken");
    let (_, page, _) = web.get("/settings/salesforce").await;
    assert!(
        page.contains("Connection broken") && page.contains("Reconnect Salesforce"),
        "{page}"
    );
    // Reconnecting mends it.
    connect(&web, "production", "").await;
    let (_, body) = app.get("/api/v1/salesforce").await;
    assert_eq!(body["status"], "connected");
    // Disconnect revokes the token at the login host and forgets the connection.
    assert!(org.live_refresh_tokens() >= 1);
    let (status, _) = app.delete("/api/v1/salesforce").await;
    assert_eq!(status, 204);
    assert_eq!(org.live_refresh_tokens(), 0, "the refresh token is revoked");
    let revoke = org.requests().into_iter().rfind(|r| r.path.ends_with("/oauth2/revoke"));
    assert_eq!(revoke.map(|r| (r.method, r.status)), Some(("POST".to_owned(), 200)));
    let (_, body) = app.get("/api/v1/salesforce").await;
    assert_eq!(body["status"], "not_connected");
}

#[tokio::test]
async fn contacts_and_opportunities_show_on_the_profile_and_a_lost_renewal_lowers_the_score() {
    let app = spawn_app_with_salesforce(small_org()).await;
    let web = admin(&app).await;
    connect(&web, "production", "").await;
    let org = app.sf().production();
    succeeded(&app.sync().await);
    app.rescore().await;
    let account = org.account_id(5);

    let (status, crm) = app.get(&format!("/api/v1/customers/{account}/crm")).await;
    assert_eq!(status, 200, "{crm}");
    assert_eq!(crm["account"]["sf_id"], account.as_str());
    let contacts = crm["contacts"].as_array().cloned().unwrap_or_default();
    let opportunities = crm["opportunities"].as_array().cloned().unwrap_or_default();
    assert!(!contacts.is_empty() && !opportunities.is_empty(), "{crm}");
    let (status, _) = app.get("/api/v1/customers/nobody/crm").await;
    assert_eq!(status, 404);

    let (status, page, _) = web.get(&format!("/customers/{account}")).await;
    assert_eq!(status, 200);
    let last_name = contacts[0]["data"]["LastName"].as_str().unwrap_or_default();
    assert!(page.contains(last_name), "contact {last_name} on the profile");
    let deal = opportunities[0]["data"]["Name"].as_str().unwrap_or_default();
    assert!(page.contains(&askama_escape(deal)), "opportunity {deal} on the profile");

    // The renewal is lost in Salesforce: the next sync brings it, and the
    // renewal outlook drags the score down.
    let before = app.customer(&account).await;
    let opportunity = opportunities[0]["sf_id"].as_str().unwrap_or_default().to_owned();
    org.update(
        "Opportunity",
        &opportunity,
        json!({"StageName": "Closed Lost", "Type": "Existing Customer - Renewal"}),
    );
    app.advance(chrono::Duration::hours(3));
    let (status, _) = app.post("/api/v1/salesforce/sync", json!({})).await;
    assert_eq!(status, 202);
    succeeded(&app.sync().await);
    app.rescore().await;
    let after = app.customer(&account).await;
    let outlook = after["explanation"]["measures"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["measure"] == "renewal_outlook"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(outlook["raw"], 0.0, "{after}");
    assert!(
        outlook["detail"]
            .as_str()
            .is_some_and(|d| d.contains("Renewal opportunity lost")),
        "{outlook}"
    );
    assert!(
        after["score"].as_i64() < before["score"].as_i64(),
        "score {} → {}",
        before["score"],
        after["score"]
    );
}

/// `&` and quotes as the templates write them.
fn askama_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('"', "&quot;").replace('\'', "&#x27;")
}

#[tokio::test]
async fn an_object_the_user_cannot_read_is_skipped_and_explained_while_the_rest_syncs() {
    let app = spawn_app_with_salesforce(small_org()).await;
    let org = app.sf().production();
    org.set_access(
        "Opportunity",
        perly_standins::salesforce::ObjectAccess {
            read: false,
            create: false,
            edit: false,
            delete: false,
        },
    );
    let web = admin(&app).await;
    connect(&web, "production", "").await;
    let (_, status) = app.get("/api/v1/salesforce").await;
    let missing = status["connection"]["permissions"]["missing"].to_string();
    assert!(missing.contains("Opportunity"), "{missing}");
    succeeded(&app.sync().await);
    let (_, sync) = app.get("/api/v1/salesforce/sync").await;
    let objects = sync["current"]["objects"].as_array().cloned().unwrap_or_default();
    let opp = objects
        .iter()
        .find(|o| o["object"] == "Opportunity")
        .cloned()
        .unwrap_or_default();
    assert!(
        opp["skipped"]
            .as_str()
            .is_some_and(|s| s.contains("cannot read Opportunity")),
        "{opp}"
    );
    let contacts = objects
        .iter()
        .find(|o| o["object"] == "Contact")
        .cloned()
        .unwrap_or_default();
    assert!(contacts["rows"].as_u64() > Some(0), "the rest synced: {sync}");
    assert_eq!(customers(&app).await.len(), 30);
    let (_, page, _) = web.get("/settings/salesforce").await;
    assert!(page.contains("skipped (no read access)"));
}

#[tokio::test]
async fn pulled_activities_are_stored_and_scored_exactly_like_ingested_crm_activity_events() {
    let app = spawn_app().await;
    let now = app.now();
    let (ingested_ws, _) = app.other_workspace("Ingested").await;
    let account = PulledAccount {
        sf_id: "001000000000001AAA".into(),
        external_id: "001000000000001AAA".into(),
        name: "Acme".into(),
        parent_sf_id: None,
        owner_email: None,
        deleted: false,
        modstamp: now,
        data: serde_json::Map::new(),
    };
    for ws in [app.ws, ingested_ws] {
        app.store
            .apply_salesforce_accounts(ws, std::slice::from_ref(&account), now)
            .await
            .expect("account");
    }
    let activity = |id: &str, account: &str, days: i64, kind, subject: Option<&str>| PulledActivity {
        sf_id: id.into(),
        account_sf_id: account.into(),
        at: now - chrono::Duration::days(days),
        kind,
        subject: subject.map(str::to_owned),
    };
    let page = vec![
        activity(
            "00T000000000001AAA",
            &account.sf_id,
            3,
            ActivityType::Call,
            Some("Quarterly review"),
        ),
        activity("00U000000000001AAA", &account.sf_id, 10, ActivityType::Meeting, None),
        // An Account Perly has no customer for.
        activity("00T000000000002AAA", "001000000000009AAA", 1, ActivityType::Email, None),
    ];
    let stored = app
        .store
        .apply_salesforce_activities(app.ws, &page, now)
        .await
        .expect("apply");
    assert_eq!(stored, 2);
    let again = app
        .store
        .apply_salesforce_activities(app.ws, &page, now)
        .await
        .expect("again");
    assert_eq!(again, 0, "a page read twice adds nothing");

    // The same activities through the events API path, in another workspace.
    let events: Vec<Event> = page[..2]
        .iter()
        .map(|a| Event {
            id: format!("salesforce:{}", a.sf_id),
            customer_id: account.external_id.clone(),
            occurred_at: a.at,
            kind: EventKind::CrmActivity {
                activity_type: a.kind,
                subject: a.subject.clone(),
            },
        })
        .collect();
    app.store
        .ingest_events(ingested_ws, &events, perly_store::IngestMode::Live, now)
        .await
        .expect("ingest");
    let pulled = app
        .store
        .recent_events(app.ws, &account.external_id, 10)
        .await
        .expect("events");
    let ingested = app
        .store
        .recent_events(ingested_ws, &account.external_id, 10)
        .await
        .expect("events");
    assert_eq!(pulled.len(), 2);
    assert_eq!(pulled, ingested);

    app.rescore().await;
    let score = |ws| {
        let store = app.store.clone();
        let id = account.external_id.clone();
        async move {
            let c = store
                .get_customer(ws, &id, now - chrono::Duration::days(90))
                .await
                .expect("read")
                .expect("customer");
            (c.summary.score, serde_json::to_value(&c.explanation).expect("json"))
        }
    };
    let (pulled_score, pulled_explanation) = score(app.ws).await;
    assert!(pulled_score.is_some(), "scored");
    assert_eq!((pulled_score, pulled_explanation), score(ingested_ws).await);
}

const REFRESH: &str = "<meta http-equiv=\"refresh\" content=\"3\">";

/// While a sync is running (or just requested) the settings page reloads
/// itself, so its progress shows; otherwise it stays still.
#[tokio::test]
async fn the_settings_page_refreshes_itself_only_while_a_sync_runs() {
    let app = spawn_app_with_salesforce(small_org()).await;
    let web = admin(&app).await;
    let (_, page, _) = web.get("/settings/salesforce").await;
    assert!(!page.contains(REFRESH), "not connected: nothing to watch");

    let page = connect(&web, "production", "").await;
    assert!(page.contains(REFRESH), "the first sync is about to start");
    app.sync().await;
    let (_, page, _) = web.get("/settings/salesforce").await;
    assert!(page.contains("<strong>succeeded</strong>"), "{page}");
    assert!(!page.contains(REFRESH), "a finished sync needs no refresh");

    // A run that is under way (claimed by a sync worker, not finished).
    assert!(app
        .store
        .request_salesforce_sync(app.ws, app.now())
        .await
        .expect("request"));
    let claim = app
        .store
        .claim_salesforce_sync(app.now(), chrono::Duration::minutes(2))
        .await
        .expect("claim");
    assert!(claim.is_some(), "a run was claimed");
    app.advance(chrono::Duration::minutes(5));
    let (_, page, _) = web.get("/settings/salesforce").await;
    assert!(page.contains("<strong>running</strong>"), "{page}");
    assert!(page.contains(REFRESH), "a running sync refreshes the page");
    assert!(page.find(REFRESH) < page.find("</head>"), "the tag is in the head");
}
