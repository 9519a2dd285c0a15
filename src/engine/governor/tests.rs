//! The governor's decisions on a fake clock: every sample carries its own time.

use super::*;

const TICK: Duration = Duration::from_millis(250);

/// The limits the figures below are written for (not the defaults, which may move).
fn limits() -> Limits {
    Limits {
        enabled: true,
        max_load: 20,
        critical_load: 35,
    }
}

/// HERE as the governor sees it: a transaction counter advancing at `rate` per second.
struct Sim {
    g: Governor,
    t: Duration,
    xid: f64,
    commits: f64,
    notes: Vec<String>,
}

impl Sim {
    fn new(limits: Limits, jobs: usize) -> Sim {
        Sim {
            g: Governor::new(limits, jobs),
            t: Duration::ZERO,
            xid: 1000.0,
            commits: 0.0,
            notes: vec![],
        }
    }

    /// `secs` of HERE at `rate` write transactions per second.
    fn run(&mut self, secs: f64, rate: f64, working: bool) {
        self.run_with(secs, rate, working, |_| {});
    }

    fn run_with(&mut self, secs: f64, rate: f64, working: bool, tweak: impl Fn(&mut Sample)) {
        let ticks = (secs / TICK.as_secs_f64()).round() as usize;
        for _ in 0..ticks {
            self.t += TICK;
            self.xid += rate * TICK.as_secs_f64();
            self.commits += rate * TICK.as_secs_f64();
            let mut s = Sample {
                at: self.t,
                xid: self.xid as u64,
                commits: self.commits as u64,
                probe: Duration::from_micros(300),
                working,
                ..Default::default()
            };
            tweak(&mut s);
            if let Some(Note(n)) = self.g.observe(s) {
                self.notes.push(n);
            }
        }
    }

    fn control(&self) -> Control {
        self.g.control()
    }
}

fn baseline_sim(jobs: usize) -> Sim {
    let mut s = Sim::new(limits(), jobs);
    s.run(3.5, 1000.0, false);
    s
}

#[test]
fn the_heavy_work_waits_while_the_baseline_is_measured() {
    let mut s = Sim::new(limits(), 2);
    s.run(2.0, 1000.0, false);
    assert_eq!(s.g.mode(), Mode::Measuring);
    assert!(s.control().paused);
    s.run(1.5, 1000.0, false);
    let b = s.g.view().baseline.expect("baseline taken after 3 s");
    assert!((b.rate - 1000.0).abs() < 10.0, "{b:?}");
    assert!(!b.by_commits);
    assert!(
        s.notes[0].contains("baseline is 1000 write transactions/s"),
        "{:?}",
        s.notes
    );
    let c = s.control();
    assert!(!c.paused);
    assert_eq!(
        (c.duty, c.workers),
        (START_DUTY, 1),
        "a heavy phase starts slowly"
    );
}

#[test]
fn the_baseline_is_refined_by_every_second_until_the_heavy_work_begins() {
    // The first seconds caught the bootstrap's own DDL: 600 instead of HERE's usual 1000.
    let mut s = Sim::new(limits(), 2);
    s.run(3.5, 600.0, false);
    assert_eq!(s.g.view().baseline.unwrap().rate.round(), 600.0);
    s.run(6.0, 1000.0, false);
    let v = s.g.view();
    assert_eq!(v.baseline.unwrap().rate.round(), 1000.0);
    assert_eq!(v.first_baseline.unwrap().rate.round(), 1000.0);
    s.run(0.25, 1000.0, true);
    assert!(
        s.notes
            .last()
            .unwrap()
            .contains("before the heavy work began: 1000 tx/s"),
        "{:?}",
        s.notes
    );
    // 700 is 30 % below HERE's real level: throttled, where the first 3 s saw headroom.
    s.run(2.0, 700.0, true);
    assert_eq!(s.g.mode(), Mode::Throttled);
    assert!(s.control().duty < START_DUTY, "{:?}", s.control());
    // Once the work has run, a burst at rest moves nothing.
    s.run(5.0, 1500.0, false);
    assert_eq!(s.g.view().baseline.unwrap().rate.round(), 1000.0);
}

#[test]
fn with_headroom_it_speeds_up_a_step_a_second_to_full_speed() {
    let mut s = baseline_sim(2);
    s.run(1.0, 990.0, true);
    let after_one = s.control().duty;
    assert!(after_one > START_DUTY && after_one < 1.0, "{after_one}");
    s.run(6.0, 990.0, true);
    assert_eq!(s.g.mode(), Mode::Full);
    assert_eq!(s.control(), Control::full(2));
    assert!(s.notes.iter().any(|n| n.contains("full speed")));
}

