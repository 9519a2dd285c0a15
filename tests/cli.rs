//! The command line without servers: refusals that must come before anything connects, and
//! the help: every flag and subcommand explained, examples last, no secret shown, `--version`.

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

/// Every command of the tool, the top level first, as clap builds them (global flags
/// propagated), without clap's own `help` subcommand.
fn all_commands() -> Vec<clap::Command> {
    use clap::CommandFactory;
    fn walk(cmd: &clap::Command, out: &mut Vec<clap::Command>) {
        out.push(cmd.clone());
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            walk(sub, out);
        }
    }
    let mut cmd = bucardo_bootstrap::cli::Cli::command();
    cmd.build();
    let mut out = Vec::new();
    walk(&cmd, &mut out);
    out
}

#[test]
fn every_flag_and_subcommand_says_what_it_does_and_every_command_ends_with_examples() {
    let commands = all_commands();
    assert!(commands.len() >= 9, "the tool and its 8 subcommands");
    for cmd in &commands {
        let name = cmd.get_name();
        let about = cmd.get_about().map(|a| a.to_string()).unwrap_or_default();
        assert!(!about.trim().is_empty(), "{name} has no about text");
        let after = cmd
            .get_after_help()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let examples = after
            .rsplit_once("Examples:\n")
            .map(|(_, e)| e)
            .unwrap_or_else(|| panic!("{name}: its help does not end with examples: {after:?}"));
        assert!(
            examples
                .lines()
                .any(|l| l.trim_start().starts_with("bucardo-bootstrap")
                    || l.contains(" bucardo-bootstrap")),
            "{name}: no command among its examples: {examples}"
        );
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            let help = arg
                .get_long_help()
                .or(arg.get_help())
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(!help.trim().is_empty(), "{name} --{id} has no help");
            let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values());
            if takes_value && arg.get_default_values().is_empty() {
                assert!(
                    help.contains("[default: "),
                    "{name} --{id}: its help does not say its default: {help}"
                );
            }
        }
    }
}

#[test]
fn help_shows_no_password_from_the_environment_and_ends_with_examples() {
    for cmd in all_commands() {
        let bin_name = cmd.get_bin_name().unwrap_or(cmd.get_name()).to_string();
        let words: Vec<&str> = bin_name.split(' ').skip(1).collect();
        let out = tool()
            .args(&words)
            .arg("--help")
            .env("PGPASSWORD", "pg-secret-4711")
            .env("BUCARDOPASS", "bucardo-secret-4712")
            .env("PGHOST", "envhost.example")
            .output()
            .unwrap();
        assert!(out.status.success(), "{bin_name} --help failed");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            !help.contains("secret-471") && !help.contains("envhost.example"),
            "{bin_name} --help shows an environment variable's value:\n{help}"
        );
        let examples = help
            .split_once("\nOptions:\n")
            .and_then(|(_, after)| after.rsplit_once("\nExamples:\n"))
            .map(|(_, examples)| examples)
            .unwrap_or_else(|| panic!("{bin_name} --help does not end with examples:\n{help}"));
        assert!(
            examples.contains("bucardo-bootstrap") && !examples.contains(":\n  -"),
            "{bin_name} --help does not end with examples:\n{examples}"
        );
    }
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let out = tool().arg("--version").output().unwrap();
    assert!(out.status.success());
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let commit = version
        .strip_prefix(concat!(
            "bucardo-bootstrap ",
            env!("CARGO_PKG_VERSION"),
            " ("
        ))
        .and_then(|v| v.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not `bucardo-bootstrap VERSION (COMMIT)`: {version:?}"));
    let dir = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let checkout = git(&["rev-parse", "--show-toplevel"])
        .is_some_and(|top| std::fs::canonicalize(top).ok() == std::fs::canonicalize(dir).ok());
    match git(&["rev-parse", "HEAD"]).filter(|_| checkout) {
        Some(head) => assert!(
            commit.len() >= 7 && head.starts_with(commit),
            "built from {commit}, HEAD is {head}"
        ),
        None => assert_eq!(commit, "unknown", "not in a git checkout"),
    }
}
