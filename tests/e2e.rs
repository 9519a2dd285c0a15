//! End to end, against real PostgreSQL and Bucardo: `run --yes` bootstraps master/master
//! replication while a writer changes HERE the whole time; afterwards writers on both sides keep
//! going, and every table ends identical with every committed write present on both sides.

mod common;

use bucardo_bootstrap::sandbox::writer::{check_eventually, Writer, WriterOptions};
use common::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_bootstraps_master_master_under_live_writes() {
    let sb = tokio::task::spawn_blocking(|| sandbox_with_widgets(1)).await.unwrap();
    let rows_before: i64 = REPLICATED
        .iter()
        .map(|t| sb.here.psql("widgets", &format!("SELECT count(*) FROM {t}")).unwrap().trim().parse::<i64>().unwrap())
        .sum();
    assert!(rows_before >= 100_000, "the e2e database has {rows_before} rows");

    let here_writer = Writer::start(sb.here.pg_config("widgets"), "here", 10_000_000).await.unwrap();
    let started = Instant::now();
    let mut cmd = tool(&sb);
    cmd.arg("run").arg("--yes").args(conn_flags(&sb, "all"));
    let out = tokio::task::spawn_blocking(move || cmd.output()).await.unwrap().unwrap();
    let bootstrap_time = started.elapsed();
    let writes_during = here_writer.commits();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{}", show(&out));
    assert!(stderr.contains("left out public.audit_log"), "the keyless table is named: {stderr}");
    assert!(!stderr.contains(&sb.password) && !stderr.contains(BUCARDO_PASS), "a password leaked: {stderr}");

    // Both masters take writes now, with their own keys.
    let mut there_opts = WriterOptions::new("there", 20_000_000);
    there_opts.customer_ids = 1001..=2000;
    let there_writer = Writer::start_with(sb.there.pg_config("widgets"), there_opts).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let here_report = here_writer.stop().await;
    let there_report = there_writer.stop().await;
    assert!(here_report.commits > 0 && there_report.commits > 0);

    let here = tokio_postgres_client(&sb.here).await;
    let there = tokio_postgres_client(&sb.there).await;
    for (report, side) in [(&here_report, "HERE writer"), (&there_report, "THERE writer")] {
        check_eventually(report, &here, Duration::from_secs(60)).await.unwrap_or_else(|e| panic!("{side} on HERE: {e}"));
        check_eventually(report, &there, Duration::from_secs(60)).await.unwrap_or_else(|e| panic!("{side} on THERE: {e}"));
    }
    let sb2 = &sb;
    tokio::task::block_in_place(|| wait_identical(sb2, Duration::from_secs(60))).expect("tables converge");

    // Keys handed out by the sequences on both masters never collided: every writer row is there.
    let rows_after: i64 = REPLICATED
        .iter()
        .map(|t| sb.here.psql("widgets", &format!("SELECT count(*) FROM {t}")).unwrap().trim().parse::<i64>().unwrap())
        .sum();
    eprintln!(
        "e2e figures: {rows_before} rows before, bootstrap {:.1} s, {writes_during} HERE transactions during the bootstrap, {} HERE + {} THERE after, {rows_after} rows at the end",
        bootstrap_time.as_secs_f64(),
        here_report.commits,
        there_report.commits
    );
    let logs: Vec<_> = std::fs::read_dir(state_dir(&sb)).unwrap().flatten().collect();
    for f in logs {
        let text = std::fs::read_to_string(f.path()).unwrap_or_default();
        assert!(!text.contains(&sb.password) && !text.contains(BUCARDO_PASS) || f.file_name() == "bucardo.pgpass", "password in {:?}", f.path());
    }
}

async fn tokio_postgres_client(c: &bucardo_bootstrap::sandbox::Cluster) -> tokio_postgres::Client {
    let (client, conn) = c.pg_config("widgets").connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}
