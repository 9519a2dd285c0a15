//! The session layer, between the engine and the front ends (the wizard, plain prompts,
//! headless `run --yes`). It owns what every front end would otherwise build for itself:
//! - [`existing`]: what a bootstrap already made (its tables, what the tool created for it),
//!   for `status`, `verify` and `cleanup`;
//! - [`launch`]: finding a bootstrap an earlier run started, preparing the plan, choosing the
//!   checks that still matter, and starting the runner (journal, executor, channels, Ctrl-C);
//! - [`state`]: the fold of a run's events into steps, copy progress, verdicts and log;
//! - [`text`]: every sentence about a run, worded once;
//! - [`undo`]: the way back (cleanup), shown first, then carried out.
//!
//! Like the engine, it imports no UI crate: the terminal, widget and prompt crates belong to the
//! front ends.

pub mod existing;
pub mod launch;
pub mod state;
pub mod text;
pub mod undo;
