//! The live executor: prepares a run (passfiles, probing the servers, resolving the table
//! selection) and carries out each plan step against the real servers and tools. Steps that run
//! commands run exactly the ones the plan shows; the others (copy, drain, verify) are engine code.

use crate::engine::bucardo::{self, BucardoCli, BucardoCmd};
use crate::engine::catalog::{self, TableInfo};
use crate::engine::conn::{ConnSpec, Passfile, Side};
use crate::engine::copy::parts::RangesDone;
use crate::engine::copy::{self, Snapshot};
use crate::engine::daemon::{self, Daemon, PING_WAIT};
use crate::engine::error::EngineError;
use crate::engine::event::{CopyEvent, LogLevel, RunEvent, TableVerdict};
use crate::engine::ident::{quote_ident, quote_literal, TableName};
use crate::engine::journal::Journal;
use crate::engine::plan::{
    self, Command, Facts, Plan, SqlSecret, Step, StepKind, BUCARDO_PASS_VAR, DAEMON_PASSFILE,
    RUN_PASSFILE,
};
use crate::engine::process::{self, Invocation};
use crate::engine::runner::{log, StepExecutor};
use crate::engine::secret::Secret;
use crate::engine::settings::{Settings, TableSelection};
use crate::engine::verify;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const TOOL_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
const BUCARDO_TIMEOUT: Duration = Duration::from_secs(120);
const POLL_INTERVAL: Duration = Duration::from_millis(500);
const REKICK_INTERVAL: Duration = Duration::from_secs(30);

