//! Child processes: argv-only invocation (never `sh -c`), the two-process pipelines of the seed
//! (`pg_dump | psql`), captured and redacted output, and a timeout on every call.

use crate::engine::error::EngineError;
use crate::engine::secret::redact;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// The 0600 passfile a child reads its passwords from (`PGPASSFILE`). A plan names the run's or
/// the daemon's passfile before either exists; the executor resolves them to paths.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PassfileRef {
    /// The run's own passfile: every password the run needs, removed when the run ends.
    Run,
    /// The daemon's passfile (`bucardo.pgpass` in the state directory): the Bucardo role's lines.
    Daemon,
    At(PathBuf),
}

impl From<&Path> for PassfileRef {
    fn from(p: &Path) -> Self {
        PassfileRef::At(p.to_path_buf())
    }
}

/// One program and its arguments, with the extra environment it needs. Nothing secret is ever
/// put in `argv`; the environment holds only non-secret settings, and passwords reach the child
/// through its passfile.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Invocation {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    #[serde(default)]
    pub passfile: Option<PassfileRef>,
}

impl Invocation {
    pub fn new<S: Into<String>>(argv: impl IntoIterator<Item = S>) -> Self {
        Invocation {
            argv: argv.into_iter().map(Into::into).collect(),
            env: vec![],
            cwd: None,
            passfile: None,
        }
    }

    pub fn passfile(mut self, p: impl Into<PassfileRef>) -> Self {
        self.passfile = Some(p.into());
        self
    }

    /// The same invocation with the run's and the daemon's passfiles at their real paths.
    pub fn resolve_passfiles(&self, run: &Path, daemon: &Path) -> Invocation {
        let mut inv = self.clone();
        inv.passfile = match &self.passfile {
            Some(PassfileRef::Run) => Some(PassfileRef::At(run.to_path_buf())),
            Some(PassfileRef::Daemon) => Some(PassfileRef::At(daemon.to_path_buf())),
            other => other.clone(),
        };
        inv
    }

    pub fn env(mut self, k: &str, v: impl Into<String>) -> Self {
        self.env.push((k.to_string(), v.into()));
        self
    }

    pub fn envs(mut self, kv: Vec<(String, String)>) -> Self {
        self.env.extend(kv);
        self
    }

    pub fn cwd(mut self, dir: &Path) -> Self {
        self.cwd = Some(dir.to_path_buf());
        self
    }

    pub fn program(&self) -> &str {
        self.argv.first().map(String::as_str).unwrap_or("")
    }

    fn command(&self) -> Result<Command, EngineError> {
        let mut c = Command::new(&self.argv[0]);
        c.args(&self.argv[1..]);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        match &self.passfile {
            Some(PassfileRef::At(p)) => {
                c.env("PGPASSFILE", p);
            }
            Some(which) => {
                return Err(EngineError::Config(format!(
                    "{}: its passfile ({which:?}) was never resolved to a path",
                    self.program()
                )))
            }
            None => {}
        }
        // A password in the operator's environment must not leak into a child that does not need
        // it: children get passwords only through the passfile named in their env.
        c.env_remove("PGPASSWORD");
        c.env_remove("BUCARDOPASS");
        if let Some(d) = &self.cwd {
            c.current_dir(d);
        }
        c.kill_on_drop(true);
        Ok(c)
    }
}

/// What a finished child said, redacted.
#[derive(Clone, Debug, Default)]
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn tail(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let from = lines.len().saturating_sub(6);
        lines[from..].join(" | ")
    }
}

/// Runs one program to completion and returns its redacted output, whatever its exit status.
pub async fn run(inv: &Invocation, timeout: Duration) -> Result<Output, EngineError> {
    let mut cmd = inv.command()?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().map_err(|e| spawn_error(inv, &e))?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => Err(EngineError::Timeout(format!(
            "{} did not finish within {} s",
            inv.program(),
            timeout.as_secs()
        ))),
        Ok(Err(e)) => Err(EngineError::Io(format!("{}: {e}", inv.program()))),
        Ok(Ok(out)) => Ok(Output {
            status: out.status.code().unwrap_or(-1),
            stdout: redact(&String::from_utf8_lossy(&out.stdout)),
            stderr: redact(&String::from_utf8_lossy(&out.stderr)),
        }),
    }
}

/// Runs and insists on exit status 0.
pub async fn run_ok(inv: &Invocation, timeout: Duration) -> Result<Output, EngineError> {
    let out = run(inv, timeout).await?;
    if out.status != 0 {
        return Err(EngineError::Command {
            program: inv.program().to_string(),
            status: format!("exit {}", out.status),
            stderr_tail: out.tail(),
        });
    }
    Ok(out)
}

