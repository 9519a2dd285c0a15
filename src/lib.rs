//! bucardo-bootstrap: sets up Bucardo master/master replication between a live PostgreSQL
//! database (HERE) and a new, empty one (THERE), with no downtime and no lost row.
//!
//! The crate is one engine with several faces:
//! - [`engine`] owns everything that talks to PostgreSQL, Bucardo and the PostgreSQL client tools.
//!   It never imports a UI crate.
//! - [`tui`] is the full-screen ratatui wizard, [`plain`] the inquire-based prompts, and the
//!   headless `run --yes` lives in [`cli`]. All three drive the same [`engine::runner`].
//! - [`sandbox`] starts throwaway local clusters for the demo and the tests.

pub mod cli;
pub mod demo;
pub mod engine;
pub mod headless;
pub mod logging;
pub mod plain;
pub mod planfile;
pub mod sandbox;
pub mod tui;
