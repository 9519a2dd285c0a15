//! Bucardo: typed CLI commands turned into argv in one place, and the facts read from SQL instead
//! of the CLI's text (which has no machine mode and several exit codes that lie): whether the
//! control database is installed, whether the daemon answers a ping, sync runs, pending deltas.

use crate::engine::conn::{ConnSpec, Side};
use crate::engine::error::EngineError;
use crate::engine::ident::{quote_ident, quote_literal, TableName};
use crate::engine::process::{Invocation, PassfileRef};
use crate::engine::settings::Settings;
use std::path::PathBuf;
use std::time::Duration;
use tokio_postgres::Client;

/// One Bucardo CLI command. Object parameters always use the `key=value` form: the `--dbname`
/// style options are consumed as control-database options by the CLI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BucardoCmd {
    Install {
        admin_user: String,
        admin_db: String,
    },
    Start {
        reason: String,
    },
    Stop,
    AddDb {
        name: String,
        dbname: String,
        host: String,
        port: u16,
        user: String,
        conn: Option<String>,
    },
    AddTables {
        tables: Vec<TableName>,
        relgroup: String,
        db: String,
    },
    /// `validate`: creates what the sync lacks on every database (delta tables, triggers) for
    /// the relgroup's members that do not have them yet.
    Validate {
        sync: String,
    },
    AddDbgroup {
        name: String,
        sources: Vec<String>,
    },
    AddSync {
        name: String,
        relgroup: String,
        dbgroup: String,
    },
    ActivateSync {
        name: String,
    },
    ReloadConfig,
    /// `reload config` waiting up to `timeout_s` for the daemon (30 s otherwise): the daemon
    /// validates every sync on a reload, over every table.
    ReloadConfigWithin {
        timeout_s: u64,
    },
    Kick {
        sync: String,
        timeout_s: u64,
    },
    /// A kick that does not wait for the run.
    Nudge {
        sync: String,
    },
    RemoveSync {
        name: String,
    },
    RemoveDbgroup {
        name: String,
    },
    RemoveRelgroup {
        name: String,
    },
    RemoveTables {
        tables: Vec<TableName>,
    },
    RemoveDb {
        name: String,
    },
}

/// How every call reaches the control database: explicit flags, never `/etc/bucardorc`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucardoCli {
    pub program: PathBuf,
    pub control: ConnSpec,
    pub piddir: PathBuf,
    pub logdir: PathBuf,
    /// Where Bucardo writes its reason files (it uses the current directory).
    pub workdir: PathBuf,
}

impl BucardoCli {
    pub fn from_settings(s: &Settings) -> Self {
        BucardoCli {
            program: s.bucardo.program.clone(),
            control: s.bucardo.control.clone(),
            piddir: s.bucardo.piddir.clone(),
            logdir: s.bucardo.logdir.clone(),
            workdir: s.bucardo.piddir.clone(),
        }
    }

