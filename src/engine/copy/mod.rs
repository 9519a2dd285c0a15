//! The data copy: every chosen table streamed from HERE's `COPY ... TO STDOUT` into THERE's
//! `COPY ... FROM STDIN`, with no temporary files and bounded buffers. THERE's sessions run with
//! `session_replication_role = replica` (no Bucardo trigger, no FK check fires) and
//! `synchronous_commit = off`.
//!
//! Where the rows come from is a [`Source`]. In the bootstrap each piece reads HERE in its own
//! snapshot ([`Source::PerPiece`]): Bucardo's triggers committed before the copy began, so every
//! change after any piece's snapshot is a delta that Bucardo replays, and HERE's vacuum is held
//! back for one piece at a time, never for the whole copy. The standalone `copy` command, with no
//! triggers, has all workers import one exported snapshot ([`Source::Shared`]).
//!
//! Every worker keeps to the governor's pace ([`crate::engine::governor::Pace`]): it takes a new
//! piece only when the governor admits it, and its pump rests between slices.
//!
//! This module owns the scheduling: `jobs` workers, each with one HERE session and one THERE
//! session, take work largest first from one queue. Work is a whole table, or a key
//! range of a table larger than [`CopyOptions::split_bytes`] ([`parts`]). Each piece commits in
//! its own THERE transaction; a table is finished when its last piece committed. A table with
//! deferrable secondary indexes is copied whole, its indexes dropped and rebuilt in its copy's transaction
//! ([`indexes`]): the measurements favoured deferred builds over key ranges. A table copied whole
//! is written frozen where THERE allows it ([`freeze`]). The format of each
//! table is chosen in [`format`], the bytes move in [`stream`], THERE's own progress views are
//! read by [`monitor`], and [`standalone`] is the engine of the `copy` command. A split table announces its cut points before its first range starts and each range
//! after it committed, so that the journal can resume it range by range ([`parts`]).

pub mod format;
pub mod freeze;
pub mod indexes;
pub mod monitor;
pub mod parts;
pub mod standalone;
pub mod stream;

use crate::engine::catalog::TableInfo;
use crate::engine::conn::{ConnSpec, Side};
use crate::engine::error::EngineError;
use crate::engine::event::{CopyEvent, LogLevel, RunEvent};
use crate::engine::governor::Pace;
use crate::engine::ident::{quote_ident, quote_literal, TableName};
use format::{ColumnMap, Format, FormatChoice};
use indexes::DeferredIndex;
use monitor::{Activity, Watch};
use parts::{RangesDone, Split};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stream::{Stop, Tally};
use tokio::sync::mpsc;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

pub use stream::PROGRESS_INTERVAL;

/// Result of copying one table (all its key ranges).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableCopied {
    pub table: TableName,
    pub rows: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    /// Key ranges it was copied in (1 when whole).
    pub parts: usize,
    pub format: Format,
}

/// How the copy runs. [`CopyOptions::new`] holds the measured defaults; the `BUCARDO_BOOTSTRAP_COPY_*`
/// environment variables override them ([`CopyOptions::with_env`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyOptions {
    pub jobs: usize,
    pub format: FormatChoice,
    /// A table larger than this (`pg_total_relation_size`) is split into key ranges of about
    /// this size, when there is more than one worker.
    pub split_bytes: i64,
    /// At most this many ranges per table.
    pub max_parts: usize,
    /// Rebuild THERE's secondary indexes after the rows are in ([`indexes`]).
    pub defer_indexes: bool,
}

/// Default split threshold and range size.
pub const SPLIT_BYTES: i64 = 128 * 1024 * 1024;

impl CopyOptions {
    pub fn new(jobs: usize) -> Self {
        CopyOptions {
            jobs: jobs.max(1),
            format: FormatChoice::Auto,
            split_bytes: SPLIT_BYTES,
            max_parts: 16,
            defer_indexes: true,
        }
    }

