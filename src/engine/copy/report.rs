//! Copy progress as plain lines, for the outputs that are not a terminal UI (`run --yes` and
//! `copy`): a line per table in flight every [`PRINT_EVERY`] (rows, % of the catalog's
//! estimate, bytes, rate, ETA, and THERE's own row count), index build phases, failures, and at
//! the end a summary table with rows, bytes, seconds and MB/s per table.

use crate::engine::copy::format::Format;
use crate::engine::copy::TableCopied;
use crate::engine::event::CopyEvent;
use crate::engine::ident::TableName;
use crate::engine::plan::human_bytes;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// How often a table's progress line is printed.
pub const PRINT_EVERY: Duration = Duration::from_secs(3);

#[derive(Default)]
struct Live {
    rows: u64,
    bytes: u64,
    est_rows: i64,
    started: Option<Instant>,
    last_print: Option<Instant>,
    there_rows: Option<u64>,
}

/// Turns copy events into lines. Holds the finished tables until [`LinePrinter::summary`].
#[derive(Default)]
pub struct LinePrinter {
    live: BTreeMap<TableName, Live>,
    finished: Vec<TableCopied>,
}

impl LinePrinter {
    /// The lines this event calls for (often none).
    pub fn lines(&mut self, ev: &CopyEvent) -> Vec<String> {
        match ev {
            CopyEvent::TableStarted {
                table, est_rows, ..
            } => {
                let now = Instant::now();
                self.live.insert(
                    table.clone(),
                    Live {
                        est_rows: *est_rows,
                        started: Some(now),
                        last_print: Some(now),
                        ..Live::default()
                    },
                );
                vec![]
            }
            CopyEvent::Advanced { table, rows, bytes } => {
                let l = self.live.entry(table.clone()).or_default();
                l.rows += rows;
                l.bytes += bytes;
                if l.last_print.is_some_and(|t| t.elapsed() < PRINT_EVERY) {
                    return vec![];
                }
                l.last_print = Some(Instant::now());
                vec![live_line(table, l)]
            }
            CopyEvent::ThereRows { table, rows } => {
                self.live.entry(table.clone()).or_default().there_rows = Some(*rows);
                vec![]
            }
            CopyEvent::IndexPhase {
                table,
                index,
                phase,
                percent,
            } => {
                let pct = percent.map(|p| format!(" ({p}%)")).unwrap_or_default();
                vec![format!("{table}: THERE builds index {index}: {phase}{pct}")]
            }
            CopyEvent::TableFinished {
                table,
                rows,
                bytes,
                elapsed,
                format,
                parts,
            } => {
                self.live.remove(table);
                self.finished.push(TableCopied {
                    table: table.clone(),
                    rows: *rows,
                    bytes: *bytes,
                    elapsed: *elapsed,
                    parts: *parts,
                    format: *format,
                });
                let secs = elapsed.as_secs_f64().max(0.001);
                vec![format!(
                    "{table}: {rows} rows, {} in {secs:.1} s ({:.1} MB/s)",
                    human_bytes(*bytes as i64),
                    *bytes as f64 / secs / 1e6
                )]
            }
            CopyEvent::TableFailed { table, error } => {
                self.live.remove(table);
                vec![format!("{table}: FAILED: {error}")]
            }
            CopyEvent::TableSplit { .. } | CopyEvent::RangeDone { .. } => vec![],
        }
    }

    /// The summary table of the tables finished since the last call (`None` if there are none).
    pub fn summary(&mut self, wall: Duration) -> Option<String> {
        if self.finished.is_empty() {
            return None;
        }
        let mut done = std::mem::take(&mut self.finished);
        done.sort_by(|a, b| a.table.cmp(&b.table));
        Some(summary(&done, wall))
    }
}

