//! The data copy against real PostgreSQL clusters (no Bucardo): content identical for every type
//! in `assets/zoo_types.sql` in both COPY formats, a table split into key ranges copied exactly
//! once, a failing table named with PostgreSQL's message, and peak memory bounded while a table
//! much larger than the copy's buffers streams through. Comparisons use the test's own SQL.

use bucardo_bootstrap::engine::catalog::{self, TableInfo};
use bucardo_bootstrap::engine::conn::{ConnDefaults, ConnSpec, Side};
use bucardo_bootstrap::engine::copy::format::{Format, FormatChoice};
use bucardo_bootstrap::engine::copy::parts::{RangesDone, Split};
use bucardo_bootstrap::engine::copy::{self, CopyOptions, Snapshot, TableCopied};
use bucardo_bootstrap::engine::event::{CopyEvent, RunEvent};
use bucardo_bootstrap::engine::ident::TableName;
use bucardo_bootstrap::engine::settings::TableSelection;
use bucardo_bootstrap::engine::EngineError;
use bucardo_bootstrap::sandbox::{self, measure, Cluster, Sandbox, SandboxOptions};
use std::collections::BTreeMap;
use std::process::Command;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const ZOO_TYPES_SQL: &str = include_str!("../assets/zoo_types.sql");

/// Peak RSS allowed for the standalone copy of a table many times larger than its buffers.
const RSS_BOUND_MB: u64 = 64;

fn start_sandbox() -> Sandbox {
    sandbox::require_tools().expect("PostgreSQL 15 must be installed");
    Sandbox::start(SandboxOptions::default()).expect("sandbox starts")
}

fn spec(c: &Cluster, db: &str) -> ConnSpec {
    let mut s = ConnSpec::parse_uri(&c.uri(db), &ConnDefaults::default()).expect("uri");
    s.resolve_password(Some(c.password()), None);
    s
}

