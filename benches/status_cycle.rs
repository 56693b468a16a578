//! One media-buy status cycle (`Store::run_status_cycle`) over 100,000 media
//! buys, 10% of them due to change, on PostgreSQL (see `docs/benchmarks.md`,
//! "Status cycle (issue 6)"). Goal: one cycle in under 2 s.
//!
//! Each measurement gets a fresh `overseer_bench_<uuid>` database, migrated
//! through the store and bulk-loaded with plain SQL (`generate_series`), then
//! `VACUUM ANALYZE` and `CHECKPOINT`. Cases, side by side in every run:
//!
//! - full: `Store::run_status_cycle(now)`: the three `UPDATE … RETURNING`,
//!   the audit rows (hash-chained), the notification outbox rows, commit;
//! - bare: the same three `UPDATE … RETURNING` statements alone in one
//!   transaction on a `PgPool` (no lock, no audit, no outbox): the baseline;
//! - full + webhooks (diagnostic): the full cycle with one active
//!   push-notification config per principal, so every move also queues a
//!   webhook row.
//!
//! Each case times a first cycle (10,000 buys move) and a second one right
//! after at the same `now` (nothing due: the idle cost). Before the first,
//! one warm-up cycle at a `now` a year earlier (nothing due) opens the
//! connections and prepares the statements, as on a running service. Three
//! runs, each on freshly loaded databases, rotating the order of the cases.
//!
//! `cargo bench --bench status_cycle` (the markdown table goes to stdout,
//! progress to stderr). `cargo bench --bench status_cycle -- explain` loads
//! one database and prints `EXPLAIN (ANALYZE, BUFFERS)` of the three
//! UPDATEs, rolled back, instead. PostgreSQL at `TEST_DATABASE_URL` or
//! `postgres://postgres@127.0.0.1:5432/postgres`.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark binary: it reports on stdout/stderr and stops at the first failure"
)]

mod common;

use common::{BenchDatabase, postgres_admin_url};
use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use overseer::config::Config;
use overseer::store::Store;
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, Executor, PgPool};

const BUYS: i64 = 100_000;
const TENANTS: i64 = 10;
/// Due buys: `i % 20 == 0` start, `i % 20 == 1` complete (5% each).
const DUE: u64 = 10_000;
/// Of the buys due to start, those below this index have an approved
/// creative assigned (1,000); the same number of not-due buys whose flight
/// has started wait on a creative still in review.
const WITH_CREATIVE_BELOW: i64 = 20_000;
const RUNS: usize = 3;
const GOAL: Duration = Duration::from_secs(2);

/// The cycle's `now`.
const NOW: &str = "2026-06-01T12:00:00Z";

/// The scheduler's statements (`src/store/scheduler.rs`, `RULES` with
/// `ACTIVE_TENANT`, as `status_moves` builds them). Keep in sync.
const BARE_UPDATES: [&str; 3] = [
    "UPDATE media_buys SET status = 'failed', updated_at = $1 \
     WHERE status = 'pending_activation' AND flight_end < $1 \
     AND tenant_id IN (SELECT id FROM tenants WHERE is_active) \
     RETURNING id, tenant_id, principal_id, order_name",
    "UPDATE media_buys SET status = 'active', updated_at = $1 \
     WHERE status = 'pending_activation' AND flight_start <= $1 AND flight_end >= $1 \
     AND NOT EXISTS (SELECT 1 FROM creative_assignments ca JOIN creatives c \
         ON c.tenant_id = ca.tenant_id AND c.id = ca.creative_id \
         WHERE ca.media_buy_id = media_buys.id AND c.status <> 'approved') \
     AND approved_budget_micros IS NOT NULL AND budget_micros <= approved_budget_micros \
     AND tenant_id IN (SELECT id FROM tenants WHERE is_active) \
     RETURNING id, tenant_id, principal_id, order_name",
    "UPDATE media_buys SET status = 'completed', updated_at = $1 \
     WHERE status = 'active' AND flight_end < $1 \
     AND tenant_id IN (SELECT id FROM tenants WHERE is_active) \
     RETURNING id, tenant_id, principal_id, order_name",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Full,
    Bare,
    FullWebhooks,
}

impl Case {
    fn label(self) -> &'static str {
        match self {
            Case::Full => "full cycle (Store::run_status_cycle)",
            Case::Bare => "bare UPDATEs (baseline)",
            Case::FullWebhooks => "full cycle + 1 push config/principal (diagnostic)",
        }
    }
}

