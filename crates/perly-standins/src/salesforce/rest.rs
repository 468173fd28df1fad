//! Everything under `/services/data/`: the versions list (no session
//! needed), then one gate for every API call (session, API enabled, daily
//! limit, injected faults, `Sforce-Limit-Info`) and the REST, Tooling and
//! Bulk resources behind it.
//!
//! Resources (any `vNN.N`; trailing slashes ignored, as Salesforce does):
//! `query` / `queryAll` (2,000 records a batch, `nextRecordsUrl` cursors
//! `…/query/01g…-2000`), `sobjects` (describeGlobal), `sobjects/{Object}`
//! (POST create), `sobjects/{Object}/describe`, `sobjects/{Object}/{id}`
//! (GET, PATCH, DELETE), `composite/sobjects` (sObject Collections: POST
//! create, PATCH update, DELETE; at most 200 records), `limits`,
//! `chatter/feed-elements` (POST a feed item), `tooling/query`,
//! `tooling/sobjects/{Object}[/{id}]` and `jobs/query…` (see `bulk`).
//! Errors are Salesforce's `[{"message", "errorCode"}]` arrays.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::catalog::{Cell, FieldDef, Kind};
use super::org::{self, RowKey};
use super::query::{self, Plan, QueryError};
use super::save::{self, Mode};
use super::{bulk, ids, oauth, Org, State as OrgState};
use crate::server;

/// Versions the stand-in lists (it answers on any `vNN.N`).
const VERSIONS: &[(&str, &str)] = &[
    ("Winter '23", "56.0"),
    ("Spring '23", "57.0"),
    ("Summer '23", "58.0"),
    ("Winter '24", "59.0"),
    ("Spring '24", "60.0"),
    ("Summer '24", "61.0"),
    ("Winter '25", "62.0"),
    ("Spring '25", "63.0"),
    ("Summer '25", "64.0"),
    ("Winter '26", "65.0"),
];

/// REST query batches: "up to 2,000 records can be returned at a time".
const BATCH: usize = 2000;

/// At most 200 records per sObject Collections call.
const COLLECTION_MAX: usize = 200;

/// A REST query's remaining rows, behind a `nextRecordsUrl`.
pub(crate) struct Cursor {
    plan: Plan,
    keys: Vec<RowKey>,
    tooling: bool,
    batch: usize,
}

/// `[{"message": …, "errorCode": …}]` with `status`.
pub(crate) fn fail(status: StatusCode, code: &str, message: &str) -> Response {
    server::json(status, &json!([{"message": message, "errorCode": code}]))
}

pub(crate) fn not_found() -> Response {
    server::json(
        StatusCode::NOT_FOUND,
        &json!([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]),
    )
}

fn method_not_allowed(method: &Method, allowed: &str) -> Response {
    fail(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        &format!("HTTP Method '{method}' not allowed. Allowed are {allowed}"),
    )
}

fn query_error(e: QueryError) -> Response {
    fail(StatusCode::BAD_REQUEST, e.code, &e.message)
}

/// `GET /services/data/`
pub(crate) async fn versions(State(org): State<Arc<Org>>) -> Response {
    let _ = org;
    let list: Vec<Value> = VERSIONS
        .iter()
        .map(|(label, v)| json!({"label": label, "url": format!("/services/data/v{v}"), "version": v}))
        .collect();
    server::json(StatusCode::OK, &Value::Array(list))
}

fn is_version(s: &str) -> bool {
    s.strip_prefix('v')
        .and_then(|v| v.split_once('.'))
        .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()))
}

/// The body Salesforce sends with an injected status.
fn status_fault(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (error_code, message) = match status {
        503 => ("SERVER_UNAVAILABLE", "Server temporarily unavailable. Please try again later."),
        502 | 504 => ("SERVER_UNAVAILABLE", "Bad gateway"),
        400 => ("BAD_REQUEST", "Bad request"),
        403 => ("FORBIDDEN", "Forbidden"),
        404 => ("NOT_FOUND", "The requested resource does not exist"),
        _ => (
            "UNKNOWN_EXCEPTION",
            "An unexpected error occurred. Please include this ErrorId if you contact support: 1234567890-12345 (-1234567890)",
        ),
    };
    fail(code, error_code, message)
}

fn with_usage(mut response: Response, usage: (u64, u64)) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("api-usage={}/{}", usage.0, usage.1)) {
        response.headers_mut().insert("Sforce-Limit-Info", v);
    }
    response
}

