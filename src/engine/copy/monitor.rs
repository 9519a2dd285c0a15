//! THERE's own view of the copy, polled once a second on a connection of its own:
//! `pg_stat_progress_copy` for the rows each worker's COPY has taken so far (a cross-check of
//! the rows HERE sent, which can run ahead by what sits in buffers), and
//! `pg_stat_progress_create_index` for the phases of deferred index builds. Workers say what
//! their THERE backend is doing in a shared [`Watch`]; the monitor turns it into
//! [`CopyEvent::ThereRows`] and [`CopyEvent::IndexPhase`] events, sent only when they change and
//! never waiting on a full channel.

use crate::engine::copy::stream::Tally;
use crate::engine::event::{CopyEvent, RunEvent};
use crate::engine::ident::TableName;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

/// How often THERE's progress views are read.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// What one THERE backend of the copy is doing.
#[derive(Clone)]
pub enum Activity {
    Copying(Arc<Tally>),
    Indexing { table: TableName, index: String },
}

/// THERE backends of the copy by pid.
#[derive(Clone, Default)]
pub struct Watch(Arc<Mutex<HashMap<i32, Activity>>>);

impl Watch {
    pub fn set(&self, pid: i32, a: Activity) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(pid, a);
        }
    }

    pub fn clear(&self, pid: i32) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(&pid);
        }
    }

    fn snapshot(&self) -> HashMap<i32, Activity> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

const COPY_SQL: &str =
    "SELECT pid, tuples_processed FROM pg_stat_progress_copy WHERE pid = ANY($1)";
const INDEX_SQL: &str = "SELECT pid, phase, \
     CASE WHEN blocks_total > 0 THEN 100 * blocks_done / blocks_total \
          WHEN tuples_total > 0 THEN 100 * tuples_done / tuples_total END::int \
     FROM pg_stat_progress_create_index WHERE pid = ANY($1)";

/// Polls until `done` is cancelled or THERE's connection fails (the copy itself reports that).
/// Each query races `done`, so a THERE that stops answering never holds the copy's end.
pub async fn run(
    there: Client,
    watch: Watch,
    events: mpsc::Sender<RunEvent>,
    done: CancellationToken,
) {
    let mut sent_rows: HashMap<TableName, u64> = HashMap::new();
    let mut sent_phase: HashMap<i32, (String, Option<i32>)> = HashMap::new();
    let mut tick = tokio::time::interval(POLL_EVERY);
    loop {
        tokio::select! {
            _ = done.cancelled() => return,
            _ = tick.tick() => {}
        }
        let before = watch.snapshot();
        if before.is_empty() {
            continue;
        }
        // Committed rows are read before THERE's counts, so a piece that commits in between is
        // never counted twice.
        let committed: HashMap<TableName, u64> = before
            .values()
            .filter_map(|a| match a {
                Activity::Copying(t) => Some((t.table.clone(), t.committed_rows())),
                Activity::Indexing { .. } => None,
            })
            .collect();
        let pids: Vec<i32> = before.keys().copied().collect();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&pids];
        // Separately: pg_stat_progress_copy is absent before PostgreSQL 14.
        let (copies, builds) = tokio::select! {
            _ = done.cancelled() => return,
            r = async { tokio::join!(there.query(COPY_SQL, &params), there.query(INDEX_SQL, &params)) } => r,
        };
        if copies.is_err() && builds.is_err() {
            return;
        }
        let after = watch.snapshot();
        // A pid's row counts only if it is still on the piece it was on before the query.
        let same_piece = |pid: &i32| match (before.get(pid), after.get(pid)) {
            (Some(Activity::Copying(a)), Some(Activity::Copying(b))) => Arc::ptr_eq(a, b),
            _ => false,
        };

        let mut moving: HashMap<TableName, u64> = HashMap::new();
        for r in copies.iter().flatten() {
            let (pid, n): (i32, i64) = (r.get(0), r.get(1));
            if let (true, Some(Activity::Copying(t))) = (same_piece(&pid), before.get(&pid)) {
                *moving.entry(t.table.clone()).or_default() += n.max(0) as u64;
            }
        }
        for (table, base) in committed {
            // A COPY that ended but has not committed yet shows in neither count, so a reading
            // can come out low for a moment: THERE's count only ever goes up.
            let last = sent_rows.get(&table).copied();
            let rows = (base + moving.get(&table).copied().unwrap_or(0)).max(last.unwrap_or(0));
            if last != Some(rows) {
                let ev = CopyEvent::ThereRows {
                    table: table.clone(),
                    rows,
                };
                if events.try_send(RunEvent::Copy(ev)).is_ok() {
                    sent_rows.insert(table, rows);
                }
            }
        }

        for r in builds.iter().flatten() {
            let (pid, phase, pct): (i32, String, Option<i32>) = (r.get(0), r.get(1), r.get(2));
            let Some(Activity::Indexing { table, index }) = after.get(&pid) else {
                continue;
            };
            let key = (format!("{index} {phase}"), pct.map(|p| p / 10));
            if sent_phase.get(&pid) == Some(&key) {
                continue;
            }
            let ev = CopyEvent::IndexPhase {
                table: table.clone(),
                index: index.clone(),
                phase,
                percent: pct,
            };
            if events.try_send(RunEvent::Copy(ev)).is_ok() {
                sent_phase.insert(pid, key);
            }
        }
    }
}
