//! bucardo-bootstrap: sets up Bucardo master/master replication between a live PostgreSQL
//! database (HERE) and a new, empty one (THERE), with no downtime and no lost row.
//!
//! The crate is one engine with several faces, in three layers:
//! - [`engine`] owns everything that talks to PostgreSQL, Bucardo and the PostgreSQL client tools.
//!   It never imports a UI crate.
//! - [`session`] sits on the engine and owns what every front end shares: preparing, resuming
//!   and starting a run, the state its events fold into, and the words for it. No UI crate either.
//! - [`tui`] is the full-screen ratatui wizard, [`plain`] the inquire-based prompts, and
//!   [`headless`] the `run --yes` printer. All three drive runs through [`session`].
//! - [`sandbox`] starts throwaway local clusters for the demo and the tests.
//! - [`docs`] generates the man pages and shell completions from [`cli`]'s definitions.

pub mod cli;
pub mod copy_cmd;
pub mod demo;
pub mod docs;
pub mod engine;
pub mod headless;
pub mod logging;
pub mod plain;
pub mod planfile;
pub mod sandbox;
pub mod session;
pub mod tui;