    /// `BUCARDO_BOOTSTRAP_COPY_FORMAT=text|auto`, `BUCARDO_BOOTSTRAP_COPY_SPLIT_MB=N` (0: never
    /// split) and `BUCARDO_BOOTSTRAP_COPY_DEFER_INDEXES=0`, for measurements and for a THERE
    /// that misbehaves with one of them.
    pub fn with_env(mut self) -> Self {
        if let Ok(v) = std::env::var("BUCARDO_BOOTSTRAP_COPY_FORMAT") {
            self.format = if v.eq_ignore_ascii_case("text") {
                FormatChoice::Text
            } else {
                FormatChoice::Auto
            };
        }
        if let Some(mb) = std::env::var("BUCARDO_BOOTSTRAP_COPY_SPLIT_MB")
            .ok()
            .and_then(|v| v.parse::<i64>().ok())
        {
            self.split_bytes = if mb <= 0 { i64::MAX } else { mb * 1024 * 1024 };
        }
        if let Ok(v) = std::env::var("BUCARDO_BOOTSTRAP_COPY_DEFER_INDEXES") {
            self.defer_indexes = !matches!(v.as_str(), "0" | "false" | "no" | "off");
        }
        self
    }
}

/// Key-range bounds travel as text, written by HERE's snapshot session and read back by the
/// workers on both sides, possibly in a later run (the journal keeps them): every session of the
/// copy uses the same unambiguous date and interval formats, whatever the servers' defaults.
const STABLE_TEXT: &str = "SET DateStyle = ISO; SET IntervalStyle = postgres";

/// A snapshot exported on HERE; the holder connection keeps it valid while it lives.
pub struct Snapshot {
    holder: Client,
    pub id: String,
}

impl Snapshot {
    pub async fn export(here: &ConnSpec) -> Result<Snapshot, EngineError> {
        let holder = here.connect(Side::Here).await?;
        holder
            .batch_execute(&format!(
                "{STABLE_TEXT}; SET idle_in_transaction_session_timeout = 0; SET statement_timeout = 0; \
                 BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
            ))
            .await
            .map_err(|e| EngineError::sql(Side::Here, "opening the snapshot transaction", &e))?;
        let id: String = holder
            .query_one("SELECT pg_export_snapshot()", &[])
            .await
            .map_err(|e| EngineError::sql(Side::Here, "exporting a snapshot", &e))?
            .get(0);
        Ok(Snapshot { holder, id })
    }

    /// Runs a query inside the snapshot (sequence values, key ranges).
    pub fn client(&self) -> &Client {
        &self.holder
    }

    pub async fn release(self) {
        let _ = self.holder.batch_execute("COMMIT").await;
    }
}

/// Where the copy reads HERE (see the module docs).
#[derive(Clone, Copy)]
pub enum Source<'a> {
    /// Every worker imports this snapshot: one consistent image of HERE.
    Shared(&'a Snapshot),
    /// Each piece reads in a snapshot of its own, taken when it starts.
    PerPiece,
}

/// Copies `tables` with `jobs` workers from `source`, largest first, with the default
/// [`CopyOptions`] (and their environment overrides), at the governor's `pace`.
/// `prior` holds the tables an earlier run left partly copied in key ranges: only their missing
/// ranges are copied, cut as before.
#[allow(clippy::too_many_arguments)]
pub async fn copy_tables(
    here: &ConnSpec,
    there: &ConnSpec,
    source: Source<'_>,
    tables: &[TableInfo],
    prior: &[RangesDone],
    jobs: usize,
    pace: &Pace,
    events: &mpsc::Sender<RunEvent>,
    cancel: &CancellationToken,
) -> Result<Vec<TableCopied>, EngineError> {
    let opts = CopyOptions::new(jobs).with_env();
    copy_tables_with(
        here, there, source, tables, prior, &opts, pace, events, cancel,
    )
    .await
}

/// One unit of work: a table, or a key range of it.
struct Piece {
    tally: Arc<Tally>,
    format: Format,
    copy_out: Box<str>,
    copy_in: Box<str>,
    /// For a table copied whole that THERE lets the copy's transaction truncate: the COPY that
    /// writes its rows frozen ([`freeze`]).
    frozen: Option<Box<str>>,
    est_bytes: i64,
    /// The table's place in the chosen tables, then the range's number: ties in size go in that
    /// order.
    order: (usize, usize),
    defer: Vec<DeferredIndex>,
    /// Its key range's number, when the table is split.
    part: Option<usize>,
    /// Resuming a range: THERE's rows in it are deleted first, in the same transaction (they can
    /// only be there if the run stopped between THERE's commit and the journal's record).
    clear: Option<String>,
}

