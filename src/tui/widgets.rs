//! Small pieces shared by the screens: the one-line text editor behind the Connect fields and the
//! table filter, the key-hint bar, popups, the spinner, and number/duration formatting.

use crate::tui::theme::Theme;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Widget};
use std::time::Duration;

/// What the renderer needs besides a screen's own state: the theme and the injected clock (time
/// since the wizard started), so that snapshots are stable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ui {
    pub theme: Theme,
    pub now: Duration,
}

const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/// How often the spinner moves.
pub const SPINNER_STEP: Duration = Duration::from_millis(100);

pub fn spinner(now: Duration) -> &'static str {
    SPINNER[(now.as_millis() / SPINNER_STEP.as_millis()) as usize % SPINNER.len()]
}

/// A single-line editor: the text and a cursor counted in chars.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LineEdit {
    pub text: String,
    pub cursor: usize,
}

/// What a key did to a [`LineEdit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EditOutcome {
    Changed,
    Moved,
    Submit,
    Cancel,
    Ignored,
}

impl LineEdit {
    pub fn new(text: &str) -> LineEdit {
        LineEdit {
            text: text.to_string(),
            cursor: text.chars().count(),
        }
    }

    fn byte_at(&self, char_idx: usize) -> usize {
        self.text
            .char_indices()
            .nth(char_idx)
            .map(|(i, _)| i)
            .unwrap_or(self.text.len())
    }

    pub fn handle(&mut self, key: KeyEvent) -> EditOutcome {
        let len = self.text.chars().count();
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Enter | KeyCode::Tab => EditOutcome::Submit,
            KeyCode::Esc => EditOutcome::Cancel,
            KeyCode::Char('u') if ctrl => {
                self.text.clear();
                self.cursor = 0;
                EditOutcome::Changed
            }
            KeyCode::Char('a') if ctrl => {
                self.cursor = 0;
                EditOutcome::Moved
            }
            KeyCode::Char('e') if ctrl => {
                self.cursor = len;
                EditOutcome::Moved
            }
            KeyCode::Char(c) if !ctrl => {
                let at = self.byte_at(self.cursor);
                self.text.insert(at, c);
                self.cursor += 1;
                EditOutcome::Changed
            }
            KeyCode::Backspace if self.cursor > 0 => {
                self.cursor -= 1;
                let at = self.byte_at(self.cursor);
                self.text.remove(at);
                EditOutcome::Changed
            }
            KeyCode::Delete if self.cursor < len => {
                let at = self.byte_at(self.cursor);
                self.text.remove(at);
                EditOutcome::Changed
            }
            KeyCode::Left if self.cursor > 0 => {
                self.cursor -= 1;
                EditOutcome::Moved
            }
            KeyCode::Right if self.cursor < len => {
                self.cursor += 1;
                EditOutcome::Moved
            }
            KeyCode::Home => {
                self.cursor = 0;
                EditOutcome::Moved
            }
            KeyCode::End => {
                self.cursor = len;
                EditOutcome::Moved
            }
            _ => EditOutcome::Ignored,
        }
    }

    /// The visible part of `shown` (the text, or its masked form) in `width` cells with the cursor
    /// drawn as a reversed cell.
    pub fn line(&self, shown: &str, width: usize, theme: Theme) -> Line<'static> {
        let chars: Vec<char> = shown.chars().collect();
        let cursor = self.cursor.min(chars.len());
        let width = width.max(2);
        let start = (cursor + 1).saturating_sub(width);
        let before: String = chars[start..cursor].iter().collect();
        let at: String = chars
            .get(cursor)
            .map(|c| c.to_string())
            .unwrap_or_else(|| " ".into());
        let after: String = chars
            .iter()
            .skip(cursor + 1)
            .take(width.saturating_sub(cursor - start + 1))
            .collect();
        Line::from(vec![
            Span::raw(before),
            Span::styled(at, theme.selected()),
            Span::raw(after),
        ])
    }
}

/// The bottom line: `key label` pairs, cut to the width.
pub fn hint_line(hints: &[(&str, &str)], theme: Theme) -> Line<'static> {
    let mut spans = Vec::new();
    for (i, (key, label)) in hints.iter().enumerate() {
        if i > 0 {
            spans.push(Span::raw(" "));
        }
        spans.push(Span::styled(format!(" {key} "), theme.key()));
        spans.push(Span::raw(format!(" {label}")));
    }
    Line::from(spans)
}

