//! The governor: HERE is production, so everything heavy the bootstrap does there (the copy's
//! reads, verification) runs at the pace HERE's own health allows.
//!
//! This module owns the decisions, and nothing here reads a clock or a server: [`Governor`] is
//! fed [`Sample`]s (each stamped with its own time) and the operator's [`Steer`]s, and answers
//! with a [`Control`]: how much of the time the heavy work may run (`duty`), how many copy workers
//! may take a new piece, or whether it must wait. [`probe`] takes the samples from HERE and
//! publishes the control; the heavy loops obey it through a [`Pace`].
//!
//! The signals, from HERE itself: the rate of write transactions (the transaction id counter,
//! real-time; `pg_stat_database`'s commit counter when HERE writes too little to steer by), a
//! tiny probe query's round-trip, lock-waiting backends, and the replay lag of HERE's standbys.
//! The first seconds give the baseline, refined by every second until the heavy work begins.
//! When the rate drops more than `max_load` below it the work slows down (duty halved, fewer
//! workers); past `critical_load` for a whole second it pauses until HERE recovers. With
//! headroom it speeds up again, a step at a time (additive increase, multiplicative decrease, as
//! TCP does).
//!
//! Some of HERE's loss is not the governor's to remove: Bucardo's triggers make every
//! application write cost more for as long as replication runs, and its sync runs hold
//! snapshots on HERE. When HERE stays below the limit while the heavy work is paused, that level
//! becomes the reference ("re-based", said in the log), and half the operator's budget is
//! allowed on top of it.

pub mod probe;

use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The operator's limits (`--max-load`, `--critical-load`; `--max-load off` turns it off).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Limits {
    pub enabled: bool,
    /// Slow down when HERE's transaction rate is more than this many percent below its baseline.
    pub max_load: u32,
    /// Pause when it is more than this many percent below.
    pub critical_load: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            enabled: true,
            max_load: 35,
            critical_load: 45,
        }
    }
}

impl Limits {
    pub fn off() -> Limits {
        Limits {
            enabled: false,
            ..Limits::default()
        }
    }

    fn max_share(&self) -> f64 {
        self.max_load as f64 / 100.0
    }

    fn critical_share(&self) -> f64 {
        self.critical_load as f64 / 100.0
    }

    /// `N%` or `N` (percent), or `off`.
    pub fn parse_share(v: &str) -> Result<Option<u32>, String> {
        let v = v.trim();
        if v.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let n: u32 = v
            .trim_end_matches('%')
            .trim()
            .parse()
            .map_err(|_| format!("`{v}` is not a percentage (say 20 or 20%, or off)"))?;
        if !(1..=95).contains(&n) {
            return Err(format!("`{v}`: give a share between 1% and 95%"));
        }
        Ok(Some(n))
    }

    /// One line for `--help`-like summaries and the review screen.
    pub fn describe(&self) -> String {
        if !self.enabled {
            return "governor off: the copy and verification run at full speed".into();
        }
        format!(
            "governor: slows down when HERE's transaction rate drops {}% below its baseline, pauses past {}%",
            self.max_load, self.critical_load
        )
    }
}

fn pct(share: f64) -> i64 {
    (share * 100.0).round() as i64
}

