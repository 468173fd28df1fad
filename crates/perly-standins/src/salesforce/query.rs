//! Running SOQL against an org: [`plan`] resolves a parsed query's names
//! against the catalog and the user's access (unknown or hidden fields are
//! `INVALID_FIELD`, unknown or unreadable objects `INVALID_TYPE`, with
//! Salesforce's messages), then [`scan`] walks a table from a scan position,
//! evaluating the filter row by row without materialising anything, and
//! [`record_json`] / [`write_csv_row`] render a row for REST or Bulk.
//!
//! Only `ORDER BY` needs the matching rows at once ([`sorted`]); it keeps
//! row keys and sort values, never rendered rows.

use std::cmp::Ordering;

use serde_json::{json, Map, Value};

use super::catalog::{Api, Cell, FieldType, Kind};
use super::ids;
use super::org::{Data, RowKey};
use super::soql::{self, Cond, Literal, Op, Path, Query, SelectItem};

/// A query the org refuses: HTTP 400 `[{"message", "errorCode"}]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueryError {
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

/// A field reached from the queried object: each step but the last is a
/// reference column followed to the next object.
#[derive(Debug, Clone)]
pub(crate) struct FieldRef {
    steps: Vec<(Kind, usize)>,
    /// Canonical relationship names along the way (`Owner`).
    rels: Vec<String>,
    /// Canonical field name at the end (`Email`).
    name: String,
    ty: FieldType,
}

impl FieldRef {
    /// `Owner.Email`, with Salesforce's spelling.
    pub(crate) fn dotted(&self) -> String {
        let mut parts = self.rels.clone();
        parts.push(self.name.clone());
        parts.join(".")
    }
}

#[derive(Debug, Clone)]
enum PCond {
    And(Box<PCond>, Box<PCond>),
    Or(Box<PCond>, Box<PCond>),
    Not(Box<PCond>),
    Cmp(FieldRef, Op, Literal),
    In(FieldRef, bool, Vec<Literal>),
    Like(FieldRef, String),
}

/// A query resolved against the org.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) kind: Kind,
    pub(crate) object: &'static str,
    pub(crate) columns: Vec<FieldRef>,
    pub(crate) count_only: bool,
    filter: Option<PCond>,
    order: Vec<(FieldRef, bool, bool)>,
    pub(crate) limit: Option<u64>,
    pub(crate) offset: Option<u64>,
    pub(crate) include_deleted: bool,
    /// Selects `FullName` or `Metadata` of a Tooling object.
    pub(crate) selects_metadata: bool,
}

impl Plan {
    pub(crate) fn ordered(&self) -> bool {
        !self.order.is_empty()
    }
}

fn malformed(text: &str, pos: usize, detail: &str) -> QueryError {
    QueryError {
        code: "MALFORMED_QUERY",
        message: soql::render_error(text, pos, detail),
    }
}

fn invalid_field(text: &str, pos: usize, detail: &str) -> QueryError {
    QueryError {
        code: "INVALID_FIELD",
        message: soql::render_error(text, pos, detail),
    }
}

/// Parses and resolves `text`. `tooling` picks the Tooling API's objects.
pub(crate) fn plan(data: &Data, text: &str, tooling: bool, include_deleted: bool) -> Result<Plan, QueryError> {
    let q: Query = soql::parse(text).map_err(|e| malformed(text, e.pos, &e.detail))?;
    let kind = data
        .kind_named(&q.from)
        .filter(|k| {
            let api = data.table(*k).def.api;
            let served = if tooling { api != Api::Rest } else { api != Api::Tooling };
            served && data.object_access(*k).read
        })
        .ok_or_else(|| QueryError {
            code: "INVALID_TYPE",
            message: soql::render_error(
                text,
                q.from_pos,
                &format!(
                    "sObject type '{}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names.",
                    q.from
                ),
            ),
        })?;
    let mut columns = Vec::new();
    let mut count_only = false;
    for item in &q.select {
        match item {
            SelectItem::Count => count_only = true,
            SelectItem::Field(p) => columns.push(resolve(data, kind, p, text)?),
        }
    }
    if count_only && !columns.is_empty() {
        return Err(malformed(
            text,
            8,
            "COUNT() must be the only element in the SELECT list.",
        ));
    }
    let filter = q
        .filter
        .as_ref()
        .map(|c| resolve_cond(data, kind, c, text))
        .transpose()?;
    let order = q
        .order_by
        .iter()
        .map(|o| Ok((resolve(data, kind, &o.path, text)?, o.desc, o.nulls_last)))
        .collect::<Result<Vec<_>, QueryError>>()?;
    let selects_metadata = tooling
        && columns
            .iter()
            .any(|c| c.rels.is_empty() && matches!(c.name.as_str(), "FullName" | "Metadata"));
    Ok(Plan {
        kind,
        object: data.table(kind).name(),
        columns,
        count_only,
        filter,
        order,
        limit: q.limit,
        offset: q.offset,
        include_deleted,
        selects_metadata,
    })
}

