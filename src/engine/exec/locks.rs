//! Installing Bucardo's triggers on a live HERE: under a `lock_timeout`, retried a bounded number
//! of times, with whoever blocks the installation reported while it waits.

use super::*;

impl LiveExecutor {
    /// `add sync` installs triggers on every table of HERE, which waits for any transaction
    /// holding a conflicting lock, and makes every writer queue behind it. So the trigger
    /// installation runs under a `lock_timeout` (set on Bucardo's role in HERE's database for the
    /// duration), is retried a bounded number of times, and whoever blocks it is reported.
    pub(super) async fn add_sync_lock_safe(
        &self,
        step: &Step,
        events: &mpsc::Sender<RunEvent>,
        cancel: &CancellationToken,
    ) -> Result<(), EngineError> {
        let s = &self.settings;
        let here = s.here.connect(Side::Here).await?;
        let role = quote_ident(&s.bucardo.user);
        let db = quote_ident(&s.here.dbname);
        here.batch_execute(&format!(
            "ALTER ROLE {role} IN DATABASE {db} SET lock_timeout = '{}ms'",
            LOCK_TIMEOUT.as_millis()
        ))
        .await
        .map_err(|e| EngineError::sql(Side::Here, "setting lock_timeout for Bucardo's role", &e))?;
        let mut result = Err(EngineError::Timeout("add sync never ran".into()));
        for attempt in 1..=LOCK_ATTEMPTS {
            let watch = watch_blockers(&here, &s.bucardo.user, events);
            let run = self.step_commands(step, events);
            tokio::pin!(run);
            result = tokio::select! {
                r = &mut run => r,
                () = watch => unreachable_watch(),
                _ = cancel.cancelled() => Err(EngineError::Aborted),
            };
            match &result {
                Err(EngineError::Command { stderr_tail, .. })
                    if (stderr_tail.contains("lock timeout")
                        || stderr_tail.contains("deadlock detected"))
                        && attempt < LOCK_ATTEMPTS =>
                {
                    log(events, LogLevel::Warn, format!("installing the triggers hit a lock timeout or a deadlock (attempt {attempt} of {LOCK_ATTEMPTS}); retrying")).await;
                    tokio::time::sleep(Duration::from_secs(2 * attempt as u64)).await;
                }
                _ => break,
            }
        }
        let reset = here
            .batch_execute(&format!(
                "ALTER ROLE {role} IN DATABASE {db} RESET lock_timeout"
            ))
            .await
            .map_err(|e| {
                EngineError::sql(Side::Here, "resetting lock_timeout for Bucardo's role", &e)
            });
        match (&result, reset) {
            (Err(EngineError::Command { stderr_tail, .. }), _) if stderr_tail.contains("lock timeout") => Err(EngineError::Timeout(format!(
                "Bucardo's triggers could not be installed on HERE: a lock was held for over {} s on every one of {LOCK_ATTEMPTS} attempts; see the blockers above, end them or retry at a quieter time",
                LOCK_TIMEOUT.as_secs()
            ))),
            (_, Err(e)) if result.is_ok() => Err(e),
            _ => result,
        }
    }
}

/// How long the trigger installation waits for a lock on HERE before it gives up and retries.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// How many times the trigger installation is tried.
pub const LOCK_ATTEMPTS: u32 = 5;

/// How often the sessions blocking Bucardo on HERE are reported.
pub(super) const BLOCKER_POLL: Duration = Duration::from_secs(2);

pub(super) fn unreachable_watch() -> Result<(), EngineError> {
    Err(EngineError::Io("the lock watcher stopped".into()))
}

/// Reports, every [`BLOCKER_POLL`], the sessions that block `role`'s sessions on this server
/// (pid, user, transaction age, query). Never returns.
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
    loop {
        tokio::time::sleep(BLOCKER_POLL).await;
        if let Ok(rows) = c.query(SQL, &[&role]).await {
            for r in rows {
                let (pid, user, age, query): (i32, Option<String>, i32, Option<String>) =
                    (r.get(0), r.get(1), r.get(2), r.get(3));
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
