//! Comparing HERE and THERE: a row count and an order-independent checksum of every row's text
//! per table (sum of the first 64 bits of each row's md5), so no sort and no big aggregate string
//! is needed on a large table. While replication is live a table can differ for a moment; the
//! caller kicks and compares again before calling it different.

use crate::engine::catalog::TableInfo;
use crate::engine::conn::Side;
use crate::engine::error::EngineError;
use crate::engine::ident::quote_ident;
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableSum {
    pub rows: i64,
    pub sum: String,
}

pub async fn table_sum(
    client: &Client,
    side: Side,
    t: &TableInfo,
) -> Result<TableSum, EngineError> {
    let row = client
        .query_one(checksum_sql(t).as_str(), &[])
        .await
        .map_err(|e| EngineError::sql(side, format!("checksumming {}", t.name), &e))?;
    let v: String = row.get(0);
    let (rows, sum) = v.split_once(':').unwrap_or(("0", "0"));
    Ok(TableSum {
        rows: rows.parse().unwrap_or(0),
        sum: sum.to_string(),
    })
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

/// Keys of `t` changed on this side since `since` (minus the margin), as the text of the key's
/// row, read from Bucardo's delta table for it.
pub async fn recent_keys(
    client: &Client,
    side: Side,
    t: &TableInfo,
    since: &str,
) -> Result<Vec<String>, EngineError> {
    let names = client
        .query(
            "SELECT DISTINCT deltaname FROM bucardo.bucardo_delta_names WHERE tablename::regclass = $1::text::regclass",
            &[&t.name.sql()],
        )
        .await
        .map_err(|e| EngineError::sql(side, format!("finding the delta table of {}", t.name), &e))?;
    let key = key_row(t, "d");
    let mut out = Vec::new();
    for r in names {
        let delta: String = r.get(0);
        let delta = if delta.starts_with('"') {
            delta
        } else {
            quote_ident(&delta)
        };
        let sql = format!(
            "SELECT DISTINCT {key}::text FROM bucardo.{delta} d WHERE d.txntime >= $1::text::timestamptz - make_interval(secs => {IN_FLIGHT_MARGIN_S})"
        );
        for row in client.query(sql.as_str(), &[&since]).await.map_err(|e| {
            EngineError::sql(side, format!("reading recent changes of {}", t.name), &e)
        })? {
            out.push(row.get(0));
        }
    }
    Ok(out)
}

fn key_row(t: &TableInfo, alias: &str) -> String {
    let cols: Vec<String> = t
        .key_columns
        .iter()
        .map(|c| format!("{alias}.{}", quote_ident(c)))
        .collect();
    format!("ROW({}, NULL)", cols.join(", "))
}

/// Count and checksum of the rows whose key is not in `skip`, inside whatever transaction
/// `client` has open (a snapshot taken before `skip` was read).
pub async fn table_sum_except(
    client: &Client,
    side: Side,
    t: &TableInfo,
    skip: &[String],
) -> Result<TableSum, EngineError> {
    let base = checksum_sql(t);
    let sql = format!(
        "{base} WHERE NOT ({} = ANY($1::text[]))",
        format_args!("{}::text", key_row(t, "t"))
    );
    let row = client
        .query_one(sql.as_str(), &[&skip])
        .await
        .map_err(|e| EngineError::sql(side, format!("checksumming {}", t.name), &e))?;
    let v: String = row.get(0);
    let (rows, sum) = v.split_once(':').unwrap_or(("0", "0"));
    Ok(TableSum {
        rows: rows.parse().unwrap_or(0),
        sum: sum.to_string(),
    })
}

/// How thoroughly `verify` compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyMode {
    /// Row counts.
    Fast,
    /// Row counts and a checksum of every row.
    Checksum,
    /// Checksums, then per key bucket, then the differing rows themselves.
    Deep,
}

/// Buckets a deep verify splits a table into (by a hash of the key, so any key type works).
pub const DEEP_BUCKETS: i32 = 256;