/// Copies `tables` as [`copy_tables`] does, with explicit options.
#[allow(clippy::too_many_arguments)]
pub async fn copy_tables_with(
    here: &ConnSpec,
    there: &ConnSpec,
    source: Source<'_>,
    tables: &[TableInfo],
    prior: &[RangesDone],
    opts: &CopyOptions,
    pace: &Pace,
    events: &mpsc::Sender<RunEvent>,
    cancel: &CancellationToken,
) -> Result<Vec<TableCopied>, EngineError> {
    if tables.is_empty() {
        return Ok(vec![]);
    }
    let own_here;
    let here_c: &Client = match source {
        Source::Shared(s) => s.client(),
        Source::PerPiece => {
            own_here = here.connect(Side::Here).await?;
            own_here
                .batch_execute(STABLE_TEXT)
                .await
                .map_err(|e| EngineError::sql(Side::Here, "preparing the copy's session", &e))?;
            &own_here
        }
    };
    let pieces = plan_pieces(there, here_c, tables, prior, opts, events).await?;
    let snapshot_id: Option<String> = match source {
        Source::Shared(s) => Some(s.id.clone()),
        Source::PerPiece => None,
    };
    let tallies: Vec<Arc<Tally>> = {
        let mut seen = HashMap::new();
        for p in &pieces {
            seen.entry(p.tally.table.clone())
                .or_insert_with(|| p.tally.clone());
        }
        seen.into_values().collect()
    };
    let workers_n = opts.jobs.max(1).min(pieces.len());
    let watch = Watch::default();
    let monitor_done = CancellationToken::new();
    let c = there.connect(Side::There).await?;
    tokio::spawn(monitor::run(
        c,
        watch.clone(),
        events.clone(),
        monitor_done.clone(),
    ));
    let _monitor_guard = monitor_done.drop_guard();
    let queue = Arc::new(Mutex::new(VecDeque::from(pieces)));
    let stop = cancel.child_token();
    // Workers outlive nothing: dropping this future stops them too.
    let _stop_guard = stop.clone().drop_guard();
    let first_err: Arc<Mutex<Option<EngineError>>> = Arc::default();
    let times: Arc<Mutex<Vec<WorkerTime>>> = Arc::default();
    let started = std::time::Instant::now();
    let mut workers = Vec::new();
    for index in 0..workers_n {
        let (here, there, snap) = (here.clone(), there.clone(), snapshot_id.clone());
        let (queue, events, stop, watch, first_err, pace, times) = (
            queue.clone(),
            events.clone(),
            stop.clone(),
            watch.clone(),
            first_err.clone(),
            pace.clone(),
            times.clone(),
        );
        workers.push(tokio::spawn(async move {
            let ctx = WorkerCtx {
                index,
                queue: &queue,
                events: &events,
                stop: &stop,
                watch: &watch,
                pace: &pace,
                times: &times,
            };
            let r = worker(&here, &there, snap.as_deref(), ctx).await;
            if let Err(Stop::Failed(e)) = r {
                // The first failure is the cause; the others' are its consequences.
                if let Ok(mut slot) = first_err.lock() {
                    slot.get_or_insert(e);
                }
                stop.cancel();
            }
        }));
    }
    for w in workers {
        if let Err(join) = w.await {
            stop.cancel();
            if let Ok(mut slot) = first_err.lock() {
                slot.get_or_insert(EngineError::Io(format!("a copy worker died: {join}")));
            }
        }
    }
    if let Some(e) = first_err.lock().ok().and_then(|mut s| s.take()) {
        return Err(e);
    }
    if cancel.is_cancelled() {
        return Err(EngineError::Aborted);
    }
    let line = times
        .lock()
        .map(|t| workers_line(&t, started.elapsed()))
        .unwrap_or_default();
    let _ = events
        .send(RunEvent::Log {
            level: LogLevel::Notice,
            message: line,
        })
        .await;
    let mut out: Vec<TableCopied> = tallies
        .iter()
        .map(|t| {
            let (rows, bytes, elapsed) = t.totals();
            TableCopied {
                table: t.table.clone(),
                rows,
                bytes,
                elapsed,
                parts: t.parts,
                format: t.format,
            }
        })
        .collect();
    out.sort_by(|a, b| a.table.cmp(&b.table));
    Ok(out)
}

