//! Executes a plan step by step: emits [`RunEvent`]s, parks at a confirm gate in confirm-each-step
//! mode until a [`GateReply`] arrives, and honours cancellation between and inside steps. What a
//! step does is the [`StepExecutor`]'s business, so the runner is tested with a fake one.

use crate::engine::error::EngineError;
use crate::engine::event::{
    ConfirmMode, GateReply, LogLevel, RunEvent, StepId, StepOutcome, TableVerdict,
};
use crate::engine::plan::{Plan, Step, StepKind};
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Carries out one step. The live one talks to the servers; tests use fakes.
pub trait StepExecutor: Send + Sync {
    fn execute(
        &self,
        plan: &Plan,
        step: &Step,
        events: &mpsc::Sender<RunEvent>,
        cancel: &CancellationToken,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// The verdicts of this run's Verify step (none when it did not run).
    fn verdicts(&self) -> Vec<TableVerdict> {
        vec![]
    }

    /// What the end of a completed run says besides the account of the tables (how often the
    /// bootstrap's locks gave way to the application).
    fn closing_notes(&self) -> Vec<String> {
        vec![]
    }
}

/// How long a cancelled step may take to stop by itself before it is dropped.
pub const CANCEL_GRACE: Duration = Duration::from_secs(10);

/// How a run ended: the one answer every front end words and maps to an exit status.
#[derive(Clone, Debug)]
pub enum RunEnd {
    /// Every step finished (or was skipped by the operator, or done by an earlier run).
    Completed,
    /// A step failed (nothing after it ran), or the run could not start (`step` is None).
    Failed {
        step: Option<StepId>,
        error: EngineError,
    },
    /// The operator aborted, at a gate or in a step (`step`), or before the first step.
    Aborted { step: Option<StepId> },
}

impl RunEnd {
    /// 0 completed, 1 failed, 130 aborted (as a shell reports an interrupted command).
    pub fn exit_code(&self) -> u8 {
        match self {
            RunEnd::Completed => 0,
            RunEnd::Failed { .. } => 1,
            RunEnd::Aborted { .. } => 130,
        }
    }
}

/// How a run ended, and each step's outcome and time.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub end: RunEnd,
    pub timings: Vec<(StepId, StepOutcome, Duration)>,
}

impl RunResult {
    pub fn ok(&self) -> bool {
        matches!(self.end, RunEnd::Completed)
    }

    pub fn aborted(&self) -> bool {
        matches!(self.end, RunEnd::Aborted { .. })
    }
}

/// Runs `plan` from the first step not in `done`.
pub async fn run<E: StepExecutor>(
    plan: &Plan,
    exec: &E,
    mode: ConfirmMode,
    gate: &mut mpsc::Receiver<GateReply>,
    events: &mpsc::Sender<RunEvent>,
    cancel: &CancellationToken,
) -> RunResult {
    let mut result = RunResult {
        end: RunEnd::Completed,
        timings: vec![],
    };
    let _ = events
        .send(RunEvent::Started {
            steps: plan.steps.len(),
        })
        .await;
    for step in &plan.steps {
        if cancel.is_cancelled() {
            result.end = RunEnd::Aborted { step: None };
            break;
        }
        if step.already_done {
            finish(
                events,
                &mut result,
                step.id,
                StepOutcome::AlreadyDone,
                Duration::ZERO,
            )
            .await;
            continue;
        }
        if mode == ConfirmMode::EachStep {
            let _ = events
                .send(RunEvent::AwaitingConfirm { step: step.id })
                .await;
            let reply = tokio::select! {
                r = gate.recv() => r.unwrap_or(GateReply::Abort),
                _ = cancel.cancelled() => GateReply::Abort,
            };
            match reply {
                GateReply::Proceed => {}
                GateReply::Skip => {
                    log(
                        events,
                        LogLevel::Warn,
                        format!(
                            "step {} skipped by the operator: {}",
                            step.id + 1,
                            step.title
                        ),
                    )
                    .await;
                    finish(
                        events,
                        &mut result,
                        step.id,
                        StepOutcome::Skipped,
                        Duration::ZERO,
                    )
                    .await;
                    continue;
                }
                GateReply::Abort => {
                    result.end = RunEnd::Aborted {
                        step: Some(step.id),
                    };
                    finish(
                        events,
                        &mut result,
                        step.id,
                        StepOutcome::Aborted,
                        Duration::ZERO,
                    )
                    .await;
                    break;
                }
            }
        }
        release_free_memory();
        let _ = events.send(RunEvent::StepStarted { step: step.id }).await;
        tracing::info!("step {}: {}", step.id + 1, step.title);
        let started = Instant::now();
        let running = exec.execute(plan, step, events, cancel);
        tokio::pin!(running);
        let outcome = tokio::select! {
            r = &mut running => r,
            _ = cancel.cancelled() => {
                // A step that watches the token stops by itself and puts HERE back as it was
                // (Bucardo's role settings, the lock gate); one that does not is dropped.
                let _ = tokio::time::timeout(CANCEL_GRACE, &mut running).await;
                Err(EngineError::Aborted)
            }
        };
        let elapsed = started.elapsed();
        match outcome {
            Ok(()) => finish(events, &mut result, step.id, StepOutcome::Done, elapsed).await,
            Err(EngineError::Aborted) => {
                result.end = RunEnd::Aborted {
                    step: Some(step.id),
                };
                finish(events, &mut result, step.id, StepOutcome::Aborted, elapsed).await;
                break;
            }
            Err(e) => {
                let msg = e.one_line();
                tracing::error!("step {} failed: {msg}", step.id + 1);
                result.end = RunEnd::Failed {
                    step: Some(step.id),
                    error: e,
                };
                finish(
                    events,
                    &mut result,
                    step.id,
                    StepOutcome::Failed(msg),
                    elapsed,
                )
                .await;
                break;
            }
        }
    }
    let summary = match &result.end {
        RunEnd::Completed => {
            let mut line = plan.coverage.line_with(&verified_said(plan, &result, exec));
            for note in exec.closing_notes() {
                line.push_str(&format!("; {note}"));
            }
            line
        }
        RunEnd::Aborted { .. } => "aborted by the operator".to_string(),
        RunEnd::Failed { error, .. } => error.one_line(),
    };
    let _ = events
        .send(RunEvent::Finished {
            ok: result.ok(),
            summary,
        })
        .await;
    result
}

