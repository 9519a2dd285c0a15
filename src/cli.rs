//! The command line: clap definitions, and how flags fall back to the seed's environment
//! variables (`PGHOST PGHOST2 PGDATABASE PGSUPERUSER BUCARDOUSER BUCARDOPASS HERE THERE`), then to
//! libpq's (`PGPORT PGUSER PGPASSWORD PGPASSFILE PGSSLMODE ...`), then to defaults. The result is a
//! [`Draft`]: plain, editable strings that the wizard's Connect screen edits too, and that
//! [`Draft::build`] turns into engine [`Settings`] with passwords resolved.
//!
//! The fallbacks are [`Draft::from_args`]'s, not clap's `env`: most flags are assembled from
//! several variables (`--here` from `PGHOST`, `PGPORT`, ...), so each flag's help says in words
//! which variables and which default it falls back to. The help never shows a variable's value.
//! Every `--help` ends with examples, which the man pages render as their EXAMPLES section.

use crate::engine::conn::{default_passfile, ConnDefaults, ConnSpec, Env, SslMode};
use crate::engine::governor::Limits;
use crate::engine::ident::parse_table_list;
use crate::engine::secret::Secret;
use crate::engine::settings::{
    default_jobs, default_state_dir, BucardoSettings, NameKind, Names, SequenceMode, Settings,
    TableSelection,
};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const WIZARD_AFTER_HELP: &str = "\
Environment:
  PGHOST                 HERE's host (and the control database's)
  PGPORT, PGDATABASE     the port and the database, on HERE and THERE
  PGSUPERUSER or PGUSER  the superuser, on HERE and THERE
  PGSSLMODE              sslmode, for every connection
  PGHOST2                THERE's host
  BUCARDOUSER            Bucardo's role
  PGPASSWORD             the superuser's password (or PGPASSFILE, ~/.pgpass)
  BUCARDOPASS            Bucardo's password (or PGPASSFILE, ~/.pgpass)
  HERE, THERE            Bucardo's database names: $HERE<db>, $THERE<db>
  XDG_STATE_HOME         state directory: $XDG_STATE_HOME/bucardo-bootstrap
  BUCARDO_BIN            the bucardo program (default: bucardo on PATH)
  BUCARDO_BOOTSTRAP_LOG  the log filter (default: info,tokio_postgres=warn)

Examples:
  The wizard, with the blog post's variables:
    PGHOST=here.example.com PGHOST2=there.example.com PGDATABASE=widgets \\
      bucardo-bootstrap
  Plain prompts instead of the full-screen wizard:
    bucardo-bootstrap --plain --here postgres://postgres@here.example.com/widgets \\
      --there postgres://postgres@there.example.com/widgets";

const RUN_AFTER_HELP: &str = "\
Examples:
  Every table Bucardo can replicate, without questions:
    bucardo-bootstrap run --yes --tables all \\
      --here postgres://postgres@here.example.com/widgets \\
      --there postgres://postgres@there.example.com/widgets
  Replay a plan reviewed and saved earlier (the same command resumes it):
    bucardo-bootstrap run --yes --config boot.toml";

const CHECK_AFTER_HELP: &str = "\
Examples:
  Preflight every table, with the blog post's variables:
    PGHOST=here.example.com PGHOST2=there.example.com PGDATABASE=widgets \\
      bucardo-bootstrap check --tables all
  Two tables, one left out knowingly:
    bucardo-bootstrap check --tables public.orders,public.items \\
      --leave-out public.audit";

const PLAN_AFTER_HELP: &str = "\
Examples:
  The exact commands, and a bash script that does the same:
    bucardo-bootstrap plan --tables all --script boot.sh
  Save the plan for `run --config`:
    bucardo-bootstrap plan --tables public.orders,public.items --save boot.toml";

const VERIFY_AFTER_HELP: &str = "\
Examples:
  Checksum the sync's tables (from Bucardo's control database or the journal):
    bucardo-bootstrap verify
  Also list the rows that differ, by key:
    bucardo-bootstrap verify --deep --tables public.orders";

const COPY_AFTER_HELP: &str = "\
Examples:
  Re-seed two tables that are empty on THERE:
    bucardo-bootstrap copy --tables public.orders,public.items
  Every table, with 4 workers and no governor:
    bucardo-bootstrap copy --tables all --jobs 4 --max-load off";

