//! State tests of the wizard: messages go into the pure `update`, and the resulting state and
//! effects are checked. No terminal, no server; one test drives the real event loop on a
//! `TestBackend` with scripted terminal events.

mod tui_fixtures;

use bucardo_bootstrap::engine::catalog::TableInfo;
use bucardo_bootstrap::engine::conn::Side;
use bucardo_bootstrap::engine::copy::format::Format;
use bucardo_bootstrap::engine::daemon::Daemon;
use bucardo_bootstrap::engine::event::{ConfirmMode, CopyEvent, GateReply, RunEvent, StepOutcome};
use bucardo_bootstrap::engine::plan::StepKind;
use bucardo_bootstrap::engine::preflight::Finding;
use bucardo_bootstrap::engine::runner::{RunEnd, RunResult};
use bucardo_bootstrap::engine::settings::TableSelection;
use bucardo_bootstrap::session::text;
use bucardo_bootstrap::tui::app::{update, App, Effect, Msg, Prompt, Screen};
use bucardo_bootstrap::tui::screens::connect::{Field, PwSource, TestState};
use bucardo_bootstrap::tui::screens::done::{Health, HEALTH_INTERVAL};
use bucardo_bootstrap::tui::screens::run::{StepState, TableStatus};
use bucardo_bootstrap::tui::screens::tables::SortBy;
use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::time::Duration;
use tui_fixtures::*;

fn at_tables() -> App {
    let app = app_at_tables();
    assert_eq!(app.screen, Screen::Tables);
    app
}

fn focus_table(app: &mut App, raw: &str) {
    let pos = app
        .tables
        .visible()
        .iter()
        .position(|i| app.tables.all[*i].name.raw() == raw)
        .expect("table shown");
    app.tables.cursor = pos;
}

fn is_checked(app: &App, raw: &str) -> bool {
    let i = app
        .tables
        .all
        .iter()
        .position(|t| t.name.raw() == raw)
        .expect("table");
    app.tables.checked[i]
}

#[test]
fn the_connect_flow_validates_then_loads_tables_then_runs_preflight_on_the_chosen_ones() {
    let mut app = new_app(true);
    let fx = update(&mut app, ch('n'));
    assert_eq!(app.screen, Screen::Preflight);
    assert!(app.preflight.loading);
    assert!(matches!(fx.as_slice(), [Effect::FindEarlier(..)]), "{fx:?}");
    // No earlier run started this bootstrap: a fresh one is checked.
    let seq = app.lookup;
    let fx = update(&mut app, Msg::EarlierFound(seq, Ok(None)));
    assert!(app.preflight.loading && app.tables.loading);
    assert!(matches!(fx.as_slice(), [Effect::LoadTables(_)]), "{fx:?}");

    let fx = update(&mut app, Msg::TablesLoaded(Ok(catalog())));
    let Some(Effect::RunPreflight {
        tables: Some(chosen),
        ..
    }) = fx.first()
    else {
        panic!("{fx:?}")
    };
    let names: Vec<String> = chosen.iter().map(|t| t.name.raw()).collect();
    assert_eq!(
        chosen.len(),
        eligible().len(),
        "every eligible table is chosen by default: {names:?}"
    );
    assert!(!names.contains(&"public.audit_log".to_string()));

    update(
        &mut app,
        Msg::PreflightDone(vec![Finding::pass("HERE", "connect", "answers")]),
    );
    assert!(!app.preflight.loading);
    update(&mut app, key(KeyCode::Enter));
    assert_eq!(app.screen, Screen::Tables);
}

#[test]
fn an_invalid_draft_stays_on_connect_with_the_error_on_the_field() {
    let mut app = new_app(true);
    app.connect.draft.there = app.connect.draft.here.clone();
    let fx = update(&mut app, ch('n'));
    assert!(fx.is_empty());
    assert_eq!(app.screen, Screen::Connect);
    let (field, msg) = app.connect.error.clone().expect("an error is shown");
    assert_eq!(field, Some(Field::There));
    assert!(msg.contains("same database"), "{msg}");
    assert_eq!(
        app.connect.field(),
        Field::There,
        "the focus moves to the field at fault"
    );
    let text = screen_text(&app, 80, 24);
    assert!(
        text.contains("Cannot continue") && text.contains("same database"),
        "{text}"
    );
}

