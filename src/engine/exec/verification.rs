//! Verification against the live sync: compare every table in a snapshot on each side, leave out
//! only the keys that change meanwhile, and compare a mismatch again after a kick.

use super::*;

impl LiveExecutor {
    pub(super) async fn verify(
        &self,
        plan: &Plan,
        events: &mpsc::Sender<RunEvent>,
        cancel: &CancellationToken,
    ) -> Result<(), EngineError> {
        let verdicts = verify_tables(
            &self.settings,
            &plan.tables,
            Some(&self.cli_kick()),
            events,
            cancel,
        )
        .await?;
        let bad: Vec<String> = verdicts
            .iter()
            .filter(|v| !v.matches)
            .map(|v| v.table.to_string())
            .collect();
        if bad.is_empty() {
            Ok(())
        } else {
            Err(EngineError::Refused(format!(
                "HERE and THERE differ on {}",
                bad.join(", ")
            )))
        }
    }

    pub(super) fn cli_kick(&self) -> Invocation {
        let inv = self.cli().invocation(
            &BucardoCmd::Kick {
                sync: self.settings.names.sync.clone(),
                timeout_s: 30,
            },
            self.daemon_passfile.path(),
        );
        self.real(&inv)
    }
}

/// How many times a differing table is compared again (after a kick) before it is reported.
pub const VERIFY_ATTEMPTS: usize = 6;

/// Compares every table while replication may be live. With Bucardo's delta tables present
/// (after a bootstrap): everything logged before the start is replayed first (kick, then wait),
/// then each table is compared in two snapshots, leaving out only the keys changed since the
/// start on either side (read after the snapshots, so no change can slip between them). Every
/// other row must be identical. A mismatch is compared again after a kick, and reported as
/// "still changing" when the figures moved between attempts.
pub async fn verify_tables(
    s: &Settings,
    tables: &[TableInfo],
    kick: Option<&Invocation>,
    events: &mpsc::Sender<RunEvent>,
    cancel: &CancellationToken,
) -> Result<Vec<TableVerdict>, EngineError> {
    verify_tables_mode(
        s,
        tables,
        kick,
        verify::VerifyMode::Checksum,
        events,
        cancel,
    )
    .await
    .map(|(v, _)| v)
}

