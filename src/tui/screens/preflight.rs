//! The Preflight screen: the engine's findings grouped by server or subject, each with its
//! severity and, when there is one, the fix. A failing finding blocks the way forward.

use crate::engine::preflight::{Finding, Severity};
use crate::tui::theme;
use crate::tui::widgets::{scrolled_pane, spinner, wrap, Ui};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Widget};

#[derive(Clone, Debug, Default)]
pub struct PreflightState {
    pub ui: Ui,
    pub loading: bool,
    pub findings: Vec<Finding>,
    /// First visible line.
    pub scroll: usize,
}

impl PreflightState {
    pub fn count(&self, s: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == s).count()
    }

    pub fn has_fail(&self) -> bool {
        crate::engine::preflight::has_fail(&self.findings)
    }

    /// Groups in order of first appearance, findings in engine order within each.
    pub fn groups(&self) -> Vec<(&str, Vec<&Finding>)> {
        let mut out: Vec<(&str, Vec<&Finding>)> = Vec::new();
        for f in &self.findings {
            match out.iter_mut().find(|(g, _)| *g == f.group) {
                Some((_, v)) => v.push(f),
                None => out.push((&f.group, vec![f])),
            }
        }
        out
    }

    pub fn lines(&self, width: usize) -> Vec<Line<'static>> {
        let t = self.ui.theme;
        let mut out = Vec::new();
        for (group, findings) in self.groups() {
            let fails = findings
                .iter()
                .filter(|f| f.severity == Severity::Fail)
                .count();
            let head = if fails > 0 {
                format!("{group}  ({fails} failing)")
            } else {
                group.to_string()
            };
            out.push(Line::styled(head, t.bold()));
            for f in findings {
                let (sym, style) = match f.severity {
                    Severity::Pass => (theme::OK, t.ok()),
                    Severity::Warn => (theme::WARN, t.warn()),
                    Severity::Fail => (theme::FAIL, t.fail()),
                };
                let text = format!("{}: {}", f.check, f.message);
                for (i, piece) in wrap(&text, width.saturating_sub(4)).into_iter().enumerate() {
                    let lead = if i == 0 {
                        format!("  {sym} ")
                    } else {
                        "    ".into()
                    };
                    out.push(Line::from(vec![
                        Span::styled(lead, style),
                        Span::raw(piece.trim_start().to_string()),
                    ]));
                }
                if let Some(fix) = &f.fix {
                    for (i, piece) in wrap(&format!("fix: {fix}"), width.saturating_sub(6))
                        .into_iter()
                        .enumerate()
                    {
                        let lead = if i == 0 { "      " } else { "        " };
                        out.push(Line::from(vec![
                            Span::raw(lead.to_string()),
                            Span::styled(piece.trim_start().to_string(), t.accent()),
                        ]));
                    }
                }
            }
            out.push(Line::raw(""));
        }
        out
    }
}

impl Widget for &PreflightState {
    /// ```text
    /// ┌ Preflight: 9 passed, 1 warning, 2 failing ─┐
    /// │HERE                                        │
    /// │  ✓ connect: postgres://… answers           │
    /// │  ✗ wal_level: …                            │
    /// │      fix: ALTER SYSTEM …                   │
    /// └────────────────────────────────────────────┘
    ///  verdict line: what Enter does
    /// ```
    fn render(self, area: Rect, buf: &mut Buffer) {
        let t = self.ui.theme;
        let [list_area, verdict_area] =
            Layout::vertical([Constraint::Min(3), Constraint::Length(1)]).areas(area);
        if self.loading {
            let line = Line::from(vec![
                Span::styled(format!("{} ", spinner(self.ui.now)), t.accent()),
                Span::raw("reading HERE's tables and running the preflight checks…"),
            ]);
            Paragraph::new(line)
                .block(Block::default().borders(Borders::ALL).title(" Preflight "))
                .render(list_area, buf);
            return;
        }
        let inner_w = list_area.width.saturating_sub(2) as usize;
        let lines = self.lines(inner_w);
        let title = format!(
            " Preflight: {} passed, {} warning{}, {} failing ",
            self.count(Severity::Pass),
            self.count(Severity::Warn),
            if self.count(Severity::Warn) == 1 {
                ""
            } else {
                "s"
            },
            self.count(Severity::Fail)
        );
        scrolled_pane(list_area, buf, &title, lines, self.scroll, t);
        let verdict = if self.has_fail() {
            Line::from(vec![
                Span::styled(format!("{} ", theme::FAIL), t.fail()),
                Span::raw("Fix the failing checks, then press r to run them again."),
            ])
        } else {
            Line::from(vec![
                Span::styled(format!("{} ", theme::OK), t.ok()),
                Span::raw("Nothing blocks the bootstrap. Enter: choose the tables."),
            ])
        };
        Paragraph::new(verdict).render(verdict_area, buf);
    }
}
