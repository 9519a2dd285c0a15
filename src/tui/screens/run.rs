//! The Run screen: the session's [`RunState`] with what only a screen needs (the theme and clock,
//! the log's scroll position, the gate's highlighted button), and its rendering: step list,
//! progress bars with rate and ETA, log pane, gate overlay.

use crate::engine::event::{ConfirmMode, GateReply, LogLevel, RunEvent};
use crate::engine::governor::Mode;
use crate::engine::plan::Plan;
use crate::engine::runner::RunEnd;
pub use crate::session::state::{RunState, StepState, TableProgress, TableStatus};
use crate::session::text;
use crate::tui::theme;
use crate::tui::widgets::{
    centered, fit, fmt_bytes, fmt_count, fmt_duration, popup, spinner, truncate, wrap, Ui,
};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, LineGauge, Paragraph, Sparkline, Widget};
use std::time::Duration;

/// A run as the Run screen shows it.
#[derive(Clone, Debug)]
pub struct RunView {
    pub run: RunState,
    pub ui: Ui,
    /// Lines scrolled up from the newest; 0 follows the log.
    pub log_scroll: usize,
    /// The gate's highlighted button.
    pub gate_choice: GateReply,
}

impl RunView {
    pub fn new(plan: &Plan, mode: ConfirmMode, sync: &str, ui: Ui) -> RunView {
        RunView {
            run: RunState::new(plan, mode, sync, ui.now),
            ui,
            log_scroll: 0,
            gate_choice: GateReply::Proceed,
        }
    }

    pub fn running(&self) -> bool {
        self.run.running()
    }

    /// Folds an event into the run at the screen's clock; a scrolled-up log keeps its place.
    pub fn apply(&mut self, ev: RunEvent) {
        if matches!(ev, RunEvent::AwaitingConfirm { .. }) {
            self.gate_choice = GateReply::Proceed;
        }
        self.run.now = self.ui.now;
        let before = self.run.log_total;
        self.run.apply(ev);
        if self.log_scroll > 0 {
            self.log_scroll += (self.run.log_total - before) as usize;
        }
        self.log_scroll = self.log_scroll.min(self.run.log.len());
    }

