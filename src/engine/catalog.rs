//! Introspection of HERE (and THERE): every table in a user schema with its size, estimated rows,
//! key, columns, foreign keys, sequences and the traits that decide whether Bucardo can replicate
//! it. A handful of set-based, parameterised queries, pipelined, rather than one round trip per
//! table, so that 10,000 tables list in under half a second (`tests/bench_catalog.rs`).

use crate::engine::conn::Side;
use crate::engine::error::EngineError;
use crate::engine::generated::{self, GeneratedColumn};
use crate::engine::ident::{bucardo_cli_refusal, quote_ident, TableName};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyKind {
    Primary,
    /// A unique index that is not partial, has no expressions, and whose columns are NOT NULL.
    Unique,
    #[default]
    None,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub type_name: String,
    pub not_null: bool,
    /// A generated (stored) column: never copied, PostgreSQL computes it. False for one that
    /// `--convert-generated` makes plain (see [`TableInfo::generation`]).
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
    /// `reltuples` as of the last VACUUM or ANALYZE.
    pub est_rows: i64,
    /// Table, TOAST and indexes, estimated from `relpages` like `est_rows` (measured exactly for
    /// a table never vacuumed or analyzed).
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
    /// For a partitioned parent: its leaf partitions (at any depth), by name.
    #[serde(default)]
    pub partitions: Vec<TableName>,
    /// For a partition: the partitioned table at the top of its tree.
    #[serde(default)]
    pub partition_root: Option<TableName>,
    /// When there is no usable key: why each unique index does not count.
    #[serde(default)]
    pub key_rejections: Vec<KeyRejection>,
    /// Its stored generated columns with their expressions, and those `--convert-generated`
    /// turned into plain columns computed by a trigger (see [`crate::engine::generated`]).
    #[serde(default)]
    pub generation: Vec<GeneratedColumn>,
}

impl TableInfo {
    /// Its lists to their lengths: they grew one push at a time, and the run holds every chosen
    /// table (5 MB of spare room at 10,000 tables, each with a foreign key and a sequence).
    fn shrink_to_fit(&mut self) {
        self.key_columns.shrink_to_fit();
        self.columns.shrink_to_fit();
        self.sequences.shrink_to_fit();
        self.fk_out.shrink_to_fit();
        self.fk_in.shrink_to_fit();
        self.large_object_columns.shrink_to_fit();
        self.user_triggers.shrink_to_fit();
        self.partitions.shrink_to_fit();
        self.key_rejections.shrink_to_fit();
        self.generation.shrink_to_fit();
    }
}

/// A unique index that cannot serve as Bucardo's key, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRejection {
    pub index: String,
    pub columns: Vec<String>,
    pub partial: bool,
    pub expressions: bool,
    /// Key columns that allow NULL.
    pub nullable: Vec<String>,
}

impl KeyRejection {
    pub fn reason(&self) -> String {
        let mut why = Vec::new();
        if self.partial {
            why.push("is partial (WHERE ...)".to_string());
        }
        if self.expressions {
            why.push("indexes an expression".to_string());
        }
        if !self.nullable.is_empty() {
            why.push(format!(
                "has nullable column(s) {}",
                self.nullable.join(", ")
            ));
        }
        format!("unique index {} {}", self.index, why.join(" and "))
    }
}

/// Why a table cannot be replicated, or what to watch out for, with the SQL that fixes it when
/// there is one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// What kind of problem, the same for every table that has it: "triggers", "unlogged", ...
    pub kind: &'static str,
    pub reason: String,
    pub fix: Option<String>,
}

impl Default for TableInfo {
    fn default() -> Self {
        TableInfo {
            name: TableName::new("public", ""),
            oid: 0,
            relkind: 'r',
            is_partition: false,
            unlogged: false,
            est_rows: 0,
            total_bytes: 0,
            key_kind: KeyKind::None,
            key_columns: vec![],
            columns: vec![],
            sequences: vec![],
            fk_out: vec![],
            fk_in: vec![],
            large_object_columns: vec![],
            user_triggers: vec![],
            partitions: vec![],
            partition_root: None,
            key_rejections: vec![],
            generation: vec![],
        }
    }
}

impl TableInfo {
    /// `Ok` when Bucardo can replicate the table, else every reason and how to fix it.
    pub fn eligibility(&self) -> Result<(), String> {
        let b = self.blockers();
        if b.is_empty() {
            return Ok(());
        }
        Err(b
            .iter()
            .map(|p| match &p.fix {
                Some(f) => format!("{}; fix: {f}", p.reason),
                None => p.reason.clone(),
            })
            .collect::<Vec<_>>()
            .join("; "))
    }

    pub fn is_eligible(&self) -> bool {
        self.blockers().is_empty()
    }

