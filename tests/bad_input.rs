//! Bad input, run through the real binary against a sandbox: each case ends with one clear error
//! line and a non-zero exit status, within a bounded time, and leaves both clusters exactly as
//! they were (databases, roles, schemas, relations, triggers, sequences, database settings and
//! Bucardo's own tables).

mod common;

use bucardo_bootstrap::sandbox::{Cluster, Sandbox};
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

/// What a cluster holds, as text: equal snapshots mean nothing changed.
fn snapshot(c: &Cluster) -> String {
    let q = |db: &str, sql: &str| {
        c.psql(db, sql)
            .unwrap_or_else(|e| panic!("{db}: {sql}: {e:#}"))
    };
    let mut out = String::new();
    out += &q(
        "postgres",
        "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database",
    );
    out += &q(
        "postgres",
        "SELECT string_agg(rolname || ':' || rolsuper || ':' || md5(coalesce(rolpassword, '')), ',' ORDER BY rolname) FROM pg_authid",
    );
    out += &q("postgres", "SELECT string_agg(coalesce(setdatabase::text, '') || array_to_string(setconfig, ';'), ',') FROM pg_db_role_setting");
    let dbs = q("postgres", "SELECT string_agg(datname, ' ') FROM pg_database WHERE datallowconn AND datname <> 'template1'");
    for db in dbs.split_whitespace() {
        out += &format!("\n[{db}]\n");
        out += &q(
            db,
            "SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace",
        );
        out += &q(
            db,
            "SELECT string_agg(relnamespace::regnamespace::text || '.' || relname || ':' || relkind::text, ',' ORDER BY 1) FROM pg_class WHERE relnamespace::regnamespace::text NOT IN ('pg_catalog', 'information_schema', 'pg_toast')",
        );
        out += &q(db, "SELECT string_agg(tgrelid::regclass::text || ':' || tgname, ',' ORDER BY 1) FROM pg_trigger WHERE NOT tgisinternal");
        out += &q(db, "SELECT string_agg(seqrelid::regclass::text || ':' || seqincrement, ',' ORDER BY 1) FROM pg_sequence");
        out += &q(
            db,
            "SELECT string_agg(lanname, ',' ORDER BY 1) FROM pg_language",
        );
        if db == "bucardo" {
            for t in ["db", "dbgroup", "herd", "sync", "goat"] {
                let col = if t == "goat" {
                    "schemaname || '.' || tablename"
                } else {
                    "name"
                };
                out += &q(db, &format!("SELECT '{t}: ' || coalesce(string_agg({col}, ',' ORDER BY 1), '') FROM bucardo.{t}"));
            }
        }
    }
    out
}

fn snapshots(sb: &Sandbox) -> (String, String) {
    (snapshot(&sb.here), snapshot(&sb.there))
}

/// The flags of `common::conn_flags` with some replaced or removed (`None`).
fn flags(sb: &Sandbox, tables: &str, replace: &[(&str, Option<&str>)]) -> Vec<String> {
    let base = common::conn_flags(sb, tables);
    let mut out = Vec::new();
    let mut i = 0;
    while i < base.len() {
        let (k, v) = (&base[i], &base[i + 1]);
        match replace.iter().find(|(r, _)| r == k) {
            Some((_, Some(new))) => out.extend([k.clone(), new.to_string()]),
            Some((_, None)) => {}
            None => out.extend([k.clone(), v.clone()]),
        }
        i += 2;
    }
    out
}

struct Case<'a> {
    name: &'a str,
    env: Vec<(&'a str, String)>,
    args: Vec<String>,
    /// Every one of these must be in the error line.
    expect: Vec<&'a str>,
    within: Duration,
}

