//! The scaling benchmark (not a test): `cargo bench --bench scale`.
//!
//! How do the whole bootstrap's time and memory grow with the data and with the table count?
//! Each case gets fresh sandbox clusters and runs the release binary's `run --yes --tables all`
//! (verification on), timing every step from its headless lines and reading its peak RSS from
//! the kernel (`wait4`'s `ru_maxrss`, which counts the programs the tool ran too: pg_dump,
//! Bucardo's CLI). It also prints each program's own peak, sampled in the process tree, and the
//! tool's own peak by the end of each step. Two series:
//!
//! - `data`: `assets/bench/dataset.sql` (four large tables of ledger rows, jsonb, bytea and text,
//!   and 220 small tables) at 1×, 4× and 16× a base size (`SCALE_BENCH_BASE_MB`, 1024 MB). Before
//!   the tool, the seed's own pipeline (`pg_dump --data-only -N bucardo | psql` with
//!   `session_replication_role=replica`) fills a scratch database on THERE, timed, then the
//!   scratch database is dropped: the copy step's ratio to it is printed. A size that the disk
//!   cannot hold (HERE, THERE and their WAL: 2.5× the size plus 2 GB free) is skipped, and said.
//! - `tables`: 100, 1,000 and 10,000 tables, each with a serial key, a unique index, a foreign
//!   key to the previous table and 10 rows, and a trigger on every tenth. Both clusters get the
//!   `max_locks_per_transaction` the preflight asks for (`Sandbox::fit_lock_tables`): each run of
//!   the sync locks every table's delta and track tables in one transaction.
//!
//! Environment: `SCALE_BENCH=data|tables` (default both), `SCALE_BENCH_SIZES` (`1,4,16`),
//! `SCALE_BENCH_TABLES` (`100,1000,10000`), `SCALE_BENCH_BASE_MB`, `SCALE_BENCH_ROUNDS` (1),
//! `SCALE_BENCH_TOOL_ARGS` (extra arguments for the tool), `SCALE_BENCH_KEEP=1` (keep each
//! sandbox; the tool's timestamped output is `tool-stderr.log` there).

#[allow(dead_code)]
mod common;

use bucardo_bootstrap::sandbox::{self, Sandbox, SandboxOptions};
use common::{median, ToolRun};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

const DB: &str = "bench";
const BUCARDO_PASS: &str = "scale-bench-bucardo-3";
const DATASET_SQL: &str = include_str!("../assets/bench/dataset.sql");
/// `dataset.sql` at factor 1, on disk.
const DATASET_MB: f64 = 767.0;
const ROWS_PER_TABLE: usize = 10;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("the scaling benchmark runs with `cargo bench --bench scale`");
        return;
    }
    sandbox::require_tools().expect("PostgreSQL 15, PL/Perl and Bucardo must be installed");
    let which = std::env::var("SCALE_BENCH").unwrap_or_default();
    let list = |k: &str, d: &str| -> Vec<usize> {
        std::env::var(k)
            .unwrap_or_else(|_| d.into())
            .split(',')
            .filter_map(|v| v.trim().parse().ok())
            .collect()
    };
    let rounds = list("SCALE_BENCH_ROUNDS", "1")
        .first()
        .copied()
        .unwrap_or(1);
    let base_mb = list("SCALE_BENCH_BASE_MB", "1024")
        .first()
        .copied()
        .unwrap_or(1024) as f64;
    let extra: Vec<String> = std::env::var("SCALE_BENCH_TOOL_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect();
    let keep = std::env::var_os("SCALE_BENCH_KEEP").is_some();
    let mut results: Vec<Case> = Vec::new();
    for round in 1..=rounds {
        if which.is_empty() || which == "tables" {
            for n in list("SCALE_BENCH_TABLES", "100,1000,10000") {
                eprintln!("\n== round {round}: {n} tables");
                results.push(tables_case(n, keep, &extra));
                results.last().unwrap().print();
            }
        }
        if which.is_empty() || which == "data" {
            for size in list("SCALE_BENCH_SIZES", "1,4,16") {
                eprintln!("\n== round {round}: data {size}× ({base_mb:.0} MB each)");
                match data_case(size, base_mb, keep, &extra) {
                    Some(c) => {
                        c.print();
                        results.push(c);
                    }
                    None => eprintln!("  skipped: the disk cannot hold it"),
                }
            }
        }
    }
    summary(&results);
}

