//! The terminal and the one event loop. The terminal is owned here: entered with
//! `ratatui::try_init`, left with `ratatui::restore` on every path (a guard's `Drop`, and a panic
//! hook that restores, writes the panic to the log file and exits). The loop is a single
//! `tokio::select!` over terminal events, the wizard's message channel and a frame tick: every
//! message goes through `update`, bursts are drained, and the screen is drawn at most once per
//! frame, only when something changed.

use crate::tui::app::{update, App, Msg};
use crate::tui::effects::Effects;
use futures_util::{Stream, StreamExt};
use ratatui::backend::Backend;
use ratatui::{DefaultTerminal, Terminal};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

/// At most one frame per this interval (about 30 frames a second).
pub const FRAME_INTERVAL: Duration = Duration::from_millis(33);

/// Capacity of the wizard's message channel (effect results and runner events).
pub const MSG_CHANNEL_CAPACITY: usize = 1024;

/// Restores the terminal when dropped.
pub struct TerminalGuard(());

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Enters the alternate screen in raw mode and installs the panic hook. Keep the guard alive for
/// as long as the wizard runs.
pub fn enter(log_path: &Path) -> anyhow::Result<(DefaultTerminal, TerminalGuard)> {
    let terminal = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            ratatui::restore();
            anyhow::bail!("cannot take over the terminal ({e}); use --plain, or `run --yes` for a headless run");
        }
    };
    install_panic_hook(log_path.to_path_buf());
    Ok((terminal, TerminalGuard(())))
}

/// ratatui's hook (installed by `try_init`) restores the terminal and prints the panic; this one
/// wraps it, also appends the panic to the log file synchronously (the non-blocking log writer
/// would not flush), and exits: a panic in a spawned task must not leave a TUI running on a
/// restored terminal.
fn install_panic_hook(log_path: PathBuf) {
    let restore_and_print = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_and_print(info);
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&log_path) {
            let _ = writeln!(f, "PANIC: {info}");
        }
        eprintln!("the wizard crashed; details in {}", log_path.display());
        std::process::exit(101);
    }));
}

fn dispatch(app: &mut App, effects: &mut Effects, msg: Msg) {
    for effect in update(app, msg) {
        if effects.perform(effect) {
            app.quit = true;
        }
    }
}

/// Runs the wizard until it quits. Generic over the backend and the event source so that tests
/// can drive it with a `TestBackend` and scripted events; `clock` is the injected time.
pub async fn run<B, S>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    events: &mut S,
    effects: &mut Effects,
    rx: &mut mpsc::Receiver<Msg>,
    clock: impl Fn() -> Duration,
) -> anyhow::Result<()>
where
    B: Backend,
    B::Error: std::error::Error + Send + Sync + 'static,
    S: Stream<Item = io::Result<crossterm::event::Event>> + Unpin,
{
    let mut frame = tokio::time::interval(FRAME_INTERVAL);
    frame.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut dirty = true;
    let mut last_animation = None;
    while !app.quit {
        tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(ev)) => {
                    if let Some(msg) = Msg::from_term(&ev) {
                        dispatch(app, effects, msg);
                        dirty = true;
                    }
                }
                Some(Err(e)) => return Err(anyhow::Error::new(e).context("reading the terminal")),
                None => break,
            },
            Some(msg) = rx.recv() => {
                dispatch(app, effects, msg);
                dirty = true;
            }
            _ = frame.tick() => {
                dispatch(app, effects, Msg::Tick(clock()));
                let animation = app.animation_frame();
                if animation != last_animation {
                    last_animation = animation;
                    dirty = true;
                }
                if dirty && !app.quit {
                    terminal.draw(|f| f.render_widget(&*app, f.area()))?;
                    dirty = false;
                }
            }
        }
        while let Ok(msg) = rx.try_recv() {
            dispatch(app, effects, msg);
            dirty = true;
        }
    }
    Ok(())
}
