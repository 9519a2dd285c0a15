//! The load benchmark (not a test): `cargo bench --bench load`.
//!
//! How much does a bootstrap cost the production database while it runs? On fresh sandbox
//! clusters for each procedure, HERE gets a pgbench TPC-B database (scale 20, and a `bigserial`
//! primary key on `pgbench_history` so that every table can replicate), and pgbench runs on it
//! with 2 clients throughout, reporting its tps every second (`-P 1 --progress-timestamp`). The
//! baseline is the median of the 15 seconds before the procedure starts. Two procedures:
//!
//! - `seed`: the blog's steps by hand. `pg_dump --schema-only | psql` to THERE; Bucardo's role on
//!   both sides, `bucardo install`, `bucardo start`; `add db` x2 (the password goes into
//!   `bucardo.db` through SQL, never argv), `add table ... relgroup=`, `add dbgroup`,
//!   `add sync ... autokick=0`; `pg_dump --data-only -N bucardo | PGOPTIONS='-c
//!   session_replication_role=replica' psql`; `update sync ... autokick=1`, `reload config`, and
//!   a kick that ends the procedure once the interim deltas are replayed (`DONE!`, exit 0).
//! - `tool`: `bucardo-bootstrap run --yes --tables all` (the release binary), verification on,
//!   with the flags the test suite uses to run it headless against a sandbox. Its step lines are
//!   timestamped as they arrive, so each second is attributed to the step that ran then.
//!
//! For each run it prints the duration, the baseline, the worst second and the mean while it ran
//! (both in % of the baseline), the seconds under 50 % of the baseline, the mean of the 10 s after
//! it ended (triggers and Bucardo running), pgbench's retried/failed transactions, and the same
//! per step.
//!
//! Environment:
//! - `LOAD_BENCH_ROUNDS` (default 1): rounds, each running both procedures, alternating which
//!   goes first; `LOAD_BENCH_ONLY=seed|tool` runs one of them;
//! - `LOAD_BENCH_TOOL_ARGS`: extra arguments for the tool, space-separated;
//! - `LOAD_BENCH_VERBOSE=1`: one line per second, `t=+Ns tps=N (P%) [step]`;
//! - `LOAD_BENCH_KEEP=1`: keep each sandbox directory (the tool's timestamped output is in
//!   `tool-stderr.log` there, Bucardo's log in `bucardo-log/`).

#[allow(dead_code)]
mod common;

use bucardo_bootstrap::sandbox::{self, Sandbox, SandboxOptions};
use common::{median, now, Span};
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DB: &str = "bench";
const SCALE: u32 = 20;
const CLIENTS: u32 = 2;
/// Seconds of baseline before the procedure, and of steady state after it.
const BASELINE_S: f64 = 15.0;
const AFTER_S: f64 = 10.0;
/// pgbench's first seconds are left out of the baseline (connections, cold caches).
const WARMUP_S: usize = 3;
const BUCARDO_PASS: &str = "load-bench-bucardo-7";

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("the load benchmark runs with `cargo bench --bench load`");
        return;
    }
    let rounds: usize = std::env::var("LOAD_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let only = std::env::var("LOAD_BENCH_ONLY").unwrap_or_default();
    let procedures: Vec<Procedure> = match only.as_str() {
        "" => vec![Procedure::Seed, Procedure::Tool],
        "seed" => vec![Procedure::Seed],
        "tool" => vec![Procedure::Tool],
        other => panic!("LOAD_BENCH_ONLY={other}: expected seed or tool"),
    };
    let opts = Opts {
        verbose: std::env::var("LOAD_BENCH_VERBOSE").is_ok_and(|v| v == "1"),
        keep: std::env::var_os("LOAD_BENCH_KEEP").is_some(),
        tool_args: std::env::var("LOAD_BENCH_TOOL_ARGS")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect(),
    };
    self_check();
    sandbox::require_tools().expect("PostgreSQL 15, PL/Perl and Bucardo must be installed");
    let bindir = sandbox::pg_bindir().expect("PostgreSQL binaries");
    assert!(
        bindir.join("pgbench").is_file(),
        "{} is missing (package postgresql-15)",
        bindir.join("pgbench").display()
    );
    eprintln!(
        "load benchmark: pgbench TPC-B, scale {SCALE}, {CLIENTS} clients on HERE; {rounds} round(s); tool args: {:?}",
        opts.tool_args
    );

    let mut results: Vec<(Procedure, usize, Summary, (f64, f64))> = Vec::new();
    for round in 1..=rounds {
        let mut order = procedures.clone();
        if round % 2 == 0 {
            order.reverse();
        }
        for p in order {
            eprintln!("\nround {round}: {} ...", p.name());
            let run = measure(p, &opts);
            let summary = summarize(&run.samples, run.start, run.end, run.quiet);
            print_run(p, round, &run, &summary, &opts);
            results.push((p, round, summary, run.loadavg));
        }
    }
    println!("\nload on HERE (pgbench TPC-B, scale {SCALE}, {CLIENTS} clients; % of the baseline, the median of the {BASELINE_S:.0} s before):");
    println!(
        "  {:<5} {:>5} {:>8} {:>9} {:>7} {:>7} {:>6} {:>9} {:>9} {:>8} {:>9}",
        "",
        "round",
        "duration",
        "baseline",
        "worst",
        "mean",
        "<50%",
        "after10s",
        "triggers",
        "retried",
        "loadavg"
    );
    for (p, round, s, (l0, l1)) in &results {
        println!(
            "  {:<5} {:>5} {:>7.1}s {:>5.0} tps {:>6.1}% {:>6.1}% {:>5}s {:>8.1}% {:>8.1}% {:>8} {l0:>4.1}/{l1:.1}",
            p.name(),
            round,
            s.duration,
            s.baseline,
            s.worst_pct,
            s.mean_pct,
            s.under_half,
            s.after_pct,
            s.triggers_pct,
            s.retried
        );
    }
    println!("  after10s: the 10 s after the procedure (Bucardo replicating); triggers: 10 s with the daemon stopped (triggers alone); loadavg: the machine's, before/after");
}