    /// What keeps Bucardo from replicating the table.
    pub fn blockers(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let t = self.name.quoted();
        if self.relkind == 'p' {
            let (reason, fix) = if self.partitions.is_empty() {
                ("partitioned parent without partitions: Bucardo replicates only leaf partitions".to_string(), None)
            } else {
                let leaves: Vec<String> = self.partitions.iter().map(ToString::to_string).collect();
                (
                    format!(
                        "partitioned parent: Bucardo replicates only its leaf partitions: {}",
                        leaves.join(", ")
                    ),
                    Some(format!(
                        "choose the leaves instead: --tables {}",
                        leaves.join(",")
                    )),
                )
            };
            out.push(Problem {
                kind: "partitioned parent",
                reason,
                fix,
            });
        } else if self.key_kind == KeyKind::None {
            let mut reason = "no primary key or usable unique index".to_string();
            for r in &self.key_rejections {
                reason.push_str(&format!("; {}", r.reason()));
            }
            let mut fix = format!("ALTER TABLE {t} ADD PRIMARY KEY (...);");
            if let Some(r) = self
                .key_rejections
                .iter()
                .find(|r| !r.partial && !r.expressions)
            {
                let cols: Vec<String> = r.columns.iter().map(|c| quote_ident(c)).collect();
                fix = format!("ALTER TABLE {t} ADD PRIMARY KEY ({});", cols.join(", "));
            }
            out.push(Problem {
                kind: "no key",
                reason,
                fix: Some(fix),
            });
        }
        if let Some(reason) = bucardo_cli_refusal(&self.name) {
            let prefix = format!("{}: ", self.name);
            let reason = reason
                .strip_prefix(&prefix)
                .map(str::to_string)
                .unwrap_or(reason);
            let fix =
                if bucardo_cli_refusal(&TableName::new(self.name.schema.clone(), "x")).is_some() {
                    format!(
                        "ALTER SCHEMA {} RENAME TO {};",
                        quote_ident(&self.name.schema),
                        quote_ident(&cli_safe(&self.name.schema))
                    )
                } else {
                    format!(
                        "ALTER TABLE {t} RENAME TO {};",
                        quote_ident(&cli_safe(&self.name.name))
                    )
                };
            out.push(Problem {
                kind: "name",
                reason,
                fix: Some(fix),
            });
        }
        let generated: Vec<&str> = self
            .columns
            .iter()
            .filter(|c| c.generated)
            .map(|c| c.name.as_str())
            .collect();
        let inherited = crate::engine::generated::inherited_only(self);
        if !generated.is_empty() && !inherited.is_empty() {
            out.push(Problem {
                kind: "inherited generated columns",
                reason: format!(
                    "generated column(s) {} inherited from a parent table (INHERITS): Bucardo copies every column and PostgreSQL refuses to write a generated one, and --convert-generated does not convert an inherited column",
                    inherited.join(", ")
                ),
                fix: Some(format!(
                    "convert the parent's column by hand (ALTER TABLE parent ALTER COLUMN ... DROP EXPRESSION reaches {t}, plus a BEFORE INSERT OR UPDATE trigger on each table), or leave the table out"
                )),
            });
        } else if !generated.is_empty() {
            let on = crate::engine::generated::target(self).sql();
            let by_hand = self
                .columns
                .iter()
                .filter(|c| c.generated)
                .map(|c| {
                    format!(
                        "ALTER TABLE {on} ALTER COLUMN {} DROP EXPRESSION;",
                        quote_ident(&c.name)
                    )
                })
                .collect::<Vec<_>>()
                .join(" ");
            out.push(Problem {
                kind: "generated columns",
                reason: format!(
                    "generated column(s) {}: Bucardo copies every column and PostgreSQL refuses to write a generated one, so the table is not replicable as it is; --convert-generated would convert it: {}",
                    generated.join(", "),
                    crate::engine::generated::explain(self)
                ),
                fix: Some(format!(
                    "rerun with --convert-generated, or leave the table out; by hand (the column is then no longer computed): {by_hand}"
                )),
            });
        }
        out
    }

    /// What replicates, but not quite as an operator may expect.
    pub fn cautions(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let t = self.name.quoted();
        let converted: Vec<String> = self
            .generation
            .iter()
            .filter(|g| {
                self.columns
                    .iter()
                    .any(|c| c.name == g.column && !c.generated)
            })
            .map(|g| quote_ident(&g.column))
            .collect();
        if !converted.is_empty() {
            out.push(Problem {
                kind: "converted columns",
                reason: format!(
                    "generated column(s) {} are converted (--convert-generated): {}",
                    converted.join(", "),
                    crate::engine::generated::explain(self)
                ),
                fix: None,
            });
        }
        if self.unlogged {
            out.push(Problem {
                kind: "unlogged",
                reason: "UNLOGGED: PostgreSQL empties it after a crash on either side and Bucardo does not notice, so the sides then differ".into(),
                fix: Some(format!("ALTER TABLE {t} SET LOGGED;")),
            });
        }
        if !self.large_object_columns.is_empty() {
            out.push(Problem {
                kind: "large objects",
                reason: format!(
                    "column(s) {} hold large-object OIDs: Bucardo copies the numbers, not the large objects they point to",
                    self.large_object_columns.join(", ")
                ),
                fix: None,
            });
        }
        if !self.user_triggers.is_empty() {
            out.push(Problem {
                kind: "triggers",
                reason: format!(
                    "trigger(s) {} do not fire for the rows Bucardo applies or the data copy loads (session_replication_role = replica): what they maintain must be replicated too",
                    self.user_triggers.join(", ")
                ),
                fix: None,
            });
        }
        out
    }