/// Run `r` measures the cases in this order, rotated by one each run.
const ORDER: [Case; 3] = [Case::Full, Case::Bare, Case::FullWebhooks];

struct Measurement {
    run: usize,
    case: Case,
    first: Duration,
    second: Duration,
    moved: u64,
    /// CPU seconds during the first cycle: this process, every `postgres`.
    client_cpu: f64,
    postgres_cpu: f64,
    load: Duration,
}

fn main() {
    // `cargo bench` passes `--bench` to harness-less benchmarks: skip flags.
    let mode = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let now: DateTime<Utc> = NOW.parse().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    match mode.as_deref() {
        None => {}
        Some("explain") => return runtime.block_on(explain_updates(now)),
        Some("fallback") => return runtime.block_on(fallback(now)),
        Some(other) => panic!("unknown argument {other:?}: expected `explain` or `fallback`"),
    }
    let started = Instant::now();
    let mut results = Vec::new();
    for run in 1..=RUNS {
        for k in 0..ORDER.len() {
            let case = ORDER[(k + run - 1) % ORDER.len()];
            eprintln!("== run {run}: {} ==", case.label());
            results.push(runtime.block_on(measure(run, case, now)));
        }
    }
    print_report(&results, started.elapsed());
}

// ---------------------------------------------------------------------------
// One measurement

async fn measure(run: usize, case: Case, now: DateTime<Utc>) -> Measurement {
    let db = BenchDatabase::postgres().await;
    let store = Store::open(&config_for(&db.url).database).unwrap();
    store.migrate().await.unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&db.url)
        .await
        .unwrap();
    let loaded = Instant::now();
    load(&pool, now, case == Case::FullWebhooks).await;
    let load = loaded.elapsed();
    eprintln!("loaded in {:.1} s", load.as_secs_f64());

    let warm_up = now - chrono::Duration::days(365);
    let (first, second, moved, cpu) = match case {
        Case::Full | Case::FullWebhooks => {
            let idle = store.run_status_cycle(warm_up).await.unwrap();
            assert!(idle.transitions.is_empty(), "warm-up moved buys: {idle:?}");
            let cpu = CpuSnapshot::take();
            let started = Instant::now();
            let cycle = store.run_status_cycle(now).await.unwrap();
            let first = started.elapsed();
            let cpu = cpu.since();
            let started = Instant::now();
            let again = store.run_status_cycle(now).await.unwrap();
            let second = started.elapsed();

            assert!(!cycle.locked_out && cycle.errors.is_empty(), "{cycle:?}");
            let mut transitions = cycle.transitions.clone();
            transitions.sort();
            assert_eq!(
                transitions,
                vec![
                    ("active".to_owned(), "completed".to_owned(), DUE / 2),
                    (
                        "pending_activation".to_owned(),
                        "active".to_owned(),
                        DUE / 2
                    ),
                ]
            );
            assert_eq!(cycle.committed.len() as u64, DUE);
            assert!(again.transitions.is_empty() && again.errors.is_empty());
            let moved = cycle.transitions.iter().map(|(_, _, n)| n).sum();
            (first, second, moved, cpu)
        }
        Case::Bare => {
            let idle = bare_updates(&pool, warm_up).await;
            assert_eq!(idle, 0, "warm-up moved buys");
            let cpu = CpuSnapshot::take();
            let started = Instant::now();
            let moved = bare_updates(&pool, now).await;
            let first = started.elapsed();
            let cpu = cpu.since();
            let started = Instant::now();
            let again = bare_updates(&pool, now).await;
            let second = started.elapsed();
            assert_eq!(moved, DUE);
            assert_eq!(again, 0);
            (first, second, moved, cpu)
        }
    };
    check_rows(&pool, case).await;
    eprintln!(
        "first cycle {:.1} ms ({moved} moved), second {:.1} ms",
        first.as_secs_f64() * 1_000.0,
        second.as_secs_f64() * 1_000.0
    );
    pool.close().await;
    store.close().await;
    db.drop_now().await;
    Measurement {
        run,
        case,
        first,
        second,
        moved,
        client_cpu: cpu.client,
        postgres_cpu: cpu.postgres,
        load,
    }
}

/// The baseline: the scheduler's three statements in one transaction,
/// their rows fetched as the store fetches them. Returns the rows moved.
async fn bare_updates(pool: &PgPool, now: DateTime<Utc>) -> u64 {
    let mut tx = pool.begin().await.unwrap();
    let mut moved = 0;
    for sql in BARE_UPDATES {
        let rows: Vec<(String, String, String, String)> = sqlx::query_as(sql)
            .bind(now)
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        moved += rows.len() as u64;
    }
    tx.commit().await.unwrap();
    moved
}