struct Opts {
    verbose: bool,
    keep: bool,
    tool_args: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Procedure {
    Seed,
    Tool,
}

impl Procedure {
    fn name(self) -> &'static str {
        match self {
            Procedure::Seed => "seed",
            Procedure::Tool => "tool",
        }
    }
}

/// One of pgbench's per-second reports: the interval ends at `t` (epoch seconds).
#[derive(Clone, Copy, Debug)]
struct Sample {
    t: f64,
    tps: f64,
    failed: u64,
    retried: u64,
}

impl Sample {
    /// The middle of the second the sample covers: what the windows below compare.
    fn mid(&self) -> f64 {
        self.t - 0.5
    }
}

struct Run {
    samples: Vec<Sample>,
    start: f64,
    end: f64,
    /// When the Bucardo daemon had gone, leaving HERE with its triggers alone.
    quiet: f64,
    /// What the daemon was doing when `bucardo stop` did not stop it within 15 s.
    forced: Option<String>,
    spans: Vec<Span>,
    /// The machine's 1-minute load average as the baseline began and as pgbench stopped.
    loadavg: (f64, f64),
    /// [`hot_tables`] as the procedure ended and as pgbench stopped.
    hot: (String, String),
    /// What the procedure's own sessions held on HERE ([`Held`]).
    held: Held,
}

/// Snapshots the procedure's sessions held on HERE, read from `pg_stat_activity` twice a
/// second: the oldest one seen (age in seconds and in transactions, and what it was running),
/// and the longest single COPY statement, which is one piece of the tool's copy.
#[derive(Default, Clone)]
struct Held {
    oldest_s: f64,
    oldest_xids: i64,
    oldest_query: String,
    longest_copy_s: f64,
    samples: usize,
}

impl Held {
    fn line(&self) -> String {
        if self.samples == 0 {
            return "no sample of HERE's sessions".into();
        }
        format!(
            "oldest snapshot the procedure held on HERE: {:.1} s ({} xids) running `{}`; longest single COPY on HERE: {:.1} s ({} samples)",
            self.oldest_s,
            self.oldest_xids,
            truncate(&self.oldest_query, 60),
            self.longest_copy_s,
            self.samples
        )
    }
}

