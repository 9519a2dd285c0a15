//! The `copy` command's front end: runs the standalone copy ([`engine::copy::standalone`]),
//! prints its progress with the session's copy lines, and at the end the summary table. Ctrl-C
//! stops it; THERE keeps only the tables already committed.
//!
//! [`engine::copy::standalone`]: crate::engine::copy::standalone

use crate::engine::conn::ConnSpec;
use crate::engine::copy::standalone;
use crate::engine::error::EngineError;
use crate::engine::event::{LogLevel, RunEvent};
use crate::engine::settings::TableSelection;
use crate::session::state::RunState;
use crate::session::text::{self, CopyLines};
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Returns the exit status: 0 when every table was copied, 1 when the copy failed (a table, a
/// server), 130 when interrupted. Refusals (a table missing or not empty on THERE) are errors.
pub async fn run(
    here: &ConnSpec,
    there: &ConnSpec,
    tables: &TableSelection,
    jobs: usize,
) -> anyhow::Result<u8> {
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
    let started = Instant::now();
    let (etx, mut erx) = mpsc::channel::<RunEvent>(1024);
    let printer = tokio::spawn(async move {
        let mut state = RunState::for_copy(started.elapsed());
        let mut lines = CopyLines::default();
        while let Some(ev) = erx.recv().await {
            state.now = started.elapsed();
            state.apply(ev.clone());
            match &ev {
                RunEvent::Copy(c) => {
                    for line in lines.lines(&state, c) {
                        eprintln!("  {line}");
                    }
                }
                RunEvent::Log { level, message } => match level {
                    LogLevel::Info | LogLevel::Notice => eprintln!("{message}"),
                    LogLevel::Warn | LogLevel::Error => eprintln!("warning: {message}"),
                },
                _ => {}
            }
        }
        state
    });
    // Ctrl-C also stops the connecting and checking before the copy, which do not wait on the
    // cancel themselves.
    let result = tokio::select! {
        r = standalone::copy(here, there, tables, jobs, &etx, &cancel) => r,
        () = cancel.cancelled() => Err(EngineError::Aborted),
    };
    drop(etx);
    let state = printer.await?;
    ctrl_c.abort();
    match result {
        Ok(copied) => {
            if let Some(table) = text::copy_summary(&state, started.elapsed()) {
                eprint!("{table}");
            }
            if copied.sequences > 0 {
                eprintln!(
                    "{} sequence values set as of the snapshot",
                    copied.sequences
                );
            }
            Ok(0)
        }
        Err(EngineError::Aborted) => {
            eprintln!("copy interrupted");
            Ok(130)
        }
        // Bad input (a table missing or not empty on THERE, none to copy): an error, exit 2.
        Err(e @ (EngineError::Refused(_) | EngineError::Config(_))) => {
            Err(anyhow::anyhow!(e.one_line()))
        }
        Err(e) => {
            eprintln!("copy failed: {}", e.one_line());
            Ok(1)
        }
    }
}
