//! Audit suppression through `log_id` (issue 21, item 1). Whoever can guess
//! or observe a `log_id` must not be able to make another party's event
//! vanish while that party is told it was stored: a retry of the same event
//! is idempotent, any other reuse is refused (409, nothing of the request
//! stored) or, when it can only be seen after the 202 (acknowledged from the
//! spool while the database was away), recorded as a `log_id_conflict`
//! security violation with a digest of the refused content.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::{Connection, Executor};

use crate::audit::{create_tenant, ingest, ingest_ok, stored, verify};
use crate::helpers::{
    Backend, TcpProxy, TestApp, TestDatabase, assert_json_error, on_both_backends, spawn_app,
    spawn_app_on,
};

on_both_backends!(
    an_exact_retry_is_accepted_and_stored_once,
    another_tenants_log_id_is_refused_and_nothing_of_the_request_is_stored,
    the_same_tenant_with_other_content_under_a_used_log_id_is_refused,
    a_reuse_met_while_replaying_the_spool_is_recorded_and_the_chain_verifies,
);

/// An ingest token of `tenant`.
async fn ingest_token(app: &TestApp, tenant: &str) -> String {
    let created: Value = app
        .post_json_as_admin(
            &format!("/api/v1/tenants/{tenant}/ingest-tokens"),
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    created["token"].as_str().unwrap().to_owned()
}

async fn ingest_as(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/audit/events"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Asserts the 409 of a `log_id` reuse naming `field`, and that it does not
/// say whose the `log_id` is.
async fn assert_log_id_conflict(response: reqwest::Response, field: &str, holder: &str) {
    let body = assert_json_error(response, 409, "log_id_conflict").await;
    assert_eq!(body["error"]["field"], field, "{body}");
    assert!(!body.to_string().contains(holder), "{body}");
}

async fn an_exact_retry_is_accepted_and_stored_once(backend: Backend) {
    let app = spawn_app(backend).await;
    create_tenant(&app, "acme").await;
    let token = ingest_token(&app, "acme").await;
    let (u, v) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    // An hour ago (a client-set time must be within the last day), in UTC
    // and in another offset.
    let at = chrono::Utc::now() - chrono::TimeDelta::hours(1);
    let utc = at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let offset = at
        .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap())
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
    let batch = json!([
        {"log_id": u, "operation": "retried_op", "success": true,
         "details": {"budget": "1500.25", "lines": [1, {"b": 2, "a": 1}]}},
        {"log_id": v, "operation": "retried_op", "success": false, "error": "timeout",
         "created_at": utc, "ip_address": "10.0.0.1"},
    ]);
    for _ in 0..2 {
        let response = ingest_as(&app, &token, &batch).await;
        assert_eq!(response.status().as_u16(), 202);
    }
    // The same events written otherwise: keys in another order, the token's
    // tenant spelled out, the address and the time in other forms.
    let again = json!([
        {"details": {"lines": [1, {"a": 1, "b": 2}], "budget": "1500.25"},
         "success": true, "operation": "retried_op", "tenant_id": "acme", "log_id": u},
        {"ip_address": "10.0.0.1", "created_at": offset,
         "error": "timeout", "success": false, "operation": "retried_op", "log_id": v},
    ]);
    let response = ingest_as(&app, &token, &again).await;
    assert_eq!(response.status().as_u16(), 202);
    // One of them alone, as a single object.
    let response = ingest_as(&app, &token, &batch[1]).await;
    assert_eq!(response.status().as_u16(), 202);

    let rows = stored(&app.store, &["retried_op"]).await;
    let mut ids: Vec<uuid::Uuid> = rows.iter().map(|r| r.event.log_id).collect();
    ids.sort_unstable();
    let mut sent = vec![u, v];
    sent.sort_unstable();
    assert_eq!(ids, sent, "each stored once");
    assert!(
        stored(&app.store, &["log_id_conflict"]).await.is_empty(),
        "a retry is no conflict"
    );
    assert_eq!(verify(&app, "acme").await["ok"], true);
}

async fn another_tenants_log_id_is_refused_and_nothing_of_the_request_is_stored(backend: Backend) {
    let app = spawn_app(backend).await;
    create_tenant(&app, "alpha").await;
    create_tenant(&app, "beta").await;
    let alpha = ingest_token(&app, "alpha").await;
    let beta = ingest_token(&app, "beta").await;
    let counted = |text: &str, name: &str, labels: &[(&str, &str)]| {
        crate::prometheus::sample(text, name, labels).unwrap_or(0.0)
    };
    let before = app.get("/metrics").await.text().await.unwrap();
    let u = uuid::Uuid::new_v4();
    let response = ingest_as(
        &app,
        &alpha,
        &json!({"log_id": u, "operation": "a_op", "success": true}),
    )
    .await;
    assert_eq!(response.status().as_u16(), 202);

    // Beta, having seen `u`, tries to take it: with fresh events around it,
    // and alone; with the very body alpha sent, too.
    let attack = json!([
        {"operation": "b_fresh", "success": true},
        {"log_id": u, "operation": "b_op", "success": false},
        {"log_id": uuid::Uuid::new_v4(), "operation": "b_fresh", "success": true},
    ]);
    assert_log_id_conflict(ingest_as(&app, &beta, &attack).await, "[1].log_id", "alpha").await;
    let alone = json!({"log_id": u, "operation": "b_op", "success": false});
    assert_log_id_conflict(ingest_as(&app, &beta, &alone).await, "log_id", "alpha").await;
    let copy = json!([{"log_id": u, "operation": "a_op", "success": true}]);
    assert_log_id_conflict(ingest_as(&app, &beta, &copy).await, "[0].log_id", "alpha").await;
    // The super admin writing for beta is no different.
    let for_beta = json!([
        {"tenant_id": "beta", "operation": "b_fresh", "success": true},
        {"log_id": u, "tenant_id": "beta", "operation": "b_op", "success": false},
    ]);
    assert_log_id_conflict(ingest(&app, &for_beta).await, "[1].log_id", "alpha").await;

    // Nothing of those requests is stored; alpha's event is as it was sent.
    assert!(stored(&app.store, &["b_op", "b_fresh"]).await.is_empty());
    let rows = stored(&app.store, &["a_op"]).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].event.log_id, u);
    assert_eq!(rows[0].event.tenant_id.as_deref(), Some("alpha"));
    assert!(rows[0].event.success);

    // The attempts themselves are on record: the request-audit middleware's
    // rows of the refused requests, naming the caller, and nothing of
    // their content.
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let refused: Vec<_> = stored(&app.store, &["ingest_audit_events"])
            .await
            .into_iter()
            .filter(|row| !row.event.success)
            .collect();
        if refused.len() >= 4 || Instant::now() > deadline {
            break refused;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(refused.len(), 4, "{refused:?}");
    let text = serde_json::to_string(&refused).unwrap();
    assert!(text.contains("log_id is already used"), "{text}");
    assert!(
        !text.contains("b_op") && !text.contains(&u.to_string()),
        "{text}"
    );
    // And counted, the refused requests' 7 events as refused, not committed
    // (the registry is the process's: other tests can only add to it).
    let after = app.get("/metrics").await.text().await.unwrap();
    let grew = |name: &str, labels: &[(&str, &str)]| {
        counted(&after, name, labels) - counted(&before, name, labels)
    };
    assert!(grew("audit_log_id_conflicts_total", &[("answer", "refused")]) >= 4.0);
    let refused_events = [("source", "api"), ("result", "refused")];
    assert!(
        grew("audit_events_total", &refused_events) >= 7.0,
        "{after}"
    );

    // Beta's own events, sent again without the stolen id, are stored.
    let honest = json!([{"operation": "b_fresh", "success": true}]);
    assert_eq!(ingest_as(&app, &beta, &honest).await.status().as_u16(), 202);
    assert_eq!(stored(&app.store, &["b_fresh"]).await.len(), 1);
    for tenant in ["alpha", "beta"] {
        assert_eq!(verify(&app, tenant).await["ok"], true, "{tenant}");
    }
}

