//! The Done screen: how the run ended and what state the databases are in, the verification
//! verdict per table, the time each phase took, where the log is, what to do next, and a live
//! view of the sync's health (last good run, pending deltas, conflicts) refreshed every few
//! seconds while the screen is open.

use crate::engine::daemon::Daemon;
use crate::engine::event::{TableVerdict, VerdictState};
use crate::engine::plan::StepKind;
use crate::engine::runner::RunEnd;
use crate::engine::status::SyncStatus;
use crate::session::state::{RunState, StepState};
use crate::session::text;
use crate::tui::theme;
use crate::tui::widgets::{fit, fmt_duration, fmt_thousands, spinner, truncate, wrap, Ui};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Widget};
use std::path::PathBuf;
use std::time::Duration;

/// How often the health view reads Bucardo's state.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// The sync's health as last read, by the engine's `status` module.
pub type Health = SyncStatus;

#[derive(Clone, Debug, Default)]
pub struct DoneState {
    pub ui: Ui,
    pub ok: bool,
    pub headline: String,
    pub db_state: String,
    pub verdicts: Vec<TableVerdict>,
    /// What is not simply replicated, and why (the plan's account).
    pub account: Vec<String>,
    /// Phase name and the time its steps took, in run order.
    pub phases: Vec<(String, Duration)>,
    pub total: Duration,
    pub log_path: Option<PathBuf>,
    pub sync: String,
    /// A sync exists, so there is health to watch.
    pub watch: bool,
    pub health: Option<Result<Health, String>>,
    pub health_checked_at: Option<Duration>,
    pub health_requested_at: Option<Duration>,
    pub health_pending: bool,
    /// HERE's rate as a share of its baseline: per phase, and second by second with the phase's
    /// initial (empty when the governor had no baseline).
    pub here_by_phase: Vec<(String, f64)>,
    pub here_series: Vec<(f64, char)>,
    /// Worst second, seconds under half, the oldest snapshot held.
    pub here_facts: Option<String>,
}

fn phase_of(kind: StepKind) -> &'static str {
    match kind {
        StepKind::CopyRoles
        | StepKind::CreateDatabase
        | StepKind::CopySchema
        | StepKind::ConvertGenerated => "Prepare THERE",
        StepKind::BucardoRole
        | StepKind::InstallBucardo
        | StepKind::StartDaemon
        | StepKind::AddDatabases
        | StepKind::AddTables
        | StepKind::AddDbgroup
        | StepKind::AddSync => "Set up Bucardo",
        StepKind::CopyData | StepKind::RefreshMatviews | StepKind::Sequences | StepKind::Vacuum => {
            "Copy the data"
        }
        StepKind::Enable | StepKind::Drain => "Go live",
        StepKind::Compare | StepKind::Verify => "Verify",
    }
}

/// HERE over the run (see [`DoneState::here_series`]): the mean per phase and for the whole
/// run under "Total", the series, and the facts line.
type HereAccount = (Vec<(String, f64)>, Vec<(f64, char)>, Option<String>);

fn here_account(run: &RunState) -> HereAccount {
    let Some(base) = run
        .here
        .latest
        .as_ref()
        .and_then(|v| v.first_baseline)
        .map(|b| b.rate)
        .filter(|r| *r >= crate::engine::governor::MIN_STEERING_RATE)
    else {
        return (vec![], vec![], None);
    };
    let mut sums: Vec<(String, f64, usize)> = Vec::new();
    let mut series = Vec::new();
    for p in &run.here.points {
        let pct = p.rate / base * 100.0;
        let phase = p
            .step
            .and_then(|s| run.steps.get(s))
            .map(|s| phase_of(s.kind))
            .unwrap_or("Prepare THERE");
        for name in [phase, "Total"] {
            match sums.iter_mut().find(|(n, _, _)| n == name) {
                Some((_, sum, n)) => {
                    *sum += pct;
                    *n += 1;
                }
                None => sums.push((name.to_string(), pct, 1)),
            }
        }
        series.push((pct, phase.chars().next().unwrap_or('?')));
    }
    let by_phase = sums
        .into_iter()
        .map(|(n, sum, k)| (n, sum / k as f64))
        .collect();
    let facts = run.here.summary().map(|(_, worst, under)| {
        let held = match run.here.max_held {
            Some(h) => format!("oldest snapshot held {} s", h.secs),
            None => "no snapshot held long enough to be seen".into(),
        };
        format!(
            "HERE's tx/s against its {} tx/s baseline; worst second {}%, {under} s under half; {held}",
            base.round() as i64,
            worst.round() as i64
        )
    });
    (by_phase, series, facts)
}

