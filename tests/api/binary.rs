//! The real binary, as an operator runs it.

use std::time::{Duration, Instant};

use crate::helpers::{Backend, BinaryClient, ServiceProcess, TestDatabase, on_both_backends};

mod sqlite {
    use super::*;

    /// README: `cargo run` on a fresh clone serves on SQLite with no setup, and
    /// SIGTERM stops it cleanly within 10 s.
    #[actix_web::test]
    async fn with_no_configuration_it_serves_on_sqlite_and_stops_on_sigterm() {
        let workdir = tempfile::tempdir().unwrap();
        // Port 0 instead of the default 8080, which may be taken on this machine.
        let mut service = ServiceProcess::start(workdir.path(), &[("BIND_ADDR", "127.0.0.1:0")]);
        let port = service.wait_for_port(Duration::from_secs(20)).await;

        let api = BinaryClient::new(&format!("http://127.0.0.1:{port}"));
        let response = api.get("/health").await;
        assert_eq!(response.status().as_u16(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["database"], "connected");
        assert_eq!(body["components"]["database"]["backend"], "sqlite");
        assert!(
            workdir.path().join("data/overseer.db").exists(),
            "default database file"
        );

        // Logs are JSON lines with the documented fields; the effective config is
        // logged once; the generated admin token is printed once, on stderr only.
        let stdout = service.stdout.lock().unwrap().clone();
        for line in &stdout {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
            for field in ["timestamp", "level", "target", "message"] {
                assert!(value.get(field).is_some(), "{field} missing in {line}");
            }
        }
        assert_eq!(
            stdout
                .iter()
                .filter(|l| l.contains("effective configuration"))
                .count(),
            1
        );
        let stderr = service.stderr.lock().unwrap().clone();
        let token_lines: Vec<_> = stderr
            .iter()
            .filter(|l| l.contains("generated one"))
            .collect();
        assert_eq!(token_lines.len(), 1, "{stderr:?}");
        let token = token_lines[0].rsplit(' ').next().unwrap();
        assert_eq!(token.len(), 64);
        assert!(
            !stdout.iter().any(|l| l.contains(token)),
            "the token leaked into the logs"
        );

        let stopping = Instant::now();
        service.send_sigterm();
        let status = service
            .wait_exit(Duration::from_secs(10))
            .await
            .expect("exits within 10 s");
        assert!(status.success(), "exit status {status}");
        assert!(stopping.elapsed() < Duration::from_secs(10));
        assert!(service.all_output().contains("\"stopped\""));
    }

    /// Panics are logged as structured events, not dumped on stderr, and the
    /// process keeps serving after an actor panics.
    #[actix_web::test]
    async fn an_actor_panic_is_a_structured_log_event_and_the_service_serves_on() {
        let workdir = tempfile::tempdir().unwrap();
        let token = "a-test-admin-token-of-at-least-32-characters";
        let mut service = ServiceProcess::start(
            workdir.path(),
            &[
                ("BIND_ADDR", "127.0.0.1:0"),
                ("ADMIN_TOKEN", token),
                ("ENABLE_FAULT_INJECTION", "true"),
                ("DATABASE_WATCH_INTERVAL", "50ms"),
            ],
        );
        let port = service.wait_for_port(Duration::from_secs(20)).await;
        let client = crate::helpers::http_client();
        let armed = client
            .post(format!("http://127.0.0.1:{port}/admin/debug/faults"))
            .bearer_auth(token)
            .json(&serde_json::json!({"actor": "database_watch", "kind": "panic"}))
            .send()
            .await
            .unwrap();
        assert_eq!(armed.status().as_u16(), 202);

        let deadline = Instant::now() + Duration::from_secs(5);
        while !service.all_output().contains("actor restarting") {
            assert!(
                Instant::now() < deadline,
                "no restart: {}",
                service.all_output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let api = BinaryClient::new(&format!("http://127.0.0.1:{port}"));
        assert_eq!(api.get("/health").await.status().as_u16(), 200);

        service.send_sigterm();
        assert!(
            service
                .wait_exit(Duration::from_secs(10))
                .await
                .unwrap()
                .success()
        );
        let stdout = service.stdout.lock().unwrap().clone();
        let panic_event = stdout
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|e| e["message"] == "panic")
            .expect("a structured panic event");
        assert_eq!(panic_event["level"], "ERROR");
        assert!(
            panic_event["panic.message"]
                .as_str()
                .unwrap()
                .contains("injected panic fault")
        );
        assert!(
            panic_event["panic.location"]
                .as_str()
                .unwrap()
                .contains(".rs:")
        );
        let stderr = service.stderr.lock().unwrap().join("\n");
        assert!(
            !stderr.contains("panicked at"),
            "a bare panic dump on stderr: {stderr}"
        );
    }
}

mod postgres {
    use super::*;

    /// README: `DATABASE_URL=postgres://...` runs the same binary on PostgreSQL and
    /// applies the migrations.
    #[actix_web::test]
    async fn with_a_postgres_url_it_serves_on_postgres_and_applies_migrations() {
        let db = TestDatabase::new(Backend::Postgres).await;
        let workdir = tempfile::tempdir().unwrap();
        // Trust authentication ignores the password, so the URL can carry one
        // that must never reach the output.
        let url = db.url.replacen("postgres@", "postgres:pw-hunter2@", 1);
        let mut service = ServiceProcess::start(
            workdir.path(),
            &[
                ("BIND_ADDR", "127.0.0.1:0"),
                ("DATABASE_URL", &url),
                ("LOG_LEVEL", "debug"),
            ],
        );
        let port = service.wait_for_port(Duration::from_secs(20)).await;

        let api = BinaryClient::new(&format!("http://127.0.0.1:{port}"));
        let body: serde_json::Value = api.get("/health").await.json().await.unwrap();
        assert_eq!(body["database"], "connected");
        assert_eq!(body["components"]["database"]["backend"], "postgres");

        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
            .await
            .unwrap();
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' ORDER BY table_name",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        for table in ["_sqlx_migrations", "audit_logs", "principals", "tenants"] {
            assert!(
                tables.iter().any(|t| t == table),
                "{table} missing: {tables:?}"
            );
        }
        assert!(
            !workdir.path().join("data").exists(),
            "no SQLite file on PostgreSQL"
        );

        service.send_sigterm();
        let status = service
            .wait_exit(Duration::from_secs(10))
            .await
            .expect("exits within 10 s");
        assert!(status.success());
        let output = service.all_output();
        assert!(
            output.contains("postgres://****@127.0.0.1:5432/"),
            "the masked URL is logged"
        );
        assert!(
            !output.contains("hunter2"),
            "the password leaked into the output"
        );
    }
}

#[actix_web::test]
async fn bad_configuration_stops_start_up_naming_the_variable() {
    for (var, value) in [
        ("BIND_ADDR", "nonsense"),
        ("DATABASE_QUERY_TIMEOUT", "-1"),
        ("DATABASE_URL", "mysql://nope"),
        ("ENVIRONMENT", "production"),
    ] {
        let workdir = tempfile::tempdir().unwrap();
        let mut service = ServiceProcess::start(workdir.path(), &[(var, value)]);
        let status = service
            .wait_exit(Duration::from_secs(10))
            .await
            .expect("exits");
        assert!(!status.success(), "{var}={value} was accepted");
        assert_eq!(status.code(), Some(78), "EX_CONFIG for {var}");
        let stderr = service.stderr.lock().unwrap().clone();
        assert_eq!(stderr.len(), 1, "one line: {stderr:?}");
        let expected_var = if var == "ENVIRONMENT" {
            "ADMIN_TOKEN"
        } else {
            var
        };
        assert!(stderr[0].contains(expected_var), "{var}: {stderr:?}");
        assert!(
            !workdir.path().join("data").exists(),
            "nothing created for {var}"
        );
    }
}

on_both_backends!(sigterm_lets_an_in_flight_request_finish);

/// SIGTERM lets a request that is in flight finish, then exits 0. The request
/// is held in flight by a database lock the test owns.
async fn sigterm_lets_an_in_flight_request_finish(backend: Backend) {
    use sqlx::{Connection, Executor};

    let db = TestDatabase::new(backend).await;
    let workdir = tempfile::tempdir().unwrap();
    let token = "a-test-admin-token-of-at-least-32-characters";
    let (mut service, base) = ServiceProcess::serve(workdir.path(), &db.url, token, &[]).await;
    let url = format!("{base}/api/v1/tenants");
    let client = crate::helpers::http_client();

    // Take the lock the request will need.
    let release: Box<dyn FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>> =
        match backend {
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
                conn.execute("BEGIN IMMEDIATE").await.unwrap();
                Box::new(move || {
                    Box::pin(async move {
                        conn.execute("ROLLBACK").await.unwrap();
                    })
                })
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
                conn.execute("BEGIN").await.unwrap();
                conn.execute("LOCK TABLE tenants IN ACCESS EXCLUSIVE MODE")
                    .await
                    .unwrap();
                Box::new(move || {
                    Box::pin(async move {
                        conn.execute("ROLLBACK").await.unwrap();
                    })
                })
            }
        };
    let in_flight = {
        let client = client.clone();
        let url = url.clone();
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&serde_json::json!({"id": "late", "name": "Late"}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !in_flight.is_finished(),
        "the request should be waiting on the lock"
    );

    let stopping = Instant::now();
    service.send_sigterm();
    tokio::time::sleep(Duration::from_millis(700)).await;
    // New connections are refused while the in-flight request drains.
    assert!(client.get(format!("{base}/health")).send().await.is_err());
    release().await;

    assert_eq!(
        in_flight.await.unwrap().unwrap(),
        201,
        "the in-flight request finished"
    );
    let status = service
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("exits");
    assert!(status.success(), "{status}");
    assert!(stopping.elapsed() < Duration::from_secs(10));
}
