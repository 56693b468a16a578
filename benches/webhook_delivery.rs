//! Webhook delivery throughput: the `webhook_sender` actor draining 20,000
//! queued requests to 50 endpoints on a local receiver (see
//! `docs/benchmarks.md`, "Webhook delivery (issue 6)"). Goal: at least 1,000
//! deliveries/s.
//!
//! - receiver: an actix-web server on 127.0.0.1 (its own thread and System,
//!   one worker) answering 200 to any POST on `/hooks/<n>`, counting the
//!   requests per path; the sender's endpoint key is `scheme://host/path`, so
//!   50 paths are 50 endpoints;
//! - sender: a fresh database (PostgreSQL `overseer_bench_<uuid>`, or a
//!   SQLite file), migrated, the service started in-process
//!   (`Application::build`, `SKIP_CRON=true`, `WEBHOOK_POLL_INTERVAL=10ms`,
//!   `DATABASE_MAX_CONNECTIONS=20`), a tenant, a principal and 50 `bearer`
//!   push-notification configs; then 20,000 `webhook_outbox` rows (~600-byte
//!   payloads, round-robin over the configs) in one `INSERT … SELECT`. The
//!   clock starts when that insert has committed and stops when the
//!   receiver has counted 20,000 requests and every row is `delivered`;
//! - baseline: the same 20,000 requests (same body, same bearer header) from
//!   a plain reqwest client, 50 concurrent tasks, one per path, each sending
//!   its requests one after another (as the sender does per endpoint), on a
//!   current-thread runtime of its own; no database;
//! - diagnostic (PostgreSQL): the sender with `ANALYZE webhook_outbox` run
//!   after the bulk insert, before the clock starts. Without it the table's
//!   statistics are still those of the empty table (autovacuum has not got
//!   to it yet), and the sender's due query gets a plan that reads every
//!   pending row once per config.
//!
//! Three runs, each on a fresh database, min/median/max.
//!
//! `cargo bench --bench webhook_delivery [-- postgres|sqlite]` (default:
//! both). PostgreSQL at `TEST_DATABASE_URL` or
//! `postgres://postgres@127.0.0.1:5432/postgres`. The markdown table goes
//! to stdout, progress to stderr.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark binary: it reports on stdout/stderr and stops at the first failure"
)]

mod common;

use common::BenchDatabase;
use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use overseer::Application;
use overseer::config::Config;
use overseer::store::Store;
use sqlx::{AssertSqlSafe, PgPool, SqlitePool};
use uuid::Uuid;

/// Requests queued per measurement.
const N: u64 = 20_000;
const ENDPOINTS: u64 = 50;
const RUNS: usize = 3;
/// The goal, in deliveries per second.
const GOAL: f64 = 1_000.0;
/// Give up on a measurement after this long.
const DEADLINE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Backend {
    Postgres,
    Sqlite,
}

/// What is measured: the sender on a backend; `analyze`: with `ANALYZE
/// webhook_outbox` run after the bulk insert, before the clock starts (a
/// diagnostic: as queued, the table's statistics are those of an empty
/// table until autovacuum gets to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Case {
    backend: Backend,
    analyze: bool,
}