/// Chooses each table's format and ranges, and orders the pieces largest first.
async fn plan_pieces(
    there: &ConnSpec,
    here_c: &Client,
    tables: &[TableInfo],
    prior: &[RangesDone],
    opts: &CopyOptions,
    events: &mpsc::Sender<RunEvent>,
) -> Result<Vec<Piece>, EngineError> {
    let names: Vec<TableName> = tables.iter().map(|t| t.name.clone()).collect();
    let there_c = there.connect(Side::There).await?;
    let (mut here_cols, mut there_cols): (ColumnMap, ColumnMap) = tokio::try_join!(
        format::columns(here_c, Side::Here, &names),
        format::columns(&there_c, Side::There, &names)
    )?;
    let same_major = format::major_version(here_c, Side::Here).await?
        == format::major_version(&there_c, Side::There).await?;
    let mut deferrable = if opts.defer_indexes {
        indexes::deferrable(&there_c, &names).await?
    } else {
        HashMap::new()
    };
    let freezable = freeze::freezable(&there_c, &names).await?;
    drop(there_c);

    let mut pieces = Vec::with_capacity(tables.len());
    let mut text_reasons: Vec<String> = Vec::new();
    let mut splits: Vec<String> = Vec::new();
    let mut deferred = 0usize;
    let mut frozen = 0usize;
    for (ti, t) in tables.iter().enumerate() {
        // Each table's columns are let go as its pieces are built: at 10,000 tables the two
        // maps and the pieces together were 22 MB of the copy's peak (measured, heaptrack).
        let (h, th) = (here_cols[ti].take(), there_cols[ti].take());
        let h = h.as_deref();
        let (fmt, why) = format::choose(opts.format, same_major, h, th.as_deref());
        if let (Format::Text, Some(why)) = (fmt, why) {
            if opts.format != FormatChoice::Text {
                text_reasons.push(format!("{} ({why})", t.name));
            }
        }
        let cols: Vec<String> = match h {
            Some(h) => h.iter().map(|c| quote_ident(&c.name)).collect(),
            None => t
                .copy_columns()
                .iter()
                .map(|c| quote_ident(&c.name))
                .collect(),
        };
        let cols = cols.join(", ");
        let tn = t.name.sql();
        let copy_in: Box<str> =
            format!("COPY {tn} ({cols}) FROM STDIN{}", fmt.copy_option()).into();

        let earlier = prior.iter().find(|r| r.table == t.name);
        let mut defer = deferrable.remove(&t.name).unwrap_or_default();
        let mut split: Option<Split> = earlier.map(|r| r.split.clone());
        if split.is_some() {
            // Its ranges commit one by one: no transaction holds the whole table.
            defer.clear();
        }
        deferred += defer.len();
        let splittable = opts.jobs > 1 && t.relkind == 'r' && defer.is_empty();
        if split.is_none() && splittable && t.total_bytes > opts.split_bytes {
            let n = ((t.total_bytes + opts.split_bytes - 1) / opts.split_bytes)
                .clamp(2, opts.max_parts as i64) as usize;
            if let Some(h) = h {
                split = parts::split(here_c, &t.name, &t.key_columns, h, n).await?;
                if let Some(s) = &split {
                    let _ = events
                        .send(RunEvent::Copy(CopyEvent::TableSplit {
                            table: t.name.clone(),
                            split: s.clone(),
                        }))
                        .await;
                }
            }
        }
        let ranges = split.as_ref().map(Split::ranges).unwrap_or_default();
        let done = earlier.map(|r| r.done.clone()).unwrap_or_default();
        let todo: Vec<(usize, String)> = ranges
            .iter()
            .enumerate()
            .filter(|(i, _)| !done.contains(i))
            .map(|(i, r)| (i, r.predicate()))
            .collect();
        if !ranges.is_empty() && todo.is_empty() {
            // Every range committed; only the table's own record was missing.
            let _ = events
                .send(RunEvent::Copy(CopyEvent::TableFinished {
                    table: t.name.clone(),
                    rows: 0,
                    bytes: 0,
                    elapsed: Duration::ZERO,
                    format: fmt,
                    parts: 0,
                }))
                .await;
            continue;
        }
        let n_parts = todo.len().max(1);
        // The estimates shrink with the ranges an earlier run copied.
        let share = |v: i64| v * n_parts as i64 / ranges.len().max(1) as i64;
        let tally = Arc::new(Tally::new(
            t.name.clone(),
            share(t.est_rows),
            share(t.total_bytes),
            n_parts,
            fmt,
        ));
        if ranges.is_empty() {
            let copy_out = if t.relkind == 'r' {
                format!("COPY {tn} ({cols}) TO STDOUT{}", fmt.copy_option())
            } else {
                format!(
                    "COPY (SELECT {cols} FROM ONLY {tn}) TO STDOUT{}",
                    fmt.copy_option()
                )
            }
            .into();
            let frozen_in = freezable.contains(&t.name).then(|| {
                frozen += 1;
                format!("COPY {tn} ({cols}) FROM STDIN{}", fmt.frozen_copy_option()).into()
            });
            pieces.push(Piece {
                tally,
                format: fmt,
                copy_out,
                copy_in,
                frozen: frozen_in,
                est_bytes: t.total_bytes,
                order: (ti, 0),
                defer,
                part: None,
                clear: None,
            });
        } else {
            splits.push(if done.is_empty() {
                format!("{} in {} key ranges", t.name, ranges.len())
            } else {
                format!(
                    "{} in {} key ranges ({} copied by an earlier run)",
                    t.name,
                    ranges.len(),
                    done.len()
                )
            });
            for (i, pred) in todo {
                let copy_out = format!(
                    "COPY (SELECT {cols} FROM ONLY {tn} WHERE {pred}) TO STDOUT{}",
                    fmt.copy_option()
                )
                .into();
                pieces.push(Piece {
                    tally: tally.clone(),
                    format: fmt,
                    copy_out,
                    copy_in: copy_in.clone(),
                    frozen: None,
                    est_bytes: t.total_bytes / ranges.len() as i64,
                    order: (ti, i),
                    defer: vec![],
                    part: Some(i),
                    clear: earlier.map(|_| format!("DELETE FROM ONLY {tn} WHERE {pred}")),
                });
            }
        }
    }
    pieces.sort_by(|a, b| {
        b.est_bytes
            .cmp(&a.est_bytes)
            .then_with(|| a.order.cmp(&b.order))
    });

    let binary = tables.len() - text_reasons.len();
    let mut msg = match opts.format {
        FormatChoice::Text => format!("copy: {} tables in text format", tables.len()),
        FormatChoice::Auto => format!(
            "copy: {binary} tables in binary format, {} in text",
            text_reasons.len()
        ),
    };
    if !text_reasons.is_empty() {
        msg.push_str(&format!(": {}", text_reasons.join(", ")));
    }
    if !splits.is_empty() {
        msg.push_str(&format!("; split: {}", splits.join(", ")));
    }
    if deferred > 0 {
        msg.push_str(&format!(
            "; {deferred} secondary indexes rebuilt after their table's rows, in the same transaction"
        ));
    }
    if frozen > 0 {
        msg.push_str(&format!(
            "; {frozen} tables written frozen (COPY FREEZE: no second write of their pages on THERE)"
        ));
    }
    let _ = events
        .send(RunEvent::Log {
            level: LogLevel::Notice,
            message: msg,
        })
        .await;
    Ok(pieces)
}

