//! Comparing HERE and THERE: a row count and an order-independent checksum of every row's text
//! per table (sum of the first 64 bits of each row's md5), so no sort and no big aggregate string
//! is needed on a large table. While replication is live a table can differ for a moment; the
//! caller kicks and compares again before calling it different.

use crate::engine::catalog::TableInfo;
use crate::engine::conn::Side;
use crate::engine::error::EngineError;
use crate::engine::ident::quote_ident;
use tokio_postgres::Client;

/// Count and checksum of a table. Generated columns are left out: they follow from the rest.
pub fn checksum_sql(t: &TableInfo) -> String {
    let cols = t
        .copy_columns()
        .iter()
        .map(|c| format!("t.{}", quote_ident(&c.name)))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT count(*) || ':' || coalesce(sum(('x' || substr(md5(ROW({cols})::text), 1, 16))::bit(64)::bigint::numeric), 0) FROM ONLY {} t",
        t.name.sql()
    )
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableSum {
    pub rows: i64,
    pub sum: String,
}

pub async fn table_sum(client: &Client, side: Side, t: &TableInfo) -> Result<TableSum, EngineError> {
    let row = client
        .query_one(checksum_sql(t).as_str(), &[])
        .await
        .map_err(|e| EngineError::sql(side, format!("checksumming {}", t.name), &e))?;
    let v: String = row.get(0);
    let (rows, sum) = v.split_once(':').unwrap_or(("0", "0"));
    Ok(TableSum { rows: rows.parse().unwrap_or(0), sum: sum.to_string() })
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
        .query_one("SELECT to_regclass('bucardo.bucardo_delta_names') IS NOT NULL", &[])
        .await
        .map(|r| r.get(0))
        .map_err(|e| EngineError::sql(side, "looking for Bucardo's delta tables", &e))
}

/// Keys of `t` changed on this side since `since` (minus the margin), as the text of the key's
/// row, read from Bucardo's delta table for it.
pub async fn recent_keys(client: &Client, side: Side, t: &TableInfo, since: &str) -> Result<Vec<String>, EngineError> {
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
        let delta = if delta.starts_with('"') { delta } else { quote_ident(&delta) };
        let sql = format!(
            "SELECT DISTINCT {key}::text FROM bucardo.{delta} d WHERE d.txntime >= $1::text::timestamptz - make_interval(secs => {IN_FLIGHT_MARGIN_S})"
        );
        for row in client
            .query(sql.as_str(), &[&since])
            .await
            .map_err(|e| EngineError::sql(side, format!("reading recent changes of {}", t.name), &e))?
        {
            out.push(row.get(0));
        }
    }
    Ok(out)
}

fn key_row(t: &TableInfo, alias: &str) -> String {
    let cols: Vec<String> = t.key_columns.iter().map(|c| format!("{alias}.{}", quote_ident(c))).collect();
    format!("ROW({}, NULL)", cols.join(", "))
}

/// Count and checksum of the rows whose key is not in `skip`, inside whatever transaction
/// `client` has open (a snapshot taken before `skip` was read).
pub async fn table_sum_except(client: &Client, side: Side, t: &TableInfo, skip: &[String]) -> Result<TableSum, EngineError> {
    let base = checksum_sql(t);
    let sql = format!("{base} WHERE NOT ({} = ANY($1::text[]))", format_args!("{}::text", key_row(t, "t")));
    let row = client
        .query_one(sql.as_str(), &[&skip])
        .await
        .map_err(|e| EngineError::sql(side, format!("checksumming {}", t.name), &e))?;
    let v: String = row.get(0);
    let (rows, sum) = v.split_once(':').unwrap_or(("0", "0"));
    Ok(TableSum { rows: rows.parse().unwrap_or(0), sum: sum.to_string() })
}