#[test]
fn a_loss_past_max_load_halves_the_duty_once_a_second() {
    let mut s = baseline_sim(2);
    s.run(8.0, 1000.0, true);
    assert_eq!(s.g.mode(), Mode::Full);
    // 25 % below: past max_load (20 %), short of critical (35 %), once most of the steering
    // windows have seen a whole second of it.
    s.run(1.75, 750.0, true);
    assert_eq!(s.g.mode(), Mode::Full);
    s.run(0.25, 750.0, true);
    let c = s.control();
    assert_eq!(s.g.mode(), Mode::Throttled);
    assert_eq!((c.duty, c.workers), (0.5, 1));
    assert!(s
        .notes
        .last()
        .unwrap()
        .contains("throttling: HERE's rate is 25% below"));
    s.run(0.5, 750.0, true);
    assert_eq!(s.control().duty, 0.5, "no second change within a second");
    s.run(0.5, 750.0, true);
    assert_eq!(s.control().duty, 0.25);
    assert!(!s.control().paused);
}

#[test]
fn a_loss_between_half_and_all_of_max_load_holds_the_pace() {
    let mut s = baseline_sim(2);
    s.run(1.0, 1000.0, true);
    s.run(2.0, 870.0, true);
    let d = s.control().duty;
    s.run(5.0, 870.0, true);
    assert_eq!(s.control().duty, d);
    assert!(d < 1.0);
}

#[test]
fn past_critical_load_it_pauses_at_once_and_resumes_slowly_when_here_recovers() {
    let mut s = baseline_sim(2);
    s.run(8.0, 1000.0, true);
    s.run(1.0, 500.0, true);
    assert_ne!(
        s.g.mode(),
        Mode::Paused,
        "not after a single window past critical"
    );
    s.run(0.75, 500.0, true);
    assert_eq!(
        s.g.mode(),
        Mode::Paused,
        "paused once the loss held a second"
    );
    assert!(s.control().paused);
    assert!(s.notes.last().unwrap().contains("pausing"));
    let v = s.g.view();
    assert!(v.why.contains("below its baseline"), "{}", v.why);
    assert!(
        v.line().contains("governor paused: HERE's rate is"),
        "{}",
        v.line()
    );
    s.run(2.5, 950.0, false);
    let c = s.control();
    assert!(!c.paused);
    assert_eq!((c.duty, c.workers), (RESTART_DUTY, 1));
    assert!(s.notes.last().unwrap().contains("recovered"));
}

#[test]
fn a_rate_that_swings_by_a_fifth_each_second_does_not_throttle() {
    // pgbench on 2 cores, with the work costing HERE 15 %: 85 % of the baseline on average,
    // one second in two at 65 % (35 % below, past max_load), the next at 105 %.
    let mut s = baseline_sim(2);
    s.run(8.0, 1000.0, true);
    assert_eq!(s.g.mode(), Mode::Full);
    for _ in 0..10 {
        s.run(1.0, 650.0, true);
        s.run(1.0, 1050.0, true);
    }
    assert_eq!(s.g.mode(), Mode::Full, "{:?}", s.notes);
    assert_eq!(s.control(), Control::full(2));
    // A loss past max_load that holds: throttled.
    s.run(3.0, 700.0, true);
    assert_eq!(s.g.mode(), Mode::Throttled, "{:?}", s.notes);
}

#[test]
fn one_bad_second_past_critical_load_throttles_without_pausing() {
    let mut s = baseline_sim(2);
    s.run(8.0, 1000.0, true);
    // Half a second with no transaction at all: three one-second windows see 50 % lost.
    s.run(0.5, 0.0, true);
    for _ in 0..8 {
        s.run(0.25, 1000.0, true);
        assert_ne!(s.g.mode(), Mode::Paused, "{:?}", s.notes);
    }
    assert!(
        s.notes.iter().any(|n| n.contains("throttling")),
        "{:?}",
        s.notes
    );
    assert!(!s.notes.iter().any(|n| n.contains("pausing")));
}

