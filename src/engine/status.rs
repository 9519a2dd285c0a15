//! The health of a bootstrapped sync, read from SQL (never from `bucardo status` text): whether
//! the daemon answers, the sync's state, its last good and bad runs, conflicts, and the deltas
//! still waiting per table on each side. `status` prints it; the wizard's last screen shows it live.

use crate::engine::bucardo;
use crate::engine::catalog;
use crate::engine::conn::Side;
use crate::engine::coverage::{self, Coverage};
use crate::engine::daemon::{self, Daemon};
use crate::engine::error::EngineError;
use crate::engine::ident::TableName;
use crate::engine::settings::Settings;
use crate::engine::settings::TableSelection;
use serde::Serialize;
use std::fmt::Write as _;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SyncStatus {
    pub daemon: Daemon,
    /// `active`/`inactive`/`stalled`; None when the sync does not exist.
    pub sync_state: Option<String>,
    pub autokick: Option<bool>,
    pub running: bool,
    pub last_good: Option<String>,
    pub last_bad: Option<String>,
    pub last_bad_status: Option<String>,
    /// Conflicts Bucardo settled in the last 24 hours.
    pub conflicts_24h: i64,
    /// (side, table, deltas not yet replicated).
    pub pending: Vec<(String, String, i64)>,
    /// What the sync replicates of HERE and what it does not (None without a sync).
    #[serde(skip)]
    pub coverage: Option<Coverage>,
}

impl SyncStatus {
    /// Healthy: the daemon answers, the sync is active, the last run was good.
    pub fn healthy(&self) -> bool {
        self.daemon.answers()
            && self.sync_state.as_deref() == Some("active")
            && self.last_good.is_some()
            && match (&self.last_good, &self.last_bad) {
                (Some(g), Some(b)) => g > b,
                _ => true,
            }
    }

    pub fn render(&self, sync: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "daemon:        {}", self.daemon.describe());
        let _ = writeln!(
            out,
            "sync {sync}:    {}{}{}",
            self.sync_state.as_deref().unwrap_or("does not exist"),
            match self.autokick {
                Some(true) => ", autokick on",
                Some(false) => ", autokick off",
                None => "",
            },
            if self.running { ", running now" } else { "" }
        );
        let _ = writeln!(
            out,
            "last good run: {}",
            self.last_good.as_deref().unwrap_or("none")
        );
        let _ = writeln!(
            out,
            "last bad run:  {}{}",
            self.last_bad.as_deref().unwrap_or("none"),
            self.last_bad_status
                .as_deref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default()
        );
        let _ = writeln!(
            out,
            "conflicts:     {} in the last 24 hours",
            self.conflicts_24h
        );
        if self.pending.is_empty() {
            let _ = writeln!(out, "pending:       no delta waiting");
        } else {
            let _ = writeln!(out, "pending:");
            for (side, table, n) in &self.pending {
                let _ = writeln!(out, "  {side:<6} {table}: {n} deltas");
            }
        }
        if let Some(c) = &self.coverage {
            for line in c.report() {
                let _ = writeln!(out, "  {line}");
            }
            let _ = writeln!(out, "coverage:      {}", c.line());
        }
        let _ = writeln!(
            out,
            "health:        {}",
            if self.healthy() {
                "OK"
            } else {
                "NEEDS ATTENTION"
            }
        );
        out
    }
}

/// Reads everything; a server that cannot be reached is an error naming it.
pub async fn read(s: &Settings) -> Result<SyncStatus, EngineError> {
    let control = s
        .bucardo
        .control
        .with_user(&s.bucardo.control.user, s.bucardo.password.clone());
    let mut st = SyncStatus {
        daemon: daemon::probe(&control, &s.bucardo.piddir, daemon::PING_WAIT).await?,
        ..Default::default()
    };
    let ctl = control.connect(Side::Control).await?;
    let q = |e: tokio_postgres::Error| EngineError::sql(Side::Control, "reading the sync", &e);
    if let Some(r) = ctl
        .query_opt(
            "SELECT status, autokick FROM bucardo.sync WHERE name = $1",
            &[&s.names.sync],
        )
        .await
        .map_err(q)?
    {
        st.sync_state = r.get(0);
        st.autokick = r.get(1);
    }
    let r = ctl
        .query_one(
            "SELECT bool_or(ended IS NULL),
                    max(ended) FILTER (WHERE lastgood OR lastempty)::text,
                    max(ended) FILTER (WHERE lastbad)::text,
                    (SELECT status FROM bucardo.syncrun WHERE sync = $1 AND lastbad ORDER BY started DESC LIMIT 1),
                    coalesce(sum(conflicts) FILTER (WHERE started > now() - interval '24 hours'), 0)::bigint
               FROM bucardo.syncrun WHERE sync = $1",
            &[&s.names.sync],
        )
        .await
        .map_err(q)?;
    st.running = r.get::<_, Option<bool>>(0).unwrap_or(false);
    st.last_good = r.get(1);
    st.last_bad = r.get(2);
    st.last_bad_status = r.get(3);
    st.conflicts_24h = r.get(4);
    if st.sync_state.is_some() {
        let tables: Vec<TableName> = ctl
            .query(
                "SELECT g.schemaname, g.tablename FROM bucardo.sync y
                   JOIN bucardo.herdmap h ON h.herd = y.herd
                   JOIN bucardo.goat g ON g.id = h.goat
                  WHERE y.name = $1 AND g.reltype = 'table'",
                &[&s.names.sync],
            )
            .await
            .map_err(q)?
            .iter()
            .map(|r| TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect();
        let here = s.here.connect(Side::Here).await?;
        let all = catalog::list_tables(&here, Side::Here, None).await?;
        let extras = coverage::read_extras(&here, Side::Here).await?;
        st.coverage = Some(
            coverage::select(all, &extras, &TableSelection::List(tables), &s.leave_out).coverage,
        );
    }
    for (side, spec) in [(Side::Here, &s.here), (Side::There, &s.there)] {
        let c = spec.connect(side).await?;
        if !crate::engine::verify::has_deltas(&c, side).await? {
            continue;
        }
        let now = bucardo::server_now(&c, side).await?;
        for (table, n) in
            bucardo::pending_before(&c, side, &s.names.sync, &s.names.dbgroup, &now).await?
        {
            st.pending.push((side.to_string(), table, n));
        }
    }
    Ok(st)
}
