//! The Bucardo objects a run registers (databases, tables, dbgroup, sync): created once, and on a
//! resumed run recognised when they exist with the definition the plan wants.

use super::*;

impl LiveExecutor {
    pub(super) async fn add_tables(
        &self,
        plan: &Plan,
        step: &Step,
        events: &mpsc::Sender<RunEvent>,
    ) -> Result<(), EngineError> {
        let total = plan.tables.len();
        let mut sizes = plan.trigger_batches().into_iter().map(|b| b.len());
        let mut known = 0;
        for c in &step.commands {
            match c {
                Command::Run(inv) => {
                    let out = self.run_ok(inv, events).await?;
                    if out.stdout.contains("Did not find matches") {
                        return Err(EngineError::Command {
                            program: "bucardo add table".into(),
                            status: "some tables were not found".into(),
                            stderr_tail: out.tail(),
                        });
                    }
                }
                Command::Sql { sql, secret, .. } => {
                    let started = std::time::Instant::now();
                    self.sql(
                        Side::Control,
                        &self.control_as_bucardo(),
                        sql,
                        secret,
                        events,
                    )
                    .await?;
                    if sql.starts_with("INSERT INTO bucardo.goat") {
                        known += sizes.next().unwrap_or(0);
                        log(
                            events,
                            LogLevel::Notice,
                            format!(
                                "Bucardo knows {known} of {total} tables ({} for this batch: Bucardo looks up each table's key on HERE)",
                                secs(started.elapsed())
                            ),
                        )
                        .await;
                    }
                }
                _ => {}
            }
        }
        let ctl = self.control_as_bucardo().connect(Side::Control).await?;
        let rows = ctl
            .query(
                "SELECT schemaname || '.' || tablename, coalesce(pkey, '') FROM bucardo.goat WHERE db = $1 AND reltype = 'table'",
                &[&self.settings.names.here_db],
            )
            .await
            .map_err(|e| EngineError::sql(Side::Control, "reading Bucardo's tables", &e))?;
        let registered: std::collections::HashMap<String, String> =
            rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        for t in &plan.tables {
            match registered.get(&t.name.raw()) {
                None => {
                    return Err(EngineError::Refused(format!(
                        "Bucardo did not register {} (relgroup {})",
                        t.name, self.settings.names.relgroup
                    )))
                }
                Some(pk) if pk.is_empty() => {
                    return Err(EngineError::Refused(format!(
                        "Bucardo found no key for {}",
                        t.name
                    )))
                }
                _ => {}
            }
        }
        Ok(())
    }

    pub(super) async fn check_triggers(
        &self,
        plan: &Plan,
        events: &mpsc::Sender<RunEvent>,
    ) -> Result<(), EngineError> {
        for (side, spec) in [
            (Side::Here, &self.settings.here),
            (Side::There, &self.settings.there),
        ] {
            let c = spec.connect(side).await?;
            let names: Vec<String> = plan.tables.iter().map(|t| t.name.sql()).collect();
            let n: i64 = c
                .query_one(
                    "SELECT count(DISTINCT tgrelid) FROM pg_trigger WHERE tgname = 'bucardo_delta' AND tgrelid = ANY(SELECT unnest($1::text[])::regclass)",
                    &[&names],
                )
                .await
                .map_err(|e| EngineError::sql(side, "checking Bucardo's triggers", &e))?
                .get(0);
            if n as usize != plan.tables.len() {
                return Err(EngineError::Refused(format!(
                    "{side}: Bucardo's delta trigger is on {n} of {} tables",
                    plan.tables.len()
                )));
            }
        }
        log(
            events,
            LogLevel::Info,
            "Bucardo's triggers are in place on both sides: every change from now on is a delta"
                .into(),
        )
        .await;
        Ok(())
    }

