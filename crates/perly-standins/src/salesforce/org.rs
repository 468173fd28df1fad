//! One org's records: the generated ones (computed from their index by
//! [`Gen`], never stored) plus what changed since start: field changes and
//! deletions of generated records (the overlay), records created through the
//! API or the test handle (inserted), and custom fields added later.
//!
//! A table's rows are addressed by scan position: positions below the
//! generated count are generated records, the rest inserted ones in creation
//! order, so a scan can stop and resume anywhere (Bulk locators and query
//! cursors are scan positions). Deleted records stay, with `IsDeleted`
//! true, as in the recycle bin: `queryAll` sees them, `query` does not.
//!
//! Field-level security lives here too: a field created through the Tooling
//! API is invisible to the user until a `FieldPermissions` row on a
//! permission set assigned to the user grants it, and any permissionable
//! field can be hidden from the user (as an admin removing Read would).

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::Utc;

use super::catalog::{self, Cell, Column, FieldDef, FieldType, Kind, ObjectDef};
use super::generate::Gen;
use super::ids;

/// Values of one record that differ from (or, when inserted, make up) it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stored {
    pub(crate) values: BTreeMap<usize, Cell>,
    pub(crate) deleted: bool,
}

/// A row of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum RowKey {
    Generated(u64),
    Inserted(u64),
}

pub(crate) struct Table {
    pub(crate) def: ObjectDef,
    pub(crate) generated: u64,
    pub(crate) overlay: HashMap<u64, Stored>,
    pub(crate) inserted: BTreeMap<u64, Stored>,
    by_name: HashMap<String, usize>,
}

impl Table {
    fn new(def: ObjectDef, generated: u64) -> Table {
        let by_name = def
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.def.name.to_ascii_lowercase(), i))
            .collect();
        Table {
            def,
            generated,
            overlay: HashMap::new(),
            inserted: BTreeMap::new(),
            by_name,
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        self.def.name
    }

    /// The column called `name` (field names are case-insensitive).
    pub(crate) fn col(&self, name: &str) -> Option<usize> {
        self.by_name.get(&name.to_ascii_lowercase()).copied()
    }

    pub(crate) fn field(&self, col: usize) -> &FieldDef {
        &self.def.columns[col].def
    }

    pub(crate) fn columns(&self) -> &[Column] {
        &self.def.columns
    }

    fn push_column(&mut self, def: FieldDef) -> usize {
        let i = self.def.columns.len();
        self.by_name.insert(def.name.to_ascii_lowercase(), i);
        self.def.columns.push(Column { def, gen: None });
        i
    }

    /// One past the last scan position.
    pub(crate) fn scan_end(&self) -> u64 {
        self.generated + self.inserted.len() as u64
    }

    pub(crate) fn row_at(&self, pos: u64) -> RowKey {
        if pos < self.generated {
            RowKey::Generated(pos)
        } else {
            RowKey::Inserted(pos - self.generated)
        }
    }

    pub(crate) fn stored(&self, key: RowKey) -> Option<&Stored> {
        match key {
            RowKey::Generated(_) if self.overlay.is_empty() => None,
            RowKey::Generated(i) => self.overlay.get(&i),
            RowKey::Inserted(s) => self.inserted.get(&s),
        }
    }

    pub(crate) fn is_deleted(&self, key: RowKey) -> bool {
        self.stored(key).is_some_and(|s| s.deleted)
    }

    pub(crate) fn value(&self, gen: &Gen, key: RowKey, col: usize) -> Cell {
        let stored = self.stored(key);
        if self.def.columns[col].def.name == "IsDeleted" {
            return Cell::Bool(stored.is_some_and(|s| s.deleted));
        }
        if let Some(v) = stored.and_then(|s| s.values.get(&col)) {
            return v.clone();
        }
        match (key, self.def.columns[col].gen) {
            (RowKey::Generated(i), Some(g)) => g(gen, i),
            _ => Cell::Null,
        }
    }

    pub(crate) fn id_of(&self, gen: &Gen, key: RowKey) -> String {
        match key {
            RowKey::Generated(i) => gen.id(self.def.prefix, i),
            RowKey::Inserted(s) => ids::make(self.def.prefix, gen.pod, ids::INSERTED_BASE + s),
        }
    }

    /// The row with `id`, deleted or not.
    pub(crate) fn key_of(&self, gen: &Gen, id: &str) -> Option<RowKey> {
        let p = ids::parse(id)?;
        if p.prefix != self.def.prefix || p.pod != gen.pod || p.number == 0 {
            return None;
        }
        if p.number >= ids::INSERTED_BASE {
            let seq = p.number - ids::INSERTED_BASE;
            self.inserted.contains_key(&seq).then_some(RowKey::Inserted(seq))
        } else {
            (p.number <= self.generated).then_some(RowKey::Generated(p.number - 1))
        }
    }
}

