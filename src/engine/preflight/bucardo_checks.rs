//! Bucardo's checks: the CLI, PL/PerlU, the control database, names already taken, and the daemon.

use super::*;

/// The Bucardo CLI, its control database (installed or installable), the names the bootstrap
/// will create (not when `resuming`: an earlier run of this bootstrap registered them), the
/// daemon and its directories.
pub(super) async fn bucardo_checks(s: &Settings, opts: &Options, resuming: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    let cli_version = bucardo_cli(s, &mut out).await;
    out.extend(directory_finding(
        BUCARDO,
        "PID directory",
        &s.bucardo.piddir,
        "--bucardo-piddir",
    ));
    out.extend(directory_finding(
        BUCARDO,
        "log directory",
        &s.bucardo.logdir,
        "--bucardo-logdir",
    ));
    if s.bucardo.password.is_none() {
        let asking = servers_asking_for_password(s).await;
        if !asking.is_empty() {
            out.push(Finding::fail(
                BUCARDO,
                "password",
                format!(
                    "no password for Bucardo's role {}, and {} ask(s) for one",
                    s.bucardo.user,
                    asking.join(", ")
                ),
                Some(
                    "export BUCARDOPASS=... (or add a ~/.pgpass line for the control database)"
                        .into(),
                ),
            ));
            return out;
        }
        out.push(Finding::pass(
            BUCARDO,
            "password",
            format!(
                "no BUCARDOPASS, and no server asks role {} for a password: none is stored",
                s.bucardo.user
            ),
        ));
    }
    let control = s
        .bucardo
        .control
        .with_user(&s.bucardo.control.user, s.bucardo.password.clone());
    let cli = BucardoCli::from_settings(s);
    let installed = match open(&control, Side::Control).await {
        Ok(c) => match installed_version(&c).await {
            Ok(Some(v)) => {
                out.push(Finding::pass(
                    BUCARDO,
                    "control database",
                    format!("Bucardo {v} is installed in {}", control.display_uri()),
                ));
                if let Some(cv) = &cli_version {
                    if cv != &v {
                        out.push(Finding::warn(
                            BUCARDO,
                            "control database",
                            format!("the CLI is version {cv} but the control database holds version {v}"),
                            Some("bucardo upgrade".into()),
                        ));
                    }
                }
                if !resuming {
                    out.extend(taken_names(s, &c, &cli).await);
                }
                true
            }
            Ok(None) => {
                out.extend(installable(s, &control).await);
                false
            }
            Err(e) => {
                out.push(sql_failure(BUCARDO, "control database", &e));
                false
            }
        },
        Err(e) => {
            out.extend(control_unreachable(s, &control, &e).await);
            false
        }
    };
    let state = if installed {
        daemon::probe(&control, &s.bucardo.piddir, opts.daemon_ping).await
    } else {
        Ok(Daemon::NotRunning)
    };
    out.push(daemon_finding(s, &control, state));
    out
}

/// The servers (HERE, THERE, the control database) that ask Bucardo's role for a password: each
/// is tried without one. A server that lets the role in, or answers that the role does not exist
/// yet (the plan creates it), does not ask; one that cannot be reached at all is reported by
/// its own checks.
async fn servers_asking_for_password(s: &Settings) -> Vec<String> {
    let role = &s.bucardo.user;
    let control = &s.bucardo.control;
    let tries = [
        (Side::Here, "HERE", s.here.with_user(role, None)),
        (
            Side::There,
            "THERE",
            s.there.with_db("postgres").with_user(role, None),
        ),
        (
            Side::Control,
            "the control database's server",
            control.with_user(&control.user, None),
        ),
    ];
    let asks = |side: Side, spec: ConnSpec| async move {
        matches!(spec.connect(side).await, Err(e) if asks_for_password(&e))
    };
    let [(s1, w1, c1), (s2, w2, c2), (s3, w3, c3)] = tries;
    let (a1, a2, a3) = tokio::join!(
        asks(s1, c1.clone()),
        asks(s2, c2.clone()),
        asks(s3, c3.clone())
    );
    [(a1, w1, c1), (a2, w2, c2), (a3, w3, c3)]
        .into_iter()
        .filter(|(asks, _, _)| *asks)
        .map(|(_, what, spec)| format!("{what} ({}:{})", spec.host, spec.port))
        .collect()
}

/// The server asked for a password that the connection did not have.
fn asks_for_password(e: &EngineError) -> bool {
    let lower = e.one_line().to_ascii_lowercase();
    lower.contains("password missing") || lower.contains("no password supplied")
}

