//! Preflight: every check that can fail a bootstrap, run before anything changes, each finding
//! with a severity, a message and how to fix it. Preflight only reads: it creates no database,
//! trigger or Bucardo object. Its sessions run with `default_transaction_read_only` on, short
//! lock and statement timeouts, and the four groups of checks (HERE, THERE, Bucardo, this
//! machine) run concurrently so that an unreachable server costs one connect timeout, not four.

use crate::engine::bucardo::{self, BucardoCli, BucardoCmd};
use crate::engine::catalog::{self, Problem, TableInfo};
use crate::engine::conn::{ConnSpec, Side};
use crate::engine::daemon::{self, Daemon};
use crate::engine::error::EngineError;
use crate::engine::exec::unsafe_dir_reason;
use crate::engine::ident::{quote_ident, quote_literal, shell_word, TableName};
use crate::engine::process::{self, pg_tool, Invocation};
use crate::engine::secret::redact;
use crate::engine::settings::{SequenceMode, Settings, TableSelection};
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_postgres::Client;

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
    let (here, there, mut bucardo, local) = tokio::join!(
        here_checks(s, tables, opts),
        there_checks(s, opts),
        bucardo_checks(s, opts),
        local_checks(s),
    );
    let mut out = here.findings;
    out.extend(there.findings);
    if let (Some(chosen), Some(client)) = (&here.chosen, &there.db) {
        out.extend(there_tables(client, chosen).await);
    }
    out.append(&mut bucardo);
    out.extend(here.table_findings);
    out.extend(local.findings);
    out.extend(tool_findings(&local.tools, here.version, there.version));
    let max = opts.max_clock_skew.as_secs_f64();
    out.extend(clock_findings(here.clock, there.clock, max));
    out
}

pub fn has_fail(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Fail)
}

/// `bucardo-bootstrap check`: prints the findings grouped, with their fixes; 0 when nothing
/// fails, 1 otherwise.
pub async fn check_command(s: &Settings) -> u8 {
    let findings = run(s, None).await;
    print!("{}", render(&findings));
    u8::from(has_fail(&findings))
}

/// The findings as text: grouped (HERE, THERE, Bucardo, Tables, Jump box), each fix indented
/// under its finding, and a count at the end.
pub fn render(findings: &[Finding]) -> String {
    let mut groups: Vec<&str> = vec![HERE, THERE, BUCARDO, TABLES, JUMP_BOX];
    for f in findings {
        if !groups.contains(&f.group.as_str()) {
            groups.push(&f.group);
        }
    }
    let mut out = String::new();
    for g in groups {
        let in_group: Vec<&Finding> = findings.iter().filter(|f| f.group == g).collect();
        if in_group.is_empty() {
            continue;
        }
        out.push_str(&format!("{g}\n"));
        for f in in_group {
            let tag = match f.severity {
                Severity::Pass => "PASS",
                Severity::Warn => "WARN",
                Severity::Fail => "FAIL",
            };
            out.push_str(&format!("  {tag}  {}: {}\n", f.check, f.message));
            if let Some(fix) = &f.fix {
                for (i, line) in fix.lines().enumerate() {
                    let lead = if i == 0 { "fix: " } else { "     " };
                    out.push_str(&format!("        {lead}{line}\n"));
                }
            }
        }
    }
    let n = |sev| findings.iter().filter(|f| f.severity == sev).count();
    out.push_str(&format!(
        "{} fail, {} warn, {} pass\n",
        n(Severity::Fail),
        n(Severity::Warn),
        n(Severity::Pass)
    ));
    out
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

/// How far a server's clock is from this machine's, in seconds, and the uncertainty (half the
/// round trip of the best of a few readings).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClockReading {
    pub offset: f64,
    pub uncertainty: f64,
}

async fn read_clock(c: &Client, local: fn() -> f64) -> Option<ClockReading> {
    let mut best: Option<ClockReading> = None;
    for _ in 0..3 {
        let t0 = local();
        let row = c
            .query_one("SELECT extract(epoch FROM clock_timestamp())::float8", &[])
            .await
            .ok()?;
        let t1 = local();
        let server: f64 = row.get(0);
        let r = ClockReading {
            offset: server - (t0 + t1) / 2.0,
            uncertainty: (t1 - t0) / 2.0,
        };
        match best {
            Some(b) if b.uncertainty <= r.uncertainty => {}
            _ => best = Some(r),
        }
    }
    best
}

/// Clock skew between HERE, THERE and this machine: a warning for each pair that differs by
/// more than `max` seconds beyond the measurement's uncertainty.
pub fn clock_findings(
    here: Option<ClockReading>,
    there: Option<ClockReading>,
    max: f64,
) -> Vec<Finding> {
    let mut pairs = Vec::new();
    if let Some(h) = here {
        pairs.push(("HERE", "this machine", h.offset, h.uncertainty));
    }
    if let Some(t) = there {
        pairs.push(("THERE", "this machine", t.offset, t.uncertainty));
    }
    if let (Some(h), Some(t)) = (here, there) {
        pairs.push((
            "THERE",
            "HERE",
            t.offset - h.offset,
            t.uncertainty + h.uncertainty,
        ));
    }
    if pairs.is_empty() {
        return vec![];
    }
    let mut out = Vec::new();
    let mut agree = Vec::new();
    for (a, b, diff, unc) in pairs {
        if diff.abs() - unc > max {
            out.push(Finding::warn(
                JUMP_BOX,
                "clock",
                format!(
                    "{a}'s clock is {:.1} s {} {b}'s: Bucardo settles conflicts by transaction start time, so the side with the later clock wins wrongly",
                    diff.abs(),
                    if diff > 0.0 { "ahead of" } else { "behind" }
                ),
                Some("synchronise the clocks with NTP on every machine, e.g. `timedatectl set-ntp true` (or chrony)".into()),
            ));
        } else {
            agree.push(format!("{a}/{b} {:+.3} s", diff));
        }
    }
    if !agree.is_empty() {
        out.push(Finding::pass(
            JUMP_BOX,
            "clock",
            format!("clocks agree within {max} s: {}", agree.join(", ")),
        ));
    }
    out
}