/// What the user may do with an object (profile object permissions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectAccess {
    pub read: bool,
    pub create: bool,
    pub edit: bool,
    pub delete: bool,
}

impl ObjectAccess {
    /// Read, create, edit and delete.
    pub const FULL: ObjectAccess = ObjectAccess {
        read: true,
        create: true,
        edit: true,
        delete: true,
    };
    /// Read only.
    pub const READ: ObjectAccess = ObjectAccess {
        read: true,
        create: false,
        edit: false,
        delete: false,
    };
    /// No access at all: the object is "not supported" for the user.
    pub const NONE: ObjectAccess = ObjectAccess {
        read: false,
        create: false,
        edit: false,
        delete: false,
    };
}

/// Field-level security of one field for the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FieldAccess {
    pub(crate) read: bool,
    pub(crate) edit: bool,
}

pub(crate) struct Data {
    pub(crate) gen: Gen,
    pub(crate) tables: Vec<Table>,
    last_ms: i64,
    pub(crate) access: HashMap<Kind, ObjectAccess>,
    pub(crate) user_perms: BTreeMap<&'static str, bool>,
    /// Fields of Account (and others) created through Tooling: (kind, column).
    pub(crate) tooling_fields: Vec<(Kind, usize)>,
    /// Fields an admin took Read away from the user on (field-level
    /// security): (kind, column).
    pub(crate) hidden: HashSet<(Kind, usize)>,
}

impl Data {
    pub(crate) fn new(gen: Gen) -> Data {
        let tables = catalog::objects()
            .into_iter()
            .map(|def| {
                let n = gen.count(def.kind);
                Table::new(def, n)
            })
            .collect();
        let user_perms = catalog::USER_PERMISSIONS.iter().map(|p| (*p, true)).collect();
        let mut data = Data {
            last_ms: gen.anchor_ms(),
            gen,
            tables,
            access: HashMap::new(),
            user_perms,
            tooling_fields: Vec::new(),
            hidden: HashSet::new(),
        };
        data.seed_custom_field_records();
        data.mirror_permissions();
        data
    }

    /// Sets a user permission (`PermissionsApiEnabled`, …).
    pub(crate) fn set_permission(&mut self, name: &'static str, granted: bool) {
        self.user_perms.insert(name, granted);
        self.mirror_permissions();
    }