/// Runs `run --yes` with the case's flags; returns what is wrong with the outcome, if anything.
fn check(sb: &Sandbox, case: &Case) -> Option<String> {
    let before = snapshots(sb);
    let mut cmd = common::tool(sb);
    cmd.arg("run").arg("--yes").args(&case.args);
    for (k, v) in &case.env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let out = cmd.output().unwrap();
    let took = started.elapsed();
    let after = snapshots(sb);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    // Either one `error: ...` line, or preflight's report: its FAIL lines (one line each) and
    // the closing "preflight failed" line.
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("error"))
        .collect();
    let fails: Vec<&str> = lines
        .iter()
        .map(|l| l.trim_start())
        .filter(|l| l.starts_with("FAIL"))
        .collect();
    let preflight = lines.iter().any(|l| l.starts_with("preflight failed"));
    let mut wrong = Vec::new();
    if out.status.success() || out.status.code().is_none() {
        wrong.push(format!("exit status {:?}", out.status.code()));
    }
    let line = match (errors.as_slice(), preflight && !fails.is_empty()) {
        ([one], false) => one.to_string(),
        ([], true) => fails.join(" / "),
        _ => {
            wrong.push(format!(
                "{} error lines, {} FAIL lines",
                errors.len(),
                fails.len()
            ));
            errors.join(" / ")
        }
    };
    for e in &case.expect {
        if !line.contains(e) {
            wrong.push(format!("the error does not say {e:?}"));
        }
    }
    if line.len() > 600 {
        wrong.push(format!("the error line is {} characters long", line.len()));
    }
    if took > case.within {
        wrong.push(format!(
            "took {:.1} s (limit {} s)",
            took.as_secs_f64(),
            case.within.as_secs()
        ));
    }
    if before.0 != after.0 {
        wrong.push(format!(
            "HERE changed:\n{}\n--- after\n{}",
            before.0, after.0
        ));
    }
    if before.1 != after.1 {
        wrong.push(format!(
            "THERE changed:\n{}\n--- after\n{}",
            before.1, after.1
        ));
    }
    eprintln!(
        "{}: exit {:?} in {:.1} s: {line}",
        case.name,
        out.status.code(),
        took.as_secs_f64()
    );
    (!wrong.is_empty()).then(|| {
        format!(
            "{}: {}\n{}",
            case.name,
            wrong.join("; "),
            common::show(&out)
        )
    })
}

/// A TCP port that accepts connections and never says a word (a server that hangs), until the
/// returned guard is dropped.
struct SilentListener {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl SilentListener {
    fn start() -> SilentListener {
        use std::sync::atomic::Ordering;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            l.set_nonblocking(true).unwrap();
            let mut held = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut s, _)) => {
                        s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
                        let _ = s.read(&mut [0u8; 64]);
                        held.push(s);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        SilentListener { port, stop }
    }
}

