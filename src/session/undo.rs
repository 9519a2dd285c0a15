//! The way back, the same for every front end: look at what the bootstrap created, show it, and
//! on confirmation remove it, then forget the journals of the plans it undid.

use crate::engine::cleanup::{self, CleanupPlan};
use crate::engine::conn::Side;
use crate::engine::error::EngineError;
use crate::engine::exec;
use crate::engine::ident::TableName;
use crate::engine::settings::{Settings, TableSelection};
use crate::session::existing;

/// What cleanup would do for these settings. The tables matter only with `drop_data`: `--tables
/// all` resolves against HERE's catalog, and no table chosen means the bootstrap's own
/// ([`existing::tables_of_bootstrap`]). `all` also removes what the journals say this tool
/// created (daemon, control database, roles) and the daemon's passfile.
pub async fn plan(s: &Settings, drop_data: bool, all: bool) -> Result<CleanupPlan, EngineError> {
    let tables: Vec<TableName> = if !drop_data {
        Vec::new()
    } else {
        match existing::with_bootstrap_tables(s).await?.tables {
            TableSelection::List(l) => l,
            TableSelection::All => {
                let here = s.here.connect(Side::Here).await?;
                exec::select_tables(s, &here)
                    .await?
                    .chosen
                    .into_iter()
                    .map(|t| t.name)
                    .collect()
            }
        }
    };
    let created = all.then(|| existing::created(s));
    cleanup::plan(s, drop_data, &tables, created.as_ref()).await
}

/// Carries the plan out, then makes the journals in the state directory forget their progress:
/// a journal is obsolete once the objects it recorded are gone.
pub async fn execute(s: &Settings, plan: &CleanupPlan) -> Result<(), EngineError> {
    plan.execute(s).await?;
    existing::forget_journals(s, plan.forget_created)
}

/// The last line after a cleanup.
pub const DONE: &str = "cleanup done: no Bucardo trigger or delta table is left on HERE or THERE";

/// The last line after `cleanup --all` that removed everything the tool created.
pub const DONE_ALL: &str =
    "and no daemon, control database, role or passfile that this tool created is left";
