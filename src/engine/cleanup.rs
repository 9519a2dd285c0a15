//! Cleanup: the way back. Removes what this tool created: the sync, dbgroup, relgroup, tables and
//! databases from Bucardo; schema `bucardo` (triggers and delta tables) from HERE and THERE, since
//! Bucardo never removes its triggers and the delta tables grow forever; the interleaved sequence
//! increments; generated columns that `--convert-generated` converted (restored where that is
//! invisible to the application, else left computed by their trigger, with a note); and, only
//! when asked, the copied data on THERE. With `--all` it also removes what the journals say this
//! tool created outside the bootstrap (the daemon it started, the control database it installed,
//! the Bucardo roles it created) and the daemon's passfile, unless another sync still needs them.
//! Every action tolerates the object being gone already, so cleanup can be rerun after a partial
//! failure.

use crate::engine::bucardo::{BucardoCli, BucardoCmd};
use crate::engine::conn::{ConnSpec, Passfile, Side};
use crate::engine::daemon::{self, PidFile};
use crate::engine::error::EngineError;
use crate::engine::ident::{quote_ident, TableName};
use crate::engine::journal::Created;
use crate::engine::plan::display_invocation;
use crate::engine::process;
use crate::engine::settings::Settings;
use std::path::PathBuf;
use std::time::Duration;

/// How long the daemon's processes get to exit after `bucardo stop`.
const STOP_WAIT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Bucardo(BucardoCmd),
    /// Cleanup DDL on HERE's or THERE's database, run lock-safe against the application.
    Sql {
        side: Side,
        sql: String,
    },
    /// `bucardo stop` for the daemon (MCP `pid`) this tool started, then a wait until every
    /// Bucardo process of the PID directory has exited.
    StopDaemon {
        pid: u32,
    },
    /// Dropping the control database or a role, as a superuser of that server.
    Admin {
        side: Side,
        target: ConnSpec,
        sql: String,
    },
    /// A file this tool wrote: the daemon's passfile.
    RemoveFile(PathBuf),
}

/// Drops Bucardo's triggers and delta tables on a side; run after locking the tables at once.
const DROP_BUCARDO_SCHEMA: &str = "DROP SCHEMA bucardo CASCADE";

/// What cleanup will do, found by looking at what exists.
#[derive(Clone, Debug, Default)]
pub struct CleanupPlan {
    pub actions: Vec<Action>,
    /// Why something is left alone (e.g. another sync still uses schema bucardo on a side).
    pub notes: Vec<String>,
    /// `--all` removes everything the journals record as created: they can be forgotten.
    pub forget_created: bool,
}

fn control_conn(s: &Settings) -> ConnSpec {
    s.bucardo
        .control
        .with_user(&s.bucardo.control.user, s.bucardo.password.clone())
}

