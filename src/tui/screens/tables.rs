//! The Tables screen: a filterable, sortable checklist of HERE's tables with schema, name,
//! estimated rows, size and key. Ineligible tables are listed but cannot be checked; the reason
//! (from [`TableInfo::eligibility`]) is shown for the highlighted row. A table can also be marked
//! as left out knowingly (`--leave-out`), which lets a foreign key to it through preflight.

use crate::engine::catalog::{KeyKind, TableInfo};
use crate::engine::ident::parse_table_list;
use crate::tui::theme;
use crate::tui::widgets::{fit, fmt_bytes, fmt_count, spinner, truncate, wrap, LineEdit, Ui};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Widget};
use std::borrow::Cow;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SortBy {
    #[default]
    Name,
    /// Largest first.
    Size,
}

#[derive(Clone, Debug, Default)]
pub struct TablesState {
    pub ui: Ui,
    pub loading: bool,
    pub error: Option<String>,
    pub all: Vec<TableInfo>,
    pub checked: Vec<bool>,
    /// Left out knowingly (`--leave-out`); never checked at the same time.
    pub left_out: Vec<bool>,
    pub filter: String,
    /// Set while `/` is typing into the filter.
    pub filter_edit: Option<LineEdit>,
    pub sort: SortBy,
    /// Index into [`TablesState::visible`].
    pub cursor: usize,
    /// What the list needs of `all` for each keystroke, kept by the methods that change `all`,
    /// `filter` or `sort`: with 10,000 tables, sorting and lower-casing them for every frame
    /// took longer than a frame.
    pub(crate) index: Index,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Index {
    /// The length of `all` when indexed.
    of: usize,
    by_name: Vec<usize>,
    /// Largest first, then by name.
    by_size: Vec<usize>,
    /// `schema.name` in lower case, as the filter matches it.
    lower: Vec<String>,
    /// The rows shown for this filter and sort.
    filter: String,
    sort: SortBy,
    shown: Vec<usize>,
}

impl TablesState {
    /// Loads the catalog, checks what `draft_tables` names (`all` or empty: every eligible) and
    /// marks what `draft_leave_out` names.
    pub fn set_tables(&mut self, all: Vec<TableInfo>, draft_tables: &str, draft_leave_out: &str) {
        let wanted = match draft_tables.trim() {
            "" | "all" => None,
            list => parse_table_list(list).ok(),
        };
        let out = parse_table_list(draft_leave_out).unwrap_or_default();
        self.left_out = all.iter().map(|t| out.contains(&t.name)).collect();
        self.checked = all
            .iter()
            .map(|t| {
                t.is_eligible()
                    && !out.contains(&t.name)
                    && wanted.as_ref().is_none_or(|w| w.contains(&t.name))
            })
            .collect();
        self.all = all;
        self.loading = false;
        self.error = None;
        self.cursor = 0;
        self.reindex();
    }

    /// Sorts `all` both ways and lower-cases its names, then filters.
    fn reindex(&mut self) {
        let all = &self.all;
        let mut by_name: Vec<usize> = (0..all.len()).collect();
        by_name.sort_by(|a, b| all[*a].name.cmp(&all[*b].name));
        let mut by_size = by_name.clone();
        by_size.sort_by(|a, b| all[*b].total_bytes.cmp(&all[*a].total_bytes));
        self.index = Index {
            of: all.len(),
            by_name,
            by_size,
            lower: all.iter().map(|t| t.name.raw().to_lowercase()).collect(),
            ..Index::default()
        };
        self.refilter();
    }

    /// The rows shown for the current filter and sort.
    fn refilter(&mut self) {
        let ix = &mut self.index;
        let needle = self.filter.to_lowercase();
        let order = match self.sort {
            SortBy::Name => &ix.by_name,
            SortBy::Size => &ix.by_size,
        };
        ix.shown = order
            .iter()
            .copied()
            .filter(|i| needle.is_empty() || ix.lower[*i].contains(&needle))
            .collect();
        ix.filter = self.filter.clone();
        ix.sort = self.sort;
    }

    /// Indexes into `all` of the rows shown, filtered and sorted.
    pub fn visible(&self) -> Cow<'_, [usize]> {
        let ix = &self.index;
        if ix.of == self.all.len() && ix.filter == self.filter && ix.sort == self.sort {
            return Cow::Borrowed(&ix.shown);
        }
        // `all`, `filter` or `sort` changed without the methods that keep the index.
        let needle = self.filter.to_lowercase();
        let mut v: Vec<usize> = (0..self.all.len())
            .filter(|i| {
                needle.is_empty() || self.all[*i].name.raw().to_lowercase().contains(&needle)
            })
            .collect();
        v.sort_by(|a, b| self.all[*a].name.cmp(&self.all[*b].name));
        if self.sort == SortBy::Size {
            v.sort_by(|a, b| self.all[*b].total_bytes.cmp(&self.all[*a].total_bytes));
        }
        Cow::Owned(v)
    }