/// What the run's last line says about the rows, right after the replicated tables: only what
/// this run's Verify step compared (see [`crate::engine::event::verification_summary`]).
fn verified_said<E: StepExecutor>(plan: &Plan, result: &RunResult, exec: &E) -> String {
    let Some(step) = plan.steps.iter().find(|s| s.kind == StepKind::Verify) else {
        return String::new();
    };
    let outcome = result
        .timings
        .iter()
        .find(|(id, _, _)| *id == step.id)
        .map(|(_, o, _)| o);
    match outcome {
        Some(StepOutcome::Done) => {
            let verdicts = exec.verdicts();
            if verdicts.is_empty() {
                ", no table compared".into()
            } else {
                format!(
                    ", the same rows on both sides; {}",
                    crate::engine::event::verification_summary(&verdicts)
                )
            }
        }
        Some(StepOutcome::AlreadyDone) => ", verified by an earlier run".into(),
        Some(StepOutcome::Skipped) => ", not verified (the Verify step was skipped)".into(),
        _ => String::new(),
    }
}

async fn finish(
    events: &mpsc::Sender<RunEvent>,
    result: &mut RunResult,
    step: StepId,
    outcome: StepOutcome,
    elapsed: Duration,
) {
    result.timings.push((step, outcome.clone(), elapsed));
    let _ = events
        .send(RunEvent::StepFinished {
            step,
            outcome,
            elapsed,
        })
        .await;
}

pub async fn log(events: &mpsc::Sender<RunEvent>, level: LogLevel, message: String) {
    let message = crate::engine::secret::redact(&message);
    match level {
        LogLevel::Info | LogLevel::Notice => tracing::info!("{message}"),
        LogLevel::Warn => tracing::warn!("{message}"),
        LogLevel::Error => tracing::error!("{message}"),
    }
    let _ = events.send(RunEvent::Log { level, message }).await;
}

