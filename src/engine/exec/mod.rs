//! The live executor: prepares a run (passfiles, probing the servers, resolving the table
//! selection) and carries out each plan step against the real servers and tools. Steps that run
//! commands run exactly the ones the plan shows; the others (copy, drain, verify) are engine code.

use crate::engine::bucardo::{self, BucardoCli, BucardoCmd};
use crate::engine::catalog::{self, TableInfo};
use crate::engine::conn::{ConnSpec, Passfile, Side};
use crate::engine::copy;
use crate::engine::copy::parts::RangesDone;
use crate::engine::coverage::{self, Coverage};
use crate::engine::daemon::{self, Daemon, PING_WAIT};
use crate::engine::error::EngineError;
use crate::engine::event::{CopyEvent, LogLevel, RunEvent, TableVerdict};
use crate::engine::files::private_dir;
use crate::engine::governor::probe::Governed;
use crate::engine::ident::{quote_ident, quote_literal, TableName};
use crate::engine::journal::{Journal, Progress, ServerObject};
use crate::engine::plan::{
    self, Command, Facts, Plan, SqlSecret, Step, StepKind, BUCARDO_PASS_VAR,
};
use crate::engine::process::{self, Invocation, PassfileRef};
use crate::engine::runner::{log, StepExecutor};
use crate::engine::secret::Secret;
use crate::engine::settings::Settings;
use crate::engine::verify;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod bucardo_daemon;
mod data;
mod generated;
mod locks;
mod objects;
mod prepare;
mod replay;
mod vacuum;
mod verification;

pub use prepare::{
    prepare, prepare_in, probe, probe_knowing, resolve_in, resolve_tables, resuming, resuming_in,
    select_in, select_tables, state_paths,
};
use replay::*;
pub use verification::{
    verify_command, verify_tables, verify_tables_mode, Differences, VerifyReport, CHUNK_ROWS,
    DEEP_ROWS_SHOWN, VERIFY_ROUNDS,
};

const TOOL_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
const BUCARDO_TIMEOUT: Duration = Duration::from_secs(120);
const POLL_INTERVAL: Duration = Duration::from_millis(500);
const REKICK_INTERVAL: Duration = Duration::from_secs(30);

/// Everything a live run holds: settings with passwords resolved, and the two passfiles.
pub struct LiveExecutor {
    pub settings: Settings,
    run_passfile: Passfile,
    daemon_passfile: Passfile,
    /// None where no server asks Bucardo's role for a password (trust, peer, cert).
    bucardo_password: Option<Secret>,
    journal: std::sync::Mutex<Journal>,
    /// How many times the bootstrap's sessions gave way to the application on HERE's locks.
    gave_way: std::sync::atomic::AtomicU32,
    /// Tables in the plan being run: Bucardo's `validate_sync` reads and checks each of them.
    tables: std::sync::atomic::AtomicUsize,
    /// The pace the heavy work on HERE keeps ([`crate::engine::governor`]).
    governed: Governed,
    /// What the Verify step found, for the run's last line.
    verdicts: std::sync::Mutex<Vec<TableVerdict>>,
    /// What this run's Compare step left for its Verify step.
    compared: std::sync::Mutex<Option<verification::Compared>>,
    /// When this run's Drain step began, on each side's clock: every delta logged before then
    /// was replayed.
    drained: std::sync::Mutex<Option<(String, String)>>,
}

