//! The audit trail when things go wrong: the database away (with and without
//! a SIGKILL), a full queue, a panic mid-flush, two replicas at once.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use overseer::store::Store;
use serde_json::{Value, json};
use sqlx::{Connection, Executor};

use crate::audit::{
    assert_exactly_once, create_tenant, event, ingest, ingest_ok, stored, test_auditor,
    test_auditor_on, verify,
};
use crate::helpers::{
    Backend, ServiceProcess, TcpProxy, TestApp, TestDatabase, config_from, on_both_backends,
    spawn_app_on, spawn_app_with,
};

on_both_backends!(
    acknowledged_events_survive_a_database_outage,
    acknowledged_events_survive_a_sigkill_during_an_outage,
    a_full_queue_answers_503_with_retry_after_and_loses_nothing,
    an_audit_panic_mid_flush_loses_no_accepted_event,
    events_waiting_at_shutdown_are_spooled_and_replayed_at_the_next_start,
    a_failed_batch_keeps_the_batch_flushed_behind_it_in_order,
    a_repeat_in_the_batch_behind_is_stored_once,
    only_log_ids_that_may_be_stored_are_looked_up,
);

mod postgres {
    #[actix_web::test]
    async fn two_replicas_extend_the_same_chains_without_gaps() {
        crate::helpers::run_test(super::two_replicas_extend_the_same_chains_without_gaps()).await
    }
}

/// Takes the database away from the service and gives it back.
enum Switch {
    /// PostgreSQL behind a proxy that drops every connection: unreachable.
    Proxy(TcpProxy),
    /// Another connection holds the lock every audit write needs (SQLite's
    /// write lock; PostgreSQL's audit advisory lock): reads go on, every
    /// write waits out the query timeout and fails. On SQLite this is the
    /// outage; on PostgreSQL, a stalled database.
    Lock {
        backend: Backend,
        url: String,
        conn: Option<LockHolder>,
    },
}

enum LockHolder {
    Postgres(sqlx::PgConnection),
    Sqlite(sqlx::SqliteConnection),
}

/// The audit trail's advisory lock key (see `store::pg`).
const AUDIT_LOCK_KEY: i64 = 0x6f76_6572_7365_6572;

impl Switch {
    /// A real cut: the proxy on PostgreSQL, the lock on SQLite.
    async fn cut_off(backend: Backend, db: &TestDatabase) -> (Self, String) {
        match backend {
            Backend::Postgres => {
                let proxy = TcpProxy::start("127.0.0.1:5432".parse().unwrap()).await;
                let url = db.url_through(&proxy);
                (Switch::Proxy(proxy), url)
            }
            Backend::Sqlite => Self::stall(backend, db),
        }
    }

    /// A stall: the lock, on both backends.
    fn stall(backend: Backend, db: &TestDatabase) -> (Self, String) {
        let lock = Switch::Lock {
            backend,
            url: db.url.clone(),
            conn: None,
        };
        (lock, db.url.clone())
    }

    async fn cut(&mut self) {
        match self {
            Switch::Proxy(proxy) => proxy.cut(),
            Switch::Lock { backend, url, conn } => {
                *conn = Some(match backend {
                    Backend::Sqlite => {
                        let mut lock = sqlx::SqliteConnection::connect(url).await.unwrap();
                        lock.execute("BEGIN EXCLUSIVE").await.unwrap();
                        LockHolder::Sqlite(lock)
                    }
                    Backend::Postgres => {
                        let mut lock = sqlx::PgConnection::connect(url).await.unwrap();
                        lock.execute("BEGIN").await.unwrap();
                        lock.execute(sqlx::AssertSqlSafe(format!(
                            "SELECT pg_advisory_xact_lock({AUDIT_LOCK_KEY})"
                        )))
                        .await
                        .unwrap();
                        LockHolder::Postgres(lock)
                    }
                });
            }
        }
    }

    async fn restore(&mut self) {
        match self {
            Switch::Proxy(proxy) => proxy.restore(),
            Switch::Lock { conn, .. } => match conn.take() {
                Some(LockHolder::Sqlite(mut lock)) => {
                    lock.execute("ROLLBACK").await.unwrap();
                }
                Some(LockHolder::Postgres(mut lock)) => {
                    lock.execute("ROLLBACK").await.unwrap();
                }
                None => {}
            },
        }
    }
}

