//! Fixtures for the wizard's state and snapshot tests: a fixed draft, a fake catalog, a plan built
//! by the engine from them (with tool paths normalised so snapshots do not depend on where
//! PostgreSQL is installed), and helpers that feed keys and runner events to `update`.

#![allow(dead_code)]

use bucardo_bootstrap::cli::{ConnArgs, Draft};
use bucardo_bootstrap::engine::catalog::{Column, KeyKind, SequenceUse, TableInfo};
use bucardo_bootstrap::engine::event::{CopyEvent, LogLevel, RunEvent, StepOutcome};
use bucardo_bootstrap::engine::governor::{Baseline, Held, Mode, View};
use bucardo_bootstrap::engine::ident::TableName;
use bucardo_bootstrap::engine::plan::{Command, Facts, Plan};
use bucardo_bootstrap::engine::settings::Settings;
use bucardo_bootstrap::tui::app::{update, App, Effect, Msg};
use bucardo_bootstrap::tui::theme::Theme;
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::time::Duration;

pub const PG_PASSWORD: &str = "pg-fixture-secret-1";
pub const BUCARDO_PASSWORD: &str = "bucardo-fixture-secret-2";

/// The draft a wizard started with these flags would have; no password unless `passwords`.
pub fn draft(passwords: bool) -> Draft {
    let args = ConnArgs {
        here: Some("postgres://postgres@db1.example.com:5432/widgets".into()),
        there: Some("postgres://postgres@db2.example.com:5432/widgets".into()),
        bucardo_db: Some("postgres://bucardo@db1.example.com:5432/bucardo".into()),
        log_dir: Some("/var/lib/bucardo-bootstrap".into()),
        jobs: Some(4),
        ..Default::default()
    };
    let env_pw = [
        ("HOME", "/nonexistent"),
        ("PGPASSWORD", PG_PASSWORD),
        ("BUCARDOPASS", BUCARDO_PASSWORD),
    ];
    let env_none = [
        ("HOME", "/nonexistent"),
        ("PGUSER", "postgres"),
        ("PGDATABASE", "widgets"),
    ];
    let mut d = if passwords {
        Draft::from_args(&args, &env_pw)
    } else {
        Draft::from_args(&args, &env_none)
    };
    d.passfile = None;
    d.here_name = "herewidgets".into();
    d.there_name = "therewidgets".into();
    d
}

fn col(name: &str, ty: &str) -> Column {
    Column {
        name: name.into(),
        type_name: ty.into(),
        not_null: true,
        generated: false,
    }
}

pub fn table(schema: &str, name: &str, rows: i64, bytes: i64, key: KeyKind) -> TableInfo {
    let key_columns = match key {
        KeyKind::None => vec![],
        _ => vec!["id".to_string()],
    };
    TableInfo {
        name: TableName::new(schema, name),
        oid: 16_384 + rows as u32 % 1000,
        relkind: 'r',
        is_partition: false,
        unlogged: false,
        est_rows: rows,
        total_bytes: bytes,
        key_kind: key,
        key_columns,
        columns: vec![col("id", "bigint"), col("payload", "text")],
        ..Default::default()
    }
}

/// HERE's catalog: six tables Bucardo can replicate, one without a key, one partitioned parent.
pub fn catalog() -> Vec<TableInfo> {
    let mut orders = table("public", "orders", 60_000, 14_811_136, KeyKind::Primary);
    orders.sequences.push(SequenceUse {
        sequence: TableName::new("public", "orders_id_seq"),
        column: "id".into(),
    });
    orders.fk_out.push(TableName::new("public", "customers"));
    let mut items = table("Sales", "Order Items", 40_000, 6_553_600, KeyKind::Primary);
    items.key_columns = vec!["order_id".into(), "line".into()];
    let events = table("public", "events", 20_000, 3_276_800, KeyKind::Unique);
    let mut parent = table("public", "measurements", 0, 16_384, KeyKind::Primary);
    parent.relkind = 'p';
    vec![
        table("public", "audit_log", 8_000, 1_146_880, KeyKind::None),
        table("public", "bar", 500, 65_536, KeyKind::Primary),
        table("public", "customers", 5_000, 1_048_576, KeyKind::Primary),
        events,
        table("public", "foo", 1_000, 131_072, KeyKind::Primary),
        parent,
        orders,
        table("public", "orders_archive", 12_000, 2_097_152, KeyKind::None),
        items,
    ]
}

