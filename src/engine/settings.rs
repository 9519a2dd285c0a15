//! What a bootstrap is asked to do: the three connections, Bucardo's names and directories, the
//! table selection and the options. Front ends fill it (flags, environment, wizard fields, a plan
//! file); the engine only reads it. Secrets are skipped when it is serialised to a plan file.

use crate::engine::conn::ConnSpec;
use crate::engine::ident::TableName;
use crate::engine::secret::Secret;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Bucardo's object names. Defaults follow the seed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Names {
    pub here_db: String,
    pub there_db: String,
    pub relgroup: String,
    pub dbgroup: String,
    pub sync: String,
}

/// Which of Bucardo's names an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    HereDb,
    ThereDb,
    Relgroup,
    Dbgroup,
    Sync,
}

impl Names {
    /// `$HERE$PGDATABASE` and `$THERE$PGDATABASE`, falling back to `here<db>`/`there<db>`.
    pub fn seed_defaults(here: Option<&str>, there: Option<&str>, dbname: &str) -> Names {
        let clean: String = dbname
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Names {
            here_db: format!("{}{}", here.unwrap_or("here"), clean),
            there_db: format!("{}{}", there.unwrap_or("there"), clean),
            relgroup: "myrels".into(),
            dbgroup: "mydbs".into(),
            sync: "mysync".into(),
        }
    }

    /// Bucardo's CHECK constraints: `^[a-zA-Z]\w*$`; sync names are not reserved words.
    /// Checks each name against Bucardo's rules; the error says which name is wrong.
    pub fn validate(&self) -> Result<(), (NameKind, String)> {
        for (kind, what, n) in [
            (
                NameKind::HereDb,
                "Bucardo database name for HERE",
                &self.here_db,
            ),
            (
                NameKind::ThereDb,
                "Bucardo database name for THERE",
                &self.there_db,
            ),
            (NameKind::Relgroup, "relgroup", &self.relgroup),
            (NameKind::Dbgroup, "dbgroup", &self.dbgroup),
            (NameKind::Sync, "sync", &self.sync),
        ] {
            let ok = n.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && n.len() <= 48;
            if !ok {
                return Err((kind, format!(
                    "{what} {n:?} is not a name Bucardo accepts: a letter, then letters, digits or '_' (at most 48)"
                )));
            }
        }
        if self.here_db == self.there_db {
            return Err((
                NameKind::ThereDb,
                "HERE and THERE need different Bucardo database names".into(),
            ));
        }
        if ["pushdelta", "fullcopy", "swap", "sync"].contains(&self.sync.as_str()) {
            return Err((
                NameKind::Sync,
                format!(
                    "{:?} is reserved by Bucardo; choose another sync name",
                    self.sync
                ),
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TableSelection {
    /// Every table Bucardo can replicate; the others are listed with the reason.
    All,
    List(Vec<TableName>),
}

/// How sequences that feed chosen tables are set up for two masters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SequenceMode {
    /// `INCREMENT BY 2`: odd values on HERE, even on THERE, above the current maximum.
    #[default]
    Interleave,
    /// Leave sequences as copied (colliding keys become conflicts: rows are lost).
    Keep,
}

/// Where Bucardo lives and how this tool reaches it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucardoSettings {
    /// The control database, as the role Bucardo runs as (default `bucardo@.../bucardo`).
    pub control: ConnSpec,
    /// A superuser on the control database's server, for `bucardo install` when needed.
    pub admin: ConnSpec,
    /// The role Bucardo uses on HERE and THERE (BUCARDOUSER, default `bucardo`).
    pub user: String,
    /// Its password (BUCARDOPASS); also the control database's password for that role.
    #[serde(skip)]
    pub password: Option<Secret>,
    pub piddir: PathBuf,
    pub logdir: PathBuf,
    /// The `bucardo` program.
    pub program: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub here: ConnSpec,
    pub there: ConnSpec,
    pub bucardo: BucardoSettings,
    pub names: Names,
    pub tables: TableSelection,
    /// Tables left out knowingly (`--leave-out`).
    #[serde(default)]
    pub leave_out: Vec<TableName>,
    pub copy_roles: bool,
    pub sequences: SequenceMode,
    /// Parallel copy workers.
    pub jobs: usize,
    /// Where this tool's log files and state live.
    pub log_dir: PathBuf,
    /// How long to wait for the interim deltas to replay after the kick.
    pub kick_timeout_s: u64,
    /// Make tables with stored generated columns replicable (`--convert-generated`): see
    /// [`crate::engine::generated`].
    #[serde(default)]
    pub convert_generated: bool,
    /// How much HERE may suffer from the copy and verification (`--max-load`, `--critical-load`).
    #[serde(default)]
    pub governor: crate::engine::governor::Limits,
}

impl Settings {
    pub fn kick_timeout(&self) -> Duration {
        Duration::from_secs(self.kick_timeout_s)
    }

    /// The directory for files that must outlive a run: the daemon's passfile and logs.
    pub fn state_dir(&self) -> PathBuf {
        self.log_dir.clone()
    }
}

/// `$XDG_STATE_HOME/bucardo-bootstrap`, else `~/.local/state/bucardo-bootstrap`.
pub fn default_state_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("bucardo-bootstrap");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".local/state/bucardo-bootstrap")
}

/// A sensible number of copy workers for this machine: one per core, at least 2, at most 8.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_default_names() {
        let n = Names::seed_defaults(Some("here"), Some("there"), "widgets");
        assert_eq!(n.here_db, "herewidgets");
        assert_eq!(n.there_db, "therewidgets");
        assert!(n.validate().is_ok());
        let n = Names::seed_defaults(None, None, "my-db");
        assert_eq!(n.here_db, "heremy_db");
    }

    #[test]
    fn bucardo_name_rules() {
        let mut n = Names::seed_defaults(None, None, "w");
        n.sync = "sync".into();
        assert!(n.validate().is_err());
        n.sync = "1abc".into();
        assert!(n.validate().is_err());
        n.sync = "ok_name".into();
        n.dbgroup = "bad name".into();
        assert_eq!(n.validate().unwrap_err().0, NameKind::Dbgroup);
    }
}
