//! The governor's eyes and voice: one session on HERE that samples its health four times a
//! second, feeds the [`Governor`], publishes its [`Control`] to the heavy loops, reports a
//! [`View`] once a second and each decision as a log line, and takes the operator's [`Steer`]s
//! (keys, signals, or a `pause` file in the state directory).

use super::{Control, Governor, Held, Limits, Mode, Note, Pace, Sample, Steer, View};
use crate::engine::conn::{ConnSpec, Side};
use crate::engine::event::{LogLevel, RunEvent};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// How often HERE is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// How often a [`View`] goes out.
pub const VIEW_EVERY: Duration = Duration::from_secs(1);
/// Without a sample for this long the governor lets the work run, and says so.
pub const BLIND_AFTER: Duration = Duration::from_secs(10);

/// One round-trip that reads everything a [`Sample`] needs. Our own sessions (application name
/// `bucardo-bootstrap`) are not HERE's load; their oldest snapshot is reported apart.
const PROBE_SQL: &str = "SELECT txid_snapshot_xmax(txid_current_snapshot())::text::bigint, \
    (SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = current_database()), \
    (SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND backend_type = 'client backend' \
        AND pid <> pg_backend_pid() AND application_name <> 'bucardo-bootstrap')::int, \
    (SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
        AND application_name <> 'bucardo-bootstrap')::int, \
    (SELECT extract(epoch FROM max(replay_lag))::float8 FROM pg_stat_replication), \
    (SELECT extract(epoch FROM now() - min(coalesce(xact_start, query_start)))::float8 FROM pg_stat_activity \
        WHERE application_name = 'bucardo-bootstrap' AND backend_xmin IS NOT NULL AND pid <> pg_backend_pid()), \
    (SELECT max(age(backend_xmin))::bigint FROM pg_stat_activity \
        WHERE application_name = 'bucardo-bootstrap' AND backend_xmin IS NOT NULL AND pid <> pg_backend_pid())";

/// The run's handle on its governor.
#[derive(Clone)]
pub struct Governed {
    pub pace: Pace,
    pub steer: mpsc::UnboundedSender<Steer>,
}

impl Governed {
    /// No governor: the heavy work never waits and steering does nothing.
    pub fn unlimited() -> Governed {
        let (steer, _) = mpsc::unbounded_channel();
        Governed {
            pace: Pace::unlimited(),
            steer,
        }
    }
}

/// Starts the governor on HERE; it runs until `stop` is cancelled.
pub fn spawn(
    here: ConnSpec,
    limits: Limits,
    jobs: usize,
    pause_file: Option<PathBuf>,
    events: mpsc::Sender<RunEvent>,
    stop: CancellationToken,
) -> Governed {
    let governor = Governor::new(limits, jobs);
    let (tx, rx) = watch::channel(governor.control());
    let pace = Pace::from_receiver(rx);
    let (steer, steer_rx) = mpsc::unbounded_channel();
    tokio::spawn(run(
        here,
        governor,
        tx,
        pace.clone(),
        steer_rx,
        pause_file,
        events,
        stop,
    ));
    Governed { pace, steer }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    here: ConnSpec,
    mut governor: Governor,
    tx: watch::Sender<Control>,
    pace: Pace,
    mut steer: mpsc::UnboundedReceiver<Steer>,
    pause_file: Option<PathBuf>,
    events: mpsc::Sender<RunEvent>,
    stop: CancellationToken,
) {
    let start = Instant::now();
    let mut client = None;
    let mut last_sample = Instant::now();
    let mut last_view: Option<Instant> = None;
    let mut blind = false;
    let mut file_paused = false;
    let mut ticker = tokio::time::interval(SAMPLE_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let note = |n: Note| {
        let events = events.clone();
        async move {
            let _ = events
                .send(RunEvent::Log {
                    level: LogLevel::Notice,
                    message: n.0,
                })
                .await;
        }
    };
    if governor.mode() == Mode::Off {
        note(Note(Limits::off().describe())).await;
    }
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        while let Ok(s) = steer.try_recv() {
            note(governor.steer(s)).await;
        }
        if let Some(f) = &pause_file {
            let exists = f.exists();
            if exists && !file_paused && governor.mode() != Mode::Held {
                note(governor.steer(Steer::Pause)).await;
                note(Note(format!(
                    "governor: {} exists; remove it to resume",
                    f.display()
                )))
                .await;
            } else if !exists && file_paused && governor.mode() == Mode::Held {
                note(governor.steer(Steer::Resume)).await;
            }
            file_paused = exists;
        }
        if client.is_none() {
            client = connect(&here).await;
        }
        let sample = match &client {
            Some((c, probe)) => sample(c, probe, start, &pace).await,
            None => None,
        };
        match sample {
            Some(s) => {
                last_sample = Instant::now();
                if blind {
                    blind = false;
                    note(Note("governor: reading HERE's health again".into())).await;
                }
                if let Some(n) = governor.observe(s) {
                    note(n).await;
                }
                tx.send_if_modified(|c| {
                    let new = governor.control();
                    let changed = *c != new;
                    *c = new;
                    changed
                });
            }
            None => {
                client = None;
                if !blind && last_sample.elapsed() >= BLIND_AFTER {
                    blind = true;
                    let _ = events
                        .send(RunEvent::Log {
                            level: LogLevel::Warn,
                            message: "governor: cannot read HERE's health; the heavy work runs ungoverned until it can".into(),
                        })
                        .await;
                    tx.send_replace(Control::full(governor.view().jobs));
                }
            }
        }
        if last_view.is_none_or(|t| t.elapsed() >= VIEW_EVERY) {
            last_view = Some(Instant::now());
            let view: View = governor.view();
            let _ = events.send(RunEvent::Here(view)).await;
        }
    }
}

/// The governor's session, with the probe prepared once (the log shows it once, not four times
/// a second).
async fn connect(here: &ConnSpec) -> Option<(tokio_postgres::Client, tokio_postgres::Statement)> {
    let c = here.connect(Side::Here).await.ok()?;
    let probe = c.prepare(PROBE_SQL).await.ok()?;
    Some((c, probe))
}

async fn sample(
    c: &tokio_postgres::Client,
    probe: &tokio_postgres::Statement,
    start: Instant,
    pace: &Pace,
) -> Option<Sample> {
    let t0 = Instant::now();
    let row = tokio::time::timeout(Duration::from_secs(5), c.query_one(probe, &[]))
        .await
        .ok()?
        .ok()?;
    let probe = t0.elapsed();
    let f64_secs = |v: Option<f64>| v.map(|s| Duration::from_secs_f64(s.max(0.0)));
    let held_secs: Option<f64> = row.get(5);
    let held_age: Option<i64> = row.get(6);
    Some(Sample {
        at: t0.duration_since(start),
        xid: row.get::<_, i64>(0).max(0) as u64,
        commits: row.get::<_, Option<i64>>(1).unwrap_or(0).max(0) as u64,
        probe,
        active: row.get::<_, i32>(2).max(0) as u32,
        lock_waiting: row.get::<_, i32>(3).max(0) as u32,
        replica_lag: f64_secs(row.get(4)),
        held: held_age.map(|a| Held {
            secs: held_secs.unwrap_or(0.0).max(0.0) as u64,
            xid_age: a.max(0) as u64,
        }),
        working: pace.worked_within(SAMPLE_EVERY * 2),
        own: pace.own_traffic_now(),
    })
}
