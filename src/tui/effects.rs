//! Performs the [`Effect`]s that `update` asks for: each one becomes a spawned tokio task that
//! talks to the engine and reports back with a [`Msg`] on the wizard's bounded channel. The only
//! long-lived thing here is the handle of a running bootstrap (its gate sender and cancellation
//! token), which `GateReply` and `Abort` use.

use crate::engine::catalog;
use crate::engine::conn::{ConnSpec, Side};
use crate::engine::event::{GateReply, LogLevel, RunEvent};
use crate::engine::files::write_private;
use crate::engine::runner::{RunEnd, RunResult};
use crate::engine::settings::Settings;
use crate::session::launch::{self, Interrupt};
use crate::session::undo;
use crate::tui::app::{Effect, Msg, SaveKind};
use crate::tui::screens::connect::TestState;
use crate::tui::screens::done::Health;
use std::path::PathBuf;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

struct RunControl {
    gate: mpsc::Sender<GateReply>,
    steer: mpsc::UnboundedSender<crate::engine::governor::Steer>,
    cancel: CancellationToken,
}

pub struct Effects {
    tx: mpsc::Sender<Msg>,
    run: Option<RunControl>,
}

impl Effects {
    pub fn new(tx: mpsc::Sender<Msg>) -> Effects {
        Effects { tx, run: None }
    }

    /// Starts the effect; returns `true` when it asks the event loop to stop.
    pub fn perform(&mut self, effect: Effect) -> bool {
        let tx = self.tx.clone();
        match effect {
            Effect::TestConnection {
                side,
                spec,
                fallback,
                seq,
            } => {
                tokio::spawn(async move {
                    let result = test_connection(side, &spec, fallback.as_deref()).await;
                    tracing::info!("connection test, {side}: {result:?}");
                    let _ = tx.send(Msg::ConnTested { side, seq, result }).await;
                });
            }
            Effect::FindEarlier(s, seq) => {
                tokio::spawn(async move {
                    let found = launch::find_earlier(&s)
                        .await
                        .map(|e| e.map(Box::new))
                        .map_err(|e| e.one_line());
                    let _ = tx.send(Msg::EarlierFound(seq, found)).await;
                });
            }
            Effect::PrepareResume(s, seq) => {
                tokio::spawn(async move {
                    let planned = launch::prepare(&s, false)
                        .await
                        .map(|p| Box::new(p.plan))
                        .map_err(|e| e.one_line());
                    let ok = planned.is_ok();
                    let _ = tx.send(Msg::ResumePlanned(seq, planned)).await;
                    if ok {
                        let findings = launch::checks(&s, true, None).await;
                        let _ = tx.send(Msg::ResumeChecked(seq, findings)).await;
                    }
                });
            }
            Effect::ResumeChecks(s, seq) => {
                tokio::spawn(async move {
                    let findings = launch::checks(&s, true, None).await;
                    let _ = tx.send(Msg::ResumeChecked(seq, findings)).await;
                });
            }
            Effect::PlanCleanup(s) => {
                tokio::spawn(async move {
                    let planned = undo::plan(&s, false, false)
                        .await
                        .map(|p| {
                            let text = p.render(&s);
                            (Box::new(p), text)
                        })
                        .map_err(|e| e.one_line());
                    let _ = tx.send(Msg::CleanupPlanned(planned)).await;
                });
            }
            Effect::RunCleanup { settings, plan } => {
                tokio::spawn(async move {
                    let done = undo::execute(&settings, &plan)
                        .await
                        .map_err(|e| e.one_line());
                    let _ = tx.send(Msg::CleanedUp(done)).await;
                });
            }
            Effect::LoadTables(s) => {
                tokio::spawn(async move {
                    let result = async {
                        let here = s.here.connect(Side::Here).await?;
                        let mut all = catalog::list_tables(&here, Side::Here, None).await?;
                        crate::engine::generated::opt_in(&mut all, s.convert_generated);
                        Ok::<_, crate::engine::EngineError>(all)
                    }
                    .await
                    .map_err(|e| e.one_line());
                    let _ = tx.send(Msg::TablesLoaded(result)).await;
                });
            }
            Effect::RunPreflight { settings, tables } => {
                tokio::spawn(async move {
                    let findings = launch::checks(&settings, false, tables.as_deref()).await;
                    let _ = tx.send(Msg::PreflightDone(findings)).await;
                });
            }
            Effect::BuildPlan(s) => {
                tokio::spawn(async move {
                    // The journal is opened again when the run starts; here only the plan counts.
                    let result = launch::prepare(&s, false)
                        .await
                        .map(|p| Box::new(p.plan))
                        .map_err(|e| e.one_line());
                    let _ = tx.send(Msg::PlanBuilt(result)).await;
                });
            }
            Effect::SaveScript { path, contents } => save(tx, SaveKind::Script, path, contents),
            Effect::SavePlanFile { path, contents } => save(tx, SaveKind::PlanFile, path, contents),
            Effect::StartRun {
                plan,
                settings,
                mode,
            } => match launch::start(*plan, *settings, mode, Interrupt::Ignore) {
                Ok(mut handle) => {
                    self.run = Some(RunControl {
                        gate: handle.gate.clone(),
                        steer: handle.steer.clone(),
                        cancel: handle.cancel.clone(),
                    });
                    tokio::spawn(async move {
                        while let Some(ev) = handle.events.recv().await {
                            if tx.send(Msg::Run(ev)).await.is_err() {
                                break;
                            }
                        }
                        if let Ok(result) = handle.done.await {
                            let _ = tx.send(Msg::RunEnded(result)).await;
                        }
                    });
                }
                Err(e) => {
                    tokio::spawn(async move {
                        let msg = e.one_line();
                        for ev in [
                            RunEvent::Log {
                                level: LogLevel::Error,
                                message: msg.clone(),
                            },
                            RunEvent::Finished {
                                ok: false,
                                summary: msg.clone(),
                            },
                        ] {
                            let _ = tx.send(Msg::Run(ev)).await;
                        }
                        let result = RunResult {
                            end: RunEnd::Failed {
                                step: None,
                                error: e,
                            },
                            timings: vec![],
                        };
                        let _ = tx.send(Msg::RunEnded(result)).await;
                    });
                }
            },
            Effect::GateReply(reply) => {
                if let Some(run) = &self.run {
                    if run.gate.try_send(reply).is_err() {
                        tracing::warn!("the runner did not take the gate reply {reply:?}");
                    }
                }
            }
            Effect::Steer(s) => {
                if let Some(run) = &self.run {
                    let _ = run.steer.send(s);
                }
            }
            Effect::Abort => {
                if let Some(run) = &self.run {
                    tracing::warn!("abort requested by the operator");
                    run.cancel.cancel();
                }
            }
            Effect::RefreshHealth(s) => {
                tokio::spawn(async move {
                    let result = health(&s).await;
                    let _ = tx.send(Msg::Health(result)).await;
                });
            }
            Effect::Quit => return true,
        }
        false
    }
}

