//! `/metrics` as Prometheus reads it (issue 9, acceptance 1): after a
//! scripted workload the exposition passes a real parser (`promtool check
//! metrics`, Debian package `prometheus`) and the counters have exactly the
//! expected values.
//!
//! A test binary of its own: the metrics registry is the process's, so here
//! no other test adds to the counts. One test runs the workload on SQLite,
//! then on PostgreSQL, and checks the counts after each (they add up).
//!
//! Ignored by a plain `cargo test` because it needs `promtool`;
//! `.ci/metrics-check` installs it and runs this test (`PROMTOOL` overrides
//! the path).

#![allow(clippy::unwrap_used, reason = "test code")]

#[path = "api/helpers.rs"]
#[allow(
    dead_code,
    unused_macros,
    unused_imports,
    reason = "shared with tests/api"
)]
mod helpers;
#[path = "support/prometheus.rs"]
mod prometheus;
#[path = "api/teardown.rs"]
#[allow(dead_code, reason = "shared with tests/api")]
mod teardown;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use helpers::{Backend, TestApp, spawn_app_with};
use prometheus::sample;
use serde_json::{Value, json};

/// What promtool may say about our exposition without it being wrong:
/// no `# HELP` on a metric, and the seed's `agent_run_latency_ms` name (a
/// unit abbreviation, kept because the seed names it so).
const TOLERATED_LINTS: &[&str] = &[
    "no help text",
    "agent_run_latency_ms metric names should not contain abbreviated units",
];

/// Runs `promtool check metrics` over `text`: a parse error fails the test,
/// and so does any lint finding not in [`TOLERATED_LINTS`].
fn promtool_check(text: &str) {
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".to_owned());
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{promtool} not found ({e}): install the Debian package `prometheus` (.ci/metrics-check does)")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // 0: clean; 3: lint findings only; anything else: it did not parse.
    let code = out.status.code();
    assert!(
        matches!(code, Some(0 | 3)),
        "promtool could not parse /metrics ({code:?}): {report}\n{text}"
    );
    let findings: Vec<&str> = report
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !TOLERATED_LINTS.iter().any(|t| l.contains(t)))
        .collect();
    assert!(findings.is_empty(), "promtool findings: {findings:#?}");
}

