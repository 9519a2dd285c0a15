//! A background writer that plays production traffic against a `widgets` database and keeps a
//! ledger of every effect it committed, so a test can later prove that each committed write (and
//! each committed delete) is present on a database: [`check`].
//!
//! Each transaction does one to three of: insert into `public.foo`, insert into
//! `"Sales"."Order Items"`, update a `foo` row it inserted, update a pre-existing customer from its
//! own id range, delete a row it inserted. Explicit ids come from `id_base` upwards, so writers on
//! HERE and THERE with different bases never collide, and no row is updated by two writers.
//! Errors are logged and survived (the writer reconnects); only committed transactions count.
//! When a COMMIT's outcome is unknown (connection lost mid-commit) the rows it touched move to
//! [`WriterReport::uncertain`] and are not checked.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;

/// The tables the writer touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WriterTable {
    Foo,
    Customers,
    /// `"Sales"."Order Items"`; the writer's rows all have `"Line No" = 1`.
    OrderItems,
}

impl WriterTable {
    pub const ALL: [WriterTable; 3] = [
        WriterTable::Foo,
        WriterTable::Customers,
        WriterTable::OrderItems,
    ];

    /// Qualified, quoted table name.
    pub fn sql_name(self) -> &'static str {
        match self {
            WriterTable::Foo => "public.foo",
            WriterTable::Customers => "public.customers",
            WriterTable::OrderItems => "\"Sales\".\"Order Items\"",
        }
    }

    /// `SELECT <key>, <value> FROM <table> WHERE <filter> AND <key> = ANY($1)`.
    fn lookup_sql(self) -> &'static str {
        match self {
            WriterTable::Foo => {
                "SELECT id::bigint, name FROM public.foo WHERE id = ANY($1::bigint[])"
            }
            WriterTable::Customers => {
                "SELECT id, notes FROM public.customers WHERE id = ANY($1::bigint[])"
            }
            WriterTable::OrderItems => {
                "SELECT \"Order ID\", \"Note\" FROM \"Sales\".\"Order Items\" \
                 WHERE \"Line No\" = 1 AND \"Order ID\" = ANY($1::bigint[])"
            }
        }
    }
}

/// One row the writer knows about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RowKey {
    pub table: WriterTable,
    pub id: i64,
}

impl fmt::Display for RowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} id {}", self.table.sql_name(), self.id)
    }
}

/// How a [`Writer`] behaves.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Names the writer in logs, in `application_name` and in the values it writes.
    pub label: String,
    /// First explicit id; give each concurrent writer its own range (10_000_000, 20_000_000, ...).
    pub id_base: i64,
    /// Sleep between transactions.
    pub pause: Duration,
    /// Pre-existing `customers` ids this writer may update; keep ranges of concurrent writers
    /// disjoint. Ids that don't exist are skipped.
    pub customer_ids: RangeInclusive<i64>,
    /// Share (0.0..=1.0) of `foo` inserts that take the identity default instead of an explicit
    /// id. Safe only when the databases the writers use hand out disjoint sequence values.
    pub default_id_share: f64,
    /// A transaction that takes longer is abandoned (its outcome counted as unknown).
    pub txn_timeout: Duration,
}

impl WriterOptions {
    /// Defaults: 5 ms pause, explicit ids only, and customers `(k-1)*1000+1 ..= k*1000` where
    /// `k = max(1, id_base / 10_000_000)` (bases 10M and 20M get customers 1-1000 and 1001-2000).
    pub fn new(label: &str, id_base: i64) -> WriterOptions {
        let k = (id_base / 10_000_000).max(1);
        WriterOptions {
            label: label.to_string(),
            id_base,
            pause: Duration::from_millis(5),
            customer_ids: (k - 1) * 1000 + 1..=k * 1000,
            default_id_share: 0.0,
            txn_timeout: Duration::from_secs(10),
        }
    }
}

/// What a stopped writer committed: the expectations [`check`] verifies.
#[derive(Debug, Clone, Default)]
pub struct WriterReport {
    pub label: String,
    /// Transactions known to be committed.
    pub commits: u64,
    /// Transactions known to be rolled back (errors before or at COMMIT reported by the server).
    pub failed: u64,
    /// Transactions whose COMMIT outcome is unknown.
    pub ambiguous: u64,
    pub reconnects: u64,
    /// Rows that must exist, with the value of their checked column (`foo.name`,
    /// `customers.notes`, `"Order Items"."Note"`).
    pub expected: BTreeMap<RowKey, String>,
    /// Rows the writer inserted and then deleted: they must be absent.
    pub deleted: BTreeSet<RowKey>,
    /// Rows touched by a transaction of unknown outcome and never settled since: not checked.
    pub uncertain: BTreeSet<RowKey>,
}

