//! Every sentence the front ends say about a run, worded once: step lines, the confirm gate,
//! preflight findings, verdicts, how a run ended and what state the databases are in after it,
//! and what an earlier run left to resume. The wizard, plain mode and the headless printer all
//! call these, so an operator reads the same words whichever front end they use.

use crate::engine::copy::format::Format;
use crate::engine::event::{CopyEvent, LogLevel, RunEvent, StepId, StepOutcome, VerdictState};
use crate::engine::governor::{Mode, View};
use crate::engine::ident::TableName;
use crate::engine::journal::JournalData;
use crate::engine::plan::{Plan, StepKind};
use crate::engine::preflight::{Finding, Severity};
use crate::engine::runner::RunEnd;
use crate::session::state::{RunState, StepState, TableProgress, TableStatus};
use std::fmt::Write as _;
use std::time::Duration;

/// The two ways on after a run that did not complete.
pub const ONWARD: &str = "To resume, run the same command again (or open the wizard with the same flags): finished steps are skipped. To undo everything: `bucardo-bootstrap cleanup` (same flags).";

/// `[3/13] Add the tables to a relgroup ...`
pub fn step_started(step: StepId, total: usize, title: &str) -> String {
    format!("[{}/{total}] {title} ...", step + 1)
}

/// `[3/13] Add the tables to a relgroup done in 0.4 s`, `... (done in an earlier run)`, ...
pub fn step_finished(
    step: StepId,
    total: usize,
    title: &str,
    outcome: &StepOutcome,
    elapsed: Duration,
) -> String {
    let head = format!("[{}/{total}] {title}", step + 1);
    match outcome {
        StepOutcome::Done => format!("{head} done in {}", fmt_duration(elapsed)),
        StepOutcome::AlreadyDone => format!("{head} (done in an earlier run)"),
        StepOutcome::Skipped => format!("{head} skipped"),
        StepOutcome::Aborted => format!("{head} aborted"),
        StepOutcome::Failed(e) => format!("{head} FAILED: {e}"),
    }
}

/// The line a text front end prints for an event, apart from copy progress (which has its own
/// throttled printer): steps, verdicts, warnings, errors and notices.
pub fn event_line(run: &RunState, ev: &RunEvent) -> Option<String> {
    let n = run.steps.len();
    let title = |id: usize| run.steps.get(id).map(|s| s.title.as_str()).unwrap_or("?");
    match ev {
        RunEvent::StepStarted { step } => Some(step_started(*step, n, title(*step))),
        RunEvent::StepFinished {
            step,
            outcome,
            elapsed,
        } => Some(step_finished(*step, n, title(*step), outcome, *elapsed)),
        RunEvent::Verified(v) => Some(format!("    {}", v.line())),
        RunEvent::Log {
            level: LogLevel::Warn,
            message,
        } => Some(format!("    warning: {message}")),
        RunEvent::Log {
            level: LogLevel::Error,
            message,
        } => Some(format!("    error: {message}")),
        RunEvent::Log {
            level: LogLevel::Notice,
            message,
        } => Some(format!("    {message}")),
        _ => None,
    }
}

/// The gate: what is about to run, for a prompt or an overlay.
pub fn gate_text(run: &RunState, step: StepId) -> String {
    let Some(s) = run.steps.get(step) else {
        return String::new();
    };
    let mut out = format!(
        "Step {} of {}: {}\n  {}\n",
        s.id + 1,
        run.steps.len(),
        s.title,
        s.why
    );
    for c in &s.commands {
        out.push_str(&format!("    {c}\n"));
    }
    if s.more_lines > 0 {
        out.push_str(&format!(
            "    … {} more lines: `bucardo-bootstrap plan` (same flags) prints them all\n",
            s.more_lines
        ));
    }
    out
}

/// The findings as lines, grouped (HERE, THERE, Bucardo, Tables, Jump box), each with its
/// severity and, for a failure or warning, its fix; then the totals.
pub fn findings_text(findings: &[Finding]) -> String {
    use crate::engine::preflight::{BUCARDO, HERE, JUMP_BOX, TABLES, THERE};
    let mut groups: Vec<&str> = vec![HERE, THERE, BUCARDO, TABLES, JUMP_BOX];
    for f in findings {
        if !groups.contains(&f.group.as_str()) {
            groups.push(&f.group);
        }
    }
    let mut out = String::new();
    for g in groups {
        let in_group: Vec<&Finding> = findings.iter().filter(|f| f.group == g).collect();
        if in_group.is_empty() {
            continue;
        }
        out.push_str(&format!("{g}\n"));
        for f in in_group {
            out.push_str(&format!(
                "  {}  {}: {}\n",
                severity_tag(f.severity),
                f.check,
                f.message
            ));
            if let Some(fix) = &f.fix {
                for (i, line) in fix.lines().enumerate() {
                    let lead = if i == 0 { "fix: " } else { "     " };
                    out.push_str(&format!("        {lead}{line}\n"));
                }
            }
        }
    }
    let n = |sev| findings.iter().filter(|f| f.severity == sev).count();
    out.push_str(&format!(
        "{} fail, {} warn, {} pass\n",
        n(Severity::Fail),
        n(Severity::Warn),
        n(Severity::Pass)
    ));
    out
}