#[derive(Default)]
struct HereOut {
    findings: Vec<Finding>,
    table_findings: Vec<Finding>,
    version: Option<i32>,
    chosen: Option<Vec<TableInfo>>,
    clock: Option<ClockReading>,
}

async fn here_checks(s: &Settings, tables: Option<&[TableInfo]>, opts: &Options) -> HereOut {
    let mut o = HereOut::default();
    let c = match open(&s.here, Side::Here).await {
        Ok(c) => c,
        Err(e) => {
            o.findings.push(connect_failure(HERE, &e));
            return o;
        }
    };
    o.findings.push(Finding::pass(
        HERE,
        "connect",
        format!("{} answers", s.here.display_uri()),
    ));
    let info = match catalog::server_info(&c, Side::Here).await {
        Ok(i) => i,
        Err(e) => {
            o.findings.push(sql_failure(HERE, "version", &e));
            return o;
        }
    };
    o.findings
        .push(version_finding(HERE, &info.version, info.version_num));
    o.version = Some(info.version_num);
    o.clock = read_clock(&c, opts.local_clock).await;

    let chosen = match tables {
        Some(t) => Some(t.to_vec()),
        None => match resolve(s, &c).await {
            Ok((chosen, findings)) => {
                o.table_findings.extend(findings);
                Some(chosen)
            }
            Err(e) => {
                o.table_findings.push(sql_failure(TABLES, "catalog", &e));
                None
            }
        },
    };
    if let Some(chosen) = &chosen {
        o.table_findings.extend(table_findings(chosen));
    }
    let missing = here_privileges(s, &c, chosen.as_deref().unwrap_or(&[]), info.is_superuser).await;
    o.findings.extend(missing);
    o.findings
        .extend(bucardo_role(s, &c, HERE, Side::Here, &s.here).await);
    o.findings
        .extend(long_transactions(&c, opts.long_transaction).await);
    o.chosen = chosen;
    o
}

fn version_finding(group: &str, version: &str, num: i32) -> Finding {
    if num < MIN_SERVER_VERSION {
        Finding::fail(
            group,
            "version",
            format!("PostgreSQL {version}: this tool needs PostgreSQL 12 or later"),
            None,
        )
    } else {
        Finding::pass(group, "version", format!("PostgreSQL {version}"))
    }
}

/// The chosen tables from the settings' selection, and findings about the selection itself
/// (names not found, tables `all` leaves out).
async fn resolve(s: &Settings, c: &Client) -> Result<(Vec<TableInfo>, Vec<Finding>), EngineError> {
    let mut findings = Vec::new();
    match &s.tables {
        TableSelection::All => {
            let all = catalog::list_tables(c, Side::Here, None).await?;
            let (chosen, left): (Vec<TableInfo>, Vec<TableInfo>) =
                all.into_iter().partition(TableInfo::is_eligible);
            for t in &left {
                let b = t.blockers();
                let reasons: Vec<&str> = b.iter().map(|p| p.reason.as_str()).collect();
                findings.push(Finding::warn(
                    TABLES,
                    "left out",
                    format!(
                        "{} is left out of `--tables all`: {}",
                        t.name,
                        reasons.join("; ")
                    ),
                    join_fixes(&b),
                ));
            }
            if chosen.is_empty() {
                findings.push(Finding::fail(
                    TABLES,
                    "selection",
                    "HERE has no table that Bucardo can replicate",
                    None,
                ));
            }
            Ok((chosen, findings))
        }
        TableSelection::List(names) => {
            let found = catalog::list_tables(c, Side::Here, Some(names)).await?;
            for n in names {
                if !found.iter().any(|t| &t.name == n) {
                    findings.push(Finding::fail(
                        TABLES,
                        "selection",
                        format!(
                            "{n} does not exist on HERE (names are case-sensitive: write \"Mixed Case\".\"Table\" for those)"
                        ),
                        None,
                    ));
                }
            }
            Ok((found, findings))
        }
    }
}

fn join_fixes(problems: &[Problem]) -> Option<String> {
    let fixes: Vec<&str> = problems.iter().filter_map(|p| p.fix.as_deref()).collect();
    (!fixes.is_empty()).then(|| fixes.join("\n"))
}

/// Blockers, cautions and foreign keys that cross the selection, for every chosen table.
fn table_findings(chosen: &[TableInfo]) -> Vec<Finding> {
    let mut out = Vec::new();
    let names: BTreeSet<&TableName> = chosen.iter().map(|t| &t.name).collect();
    let mut eligible = 0;
    for t in chosen {
        let blockers = t.blockers();
        if blockers.is_empty() {
            eligible += 1;
        }
        for p in blockers {
            out.push(Finding::fail(
                TABLES,
                "eligibility",
                format!("{}: {}", t.name, p.reason),
                p.fix,
            ));
        }
        for p in t.cautions() {
            out.push(Finding::warn(
                TABLES,
                "caution",
                format!("{}: {}", t.name, p.reason),
                p.fix,
            ));
        }
        for other in t
            .fk_out
            .iter()
            .filter(|o| *o != &t.name && !names.contains(o))
        {
            out.push(Finding::warn(
                TABLES,
                "foreign keys",
                format!(
                    "{} references {other}, which is not chosen: rows written on THERE can point to rows THERE never gets",
                    t.name
                ),
                Some(format!("choose {other} too")),
            ));
        }
        for other in t
            .fk_in
            .iter()
            .filter(|o| *o != &t.name && !names.contains(o))
        {
            out.push(Finding::warn(
                TABLES,
                "foreign keys",
                format!(
                    "{other} (not chosen) references {}: deletes and key updates replicated from the other side can break or cascade into it",
                    t.name
                ),
                Some(format!("choose {other} too")),
            ));
        }
    }
    if eligible > 0 {
        let rows: i64 = chosen.iter().map(|t| t.est_rows).sum();
        let bytes: i64 = chosen.iter().map(|t| t.total_bytes).sum();
        out.push(Finding::pass(
            TABLES,
            "eligibility",
            format!(
                "{eligible} of {} chosen tables can be replicated (about {rows} rows, {})",
                chosen.len(),
                crate::engine::plan::human_bytes(bytes)
            ),
        ));
    }
    out
}

