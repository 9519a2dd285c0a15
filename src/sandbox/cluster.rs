//! One throwaway PostgreSQL cluster: locating the server binaries, checking the tools the demo and
//! tests need, `initdb`, configuration, start/stop/restart and a `psql` runner.
//!
//! Everything here is synchronous (`std::process`). PostgreSQL refuses to run as root, so when the
//! effective uid is 0 the server-side tools (`initdb`, `pg_ctl`) run as the `postgres` OS user through
//! `runuser -u postgres --`; client tools (`psql`) always run as the current user.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

/// The one-line install hint shown whenever a required tool is missing.
pub const INSTALL_HINT: &str = "apt-get install postgresql-15 postgresql-plperl-15 bucardo";

/// OS user that owns data directories and runs the server when we are root.
const SERVER_OS_USER: &str = "postgres";

/// Unix socket paths are limited to 107 bytes; `/.s.PGSQL.NNNNN` takes 16 of them.
const MAX_SOCKET_DIR_LEN: usize = 90;

/// The directory holding `initdb`, `pg_ctl`, `psql`, ...: `$PG_BINDIR` if set, else the highest
/// `/usr/lib/postgresql/<version>/bin` that contains `initdb`.
pub fn pg_bindir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BINDIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        if !dir.join("initdb").is_file() {
            bail!(
                "PG_BINDIR={} has no initdb; point it at a PostgreSQL server bin directory or install one with `{INSTALL_HINT}`",
                dir.display()
            );
        }
        return Ok(dir);
    }
    let mut best: Option<(u32, PathBuf)> = None;
    if let Ok(entries) = fs::read_dir("/usr/lib/postgresql") {
        for entry in entries.flatten() {
            let Some(version) = entry
                .file_name()
                .to_str()
                .and_then(|v| v.split('.').next().and_then(|m| m.parse::<u32>().ok()))
            else {
                continue;
            };
            let bin = entry.path().join("bin");
            if bin.join("initdb").is_file() && best.as_ref().is_none_or(|(v, _)| version > *v) {
                best = Some((version, bin));
            }
        }
    }
    best.map(|(_, bin)| bin).ok_or_else(|| {
        anyhow!(
            "no PostgreSQL server binaries found (looked for /usr/lib/postgresql/*/bin/initdb; set PG_BINDIR to override); install them with `{INSTALL_HINT}`"
        )
    })
}

/// Checks everything the sandbox, the demo and the integration tests need, and says which
/// packages to install when something is missing. Call it first so tests never skip silently.
pub fn require_tools() -> Result<()> {
    let bindir = pg_bindir()?;
    let mut missing = Vec::new();
    for tool in [
        "initdb",
        "pg_ctl",
        "postgres",
        "pg_dump",
        "pg_dumpall",
        "psql",
    ] {
        if !bindir.join(tool).is_file() {
            missing.push(format!(
                "{} (package postgresql-15)",
                bindir.join(tool).display()
            ));
        }
    }
    if find_on_path("bucardo").is_none() {
        missing.push("`bucardo` on PATH (package bucardo)".to_string());
    }
    if plperl_so(&bindir).is_none() {
        missing.push("PL/Perl, plperl.so (package postgresql-plperl-15)".to_string());
    }
    if is_root() {
        if find_on_path("runuser").is_none() {
            missing.push("`runuser` on PATH (package util-linux)".to_string());
        }
        if !os_user_exists(SERVER_OS_USER) {
            missing.push(format!(
                "OS user `{SERVER_OS_USER}` to run the server as (created by package postgresql-15)"
            ));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        bail!(
            "missing prerequisites:\n  - {}\ninstall them with `{INSTALL_HINT}`",
            missing.join("\n  - ")
        )
    }
}

fn plperl_so(bindir: &Path) -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(out) = Command::new(bindir.join("pg_config"))
        .arg("--pkglibdir")
        .output()
    {
        if out.status.success() {
            let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
            candidates.push(PathBuf::from(dir).join("plperl.so"));
        }
    }
    if let Some(version_dir) = bindir.parent() {
        candidates.push(version_dir.join("lib/plperl.so"));
    }
    candidates.into_iter().find(|p| p.is_file())
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn os_user_exists(user: &str) -> bool {
    os_user_ids(user).is_some()
}

/// (uid, gid) of an OS user, via getpwnam.
fn os_user_ids(user: &str) -> Option<(u32, u32)> {
    let name = std::ffi::CString::new(user).ok()?;
    // SAFETY: getpwnam takes a valid NUL-terminated string; the returned record is read at once,
    // before any other call that could overwrite it.
    unsafe {
        let pw = libc::getpwnam(name.as_ptr());
        if pw.is_null() {
            None
        } else {
            Some(((*pw).pw_uid, (*pw).pw_gid))
        }
    }
}

/// True when running with effective uid 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, release it).
pub fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0 to find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// A local PostgreSQL cluster created by [`Cluster::create`], reachable over TCP on `host:port`
/// with password authentication (scram-sha-256) for `superuser`.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub superuser: String,
    pub data_dir: PathBuf,
    pub socket_dir: PathBuf,
    pub log_file: PathBuf,
    /// Server binaries directory the cluster was created with; use its `pg_dump`/`psql` too.
    pub bindir: PathBuf,
    password: String,
    as_postgres: bool,
}

