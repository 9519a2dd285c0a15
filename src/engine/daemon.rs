//! Is the Bucardo daemon running? One answer for every caller (run, resume, preflight, status,
//! cleanup), built from two facts: whether the MCP answers a ping through the control database,
//! and what its PID file in the PID directory says about the process behind it.
//!
//! A ping alone cannot tell "not running" from "not answering yet": right after `bucardo start`
//! or `bucardo restart` the MCP's PID file exists for several seconds before it listens, and in
//! that window `bucardo start` refuses (`Cannot start, PID file ... exists`) and `bucardo reload`
//! says Bucardo is not running. So a live MCP that is silent is waited for, a PID file whose
//! process is gone is stale (Bucardo's own `start` removes it), and only a daemon that is really
//! gone is started.

use crate::engine::bucardo;
use crate::engine::conn::ConnSpec;
use crate::engine::error::EngineError;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The MCP's PID file, as Bucardo names it in its PID directory.
pub const PID_FILE: &str = "bucardo.mcp.pid";
/// The stop file Bucardo's `stop` (and `restart`) creates; every Bucardo process exits when it sees it.
pub const STOP_FILE: &str = "fullstopbucardo";
/// A stop file younger than this, with no PID file, is a stop or restart under way: `restart`
/// sleeps 3 s between its stop and its start.
const STOP_IN_PROGRESS: Duration = Duration::from_secs(10);
/// How long one ping waits for the pong.
pub const PING_WAIT: Duration = Duration::from_secs(3);
/// How long a live daemon that does not answer yet is waited for before the tool gives up.
pub const ANSWER_WAIT: Duration = Duration::from_secs(90);

/// What the tool knows about the daemon at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub enum Daemon {
    /// The MCP answered a ping. `pid` is the MCP's own PID, from its PID file; None when the PID
    /// file is not on this machine (the daemon runs next to a remote control database).
    Answering { pid: Option<u32> },
    /// The PID file names a live Bucardo process that does not answer a ping (yet): starting,
    /// restarting, or too busy.
    Silent { pid: u32 },
    /// A stop or restart is under way: a fresh stop file and no PID file.
    Stopping,
    /// The PID file names no live Bucardo process.
    Stale { pid: u32 },
    /// No answer and no PID file.
    #[default]
    NotRunning,
}

impl Daemon {
    pub fn answers(&self) -> bool {
        matches!(self, Daemon::Answering { .. })
    }

    /// Worth waiting for: it should answer soon.
    pub fn coming_up(&self) -> bool {
        matches!(self, Daemon::Silent { .. } | Daemon::Stopping)
    }

    /// One phrase for status lines and logs.
    pub fn describe(&self) -> String {
        match self {
            Daemon::Answering { pid: Some(p) } => format!("running (PID {p})"),
            Daemon::Answering { pid: None } => {
                "running (it answers a ping; its PID file is not on this machine)".into()
            }
            Daemon::Silent { pid } => {
                format!("starting or busy: PID {pid} is alive but does not answer a ping yet")
            }
            Daemon::Stopping => "stopping or restarting (a fresh stop file, no PID file)".into(),
            Daemon::Stale { pid } => {
                format!(
                    "not running (a stale PID file names PID {pid}, which is not a Bucardo process)"
                )
            }
            Daemon::NotRunning => "not running".into(),
        }
    }
}

/// What the PID directory says, without asking the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PidFile {
    /// A live process that is Bucardo's.
    Live(u32),
    /// A PID whose process is gone, or is not Bucardo's (a reused PID).
    Stale(u32),
    /// A fresh stop file and no PID file.
    Stopping,
    Absent,
}

/// Reads the MCP's PID file and looks the process up in `/proc`.
pub fn pid_file(piddir: &Path) -> PidFile {
    let path = piddir.join(PID_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        let stop = piddir.join(STOP_FILE);
        let fresh = std::fs::metadata(stop)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age < STOP_IN_PROGRESS);
        return if fresh {
            PidFile::Stopping
        } else {
            PidFile::Absent
        };
    };
    match text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<u32>().ok())
    {
        Some(pid) if is_bucardo(pid) => PidFile::Live(pid),
        Some(pid) => PidFile::Stale(pid),
        None => PidFile::Absent,
    }
}

