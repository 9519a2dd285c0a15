//! Benchmark, not a pass/fail test: how long the wizard takes from a key to the redrawn frame
//! with 10,000 tables, on the Tables screen (typing into the filter) and on the Review screen of
//! a 10,000-table plan (PageDown and Down). Each key goes through `update` and a full draw on
//! ratatui's `TestBackend` at 120x40; it prints the median and the slowest of each series.
//! Measure in release: `cargo test --release --test bench_tui -- --ignored --nocapture`.

mod tui_fixtures;

use bucardo_bootstrap::engine::catalog::{KeyKind, SequenceUse, TableInfo};
use bucardo_bootstrap::engine::coverage::select;
use bucardo_bootstrap::engine::ident::TableName;
use bucardo_bootstrap::engine::plan::{Facts, Plan};
use bucardo_bootstrap::engine::settings::TableSelection;
use bucardo_bootstrap::tui::app::{update, App, Msg, Screen};
use crossterm::event::KeyCode;
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::time::{Duration, Instant};
use tui_fixtures::*;

const TABLES: usize = 10_000;
const WIDTH: u16 = 120;
const HEIGHT: u16 = 40;

/// Tables shaped like `bench_catalog`'s: a serial key, a foreign key to the previous table.
fn tables() -> Vec<TableInfo> {
    (1..=TABLES)
        .map(|i| {
            let mut t = table(
                "public",
                &format!("t{i}"),
                (i as i64 * 37) % 100_000,
                8192 * (1 + (i as i64 * 13) % 500),
                KeyKind::Primary,
            );
            t.oid = 16_384 + i as u32;
            t.sequences.push(SequenceUse {
                sequence: TableName::new("public", format!("t{i}_id_seq")),
                column: "id".into(),
            });
            if i > 1 {
                t.fk_out
                    .push(TableName::new("public", format!("t{}", i - 1)));
            }
            t
        })
        .collect()
}

/// Times each message from `update` to the frame drawn.
fn timed(app: &mut App, term: &mut Terminal<TestBackend>, msgs: Vec<Msg>) -> Vec<Duration> {
    msgs.into_iter()
        .map(|m| {
            let started = Instant::now();
            update(app, m);
            term.draw(|f| f.render_widget(&*app, f.area())).unwrap();
            started.elapsed()
        })
        .collect()
}

fn report(what: &str, mut times: Vec<Duration>) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "{what}: {} keys, median {:.2} ms, max {:.2} ms",
        times.len(),
        ms(times[times.len() / 2]),
        ms(*times.last().unwrap())
    );
}

#[test]
#[ignore = "benchmark: run with --release --ignored --nocapture"]
fn filter_keystroke_with_10k_tables() {
    let mut app = app_at_tables();
    let wanted = app.draft().tables.clone();
    app.tables.set_tables(tables(), &wanted, "");
    assert_eq!(app.screen, Screen::Tables);
    let mut term = Terminal::new(TestBackend::new(WIDTH, HEIGHT)).unwrap();
    term.draw(|f| f.render_widget(&app, f.area())).unwrap();
    update(&mut app, ch('/'));
    // 20 keys: narrowing, widening again, another filter, then leaving the filter.
    let keys = || {
        let mut keys: Vec<Msg> = "t1234".chars().map(ch).collect();
        keys.extend((0..5).map(|_| key(KeyCode::Backspace)));
        keys.extend("public.t9".chars().map(ch));
        keys.push(key(KeyCode::Enter));
        keys
    };
    for round in 1..=3 {
        let times = timed(&mut app, &mut term, keys());
        assert_eq!(app.tables.filter, "public.t9");
        report(
            &format!("filter keystroke, 10,000 tables, round {round}"),
            times,
        );
        // Back to an empty filter for the next round.
        update(&mut app, ch('/'));
        update(&mut app, key(KeyCode::Esc));
        update(&mut app, ch('/'));
    }
    update(&mut app, key(KeyCode::Esc));
    let moves: Vec<Msg> = (0..10)
        .map(|_| key(KeyCode::PageDown))
        .chain((0..10).map(|_| key(KeyCode::Down)))
        .collect();
    report(
        "table list PageDown/Down, 10,000 tables",
        timed(&mut app, &mut term, moves),
    );
}

#[test]
#[ignore = "benchmark: run with --release --ignored --nocapture"]
fn review_scroll_of_a_10k_table_plan() {
    let all = tables();
    let mut d = draft(true);
    d.tables = "all".into();
    let s = d.build().expect("draft builds");
    let sel = select(all, &Default::default(), &TableSelection::All, &[]);
    let facts = Facts {
        here_db_encoding: "UTF8".into(),
        here_db_collate: "C.UTF-8".into(),
        here_db_ctype: "C.UTF-8".into(),
        ..Default::default()
    };
    let plan = Plan::build(&s, sel.chosen, sel.coverage, &facts);
    let mut app = app_at_tables();
    update(&mut app, key(KeyCode::Enter));
    let mut term = Terminal::new(TestBackend::new(WIDTH, HEIGHT)).unwrap();
    let shown = timed(
        &mut app,
        &mut term,
        vec![Msg::PlanBuilt(Ok(Box::new(plan)))],
    );
    assert_eq!(app.screen, Screen::Review);
    eprintln!(
        "review of 10,000 tables: {} lines, plan shown in {:.1} ms",
        app.review.text.len(),
        shown[0].as_secs_f64() * 1000.0
    );
    for round in 1..=3 {
        let keys: Vec<Msg> = (0..20).map(|_| key(KeyCode::PageDown)).collect();
        report(
            &format!("review PageDown, round {round}"),
            timed(&mut app, &mut term, keys),
        );
        let keys: Vec<Msg> = (0..20).map(|_| key(KeyCode::Down)).collect();
        report(
            &format!("review Down, round {round}"),
            timed(&mut app, &mut term, keys),
        );
    }
    let end = timed(
        &mut app,
        &mut term,
        vec![key(KeyCode::End), key(KeyCode::Home)],
    );
    eprintln!(
        "review End {:.2} ms, Home {:.2} ms",
        end[0].as_secs_f64() * 1000.0,
        end[1].as_secs_f64() * 1000.0
    );
}
