//! Rows written frozen on THERE: `COPY ... (FREEZE)` for a table copied whole.
//!
//! Rows a plain COPY writes are rewritten once more on THERE: the first pass over them (the
//! Vacuum step, or else Compare and the application's first reads) sets their hint bits and the
//! pages' all-visible flags, dirtying every page again. At 16× the benchmark's base size the
//! Vacuum step wrote 10.6 GB for 11.5 GB of rows, written back while Compare read from the same
//! disk (measured). A COPY with `FREEZE` writes the rows frozen and their pages all-visible in
//! the visibility map, so that pass has nothing left to write.
//!
//! PostgreSQL allows `FREEZE` only when the table was created or truncated in the COPY's own
//! (sub)transaction. THERE's tables are empty when the copy starts (the run refuses one with
//! rows, and a resumed run empties what an interrupted copy left), so the copy's transaction
//! truncates the table first: `BEGIN; SAVEPOINT; TRUNCATE ONLY t; COPY t FROM STDIN (FREEZE)`.
//! Only a plain table copied whole qualifies ([`freezable`]): not one split into key ranges (each
//! range commits on its own), not a partitioned table, not one another table's foreign key
//! references (TRUNCATE refuses it), not one with a trigger that fires on TRUNCATE in replica
//! mode. A TRUNCATE that fails anyway is rolled back to its savepoint and the table copied
//! without `FREEZE`.

use crate::engine::conn::Side;
use crate::engine::error::EngineError;
use crate::engine::ident::TableName;
use std::collections::HashSet;
use tokio_postgres::Client;

/// `tgtype` bit of an ON TRUNCATE trigger.
const TRIGGER_TYPE_TRUNCATE: i16 = 1 << 5;

const FREEZABLE_SQL: &str = r#"
SELECT n.i::int
  FROM unnest($1::text[]) WITH ORDINALITY AS n(name, i)
  JOIN pg_class c ON c.oid = to_regclass(n.name)
 WHERE c.relkind = 'r'
   AND NOT EXISTS (SELECT 1 FROM pg_constraint k
                    WHERE k.contype = 'f' AND k.confrelid = c.oid AND k.conrelid <> c.oid)
   AND NOT EXISTS (SELECT 1 FROM pg_trigger g
                    WHERE g.tgrelid = c.oid AND g.tgenabled IN ('A', 'R') AND (g.tgtype & $2) <> 0)
"#;

/// Those of `tables` that THERE lets a transaction truncate and fill frozen.
pub async fn freezable(
    there: &Client,
    tables: &[TableName],
) -> Result<HashSet<TableName>, EngineError> {
    let names: Vec<String> = tables.iter().map(TableName::sql).collect();
    let rows = there
        .query(FREEZABLE_SQL, &[&names, &TRIGGER_TYPE_TRUNCATE])
        .await
        .map_err(|e| {
            EngineError::sql(Side::There, "listing the tables COPY FREEZE may fill", &e)
        })?;
    Ok(rows
        .iter()
        .filter_map(|r| usize::try_from(r.get::<_, i32>(0) - 1).ok())
        .filter_map(|i| tables.get(i).cloned())
        .collect())
}

/// What opens a frozen copy of `table` in the copy's transaction.
pub fn truncate_sql(table: &TableName) -> String {
    format!("SAVEPOINT frozen; TRUNCATE ONLY {}", table.sql())
}

/// What undoes a [`truncate_sql`] that failed, leaving the transaction usable.
pub const UNDO_SQL: &str = "ROLLBACK TO SAVEPOINT frozen";
