//! Snapshots of every wizard screen state on ratatui's `TestBackend`, at 80x24 (the smallest
//! supported terminal) and 120x40. States are built from fixtures and fed through `update`, with
//! the clock injected, so the text is stable. Review changes to `tests/snapshots/` like code.

mod tui_fixtures;

use bucardo_bootstrap::engine::conn::Side;
use bucardo_bootstrap::engine::copy::format::Format;
use bucardo_bootstrap::engine::daemon::Daemon;
use bucardo_bootstrap::engine::event::{CopyEvent, LogLevel, RunEvent, StepOutcome, TableVerdict};
use bucardo_bootstrap::engine::governor::Mode;
use bucardo_bootstrap::engine::plan::StepKind;
use bucardo_bootstrap::engine::preflight::Finding;
use bucardo_bootstrap::engine::runner::{RunEnd, RunResult};
use bucardo_bootstrap::engine::EngineError;
use bucardo_bootstrap::tui::app::{update, App, Msg};
use bucardo_bootstrap::tui::screens::connect::TestState;
use bucardo_bootstrap::tui::screens::done::Health;
use crossterm::event::KeyCode;
use std::time::Duration;
use tui_fixtures::*;

fn snap(name: &str, app: &App) {
    for (w, h) in [(80, 24), (120, 40)] {
        let term = render(app, w, h);
        insta::assert_snapshot!(format!("{name}@{w}x{h}"), term.backend());
    }
}

fn by_name(name: &str) -> bucardo_bootstrap::engine::catalog::TableInfo {
    catalog()
        .into_iter()
        .find(|t| t.name.name == name)
        .expect("fixture table")
}

#[test]
fn connect_empty() {
    let app = new_app(false);
    snap("connect_empty", &app);
}

#[test]
fn connect_error() {
    let mut app = new_app(true);
    let fx = update(&mut app, ch('t'));
    assert_eq!(fx.len(), 3);
    update(&mut app, Msg::Tick(Duration::from_millis(1300)));
    update(
        &mut app,
        Msg::ConnTested {
            side: Side::Here,
            seq: 1,
            result: TestState::Ok("PostgreSQL 15.6 · connected as postgres (superuser)".into()),
        },
    );
    update(
        &mut app,
        Msg::ConnTested {
            side: Side::There,
            seq: 2,
            result: TestState::Failed("cannot connect to THERE (postgres://postgres@db2.example.com:5432/widgets): error connecting to server: Connection refused (os error 111). check that the server is up and the host and port are right".into()),
        },
    );
    // Bucardo's role does not exist yet, but the server answers to the superuser.
    update(
        &mut app,
        Msg::ConnTested {
            side: Side::Control,
            seq: 3,
            result: TestState::Warn("PostgreSQL 15.6 is up (as postgres on postgres); the plan creates the rest. Now: cannot connect to Bucardo control db (postgres://bucardo@db1.example.com:5432/bucardo): FATAL: password authentication failed for user \"bucardo\". check the password (PGPASSWORD, BUCARDOPASS or ~/.pgpass)".into()),
        },
    );
    // Then a validation error: a sync name Bucardo refuses.
    app.connect.draft.sync = "sync".into();
    update(&mut app, ch('n'));
    assert!(app.connect.error.is_some());
    snap("connect_error", &app);
}

