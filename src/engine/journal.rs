//! The journal: what a bootstrap has finished, so that running the same command again resumes
//! instead of starting over. One JSON file per plan fingerprint in the state directory, mode
//! 0600, rewritten atomically (write to a temporary file, then rename). A record is written only
//! after its work committed on THERE: a step, a table, or one key range of a split table (whose
//! cut points are recorded before its first range starts).
//!
//! Tables and key ranges, which the copy finishes by the thousand, are appended as a line each
//! to a `.progress` file beside it ([`Progress`]), several per `fdatasync`; the next full
//! rewrite folds them in. Rewriting the whole JSON for each of 10,000 tables wrote gigabytes.
//!
//! Why resuming the copy with a new snapshot is safe: Bucardo's triggers were logging every
//! change on HERE before the first snapshot was taken, and they keep logging while the tool is
//! down. Tables copied under an older snapshot miss only changes that are in the delta tables;
//! a table copied again under a newer snapshot is simply closer to the present. When the sync
//! is enabled, Bucardo replays every delta by primary key from HERE's current row, so every table
//! converges to HERE no matter which snapshot filled it.

use crate::engine::copy::parts::{RangesDone, Split};
use crate::engine::error::EngineError;
use crate::engine::ident::TableName;
use crate::engine::plan::StepKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalData {
    pub fingerprint: String,
    /// The plan's tables, so that a front end that has not chosen tables yet (the wizard at its
    /// start) can tell that this journal belongs to the servers and names it was given.
    #[serde(default)]
    pub tables: Vec<TableName>,
    /// Steps finished, by kind (step numbers change when a rerun needs fewer steps).
    pub steps_done: Vec<StepKind>,
    /// Tables whose copy committed on THERE.
    pub tables_done: BTreeSet<TableName>,
    /// Tables copied in key ranges and not finished: how they were cut, and the ranges that
    /// committed on THERE.
    #[serde(default)]
    pub ranges: Vec<RangesDone>,
    /// Unix seconds of the last update.
    pub updated: u64,
    /// What the run created outside the bootstrap's own objects, for `cleanup --all`. It
    /// outlives `--restart` and a plain `cleanup`, which forget only the progress.
    #[serde(default)]
    pub created: Created,
}

/// What a run created that a plain `cleanup` leaves in place, because other bootstraps may share
/// it: the daemon it started, the control database it installed, the Bucardo roles it created.
/// `cleanup --all` removes exactly these, and nothing the tool found already there.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    /// The PID directory of a Bucardo daemon this tool started (`bucardo start`).
    #[serde(default)]
    pub daemon: Option<PathBuf>,
    /// The control database this tool installed (`bucardo install`).
    #[serde(default)]
    pub control_db: Option<ServerObject>,
    /// Bucardo's role on each server where this tool created it.
    #[serde(default)]
    pub roles: Vec<ServerObject>,
}

/// A database or a role, and the server it lives on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServerObject {
    pub host: String,
    pub port: u16,
    pub name: String,
}

impl ServerObject {
    pub fn new(host: &str, port: u16, name: &str) -> ServerObject {
        ServerObject {
            host: host.to_string(),
            port,
            name: name.to_string(),
        }
    }
}

impl std::fmt::Display for ServerObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {}:{}", self.name, self.host, self.port)
    }
}

impl Created {
    pub fn is_empty(&self) -> bool {
        self.daemon.is_none() && self.control_db.is_none() && self.roles.is_empty()
    }

    /// Adds what `other` records (several journals may share a daemon or a server).
    pub fn merge(&mut self, other: &Created) {
        if self.daemon.is_none() {
            self.daemon.clone_from(&other.daemon);
        }
        if self.control_db.is_none() {
            self.control_db.clone_from(&other.control_db);
        }
        for r in &other.roles {
            if !self.roles.contains(r) {
                self.roles.push(r.clone());
            }
        }
    }
}

/// A record the copy appends to the `.progress` file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Progress {
    /// The table's copy committed on THERE.
    Table(TableName),
    /// Range `part` of a split table committed on THERE.
    Range(TableName, usize),
}