/// Short timeouts, so an outage is noticed in about a second.
const OUTAGE_VARS: [(&str, &str); 2] = [
    ("DATABASE_CONNECT_TIMEOUT", "1s"),
    ("DATABASE_QUERY_TIMEOUT", "1s"),
];

async fn app_with_switch(
    backend: Backend,
    stall: bool,
    vars: &[(&str, &str)],
) -> (TestApp, Switch) {
    let db = TestDatabase::new(backend).await;
    let (switch, url) = if stall {
        Switch::stall(backend, &db)
    } else {
        Switch::cut_off(backend, &db).await
    };
    let mut all = OUTAGE_VARS.to_vec();
    all.extend_from_slice(vars);
    (spawn_app_on(db, &url, &all).await, switch)
}

/// `components.audit` of `/health`, whatever the status code.
async fn audit_health(client: &reqwest::Client, base: &str) -> Value {
    let body: Value = client
        .get(format!("{base}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["components"]["audit"].clone()
}

async fn wait_for_drained(client: &reqwest::Client, base: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let audit = audit_health(client, base).await;
        if audit["spool_events"] == 0 && audit["queue_depth"] == 0 {
            return audit;
        }
        assert!(Instant::now() < deadline, "audit never drained: {audit}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `requests` requests of `per_request` events for `tenant` from five
/// clients at once; returns the log ids of the 202 answers.
async fn ingest_many(
    app: &TestApp,
    tenant: &str,
    operation: &str,
    requests: usize,
    per_request: usize,
) -> Vec<String> {
    let clients = (0..5).map(|client| async move {
        let mut ids = Vec::new();
        for r in (client..requests).step_by(5) {
            let events: Vec<Value> = (0..per_request)
                .map(|j| event(tenant, operation, r * per_request + j))
                .collect();
            ids.extend(ingest_ok(app, &Value::Array(events)).await);
        }
        ids
    });
    join_all(clients).await.concat()
}

async fn acknowledged_events_survive_a_database_outage(backend: Backend) {
    let (app, mut switch) = app_with_switch(backend, false, &[]).await;
    create_tenant(&app, "acme").await;

    switch.cut().await;
    let acknowledged = ingest_many(&app, "acme", "outage_op", 50, 100).await;
    assert_eq!(acknowledged.len(), 5_000, "every request answered 202");
    let during = audit_health(&app.client, &app.address).await;
    assert!(
        during["spool_events"].as_u64().unwrap() >= 4_000,
        "spool grows: {during}"
    );
    assert!(during["last_error"].is_string(), "{during}");
    // The files hold the events on disk while the database is away.
    assert!(
        std::fs::read_dir(app.files.path().join("spool"))
            .unwrap()
            .count()
            > 0
    );

    switch.restore().await;
    let after = wait_for_drained(&app.client, &app.address, Duration::from_secs(60)).await;
    assert!(after["last_error"].is_null(), "{after}");
    let rows = stored(&app.store, &["outage_op"]).await;
    assert_eq!(rows.len(), 5_000);
    assert_exactly_once(&rows, &acknowledged);
    assert_eq!(
        verify(&app, "acme").await,
        json!({"ok": true, "checked": 5_001})
    );
}

async fn acknowledged_events_survive_a_sigkill_during_an_outage(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let (mut switch, url) = Switch::cut_off(backend, &db).await;
    let workdir = tempfile::tempdir().unwrap();
    let token = "sigkill-test-admin-token";
    let vars = [
        ("DATABASE_URL", url.as_str()),
        ("BIND_ADDR", "127.0.0.1:0"),
        ("ADMIN_TOKEN", token),
        ("DATABASE_CONNECT_TIMEOUT", "1s"),
        ("DATABASE_QUERY_TIMEOUT", "1s"),
    ];
    let client = crate::helpers::http_client();
    let mut service = ServiceProcess::start(workdir.path(), &vars);
    let base = service.base_url().await;
    let post = |body: Value| {
        client
            .post(format!("{base}/api/v1/audit/events"))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let response = client
        .post(format!("{base}/api/v1/tenants"))
        .bearer_auth(token)
        .json(&json!({"id": "acme", "name": "Acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);

    switch.cut().await;
    let mut acknowledged = Vec::new();
    for r in 0..50 {
        let events: Vec<Value> = (0..100)
            .map(|j| event("acme", "killed_op", r * 100 + j))
            .collect();
        let answer: Value = post(Value::Array(events))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for id in answer["log_ids"].as_array().expect("202 with log ids") {
            acknowledged.push(id.as_str().unwrap().to_owned());
        }
    }
    let during = audit_health(&client, &base).await;
    assert!(during["spool_events"].as_u64().unwrap() > 0, "{during}");
    service.send_sigkill();
    service
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("killed");

    switch.restore().await;
    let mut restarted = ServiceProcess::start(workdir.path(), &vars);
    let base = restarted.base_url().await;
    wait_for_drained(&client, &base, Duration::from_secs(60)).await;

    let store = Store::open(&config_from(&[("DATABASE_URL", db.url.as_str())]).database).unwrap();
    let rows = stored(&store, &["killed_op"]).await;
    assert_eq!(rows.len(), 5_000);
    assert_exactly_once(&rows, &acknowledged);
    let verdict: Value = client
        .get(format!("{base}/api/v1/audit/verify?tenant_id=acme"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(verdict, json!({"ok": true, "checked": 5_001}));
    restarted.send_sigterm();
    restarted.wait_exit(Duration::from_secs(10)).await;
    store.close().await;
}

async fn a_full_queue_answers_503_with_retry_after_and_loses_nothing(backend: Backend) {
    let (app, mut switch) = app_with_switch(
        backend,
        true,
        &[
            ("AUDIT_QUEUE_CAPACITY", "1000"),
            ("AUDIT_REQUESTS", "false"),
            ("AUDIT_TOKEN_VALIDATIONS", "false"),
        ],
    )
    .await;
    create_tenant(&app, "acme").await;

    switch.cut().await;
    // The first flush waits for the lock (a second) while the queue fills: a
    // request that would take it past 1,000 events is refused.
    let batch = |from: usize| {
        Value::Array(
            (from..from + 500)
                .map(|i| event("acme", "full_op", i))
                .collect(),
        )
    };
    let (a, b, c) = (batch(0), batch(500), batch(1_000));
    let (first, second, third) = futures_util::join!(
        ingest(&app, &a),
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            ingest(&app, &b).await
        },
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            ingest(&app, &c).await
        },
    );
    assert_eq!(first.status().as_u16(), 202);
    assert_eq!(second.status().as_u16(), 202);
    assert_eq!(third.status().as_u16(), 503);
    assert_eq!(third.headers()["retry-after"], "1");
    let body: Value = third.json().await.unwrap();
    assert_eq!(body["error"]["code"], "audit_queue_full");

    switch.restore().await;
    wait_for_drained(&app.client, &app.address, Duration::from_secs(60)).await;
    let rows = stored(&app.store, &["full_op"]).await;
    assert_eq!(
        rows.len(),
        1_000,
        "both accepted requests, nothing of the refused one"
    );
}

async fn an_audit_panic_mid_flush_loses_no_accepted_event(backend: Backend) {
    let app = spawn_app_with(backend, &[("ENABLE_FAULT_INJECTION", "true")]).await;
    create_tenant(&app, "acme").await;
    // The fault fires after the batch is committed and before anyone is
    // answered: the worst moment.
    let armed = app
        .post_json_as_admin(
            "/admin/debug/faults",
            &json!({"actor": "audit", "kind": "panic", "times": 3}),
        )
        .await;
    assert_eq!(armed.status().as_u16(), 202);

    let acknowledged = ingest_many(&app, "acme", "panic_op", 20, 100).await;
    assert_eq!(acknowledged.len(), 2_000);
    let rows = stored(&app.store, &["panic_op"]).await;
    assert_eq!(rows.len(), 2_000);
    assert_exactly_once(&rows, &acknowledged);
    assert_eq!(
        verify(&app, "acme").await,
        json!({"ok": true, "checked": 2_001})
    );

    let health = app.get_json_as_admin("/health").await;
    let audit = &health["components"]["actors"]["audit"];
    assert!(audit["restarts"].as_u64().unwrap() >= 3, "{health}");
    assert_eq!(audit["status"], "running", "{health}");
}

async fn two_replicas_extend_the_same_chains_without_gaps() {
    let db = TestDatabase::new(Backend::Postgres).await;
    let url = db.url.clone();
    let first = spawn_app_on(db, &url, &[]).await;
    let second = first.replica(&url, &[]).await;
    for tenant in ["alpha", "beta"] {
        create_tenant(&first, tenant).await;
    }

    // Both replicas write to both tenants at once.
    let writers = [&first, &second, &first, &second]
        .into_iter()
        .enumerate()
        .map(|(w, app)| async move {
            let mut ids = Vec::new();
            for r in 0..10 {
                let events: Vec<Value> = (0..200)
                    .map(|j| {
                        event(
                            if j % 2 == 0 { "alpha" } else { "beta" },
                            "replica_op",
                            (w * 10 + r) * 200 + j,
                        )
                    })
                    .collect();
                ids.extend(ingest_ok(app, &Value::Array(events)).await);
            }
            ids
        });
    let acknowledged: Vec<String> = join_all(writers).await.concat();
    assert_eq!(acknowledged.len(), 8_000);

    let rows = stored(&first.store, &["replica_op"]).await;
    assert_exactly_once(&rows, &acknowledged);
    assert_eq!(rows.len(), 8_000);
    for tenant in ["alpha", "beta"] {
        let mut seqs: Vec<i64> = rows
            .iter()
            .filter(|r| r.event.tenant_id.as_deref() == Some(tenant))
            .map(|r| r.seq)
            .collect();
        seqs.sort_unstable();
        assert_eq!(
            seqs,
            (2..=4_001).collect::<Vec<i64>>(),
            "{tenant}: no gap, no duplicate"
        );
        assert_eq!(
            verify(&second, tenant).await,
            json!({"ok": true, "checked": 4_001})
        );
    }
    // Commit order is id order: ids rise with seq in every chain.
    let mut by_seq: Vec<_> = rows
        .iter()
        .filter(|r| r.event.tenant_id.as_deref() == Some("alpha"))
        .collect();
    by_seq.sort_by_key(|r| r.seq);
    assert!(by_seq.windows(2).all(|w| w[0].id < w[1].id));
}

async fn events_waiting_at_shutdown_are_spooled_and_replayed_at_the_next_start(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let (mut stall, url) = Switch::stall(backend, &db);
    let workdir = tempfile::tempdir().unwrap();
    let token = "shutdown-test-admin-token";
    let vars = [
        ("DATABASE_URL", url.as_str()),
        ("BIND_ADDR", "127.0.0.1:0"),
        ("ADMIN_TOKEN", token),
        // Longer than the shutdown drain (1 s): the flush is still stuck then.
        ("DATABASE_QUERY_TIMEOUT", "3s"),
    ];
    let client = crate::helpers::http_client();
    let mut service = ServiceProcess::start(workdir.path(), &vars);
    let base = service.base_url().await;
    let list = || {
        client
            .get(format!("{base}/api/v1/tenants"))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(list().await.unwrap().status().as_u16(), 200);

    stall.cut().await;
    // Reads go on; their audit events (fire-and-forget) cannot be written.
    for _ in 0..5 {
        assert_eq!(list().await.unwrap().status().as_u16(), 200);
    }
    service.send_sigterm();
    let status = service
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("exits in time");
    assert!(status.success(), "{status}");
    assert!(
        service.all_output().contains("spool"),
        "{}",
        service.all_output()
    );

    stall.restore().await;
    let mut restarted = ServiceProcess::start(workdir.path(), &vars);
    let base = restarted.base_url().await;
    wait_for_drained(&client, &base, Duration::from_secs(30)).await;
    let store = Store::open(&config_from(&[("DATABASE_URL", db.url.as_str())]).database).unwrap();
    let rows = stored(&store, &["list_tenants"]).await;
    assert_eq!(
        rows.len(),
        6,
        "the request before the cut and the five during it, once each"
    );
    restarted.send_sigterm();
    restarted.wait_exit(Duration::from_secs(10)).await;
    store.close().await;
}

/// Waits until `n` rows of `operation` are stored and nothing is queued or
/// spooled; returns their `details.i` and their `seq`, in `seq` order.
async fn settled(
    store: &Store,
    auditor: &overseer_actors::audit::Auditor,
    operation: &str,
    n: usize,
) -> (Vec<i64>, Vec<i64>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut rows = loop {
        let rows = stored(store, &[operation]).await;
        let status = auditor.status();
        if rows.len() >= n && status.queue_depth == 0 && status.spool_events == 0 {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} stored, {status:?}",
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    rows.sort_by_key(|row| row.seq);
    rows.iter()
        .map(|row| (row.event.details["i"].as_i64().unwrap(), row.seq))
        .unzip()
}

/// Waits until `operation`'s events are stored, then asserts that `acme`'s
/// chain holds them once each, in `arrival` order (their `details.i`) from
/// `seq` 1 with no gap, and verifies.
async fn assert_stored_in_order(
    store: &Store,
    auditor: &overseer_actors::audit::Auditor,
    operation: &str,
    arrival: &[i64],
) {
    let (stored, seqs) = settled(store, auditor, operation, arrival.len()).await;
    assert_eq!(stored, arrival, "once each, in arrival order");
    assert_eq!(seqs, (1..=arrival.len() as i64).collect::<Vec<_>>());
    let verdict = overseer::adapters::audit::verify_chain(store, Some("acme"))
        .await
        .unwrap();
    assert!(
        verdict.ok && verdict.checked == arrival.len() as u64,
        "{verdict:?}"
    );
}

/// Makes the database refuse any audit row whose operation is `poison`.
async fn poison_operation(db: &TestDatabase, backend: Backend) {
    match backend {
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            conn.execute(
                "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN RAISE EXCEPTION 'poisoned'; END $$; \
                 CREATE TRIGGER refuse_poison BEFORE INSERT ON audit_logs FOR EACH ROW \
                 WHEN (NEW.operation = 'poison') EXECUTE FUNCTION refuse_poison();",
            )
            .await
            .unwrap();
            conn.close().await.unwrap();
        }
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            conn.execute(
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON audit_logs \
                 WHEN NEW.operation = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned'); END;",
            )
            .await
            .unwrap();
            conn.close().await.unwrap();
        }
    }
}

/// Two batches in flight (`pipeline` 2), and the database refuses the first
/// (one of its events is poisoned): the second, whose transaction is already
/// under way, must not commit ahead of it. It is rolled back and spooled
/// behind it; the replay stores the first batch's good events, sets the bad
/// one aside, then the second batch and the rest, so `seq` follows arrival
/// order and the chain verifies.
async fn a_failed_batch_keeps_the_batch_flushed_behind_it_in_order(backend: Backend) {
    use overseer_actors::audit::{AuditEvent, Source};

    let db = TestDatabase::new(backend).await;
    let store = Store::open(&config_from(&[("DATABASE_URL", db.url.as_str())]).database).unwrap();
    store.migrate().await.unwrap();
    poison_operation(&db, backend).await;
    let files = tempfile::tempdir().unwrap();
    let auditor = test_auditor(&store, files.path(), 10);

    // All queued before the actor runs: batches 0..9 and 10..19 go out
    // together, and event 5 sinks the first.
    let now = chrono::Utc::now();
    for i in 0..60_i64 {
        let operation = if i == 5 { "poison" } else { "in_order" };
        let event = AuditEvent::new(operation, now + chrono::Duration::microseconds(i))
            .with_tenant("acme")
            .with_details(json!({"i": i}));
        auditor.record(Source::Internal, event);
    }

    // seq follows arrival order across the refused batch.
    let arrival: Vec<i64> = (0..60).filter(|i| *i != 5).collect();
    assert_stored_in_order(&store, &auditor, "in_order", &arrival).await;
    let set_aside: String = std::fs::read_dir(files.path().join("spool/rejected"))
        .unwrap()
        .map(|file| std::fs::read_to_string(file.unwrap().path()).unwrap())
        .collect();
    assert!(
        set_aside.contains("poison"),
        "the refused event is set aside"
    );
    assert!(!set_aside.contains("in_order"), "and only it");
    store.close().await;
}

/// The same event in two batches in flight at once (a client's retry landing
/// in the next batch): whichever way the race goes (the second batch sees the
/// first's commit, or the unique index refuses it and it is replayed from the
/// spool), the event is stored once and `seq` follows arrival order.
async fn a_repeat_in_the_batch_behind_is_stored_once(backend: Backend) {
    use overseer_actors::audit::{AuditEvent, Source};

    let db = TestDatabase::new(backend).await;
    let store = Store::open(&config_from(&[("DATABASE_URL", db.url.as_str())]).database).unwrap();
    store.migrate().await.unwrap();
    let files = tempfile::tempdir().unwrap();
    let auditor = test_auditor(&store, files.path(), 10);

    let now = chrono::Utc::now();
    let events: Vec<AuditEvent> = (0..40_i64)
        .map(|i| {
            AuditEvent::new("repeated", now + chrono::Duration::microseconds(i))
                .with_tenant("acme")
                .with_details(json!({"i": i}))
        })
        .collect();
    for (i, event) in events.iter().enumerate() {
        auditor.record(Source::Internal, event.clone());
        if i == 14 {
            // Event 3 again, in the second batch.
            auditor.record(Source::Internal, events[3].clone());
        }
    }

    let arrival: Vec<i64> = (0..40).collect();
    assert_stored_in_order(&store, &auditor, "repeated", &arrival).await;
    store.close().await;
}

/// The real store, with every batch the AuditActor hands it noted: its
/// events' `log_id`s and the ones it was told to look up.
struct Noted {
    store: Store,
    batches: std::sync::Mutex<Vec<(Vec<uuid::Uuid>, Vec<uuid::Uuid>)>>,
}

impl overseer_actors::audit::AuditStore for Noted {
    fn append(
        &self,
        events: std::sync::Arc<Vec<overseer_actors::audit::AuditEvent>>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> overseer_actors::audit::AppendFuture {
        self.store.append(events, now)
    }

    fn append_after(
        &self,
        events: std::sync::Arc<Vec<overseer_actors::audit::AuditEvent>>,
        offer: overseer_actors::audit::Offer,
        turn: overseer_actors::audit::Turn,
    ) -> overseer_actors::audit::AppendFuture {
        let ids = events.iter().map(|e| e.log_id).collect();
        self.batches
            .lock()
            .unwrap()
            .push((ids, offer.maybe_stored.clone()));
        self.store.append_after(events, offer, turn)
    }
}

/// The AuditActor asks the store to look up only `log_id`s that may be
/// stored already: none of the service's own fresh events, every event of
/// the ingest API (a client's `log_id`), and every event of a batch it took
/// back after a panic between commit and answer (it had committed).
async fn only_log_ids_that_may_be_stored_are_looked_up(backend: Backend) {
    use overseer_actors::audit::{AuditEvent, Source};
    use overseer_actors::supervisor::{FaultKind, Supervisor};

    let db = TestDatabase::new(backend).await;
    let store = Store::open(&config_from(&[("DATABASE_URL", db.url.as_str())]).database).unwrap();
    store.migrate().await.unwrap();
    let files = tempfile::tempdir().unwrap();
    let noted = std::sync::Arc::new(Noted {
        store: store.clone(),
        batches: Default::default(),
    });
    let supervisor = Supervisor::new(std::sync::Arc::new(overseer_actors::SystemClock));
    let auditor = test_auditor_on(&supervisor, noted.clone(), files.path(), 10);
    let now = chrono::Utc::now();
    let events = |from: i64| -> Vec<AuditEvent> {
        (from..from + 10)
            .map(|i| {
                AuditEvent::new("noted", now + chrono::Duration::microseconds(i))
                    .with_tenant("acme")
                    .with_details(json!({"i": i}))
            })
            .collect()
    };
    let taken = |noted: &Noted| std::mem::take(&mut *noted.batches.lock().unwrap());

    // The service's own events: nothing to look up.
    for event in events(0) {
        auditor.record(Source::Internal, event);
    }
    settled(&store, &auditor, "noted", 10).await;
    let batches = taken(&noted);
    assert!(!batches.is_empty());
    assert!(
        batches.iter().all(|(_, lookup)| lookup.is_empty()),
        "{batches:?}"
    );

    // The ingest API's: every one.
    let api = events(10);
    let api_ids: Vec<_> = api.iter().map(|e| e.log_id).collect();
    auditor.record_durable(Source::Api, api).await.unwrap();
    let batches = taken(&noted);
    assert!(
        batches.iter().all(|(ids, lookup)| ids == lookup),
        "{batches:?}"
    );
    let looked_up: Vec<_> = batches.into_iter().flat_map(|(_, lookup)| lookup).collect();
    assert_eq!(looked_up, api_ids);

    // A panic after the commit: the batch taken back is looked up again.
    supervisor.faults().arm("audit", FaultKind::Panic, 1);
    for event in events(20) {
        auditor.record(Source::Internal, event);
    }
    settled(&store, &auditor, "noted", 30).await;
    let batches = taken(&noted);
    let (first, lookup) = &batches[0];
    assert!(lookup.is_empty(), "{batches:?}");
    assert!(
        batches[1..]
            .iter()
            .any(|(ids, lookup)| ids == first && lookup == first),
        "the batch is flushed again with its ids looked up: {batches:?}"
    );
    assert_eq!(supervisor.faults().remaining("audit"), 0);

    let arrival: Vec<i64> = (0..30).collect();
    assert_stored_in_order(&store, &auditor, "noted", &arrival).await;
    store.close().await;
}