/// One run of one case.
struct Case {
    name: String,
    /// What HERE held: the database's size on disk, in MB, and its table count.
    here_mb: f64,
    tables: usize,
    total_s: f64,
    /// Each step's label, seconds, and the peak RSS (kB) reached by its end.
    steps: Vec<(String, f64, u64)>,
    /// The whole process tree's peak (the kernel's `wait4` figure: the tool and every program
    /// it ran, pg_dump and Bucardo's CLI among them).
    peak_kb: u64,
    /// The tool's own peak, as last read while it ran.
    own_kb: u64,
    /// Each program's largest peak seen in the tree.
    programs: BTreeMap<String, u64>,
    /// The seed's `pg_dump --data-only | psql` on the same data, when measured.
    seed_s: Option<f64>,
    /// The tool's own lines about locks on HERE and its copy workers.
    notes: Vec<String>,
}

impl Case {
    fn step(&self, prefix: &str) -> Option<f64> {
        self.steps
            .iter()
            .filter(|(l, _, _)| {
                l.split_once(' ')
                    .map(|x| x.1)
                    .unwrap_or(l)
                    .starts_with(prefix)
            })
            .map(|(_, s, _)| *s)
            .reduce(|a, b| a + b)
    }

    fn print(&self) {
        eprintln!(
            "  {}: HERE {:.0} MB, {} tables; whole run {:.1} s, peak RSS {:.1} MB (the tool's own {:.1} MB)",
            self.name,
            self.here_mb,
            self.tables,
            self.total_s,
            self.peak_kb as f64 / 1024.0,
            self.own_kb as f64 / 1024.0
        );
        let programs: Vec<String> = self
            .programs
            .iter()
            .map(|(p, kb)| format!("{p} {:.1} MB", *kb as f64 / 1024.0))
            .collect();
        eprintln!("    peak RSS by program: {}", programs.join(", "));
        for (label, s, kb) in &self.steps {
            eprintln!(
                "    {label:<48} {s:>8.1} s   peak by its end {:>6.1} MB",
                *kb as f64 / 1024.0
            );
        }
        if let (Some(seed), Some(copy)) = (self.seed_s, self.step("Copy the data")) {
            eprintln!(
                "    seed pipeline {seed:.1} s; the copy step {copy:.1} s = {:.2} × the seed",
                copy / seed
            );
        }
        for n in &self.notes {
            eprintln!("    | {n}");
        }
    }
}

fn summary(results: &[Case]) {
    let mut by: BTreeMap<(usize, String), Vec<&Case>> = BTreeMap::new();
    for (i, c) in results.iter().enumerate() {
        let first = results.iter().position(|x| x.name == c.name).unwrap_or(i);
        by.entry((first, c.name.clone())).or_default().push(c);
    }
    eprintln!("\n== medians over {} run(s) per case", {
        by.values().map(Vec::len).max().unwrap_or(0)
    });
    eprintln!(
        "{:<14} {:>8} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7} {:>8} {:>8}",
        "case",
        "HERE MB",
        "tables",
        "whole s",
        "bucardo",
        "copy s",
        "seed s",
        "ratio",
        "vacuum s",
        "verify s",
        "other",
        "RSS MB",
        "own MB"
    );
    for ((_, name), cs) in by {
        let m = |f: &dyn Fn(&Case) -> Option<f64>| -> Option<f64> {
            let v: Vec<f64> = cs.iter().filter_map(|c| f(c)).collect();
            (!v.is_empty()).then(|| median(&v))
        };
        let fmt = |v: Option<f64>, p: usize| v.map_or("-".into(), |v| format!("{v:.p$}"));
        let bucardo = |c: &Case| -> Option<f64> {
            [
                "Register both databases",
                "Add the tables",
                "Create the dbgroup",
                "Create the sync",
                "Enable the sync",
            ]
            .iter()
            .filter_map(|p| c.step(p))
            .reduce(|a, b| a + b)
        };
        let copy = |c: &Case| c.step("Copy the data");
        let vacuum = |c: &Case| c.step("Vacuum and analyse THERE");
        // The comparison is two steps: the chunks before the sync is enabled, the rounds after.
        let verify = |c: &Case| {
            ["Compare the copy", "Verify both sides"]
                .iter()
                .filter_map(|p| c.step(p))
                .reduce(|a, b| a + b)
        };
        let whole = |c: &Case| Some(c.total_s);
        let other = |c: &Case| {
            Some(
                c.total_s
                    - bucardo(c).unwrap_or(0.0)
                    - copy(c).unwrap_or(0.0)
                    - vacuum(c).unwrap_or(0.0)
                    - verify(c)?,
            )
        };
        let ratio = |c: &Case| Some(copy(c)? / c.seed_s?);
        eprintln!(
            "{:<14} {:>8} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7} {:>8} {:>8}",
            name,
            fmt(m(&|c| Some(c.here_mb)), 0),
            cs[0].tables,
            fmt(m(&whole), 1),
            fmt(m(&bucardo), 1),
            fmt(m(&copy), 1),
            fmt(m(&|c| c.seed_s), 1),
            fmt(m(&ratio), 2),
            fmt(m(&vacuum), 1),
            fmt(m(&verify), 1),
            fmt(m(&other), 1),
            fmt(m(&|c| Some(c.peak_kb as f64 / 1024.0)), 1),
            fmt(m(&|c| Some(c.own_kb as f64 / 1024.0)), 1),
        );
    }
}

