//! The Resume screen: the wizard was opened on a bootstrap that an earlier run (the wizard,
//! `--plain` or `run --yes`) started and did not finish. It shows what is done and what is left,
//! the checks that still matter (connectivity, the daemon), and offers to continue (confirming
//! each step or automatically), to undo the bootstrap (cleanup, shown before it runs), or to quit.

use crate::engine::cleanup::CleanupPlan;
use crate::engine::plan::Plan;
use crate::session::launch::Earlier;
use crate::tui::screens::preflight::PreflightState;
use crate::tui::theme;
use crate::tui::widgets::{scrolled_pane, spinner, wrap, Ui};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Widget};

/// Where an undo (cleanup) chosen on this screen stands.
#[derive(Clone, Debug, Default)]
pub enum Undo {
    #[default]
    Not,
    /// Looking at what exists.
    Planning,
    /// Shown, waiting for y or n: the plan and its text.
    Review(Box<CleanupPlan>, String),
    Running,
    Done,
    Failed(String),
}

#[derive(Clone, Debug, Default)]
pub struct ResumeState {
    pub ui: Ui,
    pub earlier: Option<Earlier>,
    /// The plan with the earlier run's steps marked done.
    pub plan: Option<Plan>,
    pub error: Option<String>,
    /// What is done and what is left, in words.
    pub summary: Vec<String>,
    /// The checks that still matter.
    pub checks: PreflightState,
    pub undo: Undo,
}

impl ResumeState {
    pub fn new(earlier: Earlier, ui: Ui) -> ResumeState {
        ResumeState {
            ui,
            earlier: Some(earlier),
            checks: PreflightState {
                ui,
                loading: true,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// Continuing is possible: the plan is built and no check fails.
    pub fn ready(&self) -> bool {
        self.plan.is_some() && !self.checks.loading && !self.checks.has_fail()
    }

    fn head_lines(&self, width: usize) -> Vec<Line<'static>> {
        let t = self.ui.theme;
        let mut out = Vec::new();
        if let Some(e) = &self.earlier {
            out.push(Line::styled(
                format!("journal: {}", e.journal_path.display()),
                t.dim(),
            ));
        }
        if let Some(err) = &self.error {
            for l in wrap(&format!("{} {err}", theme::FAIL), width) {
                out.push(Line::styled(l, t.fail()));
            }
        } else if self.plan.is_none() {
            out.push(Line::from(vec![
                Span::styled(format!("{} ", spinner(self.ui.now)), t.accent()),
                Span::raw("reading what the earlier run finished…"),
            ]));
        }
        for s in &self.summary {
            out.extend(wrap(s, width).into_iter().map(Line::raw));
        }
        out
    }

    fn bottom_line(&self) -> Line<'static> {
        let t = self.ui.theme;
        match &self.undo {
            Undo::Planning => Line::from(vec![
                Span::styled(format!("{} ", spinner(self.ui.now)), t.accent()),
                Span::raw("looking at what the bootstrap created…"),
            ]),
            Undo::Review(..) => Line::styled(
                "Carry out this cleanup? y: yes, n: no (nothing changes)",
                t.warn(),
            ),
            Undo::Running => Line::from(vec![
                Span::styled(format!("{} ", spinner(self.ui.now)), t.accent()),
                Span::raw("cleaning up…"),
            ]),
            Undo::Done => Line::styled(
                format!(
                    "{} Cleaned up: nothing of the bootstrap is left. Enter: start a fresh one.",
                    theme::OK
                ),
                t.ok(),
            ),
            Undo::Failed(e) => {
                Line::styled(format!("{} cleanup failed: {e}", theme::FAIL), t.fail())
            }
            Undo::Not if self.ready() => Line::from(vec![
                Span::styled(format!("{} ", theme::OK), t.ok()),
                Span::raw(
                    "c: continue, confirming each step · r: continue automatically · x: undo it",
                ),
            ]),
            Undo::Not if self.checks.has_fail() => Line::from(vec![
                Span::styled(format!("{} ", theme::FAIL), t.fail()),
                Span::raw("Fix the failing checks, then press R to check again (x: undo it)."),
            ]),
            Undo::Not => Line::raw(""),
        }
    }
}

impl Widget for &ResumeState {
    /// ```text
    /// ┌ An earlier run of this bootstrap is unfinished ┐
    /// │journal: …                                       │
    /// │An earlier run … finished 10 of 13 steps.        │
    /// │Done: … Left: …                                  │
    /// └─────────────────────────────────────────────────┘
    /// ┌ Checks for resuming ─────────────────────────────┐  (or the cleanup plan)
    /// └─────────────────────────────────────────────────┘
    ///  what the keys do now
    /// ```
    fn render(self, area: Rect, buf: &mut Buffer) {
        let t = self.ui.theme;
        let inner_w = area.width.saturating_sub(2) as usize;
        let head = self.head_lines(inner_w);
        let head_h = (head.len() as u16 + 2).min(area.height.saturating_sub(5) / 2 + 2);
        let [head_area, body_area, bottom_area] = Layout::vertical([
            Constraint::Length(head_h),
            Constraint::Min(3),
            Constraint::Length(1),
        ])
        .areas(area);
        Paragraph::new(head)
            .block(Block::default().borders(Borders::ALL).title(Span::styled(
                " An earlier run of this bootstrap is unfinished ",
                t.bold(),
            )))
            .render(head_area, buf);
        let (title, lines): (&str, Vec<Line<'static>>) = match &self.undo {
            Undo::Review(_, text) => (
                " Cleanup: what it removes ",
                text.lines()
                    .flat_map(|l| wrap(l, inner_w))
                    .map(Line::raw)
                    .collect(),
            ),
            _ if self.checks.loading => (
                " Checks for resuming ",
                vec![Line::from(vec![
                    Span::styled(format!("{} ", spinner(self.ui.now)), t.accent()),
                    Span::raw("checking the connections and the daemon…"),
                ])],
            ),
            _ => (" Checks for resuming ", self.checks.lines(inner_w)),
        };
        scrolled_pane(body_area, buf, title, lines, self.checks.scroll, t);
        Paragraph::new(self.bottom_line()).render(bottom_area, buf);
    }
}
