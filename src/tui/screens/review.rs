//! The Review screen: the plan's review text (every step and its exact commands, secrets already
//! masked by the engine), scrolling, plus where the script and plan file were saved.

use crate::engine::plan::Plan;
use crate::tui::theme;
use crate::tui::widgets::{spinner, wrap, wrap_all, Ui};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Widget};
use std::cell::RefCell;

#[derive(Clone, Debug, Default)]
pub struct ReviewState {
    pub ui: Ui,
    pub loading: bool,
    pub error: Option<String>,
    pub plan: Option<Plan>,
    /// `plan.review_text()`, line by line.
    pub text: Vec<String>,
    /// First visible (wrapped) line; clamped when drawn.
    pub scroll: usize,
    /// What was saved where, newest last.
    pub saved: Vec<String>,
    /// `text` wrapped to the width it was last drawn at: a 10,000-table plan has 70,000 lines,
    /// and wrapping them all again took longer than a frame.
    pub(crate) wrapped: RefCell<Wrapped>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Wrapped {
    width: usize,
    /// How many lines of `text` were wrapped.
    of: usize,
    lines: Vec<String>,
}

impl ReviewState {
    pub fn set_plan(&mut self, plan: Plan) {
        self.text.clear();
        plan.each_review_line(|line| self.text.push(line.to_string()));
        self.plan = Some(plan);
        self.loading = false;
        self.error = None;
        self.scroll = 0;
        self.wrapped = RefCell::default();
    }

    pub fn scroll_by(&mut self, delta: isize) {
        self.scroll = (self.scroll as isize + delta).max(0) as usize;
    }
}

impl Widget for &ReviewState {
    /// ```text
    /// ┌ Review: 15 steps · 6 tables ───────────────┐
    /// │ 1. Create THERE's database                 │
    /// │    widgets does not exist on THERE yet     │
    /// │      [THERE postgres://…] CREATE DATABASE… │
    /// └────────────────────────────────────────────┘
    ///  saved files / how to start
    /// ```
    fn render(self, area: Rect, buf: &mut Buffer) {
        let t = self.ui.theme;
        let inner_w = area.width.saturating_sub(2) as usize;
        if self.loading || self.error.is_some() || self.plan.is_none() {
            let lines: Vec<Line> = match &self.error {
                Some(e) => {
                    let mut v = vec![Line::styled(
                        format!("{} The plan cannot be built:", theme::FAIL),
                        t.fail(),
                    )];
                    v.extend(wrap(e, inner_w).into_iter().map(Line::raw));
                    v.push(Line::raw(""));
                    v.push(Line::styled(
                        "Enter: try again · Esc: back to the tables",
                        t.dim(),
                    ));
                    v
                }
                None => vec![Line::from(vec![
                    Span::styled(format!("{} ", spinner(self.ui.now)), t.accent()),
                    Span::raw("probing HERE, THERE and Bucardo, and building the plan…"),
                ])],
            };
            Paragraph::new(lines)
                .block(Block::default().borders(Borders::ALL).title(" Review "))
                .render(area, buf);
            return;
        }
        let footer_h = self.saved.len().min(2) as u16 + 1;
        let [text_area, footer_area] =
            Layout::vertical([Constraint::Min(3), Constraint::Length(footer_h)]).areas(area);
        let mut wrapped = self.wrapped.borrow_mut();
        if wrapped.width != inner_w || wrapped.of != self.text.len() || wrapped.lines.is_empty() {
            *wrapped = Wrapped {
                width: inner_w,
                of: self.text.len(),
                lines: wrap_all(self.text.iter().map(String::as_str), inner_w),
            };
        }
        let lines = &wrapped.lines;
        let rows = text_area.height.saturating_sub(2) as usize;
        let scroll = self.scroll.min(lines.len().saturating_sub(rows));
        let (steps, tables) = self
            .plan
            .as_ref()
            .map(|p| (p.steps.len(), p.tables.len()))
            .unwrap_or_default();
        let title = format!(" Review: {steps} steps · {tables} tables · secrets masked ");
        let pos = format!(
            " {}-{} of {} ",
            scroll + 1,
            (scroll + rows).min(lines.len()),
            lines.len()
        );
        let body: Vec<Line> = lines[scroll..(scroll + rows).min(lines.len())]
            .iter()
            .map(|l| {
                let l = l.clone();
                if l.len() > 3 && l.as_bytes()[2] == b'.' && l[..2].trim().parse::<u32>().is_ok() {
                    Line::styled(l, t.bold())
                } else if l.trim_start().starts_with('#') {
                    Line::styled(l, t.dim())
                } else {
                    Line::raw(l)
                }
            })
            .collect();
        Paragraph::new(body)
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(Span::styled(title, t.bold()))
                    .title_bottom(Line::from(pos).right_aligned()),
            )
            .render(text_area, buf);
        let mut footer: Vec<Line> = self
            .saved
            .iter()
            .rev()
            .take(2)
            .rev()
            .map(|s| {
                Line::from(vec![
                    Span::styled(format!("{} ", theme::OK), t.ok()),
                    Span::raw(s.clone()),
                ])
            })
            .collect();
        footer.push(Line::from(vec![
            Span::raw("Start: "),
            Span::styled("c", t.accent()),
            Span::raw(" confirm each step (Enter) · "),
            Span::styled("r", t.accent()),
            Span::raw(" run automatically"),
        ]));
        Paragraph::new(footer).render(footer_area, buf);
    }
}
