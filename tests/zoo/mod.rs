//! Shared by the catalog and preflight tests: a sandbox whose HERE holds the `zoo` database
//! (`assets/zoo.sql`, one table per trap), settings that point the engine at it, Bucardo
//! installed the way an operator would, and a snapshot of everything preflight must not change.

#![allow(dead_code)]

use bucardo_bootstrap::cli::{ConnArgs, Draft};
use bucardo_bootstrap::engine::settings::Settings;
use bucardo_bootstrap::sandbox::{self, Cluster, Sandbox, SandboxOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

pub const ZOO_SQL: &str = include_str!("../../assets/zoo.sql");
pub const BUCARDO_PASS: &str = "bucardo-zoo-pass-3";

/// A sandbox with `zoo` loaded on HERE; THERE is an empty cluster.
pub fn zoo_sandbox() -> Sandbox {
    sandbox::require_tools().expect("PostgreSQL 15, PL/Perl and Bucardo must be installed");
    let sb = Sandbox::start(SandboxOptions::default()).expect("sandbox starts");
    load_zoo(&sb.here);
    sb
}

pub fn load_zoo(c: &Cluster) {
    c.psql("postgres", "CREATE DATABASE zoo")
        .expect("create zoo");
    c.psql_script("zoo", ZOO_SQL, &[]).expect("zoo.sql loads");
    c.psql("zoo", "ANALYZE").expect("analyze");
}

/// Settings as the CLI would build them from flags and environment for this sandbox.
pub fn settings(sb: &Sandbox, tables: &str) -> Settings {
    let home = sb.root.join("home");
    let args = ConnArgs {
        here: Some(sb.here.uri("zoo")),
        there: Some(sb.there.uri("zoo")),
        bucardo_db: Some(format!(
            "postgres://bucardo@{}:{}/bucardo",
            sb.here.host, sb.here.port
        )),
        bucardo_piddir: Some(sb.piddir.clone()),
        bucardo_logdir: Some(sb.logdir.clone()),
        log_dir: Some(sb.root.join("state")),
        tables: Some(tables.to_string()),
        ..Default::default()
    };
    let home_s = home.display().to_string();
    let env = [
        ("PGPASSWORD", sb.password.as_str()),
        ("BUCARDOPASS", BUCARDO_PASS),
        ("HOME", home_s.as_str()),
        ("PGDATABASE", "zoo"),
        ("HERE", "here"),
        ("THERE", "there"),
    ];
    Draft::from_args(&args, &env)
        .build()
        .expect("settings build")
}

/// A libpq passfile in the sandbox with the superuser's and Bucardo's passwords.
pub fn passfile(sb: &Sandbox) -> PathBuf {
    let path = sb.root.join("test.pgpass");
    let mut text = String::new();
    for c in [&sb.here, &sb.there] {
        text.push_str(&format!(
            "{}:{}:*:postgres:{}\n",
            c.host, c.port, sb.password
        ));
        text.push_str(&format!(
            "{}:{}:*:bucardo:{}\n",
            c.host, c.port, BUCARDO_PASS
        ));
    }
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn bucardo(sb: &Sandbox) -> Command {
    let home = sb.root.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut c = Command::new("bucardo");
    c.env("HOME", &home)
        .env("PGPASSFILE", passfile(sb))
        .env_remove("PGPASSWORD")
        .current_dir(&sb.root);
    c
}

fn run(mut c: Command) -> String {
    let out = c.output().expect("bucardo runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{c:?} failed: {text}");
    text
}

/// Bucardo's control database on HERE's cluster, as `bucardo install` makes it; the role is
/// created first with a known password, as the plan does.
pub fn install_bucardo(sb: &Sandbox) {
    sb.here
        .psql(
            "postgres",
            &format!("CREATE ROLE bucardo SUPERUSER LOGIN PASSWORD '{BUCARDO_PASS}'"),
        )
        .unwrap();
    let mut c = bucardo(sb);
    c.args(["--no-bucardorc", "--dbhost", &sb.here.host, "--dbport"])
        .arg(sb.here.port.to_string())
        .args(["--dbuser", "postgres", "--dbname", "postgres", "--piddir"])
        .arg(&sb.piddir)
        .args(["install", "--batch"]);
    let out = run(c);
    assert!(out.contains("Installation is now complete"), "{out}");
}

/// Starts the daemon against the control database on HERE's cluster (the sandbox kills it).
pub fn start_bucardo(sb: &Sandbox) {
    let mut c = bucardo(sb);
    c.args(["--no-bucardorc", "--dbhost", &sb.here.host, "--dbport"])
        .arg(sb.here.port.to_string())
        .args(["--dbuser", "bucardo", "--dbname", "bucardo", "--piddir"])
        .arg(&sb.piddir)
        .arg("--log-destination")
        .arg(&sb.logdir)
        .args(["start", "zoo-test"]);
    run(c);
}

/// Everything preflight must leave alone, as text: databases and roles of the cluster, and per
/// database its schemas, relations, triggers and (where installed) Bucardo's configuration.
pub fn snapshot(c: &Cluster) -> String {
    let q = |db: &str, sql: &str| c.psql(db, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut out = q(
        "postgres",
        "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database",
    );
    out.push_str(&q(
        "postgres",
        "SELECT string_agg(rolname || ':' || rolsuper, ',' ORDER BY rolname) FROM pg_roles",
    ));
    let dbs = q(
        "postgres",
        "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1",
    );
    for db in dbs.lines().filter(|l| !l.is_empty()) {
        out.push_str(&format!("== {db}\n"));
        out.push_str(&q(
            db,
            "SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace",
        ));
        out.push_str(&q(
            db,
            "SELECT count(*) || ' ' || md5(string_agg(oid::text || relname::text || relkind::text, ',' ORDER BY oid)) FROM pg_class",
        ));
        out.push_str(&q(
            db,
            "SELECT count(*) || ' ' || coalesce(string_agg(tgrelid::regclass || '.' || tgname, ',' ORDER BY 1), '') FROM pg_trigger",
        ));
        let has_bucardo = q(db, "SELECT to_regclass('bucardo.sync') IS NOT NULL");
        if has_bucardo.trim() == "t" {
            for t in [
                "db", "dbgroup", "dbmap", "herd", "herdmap", "goat", "sync", "syncrun",
            ] {
                out.push_str(&q(
                    db,
                    &format!("SELECT '{t} ' || count(*) || ' ' || coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM bucardo.{t} x"),
                ));
            }
        }
    }
    out
}
