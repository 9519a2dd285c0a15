//! Production safety on HERE: installing Bucardo's triggers waits behind a transaction holding a
//! conflicting lock, gives way to it, and reports who blocks it (pid, user, age, query); it
//! carries on once the lock is gone. In a deadlock with the application, Bucardo's session is
//! the one that gives way, and the application's transaction commits.

mod common;

use bucardo_bootstrap::engine::giveway;
use bucardo_bootstrap::engine::ident::TableName;
use common::*;
use std::time::Duration;

/// How many settings of ours are on a role in some database (Bucardo's, during the steps).
const ROLE_SETTINGS: &str = "(SELECT count(*) FROM pg_db_role_setting WHERE array_to_string(setconfig, ',') ~ '(lock|deadlock)_timeout')";

/// Polls `sql` (one boolean) on `watch` until it is true; fails after 180 s saying `what`.
async fn wait_until(watch: &tokio_postgres::Client, sql: &str, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while !watch.query_one(sql, &[]).await.unwrap().get::<_, bool>(0) {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trigger_installation_reports_its_blocker_and_proceeds_when_it_ends() {
    let sb = tokio::task::spawn_blocking(|| sandbox_with_widgets(1))
        .await
        .unwrap();
    let blocker = client(&sb.here).await;
    let pid: i32 = blocker
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    blocker
        .batch_execute("BEGIN; UPDATE public.bar SET qty = qty WHERE id = 1")
        .await
        .unwrap();

    let mut r = spawn_run(&sb, &[]);
    let reported = tokio::task::block_in_place(|| {
        r.wait_for(&format!("held by pid {pid}"), Duration::from_secs(120))
    });
    assert!(reported, "the blocker is named: {}", r.seen.join("\n"));
    let line = r.seen.last().cloned().unwrap_or_default();
    assert!(
        line.contains("postgres") && line.contains("UPDATE public.bar"),
        "user and query shown: {line}"
    );
    blocker.batch_execute("COMMIT").await.unwrap();
    let (code, out) = tokio::task::block_in_place(|| r.finish());
    assert_eq!(code, 0, "the run goes on once the lock is released: {out}");
    let setting = sb
        .here
        .psql("widgets", &format!("SELECT {ROLE_SETTINGS}"))
        .unwrap();
    assert_eq!(setting.trim(), "0", "the temporary lock_timeout is reset");
}

/// The deadlock of the issue, made on purpose, with the application waiting first (the order
/// in which PostgreSQL's default settings abort the application). Bucardo's `add sync` installs
/// its triggers by schema, then table name: "Sales"."Order Items", bar, customers, events, foo,
/// orders.
/// 1. Transaction A holds public.events, so Bucardo waits for it while it holds public.bar.
/// 2. Application transaction B takes public.orders, then asks for public.bar: it waits for
///    Bucardo.
/// 3. A commits: Bucardo goes on to public.orders, which B holds. That closes the cycle, and B
///    has waited longer. With PostgreSQL's defaults, B's deadlock check runs first and B is
///    aborted. Here Bucardo's session must give way: B commits, and the run retries and
///    completes.
///
/// If Bucardo gives up its wait for public.events before B asks for public.bar (it waits at
/// most its lock timeout), B is not blocked and no cycle forms. B must still commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_application_transaction_in_a_deadlock_with_the_trigger_installation_commits() {
    let sb = tokio::task::spawn_blocking(|| sandbox_with_widgets(1))
        .await
        .unwrap();
    let a = client(&sb.here).await;
    let b = std::sync::Arc::new(client(&sb.here).await);
    let watch = client(&sb.here).await;
    let b_pid: i32 = b
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    a.batch_execute("BEGIN; LOCK TABLE public.events IN ROW EXCLUSIVE MODE")
        .await
        .unwrap();

    let r = spawn_run(&sb, &[]);
    wait_until(
        &watch,
        "SELECT EXISTS (SELECT 1 FROM pg_locks h JOIN pg_stat_activity s ON s.pid = h.pid
          WHERE s.usename = 'bucardo' AND s.datname = 'widgets' AND h.granted
            AND h.mode = 'ShareRowExclusiveLock' AND h.relation = 'public.bar'::regclass
            AND EXISTS (SELECT 1 FROM pg_locks w WHERE w.pid = s.pid AND NOT w.granted))",
        "Bucardo never waited for public.events while holding public.bar",
    )
    .await;
    // B: what an application transaction writing orders, then bar, takes.
    b.batch_execute("BEGIN; LOCK TABLE public.orders IN ROW EXCLUSIVE MODE")
        .await
        .unwrap();
    let b2 = b.clone();
    let mut b_bar = tokio::spawn(async move {
        b2.batch_execute("LOCK TABLE public.bar IN ROW EXCLUSIVE MODE")
            .await
    });
    // B waits for Bucardo, or got public.bar because Bucardo had given up meanwhile.
    let b_waited = loop {
        if b_bar.is_finished() {
            break false;
        }
        let waiting: bool = watch
            .query_one(
                "SELECT coalesce(wait_event_type = 'Lock', false) FROM pg_stat_activity WHERE pid = $1",
                &[&b_pid],
            )
            .await
            .unwrap()
            .get(0);
        if waiting {
            break true;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    a.batch_execute("COMMIT").await.unwrap();
    let got_bar = (&mut b_bar).await.unwrap();
    assert!(
        got_bar.is_ok(),
        "the application's statement was aborted (B waited for Bucardo first: {b_waited}): {got_bar:?}"
    );
    b.batch_execute("COMMIT")
        .await
        .expect("the application's transaction commits");
    eprintln!("B waited for Bucardo before the cycle closed: {b_waited}");

    let (code, out) = tokio::task::block_in_place(|| r.finish());
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("Bucardo gave way to the application on HERE while installing its triggers"),
        "{out}"
    );
    let last = out.lines().last().unwrap_or_default();
    assert!(
        last.contains("the bootstrap gave way to the application")
            && last.contains("on HERE's locks (retried)"),
        "the summary counts the retries: {last}"
    );
    let settings = sb
        .here
        .psql("widgets", &format!("SELECT {ROLE_SETTINGS}"))
        .unwrap();
    assert_eq!(settings.trim(), "0", "Bucardo's role settings are reset");
}

/// Ctrl-C while Bucardo's triggers wait behind the application: the run stops (exit 130), and
/// HERE is left as it was, without the settings on Bucardo's role or the lock gate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ctrl_c_while_the_triggers_wait_leaves_no_setting_and_no_gate_on_here() {
    let sb = tokio::task::spawn_blocking(|| sandbox_with_widgets(1))
        .await
        .unwrap();
    let app = client(&sb.here).await;
    let watch = client(&sb.here).await;
    app.batch_execute("BEGIN; LOCK TABLE public.events IN ROW EXCLUSIVE MODE")
        .await
        .unwrap();
    let r = spawn_run(&sb, &[]);
    // The gate is in place and Bucardo's role has its settings: the state to interrupt.
    wait_until(
        &watch,
        &format!(
            "SELECT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'bucardo_bootstrap_lock_gate')
                AND {ROLE_SETTINGS} > 0"
        ),
        "the gate never went in",
    )
    .await;
    let pid = r.child.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let (code, out) = tokio::task::block_in_place(|| r.finish());
    assert_eq!(code, 130, "{out}");
    let left: String = watch
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM pg_event_trigger WHERE evtname = 'bucardo_bootstrap_lock_gate')
                     || ' ' || (SELECT count(*) FROM pg_namespace WHERE nspname = 'bucardo_bootstrap')
                     || ' ' || {ROLE_SETTINGS}"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, "0 0 0", "gate, its schema, role settings left: {out}");
    app.batch_execute("COMMIT").await.unwrap();

    // A run killed outright (no grace) would leave both: cleanup removes them.
    sb.here
        .psql(
            "widgets",
            &format!(
                "{} {}",
                giveway::role_set_sql(giveway::Limits::default(), "bucardo", "widgets"),
                giveway::gate_install_sql(
                    giveway::Limits::default(),
                    "bucardo",
                    &[TableName::new("public", "foo")]
                )
            ),
        )
        .unwrap();
    let mut cleanup = tool(&sb);
    cleanup
        .arg("cleanup")
        .arg("--yes")
        .args(conn_flags(&sb, "all"));
    let out = tokio::task::block_in_place(|| cleanup.output()).unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let left = sb
        .here
        .psql(
            "widgets",
            &format!("SELECT (SELECT count(*) FROM pg_event_trigger) || ' ' || {ROLE_SETTINGS}"),
        )
        .unwrap();
    assert_eq!(left.trim(), "0 0", "{}", show(&out));
}

