//! The bootstrap's locks on a live database give way to the application. Every session that takes
//! a strong lock on HERE (Bucardo's while it installs or enables its triggers, the tool's own for
//! sequence DDL and cleanup) runs with:
//! - a `lock_timeout` shorter than the application's `deadlock_timeout` (half of it, at most
//!   [`MAX_LOCK_TIMEOUT`]): when the application queues behind the bootstrap and closes a cycle,
//!   the bootstrap's wait ends before the application's deadlock check runs;
//! - `deadlock_timeout` = [`DEADLOCK_TIMEOUT_MS`]: when the bootstrap closes a cycle, it checks
//!   first, and the session that finds a deadlock is the one aborted.
//!
//! A statement that lost is retried after a growing pause, and every retry is counted. The
//! application waits at most one lock timeout behind the bootstrap.
//!
//! Bucardo installs its triggers on every table in one transaction, so under steady traffic it
//! keeps closing cycles with application transactions that touch two tables, and losing every
//! one of them is no progress. The [lock gate](gate_install_sql) makes that transaction take all
//! its table locks at once before its first `CREATE TRIGGER`: an event trigger, for Bucardo's
//! role only, that tries `LOCK TABLE` on every table with a short lock timeout inside a
//! subtransaction, and on losing rolls the subtransaction back (releasing every lock it got),
//! pauses a moment and tries again. Bucardo's transaction then never waits while holding a
//! table lock, so it cannot be in a deadlock at all.

use crate::engine::conn::Side;
use crate::engine::error::EngineError;
use crate::engine::ident::{quote_ident, quote_literal, TableName};
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

/// The longest one of the bootstrap's lock requests waits before it gives up and retries later.
pub const MAX_LOCK_TIMEOUT: Duration = Duration::from_millis(500);

/// When the bootstrap's waiting sessions look for a deadlock (PostgreSQL's minimum).
pub const DEADLOCK_TIMEOUT_MS: u32 = 1;

/// How many times a statement that lost a lock is tried in all.
pub const ATTEMPTS: u32 = 20;

/// The timeouts for one server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub lock_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::for_deadlock_timeout(1000)
    }
}

impl Limits {
    /// For a server whose sessions check for deadlocks after `deadlock_ms`.
    pub fn for_deadlock_timeout(deadlock_ms: u64) -> Limits {
        Limits {
            lock_timeout_ms: (deadlock_ms / 2).clamp(
                DEADLOCK_TIMEOUT_MS as u64 + 1,
                MAX_LOCK_TIMEOUT.as_millis() as u64,
            ),
        }
    }

    /// Reads the shortest `deadlock_timeout` the application's sessions can have in this
    /// database: the server's, or one set on a role or on the database.
    pub async fn read(c: &Client, side: Side) -> Result<Limits, EngineError> {
        let ms: i64 = c
            .query_one(
                "SELECT least(
                    (SELECT setting::bigint FROM pg_settings WHERE name = 'deadlock_timeout'),
                    (SELECT min(CASE WHEN v ~ '^[0-9]+$' THEN v::bigint
                                     ELSE (extract(epoch FROM v::interval) * 1000)::bigint END)
                       FROM pg_db_role_setting s
                      CROSS JOIN LATERAL unnest(s.setconfig) AS c(kv)
                      CROSS JOIN LATERAL (SELECT substring(c.kv FROM '^deadlock_timeout=(.*)$')) AS x(v)
                      WHERE x.v IS NOT NULL
                        AND s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))))",
                &[],
            )
            .await
            .map_err(|e| EngineError::sql(side, "reading deadlock_timeout", &e))?
            .get(0);
        Ok(Limits::for_deadlock_timeout(ms.max(1) as u64))
    }

    fn settings(&self) -> [(&'static str, String); 2] {
        [
            ("lock_timeout", format!("{}ms", self.lock_timeout_ms)),
            ("deadlock_timeout", format!("{DEADLOCK_TIMEOUT_MS}ms")),
        ]
    }
}

/// The pause before try `attempt + 1`: 0.5 s, 1 s, 2 s, ... at most 15 s.
pub fn pause(attempt: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << attempt.saturating_sub(1).min(5)))
        .min(Duration::from_secs(15))
}

