//! The plan: ordered steps, each with the exact commands or SQL it runs, built purely from the
//! settings, the chosen tables and a few probed facts. The same plan renders the review text
//! (secrets masked) and a standalone bash script that reads its passwords from the environment.

use crate::engine::bucardo::{self as bucardo_cli, BucardoCli, BucardoCmd};
use crate::engine::catalog::TableInfo;
use crate::engine::conn::{ConnSpec, Side};
use crate::engine::coverage::Coverage;
use crate::engine::ident::{quote_ident, quote_literal, shell_word, TableName};
use crate::engine::process::{pg_tool, Invocation, PassfileRef};
use crate::engine::settings::{SequenceMode, Settings};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// The psql variable that stands for the Bucardo role's password in shown and scripted SQL.
pub const BUCARDO_PASS_VAR: &str = ":'bucardo_pass'";

/// Facts probed before planning; they decide which steps are needed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Facts {
    pub there_db_exists: bool,
    /// Every chosen table already exists on THERE (empty): the schema was copied before.
    pub there_schema_present: bool,
    pub bucardo_role_missing_here: bool,
    pub bucardo_role_missing_there: bool,
    pub bucardo_role_missing_control: bool,
    pub control_installed: bool,
    pub daemon_running: bool,
    /// `CREATE DATABASE` options matching HERE's database (encoding, collation).
    pub here_db_encoding: String,
    pub here_db_collate: String,
    pub here_db_ctype: String,
    /// The smaller of HERE's and THERE's shared lock tables, in locks: how many tables one of
    /// Bucardo's trigger transactions may cover ([`bucardo_cli::trigger_batch`]).
    pub lock_slots: Option<u64>,
    /// Relations (tables, indexes, sequences, TOAST tables) in HERE's own schemas: what a
    /// schema restore in one transaction locks on THERE.
    pub here_relations: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum StepKind {
    CopyRoles,
    CreateDatabase,
    CopySchema,
    /// `--convert-generated`: generated columns become trigger-computed plain columns.
    ConvertGenerated,
    BucardoRole,
    InstallBucardo,
    StartDaemon,
    AddDatabases,
    AddTables,
    AddDbgroup,
    AddSync,
    CopyData,
    RefreshMatviews,
    Sequences,
    /// `VACUUM (ANALYZE)` of THERE's freshly copied tables.
    Vacuum,
    /// The first pass of the verification, before the sync is enabled.
    Compare,
    Enable,
    Drain,
    Verify,
}