    /// The full argv for a command.
    pub fn argv(&self, cmd: &BucardoCmd) -> Vec<String> {
        let mut a: Vec<String> = vec![self.program.display().to_string(), "--no-bucardorc".into()];
        let (user, db) = match cmd {
            BucardoCmd::Install {
                admin_user,
                admin_db,
            } => (admin_user.clone(), admin_db.clone()),
            _ => (self.control.user.clone(), self.control.dbname.clone()),
        };
        a.extend([
            "--dbhost".into(),
            self.control.host.clone(),
            "--dbport".into(),
            self.control.port.to_string(),
            "--dbname".into(),
            db,
            "--dbuser".into(),
            user,
            "--piddir".into(),
            self.piddir.display().to_string(),
            "--log-destination".into(),
            self.logdir.display().to_string(),
        ]);
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        match cmd {
            BucardoCmd::Install { .. } => a.extend(s(&["install", "--batch"])),
            BucardoCmd::Start { reason } => {
                a.extend(s(&["start"]));
                a.push(reason.clone());
            }
            BucardoCmd::Stop => a.extend(s(&["stop", "bucardo-bootstrap"])),
            BucardoCmd::AddDb {
                name,
                dbname,
                host,
                port,
                user,
                conn,
            } => {
                a.extend(s(&["add", "db"]));
                a.push(name.clone());
                a.push(format!("dbname={dbname}"));
                a.push(format!("host={host}"));
                a.push(format!("port={port}"));
                a.push(format!("user={user}"));
                if let Some(c) = conn {
                    a.push(format!("conn={c}"));
                }
            }
            BucardoCmd::AddTables {
                tables,
                relgroup,
                db,
            } => {
                a.extend(s(&["add", "table"]));
                a.extend(tables.iter().map(TableName::raw));
                a.push(format!("relgroup={relgroup}"));
                a.push(format!("db={db}"));
            }
            BucardoCmd::Validate { sync } => {
                a.push("validate".into());
                a.push(sync.clone());
            }
            BucardoCmd::AddDbgroup { name, sources } => {
                a.extend(s(&["add", "dbgroup"]));
                a.push(name.clone());
                a.extend(sources.iter().map(|d| format!("{d}:source")));
            }
            BucardoCmd::AddSync {
                name,
                relgroup,
                dbgroup,
            } => {
                a.extend(s(&["add", "sync"]));
                a.push(name.clone());
                a.push(format!("relgroup={relgroup}"));
                a.push(format!("dbs={dbgroup}"));
                // Inactive: the daemon must not run it while THERE is being loaded. The triggers
                // are created all the same, so deltas are logged from this commit on.
                a.extend(s(&["autokick=0", "status=inactive"]));
            }
            BucardoCmd::ActivateSync { name } => {
                a.extend(s(&["update", "sync"]));
                a.push(name.clone());
                a.extend(s(&["autokick=1", "status=active"]));
            }
            BucardoCmd::ReloadConfig => a.extend(s(&["reload", "config"])),
            BucardoCmd::ReloadConfigWithin { timeout_s } => {
                a.extend(s(&["reload", "config"]));
                a.push(timeout_s.to_string());
            }
            BucardoCmd::Kick { sync, timeout_s } => {
                a.extend(s(&["kick", "sync"]));
                a.push(sync.clone());
                a.push(timeout_s.to_string());
                a.push("--notimer".into());
            }
            BucardoCmd::Nudge { sync } => {
                a.extend(s(&["kick", "sync"]));
                a.push(sync.clone());
            }
            BucardoCmd::RemoveSync { name } => {
                a.extend(s(&["remove", "sync"]));
                a.push(name.clone());
            }
            BucardoCmd::RemoveDbgroup { name } => {
                a.extend(s(&["remove", "dbgroup"]));
                a.push(name.clone());
            }
            BucardoCmd::RemoveRelgroup { name } => {
                a.extend(s(&["remove", "relgroup"]));
                a.push(name.clone());
            }
            BucardoCmd::RemoveTables { tables } => {
                a.extend(s(&["remove", "table"]));
                a.extend(tables.iter().map(TableName::raw));
            }
            BucardoCmd::RemoveDb { name } => {
                a.extend(s(&["remove", "db"]));
                a.push(name.clone());
                a.push("--force".into());
            }
        }
        a
    }

    pub fn invocation(&self, cmd: &BucardoCmd, passfile: impl Into<PassfileRef>) -> Invocation {
        // Bucardo decodes its argv by the locale: under C, non-ASCII table names never match.
        Invocation::new(self.argv(cmd))
            .envs(self.control.child_env())
            .passfile(passfile)
            .env("LC_ALL", "C.UTF-8")
            .cwd(&self.workdir)
    }
}

/// Does this `bucardo` argv need a daemon that answers (`reload`, `kick`)? Both fail or hang
/// while the daemon is restarting. The verb follows the options [`BucardoCli::argv`] writes.
pub fn needs_daemon(argv: &[String]) -> bool {
    let Some(i) = argv.iter().position(|a| a == "--log-destination") else {
        return false;
    };
    matches!(argv.get(i + 2).map(String::as_str), Some("reload" | "kick"))
}

