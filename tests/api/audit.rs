//! The audit trail end to end: ingestion, the hash chain, append-only
//! storage, and what the AuditActor does when things go wrong.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;

use futures_util::future::join_all;
use overseer::store::{AuditQuery, Store};
use serde_json::{Value, json};
use sqlx::Executor;

use crate::helpers::{
    Backend, TestApp, assert_json_error, on_both_backends, spawn_app, spawn_app_with,
};

on_both_backends!(
    ten_thousand_ingested_events_arrive_once_in_chain_order_and_verify,
    a_retried_ingest_with_the_same_log_ids_stores_nothing_twice,
    the_database_refuses_update_delete_and_truncate,
    tampering_behind_the_triggers_back_is_caught_by_verify,
    bad_ingest_requests_get_json_errors_and_store_nothing,
    an_ingest_token_writes_only_for_its_tenant_and_cannot_read,
    a_tenant_is_created_with_its_audit_row_in_one_transaction,
    every_api_request_is_recorded_by_the_middleware,
    committed_events_reach_the_file_sinks,
    committed_events_are_published_to_subscribers,
    a_tenant_admin_reads_only_its_own_tenant,
);

pub async fn create_tenant(app: &TestApp, id: &str) {
    let response = app
        .post_json_as_admin("/api/v1/tenants", &json!({"id": id, "name": id}))
        .await;
    assert_eq!(response.status().as_u16(), 201, "create tenant {id}");
}

pub fn event(tenant: &str, operation: &str, i: usize) -> Value {
    json!({
        "tenant_id": tenant,
        "operation": operation,
        "principal_id": format!("p{}", i % 7),
        "success": !i.is_multiple_of(10),
        "details": {"i": i, "budget": "1500.25"},
    })
}

pub async fn ingest(app: &TestApp, body: &Value) -> reqwest::Response {
    app.post_json_as_admin("/api/v1/audit/events", body).await
}

