//! The audit write path, measured side by side in one run on the same
//! database per backend (see `docs/benchmarks.md`):
//!
//! - (a) the reference way: one INSERT and one commit per event;
//! - (b) the best raw bulk insert, no service around it: PostgreSQL
//!   `INSERT ... SELECT FROM UNNEST(...)`, SQLite multi-row `VALUES`, 1,000 rows
//!   and one transaction per statement;
//! - (c) the AuditActor fed in-process by concurrent durable producers
//!   (`Source::Internal`: `log_id`s minted by the service, so none is looked
//!   up; the diagnostic "(c) client log_ids" feeds the same events as the
//!   ingest API's, every `log_id` looked up);
//! - (d) HTTP batch ingest (`POST /api/v1/audit/events`) with concurrent
//!   clients, closed loop, then paced at 10,000 events/s;
//! - (e) the request-audit middleware: a JSON endpoint on three instances,
//!   in rounds of a Williams order ([`MW_ORDERS`]): `AUDIT_REQUESTS` on (the defaults), off (the
//!   middleware off; token validations still recorded, as issue 5 asks), and
//!   "nothing per request" (`AUDIT_TOKEN_VALIDATIONS` off too, a diagnostic:
//!   what auditing a request costs in all). First `GET /api/v1/tenants/{id}`
//!   as the super admin (whose token is checked in memory), then `GET
//!   /api/v1/tenant/settings` with a tenant admin's API token (looked up in
//!   the database, as every other caller's is).
//!
//! (a), (b) and (c) run in two halves, in order and then in reverse, so that
//! each meets the table at the same mean size; diagnostic rows next to them
//! split (c)'s cost (file sinks off; the store's append alone; (b) at the
//! actor's batch size with `RETURNING`). Each case also reports the CPU it
//! used, by thread group and for PostgreSQL (from `/proc`).
//!
//! `cargo bench --bench audit_ingest [-- sqlite|postgres]` (default: both).
//! PostgreSQL at `TEST_DATABASE_URL` or `postgres://postgres@127.0.0.1:5432/postgres`
//! (a fresh `overseer_bench_<uuid>` database, dropped at the end), reached over
//! TCP, or over its Unix socket with `BENCH_PG_SOCKET_DIR=/var/run/postgresql`;
//! SQLite in a temporary file. The markdown tables go to stdout, progress to
//! stderr. `AUDIT_BATCH_SIZE`, `AUDIT_FLUSH_INTERVAL_MS` and
//! `AUDIT_FLUSH_PIPELINE` in the environment measure the service with those
//! settings instead of the defaults.

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
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use chrono::Utc;
use overseer::Application;
use overseer::config::Config;
use overseer::store::Store;
use overseer_actors::audit::event::format_timestamp;
use overseer_actors::audit::{
    AuditConfig, AuditEvent, Auditor, GENESIS_HASH, Redactor, SinkConfig, Source, chain_hash,
};
use overseer_actors::supervisor::Supervisor;
use overseer_actors::{Clock, SystemClock};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, PgPool, QueryBuilder, Sqlite, SqlitePool};
use uuid::Uuid;

/// (a): events inserted one by one, per variant (each half stops after half of
/// `REFERENCE_MAX_TIME`).
const REFERENCE_EVENTS: usize = 5_000;
const REFERENCE_MAX_TIME: Duration = Duration::from_secs(20);
/// (b), (c), (d): events per measurement.
const BULK_EVENTS: usize = 100_000;
const ACTOR_EVENTS: usize = 100_000;
const HTTP_EVENTS: usize = 100_000;
/// (b): rows per statement and per transaction.
const CHUNK: usize = 1_000;
/// (c): events per `record_durable` call, and concurrent producers.
const PRODUCER_BATCH: usize = 100;
const PRODUCERS: usize = 16;
/// (d): concurrent clients, and the request sizes they cycle through.
const HTTP_CLIENTS: usize = 16;
const HTTP_SIZES: [usize; 5] = [100, 200, 300, 400, 500];
/// (d) paced: one 100-event request every 10 ms (10,000 events/s) for 5 s,
/// spread round-robin over 8 clients.
const PACED_REQUEST: usize = 100;
const PACED_PERIOD: Duration = Duration::from_millis(10);
const PACED_REQUESTS: usize = 500;
const PACED_CLIENTS: usize = 8;
/// (e): concurrent clients, round length, rounds per setting.
const MW_CLIENTS: usize = 16;
const MW_WARMUP: Duration = Duration::from_millis(500);
const MW_ROUND: Duration = Duration::from_secs(2);
/// The order of the instances in each round (a Williams design for three:
/// each instance is first, second and last twice, and follows each other
/// instance equally often within a round, so what one leaves behind — the
/// last flush, PostgreSQL's WAL and checkpoint work — is not always paid by
/// the same).
const MW_ORDERS: [[usize; 3]; 6] = [
    [0, 1, 2],
    [1, 2, 0],
    [2, 0, 1],
    [0, 2, 1],
    [1, 0, 2],
    [2, 1, 0],
];
const MW_ROUNDS: usize = MW_ORDERS.len();

const OPERATIONS: [&str; 4] = [
    "media_buy.create",
    "media_buy.update",
    "creative.upload",
    "report.fetch",
];

const INSERT_COLUMNS: &str = "INSERT INTO audit_logs (log_id, tenant_id, seq, operation, \
     principal_id, principal_name, adapter_id, success, details, error, ip_address, \
     security_violation, created_at, prev_hash, hash) ";

const PG_INSERT_ONE: &str = "INSERT INTO audit_logs (log_id, tenant_id, seq, operation, \
     principal_id, principal_name, adapter_id, success, details, error, ip_address, \
     security_violation, created_at, prev_hash, hash) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11, $12, $13, $14, $15)";

const SQLITE_INSERT_ONE: &str = "INSERT INTO audit_logs (log_id, tenant_id, seq, operation, \
     principal_id, principal_name, adapter_id, success, details, error, ip_address, \
     security_violation, created_at, prev_hash, hash) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

const PG_INSERT_UNNEST: &str = "INSERT INTO audit_logs (log_id, tenant_id, seq, operation, \
     principal_id, principal_name, adapter_id, success, details, error, ip_address, \
     security_violation, created_at, prev_hash, hash) \
     SELECT log_id, tenant_id, seq, operation, principal_id, principal_name, adapter_id, \
         success, details::jsonb, error, ip_address, security_violation, created_at, \
         prev_hash, hash \
     FROM UNNEST($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], \
         $7::text[], $8::bool[], $9::text[], $10::text[], $11::text[], $12::bool[], \
         $13::timestamptz[], $14::text[], $15::text[]) \
         AS t(log_id, tenant_id, seq, operation, principal_id, principal_name, adapter_id, \
              success, details, error, ip_address, security_violation, created_at, \
              prev_hash, hash)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// The cases compared in-process, in the order of the first half.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Reference,
    Autocommit,
    Bulk,
    BulkAtBatch,
    Actor,
    ActorSerial,
    ActorNoSinks,
    ActorClientIds,
    StoreOnly,
}

const ORDER: [Case; 9] = [
    Case::Reference,
    Case::Autocommit,
    Case::Bulk,
    Case::BulkAtBatch,
    Case::Actor,
    Case::ActorSerial,
    Case::ActorNoSinks,
    Case::ActorClientIds,
    Case::StoreOnly,
];

