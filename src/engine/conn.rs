//! Connection settings for HERE, THERE and Bucardo's control database: parsing libpq-style URIs,
//! falling back to the environment, resolving passwords (URI, environment, `.pgpass`), opening
//! tokio-postgres connections with short timeouts and TLS through rustls as libpq's `sslmode`
//! and `sslrootcert` define it, and writing the 0600 passfile that child processes read instead
//! of seeing a password in their argv.

use crate::engine::error::EngineError;
use crate::engine::secret::Secret;
use futures_util::{stream, StreamExt};
use percent_encoding::percent_decode_str;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{AsyncMessage, Client, NoTls, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

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
        self.iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
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
                .and_then(|v| {
                    // Values end up in argv, in Bucardo's newline-separated conninfo and in
                    // line-based passfiles: control characters cannot travel safely.
                    let bad = if what == "password" {
                        v.chars().find(|c| matches!(c, '\0' | '\n' | '\r'))
                    } else {
                        v.chars().find(|c| c.is_control())
                    };
                    match bad {
                        Some('\0') => Err(format!("the {what} in the URI holds a NUL byte (%00)")),
                        Some(c) => Err(format!(
                            "the {what} in the URI holds the control character {c:?}"
                        )),
                        None => Ok(v),
                    }
                })
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
                let what = if k == "password" {
                    "password".to_string()
                } else {
                    format!("{k:?} parameter")
                };
                let v = dec(v, &what)?;
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
        // As in libpq, an empty value means "not given".
        let given = |v: Option<String>| v.filter(|v| !v.is_empty());
        let (host, user, dbname, password) =
            (given(host), given(user), given(dbname), given(password));
        let sslrootcert = sslrootcert.filter(|p: &PathBuf| !p.as_os_str().is_empty());
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
        if !valid_host(&host) {
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
        let host = if self.host.contains(':') && !self.host.starts_with('/') {
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
        let mut params = Vec::new();
        if self.sslmode != SslMode::Prefer {
            params.push(format!("sslmode={}", self.sslmode.as_str()));
        }
        if let Some(ca) = &self.sslrootcert {
            params.push(format!(
                "sslrootcert={}",
                enc(&ca.display().to_string())
                    .replace("%2F", "/")
                    .replace("%2E", ".")
            ));
        }
        if !params.is_empty() {
            s.push('?');
            s.push_str(&params.join("&"));
        }
        s
    }

    /// The same server, another database.
    pub fn with_db(&self, dbname: &str) -> ConnSpec {
        ConnSpec {
            dbname: dbname.to_string(),
            ..self.clone()
        }
    }

    /// The same server and database, another user (password to be resolved anew).
    pub fn with_user(&self, user: &str, password: Option<Secret>) -> ConnSpec {
        ConnSpec {
            user: user.to_string(),
            password,
            ..self.clone()
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self.host.as_str(), "localhost" | "127.0.0.1" | "::1")
            || self.host.starts_with('/')
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
    ) -> Result<
        (
            Client,
            mpsc::UnboundedReceiver<tokio_postgres::Notification>,
        ),
        EngineError,
    > {
        let (client, rx) = self.connect_inner(side, true).await?;
        Ok((client, rx.expect("listening connection has a receiver")))
    }

    async fn connect_inner(
        &self,
        side: Side,
        listen: bool,
    ) -> Result<
        (
            Client,
            Option<mpsc::UnboundedReceiver<tokio_postgres::Notification>>,
        ),
        EngineError,
    > {
        let attempts = self.tls_attempts(side)?;
        let mut last = None;
        for (i, attempt) in attempts.iter().enumerate() {
            match self.attempt(attempt).await {
                Ok((client, rx)) => return Ok((client, listen.then_some(rx))),
                Err(Failure::Timeout(s)) => {
                    return Err(EngineError::Connect {
                        side,
                        target: self.display_uri(),
                        message: format!("no answer within {s} s"),
                        hint: "check the host name, port and firewall".into(),
                    })
                }
                Err(Failure::Pg(e)) => {
                    let retry = match (self.sslmode, i) {
                        // libpq's prefer: a failed TLS handshake is retried without TLS.
                        (SslMode::Prefer, 0) => {
                            e.as_db_error().is_none() && e.to_string().contains("TLS")
                        }
                        // libpq's allow: plain first, TLS when the server insists on it.
                        (SslMode::Allow, 0) => needs_encryption(&e),
                        _ => false,
                    };
                    if !retry {
                        return Err(self.connect_error(side, &e));
                    }
                    tracing::debug!(
                        "{side}: {} attempt failed ({e}); trying again",
                        attempt.label()
                    );
                    last = Some(e);
                }
            }
        }
        Err(match last {
            Some(e) => self.connect_error(side, &e),
            None => EngineError::Config(format!(
                "{side}: no way to connect with sslmode={}",
                self.sslmode.as_str()
            )),
        })
    }

    async fn attempt(&self, attempt: &Attempt) -> Result<(Client, NoteRx), Failure> {
        let mut cfg = self.pg_config("bucardo-bootstrap");
        let timeout = Duration::from_secs(self.connect_timeout_s.max(1) + 1);
        let result = match attempt {
            Attempt::Plain => {
                cfg.ssl_mode(PgSslMode::Disable);
                tokio::time::timeout(timeout, open(&cfg, NoTls)).await
            }
            Attempt::Tls { required, tls } => {
                cfg.ssl_mode(if *required {
                    PgSslMode::Require
                } else {
                    PgSslMode::Prefer
                });
                tokio::time::timeout(timeout, open(&cfg, tls.clone())).await
            }
        };
        match result {
            Err(_) => Err(Failure::Timeout(timeout.as_secs())),
            Ok(r) => r.map_err(Failure::Pg),
        }
    }

    /// The connection attempts `sslmode` calls for, in order, as libpq makes them. A Unix
    /// socket never uses TLS (libpq ignores sslmode there too).
    fn tls_attempts(&self, side: Side) -> Result<Vec<Attempt>, EngineError> {
        if self.host.starts_with('/') || self.sslmode == SslMode::Disable {
            return Ok(vec![Attempt::Plain]);
        }
        let tls = |required: bool, verify: Verify| -> Result<Attempt, EngineError> {
            Ok(Attempt::Tls {
                required,
                tls: MakeRustlsConnect::new(client_config(verify)),
            })
        };
        // libpq verifies the chain whenever a root certificate is at hand, even for prefer and
        // require; verify-ca and verify-full cannot do without one.
        let roots = self.root_store(side)?;
        let opportunistic = || roots.clone().map(Verify::Chain).unwrap_or(Verify::Nothing);
        let mandatory = || {
            roots.clone().ok_or_else(|| {
                EngineError::Config(format!(
                    "{side}: sslmode={} needs the certificate of the CA that signed the server's certificate: add \
                     sslrootcert=/path/to/ca.crt to the URI (or set PGSSLROOTCERT, or put it in ~/.postgresql/root.crt), \
                     or use sslmode=require to encrypt without checking the server's identity",
                    self.sslmode.as_str()
                ))
            })
        };
        Ok(match self.sslmode {
            SslMode::Disable => vec![Attempt::Plain],
            SslMode::Allow => vec![Attempt::Plain, tls(true, opportunistic())?],
            SslMode::Prefer => vec![tls(false, opportunistic())?, Attempt::Plain],
            SslMode::Require => vec![tls(true, opportunistic())?],
            SslMode::VerifyCa => vec![tls(true, Verify::Chain(mandatory()?))?],
            SslMode::VerifyFull => vec![tls(true, Verify::Full(mandatory()?))?],
        })
    }

    /// The CA file libpq would use: `sslrootcert`, else `PGSSLROOTCERT`, else
    /// `~/.postgresql/root.crt` when it exists.
    pub fn root_cert(&self) -> Option<PathBuf> {
        if let Some(p) = &self.sslrootcert {
            return Some(p.clone());
        }
        if let Some(p) = ProcessEnv.var("PGSSLROOTCERT") {
            return Some(PathBuf::from(p));
        }
        let default = PathBuf::from(ProcessEnv.var("HOME")?).join(".postgresql/root.crt");
        default.is_file().then_some(default)
    }

    fn root_store(&self, side: Side) -> Result<Option<Arc<RootCertStore>>, EngineError> {
        let Some(path) = self.root_cert() else {
            return Ok(None);
        };
        let bad = |why: String| {
            EngineError::Config(format!(
                "{side}: sslrootcert {}: {why}; give the PEM file of the CA that signed the server's certificate",
                path.display()
            ))
        };
        let pem = std::fs::read(&path).map_err(|e| bad(e.to_string()))?;
        let mut store = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| bad(format!("not a PEM certificate file ({e})")))?;
            store
                .add(cert)
                .map_err(|e| bad(format!("unusable certificate ({e})")))?;
        }
        if store.is_empty() {
            return Err(bad("holds no certificate".into()));
        }
        Ok(Some(Arc::new(store)))
    }

    /// A failed connection as an error that says what to do, TLS failures included.
    fn connect_error(&self, side: Side, e: &tokio_postgres::Error) -> EngineError {
        let message = crate::engine::secret::redact(&crate::engine::error::pg_message(e));
        let lower = message.to_ascii_lowercase();
        let ca = self
            .root_cert()
            .map(|p| format!("the CA in {}", p.display()))
            .unwrap_or_else(|| "a known CA".into());
        let hint = if lower.contains("server does not support tls") {
            "the server does not offer TLS (ssl = off): enable ssl on the server, or use sslmode=prefer or disable".to_string()
        } else if lower.contains("not valid for name") || lower.contains("notvalidforname") {
            format!(
                "the server's certificate does not name {:?}: connect by a name the certificate lists, or use \
                 sslmode=verify-ca to check the CA only",
                self.host
            )
        } else if lower.contains("unknownissuer")
            || lower.contains("unknown issuer")
            || lower.contains("badsignature")
        {
            format!(
                "the server's certificate is not signed by {ca}: give the CA that signed it with sslrootcert=/path/to/ca.crt"
            )
        } else if lower.contains("expired")
            || lower.contains("notvalidyet")
            || lower.contains("not valid yet")
        {
            "the server's certificate is outside its validity period: renew it, or check this machine's clock".into()
        } else if lower.contains("tls") || lower.contains("certificate") {
            "check the server's TLS setup and the sslmode and sslrootcert settings".into()
        } else {
            return EngineError::connect(side, self, e);
        };
        EngineError::Connect {
            side,
            target: self.display_uri(),
            message,
            hint,
        }
    }

    /// What Bucardo's `conn=` needs so that its daemon connects with the same TLS settings as
    /// this tool: libpq keywords, space-separated (DBD::Pg appends them to its DSN). `None` for
    /// libpq's defaults.
    pub fn bucardo_conn(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.sslmode != SslMode::Prefer {
            parts.push(format!("sslmode={}", self.sslmode.as_str()));
        }
        if let Some(ca) = &self.sslrootcert {
            parts.push(format!(
                "sslrootcert={}",
                conninfo_value(&ca.display().to_string())
            ));
        }
        (!parts.is_empty()).then(|| parts.join(" "))
    }

    /// The libpq environment for a child tool (pg_dump, psql, bucardo): TLS settings and the
    /// connect timeout (its passfile is the invocation's own). Host, port, user and database go
    /// on the command line, where the review shows them.
    pub fn child_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("PGSSLMODE".to_string(), self.sslmode.as_str().to_string()),
            (
                "PGCONNECT_TIMEOUT".to_string(),
                self.connect_timeout_s.to_string(),
            ),
        ];
        if let Some(ca) = self.root_cert() {
            env.push(("PGSSLROOTCERT".to_string(), ca.display().to_string()));
        }
        env
    }
}

