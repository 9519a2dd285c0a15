//! What becomes of every object of HERE: replicated by the sync, copied once and refreshed
//! (materialized views), or left out with the reason and the fix. The rule that turns a table
//! selection and `--leave-out` into the tables a run replicates lives here, with the one account
//! of the outcome that `check`, the review, the Done screen, the headless summary and `status`
//! print, and whose last line ("replicating N tables; M left out") ends a run.

use crate::engine::catalog::{self, TableInfo};
use crate::engine::conn::Side;
use crate::engine::error::EngineError;
use crate::engine::generated;
use crate::engine::ident::TableName;
use crate::engine::settings::TableSelection;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use tokio_postgres::Client;

/// The reason of a table a `--tables` list does not name.
pub const NOT_CHOSEN: &str = "not chosen";

/// The reason of a sequence no replicated table uses.
pub const UNUSED_SEQUENCE: &str =
    "feeds no replicated table: neither its value nor its increment is touched";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    Table,
    /// A partitioned parent: Bucardo replicates its leaf partitions, never the parent.
    Partitioned,
    MaterializedView,
    Sequence,
    LargeObjects,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fate {
    Replicated,
    /// A partitioned parent whose leaves (this many) all replicate.
    ThroughLeaves(usize),
    /// A materialized view refreshed on THERE once the tables are copied; never replicated.
    Refreshed {
        /// Tables it reads that are left out: on THERE it is computed without their rows.
        reads_left_out: Vec<TableName>,
    },
    LeftOut {
        reason: String,
        fix: Option<String>,
        /// The operator asked for it: named in `--leave-out`, or not in a `--tables` list.
        acknowledged: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub kind: Kind,
    pub name: String,
    pub fate: Fate,
}

/// The account of HERE's objects for one selection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    pub entries: Vec<Entry>,
    /// The materialized views to refresh on THERE, in order.
    #[serde(default)]
    pub refresh: Vec<TableName>,
    /// How many of the replicated tables are partitions.
    #[serde(default)]
    pub partitions: usize,
}

/// A materialized view of HERE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matview {
    pub name: TableName,
    pub populated: bool,
    /// Tables it reads, through views and other materialized views.
    pub reads: Vec<TableName>,
}

/// What HERE holds besides tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extras {
    /// In refresh order: a materialized view after those it reads.
    pub matviews: Vec<Matview>,
    pub sequences: Vec<TableName>,
    pub large_objects: i64,
}

/// HERE's catalog as one command reads it: its tables and what else the coverage accounts for.
/// Read once and passed on, so that a command resolves its selection as often as it needs
/// without listing 10,000 tables again each time.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    pub tables: Vec<TableInfo>,
    pub extras: Extras,
}

impl Catalog {
    /// Lists the tables and reads the extras on the one session, the queries pipelined.
    pub async fn read(c: &Client, side: Side) -> Result<Catalog, EngineError> {
        Catalog::read_on(c, c, side).await
    }

    /// [`Catalog::read`] shared out between two sessions of the same database
    /// ([`catalog::list_tables_on`]).
    pub async fn read_on(a: &Client, b: &Client, side: Side) -> Result<Catalog, EngineError> {
        let (tables, extras) = tokio::try_join!(
            catalog::list_tables_on(a, b, side, None),
            read_extras(b, side)
        )?;
        Ok(Catalog { tables, extras })
    }

    /// Resolves a selection ([`select`]); with `convert_generated`, generated columns count as
    /// converted ([`generated::opt_in`]).
    pub fn select(
        &self,
        convert_generated: bool,
        selection: &TableSelection,
        leave_out: &[TableName],
    ) -> Selected {
        if convert_generated {
            self.clone()
                .into_selected(convert_generated, selection, leave_out)
        } else {
            select_from(&self.tables, &self.extras, selection, leave_out)
        }
    }

