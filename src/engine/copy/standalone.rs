//! `bucardo-bootstrap copy`: the data copy alone, into existing and empty tables on THERE, with
//! no Bucardo involved (re-seeding tables, benchmarks). Prints progress to stderr every few
//! seconds and a per-table summary at the end ([`report`](super::report)).

use crate::engine::catalog::{self, TableInfo};
use crate::engine::conn::{ConnSpec, Side};
use crate::engine::copy::report::{summary, LinePrinter};
use crate::engine::copy::{copy_sequence_values, copy_tables_with, CopyOptions, Snapshot};
use crate::engine::error::EngineError;
use crate::engine::event::{LogLevel, RunEvent};
use crate::engine::ident::TableName;
use crate::engine::plan::human_bytes;
use crate::engine::settings::TableSelection;
use anyhow::{anyhow, bail};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Copies the selected tables from `here` into `there` with `jobs` workers (0: one per core).
/// Returns the exit status: 0 when every table was copied, 1 when a table failed, 130 when
/// interrupted. Refusals (a table missing or not empty on THERE) and connection failures are
/// errors.
pub async fn copy_command(
    here: &ConnSpec,
    there: &ConnSpec,
    tables: &TableSelection,
    jobs: usize,
) -> anyhow::Result<u8> {
    let jobs = if jobs == 0 {
        crate::engine::settings::default_jobs()
    } else {
        jobs
    };
    let one_line = |e: EngineError| anyhow!(e.one_line());
    let here_c = here.connect(Side::Here).await.map_err(one_line)?;
    let chosen = resolve(&here_c, tables).await?;
    drop(here_c);
    let there_c = there.connect(Side::There).await.map_err(one_line)?;
    check_there(&there_c, &chosen).await?;

    let snapshot = Snapshot::export(here).await.map_err(one_line)?;
    let total_bytes: i64 = chosen.iter().map(|t| t.total_bytes).sum();
    eprintln!(
        "copy: {} tables (~{} on HERE) with {jobs} workers, snapshot {}",
        chosen.len(),
        human_bytes(total_bytes),
        snapshot.id
    );
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "\ninterrupted: stopping the copy (THERE keeps only the tables already committed)"
            );
            c2.cancel();
        }
    });
    let (etx, erx) = mpsc::channel::<RunEvent>(1024);
    let printer = tokio::spawn(print_progress(erx));
    let started = Instant::now();
    let opts = CopyOptions::new(jobs).with_env();
    let result = copy_tables_with(here, there, &snapshot, &chosen, &[], &opts, &etx, &cancel).await;
    let result = match result {
        Ok(copied) => {
            let seqs: BTreeSet<TableName> = chosen
                .iter()
                .flat_map(|t| t.sequences.iter().map(|s| s.sequence.clone()))
                .collect();
            let seqs: Vec<TableName> = seqs.into_iter().collect();
            copy_sequence_values(&snapshot, &there_c, &seqs)
                .await
                .map(|()| (copied, seqs.len()))
        }
        Err(e) => Err(e),
    };
    snapshot.release().await;
    drop(etx);
    let _ = printer.await;
    ctrl_c.abort();
    match result {
        Ok((copied, seqs)) => {
            eprint!("{}", summary(&copied, started.elapsed()));
            if seqs > 0 {
                eprintln!("{seqs} sequence values set as of the snapshot");
            }
            Ok(0)
        }
        Err(EngineError::Aborted) => {
            eprintln!("copy interrupted");
            Ok(130)
        }
        Err(e) => {
            eprintln!("copy failed: {}", e.one_line());
            Ok(1)
        }
    }
}

/// The tables to copy: the named ones (a partitioned table stands for its leaves), or every
/// table of HERE's user schemas.
async fn resolve(
    here: &tokio_postgres::Client,
    sel: &TableSelection,
) -> anyhow::Result<Vec<TableInfo>> {
    let one_line = |e: EngineError| anyhow!(e.one_line());
    let mut out = match sel {
        TableSelection::All => catalog::list_tables(here, Side::Here, None)
            .await
            .map_err(one_line)?,
        TableSelection::List(names) => {
            let found = catalog::list_tables(here, Side::Here, Some(names))
                .await
                .map_err(one_line)?;
            let missing: Vec<String> = names
                .iter()
                .filter(|n| !found.iter().any(|t| &t.name == *n))
                .map(ToString::to_string)
                .collect();
            if !missing.is_empty() {
                bail!("HERE has no table {}", missing.join(", "));
            }
            let leaves: Vec<TableName> = found.iter().flat_map(|t| t.partitions.clone()).collect();
            let mut all = found;
            if !leaves.is_empty() {
                all.extend(
                    catalog::list_tables(here, Side::Here, Some(&leaves))
                        .await
                        .map_err(one_line)?,
                );
            }
            all
        }
    };
    out.retain(|t| t.relkind == 'r');
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|a, b| a.name == b.name);
    if out.is_empty() {
        bail!("no table to copy");
    }
    Ok(out)
}

/// Every table must exist on THERE and be empty: the copy only adds rows.
async fn check_there(there: &tokio_postgres::Client, tables: &[TableInfo]) -> anyhow::Result<()> {
    let names: Vec<String> = tables.iter().map(|t| t.name.sql()).collect();
    let missing: Vec<String> = there
        .query(
            "SELECT n FROM unnest($1::text[]) AS n WHERE to_regclass(n) IS NULL",
            &[&names],
        )
        .await
        .map_err(|e| {
            anyhow!(EngineError::sql(Side::There, "looking for the tables", &e).one_line())
        })?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !missing.is_empty() {
        bail!(
            "THERE lacks {} of the tables: {}; create the schema first (pg_dump --schema-only HERE | psql THERE)",
            missing.len(),
            abbreviate(&missing)
        );
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
        let (name, has_rows) = r.map_err(|e| {
            anyhow!(EngineError::sql(Side::There, "looking into the tables", &e).one_line())
        })?;
        if has_rows {
            busy.push(name);
        }
    }
    if !busy.is_empty() {
        bail!(
            "{} of the tables already hold rows on THERE: {}; the copy fills empty tables only (TRUNCATE them first)",
            busy.len(),
            abbreviate(&busy)
        );
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

/// Prints copy progress lines ([`LinePrinter`]), and notes and warnings as they come.
async fn print_progress(mut rx: mpsc::Receiver<RunEvent>) {
    let mut printer = LinePrinter::default();
    while let Some(ev) = rx.recv().await {
        match ev {
            RunEvent::Copy(c) => {
                for line in printer.lines(&c) {
                    eprintln!("  {line}");
                }
            }
            RunEvent::Log { level, message } => match level {
                LogLevel::Info | LogLevel::Notice => eprintln!("{message}"),
                _ => eprintln!("warning: {message}"),
            },
            _ => {}
        }
    }
}
