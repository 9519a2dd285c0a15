//! The Run screen: the reducer that folds the runner's [`RunEvent`]s into render-ready state
//! (step states and durations, per-table copy progress from deltas, the log pane, the confirm
//! gate), and its rendering: step list, progress bars with rate and ETA, log pane, gate overlay.
//! It also says, from the steps that finished, what state the databases are in after an abort
//! or a failure.

use crate::engine::event::{
    ConfirmMode, CopyEvent, GateReply, LogLevel, RunEvent, StepId, StepOutcome, TableVerdict,
};
use crate::engine::ident::TableName;
use crate::engine::plan::{command_lines, Plan, StepKind};
use crate::engine::runner::RunResult;
use crate::tui::theme;
use crate::tui::widgets::{
    centered, fit, fmt_bytes, fmt_count, fmt_duration, popup, spinner, truncate, wrap, Ui,
};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, LineGauge, Paragraph, Widget};
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

#[derive(Clone, Debug)]
pub struct StepRow {
    pub id: StepId,
    pub title: String,
    pub kind: StepKind,
    pub why: String,
    /// The step's commands as shown on the Review screen.
    pub commands: Vec<String>,
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
    pub ui: Ui,
    pub mode: ConfirmMode,
    /// Bucardo's sync name, for the commands in the "state of the databases" advice.
    pub sync: String,
    pub steps: Vec<StepRow>,
    pub tables: Vec<TableProgress>,
    pub log: VecDeque<LogLine>,
    /// Lines scrolled up from the newest; 0 follows the log.
    pub log_scroll: usize,
    pub gate: Option<StepId>,
    pub gate_choice: GateReply,
    pub started_at: Duration,
    pub copy_started: Option<Duration>,
    pub copy_ended: Option<Duration>,
    pub verdicts: Vec<TableVerdict>,
    pub aborting: bool,
    pub finished: Option<Finish>,
    pub result: Option<RunResult>,
}