impl WriterReport {
    /// Same as [`check`].
    pub async fn check(&self, client: &Client) -> Result<()> {
        check(self, client).await
    }
}

/// A running writer task; [`Writer::stop`] ends it and returns its [`WriterReport`].
pub struct Writer {
    cancel: CancellationToken,
    task: JoinHandle<WriterReport>,
    commits: Arc<AtomicU64>,
    label: String,
}

impl Writer {
    /// Connects (failing if the database can't be reached now) and starts writing in a task,
    /// with [`WriterOptions::new`] defaults.
    pub async fn start(conn: tokio_postgres::Config, label: &str, id_base: i64) -> Result<Writer> {
        Writer::start_with(conn, WriterOptions::new(label, id_base)).await
    }

    pub async fn start_with(
        mut conn: tokio_postgres::Config,
        opts: WriterOptions,
    ) -> Result<Writer> {
        conn.application_name(format!("sandbox-writer-{}", opts.label));
        let client = connect(&conn)
            .await
            .with_context(|| format!("writer {}: connecting", opts.label))?;
        let cancel = CancellationToken::new();
        let commits = Arc::new(AtomicU64::new(0));
        let label = opts.label.clone();
        let task = tokio::spawn(run(conn, client, opts, cancel.clone(), commits.clone()));
        Ok(Writer {
            cancel,
            task,
            commits,
            label,
        })
    }

    /// Transactions committed so far.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Lets the current transaction finish, stops, and returns the ledger.
    pub async fn stop(self) -> WriterReport {
        self.cancel.cancel();
        match self.task.await {
            Ok(report) => report,
            Err(e) => {
                tracing::error!("writer {}: task failed: {e}", self.label);
                WriterReport {
                    label: self.label,
                    ..WriterReport::default()
                }
            }
        }
    }
}

/// Verifies on `client`'s database that every expected row exists with its value and every
/// deleted row is gone; the error names the first misses.
pub async fn check(report: &WriterReport, client: &Client) -> Result<()> {
    let mut misses = Vec::new();
    let mut miss_count = 0usize;
    let mut note = |m: String| {
        miss_count += 1;
        if misses.len() < 10 {
            misses.push(m);
        }
    };
    for table in WriterTable::ALL {
        let expected: Vec<(i64, &String)> = report
            .expected
            .iter()
            .filter(|(k, _)| k.table == table)
            .map(|(k, v)| (k.id, v))
            .collect();
        let deleted: Vec<i64> = report
            .deleted
            .iter()
            .filter(|k| k.table == table)
            .map(|k| k.id)
            .collect();
        let ids: Vec<i64> = expected
            .iter()
            .map(|(id, _)| *id)
            .chain(deleted.iter().copied())
            .collect();
        let mut found: BTreeMap<i64, Option<String>> = BTreeMap::new();
        for chunk in ids.chunks(10_000) {
            let rows = client
                .query(table.lookup_sql(), &[&chunk])
                .await
                .with_context(|| format!("checking {}", table.sql_name()))?;
            for row in rows {
                found.insert(row.get(0), row.get(1));
            }
        }
        for (id, want) in expected {
            let key = RowKey { table, id };
            match found.get(&id) {
                None => note(format!("{key}: missing (want {want:?})")),
                Some(got) if got.as_deref() != Some(want.as_str()) => {
                    note(format!("{key}: value {got:?}, want {want:?}"))
                }
                Some(_) => {}
            }
        }
        for id in deleted {
            if found.contains_key(&id) {
                note(format!("{}: deleted but present", RowKey { table, id }));
            }
        }
    }
    if miss_count == 0 {
        Ok(())
    } else {
        bail!(
            "writer {}: {miss_count} of {} expectations not met; first: {}",
            report.label,
            report.expected.len() + report.deleted.len(),
            misses.join("; ")
        )
    }
}

/// Retries [`check`] until it passes or `timeout` elapses (for replication to catch up).
pub async fn check_eventually(
    report: &WriterReport,
    client: &Client,
    timeout: Duration,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match check(report, client).await {
            Ok(()) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(e.context(format!("still failing after {timeout:?}")))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

async fn connect(conn: &tokio_postgres::Config) -> Result<Client> {
    let (client, connection) = conn.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("writer connection ended: {e}");
        }
    });
    Ok(client)
}