/// What a worker shares with the others.
struct WorkerCtx<'a> {
    index: usize,
    queue: &'a Mutex<VecDeque<Piece>>,
    events: &'a mpsc::Sender<RunEvent>,
    stop: &'a CancellationToken,
    watch: &'a Watch,
    pace: &'a Pace,
    times: &'a Mutex<Vec<WorkerTime>>,
}

/// Where one worker's time went, for the line that says how busy the workers were.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WorkerTime {
    /// Copying pieces: HERE's reads, THERE's writes and index builds, and the commits.
    pub busy: Duration,
    /// Waiting for the governor's admission.
    pub held: Duration,
    /// From the start of the copy until the worker had nothing left to take.
    pub active: Duration,
}

/// One line: each worker's share of the copy's wall time spent copying, held back by the
/// governor, and done early (no piece left while others still copied); the rest is connecting
/// and moving between pieces.
pub fn workers_line(times: &[WorkerTime], wall: Duration) -> String {
    let wall_s = wall.as_secs_f64().max(1e-9);
    let pct = |d: Duration| 100.0 * d.as_secs_f64() / wall_s;
    let each: Vec<String> = times
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let early = wall.saturating_sub(t.active);
            let other = t.active.saturating_sub(t.busy + t.held);
            format!(
                "#{} copying {:.0}%, held by the governor {:.0}%, done early {:.0}%, between pieces {:.0}%",
                i + 1,
                pct(t.busy),
                pct(t.held),
                pct(early),
                pct(other)
            )
        })
        .collect();
    let busy: Duration = times.iter().map(|t| t.busy).sum();
    format!(
        "copy workers over {:.1} s: {}; idle {:.0}% of the workers' time in all",
        wall.as_secs_f64(),
        each.join("; "),
        100.0 - 100.0 * busy.as_secs_f64() / (wall_s * times.len().max(1) as f64)
    )
}

