//! OTLP/HTTP export of traces and logs (issue 9), from the real binary to a
//! real receiver that decodes what arrives.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;

use crate::helpers::{
    Backend, BinaryClient, ServiceProcess, TestDatabase, http_client, on_both_backends,
};
use crate::receiver::Receiver;

const ADMIN: &str = "an-otlp-test-admin-token-of-32-characters";
const LOGFIRE_TOKEN: &str = "pylf_v1_eu_otlp-test-write-token-s3cr3t";

on_both_backends!(
    traces_and_logs_reach_the_collector_with_the_logfire_token,
    without_an_endpoint_nothing_is_exported,
    a_collector_that_is_down_costs_no_request_and_no_slow_exit,
);

/// `OTEL_EXPORTER_OTLP_ENDPOINT` + `LOGFIRE_TOKEN`: request spans and log
/// records arrive as OTLP protobuf on `/v1/traces` and `/v1/logs`, each
/// request carrying the token as `Authorization`; the last lines before exit
/// are flushed; the export's own HTTP plumbing is not exported; the token is
/// never on stdout.
async fn traces_and_logs_reach_the_collector_with_the_logfire_token(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let collector = Receiver::start();
    let workdir = tempfile::tempdir().unwrap();
    let mut service = ServiceProcess::start(
        workdir.path(),
        &[
            ("BIND_ADDR", "127.0.0.1:0"),
            ("DATABASE_URL", &db.url),
            ("ADMIN_TOKEN", ADMIN),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.base),
            ("LOGFIRE_TOKEN", LOGFIRE_TOKEN),
            ("OTEL_SERVICE_NAME", "overseer-under-test"),
            // The export's own HTTP client logs; none of it may be exported.
            (
                "RUST_LOG",
                "info,hyper_util=debug,reqwest=debug,opentelemetry=debug",
            ),
        ],
    );
    let port = service.wait_for_port(Duration::from_secs(20)).await;
    let base = format!("http://127.0.0.1:{port}");
    let client = http_client();
    let api = BinaryClient::new(&base);
    assert_eq!(api.get("/health").await.status().as_u16(), 200);
    let event = serde_json::json!({"operation": "otlp_probe", "success": true});
    api.post("/api/v1/audit/events", ADMIN, event).await;
    let tenant = serde_json::json!({"id": "otlp", "name": "OTLP"});
    api.post("/api/v1/tenants", ADMIN, tenant).await;
    let refused = client
        .get(format!("{base}/api/v1/audit/logs"))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);

    // Logs are batched every second: some arrive while the service runs.
    collector
        .wait_for("/v1/logs", 1, Duration::from_secs(10))
        .await;
    service.stop(Duration::from_secs(20)).await;

    let every = collector.all();
    assert!(
        every
            .iter()
            .all(|r| r.path == "/v1/logs" || r.path == "/v1/traces"),
        "{:?}",
        every.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    for request in &every {
        assert_eq!(request.headers["authorization"], LOGFIRE_TOKEN);
        assert_eq!(request.headers["content-type"], "application/x-protobuf");
    }

    // Traces: one span per request, named by method and route, with the
    // service's name on the resource.
    let mut spans = Vec::new();
    for request in collector.received("/v1/traces") {
        let export = ExportTraceServiceRequest::decode(request.raw.as_slice()).unwrap();
        for resource in export.resource_spans {
            let attributes = resource.resource.map(|r| r.attributes).unwrap_or_default();
            assert_eq!(
                string(&attributes, "service.name").as_deref(),
                Some("overseer-under-test")
            );
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
    }
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "GET /health",
        "POST /api/v1/audit/events",
        "GET /api/v1/audit/logs",
    ] {
        assert!(names.contains(&expected), "{expected} not in {names:?}");
    }
    let refused_span = spans
        .iter()
        .find(|s| s.name == "GET /api/v1/audit/logs")
        .unwrap();
    assert_eq!(
        int(&refused_span.attributes, "http.status_code"),
        Some(401),
        "{:?}",
        refused_span.attributes
    );
    assert_eq!(refused_span.trace_id.len(), 16);

    // Logs: the start-up and the final lines, levels kept, and nothing from
    // the export's own HTTP client.
    let mut records = Vec::new();
    for request in collector.received("/v1/logs") {
        let export = ExportLogsServiceRequest::decode(request.raw.as_slice()).unwrap();
        for resource in export.resource_logs {
            let attributes = resource.resource.map(|r| r.attributes).unwrap_or_default();
            assert_eq!(
                string(&attributes, "service.name").as_deref(),
                Some("overseer-under-test")
            );
            for scope in resource.scope_logs {
                let scope_name = scope.scope.map(|s| s.name).unwrap_or_default();
                for record in scope.log_records {
                    records.push((scope_name.clone(), record));
                }
            }
        }
    }
    let body = |record: &opentelemetry_proto::tonic::logs::v1::LogRecord| {
        record.body.as_ref().and_then(text).unwrap_or_default()
    };
    let configuration = records
        .iter()
        .find(|(_, r)| body(r) == "effective configuration")
        .expect("the effective-configuration line");
    assert_eq!(configuration.1.severity_text, "INFO");
    // The scope is the event's target, which is what the filter looks at.
    assert_eq!(configuration.0, "overseer::config");
    assert!(
        records.iter().any(|(_, r)| body(r) == "stopped"),
        "the last line before exit was not flushed"
    );
    let plumbing = ["hyper", "reqwest", "h2", "rustls", "opentelemetry"];
    let printed: Vec<String> = service
        .stdout
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|l| l["target"].as_str().map(str::to_owned))
        .filter(|target| plumbing.iter().any(|p| target.starts_with(p)))
        .collect();
    assert!(!printed.is_empty(), "the plumbing logged nothing to filter");
    for (scope, record) in &records {
        for plumbing in plumbing {
            assert!(
                !scope.starts_with(plumbing),
                "{scope}: {:?} exported",
                body(record)
            );
        }
    }

    // An event inside a request is tied to the request's span.
    let creation = spans
        .iter()
        .find(|s| s.name == "POST /api/v1/tenants")
        .expect("the tenant creation's span");
    let (_, logged) = records
        .iter()
        .find(|(_, r)| body(r) == "tenant created")
        .expect("the tenant creation's log line");
    assert_eq!(logged.trace_id, creation.trace_id);
    // The innermost span it was logged in: the request's or one within it.
    let within = spans
        .iter()
        .find(|s| s.span_id == logged.span_id)
        .expect("the log line's span was exported");
    assert_eq!(within.trace_id, creation.trace_id);
    assert_eq!(
        string(&logged.attributes, "tenant_id").as_deref(),
        Some("otlp")
    );

    // The token is a secret: not in the logs, exported or printed.
    let exported_logs: String = collector
        .received("/v1/logs")
        .iter()
        .map(|r| String::from_utf8_lossy(&r.raw).into_owned())
        .collect();
    assert!(!exported_logs.contains(LOGFIRE_TOKEN));
    assert!(!service.all_output().contains(LOGFIRE_TOKEN));
    assert!(
        service
            .all_output()
            .contains(&format!("\"otlp_export\":\"{}\"", collector.base)),
        "the effective configuration names the collector"
    );
}