impl JournalData {
    /// The journal at `path` with the progress appended beside it.
    pub fn read(path: &Path) -> Result<JournalData, EngineError> {
        let text = std::fs::read_to_string(path)?;
        let mut data = serde_json::from_str::<JournalData>(&text).map_err(|e| {
            EngineError::Config(format!(
                "the journal {} is damaged ({e}); move it away or use --restart",
                path.display()
            ))
        })?;
        match std::fs::read_to_string(progress_path(path)) {
            // A line cut short by a crash is the last one, and its work is done again.
            Ok(lines) => {
                for p in lines
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Progress>(l).ok())
                {
                    data.apply(&p);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        Ok(data)
    }

    fn apply(&mut self, p: &Progress) -> bool {
        match p {
            Progress::Table(table) => {
                self.tables_done.insert(table.clone());
                self.ranges.retain(|r| &r.table != table);
                true
            }
            Progress::Range(table, part) => {
                match self.ranges.iter_mut().find(|r| &r.table == table) {
                    Some(r) => {
                        r.done.insert(*part);
                        true
                    }
                    None => false,
                }
            }
        }
    }
}

fn progress_path(journal: &Path) -> PathBuf {
    journal.with_extension("progress")
}

/// The journal of one plan, bound to its file.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    pub data: JournalData,
    /// The `.progress` file, open for appending since the last full rewrite.
    progress: Option<std::fs::File>,
}

impl Journal {
    pub fn path_for(state_dir: &Path, fingerprint: &str) -> PathBuf {
        state_dir.join(format!("journal-{fingerprint}.json"))
    }

    /// Opens the journal of this plan, or an empty one (not written until something is done).
    pub fn open(state_dir: &Path, fingerprint: &str) -> Result<Journal, EngineError> {
        let path = Self::path_for(state_dir, fingerprint);
        let data = match JournalData::read(&path) {
            Ok(data) => data,
            Err(EngineError::Io(_)) if !path.exists() => JournalData {
                fingerprint: fingerprint.to_string(),
                ..Default::default()
            },
            Err(e) => return Err(e),
        };
        if data.fingerprint != fingerprint {
            return Err(EngineError::Config(format!(
                "the journal {} belongs to another plan",
                path.display()
            )));
        }
        Ok(Journal {
            path,
            data,
            progress: None,
        })
    }

