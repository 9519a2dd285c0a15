//! Styles and status symbols. Every meaning carries a symbol or a modifier as well as a colour, so
//! that the wizard reads the same under `NO_COLOR` (<https://no-color.org>), where no colour is
//! used at all.

use ratatui::style::{Color, Modifier, Style};

/// Passed to every screen state; `color: false` renders with modifiers and symbols only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
}

impl Default for Theme {
    fn default() -> Self {
        Theme { color: true }
    }
}

pub const OK: &str = "✓";
pub const WARN: &str = "!";
pub const FAIL: &str = "✗";
pub const RUNNING: &str = "▶";
pub const PENDING: &str = "·";
pub const SKIPPED: &str = "↷";
pub const ABORTED: &str = "■";
pub const AWAITING: &str = "?";

impl Theme {
    /// Colour unless `NO_COLOR` is set to a non-empty value.
    pub fn from_env() -> Theme {
        Theme {
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }

    fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    pub fn ok(&self) -> Style {
        self.fg(Color::Green)
    }

    pub fn warn(&self) -> Style {
        self.fg(Color::Yellow)
    }

    pub fn fail(&self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    pub fn accent(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    pub fn dim(&self) -> Style {
        if self.color {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new().add_modifier(Modifier::DIM)
        }
    }

    pub fn bold(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    /// The highlighted row or field.
    pub fn selected(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    /// A key in the hint bar.
    pub fn key(&self) -> Style {
        if self.color {
            Style::new()
                .fg(Color::Black)
                .bg(Color::Cyan)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        }
    }

    pub fn gauge_filled(&self) -> Style {
        self.fg(Color::Green)
    }

    pub fn gauge_unfilled(&self) -> Style {
        self.dim()
    }
}
