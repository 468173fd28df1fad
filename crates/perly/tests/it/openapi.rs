//! The OpenAPI document is one clients can use: valid (checked by
//! openapi-spec-validator, an independent implementation), with a unique
//! `operationId` per operation, naming exactly the routes the server serves
//! with their methods; and the server answers as it says (schemathesis
//! fuzzes every operation from the document against a seeded workspace).
//! The Python tools are pinned in `crates/perly/tests/requirements.txt`,
//! which `scripts/test` installs.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Output;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

const METHODS: [&str; 5] = ["get", "put", "post", "patch", "delete"];

async fn document(app: &TestApp) -> Value {
    let (status, doc) = app.send(Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, 200, "{doc}");
    doc
}

/// `(path, method, operation)` for every operation of the document.
fn operations(doc: &Value) -> Vec<(String, &'static str, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths").iter() {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                out.push((path.clone(), method, op.clone()));
            }
        }
    }
    out
}

/// Runs a Python module (`python3 -m …`, or `$PYTHON`) in `cwd` off the
/// async runtime, so the in-process server keeps answering while it runs.
async fn python(cwd: &std::path::Path, args: Vec<String>) -> Output {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let shown = args.join(" ");
    let cwd = cwd.to_owned();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(&python)
            .args(&args)
            .current_dir(cwd)
            .stdin(std::process::Stdio::null())
            .output()
    })
    .await
    .expect("join")
    .unwrap_or_else(|e| panic!("run python3 {shown}: {e}"))
}

fn text(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn the_document_is_valid_openapi_with_a_unique_operation_id_per_operation() {
    let app = spawn_app().await;
    let doc = document(&app).await;

    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (path, method, op) in operations(&doc) {
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        assert!(
            id.len() > 6 && id.chars().next().is_some_and(|c| c.is_ascii_lowercase()),
            "{method} {path}: operationId `{id}` should name the operation and its resource (camelCase)"
        );
        if let Some(other) = seen.insert(id.to_owned(), format!("{method} {path}")) {
            panic!("operationId `{id}` is used by {other} and by {method} {path}");
        }
    }
    assert!(seen.len() >= 30, "{seen:?}");

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).expect("json")).expect("write the document");
    let out = python(
        dir.path(),
        vec![
            "-m".into(),
            "openapi_spec_validator".into(),
            "--validation-errors".into(),
            "all".into(),
            file.display().to_string(),
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "openapi-spec-validator refuses the document (pip install -r crates/perly/tests/requirements.txt):\n{}",
        text(&out)
    );
}

/// A documented path with each parameter filled in.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
        out.push('x');
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

/// Every documented operation is served (a request without a key gets
/// as far as the key check, or the document itself), every other method
/// on a documented path is 405, and an `/api/v1` path the document does
/// not name is the API's JSON 404. (Served routes cannot be missing from
/// the document: `perly_web::api::documented` registers each route from
/// its handler's `#[utoipa::path]`, and a unit test of perly-web checks
/// that no `/api` route is added another way.)
#[tokio::test]
async fn the_document_names_exactly_the_served_routes_and_their_methods() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let paths = doc["paths"].as_object().expect("paths");
    let mut checked = 0;
    for (path, item) in paths {
        assert!(path.starts_with("/api/v1/"), "{path}");
        let url = format!("{}{}", app.base, concrete(path));
        for method in METHODS {
            let resp = app
                .client
                .request(
                    Method::from_bytes(method.to_uppercase().as_bytes()).expect("method"),
                    &url,
                )
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .expect("request");
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            match item.get(method) {
                Some(op) if op.get("security").is_some() => {
                    assert_eq!(status, 401, "{method} {path} is documented: {body}");
                    assert_eq!(body["error"]["code"], "unauthorized", "{method} {path}");
                }
                Some(_) => assert_eq!(status, 200, "{method} {path} is documented: {body}"),
                None => assert_eq!(status, 405, "{method} {path} is not documented: {body}"),
            }
            checked += 1;
        }
    }
    assert!(checked >= 5 * 20);
    let (status, body) = app.get("/api/v1/nothing-here").await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("not_found")), "{body}");
}

