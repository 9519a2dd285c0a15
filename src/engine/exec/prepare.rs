//! Preparing a run: resolve the table selection, probe what already exists, build the plan and
//! open its journal.

use super::*;
use crate::engine::coverage::Catalog;

/// The settings' selection resolved against HERE's catalog, with what it would refuse: for the
/// commands that only read what a bootstrap made (`verify`, a resumed run's lookup), where
/// preflight's refusals do not apply.
pub async fn select_tables(
    s: &Settings,
    here: &tokio_postgres::Client,
) -> Result<coverage::Selected, EngineError> {
    Ok(select_in(s, &Catalog::read(here, Side::Here).await?))
}

/// [`select_tables`] in a catalog already read.
pub fn select_in(s: &Settings, catalog: &Catalog) -> coverage::Selected {
    catalog.select(s.convert_generated, &s.tables, &s.leave_out)
}

/// The chosen tables with their catalog facts, and the account of everything else on HERE.
/// Refuses what preflight fails: names not found, foreign keys to tables left out unasked,
/// chosen tables Bucardo cannot replicate.
pub async fn resolve_tables(
    s: &Settings,
    here: &tokio_postgres::Client,
) -> Result<(Vec<TableInfo>, Coverage), EngineError> {
    resolve_in(s, Catalog::read(here, Side::Here).await?)
}

/// [`resolve_tables`] in a catalog already read (its last use: the tables are moved out).
pub fn resolve_in(
    s: &Settings,
    catalog: Catalog,
) -> Result<(Vec<TableInfo>, Coverage), EngineError> {
    let sel = catalog.into_selected(s.convert_generated, &s.tables, &s.leave_out);
    let mut problems: Vec<String> = sel.refusals.iter().map(|r| r.message.clone()).collect();
    for t in &sel.chosen {
        if let Err(why) = t.eligibility() {
            problems.push(format!("{}: {why}", t.name));
        }
    }
    if !problems.is_empty() {
        return Err(EngineError::Refused(problems.join("; ")));
    }
    if sel.chosen.is_empty() {
        return Err(EngineError::Refused(
            "HERE has no table that Bucardo can replicate".into(),
        ));
    }
    Ok((sel.chosen, sel.coverage))
}

/// Probes the servers for what the plan needs to know, and refuses when THERE holds rows in a
/// chosen table. Changes nothing anywhere.
pub async fn probe(
    s: &Settings,
    tables: &[TableInfo],
    resuming: bool,
) -> Result<Facts, EngineError> {
    probe_knowing(s, tables, resuming, None).await
}

