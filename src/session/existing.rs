//! What a bootstrap already made, for the commands that look at it afterwards (`status`,
//! `verify`, `cleanup`): its tables when `--tables` is left out, read from the sync's relgroup in
//! Bucardo's control database or else from the newest journal of these servers and names; and
//! what the journals record as created by this tool, for `cleanup --all`.

use crate::engine::bucardo;
use crate::engine::conn::Side;
use crate::engine::error::EngineError;
use crate::engine::ident::TableName;
use crate::engine::journal::{Created, Journal, JournalData};
use crate::engine::plan;
use crate::engine::settings::{Settings, TableSelection};
use std::path::PathBuf;

/// The tables of the bootstrap these settings name (servers, Bucardo names): the sync's
/// relgroup (or the relgroup itself) in the control database; when the control database cannot
/// be reached or knows neither, the newest journal of these servers and names. An error says
/// what to give when neither knows them.
pub async fn tables_of_bootstrap(s: &Settings) -> Result<Vec<TableName>, EngineError> {
    let n = &s.names;
    let control = s
        .bucardo
        .control
        .with_user(&s.bucardo.control.user, s.bucardo.password.clone());
    let from_control = match control.connect(Side::Control).await {
        Ok(c) => match bucardo::relgroup_tables(&c, &n.sync, &n.relgroup).await {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!("the control database does not list the tables: {e}");
                Vec::new()
            }
        },
        Err(e) => {
            tracing::debug!("the control database is out of reach: {e}");
            Vec::new()
        }
    };
    if !from_control.is_empty() {
        tracing::info!(
            "{} tables from Bucardo's control database (the relgroup of sync {}, else relgroup {})",
            from_control.len(),
            n.sync,
            n.relgroup
        );
        return Ok(from_control);
    }
    if let Some((path, data)) = newest_journal(s) {
        tracing::info!(
            "{} tables from the journal {}",
            data.tables.len(),
            path.display()
        );
        return Ok(data.tables);
    }
    Err(EngineError::Config(format!(
        "no tables chosen, and neither Bucardo's control database (sync {}, relgroup {}) nor a journal in {} knows this bootstrap's tables: give --tables schema.table,... or --tables all, or the --sync, --relgroup and connection flags the bootstrap was run with",
        n.sync,
        n.relgroup,
        s.state_dir().display()
    )))
}

/// `s` with the bootstrap's own tables ([`tables_of_bootstrap`]) when it chose none: an empty
/// list is what `status`, `verify` and `cleanup` get without `--tables`.
pub async fn with_bootstrap_tables(s: &Settings) -> Result<Settings, EngineError> {
    let mut s = s.clone();
    if matches!(&s.tables, TableSelection::List(l) if l.is_empty()) {
        s.tables = TableSelection::List(tables_of_bootstrap(&s).await?);
    }
    Ok(s)
}

/// Every journal in the state directory, with its path.
fn journals(s: &Settings) -> Vec<(PathBuf, JournalData)> {
    std::fs::read_dir(s.state_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.starts_with("journal-") && name.ends_with(".json")
        })
        .filter_map(|e| {
            let data = JournalData::read(&e.path()).ok()?;
            Some((e.path(), data))
        })
        .collect()
}

/// The newest journal that records tables and belongs to these servers and names (its
/// fingerprint, computed again with its own tables, matches), finished or not.
fn newest_journal(s: &Settings) -> Option<(PathBuf, JournalData)> {
    journals(s)
        .into_iter()
        .filter(|(_, d)| {
            !d.tables.is_empty() && plan::fingerprint_names(s, &d.tables) == d.fingerprint
        })
        .max_by_key(|(_, d)| d.updated)
}

/// What every journal in the state directory records as created by this tool.
pub fn created(s: &Settings) -> Created {
    let mut all = Created::default();
    for (_, d) in journals(s) {
        all.merge(&d.created);
    }
    all
}

/// After a cleanup: every journal forgets its progress, since the objects it recorded are gone.
/// What a journal records as created outside the bootstrap is kept for a later
/// `cleanup --all`, unless `forget_created` (that cleanup removed it all).
pub fn forget_journals(s: &Settings, forget_created: bool) -> Result<(), EngineError> {
    for entry in std::fs::read_dir(s.state_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        if !entry.file_name().to_string_lossy().starts_with("journal-") {
            continue;
        }
        let data = JournalData::read(&entry.path())
            .ok()
            .filter(|d| !forget_created && !d.created.is_empty());
        match data {
            Some(d) => Journal::open(&s.state_dir(), &d.fingerprint)?.discard()?,
            None => match std::fs::remove_file(entry.path()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            },
        }
    }
    Ok(())
}
