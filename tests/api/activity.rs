//! The live activity stream end to end: delivery within a second and in
//! order, filters, the backfill, resume with `Last-Event-ID` during a burst,
//! the replay limit, credentials and stream limits, heartbeats, a slow
//! client, a panicking hub, two instances on one PostgreSQL, and shutdown
//! with clients connected.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::audit::{create_tenant, ingest_ok};
use crate::domain::{admin_token, tenant_with_principal};
use crate::helpers::{
    Backend, BinaryClient, ServiceProcess, TestApp, TestDatabase, on_both_backends, spawn_app_on,
    spawn_app_with,
};
use crate::sse::{self, Item};

on_both_backends!(
    events_arrive_in_order_within_a_second_and_filters_apply,
    a_new_stream_gets_the_newest_fifty_oldest_first,
    resuming_after_a_disconnect_during_a_burst_misses_nothing_and_repeats_nothing,
    a_resume_beyond_the_replay_limit_gets_resync_and_the_newest,
    streams_need_an_admin_and_are_limited,
    idle_streams_get_heartbeats_and_the_right_headers,
    a_slow_client_is_dropped_with_resync_and_others_carry_on,
    a_panicking_hub_restarts_and_clients_resume_without_loss,
    sigterm_ends_open_streams_and_the_service_exits_promptly,
);

const STREAM: &str = "/api/activity-stream";

/// `n` events of `operation` for `tenant`, numbered from `from`.
fn batch(tenant: &str, operation: &str, from: usize, n: usize) -> Value {
    Value::Array(
        (from..from + n)
            .map(|i| {
                json!({
                    "tenant_id": tenant,
                    "operation": operation,
                    "principal_id": format!("p{}", i % 3),
                    "success": i % 4 != 0,
                    "details": {"i": i},
                })
            })
            .collect(),
    )
}