/// What one table costs one of Bucardo's trigger transactions in PostgreSQL's shared lock
/// table: `add sync` and `validate` create a delta, a track and a stage table with an index
/// each, and triggers on the table itself; the lock gate locks the table once more.
pub const LOCKS_PER_TABLE: u64 = 8;

/// One transaction of Bucardo's may fill this share of a server's lock table; the application
/// keeps the rest.
const LOCK_TABLE_SHARE: u64 = 4;

/// Tables per trigger transaction when the servers' lock tables are unknown (PostgreSQL's
/// defaults give the same).
pub const DEFAULT_TRIGGER_BATCH: usize = 200;

/// Tables per trigger transaction at most, however large the lock tables: a transaction holds
/// its tables' locks while it creates Bucardo's objects for each, about 6 ms a table here
/// (800 tables: 4.6 to 6.1 s of blocked writes, measured), so 200 keep it near a second.
pub const MAX_TRIGGER_BATCH: usize = 200;

/// How many tables one of Bucardo's trigger transactions covers on servers whose shared lock
/// tables hold `slots` locks. Bucardo installs its triggers on every table of a sync in one
/// transaction per database, which runs out of shared memory from about 1,000 tables on a
/// server with PostgreSQL's defaults (measured) and holds every table's lock until it commits;
/// past this size the bootstrap grows the relgroup batch by batch instead.
/// `BUCARDO_BOOTSTRAP_TRIGGER_BATCH` sets the size instead (the tests' small batches).
pub fn trigger_batch(slots: Option<u64>) -> usize {
    if let Some(n) = std::env::var("BUCARDO_BOOTSTRAP_TRIGGER_BATCH")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        return n;
    }
    match slots {
        None => DEFAULT_TRIGGER_BATCH,
        Some(n) => ((n / LOCK_TABLE_SHARE / LOCKS_PER_TABLE) as usize).clamp(25, MAX_TRIGGER_BATCH),
    }
}

/// The size of a server's shared lock table, as PostgreSQL sizes it for regular backends
/// (`max_locks_per_transaction` × (`max_connections` + `max_prepared_transactions`)).
pub async fn lock_slots(c: &Client, side: Side) -> Result<u64, EngineError> {
    let n: i64 = c
        .query_one(
            "SELECT current_setting('max_locks_per_transaction')::bigint
                    * (current_setting('max_connections')::bigint
                       + current_setting('max_prepared_transactions')::bigint)",
            &[],
        )
        .await
        .map_err(|e| EngineError::sql(side, "reading the size of the lock table", &e))?
        .get(0);
    Ok(n.max(0) as u64)
}

/// The name Bucardo gives a sync's kick trigger and function (`validate_sync`'s `$kickfunc`);
/// None for a name so long that Bucardo picks a random one.
pub fn kick_trigger(sync: &str) -> Option<String> {
    match sync.len() {
        n if n <= 48 => Some(format!("bucardo_kick_{sync}")),
        n if n <= 62 => Some(format!("bkick_{sync}")),
        _ => None,
    }
}

/// One transaction that creates the sync's kick trigger, as `validate_sync` writes it, on each
/// of `tables` that lacks it, after locking them all at once: what `update sync autokick=1`
/// does on every table in one transaction, batch by batch. `validate_sync` then finds every
/// trigger in place and creates none.
pub fn kick_triggers_sql(kick: &str, tables: &[TableName]) -> String {
    let list = crate::engine::giveway::lock_list(tables);
    let mut names: Vec<String> = tables.iter().map(|t| quote_literal(&t.sql())).collect();
    names.sort();
    // The table names go in an array and the trigger's text once: spelled out per table, the
    // batches of 10,000 tables were 7 MB of the plan.
    let trig = quote_ident(kick);
    format!(
        "DO $kick$ DECLARE t text; BEGIN\n  EXECUTE {lock};\n  FOREACH t IN ARRAY ARRAY[{names}]::text[] LOOP\n    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = t::regclass AND tgname = {name}) THEN\n      EXECUTE {create} || t || {rest};\n    END IF;\n  END LOOP;\nEND $kick$",
        lock = quote_literal(&format!("LOCK TABLE {list} IN SHARE ROW EXCLUSIVE MODE")),
        names = names.join(", "),
        name = quote_literal(kick),
        create = quote_literal(&format!(
            "CREATE TRIGGER {trig} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON "
        )),
        rest = quote_literal(&format!(" FOR EACH STATEMENT EXECUTE PROCEDURE bucardo.{trig}()")),
    )
}