#[test]
fn preflight_with_fails() {
    let mut app = new_app(true);
    update(&mut app, ch('n'));
    update(&mut app, Msg::TablesLoaded(Ok(catalog())));
    update(
        &mut app,
        Msg::PreflightDone(vec![
            Finding::pass(
                "HERE",
                "connect",
                "postgres://postgres@db1.example.com:5432/widgets answers (PostgreSQL 15.6)",
            ),
            Finding::fail(
                "HERE",
                "wal_level",
                "max_replication_slots is 0; the copy needs one exported snapshot per worker",
                Some("ALTER SYSTEM SET max_wal_senders = 10; then restart".into()),
            ),
            Finding::pass(
                "THERE",
                "connect",
                "postgres://postgres@db2.example.com:5432/postgres answers",
            ),
            Finding::warn(
                "THERE",
                "database",
                "widgets exists on THERE and is empty: the schema is copied into it",
                None,
            ),
            Finding::fail(
                "Bucardo",
                "plperl",
                "the plperlu language is not available on HERE; Bucardo's triggers need it",
                Some("apt-get install postgresql-plperl-15".into()),
            ),
            Finding::warn(
                "Tables",
                "public.audit_log",
                "no primary key or usable unique index: left out",
                Some(r#"ALTER TABLE "public"."audit_log" ADD PRIMARY KEY (...);"#.into()),
            ),
        ]),
    );
    update(&mut app, key(KeyCode::Enter));
    assert!(app.status.is_some(), "Enter is refused with a message");
    snap("preflight_with_fails", &app);
}

#[test]
fn tables_filtered() {
    let mut app = app_at_tables();
    feed(&mut app, [ch('/')]);
    type_text(&mut app, "order");
    feed(&mut app, [key(KeyCode::Enter), ch('s'), ch('j')]);
    assert_eq!(app.tables.visible().len(), 3);
    snap("tables_filtered", &app);
}

#[test]
fn tables_ineligible_highlighted() {
    let mut app = app_at_tables();
    feed(&mut app, [ch(' ')]);
    snap("tables_ineligible", &app);
}

#[test]
fn review() {
    let mut app = app_at_review();
    update(
        &mut app,
        Msg::Saved {
            what: bucardo_bootstrap::tui::app::SaveKind::Script,
            result: Ok("/var/lib/bucardo-bootstrap/bootstrap-0123456789abcdef.sh".into()),
        },
    );
    snap("review", &app);
}

/// An automatic run in the middle of the copy: 2 tables done, 2 copying (one of them rebuilding an
/// index on THERE), the rest waiting.
fn run_in_progress() -> App {
    let mut app = app_at_review();
    update(&mut app, ch('r'));
    let plan = app.review.plan.clone().unwrap();
    let copy = step_of(&plan, StepKind::CopyData);
    at(
        &mut app,
        0.5,
        [RunEvent::Started {
            steps: plan.steps.len(),
        }],
    );
    let t = finish_steps_with(&mut app, copy, 0.5, 1.0, false, |step, _| {
        Some(here_view(
            0.5 + step as f64,
            1400.0 + (step % 3) as f64 * 30.0,
            Mode::Full,
            "",
        ))
    });
    at(
        &mut app,
        t,
        [
            RunEvent::StepStarted { step: copy },
            RunEvent::Log {
                level: LogLevel::Info,
                message: "snapshot 00000003-0000002A-1 exported on HERE".into(),
            },
        ],
    );
    let (orders, items, events, customers) = (
        by_name("orders"),
        by_name("Order Items"),
        by_name("events"),
        by_name("customers"),
    );
    at(
        &mut app,
        t,
        [
            copy_started(&orders),
            copy_started(&items),
            copy_started(&events),
            copy_started(&customers),
        ],
    );
    at(
        &mut app,
        t + 2.0,
        [
            advanced(&events, 20_000, 2_400_000),
            RunEvent::Copy(CopyEvent::TableFinished {
                table: events.name.clone(),
                rows: 20_000,
                bytes: 2_400_000,
                elapsed: Duration::from_millis(1900),
                format: Format::Binary,
                parts: 1,
            }),
            advanced(&customers, 5_000, 600_000),
            RunEvent::Copy(CopyEvent::TableFinished {
                table: customers.name.clone(),
                rows: 5_000,
                bytes: 600_000,
                elapsed: Duration::from_millis(800),
                format: Format::Binary,
                parts: 1,
            }),
            RunEvent::Log {
                level: LogLevel::Info,
                message: "public.events: 20000 rows, 2.3 MB in 1.9 s".into(),
            },
            RunEvent::Log {
                level: LogLevel::Info,
                message: "public.customers: 5000 rows, 585.9 kB in 0.8 s".into(),
            },
        ],
    );
    at(
        &mut app,
        t + 4.0,
        [
            advanced(&orders, 24_000, 5_600_000),
            RunEvent::Copy(CopyEvent::ThereRows {
                table: orders.name.clone(),
                rows: 23_100,
            }),
            advanced(&items, 30_000, 3_100_000),
            RunEvent::Copy(CopyEvent::IndexPhase {
                table: items.name.clone(),
                index: "order_items_sku".into(),
                phase: "building index: scanning table".into(),
                percent: Some(40),
            }),
            RunEvent::Log {
                level: LogLevel::Warn,
                message: "a writer holds a lock on public.orders; waiting".into(),
            },
        ],
    );
    for (i, rate) in [1310.0, 1120.0, 1090.0, 1180.0].into_iter().enumerate() {
        at(
            &mut app,
            t + 1.0 + i as f64,
            [here_view(
                t + 1.0 + i as f64,
                rate,
                Mode::Throttled,
                "HERE's rate is 25% below its baseline",
            )],
        );
    }
    app
}

#[test]
fn run_in_progress_with_progress_bars_and_log() {
    let app = run_in_progress();
    snap("run_in_progress", &app);
}

#[test]
fn run_awaiting_confirm() {
    let mut app = app_at_review();
    update(&mut app, ch('c'));
    let plan = app.review.plan.clone().unwrap();
    let add_sync = step_of(&plan, StepKind::AddSync);
    at(
        &mut app,
        0.2,
        [RunEvent::Started {
            steps: plan.steps.len(),
        }],
    );
    let t = finish_steps(&mut app, add_sync, 0.5, 1.2, true);
    at(&mut app, t, [RunEvent::AwaitingConfirm { step: add_sync }]);
    snap("run_awaiting_confirm", &app);
}

#[test]
fn run_failed_table() {
    let mut app = run_in_progress();
    let plan = app.review.plan.clone().unwrap();
    let copy = step_of(&plan, StepKind::CopyData);
    let items = by_name("Order Items");
    let error = r#"copy of "Sales"."Order Items" failed: THERE: ERROR: could not extend file "base/16384/16502": No space left on device"#;
    at(
        &mut app,
        9.0,
        [
            RunEvent::Copy(CopyEvent::TableFailed {
                table: items.name.clone(),
                error: error.into(),
            }),
            RunEvent::Log {
                level: LogLevel::Error,
                message: error.into(),
            },
            RunEvent::StepFinished {
                step: copy,
                outcome: StepOutcome::Failed(error.into()),
                elapsed: Duration::from_secs(5),
            },
            RunEvent::Finished {
                ok: false,
                summary: error.into(),
            },
        ],
    );
    update(
        &mut app,
        Msg::RunEnded(RunResult {
            end: RunEnd::Failed {
                step: Some(copy),
                error: EngineError::Copy {
                    table: items.name.to_string(),
                    message: r#"THERE: ERROR: could not extend file "base/16384/16502": No space left on device"#.into(),
                },
            },
            timings: vec![],
        }),
    );
    snap("run_failed_table", &app);
}

#[test]
fn done() {
    let mut app = app_at_review();
    update(&mut app, ch('c'));
    let plan = app.review.plan.clone().unwrap();
    at(
        &mut app,
        0.1,
        [RunEvent::Started {
            steps: plan.steps.len(),
        }],
    );
    let kinds: Vec<StepKind> = plan.steps.iter().map(|s| s.kind).collect();
    let t = finish_steps_with(&mut app, plan.steps.len(), 0.5, 3.0, true, |step, sec| {
        let rate = match kinds[step] {
            StepKind::CopyData => [1180.0, 1020.0, 1110.0][sec % 3],
            StepKind::Compare | StepKind::Verify => 1240.0,
            StepKind::Drain | StepKind::Enable => 1190.0,
            _ => 1430.0 - (sec as f64) * 10.0,
        };
        let mode = if matches!(
            kinds[step],
            StepKind::CopyData | StepKind::Compare | StepKind::Verify
        ) {
            Mode::Throttled
        } else {
            Mode::Full
        };
        Some(here_view(
            0.5 + step as f64 * 3.0 + sec as f64,
            rate,
            mode,
            "",
        ))
    });
    let verdicts: Vec<RunEvent> = plan
        .tables
        .iter()
        .map(|ti| {
            let rows = ti.est_rows + 37;
            // public.orders kept changing under the application's writes; the rest compared.
            let hot = ti.name.name == "orders";
            RunEvent::Verified(TableVerdict {
                here_rows: rows,
                there_rows: rows,
                compared: if hot { rows - 12 } else { rows },
                replayed: if hot { 3 } else { 0 },
                in_flight: if hot { 12 } else { 0 },
                rounds: if hot { 4 } else { 0 },
                ..TableVerdict::new(ti.name.clone())
            })
        })
        .collect();
    at(&mut app, t, verdicts);
    let fx = update(
        &mut app,
        Msg::Run(RunEvent::Finished {
            ok: true,
            summary: "replicating 6 tables, the same rows on both sides; 99.98% of 127,222 rows compared, 1 table still changing (public.orders)".into(),
        }),
    );
    assert_eq!(fx.len(), 1, "the health view starts reading");
    update(
        &mut app,
        Msg::RunEnded(RunResult {
            end: RunEnd::Completed,
            timings: vec![],
        }),
    );
    update(
        &mut app,
        Msg::Health(Ok(Health {
            daemon: Daemon::Answering { pid: Some(31337) },
            sync_state: Some("active".into()),
            autokick: Some(true),
            running: true,
            last_good: Some("2025-03-14 09:26:53.589793+00".into()),
            last_bad: None,
            last_bad_status: None,
            conflicts_24h: 0,
            pending: vec![("HERE".into(), "public.orders".into(), 12)],
            coverage: None,
        })),
    );
    update(&mut app, Msg::Tick(Duration::from_secs_f64(t + 3.0)));
    snap("done", &app);
}

#[test]
fn abort_prompt_over_a_run() {
    let mut app = run_in_progress();
    update(&mut app, ch('x'));
    snap("run_abort_prompt", &app);
}

#[test]
fn run_aborted_says_what_state_the_databases_are_in() {
    let mut app = run_in_progress();
    let plan = app.review.plan.clone().unwrap();
    let copy = step_of(&plan, StepKind::CopyData);
    feed(&mut app, [ch('x'), ch('y')]);
    at(
        &mut app,
        8.5,
        [
            RunEvent::Log {
                level: LogLevel::Warn,
                message: "abort requested: stopping the copy workers".into(),
            },
            RunEvent::StepFinished {
                step: copy,
                outcome: StepOutcome::Aborted,
                elapsed: Duration::from_secs(4),
            },
            RunEvent::Finished {
                ok: false,
                summary: "aborted by the operator".into(),
            },
        ],
    );
    update(
        &mut app,
        Msg::RunEnded(RunResult {
            end: RunEnd::Aborted { step: None },
            timings: vec![],
        }),
    );
    assert_eq!(app.exit_code(), 130);
    snap("run_aborted", &app);
}

#[test]
fn resume() {
    let app = app_at_resume(vec![
        Finding::pass(
            "HERE",
            "connect",
            "connected to postgres://postgres@here.example.com:5432/widgets",
        ),
        Finding::pass(
            "THERE",
            "connect",
            "connected to postgres://postgres@there.example.com:5432/widgets",
        ),
        Finding::pass(
            "Bucardo",
            "connect",
            "connected to postgres://bucardo@here.example.com:5432/bucardo",
        ),
        Finding::warn(
            "Bucardo",
            "daemon",
            "the Bucardo daemon is not running: the plan starts it from this machine",
            Some("bucardo start".into()),
        ),
    ]);
    snap("resume", &app);
}
