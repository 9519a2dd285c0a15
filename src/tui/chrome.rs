//! The wizard's chrome around the current screen: the title with the screen steps, the status
//! line, the key-hint bar that is always visible, the help overlay on `?`, and the yes/no prompts.

use crate::tui::app::{App, Prompt, Screen, StatusLevel};
use crate::tui::screens::resume::Undo;
use crate::tui::widgets::{centered, hint_line, popup, wrap};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

impl App {
    /// The key-hint bar for the current screen and mode.
    pub fn hints(&self) -> Vec<(&'static str, &'static str)> {
        if self.help {
            return vec![("any key", "close help")];
        }
        if self.prompt.is_some() {
            return vec![("y", "yes"), ("n", "no")];
        }
        match self.screen {
            Screen::Connect if self.connect.editing.is_some() => {
                vec![
                    ("Enter", "save"),
                    ("Esc", "cancel"),
                    ("←→", "cursor"),
                    ("^U", "clear"),
                ]
            }
            Screen::Connect => vec![
                ("↑↓", "move"),
                ("Enter", "edit"),
                ("t", "test"),
                ("n", "next"),
                ("q", "quit"),
            ],
            Screen::Preflight => vec![
                ("↑↓", "scroll"),
                ("r", "re-run"),
                ("Enter", "next"),
                ("Esc", "back"),
                ("q", "quit"),
            ],
            Screen::Resume => match &self.resume.undo {
                Undo::Review(..) => vec![("y", "clean up"), ("n", "keep"), ("↑↓", "scroll")],
                Undo::Done => vec![("Enter", "fresh start"), ("q", "quit")],
                _ => vec![
                    ("c", "continue, confirm"),
                    ("r", "continue"),
                    ("x", "undo"),
                    ("R", "check again"),
                    ("Esc", "back"),
                    ("q", "quit"),
                ],
            },
            Screen::Tables if self.tables.filter_edit.is_some() => {
                vec![("type", "filter"), ("Enter", "keep"), ("Esc", "clear")]
            }
            Screen::Tables => vec![
                ("space", "toggle"),
                ("x", "leave out"),
                ("a", "all"),
                ("/", "filter"),
                ("s", "sort"),
                ("Enter", "next"),
                ("Esc", "back"),
            ],
            Screen::Review => vec![
                ("↑↓", "scroll"),
                ("s", "script"),
                ("p", "plan file"),
                ("c", "run, confirm"),
                ("r", "run"),
                ("Esc", "back"),
                ("q", "quit"),
            ],
            Screen::Run => match &self.run {
                Some(r) if r.run.gate.is_some() && r.running() => vec![
                    ("p", "proceed"),
                    ("s", "skip"),
                    ("a", "abort"),
                    ("←→", "choose"),
                    ("Enter", "confirm"),
                ],
                Some(r) if !r.running() => {
                    vec![("Enter", "summary"), ("↑↓", "log"), ("q", "quit")]
                }
                Some(r) if r.run.here.latest.is_some() => vec![
                    ("↑↓", "log"),
                    ("space", "pause HERE's work"),
                    ("-+", "pace"),
                    ("x", "abort"),
                    ("q", "quit"),
                ],
                _ => vec![
                    ("↑↓", "log"),
                    ("End", "follow"),
                    ("x", "abort"),
                    ("q", "quit"),
                ],
            },
            Screen::Done => vec![("r", "refresh"), ("Esc", "run view"), ("q", "quit")],
        }
    }

    fn help_lines(&self) -> Vec<(&'static str, &'static str)> {
        let mut v: Vec<(&str, &str)> = match self.screen {
            Screen::Connect => vec![
                ("↑↓ j k Tab", "move between fields"),
                ("Enter e", "edit the field (Enter saves, Esc cancels)"),
                ("t", "test the three connections"),
                ("n", "validate and go on to the preflight checks"),
            ],
            Screen::Preflight => vec![
                ("↑↓ j k", "scroll"),
                ("r", "run the checks again"),
                ("Enter", "go on (refused while a check fails)"),
                ("Esc", "back to Connect"),
            ],
            Screen::Resume => vec![
                ("c Enter", "continue the bootstrap, confirming each step"),
                ("r", "continue, running every step automatically"),
                (
                    "x",
                    "undo the bootstrap: shows what cleanup removes, then asks",
                ),
                ("R", "check the connections and the daemon again"),
                ("Esc", "back to Connect"),
            ],
            Screen::Tables => vec![
                ("↑↓ j k", "move"),
                (
                    "space",
                    "check or uncheck (ineligible tables cannot be checked)",
                ),
                (
                    "x",
                    "leave out knowingly (--leave-out): a foreign key to it no longer fails the checks",
                ),
                ("a / i", "check all eligible shown / invert them"),
                ("/", "filter by name (Enter keeps it, Esc clears it)"),
                ("s", "sort by name or by size"),
                ("Enter", "build the plan from the checked tables"),
            ],
            Screen::Review => vec![
                ("↑↓ PgUp PgDn", "scroll"),
                ("s", "save a bash script (0600) in the state directory"),
                ("p", "save a plan file for `run --config`"),
                ("c Enter", "start, confirming each step"),
                ("r", "start, running every step automatically"),
            ],
            Screen::Run => vec![
                ("p s a", "at a gate: proceed, skip or abort"),
                ("↑↓ PgUp PgDn", "scroll the log; End follows it"),
                ("x", "abort at the next safe point"),
                ("space", "pause the heavy work on HERE (copy, verify); again: resume"),
                ("- +", "slow the heavy work down, or let it go faster"),
                ("Enter", "when finished: the summary"),
            ],
            Screen::Done => vec![
                ("r", "read the sync's health now"),
                ("Esc", "back to the run view"),
            ],
        };
        v.extend([
            ("?", "this help"),
            ("q Ctrl-C", "quit (asks first during a run)"),
        ]);
        v
    }
}