/// Samples HERE until `stop` is set; `who` is the procedure's sessions' filter.
fn watch_held(
    sb: &Sandbox,
    who: &'static str,
    stop: Arc<Mutex<bool>>,
) -> std::thread::JoinHandle<Held> {
    let cfg = sb.here.pg_config(DB);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mut held = Held::default();
            let Ok((client, conn)) = cfg.connect(tokio_postgres::NoTls).await else {
                return held;
            };
            tokio::spawn(conn);
            let sql = format!(
                "SELECT extract(epoch FROM now() - coalesce(xact_start, query_start))::float8, \
                        age(backend_xmin)::bigint, query, extract(epoch FROM now() - query_start)::float8 \
                   FROM pg_stat_activity WHERE backend_xmin IS NOT NULL AND pid <> pg_backend_pid() AND {who}"
            );
            while !*stop.lock().unwrap() {
                if let Ok(rows) = client.query(sql.as_str(), &[]).await {
                    held.samples += 1;
                    for r in rows {
                        let (age, xids, q, q_age): (Option<f64>, Option<i64>, Option<String>, Option<f64>) =
                            (r.get(0), r.get(1), r.get(2), r.get(3));
                        let (age, xids, q, q_age) = (
                            age.unwrap_or(0.0),
                            xids.unwrap_or(0),
                            q.unwrap_or_default(),
                            q_age.unwrap_or(0.0),
                        );
                        if age > held.oldest_s {
                            held.oldest_s = age;
                            held.oldest_xids = xids;
                            held.oldest_query = q.clone();
                        }
                        if q.trim_start().to_ascii_uppercase().starts_with("COPY") {
                            held.longest_copy_s = held.longest_copy_s.max(q_age);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            held
        })
    })
}

/// Fresh sandbox, pgbench on HERE, baseline, the procedure, 10 s more.
fn measure(p: Procedure, opts: &Opts) -> Run {
    let sb = Sandbox::start(SandboxOptions {
        keep: opts.keep,
        ..SandboxOptions::default()
    })
    .expect("sandbox starts");
    eprintln!("  sandbox in {}", sb.root.display());
    let t = Instant::now();
    prepare_here(&sb);
    eprintln!(
        "  pgbench database built in {:.0} s ({})",
        t.elapsed().as_secs_f64(),
        sb.here
            .psql(
                DB,
                &format!("SELECT pg_size_pretty(pg_database_size('{DB}'))")
            )
            .expect("size")
            .trim()
    );
    let load = Pgbench::start(&sb);
    load.wait_for_samples(WARMUP_S);
    let load_before = loadavg();
    load.wait_for_samples(WARMUP_S + BASELINE_S as usize);
    let start = now();
    let stop_watch = Arc::new(Mutex::new(false));
    let watcher = watch_held(
        &sb,
        match p {
            // pg_dump's session, or the tool's own.
            Procedure::Seed => "application_name = 'pg_dump'",
            Procedure::Tool => "application_name = 'bucardo-bootstrap'",
        },
        stop_watch.clone(),
    );
    let spans = match p {
        Procedure::Seed => seed(&sb),
        Procedure::Tool => tool(&sb, &opts.tool_args),
    };
    let end = now();
    *stop_watch.lock().unwrap() = true;
    let held = watcher.join().unwrap_or_default();
    let bloat_end = hot_tables(&sb);
    // The last second of the steady state must be reported too.
    while load.last_t() < end + AFTER_S + 1.0 {
        std::thread::sleep(Duration::from_millis(200));
    }
    // Then the triggers alone: the daemon stopped, HERE still logs every change as a delta.
    let (quiet, forced) = stop_bucardo(&sb);
    while load.last_t() < quiet + AFTER_S + 1.0 {
        std::thread::sleep(Duration::from_millis(200));
    }
    let load_after = loadavg();
    let bloat_quiet = hot_tables(&sb);
    let samples = load.stop();
    if opts.keep {
        eprintln!("  kept {}", sb.root.display());
    }
    drop(sb);
    Run {
        samples,
        start,
        end,
        quiet,
        forced,
        spans,
        loadavg: (load_before, load_after),
        hot: (bloat_end, bloat_quiet),
        held,
    }
}

