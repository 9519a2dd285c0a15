//! The copy benchmark (not a test): `cargo bench --bench copy`.
//!
//! Builds two local sandbox clusters, loads `assets/bench/dataset.sql` (~750 MB: a 3.5M-row
//! table, jsonb/bytea/text tables, 220 small tables) on HERE and its schema on THERE, then times,
//! alternating round after round (each round starting one contender later), the seed's pipeline
//! `pg_dump --data-only -N bucardo | PGOPTIONS='-c session_replication_role=replica' psql` and
//! our copy (`bucardo-bootstrap copy --tables all`, the release binary, whose peak RSS the
//! kernel reports through `wait4`), emptying THERE before each run. Prints the medians, the ratio ours/seed's and our peak RSS.
//!
//! Environment:
//! - `COPY_BENCH_ROUNDS` (default 3), `COPY_BENCH_JOBS` (default: one per core, at least 2);
//! - `COPY_BENCH_VARIANTS`: extra contenders in the same rotation, comma-separated: `text` (text
//!   COPY only), `nosplit` (no key ranges), `nodefer` (secondary indexes maintained during the
//!   copy instead of rebuilt in each table's transaction), `dropidx` (THERE's secondary indexes
//!   dropped by the benchmark before the copy and built afterwards, `jobs` at a time, build time
//!   included: the unsafe upper bound of deferral), `jobsN` (N workers);
//! - `COPY_BENCH_HERE` and `COPY_BENCH_THERE`: URIs of existing clusters to use instead of a
//!   sandbox (password in `PGPASSWORD`); the dataset is loaded only if database `bench` is absent;
//! - `COPY_BENCH_KEEP=1` keeps the sandbox directory.

#[allow(dead_code)]
mod common;

use bucardo_bootstrap::engine::settings::default_jobs;
use bucardo_bootstrap::sandbox::{self, measure, Sandbox, SandboxOptions};
use common::median;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

