//! The headless front end of `run --yes`: drives the runner and prints plain progress lines to
//! stderr (step start and end, per-table copy progress every few seconds and the copy's summary
//! table, the verdicts, and a one-line reason when it fails).

use crate::engine::copy::report::LinePrinter;
use crate::engine::event::{ConfirmMode, GateReply, RunEvent, StepOutcome};
use crate::engine::exec::LiveExecutor;
use crate::engine::plan::Plan;
use crate::engine::runner::{self, RunResult};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

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
        let mut copy = LinePrinter::default();
        while let Some(ev) = erx.recv().await {
            print_event(&ev, &steps, &mut copy);
        }
    });
    let result = runner::run(plan, &exec, ConfirmMode::Automatic, &mut grx, &etx, &cancel).await;
    drop(etx);
    let _ = printer.await;
    result
}

fn print_event(ev: &RunEvent, steps: &[crate::engine::plan::Step], copy: &mut LinePrinter) {
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
            StepOutcome::Done => {
                if let Some(table) = copy.summary(*elapsed) {
                    for line in table.lines() {
                        eprintln!("    {line}");
                    }
                }
                eprintln!(
                    "[{}/{}] {} done in {:.1} s",
                    step + 1,
                    steps.len(),
                    title(*step),
                    elapsed.as_secs_f64()
                )
            }
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
        RunEvent::Copy(c) => {
            for line in copy.lines(c) {
                eprintln!("    {line}");
            }
        }
        RunEvent::Verified(v) => eprintln!("    {}", v.line()),
        RunEvent::Log {
            level: crate::engine::event::LogLevel::Warn | crate::engine::event::LogLevel::Error,
            message,
        } => eprintln!("    warning: {message}"),
        RunEvent::Log { message, .. } if message.starts_with("copy:") => {
            eprintln!("    {message}")
        }
        RunEvent::Finished { ok: true, summary } => eprintln!("done: {summary}"),
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