impl Case {
    fn tag(self) -> &'static str {
        match self {
            Case::Reference => "(a)",
            Case::Autocommit => "(a')",
            Case::Bulk => "(b)",
            Case::BulkAtBatch => "(b) at batch size",
            Case::Actor => "(c)",
            Case::ActorSerial => "(c) one at a time",
            Case::ActorNoSinks => "(c) no sinks",
            Case::ActorClientIds => "(c) client log_ids",
            Case::StoreOnly => "(c) store only",
        }
    }

    /// For tenant ids.
    fn slug(self) -> &'static str {
        match self {
            Case::Reference => "a",
            Case::Autocommit => "a2",
            Case::Bulk => "b",
            Case::BulkAtBatch => "b5",
            Case::Actor => "c",
            Case::ActorSerial => "c1",
            Case::ActorNoSinks => "cn",
            Case::ActorClientIds => "ci",
            Case::StoreOnly => "cs",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Case::Reference => "(a) reference: BEGIN + INSERT + COMMIT per event",
            Case::Autocommit => "(a') reference: autocommit INSERT per event",
            Case::Bulk => "(b) raw bulk insert",
            Case::BulkAtBatch => "(b) diagnostic: at the actor's batch size, RETURNING",
            Case::Actor => "(c) AuditActor",
            Case::ActorSerial => "(c) diagnostic: AuditActor, one batch in flight",
            Case::ActorNoSinks => "(c) diagnostic: AuditActor, file sinks off",
            Case::ActorClientIds => "(c) diagnostic: AuditActor, every log_id looked up",
            Case::StoreOnly => "(c) diagnostic: Store::append_audit alone",
        }
    }

    fn describe(self, backend: Backend, batch: usize) -> String {
        match self {
            Case::Reference => "one INSERT + COMMIT per event (BEGIN/INSERT/COMMIT)".into(),
            Case::Autocommit => "one autocommit INSERT per event".into(),
            Case::Bulk => match backend {
                Backend::Postgres => format!("INSERT ... SELECT FROM UNNEST, {CHUNK} rows/tx"),
                Backend::Sqlite => format!("multi-row VALUES (push_values), {CHUNK} rows/tx"),
            },
            Case::BulkAtBatch => {
                format!("diagnostic: (b) with {batch} rows/tx and RETURNING id, log_id")
            }
            Case::Actor => format!(
                "AuditActor, {PRODUCERS} in-process producers (Source::Internal: log_ids minted \
                 here), record_durable({PRODUCER_BATCH}), batch {batch}"
            ),
            Case::ActorSerial => {
                "diagnostic: (c) with AUDIT_FLUSH_PIPELINE 1 (one batch in flight)".into()
            }
            Case::ActorNoSinks => "diagnostic: (c) with every file sink off".into(),
            Case::ActorClientIds => "diagnostic: (c) as the ingest API's events (Source::Api: \
                 log_ids may be a client's, so each is looked up before the insert)"
                .into(),
            Case::StoreOnly => format!(
                "diagnostic: Store::append_audit of {batch}-event batches, one after another"
            ),
        }
    }
}

fn main() {
    let mut backends = Vec::new();
    // `cargo bench` passes `--bench` to harness-less benchmarks: skip flags.
    for arg in std::env::args().skip(1).filter(|a| !a.starts_with('-')) {
        match arg.as_str() {
            "postgres" | "pg" => backends.push(Backend::Postgres),
            "sqlite" => backends.push(Backend::Sqlite),
            other => panic!("unknown argument {other:?}: expected `sqlite` or `postgres`"),
        }
    }
    if backends.is_empty() {
        backends = vec![Backend::Postgres, Backend::Sqlite];
    }
    // The service's metrics recorder, installed before anything is measured,
    // so every case pays for its metrics the way the service does.
    let _ = overseer::telemetry::metrics_handle();

    let started = Instant::now();
    let mut reports = Vec::new();
    for backend in backends {
        eprintln!("== {} ==", backend.name());
        let report = actix::System::new().block_on(run_backend(backend));
        reports.push(report);
    }
    print_report(&reports, started.elapsed());
}

// ---------------------------------------------------------------------------
// Figures

/// One measured case.
struct Row {
    case: &'static str,
    what: String,
    /// Events (or requests, for (e)).
    count: usize,
    unit: &'static str,
    elapsed: Duration,
    latency: Option<Latency>,
    cpu: CpuUse,
}

impl Row {
    fn new(
        case: &'static str,
        what: impl Into<String>,
        count: usize,
        unit: &'static str,
        measured: Measured,
    ) -> Self {
        Self {
            case,
            what: what.into(),
            count,
            unit,
            elapsed: measured.elapsed,
            latency: Latency::of(measured.latencies),
            cpu: measured.cpu,
        }
    }

    fn rate(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }
}

/// What one case measured: wall time, per-call latencies (if any), CPU.
struct Measured {
    elapsed: Duration,
    latencies: Vec<Duration>,
    cpu: CpuUse,
}

impl Measured {
    fn empty() -> Self {
        Self {
            elapsed: Duration::ZERO,
            latencies: Vec::new(),
            cpu: CpuUse::default(),
        }
    }

    /// Adds another part of the same case.
    fn add(&mut self, other: Measured) {
        self.elapsed += other.elapsed;
        self.latencies.extend(other.latencies);
        self.cpu.add(&other.cpu);
    }