const DATASET_SQL: &str = include_str!("../assets/bench/dataset.sql");
const DB: &str = "bench";

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("the copy benchmark runs with `cargo bench --bench copy`");
        return;
    }
    let rounds: usize = env_num("COPY_BENCH_ROUNDS").unwrap_or(3).max(1);
    let jobs: usize = env_num("COPY_BENCH_JOBS").unwrap_or_else(default_jobs);
    let variants: Vec<String> = std::env::var("COPY_BENCH_VARIANTS")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();

    let (_sandbox, here, there) = servers();
    prepare(&here, &there);

    let mut contenders: Vec<Contender> = vec![
        Contender::Seed,
        Contender::Ours {
            name: "ours".into(),
            jobs,
            env: vec![],
            defer: false,
        },
    ];
    for v in &variants {
        contenders.push(match v.as_str() {
            "text" => Contender::Ours {
                name: v.clone(),
                jobs,
                env: vec![("BUCARDO_BOOTSTRAP_COPY_FORMAT", "text".into())],
                defer: false,
            },
            "nosplit" => Contender::Ours {
                name: v.clone(),
                jobs,
                env: vec![("BUCARDO_BOOTSTRAP_COPY_SPLIT_MB", "0".into())],
                defer: false,
            },
            "nodefer" => Contender::Ours {
                name: v.clone(),
                jobs,
                env: vec![("BUCARDO_BOOTSTRAP_COPY_DEFER_INDEXES", "0".into())],
                defer: false,
            },
            "dropidx" => Contender::Ours {
                name: v.clone(),
                jobs,
                env: vec![],
                defer: true,
            },
            j if j.starts_with("jobs") => {
                let n = j[4..].parse().expect("jobsN");
                Contender::Ours {
                    name: v.clone(),
                    jobs: n,
                    env: vec![],
                    defer: false,
                }
            }
            other => panic!("unknown variant {other}"),
        });
    }
    let mut times: Vec<Vec<f64>> = vec![vec![]; contenders.len()];
    let mut peak_kb: u64 = 0;
    // Each round starts one contender later, so that none always follows the same one.
    for round in 1..=rounds {
        for k in 0..contenders.len() {
            let i = (k + round - 1) % contenders.len();
            let c = &contenders[i];
            empty_there(&there);
            let (secs, rss) = c.run(&here, &there);
            eprintln!(
                "round {round}: {:<8} {secs:7.2} s{}",
                c.name(),
                rss.map(|k| format!("  peak RSS {:.1} MB", k as f64 / 1024.0))
                    .unwrap_or_default()
            );
            times[i].push(secs);
            if matches!(c, Contender::Ours { name, .. } if name == "ours") {
                peak_kb = peak_kb.max(rss.unwrap_or(0));
            }
        }
    }
    check_identical(&here, &there);

    let seed = median(&times[0]);
    println!(
        "\ncopy benchmark: {} on HERE, {rounds} rounds, {jobs} workers, {} cores",
        db_size(&here),
        default_jobs()
    );
    for (c, t) in contenders.iter().zip(&times) {
        let m = median(t);
        println!(
            "  {:<8} median {m:7.2} s  (runs: {})  ratio to seed {:.2}",
            c.name(),
            t.iter()
                .map(|x| format!("{x:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            m / seed
        );
    }
    println!(
        "  ours/seed ratio {:.2} (goal <= 0.70), our peak RSS {:.1} MB (goal <= 64)",
        median(&times[1]) / seed,
        peak_kb as f64 / 1024.0
    );
}

enum Contender {
    Seed,
    Ours {
        name: String,
        jobs: usize,
        env: Vec<(&'static str, String)>,
        defer: bool,
    },
}

impl Contender {
    fn name(&self) -> &str {
        match self {
            Contender::Seed => "seed",
            Contender::Ours { name, .. } => name,
        }
    }

    /// Seconds taken, and the peak RSS in kB for our copy.
    fn run(&self, here: &Server, there: &Server) -> (f64, Option<u64>) {
        match self {
            Contender::Seed => {
                let script = format!(
                    "set -o pipefail; '{}' --data-only -N bucardo -d '{}' | PGOPTIONS='-c session_replication_role=replica' '{}' -X -q -v ON_ERROR_STOP=1 -d '{}' >/dev/null",
                    here.tool("pg_dump"),
                    here.uri,
                    there.tool("psql"),
                    there.uri
                );
                let t = Instant::now();
                let st = Command::new("bash")
                    .arg("-c")
                    .arg(script)
                    .env("PGPASSWORD", &here.password)
                    .status()
                    .expect("bash");
                assert!(st.success(), "the seed's pipeline failed");
                (t.elapsed().as_secs_f64(), None)
            }
            Contender::Ours {
                jobs, env, defer, ..
            } => {
                let t = Instant::now();
                let indexes = if *defer {
                    drop_secondary_indexes(there)
                } else {
                    vec![]
                };
                let logs = tempfile::tempdir().expect("a log directory");
                let mut cmd = Command::new(env!("CARGO_BIN_EXE_bucardo-bootstrap"));
                cmd.args(["copy", "--here", &here.uri, "--there", &there.uri])
                    .args(["--tables", "all", "--jobs", &jobs.to_string(), "--log-dir"])
                    .arg(logs.path())
                    .env("PGPASSWORD", &here.password);
                for (k, v) in env {
                    cmd.env(k, v);
                }
                let (out, peak_kb) =
                    measure::output_with_peak_rss(&mut cmd).expect("our copy runs");
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(out.status.success(), "our copy failed:\n{err}");
                build_indexes(there, &indexes, *jobs);
                let secs = t.elapsed().as_secs_f64();
                if std::env::var_os("COPY_BENCH_VERBOSE").is_some() {
                    eprintln!("{err}");
                }
                (secs, Some(peak_kb))
            }
        }
    }
}

struct Server {
    uri: String,
    password: String,
    bindir: PathBuf,
}

impl Server {
    fn tool(&self, name: &str) -> String {
        self.bindir.join(name).display().to_string()
    }

    fn psql(&self, db_uri: &str, sql: &str) -> String {
        let out = Command::new(self.tool("psql"))
            .args([
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                db_uri,
                "-c",
                sql,
            ])
            .env("PGPASSWORD", &self.password)
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn sql(&self, sql: &str) -> String {
        self.psql(&self.uri, sql)
    }
}

fn servers() -> (Option<Sandbox>, Server, Server) {
    let bindir = sandbox::pg_bindir().expect("PostgreSQL server binaries");
    if let (Ok(h), Ok(t)) = (
        std::env::var("COPY_BENCH_HERE"),
        std::env::var("COPY_BENCH_THERE"),
    ) {
        let pw = std::env::var("PGPASSWORD").unwrap_or_default();
        let with_db = |u: &str| {
            format!(
                "{}/{DB}",
                u.trim_end_matches('/')
                    .rsplit_once('/')
                    .map(|(a, _)| a)
                    .unwrap_or(u)
            )
        };
        return (
            None,
            Server {
                uri: with_db(&h),
                password: pw.clone(),
                bindir: bindir.clone(),
            },
            Server {
                uri: with_db(&t),
                password: pw,
                bindir,
            },
        );
    }
    sandbox::require_tools().expect("PostgreSQL 15 must be installed");
    let keep = std::env::var_os("COPY_BENCH_KEEP").is_some();
    let sb = Sandbox::start(SandboxOptions {
        keep,
        ..SandboxOptions::default()
    })
    .expect("sandbox starts");
    eprintln!("sandbox in {}", sb.root.display());
    let here = Server {
        uri: sb.here.uri(DB),
        password: sb.password.clone(),
        bindir: bindir.clone(),
    };
    let there = Server {
        uri: sb.there.uri(DB),
        password: sb.password.clone(),
        bindir,
    };
    (Some(sb), here, there)
}

/// Loads the dataset on HERE (unless there) and its schema on THERE.
fn prepare(here: &Server, there: &Server) {
    let admin = |s: &Server| s.uri.replace(&format!("/{DB}"), "/postgres");
    if here.psql(
        &admin(here),
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{DB}'"),
    ) == "0"
    {
        eprintln!("building the dataset on HERE (takes a minute)...");
        let t = Instant::now();
        here.psql(&admin(here), &format!("CREATE DATABASE {DB}"));
        let mut psql = Command::new(here.tool("psql"));
        psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &here.uri])
            .env("PGPASSWORD", &here.password);
        common::feed_psql(psql, DATASET_SQL);
        here.sql("VACUUM ANALYZE");
        eprintln!(
            "dataset built in {:.0} s: {}",
            t.elapsed().as_secs_f64(),
            db_size(here)
        );
    }
    there.psql(&admin(there), &format!("DROP DATABASE IF EXISTS {DB}"));
    there.psql(&admin(there), &format!("CREATE DATABASE {DB}"));
    let script = format!(
        "set -o pipefail; '{}' --schema-only -d '{}' | '{}' -X -q -v ON_ERROR_STOP=1 -d '{}' >/dev/null",
        here.tool("pg_dump"),
        here.uri,
        there.tool("psql"),
        there.uri
    );
    let st = Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("PGPASSWORD", &here.password)
        .status()
        .expect("bash");
    assert!(st.success(), "schema copy failed");
}

fn empty_there(there: &Server) {
    there.sql(
        "DO $$ BEGIN EXECUTE (SELECT 'TRUNCATE ' || string_agg(c.oid::regclass::text, ', ') FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname IN ('public', 'small')); END $$",
    );
    there.sql("CHECKPOINT");
}

/// Drops THERE's indexes that back no constraint; returns their definitions.
fn drop_secondary_indexes(there: &Server) -> Vec<String> {
    let defs = there.sql(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname IN ('public', 'small') \
         AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)",
    );
    let defs: Vec<String> = defs.lines().map(str::to_string).collect();
    if !defs.is_empty() {
        there.sql(
            "DO $$ BEGIN EXECUTE (SELECT 'DROP INDEX ' || string_agg(i.indexrelid::regclass::text, ', ') FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname IN ('public', 'small') \
             AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)); END $$",
        );
    }
    defs
}