impl Widget for &App {
    /// ```text
    ///  bucardo-bootstrap  1 Connect › 2 Preflight › … › 6 Done      title
    ///  the current screen                                            body
    ///  status line (errors and confirmations)
    ///  key hints
    /// ```
    /// Help and yes/no prompts are drawn over everything.
    fn render(self, area: Rect, buf: &mut Buffer) {
        let t = self.theme;
        let [title, body, status, hints] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(5),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .areas(area);
        let numbered = area.width >= 90;
        let current = Screen::ALL
            .iter()
            .position(|s| *s == self.screen)
            .unwrap_or(1);
        let mut spans = vec![
            Span::styled(" bucardo-bootstrap ", t.accent()),
            Span::raw(" "),
        ];
        // A resumed bootstrap has a Resume step where a new one has its preflight.
        let crumbs = Screen::ALL.map(|s| {
            if s == Screen::Preflight && self.screen == Screen::Resume {
                Screen::Resume
            } else {
                s
            }
        });
        for (i, s) in crumbs.iter().enumerate() {
            if i > 0 {
                spans.push(Span::styled(" › ", t.dim()));
            }
            let label = if numbered {
                format!("{} {}", i + 1, s.title())
            } else {
                s.title().to_string()
            };
            let style = if i == current {
                t.selected().patch(t.bold())
            } else if i < current {
                Style::new()
            } else {
                t.dim()
            };
            spans.push(Span::styled(label, style));
        }
        Paragraph::new(Line::from(spans)).render(title, buf);
        let help =
            Line::from(vec![Span::styled(" ? ", t.key()), Span::raw(" help ")]).right_aligned();
        if title.width >= 80 {
            Paragraph::new(help).render(title, buf);
        }

        match self.screen {
            Screen::Connect => self.connect.render(body, buf),
            Screen::Preflight => self.preflight.render(body, buf),
            Screen::Resume => self.resume.render(body, buf),
            Screen::Tables => self.tables.render(body, buf),
            Screen::Review => self.review.render(body, buf),
            Screen::Run => match &self.run {
                Some(r) => r.render(body, buf),
                None => Paragraph::new("no run").render(body, buf),
            },
            Screen::Done => self.done.render(body, buf),
        }

        if let Some((level, text)) = &self.status {
            let style = match level {
                StatusLevel::Info => t.accent(),
                StatusLevel::Error => t.fail(),
            };
            Paragraph::new(Line::styled(format!(" {text}"), style)).render(status, buf);
        }
        Paragraph::new(hint_line(&self.hints(), t)).render(hints, buf);

        if let Some(p) = self.prompt {
            let (title, text) = match p {
                Prompt::AbortRun => (
                    "Abort the run?",
                    "The runner stops at the next safe point; the screen then says what state the databases are in.",
                ),
                Prompt::QuitDuringRun => (
                    "Quit during a run?",
                    "The run is aborted at the next safe point first, then the wizard exits.",
                ),
            };
            let w = body.width.saturating_sub(8).min(70);
            let mut lines: Vec<Line> = wrap(text, w.saturating_sub(2) as usize)
                .into_iter()
                .map(Line::raw)
                .collect();
            lines.push(Line::raw(""));
            lines.push(Line::from(vec![
                Span::styled(" y ", t.key()),
                Span::raw(" yes, abort    "),
                Span::styled(" n ", t.key()),
                Span::raw(" no, keep going"),
            ]));
            let h = lines.len() as u16 + 2;
            popup(centered(body, w, h), buf, title, lines, t);
        }
        if self.help {
            let lines: Vec<Line> = self
                .help_lines()
                .into_iter()
                .map(|(k, d)| {
                    Line::from(vec![
                        Span::styled(format!("{k:>14}  "), t.accent()),
                        Span::raw(d),
                    ])
                })
                .collect();
            let w = body.width.saturating_sub(4).min(84);
            let h = lines.len() as u16 + 2;
            popup(
                centered(body, w, h),
                buf,
                &format!("Keys: {}", self.screen.title()),
                lines,
                t,
            );
        }
    }
}