/// The run's seconds squeezed to `w` columns: a bar per column (the mean of its seconds, a full
/// block at the baseline), and under it the initial of the phase most of them belong to.
fn here_chart(series: &[(f64, char)], w: usize, t: theme::Theme) -> Vec<Line<'static>> {
    const BARS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let cols = w.min(series.len()).max(1);
    let mut bars = Vec::new();
    let mut phases = String::new();
    for c in 0..cols {
        let from = c * series.len() / cols;
        let to = ((c + 1) * series.len() / cols)
            .max(from + 1)
            .min(series.len());
        let chunk = &series[from..to];
        let mean = chunk.iter().map(|(p, _)| p).sum::<f64>() / chunk.len() as f64;
        let level = ((mean / 100.0) * 8.0).round().clamp(1.0, 8.0) as usize;
        let style = if mean < 50.0 {
            t.fail()
        } else if mean < 80.0 {
            t.warn()
        } else {
            t.ok()
        };
        bars.push(Span::styled(BARS[level].to_string(), style));
        let mut counts: Vec<(char, usize)> = Vec::new();
        for (_, ph) in chunk {
            match counts.iter_mut().find(|(c, _)| c == ph) {
                Some((_, n)) => *n += 1,
                None => counts.push((*ph, 1)),
            }
        }
        let top = counts.iter().max_by_key(|(_, n)| *n).map(|(c, _)| *c);
        phases.push(top.unwrap_or(' '));
    }
    vec![Line::from(bars), Line::styled(phases, t.dim())]
}

impl DoneState {
    pub fn from_run(run: &RunState, log_path: Option<PathBuf>, ui: Ui) -> DoneState {
        let end = run.end().unwrap_or(RunEnd::Aborted { step: None });
        let ok = matches!(end, RunEnd::Completed);
        let sym = match end {
            RunEnd::Completed => theme::OK,
            RunEnd::Aborted { .. } => theme::ABORTED,
            RunEnd::Failed { .. } => theme::FAIL,
        };
        let headline = format!("{sym} {}", text::headline(run, &end));
        let mut phases: Vec<(String, Duration)> = Vec::new();
        for s in &run.steps {
            let Some(e) = s.elapsed else { continue };
            if matches!(s.state, StepState::Skipped | StepState::Pending) {
                continue;
            }
            let name = phase_of(s.kind);
            match phases.iter_mut().find(|(p, _)| p == name) {
                Some((_, d)) => *d += e,
                None => phases.push((name.to_string(), e)),
            }
        }
        let (here_by_phase, here_series, here_facts) = here_account(run);
        let watch = run.steps.iter().any(|s| {
            s.kind == StepKind::AddSync
                && matches!(s.state, StepState::Done | StepState::AlreadyDone)
        });
        DoneState {
            ui,
            ok,
            headline,
            db_state: text::db_state(run),
            verdicts: run.verdicts.clone(),
            account: run.account.clone(),
            total: phases.iter().map(|(_, d)| *d).sum(),
            phases,
            log_path,
            sync: run.sync.clone(),
            watch,
            health: None,
            health_checked_at: None,
            health_requested_at: None,
            health_pending: false,
            here_by_phase,
            here_series,
            here_facts,
        }
    }

    /// Whether a health read is due at `now`: none in flight, and the last one is
    /// [`HEALTH_INTERVAL`] old.
    pub fn health_due(&self, now: Duration) -> bool {
        self.watch
            && !self.health_pending
            && self
                .health_checked_at
                .is_none_or(|t| now.saturating_sub(t) >= HEALTH_INTERVAL)
    }

