//! Stored generated columns, made replicable on request (`--convert-generated`). Bucardo 5.6
//! copies every column of `SELECT *` and PostgreSQL refuses to write a generated column, so such
//! a table cannot be replicated as it is. The conversion keeps what the application sees: each
//! generated column becomes a plain column (`DROP EXPRESSION`: no rewrite, a brief ACCESS
//! EXCLUSIVE lock) that an ordinary `BEFORE INSERT OR UPDATE` row trigger computes from the same
//! expression. Bucardo applies rows with `session_replication_role = replica`, so the trigger does
//! not fire there and the value computed on the side that wrote the row is carried as is.
//!
//! This module owns the SQL: reading the expressions, the conversion (one transaction per table
//! and side, rerunnable), the record that lets `cleanup` find and undo it (a JSON comment on the
//! trigger function), and the undo. PostgreSQL has no statement that makes a plain column
//! generated again (`SET EXPRESSION`, PostgreSQL 17, only changes the expression of a column that
//! is generated already), so the undo adds a new generated column, drops the old one and renames
//! the new one: a table rewrite. Cleanup does it only where that is invisible to the application
//! (see [`restore_blockers`]); elsewhere it leaves the trigger-computed column and says so.

use crate::engine::catalog::TableInfo;
use crate::engine::conn::{ConnSpec, Side};
use crate::engine::error::EngineError;
use crate::engine::ident::{quote_ident, quote_literal, TableName};
use crate::engine::plan::Command;
use crate::engine::settings::Settings;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::Duration;
use tokio_postgres::Client;

/// The trigger on every converted table. PostgreSQL computes generated columns after every
/// BEFORE trigger, and fires BEFORE triggers in name order: a name that sorts late keeps that.
pub const TRIGGER: &str = "zzz_bucardo_bootstrap_gen";

/// Every trigger function this tool creates starts with this (in the table's schema).
pub const FUNCTION_PREFIX: &str = "bucardo_bootstrap_gen_";

/// How long the conversion waits for its lock on HERE before it gives way to the application
/// (the executor's session also gives way to deadlocks: [`crate::engine::giveway`]).
pub const LOCK_TIMEOUT: Duration = crate::engine::giveway::MAX_LOCK_TIMEOUT;

/// How many times the conversion of one table on HERE is tried.
pub const ATTEMPTS: u32 = crate::engine::giveway::ATTEMPTS;

/// Tables above this size are not rewritten by `cleanup` to restore their generated columns.
pub const RESTORE_MAX_BYTES: i64 = 256 << 20;

/// What the function's comment starts with; JSON follows.
const RECORD_TAG: &str =
    "bucardo-bootstrap: generated columns computed by this trigger; cleanup restores them: ";

/// The alias of the row in the trigger's query, unlikely to be a column name (a column of the
/// same name would win anyway: PostgreSQL resolves a bare name to a column first).
const ROW_ALIAS: &str = "bucardo_bootstrap_row";

/// One generated column: generated now, or converted by this tool and computed by its trigger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratedColumn {
    pub column: String,
    /// `format_type`, e.g. `numeric(12,2)`.
    pub type_name: String,
    pub not_null: bool,
    /// `pg_get_expr` with an empty `search_path`: every name outside `pg_catalog` qualified.
    pub expression: String,
    /// Inherited from a parent table: a partition's column is converted on its partitioned
    /// table; a column inherited the old way (INHERITS) is not converted.
    #[serde(default)]
    pub inherited: bool,
}

/// The record kept in the trigger function's comment.
#[derive(Serialize, Deserialize)]
struct Record {
    table: TableName,
    columns: Vec<GeneratedColumn>,
}

// Expressions of stored generated columns; run with an empty search_path.
const EXPRESSIONS_SQL: &str = r#"
SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), a.attinhcount > 0
  FROM pg_attribute a
  JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = 's'
 ORDER BY a.attrelid, a.attnum
"#;

// Tables converted by this tool, with the record its function carries.
const CONVERTED_SQL: &str = r#"
SELECT t.tgrelid, coalesce(obj_description(t.tgfoid, 'pg_proc'), '')
  FROM pg_trigger t
 WHERE t.tgrelid = ANY($1) AND t.tgname = $2
"#;