    /// Columns that are copied (all but generated ones), in table order.
    pub fn copy_columns(&self) -> Vec<&Column> {
        self.columns.iter().filter(|c| !c.generated).collect()
    }
}

/// A name Bucardo's CLI takes: every other character becomes `_`, and no leading `-`.
fn cli_safe(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    match s.strip_prefix('-') {
        Some(rest) => format!("_{rest}"),
        None => s,
    }
}

/// The tables a listing covers, `c` in `pg_class c JOIN pg_namespace n`: tables and partitioned
/// tables in user schemas; $1, when not NULL, the raw `schema.table` names to keep.
macro_rules! user_tables {
    () => {
        r#" c.relkind IN ('r', 'p')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'bucardo', 'bucardo_bootstrap')
   AND n.nspname NOT LIKE 'pg\_%'
   AND ($1::text[] IS NULL OR n.nspname || '.' || c.relname = ANY($1))"#
    };
}

// Sizes are estimated from `relpages` (table, TOAST table, and indexes from INDEXES_SQL) as of
// the last VACUUM, ANALYZE or CREATE INDEX: `pg_total_relation_size` opens and stats every
// relation and index, seconds on a catalog of 10,000 tables. Tables never vacuumed or analyzed
// are measured exactly. No ORDER BY here or below where the order can be had in memory: sorting
// 10,000 tables' rows cost the server more than the rest of the query.
const TABLES_SQL: &str = concat!(
    r#"
SELECT c.oid, n.nspname, c.relname, c.relkind::text, c.relispartition,
       c.relpersistence = 'u' AS unlogged,
       greatest(c.reltuples, 0)::bigint AS est_rows,
       CASE WHEN c.reltuples < 0 THEN pg_total_relation_size(c.oid) END AS exact_bytes,
       c.relpages::bigint + coalesce(tc.relpages, 0) AS pages,
       (SELECT current_setting('block_size')::bigint) AS block_size,
       rn.nspname AS root_schema, r.relname AS root_name, r.oid AS root_oid
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_class tc ON tc.oid = c.reltoastrelid
  LEFT JOIN pg_class r ON r.oid = CASE WHEN c.relispartition THEN pg_partition_root(c.oid) END
  LEFT JOIN pg_namespace rn ON rn.oid = r.relnamespace
 WHERE"#,
    user_tables!()
);

// The same tables by name, and whether each heap may hold a row ({size}: see PRESENCE_SQL).
const SHAPE_TABLES_SQL: &str = concat!(
    "SELECT c.oid, n.nspname, c.relname, coalesce({size}, 1) > 0 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE",
    user_tables!()
);

// Their columns, for a listing of names and columns only ([`list_shapes`]).
const SHAPE_COLUMNS_SQL: &str = concat!(
    r#"
SELECT a.attrelid, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       a.attgenerated <> '' AS generated
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE"#,
    user_tables!()
);

// Their records of converted generated columns (see `generated::read_converted`); $2 the
// trigger's name.
const SHAPE_CONVERTED_SQL: &str = concat!(
    r#"
SELECT t.tgrelid, coalesce(obj_description(t.tgfoid, 'pg_proc'), '')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_trigger t ON t.tgrelid = c.oid AND t.tgname = $2
 WHERE"#,
    user_tables!()
);

// The queries below take the OIDs TABLES_SQL found: `= ANY` over a constant array is hashed,
// and on a catalog of 10,000 tables most of them ran faster so than joined to `user_tables!`
// again (keys 26 ms against 64, triggers 5 against 20, by EXPLAIN ANALYZE).
const COLUMNS_SQL: &str = r#"
SELECT a.attrelid, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       a.attgenerated <> '' AS generated,
       a.atttypid = 'oid'::regtype OR t.typbasetype = 'oid'::regtype AS large_object
  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
 WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attrelid, a.attnum
"#;

// Every index, for the tables' sizes; the valid unique ones are candidate keys, their key column
// numbers resolved against COLUMNS_SQL's rows.
const INDEXES_SQL: &str = r#"
SELECT i.indrelid, i.indexrelid, i.indisprimary, ic.relname,
       i.indpred IS NOT NULL AS partial, i.indexprs IS NOT NULL AS expressions,
       (i.indkey::int2[])[0:i.indnkeyatts - 1] AS keys,
       i.indisunique AND i.indisvalid AS unique_valid, ic.relpages::bigint
  FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
 WHERE i.indrelid = ANY($1)
"#;

