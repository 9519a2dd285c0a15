//! Whether the shared lock tables can hold what runs in one transaction over every table, which
//! no batching of ours can split:
//! - `pg_dump` locks every table it dumps on HERE. With PostgreSQL's defaults (64 locks per
//!   transaction × 100 connections) it fails with "out of shared memory" somewhere past 6,000
//!   tables.
//! - Each run of a Bucardo sync reads every table's delta and track tables, with their indexes,
//!   in one transaction on each database (`bucardo_delta_check`): about [`SYNC_LOCKS_PER_TABLE`]
//!   locks per table. Over 10,000 tables with 256 locks per transaction the replay of the interim
//!   deltas failed with "out of shared memory" (measured).
//!
//! Bucardo's trigger installation is batched to fit instead ([`bucardo::trigger_batch`]).

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
    let Some((slots, connections)) = lock_table(c, Side::Here).await else {
        return vec![];
    };
    let tables = tables.max(0) as u64;
    let per_tx = (2 * tables).div_ceil(connections).next_multiple_of(64);
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

/// The locks one run of a sync takes per table on each database: the delta table, the track
/// table and their indexes (measured: over 10,000 tables a run needed more than 25,600 slots).
pub const SYNC_LOCKS_PER_TABLE: u64 = 6;

/// Whether `side`'s lock table holds one run of a sync over `tables` tables: refused when it
/// cannot, a warning when that run would take more than half of it (the application's locks
/// share it), with the `max_locks_per_transaction` that leaves half free.
pub(super) async fn sync_locks(c: &Client, group: &str, side: Side, tables: usize) -> Vec<Finding> {
    let Some((slots, connections)) = lock_table(c, side).await else {
        return vec![];
    };
    sync_locks_finding(group, tables as u64, slots, connections)
        .into_iter()
        .collect()
}

/// The lock table's size in locks and the connections that share it (`max_connections` +
/// `max_prepared_transactions`); None when the server does not say.
async fn lock_table(c: &Client, side: Side) -> Option<(u64, u64)> {
    let slots = bucardo::lock_slots(c, side).await.ok()?;
    let connections: i64 = c
        .query_one(
            "SELECT current_setting('max_connections')::bigint
                    + current_setting('max_prepared_transactions')::bigint",
            &[],
        )
        .await
        .ok()?
        .get(0);
    Some((slots, connections.max(1) as u64))
}

/// The `max_locks_per_transaction` at which one run of a sync over `tables` tables takes at most
/// half of a lock table shared by `connections` (`max_connections` + `max_prepared_transactions`).
pub fn max_locks_for_sync(tables: u64, connections: u64) -> u64 {
    (2 * SYNC_LOCKS_PER_TABLE * tables)
        .div_ceil(connections.max(1))
        .next_multiple_of(64)
}

fn sync_locks_finding(group: &str, tables: u64, slots: u64, connections: u64) -> Option<Finding> {
    let need = SYNC_LOCKS_PER_TABLE * tables;
    if need <= slots / 2 {
        return None;
    }
    let per_tx = max_locks_for_sync(tables, connections);
    let fix = Some(format!(
        "on {group}: ALTER SYSTEM SET max_locks_per_transaction = {per_tx}; then restart PostgreSQL (or choose fewer tables)"
    ));
    let what = format!(
        "each run of Bucardo's sync locks about {need} objects on {group} in one transaction ({SYNC_LOCKS_PER_TABLE} per table, {tables} tables); its lock table holds about {slots} (max_locks_per_transaction × connections)"
    );
    Some(if need > slots {
        Finding::fail(
            group,
            "lock table",
            format!("{what}: the sync would fail with \"out of shared memory\" and nothing would replicate"),
            fix,
        )
    } else {
        Finding::warn(
            group,
            "lock table",
            format!("{what}: more than half of it, and the application's own locks must fit in the rest"),
            fix,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_over_more_tables_than_the_lock_table_holds_is_refused() {
        // PostgreSQL's defaults: 64 × 100.
        assert!(sync_locks_finding("HERE", 500, 6400, 100).is_none());
        let warn = sync_locks_finding("HERE", 1000, 6400, 100).expect("over half");
        assert_eq!(warn.severity, Severity::Warn);
        let fail = sync_locks_finding("THERE", 10_000, 25_600, 100).expect("over all of it");
        assert_eq!(fail.severity, Severity::Fail);
        assert!(fail.message.contains("60000"), "{}", fail.message);
        // 120,000 locks ÷ 100 connections, rounded up to a multiple of 64.
        assert_eq!(
            fail.fix.as_deref(),
            Some("on THERE: ALTER SYSTEM SET max_locks_per_transaction = 1216; then restart PostgreSQL (or choose fewer tables)")
        );
    }
}
