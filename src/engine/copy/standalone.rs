//! `bucardo-bootstrap copy`: the data copy alone, into existing and empty tables on THERE, with
//! no Bucardo involved (re-seeding tables, benchmarks). Prints progress to stderr every few
//! seconds and a per-table summary at the end.

use crate::engine::catalog::{self, TableInfo};
use crate::engine::conn::{ConnSpec, Side};
use crate::engine::copy::format::Format;
use crate::engine::copy::{
    copy_sequence_values, copy_tables_with, CopyOptions, Snapshot, TableCopied,
};
use crate::engine::error::EngineError;
use crate::engine::event::{CopyEvent, LogLevel, RunEvent};
use crate::engine::ident::TableName;
use crate::engine::plan::human_bytes;
use crate::engine::settings::TableSelection;
use anyhow::{anyhow, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How often the in-flight tables are printed.
pub const PRINT_EVERY: Duration = Duration::from_secs(3);

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
    let result = copy_tables_with(here, there, &snapshot, &chosen, &opts, &etx, &cancel).await;
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

#[derive(Default)]
struct Live {
    rows: u64,
    bytes: u64,
    est_rows: i64,
    started: Option<Instant>,
}

/// Prints the tables in flight every [`PRINT_EVERY`], and failures and notes as they come.
async fn print_progress(mut rx: mpsc::Receiver<RunEvent>) {
    let mut live: BTreeMap<TableName, Live> = BTreeMap::new();
    let (mut done_tables, mut done_bytes) = (0usize, 0u64);
    let started = Instant::now();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + PRINT_EVERY, PRINT_EVERY);
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                None => break,
                Some(RunEvent::Copy(CopyEvent::TableStarted { table, est_rows, .. })) => {
                    live.insert(table, Live { est_rows, started: Some(Instant::now()), ..Live::default() });
                }
                Some(RunEvent::Copy(CopyEvent::Advanced { table, rows, bytes })) => {
                    let l = live.entry(table).or_default();
                    l.rows += rows;
                    l.bytes += bytes;
                }
                Some(RunEvent::Copy(CopyEvent::TableFinished { table, bytes, .. })) => {
                    live.remove(&table);
                    done_tables += 1;
                    done_bytes += bytes;
                }
                Some(RunEvent::Copy(CopyEvent::TableFailed { table, error })) => {
                    live.remove(&table);
                    eprintln!("  {table}: FAILED: {error}");
                }
                Some(RunEvent::Log { level, message }) => match level {
                    LogLevel::Info => eprintln!("{message}"),
                    _ => eprintln!("warning: {message}"),
                },
                Some(_) => {}
            },
            _ = tick.tick() => {
                let secs = started.elapsed().as_secs_f64().max(0.001);
                let moving: u64 = live.values().map(|l| l.bytes).sum();
                eprintln!(
                    "copy: {done_tables} tables done, {} moved, {:.1} MB/s",
                    human_bytes((done_bytes + moving) as i64),
                    (done_bytes + moving) as f64 / secs / 1e6
                );
                for (t, l) in &live {
                    eprintln!("  {}", live_line(t, l));
                }
            }
        }
    }
}

fn live_line(t: &TableName, l: &Live) -> String {
    let pct = if l.est_rows > 0 {
        format!(
            " ({:.0}%)",
            (l.rows as f64 / l.est_rows as f64 * 100.0).min(100.0)
        )
    } else {
        String::new()
    };
    let secs = l
        .started
        .map(|s| s.elapsed().as_secs_f64())
        .unwrap_or(0.0)
        .max(0.001);
    format!(
        "{t}: {} rows{pct}, {}, {:.1} MB/s",
        l.rows,
        human_bytes(l.bytes as i64),
        l.bytes as f64 / secs / 1e6
    )
}

/// The closing table: rows, bytes, seconds and MB/s per table, then the totals.
pub fn summary(copied: &[TableCopied], wall: Duration) -> String {
    let width = copied
        .iter()
        .map(|c| c.table.to_string().len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<width$} {:>12} {:>10} {:>8} {:>8}  format  ranges",
        "table", "rows", "bytes", "seconds", "MB/s"
    );
    for c in copied {
        let secs = c.elapsed.as_secs_f64();
        let _ = writeln!(
            s,
            "{:<width$} {:>12} {:>10} {:>8.2} {:>8.1}  {:<6}  {}",
            c.table.to_string(),
            c.rows,
            human_bytes(c.bytes as i64),
            secs,
            c.bytes as f64 / secs.max(0.001) / 1e6,
            match c.format {
                Format::Binary => "binary",
                Format::Text => "text",
            },
            c.parts
        );
    }
    let rows: u64 = copied.iter().map(|c| c.rows).sum();
    let bytes: u64 = copied.iter().map(|c| c.bytes).sum();
    let secs = wall.as_secs_f64();
    let _ = writeln!(
        s,
        "{:<width$} {:>12} {:>10} {:>8.2} {:>8.1}  ({} tables, wall clock)",
        "total",
        rows,
        human_bytes(bytes as i64),
        secs,
        bytes as f64 / secs.max(0.001) / 1e6,
        copied.len()
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_has_a_line_per_table_and_a_total() {
        let c = |n: &str, rows, bytes, ms| TableCopied {
            table: TableName::new("public", n),
            rows,
            bytes,
            elapsed: Duration::from_millis(ms),
            parts: 1,
            format: Format::Binary,
        };
        let s = summary(
            &[c("a", 10, 2_000_000, 1000), c("b", 5, 0, 0)],
            Duration::from_secs(2),
        );
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 4, "{s}");
        assert!(
            lines[1].starts_with("public.a") && lines[1].contains(" 2.0 "),
            "{s}"
        );
        assert!(
            lines[3].starts_with("total") && lines[3].contains("15"),
            "{s}"
        );
    }
}
