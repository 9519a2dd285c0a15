//! Verification under load, against real PostgreSQL and Bucardo (issue #14): a writer hammers the
//! 20 rows of a small table on HERE during the bootstrap and after it, as pgbench does to
//! `pgbench_branches`. The Verify step and `verify` walk every table in chunks and compare the rows
//! that changed again by key; the hot table must never be called identical, every verdict says how
//! many rows it compared, and the last line gives the share of rows compared and names the table
//! still changing, without failing the run. Once the writer stops, `verify` finds every table
//! identical with all rows compared.

mod common;

use common::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const HOT_ROWS: i64 = 20;

/// Updates the hot rows one after another, as fast as a short pause allows, until stopped.
struct Hammer {
    stop: CancellationToken,
    updates: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Hammer {
    async fn start(sb: &bucardo_bootstrap::sandbox::Sandbox) -> Hammer {
        let c = client(&sb.here).await;
        let stop = CancellationToken::new();
        let updates = Arc::new(AtomicU64::new(0));
        let (s, u) = (stop.clone(), updates.clone());
        let task = tokio::spawn(async move {
            let mut i: i64 = 0;
            while !s.is_cancelled() {
                let id = (i % HOT_ROWS) + 1;
                i += 1;
                if c.execute(
                    "UPDATE public.hot SET n = n + 1, at = clock_timestamp() WHERE id = $1",
                    &[&(id as i32)],
                )
                .await
                .is_ok()
                {
                    u.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        Hammer {
            stop,
            updates,
            task,
        }
    }

    async fn stop(self) -> u64 {
        self.stop.cancel();
        let _ = self.task.await;
        self.updates.load(Ordering::Relaxed)
    }
}

/// The Verify step's line for table `t` (the copy prints `t: N rows, ...` lines too).
fn verdict_line<'a>(log: &'a str, t: &str) -> &'a str {
    log.lines()
        .map(str::trim_start)
        .find(|l| {
            l.strip_prefix(t)
                .and_then(|r| r.strip_prefix(": "))
                .is_some_and(|r| {
                    ["identical (", "still changing (", "DIFFERENT ("]
                        .iter()
                        .any(|w| r.starts_with(w))
                })
        })
        .unwrap_or_else(|| panic!("a verdict for {t}: {log}"))
}

/// (at once, after replay) from `N compared at once[, M more after replay]`.
fn compared_counts(line: &str) -> (i64, i64) {
    let num = |before: &str| -> i64 {
        line.split(before)
            .next()
            .and_then(|l| l.rsplit([' ', '\t']).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let at_once = num(" compared at once");
    let replayed = if line.contains(" more after replay") {
        num(" more after replay")
    } else {
        0
    };
    (at_once, replayed)
}

fn verify_out(sb: &bucardo_bootstrap::sandbox::Sandbox) -> (i32, String, String) {
    let mut c = tool(sb);
    c.arg("verify")
        .args(conn_flags(sb, "all"))
        .env("BUCARDO_BOOTSTRAP_VERIFY_CHUNK_ROWS", "2000");
    let out = tokio::task::block_in_place(|| c.output()).unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        show(&out),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hot_table_is_still_changing_never_identical_and_every_verdict_counts_its_rows() {
    let sb = tokio::task::spawn_blocking(|| sandbox_with_widgets(1))
        .await
        .unwrap();
    sb.here
        .psql(
            "widgets",
            &format!(
                "CREATE TABLE public.hot (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0, at timestamptz); \
                 INSERT INTO public.hot (id) SELECT generate_series(1, {HOT_ROWS})"
            ),
        )
        .unwrap();
    let hammer = Hammer::start(&sb).await;

    // Small chunks, so that every table of widgets is walked in many of them.
    let (code, log) = tokio::task::block_in_place(|| {
        spawn_run_env(&sb, &[], &[("BUCARDO_BOOTSTRAP_VERIFY_CHUNK_ROWS", "2000")]).finish()
    });
    assert_eq!(
        code, 0,
        "a table still changing does not fail the run: {log}"
    );
    let hot = verdict_line(&log, "public.hot");
    assert!(
        hot.contains(&format!("public.hot: still changing ({HOT_ROWS} rows; "))
            && !hot.contains("identical"),
        "the hot table is never identical: {hot}"
    );
    assert!(
        hot.contains(" compared") && hot.contains("kept changing through"),
        "it says how many rows it compared and how many kept changing: {hot}"
    );
    for t in REPLICATED {
        let line = verdict_line(&log, t);
        assert!(
            line.contains(&format!("{t}: identical (")) && line.contains(" compared at once"),
            "a quiet table is identical with its rows compared: {line}"
        );
    }
    eprintln!("verify_live: during the bootstrap: {hot}");
    let last = log.lines().last().unwrap_or_default();
    eprintln!("verify_live: {last}");
    assert!(
        last.starts_with("done: replicating 7 tables, the same rows on both sides; ")
            && last.contains("% of ")
            && last.contains(" rows compared, 1 table still changing (public.hot)"),
        "the last line gives the share compared and names the hot table: {last}"
    );

    // `verify` while the writer still hammers: the same account, and no difference (exit 0).
    let (code, text, shown) = verify_out(&sb);
    eprintln!("verify_live: `verify` under load:\n{text}");
    assert_eq!(code, 0, "{shown}");
    assert!(
        text.contains(&format!("public.hot\tstill changing\tHERE {HOT_ROWS} rows")),
        "{text}"
    );
    assert_eq!(
        text.matches("\tidentical\t").count(),
        REPLICATED.len(),
        "{text}"
    );
    assert!(
        text.lines()
            .filter(|l| l.contains('\t'))
            .all(|l| l.contains(" compared")),
        "every table says how many rows it compared: {text}"
    );
    assert!(
        text.contains("rows compared, 1 table still changing (public.hot)"),
        "{text}"
    );

    // Once the writer stops, the hot rows replay and every row is compared.
    let updates = hammer.stop().await;
    assert!(updates > 1000, "the writer made {updates} updates");
    let mut tables: Vec<&str> = REPLICATED.to_vec();
    tables.push("public.hot");
    tokio::task::block_in_place(|| wait_identical_tables(&sb, &tables, Duration::from_secs(90)))
        .expect("the hot rows replay");
    let (code, text, shown) = verify_out(&sb);
    assert_eq!(code, 0, "{shown}");
    assert_eq!(
        text.matches("\tidentical\t").count(),
        tables.len(),
        "{text}"
    );
    // Changed within seconds of the start, its rows may be compared at once or after replay;
    // either way all of them.
    let hot = text
        .lines()
        .find(|l| l.starts_with("public.hot\t"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        hot.starts_with(&format!(
            "public.hot\tidentical\tHERE {HOT_ROWS} rows\tTHERE {HOT_ROWS} rows\t"
        )) && !hot.contains("kept changing"),
        "{text}"
    );
    let (at_once, replayed) = compared_counts(hot);
    assert_eq!(at_once + replayed, HOT_ROWS, "{hot}");
    // The tables of more than four chunks are walked by two lanes at once: each chunk is still
    // compared exactly once, so every row is counted once.
    for t in REPLICATED {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{t}\t")))
            .unwrap_or_else(|| panic!("{t}: {text}"));
        let rows: i64 = line
            .split("\tHERE ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        let (at_once, replayed) = compared_counts(line);
        assert_eq!(
            at_once + replayed,
            rows,
            "every row of {t} compared once: {line}"
        );
    }
    assert!(
        text.lines()
            .last()
            .is_some_and(|l| l.starts_with("verify: all ") && l.ends_with(" rows compared")),
        "{text}"
    );
}

/// Bucardo behind: with the daemon stopped, rows changed on HERE after the bootstrap are never
/// replicated. `verify` waits its bounded while for the backlog, then counts those rows as not
/// replicated yet, still changing, never DIFFERENT; the rest is compared as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_bucardo_has_not_replicated_is_in_flight_never_different() {
    let sb = tokio::task::spawn_blocking(|| sandbox_with_widgets(1))
        .await
        .unwrap();
    let (code, log) = tokio::task::block_in_place(|| run_to_end(&sb, &[]));
    assert_eq!(code, 0, "{log}");
    let mut stop = std::process::Command::new("bucardo");
    stop.args(["--no-bucardorc", "--dbhost", "127.0.0.1", "--dbport"])
        .arg(sb.here.port.to_string())
        .args(["--dbname", "bucardo", "--dbuser", "bucardo", "--piddir"])
        .arg(&sb.piddir)
        .arg("--log-destination")
        .arg(&sb.logdir)
        .arg("stop")
        .env("PGPASSFILE", state_dir(&sb).join("bucardo.pgpass"))
        .current_dir(&sb.piddir);
    let out = tokio::task::block_in_place(|| stop.output()).unwrap();
    assert!(out.status.success(), "{}", show(&out));
    // The daemon is gone once its PID file is.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while sb.piddir.join("bucardo.mcp.pid").exists() {
        assert!(std::time::Instant::now() < deadline, "the daemon stops");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sb.here
        .psql(
            "widgets",
            "UPDATE public.foo SET name = name || '-behind' WHERE id IN (SELECT id FROM public.foo ORDER BY id LIMIT 40)",
        )
        .unwrap();
    let (code, text, shown) = verify_out(&sb);
    assert_eq!(code, 0, "nothing is DIFFERENT:\n{shown}");
    let foo = text
        .lines()
        .find(|l| l.starts_with("public.foo"))
        .unwrap_or_else(|| panic!("a line for public.foo:\n{text}"));
    // One round only: behind a backlog Bucardo has not cleared, the rest is in flight.
    assert!(
        foo.contains("still changing")
            && foo.contains("40 kept changing through 1 round")
            && !foo.contains("DIFFERENT"),
        "{foo}"
    );
    // The other tables were compared as usual.
    let orders = text
        .lines()
        .find(|l| l.starts_with("public.orders"))
        .unwrap_or_else(|| panic!("a line for public.orders:\n{text}"));
    assert!(orders.contains("identical"), "{orders}");
}
