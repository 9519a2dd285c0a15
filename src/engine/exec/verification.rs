//! Verification against the live sync. Each table is walked in key-range chunks, each chunk
//! compared in its own short snapshot on each side (no snapshot on HERE lives longer than one
//! chunk), at the governor's pace. Keys changed since the start (read from Bucardo's delta
//! tables after the chunk's snapshots, so no change slips between them) are left out of their
//! chunk; they, and the rows of a chunk that differed, are compared again by key in a few rounds
//! (over all tables at once, after every table's chunks) once Bucardo has had time to replay
//! them. What keeps changing through every round is counted, never called identical; what
//! differs and does not change is DIFFERENT.
//!
//! In a run the walk and the rounds are two steps. Compare walks the chunks right after the
//! copy, before the sync is enabled: Bucardo replays nothing yet, so HERE carries only the
//! application and the walk, and every key in the delta tables waits for the rounds. Verify,
//! after the replay, runs the rounds over what is left, paced as light work (measured: under
//! pgbench on 2 cores, the walk after the replay ran 33 to 122 s at under half of HERE's
//! baseline, as Bucardo's own sync held HERE there), and its rounds stop once one settles less
//! than half of what it compared. A run that did not compare (resumed after Compare) walks every
//! table in its Verify step. Small tables are walked many to a snapshot pair; a large table's
//! chunks by as many lanes as the copy has workers, each lane with sessions of its own, each
//! chunk still in one snapshot pair, each lane admitted by the governor as a copy worker is.

use super::*;
use crate::engine::event::VerdictState;
use crate::engine::governor::Pace;
use crate::engine::verify::{Chunk, Digest, Key, Within};
use std::collections::{BTreeMap, BTreeSet};

impl LiveExecutor {
    /// The Compare step: the walk is kept for this run's Verify step.
    pub(super) async fn compare(
        &self,
        plan: &Plan,
        events: &mpsc::Sender<RunEvent>,
        cancel: &CancellationToken,
    ) -> Result<(), EngineError> {
        let walked = compare_copy(
            &self.settings,
            &plan.tables,
            &self.governed.pace,
            events,
            cancel,
        )
        .await?;
        if let Ok(mut c) = self.compared.lock() {
            *c = Some(Compared {
                fingerprint: plan.fingerprint.clone(),
                walked,
            });
        }
        Ok(())
    }

    /// The Verify step: the rounds after this run's Compare, or (resumed, or Compare skipped)
    /// every table in full.
    pub(super) async fn verify(
        &self,
        plan: &Plan,
        events: &mpsc::Sender<RunEvent>,
        cancel: &CancellationToken,
    ) -> Result<(), EngineError> {
        let compared = self
            .compared
            .lock()
            .ok()
            .and_then(|mut c| c.take())
            .filter(|c| c.fingerprint == plan.fingerprint);
        let drained = self.drained.lock().ok().and_then(|d| d.clone());
        let kick = self.cli_nudge();
        let pace = &self.governed.pace;
        let verdicts = match compared {
            Some(c) => {
                verify_compared(
                    &self.settings,
                    &plan.tables,
                    c.walked,
                    drained,
                    Some(&kick),
                    pace,
                    events,
                    cancel,
                )
                .await?
            }
            None => {
                verify_tables(
                    &self.settings,
                    &plan.tables,
                    Some(&kick),
                    pace,
                    events,
                    cancel,
                )
                .await?
            }
        };
        if let Ok(mut v) = self.verdicts.lock() {
            *v = verdicts.clone();
        }
        let bad: Vec<String> = verdicts
            .iter()
            .filter(|v| v.state() == VerdictState::Different)
            .map(|v| v.table.to_string())
            .collect();
        if bad.is_empty() {
            Ok(())
        } else {
            Err(EngineError::Refused(format!(
                "HERE and THERE differ on {}",
                bad.join(", ")
            )))
        }
    }

    /// A kick that does not wait for the sync run: with autokick on Bucardo replays all the
    /// time, and under heavy traffic one of its runs can take longer than a verification should.
    pub(super) fn cli_nudge(&self) -> Invocation {
        let inv = self.cli().invocation(
            &BucardoCmd::Nudge {
                sync: self.settings.names.sync.clone(),
            },
            self.daemon_passfile.path(),
        );
        self.real(&inv)
    }
}

/// How long the verification waits for Bucardo to replicate what was logged before it began,
/// and how often it looks.
const BACKLOG_WAIT: Duration = Duration::from_secs(5);
const BACKLOG_POLL: Duration = Duration::from_secs(1);