    /// `UserPermissionAccess` has one row: the user's permissions now.
    fn mirror_permissions(&mut self) {
        let at = self.last_ms;
        let perms: Vec<(&'static str, bool)> = self.user_perms.iter().map(|(k, v)| (*k, *v)).collect();
        let table = self.table_mut(Kind::UserPermissionAccess);
        let mut values = BTreeMap::new();
        for (name, granted) in perms {
            if let Some(c) = table.col(name) {
                values.insert(c, Cell::Bool(granted));
            }
        }
        if let Some(c) = table.col("LastCacheUpdate") {
            values.insert(c, Cell::DateTime(at));
        }
        table.overlay.insert(0, Stored { values, deleted: false });
    }

    /// The seeded custom fields, as Tooling `CustomField` rows.
    fn seed_custom_field_records(&mut self) {
        let seeded: Vec<(Kind, String, String, String)> = self
            .table(Kind::Account)
            .columns()
            .iter()
            .filter(|c| c.def.custom)
            .map(|c| {
                (
                    Kind::Account,
                    c.def.name.clone(),
                    c.def.label.clone(),
                    c.def.ty.api().to_owned(),
                )
            })
            .collect();
        let at = self.gen.anchor_ms() - 800 * 86_400_000;
        for (kind, name, label, ty) in seeded {
            let object = self.table(kind).name();
            let metadata = serde_json::json!({"label": label, "type": metadata_type(&ty)});
            self.insert_custom_field_record(object, &name, metadata, at);
        }
    }

    pub(crate) fn insert_custom_field_record(
        &mut self,
        object: &str,
        name: &str,
        metadata: serde_json::Value,
        at: i64,
    ) -> String {
        let table = self.table(Kind::CustomField);
        let cols = ["DeveloperName", "TableEnumOrId", "FullName", "Description", "Metadata"].map(|n| table.col(n));
        let developer = name.trim_end_matches("__c").to_owned();
        let description = metadata["description"].as_str().map(str::to_owned);
        let mut values = Vec::new();
        let cells = [
            Cell::text(developer),
            Cell::text(object.to_owned()),
            Cell::text(format!("{object}.{name}")),
            description.map_or(Cell::Null, Cell::text),
            Cell::Json(Box::new(metadata)),
        ];
        for (c, v) in cols.into_iter().zip(cells) {
            if let Some(c) = c {
                values.push((c, v));
            }
        }
        self.insert_at(Kind::CustomField, values, at)
    }

    pub(crate) fn table(&self, kind: Kind) -> &Table {
        &self.tables[kind as usize]
    }

    pub(crate) fn table_mut(&mut self, kind: Kind) -> &mut Table {
        &mut self.tables[kind as usize]
    }

    /// The object called `name`, case-insensitively.
    pub(crate) fn kind_named(&self, name: &str) -> Option<Kind> {
        self.tables
            .iter()
            .find(|t| t.def.name.eq_ignore_ascii_case(name))
            .map(|t| t.def.kind)
    }

    /// The object an id belongs to, by its key prefix.
    pub(crate) fn kind_of_id(&self, id: &str) -> Option<Kind> {
        let p = ids::parse(id)?;
        self.tables
            .iter()
            .find(|t| !t.def.prefix.is_empty() && t.def.prefix == p.prefix)
            .map(|t| t.def.kind)
    }

    /// The live or deleted record with `id`.
    pub(crate) fn find(&self, id: &str) -> Option<(Kind, RowKey)> {
        let kind = self.kind_of_id(id)?;
        Some((kind, self.table(kind).key_of(&self.gen, id)?))
    }

    pub(crate) fn object_access(&self, kind: Kind) -> ObjectAccess {
        let def = &self.table(kind).def;
        let set = self.access.get(&kind).copied().unwrap_or(ObjectAccess::FULL);
        ObjectAccess {
            read: set.read,
            create: set.create && def.createable,
            edit: set.edit && def.updateable,
            delete: set.delete && def.deletable,
        }
    }

    pub(crate) fn permission(&self, name: &str) -> bool {
        self.user_perms.get(name).copied().unwrap_or(false)
    }

    pub(crate) fn admin_id(&self) -> String {
        self.gen.user_id(0)
    }

    /// The stand-in's clock: wall time, but strictly increasing, so that a
    /// change is always newer than the one before (and than every
    /// generated record).
    pub(crate) fn stamp(&mut self) -> i64 {
        let now = Utc::now().timestamp_millis();
        self.last_ms = now.max(self.last_ms + 1);
        self.last_ms
    }

    /// Field-level security for every column of `kind`.
    pub(crate) fn field_access(&self, kind: Kind) -> Vec<FieldAccess> {
        let table = self.table(kind);
        let granted = self.granted_fields();
        table
            .columns()
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if self.hidden.contains(&(kind, i)) {
                    return FieldAccess {
                        read: false,
                        edit: false,
                    };
                }
                if !c.def.needs_fls {
                    return FieldAccess { read: true, edit: true };
                }
                let key = format!("{}.{}", table.name(), c.def.name).to_ascii_lowercase();
                let (read, edit) = granted.get(&key).copied().unwrap_or((false, false));
                FieldAccess {
                    read: read || edit,
                    edit,
                }
            })
            .collect()
    }

    /// `Object.Field` (lower case) → (read, edit) granted through permission
    /// sets assigned to the admin user.
    fn granted_fields(&self) -> HashMap<String, (bool, bool)> {
        let mut out = HashMap::new();
        let psa = self.table(Kind::PermissionSetAssignment);
        let fp = self.table(Kind::FieldPermissions);
        let admin = self.admin_id();
        let (Some(assignee), Some(set_col)) = (psa.col("AssigneeId"), psa.col("PermissionSetId")) else {
            return out;
        };
        let mut sets: Vec<String> = Vec::new();
        for (seq, s) in &psa.inserted {
            let key = RowKey::Inserted(*seq);
            if s.deleted || psa.value(&self.gen, key, assignee).as_str().map(ids::id15) != Some(ids::id15(&admin)) {
                continue;
            }
            if let Some(set) = psa.value(&self.gen, key, set_col).as_str() {
                sets.push(ids::id15(set).to_owned());
            }
        }
        let cols = ["ParentId", "Field", "PermissionsRead", "PermissionsEdit"].map(|n| fp.col(n));
        let [Some(parent), Some(field), Some(read), Some(edit)] = cols else {
            return out;
        };
        for (seq, s) in &fp.inserted {
            let key = RowKey::Inserted(*seq);
            if s.deleted {
                continue;
            }
            let in_set = fp
                .value(&self.gen, key, parent)
                .as_str()
                .is_some_and(|p| sets.iter().any(|s| s == ids::id15(p)));
            if !in_set {
                continue;
            }
            let Some(name) = fp.value(&self.gen, key, field).as_str().map(str::to_ascii_lowercase) else {
                continue;
            };
            let r = fp.value(&self.gen, key, read) == Cell::Bool(true);
            let e = fp.value(&self.gen, key, edit) == Cell::Bool(true);
            let entry = out.entry(name).or_insert((false, false));
            entry.0 |= r;
            entry.1 |= e;
        }
        out
    }

    /// Takes Read (and Edit) on `kind`'s column `col` away from the user, or
    /// gives it back. Only fields Salesforce lets an admin set field-level
    /// security on (describe's `permissionable`: nillable, not the Id) can
    /// be hidden; `false` for any other.
    pub(crate) fn set_hidden(&mut self, kind: Kind, col: usize, hidden: bool) -> bool {
        let def = self.table(kind).field(col);
        if !(def.nillable && def.ty != FieldType::Id) {
            return false;
        }
        if hidden {
            self.hidden.insert((kind, col));
        } else {
            self.hidden.remove(&(kind, col));
        }
        true
    }

    /// Adds a custom field to `kind`; `needs_fls` hides it until granted.
    pub(crate) fn add_field(&mut self, kind: Kind, def: FieldDef) -> usize {
        let needs_fls = def.needs_fls;
        let col = self.table_mut(kind).push_column(def);
        if needs_fls {
            self.tooling_fields.push((kind, col));
        }
        col
    }

    fn system_values(&self, kind: Kind, now: i64, creating: bool) -> Vec<(usize, Cell)> {
        let t = self.table(kind);
        let admin = self.admin_id();
        let mut out = Vec::new();
        let mut set = |name: &str, v: Cell| {
            if let Some(c) = t.col(name) {
                out.push((c, v));
            }
        };
        if creating {
            set("CreatedDate", Cell::DateTime(now));
            set("CreatedById", Cell::text(admin.clone()));
        }
        set("LastModifiedDate", Cell::DateTime(now));
        set("LastModifiedById", Cell::text(admin));
        set("SystemModstamp", Cell::DateTime(now));
        out
    }

    /// Creates a record with `values` (plus defaults and system fields),
    /// stamped now; returns its id.
    pub(crate) fn insert(&mut self, kind: Kind, values: Vec<(usize, Cell)>) -> String {
        let now = self.stamp();
        self.insert_at(kind, values, now)
    }

    fn insert_at(&mut self, kind: Kind, values: Vec<(usize, Cell)>, now: i64) -> String {
        let system = self.system_values(kind, now, true);
        let admin = self.admin_id();
        let gen_pod = self.gen.pod;
        let table = self.table_mut(kind);
        let seq = table.inserted.len() as u64;
        let id = ids::make(table.def.prefix, gen_pod, ids::INSERTED_BASE + seq);
        let mut stored = Stored::default();
        for (i, c) in table.def.columns.iter().enumerate() {
            if let Some(d) = &c.def.default {
                let v = match (c.def.name.as_str(), d) {
                    ("OwnerId", Cell::Null) => Cell::text(admin.clone()),
                    _ => d.clone(),
                };
                stored.values.insert(i, v);
            }
        }
        if let Some(c) = table.col("Id") {
            stored.values.insert(c, Cell::text(id.clone()));
        }
        for (c, v) in values.into_iter().chain(system) {
            stored.values.insert(c, v);
        }
        derive(&table.def, &mut stored.values);
        table.inserted.insert(seq, stored);
        id
    }

    /// Sets `values` on the record at `key`, stamped now.
    pub(crate) fn update(&mut self, kind: Kind, key: RowKey, values: Vec<(usize, Cell)>) {
        let now = self.stamp();
        let system = self.system_values(kind, now, false);
        let gen = self.gen.clone();
        let table = self.table_mut(kind);
        let mut current: BTreeMap<usize, Cell> = BTreeMap::new();
        for (c, v) in values.into_iter().chain(system) {
            current.insert(c, v);
        }
        // Derived fields (Name from First/Last, IsClosed from Stage) need
        // the whole record.
        let mut whole: BTreeMap<usize, Cell> = (0..table.def.columns.len())
            .map(|c| (c, table.value(&gen, key, c)))
            .collect();
        whole.extend(current.clone());
        derive(&table.def, &mut whole);
        let stored = match key {
            RowKey::Generated(i) => table.overlay.entry(i).or_default(),
            RowKey::Inserted(s) => table.inserted.entry(s).or_default(),
        };
        for (c, v) in whole {
            let changed = current.contains_key(&c) || is_derived(&table.def.columns[c].def);
            if changed {
                stored.values.insert(c, v);
            }
        }
    }

    /// Moves the record at `key` to the recycle bin.
    pub(crate) fn delete(&mut self, kind: Kind, key: RowKey) {
        self.update(kind, key, Vec::new());
        let table = self.table_mut(kind);
        let stored = match key {
            RowKey::Generated(i) => table.overlay.entry(i).or_default(),
            RowKey::Inserted(s) => table.inserted.entry(s).or_default(),
        };
        stored.deleted = true;
    }

    /// Current values of a record by field name, including custom fields.
    pub(crate) fn record_json(&self, kind: Kind, key: RowKey, visible_only: bool, prefix: &str) -> serde_json::Value {
        let table = self.table(kind);
        let access = self.field_access(kind);
        let mut map = serde_json::Map::new();
        let id = table.id_of(&self.gen, key);
        map.insert(
            "attributes".into(),
            serde_json::json!({"type": table.name(), "url": format!("{prefix}/sobjects/{}/{id}", table.name())}),
        );
        for (i, c) in table.columns().iter().enumerate() {
            if visible_only && !access[i].read {
                continue;
            }
            map.insert(c.def.name.clone(), table.value(&self.gen, key, i).to_json());
        }
        serde_json::Value::Object(map)
    }
}

