//! The conversion of generated columns on a live HERE (and on THERE): each table in its own
//! transaction, and on HERE under a short `lock_timeout`, so that the conversion gives way to the
//! application and retries with a growing pause instead of making writers queue behind it.

use super::*;
use crate::engine::generated::{self, ATTEMPTS};
use crate::engine::giveway;

impl LiveExecutor {
    pub(super) async fn convert_generated(
        &self,
        plan: &Plan,
        step: &Step,
        events: &mpsc::Sender<RunEvent>,
        cancel: &CancellationToken,
    ) -> Result<(), EngineError> {
        for (side, spec) in [
            (Side::Here, &self.settings.here),
            (Side::There, &self.settings.there),
        ] {
            let c = spec.connect(side).await?;
            let info = catalog::server_info(&c, side).await?;
            if info.version_num < 130000 {
                return Err(EngineError::Refused(format!(
                    "--convert-generated needs PostgreSQL 13 or later (ALTER COLUMN ... DROP EXPRESSION); {side} runs {}",
                    info.version
                )));
            }
        }
        let mut retries = 0u32;
        for c in &step.commands {
            let Command::Sql {
                side, target, sql, ..
            } = c
            else {
                continue;
            };
            log(
                events,
                LogLevel::Info,
                format!("[{side}] {}", sql.replace('\n', " ")),
            )
            .await;
            let client = self.connect_as(*side, target).await?;
            if *side == Side::Here {
                giveway::prepare_session(&client, Side::Here).await?;
            }
            for attempt in 1..=ATTEMPTS {
                if cancel.is_cancelled() {
                    return Err(EngineError::Aborted);
                }
                let Err(e) = client.batch_execute(sql).await else {
                    break;
                };
                // The explicit transaction is left aborted: end it before anything else.
                let _ = client.batch_execute("ROLLBACK").await;
                if !(*side == Side::Here && giveway::lost(&e) && attempt < ATTEMPTS) {
                    return Err(EngineError::sql(*side, "converting generated columns", &e));
                }
                retries += 1;
                self.gave_way
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let pause = giveway::pause(attempt);
                log(events, LogLevel::Warn, format!(
                    "[{side}] the conversion gave way to the application ({}; try {attempt} of {ATTEMPTS}); retrying in {} ms",
                    e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string()),
                    pause.as_millis()
                ))
                .await;
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    _ = cancel.cancelled() => return Err(EngineError::Aborted),
                }
            }
        }
        self.check_converted(plan).await?;
        log(
            events,
            LogLevel::Info,
            format!("generated columns converted on both sides ({retries} retries for a lock)"),
        )
        .await;
        Ok(())
    }

    /// Every column the plan converts is plain and has the trigger, on both sides.
    async fn check_converted(&self, plan: &Plan) -> Result<(), EngineError> {
        for (side, spec) in [
            (Side::Here, &self.settings.here),
            (Side::There, &self.settings.there),
        ] {
            let c = spec.connect(side).await?;
            for t in plan.tables.iter().filter(|t| !t.generation.is_empty()) {
                let cols: Vec<String> = t.generation.iter().map(|g| g.column.clone()).collect();
                let r = c
                    .query_one(
                        "SELECT (SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = ANY($2) AND attgenerated = '' AND NOT attisdropped),
                                EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname = $3 AND tgenabled = 'O')",
                        &[&t.name.sql(), &cols, &generated::TRIGGER],
                    )
                    .await
                    .map_err(|e| EngineError::sql(side, "checking the conversion", &e))?;
                let (plain, trigger): (i64, bool) = (r.get(0), r.get(1));
                if plain as usize != cols.len() || !trigger {
                    return Err(EngineError::Refused(format!(
                        "{side}: {} is not converted as planned ({plain} of {} columns plain, trigger {} {})",
                        t.name,
                        cols.len(),
                        generated::TRIGGER,
                        if trigger { "enabled" } else { "missing or not an ordinary trigger" }
                    )));
                }
            }
        }
        Ok(())
    }
}