/// Every list operation (a GET with a `limit` parameter) documents the
/// range, and answers 422 naming `limit` and the range outside it.
#[tokio::test]
async fn limit_outside_its_range_is_a_422_naming_the_field_and_range_on_every_list_endpoint() {
    let app = spawn_app_with_standins().await;
    let hook = app.slack().create_webhook("#limits");
    let channel = app
        .channel("slack", "#limits", &hook, json!({"event_kinds": ["customer_at_risk"]}))
        .await;
    let doc = document(&app).await;
    let mut lists = BTreeSet::new();
    for (path, method, op) in operations(&doc) {
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let Some(limit) = params.iter().find(|p| p["name"] == "limit") else {
            continue;
        };
        assert_eq!(method, "get", "{path}");
        assert_eq!(limit["in"], "query", "{path}");
        let schema = &limit["schema"];
        assert_eq!(schema["minimum"], 1, "{path}: {limit}");
        let max = schema["maximum"]
            .as_u64()
            .unwrap_or_else(|| panic!("{path}: `limit` has no maximum: {limit}"));
        assert!(
            schema["default"].as_u64().is_some_and(|d| (1..=max).contains(&d)),
            "{path}: {limit}"
        );
        let url = path.replace("{id}", &channel);
        for bad in [0, max + 1] {
            let (status, body) = app.get(&format!("{url}?limit={bad}")).await;
            assert_eq!(status, 422, "{path}?limit={bad}: {body}");
            assert_eq!(body["error"]["code"], "invalid_field", "{path}: {body}");
            assert_eq!(body["error"]["field"], "limit", "{path}: {body}");
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(&format!("between 1 and {max}")), "{path}: {message}");
        }
        for good in [1, max] {
            let (status, body) = app.get(&format!("{url}?limit={good}")).await;
            assert_eq!(status, 200, "{path}?limit={good}: {body}");
        }
        lists.insert(path);
    }
    let expected = [
        "/api/v1/alerts",
        "/api/v1/channels/{id}/deliveries",
        "/api/v1/customers",
        "/api/v1/imports",
    ];
    assert_eq!(lists, expected.iter().map(|p| p.to_string()).collect::<BTreeSet<_>>());
}

