//! Preflight: every check that can fail a bootstrap, run before anything changes, each finding
//! with a severity, a message and how to fix it. Preflight only reads: it creates no database,
//! trigger or Bucardo object.

use crate::engine::catalog::TableInfo;
use crate::engine::settings::Settings;
use serde::Serialize;

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
        Finding { severity: Severity::Pass, group: group.into(), check: check.into(), message: message.into(), fix: None }
    }
    pub fn warn(group: &str, check: &str, message: impl Into<String>, fix: Option<String>) -> Self {
        Finding { severity: Severity::Warn, group: group.into(), check: check.into(), message: message.into(), fix }
    }
    pub fn fail(group: &str, check: &str, message: impl Into<String>, fix: Option<String>) -> Self {
        Finding { severity: Severity::Fail, group: group.into(), check: check.into(), message: message.into(), fix }
    }
}

/// Runs every check. `tables` are the chosen tables when known (HERE's catalog rows).
pub async fn run(s: &Settings, tables: Option<&[TableInfo]>) -> Vec<Finding> {
    let _ = tables;
    let mut out = Vec::new();
    for (side, spec) in [
        (crate::engine::conn::Side::Here, &s.here),
        (crate::engine::conn::Side::There, &s.there.with_db("postgres")),
    ] {
        match spec.connect(side).await {
            Ok(_) => out.push(Finding::pass(&side.to_string(), "connect", format!("{} answers", spec.display_uri()))),
            Err(e) => out.push(Finding::fail(&side.to_string(), "connect", e.one_line(), None)),
        }
    }
    out
}

pub fn has_fail(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Fail)
}