/// `ALTER ROLE ... IN DATABASE ... SET` for every setting: the sessions Bucardo opens as `role`
/// in `db` from then on give way. [`role_reset_sql`] undoes it.
pub fn role_set_sql(limits: Limits, role: &str, db: &str) -> String {
    limits
        .settings()
        .iter()
        .map(|(k, v)| {
            format!(
                "ALTER ROLE {} IN DATABASE {} SET {k} = '{v}';",
                quote_ident(role),
                quote_ident(db)
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn role_reset_sql(role: &str, db: &str) -> String {
    Limits::default()
        .settings()
        .iter()
        .map(|(k, _)| {
            format!(
                "ALTER ROLE {} IN DATABASE {} RESET {k};",
                quote_ident(role),
                quote_ident(db)
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Makes this session give way. `deadlock_timeout` needs a superuser; without one, the session
/// still has its lock timeout.
pub async fn prepare_session(c: &Client, side: Side) -> Result<(), EngineError> {
    let limits = Limits::read(c, side).await?;
    let [(k1, v1), (k2, v2)] = limits.settings();
    c.batch_execute(&format!("SET {k1} = '{v1}'"))
        .await
        .map_err(|e| EngineError::sql(side, "setting lock_timeout", &e))?;
    if let Err(e) = c.batch_execute(&format!("SET {k2} = '{v2}'")).await {
        tracing::warn!("[{side}] cannot shorten deadlock_timeout ({e}); only the lock timeout keeps the application first");
    }
    Ok(())
}

/// The schema on HERE that holds the lock gate while Bucardo installs or enables its triggers.
pub const GATE_SCHEMA: &str = "bucardo_bootstrap";

/// The lock gate's event trigger.
pub const GATE_TRIGGER: &str = "bucardo_bootstrap_lock_gate";

/// The longest one try of the gate waits for a table lock.
pub const GATE_LOCK_TIMEOUT_MS: u64 = 50;

/// How long the gate keeps trying before Bucardo's command fails (and is retried); well below
/// the time the tool gives a Bucardo command, so that the gate, not the tool, gives up.
pub const GATE_PATIENCE_S: u64 = 60;

/// `ONLY a, ONLY b, ...` for `LOCK TABLE`, in Bucardo's order (schema, then table), so that a
/// try fails on the first table still busy.
pub fn lock_list(tables: &[TableName]) -> String {
    let mut names: Vec<&TableName> = tables.iter().collect();
    names.sort();
    names
        .iter()
        .map(|t| format!("ONLY {}", t.sql()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Installs the lock gate for `role`'s sessions over `tables` (see the module docs); a sequence
/// counts the tries it lost. [`gate_remove_sql`] removes it.
pub fn gate_install_sql(limits: Limits, role: &str, tables: &[TableName]) -> String {
    let list = lock_list(tables);
    let wait = limits.lock_timeout_ms.min(GATE_LOCK_TIMEOUT_MS);
    format!(
        r#"CREATE SCHEMA IF NOT EXISTS {schema};
CREATE SEQUENCE IF NOT EXISTS {schema}.gave_way;
CREATE OR REPLACE FUNCTION {schema}.lock_gate() RETURNS event_trigger LANGUAGE plpgsql AS $gate$
DECLARE
  saved text := current_setting('lock_timeout');
  started timestamptz := clock_timestamp();
  tries int := 0;
BEGIN
  IF current_user <> {role} OR current_setting('bucardo_bootstrap.gate', true) = 'open' THEN
    RETURN;
  END IF;
  LOOP
    BEGIN
      PERFORM set_config('lock_timeout', '{wait}ms', true);
      LOCK TABLE {list} IN SHARE ROW EXCLUSIVE MODE;
      PERFORM set_config('lock_timeout', saved, true);
      PERFORM set_config('bucardo_bootstrap.gate', 'open', true);
      RETURN;
    EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
      PERFORM nextval('{schema}.gave_way');
      tries := tries + 1;
      IF clock_timestamp() > started + interval '{patience} s' THEN
        RAISE EXCEPTION 'lock timeout: the application held the tables'' locks on every one of % tries in {patience} s', tries
          USING ERRCODE = 'lock_not_available';
      END IF;
      PERFORM pg_sleep(0.01 + random() * least(0.01 * tries, 0.25));
    END;
  END LOOP;
END
$gate$;
DROP EVENT TRIGGER IF EXISTS {trigger};
CREATE EVENT TRIGGER {trigger} ON ddl_command_start WHEN TAG IN ('CREATE TRIGGER')
  EXECUTE FUNCTION {schema}.lock_gate();"#,
        schema = quote_ident(GATE_SCHEMA),
        role = quote_literal(role),
        trigger = quote_ident(GATE_TRIGGER),
        patience = GATE_PATIENCE_S,
    )
}

pub fn gate_remove_sql() -> String {
    format!(
        "SET LOCAL lock_timeout = '5s'; DROP EVENT TRIGGER IF EXISTS {}; DROP SCHEMA IF EXISTS {} CASCADE;",
        quote_ident(GATE_TRIGGER),
        quote_ident(GATE_SCHEMA)
    )
}

/// `drop` (which removes Bucardo's triggers) after locking, at once, every table that has one:
/// the tables' ACCESS EXCLUSIVE locks are taken with a short timeout before the first trigger
/// goes, so the statement never waits while it holds one. Run it with [`run_sql`].
pub fn with_trigger_tables_locked(drop: &str) -> String {
    format!(
        r#"SET LOCAL lock_timeout = '{GATE_LOCK_TIMEOUT_MS}ms';
DO $lock$
DECLARE l text;
BEGIN
  SELECT string_agg(DISTINCT 'ONLY ' || tgrelid::regclass::text, ', ') INTO l
    FROM pg_trigger WHERE tgname = 'bucardo_delta' OR tgname LIKE 'bucardo\_%';
  IF l IS NOT NULL THEN
    EXECUTE 'LOCK TABLE ' || l || ' IN ACCESS EXCLUSIVE MODE';
  END IF;
END
$lock$;
{drop}"#
    )
}

/// What `DROP SCHEMA bucardo CASCADE` would do in one transaction, in transactions of at most
/// `batch` tables each (one statement; PostgreSQL 11 or later): first Bucardo's triggers, table
/// by table after locking the batch at once with a short timeout, then the delta, track and
/// stage tables. In one transaction, 10,000 tables' triggers and 30,000 of Bucardo's tables
/// overflow the lock table and keep every table locked until the end. A try that loses a lock
/// keeps what the earlier batches committed. Run it with [`run_sql`], then the drop.
pub fn drop_bucardo_in_batches_sql(batch: usize) -> String {
    format!(
        r#"DO $drop$
DECLARE l text; t record;
BEGIN
  LOOP
    SELECT string_agg('ONLY ' || r::regclass::text, ', ') INTO l
      FROM (SELECT DISTINCT tgrelid AS r FROM pg_trigger
             WHERE tgname = 'bucardo_delta' OR tgname LIKE 'bucardo\_%'
             ORDER BY 1 LIMIT {batch}) x;
    EXIT WHEN l IS NULL;
    PERFORM set_config('lock_timeout', '{GATE_LOCK_TIMEOUT_MS}ms', true);
    EXECUTE 'LOCK TABLE ' || l || ' IN ACCESS EXCLUSIVE MODE';
    FOR t IN SELECT tgname, tgrelid::regclass::text AS rel FROM pg_trigger
              WHERE (tgname = 'bucardo_delta' OR tgname LIKE 'bucardo\_%')
                AND tgrelid IN (SELECT DISTINCT tgrelid FROM pg_trigger
                                 WHERE tgname = 'bucardo_delta' OR tgname LIKE 'bucardo\_%'
                                 ORDER BY 1 LIMIT {batch}) LOOP
      EXECUTE format('DROP TRIGGER %I ON %s', t.tgname, t.rel);
    END LOOP;
    COMMIT;
  END LOOP;
  LOOP
    SELECT string_agg(c.oid::regclass::text, ', ') INTO l
      FROM (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'bucardo' AND c.relkind = 'r'
             ORDER BY 1 LIMIT {tables}) c;
    EXIT WHEN l IS NULL;
    EXECUTE 'DROP TABLE ' || l || ' CASCADE';
    COMMIT;
  END LOOP;
END
$drop$"#,
        tables = batch * 2,
    )
}

/// How many tries the gate lost so far (0 without a gate).
pub async fn gate_gave_way(c: &Client) -> u32 {
    let sql = format!(
        "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {}.gave_way",
        quote_ident(GATE_SCHEMA)
    );
    match c.query_one(&sql, &[]).await {
        Ok(r) => u32::try_from(r.get::<_, i64>(0)).unwrap_or(u32::MAX),
        Err(_) => 0,
    }
}

/// Whether a failure is a lock the bootstrap lost on purpose (SQLSTATE 40P01 or 55P03).
pub fn lost(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(&SqlState::T_R_DEADLOCK_DETECTED | &SqlState::LOCK_NOT_AVAILABLE)
    )
}

/// The same for a Bucardo command's error output.
pub fn lost_in_text(stderr: &str) -> bool {
    stderr.contains("lock timeout") || stderr.contains("deadlock detected")
}

/// Runs `sql` in a session prepared by [`prepare_session`], retrying a lost lock after
/// [`pause`]. Returns how many times it gave way.
pub async fn run_sql(c: &Client, side: Side, sql: &str) -> Result<u32, EngineError> {
    let mut gave_way = 0;
    loop {
        match c.batch_execute(sql).await {
            Ok(()) => return Ok(gave_way),
            Err(e) if lost(&e) && gave_way + 1 < ATTEMPTS => {
                gave_way += 1;
                tracing::warn!(
                    "[{side}] gave way to the application ({}; try {gave_way} of {ATTEMPTS}); retrying",
                    first_line(&e)
                );
                tokio::time::sleep(pause(gave_way)).await;
            }
            Err(e) => return Err(EngineError::sql(side, sql.to_string(), &e)),
        }
    }
}

fn first_line(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_and_are_capped() {
        assert_eq!(pause(1), Duration::from_millis(500));
        assert_eq!(pause(2), Duration::from_secs(1));
        assert_eq!(pause(4), Duration::from_secs(4));
        assert_eq!(pause(11), Duration::from_secs(15));
    }

    #[test]
    fn the_lock_timeout_ends_before_the_applications_deadlock_check() {
        assert_eq!(Limits::for_deadlock_timeout(1000).lock_timeout_ms, 500);
        assert_eq!(Limits::for_deadlock_timeout(200).lock_timeout_ms, 100);
        assert_eq!(Limits::for_deadlock_timeout(3).lock_timeout_ms, 2);
        assert_eq!(Limits::for_deadlock_timeout(60_000).lock_timeout_ms, 500);
    }

    #[test]
    fn role_settings_are_set_and_reset_together() {
        let set = role_set_sql(Limits::default(), "bucardo", "my db");
        assert!(
            set.contains(
                r#"ALTER ROLE "bucardo" IN DATABASE "my db" SET deadlock_timeout = '1ms';"#
            ),
            "{set}"
        );
        assert!(set.contains("SET lock_timeout = '500ms'"), "{set}");
        let reset = role_reset_sql("bucardo", "my db");
        assert!(reset.contains("RESET lock_timeout") && reset.contains("RESET deadlock_timeout"));
    }

    #[test]
    fn the_gate_locks_every_table_at_once_for_bucardo_only() {
        let sql = gate_install_sql(
            Limits::default(),
            "bucardo",
            &[
                TableName::new("public", "orders"),
                TableName::new("Sales", "Order Items"),
            ],
        );
        assert!(
            sql.contains(r#"LOCK TABLE ONLY "Sales"."Order Items", ONLY "public"."orders" IN SHARE ROW EXCLUSIVE MODE"#),
            "{sql}"
        );
        assert!(sql.contains("current_user <> 'bucardo'"), "{sql}");
        assert!(
            sql.contains("set_config('lock_timeout', '50ms', true)"),
            "{sql}"
        );
        assert!(lost_in_text(
            "ERROR:  lock timeout: the application held the tables' locks"
        ));
    }

    #[test]
    fn bucardo_reports_a_lost_lock_in_words() {
        assert!(lost_in_text(
            "DBD::Pg::st execute failed: ERROR:  deadlock detected"
        ));
        assert!(lost_in_text(
            "ERROR:  canceling statement due to lock timeout"
        ));
        assert!(!lost_in_text("ERROR:  relation does not exist"));
    }
}
