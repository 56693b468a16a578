//! `/metrics` in production (issue 22, item 7): its counters show how an
//! attacker's probing is being seen (violations by type, 401/403 per route,
//! firing alerts), so production serves them to the bearer of
//! `METRICS_TOKEN`, or on the internal listener of `METRICS_BIND_ADDR`, and
//! to no one (401) when neither is set, unless `METRICS_PUBLIC=true`.

use crate::helpers::{Backend, TestApp, on_both_backends, spawn_app_with};

on_both_backends!(
    production_without_a_metrics_token_answers_401_to_everyone,
    production_with_a_metrics_token_serves_only_its_bearer,
    a_metrics_listener_of_its_own_takes_metrics_off_the_main_one,
);

const METRICS_TOKEN: &str = "scraper-2b7e151628aed2a6abf7158809cf4f3c";

async fn metrics_status(app: &TestApp, base: &str, token: Option<&str>) -> (u16, String) {
    let mut request = app.client.get(format!("{base}/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn production_without_a_metrics_token_answers_401_to_everyone(backend: Backend) {
    let app = spawn_app_with(backend, &[("ENVIRONMENT", "production")]).await;
    let base = app.address.clone();
    let admin = app.admin_token.clone();
    for token in [None, Some("anything"), Some(admin.as_str())] {
        let (status, body) = metrics_status(&app, &base, token).await;
        assert_eq!(status, 401, "{token:?}: {body}");
        assert!(!body.contains("http_requests_total"), "{body}");
    }

    // Left open only when an operator says so.
    let open = spawn_app_with(
        backend,
        &[("ENVIRONMENT", "production"), ("METRICS_PUBLIC", "true")],
    )
    .await;
    let base = open.address.clone();
    let (status, body) = metrics_status(&open, &base, None).await;
    assert_eq!(status, 200);
    assert!(body.contains("db_pool_max_connections"), "{body}");
}

async fn production_with_a_metrics_token_serves_only_its_bearer(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[
            ("ENVIRONMENT", "production"),
            ("METRICS_TOKEN", METRICS_TOKEN),
        ],
    )
    .await;
    let base = app.address.clone();
    let admin = app.admin_token.clone();
    for token in [
        None,
        Some("scraper-wrong"),
        Some(&METRICS_TOKEN[..METRICS_TOKEN.len() - 1]),
        Some(admin.as_str()),
    ] {
        let (status, _) = metrics_status(&app, &base, token).await;
        assert_eq!(status, 401, "{token:?}");
    }
    let (status, body) = metrics_status(&app, &base, Some(METRICS_TOKEN)).await;
    assert_eq!(status, 200);
    assert!(body.contains("db_pool_max_connections"), "{body}");
    // The scheme is case-insensitive, as everywhere else.
    let response = app
        .client
        .get(app.url("/metrics"))
        .header("authorization", format!("bearer {METRICS_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

async fn a_metrics_listener_of_its_own_takes_metrics_off_the_main_one(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[
            ("ENVIRONMENT", "production"),
            ("METRICS_BIND_ADDR", "127.0.0.1:0"),
        ],
    )
    .await;
    let internal = app
        .metrics_address
        .clone()
        .expect("a metrics listener of its own");
    assert_ne!(internal, app.address);

    let main = app.address.clone();
    let (status, _) = metrics_status(&app, &main, None).await;
    assert_eq!(status, 404, "not served on the main listener");
    let (status, body) = metrics_status(&app, &internal, None).await;
    assert_eq!(status, 200, "open on the internal address");
    assert!(body.contains("db_pool_max_connections"), "{body}");
    // /metrics and nothing else there.
    let other = app
        .client
        .get(format!("{internal}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status().as_u16(), 404);
    // The main listener still serves everything else.
    assert_eq!(app.health().await.0, 200);

    // With a token as well, the internal listener asks for it.
    let both = spawn_app_with(
        backend,
        &[
            ("ENVIRONMENT", "production"),
            ("METRICS_BIND_ADDR", "127.0.0.1:0"),
            ("METRICS_TOKEN", METRICS_TOKEN),
        ],
    )
    .await;
    let internal = both.metrics_address.clone().unwrap();
    assert_eq!(metrics_status(&both, &internal, None).await.0, 401);
    assert_eq!(
        metrics_status(&both, &internal, Some(METRICS_TOKEN))
            .await
            .0,
        200
    );
}