// The leaf partitions of partitioned parents, at any depth.
const PARTITIONS_SQL: &str = r#"
SELECT p.relid, n.nspname, c.relname
  FROM unnest($1::oid[]) AS p(relid)
  CROSS JOIN LATERAL pg_partition_tree(p.relid) AS t
  JOIN pg_class c ON c.oid = t.relid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE t.isleaf AND t.relid <> p.relid
 ORDER BY p.relid, n.nspname, c.relname
"#;

// Foreign keys touching the listed tables; names of the tables at the other end that are not
// listed come from NAMES_SQL.
const FKS_SQL: &str = r#"
SELECT DISTINCT c.conrelid, c.confrelid
  FROM pg_constraint c
 WHERE c.contype = 'f' AND (c.conrelid = ANY($1) OR c.confrelid = ANY($1))
"#;

const NAMES_SQL: &str = r#"
SELECT c.oid, n.nspname, c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = ANY($1)
"#;

// Sequences owned by a column (serial, identity) and sequences named in a column default, by
// column number.
const SEQUENCES_SQL: &str = r#"
SELECT x.relid, x.attnum, sn.nspname, s.relname
  FROM (SELECT d.refobjid AS relid, d.refobjsubid::int2 AS attnum, d.objid AS seq
          FROM pg_depend d
         WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
           AND d.deptype IN ('a', 'i') AND d.refobjid = ANY($1) AND d.refobjsubid > 0
        UNION
        SELECT ad.adrelid, ad.adnum, d.refobjid
          FROM pg_attrdef ad
          JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
                          AND d.refclassid = 'pg_class'::regclass
         WHERE ad.adrelid = ANY($1)) AS x
  JOIN pg_class s ON s.oid = x.seq AND s.relkind = 'S'
  JOIN pg_namespace sn ON sn.oid = s.relnamespace
"#;

// Column names of partition roots that are not listed themselves (a `--tables` list of leaves).
const ROOT_COLUMNS_SQL: &str = r#"
SELECT attrelid, attnum, attname FROM pg_attribute
 WHERE attrelid = ANY($1) AND attnum > 0 AND NOT attisdropped
"#;

const TRIGGERS_SQL: &str = r#"
SELECT tgrelid, tgname FROM pg_trigger
 WHERE tgrelid = ANY($1) AND NOT tgisinternal
   AND tgname <> 'bucardo_delta' AND tgname NOT LIKE 'bucardo\_%' AND tgname <> $2
"#;

/// Lists tables in user schemas; `only` restricts to raw `schema.table` names.
///
/// One query finds the tables; the others (columns, keys, foreign keys, sequences, triggers,
/// generated columns) go out together, pipelined, and the rows are put in order here. The
/// session runs them without parallel workers and gets its setting back after: on a catalog of
/// 10,000 tables, starting workers cost more than they saved (with psql, the tables' query took
/// 85 ms against 120, the sequences' 100 against 140).
pub async fn list_tables(
    client: &Client,
    side: Side,
    only: Option<&[TableName]>,
) -> Result<Vec<TableInfo>, EngineError> {
    list_tables_on(client, client, side, only).await
}

/// [`list_tables`] on two sessions of the same database, `a` and `b` (or the same one twice):
/// the queries are shared out between them, so that two server processes work at once. On a
/// catalog of 10,000 tables that halves the time the server takes.
pub async fn list_tables_on(
    a: &Client,
    b: &Client,
    side: Side,
    only: Option<&[TableName]>,
) -> Result<Vec<TableInfo>, EngineError> {
    let two = !std::ptr::eq(a, b);
    let (restore_a, restore_b) = tokio::try_join!(without_parallel_workers(a, side), async {
        if two {
            without_parallel_workers(b, side).await.map(Some)
        } else {
            Ok(None)
        }
    },)?;
    let listed = read_tables(a, b, side, only).await;
    let mut restored = restore(a, side, &restore_a).await;
    if let Some(old) = restore_b {
        restored = restored.and(restore(b, side, &old).await);
    }
    let listed = listed?;
    restored?;
    Ok(listed)
}

async fn restore(c: &Client, side: Side, old: &str) -> Result<(), EngineError> {
    c.execute(
        "SELECT set_config('max_parallel_workers_per_gather', $1, false)",
        &[&old],
    )
    .await
    .map(drop)
    .map_err(|e| EngineError::sql(side, "restoring max_parallel_workers_per_gather", &e))
}

/// Turns parallel query off for the session; returns the setting to restore.
async fn without_parallel_workers(client: &Client, side: Side) -> Result<String, EngineError> {
    let messages = client
        .simple_query(
            "SHOW max_parallel_workers_per_gather; SET max_parallel_workers_per_gather = 0",
        )
        .await
        .map_err(|e| EngineError::sql(side, "turning parallel query off", &e))?;
    Ok(messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap_or_else(|| "2".to_string()))
}