/// The dead row versions in pgbench's two hottest tables (20 branches and 200 tellers, each
/// updated by every transaction), and the oldest snapshot any session on HERE holds: a long
/// snapshot keeps vacuum from removing them, and every update then walks a longer chain.
fn hot_tables(sb: &Sandbox) -> String {
    sb.here
        .psql(
            DB,
            "SELECT string_agg(format('%s %s dead, %s', relname, n_dead_tup, pg_size_pretty(pg_relation_size(relid))), '; ' ORDER BY relname) \
             || '; oldest snapshot ' || coalesce((SELECT max(age(backend_xmin))::text || ' xids (' || string_agg(DISTINCT coalesce(nullif(usename, ''), 'autovacuum') || ' ' || left(coalesce(nullif(application_name, ''), backend_type), 24), ', ') || ')' \
             FROM pg_stat_activity WHERE backend_xmin IS NOT NULL AND pid <> pg_backend_pid() AND age(backend_xmin) > 1000), 'none over 1000 xids') \
             FROM pg_stat_user_tables WHERE relname IN ('pgbench_branches', 'pgbench_tellers')",
        )
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn loadavg() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// `bucardo stop`, then waits until no session of Bucardo's role is left on HERE's cluster
/// (where its control database is too); returns that moment. A daemon whose sync run does not
/// end within 15 s is described (returned), then ended: SIGTERM to the PIDs in the sandbox's PID
/// directory, and `pg_terminate_backend` for the sessions it leaves behind.
fn stop_bucardo(sb: &Sandbox) -> (f64, Option<String>) {
    Bucardo::new(sb).run(&["stop", "load bench"]);
    let sessions = || {
        sb.here
            .psql(
                "postgres",
                "SELECT count(*) FROM pg_stat_activity WHERE usename = 'bucardo'",
            )
            .expect("Bucardo's sessions")
            .trim()
            .to_string()
    };
    let wait_gone = |secs: u64| {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if sessions() == "0" {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    };
    if wait_gone(15) {
        return (now(), None);
    }
    let q = |c: &sandbox::Cluster, db: &str, sql: &str| c.psql(db, sql).unwrap_or_default();
    let diag = format!(
        "Bucardo's sessions on HERE (pid|db|state|xact age|query age|wait|query):\n{}\
         sync runs (newest first: started|ended|inserts|deletes|status):\n{}\
         Bucardo's delta and track tables on HERE (live rows, estimated):\n{}",
        q(&sb.here, "postgres", "SELECT pid, datname, state, date_trunc('second', now() - xact_start), date_trunc('second', now() - query_start), wait_event_type || ':' || wait_event, left(regexp_replace(query, '\\s+', ' ', 'g'), 100) FROM pg_stat_activity WHERE usename = 'bucardo'"),
        q(&sb.here, "bucardo", "SELECT to_char(started, 'HH24:MI:SS'), to_char(ended, 'HH24:MI:SS'), inserts, deletes, left(status, 80) FROM bucardo.syncrun ORDER BY started DESC LIMIT 6"),
        q(&sb.here, DB, "SELECT relname, n_live_tup FROM pg_stat_user_tables WHERE schemaname = 'bucardo' AND (relname LIKE 'delta%' OR relname LIKE 'track%') ORDER BY 1"),
    );
    // The daemon's own processes, by the PIDs its PID files name (this sandbox's daemon only).
    for entry in fs::read_dir(&sb.piddir).into_iter().flatten().flatten() {
        let pid: Option<i32> = fs::read_to_string(entry.path())
            .ok()
            .and_then(|t| t.split_whitespace().next()?.parse().ok());
        if let Some(pid) = pid.filter(|p| *p > 1) {
            let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmd)
                .to_lowercase()
                .contains("bucardo")
            {
                // SAFETY: kill(2) on a Bucardo process named by this sandbox's PID file.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
    }
    for c in [&sb.here, &sb.there] {
        q(
            c,
            "postgres",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'bucardo'",
        );
    }
    assert!(wait_gone(30), "Bucardo's sessions did not end:\n{diag}");
    (now(), Some(diag))
}

/// pgbench's tables on HERE, every one with a primary key; vacuumed, analyzed, checkpointed.
fn prepare_here(sb: &Sandbox) {
    sb.here
        .psql("postgres", &format!("CREATE DATABASE {DB}"))
        .expect("create database");
    let out = pgbench(sb)
        .args(["-i", "-q", "-s", &SCALE.to_string(), DB])
        .stdout(Stdio::null())
        .output()
        .expect("pgbench -i");
    assert!(
        out.status.success(),
        "pgbench -i failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    sb.here
        .psql(
            DB,
            "ALTER TABLE pgbench_history ADD COLUMN id bigserial PRIMARY KEY",
        )
        .expect("a key for pgbench_history");
    sb.here.psql(DB, "VACUUM ANALYZE").expect("vacuum");
    sb.here.psql(DB, "CHECKPOINT").expect("checkpoint");
}

/// pgbench against HERE as `postgres`, the password in its environment.
fn pgbench(sb: &Sandbox) -> Command {
    let mut c = Command::new(sb.here.bindir.join("pgbench"));
    c.args(["-h", &sb.here.host, "-p", &sb.here.port.to_string()])
        .args(["-U", "postgres"])
        .env("PGPASSWORD", &sb.password)
        .env_remove("PGPASSFILE");
    c
}

/// pgbench running in the background; its per-second reports are collected as they come.
struct Pgbench {
    child: Child,
    samples: Arc<Mutex<Vec<Sample>>>,
    other: Arc<Mutex<Vec<String>>>,
    reader: std::thread::JoinHandle<()>,
}

impl Pgbench {
    fn start(sb: &Sandbox) -> Pgbench {
        let mut child = pgbench(sb)
            .args(["-n", "-c", &CLIENTS.to_string(), "-j", "1", "-T", "3600"])
            // A real application retries a transaction that lost a deadlock.
            .args(["--max-tries", "10", "-P", "1", "--progress-timestamp", DB])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pgbench starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let samples = Arc::new(Mutex::new(Vec::new()));
        let other = Arc::new(Mutex::new(Vec::new()));
        let (s, o) = (samples.clone(), other.clone());
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                match parse_progress(&line) {
                    Some(sample) => s.lock().expect("samples").push(sample),
                    None => o.lock().expect("lines").push(line),
                }
            }
        });
        Pgbench {
            child,
            samples,
            other,
            reader,
        }
    }

    fn count(&self) -> usize {
        self.samples.lock().expect("samples").len()
    }

    fn last_t(&self) -> f64 {
        self.assert_alive();
        self.samples
            .lock()
            .expect("samples")
            .last()
            .map_or(0.0, |s| s.t)
    }

    fn wait_for_samples(&self, n: usize) {
        while self.count() < n {
            self.assert_alive();
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn assert_alive(&self) {
        let other = self.other.lock().expect("lines");
        assert!(
            !other.iter().any(|l| l.contains("aborted")),
            "a pgbench client aborted:\n{}",
            other.join("\n")
        );
    }

    /// SIGINT (pgbench is our child), then the samples.
    fn stop(mut self) -> Vec<Sample> {
        // SAFETY: kill(2) on the pid of the child we spawned and have not reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().expect("pgbench").is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let Pgbench {
            samples,
            other,
            reader,
            ..
        } = self;
        let _ = reader.join();
        let other = other.lock().expect("lines");
        assert!(
            !other.iter().any(|l| l.contains("aborted")),
            "a pgbench client aborted:\n{}",
            other.join("\n")
        );
        let s = samples.lock().expect("samples").clone();
        s
    }
}

/// `progress: 1715000001.004 s, 1502.0 tps, lat 1.330 ms stddev 0.412, 0 failed, 3 retried`
/// (PostgreSQL 15 with `--progress-timestamp`; `failed` and `retried` may be missing).
fn parse_progress(line: &str) -> Option<Sample> {
    let rest = line.strip_prefix("progress: ")?;
    let (t, rest) = rest.split_once(" s, ")?;
    let t: f64 = t.trim().parse().ok()?;
    let words: Vec<&str> = rest.split([' ', ',']).filter(|w| !w.is_empty()).collect();
    let before = |unit: &str| {
        words
            .iter()
            .position(|w| *w == unit)
            .and_then(|i| i.checked_sub(1))
            .map(|i| words[i])
    };
    let tps: f64 = before("tps")?.parse().ok()?;
    let count = |unit: &str| before(unit).and_then(|w| w.parse().ok()).unwrap_or(0);
    Some(Sample {
        t,
        tps,
        failed: count("failed"),
        retried: count("retried"),
    })
}

// ---------------------------------------------------------------------------------------------
// The statistics: small pure functions over the samples.

#[derive(Clone, Debug, Default)]
struct Summary {
    duration: f64,
    baseline: f64,
    worst_pct: f64,
    mean_pct: f64,
    under_half: usize,
    after_pct: f64,
    triggers_pct: f64,
    retried: u64,
    failed: u64,
}

/// The samples whose second lies mostly in `[from, to)`.
fn window(samples: &[Sample], from: f64, to: f64) -> Vec<Sample> {
    samples
        .iter()
        .filter(|s| s.mid() >= from && s.mid() < to)
        .copied()
        .collect()
}

fn tps(samples: &[Sample]) -> Vec<f64> {
    samples.iter().map(|s| s.tps).collect()
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn pct(x: f64, baseline: f64) -> f64 {
    100.0 * x / baseline
}

/// Worst, mean and seconds under half, in % of `baseline`, over a window's samples.
fn load_stats(during: &[f64], baseline: f64) -> (f64, f64, usize) {
    let worst = during.iter().copied().fold(f64::INFINITY, f64::min);
    let under = during.iter().filter(|x| **x < baseline / 2.0).count();
    (pct(worst, baseline), pct(mean(during), baseline), under)
}

/// The procedure ran over `[start, end)`; the daemon had stopped by `quiet`.
fn summarize(samples: &[Sample], start: f64, end: f64, quiet: f64) -> Summary {
    let baseline = median(&tps(&window(samples, start - BASELINE_S, start)));
    let during = window(samples, start, end);
    let (worst_pct, mean_pct, under_half) = load_stats(&tps(&during), baseline);
    let after = tps(&window(samples, end, end + AFTER_S));
    Summary {
        duration: end - start,
        baseline,
        worst_pct,
        mean_pct,
        under_half,
        after_pct: pct(mean(&after), baseline),
        triggers_pct: pct(
            mean(&tps(&window(samples, quiet, quiet + AFTER_S))),
            baseline,
        ),
        retried: during.iter().map(|s| s.retried).sum(),
        failed: during.iter().map(|s| s.failed).sum(),
    }
}

/// The pure functions above on known inputs (a bench with `harness = false` has no `#[test]`):
/// checked on every run, in well under a millisecond.
fn self_check() {
    let s = parse_progress(
        "progress: 1715000001.004 s, 1502.0 tps, lat 1.330 ms stddev 0.412, 2 failed, 3 retried, 4 retries",
    )
    .expect("a progress line");
    assert_eq!(
        (s.t, s.tps, s.failed, s.retried),
        (1715000001.004, 1502.0, 2, 3)
    );
    let s = parse_progress("progress: 17.5 s, 0.0 tps, lat 0.000 ms stddev 0.000").expect("idle");
    assert_eq!((s.t, s.tps, s.failed, s.retried), (17.5, 0.0, 0, 0));
    assert!(parse_progress("pgbench: error: connection failed").is_none());
    assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    assert_eq!(load_stats(&[100.0, 40.0, 70.0], 100.0), (40.0, 70.0, 1));
    // Seconds ending at 10..=20, tps 100 before 15 and 50 from there: the procedure spans
    // [15, 17.2): seconds (14,15] and before are baseline, (15,16] and (16,17] are during, and
    // (17,18] (its middle, 17.5, is past the end) is after.
    let samples: Vec<Sample> = (10..=30)
        .map(|t| Sample {
            t: f64::from(t),
            tps: if t <= 15 {
                100.0
            } else if t <= 17 {
                50.0
            } else {
                80.0
            },
            failed: 0,
            retried: 0,
        })
        .collect();
    let s = summarize(&samples, 15.0, 17.2, 20.0);
    assert_eq!(s.baseline, 100.0);
    assert_eq!((s.worst_pct, s.mean_pct, s.under_half), (50.0, 50.0, 0));
    assert_eq!((s.after_pct, s.triggers_pct), (80.0, 80.0));
    assert_eq!(window(&samples, 15.0, 17.2).len(), 2);
}

/// What ran in the middle of second `mid`: a step, or what lies around the steps.
fn label_at(run: &Run, mid: f64) -> String {
    let (spans, start, end) = (&run.spans, run.start, run.end);
    if mid < start {
        return "baseline".into();
    }
    if mid >= run.quiet {
        return "triggers only: daemon stopped".into();
    }
    if mid >= end + AFTER_S {
        return "stopping the daemon".into();
    }
    if mid >= end {
        return "after".into();
    }
    if let Some(s) = spans.iter().find(|s| mid >= s.start && mid < s.end) {
        return s.label.clone();
    }
    match spans.first() {
        Some(first) if mid < first.start => "preflight".into(),
        _ => "between steps".into(),
    }
}

fn print_run(p: Procedure, round: usize, run: &Run, s: &Summary, opts: &Opts) {
    println!(
        "\n{} (round {round}): {:.1} s, baseline {:.0} tps, worst {:.1} %, mean {:.1} %, {} s under 50 %, after (10 s) {:.1} %, triggers alone (daemon stopped, 10 s) {:.1} %; pgbench retried {} failed {}; load average {:.1} -> {:.1}",
        p.name(),
        s.duration,
        s.baseline,
        s.worst_pct,
        s.mean_pct,
        s.under_half,
        s.after_pct,
        s.triggers_pct,
        s.retried,
        s.failed,
        run.loadavg.0,
        run.loadavg.1
    );
    println!("  {}", run.held.line());
    println!("  HERE as it ended: {}", run.hot.0);
    println!("  HERE as pgbench stopped: {}", run.hot.1);
    if let Some(diag) = &run.forced {
        println!(
            "  the daemon did not stop within 15 s of `bucardo stop` and was ended; it was doing:"
        );
        for l in diag.lines() {
            println!("    {l}");
        }
    }
    // Per step, in order of first appearance: every second of the procedure is attributed once.
    let during = window(&run.samples, run.start, run.end);
    let mut labels: Vec<(String, f64, Vec<f64>)> = Vec::new();
    for sample in &during {
        let l = label_at(run, sample.mid());
        match labels.iter_mut().find(|(x, _, _)| *x == l) {
            Some((_, _, v)) => v.push(sample.tps),
            None => labels.push((l, 0.0, vec![sample.tps])),
        }
    }
    for (l, secs, _) in labels.iter_mut() {
        *secs = run
            .spans
            .iter()
            .filter(|s| s.label == *l)
            .map(|s| s.end - s.start)
            .sum();
    }
    println!(
        "  {:<44} {:>7} {:>5} {:>7} {:>7} {:>5}",
        "step", "took", "secs", "mean", "worst", "<50%"
    );
    for (l, took, v) in &labels {
        let (worst, m, under) = load_stats(v, s.baseline);
        let took = if *took > 0.0 {
            format!("{took:.1}s")
        } else {
            "-".into()
        };
        println!(
            "  {:<44} {:>7} {:>5} {:>6.1}% {:>6.1}% {:>4}s",
            truncate(l, 44),
            took,
            v.len(),
            m,
            worst,
            under
        );
    }
    let short: Vec<String> = run
        .spans
        .iter()
        .filter(|sp| !labels.iter().any(|(l, _, _)| *l == sp.label))
        .map(|sp| format!("{} {:.1}s", sp.label, sp.end - sp.start))
        .collect();
    if !short.is_empty() {
        println!("  (no whole second: {})", short.join(", "));
    }
    if opts.verbose {
        for sample in window(&run.samples, run.start - BASELINE_S, run.quiet + AFTER_S) {
            println!(
                "  t={:+}s tps={:.0} ({:.0}%) [{}]",
                (sample.t - run.start).round() as i64,
                sample.tps,
                pct(sample.tps, s.baseline),
                label_at(run, sample.mid())
            );
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(['…']).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Procedure 1: the blog's steps by hand.

/// Runs `f` as one step of the seed, timed.
fn step(spans: &mut Vec<Span>, label: &str, f: impl FnOnce()) {
    let start = now();
    f();
    let end = now();
    eprintln!("  seed: {label} {:.1} s", end - start);
    spans.push(Span {
        label: label.into(),
        start,
        end,
    });
}

/// A shell pipeline with `pipefail`, the postgres password in its environment only.
fn pipeline(sb: &Sandbox, script: &str) {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("set -o pipefail; {script}"))
        .env("PGPASSWORD", &sb.password)
        .env_remove("PGPASSFILE")
        .stdout(Stdio::null())
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `bucardo` CLI as the tool calls it in a sandbox: the control database, PID directory and
/// log directory named on every call (never `/etc/bucardorc`), passwords in a 0600 passfile.
struct Bucardo {
    host: String,
    port: u16,
    piddir: PathBuf,
    logdir: PathBuf,
    passfile: PathBuf,
    workdir: PathBuf,
    home: PathBuf,
}

impl Bucardo {
    fn new(sb: &Sandbox) -> Bucardo {
        let passfile = sb.root.join("bench.pgpass");
        fs::write(
            &passfile,
            format!(
                "{h}:*:*:bucardo:{BUCARDO_PASS}\n{h}:*:*:postgres:{}\n",
                sb.password,
                h = sb.here.host
            ),
        )
        .expect("passfile");
        fs::set_permissions(&passfile, fs::Permissions::from_mode(0o600)).expect("chmod");
        let home = sb.root.join("home");
        fs::create_dir_all(&home).expect("home");
        Bucardo {
            host: sb.here.host.clone(),
            port: sb.here.port,
            piddir: sb.piddir.clone(),
            logdir: sb.logdir.clone(),
            passfile,
            workdir: sb.root.clone(),
            home,
        }
    }

    fn command(&self, user: &str, db: &str, args: &[&str]) -> Command {
        let mut c = Command::new("bucardo");
        c.arg("--no-bucardorc")
            .args(["--dbhost", &self.host, "--dbport", &self.port.to_string()])
            .args(["--dbname", db, "--dbuser", user])
            .arg("--piddir")
            .arg(&self.piddir)
            .arg("--log-destination")
            .arg(&self.logdir)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("PGPASSFILE", &self.passfile)
            // Bucardo decodes its argv by the locale.
            .env("LC_ALL", "C.UTF-8")
            .current_dir(&self.workdir)
            .stdin(Stdio::null());
        c
    }

    fn output(&self, args: &[&str]) -> Output {
        self.command("bucardo", "bucardo", args)
            .output()
            .expect("bucardo runs")
    }

    /// A command that must succeed (exit 0).
    fn run(&self, args: &[&str]) -> String {
        let out = self.output(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "bucardo {} failed ({}): {text}",
            args.join(" "),
            out.status
        );
        text
    }
}

fn seed(sb: &Sandbox) -> Vec<Span> {
    let mut spans = Vec::new();
    let b = Bucardo::new(sb);
    let (here, there) = (sb.here.uri(DB), sb.there.uri(DB));
    let bin = |t: &str| sb.here.bindir.join(t).display().to_string();
    let (here_db, there_db) = (format!("here{DB}"), format!("there{DB}"));

    step(&mut spans, "schema: pg_dump --schema-only | psql", || {
        sb.there
            .psql("postgres", &format!("CREATE DATABASE {DB}"))
            .expect("THERE's database");
        pipeline(
            sb,
            &format!(
                "'{}' --schema-only -d '{here}' | '{}' -X -q -v ON_ERROR_STOP=1 -d '{there}'",
                bin("pg_dump"),
                bin("psql")
            ),
        );
    });
    step(&mut spans, "bucardo role, install, start", || {
        // The role with its password, through psql's stdin: never on a command line.
        let role = format!("CREATE ROLE bucardo SUPERUSER LOGIN PASSWORD '{BUCARDO_PASS}'");
        sb.here
            .psql_script("postgres", &role, &[])
            .expect("role on HERE");
        sb.there
            .psql_script("postgres", &role, &[])
            .expect("role on THERE");
        let out = b
            .command("postgres", "postgres", &["install", "--batch"])
            .output()
            .expect("bucardo install");
        assert!(
            out.status.success(),
            "bucardo install: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        b.run(&["start", "load bench"]);
    });
    step(&mut spans, "add db x2", || {
        for (name, c) in [(&here_db, &sb.here), (&there_db, &sb.there)] {
            b.run(&[
                "add",
                "db",
                name,
                &format!("dbname={DB}"),
                &format!("host={}", c.host),
                &format!("port={}", c.port),
                "user=bucardo",
            ]);
        }
        // What `pass=` would store, without putting it on a command line.
        sb.here
            .psql_script(
                "bucardo",
                &format!(
                    "UPDATE bucardo.db SET dbpass = '{BUCARDO_PASS}' WHERE name IN ('{here_db}', '{there_db}')"
                ),
                &[],
            )
            .expect("dbpass");
    });
    step(&mut spans, "add table (relgroup)", || {
        b.run(&[
            "add",
            "table",
            "public.pgbench_accounts",
            "public.pgbench_branches",
            "public.pgbench_tellers",
            "public.pgbench_history",
            "relgroup=myrels",
            &format!("db={here_db}"),
        ]);
    });
    step(&mut spans, "add dbgroup", || {
        b.run(&[
            "add",
            "dbgroup",
            "mydbs",
            &format!("{here_db}:source"),
            &format!("{there_db}:source"),
        ]);
    });
    step(&mut spans, "add sync autokick=0", || {
        b.run(&[
            "add",
            "sync",
            "mysync",
            "relgroup=myrels",
            "dbs=mydbs",
            "autokick=0",
        ]);
    });
    step(&mut spans, "data: pg_dump --data-only | psql", || {
        pipeline(
            sb,
            &format!(
                "'{}' --data-only -N bucardo -d '{here}' | PGOPTIONS='-c session_replication_role=replica' '{}' -X -q -v ON_ERROR_STOP=1 -d '{there}'",
                bin("pg_dump"),
                bin("psql")
            ),
        );
    });
    step(&mut spans, "update sync autokick=1, reload", || {
        b.run(&["update", "sync", "mysync", "autokick=1"]);
        // A daemon that does not answer yet makes `reload` exit with "not running": wait for it.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = b.output(&["reload", "config"]);
            if out.status.success() {
                break;
            }
            let text = String::from_utf8_lossy(&out.stderr).to_string()
                + &String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains("not running") && Instant::now() < deadline,
                "bucardo reload config failed ({}): {text}",
                out.status
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    step(&mut spans, "kick: replay the interim deltas", || {
        // Exit 0 is DONE, 1 a timeout, 2 a failed run: only 0 ends the procedure.
        let text = b.run(&["kick", "sync", "mysync", "120", "--notimer"]);
        assert!(text.contains("DONE"), "the kick did not say DONE: {text}");
    });
    spans
}

// ---------------------------------------------------------------------------------------------
// Procedure 2: the tool, headless, with the test suite's flags.

fn tool(sb: &Sandbox, extra: &[String]) -> Vec<Span> {
    let run = common::run_tool(sb, DB, BUCARDO_PASS, extra);
    for s in &run.spans {
        eprintln!("  tool: {} {:.1} s", s.label, s.end - s.start);
    }
    run.spans
}