/// Without `OTEL_EXPORTER_OTLP_ENDPOINT` or `LOGFIRE_TOKEN` nothing is sent,
/// even with the per-signal variables pointing at a collector (they refine an
/// export, they do not turn one on), and logs stay on stdout as JSON lines.
async fn without_an_endpoint_nothing_is_exported(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let collector = Receiver::start();
    let workdir = tempfile::tempdir().unwrap();
    let traces = collector.url("/v1/traces");
    let logs = collector.url("/v1/logs");
    let mut service = ServiceProcess::start(
        workdir.path(),
        &[
            ("BIND_ADDR", "127.0.0.1:0"),
            ("DATABASE_URL", &db.url),
            ("ADMIN_TOKEN", ADMIN),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &traces),
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", &logs),
        ],
    );
    let port = service.wait_for_port(Duration::from_secs(20)).await;
    let api = BinaryClient::new(&format!("http://127.0.0.1:{port}"));
    assert_eq!(api.get("/health").await.status().as_u16(), 200);
    // Longer than a log batch's delay (1 s): an exporter would have sent by now.
    collector
        .still("/v1/logs", 0, Duration::from_millis(1_500))
        .await;
    service.stop(Duration::from_secs(10)).await;
    assert!(
        collector.all().is_empty(),
        "{} requests",
        collector.all().len()
    );
    let stdout = service.stdout.lock().unwrap().clone();
    assert!(stdout.iter().any(|l| l.contains("\"otlp_export\":\"off\"")));
    assert!(stdout.iter().any(|l| l.contains("\"stopped\"")));
    for line in &stdout {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|_| panic!("not JSON: {line}"));
    }
}

/// The collector refuses connections: requests are served as usual and
/// SIGTERM still ends the process promptly (the last export is given up on
/// after a few seconds).
async fn a_collector_that_is_down_costs_no_request_and_no_slow_exit(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let workdir = tempfile::tempdir().unwrap();
    let nowhere = format!("http://127.0.0.1:{}", crate::helpers::closed_port());
    let mut service = ServiceProcess::start(
        workdir.path(),
        &[
            ("BIND_ADDR", "127.0.0.1:0"),
            ("DATABASE_URL", &db.url),
            ("ADMIN_TOKEN", ADMIN),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &nowhere),
        ],
    );
    let port = service.wait_for_port(Duration::from_secs(20)).await;
    let api = BinaryClient::new(&format!("http://127.0.0.1:{port}"));
    // Past the first log batch (1 s), so exports are failing meanwhile.
    for _ in 0..15 {
        let started = std::time::Instant::now();
        assert_eq!(api.get("/health").await.status().as_u16(), 200);
        assert!(started.elapsed() < Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    service.stop(Duration::from_secs(10)).await;
}

fn text(value: &AnyValue) -> Option<String> {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

fn string(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(text)
}

fn int(attributes: &[KeyValue], key: &str) -> Option<i64> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(any_value::Value::IntValue(n)) => Some(*n),
            _ => None,
        })
}
