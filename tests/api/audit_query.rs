//! Reading the trail: filters and cursor pagination against an in-memory
//! model, streamed exports, and secrets that must not leak anywhere.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use overseer::store::Store;
use overseer_actors::audit::{AuditEvent, CommittedEvent};
use serde_json::{Value, json};

use crate::audit::wait_for_rows;
use crate::helpers::{
    Backend, ServiceProcess, TestApp, TestDatabase, config_from, on_both_backends, spawn_app,
    spawn_app_with,
};

on_both_backends!(
    every_filter_and_the_cursor_return_exactly_the_right_rows,
    an_export_of_100_000_rows_streams_with_bounded_memory,
    secrets_never_reach_the_database_the_files_or_stdout,
    audit_metrics_are_exported,
);

const OPERATIONS: [&str; 5] = [
    "create_media_buy",
    "token_rejected",
    "token_expired",
    "sso_login_failed",
    "update_settings",
];

/// A deterministic spread of events: tenants, operations, principals,
/// outcomes and times vary independently; some share a timestamp, so the
/// order's tie-break (`id`) is exercised too.
fn seed_events(n: u64, base: DateTime<Utc>) -> Vec<AuditEvent> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    (0..n)
        .map(|i| {
            let at = base + chrono::Duration::minutes((next(40) * 3) as i64);
            let mut e = AuditEvent::new(OPERATIONS[next(5) as usize], at);
            e.tenant_id = match next(4) {
                0 => None,
                t => Some(format!("t{t}")),
            };
            e.principal_id = match next(5) {
                0 => None,
                p => Some(format!("p{p}")),
            };
            e.success = next(3) != 0;
            e.security_violation = next(6) == 0;
            e.details = json!({"i": i});
            e
        })
        .collect()
}

/// Every page of `query` through the API, following `next_cursor`.
async fn all_pages(app: &TestApp, query: &str) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1_000 {
        let mut path = format!("/api/v1/audit/logs?limit=7&{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let response = app.get_as_admin(&path).await;
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let page: Value = response.json().await.unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 7);
        ids.extend(items.iter().map(|i| i["id"].as_i64().unwrap()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return ids,
        }
    }
    panic!("pagination did not end: {query}");
}

async fn every_filter_and_the_cursor_return_exactly_the_right_rows(backend: Backend) {
    // The queries themselves are not recorded, so the model stays exact.
    let app = spawn_app_with(
        backend,
        &[
            ("AUDIT_REQUESTS", "false"),
            ("AUDIT_TOKEN_VALIDATIONS", "false"),
        ],
    )
    .await;
    let base = Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap();
    let mut model: Vec<CommittedEvent> = Vec::new();
    for chunk in seed_events(400, base).chunks(50) {
        model.extend(app.store.append_audit(chunk).await.unwrap());
    }
    assert_eq!(model.len(), 400);

    let at = |minutes: i64| {
        (base + chrono::Duration::minutes(minutes))
            .to_rfc3339()
            .replace('+', "%2B")
    };
    type Filter = Box<dyn Fn(&AuditEvent) -> bool>;
    let cases: Vec<(String, Filter)> = vec![
        (
            "operation=create_media_buy,update_settings".into(),
            Box::new(|e: &AuditEvent| {
                e.operation == "create_media_buy" || e.operation == "update_settings"
            }),
        ),
        (
            "tenant_id=t1".into(),
            Box::new(|e: &AuditEvent| e.tenant_id.as_deref() == Some("t1")),
        ),
        // Recent failures of a tenant.
        (
            "tenant_id=t2&success=false".into(),
            Box::new(|e: &AuditEvent| e.tenant_id.as_deref() == Some("t2") && !e.success),
        ),
        // Operations by one principal.
        (
            "tenant_id=t3&principal_id=p2".into(),
            Box::new(|e: &AuditEvent| {
                e.tenant_id.as_deref() == Some("t3") && e.principal_id.as_deref() == Some("p2")
            }),
        ),
        // Authentication failures in a window.
        (
            format!(
                "operation=token_rejected&operation=token_expired&operation=sso_login_failed&since={}",
                at(60)
            ),
            Box::new(move |e: &AuditEvent| {
                ["token_rejected", "token_expired", "sso_login_failed"]
                    .contains(&e.operation.as_str())
                    && e.created_at >= base + chrono::Duration::minutes(60)
            }),
        ),
        (
            "security_violation=true".into(),
            Box::new(|e: &AuditEvent| e.security_violation),
        ),
        (
            "success=true&security_violation=false".into(),
            Box::new(|e: &AuditEvent| e.success && !e.security_violation),
        ),
        (
            format!("since={}&until={}", at(30), at(90)),
            Box::new(move |e: &AuditEvent| {
                e.created_at >= base + chrono::Duration::minutes(30)
                    && e.created_at < base + chrono::Duration::minutes(90)
            }),
        ),
        ("".into(), Box::new(|_: &AuditEvent| true)),
    ];
    for (query, keep) in cases {
        let mut expected: Vec<&CommittedEvent> = model.iter().filter(|c| keep(&c.event)).collect();
        expected.sort_by_key(|c| std::cmp::Reverse((c.event.created_at, c.id)));
        let expected: Vec<i64> = expected.into_iter().map(|c| c.id).collect();
        assert!(!expected.is_empty(), "{query} selects something");
        assert_eq!(all_pages(&app, &query).await, expected, "{query}");
    }

    // Bad parameters are named.
    for (query, field) in [
        ("success=maybe", "success"),
        ("since=yesterday", "since"),
        ("cursor=zzz", "cursor"),
        ("limit=0", "limit"),
    ] {
        let response = app
            .get_as_admin(&format!("/api/v1/audit/logs?{query}"))
            .await;
        let body = crate::helpers::assert_json_error(response, 422, "invalid_field").await;
        assert_eq!(body["error"]["field"], field);
    }
}

