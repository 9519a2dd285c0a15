//! The engine: everything that talks to PostgreSQL, Bucardo and the PostgreSQL client tools.
//!
//! No UI crate is imported below this module (the terminal, widget and prompt crates belong to
//! the front ends). Front ends build [`settings::Settings`], ask [`plan::Plan::build`] for the
//! steps, and drive [`runner::run`], which reports [`event::RunEvent`]s.

pub mod bucardo;
pub mod catalog;
pub mod cleanup;
pub mod conn;
pub mod copy;
pub mod coverage;
pub mod daemon;
pub mod error;
pub mod event;
pub mod exec;
pub mod files;
pub mod generated;
pub mod giveway;
pub mod governor;
pub mod ident;
pub mod journal;
pub mod plan;
pub mod preflight;
pub mod process;
pub mod runner;
pub mod secret;
pub mod settings;
pub mod status;
pub mod verify;

pub use error::EngineError;