/// On HERE the tool dumps the schema, copies every chosen table, creates Bucardo's role where
/// missing and re-numbers the sequences feeding the chosen tables.
async fn here_privileges(
    s: &Settings,
    c: &Client,
    chosen: &[TableInfo],
    superuser: bool,
) -> Vec<Finding> {
    let user = &s.here.user;
    if superuser {
        return vec![Finding::pass(
            HERE,
            "privileges",
            format!("{user} is a superuser"),
        )];
    }
    let mut missing: Vec<(String, String)> = Vec::new();
    match role_exists(c, Side::Here, &s.bucardo.user).await {
        Ok(None) => missing.push((
            format!(
                "creating the superuser role {} (needs superuser)",
                s.bucardo.user
            ),
            format!("ALTER ROLE {} SUPERUSER;", quote_ident(user)),
        )),
        Ok(Some(_)) => {}
        Err(e) => return vec![sql_failure(HERE, "privileges", &e)],
    }
    let oids: Vec<u32> = chosen.iter().map(|t| t.oid).collect();
    let seqs: Vec<String> = chosen
        .iter()
        .flat_map(|t| t.sequences.iter().map(|q| q.sequence.sql()))
        .collect();
    let q = c
        .query(
            "SELECT 'SELECT on ' || t::regclass::text, format('GRANT SELECT ON %s TO %I;', t::regclass, current_user)
               FROM unnest($1::oid[]) AS t WHERE NOT has_table_privilege(t, 'SELECT')
             UNION ALL
             SELECT 'ownership of sequence ' || q::text
                    || coalesce(' (it goes with table ' || owner::text || ')', ''),
                    CASE WHEN owner IS NULL
                         THEN format('ALTER SEQUENCE %s OWNER TO %I;', q, current_user)
                         ELSE format('ALTER TABLE %s OWNER TO %I;', owner, current_user) END
               FROM unnest($2::text[]) AS n,
                    LATERAL (SELECT n::regclass AS q) x,
                    LATERAL (SELECT (SELECT d.refobjid::regclass FROM pg_depend d
                                      WHERE d.classid = 'pg_class'::regclass AND d.objid = x.q
                                        AND d.refclassid = 'pg_class'::regclass
                                        AND d.deptype IN ('a', 'i') LIMIT 1) AS owner) y
              WHERE $3 AND NOT pg_has_role((SELECT relowner FROM pg_class WHERE oid = q), 'USAGE')",
            &[&oids, &seqs, &(s.sequences == SequenceMode::Interleave)],
        )
        .await;
    match q {
        Ok(rows) => missing.extend(rows.iter().map(|r| (r.get(0), r.get(1)))),
        Err(e) => {
            return vec![sql_failure(
                HERE,
                "privileges",
                &EngineError::sql(Side::Here, "checking privileges", &e),
            )]
        }
    }
    privilege_finding(HERE, user, missing)
}

fn privilege_finding(group: &str, user: &str, missing: Vec<(String, String)>) -> Vec<Finding> {
    if missing.is_empty() {
        return vec![Finding::warn(
            group,
            "privileges",
            format!("{user} is not a superuser, but holds every privilege the plan needs"),
            None,
        )];
    }
    let what: Vec<&str> = missing.iter().map(|(w, _)| w.as_str()).collect();
    let mut fixes: Vec<String> = Vec::new();
    for (_, f) in &missing {
        if !fixes.contains(f) {
            fixes.push(f.clone());
        }
    }
    vec![Finding::fail(
        group,
        "privileges",
        format!("{user} is not a superuser and lacks: {}", what.join("; ")),
        Some(format!(
            "as a superuser: ALTER ROLE {} SUPERUSER;  -- or, one by one:\n{}",
            quote_ident(user),
            fixes.join("\n")
        )),
    )]
}

async fn role_exists(
    c: &Client,
    side: Side,
    role: &str,
) -> Result<Option<(bool, bool)>, EngineError> {
    c.query_opt(
        "SELECT rolsuper, rolcanlogin FROM pg_roles WHERE rolname = $1",
        &[&role],
    )
    .await
    .map(|r| r.map(|r| (r.get(0), r.get(1))))
    .map_err(|e| EngineError::sql(side, format!("looking for role {role}"), &e))
}

/// Bucardo's role on a replicated server: absent (the plan creates it), or a superuser that can
/// log in with BUCARDOPASS.
async fn bucardo_role(
    s: &Settings,
    c: &Client,
    group: &str,
    side: Side,
    spec: &ConnSpec,
) -> Vec<Finding> {
    let role = &s.bucardo.user;
    let qrole = quote_ident(role);
    match role_exists(c, side, role).await {
        Err(e) => vec![sql_failure(group, "bucardo role", &e)],
        Ok(None) => vec![Finding::pass(
            group,
            "bucardo role",
            format!("role {role} does not exist yet: the plan creates it (superuser, password BUCARDOPASS)"),
        )],
        Ok(Some((superuser, login))) => {
            let mut out = Vec::new();
            if !superuser {
                out.push(Finding::fail(
                    group,
                    "bucardo role",
                    format!("role {role} exists but is not a superuser; Bucardo needs one (it sets session_replication_role)"),
                    Some(format!("ALTER ROLE {qrole} SUPERUSER;")),
                ));
            }
            if !login {
                out.push(Finding::fail(
                    group,
                    "bucardo role",
                    format!("role {role} exists but cannot log in"),
                    Some(format!("ALTER ROLE {qrole} LOGIN;")),
                ));
            }
            if let Some(pw) = &s.bucardo.password {
                let as_bucardo = spec.with_user(role, Some(pw.clone()));
                if let Err(e) = as_bucardo.connect(side).await {
                    out.push(Finding::fail(
                        group,
                        "bucardo role",
                        format!("role {role} exists but BUCARDOPASS does not log in as it: {}", e.one_line()),
                        Some(format!(
                            "set BUCARDOPASS to {role}'s password, or as a superuser: ALTER ROLE {qrole} PASSWORD '<the BUCARDOPASS value>';"
                        )),
                    ));
                }
            }
            if out.is_empty() {
                out.push(Finding::pass(
                    group,
                    "bucardo role",
                    format!("role {role} exists, is a superuser and BUCARDOPASS logs in"),
                ));
            }
            out
        }
    }
}