/// Each row of a query made into a `T` as it arrives, so that no result is ever held whole as
/// rows (at 10,000 tables the rows of the catalog's queries took 20 MB at once).
async fn each_row<T>(
    client: &Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    mut f: impl FnMut(Row) -> T,
) -> Result<Vec<T>, tokio_postgres::Error> {
    let rows = client.query_raw(sql, params.iter().copied()).await?;
    futures_util::pin_mut!(rows);
    let mut out = Vec::new();
    while let Some(r) = rows.try_next().await? {
        out.push(f(r));
    }
    Ok(out)
}

/// A table's name by OID: one of the tables read, else one of `others`.
fn name_of(
    tables: &HashMap<u32, TableInfo>,
    others: &HashMap<u32, TableName>,
    oid: u32,
) -> Option<TableName> {
    tables
        .get(&oid)
        .map(|t| &t.name)
        .or_else(|| others.get(&oid))
        .cloned()
}

/// An index as [`INDEXES_SQL`] reads it: table, index, primary, name, partial, expressions,
/// key column numbers, unique and valid, pages.
type IndexRow = (u32, u32, bool, String, bool, bool, Vec<i16>, bool, i64);

async fn read_tables(
    a: &Client,
    b: &Client,
    side: Side,
    only: Option<&[TableName]>,
) -> Result<Vec<TableInfo>, EngineError> {
    let filter: Option<Vec<String>> = only.map(|l| l.iter().map(TableName::raw).collect());
    let mut tables: HashMap<u32, TableInfo> = HashMap::new();
    // Partition → the root of its tree: a sequence the root's column uses feeds every leaf.
    let mut roots: BTreeMap<u32, u32> = BTreeMap::new();
    // Tables measured by their pages: (table and TOAST pages, block size); indexes add theirs.
    let mut pages: HashMap<u32, (i64, i64)> = HashMap::new();
    each_row(a, TABLES_SQL, &[&filter], |r| {
        if let Some(root) = r.get::<_, Option<u32>>(12) {
            roots.insert(r.get(0), root);
        }
        let oid: u32 = r.get(0);
        let relkind: &str = r.get(3);
        let exact: Option<i64> = r.get(7);
        if exact.is_none() {
            pages.insert(oid, (r.get(8), r.get(9)));
        }
        let root: (Option<String>, Option<String>) = (r.get(10), r.get(11));
        tables.insert(
            oid,
            TableInfo {
                name: TableName::new(r.get::<_, String>(1), r.get::<_, String>(2)),
                oid,
                relkind: relkind.chars().next().unwrap_or('r'),
                is_partition: r.get(4),
                unlogged: r.get(5),
                est_rows: r.get(6),
                total_bytes: exact.unwrap_or(0),
                partition_root: match root {
                    (Some(s), Some(n)) => Some(TableName::new(s, n)),
                    _ => None,
                },
                ..TableInfo::default()
            },
        );
    })
    .await
    .map_err(|e| EngineError::sql(side, "listing tables", &e))?;
    if tables.is_empty() {
        return Ok(vec![]);
    }
    let mut oids: Vec<u32> = tables.keys().copied().collect();
    oids.sort_unstable();
    let q = |ctx: &'static str| move |e: tokio_postgres::Error| EngineError::sql(side, ctx, &e);

    let parents: Vec<u32> = tables
        .values()
        .filter(|t| t.relkind == 'p')
        .map(|t| t.oid)
        .collect();
    let mut seq_oids = oids.clone();
    let mut outside: Vec<u32> = roots
        .values()
        .filter(|r| !tables.contains_key(r))
        .copied()
        .collect();
    outside.sort_unstable();
    outside.dedup();
    seq_oids.extend(&outside);
    // (table, column number) → index into that table's columns.
    let mut attnums: HashMap<(u32, i16), usize> = HashMap::new();
    let (_, indexes, partitions, fks, root_columns, sequences, triggers, converted) = tokio::try_join!(
        // The largest result (a row per column), in the tables' column order: each column goes
        // to its table as it arrives.
        async {
            each_row(a, COLUMNS_SQL, &[&oids], |r| {
                let oid: u32 = r.get(0);
                let Some(t) = tables.get_mut(&oid) else {
                    return;
                };
                let name: String = r.get(2);
                if r.get::<_, bool>(6) {
                    t.large_object_columns.push(name.clone());
                }
                attnums.insert((oid, r.get(1)), t.columns.len());
                t.columns.push(Column {
                    name,
                    type_name: r.get(3),
                    not_null: r.get(4),
                    generated: r.get(5),
                });
            })
            .await
            .map_err(q("reading columns"))
        },
        async {
            each_row(b, INDEXES_SQL, &[&oids], |r| -> IndexRow {
                (
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    r.get(3),
                    r.get(4),
                    r.get(5),
                    r.get(6),
                    r.get(7),
                    r.get(8),
                )
            })
            .await
            .map_err(q("reading keys"))
        },
        async {
            if parents.is_empty() {
                return Ok(vec![]);
            }
            each_row(b, PARTITIONS_SQL, &[&parents], |r| {
                (
                    r.get::<_, u32>(0),
                    TableName::new(r.get::<_, String>(1), r.get::<_, String>(2)),
                )
            })
            .await
            .map_err(q("reading partitions"))
        },
        async {
            each_row(a, FKS_SQL, &[&oids], |r| {
                (r.get::<_, u32>(0), r.get::<_, u32>(1))
            })
            .await
            .map_err(q("reading foreign keys"))
        },
        async {
            if outside.is_empty() {
                return Ok(vec![]);
            }
            each_row(b, ROOT_COLUMNS_SQL, &[&outside], |r| {
                (
                    (r.get::<_, u32>(0), r.get::<_, i16>(1)),
                    r.get::<_, String>(2),
                )
            })
            .await
            .map_err(q("reading columns"))
        },
        async {
            each_row(b, SEQUENCES_SQL, &[&seq_oids], |r| {
                (
                    r.get::<_, u32>(0),
                    r.get::<_, i16>(1),
                    TableName::new(r.get::<_, String>(2), r.get::<_, String>(3)),
                )
            })
            .await
            .map_err(q("reading sequences"))
        },
        async {
            each_row(a, TRIGGERS_SQL, &[&oids, &generated::TRIGGER], |r| {
                (r.get::<_, u32>(0), r.get::<_, String>(1))
            })
            .await
            .map_err(q("reading triggers"))
        },
        generated::read_converted(a, side, &oids),
    )?;
    fn column<'a>(
        tables: &'a HashMap<u32, TableInfo>,
        attnums: &HashMap<(u32, i16), usize>,
        oid: u32,
        attnum: i16,
    ) -> Option<&'a Column> {
        tables.get(&oid)?.columns.get(*attnums.get(&(oid, attnum))?)
    }

    for r in &indexes {
        if let Some(p) = pages.get_mut(&r.0) {
            p.0 += r.8;
        }
    }
    for (oid, (pages, block_size)) in pages {
        if let Some(t) = tables.get_mut(&oid) {
            t.total_bytes = pages * block_size;
        }
    }
    // Primary key first, then unique indexes by column count, as Bucardo's validate_goat picks.
    let mut keys: Vec<(u32, bool, usize, u32, KeyRejection)> = indexes
        .into_iter()
        .filter(|r| r.7)
        .map(
            |(oid, index, primary, name, partial, expressions, key, _, _)| {
                let cols: Vec<&Column> = key
                    .iter()
                    .filter_map(|a| column(&tables, &attnums, oid, *a))
                    .collect();
                let rejection = KeyRejection {
                    index: name,
                    partial,
                    expressions,
                    nullable: cols
                        .iter()
                        .filter(|c| !c.not_null)
                        .map(|c| c.name.clone())
                        .collect(),
                    columns: cols.iter().map(|c| c.name.clone()).collect(),
                };
                (oid, primary, key.len(), index, rejection)
            },
        )
        .collect();
    keys.sort_by_key(|(oid, primary, n, index, _)| (*oid, !*primary, *n, *index));
    for (oid, primary, _, _, rejection) in keys {
        let Some(t) = tables.get_mut(&oid) else {
            continue;
        };
        if t.key_kind != KeyKind::None {
            continue;
        }
        let usable = !rejection.partial
            && !rejection.expressions
            && !rejection.columns.is_empty()
            && (primary || rejection.nullable.is_empty());
        if usable {
            t.key_kind = if primary {
                KeyKind::Primary
            } else {
                KeyKind::Unique
            };
            t.key_columns = rejection.columns;
            t.key_rejections.clear();
        } else {
            t.key_rejections.push(rejection);
        }
    }

    for (oid, name) in partitions {
        if let Some(t) = tables.get_mut(&oid) {
            t.partitions.push(name);
        }
    }
    let mut others: Vec<u32> = fks
        .iter()
        .flat_map(|(a, b)| [*a, *b])
        .filter(|o| !tables.contains_key(o))
        .collect();
    others.sort_unstable();
    others.dedup();
    let mut other_names: HashMap<u32, TableName> = HashMap::new();
    if !others.is_empty() {
        for r in a
            .query(NAMES_SQL, &[&others])
            .await
            .map_err(q("reading foreign keys"))?
        {
            other_names.insert(
                r.get(0),
                TableName::new(r.get::<_, String>(1), r.get::<_, String>(2)),
            );
        }
    }
    for (from, to) in fks {
        let (Some(from_name), Some(to_name)) = (
            name_of(&tables, &other_names, from),
            name_of(&tables, &other_names, to),
        ) else {
            continue;
        };
        if let Some(t) = tables.get_mut(&from) {
            if !t.fk_out.contains(&to_name) {
                t.fk_out.push(to_name);
            }
        }
        if let Some(t) = tables.get_mut(&to) {
            if !t.fk_in.contains(&from_name) {
                t.fk_in.push(from_name);
            }
        }
    }
    let root_columns: HashMap<(u32, i16), String> = root_columns.into_iter().collect();
    // In the order of table, column number and sequence name.
    let mut uses: Vec<(u32, i16, SequenceUse)> = Vec::new();
    for (oid, attnum, sequence) in sequences {
        let Some(col) = column(&tables, &attnums, oid, attnum)
            .map(|c| c.name.clone())
            .or_else(|| root_columns.get(&(oid, attnum)).cloned())
        else {
            continue;
        };
        uses.push((
            oid,
            attnum,
            SequenceUse {
                sequence,
                column: col,
            },
        ));
    }
    uses.sort_by(|a, b| (a.0, a.1, &a.2.sequence).cmp(&(b.0, b.1, &b.2.sequence)));
    // A root's sequence (an identity or serial column of a partitioned table) feeds its leaves,
    // which inherit the column by name.
    let mut leaves: HashMap<u32, Vec<u32>> = HashMap::new();
    for (leaf, root) in &roots {
        leaves.entry(*root).or_default().push(*leaf);
    }
    for (oid, _, u) in uses {
        let owners = std::iter::once(oid).chain(leaves.get(&oid).into_iter().flatten().copied());
        for owner in owners {
            if let Some(t) = tables.get_mut(&owner) {
                if !t.sequences.contains(&u) {
                    t.sequences.push(u.clone());
                }
            }
        }
    }
    let mut triggers = triggers;
    triggers.sort_unstable();
    for (oid, name) in triggers {
        if let Some(t) = tables.get_mut(&oid) {
            t.user_triggers.push(name);
        }
    }
    let any_generated = tables
        .values()
        .any(|t| t.columns.iter().any(|c| c.generated));
    let expressions = if any_generated {
        generated::read_expressions(a, side, &oids).await?
    } else {
        HashMap::new()
    };
    for (oid, cols) in generated::merge(expressions, converted) {
        if let Some(t) = tables.get_mut(&oid) {
            t.generation = cols;
        }
    }
    let mut out: Vec<TableInfo> = tables.into_values().collect();
    for t in &mut out {
        t.fk_out.sort();
        t.fk_in.sort();
        t.shrink_to_fit();
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// A table's name and columns: what THERE's copy of a table must match of HERE's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    pub name: TableName,
    pub columns: Vec<Column>,
    /// Columns an earlier `--convert-generated` made plain, computed by its trigger.
    pub converted: Vec<String>,
    /// Its heap has pages (or could not be measured): it may hold rows ([`holding_rows`] tells).
    /// Without pages it holds none.
    pub pages: bool,
}