/// Past one batch (2 tables per batch here; 200 on PostgreSQL's default lock table), Bucardo's
/// triggers go in batch by batch while the application writes: each batch says how many tables
/// have their triggers and how long HERE's tables were locked, the kick triggers go in batch by
/// batch too, every table ends with exactly one trigger of each kind on both sides, no
/// application transaction fails, and both sides converge. The cleanup then removes them in
/// batches as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn past_one_batch_the_triggers_go_in_batch_by_batch_under_writes() {
    let (sb, w) = widgets_with_writer(1).await;
    let r = spawn_run_env(&sb, &[], &[("BUCARDO_BOOTSTRAP_TRIGGER_BATCH", "2")]);
    let (code, out) = tokio::task::block_in_place(|| r.finish());
    assert_eq!(code, 0, "{out}");
    let n = REPLICATED.len();
    let b = n.div_ceil(2);
    for line in [
        format!("Bucardo knows {n} of {n} tables"),
        format!("Bucardo's triggers are on 2 of {n} tables (batch 1 of {b})"),
        format!("Bucardo's triggers are on {n} of {n} tables (batch {b} of {b})"),
        format!("in {b} transactions of at most 2 tables"),
        format!("the relgroup holds all {n} tables again and Bucardo validated the sync over them"),
        format!(
            "[HERE] kick triggers: batch {b} of {b} in place; its tables were locked for at most"
        ),
        format!("the kick triggers are on all {n} tables of both sides"),
    ] {
        assert!(out.contains(&line), "{line:?} missing:\n{out}");
    }
    assert!(
        out.contains("HERE's tables were locked (writes waited, reads went on) while Bucardo installed their triggers: at most"),
        "{out}"
    );
    for c in [&sb.here, &sb.there] {
        let counts = c
            .psql(
                "widgets",
                "SELECT count(*) FILTER (WHERE tgname = 'bucardo_delta') || ' ' || count(*) FILTER (WHERE tgname = 'bucardo_kick_mysync') || ' ' || count(DISTINCT tgrelid) FROM pg_trigger WHERE tgname IN ('bucardo_delta', 'bucardo_kick_mysync')",
            )
            .unwrap();
        assert_eq!(counts.trim(), format!("{n} {n} {n}"), "{}", c.name);
    }
    let report = w.stop().await;
    assert_eq!(report.failed, 0, "no application transaction failed");
    assert_converged(&sb, &report).await;

    // The cleanup takes the triggers and Bucardo's tables away in the same small batches.
    let mut c = tool(&sb);
    c.env("BUCARDO_BOOTSTRAP_TRIGGER_BATCH", "2")
        .arg("cleanup")
        .arg("--yes")
        .args(db_flags(&sb, "widgets"))
        .stdin(std::process::Stdio::null());
    let out = tokio::task::block_in_place(|| c.output()).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    for c in [&sb.here, &sb.there] {
        let left = c
            .psql(
                "widgets",
                "SELECT (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'bucardo%') || ' ' || (SELECT count(*) FROM pg_namespace WHERE nspname = 'bucardo')",
            )
            .unwrap();
        assert_eq!(left.trim(), "0 0", "{}: {}", c.name, show(&out));
    }
}

