//! Every error is JSON with the right status, including actix-web's own.

use serde_json::json;

use crate::helpers::{Backend, assert_json_error, on_both_backends, spawn_app, spawn_app_with};

on_both_backends!(
    an_unknown_route_is_a_json_404,
    a_wrong_method_is_a_json_405,
    an_oversized_body_is_a_json_413,
    malformed_json_is_a_json_400,
    a_non_json_content_type_is_a_json_415,
    an_invalid_field_is_a_json_422_naming_it,
    bad_requests_store_nothing,
);

async fn an_unknown_route_is_a_json_404(backend: Backend) {
    let app = spawn_app(backend).await;

    let body = assert_json_error(app.get("/no/such/route").await, 404, "not_found").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/no/such/route")
    );

    assert_json_error(
        app.get_as_admin("/api/v1/nothing-here").await,
        404,
        "not_found",
    )
    .await;
}

async fn a_wrong_method_is_a_json_405(backend: Backend) {
    let app = spawn_app(backend).await;

    let response = app.client.post(app.url("/health")).send().await.unwrap();
    let allow = response
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_json_error(response, 405, "method_not_allowed").await;
    assert_eq!(allow.as_deref(), Some("GET"));

    let response = app
        .client
        .delete(app.url("/api/v1/tenants"))
        .send()
        .await
        .unwrap();
    assert_json_error(response, 405, "method_not_allowed").await;
}

async fn an_oversized_body_is_a_json_413(backend: Backend) {
    let app = spawn_app_with(backend, &[("MAX_BODY_BYTES", "1024")]).await;
    let big_name = "x".repeat(2_000);

    let response = app
        .post_json_as_admin("/api/v1/tenants", &json!({"name": big_name}))
        .await;
    assert_json_error(response, 413, "payload_too_large").await;

    // Also when the size is not announced up front (chunked transfer).
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(b"{\"name\": \"".to_vec()),
        Ok(vec![b'y'; 4_096]),
        Ok(b"\"}".to_vec()),
    ];
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let response = app
        .post_raw_as_admin("/api/v1/tenants", "application/json", body)
        .await;
    assert_json_error(response, 413, "payload_too_large").await;

    // The default limit is 1 MiB.
    let app = spawn_app(backend).await;
    let response = app
        .post_json_as_admin("/api/v1/tenants", &json!({"name": "x".repeat(1_100_000)}))
        .await;
    assert_json_error(response, 413, "payload_too_large").await;
}

async fn malformed_json_is_a_json_400(backend: Backend) {
    let app = spawn_app(backend).await;

    for body in [
        &b"{\"name\": "[..],
        b"not json at all",
        b"{\"name\": \"a\"} {}",
        b"{\"name\": \"\xff\xfe\"}",
    ] {
        let response = app
            .post_raw_as_admin("/api/v1/tenants", "application/json", body.to_vec())
            .await;
        assert_json_error(response, 400, "malformed_json").await;
    }
}

async fn a_non_json_content_type_is_a_json_415(backend: Backend) {
    let app = spawn_app(backend).await;

    let response = app
        .post_raw_as_admin("/api/v1/tenants", "text/plain", r#"{"name": "Acme"}"#)
        .await;
    assert_json_error(response, 415, "unsupported_media_type").await;
}

async fn an_invalid_field_is_a_json_422_naming_it(backend: Backend) {
    let app = spawn_app(backend).await;

    for (body, field) in [
        (json!({"name": 5}), "name"),
        (json!({}), "name"),
        (json!({"name": "   "}), "name"),
        (json!({"name": "x".repeat(5_000)}), "name"),
        (json!({"name": "Acme", "id": "Not A Slug"}), "id"),
        (
            json!({"name": "Acme", "id": "x'; DROP TABLE tenants; --"}),
            "id",
        ),
        (json!({"name": "Acme", "colour": "blue"}), "colour"),
    ] {
        let response = app.post_json_as_admin("/api/v1/tenants", &body).await;
        let error = assert_json_error(response, 422, "invalid_field").await;
        assert_eq!(error["error"]["field"], field, "{body} -> {error}");
    }
}

async fn bad_requests_store_nothing(backend: Backend) {
    let app = spawn_app(backend).await;

    app.post_raw_as_admin("/api/v1/tenants", "application/json", "{oops")
        .await;
    app.post_json_as_admin("/api/v1/tenants", &json!({"name": ""}))
        .await;
    app.post_json_as_admin("/api/v1/tenants", &json!({"name": "x".repeat(2_000_000)}))
        .await;

    assert!(app.store.list_tenants(None, 10).await.unwrap().is_empty());
}