fn start(keep: bool) -> Sandbox {
    let sb = Sandbox::start(SandboxOptions {
        keep,
        ..SandboxOptions::default()
    })
    .expect("sandbox starts");
    eprintln!("  sandbox in {}", sb.root.display());
    sb.there
        .psql("postgres", &format!("CREATE DATABASE {DB}"))
        .expect("THERE's database");
    sb
}

fn finish(
    sb: Sandbox,
    name: String,
    tables: usize,
    seed_s: Option<f64>,
    run: ToolRun,
    t: f64,
) -> Case {
    let here_mb: f64 = sb
        .here
        .psql(DB, &format!("SELECT pg_database_size('{DB}') / 1048576.0"))
        .expect("size")
        .trim()
        .parse()
        .unwrap_or(0.0);
    if sb.keep() {
        eprintln!("  kept {}", sb.root.display());
    }
    drop(sb);
    let notes = run
        .lines
        .iter()
        .map(|(_, l)| l)
        .filter(|l| {
            let l = l.to_lowercase();
            l.contains("lock") || l.contains("idle") || l.contains("batch")
        })
        .take(20)
        .cloned()
        .collect();
    Case {
        name,
        here_mb,
        tables,
        total_s: t,
        steps: run
            .spans
            .iter()
            .map(|s| (s.label.clone(), s.end - s.start, run.peak_by(s.end)))
            .collect(),
        peak_kb: run.peak_kb,
        own_kb: run.hwm.last().map_or(0, |(_, kb)| *kb),
        programs: run.programs.clone(),
        seed_s,
        notes,
    }
}

