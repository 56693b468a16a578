//! `/health` tells the truth when the database is unreachable, the rest of the
//! service keeps answering, and health returns when the database does.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::helpers::{
    Backend, TcpProxy, TestApp, TestDatabase, assert_json_error, closed_port, spawn_app_on,
};

/// Asserts the 503 report (within 3 s) and that nothing in it names the
/// credentials or the URL.
async fn assert_unhealthy_without_secrets(app: &TestApp, secrets: &[&str]) {
    let started = Instant::now();
    let response = app.get("/health").await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(3), "/health took {elapsed:?}");
    assert_eq!(response.status().as_u16(), 503);
    let text = response.text().await.unwrap();
    for secret in secrets {
        assert!(!text.contains(secret), "{secret:?} leaked into {text}");
    }
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["database"], "connection failed");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    assert_eq!(
        body["components"]["database"]["status"],
        "connection failed"
    );
}

/// While the database is away, the service still answers everything else.
async fn assert_still_serving(app: &TestApp) {
    assert_eq!(app.get("/health/live").await.status().as_u16(), 200);
    assert_json_error(app.get("/no/such/route").await, 404, "not_found").await;
    let response = app.get_as_admin("/api/v1/tenants").await;
    assert_eq!(response.headers()["retry-after"], "5");
    assert_json_error(response, 503, "database_unavailable").await;
}

mod postgres {
    use super::*;

    #[actix_web::test]
    async fn a_port_nothing_listens_on_is_reported_unhealthy() {
        crate::helpers::run_test(async move {
            let db = TestDatabase::new(Backend::Postgres).await;
            let url = format!(
                "postgres://overseer_user:s3cr3t-pw@127.0.0.1:{}/overseer_secret_db",
                closed_port()
            );
            let app = spawn_app_on(db, &url, &[("DATABASE_CONNECT_TIMEOUT", "1s")]).await;

            assert_unhealthy_without_secrets(
                &app,
                &["s3cr3t-pw", "overseer_user", "overseer_secret_db"],
            )
            .await;
            assert_still_serving(&app).await;
        })
        .await;
    }

    #[actix_web::test]
    async fn a_database_that_goes_away_and_comes_back_is_followed_by_health() {
        crate::helpers::run_test(async move {
            let db = TestDatabase::new(Backend::Postgres).await;
            let upstream: SocketAddr = "127.0.0.1:5432".parse().unwrap();
            let proxy = TcpProxy::start(upstream).await;
            // Unreachable from the start: the service starts anyway.
            proxy.cut();
            let url = db.url_through(&proxy);
            let app = spawn_app_on(db, &url, &[("DATABASE_CONNECT_TIMEOUT", "1s")]).await;
            assert_unhealthy_without_secrets(&app, &[&url]).await;
            assert_still_serving(&app).await;

            // It arrives: the schema is migrated in the background and health follows.
            proxy.restore();
            let body = app.wait_for_health(200, Duration::from_secs(15)).await;
            assert_eq!(body["components"]["database"]["schema"], "current");
            assert_eq!(
                app.get_as_admin("/api/v1/tenants").await.status().as_u16(),
                200
            );

            // It goes away while the service runs.
            proxy.cut();
            assert_unhealthy_without_secrets(&app, &[&url]).await;
            assert_still_serving(&app).await;

            // And comes back.
            proxy.restore();
            app.wait_for_health(200, Duration::from_secs(15)).await;
            assert_eq!(
                app.get_as_admin("/api/v1/tenants").await.status().as_u16(),
                200
            );
        })
        .await;
    }
}

mod sqlite {
    use super::*;

    /// SQLite has no server to lose; what applies is a database file that cannot
    /// be opened (its folder cannot be created), and that becomes possible later.
    #[actix_web::test]
    async fn a_file_that_cannot_be_opened_is_reported_unhealthy_until_it_can() {
        crate::helpers::run_test(async move {
            let db = TestDatabase::new(Backend::Sqlite).await;
            let parent = tempfile::tempdir().unwrap();
            let blocker = parent.path().join("blocked");
            std::fs::write(&blocker, b"a file where the data folder should be").unwrap();
            let url = format!("sqlite://{}/overseer.db", blocker.display());
            let app = spawn_app_on(db, &url, &[("DATABASE_CONNECT_TIMEOUT", "1s")]).await;

            assert_unhealthy_without_secrets(&app, &[]).await;
            assert_still_serving(&app).await;

            std::fs::remove_file(&blocker).unwrap();
            let body = app.wait_for_health(200, Duration::from_secs(15)).await;
            assert_eq!(body["components"]["database"]["schema"], "current");
            assert!(blocker.join("overseer.db").exists());
        })
        .await;
    }
}
