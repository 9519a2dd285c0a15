//! Shared by the integration tests: a sandbox with the sample database, the flags that point the
//! real binary at it, and the test's own comparison SQL (independent of the tool's `verify`).

#![allow(dead_code)]

pub mod tmux;
pub mod writer;

use bucardo_bootstrap::engine::journal::JournalData;
use bucardo_bootstrap::sandbox::writer::{check_eventually, Writer, WriterReport};
use bucardo_bootstrap::sandbox::{self, data, Cluster, Sandbox, SandboxOptions};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BUCARDO_PASS: &str = "bucardo-test-pass-7";

pub fn sandbox_with_widgets(scale: u32) -> Sandbox {
    sandbox::require_tools().expect("PostgreSQL 15, PL/Perl and Bucardo must be installed");
    let sb = Sandbox::start(SandboxOptions::default()).expect("sandbox starts");
    data::load_widgets(&sb.here, "widgets", scale).expect("widgets loads");
    sb
}

/// [`sandbox_with_widgets`] with a writer on HERE playing the application, from the start.
pub async fn widgets_with_writer(scale: u32) -> (Sandbox, Writer) {
    let sb = tokio::task::spawn_blocking(move || sandbox_with_widgets(scale))
        .await
        .unwrap();
    let w = Writer::start(sb.here.pg_config("widgets"), "here", 10_000_000)
        .await
        .unwrap();
    (sb, w)
}

pub fn state_dir(sb: &Sandbox) -> PathBuf {
    sb.root.join("state")
}

/// The connection flags of `run`, `plan` and `verify` for this sandbox.
pub fn conn_flags(sb: &Sandbox, tables: &str) -> Vec<String> {
    let mut flags = db_flags(sb, "widgets");
    flags.extend(["--tables".into(), tables.into()]);
    // widgets' keyless audit_log cannot replicate: an operator who read `check` names it.
    if tables == "all" {
        flags.extend(["--leave-out".into(), "public.audit_log".into()]);
    }
    flags
}

/// The connection flags alone for database `db` on both sandbox clusters: no `--tables`, no
/// names; what `status` and `verify` make do with after a bootstrap.
pub fn db_flags(sb: &Sandbox, db: &str) -> Vec<String> {
    let mut flags = sb.tool_flags(db);
    flags.extend(["--kick-timeout".into(), "120".into()]);
    flags
}

/// The real binary, with passwords only in its environment and no ~/.pgpass to lean on.
pub fn tool(sb: &Sandbox) -> Command {
    let mut c = sb.tool_command(
        std::path::Path::new(env!("CARGO_BIN_EXE_bucardo-bootstrap")),
        BUCARDO_PASS,
    );
    c.env("BUCARDO_BOOTSTRAP_LOG", "debug");
    c
}

pub fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Row count and md5 of all rows in a stable order, by the test's own SQL.
pub fn table_digest(c: &Cluster, table_sql: &str) -> String {
    c.psql(
        "widgets",
        &format!("SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM ONLY {table_sql} t"),
    )
    .expect("digest")
    .trim()
    .to_string()
}

/// Every replicated table of widgets, as SQL names.
pub const REPLICATED: &[&str] = &[
    r#""Sales"."Order Items""#,
    "public.bar",
    "public.customers",
    "public.events",
    "public.foo",
    "public.orders",
];

/// Waits until every table has the same digest on both sides (replication is asynchronous).
pub fn wait_identical(sb: &Sandbox, timeout: std::time::Duration) -> Result<(), String> {
    wait_identical_tables(sb, REPLICATED, timeout)
}

/// [`wait_identical`] for the given tables of widgets.
pub fn wait_identical_tables(
    sb: &Sandbox,
    tables: &[&str],
    timeout: std::time::Duration,
) -> Result<(), String> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let diffs: Vec<String> = tables
            .iter()
            .filter_map(|t| {
                let (a, b) = (table_digest(&sb.here, t), table_digest(&sb.there, t));
                (a != b).then(|| format!("{t}: HERE {a} THERE {b}"))
            })
            .collect();
        if diffs.is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(diffs.join("\n"));
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// Runs a script `plan --script` wrote, as an operator would: bash, with only PATH, HOME and
/// the two passwords in its environment.
pub fn run_script(sb: &Sandbox, script: &std::path::Path) -> Output {
    Command::new("bash")
        .arg(script)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", sb.root.join("home"))
        .env("PGPASSWORD", &sb.password)
        .env("BUCARDOPASS", BUCARDO_PASS)
        .current_dir(&sb.root)
        .output()
        .unwrap()
}

/// The real binary running in the background, its stderr read line by line.
pub struct Running {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

pub fn spawn_run(sb: &Sandbox, extra: &[&str]) -> Running {
    spawn_run_env(sb, extra, &[])
}

/// [`spawn_run`] with extra environment variables.
pub fn spawn_run_env(sb: &Sandbox, extra: &[&str], env: &[(&str, &str)]) -> Running {
    let mut cmd = tool(sb);
    cmd.envs(env.iter().copied());
    cmd.arg("run")
        .arg("--yes")
        .args(conn_flags(sb, "all"))
        .args(extra);
    spawn_reading(cmd)
}

/// Starts `cmd` in the background, its stderr read line by line.
pub fn spawn_reading(mut cmd: Command) -> Running {
    cmd.stderr(Stdio::piped()).stdout(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Running {
        child,
        lines: rx,
        seen: vec![],
    }
}

impl Running {
    /// Waits for a stderr line containing `pat`; false if the tool exits first or time runs out.
    pub fn wait_for(&mut self, pat: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    let hit = line.contains(pat);
                    self.seen.push(line);
                    if hit {
                        return true;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return false,
            }
        }
        false
    }

    pub fn kill(mut self) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.seen.join("\n")
    }

    pub fn finish(mut self) -> (i32, String) {
        let status = self.child.wait().unwrap();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(l);
        }
        (status.code().unwrap_or(-1), self.seen.join("\n"))
    }
}

pub fn run_to_end(sb: &Sandbox, extra: &[&str]) -> (i32, String) {
    spawn_run(sb, extra).finish()
}

/// The journal of the sandbox's bootstrap, once written.
pub fn journal_data(sb: &Sandbox) -> Option<JournalData> {
    std::fs::read_dir(state_dir(sb))
        .ok()?
        .flatten()
        .find(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.starts_with("journal-") && n.ends_with(".json")
        })
        .and_then(|e| JournalData::read(&e.path()).ok())
}

pub async fn client(c: &bucardo_bootstrap::sandbox::Cluster) -> tokio_postgres::Client {
    client_db(c, "widgets").await
}

pub async fn client_db(
    c: &bucardo_bootstrap::sandbox::Cluster,
    db: &str,
) -> tokio_postgres::Client {
    let (client, conn) = c
        .pg_config(db)
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// The end state every fault test demands.
pub async fn assert_converged(sb: &Sandbox, report: &WriterReport) {
    let here = client(&sb.here).await;
    let there = client(&sb.there).await;
    check_eventually(report, &here, Duration::from_secs(60))
        .await
        .expect("writer's rows on HERE");
    check_eventually(report, &there, Duration::from_secs(90))
        .await
        .expect("writer's rows on THERE");
    tokio::task::block_in_place(|| wait_identical(sb, Duration::from_secs(90)))
        .expect("tables identical");
}
