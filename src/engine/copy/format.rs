//! Which COPY format each table travels in, and the column facts the choice needs from both
//! servers.
//!
//! Binary COPY is cheaper for both servers (no text rendering on HERE, no parsing on THERE), so
//! it is the default wherever it is safe. It is safe for a table when HERE and THERE run the same
//! major version, THERE's copied columns have the same names and types, in the same order, as
//! HERE's, and every type involved (domains resolved, array elements included) has send/receive
//! functions and a binary form that does not carry a server-local OID or an extension's private
//! layout: no composite types, no arrays of non-built-in types, no `reg*` types, no base types
//! defined by extensions. Anything else goes as text, which THERE parses like `psql` would.

use crate::engine::conn::Side;
use crate::engine::error::EngineError;
use crate::engine::ident::TableName;
use std::collections::HashMap;
use std::sync::Arc;
use tokio_postgres::Client;

/// The COPY format of one table (or range of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Format {
    Text,
    Binary,
}

impl Format {
    pub fn copy_option(self) -> &'static str {
        match self {
            Format::Text => "",
            Format::Binary => " (FORMAT binary)",
        }
    }

    /// The options of a COPY FROM that writes its rows frozen ([`super::freeze`]).
    pub fn frozen_copy_option(self) -> &'static str {
        match self {
            Format::Text => " (FREEZE)",
            Format::Binary => " (FORMAT binary, FREEZE)",
        }
    }
}

/// What the operator (or the benchmark) asks for; `Auto` means binary wherever it is safe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FormatChoice {
    #[default]
    Auto,
    Text,
}

/// One copied column as a server sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnType {
    pub name: String,
    /// `format_type(atttypid, atttypmod)`.
    pub type_sql: Arc<str>,
    /// `format_type(atttypid, NULL)`: the type without modifiers, for casting literals.
    pub base_sql: Arc<str>,
    /// No collation, so `<` means the same in every query (safe to split on).
    pub collation_free: bool,
    pub binary_ok: bool,
}

/// The copied (non-generated) columns of each table, in order, by its place in the list asked
/// for; `None` for a table the server lacks.
pub type ColumnMap = Vec<Option<Vec<ColumnType>>>;

const COLUMNS_SQL: &str = r#"
WITH RECURSIVE cols AS (
    SELECT n.i, a.attnum, a.attname, a.atttypid AS typ,
           format_type(a.atttypid, a.atttypmod) AS type_sql,
           format_type(a.atttypid, NULL) AS base_sql
      FROM unnest($1::text[]) WITH ORDINALITY AS n(name, i)
      JOIN pg_attribute a ON a.attrelid = to_regclass(n.name)
     WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
), walk AS (
    SELECT i, attnum, typ, 0 AS depth FROM cols
    UNION ALL
    SELECT w.i, w.attnum,
           CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.typelem END, w.depth + 1
      FROM walk w JOIN pg_type t ON t.oid = w.typ
     WHERE w.depth < 16 AND (t.typtype = 'd' OR (t.typelem <> 0 AND t.typlen = -1))
), binary_ok AS (
    -- Grouped once: a subquery per column scanned all of walk for each one, and 10,000 tables
    -- (40,000 columns) took a minute.
    SELECT w.i, w.attnum, bool_and(
                   t.typsend::oid <> 0 AND t.typreceive::oid <> 0
                   AND t.typtype NOT IN ('c', 'p')
                   AND (t.oid < 16384 OR t.typtype IN ('d', 'e'))
                   AND NOT (t.oid < 16384 AND t.typname LIKE 'reg%')
                   AND NOT (t.typelem <> 0 AND t.typlen = -1 AND t.typelem >= 16384)) AS ok
      FROM walk w JOIN pg_type t ON t.oid = w.typ
     GROUP BY w.i, w.attnum
)
SELECT c.i::int, c.attname::text, c.type_sql, c.base_sql,
       (SELECT t.typcollation = 0 FROM pg_type t WHERE t.oid = c.typ) AS collation_free,
       coalesce(b.ok, false) AS binary_ok
  FROM cols c LEFT JOIN binary_ok b ON b.i = c.i AND b.attnum = c.attnum
 ORDER BY c.i, c.attnum
"#;

