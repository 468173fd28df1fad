//! Crash safety of the Salesforce sync and push: the real `perly serve`
//! process is killed with SIGKILL in the middle of a sync, and again while
//! Tasks, Chatter posts and scores are on their way, then started again on
//! the same database. Afterwards every record of the org is in Perly exactly
//! once, and every alert has exactly one Task and one post.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use chrono::Utc;
use perly_domain::salesforce::Environment;
use perly_standins::salesforce::{OrgHandle, OrgSpec, SalesforceFault, SalesforceStandin};
use perly_store::NewSalesforceConnection;
use serde_json::{json, Value};

use crate::helpers::*;

const ACCOUNTS: u64 = 400;
const ALERTED: u64 = 30;

async fn start_server(database_url: &str, sf: &SalesforceStandin, port: u16) -> ServeProcess {
    let app = oauth_app("salesforce");
    let fast = |v: &str| v.to_owned();
    let env = [
        ("PERLY_SALESFORCE__LOGIN_URL", sf.login_url()),
        ("PERLY_SALESFORCE__SANDBOX_LOGIN_URL", sf.sandbox_login_url()),
        ("PERLY_SALESFORCE__CLIENT_ID", app.client_id.clone()),
        ("PERLY_SALESFORCE__CLIENT_SECRET", app.client_secret.clone()),
        ("PERLY_SYNC__LEASE_SECS", fast("5")),
        ("PERLY_SYNC__JOB_POLL_MS", fast("20")),
        ("PERLY_SYNC__POLL_INTERVAL_MS", fast("100")),
        ("PERLY_SYNC__OUTBOX_POLL_MS", fast("100")),
        ("PERLY_SYNC__OUTBOX_RETRY_SECS", fast("1")),
        ("PERLY_OUTBOUND__ALLOW_PRIVATE_NETWORKS", "true".to_owned()),
    ];
    spawn_serve(database_url, port, &env).await
}

struct Api {
    client: reqwest::Client,
    key: String,
}

impl Api {
    async fn call(&self, server: &ServeProcess, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .client
            .request(method, format!("{}{path}", server.base))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let answer = req.send().await.expect("request");
        assert!(answer.status().is_success(), "{path}: {}", answer.status());
        answer.json().await.unwrap_or(Value::Null)
    }

    async fn get(&self, server: &ServeProcess, path: &str) -> Value {
        self.call(server, reqwest::Method::GET, path, None).await
    }

    async fn post(&self, server: &ServeProcess, path: &str, body: Value) -> Value {
        self.call(server, reqwest::Method::POST, path, Some(body)).await
    }
}

