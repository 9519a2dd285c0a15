//! Integration tests of the sandbox: real clusters, the real `widgets` load, the traffic writer
//! and cleanup. They need the packages `require_tools` names and fail (never skip) without them.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bucardo_bootstrap::sandbox::data::{self, WIDGETS_TABLES};
use bucardo_bootstrap::sandbox::writer::{self, WriterTable};
use bucardo_bootstrap::sandbox::{self, Cluster, Sandbox, SandboxOptions, Writer};

fn start_sandbox(opts: SandboxOptions) -> Sandbox {
    sandbox::require_tools().expect("tools for the sandbox tests");
    Sandbox::start(opts).expect("sandbox starts")
}

fn accepts_connections(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

fn count(cluster: &Cluster, db: &str, sql: &str) -> u64 {
    let out = cluster.psql(db, sql).expect(sql);
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{sql} gave {out:?}"))
}

fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        let state = s
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().next());
        !matches!(state, Some("Z") | Some("X"))
    })
}

fn children_of(parent: u32) -> Vec<u32> {
    let mut kids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            kids.push(pid);
        }
    }
    kids
}

#[test]
fn clusters_are_password_protected_and_drop_cleans_up_everything() {
    let sb = start_sandbox(SandboxOptions::default());
    let root = sb.root.clone();
    let (here_port, there_port) = (sb.here.port, sb.there.port);
    assert_ne!(here_port, there_port);
    for cluster in [&sb.here, &sb.there] {
        assert!(cluster.is_running(), "{} running", cluster.name);
        assert_eq!(
            cluster.psql("postgres", "SELECT 40 + 2").unwrap().trim(),
            "42"
        );
        let uri = cluster.uri("widgets");
        assert_eq!(
            uri,
            format!("postgres://postgres@127.0.0.1:{}/widgets", cluster.port)
        );
        assert!(!uri.contains(&sb.password));
        let meta = std::fs::metadata(&cluster.data_dir).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        if sandbox::cluster::is_root() {
            assert_ne!(meta.uid(), 0, "data dir must belong to postgres, not root");
        }
        let wrong = cluster
            .psql_command("postgres")
            .env("PGPASSWORD", "not-the-password")
            .arg("-c")
            .arg("SELECT 1")
            .output()
            .unwrap();
        assert!(!wrong.status.success(), "a wrong password must be refused");
        assert!(String::from_utf8_lossy(&wrong.stderr).contains("password authentication failed"));
        let settings = cluster
            .psql(
                "postgres",
                "SELECT current_setting('fsync') || current_setting('listen_addresses')",
            )
            .unwrap();
        assert_eq!(settings.trim(), "off127.0.0.1");
    }
    assert_eq!(
        sb.env(),
        vec![("PGPASSWORD".to_string(), sb.password.clone())]
    );
    for dir in [&sb.piddir, &sb.logdir] {
        assert!(dir.starts_with(&root));
        assert_eq!(
            std::fs::metadata(dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }

    // A stand-in Bucardo: an "MCP" named in the PID directory with a forked "kid" that is not.
    let mut mcp = Command::new("perl")
        .arg("-e")
        .arg(r#"if (fork) { $0 = "Bucardo Master Control Program test"; sleep 600 } else { $0 = "Bucardo Kid test"; sleep 600 }"#)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    std::fs::write(sb.piddir.join("bucardo.mcp.pid"), format!("{}\n", mcp.id())).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let kid = loop {
        if let Some(kid) = children_of(mcp.id()).first() {
            break *kid;
        }
        assert!(Instant::now() < deadline, "fake kid never appeared");
        std::thread::sleep(Duration::from_millis(20));
    };

    drop(sb);

    assert!(!root.exists(), "{} removed", root.display());
    assert!(!accepts_connections(here_port), "HERE postmaster gone");
    assert!(!accepts_connections(there_port), "THERE postmaster gone");
    let status = mcp.wait().unwrap();
    assert!(!status.success(), "the fake MCP was killed");
    assert!(!pid_alive(kid), "the fake kid was killed");
}

#[test]
fn keep_leaves_the_directory_but_stops_the_clusters() {
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("kept");
    let sb = start_sandbox(SandboxOptions {
        keep: true,
        root: Some(root.clone()),
        password: "another secret".to_string(),
    });
    assert_eq!(sb.root, root.canonicalize().unwrap());
    assert_eq!(sb.here.password(), "another secret");
    assert_eq!(sb.here.psql("postgres", "SELECT 1").unwrap().trim(), "1");
    let log = sb.there.log_file.clone();
    let ports = [sb.here.port, sb.there.port];
    sb.stop().expect("clean stop");
    assert!(log.is_file(), "server log kept");
    assert!(ports.iter().all(|p| !accepts_connections(*p)));
    let err = Sandbox::start(SandboxOptions {
        root: Some(root.clone()),
        ..SandboxOptions::default()
    })
    .unwrap_err();
    assert!(format!("{err:#}").contains("not empty"), "{err:#}");
    assert!(
        log.is_file(),
        "a refused start leaves a non-empty root alone"
    );
}

#[test]
fn widgets_has_the_promised_shape() {
    let t0 = Instant::now();
    let sb = start_sandbox(SandboxOptions::default());
    let started = t0.elapsed();
    data::load_widgets(&sb.here, "widgets", 1).expect("load widgets");
    eprintln!(
        "sandbox start {:.2?}, widgets scale 1 load {:.2?}",
        started,
        t0.elapsed() - started
    );

    let mut total = 0;
    for (table, rows) in WIDGETS_TABLES {
        let n = count(
            &sb.here,
            "widgets",
            &format!("SELECT count(*) FROM {table}"),
        );
        assert_eq!(n, *rows, "{table}");
        total += n;
    }
    assert!(total >= 100_000, "{total} rows");

    let keyed = |table: &str| {
        count(
            &sb.here,
            "widgets",
            &format!(
                "SELECT count(*) FROM pg_index WHERE indrelid = '{table}'::regclass \
                 AND (indisprimary OR indisunique)"
            ),
        )
    };
    assert_eq!(keyed(data::TABLE_WITHOUT_KEY), 0, "audit_log has no key");
    assert_eq!(keyed(r#""Sales"."Order Items""#), 1);
    let keyless = count(
        &sb.here,
        "widgets",
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
         AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND (i.indisprimary OR i.indisunique))",
    );
    assert_eq!(keyless, 1, "only audit_log lacks a key");
    assert_eq!(
        count(
            &sb.here,
            "widgets",
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f' \
             AND conrelid = 'public.bar'::regclass AND confrelid = 'public.foo'::regclass"
        ),
        1
    );
    assert_eq!(
        count(
            &sb.here,
            "widgets",
            "SELECT count(*) FROM pg_sequences WHERE schemaname = 'public'"
        ),
        6
    );
    assert_eq!(
        count(
            &sb.here,
            "widgets",
            "SELECT last_value FROM public.foo_id_seq"
        ),
        10_000
    );
    assert_eq!(
        count(
            &sb.here,
            "widgets",
            "SELECT count(*) FROM pg_class WHERE relname = 'Order Items' AND reltuples >= 20000"
        ),
        1,
        "ANALYZE ran"
    );

    data::load_widgets(&sb.there, "widgets", 0).expect("schema-only widgets");
    for (table, _) in WIDGETS_TABLES {
        assert_eq!(
            count(
                &sb.there,
                "widgets",
                &format!("SELECT count(*) FROM {table}")
            ),
            0
        );
    }
    assert!(
        data::load_widgets(&sb.there, "widgets", 0).is_err(),
        "database exists already"
    );
}

async fn wait_for_commits(writers: &[&Writer], at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while writers.iter().any(|w| w.commits() < at_least) {
        assert!(Instant::now() < deadline, "writers stalled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn client(cluster: &Cluster) -> tokio_postgres::Client {
    let (client, conn) = cluster
        .pg_config("widgets")
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_ledgers_match_the_database_across_a_restart() {
    let sb = tokio::task::spawn_blocking(|| {
        let sb = start_sandbox(SandboxOptions::default());
        data::load_widgets(&sb.here, "widgets", 1).unwrap();
        data::load_widgets(&sb.there, "widgets", 0).unwrap();
        sb
    })
    .await
    .unwrap();

    let a = Writer::start(sb.here.pg_config("widgets"), "a", 10_000_000)
        .await
        .unwrap();
    let b = Writer::start(sb.here.pg_config("widgets"), "b", 20_000_000)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    wait_for_commits(&[&a, &b], 100).await;

    let here = sb.here.clone();
    tokio::task::spawn_blocking(move || here.restart())
        .await
        .unwrap()
        .expect("restart HERE");
    let (a_before, b_before) = (a.commits(), b.commits());
    wait_for_commits(&[&a, &b], a_before.max(b_before) + 100).await;

    let (ra, rb) = (a.stop().await, b.stop().await);
    for r in [&ra, &rb] {
        eprintln!(
            "writer {}: {} commits, {} failed, {} unknown, {} reconnects, {} expected, {} deleted",
            r.label,
            r.commits,
            r.failed,
            r.ambiguous,
            r.reconnects,
            r.expected.len(),
            r.deleted.len()
        );
        assert!(
            r.reconnects >= 1,
            "writer {} reconnected after the restart",
            r.label
        );
        for table in WriterTable::ALL {
            assert!(
                r.expected.keys().any(|k| k.table == table),
                "{} wrote {table:?}",
                r.label
            );
        }
        assert!(!r.deleted.is_empty());
    }

    let here = client(&sb.here).await;
    writer::check(&ra, &here).await.expect("writer a on HERE");
    rb.check(&here).await.expect("writer b on HERE");

    // The ledger is the whole truth about the writer's own id range.
    let own_foo = |r: &writer::WriterReport| {
        r.expected
            .keys()
            .filter(|k| k.table == WriterTable::Foo)
            .count() as i64
    };
    let row = here
        .query_one(
            "SELECT count(*) FILTER (WHERE id BETWEEN 10000001 AND 19999999), \
                    count(*) FILTER (WHERE id >= 20000001) FROM public.foo",
            &[],
        )
        .await
        .unwrap();
    let (in_a, in_b): (i64, i64) = (row.get(0), row.get(1));
    let unsure = |r: &writer::WriterReport| r.uncertain.len() as i64;
    assert!(
        (own_foo(&ra)..=own_foo(&ra) + unsure(&ra)).contains(&in_a),
        "a: {in_a} rows"
    );
    assert!(
        (own_foo(&rb)..=own_foo(&rb) + unsure(&rb)).contains(&in_b),
        "b: {in_b} rows"
    );

    let there = client(&sb.there).await;
    let err = writer::check(&ra, &there).await.unwrap_err().to_string();
    assert!(err.contains("missing"), "{err}");

    tokio::task::spawn_blocking(move || drop(sb)).await.unwrap();
}

#[test]
fn pg_bindir_finds_initdb() {
    let bindir = sandbox::pg_bindir().unwrap();
    assert!(bindir.join("initdb").is_file());
    assert!(Path::new(&bindir).is_absolute());
}
