//! Buyers' webhooks end to end, against a real HTTP receiver on a manual
//! clock: a status change reaches every push-notification config of the
//! buyer, signed (HMAC recomputed here over the raw received bytes) or
//! authorised; retries follow the answer.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use overseer::store::Store;
use overseer_actors::ManualClock;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::audit::stored;
use crate::domain::{As, media_buy, tenant_with_principal};
use crate::helpers::{Backend, TestApp, on_both_backends, spawn_app_with_clock};
use crate::receiver::{Receiver, Reply};

on_both_backends!(
    a_status_change_reaches_the_buyer_signed_and_authorised,
    retries_follow_the_answer_and_credentials_refused_block_the_config,
    the_guard_refuses_at_send_time_too,
    a_receiver_down_past_the_budget_fails_visibly_and_can_be_retried,
    queued_webhooks_survive_a_sigkill_and_each_key_is_acknowledged_once,
    an_endpoint_failing_five_times_is_left_alone_until_its_cooldown,
    localhost_means_the_docker_host_only_when_asked,
    a_config_without_its_credentials_or_unauthenticated_in_production_is_never_sent_to,
);

const SECRET: &str = "a-shared-hmac-secret-of-32-chars-or-more";
const TOKEN: &str = "buyer-bearer-token";
const QUIET: Duration = Duration::from_millis(300);

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
}

async fn app_on_clock(backend: Backend) -> (TestApp, ManualClock) {
    app_on_clock_with(backend, &[]).await
}

async fn app_on_clock_with(backend: Backend, vars: &[(&str, &str)]) -> (TestApp, ManualClock) {
    let clock = ManualClock::new(at(2026, 11, 24));
    let mut all = vec![
        ("SKIP_CRON", "true"),
        ("WEBHOOK_ALLOWED_CIDRS", "127.0.0.1/32"),
        ("WEBHOOK_POLL_INTERVAL", "20ms"),
    ];
    all.extend_from_slice(vars);
    let app = spawn_app_with_clock(backend, &all, clock.clone()).await;
    (app, clock)
}

async fn register(buyer: &As<'_>, url: String, auth: &str, token: Option<&str>) -> String {
    let mut body = json!({"url": url, "authentication_type": auth});
    if let Some(token) = token {
        body["authentication_token"] = json!(token);
    }
    let created = buyer
        .expect(
            201,
            buyer.post("/api/v1/push-notification-configs", &body).await,
        )
        .await;
    created["id"].as_str().unwrap().to_owned()
}

