//! The run's dealings with the Bucardo daemon: wait for one that is coming up, start one that is
//! gone, and run the commands that need it to answer (`reload`, `kick`).

use super::*;

impl LiveExecutor {
    /// The daemon may have gone since the plan was made (a reboot, a restart, a resumed run):
    /// wait for one that is coming up, and start it again only when it is really gone and
    /// belongs on this machine.
    pub(super) async fn ensure_daemon(
        &self,
        events: &mpsc::Sender<RunEvent>,
    ) -> Result<(), EngineError> {
        let start = Step {
            id: 0,
            kind: StepKind::StartDaemon,
            title: "Start the Bucardo daemon".into(),
            why: String::new(),
            commands: vec![Command::Run(self.cli().invocation(
                &BucardoCmd::Start {
                    reason: "bucardo-bootstrap".into(),
                },
                PassfileRef::Daemon,
            ))],
            already_done: false,
        };
        self.start_daemon(&start, events).await
    }

    /// The daemon's state once it has settled: answering, or plainly not running. A live
    /// daemon that does not answer yet is waited for, and the wait is logged as it begins.
    pub(super) async fn settle_daemon(
        &self,
        events: &mpsc::Sender<RunEvent>,
    ) -> Result<Daemon, EngineError> {
        let ev = events.clone();
        let d = daemon::settle(
            &self.control_as_bucardo(),
            &self.settings.bucardo.piddir,
            daemon::ANSWER_WAIT,
            move |d| {
                let message = format!(
                    "the Bucardo daemon is {}; waiting up to {} s for it to answer",
                    d.describe(),
                    daemon::ANSWER_WAIT.as_secs()
                );
                tracing::warn!("{message}");
                let _ = ev.try_send(RunEvent::Log {
                    level: LogLevel::Warn,
                    message,
                });
            },
        )
        .await?;
        if d.coming_up() {
            return Err(daemon::silent_error(
                &d,
                daemon::ANSWER_WAIT,
                &self.daemon_log(),
            ));
        }
        Ok(d)
    }

    pub(super) fn daemon_log(&self) -> PathBuf {
        self.settings.bucardo.logdir.join("log.bucardo")
    }

    pub(super) async fn start_daemon(
        &self,
        step: &Step,
        events: &mpsc::Sender<RunEvent>,
    ) -> Result<(), EngineError> {
        match self.settle_daemon(events).await? {
            d @ Daemon::Answering { .. } => {
                log(
                    events,
                    LogLevel::Info,
                    format!("the Bucardo daemon is already {}", d.describe()),
                )
                .await;
                return Ok(());
            }
            d @ Daemon::Stale { pid } => {
                let removed = daemon::remove_stale(&self.settings.bucardo.piddir, pid)?;
                let what = match removed {
                    Some(path) => format!("; removed {}", path.display()),
                    None => String::new(),
                };
                log(
                    events,
                    LogLevel::Warn,
                    format!("the Bucardo daemon is {}{what}", d.describe()),
                )
                .await
            }
            _ => {}
        }
        let control = self.control_as_bucardo();
        if !control.is_local() {
            return Err(EngineError::Refused(format!(
                "the Bucardo daemon does not answer and its control database is on {}; start it there (`bucardo start`) and run this again",
                control.host
            )));
        }
        for c in &step.commands {
            let Command::Run(inv) = c else { continue };
            let out = self.run_logged(inv, events, BUCARDO_TIMEOUT).await?;
            let refused = format!("{}\n{}", out.stdout, out.stderr).contains("PID file");
            match Self::checked(inv, out) {
                // `cleanup --all` stops only a daemon the journal says this tool started.
                Ok(_) => {
                    let piddir = self.settings.bucardo.piddir.clone();
                    self.with_journal(|j| j.record_created(|c| c.daemon = Some(piddir)))?;
                }
                // Another start (an operator, a restart) won the race: wait for that daemon.
                Err(_)
                    if refused
                        && matches!(
                            daemon::pid_file(&self.settings.bucardo.piddir),
                            daemon::PidFile::Live(_)
                        ) =>
                {
                    log(
                        events,
                        LogLevel::Warn,
                        "another Bucardo daemon is starting; waiting for it instead".into(),
                    )
                    .await;
                }
                Err(e) => return Err(e),
            }
        }
        let deadline = tokio::time::Instant::now() + daemon::ANSWER_WAIT;
        loop {
            let d = daemon::probe(&control, &self.settings.bucardo.piddir, PING_WAIT).await?;
            if d.answers() {
                log(
                    events,
                    LogLevel::Info,
                    format!("the Bucardo daemon answers: {}", d.describe()),
                )
                .await;
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let logfile = self.daemon_log();
                let tail = std::fs::read_to_string(&logfile).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(5).collect();
                return Err(EngineError::Command {
                    program: "bucardo start".into(),
                    status: format!(
                        "the daemon did not answer a ping within {} s ({})",
                        daemon::ANSWER_WAIT.as_secs(),
                        d.describe()
                    ),
                    stderr_tail: crate::engine::secret::redact(&format!(
                        "{} (log: {})",
                        tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
                        logfile.display()
                    )),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// A Bucardo command that needs the daemon to answer (`reload`, `kick`): it waits for a
    /// daemon that is coming up (or starts one that is gone), then runs the command, and runs it
    /// once more if Bucardo says the daemon is not running (it was restarting in between).
    pub(super) async fn daemon_command(
        &self,
        inv: &Invocation,
        events: &mpsc::Sender<RunEvent>,
        timeout: Duration,
    ) -> Result<process::Output, EngineError> {
        self.ensure_daemon(events).await?;
        let out = self.run_logged(inv, events, timeout).await?;
        if out.status == 0 || !daemon::says_not_running(&format!("{}\n{}", out.stdout, out.stderr))
        {
            return Ok(out);
        }
        log(
            events,
            LogLevel::Warn,
            "Bucardo says its daemon is not running (it may be restarting); waiting for it and trying once more".into(),
        )
        .await;
        self.ensure_daemon(events).await?;
        self.run_logged(inv, events, timeout).await
    }
}