/// One change inside a transaction, applied to the ledger only once COMMIT succeeded.
enum Effect {
    Insert(RowKey, String),
    Update(RowKey, String),
    Delete(RowKey),
}

impl Effect {
    fn key(&self) -> RowKey {
        match self {
            Effect::Insert(k, _) | Effect::Update(k, _) | Effect::Delete(k) => *k,
        }
    }
}

enum TxnError {
    /// Rolled back for sure (statement error, or the server rejected the COMMIT).
    RolledBack(tokio_postgres::Error),
    /// The COMMIT may or may not have happened.
    Unknown(String),
}

struct Ledger {
    report: WriterReport,
    /// Live rows this writer inserted, per table, for picking update/delete targets.
    owned: BTreeMap<WriterTable, Vec<i64>>,
    next_id: i64,
}

impl Ledger {
    fn apply(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            let key = effect.key();
            self.report.uncertain.remove(&key);
            match effect {
                Effect::Insert(_, value) => {
                    self.report.expected.insert(key, value);
                    self.owned.entry(key.table).or_default().push(key.id);
                }
                Effect::Update(_, value) => {
                    self.report.expected.insert(key, value);
                }
                Effect::Delete(_) => {
                    self.report.expected.remove(&key);
                    self.report.deleted.insert(key);
                    self.disown(key);
                }
            }
        }
    }

    fn forget(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            let key = effect.key();
            self.report.expected.remove(&key);
            self.report.deleted.remove(&key);
            self.report.uncertain.insert(key);
            self.disown(key);
        }
    }

    fn disown(&mut self, key: RowKey) {
        if let Some(ids) = self.owned.get_mut(&key.table) {
            if let Some(pos) = ids.iter().position(|id| *id == key.id) {
                ids.swap_remove(pos);
            }
        }
    }

    fn pick_owned(
        &self,
        table: WriterTable,
        rng: &mut StdRng,
        touched: &HashSet<RowKey>,
    ) -> Option<RowKey> {
        let ids = self.owned.get(&table)?;
        if ids.is_empty() {
            return None;
        }
        let key = RowKey {
            table,
            id: ids[rng.gen_range(0..ids.len())],
        };
        (!touched.contains(&key)).then_some(key)
    }
}

