//! The org's objects and fields: API names, labels, types and flags as in
//! the recorded describes (`shared/specs/salesforce/describe/*`), and for
//! each field how a generated record's value is derived from its index
//! (see [`super::generate::Gen`]).
//!
//! A [`Column`] pairs a field's [`FieldDef`] with its generator, so the two
//! cannot drift apart. Values travel as [`Cell`]s: typed, cheap to clone,
//! rendered as REST JSON (`2024-01-02T03:04:05.000+0000`) or as Bulk CSV
//! (`2024-01-02T03:04:05.000Z`) by the caller.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{json, Value};

use super::generate::Gen;

/// One value of one field.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Num(f64),
    Text(Cow<'static, str>),
    Date(NaiveDate),
    /// Milliseconds since the epoch, UTC.
    DateTime(i64),
    /// Tooling `CustomField.Metadata`.
    Json(Box<Value>),
}

impl Cell {
    pub(crate) fn text(s: impl Into<Cow<'static, str>>) -> Cell {
        Cell::Text(s.into())
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Cell::Text(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Cell::Null)
    }

    /// REST JSON: dateTimes as `2024-01-02T03:04:05.000+0000`.
    pub(crate) fn to_json(&self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Bool(b) => Value::Bool(*b),
            Cell::Int(i) => json!(i),
            Cell::Num(n) => json!(n),
            Cell::Text(s) => Value::String(s.to_string()),
            Cell::Date(d) => Value::String(d.format("%Y-%m-%d").to_string()),
            Cell::DateTime(ms) => Value::String(rest_datetime(*ms)),
            Cell::Json(v) => (**v).clone(),
        }
    }

    /// Bulk CSV text (unquoted): dateTimes as `2024-01-02T03:04:05.000Z`,
    /// nulls empty.
    pub(crate) fn write_csv(&self, out: &mut String) {
        use std::fmt::Write;
        // Writing into a String cannot fail.
        let _ = match self {
            Cell::Null => Ok(()),
            Cell::Bool(b) => write!(out, "{b}"),
            Cell::Int(i) => write!(out, "{i}"),
            Cell::Num(n) => write!(out, "{n}"),
            Cell::Text(s) => {
                out.push_str(s);
                Ok(())
            }
            Cell::Date(d) => write!(out, "{}", d.format("%Y-%m-%d")),
            Cell::DateTime(ms) => write!(out, "{}", bulk_datetime(*ms)),
            Cell::Json(v) => write!(out, "{v}"),
        };
    }
}