    pub fn exists(&self) -> bool {
        self.path.exists()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_empty(&self) -> bool {
        self.data.steps_done.is_empty()
            && self.data.tables_done.is_empty()
            && self.data.ranges.is_empty()
    }

    pub fn step_done(&self, kind: StepKind) -> bool {
        self.data.steps_done.contains(&kind)
    }

    pub fn record_step(&mut self, kind: StepKind) -> Result<(), EngineError> {
        if !self.data.steps_done.contains(&kind) {
            self.data.steps_done.push(kind);
        }
        self.save()
    }

    pub fn record_table(&mut self, table: &TableName) -> Result<(), EngineError> {
        self.record_progress(&[Progress::Table(table.clone())])
    }

    /// Records how a table is cut, before any of its ranges starts. A rerun cuts it the same way.
    pub fn record_split(&mut self, table: &TableName, split: &Split) -> Result<(), EngineError> {
        match self.data.ranges.iter_mut().find(|r| &r.table == table) {
            Some(r) if &r.split == split => return Ok(()),
            Some(r) => {
                r.split = split.clone();
                r.done.clear();
            }
            None => self.data.ranges.push(RangesDone {
                table: table.clone(),
                split: split.clone(),
                done: BTreeSet::new(),
            }),
        }
        self.save()
    }

    /// Records that range `part` of a split table committed on THERE.
    pub fn record_range(&mut self, table: &TableName, part: usize) -> Result<(), EngineError> {
        self.record_progress(&[Progress::Range(table.clone(), part)])
    }

    /// Records tables and ranges that committed on THERE: appended to the `.progress` file, one
    /// `fdatasync` for all of them.
    pub fn record_progress(&mut self, items: &[Progress]) -> Result<(), EngineError> {
        use std::os::unix::fs::OpenOptionsExt;
        if items.is_empty() {
            return Ok(());
        }
        let mut lines = String::new();
        for p in items {
            if !self.data.apply(p) {
                if let Progress::Range(table, _) = p {
                    return Err(EngineError::Io(format!(
                        "the journal has no key ranges for {table}"
                    )));
                }
            }
            lines.push_str(
                &serde_json::to_string(p)
                    .map_err(|e| EngineError::Io(format!("writing the journal: {e}")))?,
            );
            lines.push('\n');
        }
        // The progress lines extend the JSON file: it must exist first.
        if !self.path.exists() {
            return self.save();
        }
        let f = match &mut self.progress {
            Some(f) => f,
            None => {
                let path = progress_path(&self.path);
                // A line an earlier run left torn must not swallow the first one of this run.
                if std::fs::read(&path).is_ok_and(|b| b.last().is_some_and(|c| *c != b'\n')) {
                    lines.insert(0, '\n');
                }
                self.progress.insert(
                    std::fs::OpenOptions::new()
                        .append(true)
                        .create(true)
                        .mode(0o600)
                        .open(path)?,
                )
            }
        };
        f.write_all(lines.as_bytes())?;
        f.sync_data()?;
        Ok(())
    }

    /// The partial tables among `tables`.
    pub fn ranges_for(&self, table: &TableName) -> Option<&RangesDone> {
        self.data.ranges.iter().find(|r| &r.table == table)
    }

    /// Records what the run created outside the bootstrap (see [`Created`]).
    pub fn record_created(&mut self, f: impl FnOnce(&mut Created)) -> Result<(), EngineError> {
        let before = self.data.created.clone();
        f(&mut self.data.created);
        if self.data.created == before {
            return Ok(());
        }
        self.save()
    }

    /// Forgets the progress (`--restart`, or a cleanup that undid the bootstrap) but keeps what
    /// the run created outside it, for a later `cleanup --all`.
    pub fn discard(&mut self) -> Result<(), EngineError> {
        self.data = JournalData {
            fingerprint: self.data.fingerprint.clone(),
            created: std::mem::take(&mut self.data.created),
            ..Default::default()
        };
        if !self.data.created.is_empty() {
            return self.save();
        }
        self.progress = None;
        for path in [progress_path(&self.path), self.path.clone()] {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn save(&mut self) -> Result<(), EngineError> {
        use std::os::unix::fs::OpenOptionsExt;
        self.data.updated = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        let text = serde_json::to_string_pretty(&self.data)
            .map_err(|e| EngineError::Io(format!("writing the journal: {e}")))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        // Everything appended is in the rewrite now.
        self.progress = None;
        match std::fs::remove_file(progress_path(&self.path)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn records_survive_reopen_and_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), "abc").unwrap();
        assert!(!j.exists() && j.is_empty());
        j.record_step(StepKind::AddSync).unwrap();
        j.record_table(&TableName::new("Sales", "Order Items"))
            .unwrap();
        let mode = std::fs::metadata(j.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let j2 = Journal::open(dir.path(), "abc").unwrap();
        assert!(j2.step_done(StepKind::AddSync));
        assert!(!j2.step_done(StepKind::CopyData));
        assert!(j2
            .data
            .tables_done
            .contains(&TableName::new("Sales", "Order Items")));
        let mut j3 = j2;
        j3.discard().unwrap();
        assert!(!j3.exists());
        assert!(Journal::open(dir.path(), "abc").unwrap().is_empty());
    }

    #[test]
    fn what_a_run_created_outlives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), "abc").unwrap();
        j.record_step(StepKind::StartDaemon).unwrap();
        let role = ServerObject::new("h", 5432, "bucardo");
        j.record_created(|c| c.roles.push(role.clone())).unwrap();
        j.record_created(|c| c.daemon = Some("/run/b".into()))
            .unwrap();
        j.discard().unwrap();
        let j = Journal::open(dir.path(), "abc").unwrap();
        assert!(j.is_empty(), "the progress is forgotten");
        assert_eq!(j.data.created.roles, vec![role]);
        assert_eq!(j.data.created.daemon.as_deref(), Some(Path::new("/run/b")));
        let mut other = Created::default();
        other.merge(&j.data.created);
        other.merge(&j.data.created);
        assert_eq!(other, j.data.created, "merging twice adds nothing");
    }