/// `(VALUES ('schema', 'table'), ...) AS v(s, t)` for `tables`' raw names.
fn values(tables: &[TableName]) -> String {
    let rows: Vec<String> = tables
        .iter()
        .map(|t| format!("({}, {})", quote_literal(&t.schema), quote_literal(&t.name)))
        .collect();
    format!("(VALUES {}) AS v(s, t)", rows.join(", "))
}

/// What `bucardo add table` inserts into `bucardo.goat` for each table (the `validate_goat`
/// trigger then finds its key on HERE), for the tables not there yet, in one statement. The
/// CLI reloads everything it knows after each table it adds, which grows with the square of
/// the table count: 800 tables took 44 s, the fifth 800 more than 6 minutes (measured).
pub fn register_tables_sql(db: &str, tables: &[TableName]) -> String {
    format!(
        "INSERT INTO bucardo.goat (schemaname, tablename, reltype, db) SELECT v.s, v.t, 'table', {db} FROM {values} WHERE NOT EXISTS (SELECT 1 FROM bucardo.goat g WHERE g.db = {db} AND g.reltype = 'table' AND g.schemaname = v.s AND g.tablename = v.t) ORDER BY 1, 2",
        db = quote_literal(db),
        values = values(tables)
    )
}

/// What `bucardo add table ... relgroup=` inserts into `bucardo.herd` and `bucardo.herdmap`,
/// for the tables not in the relgroup yet.
pub fn join_relgroup_sql(relgroup: &str, db: &str, tables: &[TableName]) -> String {
    format!(
        "INSERT INTO bucardo.herd (name) VALUES ({herd}) ON CONFLICT DO NOTHING; INSERT INTO bucardo.herdmap (herd, priority, goat) SELECT {herd}, 0, g.id FROM bucardo.goat g JOIN {values} ON g.schemaname = v.s AND g.tablename = v.t WHERE g.db = {db} AND g.reltype = 'table' ON CONFLICT (herd, goat) DO NOTHING",
        herd = quote_literal(relgroup),
        db = quote_literal(db),
        values = values(tables)
    )
}

/// The relgroup holds `tables` and nothing else: while the inactive sync's triggers go in batch
/// by batch, `validate` then looks at one batch, not at every table so far (it reads and
/// checks every member each time: 10 to 87 s per batch of 800 as the relgroup grew to 8,000,
/// measured). Deltas do not depend on it: each table's trigger logs them.
pub fn set_relgroup_sql(relgroup: &str, db: &str, tables: &[TableName]) -> String {
    format!(
        "DELETE FROM bucardo.herdmap WHERE herd = {}; {}",
        quote_literal(relgroup),
        join_relgroup_sql(relgroup, db, tables)
    )
}