fn utc(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// `2024-01-02T03:04:05.000+0000`, as the REST API writes dateTimes.
pub(crate) fn rest_datetime(ms: i64) -> String {
    utc(ms).format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

/// `2024-01-02T03:04:05.000Z`, as Bulk API 2.0 CSV writes dateTimes.
pub(crate) fn bulk_datetime(ms: i64) -> String {
    utc(ms).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Field types, with the describe `type` and `soapType` they report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldType {
    Id,
    Reference,
    String,
    TextArea,
    Picklist,
    Combobox,
    Email,
    Phone,
    Url,
    Boolean,
    Currency,
    Double,
    Percent,
    Int,
    Date,
    DateTime,
    ComplexValue,
}

impl FieldType {
    pub(crate) fn api(self) -> &'static str {
        match self {
            FieldType::Id => "id",
            FieldType::Reference => "reference",
            FieldType::String => "string",
            FieldType::TextArea => "textarea",
            FieldType::Picklist => "picklist",
            FieldType::Combobox => "combobox",
            FieldType::Email => "email",
            FieldType::Phone => "phone",
            FieldType::Url => "url",
            FieldType::Boolean => "boolean",
            FieldType::Currency => "currency",
            FieldType::Double => "double",
            FieldType::Percent => "percent",
            FieldType::Int => "int",
            FieldType::Date => "date",
            FieldType::DateTime => "datetime",
            FieldType::ComplexValue => "complexvalue",
        }
    }

    fn soap(self) -> &'static str {
        match self {
            FieldType::Id | FieldType::Reference => "tns:ID",
            FieldType::Boolean => "xsd:boolean",
            FieldType::Currency | FieldType::Double | FieldType::Percent => "xsd:double",
            FieldType::Int => "xsd:int",
            FieldType::Date => "xsd:date",
            FieldType::DateTime => "xsd:dateTime",
            FieldType::ComplexValue => "urn:JsonNode",
            _ => "xsd:string",
        }
    }

    pub(crate) fn is_text(self) -> bool {
        matches!(
            self,
            FieldType::Id
                | FieldType::Reference
                | FieldType::String
                | FieldType::TextArea
                | FieldType::Picklist
                | FieldType::Combobox
                | FieldType::Email
                | FieldType::Phone
                | FieldType::Url
        )
    }

    pub(crate) fn is_number(self) -> bool {
        matches!(
            self,
            FieldType::Currency | FieldType::Double | FieldType::Percent | FieldType::Int
        )
    }
}

/// One field as describe reports it.
#[derive(Debug, Clone)]
pub(crate) struct FieldDef {
    pub(crate) name: String,
    pub(crate) label: String,
    pub(crate) ty: FieldType,
    pub(crate) length: u32,
    pub(crate) precision: u32,
    pub(crate) scale: u32,
    pub(crate) digits: u32,
    pub(crate) nillable: bool,
    pub(crate) createable: bool,
    pub(crate) updateable: bool,
    pub(crate) defaulted_on_create: bool,
    pub(crate) custom: bool,
    pub(crate) external_id: bool,
    pub(crate) id_lookup: bool,
    pub(crate) unique: bool,
    pub(crate) name_field: bool,
    pub(crate) filterable: bool,
    pub(crate) picklist: Vec<String>,
    pub(crate) restricted_picklist: bool,
    pub(crate) reference_to: Vec<String>,
    pub(crate) relationship_name: Option<String>,
    /// Value set on create when the request leaves the field out.
    pub(crate) default: Option<Cell>,
    /// Created through the Tooling API: invisible to the user until
    /// field-level security grants it (`FieldPermissions`).
    pub(crate) needs_fls: bool,
    pub(crate) inline_help: Option<String>,
}

impl FieldDef {
    pub(crate) fn new(name: &str, label: &str, ty: FieldType) -> FieldDef {
        let length = match ty {
            FieldType::Id | FieldType::Reference => 18,
            FieldType::String | FieldType::Picklist | FieldType::Combobox | FieldType::Url => 255,
            FieldType::Email => 80,
            FieldType::Phone => 40,
            FieldType::TextArea => 32000,
            _ => 0,
        };
        let (precision, scale, digits) = match ty {
            FieldType::Currency => (18, 2, 0),
            FieldType::Double => (18, 0, 0),
            FieldType::Percent => (3, 0, 0),
            FieldType::Int => (0, 0, 9),
            _ => (0, 0, 0),
        };
        FieldDef {
            name: name.into(),
            label: label.into(),
            ty,
            length,
            precision,
            scale,
            digits,
            nillable: ty != FieldType::Boolean,
            createable: true,
            updateable: true,
            defaulted_on_create: ty == FieldType::Boolean,
            custom: name.ends_with("__c"),
            external_id: false,
            id_lookup: ty == FieldType::Id,
            unique: false,
            name_field: false,
            filterable: ty != FieldType::TextArea && ty != FieldType::ComplexValue,
            picklist: Vec::new(),
            restricted_picklist: false,
            reference_to: Vec::new(),
            relationship_name: None,
            default: (ty == FieldType::Boolean).then_some(Cell::Bool(false)),
            needs_fls: false,
            inline_help: None,
        }
    }

    /// Set by the system: not createable, not updateable, never null.
    fn system(mut self) -> Self {
        self.createable = false;
        self.updateable = false;
        self.nillable = false;
        self.defaulted_on_create = true;
        self
    }

    fn read_only(mut self) -> Self {
        self.createable = false;
        self.updateable = false;
        self
    }

    fn required(mut self) -> Self {
        self.nillable = false;
        self
    }

    fn defaulted(mut self, value: Cell) -> Self {
        self.defaulted_on_create = true;
        self.nillable = false;
        self.default = Some(value);
        self
    }

    fn len(mut self, n: u32) -> Self {
        self.length = n;
        self
    }

    fn numeric(mut self, precision: u32, scale: u32) -> Self {
        self.precision = precision;
        self.scale = scale;
        self
    }

    fn lookup(mut self) -> Self {
        self.id_lookup = true;
        self
    }

    fn name_field(mut self) -> Self {
        self.name_field = true;
        self.id_lookup = true;
        self
    }

    fn values(mut self, values: &[&str]) -> Self {
        self.picklist = values.iter().map(|v| (*v).to_owned()).collect();
        self
    }

    fn refs(mut self, to: &[&str], relationship: &str) -> Self {
        self.reference_to = to.iter().map(|v| (*v).to_owned()).collect();
        self.relationship_name = Some(relationship.into());
        self
    }

    /// Describe's JSON for this field (key set of the recorded describe).
    pub(crate) fn describe(&self, createable: bool, updateable: bool) -> Value {
        let byte_length = if self.ty.is_text() { self.length * 3 } else { 0 };
        let picklist: Vec<Value> = self
            .picklist
            .iter()
            .map(|v| json!({"active": true, "defaultValue": false, "label": v, "validFor": null, "value": v}))
            .collect();
        json!({
            "aggregatable": self.filterable,
            "aiPredictionField": false,
            "autoNumber": false,
            "byteLength": byte_length,
            "calculated": false,
            "calculatedFormula": null,
            "cascadeDelete": false,
            "caseSensitive": false,
            "compoundFieldName": null,
            "controllerName": null,
            "createable": self.createable && createable,
            "custom": self.custom,
            "defaultValue": null,
            "defaultValueFormula": null,
            "defaultedOnCreate": self.defaulted_on_create,
            "dependentPicklist": false,
            "deprecatedAndHidden": false,
            "digits": self.digits,
            "displayLocationInDecimal": false,
            "encrypted": false,
            "externalId": self.external_id,
            "extraTypeInfo": null,
            "filterable": self.filterable,
            "filteredLookupInfo": null,
            "formulaTreatNullNumberAsZero": false,
            "groupable": self.filterable && !self.ty.is_number(),
            "highScaleNumber": false,
            "htmlFormatted": false,
            "idLookup": self.id_lookup,
            "inlineHelpText": self.inline_help,
            "label": self.label,
            "length": self.length,
            "mask": null,
            "maskType": null,
            "name": self.name,
            "nameField": self.name_field,
            "namePointing": false,
            "nillable": self.nillable,
            "permissionable": self.nillable && self.ty != FieldType::Id,
            "picklistValues": picklist,
            "polymorphicForeignKey": self.reference_to.len() > 1,
            "precision": self.precision,
            "queryByDistance": false,
            "referenceTargetField": null,
            "referenceTo": self.reference_to,
            "relationshipName": self.relationship_name,
            "relationshipOrder": null,
            "restrictedDelete": false,
            "restrictedPicklist": self.restricted_picklist,
            "scale": self.scale,
            "searchPrefilterable": false,
            "soapType": self.ty.soap(),
            "sortable": self.filterable,
            "type": self.ty.api(),
            "unique": self.unique,
            "updateable": self.updateable && updateable,
            "writeRequiresMasterRead": false,
        })
    }
}

/// How a generated record's value of one field is derived from its index.
pub(crate) type GenFn = fn(&Gen, u64) -> Cell;

pub(crate) struct Column {
    pub(crate) def: FieldDef,
    pub(crate) gen: Option<GenFn>,
}

/// Which API serves an object: the REST API (`/sobjects`), the Tooling API
/// (`/tooling/sobjects`), or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    Rest,
    Tooling,
    Both,
}

