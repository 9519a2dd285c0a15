//! Clock skew between this machine and each server, judged against the round trip that read it.

use super::*;

/// How far a server's clock is from this machine's, in seconds, and the uncertainty (half the
/// round trip of the best of a few readings).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClockReading {
    pub offset: f64,
    pub uncertainty: f64,
}

pub(super) async fn read_clock(c: &Client, local: fn() -> f64) -> Option<ClockReading> {
    let mut best: Option<ClockReading> = None;
    for _ in 0..3 {
        let t0 = local();
        let row = c
            .query_one("SELECT extract(epoch FROM clock_timestamp())::float8", &[])
            .await
            .ok()?;
        let t1 = local();
        let server: f64 = row.get(0);
        let r = ClockReading {
            offset: server - (t0 + t1) / 2.0,
            uncertainty: (t1 - t0) / 2.0,
        };
        match best {
            Some(b) if b.uncertainty <= r.uncertainty => {}
            _ => best = Some(r),
        }
    }
    best
}

/// Clock skew between HERE, THERE and this machine: a warning for each pair that differs by
/// more than `max` seconds beyond the measurement's uncertainty.
pub fn clock_findings(
    here: Option<ClockReading>,
    there: Option<ClockReading>,
    max: f64,
) -> Vec<Finding> {
    let mut pairs = Vec::new();
    if let Some(h) = here {
        pairs.push(("HERE", "this machine", h.offset, h.uncertainty));
    }
    if let Some(t) = there {
        pairs.push(("THERE", "this machine", t.offset, t.uncertainty));
    }
    if let (Some(h), Some(t)) = (here, there) {
        pairs.push((
            "THERE",
            "HERE",
            t.offset - h.offset,
            t.uncertainty + h.uncertainty,
        ));
    }
    if pairs.is_empty() {
        return vec![];
    }
    let mut out = Vec::new();
    let mut agree = Vec::new();
    for (a, b, diff, unc) in pairs {
        if diff.abs() - unc > max {
            out.push(Finding::warn(
                JUMP_BOX,
                "clock",
                format!(
                    "{a}'s clock is {:.1} s {} {b}'s: Bucardo settles conflicts by transaction start time, so the side with the later clock wins wrongly",
                    diff.abs(),
                    if diff > 0.0 { "ahead of" } else { "behind" }
                ),
                Some("synchronise the clocks with NTP on every machine, e.g. `timedatectl set-ntp true` (or chrony)".into()),
            ));
        } else {
            agree.push(format!("{a}/{b} {:+.3} s", diff));
        }
    }
    if !agree.is_empty() {
        out.push(Finding::pass(
            JUMP_BOX,
            "clock",
            format!("clocks agree within {max} s: {}", agree.join(", ")),
        ));
    }
    out
}