/// [`verify_tables`] with a mode; also returns the keys left out per table (in flight).
pub async fn verify_tables_mode(
    s: &Settings,
    tables: &[TableInfo],
    kick: Option<&Invocation>,
    mode: verify::VerifyMode,
    events: &mpsc::Sender<RunEvent>,
    cancel: &CancellationToken,
) -> Result<(Vec<TableVerdict>, Vec<Vec<String>>), EngineError> {
    let here = s.here.connect(Side::Here).await?;
    let there = s.there.connect(Side::There).await?;
    let here_keys = s.here.connect(Side::Here).await?;
    let there_keys = s.there.connect(Side::There).await?;
    verify::prepare_session(&here, Side::Here).await?;
    verify::prepare_session(&there, Side::There).await?;
    let live = verify::has_deltas(&here, Side::Here).await?
        && verify::has_deltas(&there, Side::There).await?;
    let here_t0 = bucardo::server_now(&here, Side::Here).await?;
    let there_t0 = bucardo::server_now(&there, Side::There).await?;
    if live {
        if let Some(k) = kick {
            let _ = process::run(k, Duration::from_secs(60)).await;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            loop {
                let pending =
                    interim_pending(s, (&here_keys, &here_t0), (&there_keys, &there_t0)).await?;
                if pending.is_empty() || tokio::time::Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        }
    }
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for t in tables {
        let mut seen = Vec::new();
        let mut last_skip = Vec::new();
        let mut verdict = None;
        for attempt in 0..VERIFY_ATTEMPTS {
            if cancel.is_cancelled() {
                return Err(EngineError::Aborted);
            }
            let begin = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT 1";
            let (r1, r2) = tokio::join!(here.batch_execute(begin), there.batch_execute(begin));
            r1.map_err(|e| EngineError::sql(Side::Here, "opening the verify snapshot", &e))?;
            r2.map_err(|e| EngineError::sql(Side::There, "opening the verify snapshot", &e))?;
            let mut skip = Vec::new();
            if live && !t.key_columns.is_empty() {
                skip.extend(verify::recent_keys(&here_keys, Side::Here, t, &here_t0).await?);
                skip.extend(verify::recent_keys(&there_keys, Side::There, t, &there_t0).await?);
                skip.sort();
                skip.dedup();
            }
            let sums = tokio::try_join!(
                verify::table_sum_except(&here, Side::Here, t, &skip),
                verify::table_sum_except(&there, Side::There, t, &skip)
            );
            let _ = tokio::join!(here.batch_execute("COMMIT"), there.batch_execute("COMMIT"));
            let (a, b) = sums?;
            let matches = if mode == verify::VerifyMode::Fast {
                a.rows == b.rows
            } else {
                a == b
            };
            last_skip = skip.clone();
            seen.push((a.clone(), b.clone()));
            if matches || attempt + 1 == VERIFY_ATTEMPTS || kick.is_none() {
                let changing = !matches && seen.windows(2).any(|w| w[0] != w[1]);
                verdict = Some(TableVerdict {
                    table: t.name.clone(),
                    here_rows: a.rows,
                    there_rows: b.rows,
                    matches,
                    changing,
                    in_flight: skip.len() as i64,
                });
                break;
            }
            if let Some(k) = kick {
                let _ = process::run(k, Duration::from_secs(40)).await;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        let v = verdict.expect("at least one attempt");
        let _ = events.send(RunEvent::Verified(v.clone())).await;
        out.push(v);
        skipped.push(last_skip);
    }
    Ok((out, skipped))
}

/// What `verify` prints, and how many tables differ.
pub struct VerifyReport {
    pub text: String,
    pub differences: usize,
}

/// The `verify` command: the chosen tier over every table, and with `Deep`, each differing table
/// narrowed down to key buckets and then rows (at most [`DEEP_ROWS_SHOWN`] per table).
pub async fn verify_command(
    s: &Settings,
    tables: &[TableInfo],
    mode: verify::VerifyMode,
    events: &mpsc::Sender<RunEvent>,
    cancel: &CancellationToken,
) -> Result<VerifyReport, EngineError> {
    let kick = verify_kick(s);
    let (verdicts, skipped) =
        verify_tables_mode(s, tables, kick.as_ref(), mode, events, cancel).await?;
    let mut text = String::new();
    let mut differences = 0;
    for ((v, t), skip) in verdicts.iter().zip(tables).zip(&skipped) {
        let state = v.word();
        if !v.matches {
            differences += 1;
        }
        let flight = if v.in_flight > 0 {
            format!("\t{} rows in flight left out", v.in_flight)
        } else {
            String::new()
        };
        text.push_str(&format!(
            "{}\t{state}\tHERE {} rows\tTHERE {} rows{flight}\n",
            v.table, v.here_rows, v.there_rows
        ));
        if mode == verify::VerifyMode::Deep && !v.matches && !t.key_columns.is_empty() {
            let here = s.here.connect(Side::Here).await?;
            let there = s.there.connect(Side::There).await?;
            let (hb, tb) = tokio::try_join!(
                verify::bucket_sums(&here, Side::Here, t, skip),
                verify::bucket_sums(&there, Side::There, t, skip)
            )?;
            let hm: std::collections::BTreeMap<i32, String> = hb.into_iter().collect();
            let tm: std::collections::BTreeMap<i32, String> = tb.into_iter().collect();
            let buckets: Vec<i32> = hm
                .keys()
                .chain(tm.keys())
                .copied()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .filter(|b| hm.get(b) != tm.get(b))
                .collect();
            text.push_str(&format!(
                "  {} of {} key buckets differ\n",
                buckets.len(),
                verify::DEEP_BUCKETS
            ));
            let mut shown = 0;
            for b in buckets {
                let (hr, tr) = tokio::try_join!(
                    verify::bucket_rows(&here, Side::Here, t, b, skip),
                    verify::bucket_rows(&there, Side::There, t, b, skip)
                )?;
                for d in verify::diff_rows(&hr, &tr) {
                    if shown < DEEP_ROWS_SHOWN {
                        text.push_str(&format!("  key {}: {}\n", d.key, d.what));
                    }
                    shown += 1;
                }
            }
            if shown > DEEP_ROWS_SHOWN {
                text.push_str(&format!(
                    "  ... and {} more rows\n",
                    shown - DEEP_ROWS_SHOWN
                ));
            }
        }
    }
    Ok(VerifyReport { text, differences })
}

/// At most this many differing rows are printed per table by `verify --deep`.
pub const DEEP_ROWS_SHOWN: usize = 20;

/// A kick for re-checks, when the sync exists (otherwise differences are final at once).
pub(super) fn verify_kick(s: &Settings) -> Option<Invocation> {
    let state = s.state_dir();
    let pf = state.join("bucardo.pgpass");
    if !pf.exists() {
        return None;
    }
    let cli = BucardoCli::from_settings(s);
    Some(cli.invocation(
        &BucardoCmd::Kick {
            sync: s.names.sync.clone(),
            timeout_s: 30,
        },
        pf.as_path(),
    ))
}