#[test]
fn editing_a_field_changes_the_draft_and_a_typed_password_becomes_a_secret_never_shown() {
    let mut app = new_app(false);
    assert_eq!(app.connect.pg_source, PwSource::Missing);
    // Relgroup: move to it, edit, clear, type.
    let relgroup = Field::ALL
        .iter()
        .position(|f| *f == Field::Relgroup)
        .unwrap();
    feed(&mut app, (0..relgroup).map(|_| ch('j')));
    feed(
        &mut app,
        [
            key(KeyCode::Enter),
            Msg::Key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL)),
        ],
    );
    type_text(&mut app, "rels2");
    update(&mut app, key(KeyCode::Enter));
    assert_eq!(app.draft().relgroup, "rels2");
    assert_eq!(
        app.connect.field(),
        Field::Dbgroup,
        "Enter saves and moves on"
    );

    app.connect.focus = Field::ALL
        .iter()
        .position(|f| *f == Field::PgPassword)
        .unwrap();
    update(&mut app, key(KeyCode::Enter));
    type_text(&mut app, "typed-secret-xyz");
    let mid = screen_text(&app, 120, 40);
    assert!(
        !mid.contains("typed-secret-xyz") && mid.contains("●●●●"),
        "{mid}"
    );
    update(&mut app, key(KeyCode::Enter));
    assert_eq!(
        app.draft()
            .pg_password
            .as_ref()
            .map(|s| s.expose().to_string())
            .as_deref(),
        Some("typed-secret-xyz")
    );
    assert_eq!(app.connect.pg_source, PwSource::Typed);
    let after = screen_text(&app, 120, 40);
    assert!(
        !after.contains("typed-secret-xyz") && after.contains("(typed)"),
        "{after}"
    );
    assert!(!format!("{:?}", app.draft()).contains("typed-secret-xyz"));
}

#[test]
fn keys_typed_into_a_field_are_not_commands() {
    let mut app = new_app(true);
    update(&mut app, key(KeyCode::Enter));
    let fx = type_text(&mut app, "?qtn");
    assert!(
        fx.is_empty() && !app.quit && !app.help,
        "q, ?, t and n are text while editing"
    );
    assert_eq!(
        app.connect
            .editing
            .as_ref()
            .map(|e| e.text.ends_with("?qtn")),
        Some(true)
    );
    update(&mut app, key(KeyCode::Esc));
    assert!(app.connect.editing.is_none());
    assert_eq!(app.draft().here, draft(true).here, "Esc cancels the edit");
}

