//! Preflight: every check that can fail a bootstrap, run before anything changes, each finding
//! with a severity, a message and how to fix it. Preflight only reads: it creates no database,
//! trigger or Bucardo object. Its sessions run with `default_transaction_read_only` on, short
//! lock and statement timeouts, and the four groups of checks (HERE, THERE, Bucardo, this
//! machine) run concurrently so that an unreachable server costs one connect timeout, not four.

use crate::engine::bucardo::{self, BucardoCli, BucardoCmd};
use crate::engine::catalog::{self, Column, Presence, Shape, TableInfo};
use crate::engine::conn::{ConnSpec, Side};
use crate::engine::coverage::{self, Catalog};
use crate::engine::daemon::{self, Daemon};
use crate::engine::error::EngineError;
use crate::engine::files::unsafe_dir_reason;
use crate::engine::ident::{quote_ident, quote_literal, shell_word, TableName};
use crate::engine::process::{self, pg_tool, Invocation};
use crate::engine::secret::redact;
use crate::engine::settings::{SequenceMode, Settings, TableSelection};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_postgres::Client;

mod bucardo_checks;
mod clock;
mod here;
mod local;
mod lock_table;
mod there;

pub use lock_table::{max_locks_for_sync, SYNC_LOCKS_PER_TABLE};

use bucardo_checks::*;
use clock::*;
pub use clock::{clock_findings, ClockReading};
use here::*;
use local::*;
pub use local::{parse_tool_version, server_major};
use there::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Severity {
    Pass,
    Warn,
    Fail,
}

/// One finding. `group` is what the wizard groups by (a server, Bucardo, the tables).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub group: String,
    pub check: String,
    pub message: String,
    /// The SQL or command that fixes it, when there is one.
    pub fix: Option<String>,
}

impl Finding {
    pub fn pass(group: &str, check: &str, message: impl Into<String>) -> Self {
        Finding {
            severity: Severity::Pass,
            group: group.into(),
            check: check.into(),
            message: message.into(),
            fix: None,
        }
    }
    pub fn warn(group: &str, check: &str, message: impl Into<String>, fix: Option<String>) -> Self {
        Finding {
            severity: Severity::Warn,
            group: group.into(),
            check: check.into(),
            message: message.into(),
            fix,
        }
    }
    pub fn fail(group: &str, check: &str, message: impl Into<String>, fix: Option<String>) -> Self {
        Finding {
            severity: Severity::Fail,
            group: group.into(),
            check: check.into(),
            message: message.into(),
            fix,
        }
    }
}

pub const HERE: &str = "HERE";
pub const THERE: &str = "THERE";
pub const BUCARDO: &str = "Bucardo";
pub const TABLES: &str = "Tables";
pub const JUMP_BOX: &str = "Jump box";

/// The oldest server the catalog queries support (`pg_partition_root`, generated columns).
const MIN_SERVER_VERSION: i32 = 120000;

/// Thresholds of the checks; [`run`] uses the defaults.
#[derive(Clone, Debug)]
pub struct Options {
    /// Transactions on HERE open longer than this are reported.
    pub long_transaction: Duration,
    /// Clock differences above this (beyond what the round trip can explain) are reported.
    pub max_clock_skew: Duration,
    /// How long to wait for the Bucardo daemon to answer a ping.
    pub daemon_ping: Duration,
    /// This machine's clock, in seconds since the epoch (tests substitute a skewed one).
    pub local_clock: fn() -> f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            long_transaction: Duration::from_secs(300),
            max_clock_skew: Duration::from_secs(1),
            daemon_ping: Duration::from_secs(2),
            local_clock: system_clock,
        }
    }
}

