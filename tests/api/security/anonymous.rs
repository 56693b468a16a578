//! Issue 22, item 3: an anonymous client must not write into a tenant's
//! chain by naming the tenant in a path (30 failed rows and a
//! `high_error_rate` alert for globex, before), and missing credentials are
//! a failed authentication like a made-up token.
//!
//! The attacker is a real, distinct peer: a client bound to 127.0.0.2 (or
//! .3, .4), talking to the service on 127.0.0.1.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use overseer::store::AuditQuery;
use overseer_actors::audit::CommittedEvent;
use serde_json::json;

use crate::audit::{create_tenant, stored};
use crate::domain::admin_token;
use crate::helpers::{Backend, TestApp, on_both_backends, spawn_app};

on_both_backends!(
    thirty_anonymous_requests_naming_a_tenant_write_nothing_in_its_chain_and_are_throttled,
    a_refused_token_is_recorded_in_its_own_tenants_chain_and_an_unknown_one_in_the_systems,
    public_routes_the_sign_in_probe_and_a_lapsed_session_are_not_failed_authentications,
);

/// A client whose connections come from `source`.
fn peer(source: &str) -> reqwest::Client {
    let source: IpAddr = source.parse().unwrap();
    reqwest::Client::builder()
        .local_address(source)
        .build()
        .unwrap()
}

/// The status and `Retry-After` of a response.
fn answer(response: &reqwest::Response) -> (u16, Option<u64>) {
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (response.status().as_u16(), retry_after)
}

/// Every row of `tenant`'s chain.
async fn chain(app: &TestApp, tenant: &str) -> Vec<CommittedEvent> {
    app.store
        .audit_logs(&AuditQuery {
            tenant_id: Some(tenant.to_owned()),
            limit: 1_000_000,
            ..AuditQuery::default()
        })
        .await
        .unwrap()
}

/// The rows of `operation` whose `details.path_tenant_id` is `tenant`, once
/// there are `n` of them (10 s at most: the middleware's rows go through the
/// audit batcher).
async fn naming(app: &TestApp, operation: &str, tenant: &str, n: usize) -> Vec<CommittedEvent> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows: Vec<CommittedEvent> = stored(&app.store, &[operation])
            .await
            .into_iter()
            .filter(|row| row.event.details["path_tenant_id"] == tenant)
            .collect();
        if rows.len() >= n || Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn thirty_anonymous_requests_naming_a_tenant_write_nothing_in_its_chain_and_are_throttled(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    create_tenant(&app, "globex").await;
    let before = chain(&app, "globex").await.len();
    let attacker = peer("127.0.0.2");

    let mut answers = Vec::new();
    for _ in 0..30 {
        let response = attacker
            .post(app.url("/api/v1/tenants/globex/admin-tokens"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        answers.push(answer(&response));
    }

    // Throttled like made-up tokens (`SECURITY_FAILED_AUTH_THRESHOLD`, 5):
    // the first five are 401 and start the cool-down, the rest are 429.
    assert!(
        answers[..5].iter().all(|a| *a == (401, None)),
        "{answers:?}"
    );
    assert!(
        answers[5..]
            .iter()
            .all(|(status, retry)| *status == 429 && retry.is_some_and(|s| s >= 1)),
        "{answers:?}"
    );

    // All 30 are in the system chain, naming globex as a detail.
    let recorded = naming(&app, "create_admin_token", "globex", 30).await;
    assert_eq!(recorded.len(), 30);
    for row in &recorded {
        assert_eq!(row.event.tenant_id, None, "{:?}", row.event);
        assert_eq!(row.event.principal_id, None);
        assert_eq!(row.event.ip_address.as_deref(), Some("127.0.0.2"));
        assert!(!row.event.success);
    }
    // None in globex's: nothing for its `high_error_rate` to count (the rule
    // counts tenants' rows only).
    assert_eq!(chain(&app, "globex").await.len(), before);

    // The address was flagged as for bad tokens.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let flagged = stored(&app.store, &["security_violation"])
            .await
            .into_iter()
            .any(|row| {
                row.event.details["type"] == "repeated_failed_auth"
                    && row.event.ip_address.as_deref() == Some("127.0.0.2")
            });
        if flagged {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no repeated_failed_auth violation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A valid token from the same address is still served.
    let served = attacker
        .post(app.url("/api/v1/tenants/globex/admin-tokens"))
        .bearer_auth(&app.admin_token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status().as_u16(), 201);
}

async fn a_refused_token_is_recorded_in_its_own_tenants_chain_and_an_unknown_one_in_the_systems(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    create_tenant(&app, "acme").await;
    create_tenant(&app, "globex").await;
    let acme_admin = admin_token(&app, "acme").await.token;
    let root = app.client.clone();
    let listed: serde_json::Value = root
        .get(app.url("/api/v1/tenants/acme/tokens"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token_id = listed["items"][0]["token_id"].as_str().unwrap().to_owned();
    let revoked = root
        .post(app.url(&format!("/api/v1/tenants/acme/tokens/{token_id}/revoke")))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status().as_u16(), 200);
    let globex_before = chain(&app, "globex").await.len();

    // acme's revoked token, and a made-up one, against a globex path.
    let client = peer("127.0.0.3");
    for token in [acme_admin.as_str(), "ovs_made_up"] {
        let response = client
            .get(app.url("/api/v1/tenants/globex"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 401);
    }

    let recorded = naming(&app, "get_tenant", "globex", 2).await;
    let chains: Vec<Option<&str>> = recorded
        .iter()
        .map(|row| row.event.tenant_id.as_deref())
        .collect();
    // acme's own credential: acme's chain; the unknown one: the system's.
    assert_eq!(chains.len(), 2, "{recorded:?}");
    assert!(chains.contains(&Some("acme")), "{chains:?}");
    assert!(chains.contains(&None), "{chains:?}");
    assert_eq!(chain(&app, "globex").await.len(), globex_before);
}

async fn public_routes_the_sign_in_probe_and_a_lapsed_session_are_not_failed_authentications(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let browser = peer("127.0.0.4");
    for _ in 0..10 {
        for path in [
            "/health",
            "/api/openapi.json",
            "/admin",
            "/admin/assets/app.js",
        ] {
            let status = browser.get(app.url(path)).send().await.unwrap().status();
            assert!(status.as_u16() < 500 && status.as_u16() != 429, "{path}");
        }
        // The dashboard asks who it is before anyone signs in.
        let probe = browser.get(app.url("/admin/session")).send().await.unwrap();
        assert_eq!(probe.status().as_u16(), 401);
        // A browser whose session lapsed reads with a cookie that no longer
        // opens.
        let lapsed = browser
            .get(app.url("/api/v1/audit/logs"))
            .header("Cookie", "overseer_session=lapsed")
            .send()
            .await
            .unwrap();
        assert_eq!(lapsed.status().as_u16(), 401);
    }

    // None of those 60 counted: four anonymous requests to a route that
    // demands credentials are still 401, the fifth starts the cool-down.
    let mut answers = Vec::new();
    for _ in 0..6 {
        let response = browser
            .get(app.url("/api/v1/tenants"))
            .send()
            .await
            .unwrap();
        answers.push(answer(&response));
    }
    assert!(
        answers[..5].iter().all(|a| *a == (401, None)),
        "{answers:?}"
    );
    assert_eq!(answers[5].0, 429, "{answers:?}");
}
