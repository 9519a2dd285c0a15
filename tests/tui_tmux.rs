//! End to end through the real terminal UI: the binary runs in a detached tmux session (120x40)
//! against throwaway sandbox clusters, and the test presses through Connect, Preflight, Tables,
//! Review and a confirm-each-step Run (answering Proceed at every gate) to the Done screen,
//! reading the screen with `capture-pane` as it goes. It checks the screens passed through
//! (connection test, gates with their commands, progress bars, the log pane, the verified end,
//! the live sync health), then that the databases hold the same rows by the test's own SQL and
//! that a write on either side reaches the other.
//!
//! Every wait polls the pane until a deadline; nothing sleeps for a fixed time as an assertion.

mod common;

use bucardo_bootstrap::sandbox::{self, data, Sandbox, SandboxOptions};
use common::tmux::Tmux;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const BUCARDO_PASS: &str = "bucardo-tmux-pass-5";
/// With `TUI_SCREENSHOTS=dir` set, keeps a capture as `dir/<name>.txt` (for the README).
fn save_screenshot(name: &str, screen: &str) {
    if let Some(dir) = std::env::var_os("TUI_SCREENSHOTS") {
        let path = PathBuf::from(dir).join(format!("{name}.txt"));
        std::fs::write(&path, screen).expect("writes the screenshot");
    }
}

/// The number in "Step N of M: proceed?" of the gate on screen.
fn gate_step(screen: &str) -> Option<(usize, usize)> {
    let at = screen.find("Step ")?;
    let rest = &screen[at + 5..];
    let (n, rest) = rest.split_once(" of ")?;
    let (m, rest) = rest.split_once(':')?;
    rest.trim_start().starts_with("proceed?").then_some(())?;
    Some((n.trim().parse().ok()?, m.trim().parse().ok()?))
}

