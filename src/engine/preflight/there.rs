//! THERE's checks: reachable, a version that takes HERE's dump, and tables that are missing,
//! different or already hold rows.

use super::*;

#[derive(Default)]
pub(super) struct ThereOut {
    pub(super) findings: Vec<Finding>,
    pub(super) version: Option<i32>,
    /// A session on THERE's database, when it exists.
    pub(super) db: Option<Client>,
    /// Every table of THERE's database with its columns, when asked for and the database
    /// exists: listed while HERE is being checked, matched to the chosen tables afterwards
    /// ([`there_tables`]).
    pub(super) shapes: Option<Result<Vec<Shape>, EngineError>>,
    pub(super) clock: Option<ClockReading>,
}

/// With `tables`, also lists THERE's tables for [`there_tables`].
pub(super) async fn there_checks(s: &Settings, opts: &Options, tables: bool) -> ThereOut {
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
    if let (true, Some(c)) = (tables, &o.db) {
        o.shapes = Some(catalog::list_shapes(c, Side::There, None).await);
    }
    o
}

/// The chosen tables on THERE: all absent (the schema is copied), or all present, empty and with
/// HERE's columns (the schema copy is skipped). `shapes` are all of THERE's tables. Returns the
/// findings, and which chosen tables THERE has and which of those hold rows, when it could tell.
pub(super) async fn there_tables(
    c: &Client,
    chosen: &[TableInfo],
    shapes: &Result<Vec<Shape>, EngineError>,
) -> (Vec<Finding>, Option<Presence>) {
    if chosen.is_empty() {
        return (vec![], Some(Presence::default()));
    }
    let shapes = match shapes {
        Ok(s) => s,
        Err(e) => return (vec![sql_failure(THERE, "tables", e)], None),
    };
    let here: HashMap<&TableName, &TableInfo> = chosen.iter().map(|t| (&t.name, t)).collect();
    let existing: Vec<&Shape> = shapes
        .iter()
        .filter(|t| here.contains_key(&t.name))
        .collect();
    let mut out = Vec::new();
    if existing.is_empty() {
        let others = shapes;
        if others.is_empty() {
            out.push(Finding::pass(
                THERE,
                "tables",
                "none of the chosen tables exists on THERE yet: the schema is copied",
            ));
        } else {
            let list: Vec<String> = others.iter().take(10).map(|t| t.name.to_string()).collect();
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
        return (out, Some(Presence::default()));
    }
    if existing.len() < chosen.len() {
        let there: HashSet<&TableName> = existing.iter().map(|t| &t.name).collect();
        let present: Vec<String> = existing.iter().map(|t| t.name.to_string()).collect();
        let absent: Vec<String> = chosen
            .iter()
            .filter(|t| !there.contains(&t.name))
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
    // A converted column (--convert-generated) counts as the generated one it was.
    let shape = |columns: &[Column], converted: &dyn Fn(&str) -> bool| -> Vec<String> {
        columns
            .iter()
            .map(|c| {
                let g = if c.generated || converted(&c.name) {
                    " generated"
                } else {
                    ""
                };
                format!("{} {}{g}", quote_ident(&c.name), c.type_name)
            })
            .collect()
    };
    let mut mismatched = 0;
    for t in &existing {
        let h = here[&t.name];
        let hs = shape(&h.columns, &|c| h.generation.iter().any(|g| g.column == c));
        let ts = shape(&t.columns, &|c| t.converted.iter().any(|x| x == c));
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
    let names: Vec<TableName> = existing.iter().map(|t| t.name.clone()).collect();
    let candidates: Vec<&TableName> = existing
        .iter()
        .filter(|t| t.pages)
        .map(|t| &t.name)
        .collect();
    let nonempty = match catalog::holding_rows(c, Side::There, &candidates).await {
        Ok(n) => n,
        Err(e) => {
            out.push(sql_failure(THERE, "empty", &e));
            return (out, None);
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
    let presence = Presence {
        existing: names,
        nonempty,
    };
    (out, Some(presence))
}
