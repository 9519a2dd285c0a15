//! Splitting a large table into key ranges that copy in parallel.
//!
//! A table whose on-disk size is above the split threshold, and whose key is a single column of a
//! type without collation (integers, numeric, uuid, timestamps, enums...), is cut into half-open
//! ranges `k < c1`, `c1 <= k < c2`, ..., `k >= cN`. Whatever the cut points, every key satisfies
//! exactly one of these predicates as long as the cut points are strictly ascending under the
//! column's own `<`, so every row is copied exactly once. The cut points are sorted and
//! de-duplicated by HERE itself, as values of the key's type. They come from the key's
//! `pg_stats` histogram (quantiles, robust to gaps), or, for an integer key never analysed, from
//! min/max stepping read in the snapshot. Ranges are key ranges rather than ctid ranges so that
//! one can be copied again under another snapshot: the journal records a table's [`Split`] before
//! its first range starts and each range once it committed on THERE, and a rerun copies only the
//! ranges it lacks, each after deleting whatever THERE holds in that range, in the same
//! transaction.

use crate::engine::conn::Side;
use crate::engine::copy::format::ColumnType;
use crate::engine::error::EngineError;
use crate::engine::ident::{quote_ident, quote_literal, TableName};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use tokio_postgres::Client;

/// How a table was cut: its key column and ascending cut points. Range `i` of `n = cuts + 1`
/// is [`Split::ranges`]`()[i]`, whatever run computes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    pub key: String,
    pub key_type: String,
    pub cuts: Vec<String>,
}

impl Split {
    pub fn ranges(&self) -> Vec<KeyRange> {
        ranges_from_cuts(&self.key, &self.key_type, &self.cuts)
    }
}

/// A split table's ranges that committed on THERE (the journal's record of a partial table).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangesDone {
    pub table: TableName,
    pub split: Split,
    pub done: BTreeSet<usize>,
}

/// A key range of a table: `lo <= key < hi`, either bound open when `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRange {
    pub key: String,
    /// The key's type without modifiers; bounds are cast to it.
    pub key_type: String,
    pub lo: Option<String>,
    pub hi: Option<String>,
}

impl KeyRange {
    /// The `WHERE` condition of this range.
    pub fn predicate(&self) -> String {
        let k = quote_ident(&self.key);
        let bound = |v: &str| format!("{}::{}", quote_literal(v), self.key_type);
        match (&self.lo, &self.hi) {
            (None, None) => "true".into(),
            (Some(lo), None) => format!("{k} >= {}", bound(lo)),
            (None, Some(hi)) => format!("{k} < {}", bound(hi)),
            (Some(lo), Some(hi)) => format!("{k} >= {} AND {k} < {}", bound(lo), bound(hi)),
        }
    }
}

/// Turns strictly ascending cut points into the ranges that cover the whole key space.
pub fn ranges_from_cuts(key: &str, key_type: &str, cuts: &[String]) -> Vec<KeyRange> {
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut lo: Option<String> = None;
    for c in cuts {
        out.push(KeyRange {
            key: key.into(),
            key_type: key_type.into(),
            lo: lo.clone(),
            hi: Some(c.clone()),
        });
        lo = Some(c.clone());
    }
    out.push(KeyRange {
        key: key.into(),
        key_type: key_type.into(),
        lo,
        hi: None,
    });
    out
}

/// `n - 1` cut points at the quantiles of `sorted` (distinct, ascending), first and last excluded.
pub fn quantile_cuts(sorted: &[String], n: usize) -> Vec<String> {
    if sorted.len() < 3 || n < 2 {
        return vec![];
    }
    let last = sorted.len() - 1;
    let mut idx: Vec<usize> = (1..n)
        .map(|j| (j * last + n / 2) / n)
        .filter(|&i| i > 0 && i < last)
        .collect();
    idx.dedup();
    idx.into_iter().map(|i| sorted[i].clone()).collect()
}

/// `n - 1` evenly spaced integer cut points strictly inside `lo..=hi`.
pub fn stepped_cuts(lo: i64, hi: i64, n: usize) -> Vec<i64> {
    if hi <= lo || n < 2 {
        return vec![];
    }
    let span = hi as i128 - lo as i128;
    let mut out: Vec<i64> = (1..n as i128)
        .map(|j| (lo as i128 + span * j / n as i128) as i64)
        .filter(|&c| c > lo)
        .collect();
    out.dedup();
    out
}