/// The stored generated columns of the given tables with their expressions, by table OID.
/// Changes the session's `search_path` for the one query: run it alone on the session.
pub async fn read_expressions(
    client: &Client,
    side: Side,
    oids: &[u32],
) -> Result<HashMap<u32, Vec<GeneratedColumn>>, EngineError> {
    let mut out: HashMap<u32, Vec<GeneratedColumn>> = HashMap::new();
    // pg_get_expr leaves out the schema of what the search_path shows: with an empty one,
    // the expression means the same in any session.
    let old: String = client
        .query_one("SELECT current_setting('search_path')", &[])
        .await
        .map_err(|e| EngineError::sql(side, "reading search_path", &e))?
        .get(0);
    client
        .execute("SELECT set_config('search_path', '', false)", &[])
        .await
        .map_err(|e| EngineError::sql(side, "clearing search_path", &e))?;
    let rows = client.query(EXPRESSIONS_SQL, &[&oids]).await;
    client
        .execute("SELECT set_config('search_path', $1, false)", &[&old])
        .await
        .map_err(|e| EngineError::sql(side, "restoring search_path", &e))?;
    for r in rows.map_err(|e| EngineError::sql(side, "reading generated columns", &e))? {
        out.entry(r.get(0)).or_default().push(GeneratedColumn {
            column: r.get(1),
            type_name: r.get(2),
            not_null: r.get(3),
            expression: r.get(4),
            inherited: r.get(5),
        });
    }
    Ok(out)
}

