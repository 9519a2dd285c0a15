//! The data steps: roles, the parallel copy (a fresh snapshot on HERE per piece), and the
//! sequences interleaved for two masters.

use super::*;

/// Sequences set up per round trip on each side.
const SEQUENCE_BATCH: usize = 100;
/// The longest a batch of `ALTER SEQUENCE` on HERE waits for a lock, holding the others.
const BATCH_LOCK_TIMEOUT: &str = "10ms";

/// Each sequence's `ALTER` apart, and its `setval`s as the columns of one `SELECT`.
fn split_batch(sqls: impl Iterator<Item = String>) -> (Vec<String>, Vec<String>) {
    sqls.map(|sql| {
        let (alter, select) = sql.split_once('\n').unwrap_or((&sql, ""));
        (
            alter.to_string(),
            select.trim_start_matches("SELECT ").to_string(),
        )
    })
    .unzip()
}

impl LiveExecutor {
    pub(super) async fn copy_roles(
        &self,
        step: &Step,
        events: &mpsc::Sender<RunEvent>,
    ) -> Result<(), EngineError> {
        for c in &step.commands {
            if let Command::Pipe(a, b) = c {
                let out = self.pipe(a, b, events).await?;
                let errors: Vec<&str> = out
                    .stderr
                    .lines()
                    .filter(|l| l.contains("ERROR") && !l.contains("already exists"))
                    .collect();
                if !errors.is_empty() {
                    return Err(EngineError::Command {
                        program: "psql".into(),
                        status: "errors while copying roles".into(),
                        stderr_tail: errors.join(" | "),
                    });
                }
            }
        }
        Ok(())
    }

    pub(super) async fn assert_no_sync_run(&self, when: &str) -> Result<(), EngineError> {
        let ctl = self.control_as_bucardo().connect(Side::Control).await?;
        let runs = bucardo::sync_runs(&ctl, &self.settings.names.sync).await?;
        if runs.runs > 0 {
            return Err(EngineError::Refused(format!(
                "a run of sync {} happened {when} the data copy ({}); THERE may hold rows from it. Run `bucardo-bootstrap cleanup` and start again",
                self.settings.names.sync,
                runs.last_status.unwrap_or_default()
            )));
        }
        Ok(())
    }

    pub(super) async fn copy_data(
        &self,
        plan: &Plan,
        events: &mpsc::Sender<RunEvent>,
        cancel: &CancellationToken,
    ) -> Result<(), EngineError> {
        self.assert_no_sync_run("before").await?;
        let s = &self.settings;
        let done = self.tables_done();
        // A copy of every table's catalog row only when some are left out (6 MB at 10,000).
        let todo: std::borrow::Cow<[TableInfo]> = if done.is_empty() {
            std::borrow::Cow::Borrowed(&plan.tables)
        } else {
            plan.tables
                .iter()
                .filter(|t| !done.contains(&t.name))
                .cloned()
                .collect()
        };
        let partial: Vec<RangesDone> = self.with_journal(|j| {
            Ok(todo
                .iter()
                .filter_map(|t| j.ranges_for(&t.name).cloned())
                .collect())
        })?;
        if !done.is_empty() || partial.iter().any(|r| !r.done.is_empty()) {
            let ranges: usize = partial.iter().map(|r| r.done.len()).sum();
            log(
                events,
                LogLevel::Info,
                format!(
                    "resuming: {} tables and {ranges} key ranges were copied by an earlier run; {} tables to go",
                    done.len(),
                    todo.len()
                ),
            )
            .await;
        }
        let there = s.there.connect(Side::There).await?;
        // Tables with committed ranges keep them; each missing range clears its own span first.
        let whole: Vec<TableName> = todo
            .iter()
            .filter(|t| {
                !partial
                    .iter()
                    .any(|r| r.table == t.name && !r.done.is_empty())
            })
            .map(|t| t.name.clone())
            .collect();
        for name in catalog::nonempty(&there, Side::There, &whole).await? {
            // Rows of an interrupted copy: empty the table and copy it again under the new
            // snapshot. Replica mode keeps Bucardo's truncate trigger from logging this.
            log(
                events,
                LogLevel::Warn,
                format!("{name} holds rows from an interrupted copy: emptying it on THERE"),
            )
            .await;
            there
                .batch_execute(&format!("SET session_replication_role = replica; TRUNCATE ONLY {}; RESET session_replication_role", name.sql()))
                .await
                .map_err(|e| EngineError::sql(Side::There, format!("emptying {name}"), &e))?;
        }
        log(
            events,
            LogLevel::Info,
            format!(
                "copying {} tables with {} workers, each piece in a snapshot of its own on HERE \
                 (Bucardo's triggers log every change since before the first one)",
                todo.len(),
                s.jobs
            ),
        )
        .await;
        // Every table, and every key range of a split one, is journaled as soon as it committed
        // on THERE.
        let (tx, mut rx) = mpsc::channel::<RunEvent>(1024);
        let forward = events.clone();
        let journal_errors = std::sync::Arc::new(std::sync::Mutex::new(None::<EngineError>));
        let je = journal_errors.clone();
        let forwarder = async {
            let mut batch: Vec<RunEvent> = Vec::new();
            while rx.recv_many(&mut batch, 256).await > 0 {
                // What finished since the last pass goes to the journal in one write.
                let mut progress: Vec<Progress> = Vec::new();
                let mut recorded = Ok(());
                for ev in &batch {
                    match ev {
                        RunEvent::Copy(CopyEvent::TableSplit { table, split }) => {
                            let p = std::mem::take(&mut progress);
                            recorded = recorded
                                .and_then(|()| self.with_journal(|j| j.record_progress(&p)))
                                .and_then(|()| self.with_journal(|j| j.record_split(table, split)));
                        }
                        RunEvent::Copy(CopyEvent::RangeDone { table, part }) => {
                            progress.push(Progress::Range(table.clone(), *part));
                        }
                        RunEvent::Copy(CopyEvent::TableFinished { table, .. }) => {
                            progress.push(Progress::Table(table.clone()));
                        }
                        _ => {}
                    }
                }
                let recorded =
                    recorded.and_then(|()| self.with_journal(|j| j.record_progress(&progress)));
                if let Err(e) = recorded {
                    if let Ok(mut slot) = je.lock() {
                        slot.get_or_insert(e);
                    }
                }
                for ev in batch.drain(..) {
                    let _ = forward.send(ev).await;
                }
            }
        };
        let copy = async {
            let r = copy::copy_tables(
                &s.here,
                &s.there,
                copy::Source::PerPiece,
                &todo,
                &partial,
                s.jobs,
                &self.governed.pace,
                &tx,
                cancel,
            )
            .await;
            drop(tx);
            r
        };
        let (copied, ()) = tokio::join!(copy, forwarder);
        let copied = copied?;
        if let Some(e) = journal_errors.lock().ok().and_then(|mut g| g.take()) {
            return Err(e);
        }
        let seqs: Vec<TableName> = plan::sequence_uses(&plan.tables)
            .into_iter()
            .map(|f| f.sequence)
            .collect();
        let here = s.here.connect(Side::Here).await?;
        copy::copy_sequence_values(&here, &there, &seqs).await?;
        let rows: u64 = copied.iter().map(|c| c.rows).sum();
        let bytes: u64 = copied.iter().map(|c| c.bytes).sum();
        log(
            events,
            LogLevel::Info,
            format!(
                "copied {rows} rows ({}) in {} tables, and {} sequence values",
                plan::human_bytes(bytes as i64),
                copied.len(),
                seqs.len()
            ),
        )
        .await;
        self.assert_no_sync_run("during").await
    }