#[test]
fn a_loss_that_outlasts_a_pause_becomes_the_new_reference_with_half_the_budget() {
    let mut s = baseline_sim(2);
    s.run(2.0, 1000.0, true);
    // Bucardo's triggers: 40 % less, with or without the copy.
    s.run(3.0, 600.0, true);
    assert_eq!(s.g.mode(), Mode::Paused);
    s.run(REBASE_AFTER.as_secs_f64() + 0.5, 600.0, false);
    assert_eq!(s.g.mode(), Mode::Throttled);
    assert!(s.notes.last().unwrap().contains("Bucardo's triggers"));
    let v = s.g.view();
    let b = v.baseline.unwrap();
    assert!((b.rate - 600.0).abs() < 10.0, "{b:?}");
    assert_eq!(v.first_baseline.unwrap().rate.round(), 1000.0);
    // Half of max_load (10 %) now throttles: 600 -> 530 is 12 % below.
    s.run(3.0, 600.0, true);
    let d = s.control().duty;
    s.run(2.5, 530.0, true);
    assert!(
        s.control().duty < d,
        "throttled at 12 % below the new reference"
    );
}

#[test]
fn stuck_at_the_slowest_pace_it_pauses_to_measure_here_without_the_work() {
    let mut s = baseline_sim(1);
    s.run(1.0, 1000.0, true);
    s.run(10.0, 700.0, true);
    assert!(s.control().duty <= MIN_DUTY + 1e-9);
    s.run(REBASE_AFTER.as_secs_f64(), 700.0, true);
    assert!(
        s.notes.iter().any(|n| n.contains("pausing to measure")),
        "{:?}",
        s.notes
    );
    s.run(REBASE_AFTER.as_secs_f64() + 1.0, 700.0, false);
    assert!(s.notes.iter().any(|n| n.contains("Measuring against it")));
    assert!(!s.control().paused);
}

#[test]
fn at_the_slowest_pace_a_loss_that_hovers_around_max_load_still_pauses_to_measure() {
    // Bucardo's triggers cost HERE about as much as max_load allows: the loss swings between
    // just under and just over it, and the work at its slowest changes nothing.
    let mut s = baseline_sim(1);
    s.run(1.0, 1000.0, true);
    while s.control().duty > MIN_DUTY + 1e-9 {
        s.run(0.25, 700.0, true);
    }
    assert!(
        !s.notes.iter().any(|n| n.contains("pausing")),
        "{:?}",
        s.notes
    );
    for _ in 0..6 {
        s.run(3.0, 820.0, true);
        s.run(1.5, 700.0, true);
    }
    assert!(
        s.notes.iter().any(|n| n.contains("pausing to measure")),
        "{:?}",
        s.notes
    );
}

#[test]
fn between_heavy_phases_the_next_one_starts_slowly_again() {
    let mut s = baseline_sim(2);
    s.run(8.0, 1000.0, true);
    assert_eq!(s.g.mode(), Mode::Full);
    s.run(IDLE_RESET.as_secs_f64() + 0.5, 1000.0, false);
    let c = s.control();
    assert_eq!((c.duty, c.workers), (START_DUTY, 1));
}

#[test]
fn the_operator_pauses_slows_and_speeds_up_whatever_here_says() {
    let mut s = baseline_sim(2);
    s.run(8.0, 1000.0, true);
    s.g.steer(Steer::Pause);
    s.run(3.0, 1000.0, true);
    assert_eq!(s.g.mode(), Mode::Held);
    assert!(s.control().paused);
    assert!(s.g.view().line().contains("paused by you"));
    s.g.steer(Steer::Resume);
    assert!(!s.control().paused);
    s.run(8.0, 1000.0, true);
    s.g.steer(Steer::Slower);
    assert_eq!(s.control().duty, 0.5);
    s.g.steer(Steer::Slower);
    assert_eq!(s.control().duty, 0.25);
    s.run(5.0, 1000.0, true);
    assert_eq!(s.control().duty, 0.25, "the cap holds with headroom");
    s.g.steer(Steer::Faster);
    s.g.steer(Steer::Faster);
    assert_eq!(s.control().duty, 1.0);
}

#[test]
fn off_means_full_speed_and_no_waiting_for_a_baseline() {
    let mut s = Sim::new(Limits::off(), 3);
    assert_eq!(s.control(), Control::full(3));
    s.run(5.0, 100.0, true);
    assert_eq!(s.g.mode(), Mode::Off);
    assert_eq!(s.control(), Control::full(3));
}

#[test]
fn a_read_mostly_here_is_steered_by_its_commit_rate() {
    let mut s = Sim::new(limits(), 1);
    // No transaction id consumed: only read-only commits.
    s.run_with(3.5, 400.0, false, |x| x.xid = 1000);
    assert!(s.g.view().baseline.unwrap().by_commits);
    assert!(s.notes[0].contains("commits/s"));
}

