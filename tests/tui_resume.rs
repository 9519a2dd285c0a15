//! Resuming a bootstrap across front ends, through the real binary: the wizard in tmux and the
//! headless `run --yes`, with a writer on HERE the whole time. Each test stops a run once the
//! journal records a table copied (an explicit state, not a moment), then finishes it from the
//! other front end (or the wizard again), and demands identical tables holding every write the
//! writer committed.
//!
//! Where the stop lands after that record (in the copy or a step later) depends on the machine;
//! every assertion here holds for both.

mod common;

use bucardo_bootstrap::sandbox::writer::Writer;
use bucardo_bootstrap::sandbox::Sandbox;
use common::tmux::Tmux;
use common::*;
use std::time::{Duration, Instant};

/// Big enough that the copy takes a while with one worker.
const SCALE: u32 = 4;
const SHORT: Duration = Duration::from_secs(30);

async fn setup() -> (Sandbox, Writer) {
    widgets_with_writer(SCALE).await
}

/// The wizard on the sandbox, every field filled from the flags and the environment.
fn wizard(sb: &Sandbox) -> Tmux {
    let mut argv: Vec<String> = vec![env!("CARGO_BIN_EXE_bucardo-bootstrap").into()];
    argv.extend(conn_flags(sb, "all"));
    argv.extend(["--jobs".into(), "1".into()]);
    Tmux::start(&argv, &common::tmux::wizard_env(sb, BUCARDO_PASS))
}

/// Waits until the journal records a table whose copy committed on THERE.
fn wait_for_a_copied_table(sb: &Sandbox) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while journal_data(sb).is_none_or(|j| j.tables_done.is_empty()) {
        assert!(Instant::now() < deadline, "no table was copied");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts the run stopped before it finished: the journal lacks the last steps.
fn assert_unfinished(sb: &Sandbox) {
    let j = journal_data(sb).expect("a journal");
    let done: Vec<String> = j.steps_done.iter().map(|s| format!("{s:?}")).collect();
    assert!(
        done.iter().any(|s| s == "AddSync") && !done.iter().any(|s| s == "Verify"),
        "stopped between the sync's creation and the end: {done:?}"
    );
}

/// The wizard, started again with the same flags, resumes: the Resume screen says what is done
/// and left, its checks pass, and `r` runs the rest to the Done screen.
fn resume_in_the_wizard(sb: &Sandbox) -> String {
    let tmux = wizard(sb);
    tmux.wait("the Connect screen", SHORT, |s| {
        s.contains("Connections (1/14)")
    });
    tmux.keys(&["n"]);
    let screen = tmux.wait("the Resume screen, checked", Duration::from_secs(90), |s| {
        s.contains("An earlier run of this bootstrap is unfinished")
            && (s.contains("c: continue, confirming each step") || s.contains("Fix the failing"))
    });
    assert!(
        screen.contains("c: continue, confirming each step"),
        "the resume checks pass:\n{screen}"
    );
    assert!(
        screen.contains("An earlier run of this bootstrap finished")
            && screen.contains(", the last: ")
            && screen.contains("Left: "),
        "{screen}"
    );
    // Only what still matters is checked: nothing about names taken or rows on THERE.
    assert!(
        screen.contains("connect: postgres://")
            && screen.contains(" answers")
            && !screen.contains("already holds rows")
            && !screen.contains("already has"),
        "{screen}"
    );
    assert!(
        screen.contains(" Resume › "),
        "the breadcrumb says Resume:\n{screen}"
    );
    tmux.keys(&["r"]);
    let done = tmux.wait(
        "the end of the resumed run",
        Duration::from_secs(400),
        // The whole Done frame: its footer is the last row drawn.
        |s| {
            (s.contains("Bootstrap complete") || s.contains("The bootstrap failed"))
                && s.contains("Esc  run view")
        },
    );
    assert!(done.contains("Bootstrap complete"), "{done}");
    assert!(
        done.contains("(earlier)") || done.lines().any(|l| l.contains("identical")),
        "{done}"
    );
    tmux.keys(&["q"]);
    let end = tmux.wait("the wizard to exit", SHORT, |s| s.contains("WIZARD-EXIT="));
    assert!(end.contains("WIZARD-EXIT=0"), "{end}");
    done
}

/// The wizard starts an automatic run and is quit (q, y) once a table is copied.
fn start_in_the_wizard_and_quit(sb: &Sandbox) {
    let tmux = wizard(sb);
    tmux.wait("the Connect screen", SHORT, |s| {
        s.contains("Connections (1/14)")
    });
    tmux.keys(&["n"]);
    tmux.wait("the preflight verdict", Duration::from_secs(90), |s| {
        s.contains("Nothing blocks the bootstrap")
    });
    tmux.keys(&["Enter"]);
    tmux.wait("the table list", SHORT, |s| {
        s.contains(" selected · about ")
    });
    tmux.keys(&["Enter"]);
    tmux.wait("the plan", Duration::from_secs(60), |s| {
        s.contains("Review: ") && s.contains("steps ·")
    });
    tmux.keys(&["r"]);
    tokio::task::block_in_place(|| wait_for_a_copied_table(sb));
    tmux.keys(&["q"]);
    tmux.wait("the quit prompt", SHORT, |s| {
        s.contains("Quit during a run?") && s.contains("y  yes, abort")
    });
    tmux.keys(&["y"]);
    let end = tmux.wait("the wizard to exit", Duration::from_secs(120), |s| {
        s.contains("WIZARD-EXIT=")
    });
    assert!(end.contains("WIZARD-EXIT=130"), "quit during a run: {end}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_wizard_quit_mid_copy_resumes_its_own_run() {
    let (sb, w) = setup().await;
    start_in_the_wizard_and_quit(&sb);
    assert_unfinished(&sb);
    tokio::task::block_in_place(|| resume_in_the_wizard(&sb));
    let report = w.stop().await;
    assert_converged(&sb, &report).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_headless_run_killed_mid_copy_is_finished_by_the_wizard() {
    let (sb, w) = setup().await;
    let r = spawn_run(&sb, &["--jobs", "1"]);
    tokio::task::block_in_place(|| wait_for_a_copied_table(&sb));
    tokio::task::block_in_place(|| r.kill());
    assert_unfinished(&sb);
    tokio::task::block_in_place(|| resume_in_the_wizard(&sb));
    let report = w.stop().await;
    assert_converged(&sb, &report).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wizard_run_quit_mid_copy_is_finished_headless() {
    let (sb, w) = setup().await;
    start_in_the_wizard_and_quit(&sb);
    assert_unfinished(&sb);
    let (code, out) = tokio::task::block_in_place(|| run_to_end(&sb, &["--jobs", "1"]));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("resuming from the journal") && out.contains("(done in an earlier run)"),
        "{out}"
    );
    let report = w.stop().await;
    assert_converged(&sb, &report).await;
}
