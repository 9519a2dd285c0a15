//! The data copy: every chosen table streamed from HERE's `COPY ... TO STDOUT` into THERE's
//! `COPY ... FROM STDIN`, with no temporary files and bounded buffers. All workers import one
//! snapshot that HERE exported after Bucardo's triggers committed, so every change is either in
//! the snapshot or a delta. THERE's sessions run with `session_replication_role = replica` (no
//! Bucardo trigger, no FK check fires) and `synchronous_commit = off`. Progress goes out as small
//! throttled deltas per table.

use crate::engine::catalog::TableInfo;
use crate::engine::conn::{ConnSpec, Side};
use crate::engine::error::{pg_message, EngineError};
use crate::engine::event::{CopyEvent, RunEvent};
use crate::engine::ident::{quote_ident, TableName};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

/// At most this often per table does a worker report progress.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// Result of copying one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableCopied {
    pub table: TableName,
    pub rows: u64,
    pub bytes: u64,
    pub elapsed: Duration,
}

/// A snapshot exported on HERE; the holder connection keeps it valid while it lives.
pub struct Snapshot {
    holder: Client,
    pub id: String,
}

impl Snapshot {
    pub async fn export(here: &ConnSpec) -> Result<Snapshot, EngineError> {
        let holder = here.connect(Side::Here).await?;
        holder
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(|e| EngineError::sql(Side::Here, "opening the snapshot transaction", &e))?;
        let id: String = holder
            .query_one("SELECT pg_export_snapshot()", &[])
            .await
            .map_err(|e| EngineError::sql(Side::Here, "exporting a snapshot", &e))?
            .get(0);
        Ok(Snapshot { holder, id })
    }

    /// Runs a query inside the snapshot (sequence values, for instance).
    pub fn client(&self) -> &Client {
        &self.holder
    }

    pub async fn release(self) {
        let _ = self.holder.batch_execute("COMMIT").await;
    }
}

/// Copies `tables` with `jobs` workers inside `snapshot`, largest first.
pub async fn copy_tables(
    here: &ConnSpec,
    there: &ConnSpec,
    snapshot: &Snapshot,
    tables: &[TableInfo],
    jobs: usize,
    events: &mpsc::Sender<RunEvent>,
    cancel: &CancellationToken,
) -> Result<Vec<TableCopied>, EngineError> {
    let mut order: Vec<TableInfo> = tables.to_vec();
    order.sort_by(|a, b| b.total_bytes.cmp(&a.total_bytes).then(a.name.cmp(&b.name)));
    let queue = Arc::new(Mutex::new(VecDeque::from(order)));
    let results = Arc::new(Mutex::new(Vec::new()));
    let failed = CancellationToken::new();
    let mut workers = Vec::new();
    for _ in 0..jobs.max(1).min(tables.len().max(1)) {
        let (here, there, snap) = (here.clone(), there.clone(), snapshot.id.clone());
        let (queue, results, events) = (queue.clone(), results.clone(), events.clone());
        let (cancel, failed) = (cancel.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            let (src, dst) = open_worker(&here, &there, &snap).await?;
            loop {
                if cancel.is_cancelled() {
                    return Err(EngineError::Aborted);
                }
                if failed.is_cancelled() {
                    return Ok(());
                }
                let next = queue.lock().map(|mut q| q.pop_front()).unwrap_or(None);
                let Some(t) = next else { break };
                match copy_one(&src, &dst, &t, &events, &cancel).await {
                    Ok(done) => results.lock().expect("results lock").push(done),
                    Err(e) => {
                        let _ = events
                            .send(RunEvent::Copy(CopyEvent::TableFailed {
                                table: t.name.clone(),
                                error: e.one_line(),
                            }))
                            .await;
                        failed.cancel();
                        return Err(e);
                    }
                }
            }
            let _ = src.batch_execute("COMMIT").await;
            Ok::<(), EngineError>(())
        }));
    }
    let mut first_err = None;
    for w in workers {
        match w.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(join) => {
                first_err.get_or_insert(EngineError::Io(format!("a copy worker died: {join}")));
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let out = std::mem::take(&mut *results.lock().expect("results lock"));
    Ok(out)
}

async fn open_worker(here: &ConnSpec, there: &ConnSpec, snapshot: &str) -> Result<(Client, Client), EngineError> {
    let src = here.connect(Side::Here).await?;
    src.batch_execute(&format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
        crate::engine::ident::quote_literal(snapshot)
    ))
    .await
    .map_err(|e| EngineError::sql(Side::Here, "importing the snapshot", &e))?;
    let dst = there.connect(Side::There).await?;
    dst.batch_execute("SET session_replication_role = replica; SET synchronous_commit = off")
        .await
        .map_err(|e| {
            EngineError::sql(
                Side::There,
                "setting session_replication_role (needs a superuser)",
                &e,
            )
        })?;
    Ok((src, dst))
}

