//! The client's HTTP behaviour against a tiny in-process fake of Salesforce
//! (axum on port 0) that answers with the spec payloads: refresh on 401 and
//! retry once, single-flight refresh, broken connections, limit answers,
//! the budget, SOQL and Bulk paging, collection splitting and the
//! re-runnable field setup. The real stand-in is exercised by Perly's
//! integration tests.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Form, Json, Router};
use perly_net::{Outbound, Policy};
use perly_salesforce::bulk::MAX_CSV_PAGE_BYTES;
use perly_salesforce::client::MAX_JSON_BYTES;
use perly_salesforce::fields::{ensure_perly_fields, Access, Presence, PERLY_FIELDS};
use perly_salesforce::{Budget, Client, Connection, Error, OAuthApp, Operation};
use secrecy::SecretString;
use serde_json::{json, Value};
use url::Url;

const INVALID_SESSION: &str = include_str!("../fixtures/rest/error_401_invalid_session_id.json");
const LIMIT_EXCEEDED: &str = include_str!("../fixtures/rest/error_403_request_limit_exceeded.json");
const INVALID_GRANT: &str = include_str!("../fixtures/oauth/token_error_invalid_grant_expired.json");
const NOT_COMPLETE: &str = include_str!("../fixtures/bulk2/query_results_error_412_job_not_complete_doc.json");
const JOB_COMPLETE: &str = include_str!("../fixtures/bulk2/query_job_info_jobcomplete_doc_v46.json");

#[derive(Clone, Copy, PartialEq)]
enum RefreshMode {
    /// Hand out the token the API accepts.
    Good,
    /// Hand out a token the API still rejects.
    Useless,
    /// `invalid_grant`.
    Refused,
    /// A good token, but an `instance_url` on a private network.
    ForeignInstance,
}

struct Fake {
    accepted_token: String,
    refresh_mode: RefreshMode,
    refreshes: usize,
    api_calls: usize,
    base_usage: u64,
    limit_exceeded: bool,
    /// `limits` answers just over [`MAX_JSON_BYTES`] (streamed, no length).
    oversized_json: bool,
    collection_sizes: Vec<usize>,
    job_polls: usize,
    job_final_state: &'static str,
    results_locators: Vec<Option<String>>,
    // The field-setup model.
    custom_fields: Vec<String>,
    tooling_creates: usize,
    permission_set: Option<String>,
    field_permissions: Vec<(String, String, bool, bool)>,
    assignments: Vec<(String, String)>,
    creates: Vec<String>,
}

impl Default for Fake {
    fn default() -> Fake {
        Fake {
            accepted_token: "fresh".into(),
            refresh_mode: RefreshMode::Good,
            refreshes: 0,
            api_calls: 0,
            base_usage: 10,
            limit_exceeded: false,
            oversized_json: false,
            collection_sizes: vec![],
            job_polls: 0,
            job_final_state: "JobComplete",
            results_locators: vec![],
            custom_fields: vec![],
            tooling_creates: 0,
            permission_set: None,
            field_permissions: vec![],
            assignments: vec![],
            creates: vec![],
        }
    }
}

type Shared = Arc<Mutex<Fake>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Fake> {
    s.lock().unwrap()
}

/// Counts the call, sets `Sforce-Limit-Info`, and answers 401 to a wrong
/// bearer token.
fn api(s: &Shared, headers: &HeaderMap, ok: impl FnOnce(&mut Fake) -> Response) -> Response {
    let mut f = lock(s);
    f.api_calls += 1;
    let usage = format!("api-usage={}/5000", f.base_usage + f.api_calls as u64);
    let expected = format!("Bearer {}", f.accepted_token);
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str());
    let mut resp = if authorized {
        ok(&mut f)
    } else {
        (StatusCode::UNAUTHORIZED, json_text(INVALID_SESSION)).into_response()
    };
    resp.headers_mut().insert("sforce-limit-info", usage.parse().unwrap());
    resp
}

fn json_text(body: &'static str) -> impl IntoResponse {
    ([("content-type", "application/json")], body)
}

