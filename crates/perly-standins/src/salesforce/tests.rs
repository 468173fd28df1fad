//! The Salesforce stand-in over real HTTP, on port 0.

use std::collections::BTreeSet;

use reqwest::redirect::Policy;
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::*;

const REDIRECT: &str = "https://app.perly.example/integrations/salesforce/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gXFcq4ejk";
const CHALLENGE: &str = "GU1kqj02YyrSo6zWfssbJB1TvsOhz4695HB8WBFaQQs";

fn app() -> OAuthApp {
    OAuthApp {
        client_id: "3MVG9perly".into(),
        client_secret: "sf-secret".into(),
    }
}

async fn spawn(accounts: u64) -> (SalesforceStandin, reqwest::Client) {
    let spec = OrgSpec {
        accounts,
        ..OrgSpec::default()
    };
    let sf = SalesforceStandin::start("127.0.0.1:0", "127.0.0.1:0", spec, vec![app()])
        .await
        .expect("start");
    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client");
    (sf, http)
}

fn example(name: &str) -> Value {
    let path = format!("{}/specs/examples/salesforce/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("example file")).expect("JSON")
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().expect("object").keys().cloned().collect()
}

fn query_of(location: &str) -> Vec<(String, String)> {
    url::Url::parse(location)
        .expect("URL")
        .query_pairs()
        .into_owned()
        .collect()
}

fn pair<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

/// Logs in through the consent form; returns the redirect's query.
async fn consent(base: &str, http: &reqwest::Client, username: &str, decision: &str) -> Vec<(String, String)> {
    let res = http
        .post(format!("{base}/services/oauth2/authorize"))
        .form(&[
            ("response_type", "code"),
            ("client_id", app().client_id.as_str()),
            ("redirect_uri", REDIRECT),
            ("scope", "api refresh_token"),
            ("state", "st4te"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("username", username),
            ("password", ADMIN_PASSWORD),
            ("decision", decision),
        ])
        .send()
        .await
        .expect("consent");
    assert_eq!(res.status(), StatusCode::FOUND);
    let location = res.headers()["location"].to_str().expect("ascii").to_owned();
    assert!(location.starts_with(REDIRECT), "{location}");
    query_of(&location)
}

async fn token(base: &str, http: &reqwest::Client, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let res = http
        .post(format!("{base}/services/oauth2/token"))
        .form(form)
        .send()
        .await
        .expect("token");
    let status = res.status();
    (status, res.json().await.expect("json"))
}

async fn login(sf: &SalesforceStandin, http: &reqwest::Client) -> String {
    let (status, body) = token(
        &sf.login_url(),
        http,
        &[
            ("grant_type", "password"),
            ("client_id", "3MVG9perly"),
            ("client_secret", "sf-secret"),
            ("username", &sf.production().admin_username()),
            ("password", ADMIN_PASSWORD),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().expect("token").to_owned()
}

async fn get(http: &reqwest::Client, url: &str, token: &str) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let res = http.get(url).bearer_auth(token).send().await.expect("get");
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.expect("text");
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: &Value,
) -> (StatusCode, Value) {
    let res = http
        .request(method, url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("send");
    let status = res.status();
    let text = res.text().await.expect("text");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn soql(base: &str, q: &str) -> String {
    format!(
        "{base}/services/data/v59.0/query?q={}",
        url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
    )
}

#[tokio::test]
async fn web_server_flow_with_pkce_issues_the_recorded_token_shape_and_refreshes() {
    let (sf, http) = spawn(2).await;
    let base = sf.login_url();
    let page = http
        .get(format!(
            "{base}/services/oauth2/authorize?response_type=code&client_id=3MVG9perly&redirect_uri={REDIRECT}&scope=api%20refresh_token&state=st4te&code_challenge={CHALLENGE}&code_challenge_method=S256"
        ))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert!(
        html.contains("Acme Customer Success") && html.contains("Production"),
        "{html}"
    );
    assert!(html.contains("Manage user data via APIs (api)"));
    assert!(html.contains(&format!("value=\"{}\"", sf.production().admin_username())));

    let q = consent(&base, &http, &sf.production().admin_username(), "allow").await;
    assert_eq!(pair(&q, "state"), Some("st4te"));
    let code = pair(&q, "code").expect("code").to_owned();
    let exchange = |verifier: &'static str, code: String| {
        let base = base.clone();
        let http = http.clone();
        async move {
            token(
                &base,
                &http,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("client_id", "3MVG9perly"),
                    ("client_secret", "sf-secret"),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", verifier),
                ],
            )
            .await
        }
    };
    let (status, body) = exchange("wrong-verifier-wrong-verifier-wrong-verifier", code.clone()).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_grant", "error_description": "invalid code verifier"})
        )
    );
    let (status, body) = exchange(VERIFIER, code.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        keys(&body),
        keys(&example("token_response_authorization_code_constructed.json"))
    );
    assert_eq!(body["instance_url"], base.as_str());
    assert_eq!(body["token_type"], "Bearer");
    let (status, again) = exchange(VERIFIER, code).await;
    assert_eq!(
        (status, again["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_grant"))
    );

    let access = body["access_token"].as_str().expect("access").to_owned();
    let (status, _, me) = get(&http, &format!("{base}/services/oauth2/userinfo"), &access).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["user_id"], sf.production().admin_user_id().as_str());
    assert_eq!(me["organization_id"], sf.production().org_id().as_str());
    let (status, _, id) = get(&http, body["id"].as_str().expect("id"), &access).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(id["username"], sf.production().admin_username().as_str());

    let refresh = body["refresh_token"].as_str().expect("refresh").to_owned();
    let refresh_form = [
        ("grant_type", "refresh_token"),
        ("client_id", "3MVG9perly"),
        ("client_secret", "sf-secret"),
        ("refresh_token", refresh.as_str()),
    ];
    let (status, refreshed) = token(&base, &http, &refresh_form).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        keys(&refreshed),
        keys(&example("token_response_refresh_cloudsfdc.json"))
    );
    let res = http
        .post(format!("{base}/services/oauth2/revoke"))
        .form(&[("token", refresh.as_str())])
        .send()
        .await
        .expect("revoke");
    assert_eq!(res.status(), StatusCode::OK);
    let (status, body) = token(&base, &http, &refresh_form).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            example("token_error_invalid_grant_expired.json")
        )
    );
    let new_access = refreshed["access_token"].as_str().expect("access");
    let (status, _, _) = get(&http, &soql(&base, "SELECT Id FROM Account"), new_access).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "revoking the refresh token kills its access tokens"
    );
    let res = http
        .post(format!("{base}/services/oauth2/revoke"))
        .form(&[("token", "nope")])
        .send()
        .await
        .expect("revoke");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        res.json::<Value>().await.expect("json"),
        example("revoke_error_invalid_token.json")
    );
}

