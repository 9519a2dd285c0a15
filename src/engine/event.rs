//! What the runner reports while it works, and what it waits for at a confirm gate. Front ends
//! reduce these events into their own state; the engine keeps no UI state.

use crate::engine::ident::TableName;
use serde::Serialize;
use std::time::Duration;

pub type StepId = usize;

/// How the runner treats steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfirmMode {
    /// Run every step without asking.
    Automatic,
    /// Park before each step until a [`GateReply`] arrives.
    EachStep,
}

/// The operator's answer at a confirm gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateReply {
    Proceed,
    Skip,
    Abort,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum StepOutcome {
    Done,
    /// Finished in an earlier run (journal), not run again.
    AlreadyDone,
    Skipped,
    Failed(String),
    Aborted,
}

/// Per-table copy progress. `Advanced` carries deltas since the previous event for that table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum CopyEvent {
    TableStarted {
        table: TableName,
        est_rows: i64,
        est_bytes: i64,
    },
    Advanced {
        table: TableName,
        rows: u64,
        bytes: u64,
    },
    TableFinished {
        table: TableName,
        rows: u64,
        bytes: u64,
        elapsed: Duration,
        format: crate::engine::copy::format::Format,
        /// Key ranges it was copied in (1 when whole).
        parts: usize,
    },
    TableFailed {
        table: TableName,
        error: String,
    },
    /// The table will be copied in key ranges cut this way (sent before any of them starts).
    TableSplit {
        table: TableName,
        split: crate::engine::copy::parts::Split,
    },
    /// Key range `part` of a split table committed on THERE.
    RangeDone {
        table: TableName,
        part: usize,
    },
    /// Rows THERE has taken so far for the table (`pg_stat_progress_copy` of its COPYs in
    /// flight, plus its committed ranges): a cross-check of the rows sent.
    ThereRows {
        table: TableName,
        rows: u64,
    },
    /// A deferred index of the table is being built on THERE (`pg_stat_progress_create_index`).
    IndexPhase {
        table: TableName,
        index: String,
        phase: String,
        percent: Option<i32>,
    },
}

/// The verdict for one table after the bootstrap.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TableVerdict {
    pub table: TableName,
    pub here_rows: i64,
    pub there_rows: i64,
    pub matches: bool,
    /// The table kept changing while it was compared (live writes); it matched on no attempt.
    pub changing: bool,
    /// Rows left out because they changed while the comparison ran (replication in flight).
    pub in_flight: i64,
}

impl TableVerdict {
    /// The verdict in words: identical, still changing, or DIFFERENT.
    pub fn word(&self) -> &'static str {
        if self.matches {
            "identical"
        } else if self.changing {
            "still changing"
        } else {
            "DIFFERENT"
        }
    }

    /// One line for the text front ends.
    pub fn line(&self) -> String {
        let flight = if self.in_flight > 0 {
            format!("; {} rows changing right now were left out", self.in_flight)
        } else {
            String::new()
        };
        format!(
            "{}: {} (HERE {} rows, THERE {} rows{flight})",
            self.table,
            self.word(),
            self.here_rows,
            self.there_rows
        )
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum RunEvent {
    Started {
        steps: usize,
    },
    AwaitingConfirm {
        step: StepId,
    },
    StepStarted {
        step: StepId,
    },
    StepFinished {
        step: StepId,
        outcome: StepOutcome,
        elapsed: Duration,
    },
    Copy(CopyEvent),
    Verified(TableVerdict),
    /// HERE's health and the governor's state, once a second while the run lasts.
    Here(crate::engine::governor::View),
    /// A line for the log pane (already redacted).
    Log {
        level: LogLevel,
        message: String,
    },
    Finished {
        ok: bool,
        summary: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum LogLevel {
    Info,
    /// Information every front end shows, also those that show only warnings (how the copy
    /// goes: formats, workers, snapshot).
    Notice,
    Warn,
    Error,
}
