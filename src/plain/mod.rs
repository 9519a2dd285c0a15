//! The plain front end (`--plain`): the wizard's flow as inquire prompts, for terminals where a
//! full-screen UI is impractical. Connections and passwords (only those not already available),
//! Bucardo's names, a multi-select of the eligible tables, the preflight findings, the review,
//! then the same runner as the other front ends, with confirm-each-step as a prompt before each
//! step and progress printed as lines on stderr.
//!
//! Runner events are folded into the session's [`RunState`] and worded by the session's text, so
//! plain mode reports the wizard's figures and, after an abort or a failure, the same "state of
//! the databases" advice.
//! Prompts block, so each runs on a blocking thread; none runs while another one is open.

use crate::cli::Draft;
use crate::engine::catalog::{self, TableInfo};
use crate::engine::conn::{ConnDefaults, ConnSpec, Side};
use crate::engine::event::{ConfirmMode, GateReply, RunEvent};
use crate::engine::files::write_private;
use crate::engine::plan::Plan;
use crate::engine::preflight;
use crate::engine::secret::Secret;
use crate::engine::settings::Settings;
use crate::session::launch::{self, Earlier, Interrupt};
use crate::session::state::{RunState, TableStatus};
use crate::session::text::{self, fmt_bytes, fmt_count, fmt_duration, CopyLines};
use crate::session::undo;
use inquire::error::InquireError;
use inquire::{Confirm, MultiSelect, Password, PasswordDisplayMode, Select, Text};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The operator left with Esc or Ctrl-C at a prompt.
#[derive(Debug)]
struct Cancelled;

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cancelled at a prompt")
    }
}

impl std::error::Error for Cancelled {}

/// Runs a blocking inquire prompt off the async runtime.
async fn ask<T: Send + 'static>(
    prompt: impl FnOnce() -> Result<T, InquireError> + Send + 'static,
) -> anyhow::Result<T> {
    match tokio::task::spawn_blocking(prompt).await? {
        Ok(v) => Ok(v),
        Err(InquireError::OperationCanceled | InquireError::OperationInterrupted) => {
            Err(Cancelled.into())
        }
        Err(InquireError::NotTTY) => {
            anyhow::bail!(
                "--plain asks questions and needs a terminal; use `run --yes` without one"
            )
        }
        Err(e) => Err(e.into()),
    }
}

async fn text(message: &str, default: &str) -> anyhow::Result<String> {
    let (m, d) = (message.to_string(), default.to_string());
    ask(move || Text::new(&m).with_default(&d).prompt()).await
}

async fn confirm(message: &str, default: bool) -> anyhow::Result<bool> {
    let m = message.to_string();
    ask(move || Confirm::new(&m).with_default(default).prompt()).await
}

async fn password(message: &str) -> anyhow::Result<Option<Secret>> {
    let m = message.to_string();
    let p = ask(move || {
        Password::new(&m)
            .without_confirmation()
            .with_display_mode(PasswordDisplayMode::Masked)
            .with_help_message("empty: none (trust or peer authentication)")
            .prompt()
    })
    .await?;
    Ok((!p.is_empty()).then(|| Secret::new(p)))
}

/// Whether a password for `uri` is already known (URI, environment value, passfile).
fn has_password(uri: &str, env: Option<&Secret>, passfile: Option<&std::path::Path>) -> bool {
    match ConnSpec::parse_uri(uri.trim(), &ConnDefaults::default()) {
        Ok(mut spec) => {
            spec.resolve_password(env.map(Secret::expose), passfile);
            spec.password.is_some()
        }
        Err(_) => false,
    }
}

