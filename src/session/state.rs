//! The state of a run as its events fold into it: each step's state and time, per-table copy
//! progress (rows, bytes, rate, ETA, THERE's own count, index phases), verdicts, the log, the
//! open confirm gate and how the run ended. Every front end reads this one fold: the wizard's
//! Run and Done screens, plain mode and the headless printer. The clock is passed in (`now`), so
//! the figures are testable without waiting.

use crate::engine::copy::format::Format;
use crate::engine::event::{
    ConfirmMode, CopyEvent, LogLevel, RunEvent, StepId, StepOutcome, TableVerdict,
};
use crate::engine::ident::TableName;
use crate::engine::plan::{Plan, StepKind};
use crate::engine::runner::{RunEnd, RunResult};
use std::collections::VecDeque;
use std::time::Duration;

/// The log pane keeps this many lines (the log file keeps everything).
pub const LOG_CAPACITY: usize = 5000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepState {
    Pending,
    Awaiting,
    Running {
        since: Duration,
    },
    Done,
    /// Finished by an earlier run of the same plan (the journal); not run again.
    AlreadyDone,
    Skipped,
    Failed(String),
    Aborted,
}

/// How many lines of a step's commands a run keeps for its confirmation prompt: over 10,000
/// tables they are 130,000 lines and 28 MB, and the plan and the Review screen have them all.
pub const STEP_LINES_KEPT: usize = 100;

#[derive(Clone, Debug)]
pub struct StepRow {
    pub id: StepId,
    pub title: String,
    pub kind: StepKind,
    pub why: String,
    /// The first [`STEP_LINES_KEPT`] lines of the step's commands as the Review screen shows
    /// them; `more_lines` counts the rest.
    pub commands: Vec<String>,
    pub more_lines: usize,
    pub state: StepState,
    pub elapsed: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableStatus {
    Waiting,
    Copying,
    Done,
    Failed(String),
    /// The run ended while this table was copying (another table failed, or an abort).
    Stopped,
}

/// One table's copy, reduced from `CopyEvent` deltas.
#[derive(Clone, Debug)]
pub struct TableProgress {
    pub table: TableName,
    pub est_rows: i64,
    pub est_bytes: i64,
    pub rows: u64,
    pub bytes: u64,
    pub started_at: Option<Duration>,
    pub elapsed: Option<Duration>,
    pub status: TableStatus,
    /// Rows THERE reports having taken (`pg_stat_progress_copy`), a cross-check of `rows`.
    pub there_rows: Option<u64>,
    /// The deferred index THERE is building for it now, with the build's phase.
    pub index_phase: Option<String>,
    /// Once copied: binary or text COPY, and in how many key ranges.
    pub format: Option<Format>,
    pub parts: usize,
}

impl TableProgress {
    fn waiting(table: TableName, est_rows: i64, est_bytes: i64) -> TableProgress {
        TableProgress {
            table,
            est_rows,
            est_bytes,
            rows: 0,
            bytes: 0,
            started_at: None,
            elapsed: None,
            status: TableStatus::Waiting,
            there_rows: None,
            index_phase: None,
            format: None,
            parts: 0,
        }
    }

    /// Share done, against the row estimate (or the size when there is none). Estimates can be
    /// low, so an unfinished table never shows 100 %.
    pub fn ratio(&self) -> f64 {
        if self.status == TableStatus::Done {
            return 1.0;
        }
        let r = if self.est_rows > 0 {
            self.rows as f64 / self.est_rows as f64
        } else if self.est_bytes > 0 {
            self.bytes as f64 / self.est_bytes as f64
        } else {
            0.0
        };
        r.clamp(0.0, 0.99)
    }

    pub fn time(&self, now: Duration) -> Option<Duration> {
        self.elapsed
            .or_else(|| self.started_at.map(|s| now.saturating_sub(s)))
    }

    /// Bytes per second.
    pub fn rate(&self, now: Duration) -> Option<f64> {
        let secs = self.time(now)?.as_secs_f64();
        (secs > 0.0).then(|| self.bytes as f64 / secs)
    }

