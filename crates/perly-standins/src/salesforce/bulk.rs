//! Bulk API 2.0 query jobs: `POST /jobs/query` (operation `query` or
//! `queryAll`, CSV, any documented `columnDelimiter` and `lineEnding`)
//! answers the job info in state `UploadComplete`; the first `GET
//! /jobs/query/{id}` moves it to `InProgress` and starts counting the
//! matching rows in the background; once counted (and the org's bulk
//! delay has passed) the next poll sees `JobComplete` with
//! `numberRecordsProcessed`. `GET …/results?locator=&maxRecords=` then
//! streams pages of CSV, generated row by row from scan positions (the
//! locator encodes where the next page starts), with `Sforce-Locator`
//! (`null` on the last page) and `Sforce-NumberOfRecords`. Asking before
//! `JobComplete` answers 412 `JOB_NOT_COMPLETE`; with another API version
//! than the job's, 409. `PATCH {"state":"Aborted"}` aborts, `DELETE`
//! removes, `GET /jobs/query` lists.
//!
//! Only one page is held at a time, and the org's lock is taken per chunk
//! of rows, so other calls interleave with a long pull.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::catalog::rest_datetime;
use super::org::RowKey;
use super::query::{self, Plan};
use super::rest::{self, Call};
use super::Org;
use crate::server;

/// Results per page when the client does not say (Salesforce decides; the
/// docs' examples use 50,000).
const DEFAULT_PAGE: u64 = 50_000;
/// Rows generated per lock.
const CHUNK_ROWS: u64 = 2_000;
/// Scan positions looked at per lock.
const CHUNK_SCAN: u64 = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobState {
    UploadComplete,
    InProgress,
    JobComplete,
    Aborted,
}

impl JobState {
    fn name(self) -> &'static str {
        match self {
            JobState::UploadComplete => "UploadComplete",
            JobState::InProgress => "InProgress",
            JobState::JobComplete => "JobComplete",
            JobState::Aborted => "Aborted",
        }
    }

    fn shouting(self) -> &'static str {
        match self {
            JobState::UploadComplete => "UPLOAD_COMPLETE",
            JobState::InProgress => "IN_PROGRESS",
            JobState::JobComplete => "JOB_COMPLETE",
            JobState::Aborted => "ABORTED",
        }
    }
}

pub(crate) struct Job {
    id: String,
    operation: String,
    version: String,
    created_ms: i64,
    modstamp_ms: i64,
    state: JobState,
    delimiter_name: String,
    delimiter: char,
    line_ending_name: String,
    plan: Arc<Plan>,
    first_poll: Option<Instant>,
    /// Matching rows, once counted.
    processed: Option<u64>,
    /// `ORDER BY` results, sorted once.
    sorted: Option<Arc<Vec<RowKey>>>,
    processing_ms: u64,
}

impl Job {
    fn info(&self, full: bool) -> Value {
        let api_version: f64 = self.version.trim_start_matches('v').parse().unwrap_or(59.0);
        let mut v = json!({
            "id": self.id,
            "operation": self.operation,
            "object": self.plan.object,
            "createdById": "",
            "createdDate": rest_datetime(self.created_ms),
            "systemModstamp": rest_datetime(self.modstamp_ms),
            "state": self.state.name(),
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": api_version,
            "lineEnding": self.line_ending_name,
            "columnDelimiter": self.delimiter_name,
        });
        if full {
            v["jobType"] = json!("V2Query");
            v["numberRecordsProcessed"] = json!(if self.state == JobState::JobComplete {
                self.processed.unwrap_or(0)
            } else {
                0
            });
            v["retries"] = json!(0);
            v["totalProcessingTime"] = json!(self.processing_ms);
        }
        v
    }

    fn line_ending(&self) -> &'static str {
        if self.line_ending_name == "CRLF" {
            "\r\n"
        } else {
            "\n"
        }
    }
}

fn api_error(status: StatusCode, code: &str, message: &str) -> Response {
    server::json(status, &json!([{"errorCode": code, "message": message}]))
}