/// A buy flying in March, moved live by a cycle on March 2nd.
async fn goes_live(app: &TestApp, clock: &ManualClock, buyer: &As<'_>) -> String {
    let created = buyer
        .expect(
            201,
            buyer
                .post("/api/v1/media-buys", &media_buy(1_000.0, &[]))
                .await,
        )
        .await;
    let id = created["media_buy_id"].as_str().unwrap().to_owned();
    clock.set(at(2027, 3, 2));
    let response = app
        .client
        .post(app.url("/admin/schedulers/status/run"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    id
}

fn hmac_hex(secret: &str, timestamp: &str, raw: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(raw);
    hex::encode(mac.finalize().into_bytes())
}

async fn rows(store: &Store, media_buy_id: &str) -> Vec<overseer::store::webhooks::WebhookRow> {
    store.webhook_rows(media_buy_id).await.unwrap()
}

async fn a_status_change_reaches_the_buyer_signed_and_authorised(backend: Backend) {
    let (app, clock) = app_on_clock(backend).await;
    let receiver = Receiver::start();
    let (_, buyer, _) = tenant_with_principal(&app, "acme").await;
    register(&buyer, receiver.url("/signed"), "hmac-sha256", Some(SECRET)).await;
    register(&buyer, receiver.url("/bearer"), "bearer", Some(TOKEN)).await;
    let id = goes_live(&app, &clock, &buyer).await;

    let signed = receiver
        .wait_for("/signed", 1, Duration::from_secs(5))
        .await;
    let request = &signed[0];
    let timestamp = &request.headers["x-adcp-timestamp"];
    assert_eq!(
        timestamp.parse::<i64>().unwrap(),
        at(2027, 3, 2).timestamp()
    );
    assert_eq!(
        request.headers["x-adcp-signature"],
        format!("sha256={}", hmac_hex(SECRET, timestamp, &request.raw)),
        "the signature is over the bytes received"
    );
    assert_eq!(request.headers["content-type"], "application/json");
    assert!(request.headers["user-agent"].starts_with("Overseer/"));
    assert!(!request.headers.contains_key("authorization"));
    let body = request.json();
    assert_eq!(body["task_type"], "update_media_buy");
    assert_eq!(body["protocol"], "media-buy");
    assert_eq!(body["task_id"], id.as_str());
    assert_eq!(
        body["result"],
        json!({"media_buy_id": id, "status": "active"})
    );
    let key = body["idempotency_key"].as_str().unwrap();
    assert!((16..=255).contains(&key.len()), "{key}");
    assert!(
        key.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c)),
        "{key}"
    );
    assert!(
        !String::from_utf8(request.raw.clone())
            .unwrap()
            .contains(": "),
        "compact JSON"
    );

    let bearer = receiver
        .wait_for("/bearer", 1, Duration::from_secs(5))
        .await;
    assert_eq!(
        bearer[0].headers["authorization"],
        format!("Bearer {TOKEN}")
    );
    assert!(!bearer[0].headers.contains_key("x-adcp-signature"));

    // Delivered once each, recorded and audited.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while rows(&app.store, &id)
        .await
        .iter()
        .any(|r| r.status != "delivered")
    {
        assert!(std::time::Instant::now() < deadline, "not delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    receiver.still("/signed", 1, QUIET).await;
    let audited = crate::audit::wait_for_rows(&app.store, &["webhook_delivered"], 2).await;
    assert!(
        audited
            .iter()
            .all(|r| r.event.tenant_id.as_deref() == Some("acme"))
    );
    assert!(
        !audited
            .iter()
            .any(|r| r.event.details.to_string().contains(SECRET))
    );
}

async fn retries_follow_the_answer_and_credentials_refused_block_the_config(backend: Backend) {
    let (app, clock) = app_on_clock(backend).await;
    let receiver = Receiver::start();
    let (_, buyer, _) = tenant_with_principal(&app, "acme").await;
    receiver.script("/flaky", [Reply::status(503, ""), Reply::status(503, "")]);
    receiver.script("/limited", [Reply::too_many("2")]);
    receiver.set_default("/bad", Reply::status(400, "bad"));
    receiver.set_default("/gone", Reply::status(404, "gone"));
    receiver.set_default("/denied", Reply::status(401, "who are you"));
    for path in ["/flaky", "/limited", "/bad", "/gone", "/denied"] {
        register(&buyer, receiver.url(path), "bearer", Some(TOKEN)).await;
    }
    let id = goes_live(&app, &clock, &buyer).await;
    let t0 = at(2027, 3, 2);
    for path in ["/flaky", "/limited", "/bad", "/gone", "/denied"] {
        receiver.wait_for(path, 1, Duration::from_secs(5)).await;
    }

    // 429 with Retry-After: 2 — not before 2 s.
    clock.set(t0 + chrono::Duration::milliseconds(1_500));
    receiver.still("/limited", 1, QUIET).await;
    receiver.still("/flaky", 1, Duration::ZERO).await;
    clock.set(t0 + chrono::Duration::milliseconds(2_900));
    let limited = receiver
        .wait_for("/limited", 2, Duration::from_secs(5))
        .await;
    assert_eq!(limited[1].answered, 200);
    assert_eq!(
        limited[1].raw, limited[0].raw,
        "a retry sends the same bytes"
    );
    // 503, 503, 200: backoff 2 s then 4 s (±20 %).
    receiver.wait_for("/flaky", 2, Duration::from_secs(5)).await;
    clock.set(t0 + chrono::Duration::seconds(9));
    let flaky = receiver.wait_for("/flaky", 3, Duration::from_secs(5)).await;
    assert_eq!(
        flaky.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [503, 503, 200]
    );

    // 400, 404 and 401 are never retried.
    for _ in 0..3 {
        clock.advance(Duration::from_secs(120));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for path in ["/bad", "/gone", "/denied", "/flaky", "/limited"] {
        let n = if path == "/flaky" {
            3
        } else if path == "/limited" {
            2
        } else {
            1
        };
        receiver.still(path, n, Duration::ZERO).await;
    }
    let by_code = |rows: &[overseer::store::webhooks::WebhookRow], code: i32| {
        rows.iter()
            .find(|r| r.last_status_code == Some(code))
            .map(|r| (r.status.clone(), r.attempts))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let settled = loop {
        let settled = rows(&app.store, &id).await;
        if settled.iter().all(|r| r.status != "pending") {
            break settled;
        }
        assert!(std::time::Instant::now() < deadline, "still pending");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(by_code(&settled, 400), Some(("failed".into(), 1)));
    assert_eq!(by_code(&settled, 404), Some(("failed".into(), 1)));
    assert_eq!(by_code(&settled, 401), Some(("failed".into(), 1)));
    assert_eq!(
        settled.iter().filter(|r| r.status == "delivered").count(),
        2
    );
    assert!(
        settled
            .iter()
            .any(|r| r.status == "delivered" && r.attempts == 3)
    );

    // The config that refused our credentials is blocked until re-registered.
    let configs: Value = buyer
        .expect(200, buyer.get("/api/v1/push-notification-configs").await)
        .await;
    let statuses: Vec<(&str, &str)> = configs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["url"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    for (url, status) in statuses {
        let expected = if url.ends_with("/denied") {
            "auth_blocked"
        } else {
            "active"
        };
        assert_eq!(status, expected, "{url}");
    }
    // Every attempt is audited; three of the failures were final.
    let failures = stored(&app.store, &["webhook_failed"]).await;
    assert_eq!(failures.len(), 6, "503, 503, 429, 400, 404, 401");
    let finals = failures
        .iter()
        .filter(|f| f.event.details["will_retry"] == false)
        .count();
    assert_eq!(finals, 3);
    assert_eq!(stored(&app.store, &["webhook_delivered"]).await.len(), 2);
}

/// A URL that was fine at registration (or was changed behind the API's
/// back) is checked again when sending: nothing reaches a refused address.
async fn the_guard_refuses_at_send_time_too(backend: Backend) {
    // No allowlist here: registered to a public address, then pointed at
    // loopback (a literal and a name) behind the API's back.
    let (app, clock) = app_on_clock_with(
        backend,
        &[("WEBHOOK_MAX_ATTEMPTS", "1"), ("WEBHOOK_ALLOWED_CIDRS", "")],
    )
    .await;
    let receiver = Receiver::start();
    let port = receiver.base.rsplit(':').next().unwrap().to_owned();
    let (_, buyer, _) = tenant_with_principal(&app, "acme").await;
    let literal = register(&buyer, "http://8.8.8.8/a".into(), "bearer", Some(TOKEN)).await;
    let named = register(&buyer, "http://8.8.4.4/b".into(), "bearer", Some(TOKEN)).await;
    for (id, url) in [
        (&literal, format!("http://127.0.0.1:{port}/a")),
        (&named, format!("http://localhost:{port}/b")),
    ] {
        crate::audit::raw_sql(
            &app,
            backend,
            &format!("UPDATE push_notification_configs SET url = '{url}' WHERE id = '{id}'"),
        )
        .await
        .unwrap();
    }
    let id = goes_live(&app, &clock, &buyer).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let settled = loop {
        let settled = rows(&app.store, &id).await;
        if settled.len() == 2 && settled.iter().all(|r| r.status != "pending") {
            break settled;
        }
        assert!(std::time::Instant::now() < deadline, "still pending");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for row in &settled {
        assert_eq!(row.status, "failed");
        let error = row.last_error.as_deref().unwrap_or_default();
        assert!(error.contains("loopback"), "{error}");
        assert!(!error.contains(&port), "no URL in the reason: {error}");
    }
    assert!(receiver.all().is_empty(), "nothing reached the receiver");
}

async fn a_receiver_down_past_the_budget_fails_visibly_and_can_be_retried(backend: Backend) {
    let (app, clock) = app_on_clock_with(backend, &[("WEBHOOK_MAX_ATTEMPTS", "3")]).await;
    let receiver = Receiver::start();
    let (admin, buyer, _) = tenant_with_principal(&app, "acme").await;
    let down = crate::helpers::closed_port();
    let config = register(
        &buyer,
        format!("http://127.0.0.1:{down}/hook"),
        "bearer",
        Some(TOKEN),
    )
    .await;
    let id = goes_live(&app, &clock, &buyer).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let failed = loop {
        clock.advance(Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let rows = rows(&app.store, &id).await;
        if rows.iter().all(|r| r.status == "failed") {
            break rows;
        }
        assert!(std::time::Instant::now() < deadline, "not failed: {rows:?}");
    };
    assert_eq!(failed[0].attempts, 3);

    // Visible through the API, to the buyer and its admin.
    let path = format!("/api/v1/media-buys/{id}/webhooks");
    let listed = buyer.expect(200, buyer.get(&path).await).await;
    let item = &listed["items"][0];
    assert_eq!(item["status"], "failed");
    assert_eq!(item["attempts"], 3);
    assert!(
        item["last_error"]
            .as_str()
            .unwrap()
            .contains("could not connect"),
        "{item}"
    );
    assert_eq!(
        admin.expect(200, admin.get(&path).await).await["items"],
        listed["items"]
    );

    // The receiver is back (at a new address); the admin queues it again.
    crate::audit::raw_sql(
        &app,
        backend,
        &format!(
            "UPDATE push_notification_configs SET url = '{}' WHERE id = '{config}'",
            receiver.url("/hook")
        ),
    )
    .await
    .unwrap();
    let retry = format!("{path}/{}/retry", failed[0].id);
    assert_eq!(buyer.post(&retry, &json!({})).await.status(), 403);
    let requeued = admin
        .expect(200, admin.post(&retry, &json!({})).await)
        .await;
    assert_eq!(requeued["status"], "pending");
    assert_eq!(requeued["attempts"], 0);
    receiver.wait_for("/hook", 1, Duration::from_secs(5)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while rows(&app.store, &id).await[0].status != "delivered" {
        assert!(std::time::Instant::now() < deadline, "not delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(admin.post(&retry, &json!({})).await.status(), 409);
    assert_eq!(stored(&app.store, &["webhook_requeued"]).await.len(), 1);
}

/// The real binary, killed with status-change webhooks queued (the receiver
/// answering 503): after a restart each is delivered, and no idempotency key
/// is acknowledged twice or sent with two different payloads.
async fn queued_webhooks_survive_a_sigkill_and_each_key_is_acknowledged_once(backend: Backend) {
    let receiver = Receiver::start();
    receiver.set_default("/status", Reply::status(503, "down"));
    let db = crate::helpers::TestDatabase::new(backend).await;
    let workdir = tempfile::tempdir().unwrap();
    let token = "a-test-admin-token-of-at-least-32-characters";
    let vars = [
        ("BIND_ADDR", "127.0.0.1:0"),
        ("DATABASE_URL", db.url.as_str()),
        ("ADMIN_TOKEN", token),
        ("SKIP_CRON", "true"),
        ("WEBHOOK_ALLOWED_CIDRS", "127.0.0.1/32"),
        ("WEBHOOK_POLL_INTERVAL", "50ms"),
        ("WEBHOOK_RETRY_BASE", "100ms"),
        ("WEBHOOK_MAX_ATTEMPTS", "100"),
        // This test is about the crash, not the breaker (whose deferrals
        // would outlast it).
        ("WEBHOOK_BREAKER_THRESHOLD", "1000"),
        // A request cut off by the kill holds its lease this long.
        ("WEBHOOK_LEASE", "1s"),
    ];
    let mut service = crate::helpers::ServiceProcess::start(workdir.path(), &vars);
    let base = service.base_url().await;
    let api = crate::helpers::BinaryClient::new(&base);
    api.post(
        "/api/v1/tenants",
        token,
        json!({"id": "acme", "name": "Acme"}),
    )
    .await;
    let admin = api
        .post("/api/v1/tenants/acme/admin-tokens", token, json!({}))
        .await;
    let admin = admin["token"].as_str().unwrap().to_owned();
    let buyer = api
        .post("/api/v1/principals", &admin, json!({"name": "Buyer"}))
        .await;
    let buyer = buyer["token"].as_str().unwrap().to_owned();
    api.post(
        "/api/v1/push-notification-configs",
        &buyer,
        json!({"url": receiver.url("/status"), "authentication_type": "bearer",
                "authentication_token": TOKEN}),
    )
    .await;
    for _ in 0..3 {
        let mut body = media_buy(1_000.0, &[]);
        body["flight_start"] = json!("2026-01-01T00:00:00Z");
        body["flight_end"] = json!("2030-01-01T00:00:00Z");
        api.post("/api/v1/media-buys", &buyer, body).await;
    }
    let cycle = api
        .post("/admin/schedulers/status/run", token, json!({}))
        .await;
    assert_eq!(cycle["transitions"][0]["count"], 3, "{cycle}");
    receiver
        .wait_for("/status", 4, Duration::from_secs(10))
        .await;
    service.send_sigkill();
    service
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("killed");

    receiver.set_default("/status", Reply::ok());
    let mut restarted = crate::helpers::ServiceProcess::start(workdir.path(), &vars);
    restarted.base_url().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let acknowledged: Vec<String> = receiver
            .received("/status")
            .iter()
            .filter(|r| r.answered == 200)
            .map(|r| r.json()["idempotency_key"].as_str().unwrap().to_owned())
            .collect();
        if acknowledged.len() >= 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of 3 delivered",
            acknowledged.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut by_key: std::collections::HashMap<String, (Vec<Vec<u8>>, usize)> = Default::default();
    for r in &receiver.received("/status") {
        let key = r.json()["idempotency_key"].as_str().unwrap().to_owned();
        let entry = by_key.entry(key).or_default();
        if !entry.0.contains(&r.raw) {
            entry.0.push(r.raw.clone());
        }
        entry.1 += usize::from(r.answered == 200);
    }
    assert_eq!(by_key.len(), 3, "three status changes");
    for (key, (payloads, acknowledged)) in &by_key {
        assert_eq!(payloads.len(), 1, "{key} was sent with two payloads");
        assert_eq!(*acknowledged, 1, "{key} acknowledged {acknowledged} times");
    }
    assert!(
        !restarted.all_output().contains(TOKEN),
        "a webhook token in the logs"
    );
}

/// The circuit breaker: five failures in a row and the endpoint is left
/// alone for a minute; then one probe; a failed probe waits another minute,
/// a good one lets the rest through.
async fn an_endpoint_failing_five_times_is_left_alone_until_its_cooldown(backend: Backend) {
    let (app, clock) = app_on_clock_with(backend, &[("WEBHOOK_MAX_ATTEMPTS", "1")]).await;
    let receiver = Receiver::start();
    receiver.set_default("/down", Reply::status(503, "down"));
    let (_, buyer, _) = tenant_with_principal(&app, "acme").await;
    register(&buyer, receiver.url("/down"), "bearer", Some(TOKEN)).await;
    for _ in 0..7 {
        buyer
            .expect(
                201,
                buyer
                    .post("/api/v1/media-buys", &media_buy(1_000.0, &[]))
                    .await,
            )
            .await;
    }
    // The eighth buy, and the cycle that moves all eight.
    goes_live(&app, &clock, &buyer).await;
    receiver.wait_for("/down", 5, Duration::from_secs(5)).await;
    receiver.still("/down", 5, QUIET).await;

    clock.advance(Duration::from_secs(61));
    receiver.wait_for("/down", 6, Duration::from_secs(5)).await;
    receiver.still("/down", 6, QUIET).await;

    receiver.set_default("/down", Reply::ok());
    clock.advance(Duration::from_secs(61));
    let all = receiver.wait_for("/down", 8, Duration::from_secs(5)).await;
    receiver.still("/down", 8, QUIET).await;
    assert_eq!(
        all.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [503, 503, 503, 503, 503, 503, 200, 200]
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("webhook_deliveries_total{result=\"breaker_open\"}"));
}

/// `WEBHOOK_DOCKER_LOCALHOST_REWRITE=true`: a buyer's `localhost` is sent to
/// `host.docker.internal` (which does not resolve on this machine), so the
/// local receiver gets nothing; without it (every other test) it does.
async fn localhost_means_the_docker_host_only_when_asked(backend: Backend) {
    let (app, clock) = app_on_clock_with(
        backend,
        &[
            ("WEBHOOK_DOCKER_LOCALHOST_REWRITE", "true"),
            ("WEBHOOK_MAX_ATTEMPTS", "1"),
        ],
    )
    .await;
    let receiver = Receiver::start();
    let port = receiver.base.rsplit(':').next().unwrap().to_owned();
    let (_, buyer, _) = tenant_with_principal(&app, "acme").await;
    register(
        &buyer,
        format!("http://localhost:{port}/docker"),
        "bearer",
        Some(TOKEN),
    )
    .await;
    let id = goes_live(&app, &clock, &buyer).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let row = loop {
        let rows = rows(&app.store, &id).await;
        if rows.first().is_some_and(|r| r.status != "pending") {
            break rows[0].clone();
        }
        assert!(std::time::Instant::now() < deadline, "still pending");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(row.status, "failed");
    assert!(receiver.all().is_empty(), "the local receiver was reached");
}

/// A config asking for HMAC without a secret (or bearer without a token), and
/// an unauthenticated config in production (both put there behind the API's
/// back), are never sent to: nothing unsigned leaves.
async fn a_config_without_its_credentials_or_unauthenticated_in_production_is_never_sent_to(
    backend: Backend,
) {
    let (app, clock) = app_on_clock_with(backend, &[("ENVIRONMENT", "production")]).await;
    let receiver = Receiver::start();
    let (_, buyer, principal) = tenant_with_principal(&app, "acme").await;
    for (id, path, auth, token) in [
        ("pnc_nosecret", "/hmac", "hmac-sha256", "NULL"),
        ("pnc_empty", "/bearer", "bearer", "''"),
        ("pnc_none", "/none", "none", "NULL"),
    ] {
        crate::audit::raw_sql(
            &app,
            backend,
            &format!(
                "INSERT INTO push_notification_configs (id, tenant_id, principal_id, url, \
                 authentication_type, authentication_token, status, created_at, updated_at) \
                 VALUES ('{id}', 'acme', '{principal}', '{}', '{auth}', {token}, 'active', \
                 '2026-11-24T00:00:00+00:00', '2026-11-24T00:00:00+00:00')",
                receiver.url(path)
            ),
        )
        .await
        .unwrap();
    }
    let id = goes_live(&app, &clock, &buyer).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let settled = loop {
        let rows = rows(&app.store, &id).await;
        if rows.len() == 3 && rows.iter().all(|r| r.status != "pending") {
            break rows;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still pending: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for row in &settled {
        assert_eq!(row.status, "failed", "{row:?}");
        let error = row.last_error.as_deref().unwrap_or_default();
        let expected = if row.config_id == "pnc_none" {
            "not allowed in production"
        } else {
            "credentials"
        };
        assert!(error.contains(expected), "{}: {error}", row.config_id);
    }
    assert!(receiver.all().is_empty(), "something was sent");
}
