//! The full-screen ratatui wizard over the engine (screens, app state, event loop).

use crate::cli::Draft;

/// Opens the wizard (or plain prompts) pre-filled from `draft`; returns the exit status.
pub async fn start(draft: Draft, plain: bool) -> anyhow::Result<u8> {
    let _ = (draft, plain);
    anyhow::bail!("the wizard is not built yet: use `run --yes`")
}