async fn token(State(s): State<Shared>, Form(form): Form<HashMap<String, String>>) -> Response {
    assert_eq!(form["grant_type"], "refresh_token");
    assert_eq!(form["refresh_token"], "the-refresh-token");
    assert_eq!(form["client_secret"], "the-secret");
    // Long enough for concurrent callers to pile up behind one refresh.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let mode = {
        let mut f = lock(&s);
        f.refreshes += 1;
        f.refresh_mode
    };
    let (access, instance) = match mode {
        RefreshMode::Good => ("fresh", "https://acme.my.salesforce.com"),
        RefreshMode::Useless => ("still-stale", "https://acme.my.salesforce.com"),
        RefreshMode::Refused => return (StatusCode::BAD_REQUEST, json_text(INVALID_GRANT)).into_response(),
        RefreshMode::ForeignInstance => ("fresh", "http://10.0.0.1:5432"),
    };
    Json(json!({
        "access_token": access,
        "instance_url": instance,
        "id": "https://login.salesforce.com/id/00Dxx0000001gPLEAY/005xx000001SwiUAAS",
        "token_type": "Bearer",
        "issued_at": "1708058728442",
        "signature": "x",
    }))
    .into_response()
}

fn query_answer(f: &mut Fake, soql: &str) -> Value {
    let records: Vec<Value> = if soql.contains("FROM PermissionSetAssignment") {
        f.assignments.iter().map(|(id, _)| json!({"Id": id})).collect()
    } else if soql.contains("FROM PermissionSet") {
        f.permission_set.iter().map(|id| json!({"Id": id})).collect()
    } else if soql.contains("FROM FieldPermissions") {
        f.field_permissions
            .iter()
            .map(|(id, field, r, e)| json!({"Id": id, "Field": field, "PermissionsRead": r, "PermissionsEdit": e}))
            .collect()
    } else {
        return json!({
            "totalSize": 3, "done": false,
            "records": [{"attributes": {"type": "Account"}, "Id": "001A"}, {"Id": "001B"}],
            "nextRecordsUrl": "/services/data/v61.0/query/01gNEXT-2",
        });
    };
    json!({"totalSize": records.len(), "done": true, "records": records})
}

async fn query(State(s): State<Shared>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    api(&s, &headers, |f| Json(query_answer(f, &q["q"])).into_response())
}

async fn query_more(State(s): State<Shared>, headers: HeaderMap, Path(cursor): Path<String>) -> Response {
    assert_eq!(cursor, "01gNEXT-2");
    api(&s, &headers, |_| {
        Json(json!({"totalSize": 3, "done": true, "records": [{"Id": "001C"}]})).into_response()
    })
}

/// `head`, more than `len` bytes of `filler`, then `tail`, streamed in
/// chunks of about 1 MiB without a `Content-Length`.
fn streamed(head: &'static str, len: usize, filler: &'static [u8], tail: &'static str) -> Response {
    let chunk = filler.repeat((1 << 20) / filler.len());
    let chunks = len / chunk.len() + 1;
    let body = futures::stream::iter(
        std::iter::once(head.as_bytes().to_vec())
            .chain(std::iter::repeat_n(chunk, chunks))
            .chain(std::iter::once(tail.as_bytes().to_vec()))
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::from(c))),
    );
    axum::body::Body::from_stream(body).into_response()
}

async fn limits(State(s): State<Shared>, headers: HeaderMap) -> Response {
    api(&s, &headers, |f| {
        if f.oversized_json {
            // Valid JSON (leading spaces are allowed): only the cap refuses it.
            return streamed(
                "",
                MAX_JSON_BYTES,
                b" ",
                r#"{"DailyApiRequests": {"Max": 5000, "Remaining": 4990}}"#,
            );
        }
        if f.limit_exceeded {
            (StatusCode::FORBIDDEN, json_text(LIMIT_EXCEEDED)).into_response()
        } else {
            Json(json!({"DailyApiRequests": {"Max": 5000, "Remaining": 4990}})).into_response()
        }
    })
}

async fn collections(State(s): State<Shared>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    api(&s, &headers, |f| {
        assert_eq!(body["allOrNone"], false);
        let records = body["records"].as_array().unwrap();
        f.collection_sizes.push(records.len());
        let results: Vec<Value> = records
            .iter()
            .map(|r| {
                if r["attributes"]["type"] == "FieldPermissions" && r.get("id").is_none() {
                    let id = format!("01k{}", f.field_permissions.len());
                    f.field_permissions.push((
                        id.clone(),
                        r["Field"].as_str().unwrap().to_string(),
                        r["PermissionsRead"] == true,
                        r["PermissionsEdit"] == true,
                    ));
                    json!({"id": id, "success": true, "errors": []})
                } else if r["id"] == "bad" {
                    serde_json::from_str::<Vec<Value>>(include_str!(
                        "../fixtures/composite/sobject_collections_partial_failure_constructed.json"
                    ))
                    .unwrap()[1]
                        .clone()
                } else {
                    json!({"id": r["id"], "success": true, "errors": []})
                }
            })
            .collect();
        Json(results).into_response()
    })
}

