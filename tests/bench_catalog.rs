//! Benchmark, not a pass/fail test: builds 10,000 tables on a sandbox cluster (each with a serial
//! primary key, a unique index, a foreign key to the previous table and a trigger on every
//! tenth) and prints how long `list_tables` takes. Run it with
//! `cargo test --release --test bench_catalog -- --ignored --nocapture`.

mod zoo;

use bucardo_bootstrap::engine::catalog::list_tables;
use bucardo_bootstrap::engine::conn::Side;
use bucardo_bootstrap::sandbox::{self, Sandbox, SandboxOptions};
use std::time::Instant;

const TABLES: usize = 10_000;
const BATCH: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: builds 10,000 tables; run with --ignored --nocapture"]
async fn list_10k_tables() {
    let sb = tokio::task::spawn_blocking(|| {
        sandbox::require_tools().expect("PostgreSQL 15, PL/Perl and Bucardo must be installed");
        let sb = Sandbox::start(SandboxOptions::default()).expect("sandbox starts");
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
}