/// Posts `body` to the ingest API of the app at `address` from a task of
/// the test's own (not through the app's client); returns the log ids.
async fn post_batch(
    client: &reqwest::Client,
    address: &str,
    token: &str,
    body: &Value,
) -> Vec<String> {
    let response = client
        .post(format!("{address}/api/v1/audit/events"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    body["log_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

fn ids(events: &[(i64, Value)]) -> Vec<i64> {
    events.iter().map(|(id, _)| *id).collect()
}

fn assert_ascending(events: &[(i64, Value)]) {
    let ids = ids(events);
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids not strictly ascending: {ids:?}"
    );
}

async fn events_arrive_in_order_within_a_second_and_filters_apply(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    create_tenant(&app, "acme").await;
    create_tenant(&app, "other").await;
    let acme = admin_token(&app, "acme").await;
    let url = app.url(STREAM);

    let mut all = sse::open(&url, Some(&acme.token), None).await.unwrap();
    let failures = format!("{url}?operation=create_campaign,pause_campaign&success=false");
    let mut failed = sse::open(&failures, Some(&acme.token), None).await.unwrap();
    let mut auth_only = sse::open(&format!("{url}?category=auth"), Some(&acme.token), None)
        .await
        .unwrap();
    let mut super_other = sse::open(
        &format!("{url}?tenant_id=other&principal_id=p1"),
        Some(&app.admin_token),
        None,
    )
    .await
    .unwrap();

    let started = Instant::now();
    let acme_ids = ingest_ok(&app, &batch("acme", "create_campaign", 0, 20)).await;
    ingest_ok(&app, &batch("other", "create_campaign", 0, 9)).await;
    ingest_ok(&app, &batch("acme", "pause_campaign", 20, 8)).await;

    // All of acme's campaign events arrive, in order, each once, within a
    // second of being accepted; none of the other tenant's.
    let mut received = Vec::new();
    while received.len() < 28 {
        let item = all
            .next_event(
                Duration::from_secs(1).saturating_sub(started.elapsed())
                    + Duration::from_millis(200),
            )
            .await
            .unwrap_or_else(|| panic!("only {} of 28 events within a second", received.len()));
        let (id, data) = item.activity().unwrap();
        assert_eq!(data["tenant_id"], "acme", "{data}");
        if data["operation"].as_str().unwrap().ends_with("_campaign") {
            received.push((id, data));
        }
    }
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        started.elapsed()
    );
    assert_ascending(&received);
    let got: Vec<&str> = received[..20]
        .iter()
        .map(|(_, d)| d["log_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, acme_ids.iter().map(String::as_str).collect::<Vec<_>>());
    let first = &received[0].1;
    assert_eq!(first["category"], "system");
    assert_eq!(first["principal_id"], "p0");
    assert_eq!(first["principal_name"], "System");
    assert_eq!(first["success"], false);
    assert_eq!(first["action_required"], false);
    assert_eq!(first["security_violation"], false);
    assert_eq!(first["details"]["i"], 0);
    assert!(first["timestamp"].as_str().unwrap().ends_with('Z'));

    // Filters: failures of the two operations only (i % 4 == 0).
    let expected_failures = (0..28).filter(|i| i % 4 == 0).count();
    let only_failures = failed
        .activities(expected_failures, Duration::from_secs(2))
        .await;
    assert_eq!(only_failures.len(), expected_failures);
    for (_, d) in &only_failures {
        assert_eq!(d["success"], false);
        assert_eq!(d["tenant_id"], "acme");
    }
    assert_ascending(&only_failures);
    assert_eq!(failed.next_event(Duration::from_millis(300)).await, None);

    // The super admin's view of one tenant and one principal.
    let theirs = super_other.activities(3, Duration::from_secs(2)).await;
    assert_eq!(theirs.len(), 3, "p1 of 0..9 is i = 1, 4, 7");
    for (_, d) in &theirs {
        assert_eq!(
            (d["tenant_id"].as_str(), d["principal_id"].as_str()),
            (Some("other"), Some("p1"))
        );
    }

    // Categories: acme's own token checks are `auth`; campaigns are not.
    let auth = auth_only.activities(1, Duration::from_secs(2)).await;
    assert!(!auth.is_empty(), "the token validations of acme's admin");
    for (_, d) in &auth {
        assert_eq!(d["category"], "auth", "{d}");
    }
}

async fn a_new_stream_gets_the_newest_fifty_oldest_first(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    create_tenant(&app, "acme").await;
    let acme = admin_token(&app, "acme").await;
    let log_ids = ingest_ok(&app, &batch("acme", "bulk_op", 0, 80)).await;
    let url = app.url(&format!("{STREAM}?operation=bulk_op"));

    let mut stream = sse::open(&url, Some(&acme.token), None).await.unwrap();
    assert_eq!(
        stream.next(Duration::from_secs(2)).await,
        Some(Item::Retry(3000))
    );
    let backfill = stream.activities(50, Duration::from_secs(2)).await;
    assert_eq!(backfill.len(), 50);
    assert_ascending(&backfill);
    let got: Vec<&str> = backfill
        .iter()
        .map(|(_, d)| d["log_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        got,
        log_ids[30..].iter().map(String::as_str).collect::<Vec<_>>()
    );
    let replay_from: i64 = stream
        .header("overseer-replay-from")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(replay_from, backfill[0].0 - 1);
    assert_eq!(
        stream.next_event(Duration::from_millis(300)).await,
        None,
        "nothing more"
    );

    // Then live events.
    let live = ingest_ok(&app, &batch("acme", "bulk_op", 80, 1)).await;
    let next = stream.activities(1, Duration::from_secs(2)).await;
    assert_eq!(next[0].1["log_id"], live[0].as_str());
    assert!(next[0].0 > backfill[49].0);

    // With nothing matching yet, the backfill is empty and replay starts at
    // the newest event.
    let mut none = sse::open(
        &app.url(&format!("{STREAM}?operation=nothing_yet")),
        Some(&acme.token),
        None,
    )
    .await
    .unwrap();
    assert_eq!(none.next_event(Duration::from_millis(300)).await, None);
    let from: i64 = none
        .header("overseer-replay-from")
        .unwrap()
        .parse()
        .unwrap();
    assert!(from >= next[0].0);
}

async fn resuming_after_a_disconnect_during_a_burst_misses_nothing_and_repeats_nothing(
    backend: Backend,
) {
    let app = spawn_app_with(backend, &[]).await;
    create_tenant(&app, "acme").await;
    let acme = admin_token(&app, "acme").await;
    let url = app.url(&format!("{STREAM}?operation=burst"));
    let mut first = sse::open(&url, Some(&acme.token), None).await.unwrap();

    // 5,000 events in batches, from another task.
    let writer = {
        let (address, token) = (app.address.clone(), app.admin_token.clone());
        tokio::spawn(async move {
            let client = sse::client();
            let mut log_ids = Vec::new();
            for k in 0..10 {
                let body = batch("acme", "burst", k * 500, 500);
                log_ids.extend(post_batch(&client, &address, &token, &body).await);
            }
            log_ids
        })
    };

    // Read a few hundred, then disconnect in the middle of the burst.
    let before = first.activities(300, Duration::from_secs(20)).await;
    assert_eq!(before.len(), 300);
    let last = before.last().unwrap().0;
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let resumed = sse::open(&url, Some(&acme.token), Some(last))
        .await
        .unwrap();
    assert_eq!(
        resumed.header("overseer-replay-from").unwrap(),
        last.to_string(),
        "replay starts where the client left"
    );
    let (after, _reconnects) = sse::follow(
        &url,
        &acme.token,
        resumed,
        Some(last),
        "burst",
        4_700,
        Duration::from_secs(60),
    )
    .await;
    let log_ids = writer.await.unwrap();
    assert_eq!(log_ids.len(), 5_000);

    let mut all = before;
    all.extend(after);
    assert_ascending(&all);
    let mut count: HashMap<&str, usize> = HashMap::new();
    for (_, d) in &all {
        *count.entry(d["log_id"].as_str().unwrap()).or_default() += 1;
    }
    for id in &log_ids {
        assert_eq!(
            count.get(id.as_str()),
            Some(&1),
            "event {id} delivered once"
        );
    }
    assert_eq!(all.len(), 5_000);
}

async fn a_resume_beyond_the_replay_limit_gets_resync_and_the_newest(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[("SSE_MAX_REPLAY", "100"), ("SSE_BACKFILL", "10")],
    )
    .await;
    create_tenant(&app, "acme").await;
    let acme = admin_token(&app, "acme").await;
    let url = app.url(&format!("{STREAM}?operation=many"));
    ingest_ok(&app, &batch("acme", "many", 0, 1)).await;
    let mut s = sse::open(&url, Some(&acme.token), None).await.unwrap();
    let (mark, _) = s.activities(1, Duration::from_secs(2)).await.remove(0);
    drop(s);

    // 100 more: exactly the limit, replayed in full.
    let hundred = ingest_ok(&app, &batch("acme", "many", 1, 100)).await;
    let mut s = sse::open(&url, Some(&acme.token), Some(mark))
        .await
        .unwrap();
    let replayed = s.activities(100, Duration::from_secs(5)).await;
    assert_eq!(replayed.len(), 100);
    assert_eq!(replayed[99].1["log_id"], hundred[99].as_str());
    drop(s);

    // One more: over the limit, so resync and the newest 10.
    let more = ingest_ok(&app, &batch("acme", "many", 101, 1)).await;
    let mut s = sse::open(&url, Some(&acme.token), Some(mark))
        .await
        .unwrap();
    match s.next_event(Duration::from_secs(2)).await.unwrap() {
        Item::Event { event, data, .. } => {
            assert_eq!(event, "resync");
            let data: Value = serde_json::from_str(&data).unwrap();
            assert_eq!(data["reason"], "replay_limit");
        }
        other => panic!("expected resync, got {other:?}"),
    }
    let newest = s.activities(10, Duration::from_secs(2)).await;
    assert_eq!(newest.len(), 10);
    assert_eq!(newest[9].1["log_id"], more[0].as_str());
    let from: i64 = s.header("overseer-replay-from").unwrap().parse().unwrap();
    assert_eq!(from, newest[0].0 - 1);
    assert!(from > mark, "the header shows the gap");
}

async fn streams_need_an_admin_and_are_limited(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[
            ("SSE_MAX_STREAMS_PER_TENANT", "2"),
            ("SSE_MAX_STREAMS", "3"),
        ],
    )
    .await;
    let (acme, buyer, _) = tenant_with_principal(&app, "acme").await;
    create_tenant(&app, "other").await;
    let other = admin_token(&app, "other").await;
    let url = app.url(STREAM);

    let refused = |r: Result<sse::Stream, (u16, Value)>| match r {
        Ok(_) => panic!("expected a refusal"),
        Err(e) => e,
    };
    let (status, body) = refused(sse::open(&url, None, None).await);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, body) = refused(sse::open(&url, Some(&buyer.token), None).await);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, _) =
        refused(sse::open(&format!("{url}?tenant_id=other"), Some(&acme.token), None).await);
    assert_eq!(status, 403, "a tenant admin sees only its tenant");
    let (status, body) =
        refused(sse::open(&format!("{url}?category=fun"), Some(&acme.token), None).await);
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("category"))
    );
    let (status, _) = refused(sse::open(&format!("{url}?typo=1"), Some(&acme.token), None).await);
    assert_eq!(status, 400);

    // Two per tenant, three in all.
    let a1 = sse::open(&url, Some(&acme.token), None).await.unwrap();
    assert!(a1.header("access-control-allow-origin").is_none());
    let a2 = sse::open(&url, Some(&acme.token), None).await.unwrap();
    let (status, body) = refused(sse::open(&url, Some(&acme.token), None).await);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("too_many_streams"))
    );
    let o1 = sse::open(&url, Some(&other.token), None).await.unwrap();
    let (status, _) = refused(sse::open(&url, Some(&app.admin_token), None).await);
    assert_eq!(status, 429, "the total limit");
    let (_, health) = app.health().await;
    assert_eq!(health["components"]["sse"]["connections"], 3);

    // A slot is given back as soon as its client goes away.
    drop(a1);
    let deadline = Instant::now() + Duration::from_secs(3);
    let a3 = loop {
        match sse::open(&url, Some(&acme.token), None).await {
            Ok(s) => break s,
            Err((429, _)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("slot not given back: {e:?}"),
        }
    };
    drop((a2, a3, o1));
}

