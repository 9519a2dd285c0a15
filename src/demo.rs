//! `bucardo-bootstrap demo`: two throwaway clusters with the sample `widgets` database on HERE,
//! a background writer playing production traffic, and the wizard opened pre-filled. Everything
//! is removed on exit unless `--keep`.

use crate::cli::{ConnArgs, Draft};
use crate::engine::conn::ProcessEnv;
use crate::engine::secret::Secret;
use crate::sandbox::{data, writer::Writer, Sandbox, SandboxOptions};
use anyhow::Context;

pub async fn run(keep: bool, scale: u32, plain: bool) -> anyhow::Result<u8> {
    crate::sandbox::require_tools()?;
    eprintln!("starting two throwaway PostgreSQL clusters...");
    let sandbox = tokio::task::spawn_blocking(move || {
        Sandbox::start(SandboxOptions {
            keep,
            ..Default::default()
        })
    })
    .await??;
    let here = sandbox.here.clone();
    eprintln!("loading the sample widgets database (scale {scale})...");
    tokio::task::spawn_blocking(move || data::load_widgets(&here, "widgets", scale)).await??;
    let writer = Writer::start(sandbox.here.pg_config("widgets"), "demo-writer", 10_000_000)
        .await
        .context("starting the demo writer")?;
    let draft = demo_draft(&sandbox);
    eprintln!(
        "HERE {}  THERE {}  (a writer is inserting, updating and deleting on HERE)",
        sandbox.here.uri("widgets"),
        sandbox.there.uri("widgets")
    );
    let code = crate::tui::start(draft, plain).await;
    let report = writer.stop().await;
    eprintln!(
        "demo writer: {} transactions committed on HERE during the demo",
        report.commits
    );
    if keep {
        eprintln!("kept: {}", sandbox.root.display());
    }
    drop(sandbox);
    code
}

/// The wizard's fields, pre-filled for the sandbox.
pub fn demo_draft(sb: &Sandbox) -> Draft {
    let mut d = Draft::from_args(&ConnArgs::default(), &ProcessEnv);
    d.here = sb.here.uri("widgets");
    d.there = sb.there.uri("widgets");
    d.bucardo_db = format!(
        "postgres://bucardo@{}:{}/bucardo",
        sb.here.host, sb.here.port
    );
    d.bucardo_piddir = sb.piddir.display().to_string();
    d.bucardo_logdir = sb.logdir.display().to_string();
    d.log_dir = sb.root.join("state").display().to_string();
    d.tables = "all".into();
    d.pg_password = Some(Secret::new(sb.password.clone()));
    d.bucardo_password = Some(Secret::new("demo-bucardo-pass"));
    d.here_name = "herewidgets".into();
    d.there_name = "therewidgets".into();
    d
}