pub fn severity_tag(s: Severity) -> &'static str {
    match s {
        Severity::Pass => "PASS",
        Severity::Warn => "WARN",
        Severity::Fail => "FAIL",
    }
}

/// How the run ended, in one line: `Bootstrap complete: ...`, `Aborted by the operator`,
/// `The bootstrap failed at step 11 (Copy the data): ...`.
pub fn headline(run: &RunState, end: &RunEnd) -> String {
    match end {
        RunEnd::Completed => format!(
            "Bootstrap complete: {}",
            run.finished
                .as_ref()
                .map(|f| f.summary.as_str())
                .unwrap_or("every step finished")
        ),
        RunEnd::Aborted { .. } => "Aborted by the operator".into(),
        RunEnd::Failed {
            step: Some(step),
            error,
        } => {
            let at = run
                .steps
                .get(*step)
                .map(|s| format!(" at step {} ({})", s.id + 1, s.title))
                .unwrap_or_default();
            format!("The bootstrap failed{at}: {}", error.one_line())
        }
        RunEnd::Failed { step: None, error } => {
            format!("The bootstrap could not start: {}", error.one_line())
        }
    }
}

/// What an earlier run left: the steps it finished and the ones left, and the tables copied.
pub fn resume_summary(plan: &Plan, journal: &JournalData) -> Vec<String> {
    let done: Vec<&str> = plan
        .steps
        .iter()
        .filter(|s| s.already_done)
        .map(|s| s.title.as_str())
        .collect();
    let left: Vec<&str> = plan
        .steps
        .iter()
        .filter(|s| !s.already_done)
        .map(|s| s.title.as_str())
        .collect();
    let mut out = vec![match done.last() {
        Some(last) => format!(
            "An earlier run of this bootstrap finished {} of {} steps, the last: {last}.",
            done.len(),
            plan.steps.len()
        ),
        None => format!(
            "An earlier run of this bootstrap finished none of its {} steps.",
            plan.steps.len()
        ),
    }];
    if !left.is_empty() {
        out.push(format!("Left: {}.", left.join(", ")));
    }
    if !plan
        .steps
        .iter()
        .any(|s| s.kind == StepKind::CopyData && s.already_done)
    {
        let copied = plan
            .tables
            .iter()
            .filter(|t| journal.tables_done.contains(&t.name))
            .count();
        let partial = journal.ranges.len();
        let mut line = format!("Tables copied: {copied} of {}", plan.tables.len());
        if partial > 0 {
            line.push_str(&format!(
                "; {partial} split table{} partly copied (only the missing key ranges are copied again)",
                if partial == 1 { "" } else { "s" }
            ));
        }
        line.push_str(". A table whose copy was cut short is emptied and copied again.");
        out.push(line);
    }
    out
}