fn live_line(t: &TableName, l: &Live) -> String {
    let secs = l
        .started
        .map(|s| s.elapsed().as_secs_f64())
        .unwrap_or(0.0)
        .max(0.001);
    let mut s = format!("{t}: {} rows", l.rows);
    if l.est_rows > 0 {
        let share = (l.rows as f64 / l.est_rows as f64).min(0.99);
        let _ = write!(s, " ({:.0}%)", share * 100.0);
    }
    let rate = l.bytes as f64 / secs;
    let _ = write!(
        s,
        ", {}, {:.1} MB/s",
        human_bytes(l.bytes as i64),
        rate / 1e6
    );
    if l.est_rows > l.rows as i64 && l.rows > 0 {
        let left = (l.est_rows as f64 - l.rows as f64) / (l.rows as f64 / secs);
        let _ = write!(s, ", ETA {:.0} s", left);
    }
    if let Some(n) = l.there_rows {
        let _ = write!(s, " (THERE has {n})");
    }
    s
}

/// The closing table: rows, bytes, seconds and MB/s per table, then the totals.
pub fn summary(copied: &[TableCopied], wall: Duration) -> String {
    let width = copied
        .iter()
        .map(|c| c.table.to_string().len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<width$} {:>12} {:>10} {:>8} {:>8}  format  ranges",
        "table", "rows", "bytes", "seconds", "MB/s"
    );
    for c in copied {
        let secs = c.elapsed.as_secs_f64();
        let _ = writeln!(
            s,
            "{:<width$} {:>12} {:>10} {:>8.2} {:>8.1}  {:<6}  {}",
            c.table.to_string(),
            c.rows,
            human_bytes(c.bytes as i64),
            secs,
            c.bytes as f64 / secs.max(0.001) / 1e6,
            match c.format {
                Format::Binary => "binary",
                Format::Text => "text",
            },
            c.parts
        );
    }
    let rows: u64 = copied.iter().map(|c| c.rows).sum();
    let bytes: u64 = copied.iter().map(|c| c.bytes).sum();
    let secs = wall.as_secs_f64();
    let _ = writeln!(
        s,
        "{:<width$} {:>12} {:>10} {:>8.2} {:>8.1}  ({} tables, wall clock)",
        "total",
        rows,
        human_bytes(bytes as i64),
        secs,
        bytes as f64 / secs.max(0.001) / 1e6,
        copied.len()
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copied(n: &str, rows: u64, bytes: u64, ms: u64) -> TableCopied {
        TableCopied {
            table: TableName::new("public", n),
            rows,
            bytes,
            elapsed: Duration::from_millis(ms),
            parts: 1,
            format: Format::Binary,
        }
    }

    #[test]
    fn summary_has_a_line_per_table_and_a_total() {
        let s = summary(
            &[copied("a", 10, 2_000_000, 1000), copied("b", 5, 0, 0)],
            Duration::from_secs(2),
        );
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 4, "{s}");
        assert!(
            lines[1].starts_with("public.a") && lines[1].contains(" 2.0 "),
            "{s}"
        );
        assert!(
            lines[3].starts_with("total") && lines[3].contains("15"),
            "{s}"
        );
    }

    #[test]
    fn progress_lines_are_throttled_and_carry_theres_count() {
        let t = TableName::new("public", "big");
        let mut p = LinePrinter::default();
        let started = CopyEvent::TableStarted {
            table: t.clone(),
            est_rows: 1000,
            est_bytes: 100_000,
        };
        assert!(p.lines(&started).is_empty());
        let step = CopyEvent::Advanced {
            table: t.clone(),
            rows: 100,
            bytes: 10_000,
        };
        assert!(p.lines(&step).is_empty(), "not due yet");
        p.live.get_mut(&t).unwrap().last_print = None;
        p.lines(&CopyEvent::ThereRows {
            table: t.clone(),
            rows: 150,
        });
        let l = p.lines(&step);
        assert_eq!(l.len(), 1);
        assert!(
            l[0].starts_with("public.big: 200 rows (20%)") && l[0].ends_with("(THERE has 150)"),
            "{l:?}"
        );
        assert!(p.lines(&step).is_empty(), "throttled");
        let fin = CopyEvent::TableFinished {
            table: t.clone(),
            rows: 1000,
            bytes: 100_000,
            elapsed: Duration::from_secs(1),
            format: Format::Text,
            parts: 3,
        };
        assert_eq!(p.lines(&fin).len(), 1);
        let s = p.summary(Duration::from_secs(1)).unwrap();
        assert!(s.lines().nth(1).unwrap().ends_with("text    3"), "{s}");
        assert!(
            p.summary(Duration::ZERO).is_none(),
            "the summary empties the list"
        );
    }
}
