//! Supervision as operators see it: restarts in /health and /metrics, the
//! service serving throughout, and the fault-injection endpoint's guards.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{
    Backend, TestApp, assert_json_error, on_both_backends, spawn_app, spawn_app_with,
};

on_both_backends!(
    the_fault_endpoint_is_absent_unless_enabled,
    the_fault_endpoint_requires_the_admin_token,
    the_fault_endpoint_refuses_unknown_actors_and_bad_counts,
    a_panicking_actor_is_restarted_while_requests_keep_succeeding,
    a_restart_storm_degrades_health_and_recovers_by_itself,
    health_lists_every_supervised_actor,
);

/// Tests that restart `database_watch` read deltas of one process-wide
/// counter: they take turns.
static RESTART_COUNTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const FAULTY: &[(&str, &str)] = &[
    ("ENABLE_FAULT_INJECTION", "true"),
    ("DATABASE_WATCH_INTERVAL", "20ms"),
    ("SUPERVISOR_BACKOFF_INITIAL", "20ms"),
    ("SUPERVISOR_BACKOFF_MAX", "300ms"),
];

async fn arm(app: &TestApp, body: Value) -> reqwest::Response {
    app.post_json_as_admin("/admin/debug/faults", &body).await
}

async fn restarts_metric(app: &TestApp, reason: &str) -> u64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    let series = format!(r#"actor_restarts_total{{actor="database_watch",reason="{reason}"}} "#);
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |v| v.trim().parse().unwrap())
}

fn watch_status(health: &Value) -> (&str, u64) {
    let watch = &health["components"]["actors"]["database_watch"];
    (
        watch["status"].as_str().unwrap(),
        watch["restarts"].as_u64().unwrap(),
    )
}

async fn the_fault_endpoint_is_absent_unless_enabled(backend: Backend) {
    let app = spawn_app(backend).await;

    let response = arm(
        &app,
        json!({"actor": "database_watch", "kind": "panic", "times": 1}),
    )
    .await;

    assert_json_error(response, 404, "not_found").await;
}

async fn the_fault_endpoint_requires_the_admin_token(backend: Backend) {
    let app = spawn_app_with(backend, FAULTY).await;
    let body = json!({"actor": "database_watch", "kind": "panic", "times": 1});

    let anonymous = app
        .client
        .post(app.url("/admin/debug/faults"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_json_error(anonymous, 401, "unauthorized").await;
    let wrong = app
        .client
        .post(app.url("/admin/debug/faults"))
        .bearer_auth("not-the-admin")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_json_error(wrong, 401, "unauthorized").await;

    // Nothing was armed: the actor never restarted.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, health) = app.health().await;
    assert_eq!(watch_status(&health), ("running", 0));
}

async fn the_fault_endpoint_refuses_unknown_actors_and_bad_counts(backend: Backend) {
    let app = spawn_app_with(backend, FAULTY).await;

    for (body, field) in [
        (json!({"actor": "nobody", "kind": "panic"}), "actor"),
        (
            json!({"actor": "database_watch", "kind": "explode"}),
            "kind",
        ),
        (
            json!({"actor": "database_watch", "kind": "panic", "times": 0}),
            "times",
        ),
        (
            json!({"actor": "database_watch", "kind": "panic", "times": -1}),
            "times",
        ),
    ] {
        let error = assert_json_error(arm(&app, body.clone()).await, 422, "invalid_field").await;
        assert_eq!(error["error"]["field"], field, "{body}");
    }
}

async fn a_panicking_actor_is_restarted_while_requests_keep_succeeding(backend: Backend) {
    let _turn = RESTART_COUNTER.lock().await;
    let app = spawn_app_with(backend, FAULTY).await;
    let before = restarts_metric(&app, "panic").await;

    let armed = arm(
        &app,
        json!({"actor": "database_watch", "kind": "panic", "times": 1}),
    )
    .await;
    assert_eq!(armed.status().as_u16(), 202);

    // Requests issued while the fault fires all succeed.
    let mut requests = Vec::new();
    for _ in 0..40 {
        let client = app.client.clone();
        let url = app.url("/api/v1/tenants");
        let token = app.admin_token.clone();
        requests.push(tokio::spawn(async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for request in requests {
        assert_eq!(request.await.unwrap().unwrap(), 200);
    }

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, health) = app.health_details().await;
        assert_eq!(status, 200);
        if watch_status(&health) == ("running", 1) {
            let watch = &health["components"]["actors"]["database_watch"];
            assert!(
                watch["last_error"]
                    .as_str()
                    .unwrap()
                    .contains("injected panic")
            );
            assert!(watch["last_restart_at"].as_str().is_some());
            break;
        }
        assert!(Instant::now() < deadline, "not restarted: {health}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(restarts_metric(&app, "panic").await, before + 1);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"actor_up{actor="database_watch"} 1"#),
        "{metrics}"
    );
}

async fn a_restart_storm_degrades_health_and_recovers_by_itself(backend: Backend) {
    let _turn = RESTART_COUNTER.lock().await;
    let app = spawn_app_with(backend, FAULTY).await;
    let before = restarts_metric(&app, "panic").await;

    let armed = arm(
        &app,
        json!({"actor": "database_watch", "kind": "panic", "times": 20}),
    )
    .await;
    assert_eq!(armed.status().as_u16(), 202);

    let mut seen_degraded = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, health) = app.health().await;
        assert_eq!(
            status, 200,
            "a down actor degrades, it does not fail: {health}"
        );
        if health["status"] == "degraded" {
            assert_eq!(watch_status(&health).0, "down");
            assert_eq!(health["database"], "connected");
            seen_degraded = true;
        }
        if seen_degraded && watch_status(&health) == ("running", 20) {
            assert_eq!(health["status"], "healthy");
            break;
        }
        // The rest of the service keeps serving.
        assert_eq!(
            app.get_as_admin("/api/v1/tenants").await.status().as_u16(),
            200
        );
        assert!(Instant::now() < deadline, "did not recover: {health}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(restarts_metric(&app, "panic").await, before + 20);
}

async fn health_lists_every_supervised_actor(backend: Backend) {
    let app = spawn_app(backend).await;

    let (_, health) = app.health().await;

    let actors = health["components"]["actors"].as_object().unwrap();
    assert_eq!(
        actors.keys().collect::<Vec<_>>(),
        [
            "alerts",
            "audit",
            "database_watch",
            "delivery_scheduler",
            "security_monitor",
            "slack_router",
            "sse_hub",
            "status_scheduler",
            "webhook_sender"
        ]
    );
    assert_eq!(watch_status(&health), ("running", 0));
}