/// What state HERE, THERE and Bucardo are in, judged by the steps that finished, and the
/// two ways on: run the same bootstrap again (the journal skips what is done) or undo it.
pub fn db_state(run: &RunState) -> String {
    let sync = &run.sync;
    let onward = ONWARD;
    if run.done(StepKind::Verify) {
        let changing: Vec<String> = run
            .verdicts
            .iter()
            .filter(|v| v.state() == VerdictState::Changing)
            .map(|v| v.table.to_string())
            .collect();
        match changing.len() {
            0 => {
                format!("Both databases replicate through sync {sync} and were verified identical.")
            }
            1 => format!(
                "Both databases replicate through sync {sync}; {} was still changing.",
                changing[0]
            ),
            n => format!(
                "Both databases replicate through sync {sync}; {n} tables were still changing."
            ),
        }
    } else if run.done(StepKind::Drain) {
        format!(
            "Sync {sync} is on and Bucardo replayed the deltas logged during the copy, so both databases replicate; the rows were not compared: run `bucardo-bootstrap verify` (same flags)."
        )
    } else if run.done(StepKind::Enable) {
        let drain = run.steps.iter().find(|s| s.kind == StepKind::Drain);
        match drain.map(|s| &s.state) {
            Some(StepState::Failed(_)) => format!(
                "Sync {sync} is switched on (autokick=1), but Bucardo did not replay the deltas logged during the copy (the step's error is above). Until a run of the sync succeeds, nothing replicates and THERE misses those changes; `bucardo-bootstrap status` shows the sync's last run. {onward}"
            ),
            Some(StepState::Aborted) => format!(
                "Sync {sync} is switched on (autokick=1), but this run stopped before Bucardo was seen replaying the deltas logged during the copy; nothing is known to replicate yet. Watch `bucardo-bootstrap status`, then run `bucardo-bootstrap verify`. {onward}"
            ),
            _ => format!(
                "Sync {sync} is switched on (autokick=1); Bucardo has not yet been seen replaying the deltas logged during the copy. Watch `bucardo-bootstrap status`, then run `bucardo-bootstrap verify`."
            ),
        }
    } else if run.done(StepKind::CopyData) {
        format!(
            "THERE holds the copy. Bucardo's triggers log every change since then on both sides, but sync {sync} is inactive, so nothing replicates yet. {onward}"
        )
    } else if run.done(StepKind::AddSync) {
        let copy = if run.started(StepKind::CopyData) {
            " and may hold part of the copy"
        } else {
            ""
        };
        format!(
            "Bucardo's triggers are logging deltas on HERE and THERE, but nothing replicates yet (sync {sync} is inactive); THERE has the schema{copy}. {onward}"
        )
    } else if run.done(StepKind::AddDatabases)
        || run.done(StepKind::AddTables)
        || run.done(StepKind::AddDbgroup)
    {
        format!("Nothing replicates and no trigger logs changes yet; THERE has the schema and Bucardo knows some of the names. {onward}")
    } else if run.started(StepKind::ConvertGenerated) {
        format!("Nothing replicates yet; THERE has the schema and no rows. On HERE (and THERE), generated columns may already be plain columns that this tool's trigger computes: the application sees the same values, and `cleanup` restores them. {onward}")
    } else if run.done(StepKind::CopySchema) || run.done(StepKind::CreateDatabase) {
        format!("Nothing replicates yet; THERE has the schema and no rows, and HERE is unchanged. {onward}")
    } else if run
        .steps
        .iter()
        .any(|s| matches!(s.state, StepState::Done | StepState::AlreadyDone))
    {
        "Only preparation ran (roles, Bucardo's control database or daemon); no table changed on either side.".into()
    } else {
        "Nothing changed on either database.".into()
    }
}

/// How often a text front end prints a table's copy progress.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(3);

/// HERE's health for the text front ends: a line whenever the governor's state changes, and
/// every [`HERE_EVERY`] otherwise.
#[derive(Default)]
pub struct HereLines {
    last: Option<(Mode, Duration)>,
}

/// How often the text front ends repeat HERE's line while nothing changes.
pub const HERE_EVERY: Duration = Duration::from_secs(15);

impl HereLines {
    pub fn line(&mut self, run: &RunState, v: &View) -> Option<String> {
        let due = match self.last {
            None => true,
            Some((m, _)) if m != v.mode => true,
            Some((_, at)) => run.now.saturating_sub(at) >= HERE_EVERY,
        };
        if !due || v.mode == Mode::Measuring {
            return None;
        }
        self.last = Some((v.mode, run.now));
        Some(format!("    {}", v.line()))
    }
}

/// How HERE fared over the whole run, in one line: its rate against the baseline taken before
/// the first step, and the oldest snapshot the bootstrap held there.
pub fn here_summary(run: &RunState) -> Option<String> {
    let v = run.here.latest.as_ref()?;
    if v.mode == Mode::Off && run.here.points.is_empty() {
        return None;
    }
    let mut s = match (run.here.summary(), v.first_baseline) {
        (Some((mean, worst, under)), Some(b)) => format!(
            "HERE during the bootstrap: {}% of its baseline ({} tx/s) on average, {}% in the worst second, {under} s under half",
            mean.round() as i64,
            b.rate.round() as i64,
            worst.round() as i64
        ),
        _ => "HERE during the bootstrap: too little traffic to compare with a baseline".to_string(),
    };
    match run.here.max_held {
        Some(h) => s.push_str(&format!(
            "; the oldest snapshot the bootstrap held there was {} s old ({} transactions)",
            h.secs, h.xid_age
        )),
        None => s.push_str("; the bootstrap held no snapshot there long enough to be seen"),
    }
    Some(s)
}