async fn run(
    conn: tokio_postgres::Config,
    client: Client,
    opts: WriterOptions,
    cancel: CancellationToken,
    commits: Arc<AtomicU64>,
) -> WriterReport {
    let mut rng = StdRng::from_entropy();
    let mut ledger = Ledger {
        report: WriterReport {
            label: opts.label.clone(),
            ..WriterReport::default()
        },
        owned: BTreeMap::new(),
        next_id: opts.id_base,
    };
    let mut client = Some(client);
    let mut backoff = Duration::from_millis(100);
    let mut txn_no: u64 = 0;
    while !cancel.is_cancelled() {
        let c = match client.as_mut() {
            Some(c) if !c.is_closed() => c,
            _ => {
                client = None;
                match connect(&conn).await {
                    Ok(c) => {
                        ledger.report.reconnects += 1;
                        backoff = Duration::from_millis(100);
                        client = Some(c);
                    }
                    Err(e) => {
                        tracing::warn!("writer {}: reconnect failed: {e}", opts.label);
                        tokio::select! {
                            _ = cancel.cancelled() => {}
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                }
                continue;
            }
        };
        txn_no += 1;
        let mut effects = Vec::new();
        let outcome = tokio::time::timeout(
            opts.txn_timeout,
            one_transaction(c, &opts, &mut ledger, &mut rng, txn_no, &mut effects),
        )
        .await
        .unwrap_or_else(|_| Err(TxnError::Unknown("transaction timed out".into())));
        match outcome {
            Ok(()) => {
                ledger.apply(effects);
                ledger.report.commits += 1;
                commits.fetch_add(1, Ordering::Relaxed);
            }
            Err(TxnError::RolledBack(e)) => {
                ledger.report.failed += 1;
                tracing::warn!("writer {}: transaction rolled back: {e}", opts.label);
                if e.as_db_error().is_none() {
                    client = None;
                }
            }
            Err(TxnError::Unknown(why)) => {
                ledger.report.ambiguous += 1;
                tracing::warn!("writer {}: commit outcome unknown: {why}", opts.label);
                ledger.forget(effects);
                client = None;
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = tokio::time::sleep(opts.pause) => {}
        }
    }
    ledger.report
}

/// Runs one transaction of 1-3 operations, pushing their effects; Ok means COMMIT succeeded.
async fn one_transaction(
    client: &mut Client,
    opts: &WriterOptions,
    ledger: &mut Ledger,
    rng: &mut StdRng,
    txn_no: u64,
    effects: &mut Vec<Effect>,
) -> Result<(), TxnError> {
    let txn = client.transaction().await.map_err(TxnError::RolledBack)?;
    let mut touched = HashSet::new();
    let ops = rng.gen_range(1..=3);
    for op_no in 0..ops {
        let value = format!("{} t{txn_no}.{op_no}", opts.label);
        let roll = rng.gen_range(0..100);
        let effect = if roll < 30 {
            let name = value;
            let id = if rng.gen_bool(opts.default_id_share.clamp(0.0, 1.0)) {
                let row = txn
                    .query_one(
                        "INSERT INTO public.foo (name, value) VALUES ($1, $2) RETURNING id::bigint",
                        &[&name, &((txn_no % 1000) as i32)],
                    )
                    .await
                    .map_err(TxnError::RolledBack)?;
                row.get::<_, i64>(0)
            } else {
                ledger.next_id += 1;
                let id = ledger.next_id;
                txn.execute(
                    "INSERT INTO public.foo (id, name, value) VALUES ($1::bigint, $2, $3)",
                    &[&id, &name, &((txn_no % 1000) as i32)],
                )
                .await
                .map_err(TxnError::RolledBack)?;
                id
            };
            Some(Effect::Insert(
                RowKey {
                    table: WriterTable::Foo,
                    id,
                },
                name,
            ))
        } else if roll < 50 {
            ledger.next_id += 1;
            let id = ledger.next_id;
            let price = random_price(rng);
            txn.execute(
                "INSERT INTO \"Sales\".\"Order Items\" \
                 (\"Order ID\", \"Line No\", \"SKU\", \"Quantity\", \"Unit Price\", \"Note\") \
                 VALUES ($1, 1, $2, $3, $4::text::numeric, $5)",
                &[
                    &id,
                    &format!("W-{}", id % 500),
                    &rng.gen_range(1..10i32),
                    &price,
                    &value,
                ],
            )
            .await
            .map_err(TxnError::RolledBack)?;
            Some(Effect::Insert(
                RowKey {
                    table: WriterTable::OrderItems,
                    id,
                },
                value,
            ))
        } else if roll < 70 {
            match ledger.pick_owned(WriterTable::Foo, rng, &touched) {
                Some(key) => {
                    let n = txn
                        .execute(
                            "UPDATE public.foo SET name = $2, value = value + 1, updated_at = now() \
                             WHERE id = $1::bigint",
                            &[&key.id, &value],
                        )
                        .await
                        .map_err(TxnError::RolledBack)?;
                    (n == 1).then_some(Effect::Update(key, value))
                }
                None => None,
            }
        } else if roll < 85 {
            let key = RowKey {
                table: WriterTable::Customers,
                id: rng.gen_range(opts.customer_ids.clone()),
            };
            if touched.contains(&key) {
                None
            } else {
                let n = txn
                    .execute(
                        "UPDATE public.customers SET notes = $2, balance = balance + 1, \
                         updated_at = now() WHERE id = $1",
                        &[&key.id, &value],
                    )
                    .await
                    .map_err(TxnError::RolledBack)?;
                (n == 1).then_some(Effect::Update(key, value))
            }
        } else {
            let table = if rng.gen_bool(0.5) {
                WriterTable::Foo
            } else {
                WriterTable::OrderItems
            };
            match ledger.pick_owned(table, rng, &touched) {
                Some(key) => {
                    let sql = match table {
                        WriterTable::Foo => "DELETE FROM public.foo WHERE id = $1::bigint",
                        _ => "DELETE FROM \"Sales\".\"Order Items\" WHERE \"Order ID\" = $1 AND \"Line No\" = 1",
                    };
                    let n = txn
                        .execute(sql, &[&key.id])
                        .await
                        .map_err(TxnError::RolledBack)?;
                    (n == 1).then_some(Effect::Delete(key))
                }
                None => None,
            }
        };
        if let Some(effect) = effect {
            touched.insert(effect.key());
            effects.push(effect);
        }
    }
    txn.commit().await.map_err(|e| {
        if e.as_db_error().is_some() {
            TxnError::RolledBack(e)
        } else {
            TxnError::Unknown(e.to_string())
        }
    })
}

/// A price like `12.34`, sent as text (no decimal crate needed).
fn random_price(rng: &mut StdRng) -> String {
    format!("{}.{:02}", rng.gen_range(1..200), rng.gen_range(0..100))
}