    /// [`Catalog::select`] for the last use of the catalog: the chosen tables are moved, not
    /// copied.
    pub fn into_selected(
        mut self,
        convert_generated: bool,
        selection: &TableSelection,
        leave_out: &[TableName],
    ) -> Selected {
        generated::opt_in(&mut self.tables, convert_generated);
        select(self.tables, &self.extras, selection, leave_out)
    }

    /// The names of the tables [`Catalog::select`] chooses, without copying the tables.
    pub fn chosen_names(
        &self,
        convert_generated: bool,
        selection: &TableSelection,
        leave_out: &[TableName],
    ) -> Vec<TableName> {
        let converted;
        let all = if convert_generated {
            let mut all = self.tables.clone();
            generated::opt_in(&mut all, true);
            converted = all;
            &converted
        } else {
            &self.tables
        };
        let (_, chosen) = account(all, &self.extras, selection, leave_out);
        all.iter()
            .zip(chosen)
            .filter(|(_, c)| *c)
            .map(|(t, _)| t.name.clone())
            .collect()
    }
}

/// Why a selection cannot go ahead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// `selection` or `foreign keys`.
    pub check: &'static str,
    pub message: String,
    pub fix: Option<String>,
}

/// A selection resolved against HERE's catalog.
#[derive(Clone, Debug, Default)]
pub struct Selected {
    pub chosen: Vec<TableInfo>,
    pub coverage: Coverage,
    pub refusals: Vec<Refusal>,
    /// Foreign keys to tables left out on purpose (`--leave-out`): allowed, worth a warning.
    pub accepted_fks: Vec<String>,
}

const SYSTEM_SCHEMAS: &str =
    "n.nspname NOT IN ('pg_catalog', 'information_schema', 'bucardo', 'bucardo_bootstrap') AND n.nspname NOT LIKE 'pg\\_%'";

/// Reads HERE's materialized views (in refresh order, with what they read), sequences and the
/// number of large objects.
pub async fn read_extras(c: &Client, side: Side) -> Result<Extras, EngineError> {
    let q = |ctx: &'static str| move |e: tokio_postgres::Error| EngineError::sql(side, ctx, &e);
    // Relations (what a materialized view may read) only where there is a materialized view.
    let views = c
        .query(
            &format!(
                "SELECT c.oid, n.nspname, c.relname, c.relkind::text, c.relispopulated
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.relkind IN ('v', 'm', 'r', 'p') AND {SYSTEM_SCHEMAS}
                    AND EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                                 WHERE c.relkind = 'm' AND {SYSTEM_SCHEMAS})"
            ),
            &[],
        )
        .await
        .map_err(q("reading materialized views"))?;
    // oid → (name, kind, populated)
    let rels: HashMap<u32, (TableName, char, bool)> = views
        .iter()
        .map(|r| {
            let kind: String = r.get(3);
            (
                r.get::<_, u32>(0),
                (
                    TableName::new(r.get::<_, String>(1), r.get::<_, String>(2)),
                    kind.chars().next().unwrap_or('r'),
                    r.get::<_, bool>(4),
                ),
            )
        })
        .collect();
    let mut matviews = Vec::new();
    if rels.values().any(|(_, k, _)| *k == 'm') {
        let edges = c
            .query(
                "SELECT DISTINCT r.ev_class, d.refobjid
                   FROM pg_rewrite r
                   JOIN pg_class c ON c.oid = r.ev_class AND c.relkind IN ('v', 'm')
                   JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                                   AND d.refclassid = 'pg_class'::regclass
                  WHERE d.refobjid <> r.ev_class",
                &[],
            )
            .await
            .map_err(q("reading what materialized views read"))?;
        let mut deps: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
        for e in edges {
            deps.entry(e.get(0)).or_default().insert(e.get(1));
        }
        matviews = matview_order(&rels, &deps);
    }
    let sequences = c
        .query(
            &format!(
                "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.relkind = 'S' AND {SYSTEM_SCHEMAS} ORDER BY 1, 2"
            ),
            &[],
        )
        .await
        .map_err(q("reading sequences"))?
        .iter()
        .map(|r| TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect();
    let large_objects: i64 = c
        .query_one("SELECT count(*) FROM pg_largeobject_metadata", &[])
        .await
        .map_err(q("counting large objects"))?
        .get(0);
    Ok(Extras {
        matviews,
        sequences,
        large_objects,
    })
}