#[test]
fn test_connection_marks_each_side_testing_and_drops_stale_results() {
    let mut app = new_app(true);
    let fx = update(&mut app, ch('t'));
    let seqs: Vec<(Side, u64)> = fx
        .iter()
        .map(|e| match e {
            Effect::TestConnection {
                side,
                spec,
                fallback,
                seq,
            } => {
                let fallback = fallback
                    .as_ref()
                    .map(|f| (f.user.as_str(), f.dbname.as_str()));
                let expected = match side {
                    Side::Here => None,
                    Side::There => Some(("postgres", "postgres")),
                    Side::Control => Some(("postgres", "postgres")),
                };
                assert_eq!(
                    fallback, expected,
                    "{side}: what is tried when the spec fails"
                );
                assert_eq!(
                    spec.password.as_ref().map(|p| p.expose()),
                    Some(if *side == Side::Control {
                        BUCARDO_PASSWORD
                    } else {
                        PG_PASSWORD
                    })
                );
                (*side, *seq)
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        seqs.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![Side::Here, Side::There, Side::Control]
    );
    assert!(app.connect.testing());
    // A result for an older request is ignored.
    update(
        &mut app,
        Msg::ConnTested {
            side: Side::Here,
            seq: 999,
            result: TestState::Ok("old".into()),
        },
    );
    assert!(matches!(
        app.connect.test(Side::Here),
        TestState::Testing { .. }
    ));
    update(
        &mut app,
        Msg::ConnTested {
            side: Side::Here,
            seq: seqs[0].1,
            result: TestState::Ok("PostgreSQL 15.6".into()),
        },
    );
    update(
        &mut app,
        Msg::ConnTested {
            side: Side::There,
            seq: seqs[1].1,
            result: TestState::Failed("connection refused".into()),
        },
    );
    assert_eq!(
        app.connect.test(Side::Here),
        &TestState::Ok("PostgreSQL 15.6".into())
    );
    assert_eq!(
        app.connect.test(Side::There),
        &TestState::Failed("connection refused".into())
    );
    // Editing THERE's URI makes its result stale.
    app.connect
        .set_value(Field::There, "postgres://postgres@db3:5432/widgets".into());
    assert_eq!(app.connect.test(Side::There), &TestState::NotTested);
    assert_eq!(
        app.connect.test(Side::Here),
        &TestState::Ok("PostgreSQL 15.6".into())
    );
}

#[test]
fn enter_on_preflight_with_a_fail_is_refused() {
    let mut app = new_app(true);
    feed(&mut app, [ch('n'), Msg::TablesLoaded(Ok(catalog()))]);
    update(
        &mut app,
        Msg::PreflightDone(vec![
            Finding::pass("HERE", "connect", "answers"),
            Finding::fail(
                "THERE",
                "connect",
                "connection refused",
                Some("start THERE".into()),
            ),
        ]),
    );
    let fx = update(&mut app, key(KeyCode::Enter));
    assert!(fx.is_empty());
    assert_eq!(app.screen, Screen::Preflight);
    assert!(
        app.status
            .as_ref()
            .is_some_and(|(_, s)| s.contains("1 failing check")),
        "{:?}",
        app.status
    );
    // r runs the checks again (tables and preflight).
    let fx = update(&mut app, ch('r'));
    assert!(matches!(fx.as_slice(), [Effect::LoadTables(_)]) && app.preflight.loading);
}

#[test]
fn space_on_an_ineligible_table_does_nothing() {
    let mut app = at_tables();
    focus_table(&mut app, "public.audit_log");
    let before = app.tables.checked.clone();
    let fx = update(&mut app, ch(' '));
    assert!(fx.is_empty());
    assert_eq!(app.tables.checked, before);
    assert!(!is_checked(&app, "public.audit_log"));
    // ...while on an eligible one it toggles.
    focus_table(&mut app, "public.foo");
    update(&mut app, ch(' '));
    assert!(!is_checked(&app, "public.foo"));
    update(&mut app, ch(' '));
    assert!(is_checked(&app, "public.foo"));
}

#[test]
fn slash_filters_the_list_and_esc_clears_the_filter() {
    let mut app = at_tables();
    feed(&mut app, [ch('/')]);
    type_text(&mut app, "foo");
    let shown: Vec<String> = app
        .tables
        .visible()
        .iter()
        .map(|i| app.tables.all[*i].name.raw())
        .collect();
    assert_eq!(shown, vec!["public.foo"]);
    update(&mut app, key(KeyCode::Enter));
    assert!(app.tables.filter_edit.is_none());
    assert_eq!(app.tables.filter, "foo", "Enter keeps the filter");
    // a and i act on what is shown only.
    update(&mut app, ch('i'));
    assert!(!is_checked(&app, "public.foo"));
    assert!(
        is_checked(&app, "public.bar"),
        "tables hidden by the filter keep their state"
    );
    feed(&mut app, [ch('/'), key(KeyCode::Esc)]);
    assert_eq!(app.tables.filter, "");
    assert_eq!(app.tables.visible().len(), catalog().len());
}

#[test]
fn select_all_checks_only_eligible_tables_and_sort_orders_by_size() {
    let mut app = at_tables();
    update(&mut app, ch('i'));
    assert!(
        app.tables.selection().is_empty(),
        "invert of all-eligible is none"
    );
    update(&mut app, ch('a'));
    let sel: Vec<String> = app
        .tables
        .selection()
        .iter()
        .map(|t| t.name.raw())
        .collect();
    assert_eq!(sel.len(), eligible().len());
    assert!(!sel
        .iter()
        .any(|s| s == "public.audit_log" || s == "public.measurements"));
    update(&mut app, ch('s'));
    assert_eq!(app.tables.sort, SortBy::Size);
    let sizes: Vec<i64> = app
        .tables
        .visible()
        .iter()
        .map(|i| app.tables.all[*i].total_bytes)
        .collect();
    assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{sizes:?}");
}

#[test]
fn enter_on_tables_writes_the_selection_into_the_draft_and_builds_the_plan() {
    let mut app = at_tables();
    focus_table(&mut app, "public.bar");
    update(&mut app, ch(' '));
    let fx = update(&mut app, key(KeyCode::Enter));
    assert_eq!(app.screen, Screen::Review);
    let Some(Effect::BuildPlan(s)) = fx.first() else {
        panic!("{fx:?}")
    };
    let bucardo_bootstrap::engine::settings::TableSelection::List(list) = &s.tables else {
        panic!("{:?}", s.tables)
    };
    assert_eq!(list.len(), eligible().len() - 1);
    assert!(!list.iter().any(|t| t.raw() == "public.bar"));
    assert!(
        app.draft().tables.contains(r#""Sales"."Order Items""#),
        "{}",
        app.draft().tables
    );
    // Nothing checked: refused.
    let mut app = at_tables();
    update(&mut app, ch('i'));
    assert!(update(&mut app, key(KeyCode::Enter)).is_empty());
    assert_eq!(app.screen, Screen::Tables);
}

#[test]
fn x_leaves_a_table_out_knowingly_and_the_draft_says_so() {
    let mut app = at_tables();
    focus_table(&mut app, "public.bar");
    update(&mut app, ch('x'));
    assert!(!is_checked(&app, "public.bar"), "left out is never checked");
    // `a` does not take it back; space does.
    update(&mut app, ch('a'));
    assert!(!is_checked(&app, "public.bar"));
    let screen = screen_text(&app, 100, 30);
    assert!(screen.contains("[/] public"), "{screen}");
    assert!(screen.contains("left out knowingly (x)"), "{screen}");
    let fx = update(&mut app, key(KeyCode::Enter));
    let Some(Effect::BuildPlan(s)) = fx.first() else {
        panic!("{fx:?}")
    };
    assert_eq!(
        s.leave_out,
        vec![bucardo_bootstrap::engine::ident::TableName::new(
            "public", "bar"
        )]
    );
    assert_eq!(app.draft().leave_out, r#""public"."bar""#);
    // Back on Tables, space checks it again and clears the mark.
    update(&mut app, key(KeyCode::Esc));
    focus_table(&mut app, "public.bar");
    update(&mut app, ch(' '));
    assert!(is_checked(&app, "public.bar"));
    assert_eq!(app.tables.leave_out_arg(), "");
}

#[test]
fn review_saves_files_in_the_state_dir_and_starts_the_run_in_either_mode() {
    let mut app = app_at_review();
    assert_eq!(app.screen, Screen::Review);
    let fp = app.review.plan.as_ref().unwrap().fingerprint.clone();
    let fx = update(&mut app, ch('s'));
    let Some(Effect::SaveScript { path, contents }) = fx.first() else {
        panic!("{fx:?}")
    };
    assert_eq!(
        path.to_str().unwrap(),
        format!("/var/lib/bucardo-bootstrap/bootstrap-{fp}.sh")
    );
    assert!(contents.starts_with("#!/usr/bin/env bash") && !contents.contains(PG_PASSWORD));
    let fx = update(&mut app, ch('p'));
    let Some(Effect::SavePlanFile { path, contents }) = fx.first() else {
        panic!("{fx:?}")
    };
    assert!(path.ends_with(format!("plan-{fp}.toml")));
    assert!(!contents.contains(PG_PASSWORD) && !contents.contains(BUCARDO_PASSWORD));

    let mut auto = app_at_review();
    let fx = update(&mut auto, ch('r'));
    assert!(matches!(
        fx.as_slice(),
        [Effect::StartRun {
            mode: ConfirmMode::Automatic,
            ..
        }]
    ));
    let fx = update(&mut app, ch('c'));
    assert!(matches!(
        fx.as_slice(),
        [Effect::StartRun {
            mode: ConfirmMode::EachStep,
            ..
        }]
    ));
    assert_eq!(app.screen, Screen::Run);
}

#[test]
fn gate_replies_become_effects() {
    let mut app = app_at_review();
    update(&mut app, ch('c'));
    at(
        &mut app,
        1.0,
        [
            RunEvent::Started { steps: 3 },
            RunEvent::AwaitingConfirm { step: 0 },
        ],
    );
    let run = app.run.as_ref().unwrap();
    assert_eq!(run.run.gate, Some(0));
    assert_eq!(run.run.steps[0].state, StepState::Awaiting);
    let fx = update(&mut app, ch('s'));
    assert!(
        matches!(fx.as_slice(), [Effect::GateReply(GateReply::Skip)]),
        "{fx:?}"
    );
    assert_eq!(app.run.as_ref().unwrap().run.gate, None);
    at(
        &mut app,
        1.0,
        [
            RunEvent::StepFinished {
                step: 0,
                outcome: StepOutcome::Skipped,
                elapsed: Duration::ZERO,
            },
            RunEvent::AwaitingConfirm { step: 1 },
        ],
    );
    // Arrows choose, Enter confirms the choice.
    feed(&mut app, [key(KeyCode::Right), key(KeyCode::Right)]);
    assert_eq!(app.run.as_ref().unwrap().gate_choice, GateReply::Abort);
    let fx = update(&mut app, key(KeyCode::Enter));
    assert!(matches!(
        fx.as_slice(),
        [Effect::GateReply(GateReply::Abort)]
    ));
    assert!(app.run.as_ref().unwrap().run.aborting);
}

#[test]
fn copy_deltas_are_reduced_into_rows_bytes_rate_and_eta() {
    let mut app = app_at_review();
    update(&mut app, ch('r'));
    let orders = catalog()
        .into_iter()
        .find(|t| t.name.name == "orders")
        .unwrap();
    at(&mut app, 10.0, [copy_started(&orders)]);
    at(
        &mut app,
        12.0,
        [
            advanced(&orders, 10_000, 2_000_000),
            advanced(&orders, 5_000, 1_000_000),
        ],
    );
    let run = app.run.as_ref().unwrap();
    let p = run
        .run
        .tables
        .iter()
        .find(|p| p.table == orders.name)
        .unwrap();
    assert_eq!((p.rows, p.bytes), (15_000, 3_000_000));
    assert_eq!(p.status, TableStatus::Copying);
    assert!((p.ratio() - 0.25).abs() < 1e-9);
    assert_eq!(p.rate(run.ui.now), Some(1_500_000.0));
    assert_eq!(
        p.eta(run.ui.now),
        Some(Duration::from_secs(6)),
        "45k rows left at 7.5k rows/s"
    );
    at(
        &mut app,
        14.0,
        [RunEvent::Copy(CopyEvent::TableFinished {
            table: orders.name.clone(),
            rows: 61_000,
            bytes: 12_000_000,
            elapsed: Duration::from_secs(4),
            format: Format::Binary,
            parts: 1,
        })],
    );
    let p = app
        .run
        .as_ref()
        .unwrap()
        .run
        .tables
        .iter()
        .find(|p| p.table == orders.name)
        .unwrap()
        .clone();
    assert_eq!(
        (p.rows, p.status.clone(), p.ratio()),
        (61_000, TableStatus::Done, 1.0)
    );
}

#[test]
fn quitting_during_a_run_asks_then_aborts_and_quits_when_the_runner_stopped() {
    let mut app = app_at_review();
    update(&mut app, ch('r'));
    at(
        &mut app,
        1.0,
        [
            RunEvent::Started { steps: 15 },
            RunEvent::StepStarted { step: 0 },
        ],
    );
    let fx = update(&mut app, ch('q'));
    assert!(fx.is_empty() && !app.quit);
    assert_eq!(app.prompt, Some(Prompt::QuitDuringRun));
    assert!(update(&mut app, ch('n')).is_empty());
    assert_eq!(app.prompt, None);
    update(&mut app, ch('q'));
    let fx = update(&mut app, ch('y'));
    assert!(matches!(fx.as_slice(), [Effect::Abort]));
    assert!(
        !app.quit,
        "the wizard waits for the runner to stop at a safe point"
    );
    at(
        &mut app,
        2.0,
        [
            RunEvent::StepFinished {
                step: 0,
                outcome: StepOutcome::Aborted,
                elapsed: Duration::from_secs(1),
            },
            RunEvent::Finished {
                ok: false,
                summary: "aborted by the operator".into(),
            },
        ],
    );
    let result = RunResult {
        end: RunEnd::Aborted { step: None },
        timings: vec![],
    };
    let fx = update(&mut app, Msg::RunEnded(result));
    assert!(matches!(fx.as_slice(), [Effect::Quit]) && app.quit);
    assert_eq!(app.exit_code(), 130);
}

#[test]
fn abort_says_what_state_the_databases_are_in() {
    let plan = plan();
    let add_sync = step_of(&plan, StepKind::AddSync);
    let copy_schema = step_of(&plan, StepKind::CopySchema);
    for (upto, expect) in [
        (0, "Nothing changed on either database"),
        (copy_schema + 1, "THERE has the schema and no rows"),
        (add_sync + 1, "triggers are logging deltas"),
    ] {
        let mut app = app_at_review();
        update(&mut app, ch('r'));
        let t = finish_steps(&mut app, upto, 1.0, 0.5, false);
        at(&mut app, t, [RunEvent::StepStarted { step: upto }]);
        feed(&mut app, [ch('x'), ch('y')]);
        at(
            &mut app,
            t + 1.0,
            [
                RunEvent::StepFinished {
                    step: upto,
                    outcome: StepOutcome::Aborted,
                    elapsed: Duration::from_secs(1),
                },
                RunEvent::Finished {
                    ok: false,
                    summary: "aborted by the operator".into(),
                },
            ],
        );
        let state = text::db_state(&app.run.as_ref().unwrap().run);
        assert!(state.contains(expect), "after {upto} steps: {state}");
        update(&mut app, key(KeyCode::Enter));
        assert_eq!(app.screen, Screen::Done);
        assert!(screen_text(&app, 120, 40).contains("Aborted by the operator"));
    }
}

#[test]
fn a_finished_run_moves_to_done_which_polls_health_every_few_seconds() {
    let mut app = app_at_review();
    update(&mut app, ch('r'));
    let n = app.run.as_ref().unwrap().run.steps.len();
    let t = finish_steps(&mut app, n, 1.0, 1.0, false);
    update(&mut app, Msg::Tick(Duration::from_secs_f64(t)));
    let fx = update(
        &mut app,
        Msg::Run(RunEvent::Finished {
            ok: true,
            summary: "both databases replicate".into(),
        }),
    );
    assert_eq!(app.screen, Screen::Done);
    assert!(
        matches!(fx.as_slice(), [Effect::RefreshHealth(_)]),
        "{fx:?}"
    );
    // No second request while one is in flight, nor before the interval.
    assert!(update(
        &mut app,
        Msg::Tick(Duration::from_secs_f64(t) + HEALTH_INTERVAL * 2)
    )
    .is_empty());
    let health = Health {
        daemon: Daemon::Answering { pid: Some(4242) },
        sync_state: Some("active".into()),
        autokick: Some(true),
        last_good: Some("2025-01-01 12:00:00+00".into()),
        ..Default::default()
    };
    update(&mut app, Msg::Health(Ok(health.clone())));
    let now = app.now;
    assert!(update(&mut app, Msg::Tick(now + Duration::from_secs(1))).is_empty());
    let fx = update(&mut app, Msg::Tick(now + HEALTH_INTERVAL));
    assert!(matches!(fx.as_slice(), [Effect::RefreshHealth(_)]));
    assert_eq!(app.done.health, Some(Ok(health)));
    assert_eq!(app.exit_code(), 0);
}

#[test]
fn help_opens_on_question_mark_and_any_key_closes_it() {
    let mut app = new_app(true);
    update(&mut app, ch('?'));
    assert!(app.help);
    assert!(screen_text(&app, 80, 24).contains("Keys: Connect"));
    let fx = update(&mut app, ch('q'));
    assert!(
        fx.is_empty() && !app.help && !app.quit,
        "the key that closes help does nothing else"
    );
    let fx = update(&mut app, ch('q'));
    assert!(matches!(fx.as_slice(), [Effect::Quit]) && app.quit);
}

#[test]
fn no_color_renders_without_any_colour() {
    let mut app = app_at_review();
    app.theme = bucardo_bootstrap::tui::theme::Theme { color: false };
    update(&mut app, ch('c'));
    at(&mut app, 3.0, [RunEvent::AwaitingConfirm { step: 0 }]);
    let term = render(&app, 80, 24);
    let buf = term.backend().buffer();
    use ratatui::style::Color;
    for cell in buf.content() {
        assert!(
            cell.fg == Color::Reset && cell.bg == Color::Reset,
            "a coloured cell: {cell:?}"
        );
    }
    // With colour, failures are red.
    let mut app = app_at_review();
    update(&mut app, ch('r'));
    at(
        &mut app,
        1.0,
        [RunEvent::Log {
            level: bucardo_bootstrap::engine::event::LogLevel::Error,
            message: "boom".into(),
        }],
    );
    let term = render(&app, 80, 24);
    assert!(term
        .backend()
        .buffer()
        .content()
        .iter()
        .any(|c| c.symbol() == "b" && c.fg == Color::Red));
}

#[test]
fn key_releases_are_ignored_and_resizes_redraw() {
    let release = Event::Key(KeyEvent::new_with_kind(
        KeyCode::Char('q'),
        KeyModifiers::NONE,
        KeyEventKind::Release,
    ));
    assert!(Msg::from_term(&release).is_none());
    assert!(matches!(
        Msg::from_term(&Event::Resize(80, 24)),
        Some(Msg::Resize)
    ));
    let press = Event::Key(KeyEvent::new_with_kind(
        KeyCode::Char('q'),
        KeyModifiers::NONE,
        KeyEventKind::Press,
    ));
    assert!(matches!(Msg::from_term(&press), Some(Msg::Key(_))));
}

#[tokio::test]
async fn the_event_loop_draws_handles_keys_and_quits() {
    use bucardo_bootstrap::tui::effects::Effects;
    use bucardo_bootstrap::tui::event_loop;
    use futures_util::StreamExt;
    use ratatui::backend::TestBackend;
    let mut app = new_app(true);
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let mut effects = Effects::new(tx);
    let mut term = ratatui::Terminal::new(TestBackend::new(80, 24)).unwrap();
    let press = |c| {
        Ok(Event::Key(KeyEvent::new_with_kind(
            KeyCode::Char(c),
            KeyModifiers::NONE,
            KeyEventKind::Press,
        )))
    };
    let release = |c| {
        Ok(Event::Key(KeyEvent::new_with_kind(
            KeyCode::Char(c),
            KeyModifiers::NONE,
            KeyEventKind::Release,
        )))
    };
    // j twice (the releases must not count), a resize, then q. A stream that never ends after
    // them keeps the loop on its own exit path.
    let script = vec![
        press('j'),
        release('j'),
        press('j'),
        Ok(Event::Resize(100, 30)),
        press('q'),
    ];
    let mut events = futures_util::stream::iter(script).chain(futures_util::stream::pending());
    let run = event_loop::run(
        &mut term,
        &mut app,
        &mut events,
        &mut effects,
        &mut rx,
        || Duration::from_secs(1),
    );
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("the loop quits on q")
        .unwrap();
    assert!(app.quit);
    assert_eq!(app.connect.focus, 2);
}

#[test]
fn ineligible_reason_is_on_screen_for_the_highlighted_row() {
    let mut app = at_tables();
    focus_table(&mut app, "public.orders_archive");
    let text = screen_text(&app, 80, 24);
    assert!(
        text.contains("cannot be replicated: no primary key"),
        "{text}"
    );
    let t: &TableInfo = &app.tables.all[app.tables.highlighted().unwrap()];
    assert!(!t.is_eligible());
}

#[test]
fn saved_files_are_private_even_when_they_existed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join("bootstrap-x.sh");
    bucardo_bootstrap::engine::files::write_private(&path, "#!/usr/bin/env bash\n").unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    bucardo_bootstrap::engine::files::write_private(&path, "again\n").unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "again\n");
}

#[test]
fn an_earlier_run_opens_the_resume_screen_with_its_tables() {
    let mut app = new_app(true);
    update(&mut app, ch('n'));
    let seq = app.lookup;
    let fx = update(
        &mut app,
        Msg::EarlierFound(seq, Ok(Some(Box::new(earlier())))),
    );
    assert_eq!(app.screen, Screen::Resume);
    let Some(Effect::PrepareResume(s, seq)) = fx.first() else {
        panic!("{fx:?}")
    };
    // The earlier run's tables, not the draft's "all".
    assert!(
        matches!(&s.tables, TableSelection::List(l) if l.len() == eligible().len()),
        "{:?}",
        s.tables
    );
    // Nothing can start before the plan is read and the checks are back.
    let fx = update(&mut app, ch('r'));
    assert!(fx.is_empty() && app.screen == Screen::Resume);
    let seq = *seq;
    update(
        &mut app,
        Msg::ResumePlanned(seq, Ok(Box::new(resumed_plan()))),
    );
    let done = resumed_plan()
        .steps
        .iter()
        .filter(|s| s.already_done)
        .count();
    let total = plan().steps.len();
    assert!(
        app.resume.summary[0].contains(&format!(
            "finished {done} of {total} steps, the last: Create the sync"
        )),
        "{:?}",
        app.resume.summary
    );
    assert!(app
        .resume
        .summary
        .iter()
        .any(|l| l.starts_with("Tables copied: 1 of 6")));
    update(
        &mut app,
        Msg::ResumeChecked(seq, vec![Finding::pass("HERE", "connect", "connected")]),
    );
    let fx = update(&mut app, ch('r'));
    let Some(Effect::StartRun { plan, mode, .. }) = fx.first() else {
        panic!("{fx:?}")
    };
    assert_eq!(*mode, ConfirmMode::Automatic);
    assert_eq!(plan.steps.iter().filter(|s| s.already_done).count(), done);
    assert_eq!(app.screen, Screen::Run);
}

#[test]
fn a_failing_resume_check_blocks_until_checked_again() {
    let mut app = app_at_resume(vec![Finding::fail(
        "THERE",
        "connect",
        "connection refused",
        Some("start THERE".into()),
    )]);
    for k in ['c', 'r'] {
        assert!(update(&mut app, ch(k)).is_empty());
        assert_eq!(app.screen, Screen::Resume);
    }
    assert!(app
        .status
        .as_ref()
        .is_some_and(|(_, t)| t.contains("failing check")));
    let fx = update(&mut app, ch('R'));
    assert!(
        matches!(fx.as_slice(), [Effect::ResumeChecks(..)]),
        "{fx:?}"
    );
    let seq = app.lookup;
    update(&mut app, Msg::ResumeChecked(seq, vec![]));
    let fx = update(&mut app, key(KeyCode::Enter));
    assert!(
        matches!(
            fx.as_slice(),
            [Effect::StartRun {
                mode: ConfirmMode::EachStep,
                ..
            }]
        ),
        "{fx:?}"
    );
}

#[test]
fn undo_from_the_resume_screen_shows_the_cleanup_then_starts_afresh() {
    use bucardo_bootstrap::engine::cleanup::CleanupPlan;
    use bucardo_bootstrap::tui::screens::resume::Undo;
    let mut app = app_at_resume(vec![]);
    let fx = update(&mut app, ch('x'));
    assert!(matches!(fx.as_slice(), [Effect::PlanCleanup(_)]), "{fx:?}");
    update(
        &mut app,
        Msg::CleanupPlanned(Ok((
            Box::new(CleanupPlan::default()),
            "bucardo remove sync mysync".into(),
        ))),
    );
    assert!(screen_text(&app, 80, 24).contains("bucardo remove sync mysync"));
    // n keeps everything.
    assert!(update(&mut app, ch('n')).is_empty());
    assert!(matches!(app.resume.undo, Undo::Not));
    update(&mut app, ch('x'));
    update(
        &mut app,
        Msg::CleanupPlanned(Ok((
            Box::new(CleanupPlan::default()),
            "bucardo remove sync mysync".into(),
        ))),
    );
    let fx = update(&mut app, ch('y'));
    assert!(
        matches!(fx.as_slice(), [Effect::RunCleanup { .. }]),
        "{fx:?}"
    );
    update(&mut app, Msg::CleanedUp(Ok(())));
    assert!(screen_text(&app, 80, 24).contains("Cleaned up"));
    let fx = update(&mut app, key(KeyCode::Enter));
    assert_eq!(app.screen, Screen::Preflight);
    assert!(matches!(fx.as_slice(), [Effect::LoadTables(_)]), "{fx:?}");
}

#[test]
fn the_earlier_run_is_found_by_its_tables_and_a_finished_one_is_not() {
    use bucardo_bootstrap::engine::journal::JournalData;
    use bucardo_bootstrap::engine::plan::fingerprint_names;
    use bucardo_bootstrap::session::launch::find_earlier;
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings();
    s.log_dir = dir.path().to_path_buf();
    let write = |name: &str, j: &JournalData| {
        std::fs::write(dir.path().join(name), serde_json::to_string(j).unwrap()).unwrap();
    };
    let tables = earlier().tables;
    let unfinished = JournalData {
        fingerprint: fingerprint_names(&s, &tables),
        tables: tables.clone(),
        steps_done: vec![StepKind::CopySchema, StepKind::AddSync],
        updated: 100,
        ..Default::default()
    };
    let finished = JournalData {
        steps_done: vec![StepKind::CopySchema, StepKind::AddSync, StepKind::Verify],
        updated: 200,
        ..unfinished.clone()
    };
    // Another bootstrap's journal (its own sync) in the same directory, newer.
    let mut s2 = s.clone();
    s2.names.sync = "othersync".into();
    let other = JournalData {
        fingerprint: fingerprint_names(&s2, &tables),
        updated: 300,
        ..unfinished.clone()
    };
    write("journal-a.json", &unfinished);
    write("journal-b.json", &finished);
    write("journal-c.json", &other);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The wizard has not chosen tables yet: the draft says "all".
    s.tables = TableSelection::All;
    let found = rt.block_on(find_earlier(&s)).unwrap().expect("found");
    assert_eq!(found.journal_path, dir.path().join("journal-a.json"));
    assert_eq!(found.tables, tables);
    // The other sync's settings find the other bootstrap.
    s2.tables = TableSelection::All;
    let found = rt.block_on(find_earlier(&s2)).unwrap().expect("found");
    assert_eq!(found.journal_path, dir.path().join("journal-c.json"));
    // Once it verified both sides, a bootstrap is not offered for resuming.
    std::fs::remove_file(dir.path().join("journal-a.json")).unwrap();
    assert!(rt.block_on(find_earlier(&s)).unwrap().is_none());
}

#[test]
fn replies_to_an_abandoned_lookup_are_dropped() {
    let mut app = new_app(true);
    update(&mut app, ch('n'));
    let first = app.lookup;
    // The operator goes back before the answer comes, and edits.
    update(&mut app, key(KeyCode::Esc));
    assert_eq!(app.screen, Screen::Connect);
    let fx = update(
        &mut app,
        Msg::EarlierFound(first, Ok(Some(Box::new(earlier())))),
    );
    assert!(
        fx.is_empty() && app.screen == Screen::Connect,
        "not yanked to Resume"
    );
    // On the Resume screen, a stale plan or stale checks do not make it ready.
    update(&mut app, ch('n'));
    let seq = app.lookup;
    update(
        &mut app,
        Msg::EarlierFound(seq, Ok(Some(Box::new(earlier())))),
    );
    let current = app.lookup;
    update(
        &mut app,
        Msg::ResumePlanned(current - 1, Ok(Box::new(resumed_plan()))),
    );
    update(&mut app, Msg::ResumeChecked(current - 1, vec![]));
    assert!(app.resume.plan.is_none() && !app.resume.ready());
    // A failed read of the earlier run is tried again with R.
    update(
        &mut app,
        Msg::ResumePlanned(current, Err("HERE went away".into())),
    );
    let fx = update(&mut app, ch('R'));
    assert!(
        matches!(fx.as_slice(), [Effect::PrepareResume(_, s)] if *s == current),
        "{fx:?}"
    );
}

#[test]
fn c_on_tables_converts_generated_columns_and_the_plan_gets_the_flag() {
    use bucardo_bootstrap::engine::catalog::{Column, KeyKind};
    use bucardo_bootstrap::engine::generated::GeneratedColumn;
    let with_generated = || {
        let mut app = at_tables();
        let mut t = table("public", "priced", 500, 65_536, KeyKind::Primary);
        t.columns.push(Column {
            name: "Total".into(),
            type_name: "integer".into(),
            not_null: false,
            generated: true,
        });
        t.generation.push(GeneratedColumn {
            column: "Total".into(),
            type_name: "integer".into(),
            not_null: false,
            expression: "(id * 2)".into(),
            inherited: false,
        });
        let mut all = app.tables.all.clone();
        all.push(t);
        let wanted = app.draft().tables.clone();
        app.tables.set_tables(all, &wanted, "");
        focus_table(&mut app, "public.priced");
        app
    };
    let mut app = with_generated();
    update(&mut app, ch(' '));
    assert!(!is_checked(&app, "public.priced"), "not eligible as it is");
    let text = screen_text(&app, 80, 24);
    assert!(text.contains("(c: convert generated columns)"), "{text}");

    assert!(update(&mut app, ch('c')).is_empty());
    assert!(is_checked(&app, "public.priced"));
    assert!(app.draft().convert_generated);
    let fx = update(&mut app, key(KeyCode::Enter));
    let Some(Effect::BuildPlan(s)) = fx.first() else {
        panic!("{fx:?}")
    };
    assert!(s.convert_generated);
    let TableSelection::List(list) = &s.tables else {
        panic!("{:?}", s.tables)
    };
    assert!(list.iter().any(|t| t.raw() == "public.priced"));

    // Off again: the catalog is listed again without the conversion, the selection kept.
    let mut app = with_generated();
    update(&mut app, ch('c'));
    let fx = update(&mut app, ch('c'));
    let Some(Effect::LoadTables(s)) = fx.first() else {
        panic!("{fx:?}")
    };
    assert!(!s.convert_generated && !app.draft().convert_generated);
    assert!(app.draft().tables.contains(r#""public"."priced""#));
}

#[test]
fn the_review_wraps_again_when_the_terminal_changes_size() {
    // The same app drawn narrow, wide and narrow again, scrolled or not, shows what a fresh app
    // drawn once at that size shows: the wrapped text it keeps follows the width.
    let fresh = |keys: &[KeyCode], w: u16, h: u16| {
        let mut app = app_at_review();
        feed(&mut app, keys.iter().map(|k| key(*k)));
        screen_text(&app, w, h)
    };
    let mut app = app_at_review();
    for (w, h) in [(80, 24), (120, 40), (60, 20), (80, 24)] {
        assert_eq!(screen_text(&app, w, h), fresh(&[], w, h), "{w}x{h}");
    }
    update(&mut app, key(KeyCode::End));
    for (w, h) in [(120, 40), (80, 24)] {
        assert_eq!(
            screen_text(&app, w, h),
            fresh(&[KeyCode::End], w, h),
            "{w}x{h} at the end"
        );
    }
}

#[test]
fn a_failed_replay_never_says_both_databases_replicate() {
    let plan = plan();
    let drain = step_of(&plan, StepKind::Drain);
    for (outcome, expect) in [
        (
            StepOutcome::Failed("the sync failed: out of shared memory".into()),
            "did not replay the deltas logged during the copy",
        ),
        (StepOutcome::Aborted, "nothing is known to replicate yet"),
    ] {
        let mut app = app_at_review();
        update(&mut app, ch('r'));
        let t = finish_steps(&mut app, drain, 1.0, 0.5, false);
        at(
            &mut app,
            t,
            [
                RunEvent::StepStarted { step: drain },
                RunEvent::StepFinished {
                    step: drain,
                    outcome,
                    elapsed: Duration::from_secs(1),
                },
            ],
        );
        let state = text::db_state(&app.run.as_ref().unwrap().run);
        assert!(state.contains(expect), "{state}");
        assert!(!state.contains("replicates both ways"), "{state}");
        assert!(!state.contains("both databases replicate"), "{state}");
    }
}
