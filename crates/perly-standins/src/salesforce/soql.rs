//! A small SOQL parser: the subset Perly and common clients send.
//!
//! `SELECT` a field list (dotted parent paths such as `Owner.Email`, or
//! `COUNT()`), `FROM` one object, an optional `WHERE` (`AND`, `OR`, `NOT`,
//! parentheses; `= != <> < <= > >=` against strings, numbers, `true`,
//! `false`, `null`, date and dateTime literals; `IN (…)`, `NOT IN (…)`,
//! `LIKE`), `ORDER BY` fields with `ASC`/`DESC` and `NULLS FIRST|LAST`,
//! `LIMIT` and `OFFSET`. Keywords are case-insensitive, as in SOQL.
//!
//! Parsing knows nothing of objects or fields: [`super::query`] resolves the
//! names and reports `INVALID_FIELD` / `INVALID_TYPE`. Errors carry the
//! 1-based column so that messages read as Salesforce's do
//! (`ERROR at Row:1:Column:N`, see [`render_error`]). Not supported (and
//! answered `MALFORMED_QUERY`): sub-queries, `GROUP BY`, aggregate functions
//! other than `COUNT()`, date functions and relative date literals such as
//! `LAST_N_DAYS:30`, `TYPEOF`, `WITH`, `FOR`.

use chrono::{DateTime, NaiveDate, Utc};

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Query {
    pub(crate) select: Vec<SelectItem>,
    pub(crate) from: String,
    /// Column of the object name, for `INVALID_TYPE`.
    pub(crate) from_pos: usize,
    pub(crate) filter: Option<Cond>,
    pub(crate) order_by: Vec<OrderItem>,
    pub(crate) limit: Option<u64>,
    pub(crate) offset: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SelectItem {
    Field(Path),
    /// `COUNT()`
    Count,
}

/// A field path as written: `Name`, `Owner.Email`, `Account.Owner.Name`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Path {
    pub(crate) parts: Vec<String>,
    pub(crate) pos: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cond {
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Not(Box<Cond>),
    Cmp {
        path: Path,
        op: Op,
        value: Literal,
    },
    In {
        path: Path,
        negated: bool,
        values: Vec<Literal>,
    },
    Like {
        path: Path,
        pattern: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Date(NaiveDate),
    /// Milliseconds since the epoch, UTC.
    DateTime(i64),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OrderItem {
    pub(crate) path: Path,
    pub(crate) desc: bool,
    /// SOQL's default: nulls first ascending, last descending.
    pub(crate) nulls_last: bool,
}

/// A syntax error at a 1-based column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub(crate) pos: usize,
    pub(crate) detail: String,
}

/// Salesforce's message layout for query errors: the query, a caret under
/// the column, `ERROR at Row:1:Column:N`, then the detail.
pub(crate) fn render_error(query: &str, pos: usize, detail: &str) -> String {
    let caret = " ".repeat(pos.saturating_sub(1));
    format!("\n{query}\n{caret}^\nERROR at Row:1:Column:{pos}\n{detail}")
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Date(NaiveDate),
    DateTime(i64),
    Punct(&'static str),
    Eof,
}

impl Tok {
    fn shown(&self) -> String {
        match self {
            Tok::Ident(s) => s.clone(),
            Tok::Str(s) => format!("'{s}'"),
            Tok::Num(n) => n.to_string(),
            Tok::Date(d) => d.to_string(),
            Tok::DateTime(ms) => ms.to_string(),
            Tok::Punct(p) => (*p).to_owned(),
            Tok::Eof => "<EOF>".to_owned(),
        }
    }
}

fn lex(text: &str) -> Result<Vec<(Tok, usize)>, SyntaxError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let pos = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(chars[start..i].iter().collect()), pos));
            continue;
        }
        if c == '\'' {
            i += 1;
            let mut s = String::new();
            loop {
                let Some(&ch) = chars.get(i) else {
                    return Err(SyntaxError {
                        pos,
                        detail: format!("line 1:{pos} no viable alternative at character {q}", q = "'"),
                    });
                };
                i += 1;
                match ch {
                    '\'' => break,
                    '\\' => {
                        let escaped = chars.get(i).copied().unwrap_or('\\');
                        i += 1;
                        s.push(match escaped {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            other => other,
                        });
                    }
                    other => s.push(other),
                }
            }
            out.push((Tok::Str(s), pos));
            continue;
        }
        if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '.' | ':' | '-' | '+')) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            out.push((
                literal_token(&word).ok_or_else(|| SyntaxError {
                    pos,
                    detail: format!("unexpected token: '{word}'"),
                })?,
                pos,
            ));
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let punct: Option<&'static str> = match two.as_str() {
            "!=" => Some("!="),
            "<>" => Some("<>"),
            "<=" => Some("<="),
            ">=" => Some(">="),
            _ => None,
        };
        if let Some(p) = punct {
            out.push((Tok::Punct(p), pos));
            i += 2;
            continue;
        }
        let one: Option<&'static str> = match c {
            '(' => Some("("),
            ')' => Some(")"),
            ',' => Some(","),
            '.' => Some("."),
            '=' => Some("="),
            '<' => Some("<"),
            '>' => Some(">"),
            _ => None,
        };
        match one {
            Some(p) => {
                out.push((Tok::Punct(p), pos));
                i += 1;
            }
            None => {
                return Err(SyntaxError {
                    pos,
                    detail: format!("unexpected token: '{c}'"),
                })
            }
        }
    }
    out.push((Tok::Eof, chars.len() + 1));
    Ok(out)
}