/// Looks at Bucardo's control database and both sides and lists the actions needed.
/// `all` is what the journals record as created by this tool (`cleanup --all`); `None` for a
/// plain cleanup.
pub async fn plan(
    s: &Settings,
    drop_data: bool,
    tables: &[TableName],
    all: Option<&Created>,
) -> Result<CleanupPlan, EngineError> {
    let mut p = CleanupPlan::default();
    let n = &s.names;
    let installed = crate::engine::bucardo::control_installed(&control_conn(s))
        .await
        .unwrap_or(false);
    let mut other_users = Vec::new();
    if installed {
        let ctl = control_conn(s).connect(Side::Control).await?;
        let q = |e: tokio_postgres::Error| {
            EngineError::sql(Side::Control, "reading Bucardo's objects", &e)
        };
        if ctl
            .query_opt("SELECT 1 FROM bucardo.sync WHERE name = $1", &[&n.sync])
            .await
            .map_err(q)?
            .is_some()
        {
            p.actions.push(Action::Bucardo(BucardoCmd::RemoveSync {
                name: n.sync.clone(),
            }));
        }
        if ctl
            .query_opt(
                "SELECT 1 FROM bucardo.dbgroup WHERE name = $1",
                &[&n.dbgroup],
            )
            .await
            .map_err(q)?
            .is_some()
        {
            p.actions.push(Action::Bucardo(BucardoCmd::RemoveDbgroup {
                name: n.dbgroup.clone(),
            }));
        }
        if ctl
            .query_opt("SELECT 1 FROM bucardo.herd WHERE name = $1", &[&n.relgroup])
            .await
            .map_err(q)?
            .is_some()
        {
            p.actions.push(Action::Bucardo(BucardoCmd::RemoveRelgroup {
                name: n.relgroup.clone(),
            }));
        }
        // `remove db --force` removes the database's tables too; `remove table` cannot take a
        // name with a space in it.
        for db in [&n.here_db, &n.there_db] {
            if ctl
                .query_opt("SELECT 1 FROM bucardo.db WHERE name = $1", &[db])
                .await
                .map_err(q)?
                .is_some()
            {
                p.actions
                    .push(Action::Bucardo(BucardoCmd::RemoveDb { name: db.clone() }));
            }
        }
        for r in ctl
            .query(
                "SELECT s.name FROM bucardo.sync s WHERE s.name <> $1 AND s.dbs IN (SELECT dbgroup FROM bucardo.dbmap WHERE db = ANY($2))",
                &[&n.sync, &vec![n.here_db.clone(), n.there_db.clone()]],
            )
            .await
            .map_err(q)?
        {
            other_users.push(r.get::<_, String>(0));
        }
    } else {
        p.notes
            .push("Bucardo's control database is not installed: nothing to remove there".into());
    }
    for (side, spec) in [(Side::Here, &s.here), (Side::There, &s.there)] {
        let c = match spec.connect(side).await {
            Ok(c) => c,
            Err(e) if side == Side::There && e.to_string().contains("does not exist") => continue,
            Err(e) => return Err(e),
        };
        let has_schema = c
            .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = 'bucardo'", &[])
            .await
            .map_err(|e| EngineError::sql(side, "looking for schema bucardo", &e))?
            .is_some();
        if has_schema {
            if other_users.is_empty() {
                p.actions.push(Action::Sql {
                    side,
                    sql: DROP_BUCARDO_SCHEMA.into(),
                });
            } else {
                p.notes.push(format!(
                    "{side}: schema bucardo is kept: sync(s) {} still use these databases",
                    other_users.join(", ")
                ));
            }
        }
        // Settings a run stopped while Bucardo's triggers went in left on Bucardo's role.
        if side == Side::Here {
            let left: bool = c
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_db_role_setting s
                        JOIN pg_roles r ON r.oid = s.setrole
                        JOIN pg_database d ON d.oid = s.setdatabase
                       WHERE r.rolname = $1 AND d.datname = current_database()
                         AND $2 = ANY(s.setconfig))",
                    &[
                        &s.bucardo.user,
                        &format!(
                            "deadlock_timeout={}ms",
                            crate::engine::giveway::DEADLOCK_TIMEOUT_MS
                        ),
                    ],
                )
                .await
                .map_err(|e| EngineError::sql(side, "reading Bucardo's role settings", &e))?
                .get(0);
            if left {
                p.actions.push(Action::Sql {
                    side,
                    sql: crate::engine::giveway::role_reset_sql(&s.bucardo.user, &spec.dbname),
                });
            }
        }
        // A lock gate a run stopped in the middle of installing Bucardo's triggers left behind.
        let gate = c
            .query_opt(
                "SELECT 1 FROM pg_namespace WHERE nspname = $1",
                &[&crate::engine::giveway::GATE_SCHEMA],
            )
            .await
            .map_err(|e| EngineError::sql(side, "looking for the lock gate", &e))?
            .is_some();
        if gate {
            p.actions.push(Action::Sql {
                side,
                sql: crate::engine::giveway::gate_remove_sql(),
            });
        }
        for r in c
            .query(
                "SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename) FROM pg_sequences WHERE increment_by = 2 AND schemaname NOT IN ('pg_catalog', 'information_schema', 'bucardo', 'bucardo_bootstrap')",
                &[],
            )
            .await
            .map_err(|e| EngineError::sql(side, "reading sequences", &e))?
        {
            let seq: String = r.get(0);
            p.actions.push(Action::Sql { side, sql: format!("ALTER SEQUENCE {seq} INCREMENT BY 1") });
        }
        // Generated columns converted by --convert-generated: restored, or left with a note.
        let (restores, notes) = crate::engine::generated::undo(&c, side).await?;
        p.actions
            .extend(restores.into_iter().map(|sql| Action::Sql { side, sql }));
        p.notes.extend(notes);
        if side == Side::There && drop_data {
            for t in tables {
                let exists: bool = c
                    .query_one("SELECT to_regclass($1) IS NOT NULL", &[&t.sql()])
                    .await
                    .map_err(|e| EngineError::sql(side, "looking for tables", &e))?
                    .get(0);
                if exists {
                    p.actions.push(Action::Sql {
                        side,
                        sql: format!(
                            "TRUNCATE ONLY {}.{} CASCADE",
                            quote_ident(&t.schema),
                            quote_ident(&t.name)
                        ),
                    });
                }
            }
        }
    }
    if let Some(created) = all {
        plan_all(s, created, &mut p).await?;
    }
    Ok(p)
}