/// `db` on HERE with `sql` loaded and analysed; the same schema on THERE, empty.
fn load(sb: &Sandbox, db: &str, sql: &str) {
    sb.here
        .psql("postgres", &format!("CREATE DATABASE {db}"))
        .expect("create db");
    sb.here.psql_script(db, sql, &[]).expect("load");
    sb.here.psql(db, "VACUUM ANALYZE").expect("analyze");
    sb.there
        .psql("postgres", &format!("CREATE DATABASE {db}"))
        .expect("create db");
    let script = format!(
        "set -o pipefail; '{}' --schema-only -h {} -p {} -U postgres -d {db} | '{}' -X -q -v ON_ERROR_STOP=1 -h {} -p {} -U postgres -d {db}",
        sb.here.bindir.join("pg_dump").display(),
        sb.here.host,
        sb.here.port,
        sb.there.bindir.join("psql").display(),
        sb.there.host,
        sb.there.port
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("PGPASSWORD", &sb.password)
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "schema copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One value from `sql`, in a session whose date and interval output does not depend on the
/// database's own settings (the zoo test gives HERE and THERE different ones).
fn query(c: &Cluster, db: &str, sql: &str) -> String {
    let out = c
        .psql_command(db)
        .env("PGOPTIONS", "-c DateStyle=ISO -c IntervalStyle=postgres")
        .arg("-c")
        .arg(sql)
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Row count and md5 of every row's text, in a stable order.
fn digest(c: &Cluster, db: &str, table: &str) -> String {
    query(
        c,
        db,
        &format!("SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM ONLY {table} t"),
    )
}

/// Every index of the database with its definition and validity.
fn indexes(c: &Cluster, db: &str) -> String {
    c.psql(
        db,
        "SELECT string_agg(pg_get_indexdef(i.indexrelid) || ' ' || i.indisvalid || i.indisready, E'\n' ORDER BY c.relname) \
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname NOT IN ('pg_catalog', 'pg_toast')",
    )
    .expect("indexes")
}

async fn tables(c: &Cluster, db: &str, names: &[&str]) -> Vec<TableInfo> {
    let client = spec(c, db).connect(Side::Here).await.expect("connect");
    let names: Vec<TableName> = names
        .iter()
        .map(|n| TableName::parse(n).expect("name"))
        .collect();
    let found = catalog::list_tables(&client, Side::Here, Some(&names))
        .await
        .expect("catalog");
    assert_eq!(found.len(), names.len(), "every table is found");
    found
}

/// Runs the engine's copy and collects its events.
async fn run_copy(
    sb: &Sandbox,
    db: &str,
    infos: &[TableInfo],
    opts: &CopyOptions,
) -> (Result<Vec<TableCopied>, EngineError>, Vec<RunEvent>) {
    run_copy_cancelling(sb, db, infos, &[], opts, false).await
}

/// As [`run_copy`]; with `cancel_midway`, the operator cancels at the first progress event.
async fn run_copy_cancelling(
    sb: &Sandbox,
    db: &str,
    infos: &[TableInfo],
    prior: &[RangesDone],
    opts: &CopyOptions,
    cancel_midway: bool,
) -> (Result<Vec<TableCopied>, EngineError>, Vec<RunEvent>) {
    let (here, there) = (spec(&sb.here, db), spec(&sb.there, db));
    let (tx, mut rx) = mpsc::channel(100_000);
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    let collector = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(e) = rx.recv().await {
            if cancel_midway && matches!(e, RunEvent::Copy(CopyEvent::Advanced { .. })) {
                c2.cancel();
            }
            all.push(e);
        }
        all
    });
    let snapshot = Snapshot::export(&here).await.expect("snapshot");
    let r = copy::copy_tables_with(
        &here,
        &there,
        copy::Source::Shared(&snapshot),
        infos,
        prior,
        opts,
        &bucardo_bootstrap::engine::governor::Pace::unlimited(),
        &tx,
        &cancel,
    )
    .await;
    snapshot.release().await;
    drop(tx);
    (r, collector.await.expect("collector"))
}

/// What `pick` takes from each copy event, in order.
fn copy_events<T>(events: &[RunEvent], pick: impl Fn(&CopyEvent) -> Option<T>) -> Vec<T> {
    events
        .iter()
        .filter_map(|e| match e {
            RunEvent::Copy(c) => pick(c),
            _ => None,
        })
        .collect()
}

fn ranges_done(e: &CopyEvent) -> Option<usize> {
    match e {
        CopyEvent::RangeDone { part, .. } => Some(*part),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_in_the_zoo_arrives_identical_in_both_formats() {
    let sb = tokio::task::spawn_blocking(start_sandbox).await.unwrap();
    load(&sb, "zt", ZOO_TYPES_SQL);
    // Servers that write and read dates and intervals differently: text COPY must not care.
    for (c, date, interval) in [
        (&sb.here, "SQL, MDY", "sql_standard"),
        (&sb.there, "SQL, DMY", "iso_8601"),
    ] {
        c.psql(
            "postgres",
            &format!("ALTER DATABASE zt SET DateStyle = '{date}'; ALTER DATABASE zt SET IntervalStyle = '{interval}'"),
        )
        .unwrap();
    }
    let names = ["zoo.scalars", "zoo.custom", "zoo.empty"];
    let infos = tables(&sb.here, "zt", &names).await;
    for choice in [FormatChoice::Auto, FormatChoice::Text] {
        let opts = CopyOptions {
            format: choice,
            ..CopyOptions::new(2)
        };
        let (r, events) = run_copy(&sb, "zt", &infos, &opts).await;
        let copied = r.unwrap_or_else(|e| panic!("{choice:?}: {e}"));
        let fmt: BTreeMap<String, Format> = copied
            .iter()
            .map(|c| (c.table.to_string(), c.format))
            .collect();
        if choice == FormatChoice::Auto {
            assert_eq!(
                fmt["zoo.scalars"],
                Format::Binary,
                "built-in types travel as binary"
            );
            assert_eq!(
                fmt["zoo.custom"],
                Format::Text,
                "arrays of enums and composites travel as text"
            );
        } else {
            assert!(fmt.values().all(|f| *f == Format::Text));
        }
        for t in names {
            let (h, th) = (digest(&sb.here, "zt", t), digest(&sb.there, "zt", t));
            assert_eq!(h, th, "{t} differs after the {choice:?} copy");
            let rows: u64 = h.split(' ').next().unwrap().parse().unwrap();
            let c = copied.iter().find(|c| c.table.to_string() == t).unwrap();
            assert_eq!(c.rows, rows, "{t}: rows reported");
        }
        // Spot checks that do not go through row text: NULLs and exact values per column.
        for sql in [
            "SELECT count(*) FROM zoo.scalars WHERE id = 0 AND num_nulls(n, n2, f8, f4, i2, b, t, vc, c, by, j, js, ia, ta, na, ts, tsn, d, tm, iv, u, ip, r, tr, tv, bits) = 26",
            "SELECT md5(string_agg(encode(by, 'hex') || coalesce(t, '~') || coalesce(j::text, '~') || coalesce(f8::text, '~'), ',' ORDER BY id)) FROM zoo.scalars",
            "SELECT md5(string_agg(coalesce(ma::text, '~') || coalesce(pr::text, '~') || coalesce(m::text, '~'), ',' ORDER BY id)) FROM zoo.custom",
        ] {
            assert_eq!(query(&sb.here, "zt", sql), query(&sb.there, "zt", sql), "{sql}");
        }
        // The plain secondary indexes were rebuilt after the rows, the commented one kept: all
        // of them are there, valid, as on HERE.
        assert!(
            events.iter().any(|e| matches!(e, RunEvent::Log { message, .. } if message.contains("4 secondary indexes rebuilt"))),
            "{events:?}"
        );
        assert_eq!(indexes(&sb.here, "zt"), indexes(&sb.there, "zt"));
        sb.there
            .psql("zt", "TRUNCATE zoo.scalars, zoo.custom, zoo.empty")
            .unwrap();
    }
}

const SPLIT_SQL: &str = r#"
CREATE TABLE public.big (id bigint PRIMARY KEY, v text NOT NULL);
INSERT INTO public.big SELECT g * 3, md5(g::text) FROM generate_series(1, 60000) g;
INSERT INTO public.big SELECT g, 'dense' FROM generate_series(500000, 520000) g;
INSERT INTO public.big VALUES (-9223372036854775808, 'min'), (9223372036854775807, 'max'), (0, 'zero');
CREATE TABLE public.by_uuid (id uuid PRIMARY KEY, n integer);
INSERT INTO public.by_uuid SELECT md5(g::text)::uuid, g FROM generate_series(1, 30000) g;
CREATE TABLE public.unanalysed (id integer PRIMARY KEY, n integer) WITH (autovacuum_enabled = false);
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_split_into_key_ranges_is_copied_exactly_once() {
    let sb = tokio::task::spawn_blocking(start_sandbox).await.unwrap();
    load(&sb, "sp", SPLIT_SQL);
    // Rows the statistics never saw: the unanalysed table splits by min/max in the snapshot.
    sb.here
        .psql(
            "sp",
            "INSERT INTO public.unanalysed SELECT g, g FROM generate_series(-1000, 40000) g",
        )
        .unwrap();
    // Without keys on THERE, a row copied twice would stay visible.
    sb.there
        .psql("sp", "ALTER TABLE public.big DROP CONSTRAINT big_pkey; ALTER TABLE public.by_uuid DROP CONSTRAINT by_uuid_pkey; ALTER TABLE public.unanalysed DROP CONSTRAINT unanalysed_pkey")
        .unwrap();
    let names = ["public.big", "public.by_uuid", "public.unanalysed"];
    let mut infos = tables(&sb.here, "sp", &names).await;
    for t in &mut infos {
        t.total_bytes = t.total_bytes.max(1_000_000);
    }
    let opts = CopyOptions {
        split_bytes: 100_000,
        max_parts: 7,
        ..CopyOptions::new(3)
    };
    let (r, events) = run_copy(&sb, "sp", &infos, &opts).await;
    let copied = r.expect("copy");
    for t in names {
        let c = copied.iter().find(|c| c.table.to_string() == t).unwrap();
        assert!(c.parts > 1, "{t} was split: {c:?}");
        assert_eq!(digest(&sb.here, "sp", t), digest(&sb.there, "sp", t), "{t}");
        let dups = sb
            .there
            .psql(
                "sp",
                &format!("SELECT count(*) - count(DISTINCT id) FROM {t}"),
            )
            .unwrap();
        assert_eq!(dups.trim(), "0", "{t} has duplicates");
        // One start and one finish per table, and the deltas add up to the rows.
        let name = TableName::parse(t).unwrap();
        let started = events.iter().filter(|e| matches!(e, RunEvent::Copy(CopyEvent::TableStarted { table, .. }) if *table == name)).count();
        let finished: Vec<u64> = copy_events(&events, |e| match e {
            CopyEvent::TableFinished { table, rows, .. } if *table == name => Some(*rows),
            _ => None,
        });
        let advanced: u64 = copy_events(&events, |e| match e {
            CopyEvent::Advanced { table, rows, .. } if *table == name => Some(*rows),
            _ => None,
        })
        .iter()
        .sum();
        assert_eq!((started, finished.clone()), (1, vec![c.rows]), "{t}");
        assert_eq!(advanced, c.rows, "{t}: progress deltas add up");
    }
}

/// A rerun after a stop mid-table: the journal says which key ranges committed; only the others
/// are copied, cut the same way, each after clearing its span on THERE (a range can have
/// committed on THERE without its journal record).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_split_table_copies_only_its_missing_ranges() {
    let sb = tokio::task::spawn_blocking(start_sandbox).await.unwrap();
    load(
        &sb,
        "rs",
        "CREATE TABLE public.big (id bigint PRIMARY KEY, v text NOT NULL);
         INSERT INTO public.big SELECT g, 'v' || g FROM generate_series(1, 80000) g;",
    );
    let mut infos = tables(&sb.here, "rs", &["public.big"]).await;
    infos[0].total_bytes = 1_000_000;
    let opts = CopyOptions {
        split_bytes: 200_000,
        max_parts: 5,
        ..CopyOptions::new(2)
    };
    let (r, events) = run_copy(&sb, "rs", &infos, &opts).await;
    r.expect("first copy");
    let split: Split = copy_events(&events, |e| match e {
        CopyEvent::TableSplit { split, .. } => Some(split.clone()),
        _ => None,
    })
    .pop()
    .expect("the split is announced before its ranges");
    let ranges = split.ranges();
    assert_eq!(ranges.len(), 5, "{split:?}");
    let first_done = copy_events(&events, ranges_done);
    assert_eq!(
        first_done.len(),
        5,
        "every range reported once: {first_done:?}"
    );

    // The state a stop leaves: range 3 never committed; range 1 committed on THERE but the
    // journal did not record it. HERE moves on meanwhile, in ranges 0 and 1.
    let pred = |i: usize| ranges[i].predicate();
    sb.there
        .psql("rs", &format!("DELETE FROM public.big WHERE {}", pred(3)))
        .unwrap();
    let pick = |i: usize| {
        sb.here
            .psql(
                "rs",
                &format!("SELECT min(id) FROM public.big WHERE {}", pred(i)),
            )
            .unwrap()
            .trim()
            .to_string()
    };
    let (in0, in1) = (pick(0), pick(1));
    sb.here
        .psql(
            "rs",
            &format!("UPDATE public.big SET v = 'changed' WHERE id IN ({in0}, {in1})"),
        )
        .unwrap();
    let prior = [RangesDone {
        table: infos[0].name.clone(),
        split: split.clone(),
        done: [0, 2, 4].into_iter().collect(),
    }];
    let (r, events) = run_copy_cancelling(&sb, "rs", &infos, &prior, &opts, false).await;
    let copied = r.expect("the resumed copy (a duplicate key would fail it)");
    let mut again = copy_events(&events, ranges_done);
    again.sort();
    assert_eq!(again, vec![1, 3], "only the missing ranges are copied");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, RunEvent::Copy(CopyEvent::TableSplit { .. }))),
        "the recorded split is reused, not recomputed"
    );
    assert_eq!(
        (copied[0].parts, copied[0].rows > 0),
        (2, true),
        "{copied:?}"
    );
    let v = |id: &str| {
        sb.there
            .psql("rs", &format!("SELECT v FROM public.big WHERE id = {id}"))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(
        v(&in0),
        format!("v{in0}"),
        "range 0 was kept, not copied again"
    );
    assert_eq!(
        v(&in1),
        "changed",
        "range 1 was copied again under the new snapshot"
    );
    let count = "SELECT count(*), count(DISTINCT id) FROM public.big";
    assert_eq!(
        sb.there.psql("rs", count).unwrap(),
        sb.here.psql("rs", count).unwrap(),
        "every row exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_table_stops_the_copy_with_its_name_and_postgres_message() {
    let sb = tokio::task::spawn_blocking(start_sandbox).await.unwrap();
    load(
        &sb,
        "er",
        "CREATE TABLE public.good (id integer PRIMARY KEY, v text);
         INSERT INTO public.good SELECT g, 'v' || g FROM generate_series(1, 50000) g;
         CREATE TABLE public.bad (id integer PRIMARY KEY, v text);
         CREATE INDEX bad_v ON public.bad (v);
         INSERT INTO public.bad SELECT g, CASE WHEN g = 700 THEN 'not a number' ELSE g::text END FROM generate_series(1, 1000) g;",
    );
    sb.there
        .psql(
            "er",
            "ALTER TABLE public.bad ALTER COLUMN v TYPE integer USING v::integer",
        )
        .unwrap();
    let infos = tables(&sb.here, "er", &["public.good", "public.bad"]).await;
    let (r, events) = run_copy(&sb, "er", &infos, &CopyOptions::new(2)).await;
    match r {
        Err(EngineError::Copy { table, message }) => {
            assert_eq!(table, "public.bad");
            assert!(
                message.contains("invalid input syntax for type integer"),
                "{message}"
            );
            assert!(message.contains("not a number"), "{message}");
        }
        other => panic!("expected a copy error, got {other:?}"),
    }
    assert!(events.iter().any(
        |e| matches!(e, RunEvent::Copy(CopyEvent::TableFailed { table, .. }) if table.name == "bad")
    ));
    assert_eq!(
        sb.there
            .psql("er", "SELECT count(*) FROM public.bad")
            .unwrap()
            .trim(),
        "0",
        "the failed table's transaction rolled back"
    );
    assert_eq!(
        sb.there
            .psql(
                "er",
                "SELECT count(*) FROM pg_indexes WHERE indexname = 'bad_v'"
            )
            .unwrap()
            .trim(),
        "1",
        "the index dropped for the copy came back with the rollback"
    );

    // The standalone command refuses tables that already hold rows.
    sb.there
        .psql(
            "er",
            "TRUNCATE public.good; INSERT INTO public.good VALUES (1, 'x')",
        )
        .unwrap();
    let sel = TableSelection::List(vec![TableName::parse("public.good").unwrap()]);
    let (etx, _erx) = tokio::sync::mpsc::channel(1024);
    let cancel = tokio_util::sync::CancellationToken::new();
    let e = copy::standalone::copy(
        &spec(&sb.here, "er"),
        &spec(&sb.there, "er"),
        &sel,
        2,
        &etx,
        &cancel,
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string().contains("already hold rows") && e.to_string().contains("public.good"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_copy_stops_rolls_back_and_keeps_the_indexes() {
    let sb = tokio::task::spawn_blocking(start_sandbox).await.unwrap();
    load(
        &sb,
        "ca",
        "CREATE TABLE public.slow (id integer PRIMARY KEY, v text NOT NULL);
         CREATE INDEX slow_v ON public.slow (v);
         INSERT INTO public.slow SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 200000) g;",
    );
    let infos = tables(&sb.here, "ca", &["public.slow"]).await;
    let (r, _) = run_copy_cancelling(&sb, "ca", &infos, &[], &CopyOptions::new(2), true).await;
    assert!(matches!(r, Err(EngineError::Aborted)), "{r:?}");
    assert_eq!(
        sb.there
            .psql("ca", "SELECT count(*) FROM public.slow")
            .unwrap()
            .trim(),
        "0"
    );
    assert_eq!(
        indexes(&sb.here, "ca"),
        indexes(&sb.there, "ca"),
        "no index is missing"
    );
}

/// THERE's own progress views reach the front ends: rows from `pg_stat_progress_copy` while a
/// slow COPY runs, and phases from `pg_stat_progress_create_index` while a deferred index builds.
/// THERE alone gets a check constraint and an index expression that take 5 ms a row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn theres_progress_views_are_reported() {
    let sb = tokio::task::spawn_blocking(start_sandbox).await.unwrap();
    load(
        &sb,
        "pv",
        "CREATE TABLE public.slow (id integer PRIMARY KEY, v integer NOT NULL);
         INSERT INTO public.slow SELECT g, g FROM generate_series(1, 600) g;",
    );
    sb.there
        .psql(
            "pv",
            "CREATE FUNCTION public.slowly(x integer) RETURNS integer IMMUTABLE LANGUAGE plpgsql                AS $$ BEGIN PERFORM pg_sleep(0.005); RETURN x; END $$;
             ALTER TABLE public.slow ADD CHECK (public.slowly(v) = v);
             CREATE INDEX slow_v ON public.slow (public.slowly(v));",
        )
        .unwrap();
    let infos = tables(&sb.here, "pv", &["public.slow"]).await;
    let (r, events) = run_copy(&sb, "pv", &infos, &CopyOptions::new(1)).await;
    r.expect("copy");
    let there_rows = copy_events(&events, |e| match e {
        CopyEvent::ThereRows { rows, .. } => Some(*rows),
        _ => None,
    });
    assert!(
        !there_rows.is_empty() && there_rows.iter().all(|&n| n <= 600),
        "THERE's row counts while the COPY ran: {there_rows:?}"
    );
    assert!(
        there_rows.windows(2).all(|w| w[0] <= w[1]),
        "THERE's count never goes back: {there_rows:?}"
    );
    let phases = copy_events(&events, |e| match e {
        CopyEvent::IndexPhase { index, phase, .. } => Some(format!("{index}: {phase}")),
        _ => None,
    });
    assert!(
        phases
            .iter()
            .any(|p| p.starts_with("slow_v: building index")),
        "the deferred index's build phases: {phases:?}"
    );
    assert_eq!(
        indexes(&sb.here, "pv").lines().count() + 1,
        indexes(&sb.there, "pv").lines().count()
    );
}

/// The real binary's `copy` of a table several times larger than the bound; its peak RSS comes
/// from the kernel (`wait4`), not from the tool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_memory_stays_bounded_while_a_large_table_streams_through() {
    let sb = tokio::task::spawn_blocking(start_sandbox).await.unwrap();
    // ~310 MB of uncompressed, inline rows: over four times the bound, thousands of batches.
    load(
        &sb,
        "mem",
        "CREATE TABLE public.wide (id integer PRIMARY KEY, v text NOT NULL);
         INSERT INTO public.wide SELECT g, repeat(md5(g::text), 30) FROM generate_series(1, 300000) g;",
    );
    let size: i64 = sb
        .here
        .psql("mem", "SELECT pg_relation_size('public.wide')")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        size > 4 * RSS_BOUND_MB as i64 * 1024 * 1024,
        "the table is {size} bytes"
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bucardo-bootstrap"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", sb.root.join("home"))
        .env("PGPASSWORD", &sb.password)
        .args([
            "copy",
            "--here",
            &sb.here.uri("mem"),
            "--there",
            &sb.there.uri("mem"),
        ])
        .args(["--tables", "public.wide", "--jobs", "2", "--log-dir"])
        .arg(sb.root.join("state"));
    let (out, peak_kb) =
        tokio::task::spawn_blocking(move || measure::output_with_peak_rss(&mut cmd).unwrap())
            .await
            .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    eprintln!(
        "copy of {} MB: peak RSS {} MB",
        size / 1024 / 1024,
        peak_kb / 1024
    );
    assert!(
        text.contains("public.wide") && text.contains("wall clock"),
        "the summary: {text}"
    );
    assert_eq!(
        digest(&sb.here, "mem", "public.wide"),
        digest(&sb.there, "mem", "public.wide")
    );
    assert!(
        peak_kb < RSS_BOUND_MB * 1024,
        "peak RSS {peak_kb} kB is above {RSS_BOUND_MB} MB:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequence_values_arrive_as_pg_dump_sets_them_batch_after_batch() {
    let sb = tokio::task::spawn_blocking(start_sandbox).await.unwrap();
    load(
        &sb,
        "sq",
        r#"CREATE SEQUENCE plain; SELECT nextval('plain'), nextval('plain'), nextval('plain');
           CREATE SEQUENCE never START 7;
           CREATE SCHEMA "Odd ""schema""";
           CREATE SEQUENCE "Odd ""schema"""."a seq" INCREMENT BY 5;
           SELECT setval('"Odd ""schema"""."a seq"', 41);
           DO $$ BEGIN FOR i IN 1..1200 LOOP
             EXECUTE format('CREATE SEQUENCE many%s', i);
             IF i % 3 > 0 THEN PERFORM setval(format('many%s', i), i * 10, i % 3 = 1); END IF;
           END LOOP; END $$;"#,
    );
    let mut names = vec![
        TableName::new("public", "plain"),
        TableName::new("public", "never"),
        TableName::new("Odd \"schema\"", "a seq"),
    ];
    names.extend((1..=1200).map(|i| TableName::new("public", format!("many{i}"))));
    let here = spec(&sb.here, "sq").connect(Side::Here).await.unwrap();
    let there = spec(&sb.there, "sq").connect(Side::There).await.unwrap();
    copy::copy_sequence_values(&here, &there, &names)
        .await
        .expect("the values are copied");
    let state = |c: &Cluster| {
        query(
            c,
            "sq",
            r#"SELECT (SELECT last_value || ' ' || is_called FROM plain)
                   || ' | ' || (SELECT last_value || ' ' || is_called FROM never)
                   || ' | ' || (SELECT last_value || ' ' || is_called FROM "Odd ""schema"""."a seq")
                   || ' | ' || (SELECT string_agg(s, ',' ORDER BY s) FROM
                        (SELECT sequencename || '=' || coalesce(last_value::text, 'unread') AS s
                           FROM pg_sequences WHERE sequencename LIKE 'many%') m)"#,
        )
    };
    let (on_here, on_there) = (state(&sb.here), state(&sb.there));
    assert!(
        on_here.starts_with("3 true | 7 false | 41 true | "),
        "HERE as loaded: {}",
        &on_here[..80]
    );
    assert!(on_there == on_here, "THERE: {}", &on_there[..200]);
    // THERE hands out the next value HERE would, called or not, past the first batch too.
    for (seq, next) in [
        ("never", "7"),
        ("plain", "4"),
        ("\"Odd \"\"schema\"\"\".\"a seq\"", "46"),
        ("many1", "11"),
        ("many2", "20"),
        ("many3", "1"),
        ("many1199", "11990"),
        ("many1198", "11981"),
    ] {
        assert_eq!(
            query(&sb.there, "sq", &format!("SELECT nextval('{seq}')")),
            next,
            "{seq}"
        );
    }
}

const FREEZE_SQL: &str = r#"
CREATE TABLE public.parent (id integer PRIMARY KEY, v text);
INSERT INTO public.parent SELECT g, md5(g::text) FROM generate_series(1, 5000) g;
CREATE TABLE public.child (id integer PRIMARY KEY, parent_id integer REFERENCES public.parent, v text);
INSERT INTO public.child SELECT g, 1 + g % 5000, md5(g::text) FROM generate_series(1, 20000) g;
CREATE INDEX child_parent ON public.child (parent_id);
CREATE TABLE public.solo (id bigint PRIMARY KEY, v text);
INSERT INTO public.solo SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g;
CREATE TABLE public.split (id bigint PRIMARY KEY, v text);
INSERT INTO public.split SELECT g, md5(g::text) FROM generate_series(1, 30000) g;
CREATE TABLE public.noted (id integer PRIMARY KEY);
INSERT INTO public.noted SELECT generate_series(1, 1000);
CREATE FUNCTION public.refuse() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'truncated'; END$$;
CREATE TRIGGER noted_truncate BEFORE TRUNCATE ON public.noted FOR EACH STATEMENT EXECUTE FUNCTION public.refuse();
"#;

/// Tables copied whole arrive frozen and all-visible on THERE (nothing left for a vacuum to
/// write), unless another table's foreign key references them, they are split into key ranges,
/// or a TRUNCATE trigger would fire in replica mode; every table arrives whole either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_copied_whole_arrive_frozen_when_there_lets_them() {
    let sb = tokio::task::spawn_blocking(start_sandbox).await.unwrap();
    load(&sb, "fz", FREEZE_SQL);
    sb.there
        .psql(
            "fz",
            "CREATE EXTENSION pg_visibility; ALTER TABLE public.noted ENABLE ALWAYS TRIGGER noted_truncate",
        )
        .unwrap();
    let names = [
        "public.parent",
        "public.child",
        "public.solo",
        "public.split",
        "public.noted",
    ];
    let mut infos = tables(&sb.here, "fz", &names).await;
    for t in &mut infos {
        if t.name.to_string() == "public.split" {
            t.total_bytes = 40_000_000;
        }
    }
    let opts = CopyOptions {
        split_bytes: 8_000_000,
        ..CopyOptions::new(2)
    };
    let (r, events) = run_copy(&sb, "fz", &infos, &opts).await;
    let copied = r.expect("copy");
    assert!(
        events.iter().any(|e| matches!(e, RunEvent::Log { message, .. } if message.contains("2 tables written frozen"))),
        "{events:?}"
    );
    for t in names {
        assert_eq!(digest(&sb.here, "fz", t), digest(&sb.there, "fz", t), "{t}");
        let pages: i64 = query(
            &sb.there,
            "fz",
            &format!("SELECT pg_relation_size('{t}') / current_setting('block_size')::int"),
        )
        .parse()
        .unwrap();
        let (visible, frozen) = {
            let s = query(
                &sb.there,
                "fz",
                &format!(
                    "SELECT all_visible || ' ' || all_frozen FROM pg_visibility_map_summary('{t}')"
                ),
            );
            let mut it = s.split(' ').map(|v| v.parse::<i64>().unwrap());
            (it.next().unwrap(), it.next().unwrap())
        };
        let expect_frozen = matches!(t, "public.child" | "public.solo");
        assert!(pages > 0, "{t} has pages");
        if expect_frozen {
            assert_eq!((visible, frozen), (pages, pages), "{t} arrives frozen");
        } else {
            assert_eq!(
                (visible, frozen),
                (0, 0),
                "{t} is written as a plain COPY writes"
            );
        }
    }
    let split = copied
        .iter()
        .find(|c| c.table.to_string() == "public.split")
        .unwrap();
    assert!(split.parts > 1, "public.split was split: {split:?}");
    // The frozen child's deferred index was rebuilt in its transaction, as on HERE.
    assert_eq!(indexes(&sb.here, "fz"), indexes(&sb.there, "fz"));
}
