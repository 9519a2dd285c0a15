//! Identifiers: table names, and quoting them for SQL (`"` doubled inside `"..."`), for Bucardo's
//! CLI (raw `schema.table`, one argv word) and for bash (single quotes). Quoting happens here and
//! nowhere else.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A table as `schema.name`, both parts raw catalog names (no quoting).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

impl TableName {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        TableName {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// `"schema"."name"` for SQL.
    pub fn sql(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    /// [`TableName::sql`] that quotes only when it is written into a string: for messages that
    /// are built far more often than the name appears in them.
    pub fn quoted(&self) -> Quoted<'_> {
        Quoted(self)
    }

    /// `schema.name`, raw, as Bucardo's CLI matches it against `nspname||'.'||relname`.
    pub fn raw(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// Parses one entry of `--tables`: `schema.table`, `"Mixed Case"."Order Items"`, or a bare
    /// `table` (schema `public`). Double quotes keep dots and case; unquoted parts are taken as
    /// written (PostgreSQL would fold them to lower case; operators type catalog names here).
    pub fn parse(input: &str) -> Result<TableName, String> {
        let input = input.trim();
        if input.is_empty() {
            return Err("empty table name".into());
        }
        let parts = split_dotted(input)?;
        match parts.as_slice() {
            [name] => Ok(TableName::new("public", name.clone())),
            [schema, name] => Ok(TableName::new(schema.clone(), name.clone())),
            _ => Err(format!(
                "{input:?} has more than one dot outside quotes; write it as schema.table or \"sch.ema\".\"ta.ble\""
            )),
        }
    }
}

/// A table name that formats as [`TableName::sql`].
pub struct Quoted<'a>(&'a TableName);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.sql())
    }
}

/// For people: bare when plain, else quoted as SQL. Control characters (a newline, an escape
/// sequence that would repaint a terminal) are shown escaped, `\n` or `\u{1b}`, so a name always
/// prints on one line and as itself; [`TableName::sql`] is the exact form.
impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if needs_quotes(&self.schema) || needs_quotes(&self.name) {
            let sql = self.sql();
            if sql.contains(char::is_control) {
                for c in sql.chars() {
                    if c.is_control() {
                        write!(f, "{}", c.escape_default())?;
                    } else {
                        write!(f, "{c}")?;
                    }
                }
                Ok(())
            } else {
                f.write_str(&sql)
            }
        } else {
            write!(f, "{}.{}", self.schema, self.name)
        }
    }
}

fn split_dotted(input: &str) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = input.chars().peekable();
    let mut quoted_part = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if cur.is_empty() && !quoted_part => {
                quoted_part = true;
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            cur.push('"');
                        }
                        Some('"') => break,
                        Some(ch) => cur.push(ch),
                        None => return Err(format!("{input:?}: unterminated double quote")),
                    }
                }
            }
            '.' => {
                if cur.is_empty() {
                    return Err(format!("{input:?}: empty name part"));
                }
                parts.push(std::mem::take(&mut cur));
                quoted_part = false;
            }
            _ if quoted_part => return Err(format!("{input:?}: text after a closing quote")),
            _ => cur.push(c),
        }
    }
    if cur.is_empty() {
        return Err(format!("{input:?}: empty name part"));
    }
    parts.push(cur);
    Ok(parts)
}

/// Parses a comma-separated `--tables` list. Commas inside double quotes belong to the name.
pub fn parse_table_list(input: &str) -> Result<Vec<TableName>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    for c in input.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                cur.push(c);
            }
            ',' if !in_quotes => {
                if !cur.trim().is_empty() {
                    out.push(TableName::parse(&cur)?);
                }
                cur.clear();
            }
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(TableName::parse(&cur)?);
    }
    if out.is_empty() {
        return Err("no table named; give --tables schema.table[,...] or --tables all".into());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn needs_quotes(s: &str) -> bool {
    s.is_empty()
        || !s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        || s.starts_with(|c: char| c.is_ascii_digit())
}

/// SQL identifier quoting: always quoted, `"` doubled.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// SQL string literal quoting, for the few places a literal cannot be a `$n` parameter (the
/// emitted script). `'` doubled; backslashes are literal under standard_conforming_strings.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// One bash word: left bare when it is plainly safe, single-quoted otherwise.
pub fn shell_word(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r#"'\''"#))
    }
}