    fn verdict_lines(&self, w: usize) -> Vec<Line<'static>> {
        let t = self.ui.theme;
        if self.verdicts.is_empty() {
            return vec![Line::styled("no table was verified", t.dim())];
        }
        // The verdict column only when the table name keeps 24 columns.
        let verdict_w = w.saturating_sub(2 + 10 + 10 + 2 + 24).min(20);
        let wide = verdict_w >= 9;
        let name_w = w
            .saturating_sub(2 + 10 + 10 + if wide { verdict_w + 2 } else { 0 })
            .max(8);
        let mut out = vec![Line::styled(
            format!(
                "  {}{:>10}{:>10}{}",
                fit("table", name_w),
                "HERE",
                "THERE",
                if wide { "  verdict" } else { "" }
            ),
            t.bold(),
        )];
        for v in &self.verdicts {
            let (sym, style) = match v.state() {
                VerdictState::Identical => (theme::OK, t.ok()),
                VerdictState::Changing => (theme::WARN, t.warn()),
                VerdictState::Different => (theme::FAIL, t.fail()),
            };
            let word = match v.state() {
                VerdictState::Changing if v.in_flight > 0 && verdict_w >= 20 => {
                    format!("changing ({} rows)", v.in_flight)
                }
                VerdictState::Changing if verdict_w < v.word().len() => "changing".into(),
                VerdictState::Different if verdict_w >= 20 => {
                    format!("DIFFERENT ({} rows)", v.differing)
                }
                _ => v.word().to_string(),
            };
            let mut spans = vec![
                Span::styled(format!("{sym} "), style),
                Span::raw(format!(
                    "{}{:>10}{:>10}",
                    fit(&v.table.to_string(), name_w),
                    fmt_thousands(v.here_rows),
                    fmt_thousands(v.there_rows)
                )),
            ];
            if wide {
                spans.push(Span::styled(
                    format!("  {}", truncate(&word, verdict_w)),
                    style,
                ));
            }
            out.push(Line::from(spans));
        }
        out
    }

    fn phase_lines(&self, w: usize) -> Vec<Line<'static>> {
        let t = self.ui.theme;
        let here = !self.here_series.is_empty();
        let pct_w = if here { 10 } else { 0 };
        let pct = |name: &str| -> String {
            match self.here_by_phase.iter().find(|(p, _)| p == name) {
                Some((_, v)) => format!("{:>10}", format!("HERE {}%", v.round() as i64)),
                None => " ".repeat(pct_w),
            }
        };
        let mut out: Vec<Line> = self
            .phases
            .iter()
            .map(|(p, d)| {
                Line::raw(format!(
                    "{}{:>10}{}",
                    fit(p, w.saturating_sub(10 + pct_w)),
                    fmt_duration(*d),
                    pct(p)
                ))
            })
            .collect();
        out.push(Line::styled(
            format!(
                "{}{:>10}{}",
                fit("Total", w.saturating_sub(10 + pct_w)),
                fmt_duration(self.total),
                pct("Total")
            ),
            t.bold(),
        ));
        if here {
            out.extend(here_chart(&self.here_series, w, t));
            if let Some(f) = &self.here_facts {
                out.extend(wrap(f, w).into_iter().map(|l| Line::styled(l, t.dim())));
            }
        }
        out
    }

    fn health_lines(&self, w: usize) -> Vec<Line<'static>> {
        let t = self.ui.theme;
        if !self.watch {
            return vec![Line::styled(
                "no sync was created: nothing to watch",
                t.dim(),
            )];
        }
        let h = match &self.health {
            None => {
                return vec![Line::from(vec![
                    Span::styled(format!("{} ", spinner(self.ui.now)), t.accent()),
                    Span::raw("reading the sync's state…"),
                ])]
            }
            Some(Err(e)) => {
                return wrap(
                    &format!("{} cannot read the sync's health: {e}", theme::FAIL),
                    w,
                )
                .into_iter()
                .map(|l| Line::styled(l, t.fail()))
                .collect()
            }
            Some(Ok(h)) => h,
        };
        let row = |k: &str, (v, style): (String, Style)| {
            Line::from(vec![
                Span::raw(fit(k, 15)),
                Span::styled(truncate(&v, w.saturating_sub(15)), style),
            ])
        };
        let ok = |v: String| (format!("{} {v}", theme::OK), t.ok());
        let warn = |v: String| (format!("{} {v}", theme::WARN), t.warn());
        let bad = |v: String| (format!("{} {v}", theme::FAIL), t.fail());
        let stamp = |s: &str| s.chars().take(19).collect::<String>();
        let mut out = vec![
            row(
                "daemon",
                match &h.daemon {
                    Daemon::Answering { pid: Some(pid) } => ok(format!("answers (pid {pid})")),
                    Daemon::Answering { pid: None } => ok("answers".into()),
                    d if d.coming_up() => warn(d.describe()),
                    d => bad(d.describe()),
                },
            ),
            row(
                "sync",
                match (h.sync_state.as_deref(), h.autokick) {
                    (Some("active"), Some(true)) => ok(format!(
                        "active, autokick on{}",
                        if h.running { ", running now" } else { "" }
                    )),
                    (Some(state), kick) => warn(format!(
                        "{state}, autokick {}",
                        if kick == Some(true) { "on" } else { "off" }
                    )),
                    (None, _) => bad("does not exist".into()),
                },
            ),
            row(
                "last good run",
                match &h.last_good {
                    Some(g) => ok(stamp(g)),
                    None => warn("none yet".into()),
                },
            ),
        ];
        if let Some(b) = &h.last_bad {
            let status = h.last_bad_status.clone().unwrap_or_default();
            out.push(row("last bad run", bad(format!("{} {status}", stamp(b)))));
        }
        out.push(row(
            "conflicts 24 h",
            match h.conflicts_24h {
                0 => ok("0".into()),
                n => warn(format!("{n}, settled by the conflict strategy")),
            },
        ));
        for side in ["HERE", "THERE"] {
            let list: Vec<String> = h
                .pending
                .iter()
                .filter(|(s, _, _)| s == side)
                .map(|(_, table, n)| format!("{table} ({n})"))
                .collect();
            let value = if list.is_empty() {
                ok("none".into())
            } else {
                warn(list.join(", "))
            };
            out.push(row(&format!("pending {side}"), value));
        }
        if let Some(at) = self.health_checked_at {
            let ago = self.ui.now.saturating_sub(at).as_secs();
            let verdict = if h.healthy() {
                "healthy"
            } else {
                "needs a look"
            };
            out.push(Line::styled(
                format!(
                    "{verdict} · checked {ago} s ago · every {} s · r: now",
                    HEALTH_INTERVAL.as_secs()
                ),
                t.dim(),
            ));
        }
        out
    }

    fn next_lines(&self, w: usize) -> Vec<Line<'static>> {
        let t = self.ui.theme;
        // What is not replicated, then the log, then the hints: on a small terminal the hints
        // are what falls off the pane.
        let log = self
            .log_path
            .as_ref()
            .map(|p| format!("Log: {}", p.display()));
        let items: Vec<String> = if self.ok {
            // The fixes were in the checks and the review; here only what and why.
            let mut v: Vec<String> = self
                .account
                .iter()
                .map(|l| upper_first(l.split("; fix: ").next().unwrap_or(l)))
                .collect();
            v.extend(log);
            v.extend([
                format!(
                    "Watch it: bucardo-bootstrap status (same flags) or bucardo status {}",
                    self.sync
                ),
                "Compare any time: bucardo-bootstrap verify (same flags)".into(),
                "Both sides take writes now: move clients to THERE when ready".into(),
            ]);
            v
        } else {
            let mut v = vec!["Read the log, fix the cause, then run the wizard again".to_string()];
            v.extend(log);
            v
        };
        items
            .iter()
            .flat_map(|i| wrap(&format!("• {i}"), w))
            .map(|l| {
                if l.starts_with("• Log:") {
                    Line::styled(l, t.accent())
                } else {
                    Line::raw(l)
                }
            })
            .collect()
    }
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

