//! Introspection of HERE (and THERE): every table in a user schema with its size, estimated rows,
//! key, columns, foreign keys, sequences and the traits that decide whether Bucardo can replicate
//! it. A handful of set-based, parameterised queries, so that 10,000 tables list in well under a
//! second rather than one round trip per table.

use crate::engine::conn::Side;
use crate::engine::error::EngineError;
use crate::engine::ident::{bucardo_cli_refusal, TableName};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tokio_postgres::Client;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyKind {
    Primary,
    /// A unique index that is not partial, has no expressions, and whose columns are NOT NULL.
    Unique,
    None,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub type_name: String,
    pub not_null: bool,
    /// A generated (stored) column: never copied, PostgreSQL computes it.
    pub generated: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceUse {
    pub sequence: TableName,
    pub column: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableInfo {
    pub name: TableName,
    pub oid: u32,
    /// `r` table, `p` partitioned parent.
    pub relkind: char,
    pub is_partition: bool,
    pub unlogged: bool,
    pub est_rows: i64,
    pub total_bytes: i64,
    pub key_kind: KeyKind,
    pub key_columns: Vec<String>,
    pub columns: Vec<Column>,
    pub sequences: Vec<SequenceUse>,
    /// Tables this one references.
    pub fk_out: Vec<TableName>,
    /// Tables that reference this one.
    pub fk_in: Vec<TableName>,
    pub large_object_columns: Vec<String>,
    pub user_triggers: Vec<String>,
}

impl TableInfo {
    /// `Ok` when Bucardo can replicate the table, else the reason and how to fix it.
    pub fn eligibility(&self) -> Result<(), String> {
        if self.relkind == 'p' {
            return Err("partitioned parent: Bucardo replicates only its leaf partitions; choose those".into());
        }
        if self.key_kind == KeyKind::None {
            return Err(format!(
                "no primary key or usable unique index; add one: ALTER TABLE {} ADD PRIMARY KEY (...)",
                self.name.sql()
            ));
        }
        if let Some(reason) = bucardo_cli_refusal(&self.name) {
            return Err(reason);
        }
        if self.columns.iter().any(|c| c.generated) {
            return Err("has generated columns, which Bucardo's COPY cannot write".into());
        }
        Ok(())
    }

    pub fn is_eligible(&self) -> bool {
        self.eligibility().is_ok()
    }

    /// Columns that are copied (all but generated ones), in table order.
    pub fn copy_columns(&self) -> Vec<&Column> {
        self.columns.iter().filter(|c| !c.generated).collect()
    }
}

const TABLES_SQL: &str = r#"
SELECT c.oid, n.nspname, c.relname, c.relkind::text, c.relispartition,
       c.relpersistence = 'u' AS unlogged,
       greatest(c.reltuples, 0)::bigint AS est_rows,
       pg_total_relation_size(c.oid) AS total_bytes
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'bucardo')
   AND n.nspname NOT LIKE 'pg\_%'
   AND ($1::text[] IS NULL OR n.nspname || '.' || c.relname = ANY($1))
 ORDER BY n.nspname, c.relname
"#;

const COLUMNS_SQL: &str = r#"
SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       a.attgenerated <> '' AS generated,
       a.atttypid = 'oid'::regtype OR t.typname = 'lo' AS large_object
  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
 WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attrelid, a.attnum
"#;

// Primary key first, then unique indexes by column count, as Bucardo's validate_goat picks.
const KEYS_SQL: &str = r#"
SELECT i.indrelid, i.indisprimary,
       array_agg(a.attname ORDER BY k.ord) AS cols,
       bool_and(a.attnotnull) AS all_not_null
  FROM pg_index i
  CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
 WHERE i.indrelid = ANY($1) AND i.indisunique AND i.indisvalid
   AND i.indpred IS NULL AND i.indexprs IS NULL
 GROUP BY i.indexrelid, i.indrelid, i.indisprimary
 ORDER BY i.indrelid, i.indisprimary DESC, count(*), i.indexrelid
"#;

const FKS_SQL: &str = r#"
SELECT c.conrelid, sn.nspname, s.relname, c.confrelid, tn.nspname, t.relname
  FROM pg_constraint c
  JOIN pg_class s ON s.oid = c.conrelid JOIN pg_namespace sn ON sn.oid = s.relnamespace
  JOIN pg_class t ON t.oid = c.confrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace
 WHERE c.contype = 'f' AND (c.conrelid = ANY($1) OR c.confrelid = ANY($1))
"#;

// Sequences owned by a column (serial, identity) and sequences named in a column default.
const SEQUENCES_SQL: &str = r#"
SELECT d.refobjid AS table_oid, a.attname, sn.nspname, s.relname
  FROM pg_depend d
  JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
  JOIN pg_namespace sn ON sn.oid = s.relnamespace
  JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
 WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
   AND d.deptype IN ('a', 'i') AND d.refobjid = ANY($1)
UNION
SELECT ad.adrelid, a.attname, sn.nspname, s.relname
  FROM pg_attrdef ad
  JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
  JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
                  AND d.refclassid = 'pg_class'::regclass
  JOIN pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'
  JOIN pg_namespace sn ON sn.oid = s.relnamespace
 WHERE ad.adrelid = ANY($1)
"#;

const TRIGGERS_SQL: &str = r#"
SELECT tgrelid, tgname FROM pg_trigger
 WHERE tgrelid = ANY($1) AND NOT tgisinternal
   AND tgname <> 'bucardo_delta' AND tgname NOT LIKE 'bucardo\_%'
 ORDER BY tgrelid, tgname
"#;

/// Lists tables in user schemas; `only` restricts to raw `schema.table` names.
pub async fn list_tables(
    client: &Client,
    side: Side,
    only: Option<&[TableName]>,
) -> Result<Vec<TableInfo>, EngineError> {
    let filter: Option<Vec<String>> = only.map(|l| l.iter().map(TableName::raw).collect());
    let rows = client
        .query(TABLES_SQL, &[&filter])
        .await
        .map_err(|e| EngineError::sql(side, "listing tables", &e))?;
    let mut tables: BTreeMap<u32, TableInfo> = BTreeMap::new();
    for r in rows {
        let oid: u32 = r.get(0);
        let relkind: String = r.get(3);
        tables.insert(
            oid,
            TableInfo {
                name: TableName::new(r.get::<_, String>(1), r.get::<_, String>(2)),
                oid,
                relkind: relkind.chars().next().unwrap_or('r'),
                is_partition: r.get(4),
                unlogged: r.get(5),
                est_rows: r.get(6),
                total_bytes: r.get(7),
                key_kind: KeyKind::None,
                key_columns: vec![],
                columns: vec![],
                sequences: vec![],
                fk_out: vec![],
                fk_in: vec![],
                large_object_columns: vec![],
                user_triggers: vec![],
            },
        );
    }
    if tables.is_empty() {
        return Ok(vec![]);
    }
    let oids: Vec<u32> = tables.keys().copied().collect();
    let q = |ctx: &'static str| move |e: tokio_postgres::Error| EngineError::sql(side, ctx, &e);

    for r in client.query(COLUMNS_SQL, &[&oids]).await.map_err(q("reading columns"))? {
        if let Some(t) = tables.get_mut(&r.get::<_, u32>(0)) {
            let name: String = r.get(1);
            if r.get::<_, bool>(5) {
                t.large_object_columns.push(name.clone());
            }
            t.columns.push(Column {
                name,
                type_name: r.get(2),
                not_null: r.get(3),
                generated: r.get(4),
            });
        }
    }
    for r in client.query(KEYS_SQL, &[&oids]).await.map_err(q("reading keys"))? {
        if let Some(t) = tables.get_mut(&r.get::<_, u32>(0)) {
            if t.key_kind != KeyKind::None {
                continue;
            }
            let primary: bool = r.get(1);
            let all_not_null: bool = r.get(3);
            if primary || all_not_null {
                t.key_kind = if primary { KeyKind::Primary } else { KeyKind::Unique };
                t.key_columns = r.get(2);
            }
        }
    }
    for r in client.query(FKS_SQL, &[&oids]).await.map_err(q("reading foreign keys"))? {
        let (from, to): (u32, u32) = (r.get(0), r.get(3));
        let from_name = TableName::new(r.get::<_, String>(1), r.get::<_, String>(2));
        let to_name = TableName::new(r.get::<_, String>(4), r.get::<_, String>(5));
        if let Some(t) = tables.get_mut(&from) {
            if !t.fk_out.contains(&to_name) {
                t.fk_out.push(to_name.clone());
            }
        }
        if let Some(t) = tables.get_mut(&to) {
            if !t.fk_in.contains(&from_name) {
                t.fk_in.push(from_name);
            }
        }
    }
    for r in client.query(SEQUENCES_SQL, &[&oids]).await.map_err(q("reading sequences"))? {
        if let Some(t) = tables.get_mut(&r.get::<_, u32>(0)) {
            let s = SequenceUse {
                sequence: TableName::new(r.get::<_, String>(2), r.get::<_, String>(3)),
                column: r.get(1),
            };
            if !t.sequences.contains(&s) {
                t.sequences.push(s);
            }
        }
    }
    for r in client.query(TRIGGERS_SQL, &[&oids]).await.map_err(q("reading triggers"))? {
        if let Some(t) = tables.get_mut(&r.get::<_, u32>(0)) {
            t.user_triggers.push(r.get(1));
        }
    }
    let mut out: Vec<TableInfo> = tables.into_values().collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Server facts the plan and preflight need.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub version: String,
    pub version_num: i32,
    pub is_superuser: bool,
}

pub async fn server_info(client: &Client, side: Side) -> Result<ServerInfo, EngineError> {
    let r = client
        .query_one(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int,
                    (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)",
            &[],
        )
        .await
        .map_err(|e| EngineError::sql(side, "reading the server version", &e))?;
    Ok(ServerInfo { version: r.get(0), version_num: r.get(1), is_superuser: r.get(2) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(kind: KeyKind, relkind: char, name: &str) -> TableInfo {
        TableInfo {
            name: TableName::new("public", name),
            oid: 1,
            relkind,
            is_partition: false,
            unlogged: false,
            est_rows: 0,
            total_bytes: 0,
            key_kind: kind,
            key_columns: vec![],
            columns: vec![],
            sequences: vec![],
            fk_out: vec![],
            fk_in: vec![],
            large_object_columns: vec![],
            user_triggers: vec![],
        }
    }

    #[test]
    fn eligibility_reasons() {
        assert!(t(KeyKind::Primary, 'r', "ok").is_eligible());
        assert!(t(KeyKind::Unique, 'r', "ok").is_eligible());
        let e = t(KeyKind::None, 'r', "nokey").eligibility().unwrap_err();
        assert!(e.contains("ADD PRIMARY KEY"), "{e}");
        assert!(t(KeyKind::Primary, 'p', "parent").eligibility().unwrap_err().contains("leaf"));
        assert!(!t(KeyKind::Primary, 'r', "we\"ird").is_eligible());
        let mut g = t(KeyKind::Primary, 'r', "gen");
        g.columns.push(Column {
            name: "x".into(),
            type_name: "int".into(),
            not_null: false,
            generated: true,
        });
        assert!(!g.is_eligible());
    }
}