async fn raw_post(app: &TestApp, method: Method, path: &str, body: &'static str) -> (u16, Value) {
    let resp = app
        .client
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(&app.key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_body_that_is_not_a_json_object_is_refused_saying_what_is_expected() {
    let app = spawn_app().await;
    for (method, path, body, expected) in [
        (
            Method::POST,
            "/api/v1/events",
            r#"[{"id":"x"}]"#,
            "expected a JSON object with an `events` array, got an array",
        ),
        (
            Method::POST,
            "/api/v1/events",
            r#""events""#,
            "expected a JSON object with an `events` array, got a string",
        ),
        (
            Method::POST,
            "/api/v1/customers",
            r#"[{"external_id":"acme","name":"Acme"}]"#,
            "expected a JSON object with a `customers` array, got an array",
        ),
        (
            Method::POST,
            "/api/v1/customers",
            "42",
            "expected a JSON object with a `customers` array, got a number",
        ),
        (
            Method::PUT,
            "/api/v1/scorecard",
            " [] ",
            "expected a JSON object, got an array",
        ),
        (
            Method::POST,
            "/api/v1/channels",
            "null",
            "expected a JSON object, got null",
        ),
    ] {
        let (status, answer) = raw_post(&app, method.clone(), path, body).await;
        assert_eq!(status, 422, "{method} {path} {body}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_body", "{answer}");
        assert_eq!(answer["error"]["field"], "body", "{answer}");
        assert_eq!(answer["error"]["message"], expected, "{method} {path} {body}");
    }
    // An array that is not even valid JSON is still malformed JSON (400).
    let (status, answer) = raw_post(&app, Method::POST, "/api/v1/events", r#"[{"id":"x"},"#).await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (400, &json!("malformed_json")),
        "{answer}"
    );
    // And an object still gets its field named.
    let (status, answer) = raw_post(&app, Method::POST, "/api/v1/events", r#"{"events": {"id": "x"}}"#).await;
    assert_eq!((status, &answer["error"]["field"]), (422, &json!("events")), "{answer}");
}

/// The seeded workspace of the fuzz run: customers with scores, history,
/// alerts and an import, a channel with a delivery, and a Salesforce
/// automation rule.
async fn seed(app: &TestApp) {
    scorecard_of(app, &["seat_utilisation"]).await;
    app.customers(json!([
        {"external_id": "acme", "name": "Acme", "plan": "pro", "mrr": 4200.0, "seats_purchased": 100,
         "owner_email": "ana@example.com"},
        {"external_id": "globex", "name": "Globex", "plan": "starter", "mrr": 99.5, "seats_purchased": 100},
        {"external_id": "initech", "name": "Initech", "parent_external_id": "acme"},
    ]))
    .await;
    let hook = app.slack().create_webhook("#customer-health");
    app.channel(
        "slack",
        "#customer-health",
        &hook,
        json!({"event_kinds": ["customer_at_risk", "health_score_drop", "billing_retry_failed"]}),
    )
    .await;
    set_score(app, "acme", 90).await;
    set_score(app, "globex", 70).await;
    app.advance(chrono::Duration::days(8));
    set_score(app, "acme", 30).await;
    billing_retry_failed(app, "globex", 1).await;
    let now = app.now();
    let backfill: Vec<Value> = (1..=3)
        .map(|d| {
            event(
                &format!("initech-nps-{d}"),
                "initech",
                now - chrono::Duration::days(d),
                json!({"type": "nps_response", "score": 3}),
            )
        })
        .collect();
    let (status, body) = app
        .post("/api/v1/events", json!({"events": backfill, "backfill": true}))
        .await;
    assert_eq!(status, 200, "{body}");
    app.rescore().await;
    app.deliver().await;
    let (status, body) = app
        .post(
            "/api/v1/salesforce/rules",
            json!({"name": "At risk", "when": {"alert_kinds": ["customer_at_risk"]},
                   "task": {"subject": "Call {customer}", "due_in_days": 3, "priority": "High"}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

/// Schemathesis fuzzes every operation from the served document against
/// the real server with an admin-scope (`full`) key, and fails on a 5xx
/// or on an answer whose status, content type or body the document does
/// not describe. Seeded, with a bounded number of examples per operation
/// (seed 16, 50 examples; `PERLY_FUZZ_SEED` and `PERLY_FUZZ_EXAMPLES=500`
/// for another or a deeper run by hand).
///
/// Nothing is excluded: the workspace has no Salesforce connection, so the
/// operations that would call Salesforce (permissions, fields, Perly's
/// fields, settings naming fields, disconnect, sync now) answer from the
/// database (409 `salesforce_not_connected`) without reaching out, and the
/// delivery and Salesforce workers are off, so nothing queued is sent.
#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_the_document_does_not_describe() {
    let app = spawn_app_with_settings_and_standins(&|s| {
        // The fuzzer sends many ingest batches, and the test clock stands
        // still, so a rate limit would only ever answer 429 once spent.
        s.ingest.rate_per_second = 0;
        s.ingest.workspace_rate_per_second = 0;
    })
    .await;
    seed(&app).await;

    let dir = tempfile::tempdir().expect("temp dir");
    let junit = dir.path().join("schemathesis.xml");
    let started = std::time::Instant::now();
    // In a temp dir: schemathesis keeps a cache of past failures in
    // `.schemathesis/` under its working directory and replays them first.
    let out = python(
        dir.path(),
        vec![
            "-m".into(),
            "schemathesis.cli".into(),
            "run".into(),
            format!("{}/api/v1/openapi.json", app.base),
            "--header".into(),
            format!("Authorization: Bearer {}", app.key),
            "--checks".into(),
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance".into(),
            "--phases".into(),
            "examples,coverage,fuzzing,stateful".into(),
            "--seed".into(),
            std::env::var("PERLY_FUZZ_SEED").unwrap_or_else(|_| "16".into()),
            "--max-examples".into(),
            std::env::var("PERLY_FUZZ_EXAMPLES").unwrap_or_else(|_| "50".into()),
            "--workers".into(),
            "1".into(),
            "--generation-database".into(),
            "none".into(),
            "--request-timeout".into(),
            "10".into(),
            "--no-color".into(),
            "--report".into(),
            "junit".into(),
            "--report-junit-path".into(),
            junit.display().to_string(),
        ],
    )
    .await;
    let output = text(&out);
    eprintln!("{output}\nschemathesis took {:.1?}", started.elapsed());
    assert!(
        out.status.success(),
        "schemathesis found answers the document does not describe \
         (pip install -r crates/perly/tests/requirements.txt):\n{output}"
    );
    // It did test every operation (a run that could not load the document,
    // or left operations out, is not a pass).
    let report = std::fs::read_to_string(&junit).expect("schemathesis's JUnit report");
    let doc = document(&app).await;
    for (path, method, _) in operations(&doc) {
        // Schemathesis leaves out the operation that serves the document it
        // was pointed at (it runs 32 of the 33); that one takes no input,
        // and the route test above checks it answers 200.
        if path == "/api/v1/openapi.json" {
            continue;
        }
        let case = format!("testcase name=\"{} {path}\"", method.to_uppercase());
        assert!(
            report.contains(&case),
            "schemathesis did not test {method} {path}:\n{report}"
        );
    }
}