    /// Whether the object a step creates exists already with the definition the plan wants (a
    /// resumed run); an object of that name with another definition is refused.
    pub(super) async fn existing_matches(
        &self,
        plan: &Plan,
        step: &Step,
        events: &mpsc::Sender<RunEvent>,
    ) -> Result<bool, EngineError> {
        let n = &self.settings.names;
        let ctl = self.control_as_bucardo().connect(Side::Control).await?;
        let q = |e: tokio_postgres::Error| {
            EngineError::sql(Side::Control, "reading Bucardo's objects", &e)
        };
        match step.kind {
            StepKind::AddTables => {
                let rows = ctl
                    .query("SELECT g.schemaname || '.' || g.tablename, g.db FROM bucardo.herdmap h JOIN bucardo.goat g ON g.id = h.goat WHERE h.herd = $1", &[&n.relgroup])
                    .await
                    .map_err(q)?;
                if rows.is_empty() {
                    return Ok(false);
                }
                let mut have: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
                have.sort();
                let mut want: Vec<String> = plan.tables.iter().map(|t| t.name.raw()).collect();
                want.sort();
                let ours = rows.iter().all(|r| r.get::<_, String>(1) == n.here_db)
                    && have.iter().all(|h| want.binary_search(h).is_ok());
                // Batch by batch the relgroup grows to the plan's tables: an earlier run that
                // stopped half-way is carried on (adding a table twice changes nothing).
                if ours && have != want {
                    return Ok(false);
                }
                if have != want || !ours {
                    return Err(EngineError::Refused(format!(
                        "relgroup {} exists with other tables ({}); remove it (`bucardo remove relgroup {}`) or choose another --relgroup",
                        n.relgroup,
                        have.join(", "),
                        n.relgroup
                    )));
                }
            }
            StepKind::AddSync => {
                let Some(r) = ctl
                    .query_opt(
                        "SELECT herd, dbs FROM bucardo.sync WHERE name = $1",
                        &[&n.sync],
                    )
                    .await
                    .map_err(q)?
                else {
                    return Ok(false);
                };
                let (herd, dbs): (Option<String>, Option<String>) = (r.get(0), r.get(1));
                if herd.as_deref() != Some(n.relgroup.as_str())
                    || dbs.as_deref() != Some(n.dbgroup.as_str())
                {
                    return Err(EngineError::Refused(format!(
                        "sync {} exists with relgroup {:?} and dbgroup {:?}; remove it (`bucardo remove sync {}`) or choose another --sync",
                        n.sync, herd, dbs, n.sync
                    )));
                }
            }
            _ => return Ok(false),
        }
        log(
            events,
            LogLevel::Info,
            format!(
                "{}: already in Bucardo with the same definition (earlier run)",
                step.title
            ),
        )
        .await;
        Ok(true)
    }

