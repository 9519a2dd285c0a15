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

/// Keeps the log writer alive. When dropped it flushes the log, and removes the file if nothing
/// was written to it (`check` and `plan` often log nothing): no empty log files are left behind.
pub struct LogGuard {
    worker: Option<WorkerGuard>,
    path: PathBuf,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        drop(self.worker.take());
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() == 0) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Lines the log's writer thread may lag behind.
const LOG_BUFFER_LINES: usize = 16_384;

/// Starts logging to `<dir>/<prefix>-<timestamp>-<pid>.log`; keep the guard alive until exit.
pub fn init(dir: &Path, prefix: &str) -> anyhow::Result<(LogGuard, PathBuf)> {
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
    // The default buffer (128,000 lines) is 4 MB allocated up front; a smaller one that makes
    // a burst wait for the disk instead of dropping lines keeps the whole log.
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_BUFFER_LINES)
        .lossy(false)
        .finish(Redacting(file));
    let filter = EnvFilter::try_from_env("BUCARDO_BOOTSTRAP_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,tokio_postgres=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(writer)
        .try_init();
    let guard = LogGuard {
        worker: Some(guard),
        path: path.clone(),
    };
    Ok((guard, path))
}

#[cfg(test)]
mod tests {
    use super::LogGuard;

    #[test]
    fn an_empty_log_is_removed_and_a_written_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (empty, written) = (dir.path().join("a.log"), dir.path().join("b.log"));
        std::fs::write(&empty, "").unwrap();
        std::fs::write(&written, "step 1: Copy the schema\n").unwrap();
        for path in [&empty, &written] {
            drop(LogGuard {
                worker: None,
                path: path.clone(),
            });
        }
        assert!(!empty.exists() && written.exists());
    }
}
