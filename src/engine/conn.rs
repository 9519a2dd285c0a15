//! Connection settings for HERE, THERE and Bucardo's control database: parsing libpq-style URIs,
//! falling back to the environment, resolving passwords (URI, environment, `.pgpass`), opening
//! tokio-postgres connections with short timeouts, and writing the 0600 passfile that child
//! processes read instead of seeing a password in their argv.

use crate::engine::error::EngineError;
use crate::engine::secret::Secret;
use futures_util::{stream, StreamExt};
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls};

/// Which of the three servers a connection is for; used in messages and events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    Here,
    There,
    Control,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Here => "HERE",
            Side::There => "THERE",
            Side::Control => "Bucardo control db",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    Allow,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn parse(s: &str) -> Result<SslMode, String> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "unknown sslmode {other:?}: use disable, allow, prefer, require, verify-ca or verify-full"
                ))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Everything needed to reach one database. The password never prints (see [`Secret`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnSpec {
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    #[serde(skip)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub sslmode: SslMode,
    #[serde(default)]
    pub sslrootcert: Option<PathBuf>,
    #[serde(default = "default_connect_timeout_s")]
    pub connect_timeout_s: u64,
}

fn default_connect_timeout_s() -> u64 {
    10
}

/// Where defaults come from: the process environment in production, a map in tests.
pub trait Env {
    fn var(&self, key: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
}

impl<const N: usize> Env for [(&str, &str); N] {
    fn var(&self, key: &str) -> Option<String> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v.to_string())
    }
}

/// Defaults for fields a URI leaves out.
#[derive(Clone, Debug, Default)]
pub struct ConnDefaults {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub dbname: Option<String>,
    pub user: Option<String>,
    pub sslmode: Option<SslMode>,
    pub sslrootcert: Option<PathBuf>,
}

impl ConnSpec {
    /// Parses `postgres://[user[:password]@][host][:port][/dbname][?param=value&...]` (also
    /// `postgresql://`). Supported parameters: `sslmode`, `sslrootcert`, `connect_timeout`,
    /// `host`, `port`, `user`, `dbname`, `password`. Missing parts come from `defaults`.
    pub fn parse_uri(uri: &str, defaults: &ConnDefaults) -> Result<ConnSpec, String> {
        let rest = uri
            .strip_prefix("postgresql://")
            .or_else(|| uri.strip_prefix("postgres://"))
            .ok_or_else(|| {
                format!(
                    "{:?} is not a PostgreSQL URI: write postgres://user@host:port/dbname",
                    crate::engine::secret::redact(uri)
                )
            })?;
        let (main, query) = match rest.split_once('?') {
            Some((m, q)) => (m, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match main.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (main, None),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let dec = |s: &str, what: &str| -> Result<String, String> {
            percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| format!("the {what} in the URI is not valid UTF-8 after %-decoding"))
        };
        let (mut user, mut password) = (None, None);
        if let Some(ui) = userinfo {
            match ui.split_once(':') {
                Some((u, p)) => {
                    user = Some(dec(u, "user")?);
                    password = Some(dec(p, "password")?);
                }
                None => user = Some(dec(ui, "user")?),
            }
        }
        let (mut host, mut port) = (None, None);
        if !hostport.is_empty() {
            let (h, p) = if let Some(stripped) = hostport.strip_prefix('[') {
                let (h, after) = stripped
                    .split_once(']')
                    .ok_or("unterminated [ in the URI's host")?;
                (h.to_string(), after.strip_prefix(':'))
            } else if hostport.contains(',') {
                return Err("several hosts in one URI are not supported; name one host".into());
            } else {
                match hostport.rsplit_once(':') {
                    Some((h, p)) => (h.to_string(), Some(p)),
                    None => (hostport.to_string(), None),
                }
            };
            if !h.is_empty() {
                host = Some(dec(&h, "host")?);
            }
            if let Some(p) = p {
                port = Some(parse_port(p)?);
            }
        }
        let mut dbname = match path {
            Some(p) if !p.is_empty() => Some(dec(p, "database name")?),
            _ => None,
        };
        let mut sslmode = None;
        let mut sslrootcert = None;
        let mut connect_timeout_s = None;
        if let Some(q) = query {
            for pair in q.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("URI parameter {pair:?} has no '='"))?;
                let v = dec(v, k)?;
                match k {
                    "sslmode" => sslmode = Some(SslMode::parse(&v)?),
                    "sslrootcert" => sslrootcert = Some(PathBuf::from(v)),
                    "connect_timeout" => {
                        connect_timeout_s = Some(v.parse::<u64>().map_err(|_| {
                            format!("connect_timeout must be whole seconds, not {v:?}")
                        })?)
                    }
                    "host" => host = Some(v),
                    "port" => port = Some(parse_port(&v)?),
                    "user" => user = Some(v),
                    "dbname" => dbname = Some(v),
                    "password" => password = Some(v),
                    "application_name" | "options" | "target_session_attrs" => {}
                    other => return Err(format!("unsupported URI parameter {other:?}")),
                }
            }
        }
        let host = host
            .or_else(|| defaults.host.clone())
            .unwrap_or_else(|| "localhost".into());
        let user = user
            .or_else(|| defaults.user.clone())
            .or_else(os_user)
            .ok_or("no user given in the URI or PGUSER")?;
        let dbname = dbname
            .or_else(|| defaults.dbname.clone())
            .unwrap_or_else(|| user.clone());
        if host.contains(char::is_whitespace) || host.contains('/') && !host.starts_with('/') {
            return Err(format!("{host:?} is not a host name"));
        }
        Ok(ConnSpec {
            host,
            port: port.or(defaults.port).unwrap_or(5432),
            dbname,
            user,
            password: password.map(Secret::new),
            sslmode: sslmode.or(defaults.sslmode).unwrap_or_default(),
            sslrootcert: sslrootcert.or_else(|| defaults.sslrootcert.clone()),
            connect_timeout_s: connect_timeout_s.unwrap_or(default_connect_timeout_s()),
        })
    }

    /// The URI without its password, for screens, logs and plans.
    pub fn display_uri(&self) -> String {
        use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
        let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            enc(&self.host).replace("%2E", ".").replace("%2D", "-")
        };
        let mut s = format!(
            "postgres://{}@{}:{}/{}",
            enc(&self.user).replace("%5F", "_"),
            host,
            self.port,
            enc(&self.dbname).replace("%5F", "_")
        );
        if self.sslmode != SslMode::Prefer {
            s.push_str(&format!("?sslmode={}", self.sslmode.as_str()));
        }
        s
    }

    /// The same server, another database.
    pub fn with_db(&self, dbname: &str) -> ConnSpec {
        ConnSpec { dbname: dbname.to_string(), ..self.clone() }
    }

    /// The same server and database, another user (password to be resolved anew).
    pub fn with_user(&self, user: &str, password: Option<Secret>) -> ConnSpec {
        ConnSpec { user: user.to_string(), password, ..self.clone() }
    }

    pub fn is_local(&self) -> bool {
        matches!(self.host.as_str(), "localhost" | "127.0.0.1" | "::1") || self.host.starts_with('/')
    }

    /// Fills in the password when none was given: `env_password` (PGPASSWORD or BUCARDOPASS),
    /// then the passfile (PGPASSFILE or ~/.pgpass), as libpq would.
    pub fn resolve_password(&mut self, env_password: Option<&str>, passfile: Option<&Path>) {
        if self.password.is_some() {
            return;
        }
        if let Some(p) = env_password {
            self.password = Some(Secret::new(p));
            return;
        }
        if let Some(file) = passfile {
            if let Some(p) = pgpass_lookup(file, &self.host, self.port, &self.dbname, &self.user) {
                self.password = Some(Secret::new(p));
            }
        }
    }

    pub fn pg_config(&self, application_name: &str) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host(&self.host)
            .port(self.port)
            .dbname(&self.dbname)
            .user(&self.user)
            .application_name(application_name)
            .connect_timeout(Duration::from_secs(self.connect_timeout_s.max(1)))
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30));
        if let Some(p) = &self.password {
            c.password(p.expose());
        }
        c
    }

    /// Opens a connection; the driver task runs until the client is dropped.
    pub async fn connect(&self, side: Side) -> Result<Client, EngineError> {
        let (client, _notes) = self.connect_inner(side, false).await?;
        Ok(client)
    }

    /// Opens a connection whose NOTIFY messages arrive on the returned channel.
    pub async fn connect_listening(
        &self,
        side: Side,
    ) -> Result<(Client, mpsc::UnboundedReceiver<tokio_postgres::Notification>), EngineError> {
        let (client, rx) = self.connect_inner(side, true).await?;
        Ok((client, rx.expect("listening connection has a receiver")))
    }

    async fn connect_inner(
        &self,
        side: Side,
        listen: bool,
    ) -> Result<(Client, Option<mpsc::UnboundedReceiver<tokio_postgres::Notification>>), EngineError>
    {
        let cfg = self.pg_config("bucardo-bootstrap");
        let timeout = Duration::from_secs(self.connect_timeout_s.max(1) + 1);
        if matches!(self.sslmode, SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull) {
            return Err(EngineError::Config(format!(
                "{side}: sslmode={} is not supported by this build yet; use sslmode=prefer or disable",
                self.sslmode.as_str()
            )));
        }
        let attempt = tokio::time::timeout(timeout, async {
            let (client, mut connection) = cfg.connect(NoTls).await?;
            let (tx, rx) = mpsc::unbounded_channel();
            let messages = stream::poll_fn(move |cx| connection.poll_message(cx));
            tokio::spawn(async move {
                let mut messages = std::pin::pin!(messages);
                while let Some(m) = messages.next().await {
                    match m {
                        Ok(AsyncMessage::Notification(n)) => {
                            let _ = tx.send(n);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::debug!("connection closed: {e}");
                            break;
                        }
                    }
                }
            });
            Ok::<_, tokio_postgres::Error>((client, rx))
        })
        .await;
        match attempt {
            Err(_) => Err(EngineError::Connect {
                side,
                target: self.display_uri(),
                message: format!("no answer within {} s", timeout.as_secs()),
                hint: "check the host name, port and firewall".into(),
            }),
            Ok(Err(e)) => Err(EngineError::connect(side, self, &e)),
            Ok(Ok((client, rx))) => Ok((client, listen.then_some(rx))),
        }
    }

    /// The libpq environment for a child tool (pg_dump, psql, bucardo): TLS settings and the
    /// passfile. Host, port, user and database go on the command line, where the review shows them.
    pub fn child_env(&self, passfile: &Path) -> Vec<(String, String)> {
        let mut env = vec![
            ("PGPASSFILE".to_string(), passfile.display().to_string()),
            ("PGSSLMODE".to_string(), self.sslmode.as_str().to_string()),
            ("PGCONNECT_TIMEOUT".to_string(), self.connect_timeout_s.to_string()),
        ];
        if let Some(ca) = &self.sslrootcert {
            env.push(("PGSSLROOTCERT".to_string(), ca.display().to_string()));
        }
        env
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{p:?} is not a port number (1-65535)")),
        Ok(n) => Ok(n),
    }
}

