//! Whether HERE's shared lock table can hold the locks of `pg_dump`: it takes a lock on every
//! table it dumps, in one transaction, and with PostgreSQL's defaults (64 locks per
//! transaction × 100 connections) it fails with "out of shared memory" somewhere past 6,000
//! tables. Bucardo's own trigger transactions are batched to fit ([`bucardo::trigger_batch`]);
//! `pg_dump` cannot be.

use super::*;
use crate::engine::bucardo;

pub(super) async fn pg_dump_locks(c: &Client) -> Vec<Finding> {
    let tables: i64 = match c
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'p', 'm', 'f')
                AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'bucardo', 'bucardo_bootstrap')
                AND n.nspname NOT LIKE 'pg\\_%'",
            &[],
        )
        .await
    {
        Ok(r) => r.get(0),
        Err(_) => return vec![],
    };
    let (Ok(slots), Ok(connections)) = (
        bucardo::lock_slots(c, Side::Here).await,
        c.query_one("SELECT current_setting('max_connections')::bigint", &[])
            .await
            .map(|r| r.get::<_, i64>(0)),
    ) else {
        return vec![];
    };
    let tables = tables.max(0) as u64;
    let per_tx = (2 * tables)
        .div_ceil(connections.max(1) as u64)
        .next_multiple_of(64);
    let fix = format!(
        "on HERE: ALTER SYSTEM SET max_locks_per_transaction = {per_tx}; then restart PostgreSQL"
    );
    let what = format!(
        "pg_dump locks all {tables} tables of HERE in one transaction; HERE's lock table holds about {slots} locks (max_locks_per_transaction × max_connections)"
    );
    if tables >= slots {
        vec![Finding::fail(
            HERE,
            "lock table",
            format!("{what}: the schema copy would fail with \"out of shared memory\""),
            Some(fix),
        )]
    } else if tables >= slots / 2 {
        vec![Finding::warn(
            HERE,
            "lock table",
            format!("{what}: the application's own locks must fit in the rest"),
            Some(fix),
        )]
    } else {
        vec![]
    }
}