/// A worker the governor holds back looks this often whether any work is left for it.
const ADMIT_RECHECK: Duration = Duration::from_millis(500);

/// One worker: a HERE session (in the shared snapshot, if any) and a THERE session, taking
/// pieces until none is left or the run stops.
async fn worker(
    here: &ConnSpec,
    there: &ConnSpec,
    snapshot: Option<&str>,
    ctx: WorkerCtx<'_>,
) -> Result<(), Stop> {
    let WorkerCtx {
        index,
        queue,
        events,
        stop,
        watch,
        pace,
        times,
    } = ctx;
    let started = std::time::Instant::now();
    let mut time = WorkerTime::default();
    let (src, dst, dst_pid) = tokio::select! {
        biased;
        _ = stop.cancelled() => return Err(Stop::Stopped),
        r = open_worker(here, there, snapshot) => r.map_err(Stop::Failed)?,
    };
    loop {
        if queue.lock().map(|q| q.is_empty()).unwrap_or(true) {
            break;
        }
        // Waits for the governor's word, looking again now and then whether work is left.
        let asked = std::time::Instant::now();
        let admitted = tokio::select! {
            biased;
            _ = stop.cancelled() => return Err(Stop::Stopped),
            r = tokio::time::timeout(ADMIT_RECHECK, pace.admit(index)) => r.is_ok(),
        };
        time.held += asked.elapsed();
        if !admitted {
            continue;
        }
        let next = queue.lock().map(|mut q| q.pop_front()).unwrap_or(None);
        let Some(piece) = next else { break };
        watch.set(dst_pid, Activity::Copying(piece.tally.clone()));
        let copying = std::time::Instant::now();
        let r = copy_piece(&src, (&dst, dst_pid), &piece, events, stop, watch, pace).await;
        time.busy += copying.elapsed();
        watch.clear(dst_pid);
        if let Err(e) = r {
            if let Stop::Failed(err) = &e {
                let _ = events
                    .send(RunEvent::Copy(CopyEvent::TableFailed {
                        table: piece.tally.table.clone(),
                        error: err.one_line(),
                    }))
                    .await;
            }
            return Err(e);
        }
    }
    if snapshot.is_some() {
        let _ = src.batch_execute("COMMIT").await;
    }
    time.active = started.elapsed();
    if let Ok(mut t) = times.lock() {
        t.push(time);
    }
    Ok(())
}