async fn the_same_tenant_with_other_content_under_a_used_log_id_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    create_tenant(&app, "acme").await;
    let u = uuid::Uuid::new_v4();
    let sent = json!({"log_id": u, "tenant_id": "acme", "operation": "first_op",
                      "success": true, "details": {"amount": 1}});
    ingest_ok(&app, &json!([sent.clone()])).await;

    let mut changed = Vec::new();
    for (key, value) in [
        ("operation", json!("other_op")),
        ("success", json!(false)),
        ("details", json!({"amount": 2})),
        ("details", json!({"amount": "1"})),
        ("error", json!("failed after all")),
        ("principal_id", json!("someone")),
        ("security_violation", json!(true)),
        // The original let the service stamp the time; naming one is new content.
        ("created_at", json!(chrono::Utc::now())),
    ] {
        let mut other = sent.clone();
        other[key] = value;
        changed.push(other);
    }
    for other in changed {
        let batch = json!([{"tenant_id": "acme", "operation": "later_op", "success": true}, other]);
        let response = ingest(&app, &batch).await;
        assert_log_id_conflict(response, "[1].log_id", "\"first_op\"").await;
    }
    // Two different events under one new id in one request: the second is refused.
    let w = uuid::Uuid::new_v4();
    let twice = json!([
        {"log_id": w, "tenant_id": "acme", "operation": "later_op", "success": true},
        {"log_id": w, "tenant_id": "acme", "operation": "later_op", "success": false},
    ]);
    assert_log_id_conflict(ingest(&app, &twice).await, "[1].log_id", "\"first_op\"").await;

    let rows = stored(&app.store, &["first_op", "other_op", "later_op"]).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].event.operation, "first_op");
    assert_eq!(rows[0].event.details, json!({"amount": 1}));
    assert_eq!(verify(&app, "acme").await["ok"], true);
}