/// `--all`: the daemon, control database and roles this tool created, and the daemon's passfile.
/// Each is kept, with a note, while another sync of the control database still needs it.
async fn plan_all(s: &Settings, created: &Created, p: &mut CleanupPlan) -> Result<(), EngineError> {
    let other_syncs = if created.is_empty() {
        Vec::new()
    } else {
        other_syncs(s).await?
    };
    let keep = (!other_syncs.is_empty()).then(|| {
        format!(
            "sync(s) {} of Bucardo's control database still need it",
            other_syncs.join(", ")
        )
    });
    let mut kept = false;
    let piddir = &s.bucardo.piddir;
    let live = match daemon::pid_file(piddir) {
        PidFile::Live(pid) => Some(pid),
        _ => None,
    };
    let ours = created.daemon.as_ref().is_some_and(|d| same_dir(d, piddir));
    if let Some(d) = created.daemon.as_ref().filter(|_| !ours) {
        kept = true;
        p.notes.push(format!(
            "the daemon this tool started uses the PID directory {}: give --bucardo-piddir {0} to stop it",
            d.display()
        ));
    }
    let mut daemon_stays = None;
    match (live, ours, &keep) {
        (Some(pid), true, None) => p.actions.push(Action::StopDaemon { pid }),
        (Some(pid), true, Some(why)) => {
            kept = true;
            p.notes.push(format!(
                "the Bucardo daemon (PID {pid}) keeps running: {why}"
            ));
            daemon_stays = Some(pid);
        }
        (Some(pid), false, _) => {
            p.notes.push(format!(
                "the Bucardo daemon (PID {pid}) keeps running: this tool did not start it"
            ));
            daemon_stays = Some(pid);
        }
        (None, _, _) => {}
    }
    if let Some(db) = &created.control_db {
        let c = &s.bucardo.control;
        let admin = s.bucardo.admin.with_db("postgres");
        if (db.host.as_str(), db.port, db.name.as_str())
            != (c.host.as_str(), c.port, c.dbname.as_str())
        {
            kept = true;
            p.notes.push(format!(
                "the control database this tool installed is {db}, not the one these settings name: give --bucardo-db for it"
            ));
        } else if let Some(why) = &keep {
            kept = true;
            p.notes
                .push(format!("the control database {db} is kept: {why}"));
        } else if let Some(pid) = daemon_stays {
            kept = true;
            p.notes.push(format!(
                "the control database {db} is kept: the Bucardo daemon (PID {pid}) still runs on it"
            ));
        } else if database_exists(&admin, &db.name).await? {
            p.actions.push(Action::Admin {
                side: Side::Control,
                target: admin,
                sql: format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_ident(&db.name)
                ),
            });
        }
    }
    let servers = [
        (Side::Control, s.bucardo.admin.with_db("postgres")),
        (Side::Here, s.here.clone()),
        (Side::There, s.there.with_db("postgres")),
    ];
    let mut roles = created.roles.clone();
    roles.sort();
    roles.dedup();
    for r in &roles {
        let Some((side, spec)) = servers
            .iter()
            .find(|(_, c)| c.host == r.host && c.port == r.port)
        else {
            kept = true;
            p.notes.push(format!(
                "role {r} was created by this tool, but these settings reach no server there"
            ));
            continue;
        };
        if let Some(why) = &keep {
            kept = true;
            p.notes.push(format!("role {r} is kept: {why}"));
            continue;
        }
        let c = spec.connect(*side).await?;
        let exists = c
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&r.name])
            .await
            .map_err(|e| EngineError::sql(*side, "looking for Bucardo's role", &e))?
            .is_some();
        if exists {
            p.actions.push(Action::Admin {
                side: *side,
                target: spec.clone(),
                sql: format!("DROP ROLE IF EXISTS {}", quote_ident(&r.name)),
            });
        }
    }
    let passfile = s.state_dir().join("bucardo.pgpass");
    if let Some(pid) = daemon_stays {
        p.notes.push(format!(
            "{} is kept: the Bucardo daemon (PID {pid}) may reconnect with it",
            passfile.display()
        ));
    } else if passfile.exists() {
        p.actions.push(Action::RemoveFile(passfile));
    }
    p.forget_created = !kept;
    Ok(())
}