fn resolve(data: &Data, kind: Kind, path: &Path, text: &str) -> Result<FieldRef, QueryError> {
    let mut steps = Vec::new();
    let mut rels = Vec::new();
    let mut current = kind;
    let (last, parents) = path
        .parts
        .split_last()
        .ok_or_else(|| malformed(text, path.pos, "unexpected token: '<EOF>'"))?;
    for rel in parents {
        let table = data.table(current);
        let access = data.field_access(current);
        let found = table.columns().iter().enumerate().find_map(|(i, c)| {
            let named = c
                .def
                .relationship_name
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(rel));
            let target = c.def.reference_to.iter().find_map(|t| data.kind_named(t));
            (named && access[i].read)
                .then_some(target.map(|t| (i, t, c.def.relationship_name.clone().unwrap_or_default())))
        });
        let Some(Some((col, target, canonical))) =
            found.filter(|f| f.as_ref().is_some_and(|(_, t, _)| data.object_access(*t).read))
        else {
            return Err(invalid_field(
                text,
                path.pos,
                &format!(
                    "Didn't understand relationship '{rel}' in field path. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names."
                ),
            ));
        };
        steps.push((current, col));
        rels.push(canonical);
        current = target;
    }
    let table = data.table(current);
    let access = data.field_access(current);
    let Some(col) = table.col(last).filter(|c| access[*c].read) else {
        return Err(invalid_field(
            text,
            path.pos,
            &format!(
                "No such column '{last}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.",
                table.name()
            ),
        ));
    };
    steps.push((current, col));
    let def = table.field(col);
    Ok(FieldRef {
        steps,
        rels,
        name: def.name.clone(),
        ty: def.ty,
    })
}

/// The SOAP type name Salesforce's filter errors use.
fn type_word(ty: FieldType) -> &'static str {
    match ty {
        FieldType::Boolean => "boolean",
        FieldType::Date => "date",
        FieldType::DateTime => "dateTime",
        FieldType::Int => "int",
        FieldType::Currency => "currency",
        FieldType::Double | FieldType::Percent => "double",
        FieldType::Id | FieldType::Reference => "id",
        _ => "string",
    }
}

fn check_literal(f: &FieldRef, lit: &Literal, text: &str, pos: usize) -> Result<(), QueryError> {
    let ok = match (f.ty, lit) {
        (_, Literal::Null) => true,
        (FieldType::Boolean, Literal::Bool(_)) => true,
        (FieldType::Date, Literal::Date(_)) => true,
        (FieldType::DateTime, Literal::DateTime(_)) => true,
        (t, Literal::Num(_)) if t.is_number() => true,
        (t, Literal::Str(_)) if t.is_text() => true,
        _ => false,
    };
    if ok {
        return Ok(());
    }
    let quoted = if f.ty.is_text() {
        "should be enclosed in quotes"
    } else {
        "should not be enclosed in quotes"
    };
    Err(invalid_field(
        text,
        pos,
        &format!(
            "value of filter criterion for field '{}' must be of type {} and {quoted}",
            f.name,
            type_word(f.ty)
        ),
    ))
}