/// Why Bucardo's CLI cannot take this table, if it cannot. `add_items_to_goat_table` accepts only
/// `^([-\w ]+)\.([-\w ]+)$` (Perl's Unicode `\w`, after decoding argv with the locale's codeset),
/// an argument with `=` is read as `key=value`, `*` and `%` as wildcards, and a word starting with
/// `-` as an option. Accepted here: letters (any script), ASCII digits, `_`, `-` and spaces, which
/// is a little stricter than `\w` (no combining marks, no non-ASCII digits).
pub fn bucardo_cli_refusal(t: &TableName) -> Option<String> {
    for part in [&t.schema, &t.name] {
        if part.is_empty() {
            return Some(format!("{t}: Bucardo's CLI cannot take an empty name"));
        }
        if part.starts_with('-') {
            return Some(format!(
                "{t}: Bucardo's CLI would read a name starting with '-' as an option"
            ));
        }
        if let Some(bad) = part
            .chars()
            .find(|c| !(c.is_alphabetic() || c.is_ascii_digit() || matches!(c, '_' | '-' | ' ')))
        {
            return Some(format!(
                "{t}: Bucardo's CLI only accepts letters, digits, '_', '-' and spaces in names, not {bad:?}"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_quoting_doubles_quotes() {
        let t = TableName::new("Sales", "Order Items");
        assert_eq!(t.sql(), r#""Sales"."Order Items""#);
        assert_eq!(quote_ident(r#"we"ird"#), r#""we""ird""#);
        assert_eq!(t.raw(), "Sales.Order Items");
        assert_eq!(t.to_string(), r#""Sales"."Order Items""#);
        assert_eq!(TableName::new("public", "foo").to_string(), "public.foo");
    }

    #[test]
    fn parses_table_lists() {
        let l = parse_table_list(r#"public.foo, bar,"Sales"."Order Items","a,b"."c.d""#).unwrap();
        assert_eq!(
            l,
            vec![
                TableName::new("Sales", "Order Items"),
                TableName::new("a,b", "c.d"),
                TableName::new("public", "bar"),
                TableName::new("public", "foo"),
            ]
        );
        assert!(parse_table_list("a.b.c").is_err());
        assert!(parse_table_list(" , ").is_err());
        assert!(parse_table_list(r#""unterminated"#).is_err());
        assert!(parse_table_list(".x").is_err());
    }

    #[test]
    fn shell_words_are_quoted() {
        assert_eq!(shell_word("public.foo"), "public.foo");
        assert_eq!(shell_word("Sales.Order Items"), "'Sales.Order Items'");
        assert_eq!(shell_word("it's"), r#"'it'\''s'"#);
        assert_eq!(shell_word("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn bucardo_refuses_odd_names() {
        assert!(bucardo_cli_refusal(&TableName::new("Sales", "Order Items")).is_none());
        assert!(bucardo_cli_refusal(&TableName::new("public", "we\"ird")).is_some());
        assert!(bucardo_cli_refusal(&TableName::new("public", "-x")).is_some());
        assert!(bucardo_cli_refusal(&TableName::new("public", "a;b")).is_some());
    }

    #[test]
    fn adversarial_names_round_trip_through_sql_quoting() {
        let names = crate::sandbox::data::adversarial_names();
        for schema in ["public", "Sales", "we\"ird", "a.b", "with space"] {
            for name in &names {
                let t = TableName::new(schema, name.as_str());
                let sql = t.sql();
                assert_eq!(parse_table_list(&sql), Ok(vec![t.clone()]), "{sql}");
                assert_eq!(TableName::parse(&sql), Ok(t.clone()), "{sql}");
                // Displayed names parse back too (the review and error messages show these),
                // unless they hold control characters, which display escaped.
                let shown = t.to_string();
                assert!(!shown.contains(char::is_control), "{shown:?}");
                if !sql.contains(char::is_control) {
                    assert_eq!(TableName::parse(&shown), Ok(t.clone()), "{t}");
                }
            }
        }
        // Every name in one list, comma-separated: the list parser keeps each one whole.
        let all: Vec<TableName> = names
            .iter()
            .map(|n| TableName::new("public", n.as_str()))
            .collect();
        let joined = all.iter().map(TableName::sql).collect::<Vec<_>>().join(",");
        let mut want = all.clone();
        want.sort();
        want.dedup();
        assert_eq!(parse_table_list(&joined), Ok(want));
    }

    #[test]
    fn sql_quoting_is_exact() {
        for name in crate::sandbox::data::adversarial_names() {
            let q = quote_ident(&name);
            assert!(q.starts_with('"') && q.ends_with('"'));
            let inner = &q[1..q.len() - 1];
            // Every quote inside is doubled: removing the pairs leaves none.
            assert!(!inner.replace("\"\"", "").contains('"'), "{q}");
            assert_eq!(inner.replace("\"\"", "\""), name);
            let l = quote_literal(&name);
            assert!(!l[1..l.len() - 1].replace("''", "").contains('\''), "{l}");
            assert_eq!(l[1..l.len() - 1].replace("''", "'"), name);
        }
    }

    #[test]
    fn shell_words_survive_bash_exactly() {
        let mut words = crate::sandbox::data::adversarial_names();
        words.extend(
            [
                "", "'\\''", "a'b'c", "!!", "~", "~root", "$'x'", "*.rs", "{a,b}", "a\\",
            ]
            .map(String::from),
        );
        for w in &words {
            let script = format!("printf %s {}", shell_word(w));
            let out = std::process::Command::new("bash")
                .arg("-c")
                .arg(&script)
                .output()
                .expect("bash runs");
            assert!(out.status.success(), "{script}");
            assert_eq!(String::from_utf8(out.stdout).unwrap(), *w, "{script}");
        }
        // Bare words only when nothing in them is special to bash.
        for w in &words {
            let s = shell_word(w);
            if !s.starts_with('\'') {
                assert!(
                    s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c)),
                    "{s}"
                );
            }
        }
    }

    #[test]
    fn bucardo_refusal_matches_its_cli_pattern() {
        let accepted = [
            "plain",
            "with space",
            "UPPER",
            "MixedCase",
            "ünïcødé",
            "表格",
            "Ünï Cödé",
            "select",
            "user",
            "9starts_with_digit",
            "a-b",
            "trailing-",
        ];
        for n in accepted {
            assert_eq!(
                bucardo_cli_refusal(&TableName::new("public", n)),
                None,
                "{n}"
            );
            assert_eq!(bucardo_cli_refusal(&TableName::new(n, "t")), None, "{n}");
        }
        assert_eq!(
            bucardo_cli_refusal(&TableName::new("public", "a".repeat(63))),
            None
        );
        for n in crate::sandbox::data::adversarial_names() {
            let t = TableName::new("public", n.as_str());
            let ok = !n.is_empty()
                && !n.starts_with('-')
                && n.chars()
                    .all(|c| c.is_alphabetic() || c.is_ascii_digit() || "_- ".contains(c));
            match bucardo_cli_refusal(&t) {
                None => assert!(ok, "{n:?} must be refused"),
                Some(why) => {
                    assert!(!ok, "{n:?} was refused: {why}");
                    assert!(
                        why.starts_with(&t.to_string()) && why.contains("Bucardo"),
                        "{why}"
                    );
                    assert!(!why.contains('\n'), "a refusal is one line: {why:?}");
                }
            }
        }
        let why = bucardo_cli_refusal(&TableName::new("public", "semi;colon")).unwrap();
        assert!(why.contains("not ';'"), "{why}");
        let why = bucardo_cli_refusal(&TableName::new("-s", "t")).unwrap();
        assert!(why.contains("as an option"), "{why}");
        assert!(bucardo_cli_refusal(&TableName::new("public", "tbl²")).is_some());
        assert!(bucardo_cli_refusal(&TableName::new("public", "new\nline")).is_some());
    }
}
