//! Delivery reports to a buy's reporting webhook, on a manual clock: the
//! AdCP envelope and its figures, HMAC over the raw bytes, one report per
//! period however many cycles, `force=true`, sequence numbers under a cycle
//! racing manual triggers, and the final report.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use overseer_actors::ManualClock;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::audit::stored;
use crate::domain::{As, media_buy, tenant_with_principal};
use crate::helpers::{Backend, TestApp, on_both_backends, spawn_app_with_clock};
use crate::receiver::Receiver;

on_both_backends!(a_buy_reports_once_per_period_in_sequence_and_finally,);

const SECRET: &str = "reporting-hmac-secret-of-at-least-32-chars";

fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
}

async fn run(app: &TestApp, scheduler: &str) -> Value {
    let response = app
        .client
        .post(app.url(&format!("/admin/schedulers/{scheduler}/run")))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Every report received so far, `(sequence, type, body)`, in arrival order.
fn reports(receiver: &Receiver) -> Vec<(i64, String, Value)> {
    receiver
        .received("/reports")
        .iter()
        .map(|r| {
            let body = r.json();
            let result = &body["result"];
            (
                result["sequence_number"].as_i64().unwrap(),
                result["notification_type"].as_str().unwrap().to_owned(),
                body,
            )
        })
        .collect()
}

async fn a_buy_reports_once_per_period_in_sequence_and_finally(backend: Backend) {
    let clock = ManualClock::new(at(2026, 11, 24, 0));
    let app = spawn_app_with_clock(
        backend,
        &[
            ("SKIP_CRON", "true"),
            ("WEBHOOK_ALLOWED_CIDRS", "127.0.0.1/32"),
            ("WEBHOOK_POLL_INTERVAL", "20ms"),
        ],
        clock.clone(),
    )
    .await;
    let receiver = Receiver::start();
    let (admin, buyer, _) = tenant_with_principal(&app, "acme").await;
    let mut body = media_buy(2_000.0, &[]);
    body["reporting_webhook"] = json!({
        "url": receiver.url("/reports"),
        "frequency": "daily",
        "authentication": {"type": "hmac-sha256", "credentials": SECRET},
    });
    let created = buyer
        .expect(201, buyer.post("/api/v1/media-buys", &body).await)
        .await;
    let id = created["media_buy_id"].as_str().unwrap().to_owned();

    // March 2nd, 10:00: live since the 1st, which delivered.
    clock.set(at(2027, 3, 2, 10));
    run(&app, "status").await;
    let delivery = json!({"rows": [
        {"package_id": "pkg-a", "date": "2027-03-01", "impressions": 1000, "clicks": 10, "spend": 12.5},
        {"package_id": "pkg-a", "date": "2027-03-02", "impressions": 400, "clicks": 1, "spend": 5},
    ]});
    admin
        .expect(
            200,
            admin
                .post(&format!("/api/v1/media-buys/{id}/delivery"), &delivery)
                .await,
        )
        .await;
    let report = run(&app, "delivery").await;
    assert_eq!(report["transitions"][0]["to"], "scheduled", "{report}");
    let got = receiver
        .wait_for("/reports", 1, Duration::from_secs(5))
        .await;
    let first = &got[0];
    let timestamp = &first.headers["x-adcp-timestamp"];
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&first.raw);
    assert_eq!(
        first.headers["x-adcp-signature"],
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    );
    let body = first.json();
    assert_eq!(body["task_type"], "media_buy_delivery");
    assert_eq!(body["operation_id"], format!("delivery.{id}"));
    assert_eq!(body["task_id"], id.as_str());
    let result = &body["result"];
    assert_eq!(result["notification_type"], "scheduled");
    assert_eq!(result["sequence_number"], 1);
    assert_eq!(
        result["reporting_period"],
        json!({"start": "2027-03-01T00:00:00Z", "end": "2027-03-02T00:00:00Z"})
    );
    assert_eq!(result["next_expected_at"], "2027-03-03T00:00:00Z");
    let delivered = &result["media_buy_deliveries"][0];
    assert_eq!(delivered["status"], "active");
    assert_eq!(
        delivered["totals"],
        json!({"impressions": 1000, "spend": 12.5, "clicks": 10, "ctr": 0.01}),
        "only March 1st counts"
    );
    assert_eq!(delivered["by_package"][0]["package_id"], "pkg-a");
    assert_eq!(delivered["by_package"][0]["pricing_model"], "cpm");

    // Later cycles the same day find the period reported.
    for _ in 0..2 {
        let again = run(&app, "delivery").await;
        assert!(
            again["transitions"].as_array().unwrap().is_empty(),
            "{again}"
        );
    }
    let report_path = format!("/api/v1/media-buys/{id}/delivery/report");
    let asked = admin
        .expect(200, admin.post(&report_path, &json!({})).await)
        .await;
    assert_eq!(asked["queued"], false);
    receiver
        .still("/reports", 1, Duration::from_millis(300))
        .await;

    // force=true sends another, audited.
    let forced = admin
        .expect(
            200,
            admin
                .post(&format!("{report_path}?force=true"), &json!({}))
                .await,
        )
        .await;
    assert_eq!(forced["sequence_number"], 2);
    receiver
        .wait_for("/reports", 2, Duration::from_secs(5))
        .await;
    assert_eq!(
        stored(&app.store, &["delivery_report_forced"]).await.len(),
        1
    );
    assert_eq!(
        buyer
            .post(&format!("{report_path}?force=true"), &json!({}))
            .await
            .status(),
        403
    );

    // Next day: a cycle racing forced reports; numbers stay strictly
    // increasing, no gap, no duplicate.
    clock.set(at(2027, 3, 3, 10));
    let (cycle, a, b) = futures_util::join!(
        run(&app, "delivery"),
        force(&admin, &report_path),
        force(&admin, &report_path),
    );
    assert_eq!(a, 200);
    assert_eq!(b, 200);
    assert_eq!(cycle["errors"].as_array().unwrap().len(), 0, "{cycle}");
    let stored_reports = app.store.reports_of(&id).await.unwrap();
    let numbers: Vec<i64> = stored_reports.iter().map(|r| r.0).collect();
    assert_eq!(numbers, (1..=5).collect::<Vec<_>>());

    // The flight ends: one final report over the whole flight, no next.
    clock.set(at(2027, 4, 1, 10));
    run(&app, "status").await;
    let finals = run(&app, "delivery").await;
    assert_eq!(finals["transitions"][0]["to"], "final", "{finals}");
    run(&app, "delivery").await;
    receiver
        .wait_for("/reports", 6, Duration::from_secs(5))
        .await;
    receiver
        .still("/reports", 6, Duration::from_millis(300))
        .await;
    let all = reports(&receiver);
    let (sequence, kind, body) = all.iter().max_by_key(|r| r.0).unwrap();
    assert_eq!((*sequence, kind.as_str()), (6, "final"));
    assert!(body["result"].get("next_expected_at").is_none());
    assert_eq!(
        body["result"]["media_buy_deliveries"][0]["status"],
        "completed"
    );
    assert_eq!(
        body["result"]["media_buy_deliveries"][0]["totals"]["impressions"],
        1400
    );
    let keys: HashSet<String> = all
        .iter()
        .map(|r| r.2["idempotency_key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys.len(), 6, "one idempotency key per report");
}

async fn force(admin: &As<'_>, path: &str) -> reqwest::StatusCode {
    admin
        .post(&format!("{path}?force=true"), &json!({}))
        .await
        .status()
}