fn is_derived(def: &FieldDef) -> bool {
    matches!(
        def.name.as_str(),
        "Name" | "IsClosed" | "IsWon" | "Probability" | "ForecastCategoryName" | "AccountId"
    )
}

/// Fields Salesforce computes from others: Contact `Name`, Opportunity
/// `IsClosed`/`IsWon`, Task `IsClosed`.
fn derive(def: &ObjectDef, values: &mut BTreeMap<usize, Cell>) {
    let col = |n: &str| def.columns.iter().position(|c| c.def.name == n);
    let get =
        |values: &BTreeMap<usize, Cell>, n: &str| col(n).and_then(|c| values.get(&c)).cloned().unwrap_or(Cell::Null);
    match def.kind {
        Kind::Contact => {
            let first = get(values, "FirstName");
            let last = get(values, "LastName");
            let name = match (first.as_str(), last.as_str()) {
                (Some(f), Some(l)) => format!("{f} {l}"),
                (None, Some(l)) => l.to_owned(),
                (Some(f), None) => f.to_owned(),
                (None, None) => String::new(),
            };
            if let Some(c) = col("Name") {
                values.insert(c, Cell::text(name));
            }
        }
        Kind::Opportunity => {
            if let Some(stage) = get(values, "StageName").as_str().map(str::to_owned) {
                if let Some(c) = col("IsClosed") {
                    values.insert(c, Cell::Bool(stage.starts_with("Closed")));
                }
                if let Some(c) = col("IsWon") {
                    values.insert(c, Cell::Bool(stage == "Closed Won"));
                }
            }
        }
        Kind::Task => {
            let closed = get(values, "Status").as_str() == Some("Completed");
            if let Some(c) = col("IsClosed") {
                values.insert(c, Cell::Bool(closed));
            }
            // AccountId follows WhatId when it is an account.
            if let (Some(c), Some(what)) = (col("AccountId"), get(values, "WhatId").as_str().map(str::to_owned)) {
                if what.starts_with("001") {
                    values.insert(c, Cell::text(what));
                }
            }
        }
        Kind::Event => {
            if let (Some(c), Some(what)) = (col("AccountId"), get(values, "WhatId").as_str().map(str::to_owned)) {
                if what.starts_with("001") {
                    values.insert(c, Cell::text(what));
                }
            }
        }
        _ => {}
    }
}

/// The Metadata API type name of a describe type (`Number` for double, …).
pub(crate) fn metadata_type(describe_type: &str) -> &'static str {
    match describe_type {
        "double" | "int" => "Number",
        "picklist" => "Picklist",
        "date" => "Date",
        "datetime" => "DateTime",
        "boolean" => "Checkbox",
        "currency" => "Currency",
        "percent" => "Percent",
        "email" => "Email",
        "url" => "Url",
        "textarea" => "LongTextArea",
        _ => "Text",
    }
}

/// The describe type of a Metadata API field type, or `None` if the
/// stand-in does not support it.
pub(crate) fn field_type_of(metadata_type: &str) -> Option<FieldType> {
    Some(match metadata_type {
        "Number" => FieldType::Double,
        "Picklist" => FieldType::Picklist,
        "Date" => FieldType::Date,
        "DateTime" => FieldType::DateTime,
        "Checkbox" => FieldType::Boolean,
        "Currency" => FieldType::Currency,
        "Percent" => FieldType::Percent,
        "Email" => FieldType::Email,
        "Url" => FieldType::Url,
        "Phone" => FieldType::Phone,
        "Text" => FieldType::String,
        "TextArea" | "LongTextArea" => FieldType::TextArea,
        _ => return None,
    })
}
