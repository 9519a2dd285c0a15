//! The engine's error type: what failed, on which server, with the tail of a child's stderr and a
//! hint that says what to do. Every message passes through the redactor before it is built.

use crate::engine::conn::{ConnSpec, Side};
use crate::engine::secret::redact;
use thiserror::Error;

#[derive(Clone, Debug, Error)]
pub enum EngineError {
    #[error("cannot connect to {side} ({target}): {message}. {hint}")]
    Connect {
        side: Side,
        target: String,
        message: String,
        hint: String,
    },

    #[error("{side}: {context}: {message}")]
    Sql {
        side: Side,
        context: String,
        message: String,
    },

    #[error("{program} failed ({status}): {stderr_tail}")]
    Command {
        program: String,
        status: String,
        stderr_tail: String,
    },

    #[error("{0}")]
    Config(String),

    #[error("refusing to continue: {0}")]
    Refused(String),

    #[error("copy of {table} failed: {message}")]
    Copy { table: String, message: String },

    #[error("timed out: {0}")]
    Timeout(String),

    #[error("aborted by the operator")]
    Aborted,

    #[error("{0}")]
    Io(String),
}

impl EngineError {
    pub fn connect(side: Side, spec: &ConnSpec, e: &tokio_postgres::Error) -> Self {
        let message = redact(&pg_message(e));
        let lower = message.to_ascii_lowercase();
        let hint = if lower.contains("password authentication failed")
            || lower.contains("no password supplied")
        {
            "check the password (PGPASSWORD, BUCARDOPASS or ~/.pgpass)"
        } else if lower.contains("does not exist") && lower.contains("database") {
            "check the database name"
        } else if lower.contains("refused")
            || lower.contains("timed out")
            || lower.contains("resolve")
        {
            "check that the server is up and the host and port are right"
        } else if lower.contains("pg_hba") {
            "ask for a pg_hba.conf entry for this host and user"
        } else {
            "check the connection settings"
        };
        EngineError::Connect {
            side,
            target: spec.display_uri(),
            message,
            hint: hint.to_string(),
        }
    }

    pub fn sql(side: Side, context: impl Into<String>, e: &tokio_postgres::Error) -> Self {
        EngineError::Sql {
            side,
            context: context.into(),
            message: redact(&pg_message(e)),
        }
    }

    /// A one-line form for exit messages and the status line.
    pub fn one_line(&self) -> String {
        redact(&self.to_string()).replace('\n', " ")
    }
}

/// PostgreSQL's own message (with detail and hint) rather than tokio-postgres' generic "db error".
pub fn pg_message(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut m = format!("{}: {}", db.severity(), db.message());
        if let Some(d) = db.detail() {
            m.push_str(&format!(" ({d})"));
        }
        if let Some(h) = db.hint() {
            m.push_str(&format!(" Hint: {h}"));
        }
        m
    } else {
        let mut m = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            m.push_str(&format!(": {s}"));
            src = s.source();
        }
        m
    }
}

impl From<std::io::Error> for EngineError {
    fn from(e: std::io::Error) -> Self {
        EngineError::Io(redact(&e.to_string()))
    }
}
