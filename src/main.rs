//! The binary: parses the command line, sets up logging, and hands over to a front end (the
//! wizard, plain prompts, or headless).

use anyhow::Context;
use bucardo_bootstrap::cli::{Cli, Cmd, ConnArgs, Draft};
use bucardo_bootstrap::engine::conn::ProcessEnv;
use bucardo_bootstrap::engine::exec::{self, LiveExecutor};
use bucardo_bootstrap::engine::settings::Settings;
use bucardo_bootstrap::{headless, logging};
use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
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
    Draft::from_args(args, &ProcessEnv).build().map_err(anyhow::Error::msg)
}

async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Some(Cmd::Run { conn, yes, config }) => {
            let args = conn.merged(&cli.conn);
            let s = match config {
                Some(file) => bucardo_bootstrap::planfile::load(&file, &args)?,
                None => settings(&args)?,
            };
            run(s, yes).await
        }
        Some(Cmd::Plan { conn, script, save }) => {
            let s = settings(&conn.merged(&cli.conn))?;
            let (_guard, _) = logging::init(&s.log_dir, "plan")?;
            let plan = exec::prepare(&s).await.map_err(|e| anyhow::anyhow!(e.one_line()))?;
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
        Some(Cmd::Verify { conn }) => {
            let s = settings(&conn.merged(&cli.conn))?;
            let (_guard, _) = logging::init(&s.log_dir, "verify")?;
            verify(&s).await
        }
        Some(Cmd::Demo { keep, scale }) => bucardo_bootstrap::demo::run(keep, scale, cli.plain).await,
        None => bucardo_bootstrap::tui::start(Draft::from_args(&cli.conn, &ProcessEnv), cli.plain).await,
    }
}

async fn run(s: Settings, yes: bool) -> anyhow::Result<u8> {
    if !yes && !std::io::stdin().is_terminal() {
        anyhow::bail!("run needs --yes when there is no terminal to confirm on");
    }
    let (_guard, log_path) = logging::init(&s.log_dir, "run")?;
    eprintln!("log: {}", log_path.display());
    let plan = exec::prepare(&s).await.map_err(|e| anyhow::anyhow!(e.one_line()))?;
    for (t, why) in &plan.excluded {
        eprintln!("left out {t}: {why}");
    }
    if !yes {
        print!("{}", plan.review_text());
        let go = inquire::Confirm::new("Run these steps now?").with_default(false).prompt()?;
        if !go {
            eprintln!("nothing changed");
            return Ok(1);
        }
    }
    let executor = LiveExecutor::new(s).map_err(|e| anyhow::anyhow!(e.one_line()))?;
    let result = headless::run(&plan, executor).await;
    if result.ok {
        Ok(0)
    } else if result.aborted {
        eprintln!("aborted; rerun the same command to try again (see the log: {})", log_path.display());
        Ok(130)
    } else {
        eprintln!("error: {}", result.error.unwrap_or_default());
        Ok(1)
    }
}

async fn verify(s: &Settings) -> anyhow::Result<u8> {
    let here = s.here.connect(bucardo_bootstrap::engine::conn::Side::Here).await.map_err(|e| anyhow::anyhow!(e.one_line()))?;
    let (tables, _) = exec::resolve_tables(s, &here).await.map_err(|e| anyhow::anyhow!(e.one_line()))?;
    let (etx, mut erx) = tokio::sync::mpsc::channel(1024);
    let cancel = tokio_util::sync::CancellationToken::new();
    let verdicts = exec::verify_tables(s, &tables, None, &etx, &cancel).await.map_err(|e| anyhow::anyhow!(e.one_line()))?;
    drop(etx);
    while erx.recv().await.is_some() {}
    let mut differ = 0;
    for v in &verdicts {
        let state = if v.matches { "identical" } else { differ += 1; "DIFFERENT" };
        println!("{}\t{state}\tHERE {} rows\tTHERE {} rows", v.table, v.here_rows, v.there_rows);
    }
    Ok(if differ == 0 { 0 } else { 1 })
}

fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}