/// Reads the copied columns of `tables` on one server; tables it lacks are absent from the map.
pub async fn columns(
    client: &Client,
    side: Side,
    tables: &[TableName],
) -> Result<ColumnMap, EngineError> {
    use futures_util::TryStreamExt;
    let names: Vec<String> = tables.iter().map(TableName::sql).collect();
    let err =
        |e: tokio_postgres::Error| EngineError::sql(side, "reading column types for the copy", &e);
    // Streamed, and each type's name kept once: at 10,000 tables both servers' rows and
    // columns were 20 MB of the copy's peak (measured, heaptrack).
    let rows = client
        .query_raw(
            COLUMNS_SQL,
            std::iter::once(&names as &(dyn tokio_postgres::types::ToSql + Sync)),
        )
        .await
        .map_err(err)?;
    futures_util::pin_mut!(rows);
    let mut types: HashMap<String, Arc<str>> = HashMap::new();
    let mut intern = |s: String| -> Arc<str> {
        types
            .entry(s)
            .or_insert_with_key(|k| Arc::from(k.as_str()))
            .clone()
    };
    let mut out: ColumnMap = vec![None; tables.len()];
    while let Some(r) = rows.try_next().await.map_err(err)? {
        let i: i32 = r.get(0);
        let Some(slot) = usize::try_from(i - 1).ok().and_then(|i| out.get_mut(i)) else {
            continue;
        };
        slot.get_or_insert_with(Vec::new).push(ColumnType {
            name: r.get(1),
            type_sql: intern(r.get(2)),
            base_sql: intern(r.get(3)),
            collation_free: r.get::<_, Option<bool>>(4).unwrap_or(false),
            binary_ok: r.get(5),
        });
    }
    Ok(out)
}

/// The major version (`server_version_num / 10000`).
pub async fn major_version(client: &Client, side: Side) -> Result<i32, EngineError> {
    let v: String = client
        .query_one("SELECT current_setting('server_version_num')", &[])
        .await
        .map_err(|e| EngineError::sql(side, "reading the server version", &e))?
        .get(0);
    Ok(v.parse::<i32>().unwrap_or(0) / 10000)
}

/// The format for one table, with the reason when it is text.
pub fn choose(
    choice: FormatChoice,
    same_major: bool,
    here: Option<&[ColumnType]>,
    there: Option<&[ColumnType]>,
) -> (Format, Option<&'static str>) {
    if choice == FormatChoice::Text {
        return (Format::Text, Some("text requested"));
    }
    if !same_major {
        return (
            Format::Text,
            Some("HERE and THERE run different major versions"),
        );
    }
    let (Some(h), Some(t)) = (here, there) else {
        return (Format::Text, Some("table missing on one side"));
    };
    let same_shape = h.len() == t.len()
        && h.iter()
            .zip(t)
            .all(|(a, b)| a.name == b.name && a.type_sql == b.type_sql);
    if !same_shape {
        return (Format::Text, Some("THERE's columns differ from HERE's"));
    }
    if !h.iter().chain(t).all(|c| c.binary_ok) {
        return (
            Format::Text,
            Some("a column type has no portable binary form"),
        );
    }
    (Format::Binary, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: &str, ok: bool) -> ColumnType {
        ColumnType {
            name: name.into(),
            type_sql: ty.into(),
            base_sql: ty.into(),
            collation_free: true,
            binary_ok: ok,
        }
    }

    #[test]
    fn binary_only_when_both_sides_agree_and_every_type_is_portable() {
        let h = vec![col("id", "bigint", true), col("v", "jsonb", true)];
        assert_eq!(
            choose(FormatChoice::Auto, true, Some(&h), Some(&h)).0,
            Format::Binary
        );
        assert_eq!(
            choose(FormatChoice::Text, true, Some(&h), Some(&h)).0,
            Format::Text
        );
        assert_eq!(
            choose(FormatChoice::Auto, false, Some(&h), Some(&h)).0,
            Format::Text
        );
        let t = vec![col("id", "integer", true), col("v", "jsonb", true)];
        assert_eq!(
            choose(FormatChoice::Auto, true, Some(&h), Some(&t)).0,
            Format::Text
        );
        let t = vec![col("id", "bigint", true)];
        assert_eq!(
            choose(FormatChoice::Auto, true, Some(&h), Some(&t)).0,
            Format::Text
        );
        let c = vec![col("id", "bigint", true), col("v", "mood[]", false)];
        assert_eq!(
            choose(FormatChoice::Auto, true, Some(&c), Some(&c)).0,
            Format::Text
        );
        assert_eq!(
            choose(FormatChoice::Auto, true, Some(&h), None).0,
            Format::Text
        );
    }
}
