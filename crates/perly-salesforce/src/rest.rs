//! REST, Tooling and Chatter calls on [`Client`], and the typed answers they
//! return. SOQL queries come back whole ([`Client::query`] follows
//! `nextRecordsUrl` to the end) or page by page ([`Client::query_page`],
//! [`Client::query_more`]); describes are typed down to what Perly reads
//! ([`SObjectDescribe`], [`FieldDescribe`]), unknown keys ignored; writes
//! are single records ([`Client::create`]) or sObject Collections of up to
//! 200 records per call ([`Client::update_collection`],
//! [`Client::create_collection`]), split and reassembled in input order.

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::{Client, Request};
use crate::error::{Error, Result};

/// sObject Collections take at most this many records per call.
pub const COLLECTION_LIMIT: usize = 200;

/// One page of a SOQL answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryPage<T> {
    pub total_size: u64,
    pub done: bool,
    pub records: Vec<T>,
    /// Where the next page is, while `done` is false.
    #[serde(default)]
    pub next_records_url: Option<String>,
}

/// An sObject's describe, reduced to what Perly reads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SObjectDescribe {
    pub name: String,
    pub label: String,
    #[serde(default)]
    pub queryable: bool,
    #[serde(default)]
    pub createable: bool,
    #[serde(default)]
    pub updateable: bool,
    #[serde(default)]
    pub fields: Vec<FieldDescribe>,
}

impl SObjectDescribe {
    /// The field called `name` (API name, case-insensitive as in SOQL).
    pub fn field(&self, name: &str) -> Option<&FieldDescribe> {
        self.fields.iter().find(|f| f.name.eq_ignore_ascii_case(name))
    }
}

/// One field of a describe. Only fields the connected user can see are
/// listed (field-level security).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldDescribe {
    pub name: String,
    pub label: String,
    /// `id`, `string`, `picklist`, `reference`, `double`, `datetime`, …
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub custom: bool,
    #[serde(default)]
    pub createable: bool,
    #[serde(default)]
    pub updateable: bool,
    #[serde(default)]
    pub filterable: bool,
    #[serde(default)]
    pub external_id: bool,
    #[serde(default)]
    pub id_lookup: bool,
    #[serde(default)]
    pub unique: bool,
    #[serde(default)]
    pub nillable: bool,
    #[serde(default)]
    pub length: u32,
    #[serde(default)]
    pub precision: u32,
    #[serde(default)]
    pub scale: u32,
    #[serde(default)]
    pub picklist_values: Vec<PicklistValue>,
    #[serde(default)]
    pub reference_to: Vec<String>,
    #[serde(default)]
    pub relationship_name: Option<String>,
}

/// One picklist entry of a describe.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PicklistValue {
    pub value: String,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub active: bool,
    #[serde(default)]
    pub default_value: bool,
}

/// One sObject of the global describe, with what the connected user may do.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SObjectSummary {
    pub name: String,
    pub label: String,
    #[serde(default)]
    pub queryable: bool,
    #[serde(default)]
    pub createable: bool,
    #[serde(default)]
    pub updateable: bool,
    #[serde(default)]
    pub retrieveable: bool,
    #[serde(default)]
    pub custom: bool,
}

#[derive(Deserialize)]
struct GlobalDescribe {
    sobjects: Vec<SObjectSummary>,
}

/// The outcome for one record of an sObject Collections call, in input
/// order. `id` is absent for records that failed to insert.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SaveResult {
    #[serde(default)]
    pub id: Option<String>,
    pub success: bool,
    #[serde(default)]
    pub errors: Vec<RecordError>,
}

/// Why one record was not saved.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RecordError {
    /// `UNABLE_TO_LOCK_ROW`, `DUPLICATES_DETECTED`,
    /// `ALL_OR_NONE_OPERATION_ROLLED_BACK`, …
    #[serde(rename = "statusCode")]
    pub status_code: String,
    pub message: String,
    #[serde(default)]
    pub fields: Vec<String>,
}

impl RecordError {
    /// Whether sending the same record again later may succeed.
    pub fn is_transient(&self) -> bool {
        crate::error::is_transient_code(&self.status_code)
    }
}

/// The answer to a single-record create.
#[derive(Debug, Deserialize)]
struct CreateResult {
    id: String,
}

