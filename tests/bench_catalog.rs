//! Benchmark, not a pass/fail test: builds 10,000 tables on a sandbox cluster (each with a serial
//! primary key, a unique index, a foreign key to the previous table and a trigger on every
//! tenth), then prints how long `list_tables` and HERE's whole catalog take (`Catalog::read` on
//! one session, `Catalog::read_on` on two, as `plan` reads it), and the wall time and peak RSS
//! of the real binary's `check --tables all` and `plan --tables all`, three runs each: first
//! with an empty database on THERE, then with HERE's schema restored there
//! (`pg_dump --schema-only | psql`), so that THERE's side is listed and looked into too. Run it
//! with `cargo test --release --test bench_catalog -- --ignored --nocapture` (about 2 minutes to
//! set up; the release build matters). `BENCH_CATALOG_KEEP=1` keeps the clusters and prints the
//! command line, for profiling the binary by hand.

mod zoo;

use bucardo_bootstrap::engine::catalog::list_tables;
use bucardo_bootstrap::engine::conn::Side;
use bucardo_bootstrap::engine::coverage::Catalog;
use bucardo_bootstrap::sandbox::measure::output_with_peak_rss;
use bucardo_bootstrap::sandbox::{self, Sandbox, SandboxOptions};
use std::process::{Command, Stdio};
use std::time::Instant;

const TABLES: usize = 10_000;
const BATCH: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: builds 10,000 tables; run with --ignored --nocapture"]
async fn list_10k_tables() {
    let sb = tokio::task::spawn_blocking(|| {
        sandbox::require_tools().expect("PostgreSQL 15, PL/Perl and Bucardo must be installed");
        let keep = std::env::var_os("BENCH_CATALOG_KEEP").is_some();
        let sb = Sandbox::start(SandboxOptions {
            keep,
            ..SandboxOptions::default()
        })
        .expect("sandbox starts");
        sb.fit_lock_tables(TABLES as u64).unwrap();
        sb.here.psql("postgres", "CREATE DATABASE zoo").unwrap();
        sb.here
            .psql(
                "zoo",
                "CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'",
            )
            .unwrap();
        let started = Instant::now();
        // One transaction per batch: 10,000 tables at once would exhaust the lock table.
        for first in (1..=TABLES).step_by(BATCH) {
            let last = first + BATCH - 1;
            sb.here
                .psql(
                    "zoo",
                    &format!(
                        "DO $$ BEGIN FOR i IN {first}..{last} LOOP
                           EXECUTE format('CREATE TABLE t%s (id serial PRIMARY KEY, code text NOT NULL UNIQUE, prev integer %s, at timestamptz DEFAULT now())',
                                          i, CASE WHEN i > 1 THEN format('REFERENCES t%s', i - 1) ELSE '' END);
                           IF i % 10 = 0 THEN
                             EXECUTE format('CREATE TRIGGER t%s_noop BEFORE INSERT ON t%s FOR EACH ROW EXECUTE FUNCTION noop()', i, i);
                           END IF;
                         END LOOP; END $$"
                    ),
                )
                .unwrap();
        }
        sb.here.psql("zoo", "ANALYZE").unwrap();
        sb.there.psql("postgres", "CREATE DATABASE zoo").unwrap();
        eprintln!("built {TABLES} tables in {:.1} s", started.elapsed().as_secs_f64());
        sb
    })
    .await
    .unwrap();
    let s = zoo::settings(&sb, "all");
    let c = s.here.connect(Side::Here).await.unwrap();
    for run in 1..=3 {
        let started = Instant::now();
        let all = list_tables(&c, Side::Here, None).await.unwrap();
        let took = started.elapsed();
        assert_eq!(all.len(), TABLES);
        assert!(all.iter().all(|t| t.is_eligible()));
        eprintln!(
            "list_tables of {} tables, run {run}: {:.3} s",
            all.len(),
            took.as_secs_f64()
        );
    }
    for run in 1..=3 {
        let started = Instant::now();
        let catalog = Catalog::read(&c, Side::Here).await.unwrap();
        let took = started.elapsed();
        assert_eq!(catalog.tables.len(), TABLES);
        eprintln!(
            "Catalog::read (tables, sequences, materialized views), run {run}: {:.3} s",
            took.as_secs_f64()
        );
    }
    let second = s.here.connect(Side::Here).await.unwrap();
    for run in 1..=3 {
        let started = Instant::now();
        let catalog = Catalog::read_on(&c, &second, Side::Here).await.unwrap();
        let took = started.elapsed();
        assert_eq!(catalog.tables.len(), TABLES);
        eprintln!(
            "Catalog::read_on two sessions, run {run}: {:.3} s",
            took.as_secs_f64()
        );
    }
    drop((c, second));

    tokio::task::block_in_place(|| {
        commands(&sb, "THERE: an empty database");
        let started = Instant::now();
        copy_schema(&sb);
        eprintln!(
            "restored HERE's schema on THERE in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        commands(&sb, "THERE: HERE's schema, empty tables");
        if sb.keep() {
            eprintln!("kept: {:?}", tool(&sb, "plan"));
        }
    });
}

/// `check` and `plan` of the real binary, three runs each: seconds and peak RSS.
fn commands(sb: &Sandbox, there: &str) {
    for cmd in ["check", "plan"] {
        for run in 1..=3 {
            let started = Instant::now();
            let (out, kb) = output_with_peak_rss(&mut tool(sb, cmd)).expect("the tool runs");
            let took = started.elapsed();
            assert!(
                out.status.success(),
                "{cmd} failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            eprintln!(
                "{cmd} --tables all ({there}), run {run}: {:.3} s, peak RSS {:.1} MB, {} lines out",
                took.as_secs_f64(),
                kb as f64 / 1024.0,
                out.stdout.iter().filter(|b| **b == b'\n').count()
            );
        }
    }
}

/// The binary run headless against the sandbox, as an operator would.
fn tool(sb: &Sandbox, cmd: &str) -> Command {
    let mut c = sb.tool_command(
        std::path::Path::new(env!("CARGO_BIN_EXE_bucardo-bootstrap")),
        zoo::BUCARDO_PASS,
    );
    c.args([cmd, "--tables", "all"])
        .args(sb.tool_flags("zoo"))
        .stdin(Stdio::null());
    c
}

/// `pg_dump --schema-only` of HERE restored into THERE's (empty) database.
fn copy_schema(sb: &Sandbox) {
    let mut dump = Command::new(sb.here.bindir.join("pg_dump"));
    dump.args(["-h", &sb.here.host, "-p", &sb.here.port.to_string()])
        .args(["-U", "postgres", "--schema-only", "-d", "zoo"])
        .env("PGPASSWORD", &sb.password)
        .stdout(Stdio::piped());
    let mut dump = dump.spawn().expect("pg_dump starts");
    let mut restore = sb.there.psql_command("zoo");
    // Not in one transaction: restoring 10,000 tables at once would exhaust the lock table.
    restore
        .arg("-q")
        .stdin(dump.stdout.take().expect("piped"))
        .stdout(Stdio::null());
    let restored = restore.status().expect("psql runs");
    assert!(dump.wait().expect("pg_dump").success(), "pg_dump failed");
    assert!(restored.success(), "restoring the schema failed");
    sb.there.psql("zoo", "ANALYZE").unwrap();
}
