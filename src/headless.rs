//! The headless front end of `run --yes`: drives a run through the session and prints plain
//! lines to stderr: the session's step, verdict and warning lines, per-table copy progress every
//! few seconds and the copy's summary table, and at the end how the run ended and what state the
//! databases are in.

use crate::engine::error::EngineError;
use crate::engine::event::{ConfirmMode, RunEvent, StepOutcome};
use crate::engine::plan::Plan;
use crate::engine::plan::StepKind;
use crate::engine::runner::RunEnd;
use crate::engine::settings::Settings;
use crate::session::launch::{self, Interrupt};
use crate::session::state::RunState;
use crate::session::text::{self, CopyLines, HereLines};
use std::time::Instant;

/// The exit status of a run that completed but left out tables the operator did not name in
/// `--leave-out` (`--tables all` could not take them).
pub const LEFT_OUT_UNASKED: u8 = 3;

/// Runs the plan to the end, printing to stderr; Ctrl-C cancels at a safe point. Returns the
/// exit status (0 completed, 3 completed with tables left out unasked, 1 failed, 130 aborted).
pub async fn run(plan: Plan, settings: Settings, log_path: &str) -> Result<u8, EngineError> {
    let started = Instant::now();
    let mut state = RunState::new(
        &plan,
        ConfirmMode::Automatic,
        &settings.names.sync,
        started.elapsed(),
    );
    let account = plan.coverage.report();
    let unasked: Vec<String> = plan
        .coverage
        .unacknowledged()
        .iter()
        .map(|e| e.name.clone())
        .collect();
    let for_hint = settings.clone();
    let mut run = launch::start(plan, settings, ConfirmMode::Automatic, Interrupt::CtrlC)?;
    if let Some(hint) = launch::steer_by_signals(&for_hint, run.steer.clone()) {
        eprintln!("{hint}");
    }
    let mut copy = CopyLines::default();
    let mut here = HereLines::default();
    while let Some(ev) = run.events.recv().await {
        state.now = started.elapsed();
        state.apply(ev.clone());
        for line in lines(&state, &ev, &mut copy) {
            eprintln!("{line}");
        }
        if let RunEvent::Here(v) = &ev {
            if let Some(line) = here.line(&state, v) {
                eprintln!("{line}");
            }
        }
    }
    let result = run
        .done
        .await
        .map_err(|e| EngineError::Io(format!("the run stopped unexpectedly: {e}")))?;
    let end = result.end.clone();
    state.result = Some(result);
    if let Some(line) = text::here_summary(&state) {
        eprintln!("{line}");
    }
    match &end {
        RunEnd::Completed => {
            for line in &account {
                eprintln!("{line}");
            }
            if !unasked.is_empty() {
                eprintln!(
                    "exit status {LEFT_OUT_UNASKED}: {} left out without --leave-out; name {} in --leave-out to accept that",
                    unasked.join(", "),
                    if unasked.len() == 1 { "it" } else { "them" }
                );
            }
            // The issue's own words: "done: replicating N tables ...; M left out (see above)".
            let summary = state.finished.as_ref().map(|f| f.summary.as_str());
            eprintln!("done: {}", summary.unwrap_or("every step finished"));
            if !unasked.is_empty() {
                return Ok(LEFT_OUT_UNASKED);
            }
        }
        RunEnd::Aborted { .. } => {
            eprintln!("state: {}", text::db_state(&state));
            eprintln!("aborted: {}. Log: {log_path}", text::headline(&state, &end));
        }
        RunEnd::Failed { .. } => {
            eprintln!("state: {}", text::db_state(&state));
            eprintln!("error: {}", text::headline(&state, &end));
            eprintln!("log: {log_path}");
        }
    }
    Ok(end.exit_code())
}

/// What to print for one event: the session's wording, and the copy's progress lines and, when
/// the copy step ends, its summary table.
fn lines(state: &RunState, ev: &RunEvent, copy: &mut CopyLines) -> Vec<String> {
    let mut out = Vec::new();
    match ev {
        RunEvent::Copy(c) => {
            out.extend(copy.lines(state, c).into_iter().map(|l| format!("    {l}")))
        }
        RunEvent::StepFinished {
            step,
            outcome: StepOutcome::Done,
            elapsed,
        } if state
            .steps
            .get(*step)
            .is_some_and(|s| s.kind == StepKind::CopyData) =>
        {
            if let Some(table) = text::copy_summary(state, *elapsed) {
                out.extend(table.lines().map(|l| format!("    {l}")));
            }
        }
        _ => {}
    }
    out.extend(text::event_line(state, ev));
    out
}
