//! Deferred secondary index builds on THERE.
//!
//! Maintaining a secondary index row by row during COPY costs far more than building it once
//! the rows are in (measured: about half the copy time of the benchmark, whose largest table has
//! an index on a random column). So a table copied whole gets its plain secondary indexes dropped
//! and rebuilt **inside the very transaction that copies it**: `BEGIN; DROP INDEX ...; COPY ...;
//! CREATE INDEX ...; COMMIT`. PostgreSQL's DDL is transactional, so an interrupted or failed run
//! rolls the drop back with the rows: no index can ever be missing, and nothing needs recording.
//!
//! Only indexes that `pg_get_indexdef` recreates exactly are deferred: not the primary key, no
//! index behind a constraint (unique, exclusion, or referenced by a foreign key), no partition
//! or extension index, none anything else depends on, no replica identity or CLUSTER index, none
//! with a comment or per-column statistics target. Their tablespace is kept. The builds' phases
//! are reported by [`monitor`](super::monitor).

use crate::engine::conn::Side;
use crate::engine::error::EngineError;
use crate::engine::ident::{quote_ident, TableName};
use std::collections::HashMap;
use tokio_postgres::Client;

/// An index dropped before the copy and built again after it, in the same transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeferredIndex {
    /// Schema-qualified, quoted.
    pub name_sql: String,
    /// Raw name, for messages.
    pub name: String,
    /// `CREATE INDEX ...` as `pg_get_indexdef` gives it.
    pub create: String,
    /// Its tablespace when it is not the database's default.
    pub tablespace: Option<String>,
}

const DEFERRABLE_SQL: &str = r#"
SELECT n.i::int, quote_ident(ns.nspname) || '.' || quote_ident(ic.relname), ic.relname::text,
       pg_get_indexdef(i.indexrelid), ts.spcname::text
  FROM unnest($1::text[]) WITH ORDINALITY AS n(name, i)
  JOIN pg_index i ON i.indrelid = to_regclass(n.name)
  JOIN pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_namespace ns ON ns.oid = ic.relnamespace
  LEFT JOIN pg_tablespace ts ON ts.oid = ic.reltablespace
 WHERE NOT i.indisprimary AND i.indisvalid AND i.indisready AND i.indislive
   AND NOT i.indisreplident AND NOT i.indisclustered AND NOT i.indisexclusion
   AND NOT ic.relispartition
   AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = i.indexrelid AND d.deptype NOT IN ('a', 'n'))
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.refclassid = 'pg_class'::regclass
                      AND d.refobjid = i.indexrelid)
   AND NOT EXISTS (SELECT 1 FROM pg_description c WHERE c.classoid = 'pg_class'::regclass
                      AND c.objoid = i.indexrelid)
   AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = i.indexrelid
                      AND a.attstattarget >= 0)
 ORDER BY n.i, ic.relname
"#;

/// THERE's deferrable indexes of each table (tables without any are absent).
pub async fn deferrable(
    there: &Client,
    tables: &[TableName],
) -> Result<HashMap<TableName, Vec<DeferredIndex>>, EngineError> {
    let names: Vec<String> = tables.iter().map(TableName::sql).collect();
    let rows = there
        .query(DEFERRABLE_SQL, &[&names])
        .await
        .map_err(|e| EngineError::sql(Side::There, "listing secondary indexes", &e))?;
    let mut out: HashMap<TableName, Vec<DeferredIndex>> = HashMap::new();
    for r in rows {
        let i: i32 = r.get(0);
        let Some(t) = usize::try_from(i - 1).ok().and_then(|i| tables.get(i)) else {
            continue;
        };
        out.entry(t.clone()).or_default().push(DeferredIndex {
            name_sql: r.get(1),
            name: r.get(2),
            create: r.get(3),
            tablespace: r.get(4),
        });
    }
    Ok(out)
}

/// `DROP INDEX` for all of them.
pub fn drop_sql(defer: &[DeferredIndex]) -> String {
    let names: Vec<&str> = defer.iter().map(|d| d.name_sql.as_str()).collect();
    format!("DROP INDEX {}", names.join(", "))
}

/// The statements that build one index again, in the copy's transaction.
pub fn create_sql(d: &DeferredIndex) -> String {
    match &d.tablespace {
        Some(ts) => format!(
            "SET LOCAL default_tablespace = {}; {}",
            quote_ident(ts),
            d.create
        ),
        None => format!("SET LOCAL default_tablespace = ''; {}", d.create),
    }
}

/// Raises `maintenance_work_mem` for the builds of this transaction to at least this much.
pub const BUILD_MEMORY_KB: i64 = 256 * 1024;

pub fn build_memory_sql() -> String {
    format!(
        "SELECT set_config('maintenance_work_mem', greatest(setting::bigint, {BUILD_MEMORY_KB})::text || 'kB', true) \
         FROM pg_settings WHERE name = 'maintenance_work_mem'"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements() {
        let d = DeferredIndex {
            name_sql: r#""public"."t_v""#.into(),
            name: "t_v".into(),
            create: "CREATE INDEX t_v ON public.t USING btree (v) WHERE (v > 0)".into(),
            tablespace: Some("fast disk".into()),
        };
        assert_eq!(
            drop_sql(&[d.clone(), d.clone()]),
            r#"DROP INDEX "public"."t_v", "public"."t_v""#
        );
        assert_eq!(
            create_sql(&d),
            r#"SET LOCAL default_tablespace = "fast disk"; CREATE INDEX t_v ON public.t USING btree (v) WHERE (v > 0)"#
        );
    }
}