/// `15.6` from `15.6 (Debian 15.6-0+deb12u1)`.
fn short_version(v: &str) -> &str {
    v.split_whitespace().next().unwrap_or(v)
}

async fn server(side: Side, spec: &ConnSpec) -> Result<catalog::ServerInfo, String> {
    let client = spec.connect(side).await.map_err(|e| e.one_line())?;
    catalog::server_info(&client, side)
        .await
        .map_err(|e| e.one_line())
}

/// Connects as a run would and reports the server version, or the exact error. When that fails
/// but `fallback` answers, the server is up and the error is shown as a warning: THERE's database
/// and Bucardo's role and database are created by the plan.
pub async fn test_connection(
    side: Side,
    spec: &ConnSpec,
    fallback: Option<&ConnSpec>,
) -> TestState {
    let error = match server(side, spec).await {
        Ok(info) => {
            let role = if info.is_superuser {
                "superuser"
            } else {
                "not a superuser"
            };
            return TestState::Ok(format!(
                "PostgreSQL {} · connected as {} ({role})",
                short_version(&info.version),
                spec.user
            ));
        }
        Err(e) => e,
    };
    match fallback {
        Some(f) => match server(side, f).await {
            Ok(info) => TestState::Warn(format!(
                "PostgreSQL {} is up (as {} on {}); the plan creates the rest. Now: {error}",
                short_version(&info.version),
                f.user,
                f.dbname
            )),
            Err(_) => TestState::Failed(error),
        },
        None => TestState::Failed(error),
    }
}

fn save(tx: mpsc::Sender<Msg>, what: SaveKind, path: PathBuf, contents: String) {
    tokio::spawn(async move {
        let result =
            tokio::task::spawn_blocking(move || write_private(&path, &contents).map(|()| path))
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
        let _ = tx.send(Msg::Saved { what, result }).await;
    });
}

/// Reads the sync's health with the engine's `status` module.
pub async fn health(s: &Settings) -> Result<Health, String> {
    crate::engine::status::read(s)
        .await
        .map_err(|e| e.one_line())
}
