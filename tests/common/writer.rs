//! An application-like writer for the corpus tests (`tests/corpus.rs`, issue #13): N concurrent
//! sessions, each running short multi-table transactions the way the application of a corpus schema
//! would, until it is told to stop.
//!
//! It keeps the application's score, not the database's: every transaction either commits or is
//! **aborted**, and an abort is an application transaction lost. The writer never retries one (an
//! application that must retry because a bootstrap deadlocked it has already been harmed); it
//! records the SQLSTATE, the message and the statement of every abort, so a test can demand zero
//! and, when that fails, show why.
//!
//! The sessions never get in each other's way: each owns a disjoint slice of the rows it updates
//! (`id % slots == slot`), takes the tables of a transaction in one order, and makes text keys from
//! its label, task and a counter. So any abort comes from outside the application, such as the
//! bootstrap's locks. A writer on THERE gets other slots (`slot_base`) than the one on HERE.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Config, NoTls};
use tokio_util::sync::CancellationToken;

/// Which application plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// `tests/corpus/rental.sql`: rent and pay (through the partitioned `payment`), returns, web
    /// orders with deferred foreign keys, catalog edits, deletes.
    Rental,
    /// `tests/corpus/partitions.sql`: inserts through every partitioned or inheritance parent,
    /// updates that move rows between list partitions, deletes through the inheritance parent.
    Partitions,
    /// `tests/corpus/crm.sql`: tickets with messages, invoices with lines, accounts created with
    /// their contacts, tags, subscription and notes across four schemas, then deleted (cascades).
    Crm,
}

#[derive(Debug, Clone)]
pub struct AppWriterOptions {
    /// Names the writer in `application_name`, in its text keys and in reports.
    pub label: String,
    /// Concurrent sessions.
    pub tasks: usize,
    /// Task `i` owns slot `slot_base + i` of `slots`.
    pub slot_base: usize,
    pub slots: usize,
    /// Pause between two statements of a transaction (the application thinking) and between
    /// transactions.
    pub think: Duration,
    pub pause: Duration,
}

impl AppWriterOptions {
    /// `tasks` sessions on slots `slot_base..slot_base + tasks` of 8.
    pub fn new(label: &str, tasks: usize, slot_base: usize) -> AppWriterOptions {
        AppWriterOptions {
            label: label.to_string(),
            tasks,
            slot_base,
            slots: 8,
            think: Duration::from_millis(2),
            pause: Duration::from_millis(5),
        }
    }
}

/// One lost application transaction.
#[derive(Debug, Clone)]
pub struct Abort {
    pub task: usize,
    /// `40P01` deadlock_detected, `55P03` lock_not_available, `40001` serialization_failure, ...;
    /// `-` when the error did not come from the server (a connection lost).
    pub sqlstate: String,
    pub message: String,
    /// The statement that failed.
    pub step: String,
}

impl std::fmt::Display for Abort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "task {} at {}: {} {}",
            self.task, self.step, self.sqlstate, self.message
        )
    }
}

/// What a stopped writer did.
#[derive(Debug, Clone, Default)]
pub struct AppReport {
    pub label: String,
    pub committed: u64,
    pub aborted: u64,
    pub aborts: Vec<Abort>,
    pub reconnects: u64,
    /// From start to stop (printed, never asserted).
    pub elapsed: Duration,
}

impl AppReport {
    /// Aborts per SQLSTATE.
    pub fn by_sqlstate(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for a in &self.aborts {
            *m.entry(a.sqlstate.clone()).or_insert(0) += 1;
        }
        m
    }

    /// One line for the test log: `writer here: 812 committed, 2 aborted (40P01: 2)`.
    pub fn summary(&self) -> String {
        let states: Vec<String> = self
            .by_sqlstate()
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        format!(
            "writer {}: {} committed, {} aborted in {:.1} s{}{}",
            self.label,
            self.committed,
            self.aborted,
            self.elapsed.as_secs_f64(),
            if states.is_empty() {
                String::new()
            } else {
                format!(" ({})", states.join(", "))
            },
            if self.reconnects > 0 {
                format!(", {} reconnects", self.reconnects)
            } else {
                String::new()
            }
        )
    }