/// Every API call under `/services/data/vNN.N/…`.
pub(crate) async fn dispatch(
    State(org): State<Arc<Org>>,
    method: Method,
    Path(rest): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let segments: Vec<String> = rest.split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    let Some(version) = segments.first().filter(|v| is_version(v)).cloned() else {
        return not_found();
    };
    let path = format!("/services/data/{rest}");
    let usage = {
        let mut st = org.lock();
        if !oauth::bearer(&headers).is_some_and(|t| st.tokens.valid(&t)) {
            return fail(
                StatusCode::UNAUTHORIZED,
                "INVALID_SESSION_ID",
                "Session expired or invalid",
            );
        }
        if !st.data.permission("PermissionsApiEnabled") {
            return fail(
                StatusCode::FORBIDDEN,
                "API_DISABLED_FOR_ORG",
                "The REST API is not enabled for this Organization.",
            );
        }
        if st.take_limit_fault() || st.usage.0 >= st.usage.1 {
            let usage = st.usage;
            return with_usage(
                fail(
                    StatusCode::FORBIDDEN,
                    "REQUEST_LIMIT_EXCEEDED",
                    "TotalRequests Limit exceeded.",
                ),
                usage,
            );
        }
        st.usage.0 += 1;
        if let Some(status) = st.take_status_fault(&path) {
            let usage = st.usage;
            return with_usage(status_fault(status), usage);
        }
        st.usage
    };
    let call = Call {
        org: org.clone(),
        method,
        version,
        params,
        headers,
        body,
    };
    let parts: Vec<&str> = segments[1..].iter().map(String::as_str).collect();
    let response = route(&call, &parts).await;
    // The call did its work; the answer is lost on the way back.
    let lost = {
        let mut st = org.lock();
        st.take_lost_response(&path, call.method.as_str()).then_some(st.usage)
    };
    if let Some(usage) = lost {
        return with_usage(status_fault(500), usage);
    }
    let usage = if parts.first() == Some(&"limits") {
        usage
    } else {
        org.lock().usage
    };
    with_usage(response, usage)
}

/// One API call, past the gate.
pub(crate) struct Call {
    pub(crate) org: Arc<Org>,
    pub(crate) method: Method,
    pub(crate) version: String,
    pub(crate) params: Vec<(String, String)>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Call {
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// `/services/data/vNN.N`
    pub(crate) fn prefix(&self) -> String {
        format!("/services/data/{}", self.version)
    }

    /// The JSON body, or Salesforce's `JSON_PARSER_ERROR`.
    pub(crate) fn json(&self) -> Result<Value, Box<Response>> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Box::new(fail(
                StatusCode::BAD_REQUEST,
                "JSON_PARSER_ERROR",
                &format!("{e} at [line:{}, column:{}]", e.line(), e.column()),
            ))
        })
    }
}

async fn route(call: &Call, parts: &[&str]) -> Response {
    let m = &call.method;
    match parts {
        [] => resources(call),
        ["query"] | ["queryAll"] if m == Method::GET => run_query(call, false, parts[0] == "queryAll"),
        ["query", locator] | ["queryAll", locator] if m == Method::GET => query_more(call, locator, false),
        ["tooling", "query"] if m == Method::GET => run_query(call, true, false),
        ["tooling", "query", locator] if m == Method::GET => query_more(call, locator, true),
        ["sobjects"] if m == Method::GET => describe_global(call, false),
        ["tooling", "sobjects"] if m == Method::GET => describe_global(call, true),
        ["sobjects", object] => sobject_root(call, object, false),
        ["tooling", "sobjects", "CustomField"] if m == Method::POST => create_custom_field(call),
        ["tooling", "sobjects", object] => sobject_root(call, object, true),
        ["sobjects", object, "describe"] | ["tooling", "sobjects", object, "describe"] if m == Method::GET => {
            describe(call, object, parts[0] == "tooling")
        }
        ["sobjects", object, id] => record(call, object, id, false),
        ["tooling", "sobjects", object, id] => record(call, object, id, true),
        ["composite", "sobjects"] => collections(call),
        ["limits"] if m == Method::GET => limits(call),
        ["chatter", "feed-elements"] if m == Method::POST => post_feed_element(call),
        ["jobs", "query", ..] => bulk::route(call, &parts[2..]).await,
        _ => not_found(),
    }
}