    /// Stops `meter` now.
    fn finish(started: Instant, meter: &CpuSnapshot, latencies: Vec<Duration>) -> Self {
        Self {
            elapsed: started.elapsed(),
            latencies,
            cpu: meter.since(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Latency {
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
}

impl Latency {
    fn of(mut samples: Vec<Duration>) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        // Nearest rank.
        let at = |p: f64| {
            let rank = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            samples[rank - 1]
        };
        Some(Self {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
        })
    }
}

struct Report {
    backend: Backend,
    rows: Vec<Row>,
    reference_tx: f64,
    reference_autocommit: f64,
    bulk: f64,
    actor: f64,
    http: f64,
    paced_rate: f64,
    paced: Option<Latency>,
    /// (e): req/s with [`Auditing::ALL`] in that order.
    mw: [f64; 3],
    /// (e) with a tenant admin's API token.
    mw_tenant: [f64; 3],
    checks: Vec<String>,
}

// ---------------------------------------------------------------------------
// One backend, all cases, one database

async fn run_backend(backend: Backend) -> Report {
    let db = match backend {
        Backend::Postgres => BenchDatabase::postgres().await,
        Backend::Sqlite => BenchDatabase::sqlite(),
    };
    let files = tempfile::tempdir().unwrap();
    let config = config_for(&db.url, files.path(), "bench", Auditing::On);
    let store = Store::open(&config.database).unwrap();
    store.migrate().await.unwrap();
    let pools = match &store {
        Store::Postgres(s) => Pools::Postgres(s.pool().clone()),
        Store::Sqlite(s) => Pools::Sqlite(s.pool().clone()),
    };
    let run = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let tenant = |case: &str| format!("bench-{case}-{run}");
    let mut rows = Vec::new();
    let mut checks = Vec::new();

    // (a), (b), (c) and their diagnostics, in two halves: in order, then in
    // reverse, so that every case meets the table at the same mean size
    // (SQLite slows down as the table outgrows its page cache).
    let batch = config.audit.batch_size;
    let mut results: Vec<(usize, Measured)> =
        ORDER.iter().map(|_| (0, Measured::empty())).collect();
    let mut hashing = (0, Some(Measured::empty()));
    for half in 0..2 {
        let mut order: Vec<(usize, Case)> = ORDER.iter().copied().enumerate().collect();
        if half == 1 {
            order.reverse();
        }
        for (slot, case) in order {
            let tenant = tenant(&format!("{}{half}", case.slug()));
            eprintln!("{} ({} half)", case.label(), ["first", "second"][half]);
            let (n, measured) = match case {
                Case::Reference | Case::Autocommit => {
                    let chain = chained(make_events(&tenant, REFERENCE_EVENTS / 2));
                    pools
                        .insert_one_by_one(&chain, case == Case::Reference, REFERENCE_MAX_TIME / 2)
                        .await
                }
                Case::Bulk | Case::BulkAtBatch => {
                    let events = make_events(&tenant, BULK_EVENTS / 2);
                    let (started, meter) = (Instant::now(), CpuSnapshot::take());
                    let chain = chained(events);
                    if case == Case::Bulk {
                        hashing.0 += chain.len();
                        if let Some(total) = hashing.1.as_mut() {
                            total.add(Measured::finish(started, &meter, Vec::new()));
                        }
                    }
                    let measured = if case == Case::Bulk {
                        pools.insert_bulk(&chain, CHUNK, false).await
                    } else {
                        pools.insert_bulk(&chain, batch, true).await
                    };
                    (chain.len(), measured)
                }
                Case::Actor | Case::ActorSerial | Case::ActorNoSinks | Case::ActorClientIds => {
                    let n = ACTOR_EVENTS / 2;
                    let sinks = case != Case::ActorNoSinks;
                    let source = if case == Case::ActorClientIds {
                        Source::Api
                    } else {
                        Source::Internal
                    };
                    let pipeline = if case == Case::ActorSerial {
                        1
                    } else {
                        config.audit.pipeline
                    };
                    let measured =
                        actor_run(&config, &store, &tenant, sinks, pipeline, source, n).await;
                    let what = format!("{}, {} half", case.tag(), ["first", "second"][half]);
                    checks.push(pools.check_rows(&what, &tenant, n as i64).await);
                    (n, measured)
                }
                Case::StoreOnly => {
                    let n = ACTOR_EVENTS / 2;
                    (n, store_append_run(&store, &tenant, batch, n).await)
                }
            };
            results[slot].0 += n;
            results[slot].1.add(measured);
        }
    }
    let mut results = results.into_iter();
    for case in ORDER {
        let (n, measured) = results.next().unwrap();
        rows.push(Row::new(
            case.tag(),
            case.describe(backend, batch),
            n,
            "events/s",
            measured,
        ));
        if let Some(hashing_time) = hashing.1.take_if(|_| case == Case::Bulk) {
            rows.push(Row::new(
                "(b) hashing",
                "diagnostic: chain hashes of (b)'s events (canonical JSON + SHA-256, one \
                 core), computed before (b)",
                hashing.0,
                "events/s",
                hashing_time,
            ));
        }
    }
    let rate_of = |case: &str| rows.iter().find(|r| r.case == case).unwrap().rate();
    let reference_tx = rate_of("(a)");
    let reference_autocommit = rate_of("(a')");
    let bulk = rate_of("(b)");
    let actor = rate_of("(c)");

    // (d) HTTP batch ingest.
    let ingest = spawn_app(&db.url, files.path(), "ingest", Auditing::On).await;
    ingest.create_tenant(&tenant("d")).await;
    ingest.create_tenant(&tenant("dp")).await;
    eprintln!("(d) HTTP ingest, {HTTP_CLIENTS} clients, closed loop");
    let bodies = ingest_bodies(&tenant("d"), HTTP_EVENTS, &HTTP_SIZES);
    let requests = bodies.len();
    let measured = {
        let url = ingest.url("/api/v1/audit/events");
        let token = ingest.admin_token.clone();
        on_client_thread(move || ingest_closed_loop(url, token, bodies, HTTP_CLIENTS)).await
    };
    rows.push(Row::new(
        "(d)",
        format!(
            "POST /audit/events, {HTTP_CLIENTS} clients, {requests} requests of {}-{} events",
            HTTP_SIZES[0],
            HTTP_SIZES[HTTP_SIZES.len() - 1]
        ),
        HTTP_EVENTS,
        "events/s",
        measured,
    ));
    let http = rows[rows.len() - 1].rate();
    checks.push(
        pools
            .check_rows("(d)", &tenant("d"), HTTP_EVENTS as i64)
            .await,
    );

    eprintln!("(d) HTTP ingest paced at 10,000 events/s");
    let bodies = ingest_bodies(
        &tenant("dp"),
        PACED_REQUEST * PACED_REQUESTS,
        &[PACED_REQUEST],
    );
    let measured = {
        let url = ingest.url("/api/v1/audit/events");
        let token = ingest.admin_token.clone();
        on_client_thread(move || ingest_paced(url, token, bodies)).await
    };
    rows.push(Row::new(
        "(d) paced",
        format!(
            "POST /audit/events, {PACED_REQUEST} events every {} ms over {PACED_CLIENTS} clients, {} s",
            PACED_PERIOD.as_millis(),
            (PACED_PERIOD * PACED_REQUESTS as u32).as_secs()
        ),
        PACED_REQUEST * PACED_REQUESTS,
        "events/s",
        measured,
    ));
    let paced = rows[rows.len() - 1].latency;
    let paced_rate = rows[rows.len() - 1].rate();
    checks.push(
        pools
            .check_rows(
                "(d) paced",
                &tenant("dp"),
                (PACED_REQUEST * PACED_REQUESTS) as i64,
            )
            .await,
    );
    ingest.stop().await;

    // (e) request-audit middleware on vs off, two instances on this database:
    // as the super admin (its token is compared in memory), then as a
    // tenant's own client (a tenant admin's API token, looked up in the
    // database as every other caller's is).
    let apps = [
        spawn_app(&db.url, files.path(), "mw-on", Auditing::On).await,
        spawn_app(&db.url, files.path(), "mw-off", Auditing::MiddlewareOff).await,
        spawn_app(&db.url, files.path(), "mw-none", Auditing::Nothing).await,
    ];
    apps[0].create_tenant(&tenant("e")).await;
    let admin = MiddlewareCase {
        tags: ["(e) on", "(e) off", "(e) nothing"],
        what: "GET /api/v1/tenants/{id}",
        path: format!("/api/v1/tenants/{}", tenant("e")),
        tokens: apps.each_ref().map(|app| app.admin_token.clone()),
        operation: "get_tenant",
    };
    let mw = admin.run(&pools, &apps, &mut rows, &mut checks).await;
    let tenant_token = apps[0].create_admin_token(&tenant("e")).await;
    let tenant_admin = MiddlewareCase {
        tags: ["(e) tenant on", "(e) tenant off", "(e) tenant nothing"],
        what: "GET /api/v1/tenant/settings, tenant admin token",
        path: "/api/v1/tenant/settings".into(),
        tokens: [0, 1, 2].map(|_| tenant_token.clone()),
        operation: "api_request",
    };
    let mw_tenant = tenant_admin
        .run(&pools, &apps, &mut rows, &mut checks)
        .await;
    for app in apps {
        app.stop().await;
    }

    store.close().await;
    db.drop_now().await;
    Report {
        backend,
        rows,
        reference_tx,
        reference_autocommit,
        bulk,
        actor,
        http,
        paced_rate,
        paced,
        mw,
        mw_tenant,
        checks,
    }
}

// ---------------------------------------------------------------------------
// Events

/// `n` events of one tenant, like the ones other services send.
fn make_events(tenant: &str, n: usize) -> Vec<AuditEvent> {
    let now = Utc::now();
    (0..n)
        .map(|i| {
            let event = AuditEvent::new(OPERATIONS[i % OPERATIONS.len()], now)
                .with_tenant(tenant)
                .with_principal(format!("principal_{}", i % 50), None)
                .with_details(json!({
                    "media_buy_id": format!("mb_{}", i / 10),
                    "adapter": "google_ad_manager",
                    "budget": 1_000 + (i % 1_000) as u64,
                    "currency": "USD",
                    "line_items": i % 7,
                    "dry_run": false,
                }));
            // One in 50 failed.
            if i % 50 == 49 {
                event.failed("upstream timed out")
            } else {
                event
            }
        })
        .collect()
}

/// An event placed in its chain, hashes precomputed.
struct Chained {
    seq: i64,
    prev_hash: String,
    hash: String,
    event: AuditEvent,
}

/// The events as one chain from the genesis hash (each measurement has a
/// tenant, hence a chain, of its own).
fn chained(events: Vec<AuditEvent>) -> Vec<Chained> {
    let mut prev = GENESIS_HASH.to_owned();
    events
        .into_iter()
        .enumerate()
        .map(|(i, event)| {
            let seq = i as i64 + 1;
            let hash = chain_hash(&prev, seq, &event);
            let prev_hash = std::mem::replace(&mut prev, hash.clone());
            Chained {
                seq,
                prev_hash,
                hash,
                event,
            }
        })
        .collect()
}

/// Request bodies: JSON arrays of `total` events, sizes cycling through `sizes`.
fn ingest_bodies(tenant: &str, total: usize, sizes: &[usize]) -> Vec<(usize, Bytes)> {
    let events = make_events(tenant, total);
    let mut bodies = Vec::new();
    let mut rest = &events[..];
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].min(rest.len());
        let (batch, tail) = rest.split_at(n);
        let json: Vec<serde_json::Value> = batch
            .iter()
            .map(|e| {
                let mut v = json!({
                    "tenant_id": e.tenant_id,
                    "operation": e.operation,
                    "principal_id": e.principal_id,
                    "success": e.success,
                    "details": e.details,
                });
                if let Some(error) = &e.error {
                    v["error"] = json!(error);
                }
                v
            })
            .collect();
        bodies.push((n, Bytes::from(serde_json::to_vec(&json).unwrap())));
        rest = tail;
        i += 1;
    }
    bodies
}

// ---------------------------------------------------------------------------
// (a), (b): plain SQL on the store's pool

enum Pools {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;
type SqliteQuery<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>;

fn pg_insert_one(c: &Chained) -> PgQuery<'static> {
    let e = &c.event;
    sqlx::query(PG_INSERT_ONE)
        .bind(e.log_id)
        .bind(e.tenant_id.as_deref())
        .bind(c.seq)
        .bind(e.operation.as_str())
        .bind(e.principal_id.as_deref())
        .bind(e.principal_name.as_deref())
        .bind(e.adapter_id.as_deref())
        .bind(e.success)
        .bind(e.details.to_string())
        .bind(e.error.as_deref())
        .bind(e.ip_address.as_deref())
        .bind(e.security_violation)
        .bind(e.created_at)
        .bind(c.prev_hash.as_str())
        .bind(c.hash.as_str())
}

fn sqlite_insert_one(c: &Chained) -> SqliteQuery<'static> {
    let e = &c.event;
    sqlx::query(SQLITE_INSERT_ONE)
        .bind(e.log_id.to_string())
        .bind(e.tenant_id.clone())
        .bind(c.seq)
        .bind(e.operation.clone())
        .bind(e.principal_id.clone())
        .bind(e.principal_name.clone())
        .bind(e.adapter_id.clone())
        .bind(e.success)
        .bind(e.details.to_string())
        .bind(e.error.clone())
        .bind(e.ip_address.clone())
        .bind(e.security_violation)
        .bind(format_timestamp(e.created_at))
        .bind(c.prev_hash.clone())
        .bind(c.hash.clone())
}

