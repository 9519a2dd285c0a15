//! HERE's checks: version, the table selection and what Bucardo cannot replicate in it,
//! privileges, Bucardo's role, and long transactions that would block the trigger installation.

use super::*;
use crate::engine::catalog::Problem;

#[derive(Default)]
pub(super) struct HereOut {
    pub(super) findings: Vec<Finding>,
    pub(super) table_findings: Vec<Finding>,
    pub(super) version: Option<i32>,
    pub(super) chosen: Option<Vec<TableInfo>>,
    pub(super) clock: Option<ClockReading>,
}

pub(super) async fn here_checks(
    s: &Settings,
    tables: Option<&[TableInfo]>,
    catalog: Option<&Catalog>,
    opts: &Options,
) -> HereOut {
    let mut o = HereOut::default();
    // Without the catalog, a second session shares out reading it (catalog::list_tables_on).
    let (c, second) = tokio::join!(open(&s.here, Side::Here), async {
        match catalog {
            None => open(&s.here, Side::Here).await.ok(),
            Some(_) => None,
        }
    });
    let c = match c {
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

    // The wizard's picked tables are a list like any other: the catalog decides the rest.
    let selection = match tables {
        Some(t) => TableSelection::List(t.iter().map(|t| t.name.clone()).collect()),
        None => s.tables.clone(),
    };
    let chosen = match resolve(s, &selection, &c, second.as_ref(), catalog).await {
        Ok((chosen, findings)) => {
            o.table_findings.extend(findings);
            Some(chosen)
        }
        Err(e) => {
            o.table_findings.push(sql_failure(TABLES, "catalog", &e));
            None
        }
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
    o.findings
        .extend(super::lock_table::pg_dump_locks(&c).await);
    if let Some(chosen) = &chosen {
        o.findings
            .extend(super::lock_table::sync_locks(&c, HERE, Side::Here, chosen.len()).await);
    }
    o.chosen = chosen;
    o
}

pub(super) fn version_finding(group: &str, version: &str, num: i32) -> Finding {
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

/// The chosen tables of `selection`, and findings about the selection itself: names not found,
/// what is left out and why, materialized views, foreign keys to tables left out, and the line
/// that sums it up. HERE's catalog is read on `c` (and `second`) unless the caller read it
/// already.
pub(super) async fn resolve(
    s: &Settings,
    selection: &TableSelection,
    c: &Client,
    second: Option<&Client>,
    catalog: Option<&Catalog>,
) -> Result<(Vec<TableInfo>, Vec<Finding>), EngineError> {
    let read;
    let catalog = match catalog {
        Some(cat) => cat,
        None => {
            read = Catalog::read_on(c, second.unwrap_or(c), Side::Here).await?;
            &read
        }
    };
    let mut sel = catalog.select(s.convert_generated, selection, &s.leave_out);
    let findings = selection_findings(&sel);
    Ok((std::mem::take(&mut sel.chosen), findings))
}

pub(super) fn selection_findings(sel: &coverage::Selected) -> Vec<Finding> {
    let mut findings = Vec::new();
    for r in &sel.refusals {
        findings.push(Finding::fail(
            TABLES,
            r.check,
            r.message.clone(),
            r.fix.clone(),
        ));
    }
    for fk in &sel.accepted_fks {
        findings.push(Finding::warn(TABLES, "foreign keys", fk.clone(), None));
    }
    for e in sel.coverage.left_out() {
        let coverage::Fate::LeftOut {
            reason,
            fix,
            acknowledged,
        } = &e.fate
        else {
            continue;
        };
        if reason == coverage::NOT_CHOSEN || reason == coverage::UNUSED_SEQUENCE {
            continue;
        }
        let message = format!("{} is left out: {reason}", e.name);
        findings.push(if *acknowledged {
            Finding::pass(TABLES, "left out", message)
        } else {
            Finding::warn(TABLES, "left out", message, fix.clone())
        });
    }
    for e in sel.coverage.refreshed() {
        let coverage::Fate::Refreshed { reads_left_out } = &e.fate else {
            continue;
        };
        let mut message = format!(
            "{} is a materialized view: refreshed on THERE once the tables are copied; Bucardo does not replicate it",
            e.name
        );
        if reads_left_out.is_empty() {
            findings.push(Finding::pass(TABLES, "materialized view", message));
        } else {
            let names: Vec<String> = reads_left_out.iter().map(ToString::to_string).collect();
            message.push_str(&format!(
                "; it reads {} (left out), so THERE computes it without those rows",
                names.join(", ")
            ));
            findings.push(Finding::warn(TABLES, "materialized view", message, None));
        }
    }
    if sel.chosen.is_empty() && sel.refusals.is_empty() {
        findings.push(Finding::fail(
            TABLES,
            "selection",
            "HERE has no table that Bucardo can replicate",
            None,
        ));
    }
    for (reason, what) in [
        (coverage::NOT_CHOSEN, "table"),
        (coverage::UNUSED_SEQUENCE, "sequence"),
    ] {
        let names: Vec<&str> = sel
            .coverage
            .left_out()
            .filter(|e| matches!(&e.fate, coverage::Fate::LeftOut { reason: r, .. } if r == reason))
            .map(|e| e.name.as_str())
            .collect();
        if !names.is_empty() {
            findings.push(Finding::pass(
                TABLES,
                "left out",
                coverage::summed_up(what, &names, reason),
            ));
        }
    }
    findings.push(Finding::pass(TABLES, "coverage", sel.coverage.line()));
    findings
}

/// Blockers and cautions for every chosen table.
pub(super) fn table_findings(chosen: &[TableInfo]) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut eligible = 0;
    let mut cautions: Vec<(&str, Vec<(&TableName, Problem)>)> = Vec::new();
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
            match cautions.iter_mut().find(|(kind, _)| *kind == p.kind) {
                Some((_, tables)) => tables.push((&t.name, p)),
                None => cautions.push((p.kind, vec![(&t.name, p)])),
            }
        }
    }
    for (_, tables) in cautions {
        out.extend(caution_findings(tables));
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

/// How many tables with the same caution get a line each; past that they share one.
const CAUTIONS_SHOWN: usize = 5;

/// The warnings for one kind of caution: a line per table, or, past [`CAUTIONS_SHOWN`] tables,
/// the first table's line and the others' names in one, with every table's line in the log (a
/// schema of 10,000 tables with a trigger on every tenth printed 1,000 such lines).
fn caution_findings(tables: Vec<(&TableName, Problem)>) -> Vec<Finding> {
    if tables.len() <= CAUTIONS_SHOWN {
        return tables
            .into_iter()
            .map(|(name, p)| {
                Finding::warn(TABLES, "caution", format!("{name}: {}", p.reason), p.fix)
            })
            .collect();
    }
    for (name, p) in &tables {
        tracing::info!(table = %name, "caution: {}", p.reason);
    }
    let n = tables.len();
    let others: Vec<String> = tables[1..]
        .iter()
        .take(CAUTIONS_SHOWN)
        .map(|(name, _)| name.to_string())
        .collect();
    let rest = if n - 1 > others.len() { ", …" } else { "" };
    let (first, p) = &tables[0];
    vec![Finding::warn(
        TABLES,
        "caution",
        format!(
            "{first}: {}; the same ({}) for {} more tables: {}{rest} (the log names each one)",
            p.reason,
            p.kind,
            n - 1,
            others.join(", ")
        ),
        p.fix
            .as_ref()
            .map(|f| format!("{f} (and likewise on each table the log names)")),
    )]
}

/// On HERE the tool dumps the schema, copies every chosen table, creates Bucardo's role where
/// missing and re-numbers the sequences feeding the chosen tables.
pub(super) async fn here_privileges(
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

pub(super) fn privilege_finding(
    group: &str,
    user: &str,
    missing: Vec<(String, String)>,
) -> Vec<Finding> {
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

pub(super) async fn role_exists(
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
pub(super) async fn bucardo_role(
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
            format!(
                "role {role} does not exist yet: the plan creates it (superuser{})",
                if s.bucardo.password.is_some() {
                    ", password BUCARDOPASS"
                } else {
                    ", no password"
                }
            ),
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
pub(super) async fn long_transactions(c: &Client, older_than: Duration) -> Vec<Finding> {
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

pub(super) fn human_age(secs: f64) -> String {
    let s = secs.round() as i64;
    match s {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{:.1} h", s as f64 / 3600.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_trigger(i: usize) -> TableInfo {
        TableInfo {
            name: TableName::new("public", format!("t{i}")),
            user_triggers: vec![format!("t{i}_audit")],
            ..TableInfo::default()
        }
    }

    fn cautions(f: &[Finding]) -> Vec<&Finding> {
        f.iter().filter(|f| f.check == "caution").collect()
    }

    #[test]
    fn many_tables_with_the_same_caution_share_one_line() {
        let few: Vec<TableInfo> = (1..=CAUTIONS_SHOWN).map(with_trigger).collect();
        let f = table_findings(&few);
        assert_eq!(cautions(&f).len(), CAUTIONS_SHOWN, "{f:?}");

        let many: Vec<TableInfo> = (1..=1000).map(with_trigger).collect();
        let f = table_findings(&many);
        let c = cautions(&f);
        assert_eq!(c.len(), 1, "{c:?}");
        let m = &c[0].message;
        assert!(
            m.starts_with("public.t1: trigger(s) t1_audit do not fire"),
            "{m}"
        );
        assert!(
            m.contains("the same (triggers) for 999 more tables: public.t2, public.t3, public.t4, public.t5, public.t6, …"),
            "{m}"
        );
        assert_eq!(c[0].severity, Severity::Warn);
    }
}