/// Rows per chunk (`BUCARDO_BOOTSTRAP_VERIFY_CHUNK_ROWS` overrides it): each chunk is read in its
/// own snapshot on each side, a fraction of a second on HERE.
pub const CHUNK_ROWS: i64 = 20_000;
/// Rounds of comparing the rows that changed (or differed) again by key, after a table's chunks.
pub const VERIFY_ROUNDS: u32 = 4;
/// The wait before each round; from the second round on, a kick comes first.
const ROUND_WAIT: Duration = Duration::from_secs(1);
/// Keys compared in one snapshot pair of a round.
const ROUND_BATCH: usize = 5_000;
/// Differing rows of a table compared again by key at most; rows beyond are counted as differing
/// at once (a change is in the delta tables, so so many differences are no replication lag).
const SUSPECTS_MAX: usize = 10_000;
/// Small tables read together in one snapshot pair, at most.
const SMALL_GROUP: usize = 64;
/// A table's size (with its indexes) up to which it may be read with others.
const SMALL_BYTES: i64 = 1 << 20;

fn chunk_rows() -> i64 {
    std::env::var("BUCARDO_BOOTSTRAP_VERIFY_CHUNK_ROWS")
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(CHUNK_ROWS)
}

/// Compares every table while replication may be live, at `pace` (see the module docs). With
/// Bucardo's delta tables present (after a bootstrap) everything logged before the start is
/// replayed first (kick, then wait).
pub async fn verify_tables(
    s: &Settings,
    tables: &[TableInfo],
    kick: Option<&Invocation>,
    pace: &Pace,
    events: &mpsc::Sender<RunEvent>,
    cancel: &CancellationToken,
) -> Result<Vec<TableVerdict>, EngineError> {
    verify_tables_mode(
        s,
        tables,
        kick,
        verify::VerifyMode::Checksum,
        pace,
        events,
        cancel,
    )
    .await
    .map(|(v, _)| v)
}

/// The rows found differing in a table: key and how.
pub type Differences = Vec<(Key, &'static str)>;

/// Both sides' sessions: one pair for the chunks' snapshots, one for reading the delta tables.
struct Cx<'a> {
    here: tokio_postgres::Client,
    there: tokio_postgres::Client,
    here_keys: tokio_postgres::Client,
    there_keys: tokio_postgres::Client,
    /// Bucardo's delta tables exist on both sides.
    live: bool,
    here_t0: String,
    there_t0: String,
    /// Bucardo had not replicated everything logged before the verification began: the start of
    /// its backlog on each side (see [`bucardo::oldest_pending_before`]).
    backlog: Option<(String, String)>,
    kick: Option<&'a Invocation>,
    fast: bool,
    /// How chunks are summed: see [`verify::Digest`].
    digest: Digest,
    pace: &'a Pace,
    /// The rounds after this run's replay: paced as light work ([`Pace::admit_light`]), with
    /// the sync live (autokick on), so Bucardo replays without a kick.
    light: bool,
    /// Everything logged before `here_t0`/`there_t0` is replayed already (the run's Drain saw
    /// to it): the first round starts at once.
    replayed: bool,
    cancel: &'a CancellationToken,
    chunk_rows: i64,
    /// This one's place among the lanes that walk a table's chunks together: the governor
    /// admits lane `n` only while it allows `n + 1` workers.
    lane: usize,
    /// Every table's delta tables on HERE and THERE, read once when first needed.
    deltas: std::sync::Arc<tokio::sync::OnceCell<(DeltaNames, DeltaNames)>>,
}

impl Cx<'_> {
    /// Waits until the governor admits more work (or the run stops).
    async fn admit(&self) -> Result<(), EngineError> {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(EngineError::Aborted),
            () = self.pace.admit(self.lane), if !self.light => Ok(()),
            () = self.pace.admit_light(), if self.light => Ok(()),
        }
    }

    /// After `worked` of reading: rests as the governor's duty says.
    async fn breathe(&self, worked: Duration) -> Result<(), EngineError> {
        if self.light {
            return Ok(());
        }
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(EngineError::Aborted),
            () = self.pace.breathe(worked) => Ok(()),
        }
    }

    async fn sleep(&self, d: Duration) -> Result<(), EngineError> {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(EngineError::Aborted),
            () = tokio::time::sleep(d) => Ok(()),
        }
    }

    /// Runs `work` in a fresh snapshot on each side, then ends both, whatever `work` returned.
    async fn in_snapshots<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, EngineError>>,
    ) -> Result<T, EngineError> {
        let begin = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT 1";
        let (r1, r2) = tokio::join!(
            self.here.batch_execute(begin),
            self.there.batch_execute(begin)
        );
        let r = match (r1, r2) {
            (Err(e), _) => Err(EngineError::sql(
                Side::Here,
                "opening the verify snapshot",
                &e,
            )),
            (_, Err(e)) => Err(EngineError::sql(
                Side::There,
                "opening the verify snapshot",
                &e,
            )),
            _ => work.await,
        };
        let _ = tokio::join!(
            self.here.batch_execute("COMMIT"),
            self.there.batch_execute("COMMIT")
        );
        r
    }

    /// A table without a key is never compared row by row, so its sum must mean the same on
    /// both servers whatever their byte order.
    fn keyless_digest(&self) -> Digest {
        if self.fast {
            Digest::Count
        } else {
            Digest::Md5
        }
    }

    async fn kick(&self) {
        if let Some(k) = self.kick {
            let _ = process::run(k, Duration::from_secs(40)).await;
        }
    }
}