impl Widget for &DoneState {
    /// ```text
    ///  ✓ Bootstrap complete: …
    ///  what state the databases are in
    /// ┌ Verification ─────────────┐┌ Sync health ───────────────┐
    /// │✓ public.orders 60,000 …   ││last good run ✓ 2025-…      │
    /// └───────────────────────────┘└────────────────────────────┘
    /// ┌ Time per phase ───────────┐┌ Next ──────────────────────┐
    /// └───────────────────────────┘└────────────────────────────┘
    /// ```
    fn render(self, area: Rect, buf: &mut Buffer) {
        let t = self.ui.theme;
        let w = area.width as usize;
        let mut head: Vec<Line> = wrap(&self.headline, w)
            .into_iter()
            .take(2)
            .map(|l| {
                Line::styled(
                    l,
                    if self.ok {
                        t.ok().patch(t.bold())
                    } else {
                        t.fail()
                    },
                )
            })
            .collect();
        head.extend(wrap(&self.db_state, w).into_iter().take(3).map(Line::raw));
        let [head_area, cols] =
            Layout::vertical([Constraint::Length(head.len() as u16), Constraint::Min(4)])
                .areas(area);
        Paragraph::new(head).render(head_area, buf);

        let [left, right] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                .areas(cols);
        let lw = left.width.saturating_sub(2) as usize;
        let rw = right.width.saturating_sub(2) as usize;
        let phases = self.phase_lines(lw);
        let [verify_area, phase_area] = Layout::vertical([
            Constraint::Min(3),
            Constraint::Length((phases.len() as u16 + 2).min(left.height.saturating_sub(8))),
        ])
        .areas(left);
        let title = |s: &str| Span::styled(format!(" {s} "), t.bold());
        Paragraph::new(self.verdict_lines(lw))
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(title("Verification")),
            )
            .render(verify_area, buf);
        Paragraph::new(phases)
            .block(Block::default().borders(Borders::ALL).title(title(
                if self.here_series.is_empty() {
                    "Time per phase"
                } else {
                    "Time per phase · HERE"
                },
            )))
            .render(phase_area, buf);

        let health = self.health_lines(rw);
        let [health_area, next_area] = Layout::vertical([
            Constraint::Length((health.len() as u16 + 2).min(right.height.saturating_sub(4))),
            Constraint::Min(3),
        ])
        .areas(right);
        Paragraph::new(health)
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(title(&format!("Sync {} health", self.sync))),
            )
            .render(health_area, buf);
        Paragraph::new(self.next_lines(rw))
            .block(Block::default().borders(Borders::ALL).title(title("Next")))
            .render(next_area, buf);
    }
}
