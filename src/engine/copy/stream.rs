//! The pump: one `COPY ... TO STDOUT` on HERE streamed into one `COPY ... FROM STDIN` on THERE,
//! and the per-table progress tally that several pumps (the key ranges of one table) share.
//!
//! Memory stays bounded whatever the table size: HERE's rows are gathered into batches of
//! [`BATCH_BYTES`] and each batch waits until THERE's connection accepts it. While it waits,
//! nobody reads HERE's connection, whose bounded channel then stops reading the socket, so TCP
//! pushes back on HERE. A single row larger than a batch is held whole, as the protocol sends it.

use crate::engine::copy::format::Format;
use crate::engine::error::{pg_message, EngineError};
use crate::engine::event::{CopyEvent, RunEvent};
use crate::engine::governor::Pace;
use crate::engine::ident::TableName;
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

/// At most this often per table does progress go out.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// The pump works this long between the governor's rests.
pub const SLICE: Duration = Duration::from_millis(50);

/// Rows travel to THERE in batches of about this many bytes.
pub const BATCH_BYTES: usize = 64 * 1024;

/// Why a pump stopped early.
#[derive(Debug)]
pub enum Stop {
    /// The operator cancelled, or another table failed: not this table's fault.
    Stopped,
    Failed(EngineError),
}

/// Counts rows in a COPY stream as it passes, without holding any of it.
#[derive(Debug)]
pub enum RowCounter {
    /// Every text row ends with a newline; newlines inside values are escaped.
    Text,
    Binary(BinaryRows),
}

impl RowCounter {
    pub fn new(format: Format) -> Self {
        match format {
            Format::Text => RowCounter::Text,
            Format::Binary => RowCounter::Binary(BinaryRows::default()),
        }
    }