#[tokio::test]
async fn deny_unknown_clients_and_bad_grants_get_salesforce_errors() {
    let (sf, http) = spawn(2).await;
    let base = sf.sandbox_login_url();
    let q = consent(&base, &http, &sf.sandbox().admin_username(), "deny").await;
    assert_eq!(pair(&q, "error"), Some("access_denied"));
    assert_eq!(pair(&q, "error_description"), Some("end-user denied authorization"));
    assert_eq!(pair(&q, "state"), Some("st4te"));
    let res = http
        .get(format!(
            "{base}/services/oauth2/authorize?response_type=code&client_id=other&redirect_uri={REDIRECT}"
        ))
        .send()
        .await
        .expect("page");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let html = res.text().await.expect("html");
    assert!(
        html.contains("error=invalid_client_id") && html.contains("client identifier invalid"),
        "{html}"
    );
    let cases: [(&[(&str, &str)], Value); 4] = [
        (
            &[("grant_type", "magic")],
            json!({"error": "unsupported_grant_type", "error_description": "grant type not supported"}),
        ),
        (
            &[("grant_type", "password"), ("client_id", "nope")],
            json!({"error": "invalid_client_id", "error_description": "client identifier invalid"}),
        ),
        (
            &[
                ("grant_type", "password"),
                ("client_id", "3MVG9perly"),
                ("client_secret", "bad"),
            ],
            json!({"error": "invalid_client", "error_description": "invalid client credentials"}),
        ),
        (
            &[
                ("grant_type", "password"),
                ("client_id", "3MVG9perly"),
                ("client_secret", "sf-secret"),
                ("username", "x"),
                ("password", "y"),
            ],
            json!({"error": "invalid_grant", "error_description": "authentication failure"}),
        ),
    ];
    for (form, want) in cases {
        assert_eq!(token(&base, &http, form).await, (StatusCode::BAD_REQUEST, want));
    }
}

