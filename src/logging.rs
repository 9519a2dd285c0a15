//! Logging: one file per run in the state directory, mode 0600 in a 0700 directory, written
//! through tracing-appender's non-blocking writer, with every line passed through the redactor.
//! Nothing is logged to the terminal: the TUI owns it, and the headless front end prints its own
//! progress lines.

use crate::engine::files::private_dir;
use crate::engine::secret::redact;
use std::io::Write;
use std::path::{Path, PathBuf};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

/// A writer that masks secrets before they reach the file.
struct Redacting<W: Write>(W);

impl<W: Write> Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = redact(&String::from_utf8_lossy(buf));
        self.0.write_all(text.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Starts logging to `<dir>/<prefix>-<timestamp>-<pid>.log`; keep the guard alive until exit.
pub fn init(dir: &Path, prefix: &str) -> anyhow::Result<(WorkerGuard, PathBuf)> {
    use std::os::unix::fs::OpenOptionsExt;
    private_dir(dir, "--log-dir")?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let path = dir.join(format!("{prefix}-{stamp}-{}.log", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)?;
    let (writer, guard) = tracing_appender::non_blocking(Redacting(file));
    let filter = EnvFilter::try_from_env("BUCARDO_BOOTSTRAP_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,tokio_postgres=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(writer)
        .try_init();
    Ok((guard, path))
}
