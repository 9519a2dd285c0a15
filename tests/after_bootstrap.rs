//! After a bootstrap, against real PostgreSQL and Bucardo: `status`, `verify` and `cleanup` with
//! the connection flags alone (the tables come from the sync's relgroup, or from the journal when
//! the control database is out of reach); `cleanup --all` leaving no daemon, control database,
//! created role or passfile behind, and a second one finding nothing to do; and a bootstrap on
//! trust authentication with no password at all, whose Bucardo names follow HERE's database.

mod common;

use bucardo_bootstrap::sandbox::{self, data, Cluster, Sandbox, SandboxOptions};
use common::*;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// [`conn_flags`] without `--tables`.
fn bare_flags(sb: &Sandbox) -> Vec<String> {
    db_flags(sb, "widgets")
}

fn run_tool(sb: &Sandbox, args: &[&str], flags: &[String], env: &[(&str, &str)]) -> Output {
    let mut c = tool(sb);
    c.args(args)
        .args(flags)
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    tokio::task::block_in_place(|| c.output()).unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn one(c: &Cluster, db: &str, sql: &str) -> String {
    c.psql(db, sql).unwrap().trim().to_string()
}

/// A process counts as alive until it has exited; a zombie does not count.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

fn mcp_pid(sb: &Sandbox) -> Option<u32> {
    std::fs::read_to_string(sb.piddir.join("bucardo.mcp.pid"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_verify_and_cleanup_need_no_tables_and_cleanup_all_leaves_nothing() {
    let sb = tokio::task::spawn_blocking(|| sandbox_with_widgets(1))
        .await
        .unwrap();
    let (code, log) = tokio::task::block_in_place(|| run_to_end(&sb, &[]));
    assert_eq!(code, 0, "{log}");
    let bare = bare_flags(&sb);

    let out = run_tool(&sb, &["status"], &bare, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(stdout(&out).contains("health:        OK"), "{}", show(&out));

    // From the sync's relgroup, then from the journal when the control database refuses the
    // Bucardo role's password: the same six tables, and not the keyless one that was left out.
    for env in [vec![], vec![("BUCARDOPASS", "not-the-password")]] {
        let out = run_tool(&sb, &["verify"], &bare, &env);
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{env:?}: {}", show(&out));
        assert_eq!(
            text.matches("\tidentical").count(),
            REPLICATED.len(),
            "{env:?}: {text}"
        );
        assert!(
            text.contains("public.foo\tidentical") && !text.contains("audit_log"),
            "{env:?}: {text}"
        );
    }

    // A plain cleanup with --drop-data empties the bootstrap's tables on THERE and leaves the
    // daemon, the control database and the roles alone.
    let there_rows = one(&sb.there, "widgets", "SELECT count(*) FROM public.foo");
    assert_ne!(there_rows, "0");
    let out = run_tool(&sb, &["cleanup", "--drop-data", "--yes"], &bare, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        stdout(&out).contains(r#"TRUNCATE ONLY "public"."foo" CASCADE"#),
        "{}",
        show(&out)
    );
    assert_eq!(
        one(&sb.there, "widgets", "SELECT count(*) FROM public.foo"),
        "0"
    );
    assert_ne!(
        one(&sb.here, "widgets", "SELECT count(*) FROM public.foo"),
        "0"
    );
    assert_eq!(
        one(
            &sb.here,
            "widgets",
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'bucardo'"
        ),
        "0"
    );
    let pid = mcp_pid(&sb).expect("the daemon the run started has its PID file");
    assert!(alive(pid), "a plain cleanup leaves the daemon running");

    // --all is shown first and needs a confirmation: without --yes and a terminal, it refuses.
    let out = run_tool(&sb, &["cleanup", "--all"], &bare, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let shown = stdout(&out);
    for action in [
        " stop",
        r#"DROP DATABASE IF EXISTS "bucardo" WITH (FORCE)"#,
        r#"DROP ROLE IF EXISTS "bucardo""#,
        "bucardo.pgpass",
    ] {
        assert!(shown.contains(action), "{action:?} is shown: {shown}");
    }
    assert!(alive(pid), "nothing was done without a confirmation");

    // While another sync of the control database needs them, --all keeps the daemon, the control
    // database, the roles and the passfile, and says why.
    let other_sync = |sql: &str| {
        sb.here
            .psql(
                "bucardo",
                &format!("SET session_replication_role = replica; {sql}"),
            )
            .unwrap()
    };
    other_sync("INSERT INTO bucardo.sync (name) VALUES ('othersync')");
    let out = run_tool(&sb, &["cleanup", "--all", "--yes"], &bare, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = stdout(&out);
    assert!(
        text.contains("othersync") && !text.contains("DROP ROLE") && !text.contains(" stop "),
        "{text}"
    );
    assert!(alive(pid));
    assert_eq!(
        one(
            &sb.here,
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname = 'bucardo'"
        ),
        "1"
    );
    assert!(state_dir(&sb).join("bucardo.pgpass").exists());
    other_sync("DELETE FROM bucardo.sync WHERE name = 'othersync'");

    let out = run_tool(&sb, &["cleanup", "--all", "--yes"], &bare, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no daemon, control database, role or passfile"),
        "{}",
        show(&out)
    );
    assert!(!alive(pid), "the daemon (PID {pid}) has exited");
    assert!(
        !sb.piddir.join("bucardo.mcp.pid").exists(),
        "its PID file is gone"
    );
    assert_eq!(
        one(
            &sb.here,
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname = 'bucardo'"
        ),
        "0",
        "the control database is dropped"
    );
    for c in [&sb.here, &sb.there] {
        assert_eq!(
            one(
                c,
                "postgres",
                "SELECT count(*) FROM pg_roles WHERE rolname = 'bucardo'"
            ),
            "0",
            "the role the run created is dropped on {}",
            c.name
        );
    }
    assert!(!state_dir(&sb).join("bucardo.pgpass").exists());
    assert_ne!(
        one(&sb.here, "widgets", "SELECT count(*) FROM public.foo"),
        "0",
        "HERE's rows stay"
    );

    let out = run_tool(&sb, &["cleanup", "--all", "--yes"], &bare, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        stdout(&out).contains("nothing to clean up"),
        "{}",
        show(&out)
    );
}

/// pg_hba.conf lets everyone in without a password; returns once a password-less connection
/// as a role that does not exist is answered with "does not exist" (the new rules apply).
fn trust_everyone(c: &Cluster) {
    let hba = c.data_dir.join("pg_hba.conf");
    std::fs::write(
        &hba,
        "local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n",
    )
    .unwrap();
    c.psql("postgres", "SELECT pg_reload_conf()").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = std::process::Command::new(c.bindir.join("psql"))
            .args(["-X", "-w", "-h", &c.host, "-p", &c.port.to_string()])
            .args(["-U", "nobody_at_all", "-d", "postgres", "-c", "SELECT 1"])
            .env_remove("PGPASSWORD")
            .env("PGPASSFILE", "/nonexistent")
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stderr).contains("does not exist") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not take the trust rules: {}",
            c.name,
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_needs_no_bucardo_password_and_names_follow_heres_database() {
    let sb = tokio::task::spawn_blocking(|| {
        sandbox::require_tools().expect("PostgreSQL 15, PL/Perl and Bucardo must be installed");
        let sb = Sandbox::start(SandboxOptions::default()).expect("sandbox starts");
        data::load_widgets(&sb.here, "shop", 1).expect("widgets loads into shop");
        trust_everyone(&sb.here);
        trust_everyone(&sb.there);
        sb
    })
    .await
    .unwrap();
    let mut flags = bare_flags(&sb);
    for (flag, uri) in [
        ("--here", sb.here.uri("shop")),
        ("--there", sb.there.uri("shop")),
    ] {
        let i = flags.iter().position(|f| f == flag).unwrap();
        flags[i + 1] = uri;
    }
    flags.extend(
        ["--tables", "all", "--leave-out", "public.audit_log"]
            .into_iter()
            .map(String::from),
    );
    // No password anywhere: not in the environment, not in a passfile.
    let no_passwords = |args: &[&str]| {
        let mut c = tool(&sb);
        c.env_remove("PGPASSWORD")
            .env_remove("BUCARDOPASS")
            .args(args)
            .args(&flags)
            .stdin(Stdio::null());
        tokio::task::block_in_place(|| c.output()).unwrap()
    };

    let out = no_passwords(&["check"]);
    let text = stdout(&out);
    assert!(
        !text.contains("no password for Bucardo's role"),
        "{}",
        show(&out)
    );
    assert!(
        text.contains("no server asks role bucardo for a password"),
        "{}",
        show(&out)
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    let out = no_passwords(&["run", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        one(
            &sb.here,
            "bucardo",
            "SELECT string_agg(name || ' ' || (dbpass IS NULL), ',' ORDER BY name) FROM bucardo.db"
        ),
        "hereshop true,thereshop true",
        "names from HERE's database, and no password stored"
    );
    let out = no_passwords(&["status"]);
    assert!(
        stdout(&out).contains("health:        OK"),
        "the daemon replicates without a password: {}",
        show(&out)
    );
}
