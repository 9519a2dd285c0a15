//! The review text of `plan` for a fixed configuration, pinned as a snapshot: the exact commands
//! an operator approves. No server is needed: the plan is built from settings, catalog rows and
//! probed facts.

use bucardo_bootstrap::cli::{ConnArgs, Draft};
use bucardo_bootstrap::engine::catalog::{Column, KeyKind, SequenceUse, TableInfo};
use bucardo_bootstrap::engine::ident::TableName;
use bucardo_bootstrap::engine::plan::{Facts, Plan};

fn table(schema: &str, name: &str, cols: &[&str], seq: Option<&str>) -> TableInfo {
    TableInfo {
        name: TableName::new(schema, name),
        oid: 1,
        relkind: 'r',
        is_partition: false,
        unlogged: false,
        est_rows: 1000,
        total_bytes: 65536,
        key_kind: KeyKind::Primary,
        key_columns: vec![cols[0].to_string()],
        columns: cols
            .iter()
            .map(|c| Column {
                name: c.to_string(),
                type_name: "integer".into(),
                not_null: true,
                generated: false,
            })
            .collect(),
        sequences: seq
            .map(|s| {
                vec![SequenceUse {
                    sequence: TableName::new(schema, s),
                    column: cols[0].to_string(),
                }]
            })
            .unwrap_or_default(),
        fk_out: vec![],
        fk_in: vec![],
        large_object_columns: vec![],
        user_triggers: vec![],
        partitions: vec![],
        partition_root: None,
        key_rejections: vec![],
        generation: vec![],
    }
}

fn settings() -> bucardo_bootstrap::engine::settings::Settings {
    let env = [
        ("PGDATABASE", "widgets"),
        ("PGHOST", "here.example.com"),
        ("PGHOST2", "there.example.com"),
        ("PGSUPERUSER", "postgres"),
        ("BUCARDOPASS", "plan-test-secret-1"),
        ("PGPASSWORD", "plan-test-secret-2"),
        ("HERE", "here"),
        ("THERE", "there"),
        ("HOME", "/home/operator"),
        ("XDG_STATE_HOME", "/home/operator/.local/state"),
    ];
    let mut d = Draft::from_args(&ConnArgs::default(), &env);
    d.tables = r#"public.foo,public.bar,"Sales"."Order Items""#.into();
    d.jobs = 4;
    d.log_dir = "/home/operator/.local/state/bucardo-bootstrap".into();
    d.bucardo_piddir = "/home/operator/.local/state/bucardo-bootstrap/bucardo/run".into();
    d.bucardo_logdir = "/home/operator/.local/state/bucardo-bootstrap/bucardo/log".into();
    d.build().unwrap()
}

/// What becomes of HERE's objects: the three tables, a keyless one `all` leaves out, and a
/// materialized view over foo.
fn coverage() -> bucardo_bootstrap::engine::coverage::Coverage {
    use bucardo_bootstrap::engine::coverage::{select, Extras, Matview};
    let mut all = tables();
    let mut keyless = table("public", "audit_log", &["at"], None);
    keyless.key_kind = KeyKind::None;
    all.push(keyless);
    let extras = Extras {
        matviews: vec![Matview {
            name: TableName::new("public", "foo_totals"),
            populated: true,
            reads: vec![TableName::new("public", "foo")],
        }],
        sequences: vec![
            TableName::new("public", "bar_id_seq"),
            TableName::new("public", "foo_id_seq"),
        ],
        large_objects: 0,
    };
    let sel = select(
        all,
        &extras,
        &bucardo_bootstrap::engine::settings::TableSelection::All,
        &[],
    );
    assert!(sel.refusals.is_empty(), "{:?}", sel.refusals);
    sel.coverage
}

fn tables() -> Vec<TableInfo> {
    vec![
        table("Sales", "Order Items", &["Order ID", "Line No"], None),
        table("public", "bar", &["id", "foo_id"], Some("bar_id_seq")),
        table("public", "foo", &["id", "v"], Some("foo_id_seq")),
    ]
}

