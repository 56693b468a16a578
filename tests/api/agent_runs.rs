//! Agent runs end to end: start and finish through the API, what is stored,
//! audited and counted; the recent-runs query; recording turned off; the
//! database away; the service's own scheduler cycles as runs; the errors;
//! starts and finishes on the activity stream.

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use overseer_actors::ManualClock;
use serde_json::{Value, json};

use crate::audit::{stored, wait_for_rows};
use crate::domain::{As, admin_token};
use crate::helpers::{
    Backend, TcpProxy, TestApp, TestDatabase, assert_json_error, on_both_backends, spawn_app_on,
    spawn_app_with, spawn_app_with_clock,
};
use crate::prometheus::sample;

on_both_backends!(
    a_run_starts_and_finishes_succeeded_failed_or_canceled,
    the_duration_is_computed_from_the_start_when_not_given,
    an_error_is_cut_at_exactly_2048_characters,
    recent_runs_are_listed_by_agent_and_status_most_recent_first,
    a_finish_counts_the_run_by_agent_and_status_with_its_latency_in_buckets,
    with_agent_audit_disabled_nothing_is_recorded_and_nothing_breaks,
    the_database_away_does_not_fail_the_caller,
    each_scheduler_cycle_is_recorded_as_an_agent_run,
    refusals_are_json_errors_with_the_right_status,
    a_run_start_and_finish_appear_on_the_activity_stream,
);

const RUNS: &str = "/api/v1/agent-runs";

fn finish_path(run_id: &str) -> String {
    format!("{RUNS}/{run_id}/finish")
}

/// A name no other test uses: the metrics registry is the process's.
fn unique_agent(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

async fn start(root: &As<'_>, body: Value) -> Value {
    root.expect(201, root.post(RUNS, &body).await).await
}

async fn finish(root: &As<'_>, run_id: &str, body: Value) -> Value {
    root.expect(200, root.post(&finish_path(run_id), &body).await)
        .await
}

async fn get(root: &As<'_>, run_id: &str) -> Value {
    root.expect(200, root.get(&format!("{RUNS}/{run_id}")).await)
        .await
}

async fn list(root: &As<'_>, query: &str) -> Vec<Value> {
    let page = root
        .expect(200, root.get(&format!("{RUNS}?{query}")).await)
        .await;
    page["items"].as_array().unwrap().clone()
}

fn run_ids(items: &[Value]) -> Vec<&str> {
    items
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect()
}

/// Every stored run, straight from the store.
async fn all_rows(app: &TestApp) -> Vec<overseer::domain::agent_run::AgentRun> {
    app.store.agent_runs(None, None, None, 500).await.unwrap()
}

async fn metrics(app: &TestApp) -> String {
    app.get("/metrics").await.text().await.unwrap()
}

async fn a_run_starts_and_finishes_succeeded_failed_or_canceled(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    let root = As::admin(&app);

    let mut ids = Vec::new();
    for agent in ["planner", "buyer", "optimizer"] {
        let run = start(
            &root,
            json!({
                "agent": agent,
                "objective": format!("{agent} the week's media"),
                "plan": {"steps": ["look", "act"], "api_key": "sk-live-SECRET"},
                "user_email": "ops@example.com",
            }),
        )
        .await;
        assert_eq!(run["recorded"], true);
        assert_eq!(run["status"], "running");
        assert_eq!(run["agent"], agent);
        assert_eq!(run["dry_run"], true, "dry_run defaults to true");
        assert_eq!(run["user_email"], "ops@example.com");
        assert!(run["finished_at"].is_null() && run["duration_ms"].is_null());
        // Secret-named keys never reach the database.
        assert_eq!(
            run["plan"],
            json!({"steps": ["look", "act"], "api_key": "[REDACTED]"})
        );
        let id = run["run_id"].as_str().unwrap().to_owned();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "a generated UUID: {id}");
        ids.push(id);
    }

    let done = finish(
        &root,
        &ids[0],
        json!({"status": "succeeded", "artifacts": [{"order": 1}], "duration_ms": 1234}),
    )
    .await;
    assert_eq!(done["recorded"], true);
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["duration_ms"], 1234);
    assert_eq!(done["artifacts"], json!([{"order": 1}]));
    assert!(done["finished_at"].is_string());
    assert!(done["error"].is_null());

    let failed = finish(
        &root,
        &ids[1],
        json!({"status": "failed", "error": "the ad server said no", "duration_ms": 10,
               "artifacts": {"attempts": 3, "token": "t0k3n"}}),
    )
    .await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"], "the ad server said no");
    assert_eq!(
        failed["artifacts"],
        json!({"attempts": 3, "token": "[REDACTED]"})
    );

    let canceled = finish(&root, &ids[2], json!({"status": "canceled"})).await;
    assert_eq!(canceled["status"], "canceled");

    // What a later read sees is what was stored.
    for (id, status) in ids.iter().zip(["succeeded", "failed", "canceled"]) {
        let run = get(&root, id).await;
        assert_eq!(run["status"], status);
        assert_eq!(run["run_id"], id.as_str());
        assert!(run.get("recorded").is_none(), "{run}");
    }
    assert_eq!(get(&root, &ids[1]).await["error"], "the ad server said no");
    let body = app
        .get_as_admin(&format!("{RUNS}/{}", ids[0]))
        .await
        .text()
        .await
        .unwrap();
    assert!(!body.contains("sk-live-SECRET"), "{body}");

    // Each start and finish is on the audit trail (and so on the activity
    // stream), system chain, the failed run's as a failure.
    let started = wait_for_rows(&app.store, &["agent_run_started"], 3).await;
    assert_eq!(started[0].event.details["run_id"], ids[0].as_str());
    assert_eq!(started[0].event.details["agent"], "planner");
    assert_eq!(started[0].event.details["status"], "running");
    assert_eq!(
        started[0].event.principal_id.as_deref(),
        Some("super_admin")
    );
    assert_eq!(started[0].event.tenant_id, None);
    let finished = wait_for_rows(&app.store, &["agent_run_finished"], 3).await;
    let by_run = |id: &str| {
        finished
            .iter()
            .find(|e| e.event.details["run_id"] == id)
            .unwrap()
            .event
            .clone()
    };
    let ok = by_run(&ids[0]);
    assert!(ok.success);
    assert_eq!(ok.details["status"], "succeeded");
    assert_eq!(ok.details["duration_ms"], 1234);
    assert_eq!(ok.details["agent"], "planner");
    let bad = by_run(&ids[1]);
    assert!(!bad.success, "a failed run is a failed operation");
    assert_eq!(bad.error.as_deref(), Some("the ad server said no"));
    assert!(by_run(&ids[2]).success, "a canceled run did not fail");
    // No generic request rows for the starts and finishes themselves.
    assert!(
        stored(&app.store, &["start_agent_run", "finish_agent_run"])
            .await
            .is_empty()
    );
}

