//! Throwaway local PostgreSQL sandboxes for `bucardo-bootstrap demo` and the integration tests:
//! two clusters (HERE and THERE) under one root directory, plus a PID and a log directory for
//! the Bucardo daemon the tool under test starts. Dropping a [`Sandbox`] kills that daemon, stops
//! both clusters and removes the directory (unless `keep`).
//!
//! [`Sandbox::start`] blocks for a few seconds (two `initdb`s in parallel); from async code call
//! it inside `tokio::task::spawn_blocking`.
//!
//! Submodules: [`cluster`] (one cluster's lifecycle), [`data`] (the sample `widgets` database),
//! [`writer`] (background production traffic with a ledger of committed effects), [`measure`]
//! (a child process's peak memory).

pub mod cluster;
pub mod data;
pub mod measure;
pub mod writer;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub use cluster::{free_port, pg_bindir, require_tools, Cluster, INSTALL_HINT};
pub use data::load_widgets;
pub use writer::{Writer, WriterOptions, WriterReport};

/// Password of the `postgres` superuser on both clusters unless the caller picks another.
pub const DEFAULT_PASSWORD: &str = "sandbox-secret";

/// How to start a [`Sandbox`].
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Password of the `postgres` superuser on both clusters.
    pub password: String,
    /// Keep the directory (data, logs) after the sandbox is dropped; the clusters are still stopped.
    pub keep: bool,
    /// Directory to build the sandbox in; it must not exist or be empty. Default: a fresh
    /// `bucardo-sandbox-*` directory under the system temp dir.
    pub root: Option<PathBuf>,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            password: DEFAULT_PASSWORD.to_string(),
            keep: false,
            root: None,
        }
    }
}

/// Two running local clusters, `here` and `there`, and Bucardo's working directories.
#[derive(Debug)]
pub struct Sandbox {
    pub root: PathBuf,
    pub here: Cluster,
    pub there: Cluster,
    pub password: String,
    /// Give this to every `bucardo` call as `--piddir`.
    pub piddir: PathBuf,
    /// Give this to `bucardo start` as `--log-destination`.
    pub logdir: PathBuf,
    keep: bool,
    shut_down: bool,
}

impl Sandbox {
    /// Creates the root directory and starts both clusters (in parallel).
    pub fn start(opts: SandboxOptions) -> Result<Sandbox> {
        let root = match &opts.root {
            Some(dir) => {
                fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                if fs::read_dir(dir)?.next().is_some() {
                    bail!("sandbox root {} is not empty", dir.display());
                }
                dir.canonicalize()?
            }
            None => tempfile::Builder::new()
                .prefix("bucardo-sandbox-")
                .tempdir()
                .context("creating the sandbox directory")?
                .keep(),
        };
        // The server runs as `postgres` when we are root: it must be able to traverse the root.
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755))?;

        let result = (|| {
            let piddir = root.join("bucardo-run");
            let logdir = root.join("bucardo-log");
            for dir in [&piddir, &logdir] {
                fs::create_dir(dir)?;
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
            }
            let (here, there) = std::thread::scope(|s| {
                let here = s.spawn(|| Cluster::create("here", &root, &opts.password));
                let there = s.spawn(|| Cluster::create("there", &root, &opts.password));
                (join(here), join(there))
            });
            match (here, there) {
                (Ok(here), Ok(there)) => Ok((here, there, piddir, logdir)),
                (here, there) => {
                    let mut err = None;
                    for c in [here, there] {
                        match c {
                            Ok(c) => {
                                let _ = c.stop_immediate();
                            }
                            Err(e) => err = err.or(Some(e)),
                        }
                    }
                    Err(err.expect("one of the clusters failed"))
                }
            }
        })();

        match result {
            Ok((here, there, piddir, logdir)) => Ok(Sandbox {
                root,
                here,
                there,
                password: opts.password,
                piddir,
                logdir,
                keep: opts.keep,
                shut_down: false,
            }),
            Err(e) => {
                if !opts.keep {
                    let _ = fs::remove_dir_all(&root);
                }
                Err(e.context(format!("starting sandbox in {}", root.display())))
            }
        }
    }

    /// Environment for child processes that should reach the clusters as `postgres`
    /// (both clusters share the password).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("PGPASSWORD".to_string(), self.password.clone())]
    }

    /// Whether the directory survives the sandbox.
    pub fn keep(&self) -> bool {
        self.keep
    }

    /// Restarts THERE (`pg_ctl restart -m fast`), dropping every connection to it.
    pub fn restart_there(&self) -> Result<()> {
        self.there.restart()
    }

    /// The tool's connection flags for database `db` on both clusters, with Bucardo's control
    /// database on HERE and the sandbox's own PID, log and state directories.
    pub fn tool_flags(&self, db: &str) -> Vec<String> {
        vec![
            "--here".into(),
            self.here.uri(db),
            "--there".into(),
            self.there.uri(db),
            "--bucardo-db".into(),
            format!(
                "postgres://bucardo@{}:{}/bucardo",
                self.here.host, self.here.port
            ),
            "--bucardo-piddir".into(),
            self.piddir.display().to_string(),
            "--bucardo-logdir".into(),
            self.logdir.display().to_string(),
            "--log-dir".into(),
            self.root.join("state").display().to_string(),
        ]
    }

    /// `bin` (the tool) with the passwords only in its environment and the sandbox's own home:
    /// no ~/.pgpass or other setting of the machine to lean on.
    pub fn tool_command(&self, bin: &Path, bucardo_pass: &str) -> std::process::Command {
        let home = self.root.join("home");
        let _ = fs::create_dir_all(&home);
        let mut c = std::process::Command::new(bin);
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("PGPASSWORD", &self.password)
            .env("BUCARDOPASS", bucardo_pass);
        c
    }

    /// Raises `max_locks_per_transaction` on both clusters (and restarts them) to what the
    /// preflight asks of a bootstrap over `tables` tables, when PostgreSQL's 64 is not enough;
    /// returns the value set, if any.
    pub fn fit_lock_tables(&self, tables: u64) -> Result<Option<u64>> {
        let per_tx = crate::engine::preflight::max_locks_for_sync(tables, 100);
        if per_tx <= 64 {
            return Ok(None);
        }
        for c in [&self.here, &self.there] {
            c.psql(
                "postgres",
                &format!("ALTER SYSTEM SET max_locks_per_transaction = {per_tx}"),
            )?;
            c.restart()?;
        }
        Ok(Some(per_tx))
    }

    /// Kills Bucardo, stops both clusters and removes the directory (unless `keep`), reporting
    /// errors that [`Drop`] would swallow.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if self.shut_down {
            return Ok(());
        }
        self.shut_down = true;
        kill_bucardo(&self.piddir, &self.root);
        let mut first_err = None;
        for cluster in [&self.here, &self.there] {
            if let Err(e) = cluster.stop_immediate() {
                first_err.get_or_insert(e);
            }
        }
        if !self.keep {
            if let Err(e) = fs::remove_dir_all(&self.root) {
                first_err.get_or_insert(
                    anyhow::Error::new(e).context(format!("removing {}", self.root.display())),
                );
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!("sandbox cleanup: {e:#}");
        }
    }
}