/// The syncs of the control database other than this bootstrap's, read as the superuser: the
/// Bucardo role's own login may be what fails, and a control database that cannot be read must
/// not be taken for an empty one.
async fn other_syncs(s: &Settings) -> Result<Vec<String>, EngineError> {
    let control = &s.bucardo.control;
    if !database_exists(&s.bucardo.admin.with_db("postgres"), &control.dbname).await? {
        return Ok(Vec::new());
    }
    let c = s
        .bucardo
        .admin
        .with_db(&control.dbname)
        .connect(Side::Control)
        .await?;
    let q = |e: tokio_postgres::Error| {
        EngineError::sql(Side::Control, "reading the control database's syncs", &e)
    };
    let installed: bool = c
        .query_one("SELECT to_regclass('bucardo.sync') IS NOT NULL", &[])
        .await
        .map_err(q)?
        .get(0);
    if !installed {
        return Ok(Vec::new());
    }
    Ok(c.query(
        "SELECT name FROM bucardo.sync WHERE name <> $1 ORDER BY name",
        &[&s.names.sync],
    )
    .await
    .map_err(q)?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

fn same_dir(a: &std::path::Path, b: &std::path::Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

async fn database_exists(admin: &ConnSpec, name: &str) -> Result<bool, EngineError> {
    let c = admin.connect(Side::Control).await?;
    Ok(
        c.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await
            .map_err(|e| EngineError::sql(Side::Control, "looking for the control database", &e))?
            .is_some(),
    )
}

impl CleanupPlan {
    pub fn render(&self, s: &Settings) -> String {
        let cli = BucardoCli::from_settings(s);
        let mut out = String::new();
        if self.actions.is_empty() {
            out.push_str("nothing to clean up\n");
        }
        for (i, a) in self.actions.iter().enumerate() {
            let line = match a {
                Action::Bucardo(cmd) => {
                    display_invocation(&cli.invocation(cmd, std::path::Path::new("")))
                }
                Action::Sql { side, sql } => format!("[{side}] {sql}"),
                Action::StopDaemon { pid } => format!(
                    "{}   # the daemon this tool started (PID {pid}); then wait until it has exited",
                    display_invocation(&cli.invocation(&BucardoCmd::Stop, std::path::Path::new("")))
                ),
                Action::Admin { side, target, sql } => {
                    format!("[{side} {}] {sql}", target.display_uri())
                }
                Action::RemoveFile(path) => format!("rm {}", path.display()),
            };
            out.push_str(&format!("{:>2}. {line}\n", i + 1));
        }
        for n in &self.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        out
    }

    /// Carries the actions out in order; a failure stops with what remains.
    pub async fn execute(&self, s: &Settings) -> Result<(), EngineError> {
        let cli = BucardoCli::from_settings(s);
        crate::engine::files::private_dir(&s.state_dir(), "--log-dir")?;
        let control = control_conn(s);
        let pf = Passfile::write(
            &s.state_dir()
                .join(format!("cleanup-{}.pgpass", std::process::id())),
            &[&control],
            true,
        )?;
        for a in &self.actions {
            match a {
                Action::Bucardo(cmd) => {
                    let inv = cli.invocation(cmd, pf.path());
                    tracing::info!("$ {}", display_invocation(&inv));
                    let out = process::run(&inv, Duration::from_secs(120)).await?;
                    let text = format!("{}{}", out.stdout, out.stderr);
                    if out.status != 0
                        && !text.contains("does not exist")
                        && !text.contains("No such")
                    {
                        return Err(EngineError::Command {
                            program: "bucardo".into(),
                            status: format!("exit {}", out.status),
                            stderr_tail: out.tail(),
                        });
                    }
                }
                Action::Sql { side, sql } => {
                    let spec = if *side == Side::Here {
                        &s.here
                    } else {
                        &s.there
                    };
                    tracing::info!("[{side}] {sql}");
                    let c = spec.connect(*side).await?;
                    let sql = if sql == DROP_BUCARDO_SCHEMA {
                        let slots = crate::engine::bucardo::lock_slots(&c, *side).await.ok();
                        let batch = crate::engine::bucardo::trigger_batch(slots);
                        let batches = crate::engine::giveway::drop_bucardo_in_batches_sql(batch);
                        tracing::info!("[{side}] Bucardo's triggers and tables, {batch} tables per transaction");
                        run_lock_safe(&c, *side, &batches).await?;
                        crate::engine::giveway::with_trigger_tables_locked(sql)
                    } else {
                        sql.clone()
                    };
                    run_lock_safe(&c, *side, &sql).await?;
                }
                Action::StopDaemon { pid } => {
                    let inv = cli.invocation(&BucardoCmd::Stop, pf.path());
                    tracing::info!("$ {}   # PID {pid}", display_invocation(&inv));
                    let out = process::run(&inv, Duration::from_secs(60)).await?;
                    if out.status != 0 {
                        return Err(EngineError::Command {
                            program: "bucardo stop".into(),
                            status: format!("exit {}", out.status),
                            stderr_tail: out.tail(),
                        });
                    }
                    daemon::wait_stopped(&s.bucardo.piddir, STOP_WAIT).await?;
                }
                Action::Admin { side, target, sql } => {
                    tracing::info!("[{side} {}] {sql}", target.display_uri());
                    target
                        .connect(*side)
                        .await?
                        .batch_execute(sql)
                        .await
                        .map_err(|e| EngineError::sql(*side, sql.to_string(), &e))?;
                }
                Action::RemoveFile(path) => {
                    tracing::info!("rm {}", path.display());
                    match std::fs::remove_file(path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        // Without a daemon (stopped, or its control database gone) there is nothing to reload.
        if self.actions.iter().any(|a| {
            matches!(a, Action::StopDaemon { .. })
                || matches!(a, Action::Admin { side: Side::Control, sql, .. } if sql.starts_with("DROP DATABASE"))
        }) {
            return Ok(());
        }
        // A daemon that is coming up is waited for: it would keep the removed sync otherwise.
        if crate::engine::daemon::settle(
            &control,
            &s.bucardo.piddir,
            crate::engine::daemon::ANSWER_WAIT,
            |_| {},
        )
        .await?
        .answers()
        {
            let inv = cli.invocation(&BucardoCmd::ReloadConfig, pf.path());
            let _ = process::run(&inv, Duration::from_secs(60)).await;
        }
        Ok(())
    }
}

/// Runs cleanup DDL that needs strong locks on tables a live application writes to, giving way
/// to the application ([`giveway`](crate::engine::giveway)): a lost lock is retried.
async fn run_lock_safe(
    c: &tokio_postgres::Client,
    side: Side,
    sql: &str,
) -> Result<(), EngineError> {
    use crate::engine::giveway;
    giveway::prepare_session(c, side).await?;
    let gave_way = giveway::run_sql(c, side, sql).await?;
    if gave_way > 0 {
        tracing::info!("[{side}] cleanup gave way to the application {gave_way} times");
    }
    Ok(())
}