/// Asks for the connections, passwords and names until the draft validates.
async fn connections(draft: &mut Draft) -> anyhow::Result<Settings> {
    loop {
        draft.here = text("HERE, the live database:", &draft.here).await?;
        draft.there = text("THERE, the new database:", &draft.there).await?;
        draft.bucardo_db = text("Bucardo's control database:", &draft.bucardo_db).await?;
        if !has_password(
            &draft.here,
            draft.pg_password.as_ref(),
            draft.passfile.as_deref(),
        ) {
            draft.pg_password =
                password("Superuser password for HERE and THERE (PGPASSWORD):").await?;
        }
        if !has_password(
            &draft.bucardo_db,
            draft.bucardo_password.as_ref(),
            draft.passfile.as_deref(),
        ) {
            draft.bucardo_password = password("Password of Bucardo's role (BUCARDOPASS):").await?;
        }
        let names = format!(
            "Keep Bucardo's names (databases {} and {}, relgroup {}, dbgroup {}, sync {})?",
            draft.here_name, draft.there_name, draft.relgroup, draft.dbgroup, draft.sync
        );
        if !confirm(&names, true).await? {
            draft.here_name = text("Bucardo's name for HERE:", &draft.here_name).await?;
            draft.there_name = text("Bucardo's name for THERE:", &draft.there_name).await?;
            draft.relgroup = text("Relgroup:", &draft.relgroup).await?;
            draft.dbgroup = text("Dbgroup:", &draft.dbgroup).await?;
            draft.sync = text("Sync:", &draft.sync).await?;
        }
        let mut d = draft.clone();
        if d.tables.trim().is_empty() {
            d.tables = "all".into();
        }
        match d.build() {
            Ok(s) => return Ok(s),
            Err(e) => eprintln!("✗ {e}\n  Let's go through the settings again."),
        }
    }
}

/// Lists HERE's tables, says which cannot be replicated and why, and asks which to bootstrap.
async fn choose_tables(s: &Settings, draft: &Draft) -> anyhow::Result<Vec<TableInfo>> {
    let here = s
        .here
        .connect(Side::Here)
        .await
        .map_err(|e| anyhow::anyhow!(e.one_line()))?;
    let mut all = catalog::list_tables(&here, Side::Here, None)
        .await
        .map_err(|e| anyhow::anyhow!(e.one_line()))?;
    crate::engine::generated::opt_in(&mut all, s.convert_generated);
    let (eligible, ineligible): (Vec<TableInfo>, Vec<TableInfo>) =
        all.into_iter().partition(TableInfo::is_eligible);
    for t in &ineligible {
        eprintln!(
            "  ✗ {} cannot be replicated: {}",
            t.name,
            t.eligibility().err().unwrap_or_default()
        );
    }
    if eligible.is_empty() {
        anyhow::bail!("HERE has no table that Bucardo can replicate");
    }
    let wanted = match draft.tables.trim() {
        "" | "all" => None,
        list => crate::engine::ident::parse_table_list(list).ok(),
    };
    let defaults: Vec<usize> = eligible
        .iter()
        .enumerate()
        .filter(|(_, t)| wanted.as_ref().is_none_or(|w| w.contains(&t.name)))
        .map(|(i, _)| i)
        .collect();
    let labels: Vec<String> = eligible.iter().map(table_label).collect();
    let chosen = ask(move || {
        MultiSelect::new(
            "Tables to bootstrap (space toggles, → all, ← none, type to filter):",
            labels,
        )
        .with_default(&defaults)
        .with_page_size(15)
        .raw_prompt()
    })
    .await?;
    Ok(chosen
        .into_iter()
        .map(|o| eligible[o.index].clone())
        .collect())
}

/// `public.orders  (about 60.0k rows, 14.1 MB)`.
pub fn table_label(t: &TableInfo) -> String {
    format!(
        "{}  (about {} rows, {})",
        t.name,
        fmt_count(t.est_rows.max(0) as u64),
        fmt_bytes(t.total_bytes.max(0) as u64)
    )
}

async fn gate_prompt(text: String) -> GateReply {
    eprint!("{text}");
    let options = vec!["Proceed", "Skip this step", "Abort the run"];
    match ask(move || Select::new("Run this step?", options).prompt()).await {
        Ok("Proceed") => GateReply::Proceed,
        Ok("Skip this step") => GateReply::Skip,
        _ => GateReply::Abort,
    }
}

