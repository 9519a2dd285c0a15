//! Comparing HERE and THERE: a row count and an order-independent checksum of every row's text
//! (the sum of a 64-bit digest of each row, see [`Digest`]), so no sort and no big aggregate
//! string is needed.
//! A table with a key is compared in chunks, key ranges walked in the key's order (keyset), each
//! in a short snapshot on each side; rows whose key changed meanwhile are left out of the chunk
//! (their keys come from Bucardo's delta tables) and, like the rows of a chunk that differed,
//! compared again by key later ([`rows_by_key`]). The orchestration is in
//! `engine::exec::verification`.

use crate::engine::catalog::TableInfo;
use crate::engine::conn::Side;
use crate::engine::error::EngineError;
use crate::engine::ident::{quote_ident, quote_literal, TableName};
use tokio_postgres::Client;

/// The copied columns of `t` as `t."a", t."b"`, for `ROW(...)`. Generated columns are left out:
/// they follow from the rest.
fn row_columns(t: &TableInfo) -> String {
    t.copy_columns()
        .iter()
        .map(|c| format!("t.{}", quote_ident(&c.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `count:sum` of the first 64 bits of each row's md5: order-independent, no sort needed.
fn count_and_sum(cols: &str) -> String {
    format!("count(*) || ':' || coalesce(sum(('x' || substr(md5(ROW({cols})::text), 1, 16))::bit(64)::bigint::numeric), 0)")
}

/// Count and checksum of a table.
pub fn checksum_sql(t: &TableInfo) -> String {
    let cols = row_columns(t);
    format!(
        "SELECT {} FROM ONLY {} t",
        count_and_sum(&cols),
        t.name.sql()
    )
}

/// Sets both sessions up alike so that every value prints the same way on both sides.
pub async fn prepare_session(client: &Client, side: Side) -> Result<(), EngineError> {
    client
        .batch_execute(
            "SET extra_float_digits = 3; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; \
             SET TimeZone = 'UTC'; SET bytea_output = 'hex'; SET statement_timeout = 0",
        )
        .await
        .map_err(|e| EngineError::sql(side, "preparing the verify session", &e))
}

/// How far before the verification's start a change still counts as "in flight": a transaction's
/// delta carries its start time, and one that began just before may commit just after.
pub const IN_FLIGHT_MARGIN_S: i64 = 5;

/// Does this database carry Bucardo's delta bookkeeping?
pub async fn has_deltas(client: &Client, side: Side) -> Result<bool, EngineError> {
    client
        .query_one(
            "SELECT to_regclass('bucardo.bucardo_delta_names') IS NOT NULL",
            &[],
        )
        .await
        .map(|r| r.get(0))
        .map_err(|e| EngineError::sql(side, "looking for Bucardo's delta tables", &e))
}

/// How thoroughly `verify` compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyMode {
    /// Row counts (a chunk whose counts differ is compared by key presence).
    Fast,
    /// Row counts and a checksum of every row.
    Checksum,
    /// Checksums, and the differing rows themselves are listed.
    Deep,
}

/// A key's value: the text of each key column, in the key's order.
pub type Key = Vec<String>;

/// `(7)`, `(1,2)`: a key for people.
pub fn display_key(k: &Key) -> String {
    format!("({})", k.join(","))
}

/// Each key column, quoted, with its type (`format_type`) to cast text back to.
fn key_types(t: &TableInfo) -> Vec<(String, String)> {
    t.key_columns
        .iter()
        .map(|k| {
            let ty = t
                .columns
                .iter()
                .find(|c| &c.name == k)
                .map(|c| c.type_name.clone())
                .unwrap_or_else(|| "text".into());
            (quote_ident(k), ty)
        })
        .collect()
}

/// `a."k1", a."k2"`.
fn key_list(t: &TableInfo, alias: &str) -> String {
    key_types(t)
        .iter()
        .map(|(k, _)| format!("{alias}.{k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `a."k1"::text, a."k2"::text`.
fn key_texts(t: &TableInfo, alias: &str) -> String {
    key_types(t)
        .iter()
        .map(|(k, _)| format!("{alias}.{k}::text"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `('1'::integer, 'x'::text)`: a key as a typed row, to compare the key columns with.
fn key_literal(t: &TableInfo, key: &Key) -> String {
    let vals: Vec<String> = key_types(t)
        .iter()
        .zip(key)
        .map(|((_, ty), v)| format!("{}::{ty}", quote_literal(v)))
        .collect();
    format!("({})", vals.join(", "))
}

/// The keys passed as one `text[]` parameter per key column, from `$first` on, as a relation
/// `(k1, k2, ..., hit)` of the key's types.
fn keys_relation(t: &TableInfo, first: usize) -> String {
    let types = key_types(t);
    let cols: Vec<String> = (1..=types.len()).map(|i| format!("c{i}")).collect();
    let args: Vec<String> = (0..types.len())
        .map(|i| format!("${}::text[]", first + i))
        .collect();
    let casts: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| format!("u.c{}::{ty} AS k{}", i + 1, i + 1))
        .collect();
    format!(
        "(SELECT {}, true AS hit FROM unnest({}) AS u({}))",
        casts.join(", "),
        args.join(", "),
        cols.join(", ")
    )
}

/// `a."k1" = s.k1 AND a."k2" = s.k2`.
fn key_join(t: &TableInfo, alias: &str) -> String {
    key_types(t)
        .iter()
        .enumerate()
        .map(|(i, (k, _))| format!("{alias}.{k} = s.k{}", i + 1))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// `keys` column by column, the parameters of [`keys_relation`].
fn key_params(t: &TableInfo, keys: &[Key]) -> Vec<Vec<String>> {
    (0..t.key_columns.len())
        .map(|i| {
            keys.iter()
                .map(|k| k.get(i).cloned().unwrap_or_default())
                .collect()
        })
        .collect()
}

/// A chunk of a table: the keys `lo < key <= hi` in the key's order, either bound open. A table
/// without a key is one chunk with both bounds open.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chunk {
    pub lo: Option<Key>,
    pub hi: Option<Key>,
}

impl Chunk {
    /// The `WHERE` condition of this chunk on the table (or a delta table) aliased `alias`.
    pub fn predicate(&self, t: &TableInfo, alias: &str) -> String {
        let k = format!("({})", key_list(t, alias));
        let mut out = Vec::new();
        if let Some(lo) = &self.lo {
            out.push(format!("{k} > {}", key_literal(t, lo)));
        }
        if let Some(hi) = &self.hi {
            out.push(format!("{k} <= {}", key_literal(t, hi)));
        }
        if out.is_empty() {
            "true".into()
        } else {
            out.join(" AND ")
        }
    }
}

/// The last key of the chunk that starts after `lo` and holds `rows` rows, read in the caller's
/// snapshot; None when fewer rows are left (the chunk then runs to the end).
pub async fn chunk_end(
    client: &Client,
    side: Side,
    t: &TableInfo,
    lo: Option<&Key>,
    rows: i64,
) -> Result<Option<Key>, EngineError> {
    let from = Chunk {
        lo: lo.cloned(),
        hi: None,
    };
    let sql = format!(
        "SELECT {} FROM ONLY {} t WHERE {} ORDER BY {} OFFSET {} LIMIT 1",
        key_texts(t, "t"),
        t.name.sql(),
        from.predicate(t, "t"),
        key_list(t, "t"),
        (rows - 1).max(0)
    );
    let row = client
        .query_opt(sql.as_str(), &[])
        .await
        .map_err(|e| EngineError::sql(side, format!("walking the keys of {}", t.name), &e))?;
    Ok(row.map(|r| (0..t.key_columns.len()).map(|i| r.get(i)).collect()))
}

/// A chunk's figures on one side: all its rows, and the count and checksum of those not left
/// out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkSum {
    pub rows: i64,
    pub kept: i64,
    pub sum: String,
}

fn params<'a>(
    lead: &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)],
    cols: &'a [Vec<String>],
) -> Vec<&'a (dyn tokio_postgres::types::ToSql + Sync)> {
    let mut out: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = lead.to_vec();
    out.extend(
        cols.iter()
            .map(|c| c as &(dyn tokio_postgres::types::ToSql + Sync)),
    );
    out
}

/// Leaving the rows whose key is in `skip` out of a query on the table aliased `t`: the join
/// (`$1...` carry the keys, column by column), the condition a kept row meets, and the
/// parameters.
struct LeftOut {
    join: String,
    kept: &'static str,
    cols: Vec<Vec<String>>,
}

impl LeftOut {
    fn new(t: &TableInfo, skip: &[Key]) -> LeftOut {
        if skip.is_empty() || t.key_columns.is_empty() {
            return LeftOut {
                join: String::new(),
                kept: "true",
                cols: vec![],
            };
        }
        LeftOut {
            join: format!(
                " LEFT JOIN {} s ON {}",
                keys_relation(t, 1),
                key_join(t, "t")
            ),
            kept: "s.hit IS NULL",
            cols: key_params(t, skip),
        }
    }
}

/// Count and checksum of `chunk` leaving out the rows whose key is in `skip`, in whatever
/// transaction `client` has open, each row summed as `digest` says.
pub async fn chunk_sum(
    client: &Client,
    side: Side,
    t: &TableInfo,
    chunk: &Chunk,
    skip: &[Key],
    digest: Digest,
) -> Result<ChunkSum, EngineError> {
    let digest = row_digest(t, digest);
    let LeftOut { join, kept, cols } = LeftOut::new(t, skip);
    let sql = format!(
        "SELECT count(*)::bigint, (count(*) FILTER (WHERE {kept}))::bigint, \
         coalesce(sum({digest}) FILTER (WHERE {kept}), 0)::text \
         FROM ONLY {} t{join} WHERE {}",
        t.name.sql(),
        chunk.predicate(t, "t")
    );
    let row = client
        .query_one(sql.as_str(), &params(&[], &cols))
        .await
        .map_err(|e| EngineError::sql(side, format!("checksumming {}", t.name), &e))?;
    Ok(ChunkSum {
        rows: row.get(0),
        kept: row.get(1),
        sum: row.get(2),
    })
}

/// How a chunk's rows are summed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Digest {
    /// Not at all: counts only.
    Count,
    /// The first 64 bits of each row's md5: the same on any server.
    Md5,
    /// `hashtextextended` of each row's text (PostgreSQL 11 on), three times cheaper than md5 on
    /// the server. Its value depends on the server's byte order, so a chunk whose sums differ is
    /// compared again row by row with md5 before anything is called different.
    Hash,
    /// `hash_record_extended` of each row's values (PostgreSQL 14 on, both sides the same major
    /// version), each column in a form whose equality is its text's ([`record_columns`]): no
    /// row is printed, which was most of [`Digest::Hash`]'s cost (half of it on the benchmark's
    /// ledger, measured). Differing sums are compared again with md5, as for [`Digest::Hash`].
    Record,
}

/// `server_version_num` from which [`Digest::Hash`] exists.
pub const HASH_SINCE: i32 = 110_000;
/// `server_version_num` from which [`Digest::Record`] exists.
pub const RECORD_SINCE: i32 = 140_000;

/// The cheapest digest both servers have, given their `server_version_num`s: the record hash
/// only between servers of one major version, whose hash functions are the same code.
pub fn digest_for(here: i32, there: i32) -> Digest {
    if here >= RECORD_SINCE && here / 10_000 == there / 10_000 {
        Digest::Record
    } else if here >= HASH_SINCE && there >= HASH_SINCE {
        Digest::Hash
    } else {
        Digest::Md5
    }
}

/// A row's digest, as a number to sum. The 64-bit hashes are summed as `bigint`, which
/// PostgreSQL adds in 128 bits: the same sum as in `numeric`, at a fraction of the cost.
fn row_digest(t: &TableInfo, digest: Digest) -> String {
    match digest {
        Digest::Count => "0::numeric".into(),
        Digest::Md5 => format!(
            "('x' || substr(md5(ROW({})::text), 1, 16))::bit(64)::bigint::numeric",
            row_columns(t)
        ),
        Digest::Hash => format!("hashtextextended(ROW({})::text, 0)", row_columns(t)),
        Digest::Record => format!("hash_record_extended(ROW({}), 0)", record_columns(t)),
    }
}

/// The copied columns of `t` for [`Digest::Record`], each as a value whose hash tells apart what
/// its text would: a type whose equality is its text's as it is; strings in the `C` collation
/// (a nondeterministic collation would hash `a` and `A` alike); a numeric with its scale
/// (`1.0` = `1.00` as numbers); anything else (floats, intervals, `jsonb` whose numbers compare
/// like numerics, arrays, domains, extension types, ...) as its text.
fn record_columns(t: &TableInfo) -> String {
    t.copy_columns()
        .iter()
        .map(|c| {
            let col = format!("t.{}", quote_ident(&c.name));
            match base_type(&c.type_name).as_str() {
                "smallint"
                | "integer"
                | "bigint"
                | "boolean"
                | "bytea"
                | "date"
                | "uuid"
                | "timestamp without time zone"
                | "timestamp with time zone" => col,
                "text" | "character varying" | "character" => format!(r#"{col} COLLATE "C""#),
                "numeric" => format!("{col}, scale({col})"),
                _ => format!("{col}::text"),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A `format_type` name without its modifiers: `numeric(12,2)` is `numeric`,
/// `timestamp(3) with time zone` is `timestamp with time zone`; an array keeps its `[]`.
fn base_type(type_name: &str) -> String {
    let mut out = String::with_capacity(type_name.len());
    let mut depth = 0;
    for ch in type_name.chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ if depth == 0 => out.push(ch),
            _ => {}
        }
    }
    out
}

fn row_md5(t: &TableInfo, fast: bool) -> String {
    if fast {
        "''".into()
    } else {
        format!("md5(ROW({})::text)", row_columns(t))
    }
}

/// Each row of `chunk` not in `skip`, as (key, md5 of the row), in the caller's transaction.
pub async fn chunk_rows(
    client: &Client,
    side: Side,
    t: &TableInfo,
    chunk: &Chunk,
    skip: &[Key],
    fast: bool,
) -> Result<Vec<(Key, String)>, EngineError> {
    let LeftOut { join, kept, cols } = LeftOut::new(t, skip);
    let sql = format!(
        "SELECT {}, {} FROM ONLY {} t{join} WHERE {} AND {kept}",
        key_texts(t, "t"),
        row_md5(t, fast),
        t.name.sql(),
        chunk.predicate(t, "t")
    );
    let rows = client
        .query(sql.as_str(), &params(&[], &cols))
        .await
        .map_err(|e| EngineError::sql(side, format!("reading the rows of {}", t.name), &e))?;
    Ok(keyed(t, &rows))
}

fn keyed(t: &TableInfo, rows: &[tokio_postgres::Row]) -> Vec<(Key, String)> {
    let n = t.key_columns.len();
    rows.iter()
        .map(|r| ((0..n).map(|i| r.get(i)).collect(), r.get(n)))
        .collect()
}

/// The rows of `keys` that exist on this side, as (key, md5 of the row), in the caller's
/// transaction; through the key's index.
pub async fn rows_by_key(
    client: &Client,
    side: Side,
    t: &TableInfo,
    keys: &[Key],
    fast: bool,
) -> Result<Vec<(Key, String)>, EngineError> {
    if keys.is_empty() {
        return Ok(vec![]);
    }
    let sql = format!(
        "SELECT {}, {} FROM ONLY {} t JOIN {} s ON {}",
        key_texts(t, "t"),
        row_md5(t, fast),
        t.name.sql(),
        keys_relation(t, 1),
        key_join(t, "t")
    );
    let cols = key_params(t, keys);
    let rows = client
        .query(sql.as_str(), &params(&[], &cols))
        .await
        .map_err(|e| EngineError::sql(side, format!("reading rows of {} by key", t.name), &e))?;
    Ok(keyed(t, &rows))
}

/// Every table's delta tables on this side, quoted (`bucardo."delta_..."`), from one read of
/// `bucardo_delta_names`. Looked up one table at a time, each query cast every row's name to
/// `regclass`: at 10,000 tables that made the walk quadratic in the table count.
pub async fn delta_names(
    client: &Client,
    side: Side,
) -> Result<std::collections::HashMap<TableName, Vec<String>>, EngineError> {
    let rows = client
        .query(
            "SELECT DISTINCT n.nspname::text, c.relname::text, d.deltaname
               FROM bucardo.bucardo_delta_names d
               JOIN pg_class c ON c.oid = to_regclass(d.tablename)
               JOIN pg_namespace n ON n.oid = c.relnamespace
              ORDER BY 1, 2, 3",
            &[],
        )
        .await
        .map_err(|e| EngineError::sql(side, "finding Bucardo's delta tables", &e))?;
    let mut out: std::collections::HashMap<TableName, Vec<String>> = Default::default();
    for r in &rows {
        let d: String = r.get(2);
        let quoted = if d.starts_with('"') {
            format!("bucardo.{d}")
        } else {
            format!("bucardo.{}", quote_ident(&d))
        };
        out.entry(TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)))
            .or_default()
            .push(quoted);
    }
    Ok(out)
}

/// Keys of `t` changed on this side since `since` (minus [`IN_FLIGHT_MARGIN_S`]), from its
/// delta tables `deltas`: those in `chunk`, or among `among`.
pub async fn changed_keys(
    client: &Client,
    side: Side,
    t: &TableInfo,
    deltas: &[String],
    since: &str,
    within: Within<'_>,
) -> Result<Vec<Key>, EngineError> {
    let mut out = Vec::new();
    for delta in deltas {
        let (join, filter, cols) = match within {
            Within::Chunk(c) => (String::new(), c.predicate(t, "d"), vec![]),
            Within::Keys(keys) => {
                if keys.is_empty() {
                    continue;
                }
                (
                    format!(" JOIN {} s ON {}", keys_relation(t, 2), key_join(t, "d")),
                    "true".to_string(),
                    key_params(t, keys),
                )
            }
        };
        let sql = format!(
            "SELECT DISTINCT {} FROM {delta} d{join} WHERE d.txntime >= $1::text::timestamptz - make_interval(secs => {IN_FLIGHT_MARGIN_S}) AND {filter}",
            key_texts(t, "d")
        );
        let rows = client
            .query(sql.as_str(), &params(&[&since], &cols))
            .await
            .map_err(|e| {
                EngineError::sql(side, format!("reading recent changes of {}", t.name), &e)
            })?;
        let n = t.key_columns.len();
        out.extend(
            rows.iter()
                .map(|r| (0..n).map(|i| r.get::<_, String>(i)).collect::<Key>()),
        );
    }
    Ok(out)
}

/// Which changed keys [`changed_keys`] reads.
#[derive(Clone, Copy, Debug)]
pub enum Within<'a> {
    Chunk(&'a Chunk),
    Keys(&'a [Key]),
}

/// How two sides' rows of the same keys compare.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Keys whose row is the same on both sides.
    pub same: Vec<Key>,
    /// Keys whose row differs, and how.
    pub differ: Vec<(Key, &'static str)>,
}

/// Compares two sides' (key, digest) lists; a key on neither side is in neither list.
pub fn diff_rows(here: &[(Key, String)], there: &[(Key, String)]) -> Diff {
    let h: std::collections::BTreeMap<&Key, &str> =
        here.iter().map(|(k, d)| (k, d.as_str())).collect();
    let t: std::collections::BTreeMap<&Key, &str> =
        there.iter().map(|(k, d)| (k, d.as_str())).collect();
    let mut out = Diff::default();
    for (k, d) in &h {
        match t.get(k) {
            None => out.differ.push(((*k).clone(), "missing on THERE")),
            Some(d2) if d2 != d => out.differ.push(((*k).clone(), "different")),
            _ => out.same.push((*k).clone()),
        }
    }
    for k in t.keys() {
        if !h.contains_key(k) {
            out.differ.push(((*k).clone(), "missing on HERE"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::catalog::Column;
    use crate::engine::ident::TableName;

    fn k(v: &[&str]) -> Key {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn row_diffs_name_each_kind() {
        let h = vec![
            (k(&["1"]), "a".to_string()),
            (k(&["2"]), "b".into()),
            (k(&["3"]), "c".into()),
        ];
        let t = vec![
            (k(&["1"]), "a".to_string()),
            (k(&["2"]), "X".into()),
            (k(&["4"]), "d".into()),
        ];
        let d = diff_rows(&h, &t);
        assert_eq!(d.same, vec![k(&["1"])]);
        assert_eq!(
            d.differ,
            vec![
                (k(&["2"]), "different"),
                (k(&["3"]), "missing on THERE"),
                (k(&["4"]), "missing on HERE"),
            ]
        );
        assert_eq!(display_key(&k(&["1", "x y"])), "(1,x y)");
    }

    #[test]
    fn the_record_digest_only_between_servers_of_one_major_version() {
        assert_eq!(digest_for(150_004, 150_010), Digest::Record);
        assert_eq!(digest_for(140_000, 150_000), Digest::Hash);
        assert_eq!(digest_for(130_000, 130_000), Digest::Hash);
        assert_eq!(digest_for(100_000, 150_000), Digest::Md5);
        assert_eq!(
            base_type("timestamp(3) with time zone"),
            "timestamp with time zone"
        );
        assert_eq!(base_type("numeric(12,2)[]"), "numeric[]");
        let mut t = TableInfo::default();
        for (n, ty) in [
            ("id", "bigint"),
            ("Amount", "numeric(12,2)"),
            ("code", "character(3)"),
            ("doc", "jsonb"),
            ("tags", "text[]"),
            ("at", "timestamp(3) with time zone"),
        ] {
            t.columns.push(Column {
                name: n.into(),
                type_name: ty.into(),
                not_null: false,
                generated: false,
            });
        }
        assert_eq!(
            record_columns(&t),
            r#"t."id", t."Amount", scale(t."Amount"), t."code" COLLATE "C", t."doc"::text, t."tags"::text, t."at""#
        );
    }

    #[test]
    fn chunks_are_typed_key_ranges() {
        let mut t = TableInfo {
            name: TableName::new("Sales", "Order Items"),
            key_columns: vec!["Order ID".into(), "Line No".into()],
            ..TableInfo::default()
        };
        for (n, ty) in [
            ("Order ID", "bigint"),
            ("Line No", "integer"),
            ("SKU", "text"),
        ] {
            t.columns.push(Column {
                name: n.into(),
                type_name: ty.into(),
                not_null: true,
                generated: false,
            });
        }
        let c = Chunk {
            lo: Some(k(&["5", "1"])),
            hi: Some(k(&["9", "it's"])),
        };
        assert_eq!(
            c.predicate(&t, "t"),
            r#"(t."Order ID", t."Line No") > ('5'::bigint, '1'::integer) AND (t."Order ID", t."Line No") <= ('9'::bigint, 'it''s'::integer)"#
        );
        assert_eq!(Chunk::default().predicate(&t, "t"), "true");
        assert_eq!(
            keys_relation(&t, 2),
            "(SELECT u.c1::bigint AS k1, u.c2::integer AS k2, true AS hit FROM unnest($2::text[], $3::text[]) AS u(c1, c2))"
        );
        assert_eq!(
            key_params(&t, &[k(&["1", "2"]), k(&["3", "4"])]),
            vec![k(&["1", "3"]), k(&["2", "4"])]
        );
    }
}