/// Transactions that would hold up `CREATE TRIGGER` (it waits for every transaction holding a
/// lock on the table) and prepared transactions, which hold their locks until resolved.
async fn long_transactions(c: &Client, older_than: Duration) -> Vec<Finding> {
    let secs = older_than.as_secs_f64();
    let rows = c
        .query(
            "SELECT pid, coalesce(usename, ''), extract(epoch FROM now() - xact_start)::float8,
                    coalesce(state, ''), left(coalesce(query, ''), 200)
               FROM pg_stat_activity
              WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid()
                AND backend_type = 'client backend' AND datname = current_database()
                AND now() - xact_start > make_interval(secs => $1)
              ORDER BY xact_start",
            &[&secs],
        )
        .await;
    let prepared = c
        .query(
            "SELECT gid, owner::text, extract(epoch FROM now() - prepared)::float8
               FROM pg_prepared_xacts
              WHERE database = current_database() AND now() - prepared > make_interval(secs => $1)",
            &[&secs],
        )
        .await;
    let (rows, prepared) = match (rows, prepared) {
        (Ok(r), Ok(p)) => (r, p),
        (Err(e), _) | (_, Err(e)) => {
            return vec![Finding::warn(
                HERE,
                "long transactions",
                format!(
                    "could not read pg_stat_activity: {}",
                    crate::engine::error::pg_message(&e)
                ),
                None,
            )]
        }
    };
    let mut out = Vec::new();
    for r in &rows {
        let (pid, user, age, state, query): (i32, String, f64, String, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        out.push(Finding::warn(
            HERE,
            "long transactions",
            format!(
                "pid {pid} ({user}, {state}) has had a transaction open for {}: installing Bucardo's triggers waits for it. Query: {}",
                human_age(age),
                redact(&query.replace('\n', " "))
            ),
            Some(format!("wait for it to end, or: SELECT pg_terminate_backend({pid});")),
        ));
    }
    for r in &prepared {
        let (gid, owner, age): (String, String, f64) = (r.get(0), r.get(1), r.get(2));
        out.push(Finding::warn(
            HERE,
            "long transactions",
            format!(
                "prepared transaction {gid:?} ({owner}) is {} old and keeps its locks until resolved",
                human_age(age)
            ),
            Some(format!(
                "COMMIT PREPARED {q};  -- or: ROLLBACK PREPARED {q};",
                q = quote_literal(&gid)
            )),
        ));
    }
    if out.is_empty() {
        out.push(Finding::pass(
            HERE,
            "long transactions",
            format!("no transaction open longer than {}", human_age(secs)),
        ));
    }
    out
}

fn human_age(secs: f64) -> String {
    let s = secs.round() as i64;
    match s {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{:.1} h", s as f64 / 3600.0),
    }
}

#[derive(Default)]
struct ThereOut {
    findings: Vec<Finding>,
    version: Option<i32>,
    /// A session on THERE's database, when it exists.
    db: Option<Client>,
    clock: Option<ClockReading>,
}

async fn there_checks(s: &Settings, opts: &Options) -> ThereOut {
    let mut o = ThereOut::default();
    let admin_spec = s.there.with_db("postgres");
    let admin = match open(&admin_spec, Side::There).await {
        Ok(c) => c,
        Err(e) => {
            o.findings.push(connect_failure(THERE, &e));
            return o;
        }
    };
    o.findings.push(Finding::pass(
        THERE,
        "connect",
        format!("{} answers", admin_spec.display_uri()),
    ));
    let info = match catalog::server_info(&admin, Side::There).await {
        Ok(i) => i,
        Err(e) => {
            o.findings.push(sql_failure(THERE, "version", &e));
            return o;
        }
    };
    o.findings
        .push(version_finding(THERE, &info.version, info.version_num));
    o.version = Some(info.version_num);
    o.clock = read_clock(&admin, opts.local_clock).await;
    let user = &s.there.user;
    let db = &s.there.dbname;
    let facts = admin
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1),
                    (SELECT rolcreatedb FROM pg_roles WHERE rolname = current_user),
                    coalesce((SELECT has_database_privilege(oid, 'CREATE') FROM pg_database WHERE datname = $1), false)",
            &[db],
        )
        .await;
    // GRANT SET ON PARAMETER (and the function that checks it) came with PostgreSQL 15.
    let set_srr = if info.version_num >= 150000 {
        admin
            .query_one(
                "SELECT has_parameter_privilege('session_replication_role', 'SET')",
                &[],
            )
            .await
            .map(|r| Some(r.get::<_, bool>(0)))
    } else {
        Ok(None)
    };
    let facts = facts.and_then(|r| set_srr.map(|p| (r, p)));
    let (exists, createdb, create_on_db, set_srr): (bool, bool, bool, Option<bool>) = match facts {
        Ok((r, p)) => (r.get(0), r.get(1), r.get(2), p),
        Err(e) => {
            let e = EngineError::sql(Side::There, "reading THERE's database and privileges", &e);
            o.findings.push(sql_failure(THERE, "database", &e));
            return o;
        }
    };
    let mut missing: Vec<(String, String)> = Vec::new();
    if exists {
        match open(&s.there, Side::There).await {
            Ok(c) => {
                o.findings.push(Finding::pass(
                    THERE,
                    "database",
                    format!("database {db} exists"),
                ));
                o.db = Some(c);
            }
            Err(e) => o.findings.push(connect_failure(THERE, &e)),
        }
        if !info.is_superuser && !create_on_db {
            missing.push((
                format!("CREATE on database {db} (the schema copy creates schemas)"),
                format!(
                    "GRANT CREATE ON DATABASE {} TO {};",
                    quote_ident(db),
                    quote_ident(user)
                ),
            ));
        }
    } else if info.is_superuser || createdb {
        o.findings.push(Finding::pass(
            THERE,
            "database",
            format!("database {db} does not exist yet: the plan creates it"),
        ));
    } else {
        o.findings.push(Finding::fail(
            THERE,
            "database",
            format!("database {db} does not exist and {user} may not create databases"),
            Some(format!(
                "ALTER ROLE {u} CREATEDB;  -- or, as a superuser: CREATE DATABASE {d} OWNER {u};",
                u = quote_ident(user),
                d = quote_ident(db)
            )),
        ));
    }
    if info.is_superuser {
        o.findings.push(Finding::pass(
            THERE,
            "privileges",
            format!("{user} is a superuser"),
        ));
    } else {
        match set_srr {
            Some(true) => {}
            Some(false) => missing.push((
                "SET on parameter session_replication_role (the data copy runs as a replica so that Bucardo's triggers stay quiet)".into(),
                format!("GRANT SET ON PARAMETER session_replication_role TO {};", quote_ident(user)),
            )),
            None => missing.push((
                "session_replication_role, which before PostgreSQL 15 only a superuser may set".into(),
                format!("ALTER ROLE {} SUPERUSER;", quote_ident(user)),
            )),
        }
        match role_exists(&admin, Side::There, &s.bucardo.user).await {
            Ok(None) => missing.push((
                format!(
                    "creating the superuser role {} (needs superuser)",
                    s.bucardo.user
                ),
                format!("ALTER ROLE {} SUPERUSER;", quote_ident(user)),
            )),
            Ok(Some(_)) => {}
            Err(e) => o.findings.push(sql_failure(THERE, "privileges", &e)),
        }
        o.findings.extend(privilege_finding(THERE, user, missing));
    }
    let login_spec = if exists { s.there.clone() } else { admin_spec };
    o.findings
        .extend(bucardo_role(s, &admin, THERE, Side::There, &login_spec).await);
    o
}

