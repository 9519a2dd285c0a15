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

/// The verdict for one table after the bootstrap, from what was actually compared.
///
/// A table is walked in key-range chunks, each compared in its own short snapshot on each side.
/// Rows whose key changed meanwhile (read from Bucardo's delta tables) are left out of their
/// chunk and compared again by key in later rounds, as are the rows of a chunk that differed.
/// `compared` counts the rows found the same on both sides, whichever way; a key deleted on both
/// sides before its round is no row and is not counted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TableVerdict {
    pub table: TableName,
    /// Rows each side held, summed over the chunks (each chunk read at its own moment).
    pub here_rows: i64,
    pub there_rows: i64,
    /// Rows compared and found the same on both sides: in their chunk's snapshots, or by key in
    /// a later round (`replayed` of them).
    pub compared: i64,
    /// Of `compared`, rows that changed while their chunk was read and were found the same in a
    /// later round, once Bucardo had replayed them.
    pub replayed: i64,
    /// Rows never compared: their key changed again before every round.
    pub in_flight: i64,
    /// Rows that differ between the sides and did not change through the rounds.
    pub differing: i64,
    /// Rounds of comparing by key after the chunks (0: none was needed).
    pub rounds: u32,
}

/// What a table's verification found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum VerdictState {
    /// Every row that could be compared is the same, and they are nearly all of the table's
    /// rows (at least [`COMPARED_SHARE_MIN`]), with none left uncompared; or both sides are
    /// empty.
    Identical,
    /// Nothing differs, but too few rows could be compared: some kept changing through every
    /// round, or less than [`COMPARED_SHARE_MIN`] of the rows were compared. Not a failure.
    Changing,
    /// Rows differ that did not change: the step fails.
    Different,
}

/// The share of a table's rows that must have been compared (and found the same) for it to be
/// called identical.
pub const COMPARED_SHARE_MIN: f64 = 0.9;

impl TableVerdict {
    /// A verdict with every figure at zero, to fill in.
    pub fn new(table: TableName) -> TableVerdict {
        TableVerdict {
            table,
            here_rows: 0,
            there_rows: 0,
            compared: 0,
            replayed: 0,
            in_flight: 0,
            differing: 0,
            rounds: 0,
        }
    }

    /// The table's size for the verdict: the larger side's row count.
    pub fn rows(&self) -> i64 {
        self.here_rows.max(self.there_rows).max(0)
    }

    /// The verdict (see [`VerdictState`]): rows compared at zero is never identical unless both
    /// sides are empty.
    pub fn state(&self) -> VerdictState {
        if self.differing > 0 {
            VerdictState::Different
        } else if self.in_flight > 0 {
            VerdictState::Changing
        } else if self.rows() == 0 {
            VerdictState::Identical
        } else if self.compared <= 0
            || (self.compared as f64) < COMPARED_SHARE_MIN * self.rows() as f64
        {
            VerdictState::Changing
        } else {
            VerdictState::Identical
        }
    }

    /// Nothing differs (identical or still changing): the run goes on.
    pub fn matches(&self) -> bool {
        self.state() != VerdictState::Different
    }