fn filterable(data: &Data, f: &FieldRef, text: &str, pos: usize) -> Result<(), QueryError> {
    let (k, c) = f.steps[f.steps.len() - 1];
    if data.table(k).field(c).filterable {
        Ok(())
    } else {
        Err(invalid_field(
            text,
            pos,
            &format!("field '{}' can not be filtered in a query call", f.name),
        ))
    }
}

fn resolve_cond(data: &Data, kind: Kind, c: &Cond, text: &str) -> Result<PCond, QueryError> {
    Ok(match c {
        Cond::And(a, b) => PCond::And(
            Box::new(resolve_cond(data, kind, a, text)?),
            Box::new(resolve_cond(data, kind, b, text)?),
        ),
        Cond::Or(a, b) => PCond::Or(
            Box::new(resolve_cond(data, kind, a, text)?),
            Box::new(resolve_cond(data, kind, b, text)?),
        ),
        Cond::Not(a) => PCond::Not(Box::new(resolve_cond(data, kind, a, text)?)),
        Cond::Cmp { path, op, value } => {
            let f = resolve(data, kind, path, text)?;
            filterable(data, &f, text, path.pos)?;
            check_literal(&f, value, text, path.pos)?;
            PCond::Cmp(f, *op, value.clone())
        }
        Cond::In { path, negated, values } => {
            let f = resolve(data, kind, path, text)?;
            filterable(data, &f, text, path.pos)?;
            for v in values {
                check_literal(&f, v, text, path.pos)?;
            }
            PCond::In(f, *negated, values.clone())
        }
        Cond::Like { path, pattern } => {
            let f = resolve(data, kind, path, text)?;
            filterable(data, &f, text, path.pos)?;
            if !f.ty.is_text() {
                return Err(invalid_field(
                    text,
                    path.pos,
                    &format!("invalid operator on {} field: {}", type_word(f.ty), f.name),
                ));
            }
            PCond::Like(f, pattern.clone())
        }
    })
}

/// The value of `f` for the row at `key`, following references.
pub(crate) fn eval(data: &Data, key: RowKey, f: &FieldRef) -> Cell {
    let mut key = key;
    let last = f.steps.len() - 1;
    for (i, (kind, col)) in f.steps.iter().enumerate() {
        let v = data.table(*kind).value(&data.gen, key, *col);
        if i == last {
            return v;
        }
        let next = f.steps[i + 1].0;
        match v.as_str().and_then(|id| data.table(next).key_of(&data.gen, id)) {
            Some(k) => key = k,
            None => return Cell::Null,
        }
    }
    Cell::Null
}