#[test]
fn the_wizard_bootstraps_in_confirm_mode_through_tmux() {
    sandbox::require_tools().expect("PostgreSQL 15, PL/Perl and Bucardo must be installed");
    assert!(
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success()),
        "tmux is needed"
    );
    let sb = Sandbox::start(SandboxOptions::default()).expect("sandbox starts");
    data::load_widgets(&sb.here, "widgets", 1).expect("widgets loads");
    let mut argv: Vec<String> = vec![env!("CARGO_BIN_EXE_bucardo-bootstrap").into()];
    argv.extend(common::conn_flags(&sb, "all"));
    let env = common::tmux::wizard_env(&sb, BUCARDO_PASS);
    let started = Instant::now();
    let tmux = Tmux::start(&argv, &env);
    let short = Duration::from_secs(30);

    // Connect: pre-filled from the flags, passwords taken from the environment, never shown.
    let screen = tmux.wait("the Connect screen", short, |s| {
        s.contains("Connections (1/14)")
    });
    assert!(
        screen.contains("●●●●●● (from PGPASSWORD)") && screen.contains("●●●●●● (from BUCARDOPASS)"),
        "{screen}"
    );
    assert!(!screen.contains(&sb.password) && !screen.contains(BUCARDO_PASS));
    tmux.keys(&["t"]);
    // HERE answers as configured; THERE's database and Bucardo's role do not exist yet, so those
    // two answer through the fallback, as a warning.
    let screen = tmux.wait("the three connection tests", short, |s| {
        s.contains("✓ PostgreSQL 15") && s.matches("! PostgreSQL 15").count() == 2
    });
    assert!(
        screen.contains("connected as postgres (superuser)"),
        "{screen}"
    );
    save_screenshot("connect", &screen);
    assert!(
        screen.contains("FATAL: database \"widgets\"") && screen.contains("does not exist"),
        "{screen}"
    );

    // Preflight: nothing fails on a fresh sandbox.
    tmux.keys(&["n"]);
    let screen = tmux.wait("the preflight verdict", Duration::from_secs(60), |s| {
        s.contains("Nothing blocks") || s.contains("Fix the failing")
    });
    assert!(
        screen.contains("Nothing blocks the bootstrap"),
        "preflight fails on a fresh sandbox:\n{screen}"
    );
    tmux.keys(&["Enter"]);

    // Tables: every eligible table checked; the keyless one, which the flags' --leave-out names,
    // marked as left out knowingly.
    let screen = tmux.wait("the table list", short, |s| {
        s.contains(" selected · about ")
    });
    assert!(
        screen
            .lines()
            .any(|l| l.contains("[/] public") && l.contains("audit_log")),
        "{screen}"
    );
    assert!(
        screen.contains("[x] Sales") && screen.contains("Order Items"),
        "{screen}"
    );
    save_screenshot("tables", &screen);
    tmux.keys(&["Enter"]);

    // Review: the plan, then start confirming each step.
    let screen = tmux.wait("the plan", Duration::from_secs(60), |s| {
        s.contains("Review: ") && s.contains("steps ·")
    });
    assert!(
        screen.contains("secrets masked") && !screen.contains(BUCARDO_PASS),
        "{screen}"
    );
    tmux.keys(&["c"]);

    // Run: answer Proceed at every gate, watching what passes by.
    let mut gates = Vec::new();
    let mut saw_copy_gate = false;
    let mut saw_log_command = false;
    let mut last_gate = 0;
    let done = loop {
        // A gate counts once its buttons are drawn, and the Done screen once its footer (the
        // frame's last row) is: a capture can land in the middle of a frame.
        let screen = tmux.wait("a gate or the end", Duration::from_secs(240), |s| {
            (gate_step(s).is_some_and(|(n, _)| n > last_gate) && s.contains("[ Abort (a) ]"))
                || (s.contains("Bootstrap complete") && s.contains("Esc  run view"))
                || s.contains("Failed")
        });
        saw_log_command |= screen.contains("Log · ") && screen.contains("$ ");
        if screen.contains("Bootstrap complete") {
            break screen;
        }
        assert!(!screen.contains("✗ Failed"), "the run failed:\n{screen}");
        let (n, m) = gate_step(&screen).expect("a gate");
        assert!(
            screen.contains("[ Proceed (p) ]") && screen.contains("[ Abort (a) ]"),
            "{screen}"
        );
        assert!(
            screen.contains("Runs:") || screen.contains("(changes nothing)"),
            "the gate shows what runs:\n{screen}"
        );
        assert!(
            !screen.contains(&sb.password) && !screen.contains(BUCARDO_PASS),
            "{screen}"
        );
        if screen.contains("Copy the data") && screen.contains("COPY (SELECT") {
            saw_copy_gate = true;
            save_screenshot("run-confirm-gate", &screen);
        }
        gates.push((n, m));
        last_gate = n;
        tmux.keys(&["p"]);
    };
    let (_, total) = gates[0];
    assert_eq!(
        gates.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>(),
        "one gate per step, in order"
    );
    assert!(saw_copy_gate, "the copy's gate showed its COPY commands");
    assert!(saw_log_command, "the log pane showed the commands run");

    // Done: every table verified, the log's path, and the live health view.
    for t in [
        "public.foo",
        "public.bar",
        "public.customers",
        "public.orders",
        "public.events",
    ] {
        assert!(
            done.lines()
                .any(|l| l.contains(t) && l.contains("identical")),
            "{t} not verified:\n{done}"
        );
    }
    assert!(done.contains("Log: ") && done.contains("wizard-"), "{done}");
    let done = tmux.wait("the sync's health", short, |s| {
        s.contains("last good run  ✓")
    });
    assert!(
        done.contains("pending HERE") && done.contains("conflicts"),
        "{done}"
    );
    let bootstrap = started.elapsed();
    save_screenshot("done", &done);

    // Esc shows the run view again: every step done, full progress bars, the log pane.
    tmux.keys(&["Escape"]);
    let run_view = tmux.wait("the run view", short, |s| {
        s.contains("Steps ") && s.contains("Copy ")
    });
    let steps = format!("Steps {total}/{total}");
    assert!(run_view.contains(&steps), "every step done:\n{run_view}");
    assert!(run_view.contains("Copy 6/6 tables"), "{run_view}");
    assert!(
        run_view.contains("Total") && run_view.contains("100%  ████"),
        "full progress bars:\n{run_view}"
    );
    assert!(
        run_view.contains("Log · ") && run_view.contains("bucardo"),
        "the log pane:\n{run_view}"
    );
    save_screenshot("run-finished", &run_view);
    tmux.keys(&["Enter"]);
    tmux.wait("the Done screen again", short, |s| {
        s.contains("Bootstrap complete")
    });

    // The databases converge by the test's own comparison, and replicate both ways.
    common::wait_identical(&sb, Duration::from_secs(60)).expect("HERE and THERE converge");
    sb.there
        .psql(
            "widgets",
            "INSERT INTO public.foo (name, value) VALUES ('written on THERE', 42)",
        )
        .unwrap();
    sb.here
        .psql(
            "widgets",
            "UPDATE public.bar SET qty = qty + 1000 WHERE id = (SELECT min(id) FROM public.bar)",
        )
        .unwrap();
    common::wait_identical(&sb, Duration::from_secs(60)).expect("HERE and THERE converge");
    let on_here = sb
        .here
        .psql(
            "widgets",
            "SELECT count(*) FROM public.foo WHERE name = 'written on THERE'",
        )
        .unwrap();
    assert_eq!(on_here.trim(), "1", "THERE's write reached HERE");

    // q on Done quits with status 0 and restores the terminal.
    tmux.keys(&["q"]);
    let end = tmux.wait("the wizard to exit", short, |s| s.contains("WIZARD-EXIT="));
    assert!(end.contains("WIZARD-EXIT=0"), "{end}");
    assert!(
        !end.contains("Connections (") && end.contains("log: "),
        "the alternate screen is left:\n{end}"
    );
    eprintln!(
        "tmux e2e: {} gates, bootstrap through the UI in {:.1} s",
        gates.len(),
        bootstrap.as_secs_f64()
    );
}