    #[test]
    fn key_ranges_are_recorded_until_the_table_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let t = TableName::new("public", "big");
        let split = Split {
            key: "id".into(),
            key_type: "bigint".into(),
            cuts: vec!["100".into(), "200".into()],
        };
        let mut j = Journal::open(dir.path(), "abc").unwrap();
        assert!(
            j.record_range(&t, 0).is_err(),
            "a range needs its split first"
        );
        j.record_split(&t, &split).unwrap();
        j.record_range(&t, 2).unwrap();
        j.record_split(&t, &split).unwrap();
        let j2 = Journal::open(dir.path(), "abc").unwrap();
        assert!(!j2.is_empty());
        let r = j2.ranges_for(&t).unwrap();
        assert_eq!(
            (&r.split, r.done.iter().copied().collect::<Vec<_>>()),
            (&split, vec![2])
        );
        let mut j3 = j2;
        j3.record_table(&t).unwrap();
        assert!(Journal::open(dir.path(), "abc")
            .unwrap()
            .ranges_for(&t)
            .is_none());
    }

    #[test]
    fn a_journal_from_before_key_ranges_still_opens() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            Journal::path_for(dir.path(), "x"),
            r#"{"fingerprint":"x","steps_done":["AddSync"],"tables_done":[],"updated":1}"#,
        )
        .unwrap();
        let j = Journal::open(dir.path(), "x").unwrap();
        assert!(j.step_done(StepKind::AddSync) && j.data.ranges.is_empty());
    }

    #[test]
    fn a_damaged_journal_is_an_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(Journal::path_for(dir.path(), "x"), "{not json").unwrap();
        let e = Journal::open(dir.path(), "x").unwrap_err().to_string();
        assert!(e.contains("--restart"), "{e}");
    }

    #[test]
    fn tables_are_appended_not_rewritten_and_fold_into_the_next_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let t = |i: usize| TableName::new("public", format!("t{i}"));
        let mut j = Journal::open(dir.path(), "p").unwrap();
        j.record_step(StepKind::AddSync).unwrap();
        let json = std::fs::read_to_string(j.path()).unwrap();
        j.record_progress(&(0..1000).map(|i| Progress::Table(t(i))).collect::<Vec<_>>())
            .unwrap();
        j.record_table(&t(1000)).unwrap();
        let progress = progress_path(j.path());
        assert_eq!(
            std::fs::read_to_string(j.path()).unwrap(),
            json,
            "the JSON is not rewritten per table"
        );
        let mode = std::fs::metadata(&progress).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A crash mid-line leaves a torn last line: that table counts as not copied.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&progress)
            .unwrap();
        f.write_all(b"{\"Table\":{\"sche").unwrap();
        let mut again = Journal::open(dir.path(), "p").unwrap();
        assert_eq!(again.data.tables_done.len(), 1001);
        assert!(again.step_done(StepKind::AddSync));
        // The next run's first line is not glued to the torn one.
        again.record_table(&t(1001)).unwrap();
        let again = Journal::open(dir.path(), "p").unwrap();
        assert_eq!(again.data.tables_done.len(), 1002);
        // A split table's ranges, then the table: its ranges are forgotten.
        let mut j = again;
        let split = Split {
            key: "id".into(),
            key_type: "integer".into(),
            cuts: vec!["100".into()],
        };
        j.record_split(&t(2000), &split).unwrap();
        assert!(!progress.exists(), "a full rewrite folds the progress in");
        j.record_range(&t(2000), 0).unwrap();
        assert!(JournalData::read(j.path()).unwrap().ranges[0]
            .done
            .contains(&0));
        j.record_table(&t(2000)).unwrap();
        let data = JournalData::read(j.path()).unwrap();
        assert!(data.ranges.is_empty() && data.tables_done.contains(&t(2000)));
        j.discard().unwrap();
        assert!(!progress.exists() && !j.path().exists());
    }
}