/// After the first cycle: the buys moved as expected, with one audit row and
/// one notification per move (none for the baseline).
async fn check_rows(pool: &PgPool, case: Case) {
    let statuses: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM media_buys GROUP BY status ORDER BY status")
            .fetch_all(pool)
            .await
            .unwrap();
    let due = DUE as i64;
    // Active: the 45,000 running and the 5,000 started; pending: the 44,000
    // not started and the 1,000 waiting on a creative.
    let expected = vec![
        ("active".to_owned(), BUYS / 2),
        ("completed".to_owned(), due / 2),
        ("pending_activation".to_owned(), BUYS / 2 - due / 2),
    ];
    assert_eq!(statuses, expected, "media buys by status after cycle 1");
    let count = |table: &str| {
        let sql = format!("SELECT count(*) FROM {table}");
        async move {
            sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql))
                .fetch_one(pool)
                .await
                .unwrap()
        }
    };
    let (audit, outbox, webhooks) = match case {
        Case::Full => (due, due, 0),
        Case::Bare => (0, 0, 0),
        Case::FullWebhooks => (due, due, due),
    };
    assert_eq!(count("audit_logs").await, audit, "audit rows");
    assert_eq!(count("notification_outbox").await, outbox, "outbox rows");
    assert_eq!(count("webhook_outbox").await, webhooks, "webhook rows");
}

// ---------------------------------------------------------------------------
// The data set

/// 10 tenants with a principal each, 100,000 buys spread over them by
/// `i / 20 % 10`, their kind by `i % 20`:
///
/// - 0: pending_activation, flight started yesterday: due to start (5,000;
///   the first 1,000 with an approved creative assigned);
/// - 1: active, flight ended an hour ago: due to complete (5,000);
/// - 2 (first 1,000): pending_activation, flight started, a creative still
///   in review assigned: not due;
/// - other even: pending_activation, flight starting in 1–30 days;
/// - other odd: active, flight ending in 1–60 days.
async fn load(pool: &PgPool, now: DateTime<Utc>, push_configs: bool) {
    let statements = [
        format!(
            "INSERT INTO tenants (id, name, created_at, updated_at) \
             SELECT 'bench_t' || t, 'Bench tenant ' || t, $1 - interval '40 days', \
                 $1 - interval '40 days' \
             FROM generate_series(0, {last}) t",
            last = TENANTS - 1
        ),
        format!(
            "INSERT INTO principals (id, tenant_id, name, token_hash, created_at, updated_at) \
             SELECT 'bench_p' || t, 'bench_t' || t, 'Bench principal ' || t, md5('bench_p' || t), \
                 $1 - interval '40 days', $1 - interval '40 days' \
             FROM generate_series(0, {last}) t",
            last = TENANTS - 1
        ),
        format!(
            "INSERT INTO media_buys (id, tenant_id, principal_id, buyer_ref, order_name, \
                 advertiser_name, currency, budget_micros, approved_budget_micros, flight_start, \
                 flight_end, status, created_at, updated_at) \
             SELECT 'bench_mb_' || lpad(i::text, 6, '0'), 'bench_t' || (i / 20 % {TENANTS}), \
                 'bench_p' || (i / 20 % {TENANTS}), 'ref-' || i, 'Order ' || i, \
                 'Advertiser ' || (i % 97), 'USD', 1000000000 + i, 1000000000 + i, \
                 CASE kind WHEN 'start' THEN $1 - interval '1 day' \
                     WHEN 'blocked' THEN $1 - interval '1 day' \
                     WHEN 'complete' THEN $1 - interval '30 days' \
                     WHEN 'future' THEN $1 + (1 + i % 30) * interval '1 day' \
                     ELSE $1 - interval '10 days' END, \
                 CASE kind WHEN 'start' THEN $1 + interval '30 days' \
                     WHEN 'blocked' THEN $1 + interval '30 days' \
                     WHEN 'complete' THEN $1 - interval '1 hour' \
                     WHEN 'future' THEN $1 + (31 + i % 30) * interval '1 day' \
                     ELSE $1 + (1 + i % 60) * interval '1 day' END, \
                 CASE WHEN kind IN ('complete', 'running') THEN 'active' \
                     ELSE 'pending_activation' END, \
                 $1 - interval '40 days', $1 - interval '40 days' \
             FROM (SELECT i, CASE WHEN i % 20 = 0 THEN 'start' \
                     WHEN i % 20 = 1 THEN 'complete' \
                     WHEN i % 20 = 2 AND i < {WITH_CREATIVE_BELOW} THEN 'blocked' \
                     WHEN i % 2 = 0 THEN 'future' ELSE 'running' END AS kind \
                 FROM generate_series(0, {last}) i) s",
            last = BUYS - 1
        ),
        format!(
            "INSERT INTO creatives (tenant_id, id, principal_id, name, format, url, status, \
                 created_at, updated_at) \
             SELECT 'bench_t' || (i / 20 % {TENANTS}), 'bench_cr_' || i, \
                 'bench_p' || (i / 20 % {TENANTS}), 'Creative ' || i, 'display_300x250', \
                 'https://cdn.example.com/' || i || '.png', \
                 CASE WHEN i % 20 = 0 THEN 'approved' ELSE 'pending_review' END, \
                 $1 - interval '40 days', $1 - interval '40 days' \
             FROM generate_series(0, {last}) i WHERE i % 20 IN (0, 2)",
            last = WITH_CREATIVE_BELOW - 1
        ),
        format!(
            "INSERT INTO creative_assignments (tenant_id, media_buy_id, creative_id) \
             SELECT 'bench_t' || (i / 20 % {TENANTS}), 'bench_mb_' || lpad(i::text, 6, '0'), \
                 'bench_cr_' || i \
             FROM generate_series(0, {last}) i WHERE i % 20 IN (0, 2)",
            last = WITH_CREATIVE_BELOW - 1
        ),
    ];
    for sql in statements {
        sqlx::query(AssertSqlSafe(sql))
            .bind(now)
            .execute(pool)
            .await
            .unwrap();
    }
    if push_configs {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO push_notification_configs (id, tenant_id, principal_id, url, \
                 authentication_type, authentication_token, status, created_at, updated_at) \
             SELECT 'bench_pnc_' || t, 'bench_t' || t, 'bench_p' || t, \
                 'https://buyer' || t || '.example.com/hooks/status', 'bearer', \
                 md5('token' || t) || md5('more' || t), 'active', \
                 $1 - interval '40 days', $1 - interval '40 days' \
             FROM generate_series(0, {last}) t",
            last = TENANTS - 1
        )))
        .bind(now)
        .execute(pool)
        .await
        .unwrap();
    }
    // A table as autovacuum leaves it (statistics, hint bits, visibility
    // map), and no checkpoint pending from the load.
    pool.execute("VACUUM ANALYZE").await.unwrap();
    if let Err(e) = pool.execute("CHECKPOINT").await {
        eprintln!("CHECKPOINT refused ({e}); the load's checkpoint may land in a measurement");
    }
}

