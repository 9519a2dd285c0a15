//! Preflight against real clusters and a real Bucardo: each finding is made to fire and to pass,
//! several per sandbox, and preflight is shown to leave both servers exactly as it found them.

mod zoo;

use bucardo_bootstrap::engine::ident::TableName;
use bucardo_bootstrap::engine::preflight::{self, has_fail, Finding, Options, Severity};
use bucardo_bootstrap::engine::secret::Secret;
use bucardo_bootstrap::engine::settings::Settings;
use bucardo_bootstrap::sandbox::{free_port, Sandbox};
use std::time::{Duration, Instant};

fn show(f: &[Finding]) -> String {
    bucardo_bootstrap::session::text::findings_text(f)
}

/// The one finding of `group`/`check` with `severity` whose message contains `text`.
fn expect<'a>(
    f: &'a [Finding],
    group: &str,
    check: &str,
    severity: Severity,
    text: &str,
) -> &'a Finding {
    f.iter()
        .find(|x| {
            x.group == group
                && x.check == check
                && x.severity == severity
                && x.message.contains(text)
        })
        .unwrap_or_else(|| {
            panic!(
                "no {severity:?} {group}/{check} containing {text:?} in:\n{}",
                show(f)
            )
        })
}

fn none_of(f: &[Finding], group: &str, check: &str, severity: Severity) {
    let hits: Vec<&Finding> = f
        .iter()
        .filter(|x| x.group == group && x.check == check && x.severity == severity)
        .collect();
    assert!(
        hits.is_empty(),
        "unexpected {severity:?} {group}/{check}: {hits:?}\n{}",
        show(f)
    );
}

fn fix(f: &Finding) -> &str {
    f.fix
        .as_deref()
        .unwrap_or_else(|| panic!("no fix in {f:?}"))
}

async fn sandbox() -> Sandbox {
    tokio::task::spawn_blocking(zoo::zoo_sandbox).await.unwrap()
}

async fn run(s: &Settings) -> Vec<Finding> {
    preflight::run(s, None).await
}