/// Is Bucardo's schema installed in the control database?
pub async fn control_installed(control: &ConnSpec) -> Result<bool, EngineError> {
    match control.connect(Side::Control).await {
        Ok(c) => {
            let r = c
                .query_one("SELECT to_regclass('bucardo.sync') IS NOT NULL", &[])
                .await
                .map_err(|e| EngineError::sql(Side::Control, "checking the Bucardo schema", &e))?;
            Ok(r.get(0))
        }
        Err(EngineError::Connect { message, .. }) if message.contains("does not exist") => {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Asks the daemon for a pong through the control database: it answers wherever it runs, which a
/// local PID file cannot tell. The pong comes from the MCP's PostgreSQL backend, so its PID is not
/// the daemon's: [`crate::engine::daemon`] reads that from the PID file.
pub async fn ping(control: &ConnSpec, wait: Duration) -> Result<bool, EngineError> {
    let (client, mut notes) = control.connect_listening(Side::Control).await?;
    client
        .batch_execute("LISTEN bucardo_mcp_pong; NOTIFY bucardo_mcp_ping;")
        .await
        .map_err(|e| EngineError::sql(Side::Control, "pinging the daemon", &e))?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, notes.recv()).await {
            Ok(Some(n)) if n.channel() == "bucardo_mcp_pong" => return Ok(true),
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return Ok(false),
        }
    }
}

/// The newest run of a sync, read from `bucardo.syncrun`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncRunInfo {
    pub runs: i64,
    pub running: bool,
    pub last_good_ended: Option<String>,
    pub last_bad_status: Option<String>,
    pub last_status: Option<String>,
}

pub async fn sync_runs(control: &Client, sync: &str) -> Result<SyncRunInfo, EngineError> {
    let r = control
        .query_one(
            "SELECT count(*),
                    bool_or(ended IS NULL),
                    max(ended) FILTER (WHERE lastgood OR lastempty)::text,
                    (SELECT status FROM bucardo.syncrun WHERE sync = $1 AND lastbad LIMIT 1),
                    (SELECT status FROM bucardo.syncrun WHERE sync = $1 ORDER BY started DESC LIMIT 1)
               FROM bucardo.syncrun WHERE sync = $1",
            &[&sync],
        )
        .await
        .map_err(|e| EngineError::sql(Side::Control, "reading bucardo.syncrun", &e))?;
    Ok(SyncRunInfo {
        runs: r.get(0),
        running: r.get::<_, Option<bool>>(1).unwrap_or(false),
        last_good_ended: r.get(2),
        last_bad_status: r.get(3),
        last_status: r.get(4),
    })
}

/// Tables with deltas not yet replicated to the dbgroup, on one source database.
pub async fn pending_tables(
    db: &Client,
    side: Side,
    sync: &str,
    dbgroup: &str,
) -> Result<Vec<String>, EngineError> {
    let rows = db
        .query(
            "SELECT x FROM bucardo.bucardo_delta_check($1, $2) AS x",
            &[&sync, &format!("dbgroup {dbgroup}")],
        )
        .await
        .map_err(|e| EngineError::sql(side, "checking pending deltas", &e))?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let v: String = r.get(0);
            let (flag, table) = v.split_once(',')?;
            (flag != "0").then(|| table.to_string())
        })
        .collect())
}

/// Deltas logged on one source before `before` (that server's clock) and not yet replicated to
/// the dbgroup, per table: the interim deltas. Unlike "nothing pending", this settles under live
/// writes, because later deltas do not count.
pub async fn pending_before(
    db: &Client,
    side: Side,
    sync: &str,
    dbgroup: &str,
    before: &str,
) -> Result<Vec<(String, i64)>, EngineError> {
    Ok(pending_deltas(db, side, sync, dbgroup, before)
        .await?
        .into_iter()
        .map(|p| (p.table, p.count))
        .collect())
}

/// The oldest delta logged before `before` that is not replicated yet, over every table of the
/// sync on this side (as text that casts back to timestamptz), or None when nothing is pending.
pub async fn oldest_pending_before(
    db: &Client,
    side: Side,
    sync: &str,
    dbgroup: &str,
    before: &str,
) -> Result<Option<String>, EngineError> {
    let times: Vec<String> = pending_deltas(db, side, sync, dbgroup, before)
        .await?
        .into_iter()
        .filter_map(|p| p.oldest)
        .collect();
    if times.is_empty() {
        return Ok(None);
    }
    db.query_one(
        "SELECT min(t::timestamptz)::text FROM unnest($1::text[]) AS t",
        &[&times],
    )
    .await
    .map(|r| r.get(0))
    .map_err(|e| EngineError::sql(side, "finding the oldest pending delta", &e))
}