const INTEGER_TYPES: &[&str] = &["smallint", "integer", "bigint"];

/// Splits `table` into about `n` key ranges, reading its bounds through `snap` (a connection in
/// the copy's snapshot). `None` when the table cannot be split: no single-column key of a
/// collation-free type, or too few distinct keys.
pub async fn split(
    snap: &Client,
    table: &TableName,
    key_columns: &[String],
    columns: &[ColumnType],
    n: usize,
) -> Result<Option<Split>, EngineError> {
    let [key] = key_columns else { return Ok(None) };
    let Some(col) = columns.iter().find(|c| &c.name == key) else {
        return Ok(None);
    };
    if !col.collation_free || n < 2 {
        return Ok(None);
    }
    let err = |e: tokio_postgres::Error| {
        EngineError::sql(Side::Here, format!("computing key ranges of {table}"), &e)
    };
    let ty = &col.base_sql;
    let hist_sql = format!(
        "SELECT s.b::text AS cut FROM (SELECT DISTINCT v::{ty} AS b FROM unnest((SELECT histogram_bounds::text::text[] \
           FROM pg_stats WHERE schemaname = $1 AND tablename = $2 AND attname = $3 AND NOT inherited)) AS v) AS s ORDER BY s.b"
    );
    let bounds: Vec<String> = snap
        .query(hist_sql.as_str(), &[&table.schema, &table.name, key])
        .await
        .map_err(err)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut cuts = quantile_cuts(&bounds, n);
    if cuts.is_empty() && INTEGER_TYPES.contains(&&**ty) {
        let k = quote_ident(key);
        let r = snap
            .query_one(
                format!(
                    "SELECT min({k})::bigint, max({k})::bigint FROM ONLY {}",
                    table.sql()
                )
                .as_str(),
                &[],
            )
            .await
            .map_err(err)?;
        if let (Some(lo), Some(hi)) = (r.get::<_, Option<i64>>(0), r.get::<_, Option<i64>>(1)) {
            cuts = stepped_cuts(lo, hi, n).iter().map(i64::to_string).collect();
        }
    }
    if cuts.is_empty() {
        return Ok(None);
    }
    // HERE puts the cut points in the order its `<` on the key's type defines.
    let sorted: Vec<String> = snap
        .query(format!("SELECT s.b::text AS cut FROM (SELECT DISTINCT v::{ty} AS b FROM unnest($1::text[]) AS v) AS s ORDER BY s.b").as_str(), &[&cuts])
        .await
        .map_err(err)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(Some(Split {
        key: key.clone(),
        key_type: ty.to_string(),
        cuts: sorted,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_everything_once() {
        let r = ranges_from_cuts("id", "bigint", &["10".into(), "20".into()]);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].predicate(), r#""id" < '10'::bigint"#);
        assert_eq!(
            r[1].predicate(),
            r#""id" >= '10'::bigint AND "id" < '20'::bigint"#
        );
        assert_eq!(r[2].predicate(), r#""id" >= '20'::bigint"#);
        assert_eq!(ranges_from_cuts("id", "bigint", &[])[0].predicate(), "true");
    }

    #[test]
    fn cut_points() {
        assert_eq!(stepped_cuts(1, 100, 4), vec![25, 50, 75]);
        assert!(stepped_cuts(1, 2, 4).is_empty());
        assert_eq!(stepped_cuts(5, 5, 4), Vec::<i64>::new());
        assert_eq!(stepped_cuts(i64::MIN, i64::MAX, 2), vec![-1]);
        let s: Vec<String> = (0..=100).map(|i| i.to_string()).collect();
        assert_eq!(quantile_cuts(&s, 4), vec!["25", "50", "75"]);
        assert!(quantile_cuts(&s[..2], 4).is_empty());
        let few: Vec<String> = (0..4).map(|i| i.to_string()).collect();
        assert_eq!(quantile_cuts(&few, 8), vec!["1", "2"]);
    }
}
