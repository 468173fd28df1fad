//! The three custom fields Perly writes on Account, as data
//! ([`PERLY_FIELDS`]), and [`ensure_perly_fields`], which makes an org ready
//! for them. It is safe to run again and again: every step looks before it
//! creates, and a `DUPLICATE_*` answer on create counts as "already there".
//!
//! 1. Tooling query `CustomField` on Account for the three developer names;
//!    Tooling-create the missing ones (`FullName` + `Metadata`).
//! 2. Find or create the permission set `Perly_Integration` (REST
//!    `sobjects/PermissionSet`: it is a regular sObject, not a Tooling one).
//! 3. Give it `FieldPermissions` read + edit on each field: existing rows
//!    lacking a right are updated, missing rows created, both through sObject
//!    Collections (FieldPermissions is also a regular sObject).
//! 4. Assign the permission set to the connected user
//!    (`PermissionSetAssignment`) unless it already is.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::rest::{soql_string, SaveResult};

/// The object the fields live on.
pub const OBJECT: &str = "Account";

/// The permission set that grants Perly's integration user the fields.
pub const PERMISSION_SET: &str = "Perly_Integration";

/// What kind of field, with its type-specific settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Number {
        precision: u8,
        scale: u8,
    },
    /// A restricted picklist with these values, in order.
    Picklist {
        values: &'static [&'static str],
    },
    DateTime,
}

/// One of Perly's custom fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerlyField {
    /// The API name, `Perly_Health_Score__c`.
    pub api_name: &'static str,
    pub label: &'static str,
    pub description: &'static str,
    pub kind: FieldKind,
}

/// The risk levels Perly writes, lowest first.
pub const RISK_LEVELS: &[&str] = &["Low", "Medium", "High", "Critical"];

/// Perly's fields on Account.
pub const PERLY_FIELDS: [PerlyField; 3] = [
    PerlyField {
        api_name: "Perly_Health_Score__c",
        label: "Perly Health Score",
        description: "Customer health score (0-100) computed by Perly.",
        kind: FieldKind::Number { precision: 3, scale: 0 },
    },
    PerlyField {
        api_name: "Perly_Risk_Level__c",
        label: "Perly Risk Level",
        description: "Churn risk level computed by Perly.",
        kind: FieldKind::Picklist { values: RISK_LEVELS },
    },
    PerlyField {
        api_name: "Perly_Last_Updated__c",
        label: "Perly Last Updated",
        description: "When Perly last calculated the health score.",
        kind: FieldKind::DateTime,
    },
];

impl PerlyField {
    /// The developer name Tooling's `CustomField` knows it by (no `__c`).
    pub fn developer_name(&self) -> &'static str {
        self.api_name.strip_suffix("__c").unwrap_or(self.api_name)
    }

    /// `Account.Perly_Health_Score__c`, as FieldPermissions names fields.
    pub fn qualified_name(&self) -> String {
        format!("{OBJECT}.{}", self.api_name)
    }

    /// The Tooling `CustomField` create body.
    pub fn create_body(&self) -> Value {
        let metadata = match self.kind {
            FieldKind::Number { precision, scale } => json!({
                "label": self.label,
                "type": "Number",
                "precision": precision,
                "scale": scale,
                "required": false,
                "externalId": false,
                "description": self.description,
                "inlineHelpText": "Written by the Perly integration. Do not edit.",
            }),
            FieldKind::Picklist { values } => json!({
                "label": self.label,
                "type": "Picklist",
                "description": self.description,
                "valueSet": {
                    "restricted": true,
                    "valueSetDefinition": {
                        "sorted": false,
                        "value": values.iter().map(|v| json!({
                            "fullName": v, "label": v, "default": false,
                        })).collect::<Vec<_>>(),
                    },
                },
            }),
            FieldKind::DateTime => json!({
                "label": self.label,
                "type": "DateTime",
                "required": false,
                "description": self.description,
            }),
        };
        json!({ "FullName": self.qualified_name(), "Metadata": metadata })
    }
}

/// Whether something had to be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Created,
    AlreadyPresent,
}

/// Whether field-level access had to be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    GrantedNow,
    AlreadyGranted,
}

/// What [`ensure_perly_fields`] found and did for one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldOutcome {
    pub api_name: &'static str,
    pub field: Presence,
    /// Read + edit for the permission set.
    pub access: Access,
}

/// What [`ensure_perly_fields`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldsReport {
    /// One per [`PERLY_FIELDS`] entry, same order.
    pub fields: Vec<FieldOutcome>,
    pub permission_set: Presence,
    pub permission_set_id: String,
    /// Whether the connected user's assignment was made now.
    pub assignment: Presence,
}

