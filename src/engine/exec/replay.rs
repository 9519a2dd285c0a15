//! Replaying the interim deltas: kick the sync and wait until every delta logged before the kick
//! has been replayed on both sides.

use super::*;

impl LiveExecutor {
    pub(super) async fn drain(
        &self,
        step: &Step,
        events: &mpsc::Sender<RunEvent>,
        cancel: &CancellationToken,
    ) -> Result<(), EngineError> {
        let s = &self.settings;
        let ctl = self.control_as_bucardo().connect(Side::Control).await?;
        let here = s.here.connect(Side::Here).await?;
        let there = s.there.connect(Side::There).await?;
        // Everything logged before this moment is an interim delta that must be replayed.
        let here_t0 = bucardo::server_now(&here, Side::Here).await?;
        let there_t0 = bucardo::server_now(&there, Side::There).await?;
        for c in &step.commands {
            if let Command::Run(inv) = c {
                let out = self
                    .daemon_command(inv, events, s.kick_timeout() + Duration::from_secs(30))
                    .await?;
                match out.status {
                    0 => {}
                    1 => {
                        log(
                            events,
                            LogLevel::Warn,
                            "the kick timed out; still waiting for the deltas".into(),
                        )
                        .await
                    }
                    _ => {
                        let runs = bucardo::sync_runs(&ctl, &s.names.sync).await?;
                        return Err(EngineError::Refused(format!(
                            "the sync failed: {}",
                            runs.last_bad_status.unwrap_or_else(|| out.tail())
                        )));
                    }
                }
            }
        }
        let deadline = tokio::time::Instant::now() + s.kick_timeout();
        let mut last_kick = tokio::time::Instant::now();
        loop {
            let runs = bucardo::sync_runs(&ctl, &s.names.sync).await?;
            let pending = interim_pending(s, (&here, &here_t0), (&there, &there_t0)).await?;
            // A kick that reached a daemon which restarted before the run began is lost: kick
            // again now and then while deltas wait and no run is under way.
            if !pending.is_empty() && !runs.running && last_kick.elapsed() >= REKICK_INTERVAL {
                let nudge = self.real(&self.cli().invocation(
                    &BucardoCmd::Nudge {
                        sync: s.names.sync.clone(),
                    },
                    PassfileRef::Daemon,
                ));
                self.daemon_command(&nudge, events, BUCARDO_TIMEOUT).await?;
                last_kick = tokio::time::Instant::now();
            }
            if pending.is_empty() && runs.last_good_ended.is_some() {
                if let Ok(mut d) = self.drained.lock() {
                    *d = Some((here_t0.clone(), there_t0.clone()));
                }
                log(
                    events,
                    LogLevel::Info,
                    format!(
                        "the interim deltas are replayed (last good run ended {})",
                        runs.last_good_ended.unwrap_or_default()
                    ),
                )
                .await;
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let list: Vec<String> = pending.iter().map(|(t, n)| format!("{t} ({n})")).collect();
                return Err(EngineError::Timeout(format!(
                    "interim deltas still pending after {} s on: {} (last run: {})",
                    s.kick_timeout_s,
                    list.join(", "),
                    runs.last_bad_status
                        .or(runs.last_status)
                        .unwrap_or_else(|| "none".into())
                )));
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
                _ = cancel.cancelled() => return Err(EngineError::Aborted),
            }
        }
    }
}

/// Deltas logged before each side's `t0` (that server's clock) that are not replicated yet, on
/// HERE and THERE together: what the drain and the verification wait for.
pub(super) async fn interim_pending(
    s: &Settings,
    here: (&tokio_postgres::Client, &str),
    there: (&tokio_postgres::Client, &str),
) -> Result<Vec<(String, i64)>, EngineError> {
    let (names, group) = (&s.names.sync, &s.names.dbgroup);
    let mut pending = bucardo::pending_before(here.0, Side::Here, names, group, here.1).await?;
    pending.extend(bucardo::pending_before(there.0, Side::There, names, group, there.1).await?);
    Ok(pending)
}