impl Case {
    fn label(self) -> &'static str {
        match (self.backend, self.analyze) {
            (Backend::Postgres, false) => "webhook_sender, PostgreSQL",
            (Backend::Postgres, true) => {
                "webhook_sender, PostgreSQL, ANALYZE after the insert (diagnostic)"
            }
            (Backend::Sqlite, false) => "webhook_sender, SQLite",
            (Backend::Sqlite, true) => {
                "webhook_sender, SQLite, ANALYZE after the insert (diagnostic)"
            }
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench` to harness-less benchmarks: skip flags.
    let mut backends = Vec::new();
    for arg in std::env::args().skip(1).filter(|a| !a.starts_with('-')) {
        match arg.as_str() {
            "postgres" | "pg" => backends.push(Backend::Postgres),
            "sqlite" => backends.push(Backend::Sqlite),
            other => panic!("unknown argument {other:?}: expected `postgres` or `sqlite`"),
        }
    }
    if backends.is_empty() {
        backends = vec![Backend::Postgres, Backend::Sqlite];
    }
    let cases: Vec<Case> = backends
        .iter()
        .flat_map(|&backend| {
            let plain = Case {
                backend,
                analyze: false,
            };
            let analyzed = Case {
                backend,
                analyze: true,
            };
            match backend {
                Backend::Postgres => vec![plain, analyzed],
                Backend::Sqlite => vec![plain],
            }
        })
        .collect();
    overseer::adapters::slack::install_tls_provider();
    let receiver = Receiver::start();
    eprintln!("receiver on 127.0.0.1:{}", receiver.port);

    let started = Instant::now();
    // (run, case) -> (elapsed, deliveries/s)
    let mut baseline = Vec::new();
    let mut sender: HashMap<Case, Vec<Duration>> = HashMap::new();
    for run in 1..=RUNS {
        eprintln!("== run {run}: baseline (reqwest, {ENDPOINTS} tasks) ==");
        let elapsed = raw_http(&receiver);
        eprintln!("  {N} requests in {}", secs(elapsed));
        baseline.push(elapsed);
        for &case in &cases {
            eprintln!("== run {run}: {} ==", case.label());
            let elapsed = actix::System::new().block_on(measure(case, &receiver));
            eprintln!(
                "  {N} deliveries in {} ({:.0}/s)",
                secs(elapsed),
                rate(elapsed)
            );
            sender.entry(case).or_default().push(elapsed);
        }
    }
    receiver.stop();
    print_report(&cases, &baseline, &sender, started.elapsed());
}

// ---------------------------------------------------------------------------
// The receiver

/// An actix-web server on its own thread, counting POSTs per path.
struct Receiver {
    port: u16,
    counts: Arc<Vec<AtomicU64>>,
    handle: actix_web::dev::ServerHandle,
    thread: std::thread::JoinHandle<()>,
}

async fn receive(path: web::Path<usize>, counts: web::Data<Arc<Vec<AtomicU64>>>) -> HttpResponse {
    match counts.get(path.into_inner()) {
        Some(count) => {
            count.fetch_add(1, Ordering::Relaxed);
            HttpResponse::Ok().finish()
        }
        None => HttpResponse::NotFound().finish(),
    }
}

impl Receiver {
    fn start() -> Self {
        let counts: Arc<Vec<AtomicU64>> =
            Arc::new((0..ENDPOINTS).map(|_| AtomicU64::new(0)).collect());
        let shared = counts.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("receiver".into())
            .spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    let data = web::Data::new(shared);
                    let server = HttpServer::new(move || {
                        App::new()
                            .app_data(data.clone())
                            .route("/hooks/{n}", web::post().to(receive))
                    })
                    .workers(1)
                    .bind(("127.0.0.1", 0))
                    .unwrap();
                    let port = server.addrs()[0].port();
                    let server = server.disable_signals().run();
                    tx.send((port, server.handle())).unwrap();
                    server.await.unwrap();
                });
            })
            .unwrap();
        let (port, handle) = rx.recv().unwrap();
        Self {
            port,
            counts,
            handle,
            thread,
        }
    }

    fn url(&self, endpoint: u64) -> String {
        format!("http://127.0.0.1:{}/hooks/{endpoint}", self.port)
    }

    fn reset(&self) {
        for count in self.counts.iter() {
            count.store(0, Ordering::Relaxed);
        }
    }

    fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Every endpoint got its share, and no more.
    fn check(&self) {
        for (i, count) in self.counts.iter().enumerate() {
            assert_eq!(
                count.load(Ordering::Relaxed),
                N / ENDPOINTS,
                "requests on /hooks/{i}"
            );
        }
    }

    fn stop(self) {
        actix_web::rt::System::new().block_on(self.handle.stop(true));
        self.thread.join().unwrap();
    }
}

// ---------------------------------------------------------------------------
// The baseline: plain reqwest, 50 tasks

/// A ~600-byte body like the sender's (the AdCP envelope and some padding).
fn body(i: u64) -> String {
    format!(
        r#"{{"idempotency_key":"bench.{i}","operation_id":"bench.op.{i}","task_id":"mb_{i}","task_type":"update_media_buy","protocol":"media-buy","status":"completed","timestamp":"2026-06-01T12:00:00Z","result":{{"media_buy_id":"mb_{i}","status":"active","note":"{}"}}}}"#,
        "x".repeat(PADDING)
    )
}

const PADDING: usize = 380;

fn raw_http(receiver: &Receiver) -> Duration {
    receiver.reset();
    let urls: Vec<String> = (0..ENDPOINTS).map(|e| receiver.url(e)).collect();
    let elapsed = std::thread::Builder::new()
        .name("baseline".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap();
                let started = Instant::now();
                let mut tasks = tokio::task::JoinSet::new();
                for (e, url) in urls.into_iter().enumerate() {
                    let client = client.clone();
                    tasks.spawn(async move {
                        let mut i = e as u64;
                        while i < N {
                            let response = client
                                .post(&url)
                                .header("authorization", "Bearer x")
                                .header("content-type", "application/json")
                                .body(body(i))
                                .send()
                                .await
                                .unwrap();
                            assert_eq!(response.status(), reqwest::StatusCode::OK);
                            i += ENDPOINTS;
                        }
                    });
                }
                while let Some(done) = tasks.join_next().await {
                    done.unwrap();
                }
                started.elapsed()
            })
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(receiver.total(), N);
    receiver.check();
    elapsed
}

// ---------------------------------------------------------------------------
// The sender

async fn measure(case: Case, receiver: &Receiver) -> Duration {
    let backend = case.backend;
    receiver.reset();
    let db = match backend {
        Backend::Postgres => BenchDatabase::postgres().await,
        Backend::Sqlite => BenchDatabase::sqlite(),
    };
    let files = tempfile::tempdir().unwrap();
    let config = config_for(&db.url, files.path());
    let store = Store::open(&config.database).unwrap();
    store.migrate().await.unwrap();
    store.close().await;

    let pool = match backend {
        Backend::Postgres => Pool::Pg(PgPool::connect(&db.url).await.unwrap()),
        Backend::Sqlite => Pool::Sqlite(SqlitePool::connect(&db.url).await.unwrap()),
    };
    let now = chrono::Utc::now();
    pool.exec(
        "INSERT INTO tenants (id, name, created_at, updated_at) \
         VALUES ('bench_t', 'Bench tenant', $1, $1)",
        now,
    )
    .await;
    pool.exec(
        "INSERT INTO principals (id, tenant_id, name, token_hash, created_at, updated_at) \
         VALUES ('bench_p', 'bench_t', 'Bench principal', 'bench-token-hash', $1, $1)",
        now,
    )
    .await;
    let configs: Vec<String> = (0..ENDPOINTS)
        .map(|e| {
            format!(
                "('bench_pnc_{e:02}', 'bench_t', 'bench_p', '{}', 'bearer', 'x', 'active', \
                 NULL, $1, $1)",
                receiver.url(e)
            )
        })
        .collect();
    pool.exec(
        &format!(
            "INSERT INTO push_notification_configs (id, tenant_id, principal_id, url, \
             authentication_type, authentication_token, status, media_buy_id, created_at, \
             updated_at) VALUES {}",
            configs.join(", ")
        ),
        now,
    )
    .await;

    let app = Application::build(config).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = actix_web::rt::spawn(app.run_until(async move {
        let _ = stopped.await;
        "benchmark finished"
    }));
    // Let the service settle (first polls, connections opened).
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The payload as `body(i)` builds it, in SQL; i = 0..N-1, config i % 50.
    let series = match backend {
        Backend::Postgres => format!("SELECT i FROM generate_series(0, {}) i", N - 1),
        Backend::Sqlite => format!(
            "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < {}) \
             SELECT i FROM s",
            N - 1
        ),
    };
    let padding = "x".repeat(PADDING);
    let insert = format!(
        "INSERT INTO webhook_outbox (tenant_id, config_id, media_buy_id, task_type, \
         idempotency_key, payload, status, created_at) \
         SELECT 'bench_t', \
         'bench_pnc_' || CASE WHEN i % {ENDPOINTS} < 10 THEN '0' ELSE '' END || (i % {ENDPOINTS}), \
         'mb_' || i, 'update_media_buy', 'bench.' || i, \
         '{{\"idempotency_key\":\"bench.' || i || '\",\"operation_id\":\"bench.op.' || i || \
         '\",\"task_id\":\"mb_' || i || '\",\"task_type\":\"update_media_buy\",\
         \"protocol\":\"media-buy\",\"status\":\"completed\",\
         \"timestamp\":\"2026-06-01T12:00:00Z\",\"result\":{{\"media_buy_id\":\"mb_' || i || \
         '\",\"status\":\"active\",\"note\":\"{padding}\"}}}}', 'pending', $1 \
         FROM ({series}) s"
    );
    pool.exec(&insert, now).await;
    if case.analyze {
        pool.exec("ANALYZE webhook_outbox", now).await;
    }
    let started = Instant::now();

    // Wait for the receiver first (no database traffic from the harness
    // while the sender works), then for the last rows to be settled.
    while receiver.total() < N {
        assert!(
            started.elapsed() < DEADLINE,
            "{} of {N} requests received after {}",
            receiver.total(),
            secs(started.elapsed())
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    loop {
        let delivered = pool
            .count("SELECT count(*) FROM webhook_outbox WHERE status = 'delivered'")
            .await;
        if delivered == N as i64 {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{delivered} of {N} rows delivered"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();

    receiver.check();
    assert_eq!(
        pool.count("SELECT count(*) FROM webhook_deliveries").await,
        N as i64,
        "one attempt per row"
    );
    assert_eq!(
        pool.count("SELECT count(*) FROM webhook_deliveries WHERE status_code = 200")
            .await,
        N as i64,
        "every attempt answered 200"
    );

    let _ = stop.send(());
    served.await.unwrap().unwrap();
    pool.close().await;
    db.drop_now().await;
    elapsed
}

enum Pool {
    Pg(PgPool),
    Sqlite(SqlitePool),
}

impl Pool {
    async fn exec(&self, sql: &str, now: chrono::DateTime<chrono::Utc>) {
        let sql = AssertSqlSafe(sql.to_owned());
        match self {
            Pool::Pg(pool) => {
                sqlx::query(sql).bind(now).execute(pool).await.unwrap();
            }
            Pool::Sqlite(pool) => {
                sqlx::query(sql).bind(now).execute(pool).await.unwrap();
            }
        }
    }

    async fn count(&self, sql: &'static str) -> i64 {
        match self {
            Pool::Pg(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
            Pool::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        }
    }

    async fn close(self) {
        match self {
            Pool::Pg(pool) => pool.close().await,
            Pool::Sqlite(pool) => pool.close().await,
        }
    }
}

fn config_for(database_url: &str, files: &Path) -> Config {
    let log_dir = files.join("logs").display().to_string();
    let spool_dir = files.join("spool").display().to_string();
    let admin_token = format!(
        "bench-admin-{}{}",
        Uuid::new_v4().simple(),
        Uuid::new_v4().simple()
    );
    let vars: HashMap<&str, OsString> = [
        ("BIND_ADDR", "127.0.0.1:0"),
        ("DATABASE_URL", database_url),
        ("ADMIN_TOKEN", admin_token.as_str()),
        ("HTTP_WORKERS", "1"),
        ("DATABASE_MAX_CONNECTIONS", "20"),
        ("LOG_DIR", log_dir.as_str()),
        ("AUDIT_SPOOL_DIR", spool_dir.as_str()),
        ("AUDIT_REQUESTS", "false"),
        ("AUDIT_TOKEN_VALIDATIONS", "false"),
        ("SKIP_CRON", "true"),
        ("WEBHOOK_ALLOWED_CIDRS", "127.0.0.1/32"),
        ("WEBHOOK_POLL_INTERVAL", "10ms"),
    ]
    .into_iter()
    .map(|(k, v)| (k, OsString::from(v)))
    .collect();
    Config::from_lookup(|name| vars.get(name).cloned()).unwrap()
}

// ---------------------------------------------------------------------------
// Report

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn rate(d: Duration) -> f64 {
    N as f64 / d.as_secs_f64()
}

/// min / median / max of deliveries per second.
fn spread(elapsed: &[Duration]) -> String {
    let mut rates: Vec<f64> = elapsed.iter().map(|d| rate(*d)).collect();
    rates.sort_by(f64::total_cmp);
    format!(
        "{:.0} / {:.0} / {:.0}",
        rates[0],
        rates[rates.len() / 2],
        rates[rates.len() - 1]
    )
}

fn print_report(
    cases: &[Case],
    baseline: &[Duration],
    sender: &HashMap<Case, Vec<Duration>>,
    total: Duration,
) {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{N} requests to {ENDPOINTS} endpoints, {RUNS} runs ({} in all).\n",
        secs(total)
    );
    let _ = writeln!(
        out,
        "| case | run times | deliveries/s min / median / max | ÷ raw HTTP, per run |"
    );
    let _ = writeln!(out, "|---|---|---:|---|");
    let times = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.2}", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let _ = writeln!(
        out,
        "| raw HTTP (reqwest, {ENDPOINTS} tasks, no database) | {} s | {} | — |",
        times(baseline),
        spread(baseline)
    );
    for case in cases {
        let runs = &sender[case];
        let ratios = runs
            .iter()
            .zip(baseline)
            .map(|(s, b)| format!("{:.2}", rate(*s) / rate(*b)))
            .collect::<Vec<_>>()
            .join(" / ");
        let _ = writeln!(
            out,
            "| {} | {} s | {} | {ratios} |",
            case.label(),
            times(runs),
            spread(runs)
        );
    }
    let _ = writeln!(out);
    for case in cases {
        let runs = &sender[case];
        let worst = runs.iter().map(|d| rate(*d)).fold(f64::INFINITY, f64::min);
        let _ = writeln!(
            out,
            "- {}: goal ≥ {GOAL:.0} deliveries/s {} (slowest run {worst:.0}/s)",
            case.label(),
            if worst >= GOAL { "met" } else { "missed" }
        );
    }
    print!("{out}");
}

// ---------------------------------------------------------------------------
// Databases