/// Materialized views, each after the ones it reads (through views too), with the tables each
/// reads.
fn matview_order(
    rels: &HashMap<u32, (TableName, char, bool)>,
    deps: &BTreeMap<u32, BTreeSet<u32>>,
) -> Vec<Matview> {
    fn walk(
        oid: u32,
        rels: &HashMap<u32, (TableName, char, bool)>,
        deps: &BTreeMap<u32, BTreeSet<u32>>,
        seen: &mut BTreeSet<u32>,
        reads: &mut BTreeSet<TableName>,
        matviews: &mut Vec<u32>,
    ) {
        for d in deps.get(&oid).into_iter().flatten() {
            if !seen.insert(*d) {
                continue;
            }
            match rels.get(d) {
                Some((n, 'r' | 'p', _)) => {
                    reads.insert(n.clone());
                }
                Some((_, 'm', _)) => {
                    matviews.push(*d);
                    walk(*d, rels, deps, seen, reads, matviews);
                }
                Some((_, 'v', _)) => walk(*d, rels, deps, seen, reads, matviews),
                _ => {}
            }
        }
    }
    let mut mv: Vec<(&TableName, u32, bool)> = rels
        .iter()
        .filter(|(_, (_, k, _))| *k == 'm')
        .map(|(oid, (n, _, p))| (n, *oid, *p))
        .collect();
    mv.sort();
    let mut order: Vec<u32> = Vec::new();
    let mut info: HashMap<u32, Matview> = HashMap::new();
    // Depth-first: the views a matview reads come before it.
    fn visit(
        oid: u32,
        rels: &HashMap<u32, (TableName, char, bool)>,
        deps: &BTreeMap<u32, BTreeSet<u32>>,
        order: &mut Vec<u32>,
        info: &mut HashMap<u32, Matview>,
        on_path: &mut BTreeSet<u32>,
    ) {
        if info.contains_key(&oid) || !on_path.insert(oid) {
            return;
        }
        let (mut seen, mut reads, mut inner) = (BTreeSet::new(), BTreeSet::new(), Vec::new());
        walk(oid, rels, deps, &mut seen, &mut reads, &mut inner);
        for m in inner {
            visit(m, rels, deps, order, info, on_path);
        }
        let (name, _, populated) = &rels[&oid];
        info.insert(
            oid,
            Matview {
                name: name.clone(),
                populated: *populated,
                reads: reads.into_iter().collect(),
            },
        );
        order.push(oid);
    }
    for (_, oid, _) in &mv {
        visit(
            *oid,
            rels,
            deps,
            &mut order,
            &mut info,
            &mut BTreeSet::new(),
        );
    }
    order.into_iter().filter_map(|o| info.remove(&o)).collect()
}

/// Resolves the selection: the tables to replicate, the account of everything else, and what
/// refuses the selection (names not found, foreign keys to a table left out unasked).
pub fn select(
    all: Vec<TableInfo>,
    extras: &Extras,
    selection: &TableSelection,
    leave_out: &[TableName],
) -> Selected {
    let (mut out, chosen) = account(&all, extras, selection, leave_out);
    out.chosen = all
        .into_iter()
        .zip(chosen)
        .filter(|(_, c)| *c)
        .map(|(t, _)| t)
        .collect();
    out.coverage.partitions = out.chosen.iter().filter(|t| t.is_partition).count();
    out
}

/// [`select`] without taking the tables: the chosen ones are copied.
pub fn select_from(
    all: &[TableInfo],
    extras: &Extras,
    selection: &TableSelection,
    leave_out: &[TableName],
) -> Selected {
    let (mut out, chosen) = account(all, extras, selection, leave_out);
    out.chosen = all
        .iter()
        .zip(chosen)
        .filter(|(_, c)| *c)
        .map(|(t, _)| t.clone())
        .collect();
    out.coverage.partitions = out.chosen.iter().filter(|t| t.is_partition).count();
    out
}

