//! Production safety on HERE: installing Bucardo's triggers waits behind a transaction holding a
//! conflicting lock. The run reports who blocks it (pid, user, age, query) and carries on once the
//! lock is gone, without waiting forever.

mod common;

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trigger_installation_reports_its_blocker_and_proceeds_when_it_ends() {
    let sb = tokio::task::spawn_blocking(|| sandbox_with_widgets(1))
        .await
        .unwrap();
    let (blocker, conn) = sb
        .here
        .pg_config("widgets")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
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
    let setting = sb.here.psql("widgets", "SELECT count(*) FROM pg_db_role_setting WHERE array_to_string(setconfig, ',') LIKE '%lock_timeout%'").unwrap();
    assert_eq!(setting.trim(), "0", "the temporary lock_timeout is reset");
}
