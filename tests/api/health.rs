use std::time::Duration;

use crate::helpers::{Backend, on_both_backends, spawn_app, spawn_app_with};

on_both_backends!(
    health_reports_a_connected_database,
    without_auto_migrate_health_waits_for_someone_to_migrate,
    liveness_and_readiness_answer,
    responses_carry_a_request_id,
);

async fn health_reports_a_connected_database(backend: Backend) {
    let app = spawn_app(backend).await;

    let (status, body) = app.health().await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["database"], "connected");
    assert!(body.get("error").is_none(), "{body}");
    let database = &body["components"]["database"];
    assert_eq!(database["status"], "connected");
    assert_eq!(database["schema"], "current");
    let expected_backend = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(database["backend"], expected_backend);
    assert!(database["latency_ms"].as_f64().is_some(), "{body}");
    assert!(database["pool"]["max"].as_u64() == Some(4), "{body}");
}

async fn liveness_and_readiness_answer(backend: Backend) {
    let app = spawn_app(backend).await;

    let live = app.get("/health/live").await;
    assert_eq!(live.status().as_u16(), 200);
    assert_eq!(
        live.json::<serde_json::Value>().await.unwrap()["status"],
        "alive"
    );

    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status().as_u16(), 200);
    assert_eq!(
        ready.json::<serde_json::Value>().await.unwrap()["database"],
        "connected"
    );
}

async fn responses_carry_a_request_id(backend: Backend) {
    let app = spawn_app(backend).await;

    let mut ids = Vec::new();
    for path in ["/health", "/no/such/route"] {
        let response = app.get(path).await;
        let id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no X-Request-Id on {path}"));
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1], "each request has its own id");
}

async fn without_auto_migrate_health_waits_for_someone_to_migrate(backend: Backend) {
    let app = spawn_app_with(backend, &[("AUTO_MIGRATE", "false")]).await;

    let (status, body) = app.health_details().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["database"], "connected");
    assert_eq!(body["components"]["database"]["schema"], "pending");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("AUTO_MIGRATE=false"),
        "{body}"
    );
    let tenants = app.get_as_admin("/api/v1/tenants").await;
    assert_eq!(
        tenants.status().as_u16(),
        503,
        "no table yet: unavailable, not a 500"
    );

    // An operator migrates out of band; the service notices by itself.
    app.store.migrate().await.unwrap();
    let body = app.wait_for_health(200, Duration::from_secs(15)).await;
    assert_eq!(body["components"]["database"]["schema"], "current");
}