    /// The verdict in words: identical, still changing, or DIFFERENT.
    pub fn word(&self) -> &'static str {
        match self.state() {
            VerdictState::Identical => "identical",
            VerdictState::Changing => "still changing",
            VerdictState::Different => "DIFFERENT",
        }
    }

    /// The counts are taken as each chunk is read, before the rows changed since are compared
    /// again: counts that differ are the rows still to replay then, not a difference.
    fn rows_said(&self) -> String {
        if self.here_rows == self.there_rows {
            format!("{} rows", self.here_rows)
        } else {
            format!(
                "HERE {} rows, THERE {} rows when read",
                self.here_rows, self.there_rows
            )
        }
    }

    /// How many rows were compared, when, and what was left: `1999981 compared at once, 19 more
    /// after replay, 3 kept changing through 4 rounds, 1 differ`.
    pub fn compared_said(&self) -> String {
        let at_once = self.compared - self.replayed;
        let mut out = if self.compared == 0 {
            "0 compared".to_string()
        } else if self.replayed == 0 {
            format!("{at_once} compared at once")
        } else {
            format!(
                "{at_once} compared at once, {} more after replay",
                self.replayed
            )
        };
        if self.in_flight > 0 {
            out.push_str(&format!(
                ", {} kept changing through {} round{}",
                self.in_flight,
                self.rounds,
                if self.rounds == 1 { "" } else { "s" }
            ));
        }
        if self.differing > 0 {
            out.push_str(&format!(", {} differ", self.differing));
        }
        if self.state() == VerdictState::Changing && self.in_flight == 0 {
            out.push_str(&format!(
                ", under {}% of the rows",
                (COMPARED_SHARE_MIN * 100.0).round() as i64
            ));
        }
        out
    }

    /// One line for the text front ends, e.g. `public.accounts: identical (2000000 rows,
    /// 1999981 compared at once, 19 more after replay)` or `public.branches: still changing
    /// (20 rows; 0 compared, 20 kept changing through 4 rounds)`.
    pub fn line(&self) -> String {
        let detail = match self.state() {
            VerdictState::Identical if self.rows() == 0 => "empty".to_string(),
            VerdictState::Identical => format!("{}, {}", self.rows_said(), self.compared_said()),
            _ => format!("{}; {}", self.rows_said(), self.compared_said()),
        };
        format!("{}: {} ({detail})", self.table, self.word())
    }
}

/// How much the verification compared over all tables, for the run's last line and `verify`'s:
/// `all 2,000,120 rows compared` or `99.98% of 2,000,120 rows compared, 1 table still changing
/// (public.pgbench_branches)`; tables found DIFFERENT are named too.
pub fn verification_summary(verdicts: &[TableVerdict]) -> String {
    let rows: i64 = verdicts.iter().map(TableVerdict::rows).sum();
    let compared: i64 = verdicts.iter().map(|v| v.compared.min(v.rows())).sum();
    let named = |state: VerdictState| -> Vec<String> {
        verdicts
            .iter()
            .filter(|v| v.state() == state)
            .map(|v| v.table.to_string())
            .collect()
    };
    let mut out = String::new();
    if verdicts.is_empty() {
        out.push_str("no table compared");
    } else if rows == 0 {
        out.push_str("every table empty");
    } else if compared >= rows {
        out.push_str(&format!(
            "all {} rows compared",
            crate::engine::plan::thousands(rows)
        ));
    } else {
        out.push_str(&format!(
            "{} of {} rows compared",
            share(compared, rows),
            crate::engine::plan::thousands(rows)
        ));
    }
    for (state, what) in [
        (VerdictState::Changing, "still changing"),
        (VerdictState::Different, "DIFFERENT"),
    ] {
        let names = named(state);
        if !names.is_empty() {
            let more = match names.len().saturating_sub(NAMED) {
                0 => String::new(),
                n => format!(" and {n} more, each on its own line"),
            };
            out.push_str(&format!(
                ", {} table{} {what} ({}{more})",
                names.len(),
                if names.len() == 1 { "" } else { "s" },
                names[..names.len().min(NAMED)].join(", ")
            ));
        }
    }
    out
}

/// How many tables of one verdict the summary names.
const NAMED: usize = 10;

