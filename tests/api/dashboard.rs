//! The dashboard's page and session: sign-in exchanges an admin token for an
//! HttpOnly, SameSite=Strict, encrypted cookie; the cookie reads (stream,
//! audit search) but never writes; tampered, expired and cross-origin cases
//! are refused. The page itself is driven in a real browser by
//! `tests/browser/dashboard.mjs` (see `.ci/browser`).

use std::time::Duration;

use overseer_actors::ManualClock;
use serde_json::{Value, json};

use crate::audit::{create_tenant, ingest_ok};
use crate::domain::{admin_token, tenant_with_principal};
use crate::helpers::{
    Backend, TcpProxy, TestApp, TestDatabase, on_both_backends, spawn_app_on, spawn_app_with,
    spawn_app_with_clock,
};
use crate::sse;

on_both_backends!(
    the_page_and_its_assets_are_served_with_a_strict_policy,
    an_admin_token_signs_in_and_the_session_reads_but_never_writes,
    bad_tampered_expired_and_cross_origin_sessions_are_refused,
);

fn no_redirects() -> reqwest::Client {
    overseer::adapters::slack::install_tls_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs in with `token`; returns the redirect target and the cookie pair
/// (`name=value`) if one was set, with the raw `Set-Cookie` header.
async fn sign_in(app: &TestApp, token: &str) -> (String, Option<(String, String)>) {
    let response = no_redirects()
        .post(app.url("/admin/session"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let cookie = response.headers().get("set-cookie").map(|v| {
        let raw = v.to_str().unwrap().to_owned();
        let pair = raw.split(';').next().unwrap().to_owned();
        (pair, raw)
    });
    (location, cookie)
}

async fn get_with_cookie(app: &TestApp, path: &str, cookie: &str) -> reqwest::Response {
    no_redirects()
        .get(app.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

async fn the_page_and_its_assets_are_served_with_a_strict_policy(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    for (path, kind) in [
        ("/admin", "text/html"),
        ("/admin/assets/app.js", "text/javascript"),
        ("/admin/assets/app.css", "text/css"),
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert!(headers["content-type"].to_str().unwrap().starts_with(kind));
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'self'") && csp.contains("script-src 'self'"));
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let body = response.text().await.unwrap();
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{path}: nothing external"
        );
    }
    let page = app.get("/admin").await.text().await.unwrap();
    assert!(
        page.contains(r#"<label for="token">"#),
        "the token field is labelled"
    );
    assert!(!page.contains("<script>"), "no inline script");
    assert_eq!(app.get("/admin/assets/other.js").await.status(), 404);
}

async fn an_admin_token_signs_in_and_the_session_reads_but_never_writes(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    let (acme, _, _) = tenant_with_principal(&app, "acme").await;
    create_tenant(&app, "other").await;

    let (location, cookie) = sign_in(&app, &acme.token).await;
    assert_eq!(location, "/admin");
    let (cookie, raw) = cookie.expect("a session cookie");
    let attributes = raw.to_ascii_lowercase();
    assert!(attributes.contains("httponly"), "{raw}");
    assert!(attributes.contains("samesite=strict"), "{raw}");
    assert!(attributes.contains("path=/"), "{raw}");
    assert!(
        !attributes.contains("secure"),
        "plain http: not Secure ({raw})"
    );
    assert!(!raw.contains(&acme.token), "the token is not in the cookie");

    let whoami = get_with_cookie(&app, "/admin/session", &cookie).await;
    assert_eq!(whoami.status(), 200);
    let who: Value = whoami.json().await.unwrap();
    assert_eq!(who, json!({"role": "tenant_admin", "tenant_id": "acme"}));

    // The stream, with the cookie instead of a token: acme's events only.
    let response = no_redirects()
        .get(app.url("/admin/activity/stream?operation=seen"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    drop(response);
    let other = admin_token(&app, "other").await;
    ingest_ok(
        &app,
        &json!([{"tenant_id": "other", "operation": "seen", "success": true}]),
    )
    .await;
    let acme_ids = ingest_ok(
        &app,
        &json!([{"tenant_id": "acme", "operation": "seen", "success": true}]),
    )
    .await;
    let search = get_with_cookie(&app, "/api/v1/audit/logs?operation=seen", &cookie).await;
    assert_eq!(search.status(), 200);
    let page: Value = search.json().await.unwrap();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    assert_eq!(items[0]["log_id"], acme_ids[0].as_str());
    let forbidden = get_with_cookie(&app, "/api/v1/audit/logs?tenant_id=other", &cookie).await;
    assert_eq!(forbidden.status(), 403);
    drop(other);

    // Writes need the bearer token, whatever the cookie.
    let write = no_redirects()
        .post(app.url("/api/v1/audit/events"))
        .header("cookie", &cookie)
        .json(&json!([{"tenant_id": "acme", "operation": "sneaky", "success": true}]))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 401);

    // Sign-in and sign-out are audited.
    let ended = no_redirects()
        .post(app.url("/admin/session/end"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 303);
    let removal = ended.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(removal.contains("max-age=0"), "{removal}");
    let mut found = Value::Null;
    for _ in 0..50 {
        found = app
            .get_json_as_admin(
                "/api/v1/audit/logs?operation=admin_session_started,admin_session_ended",
            )
            .await;
        if found["items"].as_array().unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ops: Vec<&str> = found["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["operation"].as_str().unwrap())
        .collect();
    assert_eq!(
        ops,
        ["admin_session_ended", "admin_session_started"],
        "{found}"
    );

    // Signed out means ended on the server: a copy of the cookie kept from
    // before is refused everywhere it used to work.
    for path in [
        "/admin/session",
        "/api/v1/audit/logs?operation=seen",
        "/admin/activity/stream?operation=seen",
    ] {
        let replayed = get_with_cookie(&app, path, &cookie).await;
        assert_eq!(replayed.status(), 401, "{path}");
    }
    // A new sign-in with the same token is a new session, and works.
    let (_, again) = sign_in(&app, &acme.token).await;
    let again = get_with_cookie(&app, "/admin/session", &again.unwrap().0).await;
    assert_eq!(again.status(), 200);

    // The super admin signs in too.
    let (_, cookie) = sign_in(&app, &app.admin_token).await;
    let who: Value = get_with_cookie(&app, "/admin/session", &cookie.unwrap().0)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(who["role"], "super_admin");
}

async fn bad_tampered_expired_and_cross_origin_sessions_are_refused(backend: Backend) {
    let clock = ManualClock::new(chrono::Utc::now());
    let app = spawn_app_with_clock(backend, &[("SESSION_TTL", "1h")], clock.clone()).await;
    let (acme, buyer, _) = tenant_with_principal(&app, "acme").await;

    assert_eq!(
        sign_in(&app, "not-a-token").await,
        ("/admin?error=invalid".into(), None)
    );
    assert_eq!(sign_in(&app, "").await.0, "/admin?error=missing");
    assert_eq!(
        sign_in(&app, &buyer.token).await,
        ("/admin?error=not_admin".into(), None),
        "a principal (buyer) cannot sign in"
    );

    let cross = no_redirects()
        .post(app.url("/admin/session"))
        .header("origin", "http://evil.example")
        .form(&[("token", acme.token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    assert!(cross.headers().get("set-cookie").is_none());

    let (_, cookie) = sign_in(&app, &acme.token).await;
    let (cookie, _) = cookie.unwrap();
    assert_eq!(
        get_with_cookie(&app, "/admin/session", &cookie)
            .await
            .status(),
        200
    );

    // One character changed: the cookie no longer opens.
    let (name, value) = cookie.split_once('=').unwrap();
    let mut bytes = value.as_bytes().to_vec();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{name}={}", String::from_utf8(bytes).unwrap());
    assert_eq!(
        get_with_cookie(&app, "/admin/session", &tampered)
            .await
            .status(),
        401
    );
    let stream = sse::open(&app.url("/admin/activity/stream"), None, None).await;
    assert_eq!(stream.err().map(|e| e.0), Some(401), "no cookie, no stream");

    // Past its lifetime the session is over.
    clock.advance(Duration::from_secs(3_601));
    assert_eq!(
        get_with_cookie(&app, "/admin/session", &cookie)
            .await
            .status(),
        401
    );
}

mod postgres {
    use super::*;

    /// A sign-out the database cannot record is refused with a 503 JSON error
    /// and the cookie is kept (the session still works, so the user knows it
    /// was not ended); once the database is back, sign-out ends it. PostgreSQL,
    /// cut off through a proxy.
    #[actix_web::test]
    async fn a_sign_out_the_database_cannot_record_is_refused_and_the_cookie_kept() {
        crate::helpers::run_test(async move {
            let db = TestDatabase::new(Backend::Postgres).await;
            let proxy = TcpProxy::start("127.0.0.1:5432".parse().unwrap()).await;
            let url = db.url_through(&proxy);
            let app = spawn_app_on(
                db,
                &url,
                &[
                    ("DATABASE_CONNECT_TIMEOUT", "1s"),
                    ("DATABASE_QUERY_TIMEOUT", "2s"),
                ],
            )
            .await;
            let (_, cookie) = sign_in(&app, &app.admin_token).await;
            let (cookie, _) = cookie.expect("a session cookie");
            let sign_out = || {
                no_redirects()
                    .post(app.url("/admin/session/end"))
                    .header("cookie", &cookie)
                    .send()
            };

            proxy.cut();
            // The session cannot be checked: an error, not "signed out".
            let unchecked = get_with_cookie(&app, "/admin/session", &cookie).await;
            assert_eq!(unchecked.status(), 503);
            let refused = sign_out().await.unwrap();
            assert_eq!(refused.status(), 503);
            assert!(
                refused.headers().get("set-cookie").is_none(),
                "the cookie is kept"
            );
            let body: Value = refused.json().await.unwrap();
            assert!(
                ["database_unavailable", "database_timeout"]
                    .contains(&body["error"]["code"].as_str().unwrap()),
                "{body}"
            );

            proxy.restore();
            app.wait_for_health(200, Duration::from_secs(15)).await;
            assert_eq!(
                get_with_cookie(&app, "/admin/session", &cookie)
                    .await
                    .status(),
                200,
                "not ended"
            );
            assert_eq!(sign_out().await.unwrap().status(), 303);
            assert_eq!(
                get_with_cookie(&app, "/admin/session", &cookie)
                    .await
                    .status(),
                401,
                "ended"
            );
        })
        .await;
    }
}
