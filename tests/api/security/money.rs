//! Amounts an attacker (or a broken adapter) makes as large as the API lets
//! them, to wrap a sum or make one vanish (issue 22, item 6):
//!
//! - nine packages of 1e12 as one 9e12 budget, past the documented maximum;
//! - spend of 1e12 a row against a budget of 100: refused beyond
//!   `DELIVERY_SPEND_MAX_BUDGET_MULTIPLE` times the budget, and at the largest
//!   multiple every accepted row is counted, in the API and in the buyer's
//!   final report;
//! - rows stored before the cap existed, whose sum no longer fits: a 422 and
//!   no report, never a wrapped figure.
//!
//! Each test also walks every JSON it got back, every report the buyer's
//! receiver got and every row of the trail for a negative number.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use overseer_actors::ManualClock;
use serde_json::{Value, json};

use crate::audit::{raw_sql, stored};
use crate::domain::{As, media_buy, tenant_with_principal};
use crate::helpers::{
    Backend, TestApp, assert_json_error, on_both_backends, spawn_app, spawn_app_with_clock,
};
use crate::receiver::Receiver;

on_both_backends!(
    packages_totalling_more_than_a_trillion_are_refused,
    spend_beyond_the_budget_multiple_is_refused_and_nothing_is_dropped,
    at_the_largest_multiple_every_row_counts_in_the_api_and_the_final_report,
    sums_stored_before_the_cap_never_reach_the_wire_wrapped,
);

const TRILLION: f64 = 1e12;

fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
}

/// Every number in `value` is finite and not negative.
fn assert_no_negative(what: &str, value: &Value) {
    match value {
        Value::Number(n) => {
            let f = n.as_f64().unwrap();
            assert!(f.is_finite() && f >= 0.0, "{what}: {f} in a figure");
        }
        Value::Array(items) => items.iter().for_each(|v| assert_no_negative(what, v)),
        Value::Object(map) => map.values().for_each(|v| assert_no_negative(what, v)),
        _ => {}
    }
}

/// No row of the trail carries a negative number in its details.
async fn assert_trail_has_no_negative(app: &TestApp) {
    for row in stored(&app.store, &[]).await {
        assert_no_negative(&row.event.operation, &row.event.details);
    }
}

async fn adapter<'a>(app: &'a TestApp, tenant: &str) -> As<'a> {
    let root = As::admin(app);
    let created = root
        .expect(
            201,
            root.post(
                &format!("/api/v1/tenants/{tenant}/adapter-tokens"),
                &json!({}),
            )
            .await,
        )
        .await;
    As::token(app, created["token"].as_str().unwrap())
}

fn rows(days: std::ops::RangeInclusive<u32>, spend: f64) -> Value {
    let rows: Vec<Value> = days
        .map(|d| {
            json!({"package_id": "pkg-a", "date": format!("2027-03-{d:02}"),
                   "impressions": 1000, "clicks": 1, "spend": spend})
        })
        .collect();
    json!({ "rows": rows })
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

/// A buy of `budget` reporting daily to `receiver`'s `/reports`.
fn reporting_buy(budget: f64, receiver: &Receiver) -> Value {
    let mut body = media_buy(budget, &[]);
    body["reporting_webhook"] = json!({
        "url": receiver.url("/reports"),
        "frequency": "daily",
        "authentication": {"type": "bearer", "credentials": "buyer-token"},
    });
    body
}

async fn packages_totalling_more_than_a_trillion_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, buyer, _) = tenant_with_principal(&app, "acme").await;
    let with_packages = |n: usize, each: f64| {
        let mut body = media_buy(2.0, &[]);
        body["packages"] = Value::Array(
            (0..n)
                .map(|i| {
                    json!({"package_id": format!("p{i}"), "budget": each,
                           "pricing_model": "cpm", "rate": 1})
                })
                .collect(),
        );
        body
    };
    for n in [2, 9, 10, 100] {
        let refused = assert_json_error(
            buyer
                .post("/api/v1/media-buys", &with_packages(n, TRILLION))
                .await,
            422,
            "invalid_field",
        )
        .await;
        assert_eq!(
            refused["error"]["field"], "packages.budget",
            "{n}: {refused}"
        );
    }
    // Exactly the maximum is a budget.
    let created = buyer
        .expect(
            201,
            buyer
                .post("/api/v1/media-buys", &with_packages(2, TRILLION / 2.0))
                .await,
        )
        .await;
    assert_eq!(created["budget"].as_f64(), Some(TRILLION));
    let list = buyer
        .expect(200, buyer.get("/api/v1/media-buys").await)
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_no_negative("list", &list);
}

