//! Issue 22, item 5: a leaked admin, ingest or adapter token could not be
//! revoked on its own (only by deactivating its whole tenant). Each kind is
//! now listed (never its secret), revoked and rotated by the super admin;
//! the token is refused from its next request on, and each change is in the
//! tenant's chain, marked as a privilege change.

use reqwest::Method;
use serde_json::{Value, json};

use crate::audit::{create_tenant, event, stored};
use crate::domain::{As, admin_token};
use crate::helpers::{Backend, TestApp, on_both_backends, spawn_app};

on_both_backends!(
    every_kind_of_tenant_token_is_listed_without_its_secret,
    a_revoked_token_of_every_kind_is_refused_at_once_and_audited_as_a_privilege_change,
    a_rotated_token_of_every_kind_is_refused_at_once_and_its_replacement_works,
    another_tenants_token_is_404_and_only_the_super_admin_manages_tokens,
);

const KINDS: [&str; 3] = ["admin", "ingest", "adapter"];

/// A token the super admin issued: (id, secret).
async fn issue(app: &TestApp, tenant: &str, kind: &str) -> (String, String) {
    let root = As::admin(app);
    let created = root
        .expect(
            201,
            root.post(
                &format!("/api/v1/tenants/{tenant}/{kind}-tokens"),
                &json!({}),
            )
            .await,
        )
        .await;
    (
        created["token_id"].as_str().unwrap().to_owned(),
        created["token"].as_str().unwrap().to_owned(),
    )
}

/// One request only a valid token of `kind` gets past authentication with:
/// its status (401 when the token is refused).
async fn use_token(app: &TestApp, kind: &str, token: &str) -> u16 {
    let caller = As::token(app, token);
    let response = match kind {
        // 200: the tenant's principals.
        "admin" => caller.get("/api/v1/principals").await,
        // 202: one event into its tenant's chain.
        "ingest" => caller.post("/api/v1/audit/events", &event("acme", "probe", 1)).await,
        // 404: an authenticated adapter asking about a buy that is not there.
        _ => {
            caller
                .post(
                    "/api/v1/media-buys/mb_missing/delivery",
                    &json!({"rows": [{"package_id": "p", "date": "2027-03-02", "impressions": 1, "clicks": 0, "spend": 0.1}]}),
                )
                .await
        }
    };
    response.status().as_u16()
}

/// What a valid token of `kind` gets from [`use_token`].
fn served(kind: &str) -> u16 {
    match kind {
        "admin" => 200,
        "ingest" => 202,
        _ => 404,
    }
}

async fn every_kind_of_tenant_token_is_listed_without_its_secret(backend: Backend) {
    let app = spawn_app(backend).await;
    create_tenant(&app, "acme").await;
    let mut issued = Vec::new();
    for kind in KINDS {
        issued.push((kind, issue(&app, "acme", kind).await));
    }
    let root = As::admin(&app);
    let response = root.get("/api/v1/tenants/acme/tokens").await;
    assert_eq!(response.status().as_u16(), 200);
    let text = response.text().await.unwrap();
    let listed: Value = serde_json::from_str(&text).unwrap();
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{listed}");
    for (kind, (id, secret)) in &issued {
        let item = items.iter().find(|i| i["token_id"] == *id).unwrap();
        assert_eq!(item["kind"], *kind);
        assert_eq!(item["tenant_id"], "acme");
        assert!(item["created_at"].is_string());
        assert!(item["revoked_at"].is_null());
        assert!(item.get("token").is_none() && item.get("token_hash").is_none());
        assert!(!text.contains(secret.as_str()), "the secret is listed");
        let hash = overseer::domain::TokenHash::of(secret).to_hex();
        assert!(!text.contains(&hash), "the hash is listed");
    }

    // Paginated by id.
    let first = root
        .expect(200, root.get("/api/v1/tenants/acme/tokens?limit=2").await)
        .await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap();
    let rest = root
        .expect(
            200,
            root.get(&format!(
                "/api/v1/tenants/acme/tokens?limit=2&cursor={cursor}"
            ))
            .await,
        )
        .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert!(rest.get("next_cursor").is_none());
}

async fn a_revoked_token_of_every_kind_is_refused_at_once_and_audited_as_a_privilege_change(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    create_tenant(&app, "acme").await;
    let root = As::admin(&app);
    for kind in KINDS {
        let (id, secret) = issue(&app, "acme", kind).await;
        assert_eq!(use_token(&app, kind, &secret).await, served(kind), "{kind}");

        let revoked = root
            .expect(
                200,
                root.post(
                    &format!("/api/v1/tenants/acme/tokens/{id}/revoke"),
                    &json!({}),
                )
                .await,
            )
            .await;
        assert_eq!(revoked["token_id"], id.as_str());
        assert!(revoked["revoked_at"].is_string());
        assert_eq!(use_token(&app, kind, &secret).await, 401, "{kind}");

        // Again: the same answer, nothing more written.
        let again = root
            .expect(
                200,
                root.post(
                    &format!("/api/v1/tenants/acme/tokens/{id}/revoke"),
                    &json!({}),
                )
                .await,
            )
            .await;
        assert_eq!(again["revoked_at"], revoked["revoked_at"]);
    }

    // One row per revocation, in acme's chain, marked, naming no secret.
    // (The repeated or refused attempts are the middleware's plain rows.)
    let rows: Vec<_> = stored(&app.store, &["revoke_tenant_token"])
        .await
        .into_iter()
        .filter(|r| r.event.details["security_relevant"] == true)
        .collect();
    let changes: Vec<&str> = rows
        .iter()
        .map(|r| r.event.details["privilege_change"].as_str().unwrap())
        .collect();
    assert_eq!(
        changes,
        [
            "admin_token_revoked",
            "ingest_token_revoked",
            "adapter_token_revoked"
        ]
    );
    for row in &rows {
        assert_eq!(row.event.tenant_id.as_deref(), Some("acme"));
        assert_eq!(row.event.principal_id.as_deref(), Some("super_admin"));
        assert_eq!(row.event.details["security_relevant"], true);
        assert!(row.event.success);
    }

    // The last admin token may go: the super admin issues another.
    let (_, fresh) = issue(&app, "acme", "admin").await;
    assert_eq!(use_token(&app, "admin", &fresh).await, 200);
}