/// The tables of [`list_tables`] with their columns only, sorted by name: a few queries,
/// pipelined, where a full listing takes a dozen.
pub async fn list_shapes(
    client: &Client,
    side: Side,
    only: Option<&[TableName]>,
) -> Result<Vec<Shape>, EngineError> {
    let filter: Option<Vec<String>> = only.map(|l| l.iter().map(TableName::raw).collect());
    let q = |ctx: &'static str| move |e: tokio_postgres::Error| EngineError::sql(side, ctx, &e);
    let tables_sql = SHAPE_TABLES_SQL.replace("{size}", main_fork_size(client, side).await?);
    let (names, columns, converted) = tokio::try_join!(
        async {
            client
                .query(tables_sql.as_str(), &[&filter])
                .await
                .map_err(q("listing tables"))
        },
        async {
            client
                .query(SHAPE_COLUMNS_SQL, &[&filter])
                .await
                .map_err(q("reading columns"))
        },
        async {
            client
                .query(SHAPE_CONVERTED_SQL, &[&filter, &generated::TRIGGER])
                .await
                .map_err(q("reading converted generated columns"))
        },
    )?;
    let mut shapes: HashMap<u32, Shape> = names
        .iter()
        .map(|r| {
            let shape = Shape {
                name: TableName::new(r.get::<_, String>(1), r.get::<_, String>(2)),
                columns: vec![],
                converted: vec![],
                pages: r.get(3),
            };
            (r.get(0), shape)
        })
        .collect();
    let mut columns: Vec<(u32, i16, tokio_postgres::Row)> = columns
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r))
        .collect();
    columns.sort_unstable_by_key(|(oid, attnum, _)| (*oid, *attnum));
    for (oid, _, r) in columns {
        if let Some(t) = shapes.get_mut(&oid) {
            t.columns.push(Column {
                name: r.get(2),
                type_name: r.get(3),
                not_null: r.get(4),
                generated: r.get(5),
            });
        }
    }
    let converted = converted.iter().map(|r| (r.get(0), r.get(1))).collect();
    for (oid, cols) in generated::merge(HashMap::new(), converted) {
        if let Some(t) = shapes.get_mut(&oid) {
            t.converted = cols.into_iter().map(|c| c.column).collect();
        }
    }
    let mut out: Vec<Shape> = shapes.into_values().collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