/// The objects of the org, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    User,
    Organization,
    Account,
    Contact,
    AccountContactRole,
    Opportunity,
    OpportunityContactRole,
    Task,
    Event,
    FeedItem,
    PermissionSet,
    FieldPermissions,
    PermissionSetAssignment,
    UserPermissionAccess,
    CustomField,
}

impl Kind {
    #[cfg(test)]
    pub(crate) const ALL: [Kind; 15] = [
        Kind::User,
        Kind::Organization,
        Kind::Account,
        Kind::Contact,
        Kind::AccountContactRole,
        Kind::Opportunity,
        Kind::OpportunityContactRole,
        Kind::Task,
        Kind::Event,
        Kind::FeedItem,
        Kind::PermissionSet,
        Kind::FieldPermissions,
        Kind::PermissionSetAssignment,
        Kind::UserPermissionAccess,
        Kind::CustomField,
    ];
}

/// An object as describe and describeGlobal report it.
pub(crate) struct ObjectDef {
    pub(crate) kind: Kind,
    pub(crate) name: &'static str,
    pub(crate) label: &'static str,
    pub(crate) label_plural: &'static str,
    pub(crate) prefix: &'static str,
    pub(crate) createable: bool,
    pub(crate) updateable: bool,
    pub(crate) deletable: bool,
    pub(crate) feed_enabled: bool,
    pub(crate) api: Api,
    pub(crate) columns: Vec<Column>,
}

fn not_deleted(_: &Gen, _: u64) -> Cell {
    Cell::Bool(false)
}

fn col(def: FieldDef, gen: GenFn) -> Column {
    Column { def, gen: Some(gen) }
}

fn stored(def: FieldDef) -> Column {
    Column { def, gen: None }
}

fn t(s: &'static str) -> Cell {
    Cell::Text(Cow::Borrowed(s))
}

fn opt(s: Option<String>) -> Cell {
    s.map_or(Cell::Null, |s| Cell::Text(Cow::Owned(s)))
}

/// A generator calling `Gen::$method(kind, index)`: fn pointers cannot
/// capture the kind, so each kind gets its own.
macro_rules! per_kind {
    ($kind:expr, $method:ident) => {
        match $kind {
            Kind::User => |g, i| Cell::DateTime(g.$method(Kind::User, i)),
            Kind::Organization => |g, i| Cell::DateTime(g.$method(Kind::Organization, i)),
            Kind::Account => |g, i| Cell::DateTime(g.$method(Kind::Account, i)),
            Kind::Contact => |g, i| Cell::DateTime(g.$method(Kind::Contact, i)),
            Kind::AccountContactRole => |g, i| Cell::DateTime(g.$method(Kind::AccountContactRole, i)),
            Kind::Opportunity => |g, i| Cell::DateTime(g.$method(Kind::Opportunity, i)),
            Kind::OpportunityContactRole => |g, i| Cell::DateTime(g.$method(Kind::OpportunityContactRole, i)),
            Kind::Task => |g, i| Cell::DateTime(g.$method(Kind::Task, i)),
            _ => |g, i| Cell::DateTime(g.$method(Kind::Event, i)),
        }
    };
}

/// `Id`, `IsDeleted` and the audit fields every object has; `generated`
/// says whether their values come from the index.
fn audit(label: &str, kind: Kind, is_deleted: bool, generated: bool) -> (Vec<Column>, Vec<Column>) {
    let id_fn: GenFn = match kind {
        Kind::User => |g, i| Cell::text(g.user_id(i)),
        Kind::Organization => |g, _| Cell::text(g.org_id.clone()),
        Kind::Account => |g, i| Cell::text(g.account_id(i)),
        Kind::Contact => |g, i| Cell::text(g.contact_id(i)),
        Kind::AccountContactRole => |g, i| Cell::text(g.id("02Z", i)),
        Kind::Opportunity => |g, i| Cell::text(g.opportunity_id(i)),
        Kind::OpportunityContactRole => |g, i| Cell::text(g.id("00K", i)),
        Kind::Task => |g, i| Cell::text(g.id("00T", i)),
        Kind::Event => |g, i| Cell::text(g.id("00U", i)),
        _ => |_, _| Cell::Null,
    };
    let id_gen = generated.then_some(id_fn);
    let mut head = vec![Column {
        def: FieldDef::new("Id", &format!("{label} ID"), FieldType::Id).system(),
        gen: id_gen,
    }];
    if is_deleted {
        head.push(Column {
            def: FieldDef::new("IsDeleted", "Deleted", FieldType::Boolean).system(),
            gen: generated.then_some(not_deleted as GenFn),
        });
    }
    let created_fn: GenFn = per_kind!(kind, created_ms);
    let modified_fn: GenFn = per_kind!(kind, modstamp_ms);
    let created = generated.then_some(created_fn);
    let modified = generated.then_some(modified_fn);
    let admin_fn: GenFn = |g, _| Cell::text(g.user_id(0));
    let admin = generated.then_some(admin_fn);
    let tail = vec![
        Column {
            def: FieldDef::new("CreatedDate", "Created Date", FieldType::DateTime).system(),
            gen: created,
        },
        Column {
            def: FieldDef::new("CreatedById", "Created By ID", FieldType::Reference)
                .system()
                .refs(&["User"], "CreatedBy"),
            gen: admin,
        },
        Column {
            def: FieldDef::new("LastModifiedDate", "Last Modified Date", FieldType::DateTime).system(),
            gen: modified,
        },
        Column {
            def: FieldDef::new("LastModifiedById", "Last Modified By ID", FieldType::Reference)
                .system()
                .refs(&["User"], "LastModifiedBy"),
            gen: admin,
        },
        Column {
            def: FieldDef::new("SystemModstamp", "System Modstamp", FieldType::DateTime).system(),
            gen: modified,
        },
    ];
    (head, tail)
}