pub fn os_user() -> Option<String> {
    std::env::var("USER").ok().filter(|u| !u.is_empty()).or_else(|| {
        // SAFETY: getpwuid returns a pointer into static storage or null; we copy out at once.
        unsafe {
            let pw = libc::getpwuid(libc::geteuid());
            if pw.is_null() {
                return None;
            }
            std::ffi::CStr::from_ptr((*pw).pw_name).to_str().ok().map(str::to_string)
        }
    })
}

/// libpq's passfile location: PGPASSFILE, else `~/.pgpass`.
pub fn default_passfile(env: &dyn Env) -> Option<PathBuf> {
    env.var("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| env.var("HOME").map(|h| Path::new(&h).join(".pgpass")))
}

/// Looks a password up in a `.pgpass` file the way libpq does: first matching line wins, `*`
/// matches anything, `\` escapes `:` and `\`. A file readable by group or others is ignored, as
/// libpq ignores it.
pub fn pgpass_lookup(file: &Path, host: &str, port: u16, db: &str, user: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(file).ok()?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            "ignoring password file {}: it is readable by others (chmod 0600 it)",
            file.display()
        );
        return None;
    }
    let text = std::fs::read_to_string(file).ok()?;
    let port = port.to_string();
    let host_variants: &[&str] = if host == "127.0.0.1" || host == "::1" || host.starts_with('/') {
        &[host, "localhost"]
    } else {
        &[host]
    };
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = split_pgpass_line(line);
        if fields.len() < 5 {
            continue;
        }
        let m = |pat: &str, val: &str| pat == "*" || pat == val;
        if host_variants.iter().any(|h| m(&fields[0], h))
            && m(&fields[1], &port)
            && m(&fields[2], db)
            && m(&fields[3], user)
        {
            return Some(fields[4].clone());
        }
    }
    None
}