/// Probe round-trips past these slow the work down, or pause it.
pub const MAX_PROBE: Duration = Duration::from_millis(50);
pub const CRITICAL_PROBE: Duration = Duration::from_millis(250);
/// Replay lag of HERE's standbys past these slows the work down, or pauses it.
pub const MAX_REPLICA_LAG: Duration = Duration::from_secs(10);
pub const CRITICAL_REPLICA_LAG: Duration = Duration::from_secs(60);
/// How long the baseline is measured before the governor decides anything.
pub const BASELINE_WINDOW: Duration = Duration::from_secs(3);
/// Rates are measured over this window.
pub const RATE_WINDOW: Duration = Duration::from_secs(1);
/// At most one speed change per this long, so that each change shows its effect first.
pub const ADJUST_EVERY: Duration = Duration::from_secs(1);
/// Paused this long, or throttled to the floor this long, without HERE recovering: what HERE
/// does without the heavy work becomes the reference.
pub const REBASE_AFTER: Duration = Duration::from_secs(6);
/// Consecutive samples (a quarter second apart, each the rate over the second before it) whose
/// rate must be past `critical_load` before the work pauses: the first and the last window do
/// not overlap, so one bad second throttles but does not pause.
pub const CRITICAL_HOLD_SAMPLES: usize = 5;
/// The pace follows the median loss of the one-second windows ending at this many samples
/// (two seconds of them): an application's rate moves by ±20 % from one second to the next
/// (pgbench on this machine kind), and steering by each window halved the pace for noise.
pub const STEER_SAMPLES: usize = 9;
/// The slowest the work goes short of a pause, and where it restarts after one.
pub const MIN_DUTY: f64 = 0.05;
pub const RESTART_DUTY: f64 = 0.1;
/// With headroom the duty grows by this much a second.
pub const SPEED_STEP: f64 = 0.1;
/// A heavy phase starts at this duty with one worker, and speeds up from there.
pub const START_DUTY: f64 = 0.5;
/// No heavy work for this long: the next phase starts slowly again.
pub const IDLE_RESET: Duration = Duration::from_secs(3);
/// Samples before the heavy work that refine the baseline, at most (ten minutes' worth).
const PRE_WORK_MAX: usize = 2400;
/// A write rate under this (per second) is too little to steer by; the commit rate is used.
pub const MIN_STEERING_RATE: f64 = 5.0;
/// A commit rate under this (per second) is too little to steer by: the tool's own sessions
/// commit up to about 20 read-only transactions a second on HERE (the governor's probe, the
/// lock watchers), so on a HERE this quiet the rate is mostly the tool's and says nothing of the
/// application. The probe's latency, lock waiters and standby lag still steer.
pub const MIN_COMMIT_STEERING_RATE: f64 = 50.0;

/// One reading of HERE, taken at `at` (time since the governor started).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    pub at: Duration,
    /// The transaction id counter (next xid to be assigned).
    pub xid: u64,
    /// `xact_commit + xact_rollback` of HERE's database.
    pub commits: u64,
    pub probe: Duration,
    /// Active backends, not ours.
    pub active: u32,
    /// Backends waiting on a lock, not ours.
    pub lock_waiting: u32,
    /// The largest replay lag of HERE's standbys, when it has any.
    pub replica_lag: Option<Duration>,
    /// The oldest snapshot the bootstrap's own sessions hold on HERE.
    pub held: Option<Held>,
    /// Whether the heavy work ran since the previous sample.
    pub working: bool,
    /// Taken while the bootstrap's own steps loaded HERE ([`Pace::own_traffic`]).
    pub own: bool,
}

/// A snapshot the bootstrap holds on HERE: for how long, and how many transactions vacuum
/// cannot clean up behind it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Held {
    pub secs: u64,
    pub xid_age: u64,
}

/// What the heavy work may do now.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Control {
    /// Share of the time the work may run (1: without pauses).
    pub duty: f64,
    /// Copy workers that may take a new piece.
    pub workers: usize,
    pub paused: bool,
    /// Paused by the operator: even light work waits ([`Pace::admit_light`]).
    pub held: bool,
}

impl Control {
    pub fn full(jobs: usize) -> Control {
        Control {
            duty: 1.0,
            workers: jobs.max(1),
            paused: false,
            held: false,
        }
    }
}

/// The governor's state, as the front ends show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Mode {
    /// Taking the baseline.
    Measuring,
    Full,
    Throttled,
    Paused,
    /// Paused by the operator, until they resume.
    Held,
    Off,
}

impl Mode {
    pub fn word(self) -> &'static str {
        match self {
            Mode::Measuring => "measuring",
            Mode::Full => "full speed",
            Mode::Throttled => "throttled",
            Mode::Paused => "paused",
            Mode::Held => "paused by you",
            Mode::Off => "off",
        }
    }
}

/// The operator's commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Steer {
    Pause,
    Resume,
    Slower,
    Faster,
}

/// HERE's reference level.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Baseline {
    /// Transactions per second (write transactions, or commits when `by_commits`).
    pub rate: f64,
    pub probe_ms: f64,
    pub lock_waiting: u32,
    pub by_commits: bool,
}

/// What the front ends see once a second.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct View {
    pub mode: Mode,
    /// Why it is throttled or paused (empty at full speed).
    pub why: String,
    /// Seconds since the governor started.
    pub at_s: f64,
    /// HERE's transactions per second over the last second.
    pub rate: f64,
    pub probe_ms: f64,
    pub active: u32,
    pub lock_waiting: u32,
    pub replica_lag_s: Option<f64>,
    pub held: Option<Held>,
    /// The reference the limits are measured against, and the one taken before the first step.
    pub baseline: Option<Baseline>,
    pub first_baseline: Option<Baseline>,
    pub duty: f64,
    pub workers: usize,
    pub jobs: usize,
    /// The operator's speed cap (1: none).
    pub cap: f64,
}