impl RunState {
    pub fn new(plan: &Plan, mode: ConfirmMode, sync: &str, ui: Ui) -> RunState {
        let steps = plan
            .steps
            .iter()
            .map(|s| StepRow {
                id: s.id,
                title: s.title.clone(),
                kind: s.kind,
                why: s.why.clone(),
                commands: s.commands.iter().flat_map(command_lines).collect(),
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
        RunState {
            ui,
            mode,
            sync: sync.to_string(),
            steps,
            tables,
            log: VecDeque::new(),
            log_scroll: 0,
            gate: None,
            gate_choice: GateReply::Proceed,
            started_at: ui.now,
            copy_started: None,
            copy_ended: None,
            verdicts: Vec::new(),
            aborting: false,
            finished: None,
            result: None,
        }
    }

    pub fn running(&self) -> bool {
        self.finished.is_none()
    }

    fn table_mut(&mut self, t: &TableName) -> &mut TableProgress {
        let idx = match self.tables.iter().position(|p| &p.table == t) {
            Some(i) => i,
            None => {
                self.tables.push(TableProgress::waiting(t.clone(), 0, 0));
                self.tables.len() - 1
            }
        };
        &mut self.tables[idx]
    }

    fn push_log(&mut self, level: LogLevel, message: String) {
        for line in message.lines() {
            self.log.push_back(LogLine {
                level,
                message: line.to_string(),
            });
            if self.log_scroll > 0 {
                self.log_scroll += 1;
            }
        }
        while self.log.len() > LOG_CAPACITY {
            self.log.pop_front();
        }
        self.log_scroll = self.log_scroll.min(self.log.len());
    }

    /// Folds one runner event into the state; `self.ui.now` stamps it.
    pub fn apply(&mut self, ev: RunEvent) {
        let now = self.ui.now;
        match ev {
            RunEvent::Started { .. } => self.started_at = now,
            RunEvent::AwaitingConfirm { step } => {
                self.gate = Some(step);
                self.gate_choice = GateReply::Proceed;
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
            RunEvent::Verified(v) => {
                self.verdicts.retain(|x| x.table != v.table);
                self.verdicts.push(v);
            }
            RunEvent::Log { level, message } => self.push_log(level, message),
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
                ..
            } => {
                let p = self.table_mut(&table);
                p.rows = rows;
                p.bytes = bytes;
                p.elapsed = Some(elapsed);
                p.status = TableStatus::Done;
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

    fn done(&self, kind: StepKind) -> bool {
        self.steps
            .iter()
            .any(|s| s.kind == kind && matches!(s.state, StepState::Done | StepState::AlreadyDone))
    }

    fn started(&self, kind: StepKind) -> bool {
        self.steps.iter().any(|s| {
            s.kind == kind
                && !matches!(
                    s.state,
                    StepState::Pending | StepState::Awaiting | StepState::Skipped
                )
        })
    }

    /// What state HERE, THERE and Bucardo are in, judged by the steps that finished, and the
    /// two ways on: run the same bootstrap again (the journal skips what is done) or undo it.
    pub fn db_state(&self) -> String {
        let sync = &self.sync;
        let onward = "Run the wizard again with the same settings to resume (finished steps are skipped), or undo everything with `bucardo-bootstrap cleanup`.";
        if self.done(StepKind::Verify) {
            format!("Both databases replicate through sync {sync} and were verified identical.")
        } else if self.done(StepKind::Enable) {
            "The sync is active: Bucardo replicates both ways. Deltas logged during the copy may still be replaying; watch `bucardo-bootstrap status`, then run `bucardo-bootstrap verify`.".into()
        } else if self.done(StepKind::CopyData) {
            format!(
                "THERE holds the copy. Bucardo's triggers log every change since then on both sides, but sync {sync} is inactive, so nothing replicates yet. {onward}"
            )
        } else if self.done(StepKind::AddSync) {
            let copy = if self.started(StepKind::CopyData) {
                " and may hold part of the copy"
            } else {
                ""
            };
            format!(
                "Bucardo's triggers are logging deltas on HERE and THERE, but nothing replicates yet (sync {sync} is inactive); THERE has the schema{copy}. {onward}"
            )
        } else if self.done(StepKind::AddDatabases)
            || self.done(StepKind::AddTables)
            || self.done(StepKind::AddDbgroup)
        {
            format!("Nothing replicates and no trigger logs changes yet; THERE has the schema and Bucardo knows some of the names. {onward}")
        } else if self.done(StepKind::CopySchema) || self.done(StepKind::CreateDatabase) {
            format!("Nothing replicates yet; THERE has the schema and no rows, and HERE is unchanged. {onward}")
        } else if self
            .steps
            .iter()
            .any(|s| matches!(s.state, StepState::Done | StepState::AlreadyDone))
        {
            "Only preparation ran (roles, Bucardo's control database or daemon); no table changed on either side.".into()
        } else {
            "Nothing changed on either database.".into()
        }
    }

    fn step_lines(&self, rows: usize, width: usize) -> Vec<Line<'static>> {
        let t = self.ui.theme;
        let now = self.ui.now;
        let focus = self
            .steps
            .iter()
            .position(|s| {
                matches!(
                    s.state,
                    StepState::Running { .. } | StepState::Awaiting | StepState::Failed(_)
                )
            })
            .unwrap_or_else(|| {
                self.steps
                    .iter()
                    .rposition(|s| s.state != StepState::Pending)
                    .unwrap_or(0)
            });
        let first = (focus + 2)
            .saturating_sub(rows)
            .min(self.steps.len().saturating_sub(rows));
        self.steps
            .iter()
            .skip(first)
            .take(rows)
            .map(|s| {
                let (sym, style) = match &s.state {
                    StepState::Pending => (theme::PENDING.to_string(), t.dim()),
                    StepState::Awaiting => (theme::AWAITING.to_string(), t.accent()),
                    StepState::Running { .. } => (spinner(now).to_string(), t.accent()),
                    StepState::Done => (theme::OK.to_string(), t.ok()),
                    StepState::AlreadyDone => (theme::OK.to_string(), t.dim()),
                    StepState::Skipped => (theme::SKIPPED.to_string(), t.warn()),
                    StepState::Failed(_) => (theme::FAIL.to_string(), t.fail()),
                    StepState::Aborted => (theme::ABORTED.to_string(), t.fail()),
                };
                let time = match (&s.state, s.elapsed) {
                    (StepState::Running { since }, _) => fmt_duration(now.saturating_sub(*since)),
                    (StepState::Skipped, _) => "skipped".into(),
                    (StepState::AlreadyDone, _) => "earlier".into(),
                    (StepState::Awaiting, _) => "confirm".into(),
                    (_, Some(e)) => fmt_duration(e),
                    _ => String::new(),
                };
                let title_w = width.saturating_sub(5 + time.chars().count() + 1);
                let title_style = match s.state {
                    StepState::Running { .. } | StepState::Awaiting => t.bold(),
                    StepState::Pending => t.dim(),
                    _ => Style::new(),
                };
                Line::from(vec![
                    Span::styled(format!("{sym} "), style),
                    Span::styled(format!("{:>2} ", s.id + 1), t.dim()),
                    Span::styled(fit(&s.title, title_w), title_style),
                    Span::styled(format!(" {time}"), t.dim()),
                ])
            })
            .collect()
    }

    fn render_steps(&self, area: Rect, buf: &mut Buffer) {
        let t = self.ui.theme;
        let done = self
            .steps
            .iter()
            .filter(|s| s.state == StepState::Done)
            .count();
        let mode = match self.mode {
            ConfirmMode::Automatic => "automatic",
            ConfirmMode::EachStep => "confirm each",
        };
        let title = format!(" Steps {done}/{} · {mode} ", self.steps.len());
        let rows = area.height.saturating_sub(2) as usize;
        let lines = self.step_lines(rows, area.width.saturating_sub(2) as usize);
        Paragraph::new(lines)
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(Span::styled(title, t.bold())),
            )
            .render(area, buf);
    }

    fn totals(&self) -> (u64, u64, u64, usize) {
        let rows: u64 = self.tables.iter().map(|p| p.rows).sum();
        let est: u64 = self
            .tables
            .iter()
            .map(|p| {
                if p.status == TableStatus::Done {
                    p.rows
                } else {
                    (p.est_rows.max(0) as u64).max(p.rows)
                }
            })
            .sum();
        let bytes: u64 = self.tables.iter().map(|p| p.bytes).sum();
        let done = self
            .tables
            .iter()
            .filter(|p| p.status == TableStatus::Done)
            .count();
        (rows, est, bytes, done)
    }

    fn render_copy(&self, area: Rect, buf: &mut Buffer) {
        let t = self.ui.theme;
        let now = self.ui.now;
        let (rows, est, bytes, done) = self.totals();
        let block = Block::default().borders(Borders::ALL).title(Span::styled(
            format!(" Copy {done}/{} tables ", self.tables.len()),
            t.bold(),
        ));
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.height < 2 || inner.width < 20 {
            return;
        }
        let w = inner.width as usize;
        let elapsed = self
            .copy_started
            .map(|s| self.copy_ended.unwrap_or(now).saturating_sub(s));
        let rate = elapsed
            .map(|e| e.as_secs_f64())
            .filter(|s| *s > 0.0)
            .map(|s| bytes as f64 / s);
        let ratio = if est > 0 {
            (rows as f64 / est as f64).min(1.0)
        } else {
            0.0
        };
        let eta = match (elapsed, self.copy_ended) {
            (Some(e), None) if rows > 0 && est > rows => Some(Duration::from_secs_f64(
                (est - rows) as f64 / (rows as f64 / e.as_secs_f64().max(0.001)),
            )),
            _ => None,
        };
        let mut y = inner.y;
        let gauge = |label: String, ratio: f64, style: Style| {
            LineGauge::default()
                .ratio(ratio)
                .label(label)
                .filled_symbol("█")
                .unfilled_symbol("░")
                .filled_style(style)
                .unfilled_style(t.gauge_unfilled())
        };
        let name_w = (w / 2).saturating_sub(8).clamp(8, 28);
        gauge(
            format!(
                "{}  {:>3}% ",
                fit("Total", name_w + 2),
                (ratio * 100.0) as u32
            ),
            ratio,
            t.gauge_filled().patch(t.bold()),
        )
        .render(
            Rect {
                x: inner.x,
                y,
                width: inner.width,
                height: 1,
            },
            buf,
        );
        y += 1;
        let wide = w >= 60;
        let mut stats = format!("  {}/{} rows", fmt_count(rows), fmt_count(est));
        if wide || rate.is_none() {
            stats.push_str(&format!(" · {}", fmt_bytes(bytes)));
        }
        if let Some(r) = rate {
            stats.push_str(&format!(" · {}/s", fmt_bytes(r as u64)));
        }
        if let (Some(e), true) = (elapsed, wide) {
            stats.push_str(&format!(" · {}", fmt_duration(e)));
        }
        if let Some(e) = eta {
            stats.push_str(&format!(" · ETA {}", fmt_duration(e)));
        }
        Paragraph::new(Line::styled(truncate(&stats, w), t.dim())).render(
            Rect {
                x: inner.x,
                y,
                width: inner.width,
                height: 1,
            },
            buf,
        );
        y += 1;

        // Failed and running tables first, then waiting, then done.
        let rank = |p: &TableProgress| match p.status {
            TableStatus::Failed(_) => 0,
            TableStatus::Copying | TableStatus::Stopped => 1,
            TableStatus::Waiting => 2,
            TableStatus::Done => 3,
        };
        let mut order: Vec<&TableProgress> = self.tables.iter().collect();
        order.sort_by_key(|p| rank(p));
        let room = (inner.y + inner.height).saturating_sub(y) as usize / 2;
        for p in order.iter().take(room) {
            let sym = match p.status {
                TableStatus::Waiting => theme::PENDING.to_string(),
                TableStatus::Copying => spinner(now).to_string(),
                TableStatus::Done => theme::OK.to_string(),
                TableStatus::Failed(_) => theme::FAIL.to_string(),
                TableStatus::Stopped => theme::ABORTED.to_string(),
            };
            let pct = (p.ratio() * 100.0) as u32;
            let label = format!("{sym} {}  {pct:>3}% ", fit(&p.table.to_string(), name_w));
            let filled = if matches!(p.status, TableStatus::Failed(_)) {
                t.fail()
            } else {
                t.gauge_filled()
            };
            gauge(label, p.ratio(), filled).render(
                Rect {
                    x: inner.x,
                    y,
                    width: inner.width,
                    height: 1,
                },
                buf,
            );
            y += 1;
            let detail = match &p.status {
                TableStatus::Waiting => format!(
                    "    waiting · about {} rows, {}",
                    fmt_count(p.est_rows.max(0) as u64),
                    fmt_bytes(p.est_bytes.max(0) as u64)
                ),
                TableStatus::Copying if p.index_phase.is_some() => {
                    format!("    {}", p.index_phase.as_deref().unwrap_or_default())
                }
                TableStatus::Copying => {
                    let mut s = format!(
                        "    {}/{} rows",
                        fmt_count(p.rows),
                        fmt_count(p.est_rows.max(0) as u64)
                    );
                    if let Some(r) = p.rate(now) {
                        s.push_str(&format!(" · {}/s", fmt_bytes(r as u64)));
                    }
                    if let Some(e) = p.eta(now) {
                        s.push_str(&format!(" · ETA {}", fmt_duration(e)));
                    }
                    // Least important last: a narrow pane cuts these first.
                    if wide {
                        s.push_str(&format!(" · {}", fmt_bytes(p.bytes)));
                        if let Some(n) = p.there_rows {
                            s.push_str(&format!(" · THERE has {}", fmt_count(n)));
                        }
                    }
                    s
                }
                TableStatus::Done => format!(
                    "    {} rows · {} in {}",
                    fmt_count(p.rows),
                    fmt_bytes(p.bytes),
                    p.elapsed.map(fmt_duration).unwrap_or_default()
                ),
                TableStatus::Failed(e) => {
                    format!("    failed after {} rows: {e}", fmt_count(p.rows))
                }
                TableStatus::Stopped => format!(
                    "    stopped after {} rows, {}",
                    fmt_count(p.rows),
                    fmt_bytes(p.bytes)
                ),
            };
            let dstyle = if matches!(p.status, TableStatus::Failed(_)) {
                t.fail()
            } else {
                t.dim()
            };
            Paragraph::new(Line::styled(truncate(&detail, w), dstyle)).render(
                Rect {
                    x: inner.x,
                    y,
                    width: inner.width,
                    height: 1,
                },
                buf,
            );
            y += 1;
        }
        if order.len() > room && y < inner.y + inner.height {
            Paragraph::new(Line::styled(
                format!("  … {} more", order.len() - room),
                t.dim(),
            ))
            .render(
                Rect {
                    x: inner.x,
                    y,
                    width: inner.width,
                    height: 1,
                },
                buf,
            );
        }
    }

    fn render_log(&self, area: Rect, buf: &mut Buffer) {
        let t = self.ui.theme;
        let rows = area.height.saturating_sub(2) as usize;
        let w = area.width.saturating_sub(2) as usize;
        let end = self.log.len().saturating_sub(self.log_scroll);
        let start = end.saturating_sub(rows);
        let lines: Vec<Line> = self
            .log
            .iter()
            .skip(start)
            .take(end - start)
            .map(|l| {
                let (sym, style) = match l.level {
                    LogLevel::Info => (" ", Style::new()),
                    LogLevel::Warn => (theme::WARN, t.warn()),
                    LogLevel::Error => (theme::FAIL, t.fail()),
                };
                Line::from(vec![
                    Span::styled(format!("{sym} "), style),
                    Span::styled(truncate(&l.message, w.saturating_sub(2)), style),
                ])
            })
            .collect();
        let title = if self.log_scroll == 0 {
            format!(" Log · {} lines · following ", self.log.len())
        } else {
            format!(" Log · {} lines up · End: follow ", self.log_scroll)
        };
        Paragraph::new(lines)
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(Span::styled(title, t.bold())),
            )
            .render(area, buf);
    }

    /// What the run came to, wrapped to `width` (at most four lines): after a failure or an
    /// abort it says at once what state the databases are in.
    fn banner_lines(&self, width: usize) -> Vec<Line<'static>> {
        let t = self.ui.theme;
        let (style, text) = match &self.finished {
            Some(Finish { ok: true, summary }) => (
                t.ok().patch(t.bold()),
                format!("{} Finished: {summary}. Enter: summary", theme::OK),
            ),
            Some(Finish { ok: false, summary }) => {
                let aborted = self.aborting || self.result.as_ref().is_some_and(|r| r.aborted);
                let head = if aborted {
                    format!("{} Aborted.", theme::ABORTED)
                } else {
                    let at = self
                        .failed_step()
                        .map(|s| format!(" at step {} ({})", s.id + 1, s.title))
                        .unwrap_or_default();
                    format!("{} Failed{at}: {summary}.", theme::FAIL)
                };
                (
                    t.fail(),
                    format!("{head} {} Enter: summary", self.db_state()),
                )
            }
            None if self.aborting => (
                t.fail(),
                format!(
                    "{} Aborting: stopping at the next safe point…",
                    spinner(self.ui.now)
                ),
            ),
            None => return vec![],
        };
        wrap(&text, width)
            .into_iter()
            .take(4)
            .map(|l| Line::styled(l, style))
            .collect()
    }

    fn render_gate(&self, area: Rect, buf: &mut Buffer) {
        let Some(step) = self.gate.and_then(|id| self.steps.get(id)) else {
            return;
        };
        let t = self.ui.theme;
        let w = area.width.saturating_sub(4).min(100);
        let inner_w = w.saturating_sub(2) as usize;
        let mut lines = vec![Line::styled(step.title.clone(), t.bold())];
        lines.extend(
            wrap(&step.why, inner_w)
                .into_iter()
                .map(|l| Line::styled(l, t.dim())),
        );
        lines.push(Line::raw(""));
        if step.commands.is_empty() {
            lines.push(Line::styled("(changes nothing)", t.dim()));
        } else {
            lines.push(Line::raw("Runs:"));
        }
        let cmd_lines: Vec<String> = step
            .commands
            .iter()
            .flat_map(|c| wrap(&format!("  {c}"), inner_w))
            .collect();
        let room = (area.height as usize)
            .saturating_sub(lines.len() + 6)
            .max(2);
        let shown = cmd_lines.len().min(room);
        for l in cmd_lines.iter().take(if shown < cmd_lines.len() {
            shown - 1
        } else {
            shown
        }) {
            lines.push(Line::raw(l.clone()));
        }
        if shown < cmd_lines.len() {
            lines.push(Line::styled(
                format!(
                    "  … {} more lines (the Review screen has them all)",
                    cmd_lines.len() - shown + 1
                ),
                t.dim(),
            ));
        }
        lines.push(Line::raw(""));
        let button = |label: &str, reply: GateReply| {
            let style = if self.gate_choice == reply {
                t.selected().patch(t.bold())
            } else {
                Style::new()
            };
            Span::styled(format!("[ {label} ]"), style)
        };
        lines.push(Line::from(vec![
            button("Proceed (p)", GateReply::Proceed),
            Span::raw("   "),
            button("Skip (s)", GateReply::Skip),
            Span::raw("   "),
            button("Abort (a)", GateReply::Abort),
        ]));
        let h = lines.len() as u16 + 2;
        let title = format!("Step {} of {}: proceed?", step.id + 1, self.steps.len());
        popup(centered(area, w, h), buf, &title, lines, t);
    }
}

impl Widget for &RunState {
    /// ```text
    ///  banner (finished, failed or aborting)
    /// ┌ Steps 10/15 ─────────┐┌ Copy 2/6 tables ───────────────────┐
    /// │✓  1 Create THERE's … ││Total            45% ████████░░░░░░ │
    /// │⠋ 11 Copy the data 3 s││  56.2k/125k rows · 12 MB · 3 MB/s  │
    /// └──────────────────────┘└────────────────────────────────────┘
    /// ┌ Log · following ────────────────────────────────────────────┐
    /// └─────────────────────────────────────────────────────────────┘
    ///           gate overlay in confirm mode
    /// ```
    fn render(self, area: Rect, buf: &mut Buffer) {
        let banner = self.banner_lines(area.width as usize);
        let banner_h = banner.len() as u16;
        let avail = area.height.saturating_sub(banner_h);
        let log_h = (avail / 3).max(6);
        let copy_need = 4 + 2 * self.tables.len() as u16;
        let top_need = (self.steps.len() as u16 + 2).max(copy_need).max(8);
        let top_h = top_need.min(avail.saturating_sub(log_h));
        let [banner_area, top, log_area] = Layout::vertical([
            Constraint::Length(banner_h),
            Constraint::Length(top_h),
            Constraint::Min(3),
        ])
        .areas(area);
        Paragraph::new(banner).render(banner_area, buf);
        let steps_w = (area.width * 2 / 5).max(30).min(area.width / 2);
        let [steps_area, copy_area] =
            Layout::horizontal([Constraint::Length(steps_w), Constraint::Min(20)]).areas(top);
        self.render_steps(steps_area, buf);
        self.render_copy(copy_area, buf);
        self.render_log(log_area, buf);
        self.render_gate(area, buf);
    }
}
