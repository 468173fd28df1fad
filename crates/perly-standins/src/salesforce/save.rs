//! Creating, updating and deleting records through the API, with
//! Salesforce's per-record errors: `INVALID_FIELD` (unknown or hidden
//! field, `Id` in the body), `INVALID_FIELD_FOR_INSERT_UPDATE` (read-only
//! or not editable under field-level security), `REQUIRED_FIELD_MISSING`,
//! `STRING_TOO_LONG`, `INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST`,
//! `MALFORMED_ID`, `ENTITY_IS_DELETED`, `DUPLICATE_VALUE`, plus injected
//! `FailRecords` faults. The single-record REST resources and the sObject
//! Collections share [`create`] / [`update`]; [`collection`] adds
//! `allOrNone` (validate everything first; on any failure apply nothing and
//! mark the other records `ALL_OR_NONE_OPERATION_ROLLED_BACK`).

use chrono::NaiveDate;
use serde_json::{json, Map, Value};

use super::catalog::{Api, Cell, FieldDef, FieldType, Kind};
use super::ids;
use super::org::{Data, RowKey};
use super::soql::parse_datetime;
use super::State;

/// One record's failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SaveError {
    pub(crate) code: String,
    pub(crate) message: String,
    pub(crate) fields: Vec<String>,
}

