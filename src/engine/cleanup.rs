//! Cleanup: the way back. Removes what this tool created: the sync, dbgroup, relgroup, tables and
//! databases from Bucardo; schema `bucardo` (triggers and delta tables) from HERE and THERE, since
//! Bucardo never removes its triggers and the delta tables grow forever; the interleaved sequence
//! increments; generated columns that `--convert-generated` converted (restored where that is
//! invisible to the application, else left computed by their trigger, with a note); and, only
//! when asked, the copied data on THERE. Every action tolerates the object
//! being gone already, so cleanup can be rerun after a partial failure.

use crate::engine::bucardo::{BucardoCli, BucardoCmd};
use crate::engine::conn::{ConnSpec, Passfile, Side};
use crate::engine::error::EngineError;
use crate::engine::ident::{quote_ident, TableName};
use crate::engine::plan::display_invocation;
use crate::engine::process;
use crate::engine::settings::Settings;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Bucardo(BucardoCmd),
    Sql { side: Side, sql: String },
}

/// What cleanup will do, found by looking at what exists.
#[derive(Clone, Debug, Default)]
pub struct CleanupPlan {
    pub actions: Vec<Action>,
    /// Why something is left alone (e.g. another sync still uses schema bucardo on a side).
    pub notes: Vec<String>,
}

fn control_conn(s: &Settings) -> ConnSpec {
    s.bucardo
        .control
        .with_user(&s.bucardo.control.user, s.bucardo.password.clone())
}

/// Looks at Bucardo's control database and both sides and lists the actions needed.
pub async fn plan(
    s: &Settings,
    drop_data: bool,
    tables: &[TableName],
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
                    sql: "DROP SCHEMA bucardo CASCADE".into(),
                });
            } else {
                p.notes.push(format!(
                    "{side}: schema bucardo is kept: sync(s) {} still use these databases",
                    other_users.join(", ")
                ));
            }
        }
        for r in c
            .query(
                "SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename) FROM pg_sequences WHERE increment_by = 2 AND schemaname NOT IN ('pg_catalog', 'information_schema', 'bucardo')",
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
    Ok(p)
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
                    run_lock_safe(&c, *side, sql).await?;
                }
            }
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

/// Runs cleanup DDL that needs strong locks on tables a live application writes to: each try
/// waits at most [`LOCK_TIMEOUT`](crate::engine::exec::LOCK_TIMEOUT) for its locks, and a lock
/// timeout or a deadlock with the application is retried a few times, with a growing pause.
async fn run_lock_safe(
    c: &tokio_postgres::Client,
    side: Side,
    sql: &str,
) -> Result<(), EngineError> {
    use crate::engine::exec::{LOCK_ATTEMPTS, LOCK_TIMEOUT};
    use tokio_postgres::error::SqlState;
    c.batch_execute(&format!(
        "SET lock_timeout = '{}ms'",
        LOCK_TIMEOUT.as_millis()
    ))
    .await
    .map_err(|e| EngineError::sql(side, "setting lock_timeout", &e))?;
    for attempt in 1..=LOCK_ATTEMPTS {
        match c.batch_execute(sql).await {
            Ok(()) => return Ok(()),
            Err(e)
                if attempt < LOCK_ATTEMPTS
                    && matches!(
                        e.code(),
                        Some(&SqlState::T_R_DEADLOCK_DETECTED | &SqlState::LOCK_NOT_AVAILABLE)
                    ) =>
            {
                tracing::warn!(
                    "[{side}] lock timeout or deadlock (attempt {attempt} of {LOCK_ATTEMPTS}); retrying"
                );
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
            }
            Err(e) => return Err(EngineError::sql(side, sql.to_string(), &e)),
        }
    }
    unreachable!("the last attempt returns")
}