#[tokio::test]
async fn api_calls_need_a_session_count_against_the_limit_and_say_so() {
    let (sf, http) = spawn(2).await;
    let base = sf.login_url();
    let (status, _, body) = get(&http, &soql(&base, "SELECT Id FROM Account"), "nope").await;
    assert_eq!(
        (status, body),
        (StatusCode::UNAUTHORIZED, example("error_401_invalid_session_id.json"))
    );
    let token = login(&sf, &http).await;
    let (status, headers, body) = get(&http, &soql(&base, "SELECT Id FROM Account"), &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["totalSize"], 2);
    assert_eq!(
        headers["sforce-limit-info"],
        format!("api-usage=1/{DEFAULT_API_MAX}").as_str()
    );
    sf.production().set_api_usage(9, 10);
    let (status, headers, _) = get(&http, &format!("{base}/services/data/v59.0/limits"), &token).await;
    assert_eq!(
        (status, headers["sforce-limit-info"].to_str().expect("ascii")),
        (StatusCode::OK, "api-usage=10/10")
    );
    let (status, _, body) = get(&http, &format!("{base}/services/data/v59.0/limits"), &token).await;
    assert_eq!(
        (status, body),
        (StatusCode::FORBIDDEN, example("error_403_request_limit_exceeded.json"))
    );
    sf.production().set_api_usage(0, 100);
    sf.production().inject(SalesforceFault::LimitExceeded { times: 1 });
    let (status, _, _) = get(&http, &soql(&base, "SELECT Id FROM Account"), &token).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    sf.production().inject(SalesforceFault::Status {
        status: 503,
        times: 1,
        path_contains: Some("/query".into()),
    });
    let (status, _, body) = get(&http, &soql(&base, "SELECT Id FROM Account"), &token).await;
    assert_eq!(
        (status, body[0]["errorCode"].clone()),
        (StatusCode::SERVICE_UNAVAILABLE, json!("SERVER_UNAVAILABLE"))
    );
    let (status, _, _) = get(&http, &soql(&base, "SELECT Id FROM Account"), &token).await;
    assert_eq!(status, StatusCode::OK);
    sf.production().disable_api();
    let (status, _, body) = get(&http, &soql(&base, "SELECT Id FROM Account"), &token).await;
    assert_eq!(
        (status, body[0]["errorCode"].clone()),
        (StatusCode::FORBIDDEN, json!("API_DISABLED_FOR_ORG"))
    );
    sf.production().set_user_permission("ApiEnabled", true);
    sf.production().inject(SalesforceFault::ExpireSessions);
    let (status, _, _) = get(&http, &soql(&base, "SELECT Id FROM Account"), &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let logged = sf.production().requests();
    assert!(logged
        .iter()
        .any(|r| r.path == "/services/oauth2/token" && r.status == 200));
    assert!(logged.iter().filter(|r| r.path.ends_with("/query")).count() >= 6);
}

#[tokio::test]
async fn queries_page_at_2000_records_and_answer_each_org() {
    let (sf, http) = spawn(1100).await;
    let base = sf.login_url();
    let token = login(&sf, &http).await;
    let (_, _, first) = get(
        &http,
        &soql(&base, "SELECT Id, Name, Account.Name, Account.Owner.Email FROM Contact"),
        &token,
    )
    .await;
    assert_eq!(
        (first["totalSize"].clone(), first["done"].clone()),
        (json!(2200), json!(false))
    );
    assert_eq!(first["records"].as_array().map(Vec::len), Some(2000));
    let r0 = &first["records"][0];
    assert_eq!(r0["attributes"]["type"], "Contact");
    assert!(r0["Account"]["Owner"]["Email"].is_string(), "{r0}");
    let next = first["nextRecordsUrl"].as_str().expect("next");
    assert!(
        next.starts_with("/services/data/v59.0/query/01g") && next.ends_with("-2000"),
        "{next}"
    );
    let (_, _, second) = get(&http, &format!("{base}{next}"), &token).await;
    assert_eq!(
        (second["done"].clone(), second["records"].as_array().map(Vec::len)),
        (json!(true), Some(200))
    );
    let (_, _, count) = get(
        &http,
        &soql(&base, "SELECT COUNT() FROM Opportunity WHERE StageName = 'Closed Won'"),
        &token,
    )
    .await;
    assert!(
        count["totalSize"].as_u64().is_some_and(|n| n > 0 && n < 1100),
        "{count}"
    );
    let (status, _, bad) = get(&http, &soql(&base, "SELECT Id, Nope__c FROM Account"), &token).await;
    assert_eq!(
        (status, bad[0]["errorCode"].clone()),
        (StatusCode::BAD_REQUEST, json!("INVALID_FIELD"))
    );
    let (_, _, org) = get(
        &http,
        &soql(&base, "SELECT IsSandbox, Name, OrganizationType FROM Organization"),
        &token,
    )
    .await;
    assert_eq!(org["records"][0]["IsSandbox"], false);
    let (_, _, perms) = get(&http, &soql(&base, "SELECT PermissionsApiEnabled, PermissionsCustomizeApplication, PermissionsModifyAllData FROM UserPermissionAccess"), &token).await;
    assert_eq!(perms["records"][0]["PermissionsModifyAllData"], true, "{perms}");

    sf.sandbox().set_access("Opportunity", ObjectAccess::NONE);
    let sandbox_token = sf.sandbox().issue_token("3MVG9perly");
    let sbase = sf.sandbox_login_url();
    let (_, _, org) = get(
        &http,
        &soql(&sbase, "SELECT IsSandbox FROM Organization"),
        &sandbox_token,
    )
    .await;
    assert_eq!(org["records"][0]["IsSandbox"], true);
    let (status, _, body) = get(&http, &soql(&sbase, "SELECT Id FROM Opportunity"), &sandbox_token).await;
    assert_eq!(
        (status, body[0]["errorCode"].clone()),
        (StatusCode::BAD_REQUEST, json!("INVALID_TYPE"))
    );
    let (_, _, global) = get(&http, &format!("{sbase}/services/data/v59.0/sobjects/"), &sandbox_token).await;
    let opp = global["sobjects"]
        .as_array()
        .and_then(|s| s.iter().find(|o| o["name"] == "Opportunity"))
        .cloned()
        .expect("listed");
    assert_eq!(
        (opp["queryable"].clone(), opp["createable"].clone()),
        (json!(false), json!(false))
    );
    let (status, _, _) = get(&http, &soql(&base, "SELECT Id FROM Account"), &sandbox_token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "tokens are per org");
}

#[tokio::test]
async fn records_are_created_updated_and_seen_by_incremental_queries() {
    let (sf, http) = spawn(3).await;
    let base = sf.login_url();
    let token = login(&sf, &http).await;
    let data = format!("{base}/services/data/v59.0");
    let account = sf.production().account_id(1);
    let (status, body) = send(
        &http,
        reqwest::Method::POST,
        &format!("{data}/sobjects/Task/"),
        &token,
        &json!({"Subject": "Perly: check in", "WhatId": account, "ActivityDate": "2026-12-04", "Priority": "High"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("00T") && id.len() == 18));
    let task = sf.production().records("Task");
    assert_eq!(task[0]["Status"], "Not Started");
    assert_eq!(task[0]["AccountId"], account.as_str());
    let (status, body) = send(
        &http,
        reqwest::Method::POST,
        &format!("{data}/sobjects/Account/"),
        &token,
        &json!({"Website": "x"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body[0]["errorCode"], "REQUIRED_FIELD_MISSING");
    assert_eq!(body[0]["fields"], json!(["Name"]));
    let (status, body) = send(
        &http,
        reqwest::Method::POST,
        &format!("{data}/sobjects/Account/"),
        &token,
        &json!({"Name": "x", "Id": "1"}),
    )
    .await;
    assert_eq!(
        (status, body[0]["message"].clone()),
        (
            StatusCode::BAD_REQUEST,
            json!("The Id field should not be specified in the sobject data.")
        )
    );

    let (_, _, before) = get(
        &http,
        &soql(
            &base,
            &format!("SELECT SystemModstamp FROM Account WHERE Id = '{account}'"),
        ),
        &token,
    )
    .await;
    let (status, _) = send(
        &http,
        reqwest::Method::PATCH,
        &format!("{data}/sobjects/Account/{account}"),
        &token,
        &json!({"Industry": "Energy"}),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let stamp = sf.production().record("Account", &account).expect("record")["SystemModstamp"].clone();
    assert_ne!(before["records"][0]["SystemModstamp"], stamp);
    let since = before["records"][0]["SystemModstamp"]
        .as_str()
        .expect("stamp")
        .replace("+0000", "Z");
    let (_, _, changed) = get(
        &http,
        &soql(
            &base,
            &format!("SELECT Id, Industry FROM Account WHERE SystemModstamp > {since}"),
        ),
        &token,
    )
    .await;
    assert!(
        changed["records"].as_array().is_some_and(|r| r
            .iter()
            .any(|r| r["Id"] == account.as_str() && r["Industry"] == "Energy")),
        "{changed}"
    );
    let (status, _) = send(
        &http,
        reqwest::Method::DELETE,
        &format!("{data}/sobjects/Account/{account}"),
        &token,
        &Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, _, live) = get(&http, &soql(&base, "SELECT Id FROM Account"), &token).await;
    let (_, _, all) = get(
        &http,
        &format!("{data}/queryAll?q=SELECT+Id,IsDeleted+FROM+Account"),
        &token,
    )
    .await;
    assert_eq!(
        (live["totalSize"].clone(), all["totalSize"].clone()),
        (json!(2), json!(3))
    );
}

#[tokio::test]
async fn sobject_collections_report_per_record_results_and_roll_back_all_or_none() {
    let (sf, http) = spawn(3).await;
    let token = login(&sf, &http).await;
    let url = format!("{}/services/data/v59.0/composite/sobjects", sf.login_url());
    sf.production()
        .add_custom_field("Account", "Perly_Health_Score__c", "double", "Perly Health Score");
    let ids: Vec<String> = (0..3).map(|i| sf.production().account_id(i)).collect();
    let records = |score: i64| -> Value {
        json!({"allOrNone": false, "records": ids.iter().map(|id| json!({"attributes": {"type": "Account"}, "id": id, "Perly_Health_Score__c": score})).collect::<Vec<_>>()})
    };
    sf.production().inject(SalesforceFault::FailRecords {
        ids: vec![ids[1].clone()],
        status_code: "UNABLE_TO_LOCK_ROW".into(),
        message: format!(
            "unable to obtain exclusive access to this record or 1 records: {}",
            ids[1]
        ),
        times: 1,
    });
    let (status, body) = send(&http, reqwest::Method::PATCH, &url, &token, &records(42)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body[0], json!({"id": ids[0], "success": true, "errors": []}));
    assert_eq!(body[1]["success"], false);
    assert_eq!(body[1]["errors"][0]["statusCode"], "UNABLE_TO_LOCK_ROW");
    assert_eq!(
        keys(&body[1]),
        keys(&example("sobject_collections_partial_failure_constructed.json")[1])
    );
    assert_eq!(
        sf.production().record("Account", &ids[0]).expect("a")["Perly_Health_Score__c"],
        42.0
    );
    assert_eq!(
        sf.production().record("Account", &ids[1]).expect("b")["Perly_Health_Score__c"],
        Value::Null
    );

    let mut all = records(7);
    all["allOrNone"] = json!(true);
    all["records"][2]["Nope__c"] = json!(1);
    let (_, body) = send(&http, reqwest::Method::PATCH, &url, &token, &all).await;
    assert_eq!(body[0]["errors"][0]["statusCode"], "ALL_OR_NONE_OPERATION_ROLLED_BACK");
    assert_eq!(body[2]["errors"][0]["statusCode"], "INVALID_FIELD");
    assert_eq!(
        sf.production().record("Account", &ids[0]).expect("a")["Perly_Health_Score__c"],
        42.0,
        "rolled back"
    );
    let too_many = json!({"records": (0..201).map(|_| json!({"attributes": {"type": "Account"}, "Name": "x"})).collect::<Vec<_>>()});
    let (status, body) = send(&http, reqwest::Method::POST, &url, &token, &too_many).await;
    assert_eq!(
        (status, body[0]["errorCode"].clone()),
        (StatusCode::BAD_REQUEST, json!("EXCEEDED_ID_LIMIT"))
    );
}

#[tokio::test]
async fn tooling_fields_stay_hidden_until_field_permissions_grant_them() {
    let (sf, http) = spawn(2).await;
    let base = sf.login_url();
    let data = format!("{base}/services/data/v59.0");
    let token = login(&sf, &http).await;
    let body = json!({"FullName": "Account.Perly_Risk_Level__c", "Metadata": example("customfield_risk_level_request_constructed.json")["body"]["Metadata"]});
    let (status, created) = send(
        &http,
        reqwest::Method::POST,
        &format!("{data}/tooling/sobjects/CustomField/"),
        &token,
        &body,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(created["id"].as_str().is_some_and(|id| id.starts_with("00N")));
    let (status, dup) = send(
        &http,
        reqwest::Method::POST,
        &format!("{data}/tooling/sobjects/CustomField/"),
        &token,
        &body,
    )
    .await;
    assert_eq!(
        (status, dup[0]["errorCode"].clone()),
        (StatusCode::BAD_REQUEST, json!("DUPLICATE_DEVELOPER_NAME"))
    );
    let tq = format!(
        "{data}/tooling/query?q={}",
        url::form_urlencoded::byte_serialize(b"SELECT Id, DeveloperName, TableEnumOrId FROM CustomField WHERE TableEnumOrId = 'Account' AND DeveloperName IN ('Perly_Risk_Level')").collect::<String>()
    );
    let (_, _, found) = get(&http, &tq, &token).await;
    assert_eq!(found["records"][0]["Id"], created["id"]);
    assert_eq!(found["entityTypeName"], "CustomField");

    let (status, _, hidden) = get(&http, &soql(&base, "SELECT Perly_Risk_Level__c FROM Account"), &token).await;
    assert_eq!(
        (status, hidden[0]["errorCode"].clone()),
        (StatusCode::BAD_REQUEST, json!("INVALID_FIELD"))
    );
    let (_, _, describe) = get(&http, &format!("{data}/sobjects/Account/describe"), &token).await;
    assert!(!describe["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .any(|f| f["name"] == "Perly_Risk_Level__c"));

    let post = |path: &str, body: Value| {
        let (http, url, token) = (http.clone(), format!("{data}/{path}"), token.clone());
        async move { send(&http, reqwest::Method::POST, &url, &token, &body).await }
    };
    let (_, set) = post(
        "sobjects/PermissionSet/",
        json!({"Name": "Perly_Integration", "Label": "Perly Integration"}),
    )
    .await;
    let set_id = set["id"].as_str().expect("set").to_owned();
    let (status, fp) = post(
        "composite/sobjects",
        json!({"allOrNone": false, "records": [{"attributes": {"type": "FieldPermissions"}, "ParentId": set_id, "SobjectType": "Account", "Field": "Account.Perly_Risk_Level__c", "PermissionsRead": true, "PermissionsEdit": true}]}),
    )
    .await;
    assert_eq!(
        (status, fp[0]["success"].clone()),
        (StatusCode::OK, json!(true)),
        "{fp}"
    );
    let (_, bad) = post(
        "sobjects/FieldPermissions/",
        json!({"ParentId": set_id, "SobjectType": "Account", "Field": "Account.Nope__c", "PermissionsRead": true}),
    )
    .await;
    assert_eq!(bad[0]["errorCode"], "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST");
    let (status, _) = post(
        "sobjects/PermissionSetAssignment/",
        json!({"AssigneeId": sf.production().admin_user_id(), "PermissionSetId": set_id}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, _, q) = get(
        &http,
        &soql(&base, "SELECT Id FROM PermissionSet WHERE Name = 'Perly_Integration'"),
        &token,
    )
    .await;
    assert_eq!(q["records"][0]["Id"], set_id.as_str());

    let (_, _, describe) = get(&http, &format!("{data}/sobjects/Account/describe"), &token).await;
    let field = describe["fields"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == "Perly_Risk_Level__c"))
        .cloned()
        .expect("visible");
    assert_eq!(
        (
            field["type"].clone(),
            field["updateable"].clone(),
            field["custom"].clone()
        ),
        (json!("picklist"), json!(true), json!(true))
    );
    assert_eq!(field["picklistValues"].as_array().map(Vec::len), Some(4));
    let account = sf.production().account_id(0);
    let (status, _) = send(
        &http,
        reqwest::Method::PATCH,
        &format!("{data}/sobjects/Account/{account}"),
        &token,
        &json!({"Perly_Risk_Level__c": "Severe"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "restricted picklist");
    let (status, _) = send(
        &http,
        reqwest::Method::PATCH,
        &format!("{data}/sobjects/Account/{account}"),
        &token,
        &json!({"Perly_Risk_Level__c": "High"}),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        sf.production().record("Account", &account).expect("a")["Perly_Risk_Level__c"],
        "High"
    );
}

#[tokio::test]
async fn chatter_posts_answer_the_feed_item_and_become_feed_item_records() {
    let (sf, http) = spawn(2).await;
    let base = sf.login_url();
    let token = login(&sf, &http).await;
    let account = sf.production().account_id(0);
    let body = json!({"feedElementType": "FeedItem", "subjectId": account, "body": {"messageSegments": [
        {"type": "MarkupBegin", "markupType": "Bold"}, {"type": "Text", "text": "Perly: health 60 -> 42"}, {"type": "MarkupEnd", "markupType": "Bold"},
        {"type": "Mention", "id": sf.production().user_id(1)}]}});
    let (status, item) = send(
        &http,
        reqwest::Method::POST,
        &format!("{base}/services/data/v59.0/chatter/feed-elements"),
        &token,
        &body,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{item}");
    assert_eq!(keys(&item), keys(&example("feed_item_textpost_recorded_v49.json")));
    assert_eq!(item["parent"]["id"], account.as_str());
    assert_eq!(item["body"]["text"], "Perly: health 60 -> 42@Maya Patel");
    let id = item["id"].as_str().expect("id");
    assert!(id.starts_with("0D5"));
    let (_, _, rows) = get(
        &http,
        &soql(
            &base,
            &format!("SELECT Id, ParentId, Body, CreatedDate FROM FeedItem WHERE ParentId = '{account}'"),
        ),
        &token,
    )
    .await;
    assert_eq!(rows["records"][0]["Id"], id);
    assert_eq!(
        rows["records"][0]["Body"],
        "<b>Perly: health 60 -&gt; 42</b>@Maya Patel"
    );
    let html = http
        .get(format!("{base}/"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(html.contains("Perly: health 60"), "the org page shows the post");
}

#[tokio::test]
async fn bulk_query_jobs_page_csv_with_locators_until_null() {
    let (sf, http) = spawn(25).await;
    let base = sf.login_url();
    let token = login(&sf, &http).await;
    let jobs = format!("{base}/services/data/v59.0/jobs/query");
    sf.production().delete("Contact", &sf.production().contact_id(0));
    let (status, job) = send(
        &http,
        reqwest::Method::POST,
        &jobs,
        &token,
        &json!({"operation": "queryAll", "query": "SELECT Id, Email, Account.Name, IsDeleted, SystemModstamp FROM Contact", "contentType": "CSV", "columnDelimiter": "COMMA", "lineEnding": "LF"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys(&job), keys(&example("query_job_create_response_doc_v58.json")));
    assert_eq!(job["state"], "UploadComplete");
    let id = job["id"].as_str().expect("id").to_owned();
    let (status, _, early) = get(&http, &format!("{jobs}/{id}/results"), &token).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(early[0]["errorCode"], "JOB_NOT_COMPLETE");
    let mut info = Value::Null;
    for _ in 0..100 {
        info = get(&http, &format!("{jobs}/{id}"), &token).await.2;
        if info["state"] == "JobComplete" {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(info["state"], "JobComplete");
    assert_eq!(keys(&info), keys(&example("query_job_info_jobcomplete_doc_v46.json")));
    assert_eq!(info["numberRecordsProcessed"], 50);

    let mut locator = String::new();
    let mut rows: Vec<csv::StringRecord> = Vec::new();
    let mut pages = 0;
    loop {
        let mut url = format!("{jobs}/{id}/results?maxRecords=20");
        if !locator.is_empty() {
            url.push_str(&format!("&locator={locator}"));
        }
        let res = http.get(url).bearer_auth(&token).send().await.expect("results");
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["content-type"], "text/csv");
        locator = res.headers()["sforce-locator"].to_str().expect("ascii").to_owned();
        let n: usize = res.headers()["sforce-numberofrecords"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("n");
        let text = res.text().await.expect("csv");
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        assert_eq!(
            reader.headers().expect("header").iter().collect::<Vec<_>>(),
            ["Id", "Email", "Account.Name", "IsDeleted", "SystemModstamp"]
        );
        let page: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
        assert_eq!(page.len(), n);
        rows.extend(page);
        pages += 1;
        if locator == "null" {
            break;
        }
    }
    assert_eq!((rows.len(), pages), (50, 3));
    assert_eq!(&rows[0][3], "true", "queryAll includes the deleted contact");
    assert!(rows[1][4].ends_with(".000Z"), "{:?}", rows[1]);
    let (status, _) = send(
        &http,
        reqwest::Method::DELETE,
        &format!("{jobs}/{id}"),
        &token,
        &Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, bad) = send(
        &http,
        reqwest::Method::POST,
        &jobs,
        &token,
        &json!({"operation": "query", "query": "SELECT Nope FROM Contact"}),
    )
    .await;
    assert_eq!(
        (status, bad[0]["errorCode"].clone()),
        (StatusCode::BAD_REQUEST, json!("INVALID_FIELD"))
    );
}

#[tokio::test]
async fn hidden_fields_leave_the_describe_and_queries_naming_them_are_refused() {
    let (sf, http) = spawn(3).await;
    let org = sf.production();
    let base = sf.login_url();
    let data = format!("{base}/services/data/v59.0");
    let jobs = format!("{data}/jobs/query");
    let token = login(&sf, &http).await;
    assert!(org.hide_field("Contact", "Phone"));
    assert!(org.hide_field("opportunity", "accountid"), "names are case-insensitive");
    // Salesforce has no field-level security on these.
    assert!(!org.hide_field("Contact", "Id"));
    assert!(!org.hide_field("Contact", "SystemModstamp"));
    assert!(!org.hide_field("Contact", "LastName"), "required");
    assert!(!org.hide_field("Contact", "Nope"));
    assert!(!org.hide_field("Widget__c", "Name"));

    let names = |describe: &Value| -> BTreeSet<String> {
        describe["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .filter_map(|f| f["name"].as_str().map(str::to_owned))
            .collect()
    };
    let (_, _, contact) = get(&http, &format!("{data}/sobjects/Contact/describe"), &token).await;
    let listed = names(&contact);
    assert!(listed.contains("Email") && listed.contains("LastName"), "{listed:?}");
    assert!(!listed.contains("Phone"), "the describe does not list a hidden field");
    let (_, _, opp) = get(&http, &format!("{data}/sobjects/Opportunity/describe"), &token).await;
    assert!(!names(&opp).contains("AccountId"));

    // A query naming it, REST or Bulk, is refused with Salesforce's body.
    let no_phone = "No such column 'Phone' on entity 'Contact'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.";
    let (status, _, rest) = get(&http, &soql(&base, "SELECT Id, Phone FROM Contact"), &token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{rest}");
    assert_eq!(keys(&rest[0]), keys(&example("error_400_invalid_field_doc.json")[0]));
    assert_eq!(rest[0]["errorCode"], "INVALID_FIELD");
    let message = rest[0]["message"].as_str().unwrap_or_default();
    assert!(message.ends_with(no_phone), "{message}");
    assert!(message.contains("ERROR at Row:1:Column:12"), "{message}");
    for (query, missing) in [
        ("SELECT Id, Phone FROM Contact", no_phone.to_owned()),
        (
            "SELECT Id, Opportunity.AccountId FROM OpportunityContactRole",
            "No such column 'AccountId' on entity 'Opportunity'.".to_owned(),
        ),
    ] {
        let (status, bulk) = send(
            &http,
            reqwest::Method::POST,
            &jobs,
            &token,
            &json!({"operation": "queryAll", "query": query, "contentType": "CSV", "columnDelimiter": "COMMA", "lineEnding": "LF"}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {bulk}");
        assert_eq!(bulk[0]["errorCode"], "INVALID_FIELD", "{bulk}");
        assert!(
            bulk[0]["message"].as_str().is_some_and(|m| m.contains(&missing)),
            "{bulk}"
        );
    }

    // Records read through the API leave it out; the test handle still sees it.
    let id = org.contact_id(0);
    let (status, _, record) = get(&http, &format!("{data}/sobjects/Contact/{id}"), &token).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        record.get("Phone").is_none() && record.get("Email").is_some(),
        "{record}"
    );
    assert!(org.record("Contact", &id).is_some_and(|r| r.get("Phone").is_some()));

    // Read given back: the same query runs.
    assert!(org.show_field("Contact", "Phone"));
    let (status, _, rows) = get(&http, &soql(&base, "SELECT Id, Phone FROM Contact"), &token).await;
    assert_eq!(status, StatusCode::OK, "{rows}");
    assert_eq!(rows["totalSize"], 6);
}