/// One table's deltas not replicated yet: how many, and the oldest one's time.
struct Pending {
    table: String,
    count: i64,
    oldest: Option<String>,
}

/// [`Pending`] per table of the sync that has any, before `before`.
async fn pending_deltas(
    db: &Client,
    side: Side,
    sync: &str,
    dbgroup: &str,
    before: &str,
) -> Result<Vec<Pending>, EngineError> {
    let names = db
        .query(
            "SELECT tablename::regclass::text, deltaname, trackname FROM bucardo.bucardo_delta_names WHERE sync = $1",
            &[&sync],
        )
        .await
        .map_err(|e| EngineError::sql(side, "reading bucardo_delta_names", &e))?;
    let target = format!("dbgroup {dbgroup}");
    let mut out = Vec::new();
    for r in names {
        let (table, delta, track): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        let sql = format!(
            "SELECT count(*), min(d.txntime)::text FROM bucardo.{} d WHERE d.txntime < $1::text::timestamptz AND NOT EXISTS (SELECT 1 FROM bucardo.{} t WHERE t.txntime = d.txntime AND t.target = $2)",
            stored_ident(&delta),
            stored_ident(&track)
        );
        let row = db
            .query_one(sql.as_str(), &[&before, &target])
            .await
            .map_err(|e| {
                EngineError::sql(side, format!("counting pending deltas of {table}"), &e)
            })?;
        let count: i64 = row.get(0);
        if count > 0 {
            out.push(Pending {
                table,
                count,
                oldest: row.get(1),
            });
        }
    }
    Ok(out)
}

/// Bucardo stores delta/track names already quoted when they need it.
fn stored_ident(name: &str) -> String {
    if name.starts_with('"') {
        name.to_string()
    } else {
        quote_ident(name)
    }
}

/// The server's clock, as text that casts back to timestamptz.
pub async fn server_now(db: &Client, side: Side) -> Result<String, EngineError> {
    db.query_one("SELECT clock_timestamp()::text", &[])
        .await
        .map(|r| r.get(0))
        .map_err(|e| EngineError::sql(side, "reading the clock", &e))
}