impl Cluster {
    /// Creates `<parent>/<name>/{data,run,postgres.log}`, runs `initdb` and starts the server on a
    /// free port (retrying with another port up to 3 times).
    pub fn create(name: &str, parent: &Path, password: &str) -> Result<Cluster> {
        let bindir = pg_bindir()?;
        let as_postgres = is_root();
        let base = parent.join(name);
        fs::create_dir(&base).with_context(|| format!("creating {}", base.display()))?;
        fs::set_permissions(&base, fs::Permissions::from_mode(0o700))?;
        if as_postgres {
            let (uid, gid) = os_user_ids(SERVER_OS_USER).ok_or_else(|| {
                anyhow!("running as root but OS user `{SERVER_OS_USER}` does not exist; install it with `{INSTALL_HINT}`")
            })?;
            chown(&base, uid, gid)?;
        }
        let socket_dir = base.join("run");
        if socket_dir.as_os_str().len() > MAX_SOCKET_DIR_LEN {
            bail!(
                "sandbox path {} is too long for a Unix socket directory; choose a shorter sandbox root",
                socket_dir.display()
            );
        }
        let mut cluster = Cluster {
            name: name.to_string(),
            host: "127.0.0.1".to_string(),
            port: 0,
            superuser: "postgres".to_string(),
            data_dir: base.join("data"),
            socket_dir,
            log_file: base.join("postgres.log"),
            bindir,
            password: password.to_string(),
            as_postgres,
        };
        cluster.initdb(&base)?;
        let mut last_err = None;
        for _ in 0..3 {
            cluster.port = free_port()?;
            cluster.write_port_conf()?;
            match cluster.start() {
                Ok(()) => return Ok(cluster),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.expect("three start attempts were made"))
    }

    fn initdb(&self, base: &Path) -> Result<()> {
        let pwfile = base.join("pwfile");
        fs::write(&pwfile, format!("{}\n", self.password))?;
        fs::set_permissions(&pwfile, fs::Permissions::from_mode(0o600))?;
        if self.as_postgres {
            let (uid, gid) = os_user_ids(SERVER_OS_USER).expect("checked in create");
            chown(&pwfile, uid, gid)?;
        }
        let result = self.run_server_tool(
            "initdb",
            [
                OsStr::new("-D"),
                self.data_dir.as_os_str(),
                OsStr::new("-U"),
                OsStr::new(&self.superuser),
                OsStr::new("-A"),
                OsStr::new("scram-sha-256"),
                OsStr::new("--pwfile"),
                pwfile.as_os_str(),
                OsStr::new("-E"),
                OsStr::new("UTF8"),
                OsStr::new("--locale=C"),
                OsStr::new("--no-sync"),
            ],
        );
        let _ = fs::remove_file(&pwfile);
        result.with_context(|| format!("initdb for sandbox cluster {}", self.name))?;

        let mut conf = String::from("\n# bucardo-bootstrap sandbox\n");
        for (key, value) in [
            ("listen_addresses", "'127.0.0.1'"),
            ("fsync", "off"),
            ("full_page_writes", "off"),
            ("synchronous_commit", "off"),
            ("max_connections", "100"),
            ("shared_buffers", "128MB"),
            ("logging_collector", "off"),
            ("log_line_prefix", "'%m [%p] %q%u@%d '"),
        ] {
            writeln!(conf, "{key} = {value}")?;
        }
        writeln!(
            conf,
            "unix_socket_directories = '{}'",
            self.socket_dir.display()
        )?;
        conf.push_str("include_if_exists = 'sandbox_port.conf'\n");
        let path = self.data_dir.join("postgresql.conf");
        let mut existing =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        existing.push_str(&conf);
        fs::write(&path, existing)?;
        self.as_server_user_dir(&self.socket_dir)?;
        Ok(())
    }

    fn write_port_conf(&self) -> Result<()> {
        let path = self.data_dir.join("sandbox_port.conf");
        fs::write(&path, format!("port = {}\n", self.port))?;
        if self.as_postgres {
            let (uid, gid) = os_user_ids(SERVER_OS_USER).expect("checked in create");
            chown(&path, uid, gid)?;
        }
        Ok(())
    }

    fn as_server_user_dir(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        if self.as_postgres {
            let (uid, gid) = os_user_ids(SERVER_OS_USER).expect("checked in create");
            chown(dir, uid, gid)?;
        }
        Ok(())
    }

    /// The superuser's password (also in [`Cluster::pg_config`]; never in [`Cluster::uri`]).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) -> Result<()> {
        self.pg_ctl(&["start", "-w", "-t", "60", "-l"], Some(&self.log_file))
            .map(drop)
            .with_context(|| {
                format!(
                    "starting sandbox cluster {} on port {}; log tail:\n{}",
                    self.name,
                    self.port,
                    self.log_tail(20)
                )
            })
    }