// Which of the tables ($1, $2) exist, by position, and whether each may hold a row: its main
// fork's first segment has bytes, or could not be measured (a heap without pages holds no row).
// {size} is the size of `c`'s main fork.
const PRESENCE_SQL: &str = r#"
SELECT t.i::int, coalesce({size}, 1) > 0
  FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(schema, name, i)
  JOIN pg_namespace n ON n.nspname = t.schema
  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.name
 WHERE c.relkind IN ('r', 'p')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'bucardo', 'bucardo_bootstrap')
   AND n.nspname NOT LIKE 'pg\_%'
"#;

// The file's size, where the role may call `pg_stat_file`: `pg_relation_size` opens and locks
// every table, and on a fresh session 10,000 of them took 340 to 430 ms against 70 to 120 ms
// this way. PostgreSQL checks EXECUTE when the query starts, so the privilege picks the query
// (a CASE would not keep a role without it from failing).
const STAT_SIZE: &str = "(pg_stat_file(pg_relation_filepath(c.oid), true)).size";
const RELATION_SIZE: &str = "pg_relation_size(c.oid)";

/// The SQL for the size of `c`'s main fork that this session may run.
async fn main_fork_size(client: &Client, side: Side) -> Result<&'static str, EngineError> {
    let stat: bool = client
        .query_one(
            "SELECT has_function_privilege('pg_catalog.pg_stat_file(text, boolean)', 'EXECUTE')",
            &[],
        )
        .await
        .map_err(|e| EngineError::sql(side, "checking the privilege to stat files", &e))?
        .get(0);
    Ok(if stat { STAT_SIZE } else { RELATION_SIZE })
}

