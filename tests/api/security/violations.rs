//! Violations recorded and notified, admin actions audited (issue 21, items
//! 6 to 9). The attacker is a tenant admin reaching for another tenant's
//! trail, alerts and stream by naming it; a service ingesting violations by
//! the hundred; and anyone using the operator routes. What the users of the
//! trail must see: a `cross_tenant_access` row for every such read, every
//! violation on the audit Slack channel without a flood, a row naming the
//! caller of every `/admin` action, and a critical notice for every grant of
//! access. Slack is a real HTTP receiver on 127.0.0.1.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use overseer_actors::audit::CommittedEvent;
use serde_json::{Value, json};

use crate::audit::{create_tenant, stored, wait_for_rows};
use crate::domain::As;
use crate::helpers::{
    Backend, ServiceProcess, TestApp, TestDatabase, assert_json_error, http_client,
    on_both_backends, spawn_app_with,
};
use crate::receiver::{Received, Receiver};

on_both_backends!(
    four_cross_tenant_reads_are_refused_and_four_violations_recorded,
    every_route_that_takes_a_tenant_id_records_a_read_of_another_tenant,
    an_ingested_violation_is_one_audit_message_and_a_burst_a_few_digests,
    violations_without_a_tenant_reach_the_system_audit_channel,
    violations_are_logged_at_the_critical_level,
    every_admin_route_leaves_a_row_naming_its_caller_without_secrets,
    privilege_changes_are_marked_and_noticed_critically_on_the_audit_channel,
);

/// Fast Slack polling; a quiet trail (no per-request and token rows), so
/// that every row a test counts is one it caused.
const QUIET: [(&str, &str); 3] = [
    ("SLACK_POLL_INTERVAL", "20ms"),
    ("AUDIT_REQUESTS", "false"),
    ("AUDIT_TOKEN_VALIDATIONS", "false"),
];

/// An admin token of `tenant`: the caller, and its id (the `principal_id`
/// its rows carry).
async fn tenant_admin<'a>(app: &'a TestApp, tenant: &str) -> (As<'a>, String) {
    let root = As::admin(app);
    let created = root
        .expect(
            201,
            root.post(
                &format!("/api/v1/tenants/{tenant}/admin-tokens"),
                &json!({}),
            )
            .await,
        )
        .await;
    (
        As::token(app, created["token"].as_str().unwrap()),
        created["token_id"].as_str().unwrap().to_owned(),
    )
}

/// An ingest token of `tenant`.
async fn ingest_token<'a>(app: &'a TestApp, tenant: &str) -> As<'a> {
    let root = As::admin(app);
    let created = root
        .expect(
            201,
            root.post(
                &format!("/api/v1/tenants/{tenant}/ingest-tokens"),
                &json!({}),
            )
            .await,
        )
        .await;
    As::token(app, created["token"].as_str().unwrap())
}

/// Points `tenant`'s audit webhook at `receiver`'s `path`.
async fn audit_hook(admin: &As<'_>, receiver: &Receiver, path: &str) {
    admin
        .expect(
            200,
            admin
                .patch(
                    "/api/v1/tenant/settings",
                    &json!({"slack_audit_webhook_url": receiver.url(path)}),
                )
                .await,
        )
        .await;
}

/// The violation rows stored, after waiting for `n` and making sure no more
/// follow.
async fn violations(app: &TestApp, n: usize) -> Vec<CommittedEvent> {
    wait_for_rows(&app.store, &["security_violation"], n).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rows = stored(&app.store, &["security_violation"]).await;
    assert_eq!(rows.len(), n, "violation rows");
    rows
}