impl Pools {
    /// (a): one INSERT per event on one pooled connection, each committed
    /// before the next: in an explicit transaction (`explicit`), or
    /// autocommit. Stops early after `max_time`; returns the
    /// events inserted and the time taken.
    async fn insert_one_by_one(
        &self,
        chain: &[Chained],
        explicit: bool,
        max_time: Duration,
    ) -> (usize, Measured) {
        let mut n = 0;
        let mut latencies = Vec::with_capacity(chain.len());
        let (started, meter);
        match self {
            Pools::Postgres(pool) => {
                let mut conn = pool.acquire().await.unwrap();
                (started, meter) = (Instant::now(), CpuSnapshot::take());
                for c in chain {
                    let sent = Instant::now();
                    if explicit {
                        let mut tx = Connection::begin(&mut *conn).await.unwrap();
                        pg_insert_one(c).execute(&mut *tx).await.unwrap();
                        tx.commit().await.unwrap();
                    } else {
                        pg_insert_one(c).execute(&mut *conn).await.unwrap();
                    }
                    latencies.push(sent.elapsed());
                    n += 1;
                    if started.elapsed() > max_time {
                        break;
                    }
                }
            }
            Pools::Sqlite(pool) => {
                let mut conn = pool.acquire().await.unwrap();
                (started, meter) = (Instant::now(), CpuSnapshot::take());
                for c in chain {
                    let sent = Instant::now();
                    if explicit {
                        let mut tx = Connection::begin(&mut *conn).await.unwrap();
                        sqlite_insert_one(c).execute(&mut *tx).await.unwrap();
                        tx.commit().await.unwrap();
                    } else {
                        sqlite_insert_one(c).execute(&mut *conn).await.unwrap();
                    }
                    latencies.push(sent.elapsed());
                    n += 1;
                    if started.elapsed() > max_time {
                        break;
                    }
                }
            }
        }
        (n, Measured::finish(started, &meter, latencies))
    }