/// `explain`: the plans of the three UPDATEs on a freshly loaded database,
/// each run for real inside one transaction that is rolled back.
async fn explain_updates(now: DateTime<Utc>) {
    let db = BenchDatabase::postgres().await;
    let store = Store::open(&config_for(&db.url).database).unwrap();
    store.migrate().await.unwrap();
    store.close().await;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&db.url)
        .await
        .unwrap();
    load(&pool, now, false).await;
    let mut tx = pool.begin().await.unwrap();
    let mut out = String::new();
    for sql in BARE_UPDATES {
        let plan: Vec<String> =
            sqlx::query_scalar(AssertSqlSafe(format!("EXPLAIN (ANALYZE, BUFFERS) {sql}")))
                .bind(now)
                .fetch_all(&mut *tx)
                .await
                .unwrap();
        let _ = writeln!(out, "```\n{sql}\n\n{}\n```\n", plan.join("\n"));
    }
    tx.rollback().await.unwrap();
    pool.execute("VACUUM ANALYZE").await.unwrap();

    // Then one full cycle with every statement's duration in the server log
    // (`log_min_duration_statement = 0` on this database only).
    let name = db.name().to_owned();
    pool.execute(AssertSqlSafe(format!(
        r#"ALTER DATABASE "{name}" SET log_min_duration_statement = 0"#
    )))
    .await
    .unwrap();
    pool.close().await;
    let store = Store::open(&config_for(&db.url).database).unwrap();
    let idle = store
        .run_status_cycle(now - chrono::Duration::days(365))
        .await
        .unwrap();
    assert!(idle.transitions.is_empty());
    let started = Instant::now();
    let cycle = store.run_status_cycle(now).await.unwrap();
    let elapsed = started.elapsed();
    store.close().await;
    let _ = writeln!(
        out,
        "Full cycle with statement logging: {} ({:?}). Each statement's duration is in the \
         server log, on the lines of database {name}.",
        ms(elapsed),
        cycle.transitions,
    );
    print!("{out}");
    db.drop_now().await;
}