impl LiveExecutor {
    /// Writes the run's temporary passfile (every credential, removed when the run ends) and the
    /// daemon's persistent one (only the Bucardo role's lines: the daemon reconnects for as long as
    /// it runs). Both are 0600 in the 0700 state directory.
    pub fn new(settings: Settings, journal: Journal) -> Result<LiveExecutor, EngineError> {
        let bucardo_password = settings.bucardo.password.clone();
        let dir = settings.state_dir();
        private_dir(&dir, "--log-dir")?;
        private_dir(&settings.bucardo.piddir, "--bucardo-piddir")?;
        private_dir(&settings.bucardo.logdir, "--bucardo-logdir")?;
        let bucardo_role =
            |c: &ConnSpec| c.with_user(&settings.bucardo.user, bucardo_password.clone());
        let b_here = bucardo_role(&settings.here);
        let b_there = bucardo_role(&settings.there);
        let b_control = settings
            .bucardo
            .control
            .with_user(&settings.bucardo.control.user, bucardo_password.clone());
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
            gave_way: Default::default(),
            tables: Default::default(),
            governed: Governed::unlimited(),
            verdicts: Default::default(),
            compared: Default::default(),
            drained: Default::default(),
        })
    }

    /// Has the copy and verification keep to this governor.
    pub fn with_governor(mut self, g: Governed) -> LiveExecutor {
        self.governed = g;
        self
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

    /// The invocation with the plan's run and daemon passfiles at this run's real paths.
    fn real(&self, inv: &Invocation) -> Invocation {
        inv.resolve_passfiles(self.run_passfile.path(), self.daemon_passfile.path())
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
            self.daemon_command(inv, events, self.bucardo_timeout())
                .await?
        } else {
            self.run_logged(inv, events, self.bucardo_timeout()).await?
        };
        Self::checked(inv, out)
    }

    /// A Bucardo command's time limit: `add sync`, `update sync` and `validate` go through
    /// every table of the relgroup (10,000 tables: about 2 minutes here).
    fn bucardo_timeout(&self) -> Duration {
        let n = self.tables.load(std::sync::atomic::Ordering::Relaxed) as u32;
        BUCARDO_TIMEOUT + Duration::from_millis(50) * n
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
                    // No password: dbpass NULL, and Bucardo connects without one.
                    &[&self.bucardo_password.as_ref().map(|p| p.expose())],
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
                let password = match &self.bucardo_password {
                    Some(p) => format!(
                        " PASSWORD {}",
                        quote_literal(&postgres_protocol::password::scram_sha_256(
                            p.expose().as_bytes()
                        ))
                    ),
                    None => String::new(),
                };
                client
                    .batch_execute(&format!(
                        "CREATE ROLE {} SUPERUSER LOGIN{password}",
                        quote_ident(role)
                    ))
                    .await
                    .map_err(|e| EngineError::sql(side, "creating Bucardo's role", &e))?;
                // `cleanup --all` drops only the roles the journal says this tool created.
                let created = ServerObject::new(&target.host, target.port, role);
                return self.with_journal(|j| {
                    j.record_created(|c| {
                        if !c.roles.contains(&created) {
                            c.roles.push(created);
                        }
                    })
                });
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
        c.with_user(&c.user, self.bucardo_password.clone())
    }

    async fn step_commands(
        &self,
        step: &Step,
        events: &mpsc::Sender<RunEvent>,
    ) -> Result<(), EngineError> {
        self.run_commands(&step.commands, events).await
    }

    async fn run_commands(
        &self,
        commands: &[Command],
        events: &mpsc::Sender<RunEvent>,
    ) -> Result<(), EngineError> {
        for c in commands {
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
}

fn table_names(plan: &Plan) -> Vec<TableName> {
    plan.tables.iter().map(|t| t.name.clone()).collect()
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

    fn verdicts(&self) -> Vec<TableVerdict> {
        self.verdicts.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn closing_notes(&self) -> Vec<String> {
        let n = self.gave_way.load(std::sync::atomic::Ordering::Relaxed);
        vec![match n {
            0 => "no lock on HERE had to give way to the application".to_string(),
            1 => "the bootstrap gave way to the application once on HERE's locks (retried)"
                .to_string(),
            n => format!(
                "the bootstrap gave way to the application {n} times on HERE's locks (retried)"
            ),
        }]
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
        self.tables
            .store(plan.tables.len(), std::sync::atomic::Ordering::Relaxed);
        let own = matches!(
            step.kind,
            StepKind::BucardoRole
                | StepKind::InstallBucardo
                | StepKind::StartDaemon
                | StepKind::AddDatabases
                | StepKind::AddTables
                | StepKind::AddDbgroup
                | StepKind::AddSync
                | StepKind::Enable
                | StepKind::Sequences
        );
        self.governed.pace.own_traffic(own);
        let r = self.execute_kind(plan, step, events, cancel).await;
        self.governed.pace.own_traffic(false);
        r
    }

    async fn execute_kind(
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
                let exists = self.existing_matches(plan, step, events).await?;
                self.add_sync(plan, step, exists, events, cancel).await?;
                self.check_triggers(plan, events).await
            }
            StepKind::CopyData => self.copy_data(plan, events, cancel).await,
            StepKind::ConvertGenerated => self.convert_generated(plan, step, events, cancel).await,
            StepKind::Sequences => self.sequences(plan, events).await,
            StepKind::Drain => self.drain(step, events, cancel).await,
            StepKind::Vacuum => self.vacuum(plan, events, cancel).await,
            StepKind::Compare => self.compare(plan, events, cancel).await,
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
                let c = &self.settings.bucardo.control;
                let db = ServerObject::new(&c.host, c.port, &c.dbname);
                self.with_journal(|j| j.record_created(|created| created.control_db = Some(db)))
            }
            StepKind::Enable => {
                self.ensure_daemon(events).await?;
                self.enable(plan, step, events, cancel).await
            }
            StepKind::CreateDatabase
            | StepKind::CopySchema
            | StepKind::BucardoRole
            | StepKind::RefreshMatviews => self.step_commands(step, events).await,
        }
    }
}