async fn spend_beyond_the_budget_multiple_is_refused_and_nothing_is_dropped(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, buyer, _) = tenant_with_principal(&app, "acme").await;
    let adapter = adapter(&app, "acme").await;
    let created = buyer
        .expect(
            201,
            buyer
                .post("/api/v1/media-buys", &media_buy(100.0, &[]))
                .await,
        )
        .await;
    let path = format!(
        "/api/v1/media-buys/{}/delivery",
        created["media_buy_id"].as_str().unwrap()
    );

    // The reported attack: ten rows of 1e12 against a budget of 100.
    let refused = assert_json_error(
        adapter.post(&path, &rows(1..=10, TRILLION)).await,
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(refused["error"]["field"], "rows.spend", "{refused}");
    let report = buyer.expect(200, buyer.get(&path).await).await;
    assert_eq!(
        report["days"],
        json!([]),
        "nothing of a refused post is kept"
    );

    // The default multiple is 2: up to 200 of spend on a budget of 100.
    adapter
        .expect(200, adapter.post(&path, &rows(1..=1, 150.0)).await)
        .await;
    assert_json_error(
        adapter.post(&path, &rows(2..=2, 60.0)).await,
        422,
        "invalid_field",
    )
    .await;
    // A correction replaces its day: 100 + 60 fits.
    let corrected = json!({"rows": [
        {"package_id": "pkg-a", "date": "2027-03-01", "impressions": 10, "clicks": 1, "spend": 100},
        {"package_id": "pkg-a", "date": "2027-03-02", "impressions": 10, "clicks": 1, "spend": 60},
    ]});
    adapter
        .expect(200, adapter.post(&path, &corrected).await)
        .await;
    // The same package and day twice in one post is refused, not collapsed.
    let twice = json!({"rows": [
        {"package_id": "pkg-a", "date": "2027-03-03", "impressions": 10, "clicks": 1, "spend": 1},
        {"package_id": "pkg-a", "date": "2027-03-03", "impressions": 20, "clicks": 1, "spend": 2},
    ]});
    let dup = assert_json_error(adapter.post(&path, &twice).await, 422, "invalid_field").await;
    assert_eq!(dup["error"]["field"], "rows.date", "{dup}");

    let report = buyer.expect(200, buyer.get(&path).await).await;
    assert_eq!(report["days"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(report["totals"]["spend"].as_f64(), Some(160.0), "{report}");
    assert_eq!(report["totals"]["impressions"], 20);
    assert_no_negative("delivery", &report);
    assert_trail_has_no_negative(&app).await;
}

async fn at_the_largest_multiple_every_row_counts_in_the_api_and_the_final_report(
    backend: Backend,
) {
    let clock = ManualClock::new(at(2026, 11, 24, 0));
    let app = spawn_app_with_clock(
        backend,
        &[
            ("SKIP_CRON", "true"),
            ("WEBHOOK_ALLOWED_CIDRS", "127.0.0.1/32"),
            ("WEBHOOK_POLL_INTERVAL", "20ms"),
            ("DELIVERY_SPEND_MAX_BUDGET_MULTIPLE", "9"),
        ],
        clock.clone(),
    )
    .await;
    let receiver = Receiver::start();
    let (admin, buyer, _) = tenant_with_principal(&app, "acme").await;
    let adapter = adapter(&app, "acme").await;
    let created = buyer
        .expect(
            201,
            buyer
                .post("/api/v1/media-buys", &reporting_buy(TRILLION, &receiver))
                .await,
        )
        .await;
    let id = created["media_buy_id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/media-buys/{id}/delivery");
    clock.set(at(2027, 3, 10, 10));
    run(&app, "status").await;

    // Nine rows of 1e12: 9e12, the most a buy of 1e12 may spend at 9x.
    adapter
        .expect(200, adapter.post(&path, &rows(1..=9, TRILLION)).await)
        .await;
    // The tenth is refused out loud (it used to vanish from the totals).
    let tenth = assert_json_error(
        adapter.post(&path, &rows(10..=10, TRILLION)).await,
        422,
        "invalid_field",
    )
    .await;
    assert_eq!(tenth["error"]["field"], "rows.spend");
    let report = admin.expect(200, admin.get(&path).await).await;
    assert_eq!(report["days"].as_array().unwrap().len(), 9);
    assert_eq!(
        report["totals"]["spend"].as_f64(),
        Some(9.0 * TRILLION),
        "{report}"
    );
    assert_eq!(report["totals"]["impressions"], 9_000);
    assert_no_negative("delivery", &report);

    // The flight ends: the final report to the buyer carries the exact sum.
    clock.set(at(2027, 4, 1, 10));
    run(&app, "status").await;
    let cycle = run(&app, "delivery").await;
    assert_eq!(cycle["errors"].as_array().unwrap().len(), 0, "{cycle}");
    let got = receiver
        .wait_for("/reports", 1, Duration::from_secs(5))
        .await;
    let body = got.last().unwrap().json();
    assert_eq!(body["result"]["notification_type"], "final", "{body}");
    let delivered = &body["result"]["media_buy_deliveries"][0];
    assert_eq!(
        delivered["totals"]["spend"].as_f64(),
        Some(9.0 * TRILLION),
        "{body}"
    );
    assert_eq!(
        delivered["by_package"][0]["spend"].as_f64(),
        Some(9.0 * TRILLION)
    );
    for report in receiver.all() {
        assert_no_negative("report", &report.json());
    }
    assert_trail_has_no_negative(&app).await;
}

async fn sums_stored_before_the_cap_never_reach_the_wire_wrapped(backend: Backend) {
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
    let created = buyer
        .expect(
            201,
            buyer
                .post("/api/v1/media-buys", &reporting_buy(100.0, &receiver))
                .await,
        )
        .await;
    let id = created["media_buy_id"].as_str().unwrap().to_owned();
    clock.set(at(2027, 3, 12, 10));
    run(&app, "status").await;
    // Ten rows of 1e12 (1e18 micro-units each), written before the cap
    // existed: their sum does not fit in 64 bits.
    for day in 1..=10 {
        raw_sql(
            &app,
            backend,
            &format!(
                "INSERT INTO media_buy_delivery (media_buy_id, package_id, day, impressions, \
                 clicks, spend_micros, updated_at) VALUES ('{id}', 'pkg-a', '2027-03-{day:02}', \
                 1000, 1, 1000000000000000000, '2027-03-12T00:00:00Z')"
            ),
        )
        .await
        .unwrap();
    }

    let path = format!("/api/v1/media-buys/{id}/delivery");
    let refused = assert_json_error(buyer.get(&path).await, 422, "invalid_field").await;
    assert_no_negative("delivery", &refused);

    // No report is queued with a wrapped figure: the final report sums the
    // whole flight, which no longer fits, so it is refused, scheduled or
    // forced.
    clock.set(at(2027, 4, 1, 10));
    run(&app, "status").await;
    let cycle = run(&app, "delivery").await;
    assert_eq!(cycle["errors"].as_array().unwrap().len(), 1, "{cycle}");
    let forced = admin
        .post(&format!("{path}/report?force=true"), &json!({}))
        .await;
    assert!(forced.status().is_client_error(), "{}", forced.status());
    receiver
        .still("/reports", 0, Duration::from_millis(300))
        .await;
    assert!(app.store.reports_of(&id).await.unwrap().is_empty());
    assert_trail_has_no_negative(&app).await;
}