/// `fallback`: the cycle's fallback path. One due buy is refused by a
/// trigger, so the batch transaction fails and the cycle moves each of the
/// 10,000 due buys in a transaction of its own. First under the default
/// query timeout (30 s), then, on a fresh database, with a 10-minute one to
/// see how long the fallback takes. After the first, the harness looks for a
/// scheduler session lock left on a pooled connection.
async fn fallback(now: DateTime<Utc>) {
    let mut out = String::new();
    for timeout in [None, Some("10m")] {
        let db = BenchDatabase::postgres().await;
        let more: Vec<(&'static str, &str)> = timeout
            .map(|t| ("DATABASE_QUERY_TIMEOUT", t))
            .into_iter()
            .collect();
        let config = config_with(&db.url, &more);
        let store = Store::open(&config.database).unwrap();
        store.migrate().await.unwrap();
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&db.url)
            .await
            .unwrap();
        load(&pool, now, false).await;
        pool.execute(
            "CREATE FUNCTION bench_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN RAISE EXCEPTION 'bench: refused'; END $$; \
             CREATE TRIGGER bench_refuse BEFORE UPDATE ON media_buys FOR EACH ROW \
             WHEN (NEW.id = 'bench_mb_000000') EXECUTE FUNCTION bench_refuse();",
        )
        .await
        .unwrap();
        let idle = store
            .run_status_cycle(now - chrono::Duration::days(365))
            .await
            .unwrap();
        assert!(idle.transitions.is_empty());
        let started = Instant::now();
        let outcome = store.run_status_cycle(now).await;
        let elapsed = started.elapsed();
        let moved: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM media_buys WHERE status IN ('completed') \
             OR (status = 'active' AND flight_start = $1 - interval '1 day')",
        )
        .bind(now)
        .fetch_one(&pool)
        .await
        .unwrap();
        let _ = writeln!(
            out,
            "- query timeout {}: cycle took {}, moved {moved} buys, outcome: {}",
            config.database.query_timeout.as_secs(),
            ms(elapsed),
            match &outcome {
                Ok(c) => format!("ok, {:?}, {} errors", c.transitions, c.errors.len()),
                Err(e) => format!("error: {e}"),
            }
        );
        if timeout.is_none() {
            // Who holds the scheduler's session lock now, and does the next
            // cycle get it?
            let holders: Vec<(i32, String)> = sqlx::query_as(
                "SELECT l.pid, a.state FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'advisory' AND l.database = \
                     (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            let _ = writeln!(out, "  - advisory locks held afterwards: {holders:?}");
            for attempt in 1..=3 {
                let next = store.run_status_cycle(now).await;
                let _ = writeln!(
                    out,
                    "  - next cycle, attempt {attempt}: {}",
                    match next {
                        Ok(c) => format!(
                            "locked_out {}, {} transitions, {} errors",
                            c.locked_out,
                            c.transitions.len(),
                            c.errors.len()
                        ),
                        Err(e) => format!("error: {e}"),
                    }
                );
            }
        }
        pool.close().await;
        store.close().await;
        db.drop_now().await;
    }
    print!("{out}");
}

fn config_for(database_url: &str) -> Config {
    config_with(database_url, &[])
}