/// `producer | consumer`, as the seed's `pg_dump ... | psql ...`. Both must exit 0.
pub async fn pipe(
    producer: &Invocation,
    consumer: &Invocation,
    timeout: Duration,
) -> Result<(Output, Output), EngineError> {
    let mut p = producer.command()?;
    p.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut pc = p.spawn().map_err(|e| spawn_error(producer, &e))?;
    let pout: Stdio = pc
        .stdout
        .take()
        .expect("piped stdout")
        .try_into()
        .map_err(|e| EngineError::Io(format!("cannot connect the pipe: {e}")))?;
    let mut c = consumer.command()?;
    c.stdin(pout).stdout(Stdio::piped()).stderr(Stdio::piped());
    let cc = c.spawn().map_err(|e| spawn_error(consumer, &e))?;
    // The command keeps its copy of the pipe's read end: were it kept, a consumer that exits
    // early would leave the producer blocked on a full pipe instead of ending it with EPIPE.
    drop(c);
    let mut perr = pc.stderr.take().expect("piped stderr");
    let work = async {
        let mut perr_buf = Vec::new();
        let (pstatus, _, cout) = tokio::join!(
            pc.wait(),
            perr.read_to_end(&mut perr_buf),
            cc.wait_with_output()
        );
        (pstatus, perr_buf, cout)
    };
    let (pstatus, perr_buf, cout) = tokio::time::timeout(timeout, work).await.map_err(|_| {
        EngineError::Timeout(format!(
            "{} | {} did not finish within {} s",
            producer.program(),
            consumer.program(),
            timeout.as_secs()
        ))
    })?;
    let pstatus = pstatus.map_err(|e| EngineError::Io(e.to_string()))?;
    let cout = cout.map_err(|e| EngineError::Io(e.to_string()))?;
    let po = Output {
        status: pstatus.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: redact(&String::from_utf8_lossy(&perr_buf)),
    };
    let co = Output {
        status: cout.status.code().unwrap_or(-1),
        stdout: redact(&String::from_utf8_lossy(&cout.stdout)),
        stderr: redact(&String::from_utf8_lossy(&cout.stderr)),
    };
    if co.status != 0 {
        return Err(EngineError::Command {
            program: consumer.program().to_string(),
            status: format!("exit {}", co.status),
            stderr_tail: co.tail(),
        });
    }
    if po.status != 0 {
        return Err(EngineError::Command {
            program: producer.program().to_string(),
            status: format!("exit {}", po.status),
            stderr_tail: po.tail(),
        });
    }
    Ok((po, co))
}

fn spawn_error(inv: &Invocation, e: &std::io::Error) -> EngineError {
    let hint = if e.kind() == std::io::ErrorKind::NotFound {
        match inv.program().rsplit('/').next().unwrap_or("") {
            "bucardo" => ": install it with `apt-get install bucardo`",
            "pg_dump" | "psql" | "pg_dumpall" => {
                ": install the PostgreSQL client with `apt-get install postgresql-client-15`"
            }
            _ => "",
        }
    } else {
        ""
    };
    EngineError::Command {
        program: inv.program().to_string(),
        status: "could not start".into(),
        stderr_tail: format!("{e}{hint}"),
    }
}

/// Finds a PostgreSQL client tool: `PG_BINDIR`, then the newest `/usr/lib/postgresql/*/bin`,
/// then PATH (Debian's wrappers pick a version by themselves).
pub fn pg_tool(name: &str) -> String {
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        let p = Path::new(&dir).join(name);
        if p.exists() {
            return p.display().to_string();
        }
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<(u32, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                let p = e.path().join("bin").join(name);
                p.exists().then_some((v, p))
            })
            .collect();
        versions.sort();
        if let Some((_, p)) = versions.pop() {
            return p.display().to_string();
        }
    }
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pg_dump | psql` where psql stops early (an error half-way through a restore): pg_dump
    /// must end on the broken pipe, not wait on it until the step's timeout.
    #[tokio::test]
    async fn a_consumer_that_exits_early_ends_the_producer() {
        let r = pipe(
            &Invocation::new(["yes", "a line"]),
            &Invocation::new(["head", "-c", "1"]),
            Duration::from_secs(20),
        )
        .await;
        match r {
            Err(EngineError::Command { program, .. }) => assert_eq!(program, "yes"),
            other => panic!("the producer ended on the broken pipe, not {other:?}"),
        }
    }

    #[tokio::test]
    async fn runs_argv_without_a_shell() {
        let out = run(
            &Invocation::new(["echo", "$HOME; ls"]),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(out.stdout.trim(), "$HOME; ls");
    }

    #[tokio::test]
    async fn pipe_reports_the_failing_side() {
        let ok = pipe(
            &Invocation::new(["printf", "a\\nb\\n"]),
            &Invocation::new(["wc", "-l"]),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(ok.1.stdout.trim(), "2");
        let err = pipe(
            &Invocation::new(["sh", "-c", "echo boom >&2; exit 3"]),
            &Invocation::new(["cat"]),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
    }

    #[tokio::test]
    async fn child_does_not_inherit_pgpassword_and_output_is_redacted() {
        let _s = crate::engine::secret::Secret::new("leaky-password-42");
        let out = run(
            &Invocation::new(["sh", "-c", "echo ${PGPASSWORD:-none} leaky-password-42"]),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert!(!out.stdout.contains("leaky-password-42"));
    }

    #[tokio::test]
    async fn missing_program_says_how_to_install() {
        let err = run(
            &Invocation::new(["/nonexistent/bucardo"]),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("apt-get install bucardo"), "{err}");
    }
}