    /// (b): `rows` rows per statement, one transaction per statement, one
    /// connection, chunk after chunk; with `returning`, the statement returns
    /// each row's `id` and `log_id` as the store's does.
    async fn insert_bulk(&self, chain: &[Chained], rows: usize, returning: bool) -> Measured {
        match self {
            Pools::Postgres(pool) => {
                let mut conn = pool.acquire().await.unwrap();
                let mut latencies = Vec::with_capacity(chain.len() / rows + 1);
                let (started, meter) = (Instant::now(), CpuSnapshot::take());
                for chunk in chain.chunks(rows) {
                    let sent = Instant::now();
                    let mut tx = Connection::begin(&mut *conn).await.unwrap();
                    let sql = if returning {
                        format!("{PG_INSERT_UNNEST} RETURNING id, log_id::text")
                    } else {
                        PG_INSERT_UNNEST.to_owned()
                    };
                    let column = |f: &dyn Fn(&Chained) -> Option<String>| -> Vec<Option<String>> {
                        chunk.iter().map(f).collect()
                    };
                    let query = sqlx::query(AssertSqlSafe(sql))
                        .bind(chunk.iter().map(|c| c.event.log_id).collect::<Vec<_>>())
                        .bind(column(&|c| c.event.tenant_id.clone()))
                        .bind(chunk.iter().map(|c| c.seq).collect::<Vec<_>>())
                        .bind(
                            chunk
                                .iter()
                                .map(|c| c.event.operation.clone())
                                .collect::<Vec<_>>(),
                        )
                        .bind(column(&|c| c.event.principal_id.clone()))
                        .bind(column(&|c| c.event.principal_name.clone()))
                        .bind(column(&|c| c.event.adapter_id.clone()))
                        .bind(chunk.iter().map(|c| c.event.success).collect::<Vec<_>>())
                        .bind(
                            chunk
                                .iter()
                                .map(|c| c.event.details.to_string())
                                .collect::<Vec<_>>(),
                        )
                        .bind(column(&|c| c.event.error.clone()))
                        .bind(column(&|c| c.event.ip_address.clone()))
                        .bind(
                            chunk
                                .iter()
                                .map(|c| c.event.security_violation)
                                .collect::<Vec<_>>(),
                        )
                        .bind(chunk.iter().map(|c| c.event.created_at).collect::<Vec<_>>())
                        .bind(
                            chunk
                                .iter()
                                .map(|c| c.prev_hash.clone())
                                .collect::<Vec<_>>(),
                        )
                        .bind(chunk.iter().map(|c| c.hash.clone()).collect::<Vec<_>>());
                    if returning {
                        let ids = query.fetch_all(&mut *tx).await.unwrap();
                        assert_eq!(ids.len(), chunk.len());
                    } else {
                        query.execute(&mut *tx).await.unwrap();
                    }
                    tx.commit().await.unwrap();
                    latencies.push(sent.elapsed());
                }
                Measured::finish(started, &meter, latencies)
            }
            Pools::Sqlite(pool) => {
                let mut conn = pool.acquire().await.unwrap();
                let mut latencies = Vec::with_capacity(chain.len() / rows + 1);
                let (started, meter) = (Instant::now(), CpuSnapshot::take());
                for chunk in chain.chunks(rows) {
                    let sent = Instant::now();
                    let mut tx = Connection::begin(&mut *conn).await.unwrap();
                    let mut qb = QueryBuilder::<Sqlite>::new(INSERT_COLUMNS);
                    qb.push_values(chunk, |mut row, c| {
                        let e = &c.event;
                        row.push_bind(e.log_id.to_string())
                            .push_bind(e.tenant_id.clone())
                            .push_bind(c.seq)
                            .push_bind(e.operation.clone())
                            .push_bind(e.principal_id.clone())
                            .push_bind(e.principal_name.clone())
                            .push_bind(e.adapter_id.clone())
                            .push_bind(e.success)
                            .push_bind(e.details.to_string())
                            .push_bind(e.error.clone())
                            .push_bind(e.ip_address.clone())
                            .push_bind(e.security_violation)
                            .push_bind(format_timestamp(e.created_at))
                            .push_bind(c.prev_hash.clone())
                            .push_bind(c.hash.clone());
                    });
                    if returning {
                        qb.push(" RETURNING id, log_id");
                        let ids = qb.build().fetch_all(&mut *tx).await.unwrap();
                        assert_eq!(ids.len(), chunk.len());
                    } else {
                        qb.build().execute(&mut *tx).await.unwrap();
                    }
                    tx.commit().await.unwrap();
                    latencies.push(sent.elapsed());
                }
                Measured::finish(started, &meter, latencies)
            }
        }
    }

    async fn count(&self, sql: &'static str, value: &str) -> i64 {
        match self {
            Pools::Postgres(pool) => sqlx::query_scalar(sql)
                .bind(value)
                .fetch_one(pool)
                .await
                .unwrap(),
            Pools::Sqlite(pool) => sqlx::query_scalar(sql)
                .bind(value)
                .fetch_one(pool)
                .await
                .unwrap(),
        }
    }

    /// The tenant's benchmark rows (its `create_tenant` row left out).
    async fn check_rows(&self, case: &str, tenant: &str, expected: i64) -> String {
        let stored = self
            .count(
                "SELECT COUNT(*) FROM audit_logs WHERE tenant_id = $1 AND operation <> 'create_tenant'",
                tenant,
            )
            .await;
        let verdict = if stored == expected { "ok" } else { "MISMATCH" };
        eprintln!("    {case}: {stored} rows stored, {expected} sent: {verdict}");
        format!("{case}: {stored} of {expected} events stored ({verdict})")
    }

    async fn count_operation(&self, operation: &str) -> i64 {
        self.count(
            "SELECT COUNT(*) FROM audit_logs WHERE operation = $1",
            operation,
        )
        .await
    }

    /// Waits (up to 10 s) for the rows of `operation` to reach `expected`.
    async fn wait_for_operation(&self, case: &str, operation: &str, expected: i64) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut stored = self.count_operation(operation).await;
        while stored < expected && Instant::now() < deadline {
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
            stored = self.count_operation(operation).await;
        }
        let verdict = if stored == expected { "ok" } else { "MISMATCH" };
        eprintln!("    {case}: {stored} `{operation}` rows, {expected} expected: {verdict}");
        format!(
            "{case}: {stored} of {expected} audited requests stored as `{operation}` rows ({verdict})"
        )
    }
}

// ---------------------------------------------------------------------------
// (c): the AuditActor in-process