/// One way of opening a connection.
enum Attempt {
    Plain,
    /// TLS; `required` or else plain when the server does not offer it.
    Tls {
        required: bool,
        tls: MakeRustlsConnect,
    },
}

impl Attempt {
    fn label(&self) -> &'static str {
        match self {
            Attempt::Plain => "an unencrypted",
            Attempt::Tls { .. } => "a TLS",
        }
    }
}

enum Failure {
    Timeout(u64),
    Pg(tokio_postgres::Error),
}

type NoteRx = mpsc::UnboundedReceiver<tokio_postgres::Notification>;

/// Connects and spawns the driver task, which forwards NOTIFY messages to the receiver.
async fn open<T>(
    cfg: &tokio_postgres::Config,
    tls: T,
) -> Result<(Client, NoteRx), tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket> + Send,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let (client, mut connection) = cfg.connect(tls).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let messages = stream::poll_fn(move |cx| connection.poll_message(cx));
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
    Ok((client, rx))
}

/// Does this failure mean the server only takes encrypted connections (pg_hba `hostssl`)?
fn needs_encryption(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|d| {
        *d.code() == tokio_postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            && d.message().contains("no encryption")
    })
}

/// How much of the server's certificate is checked.
enum Verify {
    /// Encryption only (libpq's prefer and require without a root certificate).
    Nothing,
    /// Signed by a trusted CA (verify-ca).
    Chain(Arc<RootCertStore>),
    /// Signed by a trusted CA and naming the host (verify-full).
    Full(Arc<RootCertStore>),
}