fn resources(call: &Call) -> Response {
    let p = call.prefix();
    server::json(
        StatusCode::OK,
        &json!({
            "tooling": format!("{p}/tooling"),
            "chatter": format!("{p}/chatter"),
            "composite": format!("{p}/composite"),
            "jobs": format!("{p}/jobs"),
            "limits": format!("{p}/limits"),
            "query": format!("{p}/query"),
            "queryAll": format!("{p}/queryAll"),
            "sobjects": format!("{p}/sobjects"),
            "connect": format!("{p}/connect"),
        }),
    )
}

fn batch_size(call: &Call) -> usize {
    call.headers
        .get("Sforce-Query-Options")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .find_map(|p| p.trim().strip_prefix("batchSize=")?.trim().parse::<usize>().ok())
        })
        .map_or(BATCH, |n| n.clamp(200, BATCH))
}

fn run_query(call: &Call, tooling: bool, include_deleted: bool) -> Response {
    let Some(q) = call.param("q") else {
        return fail(
            StatusCode::BAD_REQUEST,
            "MALFORMED_QUERY",
            "A query string has to be specified",
        );
    };
    let mut st = call.org.lock();
    let plan = match query::plan(&st.data, q, tooling, include_deleted) {
        Ok(p) => p,
        Err(e) => return query_error(e),
    };
    let mut keys = query::sorted(&st.data, &plan);
    let offset = plan.offset.unwrap_or(0) as usize;
    keys.drain(..offset.min(keys.len()));
    if let Some(limit) = plan.limit {
        keys.truncate(limit as usize);
    }
    if plan.count_only {
        return server::json(
            StatusCode::OK,
            &json!({"totalSize": keys.len(), "done": true, "records": []}),
        );
    }
    if plan.selects_metadata && keys.len() > 1 {
        return fail(
            StatusCode::BAD_REQUEST,
            "MALFORMED_QUERY",
            &format!(
                "When retrieving results with Metadata or FullName fields, the query qualifications must specify no more than one row for retrieval. Result size: {}",
                keys.len()
            ),
        );
    }
    let cursor = Cursor {
        plan,
        keys,
        tooling,
        batch: batch_size(call),
    };
    page(call, &mut st, cursor, 0)
}

fn page(call: &Call, st: &mut OrgState, cursor: Cursor, from: usize) -> Response {
    let total = cursor.keys.len();
    let end = (from + cursor.batch).min(total);
    let prefix = if cursor.tooling {
        format!("{}/tooling", call.prefix())
    } else {
        call.prefix()
    };
    let records: Vec<Value> = cursor.keys[from.min(end)..end]
        .iter()
        .map(|k| query::record_json(&st.data, &cursor.plan, *k, &call.prefix()))
        .collect();
    let mut body = json!({"totalSize": total, "done": end >= total, "records": records});
    if cursor.tooling {
        body["size"] = json!(total);
        body["queryLocator"] = Value::Null;
        body["entityTypeName"] = json!(cursor.plan.object);
    }
    if end < total {
        let locator = st.new_id("01g");
        let next = format!("{prefix}/query/{locator}-{end}");
        if cursor.tooling {
            body["queryLocator"] = json!(format!("{locator}-{end}"));
        }
        body["nextRecordsUrl"] = json!(next);
        st.cursors.insert(locator, cursor);
    }
    server::json(StatusCode::OK, &body)
}

fn query_more(call: &Call, locator: &str, tooling: bool) -> Response {
    let invalid = || {
        fail(
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY_LOCATOR",
            "invalid query locator",
        )
    };
    let Some((id, from)) = locator.rsplit_once('-') else {
        return invalid();
    };
    let Ok(from) = from.parse::<usize>() else {
        return invalid();
    };
    let mut st = call.org.lock();
    let Some(cursor) = st.cursors.remove(id).filter(|c| c.tooling == tooling) else {
        return invalid();
    };
    page(call, &mut st, cursor, from)
}