/// Whether the daemon answers, is coming up, or must be started (and whether this tool can).
pub(super) fn daemon_finding(
    s: &Settings,
    control: &ConnSpec,
    state: Result<Daemon, EngineError>,
) -> Finding {
    let cli = BucardoCli::from_settings(s);
    let start = command_line(
        &cli,
        &BucardoCmd::Start {
            reason: "bucardo-bootstrap".into(),
        },
    );
    match state {
        Err(e) => sql_failure(BUCARDO, "daemon", &e),
        Ok(d @ Daemon::Answering { .. }) => Finding::pass(
            BUCARDO,
            "daemon",
            format!("the Bucardo daemon is {}", d.describe()),
        ),
        Ok(d) if d.coming_up() => Finding::warn(
            BUCARDO,
            "daemon",
            format!(
                "the Bucardo daemon is {}: the run waits for it to answer",
                d.describe()
            ),
            None,
        ),
        Ok(d) if control.is_local() => Finding::warn(
            BUCARDO,
            "daemon",
            format!(
                "the Bucardo daemon is {}: the plan starts it from this machine",
                d.describe()
            ),
            Some(start),
        ),
        Ok(_) => Finding::fail(
            BUCARDO,
            "daemon",
            format!(
                "the Bucardo daemon is not running and its control database is on {}: this tool starts it only on the same machine",
                control.host
            ),
            Some(format!("on {}: {start}", control.host)),
        ),
    }
}