impl FieldsReport {
    /// Whether this run changed anything in the org.
    pub fn changed_anything(&self) -> bool {
        self.permission_set == Presence::Created
            || self.assignment == Presence::Created
            || self
                .fields
                .iter()
                .any(|f| f.field == Presence::Created || f.access == Access::GrantedNow)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CustomFieldRow {
    developer_name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct IdRow {
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FieldPermissionRow {
    id: String,
    field: String,
    #[serde(default)]
    permissions_read: bool,
    #[serde(default)]
    permissions_edit: bool,
}

/// The Tooling query that finds which Perly fields exist.
pub fn existing_fields_query() -> String {
    let names: Vec<String> = PERLY_FIELDS.iter().map(|f| soql_string(f.developer_name())).collect();
    format!(
        "SELECT Id, DeveloperName FROM CustomField WHERE TableEnumOrId = {} AND DeveloperName IN ({})",
        soql_string(OBJECT),
        names.join(", ")
    )
}

/// Creates whatever of Perly's fields, permission set, field permissions
/// and assignment is missing; see the module docs for the steps.
pub async fn ensure_perly_fields(client: &Client) -> Result<FieldsReport> {
    // 1. The fields.
    let existing: Vec<CustomFieldRow> = client.tooling_query(&existing_fields_query()).await?;
    let mut presence = Vec::with_capacity(PERLY_FIELDS.len());
    for field in &PERLY_FIELDS {
        let found = existing
            .iter()
            .any(|r| r.developer_name.eq_ignore_ascii_case(field.developer_name()));
        let state = if found {
            Presence::AlreadyPresent
        } else {
            match client.tooling_create("CustomField", &field.create_body()).await {
                Ok(id) => {
                    tracing::info!(field = field.api_name, id = %id, "created Salesforce custom field");
                    Presence::Created
                }
                Err(e) if e.is_duplicate() => Presence::AlreadyPresent,
                Err(e) => return Err(e),
            }
        };
        presence.push(state);
    }

    // 2. The permission set.
    let (permission_set_id, permission_set) = ensure_permission_set(client).await?;

    // 3. Field permissions.
    let granted = ensure_field_permissions(client, &permission_set_id).await?;

    // 4. The assignment.
    let user = client.userinfo().await?;
    let assignment = ensure_assignment(client, &permission_set_id, &user.user_id).await?;

    let fields = PERLY_FIELDS
        .iter()
        .zip(presence)
        .zip(granted)
        .map(|((f, field), access)| FieldOutcome {
            api_name: f.api_name,
            field,
            access,
        })
        .collect();
    Ok(FieldsReport {
        fields,
        permission_set,
        permission_set_id,
        assignment,
    })
}

/// The `sobjects/PermissionSet` create body.
pub fn permission_set_body() -> Value {
    json!({
        "Name": PERMISSION_SET,
        "Label": "Perly Integration",
        "Description": "Grants read/edit on Perly fields on Account.",
    })
}

/// The `sobjects/PermissionSetAssignment` create body.
pub fn assignment_body(permission_set_id: &str, user_id: &str) -> Value {
    json!({ "AssigneeId": user_id, "PermissionSetId": permission_set_id })
}

/// A FieldPermissions record granting read + edit on `field`, for sObject
/// Collections.
pub fn field_permission_record(permission_set_id: &str, field: &PerlyField) -> Value {
    json!({
        "attributes": {"type": "FieldPermissions"},
        "ParentId": permission_set_id,
        "SobjectType": OBJECT,
        "Field": field.qualified_name(),
        "PermissionsRead": true,
        "PermissionsEdit": true,
    })
}

async fn find_permission_set(client: &Client) -> Result<Option<String>> {
    let rows: Vec<IdRow> = client
        .query(&format!(
            "SELECT Id FROM PermissionSet WHERE Name = {}",
            soql_string(PERMISSION_SET)
        ))
        .await?;
    Ok(rows.into_iter().next().map(|r| r.id))
}

async fn ensure_permission_set(client: &Client) -> Result<(String, Presence)> {
    if let Some(id) = find_permission_set(client).await? {
        return Ok((id, Presence::AlreadyPresent));
    }
    match client.create("PermissionSet", &permission_set_body()).await {
        Ok(id) => Ok((id, Presence::Created)),
        Err(e) if e.is_duplicate() => {
            let id = find_permission_set(client)
                .await?
                .ok_or_else(|| Error::Protocol("PermissionSet reported duplicate but cannot be found".into()))?;
            Ok((id, Presence::AlreadyPresent))
        }
        Err(e) => Err(e),
    }
}

/// The first failure among collection results, as an error.
fn first_failure(results: &[SaveResult]) -> Option<Error> {
    results.iter().find(|r| !r.success).map(|r| {
        let e = r.errors.first();
        Error::Api {
            status: 200,
            code: e.map(|e| e.status_code.clone()).unwrap_or_default(),
            message: e.map(|e| e.message.clone()).unwrap_or_default(),
            fields: e.map(|e| e.fields.clone()).unwrap_or_default(),
        }
    })
}

async fn ensure_field_permissions(client: &Client, permission_set_id: &str) -> Result<Vec<Access>> {
    let rows: Vec<FieldPermissionRow> = client
        .query(&format!(
            "SELECT Id, Field, PermissionsRead, PermissionsEdit FROM FieldPermissions WHERE ParentId = {} AND SobjectType = {}",
            soql_string(permission_set_id),
            soql_string(OBJECT)
        ))
        .await?;
    let mut access = Vec::with_capacity(PERLY_FIELDS.len());
    let mut updates = Vec::new();
    let mut creates = Vec::new();
    for field in &PERLY_FIELDS {
        let qualified = field.qualified_name();
        match rows.iter().find(|r| r.field.eq_ignore_ascii_case(&qualified)) {
            Some(row) if row.permissions_read && row.permissions_edit => access.push(Access::AlreadyGranted),
            Some(row) => {
                updates.push(json!({
                    "attributes": {"type": "FieldPermissions"},
                    "id": row.id,
                    "PermissionsRead": true,
                    "PermissionsEdit": true,
                }));
                access.push(Access::GrantedNow);
            }
            None => {
                creates.push((access.len(), field_permission_record(permission_set_id, field)));
                access.push(Access::GrantedNow);
            }
        }
    }
    if !updates.is_empty() {
        let results = client.update_collection(&updates).await?;
        if let Some(e) = first_failure(&results) {
            return Err(e);
        }
    }
    if !creates.is_empty() {
        let bodies: Vec<Value> = creates.iter().map(|(_, b)| b.clone()).collect();
        let results = client.create_collection(&bodies).await?;
        let mut failed = Vec::new();
        for ((index, _), result) in creates.iter().zip(&results) {
            let duplicate = result.errors.iter().any(|e| e.status_code.starts_with("DUPLICATE"));
            if result.success {
                continue;
            } else if duplicate {
                access[*index] = Access::AlreadyGranted;
            } else {
                failed.push(result.clone());
            }
        }
        if let Some(e) = first_failure(&failed) {
            return Err(e);
        }
    }
    Ok(access)
}

async fn ensure_assignment(client: &Client, permission_set_id: &str, user_id: &str) -> Result<Presence> {
    let rows: Vec<IdRow> = client
        .query(&format!(
            "SELECT Id FROM PermissionSetAssignment WHERE AssigneeId = {} AND PermissionSetId = {}",
            soql_string(user_id),
            soql_string(permission_set_id)
        ))
        .await?;
    if !rows.is_empty() {
        return Ok(Presence::AlreadyPresent);
    }
    match client
        .create("PermissionSetAssignment", &assignment_body(permission_set_id, user_id))
        .await
    {
        Ok(_) => Ok(Presence::Created),
        Err(e) if e.is_duplicate() => Ok(Presence::AlreadyPresent),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::fixtures::spec;

    fn spec_body(path: &str) -> Value {
        let file: Value = serde_json::from_str(&spec(path)).unwrap();
        file["body"].clone()
    }

    #[test]
    fn field_create_bodies_match_the_spec_requests() {
        assert_eq!(
            PERLY_FIELDS[0].create_body(),
            spec_body("tooling/customfield_health_score_request_constructed.json")
        );
        assert_eq!(
            PERLY_FIELDS[1].create_body(),
            spec_body("tooling/customfield_risk_level_request_constructed.json")
        );
        assert_eq!(
            PERLY_FIELDS[2].create_body(),
            spec_body("tooling/customfield_last_updated_request_constructed.json")
        );
    }

    #[test]
    fn permission_set_and_assignment_bodies_match_the_spec_requests() {
        assert_eq!(
            permission_set_body(),
            spec_body("tooling/permissionset_create_request_constructed.json")
        );
        assert_eq!(
            assignment_body("0PS5e000000XyZaGAK", "005xx000001SwiUAAS"),
            spec_body("tooling/permissionsetassignment_create_request_constructed.json")
        );
    }

    #[test]
    fn developer_names_drop_the_suffix() {
        let names: Vec<_> = PERLY_FIELDS.iter().map(|f| f.developer_name()).collect();
        assert_eq!(names, ["Perly_Health_Score", "Perly_Risk_Level", "Perly_Last_Updated"]);
        assert_eq!(PERLY_FIELDS[0].qualified_name(), "Account.Perly_Health_Score__c");
    }

    #[test]
    fn the_existence_query_names_all_three_fields() {
        assert_eq!(
            existing_fields_query(),
            "SELECT Id, DeveloperName FROM CustomField WHERE TableEnumOrId = 'Account' AND DeveloperName IN ('Perly_Health_Score', 'Perly_Risk_Level', 'Perly_Last_Updated')"
        );
    }

    #[test]
    fn field_permission_records_match_the_spec_request() {
        let body = spec_body("tooling/fieldpermissions_create_request_constructed.json");
        let ours: Vec<Value> = PERLY_FIELDS
            .iter()
            .map(|f| field_permission_record("0PS5e000000XyZaGAK", f))
            .collect();
        assert_eq!(body["records"], Value::Array(ours));
        assert_eq!(body["allOrNone"], false);
    }

    #[test]
    fn a_record_failure_becomes_an_error_with_its_code() {
        let results: Vec<SaveResult> =
            serde_json::from_str(&spec("composite/sobject_collections_partial_failure_constructed.json")).unwrap();
        let e = first_failure(&results).unwrap();
        assert_eq!(e.code(), Some("UNABLE_TO_LOCK_ROW"));
        assert!(e.is_transient());
    }
}