async fn open_worker(
    here: &ConnSpec,
    there: &ConnSpec,
    snapshot: Option<&str>,
) -> Result<(Client, Client, i32), EngineError> {
    let src = here.connect(Side::Here).await?;
    // Without a shared snapshot each piece's COPY statement reads in its own.
    let import = snapshot
        .map(|id| {
            format!(
                "; BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}",
                quote_literal(id)
            )
        })
        .unwrap_or_default();
    src.batch_execute(&format!(
        "{STABLE_TEXT}; SET idle_in_transaction_session_timeout = 0; SET statement_timeout = 0{import}"
    ))
    .await
    .map_err(|e| EngineError::sql(Side::Here, "importing the snapshot", &e))?;
    let dst = there.connect(Side::There).await?;
    dst.batch_execute(&format!(
        "{STABLE_TEXT}; SET session_replication_role = replica; SET synchronous_commit = off; \
         SET statement_timeout = 0; SET lock_timeout = 0; SET idle_in_transaction_session_timeout = 0"
    ))
    .await
    .map_err(|e| EngineError::sql(Side::There, "setting session_replication_role (needs a superuser)", &e))?;
    let pid: i32 = dst
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .map_err(|e| EngineError::sql(Side::There, "reading the session's pid", &e))?
        .get(0);
    Ok((src, dst, pid))
}

/// Copies one piece in one THERE transaction (`dst` is THERE's session and its backend pid).
async fn copy_piece(
    src: &Client,
    (dst, dst_pid): (&Client, i32),
    piece: &Piece,
    events: &mpsc::Sender<RunEvent>,
    stop: &CancellationToken,
    watch: &Watch,
    pace: &Pace,
) -> Result<(), Stop> {
    let tally = &piece.tally;
    let err = |e: tokio_postgres::Error| {
        Stop::Failed(EngineError::Copy {
            table: tally.table.to_string(),
            message: crate::engine::secret::redact(&crate::engine::error::pg_message(&e)),
        })
    };
    tally.start(events).await;
    dst.batch_execute("BEGIN").await.map_err(err)?;
    let work = async {
        if let Some(clear) = &piece.clear {
            dst.batch_execute(clear).await.map_err(err)?;
        }
        if !piece.defer.is_empty() {
            dst.batch_execute(&indexes::drop_sql(&piece.defer))
                .await
                .map_err(err)?;
        }
        let copy_in = match &piece.frozen {
            Some(frozen) => match dst.batch_execute(&freeze::truncate_sql(&tally.table)).await {
                Ok(()) => frozen,
                Err(e) => {
                    dst.batch_execute(freeze::UNDO_SQL).await.map_err(err)?;
                    let _ = events
                        .send(RunEvent::Log {
                            level: LogLevel::Info,
                            message: format!(
                                "{}: copied without FREEZE, THERE refused to truncate it: {}",
                                tally.table,
                                crate::engine::secret::redact(&crate::engine::error::pg_message(
                                    &e
                                ))
                            ),
                        })
                        .await;
                    &piece.copy_in
                }
            },
            None => &piece.copy_in,
        };
        let moved = stream::pump(
            src,
            dst,
            &piece.copy_out,
            copy_in,
            piece.format,
            tally,
            events,
            stop,
            pace,
        )
        .await?;
        if !piece.defer.is_empty() {
            build_indexes((dst, dst_pid), piece, stop, watch, pace).await?;
        }
        Ok(moved)
    };
    let moved = match work.await {
        Ok(m) => m,
        Err(e) => {
            // The THERE connection may be mid-COPY; its next use (or drop) ends the transaction.
            let _ =
                tokio::time::timeout(Duration::from_secs(5), dst.batch_execute("ROLLBACK")).await;
            return Err(e);
        }
    };
    // The journal records this piece once COMMIT returns, so the commit must be on THERE's disk
    // by then: the session's `synchronous_commit = off` does not apply to it.
    dst.batch_execute("SET LOCAL synchronous_commit = on; COMMIT")
        .await
        .map_err(err)?;
    if let Some(part) = piece.part {
        let _ = events
            .send(RunEvent::Copy(CopyEvent::RangeDone {
                table: tally.table.clone(),
                part,
            }))
            .await;
    }
    tally
        .part_done(events, moved.rows, moved.bytes, moved.unsent)
        .await;
    Ok(())
}