pub(crate) async fn route(call: &Call, parts: &[&str]) -> Response {
    match (parts, &call.method) {
        ([], &Method::POST) => create(call),
        ([], &Method::GET) => list(call),
        ([id], &Method::GET) => poll(call, id),
        ([id], &Method::PATCH) => abort(call, id),
        ([id], &Method::DELETE) => delete(call, id),
        ([id, "results"], &Method::GET) => results(call, id).await,
        _ => rest::not_found(),
    }
}

fn delimiter(name: &str) -> Option<char> {
    Some(match name {
        "COMMA" => ',',
        "TAB" => '\t',
        "PIPE" => '|',
        "SEMICOLON" => ';',
        "CARET" => '^',
        "BACKQUOTE" => '`',
        _ => return None,
    })
}

fn create(call: &Call) -> Response {
    let body = match call.json() {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let field = |k: &str| body.get(k).and_then(Value::as_str);
    let operation = field("operation").unwrap_or_default().to_owned();
    if operation != "query" && operation != "queryAll" {
        return api_error(
            StatusCode::BAD_REQUEST,
            "INVALIDJOB",
            &format!("InvalidJob : Invalid operation: {operation}; a query job's operation is query or queryAll"),
        );
    }
    if field("contentType").is_some_and(|c| c != "CSV") {
        return api_error(
            StatusCode::BAD_REQUEST,
            "INVALIDJOB",
            "InvalidJob : contentType must be CSV",
        );
    }
    let delimiter_name = field("columnDelimiter").unwrap_or("COMMA").to_owned();
    let Some(delim) = delimiter(&delimiter_name) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "INVALIDJOB",
            &format!("InvalidJob : Invalid columnDelimiter: {delimiter_name}"),
        );
    };
    let line_ending_name = field("lineEnding").unwrap_or("LF").to_owned();
    if line_ending_name != "LF" && line_ending_name != "CRLF" {
        return api_error(
            StatusCode::BAD_REQUEST,
            "INVALIDJOB",
            &format!("InvalidJob : Invalid lineEnding: {line_ending_name}"),
        );
    }
    let Some(text) = field("query") else {
        return api_error(StatusCode::BAD_REQUEST, "INVALIDJOB", "InvalidJob : query is required");
    };
    let mut st = call.org.lock();
    let plan = match query::plan(&st.data, text, false, operation == "queryAll") {
        Ok(p) => p,
        Err(e) => return rest::fail(StatusCode::BAD_REQUEST, e.code, &e.message),
    };
    if plan.count_only || plan.offset.is_some() {
        return api_error(
            StatusCode::BAD_REQUEST,
            "API_ERROR",
            "Aggregate queries (COUNT()) and OFFSET are not supported by Bulk API 2.0 query",
        );
    }
    let id = st.new_id("750");
    let now = st.data.stamp();
    let job = Job {
        id: id.clone(),
        operation,
        version: call.version.clone(),
        created_ms: now,
        modstamp_ms: now,
        state: JobState::UploadComplete,
        delimiter_name,
        delimiter: delim,
        line_ending_name,
        plan: Arc::new(plan),
        first_poll: None,
        processed: None,
        sorted: None,
        processing_ms: 0,
    };
    let info = job.info(false);
    st.jobs.insert(id, job);
    server::json(StatusCode::OK, &info)
}

fn list(call: &Call) -> Response {
    let st = call.org.lock();
    let records: Vec<Value> = st.jobs.values().map(|j| j.info(false)).collect();
    server::json(
        StatusCode::OK,
        &json!({"done": true, "records": records, "nextRecordsUrl": null}),
    )
}

/// Counts (and, for `ORDER BY`, sorts) a job's rows off the async runtime.
fn start_counting(org: Arc<Org>, id: String, plan: Arc<Plan>) {
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let (count, sorted) = if plan.ordered() {
            let st = org.lock();
            let mut keys = query::sorted(&st.data, &plan);
            if let Some(limit) = plan.limit {
                keys.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            }
            (keys.len() as u64, Some(Arc::new(keys)))
        } else {
            let mut pos = 0;
            let mut count = 0u64;
            loop {
                let st = org.lock();
                let end = st.data.table(plan.kind).scan_end();
                let (keys, next) = query::scan(&st.data, &plan, pos, u64::MAX, CHUNK_SCAN * 5);
                drop(st);
                count += keys.len() as u64;
                pos = next;
                if pos >= end {
                    break;
                }
            }
            (plan.limit.map_or(count, |l| count.min(l)), None)
        };
        let mut st = org.lock();
        if let Some(job) = st.jobs.get_mut(&id) {
            job.processed = Some(count);
            job.sorted = sorted;
            job.processing_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        }
    });
}

