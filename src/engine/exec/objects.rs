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
        for c in &step.commands {
            if let Command::Run(inv) = c {
                let out = self.run_ok(inv, events).await?;
                if out.stdout.contains("Did not find matches") {
                    return Err(EngineError::Command {
                        program: "bucardo add table".into(),
                        status: "some tables were not found".into(),
                        stderr_tail: out.tail(),
                    });
                }
            }
        }
        let ctl = self.control_as_bucardo().connect(Side::Control).await?;
        let rows = ctl
            .query(
                "SELECT g.schemaname || '.' || g.tablename, coalesce(g.pkey, '') FROM bucardo.goat g JOIN bucardo.herdmap h ON h.goat = g.id WHERE h.herd = $1 AND g.reltype = 'table'",
                &[&self.settings.names.relgroup],
            )
            .await
            .map_err(|e| EngineError::sql(Side::Control, "reading the relgroup", &e))?;
        let registered: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        for t in &plan.tables {
            match registered.iter().find(|(n, _)| *n == t.name.raw()) {
                None => {
                    return Err(EngineError::Refused(format!(
                        "Bucardo did not register {} in relgroup {}",
                        t.name, self.settings.names.relgroup
                    )))
                }
                Some((_, pk)) if pk.is_empty() => {
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
                if have != want || rows.iter().any(|r| r.get::<_, String>(1) != n.here_db) {
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
