//! The media-buy status scheduler end to end, on a manual clock: the
//! transition matrix, a row the database refuses, idempotent cycles, audit
//! rows and notices in the same transaction, two replicas at once, and the
//! interval configuration.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use overseer::store::Store;
use overseer_actors::ManualClock;
use serde_json::{Value, json};

use crate::audit::{raw_sql, stored, verify};
use crate::domain::{As, media_buy, tenant_with_principal};
use crate::helpers::{
    Backend, TestApp, TestDatabase, config_from, on_both_backends, spawn_app_on_with_clock,
    spawn_app_with_clock,
};

on_both_backends!(
    the_status_matrix_moves_what_is_due_and_nothing_else,
    two_replicas_move_and_announce_each_buy_once,
);

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
}

/// A buy with its own flight and creatives.
fn buy(start: &str, end: &str, budget: f64, creatives: &[&str]) -> Value {
    let mut body = media_buy(budget, creatives);
    body["flight_start"] = json!(start);
    body["flight_end"] = json!(end);
    body
}

async fn create(buyer: &As<'_>, body: &Value) -> String {
    let created = buyer
        .expect(201, buyer.post("/api/v1/media-buys", body).await)
        .await;
    created["media_buy_id"].as_str().unwrap().to_owned()
}

async fn run_cycle(app: &TestApp) -> Value {
    let response = app
        .client
        .post(app.url("/admin/schedulers/status/run"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// `{"from→to": count}` of a cycle report.
fn moves(report: &Value) -> HashMap<String, u64> {
    report["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                format!(
                    "{}→{}",
                    t["from"].as_str().unwrap(),
                    t["to"].as_str().unwrap()
                ),
                t["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

async fn status(store: &Store, id: &str) -> String {
    store
        .media_buy(id)
        .await
        .unwrap()
        .unwrap()
        .status
        .as_str()
        .to_owned()
}

async fn outbox_count(store: &Store, kind: &str) -> usize {
    store
        .outbox(0, 100_000)
        .await
        .unwrap()
        .iter()
        .filter(|r| r.kind == kind)
        .count()
}

const REFUSE_SQLITE: &str = "CREATE TRIGGER refuse_bad_row BEFORE UPDATE ON media_buys \
     WHEN OLD.id = '{id}' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END";
const REFUSE_POSTGRES: &str = "CREATE FUNCTION refuse_bad_row() RETURNS trigger AS $$ \
     BEGIN IF OLD.id = '{id}' THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END \
     $$ LANGUAGE plpgsql; \
     CREATE TRIGGER refuse_bad_row BEFORE UPDATE ON media_buys FOR EACH ROW \
     EXECUTE FUNCTION refuse_bad_row()";

async fn the_status_matrix_moves_what_is_due_and_nothing_else(backend: Backend) {
    let clock = ManualClock::new(at(2026, 11, 24));
    let app = spawn_app_with_clock(
        backend,
        &[
            ("SKIP_CRON", "true"),
            ("WEBHOOK_ALLOWED_CIDRS", "127.0.0.1/32"),
        ],
        clock.clone(),
    )
    .await;
    let receiver = crate::receiver::Receiver::start();
    let (admin, buyer, _) = tenant_with_principal(&app, "acme").await;
    buyer
        .expect(
            201,
            buyer
                .post(
                    "/api/v1/push-notification-configs",
                    &json!({"url": receiver.url("/status"), "authentication_type": "bearer",
                            "authentication_token": "buyer-token"}),
                )
                .await,
        )
        .await;
    admin
        .expect(
            200,
            admin
                .patch(
                    "/api/v1/tenant/settings",
                    &json!({"approval_threshold": 50_000}),
                )
                .await,
        )
        .await;
    buyer
        .expect(
            200,
            buyer
                .post(
                    "/api/v1/creatives",
                    &json!({"creatives": [
                        {"creative_id": "cr-ok", "name": "A", "format": "display_300x250", "url": "https://cdn.example/a.png"},
                        {"creative_id": "cr-wait", "name": "B", "format": "display_300x250", "url": "https://cdn.example/b.png"},
                    ]}),
                )
                .await,
        )
        .await;
    admin
        .expect(
            200,
            admin
                .post("/api/v1/creatives/cr-ok/approve", &json!({}))
                .await,
        )
        .await;

    let (march, june, jan, feb, dec) = (
        ("2027-03-01T00:00:00Z", "2027-03-31T00:00:00Z"),
        ("2027-06-01T00:00:00Z", "2027-06-30T00:00:00Z"),
        "2027-01-01T00:00:00Z",
        "2027-02-01T00:00:00Z",
        "2027-12-31T00:00:00Z",
    );
    let approved = create(&buyer, &buy(march.0, march.1, 1_000.0, &["cr-ok"])).await;
    let in_review = create(
        &buyer,
        &buy(march.0, march.1, 1_000.0, &["cr-ok", "cr-wait"]),
    )
    .await;
    let no_creatives = create(&buyer, &buy(march.0, march.1, 1_000.0, &[])).await;
    let future = create(&buyer, &buy(june.0, june.1, 1_000.0, &[])).await;
    let ends_in_feb = create(&buyer, &buy(jan, feb, 1_000.0, &[])).await;
    let runs_all_year = create(&buyer, &buy(jan, dec, 1_000.0, &[])).await;
    let paused = create(&buyer, &buy(jan, feb, 1_000.0, &[])).await;
    let awaiting_approval = create(&buyer, &buy(jan, feb, 60_000.0, &[])).await;
    let never_started = create(&buyer, &buy(jan, feb, 1_000.0, &["cr-wait"])).await;
    let bad = create(&buyer, &buy(march.0, march.1, 1_000.0, &[])).await;
    assert_eq!(
        status(&app.store, &awaiting_approval).await,
        "pending_approval"
    );

    // Mid-January: the January flights with nothing pending go live.
    clock.set(at(2027, 1, 15));
    let report = run_cycle(&app).await;
    assert_eq!(report["ran"], true);
    assert_eq!(
        moves(&report),
        HashMap::from([("pending_activation→active".into(), 3)])
    );
    for id in [&ends_in_feb, &runs_all_year, &paused] {
        assert_eq!(status(&app.store, id).await, "active");
    }
    assert_eq!(
        status(&app.store, &never_started).await,
        "pending_activation"
    );
    buyer
        .expect(
            200,
            buyer
                .patch(
                    &format!("/api/v1/media-buys/{paused}"),
                    &json!({"paused": true}),
                )
                .await,
        )
        .await;

    // The database refuses any change to one row.
    let refuse = match backend {
        Backend::Sqlite => REFUSE_SQLITE,
        Backend::Postgres => REFUSE_POSTGRES,
    }
    .replace("{id}", &bad);
    raw_sql(&app, backend, &refuse).await.unwrap();

    // March 1st, one second past midnight.
    let march_1 = at(2027, 3, 1) + chrono::Duration::seconds(1);
    clock.set(march_1);
    let report = run_cycle(&app).await;
    assert_eq!(
        moves(&report),
        HashMap::from([
            ("pending_activation→active".into(), 2),
            ("active→completed".into(), 1),
            ("pending_activation→failed".into(), 1),
        ]),
        "{report}"
    );
    assert_eq!(report["errors"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["errors"][0]["media_buy_id"], bad.as_str());
    let expected = [
        (&approved, "active"),
        (&in_review, "pending_activation"),
        (&no_creatives, "active"),
        (&future, "pending_activation"),
        (&ends_in_feb, "completed"),
        (&runs_all_year, "active"),
        (&paused, "paused"),
        (&awaiting_approval, "pending_approval"),
        (&never_started, "failed"),
        (&bad, "pending_activation"),
    ];
    for (id, want) in expected {
        assert_eq!(status(&app.store, id).await, want, "{id}");
    }

    // Two more cycles change nothing (the bad row is reported again).
    for _ in 0..2 {
        let again = run_cycle(&app).await;
        assert!(moves(&again).is_empty(), "{again}");
        assert_eq!(again["errors"].as_array().unwrap().len(), 1);
    }

    // Each move has its audit row (committed with it) and its notice.
    let rows = stored(&app.store, &["media_buy_status_changed"]).await;
    assert_eq!(rows.len(), 7);
    let mut seen: HashMap<String, (String, String)> = HashMap::new();
    for row in &rows {
        let d = &row.event.details;
        assert_eq!(row.event.principal_id.as_deref(), Some("system"));
        assert_eq!(row.event.tenant_id.as_deref(), Some("acme"));
        assert!(!d["reason"].as_str().unwrap().is_empty());
        seen.insert(
            d["media_buy_id"].as_str().unwrap().to_owned(),
            (
                d["from"].as_str().unwrap().to_owned(),
                d["to"].as_str().unwrap().to_owned(),
            ),
        );
    }
    assert_eq!(
        seen.len(),
        6,
        "ends_in_feb moved twice, everything else once"
    );
    assert_eq!(
        seen[&never_started],
        ("pending_activation".into(), "failed".into())
    );
    assert_eq!(seen[&ends_in_feb], ("active".into(), "completed".into()));
    // ... and its buyer webhook: one status change per move, to the config.
    for (id, moves) in [
        (&ends_in_feb, 2),
        (&runs_all_year, 1),
        (&paused, 1),
        (&approved, 1),
        (&no_creatives, 1),
        (&never_started, 1),
        (&in_review, 0),
        (&bad, 0),
        (&future, 0),
    ] {
        let hooks = app.store.webhook_rows(id).await.unwrap();
        assert_eq!(hooks.len(), moves, "{id}");
        assert!(hooks.iter().all(|h| h.task_type == "update_media_buy"));
    }
    receiver
        .wait_for("/status", 7, Duration::from_secs(10))
        .await;
    assert_eq!(outbox_count(&app.store, "media_buy_activated").await, 5);
    assert_eq!(outbox_count(&app.store, "media_buy_completed").await, 1);
    assert_eq!(outbox_count(&app.store, "media_buy_failed").await, 1);
    assert_eq!(verify(&app, "acme").await["ok"], true);

    // What operators see.
    let (_, health) = app.health().await;
    let scheduler = &health["components"]["schedulers"]["status"];
    assert_eq!(scheduler["enabled"], false, "SKIP_CRON");
    assert_eq!(scheduler["errors"], 1);
    assert_eq!(scheduler["transitions"], 0);
    assert_eq!(
        scheduler["last_run_at"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap(),
        march_1
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for metric in [
        "media_buy_transitions_total{from=\"pending_activation\",to=\"active\"}",
        "scheduler_runs_total{scheduler=\"status\",result=\"partial\"}",
    ] {
        assert!(metrics.contains(metric), "no {metric}");
    }

    // Only the super admin may run a cycle.
    let refused = buyer.post("/admin/schedulers/status/run", &json!({})).await;
    assert_eq!(refused.status(), 403);
    let refused = admin.post("/admin/schedulers/status/run", &json!({})).await;
    assert_eq!(refused.status(), 403);
}

async fn two_replicas_move_and_announce_each_buy_once(backend: Backend) {
    let clock = ManualClock::new(at(2026, 11, 24));
    let db = TestDatabase::new(backend).await;
    let url = db.url.clone();
    let vars = [
        ("SKIP_CRON", "true"),
        ("WEBHOOK_ALLOWED_CIDRS", "127.0.0.1/32"),
    ];
    let first = spawn_app_on_with_clock(db, &url, &vars, clock.clone()).await;
    let second = first.replica_with_clock(&url, &vars, clock.clone()).await;
    let receiver = crate::receiver::Receiver::start();
    let (_, buyer, _) = tenant_with_principal(&first, "acme").await;
    buyer
        .expect(
            201,
            buyer
                .post(
                    "/api/v1/push-notification-configs",
                    &json!({"url": receiver.url("/status"), "authentication_type": "bearer",
                            "authentication_token": "buyer-token"}),
                )
                .await,
        )
        .await;
    let mut ids = Vec::new();
    for _ in 0..40 {
        ids.push(
            create(
                &buyer,
                &buy("2027-03-01T00:00:00Z", "2027-03-31T00:00:00Z", 1_000.0, &[]),
            )
            .await,
        );
    }

    clock.set(at(2027, 3, 2));
    // Both replicas, several times each, at the same moment.
    let runs = [&first, &second, &first, &second]
        .into_iter()
        .map(run_cycle);
    let reports = futures_util::future::join_all(runs).await;
    let moved: u64 = reports.iter().flat_map(|r| moves(r).into_values()).sum();
    assert_eq!(moved, 40, "{reports:?}");

    let rows = stored(&first.store, &["media_buy_status_changed"]).await;
    assert_eq!(rows.len(), 40);
    let mut once: HashMap<String, usize> = HashMap::new();
    for row in &rows {
        *once
            .entry(
                row.event.details["media_buy_id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
            .or_default() += 1;
    }
    assert!(once.values().all(|n| *n == 1));
    assert_eq!(once.len(), ids.len());
    assert_eq!(outbox_count(&first.store, "media_buy_activated").await, 40);
    // One buyer webhook per buy, delivered once (two senders, one outbox).
    for id in &ids {
        assert_eq!(first.store.webhook_rows(id).await.unwrap().len(), 1);
    }
    receiver
        .wait_for("/status", 40, Duration::from_secs(15))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = receiver.received("/status");
    let keys: std::collections::HashSet<String> = sent
        .iter()
        .map(|r| r.json()["idempotency_key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys.len(), 40);
    assert_eq!(sent.len(), 40, "each sent once by one of the two senders");
    assert_eq!(verify(&first, "acme").await["ok"], true);
}

/// PostgreSQL only: the scheduler's session lock exists only there. A cycle
/// cancelled while it holds the lock (here: its update sleeps in a trigger
/// past the caller's patience) must not leave the lock held by a pooled
/// connection — the next cycle runs.
#[actix_web::test]
async fn a_cancelled_cycle_does_not_leave_the_lock_held() {
    crate::helpers::run_test(async move {
        let clock = ManualClock::new(at(2026, 11, 24));
        let app =
            spawn_app_with_clock(Backend::Postgres, &[("SKIP_CRON", "true")], clock.clone()).await;
        let (_, buyer, _) = tenant_with_principal(&app, "acme").await;
        let id = create(
            &buyer,
            &buy("2027-03-01T00:00:00Z", "2027-03-31T00:00:00Z", 1_000.0, &[]),
        )
        .await;
        raw_sql(
            &app,
            Backend::Postgres,
            "CREATE FUNCTION slow_update() RETURNS trigger AS $$ BEGIN PERFORM pg_sleep(2); \
             RETURN NEW; END $$ LANGUAGE plpgsql; \
             CREATE TRIGGER slow_update BEFORE UPDATE ON media_buys FOR EACH ROW \
             EXECUTE FUNCTION slow_update()",
        )
        .await
        .unwrap();
        let now = at(2027, 3, 2);
        let cancelled =
            tokio::time::timeout(Duration::from_millis(500), app.store.run_status_cycle(now)).await;
        assert!(cancelled.is_err(), "the cycle was still running");
        raw_sql(
            &app,
            Backend::Postgres,
            "DROP TRIGGER slow_update ON media_buys",
        )
        .await
        .unwrap();
        // Whichever pooled connection the next cycle gets, the lock is free.
        for _ in 0..4 {
            let cycle = app.store.run_status_cycle(now).await.unwrap();
            assert!(!cycle.locked_out, "the scheduler lock was left held");
        }
        assert_eq!(status(&app.store, &id).await, "active");
    })
    .await;
}

#[test]
fn empty_intervals_mean_the_defaults() {
    let config = config_from(&[("MEDIA_BUY_STATUS_CHECK_INTERVAL", "")]);
    assert_eq!(config.status_check_interval, Duration::from_secs(60));
    let config = config_from(&[("MEDIA_BUY_STATUS_CHECK_INTERVAL", "5m")]);
    assert_eq!(config.status_check_interval, Duration::from_secs(300));
    let config = config_from(&[("DELIVERY_WEBHOOK_INTERVAL", "")]);
    assert_eq!(config.delivery_interval, Duration::from_secs(3_600));
    let config = config_from(&[("DELIVERY_WEBHOOK_INTERVAL", "90")]);
    assert_eq!(config.delivery_interval, Duration::from_secs(90));
}
