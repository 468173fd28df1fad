//! Bulk API 2.0 query jobs: how Perly pulls whole objects. A job goes
//! [`Client::create_query_job`] → [`Client::wait_for_job`] (polls until
//! `JobComplete`) → [`Client::results_page`] again and again, each page
//! naming the next in its `Sforce-Locator` header until it says `null`;
//! [`Client::results_stream`] walks the pages for you. Then
//! [`Client::delete_job`] frees the org's storage.
//!
//! Results are CSV (comma, LF, a header row, every value quoted). A page
//! is parsed in one pass on a blocking thread into `csv::StringRecord`s —
//! one allocation set per row, nothing per cell. In Bulk CSV an empty cell
//! is null ([`cell`]); booleans are `true`/`false`; dates are ISO 8601.

use std::time::Duration;

use csv::StringRecord;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::client::{Client, Request};
use crate::error::{body_error, snippet, Error, Result};

/// The most of one results page Perly reads. Perly asks for pages of at
/// most [`crate::pull::PAGE_ROWS`] rows, a few MiB even with wide rows; a
/// larger page is [`Error::Protocol`].
pub const MAX_CSV_PAGE_BYTES: usize = 64 * 1024 * 1024;

/// Whether a query job sees deleted and archived records too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    /// Live records only.
    #[serde(rename = "query")]
    Query,
    /// Also deleted (recycle bin) and archived records, for incremental
    /// pulls that must see deletions.
    #[serde(rename = "queryAll")]
    QueryAll,
}

/// A job's lifecycle state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    UploadComplete,
    InProgress,
    JobComplete,
    Failed,
    Aborted,
    /// A state this client does not know (kept so polling can go on).
    #[serde(other)]
    Unknown,
}

impl JobState {
    /// Whether the job will not change state any more.
    pub fn is_final(&self) -> bool {
        matches!(self, JobState::JobComplete | JobState::Failed | JobState::Aborted)
    }
}

/// A query job as Salesforce describes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobInfo {
    pub id: String,
    pub operation: Operation,
    pub object: String,
    pub state: JobState,
    #[serde(default)]
    pub created_by_id: Option<String>,
    #[serde(default)]
    pub created_date: Option<String>,
    #[serde(default)]
    pub system_modstamp: Option<String>,
    #[serde(default)]
    pub api_version: Option<f64>,
    #[serde(default)]
    pub number_records_processed: Option<u64>,
    #[serde(default)]
    pub retries: Option<u32>,
    #[serde(default)]
    pub total_processing_time: Option<u64>,
    /// Why the job failed, when it did.
    #[serde(default)]
    pub error_message: Option<String>,
}

/// One page of a job's results.
#[derive(Debug, Clone)]
pub struct ResultsPage {
    /// The header row: field names in SELECT order (API v50.0+), with
    /// relationship fields dotted (`Owner.Email`).
    pub columns: Vec<String>,
    pub rows: Vec<StringRecord>,
    /// The locator of the next page; `None` on the last page.
    pub next_locator: Option<String>,
    /// `Sforce-NumberOfRecords`: the rows on this page.
    pub number_of_records: u64,
}

impl ResultsPage {
    /// The index of the column called `name` (case-insensitive, as SOQL).
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.eq_ignore_ascii_case(name))
    }

    /// The value at `row`, `column` with Bulk conventions: `None` for an
    /// empty cell (null), a missing row or a missing column.
    pub fn get(&self, row: usize, column: usize) -> Option<&str> {
        self.rows.get(row).and_then(|r| cell(r, column))
    }
}

/// A cell of a results row with Bulk conventions: the empty string is null.
pub fn cell(row: &StringRecord, column: usize) -> Option<&str> {
    row.get(column).filter(|v| !v.is_empty())
}

/// Parses a results page: the header row, then records of the same width.
/// An empty body (a job without records may send nothing) is no columns
/// and no rows.
pub fn parse_results(body: &[u8], expected_rows: usize) -> Result<(Vec<String>, Vec<StringRecord>)> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(false)
        .from_reader(body);
    let mut record = StringRecord::new();
    let bad = |e: csv::Error| Error::Protocol(format!("bulk results CSV: {e}"));
    if !reader.read_record(&mut record).map_err(bad)? {
        return Ok((Vec::new(), Vec::new()));
    }
    let columns: Vec<String> = record.iter().map(str::to_owned).collect();
    // Capped: the header is only a hint and must not make us allocate wildly.
    let mut rows = Vec::with_capacity(expected_rows.min(1_000_000));
    while reader.read_record(&mut record).map_err(bad)? {
        // `clone` allocates each buffer once at its exact size; reading into
        // a fresh record would grow (reallocate) it field by field.
        rows.push(record.clone());
    }
    Ok((columns, rows))
}