/// The connected user, from the OpenID Connect UserInfo endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UserInfo {
    pub user_id: String,
    pub organization_id: String,
    /// The Salesforce username (`preferred_username`; `username` on the
    /// identity URL).
    #[serde(rename = "preferred_username", alias = "username")]
    pub username: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// The org, from the `Organization` sObject.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Organization {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub is_sandbox: bool,
    /// `Enterprise Edition`, `Developer Edition`, …
    #[serde(default)]
    pub organization_type: Option<String>,
}

/// A SOQL string literal: `'…'` with quotes and backslashes escaped.
pub fn soql_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Checks a collection answer against what was sent.
pub(crate) fn collection_results(sent: usize, results: Vec<SaveResult>) -> Result<Vec<SaveResult>> {
    if results.len() != sent {
        return Err(Error::Protocol(format!(
            "sObject Collections answered {} results for {sent} records",
            results.len()
        )));
    }
    Ok(results)
}

impl Client {
    /// All records a SOQL query matches, following `nextRecordsUrl`.
    pub async fn query<T: DeserializeOwned>(&self, soql: &str) -> Result<Vec<T>> {
        let first = self.query_page(soql).await?;
        self.drain(first).await
    }

    /// Like [`Client::query`] through `queryAll`: deleted (recycle bin) and
    /// archived records included, with `IsDeleted = true`.
    pub async fn query_all<T: DeserializeOwned>(&self, soql: &str) -> Result<Vec<T>> {
        let mut url = self.data_url(&["queryAll"])?;
        url.query_pairs_mut().append_pair("q", soql);
        let first = self.send_json(Request::new(Method::GET, url)).await?;
        self.drain(first).await
    }

    /// A Tooling API query, following `nextRecordsUrl`.
    pub async fn tooling_query<T: DeserializeOwned>(&self, soql: &str) -> Result<Vec<T>> {
        let mut url = self.data_url(&["tooling", "query"])?;
        url.query_pairs_mut().append_pair("q", soql);
        let first = self.send_json(Request::new(Method::GET, url)).await?;
        self.drain(first).await
    }

    /// The first page of a SOQL query (up to 2,000 records by default).
    pub async fn query_page<T: DeserializeOwned>(&self, soql: &str) -> Result<QueryPage<T>> {
        let mut url = self.data_url(&["query"])?;
        url.query_pairs_mut().append_pair("q", soql);
        self.send_json(Request::new(Method::GET, url)).await
    }

    /// The page at a `nextRecordsUrl`.
    pub async fn query_more<T: DeserializeOwned>(&self, next_records_url: &str) -> Result<QueryPage<T>> {
        let url = self.instance_relative(next_records_url)?;
        self.send_json(Request::new(Method::GET, url)).await
    }

    async fn drain<T: DeserializeOwned>(&self, first: QueryPage<T>) -> Result<Vec<T>> {
        let mut records = first.records;
        let mut next = if first.done { None } else { first.next_records_url };
        while let Some(url) = next {
            let page: QueryPage<T> = self.query_more(&url).await?;
            records.extend(page.records);
            next = if page.done { None } else { page.next_records_url };
        }
        Ok(records)
    }

    /// The describe of one sObject.
    pub async fn describe(&self, sobject: &str) -> Result<SObjectDescribe> {
        let url = self.data_url(&["sobjects", sobject, "describe"])?;
        self.send_json(Request::new(Method::GET, url)).await
    }

    /// Every sObject the connected user can see, with their access to it.
    pub async fn describe_global(&self) -> Result<Vec<SObjectSummary>> {
        let url = self.data_url(&["sobjects"])?;
        let global: GlobalDescribe = self.send_json(Request::new(Method::GET, url)).await?;
        Ok(global.sobjects)
    }

    /// One record by id, with the named fields (all readable fields when
    /// `fields` is empty).
    pub async fn get_record<T: DeserializeOwned>(&self, sobject: &str, id: &str, fields: &[&str]) -> Result<T> {
        let mut url = self.data_url(&["sobjects", sobject, id])?;
        if !fields.is_empty() {
            url.query_pairs_mut().append_pair("fields", &fields.join(","));
        }
        self.send_json(Request::new(Method::GET, url)).await
    }

    /// Creates one record; returns its id.
    pub async fn create(&self, sobject: &str, body: &Value) -> Result<String> {
        let url = self.data_url(&["sobjects", sobject])?;
        let created: CreateResult = self.send_json(Request::new(Method::POST, url).json(body)?).await?;
        Ok(created.id)
    }