fn plan() -> Plan {
    let tables = tables();
    let facts = Facts {
        here_db_encoding: "UTF8".into(),
        here_db_collate: "C.UTF-8".into(),
        here_db_ctype: "C.UTF-8".into(),
        bucardo_role_missing_there: true,
        ..Facts::default()
    };
    Plan::build(&settings(), tables, coverage(), &facts)
}

fn filtered(text: &str) -> String {
    // The PostgreSQL tool paths depend on the machine's installed versions.
    let mut out = String::new();
    for word in text.split_inclusive(' ') {
        if let Some(i) = word.find("/usr/lib/postgresql/") {
            let rest = &word[i..];
            let tool = rest.rsplit('/').next().unwrap_or(rest);
            out.push_str(&word[..i]);
            out.push_str(tool);
        } else {
            out.push_str(word);
        }
    }
    out
}

#[test]
fn plan_review_text_is_pinned() {
    let text = plan().review_text();
    assert!(
        !text.contains("plan-test-secret"),
        "a password reached the review"
    );
    insta::assert_snapshot!("plan_review", filtered(&text));
}

#[test]
fn script_quotes_every_word_and_reads_passwords_from_the_environment() {
    let s = settings();
    let script = plan().script(&s);
    assert!(!script.contains("plan-test-secret"));
    assert!(
        script.contains("'Sales.Order Items'"),
        "Bucardo gets the raw name as one quoted word"
    );
    assert!(
        script.contains(r#"-t '"Sales"."Order Items"'"#),
        "pg_dump gets the SQL name as one quoted word"
    );
    assert!(script.contains("printenv BUCARDOPASS"));
    assert!(
        !script.contains("pass="),
        "no password on a bucardo command line"
    );
    insta::assert_snapshot!("plan_script", filtered(&script));
}

/// 450 tables on servers with PostgreSQL's default lock tables (64 × 100 slots): Bucardo's
/// triggers go in 3 transactions of at most 200 tables, never one over all of them.
#[test]
fn past_one_batch_the_triggers_go_in_batch_by_batch() {
    use bucardo_bootstrap::engine::plan::{Command, StepKind};
    let tables: Vec<TableInfo> = (1..=450)
        .map(|i| table("public", &format!("t{i:03}"), &["id"], None))
        .collect();
    let facts = Facts {
        lock_slots: Some(64 * 100),
        ..Facts::default()
    };
    let plan = Plan::build(&settings(), tables, coverage(), &facts);
    let step = |k: StepKind| plan.steps.iter().find(|s| s.kind == k).unwrap();
    let argv = |c: &Command| match c {
        Command::Run(inv) => inv.argv.join(" "),
        other => panic!("not a command: {other:?}"),
    };
    let sql_of = |c: &Command| match c {
        Command::Sql { sql, .. } => sql.clone(),
        other => panic!("not SQL: {other:?}"),
    };
    // The tables go into bucardo.goat by SQL, a batch per statement (the CLI slows down with
    // the square of the table count), and only the first batch joins the relgroup.
    let add = step(StepKind::AddTables);
    let sql: Vec<String> = add.commands.iter().map(sql_of).collect();
    assert_eq!(sql.len(), 4, "{sql:#?}");
    assert!(sql[0].starts_with("INSERT INTO bucardo.goat (schemaname, tablename, reltype, db)"));
    assert!(sql[0].contains("('public', 't001')") && sql[0].contains("('public', 't200')"));
    assert!(!sql[0].contains("'t201'"));
    assert!(sql[2].contains("('public', 't450')"));
    assert!(sql[3].contains("INSERT INTO bucardo.herdmap") && sql[3].contains("'t200'"));
    assert!(!sql[3].contains("'t201'"));
    assert_eq!(plan.trigger_batches().len(), 3);

    // The relgroup holds one batch at a time while its triggers go in, then all of them.
    let sync = step(StepKind::AddSync);
    assert_eq!(sync.commands.len(), 7, "{:#?}", sync.commands);
    assert!(argv(&sync.commands[0]).contains("add sync"));
    let join = sql_of(&sync.commands[1]);
    assert!(join.starts_with("DELETE FROM bucardo.herdmap WHERE herd = "));
    assert!(join.contains("INSERT INTO bucardo.herdmap") && join.contains("'t201'"));
    assert!(!join.contains("'t200'") && !join.contains("'t401'"));
    assert!(argv(&sync.commands[2]).contains(" validate mysync"));
    assert!(sql_of(&sync.commands[3]).contains("'t450'"));
    let all = sql_of(&sync.commands[5]);
    assert!(!all.contains("DELETE") && all.contains("'t001'") && all.contains("'t450'"));
    assert!(argv(&sync.commands[6]).contains(" validate mysync"));
    assert!(
        sync.why.contains("3 transactions of at most 200 tables"),
        "{}",
        sync.why
    );

    let enable = step(StepKind::Enable);
    let sql: Vec<&str> = enable
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Sql { sql, .. } => Some(sql.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(sql.len(), 6, "a batch on each side");
    assert!(sql[0].contains("LOCK TABLE ONLY \"public\".\"t001\""));
    assert!(sql[0].contains("CREATE TRIGGER \"bucardo_kick_"));
    assert!(!sql[0].contains("t201"));
    assert!(
        argv(enable.commands.last().unwrap()).ends_with("reload config 43"),
        "the daemon gets 30 s and 30 ms per table to confirm its reload"
    );
    assert!(!plan.script(&settings()).contains("plan-test-secret"));

    // One batch's worth stays as it was: one `add table`, one `add sync`, no kick SQL.
    let few: Vec<TableInfo> = (1..=200)
        .map(|i| table("public", &format!("t{i:03}"), &["id"], None))
        .collect();
    let plan = Plan::build(&settings(), few, coverage(), &facts);
    let n = |k: StepKind| {
        plan.steps
            .iter()
            .find(|s| s.kind == k)
            .unwrap()
            .commands
            .len()
    };
    assert_eq!(
        (
            n(StepKind::AddTables),
            n(StepKind::AddSync),
            n(StepKind::Enable)
        ),
        (1, 1, 2)
    );
}

#[test]
fn a_run_keeps_only_the_head_of_a_long_steps_commands() {
    use bucardo_bootstrap::engine::event::ConfirmMode;
    use bucardo_bootstrap::engine::plan::{command_lines, StepKind};
    use bucardo_bootstrap::session::state::{RunState, STEP_LINES_KEPT};
    use bucardo_bootstrap::session::text;
    let tables: Vec<TableInfo> = (1..=450)
        .map(|i| table("public", &format!("t{i:03}"), &["id"], None))
        .collect();
    let plan = Plan::build(&settings(), tables, coverage(), &Facts::default());
    let copy = plan
        .steps
        .iter()
        .position(|s| s.kind == StepKind::CopyData)
        .unwrap();
    // The plan keeps the step's head; its line per table is rendered when shown.
    let all = plan.step_lines(&plan.steps[copy]).count();
    assert!(all > 450, "{all}");
    assert_eq!(
        plan.steps[copy]
            .commands
            .iter()
            .flat_map(command_lines)
            .count(),
        1
    );
    let run = RunState::new(
        &plan,
        ConfirmMode::EachStep,
        "mysync",
        std::time::Duration::ZERO,
    );
    let row = &run.steps[copy];
    assert_eq!(row.commands.len(), STEP_LINES_KEPT);
    assert_eq!(row.more_lines, all - STEP_LINES_KEPT);
    let gate = text::gate_text(&run, copy);
    assert!(
        gate.contains(&format!("… {} more lines", all - STEP_LINES_KEPT)),
        "{gate}"
    );
    // The plan itself, and so the Review screen and `plan`, still has every line.
    let review = plan.review_text();
    assert_eq!(
        review
            .lines()
            .filter(|l| l.contains("COPY (SELECT"))
            .count(),
        450
    );
    let mut streamed = Vec::new();
    plan.write_review(&mut streamed).unwrap();
    assert_eq!(String::from_utf8(streamed).unwrap(), review);
}