/// Which of a list of tables exist, and which of those hold rows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Presence {
    /// The tables that exist (as [`list_tables`] would list them), in the order given.
    pub existing: Vec<TableName>,
    /// Those that hold at least one row, in the order given; empty unless asked for.
    pub nonempty: Vec<TableName>,
}

/// Which of `tables` exist and, with `rows`, which of those hold at least one row. Tables whose
/// heap has no page are empty without looking; the others are looked into ([`holding_rows`]).
pub async fn presence(
    client: &Client,
    side: Side,
    tables: &[TableName],
    rows: bool,
) -> Result<Presence, EngineError> {
    if tables.is_empty() {
        return Ok(Presence::default());
    }
    let sql = PRESENCE_SQL.replace("{size}", main_fork_size(client, side).await?);
    let schemas: Vec<&str> = tables.iter().map(|t| t.schema.as_str()).collect();
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    let mut found: Vec<(usize, bool)> = client
        .query(sql.as_str(), &[&schemas, &names])
        .await
        .map_err(|e| EngineError::sql(side, "looking for the chosen tables", &e))?
        .iter()
        .map(|r| (r.get::<_, i32>(0) as usize - 1, r.get(1)))
        .collect();
    found.sort_unstable();
    let existing = found.iter().map(|(i, _)| tables[*i].clone()).collect();
    let nonempty = if rows {
        let candidates: Vec<&TableName> = found
            .iter()
            .filter(|(_, pages)| *pages)
            .map(|(i, _)| &tables[*i])
            .collect();
        holding_rows(client, side, &candidates).await?
    } else {
        vec![]
    };
    Ok(Presence { existing, nonempty })
}

/// The tables among `tables` that hold at least one row, in the order given ([`presence`]).
pub async fn nonempty(
    client: &Client,
    side: Side,
    tables: &[TableName],
) -> Result<Vec<TableName>, EngineError> {
    Ok(presence(client, side, tables, true).await?.nonempty)
}

/// The tables among `tables` that hold at least one row, in the order given, a few hundred per
/// query. Each is opened and planned for: leave out first what has no pages.
pub async fn holding_rows(
    client: &Client,
    side: Side,
    tables: &[&TableName],
) -> Result<Vec<TableName>, EngineError> {
    let mut out = Vec::new();
    for chunk in tables.chunks(200) {
        let sql = chunk
            .iter()
            .enumerate()
            .map(|(i, t)| format!("SELECT {i} WHERE EXISTS (SELECT 1 FROM ONLY {})", t.sql()))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let mut found: Vec<usize> = client
            .query(sql.as_str(), &[])
            .await
            .map_err(|e| EngineError::sql(side, "looking for rows in the chosen tables", &e))?
            .iter()
            .map(|r| r.get::<_, i32>(0) as usize)
            .collect();
        found.sort_unstable();
        out.extend(found.into_iter().map(|i| chunk[i].clone()));
    }
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
    Ok(ServerInfo {
        version: r.get(0),
        version_num: r.get(1),
        is_superuser: r.get(2),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(kind: KeyKind, relkind: char, name: &str) -> TableInfo {
        TableInfo {
            name: TableName::new("public", name),
            oid: 1,
            relkind,
            key_kind: kind,
            ..TableInfo::default()
        }
    }

    #[test]
    fn eligibility_reasons() {
        assert!(t(KeyKind::Primary, 'r', "ok").is_eligible());
        assert!(t(KeyKind::Unique, 'r', "ok").is_eligible());
        let e = t(KeyKind::None, 'r', "nokey").eligibility().unwrap_err();
        assert!(e.contains("ADD PRIMARY KEY"), "{e}");
        assert!(t(KeyKind::Primary, 'p', "parent")
            .eligibility()
            .unwrap_err()
            .contains("leaf"));
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