/// [`select`]'s account, refusals and warnings, and which of `all` are chosen.
fn account<'a>(
    all: &'a [TableInfo],
    extras: &Extras,
    selection: &'a TableSelection,
    leave_out: &'a [TableName],
) -> (Selected, Vec<bool>) {
    let mut out = Selected::default();
    let by_name: HashMap<&TableName, &TableInfo> = all.iter().map(|t| (&t.name, t)).collect();
    // A partitioned table named in --leave-out leaves out its whole tree.
    let named: HashSet<&TableName> = leave_out.iter().collect();
    let named_out: HashSet<&TableName> = leave_out
        .iter()
        .chain(
            all.iter()
                .filter(|t| named.contains(&t.name))
                .flat_map(|t| t.partitions.iter()),
        )
        .collect();
    for n in leave_out {
        if !by_name.contains_key(n) {
            out.refusals.push(Refusal {
                check: "selection",
                message: format!("--leave-out names {n}, which does not exist on HERE"),
                fix: None,
            });
        }
    }
    let chosen: HashSet<&TableName> = match selection {
        TableSelection::All => all
            .iter()
            .filter(|t| t.is_eligible() && !named_out.contains(&t.name))
            .map(|t| &t.name)
            .collect(),
        TableSelection::List(names) => {
            for n in names {
                if !by_name.contains_key(n) {
                    out.refusals.push(Refusal {
                        check: "selection",
                        message: format!(
                            "{n} does not exist on HERE (names are case-sensitive: write \"Mixed Case\".\"Table\" for those)"
                        ),
                        fix: None,
                    });
                }
                if named_out.contains(n) {
                    out.refusals.push(Refusal {
                        check: "selection",
                        message: format!("{n} is both in --tables and in --leave-out"),
                        fix: None,
                    });
                }
            }
            names.iter().filter(|n| by_name.contains_key(n)).collect()
        }
    };
    // A parent counts as covered when every leaf of its tree replicates.
    let through_leaves = |t: &TableInfo| {
        t.relkind == 'p'
            && !t.partitions.is_empty()
            && t.partitions.iter().all(|l| chosen.contains(l))
    };
    let covered =
        |n: &TableName| chosen.contains(n) || by_name.get(n).is_some_and(|t| through_leaves(t));
    let left_out_reason = |t: &TableInfo| -> (String, Option<String>, bool) {
        let blockers = t.blockers();
        let fix = {
            let fixes: Vec<&str> = blockers.iter().filter_map(|p| p.fix.as_deref()).collect();
            (!fixes.is_empty()).then(|| fixes.join("\n"))
        };
        let why: Vec<&str> = blockers.iter().map(|p| p.reason.as_str()).collect();
        if named_out.contains(&t.name) {
            let mut reason = "named in --leave-out".to_string();
            if !why.is_empty() {
                reason.push_str(&format!("; {}", why.join("; ")));
            }
            (reason, fix, true)
        } else if matches!(selection, TableSelection::List(_)) && why.is_empty() {
            (NOT_CHOSEN.to_string(), None, true)
        } else if matches!(selection, TableSelection::List(_)) {
            (why.join("; "), fix, true)
        } else {
            (why.join("; "), fix, false)
        }
    };
    out.coverage.entries.reserve_exact(all.len());
    for t in all {
        let kind = if t.relkind == 'p' {
            Kind::Partitioned
        } else {
            Kind::Table
        };
        let fate = if chosen.contains(&t.name) {
            Fate::Replicated
        } else if through_leaves(t) {
            Fate::ThroughLeaves(t.partitions.len())
        } else if t.relkind == 'p' {
            let missing: Vec<String> = t
                .partitions
                .iter()
                .filter(|l| !chosen.contains(*l))
                .map(ToString::to_string)
                .collect();
            let acknowledged = t.partitions.iter().all(|l| {
                chosen.contains(l)
                    || named_out.contains(l)
                    || matches!(selection, TableSelection::List(_))
            }) || named_out.contains(&t.name);
            let reason = if t.partitions.is_empty() {
                "a partitioned table without partitions".to_string()
            } else {
                format!("its partitions {} are left out", missing.join(", "))
            };
            Fate::LeftOut {
                reason,
                fix: None,
                acknowledged,
            }
        } else {
            let (reason, fix, acknowledged) = left_out_reason(t);
            Fate::LeftOut {
                reason,
                fix,
                acknowledged,
            }
        };
        out.coverage.entries.push(Entry {
            kind,
            name: t.name.to_string(),
            fate,
        });
    }
    // A foreign key between a replicated table and one left out makes THERE violate it, unless
    // the operator left that table out knowingly.
    let mut seen_pairs = BTreeSet::new();
    for t in all.iter().filter(|t| chosen.contains(&t.name)) {
        let partners = t
            .fk_out
            .iter()
            .map(|o| (o, true))
            .chain(t.fk_in.iter().map(|o| (o, false)));
        for (other, outgoing) in partners {
            if *other == t.name || covered(other) || !by_name.contains_key(other) {
                continue;
            }
            // A partition of a parent named in --leave-out counts as named.
            let other_info = by_name[other];
            let named = named_out.contains(other)
                || other_info
                    .partition_root
                    .as_ref()
                    .is_some_and(|r| named_out.contains(r));
            if !seen_pairs.insert((t.name.clone(), other.clone())) {
                continue;
            }
            let relation = if outgoing {
                format!("{} references {other}", t.name)
            } else {
                format!("{other} references {}", t.name)
            };
            if named {
                out.accepted_fks.push(format!(
                    "{relation}, which is left out (--leave-out): the two sides can violate that foreign key"
                ));
                continue;
            }
            let (reason, fix, _) = left_out_reason(other_info);
            let mut fixes = Vec::new();
            if let Some(f) = fix {
                fixes.push(f);
            }
            if other_info.relkind == 'p' {
                fixes.push(format!(
                    "replicate {other}'s partitions too (add them to --tables)"
                ));
            } else if other_info.is_eligible() {
                fixes.push(format!("replicate {other} too (add it to --tables)"));
            }
            fixes.push(format!(
                "or, knowing that the sides can then violate the foreign key, leave it out explicitly: --leave-out {} (in the wizard: x on the Tables screen)",
                other.raw()
            ));
            let harm = if outgoing {
                "THERE would hold rows that violate the foreign key"
            } else {
                "a delete or key change replicated from THERE would leave rows on HERE that violate the foreign key (Bucardo applies rows with triggers off)"
            };
            out.refusals.push(Refusal {
                check: "foreign keys",
                message: format!("{relation}, which would be left out ({reason}): {harm}"),
                fix: Some(fixes.join("\n")),
            });
        }
    }
    let left_out_tables: HashSet<&TableName> = all
        .iter()
        .filter(|t| !covered(&t.name))
        .map(|t| &t.name)
        .collect();
    for m in &extras.matviews {
        let fate = if m.populated {
            out.coverage.refresh.push(m.name.clone());
            Fate::Refreshed {
                reads_left_out: m
                    .reads
                    .iter()
                    .filter(|r| left_out_tables.contains(*r))
                    .cloned()
                    .collect(),
            }
        } else {
            Fate::LeftOut {
                reason: "not populated on HERE (WITH NO DATA): left unpopulated on THERE too"
                    .into(),
                fix: None,
                acknowledged: true,
            }
        };
        out.coverage.entries.push(Entry {
            kind: Kind::MaterializedView,
            name: m.name.to_string(),
            fate,
        });
    }
    let feeding: HashSet<&TableName> = all
        .iter()
        .filter(|t| chosen.contains(&t.name))
        .flat_map(|t| t.sequences.iter().map(|s| &s.sequence))
        .collect();
    for q in &extras.sequences {
        let fate = if feeding.contains(q) {
            Fate::Replicated
        } else {
            Fate::LeftOut {
                reason: UNUSED_SEQUENCE.into(),
                fix: None,
                acknowledged: true,
            }
        };
        out.coverage.entries.push(Entry {
            kind: Kind::Sequence,
            name: q.to_string(),
            fate,
        });
    }
    if extras.large_objects > 0 {
        out.coverage.entries.push(Entry {
            kind: Kind::LargeObjects,
            name: format!("{} large objects", extras.large_objects),
            fate: Fate::LeftOut {
                reason: "Bucardo does not replicate large objects (pg_largeobject)".into(),
                fix: Some(
                    "copy them once with pg_dump --large-objects --data-only -t pg_largeobject ..., and keep new ones out of the application or copy them again".into(),
                ),
                acknowledged: true,
            },
        });
    }
    let mask = all.iter().map(|t| chosen.contains(&t.name)).collect();
    (out, mask)
}