/// Ingests and expects 202; returns the log ids the service answered with.
pub async fn ingest_ok(app: &TestApp, body: &Value) -> Vec<String> {
    let response = ingest(app, body).await;
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(status, 202, "{answer}");
    answer["log_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect()
}

pub async fn verify(app: &TestApp, tenant: &str) -> Value {
    app.get_json_as_admin(&format!("/api/v1/audit/verify?tenant_id={tenant}"))
        .await
}

/// Every stored event of these operations, oldest first, straight from the store.
pub async fn stored(
    store: &Store,
    operations: &[&str],
) -> Vec<overseer_actors::audit::CommittedEvent> {
    let mut rows = store
        .audit_logs(&AuditQuery {
            operations: operations.iter().map(|s| (*s).to_owned()).collect(),
            limit: 1_000_000,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    rows.reverse();
    rows
}

/// Asserts that each of `log_ids` is stored exactly once.
pub fn assert_exactly_once(rows: &[overseer_actors::audit::CommittedEvent], log_ids: &[String]) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for row in rows {
        *seen.entry(row.event.log_id.to_string()).or_default() += 1;
    }
    let missing = log_ids.iter().filter(|id| !seen.contains_key(*id)).count();
    let twice = seen.values().filter(|n| **n > 1).count();
    assert_eq!(missing, 0, "acknowledged events missing from the database");
    assert_eq!(twice, 0, "events stored more than once");
}

async fn ten_thousand_ingested_events_arrive_once_in_chain_order_and_verify(backend: Backend) {
    let app = spawn_app(backend).await;
    for tenant in ["alpha", "beta"] {
        create_tenant(&app, tenant).await;
    }

    // Two clients, one per tenant, each sending 10 batches of 500 in order.
    let clients = ["alpha", "beta"].map(|tenant| {
        let app = &app;
        async move {
            let mut ids = Vec::new();
            for batch in 0..10 {
                let events: Vec<Value> = (0..500)
                    .map(|j| event(tenant, "bulk_op", batch * 500 + j))
                    .collect();
                ids.extend(ingest_ok(app, &Value::Array(events)).await);
            }
            ids
        }
    });
    let acknowledged: Vec<String> = join_all(clients).await.concat();
    assert_eq!(acknowledged.len(), 10_000);

    let rows = stored(&app.store, &["bulk_op"]).await;
    assert_eq!(rows.len(), 10_000);
    assert_exactly_once(&rows, &acknowledged);
    for tenant in ["alpha", "beta"] {
        let mut chain: Vec<_> = rows
            .iter()
            .filter(|r| r.event.tenant_id.as_deref() == Some(tenant))
            .collect();
        chain.sort_by_key(|r| r.seq);
        // Seq 1 is the tenant's creation; the 5,000 events follow in the
        // order their client sent them.
        let order: Vec<i64> = chain
            .iter()
            .map(|r| r.event.details["i"].as_i64().unwrap())
            .collect();
        assert_eq!(
            order,
            (0..5_000).collect::<Vec<i64>>(),
            "{tenant} in send order"
        );
        let seqs: Vec<i64> = chain.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (2..=5_001).collect::<Vec<i64>>(), "{tenant} gapless");
        assert_eq!(
            chain[0].event.details["budget"],
            json!(1500.25),
            "decimal budgets are stored as numbers"
        );

        let verdict = verify(&app, tenant).await;
        assert_eq!(verdict, json!({"ok": true, "checked": 5_001}));
    }
}

async fn a_retried_ingest_with_the_same_log_ids_stores_nothing_twice(backend: Backend) {
    let app = spawn_app(backend).await;
    create_tenant(&app, "acme").await;
    let events: Vec<Value> = (0..20)
        .map(|i| {
            let mut e = event("acme", "retried_op", i);
            e["log_id"] = json!(uuid::Uuid::new_v4());
            e
        })
        .collect();
    let body = Value::Array(events);
    let first = ingest_ok(&app, &body).await;
    let second = ingest_ok(&app, &body).await;
    assert_eq!(first, second, "the same log ids are answered");

    // Two copies in one request count once too.
    let one = json!({"log_id": uuid::Uuid::new_v4(), "tenant_id": "acme", "operation": "retried_op", "success": true});
    ingest_ok(&app, &json!([one.clone(), one])).await;

    // Stored and new events mixed in one batch: the stored ones are skipped,
    // the new ones follow on in the chain with no gap.
    let mut mixed: Vec<Value> = body.as_array().unwrap()[5..15].to_vec();
    let fresh: Vec<Value> = (100..105)
        .map(|i| {
            let mut e = event("acme", "retried_op", i);
            e["log_id"] = json!(uuid::Uuid::new_v4());
            e
        })
        .collect();
    mixed.splice(3..3, fresh.iter().cloned());
    let answered = ingest_ok(&app, &Value::Array(mixed)).await;
    assert_eq!(answered.len(), 15);

    let rows = stored(&app.store, &["retried_op"]).await;
    assert_eq!(rows.len(), 26);
    assert_exactly_once(&rows, &first);
    assert_exactly_once(&rows, &answered);
    let mut seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (2..=27).collect::<Vec<_>>(),
        "after the tenant's creation"
    );
    assert_eq!(
        verify(&app, "acme").await,
        json!({"ok": true, "checked": 27})
    );
}

/// Runs raw SQL against the app's database, as an operator with a client would.
pub async fn raw_sql(app: &TestApp, backend: Backend, sql: &str) -> Result<(), String> {
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    match (backend, &app.store) {
        (Backend::Postgres, Store::Postgres(pg)) => {
            let mut conn = pg.pool().acquire().await.unwrap();
            conn.execute(sql).await.map(drop).map_err(|e| e.to_string())
        }
        (Backend::Sqlite, Store::Sqlite(lite)) => {
            let mut conn = lite.pool().acquire().await.unwrap();
            conn.execute(sql).await.map(drop).map_err(|e| e.to_string())
        }
        _ => unreachable!("the app runs on the backend it was given"),
    }
}

