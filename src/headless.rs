//! The headless front end of `run --yes`: drives the runner and prints plain progress lines to
//! stderr (step start and end, per-table copy progress every few seconds, the verdicts, and a
//! one-line reason when it fails).

use crate::engine::copy::standalone::summary;
use crate::engine::copy::TableCopied;
use crate::engine::event::{ConfirmMode, CopyEvent, GateReply, RunEvent, StepOutcome};
use crate::engine::exec::LiveExecutor;
use crate::engine::ident::TableName;
use crate::engine::plan::{human_bytes, Plan, StepKind};
use crate::engine::runner::{self, RunResult};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How often a table's copy progress is printed.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(3);

#[derive(Default)]
struct TableProgress {
    rows: u64,
    bytes: u64,
    est_rows: i64,
    started: Option<Instant>,
    last_print: Option<Instant>,
}

/// Runs the plan to the end, printing to stderr. Ctrl-C cancels at a safe point.
pub async fn run(plan: &Plan, exec: LiveExecutor) -> RunResult {
    let (etx, mut erx) = mpsc::channel::<RunEvent>(1024);
    let (_gtx, mut grx) = mpsc::channel::<GateReply>(1);
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ninterrupted: stopping at a safe point...");
            c2.cancel();
        }
    });
    let steps = plan.steps.clone();
    let printer = tokio::spawn(async move {
        let mut tables: BTreeMap<TableName, TableProgress> = BTreeMap::new();
        let mut copied: Vec<TableCopied> = Vec::new();
        while let Some(ev) = erx.recv().await {
            print_event(&ev, &steps, &mut tables);
            summarize_copy(&ev, &steps, &mut copied);
        }
    });
    let result = runner::run(plan, &exec, ConfirmMode::Automatic, &mut grx, &etx, &cancel).await;
    drop(etx);
    let _ = printer.await;
    result
}

fn print_event(
    ev: &RunEvent,
    steps: &[crate::engine::plan::Step],
    tables: &mut BTreeMap<TableName, TableProgress>,
) {
    let title = |id: usize| steps.get(id).map(|s| s.title.as_str()).unwrap_or("?");
    match ev {
        RunEvent::StepStarted { step } => {
            eprintln!("[{}/{}] {} ...", step + 1, steps.len(), title(*step))
        }
        RunEvent::StepFinished {
            step,
            outcome,
            elapsed,
        } => match outcome {
            StepOutcome::Done => eprintln!(
                "[{}/{}] {} done in {:.1} s",
                step + 1,
                steps.len(),
                title(*step),
                elapsed.as_secs_f64()
            ),
            StepOutcome::Skipped => {
                eprintln!("[{}/{}] {} skipped", step + 1, steps.len(), title(*step))
            }
            StepOutcome::AlreadyDone => eprintln!(
                "[{}/{}] {} (done in an earlier run)",
                step + 1,
                steps.len(),
                title(*step)
            ),
            StepOutcome::Aborted => {
                eprintln!("[{}/{}] {} aborted", step + 1, steps.len(), title(*step))
            }
            StepOutcome::Failed(e) => eprintln!(
                "[{}/{}] {} FAILED: {e}",
                step + 1,
                steps.len(),
                title(*step)
            ),
        },
        RunEvent::Copy(CopyEvent::TableStarted {
            table, est_rows, ..
        }) => {
            tables.insert(
                table.clone(),
                TableProgress {
                    est_rows: *est_rows,
                    started: Some(Instant::now()),
                    last_print: Some(Instant::now()),
                    ..Default::default()
                },
            );
        }
        RunEvent::Copy(CopyEvent::Advanced { table, rows, bytes }) => {
            let p = tables.entry(table.clone()).or_default();
            p.rows += rows;
            p.bytes += bytes;
            if p.last_print.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY) {
                p.last_print = Some(Instant::now());
                let pct = if p.est_rows > 0 {
                    format!(
                        " ({:.0}%)",
                        (p.rows as f64 / p.est_rows as f64 * 100.0).min(100.0)
                    )
                } else {
                    String::new()
                };
                let secs = p
                    .started
                    .map(|s| s.elapsed().as_secs_f64())
                    .unwrap_or(0.0)
                    .max(0.001);
                eprintln!(
                    "    {table}: {} rows{pct}, {}, {}/s",
                    p.rows,
                    human_bytes(p.bytes as i64),
                    human_bytes((p.bytes as f64 / secs) as i64)
                );
            }
        }
        RunEvent::Copy(CopyEvent::TableFinished {
            table,
            rows,
            bytes,
            elapsed,
            ..
        }) => {
            let secs = elapsed.as_secs_f64().max(0.001);
            eprintln!(
                "    {table}: {rows} rows, {} in {secs:.1} s ({:.1} MB/s)",
                human_bytes(*bytes as i64),
                *bytes as f64 / secs / 1e6
            );
        }
        RunEvent::Copy(CopyEvent::TableFailed { table, error }) => {
            eprintln!("    {table}: FAILED: {error}")
        }
        RunEvent::Verified(v) => eprintln!(
            "    {}: {} (HERE {} rows, THERE {} rows{})",
            v.table,
            if v.matches {
                "identical"
            } else if v.changing {
                "still changing"
            } else {
                "DIFFERENT"
            },
            v.here_rows,
            v.there_rows,
            if v.in_flight > 0 {
                format!("; {} rows changing right now were left out", v.in_flight)
            } else {
                String::new()
            }
        ),
        RunEvent::Log {
            level: crate::engine::event::LogLevel::Warn | crate::engine::event::LogLevel::Error,
            message,
        } => eprintln!("    warning: {message}"),
        RunEvent::Log { message, .. }
            if message.starts_with("copy:") || message.starts_with("THERE: index") =>
        {
            eprintln!("    {message}")
        }
        RunEvent::Finished { ok: true, summary } => eprintln!("done: {summary}"),
        _ => {}
    }
}