    pub(super) async fn sequences(
        &self,
        plan: &Plan,
        events: &mpsc::Sender<RunEvent>,
    ) -> Result<(), EngineError> {
        let s = &self.settings;
        let here = s.here.connect(Side::Here).await?;
        let there = s.there.connect(Side::There).await?;
        // ALTER SEQUENCE waits for every transaction that took a value: it gives way.
        for (side, c) in [(Side::Here, &here), (Side::There, &there)] {
            crate::engine::giveway::prepare_session(c, side).await?;
        }
        // A batch of sequences per round trip on each side: one at a time, 10,000 sequences
        // took 23 s of four round trips each (measured).
        let feeds = plan::sequence_uses(&plan.tables);
        for batch in feeds.chunks(SEQUENCE_BATCH) {
            let what = || match batch {
                [f] => f.sequence.to_string(),
                _ => format!("{} sequences from {}", batch.len(), batch[0].sequence),
            };
            let (alters, selects) = split_batch(batch.iter().map(plan::interleave_here_sql));
            // The batch in one transaction: a commit each (and its WAL flush) made 10,000
            // sequences take 13 s (measured). It waits for no lock longer than
            // BATCH_LOCK_TIMEOUT, so that the application's nextval on a sequence it already
            // altered is not held up; past that the batch goes again one ALTER per transaction,
            // each giving way on its own.
            let batch_sql = format!(
                "SELECT set_config('lock_timeout', '{BATCH_LOCK_TIMEOUT}', true);\n{}",
                alters.join("\n")
            );
            let gave_way: u32 = match here.batch_execute(&batch_sql).await {
                Ok(()) => 0,
                Err(e) if crate::engine::giveway::lost(&e) => {
                    1 + futures_util::future::try_join_all(
                        alters
                            .iter()
                            .map(|a| crate::engine::giveway::run_sql(&here, Side::Here, a)),
                    )
                    .await?
                    .into_iter()
                    .sum::<u32>()
                }
                Err(e) => {
                    return Err(EngineError::sql(
                        Side::Here,
                        format!("altering {}", what()),
                        &e,
                    ))
                }
            };
            self.gave_way
                .fetch_add(gave_way, std::sync::atomic::Ordering::Relaxed);
            let row = here
                .query_one(format!("SELECT {}", selects.join(", ")).as_str(), &[])
                .await
                .map_err(|e| EngineError::sql(Side::Here, format!("restarting {}", what()), &e))?;
            let values: Vec<i64> = (0..batch.len()).map(|i| row.get(i)).collect();
            let (alters, selects) = split_batch(batch.iter().enumerate().map(|(i, f)| {
                plan::interleave_there_sql(&f.sequence, &format!("${}::bigint + 1", i + 1))
            }));
            there
                .batch_execute(&alters.join("\n"))
                .await
                .map_err(|e| EngineError::sql(Side::There, format!("altering {}", what()), &e))?;
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = values
                .iter()
                .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            there
                .query_one(format!("SELECT {}", selects.join(", ")).as_str(), &params)
                .await
                .map_err(|e| EngineError::sql(Side::There, format!("restarting {}", what()), &e))?;
            for (f, n) in batch.iter().zip(values) {
                log(
                    events,
                    LogLevel::Info,
                    format!(
                        "{}: HERE hands out {n}, {}, ...; THERE {}, {}, ...",
                        f.sequence,
                        n + 2,
                        n + 1,
                        n + 3
                    ),
                )
                .await;
            }
        }
        Ok(())
    }
}