async fn the_database_refuses_update_delete_and_truncate(backend: Backend) {
    let app = spawn_app(backend).await;
    create_tenant(&app, "acme").await;
    ingest_ok(
        &app,
        &json!([event("acme", "kept", 1), event("acme", "kept", 2)]),
    )
    .await;

    let mut statements = vec![
        "UPDATE audit_logs SET success = FALSE",
        "UPDATE audit_logs SET details = '{}' WHERE operation = 'kept'",
        "DELETE FROM audit_logs WHERE operation = 'kept'",
        "DELETE FROM audit_logs",
    ];
    if backend == Backend::Postgres {
        statements.push("TRUNCATE audit_logs");
    }
    for sql in statements {
        let refused = raw_sql(&app, backend, sql).await;
        assert!(
            refused.as_ref().is_err_and(|e| e.contains("append-only")),
            "{sql}: {refused:?}"
        );
    }
    assert_eq!(stored(&app.store, &["kept"]).await.len(), 2);
    assert_eq!(verify(&app, "acme").await["ok"], true);
}

async fn tampering_behind_the_triggers_back_is_caught_by_verify(backend: Backend) {
    let app = spawn_app(backend).await;
    create_tenant(&app, "acme").await;
    let events: Vec<Value> = (0..5).map(|i| event("acme", "op", i)).collect();
    ingest_ok(&app, &Value::Array(events)).await;
    assert_eq!(
        verify(&app, "acme").await,
        json!({"ok": true, "checked": 6})
    );

    // Alter seq 3 with the triggers out of the way.
    let (alter, delete) = match backend {
        Backend::Postgres => (
            "SET session_replication_role = replica; \
             UPDATE audit_logs SET details = '{\"i\": 999}' WHERE tenant_id = 'acme' AND seq = 3; \
             SET session_replication_role = origin",
            "SET session_replication_role = replica; \
             DELETE FROM audit_logs WHERE tenant_id = 'acme' AND seq = 5; \
             SET session_replication_role = origin",
        ),
        Backend::Sqlite => (
            "DROP TRIGGER audit_logs_no_update; \
             UPDATE audit_logs SET details = '{\"i\": 999}' WHERE tenant_id = 'acme' AND seq = 3",
            "DROP TRIGGER audit_logs_no_delete; \
             DELETE FROM audit_logs WHERE tenant_id = 'acme' AND seq = 5",
        ),
    };
    raw_sql(&app, backend, alter).await.unwrap();
    let verdict = verify(&app, "acme").await;
    assert_eq!(verdict["ok"], false, "{verdict}");
    assert_eq!(verdict["broken_seq"], 3, "{verdict}");
    assert_eq!(verdict["checked"], 2, "{verdict}");
    assert!(
        verdict["reason"].as_str().unwrap().contains("altered"),
        "{verdict}"
    );

    // A removed record is a gap, even where the hashes around it are intact.
    raw_sql(&app, backend, delete).await.unwrap();
    raw_sql(
        &app,
        backend,
        match backend {
            Backend::Postgres => {
                "SET session_replication_role = replica; \
                 DELETE FROM audit_logs WHERE tenant_id = 'acme' AND seq = 3; \
                 SET session_replication_role = origin"
            }
            Backend::Sqlite => "DELETE FROM audit_logs WHERE tenant_id = 'acme' AND seq = 3",
        },
    )
    .await
    .unwrap();
    let verdict = verify(&app, "acme").await;
    assert_eq!(verdict["broken_seq"], 3, "{verdict}");
    assert!(
        verdict["reason"].as_str().unwrap().contains("missing"),
        "{verdict}"
    );
}