async fn tooling_query(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    api(&s, &headers, |f| {
        assert!(q["q"].contains("FROM CustomField WHERE TableEnumOrId = 'Account'"));
        let records: Vec<Value> = f
            .custom_fields
            .iter()
            .map(|n| json!({"Id": "00N", "DeveloperName": n}))
            .collect();
        Json(json!({"totalSize": records.len(), "done": true, "records": records})).into_response()
    })
}

async fn tooling_create(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(object): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    api(&s, &headers, |f| {
        assert_eq!(object, "CustomField");
        f.tooling_creates += 1;
        let full = body["FullName"].as_str().unwrap();
        let name = full.trim_start_matches("Account.").trim_end_matches("__c").to_string();
        f.custom_fields.push(name);
        (
            StatusCode::CREATED,
            Json(json!({"id": "00N5e00000ABCDEEA4", "success": true, "errors": []})),
        )
            .into_response()
    })
}

async fn sobject_create(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(object): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    api(&s, &headers, |f| {
        f.creates.push(object.clone());
        let id = match object.as_str() {
            "PermissionSet" => {
                assert_eq!(body["Name"], "Perly_Integration");
                f.permission_set = Some("0PS5e000000XyZaGAK".into());
                "0PS5e000000XyZaGAK".to_string()
            }
            "PermissionSetAssignment" => {
                assert_eq!(body["AssigneeId"], "005xx000001SwiUAAS");
                f.assignments
                    .push(("0Pa1".into(), body["PermissionSetId"].as_str().unwrap().into()));
                "0Pa1".to_string()
            }
            other => panic!("unexpected create of {other}"),
        };
        (
            StatusCode::CREATED,
            Json(json!({"id": id, "success": true, "errors": []})),
        )
            .into_response()
    })
}

async fn userinfo(State(s): State<Shared>, headers: HeaderMap) -> Response {
    api(&s, &headers, |_| {
        Json(json!({
            "sub": "https://login.salesforce.com/id/00Dxx0000001gPLEAY/005xx000001SwiUAAS",
            "user_id": "005xx000001SwiUAAS",
            "organization_id": "00Dxx0000001gPLEAY",
            "preferred_username": "admin@acme.example",
            "email": "admin@acme.example",
            "name": "Ada Admin",
        }))
        .into_response()
    })
}

async fn job(State(s): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    api(&s, &headers, |f| {
        f.job_polls += 1;
        let mut info: Value = serde_json::from_str(JOB_COMPLETE).unwrap();
        info["id"] = json!(id);
        if f.job_polls < 3 {
            info["state"] = json!("InProgress");
        } else {
            info["state"] = json!(f.job_final_state);
            if f.job_final_state == "Failed" {
                info["errorMessage"] = json!("INVALID_FIELD: No such column 'Nope' on entity 'Account'");
            }
        }
        Json(info).into_response()
    })
}

async fn results(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    api(&s, &headers, |f| {
        if id == "running" {
            return (StatusCode::PRECONDITION_FAILED, json_text(NOT_COMPLETE)).into_response();
        }
        if id == "oversized" {
            // Well-formed rows: only the cap refuses the page.
            return streamed("\"Id\",\"Name\"\n", MAX_CSV_PAGE_BYTES, b"\"001A\",\"Acme\"\n", "");
        }
        assert_eq!(headers.get("accept").unwrap(), "text/csv");
        assert_eq!(q.get("maxRecords").map(String::as_str), Some("2"));
        let locator = q.get("locator").cloned();
        f.results_locators.push(locator.clone());
        let (body, next, count) = match locator.as_deref() {
            None => (
                "\"Id\",\"Name\"\n\"001A\",\"Acme, Inc.\"\n\"001B\",\"\"\n",
                "MTAwMDA",
                "2",
            ),
            Some("MTAwMDA") => ("\"Id\",\"Name\"\n\"001C\",\"Line\nbreak\"\n", "null", "1"),
            Some(other) => panic!("unknown locator {other}"),
        };
        (
            [
                ("content-type", "text/csv"),
                ("sforce-locator", next),
                ("sforce-numberofrecords", count),
            ],
            body,
        )
            .into_response()
    })
}