    pub fn highlighted(&self) -> Option<usize> {
        self.visible().get(self.cursor).copied()
    }

    pub fn move_cursor(&mut self, delta: isize) {
        let n = self.visible().len();
        if n == 0 {
            self.cursor = 0;
            return;
        }
        self.cursor = (self.cursor as isize + delta).clamp(0, n as isize - 1) as usize;
    }

    /// Toggles the highlighted table; ineligible ones stay unchecked. Returns whether it changed.
    pub fn toggle(&mut self) -> bool {
        match self.highlighted() {
            Some(i) if self.all[i].is_eligible() => {
                self.checked[i] = !self.checked[i];
                self.left_out[i] = false;
                true
            }
            _ => false,
        }
    }

    /// Marks the highlighted table as left out knowingly, or clears the mark.
    pub fn toggle_left_out(&mut self) {
        if let Some(i) = self.highlighted() {
            self.left_out[i] = !self.left_out[i];
            if self.left_out[i] {
                self.checked[i] = false;
            }
        }
    }

    /// The tables left out knowingly, as a `--leave-out` value.
    pub fn leave_out_arg(&self) -> String {
        self.all
            .iter()
            .zip(&self.left_out)
            .filter(|(_, o)| **o)
            .map(|(t, _)| t.name.sql())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Checks every eligible table shown that is not left out knowingly.
    pub fn select_all(&mut self) {
        for i in self.visible().into_owned() {
            if self.all[i].is_eligible() && !self.left_out[i] {
                self.checked[i] = true;
            }
        }
    }

    /// Inverts the selection of the eligible tables shown that are not left out knowingly.
    pub fn invert(&mut self) {
        for i in self.visible().into_owned() {
            if self.all[i].is_eligible() && !self.left_out[i] {
                self.checked[i] = !self.checked[i];
            }
        }
    }

    pub fn set_filter(&mut self, f: &str) {
        self.filter = f.to_string();
        self.cursor = 0;
        self.refilter();
    }

    pub fn toggle_sort(&mut self) {
        self.sort = match self.sort {
            SortBy::Name => SortBy::Size,
            SortBy::Size => SortBy::Name,
        };
        self.cursor = 0;
        self.refilter();
    }

    pub fn selection(&self) -> Vec<&TableInfo> {
        self.all
            .iter()
            .zip(&self.checked)
            .filter(|(_, c)| **c)
            .map(|(t, _)| t)
            .collect()
    }

    /// The selection as a `--tables` value.
    pub fn selection_arg(&self) -> String {
        self.selection()
            .iter()
            .map(|t| t.name.sql())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn key_text(t: &TableInfo) -> String {
        match t.key_kind {
            KeyKind::Primary => format!("PK ({})", t.key_columns.join(", ")),
            KeyKind::Unique => format!("unique ({})", t.key_columns.join(", ")),
            KeyKind::None => "none".into(),
        }
    }

    fn detail(&self, width: usize) -> Vec<Line<'static>> {
        let th = self.ui.theme;
        let Some(i) = self.highlighted() else {
            return vec![Line::styled("no table matches the filter", th.dim())];
        };
        let t = &self.all[i];
        let mut out = Vec::new();
        if self.left_out[i] {
            out.push(Line::from(vec![
                Span::styled(format!("{} ", theme::WARN), th.warn()),
                Span::raw(
                    "left out knowingly (x): not replicated, and foreign keys between it and replicated tables are accepted",
                ),
            ]));
        }
        match t.eligibility() {
            Err(why) => {
                let hint = if t
                    .generation
                    .iter()
                    .any(|g| t.columns.iter().any(|c| c.name == g.column && c.generated))
                {
                    " (c: convert generated columns)"
                } else {
                    ""
                };
                for (n, piece) in wrap(
                    &format!("cannot be replicated{hint}: {why}"),
                    width.saturating_sub(2),
                )
                .into_iter()
                .enumerate()
                {
                    let lead = if n == 0 {
                        format!("{} ", theme::FAIL)
                    } else {
                        "  ".into()
                    };
                    out.push(Line::from(vec![
                        Span::styled(lead, th.fail()),
                        Span::raw(piece.trim_start().to_string()),
                    ]));
                }
            }
            Ok(()) => {
                let mut facts = vec![format!("key {}", Self::key_text(t))];
                if !t.sequences.is_empty() {
                    let seqs: Vec<String> =
                        t.sequences.iter().map(|s| s.sequence.to_string()).collect();
                    facts.push(format!("sequences {}", seqs.join(", ")));
                }
                if !t.fk_out.is_empty() {
                    facts.push(format!(
                        "references {}",
                        t.fk_out
                            .iter()
                            .map(|n| n.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                if !t.user_triggers.is_empty() {
                    facts.push(format!("triggers {}", t.user_triggers.join(", ")));
                }
                let text = format!("{} can be replicated: {}", t.name, facts.join("; "));
                for (n, piece) in wrap(&text, width.saturating_sub(2)).into_iter().enumerate() {
                    let lead = if n == 0 {
                        format!("{} ", theme::OK)
                    } else {
                        "  ".into()
                    };
                    out.push(Line::from(vec![
                        Span::styled(lead, th.ok()),
                        Span::raw(piece.trim_start().to_string()),
                    ]));
                }
            }
        }
        out
    }
}

impl Widget for &TablesState {
    /// ```text
    /// ┌ Tables: 5 of 7 selected · about 125.0k rows · 30.1 MB ─────────┐
    /// │    schema    name              est. rows      size  key         │
    /// │▶ [x] public  orders               60.0k   12.1 MB  PK (id)      │
    /// │  [-] public  audit_log             8.0k    1.1 MB  none         │
    /// │  [/] public  legacy                1.0k   80.0 kB  PK (id)      │
    /// └─────────────────────────────────────────────────────────────────┘
    /// ┌ public.audit_log ───────────────────────────────────────────────┐
    /// │✗ cannot be replicated: no primary key …                         │
    /// └─────────────────────────────────────────────────────────────────┘
    ///  /filter  sort: name
    /// ```
    fn render(self, area: Rect, buf: &mut Buffer) {
        let th = self.ui.theme;
        if self.loading || self.error.is_some() {
            let line = match &self.error {
                Some(e) => Line::from(vec![
                    Span::styled(format!("{} ", theme::FAIL), th.fail()),
                    Span::raw(format!("cannot list HERE's tables: {e} (r: try again)")),
                ]),
                None => Line::from(vec![
                    Span::styled(format!("{} ", spinner(self.ui.now)), th.accent()),
                    Span::raw("reading HERE's catalog…"),
                ]),
            };
            Paragraph::new(line)
                .wrap(ratatui::widgets::Wrap { trim: false })
                .block(Block::default().borders(Borders::ALL).title(" Tables "))
                .render(area, buf);
            return;
        }
        let inner_w = area.width.saturating_sub(2) as usize;
        let detail = self.detail(inner_w);
        let [list_area, detail_area, filter_area] = Layout::vertical([
            Constraint::Min(4),
            Constraint::Length(detail.len().min(4) as u16 + 2),
            Constraint::Length(1),
        ])
        .areas(area);

        let sel = self.selection();
        let rows_sum: i64 = sel.iter().map(|t| t.est_rows).sum();
        let bytes_sum: i64 = sel.iter().map(|t| t.total_bytes).sum();
        let title = format!(
            " Tables: {} of {} selected · about {} rows · {} ",
            sel.len(),
            self.all.len(),
            fmt_count(rows_sum.max(0) as u64),
            fmt_bytes(bytes_sum.max(0) as u64)
        );
        // Columns: marker 2, box 4, schema, name (the rest), rows 10, size 10, key 14.
        let schema_w = 12.min(inner_w / 6);
        let key_w = if inner_w >= 100 { 22 } else { 13 };
        let name_w = inner_w
            .saturating_sub(2 + 4 + schema_w + 1 + 1 + 10 + 10 + 2 + key_w)
            .max(8);
        let header = format!(
            "      {} {} {:>10}{:>10}  {}",
            fit("schema", schema_w),
            fit("name", name_w),
            "est. rows",
            "size",
            "key"
        );
        let mut lines = vec![Line::styled(header, th.bold())];
        let rows = list_area.height.saturating_sub(3) as usize;
        let visible = self.visible();
        let first = (self.cursor + 1).saturating_sub(rows.max(1));
        for (pos, i) in visible.iter().enumerate().skip(first).take(rows) {
            let t = &self.all[*i];
            let focused = pos == self.cursor;
            let eligible = t.is_eligible();
            let boxed = if self.left_out[*i] {
                "[/] "
            } else if !eligible {
                "[-] "
            } else if self.checked[*i] {
                "[x] "
            } else {
                "[ ] "
            };
            let row = format!(
                "{boxed}{} {} {:>10}{:>10}  {}",
                fit(&t.name.schema, schema_w),
                fit(&t.name.name, name_w),
                fmt_count(t.est_rows.max(0) as u64),
                fmt_bytes(t.total_bytes.max(0) as u64),
                truncate(&TablesState::key_text(t), key_w)
            );
            let mut style = if eligible { Style::new() } else { th.dim() };
            if focused {
                style = style.patch(th.selected());
            }
            lines.push(Line::from(vec![
                Span::styled(if focused { "▶ " } else { "  " }, th.accent()),
                Span::styled(row, style),
            ]));
        }
        if visible.is_empty() {
            lines.push(Line::styled(
                format!("  no table name contains {:?}", self.filter),
                th.dim(),
            ));
        }
        let more = visible.len().saturating_sub(first + rows);
        let bottom = if more > 0 {
            format!(" ↓ {more} more ")
        } else {
            String::new()
        };
        Paragraph::new(lines)
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(Span::styled(title, th.bold()))
                    .title_bottom(Line::from(bottom).right_aligned()),
            )
            .render(list_area, buf);

        let detail_title = self
            .highlighted()
            .map(|i| format!(" {} ", self.all[i].name))
            .unwrap_or_default();
        Paragraph::new(detail.into_iter().take(4).collect::<Vec<_>>())
            .block(Block::default().borders(Borders::ALL).title(detail_title))
            .render(detail_area, buf);

        let sort = match self.sort {
            SortBy::Name => "name",
            SortBy::Size => "size, largest first",
        };
        let mut spans = vec![Span::raw(" filter ")];
        match &self.filter_edit {
            Some(edit) => {
                spans.push(Span::styled("/", th.accent()));
                spans.extend(edit.line(&edit.text, 30, th).spans);
            }
            None if self.filter.is_empty() => spans.push(Span::styled("(none: press /)", th.dim())),
            None => spans.push(Span::styled(format!("/{}", self.filter), th.accent())),
        }
        spans.push(Span::raw(format!("   sort: {sort}")));
        Paragraph::new(Line::from(spans)).render(filter_area, buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ident::TableName;

    fn t(schema: &str, name: &str, bytes: i64) -> TableInfo {
        TableInfo {
            name: TableName::new(schema, name),
            total_bytes: bytes,
            key_kind: KeyKind::Primary,
            ..TableInfo::default()
        }
    }

    /// The rows shown, filtered and sorted from scratch.
    fn fresh(s: &TablesState) -> Vec<usize> {
        let needle = s.filter.to_lowercase();
        let mut v: Vec<usize> = (0..s.all.len())
            .filter(|i| s.all[*i].name.raw().to_lowercase().contains(&needle))
            .collect();
        v.sort_by(|a, b| match s.sort {
            SortBy::Name => s.all[*a].name.cmp(&s.all[*b].name),
            SortBy::Size => s.all[*b]
                .total_bytes
                .cmp(&s.all[*a].total_bytes)
                .then(s.all[*a].name.cmp(&s.all[*b].name)),
        });
        v
    }

    #[test]
    fn the_rows_kept_between_keys_are_the_rows_a_fresh_filter_and_sort_give() {
        let mut s = TablesState::default();
        assert!(s.visible().is_empty());
        s.set_tables(
            vec![
                t("public", "orders", 300),
                t("Sales", "Order Items", 300),
                t("public", "bar", 10),
                t("archive", "orders", 5000),
                t("public", "audit", 300),
            ],
            "all",
            "",
        );
        let mut seen = vec![fresh(&s)];
        assert_eq!(s.visible().as_ref(), fresh(&s).as_slice());
        for f in ["", "ORD", "public.", "s.o", "nothing", "r"] {
            s.set_filter(f);
            assert_eq!(s.visible().as_ref(), fresh(&s).as_slice(), "{f:?} by name");
            s.toggle_sort();
            assert_eq!(s.visible().as_ref(), fresh(&s).as_slice(), "{f:?} by size");
            s.toggle_sort();
            seen.push(fresh(&s));
        }
        assert_eq!(seen[2], [1, 3, 0], "\"ORD\" matches without regard to case");
        // Changed behind the methods' back, the list is worked out afresh.
        s.filter = "bar".into();
        assert_eq!(s.visible().as_ref(), [2]);
        s.sort = SortBy::Size;
        s.filter.clear();
        assert_eq!(s.visible().as_ref(), fresh(&s).as_slice());
        s.all.push(t("public", "zz", 1));
        assert_eq!(s.visible().as_ref(), fresh(&s).as_slice());
    }
}