    /// Stops the server: `-m fast`, falling back to `-m immediate`, and at last SIGKILL.
    pub fn stop(&self) -> Result<()> {
        if !self.is_running() {
            return Ok(());
        }
        if self
            .pg_ctl(&["stop", "-w", "-t", "30", "-m", "fast"], None)
            .is_ok()
        {
            return Ok(());
        }
        self.stop_immediate()
    }

    /// Stops the server with `-m immediate` (no shutdown checkpoint), killing it if that fails.
    pub fn stop_immediate(&self) -> Result<()> {
        if !self.is_running() {
            return Ok(());
        }
        match self.pg_ctl(&["stop", "-w", "-t", "30", "-m", "immediate"], None) {
            Ok(_) => Ok(()),
            Err(e) => {
                if let Some(pid) = self.postmaster_pid() {
                    // SAFETY: plain kill(2) on a pid read from our own postmaster.pid.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    std::thread::sleep(Duration::from_millis(200));
                }
                if self.is_running() {
                    Err(e.context(format!("stopping sandbox cluster {}", self.name)))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// `pg_ctl restart -m fast`: every open connection is dropped.
    pub fn restart(&self) -> Result<()> {
        self.pg_ctl(
            &["restart", "-w", "-t", "60", "-m", "fast", "-l"],
            Some(&self.log_file),
        )
        .map(drop)
        .with_context(|| {
            format!(
                "restarting sandbox cluster {}; log tail:\n{}",
                self.name,
                self.log_tail(20)
            )
        })
    }

    /// Whether `pg_ctl status` finds a live postmaster for the data directory.
    pub fn is_running(&self) -> bool {
        self.pg_ctl(&["status"], None).is_ok()
    }

    fn postmaster_pid(&self) -> Option<i32> {
        fs::read_to_string(self.data_dir.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// `postgres://postgres@127.0.0.1:PORT/db`, without the password.
    pub fn uri(&self, db: &str) -> String {
        format!(
            "postgres://{}@{}:{}/{}",
            self.superuser, self.host, self.port, db
        )
    }

    /// Connection settings for tokio-postgres, password included.
    pub fn pg_config(&self, db: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.superuser)
            .password(&self.password)
            .dbname(db)
            .connect_timeout(Duration::from_secs(10));
        config
    }

    /// Runs one SQL string with `psql -c` and returns its unaligned, tuples-only stdout.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        let mut cmd = self.psql_command(db);
        cmd.arg("-c").arg(sql).stdin(Stdio::null());
        let out = cmd.output().context("running psql")?;
        psql_result(out, &self.name, db, sql)
    }

    /// Runs a script through psql's stdin in one transaction (`-1`), with `-v name=value`
    /// variables available as `:name` in it.
    pub fn psql_script(&self, db: &str, script: &str, vars: &[(&str, &str)]) -> Result<String> {
        use std::io::Write as _;
        let mut cmd = self.psql_command(db);
        cmd.arg("-1").arg("-q");
        for (name, value) in vars {
            cmd.arg("-v").arg(format!("{name}={value}"));
        }
        cmd.arg("-f")
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("running psql")?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let script = script.to_string();
        let feeder = std::thread::spawn(move || stdin.write_all(script.as_bytes()));
        let out = child.wait_with_output()?;
        let _ = feeder.join();
        psql_result(out, &self.name, db, "<script>")
    }

    /// A `psql` command with connection options and the password in the environment; add `-c`/`-f`.
    pub fn psql_command(&self, db: &str) -> Command {
        let mut cmd = Command::new(self.bindir.join("psql"));
        cmd.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.host)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-U")
            .arg(&self.superuser)
            .arg("-d")
            .arg(db)
            .env("PGPASSWORD", &self.password)
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGSERVICE")
            .env_remove("PGPASSFILE");
        cmd
    }

    /// The last `lines` lines of the server log (for error messages).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log_file).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn pg_ctl(&self, args: &[&str], log: Option<&Path>) -> Result<Output> {
        let mut argv: Vec<&OsStr> = vec![OsStr::new("-D"), self.data_dir.as_os_str()];
        argv.extend(args.iter().map(OsStr::new));
        if let Some(log) = log {
            argv.push(log.as_os_str());
        }
        self.run_server_tool("pg_ctl", argv)
    }

    /// Runs a server-side tool from the bindir, as `postgres` when we are root.
    fn run_server_tool<I, S>(&self, tool: &str, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let program = self.bindir.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", SERVER_OS_USER, "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        cmd.args(args)
            .current_dir(self.data_dir.parent().unwrap_or(Path::new("/")))
            .stdin(Stdio::null())
            // start/restart always pass -l: pg_ctl then points the postmaster's stdout/stderr at
            // the log file, so it does not hold our pipes open and output() returns.
            .env_remove("PGPORT")
            .env_remove("PGDATA");
        let out = cmd
            .output()
            .with_context(|| format!("running {}", program.display()))?;
        if out.status.success() {
            Ok(out)
        } else {
            bail!(
                "{} failed ({}): {}{}",
                tool,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            )
        }
    }
}

fn psql_result(out: Output, cluster: &str, db: &str, what: &str) -> Result<String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let mut shown: String = what.chars().take(200).collect();
        if shown.len() < what.len() {
            shown.push_str("...");
        }
        bail!(
            "psql on {cluster}/{db} failed ({}) running {shown}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
    }
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {} to {uid}:{gid}", path.display()))
}