impl View {
    /// HERE's rate as a share of the first baseline, in percent.
    pub fn rate_pct(&self) -> Option<f64> {
        let b = self.first_baseline?;
        (b.rate >= MIN_STEERING_RATE).then(|| self.rate / b.rate * 100.0)
    }

    /// The one line the text front ends print for it.
    pub fn line(&self) -> String {
        let mut s = format!("HERE: {} tx/s", self.rate.round() as i64);
        if let Some(p) = self.rate_pct() {
            s.push_str(&format!(" ({}% of baseline)", p.round() as i64));
        }
        s.push_str(&format!(", probe {:.1} ms", self.probe_ms));
        if let Some(l) = self.replica_lag_s {
            s.push_str(&format!(", standby lag {l:.0} s"));
        }
        if let Some(h) = self.held {
            s.push_str(&format!(
                ", oldest snapshot held {} s ({} xids)",
                h.secs, h.xid_age
            ));
        }
        s.push_str(&format!("; governor {}", self.mode.word()));
        match self.mode {
            Mode::Throttled => s.push_str(&format!(
                " to {}% duty, {} of {} workers",
                (self.duty * 100.0).round() as i64,
                self.workers,
                self.jobs
            )),
            Mode::Full if self.cap < 1.0 => s.push_str(&format!(
                " (capped at {}% by you)",
                (self.cap * 100.0).round() as i64
            )),
            _ => {}
        }
        if !self.why.is_empty() {
            s.push_str(&format!(": {}", self.why));
        }
        s
    }
}

/// A change worth a log line.
#[derive(Clone, Debug, PartialEq)]
pub struct Note(pub String);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Severity {
    Low,
    Ok,
    High,
    Critical,
}

/// The decision maker (see the module docs). Time comes only from the samples.
pub struct Governor {
    limits: Limits,
    jobs: usize,
    samples: VecDeque<Sample>,
    baseline: Option<Baseline>,
    first: Option<Baseline>,
    rebased: bool,
    mode: Mode,
    why: String,
    duty: f64,
    workers: usize,
    cap: f64,
    last_adjust: Duration,
    /// Since when it has been paused, or throttled to the floor, without recovering.
    stuck_since: Option<Duration>,
    last_work: Option<Duration>,
    /// HERE's (write, commit) rates at each sample before the heavy work first ran, the
    /// bootstrap's own load left out (see `refine_baseline`).
    pre_work: Vec<(f64, f64)>,
    /// The baseline as the first seconds gave it.
    taken: Option<Baseline>,
}