/// Polls `/metrics` until `name{labels}` reaches `want` (counters fed by
/// background work: the audit batcher, the recorder) or 10 s pass.
async fn wait_for(app: &TestApp, name: &str, labels: &[(&str, &str)], want: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = app.get("/metrics").await.text().await.unwrap();
        let got = sample(&text, name, labels);
        if got == Some(want) || Instant::now() > deadline {
            assert_eq!(got, Some(want), "{name}{labels:?}\n{text}");
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn post(app: &TestApp, path: &str, body: &Value) -> Value {
    let response = app.post_json_as_admin(path, body).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

/// One round of the workload on a fresh app of `backend`.
async fn workload(backend: Backend) -> TestApp {
    // Frequent heartbeats: the client below learns that the server has
    // closed the stream (and the server that the client has gone) at the
    // next write.
    let app = spawn_app_with(
        backend,
        &[("SKIP_CRON", "true"), ("SSE_HEARTBEAT_INTERVAL", "200ms")],
    )
    .await;
    post(
        &app,
        "/api/v1/tenants",
        &json!({"id": "acme", "name": "Acme"}),
    )
    .await;
    // One activity stream (it has no backfill: nothing matches yet), then
    // three events through the ingest API, which it receives.
    let stream = reqwest::Client::new()
        .get(app.url("/api/activity-stream?operation=scripted"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let events: Vec<Value> = (0..3)
        .map(|i| json!({"tenant_id": "acme", "operation": "scripted", "principal_id": "p", "success": true, "details": {"i": i}}))
        .collect();
    post(&app, "/api/v1/audit/events", &json!(events)).await;
    let mut body = stream.bytes_stream();
    let mut text = String::new();
    while text.matches("event: activity").count() < 3 {
        use futures_util::StreamExt;
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("the stream delivers the three events")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(body);
    // Three agent runs: 40 ms succeeded, 600 ms failed, 20 s canceled.
    for (run_id, status, ms) in [
        ("s", "succeeded", 40),
        ("f", "failed", 600),
        ("c", "canceled", 20_000),
    ] {
        post(
            &app,
            "/api/v1/agent-runs",
            &json!({"agent": "scripted", "objective": "o", "run_id": run_id}),
        )
        .await;
        post(
            &app,
            &format!("/api/v1/agent-runs/{run_id}/finish"),
            &json!({"status": status, "duration_ms": ms}),
        )
        .await;
    }
    // One cycle of each scheduler (each also an agent run).
    post(&app, "/admin/schedulers/status/run", &json!({})).await;
    post(&app, "/admin/schedulers/delivery/run", &json!({})).await;
    // Five refused tokens from one address: one repeated_failed_auth violation.
    for _ in 0..5 {
        let response = app
            .client
            .get(app.url("/api/v1/tenants"))
            .bearer_auth("not-a-token")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
    app
}

#[ignore = "needs promtool (Debian package `prometheus`): run by .ci/metrics-check"]
#[actix_web::test]
async fn metrics_parse_as_prometheus_exposition_and_count_a_scripted_workload() {
    crate::helpers::run_test(async move {
        for (round, backend) in [(1.0, Backend::Sqlite), (2.0, Backend::Postgres)] {
            let app = workload(backend).await;
            let n = |per_round: f64| per_round * round;

            wait_for(
                &app,
                "audit_events_total",
                &[("source", "api"), ("result", "committed")],
                n(3.0),
            )
            .await;
            wait_for(
                &app,
                "security_violations_total",
                &[("type", "repeated_failed_auth")],
                n(1.0),
            )
            .await;
            for scheduler in ["status", "delivery"] {
                wait_for(
                    &app,
                    "scheduler_runs_total",
                    &[("scheduler", scheduler), ("result", "ok")],
                    n(1.0),
                )
                .await;
                let agent = format!("{scheduler}_scheduler");
                wait_for(
                    &app,
                    "agent_runs_total",
                    &[("agent", &agent), ("status", "succeeded")],
                    n(1.0),
                )
                .await;
            }
            for status in ["succeeded", "failed", "canceled"] {
                wait_for(
                    &app,
                    "agent_runs_total",
                    &[("agent", "scripted"), ("status", status)],
                    n(1.0),
                )
                .await;
            }
            let text = wait_for(
                &app,
                "agent_run_latency_ms_count",
                &[("agent", "scripted")],
                n(3.0),
            )
            .await;
            for (le, count) in [
                ("50", 1.0),
                ("100", 1.0),
                ("250", 1.0),
                ("500", 1.0),
                ("1000", 2.0),
                ("2500", 2.0),
                ("5000", 2.0),
                ("10000", 2.0),
                ("30000", 3.0),
                ("+Inf", 3.0),
            ] {
                assert_eq!(
                    sample(
                        &text,
                        "agent_run_latency_ms_bucket",
                        &[("agent", "scripted"), ("le", le)]
                    ),
                    Some(n(count)),
                    "le={le}"
                );
            }
            assert_eq!(
                sample(&text, "agent_run_latency_ms_sum", &[("agent", "scripted")]),
                Some(n(20_640.0))
            );
            // Nothing moved: no buys.
            assert!(!text.contains("media_buy_transitions_total{"), "{text}");
            // The activity stream: three frames sent; its slot given back.
            assert_eq!(sample(&text, "sse_events_sent_total", &[]), Some(n(3.0)));
            let text = wait_for(&app, "sse_connections", &[], 0.0).await;
            // HTTP: by matched route (never the path), method and status.
            for (method, route, status, count) in [
                ("POST", "/api/v1/audit/events", "202", 1.0),
                ("POST", "/api/v1/agent-runs", "201", 3.0),
                ("POST", "/api/v1/agent-runs/{run_id}/finish", "200", 3.0),
                ("GET", "/api/v1/tenants", "401", 5.0),
                ("POST", "/admin/schedulers/status/run", "200", 1.0),
            ] {
                let labels = [("method", method), ("route", route), ("status", status)];
                assert_eq!(
                    sample(&text, "http_requests_total", &labels),
                    Some(n(count)),
                    "{method} {route} {status}"
                );
            }
            assert_eq!(
                sample(
                    &text,
                    "http_request_duration_seconds_count",
                    &[("method", "GET"), ("route", "/api/v1/tenants")]
                ),
                Some(n(5.0))
            );
            assert!(
                sample(&text, "db_pool_max_connections", &[]).is_some_and(|max| max >= 1.0),
                "pool gauges"
            );
            let unmatched = app
                .client
                .get(app.url("/no/such/path/123"))
                .send()
                .await
                .unwrap();
            assert_eq!(unmatched.status(), 404);
            let text = app.get("/metrics").await.text().await.unwrap();
            assert!(!text.contains("/no/such/path"), "paths never become labels");
            assert!(
                sample(
                    &text,
                    "http_requests_total",
                    &[("method", "GET"), ("route", "unmatched"), ("status", "404")]
                )
                .is_some_and(|n| n >= 1.0)
            );
            promtool_check(&text);
        }
    })
    .await;
}
