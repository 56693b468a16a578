use serde_json::{Value, json};

use crate::helpers::{Backend, assert_json_error, on_both_backends, spawn_app};

on_both_backends!(
    the_super_admin_creates_and_reads_a_tenant,
    a_tenant_id_is_generated_when_none_is_given,
    a_taken_tenant_id_is_a_409,
    tenants_are_listed_page_by_page,
    tenant_routes_require_the_admin_token,
    an_unknown_tenant_is_a_404,
    bad_list_parameters_are_refused,
);

async fn the_super_admin_creates_and_reads_a_tenant(backend: Backend) {
    let app = spawn_app(backend).await;

    let response = app
        .post_json_as_admin(
            "/api/v1/tenants",
            &json!({"id": "acme", "name": "  Acme Media  "}),
        )
        .await;

    assert_eq!(response.status().as_u16(), 201);
    assert_eq!(response.headers()["location"], "/api/v1/tenants/acme");
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["id"], "acme");
    assert_eq!(created["name"], "Acme Media");
    assert_eq!(created["is_active"], true);

    let fetched = app.get_json_as_admin("/api/v1/tenants/acme").await;
    assert_eq!(fetched, created);

    let stored = app
        .store
        .tenant(&overseer::domain::TenantId::parse("id", "acme").unwrap())
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(stored.name.as_str(), "Acme Media");
}

async fn a_tenant_id_is_generated_when_none_is_given(backend: Backend) {
    let app = spawn_app(backend).await;

    let created: Value = app
        .post_json_as_admin("/api/v1/tenants", &json!({"name": "Globex"}))
        .await
        .json()
        .await
        .unwrap();

    let id = created["id"].as_str().unwrap();
    assert!(
        id.starts_with("tenant_") && id.len() == "tenant_".len() + 12,
        "{id}"
    );
}

async fn a_taken_tenant_id_is_a_409(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = json!({"id": "acme", "name": "Acme"});
    assert_eq!(
        app.post_json_as_admin("/api/v1/tenants", &body)
            .await
            .status()
            .as_u16(),
        201
    );

    let again = app
        .post_json_as_admin("/api/v1/tenants", &json!({"id": "acme", "name": "Other"}))
        .await;

    let error = assert_json_error(again, 409, "conflict").await;
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already exists")
    );
    let fetched = app.get_json_as_admin("/api/v1/tenants/acme").await;
    assert_eq!(fetched["name"], "Acme", "the first tenant is untouched");
}

async fn tenants_are_listed_page_by_page(backend: Backend) {
    let app = spawn_app(backend).await;
    for id in ["e", "a", "d", "b", "c"] {
        let response = app
            .post_json_as_admin(
                "/api/v1/tenants",
                &json!({"id": id, "name": id.to_uppercase()}),
            )
            .await;
        assert_eq!(response.status().as_u16(), 201);
    }

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/tenants?limit=2&cursor={c}"),
            None => "/api/v1/tenants?limit=2".to_owned(),
        };
        let page = app.get_json_as_admin(&path).await;
        pages += 1;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|t| t["id"].as_str().unwrap().to_owned()));
        match page.get("next_cursor").and_then(Value::as_str) {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }

    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    assert_eq!(pages, 3);
}

async fn tenant_routes_require_the_admin_token(backend: Backend) {
    let app = spawn_app(backend).await;

    let anonymous = app
        .client
        .get(app.url("/api/v1/tenants"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    assert_json_error(anonymous, 401, "unauthorized").await;

    let wrong = app
        .client
        .post(app.url("/api/v1/tenants"))
        .bearer_auth("not-the-admin-token")
        .json(&json!({"name": "Sneaky"}))
        .send()
        .await
        .unwrap();
    assert_json_error(wrong, 401, "unauthorized").await;

    let basic = app
        .client
        .get(app.url("/api/v1/tenants"))
        .basic_auth("admin", Some(&app.admin_token))
        .send()
        .await
        .unwrap();
    assert_json_error(basic, 401, "unauthorized").await;

    assert!(app.store.list_tenants(None, 10).await.unwrap().is_empty());
}

async fn an_unknown_tenant_is_a_404(backend: Backend) {
    let app = spawn_app(backend).await;

    assert_json_error(
        app.get_as_admin("/api/v1/tenants/nobody").await,
        404,
        "not_found",
    )
    .await;
    assert_json_error(
        app.get_as_admin("/api/v1/tenants/NOT%20A%20SLUG").await,
        404,
        "not_found",
    )
    .await;
}

async fn bad_list_parameters_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;

    for limit in ["0", "501"] {
        let error = assert_json_error(
            app.get_as_admin(&format!("/api/v1/tenants?limit={limit}"))
                .await,
            422,
            "invalid_field",
        )
        .await;
        assert_eq!(error["error"]["field"], "limit");
    }
    assert_json_error(
        app.get_as_admin("/api/v1/tenants?limit=many").await,
        400,
        "bad_request",
    )
    .await;
    let error = assert_json_error(
        app.get_as_admin("/api/v1/tenants?cursor=%27%3B--").await,
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(error["error"]["field"], "cursor");
}