impl Drop for SilentListener {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Undoes what a case that went wrong may have left behind, so that the next case starts from
/// the same state (the journal too: a later run would resume from it).
fn tidy(sb: &Sandbox) {
    if let Ok(entries) = std::fs::read_dir(common::state_dir(sb)) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("journal") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    for c in [&sb.here, &sb.there] {
        let _ = c.psql("postgres", "DROP DATABASE IF EXISTS bucardo WITH (FORCE)");
    }
    let _ = sb
        .there
        .psql("postgres", "DROP DATABASE IF EXISTS widgets WITH (FORCE)");
    for c in [&sb.here, &sb.there] {
        let _ = c.psql("postgres", "DROP ROLE IF EXISTS bucardo");
    }
}

#[test]
fn bad_input_fails_cleanly_and_changes_nothing() {
    let sb = common::sandbox_with_widgets(0);
    let here_uri = sb.here.uri("widgets");
    let closed = bucardo_bootstrap::sandbox::free_port().unwrap();
    let listener = SilentListener::start();
    let silent = listener.port;
    let fast = Duration::from_secs(15);
    let mut failures = Vec::new();
    let mut run = |case: Case| {
        if let Some(f) = check(&sb, &case) {
            failures.push(f);
            tidy(&sb);
        }
    };

    // Malformed URIs and environment values.
    let there_port = sb.there.port.to_string();
    for (name, env, args, expect) in [
        (
            "mysql URI",
            vec![],
            flags(
                &sb,
                "all",
                &[("--here", Some("mysql://postgres@127.0.0.1/widgets"))],
            ),
            vec!["HERE", "not a PostgreSQL URI"],
        ),
        (
            "bad port in URI",
            vec![],
            flags(
                &sb,
                "all",
                &[(
                    "--there",
                    Some("postgres://postgres@127.0.0.1:99999/widgets"),
                )],
            ),
            vec!["THERE", "not a port number"],
        ),
        (
            "bad sslmode in URI",
            vec![],
            flags(
                &sb,
                "all",
                &[("--here", Some(&format!("{here_uri}?sslmode=sometimes")))],
            ),
            vec!["HERE", "sslmode"],
        ),
        (
            "unknown URI parameter",
            vec![],
            flags(
                &sb,
                "all",
                &[("--here", Some(&format!("{here_uri}?sslmdoe=require")))],
            ),
            vec!["HERE", "sslmdoe"],
        ),
        (
            "PGPORT=abc",
            vec![("PGPORT", "abc".to_string())],
            flags(&sb, "all", &[("--here", None)]),
            vec!["HERE", "\"abc\" is not a port number"],
        ),
        (
            "PGSSLMODE=bogus",
            vec![
                ("PGSSLMODE", "bogus".into()),
                ("PGPORT", there_port.clone()),
            ],
            flags(&sb, "all", &[("--here", None)]),
            vec!["sslmode"],
        ),
        (
            "PGHOST with a space",
            vec![("PGHOST", "bad host".into())],
            flags(&sb, "all", &[("--here", None)]),
            vec!["HERE", "not a host name"],
        ),
        (
            "malformed table list",
            vec![],
            flags(&sb, "a.b.c", &[]),
            vec!["--tables", "more than one dot"],
        ),
        (
            "unterminated quote in table list",
            vec![],
            flags(&sb, "\"Sales", &[]),
            vec!["--tables", "unterminated"],
        ),
        (
            "empty table list",
            vec![],
            flags(&sb, " , ", &[]),
            vec!["--tables"],
        ),
    ] {
        run(Case {
            name,
            env,
            args,
            expect,
            within: fast,
        });
    }

    // Unreachable servers: refused at once, or silent until the connect timeout.
    for (name, uri, expect) in [
        (
            "closed port",
            format!("postgres://postgres@127.0.0.1:{closed}/widgets"),
            vec!["HERE", "check that the server is up"],
        ),
        (
            "nothing on 127.0.0.2",
            format!("postgres://postgres@127.0.0.2:{closed}/widgets"),
            vec!["HERE", "127.0.0.2"],
        ),
        (
            "a server that never answers",
            format!("postgres://postgres@127.0.0.1:{silent}/widgets"),
            vec!["HERE", "no answer within"],
        ),
    ] {
        run(Case {
            name,
            env: vec![],
            args: flags(&sb, "all", &[("--here", Some(&uri))]),
            expect,
            within: fast,
        });
    }
    run(Case {
        name: "THERE unreachable",
        env: vec![],
        args: flags(
            &sb,
            "all",
            &[(
                "--there",
                Some(&format!("postgres://postgres@127.0.0.1:{silent}/widgets")),
            )],
        ),
        expect: vec!["THERE", "no answer within"],
        within: Duration::from_secs(25),
    });

    // A log directory anyone can write to (like /tmp): refused, and its mode left alone.
    let shared = sb.root.join("shared-tmp");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    run(Case {
        name: "a log directory other users can write to",
        env: vec![],
        args: flags(&sb, "all", &[("--log-dir", Some(shared.to_str().unwrap()))]),
        expect: vec!["other users can write to it", "--log-dir"],
        within: fast,
    });
    assert_eq!(
        std::fs::metadata(&shared).unwrap().permissions().mode() & 0o7777,
        0o1777,
        "the shared directory keeps its mode"
    );

    // Credentials.
    run(Case {
        name: "wrong PGPASSWORD",
        env: vec![("PGPASSWORD", "not-the-password-1".into())],
        args: flags(&sb, "all", &[]),
        expect: vec![
            "HERE",
            "password authentication failed",
            "check the password",
        ],
        within: fast,
    });

    // Tables.
    run(Case {
        name: "keyless table named explicitly",
        env: vec![],
        args: flags(&sb, "public.audit_log", &[]),
        expect: vec!["public.audit_log", "primary key"],
        within: fast,
    });
    run(Case {
        name: "table that does not exist",
        env: vec![],
        args: flags(&sb, "public.nope", &[]),
        expect: vec!["public.nope", "does not exist"],
        within: fast,
    });

    // The bucardo program is missing: refused before anything changes.
    run(Case {
        name: "missing bucardo binary",
        env: vec![("BUCARDO_BIN", "/nonexistent/bin/bucardo".into())],
        args: flags(&sb, "all", &[]),
        expect: vec!["/nonexistent/bin/bucardo"],
        within: Duration::from_secs(30),
    });

    // THERE not empty.
    sb.there
        .psql("postgres", "CREATE DATABASE widgets")
        .unwrap();
    sb.there
        .psql(
            "widgets",
            "CREATE TABLE public.foo (id int PRIMARY KEY); INSERT INTO public.foo VALUES (1)",
        )
        .unwrap();
    run(Case {
        name: "THERE not empty",
        env: vec![],
        args: flags(&sb, "public.foo", &[]),
        expect: vec!["THERE", "public.foo"],
        within: fast,
    });
    sb.there
        .psql("postgres", "DROP DATABASE IF EXISTS widgets")
        .unwrap();

    // A read-only THERE.
    sb.there
        .psql("postgres", "CREATE DATABASE widgets")
        .unwrap();
    sb.there
        .psql(
            "postgres",
            "ALTER DATABASE widgets SET default_transaction_read_only = on",
        )
        .unwrap();
    run(Case {
        name: "read-only THERE",
        env: vec![],
        args: flags(&sb, "all", &[]),
        expect: vec!["read-only"],
        within: Duration::from_secs(30),
    });
    sb.there
        .psql("postgres", "DROP DATABASE IF EXISTS widgets")
        .unwrap();

    // A Bucardo name already taken: a control database where `herewidgets` is registered.
    let setup = bucardo_setup(&sb);
    run(Case {
        name: "Bucardo name taken",
        env: vec![],
        args: flags(&sb, "all", &[]),
        expect: vec!["herewidgets", "already"],
        within: Duration::from_secs(30),
    });
    drop(setup);

    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Installs Bucardo's control database on HERE's cluster and registers HERE as `herewidgets`.
fn bucardo_setup(sb: &Sandbox) -> tempfile::TempDir {
    let verifier = postgres_protocol::password::scram_sha_256(common::BUCARDO_PASS.as_bytes());
    sb.here
        .psql(
            "postgres",
            &format!("CREATE ROLE bucardo SUPERUSER LOGIN PASSWORD '{verifier}'"),
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pgpass = dir.path().join("pgpass");
    std::fs::write(
        &pgpass,
        format!(
            "127.0.0.1:{p}:*:postgres:{}\n127.0.0.1:{p}:*:bucardo:{}\n",
            sb.password,
            common::BUCARDO_PASS,
            p = sb.here.port
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let bucardo = |args: &[&str], user: &str, db: &str| {
        let out = std::process::Command::new("bucardo")
            .args([
                "--no-bucardorc",
                "--dbhost",
                "127.0.0.1",
                "--dbport",
                &sb.here.port.to_string(),
            ])
            .args(["--dbuser", user, "--dbname", db, "--piddir"])
            .arg(dir.path())
            .args(args)
            .current_dir(dir.path())
            .env("PGPASSFILE", &pgpass)
            .env_remove("PGPASSWORD")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "bucardo {args:?}: {}",
            common::show(&out)
        );
    };
    bucardo(&["install", "--batch"], "postgres", "postgres");
    let port = format!("port={}", sb.here.port);
    bucardo(
        &[
            "add",
            "db",
            "herewidgets",
            "dbname=widgets",
            "host=127.0.0.1",
            &port,
            "user=bucardo",
        ],
        "bucardo",
        "bucardo",
    );
    dir
}