/// Polls `check` (every 20 ms) until it holds, or fails after `secs`.
async fn wait_for<F, Fut>(what: &str, secs: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every live record of `object` in the org, read independently of Perly
/// (REST query with its paging): parent id → record ids.
async fn org_index(org: &OrgHandle, object: &str, parent: &str) -> HashMap<String, BTreeSet<String>> {
    let token = org.issue_token(&oauth_app("salesforce").client_id);
    let client = reqwest::Client::new();
    let soql = format!("SELECT Id, {parent} FROM {object}");
    let mut url = format!("{}/services/data/v61.0/query", org.base_url());
    let mut query = vec![("q", soql)];
    let mut out: HashMap<String, BTreeSet<String>> = HashMap::new();
    loop {
        let page: Value = client
            .get(&url)
            .query(&query)
            .bearer_auth(&token)
            .send()
            .await
            .expect("query")
            .json()
            .await
            .expect("json");
        for r in page["records"].as_array().into_iter().flatten() {
            if let (Some(id), Some(p)) = (r["Id"].as_str(), r[parent].as_str()) {
                out.entry(p.to_owned()).or_default().insert(id.to_owned());
            }
        }
        match page["nextRecordsUrl"].as_str() {
            Some(next) => {
                url = format!("{}{next}", org.base_url());
                query.clear();
            }
            None => return out,
        }
    }
}

#[tokio::test]
async fn a_server_killed_during_a_sync_and_during_a_push_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let database_url = fresh_database(&dir).await;
    let sf = SalesforceStandin::start(
        "127.0.0.1:0",
        "127.0.0.1:0",
        OrgSpec {
            accounts: ACCOUNTS,
            ..OrgSpec::default()
        },
        vec![oauth_app("salesforce")],
    )
    .await
    .expect("stand-in");
    let org = sf.production();
    // Each Bulk job takes a while, so the kill lands mid-sync.
    org.set_bulk_delay(Duration::from_millis(400));

    // A workspace, a key and a connection (as the OAuth callback saves it),
    // made before the server starts.
    let settings = test_settings(database_url.clone(), false);
    let store = perly::server::open_store(&settings, perly::cli::cipher(&settings, true).expect("cipher"))
        .await
        .expect("store");
    let ws = store.create_workspace("Crash Co", Utc::now()).await.expect("ws");
    let key = store
        .create_api_key(ws.id, &perly_store::NewApiKey::full("crash"), Utc::now())
        .await
        .expect("key")
        .1;
    let new = NewSalesforceConnection {
        environment: Environment::Production,
        login_url: sf.login_url(),
        instance_url: org.base_url(),
        org_id: org.org_id(),
        org_name: "Crash Org".into(),
        user_id: org.admin_user_id(),
        username: org.admin_username(),
        refresh_token: org.issue_refresh_token(&oauth_app("salesforce").client_id),
        permissions: json!({"complete": true, "missing": []}),
    };
    store
        .save_salesforce_connection(ws.id, &new, Utc::now())
        .await
        .expect("connection");
    store
        .request_salesforce_sync(ws.id, Utc::now())
        .await
        .expect("sync now");
    let api = Api {
        client: reqwest::Client::new(),
        key,
    };

    // 1. Killed mid-sync: some objects done, the run still going.
    let port = free_port();
    let server = start_server(&database_url, &sf, port).await;
    wait_for("a sync half-way", 60, || async {
        let s = api.get(&server, "/api/v1/salesforce/sync").await;
        let done = s["current"]["objects"]
            .as_array()
            .map_or(0, |o| o.iter().filter(|o| o["state"] == "done").count());
        s["state"] == "running" && done >= 2
    })
    .await;
    server.kill();
    let server = start_server(&database_url, &sf, port).await;
    wait_for("the sync to finish after the restart", 120, || async {
        api.get(&server, "/api/v1/salesforce/sync").await["state"] == "succeeded"
    })
    .await;
    let status = api.get(&server, "/api/v1/salesforce/sync").await;
    assert_eq!(
        status["history"].as_array().map(Vec::len),
        Some(1),
        "one run, resumed: {status}"
    );

    // Every record of the org is in Perly, once.
    let mut customers = 0;
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/customers?limit=200&sort=name&cursor={c}"),
            None => "/api/v1/customers?limit=200&sort=name".to_owned(),
        };
        let page = api.get(&server, &path).await;
        customers += page["items"].as_array().map_or(0, Vec::len);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(customers, ACCOUNTS as usize);
    let contacts = org_index(&org, "Contact", "AccountId").await;
    let opportunities = org_index(&org, "Opportunity", "AccountId").await;
    let mut activities = org_index(&org, "Task", "WhatId").await;
    for (parent, ids) in org_index(&org, "Event", "WhatId").await {
        activities.entry(parent).or_default().extend(ids);
    }
    assert!(
        activities.values().map(BTreeSet::len).sum::<usize>() >= ACCOUNTS as usize,
        "the org has activities on its accounts"
    );
    for i in 0..ACCOUNTS {
        let account = org.account_id(i);
        let records = store.crm_records_for(ws.id, &account).await.expect("records");
        let mut by_object: HashMap<&str, BTreeSet<String>> = HashMap::new();
        for r in records.iter().filter(|r| !r.deleted) {
            by_object.entry(r.object.as_str()).or_default().insert(r.sf_id.clone());
        }
        for (object, index) in [("Contact", &contacts), ("Opportunity", &opportunities)] {
            assert_eq!(
                by_object.remove(object).unwrap_or_default(),
                index.get(&account).cloned().unwrap_or_default(),
                "{object}s of {account}"
            );
        }
        let events = store.recent_events(ws.id, &account, 1_000).await.expect("events");
        let pulled: Vec<String> = events
            .iter()
            .filter(|e| e.r#type == "crm_activity")
            .filter_map(|e| e.id.strip_prefix("salesforce:").map(str::to_owned))
            .collect();
        let unique: BTreeSet<String> = pulled.iter().cloned().collect();
        assert_eq!(pulled.len(), unique.len(), "no activity twice for {account}");
        let expected = activities.get(&account).cloned().unwrap_or_default();
        assert_eq!(unique, expected, "activities of {account}");
    }

    // 2. Killed while Tasks, posts and scores go out. Billing health is the
    // whole scorecard, so a failed retry alone is data enough for a verdict.
    let mut card = api.get(&server, "/api/v1/scorecard").await;
    if let Some(measures) = card["measures"].as_object_mut() {
        for (name, m) in measures.iter_mut() {
            if name != "billing_health" {
                m["weight"] = json!(0.0);
            }
        }
    }
    api.call(&server, reqwest::Method::PUT, "/api/v1/scorecard", Some(card))
        .await;
    api.post(
        &server,
        "/api/v1/salesforce/rules",
        json!({
            "name": "Billing trouble",
            "when": {"alert_kinds": ["billing_retry_failed"]},
            "task": {"subject": "Call {customer} about billing", "due_in_days": 1, "priority": "High"},
            "chatter": {},
        }),
    )
    .await;
    // Every call is slow now, so writes are in flight at the kill.
    org.inject(SalesforceFault::Slow {
        delay_ms: 60,
        times: 100_000,
    });
    let accounts: Vec<String> = (0..ALERTED).map(|i| org.account_id(i)).collect();
    let events: Vec<Value> = accounts
        .iter()
        .map(|a| {
            json!({
                "id": format!("{a}-retry-1"), "customer_id": a, "type": "billing_retry_failed",
                "occurred_at": Utc::now().to_rfc3339(), "amount": 99.0, "attempt": 1,
            })
        })
        .collect();
    api.post(&server, "/api/v1/events", json!({ "events": events })).await;
    let task_posts = |org: &OrgHandle| {
        org.requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/sobjects/Task"))
            .count()
    };
    wait_for("Tasks under way", 60, || async { task_posts(&org) >= 5 }).await;
    server.kill();
    let server = start_server(&database_url, &sf, port).await;
    wait_for("every action to be done", 180, || async {
        let actions = api.get(&server, "/api/v1/salesforce/actions").await;
        let items = actions["items"].as_array().cloned().unwrap_or_default();
        items.len() == 2 * ALERTED as usize && items.iter().all(|a| a["state"] == "done")
    })
    .await;
    let alerts = api
        .get(&server, "/api/v1/alerts?kind=billing_retry_failed&limit=500")
        .await;
    let alerts = alerts["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(alerts.len(), ALERTED as usize);
    let tasks = org.records("Task");
    let posts = org.records("FeedItem");
    for a in &alerts {
        let id = a["id"].as_str().unwrap_or_default();
        let count = |records: &[Value], field: &str, kind: &str| {
            let marker = format!("perly-alert:{id}:{kind}");
            records
                .iter()
                .filter(|r| r[field].as_str().is_some_and(|t| t.contains(&marker)))
                .count()
        };
        assert_eq!(count(&tasks, "Description", "task"), 1, "one Task for alert {id}");
        assert_eq!(count(&posts, "Body", "chatter"), 1, "one post for alert {id}");
    }

    // And every alerted Account carries its customer's latest score.
    wait_for("scores on the Accounts", 60, || async {
        let mut all = true;
        for a in &accounts {
            let c = api.get(&server, &format!("/api/v1/customers/{a}")).await;
            let on_account = org.record("Account", a).map(|r| r["Perly_Health_Score__c"].clone());
            all &= c["score"].as_f64().is_some() && on_account.and_then(|v| v.as_f64()) == c["score"].as_f64();
        }
        all
    })
    .await;
    drop(server);
}
