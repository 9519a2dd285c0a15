//! Every sentence the front ends say about a run, worded once: step lines, the confirm gate,
//! preflight findings, verdicts, how a run ended and what state the databases are in after it,
//! and what an earlier run left to resume. The wizard, plain mode and the headless printer all
//! call these, so an operator reads the same words whichever front end they use.

use crate::engine::event::{LogLevel, RunEvent, StepId, StepOutcome};
use crate::engine::journal::JournalData;
use crate::engine::plan::{Plan, StepKind};
use crate::engine::preflight::{Finding, Severity};
use crate::engine::runner::RunEnd;
use crate::session::state::{RunState, StepState};
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
        RunEnd::Failed { step, error } => {
            let at = run
                .steps
                .get(*step)
                .map(|s| format!(" at step {} ({})", s.id + 1, s.title))
                .unwrap_or_default();
            format!("The bootstrap failed{at}: {}", error.one_line())
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
        format!("Both databases replicate through sync {sync} and were verified identical.")
    } else if run.done(StepKind::Enable) {
        "The sync is active: Bucardo replicates both ways. Deltas logged during the copy may still be replaying; watch `bucardo-bootstrap status`, then run `bucardo-bootstrap verify`.".into()
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
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
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
}