/// Is `pid` a live Bucardo process? The MCP renames itself `Bucardo Master Control Program`;
/// before that it is `perl /usr/bin/bucardo ... start`. A word that merely contains "bucardo"
/// (this tool's own name) does not count.
fn is_bucardo(pid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    // A zombie has an empty cmdline: it is gone for every purpose here.
    String::from_utf8_lossy(&cmdline).split('\0').any(|w| {
        w.starts_with("Bucardo Master Control Program")
            || Path::new(w).file_name().is_some_and(|n| n == "bucardo")
    })
}

/// Removes a stale PID file, as Bucardo's own `start` does for a dead PID. A PID the system
/// reused for another program would make `start` refuse ("PID file exists") for good, so it goes
/// too. Returns the file's path when it was removed; a file that now names another PID (a
/// daemon started meanwhile) is left alone.
pub fn remove_stale(piddir: &Path, pid: u32) -> std::io::Result<Option<PathBuf>> {
    let path = piddir.join(PID_FILE);
    if pid_file(piddir) != PidFile::Stale(pid) {
        return Ok(None);
    }
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(Some(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Pings the daemon and reads its PID file: one look, no waiting beyond `ping_wait`.
pub async fn probe(
    control: &ConnSpec,
    piddir: &Path,
    ping_wait: Duration,
) -> Result<Daemon, EngineError> {
    let pong = bucardo::ping(control, ping_wait).await?;
    // Read after the ping: a daemon that just came up has rewritten its PID file by then.
    let file = pid_file(piddir);
    Ok(classify(pong, file))
}

/// The rule, apart from the I/O.
pub fn classify(pong: bool, file: PidFile) -> Daemon {
    match (pong, file) {
        (true, PidFile::Live(pid)) => Daemon::Answering { pid: Some(pid) },
        (true, _) => Daemon::Answering { pid: None },
        (false, PidFile::Live(pid)) => Daemon::Silent { pid },
        (false, PidFile::Stale(pid)) => Daemon::Stale { pid },
        (false, PidFile::Stopping) => Daemon::Stopping,
        (false, PidFile::Absent) => Daemon::NotRunning,
    }
}

/// Probes until the daemon answers, or is plainly not running, or `wait` has passed while it was
/// coming up. `on_wait` is called once, the first time the tool has to wait, with the state it
/// waits on. The returned state is the last one seen: `Answering`, `Stale`, `NotRunning`, or (on
/// timeout) `Silent`/`Stopping`.
pub async fn settle(
    control: &ConnSpec,
    piddir: &Path,
    wait: Duration,
    mut on_wait: impl FnMut(&Daemon),
) -> Result<Daemon, EngineError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut told = false;
    // A PID file can name a parent that is about to exit (Bucardo writes it before its own fork,
    // then again after): a stale reading is confirmed once before it is believed.
    let mut stale_seen = false;
    loop {
        let d = probe(control, piddir, PING_WAIT).await?;
        let again = match &d {
            Daemon::Answering { .. } | Daemon::NotRunning => false,
            Daemon::Stale { .. } => !std::mem::replace(&mut stale_seen, true),
            Daemon::Silent { .. } | Daemon::Stopping => true,
        };
        if !again || tokio::time::Instant::now() >= deadline {
            return Ok(d);
        }
        if d.coming_up() && !told {
            on_wait(&d);
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until the daemon that `bucardo stop` was told to stop has exited: no PID file in the
/// PID directory (the MCP's, its controllers' and kids') names a live Bucardo process any more.
/// A PID file left by a process that is gone is removed, and so is the stop file, so that the
/// directory reads as "not running" rather than "stopping". Errs after `wait`.
pub async fn wait_stopped(piddir: &Path, wait: Duration) -> Result<(), EngineError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let live: Vec<u32> = pid_files(piddir)
            .into_iter()
            .filter(|(_, pid)| is_bucardo(*pid))
            .map(|(_, pid)| pid)
            .collect();
        if live.is_empty() {
            for (path, _) in pid_files(piddir) {
                let _ = std::fs::remove_file(path);
            }
            let _ = std::fs::remove_file(piddir.join(STOP_FILE));
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(EngineError::Timeout(format!(
                "Bucardo processes {live:?} were still running {} s after `bucardo stop`; see the daemon's log",
                wait.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every `*.pid` file in the PID directory and the PID it names.
fn pid_files(piddir: &Path) -> Vec<(PathBuf, u32)> {
    std::fs::read_dir(piddir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".pid"))
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path()).ok()?;
            let pid = text.split_whitespace().next()?.parse().ok()?;
            Some((e.path(), pid))
        })
        .collect()
}

/// The error for a daemon that stayed silent for the whole wait.
pub fn silent_error(d: &Daemon, wait: Duration, logfile: &Path) -> EngineError {
    EngineError::Timeout(format!(
        "the Bucardo daemon is {} and did not answer a ping for {} s; see its log ({}), or stop it (`bucardo stop`) and run this again",
        d.describe(),
        wait.as_secs(),
        logfile.display()
    ))
}

/// Bucardo's words for "the daemon did not answer", in `reload` and friends.
pub fn says_not_running(text: &str) -> bool {
    text.contains("Bucardo is not running") || text.contains("no ping response from MCP")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_live_daemon_is_not_a_stopped_one() {
        assert_eq!(classify(false, PidFile::Live(7)), Daemon::Silent { pid: 7 });
        assert!(classify(false, PidFile::Live(7)).coming_up());
        assert!(!classify(false, PidFile::Stale(7)).coming_up());
        assert_eq!(classify(false, PidFile::Absent), Daemon::NotRunning);
        assert_eq!(
            classify(true, PidFile::Live(9)),
            Daemon::Answering { pid: Some(9) }
        );
        // An answer wins over a PID file that says otherwise (the daemon runs on another host).
        assert_eq!(
            classify(true, PidFile::Stale(9)),
            Daemon::Answering { pid: None }
        );
    }

    #[test]
    fn pid_file_tells_live_stale_stopping_and_absent() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(pid_file(dir.path()), PidFile::Absent);
        std::fs::write(dir.path().join(STOP_FILE), "Stopped by test\n").unwrap();
        assert_eq!(pid_file(dir.path()), PidFile::Stopping);
        // This test's own process is not Bucardo's: a reused PID is stale.
        let me = std::process::id();
        std::fs::write(
            dir.path().join(PID_FILE),
            format!("{me}\nbucardo start\nnow\n"),
        )
        .unwrap();
        assert_eq!(pid_file(dir.path()), PidFile::Stale(me));
        // A reused PID would make `bucardo start` refuse for good: the file goes.
        assert_eq!(
            remove_stale(dir.path(), me).unwrap(),
            Some(dir.path().join(PID_FILE))
        );
        assert!(!dir.path().join(PID_FILE).exists());
        std::fs::write(
            dir.path().join(PID_FILE),
            format!("{me}\nbucardo start\nnow\n"),
        )
        .unwrap();
        // A process whose command line says bucardo is live.
        let mut child = std::process::Command::new("bash")
            .args([
                "-c",
                "exec -a 'Bucardo Master Control Program v5.6.0.' sleep 30",
            ])
            .spawn()
            .unwrap();
        let pid = child.id();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !is_bucardo(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::write(dir.path().join(PID_FILE), format!("{pid}\n")).unwrap();
        assert_eq!(pid_file(dir.path()), PidFile::Live(pid));
        assert_eq!(
            remove_stale(dir.path(), pid).unwrap(),
            None,
            "a live daemon's file stays"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(pid_file(dir.path()), PidFile::Stale(pid));
    }

    #[test]
    fn bucardos_not_running_words_are_recognised() {
        assert!(says_not_running(
            "Looks like Bucardo is not running, so there is no need to reload"
        ));
        assert!(!says_not_running("DONE!"));
    }
}