/// A rectangle of at most `w` x `h` centred in `area`.
/// A bordered pane of `lines` from `scroll` on (clamped so the last page stays full), titled in
/// bold, with "↓ N more" on its bottom border while lines are hidden below.
pub fn scrolled_pane(
    area: Rect,
    buf: &mut Buffer,
    title: &str,
    lines: Vec<Line<'static>>,
    scroll: usize,
    theme: Theme,
) {
    let rows = area.height.saturating_sub(2) as usize;
    let scroll = scroll.min(lines.len().saturating_sub(rows));
    let more = match lines.len().saturating_sub(scroll + rows) {
        0 => String::new(),
        n => format!(" ↓ {n} more "),
    };
    Paragraph::new(
        lines
            .into_iter()
            .skip(scroll)
            .take(rows)
            .collect::<Vec<_>>(),
    )
    .block(
        Block::default()
            .borders(Borders::ALL)
            .title(Span::styled(title.to_string(), theme.bold()))
            .title_bottom(Line::from(more).right_aligned()),
    )
    .render(area, buf);
}

pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

/// Clears `area` and draws a bordered popup with `lines` in it.
pub fn popup(area: Rect, buf: &mut Buffer, title: &str, lines: Vec<Line<'static>>, theme: Theme) {
    Clear.render(area, buf);
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(format!(" {title} "), theme.accent()));
    Paragraph::new(lines).block(block).render(area, buf);
}

/// `s` cut to `width` chars, with `…` when cut.
pub fn truncate(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        s.to_string()
    } else if width == 0 {
        String::new()
    } else {
        let mut out: String = s.chars().take(width - 1).collect();
        out.push('…');
        out
    }
}

/// `s` padded or cut to exactly `width` chars.
pub fn fit(s: &str, width: usize) -> String {
    let t = truncate(s, width);
    let pad = width.saturating_sub(t.chars().count());
    format!("{t}{}", " ".repeat(pad))
}

/// Hard-wraps `s` at `width` chars; continuation lines keep the indentation plus two spaces.
pub fn wrap(s: &str, width: usize) -> Vec<String> {
    let width = width.max(8);
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= width {
        return vec![s.to_string()];
    }
    let indent = chars
        .iter()
        .take_while(|c| **c == ' ')
        .count()
        .min(width / 2)
        + 2;
    let mut out = Vec::new();
    let mut rest: &[char] = &chars;
    let mut first = true;
    while !rest.is_empty() {
        let room = if first { width } else { width - indent };
        let mut take = room.min(rest.len());
        if take < rest.len() {
            // Prefer to break after a space when there is one in the second half.
            if let Some(sp) = rest[..take].iter().rposition(|c| *c == ' ') {
                if sp > room / 2 {
                    take = sp + 1;
                }
            }
        }
        let piece: String = rest[..take].iter().collect();
        out.push(if first {
            piece
        } else {
            format!("{}{}", " ".repeat(indent), piece)
        });
        rest = &rest[take..];
        first = false;
    }
    out
}

/// Wraps every line of `text`.
pub fn wrap_all<'a>(lines: impl IntoIterator<Item = &'a str>, width: usize) -> Vec<String> {
    lines.into_iter().flat_map(|l| wrap(l, width)).collect()
}

pub use crate::session::text::{fmt_bytes, fmt_count, fmt_duration, fmt_thousands};

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::KeyEventKind;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new_with_kind(code, KeyModifiers::NONE, KeyEventKind::Press)
    }

    #[test]
    fn line_edit_inserts_and_deletes_at_the_cursor() {
        let mut e = LineEdit::new("héllo");
        assert_eq!(e.handle(key(KeyCode::Left)), EditOutcome::Moved);
        assert_eq!(e.handle(key(KeyCode::Backspace)), EditOutcome::Changed);
        assert_eq!(e.text, "hélo");
        e.handle(key(KeyCode::Home));
        e.handle(key(KeyCode::Char('x')));
        assert_eq!(e.text, "xhélo");
        e.handle(key(KeyCode::Delete));
        assert_eq!(e.text, "xélo");
        assert_eq!(e.handle(key(KeyCode::Enter)), EditOutcome::Submit);
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_duration(Duration::from_millis(430)), "0.4 s");
        assert_eq!(fmt_duration(Duration::from_secs(187)), "3 m 07 s");
        assert_eq!(fmt_count(12_345), "12.3k");
        assert_eq!(fmt_thousands(1_234_567), "1,234,567");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(fit("ab", 4), "ab  ");
    }

    #[test]
    fn wrap_keeps_indentation() {
        let w = wrap("    aaaa bbbb cccc dddd eeee", 12);
        assert_eq!(w[0], "    aaaa ");
        assert!(w[1..].iter().all(|l| l.starts_with("      ")), "{w:?}");
    }
}