/// `99.98%`: rounded down, so that anything short of everything never reads 100%.
fn share(part: i64, whole: i64) -> String {
    if whole <= 0 {
        return "100%".into();
    }
    let hundredths = ((part.max(0) as i128 * 10_000) / whole as i128).min(9_999);
    let s = format!("{}.{:02}", hundredths / 100, hundredths % 100);
    format!("{}%", s.trim_end_matches('0').trim_end_matches('.'))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn v(here: i64, there: i64, compared: i64, replayed: i64, in_flight: i64) -> TableVerdict {
        TableVerdict {
            here_rows: here,
            there_rows: there,
            compared,
            replayed,
            in_flight,
            rounds: if replayed + in_flight > 0 { 4 } else { 0 },
            ..TableVerdict::new(TableName::new("public", "t"))
        }
    }

    #[test]
    fn empty_on_both_sides_is_identical() {
        let e = v(0, 0, 0, 0, 0);
        assert_eq!(e.state(), VerdictState::Identical);
        assert_eq!(e.line(), "public.t: identical (empty)");
        // Rows that came and went while it was compared: nothing to call identical.
        assert_eq!(v(0, 0, 0, 0, 3).state(), VerdictState::Changing);
    }

    #[test]
    fn zero_compared_is_never_identical() {
        // The case: 20 hot rows, every one left out, none compared.
        let hot = v(20, 20, 0, 0, 20);
        assert_eq!(hot.state(), VerdictState::Changing);
        assert_eq!(
            hot.line(),
            "public.t: still changing (20 rows; 0 compared, 20 kept changing through 4 rounds)"
        );
        // Even with nothing left over (the keys were deleted on both sides before a round).
        let gone = v(20, 20, 0, 0, 0);
        assert_eq!(gone.state(), VerdictState::Changing);
        assert_ne!(gone.word(), "identical");
        assert!(gone.matches(), "still changing is no difference");
    }

    #[test]
    fn the_compared_share_decides() {
        let all = v(2_000_000, 2_000_000, 2_000_000, 19, 0);
        assert_eq!(all.state(), VerdictState::Identical);
        assert_eq!(
            all.line(),
            "public.t: identical (2000000 rows, 1999981 compared at once, 19 more after replay)"
        );
        // 90% compared and nothing left uncompared: identical; just under: still changing.
        assert_eq!(v(1000, 1000, 900, 0, 0).state(), VerdictState::Identical);
        let low = v(1000, 1000, 899, 0, 0);
        assert_eq!(low.state(), VerdictState::Changing);
        assert_eq!(
            low.line(),
            "public.t: still changing (1000 rows; 899 compared at once, under 90% of the rows)"
        );
        // One row left uncompared after the rounds is enough, whatever the share.
        let one = v(1000, 1000, 999, 2, 1);
        assert_eq!(one.state(), VerdictState::Changing);
        assert_eq!(
            one.line(),
            "public.t: still changing (1000 rows; 997 compared at once, 2 more after replay, 1 kept changing through 4 rounds)"
        );
        // The larger side is the table's size.
        assert_eq!(v(10, 100, 10, 0, 0).state(), VerdictState::Changing);
        assert_eq!(
            v(100, 99, 99, 0, 0).line(),
            "public.t: identical (HERE 100 rows, THERE 99 rows when read, 99 compared at once)"
        );
    }

    #[test]
    fn a_difference_wins() {
        let d = TableVerdict {
            differing: 1,
            ..v(100, 100, 99, 0, 5)
        };
        assert_eq!(d.state(), VerdictState::Different);
        assert!(!d.matches());
        assert_eq!(
            d.line(),
            "public.t: DIFFERENT (100 rows; 99 compared at once, 5 kept changing through 4 rounds, 1 differ)"
        );
    }

    #[test]
    fn the_summary_says_how_much_was_compared() {
        let mut a = v(2_000_000, 2_000_000, 2_000_000, 0, 0);
        a.table = TableName::new("public", "pgbench_accounts");
        let mut b = v(100, 100, 100, 0, 0);
        b.table = TableName::new("public", "pgbench_tellers");
        assert_eq!(
            verification_summary(&[a.clone(), b.clone()]),
            "all 2,000,100 rows compared"
        );
        let mut hot = v(20, 20, 0, 0, 20);
        hot.table = TableName::new("public", "pgbench_branches");
        a.compared = 1_999_700;
        a.in_flight = 300;
        assert_eq!(
            verification_summary(&[a, b, hot]),
            "99.98% of 2,000,120 rows compared, 2 tables still changing (public.pgbench_accounts, public.pgbench_branches)"
        );
        assert_eq!(
            verification_summary(&[v(0, 0, 0, 0, 0)]),
            "every table empty"
        );
        let many: Vec<TableVerdict> = (1..=12)
            .map(|i| TableVerdict {
                table: TableName::new("public", format!("t{i}")),
                differing: 1,
                ..v(10, 10, 9, 0, 0)
            })
            .collect();
        assert_eq!(
            verification_summary(&many),
            "90% of 120 rows compared, 12 tables DIFFERENT (public.t1, public.t2, public.t3, public.t4, \
             public.t5, public.t6, public.t7, public.t8, public.t9, public.t10 and 2 more, each on its own line)"
        );
        assert_eq!(share(1_999_999, 2_000_000), "99.99%");
        assert_eq!(share(1, 2), "50%");
        assert_eq!(crate::engine::plan::thousands(1234567), "1,234,567");
    }
}