/// The chosen tables on THERE: all absent (the schema is copied), or all present, empty and with
/// HERE's columns (the schema copy is skipped).
async fn there_tables(c: &Client, chosen: &[TableInfo]) -> Vec<Finding> {
    if chosen.is_empty() {
        return vec![];
    }
    let names: Vec<TableName> = chosen.iter().map(|t| t.name.clone()).collect();
    let existing = match catalog::list_tables(c, Side::There, Some(&names)).await {
        Ok(e) => e,
        Err(e) => return vec![sql_failure(THERE, "tables", &e)],
    };
    let mut out = Vec::new();
    if existing.is_empty() {
        match catalog::list_tables(c, Side::There, None).await {
            Ok(others) if !others.is_empty() => {
                let list: Vec<String> =
                    others.iter().take(10).map(|t| t.name.to_string()).collect();
                out.push(Finding::warn(
                    THERE,
                    "tables",
                    format!(
                        "THERE already has {} other table(s) ({}{}): the schema copy restores HERE's whole schema in one transaction and stops at the first object that exists",
                        others.len(),
                        list.join(", "),
                        if others.len() > 10 { ", ..." } else { "" }
                    ),
                    None,
                ));
            }
            Ok(_) => out.push(Finding::pass(
                THERE,
                "tables",
                "none of the chosen tables exists on THERE yet: the schema is copied",
            )),
            Err(e) => out.push(sql_failure(THERE, "tables", &e)),
        }
        return out;
    }
    if existing.len() < chosen.len() {
        let present: Vec<String> = existing.iter().map(|t| t.name.to_string()).collect();
        let absent: Vec<String> = chosen
            .iter()
            .filter(|t| !existing.iter().any(|e| e.name == t.name))
            .map(|t| t.name.to_string())
            .collect();
        out.push(Finding::fail(
            THERE,
            "tables",
            format!(
                "THERE has {} of the {} chosen tables ({}) but not {}: the schema is copied only when none exists, or skipped when all do",
                existing.len(),
                chosen.len(),
                present.join(", "),
                absent.join(", ")
            ),
            Some(format!(
                "on THERE: DROP TABLE {};  -- or create the others there by hand",
                existing.iter().map(|t| t.name.sql()).collect::<Vec<_>>().join(", ")
            )),
        ));
    }
    let mut mismatched = 0;
    for t in &existing {
        let Some(h) = chosen.iter().find(|c| c.name == t.name) else {
            continue;
        };
        let shape = |x: &TableInfo| -> Vec<String> {
            x.columns
                .iter()
                .map(|c| {
                    let g = if c.generated { " generated" } else { "" };
                    format!("{} {}{g}", quote_ident(&c.name), c.type_name)
                })
                .collect()
        };
        let (hs, ts) = (shape(h), shape(t));
        if hs != ts {
            mismatched += 1;
            out.push(Finding::fail(
                THERE,
                "columns",
                format!(
                    "{} differs between the sides: HERE ({}), THERE ({})",
                    t.name,
                    hs.join(", "),
                    ts.join(", ")
                ),
                Some(format!(
                    "on THERE: DROP TABLE {};  -- and the other chosen tables, so that the schema is copied again; or ALTER it to match HERE",
                    t.name.sql()
                )),
            ));
        }
    }
    let nonempty = match nonempty_tables(c, &existing).await {
        Ok(n) => n,
        Err(e) => {
            out.push(sql_failure(THERE, "empty", &e));
            return out;
        }
    };
    for t in &nonempty {
        out.push(Finding::fail(
            THERE,
            "empty",
            format!("{t} already holds rows on THERE; the bootstrap only fills empty tables"),
            Some(format!("on THERE: TRUNCATE {};", t.sql())),
        ));
    }
    if existing.len() == chosen.len() && mismatched == 0 && nonempty.is_empty() {
        out.push(Finding::pass(
            THERE,
            "tables",
            format!(
                "all {} chosen tables exist on THERE, empty, with HERE's columns: the schema copy is skipped",
                chosen.len()
            ),
        ));
    }
    out
}