/// The records of the given tables that an earlier conversion left on [`TRIGGER`]'s function,
/// by table OID (see [`merge`]).
pub async fn read_converted(
    client: &Client,
    side: Side,
    oids: &[u32],
) -> Result<Vec<(u32, String)>, EngineError> {
    Ok(client
        .query(CONVERTED_SQL, &[&oids, &TRIGGER])
        .await
        .map_err(|e| EngineError::sql(side, "reading converted generated columns", &e))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// The generated columns of tables, by table OID: stored generated columns with their
/// expressions ([`read_expressions`]), then columns an earlier conversion left computed by
/// [`TRIGGER`] ([`read_converted`]).
pub fn merge(
    mut expressions: HashMap<u32, Vec<GeneratedColumn>>,
    converted: Vec<(u32, String)>,
) -> HashMap<u32, Vec<GeneratedColumn>> {
    for (oid, comment) in converted {
        let Some(rec) = parse_record(&comment) else {
            continue;
        };
        let cols = expressions.entry(oid).or_default();
        for c in rec.columns {
            if !cols.iter().any(|x| x.column == c.column) {
                cols.push(c);
            }
        }
    }
    expressions
}

/// With `--convert-generated`, the tables as they will be once converted: their generated
/// columns are plain (copied, compared by `verify`). Without it, nothing changes and the table's
/// blocker explains the choice.
pub fn opt_in(tables: &mut [TableInfo], convert: bool) {
    if !convert {
        return;
    }
    for t in tables {
        for g in &t.generation {
            if g.inherited && !t.is_partition {
                continue;
            }
            if let Some(c) = t.columns.iter_mut().find(|c| c.name == g.column) {
                c.generated = false;
            }
        }
    }
}

/// The table the conversion alters: a partition's partitioned table (PostgreSQL drops the
/// expression of a partition's column only there, and the trigger reaches every partition from
/// there), else the table itself.
pub fn target(t: &TableInfo) -> TableName {
    match (&t.partition_root, t.is_partition) {
        (Some(root), true) => root.clone(),
        _ => t.name.clone(),
    }
}

/// Columns inherited the old way (INHERITS), which the conversion leaves alone.
pub fn inherited_only(t: &TableInfo) -> Vec<&str> {
    t.generation
        .iter()
        .filter(|g| g.inherited && !t.is_partition)
        .map(|g| g.column.as_str())
        .collect()
}

/// What the conversion does, for the explanation without the opt-in and the caution with it.
pub fn explain(t: &TableInfo) -> String {
    let on = if target(t) == t.name {
        String::new()
    } else {
        format!(
            " on its partitioned table {} (so on every partition)",
            target(t)
        )
    };
    format!(
        "ALTER COLUMN ... DROP EXPRESSION{on} on HERE and THERE (no table rewrite, a brief lock), and an ordinary BEFORE INSERT OR UPDATE trigger {TRIGGER} (function {}) that computes the same expression; the application sees the same values; `cleanup` makes the columns generated again where the application cannot tell (else it says why and prints the SQL)",
        function_name(&target(t))
    )
}

/// The trigger function of a table, in the table's schema: a recognisable prefix, the table's
/// name cut to fit, and a hash of the full name so that two long names never collide.
pub fn function_name(t: &TableName) -> TableName {
    let hash = hex::encode(&Sha256::digest(t.raw().as_bytes())[..4]);
    let room = 63 - FUNCTION_PREFIX.len() - 1 - hash.len();
    let mut stem = String::new();
    for ch in t.name.chars() {
        let ch = if ch.is_ascii_alphanumeric() || ch == '_' {
            ch.to_ascii_lowercase()
        } else {
            '_'
        };
        if stem.len() + ch.len_utf8() > room {
            break;
        }
        stem.push(ch);
    }
    TableName::new(t.schema.clone(), format!("{FUNCTION_PREFIX}{stem}_{hash}"))
}

fn record(t: &TableName, cols: &[GeneratedColumn]) -> String {
    let json = serde_json::to_string(&Record {
        table: t.clone(),
        columns: cols.to_vec(),
    })
    .unwrap_or_default();
    format!("{RECORD_TAG}{json}")
}

fn parse_record(comment: &str) -> Option<Record> {
    serde_json::from_str(comment.strip_prefix(RECORD_TAG)?).ok()
}

/// A dollar-quote tag that does not occur in `body`.
fn dollar_tag(body: &str) -> String {
    let mut tag = "$bucardo_bootstrap$".to_string();
    let mut n = 0;
    while body.contains(&tag) {
        n += 1;
        tag = format!("$bucardo_bootstrap{n}$");
    }
    tag
}

/// The trigger function: one query computes every generated column of the row from the row
/// itself. `#variable_conflict use_column` lets columns named like PL/pgSQL variables (`found`,
/// `new`) mean the column; the subquery makes every column of NEW a column of the query.
pub fn function_sql(t: &TableName, cols: &[GeneratedColumn]) -> String {
    let exprs: Vec<String> = cols.iter().map(|c| format!("({})", c.expression)).collect();
    let targets: Vec<String> = cols
        .iter()
        .map(|c| format!("NEW.{}", quote_ident(&c.column)))
        .collect();
    let body = format!(
        "\n#variable_conflict use_column\nBEGIN\n  SELECT {} INTO {} FROM (SELECT NEW.*) AS {ROW_ALIAS};\n  RETURN NEW;\nEND\n",
        exprs.join(", "),
        targets.join(", ")
    );
    let tag = dollar_tag(&body);
    format!(
        "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS {tag}{body}{tag};",
        function_name(t).sql()
    )
}

/// The conversion of one table on one side, one transaction, and rerunnable: `DROP EXPRESSION IF
/// EXISTS` leaves a converted column alone, the function is replaced, the trigger recreated.
/// With `lock_timeout` (HERE) the lock wait gives way to the application: it ends before the
/// application's deadlock check (half the server's `deadlock_timeout`, as
/// [`crate::engine::giveway`] does), and after `lock_timeout` at most.
pub fn convert_sql(
    t: &TableName,
    cols: &[GeneratedColumn],
    lock_timeout: Option<Duration>,
) -> String {
    let tn = t.sql();
    let f = function_name(t).sql();
    let mut out = String::from("BEGIN;\n");
    if let Some(d) = lock_timeout {
        out.push_str(&format!(
            "SELECT set_config('lock_timeout', greatest(2, least({}, (SELECT reset_val::bigint / 2 FROM pg_settings WHERE name = 'deadlock_timeout'))) || 'ms', true);\n",
            d.as_millis()
        ));
    }
    let drops: Vec<String> = cols
        .iter()
        .map(|c| {
            format!(
                "ALTER COLUMN {} DROP EXPRESSION IF EXISTS",
                quote_ident(&c.column)
            )
        })
        .collect();
    out.push_str(&format!("ALTER TABLE {tn} {};\n", drops.join(", ")));
    out.push_str(&function_sql(t, cols));
    out.push('\n');
    out.push_str(&format!(
        "COMMENT ON FUNCTION {f}() IS {};\n",
        quote_literal(&record(t, cols))
    ));
    out.push_str(&format!(
        "DROP TRIGGER IF EXISTS {TRIGGER} ON {tn};\nCREATE TRIGGER {TRIGGER} BEFORE INSERT OR UPDATE ON {tn} FOR EACH ROW EXECUTE FUNCTION {f}();\nCOMMIT;"
    ));
    out
}

/// The plan's step: its one-line reason and a SQL command per table and side. `None` when no
/// chosen table has a generated column to convert (or converted by an earlier run).
pub fn plan_step(s: &Settings, tables: &[TableInfo]) -> Option<(String, Vec<Command>)> {
    let todo: Vec<&TableInfo> = tables
        .iter()
        .filter(|t| {
            !t.generation.is_empty()
                && t.generation
                    .iter()
                    .all(|g| t.columns.iter().any(|c| c.name == g.column && !c.generated))
        })
        .collect();
    if todo.is_empty() {
        return None;
    }
    // Partitions of one partitioned table are converted once, there.
    let mut targets: Vec<(TableName, &[GeneratedColumn])> = Vec::new();
    for t in &todo {
        let on = target(t);
        if !targets.iter().any(|(n, _)| *n == on) {
            targets.push((on, &t.generation));
        }
    }
    let mut cmds = Vec::new();
    for (on, cols) in &targets {
        for (side, spec, timeout) in [
            (Side::Here, &s.here, Some(LOCK_TIMEOUT)),
            (Side::There, &s.there, None),
        ] {
            cmds.push(Command::Sql {
                side,
                target: spec.clone(),
                sql: convert_sql(on, cols, timeout),
                secret: crate::engine::plan::SqlSecret::None,
            });
        }
    }
    let cols: usize = todo.iter().map(|t| t.generation.len()).sum();
    Some((
        format!(
            "--convert-generated: {cols} generated column(s) in {} table(s) (a partition's on its partitioned table) become plain columns that a BEFORE INSERT OR UPDATE trigger computes, on both sides (Bucardo cannot write a generated column); on HERE each table's lock wait ends before the application's deadlock check (after {} ms at most) and is retried later, so the application waits on it that long at most",
            todo.len(),
            LOCK_TIMEOUT.as_millis()
        ),
        cmds,
    ))
}

/// The script's form of the step: HERE's commands retried like the live run retries them.
/// `psql` renders one command as a psql call with the SQL in a `<<'SQL'` heredoc.
pub fn script(cmds: &[Command], psql: impl Fn(&ConnSpec, &str) -> String) -> String {
    let mut out = String::new();
    for c in cmds {
        let Command::Sql {
            side, target, sql, ..
        } = c
        else {
            continue;
        };
        let run = psql(target, sql);
        if *side != Side::Here {
            out.push_str(&run);
            continue;
        }
        // `&& break` belongs on the line that opens the heredoc.
        let (first, rest) = run.split_once('\n').unwrap_or((&run, ""));
        out.push_str(&format!(
            "for i in $(seq 1 {ATTEMPTS}); do\n{first} && break\n{rest}[ \"$i\" = {ATTEMPTS} ] && {{ echo 'the conversion never got its lock on HERE' >&2; exit 1; }}\nsleep 1\ndone\n"
        ));
    }
    out
}

/// A table this tool converted, found on one side by its trigger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Converted {
    pub table: TableName,
    pub columns: Vec<GeneratedColumn>,
    pub function: String,
    /// Why restoring by rewrite would change what the application sees; empty when it would not.
    pub blockers: Vec<String>,
    /// Column comments to put back after the rename.
    pub comments: Vec<(String, String)>,
    pub bytes: i64,
}

// Every table with this tool's trigger, its function and record, size, and the column order.
const FIND_SQL: &str = r#"
SELECT n.nspname, c.relname,
       (SELECT quote_ident(pn.nspname) || '.' || quote_ident(p.proname) || '()'
          FROM pg_proc p JOIN pg_namespace pn ON pn.oid = p.pronamespace WHERE p.oid = t.tgfoid),
       coalesce(obj_description(t.tgfoid, 'pg_proc'), ''),
       greatest(pg_table_size(c.oid),
                (SELECT sum(pg_table_size(p.relid)) FROM pg_partition_tree(c.oid) p))::bigint,
       array(SELECT a.attname::text FROM pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum),
       c.oid
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE t.tgname = $1 AND t.tgparentid = 0
 ORDER BY 1, 2
"#;

// What depends on a column of the table or of any of its partitions (views, indexes,
// constraints, statistics, policies...), column privileges, and the table's column comment.
const DEPENDENTS_SQL: &str = r#"
SELECT a.attname::text, a.attrelid = $1::oid,
       array(SELECT pg_describe_object(d.classid, d.objid, d.objsubid)
               FROM pg_depend d
              WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = a.attrelid
                AND d.refobjsubid = a.attnum AND d.deptype <> 'i'
              ORDER BY 1),
       a.attacl IS NOT NULL, a.attgenerated <> '', col_description(a.attrelid, a.attnum)
  FROM pg_attribute a
 WHERE (a.attrelid = $1::oid OR a.attrelid IN (SELECT relid FROM pg_partition_tree($1::oid)))
   AND a.attname = ANY($2)
   AND NOT a.attisdropped
"#;

/// The tables converted on one side, each with what keeps cleanup from restoring it.
pub async fn find_converted(c: &Client, side: Side) -> Result<Vec<Converted>, EngineError> {
    let q = |e: tokio_postgres::Error| {
        EngineError::sql(side, "looking for converted generated columns", &e)
    };
    let mut out = Vec::new();
    for r in c.query(FIND_SQL, &[&TRIGGER]).await.map_err(q)? {
        let table = TableName::new(r.get::<_, String>(0), r.get::<_, String>(1));
        let function: String = r.get(2);
        let comment: String = r.get(3);
        let bytes: i64 = r.get(4);
        let order: Vec<String> = r.get(5);
        let oid: u32 = r.get(6);
        let mut conv = Converted {
            table: table.clone(),
            columns: vec![],
            function,
            blockers: vec![],
            comments: vec![],
            bytes,
        };
        let Some(rec) = parse_record(&comment) else {
            conv.blockers
                .push("its function's comment, which recorded the expressions, was changed".into());
            out.push(conv);
            continue;
        };
        conv.columns = rec.columns;
        let names: Vec<String> = conv.columns.iter().map(|g| g.column.clone()).collect();
        let mut seen = 0;
        for d in c.query(DEPENDENTS_SQL, &[&oid, &names]).await.map_err(q)? {
            let col: String = d.get(0);
            let own: bool = d.get(1);
            seen += usize::from(own);
            let deps: Vec<String> = d.get(2);
            let acl: bool = d.get(3);
            let generated: bool = d.get(4);
            if generated {
                conv.blockers
                    .push(format!("column {} is generated already", quote_ident(&col)));
            }
            if !deps.is_empty() {
                conv.blockers.push(format!(
                    "{} depend(s) on column {}",
                    deps.join(", "),
                    quote_ident(&col)
                ));
            }
            if acl {
                conv.blockers.push(format!(
                    "column {} has column privileges",
                    quote_ident(&col)
                ));
            }
            if let Some(comment) = d.get::<_, Option<String>>(5) {
                if own {
                    conv.comments.push((col, comment));
                } else {
                    conv.blockers.push(format!(
                        "a partition's column {} has a comment",
                        quote_ident(&col)
                    ));
                }
            }
        }
        if seen < names.len() {
            conv.blockers
                .push("a column the record names no longer exists".into());
        }
        conv.blockers.extend(restore_blockers(&order, &names));
        out.push(conv);
    }
    Ok(out)
}

/// Why adding the columns again at the end of the table would change its column order (what
/// `SELECT *` and an INSERT without a column list see): only trailing columns keep their place.
pub fn restore_blockers(order: &[String], converted: &[String]) -> Vec<String> {
    let tail = &order[order.len().saturating_sub(converted.len())..];
    let mut want: Vec<&String> = converted.iter().collect();
    let mut have: Vec<&String> = tail.iter().collect();
    want.sort();
    have.sort();
    if want == have {
        vec![]
    } else {
        vec![format!(
            "column(s) {} are not the last of the table, and adding them again would move them to the end",
            converted
                .iter()
                .map(|c| quote_ident(c))
                .collect::<Vec<_>>()
                .join(", ")
        )]
    }
}

/// Restores the generated columns of a converted table (one implicit transaction): new generated
/// columns at the end, the old ones dropped, the new ones renamed, comments put back, then the
/// trigger and its function dropped. Rewrites the table under an ACCESS EXCLUSIVE lock.
pub fn restore_sql(conv: &Converted, order: &[String]) -> String {
    let tn = conv.table.sql();
    // The restored columns go in the table's order.
    let mut cols: Vec<&GeneratedColumn> = conv.columns.iter().collect();
    cols.sort_by_key(|g| order.iter().position(|o| *o == g.column));
    let tmp = |i: usize| format!("bucardo_bootstrap_restore_{i}");
    let mut parts: Vec<String> = Vec::new();
    for (i, g) in cols.iter().enumerate() {
        parts.push(format!(
            "ADD COLUMN {} {} GENERATED ALWAYS AS ({}) STORED{}",
            tmp(i),
            g.type_name,
            g.expression,
            if g.not_null { " NOT NULL" } else { "" }
        ));
    }
    for g in &cols {
        parts.push(format!("DROP COLUMN {}", quote_ident(&g.column)));
    }
    let mut out = format!("ALTER TABLE {tn} {};\n", parts.join(", "));
    for (i, g) in cols.iter().enumerate() {
        out.push_str(&format!(
            "ALTER TABLE {tn} RENAME COLUMN {} TO {};\n",
            tmp(i),
            quote_ident(&g.column)
        ));
    }
    for (col, comment) in &conv.comments {
        out.push_str(&format!(
            "COMMENT ON COLUMN {tn}.{} IS {};\n",
            quote_ident(col),
            quote_literal(comment)
        ));
    }
    out.push_str(&format!(
        "DROP TRIGGER IF EXISTS {TRIGGER} ON {tn};\nDROP FUNCTION IF EXISTS {}",
        conv.function
    ));
    out
}

/// Cleanup's part for one side: the restores it carries out, and for each table it leaves
/// converted, a note saying so, why, and the SQL to restore it by hand.
pub async fn undo(c: &Client, side: Side) -> Result<(Vec<String>, Vec<String>), EngineError> {
    let mut actions = Vec::new();
    let mut notes = Vec::new();
    for mut conv in find_converted(c, side).await? {
        let order: Vec<String> = c
            .query_one(
                "SELECT array(SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped ORDER BY attnum)",
                &[&conv.table.sql()],
            )
            .await
            .map_err(|e| EngineError::sql(side, "reading columns", &e))?
            .get(0);
        if conv.bytes > RESTORE_MAX_BYTES {
            conv.blockers.push(format!(
                "the table holds {}, and the restore rewrites it under an ACCESS EXCLUSIVE lock (more than {} is left to a maintenance window)",
                crate::engine::plan::human_bytes(conv.bytes),
                crate::engine::plan::human_bytes(RESTORE_MAX_BYTES)
            ));
        }
        let cols: Vec<String> = conv
            .columns
            .iter()
            .map(|g| quote_ident(&g.column))
            .collect();
        if conv.blockers.is_empty() {
            actions.push(restore_sql(&conv, &order));
            notes.push(format!(
                "{side}: {}: column(s) {} are made generated again, in their place; this rewrites the table ({}) under an ACCESS EXCLUSIVE lock, then drops trigger {TRIGGER} and function {}",
                conv.table,
                cols.join(", "),
                crate::engine::plan::human_bytes(conv.bytes),
                conv.function
            ));
            continue;
        }
        let by_hand = if conv.columns.is_empty() {
            String::new()
        } else {
            format!(
                " To make them generated again by hand (this rewrites the table under an ACCESS EXCLUSIVE lock, and puts the columns at the end):\n{}",
                restore_sql(&conv, &order)
            )
        };
        notes.push(format!(
            "{side}: {}: column(s) {} are left as plain columns that trigger {TRIGGER} (function {}) computes, as during replication: the application sees the same values. Not restored because {}.{by_hand}",
            conv.table,
            cols.join(", "),
            conv.function,
            conv.blockers.join("; ")
        ));
    }
    Ok((actions, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, expr: &str) -> GeneratedColumn {
        GeneratedColumn {
            column: name.into(),
            type_name: "numeric(12,2)".into(),
            not_null: false,
            expression: expr.into(),
            inherited: false,
        }
    }

    #[test]
    fn the_opt_in_makes_the_table_eligible_and_copies_the_column() {
        use crate::engine::catalog::{Column, KeyKind};
        let column = |name: &str, generated| Column {
            name: name.into(),
            type_name: "integer".into(),
            not_null: true,
            generated,
        };
        let mut t = TableInfo {
            name: TableName::new("public", "t"),
            key_kind: KeyKind::Primary,
            key_columns: vec!["id".into()],
            columns: vec![column("id", false), column("Line Total", true)],
            generation: vec![col("Line Total", "(id * 2)")],
            ..TableInfo::default()
        };
        let mut tables = vec![t.clone()];
        opt_in(&mut tables, false);
        assert_eq!(tables[0], t, "nothing changes without the flag");
        let why = t.eligibility().unwrap_err();
        assert!(
            why.contains("not replicable") && why.contains("--convert-generated would convert it"),
            "{why}"
        );
        assert_eq!(t.copy_columns().len(), 1);
        opt_in(std::slice::from_mut(&mut t), true);
        assert!(t.is_eligible(), "{:?}", t.eligibility());
        assert_eq!(t.copy_columns().len(), 2, "the converted column is copied");
        let cautions = t.cautions();
        assert!(
            cautions
                .iter()
                .any(|p| p.reason.contains("\"Line Total\" are converted")),
            "{cautions:?}"
        );
    }

    #[test]
    fn an_inherited_column_is_not_converted_but_a_partitions_is_on_its_root() {
        use crate::engine::catalog::{Column, KeyKind};
        let mut child = TableInfo {
            name: TableName::new("public", "child"),
            key_kind: KeyKind::Primary,
            key_columns: vec!["id".into()],
            columns: vec![Column {
                name: "g".into(),
                type_name: "integer".into(),
                not_null: false,
                generated: true,
            }],
            generation: vec![GeneratedColumn {
                inherited: true,
                ..col("g", "(id + 1)")
            }],
            ..TableInfo::default()
        };
        opt_in(std::slice::from_mut(&mut child), true);
        let why = child.eligibility().unwrap_err();
        assert!(
            why.contains("INHERITS") && !why.contains("--convert-generated would"),
            "{why}"
        );
        assert_eq!(target(&child), child.name);

        let mut leaf = child.clone();
        leaf.name = TableName::new("public", "leaf_2025");
        leaf.is_partition = true;
        leaf.partition_root = Some(TableName::new("public", "parent"));
        opt_in(std::slice::from_mut(&mut leaf), true);
        assert!(leaf.is_eligible(), "{:?}", leaf.eligibility());
        assert_eq!(target(&leaf), TableName::new("public", "parent"));
        assert!(explain(&leaf).contains("on its partitioned table public.parent"));
    }

    #[test]
    fn function_names_fit_and_differ() {
        let long = "x".repeat(80);
        let a = function_name(&TableName::new("public", format!("{long}a")));
        let b = function_name(&TableName::new("public", format!("{long}b")));
        assert!(
            a.name.len() <= 63 && a.name.starts_with(FUNCTION_PREFIX),
            "{a:?}"
        );
        assert_ne!(a, b);
        let odd = function_name(&TableName::new("Sales", "Order \"Items\" é"));
        assert_eq!(odd.schema, "Sales");
        assert!(odd
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
    }

    #[test]
    fn conversion_sql_is_one_rerunnable_transaction() {
        let t = TableName::new("Sales", "Order Items");
        let cols = [
            col("Line Total", r#"("Unit Price" * (qty)::numeric)"#),
            col("found", "(qty + 1)"),
        ];
        let sql = convert_sql(&t, &cols, Some(Duration::from_millis(500)));
        assert!(
            sql.starts_with("BEGIN;\nSELECT set_config('lock_timeout', greatest(2, least(500, (SELECT reset_val::bigint / 2 FROM pg_settings WHERE name = 'deadlock_timeout'))) || 'ms', true);\n"),
            "{sql}"
        );
        assert!(sql.ends_with("COMMIT;"), "{sql}");
        assert!(sql.contains(r#"ALTER TABLE "Sales"."Order Items" ALTER COLUMN "Line Total" DROP EXPRESSION IF EXISTS, ALTER COLUMN "found" DROP EXPRESSION IF EXISTS;"#), "{sql}");
        assert!(sql.contains("#variable_conflict use_column"), "{sql}");
        assert!(sql.contains(r#"SELECT (("Unit Price" * (qty)::numeric)), ((qty + 1)) INTO NEW."Line Total", NEW."found" FROM (SELECT NEW.*) AS bucardo_bootstrap_row;"#), "{sql}");
        assert!(sql.contains("DROP TRIGGER IF EXISTS zzz_bucardo_bootstrap_gen ON \"Sales\".\"Order Items\";\nCREATE TRIGGER zzz_bucardo_bootstrap_gen BEFORE INSERT OR UPDATE ON \"Sales\".\"Order Items\" FOR EACH ROW EXECUTE FUNCTION"), "{sql}");
        assert!(!convert_sql(&t, &cols, None).contains("lock_timeout"));
        // ALWAYS and REPLICA triggers would fire for Bucardo's rows: this one must not.
        assert!(!sql.contains("ENABLE ALWAYS") && !sql.contains("ENABLE REPLICA"));
    }

    #[test]
    fn the_record_round_trips_through_the_comment() {
        let t = TableName::new("public", "it's");
        let cols = [col("a'b", "(x || 'y''z')")];
        let sql = convert_sql(&t, &cols, None);
        let comment = record(&t, &cols);
        assert!(sql.contains(&quote_literal(&comment)));
        let back = parse_record(&comment).unwrap();
        assert_eq!((back.table, back.columns), (t, cols.to_vec()));
        assert!(parse_record("someone else's comment").is_none());
    }

    #[test]
    fn an_expression_holding_the_dollar_tag_gets_another() {
        let t = TableName::new("public", "t");
        let sql = function_sql(&t, &[col("c", "('$bucardo_bootstrap$'::text)")]);
        assert!(sql.contains("AS $bucardo_bootstrap1$"), "{sql}");
        assert!(sql.trim_end().ends_with("$bucardo_bootstrap1$;"), "{sql}");
    }

    #[test]
    fn the_script_retries_here_and_runs_there_once() {
        let spec = |host: &str| {
            ConnSpec::parse_uri(
                &format!("postgres://postgres@{host}:5432/db"),
                &Default::default(),
            )
            .unwrap()
        };
        let cmd = |side, host: &str| Command::Sql {
            side,
            target: spec(host),
            sql: format!("SELECT '{host}'"),
            secret: crate::engine::plan::SqlSecret::None,
        };
        let psql = |t: &ConnSpec, sql: &str| format!("psql -h {} <<'SQL'\n{sql};\nSQL\n", t.host);
        let out = script(&[cmd(Side::Here, "here"), cmd(Side::There, "there")], psql);
        assert_eq!(
            out,
            "for i in $(seq 1 20); do\npsql -h here <<'SQL' && break\nSELECT 'here';\nSQL\n\
             [ \"$i\" = 20 ] && { echo 'the conversion never got its lock on HERE' >&2; exit 1; }\nsleep 1\ndone\n\
             psql -h there <<'SQL'\nSELECT 'there';\nSQL\n"
        );
    }

    #[test]
    fn only_trailing_columns_are_restored_in_place() {
        let order: Vec<String> = ["id", "a", "g1", "g2"].map(String::from).to_vec();
        assert!(restore_blockers(&order, &["g2".into(), "g1".into()]).is_empty());
        assert!(restore_blockers(&order, &["g2".into()]).is_empty());
        assert!(!restore_blockers(&order, &["a".into()]).is_empty());
        assert!(!restore_blockers(&order, &["g1".into()]).is_empty());
    }

    #[test]
    fn restore_sql_adds_drops_renames_and_removes_the_trigger() {
        let conv = Converted {
            table: TableName::new("public", "Orders"),
            columns: vec![
                GeneratedColumn {
                    not_null: true,
                    ..col("Total", "(a * b)")
                },
                col("z", "(a + 1)"),
            ],
            function: "public.bucardo_bootstrap_gen_orders_00000000()".into(),
            blockers: vec![],
            comments: vec![("Total".into(), "it's the total".into())],
            bytes: 0,
        };
        let order: Vec<String> = ["a", "b", "Total", "z"].map(String::from).to_vec();
        let sql = restore_sql(&conv, &order);
        assert_eq!(
            sql,
            "ALTER TABLE \"public\".\"Orders\" ADD COLUMN bucardo_bootstrap_restore_0 numeric(12,2) GENERATED ALWAYS AS ((a * b)) STORED NOT NULL, ADD COLUMN bucardo_bootstrap_restore_1 numeric(12,2) GENERATED ALWAYS AS ((a + 1)) STORED, DROP COLUMN \"Total\", DROP COLUMN \"z\";\n\
             ALTER TABLE \"public\".\"Orders\" RENAME COLUMN bucardo_bootstrap_restore_0 TO \"Total\";\n\
             ALTER TABLE \"public\".\"Orders\" RENAME COLUMN bucardo_bootstrap_restore_1 TO \"z\";\n\
             COMMENT ON COLUMN \"public\".\"Orders\".\"Total\" IS 'it''s the total';\n\
             DROP TRIGGER IF EXISTS zzz_bucardo_bootstrap_gen ON \"public\".\"Orders\";\n\
             DROP FUNCTION IF EXISTS public.bucardo_bootstrap_gen_orders_00000000()"
        );
    }
}