/// How the live executor runs a SQL command whose text names [`BUCARDO_PASS_VAR`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum SqlSecret {
    None,
    /// `CREATE ROLE` with the password sent as a SCRAM verifier, never in clear.
    CreateRole {
        role: String,
    },
    /// The password is bound as a `$1` parameter.
    Param,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Command {
    Run(Invocation),
    Pipe(Invocation, Invocation),
    Sql {
        side: Side,
        target: ConnSpec,
        sql: String,
        secret: SqlSecret,
    },
    /// Work the engine does itself (COPY streams, polling); the text says what and how.
    Internal(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    pub id: usize,
    pub kind: StepKind,
    pub title: String,
    /// Why the step is there, or why it changes nothing (one line for the review).
    pub why: String,
    pub commands: Vec<Command>,
    /// Finished in an earlier run of the same plan (the journal says so): not run again.
    pub already_done: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub tables: Vec<TableInfo>,
    /// What becomes of everything on HERE: replicated, refreshed once, or left out and why.
    pub coverage: Coverage,
    /// Stable across runs of the same plan: keys the journal.
    pub fingerprint: String,
    /// Tables per transaction of Bucardo's triggers ([`bucardo_cli::trigger_batch`]): the
    /// relgroup grows by this many at a time.
    pub trigger_batch: usize,
    /// HERE and THERE when the sequences are interleaved: the Sequences step's commands, two
    /// per sequence (13 MB of a 10,000-table plan), are rendered from `tables` when shown
    /// ([`Plan::step_lines`]), as the executor renders them when it runs.
    pub sequence_targets: Option<(ConnSpec, ConnSpec)>,
}

impl Plan {
    pub fn build(s: &Settings, tables: Vec<TableInfo>, coverage: Coverage, facts: &Facts) -> Plan {
        let mut steps: Vec<Step> = Vec::new();
        let mut push = |kind, title: &str, why: String, commands: Vec<Command>| {
            steps.push(Step {
                id: steps.len(),
                kind,
                title: title.to_string(),
                why,
                commands,
                already_done: false,
            })
        };
        let here = &s.here;
        let there = &s.there;
        let there_admin = there.with_db("postgres");
        let cli = BucardoCli::from_settings(s);
        let bucardo = |cmd: BucardoCmd| Command::Run(cli.invocation(&cmd, PassfileRef::Daemon));
        let names: Vec<TableName> = tables.iter().map(|t| t.name.clone()).collect();

        if s.copy_roles {
            push(
                StepKind::CopyRoles,
                "Copy roles",
                "pg_dumpall --roles-only from HERE into THERE; roles that exist already are kept"
                    .into(),
                vec![Command::Pipe(
                    pg_invocation(
                        "pg_dumpall",
                        here,
                        PassfileRef::Run,
                        &["--roles-only"],
                        false,
                    ),
                    psql_invocation(&there_admin, PassfileRef::Run, false),
                )],
            );
        }
        if !facts.there_db_exists {
            let sql = format!(
                "CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}",
                quote_ident(&there.dbname),
                quote_literal(or(&facts.here_db_encoding, "UTF8")),
                quote_literal(or(&facts.here_db_collate, "C")),
                quote_literal(or(&facts.here_db_ctype, "C")),
            );
            push(
                StepKind::CreateDatabase,
                "Create THERE's database",
                format!("{} does not exist on THERE yet", there.dbname),
                vec![sql_cmd(Side::There, &there_admin, sql)],
            );
        }
        if facts.there_schema_present {
            push(
                StepKind::CopySchema,
                "Copy the schema",
                "every chosen table already exists, empty, on THERE: the schema is not copied again"
                    .into(),
                vec![],
            );
        } else {
            // One transaction locks every relation it creates until it commits: past half of
            // THERE's lock table the restore runs statement by statement.
            let whole = facts
                .lock_slots
                .is_none_or(|slots| facts.here_relations <= slots / 2);
            let mut restore = psql_invocation(there, PassfileRef::Run, true);
            if !whole {
                restore.argv.retain(|a| a != "--single-transaction");
            }
            push(
                StepKind::CopySchema,
                "Copy the schema",
                if whole {
                    "schema-only dump of HERE (without schema bucardo), restored in one transaction"
                        .into()
                } else {
                    format!(
                        "schema-only dump of HERE (without schema bucardo), restored statement by statement: in one transaction its {} relations would overflow THERE's lock table; if it stops half-way, THERE keeps what was restored (drop THERE's database to start again)",
                        facts.here_relations
                    )
                },
                vec![Command::Pipe(
                    pg_invocation(
                        "pg_dump",
                        here,
                        PassfileRef::Run,
                        &["--schema-only", "-N", "bucardo", "-N", "bucardo_bootstrap"],
                        true,
                    ),
                    restore,
                )],
            );
        }
        if let Some((why, cmds)) = crate::engine::generated::plan_step(s, &tables) {
            push(
                StepKind::ConvertGenerated,
                "Convert generated columns",
                why,
                cmds,
            );
        }
        let mut role_cmds = Vec::new();
        for (missing, side, spec) in [
            (
                facts.bucardo_role_missing_here,
                Side::Here,
                here.with_db(&here.dbname),
            ),
            (
                facts.bucardo_role_missing_there,
                Side::There,
                there_admin.clone(),
            ),
            (
                facts.bucardo_role_missing_control,
                Side::Control,
                s.bucardo.admin.clone(),
            ),
        ] {
            let same_server = |o: &ConnSpec| o.host == spec.host && o.port == spec.port;
            let dup = role_cmds
                .iter()
                .any(|c| matches!(c, Command::Sql { target, .. } if same_server(target)));
            if missing && !dup {
                role_cmds.push(Command::Sql {
                    side,
                    target: spec,
                    sql: create_role_sql(&s.bucardo.user),
                    secret: SqlSecret::CreateRole {
                        role: s.bucardo.user.clone(),
                    },
                });
            }
        }
        if !role_cmds.is_empty() {
            push(
                StepKind::BucardoRole,
                "Create Bucardo's role",
                format!(
                    "Bucardo connects as {:?}, a superuser; created with BUCARDOPASS where missing",
                    s.bucardo.user
                ),
                role_cmds,
            );
        }
        if !facts.control_installed {
            push(
                StepKind::InstallBucardo,
                "Install Bucardo's control database",
                format!("no Bucardo schema in {}", s.bucardo.control.display_uri()),
                vec![Command::Run(cli.invocation(
                    &BucardoCmd::Install {
                        admin_user: s.bucardo.admin.user.clone(),
                        admin_db: s.bucardo.admin.dbname.clone(),
                    },
                    PassfileRef::Run,
                ))],
            );
        }
        if !facts.daemon_running {
            push(
                StepKind::StartDaemon,
                "Start the Bucardo daemon",
                "no daemon answered a ping; the sync is created inactive, so it cannot run early"
                    .into(),
                vec![bucardo(BucardoCmd::Start {
                    reason: "bucardo-bootstrap".into(),
                })],
            );
        }
        let conn = |c: &ConnSpec| c.bucardo_conn();
        push(
            StepKind::AddDatabases,
            "Register both databases",
            "Bucardo's password for them is stored through SQL, never on a command line".into(),
            vec![
                bucardo(BucardoCmd::AddDb {
                    name: s.names.here_db.clone(),
                    dbname: here.dbname.clone(),
                    host: here.host.clone(),
                    port: here.port,
                    user: s.bucardo.user.clone(),
                    conn: conn(here),
                }),
                bucardo(BucardoCmd::AddDb {
                    name: s.names.there_db.clone(),
                    dbname: there.dbname.clone(),
                    host: there.host.clone(),
                    port: there.port,
                    user: s.bucardo.user.clone(),
                    conn: conn(there),
                }),
                Command::Sql {
                    side: Side::Control,
                    target: s.bucardo.control.clone(),
                    sql: format!(
                        "UPDATE bucardo.db SET dbpass = {BUCARDO_PASS_VAR} WHERE name IN ({}, {})",
                        quote_literal(&s.names.here_db),
                        quote_literal(&s.names.there_db)
                    ),
                    secret: SqlSecret::Param,
                },
            ],
        );
        // Bucardo installs its triggers in one transaction per database over the whole
        // relgroup: past one batch the relgroup starts with the first batch and grows batch by
        // batch when the triggers go in.
        let batch = bucardo_cli::trigger_batch(facts.lock_slots);
        let batches: Vec<Vec<TableName>> = if names.is_empty() {
            vec![vec![]]
        } else {
            names.chunks(batch).map(<[TableName]>::to_vec).collect()
        };
        let batched = batches.len() > 1;
        let control = |sql: String| Command::Sql {
            side: Side::Control,
            target: s.bucardo.control.clone(),
            sql,
            secret: SqlSecret::None,
        };
        let db = &s.names.here_db;
        let add_tables = if batched {
            let mut v: Vec<Command> = batches
                .iter()
                .map(|b| control(bucardo_cli::register_tables_sql(db, b)))
                .collect();
            v.push(control(bucardo_cli::join_relgroup_sql(
                &s.names.relgroup,
                db,
                &batches[0],
            )));
            v
        } else {
            vec![bucardo(BucardoCmd::AddTables {
                tables: batches[0].clone(),
                relgroup: s.names.relgroup.clone(),
                db: db.clone(),
            })]
        };
        push(
            StepKind::AddTables,
            "Add the tables to the relgroup",
            if batched {
                format!(
                    "{} tables known to Bucardo in {} batches of at most {batch}, through the SQL `bucardo add table` runs (the command reloads all it knows after each table: hours at 10,000 tables); the first batch into relgroup {}, the others join it as their triggers go in",
                    names.len(),
                    batches.len(),
                    s.names.relgroup
                )
            } else {
                format!("{} tables into relgroup {}", names.len(), s.names.relgroup)
            },
            add_tables,
        );
        push(
            StepKind::AddDbgroup,
            "Create the dbgroup",
            "both databases as sources: master/master".into(),
            vec![bucardo(BucardoCmd::AddDbgroup {
                name: s.names.dbgroup.clone(),
                sources: vec![s.names.here_db.clone(), s.names.there_db.clone()],
            })],
        );
        let mut add_sync = vec![bucardo(BucardoCmd::AddSync {
            name: s.names.sync.clone(),
            relgroup: s.names.relgroup.clone(),
            dbgroup: s.names.dbgroup.clone(),
        })];
        for b in &batches[1..] {
            add_sync.push(control(bucardo_cli::set_relgroup_sql(
                &s.names.relgroup,
                db,
                b,
            )));
            add_sync.push(bucardo(BucardoCmd::Validate {
                sync: s.names.sync.clone(),
            }));
        }
        if batched {
            // Every table back in the relgroup; this validate finds all it needs in place.
            add_sync.push(control(bucardo_cli::join_relgroup_sql(
                &s.names.relgroup,
                db,
                &names,
            )));
            add_sync.push(bucardo(BucardoCmd::Validate {
                sync: s.names.sync.clone(),
            }));
        }
        push(
            StepKind::AddSync,
            "Create the sync (inactive, autokick off)",
            if batched {
                format!(
                    "installs Bucardo's triggers on both sides in {} transactions of at most {batch} tables (one over all {} would overflow the servers' lock tables and lock every table until it commits), the relgroup holding one batch at a time, then all of them: from each commit on every change to its tables is a delta",
                    batches.len(),
                    names.len()
                )
            } else {
                "installs Bucardo's triggers on both sides: from this commit on every change is a delta"
                    .into()
            },
            add_sync,
        );
        // A line per table follows, rendered when shown ([`Plan::step_lines`]).
        let copy_cmds = vec![Command::Internal(format!(
            "export one snapshot on HERE (taken after the triggers committed); {} workers stream \
             COPY ... TO STDOUT into COPY ... FROM STDIN on THERE with session_replication_role = \
             replica, largest table first; then copy sequence values; check that no sync run \
             touched THERE",
            s.jobs
        ))];
        push(
            StepKind::CopyData,
            "Copy the data",
            format!(
                "{} tables, about {} rows, {}",
                tables.len(),
                tables.iter().map(|t| t.est_rows).sum::<i64>(),
                human_bytes(tables.iter().map(|t| t.total_bytes).sum::<i64>())
            ),
            copy_cmds,
        );
        if !coverage.refresh.is_empty() {
            push(
                StepKind::RefreshMatviews,
                "Refresh materialized views on THERE",
                format!(
                    "{} materialized view{}, each after the ones it reads, as pg_dump's data section does; Bucardo never replicates them",
                    coverage.refresh.len(),
                    if coverage.refresh.len() == 1 { "" } else { "s" }
                ),
                coverage
                    .refresh
                    .iter()
                    .map(|m| sql_cmd(Side::There, there, format!("REFRESH MATERIALIZED VIEW {}", m.sql())))
                    .collect(),
            );
        }
        let seqs = sequence_uses(&tables);
        let mut sequence_targets = None;
        if !seqs.is_empty() {
            let (why, cmds) = match s.sequences {
                SequenceMode::Interleave => {
                    sequence_targets = Some((here.clone(), there.clone()));
                    (
                        format!("{} sequences: odd values on HERE, even on THERE, so that both masters never hand out the same key", seqs.len()),
                        vec![],
                    )
                }
                SequenceMode::Keep => (
                    format!("--sequences keep: {} sequences left as copied; keys made on both masters will collide and Bucardo keeps one side's row", seqs.len()),
                    vec![],
                ),
            };
            push(
                StepKind::Sequences,
                "Set up sequences for two masters",
                why,
                cmds,
            );
        }
        let vacuumed = vacuum_order(&tables).len();
        if vacuumed > 0 {
            push(
                StepKind::Vacuum,
                "Vacuum and analyse THERE",
                format!(
                    "{vacuumed} table{}, as after any bulk load: sets the copied rows' hint bits (their first read would rewrite every page) and gives THERE's planner statistics, before Compare reads every row",
                    if vacuumed == 1 { "" } else { "s" }
                ),
                vec![Command::Internal(format!(
                    "{} on THERE at once, largest table first, tables under 64 MB up to {VACUUM_BATCH} to a statement; HERE is not touched",
                    match s.jobs.max(1) {
                        1 => "1 session".to_string(),
                        n => format!("{n} sessions"),
                    }
                ))],
            );
        }
        push(
            StepKind::Compare,
            "Compare the copy",
            "every table's rows on both sides before Bucardo replays anything, so HERE carries only the application and this read".into(),
            vec![Command::Internal(format!(
                "per table, key range by key range ({} rows), each in a short snapshot on each side at the governor's pace: the row count and a sum of 64-bit row hashes; keys in Bucardo's delta tables (changed since the triggers went in) are left out, for Verify",
                thousands(crate::engine::exec::CHUNK_ROWS)
            ))],
        );
        // autokick=1 creates a kick trigger on every table in one transaction; past one batch
        // they go in batch by batch first, and Bucardo then finds them in place.
        let kick = bucardo_cli::kick_trigger(&s.names.sync).filter(|_| batched);
        let mut enable: Vec<Command> = Vec::new();
        if let Some(kick) = &kick {
            for b in &batches {
                for (side, target) in [(Side::Here, here), (Side::There, there)] {
                    enable.push(Command::Sql {
                        side,
                        target: target.clone(),
                        sql: bucardo_cli::kick_triggers_sql(kick, b),
                        secret: SqlSecret::None,
                    });
                }
            }
        }
        enable.push(bucardo(BucardoCmd::ActivateSync {
            name: s.names.sync.clone(),
        }));
        enable.push(bucardo(if batched {
            // The daemon validates the sync over every table before it confirms (about 2
            // minutes at 10,000 tables; Bucardo waits 30 s by default).
            BucardoCmd::ReloadConfigWithin {
                timeout_s: 30 + names.len() as u64 * 3 / 100,
            }
        } else {
            BucardoCmd::ReloadConfig
        }));
        push(
            StepKind::Enable,
            "Enable the sync",
            if kick.is_some() {
                format!(
                    "the kick triggers in {} transactions of at most {batch} tables on each side, then autokick on, status active, and the daemon reloads its configuration",
                    batches.len()
                )
            } else {
                "autokick on, status active, and the daemon reloads its configuration".into()
            },
            enable,
        );
        push(
            StepKind::Drain,
            "Replay the interim deltas",
            "the kick the blog forgets; then wait until every delta logged before it is replayed"
                .into(),
            vec![
                bucardo(BucardoCmd::Kick { sync: s.names.sync.clone(), timeout_s: s.kick_timeout_s }),
                Command::Internal(format!(
                    "poll both sides until no delta older than the kick lacks a track row for 'dbgroup {}', and bucardo.syncrun shows a good run (at most {} s)",
                    s.names.dbgroup, s.kick_timeout_s
                )),
            ],
        );
        push(
            StepKind::Verify,
            "Verify both sides",
            "what Compare left out, once Bucardo has replayed it; rows that keep changing are counted, never called identical".into(),
            vec![Command::Internal(
                format!("the rows changed since the triggers went in, and any that differed, read by key on both sides in up to {} rounds, a kick before each after the first; a run that did not compare (resumed) compares every table as Compare does", crate::engine::exec::VERIFY_ROUNDS),
            )],
        );
        let fingerprint = fingerprint(s, &tables);
        Plan {
            steps,
            tables,
            coverage,
            fingerprint,
            trigger_batch: batch,
            sequence_targets,
        }
    }

    /// A step's commands as the review shows them, line by line.
    pub fn step_lines<'a>(&'a self, step: &'a Step) -> Box<dyn Iterator<Item = String> + 'a> {
        match (&self.sequence_targets, step.kind) {
            (Some((here, there)), StepKind::Sequences) => {
                Box::new(sequence_uses(&self.tables).into_iter().flat_map(|f| {
                    [
                        sql_cmd(Side::Here, here, interleave_here_sql(&f)),
                        sql_cmd(
                            Side::There,
                            there,
                            interleave_there_sql(&f.sequence, ":here_value + 1"),
                        ),
                    ]
                    .into_iter()
                    .flat_map(|c| command_lines(&c))
                }))
            }
            (_, StepKind::Vacuum) => Box::new(
                step.commands.iter().flat_map(command_lines).chain(
                    vacuum_batches(&self.tables)
                        .into_iter()
                        .map(|b| format!("# {}", vacuum_sql(&b))),
                ),
            ),
            (_, StepKind::CopyData) => Box::new(
                step.commands.iter().flat_map(command_lines).chain(
                    self.tables
                        .iter()
                        .flat_map(|t| command_lines(&copy_line(t))),
                ),
            ),
            _ => Box::new(step.commands.iter().flat_map(command_lines)),
        }
    }

    /// The tables in the batches Bucardo's triggers go in by.
    pub fn trigger_batches(&self) -> Vec<Vec<TableName>> {
        self.tables
            .chunks(self.trigger_batch.max(1))
            .map(|c| c.iter().map(|t| t.name.clone()).collect())
            .collect()
    }

    /// Marks the steps an earlier run of this plan finished; they are shown, not run.
    pub fn mark_done(&mut self, done: &[StepKind]) {
        for step in &mut self.steps {
            if done.contains(&step.kind) {
                step.already_done = true;
            }
        }
    }

    /// The review: every step and its exact commands, secrets masked.
    pub fn review_text(&self) -> String {
        let mut out = String::new();
        self.each_review_line(|line| {
            out.push_str(line);
            out.push('\n');
        });
        out
    }

    /// [`Plan::review_text`] line by line, never whole: over 10,000 tables it is 130,000 lines
    /// and 28 MB, which the bootstrap need not hold while it runs.
    pub fn each_review_line(&self, mut f: impl FnMut(&str)) {
        for step in &self.steps {
            let done = if step.already_done {
                "  [done in an earlier run]"
            } else {
                ""
            };
            f(&format!("{:>2}. {}{done}", step.id + 1, step.title));
            f(&format!("    {}", step.why));
            for line in self.step_lines(step) {
                f(&format!("      {line}"));
            }
        }
        f("");
        f("What becomes of HERE's objects:");
        for line in self.coverage.report() {
            f(&format!("  {line}"));
        }
        f(&format!("  {}", self.coverage.line()));
    }

    /// Writes the review to `w` line by line.
    pub fn write_review(&self, w: &mut impl std::io::Write) -> std::io::Result<()> {
        let mut result = Ok(());
        self.each_review_line(|line| {
            if result.is_ok() {
                result = writeln!(w, "{line}");
            }
        });
        result.and_then(|()| w.flush())
    }

    /// A standalone bash script doing the same bootstrap with the seed's own tools. Passwords come
    /// from PGPASSWORD (HERE/THERE superuser) and BUCARDOPASS when it runs.
    pub fn script(&self, s: &Settings) -> String {
        let mut out = String::new();
        out.push_str(SCRIPT_HEADER);
        let _ = writeln!(
            out,
            "STATE_DIR={}",
            shell_word(&s.state_dir().display().to_string())
        );
        let specs: Vec<&ConnSpec> = vec![&s.here, &s.there, &s.bucardo.admin];
        let _ = writeln!(
            out,
            "umask 077; mkdir -p \"$STATE_DIR\" {} {}",
            shell_word(&s.bucardo.piddir.display().to_string()),
            shell_word(&s.bucardo.logdir.display().to_string())
        );
        out.push_str("RUN_PASSFILE=$(mktemp); trap 'rm -f \"$RUN_PASSFILE\"' EXIT\n");
        out.push_str("DAEMON_PASSFILE=\"$STATE_DIR/bucardo.pgpass\"; : > \"$DAEMON_PASSFILE\"\n");
        for spec in specs {
            let _ = writeln!(
                out,
                "pgpass_line {} {} {} \"$PGPASSWORD\" >> \"$RUN_PASSFILE\"",
                shell_word(&spec.host),
                spec.port,
                shell_word(&spec.user)
            );
        }
        for spec in [&s.here, &s.there, &s.bucardo.control] {
            let _ = writeln!(out, "pgpass_line {} {} {} \"$BUCARDOPASS\" | tee -a \"$RUN_PASSFILE\" >> \"$DAEMON_PASSFILE\"", shell_word(&spec.host), spec.port, shell_word(&s.bucardo.user));
        }
        // libpq prefers PGPASSWORD to the passfile: children must not see it (Bucardo's role
        // would be tried with the superuser's password).
        out.push_str("export -n PGPASSWORD\n");
        for step in &self.steps {
            let _ = writeln!(
                out,
                "\nstep {} {}",
                shell_word(&format!("{}.", step.id + 1)),
                shell_word(&step.title)
            );
            match step.kind {
                StepKind::CopyData => out.push_str(&script_copy(s, self)),
                StepKind::Drain => {
                    for c in &step.commands {
                        if let Command::Run(inv) = c {
                            let _ = writeln!(out, "{}", script_invocation(inv));
                        }
                    }
                }
                StepKind::Compare => out.push_str(
                    "# the script compares each table whole, in its Verify step, after the replay\n",
                ),
                StepKind::Vacuum => {
                    let sql: Vec<String> = vacuum_batches(&self.tables)
                        .iter()
                        .map(|b| vacuum_sql(b))
                        .collect();
                    out.push_str(&script_sql(&s.there, &sql.join(";\n")));
                }
                StepKind::Verify => out.push_str(&script_verify(s, self)),
                StepKind::Sequences => out.push_str(&script_sequences(s, self)),
                StepKind::ConvertGenerated => out.push_str(&crate::engine::generated::script(
                    &step.commands,
                    script_sql,
                )),
                _ => {
                    for c in &step.commands {
                        out.push_str(&script_command(c));
                    }
                }
            }
        }
        out.push('\n');
        for line in self.coverage.report() {
            let _ = writeln!(out, "echo {}", shell_word(&line));
        }
        let _ = writeln!(
            out,
            "echo {}",
            shell_word(&format!("Bootstrap finished: {}", self.coverage.line()))
        );
        out
    }
}

const SCRIPT_HEADER: &str = r#"#!/usr/bin/env bash
# Written by bucardo-bootstrap. Bootstraps Bucardo master/master replication.
# Needs: PGPASSWORD (the superuser's password on HERE and THERE) and BUCARDOPASS in the environment.
# No password is ever put on a command line: they go to 0600 passfiles read through PGPASSFILE.
set -euo pipefail
: "${PGPASSWORD?set PGPASSWORD to the superuser password}"
: "${BUCARDOPASS?set BUCARDOPASS to the password of the Bucardo role}"
pgpass_line() { # host port user password -> one escaped .pgpass line
  local esc=()
  for f in "$@"; do f=${f//\\/\\\\}; esc+=("${f//:/\\:}"); done
  printf '%s:%s:*:%s:%s\n' "${esc[0]}" "${esc[1]}" "${esc[2]}" "${esc[3]}"
}
step() { printf '\n==> %s\n' "$*" >&2; }
"#;

fn or<'a>(v: &'a str, d: &'a str) -> &'a str {
    if v.is_empty() {
        d
    } else {
        v
    }
}

fn sql_cmd(side: Side, target: &ConnSpec, sql: String) -> Command {
    Command::Sql {
        side,
        target: target.clone(),
        sql,
        secret: SqlSecret::None,
    }
}

fn create_role_sql(role: &str) -> String {
    format!(
        "SELECT format('CREATE ROLE %I SUPERUSER LOGIN PASSWORD %L', {}, {BUCARDO_PASS_VAR}) WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {}) \\gexec",
        quote_literal(role),
        quote_literal(role)
    )
}

/// A sequence that feeds chosen tables, with every (table, column) it feeds. A partition is
/// replaced by the root of its tree, so that the maximum is taken over every partition.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SequenceFeed {
    pub sequence: TableName,
    pub feeds: Vec<(TableName, String)>,
}

/// Each sequence feeding a chosen table once, with all the tables and columns it feeds.
pub fn sequence_uses(tables: &[TableInfo]) -> Vec<SequenceFeed> {
    let mut by_sequence: std::collections::BTreeMap<&TableName, Vec<(TableName, String)>> =
        std::collections::BTreeMap::new();
    for t in tables {
        let table = t.partition_root.as_ref().unwrap_or(&t.name);
        for u in &t.sequences {
            let feeds = by_sequence.entry(&u.sequence).or_default();
            if !feeds.iter().any(|(t, c)| t == table && *c == u.column) {
                feeds.push((table.clone(), u.column.clone()));
            }
        }
    }
    by_sequence
        .into_iter()
        .map(|(sequence, mut feeds)| {
            feeds.sort();
            SequenceFeed {
                sequence: sequence.clone(),
                feeds,
            }
        })
        .collect()
}

/// HERE's half of interleaving: `INCREMENT BY 2` and a restart at an odd value above everything
/// handed out so far (the sequence and every column it feeds, whole partition trees included),
/// with room for the writes in flight. Returns the value chosen; THERE restarts at that value + 1
/// (even), so the two never meet.
pub fn interleave_here_sql(f: &SequenceFeed) -> String {
    let maxes: String = f
        .feeds
        .iter()
        .map(|(t, c)| {
            format!(
                "(SELECT max({})::bigint FROM {}), ",
                quote_ident(c),
                t.sql()
            )
        })
        .collect();
    format!(
        "ALTER SEQUENCE {s} INCREMENT BY 2;\nSELECT setval({l}, (greatest((SELECT last_value FROM {s}), {maxes}0) + 1000) / 2 * 2 + 1, false)",
        s = f.sequence.sql(),
        l = quote_literal(&f.sequence.sql()),
    )
}

/// THERE's half; `value` is SQL (the executor binds HERE's result, the script a psql variable).
pub fn interleave_there_sql(seq: &TableName, value: &str) -> String {
    format!(
        "ALTER SEQUENCE {s} INCREMENT BY 2;\nSELECT setval({l}, {value}, false)",
        s = seq.sql(),
        l = quote_literal(&seq.sql()),
    )
}

pub fn pg_invocation(
    tool: &str,
    spec: &ConnSpec,
    passfile: PassfileRef,
    extra: &[&str],
    with_db: bool,
) -> Invocation {
    let mut argv = vec![
        pg_tool(tool),
        "-h".into(),
        spec.host.clone(),
        "-p".into(),
        spec.port.to_string(),
        "-U".into(),
        spec.user.clone(),
    ];
    argv.extend(extra.iter().map(|s| s.to_string()));
    if with_db {
        argv.push("-d".into());
        argv.push(spec.dbname.clone());
    } else {
        argv.push("-l".into());
        argv.push(spec.dbname.clone());
    }
    Invocation::new(argv)
        .envs(spec.child_env())
        .passfile(passfile)
}

pub fn psql_invocation(spec: &ConnSpec, passfile: PassfileRef, strict: bool) -> Invocation {
    let mut argv = vec![
        pg_tool("psql"),
        "-X".into(),
        "-q".into(),
        "-h".into(),
        spec.host.clone(),
        "-p".into(),
        spec.port.to_string(),
        "-U".into(),
        spec.user.clone(),
        "-d".into(),
        spec.dbname.clone(),
    ];
    if strict {
        argv.extend([
            "-v".into(),
            "ON_ERROR_STOP=1".into(),
            "--single-transaction".into(),
        ]);
    }
    Invocation::new(argv)
        .envs(spec.child_env())
        .passfile(passfile)
}

/// The tables the Vacuum step vacuums, largest first. A partitioned parent is vacuumed through
/// its leaves; only one without a chosen leaf is named itself (its leaves are vacuumed with it).
pub fn vacuum_order(tables: &[TableInfo]) -> Vec<&TableInfo> {
    let chosen: std::collections::HashSet<&TableName> = tables.iter().map(|t| &t.name).collect();
    let mut out: Vec<&TableInfo> = tables
        .iter()
        .filter(|t| t.relkind == 'r' || !t.partitions.iter().any(|l| chosen.contains(l)))
        .collect();
    out.sort_by_key(|t| std::cmp::Reverse(t.total_bytes));
    out
}

/// A table at least this large is vacuumed by a statement of its own.
const VACUUM_ALONE_BYTES: i64 = 64 << 20;
/// At most this many smaller tables share one statement.
const VACUUM_BATCH: usize = 100;

/// The Vacuum step's statements, largest table first: a table of 64 MB or more alone, smaller
/// ones up to 100 (and 64 MB) to a statement. Each VACUUM statement ends by reading the whole of
/// `pg_class` once (`vac_update_datfrozenxid`): one statement per table made the step quadratic
/// in the table count (7 ms a table on THERE at 10,000 tables, 0.9 ms in batches of 500).
/// PostgreSQL still vacuums and analyses each table in a transaction of its own.
pub fn vacuum_batches(tables: &[TableInfo]) -> Vec<Vec<&TableInfo>> {
    let mut out: Vec<Vec<&TableInfo>> = Vec::new();
    let mut bytes = 0;
    for t in vacuum_order(tables) {
        let size = t.total_bytes.max(0);
        let fits = out.last().is_some_and(|b| {
            b.len() < VACUUM_BATCH
                && b[0].total_bytes < VACUUM_ALONE_BYTES
                && bytes + size <= VACUUM_ALONE_BYTES
        });
        if fits && size < VACUUM_ALONE_BYTES {
            bytes += size;
            out.last_mut().expect("a batch").push(t);
        } else {
            bytes = size;
            out.push(vec![t]);
        }
    }
    out
}

/// One statement of the Vacuum step.
pub fn vacuum_sql(batch: &[&TableInfo]) -> String {
    let names: Vec<String> = batch.iter().map(|t| t.name.sql()).collect();
    format!("VACUUM (ANALYZE) {}", names.join(", "))
}

/// The Copy step's line for one table (the review's; the copy itself may split the table or
/// move it in binary).
fn copy_line(t: &TableInfo) -> Command {
    let cols = t
        .copy_columns()
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    Command::Internal(format!(
        "COPY (SELECT {cols} FROM ONLY {tn}) TO STDOUT  =>  COPY {tn} ({cols}) FROM STDIN",
        tn = t.name.sql()
    ))
}

/// The display lines of one command (review, confirm gate).
pub fn command_lines(c: &Command) -> Vec<String> {
    match c {
        Command::Run(inv) => vec![display_invocation(inv)],
        Command::Pipe(a, b) => vec![
            format!("{} \\", display_invocation(a)),
            format!("  | {}", display_invocation(b)),
        ],
        Command::Sql {
            side, target, sql, ..
        } => {
            let mut v = vec![format!("[{side} {}]", target.display_uri())];
            v.extend(sql.lines().map(|l| format!("  {l}")));
            v
        }
        Command::Internal(text) => vec![format!("# {text}")],
    }
}

/// argv as shell words, with only the non-default environment shown.
pub fn display_invocation(inv: &Invocation) -> String {
    let env: Vec<String> = inv
        .env
        .iter()
        .filter(|(k, v)| {
            k == "PGOPTIONS" || (k == "PGSSLMODE" && v != "prefer") || k == "PGSSLROOTCERT"
        })
        .map(|(k, v)| format!("{k}={}", shell_word(v)))
        .collect();
    let argv: Vec<String> = inv.argv.iter().map(|w| shell_word(w)).collect();
    let mut s = env.join(" ");
    if !s.is_empty() {
        s.push(' ');
    }
    s.push_str(&argv.join(" "));
    s
}

fn script_invocation(inv: &Invocation) -> String {
    let pf_var = match &inv.passfile {
        Some(PassfileRef::Run) => "PGPASSFILE=\"$RUN_PASSFILE\" ".to_string(),
        Some(PassfileRef::Daemon) => "PGPASSFILE=\"$DAEMON_PASSFILE\" ".to_string(),
        Some(PassfileRef::At(p)) => format!("PGPASSFILE={} ", shell_word(&p.display().to_string())),
        None => String::new(),
    };
    let env: String = inv
        .env
        .iter()
        .map(|(k, v)| format!("{k}={} ", shell_word(v)))
        .collect();
    let argv: Vec<String> = inv.argv.iter().map(|w| shell_word(w)).collect();
    let cd = inv
        .cwd
        .as_ref()
        .map(|d| format!("cd {} && ", shell_word(&d.display().to_string())))
        .unwrap_or_default();
    if cd.is_empty() {
        format!("{pf_var}{env}{}", argv.join(" "))
    } else {
        format!("( {cd}{pf_var}{env}{} )", argv.join(" "))
    }
}

fn script_command(c: &Command) -> String {
    match c {
        Command::Run(inv) => format!("{}\n", script_invocation(inv)),
        Command::Pipe(a, b) => format!(
            "{} \\\n  | {}\n",
            script_invocation(a),
            script_invocation(b)
        ),
        Command::Sql { target, sql, .. } => script_sql(target, sql),
        Command::Internal(t) => format!("# {t}\n"),
    }
}

fn script_sql(target: &ConnSpec, sql: &str) -> String {
    let psql = script_invocation(&psql_invocation(target, PassfileRef::Run, false));
    let mut body = String::new();
    body.push_str("\\set ON_ERROR_STOP 1\n");
    if sql.contains(BUCARDO_PASS_VAR) {
        body.push_str("\\set bucardo_pass `printenv BUCARDOPASS`\n");
    }
    body.push_str(sql);
    if !sql.trim_end().ends_with(';') && !sql.trim_end().ends_with("\\gexec") {
        body.push(';');
    }
    format!("{psql} <<'SQL'\n{body}\nSQL\n")
}

fn script_copy(s: &Settings, plan: &Plan) -> String {
    let mut out = String::new();
    let mut dump_args: Vec<String> = vec![
        "--data-only".into(),
        "-N".into(),
        "bucardo".into(),
        "-N".into(),
        "bucardo_bootstrap".into(),
    ];
    for t in &plan.tables {
        dump_args.push("-t".into());
        dump_args.push(t.name.sql());
    }
    let dump_refs: Vec<&str> = dump_args.iter().map(String::as_str).collect();
    let dump = pg_invocation("pg_dump", &s.here, PassfileRef::Run, &dump_refs, true);
    let psql = psql_invocation(&s.there, PassfileRef::Run, true)
        .env("PGOPTIONS", "-c session_replication_role=replica");
    let _ = writeln!(
        out,
        "{} \\\n  | {} >/dev/null",
        script_invocation(&dump),
        script_invocation(&psql)
    );
    let ctl = psql_invocation(&s.bucardo.control, PassfileRef::Run, false);
    let _ = writeln!(
        out,
        "runs=$({} -At -c {})\n[ \"$runs\" = 0 ] || {{ echo \"a sync run touched THERE during the copy\" >&2; exit 1; }}",
        script_invocation(&ctl),
        shell_word(&format!("SELECT count(*) FROM bucardo.syncrun WHERE sync = {}", quote_literal(&s.names.sync)))
    );
    out
}

fn script_sequences(s: &Settings, plan: &Plan) -> String {
    let mut out = String::new();
    let here = script_invocation(&psql_invocation(&s.here, PassfileRef::Run, false));
    let there = script_invocation(&psql_invocation(&s.there, PassfileRef::Run, false));
    for f in sequence_uses(&plan.tables) {
        let h = interleave_here_sql(&f);
        let th = interleave_there_sql(&f.sequence, "@N@");
        let (h1, h2) = h.split_once('\n').unwrap_or((&h, ""));
        let (t1, t2) = th.split_once('\n').unwrap_or((&th, ""));
        let (before, after) = t2.split_once("@N@").unwrap_or((t2, ""));
        let _ = writeln!(
            out,
            "n=$({here} -v ON_ERROR_STOP=1 -At -c {} -c {})\n[[ $n =~ ^[0-9]+$ ]] || {{ echo \"unexpected sequence value: $n\" >&2; exit 1; }}\n{there} -v ON_ERROR_STOP=1 -At -c {} -c {}\"$((n + 1))\"{} >/dev/null",
            shell_word(h1),
            shell_word(h2),
            shell_word(t1),
            shell_word(before),
            shell_word(after),
        );
    }
    out
}

fn script_verify(s: &Settings, plan: &Plan) -> String {
    let mut out = String::new();
    let here = script_invocation(&psql_invocation(&s.here, PassfileRef::Run, false));
    let there = script_invocation(&psql_invocation(&s.there, PassfileRef::Run, false));
    for t in &plan.tables {
        let q = shell_word(&crate::engine::verify::checksum_sql(t));
        let _ = writeln!(
            out,
            "for i in 1 2 3 4 5 6 7 8 9 10; do a=$({here} -At -c {q}); b=$({there} -At -c {q}); [ \"$a\" = \"$b\" ] && break; sleep 3; done\n[ \"$a\" = \"$b\" ] || {{ printf '%s differs: HERE %s, THERE %s\\n' {} \"$a\" \"$b\" >&2; exit 1; }}",
            shell_word(&t.name.to_string())
        );
    }
    out
}

/// Identifies a plan across runs: the servers, Bucardo's names and the chosen tables.
pub fn fingerprint(s: &Settings, tables: &[TableInfo]) -> String {
    let names: Vec<TableName> = tables.iter().map(|t| t.name.clone()).collect();
    fingerprint_names(s, &names)
}

/// [`fingerprint`] from the table names alone (as a journal records them).
pub fn fingerprint_names(s: &Settings, tables: &[TableName]) -> String {
    let mut h = Sha256::new();
    for part in [
        s.here.display_uri(),
        s.there.display_uri(),
        s.bucardo.control.display_uri(),
        s.names.here_db.clone(),
        s.names.there_db.clone(),
        s.names.relgroup.clone(),
        s.names.dbgroup.clone(),
        s.names.sync.clone(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for t in tables {
        h.update(t.raw().as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..8])
}

pub fn human_bytes(b: i64) -> String {
    let b = b.max(0) as f64;
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{} B", b as i64)
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// `2,000,120`: a count with thousands separators.
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::catalog::SequenceUse;

    fn fed(name: &str, root: Option<&str>, seq: &str) -> TableInfo {
        TableInfo {
            name: TableName::new("public", name),
            partition_root: root.map(|r| TableName::new("public", r)),
            is_partition: root.is_some(),
            sequences: vec![SequenceUse {
                sequence: TableName::new("public", seq),
                column: "id".into(),
            }],
            ..TableInfo::default()
        }
    }

    #[test]
    fn a_sequence_feeding_partitions_is_sized_from_the_whole_tree() {
        let tables = [
            fed("payment_p2022_01", Some("payment"), "payment_id_seq"),
            fed("payment_p2022_02", Some("payment"), "payment_id_seq"),
            fed("legacy", None, "payment_id_seq"),
        ];
        let uses = sequence_uses(&tables);
        assert_eq!(uses.len(), 1);
        let sql = interleave_here_sql(&uses[0]);
        assert!(
            sql.contains(r#"max("id")::bigint FROM "public"."payment")"#),
            "{sql}"
        );
        assert!(sql.contains(r#"FROM "public"."legacy")"#), "{sql}");
        assert!(!sql.contains("payment_p2022"), "{sql}");
    }

    #[test]
    fn large_tables_are_vacuumed_alone_and_small_ones_in_batches() {
        let sized = |name: &str, mb: i64| TableInfo {
            name: TableName::new("public", name),
            relkind: 'r',
            total_bytes: mb << 20,
            ..TableInfo::default()
        };
        let mut tables = vec![sized("big", 900), sized("medium", 64)];
        tables.extend((0..250).map(|i| sized(&format!("t{i}"), 0)));
        tables.push(sized("fat", 40));
        tables.push(sized("plump", 30));
        let batches = vacuum_batches(&tables);
        let names = |b: &Vec<&TableInfo>| b.iter().map(|t| t.name.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&batches[0]), ["big"]);
        assert_eq!(names(&batches[1]), ["medium"]);
        // 40 and 30 MB would pass 64 MB together.
        assert_eq!(names(&batches[2]), ["fat"]);
        assert_eq!(batches[3].len(), 100);
        assert_eq!(batches[3][0].name.name, "plump");
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            [1, 1, 1, 100, 100, 51]
        );
        assert_eq!(
            vacuum_sql(&batches[4][..2]),
            r#"VACUUM (ANALYZE) "public"."t99", "public"."t100""#
        );
    }
}