fn build_indexes(there: &Server, defs: &[String], jobs: usize) {
    let queue = std::sync::Mutex::new(defs.to_vec());
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| loop {
                let Some(def) = queue.lock().expect("queue").pop() else {
                    break;
                };
                there.sql(&format!("SET maintenance_work_mem = '256MB'; {def}"));
            });
        }
    });
}

/// Every table has the same row count and checksum on both sides after our copy.
fn check_identical(here: &Server, there: &Server) {
    let sql = "SELECT string_agg(format('%s %s %s', c.oid::regclass, \
               (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %s', c.oid::regclass), false, true, '')))[1], \
               (xpath('/row/m/text()', query_to_xml(format('SELECT md5(string_agg(md5(t::text), '''' ORDER BY t::text)) AS m FROM %s t', c.oid::regclass), false, true, '')))[1]), E'\\n' ORDER BY c.relname) \
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
               WHERE c.relkind = 'r' AND n.nspname IN ('public', 'small') AND c.relname IN ('documents', 'attachments', 'comments', 't001', 't220')";
    let (h, t) = (here.sql(sql), there.sql(sql));
    assert_eq!(h, t, "THERE differs from HERE after the last run");
    let count = "SELECT count(*) || ' ' || sum(id) FROM public.ledger";
    assert_eq!(here.sql(count), there.sql(count), "ledger differs");
}

fn db_size(s: &Server) -> String {
    s.sql(&format!("SELECT pg_size_pretty(pg_database_size('{DB}'))"))
}

fn env_num(k: &str) -> Option<usize> {
    std::env::var(k).ok().and_then(|v| v.parse().ok())
}
