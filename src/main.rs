//! The binary: parses the command line, sets up logging, and hands over to a front end (the
//! wizard, plain prompts, or headless).

use anyhow::Context;
use bucardo_bootstrap::cli::{Cli, Cmd, ConnArgs, Draft};
use bucardo_bootstrap::engine::conn::ProcessEnv;
use bucardo_bootstrap::engine::event::StepOutcome;
use bucardo_bootstrap::engine::exec::{self, LiveExecutor};
use bucardo_bootstrap::engine::preflight;
use bucardo_bootstrap::engine::settings::Settings;
use bucardo_bootstrap::engine::verify::VerifyMode;
use bucardo_bootstrap::{headless, logging};
use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let msg = bucardo_bootstrap::engine::secret::redact(&format!("{e:#}"));
            eprintln!("error: {}", msg.replace('\n', " "));
            ExitCode::from(2)
        }
    }
}

fn settings(args: &ConnArgs) -> anyhow::Result<Settings> {
    Draft::from_args(args, &ProcessEnv)
        .build()
        .map_err(anyhow::Error::msg)
}

async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Some(Cmd::Run {
            conn,
            yes,
            config,
            restart,
        }) => {
            let args = conn.merged(&cli.conn);
            let s = match config {
                Some(file) => bucardo_bootstrap::planfile::load(&file, &args)?,
                None => settings(&args)?,
            };
            run(s, yes, restart).await
        }
        Some(Cmd::Check { conn }) => {
            let s = settings(&conn.merged(&cli.conn))?;
            let (_guard, _) = logging::init(&s.log_dir, "check")?;
            Ok(preflight::check_command(&s).await)
        }
        Some(Cmd::Plan { conn, script, save }) => {
            let s = settings(&conn.merged(&cli.conn))?;
            let (_guard, _) = logging::init(&s.log_dir, "plan")?;
            if !preflight_passes(&s, false).await? {
                return Ok(1);
            }
            let (plan, _journal) = exec::prepare(&s, false)
                .await
                .map_err(|e| anyhow::anyhow!(e.one_line()))?;
            print!("{}", plan.review_text());
            if let Some(path) = script {
                write_private(&path, &plan.script(&s))?;
                eprintln!("wrote {}", path.display());
            }
            if let Some(path) = save {
                write_private(&path, &bucardo_bootstrap::planfile::save(&s)?)?;
                eprintln!("wrote {}", path.display());
            }
            Ok(0)
        }
        Some(Cmd::Verify { conn, fast, deep }) => {
            let s = settings(&conn.merged(&cli.conn))?;
            let (_guard, _) = logging::init(&s.log_dir, "verify")?;
            let mode = if fast {
                VerifyMode::Fast
            } else if deep {
                VerifyMode::Deep
            } else {
                VerifyMode::Checksum
            };
            verify(&s, mode).await
        }
        Some(Cmd::Cleanup {
            conn,
            drop_data,
            yes,
        }) => {
            let s = settings(&conn.merged(&cli.conn))?;
            let (_guard, _) = logging::init(&s.log_dir, "cleanup")?;
            cleanup(&s, drop_data, yes).await
        }
        Some(Cmd::Copy { conn }) => {
            let s = settings(&conn.merged(&cli.conn))?;
            let (_guard, _) = logging::init(&s.log_dir, "copy")?;
            bucardo_bootstrap::engine::copy::copy_command(&s.here, &s.there, &s.tables, s.jobs)
                .await
        }
        Some(Cmd::Status { conn }) => {
            let s = settings(&conn.merged(&cli.conn))?;
            let st = bucardo_bootstrap::engine::status::read(&s)
                .await
                .map_err(|e| anyhow::anyhow!(e.one_line()))?;
            print!("{}", st.render(&s.names.sync));
            Ok(if st.healthy() { 0 } else { 1 })
        }
        Some(Cmd::Demo { keep, scale }) => {
            bucardo_bootstrap::demo::run(keep, scale, cli.plain).await
        }
        None => {
            bucardo_bootstrap::tui::start(Draft::from_args(&cli.conn, &ProcessEnv), cli.plain).await
        }
    }
}