fn sobject_flags(st: &OrgState, kind: Kind, tooling: bool, prefix: &str) -> Value {
    let t = st.data.table(kind);
    let a = st.data.object_access(kind);
    let base = if tooling {
        format!("{prefix}/tooling")
    } else {
        prefix.to_owned()
    };
    let name = t.name();
    json!({
        "activateable": false,
        "createable": a.create,
        "custom": false,
        "customSetting": false,
        "deletable": a.delete,
        "deprecatedAndHidden": false,
        "feedEnabled": t.def.feed_enabled,
        "hasSubtypes": false,
        "isSubtype": false,
        "keyPrefix": if t.def.prefix.is_empty() { Value::Null } else { json!(t.def.prefix) },
        "label": t.def.label,
        "labelPlural": t.def.label_plural,
        "layoutable": a.create,
        "mergeable": matches!(kind, Kind::Account | Kind::Contact),
        "mruEnabled": a.create,
        "name": name,
        "queryable": a.read,
        "replicateable": a.read,
        "retrieveable": a.read,
        "searchable": a.read && t.def.createable,
        "triggerable": t.def.createable,
        "undeletable": a.delete,
        "updateable": a.edit,
        "urls": {
            "sobject": format!("{base}/sobjects/{name}"),
            "describe": format!("{base}/sobjects/{name}/describe"),
            "rowTemplate": format!("{base}/sobjects/{name}/{{ID}}"),
        },
    })
}