impl Coverage {
    pub fn replicated_tables(&self) -> usize {
        self.count(|e| e.kind == Kind::Table && e.fate == Fate::Replicated)
    }

    pub fn refreshed(&self) -> impl Iterator<Item = &Entry> {
        self.entries
            .iter()
            .filter(|e| matches!(e.fate, Fate::Refreshed { .. }))
    }

    pub fn left_out(&self) -> impl Iterator<Item = &Entry> {
        self.entries
            .iter()
            .filter(|e| matches!(e.fate, Fate::LeftOut { .. }))
    }

    /// Tables left out that the operator did not ask to leave out (`--tables all` could not
    /// take them and `--leave-out` does not name them).
    pub fn unacknowledged(&self) -> Vec<&Entry> {
        self.left_out()
            .filter(|e| {
                matches!(e.kind, Kind::Table | Kind::Partitioned)
                    && matches!(
                        e.fate,
                        Fate::LeftOut {
                            acknowledged: false,
                            ..
                        }
                    )
            })
            .collect()
    }

    fn count(&self, f: impl Fn(&Entry) -> bool) -> usize {
        self.entries.iter().filter(|e| f(e)).count()
    }

    /// One line: what replicates, what is refreshed once, how much is left out.
    pub fn line(&self) -> String {
        self.line_with("")
    }

