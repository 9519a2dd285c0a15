//! The full-screen ratatui wizard over the engine: Connect, Preflight, Tables, Review, Run, Done.
//!
//! - [`app`]: the state, [`app::Msg`], [`app::Effect`] and the pure `update`;
//! - [`chrome`]: title, status line, key hints, help overlay and prompts around a screen;
//! - [`screens`]: one module per screen, each `impl Widget for &XxxState`;
//! - [`effects`]: performs effects as tokio tasks that report back with messages;
//! - [`event_loop`]: owns the terminal and runs the single `select!` loop;
//! - [`theme`] and [`widgets`]: styles (NO_COLOR aware) and shared pieces.

pub mod app;
pub mod chrome;
pub mod effects;
pub mod event_loop;
pub mod screens;
pub mod theme;
pub mod widgets;

use crate::cli::Draft;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

/// Opens the wizard (or, with `plain`, the prompts) pre-filled from `draft`; returns the exit
/// status: 0 done (or nothing run), 1 failed, 130 aborted.
pub async fn start(draft: Draft, plain: bool) -> anyhow::Result<u8> {
    if plain {
        return crate::plain::run(draft).await;
    }
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        anyhow::bail!(
            "the wizard needs a terminal: use --plain, or `run --yes` for a headless run"
        );
    }
    let (_log_guard, log_path) = crate::logging::init(&PathBuf::from(&draft.log_dir), "wizard")?;
    tracing::info!("wizard started");
    let mut app = app::App::new(draft, theme::Theme::from_env(), Some(log_path.clone()));
    let (tx, mut rx) = tokio::sync::mpsc::channel(event_loop::MSG_CHANNEL_CAPACITY);
    let mut effects = effects::Effects::new(tx);
    let started = Instant::now();
    let result = {
        let (mut terminal, _terminal_guard) = event_loop::enter(&log_path)?;
        let mut events = crossterm::event::EventStream::new();
        event_loop::run(
            &mut terminal,
            &mut app,
            &mut events,
            &mut effects,
            &mut rx,
            || started.elapsed(),
        )
        .await
    };
    // The terminal is restored here; printing is safe again.
    let code = app.exit_code();
    tracing::info!("wizard exits with status {code}");
    result?;
    eprintln!("log: {}", log_path.display());
    Ok(code)
}
