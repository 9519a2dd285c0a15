//! Fault tests against real PostgreSQL and Bucardo. In each one a writer keeps writing on HERE
//! the whole time, something goes wrong mid-bootstrap, and the end state must still be identical
//! tables with every committed write present on both sides.

mod common;

use bucardo_bootstrap::sandbox::writer::Writer;
use bucardo_bootstrap::sandbox::Sandbox;
use common::*;
use std::time::Duration;

/// Big enough that the copy takes a while with one worker.
const SCALE: u32 = 4;

fn journal_steps(sb: &Sandbox) -> String {
    std::fs::read_dir(state_dir(sb))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("journal-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect()
}

async fn setup() -> (Sandbox, Writer) {
    widgets_with_writer(SCALE).await
}

const JOBS_1: &[&str] = &["--jobs", "1"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_copy_then_rerun_resumes() {
    let (sb, w) = setup().await;
    let mut r = spawn_run(&sb, JOBS_1);
    assert!(
        r.wait_for("rows, ", Duration::from_secs(120)),
        "the copy started a table"
    );
    let out = tokio::task::block_in_place(|| r.kill());
    let journal = journal_steps(&sb);
    assert!(
        journal.contains("AddSync") && !journal.contains("CopyData"),
        "killed mid-copy: {journal}\n{out}"
    );
    assert!(journal.contains("tables_done"), "{journal}");
    let (code, out) = tokio::task::block_in_place(|| run_to_end(&sb, &[]));
    assert_eq!(code, 0, "the rerun finishes: {out}");
    assert!(
        out.contains("done in an earlier run"),
        "the rerun resumed: {out}"
    );
    let report = w.stop().await;
    assert_converged(&sb, &report).await;
}

/// Tables split into 1 MB key ranges (indexes not deferred, so that every table can split).
const SPLIT_SMALL: &[(&str, &str)] = &[
    ("BUCARDO_BOOTSTRAP_COPY_SPLIT_MB", "1"),
    ("BUCARDO_BOOTSTRAP_COPY_DEFER_INDEXES", "0"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_split_table_then_rerun_copies_only_its_missing_ranges() {
    let (sb, w) = setup().await;
    let mut r = spawn_run_env(&sb, &["--jobs", "2"], SPLIT_SMALL);
    assert!(
        r.wait_for("key ranges", Duration::from_secs(120)),
        "{}",
        r.seen.join("\n")
    );
    // Kill as soon as the journal holds a committed range of a table not finished yet.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let partial = loop {
        let j = journal_data(&sb);
        if let Some(p) = j.as_ref().and_then(|j| {
            j.ranges
                .iter()
                .find(|p| !p.done.is_empty() && p.done.len() < p.split.cuts.len() + 1)
        }) {
            break p.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no range recorded: {j:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    let out = tokio::task::block_in_place(|| r.kill());
    let j = journal_data(&sb).expect("journal");
    assert!(!j.tables_done.contains(&partial.table), "{out}");
    let (code, out) =
        tokio::task::block_in_place(|| spawn_run_env(&sb, &["--jobs", "2"], SPLIT_SMALL).finish());
    assert_eq!(code, 0, "the rerun finishes: {out}");
    assert!(
        out.contains(&format!(
            "{} in {} key ranges (",
            partial.table,
            partial.split.cuts.len() + 1
        )) && out.contains("copied by an earlier run)"),
        "the rerun copied only the missing ranges of {}: {out}",
        partial.table
    );
    let report = w.stop().await;
    assert_converged(&sb, &report).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn there_restarting_mid_copy_fails_clearly_and_a_rerun_finishes() {
    let (sb, w) = setup().await;
    let mut r = spawn_run(&sb, JOBS_1);
    assert!(r.wait_for("rows, ", Duration::from_secs(120)));
    tokio::task::block_in_place(|| sb.there.restart()).unwrap();
    let (code, out) = tokio::task::block_in_place(|| r.finish());
    assert_ne!(code, 0, "the run fails: {out}");
    let last = out
        .lines()
        .rfind(|l| l.starts_with("error:"))
        .unwrap_or_default()
        .to_string();
    assert!(
        last.contains("THERE") || last.contains("copy of"),
        "the error names THERE or the table: {last}"
    );
    assert!(
        out.contains(bucardo_bootstrap::session::text::ONWARD),
        "{out}"
    );
    let (code, out) = tokio::task::block_in_place(|| run_to_end(&sb, &[]));
    assert_eq!(code, 0, "the rerun finishes: {out}");
    let report = w.stop().await;
    assert_converged(&sb, &report).await;
}

/// The `bucardo` CLI as the test's operator would call it against the sandbox's daemon.
fn bucardo(sb: &Sandbox, verb: &[&str]) -> std::process::Output {
    let mut c = std::process::Command::new("bucardo");
    c.args([
        "--no-bucardorc",
        "--dbhost",
        "127.0.0.1",
        "--dbport",
        &sb.here.port.to_string(),
    ])
    .args(["--dbname", "bucardo", "--dbuser", "bucardo", "--piddir"])
    .arg(&sb.piddir)
    .arg("--log-destination")
    .arg(&sb.logdir)
    .args(verb)
    .env("PGPASSFILE", state_dir(sb).join("bucardo.pgpass"))
    .current_dir(&sb.piddir);
    let out = tokio::task::block_in_place(|| c.output()).unwrap();
    assert!(out.status.success(), "bucardo {verb:?}: {}", show(&out));
    out
}

/// The MCP's PID from its PID file, once the file names a live process.
fn mcp_pid(sb: &Sandbox) -> Option<u32> {
    let text = std::fs::read_to_string(sb.piddir.join("bucardo.mcp.pid")).ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    std::path::Path::new(&format!("/proc/{pid}"))
        .exists()
        .then_some(pid)
}

/// Asserts that the run never tried to start a second daemon and that the sync ran only after
/// the enable, then that every committed write is on both sides.
async fn assert_restart_survived(sb: &Sandbox, w: Writer, code: i32, out: &str) {
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("Cannot start"), "no second daemon: {out}");
    assert!(!out.contains("no need to reload"), "{out}");
    let report = w.stop().await;
    assert_converged(sb, &report).await;
    let runs = sb
        .here
        .psql(
            "bucardo",
            "SELECT count(*) FROM bucardo.syncrun WHERE sync = 'mysync'",
        )
        .unwrap();
    assert!(
        runs.trim().parse::<i64>().unwrap() > 0,
        "the sync ran after the enable"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bucardo_restarting_mid_copy_never_runs_the_sync_early() {
    let (sb, w) = setup().await;
    let mut r = spawn_run(&sb, JOBS_1);
    assert!(r.wait_for("rows, ", Duration::from_secs(120)));
    bucardo(&sb, &["restart"]);
    let (code, out) = tokio::task::block_in_place(|| r.finish());
    assert_restart_survived(&sb, w, code, &out).await;
}

/// The window the mid-copy test cannot pin down on a fast machine: the daemon was restarted and
/// its process is up, but it does not answer a ping yet when the run reaches Enable. The test
/// holds the daemon there by locking a table its start-up clears (`bucardo.dbrun`), and lets go
/// only once the run has said that it waits for that daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bucardo_restarted_but_not_answering_at_enable_is_waited_for() {
    let (sb, w) = setup().await;
    let mut r = spawn_run(&sb, JOBS_1);
    assert!(r.wait_for("rows, ", Duration::from_secs(120)));
    let old = mcp_pid(&sb).expect("the run started a daemon");
    bucardo(&sb, &["stop"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while mcp_pid(&sb).is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon never stopped"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut ctl = client_db(&sb.here, "bucardo").await;
    let hold = ctl.transaction().await.unwrap();
    hold.batch_execute("LOCK TABLE bucardo.dbrun IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    bucardo(&sb, &["start", "test-restart"]);
    assert!(
        r.wait_for("Enable the sync ...", Duration::from_secs(300)),
        "the run reached Enable: {}",
        r.seen.join("\n")
    );
    assert!(
        r.wait_for("is alive but does not answer", Duration::from_secs(60)),
        "the run waits for the silent daemon: {}",
        r.seen.join("\n")
    );
    // Bucardo writes its PID file before its own fork and again after it: by now (the daemon is
    // blocked on the lock, well past its fork) the file names the daemon itself.
    let new = mcp_pid(&sb).expect("the restarted daemon is alive");
    assert_ne!(new, old);
    hold.rollback().await.unwrap();
    let (code, out) = tokio::task::block_in_place(|| r.finish());
    assert_restart_survived(&sb, w, code, &out).await;
    assert_eq!(
        mcp_pid(&sb),
        Some(new),
        "the restarted daemon is the one that runs"
    );
    // `status` names the daemon's own PID, not the backend that answered the ping.
    let mut st = tool(&sb);
    st.arg("status").args(conn_flags(&sb, "all"));
    let st = tokio::task::block_in_place(|| st.output()).unwrap();
    assert!(
        String::from_utf8_lossy(&st.stdout)
            .contains(&format!("daemon:        running (PID {new})")),
        "{}",
        show(&st)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_while_waiting_for_the_kick_then_rerun() {
    let (sb, w) = setup().await;
    let mut r = spawn_run(&sb, &[]);
    let reached = r.wait_for("Replay the interim deltas ...", Duration::from_secs(300));
    assert!(reached, "the run reached the drain: {}", r.seen.join("\n"));
    let out = tokio::task::block_in_place(|| r.kill());
    assert!(
        !journal_steps(&sb).contains("Drain"),
        "killed before the drain finished: {out}"
    );
    let (code, out) = tokio::task::block_in_place(|| run_to_end(&sb, &[]));
    assert_eq!(code, 0, "the rerun finishes: {out}");
    assert!(
        out.contains("Copy the data (done in an earlier run)"),
        "{out}"
    );
    let report = w.stop().await;
    assert_converged(&sb, &report).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cleanup_after_a_failed_run_removes_everything_and_a_new_run_succeeds() {
    let (sb, w) = setup().await;
    let mut r = spawn_run(&sb, JOBS_1);
    assert!(r.wait_for("rows, ", Duration::from_secs(120)));
    let _ = tokio::task::block_in_place(|| r.kill());
    let mut cmd = tool(&sb);
    cmd.arg("cleanup")
        .arg("--yes")
        .arg("--drop-data")
        .args(conn_flags(&sb, "all"));
    let out = tokio::task::block_in_place(|| cmd.output()).unwrap();
    assert!(out.status.success(), "{}", show(&out));
    for c in [&sb.here, &sb.there] {
        let triggers = c
            .psql(
                "widgets",
                "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'bucardo%'",
            )
            .unwrap();
        assert_eq!(
            triggers.trim(),
            "0",
            "no Bucardo trigger left on {}",
            c.name
        );
        let schema = c
            .psql(
                "widgets",
                "SELECT count(*) FROM pg_namespace WHERE nspname = 'bucardo'",
            )
            .unwrap();
        assert_eq!(schema.trim(), "0", "no schema bucardo left on {}", c.name);
    }
    let rows = sb
        .there
        .psql("widgets", "SELECT count(*) FROM public.foo")
        .unwrap();
    assert_eq!(rows.trim(), "0", "--drop-data emptied THERE");
    let objects = sb.here.psql("bucardo", "SELECT (SELECT count(*) FROM bucardo.sync) + (SELECT count(*) FROM bucardo.db) + (SELECT count(*) FROM bucardo.goat)").unwrap();
    assert_eq!(objects.trim(), "0", "no Bucardo object left");
    let (code, out) = tokio::task::block_in_place(|| run_to_end(&sb, &[]));
    assert_eq!(code, 0, "a new run succeeds after cleanup: {out}");
    let report = w.stop().await;
    assert_converged(&sb, &report).await;
}
