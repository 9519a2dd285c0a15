//! The command line without servers: refusals that must come before anything connects.

use std::process::{Command, Stdio};

fn tool() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bucardo-bootstrap"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .stdin(Stdio::null());
    c
}

/// HERE and THERE on ports where nothing listens.
const NOWHERE: [&str; 4] = [
    "--here",
    "postgres://u@127.0.0.1:1/a",
    "--there",
    "postgres://u@127.0.0.1:2/a",
];

#[test]
fn run_without_yes_and_without_a_terminal_refuses_instead_of_hanging() {
    let out = tool()
        .arg("run")
        .args(NOWHERE)
        .args(["--tables", "all"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn missing_table_selection_says_what_to_write() {
    let out = tool().arg("plan").args(NOWHERE).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--tables schema.table") && err.contains("--tables all"),
        "{err}"
    );
}

#[test]
fn a_command_that_logs_nothing_leaves_no_empty_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = tool()
        .arg("plan")
        .args(NOWHERE)
        .args(["--tables", "all", "--log-dir"])
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "nothing listens on ports 1 and 2");
    let empty: Vec<String> = std::fs::read_dir(dir.path().join("state"))
        .unwrap()
        .flatten()
        .filter(|e| e.metadata().is_ok_and(|m| m.is_file() && m.len() == 0))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(empty.is_empty(), "empty files left: {empty:?}");
}

#[test]
fn commands_on_an_existing_bootstrap_do_not_ask_for_tables_but_say_when_none_are_known() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let nowhere_control = ["--bucardo-db", "postgres://bucardo@127.0.0.1:3/bucardo"];
    // No sync to read and no journal: verify says what to give.
    let bare = |cmd: &str| {
        tool()
            .arg(cmd)
            .args(NOWHERE)
            .args(nowhere_control)
            .arg("--log-dir")
            .arg(&state)
            .output()
            .unwrap()
    };
    let out = bare("verify");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("knows this bootstrap's tables") && err.contains("--tables all"),
        "{err}"
    );
    // status and cleanup get as far as the servers, which do not answer.
    for cmd in ["status", "cleanup"] {
        let out = bare(cmd);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {err}");
        assert!(!err.contains("no tables chosen"), "{cmd}: {err}");
    }
}