fn poll(call: &Call, id: &str) -> Response {
    let mut st = call.org.lock();
    let delay: Duration = st.bulk_delay;
    let now_ms = st.data.stamp();
    let Some(job) = st.jobs.get_mut(id) else {
        return rest::not_found();
    };
    match job.state {
        JobState::UploadComplete => {
            job.state = JobState::InProgress;
            job.modstamp_ms = now_ms;
            job.first_poll = Some(Instant::now());
            start_counting(call.org.clone(), job.id.clone(), job.plan.clone());
        }
        JobState::InProgress => {
            let waited = job.first_poll.is_some_and(|t| t.elapsed() >= delay);
            if waited && job.processed.is_some() {
                job.state = JobState::JobComplete;
                job.modstamp_ms = now_ms;
            }
        }
        JobState::JobComplete | JobState::Aborted => {}
    }
    server::json(StatusCode::OK, &job.info(true))
}

fn abort(call: &Call, id: &str) -> Response {
    let body = match call.json() {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let mut st = call.org.lock();
    let now_ms = st.data.stamp();
    let Some(job) = st.jobs.get_mut(id) else {
        return rest::not_found();
    };
    if body.get("state").and_then(Value::as_str) != Some("Aborted") {
        return api_error(
            StatusCode::BAD_REQUEST,
            "INVALIDJOBSTATE",
            "Invalid state: a query job can only be set to Aborted",
        );
    }
    if job.state == JobState::JobComplete {
        return api_error(
            StatusCode::BAD_REQUEST,
            "INVALIDJOBSTATE",
            "Aborting already Completed Job not allowed",
        );
    }
    job.state = JobState::Aborted;
    job.modstamp_ms = now_ms;
    server::json(StatusCode::OK, &job.info(true))
}

fn delete(call: &Call, id: &str) -> Response {
    let mut st = call.org.lock();
    match st.jobs.get(id).map(|j| j.state) {
        None => rest::not_found(),
        Some(JobState::InProgress) => api_error(
            StatusCode::BAD_REQUEST,
            "INVALIDJOBSTATE",
            "Deleting a job in state InProgress is not allowed",
        ),
        Some(_) => {
            st.jobs.remove(id);
            StatusCode::NO_CONTENT.into_response()
        }
    }
}

fn encode_locator(text: &str) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(text)
}

fn decode_locator(locator: &str) -> Option<(u64, u64)> {
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(locator.trim_end_matches('='))
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    match text.split_once('-') {
        Some((pos, emitted)) => Some((pos.parse().ok()?, emitted.parse().ok()?)),
        None => Some((text.parse().ok()?, 0)),
    }
}

/// One page of CSV: (body, rows, next locator if more).
struct Page {
    csv: String,
    rows: u64,
    next: Option<String>,
}

fn header(job: &Job) -> String {
    let mut out = String::new();
    for (i, name) in query::csv_header(&job.plan).iter().enumerate() {
        if i > 0 {
            out.push(job.delimiter);
        }
        query::push_quoted(&mut out, name);
    }
    out.push_str(job.line_ending());
    out
}

