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
        let now = watch.snapshot();
        if now.is_empty() {
            continue;
        }
        let pids: Vec<i32> = now.keys().copied().collect();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&pids];
        let (Ok(copies), Ok(builds)) = tokio::join!(
            there.query(COPY_SQL, &params),
            there.query(INDEX_SQL, &params)
        ) else {
            return;
        };

        let mut in_flight: HashMap<TableName, (Arc<Tally>, u64)> = HashMap::new();
        for a in now.values() {
            if let Activity::Copying(t) = a {
                in_flight
                    .entry(t.table.clone())
                    .or_insert_with(|| (t.clone(), 0));
            }
        }
        for r in &copies {
            let (pid, n): (i32, i64) = (r.get(0), r.get(1));
            if let Some(Activity::Copying(t)) = now.get(&pid) {
                if let Some(e) = in_flight.get_mut(&t.table) {
                    e.1 += n.max(0) as u64;
                }
            }
        }
        for (table, (tally, moving)) in in_flight {
            let rows = tally.committed_rows() + moving;
            if sent_rows.get(&table) != Some(&rows) {
                let ev = CopyEvent::ThereRows {
                    table: table.clone(),
                    rows,
                };
                if events.try_send(RunEvent::Copy(ev)).is_ok() {
                    sent_rows.insert(table, rows);
                }
            }
        }

        for r in &builds {
            let (pid, phase, pct): (i32, String, Option<i32>) = (r.get(0), r.get(1), r.get(2));
            let Some(Activity::Indexing { table, index }) = now.get(&pid) else {
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