fn split_pgpass_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    fields.last_mut().expect("non-empty").push(n);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            _ => fields.last_mut().expect("non-empty").push(c),
        }
    }
    fields
}

fn escape_pgpass(s: &str) -> String {
    s.replace('\\', "\\\\").replace(':', "\\:")
}

/// A passfile in libpq's format, mode 0600, that child processes read through `PGPASSFILE`.
/// Temporary ones are removed when dropped; persistent ones (the Bucardo daemon needs its own)
/// stay.
pub struct Passfile {
    path: PathBuf,
    remove_on_drop: bool,
}

impl Passfile {
    /// Writes one exact-match line per connection that has a password.
    pub fn write(path: &Path, specs: &[&ConnSpec], remove_on_drop: bool) -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        let mut seen = Vec::new();
        for s in specs {
            if let Some(p) = &s.password {
                let line = format!(
                    "{}:{}:*:{}:{}\n",
                    escape_pgpass(&s.host),
                    s.port,
                    escape_pgpass(&s.user),
                    escape_pgpass(p.expose())
                );
                if !seen.contains(&line) {
                    f.write_all(line.as_bytes())?;
                    seen.push(line);
                }
            }
        }
        f.sync_all()?;
        Ok(Passfile { path: path.to_path_buf(), remove_on_drop })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Passfile {
    fn drop(&mut self) {
        if self.remove_on_drop {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> ConnDefaults {
        ConnDefaults {
            host: Some("defhost".into()),
            port: Some(6543),
            dbname: Some("widgets".into()),
            user: Some("postgres".into()),
            ..Default::default()
        }
    }

    #[test]
    fn parses_full_and_partial_uris() {
        let c = ConnSpec::parse_uri("postgres://bob:p%40ss@db.example:5433/app?sslmode=require", &d())
            .unwrap();
        assert_eq!((c.host.as_str(), c.port, c.dbname.as_str()), ("db.example", 5433, "app"));
        assert_eq!(c.user, "bob");
        assert_eq!(c.password.as_ref().unwrap().expose(), "p@ss");
        assert_eq!(c.sslmode, SslMode::Require);
        let c = ConnSpec::parse_uri("postgresql://", &d()).unwrap();
        assert_eq!((c.host.as_str(), c.port, c.user.as_str()), ("defhost", 6543, "postgres"));
        assert_eq!(c.dbname, "widgets");
        let c = ConnSpec::parse_uri("postgres://[::1]:7000/x", &d()).unwrap();
        assert_eq!((c.host.as_str(), c.port), ("::1", 7000));
    }

    #[test]
    fn rejects_malformed_uris_with_a_reason() {
        for bad in [
            "mysql://x",
            "postgres://h:notaport/db",
            "postgres://h:0/db",
            "postgres://h/db?sslmode=sometimes",
            "postgres://h/db?bogus=1",
            "postgres://a,b/db",
            "postgres://h/db?connect_timeout=soon",
        ] {
            let e = ConnSpec::parse_uri(bad, &d()).unwrap_err();
            assert!(!e.is_empty(), "{bad}");
        }
        let e = ConnSpec::parse_uri("mysql://u:topsecret9@h/db", &d()).unwrap_err();
        assert!(!e.contains("topsecret9"), "{e}");
    }

    #[test]
    fn display_uri_has_no_password() {
        let c = ConnSpec::parse_uri("postgres://bob:hidden99@h:1/d", &d()).unwrap();
        assert_eq!(c.display_uri(), "postgres://bob@h:1/d");
        assert!(!format!("{c:?}").contains("hidden99"));
    }

    #[test]
    fn pgpass_lookup_matches_like_libpq() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pgpass");
        std::fs::write(
            &f,
            "# comment\nother:5432:*:bob:no\nlocalhost:5432:app:bob:a\\:b\\\\c\n*:*:*:*:fallback\n",
        )
        .unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(pgpass_lookup(&f, "127.0.0.1", 5432, "app", "bob").as_deref(), Some("a:b\\c"));
        assert_eq!(pgpass_lookup(&f, "x", 1, "y", "z").as_deref(), Some("fallback"));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(pgpass_lookup(&f, "x", 1, "y", "z"), None);
    }

    #[test]
    fn passfile_is_private_and_escaped() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut c = ConnSpec::parse_uri("postgres://u@h:5/d", &d()).unwrap();
        c.password = Some(Secret::new("pa:ss\\word"));
        let path = dir.path().join("pf");
        {
            let pf = Passfile::write(&path, &[&c, &c], true).unwrap();
            let mode = std::fs::metadata(pf.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            assert_eq!(pgpass_lookup(&path, "h", 5, "any", "u").as_deref(), Some("pa:ss\\word"));
            assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
        }
        assert!(!path.exists());
    }
}