    /// [`Coverage::line`] with `said` after the replicated tables (", the same rows on both
    /// sides").
    pub fn line_with(&self, said: &str) -> String {
        let tables = self.replicated_tables();
        let mut out = format!("replicating {tables} table{}", plural(tables));
        if self.partitions > 0 {
            out.push_str(&format!(" ({} of them partitions)", self.partitions));
        }
        out.push_str(said);
        let refreshed = self.refreshed().count();
        if refreshed > 0 {
            out.push_str(&format!(
                "; {refreshed} materialized view{} copied once and refreshed",
                plural(refreshed)
            ));
        }
        match self.left_out().count() {
            0 => out.push_str("; nothing left out"),
            n => out.push_str(&format!("; {n} left out (see above)")),
        }
        out
    }

    /// The lines that list what is not simply replicated: materialized views and what is left
    /// out, each with the reason (and the fix). Tables a `--tables` list does not name are
    /// summed up in one line.
    pub fn report(&self) -> Vec<String> {
        let mut out = Vec::new();
        for e in self.refreshed() {
            let Fate::Refreshed { reads_left_out } = &e.fate else {
                continue;
            };
            let mut line = format!(
                "refreshed once: materialized view {}: Bucardo does not replicate it; REFRESH it on each side when its tables change",
                e.name
            );
            if !reads_left_out.is_empty() {
                let names: Vec<String> = reads_left_out.iter().map(ToString::to_string).collect();
                line.push_str(&format!(
                    "; it reads {} (left out), so THERE computes it without those rows",
                    names.join(", ")
                ));
            }
            out.push(line);
        }
        let mut not_chosen = Vec::new();
        let mut unused = Vec::new();
        for e in self.left_out() {
            let Fate::LeftOut { reason, fix, .. } = &e.fate else {
                continue;
            };
            if reason == NOT_CHOSEN {
                not_chosen.push(e.name.as_str());
                continue;
            }
            if reason == UNUSED_SEQUENCE {
                unused.push(e.name.as_str());
                continue;
            }
            let what = match e.kind {
                Kind::Table | Kind::Partitioned | Kind::LargeObjects => "",
                Kind::MaterializedView => "materialized view ",
                Kind::Sequence => "sequence ",
            };
            let mut line = format!("left out {what}{}: {reason}", e.name);
            if let Some(f) = fix {
                line.push_str(&format!("; fix: {}", f.replace('\n', " ")));
            }
            out.push(line);
        }
        if !not_chosen.is_empty() {
            out.push(summed_up("table", &not_chosen, NOT_CHOSEN));
        }
        if !unused.is_empty() {
            out.push(summed_up("sequence", &unused, UNUSED_SEQUENCE));
        }
        out
    }
}

