//! Introspection of HERE (and THERE): every table in a user schema with its size, estimated rows,
//! key, columns, foreign keys, sequences and the traits that decide whether Bucardo can replicate
//! it. A handful of set-based, parameterised queries rather than one round trip per table, so
//! that 10,000 tables list in about a second (`tests/bench_catalog.rs`).

use crate::engine::conn::Side;
use crate::engine::error::EngineError;
use crate::engine::generated::{self, GeneratedColumn};
use crate::engine::ident::{bucardo_cli_refusal, quote_ident, TableName};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use tokio_postgres::Client;

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
        let t = self.name.sql();
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
            out.push(Problem { reason, fix });
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
        let t = self.name.sql();
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
                reason: "UNLOGGED: PostgreSQL empties it after a crash on either side and Bucardo does not notice, so the sides then differ".into(),
                fix: Some(format!("ALTER TABLE {t} SET LOGGED;")),
            });
        }
        if !self.large_object_columns.is_empty() {
            out.push(Problem {
                reason: format!(
                    "column(s) {} hold large-object OIDs: Bucardo copies the numbers, not the large objects they point to",
                    self.large_object_columns.join(", ")
                ),
                fix: None,
            });
        }
        if !self.user_triggers.is_empty() {
            out.push(Problem {
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

// Sizes are estimated from `relpages` (table, TOAST table, indexes) as of the last VACUUM,
// ANALYZE or CREATE INDEX: `pg_total_relation_size` opens and stats every relation and index,
// seconds on a catalog of 10,000 tables. Tables never vacuumed or analyzed are measured exactly.
const TABLES_SQL: &str = r#"
SELECT c.oid, n.nspname, c.relname, c.relkind::text, c.relispartition,
       c.relpersistence = 'u' AS unlogged,
       greatest(c.reltuples, 0)::bigint AS est_rows,
       CASE WHEN c.reltuples < 0 THEN pg_total_relation_size(c.oid)
            ELSE (c.relpages::bigint + coalesce(tc.relpages, 0)
                  + coalesce((SELECT sum(ic.relpages) FROM pg_index i
                                JOIN pg_class ic ON ic.oid = i.indexrelid
                               WHERE i.indrelid = c.oid), 0))
                 * current_setting('block_size')::bigint
       END::bigint AS total_bytes,
       rn.nspname AS root_schema, r.relname AS root_name, r.oid AS root_oid
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_class tc ON tc.oid = c.reltoastrelid
  LEFT JOIN pg_class r ON r.oid = CASE WHEN c.relispartition THEN pg_partition_root(c.oid) END
  LEFT JOIN pg_namespace rn ON rn.oid = r.relnamespace
 WHERE c.relkind IN ('r', 'p')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'bucardo', 'bucardo_bootstrap')
   AND n.nspname NOT LIKE 'pg\_%'
   AND ($1::text[] IS NULL OR n.nspname || '.' || c.relname = ANY($1))
 ORDER BY n.nspname, c.relname
"#;

const COLUMNS_SQL: &str = r#"
SELECT a.attrelid, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       a.attgenerated <> '' AS generated,
       a.atttypid = 'oid'::regtype OR t.typbasetype = 'oid'::regtype AS large_object
  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
 WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attrelid, a.attnum
"#;

// Every valid unique index; its key column numbers are resolved against COLUMNS_SQL's rows.
const KEYS_SQL: &str = r#"
SELECT i.indrelid, i.indexrelid, i.indisprimary, ic.relname,
       i.indpred IS NOT NULL AS partial, i.indexprs IS NOT NULL AS expressions,
       (i.indkey::int2[])[0:i.indnkeyatts - 1] AS keys
  FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
 WHERE i.indrelid = ANY($1) AND i.indisunique AND i.indisvalid
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
 ORDER BY x.relid, x.attnum, sn.nspname, s.relname
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
    // Partition → the root of its tree: a sequence the root's column uses feeds every leaf.
    let mut roots: BTreeMap<u32, u32> = BTreeMap::new();
    for r in rows {
        if let Some(root) = r.get::<_, Option<u32>>(10) {
            roots.insert(r.get(0), root);
        }
        let oid: u32 = r.get(0);
        let relkind: String = r.get(3);
        let root: (Option<String>, Option<String>) = (r.get(8), r.get(9));
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
                partition_root: match root {
                    (Some(s), Some(n)) => Some(TableName::new(s, n)),
                    _ => None,
                },
                ..TableInfo::default()
            },
        );
    }
    if tables.is_empty() {
        return Ok(vec![]);
    }
    let oids: Vec<u32> = tables.keys().copied().collect();
    let q = |ctx: &'static str| move |e: tokio_postgres::Error| EngineError::sql(side, ctx, &e);

    // (table, column number) → index into that table's columns.
    let mut attnums: HashMap<(u32, i16), usize> = HashMap::new();
    for r in client
        .query(COLUMNS_SQL, &[&oids])
        .await
        .map_err(q("reading columns"))?
    {
        let oid: u32 = r.get(0);
        if let Some(t) = tables.get_mut(&oid) {
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
        }
    }
    let column = |tables: &BTreeMap<u32, TableInfo>, oid: u32, attnum: i16| -> Option<Column> {
        let i = attnums.get(&(oid, attnum))?;
        tables.get(&oid)?.columns.get(*i).cloned()
    };

    // Primary key first, then unique indexes by column count, as Bucardo's validate_goat picks.
    let mut keys: Vec<(u32, bool, usize, u32, KeyRejection)> = Vec::new();
    for r in client
        .query(KEYS_SQL, &[&oids])
        .await
        .map_err(q("reading keys"))?
    {
        let oid: u32 = r.get(0);
        let attnums: Vec<i16> = r.get(6);
        let cols: Vec<Column> = attnums
            .iter()
            .filter_map(|a| column(&tables, oid, *a))
            .collect();
        let rejection = KeyRejection {
            index: r.get(3),
            partial: r.get(4),
            expressions: r.get(5),
            nullable: cols
                .iter()
                .filter(|c| !c.not_null)
                .map(|c| c.name.clone())
                .collect(),
            columns: cols.into_iter().map(|c| c.name).collect(),
        };
        keys.push((oid, r.get(2), attnums.len(), r.get(1), rejection));
    }
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

    let parents: Vec<u32> = tables
        .values()
        .filter(|t| t.relkind == 'p')
        .map(|t| t.oid)
        .collect();
    if !parents.is_empty() {
        for r in client
            .query(PARTITIONS_SQL, &[&parents])
            .await
            .map_err(q("reading partitions"))?
        {
            if let Some(t) = tables.get_mut(&r.get::<_, u32>(0)) {
                t.partitions
                    .push(TableName::new(r.get::<_, String>(1), r.get::<_, String>(2)));
            }
        }
    }
    let fks: Vec<(u32, u32)> = client
        .query(FKS_SQL, &[&oids])
        .await
        .map_err(q("reading foreign keys"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut names: HashMap<u32, TableName> = tables
        .iter()
        .map(|(oid, t)| (*oid, t.name.clone()))
        .collect();
    let others: Vec<u32> = fks
        .iter()
        .flat_map(|(a, b)| [*a, *b])
        .filter(|o| !names.contains_key(o))
        .collect::<std::collections::BTreeSet<u32>>()
        .into_iter()
        .collect();
    if !others.is_empty() {
        for r in client
            .query(NAMES_SQL, &[&others])
            .await
            .map_err(q("reading foreign keys"))?
        {
            names.insert(
                r.get(0),
                TableName::new(r.get::<_, String>(1), r.get::<_, String>(2)),
            );
        }
    }
    for (from, to) in fks {
        let (Some(from_name), Some(to_name)) = (names.get(&from), names.get(&to)) else {
            continue;
        };
        if let Some(t) = tables.get_mut(&from) {
            if !t.fk_out.contains(to_name) {
                t.fk_out.push(to_name.clone());
            }
        }
        if let Some(t) = tables.get_mut(&to) {
            if !t.fk_in.contains(from_name) {
                t.fk_in.push(from_name.clone());
            }
        }
    }
    let mut seq_oids = oids.clone();
    seq_oids.extend(roots.values().filter(|r| !tables.contains_key(r)));
    let mut root_columns: HashMap<(u32, i16), String> = HashMap::new();
    if seq_oids.len() > oids.len() {
        for r in client
            .query(ROOT_COLUMNS_SQL, &[&seq_oids[oids.len()..].to_vec()])
            .await
            .map_err(q("reading columns"))?
        {
            root_columns.insert((r.get(0), r.get(1)), r.get(2));
        }
    }
    let mut uses: Vec<(u32, SequenceUse)> = Vec::new();
    for r in client
        .query(SEQUENCES_SQL, &[&seq_oids])
        .await
        .map_err(q("reading sequences"))?
    {
        let oid: u32 = r.get(0);
        let attnum: i16 = r.get(1);
        let Some(col) = column(&tables, oid, attnum)
            .map(|c| c.name)
            .or_else(|| root_columns.get(&(oid, attnum)).cloned())
        else {
            continue;
        };
        uses.push((
            oid,
            SequenceUse {
                sequence: TableName::new(r.get::<_, String>(2), r.get::<_, String>(3)),
                column: col,
            },
        ));
    }
    for (oid, u) in uses {
        // A root's sequence (an identity or serial column of a partitioned table) feeds its
        // leaves, which inherit the column by name.
        let owners: Vec<u32> = std::iter::once(oid)
            .chain(
                roots
                    .iter()
                    .filter(|(_, r)| **r == oid)
                    .map(|(leaf, _)| *leaf),
            )
            .collect();
        for owner in owners {
            if let Some(t) = tables.get_mut(&owner) {
                if !t.sequences.contains(&u) {
                    t.sequences.push(u.clone());
                }
            }
        }
    }
    for r in client
        .query(TRIGGERS_SQL, &[&oids, &generated::TRIGGER])
        .await
        .map_err(q("reading triggers"))?
    {
        if let Some(t) = tables.get_mut(&r.get::<_, u32>(0)) {
            t.user_triggers.push(r.get(1));
        }
    }
    let any_generated = tables
        .values()
        .any(|t| t.columns.iter().any(|c| c.generated));
    for (oid, cols) in generated::read(client, side, &oids, any_generated).await? {
        if let Some(t) = tables.get_mut(&oid) {
            t.generation = cols;
        }
    }
    let mut out: Vec<TableInfo> = tables.into_values().collect();
    for t in &mut out {
        t.fk_out.sort();
        t.fk_in.sort();
    }
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
