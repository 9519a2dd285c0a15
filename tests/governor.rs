//! The governor on a real HERE: a writer plays the application, a loop obeying the governor's
//! pace plays the bootstrap's heavy work, and a real load spike (a lock that stalls every
//! application transaction) makes the governor pause the work; when the spike ends it resumes.
//! Each step waits for the governor's own report of the state before the next is triggered.

mod common;

use bucardo_bootstrap::engine::conn::{ConnDefaults, ConnSpec};
use bucardo_bootstrap::engine::event::{LogLevel, RunEvent};
use bucardo_bootstrap::engine::governor::{probe, Limits, Mode, Steer, View};
use bucardo_bootstrap::sandbox::Cluster;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn spec(c: &Cluster, db: &str) -> ConnSpec {
    let mut s = ConnSpec::parse_uri(&c.uri(db), &ConnDefaults::default()).expect("uri");
    s.resolve_password(Some(c.password()), None);
    s
}

/// What the governor said so far.
#[derive(Default)]
struct Heard {
    views: Vec<View>,
    notes: Vec<String>,
}

/// Reads events until `done` holds for what was heard; a generous deadline only turns a hang
/// into a failure with the transcript.
async fn until(
    rx: &mut mpsc::Receiver<RunEvent>,
    heard: &mut Heard,
    what: &str,
    done: impl Fn(&Heard) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !done(heard) {
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "waited for {what}; heard:\n{}\nlast views:\n{}",
                    heard.notes.join("\n"),
                    heard
                        .views
                        .iter()
                        .rev()
                        .take(10)
                        .map(View::line)
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            })
            .expect("the governor runs");
        match ev {
            RunEvent::Here(v) => heard.views.push(v),
            RunEvent::Log {
                level: LogLevel::Notice | LogLevel::Warn,
                message,
            } => heard.notes.push(message),
            _ => {}
        }
    }
}

