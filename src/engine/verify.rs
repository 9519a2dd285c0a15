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