async fn start(fake: Fake) -> (Shared, Url) {
    let shared: Shared = Arc::new(Mutex::new(fake));
    let app = Router::new()
        .route("/services/oauth2/token", post(token))
        .route("/services/oauth2/userinfo", get(userinfo))
        .route("/services/data/v61.0/query", get(query))
        .route("/services/data/v61.0/query/{cursor}", get(query_more))
        .route("/services/data/v61.0/limits", get(limits))
        .route(
            "/services/data/v61.0/composite/sobjects",
            patch(collections).post(collections),
        )
        .route("/services/data/v61.0/tooling/query", get(tooling_query))
        .route("/services/data/v61.0/tooling/sobjects/{object}", post(tooling_create))
        .route("/services/data/v61.0/sobjects/{object}", post(sobject_create))
        .route("/services/data/v61.0/jobs/query/{id}", get(job))
        .route("/services/data/v61.0/jobs/query/{id}/results", get(results))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (shared, url)
}

fn client(base: &Url, budget: Budget) -> Client {
    Client::new(
        Outbound::new(Policy::LOCAL, |b| b).unwrap(),
        OAuthApp {
            client_id: "the-client".into(),
            client_secret: SecretString::from("the-secret"),
            redirect_uri: "https://perly.example.com/cb".into(),
        },
        Connection {
            login_url: base.clone(),
            instance_url: base.clone(),
            refresh_token: SecretString::from("the-refresh-token"),
        },
        budget,
    )
}

#[derive(serde::Deserialize, Debug)]
struct Row {
    #[serde(rename = "Id")]
    id: String,
}

#[tokio::test]
async fn an_expired_session_is_refreshed_once_and_the_call_retried() {
    let (fake, base) = start(Fake::default()).await;
    let c = client(&base, Budget::default()).with_access_token(SecretString::from("stale"));
    let rows: Vec<Row> = c.query("SELECT Id FROM Account").await.unwrap();
    let ids: Vec<_> = rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["001A", "001B", "001C"]);
    let f = lock(&fake);
    assert_eq!(f.refreshes, 1);
    assert_eq!(f.api_calls, 3, "401, then page 1 again, then page 2");
    drop(f);
    assert_eq!(c.usage().unwrap().used, 13);
}

#[tokio::test]
async fn a_missing_access_token_is_fetched_by_the_refresh_grant() {
    let (fake, base) = start(Fake::default()).await;
    let c = client(&base, Budget::default());
    c.limits().await.unwrap();
    let raw: Value = c.get_json(&["limits"], &[]).await.unwrap();
    assert_eq!(raw["DailyApiRequests"]["Max"], 5000);
    assert_eq!(lock(&fake).refreshes, 1);
    assert_eq!(lock(&fake).api_calls, 2);
}

#[tokio::test]
async fn a_session_still_rejected_after_refresh_is_expired_without_a_refresh_loop() {
    let (fake, base) = start(Fake {
        refresh_mode: RefreshMode::Useless,
        ..Fake::default()
    })
    .await;
    let c = client(&base, Budget::default()).with_access_token(SecretString::from("stale"));
    let err = c.limits().await.unwrap_err();
    assert!(matches!(err, Error::SessionExpired), "{err:?}");
    let f = lock(&fake);
    assert_eq!(f.refreshes, 1);
    assert_eq!(f.api_calls, 2);
}

#[tokio::test]
async fn a_refused_refresh_token_breaks_the_connection_for_good() {
    let (fake, base) = start(Fake {
        refresh_mode: RefreshMode::Refused,
        ..Fake::default()
    })
    .await;
    let c = client(&base, Budget::default()).with_access_token(SecretString::from("stale"));
    let err = c.limits().await.unwrap_err();
    assert!(
        matches!(&err, Error::ConnectionBroken(m) if m == "expired access/refresh token"),
        "{err:?}"
    );
    let again = c.clone().limits().await.unwrap_err();
    assert!(matches!(again, Error::ConnectionBroken(_)));
    let f = lock(&fake);
    assert_eq!(f.refreshes, 1, "a broken connection is not refreshed again");
    assert_eq!(f.api_calls, 1);
}