/// Starts an Auditor configured as the service configures it (batch size,
/// flush interval, queue, redaction, file sinks under a temporary `LOG_DIR`)
/// on this System, and feeds it `events` events from [`PRODUCERS`]
/// concurrent producers on another thread (as HTTP workers do). Returns the
/// time until the last acknowledgement and each call's latency.
async fn actor_run(
    config: &Config,
    store: &Store,
    tenant: &str,
    sinks: bool,
    pipeline: usize,
    source: Source,
    events: usize,
) -> Measured {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let supervisor = Supervisor::new(clock.clone());
    let audit = &config.audit;
    let files = tempfile::tempdir().unwrap();
    let auditor = Auditor::start(
        &supervisor,
        config.supervision.policy.clone(),
        AuditConfig {
            batch_size: audit.batch_size,
            flush_interval: audit.flush_interval,
            pipeline,
            queue_capacity: audit.queue_capacity,
            redactor: Redactor {
                max_value_chars: audit.max_value_chars,
            },
            spool_dir: files.path().join("spool"),
            sinks: SinkConfig {
                dir: files.path().join("logs"),
                retention_days: audit.retention_days,
                audit_log: sinks && audit.audit_log,
                error_log: sinks && audit.error_log,
                structured: sinks && audit.structured_log,
                security: sinks && audit.security_log,
            },
        },
        Arc::new(store.clone()),
        clock,
    )
    .unwrap();

    // Producer p gets batches p, p + PRODUCERS, ...
    let mut shares: Vec<Vec<Vec<AuditEvent>>> = (0..PRODUCERS).map(|_| Vec::new()).collect();
    let events = make_events(tenant, events);
    for (i, batch) in events.chunks(PRODUCER_BATCH).enumerate() {
        shares[i % PRODUCERS].push(batch.to_vec());
    }
    drop(events);

    on_client_thread(move || async move {
        let (started, meter) = (Instant::now(), CpuSnapshot::take());
        let producers: Vec<_> = shares
            .into_iter()
            .map(|batches| {
                let auditor = auditor.clone();
                tokio::spawn(async move {
                    let mut latencies = Vec::with_capacity(batches.len());
                    for batch in batches {
                        let sent = Instant::now();
                        auditor.record_durable(source, batch).await.unwrap();
                        latencies.push(sent.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        let mut latencies = Vec::new();
        for producer in producers {
            latencies.extend(producer.await.unwrap());
        }
        Measured::finish(started, &meter, latencies)
    })
    .await
}

/// (c) diagnostic: the store's append (lock, idempotency lookup, chain heads,
/// hashes, INSERT ... RETURNING, commit) called directly with `batch`-event
/// batches, one after another: the database part of each actor flush.
async fn store_append_run(store: &Store, tenant: &str, batch: usize, events: usize) -> Measured {
    let events = make_events(tenant, events);
    let mut latencies = Vec::new();
    let (started, meter) = (Instant::now(), CpuSnapshot::take());
    for chunk in events.chunks(batch) {
        let sent = Instant::now();
        let committed = store.append_audit(chunk).await.unwrap();
        assert_eq!(committed.len(), chunk.len());
        latencies.push(sent.elapsed());
    }
    Measured::finish(started, &meter, latencies)
}

// ---------------------------------------------------------------------------
// (d), (e): the real service over HTTP

/// Runs `work` on a thread of its own with a current-thread Tokio runtime
/// (the load generator), so the System thread stays free for the actors.
async fn on_client_thread<F, Fut, T>(work: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(LOAD_GENERATOR.into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let _ = tx.send(runtime.block_on(work()));
        })
        .unwrap();
    rx.await.expect("the load generator thread panicked")
}

fn http_client() -> reqwest::Client {
    overseer::adapters::slack::install_tls_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

async fn post_events(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: Bytes,
) -> reqwest::Response {
    let response = client
        .post(url)
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        reqwest::StatusCode::ACCEPTED,
        "ingest refused"
    );
    response
}

/// (d): `clients` clients, each sending the next body as soon as its previous
/// request was acknowledged. Returns the total time and each request's
/// latency (send to response body read).
async fn ingest_closed_loop(
    url: String,
    token: String,
    bodies: Vec<(usize, Bytes)>,
    clients: usize,
) -> Measured {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let url = Arc::new(url);
    let token = Arc::new(token);
    let (started, meter) = (Instant::now(), CpuSnapshot::take());
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (bodies, next, url, token) =
                (bodies.clone(), next.clone(), url.clone(), token.clone());
            tokio::spawn(async move {
                let client = http_client();
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((_, body)) = bodies.get(i) else {
                        break;
                    };
                    let sent = Instant::now();
                    let response = post_events(&client, &url, &token, body.clone()).await;
                    response.bytes().await.unwrap();
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    Measured::finish(started, &meter, latencies)
}

/// (d) paced: an open loop, one request every [`PACED_PERIOD`] whatever the
/// answers, round-robin over [`PACED_CLIENTS`] clients. A request's latency
/// runs from when it was due (not when it went out), so a stall is not
/// hidden. Returns the time from the first due time to the last answer.
async fn ingest_paced(url: String, token: String, bodies: Vec<(usize, Bytes)>) -> Measured {
    let clients: Vec<reqwest::Client> = (0..PACED_CLIENTS).map(|_| http_client()).collect();
    // Open the connections before the clock starts.
    for client in &clients {
        let _ = client
            .get(url.replace("/api/v1/audit/events", "/health"))
            .send()
            .await;
    }
    let url = Arc::new(url);
    let token = Arc::new(token);
    let start = Instant::now() + Duration::from_millis(50);
    let meter = CpuSnapshot::take();
    let mut tasks = Vec::with_capacity(bodies.len());
    for (i, (_, body)) in bodies.into_iter().enumerate() {
        let due = start + PACED_PERIOD * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let client = clients[i % clients.len()].clone();
        let (url, token) = (url.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let response = post_events(&client, &url, &token, body).await;
            response.bytes().await.unwrap();
            let done = Instant::now();
            (done - due, done)
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut last = start;
    for task in tasks {
        let (latency, done) = task.await.unwrap();
        latencies.push(latency);
        last = last.max(done);
    }
    Measured {
        elapsed: last - start,
        latencies,
        cpu: meter.since(),
    }
}

/// What an (e) instance audits of a request that succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auditing {
    /// The defaults: the middleware's row and the `token_validated` row.
    On,
    /// `AUDIT_REQUESTS=false`: the `token_validated` row only (issue 5's
    /// "every decision is audited" holds whatever the middleware does).
    MiddlewareOff,
    /// `AUDIT_TOKEN_VALIDATIONS=false` as well: no row at all.
    Nothing,
}

impl Auditing {
    const ALL: [Self; 3] = [Self::On, Self::MiddlewareOff, Self::Nothing];

    fn settings(self) -> &'static str {
        match self {
            Self::On => "AUDIT_REQUESTS=on",
            Self::MiddlewareOff => "AUDIT_REQUESTS=off",
            Self::Nothing => "AUDIT_REQUESTS=off, AUDIT_TOKEN_VALIDATIONS=off",
        }
    }

    /// `(AUDIT_REQUESTS, AUDIT_TOKEN_VALIDATIONS)`.
    fn vars(self) -> (&'static str, &'static str) {
        match self {
            Self::On => ("true", "true"),
            Self::MiddlewareOff => ("false", "true"),
            Self::Nothing => ("false", "false"),
        }
    }
}

struct MwRounds {
    /// Per instance, in [`Auditing::ALL`]'s order: requests, and the rounds'
    /// time, latencies and CPU summed.
    results: [(usize, Measured); 3],
    /// Requests sent to each instance, warm-up included.
    sent: [usize; 3],
}

/// (e): closed-loop GETs against each of `targets` (in [`Auditing::ALL`]'s
/// order), [`MW_ROUNDS`] rounds each, in the orders of [`MW_ORDERS`].
async fn middleware_rounds(targets: [(String, String); 3]) -> MwRounds {
    let clients = [0, 1, 2].map(|_| (0..MW_CLIENTS).map(|_| http_client()).collect::<Vec<_>>());
    let mut results = [0, 1, 2].map(|_| {
        (
            0,
            Measured {
                elapsed: Duration::ZERO,
                latencies: Vec::new(),
                cpu: CpuUse::default(),
            },
        )
    });
    let mut sent = [0; 3];
    for (which, (url, token)) in targets.iter().enumerate() {
        let (n, _) = get_for(&clients[which], url, token, MW_WARMUP).await;
        sent[which] += n;
    }
    for (round, order) in MW_ORDERS.iter().enumerate() {
        for &which in order {
            let (url, token) = &targets[which];
            let (n, measured) = get_for(&clients[which], url, token, MW_ROUND).await;
            eprintln!(
                "    round {round} {}: {:.0} req/s",
                Auditing::ALL[which].settings(),
                n as f64 / measured.elapsed.as_secs_f64()
            );
            let (requests, total) = &mut results[which];
            *requests += n;
            total.elapsed += measured.elapsed;
            total.latencies.extend(measured.latencies);
            total.cpu.add(&measured.cpu);
            sent[which] += n;
        }
    }
    MwRounds { results, sent }
}

/// One (e) measurement: `path` on each of the three instances (in
/// [`Auditing::ALL`]'s order), with `tokens` (for each).
struct MiddlewareCase {
    /// The rows' names, in [`Auditing::ALL`]'s order.
    tags: [&'static str; 3],
    what: &'static str,
    path: String,
    tokens: [String; 3],
    /// What the middleware records each request as.
    operation: &'static str,
}

impl MiddlewareCase {
    /// Runs the rounds; pushes a row per instance and the checks that every
    /// request to the auditing instance (warm-up included) became a row of
    /// `operation`, and every request to the first two a `token_validated`
    /// row. Returns the three rates.
    async fn run(
        self,
        pools: &Pools,
        apps: &[RunningApp; 3],
        rows: &mut Vec<Row>,
        checks: &mut Vec<String>,
    ) -> [f64; 3] {
        let what = self.what;
        eprintln!("(e) {what}: auditing on, middleware off, nothing per request");
        // Rows of the requests before this case (creating the tenant or the
        // token) are committed within a flush interval or two.
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
        let before = pools.count_operation(self.operation).await;
        let validated_before = pools.count_operation("token_validated").await;
        let mut tokens = self.tokens.into_iter();
        let targets = apps
            .each_ref()
            .map(|app| (app.url(&self.path), tokens.next().unwrap()));
        let mw = on_client_thread(move || middleware_rounds(targets)).await;
        let mut rates = [0.0; 3];
        for (i, (requests, measured)) in mw.results.into_iter().enumerate() {
            let auditing = Auditing::ALL[i];
            let row = Row::new(
                self.tags[i],
                format!(
                    "{what}, {}, {MW_CLIENTS} clients, {MW_ROUNDS} x {} s in turn",
                    auditing.settings(),
                    MW_ROUND.as_secs()
                ),
                requests,
                "req/s",
                measured,
            );
            rates[i] = row.rate();
            rows.push(row);
        }
        let [on, off, _] = mw.sent;
        checks.push(
            pools
                .wait_for_operation(self.tags[0], self.operation, before + on as i64)
                .await,
        );
        checks.push(
            pools
                .wait_for_operation(
                    self.tags[1],
                    "token_validated",
                    validated_before + (on + off) as i64,
                )
                .await,
        );
        rates
    }
}

/// Each client GETs `url` in a loop for `duration`.
async fn get_for(
    clients: &[reqwest::Client],
    url: &str,
    token: &str,
    duration: Duration,
) -> (usize, Measured) {
    let (started, meter) = (Instant::now(), CpuSnapshot::take());
    let deadline = started + duration;
    let tasks: Vec<_> = clients
        .iter()
        .map(|client| {
            let (client, url, token) = (client.clone(), url.to_owned(), token.to_owned());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    let response = client.get(&url).bearer_auth(&token).send().await.unwrap();
                    assert_eq!(response.status(), reqwest::StatusCode::OK);
                    response.bytes().await.unwrap();
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    (
        latencies.len(),
        Measured::finish(started, &meter, latencies),
    )
}

/// The service built as the tests build it, serving on this System until
/// [`RunningApp::stop`].
struct RunningApp {
    address: String,
    admin_token: String,
    stop: tokio::sync::oneshot::Sender<()>,
    served: actix_web::rt::task::JoinHandle<std::io::Result<()>>,
}

/// Audit settings a run may set in its environment to measure another
/// configuration (the defaults otherwise); the report's header names them.
const TUNABLE: [&str; 3] = [
    "AUDIT_BATCH_SIZE",
    "AUDIT_FLUSH_INTERVAL_MS",
    "AUDIT_FLUSH_PIPELINE",
];

/// The configuration the tests use (two HTTP workers, eight connections,
/// files under `files/<name>`), through the real parser.
fn config_for(database_url: &str, files: &Path, name: &str, auditing: Auditing) -> Config {
    let log_dir = files.join(name).join("logs").display().to_string();
    let spool_dir = files.join(name).join("spool").display().to_string();
    let admin_token = format!(
        "bench-admin-{}{}",
        Uuid::new_v4().simple(),
        Uuid::new_v4().simple()
    );
    let vars: HashMap<&str, OsString> = [
        ("BIND_ADDR", "127.0.0.1:0"),
        ("DATABASE_URL", database_url),
        ("ADMIN_TOKEN", admin_token.as_str()),
        ("HTTP_WORKERS", "2"),
        ("DATABASE_MAX_CONNECTIONS", "8"),
        ("LOG_DIR", log_dir.as_str()),
        ("AUDIT_SPOOL_DIR", spool_dir.as_str()),
        // No timers: every 30 s each instance's alert rules count the audit
        // rows of the last 15 minutes (here up to a million, 0.1-0.5 s of
        // PostgreSQL's CPU), which lands on whichever case or round is
        // running (docs/benchmarks.md, "Runs 90-").
        ("SKIP_CRON", "true"),
        ("AUDIT_REQUESTS", auditing.vars().0),
        ("AUDIT_TOKEN_VALIDATIONS", auditing.vars().1),
    ]
    .into_iter()
    .map(|(k, v)| (k, OsString::from(v)))
    .chain(
        TUNABLE
            .iter()
            .filter_map(|&k| std::env::var_os(k).map(|v| (k, v))),
    )
    .collect();
    Config::from_lookup(|name| vars.get(name).cloned()).unwrap()
}

async fn spawn_app(database_url: &str, files: &Path, name: &str, auditing: Auditing) -> RunningApp {
    let config = config_for(database_url, files, name, auditing);
    let admin_token = config.admin_token.token.expose_secret().to_owned();
    let app = Application::build(config).await.unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = actix_web::rt::spawn(app.run_until(async move {
        let _ = stopped.await;
        "benchmark finished"
    }));
    RunningApp {
        address,
        admin_token,
        stop,
        served,
    }
}

impl RunningApp {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    async fn create_tenant(&self, id: &str) {
        let body = json!({"id": id, "name": format!("Benchmark {id}")});
        self.post_as_admin("/api/v1/tenants", body, "create tenant")
            .await;
    }

    /// A new admin token of tenant `id` (the token itself).
    async fn create_admin_token(&self, id: &str) -> String {
        let path = format!("/api/v1/tenants/{id}/admin-tokens");
        let created = self
            .post_as_admin(&path, json!({}), "create admin token")
            .await;
        created["token"].as_str().unwrap().to_owned()
    }

    /// POSTs `body` to `path` as the super admin; expects 201 and returns
    /// what was created.
    async fn post_as_admin(&self, path: &str, body: Value, what: &str) -> Value {
        let (url, token, what) = (self.url(path), self.admin_token.clone(), what.to_owned());
        on_client_thread(move || async move {
            let response = http_client()
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), reqwest::StatusCode::CREATED, "{what}");
            response.json().await.unwrap()
        })
        .await
    }

    /// Graceful stop: in-flight requests finish, the pool closes.
    async fn stop(self) {
        let _ = self.stop.send(());
        self.served.await.unwrap().unwrap();
    }
}

// ---------------------------------------------------------------------------
// Databases

// ---------------------------------------------------------------------------
// CPU accounting (Linux /proc): where the cores went during a case

/// The name of the load generator's threads (see [`on_client_thread`]).
const LOAD_GENERATOR: &str = "load-generator";

/// `/proc` times are in clock ticks: 100 per second on Linux (USER_HZ).
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    /// The System thread: the actors (the AuditActor and its database I/O),
    /// and the benchmark's own SQL in (a) and (b).
    Main,
    /// actix-web workers: parsing, validating, answering; the middleware.
    Http,
    /// sqlx's SQLite worker threads, where SQLite itself runs.
    Sqlite,
    Load,
    /// The rest of this process: the blocking pool (file sinks, spool), the
    /// acceptor, threads that ended during the case.
    Other,
}

fn group_of(tid: u32, thread_name: &str) -> Group {
    // `comm` is cut at 15 bytes; the main thread's is the program's name.
    match thread_name.trim_end() {
        _ if tid == std::process::id() => Group::Main,
        // Workers are arbiters named `actix-rt|system:N|arbiter:M`.
        n if n.starts_with("actix-rt|") => Group::Http,
        n if n.starts_with("sqlx-sqlite") => Group::Sqlite,
        n if LOAD_GENERATOR.starts_with(n) && !n.is_empty() => Group::Load,
        _ => Group::Other,
    }
}

/// CPU seconds spent between two snapshots, by where.
#[derive(Debug, Clone, Default)]
struct CpuUse {
    main: f64,
    http: f64,
    sqlite: f64,
    load: f64,
    other: f64,
    /// Every `postgres` process (backends, including ended ones, through the
    /// postmaster's reaped-children time; and the server's own processes).
    postgres: f64,
}

impl CpuUse {
    fn add(&mut self, other: &CpuUse) {
        self.main += other.main;
        self.http += other.http;
        self.sqlite += other.sqlite;
        self.load += other.load;
        self.other += other.other;
        self.postgres += other.postgres;
    }

    fn total(&self) -> f64 {
        self.main + self.http + self.sqlite + self.load + self.other + self.postgres
    }
}

/// CPU times of this process (whole, and per live thread) and of PostgreSQL.
struct CpuSnapshot {
    process: f64,
    threads: HashMap<u32, (Group, f64)>,
    postgres: f64,
}

/// utime + stime (+ cutime + cstime with `children`) of a `/proc/.../stat`.
fn cpu_seconds(stat: &Path, children: bool) -> Option<f64> {
    let text = std::fs::read_to_string(stat).ok()?;
    // Fields after the command name, which is in parentheses: state is
    // field 3, utime 14, stime 15, cutime 16, cstime 17.
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    let mut ticks = field(14)? + field(15)?;
    if children {
        ticks += field(16)? + field(17)?;
    }
    Some(ticks / TICKS_PER_SECOND)
}

impl CpuSnapshot {
    fn take() -> Self {
        let mut threads = HashMap::new();
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            for task in tasks.flatten() {
                let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                    continue;
                };
                let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
                if let Some(cpu) = cpu_seconds(&task.path().join("stat"), false) {
                    threads.insert(tid, (group_of(tid, &name), cpu));
                }
            }
        }
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
            process: cpu_seconds(Path::new("/proc/self/stat"), false).unwrap_or(0.0),
            threads,
            postgres,
        }
    }

    /// The CPU spent since this snapshot.
    fn since(&self) -> CpuUse {
        let now = Self::take();
        let mut used = CpuUse {
            postgres: (now.postgres - self.postgres).max(0.0),
            ..CpuUse::default()
        };
        let mut threads = 0.0;
        for (tid, (group, cpu)) in &now.threads {
            let before = self.threads.get(tid).map_or(0.0, |(_, cpu)| *cpu);
            let delta = (cpu - before).max(0.0);
            threads += delta;
            match group {
                Group::Main => used.main += delta,
                Group::Http => used.http += delta,
                Group::Sqlite => used.sqlite += delta,
                Group::Load => used.load += delta,
                Group::Other => used.other += delta,
            }
        }
        // Threads that ended during the case are only in the process total.
        used.other += (now.process - self.process - threads).max(0.0);
        used
    }
}

// ---------------------------------------------------------------------------
// The report

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1_000.0)
}

fn thousands(x: f64) -> String {
    let n = x.round() as u64;
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

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**missed**" }
}

fn print_report(reports: &[Report], total: Duration) {
    let mut out = String::new();
    let _ = writeln!(out, "\n## Audit ingest benchmark\n");
    let _ = writeln!(
        out,
        "Run took {:.0} s. Latencies (nearest rank): (a) per event, (b) per chunk, (c) per \
         `record_durable` call (store only: per batch), (d) and (e) per request, until \
         acknowledged.\n",
        total.as_secs_f64()
    );
    let transport = match std::env::var("BENCH_PG_SOCKET_DIR") {
        Ok(dir) if !dir.is_empty() => format!("over its Unix socket in {dir}"),
        _ => format!("over TCP ({})", postgres_admin_url()),
    };
    let defaults = config_for("sqlite::memory:", Path::new("."), "unused", Auditing::On);
    let _ = writeln!(
        out,
        "PostgreSQL reached {transport}; the service with the audit settings \
         (AUDIT_BATCH_SIZE {}, AUDIT_FLUSH_INTERVAL_MS {}, AUDIT_FLUSH_PIPELINE {}, file sinks on), \
         HTTP_WORKERS {}, DATABASE_MAX_CONNECTIONS {}.\n",
        defaults.audit.batch_size,
        defaults.audit.flush_interval.as_millis(),
        defaults.audit.pipeline,
        defaults.http.workers,
        defaults.database.max_connections,
    );
    let _ = writeln!(
        out,
        "| backend | case | what | n | time | rate | p50 | p90 | p99 | max |"
    );
    let _ = writeln!(out, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for report in reports {
        for row in &report.rows {
            let [p50, p90, p99, max] = row.latency.map_or([(); 4].map(|()| String::new()), |l| {
                [l.p50, l.p90, l.p99, l.max].map(ms)
            });
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.2} s | {} {} | {p50} | {p90} | {p99} | {max} |",
                report.backend.name(),
                row.case,
                row.what,
                thousands(row.count as f64),
                row.elapsed.as_secs_f64(),
                thousands(row.rate()),
                row.unit,
            );
        }
    }

    let _ = writeln!(
        out,
        "\n### CPU per 1,000 events (per 1,000 requests for (e)), ms\n\n\
         System thread: the actors (AuditActor and its DB I/O; the bench's SQL in (a), (b)). \
         Other: the rest of this process (blocking pool: file sinks; threads that ended). \
         Cores busy: all CPU over wall time, of 2.\n"
    );
    let _ = writeln!(
        out,
        "| backend | case | System thread | HTTP workers | SQLite threads | other | load generator | PostgreSQL | total | cores busy |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for report in reports {
        for row in &report.rows {
            let per = |cpu: f64| format!("{:.1}", cpu * 1_000.0 * 1_000.0 / row.count as f64);
            let c = &row.cpu;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} |",
                report.backend.name(),
                row.case,
                per(c.main),
                per(c.http),
                per(c.sqlite),
                per(c.other),
                per(c.load),
                per(c.postgres),
                per(c.total()),
                c.total() / row.elapsed.as_secs_f64(),
            );
        }
    }

    let _ = writeln!(out, "\n### Ratios and goals\n");
    let _ = writeln!(out, "| backend | figure | value | goal | verdict |");
    let _ = writeln!(out, "|---|---|---:|---|---|");
    for r in reports {
        let b = r.backend.name();
        let c_b = r.actor / r.bulk;
        let c_a = r.actor / r.reference_tx;
        let c_a2 = r.actor / r.reference_autocommit;
        let _ = writeln!(
            out,
            "| {b} | (c)/(b) | {c_b:.2} | ≥ 0.70 | {} |",
            verdict(c_b >= 0.70)
        );
        let _ = writeln!(
            out,
            "| {b} | (c)/(a) BEGIN/INSERT/COMMIT | {c_a:.1}× | ≥ 15× | {} |",
            verdict(c_a >= 15.0)
        );
        let _ = writeln!(
            out,
            "| {b} | (c)/(a') autocommit INSERT | {c_a2:.1}× | ≥ 15× | {} |",
            verdict(c_a2 >= 15.0)
        );
        for (who, [on, off, nothing]) in [("", r.mw), (", tenant admin token", r.mw_tenant)] {
            let _ = writeln!(
                out,
                "| {b} | (e) on/off{who} | {:.2} ({} / {} req/s) | ≥ 0.80 | {} |",
                on / off,
                thousands(on),
                thousands(off),
                verdict(on / off >= 0.80)
            );
            let _ = writeln!(
                out,
                "| {b} | (e) on/nothing per request{who} | {:.2} ({} / {} req/s) | diagnostic | |",
                on / nothing,
                thousands(on),
                thousands(nothing),
            );
        }
        let pg = r.backend == Backend::Postgres;
        let goal = |met: bool| {
            if pg {
                verdict(met)
            } else {
                "n/a (PostgreSQL goal)"
            }
        };
        let _ = writeln!(
            out,
            "| {b} | (d) closed loop | {} events/s | ≥ 25,000 events/s | {} |",
            thousands(r.http),
            goal(r.http >= 25_000.0)
        );
        if let Some(paced) = r.paced {
            let _ = writeln!(
                out,
                "| {b} | (d) paced p99 ack ({} events/s achieved) | {} | ≤ 50 ms at 10,000 events/s | {} |",
                thousands(r.paced_rate),
                ms(paced.p99),
                goal(paced.p99 <= Duration::from_millis(50))
            );
        }
    }
    let _ = writeln!(out, "\n### Checks\n");
    for r in reports {
        for check in &r.checks {
            let _ = writeln!(out, "- {}: {check}", r.backend.name());
        }
    }
    print!("{out}");
}