/// Drives the run, printing progress and asking at each gate.
async fn run_plan(plan: Plan, settings: Settings, mode: ConfirmMode) -> anyhow::Result<u8> {
    let started = Instant::now();
    let mut state = RunState::new(&plan, mode, &settings.names.sync, Duration::ZERO);
    let mut run = launch::start(plan, settings.clone(), mode, Interrupt::CtrlC)
        .map_err(|e| anyhow::anyhow!(e.one_line()))?;
    if let Some(hint) = launch::steer_by_signals(&settings, run.steer.clone()) {
        eprintln!("{hint}");
    }
    let mut copy = CopyLines::default();
    let mut here = text::HereLines::default();
    while let Some(ev) = run.events.recv().await {
        state.now = started.elapsed();
        if let RunEvent::Here(v) = &ev {
            if let Some(line) = here.line(&state, v) {
                eprintln!("{line}");
            }
        }
        let gate = match &ev {
            RunEvent::AwaitingConfirm { step } => Some(*step),
            _ => None,
        };
        state.apply(ev.clone());
        if let RunEvent::Copy(c) = &ev {
            for line in copy.lines(&state, c) {
                eprintln!("    {line}");
            }
        }
        if let Some(line) = text::event_line(&state, &ev) {
            eprintln!("{line}");
        }
        if let Some(step) = gate {
            let reply = gate_prompt(format!("\n{}", text::gate_text(&state, step))).await;
            if reply == GateReply::Abort {
                state.aborting = true;
            }
            let _ = run.gate.send(reply).await;
        }
    }
    let result = run.done.await?;
    let end = result.end.clone();
    state.result = Some(result);
    let stopped: Vec<String> = state
        .tables
        .iter()
        .filter(|p| p.status == TableStatus::Stopped)
        .map(|p| p.table.to_string())
        .collect();
    if !stopped.is_empty() {
        eprintln!("    stopped while copying: {}", stopped.join(", "));
    }
    if let Some(line) = text::here_summary(&state) {
        eprintln!("    {line}");
    }
    let mark = if end.exit_code() == 0 { "✓" } else { "✗" };
    eprintln!(
        "\n{mark} {} ({})\n  {}",
        text::headline(&state, &end),
        fmt_duration(started.elapsed()),
        text::db_state(&state)
    );
    if end.exit_code() == 0 {
        eprintln!(
            "  Watch it: bucardo-bootstrap status (same flags), or bucardo status {}",
            settings.names.sync
        );
    }
    Ok(end.exit_code())
}

/// An earlier run started this bootstrap: say what is done and left, check what still matters,
/// and offer to continue, to undo it, or to quit.
async fn resume(earlier: &Earlier, settings: &Settings) -> anyhow::Result<u8> {
    let s = earlier.settings(settings);
    let prepared = launch::prepare(&s, false)
        .await
        .map_err(|e| anyhow::anyhow!(e.one_line()))?;
    eprintln!("\nResuming: {}", earlier.journal_path.display());
    for line in text::resume_summary(&prepared.plan, &earlier.journal) {
        eprintln!("  {line}");
    }
    loop {
        eprintln!("\nChecks for resuming…");
        let findings = launch::checks(&s, true, None).await;
        eprint!("{}", text::findings_text(&findings));
        if !preflight::has_fail(&findings) {
            break;
        }
        if !confirm("Some checks fail. Fix them, then check again?", true).await? {
            return Ok(1);
        }
    }
    let options = vec![
        "Continue, confirming each step",
        "Continue, every step automatically",
        "Undo it (cleanup)",
        "Quit",
    ];
    let choice = ask(move || Select::new("What now?", options).prompt()).await?;
    match choice {
        "Continue, confirming each step" => run_plan(prepared.plan, s, ConfirmMode::EachStep).await,
        "Continue, every step automatically" => {
            run_plan(prepared.plan, s, ConfirmMode::Automatic).await
        }
        "Undo it (cleanup)" => {
            let plan = undo::plan(&s, false, false)
                .await
                .map_err(|e| anyhow::anyhow!(e.one_line()))?;
            eprint!("{}", plan.render(&s));
            if plan.actions.is_empty() || !confirm("Carry out this cleanup?", false).await? {
                eprintln!("nothing changed");
                return Ok(1);
            }
            undo::execute(&s, &plan)
                .await
                .map_err(|e| anyhow::anyhow!(e.one_line()))?;
            eprintln!("{}", undo::DONE);
            Ok(0)
        }
        _ => Ok(1),
    }
}