/// The peak resident memory of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

async fn an_export_of_100_000_rows_streams_with_bounded_memory(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let store = Store::open(&config_from(&[("DATABASE_URL", db.url.as_str())]).database).unwrap();
    store.migrate().await.unwrap();
    // 100,000 rows of about 1.2 KB: an export of about 120 MB.
    let padding = "x".repeat(1_000);
    let base = Utc::now() - chrono::Duration::days(1);
    for chunk in 0..20 {
        let events: Vec<AuditEvent> = (0..5_000)
            .map(|i| {
                AuditEvent::new(
                    "exported_op",
                    base + chrono::Duration::milliseconds(chunk * 5_000 + i),
                )
                .with_tenant("acme")
                .with_details(json!({"i": chunk * 5_000 + i, "note": padding}))
            })
            .collect();
        store.append_audit(&events).await.unwrap();
    }

    let workdir = tempfile::tempdir().unwrap();
    let token = "export-test-admin-token";
    let mut service = ServiceProcess::start(
        workdir.path(),
        &[
            ("DATABASE_URL", db.url.as_str()),
            ("BIND_ADDR", "127.0.0.1:0"),
            ("ADMIN_TOKEN", token),
        ],
    );
    let base_url = service.base_url().await;
    let pid = service.pid().unwrap();
    let before = peak_rss_kib(pid);
    let client = crate::helpers::http_client();
    for (format, header_lines) in [("csv", 1), ("jsonl", 0)] {
        let mut response = client
            .get(format!(
                "{base_url}/api/v1/audit/logs?tenant_id=acme&format={format}"
            ))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert!(
            response.headers().get("content-length").is_none(),
            "streamed, not buffered"
        );
        let mut lines = 0usize;
        let mut bytes = 0usize;
        while let Some(chunk) = response.chunk().await.unwrap() {
            bytes += chunk.len();
            lines += chunk.iter().filter(|b| **b == b'\n').count();
        }
        assert_eq!(lines, 100_000 + header_lines, "{format}");
        assert!(bytes > 100_000_000, "{format}: {bytes} bytes");
    }
    let peak = peak_rss_kib(pid);
    // Two exports of more than 100 MB each; the service grew by a small
    // fraction of one.
    assert!(
        peak - before < 60 * 1024,
        "peak RSS grew from {before} KiB to {peak} KiB"
    );
    service.send_sigterm();
    service.wait_exit(Duration::from_secs(10)).await;
    store.close().await;
}

async fn secrets_never_reach_the_database_the_files_or_stdout(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let workdir = tempfile::tempdir().unwrap();
    let token = "secret-test-admin-token-0123456789abcdef";
    let mut service = ServiceProcess::start(
        workdir.path(),
        &[
            ("DATABASE_URL", db.url.as_str()),
            ("BIND_ADDR", "127.0.0.1:0"),
            ("ADMIN_TOKEN", token),
            ("RUST_LOG", "debug"),
        ],
    );
    let base_url = service.base_url().await;
    let client = crate::helpers::http_client();
    let response = client
        .post(format!("{base_url}/api/v1/audit/events"))
        .bearer_auth(token)
        .json(&json!([{
            "operation": "configure_adapter",
            "success": false,
            "security_violation": true,
            "details": {
                "password": "SECRET-1", "api_key": "SECRET-2",
                "nested": {"access_token": "SECRET-3", "list": [{"client_secret": "SECRET-4"}]},
                "Authorization": "Bearer SECRET-5", "x-api-key": "SECRET-6", "cookie": "SECRET-7",
                "kept": "visible"
            }
        }]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);

    let store = Store::open(&config_from(&[("DATABASE_URL", db.url.as_str())]).database).unwrap();
    let rows = wait_for_rows(&store, &["configure_adapter"], 1).await;
    // Let the request's own audit row and the file sinks catch up, then stop.
    wait_for_rows(&store, &["ingest_audit_events"], 1).await;
    service.send_sigterm();
    service
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("exits");

    let stored = serde_json::to_string(
        &store
            .audit_logs(&overseer::store::AuditQuery {
                limit: 1_000,
                ..Default::default()
            })
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(
        stored.contains("[REDACTED]") && stored.contains("visible"),
        "{stored}"
    );
    assert_eq!(
        rows[0].event.details["nested"]["list"][0]["client_secret"],
        "[REDACTED]"
    );
    let mut files = String::new();
    for entry in std::fs::read_dir(workdir.path().join("logs")).unwrap() {
        files.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    assert!(
        files.contains("configure_adapter"),
        "the sinks were written: {files}"
    );
    let output = service.all_output();
    assert!(output.contains("listening"));
    for (place, text) in [
        ("database", &stored),
        ("files", &files),
        ("stdout/stderr", &output),
    ] {
        assert!(!text.contains("SECRET-"), "a secret reached the {place}");
        assert!(!text.contains(token), "the admin token reached the {place}");
    }
    store.close().await;
}

async fn audit_metrics_are_exported(backend: Backend) {
    let app = spawn_app(backend).await;
    crate::audit::create_tenant(&app, "acme").await;
    crate::audit::ingest_ok(&app, &json!([crate::audit::event("acme", "metered", 1)])).await;
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("audit_events_total{")
            && l.contains("source=\"api\"")
            && l.contains("result=\"committed\"")),
        "audit_events_total missing from /metrics"
    );
    for name in [
        "audit_batch_size_count",
        "audit_flush_seconds_count",
        "audit_queue_depth",
        "audit_spool_events",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
}