/// Builds the piece's deferred indexes on `dst`, in its open transaction.
async fn build_indexes(
    (dst, dst_pid): (&Client, i32),
    piece: &Piece,
    stop: &CancellationToken,
    watch: &Watch,
    pace: &Pace,
) -> Result<(), Stop> {
    let table = &piece.tally.table;
    let err = |e: tokio_postgres::Error| {
        Stop::Failed(EngineError::Sql {
            side: Side::There,
            context: format!("rebuilding an index of {table}"),
            message: crate::engine::secret::redact(&crate::engine::error::pg_message(&e)),
        })
    };
    dst.query_one(indexes::build_memory_sql().as_str(), &[])
        .await
        .map_err(err)?;
    for d in &piece.defer {
        watch.set(
            dst_pid,
            Activity::Indexing {
                table: table.clone(),
                index: d.name.clone(),
            },
        );
        let sql = indexes::create_sql(d);
        // A build is one statement: it cannot be slowed, only held back while HERE is paused.
        tokio::select! {
            biased;
            _ = stop.cancelled() => return Err(Stop::Stopped),
            () = pace.breathe(Duration::ZERO) => {}
        }
        let r = tokio::select! {
            biased;
            _ = stop.cancelled() => Err(Stop::Stopped),
            r = dst.batch_execute(&sql) => r.map_err(err),
        };
        r?;
    }
    Ok(())
}

/// Sequence values as `here` sees them (the shared snapshot's session, or a fresh one after a
/// copy in per-piece snapshots: later values are never behind any row copied), set on THERE as
/// `pg_dump --data-only` does.
pub async fn copy_sequence_values(
    here: &Client,
    there: &Client,
    sequences: &[TableName],
) -> Result<(), EngineError> {
    // A statement per batch on each side, not two per sequence: 10,000 sequences took a
    // minute one by one.
    for batch in sequences.chunks(SEQUENCE_BATCH) {
        let mut read = batch
            .iter()
            .enumerate()
            .map(|(i, q)| format!("SELECT {i}, last_value, is_called FROM {}", q.sql()))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        read.push_str(" ORDER BY 1");
        let what = || {
            let first = &batch[0];
            match batch.len() {
                1 => format!("sequence {first}"),
                n => format!("{n} sequences from {first}"),
            }
        };
        let rows = here
            .query(read.as_str(), &[])
            .await
            .map_err(|e| EngineError::sql(Side::Here, format!("reading {}", what()), &e))?;
        let names: Vec<String> = batch.iter().map(TableName::sql).collect();
        let values: Vec<i64> = rows.iter().map(|r| r.get(1)).collect();
        let called: Vec<bool> = rows.iter().map(|r| r.get(2)).collect();
        if values.len() != names.len() {
            return Err(EngineError::Refused(format!(
                "reading {} returned {} rows",
                what(),
                values.len()
            )));
        }
        there
            .execute(
                "SELECT setval(s::regclass, v, c) FROM unnest($1::text[], $2::int8[], $3::bool[]) AS x(s, v, c)",
                &[&names, &values, &called],
            )
            .await
            .map_err(|e| EngineError::sql(Side::There, format!("setting {}", what()), &e))?;
    }
    Ok(())
}

/// Sequences read and set per statement by [`copy_sequence_values`].
const SEQUENCE_BATCH: usize = 500;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workers_line_splits_each_workers_time() {
        let s = |x: f64| Duration::from_secs_f64(x);
        let line = workers_line(
            &[
                WorkerTime {
                    busy: s(8.0),
                    held: s(1.0),
                    active: s(10.0),
                },
                WorkerTime {
                    busy: s(4.0),
                    held: s(0.0),
                    active: s(5.0),
                },
            ],
            s(10.0),
        );
        assert_eq!(
            line,
            "copy workers over 10.0 s: #1 copying 80%, held by the governor 10%, done early 0%, between pieces 10%; \
             #2 copying 40%, held by the governor 0%, done early 50%, between pieces 10%; idle 40% of the workers' time in all"
        );
    }
}