/// Collects the tables the copy finished and prints their summary table when the copy step ends.
fn summarize_copy(
    ev: &RunEvent,
    steps: &[crate::engine::plan::Step],
    copied: &mut Vec<TableCopied>,
) {
    match ev {
        RunEvent::Copy(CopyEvent::TableFinished {
            table,
            rows,
            bytes,
            elapsed,
            format,
            parts,
        }) => copied.push(TableCopied {
            table: table.clone(),
            rows: *rows,
            bytes: *bytes,
            elapsed: *elapsed,
            parts: *parts,
            format: *format,
        }),
        RunEvent::StepFinished {
            step,
            outcome: StepOutcome::Done,
            elapsed,
        } if steps.get(*step).map(|s| s.kind) == Some(StepKind::CopyData) && !copied.is_empty() => {
            copied.sort_by(|a, b| a.table.cmp(&b.table));
            for line in summary(copied, *elapsed).lines() {
                eprintln!("    {line}");
            }
            copied.clear();
        }
        _ => {}
    }
}

/// What state the databases are in after the steps in `done` (for an abort or failure message).
pub fn state_after(done: &[crate::engine::plan::StepKind]) -> &'static str {
    use crate::engine::plan::StepKind::*;
    if done.contains(&Drain) || done.contains(&Enable) {
        "replication is enabled; the sync replays changes in both directions"
    } else if done.contains(&CopyData) {
        "THERE holds the data; Bucardo's triggers log every change on both sides, the sync is not enabled yet"
    } else if done.contains(&AddSync) {
        "Bucardo's triggers log every change on HERE and THERE (the delta tables grow until the sync is enabled or cleaned up); THERE's data copy is incomplete"
    } else if done.contains(&BucardoRole) || done.contains(&InstallBucardo) {
        "THERE has the schema; on HERE only Bucardo's role (and control database) exist, no trigger yet"
    } else if done.contains(&CopySchema) {
        "THERE has the schema; nothing on HERE has changed yet (no trigger)"
    } else {
        "nothing on HERE has changed"
    }
}