    /// Creates one Tooling API record (e.g. a `CustomField`); returns its id.
    pub async fn tooling_create(&self, sobject: &str, body: &Value) -> Result<String> {
        let url = self.data_url(&["tooling", "sobjects", sobject])?;
        let created: CreateResult = self.send_json(Request::new(Method::POST, url).json(body)?).await?;
        Ok(created.id)
    }

    /// Updates records (each with `attributes.type` and `id`) through sObject
    /// Collections with `allOrNone: false`, 200 per call, and returns one
    /// result per record in input order. A call that fails as a whole ends
    /// the update with that error; the records of earlier calls stay
    /// updated (updates are idempotent, so sending everything again is safe).
    pub async fn update_collection(&self, records: &[Value]) -> Result<Vec<SaveResult>> {
        self.collection(Method::PATCH, records).await
    }

    /// Inserts records (each with `attributes.type`, no `id`) the same way.
    pub async fn create_collection(&self, records: &[Value]) -> Result<Vec<SaveResult>> {
        self.collection(Method::POST, records).await
    }

    async fn collection(&self, method: Method, records: &[Value]) -> Result<Vec<SaveResult>> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Body<'a> {
            all_or_none: bool,
            records: &'a [Value],
        }
        let mut results = Vec::with_capacity(records.len());
        for chunk in records.chunks(COLLECTION_LIMIT) {
            let url = self.data_url(&["composite", "sobjects"])?;
            let req = Request::new(method.clone(), url).json(&Body {
                all_or_none: false,
                records: chunk,
            })?;
            let answer: Vec<SaveResult> = self.send_json(req).await?;
            results.extend(collection_results(chunk.len(), answer)?);
        }
        Ok(results)
    }

    /// Posts a Chatter feed element (see [`crate::chatter::FeedPost`]);
    /// returns the feed element id.
    pub async fn post_feed_element(&self, body: &Value) -> Result<String> {
        let url = self.data_url(&["chatter", "feed-elements"])?;
        let created: CreateResult = self.send_json(Request::new(Method::POST, url).json(body)?).await?;
        Ok(created.id)
    }

    /// Any GET under `/services/data/v61.0/` (`segments` encoded one by
    /// one), through the same budget, refresh and error handling as every
    /// other call: for resources this crate has no method for, such as
    /// `sobjects/Account/deleted?start=…&end=…`.
    pub async fn get_json<T: DeserializeOwned>(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<T> {
        let mut url = self.data_url(segments)?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        self.send_json(Request::new(Method::GET, url)).await
    }

    /// The org's limits (`DailyApiRequests`, `DailyBulkV2QueryJobs`, …) as
    /// Salesforce returns them.
    pub async fn limits(&self) -> Result<Value> {
        let url = self.data_url(&["limits"])?;
        self.send_json(Request::new(Method::GET, url)).await
    }

    /// The connected user (`GET {instance}/services/oauth2/userinfo`; needs
    /// the `id` scope).
    pub async fn userinfo(&self) -> Result<UserInfo> {
        let url = self.instance_path(&["services", "oauth2", "userinfo"])?;
        self.send_json(Request::new(Method::GET, url)).await
    }

    /// The org's id, name, edition and whether it is a sandbox.
    pub async fn organization(&self) -> Result<Organization> {
        let orgs: Vec<Organization> = self
            .query("SELECT Id, Name, IsSandbox, OrganizationType FROM Organization")
            .await?;
        orgs.into_iter()
            .next()
            .ok_or_else(|| Error::Protocol("no Organization record".into()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::fixtures::spec;

    #[test]
    fn account_describe_excerpt_parses_with_unknown_keys_ignored() {
        let d: SObjectDescribe = serde_json::from_str(&spec("describe/account_describe_excerpt.json")).unwrap();
        assert_eq!(d.name, "Account");
        assert!(d.queryable && d.createable && d.updateable);
        let id = d.field("Id").unwrap();
        assert_eq!(id.type_, "id");
        assert!(id.id_lookup && !id.updateable && !id.nillable);
        let parent = d.field("parentid").unwrap();
        assert_eq!(parent.reference_to, vec!["Account".to_string()]);
        assert_eq!(parent.relationship_name.as_deref(), Some("Parent"));
        let priority = d.field("CustomerPriority__c").unwrap();
        assert!(priority.custom);
        assert_eq!(priority.type_, "picklist");
        let values: Vec<_> = priority.picklist_values.iter().map(|v| v.value.as_str()).collect();
        assert_eq!(values, ["High", "Low", "Medium"]);
        let pct = d.field("npsp__Matching_Gift_Percent__c").unwrap();
        assert_eq!((pct.precision, pct.scale), (5, 2));
    }

    #[test]
    fn partial_failure_file_keeps_order_and_errors() {
        let r: Vec<SaveResult> =
            serde_json::from_str(&spec("composite/sobject_collections_partial_failure_constructed.json")).unwrap();
        let r = collection_results(2, r).unwrap();
        assert!(r[0].success);
        assert_eq!(r[0].id.as_deref(), Some("001RM000003oLrfYAE"));
        assert!(!r[1].success);
        assert_eq!(r[1].id, None);
        assert_eq!(r[1].errors[0].status_code, "UNABLE_TO_LOCK_ROW");
        assert!(r[1].errors[0].is_transient());
    }

    #[test]
    fn rollback_file_marks_every_record_failed() {
        let r: Vec<SaveResult> = serde_json::from_str(&spec(
            "composite/sobject_collections_all_or_none_rollback_prior_art.json",
        ))
        .unwrap();
        assert!(r.iter().all(|s| !s.success && s.id.is_none()));
        assert_eq!(r[0].errors[0].status_code, "DUPLICATES_DETECTED");
        assert_eq!(r[1].errors[0].status_code, "ALL_OR_NONE_OPERATION_ROLLED_BACK");
        assert!(!r[1].errors[0].is_transient());
    }

    #[test]
    fn recorded_update_and_upsert_answers_parse() {
        let r: Vec<SaveResult> =
            serde_json::from_str(&spec("composite/sobject_collections_update_response.json")).unwrap();
        assert_eq!(r.len(), 6);
        assert!(r.iter().all(|s| s.success && s.errors.is_empty()));
        let u: Vec<SaveResult> =
            serde_json::from_str(&spec("composite/sobject_collections_upsert_response.json")).unwrap();
        assert_eq!(u.len(), 4);
    }

    #[test]
    fn a_result_count_mismatch_is_a_protocol_error() {
        assert!(matches!(collection_results(3, vec![]), Err(Error::Protocol(_))));
    }

    #[test]
    fn create_answers_give_the_id() {
        let file: Value = serde_json::from_str(&spec("composite/sobject_create_single.json")).unwrap();
        let c: CreateResult = serde_json::from_value(file["response"].clone()).unwrap();
        assert_eq!(c.id, "0015500001QdQWfAAN");
        let c: CreateResult = serde_json::from_str(&spec("activities/task_create_response_constructed.json")).unwrap();
        assert_eq!(c.id, "00T5e00000XyZ12EAF");
        let c: CreateResult = serde_json::from_str(&spec("chatter/feed_item_textpost_recorded_v49.json")).unwrap();
        assert_eq!(c.id, "0D53h00000n2hpkCAA");
    }

    #[test]
    fn userinfo_reads_both_username_spellings() {
        let u: UserInfo = serde_json::from_str(
            r#"{"sub":"x","user_id":"005x","organization_id":"00Dx","preferred_username":"a@b.c","email":"a@b.c","name":"A B"}"#,
        )
        .unwrap();
        assert_eq!(u.username, "a@b.c");
        let u: UserInfo =
            serde_json::from_str(r#"{"user_id":"005x","organization_id":"00Dx","username":"a@b.c"}"#).unwrap();
        assert_eq!(u.username, "a@b.c");
        assert_eq!(u.email, None);
    }

    #[test]
    fn organization_records_parse() {
        let o: Organization = serde_json::from_str(
            r#"{"attributes":{"type":"Organization"},"Id":"00Dx","Name":"Acme","IsSandbox":true,"OrganizationType":"Developer Edition"}"#,
        )
        .unwrap();
        assert!(o.is_sandbox);
        assert_eq!(o.organization_type.as_deref(), Some("Developer Edition"));
    }

    #[test]
    fn soql_strings_are_escaped() {
        assert_eq!(soql_string("O'Brien\\"), r"'O\'Brien\\'");
        assert_eq!(soql_string("a\nb"), r"'a\nb'");
    }
}