/// Makes sure `dir` exists for the tool's private files (passfiles, journal, logs, Bucardo's PID
/// and log files). A missing directory is created 0700, with any missing parents. An existing one
/// keeps its mode, because it may be shared or belong to the system (`/tmp`, `/var/log`); it is
/// refused when it is not safe ([`unsafe_dir_reason`]). `flag` names the option that chose it.
pub fn private_dir(dir: &Path, flag: &str) -> Result<(), EngineError> {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => Err(EngineError::Config(format!(
            "{} is not a directory: give {flag} a directory",
            dir.display()
        ))),
        Ok(m) => match unsafe_dir_reason(&m) {
            Some(why) => Err(EngineError::Config(format!(
                "{}: {why}; give {flag} a directory of your own",
                dir.display()
            ))),
            None => Ok(()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_dir_0700(dir),
        Err(e) => Err(e.into()),
    }
}

/// Creates `dir` (and missing parents) 0700 if it does not exist; never changes an existing one.
pub fn create_dir_0700(dir: &Path) -> Result<(), EngineError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // The umask can take bits away from 0700, even the owner's: be exact.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// Why an existing directory cannot hold the tool's private files: other users can write to it,
/// or it belongs to another user (not root). Either could plant a symlink where a passfile or the
/// journal is about to be written. `None` when it is safe.
pub fn unsafe_dir_reason(m: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mode = m.permissions().mode() & 0o7777;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if mode & 0o022 != 0 {
        Some(format!("other users can write to it (mode {mode:o})"))
    } else if m.uid() != me && m.uid() != 0 {
        Some(format!("it belongs to another user (uid {})", m.uid()))
    } else {
        None
    }
}

/// Everything a live run holds: settings with passwords resolved, and the two passfiles.
pub struct LiveExecutor {
    pub settings: Settings,
    run_passfile: Passfile,
    daemon_passfile: Passfile,
    bucardo_password: Secret,
    journal: std::sync::Mutex<Journal>,
}

impl LiveExecutor {
    /// Writes the run's temporary passfile (every credential, removed when the run ends) and the
    /// daemon's persistent one (only the Bucardo role's lines: the daemon reconnects for as long as
    /// it runs). Both are 0600 in the 0700 state directory.
    pub fn new(settings: Settings, journal: Journal) -> Result<LiveExecutor, EngineError> {
        let bucardo_password = settings.bucardo.password.clone().ok_or_else(|| {
            EngineError::Config(
                "no password for Bucardo's role: set BUCARDOPASS (or add it to ~/.pgpass for the control database)"
                    .into(),
            )
        })?;
        let dir = settings.state_dir();
        private_dir(&dir, "--log-dir")?;
        private_dir(&settings.bucardo.piddir, "--bucardo-piddir")?;
        private_dir(&settings.bucardo.logdir, "--bucardo-logdir")?;
        let bucardo_role =
            |c: &ConnSpec| c.with_user(&settings.bucardo.user, Some(bucardo_password.clone()));
        let b_here = bucardo_role(&settings.here);
        let b_there = bucardo_role(&settings.there);
        let b_control = settings.bucardo.control.with_user(
            &settings.bucardo.control.user,
            Some(bucardo_password.clone()),
        );
        let run_passfile = Passfile::write(
            &dir.join(format!("run-{}.pgpass", std::process::id())),
            &[
                &settings.here,
                &settings.there,
                &settings.bucardo.admin,
                &b_control,
                &b_here,
                &b_there,
            ],
            true,
        )?;
        let daemon_passfile = Passfile::write(
            &dir.join("bucardo.pgpass"),
            &[&b_control, &b_here, &b_there],
            false,
        )?;
        Ok(LiveExecutor {
            settings,
            run_passfile,
            daemon_passfile,
            bucardo_password,
            journal: std::sync::Mutex::new(journal),
        })
    }

    fn record_step(&self, kind: StepKind) -> Result<(), EngineError> {
        self.with_journal(|j| j.record_step(kind))
    }

    fn with_journal<T>(
        &self,
        f: impl FnOnce(&mut Journal) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let mut j = self
            .journal
            .lock()
            .map_err(|_| EngineError::Io("journal lock poisoned".into()))?;
        f(&mut j)
    }

    fn tables_done(&self) -> std::collections::BTreeSet<TableName> {
        self.journal
            .lock()
            .map(|j| j.data.tables_done.clone())
            .unwrap_or_default()
    }

    pub fn journal_path(&self) -> PathBuf {
        self.journal
            .lock()
            .map(|j| j.path().to_path_buf())
            .unwrap_or_default()
    }

    fn cli(&self) -> BucardoCli {
        BucardoCli::from_settings(&self.settings)
    }

    /// Swaps the plan's passfile placeholders for the real paths.
    fn real(&self, inv: &Invocation) -> Invocation {
        let mut inv = inv.clone();
        for (k, v) in inv.env.iter_mut() {
            if k == "PGPASSFILE" {
                if v == RUN_PASSFILE {
                    *v = self.run_passfile.path().display().to_string();
                } else if v == DAEMON_PASSFILE {
                    *v = self.daemon_passfile.path().display().to_string();
                }
            }
        }
        inv
    }

    async fn run_logged(
        &self,
        inv: &Invocation,
        events: &mpsc::Sender<RunEvent>,
        timeout: Duration,
    ) -> Result<process::Output, EngineError> {
        log(
            events,
            LogLevel::Info,
            format!("$ {}", plan::display_invocation(inv)),
        )
        .await;
        let out = process::run(&self.real(inv), timeout).await?;
        for line in out
            .stdout
            .lines()
            .chain(out.stderr.lines())
            .filter(|l| !l.trim().is_empty())
        {
            log(events, LogLevel::Info, format!("  {line}")).await;
        }
        Ok(out)
    }

    /// Runs a command and fails on a non-zero exit; a Bucardo command that needs the daemon
    /// goes through [`Self::daemon_command`].
    async fn run_ok(
        &self,
        inv: &Invocation,
        events: &mpsc::Sender<RunEvent>,
    ) -> Result<process::Output, EngineError> {
        let out = if bucardo::needs_daemon(&inv.argv) {
            self.daemon_command(inv, events, BUCARDO_TIMEOUT).await?
        } else {
            self.run_logged(inv, events, BUCARDO_TIMEOUT).await?
        };
        Self::checked(inv, out)
    }

    fn checked(inv: &Invocation, out: process::Output) -> Result<process::Output, EngineError> {
        if out.status != 0 {
            return Err(EngineError::Command {
                program: inv.program().rsplit('/').next().unwrap_or("").to_string(),
                status: format!("exit {}", out.status),
                stderr_tail: out.tail(),
            });
        }
        Ok(out)
    }

    async fn pipe(
        &self,
        a: &Invocation,
        b: &Invocation,
        events: &mpsc::Sender<RunEvent>,
    ) -> Result<process::Output, EngineError> {
        log(
            events,
            LogLevel::Info,
            format!(
                "$ {} | {}",
                plan::display_invocation(a),
                plan::display_invocation(b)
            ),
        )
        .await;
        let (_, out) = process::pipe(&self.real(a), &self.real(b), TOOL_TIMEOUT).await?;
        Ok(out)
    }

    async fn sql(
        &self,
        side: Side,
        target: &ConnSpec,
        sql: &str,
        secret: &SqlSecret,
        events: &mpsc::Sender<RunEvent>,
    ) -> Result<(), EngineError> {
        log(
            events,
            LogLevel::Info,
            format!("[{side}] {}", sql.replace('\n', " ")),
        )
        .await;
        let client = self.connect_as(side, target).await?;
        match secret {
            SqlSecret::None => client.batch_execute(sql).await,
            SqlSecret::Param => client
                .execute(
                    sql.replace(BUCARDO_PASS_VAR, "$1").as_str(),
                    &[&self.bucardo_password.expose()],
                )
                .await
                .map(|_| ()),
            SqlSecret::CreateRole { role } => {
                let exists = client
                    .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[role])
                    .await
                    .map_err(|e| EngineError::sql(side, "checking Bucardo's role", &e))?
                    .is_some();
                if exists {
                    log(
                        events,
                        LogLevel::Info,
                        format!("  role {role:?} exists already on {side}"),
                    )
                    .await;
                    return Ok(());
                }
                let verifier = postgres_protocol::password::scram_sha_256(
                    self.bucardo_password.expose().as_bytes(),
                );
                client
                    .batch_execute(&format!(
                        "CREATE ROLE {} SUPERUSER LOGIN PASSWORD {}",
                        quote_ident(role),
                        quote_literal(&verifier)
                    ))
                    .await
            }
        }
        .map_err(|e| EngineError::sql(side, "running the step's SQL", &e))
    }

    /// Connections for steps: the given spec with the password settings resolved for it.
    async fn connect_as(
        &self,
        side: Side,
        target: &ConnSpec,
    ) -> Result<tokio_postgres::Client, EngineError> {
        target.connect(side).await
    }

    fn control_as_bucardo(&self) -> ConnSpec {
        let c = &self.settings.bucardo.control;
        c.with_user(&c.user, Some(self.bucardo_password.clone()))
    }

    async fn step_commands(
        &self,
        step: &Step,
        events: &mpsc::Sender<RunEvent>,
    ) -> Result<(), EngineError> {
        for c in &step.commands {
            match c {
                Command::Run(inv) => {
                    self.run_ok(inv, events).await?;
                }
                Command::Pipe(a, b) => {
                    self.pipe(a, b, events).await?;
                }
                Command::Sql {
                    side,
                    target,
                    sql,
                    secret,
                } => {
                    let target = if *side == Side::Control && matches!(secret, SqlSecret::Param) {
                        self.control_as_bucardo()
                    } else {
                        target.clone()
                    };
                    self.sql(*side, &target, sql, secret, events).await?;
                }
                Command::Internal(_) => {}
            }
        }
        Ok(())
    }

    async fn copy_roles(
        &self,
        step: &Step,
        events: &mpsc::Sender<RunEvent>,
    ) -> Result<(), EngineError> {
        for c in &step.commands {
            if let Command::Pipe(a, b) = c {
                let out = self.pipe(a, b, events).await?;
                let errors: Vec<&str> = out
                    .stderr
                    .lines()
                    .filter(|l| l.contains("ERROR") && !l.contains("already exists"))
                    .collect();
                if !errors.is_empty() {
                    return Err(EngineError::Command {
                        program: "psql".into(),
                        status: "errors while copying roles".into(),
                        stderr_tail: errors.join(" | "),
                    });
                }
            }
        }
        Ok(())
    }

    /// The daemon may have gone since the plan was made (a reboot, a restart, a resumed run):
    /// wait for one that is coming up, and start it again only when it is really gone and
    /// belongs on this machine.
    async fn ensure_daemon(&self, events: &mpsc::Sender<RunEvent>) -> Result<(), EngineError> {
        let start = Step {
            id: 0,
            kind: StepKind::StartDaemon,
            title: "Start the Bucardo daemon".into(),
            why: String::new(),
            commands: vec![Command::Run(self.cli().invocation(
                &BucardoCmd::Start {
                    reason: "bucardo-bootstrap".into(),
                },
                Path::new(DAEMON_PASSFILE),
            ))],
            already_done: false,
        };
        self.start_daemon(&start, events).await
    }

    /// The daemon's state once it has settled: answering, or plainly not running. A live
    /// daemon that does not answer yet is waited for, and the wait is logged as it begins.
    async fn settle_daemon(&self, events: &mpsc::Sender<RunEvent>) -> Result<Daemon, EngineError> {
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

    fn daemon_log(&self) -> PathBuf {
        self.settings.bucardo.logdir.join("log.bucardo")
    }

    async fn start_daemon(
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
            d @ Daemon::Stale { .. } => {
                log(
                    events,
                    LogLevel::Warn,
                    format!("the Bucardo daemon is {}", d.describe()),
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
        let mut started = Ok(());
        for c in &step.commands {
            if let Command::Run(inv) = c {
                let out = self.run_logged(inv, events, BUCARDO_TIMEOUT).await?;
                started = Self::checked(inv, out).map(drop);
            }
        }
        if let Err(e) = started {
            // Another start (an operator, a restart) won the race: wait for that daemon instead.
            if !matches!(&e, EngineError::Command { stderr_tail, .. } if stderr_tail.contains("PID file"))
            {
                return Err(e);
            }
            log(
                events,
                LogLevel::Warn,
                "another Bucardo daemon is starting; waiting for it instead".into(),
            )
            .await;
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
    async fn daemon_command(
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

    async fn add_tables(
        &self,
        plan: &Plan,
        step: &Step,
        events: &mpsc::Sender<RunEvent>,
    ) -> Result<(), EngineError> {
        for c in &step.commands {
            if let Command::Run(inv) = c {
                let out = self.run_ok(inv, events).await?;
                if out.stdout.contains("Did not find matches") {
                    return Err(EngineError::Command {
                        program: "bucardo add table".into(),
                        status: "some tables were not found".into(),
                        stderr_tail: out.tail(),
                    });
                }
            }
        }
        let ctl = self.control_as_bucardo().connect(Side::Control).await?;
        let rows = ctl
            .query(
                "SELECT g.schemaname || '.' || g.tablename, coalesce(g.pkey, '') FROM bucardo.goat g JOIN bucardo.herdmap h ON h.goat = g.id WHERE h.herd = $1 AND g.reltype = 'table'",
                &[&self.settings.names.relgroup],
            )
            .await
            .map_err(|e| EngineError::sql(Side::Control, "reading the relgroup", &e))?;
        let registered: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        for t in &plan.tables {
            match registered.iter().find(|(n, _)| *n == t.name.raw()) {
                None => {
                    return Err(EngineError::Refused(format!(
                        "Bucardo did not register {} in relgroup {}",
                        t.name, self.settings.names.relgroup
                    )))
                }
                Some((_, pk)) if pk.is_empty() => {
                    return Err(EngineError::Refused(format!(
                        "Bucardo found no key for {}",
                        t.name
                    )))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// `add sync` installs triggers on every table of HERE, which waits for any transaction
    /// holding a conflicting lock, and makes every writer queue behind it. So the trigger
    /// installation runs under a `lock_timeout` (set on Bucardo's role in HERE's database for the
    /// duration), is retried a bounded number of times, and whoever blocks it is reported.
    async fn add_sync_lock_safe(
        &self,
        step: &Step,
        events: &mpsc::Sender<RunEvent>,
        cancel: &CancellationToken,
    ) -> Result<(), EngineError> {
        let s = &self.settings;
        let here = s.here.connect(Side::Here).await?;
        let role = quote_ident(&s.bucardo.user);
        let db = quote_ident(&s.here.dbname);
        here.batch_execute(&format!(
            "ALTER ROLE {role} IN DATABASE {db} SET lock_timeout = '{}ms'",
            LOCK_TIMEOUT.as_millis()
        ))
        .await
        .map_err(|e| EngineError::sql(Side::Here, "setting lock_timeout for Bucardo's role", &e))?;
        let mut result = Err(EngineError::Timeout("add sync never ran".into()));
        for attempt in 1..=LOCK_ATTEMPTS {
            let watch = watch_blockers(&here, &s.bucardo.user, events);
            let run = self.step_commands(step, events);
            tokio::pin!(run);
            result = tokio::select! {
                r = &mut run => r,
                () = watch => unreachable_watch(),
                _ = cancel.cancelled() => Err(EngineError::Aborted),
            };
            match &result {
                Err(EngineError::Command { stderr_tail, .. })
                    if (stderr_tail.contains("lock timeout")
                        || stderr_tail.contains("deadlock detected"))
                        && attempt < LOCK_ATTEMPTS =>
                {
                    log(events, LogLevel::Warn, format!("installing the triggers hit a lock timeout or a deadlock (attempt {attempt} of {LOCK_ATTEMPTS}); retrying")).await;
                    tokio::time::sleep(Duration::from_secs(2 * attempt as u64)).await;
                }
                _ => break,
            }
        }
        let reset = here
            .batch_execute(&format!(
                "ALTER ROLE {role} IN DATABASE {db} RESET lock_timeout"
            ))
            .await
            .map_err(|e| {
                EngineError::sql(Side::Here, "resetting lock_timeout for Bucardo's role", &e)
            });
        match (&result, reset) {
            (Err(EngineError::Command { stderr_tail, .. }), _) if stderr_tail.contains("lock timeout") => Err(EngineError::Timeout(format!(
                "Bucardo's triggers could not be installed on HERE: a lock was held for over {} s on every one of {LOCK_ATTEMPTS} attempts; see the blockers above, end them or retry at a quieter time",
                LOCK_TIMEOUT.as_secs()
            ))),
            (_, Err(e)) if result.is_ok() => Err(e),
            _ => result,
        }
    }

    async fn check_triggers(
        &self,
        plan: &Plan,
        events: &mpsc::Sender<RunEvent>,
    ) -> Result<(), EngineError> {
        for (side, spec) in [
            (Side::Here, &self.settings.here),
            (Side::There, &self.settings.there),
        ] {
            let c = spec.connect(side).await?;
            let names: Vec<String> = plan.tables.iter().map(|t| t.name.sql()).collect();
            let n: i64 = c
                .query_one(
                    "SELECT count(DISTINCT tgrelid) FROM pg_trigger WHERE tgname = 'bucardo_delta' AND tgrelid = ANY(SELECT unnest($1::text[])::regclass)",
                    &[&names],
                )
                .await
                .map_err(|e| EngineError::sql(side, "checking Bucardo's triggers", &e))?
                .get(0);
            if n as usize != plan.tables.len() {
                return Err(EngineError::Refused(format!(
                    "{side}: Bucardo's delta trigger is on {n} of {} tables",
                    plan.tables.len()
                )));
            }
        }
        log(
            events,
            LogLevel::Info,
            "Bucardo's triggers are in place on both sides: every change from now on is a delta"
                .into(),
        )
        .await;
        Ok(())
    }

    async fn assert_no_sync_run(&self, when: &str) -> Result<(), EngineError> {
        let ctl = self.control_as_bucardo().connect(Side::Control).await?;
        let runs = bucardo::sync_runs(&ctl, &self.settings.names.sync).await?;
        if runs.runs > 0 {
            return Err(EngineError::Refused(format!(
                "a run of sync {} happened {when} the data copy ({}); THERE may hold rows from it. Run `bucardo-bootstrap cleanup` and start again",
                self.settings.names.sync,
                runs.last_status.unwrap_or_default()
            )));
        }
        Ok(())
    }

    async fn copy_data(
        &self,
        plan: &Plan,
        events: &mpsc::Sender<RunEvent>,
        cancel: &CancellationToken,
    ) -> Result<(), EngineError> {
        self.assert_no_sync_run("before").await?;
        let s = &self.settings;
        let done = self.tables_done();
        let todo: Vec<TableInfo> = plan
            .tables
            .iter()
            .filter(|t| !done.contains(&t.name))
            .cloned()
            .collect();
        let partial: Vec<RangesDone> = self.with_journal(|j| {
            Ok(todo
                .iter()
                .filter_map(|t| j.ranges_for(&t.name).cloned())
                .collect())
        })?;
        if !done.is_empty() || partial.iter().any(|r| !r.done.is_empty()) {
            let ranges: usize = partial.iter().map(|r| r.done.len()).sum();
            log(
                events,
                LogLevel::Info,
                format!(
                    "resuming: {} tables and {ranges} key ranges were copied by an earlier run; {} tables to go",
                    done.len(),
                    todo.len()
                ),
            )
            .await;
        }
        let there = s.there.connect(Side::There).await?;
        for t in &todo {
            if partial
                .iter()
                .any(|r| r.table == t.name && !r.done.is_empty())
            {
                // Its committed ranges stay; each missing range clears its own span first.
                continue;
            }
            let has_rows = has_rows(&there, Side::There, &t.name).await?;
            if has_rows {
                // Rows of an interrupted copy: empty the table and copy it again under the new
                // snapshot. Replica mode keeps Bucardo's truncate trigger from logging this.
                log(
                    events,
                    LogLevel::Warn,
                    format!(
                        "{} holds rows from an interrupted copy: emptying it on THERE",
                        t.name
                    ),
                )
                .await;
                there
                    .batch_execute(&format!("SET session_replication_role = replica; TRUNCATE ONLY {}; RESET session_replication_role", t.name.sql()))
                    .await
                    .map_err(|e| EngineError::sql(Side::There, format!("emptying {}", t.name), &e))?;
            }
        }
        let snapshot = Snapshot::export(&s.here).await?;
        log(
            events,
            LogLevel::Info,
            format!(
                "snapshot {} exported on HERE; copying {} tables with {} workers",
                snapshot.id,
                todo.len(),
                s.jobs
            ),
        )
        .await;
        // Every table, and every key range of a split one, is journaled as soon as it committed
        // on THERE.
        let (tx, mut rx) = mpsc::channel::<RunEvent>(1024);
        let forward = events.clone();
        let journal_errors = std::sync::Arc::new(std::sync::Mutex::new(None::<EngineError>));
        let je = journal_errors.clone();
        let forwarder = async {
            while let Some(ev) = rx.recv().await {
                let recorded = match &ev {
                    RunEvent::Copy(CopyEvent::TableSplit { table, split }) => {
                        self.with_journal(|j| j.record_split(table, split))
                    }
                    RunEvent::Copy(CopyEvent::RangeDone { table, part }) => {
                        self.with_journal(|j| j.record_range(table, *part))
                    }
                    RunEvent::Copy(CopyEvent::TableFinished { table, .. }) => {
                        self.with_journal(|j| j.record_table(table))
                    }
                    _ => Ok(()),
                };
                if let Err(e) = recorded {
                    if let Ok(mut slot) = je.lock() {
                        slot.get_or_insert(e);
                    }
                }
                let _ = forward.send(ev).await;
            }
        };
        let copy = async {
            let r = copy::copy_tables(
                &s.here, &s.there, &snapshot, &todo, &partial, s.jobs, &tx, cancel,
            )
            .await;
            drop(tx);
            r
        };
        let (copied, ()) = tokio::join!(copy, forwarder);
        let copied = copied?;
        if let Some(e) = journal_errors.lock().ok().and_then(|mut g| g.take()) {
            return Err(e);
        }
        let seqs: Vec<TableName> = plan::sequence_uses(&plan.tables)
            .into_iter()
            .map(|(q, _, _)| q)
            .collect();
        copy::copy_sequence_values(&snapshot, &there, &seqs).await?;
        snapshot.release().await;
        let rows: u64 = copied.iter().map(|c| c.rows).sum();
        let bytes: u64 = copied.iter().map(|c| c.bytes).sum();
        log(
            events,
            LogLevel::Info,
            format!(
                "copied {rows} rows ({}) in {} tables, and {} sequence values",
                plan::human_bytes(bytes as i64),
                copied.len(),
                seqs.len()
            ),
        )
        .await;
        self.assert_no_sync_run("during").await
    }

    async fn sequences(
        &self,
        plan: &Plan,
        events: &mpsc::Sender<RunEvent>,
    ) -> Result<(), EngineError> {
        let s = &self.settings;
        let here = s.here.connect(Side::Here).await?;
        let there = s.there.connect(Side::There).await?;
        // ALTER SEQUENCE waits for nothing long, but no statement on HERE may wait without bound.
        let bounded = format!("SET lock_timeout = '{}ms'", LOCK_TIMEOUT.as_millis());
        for (side, c) in [(Side::Here, &here), (Side::There, &there)] {
            c.batch_execute(&bounded)
                .await
                .map_err(|e| EngineError::sql(side, "setting lock_timeout", &e))?;
        }
        for (q, t, col) in plan::sequence_uses(&plan.tables) {
            let sql = plan::interleave_here_sql(&q, &t, &col);
            let (alter, select) = sql.split_once('\n').unwrap_or((&sql, ""));
            here.batch_execute(alter)
                .await
                .map_err(|e| EngineError::sql(Side::Here, format!("altering {q}"), &e))?;
            let n: i64 = here
                .query_one(select, &[])
                .await
                .map_err(|e| EngineError::sql(Side::Here, format!("restarting {q}"), &e))?
                .get(0);
            let sql = plan::interleave_there_sql(&q, "$1::bigint + 1");
            let (alter, select) = sql.split_once('\n').unwrap_or((&sql, ""));
            there
                .batch_execute(alter)
                .await
                .map_err(|e| EngineError::sql(Side::There, format!("altering {q}"), &e))?;
            there
                .query_one(select, &[&n])
                .await
                .map_err(|e| EngineError::sql(Side::There, format!("restarting {q}"), &e))?;
            log(
                events,
                LogLevel::Info,
                format!(
                    "{q}: HERE hands out {n}, {}, ...; THERE {}, {}, ...",
                    n + 2,
                    n + 1,
                    n + 3
                ),
            )
            .await;
        }
        Ok(())
    }

    async fn drain(
        &self,
        step: &Step,
        events: &mpsc::Sender<RunEvent>,
        cancel: &CancellationToken,
    ) -> Result<(), EngineError> {
        let s = &self.settings;
        let ctl = self.control_as_bucardo().connect(Side::Control).await?;
        let here = s.here.connect(Side::Here).await?;
        let there = s.there.connect(Side::There).await?;
        // Everything logged before this moment is an interim delta that must be replayed.
        let here_t0 = bucardo::server_now(&here, Side::Here).await?;
        let there_t0 = bucardo::server_now(&there, Side::There).await?;
        for c in &step.commands {
            if let Command::Run(inv) = c {
                let out = self
                    .daemon_command(inv, events, s.kick_timeout() + Duration::from_secs(30))
                    .await?;
                match out.status {
                    0 => {}
                    1 => {
                        log(
                            events,
                            LogLevel::Warn,
                            "the kick timed out; still waiting for the deltas".into(),
                        )
                        .await
                    }
                    _ => {
                        let runs = bucardo::sync_runs(&ctl, &s.names.sync).await?;
                        return Err(EngineError::Refused(format!(
                            "the sync failed: {}",
                            runs.last_bad_status.unwrap_or_else(|| out.tail())
                        )));
                    }
                }
            }
        }
        let deadline = tokio::time::Instant::now() + s.kick_timeout();
        let mut last_kick = tokio::time::Instant::now();
        loop {
            let runs = bucardo::sync_runs(&ctl, &s.names.sync).await?;
            let pending = interim_pending(s, (&here, &here_t0), (&there, &there_t0)).await?;
            // A kick that reached a daemon which restarted before the run began is lost: kick
            // again now and then while deltas wait and no run is under way.
            if !pending.is_empty() && !runs.running && last_kick.elapsed() >= REKICK_INTERVAL {
                let nudge = self.real(&self.cli().invocation(
                    &BucardoCmd::Nudge {
                        sync: s.names.sync.clone(),
                    },
                    Path::new(DAEMON_PASSFILE),
                ));
                self.daemon_command(&nudge, events, BUCARDO_TIMEOUT).await?;
                last_kick = tokio::time::Instant::now();
            }
            if pending.is_empty() && runs.last_good_ended.is_some() {
                log(
                    events,
                    LogLevel::Info,
                    format!(
                        "the interim deltas are replayed (last good run ended {})",
                        runs.last_good_ended.unwrap_or_default()
                    ),
                )
                .await;
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let list: Vec<String> = pending.iter().map(|(t, n)| format!("{t} ({n})")).collect();
                return Err(EngineError::Timeout(format!(
                    "interim deltas still pending after {} s on: {} (last run: {})",
                    s.kick_timeout_s,
                    list.join(", "),
                    runs.last_bad_status
                        .or(runs.last_status)
                        .unwrap_or_else(|| "none".into())
                )));
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
                _ = cancel.cancelled() => return Err(EngineError::Aborted),
            }
        }
    }

    async fn verify(
        &self,
        plan: &Plan,
        events: &mpsc::Sender<RunEvent>,
        cancel: &CancellationToken,
    ) -> Result<(), EngineError> {
        let verdicts = verify_tables(
            &self.settings,
            &plan.tables,
            Some(&self.cli_kick()),
            events,
            cancel,
        )
        .await?;
        let bad: Vec<String> = verdicts
            .iter()
            .filter(|v| !v.matches)
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

    fn cli_kick(&self) -> Invocation {
        let inv = self.cli().invocation(
            &BucardoCmd::Kick {
                sync: self.settings.names.sync.clone(),
                timeout_s: 30,
            },
            self.daemon_passfile.path(),
        );
        self.real(&inv)
    }
}

/// How long the trigger installation waits for a lock on HERE before it gives up and retries.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// How many times the trigger installation is tried.
pub const LOCK_ATTEMPTS: u32 = 5;
/// How often the sessions blocking Bucardo on HERE are reported.
const BLOCKER_POLL: Duration = Duration::from_secs(2);

fn unreachable_watch() -> Result<(), EngineError> {
    Err(EngineError::Io("the lock watcher stopped".into()))
}

/// Reports, every [`BLOCKER_POLL`], the sessions that block `role`'s sessions on this server
/// (pid, user, transaction age, query). Never returns.
async fn watch_blockers(c: &tokio_postgres::Client, role: &str, events: &mpsc::Sender<RunEvent>) {
    const SQL: &str = "SELECT b.pid, b.usename, coalesce(extract(epoch FROM now() - b.xact_start)::int, 0), left(regexp_replace(b.query, '\\s+', ' ', 'g'), 120)
                         FROM pg_stat_activity w
                         CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS bp(pid)
                         JOIN pg_stat_activity b ON b.pid = bp.pid
                        WHERE w.usename = $1 AND w.wait_event_type = 'Lock'";
    loop {
        tokio::time::sleep(BLOCKER_POLL).await;
        if let Ok(rows) = c.query(SQL, &[&role]).await {
            for r in rows {
                let (pid, user, age, query): (i32, Option<String>, i32, Option<String>) =
                    (r.get(0), r.get(1), r.get(2), r.get(3));
                log(
                    events,
                    LogLevel::Warn,
                    format!("waiting for a lock on HERE held by pid {pid} ({}, transaction open {age} s): {}", user.unwrap_or_default(), query.unwrap_or_default()),
                )
                .await;
            }
        }
    }
}

/// How many times a differing table is compared again (after a kick) before it is reported.
pub const VERIFY_ATTEMPTS: usize = 6;

/// Compares every table while replication may be live. With Bucardo's delta tables present
/// (after a bootstrap): everything logged before the start is replayed first (kick, then wait),
/// then each table is compared in two snapshots, leaving out only the keys changed since the
/// start on either side (read after the snapshots, so no change can slip between them). Every
/// other row must be identical. A mismatch is compared again after a kick, and reported as
/// "still changing" when the figures moved between attempts.
pub async fn verify_tables(
    s: &Settings,
    tables: &[TableInfo],
    kick: Option<&Invocation>,
    events: &mpsc::Sender<RunEvent>,
    cancel: &CancellationToken,
) -> Result<Vec<TableVerdict>, EngineError> {
    verify_tables_mode(
        s,
        tables,
        kick,
        verify::VerifyMode::Checksum,
        events,
        cancel,
    )
    .await
    .map(|(v, _)| v)
}

/// [`verify_tables`] with a mode; also returns the keys left out per table (in flight).
pub async fn verify_tables_mode(
    s: &Settings,
    tables: &[TableInfo],
    kick: Option<&Invocation>,
    mode: verify::VerifyMode,
    events: &mpsc::Sender<RunEvent>,
    cancel: &CancellationToken,
) -> Result<(Vec<TableVerdict>, Vec<Vec<String>>), EngineError> {
    let here = s.here.connect(Side::Here).await?;
    let there = s.there.connect(Side::There).await?;
    let here_keys = s.here.connect(Side::Here).await?;
    let there_keys = s.there.connect(Side::There).await?;
    verify::prepare_session(&here, Side::Here).await?;
    verify::prepare_session(&there, Side::There).await?;
    let live = verify::has_deltas(&here, Side::Here).await?
        && verify::has_deltas(&there, Side::There).await?;
    let here_t0 = bucardo::server_now(&here, Side::Here).await?;
    let there_t0 = bucardo::server_now(&there, Side::There).await?;
    if live {
        if let Some(k) = kick {
            let _ = process::run(k, Duration::from_secs(60)).await;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            loop {
                let pending =
                    interim_pending(s, (&here_keys, &here_t0), (&there_keys, &there_t0)).await?;
                if pending.is_empty() || tokio::time::Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        }
    }
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for t in tables {
        let mut seen = Vec::new();
        let mut last_skip = Vec::new();
        let mut verdict = None;
        for attempt in 0..VERIFY_ATTEMPTS {
            if cancel.is_cancelled() {
                return Err(EngineError::Aborted);
            }
            let begin = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT 1";
            let (r1, r2) = tokio::join!(here.batch_execute(begin), there.batch_execute(begin));
            r1.map_err(|e| EngineError::sql(Side::Here, "opening the verify snapshot", &e))?;
            r2.map_err(|e| EngineError::sql(Side::There, "opening the verify snapshot", &e))?;
            let mut skip = Vec::new();
            if live && !t.key_columns.is_empty() {
                skip.extend(verify::recent_keys(&here_keys, Side::Here, t, &here_t0).await?);
                skip.extend(verify::recent_keys(&there_keys, Side::There, t, &there_t0).await?);
                skip.sort();
                skip.dedup();
            }
            let sums = tokio::try_join!(
                verify::table_sum_except(&here, Side::Here, t, &skip),
                verify::table_sum_except(&there, Side::There, t, &skip)
            );
            let _ = tokio::join!(here.batch_execute("COMMIT"), there.batch_execute("COMMIT"));
            let (a, b) = sums?;
            let matches = if mode == verify::VerifyMode::Fast {
                a.rows == b.rows
            } else {
                a == b
            };
            last_skip = skip.clone();
            seen.push((a.clone(), b.clone()));
            if matches || attempt + 1 == VERIFY_ATTEMPTS || kick.is_none() {
                let changing = !matches && seen.windows(2).any(|w| w[0] != w[1]);
                verdict = Some(TableVerdict {
                    table: t.name.clone(),
                    here_rows: a.rows,
                    there_rows: b.rows,
                    matches,
                    changing,
                    in_flight: skip.len() as i64,
                });
                break;
            }
            if let Some(k) = kick {
                let _ = process::run(k, Duration::from_secs(40)).await;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        let v = verdict.expect("at least one attempt");
        let _ = events.send(RunEvent::Verified(v.clone())).await;
        out.push(v);
        skipped.push(last_skip);
    }
    Ok((out, skipped))
}

/// What `verify` prints, and how many tables differ.
pub struct VerifyReport {
    pub text: String,
    pub differences: usize,
}

/// The `verify` command: the chosen tier over every table, and with `Deep`, each differing table
/// narrowed down to key buckets and then rows (at most [`DEEP_ROWS_SHOWN`] per table).
pub async fn verify_command(
    s: &Settings,
    tables: &[TableInfo],
    mode: verify::VerifyMode,
    events: &mpsc::Sender<RunEvent>,
    cancel: &CancellationToken,
) -> Result<VerifyReport, EngineError> {
    let kick = verify_kick(s);
    let (verdicts, skipped) =
        verify_tables_mode(s, tables, kick.as_ref(), mode, events, cancel).await?;
    let mut text = String::new();
    let mut differences = 0;
    for ((v, t), skip) in verdicts.iter().zip(tables).zip(&skipped) {
        let state = v.word();
        if !v.matches {
            differences += 1;
        }
        let flight = if v.in_flight > 0 {
            format!("\t{} rows in flight left out", v.in_flight)
        } else {
            String::new()
        };
        text.push_str(&format!(
            "{}\t{state}\tHERE {} rows\tTHERE {} rows{flight}\n",
            v.table, v.here_rows, v.there_rows
        ));
        if mode == verify::VerifyMode::Deep && !v.matches && !t.key_columns.is_empty() {
            let here = s.here.connect(Side::Here).await?;
            let there = s.there.connect(Side::There).await?;
            let (hb, tb) = tokio::try_join!(
                verify::bucket_sums(&here, Side::Here, t, skip),
                verify::bucket_sums(&there, Side::There, t, skip)
            )?;
            let hm: std::collections::BTreeMap<i32, String> = hb.into_iter().collect();
            let tm: std::collections::BTreeMap<i32, String> = tb.into_iter().collect();
            let buckets: Vec<i32> = hm
                .keys()
                .chain(tm.keys())
                .copied()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .filter(|b| hm.get(b) != tm.get(b))
                .collect();
            text.push_str(&format!(
                "  {} of {} key buckets differ\n",
                buckets.len(),
                verify::DEEP_BUCKETS
            ));
            let mut shown = 0;
            for b in buckets {
                let (hr, tr) = tokio::try_join!(
                    verify::bucket_rows(&here, Side::Here, t, b, skip),
                    verify::bucket_rows(&there, Side::There, t, b, skip)
                )?;
                for d in verify::diff_rows(&hr, &tr) {
                    if shown < DEEP_ROWS_SHOWN {
                        text.push_str(&format!("  key {}: {}\n", d.key, d.what));
                    }
                    shown += 1;
                }
            }
            if shown > DEEP_ROWS_SHOWN {
                text.push_str(&format!(
                    "  ... and {} more rows\n",
                    shown - DEEP_ROWS_SHOWN
                ));
            }
        }
    }
    Ok(VerifyReport { text, differences })
}

/// At most this many differing rows are printed per table by `verify --deep`.
pub const DEEP_ROWS_SHOWN: usize = 20;

/// A kick for re-checks, when the sync exists (otherwise differences are final at once).
fn verify_kick(s: &Settings) -> Option<Invocation> {
    let state = s.state_dir();
    let pf = state.join("bucardo.pgpass");
    if !pf.exists() {
        return None;
    }
    let cli = BucardoCli::from_settings(s);
    Some(cli.invocation(
        &BucardoCmd::Kick {
            sync: s.names.sync.clone(),
            timeout_s: 30,
        },
        &pf,
    ))
}

impl StepExecutor for LiveExecutor {
    async fn execute(
        &self,
        plan: &Plan,
        step: &Step,
        events: &mpsc::Sender<RunEvent>,
        cancel: &CancellationToken,
    ) -> Result<(), EngineError> {
        self.execute_step(plan, step, events, cancel).await?;
        self.record_step(step.kind)
    }
}

impl LiveExecutor {
    async fn execute_step(
        &self,
        plan: &Plan,
        step: &Step,
        events: &mpsc::Sender<RunEvent>,
        cancel: &CancellationToken,
    ) -> Result<(), EngineError> {
        match step.kind {
            StepKind::CopyRoles => self.copy_roles(step, events).await,
            StepKind::StartDaemon => self.start_daemon(step, events).await,
            StepKind::AddDatabases | StepKind::AddDbgroup => {
                self.add_objects(plan, step, events).await
            }
            StepKind::AddTables => {
                if self.existing_matches(plan, step, events).await? {
                    return Ok(());
                }
                self.add_tables(plan, step, events).await
            }
            StepKind::AddSync => {
                if !self.existing_matches(plan, step, events).await? {
                    self.add_sync_lock_safe(step, events, cancel).await?;
                }
                self.check_triggers(plan, events).await
            }
            StepKind::CopyData => self.copy_data(plan, events, cancel).await,
            StepKind::Sequences => self.sequences(plan, events).await,
            StepKind::Drain => self.drain(step, events, cancel).await,
            StepKind::Verify => self.verify(plan, events, cancel).await,
            StepKind::InstallBucardo => {
                if bucardo::control_installed(&self.control_as_bucardo())
                    .await
                    .unwrap_or(false)
                {
                    log(
                        events,
                        LogLevel::Info,
                        "Bucardo's control database is installed already".into(),
                    )
                    .await;
                    return Ok(());
                }
                self.step_commands(step, events).await?;
                if !bucardo::control_installed(&self.control_as_bucardo()).await? {
                    return Err(EngineError::Refused(
                        "bucardo install finished but the control database has no Bucardo schema"
                            .into(),
                    ));
                }
                Ok(())
            }
            StepKind::Enable => {
                self.ensure_daemon(events).await?;
                // autokick=1 makes Bucardo create its kick triggers on every table of HERE.
                self.add_sync_lock_safe(step, events, cancel).await
            }
            StepKind::CreateDatabase | StepKind::CopySchema | StepKind::BucardoRole => {
                self.step_commands(step, events).await
            }
        }
    }

    /// Whether the object a step creates exists already with the definition the plan wants (a
    /// resumed run); an object of that name with another definition is refused.
    async fn existing_matches(
        &self,
        plan: &Plan,
        step: &Step,
        events: &mpsc::Sender<RunEvent>,
    ) -> Result<bool, EngineError> {
        let n = &self.settings.names;
        let ctl = self.control_as_bucardo().connect(Side::Control).await?;
        let q = |e: tokio_postgres::Error| {
            EngineError::sql(Side::Control, "reading Bucardo's objects", &e)
        };
        match step.kind {
            StepKind::AddTables => {
                let rows = ctl
                    .query("SELECT g.schemaname || '.' || g.tablename, g.db FROM bucardo.herdmap h JOIN bucardo.goat g ON g.id = h.goat WHERE h.herd = $1", &[&n.relgroup])
                    .await
                    .map_err(q)?;
                if rows.is_empty() {
                    return Ok(false);
                }
                let mut have: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
                have.sort();
                let mut want: Vec<String> = plan.tables.iter().map(|t| t.name.raw()).collect();
                want.sort();
                if have != want || rows.iter().any(|r| r.get::<_, String>(1) != n.here_db) {
                    return Err(EngineError::Refused(format!(
                        "relgroup {} exists with other tables ({}); remove it (`bucardo remove relgroup {}`) or choose another --relgroup",
                        n.relgroup,
                        have.join(", "),
                        n.relgroup
                    )));
                }
            }
            StepKind::AddSync => {
                let Some(r) = ctl
                    .query_opt(
                        "SELECT herd, dbs FROM bucardo.sync WHERE name = $1",
                        &[&n.sync],
                    )
                    .await
                    .map_err(q)?
                else {
                    return Ok(false);
                };
                let (herd, dbs): (Option<String>, Option<String>) = (r.get(0), r.get(1));
                if herd.as_deref() != Some(n.relgroup.as_str())
                    || dbs.as_deref() != Some(n.dbgroup.as_str())
                {
                    return Err(EngineError::Refused(format!(
                        "sync {} exists with relgroup {:?} and dbgroup {:?}; remove it (`bucardo remove sync {}`) or choose another --sync",
                        n.sync, herd, dbs, n.sync
                    )));
                }
            }
            _ => return Ok(false),
        }
        log(
            events,
            LogLevel::Info,
            format!(
                "{}: already in Bucardo with the same definition (earlier run)",
                step.title
            ),
        )
        .await;
        Ok(true)
    }

    /// `add db` and `add dbgroup`, skipping what exists with the same definition.
    async fn add_objects(
        &self,
        _plan: &Plan,
        step: &Step,
        events: &mpsc::Sender<RunEvent>,
    ) -> Result<(), EngineError> {
        let s = &self.settings;
        let ctl = self.control_as_bucardo().connect(Side::Control).await?;
        let q = |e: tokio_postgres::Error| {
            EngineError::sql(Side::Control, "reading Bucardo's objects", &e)
        };
        for c in &step.commands {
            match c {
                Command::Run(inv) => {
                    let words: Vec<&str> = inv.argv.iter().map(String::as_str).collect();
                    let pos = words.iter().position(|w| *w == "add").unwrap_or(0);
                    let (noun, name) = (
                        words.get(pos + 1).copied().unwrap_or(""),
                        words.get(pos + 2).copied().unwrap_or(""),
                    );
                    let exists = match noun {
                        "db" => {
                            let spec = if name == s.names.here_db {
                                &s.here
                            } else {
                                &s.there
                            };
                            match ctl.query_opt("SELECT dbname, dbhost, dbport, dbuser FROM bucardo.db WHERE name = $1", &[&name]).await.map_err(q)? {
                                None => false,
                                Some(r) => {
                                    let have: (Option<String>, Option<String>, Option<String>, Option<String>) = (r.get(0), r.get(1), r.get(2), r.get(3));
                                    let want = (Some(spec.dbname.clone()), Some(spec.host.clone()), Some(spec.port.to_string()), Some(s.bucardo.user.clone()));
                                    if have != want {
                                        return Err(EngineError::Refused(format!(
                                            "Bucardo database {name} exists for {}@{}:{}/{}; remove it (`bucardo remove db {name} --force`) or set HERE/THERE to other names",
                                            have.3.unwrap_or_default(), have.1.unwrap_or_default(), have.2.unwrap_or_default(), have.0.unwrap_or_default()
                                        )));
                                    }
                                    true
                                }
                            }
                        }
                        "dbgroup" => {
                            let rows = ctl.query("SELECT db, role FROM bucardo.dbmap WHERE dbgroup = $1 ORDER BY db", &[&name]).await.map_err(q)?;
                            if rows.is_empty() {
                                false
                            } else {
                                let mut have: Vec<String> = rows
                                    .iter()
                                    .map(|r| {
                                        format!(
                                            "{}:{}",
                                            r.get::<_, String>(0),
                                            r.get::<_, String>(1)
                                        )
                                    })
                                    .collect();
                                have.sort();
                                let mut want = vec![
                                    format!("{}:source", s.names.here_db),
                                    format!("{}:source", s.names.there_db),
                                ];
                                want.sort();
                                if have != want {
                                    return Err(EngineError::Refused(format!(
                                        "dbgroup {name} exists as {}; remove it (`bucardo remove dbgroup {name}`) or choose another --dbgroup",
                                        have.join(" ")
                                    )));
                                }
                                true
                            }
                        }
                        _ => false,
                    };
                    if exists {
                        log(events, LogLevel::Info, format!("{noun} {name} is already in Bucardo with the same definition (earlier run)")).await;
                    } else {
                        self.run_ok(inv, events).await?;
                    }
                }
                Command::Sql {
                    side, sql, secret, ..
                } => {
                    self.sql(*side, &self.control_as_bucardo(), sql, secret, events)
                        .await?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The chosen tables with their catalog facts, and the ones `--tables all` left out (with why).
pub async fn resolve_tables(
    s: &Settings,
    here: &tokio_postgres::Client,
) -> Result<(Vec<TableInfo>, Vec<(TableName, String)>), EngineError> {
    match &s.tables {
        TableSelection::All => {
            let all = catalog::list_tables(here, Side::Here, None).await?;
            let mut chosen = Vec::new();
            let mut excluded = Vec::new();
            for t in all {
                match t.eligibility() {
                    Ok(()) => chosen.push(t),
                    Err(why) => excluded.push((t.name.clone(), why)),
                }
            }
            if chosen.is_empty() {
                return Err(EngineError::Refused(
                    "HERE has no table that Bucardo can replicate".into(),
                ));
            }
            Ok((chosen, excluded))
        }
        TableSelection::List(names) => {
            let found = catalog::list_tables(here, Side::Here, Some(names)).await?;
            let mut problems = Vec::new();
            for n in names {
                match found.iter().find(|t| &t.name == n) {
                    None => problems.push(format!("{n} does not exist on HERE")),
                    Some(t) => {
                        if let Err(why) = t.eligibility() {
                            problems.push(format!("{n}: {why}"));
                        }
                    }
                }
            }
            if !problems.is_empty() {
                return Err(EngineError::Refused(problems.join("; ")));
            }
            Ok((found, vec![]))
        }
    }
}

/// Probes the servers for what the plan needs to know, and refuses when THERE holds rows in a
/// chosen table. Changes nothing anywhere.
pub async fn probe(
    s: &Settings,
    tables: &[TableInfo],
    resuming: bool,
) -> Result<Facts, EngineError> {
    let mut f = Facts::default();
    let here = s.here.connect(Side::Here).await?;
    let r = here
        .query_one(
            "SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database WHERE datname = current_database()",
            &[],
        )
        .await
        .map_err(|e| EngineError::sql(Side::Here, "reading the database's encoding", &e))?;
    f.here_db_encoding = r.get(0);
    f.here_db_collate = r.get(1);
    f.here_db_ctype = r.get(2);
    let role_missing = |c: tokio_postgres::Client, side: Side, role: String| async move {
        c.query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
            .await
            .map(|r| r.is_none())
            .map_err(|e| EngineError::sql(side, "looking for Bucardo's role", &e))
    };
    f.bucardo_role_missing_here = role_missing(here, Side::Here, s.bucardo.user.clone()).await?;
    let there_admin = s.there.with_db("postgres");
    let ta = there_admin.connect(Side::There).await?;
    f.there_db_exists = ta
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[&s.there.dbname],
        )
        .await
        .map_err(|e| EngineError::sql(Side::There, "looking for the database", &e))?
        .is_some();
    f.bucardo_role_missing_there = role_missing(ta, Side::There, s.bucardo.user.clone()).await?;
    if f.there_db_exists {
        let there = s.there.connect(Side::There).await?;
        let existing = catalog::list_tables(
            &there,
            Side::There,
            Some(&tables.iter().map(|t| t.name.clone()).collect::<Vec<_>>()),
        )
        .await?;
        let mut nonempty = Vec::new();
        for t in &existing {
            let has_rows = has_rows(&there, Side::There, &t.name).await?;
            if has_rows {
                nonempty.push(t.name.to_string());
            }
        }
        if !nonempty.is_empty() && !resuming {
            return Err(EngineError::Refused(format!(
                "THERE already holds rows in {}; the bootstrap only fills empty tables. Empty them (TRUNCATE) or choose another THERE database",
                nonempty.join(", ")
            )));
        }
        if !existing.is_empty() && existing.len() < tables.len() {
            return Err(EngineError::Refused(format!(
                "THERE has {} of the {} chosen tables already; drop them or create the rest by hand",
                existing.len(),
                tables.len()
            )));
        }
        f.there_schema_present = existing.len() == tables.len();
    }
    let admin = s.bucardo.admin.connect(Side::Control).await?;
    f.bucardo_role_missing_control =
        role_missing(admin, Side::Control, s.bucardo.control.user.clone()).await?;
    let control = s
        .bucardo
        .control
        .with_user(&s.bucardo.control.user, s.bucardo.password.clone());
    f.control_installed = if f.bucardo_role_missing_control {
        false
    } else {
        bucardo::control_installed(&control).await?
    };
    // A daemon that is coming up needs no start step: the steps that need it wait for it.
    f.daemon_running = f.control_installed && {
        let d = daemon::probe(&control, &s.bucardo.piddir, PING_WAIT).await?;
        d.answers() || d.coming_up()
    };
    if f.control_installed {
        let ctl = control.connect(Side::Control).await?;
        let taken = bucardo::existing_names(&ctl, s).await?;
        if !taken.is_empty() && !resuming {
            let list: Vec<String> = taken.iter().map(|(k, n)| format!("{k} {n}")).collect();
            return Err(EngineError::Refused(format!(
                "Bucardo already has {}; pick other names (--sync, --relgroup, --dbgroup, HERE/THERE) or remove them (`bucardo-bootstrap cleanup`)",
                list.join(", ")
            )));
        }
    }
    Ok(f)
}

/// Deltas logged before each side's `t0` (that server's clock) that are not replicated yet, on
/// HERE and THERE together: what the drain and the verification wait for.
async fn interim_pending(
    s: &Settings,
    here: (&tokio_postgres::Client, &str),
    there: (&tokio_postgres::Client, &str),
) -> Result<Vec<(String, i64)>, EngineError> {
    let (names, group) = (&s.names.sync, &s.names.dbgroup);
    let mut pending = bucardo::pending_before(here.0, Side::Here, names, group, here.1).await?;
    pending.extend(bucardo::pending_before(there.0, Side::There, names, group, there.1).await?);
    Ok(pending)
}

/// Whether a table holds any row.
async fn has_rows(
    c: &tokio_postgres::Client,
    side: Side,
    t: &TableName,
) -> Result<bool, EngineError> {
    c.query_one(
        format!("SELECT EXISTS (SELECT 1 FROM ONLY {})", t.sql()).as_str(),
        &[],
    )
    .await
    .map(|r| r.get(0))
    .map_err(|e| EngineError::sql(side, format!("looking into {t}"), &e))
}

/// Whether an earlier run of this plan left records in its journal (a rerun resumes).
pub async fn resuming(s: &Settings) -> Result<bool, EngineError> {
    let here = s.here.connect(Side::Here).await?;
    let (tables, _) = resolve_tables(s, &here).await?;
    Ok(!Journal::open(&s.state_dir(), &plan::fingerprint(s, &tables))?.is_empty())
}

/// Prepares everything for `run`/`plan`: resolves tables, opens the journal (discarding it with
/// `restart`), probes, builds the plan and marks what an earlier run finished.
pub async fn prepare(s: &Settings, restart: bool) -> Result<(Plan, Journal), EngineError> {
    let here = s.here.connect(Side::Here).await?;
    let (tables, excluded) = resolve_tables(s, &here).await?;
    let fingerprint = plan::fingerprint(s, &tables);
    let mut journal = Journal::open(&s.state_dir(), &fingerprint)?;
    if restart {
        journal.discard()?;
    }
    let resuming = !journal.is_empty();
    let facts = probe(s, &tables, resuming).await?;
    let mut plan = Plan::build(s, tables, excluded, &facts);
    plan.mark_done(&journal.data.steps_done);
    Ok((plan, journal))
}

pub fn state_paths(s: &Settings) -> (PathBuf, PathBuf) {
    (s.state_dir(), s.state_dir().join("bucardo.pgpass"))
}

#[cfg(test)]
mod tests {
    use super::private_dir;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &std::path::Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn private_dir_creates_0700_and_never_changes_an_existing_directory() {
        let root = tempfile::tempdir().unwrap();
        let fresh = root.path().join("a/b");
        private_dir(&fresh, "--log-dir").unwrap();
        assert_eq!(mode(&fresh), 0o700);

        let shared = root.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&shared, "--log-dir").unwrap();
        assert_eq!(mode(&shared), 0o755, "an existing directory keeps its mode");

        for open in [0o1777, 0o775] {
            std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(open)).unwrap();
            let e = private_dir(&shared, "--bucardo-logdir")
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("other users can write to it") && e.contains("--bucardo-logdir"),
                "{e}"
            );
            assert_eq!(mode(&shared), open, "refused, and left as it was");
        }
        let file = root.path().join("f");
        std::fs::write(&file, "x").unwrap();
        assert!(private_dir(&file, "--log-dir").is_err());

        // Someone else's directory, even a closed one: its owner could plant symlinks. Only root
        // can hand a directory to another user, so only a root run can check this.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let theirs = root.path().join("theirs");
            std::fs::create_dir(&theirs).unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
            std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o755)).unwrap();
            let e = private_dir(&theirs, "--log-dir").unwrap_err().to_string();
            assert!(e.contains("belongs to another user (uid 65534)"), "{e}");
        }
    }
}