/// Builds one page, taking the org's lock per chunk.
fn build_page(org: &Org, id: &str, start: (u64, u64), max: u64) -> Option<Page> {
    let (plan, delim, line_ending, sorted, mut csv) = {
        let st = org.lock();
        let job = st.jobs.get(id)?;
        (
            job.plan.clone(),
            job.delimiter,
            job.line_ending(),
            job.sorted.clone(),
            header(job),
        )
    };
    let mut scratch = String::new();
    let mut rows = 0u64;
    let (mut pos, mut emitted) = start;
    if let Some(keys) = sorted {
        let end = keys.len() as u64;
        while rows < max && pos < end {
            let st = org.lock();
            let stop = (pos + CHUNK_ROWS).min(end).min(pos + (max - rows));
            for k in &keys[pos as usize..stop as usize] {
                query::write_csv_row(&st.data, &plan, *k, delim, line_ending, &mut csv, &mut scratch);
            }
            rows += stop - pos;
            pos = stop;
        }
        let next = (pos < end).then(|| encode_locator(&pos.to_string()));
        return Some(Page { csv, rows, next });
    }
    let limit = plan.limit.unwrap_or(u64::MAX);
    let mut done = false;
    while rows < max && emitted < limit {
        let st = org.lock();
        let end = st.data.table(plan.kind).scan_end();
        let want = CHUNK_ROWS.min(max - rows).min(limit - emitted);
        let (keys, next) = query::scan(&st.data, &plan, pos, want, CHUNK_SCAN);
        for k in &keys {
            query::write_csv_row(&st.data, &plan, *k, delim, line_ending, &mut csv, &mut scratch);
        }
        rows += keys.len() as u64;
        emitted += keys.len() as u64;
        pos = next;
        if pos >= end {
            done = true;
            break;
        }
    }
    if emitted >= limit {
        done = true;
    }
    if !done {
        // Look ahead: a page that ends exactly at the last match says so.
        let st = org.lock();
        let (more, _) = query::scan(&st.data, &plan, pos, 1, u64::MAX);
        done = more.is_empty();
    }
    let next = (!done).then(|| {
        if plan.limit.is_some() {
            encode_locator(&format!("{pos}-{emitted}"))
        } else {
            encode_locator(&pos.to_string())
        }
    });
    Some(Page { csv, rows, next })
}

async fn results(call: &Call, id: &str) -> Response {
    let start = {
        let st = call.org.lock();
        let Some(job) = st.jobs.get(id) else {
            return rest::not_found();
        };
        if job.version != call.version {
            return api_error(
                StatusCode::CONFLICT,
                "INVALIDVERSION",
                &format!("Use API version {} (the job's) to get this job's results", job.version),
            );
        }
        if job.state != JobState::JobComplete {
            return api_error(
                StatusCode::PRECONDITION_FAILED,
                "JOB_NOT_COMPLETE",
                &format!(
                    "can only download query results of successfully completed bulk job with status: JOB_COMPLETE. Current status: {}",
                    job.state.shouting()
                ),
            );
        }
        match call.param("locator").filter(|l| !l.is_empty() && *l != "null") {
            None => (0, 0),
            Some(l) => match decode_locator(l) {
                Some(p) => p,
                None => {
                    return api_error(
                        StatusCode::BAD_REQUEST,
                        "INVALIDLOCATOR",
                        &format!("Invalid locator: {l}"),
                    )
                }
            },
        }
    };
    let max = call
        .param("maxRecords")
        .and_then(|m| m.parse::<u64>().ok())
        .filter(|m| *m > 0)
        .unwrap_or(DEFAULT_PAGE);
    let org = call.org.clone();
    let id = id.to_owned();
    let page = tokio::task::spawn_blocking(move || build_page(&org, &id, start, max)).await;
    let Ok(Some(page)) = page else {
        return rest::not_found();
    };
    let mut response = page.csv.into_response();
    let headers = response.headers_mut();
    headers.insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("text/csv"));
    if let Ok(v) = HeaderValue::from_str(&page.rows.to_string()) {
        headers.insert("Sforce-NumberOfRecords", v);
    }
    if let Ok(v) = HeaderValue::from_str(page.next.as_deref().unwrap_or("null")) {
        headers.insert("Sforce-Locator", v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locators_are_base64_of_the_scan_position() {
        assert_eq!(encode_locator("10000"), "MTAwMDA");
        assert_eq!(decode_locator("MTAwMDA"), Some((10_000, 0)));
        assert_eq!(decode_locator(&encode_locator("7-3")), Some((7, 3)));
        assert_eq!(decode_locator("!!"), None);
    }
}