const CLEANUP_AFTER_HELP: &str = "\
Examples:
  Remove Bucardo's objects, triggers, delta tables and sequence increments:
    bucardo-bootstrap cleanup
  Also THERE's rows, the daemon, the control database and the roles:
    bucardo-bootstrap cleanup --drop-data --all --yes";

const STATUS_AFTER_HELP: &str = "\
Examples:
  The default sync's health (exit 0 when healthy, 1 otherwise):
    bucardo-bootstrap status
  Another sync, on another control database:
    bucardo-bootstrap status --sync shopsync \\
      --bucardo-db postgres://bucardo@here.example.com/bucardo";

const DEMO_AFTER_HELP: &str = "\
Examples:
  The demo, removed on exit:
    bucardo-bootstrap demo
  A larger sample with plain prompts, kept for a look afterwards:
    bucardo-bootstrap demo --plain --scale 4 --keep";

#[derive(Parser, Debug)]
#[command(
    name = "bucardo-bootstrap",
    version,
    about = "Bootstrap Bucardo master/master replication from a live PostgreSQL database to a new one, with no downtime and no lost row.",
    long_about = "Bootstrap Bucardo master/master replication from a live PostgreSQL database (HERE) to a new, empty one (THERE), with no downtime and no lost row.\n\nWithout a subcommand it opens the full-screen wizard (or plain prompts with --plain). Every flag falls back to the environment variables of the blog post Bootstrapping Bucardo Master/Master Replication, then to libpq's, then to a default.",
    after_help = WIZARD_AFTER_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Cmd>,
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Use plain prompts instead of the full-screen wizard, for terminals where a full-screen UI
    /// is impractical. [default: the full-screen wizard]
    #[arg(long, global = true)]
    pub plain: bool,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Carry out the bootstrap headless: preflight, schema, Bucardo, copy, sequences, compare,
    /// enable, replay, verify. Run it again after an interruption to finish it.
    #[command(after_help = RUN_AFTER_HELP)]
    Run {
        #[command(flatten)]
        conn: ConnArgs,
        /// Do not ask for confirmation (required without a terminal).
        #[arg(long)]
        yes: bool,
        /// Replay a plan file written by the wizard or `plan --save`, instead of the connection
        /// and table flags. [default: none, the flags and the environment]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Forget what an earlier run of this plan finished, and start over.
        #[arg(long)]
        restart: bool,
    },
    /// Run every preflight check and print the findings with their fixes; exit 0 when none fails.
    #[command(after_help = CHECK_AFTER_HELP)]
    Check {
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Print the steps and exact commands, secrets masked.
    #[command(after_help = PLAN_AFTER_HELP)]
    Plan {
        #[command(flatten)]
        conn: ConnArgs,
        /// Also write an equivalent standalone bash script. [default: none]
        #[arg(long, value_name = "FILE")]
        script: Option<PathBuf>,
        /// Also write a plan file for `run --config`. [default: none]
        #[arg(long, value_name = "FILE")]
        save: Option<PathBuf>,
    },
    /// Compare HERE and THERE in chunks, at the governor's pace: exit 0 no difference (a table
    /// still changing is said so), 1 differences (listed), 2 error.
    #[command(after_help = VERIFY_AFTER_HELP)]
    Verify {
        #[command(flatten)]
        conn: ConnArgs,
        /// Row counts only.
        #[arg(long, conflicts_with = "deep")]
        fast: bool,
        /// Also print the differing rows, by key.
        #[arg(long)]
        deep: bool,
    },
    /// Copy the data alone into existing, empty tables on THERE (no Bucardo involved): the
    /// fast copy of `run`, for re-seeding tables and for benchmarks.
    #[command(after_help = COPY_AFTER_HELP)]
    Copy {
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Remove what the bootstrap created: Bucardo's objects, its triggers and delta tables on
    /// both sides, the interleaved sequence increments (and, with --drop-data, THERE's rows).
    #[command(after_help = CLEANUP_AFTER_HELP)]
    Cleanup {
        #[command(flatten)]
        conn: ConnArgs,
        /// Also empty the chosen tables on THERE.
        #[arg(long = "drop-data")]
        drop_data: bool,
        /// Also stop the daemon this tool started, drop the control database and the Bucardo
        /// roles it created, and remove the daemon's passfile (kept while another sync needs them).
        #[arg(long)]
        all: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// The sync's health, read from SQL: daemon, state, last runs, conflicts, pending deltas.
    #[command(after_help = STATUS_AFTER_HELP)]
    Status {
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Start throwaway clusters with a sample database and a writer, and open the wizard. Needs
    /// PostgreSQL's server on this machine (postgresql-15 and postgresql-plperl-15; PG_BINDIR
    /// overrides where) as well as Bucardo.
    #[command(after_help = DEMO_AFTER_HELP)]
    Demo {
        /// Keep the clusters and files on exit.
        #[arg(long)]
        keep: bool,
        /// Size of the sample database (1 = about 125k rows).
        #[arg(long, default_value_t = 1, value_name = "N")]
        scale: u32,
    },
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum SeqArg {
    /// Odd values on HERE, even ones on THERE, so that two masters never hand out the same key.
    Interleave,
    /// Leave the sequences alone.
    Keep,
}

/// Connection and naming flags shared by every subcommand. Empty means "from the environment".
#[derive(Args, Debug, Clone, Default)]
pub struct ConnArgs {
    /// HERE, the live database, as postgres://user@host:port/db; its password comes from
    /// PGPASSWORD, PGPASSFILE or ~/.pgpass, else a masked prompt.
    /// [env: PGHOST, PGPORT, PGDATABASE, PGSUPERUSER or PGUSER, PGSSLMODE]
    /// [default: postgres://postgres@localhost:5432/widgets]
    #[arg(long, global = true, value_name = "URI")]
    pub here: Option<String>,
    /// THERE, the new database, with the same superuser and password as HERE.
    /// [env: PGHOST2 for its host, PGPORT, PGDATABASE, PGSUPERUSER or PGUSER, PGSSLMODE]
    /// [default: none: without PGHOST2 it is HERE's default, which is refused]
    #[arg(long, global = true, value_name = "URI")]
    pub there: Option<String>,
    /// Bucardo's control database, installed if missing (its server needs PL/PerlU; the daemon
    /// runs where it is); the password comes from BUCARDOPASS, PGPASSFILE or ~/.pgpass, else a
    /// prompt when the server asks for one. [env: BUCARDOUSER, PGHOST, PGPORT, PGSSLMODE]
    /// [default: postgres://bucardo@localhost:5432/bucardo]
    #[arg(long = "bucardo-db", global = true, value_name = "URI")]
    pub bucardo_db: Option<String>,
    /// The PID directory of the Bucardo daemon the tool starts (`bucardo start --piddir`), where
    /// it also looks for a running one. [default: <log-dir>/bucardo/run]
    #[arg(long = "bucardo-piddir", global = true, value_name = "DIR")]
    pub bucardo_piddir: Option<PathBuf>,
    /// Where the Bucardo daemon the tool starts writes its log, log.bucardo
    /// (`bucardo start --log-destination`). [default: <log-dir>/bucardo/log]
    #[arg(long = "bucardo-logdir", global = true, value_name = "DIR")]
    pub bucardo_logdir: Option<PathBuf>,
    /// Where the tool's logs, journal and passfiles go: a private directory (0700, created if
    /// missing). [env: XDG_STATE_HOME/bucardo-bootstrap]
    /// [default: ~/.local/state/bucardo-bootstrap]
    #[arg(long = "log-dir", global = true, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// The tables to replicate: schema.table,... or all (every table Bucardo can replicate; a
    /// partitioned table through its leaf partitions). [default: none: run, check, plan and copy
    /// need it; status, verify and cleanup take the sync's tables, else the journal's]
    #[arg(long, global = true, value_name = "LIST")]
    pub tables: Option<String>,
    /// Tables to leave out knowingly (schema.table,...): with `--tables all`, they are not
    /// replicated; a foreign key between one of them and a replicated table is allowed.
    /// [default: none]
    #[arg(long = "leave-out", global = true, value_name = "LIST")]
    pub leave_out: Option<String>,
    /// The name of Bucardo's sync. [default: mysync]
    #[arg(long, global = true, value_name = "NAME")]
    pub sync: Option<String>,
    /// The name of Bucardo's relgroup, the replicated tables. [default: myrels]
    #[arg(long, global = true, value_name = "NAME")]
    pub relgroup: Option<String>,
    /// The name of Bucardo's dbgroup, HERE and THERE as sources. [default: mydbs]
    #[arg(long, global = true, value_name = "NAME")]
    pub dbgroup: Option<String>,
    /// Copy roles with pg_dumpall --roles-only first.
    #[arg(long = "copy-roles", global = true)]
    pub copy_roles: bool,
    /// What becomes of the sequences that feed the chosen tables. [default: interleave]
    #[arg(long, value_enum, global = true, value_name = "MODE")]
    pub sequences: Option<SeqArg>,
    /// Parallel copy workers, 1 to 64. [default: one per core, at least 2, at most 8]
    #[arg(long, global = true, value_name = "N")]
    pub jobs: Option<usize>,
    /// Seconds to wait for the interim deltas after the kick. [default: 600]
    #[arg(long = "kick-timeout", global = true, value_name = "SECONDS")]
    pub kick_timeout: Option<u64>,
    /// Make tables with STORED generated columns replicable: each such column becomes a plain
    /// column that a BEFORE INSERT OR UPDATE trigger computes, on both sides (`cleanup` undoes it).
    #[arg(long = "convert-generated", global = true)]
    pub convert_generated: bool,
    /// The governor: slow the copy and verification down when HERE's transaction rate drops
    /// this much below its baseline (percent), or `off` to run them at full speed.
    /// [default: 35]
    #[arg(long = "max-load", global = true, value_name = "PERCENT|off")]
    pub max_load: Option<String>,
    /// Pause them when HERE's transaction rate drops this much below its baseline (percent),
    /// until HERE recovers. [default: 45, or --max-load + 15 (at most 95) when that is higher]
    #[arg(long = "critical-load", global = true, value_name = "PERCENT")]
    pub critical_load: Option<String>,
}

impl ConnArgs {
    /// Subcommand flags win over the top-level ones.
    pub fn merged(&self, top: &ConnArgs) -> ConnArgs {
        ConnArgs {
            here: self.here.clone().or(top.here.clone()),
            there: self.there.clone().or(top.there.clone()),
            bucardo_db: self.bucardo_db.clone().or(top.bucardo_db.clone()),
            bucardo_piddir: self.bucardo_piddir.clone().or(top.bucardo_piddir.clone()),
            bucardo_logdir: self.bucardo_logdir.clone().or(top.bucardo_logdir.clone()),
            log_dir: self.log_dir.clone().or(top.log_dir.clone()),
            tables: self.tables.clone().or(top.tables.clone()),
            leave_out: self.leave_out.clone().or(top.leave_out.clone()),
            sync: self.sync.clone().or(top.sync.clone()),
            relgroup: self.relgroup.clone().or(top.relgroup.clone()),
            dbgroup: self.dbgroup.clone().or(top.dbgroup.clone()),
            copy_roles: self.copy_roles || top.copy_roles,
            sequences: self.sequences.or(top.sequences),
            jobs: self.jobs.or(top.jobs),
            kick_timeout: self.kick_timeout.or(top.kick_timeout),
            convert_generated: self.convert_generated || top.convert_generated,
            max_load: self.max_load.clone().or(top.max_load.clone()),
            critical_load: self.critical_load.clone().or(top.critical_load.clone()),
        }
    }
}

/// Every setting as an editable string, before validation. Passwords are kept apart as
/// [`Secret`]s and are never part of what a screen shows.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Draft {
    pub here: String,
    pub there: String,
    pub bucardo_db: String,
    pub bucardo_user: String,
    pub bucardo_piddir: String,
    pub bucardo_logdir: String,
    pub log_dir: String,
    pub tables: String,
    /// `--leave-out`: tables left out knowingly.
    #[serde(default)]
    pub leave_out: String,
    pub here_name: String,
    pub there_name: String,
    pub sync: String,
    pub relgroup: String,
    pub dbgroup: String,
    pub copy_roles: bool,
    pub sequences: SequenceMode,
    pub jobs: usize,
    pub kick_timeout_s: u64,
    #[serde(default)]
    pub convert_generated: bool,
    /// `--max-load` and `--critical-load` as typed (empty: the defaults).
    #[serde(default)]
    pub max_load: String,
    #[serde(default)]
    pub critical_load: String,
    /// PGPASSWORD, or one typed at a prompt: HERE's and THERE's superuser.
    #[serde(skip)]
    pub pg_password: Option<Secret>,
    /// BUCARDOPASS, or one typed at a prompt.
    #[serde(skip)]
    pub bucardo_password: Option<Secret>,
    #[serde(skip)]
    pub passfile: Option<PathBuf>,
}

impl Draft {
    /// Flags, then the seed's and libpq's environment, then defaults.
    pub fn from_args(a: &ConnArgs, env: &dyn Env) -> Draft {
        let db = env.var("PGDATABASE").unwrap_or_else(|| "widgets".into());
        let user = env
            .var("PGSUPERUSER")
            .or_else(|| env.var("PGUSER"))
            .unwrap_or_else(|| "postgres".into());
        let host = env.var("PGHOST").unwrap_or_else(|| "localhost".into());
        let port = env.var("PGPORT").unwrap_or_else(|| "5432".into());
        let host2 = env.var("PGHOST2").unwrap_or_else(|| host.clone());
        let ssl = env
            .var("PGSSLMODE")
            .map(|m| format!("?sslmode={m}"))
            .unwrap_or_default();
        let uri =
            |h: &str, u: &str, d: &str| format!("postgres://{u}@{}:{port}/{d}{ssl}", bracket(h));
        let bucardo_user = env.var("BUCARDOUSER").unwrap_or_else(|| "bucardo".into());
        let state = a.log_dir.clone().unwrap_or_else(default_state_dir);
        let here = a.here.clone().unwrap_or_else(|| uri(&host, &user, &db));
        let names = Names::seed_defaults(
            env.var("HERE").as_deref(),
            env.var("THERE").as_deref(),
            &uri_dbname(&here).unwrap_or(db.clone()),
        );
        Draft {
            here,
            there: a.there.clone().unwrap_or_else(|| uri(&host2, &user, &db)),
            bucardo_db: a
                .bucardo_db
                .clone()
                .unwrap_or_else(|| uri(&host, &bucardo_user, "bucardo")),
            bucardo_user,
            bucardo_piddir: path_str(
                a.bucardo_piddir
                    .clone()
                    .unwrap_or_else(|| state.join("bucardo/run")),
            ),
            bucardo_logdir: path_str(
                a.bucardo_logdir
                    .clone()
                    .unwrap_or_else(|| state.join("bucardo/log")),
            ),
            log_dir: path_str(state),
            tables: a.tables.clone().unwrap_or_default(),
            leave_out: a.leave_out.clone().unwrap_or_default(),
            here_name: names.here_db,
            there_name: names.there_db,
            sync: a.sync.clone().unwrap_or(names.sync),
            relgroup: a.relgroup.clone().unwrap_or(names.relgroup),
            dbgroup: a.dbgroup.clone().unwrap_or(names.dbgroup),
            copy_roles: a.copy_roles,
            sequences: match a.sequences {
                Some(SeqArg::Keep) => SequenceMode::Keep,
                _ => SequenceMode::Interleave,
            },
            jobs: a.jobs.unwrap_or_else(default_jobs),
            kick_timeout_s: a.kick_timeout.unwrap_or(600),
            convert_generated: a.convert_generated,
            max_load: a.max_load.clone().unwrap_or_default(),
            critical_load: a.critical_load.clone().unwrap_or_default(),
            pg_password: env.var("PGPASSWORD").map(Secret::new),
            bucardo_password: env.var("BUCARDOPASS").map(Secret::new),
            passfile: default_passfile(env),
        }
    }

    /// HERE's URI changes (the wizard's Connect screen): Bucardo's names for HERE and THERE
    /// follow its database name while they still follow the seed's `$HERE$PGDATABASE` pattern
    /// for the old one; names the operator typed stay.
    pub fn set_here(&mut self, uri: String) {
        if let (Some(old), Some(new)) = (uri_dbname(&self.here), uri_dbname(&uri)) {
            let (old, new) = (seed_name_part(&old), seed_name_part(&new));
            for name in [&mut self.here_name, &mut self.there_name] {
                if let Some(prefix) = name.strip_suffix(old.as_str()) {
                    *name = format!("{prefix}{new}");
                }
            }
        }
        self.here = uri;
    }

    /// Validates everything and resolves passwords (URI, PGPASSWORD/BUCARDOPASS, passfile).
    /// Errors say which field is wrong and what to write instead.
    pub fn build(&self) -> Result<Settings, DraftError> {
        self.build_inner(true)
    }

    /// [`Draft::build`] for the commands that look at a bootstrap already made (`status`,
    /// `verify`, `cleanup`), where `--tables` may be left out: the selection is then an empty
    /// list, meaning the bootstrap's own tables
    /// ([`crate::session::existing::with_bootstrap_tables`]).
    pub fn build_existing(&self) -> Result<Settings, DraftError> {
        self.build_inner(false)
    }

    fn build_inner(&self, tables_required: bool) -> Result<Settings, DraftError> {
        let none = ConnDefaults::default();
        let parse = |field: DraftField, what: &str, uri: &str| {
            ConnSpec::parse_uri(uri.trim(), &none)
                .map_err(|e| DraftError::new(field, format!("{what}: {e}")))
        };
        let pw = self.pg_password.as_ref().map(|s| s.expose().to_string());
        let pf = self.passfile.as_deref();
        let mut here = parse(DraftField::Here, "HERE", &self.here)?;
        here.resolve_password(pw.as_deref(), pf);
        let mut there = parse(DraftField::There, "THERE", &self.there)?;
        there.resolve_password(pw.as_deref(), pf);
        if here.host == there.host && here.port == there.port && here.dbname == there.dbname {
            return Err(DraftError::new(
                DraftField::There,
                "HERE and THERE are the same database; THERE must be another one",
            ));
        }
        let mut control = parse(
            DraftField::Control,
            "Bucardo control database",
            &self.bucardo_db,
        )?;
        let bpw = self
            .bucardo_password
            .as_ref()
            .map(|s| s.expose().to_string());
        control.resolve_password(bpw.as_deref(), pf);
        let mut admin = control.with_user(&here.user, None).with_db("postgres");
        admin.resolve_password(pw.as_deref(), pf);
        let tables = match self.tables.trim() {
            "" if !tables_required => TableSelection::List(Vec::new()),
            "" => {
                return Err(DraftError::new(
                    DraftField::Tables,
                    "no tables chosen: give --tables schema.table,... or --tables all",
                ))
            }
            "all" => TableSelection::All,
            list => TableSelection::List(
                parse_table_list(list)
                    .map_err(|e| DraftError::new(DraftField::Tables, format!("--tables: {e}")))?,
            ),
        };
        let leave_out = match self.leave_out.trim() {
            "" => vec![],
            list => parse_table_list(list)
                .map_err(|e| DraftError::new(DraftField::Tables, format!("--leave-out: {e}")))?,
        };
        let names = Names {
            here_db: self.here_name.clone(),
            there_db: self.there_name.clone(),
            relgroup: self.relgroup.clone(),
            dbgroup: self.dbgroup.clone(),
            sync: self.sync.clone(),
        };
        names
            .validate()
            .map_err(|(kind, message)| DraftError::new(DraftField::Name(kind), message))?;
        if self.jobs == 0 || self.jobs > 64 {
            return Err(DraftError::new(
                DraftField::Jobs,
                format!("--jobs must be between 1 and 64, not {}", self.jobs),
            ));
        }
        let governor = self.governor_limits()?;
        if self.bucardo_user.is_empty() {
            return Err(DraftError::new(
                DraftField::BucardoUser,
                "BUCARDOUSER is empty",
            ));
        }
        Ok(Settings {
            bucardo: BucardoSettings {
                password: control.password.clone(),
                control,
                admin,
                user: self.bucardo_user.clone(),
                piddir: PathBuf::from(&self.bucardo_piddir),
                logdir: PathBuf::from(&self.bucardo_logdir),
                program: PathBuf::from(
                    std::env::var("BUCARDO_BIN").unwrap_or_else(|_| "bucardo".into()),
                ),
            },
            here,
            there,
            names,
            tables,
            leave_out,
            copy_roles: self.copy_roles,
            sequences: self.sequences,
            jobs: self.jobs,
            log_dir: PathBuf::from(&self.log_dir),
            kick_timeout_s: self.kick_timeout_s,
            convert_generated: self.convert_generated,
            governor,
        })
    }

    /// `--max-load` and `--critical-load`, checked against each other.
    fn governor_limits(&self) -> Result<Limits, DraftError> {
        let bad = |m: String| DraftError::new(DraftField::Governor, m);
        let mut l = Limits::default();
        if !self.max_load.trim().is_empty() {
            match Limits::parse_share(&self.max_load)
                .map_err(|e| bad(format!("--max-load: {e}")))?
            {
                Some(v) => l.max_load = v,
                None => return Ok(Limits::off()),
            }
        }
        if !self.critical_load.trim().is_empty() {
            l.critical_load = Limits::parse_share(&self.critical_load)
                .map_err(|e| bad(format!("--critical-load: {e}")))?
                .ok_or_else(|| {
                    bad("--critical-load: to turn the governor off, say --max-load off".into())
                })?;
        } else if l.critical_load <= l.max_load {
            l.critical_load = (l.max_load + 15).min(95);
        }
        if l.critical_load <= l.max_load {
            return Err(bad(format!(
                "--critical-load ({}%) must be above --max-load ({}%)",
                l.critical_load, l.max_load
            )));
        }
        Ok(l)
    }
}

/// Which setting a [`DraftError`] is about, so that a front end can point at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DraftField {
    Here,
    There,
    Control,
    BucardoUser,
    Name(NameKind),
    Tables,
    Jobs,
    Governor,
}

/// A setting that does not validate: which one, and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DraftError {
    pub field: DraftField,
    pub message: String,
}

impl DraftError {
    fn new(field: DraftField, message: impl Into<String>) -> DraftError {
        DraftError {
            field,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for DraftError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DraftError {}

fn bracket(h: &str) -> String {
    if h.contains(':') && !h.starts_with('[') {
        format!("[{h}]")
    } else {
        h.to_string()
    }
}

/// The database a URI names, if it parses and names one.
fn uri_dbname(uri: &str) -> Option<String> {
    ConnSpec::parse_uri(uri.trim(), &ConnDefaults::default())
        .ok()
        .map(|c| c.dbname)
        .filter(|d| !d.is_empty())
}

/// How a database name appears in Bucardo's seed names (see [`Names::seed_defaults`]).
fn seed_name_part(db: &str) -> String {
    let n = Names::seed_defaults(Some(""), None, db);
    n.here_db
}

fn path_str(p: PathBuf) -> String {
    p.display().to_string()
}

/// `sslmode` from a string, for the Connect screen.
pub fn parse_sslmode(s: &str) -> Result<SslMode, String> {
    SslMode::parse(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ident::TableName;

    #[test]
    fn seed_environment_fills_everything() {
        let env = [
            ("PGDATABASE", "widgets"),
            ("PGHOST", "here.example.com"),
            ("PGHOST2", "there.example.com"),
            ("PGSUPERUSER", "postgres"),
            ("BUCARDOUSER", "bucardo"),
            ("BUCARDOPASS", "bucardo-pass-1"),
            ("HERE", "here"),
            ("THERE", "there"),
            ("PGPORT", "5433"),
            ("PGPASSWORD", "super-pass-1"),
            ("HOME", "/nonexistent"),
        ];
        let mut d = Draft::from_args(&ConnArgs::default(), &env);
        assert_eq!(d.here, "postgres://postgres@here.example.com:5433/widgets");
        assert_eq!(
            d.there,
            "postgres://postgres@there.example.com:5433/widgets"
        );
        assert_eq!(
            d.bucardo_db,
            "postgres://bucardo@here.example.com:5433/bucardo"
        );
        assert_eq!(
            (d.here_name.as_str(), d.there_name.as_str()),
            ("herewidgets", "therewidgets")
        );
        d.tables = "public.foo,public.bar".into();
        let s = d.build().unwrap();
        assert_eq!(s.here.password.as_ref().unwrap().expose(), "super-pass-1");
        assert_eq!(
            s.bucardo.password.as_ref().unwrap().expose(),
            "bucardo-pass-1"
        );
        assert_eq!(s.bucardo.admin.user, "postgres");
        assert_eq!(s.names.sync, "mysync");
        assert!(!format!("{s:?}").contains("super-pass-1"));
    }

    #[test]
    fn flags_win_over_environment() {
        let env = [("PGHOST", "envhost"), ("HOME", "/nonexistent")];
        let args = ConnArgs {
            here: Some("postgres://u@flaghost:1/a".into()),
            there: Some("postgres://u@flaghost:2/a".into()),
            tables: Some("all".into()),
            sync: Some("other".into()),
            ..Default::default()
        };
        let d = Draft::from_args(&args, &env);
        let s = d.build().unwrap();
        assert_eq!(s.here.host, "flaghost");
        assert_eq!(s.names.sync, "other");
        assert_eq!(s.tables, TableSelection::All);
    }

    #[test]
    fn default_names_follow_heres_real_database() {
        let env = [
            ("PGDATABASE", "widgets"),
            ("HERE", "h"),
            ("HOME", "/nonexistent"),
        ];
        let args = ConnArgs {
            here: Some("postgres://u@host:1/shop".into()),
            there: Some("postgres://u@other:1/shop".into()),
            sync: Some("mine".into()),
            ..Default::default()
        };
        let mut d = Draft::from_args(&args, &env);
        assert_eq!(
            (d.here_name.as_str(), d.there_name.as_str()),
            ("hshop", "thereshop")
        );
        assert_eq!(d.sync, "mine", "an explicit name still wins");
        // The wizard changes HERE: seed-made names follow, typed ones stay.
        d.set_here("postgres://u@host:1/my-store".into());
        assert_eq!(
            (d.here_name.as_str(), d.there_name.as_str()),
            ("hmy_store", "theremy_store")
        );
        d.there_name = "typed".into();
        d.set_here("postgres://u@host:1/shop".into());
        assert_eq!(
            (d.here_name.as_str(), d.there_name.as_str()),
            ("hshop", "typed")
        );
        let d = Draft::from_args(&ConnArgs::default(), &env);
        assert_eq!(d.here_name, "hwidgets", "without --here, PGDATABASE");
    }

    #[test]
    fn only_the_commands_on_an_existing_bootstrap_go_without_tables() {
        let env = [("HOME", "/nonexistent")];
        let args = ConnArgs {
            here: Some("postgres://u@h:1/a".into()),
            there: Some("postgres://u@h:2/a".into()),
            ..Default::default()
        };
        let d = Draft::from_args(&args, &env);
        assert_eq!(d.build().unwrap_err().field, DraftField::Tables);
        assert_eq!(
            d.build_existing().unwrap().tables,
            TableSelection::List(vec![])
        );
        let mut d = d;
        d.tables = "public.foo".into();
        assert_eq!(
            d.build_existing().unwrap().tables,
            TableSelection::List(vec![TableName::parse("public.foo").unwrap()]),
            "--tables given still wins"
        );
    }

    #[test]
    fn bad_input_gets_a_clear_error() {
        let env = [("HOME", "/nonexistent")];
        let mut base = Draft::from_args(&ConnArgs::default(), &env);
        base.there = "postgres://postgres@localhost:5432/other".into();
        let mut d = base.clone();
        d.tables = "public.foo".into();
        d.here = "postgres://h:99999/x".into();
        let e = d.build().unwrap_err();
        assert!(
            e.message.starts_with("HERE:") && e.field == DraftField::Here,
            "{e:?}"
        );
        let mut d = base.clone();
        d.tables = String::new();
        assert!(d.build().unwrap_err().message.contains("--tables"));
        let mut d = base.clone();
        d.tables = "a.b.c".into();
        assert!(d.build().unwrap_err().message.contains("--tables"));
        let mut d = base.clone();
        d.tables = "all".into();
        d.there = d.here.clone();
        assert!(d.build().unwrap_err().message.contains("same database"));
        let mut d = base;
        d.tables = "all".into();
        d.sync = "bad name".into();
        let e = d.build().unwrap_err();
        assert_eq!(e.field, DraftField::Name(NameKind::Sync), "{e:?}");
    }
}
