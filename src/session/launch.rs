//! Preparing and starting a run, the same way for every front end: find a bootstrap that an
//! earlier run started (wizard or headless), build the plan with what is done marked, choose the
//! checks that still matter, then start the runner with its journal, executor, channels,
//! cancellation and (outside the wizard, which reads Ctrl-C as a key) the Ctrl-C handler.

use crate::engine::catalog::Presence;
use crate::engine::conn::Side;
use crate::engine::coverage::Catalog;
use crate::engine::error::EngineError;
use crate::engine::event::{ConfirmMode, GateReply, RunEvent};
use crate::engine::exec::{self, LiveExecutor};
use crate::engine::governor::{self, Steer};
use crate::engine::ident::TableName;
use crate::engine::journal::{Journal, JournalData};
use crate::engine::plan::{self, Plan, StepKind};
use crate::engine::preflight::{self, Finding};
use crate::engine::runner::{self, RunResult};
use crate::engine::settings::{Settings, TableSelection};
use std::path::PathBuf;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Runner events in flight between the runner and a front end.
const EVENT_CAPACITY: usize = 1024;

/// A bootstrap that an earlier run of these servers and names started and did not finish.
#[derive(Clone, Debug)]
pub struct Earlier {
    pub journal_path: PathBuf,
    pub journal: JournalData,
    /// The tables it replicates, in the plan's order.
    pub tables: Vec<TableName>,
}

impl Earlier {
    /// The settings of that bootstrap: these connections and names, its tables.
    pub fn settings(&self, s: &Settings) -> Settings {
        let mut s = s.clone();
        s.tables = TableSelection::List(self.tables.clone());
        s
    }
}

/// Finds the journal of a bootstrap begun with these servers and Bucardo names, whatever tables
/// the caller has (or has not yet) chosen: every journal records its tables, and its fingerprint
/// is computed again from the caller's connections with those tables. The newest unfinished one
/// wins. A journal written before tables were recorded is found when the caller's selection
/// resolves to its plan.
pub async fn find_earlier(s: &Settings) -> Result<Option<Earlier>, EngineError> {
    let mut found: Option<Earlier> = None;
    let mut legacy = false;
    for entry in std::fs::read_dir(s.state_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().to_string();
        if !(name.starts_with("journal-") && name.ends_with(".json")) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let Ok(data) = serde_json::from_str::<JournalData>(&text) else {
            continue;
        };
        let started =
            !(data.steps_done.is_empty() && data.tables_done.is_empty() && data.ranges.is_empty());
        // A bootstrap that verified both sides is finished: there is nothing to resume.
        let finished = data.steps_done.contains(&StepKind::Verify);
        legacy |= started && !finished && data.tables.is_empty();
        if !started
            || finished
            || data.tables.is_empty()
            || plan::fingerprint_names(s, &data.tables) != data.fingerprint
        {
            continue;
        }
        if found
            .as_ref()
            .is_none_or(|f| f.journal.updated < data.updated)
        {
            found = Some(Earlier {
                journal_path: entry.path(),
                tables: data.tables.clone(),
                journal: data,
            });
        }
    }
    if found.is_none() && legacy && exec::resuming(s).await? {
        let (plan, journal) = exec::prepare(s, false).await?;
        if !journal.step_done(StepKind::Verify) {
            found = Some(Earlier {
                journal_path: journal.path().to_path_buf(),
                tables: plan.tables.iter().map(|t| t.name.clone()).collect(),
                journal: journal.data,
            });
        }
    }
    Ok(found)
}

/// Whether the plan these settings describe was started by an earlier run (its journal has
/// records), unless `restart` forgets it.
pub async fn resuming(s: &Settings, restart: bool) -> Result<bool, EngineError> {
    Ok(!restart && exec::resuming(s).await?)
}

/// HERE's catalog, for a command that resolves its selection more than once (whether it
/// resumes, the checks, the plan): read once and passed on.
pub async fn read_catalog(s: &Settings) -> Result<Catalog, EngineError> {
    let (a, b) = tokio::try_join!(s.here.connect(Side::Here), s.here.connect(Side::Here))?;
    Catalog::read_on(&a, &b, Side::Here).await
}

/// [`resuming`] with HERE's catalog already read.
pub fn resuming_in(s: &Settings, catalog: &Catalog, restart: bool) -> Result<bool, EngineError> {
    Ok(!restart && exec::resuming_in(s, catalog)?)
}

/// A plan ready to run.
#[derive(Debug)]
pub struct Prepared {
    pub plan: Plan,
    pub journal: Journal,
}

impl Prepared {
    /// An earlier run of this plan finished something: the run resumes.
    pub fn resuming(&self) -> bool {
        !self.journal.is_empty()
    }
}

/// Builds the plan for `s` and opens its journal (forgotten with `restart`), marking the steps an
/// earlier run finished.
pub async fn prepare(s: &Settings, restart: bool) -> Result<Prepared, EngineError> {
    let (plan, journal) = exec::prepare(s, restart).await?;
    Ok(Prepared { plan, journal })
}