fn last_mode(h: &Heard) -> Option<Mode> {
    h.views.last().map(|v| v.mode)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_spike_on_here_pauses_the_heavy_work_until_here_recovers() {
    let (sb, writer) = common::widgets_with_writer(1).await;
    let (tx, mut rx) = mpsc::channel(1024);
    let stop = CancellationToken::new();
    let gov = probe::spawn(
        spec(&sb.here, "widgets"),
        Limits::default(),
        2,
        None,
        tx,
        stop.clone(),
    );

    // The heavy work: slices of 20 ms at the governor's pace, counted.
    let slices = Arc::new(AtomicU64::new(0));
    let work = tokio::spawn({
        let (pace, slices, stop) = (gov.pace.clone(), slices.clone(), stop.clone());
        async move {
            while !stop.is_cancelled() {
                pace.admit(0).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                slices.fetch_add(1, Ordering::Relaxed);
                pace.breathe(Duration::from_millis(20)).await;
            }
        }
    });

    let mut heard = Heard::default();
    until(&mut rx, &mut heard, "the first report", |h| {
        !h.views.is_empty()
    })
    .await;
    assert_eq!(last_mode(&heard), Some(Mode::Measuring));
    until(&mut rx, &mut heard, "a second report", |h| {
        h.views.len() >= 2
    })
    .await;
    if last_mode(&heard) == Some(Mode::Measuring) {
        assert_eq!(
            slices.load(Ordering::Relaxed),
            0,
            "no heavy work while the baseline is measured"
        );
    }
    until(&mut rx, &mut heard, "the baseline", |h| {
        h.notes.iter().any(|n| n.contains("baseline is"))
            && h.views.last().is_some_and(|v| v.first_baseline.is_some())
    })
    .await;
    let base = heard.views.last().and_then(|v| v.first_baseline);
    assert!(
        base.is_some_and(|b| b.rate >= 5.0 && !b.by_commits),
        "the writer's transactions make the baseline: {base:?}"
    );
    until(&mut rx, &mut heard, "the work running", |h| {
        matches!(last_mode(h), Some(Mode::Throttled | Mode::Full))
    })
    .await;

    // The spike: every application transaction touches public.foo, and waits on this lock.
    let spike = common::client_db(&sb.here, "widgets").await;
    spike
        .batch_execute("BEGIN; LOCK TABLE public.foo IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    until(&mut rx, &mut heard, "the pause", |h| {
        last_mode(h) == Some(Mode::Paused)
    })
    .await;
    let paused = heard.views.last().unwrap().clone();
    assert!(
        paused.why.contains("below its baseline") || paused.why.contains("wait on locks"),
        "{}",
        paused.line()
    );
    assert!(heard.notes.iter().any(|n| n.contains("pausing")));
    let at_pause = slices.load(Ordering::Relaxed);
    // Two more reports while the spike lasts: the work stands still (one slice may have been in
    // flight when the pause was published).
    let seen = heard.views.len();
    until(&mut rx, &mut heard, "two reports in the pause", |h| {
        h.views.len() >= seen + 2
    })
    .await;
    assert_eq!(last_mode(&heard), Some(Mode::Paused));
    assert!(slices.load(Ordering::Relaxed) <= at_pause + 1);

    spike.batch_execute("COMMIT").await.unwrap();
    until(&mut rx, &mut heard, "the recovery", |h| {
        h.notes.iter().any(|n| n.contains("recovered"))
            && matches!(last_mode(h), Some(Mode::Throttled | Mode::Full))
    })
    .await;
    let resumed_at = slices.load(Ordering::Relaxed);
    let seen = heard.views.len();
    until(&mut rx, &mut heard, "work after the recovery", |h| {
        h.views.len() >= seen + 2
    })
    .await;
    assert!(
        slices.load(Ordering::Relaxed) > resumed_at,
        "the work runs again"
    );
    assert!(
        !heard
            .notes
            .iter()
            .any(|n| n.contains("Measuring against it")),
        "a spike that ends is not a new baseline: {:?}",
        heard.notes
    );

    // The operator's pause holds whatever HERE says, until they resume.
    gov.steer.send(Steer::Pause).unwrap();
    until(&mut rx, &mut heard, "the operator's pause", |h| {
        last_mode(h) == Some(Mode::Held)
    })
    .await;
    let held_at = slices.load(Ordering::Relaxed);
    let seen = heard.views.len();
    until(&mut rx, &mut heard, "two reports while held", |h| {
        h.views.len() >= seen + 2
    })
    .await;
    assert!(slices.load(Ordering::Relaxed) <= held_at + 1);
    gov.steer.send(Steer::Resume).unwrap();
    until(&mut rx, &mut heard, "the operator's resume", |h| {
        matches!(last_mode(h), Some(Mode::Throttled | Mode::Full))
    })
    .await;

    stop.cancel();
    work.abort();
    let report = writer.stop().await;
    assert!(report.commits > 0);
    drop(sb);
}

/// Without a terminal: a `pause` file in the state directory holds the heavy work back (the run
/// reaches the copy and waits there, THERE stays empty), and removing it lets the run finish.
#[test]
fn a_headless_run_waits_while_the_pause_file_exists() {
    let sb = common::sandbox_with_widgets(1);
    let state = common::state_dir(&sb);
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let pause = state.join("pause");
    std::fs::write(&pause, "").unwrap();
    let mut run = common::spawn_run(&sb, &[]);
    let wait = Duration::from_secs(180);
    assert!(
        run.wait_for("remove it to resume", wait),
        "{}",
        run.seen.join("\n")
    );
    assert!(
        run.wait_for("Copy the data", wait),
        "{}",
        run.seen.join("\n")
    );
    // The next periodic HERE line comes 15 s later: by then an unpaused copy of these tables
    // would long be over.
    assert!(
        run.wait_for("governor paused by you", wait),
        "{}",
        run.seen.join("\n")
    );
    let there_rows = sb
        .there
        .psql("widgets", "SELECT count(*) FROM public.orders")
        .unwrap();
    assert_eq!(there_rows.trim(), "0", "nothing was copied while paused");
    std::fs::remove_file(&pause).unwrap();
    let (code, out) = run.finish();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("resumed by the operator"), "{out}");
    assert!(out.contains("HERE during the bootstrap:"), "{out}");
}