fn tables_case(n: usize, keep: bool, extra: &[String]) -> Case {
    let sb = start(keep);
    // Each run of the sync locks every table's delta and track tables in one transaction, and
    // pg_dump every table: the preflight asks for a larger lock table, as on a real server.
    if let Some(per_tx) = sb
        .fit_lock_tables(n as u64)
        .expect("max_locks_per_transaction")
    {
        eprintln!("  max_locks_per_transaction = {per_tx} on both clusters");
    }
    sb.here
        .psql("postgres", &format!("CREATE DATABASE {DB}"))
        .expect("HERE's database");
    sb.here
        .psql(
            DB,
            "CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'",
        )
        .expect("noop()");
    let t = Instant::now();
    // One transaction per 500 tables: all of them at once would exhaust the lock table.
    for first in (1..=n).step_by(500) {
        let last = (first + 499).min(n);
        sb.here
            .psql(
                DB,
                &format!(
                    "DO $$ BEGIN FOR i IN {first}..{last} LOOP
                       EXECUTE format('CREATE TABLE t%s (id serial PRIMARY KEY, code text NOT NULL UNIQUE, prev integer %s, at timestamptz DEFAULT now())',
                                      i, CASE WHEN i > 1 THEN format('REFERENCES t%s', i - 1) ELSE '' END);
                       EXECUTE format('INSERT INTO t%s (code, prev) SELECT md5(g::text), %s FROM generate_series(1, {ROWS_PER_TABLE}) g',
                                      i, CASE WHEN i > 1 THEN 'g' ELSE 'NULL' END);
                       IF i % 10 = 0 THEN
                         EXECUTE format('CREATE TRIGGER t%s_noop BEFORE INSERT ON t%s FOR EACH ROW EXECUTE FUNCTION noop()', i, i);
                       END IF;
                     END LOOP; END $$"
                ),
            )
            .expect("tables");
    }
    sb.here.psql(DB, "VACUUM ANALYZE").expect("analyze");
    eprintln!("  {n} tables built in {:.0} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let run = common::run_tool(&sb, DB, BUCARDO_PASS, extra);
    let took = t.elapsed().as_secs_f64();
    finish(sb, format!("{n} tables"), n, None, run, took)
}

fn data_case(size: usize, base_mb: f64, keep: bool, extra: &[String]) -> Option<Case> {
    let bytes = size as f64 * base_mb * 1048576.0;
    let free = free_bytes(&std::env::temp_dir());
    if free < 2.5 * bytes + 2.0 * 1073741824.0 {
        eprintln!(
            "  {:.1} GB free in {}, {:.1} GB needed",
            free / 1073741824.0,
            std::env::temp_dir().display(),
            (2.5 * bytes + 2.0 * 1073741824.0) / 1073741824.0
        );
        return None;
    }
    let sb = start(keep);
    sb.here
        .psql("postgres", &format!("CREATE DATABASE {DB}"))
        .expect("HERE's database");
    let factor = size as f64 * base_mb / DATASET_MB;
    let t = Instant::now();
    let mut psql = sb.here.psql_command(DB);
    psql.args(["-q", "-v", &format!("factor={factor:.4}")]);
    common::feed_psql(psql, DATASET_SQL);
    sb.here.psql(DB, "VACUUM ANALYZE").expect("analyze");
    sb.here.psql(DB, "CHECKPOINT").expect("checkpoint");
    eprintln!(
        "  dataset (factor {factor:.2}) built in {:.0} s",
        t.elapsed().as_secs_f64()
    );
    let seed_s = seed_pipeline(&sb);
    eprintln!("  seed pipeline: {seed_s:.1} s");
    let t = Instant::now();
    let run = common::run_tool(&sb, DB, BUCARDO_PASS, extra);
    let took = t.elapsed().as_secs_f64();
    let tables: usize = 224;
    Some(finish(
        sb,
        format!("data {size}×"),
        tables,
        Some(seed_s),
        run,
        took,
    ))
}

/// The seed's data pipeline into a scratch database on THERE with the schema, timed; the
/// scratch database is dropped after.
fn seed_pipeline(sb: &Sandbox) -> f64 {
    let scratch = "seedcopy";
    sb.there
        .psql("postgres", &format!("CREATE DATABASE {scratch}"))
        .expect("scratch database");
    let pipe = |args: &str| {
        let script = format!(
            "set -o pipefail; '{}' {args} -d '{}' | PGOPTIONS='-c session_replication_role=replica' '{}' -X -q -v ON_ERROR_STOP=1 -d '{}' >/dev/null",
            sb.here.bindir.join("pg_dump").display(),
            sb.here.uri(DB),
            sb.there.bindir.join("psql").display(),
            sb.there.uri(scratch)
        );
        let st = Command::new("bash")
            .arg("-c")
            .arg(script)
            .env("PGPASSWORD", &sb.password)
            .status()
            .expect("bash");
        assert!(st.success(), "pg_dump {args} | psql failed");
    };
    pipe("--schema-only");
    let t = Instant::now();
    pipe("--data-only -N bucardo");
    let took = t.elapsed().as_secs_f64();
    sb.there
        .psql("postgres", &format!("DROP DATABASE {scratch}"))
        .expect("drop the scratch database");
    sb.there.psql("postgres", "CHECKPOINT").expect("checkpoint");
    took
}

fn free_bytes(dir: &std::path::Path) -> f64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(dir)
        .output()
        .expect("df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0.0)
}