impl SaveError {
    fn new(code: &str, message: impl Into<String>, fields: &[&str]) -> SaveError {
        SaveError {
            code: code.into(),
            message: message.into(),
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    /// The REST resources' error element.
    pub(crate) fn rest_json(&self) -> Value {
        json!({"message": self.message, "errorCode": self.code, "fields": self.fields})
    }

    /// A SaveResult's error element.
    pub(crate) fn result_json(&self) -> Value {
        json!({"statusCode": self.code, "message": self.message, "fields": self.fields})
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Create,
    Update,
}

fn parse_value(def: &FieldDef, v: &Value) -> Result<Cell, SaveError> {
    let name = def.name.as_str();
    let bad = |what: &str| {
        SaveError::new(
            "JSON_PARSER_ERROR",
            format!("Cannot deserialize instance of {what} from VALUE_STRING value {v} or request may be missing a required field"),
            &[],
        )
    };
    if v.is_null() {
        return Ok(Cell::Null);
    }
    Ok(match def.ty {
        FieldType::Boolean => match v {
            Value::Bool(b) => Cell::Bool(*b),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Cell::Bool(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Cell::Bool(false),
            _ => return Err(bad("boolean")),
        },
        FieldType::Int => match v {
            Value::Number(n) if n.as_i64().is_some() => Cell::Int(n.as_i64().unwrap_or_default()),
            Value::String(s) => Cell::Int(s.trim().parse().map_err(|_| bad("int"))?),
            _ => return Err(bad("int")),
        },
        FieldType::Currency | FieldType::Double | FieldType::Percent => match v {
            Value::Number(n) => Cell::Num(n.as_f64().unwrap_or_default()),
            Value::String(s) => Cell::Num(s.trim().parse().map_err(|_| bad("double"))?),
            _ => return Err(bad("double")),
        },
        FieldType::Date => {
            let s = v.as_str().ok_or_else(|| bad("date"))?;
            Cell::Date(NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| bad("date"))?)
        }
        FieldType::DateTime => {
            let s = v.as_str().ok_or_else(|| bad("datetime"))?;
            Cell::DateTime(parse_datetime(s).ok_or_else(|| bad("datetime"))?)
        }
        FieldType::ComplexValue => Cell::Json(Box::new(v.clone())),
        _ => {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return Err(bad("string")),
            };
            if def.length > 0 && s.chars().count() > def.length as usize {
                return Err(SaveError::new(
                    "STRING_TOO_LONG",
                    format!("{}: data value too large: {s} (max length={})", def.label, def.length),
                    &[name],
                ));
            }
            if def.ty == FieldType::Picklist && def.restricted_picklist && !def.picklist.contains(&s) {
                return Err(SaveError::new(
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    format!("{}: bad value for restricted picklist field: {s}", def.label),
                    &[name],
                ));
            }
            if def.ty == FieldType::Reference && !s.is_empty() && ids::parse(&s).is_none() {
                return Err(SaveError::new(
                    "MALFORMED_ID",
                    format!("{}: id value of incorrect type: {s}", def.label),
                    &[name],
                ));
            }
            if s.is_empty() && def.ty == FieldType::Reference {
                Cell::Null
            } else {
                Cell::text(s)
            }
        }
    })
}

/// A request body's fields as column values.
pub(crate) fn values(
    data: &Data,
    kind: Kind,
    body: &Map<String, Value>,
    mode: Mode,
) -> Result<Vec<(usize, Cell)>, SaveError> {
    let table = data.table(kind);
    let access = data.field_access(kind);
    let mut out = Vec::new();
    for (name, v) in body {
        if name == "attributes" {
            continue;
        }
        if name.eq_ignore_ascii_case("Id") {
            return Err(SaveError::new(
                "INVALID_FIELD",
                "The Id field should not be specified in the sobject data.",
                &[],
            ));
        }
        let Some(col) = table.col(name).filter(|c| access[*c].read) else {
            return Err(SaveError::new(
                "INVALID_FIELD",
                format!("No such column '{name}' on sobject of type {}", table.name()),
                &[],
            ));
        };
        let def = table.field(col);
        let allowed = match mode {
            Mode::Create => def.createable,
            Mode::Update => def.updateable,
        } && access[col].edit;
        if !allowed {
            return Err(SaveError::new(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                format!(
                    "Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
                    def.name
                ),
                &[def.name.as_str()],
            ));
        }
        let cell = parse_value(def, v)?;
        if cell.is_null() && !def.nillable && mode == Mode::Update {
            return Err(SaveError::new(
                "REQUIRED_FIELD_MISSING",
                format!("Required fields are missing: [{}]", def.name),
                &[def.name.as_str()],
            ));
        }
        out.push((col, cell));
    }
    Ok(out)
}

/// A handle's loose values: by name, unknown names ignored, strings of
/// date and dateTime fields parsed.
pub(crate) fn loose_values(data: &Data, kind: Kind, fields: &Value) -> Vec<(usize, Cell)> {
    let table = data.table(kind);
    let Some(map) = fields.as_object() else {
        return Vec::new();
    };
    map.iter()
        .filter_map(|(name, v)| {
            let col = table.col(name)?;
            let cell = parse_value(table.field(col), v).unwrap_or_else(|_| super::loose_cell(v));
            Some((col, cell))
        })
        .collect()
}

fn required(data: &Data, kind: Kind, given: &[(usize, Cell)]) -> Result<(), SaveError> {
    let table = data.table(kind);
    let missing: Vec<&str> = table
        .columns()
        .iter()
        .enumerate()
        .filter(|(i, c)| {
            c.def.createable
                && !c.def.nillable
                && c.def.default.is_none()
                && !given.iter().any(|(g, v)| g == i && !v.is_null())
        })
        .map(|(_, c)| c.def.name.as_str())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(SaveError::new(
        "REQUIRED_FIELD_MISSING",
        format!("Required fields are missing: [{}]", missing.join(", ")),
        &missing,
    ))
}

fn get<'a>(data: &'a Data, kind: Kind, values: &'a [(usize, Cell)], name: &str) -> Option<&'a str> {
    let col = data.table(kind).col(name)?;
    values.iter().find(|(c, _)| *c == col).and_then(|(_, v)| v.as_str())
}

fn duplicate(data: &Data, kind: Kind, pairs: &[(&str, &str)]) -> Option<String> {
    let t = data.table(kind);
    let cols: Vec<(usize, &str)> = pairs.iter().filter_map(|(n, v)| Some((t.col(n)?, *v))).collect();
    t.inserted.iter().find_map(|(seq, s)| {
        let key = RowKey::Inserted(*seq);
        let same = !s.deleted
            && cols.iter().all(|(c, v)| {
                t.value(&data.gen, key, *c)
                    .as_str()
                    .is_some_and(|x| x.eq_ignore_ascii_case(v) || ids::id15(x) == ids::id15(v))
            });
        same.then(|| t.id_of(&data.gen, key))
    })
}

/// Checks of particular objects (permission rows refer to real things).
fn object_rules(data: &Data, kind: Kind, values: &[(usize, Cell)]) -> Result<(), SaveError> {
    match kind {
        Kind::FieldPermissions => {
            let field = get(data, kind, values, "Field").unwrap_or_default();
            let object = get(data, kind, values, "SobjectType").unwrap_or_default();
            let exists = field.split_once('.').is_some_and(|(o, f)| {
                o.eq_ignore_ascii_case(object)
                    && data
                        .kind_named(o)
                        .and_then(|k| data.table(k).col(f).map(|c| data.table(k).field(c).nillable))
                        .unwrap_or(false)
            });
            if !exists {
                return Err(SaveError::new(
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    format!("Field Name: bad value for restricted picklist field: {field}"),
                    &["Field"],
                ));
            }
            let parent = get(data, kind, values, "ParentId").unwrap_or_default();
            if data.table(Kind::PermissionSet).key_of(&data.gen, parent).is_none() {
                return Err(SaveError::new(
                    "INVALID_CROSS_REFERENCE_KEY",
                    "invalid cross reference id",
                    &["ParentId"],
                ));
            }
            if duplicate(data, kind, &[("ParentId", parent), ("Field", field)]).is_some() {
                return Err(SaveError::new(
                    "DUPLICATE_VALUE",
                    "duplicate value found: <unknown> duplicates value on record with id: <unknown>",
                    &[],
                ));
            }
        }
        Kind::PermissionSetAssignment => {
            let assignee = get(data, kind, values, "AssigneeId").unwrap_or_default();
            let set = get(data, kind, values, "PermissionSetId").unwrap_or_default();
            if data.table(Kind::PermissionSet).key_of(&data.gen, set).is_none()
                || data.table(Kind::User).key_of(&data.gen, assignee).is_none()
            {
                return Err(SaveError::new(
                    "INVALID_CROSS_REFERENCE_KEY",
                    "invalid cross reference id",
                    &[],
                ));
            }
            if duplicate(data, kind, &[("AssigneeId", assignee), ("PermissionSetId", set)]).is_some() {
                return Err(SaveError::new(
                    "DUPLICATE_VALUE",
                    "duplicate value found: <unknown> duplicates value on record with id: <unknown>",
                    &[],
                ));
            }
        }
        Kind::PermissionSet => {
            let name = get(data, kind, values, "Name").unwrap_or_default();
            if let Some(id) = duplicate(data, kind, &[("Name", name)]) {
                return Err(SaveError::new(
                    "DUPLICATE_VALUE",
                    format!("duplicate value found: Name duplicates value on record with id: {id}"),
                    &["Name"],
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

/// The object named in a request, if the REST (or Tooling) API serves it.
pub(crate) fn served(data: &Data, name: &str, tooling: bool) -> Option<Kind> {
    data.kind_named(name).filter(|k| {
        let api = data.table(*k).def.api;
        if tooling {
            api != Api::Rest
        } else {
            api != Api::Tooling
        }
    })
}

fn fault_for(st: &State, id: Option<&str>) -> Option<SaveError> {
    let (ids_, code, message) = st.record_fault()?;
    let hit = ids_.is_empty() || id.is_some_and(|id| ids_.iter().any(|f| ids::id15(f) == ids::id15(id)));
    hit.then(|| SaveError {
        code,
        message,
        fields: Vec::new(),
    })
}

/// What a create would store, without storing it.
fn check_create(st: &State, kind: Kind, body: &Map<String, Value>) -> Result<Vec<(usize, Cell)>, SaveError> {
    if !st.data.object_access(kind).create {
        return Err(SaveError::new(
            "INSUFFICIENT_ACCESS_OR_READONLY",
            format!("entity type cannot be inserted: {}", st.data.table(kind).def.label),
            &[],
        ));
    }
    let values = values(&st.data, kind, body, Mode::Create)?;
    required(&st.data, kind, &values)?;
    object_rules(&st.data, kind, &values)?;
    if let Some(e) = fault_for(st, None) {
        return Err(e);
    }
    Ok(values)
}

/// The row an update targets, and its values, without storing them.
fn check_update(
    st: &State,
    kind: Kind,
    id: &str,
    body: &Map<String, Value>,
) -> Result<(RowKey, Vec<(usize, Cell)>), SaveError> {
    let table = st.data.table(kind);
    if ids::parse(id).is_none() {
        return Err(SaveError::new(
            "MALFORMED_ID",
            format!("{} ID: id value of incorrect type: {id}", table.def.label),
            &["Id"],
        ));
    }
    let Some(key) = table.key_of(&st.data.gen, id) else {
        return Err(SaveError::new(
            "INVALID_CROSS_REFERENCE_KEY",
            "invalid cross reference id",
            &[],
        ));
    };
    if table.is_deleted(key) {
        return Err(SaveError::new("ENTITY_IS_DELETED", "entity is deleted", &[]));
    }
    if !st.data.object_access(kind).edit {
        return Err(SaveError::new(
            "INSUFFICIENT_ACCESS_OR_READONLY",
            "insufficient access rights on object id",
            &[],
        ));
    }
    let values = values(&st.data, kind, body, Mode::Update)?;
    if let Some(e) = fault_for(st, Some(id)) {
        return Err(e);
    }
    Ok((key, values))
}

/// `POST /sobjects/{Object}/`: creates the record; returns its id.
pub(crate) fn create(st: &mut State, kind: Kind, body: &Map<String, Value>) -> Result<String, SaveError> {
    let result = check_create(st, kind, body);
    if fault_for(st, None).is_some() {
        st.use_record_fault();
    }
    let values = result?;
    Ok(st.data.insert(kind, values))
}

/// `PATCH /sobjects/{Object}/{id}`.
pub(crate) fn update(st: &mut State, kind: Kind, id: &str, body: &Map<String, Value>) -> Result<(), SaveError> {
    let result = check_update(st, kind, id, body);
    if fault_for(st, Some(id)).is_some() {
        st.use_record_fault();
    }
    let (key, values) = result?;
    st.data.update(kind, key, values);
    Ok(())
}

/// `DELETE /sobjects/{Object}/{id}`.
pub(crate) fn delete(st: &mut State, kind: Kind, id: &str) -> Result<(), SaveError> {
    let table = st.data.table(kind);
    let Some(key) = table.key_of(&st.data.gen, id) else {
        return Err(SaveError::new(
            "NOT_FOUND",
            "The requested resource does not exist",
            &[],
        ));
    };
    if table.is_deleted(key) {
        return Err(SaveError::new("ENTITY_IS_DELETED", "entity is deleted", &[]));
    }
    if !st.data.object_access(kind).delete {
        return Err(SaveError::new(
            "INSUFFICIENT_ACCESS_OR_READONLY",
            "insufficient access rights on object id",
            &[],
        ));
    }
    st.data.delete(kind, key);
    Ok(())
}

enum Planned {
    Create(Kind, Vec<(usize, Cell)>),
    Update(Kind, RowKey, String, Vec<(usize, Cell)>),
}

/// sObject Collections create (`POST`) or update (`PATCH`): one SaveResult
/// per record, in order.
pub(crate) fn collection(st: &mut State, mode: Mode, records: &[Value], all_or_none: bool) -> Vec<Value> {
    let mut planned: Vec<Result<Planned, SaveError>> = Vec::new();
    let mut faulted = false;
    for r in records {
        let outcome = (|| {
            let Some(obj) = r.as_object() else {
                return Err(SaveError::new("INVALID_TYPE", "Must send a concrete entity type.", &[]));
            };
            let Some(type_name) = obj
                .get("attributes")
                .and_then(|a| a.get("type"))
                .and_then(Value::as_str)
            else {
                return Err(SaveError::new("INVALID_TYPE", "Must send a concrete entity type.", &[]));
            };
            let Some(kind) = served(&st.data, type_name, false) else {
                return Err(SaveError::new(
                    "INVALID_TYPE",
                    format!("sObject type '{type_name}' is not supported."),
                    &[],
                ));
            };
            match mode {
                Mode::Create => {
                    let faulty = fault_for(st, None).is_some();
                    faulted |= faulty;
                    check_create(st, kind, obj).map(|v| Planned::Create(kind, v))
                }
                Mode::Update => {
                    let mut body = obj.clone();
                    let id = body
                        .keys()
                        .find(|k| k.eq_ignore_ascii_case("Id"))
                        .cloned()
                        .and_then(|k| body.remove(&k))
                        .and_then(|v| v.as_str().map(str::to_owned));
                    let Some(id) = id else {
                        return Err(SaveError::new(
                            "MISSING_ARGUMENT",
                            "Id not specified in an update call",
                            &[],
                        ));
                    };
                    faulted |= fault_for(st, Some(&id)).is_some();
                    check_update(st, kind, &id, &body).map(|(key, v)| Planned::Update(kind, key, id, v))
                }
            }
        })();
        planned.push(outcome);
    }
    if faulted {
        st.use_record_fault();
    }
    let any_failed = planned.iter().any(Result::is_err);
    let rolled_back = SaveError::new(
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "Record rolled back because not all records were valid and the request was using AllOrNone header",
        &[],
    );
    planned
        .into_iter()
        .map(|p| match p {
            Err(e) => json!({"success": false, "errors": [e.result_json()]}),
            Ok(_) if all_or_none && any_failed => json!({"success": false, "errors": [rolled_back.result_json()]}),
            Ok(Planned::Create(kind, values)) => {
                let id = st.data.insert(kind, values);
                json!({"id": id, "success": true, "errors": []})
            }
            Ok(Planned::Update(kind, key, id, values)) => {
                st.data.update(kind, key, values);
                let full = st.data.table(kind).id_of(&st.data.gen, key);
                let _ = id;
                json!({"id": full, "success": true, "errors": []})
            }
        })
        .collect()
}