fn compare(cell: &Cell, lit: &Literal, ty: FieldType) -> Option<Ordering> {
    match (cell, lit) {
        (Cell::Text(s), Literal::Str(l)) if matches!(ty, FieldType::Id | FieldType::Reference) => {
            Some(ids::id15(s).cmp(ids::id15(l)))
        }
        (Cell::Text(s), Literal::Str(l)) => Some(s.to_lowercase().cmp(&l.to_lowercase())),
        // Counts and amounts are far below 2^53.
        #[allow(clippy::cast_precision_loss)]
        (Cell::Int(a), Literal::Num(b)) => (*a as f64).partial_cmp(b),
        (Cell::Num(a), Literal::Num(b)) => a.partial_cmp(b),
        (Cell::Bool(a), Literal::Bool(b)) => Some(a.cmp(b)),
        (Cell::Date(a), Literal::Date(b)) => Some(a.cmp(b)),
        (Cell::DateTime(a), Literal::DateTime(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

fn test_op(cell: &Cell, op: Op, lit: &Literal, ty: FieldType) -> bool {
    if *lit == Literal::Null {
        return match op {
            Op::Eq => cell.is_null(),
            Op::Ne => !cell.is_null(),
            _ => false,
        };
    }
    let ord = compare(cell, lit, ty);
    match op {
        Op::Eq => ord == Some(Ordering::Equal),
        Op::Ne => ord != Some(Ordering::Equal),
        Op::Lt => ord == Some(Ordering::Less),
        Op::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
        Op::Gt => ord == Some(Ordering::Greater),
        Op::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
    }
}

fn matches(data: &Data, key: RowKey, c: &PCond) -> bool {
    match c {
        PCond::And(a, b) => matches(data, key, a) && matches(data, key, b),
        PCond::Or(a, b) => matches(data, key, a) || matches(data, key, b),
        PCond::Not(a) => !matches(data, key, a),
        PCond::Cmp(f, op, lit) => test_op(&eval(data, key, f), *op, lit, f.ty),
        PCond::In(f, negated, lits) => {
            let v = eval(data, key, f);
            let found = lits.iter().any(|l| test_op(&v, Op::Eq, l, f.ty));
            found != *negated
        }
        PCond::Like(f, pattern) => eval(data, key, f).as_str().is_some_and(|s| soql::like(s, pattern)),
    }
}

/// Whether the row at `key` is part of the result (deletion and filter).
pub(crate) fn selected(data: &Data, plan: &Plan, key: RowKey) -> bool {
    let table = data.table(plan.kind);
    if !plan.include_deleted && table.is_deleted(key) {
        return false;
    }
    plan.filter.as_ref().is_none_or(|c| matches(data, key, c))
}

/// Walks scan positions `from..` until `max_rows` rows matched or
/// `max_positions` positions were looked at; returns the matches and the
/// next position (the table's end when done).
pub(crate) fn scan(data: &Data, plan: &Plan, from: u64, max_rows: u64, max_positions: u64) -> (Vec<RowKey>, u64) {
    let table = data.table(plan.kind);
    let end = table.scan_end();
    let mut out = Vec::new();
    let mut pos = from;
    let stop = from.saturating_add(max_positions).min(end);
    while pos < stop && (out.len() as u64) < max_rows {
        let key = table.row_at(pos);
        pos += 1;
        if selected(data, plan, key) {
            out.push(key);
        }
    }
    (out, pos)
}

/// Every matching row at once, in `ORDER BY` order (or scan order).
pub(crate) fn sorted(data: &Data, plan: &Plan) -> Vec<RowKey> {
    let (keys, _) = scan(data, plan, 0, u64::MAX, u64::MAX);
    if plan.order.is_empty() {
        return keys;
    }
    let mut keyed: Vec<(Vec<Cell>, RowKey)> = keys
        .into_iter()
        .map(|k| (plan.order.iter().map(|(f, _, _)| eval(data, k, f)).collect(), k))
        .collect();
    keyed.sort_by(|a, b| {
        for (i, (_, desc, nulls_last)) in plan.order.iter().enumerate() {
            let ord = order_cells(&a.0[i], &b.0[i], *nulls_last);
            let ord = if *desc && !(a.0[i].is_null() || b.0[i].is_null()) {
                ord.reverse()
            } else {
                ord
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    });
    keyed.into_iter().map(|(_, k)| k).collect()
}

fn order_cells(a: &Cell, b: &Cell, nulls_last: bool) -> Ordering {
    let null_side = if nulls_last { Ordering::Greater } else { Ordering::Less };
    match (a, b) {
        (Cell::Null, Cell::Null) => Ordering::Equal,
        (Cell::Null, _) => null_side,
        (_, Cell::Null) => null_side.reverse(),
        (Cell::Text(x), Cell::Text(y)) => x.to_lowercase().cmp(&y.to_lowercase()),
        (Cell::Int(x), Cell::Int(y)) => x.cmp(y),
        (Cell::Num(x), Cell::Num(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
        (Cell::Bool(x), Cell::Bool(y)) => x.cmp(y),
        (Cell::Date(x), Cell::Date(y)) => x.cmp(y),
        (Cell::DateTime(x), Cell::DateTime(y)) => x.cmp(y),
        _ => Ordering::Equal,
    }
}

fn attributes(data: &Data, kind: Kind, key: RowKey, prefix: &str) -> Value {
    let table = data.table(kind);
    if table.def.prefix.is_empty() {
        return json!({"type": table.name()});
    }
    let id = table.id_of(&data.gen, key);
    json!({"type": table.name(), "url": format!("{prefix}/sobjects/{}/{id}", table.name())})
}

/// A REST query record: `attributes`, then the selected fields in order,
/// parent fields nested under their relationship name (`null` when the
/// reference is empty). `prefix` is `/services/data/vXX.X` (plus
/// `/tooling` for Tooling queries).
pub(crate) fn record_json(data: &Data, plan: &Plan, key: RowKey, prefix: &str) -> Value {
    let mut root = Map::new();
    root.insert("attributes".into(), attributes(data, plan.kind, key, prefix));
    for f in &plan.columns {
        insert_path(data, &mut root, f, 0, key, prefix);
    }
    Value::Object(root)
}

fn insert_path(data: &Data, obj: &mut Map<String, Value>, f: &FieldRef, depth: usize, key: RowKey, prefix: &str) {
    let (kind, col) = f.steps[depth];
    if depth + 1 == f.steps.len() {
        obj.insert(f.name.clone(), data.table(kind).value(&data.gen, key, col).to_json());
        return;
    }
    let rel = f.rels[depth].clone();
    let next = f.steps[depth + 1].0;
    let target = data
        .table(kind)
        .value(&data.gen, key, col)
        .as_str()
        .and_then(|id| data.table(next).key_of(&data.gen, id));
    let Some(next_key) = target else {
        obj.entry(rel).or_insert(Value::Null);
        return;
    };
    let entry = obj.entry(rel).or_insert(Value::Null);
    if !entry.is_object() {
        let mut m = Map::new();
        m.insert("attributes".into(), attributes(data, next, next_key, prefix));
        *entry = Value::Object(m);
    }
    if let Value::Object(m) = entry {
        insert_path(data, m, f, depth + 1, next_key, prefix);
    }
}

/// The Bulk CSV header: selected fields with Salesforce's spelling.
pub(crate) fn csv_header(plan: &Plan) -> Vec<String> {
    plan.columns.iter().map(FieldRef::dotted).collect()
}

/// Appends one quoted field, doubling inner quotes.
pub(crate) fn push_quoted(out: &mut String, text: &str) {
    out.push('"');
    if text.contains('"') {
        out.push_str(&text.replace('"', "\"\""));
    } else {
        out.push_str(text);
    }
    out.push('"');
}

/// One Bulk CSV row: every value quoted, nulls empty, booleans
/// `true`/`false`, dateTimes `…T03:04:05.000Z`.
pub(crate) fn write_csv_row(
    data: &Data,
    plan: &Plan,
    key: RowKey,
    delimiter: char,
    line_ending: &str,
    out: &mut String,
    scratch: &mut String,
) {
    for (i, f) in plan.columns.iter().enumerate() {
        if i > 0 {
            out.push(delimiter);
        }
        scratch.clear();
        eval(data, key, f).write_csv(scratch);
        push_quoted(out, scratch);
    }
    out.push_str(line_ending);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::salesforce::generate::Gen;
    use crate::salesforce::OrgSpec;

    fn data() -> Data {
        Data::new(Gen::new(
            OrgSpec {
                accounts: 30,
                ..OrgSpec::default()
            },
            false,
        ))
    }

    fn run(data: &Data, q: &str) -> Result<Vec<Value>, QueryError> {
        let plan = plan(data, q, false, false)?;
        Ok(sorted(data, &plan)
            .into_iter()
            .map(|k| record_json(data, &plan, k, "/services/data/v59.0"))
            .collect())
    }

    #[test]
    fn filters_and_parent_fields_evaluate() {
        let d = data();
        let rows = run(
            &d,
            "SELECT Id, Name, Owner.Email, Parent.Name FROM Account WHERE ParentId != null ORDER BY Name",
        )
        .expect("runs");
        assert_eq!(rows.len(), 9, "accounts 7,8,9,17,… have parents");
        for r in &rows {
            assert!(
                r["Owner"]["Email"]
                    .as_str()
                    .is_some_and(|e| e.ends_with("@acme-cs.example.com")),
                "{r}"
            );
            assert_eq!(r["Owner"]["attributes"]["type"], "User");
            assert!(r["Parent"]["Name"].is_string());
        }
        let names: Vec<&str> = rows.iter().filter_map(|r| r["Name"].as_str()).collect();
        let mut sorted_names = names.clone();
        sorted_names.sort_by_key(|n| n.to_lowercase());
        assert_eq!(names, sorted_names);
        let rows = run(&d, "SELECT Id, Parent.Name FROM Account WHERE ParentId = null LIMIT 1").expect("runs");
        assert_eq!(rows[0]["Parent"], Value::Null);
    }

    #[test]
    fn ids_compare_in_either_length() {
        let d = data();
        let id = d.gen.account_id(3);
        for form in [id.clone(), id[..15].to_owned()] {
            let rows = run(&d, &format!("SELECT Id FROM Account WHERE Id = '{form}'")).expect("runs");
            assert_eq!(rows.len(), 1);
            assert_eq!(rows[0]["Id"], id.as_str());
        }
        let rows = run(&d, &format!("SELECT Id FROM Contact WHERE AccountId IN ('{id}')")).expect("runs");
        assert_eq!(rows.len(), 2, "two contacts per account");
    }

    #[test]
    fn unknown_fields_objects_and_types_get_salesforce_errors() {
        let d = data();
        let e = run(&d, "SELECT Id, Foo FROM Account").expect_err("bad field");
        assert_eq!(e.code, "INVALID_FIELD");
        assert!(
            e.message.contains("No such column 'Foo' on entity 'Account'"),
            "{}",
            e.message
        );
        assert!(e.message.contains("ERROR at Row:1:Column:12"), "{}", e.message);
        let e = run(&d, "SELECT Id FROM Widget__c").expect_err("bad object");
        assert_eq!(e.code, "INVALID_TYPE");
        assert!(
            e.message.contains("sObject type 'Widget__c' is not supported."),
            "{}",
            e.message
        );
        let e = run(&d, "SELECT Id FROM Account WHERE SystemModstamp > '2024-01-01'").expect_err("quoted date");
        assert!(
            e.message
                .contains("must be of type dateTime and should not be enclosed in quotes"),
            "{}",
            e.message
        );
        let e = run(&d, "SELECT Id FROM Account WHERE").expect_err("syntax");
        assert_eq!(e.code, "MALFORMED_QUERY");
        let e = run(&d, "SELECT Id, Foo.Name FROM Account").expect_err("bad relationship");
        assert!(
            e.message.contains("Didn't understand relationship 'Foo'"),
            "{}",
            e.message
        );
    }

    #[test]
    fn csv_rows_quote_everything_and_render_types() {
        let d = data();
        let plan = plan(
            &d,
            "SELECT Id, IsDeleted, CreatedDate, Owner.Email, Description FROM Account LIMIT 1",
            false,
            false,
        )
        .expect("plan");
        assert_eq!(
            csv_header(&plan),
            ["Id", "IsDeleted", "CreatedDate", "Owner.Email", "Description"]
        );
        let (keys, _) = scan(&d, &plan, 0, 1, u64::MAX);
        let mut out = String::new();
        write_csv_row(&d, &plan, keys[0], ',', "\n", &mut out, &mut String::new());
        let cells: Vec<&str> = out.trim_end().split(',').collect();
        assert_eq!(cells[0], format!("\"{}\"", d.gen.account_id(0)));
        assert_eq!(cells[1], "\"false\"");
        assert!(cells[2].ends_with(".000Z\""), "{out}");
        assert_eq!(cells[4], "\"\"");
        let mut q = String::new();
        push_quoted(&mut q, "say \"hi\"");
        assert_eq!(q, "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn deleted_rows_only_show_in_query_all() {
        let mut d = data();
        let key = d
            .table(Kind::Account)
            .key_of(&d.gen, &d.gen.account_id(0))
            .expect("key");
        d.delete(Kind::Account, key);
        let live = plan(&d, "SELECT Id FROM Account", false, false).expect("plan");
        let all = plan(&d, "SELECT Id, IsDeleted FROM Account", false, true).expect("plan");
        assert_eq!(sorted(&d, &live).len(), 29);
        let rows = sorted(&d, &all);
        assert_eq!(rows.len(), 30);
        assert_eq!(record_json(&d, &all, rows[0], "")["IsDeleted"], true);
    }
}