async fn the_duration_is_computed_from_the_start_when_not_given(backend: Backend) {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap());
    let app = spawn_app_with_clock(backend, &[], clock.clone()).await;
    let root = As::admin(&app);

    let run = start(
        &root,
        json!({"agent": "a", "objective": "o", "run_id": "run-1"}),
    )
    .await;
    assert_eq!(run["started_at"], "2026-11-24T09:00:00Z");
    clock.advance(Duration::from_millis(1_500));
    let done = finish(&root, "run-1", json!({"status": "succeeded"})).await;
    assert_eq!(done["duration_ms"], 1_500);
    assert_eq!(done["finished_at"], "2026-11-24T09:00:01.500Z");

    // A duration given wins over the clocks.
    start(
        &root,
        json!({"agent": "a", "objective": "o", "run_id": "run-2"}),
    )
    .await;
    clock.advance(Duration::from_secs(60));
    let done = finish(
        &root,
        "run-2",
        json!({"status": "failed", "duration_ms": 7}),
    )
    .await;
    assert_eq!(done["duration_ms"], 7);

    // A clock that stepped back gives 0, never a negative duration.
    start(
        &root,
        json!({"agent": "a", "objective": "o", "run_id": "run-3"}),
    )
    .await;
    clock.set(Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap());
    let done = finish(&root, "run-3", json!({"status": "canceled"})).await;
    assert_eq!(done["duration_ms"], 0);
}