/// The tables a bootstrap replicates, as Bucardo knows them: the relgroup of `sync` when that
/// sync exists, else the relgroup named `relgroup`. Empty when neither holds a table.
pub async fn relgroup_tables(
    control: &Client,
    sync: &str,
    relgroup: &str,
) -> Result<Vec<TableName>, EngineError> {
    let rows = control
        .query(
            "SELECT g.schemaname, g.tablename
               FROM bucardo.herdmap m JOIN bucardo.goat g ON g.id = m.goat
              WHERE m.herd = coalesce((SELECT herd FROM bucardo.sync WHERE name = $1), $2)
                AND g.reltype = 'table'
              ORDER BY g.schemaname, g.tablename",
            &[&sync, &relgroup],
        )
        .await
        .map_err(|e| EngineError::sql(Side::Control, "reading the relgroup's tables", &e))?;
    Ok(rows
        .iter()
        .map(|r| TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect())
}

/// Names that already exist in Bucardo's control database: (kind, name).
pub async fn existing_names(
    control: &Client,
    s: &Settings,
) -> Result<Vec<(&'static str, String)>, EngineError> {
    let n = &s.names;
    let mut out = Vec::new();
    for (kind, table, names) in [
        (
            "database",
            "bucardo.db",
            vec![n.here_db.clone(), n.there_db.clone()],
        ),
        ("relgroup", "bucardo.herd", vec![n.relgroup.clone()]),
        ("dbgroup", "bucardo.dbgroup", vec![n.dbgroup.clone()]),
        ("sync", "bucardo.sync", vec![n.sync.clone()]),
    ] {
        let sql = format!("SELECT name FROM {table} WHERE name = ANY($1)");
        for r in control
            .query(&sql, &[&names])
            .await
            .map_err(|e| EngineError::sql(Side::Control, "reading Bucardo's names", &e))?
        {
            out.push((kind, r.get::<_, String>(0)));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn trigger_batches_fit_a_quarter_of_the_lock_table_and_stay_short() {
        assert_eq!(trigger_batch(None), DEFAULT_TRIGGER_BATCH);
        assert_eq!(trigger_batch(Some(64 * 100)), 200);
        assert_eq!(trigger_batch(Some(1000)), 31);
        assert_eq!(trigger_batch(Some(100)), 25);
        assert_eq!(trigger_batch(Some(256 * 100)), MAX_TRIGGER_BATCH);
        assert_eq!(
            kick_trigger("mysync").as_deref(),
            Some("bucardo_kick_mysync")
        );
        assert_eq!(kick_trigger(&"s".repeat(50)).map(|k| k.len()), Some(56));
        assert_eq!(kick_trigger(&"s".repeat(63)), None);
    }

    use super::*;
    use crate::engine::conn::ConnDefaults;

    fn cli() -> BucardoCli {
        BucardoCli {
            program: "bucardo".into(),
            control: ConnSpec::parse_uri(
                "postgres://bucardo@ctl:5433/bucardo",
                &ConnDefaults::default(),
            )
            .unwrap(),
            piddir: "/run/bb".into(),
            logdir: "/var/log/bb".into(),
            workdir: "/run/bb".into(),
        }
    }

    #[test]
    fn every_call_names_the_control_db_and_dirs() {
        let a = cli().argv(&BucardoCmd::ReloadConfig);
        assert_eq!(
            a.join(" "),
            "bucardo --no-bucardorc --dbhost ctl --dbport 5433 --dbname bucardo --dbuser bucardo \
             --piddir /run/bb --log-destination /var/log/bb reload config"
        );
    }

    #[test]
    fn reload_and_kick_need_the_daemon_and_nothing_else_does() {
        let c = cli();
        let needs = |cmd: BucardoCmd| needs_daemon(&c.argv(&cmd));
        assert!(needs(BucardoCmd::ReloadConfig));
        assert!(needs(BucardoCmd::Kick {
            sync: "mysync".into(),
            timeout_s: 5
        }));
        assert!(!needs(BucardoCmd::Start { reason: "x".into() }));
        assert!(!needs(BucardoCmd::ActivateSync {
            name: "reload".into()
        }));
        // A table called "kick" is an argument, not the verb.
        assert!(!needs(BucardoCmd::AddTables {
            tables: vec![TableName::new("public", "kick")],
            relgroup: "r".into(),
            db: "d".into(),
        }));
    }

    #[test]
    fn tables_are_one_raw_word_each() {
        let a = cli().argv(&BucardoCmd::AddTables {
            tables: vec![
                TableName::new("Sales", "Order Items"),
                TableName::new("public", "foo"),
            ],
            relgroup: "myrels".into(),
            db: "herewidgets".into(),
        });
        let tail = &a[a.len() - 6..];
        assert_eq!(
            tail,
            [
                "add",
                "table",
                "Sales.Order Items",
                "public.foo",
                "relgroup=myrels",
                "db=herewidgets"
            ]
        );
    }

    #[test]
    fn sync_is_created_inactive_without_autokick() {
        let a = cli().argv(&BucardoCmd::AddSync {
            name: "mysync".into(),
            relgroup: "myrels".into(),
            dbgroup: "mydbs".into(),
        });
        assert!(a.ends_with(&[
            "add".into(),
            "sync".into(),
            "mysync".into(),
            "relgroup=myrels".into(),
            "dbs=mydbs".into(),
            "autokick=0".into(),
            "status=inactive".into()
        ]));
    }

    #[test]
    fn add_db_never_carries_a_password() {
        let a = cli().argv(&BucardoCmd::AddDb {
            name: "herewidgets".into(),
            dbname: "widgets".into(),
            host: "h".into(),
            port: 5432,
            user: "bucardo".into(),
            conn: None,
        });
        assert!(!a.iter().any(|w| w.starts_with("pass")), "{a:?}");
    }
}