async fn idle_streams_get_heartbeats_and_the_right_headers(backend: Backend) {
    let app = spawn_app_with(backend, &[("SSE_HEARTBEAT_INTERVAL", "200ms")]).await;
    create_tenant(&app, "acme").await;
    let acme = admin_token(&app, "acme").await;
    let mut s = sse::open(
        &app.url(&format!("{STREAM}?operation=quiet")),
        Some(&acme.token),
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        s.header("content-type").as_deref(),
        Some("text/event-stream")
    );
    assert_eq!(s.header("cache-control").as_deref(), Some("no-cache"));
    assert_eq!(s.header("x-accel-buffering").as_deref(), Some("no"));
    assert_eq!(
        s.next(Duration::from_secs(1)).await,
        Some(Item::Retry(3000))
    );
    let mut beats = 0;
    let started = Instant::now();
    while beats < 3 {
        match s.next(Duration::from_secs(1)).await {
            Some(Item::Comment(text)) => {
                assert_eq!(text, "keep-alive");
                beats += 1;
            }
            other => panic!("expected a heartbeat, got {other:?}"),
        }
    }
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "one per interval"
    );
}

async fn a_slow_client_is_dropped_with_resync_and_others_carry_on(backend: Backend) {
    let app = spawn_app_with(backend, &[("SSE_CLIENT_BUFFER", "400")]).await;
    create_tenant(&app, "acme").await;
    let acme = admin_token(&app, "acme").await;
    let path = format!("{STREAM}?operation=big");

    // A client that sends its request and then reads nothing.
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\nAccept: text/event-stream\r\n\r\n",
            &acme.token
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut fast = sse::open(&app.url(&path), Some(&acme.token), None)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.health().await.1["components"]["sse"]["connections"] != 2 {
        assert!(Instant::now() < deadline, "both streams open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // 2,000 events of ~11 KiB: 22 MB, far more than the socket buffers
    // hold, in batches of 100.
    let filler = "x".repeat(900);
    let details: serde_json::Map<String, Value> =
        (0..12).map(|k| (format!("f{k}"), json!(filler))).collect();
    for k in 0..20 {
        let body = Value::Array(
            (k * 100..(k + 1) * 100)
                .map(|i| {
                    let mut d = details.clone();
                    d.insert("i".into(), json!(i));
                    json!({"tenant_id": "acme", "operation": "big", "success": true, "details": d})
                })
                .collect(),
        );
        ingest_ok(&app, &body).await;
    }
    let received = fast.activities(2_000, Duration::from_secs(30)).await;
    assert_eq!(received.len(), 2_000, "the fast client gets everything");
    assert_ascending(&received);

    let metrics = app.get("/metrics").await.text().await.unwrap();
    let dropped = metric(&metrics, "sse_clients_dropped_total{reason=\"slow\"}");
    assert!(dropped >= 1.0, "{dropped}");

    // The slow client, reading at last, finds `resync` and the end of the
    // response; its slot is free.
    let mut text = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf))
            .await
            .expect("the slow client's response ends")
            .unwrap();
        text.extend_from_slice(&buf[..n]);
        if n == 0 || text.ends_with(b"\r\n0\r\n\r\n") || Instant::now() > deadline {
            break;
        }
    }
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains("event: resync"),
        "no resync in {} bytes",
        text.len()
    );
    assert!(text.contains("\"reason\":\"slow_client\""));
    let frames = text.matches("event: activity").count();
    assert!(
        frames < 2_000,
        "the slow client was cut off ({frames} frames)"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.health().await.1["components"]["sse"]["connections"] != 1 {
        assert!(
            Instant::now() < deadline,
            "the slow client's slot is given back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of one sample line of a Prometheus text exposition.
pub fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn a_panicking_hub_restarts_and_clients_resume_without_loss(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[("ENABLE_FAULT_INJECTION", "true"), ("SSE_RETRY_MS", "100")],
    )
    .await;
    create_tenant(&app, "acme").await;
    let acme = admin_token(&app, "acme").await;
    let url = app.url(&format!("{STREAM}?operation=steady"));
    let stream = sse::open(&url, Some(&acme.token), None).await.unwrap();

    let writer = {
        let (address, token) = (app.address.clone(), app.admin_token.clone());
        tokio::spawn(async move {
            let client = sse::client();
            let mut log_ids = Vec::new();
            for k in 0..20 {
                if k == 5 {
                    let armed = client
                        .post(format!("{address}/admin/debug/faults"))
                        .bearer_auth(&token)
                        .json(&json!({"actor": "sse_hub", "kind": "panic"}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(armed.status(), 202);
                }
                let body = batch("acme", "steady", k * 10, 10);
                log_ids.extend(post_batch(&client, &address, &token, &body).await);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            log_ids
        })
    };
    let (events, reconnects) = sse::follow(
        &url,
        &acme.token,
        stream,
        None,
        "steady",
        200,
        Duration::from_secs(30),
    )
    .await;
    let log_ids = writer.await.unwrap();
    assert!(reconnects >= 1, "the hub's restart ended the stream");
    assert_ascending(&events);
    let got: Vec<&str> = events
        .iter()
        .map(|(_, d)| d["log_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, log_ids.iter().map(String::as_str).collect::<Vec<_>>());

    let (_, health) = app.health().await;
    let hub = &health["components"]["actors"]["sse_hub"];
    assert_eq!(hub["status"], "running", "{hub}");
    assert!(hub["restarts"].as_u64().unwrap() >= 1, "{hub}");
}

/// Two instances on one PostgreSQL, a client on each, events written through
/// both: each client receives every event of its tenant, in order, once.
#[actix_web::test]
async fn two_instances_stream_every_event_of_both() {
    crate::helpers::run_test(async move {
        let db = TestDatabase::new(Backend::Postgres).await;
        let url = db.url.clone();
        let one = spawn_app_on(db, &url, &[]).await;
        let two = one.replica(&url, &[]).await;
        create_tenant(&one, "acme").await;
        let acme_one = admin_token(&one, "acme").await;
        let token = acme_one.token.clone();
        let path = format!("{STREAM}?operation=spread");
        let mut on_one = sse::open(&one.url(&path), Some(&token), None)
            .await
            .unwrap();
        let mut on_two = sse::open(&two.url(&path), Some(&token), None)
            .await
            .unwrap();

        let write = |app: &TestApp, from: usize| {
            let (address, token) = (app.address.clone(), app.admin_token.clone());
            tokio::spawn(async move {
                let client = sse::client();
                let mut log_ids = Vec::new();
                for k in 0..10 {
                    let body = batch("acme", "spread", from + k * 50, 50);
                    log_ids.extend(post_batch(&client, &address, &token, &body).await);
                }
                log_ids
            })
        };
        let (w1, w2) = (write(&one, 0), write(&two, 10_000));
        let mut written = w1.await.unwrap();
        written.extend(w2.await.unwrap());
        assert_eq!(written.len(), 1_000);

        for (name, stream) in [("one", &mut on_one), ("two", &mut on_two)] {
            let got = stream.activities(1_000, Duration::from_secs(20)).await;
            assert_eq!(got.len(), 1_000, "instance {name}");
            assert_ascending(&got);
            let mut seen: Vec<&str> = got
                .iter()
                .map(|(_, d)| d["log_id"].as_str().unwrap())
                .collect();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), 1_000, "instance {name}: no duplicate");
            let mut expected: Vec<&str> = written.iter().map(String::as_str).collect();
            expected.sort_unstable();
            assert_eq!(seen, expected, "instance {name}: no gap");
        }
    })
    .await;
}

/// PostgreSQL's feed reads back the rows each notification names only while
/// a stream is open. The real binary (its own metrics): 200 events written
/// with no stream open are passed over unread; a stream opened afterwards
/// from the start of the trail still gets all of them, then the next 100
/// live, which the feed now reads.
#[actix_web::test]
async fn an_unwatched_instance_reads_nothing_back_and_a_late_stream_misses_nothing() {
    let db = TestDatabase::new(Backend::Postgres).await;
    let workdir = tempfile::tempdir().unwrap();
    let token = "a-test-admin-token-of-at-least-32-characters";
    let (mut service, base) = ServiceProcess::serve(workdir.path(), &db.url, token, &[]).await;
    let api = BinaryClient::new(&base);
    api.post(
        "/api/v1/tenants",
        token,
        json!({"id": "acme", "name": "acme"}),
    )
    .await;
    let feed = |result: &'static str| {
        let url = format!("{base}/metrics");
        async move {
            let text = sse::client()
                .get(url)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            metric(
                &text,
                &format!("activity_feed_events_total{{result=\"{result}\"}}"),
            )
        }
    };

    // Events 50k to 50k + 49 for each k.
    let write = |ks: std::ops::Range<usize>| {
        let api = &api;
        async move {
            for k in ks {
                let events = batch("acme", "unwatched", k * 50, 50);
                api.post("/api/v1/audit/events", token, events).await;
            }
        }
    };

    write(0..4).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while feed("skipped").await < 200.0 {
        assert!(
            Instant::now() < deadline,
            "the feed did not pass over the events"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        feed("read").await,
        0.0,
        "nothing read back with no stream open"
    );

    let path = format!("{base}{STREAM}?operation=unwatched");
    let mut stream = sse::open(&path, Some(token), Some(0)).await.unwrap();
    let replayed = stream.activities(200, Duration::from_secs(10)).await;
    assert_eq!(
        replayed.len(),
        200,
        "the late stream replays what was skipped"
    );
    write(4..6).await;
    let live = stream.activities(100, Duration::from_secs(10)).await;
    assert_eq!(live.len(), 100, "then the live ones");
    let mut all = replayed;
    all.extend(live);
    assert_ascending(&all);
    let numbers: Vec<i64> = all
        .iter()
        .map(|(_, d)| d["details"]["i"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, (0..300).collect::<Vec<_>>(), "each once, in order");
    assert!(
        feed("read").await >= 100.0,
        "with a stream open the feed reads"
    );
    service.stop(Duration::from_secs(10)).await;
}

/// The real binary with three streams open: SIGTERM ends them at once (the
/// clients see the end of the response) and the process exits 0 well within
/// 10 s, not after the 30 s graceful-shutdown timeout.
async fn sigterm_ends_open_streams_and_the_service_exits_promptly(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let workdir = tempfile::tempdir().unwrap();
    let token = "a-test-admin-token-of-at-least-32-characters";
    let (mut service, base) = ServiceProcess::serve(
        workdir.path(),
        &db.url,
        token,
        &[("SHUTDOWN_TIMEOUT", "30")],
    )
    .await;
    let url = format!("{base}{STREAM}");
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut s = sse::open(&url, Some(token), None).await.unwrap();
        assert_eq!(
            s.next(Duration::from_secs(5)).await,
            Some(Item::Retry(3000))
        );
        streams.push(s);
    }

    let stopping = Instant::now();
    service.send_sigterm();
    for s in &mut streams {
        // Whatever the backfill held, then the end.
        loop {
            match s.next(Duration::from_secs(5)).await {
                Some(Item::End) => break,
                Some(_) => continue,
                None => panic!("the stream was not ended on SIGTERM"),
            }
        }
    }
    let status = service
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("exits within 10 s with clients connected");
    assert!(status.success(), "{status:?}");
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "{:?}",
        stopping.elapsed()
    );
}