/// A Bucardo command as one line for a shell.
pub(super) fn command_line(cli: &BucardoCli, cmd: &BucardoCmd) -> String {
    cli.argv(cmd)
        .iter()
        .map(|w| shell_word(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Finds the CLI and its version (`bucardo --version` prints `bucardo version 5.6.0`).
pub(super) async fn bucardo_cli(s: &Settings, out: &mut Vec<Finding>) -> Option<String> {
    let program = s.bucardo.program.display().to_string();
    let found = locate(&s.bucardo.program);
    let inv = Invocation::new([program.clone(), "--version".into()]);
    match process::run(&inv, Duration::from_secs(15)).await {
        Ok(o) if o.status == 0 => {
            let v = o
                .stdout
                .split_whitespace()
                .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
                .map(str::to_string);
            let where_ = found.map(|p| p.display().to_string()).unwrap_or(program);
            match &v {
                Some(v) if v.starts_with("5.") => out.push(Finding::pass(
                    BUCARDO,
                    "CLI",
                    format!("bucardo {v} ({where_})"),
                )),
                _ => out.push(Finding::warn(
                    BUCARDO,
                    "CLI",
                    format!(
                        "{where_} reports {:?}; this tool is tested with Bucardo 5.6.0",
                        o.stdout.trim()
                    ),
                    None,
                )),
            }
            v
        }
        Ok(o) => {
            out.push(Finding::fail(
                BUCARDO,
                "CLI",
                format!(
                    "`{program} --version` failed (exit {}): {}",
                    o.status,
                    o.tail()
                ),
                Some("apt-get install bucardo".into()),
            ));
            None
        }
        Err(e) => {
            out.push(Finding::fail(
                BUCARDO,
                "CLI",
                format!(
                    "the bucardo program {program:?} was not found: {}",
                    e.one_line()
                ),
                Some("apt-get install bucardo  # or set BUCARDO_BIN to its path".into()),
            ));
            None
        }
    }
}

pub(super) fn locate(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.exists().then(|| program.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

pub(super) async fn installed_version(c: &Client) -> Result<Option<String>, EngineError> {
    let ctx = |e: tokio_postgres::Error| {
        EngineError::sql(Side::Control, "looking for Bucardo's schema", &e)
    };
    let installed: bool = c
        .query_one("SELECT to_regclass('bucardo.sync') IS NOT NULL", &[])
        .await
        .map_err(ctx)?
        .get(0);
    if !installed {
        return Ok(None);
    }
    let v = c
        .query_opt(
            "SELECT setting FROM bucardo.bucardo_config WHERE name = 'bucardo_version'",
            &[],
        )
        .await
        .map_err(ctx)?;
    Ok(Some(v.map(|r| r.get(0)).unwrap_or_else(|| "?".into())))
}

/// Bucardo names the bootstrap would create that exist already.
pub(super) async fn taken_names(s: &Settings, c: &Client, cli: &BucardoCli) -> Vec<Finding> {
    let taken = match bucardo::existing_names(c, s).await {
        Ok(t) => t,
        Err(e) => return vec![sql_failure(BUCARDO, "names", &e)],
    };
    if taken.is_empty() {
        let n = &s.names;
        return vec![Finding::pass(
            BUCARDO,
            "names",
            format!(
                "databases {} and {}, relgroup {}, dbgroup {} and sync {} are free",
                n.here_db, n.there_db, n.relgroup, n.dbgroup, n.sync
            ),
        )];
    }
    taken
        .into_iter()
        .map(|(kind, name)| {
            let (cmd, other) = match kind {
                "sync" => (BucardoCmd::RemoveSync { name: name.clone() }, "--sync NAME"),
                "relgroup" => (BucardoCmd::RemoveRelgroup { name: name.clone() }, "--relgroup NAME"),
                "dbgroup" => (BucardoCmd::RemoveDbgroup { name: name.clone() }, "--dbgroup NAME"),
                _ => (
                    BucardoCmd::RemoveDb { name: name.clone() },
                    "the HERE or THERE environment variable (the name is $HERE$PGDATABASE or $THERE$PGDATABASE)",
                ),
            };
            Finding::fail(
                BUCARDO,
                "names",
                format!(
                    "Bucardo already has a {kind} named {name}: pick another with {other}, or remove it (after whatever uses it)"
                ),
                Some(command_line(cli, &cmd)),
            )
        })
        .collect()
}

/// The control database is not installed: can the plan install it there?
pub(super) async fn installable(s: &Settings, control: &ConnSpec) -> Vec<Finding> {
    let admin = match open(&s.bucardo.admin, Side::Control).await {
        Ok(c) => c,
        Err(e) => {
            return vec![Finding::fail(
                BUCARDO,
                "control database",
                format!(
                    "Bucardo is not installed in {} and the superuser connection that would install it fails: {}",
                    control.display_uri(),
                    e.one_line()
                ),
                None,
            )]
        }
    };
    let r = admin
        .query_one(
            "SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
                    EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'plperlu')
                    OR EXISTS (SELECT 1 FROM pg_language WHERE lanname = 'plperlu'),
                    current_setting('server_version_num')::int / 10000",
            &[],
        )
        .await;
    let (superuser, plperlu, major): (bool, bool, i32) = match r {
        Ok(r) => (r.get(0), r.get(1), r.get(2)),
        Err(e) => {
            return vec![sql_failure(
                BUCARDO,
                "control database",
                &EngineError::sql(Side::Control, "checking PL/PerlU", &e),
            )]
        }
    };
    let admin_user = &s.bucardo.admin.user;
    let mut out = Vec::new();
    if !superuser {
        out.push(Finding::fail(
            BUCARDO,
            "control database",
            format!("Bucardo is not installed and {admin_user}, who would install it, is not a superuser"),
            Some(format!("ALTER ROLE {} SUPERUSER;", quote_ident(admin_user))),
        ));
    }
    if !plperlu {
        out.push(Finding::fail(
            BUCARDO,
            "control database",
            format!(
                "Bucardo is not installed and PL/PerlU, which it needs, is not available on {}",
                s.bucardo.admin.host
            ),
            Some(format!(
                "on {}: apt-get install postgresql-plperl-{major}",
                s.bucardo.admin.host
            )),
        ));
    }
    if out.is_empty() {
        out.push(Finding::pass(
            BUCARDO,
            "control database",
            format!(
                "Bucardo is not installed in {} yet; it can be (superuser {admin_user}, PL/PerlU available): the plan installs it",
                control.display_uri()
            ),
        ));
    }
    out
}

/// Logging in to the control database failed: a missing role or database is what a fresh
/// install looks like; anything else is a real failure.
pub(super) async fn control_unreachable(
    s: &Settings,
    control: &ConnSpec,
    e: &EngineError,
) -> Vec<Finding> {
    let msg = e.one_line();
    let lower = msg.to_ascii_lowercase();
    let fresh = lower.contains("does not exist")
        || (lower.contains("password authentication failed")
            && role_missing(s).await == Some(true));
    if fresh {
        return installable(s, control).await;
    }
    let fix = match e {
        EngineError::Connect { hint, .. } => Some(hint.clone()),
        _ => None,
    };
    vec![Finding::fail(BUCARDO, "control database", msg, fix)]
}

pub(super) async fn role_missing(s: &Settings) -> Option<bool> {
    let admin = open(&s.bucardo.admin, Side::Control).await.ok()?;
    role_exists(&admin, Side::Control, &s.bucardo.control.user)
        .await
        .ok()
        .map(|r| r.is_none())
}