/// A number, a date (`2024-01-01`) or a dateTime (`2024-01-01T00:00:00Z`,
/// `…T00:00:00.000Z`, `…T00:00:00.000+0000`, `…T00:00:00+01:00`).
fn literal_token(word: &str) -> Option<Tok> {
    if let Ok(n) = word.parse::<f64>() {
        return Some(Tok::Num(n));
    }
    if let Ok(d) = NaiveDate::parse_from_str(word, "%Y-%m-%d") {
        return Some(Tok::Date(d));
    }
    parse_datetime(word).map(Tok::DateTime)
}

/// Milliseconds since the epoch of a SOQL or REST dateTime.
pub(crate) fn parse_datetime(word: &str) -> Option<i64> {
    let normalized = match word.strip_suffix('Z') {
        Some(rest) => format!("{rest}+0000"),
        None => word.to_owned(),
    };
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M:%S%z",
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M:%S%:z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(&normalized, format) {
            return Some(t.with_timezone(&Utc).timestamp_millis());
        }
    }
    None
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    at: usize,
}

fn is_kw(tok: &Tok, kw: &str) -> bool {
    matches!(tok, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
}

const RESERVED: &[&str] = &[
    "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "LIMIT", "OFFSET", "ASC", "DESC",
    "NULLS", "GROUP", "HAVING", "WITH", "FOR", "USING",
];

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.at.min(self.toks.len() - 1)].0
    }

    fn pos(&self) -> usize {
        self.toks[self.at.min(self.toks.len() - 1)].1
    }

    fn bump(&mut self) -> (Tok, usize) {
        let t = self.toks[self.at.min(self.toks.len() - 1)].clone();
        self.at += 1;
        t
    }

    fn unexpected<T>(&self) -> Result<T, SyntaxError> {
        Err(SyntaxError {
            pos: self.pos(),
            detail: format!("unexpected token: '{}'", self.peek().shown()),
        })
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if is_kw(self.peek(), kw) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), SyntaxError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            self.unexpected()
        }
    }

    fn eat_punct(&mut self, p: &str) -> bool {
        if matches!(self.peek(), Tok::Punct(q) if *q == p) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect_punct(&mut self, p: &str) -> Result<(), SyntaxError> {
        if self.eat_punct(p) {
            Ok(())
        } else {
            self.unexpected()
        }
    }

    fn ident(&mut self) -> Result<(String, usize), SyntaxError> {
        match self.peek().clone() {
            Tok::Ident(s) if !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(&s)) => {
                let pos = self.pos();
                self.at += 1;
                Ok((s, pos))
            }
            _ => self.unexpected(),
        }
    }

    fn path(&mut self) -> Result<Path, SyntaxError> {
        let (first, pos) = self.ident()?;
        let mut parts = vec![first];
        while self.eat_punct(".") {
            parts.push(self.ident()?.0);
        }
        Ok(Path { parts, pos })
    }

    fn query(&mut self) -> Result<Query, SyntaxError> {
        self.expect_kw("SELECT")?;
        let mut select = Vec::new();
        loop {
            if is_kw(self.peek(), "COUNT") && matches!(self.toks.get(self.at + 1), Some((Tok::Punct("("), _))) {
                self.at += 2;
                if !self.eat_punct(")") {
                    return Err(SyntaxError {
                        pos: self.pos(),
                        detail: "Only COUNT() without a field is supported by this stand-in".into(),
                    });
                }
                select.push(SelectItem::Count);
            } else if matches!(self.peek(), Tok::Punct("(")) {
                return Err(SyntaxError {
                    pos: self.pos(),
                    detail: "unexpected token: '(' (sub-queries are not supported by this stand-in)".into(),
                });
            } else {
                select.push(SelectItem::Field(self.path()?));
            }
            if !self.eat_punct(",") {
                break;
            }
        }
        self.expect_kw("FROM")?;
        let (from, from_pos) = self.ident()?;
        let filter = if self.eat_kw("WHERE") { Some(self.or()?) } else { None };
        let mut order_by = Vec::new();
        if self.eat_kw("ORDER") {
            self.expect_kw("BY")?;
            loop {
                let path = self.path()?;
                let desc = if self.eat_kw("DESC") {
                    true
                } else {
                    self.eat_kw("ASC");
                    false
                };
                let mut nulls_last = desc;
                if self.eat_kw("NULLS") {
                    if self.eat_kw("LAST") {
                        nulls_last = true;
                    } else {
                        self.expect_kw("FIRST")?;
                        nulls_last = false;
                    }
                }
                order_by.push(OrderItem { path, desc, nulls_last });
                if !self.eat_punct(",") {
                    break;
                }
            }
        }
        let limit = if self.eat_kw("LIMIT") {
            Some(self.count()?)
        } else {
            None
        };
        let offset = if self.eat_kw("OFFSET") {
            Some(self.count()?)
        } else {
            None
        };
        if *self.peek() != Tok::Eof {
            return self.unexpected();
        }
        Ok(Query {
            select,
            from,
            from_pos,
            filter,
            order_by,
            limit,
            offset,
        })
    }

    fn count(&mut self) -> Result<u64, SyntaxError> {
        match self.peek().clone() {
            Tok::Num(n) if n >= 0.0 && n.fract() == 0.0 => {
                self.at += 1;
                // Checked non-negative and integral above.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Ok(n as u64)
            }
            _ => self.unexpected(),
        }
    }

    fn or(&mut self) -> Result<Cond, SyntaxError> {
        let mut left = self.and()?;
        while self.eat_kw("OR") {
            let right = self.and()?;
            left = Cond::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Cond, SyntaxError> {
        let mut left = self.not()?;
        while self.eat_kw("AND") {
            let right = self.not()?;
            left = Cond::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Cond, SyntaxError> {
        if self.eat_kw("NOT") {
            return Ok(Cond::Not(Box::new(self.not()?)));
        }
        if self.eat_punct("(") {
            let inner = self.or()?;
            self.expect_punct(")")?;
            return Ok(inner);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Cond, SyntaxError> {
        let path = self.path()?;
        if self.eat_kw("LIKE") {
            return match self.bump() {
                (Tok::Str(pattern), _) => Ok(Cond::Like { path, pattern }),
                _ => {
                    self.at -= 1;
                    self.unexpected()
                }
            };
        }
        let negated =
            if is_kw(self.peek(), "NOT") && matches!(self.toks.get(self.at + 1), Some((t, _)) if is_kw(t, "IN")) {
                self.at += 1;
                true
            } else {
                false
            };
        if self.eat_kw("IN") {
            self.expect_punct("(")?;
            let mut values = vec![self.literal()?];
            while self.eat_punct(",") {
                values.push(self.literal()?);
            }
            self.expect_punct(")")?;
            return Ok(Cond::In { path, negated, values });
        }
        let op = match self.peek() {
            Tok::Punct("=") => Op::Eq,
            Tok::Punct("!=") | Tok::Punct("<>") => Op::Ne,
            Tok::Punct("<") => Op::Lt,
            Tok::Punct("<=") => Op::Le,
            Tok::Punct(">") => Op::Gt,
            Tok::Punct(">=") => Op::Ge,
            _ => return self.unexpected(),
        };
        self.at += 1;
        let value = self.literal()?;
        Ok(Cond::Cmp { path, op, value })
    }

    fn literal(&mut self) -> Result<Literal, SyntaxError> {
        let lit = match self.peek().clone() {
            Tok::Str(s) => Literal::Str(s),
            Tok::Num(n) => Literal::Num(n),
            Tok::Date(d) => Literal::Date(d),
            Tok::DateTime(t) => Literal::DateTime(t),
            Tok::Ident(s) if s.eq_ignore_ascii_case("true") => Literal::Bool(true),
            Tok::Ident(s) if s.eq_ignore_ascii_case("false") => Literal::Bool(false),
            Tok::Ident(s) if s.eq_ignore_ascii_case("null") => Literal::Null,
            _ => return self.unexpected(),
        };
        self.at += 1;
        Ok(lit)
    }
}

/// Parses `text`; `Err` is a `MALFORMED_QUERY`.
pub(crate) fn parse(text: &str) -> Result<Query, SyntaxError> {
    let toks = lex(text)?;
    Parser { toks, at: 0 }.query()
}

/// SOQL `LIKE`: `%` any run, `_` one character, case-insensitive.
pub(crate) fn like(value: &str, pattern: &str) -> bool {
    fn go(v: &[char], p: &[char]) -> bool {
        match p.split_first() {
            None => v.is_empty(),
            Some(('%', rest)) => (0..=v.len()).any(|i| go(&v[i..], rest)),
            Some(('_', rest)) => !v.is_empty() && go(&v[1..], rest),
            Some((c, rest)) => v.first().is_some_and(|x| x.to_lowercase().eq(c.to_lowercase())) && go(&v[1..], rest),
        }
    }
    let v: Vec<char> = value.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    go(&v, &p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str, pos: usize) -> Path {
        Path {
            parts: s.split('.').map(str::to_owned).collect(),
            pos,
        }
    }

    #[test]
    fn fields_parents_and_clauses_parse() {
        let q = parse("select Id, Owner.Email FROM Account WHERE Name = 'A\\'s' ORDER BY Name DESC LIMIT 10 OFFSET 5")
            .expect("parses");
        assert_eq!(
            q.select,
            vec![
                SelectItem::Field(path("Id", 8)),
                SelectItem::Field(path("Owner.Email", 12))
            ]
        );
        assert_eq!(q.from, "Account");
        assert_eq!(q.from_pos, 29);
        assert_eq!(
            q.filter,
            Some(Cond::Cmp {
                path: path("Name", 43),
                op: Op::Eq,
                value: Literal::Str("A's".into())
            })
        );
        assert_eq!(q.order_by.len(), 1);
        assert!(q.order_by[0].desc && q.order_by[0].nulls_last);
        assert_eq!((q.limit, q.offset), (Some(10), Some(5)));
    }

    #[test]
    fn and_binds_tighter_than_or_and_parentheses_regroup() {
        let q = parse("SELECT Id FROM Account WHERE A = 1 OR B = 2 AND C = 3").expect("parses");
        assert!(matches!(q.filter, Some(Cond::Or(_, ref r)) if matches!(**r, Cond::And(_, _))));
        let q = parse("SELECT Id FROM Account WHERE (A = 1 OR B = 2) AND NOT C = 3").expect("parses");
        assert!(
            matches!(q.filter, Some(Cond::And(ref l, ref r)) if matches!(**l, Cond::Or(_, _)) && matches!(**r, Cond::Not(_)))
        );
    }

    #[test]
    fn literals_of_every_kind_parse() {
        let q = parse(
            "SELECT Id FROM Task WHERE SystemModstamp >= 2024-06-01T10:00:00.000Z AND CreatedDate < 2024-01-01T00:00:00.000+0000 \
             AND ActivityDate = 2024-01-01 AND IsClosed = false AND WhoId != null AND Amount > -1.5 \
             AND Status IN ('Completed', 'Deferred') AND Type NOT IN ('Call') AND Subject LIKE 'Call%'",
        )
        .expect("parses");
        let text = format!("{:?}", q.filter);
        assert!(text.contains(&format!("DateTime({})", 1_717_236_000_000_i64)), "{text}");
        assert!(text.contains("DateTime(1704067200000)"), "{text}");
        assert!(text.contains("Date(2024-01-01)"), "{text}");
        assert!(
            text.contains("Bool(false)") && text.contains("Null") && text.contains("Num(-1.5)"),
            "{text}"
        );
        assert!(text.contains("negated: true") && text.contains("Like"), "{text}");
    }

    #[test]
    fn count_is_a_select_item() {
        let q = parse("SELECT COUNT() FROM Contact").expect("parses");
        assert_eq!(q.select, vec![SelectItem::Count]);
    }

    #[test]
    fn syntax_errors_point_at_the_column() {
        let e = parse("SELECT Id FROMM Account").expect_err("bad");
        assert_eq!(e.pos, 11);
        assert_eq!(e.detail, "unexpected token: 'FROMM'");
        let e = parse("SELECT Id FROM Account WHERE").expect_err("bad");
        assert_eq!(e.detail, "unexpected token: '<EOF>'");
        let e = parse("SELECT Id FROM Account WHERE Name = 'x").expect_err("bad");
        assert_eq!(e.pos, 37);
        assert!(parse("SELECT (SELECT Id FROM Contacts) FROM Account").is_err());
        assert_eq!(
            render_error("SELECT Id FROMM Account", 16, "unexpected token: 'Account'"),
            "\nSELECT Id FROMM Account\n               ^\nERROR at Row:1:Column:16\nunexpected token: 'Account'"
        );
    }

    #[test]
    fn like_matches_as_soql_does() {
        assert!(like("Call with ACME", "call%"));
        assert!(like("abc", "a_c"));
        assert!(!like("abcd", "a_c"));
        assert!(like("x%y", "%"));
    }
}