pub fn eligible() -> Vec<TableInfo> {
    catalog()
        .into_iter()
        .filter(TableInfo::is_eligible)
        .collect()
}

/// Settings for the eligible tables.
pub fn settings() -> Settings {
    let mut d = draft(true);
    d.tables = eligible()
        .iter()
        .map(|t| t.name.sql())
        .collect::<Vec<_>>()
        .join(",");
    d.build().expect("fixture draft builds")
}

fn normalise(inv: &mut bucardo_bootstrap::engine::process::Invocation) {
    if let Some(first) = inv.argv.first_mut() {
        if let Some(base) = first.rsplit('/').next() {
            *first = base.to_string();
        }
    }
}

/// The engine's plan for the fixture, as a fresh THERE would need it.
pub fn plan() -> Plan {
    let s = settings();
    let facts = Facts {
        here_db_encoding: "UTF8".into(),
        here_db_collate: "C.UTF-8".into(),
        here_db_ctype: "C.UTF-8".into(),
        ..Default::default()
    };
    let coverage = bucardo_bootstrap::engine::coverage::select(
        catalog(),
        &Default::default(),
        &bucardo_bootstrap::engine::settings::TableSelection::All,
        &[],
    )
    .coverage;
    let mut plan = Plan::build(&s, eligible(), coverage, &facts);
    for step in &mut plan.steps {
        for c in &mut step.commands {
            match c {
                Command::Run(inv) => normalise(inv),
                Command::Pipe(a, b) => {
                    normalise(a);
                    normalise(b);
                }
                _ => {}
            }
        }
    }
    plan
}

pub fn key(code: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new_with_kind(
        code,
        KeyModifiers::NONE,
        KeyEventKind::Press,
    ))
}

pub fn ch(c: char) -> Msg {
    key(KeyCode::Char(c))
}

/// Feeds every message, returning all the effects asked for.
pub fn feed(app: &mut App, msgs: impl IntoIterator<Item = Msg>) -> Vec<Effect> {
    msgs.into_iter().flat_map(|m| update(app, m)).collect()
}

pub fn type_text(app: &mut App, text: &str) -> Vec<Effect> {
    feed(app, text.chars().map(ch))
}

pub fn new_app(passwords: bool) -> App {
    App::new(
        draft(passwords),
        Theme::default(),
        Some("/var/lib/bucardo-bootstrap/wizard-1700000000-4242.log".into()),
    )
}

/// An app walked through Connect and a clean Preflight to the Tables screen.
pub fn app_at_tables() -> App {
    let mut app = new_app(true);
    update(&mut app, ch('n'));
    let seq = app.lookup;
    feed(
        &mut app,
        [
            Msg::EarlierFound(seq, Ok(None)),
            Msg::TablesLoaded(Ok(catalog())),
            Msg::PreflightDone(vec![]),
            key(KeyCode::Enter),
        ],
    );
    app
}

/// An app walked through Connect, Preflight and Tables to a built plan on the Review screen.
pub fn app_at_review() -> App {
    let mut app = app_at_tables();
    feed(
        &mut app,
        [key(KeyCode::Enter), Msg::PlanBuilt(Ok(Box::new(plan())))],
    );
    app
}

/// Runner events at `at` seconds on the injected clock.
pub fn at(app: &mut App, secs: f64, events: impl IntoIterator<Item = RunEvent>) {
    update(app, Msg::Tick(Duration::from_secs_f64(secs)));
    for e in events {
        update(app, Msg::Run(e));
    }
}

pub fn step_of(plan: &Plan, kind: bucardo_bootstrap::engine::plan::StepKind) -> usize {
    plan.steps
        .iter()
        .position(|s| s.kind == kind)
        .expect("step in plan")
}

/// Runs steps `0..upto` to completion, each taking `secs_each`, starting at `t0`; returns the end.
pub fn finish_steps(app: &mut App, upto: usize, t0: f64, secs_each: f64, gated: bool) -> f64 {
    finish_steps_with(app, upto, t0, secs_each, gated, |_, _| None)
}