/// Copy progress as plain lines for the front ends that are not a full-screen UI (`run --yes`,
/// `--plain`, `copy`): a line per table in flight every [`PROGRESS_EVERY`] on the run's clock,
/// index build phases, each table's end, failures. The figures are the [`RunState`]'s; this
/// only remembers when it last printed each table.
#[derive(Default)]
pub struct CopyLines {
    last: std::collections::HashMap<TableName, Duration>,
}

impl CopyLines {
    /// The lines `ev` calls for, once it has been folded into `run`.
    pub fn lines(&mut self, run: &RunState, ev: &CopyEvent) -> Vec<String> {
        let now = run.now;
        let find = |t: &TableName| run.table(t);
        match ev {
            CopyEvent::TableStarted { table, .. } => {
                self.mark(table, now);
                vec![]
            }
            CopyEvent::Advanced { table, .. } => {
                let due = match self.last.get_mut(table) {
                    Some(at) if now.saturating_sub(*at) < PROGRESS_EVERY => false,
                    Some(at) => {
                        *at = now;
                        true
                    }
                    None => {
                        self.mark(table, now);
                        true
                    }
                };
                match find(table) {
                    Some(p) if due => vec![progress_line(p, now)],
                    _ => vec![],
                }
            }
            CopyEvent::IndexPhase { table, .. } => find(table)
                .and_then(|p| p.index_phase.as_ref())
                .map(|phase| format!("{table}: THERE builds {phase}"))
                .into_iter()
                .collect(),
            CopyEvent::TableFinished {
                table,
                rows,
                bytes,
                elapsed,
                ..
            } => {
                let secs = elapsed.as_secs_f64().max(0.001);
                vec![format!(
                    "{table}: {rows} rows, {} in {secs:.1} s ({:.1} MB/s)",
                    fmt_bytes(*bytes),
                    *bytes as f64 / secs / 1e6
                )]
            }
            CopyEvent::TableFailed { table, error } => vec![format!("{table}: FAILED: {error}")],
            CopyEvent::ThereRows { .. }
            | CopyEvent::TableSplit { .. }
            | CopyEvent::RangeDone { .. } => {
                vec![]
            }
        }
    }

    fn mark(&mut self, table: &TableName, now: Duration) {
        self.last.insert(table.clone(), now);
    }
}

/// `public.big: 200 rows (20%), 19.5 kB, 0.0 MB/s, ETA 8 s (THERE has 150)`.
fn progress_line(p: &TableProgress, now: Duration) -> String {
    let mut s = format!("{}: {} rows", p.table, p.rows);
    if p.est_rows > 0 {
        let _ = write!(s, " ({:.0}%)", p.ratio() * 100.0);
    }
    let _ = write!(
        s,
        ", {}, {:.1} MB/s",
        fmt_bytes(p.bytes),
        p.rate(now).unwrap_or(0.0) / 1e6
    );
    if let Some(e) = p.eta(now) {
        let _ = write!(s, ", ETA {}", fmt_duration(e));
    }
    if let Some(n) = p.there_rows {
        let _ = write!(s, " (THERE has {n})");
    }
    s
}

/// The closing table of a copy: rows, bytes, seconds, MB/s, format and key ranges per table
/// copied in this run, then the totals over `wall`. `None` when this run copied no table.
pub fn copy_summary(run: &RunState, wall: Duration) -> Option<String> {
    let mut done: Vec<&TableProgress> = run
        .tables
        .iter()
        .filter(|p| p.status == TableStatus::Done)
        .collect();
    if done.is_empty() {
        return None;
    }
    done.sort_by(|a, b| a.table.cmp(&b.table));
    let width = done
        .iter()
        .map(|p| p.table.to_string().len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<width$} {:>12} {:>10} {:>8} {:>8}  format  ranges",
        "table", "rows", "bytes", "seconds", "MB/s"
    );
    for p in &done {
        let secs = p.elapsed.unwrap_or_default().as_secs_f64();
        let _ = writeln!(
            s,
            "{:<width$} {:>12} {:>10} {:>8.2} {:>8.1}  {:<6}  {}",
            p.table.to_string(),
            p.rows,
            fmt_bytes(p.bytes),
            secs,
            p.bytes as f64 / secs.max(0.001) / 1e6,
            match p.format {
                Some(Format::Binary) => "binary",
                Some(Format::Text) | None => "text",
            },
            p.parts
        );
    }
    let rows: u64 = done.iter().map(|p| p.rows).sum();
    let bytes: u64 = done.iter().map(|p| p.bytes).sum();
    let secs = wall.as_secs_f64();
    let _ = writeln!(
        s,
        "{:<width$} {:>12} {:>10} {:>8.2} {:>8.1}  ({} tables, wall clock)",
        "total",
        rows,
        fmt_bytes(bytes),
        secs,
        bytes as f64 / secs.max(0.001) / 1e6,
        done.len()
    );
    Some(s)
}