async fn bad_ingest_requests_get_json_errors_and_store_nothing(backend: Backend) {
    let app = spawn_app_with(backend, &[("AUDIT_MAX_BODY_BYTES", "200000")]).await;
    create_tenant(&app, "acme").await;
    let path = "/api/v1/audit/events";
    let ok = |i| event("acme", "must_not_store", i);

    let response = app
        .post_raw_as_admin(path, "application/json", "{\"operation\": ")
        .await;
    assert_json_error(response, 400, "malformed_json").await;
    let response = app.post_raw_as_admin(path, "text/plain", "hello").await;
    assert_json_error(response, 415, "unsupported_media_type").await;

    let mut wrong_type = ok(2);
    wrong_type["success"] = json!("yes");
    let body = assert_json_error(
        ingest(&app, &json!([ok(1), wrong_type])).await,
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(body["error"]["field"], "[1].success");

    let mut missing = ok(1);
    missing.as_object_mut().unwrap().remove("operation");
    let body = assert_json_error(ingest(&app, &missing).await, 422, "invalid_field").await;
    assert_eq!(body["error"]["field"], "operation");

    let mut unknown = ok(1);
    unknown["colour"] = json!("blue");
    let body = assert_json_error(ingest(&app, &json!([unknown])).await, 422, "invalid_field").await;
    assert_eq!(body["error"]["field"], "[0].colour");

    let mut bad_ip = ok(1);
    bad_ip["ip_address"] = json!("not-an-ip");
    let body = assert_json_error(ingest(&app, &bad_ip).await, 422, "invalid_field").await;
    assert_eq!(body["error"]["field"], "ip_address");

    let mut bad_tenant = ok(1);
    bad_tenant["tenant_id"] = json!("Not A Slug");
    let body = assert_json_error(
        ingest(&app, &json!([ok(0), bad_tenant])).await,
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(body["error"]["field"], "[1].tenant_id");

    let mut oversized = ok(1);
    oversized["details"] = json!({"note": "x".repeat(70 * 1024)});
    let body = assert_json_error(
        ingest(&app, &json!([ok(0), oversized])).await,
        413,
        "details_too_large",
    )
    .await;
    assert_eq!(body["error"]["field"], "[1].details");

    let body = assert_json_error(ingest(&app, &json!([])).await, 422, "invalid_field").await;
    assert_eq!(body["error"]["field"], "events");
    let too_many: Vec<Value> = (0..1_001)
        .map(|i| json!({"operation": "must_not_store", "success": true, "details": {"i": i}}))
        .collect();
    assert_json_error(
        ingest(&app, &Value::Array(too_many)).await,
        422,
        "invalid_field",
    )
    .await;

    let huge: Vec<Value> = (0..100).map(|_| json!({"operation": "must_not_store", "success": true, "details": {"pad": "y".repeat(4_000)}})).collect();
    assert_json_error(
        ingest(&app, &Value::Array(huge)).await,
        413,
        "payload_too_large",
    )
    .await;

    let response = app
        .client
        .post(app.url(path))
        .json(&ok(1))
        .send()
        .await
        .unwrap();
    assert_json_error(response, 401, "unauthorized").await;
    let response = app
        .client
        .post(app.url(path))
        .bearer_auth("not-a-token")
        .json(&ok(1))
        .send()
        .await
        .unwrap();
    assert_json_error(response, 401, "unauthorized").await;

    assert!(stored(&app.store, &["must_not_store"]).await.is_empty());
    // The failed requests themselves are on record, as failures.
    let requests = wait_for_rows(&app.store, &["ingest_audit_events"], 13).await;
    assert!(requests.iter().all(|r| !r.event.success));
}

async fn an_ingest_token_writes_only_for_its_tenant_and_cannot_read(backend: Backend) {
    let app = spawn_app(backend).await;
    create_tenant(&app, "acme").await;
    create_tenant(&app, "other").await;
    let created: Value = app
        .post_json_as_admin("/api/v1/tenants/acme/ingest-tokens", &json!({}))
        .await
        .json()
        .await
        .unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.len() >= 64, "{created}");
    let as_ingestor = |body: Value| {
        app.client
            .post(app.url("/api/v1/audit/events"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };

    // The token's tenant is filled in; another tenant is refused.
    let response = as_ingestor(json!({"operation": "from_service", "success": true}))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let response =
        as_ingestor(json!({"operation": "from_service", "success": true, "tenant_id": "other"}))
            .await
            .unwrap();
    let body = assert_json_error(response, 422, "invalid_field").await;
    assert_eq!(body["error"]["field"], "tenant_id");
    let rows = stored(&app.store, &["from_service"]).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].event.tenant_id.as_deref(), Some("acme"));

    let response = app
        .client
        .get(app.url("/api/v1/audit/logs"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_json_error(response, 403, "forbidden").await;
    // The token was never stored in the clear, nor audited.
    let all = stored(&app.store, &[]).await;
    assert!(
        all.iter()
            .all(|r| !r.event.details.to_string().contains(&token))
    );
    // A malformed body is an error, not a token without expiry.
    let response = app
        .post_json_as_admin(
            "/api/v1/tenants/acme/ingest-tokens",
            &json!({"expires_at": "soon"}),
        )
        .await;
    let body = assert_json_error(response, 422, "invalid_field").await;
    assert_eq!(body["error"]["field"], "expires_at");
    assert!(
        app.post_json_as_admin("/api/v1/tenants/nobody/ingest-tokens", &json!({}))
            .await
            .status()
            .as_u16()
            == 404
    );
}

async fn a_tenant_is_created_with_its_audit_row_in_one_transaction(backend: Backend) {
    let app = spawn_app(backend).await;
    create_tenant(&app, "acme").await;
    let rows = stored(&app.store, &["create_tenant"]).await;
    assert_eq!(
        rows.len(),
        1,
        "one row: the handler's, not also the middleware's"
    );
    assert_eq!(rows[0].event.tenant_id.as_deref(), Some("acme"));
    assert_eq!(rows[0].seq, 1);
    assert_eq!(rows[0].event.principal_id.as_deref(), Some("super_admin"));

    // A refused creation stores no tenant and no success row; the failed
    // request is recorded by the middleware.
    let response = app
        .post_json_as_admin("/api/v1/tenants", &json!({"id": "acme", "name": "again"}))
        .await;
    assert_json_error(response, 409, "conflict").await;
    let rows = wait_for_rows(&app.store, &["create_tenant"], 2).await;
    assert!(rows[0].event.success);
    assert!(!rows[1].event.success);
    assert_eq!(
        rows[1].event.error.as_deref(),
        Some("a tenant with this id already exists")
    );
}

/// Waits until `n` events of these operations are stored (fire-and-forget
/// events are committed within a flush interval or two).
pub async fn wait_for_rows(
    store: &Store,
    operations: &[&str],
    n: usize,
) -> Vec<overseer_actors::audit::CommittedEvent> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = stored(store, operations).await;
        if rows.len() >= n || Instant::now() > deadline {
            assert_eq!(rows.len(), n, "{operations:?}");
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn every_api_request_is_recorded_by_the_middleware(backend: Backend) {
    let app = spawn_app(backend).await;
    create_tenant(&app, "acme").await;
    assert_eq!(
        app.get_as_admin("/api/v1/tenants/acme")
            .await
            .status()
            .as_u16(),
        200
    );
    assert_eq!(app.get("/api/v1/tenants").await.status().as_u16(), 401);
    let rows = wait_for_rows(&app.store, &["get_tenant", "list_tenants"], 2).await;

    let get = &rows[0].event;
    assert_eq!(get.operation, "get_tenant");
    assert!(get.success);
    assert_eq!(get.tenant_id.as_deref(), Some("acme"));
    assert_eq!(get.principal_id.as_deref(), Some("super_admin"));
    assert_eq!(get.ip_address.as_deref(), Some("127.0.0.1"));
    assert_eq!(get.details["status"], 200);
    assert_eq!(get.details["route"], "/api/v1/tenants/{tenant_id}");

    let list = &rows[1].event;
    assert_eq!(list.operation, "list_tenants");
    assert!(!list.success);
    assert_eq!(list.principal_id, None);
    assert_eq!(
        list.error.as_deref(),
        Some("missing or invalid bearer token")
    );

    // With AUDIT_REQUESTS=false the middleware records nothing, and the
    // token validation is still recorded (another producer, issue 5's "every
    // decision is audited"); AUDIT_TOKEN_VALIDATIONS=false silences that one.
    let middleware_off = spawn_app_with(backend, &[("AUDIT_REQUESTS", "false")]).await;
    let quiet = spawn_app_with(
        backend,
        &[
            ("AUDIT_REQUESTS", "false"),
            ("AUDIT_TOKEN_VALIDATIONS", "false"),
        ],
    )
    .await;
    for app in [&middleware_off, &quiet] {
        let status = app.get_as_admin("/api/v1/tenants").await.status();
        assert_eq!(status.as_u16(), 200);
        let unknown = app
            .client
            .get(app.url("/api/v1/tenants"))
            .bearer_auth("ovs_not_a_token")
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status().as_u16(), 401);
    }
    let validated = wait_for_rows(&middleware_off.store, &["token_validated"], 1).await;
    assert_eq!(
        validated[0].event.principal_id.as_deref(),
        Some("super_admin")
    );
    assert_eq!(validated[0].event.details["route"], "/api/v1/tenants");
    // A refusal is recorded whatever the settings say.
    wait_for_rows(&quiet.store, &["token_rejected"], 1).await;
    // Both flush within 20 ms; the rows that must not be there have had
    // ten flush intervals to appear.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        stored(&middleware_off.store, &["list_tenants"])
            .await
            .is_empty()
    );
    assert!(stored(&quiet.store, &["list_tenants"]).await.is_empty());
    assert!(stored(&quiet.store, &["token_validated"]).await.is_empty());
}

async fn committed_events_reach_the_file_sinks(backend: Backend) {
    let app = spawn_app_with(backend, &[("AUDIT_ERROR_LOG_FILE", "false")]).await;
    create_tenant(&app, "acme").await;
    let mut violation = event("acme", "sink_op", 1);
    violation["security_violation"] = json!(true);
    ingest_ok(
        &app,
        &json!([
            event("acme", "sink_op", 0),
            violation,
            event("acme", "sink_op", 2)
        ]),
    )
    .await;

    let logs = app.files.path().join("logs");
    let read = |name: &str| std::fs::read_to_string(logs.join(name)).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(5);
    // Security is the last sink of a batch to be written.
    while read("structured.jsonl").matches("sink_op").count() < 3
        || read("security.jsonl").is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "structured.jsonl: {}",
            read("structured.jsonl")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let structured: Vec<Value> = read("structured.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &Value| v["operation"] == "sink_op")
        .collect();
    assert!(
        structured
            .iter()
            .all(|v| v["id"].is_i64() && v["seq"].is_i64() && v["hash"].is_string())
    );
    assert_eq!(read("audit.log").matches(" sink_op ").count(), 3);
    assert!(read("audit.log").contains("acme create_tenant principal=super_admin OK"));
    let security = read("security.jsonl");
    assert_eq!(security.lines().count(), 1, "{security}");
    assert!(security.contains("\"security_violation\":true"));
    assert!(!logs.join("error.log").exists(), "switched off");
}

/// Collects what the AuditActor publishes after commit.
#[derive(Default)]
struct Listener {
    committed: std::sync::Arc<std::sync::Mutex<Vec<overseer_actors::audit::CommittedEvent>>>,
    notable: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl actix::Actor for Listener {
    type Context = actix::Context<Self>;
}

impl actix::Handler<overseer_actors::audit::AuditCommitted> for Listener {
    type Result = ();
    fn handle(&mut self, msg: overseer_actors::audit::AuditCommitted, _: &mut Self::Context) {
        self.committed.lock().unwrap().extend(msg.0.iter().cloned());
    }
}

impl actix::Handler<overseer_actors::audit::NotableEvent> for Listener {
    type Result = ();
    fn handle(&mut self, msg: overseer_actors::audit::NotableEvent, _: &mut Self::Context) {
        self.notable
            .lock()
            .unwrap()
            .push(msg.0.event.operation.clone());
    }
}

/// An Auditor on `store` in this System: batches of `batch_size`, two in
/// flight, flushed every 10 ms, its spool under `dir`, no file sinks.
pub fn test_auditor(
    store: &Store,
    dir: &std::path::Path,
    batch_size: usize,
) -> overseer_actors::audit::Auditor {
    let clock = std::sync::Arc::new(overseer_actors::SystemClock);
    let supervisor = overseer_actors::supervisor::Supervisor::new(clock);
    test_auditor_on(
        &supervisor,
        std::sync::Arc::new(store.clone()),
        dir,
        batch_size,
    )
}

/// [`test_auditor`] under `supervisor` (whose faults a test may arm), in
/// front of `store`.
pub fn test_auditor_on(
    supervisor: &overseer_actors::supervisor::Supervisor,
    store: std::sync::Arc<dyn overseer_actors::audit::AuditStore>,
    dir: &std::path::Path,
    batch_size: usize,
) -> overseer_actors::audit::Auditor {
    use overseer_actors::audit::{AuditConfig, Auditor, Redactor, SinkConfig};

    let clock = std::sync::Arc::new(overseer_actors::SystemClock);
    Auditor::start(
        supervisor,
        overseer_actors::supervisor::RestartPolicy::default(),
        AuditConfig {
            batch_size,
            flush_interval: Duration::from_millis(10),
            pipeline: 2,
            queue_capacity: 1_000,
            redactor: Redactor {
                max_value_chars: 100,
            },
            spool_dir: dir.join("spool"),
            sinks: SinkConfig {
                dir: dir.join("logs"),
                retention_days: 1,
                audit_log: false,
                error_log: false,
                structured: false,
                security: false,
            },
        },
        store,
        clock,
    )
    .unwrap()
}

async fn committed_events_are_published_to_subscribers(backend: Backend) {
    use actix::Actor;
    use overseer_actors::audit::{AuditEvent, Source};

    let db = crate::helpers::TestDatabase::new(backend).await;
    let store =
        Store::open(&crate::helpers::config_from(&[("DATABASE_URL", db.url.as_str())]).database)
            .unwrap();
    store.migrate().await.unwrap();
    let files = tempfile::tempdir().unwrap();
    let auditor = test_auditor(&store, files.path(), 100);
    let listener = Listener::default();
    let (committed, notable) = (listener.committed.clone(), listener.notable.clone());
    let addr = listener.start();
    auditor.subscribe(addr.clone().recipient());
    auditor.subscribe_notable(addr.recipient());

    let now = Utc::now();
    let events = vec![
        AuditEvent::new("fine", now).with_tenant("acme"),
        AuditEvent::new("broke", now)
            .with_tenant("acme")
            .failed("boom"),
        {
            let mut e = AuditEvent::new("intrusion", now);
            e.security_violation = true;
            e
        },
    ];
    auditor
        .record_durable(Source::Internal, events)
        .await
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(5);
    while committed.lock().unwrap().len() < 3 || notable.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "nothing published");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let published = committed.lock().unwrap().clone();
    let in_db = stored(&store, &["fine", "broke", "intrusion"]).await;
    assert_eq!(
        published, in_db,
        "published as committed: with id, seq and hash"
    );
    assert_eq!(published[0].seq, 1);
    assert_eq!(published[1].seq, 2);
    assert_eq!(published[2].seq, 1, "the system chain");
    assert_eq!(*notable.lock().unwrap(), ["broke", "intrusion"]);
    store.close().await;
}

async fn a_tenant_admin_reads_only_its_own_tenant(backend: Backend) {
    use overseer::domain::{NewApiToken, TenantId, TokenKind};

    let app = spawn_app_with(
        backend,
        &[
            ("AUDIT_REQUESTS", "false"),
            ("AUDIT_TOKEN_VALIDATIONS", "false"),
        ],
    )
    .await;
    for tenant in ["acme", "other"] {
        create_tenant(&app, tenant).await;
        ingest_ok(
            &app,
            &json!([event(tenant, "read_op", 1), event(tenant, "read_op", 2)]),
        )
        .await;
    }
    let acme = TenantId::parse("tenant_id", "acme").unwrap();
    let now = Utc::now();
    let (token, record) = NewApiToken::generate(acme.clone(), TokenKind::Admin, now, None);
    app.store.insert_api_token(&record).await.unwrap();
    let (expired, record) = NewApiToken::generate(
        acme,
        TokenKind::Admin,
        now,
        Some(now - chrono::Duration::seconds(1)),
    );
    app.store.insert_api_token(&record).await.unwrap();
    let get = |path: &str, token: &str| app.client.get(app.url(path)).bearer_auth(token).send();

    let page: Value = get("/api/v1/audit/logs", &token)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tenants: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["tenant_id"].as_str().unwrap())
        .collect();
    assert_eq!(tenants, ["acme"; 3], "its two events and its creation");
    let verdict: Value = get("/api/v1/audit/verify", &token)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(verdict, json!({"ok": true, "checked": 3}));
    // Asking for another tenant is refused (and adds a violation row to
    // this chain: hence after the count above).
    assert_json_error(
        get("/api/v1/audit/logs?tenant_id=other", &token)
            .await
            .unwrap(),
        403,
        "forbidden",
    )
    .await;
    assert_json_error(
        get("/api/v1/audit/logs", &expired).await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
}