/// The `POST /jobs/query` body: CSV, comma, LF.
pub fn query_job_body(soql: &str, operation: Operation) -> serde_json::Value {
    serde_json::json!({
        "operation": operation,
        "query": soql,
        "contentType": "CSV",
        "columnDelimiter": "COMMA",
        "lineEnding": "LF",
    })
}

/// The first poll interval grows by half each time up to this.
const POLL_CAP: Duration = Duration::from_secs(30);

impl Client {
    /// Starts a CSV query job (comma separated, LF line endings).
    pub async fn create_query_job(&self, soql: &str, operation: Operation) -> Result<JobInfo> {
        let url = self.data_url(&["jobs", "query"])?;
        let req = Request::new(Method::POST, url).json(&query_job_body(soql, operation))?;
        self.send_json(req).await
    }

    /// A job's current state.
    pub async fn job(&self, id: &str) -> Result<JobInfo> {
        let url = self.data_url(&["jobs", "query", id])?;
        self.send_json(Request::new(Method::GET, url)).await
    }

    /// Polls until the job completes, first after `poll`, then at growing
    /// intervals (×1.5, at most 30 s or `poll` if larger). `Failed` and
    /// `Aborted` are [`Error::JobFailed`]. There is no overall deadline:
    /// wrap the call in `tokio::time::timeout` for one.
    pub async fn wait_for_job(&self, id: &str, poll: Duration) -> Result<JobInfo> {
        let cap = POLL_CAP.max(poll);
        let mut interval = poll;
        loop {
            let job = self.job(id).await?;
            match job.state {
                JobState::JobComplete => return Ok(job),
                JobState::Failed | JobState::Aborted => {
                    return Err(Error::JobFailed {
                        id: job.id,
                        state: format!("{:?}", job.state),
                        message: snippet(job.error_message.as_deref().unwrap_or_default()),
                    })
                }
                _ => {}
            }
            tokio::time::sleep(interval).await;
            interval = interval.mul_f64(1.5).min(cap);
        }
    }

    /// One page of results. `locator: None` is the first page;
    /// `max_records` caps the page size (Salesforce picks one otherwise).
    /// Before the job completes this is [`Error::NotReady`].
    pub async fn results_page(&self, id: &str, locator: Option<&str>, max_records: Option<u32>) -> Result<ResultsPage> {
        let mut url = self.data_url(&["jobs", "query", id, "results"])?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(locator) = locator {
                q.append_pair("locator", locator);
            }
            if let Some(max) = max_records {
                q.append_pair("maxRecords", &max.to_string());
            }
        }
        let mut req = Request::new(Method::GET, url);
        req.accept = "text/csv";
        let resp = self.send(req).await?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .map(str::to_owned)
        };
        let next_locator = header("sforce-locator").filter(|l| !l.is_empty() && l != "null");
        let announced = header("sforce-numberofrecords").and_then(|n| n.parse::<u64>().ok());
        let body = perly_net::read_capped(resp, MAX_CSV_PAGE_BYTES)
            .await
            .map_err(|e| body_error("a Bulk results page", e))?;
        let hint = usize::try_from(announced.unwrap_or(0)).unwrap_or(0);
        let (columns, rows) = tokio::task::spawn_blocking(move || parse_results(&body, hint))
            .await
            .map_err(|e| Error::Protocol(format!("parsing bulk results: {e}")))??;
        Ok(ResultsPage {
            number_of_records: announced.unwrap_or(rows.len() as u64),
            columns,
            rows,
            next_locator,
        })
    }

    /// Every page of a completed job's results, in order.
    pub fn results_stream(&self, id: &str, max_records: Option<u32>) -> ResultsStream {
        ResultsStream {
            client: self.clone(),
            job_id: id.to_string(),
            max_records,
            next: Some(None),
        }
    }

    /// Stops a job that has not finished.
    pub async fn abort_job(&self, id: &str) -> Result<JobInfo> {
        let url = self.data_url(&["jobs", "query", id])?;
        let req = Request::new(Method::PATCH, url).json(&serde_json::json!({"state": "Aborted"}))?;
        self.send_json(req).await
    }

    /// Deletes a finished job and its stored results.
    pub async fn delete_job(&self, id: &str) -> Result<()> {
        let url = self.data_url(&["jobs", "query", id])?;
        self.send(Request::new(Method::DELETE, url)).await?;
        Ok(())
    }
}

/// Walks a job's result pages; see [`Client::results_stream`].
#[derive(Debug)]
pub struct ResultsStream {
    client: Client,
    job_id: String,
    max_records: Option<u32>,
    /// `None`: done; `Some(None)`: the first page is next.
    next: Option<Option<String>>,
}