async fn a_rotated_token_of_every_kind_is_refused_at_once_and_its_replacement_works(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    create_tenant(&app, "acme").await;
    let root = As::admin(&app);
    for kind in KINDS {
        let (id, old) = issue(&app, "acme", kind).await;
        let rotated = root
            .expect(
                201,
                root.post(
                    &format!("/api/v1/tenants/acme/tokens/{id}/rotate"),
                    &json!({}),
                )
                .await,
            )
            .await;
        assert_eq!(rotated["kind"], kind);
        assert_eq!(rotated["replaces"], id.as_str());
        assert_ne!(rotated["token_id"], id.as_str());
        let new = rotated["token"].as_str().unwrap();
        assert_ne!(new, old);

        assert_eq!(use_token(&app, kind, &old).await, 401, "{kind}: old");
        assert_eq!(
            use_token(&app, kind, new).await,
            served(kind),
            "{kind}: new"
        );

        // The replaced token is revoked, and is not rotated again.
        root.expect(
            409,
            root.post(
                &format!("/api/v1/tenants/acme/tokens/{id}/rotate"),
                &json!({}),
            )
            .await,
        )
        .await;
    }

    // (The repeated or refused attempts are the middleware's plain rows.)
    let rows: Vec<_> = stored(&app.store, &["rotate_tenant_token"])
        .await
        .into_iter()
        .filter(|r| r.event.details["security_relevant"] == true)
        .collect();
    let changes: Vec<&str> = rows
        .iter()
        .map(|r| r.event.details["privilege_change"].as_str().unwrap())
        .collect();
    assert_eq!(
        changes,
        [
            "admin_token_rotated",
            "ingest_token_rotated",
            "adapter_token_rotated"
        ]
    );
    for row in &rows {
        assert_eq!(row.event.tenant_id.as_deref(), Some("acme"));
        assert_eq!(row.event.details["security_relevant"], true);
        assert!(row.event.details["replaces"].is_string());
        assert!(row.event.details["token_id"].is_string());
    }
    let everything = serde_json::to_string(
        &stored(&app.store, &[])
            .await
            .iter()
            .map(|r| r.event.details.clone())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(!everything.contains("ovs_"), "a token in the trail");

    // An expiry in the past is refused; one in the future is kept.
    let (id, _) = issue(&app, "acme", "ingest").await;
    let path = format!("/api/v1/tenants/acme/tokens/{id}/rotate");
    root.expect(
        422,
        root.post(&path, &json!({"expires_at": "2020-01-01T00:00:00Z"}))
            .await,
    )
    .await;
    let renewed = root
        .expect(
            201,
            root.post(&path, &json!({"expires_at": "2099-01-01T00:00:00Z"}))
                .await,
        )
        .await;
    assert_eq!(renewed["expires_at"], "2099-01-01T00:00:00Z");
}

async fn another_tenants_token_is_404_and_only_the_super_admin_manages_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    create_tenant(&app, "acme").await;
    create_tenant(&app, "globex").await;
    let acme_admin = admin_token(&app, "acme").await;
    let (globex_token, globex_secret) = issue(&app, "globex", "ingest").await;
    let root = As::admin(&app);

    // globex's token through acme's path: as if it did not exist.
    for action in ["revoke", "rotate"] {
        let path = format!("/api/v1/tenants/acme/tokens/{globex_token}/{action}");
        root.expect(404, root.post(&path, &json!({})).await).await;
        let path = format!("/api/v1/tenants/nowhere/tokens/{globex_token}/{action}");
        root.expect(404, root.post(&path, &json!({})).await).await;
    }
    root.expect(404, root.get("/api/v1/tenants/nowhere/tokens").await)
        .await;
    let listed = root
        .expect(200, root.get("/api/v1/tenants/acme/tokens").await)
        .await;
    assert!(!listed.to_string().contains(&globex_token));

    // A tenant admin manages none, not even its own tenant's.
    for (method, path) in [
        (Method::GET, "/api/v1/tenants/acme/tokens".to_owned()),
        (Method::GET, "/api/v1/tenants/globex/tokens".to_owned()),
        (
            Method::POST,
            format!("/api/v1/tenants/globex/tokens/{globex_token}/revoke"),
        ),
        (
            Method::POST,
            format!("/api/v1/tenants/globex/tokens/{globex_token}/rotate"),
        ),
    ] {
        let response = acme_admin.send(method, &path, Some(&json!({}))).await;
        assert_eq!(response.status().as_u16(), 403, "{path}");
    }
    // Nor does the token itself, nor anyone without a token.
    let own = As::token(&app, &globex_secret);
    let path = format!("/api/v1/tenants/globex/tokens/{globex_token}/revoke");
    assert_eq!(own.post(&path, &json!({})).await.status().as_u16(), 403);
    let anonymous = app.client.post(app.url(&path)).send().await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);

    // globex's token still works: nothing above touched it.
    let probe = own
        .post("/api/v1/audit/events", &event("globex", "probe", 1))
        .await;
    assert_eq!(probe.status().as_u16(), 202);
}