/// The plain flow; returns the exit status (0 done, 1 failed or declined, 130 aborted).
pub async fn run(mut draft: Draft) -> anyhow::Result<u8> {
    let (_guard, log_path) = crate::logging::init(&PathBuf::from(&draft.log_dir), "plain")?;
    eprintln!(
        "bucardo-bootstrap (plain prompts) · log: {}",
        log_path.display()
    );
    match flow(&mut draft).await {
        Err(e) if e.is::<Cancelled>() => {
            eprintln!("cancelled; nothing was changed after the last completed step");
            Ok(1)
        }
        other => other,
    }
}

async fn flow(draft: &mut Draft) -> anyhow::Result<u8> {
    let mut settings = connections(draft).await?;
    if let Some(earlier) = launch::find_earlier(&settings)
        .await
        .map_err(|e| anyhow::anyhow!(e.one_line()))?
    {
        return resume(&earlier, &settings).await;
    }
    let tables = loop {
        let tables = choose_tables(&settings, draft).await?;
        if tables.is_empty() {
            eprintln!("✗ choose at least one table");
            continue;
        }
        break tables;
    };
    draft.tables = tables
        .iter()
        .map(|t| t.name.sql())
        .collect::<Vec<_>>()
        .join(",");
    settings = draft.build().map_err(anyhow::Error::msg)?;
    loop {
        eprintln!("\nPreflight checks…");
        let findings = launch::checks(&settings, false, Some(&tables)).await;
        eprint!("{}", text::findings_text(&findings));
        if !preflight::has_fail(&findings) {
            break;
        }
        if !confirm(
            "Some checks fail and block the bootstrap. Fix them, then run the checks again?",
            true,
        )
        .await?
        {
            return Ok(1);
        }
    }
    eprintln!("\nBuilding the plan…");
    let plan = launch::prepare(&settings, false)
        .await
        .map_err(|e| anyhow::anyhow!(e.one_line()))?
        .plan;
    eprintln!();
    plan.write_review(&mut std::io::BufWriter::new(std::io::stderr().lock()))?;
    loop {
        let options = vec![
            "Run, confirming each step",
            "Run every step automatically",
            "Save the bash script",
            "Save a plan file (run --config)",
            "Quit without changing anything",
        ];
        let choice = ask(move || Select::new("What now?", options).prompt()).await?;
        let dir = settings.state_dir();
        match choice {
            "Run, confirming each step" => {
                return run_plan(plan, settings, ConfirmMode::EachStep).await
            }
            "Run every step automatically" => {
                return run_plan(plan, settings, ConfirmMode::Automatic).await
            }
            "Save the bash script" => {
                let path = dir.join(format!("bootstrap-{}.sh", plan.fingerprint));
                write_private(&path, &plan.script(&settings)).map_err(anyhow::Error::msg)?;
                eprintln!("✓ script saved (0600): {}", path.display());
            }
            "Save a plan file (run --config)" => {
                let path = dir.join(format!("plan-{}.toml", plan.fingerprint));
                write_private(&path, &crate::planfile::save(&settings)?)
                    .map_err(anyhow::Error::msg)?;
                eprintln!(
                    "✓ plan file saved: {} (replay: bucardo-bootstrap run --config FILE)",
                    path.display()
                );
            }
            _ => return Ok(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ident::TableName;
    use crate::engine::plan::{Step, StepKind};

    fn plan() -> Plan {
        let step = |id: usize, kind, title: &str| Step {
            id,
            kind,
            title: title.into(),
            why: "because".into(),
            commands: vec![crate::engine::plan::Command::Internal("copy it".into())],
            already_done: false,
        };
        let mut t = TableInfo {
            name: TableName::new("public", "orders"),
            est_rows: 1000,
            total_bytes: 1 << 20,
            ..Default::default()
        };
        t.key_kind = crate::engine::catalog::KeyKind::Primary;
        Plan {
            steps: vec![
                step(0, StepKind::AddSync, "Create the sync"),
                step(1, StepKind::CopyData, "Copy the data"),
            ],
            tables: vec![t],
            coverage: Default::default(),
            fingerprint: "f".into(),
            trigger_batch: 1,
            sequence_targets: None,
        }
    }

    #[test]
    fn gates_show_the_commands() {
        let p = plan();
        let run = RunState::new(&p, ConfirmMode::EachStep, "mysync", Duration::ZERO);
        let gate = text::gate_text(&run, 1);
        assert!(
            gate.contains("Step 2 of 2: Copy the data") && gate.contains("# copy it"),
            "{gate}"
        );
    }
}