/// [`verify_tables`] with a mode; also returns the rows found differing per table.
pub async fn verify_tables_mode(
    s: &Settings,
    tables: &[TableInfo],
    kick: Option<&Invocation>,
    mode: verify::VerifyMode,
    pace: &Pace,
    events: &mpsc::Sender<RunEvent>,
    cancel: &CancellationToken,
) -> Result<(Vec<TableVerdict>, Vec<Differences>), EngineError> {
    let mut cx = Cx::connect(s, kick, mode, pace, cancel).await?;
    cx.since_now(s, events).await?;
    let lanes = cx.lanes(s, lanes_for(s, tables)).await?;
    let walked = walk_tables(&cx, &lanes, tables, true, events).await?;
    drop(lanes);
    finish(&cx, tables, walked, events).await
}

/// What the chunk walk left for later: the tables it settled, the keyed tables with keys to
/// compare again, and the keyless tables it left alone.
struct Walked {
    done: Vec<Option<(TableVerdict, Differences)>>,
    open: Vec<Open>,
    keyless: Vec<usize>,
}

impl Walked {
    /// A table whose chunks all matched with no key to compare again is settled and reported;
    /// any other waits for the rounds.
    async fn settle_or_keep(&mut self, o: Open, events: &mpsc::Sender<RunEvent>) {
        if o.again.is_empty() {
            let _ = events.send(RunEvent::Verified(o.v.clone())).await;
            self.done[o.index] = Some((o.v, vec![]));
        } else {
            self.open.push(o);
        }
    }
}

/// The chunk walk of the Compare step, before the sync is enabled, waiting for the Verify step.
pub(super) struct Compared {
    fingerprint: String,
    walked: Walked,
}

/// The Compare step: every keyed table's chunks, while Bucardo replays nothing yet, so nothing
/// is waited for and HERE carries only the application and this walk. Every key changed since
/// the triggers went in is left out of its chunk (all of Bucardo's deltas count) and waits, with
/// the rows that differed, for the Verify step's rounds after the replay.
async fn compare_copy(
    s: &Settings,
    tables: &[TableInfo],
    pace: &Pace,
    events: &mpsc::Sender<RunEvent>,
    cancel: &CancellationToken,
) -> Result<Walked, EngineError> {
    let cx = Cx::connect(s, None, verify::VerifyMode::Checksum, pace, cancel).await?;
    let lanes = cx.lanes(s, lanes_for(s, tables)).await?;
    let walked = walk_tables(&cx, &lanes, tables, false, events).await?;
    drop(lanes);
    let keys: usize = walked.open.iter().map(|o| o.again.len()).sum();
    let tables_left = walked.open.len() + walked.keyless.len();
    let _ = events
        .send(RunEvent::Log {
            level: LogLevel::Notice,
            message: format!(
                "compare: {} tables settled; {keys} rows of {tables_left} tables changed since the triggers went in (or differed) and are compared again after the replay",
                walked.done.iter().flatten().count()
            ),
        })
        .await;
    Ok(walked)
}

/// The Verify step after a Compare step: the rounds over what the walk left. After this run's
/// Drain (`drained`: when it began on each side's clock) everything logged before is replayed,
/// so the rounds start at once and only later changes count as in flight; otherwise Bucardo is
/// waited for as [`verify_tables_mode`] does.
#[allow(clippy::too_many_arguments)]
async fn verify_compared(
    s: &Settings,
    tables: &[TableInfo],
    walked: Walked,
    drained: Option<(String, String)>,
    kick: Option<&Invocation>,
    pace: &Pace,
    events: &mpsc::Sender<RunEvent>,
    cancel: &CancellationToken,
) -> Result<Vec<TableVerdict>, EngineError> {
    let mut cx = Cx::connect(s, kick, verify::VerifyMode::Checksum, pace, cancel).await?;
    cx.light = true;
    match drained {
        Some((here_t0, there_t0)) => {
            cx.here_t0 = here_t0;
            cx.there_t0 = there_t0;
            cx.replayed = true;
        }
        None => cx.since_now(s, events).await?,
    }
    finish(&cx, tables, walked, events).await.map(|(v, _)| v)
}

