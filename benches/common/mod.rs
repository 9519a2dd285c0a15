//! What the benchmarks share: running the real binary's headless `run` against a sandbox with
//! its step lines timestamped as they arrive, its peak RSS, and the arithmetic on the figures.

use bucardo_bootstrap::sandbox::{measure, Sandbox};
use std::fs;
use std::io::{BufRead, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

/// A step of a procedure, in wall-clock epoch seconds.
#[derive(Clone, Debug)]
pub struct Span {
    pub label: String,
    pub start: f64,
    pub end: f64,
}

/// What a run of the tool left: its step spans, every stderr line with its arrival time, and
/// its peak RSS in kB.
pub struct ToolRun {
    pub spans: Vec<Span>,
    pub lines: Vec<(f64, String)>,
    pub peak_kb: u64,
}

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// Runs `psql` (its connection already set) on `script` through stdin; panics when it fails.
pub fn feed_psql(mut psql: Command, script: &str) {
    let mut child = psql
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("psql");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("the script to psql");
    assert!(child.wait().expect("psql").success(), "the script failed");
}

pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `bucardo-bootstrap run --yes --tables all` on database `db` of the sandbox, headless, with
/// the flags the test suite uses, then `extra`. Its stderr goes, timestamped, to
/// `tool-stderr.log` in the sandbox. Panics with the output when the run fails.
pub fn run_tool(sb: &Sandbox, db: &str, bucardo_pass: &str, extra: &[String]) -> ToolRun {
    let mut cmd = sb.tool_command(
        std::path::Path::new(env!("CARGO_BIN_EXE_bucardo-bootstrap")),
        bucardo_pass,
    );
    cmd.args(["run", "--yes", "--tables", "all"])
        .args(sb.tool_flags(db))
        .args(["--kick-timeout", "120"])
        .args(extra)
        // Settings of the tool's own (BUCARDO_BOOTSTRAP_LOG, the copy's knobs, ...) pass through.
        .envs(std::env::vars().filter(|(k, _)| k.starts_with("BUCARDO_BOOTSTRAP_")))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("bucardo-bootstrap starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let mut log = fs::File::create(sb.root.join("tool-stderr.log")).expect("tool log");
    let mut lines: Vec<(f64, String)> = Vec::new();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        let t = now();
        let _ = writeln!(log, "{t:.3} {line}");
        lines.push((t, line));
    }
    let (status, peak_kb) = measure::wait_with_peak_rss(&mut child).expect("bucardo-bootstrap");
    assert!(
        status.success(),
        "bucardo-bootstrap run failed ({status}):\n{}",
        lines
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    ToolRun {
        spans: step_spans(&lines),
        lines,
        peak_kb,
    }
}

/// The headless step lines: `[3/13] Title ...` opens step 3, the next `[3/13] Title ...` line
/// that does not end in `...` (`done in`, `skipped`, `FAILED`) closes it.
pub fn step_spans(lines: &[(f64, String)]) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    let mut open: Vec<(String, String, f64)> = Vec::new();
    for (t, line) in lines {
        let Some(rest) = line.strip_prefix('[') else {
            continue;
        };
        let Some((num, title)) = rest.split_once("] ") else {
            continue;
        };
        if !num.contains('/') || !num.chars().all(|c| c.is_ascii_digit() || c == '/') {
            continue;
        }
        let id = num.split('/').next().unwrap_or_default().to_string();
        if let Some(title) = title.strip_suffix(" ...") {
            open.push((id.clone(), format!("{id} {title}"), *t));
        } else if let Some(i) = open.iter().position(|(x, _, _)| *x == id) {
            let (_, label, start) = open.remove(i);
            spans.push(Span {
                label,
                start,
                end: *t,
            });
        }
    }
    spans
}