async fn an_error_is_cut_at_exactly_2048_characters(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    let root = As::admin(&app);
    // Multi-byte characters: the cut counts characters, not bytes, and
    // never splits one.
    for (run_id, error, expected) in [
        ("long", "é".repeat(3_000), "é".repeat(2_048)),
        ("exact", "日".repeat(2_048), "日".repeat(2_048)),
        (
            "one-over",
            format!("{}🙂", "a".repeat(2_048)),
            "a".repeat(2_048),
        ),
        ("short", "short".to_owned(), "short".to_owned()),
    ] {
        start(
            &root,
            json!({"agent": "a", "objective": "o", "run_id": run_id}),
        )
        .await;
        let done = finish(&root, run_id, json!({"status": "failed", "error": error})).await;
        let stored_error = get(&root, run_id).await["error"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(done["error"].as_str().unwrap(), expected, "{run_id}");
        assert_eq!(stored_error, expected, "{run_id}");
    }
    assert_eq!(
        get(&root, "long").await["error"]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        2_048
    );
}

async fn recent_runs_are_listed_by_agent_and_status_most_recent_first(backend: Backend) {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap());
    let app = spawn_app_with_clock(backend, &[("SKIP_CRON", "true")], clock.clone()).await;
    let root = As::admin(&app);

    // a1 at 09:00, a2 and a3 at 09:01 (same instant: the later one first),
    // b1 at 09:02; a1 succeeded, a2 failed, a3 running, b1 succeeded.
    start(
        &root,
        json!({"agent": "alpha", "objective": "o", "run_id": "a1"}),
    )
    .await;
    clock.advance(Duration::from_secs(60));
    start(
        &root,
        json!({"agent": "alpha", "objective": "o", "run_id": "a2"}),
    )
    .await;
    start(
        &root,
        json!({"agent": "alpha", "objective": "o", "run_id": "a3"}),
    )
    .await;
    clock.advance(Duration::from_secs(60));
    start(
        &root,
        json!({"agent": "beta", "objective": "o", "run_id": "b1"}),
    )
    .await;
    finish(&root, "a1", json!({"status": "succeeded"})).await;
    finish(&root, "a2", json!({"status": "failed", "error": "x"})).await;
    finish(&root, "b1", json!({"status": "succeeded"})).await;

    assert_eq!(run_ids(&list(&root, "").await), ["b1", "a3", "a2", "a1"]);
    assert_eq!(
        run_ids(&list(&root, "agent=alpha").await),
        ["a3", "a2", "a1"]
    );
    assert_eq!(
        run_ids(&list(&root, "status=succeeded").await),
        ["b1", "a1"]
    );
    assert_eq!(
        run_ids(&list(&root, "agent=alpha&status=failed").await),
        ["a2"]
    );
    assert_eq!(run_ids(&list(&root, "status=running").await), ["a3"]);
    assert!(list(&root, "agent=gamma").await.is_empty());

    // Pages of two, through the cursor.
    let first = root
        .expect(200, root.get(&format!("{RUNS}?limit=2")).await)
        .await;
    assert_eq!(run_ids(first["items"].as_array().unwrap()), ["b1", "a3"]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = root
        .expect(
            200,
            root.get(&format!("{RUNS}?limit=2&cursor={cursor}")).await,
        )
        .await;
    assert_eq!(run_ids(second["items"].as_array().unwrap()), ["a2", "a1"]);
    assert!(second.get("next_cursor").is_none(), "{second}");

    // The default page is 50, the largest 500.
    for i in 0..55 {
        start(
            &root,
            json!({"agent": "bulk", "objective": "o", "run_id": format!("bulk-{i}")}),
        )
        .await;
    }
    assert_eq!(list(&root, "agent=bulk").await.len(), 50);
    assert_eq!(list(&root, "agent=bulk&limit=500").await.len(), 55);
}

async fn a_finish_counts_the_run_by_agent_and_status_with_its_latency_in_buckets(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    let root = As::admin(&app);
    let agent = unique_agent("metered");

    for (run_id, status, ms) in [
        ("m1", "succeeded", 40),
        ("m2", "succeeded", 300),
        ("m3", "failed", 7_000),
    ] {
        start(
            &root,
            json!({"agent": agent, "objective": "o", "run_id": format!("{agent}-{run_id}")}),
        )
        .await;
        finish(
            &root,
            &format!("{agent}-{run_id}"),
            json!({"status": status, "duration_ms": ms}),
        )
        .await;
    }
    // A start alone is not counted; a replayed start and a refused finish
    // are not counted either.
    start(
        &root,
        json!({"agent": agent, "objective": "o", "run_id": format!("{agent}-open")}),
    )
    .await;
    root.expect(
        200,
        root.post(
            RUNS,
            &json!({"agent": agent, "objective": "o", "run_id": format!("{agent}-open")}),
        )
        .await,
    )
    .await;
    root.expect(
        409,
        root.post(
            &finish_path(&format!("{agent}-m1")),
            &json!({"status": "failed"}),
        )
        .await,
    )
    .await;

    let text = metrics(&app).await;
    let total = |status: &str| {
        sample(
            &text,
            "agent_runs_total",
            &[("agent", &agent), ("status", status)],
        )
    };
    assert_eq!(total("succeeded"), Some(2.0), "{text}");
    assert_eq!(total("failed"), Some(1.0));
    assert_eq!(total("canceled"), None);
    assert_eq!(total("running"), None, "starts are not counted");

    let bucket = |le: &str| {
        sample(
            &text,
            "agent_run_latency_ms_bucket",
            &[("agent", &agent), ("le", le)],
        )
    };
    for (le, count) in [
        ("50", 1.0),
        ("100", 1.0),
        ("250", 1.0),
        ("500", 2.0),
        ("1000", 2.0),
        ("2500", 2.0),
        ("5000", 2.0),
        ("10000", 3.0),
        ("30000", 3.0),
        ("+Inf", 3.0),
    ] {
        assert_eq!(bucket(le), Some(count), "le={le}: {text}");
    }
    assert_eq!(
        sample(&text, "agent_run_latency_ms_count", &[("agent", &agent)]),
        Some(3.0)
    );
    assert_eq!(
        sample(&text, "agent_run_latency_ms_sum", &[("agent", &agent)]),
        Some(7_340.0)
    );
    assert!(
        text.contains("# TYPE agent_run_latency_ms histogram"),
        "{text}"
    );
    assert!(text.contains("# TYPE agent_runs_total counter"), "{text}");
}

async fn with_agent_audit_disabled_nothing_is_recorded_and_nothing_breaks(backend: Backend) {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap());
    let app = spawn_app_with_clock(
        backend,
        &[("AGENT_AUDIT_ENABLED", "false"), ("SKIP_CRON", "true")],
        clock.clone(),
    )
    .await;
    let root = As::admin(&app);
    let agent = unique_agent("quiet");

    let started = root
        .expect(
            202,
            root.post(
                RUNS,
                &json!({"agent": agent, "objective": "o", "run_id": "q1"}),
            )
            .await,
        )
        .await;
    assert_eq!(started["recorded"], false);
    assert_eq!(started["reason"], "disabled");
    assert_eq!(started["run_id"], "q1");
    assert_eq!(started["status"], "running");
    clock.advance(Duration::from_millis(700));
    let finished = root
        .expect(
            202,
            root.post(&finish_path("q1"), &json!({"status": "succeeded"}))
                .await,
        )
        .await;
    assert_eq!(finished["recorded"], false);
    assert_eq!(finished["agent"], agent.as_str());
    assert_eq!(finished["duration_ms"], 700);
    // Input is still checked.
    assert_json_error(
        root.post(RUNS, &json!({"agent": "", "objective": "o"}))
            .await,
        422,
        "invalid_field",
    )
    .await;
    // The scheduler's cycles still run.
    let cycle = app
        .post_json_as_admin("/admin/schedulers/status/run", &json!({}))
        .await;
    assert_eq!(cycle.status(), 200);

    // Nothing stored, nothing audited; the metrics still count.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(all_rows(&app).await.is_empty(), "no agent_runs rows");
    assert!(list(&root, "").await.is_empty());
    assert_json_error(root.get(&format!("{RUNS}/q1")).await, 404, "not_found").await;
    assert!(
        stored(&app.store, &["agent_run_started", "agent_run_finished"])
            .await
            .is_empty()
    );
    let text = metrics(&app).await;
    assert_eq!(
        sample(
            &text,
            "agent_runs_total",
            &[("agent", &agent), ("status", "succeeded")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "agent_run_latency_ms_bucket",
            &[("agent", &agent), ("le", "1000")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "agent_run_latency_ms_bucket",
            &[("agent", &agent), ("le", "500")]
        ),
        Some(0.0)
    );
    // And the service is healthy.
    assert_eq!(app.health().await.0, 200);
}

/// Holds SQLite's write lock (a transaction of our own) until dropped.
async fn lock_sqlite(app: &TestApp) -> sqlx::pool::PoolConnection<sqlx::Sqlite> {
    let overseer::store::Store::Sqlite(lite) = &app.store else {
        unreachable!("a SQLite app")
    };
    let mut conn = lite.pool().acquire().await.unwrap();
    sqlx::Executor::execute(&mut *conn, "BEGIN EXCLUSIVE")
        .await
        .unwrap();
    conn
}

async fn the_database_away_does_not_fail_the_caller(backend: Backend) {
    let agent = unique_agent("resilient");
    let db = TestDatabase::new(backend).await;
    let proxy = match backend {
        Backend::Postgres => Some(TcpProxy::start("127.0.0.1:5432".parse().unwrap()).await),
        Backend::Sqlite => None,
    };
    let url = match &proxy {
        Some(proxy) => db.url_through(proxy),
        None => db.url.clone(),
    };
    let app = spawn_app_on(
        db,
        &url,
        &[
            ("DATABASE_CONNECT_TIMEOUT", "1s"),
            ("DATABASE_QUERY_TIMEOUT", "1s"),
            ("SKIP_CRON", "true"),
        ],
    )
    .await;
    let root = As::admin(&app);
    let before = start(
        &root,
        json!({"agent": agent, "objective": "o", "run_id": "before"}),
    )
    .await;
    assert_eq!(before["recorded"], true);

    // The database goes away: PostgreSQL's connections are cut; SQLite's
    // file is locked by another writer (every write times out).
    let lock = match (&proxy, backend) {
        (Some(proxy), _) => {
            proxy.cut();
            None
        }
        (None, _) => Some(lock_sqlite(&app).await),
    };

    let began = Instant::now();
    let finished = root
        .expect(
            202,
            root.post(
                &finish_path("before"),
                &json!({"status": "failed", "error": "e"}),
            )
            .await,
        )
        .await;
    assert_eq!(finished["recorded"], false);
    assert_eq!(finished["reason"], "database_unavailable");
    assert_eq!(
        finished["agent"],
        agent.as_str(),
        "remembered from its start"
    );
    assert!(
        finished["duration_ms"].is_i64(),
        "computed from the remembered start"
    );
    let during = root
        .expect(
            202,
            root.post(
                RUNS,
                &json!({"agent": agent, "objective": "o", "run_id": "during"}),
            )
            .await,
        )
        .await;
    assert_eq!(during["recorded"], false);
    assert_eq!(during["reason"], "database_unavailable");
    assert!(
        began.elapsed() < Duration::from_secs(15),
        "{:?}",
        began.elapsed()
    );
    // The metrics still count the finish.
    let text = metrics(&app).await;
    assert_eq!(
        sample(
            &text,
            "agent_runs_total",
            &[("agent", &agent), ("status", "failed")]
        ),
        Some(1.0),
        "{text}"
    );

    // It comes back.
    if let Some(proxy) = &proxy {
        proxy.restore();
    }
    if let Some(mut conn) = lock {
        // A statement SQLite is running cannot be interrupted: the caller
        // was answered at the query timeout, and the statement itself gives
        // up at the busy timeout (the same 1 s). Released before that, the
        // lock would let the "not recorded" start land after all (the
        // finish below would then find it: 200).
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        sqlx::Executor::execute(&mut *conn, "ROLLBACK")
            .await
            .unwrap();
    }
    app.wait_for_health(200, Duration::from_secs(15)).await;
    // The run whose start was not stored finishes without an error either.
    let late = root
        .expect(
            202,
            root.post(&finish_path("during"), &json!({"status": "succeeded"}))
                .await,
        )
        .await;
    assert_eq!(late["reason"], "start_not_recorded");
    assert_eq!(late["agent"], agent.as_str());
    // The finish the database missed left the run as it was.
    assert_eq!(get(&root, "before").await["status"], "running");
    let after = start(
        &root,
        json!({"agent": agent, "objective": "o", "run_id": "after"}),
    )
    .await;
    assert_eq!(after["recorded"], true);
    // The audit events of the outage were kept (spooled) and arrive.
    let finished_events = wait_for_rows(&app.store, &["agent_run_finished"], 2).await;
    assert!(
        finished_events
            .iter()
            .any(|e| e.event.details["run_id"] == "before" && !e.event.success)
    );
}

async fn each_scheduler_cycle_is_recorded_as_an_agent_run(backend: Backend) {
    let app = spawn_app_with(backend, &[("SKIP_CRON", "true")]).await;
    let root = As::admin(&app);

    for (path, agent, objective) in [
        (
            "/admin/schedulers/status/run",
            "status_scheduler",
            "media-buy status cycle",
        ),
        (
            "/admin/schedulers/delivery/run",
            "delivery_scheduler",
            "delivery-report cycle",
        ),
    ] {
        let report: Value = app
            .post_json_as_admin(path, &json!({}))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(report["ran"], true, "{report}");
        // Recorded in the background: it appears shortly.
        let deadline = Instant::now() + Duration::from_secs(10);
        let run = loop {
            let runs = list(&root, &format!("agent={agent}&status=succeeded")).await;
            if let Some(run) = runs.first() {
                break run.clone();
            }
            assert!(Instant::now() < deadline, "no {agent} run recorded");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(run["objective"], objective);
        assert_eq!(run["dry_run"], false);
        assert_eq!(run["artifacts"]["ran"], true, "{run}");
        assert_eq!(run["artifacts"]["transitions"], report["transitions"]);
        assert_eq!(run["artifacts"]["errors_total"], 0);
        assert!(run["duration_ms"].is_i64());
        assert!(uuid::Uuid::parse_str(run["run_id"].as_str().unwrap()).is_ok());
        assert_eq!(
            list(&root, &format!("agent={agent}")).await.len(),
            1,
            "one run per cycle"
        );

        // On the trail (and the activity stream) as the scheduler's.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let events = stored(&app.store, &["agent_run_finished"]).await;
            if let Some(event) = events
                .iter()
                .find(|e| e.event.details["run_id"] == run["run_id"])
            {
                assert_eq!(event.event.principal_id.as_deref(), Some(agent));
                assert_eq!(event.event.details["status"], "succeeded");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no agent_run_finished for {agent}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let text = metrics(&app).await;
    assert!(
        sample(
            &text,
            "agent_runs_total",
            &[("agent", "status_scheduler"), ("status", "succeeded")]
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
}

async fn refusals_are_json_errors_with_the_right_status(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    let root = As::admin(&app);
    let body = json!({"agent": "a", "objective": "o", "run_id": "r1"});

    // 401: no token, or a token no one issued.
    let response = app
        .client
        .post(app.url(RUNS))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_json_error(response, 401, "unauthorized").await;
    let stranger = As::token(&app, "not-a-token");
    assert_json_error(stranger.get(RUNS).await, 401, "unauthorized").await;
    // 403: a valid token that is not the super admin's.
    root.expect(
        201,
        root.post("/api/v1/tenants", &json!({"id": "acme", "name": "Acme"}))
            .await,
    )
    .await;
    let tenant_admin = admin_token(&app, "acme").await;
    for response in [
        tenant_admin.post(RUNS, &body).await,
        tenant_admin.get(RUNS).await,
        tenant_admin.get(&format!("{RUNS}/r1")).await,
        tenant_admin
            .post(&finish_path("r1"), &json!({"status": "succeeded"}))
            .await,
    ] {
        assert_json_error(response, 403, "forbidden").await;
    }
    assert!(
        all_rows(&app).await.is_empty(),
        "nothing written by a refused caller"
    );

    // 404: no such run.
    assert_json_error(root.get(&format!("{RUNS}/nope")).await, 404, "not_found").await;
    assert_json_error(
        root.post(&finish_path("nope"), &json!({"status": "succeeded"}))
            .await,
        404,
        "not_found",
    )
    .await;

    // 409: a second finish; a run_id another agent holds.
    start(&root, body.clone()).await;
    finish(
        &root,
        "r1",
        json!({"status": "succeeded", "duration_ms": 5}),
    )
    .await;
    let conflict = assert_json_error(
        root.post(&finish_path("r1"), &json!({"status": "failed"}))
            .await,
        409,
        "conflict",
    )
    .await;
    assert!(
        conflict["error"]["message"]
            .as_str()
            .unwrap()
            .contains("succeeded")
    );
    assert_eq!(
        get(&root, "r1").await["status"],
        "succeeded",
        "the first finish stands"
    );
    assert_json_error(
        root.post(
            RUNS,
            &json!({"agent": "b", "objective": "o", "run_id": "r1"}),
        )
        .await,
        409,
        "conflict",
    )
    .await;
    // The same agent starting the same run again gets the stored run.
    let replay = root.expect(200, root.post(RUNS, &body).await).await;
    assert_eq!(replay["status"], "succeeded");
    assert_eq!(all_rows(&app).await.len(), 1);

    // 422 naming the field; 400 for what is not JSON or not a known parameter.
    for (body, field) in [
        (
            json!({"agent": "a", "objective": "x".repeat(513)}),
            "objective",
        ),
        (json!({"agent": "a b", "objective": "o"}), "agent"),
        (json!({"agent": "a".repeat(65), "objective": "o"}), "agent"),
        (json!({"objective": "o"}), "agent"),
        (json!({"agent": "a"}), "objective"),
        (
            json!({"agent": "a", "objective": "o", "plan": "do it"}),
            "plan",
        ),
        (
            json!({"agent": "a", "objective": "o", "dry_run": "yes"}),
            "dry_run",
        ),
        (
            json!({"agent": "a", "objective": "o", "user_email": "nobody"}),
            "user_email",
        ),
        (
            json!({"agent": "a", "objective": "o", "run_id": "has space"}),
            "run_id",
        ),
        (
            json!({"agent": "a", "objective": "o", "tenant_id": "acme"}),
            "tenant_id",
        ),
    ] {
        let error = assert_json_error(root.post(RUNS, &body).await, 422, "invalid_field").await;
        assert_eq!(error["error"]["field"], field, "{body}");
    }
    // Exactly 512 characters is an objective.
    start(
        &root,
        json!({"agent": "a", "objective": "é".repeat(512), "run_id": "r512"}),
    )
    .await;
    for (body, field) in [
        (json!({"status": "running"}), "status"),
        (json!({"status": "done"}), "status"),
        (json!({}), "status"),
        (
            json!({"status": "failed", "duration_ms": -1}),
            "duration_ms",
        ),
        (json!({"status": "failed", "artifacts": 3}), "artifacts"),
        (json!({"status": "failed", "error": 3}), "error"),
        (json!({"status": "failed", "agent": "a"}), "agent"),
    ] {
        let error = assert_json_error(
            root.post(&finish_path("r512"), &body).await,
            422,
            "invalid_field",
        )
        .await;
        assert_eq!(error["error"]["field"], field, "{body}");
    }
    assert_eq!(
        get(&root, "r512").await["status"],
        "running",
        "refused finishes change nothing"
    );
    assert_json_error(
        app.post_raw_as_admin(RUNS, "application/json", "{\"agent\": ")
            .await,
        400,
        "malformed_json",
    )
    .await;
    assert_json_error(
        app.post_raw_as_admin(RUNS, "text/plain", "agent=a").await,
        415,
        "unsupported_media_type",
    )
    .await;
    for query in [
        "limit=0",
        "limit=501",
        "status=done",
        "agent=a%20b",
        "cursor=abc",
    ] {
        assert_json_error(
            root.get(&format!("{RUNS}?{query}")).await,
            422,
            "invalid_field",
        )
        .await;
    }
    assert_json_error(
        root.get(&format!("{RUNS}?tenant=acme")).await,
        400,
        "bad_request",
    )
    .await;
    assert_json_error(root.get(&format!("{RUNS}/a%20b")).await, 404, "not_found").await;
}

async fn a_run_start_and_finish_appear_on_the_activity_stream(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    let root = As::admin(&app);
    let url = format!(
        "{}?operation=agent_run_started,agent_run_finished",
        app.url("/api/activity-stream")
    );
    let mut stream = crate::sse::open(&url, Some(&app.admin_token), None)
        .await
        .unwrap();

    start(
        &root,
        json!({"agent": "streamed", "objective": "o", "run_id": "live-1"}),
    )
    .await;
    finish(
        &root,
        "live-1",
        json!({"status": "failed", "error": "boom", "duration_ms": 9}),
    )
    .await;

    let mut seen = Vec::new();
    while seen.len() < 2 {
        let item = stream
            .next_event(Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{} of 2 agent-run events on the stream", seen.len()));
        if let Some((_, data)) = item.activity() {
            seen.push(data);
        }
    }
    assert_eq!(seen[0]["operation"], "agent_run_started", "{seen:?}");
    assert_eq!(seen[0]["details"]["run_id"], "live-1");
    assert_eq!(seen[0]["details"]["agent"], "streamed");
    assert_eq!(seen[0]["success"], true);
    assert_eq!(seen[1]["operation"], "agent_run_finished");
    assert_eq!(seen[1]["details"]["status"], "failed");
    assert_eq!(seen[1]["details"]["duration_ms"], 9);
    assert_eq!(seen[1]["success"], false);
    assert_eq!(seen[1]["error"], "boom");
}