fn config_with(database_url: &str, more: &[(&'static str, &str)]) -> Config {
    let vars: HashMap<&str, OsString> = [("DATABASE_URL", database_url)]
        .into_iter()
        .chain(more.iter().copied())
        .map(|(k, v)| (k, OsString::from(v)))
        .collect();
    Config::from_lookup(|name| vars.get(name).cloned()).unwrap()
}

// ---------------------------------------------------------------------------
// Databases

// ---------------------------------------------------------------------------
// CPU (Linux /proc): this process, and every `postgres` process

/// `/proc` times are in clock ticks: 100 per second on Linux (USER_HZ).
const TICKS_PER_SECOND: f64 = 100.0;

/// utime + stime (+ cutime + cstime with `children`) of a `/proc/.../stat`.
fn cpu_seconds(stat: &Path, children: bool) -> Option<f64> {
    let text = std::fs::read_to_string(stat).ok()?;
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    let mut ticks = field(14)? + field(15)?;
    if children {
        ticks += field(16)? + field(17)?;
    }
    Some(ticks / TICKS_PER_SECOND)
}

#[derive(Debug, Clone, Copy)]
struct CpuSnapshot {
    client: f64,
    postgres: f64,
}

impl CpuSnapshot {
    fn take() -> Self {
        let mut postgres = 0.0;
        if let Ok(processes) = std::fs::read_dir("/proc") {
            for process in processes.flatten() {
                let path = process.path();
                if std::fs::read_to_string(path.join("comm")).is_ok_and(|c| c.trim() == "postgres")
                {
                    postgres += cpu_seconds(&path.join("stat"), true).unwrap_or(0.0);
                }
            }
        }
        Self {
            client: cpu_seconds(Path::new("/proc/self/stat"), false).unwrap_or(0.0),
            postgres,
        }
    }

    fn since(self) -> Self {
        let now = Self::take();
        Self {
            client: (now.client - self.client).max(0.0),
            postgres: (now.postgres - self.postgres).max(0.0),
        }
    }
}

// ---------------------------------------------------------------------------
// The report

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1_000.0)
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort_unstable();
    values[values.len() / 2]
}

fn print_report(results: &[Measurement], total: Duration) {
    let mut out = String::new();
    let _ = writeln!(out, "\n## Status cycle benchmark\n");
    let _ = writeln!(
        out,
        "Run took {:.0} s. {} media buys over {TENANTS} tenants, {} due ({} to start, \
         {} to complete), `now` = {NOW}; PostgreSQL over TCP ({}). Cycle 1 moves the due \
         buys, cycle 2 runs right after (nothing due). CPU: during cycle 1, this process and \
         every `postgres` process.\n",
        total.as_secs_f64(),
        thousands(BUYS as u64),
        thousands(DUE),
        thousands(DUE / 2),
        thousands(DUE / 2),
        postgres_admin_url(),
    );
    let _ = writeln!(
        out,
        "| run | case | moved | cycle 1 | cycle 2 (idle) | client CPU | PostgreSQL CPU | load |"
    );
    let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|---:|---:|");
    for m in results {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.0} ms | {:.0} ms | {:.1} s |",
            m.run,
            m.case.label(),
            thousands(m.moved),
            ms(m.first),
            ms(m.second),
            m.client_cpu * 1_000.0,
            m.postgres_cpu * 1_000.0,
            m.load.as_secs_f64(),
        );
    }

    let of = |case: Case| results.iter().filter(move |m| m.case == case);
    let _ = writeln!(out, "\n### Over {RUNS} runs\n");
    let _ = writeln!(
        out,
        "| case | cycle 1 min | cycle 1 median | cycle 1 max | cycle 2 min | cycle 2 median |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    for case in ORDER {
        let first: Vec<Duration> = of(case).map(|m| m.first).collect();
        let second: Vec<Duration> = of(case).map(|m| m.second).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            case.label(),
            ms(*first.iter().min().unwrap()),
            ms(median(first.clone())),
            ms(*first.iter().max().unwrap()),
            ms(*second.iter().min().unwrap()),
            ms(median(second)),
        );
    }

    let _ = writeln!(out, "\n### Ratios (within each run) and the goal\n");
    let _ = writeln!(
        out,
        "| run | full ÷ bare, cycle 1 | full ÷ bare, cycle 2 | full+webhooks ÷ full, cycle 1 |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|");
    let mut full_bare = Vec::new();
    for run in 1..=RUNS {
        let get = |case: Case| {
            results
                .iter()
                .find(|m| m.run == run && m.case == case)
                .unwrap()
        };
        let (full, bare, hooks) = (get(Case::Full), get(Case::Bare), get(Case::FullWebhooks));
        let ratio = full.first.as_secs_f64() / bare.first.as_secs_f64();
        full_bare.push(ratio);
        let _ = writeln!(
            out,
            "| {run} | {ratio:.2}× | {:.2}× | {:.2}× |",
            full.second.as_secs_f64() / bare.second.as_secs_f64(),
            hooks.first.as_secs_f64() / full.first.as_secs_f64(),
        );
    }
    let worst = of(Case::Full).map(|m| m.first).max().unwrap();
    let _ = writeln!(
        out,
        "\nGoal: one cycle over {} buys ({} due) in under {} s: slowest full cycle {} \
         of {RUNS} runs: **{}**.",
        thousands(BUYS as u64),
        thousands(DUE),
        GOAL.as_secs(),
        ms(worst),
        if worst < GOAL { "met" } else { "missed" },
    );
    print!("{out}");
}
