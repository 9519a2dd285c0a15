//! End to end, against real PostgreSQL and Bucardo: `run --yes` bootstraps master/master
//! replication while a writer changes HERE the whole time; afterwards writers on both sides keep
//! going, and every table ends identical with every committed write present on both sides.

mod common;

use bucardo_bootstrap::sandbox::writer::{check_eventually, Writer, WriterOptions};
use common::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_bootstraps_master_master_under_live_writes() {
    let sb = tokio::task::spawn_blocking(|| sandbox_with_widgets(1))
        .await
        .unwrap();
    let rows_before: i64 = REPLICATED
        .iter()
        .map(|t| {
            sb.here
                .psql("widgets", &format!("SELECT count(*) FROM {t}"))
                .unwrap()
                .trim()
                .parse::<i64>()
                .unwrap()
        })
        .sum();
    assert!(
        rows_before >= 100_000,
        "the e2e database has {rows_before} rows"
    );

    // Half of HERE's foo inserts take the identity default, before, during and after the bootstrap.
    // Explicit ids are negative so that they never meet the values the sequences hand out.
    let mut here_opts = WriterOptions::new("here", -2_000_000_000);
    here_opts.customer_ids = 1..=1000;
    here_opts.default_id_share = 0.5;
    let here_writer = Writer::start_with(sb.here.pg_config("widgets"), here_opts)
        .await
        .unwrap();
    let started = Instant::now();
    // A role that exists only on HERE and owns a grant: the schema restore needs --copy-roles.
    sb.here
        .psql(
            "widgets",
            "CREATE ROLE app_reader LOGIN; GRANT SELECT ON public.foo TO app_reader",
        )
        .unwrap();
    let mut cmd = tool(&sb);
    // Without --leave-out: the keyless audit_log is left out unasked, and the exit status says so.
    let flags: Vec<String> = conn_flags(&sb, "all")
        .into_iter()
        .filter(|f| f != "--leave-out" && f != "public.audit_log")
        .collect();
    cmd.arg("run").arg("--yes").arg("--copy-roles").args(flags);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let bootstrap_time = started.elapsed();
    let writes_during = here_writer.commits();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(
        stderr.contains("left out public.audit_log: no primary key"),
        "the keyless table is named with the reason: {stderr}"
    );
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("done: ")
            && last.contains("replicating 6 tables, the same rows on both sides; ")
            && last.contains(" rows compared")
            && last.contains("1 left out (see above)"),
        "the last line says what replicates, how much of it was compared, and what does not: {last}"
    );
    assert!(
        stderr.contains("exit status 3: public.audit_log left out without --leave-out"),
        "{stderr}"
    );
    // The writer's rows since the triggers went in were left out of the Compare step's chunks
    // and compared by key after the replay.
    let foo = stderr
        .lines()
        .map(str::trim_start)
        .find(|l| {
            l.starts_with("public.foo: identical (")
                || l.starts_with("public.foo: still changing (")
        })
        .unwrap_or_else(|| panic!("a verdict for public.foo: {stderr}"));
    assert!(
        foo.contains(" more after replay"),
        "rows written during the copy are compared after the replay: {foo}"
    );
    assert!(
        stderr.lines().any(|l| l.contains("compare: ")
            && l.contains(" tables changed since the triggers went in (or differed)")
            && !l.contains("; 0 rows of")),
        "the Compare step says what it left for Verify: {stderr}"
    );
    // The copy ends with its summary table: a header, a row per table and the wall-clock total.
    assert!(
        stderr.contains("rows      bytes  seconds     MB/s  format  ranges"),
        "the copy summary's header: {stderr}"
    );
    let foo_row = stderr
        .lines()
        .find(|l| l.trim_start().starts_with("public.foo "))
        .unwrap_or_else(|| panic!("a summary row for public.foo: {stderr}"));
    assert!(
        foo_row.contains(" binary ") || foo_row.contains(" text "),
        "{foo_row}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.trim_start().starts_with("total ") && l.contains("wall clock")),
        "the summary's total: {stderr}"
    );
    assert!(
        !stderr.contains(&sb.password) && !stderr.contains(BUCARDO_PASS),
        "a password leaked: {stderr}"
    );

    // Every replicated table was vacuumed and analysed by hand on THERE (autovacuum counts apart).
    assert!(
        stderr.contains("vacuumed and analysed 6 tables on THERE in "),
        "the Vacuum step reports: {stderr}"
    );
    for t in REPLICATED {
        let counts = sb
            .there
            .psql(
                "widgets",
                &format!(
                    "SELECT vacuum_count > 0 AND analyze_count > 0 FROM pg_stat_user_tables \
                     WHERE relid = '{}'::regclass",
                    t.replace('\'', "''")
                ),
            )
            .unwrap();
        assert_eq!(counts.trim(), "t", "{t} vacuumed and analysed on THERE");
    }

    let grant = sb
        .there
        .psql(
            "widgets",
            "SELECT has_table_privilege('app_reader', 'public.foo', 'SELECT')",
        )
        .unwrap();
    assert_eq!(grant.trim(), "t", "the role and its grant reached THERE");

    // Both masters take writes now, with their own keys.
    // Both masters hand out identity values at the same time: interleaving keeps them apart.
    let mut there_opts = WriterOptions::new("there", -1_000_000_000);
    there_opts.customer_ids = 1001..=2000;
    there_opts.default_id_share = 0.5;
    let there_writer = Writer::start_with(sb.there.pg_config("widgets"), there_opts)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let here_report = here_writer.stop().await;
    let there_report = there_writer.stop().await;
    assert!(here_report.commits > 0 && there_report.commits > 0);

    let here = tokio_postgres_client(&sb.here).await;
    let there = tokio_postgres_client(&sb.there).await;
    for (report, side) in [
        (&here_report, "HERE writer"),
        (&there_report, "THERE writer"),
    ] {
        check_eventually(report, &here, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{side} on HERE: {e}"));
        check_eventually(report, &there, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{side} on THERE: {e}"));
    }
    let sb2 = &sb;
    tokio::task::block_in_place(|| wait_identical(sb2, Duration::from_secs(60)))
        .expect("tables converge");

    // Keys handed out by the sequences on both masters never collided: every writer row is there.
    let rows_after: i64 = REPLICATED
        .iter()
        .map(|t| {
            sb.here
                .psql("widgets", &format!("SELECT count(*) FROM {t}"))
                .unwrap()
                .trim()
                .parse::<i64>()
                .unwrap()
        })
        .sum();
    eprintln!(
        "e2e figures: {rows_before} rows before, bootstrap {:.1} s, {writes_during} HERE transactions during the bootstrap, {} HERE + {} THERE after, {rows_after} rows at the end",
        bootstrap_time.as_secs_f64(),
        here_report.commits,
        there_report.commits
    );
    // THERE's identity values are all even; HERE's since then all odd; and both sides made some.
    let q = |sql: &str| {
        sb.here
            .psql("widgets", sql)
            .unwrap()
            .trim()
            .parse::<i64>()
            .unwrap()
    };
    let there_defaults = "name LIKE 'there%' AND id > 0";
    let since = format!("id > (SELECT min(id) FROM public.foo WHERE {there_defaults})");
    assert!(
        q(&format!(
            "SELECT count(*) FROM public.foo WHERE {there_defaults}"
        )) > 0
    );
    assert_eq!(
        q(&format!(
            "SELECT count(*) FROM public.foo WHERE {there_defaults} AND id % 2 = 1"
        )),
        0
    );
    assert!(
        q(&format!(
            "SELECT count(*) FROM public.foo WHERE name LIKE 'here%' AND id > 0 AND {since}"
        )) > 0
    );
    assert_eq!(q(&format!("SELECT count(*) FROM public.foo WHERE name LIKE 'here%' AND id > 0 AND {since} AND id % 2 = 0")), 0);

    // The tool's own verdicts agree, and a tampered row is caught and pinpointed.
    let verify = |extra: &[&str]| {
        let mut c = tool(&sb);
        c.arg("verify").args(conn_flags(&sb, "all")).args(extra);
        c.output().unwrap()
    };
    let out = tokio::task::block_in_place(|| verify(&[]));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let mut st = tool(&sb);
    st.arg("status").args(conn_flags(&sb, "all"));
    let out = tokio::task::block_in_place(|| st.output()).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        text.contains("health:        OK") && text.contains("running (PID"),
        "{text}"
    );
    assert!(
        text.contains("left out public.audit_log: named in --leave-out; no primary key")
            && text.contains("coverage:      replicating 6 tables; 1 left out (see above)"),
        "status says what the sync replicates and what it leaves out: {text}"
    );
    sb.there
        .psql("widgets", "SET session_replication_role = replica; UPDATE public.customers SET name = 'tampered' WHERE id = 7")
        .unwrap();
    let out = tokio::task::block_in_place(|| verify(&[]));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(text.contains("public.customers\tDIFFERENT"), "{text}");
    assert!(text.contains("public.foo\tidentical"), "{text}");
    let out = tokio::task::block_in_place(|| verify(&["--deep"]));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("key (7): different"),
        "--deep names the row: {text}"
    );
    // In chunks of 500 rows the customers' 10,000 are walked by two lanes at once; the one
    // tampered row is still found, and nothing else.
    let mut lanes = tool(&sb);
    lanes
        .arg("verify")
        .args(conn_flags(&sb, "all"))
        .arg("--deep")
        .env("BUCARDO_BOOTSTRAP_VERIFY_CHUNK_ROWS", "500");
    let out = tokio::task::block_in_place(|| lanes.output()).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        text.contains("key (7): different")
            && text.matches("\tDIFFERENT\t").count() == 1
            && text.matches(": different").count() == 1,
        "in lanes, the one tampered row and nothing else: {text}"
    );
    let out = tokio::task::block_in_place(|| verify(&["--fast"]));
    assert_eq!(
        out.status.code(),
        Some(0),
        "counts still match: {}",
        show(&out)
    );
    let mut bad = tool(&sb);
    bad.arg("verify")
        .args(conn_flags(&sb, "all"))
        .args(["--there", "postgres://postgres@127.0.0.1:1/widgets"]);
    let out = tokio::task::block_in_place(|| bad.output()).unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an error is exit 2: {}",
        show(&out)
    );

    let logs: Vec<_> = std::fs::read_dir(state_dir(&sb))
        .unwrap()
        .flatten()
        .collect();
    for f in logs {
        let text = std::fs::read_to_string(f.path()).unwrap_or_default();
        assert!(
            !text.contains(&sb.password) && !text.contains(BUCARDO_PASS)
                || f.file_name() == "bucardo.pgpass",
            "password in {:?}",
            f.path()
        );
    }
}

async fn tokio_postgres_client(c: &bucardo_bootstrap::sandbox::Cluster) -> tokio_postgres::Client {
    let (client, conn) = c
        .pg_config("widgets")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}