/// Takes the database's audit writes away from the service and gives them
/// back: a cut proxy on PostgreSQL, another connection holding SQLite's
/// write lock (reads, and so authentication, go on) on SQLite.
enum Outage {
    Proxy(TcpProxy),
    SqliteLock {
        url: String,
        holder: Option<sqlx::SqliteConnection>,
    },
}

impl Outage {
    async fn start(&mut self) {
        match self {
            Outage::Proxy(proxy) => proxy.cut(),
            Outage::SqliteLock { url, holder } => {
                let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
                conn.execute("BEGIN EXCLUSIVE").await.unwrap();
                *holder = Some(conn);
            }
        }
    }

    async fn end(&mut self) {
        match self {
            Outage::Proxy(proxy) => proxy.restore(),
            Outage::SqliteLock { holder, .. } => {
                if let Some(mut conn) = holder.take() {
                    conn.execute("ROLLBACK").await.unwrap();
                }
            }
        }
    }
}

/// `components.audit` of `/health`, once both the queue and the spool are
/// empty.
async fn wait_until_drained(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, health) = app.health().await;
        let audit = &health["components"]["audit"];
        if audit["spool_events"] == 0 && audit["queue_depth"] == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the spool never drained: {audit}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The digest docs/security.md describes: SHA-256, hex, of the JSON array
/// of the content fields in a fixed order (object keys sorted), with
/// `created_at` null when the client did not set it.
fn documented_digest(event: &Value) -> String {
    let field = |name: &str| event.get(name).cloned().unwrap_or(Value::Null);
    let content = json!([
        "overseer.ingest.v1",
        field("tenant_id"),
        field("operation"),
        field("principal_id"),
        field("principal_name"),
        field("adapter_id"),
        field("success"),
        event.get("details").cloned().unwrap_or_else(|| json!({})),
        field("error"),
        field("ip_address"),
        event
            .get("security_violation")
            .cloned()
            .unwrap_or(json!(false)),
        field("created_at"),
    ]);
    hex::encode(Sha256::digest(serde_json::to_vec(&content).unwrap()))
}