fn skewed_clock() -> f64 {
    preflight::system_clock() + 5.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fresh_servers_pass_and_preflight_changes_nothing() {
    let sb = sandbox().await;
    let s = zoo::settings(
        &sb,
        r#"public.keyed,public.unique_ok,"Mixed Case"."Order Items",public.measurements_2024,public.measurements_2025"#,
    );
    let before = (zoo::snapshot(&sb.here), zoo::snapshot(&sb.there));
    let started = Instant::now();
    let f = run(&s).await;
    let took = started.elapsed();
    assert!(!has_fail(&f), "{}", show(&f));
    for group in ["HERE", "THERE"] {
        expect(&f, group, "connect", Severity::Pass, "answers");
        expect(&f, group, "version", Severity::Pass, "PostgreSQL 15");
        expect(
            &f,
            group,
            "privileges",
            Severity::Pass,
            "postgres is a superuser",
        );
        expect(
            &f,
            group,
            "bucardo role",
            Severity::Pass,
            "does not exist yet: the plan creates it",
        );
    }
    expect(
        &f,
        "HERE",
        "long transactions",
        Severity::Pass,
        "no transaction open longer than 5 min",
    );
    expect(
        &f,
        "THERE",
        "database",
        Severity::Pass,
        "database zoo does not exist yet: the plan creates it",
    );
    expect(&f, "Bucardo", "CLI", Severity::Pass, "bucardo 5.6.0");
    expect(
        &f,
        "Bucardo",
        "control database",
        Severity::Pass,
        "PL/PerlU available): the plan installs it",
    );
    let d = expect(
        &f,
        "Bucardo",
        "daemon",
        Severity::Warn,
        "not running: the plan starts it",
    );
    assert!(fix(d).contains(" start bucardo-bootstrap"), "{d:?}");
    expect(
        &f,
        "Bucardo",
        "PID directory",
        Severity::Pass,
        "is writable",
    );
    expect(
        &f,
        "Tables",
        "eligibility",
        Severity::Pass,
        "5 of 5 chosen tables can be replicated",
    );
    none_of(&f, "Tables", "foreign keys", Severity::Warn);
    for tool in ["pg_dump", "psql", "pg_dumpall"] {
        expect(
            &f,
            "Jump box",
            tool,
            Severity::Pass,
            "is at least as new as the servers (HERE 15, THERE 15)",
        );
    }
    expect(
        &f,
        "Jump box",
        "clock",
        Severity::Pass,
        "clocks agree within 1 s",
    );
    expect(&f, "Jump box", "state directory", Severity::Pass, "");
    eprintln!(
        "preflight on fresh servers took {:.2} s",
        took.as_secs_f64()
    );

    // Clock skew: this machine's clock 5 s ahead of both servers.
    let opts = Options {
        local_clock: skewed_clock,
        ..Options::default()
    };
    let f = preflight::run_with(&s, None, &opts).await;
    let w = expect(
        &f,
        "Jump box",
        "clock",
        Severity::Warn,
        "HERE's clock is 5.0 s behind this machine's",
    );
    assert!(fix(w).contains("NTP"));
    expect(
        &f,
        "Jump box",
        "clock",
        Severity::Warn,
        "THERE's clock is 5.0 s behind this machine's",
    );
    expect(&f, "Jump box", "clock", Severity::Pass, "THERE/HERE");

    // A transaction left open on HERE.
    let (holder, conn) = sb
        .here
        .pg_config("zoo")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    holder
        .batch_execute("BEGIN; SELECT count(*) FROM public.keyed")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let opts = Options {
        long_transaction: Duration::from_secs(1),
        ..Options::default()
    };
    let f = preflight::run_with(&s, None, &opts).await;
    let w = expect(
        &f,
        "HERE",
        "long transactions",
        Severity::Warn,
        &format!("pid {pid} (postgres, idle in transaction)"),
    );
    assert!(
        w.message.contains("SELECT count(*) FROM public.keyed"),
        "{w:?}"
    );
    assert_eq!(
        fix(w),
        format!("wait for it to end, or: SELECT pg_terminate_backend({pid});")
    );
    holder.batch_execute("COMMIT").await.unwrap();
    let f = preflight::run_with(&s, None, &opts).await;
    expect(
        &f,
        "HERE",
        "long transactions",
        Severity::Pass,
        "no transaction open longer than 1 s",
    );

    let after = (zoo::snapshot(&sb.here), zoo::snapshot(&sb.there));
    assert_eq!(before, after, "preflight changed a server");
    assert!(!after.1.contains("zoo"), "THERE's database was not created");

    let text = bucardo_bootstrap::session::text::findings_text(&f);
    let order: Vec<usize> = ["HERE\n", "THERE\n", "Bucardo\n", "Tables\n", "Jump box\n"]
        .iter()
        .map(|g| text.find(g).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert!(text.contains("fix: "), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn table_traps_fire_and_there_tables_must_be_empty_and_alike() {
    let sb = sandbox().await;
    let traps = r#"public.no_key,public.partial_unique,public.nullable_unique,public.expr_unique,public.measurements,public.generated_col,public.blobs,public."we""ird",public.unlogged_t,public.triggered,public.orders"#;
    let f = run(&zoo::settings(&sb, traps)).await;
    assert!(has_fail(&f));
    for (table, text) in [
        ("public.no_key", "no primary key or usable unique index"),
        (
            "public.partial_unique",
            "unique index partial_unique_active is partial",
        ),
        ("public.nullable_unique", "nullable column(s) email"),
        ("public.expr_unique", "indexes an expression"),
    ] {
        let x = expect(
            &f,
            "Tables",
            "eligibility",
            Severity::Fail,
            &format!("{table}: no primary key or usable unique index"),
        );
        assert!(x.message.contains(text), "{x:?}");
        assert!(fix(x).contains("ADD PRIMARY KEY"), "{x:?}");
    }
    let p = expect(
        &f,
        "Tables",
        "eligibility",
        Severity::Fail,
        "public.measurements: partitioned parent",
    );
    assert!(
        p.message
            .contains("public.measurements_2024, public.measurements_2025"),
        "{p:?}"
    );
    expect(
        &f,
        "Tables",
        "eligibility",
        Severity::Fail,
        "public.generated_col: generated column(s) total",
    );
    let w = expect(
        &f,
        "Tables",
        "eligibility",
        Severity::Fail,
        "\"public\".\"we\"\"ird\": Bucardo's CLI only accepts",
    );
    assert!(fix(w).contains("RENAME TO"), "{w:?}");
    expect(
        &f,
        "Tables",
        "caution",
        Severity::Warn,
        "public.blobs: column(s) raw_oid, doc hold large-object OIDs",
    );
    expect(
        &f,
        "Tables",
        "caution",
        Severity::Warn,
        "public.unlogged_t: UNLOGGED",
    );
    expect(
        &f,
        "Tables",
        "caution",
        Severity::Warn,
        "public.triggered: trigger(s) triggered_touch do not fire",
    );
    // A foreign key to a table left out fails: THERE would violate it.
    let fk = expect(
        &f,
        "Tables",
        "foreign keys",
        Severity::Fail,
        "public.orders references public.customers, which would be left out (not chosen): THERE would hold rows that violate the foreign key",
    );
    assert!(
        fix(fk).contains("replicate public.customers too")
            && fix(fk).contains("--leave-out public.customers"),
        "{fk:?}"
    );
    expect(
        &f,
        "Tables",
        "eligibility",
        Severity::Pass,
        "4 of 11 chosen tables",
    );

    // The other direction; then the same, left out knowingly; both sides chosen; a name that
    // does not exist.
    let f = run(&zoo::settings(&sb, "public.customers")).await;
    expect(
        &f,
        "Tables",
        "foreign keys",
        Severity::Fail,
        "public.orders references public.customers, which would be left out",
    );
    let mut knowingly = zoo::settings(&sb, "public.customers");
    knowingly.leave_out = vec![TableName::new("public", "orders")];
    let f = run(&knowingly).await;
    expect(
        &f,
        "Tables",
        "foreign keys",
        Severity::Warn,
        "public.orders references public.customers, which is left out (--leave-out): the two sides can violate that foreign key",
    );
    none_of(&f, "Tables", "foreign keys", Severity::Fail);
    let f = run(&zoo::settings(
        &sb,
        "public.customers,public.orders,public.keyed",
    ))
    .await;
    none_of(&f, "Tables", "foreign keys", Severity::Warn);
    none_of(&f, "Tables", "caution", Severity::Warn);
    assert!(!has_fail(&f), "{}", show(&f));
    let f = run(&zoo::settings(&sb, "public.keyed,public.nope")).await;
    expect(
        &f,
        "Tables",
        "selection",
        Severity::Fail,
        "public.nope does not exist on HERE",
    );

    // `all` leaves the ineligible tables out, each named with its reason; the partitioned
    // parent replicates through its leaves.
    let f = run(&zoo::settings(&sb, "all")).await;
    for t in [
        "public.no_key",
        "public.generated_col",
        "\"public\".\"we\"\"ird\"",
    ] {
        expect(&f, "Tables", "left out", Severity::Warn, t);
    }
    assert_eq!(
        f.iter()
            .filter(|x| x.check == "left out" && x.severity == Severity::Warn)
            .count(),
        6,
        "{}",
        show(&f)
    );
    none_of(&f, "Tables", "foreign keys", Severity::Fail);
    expect(
        &f,
        "Tables",
        "coverage",
        Severity::Pass,
        "(2 of them partitions)",
    );
    expect(
        &f,
        "Tables",
        "eligibility",
        Severity::Pass,
        "11 of 11 chosen tables",
    );
    none_of(&f, "Tables", "eligibility", Severity::Fail);

    // THERE: absent tables pass; some but not all fail; rows or other columns fail.
    let mut s = zoo::settings(&sb, "public.keyed,public.customers");
    s.leave_out = vec![TableName::new("public", "orders")];
    sb.there.psql("postgres", "CREATE DATABASE zoo").unwrap();
    let f = run(&s).await;
    expect(
        &f,
        "THERE",
        "database",
        Severity::Pass,
        "database zoo exists",
    );
    expect(
        &f,
        "THERE",
        "tables",
        Severity::Pass,
        "none of the chosen tables exists on THERE yet",
    );
    sb.there
        .psql("zoo", "CREATE TABLE public.unrelated (id int)")
        .unwrap();
    let f = run(&s).await;
    expect(
        &f,
        "THERE",
        "tables",
        Severity::Warn,
        "THERE already has 1 other table(s) (public.unrelated)",
    );
    sb.there
        .psql("zoo", "CREATE TABLE public.keyed (id serial PRIMARY KEY, label text NOT NULL); INSERT INTO public.keyed (label) VALUES ('x')")
        .unwrap();
    let f = run(&s).await;
    let x = expect(
        &f,
        "THERE",
        "tables",
        Severity::Fail,
        "THERE has 1 of the 2 chosen tables (public.keyed) but not public.customers",
    );
    assert!(fix(x).contains(r#"DROP TABLE "public"."keyed""#));
    let x = expect(
        &f,
        "THERE",
        "empty",
        Severity::Fail,
        "public.keyed already holds rows on THERE",
    );
    assert_eq!(fix(x), r#"on THERE: TRUNCATE "public"."keyed";"#);
    sb.there
        .psql(
            "zoo",
            "CREATE TABLE public.customers (id bigint PRIMARY KEY, name text NOT NULL, extra text)",
        )
        .unwrap();
    let f = run(&s).await;
    none_of(&f, "THERE", "tables", Severity::Fail);
    let x = expect(
        &f,
        "THERE",
        "columns",
        Severity::Fail,
        "public.customers differs between the sides",
    );
    assert!(
        x.message.contains(
            r#"HERE ("id" integer, "name" text), THERE ("id" bigint, "name" text, "extra" text)"#
        ),
        "{x:?}"
    );
    none_of(&f, "THERE", "columns", Severity::Pass);
    sb.there
        .psql("zoo", "TRUNCATE public.keyed; DROP TABLE public.customers; CREATE TABLE public.customers (id integer PRIMARY KEY, name text NOT NULL)")
        .unwrap();
    let f = run(&s).await;
    expect(
        &f,
        "THERE",
        "tables",
        Severity::Pass,
        "all 2 chosen tables exist on THERE, empty, with HERE's columns",
    );
    assert!(!has_fail(&f), "{}", show(&f));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connection_failures_and_missing_privileges_name_the_host() {
    let sb = sandbox().await;
    let good = zoo::settings(&sb, "public.keyed");

    let mut s = good.clone();
    s.there.password = Some(Secret::new("wrong-password"));
    let f = run(&s).await;
    let x = expect(
        &f,
        "THERE",
        "connect",
        Severity::Fail,
        "cannot connect to THERE",
    );
    assert!(
        x.message.contains("password authentication failed"),
        "{x:?}"
    );
    assert!(fix(x).contains("password"));
    expect(&f, "HERE", "connect", Severity::Pass, "answers");
    none_of(&f, "HERE", "connect", Severity::Fail);

    let mut s = good.clone();
    s.here.password = Some(Secret::new("wrong-password"));
    let f = run(&s).await;
    expect(
        &f,
        "HERE",
        "connect",
        Severity::Fail,
        "password authentication failed",
    );
    expect(&f, "THERE", "connect", Severity::Pass, "answers");

    let mut s = good.clone();
    s.here.port = free_port().unwrap();
    let started = Instant::now();
    let f = run(&s).await;
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "took {:?}",
        started.elapsed()
    );
    let x = expect(
        &f,
        "HERE",
        "connect",
        Severity::Fail,
        &format!(
            "cannot connect to HERE (postgres://postgres@127.0.0.1:{}/zoo)",
            s.here.port
        ),
    );
    assert!(fix(x).contains("server is up"), "{x:?}");

    let mut s = good.clone();
    s.there.host = "10.255.255.1".into();
    s.there.connect_timeout_s = 3;
    let started = Instant::now();
    let f = run(&s).await;
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "took {:?}",
        started.elapsed()
    );
    expect(
        &f,
        "THERE",
        "connect",
        Severity::Fail,
        "cannot connect to THERE (postgres://postgres@10.255.255.1:",
    );

    // Non-superusers: every missing privilege named, with its GRANT.
    for c in [&sb.here, &sb.there] {
        c.psql("postgres", "CREATE ROLE plain LOGIN PASSWORD 'plain-pass'")
            .unwrap();
    }
    let mut s = good.clone();
    for spec in [&mut s.here, &mut s.there] {
        spec.user = "plain".into();
        spec.password = Some(Secret::new("plain-pass"));
    }
    let f = run(&s).await;
    let x = expect(
        &f,
        "HERE",
        "privileges",
        Severity::Fail,
        "plain is not a superuser and lacks",
    );
    for missing in [
        "creating the superuser role bucardo",
        "SELECT on keyed",
        "ownership of sequence keyed_id_seq (it goes with table keyed)",
    ] {
        assert!(x.message.contains(missing), "{missing}: {x:?}");
    }
    for grant in [
        "GRANT SELECT ON keyed TO plain;",
        "ALTER TABLE keyed OWNER TO plain;",
        r#"ALTER ROLE "plain" SUPERUSER;"#,
    ] {
        assert!(fix(x).contains(grant), "{grant}: {x:?}");
    }
    let x = expect(
        &f,
        "THERE",
        "database",
        Severity::Fail,
        "database zoo does not exist and plain may not create databases",
    );
    assert!(
        fix(x).starts_with(r#"ALTER ROLE "plain" CREATEDB;"#),
        "{x:?}"
    );
    let x = expect(
        &f,
        "THERE",
        "privileges",
        Severity::Fail,
        "SET on parameter session_replication_role",
    );
    assert!(
        fix(x).contains(r#"GRANT SET ON PARAMETER session_replication_role TO "plain";"#),
        "{x:?}"
    );

    let grant_here = format!(
        "ALTER TABLE public.keyed OWNER TO plain; CREATE ROLE bucardo SUPERUSER LOGIN PASSWORD '{}'",
        zoo::BUCARDO_PASS
    );
    sb.here.psql("zoo", &grant_here).unwrap();
    sb.there
        .psql(
            "postgres",
            &format!(
                "ALTER ROLE plain CREATEDB; GRANT SET ON PARAMETER session_replication_role TO plain; CREATE ROLE bucardo SUPERUSER LOGIN PASSWORD '{}'",
                zoo::BUCARDO_PASS
            ),
        )
        .unwrap();
    let f = run(&s).await;
    for group in ["HERE", "THERE"] {
        expect(
            &f,
            group,
            "privileges",
            Severity::Warn,
            "plain is not a superuser, but holds every privilege the plan needs",
        );
        expect(
            &f,
            group,
            "bucardo role",
            Severity::Pass,
            "exists, is a superuser and BUCARDOPASS logs in",
        );
    }
    expect(
        &f,
        "THERE",
        "database",
        Severity::Pass,
        "the plan creates it",
    );

    // Bucardo's role exists but is no superuser, or has another password.
    sb.there
        .psql("postgres", "ALTER ROLE bucardo NOSUPERUSER")
        .unwrap();
    let mut s = good.clone();
    s.bucardo.password = Some(Secret::new("not-its-password"));
    let f = run(&s).await;
    let x = expect(
        &f,
        "THERE",
        "bucardo role",
        Severity::Fail,
        "is not a superuser",
    );
    assert_eq!(fix(x), r#"ALTER ROLE "bucardo" SUPERUSER;"#);
    expect(
        &f,
        "HERE",
        "bucardo role",
        Severity::Fail,
        "BUCARDOPASS does not log in",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bucardo_install_names_and_daemon() {
    let sb = sandbox().await;
    let s = zoo::settings(&sb, "public.keyed");

    // The CLI missing, directories that cannot be used, no BUCARDOPASS.
    let mut bad = s.clone();
    bad.bucardo.program = "/nonexistent/bucardo".into();
    let file = sb.root.join("a-file");
    std::fs::write(&file, "").unwrap();
    bad.bucardo.piddir = file.clone();
    bad.bucardo.logdir = file.join("log");
    bad.bucardo.password = None;
    let f = run(&bad).await;
    let x = expect(&f, "Bucardo", "CLI", Severity::Fail, "/nonexistent/bucardo");
    assert!(fix(x).contains("apt-get install bucardo"));
    expect(
        &f,
        "Bucardo",
        "PID directory",
        Severity::Fail,
        "is not a directory",
    );
    expect(
        &f,
        "Bucardo",
        "log directory",
        Severity::Fail,
        "a-file is a file",
    );
    expect(
        &f,
        "Bucardo",
        "password",
        Severity::Fail,
        "no password for Bucardo's role bucardo",
    );

    tokio::task::block_in_place(|| zoo::install_bucardo(&sb));
    let f = run(&s).await;
    expect(
        &f,
        "Bucardo",
        "control database",
        Severity::Pass,
        "Bucardo 5.6.0 is installed in postgres://bucardo@127.0.0.1:",
    );
    expect(
        &f,
        "Bucardo",
        "names",
        Severity::Pass,
        "databases herezoo and therezoo, relgroup myrels, dbgroup mydbs and sync mysync are free",
    );
    expect(&f, "Bucardo", "daemon", Severity::Warn, "not running");
    expect(
        &f,
        "HERE",
        "bucardo role",
        Severity::Pass,
        "exists, is a superuser and BUCARDOPASS logs in",
    );
    assert!(!has_fail(&f), "{}", show(&f));

    let mut wrong = s.clone();
    wrong.bucardo.password = Some(Secret::new("not-bucardos"));
    let f = run(&wrong).await;
    expect(
        &f,
        "Bucardo",
        "control database",
        Severity::Fail,
        "password authentication failed for user \"bucardo\"",
    );

    tokio::task::block_in_place(|| zoo::start_bucardo(&sb));
    let deadline = Instant::now() + Duration::from_secs(20);
    let control = s
        .bucardo
        .control
        .with_user("bucardo", s.bucardo.password.clone());
    while !bucardo_bootstrap::engine::bucardo::ping(&control, Duration::from_secs(1))
        .await
        .unwrap()
    {
        assert!(Instant::now() < deadline, "the daemon never answered");
    }
    let f = run(&s).await;
    // The daemon's own PID, from its PID file: not the PID of the backend that sent the pong.
    let pid = std::fs::read_to_string(s.bucardo.piddir.join("bucardo.mcp.pid")).unwrap();
    let pid = pid.lines().next().unwrap().trim();
    expect(
        &f,
        "Bucardo",
        "daemon",
        Severity::Pass,
        &format!("the Bucardo daemon is running (PID {pid})"),
    );

    // Names already in Bucardo, registered without the CLI's side effects.
    sb.here
        .psql(
            "bucardo",
            "SET session_replication_role = replica;
             INSERT INTO bucardo.db (name, dbname, dbhost, dbport, dbuser) VALUES ('herezoo', 'zoo', '127.0.0.1', '1', 'bucardo');
             INSERT INTO bucardo.herd (name) VALUES ('myrels');
             INSERT INTO bucardo.dbgroup (name) VALUES ('mydbs');
             INSERT INTO bucardo.sync (name, herd, dbs) VALUES ('mysync', 'myrels', 'mydbs');",
        )
        .unwrap();
    let before = (zoo::snapshot(&sb.here), zoo::snapshot(&sb.there));
    let f = run(&s).await;
    for (kind, name, cmd, other) in [
        (
            "database",
            "herezoo",
            "remove db herezoo --force",
            "the HERE or THERE environment variable",
        ),
        (
            "relgroup",
            "myrels",
            "remove relgroup myrels",
            "--relgroup NAME",
        ),
        ("dbgroup", "mydbs", "remove dbgroup mydbs", "--dbgroup NAME"),
        ("sync", "mysync", "remove sync mysync", "--sync NAME"),
    ] {
        let x = expect(
            &f,
            "Bucardo",
            "names",
            Severity::Fail,
            &format!("Bucardo already has a {kind} named {name}: pick another with {other}"),
        );
        assert!(fix(x).ends_with(cmd), "{x:?}");
        assert!(
            fix(x).contains(&format!(
                "--dbport {} --dbname bucardo --dbuser bucardo",
                sb.here.port
            )),
            "{x:?}"
        );
    }
    assert_eq!(f.iter().filter(|x| x.check == "names").count(), 4);
    let mut other = s.clone();
    other.names.here_db = "herezoo2".into();
    other.names.relgroup = "rels2".into();
    other.names.dbgroup = "dbs2".into();
    other.names.sync = "sync2".into();
    let f = run(&other).await;
    expect(&f, "Bucardo", "names", Severity::Pass, "are free");
    let after = (zoo::snapshot(&sb.here), zoo::snapshot(&sb.there));
    assert_eq!(before, after, "preflight changed a server");
    assert!(
        after.0.contains("sync 1 "),
        "the snapshot covers Bucardo's tables"
    );
}

/// `pg_dump` locks every table of HERE in one transaction: a HERE whose lock table is small
/// for its table count is warned about, and refused once the dump cannot fit, with the setting
/// that fixes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_here_whose_lock_table_cannot_hold_pg_dumps_locks_is_refused() {
    let sb = sandbox().await;
    let s = zoo::settings(&sb, "public.keyed");
    let f = run(&s).await;
    none_of(&f, "HERE", "lock table", Severity::Warn);
    none_of(&f, "HERE", "lock table", Severity::Fail);
    // 10 × 100 connections: room for about 1,000 locks.
    sb.here
        .psql(
            "postgres",
            "ALTER SYSTEM SET max_locks_per_transaction = 10",
        )
        .unwrap();
    tokio::task::block_in_place(|| sb.here.restart()).unwrap();
    let add = |from: usize, to: usize| {
        for first in (from..to).step_by(100) {
            sb.here
                .psql(
                    "zoo",
                    &format!(
                        "CREATE SCHEMA IF NOT EXISTS many; DO $$ BEGIN FOR i IN {first}..{} LOOP EXECUTE format('CREATE TABLE many.t%s (id int PRIMARY KEY)', i); END LOOP; END $$",
                        first + 99
                    ),
                )
                .unwrap();
        }
    };
    add(0, 500);
    let f = run(&s).await;
    let w = expect(
        &f,
        "HERE",
        "lock table",
        Severity::Warn,
        "pg_dump locks all",
    );
    assert!(fix(w).contains("max_locks_per_transaction"), "{w:?}");
    // Each run of the sync would lock 6 × 200 delta and track tables and indexes on HERE, more
    // than its 1,000 slots; THERE keeps PostgreSQL's defaults and has room.
    let many: Vec<String> = (0..200).map(|i| format!("many.t{i}")).collect();
    let f = run(&zoo::settings(&sb, &many.join(","))).await;
    let e = expect(
        &f,
        "HERE",
        "lock table",
        Severity::Fail,
        "the sync would fail with \"out of shared memory\"",
    );
    assert!(
        fix(e).contains("ALTER SYSTEM SET max_locks_per_transaction = 64;"),
        "{e:?}"
    );
    none_of(&f, "THERE", "lock table", Severity::Warn);
    none_of(&f, "THERE", "lock table", Severity::Fail);
    add(500, 1000);
    let f = run(&s).await;
    let e = expect(
        &f,
        "HERE",
        "lock table",
        Severity::Fail,
        "would fail with \"out of shared memory\"",
    );
    assert!(
        fix(e).contains("ALTER SYSTEM SET max_locks_per_transaction = ")
            && fix(e).contains("restart"),
        "{e:?}"
    );
    assert!(has_fail(&f));
}