/// Hands the heap's free pages back to the kernel before each step. With one malloc arena what
/// the plan and the steps before built and freed stays resident between the chunks still in
/// use, and the next step's own peak then stacks on top of it.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims glibc's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::plan::StepKind;
    use std::sync::Mutex;

    struct Fake {
        ran: Mutex<Vec<StepId>>,
        fail_at: Option<StepId>,
    }

    impl StepExecutor for Fake {
        async fn execute(
            &self,
            _plan: &Plan,
            step: &Step,
            _events: &mpsc::Sender<RunEvent>,
            _cancel: &CancellationToken,
        ) -> Result<(), EngineError> {
            self.ran.lock().unwrap().push(step.id);
            if Some(step.id) == self.fail_at {
                return Err(EngineError::Refused("boom".into()));
            }
            Ok(())
        }
    }

    fn plan(n: usize) -> Plan {
        Plan {
            steps: (0..n)
                .map(|id| Step {
                    id,
                    kind: StepKind::AddDbgroup,
                    title: format!("step {id}"),
                    why: String::new(),
                    commands: vec![],
                    already_done: false,
                })
                .collect(),
            tables: vec![],
            coverage: Default::default(),
            fingerprint: "f".into(),
            trigger_batch: 1,
            sequence_targets: None,
        }
    }

    async fn drive(
        n: usize,
        mode: ConfirmMode,
        replies: &[GateReply],
        fail_at: Option<StepId>,
    ) -> (RunResult, Vec<StepId>, Vec<RunEvent>) {
        let fake = Fake {
            ran: Mutex::new(vec![]),
            fail_at,
        };
        let (gtx, mut grx) = mpsc::channel(16);
        for r in replies {
            gtx.send(*r).await.unwrap();
        }
        drop(gtx);
        let (etx, mut erx) = mpsc::channel(1024);
        let res = run(
            &plan(n),
            &fake,
            mode,
            &mut grx,
            &etx,
            &CancellationToken::new(),
        )
        .await;
        drop(etx);
        let mut evs = vec![];
        while let Some(e) = erx.recv().await {
            evs.push(e);
        }
        let ran = fake.ran.lock().unwrap().clone();
        (res, ran, evs)
    }

    #[tokio::test]
    async fn automatic_runs_every_step() {
        let (res, ran, _) = drive(3, ConfirmMode::Automatic, &[], None).await;
        assert!(res.ok());
        assert_eq!(ran, vec![0, 1, 2]);
    }

    #[tokio::test]
    async fn gate_proceed_skip_abort() {
        let (res, ran, evs) = drive(
            4,
            ConfirmMode::EachStep,
            &[GateReply::Proceed, GateReply::Skip, GateReply::Abort],
            None,
        )
        .await;
        assert_eq!(
            ran,
            vec![0],
            "step 1 skipped, step 2 aborted, step 3 never reached"
        );
        assert!(res.aborted() && !res.ok());
        let gates: Vec<StepId> = evs
            .iter()
            .filter_map(|e| match e {
                RunEvent::AwaitingConfirm { step } => Some(*step),
                _ => None,
            })
            .collect();
        assert_eq!(gates, vec![0, 1, 2]);
        assert!(evs.iter().any(|e| matches!(
            e,
            RunEvent::StepFinished {
                step: 1,
                outcome: StepOutcome::Skipped,
                ..
            }
        )));
    }

    #[tokio::test]
    async fn a_closed_gate_aborts_rather_than_proceeds() {
        let (res, ran, _) = drive(2, ConfirmMode::EachStep, &[], None).await;
        // No reply can ever come (the sender is dropped after the scripted replies): abort.
        assert!(res.aborted());
        assert!(ran.is_empty());
    }

    #[tokio::test]
    async fn steps_done_in_an_earlier_run_are_not_run_or_gated() {
        let fake = Fake {
            ran: Mutex::new(vec![]),
            fail_at: None,
        };
        let mut p = plan(3);
        p.steps[0].already_done = true;
        p.steps[1].already_done = true;
        let (gtx, mut grx) = mpsc::channel(4);
        gtx.send(GateReply::Proceed).await.unwrap();
        drop(gtx);
        let (etx, mut erx) = mpsc::channel(64);
        let res = run(
            &p,
            &fake,
            ConfirmMode::EachStep,
            &mut grx,
            &etx,
            &CancellationToken::new(),
        )
        .await;
        drop(etx);
        assert!(res.ok());
        assert_eq!(*fake.ran.lock().unwrap(), vec![2]);
        let mut gates = 0;
        while let Some(e) = erx.recv().await {
            if matches!(e, RunEvent::AwaitingConfirm { .. }) {
                gates += 1;
            }
        }
        assert_eq!(gates, 1);
    }

    #[tokio::test]
    async fn a_failure_stops_the_run() {
        let (res, ran, evs) = drive(4, ConfirmMode::Automatic, &[], Some(1)).await;
        assert_eq!(ran, vec![0, 1]);
        match res.end {
            RunEnd::Failed { step, error } => {
                assert_eq!(step, Some(1));
                assert!(error.one_line().contains("boom"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            evs.last(),
            Some(RunEvent::Finished { ok: false, .. })
        ));
    }
}