fn join<T>(handle: std::thread::ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
    handle
        .join()
        .unwrap_or_else(|_| bail!("cluster start thread panicked"))
}

/// Kills every process named in `<piddir>/*.pid` and their descendants, as long as it looks like
/// Bucardo or mentions the sandbox root (a PID file may outlive its process and the PID be reused):
/// SIGTERM, then SIGKILL after 2 s.
fn kill_bucardo(piddir: &Path, root: &Path) {
    let Ok(entries) = fs::read_dir(piddir) else {
        return;
    };
    let mut pids: BTreeSet<i32> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".pid"))
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .filter_map(|text| text.split_whitespace().next()?.parse().ok())
        .filter(|pid| *pid > 1)
        .collect();
    pids.extend(descendants(&pids));
    let root = root.to_string_lossy();
    let targets: Vec<i32> = pids
        .into_iter()
        .filter(|pid| {
            cmdline(*pid)
                .is_some_and(|c| c.to_lowercase().contains("bucardo") || c.contains(&*root))
        })
        .collect();
    if targets.is_empty() {
        return;
    }
    for &pid in &targets {
        // SAFETY: kill(2) on pids we just checked are Bucardo processes of this sandbox.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && targets.iter().any(|p| alive(*p)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for &pid in &targets {
        if alive(pid) {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// A process counts as alive until it has exited; zombies (exited, not yet reaped) do not count.
fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn cmdline(pid: i32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&raw).replace('\0', " "))
}

/// All transitive children of `parents`, from /proc/*/stat.
fn descendants(parents: &BTreeSet<i32>) -> BTreeSet<i32> {
    let mut children_of: Vec<(i32, i32)> = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // Field 4 (ppid) follows the parenthesised command name, which may contain spaces.
            if let Some(ppid) = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<i32>().ok())
            {
                children_of.push((ppid, pid));
            }
        }
    }
    let mut found = BTreeSet::new();
    let mut frontier: Vec<i32> = parents.iter().copied().collect();
    while let Some(parent) = frontier.pop() {
        for &(ppid, pid) in &children_of {
            if ppid == parent && !parents.contains(&pid) && found.insert(pid) {
                frontier.push(pid);
            }
        }
    }
    found
}