    /// Rows that started in `chunk`.
    pub fn feed(&mut self, chunk: &[u8]) -> u64 {
        match self {
            RowCounter::Text => chunk.iter().filter(|&&b| b == b'\n').count() as u64,
            RowCounter::Binary(b) => b.feed(chunk),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    ExtensionLength,
    FieldCount,
    FieldLength,
    Trailer,
}

/// Follows the framing of binary COPY data (header, then per tuple an int16 field count and per
/// field an int32 length and the bytes) across arbitrary chunk boundaries.
#[derive(Debug)]
pub struct BinaryRows {
    skip: u64,
    want: Want,
    acc: u32,
    got: u8,
    fields_left: u16,
}

impl Default for BinaryRows {
    fn default() -> Self {
        // Signature (11 bytes) and flags (4) precede the header extension's length.
        BinaryRows {
            skip: 15,
            want: Want::ExtensionLength,
            acc: 0,
            got: 0,
            fields_left: 0,
        }
    }
}

impl BinaryRows {
    pub fn feed(&mut self, chunk: &[u8]) -> u64 {
        let mut rows = 0;
        let mut i = 0;
        while i < chunk.len() {
            if self.skip > 0 {
                let k = self.skip.min((chunk.len() - i) as u64);
                i += k as usize;
                self.skip -= k;
                continue;
            }
            let width = match self.want {
                Want::Trailer => return rows,
                Want::FieldCount => 2,
                Want::ExtensionLength | Want::FieldLength => 4,
            };
            self.acc = (self.acc << 8) | u32::from(chunk[i]);
            self.got += 1;
            i += 1;
            if self.got < width {
                continue;
            }
            let v = self.acc;
            self.acc = 0;
            self.got = 0;
            match self.want {
                Want::ExtensionLength => {
                    self.skip = u64::from(v);
                    self.want = Want::FieldCount;
                }
                Want::FieldCount => {
                    let n = v as u16 as i16;
                    if n < 0 {
                        self.want = Want::Trailer;
                    } else {
                        rows += 1;
                        self.fields_left = n as u16;
                        self.want = if n > 0 {
                            Want::FieldLength
                        } else {
                            Want::FieldCount
                        };
                    }
                }
                Want::FieldLength => {
                    let len = v as i32;
                    if len > 0 {
                        self.skip = len as u64;
                    }
                    self.fields_left -= 1;
                    if self.fields_left == 0 {
                        self.want = Want::FieldCount;
                    }
                }
                Want::Trailer => {}
            }
        }
        rows
    }
}

/// Progress of one table, shared by the pumps of its key ranges. `Advanced` events carry
/// deltas; together they stay under 1 / [`PROGRESS_INTERVAL`] per table.
pub struct Tally {
    pub table: TableName,
    pub est_rows: i64,
    pub est_bytes: i64,
    pub parts: usize,
    pub format: Format,
    parts_left: AtomicUsize,
    started: Mutex<Option<Instant>>,
    last_emit: Mutex<Instant>,
    finished: Mutex<Option<Duration>>,
    rows: AtomicU64,
    bytes: AtomicU64,
}

/// Rows and bytes a pump has not reported yet.
#[derive(Default, Debug)]
pub struct Unsent {
    pub rows: u64,
    pub bytes: u64,
}

impl Tally {
    pub fn new(
        table: TableName,
        est_rows: i64,
        est_bytes: i64,
        parts: usize,
        format: Format,
    ) -> Self {
        Tally {
            table,
            est_rows,
            est_bytes,
            parts,
            format,
            parts_left: AtomicUsize::new(parts),
            started: Mutex::new(None),
            last_emit: Mutex::new(Instant::now()),
            finished: Mutex::new(None),
            rows: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// The first range to start announces the table.
    pub async fn start(&self, events: &mpsc::Sender<RunEvent>) {
        let first = {
            let mut s = self.started.lock().expect("tally lock");
            s.is_none().then(|| *s.insert(Instant::now()))
        };
        if first.is_some() {
            let _ = events
                .send(RunEvent::Copy(CopyEvent::TableStarted {
                    table: self.table.clone(),
                    est_rows: self.est_rows,
                    est_bytes: self.est_bytes,
                }))
                .await;
        }
    }

    /// Sends `unsent` unless the table reported less than an interval ago or the channel is
    /// full (then it stays unsent for later): never waits.
    pub fn maybe_report(&self, events: &mpsc::Sender<RunEvent>, unsent: &mut Unsent) {
        if unsent.rows == 0 && unsent.bytes == 0 {
            return;
        }
        let Ok(mut last) = self.last_emit.try_lock() else {
            return;
        };
        let now = Instant::now();
        if now.duration_since(*last) < PROGRESS_INTERVAL {
            return;
        }
        *last = now;
        let ev = CopyEvent::Advanced {
            table: self.table.clone(),
            rows: unsent.rows,
            bytes: unsent.bytes,
        };
        if events.try_send(RunEvent::Copy(ev)).is_ok() {
            *unsent = Unsent::default();
        }
    }

    /// Rows of the ranges that committed on THERE.
    pub fn committed_rows(&self) -> u64 {
        self.rows.load(Ordering::SeqCst)
    }

    /// Rows and bytes of the committed ranges, and the time since the first one started.
    pub fn totals(&self) -> (u64, u64, Duration) {
        let finished = *self.finished.lock().expect("tally lock");
        let elapsed = finished
            .or_else(|| {
                self.started
                    .lock()
                    .expect("tally lock")
                    .map(|s| s.elapsed())
            })
            .unwrap_or_default();
        (
            self.rows.load(Ordering::SeqCst),
            self.bytes.load(Ordering::SeqCst),
            elapsed,
        )
    }

    /// Records a committed range; after the last one, announces the table as finished.
    pub async fn part_done(
        &self,
        events: &mpsc::Sender<RunEvent>,
        rows: u64,
        bytes: u64,
        unsent: Unsent,
    ) {
        if unsent.rows > 0 || unsent.bytes > 0 {
            let ev = CopyEvent::Advanced {
                table: self.table.clone(),
                rows: unsent.rows,
                bytes: unsent.bytes,
            };
            let _ = events.send(RunEvent::Copy(ev)).await;
        }
        self.rows.fetch_add(rows, Ordering::SeqCst);
        self.bytes.fetch_add(bytes, Ordering::SeqCst);
        if self.parts_left.fetch_sub(1, Ordering::SeqCst) != 1 {
            return;
        }
        let (rows, bytes) = (
            self.rows.load(Ordering::SeqCst),
            self.bytes.load(Ordering::SeqCst),
        );
        let elapsed = self
            .started
            .lock()
            .expect("tally lock")
            .map(|s| s.elapsed())
            .unwrap_or_default();
        *self.finished.lock().expect("tally lock") = Some(elapsed);
        let _ = events
            .send(RunEvent::Copy(CopyEvent::TableFinished {
                table: self.table.clone(),
                rows,
                bytes,
                elapsed,
                format: self.format,
                parts: self.parts,
            }))
            .await;
    }
}

/// Streams `copy_out` on `src` into `copy_in` on `dst` (inside whatever transaction `dst` is in).
/// Returns the rows THERE took and the bytes that travelled.
#[allow(clippy::too_many_arguments)]
pub async fn pump(
    src: &Client,
    dst: &Client,
    copy_out: &str,
    copy_in: &str,
    format: Format,
    tally: &Tally,
    events: &mpsc::Sender<RunEvent>,
    stop: &CancellationToken,
    pace: &Pace,
) -> Result<Pumped, Stop> {
    let table = &tally.table;
    let err = |e: tokio_postgres::Error| {
        Stop::Failed(EngineError::Copy {
            table: table.to_string(),
            message: crate::engine::secret::redact(&pg_message(&e)),
        })
    };
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    let reader = tokio::select! {
        biased;
        _ = &mut stopped => return Err(Stop::Stopped),
        r = src.copy_out(copy_out) => r.map_err(err)?,
    };
    let writer = tokio::select! {
        biased;
        _ = &mut stopped => return Err(Stop::Stopped),
        w = dst.copy_in::<_, Bytes>(copy_in) => w.map_err(err)?,
    };
    let mut reader = std::pin::pin!(reader);
    let mut writer = std::pin::pin!(writer);
    let mut counter = RowCounter::new(format);
    let mut batch = BytesMut::with_capacity(BATCH_BYTES + 8 * 1024);
    let mut bytes = 0u64;
    let mut unsent = Unsent::default();
    let mut slice = Instant::now();
    loop {
        let next = tokio::select! {
            biased;
            _ = &mut stopped => return Err(Stop::Stopped),
            n = reader.next() => n,
        };
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(err)?;
        let r = counter.feed(&chunk);
        bytes += chunk.len() as u64;
        unsent.rows += r;
        unsent.bytes += chunk.len() as u64;
        batch.extend_from_slice(&chunk);
        if batch.len() >= BATCH_BYTES {
            tokio::select! {
                biased;
                _ = &mut stopped => return Err(Stop::Stopped),
                r = writer.feed(batch.split().freeze()) => r.map_err(err)?,
            }
            tally.maybe_report(events, &mut unsent);
            if slice.elapsed() >= SLICE {
                // Resting here leaves HERE's COPY blocked on its socket: it stops working too.
                tokio::select! {
                    biased;
                    _ = &mut stopped => return Err(Stop::Stopped),
                    () = pace.breathe(slice.elapsed()) => {}
                }
                slice = Instant::now();
            }
        }
    }
    if !batch.is_empty() {
        writer.feed(batch.split().freeze()).await.map_err(err)?;
    }
    let taken = tokio::select! {
        biased;
        _ = &mut stopped => return Err(Stop::Stopped),
        n = writer.as_mut().finish() => n.map_err(err)?,
    };
    Ok(Pumped {
        rows: taken,
        bytes,
        unsent,
    })
}

/// What one pump moved; `unsent` is reported once THERE committed.
#[derive(Debug)]
pub struct Pumped {
    pub rows: u64,
    pub bytes: u64,
    pub unsent: Unsent,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary_copy(rows: &[Vec<Option<&[u8]>>]) -> Vec<u8> {
        let mut v = b"PGCOPY\n\xff\r\n\0".to_vec();
        v.extend_from_slice(&0u32.to_be_bytes());
        v.extend_from_slice(&3u32.to_be_bytes());
        v.extend_from_slice(b"ext");
        for r in rows {
            v.extend_from_slice(&(r.len() as i16).to_be_bytes());
            for f in r {
                match f {
                    None => v.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(b) => {
                        v.extend_from_slice(&(b.len() as i32).to_be_bytes());
                        v.extend_from_slice(b);
                    }
                }
            }
        }
        v.extend_from_slice(&(-1i16).to_be_bytes());
        v
    }

    #[test]
    fn binary_rows_are_counted_across_any_chunking() {
        let rows: Vec<Vec<Option<&[u8]>>> = vec![
            vec![Some(b"\n\n\xff\xff"), None, Some(b"")],
            vec![],
            vec![Some(&[0u8; 300][..])],
            vec![None, None],
        ];
        let data = binary_copy(&rows);
        for size in [1, 2, 3, 5, 7, 64, data.len()] {
            let mut c = RowCounter::new(Format::Binary);
            let n: u64 = data.chunks(size).map(|ch| c.feed(ch)).sum();
            assert_eq!(n, 4, "chunks of {size}");
        }
    }

    #[test]
    fn text_rows_are_newlines() {
        let mut c = RowCounter::new(Format::Text);
        assert_eq!(c.feed(b"1\ta\\nb\n2\t\\N\n"), 2);
    }
}