/// A Slack message's header text.
fn header(message: &Received) -> String {
    message.json()["blocks"][0]["text"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The messages on `path` whose header contains `needle`.
fn headed(receiver: &Receiver, path: &str, needle: &str) -> Vec<Received> {
    receiver
        .received(path)
        .into_iter()
        .filter(|m| header(m).contains(needle))
        .collect()
}

/// Waits until `path` has at least `n` messages headed `needle`.
async fn wait_for_headed(
    receiver: &Receiver,
    path: &str,
    needle: &str,
    n: usize,
    within: Duration,
) -> Vec<Received> {
    let deadline = Instant::now() + within;
    loop {
        let got = headed(receiver, path, needle);
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: {} of {n} {needle:?} messages within {within:?}; got {:?}",
            got.len(),
            receiver
                .received(path)
                .iter()
                .map(header)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the Slack outbox has nothing pending.
async fn outbox_drained(app: &TestApp, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let depth = app.store.slack_depth().await.unwrap();
        if depth == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{depth} notifications still pending"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn four_cross_tenant_reads_are_refused_and_four_violations_recorded(backend: Backend) {
    let app = spawn_app_with(backend, &QUIET).await;
    create_tenant(&app, "acme").await;
    create_tenant(&app, "other").await;
    let (acme, acme_token_id) = tenant_admin(&app, "acme").await;

    let reads = [
        "/api/v1/audit/logs?tenant_id=other",
        "/api/v1/audit/verify?tenant_id=other",
        "/api/v1/alerts?tenant_id=other",
        "/api/activity-stream?tenant_id=other",
    ];
    for path in reads {
        assert_json_error(acme.get(path).await, 403, "forbidden").await;
    }
    // Its own tenant, named or not, is no violation.
    for path in [
        "/api/v1/audit/logs?tenant_id=acme",
        "/api/v1/audit/verify",
        "/api/v1/alerts?tenant_id=acme",
    ] {
        acme.expect(200, acme.get(path).await).await;
    }

    let rows = violations(&app, 4).await;
    let mut routes = BTreeSet::new();
    for row in &rows {
        let e = &row.event;
        assert_eq!(e.details["type"], "cross_tenant_access", "{e:?}");
        assert_eq!(e.details["severity"], "critical");
        assert_eq!(e.details["resource_id"], "other", "the tenant it named");
        assert!(e.security_violation && !e.success);
        assert_eq!(e.tenant_id.as_deref(), Some("acme"), "the caller's chain");
        assert_eq!(e.principal_id.as_deref(), Some(acme_token_id.as_str()));
        assert_eq!(e.ip_address.as_deref(), Some("127.0.0.1"));
        routes.insert(
            e.details["reason"]
                .as_str()
                .unwrap()
                .split(' ')
                .nth(1)
                .unwrap()
                .to_owned(),
        );
    }
    let expected: BTreeSet<String> = reads
        .iter()
        .map(|r| r.split('?').next().unwrap().to_owned())
        .collect();
    assert_eq!(routes, expected, "one row per route");
    // The other tenant's chain holds nothing of it, and still verifies.
    let theirs = As::admin(&app)
        .expect(
            200,
            As::admin(&app)
                .get("/api/v1/audit/logs?tenant_id=other&security_violation=true")
                .await,
        )
        .await;
    assert_eq!(theirs["items"], json!([]));
}

async fn every_route_that_takes_a_tenant_id_records_a_read_of_another_tenant(backend: Backend) {
    let app = spawn_app_with(backend, &QUIET).await;
    create_tenant(&app, "acme").await;
    create_tenant(&app, "other").await;
    let (acme, _) = tenant_admin(&app, "acme").await;

    // Every operation the OpenAPI document gives a `tenant_id` (path or
    // query), so a route added later is tried here without a line of its
    // own; and the dashboard's copy of the stream, which it does not list.
    let doc: Value = app.get("/api/openapi.json").await.json().await.unwrap();
    let mut calls: Vec<(reqwest::Method, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Some(place) = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == "tenant_id")
                .and_then(|p| p["in"].as_str())
            else {
                continue;
            };
            let url = match place {
                "path" => path
                    .replace("{tenant_id}", "other")
                    .replace("{token_id}", "tok_0000000000000000"),
                "query" => format!("{path}?tenant_id=other"),
                other => panic!("{path}: tenant_id in {other}"),
            };
            assert!(
                !url.contains('{'),
                "{url}: another path parameter; teach this test its value"
            );
            let method =
                reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            calls.push((method, url));
        }
    }
    calls.push((
        reqwest::Method::GET,
        "/admin/activity/stream?tenant_id=other".into(),
    ));
    assert!(calls.len() >= 10, "{calls:?}");

    for (method, url) in &calls {
        // A body the route would take: refused for who asks, not for what.
        let body = match *method {
            reqwest::Method::GET => None,
            reqwest::Method::PATCH => Some(json!({"name": "mine now"})),
            _ => Some(json!({})),
        };
        let response = acme.send(method.clone(), url, body.as_ref()).await;
        assert_eq!(response.status(), 403, "{method} {url}");
    }

    let rows = violations(&app, calls.len()).await;
    let reasons: BTreeSet<String> = rows
        .iter()
        .map(|r| {
            assert_eq!(r.event.details["type"], "cross_tenant_access");
            assert_eq!(r.event.tenant_id.as_deref(), Some("acme"));
            r.event.details["reason"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(reasons.len(), calls.len(), "one row per route: {reasons:?}");
    // Still exactly what a probe of resources gives: one notice per
    // prober and cool-down, however many rows.
    let notices = app
        .store
        .outbox(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == "security_violation")
        .count();
    assert_eq!(notices, 1);
}

/// The JSON of one violation event as another service would ingest it.
fn violation_event(principal: &str) -> Value {
    json!({
        "operation": "login_anomaly",
        "principal_id": principal,
        "success": false,
        "error": "42 passwords tried in a minute",
        "security_violation": true,
        "details": {"type": "credential_stuffing", "severity": "critical"},
    })
}

/// The number of violations a message stands for: a digest's `N events`,
/// else one per notice (with its own `×N` when the gate counted more).
fn accounted(message: &Received) -> usize {
    let header = header(message);
    match header.split("Digest: ").nth(1) {
        Some(rest) => rest.split(' ').next().unwrap().parse().unwrap(),
        None => 1,
    }
}

async fn an_ingested_violation_is_one_audit_message_and_a_burst_a_few_digests(backend: Backend) {
    const AUDIT: &str = "/services/acme/audit/ASECRET";
    let receiver = Receiver::start();
    let app = spawn_app_with(backend, &QUIET).await;
    create_tenant(&app, "acme").await;
    let (acme, _) = tenant_admin(&app, "acme").await;
    let ingest = ingest_token(&app, "acme").await;
    audit_hook(&acme, &receiver, AUDIT).await;

    // One violation, as another service reports it.
    ingest
        .expect(
            202,
            ingest
                .post("/api/v1/audit/events", &violation_event("p_evil"))
                .await,
        )
        .await;
    let told = wait_for_headed(
        &receiver,
        AUDIT,
        "Security violation",
        1,
        Duration::from_secs(10),
    )
    .await;
    let text = String::from_utf8(told[0].raw.clone()).unwrap();
    for fact in ["credential_stuffing", "p_evil", "critical", "42 passwords"] {
        assert!(text.contains(fact), "{fact} not in {text}");
    }
    outbox_drained(&app, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        headed(&receiver, AUDIT, "Security violation").len(),
        1,
        "one violation, one message"
    );
    let before = receiver.received(AUDIT).len();

    // A burst of 200 from 200 different principals: the gate lets each
    // through once (different subjects), so the digests must hold the line.
    let burst: Vec<Value> = (0..200)
        .map(|i| violation_event(&format!("p_{i}")))
        .collect();
    ingest
        .expect(
            202,
            ingest.post("/api/v1/audit/events", &json!(burst)).await,
        )
        .await;
    violations_committed(&app, 201).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let posts = &receiver.received(AUDIT)[before..];
        if posts.iter().map(accounted).sum::<usize>() >= 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of 200 violations told",
            posts.iter().map(accounted).sum::<usize>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    outbox_drained(&app, Duration::from_secs(10)).await;
    let posts = receiver.received(AUDIT)[before..].to_vec();
    assert!(
        posts.len() <= 5,
        "{} messages for a burst of 200: {:?}",
        posts.len(),
        posts.iter().map(header).collect::<Vec<_>>()
    );
    assert!(posts.iter().any(|p| header(p).contains("Digest: ")));
    assert_eq!(posts.iter().map(accounted).sum::<usize>(), 200);
}

/// Waits until `n` ingested violation rows are stored.
async fn violations_committed(app: &TestApp, n: usize) {
    wait_for_rows(&app.store, &["login_anomaly"], n).await;
}

async fn violations_without_a_tenant_reach_the_system_audit_channel(backend: Backend) {
    const SYSTEM_AUDIT: &str = "/services/system/audit/SSECRET";
    let receiver = Receiver::start();
    let url = receiver.url(SYSTEM_AUDIT);
    let mut vars = QUIET.to_vec();
    vars.push(("SLACK_AUDIT_WEBHOOK_URL", url.as_str()));
    let app = spawn_app_with(backend, &vars).await;

    // Ingested without a tenant: a system event.
    let root = As::admin(&app);
    root.expect(
        202,
        root.post(
            "/api/v1/audit/events",
            &json!({
                "operation": "scanner_detected",
                "ip_address": "203.0.113.5",
                "success": false,
                "security_violation": true,
            }),
        )
        .await,
    )
    .await;
    let told = wait_for_headed(
        &receiver,
        SYSTEM_AUDIT,
        "Security violation",
        1,
        Duration::from_secs(10),
    )
    .await;
    let text = String::from_utf8(told[0].raw.clone()).unwrap();
    assert!(
        text.contains("scanner_detected") && text.contains("203.0.113.5"),
        "{text}"
    );

    // The monitor's own, with no tenant either: a brute force (last: it
    // blocks this address).
    for _ in 0..5 {
        let response = app
            .client
            .get(app.url("/api/v1/tenants"))
            .bearer_auth("not-a-token")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
    let told = wait_for_headed(
        &receiver,
        SYSTEM_AUDIT,
        "Security violation",
        2,
        Duration::from_secs(10),
    )
    .await;
    let text = String::from_utf8(told[1].raw.clone()).unwrap();
    assert!(text.contains("repeated_failed_auth"), "{text}");
}

async fn violations_are_logged_at_the_critical_level(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let workdir = tempfile::tempdir().unwrap();
    let token = "a-test-admin-token-of-at-least-32-characters";
    let (mut service, base) =
        ServiceProcess::serve(workdir.path(), &db.url, token, &[("LOG_LEVEL", "info")]).await;
    let client = http_client();
    let response = client
        .post(format!("{base}/api/v1/audit/events"))
        .bearer_auth(token)
        .json(&json!({
            "operation": "login_anomaly",
            "principal_id": "p_evil",
            "success": false,
            "security_violation": true,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);

    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let found = service
            .stdout
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["message"] == "security violation");
        if let Some(line) = found {
            break line;
        }
        assert!(
            Instant::now() < deadline,
            "no violation line: {}",
            service.all_output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(line["level"], "ERROR", "{line}");
    assert_eq!(line["critical"], true, "{line}");
    assert_eq!(line["violation_type"], "login_anomaly", "{line}");
    assert_eq!(line["severity"], "high", "its own severity, kept: {line}");
    assert!(!service.all_output().contains(token), "the token stays out");
    service.stop(Duration::from_secs(10)).await;
}

/// A `POST` of a form, without following the redirect: (status, location,
/// the `Set-Cookie` pair if any).
async fn post_form(
    app: &TestApp,
    path: &str,
    form: &[(&str, &str)],
    cookie: Option<&str>,
) -> (u16, String, Option<String>) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut request = client.post(app.url(path)).form(form);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = request.send().await.unwrap();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let cookie = response
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    (response.status().as_u16(), location, cookie)
}

/// Every `/admin` route that acts or authenticates (the page and its assets
/// are static and public): method, route, the operation its row carries.
const ADMIN_ROUTES: &[(&str, &str, &str)] = &[
    ("POST", "/admin/session", "admin_session_started"),
    ("GET", "/admin/session", "admin_session_checked"),
    (
        "GET",
        "/admin/activity/stream",
        "admin_activity_stream_opened",
    ),
    (
        "POST",
        "/admin/schedulers/status/run",
        "admin_scheduler_run",
    ),
    (
        "POST",
        "/admin/schedulers/delivery/run",
        "admin_scheduler_run",
    ),
    ("POST", "/admin/alerts/run", "admin_alerts_run"),
    ("POST", "/admin/debug/faults", "admin_fault_armed"),
    ("POST", "/admin/session/end", "admin_session_ended"),
];

async fn every_admin_route_leaves_a_row_naming_its_caller_without_secrets(backend: Backend) {
    let mut vars = QUIET.to_vec();
    vars.extend([("ENABLE_FAULT_INJECTION", "true"), ("SKIP_CRON", "true")]);
    let app = spawn_app_with(backend, &vars).await;
    let root = As::admin(&app);

    // Every `/admin` operation the OpenAPI document describes is in the
    // table, so a new one cannot be left out of this test.
    let doc: Value = app.get("/api/openapi.json").await.json().await.unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/admin") {
            continue;
        }
        for method in item.as_object().unwrap().keys() {
            let method = method.to_ascii_uppercase();
            assert!(
                ADMIN_ROUTES
                    .iter()
                    .any(|(m, p, _)| *m == method && p == path),
                "{method} {path} is not in ADMIN_ROUTES"
            );
        }
    }

    // Each route, as the super admin.
    let mut cookie = String::new();
    for (method, route, _) in ADMIN_ROUTES {
        let status = match (*method, *route) {
            ("POST", "/admin/session") => {
                let (status, location, set) =
                    post_form(&app, route, &[("token", &app.admin_token)], None).await;
                assert_eq!(location, "/admin");
                cookie = set.expect("a session cookie");
                status
            }
            ("POST", "/admin/session/end") => post_form(&app, route, &[], Some(&cookie)).await.0,
            ("GET", _) => {
                let response = app
                    .client
                    .get(app.url(&format!("{route}?operation=seen")))
                    .header("cookie", &cookie)
                    .send()
                    .await
                    .unwrap();
                response.status().as_u16()
            }
            ("POST", "/admin/debug/faults") => root
                .post(
                    route,
                    &json!({"actor": "delivery_scheduler", "kind": "error", "times": 1}),
                )
                .await
                .status()
                .as_u16(),
            _ => root.post(route, &json!({})).await.status().as_u16(),
        };
        assert!(status < 400, "{method} {route}: {status}");
    }

    // One row each, naming the super admin, with its parameters.
    let operations: BTreeSet<&str> = ADMIN_ROUTES.iter().map(|(_, _, op)| *op).collect();
    let operations: Vec<&str> = operations.into_iter().collect();
    let rows = wait_for_rows(&app.store, &operations, ADMIN_ROUTES.len()).await;
    let mut by_route: HashMap<(String, String), &CommittedEvent> = HashMap::new();
    for row in &rows {
        let e = &row.event;
        assert_eq!(e.principal_id.as_deref(), Some("super_admin"), "{e:?}");
        assert_eq!(e.principal_name.as_deref(), Some("Super admin"));
        assert_eq!(e.tenant_id, None, "the super admin's rows are system rows");
        assert!(e.success, "{e:?}");
        assert_eq!(e.ip_address.as_deref(), Some("127.0.0.1"));
        // The dashboard's own rows (sign-in, sign-out) say the role; the
        // others the method and route.
        let key = match e.operation.as_str() {
            "admin_session_started" => ("POST".to_owned(), "/admin/session".to_owned()),
            "admin_session_ended" => ("POST".to_owned(), "/admin/session/end".to_owned()),
            _ => (
                e.details["method"].as_str().unwrap().to_owned(),
                e.details["route"].as_str().unwrap().to_owned(),
            ),
        };
        assert!(by_route.insert(key, row).is_none(), "two rows: {e:?}");
    }
    for (method, route, operation) in ADMIN_ROUTES {
        let row = by_route
            .get(&((*method).to_owned(), (*route).to_owned()))
            .unwrap_or_else(|| panic!("no row for {method} {route}"));
        assert_eq!(row.event.operation, *operation);
    }
    let details = |method: &str, route: &str| {
        by_route[&(method.to_owned(), route.to_owned())]
            .event
            .details
            .clone()
    };
    assert_eq!(
        details("POST", "/admin/schedulers/status/run")["scheduler"],
        "status"
    );
    assert_eq!(
        details("POST", "/admin/schedulers/delivery/run")["scheduler"],
        "delivery"
    );
    assert_eq!(
        details("POST", "/admin/schedulers/delivery/run")["ran"],
        true
    );
    assert!(details("POST", "/admin/alerts/run")["firing"].is_u64());
    let fault = details("POST", "/admin/debug/faults");
    assert_eq!(
        (&fault["actor"], &fault["kind"], &fault["times"]),
        (&json!("delivery_scheduler"), &json!("error"), &json!(1))
    );
    assert_eq!(
        details("GET", "/admin/activity/stream")["query"],
        json!({"operation": "seen"})
    );
    assert_eq!(
        details("POST", "/admin/session")["role"],
        "super_admin",
        "sign-in"
    );

    // Refusals are actions too: a tenant admin, and no one at all.
    create_tenant(&app, "acme").await;
    let (acme, acme_token_id) = tenant_admin(&app, "acme").await;
    assert_json_error(
        acme.post("/admin/alerts/run", &json!({})).await,
        403,
        "forbidden",
    )
    .await;
    let anonymous = app
        .client
        .post(app.url("/admin/schedulers/status/run"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let (status, location, _) =
        post_form(&app, "/admin/session", &[("token", "not-a-token")], None).await;
    assert_eq!((status, location.as_str()), (303, "/admin?error=invalid"));
    let refused: Vec<CommittedEvent> = wait_for_rows(&app.store, &operations, rows.len() + 3)
        .await
        .into_iter()
        .filter(|r| !r.event.success)
        .collect();
    assert_eq!(refused.len(), 3, "{refused:?}");
    let tenant_admins = refused
        .iter()
        .find(|r| r.event.operation == "admin_alerts_run")
        .unwrap();
    assert_eq!(
        tenant_admins.event.principal_id.as_deref(),
        Some(acme_token_id.as_str())
    );
    assert_eq!(tenant_admins.event.tenant_id.as_deref(), Some("acme"));
    assert_eq!(tenant_admins.event.details["status"], 403);
    let anonymous = refused
        .iter()
        .find(|r| r.event.operation == "admin_scheduler_run")
        .unwrap();
    assert_eq!(anonymous.event.principal_id, None);
    assert_eq!(anonymous.event.details["status"], 401);
    let bad_sign_in = refused
        .iter()
        .find(|r| r.event.operation == "admin_session_started")
        .unwrap();
    assert_eq!(bad_sign_in.event.error.as_deref(), Some("refused: invalid"));

    // No token anywhere in the trail, nor in its files.
    let everything = serde_json::to_string(&stored(&app.store, &[]).await).unwrap();
    for secret in [app.admin_token.as_str(), acme.token.as_str(), "not-a-token"] {
        assert!(!everything.contains(secret), "a token in the trail");
    }
    for file in [
        "audit.log",
        "structured.jsonl",
        "error.log",
        "security.jsonl",
    ] {
        let text =
            std::fs::read_to_string(app.files.path().join("logs").join(file)).unwrap_or_default();
        assert!(!text.contains(&app.admin_token), "a token in {file}");
    }
}

async fn privilege_changes_are_marked_and_noticed_critically_on_the_audit_channel(
    backend: Backend,
) {
    const AUDIT: &str = "/services/acme/audit/PSECRET";
    let receiver = Receiver::start();
    let app = spawn_app_with(backend, &QUIET).await;
    let root = As::admin(&app);
    create_tenant(&app, "acme").await;
    let (acme, _) = tenant_admin(&app, "acme").await;
    // That first token's notice had no webhook to go to: let it be skipped
    // before there is one.
    outbox_drained(&app, Duration::from_secs(10)).await;
    audit_hook(&acme, &receiver, AUDIT).await;

    // An admin token: the change the monitoring seeds call critical.
    tenant_admin(&app, "acme").await;
    let told = wait_for_headed(
        &receiver,
        AUDIT,
        "Privilege change",
        1,
        Duration::from_secs(10),
    )
    .await;
    let text = String::from_utf8(told[0].raw.clone()).unwrap();
    assert!(text.contains("admin_token_created"), "{text}");
    assert!(text.contains("*Severity:*\\ncritical"), "{text}");

    // The others: an ingest token, a principal's token rotated, the tenant
    // reactivated (its deactivation is no grant, and no privilege change).
    ingest_token(&app, "acme").await;
    let created = acme
        .expect(
            201,
            acme.post("/api/v1/principals", &json!({"name": "Buyer"}))
                .await,
        )
        .await;
    let principal = created["principal_id"].as_str().unwrap();
    acme.expect(
        200,
        acme.post(
            &format!("/api/v1/principals/{principal}/rotate-token"),
            &json!({}),
        )
        .await,
    )
    .await;
    for active in [false, true] {
        root.expect(
            200,
            root.patch("/api/v1/tenants/acme", &json!({"is_active": active}))
                .await,
        )
        .await;
    }
    let told = wait_for_headed(
        &receiver,
        AUDIT,
        "Privilege change",
        4,
        Duration::from_secs(20),
    )
    .await;
    let texts: Vec<String> = told
        .iter()
        .map(|m| String::from_utf8(m.raw.clone()).unwrap())
        .collect();
    for change in [
        "admin_token_created",
        "ingest_token_created",
        "token_rotated",
        "tenant_reactivated",
    ] {
        assert_eq!(
            texts.iter().filter(|t| t.contains(change)).count(),
            1,
            "{change}: {texts:?}"
        );
    }
    outbox_drained(&app, Duration::from_secs(10)).await;
    assert_eq!(headed(&receiver, AUDIT, "Privilege change").len(), 4);

    // The rows say so.
    let rows = stored(
        &app.store,
        &[
            "create_admin_token",
            "create_ingest_token",
            "update_principal",
            "update_tenant",
        ],
    )
    .await;
    let marked: Vec<(String, String)> = rows
        .iter()
        .filter(|r| r.event.details["security_relevant"] == true)
        .map(|r| {
            (
                r.event.operation.clone(),
                r.event.details["privilege_change"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        marked,
        [
            ("create_admin_token".into(), "admin_token_created".into()),
            ("create_admin_token".into(), "admin_token_created".into()),
            ("create_ingest_token".into(), "ingest_token_created".into()),
            ("update_principal".into(), "principal_token_rotated".into()),
            ("update_tenant".into(), "tenant_reactivated".into()),
        ]
    );
    assert_eq!(
        rows.iter()
            .filter(|r| r.event.operation == "update_tenant")
            .count(),
        2,
        "the deactivation is a row, unmarked"
    );
}