/// Copies one table in one THERE transaction.
pub async fn copy_one(
    src: &Client,
    dst: &Client,
    t: &TableInfo,
    events: &mpsc::Sender<RunEvent>,
    cancel: &CancellationToken,
) -> Result<TableCopied, EngineError> {
    let started = Instant::now();
    let cols = t
        .copy_columns()
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let tn = t.name.sql();
    let err = |e: tokio_postgres::Error| EngineError::Copy {
        table: t.name.to_string(),
        message: crate::engine::secret::redact(&pg_message(&e)),
    };
    let _ = events
        .send(RunEvent::Copy(CopyEvent::TableStarted {
            table: t.name.clone(),
            est_rows: t.est_rows,
            est_bytes: t.total_bytes,
        }))
        .await;
    dst.batch_execute("BEGIN").await.map_err(err)?;
    let reader = src
        .copy_out(format!("COPY (SELECT {cols} FROM ONLY {tn}) TO STDOUT").as_str())
        .await
        .map_err(err)?;
    let writer = dst
        .copy_in::<_, Bytes>(format!("COPY {tn} ({cols}) FROM STDIN").as_str())
        .await
        .map_err(err)?;
    let mut reader = std::pin::pin!(reader);
    let mut writer = std::pin::pin!(writer);
    let (mut rows, mut bytes) = (0u64, 0u64);
    let (mut sent_rows, mut sent_bytes) = (0u64, 0u64);
    let mut last = Instant::now();
    while let Some(chunk) = reader.next().await {
        if cancel.is_cancelled() {
            let _ = dst.batch_execute("ROLLBACK").await;
            return Err(EngineError::Aborted);
        }
        let chunk = chunk.map_err(err)?;
        bytes += chunk.len() as u64;
        rows += bytecount_newlines(&chunk);
        writer.send(chunk).await.map_err(err)?;
        if last.elapsed() >= PROGRESS_INTERVAL {
            let _ = events.try_send(RunEvent::Copy(CopyEvent::Advanced {
                table: t.name.clone(),
                rows: rows - sent_rows,
                bytes: bytes - sent_bytes,
            }));
            sent_rows = rows;
            sent_bytes = bytes;
            last = Instant::now();
        }
    }
    let copied = writer.as_mut().finish().await.map_err(err)?;
    dst.batch_execute("COMMIT").await.map_err(err)?;
    if rows > sent_rows {
        let _ = events
            .send(RunEvent::Copy(CopyEvent::Advanced {
                table: t.name.clone(),
                rows: rows - sent_rows,
                bytes: bytes - sent_bytes,
            }))
            .await;
    }
    let done = TableCopied { table: t.name.clone(), rows: copied, bytes, elapsed: started.elapsed() };
    let _ = events
        .send(RunEvent::Copy(CopyEvent::TableFinished {
            table: t.name.clone(),
            rows: done.rows,
            bytes,
            elapsed: done.elapsed,
        }))
        .await;
    Ok(done)
}

/// In text COPY every row ends with a newline and embedded newlines are escaped.
fn bytecount_newlines(b: &[u8]) -> u64 {
    b.iter().filter(|&&c| c == b'\n').count() as u64
}

/// Sequence values as of the snapshot, set on THERE (as `pg_dump --data-only` does).
pub async fn copy_sequence_values(
    snapshot: &Snapshot,
    there: &Client,
    sequences: &[TableName],
) -> Result<(), EngineError> {
    for q in sequences {
        let row = snapshot
            .client()
            .query_one(format!("SELECT last_value, is_called FROM {}", q.sql()).as_str(), &[])
            .await
            .map_err(|e| EngineError::sql(Side::Here, format!("reading sequence {q}"), &e))?;
        let (v, called): (i64, bool) = (row.get(0), row.get(1));
        there
            .execute("SELECT setval($1::text::regclass, $2, $3)", &[&q.sql(), &v, &called])
            .await
            .map_err(|e| EngineError::sql(Side::There, format!("setting sequence {q}"), &e))?;
    }
    Ok(())
}