/// Setting up the sequences waits behind an application transaction that took a value (its
/// lock on the sequence): the batch of `ALTER SEQUENCE` gives way, goes again one sequence per
/// transaction, and finishes once the application commits; the application's transaction is
/// never the one that fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn setting_up_the_sequences_gives_way_to_a_transaction_that_took_a_value() {
    let sb = tokio::task::spawn_blocking(|| sandbox_with_widgets(1))
        .await
        .unwrap();
    let app = client(&sb.here).await;
    let watch = client(&sb.here).await;
    app.batch_execute("BEGIN; SELECT nextval('public.invoice_number_seq')")
        .await
        .unwrap();
    let r = spawn_run(&sb, &[]);
    wait_until(
        &watch,
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                         WHERE wait_event_type = 'Lock' AND query LIKE 'ALTER SEQUENCE%')",
        "an ALTER SEQUENCE waits for the application's transaction",
    )
    .await;
    // The tool's lock timeout ends its wait; once it has given way at least once, let go.
    wait_until(
        &watch,
        "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity
                             WHERE wait_event_type = 'Lock' AND query LIKE 'ALTER SEQUENCE%')",
        "the ALTER SEQUENCE gives up its wait",
    )
    .await;
    app.batch_execute("COMMIT")
        .await
        .expect("the application's transaction commits");
    let (code, out) = tokio::task::block_in_place(|| r.finish());
    assert_eq!(code, 0, "the run finishes once the lock is released: {out}");
    assert!(
        out.contains("gave way to the application"),
        "the closing note counts the give-way: {out}"
    );
    let step = sb
        .here
        .psql(
            "widgets",
            "SELECT increment_by FROM pg_sequences WHERE schemaname = 'public' AND sequencename = 'invoice_number_seq'",
        )
        .unwrap();
    assert_eq!(
        step.trim(),
        "2",
        "the held sequence is set up for two masters too"
    );
}