    /// `add db` and `add dbgroup`, skipping what exists with the same definition.
    pub(super) async fn add_objects(
        &self,
        _plan: &Plan,
        step: &Step,
        events: &mpsc::Sender<RunEvent>,
    ) -> Result<(), EngineError> {
        let s = &self.settings;
        let ctl = self.control_as_bucardo().connect(Side::Control).await?;
        let q = |e: tokio_postgres::Error| {
            EngineError::sql(Side::Control, "reading Bucardo's objects", &e)
        };
        for c in &step.commands {
            match c {
                Command::Run(inv) => {
                    let words: Vec<&str> = inv.argv.iter().map(String::as_str).collect();
                    let pos = words.iter().position(|w| *w == "add").unwrap_or(0);
                    let (noun, name) = (
                        words.get(pos + 1).copied().unwrap_or(""),
                        words.get(pos + 2).copied().unwrap_or(""),
                    );
                    let exists = match noun {
                        "db" => {
                            let spec = if name == s.names.here_db {
                                &s.here
                            } else {
                                &s.there
                            };
                            match ctl.query_opt("SELECT dbname, dbhost, dbport, dbuser FROM bucardo.db WHERE name = $1", &[&name]).await.map_err(q)? {
                                None => false,
                                Some(r) => {
                                    let have: (Option<String>, Option<String>, Option<String>, Option<String>) = (r.get(0), r.get(1), r.get(2), r.get(3));
                                    let want = (Some(spec.dbname.clone()), Some(spec.host.clone()), Some(spec.port.to_string()), Some(s.bucardo.user.clone()));
                                    if have != want {
                                        return Err(EngineError::Refused(format!(
                                            "Bucardo database {name} exists for {}@{}:{}/{}; remove it (`bucardo remove db {name} --force`) or set HERE/THERE to other names",
                                            have.3.unwrap_or_default(), have.1.unwrap_or_default(), have.2.unwrap_or_default(), have.0.unwrap_or_default()
                                        )));
                                    }
                                    true
                                }
                            }
                        }
                        "dbgroup" => {
                            let rows = ctl.query("SELECT db, role FROM bucardo.dbmap WHERE dbgroup = $1 ORDER BY db", &[&name]).await.map_err(q)?;
                            if rows.is_empty() {
                                false
                            } else {
                                let mut have: Vec<String> = rows
                                    .iter()
                                    .map(|r| {
                                        format!(
                                            "{}:{}",
                                            r.get::<_, String>(0),
                                            r.get::<_, String>(1)
                                        )
                                    })
                                    .collect();
                                have.sort();
                                let mut want = vec![
                                    format!("{}:source", s.names.here_db),
                                    format!("{}:source", s.names.there_db),
                                ];
                                want.sort();
                                if have != want {
                                    return Err(EngineError::Refused(format!(
                                        "dbgroup {name} exists as {}; remove it (`bucardo remove dbgroup {name}`) or choose another --dbgroup",
                                        have.join(" ")
                                    )));
                                }
                                true
                            }
                        }
                        _ => false,
                    };
                    if exists {
                        log(events, LogLevel::Info, format!("{noun} {name} is already in Bucardo with the same definition (earlier run)")).await;
                    } else {
                        self.run_ok(inv, events).await?;
                    }
                }
                Command::Sql {
                    side, sql, secret, ..
                } => {
                    self.sql(*side, &self.control_as_bucardo(), sql, secret, events)
                        .await?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

impl LiveExecutor {
    /// `add sync` over the relgroup's first batch, then each further batch joins the relgroup
    /// and `validate` installs its triggers, each behind the lock gate. Says, batch by batch, how
    /// many tables have their triggers and how long HERE's tables were locked.
    pub(super) async fn add_sync(
        &self,
        plan: &Plan,
        step: &Step,
        exists: bool,
        events: &mpsc::Sender<RunEvent>,
        cancel: &CancellationToken,
    ) -> Result<(), EngineError> {
        let total = plan.tables.len();
        let (first, rest) = step.commands.split_at(1.min(step.commands.len()));
        let mut table_batches = plan.trigger_batches().into_iter();
        let first_batch = if rest.is_empty() {
            table_names(plan)
        } else {
            table_batches.next().unwrap_or_default()
        };
        let later: Vec<(Vec<TableName>, &[Command])> = rest
            .chunks(2)
            .map(|pair| (table_batches.next().unwrap_or_default(), pair))
            .collect();
        let batches = 1 + later.iter().filter(|(t, _)| !t.is_empty()).count();
        let mut done = first_batch.len();
        let mut longest = Duration::ZERO;
        if !exists {
            let held = self
                .give_way_while(
                    "installing its triggers",
                    first,
                    &first_batch,
                    events,
                    cancel,
                )
                .await?;
            longest = longest.max(held);
            self.triggers_progress(done, total, 1, batches, held, events)
                .await;
        }
        for (i, (tables, pair)) in later.iter().enumerate() {
            let (join, validate) = pair.split_at(1);
            if let Some(Command::Sql { sql, secret, .. }) = join.first() {
                self.sql(
                    Side::Control,
                    &self.control_as_bucardo(),
                    sql,
                    secret,
                    events,
                )
                .await?;
            }
            // The last pair puts every table back in the relgroup: nothing left to install.
            let last = tables.is_empty();
            let all;
            let gated = if last {
                all = table_names(plan);
                &all
            } else {
                tables
            };
            let started = std::time::Instant::now();
            let held = self
                .give_way_while("installing its triggers", validate, gated, events, cancel)
                .await?;
            longest = longest.max(held);
            if last {
                log(
                    events,
                    LogLevel::Notice,
                    format!(
                        "the relgroup holds all {total} tables again and Bucardo validated the sync over them ({})",
                        secs(started.elapsed())
                    ),
                )
                .await;
            } else {
                done += tables.len();
                self.triggers_progress(done, total, i + 2, batches, held, events)
                    .await;
            }
        }
        if batches > 1 {
            log(
                events,
                LogLevel::Notice,
                format!(
                    "HERE's tables were locked (writes waited, reads went on) while Bucardo installed their triggers: at most {} for any table, in {batches} transactions of at most {} tables",
                    secs(longest),
                    first_batch.len().max(later.iter().map(|(t, _)| t.len()).max().unwrap_or(0))
                ),
            )
            .await;
        }
        Ok(())
    }

    async fn triggers_progress(
        &self,
        done: usize,
        total: usize,
        batch: usize,
        batches: usize,
        held: Duration,
        events: &mpsc::Sender<RunEvent>,
    ) {
        let of = if batches > 1 {
            format!(" (batch {batch} of {batches})")
        } else {
            String::new()
        };
        log(
            events,
            LogLevel::Notice,
            format!(
                "Bucardo's triggers are on {done} of {total} tables{of}; their locks on HERE were held {}",
                if held.is_zero() {
                    "too briefly to be sampled".to_string()
                } else {
                    format!("for at most {} (sampled every {} ms)", secs(held), super::locks::LOCK_SAMPLE.as_millis())
                }
            ),
        )
        .await;
    }

    /// The kick triggers batch by batch on both sides (when the plan has them), then
    /// `update sync autokick=1 status=active` behind the lock gate, then the reload.
    pub(super) async fn enable(
        &self,
        plan: &Plan,
        step: &Step,
        events: &mpsc::Sender<RunEvent>,
        cancel: &CancellationToken,
    ) -> Result<(), EngineError> {
        let kicks: Vec<(Side, &ConnSpec, &str)> = step
            .commands
            .iter()
            .filter_map(|c| match c {
                Command::Sql {
                    side, target, sql, ..
                } => Some((*side, target, sql.as_str())),
                _ => None,
            })
            .collect();
        let runs: Vec<Command> = step
            .commands
            .iter()
            .filter(|c| matches!(c, Command::Run(_)))
            .cloned()
            .collect();
        if !kicks.is_empty() {
            let mut sessions = Vec::new();
            for side in [Side::Here, Side::There] {
                let spec = if side == Side::Here {
                    &self.settings.here
                } else {
                    &self.settings.there
                };
                let c = self.connect_as(side, spec).await?;
                crate::engine::giveway::prepare_session(&c, side).await?;
                sessions.push((side, c));
            }
            let batches = kicks.iter().filter(|(s, _, _)| *s == Side::Here).count();
            let (mut longest, mut n) = (Duration::ZERO, 0);
            for (side, _, sql) in &kicks {
                let Some((_, c)) = sessions.iter().find(|(s, _)| s == side) else {
                    continue;
                };
                if cancel.is_cancelled() {
                    return Err(EngineError::Aborted);
                }
                let started = std::time::Instant::now();
                let gave_way = crate::engine::giveway::run_sql(c, *side, sql).await?;
                let took = started.elapsed();
                self.gave_way
                    .fetch_add(gave_way, std::sync::atomic::Ordering::Relaxed);
                if *side == Side::Here {
                    n += 1;
                    longest = longest.max(took);
                    log(
                        events,
                        LogLevel::Notice,
                        format!(
                            "[HERE] kick triggers: batch {n} of {batches} in place; its tables were locked for at most {}{}",
                            secs(took),
                            if gave_way > 0 { format!(" (gave way to the application {gave_way} times first)") } else { String::new() }
                        ),
                    )
                    .await;
                }
            }
            log(
                events,
                LogLevel::Notice,
                format!(
                    "the kick triggers are on all {} tables of both sides; HERE's tables were locked for at most {} each",
                    plan.tables.len(),
                    secs(longest)
                ),
            )
            .await;
        }
        // autokick=1 makes Bucardo create its kick triggers where they are missing; the reload
        // after it only reconnects, with the role's settings back to normal.
        let (activate, reload) = runs.split_at(1.min(runs.len()));
        let held = self
            .give_way_while(
                "enabling the sync",
                activate,
                &table_names(plan),
                events,
                cancel,
            )
            .await?;
        if kicks.is_empty() {
            log(
                events,
                LogLevel::Notice,
                format!(
                    "Bucardo's kick triggers are in place; their locks on HERE were held {}",
                    if held.is_zero() {
                        "too briefly to be sampled".to_string()
                    } else {
                        format!("for at most {}", secs(held))
                    }
                ),
            )
            .await;
        }
        self.run_commands(reload, events).await
    }
}