/// [`probe`], with what preflight found of THERE's copies of `tables` just before, if it did.
pub async fn probe_knowing(
    s: &Settings,
    tables: &[TableInfo],
    resuming: bool,
    there: Option<&catalog::Presence>,
) -> Result<Facts, EngineError> {
    let mut f = Facts::default();
    let here = s.here.connect(Side::Here).await?;
    let r = here
        .query_one(
            "SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database WHERE datname = current_database()",
            &[],
        )
        .await
        .map_err(|e| EngineError::sql(Side::Here, "reading the database's encoding", &e))?;
    f.here_db_encoding = r.get(0);
    f.here_db_collate = r.get(1);
    f.here_db_ctype = r.get(2);
    let here_slots = bucardo::lock_slots(&here, Side::Here).await?;
    f.here_relations = here
        .query_one(
            "SELECT count(*) + 2 * count(*) FILTER (WHERE c.reltoastrelid <> 0)
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'bucardo', 'bucardo_bootstrap')
                AND n.nspname NOT LIKE 'pg\\_%'",
            &[],
        )
        .await
        .map_err(|e| EngineError::sql(Side::Here, "counting HERE's relations", &e))?
        .get::<_, i64>(0)
        .max(0) as u64;
    let role_missing = |c: tokio_postgres::Client, side: Side, role: String| async move {
        c.query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
            .await
            .map(|r| r.is_none())
            .map_err(|e| EngineError::sql(side, "looking for Bucardo's role", &e))
    };
    f.bucardo_role_missing_here = role_missing(here, Side::Here, s.bucardo.user.clone()).await?;
    let there_admin = s.there.with_db("postgres");
    let ta = there_admin.connect(Side::There).await?;
    f.lock_slots = Some(here_slots.min(bucardo::lock_slots(&ta, Side::There).await?));
    f.there_db_exists = ta
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[&s.there.dbname],
        )
        .await
        .map_err(|e| EngineError::sql(Side::There, "looking for the database", &e))?
        .is_some();
    f.bucardo_role_missing_there = role_missing(ta, Side::There, s.bucardo.user.clone()).await?;
    if f.there_db_exists {
        let catalog::Presence { existing, nonempty } = match there {
            Some(p) => p.clone(),
            None => {
                let there = s.there.connect(Side::There).await?;
                let names: Vec<TableName> = tables.iter().map(|t| t.name.clone()).collect();
                catalog::presence(&there, Side::There, &names, !resuming).await?
            }
        };
        let nonempty = if resuming { vec![] } else { nonempty };
        if !nonempty.is_empty() {
            let nonempty: Vec<String> = nonempty.iter().map(ToString::to_string).collect();
            return Err(EngineError::Refused(format!(
                "THERE already holds rows in {}; the bootstrap only fills empty tables. Empty them (TRUNCATE) or choose another THERE database",
                nonempty.join(", ")
            )));
        }
        if !existing.is_empty() && existing.len() < tables.len() {
            return Err(EngineError::Refused(format!(
                "THERE has {} of the {} chosen tables already; drop them or create the rest by hand",
                existing.len(),
                tables.len()
            )));
        }
        f.there_schema_present = existing.len() == tables.len();
    }
    let admin = s.bucardo.admin.connect(Side::Control).await?;
    f.bucardo_role_missing_control =
        role_missing(admin, Side::Control, s.bucardo.control.user.clone()).await?;
    let control = s
        .bucardo
        .control
        .with_user(&s.bucardo.control.user, s.bucardo.password.clone());
    f.control_installed = if f.bucardo_role_missing_control {
        false
    } else {
        bucardo::control_installed(&control).await?
    };
    // A daemon that is coming up needs no start step: the steps that need it wait for it.
    f.daemon_running = f.control_installed && {
        let d = daemon::probe(&control, &s.bucardo.piddir, PING_WAIT).await?;
        d.answers() || d.coming_up()
    };
    if f.control_installed {
        let ctl = control.connect(Side::Control).await?;
        let taken = bucardo::existing_names(&ctl, s).await?;
        if !taken.is_empty() && !resuming {
            let list: Vec<String> = taken.iter().map(|(k, n)| format!("{k} {n}")).collect();
            return Err(EngineError::Refused(format!(
                "Bucardo already has {}; pick other names (--sync, --relgroup, --dbgroup, HERE/THERE) or remove them (`bucardo-bootstrap cleanup`)",
                list.join(", ")
            )));
        }
    }
    Ok(f)
}

/// Whether an earlier run of this plan left records in its journal (a rerun resumes).
pub async fn resuming(s: &Settings) -> Result<bool, EngineError> {
    let here = s.here.connect(Side::Here).await?;
    resuming_in(s, &Catalog::read(&here, Side::Here).await?)
}

/// [`resuming`] with HERE's catalog already read.
pub fn resuming_in(s: &Settings, catalog: &Catalog) -> Result<bool, EngineError> {
    // A selection preflight will refuse resumes nothing; preflight then says why.
    let tables = catalog.chosen_names(s.convert_generated, &s.tables, &s.leave_out);
    Ok(!Journal::open(&s.state_dir(), &plan::fingerprint_names(s, &tables))?.is_empty())
}

/// Prepares everything for `run`/`plan`: resolves tables, opens the journal (discarding it with
/// `restart`), probes, builds the plan and marks what an earlier run finished.
pub async fn prepare(s: &Settings, restart: bool) -> Result<(Plan, Journal), EngineError> {
    let here = s.here.connect(Side::Here).await?;
    prepare_in(s, Catalog::read(&here, Side::Here).await?, None, restart).await
}

/// [`prepare`] with HERE's catalog already read (its last use), and what preflight found of
/// THERE's copies of the chosen tables ([`probe_knowing`]).
pub async fn prepare_in(
    s: &Settings,
    catalog: Catalog,
    there: Option<&catalog::Presence>,
    restart: bool,
) -> Result<(Plan, Journal), EngineError> {
    let (tables, coverage) = resolve_in(s, catalog)?;
    let fingerprint = plan::fingerprint(s, &tables);
    let mut journal = Journal::open(&s.state_dir(), &fingerprint)?;
    if restart {
        journal.discard()?;
    }
    let resuming = !journal.is_empty();
    let facts = probe_knowing(s, &tables, resuming, there).await?;
    let mut plan = Plan::build(s, tables, coverage, &facts);
    plan.mark_done(&journal.data.steps_done);
    journal.data.tables = plan.tables.iter().map(|t| t.name.clone()).collect();
    Ok((plan, journal))
}

pub fn state_paths(s: &Settings) -> (PathBuf, PathBuf) {
    (s.state_dir(), s.state_dir().join("bucardo.pgpass"))
}