fn client_config(verify: Verify) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions");
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        Verify::Full(roots) => WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .expect("a non-empty root store builds a verifier"),
        Verify::Chain(roots) => Arc::new(CertVerifier {
            roots: Some(roots),
            provider,
        }),
        Verify::Nothing => Arc::new(CertVerifier {
            roots: None,
            provider,
        }),
    };
    builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth()
}

/// verify-ca (chain only, any host name) and the unverified modes (no check of the certificate,
/// but the handshake signatures are still checked, so the session is bound to the key the server
/// presented, which is what SCRAM channel binding relies on).
#[derive(Debug)]
struct CertVerifier {
    roots: Option<Arc<RootCertStore>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for CertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A libpq conninfo value: bare when plain, else single-quoted with `\` and `'` escaped.
fn conninfo_value(v: &str) -> String {
    if !v.is_empty() && !v.contains(|c: char| c.is_whitespace() || c == '\'' || c == '\\') {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// A host name, an IPv4 or IPv6 address, or a Unix socket directory (an absolute path).
fn valid_host(h: &str) -> bool {
    if h.starts_with('/') {
        return !h.contains(char::is_control);
    }
    if h.contains(':') {
        return h
            .split('%')
            .next()
            .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
    }
    !h.is_empty()
        && h.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

fn parse_port(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{p:?} is not a port number (1-65535)")),
        Ok(n) => Ok(n),
    }
}

pub fn os_user() -> Option<String> {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            // SAFETY: getpwuid returns a pointer into static storage or null; we copy out at once.
            unsafe {
                let pw = libc::getpwuid(libc::geteuid());
                if pw.is_null() {
                    return None;
                }
                std::ffi::CStr::from_ptr((*pw).pw_name)
                    .to_str()
                    .ok()
                    .map(str::to_string)
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
        let mut lines: Vec<String> = Vec::new();
        for s in specs {
            let Some(p) = &s.password else { continue };
            if p.expose().contains(['\n', '\r', '\0']) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "the password for {}@{}:{} holds a line break, which a passfile cannot carry to pg_dump, psql and bucardo; choose another password",
                        s.user, s.host, s.port
                    ),
                ));
            }
            let line = format!(
                "{}:{}:*:{}:{}\n",
                escape_pgpass(&s.host),
                s.port,
                escape_pgpass(&s.user),
                escape_pgpass(p.expose())
            );
            if !lines.contains(&line) {
                lines.push(line);
            }
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        // An existing file keeps its mode on open: make it private before writing.
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        f.write_all(lines.concat().as_bytes())?;
        f.sync_all()?;
        Ok(Passfile {
            path: path.to_path_buf(),
            remove_on_drop,
        })
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
        let c = ConnSpec::parse_uri(
            "postgres://bob:p%40ss@db.example:5433/app?sslmode=require",
            &d(),
        )
        .unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.dbname.as_str()),
            ("db.example", 5433, "app")
        );
        assert_eq!(c.user, "bob");
        assert_eq!(c.password.as_ref().unwrap().expose(), "p@ss");
        assert_eq!(c.sslmode, SslMode::Require);
        let c = ConnSpec::parse_uri("postgresql://", &d()).unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.user.as_str()),
            ("defhost", 6543, "postgres")
        );
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
        assert_eq!(
            pgpass_lookup(&f, "127.0.0.1", 5432, "app", "bob").as_deref(),
            Some("a:b\\c")
        );
        assert_eq!(
            pgpass_lookup(&f, "x", 1, "y", "z").as_deref(),
            Some("fallback")
        );
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
            assert_eq!(
                pgpass_lookup(&path, "h", 5, "any", "u").as_deref(),
                Some("pa:ss\\word")
            );
            assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
        }
        assert!(!path.exists());
    }

    #[test]
    fn tls_settings_survive_display_and_reach_bucardo() {
        let c = ConnSpec::parse_uri(
            "postgres://u:pw12345@h:5/d?sslmode=verify-full&sslrootcert=/etc/my%20ca/root.crt",
            &d(),
        )
        .unwrap();
        let shown = c.display_uri();
        assert!(!shown.contains("pw12345"), "{shown}");
        let back = ConnSpec::parse_uri(&shown, &d()).unwrap();
        assert_eq!(
            (back.sslmode, back.sslrootcert.clone()),
            (c.sslmode, c.sslrootcert.clone())
        );
        assert_eq!(
            c.bucardo_conn().as_deref(),
            Some("sslmode=verify-full sslrootcert='/etc/my ca/root.crt'")
        );
        assert_eq!(
            ConnSpec::parse_uri("postgres://u@h/d", &d())
                .unwrap()
                .bucardo_conn(),
            None
        );
        let req = ConnSpec::parse_uri("postgres://u@h/d?sslmode=require", &d()).unwrap();
        assert_eq!(req.bucardo_conn().as_deref(), Some("sslmode=require"));
        assert_eq!(conninfo_value(r"it's\x"), r"'it\'s\\x'");
        let env = c.child_env();
        assert!(env.contains(&("PGSSLMODE".into(), "verify-full".into())));
        assert!(env.contains(&("PGSSLROOTCERT".into(), "/etc/my ca/root.crt".into())));
    }

    #[test]
    fn verify_modes_need_a_root_certificate_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.crt");
        let empty = dir.path().join("empty.crt");
        std::fs::write(&empty, "no PEM here\n").unwrap();
        for (ca, want) in [(&missing, "missing.crt"), (&empty, "holds no certificate")] {
            let mut c = ConnSpec::parse_uri("postgres://u@h/d?sslmode=verify-ca", &d()).unwrap();
            c.sslrootcert = Some(ca.clone());
            let e = c
                .tls_attempts(Side::Here)
                .err()
                .expect("refused")
                .to_string();
            assert!(e.contains(want) && e.starts_with("HERE"), "{e}");
        }
        // A Unix socket never negotiates TLS, whatever sslmode says (as in libpq).
        let mut c = ConnSpec::parse_uri("postgres://u@%2Ftmp/d?sslmode=verify-full", &d()).unwrap();
        c.sslrootcert = Some(missing);
        assert!(matches!(
            c.tls_attempts(Side::Here).unwrap().as_slice(),
            [Attempt::Plain]
        ));
    }

    #[test]
    fn nul_bytes_are_refused() {
        for bad in [
            "postgres://u%00@h/d",
            "postgres://u@h/d%00",
            "postgres://u@h%00x/d",
            "postgres://u@h/d?user=a%00",
        ] {
            let e = ConnSpec::parse_uri(bad, &d()).unwrap_err();
            assert!(e.contains("NUL"), "{bad}: {e}");
        }
        for bad in [
            "postgres://u@h/d%0Ax",
            "postgres://u@h/d?sslrootcert=%2Fa%0Ab",
            "postgres://u:p%0Aw@h/d",
        ] {
            let e = ConnSpec::parse_uri(bad, &d()).unwrap_err();
            assert!(
                e.contains("control character") && !e.contains('\n'),
                "{bad}: {e}"
            );
        }
        assert!(
            ConnSpec::parse_uri("postgres://u:p%09w@h/d", &d()).is_ok(),
            "a tab is fine in a password"
        );
        let dir = tempfile::tempdir().unwrap();
        let mut c = ConnSpec::parse_uri("postgres://u@h/d", &d()).unwrap();
        c.password = Some(Secret::new("two\nlines"));
        let e = Passfile::write(&dir.path().join("pf"), &[&c], true)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("line break") && !e.contains("two"), "{e}");
    }
}