fn object(
    kind: Kind,
    names: (&'static str, &'static str, &'static str, &'static str),
    generated: bool,
    is_deleted: bool,
    body: Vec<Column>,
) -> ObjectDef {
    let (name, label, label_plural, prefix) = names;
    let (mut columns, tail) = audit(label, kind, is_deleted, generated);
    columns.extend(body);
    columns.extend(tail);
    ObjectDef {
        kind,
        name,
        label,
        label_plural,
        prefix,
        createable: true,
        updateable: true,
        deletable: true,
        feed_enabled: false,
        api: Api::Rest,
        columns,
    }
}

pub(crate) const ACCOUNT_TYPES: &[&str] = &[
    "Prospect",
    "Customer - Direct",
    "Customer - Channel",
    "Channel Partner / Reseller",
    "Installation Partner",
    "Technology Partner",
    "Other",
];
pub(crate) const INDUSTRIES: &[&str] = &[
    "Agriculture",
    "Apparel",
    "Banking",
    "Biotechnology",
    "Chemicals",
    "Communications",
    "Construction",
    "Consulting",
    "Education",
    "Electronics",
    "Energy",
    "Engineering",
    "Entertainment",
    "Environmental",
    "Finance",
    "Food & Beverage",
    "Government",
    "Healthcare",
    "Hospitality",
    "Insurance",
    "Machinery",
    "Manufacturing",
    "Media",
    "Not For Profit",
    "Recreation",
    "Retail",
    "Shipping",
    "Technology",
    "Telecommunications",
    "Transportation",
    "Utilities",
    "Other",
];
/// From the recorded Opportunity describe.
pub(crate) const STAGES: &[&str] = &[
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Id. Decision Makers",
    "Perception Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
];
pub(crate) const OPPORTUNITY_TYPES: &[&str] = &[
    "New Business",
    "Renewal",
    "Existing Customer - Upgrade",
    "Existing Customer - Replacement",
    "Existing Customer - Downgrade",
    "New Customer",
];
/// From the recorded OpportunityContactRole describe.
pub(crate) const CONTACT_ROLES: &[&str] = &[
    "Business User",
    "Decision Maker",
    "Economic Buyer",
    "Economic Decision Maker",
    "Evaluator",
    "Executive Sponsor",
    "Influencer",
    "Technical Buyer",
    "Other",
];
pub(crate) const TASK_STATUSES: &[&str] = &[
    "Not Started",
    "In Progress",
    "Completed",
    "Waiting on someone else",
    "Deferred",
];
const PRIORITIES: &[&str] = &["High", "Normal", "Low"];
const TASK_SUBTYPES: &[&str] = &["Task", "Email", "ListEmail", "Cadence", "Call", "LinkedIn"];
const ACTIVITY_TYPES: &[&str] = &["Call", "Email", "Meeting", "Other"];
const COUNTRIES: &[&str] = &[
    "United States",
    "Canada",
    "United Kingdom",
    "Germany",
    "France",
    "Australia",
    "Japan",
    "Brazil",
];

/// The user permissions `UserPermissionAccess` reports.
pub(crate) const USER_PERMISSIONS: &[&str] = &[
    "PermissionsApiEnabled",
    "PermissionsCustomizeApplication",
    "PermissionsModifyAllData",
    "PermissionsViewAllData",
    "PermissionsViewSetup",
    "PermissionsManageUsers",
    "PermissionsAuthorApex",
];