/// [`prepare`] with HERE's catalog already read (its last use), and what the checks found of
/// THERE's tables.
pub async fn prepare_in(
    s: &Settings,
    catalog: Catalog,
    there: Option<&Presence>,
    restart: bool,
) -> Result<Prepared, EngineError> {
    let (plan, journal) = exec::prepare_in(s, catalog, there, restart).await?;
    Ok(Prepared { plan, journal })
}

/// The checks before a run. A fresh bootstrap gets the whole preflight; a resumed one only what
/// still matters ([`preflight::resume_checks`]), since the names taken and the rows on THERE are
/// the earlier run's own work.
pub async fn checks(
    s: &Settings,
    resuming: bool,
    tables: Option<&[crate::engine::catalog::TableInfo]>,
) -> Vec<Finding> {
    if resuming {
        preflight::resume_checks(s).await
    } else {
        preflight::run(s, tables).await
    }
}

/// [`checks`] with HERE's catalog already read, and THERE's checks perhaps started while it was
/// ([`preflight::start_there`]); what they learned of THERE goes on to [`prepare_in`].
pub async fn checks_in(
    s: &Settings,
    resuming: bool,
    catalog: &Catalog,
    there: Option<preflight::ThereAhead>,
) -> preflight::Outcome {
    if resuming {
        preflight::resume_checks_in(s, catalog, there).await
    } else {
        preflight::run_in(s, None, catalog, there).await
    }
}

/// Whether Ctrl-C (SIGINT) cancels the run at a safe point. The wizard reads Ctrl-C as a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interrupt {
    CtrlC,
    Ignore,
}

/// A running bootstrap: its events, the gate replies, the cancel, and its end.
pub struct RunHandle {
    pub events: mpsc::Receiver<RunEvent>,
    pub gate: mpsc::Sender<GateReply>,
    /// The operator's commands to the governor (pause, resume, slower, faster).
    pub steer: mpsc::UnboundedSender<Steer>,
    pub cancel: CancellationToken,
    pub done: tokio::task::JoinHandle<RunResult>,
}

/// The file whose presence pauses the heavy work on HERE (for a run without a terminal).
pub fn pause_file(settings: &Settings) -> std::path::PathBuf {
    settings.state_dir().join("pause")
}

/// For the text front ends: SIGUSR1 pauses the heavy work on HERE, SIGUSR2 resumes it. Returns
/// the line that tells the operator so (none with the governor off: its sampler says that).
pub fn steer_by_signals(
    settings: &Settings,
    steer: mpsc::UnboundedSender<Steer>,
) -> Option<String> {
    use tokio::signal::unix::{signal, SignalKind};
    for (kind, s) in [
        (SignalKind::user_defined1(), Steer::Pause),
        (SignalKind::user_defined2(), Steer::Resume),
    ] {
        if let Ok(mut sig) = signal(kind) {
            let steer = steer.clone();
            tokio::spawn(async move {
                while sig.recv().await.is_some() {
                    if steer.send(s).is_err() {
                        break;
                    }
                }
            });
        }
    }
    // Turned off, the governor's sampler says so itself.
    settings.governor.enabled.then(|| {
        format!(
            "    {}. To pause the copy and verification on HERE: touch {} (remove it to resume), or kill -USR1 {} (-USR2 resumes)",
            settings.governor.describe(),
            pause_file(settings).display(),
            std::process::id()
        )
    })
}

/// Starts `plan`: opens its journal, builds the live executor and spawns the runner.
pub fn start(
    plan: Plan,
    settings: Settings,
    mode: ConfirmMode,
    interrupt: Interrupt,
) -> Result<RunHandle, EngineError> {
    let mut journal = Journal::open(&settings.state_dir(), &plan.fingerprint)?;
    journal.data.tables = plan.tables.iter().map(|t| t.name.clone()).collect();
    let (etx, erx) = mpsc::channel::<RunEvent>(EVENT_CAPACITY);
    let governor_stop = CancellationToken::new();
    let governed = governor::probe::spawn(
        settings.here.clone(),
        settings.governor,
        settings.jobs,
        Some(pause_file(&settings)),
        etx.clone(),
        governor_stop.clone(),
    );
    let steer = governed.steer.clone();
    let executor = match LiveExecutor::new(settings, journal) {
        Ok(e) => e.with_governor(governed),
        Err(e) => {
            governor_stop.cancel();
            return Err(e);
        }
    };
    let (gtx, mut grx) = mpsc::channel::<GateReply>(8);
    let cancel = CancellationToken::new();
    if interrupt == Interrupt::CtrlC {
        let c = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\ninterrupted: stopping at a safe point...");
                c.cancel();
            }
        });
    }
    let runner_cancel = cancel.clone();
    let done = tokio::spawn(async move {
        let r = runner::run(&plan, &executor, mode, &mut grx, &etx, &runner_cancel).await;
        governor_stop.cancel();
        r
    });
    Ok(RunHandle {
        events: erx,
        gate: gtx,
        steer,
        cancel,
        done,
    })
}
