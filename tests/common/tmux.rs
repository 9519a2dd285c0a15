//! The wizard in a private tmux server: start it in a detached 120x40 session, type keys, and
//! read the screen with `capture-pane`. Every wait polls the pane until a deadline.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Sessions started by this test binary, for unique socket names when tests run in parallel.
static SESSIONS: AtomicUsize = AtomicUsize::new(0);

const POLL: Duration = Duration::from_millis(100);

/// A private tmux server with one session running the wizard.
pub struct Tmux {
    socket: String,
    pub started: Instant,
}

impl Tmux {
    fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-u", "-L", &self.socket, "-f", "/dev/null"]);
        c
    }

    /// Starts `argv` in a 120x40 session with only `env` in its environment. The shell wrapper
    /// keeps the pane open after the program exits and prints its status.
    pub fn start(argv: &[String], env: &[(&str, String)]) -> Tmux {
        let t = Tmux {
            socket: format!(
                "bb-tui-{}-{}",
                std::process::id(),
                SESSIONS.fetch_add(1, Ordering::Relaxed)
            ),
            started: Instant::now(),
        };
        let quoted: Vec<String> = argv
            .iter()
            .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
            .collect();
        let script = format!("{}; echo \"WIZARD-EXIT=$?\"; sleep 3600", quoted.join(" "));
        let mut c = t.tmux();
        c.env_clear();
        for (k, v) in env {
            c.env(k, v);
        }
        c.args([
            "new-session",
            "-d",
            "-s",
            "wiz",
            "-x",
            "120",
            "-y",
            "40",
            "sh",
            "-c",
            &script,
        ]);
        let out = c.output().expect("tmux runs");
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    pub fn capture(&self) -> String {
        let out = self
            .tmux()
            .args(["capture-pane", "-p", "-t", "wiz"])
            .output()
            .expect("capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn keys(&self, keys: &[&str]) {
        let st = self
            .tmux()
            .args(["send-keys", "-t", "wiz"])
            .args(keys)
            .status()
            .expect("send-keys");
        assert!(st.success());
    }

    /// Polls the pane until `pred` holds; panics with the last screen after `timeout`.
    pub fn wait(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.capture();
            if pred(&screen) {
                return screen;
            }
            if screen.contains("WIZARD-EXIT=") || Instant::now() > deadline {
                panic!(
                    "waiting for {what} ({:.0} s in):\n{screen}",
                    self.started.elapsed().as_secs_f64()
                );
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // The server leaves its socket file behind; remove it too.
        let socket = self
            .tmux()
            .args(["display-message", "-p", "#{socket_path}"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let _ = self.tmux().arg("kill-server").status();
        if socket.ends_with(&self.socket) {
            let _ = std::fs::remove_file(socket);
        }
    }
}

/// The wizard's environment in tmux: passwords from the environment, a UTF-8 terminal, debug logs.
pub fn wizard_env(
    sb: &bucardo_bootstrap::sandbox::Sandbox,
    bucardo_pass: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("HOME", sb.root.join("home").display().to_string()),
        ("LANG", "C.UTF-8".to_string()),
        ("TERM", "xterm-256color".to_string()),
        ("PGPASSWORD", sb.password.clone()),
        ("BUCARDOPASS", bucardo_pass.to_string()),
        ("BUCARDO_BOOTSTRAP_LOG", "debug".to_string()),
    ]
}