#[test]
fn a_slow_probe_or_a_lagging_standby_slows_the_work_too() {
    let mut s = baseline_sim(1);
    s.run(2.0, 1000.0, true);
    s.run_with(0.25, 1000.0, true, |x| x.probe = Duration::from_millis(400));
    assert_eq!(s.g.mode(), Mode::Paused);
    assert!(s.g.view().why.contains("probe query took 400 ms"));
    s.run(1.0, 1000.0, true);
    assert_eq!(s.g.mode(), Mode::Throttled);
    s.run(2.0, 1000.0, true);
    let d = s.control().duty;
    s.run_with(1.0, 1000.0, true, |x| {
        x.replica_lag = Some(Duration::from_secs(15))
    });
    assert!(s.control().duty < d);
    assert!(s.g.view().why.contains("standby lags 15 s"));
}

#[test]
fn shares_parse_as_percentages_or_off() {
    assert_eq!(Limits::parse_share("20"), Ok(Some(20)));
    assert_eq!(Limits::parse_share("35%"), Ok(Some(35)));
    assert_eq!(Limits::parse_share("off"), Ok(None));
    assert!(Limits::parse_share("0").is_err());
    assert!(Limits::parse_share("lots")
        .unwrap_err()
        .contains("percentage"));
}

#[tokio::test(start_paused = true)]
async fn pace_keeps_to_the_duty_and_waits_out_a_pause() {
    let (tx, rx) = watch::channel(Control {
        duty: 0.25,
        workers: 1,
        paused: false,
        held: false,
    });
    let pace = Pace::from_receiver(rx);
    let t0 = tokio::time::Instant::now();
    pace.breathe(Duration::from_millis(100)).await;
    assert_eq!(
        t0.elapsed(),
        Duration::from_millis(300),
        "100 ms of work at 25 %"
    );
    assert!(pace.worked_within(Duration::from_secs(1)));

    tx.send_replace(Control {
        duty: 1.0,
        workers: 1,
        paused: true,
        held: false,
    });
    let t1 = tokio::time::Instant::now();
    let waiting = tokio::spawn({
        let pace = pace.clone();
        async move { pace.admit(0).await }
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!waiting.is_finished(), "paused: no new piece");
    tx.send_replace(Control::full(2));
    waiting.await.unwrap();
    assert!(t1.elapsed() >= Duration::from_secs(5));
    pace.admit(1).await;

    tx.send_replace(Control {
        duty: 1.0,
        workers: 1,
        paused: false,
        held: false,
    });
    let second = tokio::spawn({
        let pace = pace.clone();
        async move { pace.admit(1).await }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !second.is_finished(),
        "one worker allowed: the second waits"
    );
    drop(tx);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!second.is_finished(), "the governor's last word stands");
    second.abort();
}

#[test]
fn a_nearly_idle_here_is_not_steered_by_its_rate() {
    // 6 read-only commits a second, the tool's own probe and watchers: then none for a while.
    let mut s = Sim::new(limits(), 2);
    s.run_with(3.5, 6.0, false, |x| x.xid = 1000);
    assert!(s.notes[0].contains("HERE is nearly idle"), "{:?}", s.notes);
    assert_eq!(s.control(), Control::full(2), "full speed from the start");
    s.run_with(8.0, 6.0, true, |x| x.xid = 1000);
    s.run_with(4.0, 0.0, true, |x| x.xid = 1000);
    assert_eq!(s.control(), Control::full(2), "{:?}", s.g.view());
    assert_eq!(s.g.view().rate_pct(), None);
}

#[test]
fn a_baseline_that_was_background_writes_and_stops_lets_the_work_go_on() {
    // 7 write transactions a second before the work (autovacuum analysing freshly loaded
    // tables), then none, with or without the work: measured once in the scale benchmark,
    // where the copy was paused again every few seconds for minutes.
    let mut s = Sim::new(limits(), 2);
    s.run(3.5, 7.0, false);
    assert!(s.notes[0].contains("baseline is 7 write"), "{:?}", s.notes);
    s.run(2.0, 7.0, true);
    s.run(3.0, 0.0, true);
    assert_eq!(s.g.mode(), Mode::Paused);
    s.run(REBASE_AFTER.as_secs_f64() + 0.5, 0.0, false);
    assert!(
        s.notes.last().unwrap().contains("too few to steer by"),
        "{:?}",
        s.notes
    );
    let pauses = s.notes.iter().filter(|n| n.contains("pausing")).count();
    s.run(30.0, 0.0, true);
    assert_eq!(
        s.notes.iter().filter(|n| n.contains("pausing")).count(),
        pauses,
        "paused again: {:?}",
        s.notes
    );
    assert_eq!(s.control(), Control::full(2), "{:?}", s.g.view());
}

#[test]
fn seconds_of_the_bootstraps_own_load_do_not_refine_the_baseline() {
    let mut s = Sim::new(limits(), 2);
    s.run(3.5, 100.0, false);
    // Registering 10,000 tables with Bucardo: HERE's rate triples, all of it the bootstrap's.
    s.run_with(20.0, 300.0, false, |x| x.own = true);
    s.run(2.0, 100.0, false);
    s.run(0.25, 100.0, true);
    let b = s.g.view().baseline.unwrap().rate;
    assert!((90.0..=110.0).contains(&b), "baseline {b}");
}

#[test]
fn a_baseline_that_was_the_bootstraps_own_ddl_on_a_quiet_here_does_not_hold_the_work() {
    // Installing Bucardo's control database in HERE's cluster: 6 write transactions a second
    // in the first seconds, then HERE at 1 a second until the copy, and none during it. Seen
    // in the scale benchmark, where the copy waited 35 % of a worker's time for a re-base.
    let mut s = Sim::new(limits(), 2);
    s.run_with(1.5, 6.0, false, |x| x.own = true);
    s.run(2.0, 6.0, false);
    assert!(s.notes[0].contains("baseline is 6 write"), "{:?}", s.notes);
    assert_eq!(s.g.mode(), Mode::Throttled);
    s.run_with(10.0, 40.0, false, |x| x.own = true);
    s.run(8.0, 1.0, false);
    let before_work = s.notes.len();
    s.run(0.25, 0.0, true);
    assert!(
        s.notes.last().unwrap().contains("is nearly idle (1 write"),
        "{:?}",
        s.notes
    );
    assert_eq!(s.control(), Control::full(2), "{:?}", s.g.view());
    s.run(20.0, 0.0, true);
    assert!(
        !s.notes[before_work..]
            .iter()
            .any(|n| n.contains("pausing") || n.contains("throttling")),
        "{:?}",
        s.notes
    );
    assert_eq!(s.control(), Control::full(2), "{:?}", s.g.view());

    // A quiet start, then 11 write transactions a second that are not the application's (the
    // daemon's, autovacuum's: seen in the 16x benchmark), and none once the copy runs.
    let mut s = Sim::new(limits(), 2);
    s.run_with(3.5, 6.0, false, |x| x.xid = 1000);
    assert!(s.notes[0].contains("HERE is nearly idle"), "{:?}", s.notes);
    s.run(10.0, 11.0, false);
    s.run(20.0, 0.0, true);
    assert_eq!(s.notes.len(), 1, "{:?}", s.notes);
    assert_eq!(s.control(), Control::full(2), "{:?}", s.g.view());

    // The other way round: 3 s of nothing, then an application committing 200 a second before
    // the work: steered by it from the first piece on, starting slowly.
    let mut s = Sim::new(limits(), 2);
    s.run(3.5, 0.0, false);
    assert_eq!(s.control(), Control::full(2));
    s.run(8.0, 200.0, false);
    s.run(0.25, 200.0, true);
    assert!(
        s.notes
            .last()
            .unwrap()
            .contains("before the heavy work began: 200 commits/s"),
        "{:?}",
        s.notes
    );
    assert_eq!(s.g.mode(), Mode::Throttled);
    s.run(3.0, 150.0, true);
    assert!(
        s.control().duty < START_DUTY && !s.control().paused,
        "{:?}",
        s.control()
    );
}

#[tokio::test(start_paused = true)]
async fn light_work_waits_for_the_operator_only() {
    let throttled_and_paused = Control {
        duty: MIN_DUTY,
        workers: 1,
        paused: true,
        held: false,
    };
    let (tx, rx) = watch::channel(throttled_and_paused);
    let pace = Pace::from_receiver(rx);
    let t0 = tokio::time::Instant::now();
    pace.admit_light().await;
    assert_eq!(
        t0.elapsed(),
        Duration::ZERO,
        "the governor's own pause does not hold light work"
    );
    assert!(pace.worked_within(Duration::from_secs(1)));

    let mut g = Governor::new(limits(), 2);
    g.steer(Steer::Pause);
    tx.send_replace(g.control());
    let waiting = tokio::spawn({
        let pace = pace.clone();
        async move { pace.admit_light().await }
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!waiting.is_finished(), "paused by the operator: it waits");
    g.steer(Steer::Resume);
    tx.send_replace(g.control());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(waiting.is_finished(), "resumed: it goes on");
}