/// The tables among `tables` that hold at least one row, a few hundred per query.
async fn nonempty_tables(c: &Client, tables: &[TableInfo]) -> Result<Vec<TableName>, EngineError> {
    let mut out = Vec::new();
    for chunk in tables.chunks(200) {
        let sql = chunk
            .iter()
            .enumerate()
            .map(|(i, t)| {
                format!(
                    "SELECT {i} WHERE EXISTS (SELECT 1 FROM ONLY {})",
                    t.name.sql()
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        for r in c.query(sql.as_str(), &[]).await.map_err(|e| {
            EngineError::sql(Side::There, "looking for rows in the chosen tables", &e)
        })? {
            let i: i32 = r.get(0);
            out.push(chunk[i as usize].name.clone());
        }
    }
    Ok(out)
}

/// The Bucardo CLI, its control database (installed or installable), the names the bootstrap
/// will create, the daemon and its directories.
async fn bucardo_checks(s: &Settings, opts: &Options) -> Vec<Finding> {
    let mut out = Vec::new();
    let cli_version = bucardo_cli(s, &mut out).await;
    out.extend(directory_finding(
        BUCARDO,
        "PID directory",
        &s.bucardo.piddir,
        "--bucardo-piddir",
    ));
    out.extend(directory_finding(
        BUCARDO,
        "log directory",
        &s.bucardo.logdir,
        "--bucardo-logdir",
    ));
    let Some(password) = s.bucardo.password.clone() else {
        out.push(Finding::fail(
            BUCARDO,
            "password",
            format!("no password for Bucardo's role {}", s.bucardo.user),
            Some(
                "export BUCARDOPASS=... (or add a ~/.pgpass line for the control database)".into(),
            ),
        ));
        return out;
    };
    let control = s
        .bucardo
        .control
        .with_user(&s.bucardo.control.user, Some(password));
    let cli = BucardoCli::from_settings(s);
    let command = |cmd: &BucardoCmd| command_line(&cli, cmd);
    let installed = match open(&control, Side::Control).await {
        Ok(c) => match installed_version(&c).await {
            Ok(Some(v)) => {
                out.push(Finding::pass(
                    BUCARDO,
                    "control database",
                    format!("Bucardo {v} is installed in {}", control.display_uri()),
                ));
                if let Some(cv) = &cli_version {
                    if cv != &v {
                        out.push(Finding::warn(
                            BUCARDO,
                            "control database",
                            format!("the CLI is version {cv} but the control database holds version {v}"),
                            Some("bucardo upgrade".into()),
                        ));
                    }
                }
                out.extend(taken_names(s, &c, &cli).await);
                true
            }
            Ok(None) => {
                out.extend(installable(s, &control).await);
                false
            }
            Err(e) => {
                out.push(sql_failure(BUCARDO, "control database", &e));
                false
            }
        },
        Err(e) => {
            out.extend(control_unreachable(s, &control, &e).await);
            false
        }
    };
    let start = command(&BucardoCmd::Start {
        reason: "bucardo-bootstrap".into(),
    });
    let state = if installed {
        match daemon::probe(&control, &s.bucardo.piddir, opts.daemon_ping).await {
            Ok(d) => d,
            Err(e) => {
                out.push(sql_failure(BUCARDO, "daemon", &e));
                return out;
            }
        }
    } else {
        Daemon::NotRunning
    };
    match state {
        d @ Daemon::Answering { .. } => out.push(Finding::pass(BUCARDO, "daemon", format!("the Bucardo daemon is {}", d.describe()))),
        d if d.coming_up() => out.push(Finding::warn(
            BUCARDO,
            "daemon",
            format!("the Bucardo daemon is {}: the run waits for it to answer", d.describe()),
            None,
        )),
        d if control.is_local() => out.push(Finding::warn(
            BUCARDO,
            "daemon",
            format!("the Bucardo daemon is {}: the plan starts it from this machine", d.describe()),
            Some(start),
        )),
        _ => out.push(Finding::fail(
            BUCARDO,
            "daemon",
            format!(
                "the Bucardo daemon is not running and its control database is on {}: this tool starts it only on the same machine",
                control.host
            ),
            Some(format!("on {}: {start}", control.host)),
        )),
    }
    out
}

/// A Bucardo command as one line for a shell.
fn command_line(cli: &BucardoCli, cmd: &BucardoCmd) -> String {
    cli.argv(cmd)
        .iter()
        .map(|w| shell_word(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Finds the CLI and its version (`bucardo --version` prints `bucardo version 5.6.0`).
async fn bucardo_cli(s: &Settings, out: &mut Vec<Finding>) -> Option<String> {
    let program = s.bucardo.program.display().to_string();
    let found = locate(&s.bucardo.program);
    let inv = Invocation::new([program.clone(), "--version".into()]);
    match process::run(&inv, Duration::from_secs(15)).await {
        Ok(o) if o.status == 0 => {
            let v = o
                .stdout
                .split_whitespace()
                .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
                .map(str::to_string);
            let where_ = found.map(|p| p.display().to_string()).unwrap_or(program);
            match &v {
                Some(v) if v.starts_with("5.") => out.push(Finding::pass(
                    BUCARDO,
                    "CLI",
                    format!("bucardo {v} ({where_})"),
                )),
                _ => out.push(Finding::warn(
                    BUCARDO,
                    "CLI",
                    format!(
                        "{where_} reports {:?}; this tool is tested with Bucardo 5.6.0",
                        o.stdout.trim()
                    ),
                    None,
                )),
            }
            v
        }
        Ok(o) => {
            out.push(Finding::fail(
                BUCARDO,
                "CLI",
                format!(
                    "`{program} --version` failed (exit {}): {}",
                    o.status,
                    o.tail()
                ),
                Some("apt-get install bucardo".into()),
            ));
            None
        }
        Err(e) => {
            out.push(Finding::fail(
                BUCARDO,
                "CLI",
                format!(
                    "the bucardo program {program:?} was not found: {}",
                    e.one_line()
                ),
                Some("apt-get install bucardo  # or set BUCARDO_BIN to its path".into()),
            ));
            None
        }
    }
}

fn locate(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.exists().then(|| program.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

async fn installed_version(c: &Client) -> Result<Option<String>, EngineError> {
    let ctx = |e: tokio_postgres::Error| {
        EngineError::sql(Side::Control, "looking for Bucardo's schema", &e)
    };
    let installed: bool = c
        .query_one("SELECT to_regclass('bucardo.sync') IS NOT NULL", &[])
        .await
        .map_err(ctx)?
        .get(0);
    if !installed {
        return Ok(None);
    }
    let v = c
        .query_opt(
            "SELECT setting FROM bucardo.bucardo_config WHERE name = 'bucardo_version'",
            &[],
        )
        .await
        .map_err(ctx)?;
    Ok(Some(v.map(|r| r.get(0)).unwrap_or_else(|| "?".into())))
}

/// Bucardo names the bootstrap would create that exist already.
async fn taken_names(s: &Settings, c: &Client, cli: &BucardoCli) -> Vec<Finding> {
    let taken = match bucardo::existing_names(c, s).await {
        Ok(t) => t,
        Err(e) => return vec![sql_failure(BUCARDO, "names", &e)],
    };
    if taken.is_empty() {
        let n = &s.names;
        return vec![Finding::pass(
            BUCARDO,
            "names",
            format!(
                "databases {} and {}, relgroup {}, dbgroup {} and sync {} are free",
                n.here_db, n.there_db, n.relgroup, n.dbgroup, n.sync
            ),
        )];
    }
    taken
        .into_iter()
        .map(|(kind, name)| {
            let (cmd, other) = match kind {
                "sync" => (BucardoCmd::RemoveSync { name: name.clone() }, "--sync NAME"),
                "relgroup" => (BucardoCmd::RemoveRelgroup { name: name.clone() }, "--relgroup NAME"),
                "dbgroup" => (BucardoCmd::RemoveDbgroup { name: name.clone() }, "--dbgroup NAME"),
                _ => (
                    BucardoCmd::RemoveDb { name: name.clone() },
                    "the HERE or THERE environment variable (the name is $HERE$PGDATABASE or $THERE$PGDATABASE)",
                ),
            };
            Finding::fail(
                BUCARDO,
                "names",
                format!(
                    "Bucardo already has a {kind} named {name}: pick another with {other}, or remove it (after whatever uses it)"
                ),
                Some(command_line(cli, &cmd)),
            )
        })
        .collect()
}

/// The control database is not installed: can the plan install it there?
async fn installable(s: &Settings, control: &ConnSpec) -> Vec<Finding> {
    let admin = match open(&s.bucardo.admin, Side::Control).await {
        Ok(c) => c,
        Err(e) => {
            return vec![Finding::fail(
                BUCARDO,
                "control database",
                format!(
                    "Bucardo is not installed in {} and the superuser connection that would install it fails: {}",
                    control.display_uri(),
                    e.one_line()
                ),
                None,
            )]
        }
    };
    let r = admin
        .query_one(
            "SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
                    EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'plperlu')
                    OR EXISTS (SELECT 1 FROM pg_language WHERE lanname = 'plperlu'),
                    current_setting('server_version_num')::int / 10000",
            &[],
        )
        .await;
    let (superuser, plperlu, major): (bool, bool, i32) = match r {
        Ok(r) => (r.get(0), r.get(1), r.get(2)),
        Err(e) => {
            return vec![sql_failure(
                BUCARDO,
                "control database",
                &EngineError::sql(Side::Control, "checking PL/PerlU", &e),
            )]
        }
    };
    let admin_user = &s.bucardo.admin.user;
    let mut out = Vec::new();
    if !superuser {
        out.push(Finding::fail(
            BUCARDO,
            "control database",
            format!("Bucardo is not installed and {admin_user}, who would install it, is not a superuser"),
            Some(format!("ALTER ROLE {} SUPERUSER;", quote_ident(admin_user))),
        ));
    }
    if !plperlu {
        out.push(Finding::fail(
            BUCARDO,
            "control database",
            format!(
                "Bucardo is not installed and PL/PerlU, which it needs, is not available on {}",
                s.bucardo.admin.host
            ),
            Some(format!(
                "on {}: apt-get install postgresql-plperl-{major}",
                s.bucardo.admin.host
            )),
        ));
    }
    if out.is_empty() {
        out.push(Finding::pass(
            BUCARDO,
            "control database",
            format!(
                "Bucardo is not installed in {} yet; it can be (superuser {admin_user}, PL/PerlU available): the plan installs it",
                control.display_uri()
            ),
        ));
    }
    out
}

/// Logging in to the control database failed: a missing role or database is what a fresh
/// install looks like; anything else is a real failure.
async fn control_unreachable(s: &Settings, control: &ConnSpec, e: &EngineError) -> Vec<Finding> {
    let msg = e.one_line();
    let lower = msg.to_ascii_lowercase();
    let fresh = lower.contains("does not exist")
        || (lower.contains("password authentication failed")
            && role_missing(s).await == Some(true));
    if fresh {
        return installable(s, control).await;
    }
    let fix = match e {
        EngineError::Connect { hint, .. } => Some(hint.clone()),
        _ => None,
    };
    vec![Finding::fail(BUCARDO, "control database", msg, fix)]
}

async fn role_missing(s: &Settings) -> Option<bool> {
    let admin = open(&s.bucardo.admin, Side::Control).await.ok()?;
    role_exists(&admin, Side::Control, &s.bucardo.control.user)
        .await
        .ok()
        .map(|r| r.is_none())
}

/// A directory that exists, is safe for private files ([`unsafe_dir_reason`]) and writable, or can
/// be created under one that is. `flag` is the option that chooses it.
fn directory_finding(group: &str, what: &str, dir: &Path, flag: &str) -> Vec<Finding> {
    let d = shell_word(&dir.display().to_string());
    let unsafe_reason = std::fs::metadata(dir)
        .ok()
        .filter(|m| m.is_dir())
        .and_then(|m| unsafe_dir_reason(&m));
    let finding = if dir.exists() {
        if !dir.is_dir() {
            Finding::fail(
                group,
                what,
                format!("{} is not a directory", dir.display()),
                None,
            )
        } else if let Some(why) = unsafe_reason {
            Finding::fail(
                group,
                what,
                format!(
                    "{}: {why}; give {flag} a directory of your own",
                    dir.display()
                ),
                None,
            )
        } else if writable(dir) {
            Finding::pass(group, what, format!("{} is writable", dir.display()))
        } else {
            Finding::fail(
                group,
                what,
                format!("{} is not writable by this user", dir.display()),
                Some(format!("sudo chown \"$(id -un)\" {d}")),
            )
        }
    } else {
        match dir.ancestors().skip(1).find(|a| a.exists()) {
            Some(a) if !a.is_dir() => Finding::fail(
                group,
                what,
                format!(
                    "{} cannot be created: {} is a file",
                    dir.display(),
                    a.display()
                ),
                None,
            ),
            Some(a) if writable(a) => Finding::pass(
                group,
                what,
                format!(
                    "{} does not exist yet; it can be created under {}",
                    dir.display(),
                    a.display()
                ),
            ),
            Some(a) => Finding::fail(
                group,
                what,
                format!(
                    "{} does not exist and {} is not writable by this user",
                    dir.display(),
                    a.display()
                ),
                Some(format!("sudo install -d -m 700 -o \"$(id -un)\" {d}")),
            ),
            None => Finding::fail(
                group,
                what,
                format!("{} cannot be created", dir.display()),
                None,
            ),
        }
    };
    vec![finding]
}

fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access(2) reads a valid NUL-terminated path and has no other preconditions.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// A PostgreSQL client tool found on this machine.
#[derive(Clone, Debug)]
struct Tool {
    name: &'static str,
    path: String,
    result: Result<(String, (u32, u32)), String>,
    /// Needed for this run (pg_dumpall only when roles are copied).
    needed: bool,
}

struct LocalOut {
    findings: Vec<Finding>,
    tools: Vec<Tool>,
}

async fn local_checks(s: &Settings) -> LocalOut {
    let mut tools = Vec::new();
    for (name, needed) in [
        ("pg_dump", true),
        ("psql", true),
        ("pg_dumpall", s.copy_roles),
    ] {
        let path = pg_tool(name);
        let inv = Invocation::new([path.clone(), "--version".into()]);
        let result = match process::run(&inv, Duration::from_secs(10)).await {
            Ok(o) if o.status == 0 => parse_tool_version(&o.stdout)
                .ok_or_else(|| format!("cannot read a version in {:?}", o.stdout.trim())),
            Ok(o) => Err(format!("`{path} --version` failed: {}", o.tail())),
            Err(e) => Err(e.one_line()),
        };
        tools.push(Tool {
            name,
            path,
            result,
            needed,
        });
    }
    let findings = directory_finding(JUMP_BOX, "state directory", &s.state_dir(), "--log-dir");
    LocalOut { findings, tools }
}

/// `pg_dump (PostgreSQL) 15.20 (Debian ...)` → ("15.20", (15, 0)); 9.6.24 → (9, 6).
pub fn parse_tool_version(out: &str) -> Option<(String, (u32, u32))> {
    let v = out
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?
        .trim_end_matches(|c: char| !c.is_ascii_digit());
    let mut parts = v.split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u32>()
            .ok()
    });
    let major = parts.next()??;
    let major = if major >= 10 {
        (major, 0)
    } else {
        (major, parts.next().flatten().unwrap_or(0))
    };
    Some((v.to_string(), major))
}

/// `server_version_num` → major version, comparable with [`parse_tool_version`]'s.
pub fn server_major(num: i32) -> (u32, u32) {
    let num = num.max(0) as u32;
    if num >= 100000 {
        (num / 10000, 0)
    } else {
        (num / 10000, (num / 100) % 100)
    }
}

fn show_major((a, b): (u32, u32)) -> String {
    if a >= 10 {
        a.to_string()
    } else {
        format!("{a}.{b}")
    }
}

fn tool_findings(tools: &[Tool], here: Option<i32>, there: Option<i32>) -> Vec<Finding> {
    let servers: Vec<(&str, (u32, u32))> = [("HERE", here), ("THERE", there)]
        .into_iter()
        .filter_map(|(n, v)| Some((n, server_major(v?))))
        .collect();
    let newest = servers.iter().map(|(_, v)| *v).max();
    let install = |v: Option<(u32, u32)>| {
        format!(
            "apt-get install postgresql-client-{}  # or set PG_BINDIR to a newer bin directory",
            v.map(show_major).unwrap_or_else(|| "15".into())
        )
    };
    let mut out = Vec::new();
    for t in tools {
        let bad = |msg: String, fix: String| {
            if t.needed {
                Finding::fail(JUMP_BOX, t.name, msg, Some(fix))
            } else {
                Finding::warn(
                    JUMP_BOX,
                    t.name,
                    format!("{msg} (needed only with --copy-roles)"),
                    Some(fix),
                )
            }
        };
        match &t.result {
            Err(e) => out.push(bad(
                format!("{} is not usable: {e}", t.name),
                install(newest),
            )),
            Ok((v, major)) => {
                let older: Vec<String> = servers
                    .iter()
                    .filter(|(_, s)| s > major)
                    .map(|(n, s)| format!("{n} runs {}", show_major(*s)))
                    .collect();
                if older.is_empty() {
                    let against: Vec<String> = servers
                        .iter()
                        .map(|(n, s)| format!("{n} {}", show_major(*s)))
                        .collect();
                    out.push(Finding::pass(
                        JUMP_BOX,
                        t.name,
                        format!(
                            "{} {v} ({}) is at least as new as the servers{}",
                            t.name,
                            t.path,
                            if against.is_empty() {
                                String::new()
                            } else {
                                format!(" ({})", against.join(", "))
                            }
                        ),
                    ));
                } else {
                    out.push(bad(
                        format!(
                            "{} {v} ({}) is older than the server: {}",
                            t.name,
                            t.path,
                            older.join(", ")
                        ),
                        install(newest),
                    ));
                }
            }
        }
    }
    out
}

/// Front ends spawn preflight on the runtime: its future must be `Send`.
#[allow(dead_code)]
fn run_is_send(s: &Settings) {
    fn send<T: Send>(_: T) {}
    send(run(s, None));
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

    #[test]
    fn render_groups_and_indents_fixes() {
        let f = vec![
            Finding::pass(THERE, "connect", "ok"),
            Finding::fail(HERE, "privileges", "missing", Some("a;\nb;".into())),
        ];
        let text = render(&f);
        assert!(
            text.starts_with(
                "HERE\n  FAIL  privileges: missing\n        fix: a;\n             b;\nTHERE\n"
            ),
            "{text}"
        );
        assert!(text.ends_with("1 fail, 0 warn, 1 pass\n"));
    }
}
