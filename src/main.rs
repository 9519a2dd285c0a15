//! The binary: parses the command line, sets up logging, and hands over to a front end (the
//! wizard, plain prompts, or headless).

use bucardo_bootstrap::cli::{Cli, Cmd, ConnArgs, Draft};
use bucardo_bootstrap::engine::conn::ProcessEnv;
use bucardo_bootstrap::engine::exec;
use bucardo_bootstrap::engine::files::write_private;
use bucardo_bootstrap::engine::preflight;
use bucardo_bootstrap::engine::settings::Settings;
use bucardo_bootstrap::engine::verify::VerifyMode;
use bucardo_bootstrap::session::{existing, launch, text, undo};
use bucardo_bootstrap::{headless, logging};
use clap::{CommandFactory, FromArgMatches};
use std::io::IsTerminal;
use std::process::ExitCode;

/// `--version`: the package's version and the commit it was built from (`build.rs`).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("BUCARDO_BOOTSTRAP_COMMIT"),
    ")"
);

/// The command line with the full version: what this binary parses, and what its man pages
/// and completions are generated from.
fn command() -> clap::Command {
    Cli::command().version(VERSION)
}

fn main() -> ExitCode {
    let matches = command()
        .subcommand(bucardo_bootstrap::docs::generate_subcommand())
        .get_matches();
    if let Some(("generate", m)) = matches.subcommand() {
        return match bucardo_bootstrap::docs::generate(command(), m) {
            Ok(written) => {
                for path in written {
                    println!("{}", path.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
    }
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    one_malloc_arena();
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

/// glibc gives each thread that allocates its own arena, and what one thread frees stays with
/// its arena: at 10,000 tables the catalog and plan, built on the runtime's threads, left the
/// process 15 MB larger than with one arena (measured, `plan`). The copy's two workers share it
/// without showing it: the copy stayed at 0.41-0.51 of the seed's pipeline at 1 and 4 GB.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of glibc's allocator; it is called before any thread
    // of ours starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

fn settings(args: &ConnArgs) -> anyhow::Result<Settings> {
    Draft::from_args(args, &ProcessEnv)
        .build()
        .map_err(anyhow::Error::msg)
}

/// Settings for `status`, `verify` and `cleanup`: without `--tables`, the bootstrap's own tables.
fn existing_settings(args: &ConnArgs) -> anyhow::Result<Settings> {
    Draft::from_args(args, &ProcessEnv)
        .build_existing()
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
            let findings = preflight::run(&s, None).await;
            print!("{}", text::findings_text(&findings));
            Ok(u8::from(preflight::has_fail(&findings)))
        }
        Some(Cmd::Plan { conn, script, save }) => {
            let s = settings(&conn.merged(&cli.conn))?;
            let (_guard, _) = logging::init(&s.log_dir, "plan")?;
            let there = preflight::start_there(&s);
            let catalog = launch::read_catalog(&s)
                .await
                .map_err(|e| anyhow::anyhow!(e.one_line()))?;
            let resuming = launch::resuming_in(&s, &catalog, false)
                .map_err(|e| anyhow::anyhow!(e.one_line()))?;
            let Some(checked) = checks_pass(&s, resuming, &catalog, there).await else {
                return Ok(1);
            };
            let plan = launch::prepare_in(&s, catalog, checked.there.as_ref(), false)
                .await
                .map_err(|e| anyhow::anyhow!(e.one_line()))?
                .plan;
            plan.write_review(&mut std::io::BufWriter::new(std::io::stdout().lock()))?;
            if let Some(path) = script {
                write_private(&path, &plan.script(&s)).map_err(anyhow::Error::msg)?;
                eprintln!("wrote {}", path.display());
            }
            if let Some(path) = save {
                write_private(&path, &bucardo_bootstrap::planfile::save(&s)?)
                    .map_err(anyhow::Error::msg)?;
                eprintln!("wrote {}", path.display());
            }
            Ok(0)
        }
        Some(Cmd::Verify { conn, fast, deep }) => {
            let s = existing_settings(&conn.merged(&cli.conn))?;
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
            all,
            yes,
        }) => {
            let s = existing_settings(&conn.merged(&cli.conn))?;
            let (_guard, _) = logging::init(&s.log_dir, "cleanup")?;
            cleanup(&s, drop_data, all, yes).await
        }
        Some(Cmd::Copy { conn }) => {
            let s = settings(&conn.merged(&cli.conn))?;
            let (_guard, _) = logging::init(&s.log_dir, "copy")?;
            bucardo_bootstrap::copy_cmd::run(&s.here, &s.there, &s.tables, s.jobs).await
        }
        Some(Cmd::Status { conn }) => {
            let s = existing_settings(&conn.merged(&cli.conn))?;
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
    let there = preflight::start_there(&s);
    let catalog = launch::read_catalog(&s)
        .await
        .map_err(|e| anyhow::anyhow!(e.one_line()))?;
    let resuming =
        launch::resuming_in(&s, &catalog, restart).map_err(|e| anyhow::anyhow!(e.one_line()))?;
    let Some(checked) = checks_pass(&s, resuming, &catalog, there).await else {
        return Ok(1);
    };
    let prepared = launch::prepare_in(&s, catalog, checked.there.as_ref(), restart)
        .await
        .map_err(|e| anyhow::anyhow!(e.one_line()))?;
    let plan = prepared.plan;
    for line in plan.coverage.report() {
        eprintln!("{line}");
    }
    if resuming {
        eprintln!(
            "resuming from the journal {}",
            prepared.journal.path().display()
        );
        for line in text::resume_summary(&plan, &prepared.journal.data) {
            eprintln!("  {line}");
        }
    }
    if !yes {
        plan.write_review(&mut std::io::BufWriter::new(std::io::stdout().lock()))?;
        let go = inquire::Confirm::new("Run these steps now?")
            .with_default(false)
            .prompt()?;
        if !go {
            eprintln!("nothing changed");
            return Ok(1);
        }
    }
    headless::run(plan, s, &log_path.display().to_string())
        .await
        .map_err(|e| anyhow::anyhow!(e.one_line()))
}

/// The checks before anything changes: the whole preflight for a new bootstrap, only what still
/// matters for one an earlier run started. Prints failures (and warnings) to stderr. None when a
/// check failed; else what the checks learned, for the plan.
async fn checks_pass(
    s: &Settings,
    resuming: bool,
    catalog: &bucardo_bootstrap::engine::coverage::Catalog,
    there: preflight::ThereAhead,
) -> Option<preflight::Outcome> {
    let outcome = launch::checks_in(s, resuming, catalog, Some(there)).await;
    let findings = &outcome.findings;
    if preflight::has_fail(findings) {
        eprint!("{}", text::findings_text(findings));
        eprintln!("preflight failed: nothing was changed. Fix the failures above and run again.");
        return None;
    }
    for f in findings
        .iter()
        .filter(|f| f.severity == preflight::Severity::Warn)
    {
        eprintln!("warning: {}: {}", f.check, f.message);
    }
    Some(outcome)
}

async fn verify(s: &Settings, mode: VerifyMode) -> anyhow::Result<u8> {
    let s = &existing::with_bootstrap_tables(s)
        .await
        .map_err(|e| anyhow::anyhow!(e.one_line()))?;
    let here = s
        .here
        .connect(bucardo_bootstrap::engine::conn::Side::Here)
        .await
        .map_err(|e| anyhow::anyhow!(e.one_line()))?;
    // The bootstrap's tables as they are: a foreign key to a table it left out is preflight's
    // business, not verify's.
    let tables = exec::select_tables(s, &here)
        .await
        .map_err(|e| anyhow::anyhow!(e.one_line()))?
        .chosen;
    if tables.is_empty() {
        anyhow::bail!("none of the bootstrap's tables exists on HERE");
    }
    let (etx, mut erx) = tokio::sync::mpsc::channel(1024);
    let cancel = tokio_util::sync::CancellationToken::new();
    let drain = tokio::spawn(async move { while erx.recv().await.is_some() {} });
    // HERE is production: the comparison keeps to the governor like the bootstrap's does.
    let governor_stop = tokio_util::sync::CancellationToken::new();
    let pace = if s.governor.enabled {
        bucardo_bootstrap::engine::governor::probe::spawn(
            s.here.clone(),
            s.governor,
            1,
            None,
            etx.clone(),
            governor_stop.clone(),
        )
        .pace
    } else {
        bucardo_bootstrap::engine::governor::Pace::unlimited()
    };
    let report = exec::verify_command(s, &tables, mode, &pace, &etx, &cancel).await;
    governor_stop.cancel();
    let report = report.map_err(|e| anyhow::anyhow!(e.one_line()))?;
    drop(etx);
    let _ = drain.await;
    print!("{}", report.text);
    Ok(if report.differences == 0 { 0 } else { 1 })
}

async fn cleanup(s: &Settings, drop_data: bool, all: bool, yes: bool) -> anyhow::Result<u8> {
    let plan = undo::plan(s, drop_data, all)
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
    undo::execute(s, &plan)
        .await
        .map_err(|e| anyhow::anyhow!(e.one_line()))?;
    eprintln!("{}", undo::DONE);
    if all && plan.forget_created {
        eprintln!("{}", undo::DONE_ALL);
    }
    Ok(0)
}