    /// Every abort, one a line (for assertion messages).
    pub fn abort_list(&self) -> String {
        self.aborts
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A running writer: [`AppWriter::stop`] lets each session finish its transaction, then stops.
pub struct AppWriter {
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    committed: Arc<AtomicU64>,
    aborted: Arc<AtomicU64>,
    report: Arc<Mutex<AppReport>>,
    started: std::time::Instant,
}

impl AppWriter {
    /// Connects every session (failing if one cannot connect now) and starts writing.
    pub async fn start(
        mut conn: Config,
        workload: Workload,
        opts: AppWriterOptions,
    ) -> Result<AppWriter, String> {
        assert!(
            opts.slot_base + opts.tasks <= opts.slots,
            "slots {}..{} of {}",
            opts.slot_base,
            opts.slot_base + opts.tasks,
            opts.slots
        );
        conn.application_name(format!("corpus-writer-{}", opts.label));
        let cancel = CancellationToken::new();
        let committed = Arc::new(AtomicU64::new(0));
        let aborted = Arc::new(AtomicU64::new(0));
        let report = Arc::new(Mutex::new(AppReport {
            label: opts.label.clone(),
            ..AppReport::default()
        }));
        let started = std::time::Instant::now();
        let mut tasks = Vec::new();
        for i in 0..opts.tasks {
            let client = connect(&conn)
                .await
                .map_err(|e| format!("writer {} task {i}: connecting: {e}", opts.label))?;
            let session = Session {
                task: i,
                slot: opts.slot_base + i,
                slots: opts.slots,
                label: opts.label.clone(),
                think: opts.think,
                rng: StdRng::seed_from_u64(
                    (opts.slot_base + i) as u64 * 7919 + opts.label.len() as u64,
                ),
                n: 0,
                rentals: Vec::new(),
                orders: Vec::new(),
                region_orders: Vec::new(),
                sessions: Vec::new(),
                accounts: Vec::new(),
                tickets: Vec::new(),
            };
            tasks.push(tokio::spawn(run_session(
                conn.clone(),
                client,
                workload,
                session,
                opts.pause,
                cancel.clone(),
                committed.clone(),
                aborted.clone(),
                report.clone(),
            )));
        }
        Ok(AppWriter {
            cancel,
            tasks,
            committed,
            aborted,
            report,
            started,
        })
    }

    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }

    pub fn aborted(&self) -> u64 {
        self.aborted.load(Ordering::Relaxed)
    }

    /// Waits until `n` transactions in all have committed; false if `timeout` passes first.
    pub async fn wait_for_commits(&self, n: u64, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.committed() < n {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Signals every session to stop after its current transaction and returns the score.
    pub async fn stop(self) -> AppReport {
        self.cancel.cancel();
        for t in self.tasks {
            if let Err(e) = t.await {
                let mut r = self.report.lock().unwrap();
                r.aborts.push(Abort {
                    task: usize::MAX,
                    sqlstate: "-".into(),
                    message: format!("writer task panicked: {e}"),
                    step: "-".into(),
                });
            }
        }
        let mut r = self.report.lock().unwrap().clone();
        r.elapsed = self.started.elapsed();
        r
    }
}

async fn connect(conn: &Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = conn.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    // An application bounds its statements; far above any lock wait a bootstrap should cause.
    client
        .batch_execute("SET statement_timeout = '60s'")
        .await?;
    Ok(client)
}

/// A failed statement of a transaction.
struct Failed {
    step: &'static str,
    err: tokio_postgres::Error,
}

fn at(step: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Failed {
    move |err| Failed { step, err }
}

/// One session's own keys and rows.
struct Session {
    task: usize,
    slot: usize,
    slots: usize,
    label: String,
    think: Duration,
    rng: StdRng,
    /// Transactions started (for text keys).
    n: u64,
    /// rental: own rentals not yet returned.
    rentals: Vec<i64>,
    /// rental: own web orders ("Order No").
    orders: Vec<String>,
    /// partitions: own (region, order_id).
    region_orders: Vec<(String, i64)>,
    /// partitions: own session ids.
    sessions: Vec<i64>,
    /// crm: accounts this session created (uuid as text), and tickets it opened.
    accounts: Vec<String>,
    tickets: Vec<i32>,
}

impl Session {
    /// A random id in `1..=max` that this session owns.
    fn own(&mut self, max: i32) -> i32 {
        let per = (max as usize - self.slot - 1) / self.slots;
        let k = self.rng.gen_range(0..=per);
        (k * self.slots + self.slot + 1) as i32
    }

    async fn think(&self) {
        tokio::time::sleep(self.think).await;
    }

    fn key(&self) -> String {
        format!("{}-{}-{}", self.label, self.task, self.n)
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_session(
    conn: Config,
    client: Client,
    workload: Workload,
    mut s: Session,
    pause: Duration,
    cancel: CancellationToken,
    committed: Arc<AtomicU64>,
    aborted: Arc<AtomicU64>,
    report: Arc<Mutex<AppReport>>,
) {
    let mut client = Some(client);
    while !cancel.is_cancelled() {
        let c = match client.as_mut() {
            Some(c) => c,
            None => match connect(&conn).await {
                Ok(c) => {
                    report.lock().unwrap().reconnects += 1;
                    client.insert(c)
                }
                Err(e) => {
                    // Not a transaction, but the application could not work: count it.
                    aborted.fetch_add(1, Ordering::Relaxed);
                    record(&report, &s, "connect", &e);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        s.n += 1;
        let result = match workload {
            Workload::Rental => rental_txn(c, &mut s).await,
            Workload::Partitions => partitions_txn(c, &mut s).await,
            Workload::Crm => crm_txn(c, &mut s).await,
        };
        match result {
            Ok(()) => {
                committed.fetch_add(1, Ordering::Relaxed);
                let mut r = report.lock().unwrap();
                r.committed += 1;
            }
            Err(f) => {
                aborted.fetch_add(1, Ordering::Relaxed);
                record(&report, &s, f.step, &f.err);
                if c.is_closed() {
                    client = None;
                }
            }
        }
        tokio::time::sleep(pause).await;
    }
}

fn record(report: &Mutex<AppReport>, s: &Session, step: &str, e: &tokio_postgres::Error) {
    let (sqlstate, message) = match e.as_db_error() {
        Some(db) => (db.code().code().to_string(), db.message().to_string()),
        None => ("-".to_string(), e.to_string()),
    };
    let mut r = report.lock().unwrap();
    r.aborted += 1;
    r.aborts.push(Abort {
        task: s.task,
        sqlstate,
        message,
        step: step.to_string(),
    });
}

/// Minutes into 2022 for a payment date, or -1 for now() (the default partition).
fn payment_minute(rng: &mut StdRng) -> i32 {
    if rng.gen_bool(0.2) {
        -1
    } else {
        rng.gen_range(0..365 * 24 * 60)
    }
}

async fn rental_txn(c: &mut Client, s: &mut Session) -> Result<(), Failed> {
    let roll: u32 = s.rng.gen_range(0..100);
    let tx = c.transaction().await.map_err(at("BEGIN"))?;
    if roll < 55 {
        // Rent a film and pay through the partitioned parent; the rental trigger writes audit_log
        // and the customer; then the customer's preferences and the film's price change.
        let customer = s.own(1000);
        let film = s.own(1000);
        let inventory: i32 = s.rng.gen_range(1..=4000);
        let staff: i32 = s.rng.gen_range(1..=8);
        let row = tx
            .query_one(
                "INSERT INTO public.rental (rental_date, inventory_id, customer_id, staff_id, period)
                 VALUES (now(), $1, $2, $3, tstzrange(now(), NULL)) RETURNING rental_id",
                &[&inventory, &customer, &staff],
            )
            .await
            .map_err(at("INSERT rental"))?;
        let rental: i64 = row.get(0);
        s.think().await;
        let cents: i32 = s.rng.gen_range(99..1000);
        let minute = payment_minute(&mut s.rng);
        tx.execute(
            "INSERT INTO public.payment (customer_id, staff_id, rental_id, amount, payment_date)
             VALUES ($1, $2, $3, $4::int / 100.0,
                     CASE WHEN $5::int < 0 THEN now()
                          ELSE TIMESTAMPTZ '2022-01-01 00:00:00+00' + $5::int * interval '1 minute' END)",
            &[&customer, &staff, &rental, &cents, &minute],
        )
        .await
        .map_err(at("INSERT payment"))?;
        s.think().await;
        tx.execute(
            "UPDATE public.customer
                SET preferences = jsonb_set(preferences, '{visits}',
                        to_jsonb(coalesce((preferences->>'visits')::int, 0) + 1)),
                    activebool = true
              WHERE customer_id = $1",
            &[&customer],
        )
        .await
        .map_err(at("UPDATE customer"))?;
        s.think().await;
        let length: i16 = s.rng.gen_range(45..200);
        tx.execute(
            "UPDATE public.film SET rental_rate = 0.99 + ($1::int % 5), length = $2 WHERE film_id = $3",
            &[&(length as i32), &length, &film],
        )
        .await
        .map_err(at("UPDATE film"))?;
        s.rentals.push(rental);
    } else if roll < 70 && !s.rentals.is_empty() {
        // A return: the rental's period closes (the trigger logs it), and a search is logged.
        let i = s.rng.gen_range(0..s.rentals.len());
        let rental = s.rentals.swap_remove(i);
        tx.execute(
            "UPDATE public.rental SET return_date = now(), period = tstzrange(lower(period), now())
              WHERE rental_id = $1",
            &[&rental],
        )
        .await
        .map_err(at("UPDATE rental"))?;
        s.think().await;
        let q = format!("{} looking for film {}", s.label, s.rng.gen_range(1..1000));
        tx.execute(
            "INSERT INTO public.search_log (query, hits) VALUES ($1, $2)",
            &[&q, &s.rng.gen_range(0i32..50)],
        )
        .await
        .map_err(at("INSERT search_log"))?;
    } else if roll < 88 {
        // A web order: its lines first, the order after (the foreign key is deferred).
        let order = s.key();
        let customer = s.own(1000);
        for line in 1..=s.rng.gen_range(1i32..=3) {
            let film: i32 = s.rng.gen_range(1..=1000);
            tx.execute(
                "INSERT INTO \"Sales Dept\".\"Order Lines\" (\"Order No\", \"Line\", \"Film ID\", \"Quantity\", \"Unit Price\")
                 VALUES ($1, $2::int, $3, $2::int, 4.99 + $2::int)",
                &[&order, &line, &film],
            )
            .await
            .map_err(at("INSERT Order Lines"))?;
            s.think().await;
        }
        tx.execute(
            "INSERT INTO \"Sales Dept\".\"Orders\" (\"Order No\", customer_id, \"Ship Window\", \"Meta\")
             VALUES ($1, $2, tstzrange(now(), now() + interval '3 days'),
                     jsonb_build_object('channel', 'web', 'writer', $3::text))",
            &[&order, &customer, &s.label],
        )
        .await
        .map_err(at("INSERT Orders"))?;
        s.orders.push(order);
    } else if roll < 95 || s.orders.is_empty() {
        // A catalog edit: the film's text (the fulltext trigger) and tags (a domain over an
        // array), and an actor's name.
        let film = s.own(1000);
        let actor = s.own(200);
        let tag = format!("tag {}", s.n);
        tx.execute(
            "UPDATE public.film SET description = 'Revised by ' || $1::text || ' ' || now()::text,
                    tags = ARRAY['edited', $2::text]::public.tag_list
              WHERE film_id = $3",
            &[&s.label, &tag, &film],
        )
        .await
        .map_err(at("UPDATE film"))?;
        s.think().await;
        tx.execute(
            "UPDATE public.actor SET last_name = last_name || '.', last_update = now() WHERE actor_id = $1",
            &[&actor],
        )
        .await
        .map_err(at("UPDATE actor"))?;
    } else {
        // A cancelled web order: its lines, then the order.
        let order = s.orders.remove(0);
        tx.execute(
            "DELETE FROM \"Sales Dept\".\"Order Lines\" WHERE \"Order No\" = $1",
            &[&order],
        )
        .await
        .map_err(at("DELETE Order Lines"))?;
        s.think().await;
        tx.execute(
            "DELETE FROM \"Sales Dept\".\"Orders\" WHERE \"Order No\" = $1",
            &[&order],
        )
        .await
        .map_err(at("DELETE Orders"))?;
    }
    tx.commit().await.map_err(at("COMMIT"))
}

const REGIONS: &[&str] = &["de", "fr", "it", "us", "ca", "br", "jp", "au", "sg", "za"];
const KINDS: &[&str] = &["temperature", "humidity", "dewpoint", "pressure"];
const LEVELS: &[&str] = &["debug", "info", "warn", "error"];

async fn partitions_txn(c: &mut Client, s: &mut Session) -> Result<(), Failed> {
    let roll: u32 = s.rng.gen_range(0..100);
    let tx = c.transaction().await.map_err(at("BEGIN"))?;
    let source = format!("{}-{}", s.label, s.task);
    if roll < 55 || s.region_orders.is_empty() || s.sessions.is_empty() {
        // An order, a session, a measurement and a log event, each through its parent.
        let region = REGIONS[s.rng.gen_range(0..REGIONS.len())].to_string();
        let cents: i32 = s.rng.gen_range(100..100_000);
        let row = tx
            .query_one(
                "INSERT INTO public.orders_by_region (region, customer, amount)
                 VALUES ($1, $2, $3::int / 100.0) RETURNING order_id",
                &[&region, &s.key(), &cents],
            )
            .await
            .map_err(at("INSERT orders_by_region"))?;
        s.region_orders.push((region, row.get(0)));
        s.think().await;
        let row = tx
            .query_one(
                "INSERT INTO public.sessions (user_name, data)
                 VALUES ($1, jsonb_build_object('writer', $1::text, 'n', $2::bigint)) RETURNING session_id",
                &[&source, &(s.n as i64)],
            )
            .await
            .map_err(at("INSERT sessions"))?;
        s.sessions.push(row.get(0));
        s.think().await;
        let sensor = format!("S-{:03}", s.own(40));
        let kind = KINDS[s.rng.gen_range(0..KINDS.len())];
        let hours: i32 = s.rng.gen_range(0..2 * 365 * 24);
        let value: f64 = s.rng.gen_range(-20.0..40.0);
        tx.execute(
            "INSERT INTO public.measurements (sensor_code, kind, taken_at, value, quality)
             VALUES ($1, $2, TIMESTAMPTZ '2022-01-01 00:00:00+00' + $3::int * interval '1 hour', $4, 1)",
            &[&sensor, &kind, &hours, &value],
        )
        .await
        .map_err(at("INSERT measurements"))?;
        s.think().await;
        let level = LEVELS[s.rng.gen_range(0..LEVELS.len())];
        let minute: i32 = if s.rng.gen_bool(0.1) {
            -1
        } else {
            s.rng.gen_range(0..365 * 24 * 60)
        };
        tx.execute(
            "INSERT INTO public.log_events (logged_at, level, source, message, context)
             VALUES (CASE WHEN $1::int < 0 THEN now()
                          ELSE TIMESTAMPTZ '2022-01-01 00:00:00+00' + $1::int * interval '1 minute' END,
                     $2, $3, 'order placed', jsonb_build_object('n', $4::bigint))",
            &[&minute, &level, &source, &(s.n as i64)],
        )
        .await
        .map_err(at("INSERT log_events"))?;
    } else if roll < 85 {
        // An order moves to another region (another partition); a session ends; a sensor's tags
        // change.
        let i = s.rng.gen_range(0..s.region_orders.len());
        let (old, id) = s.region_orders[i].clone();
        let new = REGIONS[s.rng.gen_range(0..REGIONS.len())].to_string();
        tx.execute(
            "UPDATE public.orders_by_region SET region = $1, status = 'paid'
              WHERE region = $2 AND order_id = $3",
            &[&new, &old, &id],
        )
        .await
        .map_err(at("UPDATE orders_by_region"))?;
        s.region_orders[i].0 = new;
        s.think().await;
        let sid = s.sessions[s.rng.gen_range(0..s.sessions.len())];
        tx.execute(
            "UPDATE public.sessions SET ended_at = now(),
                    data = data || jsonb_build_object('ended_by', $1::text)
              WHERE session_id = $2",
            &[&source, &sid],
        )
        .await
        .map_err(at("UPDATE sessions"))?;
        s.think().await;
        let sensor = format!("S-{:03}", s.own(40));
        tx.execute(
            "UPDATE public.sensors SET tags = tags[1:3] || $1::text WHERE sensor_code = $2",
            &[&source, &sensor],
        )
        .await
        .map_err(at("UPDATE sensors"))?;
    } else {
        // Housekeeping: the oldest own session and log event go, through their parents.
        let sid = s.sessions.remove(0);
        tx.execute("DELETE FROM public.sessions WHERE session_id = $1", &[&sid])
            .await
            .map_err(at("DELETE sessions"))?;
        s.think().await;
        tx.execute(
            "DELETE FROM public.log_events
              WHERE event_id = (SELECT min(event_id) FROM public.log_events WHERE source = $1)",
            &[&source],
        )
        .await
        .map_err(at("DELETE log_events"))?;
    }
    tx.commit().await.map_err(at("COMMIT"))
}

async fn crm_txn(c: &mut Client, s: &mut Session) -> Result<(), Failed> {
    let roll: u32 = s.rng.gen_range(0..100);
    let tx = c.transaction().await.map_err(at("BEGIN"))?;
    if roll < 40 || s.tickets.is_empty() {
        // A ticket from one of the own accounts' contacts, two messages, someone typing, the
        // account's last contact, and a ledger entry.
        let account = s.own(500);
        let assignee = s.own(60);
        let subject = format!(
            "{} asks about invoice {}",
            s.key(),
            s.rng.gen_range(1..2000)
        );
        let row = tx
            .query_one(
                "INSERT INTO support.tickets (account_id, contact_id, assignee_id, subject)
                 SELECT a.account_id,
                        (SELECT min(c.contact_id) FROM crm.contacts c WHERE c.account_id = a.account_id),
                        $2, $3
                   FROM crm.accounts a WHERE a.legacy_no = $1
                 RETURNING ticket_id",
                &[&account, &assignee, &subject],
            )
            .await
            .map_err(at("INSERT tickets"))?;
        let ticket: i32 = row.get(0);
        s.think().await;
        for seq in 1..=2i32 {
            tx.execute(
                "INSERT INTO support.messages (ticket_id, seq, body) VALUES ($1, $2, $3)",
                &[&ticket, &seq, &format!("message {seq} from {}", s.label)],
            )
            .await
            .map_err(at("INSERT messages"))?;
        }
        tx.execute(
            "INSERT INTO support.typing_indicators (ticket_id, user_name) VALUES ($1, $2)
             ON CONFLICT (ticket_id) DO UPDATE SET user_name = excluded.user_name, at = now()",
            &[&ticket, &s.label],
        )
        .await
        .map_err(at("UPSERT typing_indicators"))?;
        s.think().await;
        tx.execute(
            "UPDATE crm.accounts SET attrs = attrs || jsonb_build_object('last_ticket', $2::int)
              WHERE legacy_no = $1",
            &[&account, &ticket],
        )
        .await
        .map_err(at("UPDATE accounts"))?;
        let cents: i64 = s.rng.gen_range(-5000..5000);
        tx.execute(
            "INSERT INTO billing.ledger (account_id, amount_cents)
             SELECT account_id, $2 FROM crm.accounts WHERE legacy_no = $1",
            &[&account, &cents],
        )
        .await
        .map_err(at("INSERT ledger"))?;
        s.tickets.push(ticket);
    } else if roll < 65 {
        // An invoice with its lines, the subscription renewed, and the owner's skills updated.
        let account = s.own(500);
        let row = tx
            .query_one(
                "INSERT INTO billing.invoices (account_id, status)
                 SELECT account_id, 'open' FROM crm.accounts WHERE legacy_no = $1
                 RETURNING invoice_no",
                &[&account],
            )
            .await
            .map_err(at("INSERT invoices"))?;
        let invoice: i64 = row.get(0);
        s.think().await;
        for line in 1..=s.rng.gen_range(1i16..=3) {
            tx.execute(
                "INSERT INTO billing.invoice_lines (invoice_no, line, description, cents)
                 VALUES ($1, $2, $3, $4)",
                &[
                    &invoice,
                    &line,
                    &format!("seat {line}"),
                    &s.rng.gen_range(100i32..10_000),
                ],
            )
            .await
            .map_err(at("INSERT invoice_lines"))?;
        }
        tx.execute(
            "UPDATE billing.invoices
                SET total_cents = (SELECT sum(cents) FROM billing.invoice_lines WHERE invoice_no = $1)
              WHERE invoice_no = $1",
            &[&invoice],
        )
        .await
        .map_err(at("UPDATE invoices"))?;
        s.think().await;
        tx.execute(
            "UPDATE billing.subscriptions SET active = daterange(lower(active), current_date + 30)
              WHERE account_id = (SELECT account_id FROM crm.accounts WHERE legacy_no = $1)",
            &[&account],
        )
        .await
        .map_err(at("UPDATE subscriptions"))?;
        let employee = s.own(60);
        tx.execute(
            "UPDATE \"HR\".employees SET skills = skills[1:3] || $2::text WHERE employee_id = $1",
            &[&employee, &s.key()],
        )
        .await
        .map_err(at("UPDATE employees"))?;
    } else if roll < 82 || s.accounts.is_empty() {
        // A new account with two contacts, a tag, a subscription and a note.
        let name = format!("Account {}", s.key());
        let owner = s.own(60);
        let row = tx
            .query_one(
                "INSERT INTO crm.accounts (name, owner_id, tier, attrs)
                 VALUES ($1, $2, 'team', jsonb_build_object('writer', $3::text))
                 RETURNING account_id::text",
                &[&name, &owner, &s.label],
            )
            .await
            .map_err(at("INSERT accounts"))?;
        let account: String = row.get(0);
        s.think().await;
        for k in 1..=2 {
            tx.execute(
                "INSERT INTO crm.contacts (account_id, email) VALUES ($1::text::uuid, $2)",
                &[&account, &format!("c{k}@{}.example", s.key())],
            )
            .await
            .map_err(at("INSERT contacts"))?;
        }
        let tag = format!("tag-{}", s.rng.gen_range(1..=20));
        tx.execute(
            "INSERT INTO crm.account_tags (account_id, tag) VALUES ($1::text::uuid, $2)",
            &[&account, &tag],
        )
        .await
        .map_err(at("INSERT account_tags"))?;
        let plan: i16 = s.rng.gen_range(1..=6);
        tx.execute(
            "INSERT INTO billing.subscriptions (account_id, plan_id, active)
             VALUES ($1::text::uuid, $2, daterange(current_date, current_date + 30))",
            &[&account, &plan],
        )
        .await
        .map_err(at("INSERT subscriptions"))?;
        tx.execute(
            "INSERT INTO crm.notes (account_id, author_id, body) VALUES ($1::text::uuid, $2, $3)",
            &[&account, &owner, &format!("signed up by {}", s.label)],
        )
        .await
        .map_err(at("INSERT notes"))?;
        s.accounts.push(account);
    } else if roll < 92 {
        // A ticket solved: its status, and nobody types in it any more.
        let i = s.rng.gen_range(0..s.tickets.len());
        let ticket = s.tickets.swap_remove(i);
        tx.execute(
            "UPDATE support.tickets SET status = 'solved' WHERE ticket_id = $1",
            &[&ticket],
        )
        .await
        .map_err(at("UPDATE tickets"))?;
        tx.execute(
            "DELETE FROM support.typing_indicators WHERE ticket_id = $1",
            &[&ticket],
        )
        .await
        .map_err(at("DELETE typing_indicators"))?;
    } else {
        // An account closed: its contacts, tags, subscription and notes go with it (cascades).
        let account = s.accounts.remove(0);
        tx.execute(
            "DELETE FROM crm.accounts WHERE account_id = $1::text::uuid",
            &[&account],
        )
        .await
        .map_err(at("DELETE accounts"))?;
    }
    tx.commit().await.map_err(at("COMMIT"))
}
