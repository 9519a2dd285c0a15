//! The way back, the same for every front end: look at what the bootstrap created, show it, and
//! on confirmation remove it, then forget the journals of the plans it undid.

use crate::engine::cleanup::{self, CleanupPlan};
use crate::engine::conn::Side;
use crate::engine::error::EngineError;
use crate::engine::exec;
use crate::engine::settings::{Settings, TableSelection};

/// What cleanup would do for these settings (`--tables all` resolves against HERE's catalog).
pub async fn plan(s: &Settings, drop_data: bool) -> Result<CleanupPlan, EngineError> {
    let tables = match &s.tables {
        TableSelection::List(l) => l.clone(),
        TableSelection::All => {
            let here = s.here.connect(Side::Here).await?;
            exec::resolve_tables(s, &here)
                .await?
                .0
                .into_iter()
                .map(|t| t.name)
                .collect()
        }
    };
    cleanup::plan(s, drop_data, &tables).await
}

/// Carries the plan out, then removes the journals in the state directory: a journal is
/// obsolete once the objects it recorded are gone.
pub async fn execute(s: &Settings, plan: &CleanupPlan) -> Result<(), EngineError> {
    plan.execute(s).await?;
    for entry in std::fs::read_dir(s.state_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry.file_name().to_string_lossy().starts_with("journal-") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// The last line after a cleanup.
pub const DONE: &str = "cleanup done: no Bucardo trigger or delta table is left on HERE or THERE";