impl<'a> Cx<'a> {
    /// Four sessions set up alike, with every change since the triggers counting as recent
    /// (see [`Cx::since_now`] for a verification after the sync is live).
    async fn connect(
        s: &Settings,
        kick: Option<&'a Invocation>,
        mode: verify::VerifyMode,
        pace: &'a Pace,
        cancel: &'a CancellationToken,
    ) -> Result<Cx<'a>, EngineError> {
        let here = s.here.connect(Side::Here).await?;
        let there = s.there.connect(Side::There).await?;
        let here_keys = s.here.connect(Side::Here).await?;
        let there_keys = s.there.connect(Side::There).await?;
        // Key values travel as text from one session to another: all print alike.
        for (c, side) in [
            (&here, Side::Here),
            (&there, Side::There),
            (&here_keys, Side::Here),
            (&there_keys, Side::There),
        ] {
            verify::prepare_session(c, side).await?;
        }
        let live = verify::has_deltas(&here, Side::Here).await?
            && verify::has_deltas(&there, Side::There).await?;
        let digest = if mode == verify::VerifyMode::Fast {
            Digest::Count
        } else {
            let (h, th) = (
                catalog::server_info(&here, Side::Here).await?.version_num,
                catalog::server_info(&there, Side::There).await?.version_num,
            );
            verify::digest_for(h, th)
        };
        Ok(Cx {
            here,
            there,
            here_keys,
            there_keys,
            live,
            here_t0: SINCE_TRIGGERS.into(),
            there_t0: SINCE_TRIGGERS.into(),
            backlog: None,
            kick,
            fast: mode == verify::VerifyMode::Fast,
            digest,
            pace,
            light: false,
            replayed: false,
            cancel,
            chunk_rows: chunk_rows(),
            lane: 0,
            deltas: Default::default(),
        })
    }

    /// Lanes 1 to `n - 1` beside this one (lane 0): sessions of their own, set up as this
    /// one's, for [`walk_chunks`].
    async fn lanes(&self, s: &Settings, n: usize) -> Result<Vec<Cx<'a>>, EngineError> {
        let mut out = Vec::new();
        for lane in 1..n {
            let mut c = Cx::connect(
                s,
                self.kick,
                verify::VerifyMode::Checksum,
                self.pace,
                self.cancel,
            )
            .await?;
            c.fast = self.fast;
            c.digest = self.digest;
            c.here_t0.clone_from(&self.here_t0);
            c.there_t0.clone_from(&self.there_t0);
            c.backlog.clone_from(&self.backlog);
            c.light = self.light;
            c.replayed = self.replayed;
            c.lane = lane;
            c.deltas = self.deltas.clone();
            out.push(c);
        }
        Ok(out)
    }

    /// Only changes from now on count as recent: with Bucardo's delta tables present,
    /// everything logged before is replayed first (kick, then a bounded wait); what Bucardo has
    /// not replayed by then moves the start back to its oldest pending change.
    async fn since_now(
        &mut self,
        s: &Settings,
        events: &mpsc::Sender<RunEvent>,
    ) -> Result<(), EngineError> {
        self.here_t0 = bucardo::server_now(&self.here, Side::Here).await?;
        self.there_t0 = bucardo::server_now(&self.there, Side::There).await?;
        let Some(k) = self.kick.filter(|_| self.live) else {
            return Ok(());
        };
        let _ = process::run(k, Duration::from_secs(60)).await;
        let deadline = tokio::time::Instant::now() + BACKLOG_WAIT;
        let mut pending;
        loop {
            pending = interim_pending(
                s,
                (&self.here_keys, &self.here_t0),
                (&self.there_keys, &self.there_t0),
            )
            .await?;
            if pending.is_empty() || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(BACKLOG_POLL).await;
        }
        if pending.is_empty() {
            return Ok(());
        }
        // Bucardo is behind (it may never catch up under this traffic): rather than wait, every
        // key changed since its oldest unreplicated delta counts as in flight, is left out of
        // the chunks and compared by key in the rounds.
        let (n, sync, group) = (
            pending.iter().map(|(_, n)| n).sum::<i64>(),
            &s.names.sync,
            &s.names.dbgroup,
        );
        if let Some(t) =
            bucardo::oldest_pending_before(&self.here_keys, Side::Here, sync, group, &self.here_t0)
                .await?
        {
            self.here_t0 = t;
        }
        if let Some(t) = bucardo::oldest_pending_before(
            &self.there_keys,
            Side::There,
            sync,
            group,
            &self.there_t0,
        )
        .await?
        {
            self.there_t0 = t;
        }
        self.backlog = Some((self.here_t0.clone(), self.there_t0.clone()));
        let _ = events
            .send(RunEvent::Log {
                level: LogLevel::Notice,
                message: format!(
                    "verify: Bucardo has {n} changes logged before the verification still to replicate; \
                     rows changed since {} (HERE's clock) are compared by key once replayed, \
                     or counted as still changing",
                    self.here_t0
                ),
            })
            .await;
        Ok(())
    }
}

/// "Recent" from the first delta on: before the sync is enabled nothing has been replayed.
const SINCE_TRIGGERS: &str = "-infinity";

/// Lanes walking a table's chunks at once: as many as the copy's workers, when a table is large
/// enough to be walked in more than a few chunks. Past memory one lane's reads wait on the disk
/// one request at a time on each side: on the 16× benchmark's ledger (74.8 M rows, 17.6 GB
/// read from a cold cache) `verify` took 116.3 and 101.4 s with one lane, 94.0 and 79.3 s with
/// two, the cores then 84 % busy.
fn lanes_for(s: &Settings, tables: &[TableInfo]) -> usize {
    let rows = chunk_rows();
    if tables
        .iter()
        .any(|t| !t.key_columns.is_empty() && many_chunks(t, rows))
    {
        s.jobs.max(1)
    } else {
        1
    }
}