    fn step_lines(&self, rows: usize, width: usize) -> Vec<Line<'static>> {
        let t = self.ui.theme;
        let now = self.ui.now;
        let focus = self
            .run
            .steps
            .iter()
            .position(|s| {
                matches!(
                    s.state,
                    StepState::Running { .. } | StepState::Awaiting | StepState::Failed(_)
                )
            })
            .unwrap_or_else(|| {
                self.run
                    .steps
                    .iter()
                    .rposition(|s| s.state != StepState::Pending)
                    .unwrap_or(0)
            });
        let first = (focus + 2)
            .saturating_sub(rows)
            .min(self.run.steps.len().saturating_sub(rows));
        self.run
            .steps
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
            .run
            .steps
            .iter()
            .filter(|s| s.state == StepState::Done)
            .count();
        let mode = match self.run.mode {
            ConfirmMode::Automatic => "automatic",
            ConfirmMode::EachStep => "confirm each",
        };
        let title = format!(" Steps {done}/{} · {mode} ", self.run.steps.len());
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
        let rows: u64 = self.run.tables.iter().map(|p| p.rows).sum();
        let est: u64 = self
            .run
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
        let bytes: u64 = self.run.tables.iter().map(|p| p.bytes).sum();
        let done = self
            .run
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
            format!(" Copy {done}/{} tables ", self.run.tables.len()),
            t.bold(),
        ));
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.height < 2 || inner.width < 20 {
            return;
        }
        let w = inner.width as usize;
        let elapsed = self
            .run
            .copy_started
            .map(|s| self.run.copy_ended.unwrap_or(now).saturating_sub(s));
        let rate = elapsed
            .map(|e| e.as_secs_f64())
            .filter(|s| *s > 0.0)
            .map(|s| bytes as f64 / s);
        let ratio = if est > 0 {
            (rows as f64 / est as f64).min(1.0)
        } else {
            0.0
        };
        let eta = match (elapsed, self.run.copy_ended) {
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
        let mut order: Vec<&TableProgress> = self.run.tables.iter().collect();
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

    /// Rows the HERE panel takes: none until the governor reported.
    fn here_height(&self) -> u16 {
        if self.run.here.latest.is_some() {
            4
        } else {
            0
        }
    }

    /// HERE's health and the governor's state: transactions per second and probe round-trips
    /// over the last minutes as sparklines (a full bar is the baseline), the oldest snapshot
    /// the bootstrap holds there, and the keys that steer the governor.
    fn render_here(&self, area: Rect, buf: &mut Buffer) {
        let t = self.ui.theme;
        let Some(v) = &self.run.here.latest else {
            return;
        };
        let style = match v.mode {
            Mode::Full | Mode::Off => t.ok(),
            Mode::Measuring | Mode::Throttled => t.accent(),
            Mode::Paused | Mode::Held => t.warn(),
        };
        let mut state = v.mode.word().to_string();
        if v.mode == Mode::Throttled {
            state.push_str(&format!(
                " to {}%, {}/{} workers",
                (v.duty * 100.0).round() as i64,
                v.workers,
                v.jobs
            ));
        }
        if !v.why.is_empty() {
            state.push_str(": ");
            state.push_str(&v.why);
        }
        let title_w = area.width.saturating_sub(4) as usize;
        let block = Block::default()
            .borders(Borders::ALL)
            .title(Line::from(vec![
                Span::styled(" HERE ", t.bold()),
                Span::styled(
                    format!("{} ", truncate(&state, title_w.saturating_sub(6))),
                    style,
                ),
            ]));
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.height < 2 || inner.width < 30 {
            return;
        }
        let [top, bottom] =
            Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(inner);
        let base = v.baseline.map(|b| b.rate).unwrap_or(0.0);
        let rate = match v.rate_pct() {
            Some(p) => format!(
                " {}/s {}%",
                text::fmt_thousands(v.rate.round() as i64),
                p.round() as i64
            ),
            None => format!(" {}/s", text::fmt_thousands(v.rate.round() as i64)),
        };
        let probe = format!(" {:.1} ms", v.probe_ms);
        let wide = inner.width >= 100;
        let mut cols = vec![
            Constraint::Length(5),
            Constraint::Min(10),
            Constraint::Length(rate.chars().count() as u16),
        ];
        if wide {
            cols.extend([
                Constraint::Length(8),
                Constraint::Length(30),
                Constraint::Length(probe.chars().count() as u16),
            ]);
        }
        let areas = Layout::horizontal(cols).split(top);
        Paragraph::new(Span::styled("tx/s ", t.dim())).render(areas[0], buf);
        let n = areas[1].width as usize;
        let rates: Vec<u64> = self
            .run
            .here
            .recent_rates(n)
            .iter()
            .map(|r| r.round() as u64)
            .collect();
        Sparkline::default()
            .data(&rates)
            .max(base.round().max(1.0) as u64)
            .style(style)
            .render(areas[1], buf);
        Paragraph::new(Span::styled(rate, style)).render(areas[2], buf);
        if wide {
            Paragraph::new(Span::styled("  probe ", t.dim())).render(areas[3], buf);
            let probes: Vec<u64> = self
                .run
                .here
                .recent_probes(areas[4].width as usize)
                .iter()
                .map(|p| (p * 1000.0).round() as u64)
                .collect();
            let pmax = probes.iter().copied().max().unwrap_or(1).max(1000);
            Sparkline::default()
                .data(&probes)
                .max(pmax)
                .style(t.dim())
                .render(areas[4], buf);
            Paragraph::new(Span::raw(probe.clone())).render(areas[5], buf);
        }
        let mut facts = Vec::new();
        if let Some(b) = v.first_baseline {
            facts.push(format!(
                "full bar = baseline {}/s",
                text::fmt_thousands(b.rate.round() as i64)
            ));
        }
        if !wide {
            facts.push(format!("probe{probe}"));
        }
        facts.push(match v.held {
            Some(h) => format!("oldest snapshot held {} s", h.secs),
            None => "no snapshot held".into(),
        });
        if let Some(l) = v.replica_lag_s {
            facts.push(format!("standby lag {l:.0} s"));
        }
        Paragraph::new(Span::styled(
            truncate(&facts.join(" · "), bottom.width as usize),
            t.dim(),
        ))
        .render(bottom, buf);
    }

    fn render_log(&self, area: Rect, buf: &mut Buffer) {
        let t = self.ui.theme;
        let rows = area.height.saturating_sub(2) as usize;
        let w = area.width.saturating_sub(2) as usize;
        let end = self.run.log.len().saturating_sub(self.log_scroll);
        let start = end.saturating_sub(rows);
        let lines: Vec<Line> = self
            .run
            .log
            .iter()
            .skip(start)
            .take(end - start)
            .map(|l| {
                let (sym, style) = match l.level {
                    LogLevel::Info | LogLevel::Notice => (" ", Style::new()),
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
            format!(" Log · {} lines · following ", self.run.log.len())
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
        let (style, text) = match (&self.run.finished, self.run.end()) {
            (Some(_), Some(end @ RunEnd::Completed)) => (
                t.ok().patch(t.bold()),
                format!(
                    "{} {}. Enter: summary",
                    theme::OK,
                    text::headline(&self.run, &end)
                ),
            ),
            (Some(_), Some(end)) => {
                let sym = if matches!(end, RunEnd::Aborted { .. }) {
                    theme::ABORTED
                } else {
                    theme::FAIL
                };
                (
                    t.fail(),
                    format!(
                        "{sym} {}. {} Enter: summary",
                        text::headline(&self.run, &end),
                        text::db_state(&self.run)
                    ),
                )
            }
            _ if self.run.aborting => (
                t.fail(),
                format!(
                    "{} Aborting: stopping at the next safe point…",
                    spinner(self.ui.now)
                ),
            ),
            _ => return vec![],
        };
        wrap(&text, width)
            .into_iter()
            .take(4)
            .map(|l| Line::styled(l, style))
            .collect()
    }

    fn render_gate(&self, area: Rect, buf: &mut Buffer) {
        let Some(step) = self.run.gate.and_then(|id| self.run.steps.get(id)) else {
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
        let total = cmd_lines.len() + step.more_lines;
        let shown = if total <= room {
            cmd_lines.len()
        } else {
            cmd_lines.len().min(room - 1)
        };
        for l in cmd_lines.iter().take(shown) {
            lines.push(Line::raw(l.clone()));
        }
        if shown < total {
            lines.push(Line::styled(
                format!(
                    "  … {} more lines (the Review screen has them all)",
                    total - shown
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
        let title = format!("Step {} of {}: proceed?", step.id + 1, self.run.steps.len());
        popup(centered(area, w, h), buf, &title, lines, t);
    }
}

impl Widget for &RunView {
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
        let here_h = self.here_height();
        let avail = area.height.saturating_sub(banner_h + here_h);
        let log_h = (avail / 3).max(5);
        let copy_need = 4 + 2 * self.run.tables.len() as u16;
        let top_need = (self.run.steps.len() as u16 + 2).max(copy_need).max(8);
        let top_h = top_need.min(avail.saturating_sub(log_h));
        let [banner_area, top, here_area, log_area] = Layout::vertical([
            Constraint::Length(banner_h),
            Constraint::Length(top_h),
            Constraint::Length(here_h),
            Constraint::Min(3),
        ])
        .areas(area);
        self.render_here(here_area, buf);
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