#[tokio::test]
async fn a_refresh_answer_naming_a_private_instance_is_refused() {
    let (fake, base) = start(Fake {
        refresh_mode: RefreshMode::ForeignInstance,
        ..Fake::default()
    })
    .await;
    let c = client(&base, Budget::default());
    let err = c.limits().await.unwrap_err();
    assert!(
        matches!(&err, Error::Refused(m) if m.contains("http://10.0.0.1:5432") && m.contains("does not call")),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert_eq!(lock(&fake).api_calls, 0, "no API call with a token from that answer");
}

#[tokio::test]
async fn a_json_answer_over_the_cap_is_refused() {
    let (_fake, base) = start(Fake {
        oversized_json: true,
        ..Fake::default()
    })
    .await;
    let c = client(&base, Budget::default()).with_access_token(SecretString::from("fresh"));
    let err = c.limits().await.unwrap_err();
    assert!(
        matches!(&err, Error::Protocol(m) if m.contains("GET /services/data/v61.0/limits") && m.contains("larger than 8 MiB")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_bulk_page_over_the_cap_is_refused() {
    let (_fake, base) = start(Fake::default()).await;
    let c = client(&base, Budget::default()).with_access_token(SecretString::from("fresh"));
    let err = c.results_page("oversized", None, Some(1000)).await.unwrap_err();
    assert!(
        matches!(&err, Error::Protocol(m) if m.contains("Bulk results page") && m.contains("larger than 64 MiB")),
        "{err:?}"
    );
}

#[tokio::test]
async fn concurrent_expired_calls_share_one_refresh() {
    let (fake, base) = start(Fake::default()).await;
    let c = client(&base, Budget::default()).with_access_token(SecretString::from("stale"));
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.limits().await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(lock(&fake).refreshes, 1);
}

#[tokio::test]
async fn an_exceeded_request_limit_is_not_retried() {
    let (fake, base) = start(Fake {
        limit_exceeded: true,
        ..Fake::default()
    })
    .await;
    let c = client(&base, Budget::default()).with_access_token(SecretString::from("fresh"));
    let err = c.limits().await.unwrap_err();
    assert!(
        matches!(&err, Error::LimitExceeded { message } if message == "TotalRequests Limit exceeded."),
        "{err:?}"
    );
    assert!(!err.is_transient());
    let f = lock(&fake);
    assert_eq!((f.api_calls, f.refreshes), (1, 0));
}

#[tokio::test]
async fn a_spent_budget_refuses_without_calling_salesforce() {
    let (fake, base) = start(Fake {
        base_usage: 2600,
        ..Fake::default()
    })
    .await;
    let c = client(&base, Budget::default()).with_access_token(SecretString::from("fresh"));
    c.limits().await.unwrap();
    let err = c.limits().await.unwrap_err();
    match err {
        Error::OverBudget { usage, allowed } => {
            assert_eq!((usage.used, usage.max, allowed), (2601, 5000, 2500));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(lock(&fake).api_calls, 1);
}

#[tokio::test]
async fn update_collection_sends_at_most_200_records_per_call_and_keeps_order() {
    let (fake, base) = start(Fake::default()).await;
    let c = client(&base, Budget::new(1.0)).with_access_token(SecretString::from("fresh"));
    let mut records: Vec<Value> = (0..450)
        .map(|i| json!({"attributes": {"type": "Account"}, "id": format!("001{i:05}"), "Perly_Health_Score__c": 42}))
        .collect();
    records[321]["id"] = json!("bad");
    let results = c.update_collection(&records).await.unwrap();
    assert_eq!(lock(&fake).collection_sizes, [200, 200, 50]);
    assert_eq!(results.len(), 450);
    assert_eq!(results[0].id.as_deref(), Some("00100000"));
    assert_eq!(results[449].id.as_deref(), Some("00100449"));
    assert!(!results[321].success);
    assert_eq!(results[321].errors[0].status_code, "UNABLE_TO_LOCK_ROW");
    assert_eq!(results.iter().filter(|r| r.success).count(), 449);
}

#[tokio::test]
async fn bulk_results_follow_the_locator_to_the_last_page() {
    let (fake, base) = start(Fake::default()).await;
    let c = client(&base, Budget::default()).with_access_token(SecretString::from("fresh"));
    let mut stream = c.results_stream("750R0000000zlh9IAA", Some(2));
    let first = stream.next_page().await.unwrap().unwrap();
    assert_eq!(first.columns, ["Id", "Name"]);
    assert_eq!(first.number_of_records, 2);
    assert_eq!(first.next_locator.as_deref(), Some("MTAwMDA"));
    assert_eq!(first.get(0, first.column("Name").unwrap()), Some("Acme, Inc."));
    assert_eq!(first.get(1, 1), None, "empty cells are null");
    let last = stream.next_page().await.unwrap().unwrap();
    assert_eq!(last.next_locator, None);
    assert_eq!(&last.rows[0][1], "Line\nbreak");
    assert!(stream.next_page().await.unwrap().is_none());
    assert_eq!(lock(&fake).results_locators, [None, Some("MTAwMDA".to_string())]);
}

#[tokio::test]
async fn results_of_an_unfinished_job_are_not_ready() {
    let (_fake, base) = start(Fake::default()).await;
    let c = client(&base, Budget::default()).with_access_token(SecretString::from("fresh"));
    let err = c.results_page("running", None, Some(2)).await.unwrap_err();
    assert!(matches!(err, Error::NotReady), "{err:?}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn waiting_polls_until_the_job_completes() {
    let (fake, base) = start(Fake::default()).await;
    let c = client(&base, Budget::default()).with_access_token(SecretString::from("fresh"));
    let job = c
        .wait_for_job("750R0000000zlh9IAA", Duration::from_millis(1))
        .await
        .unwrap();
    assert_eq!(job.state, perly_salesforce::JobState::JobComplete);
    assert_eq!(job.operation, Operation::Query);
    assert_eq!(lock(&fake).job_polls, 3);
}

#[tokio::test]
async fn a_failed_job_says_why() {
    let (_fake, base) = start(Fake {
        job_final_state: "Failed",
        ..Fake::default()
    })
    .await;
    let c = client(&base, Budget::default()).with_access_token(SecretString::from("fresh"));
    let err = c.wait_for_job("750X", Duration::from_millis(1)).await.unwrap_err();
    match err {
        Error::JobFailed { id, state, message } => {
            assert_eq!((id.as_str(), state.as_str()), ("750X", "Failed"));
            assert!(message.contains("No such column"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn field_setup_creates_everything_once_and_nothing_on_a_second_run() {
    let (fake, base) = start(Fake {
        // One field exists already, and its permission lacks edit.
        custom_fields: vec!["Perly_Risk_Level".into()],
        permission_set: Some("0PS5e000000XyZaGAK".into()),
        field_permissions: vec![("01kOLD".into(), "Account.Perly_Risk_Level__c".into(), true, false)],
        ..Fake::default()
    })
    .await;
    let c = client(&base, Budget::new(1.0)).with_access_token(SecretString::from("fresh"));

    let first = ensure_perly_fields(&c).await.unwrap();
    let fields: Vec<_> = first.fields.iter().map(|f| (f.api_name, f.field, f.access)).collect();
    assert_eq!(
        fields,
        [
            ("Perly_Health_Score__c", Presence::Created, Access::GrantedNow),
            ("Perly_Risk_Level__c", Presence::AlreadyPresent, Access::GrantedNow),
            ("Perly_Last_Updated__c", Presence::Created, Access::GrantedNow),
        ]
    );
    assert_eq!(first.permission_set, Presence::AlreadyPresent);
    assert_eq!(first.assignment, Presence::Created);
    {
        let f = lock(&fake);
        assert_eq!(f.tooling_creates, 2);
        assert_eq!(f.creates, ["PermissionSetAssignment"]);
        // The old row was updated (PATCH of 1), two rows created (POST of 2).
        assert_eq!(f.collection_sizes, [1, 2]);
    }
    // The fake does not apply the PATCH; mark it applied as Salesforce would.
    lock(&fake).field_permissions[0].3 = true;

    let second = ensure_perly_fields(&c).await.unwrap();
    assert!(!second.changed_anything(), "{second:?}");
    assert!(second
        .fields
        .iter()
        .all(|f| f.field == Presence::AlreadyPresent && f.access == Access::AlreadyGranted));
    let f = lock(&fake);
    assert_eq!(f.tooling_creates, 2);
    assert_eq!(f.creates.len(), 1);
    assert_eq!(f.collection_sizes.len(), 2);
    assert_eq!(PERLY_FIELDS.len(), f.custom_fields.len());
}