/// `left out 12 tables (not chosen): a, b, ... and 2 more`.
pub fn summed_up(what: &str, names: &[&str], reason: &str) -> String {
    const SHOWN: usize = 10;
    let n = names.len();
    let mut line = format!(
        "left out {n} {what}{} ({reason}): {}",
        plural(n),
        names
            .iter()
            .take(SHOWN)
            .copied()
            .collect::<Vec<_>>()
            .join(", ")
    );
    if n > SHOWN {
        line.push_str(&format!(" and {} more", n - SHOWN));
    }
    line
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::catalog::{Column, KeyKind};

    fn table(name: &str) -> TableInfo {
        TableInfo {
            name: TableName::new("public", name),
            key_kind: KeyKind::Primary,
            key_columns: vec!["id".into()],
            ..TableInfo::default()
        }
    }

    fn generated(name: &str) -> TableInfo {
        let mut t = table(name);
        t.columns.push(Column {
            name: "total".into(),
            type_name: "numeric".into(),
            not_null: false,
            generated: true,
        });
        t
    }

    fn n(s: &str) -> TableName {
        TableName::new("public", s)
    }

    #[test]
    fn a_foreign_key_to_a_table_left_out_unasked_refuses_the_selection() {
        let mut film = generated("film");
        film.fk_in.push(n("rental"));
        let mut rental = table("rental");
        rental.fk_out.push(n("film"));
        let all = vec![film, rental];
        let s = select(all.clone(), &Extras::default(), &TableSelection::All, &[]);
        assert_eq!(s.refusals.len(), 1, "{:?}", s.refusals);
        let r = &s.refusals[0];
        assert!(
            r.message.contains("public.rental references public.film"),
            "{}",
            r.message
        );
        assert!(r
            .fix
            .as_deref()
            .unwrap()
            .contains("--leave-out public.film"));

        let s = select(all, &Extras::default(), &TableSelection::All, &[n("film")]);
        assert!(s.refusals.is_empty(), "{:?}", s.refusals);
        assert_eq!(s.accepted_fks.len(), 1);
        assert!(s.coverage.unacknowledged().is_empty());
        assert_eq!(
            s.coverage.line(),
            "replicating 1 table; 1 left out (see above)"
        );
    }

    #[test]
    fn partitions_count_through_their_parent_and_left_out_tables_are_unacknowledged() {
        let mut parent = table("payment");
        parent.relkind = 'p';
        parent.partitions = vec![n("payment_1"), n("payment_2")];
        let leaf = |name: &str| {
            let mut t = table(name);
            t.is_partition = true;
            t.partition_root = Some(n("payment"));
            t
        };
        let mut customer = table("customer");
        customer.fk_in.push(n("payment"));
        let mut keyless = table("log");
        keyless.key_kind = KeyKind::None;
        let all = vec![
            parent,
            leaf("payment_1"),
            leaf("payment_2"),
            customer,
            keyless,
        ];
        let extras = Extras {
            matviews: vec![Matview {
                name: n("sales"),
                populated: true,
                reads: vec![n("log"), n("payment")],
            }],
            sequences: vec![n("unused_seq")],
            large_objects: 0,
        };
        let s = select(all, &extras, &TableSelection::All, &[]);
        assert!(s.refusals.is_empty(), "{:?}", s.refusals);
        assert_eq!(s.chosen.len(), 3);
        let un: Vec<&str> = s
            .coverage
            .unacknowledged()
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(un, ["public.log"]);
        assert_eq!(
            s.coverage.line(),
            "replicating 3 tables (2 of them partitions); 1 materialized view copied once and refreshed; 2 left out (see above)"
        );
        let report = s.coverage.report().join("\n");
        assert!(
            report.contains("it reads public.log (left out)"),
            "{report}"
        );
        assert!(
            report.contains("left out public.log: no primary key"),
            "{report}"
        );
        assert!(
            report.contains("left out 1 sequence (feeds no replicated table: neither its value nor its increment is touched): public.unused_seq"),
            "{report}"
        );
    }

    #[test]
    fn a_partitioned_table_named_in_leave_out_leaves_its_tree_out_and_partitions_count_once() {
        let mut top = table("events");
        top.relkind = 'p';
        top.partitions = vec![n("events_2024_a"), n("events_2024_b")];
        let mut mid = table("events_2024");
        mid.relkind = 'p';
        mid.is_partition = true;
        mid.partition_root = Some(n("events"));
        mid.partitions = top.partitions.clone();
        let leaf = |name: &str| {
            let mut t = table(name);
            t.is_partition = true;
            t.partition_root = Some(n("events"));
            t
        };
        let all = vec![
            top,
            mid,
            leaf("events_2024_a"),
            leaf("events_2024_b"),
            table("x"),
        ];
        let s = select(all.clone(), &Extras::default(), &TableSelection::All, &[]);
        assert_eq!(
            s.coverage.line(),
            "replicating 3 tables (2 of them partitions); nothing left out"
        );
        let s = select(
            all,
            &Extras::default(),
            &TableSelection::All,
            &[n("events")],
        );
        let chosen: Vec<String> = s.chosen.iter().map(|t| t.name.to_string()).collect();
        assert_eq!(chosen, ["public.x"]);
        assert!(s.coverage.unacknowledged().is_empty(), "{:?}", s.coverage);
    }

    #[test]
    fn a_list_leaves_the_rest_out_knowingly_but_still_guards_foreign_keys() {
        let mut a = table("a");
        a.fk_out.push(n("b"));
        let mut b = table("b");
        b.fk_in.push(n("a"));
        let all = vec![a, b, table("c")];
        let s = select(
            all.clone(),
            &Extras::default(),
            &TableSelection::List(vec![n("a")]),
            &[],
        );
        assert_eq!(s.refusals.len(), 1);
        assert!(s.refusals[0]
            .fix
            .as_deref()
            .unwrap()
            .contains("replicate public.b too"));
        let s = select(
            all,
            &Extras::default(),
            &TableSelection::List(vec![n("a"), n("b")]),
            &[],
        );
        assert!(s.refusals.is_empty());
        assert!(s.coverage.unacknowledged().is_empty());
        assert_eq!(
            s.coverage.report(),
            ["left out 1 table (not chosen): public.c"]
        );
    }

    #[test]
    fn matviews_come_after_the_matviews_they_read_through_views() {
        let mut rels = HashMap::new();
        rels.insert(1, (n("t"), 'r', true));
        rels.insert(2, (n("base_mv"), 'm', true));
        rels.insert(3, (n("v"), 'v', true));
        rels.insert(4, (n("a_top_mv"), 'm', true));
        let mut deps: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
        deps.entry(2).or_default().insert(1);
        deps.entry(3).or_default().insert(2);
        deps.entry(4).or_default().insert(3);
        let order = matview_order(&rels, &deps);
        let names: Vec<String> = order.iter().map(|m| m.name.to_string()).collect();
        assert_eq!(names, ["public.base_mv", "public.a_top_mv"]);
        assert_eq!(order[1].reads, vec![n("t")]);
    }
}