/// A table walked by every lane: more than four chunks, by its estimate.
fn many_chunks(t: &TableInfo, chunk_rows: i64) -> bool {
    t.est_rows > 4 * chunk_rows
}

/// Every keyed table's chunks (and, with `keyless`, every keyless table whole); a table whose
/// chunks all matched with no key to compare again is settled and reported at once. `lanes`
/// walk the chunks of a large table beside `cx`.
async fn walk_tables(
    cx: &Cx<'_>,
    lanes: &[Cx<'_>],
    tables: &[TableInfo],
    keyless: bool,
    events: &mpsc::Sender<RunEvent>,
) -> Result<Walked, EngineError> {
    let mut walked = Walked {
        done: vec![None; tables.len()],
        open: Vec::new(),
        keyless: Vec::new(),
    };
    let mut group: Vec<usize> = Vec::new();
    for (i, t) in tables.iter().enumerate() {
        if cx.cancel.is_cancelled() {
            return Err(EngineError::Aborted);
        }
        if small(cx, t) {
            group.push(i);
            if group.len() == SMALL_GROUP {
                for o in walk_small(cx, tables, &std::mem::take(&mut group)).await? {
                    walked.settle_or_keep(o, events).await;
                }
            }
            continue;
        }
        if t.key_columns.is_empty() {
            if keyless {
                let v = verify_keyless(cx, t).await?;
                let _ = events.send(RunEvent::Verified(v.clone())).await;
                walked.done[i] = Some((v, vec![]));
            } else {
                walked.keyless.push(i);
            }
            continue;
        }
        let o = walk_chunks(cx, lanes, i, t).await?;
        walked.settle_or_keep(o, events).await;
    }
    if !group.is_empty() {
        for o in walk_small(cx, tables, &group).await? {
            walked.settle_or_keep(o, events).await;
        }
    }
    Ok(walked)
}

/// The rounds over the open tables, then each one settled, and the keyless tables left.
async fn finish(
    cx: &Cx<'_>,
    tables: &[TableInfo],
    walked: Walked,
    events: &mpsc::Sender<RunEvent>,
) -> Result<(Vec<TableVerdict>, Vec<Differences>), EngineError> {
    let Walked {
        mut done,
        mut open,
        keyless,
    } = walked;
    for i in keyless {
        let v = verify_keyless(cx, &tables[i]).await?;
        let _ = events.send(RunEvent::Verified(v.clone())).await;
        done[i] = Some((v, vec![]));
    }
    compare_again(cx, tables, &mut open).await?;
    for o in open {
        let i = o.index;
        let (v, d) = settle(cx, &tables[i], o).await?;
        let _ = events.send(RunEvent::Verified(v.clone())).await;
        done[i] = Some((v, d));
    }
    Ok(done.into_iter().flatten().unzip())
}

/// A keyed table whose chunks are read, with keys to compare again.
struct Open {
    index: usize,
    v: TableVerdict,
    here_deltas: Vec<String>,
    there_deltas: Vec<String>,
    /// Keys to compare again: changed while their chunk was read, or differing in it.
    again: BTreeSet<Key>,
    /// How each differing key differed when last compared.
    how: BTreeMap<Key, &'static str>,
}

/// Where the walk of a table's chunks has got to: the next chunk starts after `lo`; `None` once
/// the last chunk is taken.
type Cursor = tokio::sync::Mutex<Option<Option<Key>>>;

/// A table with a key: its chunks, each in its own snapshot pair, walked by `cx` and the
/// `lanes` beside it. Each takes the next chunk in turn: it cuts it (the chunk's last key, read
/// in its own snapshot on HERE) while it holds the cursor, and reads it after letting go, so the
/// lanes' reads overlap while their chunks follow one another in the key's order.
async fn walk_chunks(
    cx: &Cx<'_>,
    lanes: &[Cx<'_>],
    index: usize,
    t: &TableInfo,
) -> Result<Open, EngineError> {
    let o = std::sync::Mutex::new(Open::new(index, t, delta_tables(cx, t).await?));
    let deltas = o
        .lock()
        .map(|o| (o.here_deltas.clone(), o.there_deltas.clone()))
        .map_err(|_| EngineError::Io("the verification's tally was poisoned".into()))?;
    let cursor: Cursor = tokio::sync::Mutex::new(Some(None));
    let many = many_chunks(t, cx.chunk_rows);
    let walkers = std::iter::once(cx)
        .chain(lanes.iter().filter(|_| many))
        .map(|lane| walk_lane(lane, t, &cursor, &deltas, &o));
    futures_util::future::try_join_all(walkers).await?;
    o.into_inner()
        .map_err(|_| EngineError::Io("the verification's tally was poisoned".into()))
}

/// A lane the governor holds back looks this often whether any chunk is left for it.
const LANE_RECHECK: Duration = Duration::from_millis(500);

/// One lane's share of [`walk_chunks`]: chunks until none is left.
async fn walk_lane(
    cx: &Cx<'_>,
    t: &TableInfo,
    cursor: &Cursor,
    deltas: &(Vec<String>, Vec<String>),
    o: &std::sync::Mutex<Open>,
) -> Result<(), EngineError> {
    loop {
        // The governor may hold this lane back while the others take every chunk left.
        loop {
            if cursor.lock().await.is_none() {
                return Ok(());
            }
            if let Ok(admitted) = tokio::time::timeout(LANE_RECHECK, cx.admit()).await {
                admitted?;
                break;
            }
        }
        let started = std::time::Instant::now();
        let read = cx
            .in_snapshots(async {
                let chunk = {
                    let mut at = cursor.lock().await;
                    let Some(lo) = at.take() else {
                        return Ok(None);
                    };
                    let hi = verify::chunk_end(&cx.here, Side::Here, t, lo.as_ref(), cx.chunk_rows)
                        .await?;
                    *at = hi.clone().map(Some);
                    Chunk { lo, hi }
                };
                read_chunk(cx, t, &chunk, (&deltas.0, &deltas.1))
                    .await
                    .map(Some)
            })
            .await?;
        let Some(read) = read else {
            return Ok(());
        };
        o.lock()
            .map_err(|_| EngineError::Io("the verification's tally was poisoned".into()))?
            .tally(read);
        cx.breathe(started.elapsed()).await?;
    }
}

/// A table this small (by its estimates) is read whole, in one chunk shared with others.
fn small(cx: &Cx<'_>, t: &TableInfo) -> bool {
    !t.key_columns.is_empty() && t.est_rows <= cx.chunk_rows / 20 && t.total_bytes <= SMALL_BYTES
}

/// Small tables, each read whole, in one snapshot pair with their queries pipelined: walked one
/// by one, 10,000 small tables took 19 ms each, mostly round trips (measured).
async fn walk_small(
    cx: &Cx<'_>,
    tables: &[TableInfo],
    group: &[usize],
) -> Result<Vec<Open>, EngineError> {
    let mut opens = futures_util::future::try_join_all(group.iter().map(|&i| async move {
        Ok::<_, EngineError>(Open::new(
            i,
            &tables[i],
            delta_tables(cx, &tables[i]).await?,
        ))
    }))
    .await?;
    cx.admit().await?;
    let started = std::time::Instant::now();
    let whole = Chunk { lo: None, hi: None };
    let reads = cx
        .in_snapshots(futures_util::future::try_join_all(opens.iter().map(|o| {
            read_chunk(
                cx,
                &tables[o.index],
                &whole,
                (&o.here_deltas, &o.there_deltas),
            )
        })))
        .await?;
    for (o, read) in opens.iter_mut().zip(reads) {
        o.tally(read);
    }
    cx.breathe(started.elapsed()).await?;
    Ok(opens)
}

/// Bucardo's delta tables of `t` on HERE and THERE (none before the triggers exist).
async fn delta_tables(
    cx: &Cx<'_>,
    t: &TableInfo,
) -> Result<(Vec<String>, Vec<String>), EngineError> {
    if !cx.live {
        return Ok((vec![], vec![]));
    }
    let (here, there) = cx
        .deltas
        .get_or_try_init(|| async {
            tokio::try_join!(
                verify::delta_names(&cx.here_keys, Side::Here),
                verify::delta_names(&cx.there_keys, Side::There)
            )
        })
        .await?;
    let of = |m: &DeltaNames| m.get(&t.name).cloned().unwrap_or_default();
    Ok((of(here), of(there)))
}

type DeltaNames = std::collections::HashMap<crate::engine::ident::TableName, Vec<String>>;

/// What one chunk's reading found, before it is tallied into its table's [`Open`].
struct ChunkRead {
    /// Keys changed since the start, left out of the sums.
    skip: Vec<Key>,
    here: verify::ChunkSum,
    there: verify::ChunkSum,
    /// Row by row, when the sums differed.
    diff: Option<verify::Diff>,
}

/// One chunk of `t`, inside the snapshot pair the caller opened.
async fn read_chunk(
    cx: &Cx<'_>,
    t: &TableInfo,
    chunk: &Chunk,
    (here_deltas, there_deltas): (&[String], &[String]),
) -> Result<ChunkRead, EngineError> {
    // Read after both snapshots: a change either side's snapshot could miss is here.
    let mut skip = Vec::new();
    if cx.live {
        let within = Within::Chunk(chunk);
        let (h, th) = tokio::try_join!(
            verify::changed_keys(
                &cx.here_keys,
                Side::Here,
                t,
                here_deltas,
                &cx.here_t0,
                within
            ),
            verify::changed_keys(
                &cx.there_keys,
                Side::There,
                t,
                there_deltas,
                &cx.there_t0,
                within
            )
        )?;
        skip.extend(h);
        skip.extend(th);
        skip.sort();
        skip.dedup();
    }
    let (here, there) = tokio::try_join!(
        verify::chunk_sum(&cx.here, Side::Here, t, chunk, &skip, cx.digest),
        verify::chunk_sum(&cx.there, Side::There, t, chunk, &skip, cx.digest)
    )?;
    let diff = if here.kept != there.kept || here.sum != there.sum {
        let (hr, tr) = tokio::try_join!(
            verify::chunk_rows(&cx.here, Side::Here, t, chunk, &skip, cx.fast),
            verify::chunk_rows(&cx.there, Side::There, t, chunk, &skip, cx.fast)
        )?;
        Some(verify::diff_rows(&hr, &tr))
    } else {
        None
    };
    Ok(ChunkRead {
        skip,
        here,
        there,
        diff,
    })
}

impl Open {
    fn new(
        index: usize,
        t: &TableInfo,
        (here_deltas, there_deltas): (Vec<String>, Vec<String>),
    ) -> Self {
        Open {
            index,
            v: TableVerdict::new(t.name.clone()),
            here_deltas,
            there_deltas,
            again: BTreeSet::new(),
            how: BTreeMap::new(),
        }
    }

    /// Counts a chunk: matching rows as compared, differing ones (up to [`SUSPECTS_MAX`]) and
    /// changed ones as keys to compare again.
    fn tally(&mut self, read: ChunkRead) {
        self.v.here_rows += read.here.rows;
        self.v.there_rows += read.there.rows;
        match read.diff {
            None => self.v.compared += read.here.kept,
            Some(d) => {
                self.v.compared += d.same.len() as i64;
                for (k, what) in d.differ {
                    if self.how.len() < SUSPECTS_MAX {
                        self.how.insert(k.clone(), what);
                        self.again.insert(k);
                    } else {
                        self.v.differing += 1;
                    }
                }
            }
        }
        self.again.extend(read.skip);
    }
}

/// The rounds, over every open table at once: each round waits (and from the second on kicks,
/// unless the sync is live) once for all of them, so the waits do not add up table by table. Behind a backlog Bucardo
/// had not cleared, replays take longer than rounds wait: one round catches what did replay,
/// the rest counts as in flight.
async fn compare_again(
    cx: &Cx<'_>,
    tables: &[TableInfo],
    open: &mut [Open],
) -> Result<(), EngineError> {
    let rounds = if cx.backlog.is_some() {
        1
    } else {
        VERIFY_ROUNDS
    };
    for round in 1..=rounds {
        if open.iter().all(|o| o.again.is_empty()) {
            break;
        }
        if round > 1 && !cx.light {
            cx.kick().await;
        }
        if round > 1 || !cx.replayed {
            cx.sleep(ROUND_WAIT).await?;
        }
        let before: usize = open.iter().map(|o| o.again.len()).sum();
        for o in open.iter_mut().filter(|o| !o.again.is_empty()) {
            o.v.rounds += 1;
            let keys: Vec<Key> = o.again.iter().cloned().collect();
            for batch in keys.chunks(ROUND_BATCH) {
                cx.admit().await?;
                let started = std::time::Instant::now();
                let t = &tables[o.index];
                let (hr, tr) = cx
                    .in_snapshots(async {
                        tokio::try_join!(
                            verify::rows_by_key(&cx.here, Side::Here, t, batch, cx.fast),
                            verify::rows_by_key(&cx.there, Side::There, t, batch, cx.fast)
                        )
                    })
                    .await?;
                let d = verify::diff_rows(&hr, &tr);
                // A key on neither side any more: no row to compare.
                for k in batch {
                    o.again.remove(k);
                }
                for k in d.same {
                    o.v.compared += 1;
                    o.v.replayed += 1;
                    o.how.remove(&k);
                }
                for (k, what) in d.differ {
                    o.how.insert(k.clone(), what);
                    o.again.insert(k);
                }
                cx.breathe(started.elapsed()).await?;
            }
        }
        // With the sync live Bucardo replays a change within a second or so: when a round after
        // the first settles less than half of what it compared, the rest keeps changing, and
        // more rounds would only keep the verification on HERE longer.
        let after: usize = open.iter().map(|o| o.again.len()).sum();
        if cx.light && round > 1 && after * 2 > before {
            break;
        }
    }
    Ok(())
}

/// What still differs after the rounds: in flight if it changed since the verification began
/// (or since the start of a backlog Bucardo had not cleared): its replay may still be to come,
/// as the rounds' kicks do not wait for a sync run. A row that differs with no change since then
/// is a difference: everything logged before was replicated.
async fn settle(
    cx: &Cx<'_>,
    t: &TableInfo,
    o: Open,
) -> Result<(TableVerdict, Differences), EngineError> {
    let Open {
        mut v,
        here_deltas,
        there_deltas,
        again,
        how,
        ..
    } = o;
    let left: Vec<Key> = again.into_iter().collect();
    let mut changing: BTreeSet<Key> = BTreeSet::new();
    if cx.live {
        for batch in left.chunks(ROUND_BATCH) {
            let within = Within::Keys(batch);
            changing.extend(
                verify::changed_keys(
                    &cx.here_keys,
                    Side::Here,
                    t,
                    &here_deltas,
                    &cx.here_t0,
                    within,
                )
                .await?,
            );
            changing.extend(
                verify::changed_keys(
                    &cx.there_keys,
                    Side::There,
                    t,
                    &there_deltas,
                    &cx.there_t0,
                    within,
                )
                .await?,
            );
        }
    }
    let mut differs = Vec::new();
    for k in left {
        if changing.contains(&k) {
            v.in_flight += 1;
        } else {
            v.differing += 1;
            let what = how.get(&k).copied().unwrap_or("different");
            differs.push((k, what));
        }
    }
    Ok((v, differs))
}

/// A table without a key (only when `verify` is given one): one whole-table comparison, repeated
/// after a kick while it differs.
async fn verify_keyless(cx: &Cx<'_>, t: &TableInfo) -> Result<TableVerdict, EngineError> {
    let mut v = TableVerdict::new(t.name.clone());
    let mut seen = Vec::new();
    loop {
        cx.admit().await?;
        let started = std::time::Instant::now();
        let whole = Chunk::default();
        let (a, b) = cx
            .in_snapshots(async {
                tokio::try_join!(
                    verify::chunk_sum(&cx.here, Side::Here, t, &whole, &[], cx.keyless_digest()),
                    verify::chunk_sum(&cx.there, Side::There, t, &whole, &[], cx.keyless_digest())
                )
            })
            .await?;
        cx.breathe(started.elapsed()).await?;
        v.here_rows = a.rows;
        v.there_rows = b.rows;
        if a == b {
            v.compared = a.rows;
            return Ok(v);
        }
        seen.push((a, b));
        if v.rounds >= VERIFY_ROUNDS || cx.kick.is_none() {
            break;
        }
        v.rounds += 1;
        cx.kick().await;
        cx.sleep(ROUND_WAIT).await?;
    }
    if seen.windows(2).any(|w| w[0] != w[1]) {
        v.in_flight = v.rows().max(1);
    } else {
        v.differing = (v.here_rows - v.there_rows).abs().max(1);
    }
    Ok(v)
}

/// What `verify` prints, and how many tables differ.
pub struct VerifyReport {
    pub text: String,
    pub differences: usize,
}

/// The `verify` command: the chosen tier over every table at `pace`, one line per table and a
/// last line with the share of rows compared; with `Deep`, the rows of each differing table (at
/// most [`DEEP_ROWS_SHOWN`] per table). Only DIFFERENT tables count as differences: a table
/// still changing is said so, not failed.
pub async fn verify_command(
    s: &Settings,
    tables: &[TableInfo],
    mode: verify::VerifyMode,
    pace: &Pace,
    events: &mpsc::Sender<RunEvent>,
    cancel: &CancellationToken,
) -> Result<VerifyReport, EngineError> {
    let kick = verify_kick(s);
    let (verdicts, differing) =
        verify_tables_mode(s, tables, kick.as_ref(), mode, pace, events, cancel).await?;
    let mut text = String::new();
    let mut differences = 0;
    for (v, rows) in verdicts.iter().zip(&differing) {
        if v.state() == VerdictState::Different {
            differences += 1;
        }
        text.push_str(&format!(
            "{}\t{}\tHERE {} rows\tTHERE {} rows\t{}\n",
            v.table,
            v.word(),
            v.here_rows,
            v.there_rows,
            v.compared_said()
        ));
        if mode == verify::VerifyMode::Deep && !rows.is_empty() {
            for (k, what) in rows.iter().take(DEEP_ROWS_SHOWN) {
                text.push_str(&format!("  key {}: {what}\n", verify::display_key(k)));
            }
            if rows.len() > DEEP_ROWS_SHOWN {
                text.push_str(&format!(
                    "  ... and {} more rows\n",
                    rows.len() - DEEP_ROWS_SHOWN
                ));
            }
        }
    }
    text.push_str(&format!(
        "verify: {}\n",
        crate::engine::event::verification_summary(&verdicts)
    ));
    Ok(VerifyReport { text, differences })
}

/// At most this many differing rows are printed per table by `verify --deep`.
pub const DEEP_ROWS_SHOWN: usize = 20;

/// A kick for re-checks, when the sync exists (otherwise differences are final at once).
pub(super) fn verify_kick(s: &Settings) -> Option<Invocation> {
    let state = s.state_dir();
    let pf = state.join("bucardo.pgpass");
    if !pf.exists() {
        return None;
    }
    let cli = BucardoCli::from_settings(s);
    Some(cli.invocation(
        &BucardoCmd::Nudge {
            sync: s.names.sync.clone(),
        },
        pf.as_path(),
    ))
}