async fn a_reuse_met_while_replaying_the_spool_is_recorded_and_the_chain_verifies(
    backend: Backend,
) {
    let db = TestDatabase::new(backend).await;
    let (mut outage, url) = match backend {
        Backend::Postgres => {
            let proxy = TcpProxy::start("127.0.0.1:5432".parse().unwrap()).await;
            let url = db.url_through(&proxy);
            (Outage::Proxy(proxy), url)
        }
        Backend::Sqlite => {
            let url = db.url.clone();
            let outage = Outage::SqliteLock {
                url: url.clone(),
                holder: None,
            };
            (outage, url)
        }
    };
    let app = spawn_app_on(
        db,
        &url,
        &[
            ("DATABASE_CONNECT_TIMEOUT", "1s"),
            ("DATABASE_QUERY_TIMEOUT", "1s"),
        ],
    )
    .await;
    app.wait_for_health(200, Duration::from_secs(15)).await;
    create_tenant(&app, "alpha").await;
    create_tenant(&app, "beta").await;
    let u = uuid::Uuid::new_v4();
    let original = json!({"log_id": u, "tenant_id": "alpha", "operation": "a_op", "success": true});
    ingest_ok(&app, &json!([original.clone()])).await;

    // The database goes away: whatever arrives now is acknowledged from the
    // spool, before anyone can compare it with the trail.
    outage.start().await;
    let stolen = json!({"log_id": u, "tenant_id": "beta", "operation": "b_op", "success": false,
                        "details": {"note": "the transfer nobody should see"}});
    let acknowledged = ingest_ok(
        &app,
        &json!([{"tenant_id": "beta", "operation": "b_before", "success": true},
                stolen.clone(),
                {"tenant_id": "beta", "operation": "b_after", "success": true}]),
    )
    .await;
    assert_eq!(acknowledged.len(), 3);
    // Alpha's honest retry in the same outage is no conflict.
    ingest_ok(&app, &json!([original])).await;
    let (_, health) = app.health().await;
    assert!(
        health["components"]["audit"]["spool_events"].as_u64() > Some(0),
        "{health}"
    );
    outage.end().await;
    wait_until_drained(&app).await;

    // The reuse is not stored, and not dropped silently either: a
    // violation in beta's chain, with the digest of what was refused.
    assert!(stored(&app.store, &["b_op"]).await.is_empty());
    let records = stored(&app.store, &["log_id_conflict"]).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0].event;
    assert_eq!(record.tenant_id.as_deref(), Some("beta"));
    assert!(record.security_violation && !record.success);
    assert_eq!(record.details["log_id"], json!(u));
    assert_eq!(
        record.details["refused_digest"],
        json!(documented_digest(&stolen)),
        "{}",
        record.details
    );
    let text = serde_json::to_string(&records[0]).unwrap();
    assert!(
        !text.contains("b_op") && !text.contains("transfer"),
        "{text}"
    );

    // The rest of that acknowledged request is stored; alpha's event once.
    assert_eq!(stored(&app.store, &["b_before", "b_after"]).await.len(), 2);
    let rows = stored(&app.store, &["a_op"]).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].event.tenant_id.as_deref(), Some("alpha"));
    for tenant in ["alpha", "beta"] {
        let verdict = verify(&app, tenant).await;
        assert_eq!(verdict["ok"], true, "{tenant}: {verdict}");
    }
    // Served as a violation, to beta's admin as to the super admin.
    let page = app
        .get_json_as_admin("/api/v1/audit/logs?tenant_id=beta&security_violation=true")
        .await;
    let operations: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|row| row["operation"].as_str())
        .collect();
    assert!(operations.contains(&"log_id_conflict"), "{page}");
}