fn describe_global(call: &Call, tooling: bool) -> Response {
    let st = call.org.lock();
    let sobjects: Vec<Value> = st
        .data
        .tables
        .iter()
        .filter(|t| save::served(&st.data, t.name(), tooling).is_some())
        .map(|t| sobject_flags(&st, t.def.kind, tooling, &call.prefix()))
        .collect();
    server::json(
        StatusCode::OK,
        &json!({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": sobjects}),
    )
}

fn child_relationships(st: &OrgState, kind: Kind) -> Vec<Value> {
    let name = st.data.table(kind).name();
    let mut out = Vec::new();
    for t in &st.data.tables {
        if t.def.api == super::catalog::Api::Tooling {
            continue;
        }
        for c in t.columns() {
            if !c.def.reference_to.iter().any(|r| r == name)
                || c.def.name.starts_with("CreatedBy")
                || c.def.name.starts_with("LastModifiedBy")
            {
                continue;
            }
            let relationship = match (t.name(), c.def.name.as_str()) {
                ("Account", "ParentId") => Some("ChildAccounts".to_owned()),
                (_, "AccountId") if matches!(t.def.kind, Kind::Task | Kind::Event) => None,
                _ => Some(t.def.label_plural.replace(' ', "")),
            };
            out.push(json!({
                "cascadeDelete": c.def.name == "AccountId" || c.def.name == "WhatId",
                "childSObject": t.name(),
                "deprecatedAndHidden": false,
                "field": c.def.name,
                "junctionIdListNames": [],
                "junctionReferenceTo": [],
                "relationshipName": relationship,
                "restrictedDelete": false,
            }));
        }
    }
    out
}

fn describe(call: &Call, object: &str, tooling: bool) -> Response {
    let st = call.org.lock();
    let Some(kind) = save::served(&st.data, object, tooling) else {
        return not_found();
    };
    let mut body = sobject_flags(&st, kind, tooling, &call.prefix());
    let a = st.data.object_access(kind);
    let access = st.data.field_access(kind);
    let fields: Vec<Value> = st
        .data
        .table(kind)
        .columns()
        .iter()
        .enumerate()
        .filter(|(i, _)| access[*i].read)
        .map(|(i, c)| c.def.describe(a.create && access[i].edit, a.edit && access[i].edit))
        .collect();
    body["fields"] = Value::Array(fields);
    body["childRelationships"] = Value::Array(child_relationships(&st, kind));
    body["recordTypeInfos"] = json!([]);
    body["actionOverrides"] = json!([]);
    body["compactLayoutable"] = json!(a.create);
    body["searchLayoutable"] = json!(a.create);
    body["namedLayoutInfos"] = json!([]);
    body["networkScopeFieldName"] = Value::Null;
    body["supportedScopes"] =
        json!([{"label": "All accounts", "name": "everything"}, {"label": "My accounts", "name": "mine"}]);
    server::json(StatusCode::OK, &body)
}

fn sobject_root(call: &Call, object: &str, tooling: bool) -> Response {
    let mut st = call.org.lock();
    let Some(kind) = save::served(&st.data, object, tooling) else {
        return not_found();
    };
    match call.method {
        Method::GET => {
            let info = sobject_flags(&st, kind, tooling, &call.prefix());
            server::json(StatusCode::OK, &json!({"objectDescribe": info, "recentItems": []}))
        }
        Method::POST => {
            drop(st);
            let body = match call.json() {
                Ok(v) => v,
                Err(r) => return *r,
            };
            let Some(map) = body.as_object() else {
                return fail(StatusCode::BAD_REQUEST, "JSON_PARSER_ERROR", "Expected a JSON object");
            };
            st = call.org.lock();
            match save::create(&mut st, kind, map) {
                Ok(id) => server::json(StatusCode::CREATED, &json!({"id": id, "success": true, "errors": []})),
                Err(e) => server::json(StatusCode::BAD_REQUEST, &json!([e.rest_json()])),
            }
        }
        _ => method_not_allowed(&call.method, "GET,POST"),
    }
}

fn record(call: &Call, object: &str, id: &str, tooling: bool) -> Response {
    let mut st = call.org.lock();
    let Some(kind) = save::served(&st.data, object, tooling) else {
        return not_found();
    };
    match call.method {
        Method::GET => {
            let table = st.data.table(kind);
            let Some(key) = table.key_of(&st.data.gen, id).filter(|k| !table.is_deleted(*k)) else {
                return not_found();
            };
            if !st.data.object_access(kind).read {
                return not_found();
            }
            let prefix = if tooling {
                format!("{}/tooling", call.prefix())
            } else {
                call.prefix()
            };
            let mut body = st.data.record_json(kind, key, true, &prefix);
            if let Some(fields) = call.param("fields") {
                let wanted: Vec<String> = fields.split(',').map(|f| f.trim().to_ascii_lowercase()).collect();
                if let Value::Object(map) = &mut body {
                    map.retain(|k, _| k == "attributes" || wanted.contains(&k.to_ascii_lowercase()));
                }
            }
            server::json(StatusCode::OK, &body)
        }
        Method::PATCH => {
            drop(st);
            let body = match call.json() {
                Ok(v) => v,
                Err(r) => return *r,
            };
            let Some(map) = body.as_object() else {
                return fail(StatusCode::BAD_REQUEST, "JSON_PARSER_ERROR", "Expected a JSON object");
            };
            st = call.org.lock();
            match save::update(&mut st, kind, id, map) {
                Ok(()) => StatusCode::NO_CONTENT.into_response(),
                Err(e) if e.code == "INVALID_CROSS_REFERENCE_KEY" => not_found(),
                Err(e) => server::json(StatusCode::BAD_REQUEST, &json!([e.rest_json()])),
            }
        }
        Method::DELETE => match save::delete(&mut st, kind, id) {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(e) if e.code == "NOT_FOUND" => not_found(),
            Err(e) => server::json(
                StatusCode::NOT_FOUND,
                &json!([{"errorCode": e.code, "message": e.message}]),
            ),
        },
        _ => method_not_allowed(&call.method, "GET,PATCH,DELETE"),
    }
}

fn collections(call: &Call) -> Response {
    if call.method == Method::DELETE {
        let all_or_none = call.param("allOrNone") == Some("true");
        let ids_: Vec<String> = call
            .param("ids")
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if ids_.len() > COLLECTION_MAX {
            return too_many();
        }
        let mut st = call.org.lock();
        let planned: Vec<Result<(Kind, String), save::SaveError>> = ids_
            .iter()
            .map(|id| {
                st.data.find(id).map(|(k, _)| (k, id.clone())).ok_or(save::SaveError {
                    code: "MALFORMED_ID".into(),
                    message: format!("malformed id {id}"),
                    fields: Vec::new(),
                })
            })
            .collect();
        let failed = planned.iter().any(Result::is_err);
        let results: Vec<Value> = planned
            .into_iter()
            .map(|p| match p {
                Err(e) => json!({"success": false, "errors": [e.result_json()]}),
                Ok(_) if all_or_none && failed => json!({"success": false, "errors": [{"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "message": "Record rolled back because not all records were valid and the request was using AllOrNone header", "fields": []}]}),
                Ok((kind, id)) => match save::delete(&mut st, kind, &id) {
                    Ok(()) => json!({"id": id, "success": true, "errors": []}),
                    Err(e) => json!({"success": false, "errors": [e.result_json()]}),
                },
            })
            .collect();
        return server::json(StatusCode::OK, &Value::Array(results));
    }
    let mode = match call.method {
        Method::POST => Mode::Create,
        Method::PATCH => Mode::Update,
        _ => return method_not_allowed(&call.method, "POST,PATCH,DELETE"),
    };
    let body = match call.json() {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let Some(records) = body.get("records").and_then(Value::as_array) else {
        return fail(StatusCode::BAD_REQUEST, "JSON_PARSER_ERROR", "No records specified");
    };
    if records.len() > COLLECTION_MAX {
        return too_many();
    }
    let all_or_none = body.get("allOrNone").and_then(Value::as_bool).unwrap_or(false);
    let mut st = call.org.lock();
    let results = save::collection(&mut st, mode, records, all_or_none);
    server::json(StatusCode::OK, &Value::Array(results))
}

fn too_many() -> Response {
    fail(
        StatusCode::BAD_REQUEST,
        "EXCEEDED_ID_LIMIT",
        "record limit exceeded: the sObject Collections resources accept at most 200 records",
    )
}

fn limits(call: &Call) -> Response {
    let st = call.org.lock();
    let (used, max) = st.usage;
    let jobs = st.jobs.len() as u64;
    let pair = |max: u64, remaining: u64| json!({"Max": max, "Remaining": remaining});
    server::json(
        StatusCode::OK,
        &json!({
            "DailyApiRequests": pair(max, max.saturating_sub(used)),
            "DailyAsyncApexExecutions": pair(250_000, 250_000),
            "DailyBulkApiBatches": pair(15_000, 15_000),
            "DailyBulkV2QueryFileStorageMB": pair(976_562, 976_562),
            "DailyBulkV2QueryJobs": pair(10_000, 10_000u64.saturating_sub(jobs)),
            "DailyStreamingApiEvents": pair(1_000_000, 1_000_000),
            "DataStorageMB": pair(1024, 1000),
            "FileStorageMB": pair(2048, 2040),
            "MassEmail": pair(5000, 5000),
            "SingleEmail": pair(5000, 5000),
            "StreamingApiConcurrentClients": pair(2000, 2000),
        }),
    )
}

/// `htmlTag` of a `MarkupBegin`/`MarkupEnd` segment.
fn html_tag(markup: &str) -> &'static str {
    match markup {
        "Bold" => "b",
        "Italic" => "i",
        "Underline" => "u",
        "Strikethrough" => "s",
        "Paragraph" => "p",
        "UnorderedList" => "ul",
        "OrderedList" => "ol",
        "ListItem" => "li",
        "Code" => "code",
        _ => "span",
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `POST /chatter/feed-elements`: a FeedItem on a record; answers the
/// Feed Item representation (shape of the recorded v49 answer).
fn post_feed_element(call: &Call) -> Response {
    let body = match call.json() {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let invalid = |m: &str| fail(StatusCode::BAD_REQUEST, "INVALID_INPUT", m);
    if body
        .get("feedElementType")
        .and_then(Value::as_str)
        .is_some_and(|t| t != "FeedItem")
    {
        return invalid("Invalid feedElementType: only FeedItem can be posted.");
    }
    let Some(subject) = body.get("subjectId").and_then(Value::as_str) else {
        return invalid("Missing required field: subjectId");
    };
    let Some(segments) = body.pointer("/body/messageSegments").and_then(Value::as_array) else {
        return invalid("Missing required field: body.messageSegments");
    };
    let mut st = call.org.lock();
    let Some((parent_kind, parent_key)) = st
        .data
        .find(subject)
        .filter(|(k, key)| !st.data.table(*k).is_deleted(*key))
    else {
        return not_found();
    };
    let mut text = String::new();
    let mut html = String::new();
    let mut rich = false;
    let mut out_segments = Vec::new();
    for s in segments {
        match s.get("type").and_then(Value::as_str).unwrap_or_default() {
            "Text" => {
                let t = s.get("text").and_then(Value::as_str).unwrap_or_default();
                text.push_str(t);
                html.push_str(&html_escape(t));
                out_segments.push(json!({"text": t, "type": "Text"}));
            }
            "Mention" => {
                let id = s.get("id").and_then(Value::as_str).unwrap_or_default();
                let name = st
                    .data
                    .find(id)
                    .map(|(k, key)| {
                        let t = st.data.table(k);
                        t.col("Name")
                            .map(|c| t.value(&st.data.gen, key, c))
                            .and_then(|v| v.as_str().map(str::to_owned))
                    })
                    .unwrap_or_default()
                    .unwrap_or_else(|| id.to_owned());
                let shown = format!("@{name}");
                text.push_str(&shown);
                html.push_str(&html_escape(&shown));
                out_segments.push(json!({"name": name, "recordId": id, "text": shown, "type": "Mention"}));
            }
            kind @ ("MarkupBegin" | "MarkupEnd") => {
                rich = true;
                let markup = s.get("markupType").and_then(Value::as_str).unwrap_or_default();
                let tag = html_tag(markup);
                html.push_str(&if kind == "MarkupBegin" {
                    format!("<{tag}>")
                } else {
                    format!("</{tag}>")
                });
                if kind == "MarkupEnd" && markup == "Paragraph" {
                    text.push('\n');
                }
                out_segments.push(json!({"htmlTag": tag, "markupType": markup, "text": "", "type": kind}));
            }
            other => return invalid(&format!("Invalid message segment type: {other}")),
        }
    }
    let fi = st.data.table(Kind::FeedItem);
    let cols = ["ParentId", "Type", "Body", "IsRichText"].map(|n| fi.col(n));
    let cells = [
        Cell::text(st.data.table(parent_kind).id_of(&st.data.gen, parent_key)),
        Cell::text("TextPost"),
        Cell::text(if rich { html } else { text.trim_end().to_owned() }),
        Cell::Bool(rich),
    ];
    let values: Vec<(usize, Cell)> = cols
        .into_iter()
        .zip(cells)
        .filter_map(|(c, v)| c.map(|c| (c, v)))
        .collect();
    let id = st.data.insert(Kind::FeedItem, values);
    let now = st
        .data
        .table(Kind::FeedItem)
        .key_of(&st.data.gen, &id)
        .map_or(Cell::Null, |k| {
            let t = st.data.table(Kind::FeedItem);
            t.col("CreatedDate").map_or(Cell::Null, |c| t.value(&st.data.gen, k, c))
        });
    let created = match now {
        Cell::DateTime(ms) => super::catalog::bulk_datetime(ms),
        _ => String::new(),
    };
    let g = &st.data.gen;
    let admin = g.user_id(0);
    let template = include_str!("../../specs/examples/salesforce/feed_item_textpost_recorded_v49.json")
        .replace("0D53h00000n2hpkCAA", &id)
        .replace("/services/data/v49.0", &call.prefix())
        .replace("https://mohansun-ea-02-dev-ed.my.salesforce.com", &call.org.base)
        .replace("https://mohansun-ea-02-dev-ed--c.documentforce.com", &call.org.base)
        .replace("0053h000002xQ5sAAE", &admin)
        .replace("Mohan Chinnappan", &g.user_name(0))
        .replace("\"Mohan\"", &format!("\"{}\"", g.user_first(0)))
        .replace("\"Chinnappan\"", &format!("\"{}\"", g.user_last(0)))
        .replace("User15946686587279553601", &g.user_alias(0))
        .replace("2020-09-18T13:35:44.000Z", &created);
    let Ok(mut item) = serde_json::from_str::<Value>(&template) else {
        return fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN_EXCEPTION",
            "An unexpected error occurred.",
        );
    };
    item["body"] = json!({"isRichText": rich, "messageSegments": out_segments, "text": text.trim_end()});
    let parent = st.data.table(parent_kind);
    let parent_id = parent.id_of(&st.data.gen, parent_key);
    let parent_name = parent
        .col("Name")
        .map(|c| parent.value(&st.data.gen, parent_key, c))
        .and_then(|v| v.as_str().map(str::to_owned));
    item["parent"] = json!({
        "entityLabel": {"label": parent.def.label, "labelPlural": parent.def.label_plural},
        "id": parent_id,
        "motif": {
            "color": "7F8DE1",
            "largeIconUrl": "/img/icon/accounts64.png",
            "mediumIconUrl": "/img/icon/accounts32.png",
            "smallIconUrl": "/img/icon/accounts16.png",
            "svgIconUrl": null
        },
        "mySubscription": null,
        "name": parent_name,
        "type": parent.name(),
        "url": format!("{}/chatter/records/{parent_id}", call.prefix()),
    });
    item["relativeCreatedDate"] = json!("Just now");
    item["modifiedDate"] = json!(created);
    item["createdDate"] = json!(created);
    tracing::info!(org = call.org.label(), feed_item = %id, "salesforce stand-in: chatter post");
    server::json(StatusCode::CREATED, &item)
}

/// `POST /tooling/sobjects/CustomField/`: a new custom field, hidden from
/// the user until field-level security grants it.
fn create_custom_field(call: &Call) -> Response {
    let body = match call.json() {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let bad = |code: &str, message: &str, fields: &[&str]| {
        server::json(
            StatusCode::BAD_REQUEST,
            &json!([{"message": message, "errorCode": code, "fields": fields}]),
        )
    };
    let mut st = call.org.lock();
    if !st.data.permission("PermissionsCustomizeApplication") {
        return bad(
            "INSUFFICIENT_ACCESS_OR_READONLY",
            "insufficient access rights on object id",
            &[],
        );
    }
    let Some(full_name) = body.get("FullName").and_then(Value::as_str) else {
        return bad(
            "REQUIRED_FIELD_MISSING",
            "Required fields are missing: [FullName]",
            &["FullName"],
        );
    };
    let Some(metadata) = body.get("Metadata").filter(|m| m.is_object()) else {
        return bad(
            "REQUIRED_FIELD_MISSING",
            "Required fields are missing: [Metadata]",
            &["Metadata"],
        );
    };
    let Some((object, field)) = full_name.split_once('.') else {
        return bad(
            "FIELD_INTEGRITY_EXCEPTION",
            &format!("Invalid fullName: {full_name}"),
            &["FullName"],
        );
    };
    let Some(kind) = save::served(&st.data, object, false).filter(|k| {
        matches!(
            k,
            Kind::Account | Kind::Contact | Kind::Opportunity | Kind::Task | Kind::Event
        )
    }) else {
        return bad(
            "FIELD_INTEGRITY_EXCEPTION",
            &format!("Cannot find entity: {object}"),
            &["FullName"],
        );
    };
    let developer = field.strip_suffix("__c").unwrap_or_default();
    let valid = developer.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && developer.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !developer.contains("__")
        && !developer.ends_with('_');
    if !valid {
        return bad(
            "FIELD_INTEGRITY_EXCEPTION",
            &format!("Field name {field} must end in __c and contain only letters, digits and single underscores"),
            &["FullName"],
        );
    }
    let object_name = st.data.table(kind).name();
    if st.data.table(kind).col(field).is_some() {
        return bad(
            "DUPLICATE_DEVELOPER_NAME",
            &format!("There is already a field named {developer} on {object_name}."),
            &["FullName"],
        );
    }
    let Some(label) = metadata.get("label").and_then(Value::as_str).filter(|l| !l.is_empty()) else {
        return bad(
            "FIELD_INTEGRITY_EXCEPTION",
            "Field Label: You must enter a value",
            &["Metadata"],
        );
    };
    let type_name = metadata.get("type").and_then(Value::as_str).unwrap_or_default();
    let Some(ty) = org::field_type_of(type_name) else {
        return bad(
            "FIELD_INTEGRITY_EXCEPTION",
            &format!("Invalid field type: {type_name}"),
            &["Metadata"],
        );
    };
    let mut def = FieldDef::new(field, label, ty);
    def.needs_fls = true;
    def.custom = true;
    def.inline_help = metadata
        .get("inlineHelpText")
        .and_then(Value::as_str)
        .map(str::to_owned);
    def.external_id = metadata.get("externalId").and_then(Value::as_bool).unwrap_or(false);
    let num = |k: &str| {
        metadata
            .get(k)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
    };
    if let Some(p) = num("precision") {
        def.precision = p;
    }
    if let Some(s) = num("scale") {
        def.scale = s;
    }
    if let Some(l) = num("length") {
        def.length = l;
    }
    if let Some(values) = metadata
        .pointer("/valueSet/valueSetDefinition/value")
        .and_then(Value::as_array)
    {
        def.picklist = values
            .iter()
            .filter_map(|v| v.get("fullName").and_then(Value::as_str).map(str::to_owned))
            .collect();
        def.restricted_picklist = metadata
            .pointer("/valueSet/restricted")
            .and_then(Value::as_bool)
            .unwrap_or(false);
    }
    st.data.add_field(kind, def);
    let now = st.data.stamp();
    let id = st
        .data
        .insert_custom_field_record(object_name, field, metadata.clone(), now);
    tracing::info!(org = call.org.label(), field = %full_name, "salesforce stand-in: custom field created");
    let _ = ids::id15(&id);
    server::json(StatusCode::CREATED, &json!({"id": id, "success": true, "errors": []}))
}
