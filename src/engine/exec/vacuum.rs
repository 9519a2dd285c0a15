//! The Vacuum step: `VACUUM (ANALYZE)` of every table the copy filled on THERE, largest first
//! and small tables in batches (`plan::vacuum_batches`), with as many THERE sessions as the copy
//! had workers, once every copy transaction has ended
//! (so that the rows are visible to all and their pages can be marked so). HERE is not touched.
//!
//! Measured before this step existed: THERE's first reads after the copy (Compare's) set the
//! rows' hint bits and so rewrote every page, while autovacuum's own first pass over the same
//! tables ran beside them, and the last key range of each table was read by a sequential scan
//! on a planner without statistics.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// A table whose vacuum takes longer gets a line of its own in the log.
const SLOW: Duration = Duration::from_secs(5);

impl LiveExecutor {
    pub(super) async fn vacuum(
        &self,
        plan: &Plan,
        events: &mpsc::Sender<RunEvent>,
        cancel: &CancellationToken,
    ) -> Result<(), EngineError> {
        let order = plan::vacuum_batches(&plan.tables);
        let tables: usize = order.iter().map(Vec::len).sum();
        let there = &self.settings.there;
        let sessions = self.settings.jobs.clamp(1, order.len().max(1));
        let mut clients = Vec::with_capacity(sessions);
        for _ in 0..sessions {
            let c = there.connect(Side::There).await?;
            c.batch_execute("SET statement_timeout = 0; SET lock_timeout = 0")
                .await
                .map_err(|e| EngineError::sql(Side::There, "opening a vacuum session", &e))?;
            let pid: i32 = c
                .query_one("SELECT pg_backend_pid()", &[])
                .await
                .map_err(|e| EngineError::sql(Side::There, "opening a vacuum session", &e))?
                .get(0);
            clients.push((c, pid));
        }
        let started = Instant::now();
        let next = AtomicUsize::new(0);
        let longest: Mutex<Option<(Duration, String)>> = Mutex::new(None);
        let work = clients.iter().map(|(c, _)| async {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(batch) = order.get(i) else {
                    return Ok::<(), EngineError>(());
                };
                let what = match batch.as_slice() {
                    [t] => t.name.to_string(),
                    [t, ..] => format!("{} tables from {} on", batch.len(), t.name),
                    [] => continue,
                };
                let t0 = Instant::now();
                c.batch_execute(&plan::vacuum_sql(batch))
                    .await
                    .map_err(|e| EngineError::sql(Side::There, format!("vacuuming {what}"), &e))?;
                let took = t0.elapsed();
                if took >= SLOW {
                    log(
                        events,
                        LogLevel::Info,
                        format!(
                            "vacuumed and analysed {what} on THERE in {:.1} s",
                            took.as_secs_f64()
                        ),
                    )
                    .await;
                }
                if let Ok(mut l) = longest.lock() {
                    if l.as_ref().is_none_or(|(d, _)| took > *d) {
                        *l = Some((took, what));
                    }
                }
            }
        });
        tokio::select! {
            r = futures_util::future::try_join_all(work) => { r?; }
            _ = cancel.cancelled() => {
                // A VACUUM runs to its end unless its backend is told to stop.
                if let Ok(c) = there.connect(Side::There).await {
                    let pids: Vec<i32> = clients.iter().map(|(_, p)| *p).collect();
                    let _ = c.execute("SELECT pg_cancel_backend(p) FROM unnest($1::int[]) p", &[&pids]).await;
                }
                return Err(EngineError::Aborted);
            }
        }
        let longest = longest
            .lock()
            .ok()
            .and_then(|l| l.clone())
            .map(|(d, t)| format!("; the longest, {t}, {:.1} s", d.as_secs_f64()))
            .unwrap_or_default();
        log(
            events,
            LogLevel::Notice,
            format!(
                "vacuumed and analysed {tables} table{} on THERE in {:.1} s with {sessions} session{}{longest}",
                if tables == 1 { "" } else { "s" },
                started.elapsed().as_secs_f64(),
                if sessions == 1 { "" } else { "s" },
            ),
        )
        .await;
        Ok(())
    }
}