/// The governor's report at `at_s`: HERE at `rate` against a 1,450 tx/s baseline.
pub fn here_view(at_s: f64, rate: f64, mode: Mode, why: &str) -> RunEvent {
    let base = Baseline {
        rate: 1450.0,
        probe_ms: 0.4,
        lock_waiting: 0,
        by_commits: false,
    };
    RunEvent::Here(View {
        mode,
        why: why.into(),
        at_s,
        rate,
        probe_ms: 0.4 * 1450.0 / rate.max(1.0),
        active: 2,
        lock_waiting: 0,
        replica_lag_s: None,
        held: Some(Held {
            secs: 3,
            xid_age: 4_350,
        }),
        baseline: Some(base),
        first_baseline: Some(base),
        duty: if mode == Mode::Throttled { 0.45 } else { 1.0 },
        workers: if mode == Mode::Throttled { 1 } else { 2 },
        jobs: 2,
        cap: 1.0,
    })
}

/// [`finish_steps`], with a governor's report each second of each step: `here(step, second)`.
pub fn finish_steps_with(
    app: &mut App,
    upto: usize,
    t0: f64,
    secs_each: f64,
    gated: bool,
    here: impl Fn(usize, usize) -> Option<RunEvent>,
) -> f64 {
    let mut t = t0;
    for id in 0..upto {
        if gated {
            at(app, t, [RunEvent::AwaitingConfirm { step: id }]);
            update(app, ch('p'));
        }
        at(
            app,
            t,
            [
                RunEvent::StepStarted { step: id },
                RunEvent::Log {
                    level: LogLevel::Info,
                    message: format!("step {}", id + 1),
                },
            ],
        );
        for sec in 0..secs_each.floor() as usize {
            if let Some(ev) = here(id, sec) {
                at(app, t + sec as f64 + 0.5, [ev]);
            }
        }
        t += secs_each;
        at(
            app,
            t,
            [RunEvent::StepFinished {
                step: id,
                outcome: StepOutcome::Done,
                elapsed: Duration::from_secs_f64(secs_each),
            }],
        );
    }
    t
}

pub fn copy_started(t: &TableInfo) -> RunEvent {
    RunEvent::Copy(CopyEvent::TableStarted {
        table: t.name.clone(),
        est_rows: t.est_rows,
        est_bytes: t.total_bytes,
    })
}

pub fn advanced(t: &TableInfo, rows: u64, bytes: u64) -> RunEvent {
    RunEvent::Copy(CopyEvent::Advanced {
        table: t.name.clone(),
        rows,
        bytes,
    })
}

pub fn render(app: &App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut term = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    term.draw(|f| f.render_widget(app, f.area()))
        .expect("draws");
    term
}

/// The screen as plain text lines.
pub fn screen_text(app: &App, w: u16, h: u16) -> String {
    let term = render(app, w, h);
    let buf = term.backend().buffer();
    let mut out = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            out.push_str(buf[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

/// A bootstrap an earlier run started: the schema, Bucardo's objects and the sync done, one
/// table copied.
pub fn earlier() -> bucardo_bootstrap::session::launch::Earlier {
    use bucardo_bootstrap::engine::journal::JournalData;
    use bucardo_bootstrap::engine::plan::StepKind;
    let tables: Vec<TableName> = eligible().into_iter().map(|t| t.name).collect();
    bucardo_bootstrap::session::launch::Earlier {
        journal_path: "/var/lib/bucardo-bootstrap/journal-0123456789abcdef.json".into(),
        journal: JournalData {
            fingerprint: plan().fingerprint,
            tables: tables.clone(),
            steps_done: vec![
                StepKind::CreateDatabase,
                StepKind::CopySchema,
                StepKind::BucardoRole,
                StepKind::InstallBucardo,
                StepKind::StartDaemon,
                StepKind::AddDatabases,
                StepKind::AddTables,
                StepKind::AddDbgroup,
                StepKind::AddSync,
            ],
            tables_done: [TableName::new("public", "orders")].into_iter().collect(),
            ..Default::default()
        },
        tables,
    }
}

/// [`plan`] with the steps of [`earlier`] marked done.
pub fn resumed_plan() -> Plan {
    let mut p = plan();
    p.mark_done(&earlier().journal.steps_done);
    p
}

/// An app opened on the bootstrap of [`earlier`]: the Resume screen, read and checked.
pub fn app_at_resume(findings: Vec<bucardo_bootstrap::engine::preflight::Finding>) -> App {
    let mut app = new_app(true);
    update(&mut app, ch('n'));
    let seq = app.lookup;
    update(
        &mut app,
        Msg::EarlierFound(seq, Ok(Some(Box::new(earlier())))),
    );
    let seq = app.lookup;
    feed(
        &mut app,
        [
            Msg::ResumePlanned(seq, Ok(Box::new(resumed_plan()))),
            Msg::ResumeChecked(seq, findings),
        ],
    );
    app
}