pub fn system_clock() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Runs every check. `tables` are the chosen tables when known (HERE's catalog rows); without
/// them the selection in the settings is resolved against HERE's catalog.
pub async fn run(s: &Settings, tables: Option<&[TableInfo]>) -> Vec<Finding> {
    run_with(s, tables, &Options::default()).await
}

pub async fn run_with(s: &Settings, tables: Option<&[TableInfo]>, opts: &Options) -> Vec<Finding> {
    checks(s, tables, None, opts, None).await.findings
}

/// What the checks found, with what they learned of THERE's copies of the chosen tables: the
/// probe before a plan takes that instead of looking again.
#[derive(Debug)]
pub struct Outcome {
    pub findings: Vec<Finding>,
    /// Which chosen tables THERE has and which hold rows; None when the checks could not tell
    /// (or did not look: no database on THERE, or a resumed run's checks).
    pub there: Option<Presence>,
}

/// THERE's checks, started before HERE's catalog is read: they need nothing of HERE until the
/// chosen tables are matched to THERE's, and with 10,000 tables each side takes a few hundred
/// milliseconds.
pub struct ThereAhead(tokio::task::JoinHandle<ThereOut>);

/// Starts THERE's checks for [`run_in`] or [`resume_checks_in`].
pub fn start_there(s: &Settings) -> ThereAhead {
    ThereAhead(spawn_there_checks(s, &Options::default(), true))
}

/// [`run`] with HERE's catalog already read (HERE is still connected to and checked), and
/// THERE's checks perhaps started already.
pub async fn run_in(
    s: &Settings,
    tables: Option<&[TableInfo]>,
    catalog: &Catalog,
    there: Option<ThereAhead>,
) -> Outcome {
    checks(s, tables, Some(catalog), &Options::default(), there).await
}

async fn checks(
    s: &Settings,
    tables: Option<&[TableInfo]>,
    catalog: Option<&Catalog>,
    opts: &Options,
    ahead: Option<ThereAhead>,
) -> Outcome {
    let there = match ahead {
        Some(ThereAhead(task)) => task,
        None => spawn_there_checks(s, opts, true),
    };
    let (here, mut bucardo, local) = tokio::join!(
        here_checks(s, tables, catalog, opts),
        bucardo_checks(s, opts, false),
        local_checks(s),
    );
    let there = joined(there).await;
    let mut out = here.findings;
    out.extend(there.findings);
    let mut presence = None;
    if let (Some(chosen), Some(client), Some(shapes)) = (&here.chosen, &there.db, &there.shapes) {
        let (findings, found) = there_tables(client, chosen, shapes).await;
        out.extend(findings);
        out.extend(lock_table::sync_locks(client, THERE, Side::There, chosen.len()).await);
        presence = found;
    }
    out.append(&mut bucardo);
    out.extend(here.table_findings);
    out.extend(local.findings);
    out.extend(tool_findings(&local.tools, here.version, there.version));
    let max = opts.max_clock_skew.as_secs_f64();
    out.extend(clock_findings(here.clock, there.clock, max));
    Outcome {
        findings: out,
        there: presence,
    }
}

/// The checks for resuming a bootstrap that an earlier run started: only what still matters.
/// The earlier run passed the full preflight, and the names it registered and the rows it
/// copied are its own work, not a conflict: so each server is checked for reachability,
/// version and privileges, and Bucardo for its control database (installed, or installable
/// when the earlier run stopped before installing it) and its daemon.
pub async fn resume_checks(s: &Settings) -> Vec<Finding> {
    resume_checks_with(s, None, None).await
}

/// [`resume_checks`] with HERE's catalog already read, and THERE's checks perhaps started
/// already (their listing of THERE's tables then goes unused).
pub async fn resume_checks_in(
    s: &Settings,
    catalog: &Catalog,
    there: Option<ThereAhead>,
) -> Outcome {
    Outcome {
        findings: resume_checks_with(s, Some(catalog), there).await,
        there: None,
    }
}

async fn resume_checks_with(
    s: &Settings,
    catalog: Option<&Catalog>,
    ahead: Option<ThereAhead>,
) -> Vec<Finding> {
    let opts = Options::default();
    let there = match ahead {
        Some(ThereAhead(task)) => task,
        None => spawn_there_checks(s, &opts, false),
    };
    let (here, bucardo) = tokio::join!(
        here_checks(s, None, catalog, &opts),
        bucardo_checks(s, &opts, true),
    );
    let there = joined(there).await;
    let mut out = here.findings;
    out.extend(there.findings);
    out.extend(bucardo);
    out
}

/// THERE's checks as a task of their own: resolving HERE's selection is a burst of CPU (tens of
/// milliseconds with 10,000 tables) that would hold them up between their queries if they were
/// polled in the same task.
fn spawn_there_checks(
    s: &Settings,
    opts: &Options,
    tables: bool,
) -> tokio::task::JoinHandle<ThereOut> {
    let (s, opts) = (s.clone(), opts.clone());
    tokio::spawn(async move { there_checks(&s, &opts, tables).await })
}

async fn joined(task: tokio::task::JoinHandle<ThereOut>) -> ThereOut {
    match task.await {
        Ok(out) => out,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

pub fn has_fail(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Fail)
}

/// A read-only session with short timeouts, so that a lock held elsewhere cannot hang preflight.
async fn open(spec: &ConnSpec, side: Side) -> Result<Client, EngineError> {
    let c = spec.connect(side).await?;
    c.batch_execute(
        "SET default_transaction_read_only = on; SET lock_timeout = '5s'; SET statement_timeout = '60s'",
    )
    .await
    .map_err(|e| EngineError::sql(side, "preparing a read-only session", &e))?;
    Ok(c)
}

fn connect_failure(group: &str, e: &EngineError) -> Finding {
    let fix = match e {
        EngineError::Connect { hint, .. } => Some(hint.clone()),
        _ => None,
    };
    Finding::fail(group, "connect", e.one_line(), fix)
}

fn sql_failure(group: &str, check: &str, e: &EngineError) -> Finding {
    Finding::fail(group, check, e.one_line(), None)
}

/// Front ends spawn preflight on the runtime: its future must be `Send`.
#[allow(dead_code)]
fn run_is_send(s: &Settings) {
    fn send<T: Send>(_: T) {}
    send(run(s, None));
    send(run_in(s, None, &Catalog::default(), None));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_versions_parse() {
        let (v, m) =
            parse_tool_version("pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)\n").unwrap();
        assert_eq!((v.as_str(), m), ("15.20", (15, 0)));
        assert_eq!(
            parse_tool_version("psql (PostgreSQL) 9.6.24").unwrap().1,
            (9, 6)
        );
        assert_eq!(
            parse_tool_version("psql (PostgreSQL) 17devel").unwrap().1,
            (17, 0)
        );
        assert!(parse_tool_version("nothing here").is_none());
        assert_eq!(server_major(150020), (15, 0));
        assert_eq!(server_major(90624), (9, 6));
        assert!(server_major(90624) < (10, 0));
    }

    #[test]
    fn older_tools_fail_and_newer_pass() {
        let tool = |v: &str, needed| Tool {
            name: "pg_dump",
            path: "/x/pg_dump".into(),
            result: Ok(parse_tool_version(v).unwrap()),
            needed,
        };
        let f = tool_findings(&[tool("14.1", true)], Some(150002), Some(140000));
        assert_eq!(f[0].severity, Severity::Fail);
        assert!(f[0].message.contains("HERE runs 15"), "{}", f[0].message);
        let f = tool_findings(&[tool("16.0", true)], Some(150002), Some(140000));
        assert_eq!(f[0].severity, Severity::Pass);
        let f = tool_findings(&[tool("14.1", false)], Some(150002), None);
        assert_eq!(f[0].severity, Severity::Warn);
    }

    #[test]
    fn clock_skew_beyond_the_round_trip_warns() {
        let r = |offset, uncertainty| {
            Some(ClockReading {
                offset,
                uncertainty,
            })
        };
        let f = clock_findings(r(0.01, 0.001), r(-0.02, 0.001), 1.0);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].severity, Severity::Pass);
        let f = clock_findings(r(0.0, 0.001), r(2.5, 0.001), 1.0);
        let warns: Vec<&Finding> = f.iter().filter(|f| f.severity == Severity::Warn).collect();
        assert_eq!(warns.len(), 2, "{f:?}");
        assert!(warns[0]
            .message
            .contains("THERE's clock is 2.5 s ahead of this machine"));
        assert!(warns[1].message.contains("ahead of HERE"));
        // A slow round trip explains a difference it covers.
        let f = clock_findings(r(1.5, 0.8), None, 1.0);
        assert_eq!(f[0].severity, Severity::Pass);
    }
}
