//! The data copy alone, into existing and empty tables on THERE, with no Bucardo involved
//! (re-seeding tables, benchmarks): what `bucardo-bootstrap copy` runs. It reports progress as
//! events; the command's front end prints them.

use crate::engine::catalog::{self, TableInfo};
use crate::engine::conn::{ConnSpec, Side};
use crate::engine::copy::{
    copy_sequence_values, copy_tables_with, CopyOptions, Snapshot, Source, TableCopied,
};
use crate::engine::error::EngineError;
use crate::engine::event::{LogLevel, RunEvent};
use crate::engine::governor::Pace;
use crate::engine::ident::TableName;
use crate::engine::plan::human_bytes;
use crate::engine::settings::TableSelection;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What a standalone copy did.
#[derive(Debug)]
pub struct Copied {
    pub tables: Vec<TableCopied>,
    /// Sequence values set on THERE as of the snapshot.
    pub sequences: usize,
}

/// Copies the selected tables from `here` into `there` with `jobs` workers (0: one per core),
/// reporting progress on `events` (a notice first: how many tables, how much, the snapshot).
/// Refuses a table that is missing or not empty on THERE. A cancel stops at once: THERE keeps
/// only the tables already committed.
pub async fn copy(
    here: &ConnSpec,
    there: &ConnSpec,
    tables: &TableSelection,
    jobs: usize,
    events: &mpsc::Sender<RunEvent>,
    cancel: &CancellationToken,
) -> Result<Copied, EngineError> {
    let jobs = if jobs == 0 {
        crate::engine::settings::default_jobs()
    } else {
        jobs
    };
    let here_c = here.connect(Side::Here).await?;
    let chosen = resolve(&here_c, tables).await?;
    drop(here_c);
    let there_c = there.connect(Side::There).await?;
    check_there(&there_c, &chosen).await?;

    let snapshot = Snapshot::export(here).await?;
    let total_bytes: i64 = chosen.iter().map(|t| t.total_bytes).sum();
    let _ = events
        .send(RunEvent::Log {
            level: LogLevel::Notice,
            message: format!(
                "copy: {} tables (~{} on HERE) with {jobs} workers, snapshot {}",
                chosen.len(),
                human_bytes(total_bytes),
                snapshot.id
            ),
        })
        .await;
    let opts = CopyOptions::new(jobs).with_env();
    let result = copy_tables_with(
        here,
        there,
        Source::Shared(&snapshot),
        &chosen,
        &[],
        &opts,
        &Pace::unlimited(),
        events,
        cancel,
    )
    .await;
    let result = match result {
        Ok(copied) => {
            let seqs: BTreeSet<TableName> = chosen
                .iter()
                .flat_map(|t| t.sequences.iter().map(|s| s.sequence.clone()))
                .collect();
            let seqs: Vec<TableName> = seqs.into_iter().collect();
            copy_sequence_values(snapshot.client(), &there_c, &seqs)
                .await
                .map(|()| Copied {
                    tables: copied,
                    sequences: seqs.len(),
                })
        }
        Err(e) => Err(e),
    };
    snapshot.release().await;
    result
}

/// The tables to copy: the named ones (a partitioned table stands for its leaves), or every
/// table of HERE's user schemas.
async fn resolve(
    here: &tokio_postgres::Client,
    sel: &TableSelection,
) -> Result<Vec<TableInfo>, EngineError> {
    let mut out = match sel {
        TableSelection::All => catalog::list_tables(here, Side::Here, None).await?,
        TableSelection::List(names) => {
            let found = catalog::list_tables(here, Side::Here, Some(names)).await?;
            let missing: Vec<String> = names
                .iter()
                .filter(|n| !found.iter().any(|t| &t.name == *n))
                .map(ToString::to_string)
                .collect();
            if !missing.is_empty() {
                return Err(EngineError::Refused(format!(
                    "HERE has no table {}",
                    missing.join(", ")
                )));
            }
            let leaves: Vec<TableName> = found.iter().flat_map(|t| t.partitions.clone()).collect();
            let mut all = found;
            if !leaves.is_empty() {
                all.extend(catalog::list_tables(here, Side::Here, Some(&leaves)).await?);
            }
            all
        }
    };
    out.retain(|t| t.relkind == 'r');
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|a, b| a.name == b.name);
    if out.is_empty() {
        return Err(EngineError::Refused("no table to copy".into()));
    }
    Ok(out)
}

/// Every table must exist on THERE and be empty: the copy only adds rows.
async fn check_there(
    there: &tokio_postgres::Client,
    tables: &[TableInfo],
) -> Result<(), EngineError> {
    let names: Vec<String> = tables.iter().map(|t| t.name.sql()).collect();
    let missing: Vec<String> = there
        .query(
            "SELECT n FROM unnest($1::text[]) AS n WHERE to_regclass(n) IS NULL",
            &[&names],
        )
        .await
        .map_err(|e| EngineError::sql(Side::There, "looking for the tables", &e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !missing.is_empty() {
        return Err(EngineError::Refused(format!(
            "THERE lacks {} of the tables: {}; create the schema first (pg_dump --schema-only HERE | psql THERE)",
            missing.len(),
            abbreviate(&missing)
        )));
    }
    let checks = tables.iter().map(|t| async move {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM ONLY {})", t.name.sql());
        there
            .query_one(sql.as_str(), &[])
            .await
            .map(|r| (t.name.to_string(), r.get::<_, bool>(0)))
    });
    let mut busy = Vec::new();
    for r in futures_util::future::join_all(checks).await {
        let (name, has_rows) =
            r.map_err(|e| EngineError::sql(Side::There, "looking into the tables", &e))?;
        if has_rows {
            busy.push(name);
        }
    }
    if !busy.is_empty() {
        return Err(EngineError::Refused(format!(
            "{} of the tables already hold rows on THERE: {}; the copy fills empty tables only (TRUNCATE them first)",
            busy.len(),
            abbreviate(&busy)
        )));
    }
    Ok(())
}

fn abbreviate(names: &[String]) -> String {
    let mut s = names
        .iter()
        .take(10)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > 10 {
        let _ = write!(s, " and {} more", names.len() - 10);
    }
    s
}