impl ResultsStream {
    /// The next page, or `None` after the last one. After an error the
    /// same page is asked for again on the next call (locators stay valid
    /// while the job exists).
    pub async fn next_page(&mut self) -> Result<Option<ResultsPage>> {
        let Some(locator) = &self.next else {
            return Ok(None);
        };
        let page = self
            .client
            .results_page(&self.job_id, locator.as_deref(), self.max_records)
            .await?;
        self.next = page.next_locator.clone().map(Some);
        Ok(Some(page))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::fixtures::spec;

    #[test]
    fn the_job_body_matches_the_spec_request() {
        let file: serde_json::Value = serde_json::from_str(&spec(
            "bulk2/query_job_create_request_perly_incremental_constructed.json",
        ))
        .unwrap();
        let soql = file["query"].as_str().unwrap();
        assert_eq!(query_job_body(soql, Operation::QueryAll), file);
    }

    #[test]
    fn doc_example_csv_parses() {
        let (cols, rows) = parse_results(spec("bulk2/query_results_doc_example.csv").as_bytes(), 3).unwrap();
        assert_eq!(cols, ["Id", "Name"]);
        assert_eq!(rows.len(), 3);
        assert_eq!(&rows[1][1], "George Wright");
    }

    #[test]
    fn simple_salesforce_fixture_parses() {
        let (cols, rows) =
            parse_results(spec("bulk2/query_results_simple_salesforce_fixture.csv").as_bytes(), 4).unwrap();
        assert_eq!(cols, ["Id", "AccountId", "Email", "FirstName", "LastName"]);
        assert_eq!(rows.len(), 4);
        assert_eq!(&rows[3][2], "contact2@example.com");
    }

    #[test]
    fn quoted_commas_quotes_and_newlines_stay_in_their_cell() {
        let csv = "\"Id\",\"Description\",\"Owner.Email\"\n\"001\",\"a, b \"\"c\"\"\nsecond line\",\"\"\n\"002\",\"\",\"o@x.com\"\n";
        let (cols, rows) = parse_results(csv.as_bytes(), 0).unwrap();
        assert_eq!(cols[2], "Owner.Email");
        assert_eq!(&rows[0][1], "a, b \"c\"\nsecond line");
        assert_eq!(cell(&rows[0], 2), None);
        assert_eq!(cell(&rows[1], 1), None);
        assert_eq!(cell(&rows[1], 2), Some("o@x.com"));
        assert_eq!(cell(&rows[1], 9), None);
    }

    #[test]
    fn an_empty_body_is_an_empty_page() {
        let (cols, rows) = parse_results(b"", 0).unwrap();
        assert!(cols.is_empty() && rows.is_empty());
        let (cols, rows) = parse_results(b"\"Id\"\n", 0).unwrap();
        assert_eq!(cols, ["Id"]);
        assert!(rows.is_empty());
    }

    #[test]
    fn ragged_rows_are_a_protocol_error() {
        assert!(matches!(parse_results(b"a,b\n1\n", 0), Err(Error::Protocol(_))));
    }

    #[test]
    fn page_helpers_find_columns_and_nulls() {
        let (columns, rows) = parse_results(b"Id,Name\n001,\n", 0).unwrap();
        let page = ResultsPage {
            columns,
            rows,
            next_locator: None,
            number_of_records: 1,
        };
        assert_eq!(page.column("name"), Some(1));
        assert_eq!(page.column("Nope"), None);
        assert_eq!(page.get(0, 0), Some("001"));
        assert_eq!(page.get(0, 1), None);
        assert_eq!(page.get(5, 0), None);
    }

    #[test]
    fn job_info_files_parse() {
        let done: JobInfo = serde_json::from_str(&spec("bulk2/query_job_info_jobcomplete_doc_v46.json")).unwrap();
        assert_eq!(done.state, JobState::JobComplete);
        assert_eq!(done.number_records_processed, Some(500));
        let created: JobInfo = serde_json::from_str(&spec("bulk2/query_job_create_response_doc_v58.json")).unwrap();
        assert_eq!(created.state, JobState::UploadComplete);
        assert_eq!(created.operation, Operation::Query);
        let all: JobInfo = serde_json::from_str(&spec("bulk2/query_job_info_uploadcomplete_airbyte.json")).unwrap();
        assert_eq!(all.operation, Operation::QueryAll);
        assert!(!all.state.is_final());
    }

    #[test]
    fn unknown_states_do_not_break_polling() {
        let j: JobInfo =
            serde_json::from_str(r#"{"id":"750","operation":"query","object":"Account","state":"Queued"}"#).unwrap();
        assert_eq!(j.state, JobState::Unknown);
    }

    #[test]
    fn a_large_page_parses_quickly() {
        let mut csv = String::from("\"Id\",\"Name\",\"SystemModstamp\",\"IsDeleted\"\n");
        for i in 0..200_000 {
            csv.push_str(&format!(
                "\"001{i:015}\",\"Account {i}, Inc.\",\"2024-06-01T10:00:00.000Z\",\"false\"\n"
            ));
        }
        let started = std::time::Instant::now();
        let (_, rows) = parse_results(csv.as_bytes(), 200_000).unwrap();
        assert_eq!(rows.len(), 200_000);
        // Generous even for a debug build; the release build is ~20× faster.
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    }
}