/// `0.4 s`, `12 s`, `3 m 07 s`, `1 h 02 m`.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        format!("{s:.1} s")
    } else if s < 60.0 {
        format!("{} s", s as u64)
    } else if s < 3600.0 {
        let t = s as u64;
        format!("{} m {:02} s", t / 60, t % 60)
    } else {
        let t = s as u64;
        format!("{} h {:02} m", t / 3600, (t % 3600) / 60)
    }
}

/// `950`, `12.3k`, `4.56M`, `1.2G`.
pub fn fmt_count(n: u64) -> String {
    let f = n as f64;
    if n < 1_000 {
        n.to_string()
    } else if n < 1_000_000 {
        format!("{:.1}k", f / 1e3)
    } else if n < 1_000_000_000 {
        format!("{:.2}M", f / 1e6)
    } else {
        format!("{:.2}G", f / 1e9)
    }
}

/// `1,234,567`.
pub fn fmt_thousands(n: i64) -> String {
    crate::engine::plan::thousands(n)
}

pub fn fmt_bytes(b: u64) -> String {
    crate::engine::plan::human_bytes(i64::try_from(b).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::preflight::{HERE, THERE};

    #[test]
    fn render_groups_and_indents_fixes() {
        let f = vec![
            Finding::pass(THERE, "connect", "ok"),
            Finding::fail(HERE, "privileges", "missing", Some("a;\nb;".into())),
        ];
        let text = findings_text(&f);
        assert!(
            text.starts_with(
                "HERE\n  FAIL  privileges: missing\n        fix: a;\n             b;\nTHERE\n"
            ),
            "{text}"
        );
        assert!(text.ends_with("1 fail, 0 warn, 1 pass\n"));
    }

    fn copying(t: &TableName) -> RunState {
        let mut run = RunState::for_copy(Duration::ZERO);
        run.apply(RunEvent::Copy(CopyEvent::TableStarted {
            table: t.clone(),
            est_rows: 1000,
            est_bytes: 100_000,
        }));
        run
    }

    #[test]
    fn progress_lines_are_throttled_on_the_runs_clock_and_carry_theres_count() {
        let t = TableName::new("public", "big");
        let mut run = RunState::for_copy(Duration::ZERO);
        let mut lines = CopyLines::default();
        let step = RunEvent::Copy(CopyEvent::Advanced {
            table: t.clone(),
            rows: 100,
            bytes: 10_000,
        });
        let at = |run: &mut RunState, secs: u64, ev: &RunEvent, lines: &mut CopyLines| {
            run.now = Duration::from_secs(secs);
            run.apply(ev.clone());
            let RunEvent::Copy(c) = ev else {
                unreachable!()
            };
            lines.lines(run, c)
        };
        let started = RunEvent::Copy(CopyEvent::TableStarted {
            table: t.clone(),
            est_rows: 1000,
            est_bytes: 100_000,
        });
        assert!(at(&mut run, 0, &started, &mut lines).is_empty());
        assert!(at(&mut run, 1, &step, &mut lines).is_empty(), "not due yet");
        at(
            &mut run,
            2,
            &RunEvent::Copy(CopyEvent::ThereRows {
                table: t.clone(),
                rows: 150,
            }),
            &mut lines,
        );
        let l = at(&mut run, 4, &step, &mut lines);
        assert_eq!(l.len(), 1);
        assert!(
            l[0].starts_with("public.big: 200 rows (20%)") && l[0].ends_with("(THERE has 150)"),
            "{l:?}"
        );
        assert!(at(&mut run, 5, &step, &mut lines).is_empty(), "throttled");
        let fin = RunEvent::Copy(CopyEvent::TableFinished {
            table: t.clone(),
            rows: 1000,
            bytes: 100_000,
            elapsed: Duration::from_secs(1),
            format: Format::Text,
            parts: 3,
        });
        assert_eq!(at(&mut run, 6, &fin, &mut lines).len(), 1);
        let s = copy_summary(&run, Duration::from_secs(1)).unwrap();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 3, "{s}");
        assert!(lines[1].ends_with("text    3"), "{s}");
        assert!(
            lines[2].starts_with("total") && lines[2].contains("1000"),
            "{s}"
        );
    }

    #[test]
    fn no_summary_without_a_table_copied_in_this_run() {
        let run = copying(&TableName::new("public", "t"));
        assert!(copy_summary(&run, Duration::from_secs(1)).is_none());
    }
}