fn bucket_expr(t: &TableInfo) -> String {
    format!(
        "(abs(hashtext({}::text)) % {DEEP_BUCKETS})",
        key_row(t, "t")
    )
}

/// Per bucket: (bucket, count, checksum) of the rows not in `skip`.
pub async fn bucket_sums(
    client: &Client,
    side: Side,
    t: &TableInfo,
    skip: &[String],
) -> Result<Vec<(i32, String)>, EngineError> {
    let cols = row_columns(t);
    let sql = format!(
        "SELECT {b} AS bucket, {sum} FROM ONLY {tn} t WHERE NOT ({k}::text = ANY($1::text[])) GROUP BY 1 ORDER BY 1",
        sum = count_and_sum(&cols),
        b = bucket_expr(t),
        tn = t.name.sql(),
        k = key_row(t, "t"),
    );
    let rows = client
        .query(sql.as_str(), &[&skip])
        .await
        .map_err(|e| EngineError::sql(side, format!("bucketing {}", t.name), &e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The keys and row digests of one bucket.
pub async fn bucket_rows(
    client: &Client,
    side: Side,
    t: &TableInfo,
    bucket: i32,
    skip: &[String],
) -> Result<Vec<(String, String)>, EngineError> {
    let cols = row_columns(t);
    let sql = format!(
        "SELECT {k}::text, md5(ROW({cols})::text) FROM ONLY {tn} t WHERE {b} = $1 AND NOT ({k}::text = ANY($2::text[])) ORDER BY 1",
        k = key_row(t, "t"),
        tn = t.name.sql(),
        b = bucket_expr(t),
    );
    let rows = client
        .query(sql.as_str(), &[&bucket, &skip])
        .await
        .map_err(|e| EngineError::sql(side, format!("reading a bucket of {}", t.name), &e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// A row that differs: its key as `(k1, k2, ...)` and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowDiff {
    pub key: String,
    pub what: &'static str,
}

/// Compares two sorted (key, digest) lists.
pub fn diff_rows(here: &[(String, String)], there: &[(String, String)]) -> Vec<RowDiff> {
    let h: std::collections::BTreeMap<&str, &str> =
        here.iter().map(|(k, d)| (k.as_str(), d.as_str())).collect();
    let t: std::collections::BTreeMap<&str, &str> = there
        .iter()
        .map(|(k, d)| (k.as_str(), d.as_str()))
        .collect();
    let mut out = Vec::new();
    for (k, d) in &h {
        match t.get(k) {
            None => out.push(RowDiff {
                key: display_key(k),
                what: "missing on THERE",
            }),
            Some(d2) if d2 != d => out.push(RowDiff {
                key: display_key(k),
                what: "different",
            }),
            _ => {}
        }
    }
    for k in t.keys() {
        if !h.contains_key(k) {
            out.push(RowDiff {
                key: display_key(k),
                what: "missing on HERE",
            });
        }
    }
    out
}

/// `(5,)` (a one-column key with the NULL pad of [`key_row`]) shown as `(5)`.
fn display_key(k: &str) -> String {
    k.strip_suffix(",)")
        .map(|s| format!("{s})"))
        .unwrap_or_else(|| k.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_diffs_name_each_kind() {
        let h = vec![
            ("(1,)".to_string(), "a".to_string()),
            ("(2,)".into(), "b".into()),
            ("(3,)".into(), "c".into()),
        ];
        let t = vec![
            ("(1,)".to_string(), "a".to_string()),
            ("(2,)".into(), "X".into()),
            ("(4,)".into(), "d".into()),
        ];
        let d = diff_rows(&h, &t);
        assert_eq!(
            d,
            vec![
                RowDiff {
                    key: "(2)".into(),
                    what: "different"
                },
                RowDiff {
                    key: "(3)".into(),
                    what: "missing on THERE"
                },
                RowDiff {
                    key: "(4)".into(),
                    what: "missing on HERE"
                },
            ]
        );
    }
}