async fn run(s: Settings, yes: bool, restart: bool) -> anyhow::Result<u8> {
    if !yes && !std::io::stdin().is_terminal() {
        anyhow::bail!("run needs --yes when there is no terminal to confirm on");
    }
    let (_guard, log_path) = logging::init(&s.log_dir, "run")?;
    eprintln!("log: {}", log_path.display());
    if restart && !yes {
        let go =
            inquire::Confirm::new("Forget what earlier runs of this plan finished and start over?")
                .with_default(false)
                .prompt()?;
        if !go {
            return Ok(1);
        }
    }
    if !preflight_passes(&s, restart).await? {
        return Ok(1);
    }
    let (plan, journal) = exec::prepare(&s, restart)
        .await
        .map_err(|e| anyhow::anyhow!(e.one_line()))?;
    for (t, why) in &plan.excluded {
        eprintln!("left out {t}: {why}");
    }
    if !journal.is_empty() {
        eprintln!("resuming from the journal {}", journal.path().display());
    }
    if !yes {
        print!("{}", plan.review_text());
        let go = inquire::Confirm::new("Run these steps now?")
            .with_default(false)
            .prompt()?;
        if !go {
            eprintln!("nothing changed");
            return Ok(1);
        }
    }
    let executor =
        LiveExecutor::new(s.clone(), journal).map_err(|e| anyhow::anyhow!(e.one_line()))?;
    let result = headless::run(&plan, executor).await;
    if result.ok {
        return Ok(0);
    }
    let reached = result
        .timings
        .iter()
        .filter(|(_, o, _)| matches!(o, StepOutcome::Done | StepOutcome::AlreadyDone))
        .map(|(id, _, _)| plan.steps[*id].kind)
        .collect::<Vec<_>>();
    eprintln!("state: {}", headless::state_after(&reached));
    if result.aborted {
        eprintln!("aborted. Run the same command again to resume, or `bucardo-bootstrap cleanup` with the same flags to undo.");
        Ok(130)
    } else {
        eprintln!("error: {}", result.error.unwrap_or_default());
        eprintln!("Fix the cause and run the same command again to resume, or `bucardo-bootstrap cleanup` with the same flags to undo. Log: {}", log_path.display());
        Ok(1)
    }
}

/// Preflight before anything changes. A plan that an earlier run started (its journal has
/// records) passed preflight then, and now legitimately has Bucardo names taken and rows on THERE,
/// so only a fresh plan is checked. Prints failures (and warnings) to stderr.
async fn preflight_passes(s: &Settings, restart: bool) -> anyhow::Result<bool> {
    if !restart
        && exec::resuming(s)
            .await
            .map_err(|e| anyhow::anyhow!(e.one_line()))?
    {
        return Ok(true);
    }
    let findings = preflight::run(s, None).await;
    if preflight::has_fail(&findings) {
        eprint!("{}", preflight::render(&findings));
        eprintln!("preflight failed: nothing was changed. Fix the failures above and run again.");
        return Ok(false);
    }
    for f in findings
        .iter()
        .filter(|f| f.severity == preflight::Severity::Warn)
    {
        eprintln!("warning: {}: {}", f.check, f.message);
    }
    Ok(true)
}

async fn verify(s: &Settings, mode: VerifyMode) -> anyhow::Result<u8> {
    let here = s
        .here
        .connect(bucardo_bootstrap::engine::conn::Side::Here)
        .await
        .map_err(|e| anyhow::anyhow!(e.one_line()))?;
    let (tables, _) = exec::resolve_tables(s, &here)
        .await
        .map_err(|e| anyhow::anyhow!(e.one_line()))?;
    let (etx, mut erx) = tokio::sync::mpsc::channel(1024);
    let cancel = tokio_util::sync::CancellationToken::new();
    let drain = tokio::spawn(async move { while erx.recv().await.is_some() {} });
    let report = exec::verify_command(s, &tables, mode, &etx, &cancel)
        .await
        .map_err(|e| anyhow::anyhow!(e.one_line()))?;
    drop(etx);
    let _ = drain.await;
    print!("{}", report.text);
    Ok(if report.differences == 0 { 0 } else { 1 })
}

async fn cleanup(s: &Settings, drop_data: bool, yes: bool) -> anyhow::Result<u8> {
    use bucardo_bootstrap::engine::settings::TableSelection;
    let tables = match &s.tables {
        TableSelection::List(l) => l.clone(),
        TableSelection::All => {
            let here = s
                .here
                .connect(bucardo_bootstrap::engine::conn::Side::Here)
                .await
                .map_err(|e| anyhow::anyhow!(e.one_line()))?;
            exec::resolve_tables(s, &here)
                .await
                .map_err(|e| anyhow::anyhow!(e.one_line()))?
                .0
                .into_iter()
                .map(|t| t.name)
                .collect()
        }
    };
    let plan = bucardo_bootstrap::engine::cleanup::plan(s, drop_data, &tables)
        .await
        .map_err(|e| anyhow::anyhow!(e.one_line()))?;
    print!("{}", plan.render(s));
    if plan.actions.is_empty() {
        return Ok(0);
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!("cleanup needs --yes when there is no terminal to confirm on");
        }
        if !inquire::Confirm::new("Carry out this cleanup?")
            .with_default(false)
            .prompt()?
        {
            eprintln!("nothing changed");
            return Ok(1);
        }
    }
    plan.execute(s)
        .await
        .map_err(|e| anyhow::anyhow!(e.one_line()))?;
    // The journal of this plan is obsolete once its objects are gone.
    for entry in std::fs::read_dir(s.state_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry.file_name().to_string_lossy().starts_with("journal-") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    eprintln!("cleanup done: no Bucardo trigger or delta table is left on HERE or THERE");
    Ok(0)
}

fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}
