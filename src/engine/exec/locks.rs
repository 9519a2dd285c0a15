//! Installing and enabling Bucardo's triggers on a live HERE: Bucardo's sessions give way to the
//! application ([`giveway`]), a lost lock is retried and counted, and whoever blocks the
//! installation is reported while it waits.

use super::*;
use crate::engine::giveway;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

impl LiveExecutor {
    /// Runs Bucardo `commands` that take strong locks on HERE's tables (`add sync` creates a
    /// trigger on each, `update sync autokick=1` more): while they run, the sessions Bucardo
    /// opens as its role in HERE's database give way to the application (settings on the role,
    /// reset after). A try that lost a lock is retried after a growing pause. Returns the
    /// longest time Bucardo held a lock on HERE's tables that blocks their writes, as sampled.
    pub(super) async fn give_way_while(
        &self,
        what: &str,
        commands: &[Command],
        tables: &[TableName],
        events: &mpsc::Sender<RunEvent>,
        cancel: &CancellationToken,
    ) -> Result<Duration, EngineError> {
        let s = &self.settings;
        let here = s.here.connect(Side::Here).await?;
        let sampler = s.here.connect(Side::Here).await?;
        let held = std::sync::Mutex::new(Held::default());
        let limits = giveway::Limits::read(&here, Side::Here).await?;
        let (role, db) = (&s.bucardo.user, &s.here.dbname);
        here.batch_execute(&giveway::role_set_sql(limits, role, db))
            .await
            .map_err(|e| {
                EngineError::sql(Side::Here, "making Bucardo's sessions give way on HERE", &e)
            })?;
        let gate = self.open_gate(&here, limits, tables, events).await;
        // Behind the gate one try already keeps trying for GATE_PATIENCE_S.
        let attempts = if gate {
            GATE_ATTEMPTS
        } else {
            giveway::ATTEMPTS
        };
        let mut result = Err(EngineError::Timeout(format!("{what} never ran")));
        for attempt in 1..=attempts {
            let watch = async {
                tokio::join!(
                    watch_blockers(&here, role, events),
                    watch_table_locks(&sampler, role, &held)
                );
            };
            let run = self.run_commands(commands, events);
            tokio::pin!(run);
            result = tokio::select! {
                r = &mut run => r,
                () = watch => unreachable_watch(),
                _ = cancel.cancelled() => Err(EngineError::Aborted),
            };
            match &result {
                Err(EngineError::Command { stderr_tail, .. })
                    if giveway::lost_in_text(stderr_tail) && attempt < attempts =>
                {
                    self.gave_way.fetch_add(1, Ordering::Relaxed);
                    let pause = giveway::pause(attempt);
                    let lost = if stderr_tail.contains("deadlock") {
                        "a deadlock"
                    } else {
                        "a lock wait"
                    };
                    log(events, LogLevel::Warn, format!(
                        "Bucardo gave way to the application on HERE while {what}: it lost {lost} on purpose (try {attempt} of {attempts}); trying again in {:.1} s",
                        pause.as_secs_f64()
                    )).await;
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        _ = cancel.cancelled() => {
                            result = Err(EngineError::Aborted);
                            break;
                        }
                    }
                }
                _ => break,
            }
        }
        if gate {
            let n = giveway::gate_gave_way(&here).await;
            self.gave_way.fetch_add(n, Ordering::Relaxed);
            if n > 0 {
                log(events, LogLevel::Warn, format!(
                "Bucardo gave way to the application on HERE while {what}: {n} tries to lock the {} tables at once lost a lock wait or a deadlock on purpose, each after at most {} ms and releasing every lock it had taken",
                tables.len(),
                giveway::GATE_LOCK_TIMEOUT_MS.min(limits.lock_timeout_ms)
            )).await;
            }
            if let Err(e) = here.batch_execute(&giveway::gate_remove_sql()).await {
                result = result.and(Err(EngineError::sql(
                    Side::Here,
                    "removing the lock gate",
                    &e,
                )));
            }
        }
        let reset = here
            .batch_execute(&giveway::role_reset_sql(role, db))
            .await
            .map_err(|e| {
                EngineError::sql(Side::Here, "resetting the settings of Bucardo's role", &e)
            });
        match (&result, reset) {
            (Err(EngineError::Command { stderr_tail, .. }), _) if giveway::lost_in_text(stderr_tail) => Err(EngineError::Timeout(format!(
                "Bucardo could not finish {what} on HERE: the application held the locks it needs on every one of {attempts} tries ({}); see the blockers above, end them or retry at a quieter time",
                if gate {
                    format!("each kept trying to take every table's lock at once for {} s", giveway::GATE_PATIENCE_S)
                } else {
                    format!("each waited at most {} ms per lock and gave way", limits.lock_timeout_ms)
                }
            ))),
            (_, Err(e)) if result.is_ok() => Err(e),
            _ => result.map(|()| held.lock().map(|h| h.longest).unwrap_or_default()),
        }
    }

    /// Installs the lock gate on HERE; false (and a warning) when the tool's role on HERE is not
    /// a superuser, which event triggers need.
    async fn open_gate(
        &self,
        here: &tokio_postgres::Client,
        limits: giveway::Limits,
        tables: &[TableName],
        events: &mpsc::Sender<RunEvent>,
    ) -> bool {
        let sql = giveway::gate_install_sql(limits, &self.settings.bucardo.user, tables);
        match here.batch_execute(&sql).await {
            Ok(()) => true,
            Err(e) => {
                log(events, LogLevel::Warn, format!(
                    "cannot install the lock gate on HERE ({}): Bucardo takes its locks table by table, giving way to every deadlock",
                    e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string())
                )).await;
                false
            }
        }
    }
}