/// Every object of a fresh org, in [`Kind::ALL`] order.
pub(crate) fn objects() -> Vec<ObjectDef> {
    use FieldType as F;
    let mut user = object(
        Kind::User,
        ("User", "User", "Users", "005"),
        true,
        false,
        vec![
            col(
                FieldDef::new("Username", "Username", F::String)
                    .required()
                    .len(80)
                    .lookup(),
                |g, i| Cell::text(g.username(i)),
            ),
            col(
                FieldDef::new("Name", "Full Name", F::String)
                    .read_only()
                    .len(121)
                    .name_field(),
                |g, i| Cell::text(g.user_name(i)),
            ),
            col(FieldDef::new("FirstName", "First Name", F::String).len(40), |g, i| {
                Cell::text(g.user_first(i))
            }),
            col(
                FieldDef::new("LastName", "Last Name", F::String).required().len(80),
                |g, i| Cell::text(g.user_last(i)),
            ),
            col(FieldDef::new("Email", "Email", F::Email).required(), |g, i| {
                Cell::text(g.user_email(i))
            }),
            col(FieldDef::new("Alias", "Alias", F::String).required().len(8), |g, i| {
                Cell::text(g.user_alias(i))
            }),
            col(FieldDef::new("IsActive", "Active", F::Boolean), |g, i| {
                Cell::Bool(g.user_active(i))
            }),
            col(
                FieldDef::new("UserType", "User Type", F::Picklist)
                    .read_only()
                    .values(&["Standard"]),
                |_, _| t("Standard"),
            ),
            col(
                FieldDef::new("TimeZoneSidKey", "Time Zone", F::Picklist).required(),
                |_, _| t("America/Los_Angeles"),
            ),
        ],
    );
    user.createable = false;
    user.deletable = false;

    let mut organization = object(
        Kind::Organization,
        ("Organization", "Organization", "Organizations", "00D"),
        true,
        false,
        vec![
            col(
                FieldDef::new("Name", "Name", F::String)
                    .read_only()
                    .len(80)
                    .name_field(),
                |g, _| Cell::text(g.org_name.clone()),
            ),
            col(
                FieldDef::new("IsSandbox", "Is Sandbox", F::Boolean).read_only(),
                |g, _| Cell::Bool(g.sandbox),
            ),
            col(
                FieldDef::new("OrganizationType", "Edition", F::Picklist)
                    .read_only()
                    .values(&[
                        "Team Edition",
                        "Professional Edition",
                        "Enterprise Edition",
                        "Developer Edition",
                        "Unlimited Edition",
                    ]),
                |_, _| t("Enterprise Edition"),
            ),
            col(
                FieldDef::new("InstanceName", "Instance Name", F::String)
                    .read_only()
                    .len(5),
                |g, _| t(if g.sandbox { "CS42" } else { "NA224" }),
            ),
            col(
                FieldDef::new("TimeZoneSidKey", "Default Time Zone", F::Picklist).read_only(),
                |_, _| t("America/Los_Angeles"),
            ),
            col(
                FieldDef::new("LanguageLocaleKey", "Language", F::Picklist).read_only(),
                |_, _| t("en_US"),
            ),
        ],
    );
    organization.createable = false;
    organization.updateable = false;
    organization.deletable = false;

    let mut account = object(
        Kind::Account,
        ("Account", "Account", "Accounts", "001"),
        true,
        true,
        vec![
            col(
                FieldDef::new("Name", "Account Name", F::String).required().name_field(),
                |g, i| Cell::text(g.account_name(i)),
            ),
            col(
                FieldDef::new("Type", "Account Type", F::Picklist)
                    .len(40)
                    .values(ACCOUNT_TYPES),
                |g, i| t(g.pick(10, i, ACCOUNT_TYPES)),
            ),
            col(
                FieldDef::new("ParentId", "Parent Account ID", F::Reference).refs(&["Account"], "Parent"),
                |g, i| opt(g.account_parent(i).map(|p| g.account_id(p))),
            ),
            col(
                FieldDef::new("BillingCountry", "Billing Country", F::String).len(80),
                |g, i| t(g.pick(11, i, COUNTRIES)),
            ),
            col(FieldDef::new("Phone", "Account Phone", F::Phone), |g, i| {
                Cell::text(g.phone(12, i))
            }),
            col(FieldDef::new("Website", "Website", F::Url), |g, i| {
                Cell::text(g.account_website(i))
            }),
            col(
                FieldDef::new("Industry", "Industry", F::Picklist)
                    .len(40)
                    .values(INDUSTRIES),
                |g, i| t(g.pick(13, i, INDUSTRIES)),
            ),
            col(
                FieldDef::new("AnnualRevenue", "Annual Revenue", F::Currency).numeric(18, 0),
                |g, i| Cell::Num(g.account_revenue(i)),
            ),
            col(
                FieldDef::new("NumberOfEmployees", "Employees", F::Int).numeric(0, 0),
                |g, i| Cell::Int(g.account_employees(i)),
            ),
            col(
                FieldDef::new("Description", "Account Description", F::TextArea),
                |_, _| Cell::Null,
            ),
            col(
                FieldDef::new("OwnerId", "Owner ID", F::Reference)
                    .required()
                    .refs(&["User"], "Owner")
                    .defaulted(Cell::Null),
                |g, i| Cell::text(g.account_owner_id(i)),
            ),
            col(
                FieldDef::new("CustomerPriority__c", "Customer Priority", F::Picklist)
                    .values(&["High", "Low", "Medium"]),
                |g, i| t(g.pick(15, i, &["High", "Low", "Medium"])),
            ),
            col(
                FieldDef::new("NumberofLocations__c", "Number of Locations", F::Double).numeric(3, 0),
                |g, i| Cell::Num((g.h(16, i) % 40 + 1) as f64),
            ),
            col(
                FieldDef::new("SLAExpirationDate__c", "SLA Expiration Date", F::Date),
                |g, i| Cell::Date(g.sla_date(i)),
            ),
            col(
                FieldDef::new("Customer_Id__c", "Customer ID", F::String).len(80),
                |g, i| Cell::text(g.account_customer_id(i)),
            ),
        ],
    );
    account.feed_enabled = true;

    let contact = object(
        Kind::Contact,
        ("Contact", "Contact", "Contacts", "003"),
        true,
        true,
        vec![
            col(
                FieldDef::new("AccountId", "Account ID", F::Reference).refs(&["Account"], "Account"),
                |g, i| Cell::text(g.account_id(g.contact_account(i))),
            ),
            col(
                FieldDef::new("LastName", "Last Name", F::String).required().len(80),
                |g, i| t(g.last_name(i)),
            ),
            col(FieldDef::new("FirstName", "First Name", F::String).len(40), |g, i| {
                t(g.first_name(i))
            }),
            col(
                FieldDef::new("Name", "Full Name", F::String)
                    .read_only()
                    .required()
                    .len(121)
                    .name_field(),
                |g, i| Cell::text(format!("{} {}", g.first_name(i), g.last_name(i))),
            ),
            col(
                FieldDef::new("Title", "Title", F::String).len(128),
                |g, i| t(g.title(i)),
            ),
            col(FieldDef::new("Email", "Email", F::Email).lookup(), |g, i| {
                Cell::text(g.contact_email(i))
            }),
            col(FieldDef::new("Phone", "Business Phone", F::Phone), |g, i| {
                Cell::text(g.phone(20, i))
            }),
            col(
                FieldDef::new("ReportsToId", "Reports To ID", F::Reference).refs(&["Contact"], "ReportsTo"),
                |g, i| opt(g.contact_reports_to(i).map(|c| g.contact_id(c))),
            ),
            col(
                FieldDef::new("OwnerId", "Owner ID", F::Reference)
                    .required()
                    .refs(&["User"], "Owner")
                    .defaulted(Cell::Null),
                |g, i| Cell::text(g.owner_id(21, i)),
            ),
        ],
    );

    let account_contact_role = object(
        Kind::AccountContactRole,
        (
            "AccountContactRole",
            "Account Contact Role",
            "Account Contact Role",
            "02Z",
        ),
        true,
        true,
        vec![
            col(
                FieldDef::new("AccountId", "Account ID", F::Reference)
                    .required()
                    .refs(&["Account"], "Account"),
                |g, i| Cell::text(g.account_id(i)),
            ),
            col(
                FieldDef::new("ContactId", "Contact ID", F::Reference)
                    .required()
                    .refs(&["Contact"], "Contact"),
                |g, i| Cell::text(g.contact_id(g.first_contact(i))),
            ),
            col(
                FieldDef::new("Role", "Role", F::Picklist).len(40).values(CONTACT_ROLES),
                |g, i| t(g.pick(30, i, CONTACT_ROLES)),
            ),
            col(FieldDef::new("IsPrimary", "Primary", F::Boolean), |_, _| {
                Cell::Bool(true)
            }),
        ],
    );

    let opportunity = object(
        Kind::Opportunity,
        ("Opportunity", "Opportunity", "Opportunities", "006"),
        true,
        true,
        vec![
            col(
                FieldDef::new("AccountId", "Account ID", F::Reference).refs(&["Account"], "Account"),
                |g, i| Cell::text(g.account_id(g.opportunity_account(i))),
            ),
            col(
                FieldDef::new("Name", "Name", F::String)
                    .required()
                    .len(120)
                    .name_field(),
                |g, i| Cell::text(g.opportunity_name(i)),
            ),
            col(FieldDef::new("Description", "Description", F::TextArea), |_, _| {
                Cell::Null
            }),
            col(
                FieldDef::new("StageName", "Stage", F::Picklist)
                    .required()
                    .values(STAGES),
                |g, i| t(g.stage(i)),
            ),
            col(FieldDef::new("Amount", "Amount", F::Currency), |g, i| {
                Cell::Num(g.amount(i))
            }),
            col(FieldDef::new("Probability", "Probability (%)", F::Percent), |g, i| {
                Cell::Num(super::generate::probability(g.stage(i)))
            }),
            col(FieldDef::new("CloseDate", "Close Date", F::Date).required(), |g, i| {
                Cell::Date(g.close_date(i))
            }),
            col(
                FieldDef::new("Type", "Opportunity Type", F::Picklist)
                    .len(40)
                    .values(OPPORTUNITY_TYPES),
                |g, i| t(g.pick(40, i, OPPORTUNITY_TYPES)),
            ),
            col(FieldDef::new("IsClosed", "Closed", F::Boolean).read_only(), |g, i| {
                Cell::Bool(g.stage(i).starts_with("Closed"))
            }),
            col(FieldDef::new("IsWon", "Won", F::Boolean).read_only(), |g, i| {
                Cell::Bool(g.stage(i) == "Closed Won")
            }),
            col(
                FieldDef::new("ForecastCategoryName", "Forecast Category", F::Picklist).values(&[
                    "Omitted",
                    "Pipeline",
                    "Best Case",
                    "Commit",
                    "Closed",
                ]),
                |g, i| t(super::generate::forecast(g.stage(i))),
            ),
            col(
                FieldDef::new("OwnerId", "Owner ID", F::Reference)
                    .required()
                    .refs(&["User"], "Owner")
                    .defaulted(Cell::Null),
                |g, i| Cell::text(g.owner_id(41, i)),
            ),
        ],
    );

    let opportunity_contact_role = object(
        Kind::OpportunityContactRole,
        (
            "OpportunityContactRole",
            "Opportunity Contact Role",
            "Opportunity Contact Role",
            "00K",
        ),
        true,
        true,
        vec![
            col(
                FieldDef::new("OpportunityId", "Opportunity ID", F::Reference)
                    .required()
                    .refs(&["Opportunity"], "Opportunity"),
                |g, i| Cell::text(g.opportunity_id(i)),
            ),
            col(
                FieldDef::new("ContactId", "Contact ID", F::Reference)
                    .required()
                    .refs(&["Contact"], "Contact"),
                |g, i| Cell::text(g.contact_id(g.first_contact(g.opportunity_account(i)))),
            ),
            col(
                FieldDef::new("Role", "Role", F::Picklist).len(40).values(CONTACT_ROLES),
                |g, i| t(g.pick(50, i, CONTACT_ROLES)),
            ),
            col(FieldDef::new("IsPrimary", "Primary", F::Boolean), |_, _| {
                Cell::Bool(true)
            }),
        ],
    );

    let what_to = &["Account", "Opportunity"];
    let who_to = &["Contact", "Lead"];
    let task = object(
        Kind::Task,
        ("Task", "Task", "Tasks", "00T"),
        true,
        true,
        vec![
            col(
                FieldDef::new("WhoId", "Name ID", F::Reference).refs(who_to, "Who"),
                |g, i| opt(g.activity_who(g.task_account(i), i)),
            ),
            col(
                FieldDef::new("WhatId", "Related To ID", F::Reference).refs(what_to, "What"),
                |g, i| Cell::text(g.account_id(g.task_account(i))),
            ),
            col(
                FieldDef::new("AccountId", "Account ID", F::Reference)
                    .read_only()
                    .refs(&["Account"], "Account"),
                |g, i| Cell::text(g.account_id(g.task_account(i))),
            ),
            col(
                FieldDef::new("Subject", "Subject", F::Combobox).values(&[
                    "Call",
                    "Send Letter",
                    "Send Quote",
                    "Other",
                ]),
                |g, i| t(super::generate::task_subject(g.task_subtype(i))),
            ),
            col(FieldDef::new("ActivityDate", "Due Date Only", F::Date), |g, i| {
                Cell::Date(g.task_date(i))
            }),
            col(
                FieldDef::new("Status", "Status", F::Picklist)
                    .len(40)
                    .values(TASK_STATUSES)
                    .defaulted(t("Not Started")),
                |g, i| t(g.task_status(i)),
            ),
            col(
                FieldDef::new("Priority", "Priority", F::Picklist)
                    .len(40)
                    .values(PRIORITIES)
                    .defaulted(t("Normal")),
                |g, i| t(g.pick(60, i, PRIORITIES)),
            ),
            col(
                FieldDef::new("OwnerId", "Assigned To ID", F::Reference)
                    .required()
                    .refs(&["User"], "Owner")
                    .defaulted(Cell::Null),
                |g, i| Cell::text(g.owner_id(61, i)),
            ),
            col(FieldDef::new("Description", "Description", F::TextArea), |_, _| {
                Cell::Null
            }),
            col(
                FieldDef::new("Type", "Type", F::Picklist)
                    .len(40)
                    .values(ACTIVITY_TYPES),
                |g, i| t(super::generate::task_type(g.task_subtype(i))),
            ),
            col(FieldDef::new("IsClosed", "Closed", F::Boolean).read_only(), |g, i| {
                Cell::Bool(g.task_status(i) == "Completed")
            }),
            col(
                FieldDef::new("CompletedDateTime", "Completed Date/Time", F::DateTime).read_only(),
                |g, i| {
                    if g.task_status(i) == "Completed" {
                        Cell::DateTime(g.task_completed_ms(i))
                    } else {
                        Cell::Null
                    }
                },
            ),
            col(
                FieldDef::new("TaskSubtype", "Task Subtype", F::Picklist)
                    .len(40)
                    .values(TASK_SUBTYPES),
                |g, i| t(g.task_subtype(i)),
            ),
            col(
                FieldDef::new("CallType", "Call Type", F::Picklist)
                    .len(40)
                    .values(&["Internal", "Inbound", "Outbound"]),
                |g, i| {
                    if g.task_subtype(i) == "Call" {
                        t("Outbound")
                    } else {
                        Cell::Null
                    }
                },
            ),
            col(
                FieldDef::new("CallDurationInSeconds", "Call Duration", F::Int),
                |g, i| {
                    if g.task_subtype(i) == "Call" {
                        Cell::Int((g.h(62, i) % 3600) as i64)
                    } else {
                        Cell::Null
                    }
                },
            ),
            col(
                FieldDef::new("IsArchived", "Archived", F::Boolean).read_only(),
                |_, _| Cell::Bool(false),
            ),
        ],
    );

    let event = object(
        Kind::Event,
        ("Event", "Event", "Events", "00U"),
        true,
        true,
        vec![
            col(
                FieldDef::new("WhoId", "Name ID", F::Reference).refs(who_to, "Who"),
                |g, i| opt(g.activity_who(g.event_account(i), i)),
            ),
            col(
                FieldDef::new("WhatId", "Related To ID", F::Reference).refs(what_to, "What"),
                |g, i| Cell::text(g.account_id(g.event_account(i))),
            ),
            col(
                FieldDef::new("AccountId", "Account ID", F::Reference)
                    .read_only()
                    .refs(&["Account"], "Account"),
                |g, i| Cell::text(g.account_id(g.event_account(i))),
            ),
            col(
                FieldDef::new("Subject", "Subject", F::Combobox).values(&[
                    "Call",
                    "Email",
                    "Meeting",
                    "Send Letter/Quote",
                    "Other",
                ]),
                |g, i| {
                    t(g.pick(
                        70,
                        i,
                        &[
                            "Meeting",
                            "Quarterly Business Review",
                            "Onboarding session",
                            "Product demo",
                        ],
                    ))
                },
            ),
            col(FieldDef::new("Location", "Location", F::String), |_, _| Cell::Null),
            col(
                FieldDef::new("ActivityDateTime", "Due Date Time", F::DateTime),
                |g, i| Cell::DateTime(g.event_start_ms(i)),
            ),
            col(FieldDef::new("ActivityDate", "Due Date Only", F::Date), |g, i| {
                Cell::Date(super::generate::date_of(g.event_start_ms(i)))
            }),
            col(
                FieldDef::new("StartDateTime", "Start Date Time", F::DateTime),
                |g, i| Cell::DateTime(g.event_start_ms(i)),
            ),
            col(FieldDef::new("EndDateTime", "End Date Time", F::DateTime), |g, i| {
                Cell::DateTime(g.event_start_ms(i) + g.event_minutes(i) * 60_000)
            }),
            col(FieldDef::new("DurationInMinutes", "Duration", F::Int), |g, i| {
                Cell::Int(g.event_minutes(i))
            }),
            col(FieldDef::new("Description", "Description", F::TextArea), |_, _| {
                Cell::Null
            }),
            col(
                FieldDef::new("Type", "Type", F::Picklist)
                    .len(40)
                    .values(ACTIVITY_TYPES),
                |_, _| t("Meeting"),
            ),
            col(
                FieldDef::new("EventSubtype", "Event Subtype", F::Picklist)
                    .len(40)
                    .values(&["Event"]),
                |_, _| t("Event"),
            ),
            col(
                FieldDef::new("OwnerId", "Assigned To ID", F::Reference)
                    .required()
                    .refs(&["Calendar", "User"], "Owner")
                    .defaulted(Cell::Null),
                |g, i| Cell::text(g.owner_id(71, i)),
            ),
            col(
                FieldDef::new("IsArchived", "Archived", F::Boolean).read_only(),
                |_, _| Cell::Bool(false),
            ),
        ],
    );

    let mut feed_item = object(
        Kind::FeedItem,
        ("FeedItem", "Feed Item", "Feed Items", "0D5"),
        false,
        true,
        vec![
            stored(
                FieldDef::new("ParentId", "Parent ID", F::Reference)
                    .required()
                    .refs(&["Account", "Opportunity", "User"], "Parent"),
            ),
            stored(
                FieldDef::new("Type", "Feed Item Type", F::Picklist)
                    .len(40)
                    .values(&["TextPost", "LinkPost", "ContentPost", "CreateRecordEvent"])
                    .defaulted(t("TextPost")),
            ),
            stored(FieldDef::new("Body", "Body", F::TextArea).len(10000)),
            stored(FieldDef::new("Title", "Title", F::String)),
            stored(FieldDef::new("LinkUrl", "Link Url", F::Url).len(1000)),
            stored(FieldDef::new("IsRichText", "Is Rich Text", F::Boolean)),
            stored(
                FieldDef::new("CommentCount", "Comment Count", F::Int)
                    .read_only()
                    .defaulted(Cell::Int(0)),
            ),
            stored(
                FieldDef::new("LikeCount", "Like Count", F::Int)
                    .read_only()
                    .defaulted(Cell::Int(0)),
            ),
        ],
    );
    feed_item.updateable = true;

    let mut permission_set = object(
        Kind::PermissionSet,
        ("PermissionSet", "Permission Set", "Permission Sets", "0PS"),
        false,
        false,
        vec![
            stored(FieldDef::new("Name", "Name", F::String).required().len(80)),
            stored(
                FieldDef::new("Label", "Label", F::String)
                    .required()
                    .len(80)
                    .name_field(),
            ),
            stored(FieldDef::new("Description", "Description", F::String).len(255)),
            stored(FieldDef::new("IsOwnedByProfile", "Is Owned By Profile", F::Boolean).read_only()),
            stored(FieldDef::new("PermissionsApiEnabled", "API Enabled", F::Boolean)),
            stored(FieldDef::new("PermissionsModifyAllData", "Modify All Data", F::Boolean)),
        ],
    );
    permission_set.api = Api::Both;

    let mut field_permissions = object(
        Kind::FieldPermissions,
        ("FieldPermissions", "Field Permissions", "Field Permissions", "01k"),
        false,
        false,
        vec![
            stored(
                FieldDef::new("ParentId", "Parent ID", F::Reference)
                    .required()
                    .refs(&["PermissionSet"], "Parent"),
            ),
            stored(
                FieldDef::new("SobjectType", "Sobject Type Name", F::Picklist)
                    .required()
                    .len(40),
            ),
            stored(FieldDef::new("Field", "Field Name", F::Picklist).required().len(255)),
            stored(FieldDef::new("PermissionsRead", "Read Access", F::Boolean)),
            stored(FieldDef::new("PermissionsEdit", "Edit Access", F::Boolean)),
        ],
    );
    field_permissions.api = Api::Both;

    let mut assignment = object(
        Kind::PermissionSetAssignment,
        (
            "PermissionSetAssignment",
            "Permission Set Assignment",
            "Permission Set Assignments",
            "0Pa",
        ),
        false,
        false,
        vec![
            stored(
                FieldDef::new("AssigneeId", "Assignee ID", F::Reference)
                    .required()
                    .refs(&["User"], "Assignee"),
            ),
            stored(
                FieldDef::new("PermissionSetId", "Permission Set ID", F::Reference)
                    .required()
                    .refs(&["PermissionSet"], "PermissionSet"),
            ),
        ],
    );
    assignment.api = Api::Both;
    assignment.updateable = false;

    let mut permissions: Vec<Column> = vec![stored(
        FieldDef::new("LastCacheUpdate", "Last Cache Update", F::DateTime).read_only(),
    )];
    for name in USER_PERMISSIONS {
        let label = name.trim_start_matches("Permissions");
        permissions.push(stored(FieldDef::new(name, label, F::Boolean).read_only()));
    }
    let user_permission_access = ObjectDef {
        kind: Kind::UserPermissionAccess,
        name: "UserPermissionAccess",
        label: "User Permission Access",
        label_plural: "User Permission Access",
        prefix: "",
        createable: false,
        updateable: false,
        deletable: false,
        feed_enabled: false,
        api: Api::Rest,
        columns: permissions,
    };

    let mut custom_field = object(
        Kind::CustomField,
        (
            "CustomField",
            "Custom Field Definition",
            "Custom Field Definitions",
            "00N",
        ),
        false,
        false,
        vec![
            stored(
                FieldDef::new("DeveloperName", "Field Name", F::String)
                    .read_only()
                    .len(40),
            ),
            stored(
                FieldDef::new("TableEnumOrId", "Table Enum or ID", F::Picklist)
                    .read_only()
                    .len(40),
            ),
            stored(
                FieldDef::new("NamespacePrefix", "Namespace Prefix", F::String)
                    .read_only()
                    .len(15),
            ),
            stored(FieldDef::new("FullName", "Full Name", F::String).required()),
            stored(
                FieldDef::new("Description", "Description", F::TextArea)
                    .read_only()
                    .len(1000),
            ),
            stored(FieldDef::new("Metadata", "Metadata", F::ComplexValue).required()),
        ],
    );
    custom_field.api = Api::Tooling;
    custom_field.updateable = false;

    vec![
        user,
        organization,
        account,
        contact,
        account_contact_role,
        opportunity,
        opportunity_contact_role,
        task,
        event,
        feed_item,
        permission_set,
        field_permissions,
        assignment,
        user_permission_access,
        custom_field,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_in_kind_order_with_unique_field_names() {
        let objects = objects();
        assert_eq!(objects.len(), Kind::ALL.len());
        for (o, k) in objects.iter().zip(Kind::ALL) {
            assert_eq!(o.kind, k, "{}", o.name);
            let mut names: Vec<&str> = o.columns.iter().map(|c| c.def.name.as_str()).collect();
            names.sort_unstable();
            let before = names.len();
            names.dedup();
            assert_eq!(before, names.len(), "{}", o.name);
        }
    }

    #[test]
    fn field_describes_have_the_recorded_key_set() {
        let recorded: Value = serde_json::from_str(include_str!(
            "../../specs/examples/salesforce/account_describe_excerpt.json"
        ))
        .expect("json");
        let want: std::collections::BTreeSet<String> = recorded["fields"][0]
            .as_object()
            .expect("object")
            .keys()
            .cloned()
            .collect();
        let mine = FieldDef::new("Name", "Account Name", FieldType::String).describe(true, true);
        let got: std::collections::BTreeSet<String> = mine.as_object().expect("object").keys().cloned().collect();
        assert_eq!(want, got);
    }

    #[test]
    fn datetimes_render_per_api() {
        assert_eq!(rest_datetime(1_704_164_645_000), "2024-01-02T03:04:05.000+0000");
        assert_eq!(bulk_datetime(1_704_164_645_000), "2024-01-02T03:04:05.000Z");
    }
}