    pub fn eta(&self, now: Duration) -> Option<Duration> {
        if self.status != TableStatus::Copying {
            return None;
        }
        let secs = self.time(now)?.as_secs_f64();
        let (done, total) = if self.est_rows > 0 {
            (self.rows as f64, self.est_rows as f64)
        } else {
            (self.bytes as f64, self.est_bytes as f64)
        };
        if done <= 0.0 || secs <= 0.0 || total <= 0.0 {
            return None;
        }
        Some(Duration::from_secs_f64(
            ((total - done).max(0.0)) / (done / secs),
        ))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finish {
    pub ok: bool,
    pub summary: String,
}

#[derive(Clone, Debug)]
pub struct RunState {
    /// The session's clock (time since the front end started), set by the front end before each
    /// event; every time in here is measured on it.
    pub now: Duration,
    pub mode: ConfirmMode,
    /// Bucardo's sync name, for the commands in the "state of the databases" advice.
    pub sync: String,
    pub steps: Vec<StepRow>,
    pub tables: Vec<TableProgress>,
    pub log: VecDeque<LogLine>,
    /// Log lines ever added (the pane keeps the last [`LOG_CAPACITY`]).
    pub log_total: u64,
    pub gate: Option<StepId>,
    pub started_at: Duration,
    pub copy_started: Option<Duration>,
    pub copy_ended: Option<Duration>,
    pub verdicts: Vec<TableVerdict>,
    /// Where each table's verdict is in `verdicts`: 10,000 of them arrive one by one.
    verdict_at: std::collections::HashMap<TableName, usize>,
    /// Where each table is in `tables`: the copy's events name one table each, several per
    /// table, and a search of 10,000 for each made the front end what the copy waited on.
    table_at: std::collections::HashMap<TableName, usize>,
    pub aborting: bool,
    pub finished: Option<Finish>,
    pub result: Option<RunResult>,
    /// What the plan does not simply replicate: materialized views refreshed once, and what is
    /// left out with the reason ([`crate::engine::coverage::Coverage::report`]).
    pub account: Vec<String>,
    /// HERE's health as the governor saw it, once a second for the whole run.
    pub here: HereHistory,
}

/// One second of HERE: its transaction rate and probe round-trip, and the step running then.
#[derive(Clone, Debug, PartialEq)]
pub struct HerePoint {
    pub at_s: f64,
    pub rate: f64,
    pub probe_ms: f64,
    pub step: Option<StepId>,
}

/// The governor's reports folded: the latest, and the whole series.
#[derive(Clone, Debug, Default)]
pub struct HereHistory {
    pub latest: Option<crate::engine::governor::View>,
    pub points: Vec<HerePoint>,
    /// The oldest snapshot the bootstrap held on HERE, at its oldest.
    pub max_held: Option<crate::engine::governor::Held>,
}

impl HereHistory {
    /// The last `n` rates, oldest first.
    pub fn recent_rates(&self, n: usize) -> Vec<f64> {
        let from = self.points.len().saturating_sub(n);
        self.points[from..].iter().map(|p| p.rate).collect()
    }

    /// The last `n` probe round-trips in ms, oldest first.
    pub fn recent_probes(&self, n: usize) -> Vec<f64> {
        let from = self.points.len().saturating_sub(n);
        self.points[from..].iter().map(|p| p.probe_ms).collect()
    }

    /// Mean, worst and seconds under half of the first baseline, over the whole run, in percent.
    pub fn summary(&self) -> Option<(f64, f64, usize)> {
        let base = self.latest.as_ref()?.first_baseline?.rate;
        if base < crate::engine::governor::MIN_STEERING_RATE || self.points.is_empty() {
            return None;
        }
        let pcts: Vec<f64> = self.points.iter().map(|p| p.rate / base * 100.0).collect();
        let mean = pcts.iter().sum::<f64>() / pcts.len() as f64;
        let worst = pcts.iter().copied().fold(f64::INFINITY, f64::min);
        let under = pcts.iter().filter(|p| **p < 50.0).count();
        Some((mean, worst, under))
    }
}

impl RunState {
    pub fn new(plan: &Plan, mode: ConfirmMode, sync: &str, now: Duration) -> RunState {
        let steps = plan
            .steps
            .iter()
            .map(|s| {
                // One pass: the sequences' lines are rendered as they are counted.
                let mut lines = plan.step_lines(s);
                let commands: Vec<String> = lines.by_ref().take(STEP_LINES_KEPT).collect();
                (s, commands, lines.count())
            })
            .map(|(s, commands, more_lines)| StepRow {
                id: s.id,
                title: s.title.clone(),
                kind: s.kind,
                why: s.why.clone(),
                commands,
                more_lines,
                state: if s.already_done {
                    StepState::AlreadyDone
                } else {
                    StepState::Pending
                },
                elapsed: None,
            })
            .collect();
        let mut tables: Vec<TableProgress> = plan
            .tables
            .iter()
            .map(|t| TableProgress::waiting(t.name.clone(), t.est_rows, t.total_bytes))
            .collect();
        // The copy goes largest first; list the tables in that order.
        tables.sort_by(|a, b| b.est_bytes.cmp(&a.est_bytes).then(a.table.cmp(&b.table)));
        let table_at = tables
            .iter()
            .enumerate()
            .map(|(i, p)| (p.table.clone(), i))
            .collect();
        RunState {
            now,
            mode,
            sync: sync.to_string(),
            steps,
            tables,
            log: VecDeque::new(),
            log_total: 0,
            gate: None,
            started_at: now,
            copy_started: None,
            copy_ended: None,
            verdicts: Vec::new(),
            verdict_at: Default::default(),
            table_at,
            account: plan.coverage.report(),
            here: HereHistory::default(),
            aborting: false,
            finished: None,
            result: None,
        }
    }

    /// The state of a copy run on its own (the `copy` command): no steps, tables as they start.
    pub fn for_copy(now: Duration) -> RunState {
        let plan = Plan {
            steps: vec![],
            tables: vec![],
            coverage: Default::default(),
            fingerprint: String::new(),
            trigger_batch: 1,
            sequence_targets: None,
        };
        RunState::new(&plan, ConfirmMode::Automatic, "", now)
    }

    pub fn running(&self) -> bool {
        self.finished.is_none()
    }

    fn table_mut(&mut self, t: &TableName) -> &mut TableProgress {
        let idx = match self.table_at.get(t) {
            Some(&i) => i,
            None => {
                self.tables.push(TableProgress::waiting(t.clone(), 0, 0));
                self.table_at.insert(t.clone(), self.tables.len() - 1);
                self.tables.len() - 1
            }
        };
        &mut self.tables[idx]
    }

    /// One table's copy progress.
    pub fn table(&self, t: &TableName) -> Option<&TableProgress> {
        self.table_at.get(t).and_then(|&i| self.tables.get(i))
    }

    fn push_log(&mut self, level: LogLevel, message: String) {
        for line in message.lines() {
            self.log.push_back(LogLine {
                level,
                message: line.to_string(),
            });
            self.log_total += 1;
        }
        while self.log.len() > LOG_CAPACITY {
            self.log.pop_front();
        }
    }

    /// Folds one runner event into the state; `self.now` stamps it.
    pub fn apply(&mut self, ev: RunEvent) {
        let now = self.now;
        match ev {
            RunEvent::Started { .. } => self.started_at = now,
            RunEvent::AwaitingConfirm { step } => {
                self.gate = Some(step);
                if let Some(s) = self.steps.get_mut(step) {
                    s.state = StepState::Awaiting;
                }
            }
            RunEvent::StepStarted { step } => {
                if let Some(s) = self.steps.get_mut(step) {
                    s.state = StepState::Running { since: now };
                }
            }
            RunEvent::StepFinished {
                step,
                outcome,
                elapsed,
            } => {
                if self.gate == Some(step) {
                    self.gate = None;
                }
                if let Some(s) = self.steps.get_mut(step) {
                    s.state = match outcome {
                        StepOutcome::Done => StepState::Done,
                        StepOutcome::AlreadyDone => StepState::AlreadyDone,
                        StepOutcome::Skipped => StepState::Skipped,
                        StepOutcome::Failed(e) => StepState::Failed(e),
                        StepOutcome::Aborted => StepState::Aborted,
                    };
                    s.elapsed = Some(elapsed);
                    if s.kind == StepKind::CopyData && self.copy_started.is_some() {
                        self.copy_ended.get_or_insert(now);
                    }
                }
            }
            RunEvent::Copy(c) => self.apply_copy(c, now),
            RunEvent::Verified(v) => match self.verdict_at.get(&v.table) {
                Some(&i) => self.verdicts[i] = v,
                None => {
                    self.verdict_at.insert(v.table.clone(), self.verdicts.len());
                    self.verdicts.push(v);
                }
            },
            RunEvent::Log { level, message } => self.push_log(level, message),
            RunEvent::Here(view) => {
                let step = self.current_step().map(|s| s.id);
                if view.first_baseline.is_some() {
                    self.here.points.push(HerePoint {
                        at_s: view.at_s,
                        rate: view.rate,
                        probe_ms: view.probe_ms,
                        step,
                    });
                }
                if let Some(h) = view.held {
                    if self.here.max_held.is_none_or(|m| h.secs > m.secs) {
                        self.here.max_held = Some(h);
                    }
                }
                self.here.latest = Some(view);
            }
            RunEvent::Finished { ok, summary } => {
                self.gate = None;
                self.finished = Some(Finish { ok, summary });
                for p in self
                    .tables
                    .iter_mut()
                    .filter(|p| p.status == TableStatus::Copying)
                {
                    p.elapsed = p.time(now);
                    p.status = TableStatus::Stopped;
                }
            }
        }
    }

    fn apply_copy(&mut self, c: CopyEvent, now: Duration) {
        match c {
            CopyEvent::TableStarted {
                table,
                est_rows,
                est_bytes,
            } => {
                self.copy_started.get_or_insert(now);
                let p = self.table_mut(&table);
                p.est_rows = est_rows;
                p.est_bytes = est_bytes;
                p.rows = 0;
                p.bytes = 0;
                p.started_at = Some(now);
                p.status = TableStatus::Copying;
            }
            CopyEvent::Advanced { table, rows, bytes } => {
                let p = self.table_mut(&table);
                p.rows += rows;
                p.bytes += bytes;
                if p.status == TableStatus::Waiting {
                    p.status = TableStatus::Copying;
                    p.started_at = Some(now);
                }
            }
            CopyEvent::TableFinished {
                table,
                rows,
                bytes,
                elapsed,
                format,
                parts,
            } => {
                let p = self.table_mut(&table);
                p.rows = rows;
                p.bytes = bytes;
                p.elapsed = Some(elapsed);
                p.status = TableStatus::Done;
                p.format = Some(format);
                p.parts = parts;
            }
            CopyEvent::TableFailed { table, error } => {
                let p = self.table_mut(&table);
                p.elapsed = p.time(now);
                p.status = TableStatus::Failed(error);
            }
            CopyEvent::ThereRows { table, rows } => {
                self.table_mut(&table).there_rows = Some(rows);
            }
            CopyEvent::IndexPhase {
                table,
                index,
                phase,
                percent,
            } => {
                let pct = percent.map(|p| format!(" {p}%")).unwrap_or_default();
                let phase = phase.strip_prefix("building index: ").unwrap_or(&phase);
                self.table_mut(&table).index_phase = Some(format!("index {index}: {phase}{pct}"));
            }
            // Ranges are the journal's business; the bar counts rows.
            CopyEvent::TableSplit { .. } | CopyEvent::RangeDone { .. } => {}
        }
    }

    pub fn current_step(&self) -> Option<&StepRow> {
        self.steps
            .iter()
            .find(|s| matches!(s.state, StepState::Running { .. } | StepState::Awaiting))
            .or_else(|| {
                self.steps
                    .iter()
                    .rev()
                    .find(|s| s.state != StepState::Pending)
            })
    }

    pub fn failed_step(&self) -> Option<&StepRow> {
        self.steps
            .iter()
            .find(|s| matches!(s.state, StepState::Failed(_)))
    }

    /// Finished, in this run or an earlier one.
    pub fn done(&self, kind: StepKind) -> bool {
        self.steps
            .iter()
            .any(|s| s.kind == kind && matches!(s.state, StepState::Done | StepState::AlreadyDone))
    }

    /// Begun in this run (or done earlier).
    pub fn started(&self, kind: StepKind) -> bool {
        self.steps.iter().any(|s| {
            s.kind == kind
                && !matches!(
                    s.state,
                    StepState::Pending | StepState::Awaiting | StepState::Skipped
                )
        })
    }

    /// How the run ended: the runner's answer once it has returned; before that, the operator's
    /// abort or the last event.
    pub fn end(&self) -> Option<RunEnd> {
        if let Some(r) = &self.result {
            return Some(r.end.clone());
        }
        self.finished.as_ref().map(|f| {
            if f.ok {
                RunEnd::Completed
            } else if self.aborting {
                RunEnd::Aborted { step: None }
            } else {
                RunEnd::Failed {
                    step: self.failed_step().map(|s| s.id),
                    error: crate::engine::EngineError::Refused(f.summary.clone()),
                }
            }
        })
    }
}