/// How many times Bucardo's command is run behind the lock gate before the step fails.
const GATE_ATTEMPTS: u32 = 3;

/// How often the sessions blocking Bucardo on HERE are looked for: Bucardo waits at most
/// [`giveway::MAX_LOCK_TIMEOUT`] per try.
pub(super) const BLOCKER_POLL: Duration = Duration::from_millis(200);

pub(super) fn unreachable_watch() -> Result<(), EngineError> {
    Err(EngineError::Io("the lock watcher stopped".into()))
}

/// How often [`watch_table_locks`] looks at `pg_locks`.
pub(super) const LOCK_SAMPLE: Duration = Duration::from_millis(100);

/// The spans during which Bucardo's sessions held a lock on HERE's tables.
#[derive(Default)]
pub(super) struct Held {
    since: Option<std::time::Instant>,
    pub longest: Duration,
}

/// Samples, every [`LOCK_SAMPLE`], whether `role`'s sessions hold a lock that blocks writes on
/// one of the database's own tables (not Bucardo's new ones) and records the longest span, one
/// sample interval added for what fell between samples. Never returns.
pub(super) async fn watch_table_locks(
    c: &tokio_postgres::Client,
    role: &str,
    held: &std::sync::Mutex<Held>,
) {
    const SQL: &str = "SELECT EXISTS (SELECT 1 FROM pg_locks l
                         JOIN pg_stat_activity a ON a.pid = l.pid
                         JOIN pg_class c ON c.oid = l.relation
                         JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE a.usename = $1 AND l.granted AND l.locktype = 'relation'
                          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                          AND c.relkind IN ('r', 'p')
                          AND n.nspname NOT IN ('bucardo', 'pg_catalog', 'information_schema')
                          AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock'))";
    loop {
        let locked = matches!(c.query_one(SQL, &[&role]).await, Ok(r) if r.get::<_, bool>(0));
        let now = std::time::Instant::now();
        if let Ok(mut h) = held.lock() {
            match (locked, h.since) {
                (true, None) => h.since = Some(now),
                (true, Some(t)) | (false, Some(t)) => {
                    h.longest = h.longest.max(now - t + LOCK_SAMPLE);
                    if !locked {
                        h.since = None;
                    }
                }
                (false, None) => {}
            }
        }
        tokio::time::sleep(LOCK_SAMPLE).await;
    }
}

/// Reports the sessions that block `role`'s sessions on this server (pid, user, transaction age,
/// query), each once. Never returns.
pub(super) async fn watch_blockers(
    c: &tokio_postgres::Client,
    role: &str,
    events: &mpsc::Sender<RunEvent>,
) {
    const SQL: &str = "SELECT b.pid, b.usename, coalesce(extract(epoch FROM now() - b.xact_start)::int, 0), left(regexp_replace(b.query, '\\s+', ' ', 'g'), 120)
                         FROM pg_stat_activity w
                         CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS bp(pid)
                         JOIN pg_stat_activity b ON b.pid = bp.pid
                        WHERE w.usename = $1 AND w.wait_event_type = 'Lock'";
    let mut reported = BTreeSet::new();
    loop {
        tokio::time::sleep(BLOCKER_POLL).await;
        if let Ok(rows) = c.query(SQL, &[&role]).await {
            for r in rows {
                let (pid, user, age, query): (i32, Option<String>, i32, Option<String>) =
                    (r.get(0), r.get(1), r.get(2), r.get(3));
                if !reported.insert(pid) {
                    continue;
                }
                log(
                    events,
                    LogLevel::Warn,
                    format!("waiting for a lock on HERE held by pid {pid} ({}, transaction open {age} s): {}", user.unwrap_or_default(), query.unwrap_or_default()),
                )
                .await;
            }
        }
    }
}