impl Governor {
    pub fn new(limits: Limits, jobs: usize) -> Governor {
        let jobs = jobs.max(1);
        Governor {
            limits,
            jobs,
            samples: VecDeque::new(),
            baseline: None,
            first: None,
            rebased: false,
            mode: if limits.enabled {
                Mode::Measuring
            } else {
                Mode::Off
            },
            why: String::new(),
            duty: START_DUTY,
            workers: 1,
            cap: 1.0,
            last_adjust: Duration::ZERO,
            stuck_since: None,
            last_work: None,
            pre_work: Vec::new(),
            taken: None,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn control(&self) -> Control {
        match self.mode {
            Mode::Off => Control {
                duty: self.cap,
                ..Control::full(self.jobs)
            },
            // Until the baseline is known the heavy work waits: it would spoil the baseline.
            Mode::Measuring | Mode::Paused | Mode::Held => Control {
                duty: self.duty,
                workers: self.workers,
                paused: true,
                held: self.mode == Mode::Held,
            },
            Mode::Full | Mode::Throttled => Control {
                duty: self.duty.min(self.cap),
                workers: self.workers,
                paused: false,
                held: false,
            },
        }
    }

    pub fn steer(&mut self, s: Steer) -> Note {
        match s {
            Steer::Pause => {
                self.mode = Mode::Held;
                self.why = "until you resume".into();
                Note("governor: paused by the operator; HERE's heavy work waits".into())
            }
            Steer::Resume => {
                if self.mode == Mode::Held {
                    self.mode = if !self.limits.enabled {
                        Mode::Off
                    } else if self.baseline.is_some() {
                        Mode::Throttled
                    } else {
                        Mode::Measuring
                    };
                    self.why.clear();
                }
                Note("governor: resumed by the operator".into())
            }
            Steer::Slower => {
                self.cap = (self.duty.min(self.cap) / 2.0).max(MIN_DUTY);
                Note(format!(
                    "governor: the operator capped the heavy work at {}% duty",
                    pct(self.cap)
                ))
            }
            Steer::Faster => {
                self.cap = (self.cap * 2.0).min(1.0);
                if self.mode == Mode::Throttled {
                    self.duty = (self.duty * 2.0).min(1.0);
                }
                Note(if self.cap >= 1.0 {
                    "governor: the operator lifted the speed cap".into()
                } else {
                    format!(
                        "governor: the operator raised the cap to {}% duty",
                        pct(self.cap)
                    )
                })
            }
        }
    }

    /// Takes one sample; returns what changed, for the log.
    pub fn observe(&mut self, s: Sample) -> Option<Note> {
        let now = s.at;
        let first_work = s.working && self.last_work.is_none();
        if s.working {
            self.last_work = Some(now);
        }
        self.samples.push_back(s);
        while self
            .samples
            .front()
            .is_some_and(|f| now.saturating_sub(f.at) > BASELINE_WINDOW + RATE_WINDOW)
        {
            self.samples.pop_front();
        }
        match self.mode {
            Mode::Off | Mode::Held => None,
            Mode::Measuring => self.take_baseline(now),
            _ => {
                let refined = if first_work || self.last_work.is_none() {
                    self.refine_baseline(first_work)
                } else {
                    None
                };
                self.decide(now).or(refined)
            }
        }
    }

    /// Until the heavy work first runs, every second measured refines the baseline: its median
    /// over all of them, not only the first 3 s (which may catch the bootstrap's own DDL, or a
    /// burst of the application's: both seen, 35 % too low and 15 % too high), and what it is
    /// steered by. Said in the log when the heavy work starts, if it moved.
    fn refine_baseline(&mut self, first_work: bool) -> Option<Note> {
        if self.rebased || self.pre_work.len() >= PRE_WORK_MAX {
            return None;
        }
        let was = self.taken?;
        if !first_work {
            let last = self.samples.len().checked_sub(1)?;
            if self.own_within(last) {
                return None;
            }
            let r = self.rates_at(last)?;
            self.pre_work.push(r);
        }
        if self.pre_work.is_empty() {
            return None;
        }
        let (mut writes, mut commits): (Vec<f64>, Vec<f64>) = self.pre_work.iter().copied().unzip();
        let (w, c) = (median(&mut writes), median(&mut commits));
        // From a quiet start, writes that show up later are not taken for the application's:
        // its first seconds are the best look at HERE the bootstrap gets, and the writes after
        // them were the daemon's and autovacuum's in the benchmark (11 tx/s, then none: paused
        // until a re-base).
        let (rate, by_commits, quiet) = steering(if was.rate == 0.0 { 0.0 } else { w }, c);
        for b in [self.baseline.as_mut()?, self.first.as_mut()?] {
            b.rate = rate;
            b.by_commits = by_commits;
        }
        if !first_work {
            return None;
        }
        if self.mode == Mode::Full && !quiet && was.rate == 0.0 {
            self.mode = Mode::Throttled;
            self.duty = START_DUTY;
            self.workers = 1;
        } else if self.mode == Mode::Throttled && quiet {
            self.mode = Mode::Full;
            self.duty = 1.0;
            self.workers = self.jobs;
        }
        let secs = self.pre_work.len() / 4;
        if quiet {
            // Its first seconds were the bootstrap's own DDL: HERE itself is nearly idle.
            return (was.rate > 0.0).then(|| {
                Note(format!(
                    "governor: HERE, over the {secs} s before the heavy work began, is nearly idle ({} write \
                     transactions/s, {} commits/s): its rate is not steered by, its probe, lock waiters and standbys are",
                    w.round() as i64,
                    c.round() as i64
                ))
            });
        }
        let moved = by_commits != was.by_commits
            || (rate / was.rate.max(f64::MIN_POSITIVE) - 1.0).abs() > 0.05;
        moved.then(|| {
            Note(format!(
                "governor: HERE's baseline, over the {secs} s before the heavy work began: {} {}/s",
                rate.round() as i64,
                if by_commits { "commits" } else { "tx" }
            ))
        })
    }

    fn take_baseline(&mut self, now: Duration) -> Option<Note> {
        let first_at = self.samples.front()?.at;
        if now.saturating_sub(first_at) < BASELINE_WINDOW {
            return None;
        }
        let mut writes = Vec::new();
        let mut commits = Vec::new();
        let mut probes = Vec::new();
        let mut waiting = Vec::new();
        let mut own_left_out = Vec::new();
        for (i, s) in self.samples.iter().enumerate() {
            probes.push(s.probe.as_secs_f64() * 1000.0);
            waiting.push(s.lock_waiting as f64);
            if let Some(r) = self.rates_at(i) {
                writes.push(r.0);
                commits.push(r.1);
                if !self.own_within(i) {
                    own_left_out.push(r);
                }
            }
        }
        self.pre_work = own_left_out;
        let (w, c) = (median(&mut writes), median(&mut commits));
        let (rate, by_commits, quiet) = steering(w, c);
        let b = Baseline {
            rate,
            probe_ms: median(&mut probes),
            lock_waiting: median(&mut waiting).round() as u32,
            by_commits,
        };
        self.baseline = Some(b);
        self.first = Some(b);
        self.taken = Some(b);
        self.mode = Mode::Throttled;
        self.duty = START_DUTY;
        self.workers = 1;
        self.last_adjust = now;
        if quiet {
            // No application's rate to watch while the work ramps up: full speed, and the
            // probe and lock waiters slow it if HERE suffers.
            self.mode = Mode::Full;
            self.duty = 1.0;
            self.workers = self.jobs;
            return Some(Note(format!(
                "governor: HERE is nearly idle ({} write transactions/s, {} commits/s, most of them the tool's own): its rate is not steered by, its probe ({:.1} ms), lock waiters and standbys are; {}",
                w.round() as i64,
                c.round() as i64,
                b.probe_ms,
                self.limits.describe()
            )));
        }
        Some(Note(format!(
            "governor: HERE's baseline is {} {}/s, probe {:.1} ms; {}",
            b.rate.round() as i64,
            if by_commits {
                "commits"
            } else {
                "write transactions"
            },
            b.probe_ms,
            self.limits.describe()
        )))
    }

    /// Whether the bootstrap's own load ran during the rate window ending at sample `i`: a
    /// sample just after one of its steps still counts that step's transactions.
    fn own_within(&self, i: usize) -> bool {
        let Some(end) = self.samples.get(i) else {
            return false;
        };
        self.samples
            .iter()
            .take(i + 1)
            .rev()
            .take_while(|s| end.at.saturating_sub(s.at) <= RATE_WINDOW)
            .any(|s| s.own)
    }

    /// (write rate, commit rate) over [`RATE_WINDOW`] ending at sample `i`.
    fn rates_at(&self, i: usize) -> Option<(f64, f64)> {
        let end = self.samples.get(i)?;
        let start = self
            .samples
            .iter()
            .take(i)
            .rev()
            .find(|s| end.at.saturating_sub(s.at) >= RATE_WINDOW)?;
        let dt = end.at.saturating_sub(start.at).as_secs_f64();
        if dt <= 0.0 {
            return None;
        }
        Some((
            end.xid.saturating_sub(start.xid) as f64 / dt,
            end.commits.saturating_sub(start.commits) as f64 / dt,
        ))
    }

    /// The median rate over the samples kept, in the baseline's unit.
    fn window_rate(&self) -> Option<f64> {
        let by_commits = self.baseline?.by_commits;
        let mut rates: Vec<f64> = (0..self.samples.len())
            .filter_map(|i| self.rates_at(i))
            .map(|(w, c)| if by_commits { c } else { w })
            .collect();
        (!rates.is_empty()).then(|| median(&mut rates))
    }

    /// The share of the baseline lost now, with the allowed limits.
    fn loss(&self) -> Option<(f64, f64, f64)> {
        self.loss_at(self.samples.len().checked_sub(1)?)
    }

    /// The loss the pace follows: see [`STEER_SAMPLES`].
    fn steering_loss(&self) -> Option<f64> {
        let n = self.samples.len();
        let mut losses: Vec<f64> = (1..=STEER_SAMPLES.min(n))
            .filter_map(|back| self.loss_at(n - back))
            .map(|(l, _, _)| l)
            .collect();
        (!losses.is_empty()).then(|| median(&mut losses))
    }

    /// [`Self::loss`] as of sample `i`.
    fn loss_at(&self, i: usize) -> Option<(f64, f64, f64)> {
        let b = self.baseline?;
        let (w, c) = self.rates_at(i)?;
        let r = if b.by_commits { c } else { w };
        let (max, crit) = if self.rebased {
            (
                self.limits.max_share() / 2.0,
                self.limits.critical_share() / 2.0,
            )
        } else {
            (self.limits.max_share(), self.limits.critical_share())
        };
        if b.rate < MIN_STEERING_RATE {
            return Some((0.0, max, crit));
        }
        Some((1.0 - r / b.rate, max, crit))
    }

    fn severity(&self) -> (Severity, String) {
        let Some(last) = self.samples.back() else {
            return (Severity::Ok, String::new());
        };
        let b = self.baseline.expect("decide runs after the baseline");
        let mut worst = (Severity::Low, String::new());
        let mut raise = |sev: Severity, why: String| {
            if sev > worst.0 {
                worst = (sev, why);
            }
        };
        if let (Some((loss, max, crit)), Some(steer)) = (self.loss(), self.steering_loss()) {
            let why = |loss: f64| {
                format!(
                    "HERE's rate is {}% below its {}baseline",
                    pct(loss),
                    if self.rebased { "re-based " } else { "" }
                )
            };
            // A rate is noisy: one window past the critical limit throttles, a loss that
            // holds for CRITICAL_HOLD_SAMPLES pauses.
            let held = (1..=CRITICAL_HOLD_SAMPLES).all(|back| {
                self.samples
                    .len()
                    .checked_sub(back)
                    .and_then(|i| self.loss_at(i))
                    .is_some_and(|(l, _, c)| l >= c)
            });
            if loss >= crit && held {
                raise(Severity::Critical, why(loss));
            } else if steer >= max {
                raise(Severity::High, why(steer));
            } else if steer >= max / 2.0 {
                raise(Severity::Ok, String::new());
            }
        }
        let probe_ms = last.probe.as_secs_f64() * 1000.0;
        let probe_max = (b.probe_ms * 10.0).max(MAX_PROBE.as_secs_f64() * 1000.0);
        let probe_crit = (b.probe_ms * 50.0).max(CRITICAL_PROBE.as_secs_f64() * 1000.0);
        if probe_ms >= probe_crit {
            raise(
                Severity::Critical,
                format!("a probe query took {probe_ms:.0} ms"),
            );
        } else if probe_ms >= probe_max {
            raise(
                Severity::High,
                format!("a probe query took {probe_ms:.0} ms"),
            );
        }
        if let Some(lag) = last.replica_lag {
            if lag >= CRITICAL_REPLICA_LAG {
                raise(
                    Severity::Critical,
                    format!("a standby lags {} s", lag.as_secs()),
                );
            } else if lag >= MAX_REPLICA_LAG {
                raise(
                    Severity::High,
                    format!("a standby lags {} s", lag.as_secs()),
                );
            }
        }
        if last.lock_waiting > b.lock_waiting + 2 {
            raise(
                Severity::High,
                format!("{} sessions wait on locks", last.lock_waiting),
            );
        }
        worst
    }

    fn decide(&mut self, now: Duration) -> Option<Note> {
        let (sev, why) = self.severity();
        let idle = self
            .last_work
            .is_none_or(|w| now.saturating_sub(w) >= IDLE_RESET);
        match self.mode {
            Mode::Paused => {
                if sev <= Severity::Ok {
                    self.mode = Mode::Throttled;
                    self.why.clear();
                    self.duty = RESTART_DUTY;
                    self.workers = 1;
                    self.last_adjust = now;
                    self.stuck_since = None;
                    return Some(Note(
                        "governor: HERE recovered; resuming slowly".to_string(),
                    ));
                }
                self.why = why;
                return self.maybe_rebase(now);
            }
            _ if sev == Severity::Critical => {
                self.mode = Mode::Paused;
                self.stuck_since = Some(now);
                self.why = why.clone();
                return Some(Note(format!("governor: pausing HERE's heavy work: {why}")));
            }
            _ => {}
        }
        if idle && self.baseline.is_some_and(|b| b.rate == 0.0) && sev <= Severity::Ok {
            // A nearly idle HERE: no application's rate to watch while the work ramps up.
            self.duty = 1.0;
            self.workers = self.jobs;
            self.mode = Mode::Full;
            self.why.clear();
            self.stuck_since = None;
            return None;
        }
        if idle {
            // Between heavy phases nothing can be learnt about the work's cost: the next one
            // starts slowly again.
            self.duty = self.duty.min(START_DUTY);
            self.workers = 1;
            self.mode = Mode::Throttled;
            self.why.clear();
            self.stuck_since = None;
            return None;
        }
        if now.saturating_sub(self.last_adjust) < ADJUST_EVERY {
            return None;
        }
        let at_floor = self.duty <= MIN_DUTY && self.workers == 1;
        match sev {
            Severity::High => {
                self.last_adjust = now;
                let was = self.mode;
                self.mode = Mode::Throttled;
                self.why = why.clone();
                if at_floor {
                    let since = *self.stuck_since.get_or_insert(now);
                    if now.saturating_sub(since) >= REBASE_AFTER {
                        // Nothing slower is left to try: measure HERE without the work.
                        self.mode = Mode::Paused;
                        self.stuck_since = Some(now);
                        return Some(Note(format!(
                            "governor: still {why} at the slowest pace; pausing to measure HERE without the bootstrap's work"
                        )));
                    }
                    return None;
                }
                self.duty = (self.duty / 2.0).max(MIN_DUTY);
                self.workers = (self.workers / 2).max(1);
                (was == Mode::Full).then(|| Note(format!("governor: throttling: {why}")))
            }
            Severity::Ok => {
                // At the floor, a loss that dips under max_load now and then has not recovered:
                // only headroom (Low) ends the wait for a re-base.
                if !at_floor {
                    self.stuck_since = None;
                }
                None
            }
            Severity::Low => {
                self.stuck_since = None;
                self.why.clear();
                if self.duty < 1.0 {
                    self.duty = (self.duty + SPEED_STEP).min(1.0);
                    self.last_adjust = now;
                } else if self.workers < self.jobs {
                    self.workers += 1;
                    self.last_adjust = now;
                }
                if self.duty >= 1.0 && self.workers == self.jobs && self.mode != Mode::Full {
                    self.mode = Mode::Full;
                    return Some(Note("governor: HERE has headroom; full speed".into()));
                }
                None
            }
            Severity::Critical => None,
        }
    }

    /// Paused for [`REBASE_AFTER`] and HERE did not come back: its current level is what it
    /// does without the heavy work, so that becomes the reference.
    fn maybe_rebase(&mut self, now: Duration) -> Option<Note> {
        let since = *self.stuck_since.get_or_insert(now);
        if now.saturating_sub(since) < REBASE_AFTER {
            return None;
        }
        let why = self.why.clone();
        // The window's median, not the last second's: one dip must not become the reference.
        let rate = self.window_rate()?;
        let b = self.baseline.as_mut()?;
        let before = b.rate;
        let least = if b.by_commits {
            MIN_COMMIT_STEERING_RATE
        } else {
            MIN_STEERING_RATE
        };
        // Below what a rate can be steered by, HERE is as good as idle without the work (its
        // baseline was autovacuum's transactions, say): raising the reference to the least rate
        // paused the work again at once, for ever. The probe, lock waiters and standbys steer.
        let quiet = rate < least;
        b.rate = if quiet { 0.0 } else { rate };
        if let Some(last) = self.samples.back() {
            b.probe_ms = b.probe_ms.max(last.probe.as_secs_f64() * 1000.0);
            b.lock_waiting = b.lock_waiting.max(last.lock_waiting);
        }
        self.rebased = true;
        self.mode = Mode::Throttled;
        self.why.clear();
        self.duty = RESTART_DUTY;
        self.workers = 1;
        self.last_adjust = now;
        self.stuck_since = None;
        if quiet {
            return Some(Note(format!(
                "governor: {why} with the bootstrap's heavy work paused: HERE stays at {} tx/s ({} tx/s before), \
                 too few to steer by: from now on its rate is not steered by, its probe, lock waiters and standbys are",
                rate.round() as i64,
                before.round() as i64
            )));
        }
        Some(Note(format!(
            "governor: {why} with the bootstrap's heavy work paused: HERE stays at {} tx/s ({}% of its {} tx/s before), \
             the cost of Bucardo's triggers and sync, which no throttle removes. Measuring against it from now on, \
             allowing half the load on top",
            rate.round() as i64,
            pct(rate / before.max(f64::MIN_POSITIVE)),
            before.round() as i64
        )))
    }

    pub fn view(&self) -> View {
        let last = self.samples.back();
        let c = self.control();
        View {
            mode: self.mode,
            why: self.why.clone(),
            at_s: last.map(|s| s.at.as_secs_f64()).unwrap_or(0.0),
            rate: self
                .samples
                .len()
                .checked_sub(1)
                .and_then(|i| self.rates_at(i))
                .map(|(w, c)| {
                    if self.baseline.is_some_and(|b| b.by_commits) {
                        c
                    } else {
                        w
                    }
                })
                .unwrap_or(0.0),
            probe_ms: last.map(|s| s.probe.as_secs_f64() * 1000.0).unwrap_or(0.0),
            active: last.map(|s| s.active).unwrap_or(0),
            lock_waiting: last.map(|s| s.lock_waiting).unwrap_or(0),
            replica_lag_s: last.and_then(|s| s.replica_lag).map(|d| d.as_secs_f64()),
            held: last.and_then(|s| s.held),
            baseline: self.baseline,
            first_baseline: self.first,
            duty: c.duty,
            workers: c.workers,
            jobs: self.jobs,
            cap: self.cap,
        }
    }
}

/// What a (write, commit) rate is steered by: `(rate, by_commits, quiet)`. Too few writes to
/// steer by, the commits; too few of those, nothing (`quiet`, rate 0).
fn steering(writes: f64, commits: f64) -> (f64, bool, bool) {
    if writes >= MIN_STEERING_RATE {
        (writes, false, false)
    } else if commits >= MIN_COMMIT_STEERING_RATE {
        (commits, true, false)
    } else {
        (0.0, true, true)
    }
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The heavy loops' side of the governor: cheap to clone, one per worker.
#[derive(Clone)]
pub struct Pace {
    rx: watch::Receiver<Control>,
    /// When the heavy work last ran, in ms since `start`, for the sampler's `working` flag.
    last_work: Arc<AtomicU64>,
    /// The bootstrap's own Bucardo steps load HERE right now (see [`Pace::own_traffic`]).
    own: Arc<std::sync::atomic::AtomicBool>,
    start: Instant,
}

/// The longest single wait between slices; a changed control is read at least this often.
const MAX_NAP: Duration = Duration::from_millis(500);

impl Pace {
    /// A pace that never waits (the standalone `copy` command, tests).
    pub fn unlimited() -> Pace {
        let (tx, rx) = watch::channel(Control::full(usize::MAX));
        drop(tx);
        Pace::from_receiver(rx)
    }

    pub fn from_receiver(rx: watch::Receiver<Control>) -> Pace {
        Pace {
            rx,
            last_work: Arc::new(AtomicU64::new(0)),
            own: Arc::default(),
            start: Instant::now(),
        }
    }

    fn control(&self) -> Control {
        *self.rx.borrow()
    }

    /// Marks the bootstrap's own steps that load HERE (installing Bucardo's control database
    /// and starting its daemon, both of which write in HERE's cluster when the control database
    /// lives there, registering tables with Bucardo, which connects to HERE once per table, and
    /// installing its triggers): the seconds they run do not refine the baseline. On a quiet HERE they tripled its commit rate (10,000 tables: 125 tx/s), and the
    /// copy after them was throttled for a loss that was never the application's.
    pub fn own_traffic(&self, on: bool) {
        self.own.store(on, Ordering::Relaxed);
    }

    pub fn own_traffic_now(&self) -> bool {
        self.own.load(Ordering::Relaxed)
    }

    /// Whether heavy work ran within `within`.
    pub fn worked_within(&self, within: Duration) -> bool {
        let last = self.last_work.load(Ordering::Relaxed);
        last > 0
            && (self.start.elapsed().as_millis() as u64).saturating_sub(last)
                <= within.as_millis() as u64
    }

    fn mark(&self) {
        let now = (self.start.elapsed().as_millis() as u64).max(1);
        self.last_work.store(now, Ordering::Relaxed);
    }

    /// Waits until worker `worker` may take a new piece of work.
    pub async fn admit(&self, worker: usize) {
        loop {
            let c = self.control();
            if !c.paused && worker < c.workers.max(1) {
                return;
            }
            self.nap(MAX_NAP).await;
        }
    }

    /// Light work (reading back by key the rows Bucardo replayed): it waits only while the
    /// operator holds the work. When it runs Bucardo's sync is live, and what lowers HERE then
    /// is mostly the sync, which no throttle removes: slowing the light work down only keeps
    /// the bootstrap on HERE longer (measured in README, "Load on HERE").
    pub async fn admit_light(&self) {
        while self.control().held {
            self.nap(MAX_NAP).await;
        }
        self.mark();
    }

    /// After `worked` of heavy work: rests so that the work keeps to the governor's duty, and
    /// waits out a pause.
    pub async fn breathe(&self, worked: Duration) {
        self.mark();
        let c = self.control();
        if !c.paused && c.duty >= 1.0 {
            return;
        }
        let mut rest = if c.duty > 0.0 {
            worked.mul_f64((1.0 - c.duty.min(1.0)) / c.duty)
        } else {
            MAX_NAP
        };
        loop {
            let c = self.control();
            if c.paused {
                self.nap(MAX_NAP).await;
                continue;
            }
            if rest.is_zero() {
                return;
            }
            let nap = rest.min(MAX_NAP);
            self.nap(nap).await;
            rest = rest.saturating_sub(nap);
        }
    }

    async fn nap(&self, d: Duration) {
        let mut rx = self.rx.clone();
        rx.borrow_and_update();
        if let Ok(Err(_)) = tokio::time::timeout(d, rx.changed()).await {
            // The governor is gone: its last word stands.
            tokio::time::sleep(d).await;
        }
    }
}

#[cfg(test)]
mod tests;
