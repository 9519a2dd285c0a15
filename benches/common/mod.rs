//! What the benchmarks share: running the real binary's headless `run` against a sandbox with
//! its step lines timestamped as they arrive, its peak RSS, and the arithmetic on the figures.

use bucardo_bootstrap::sandbox::{measure, Sandbox};
use std::collections::BTreeMap;
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
    /// The process's peak RSS so far (kB, the kernel's `VmHWM`) as each line arrived: what
    /// tells which step raised the peak.
    pub hwm: Vec<(f64, u64)>,
    /// The largest peak RSS (kB) seen of each program in the process tree, the tool itself
    /// included: `peak_kb` is the kernel's figure for the whole tree (`wait4` counts the
    /// children it waited for), and this says whose it is.
    pub programs: BTreeMap<String, u64>,
}

impl ToolRun {
    /// The peak RSS (kB) the process had reached by time `t`, as last read before it.
    pub fn peak_by(&self, t: f64) -> u64 {
        self.hwm
            .iter()
            .take_while(|(at, _)| *at <= t)
            .last()
            .map_or(0, |(_, kb)| *kb)
    }
}

/// `VmHWM` of process `pid` in kB, while it runs.
fn vm_hwm(pid: u32) -> Option<u64> {
    status_of(pid).map(|(_, kb)| kb)
}

/// The program name and `VmHWM` (kB) of a live process.
fn status_of(pid: u32) -> Option<(String, u64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let kb = field("VmHWM:")?.split_whitespace().next()?.parse().ok()?;
    Some((field("Name:")?.to_string(), kb))
}

/// Samples a process tree every 50 ms for the peak RSS of each program in it.
struct ProgramPeaks {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<BTreeMap<String, u64>>,
}

impl ProgramPeaks {
    fn watch(root: u32) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peaks: BTreeMap<String, u64> = BTreeMap::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let mut pids = vec![root];
                while let Some(pid) = pids.pop() {
                    if let Some((name, kb)) = status_of(pid) {
                        let e = peaks.entry(name).or_default();
                        *e = (*e).max(kb);
                    }
                    let tasks = fs::read_dir(format!("/proc/{pid}/task"))
                        .into_iter()
                        .flatten();
                    for task in tasks.flatten() {
                        let children = fs::read_to_string(task.path().join("children"));
                        pids.extend(
                            children
                                .unwrap_or_default()
                                .split_whitespace()
                                .filter_map(|p| p.parse::<u32>().ok()),
                        );
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            peaks
        });
        ProgramPeaks { stop, thread }
    }

    fn stop(self) -> BTreeMap<String, u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
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
    let programs = ProgramPeaks::watch(child.id());
    let stderr = child.stderr.take().expect("piped stderr");
    let mut log = fs::File::create(sb.root.join("tool-stderr.log")).expect("tool log");
    let mut lines: Vec<(f64, String)> = Vec::new();
    let mut hwm = Vec::new();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        let t = now();
        let _ = writeln!(log, "{t:.3} {line}");
        lines.push((t, line));
        if let Some(kb) = vm_hwm(child.id()) {
            hwm.push((t, kb));
        }
    }
    let (status, peak_kb) = measure::wait_with_peak_rss(&mut child).expect("bucardo-bootstrap");
    let programs = programs.stop();
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
        hwm,
        programs,
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
