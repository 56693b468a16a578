//! A buyer trying to run a buy at a budget no human approved (issue 22,
//! item 2), with the tenant's `approval_threshold` at 1,000 and the status
//! scheduler driven on a manual clock:
//!
//! - paused, raised to 1e9, resumed: the raise waits for a human;
//! - raised again while waiting: the pending task is replaced, the old one
//!   can no longer be approved, and the admin approves the amount shown;
//! - raised (or its flight moved) while running: back to a human;
//! - a budget written behind the API's back: the scheduler will not start it.
//!
//! After every step, [`assert_no_unapproved_active_buy`] checks the invariant
//! itself: no `active` buy is above the threshold without an approved
//! workflow for at least its budget.

use chrono::{DateTime, TimeZone, Utc};
use overseer_actors::ManualClock;
use serde_json::{Value, json};

use crate::audit::{raw_sql, stored};
use crate::domain::{As, media_buy, tenant_with_principal};
use crate::helpers::{Backend, TestApp, on_both_backends, spawn_app_with_clock};

on_both_backends!(
    a_paused_buy_raised_to_a_billion_waits_for_a_human_after_resuming,
    a_raise_while_waiting_replaces_the_task_and_the_old_one_cannot_be_approved,
    a_running_buy_raised_or_moved_above_the_threshold_stops_until_approved,
    the_scheduler_refuses_a_budget_above_the_approved_one,
);

const THRESHOLD: f64 = 1_000.0;

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
}

/// The app on a manual clock before the flights (March 2027), no timers.
async fn app(backend: Backend) -> (TestApp, ManualClock) {
    let clock = ManualClock::new(at(2026, 11, 24));
    let app = spawn_app_with_clock(backend, &[("SKIP_CRON", "true")], clock.clone()).await;
    (app, clock)
}

async fn with_threshold<'a>(app: &'a TestApp) -> (As<'a>, As<'a>) {
    let (admin, buyer, _) = tenant_with_principal(app, "acme").await;
    admin
        .expect(
            200,
            admin
                .patch(
                    "/api/v1/tenant/settings",
                    &json!({"approval_threshold": THRESHOLD}),
                )
                .await,
        )
        .await;
    (admin, buyer)
}

async fn create(buyer: &As<'_>, budget: f64) -> (String, Value) {
    let created = buyer
        .expect(
            201,
            buyer
                .post("/api/v1/media-buys", &media_buy(budget, &[]))
                .await,
        )
        .await;
    (
        created["media_buy_id"].as_str().unwrap().to_owned(),
        created,
    )
}

async fn run_status_cycle(app: &TestApp) -> Value {
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

async fn buy(admin: &As<'_>, id: &str) -> Value {
    admin
        .expect(200, admin.get(&format!("/api/v1/media-buys/{id}")).await)
        .await
}

async fn patch(buyer: &As<'_>, id: &str, body: Value) -> Value {
    buyer
        .expect(
            200,
            buyer
                .patch(&format!("/api/v1/media-buys/{id}"), &body)
                .await,
        )
        .await
}

async fn workflows(admin: &As<'_>, status: &str) -> Vec<Value> {
    admin
        .expect(
            200,
            admin
                .get(&format!("/api/v1/workflows?status={status}&limit=500"))
                .await,
        )
        .await["items"]
        .as_array()
        .unwrap()
        .clone()
}

/// The invariant: every `active` buy above the threshold has an approved
/// workflow for at least its budget.
async fn assert_no_unapproved_active_buy(admin: &As<'_>) {
    let active = admin
        .expect(
            200,
            admin
                .get("/api/v1/media-buys?status=active&limit=500")
                .await,
        )
        .await;
    let approved = workflows(admin, "approved").await;
    for buy in active["items"].as_array().unwrap() {
        let budget = buy["budget"].as_f64().unwrap();
        if budget <= THRESHOLD {
            continue;
        }
        let covered = approved.iter().any(|w| {
            w["media_buy_id"] == buy["media_buy_id"]
                && w["budget"].as_f64().is_some_and(|b| b >= budget)
        });
        assert!(
            covered,
            "active at {budget} with no approved workflow for it: {buy}; approved: {approved:?}"
        );
    }
}

async fn approve(admin: &As<'_>, workflow_id: &str) -> reqwest::Response {
    admin
        .post(
            &format!("/api/v1/workflows/{workflow_id}/approve"),
            &json!({}),
        )
        .await
}

/// Bypass 1: `{"paused": true, "budget": 1e9}` left a buy paused with no
/// workflow; resuming sent it to `pending_activation` and the scheduler
/// made it `active` at 1e9.
async fn a_paused_buy_raised_to_a_billion_waits_for_a_human_after_resuming(backend: Backend) {
    let (app, clock) = app(backend).await;
    let (admin, buyer) = with_threshold(&app).await;
    let (id, created) = create(&buyer, 100.0).await;
    assert_eq!(created["status"], "pending_activation");

    let raised = patch(
        &buyer,
        &id,
        json!({"paused": true, "budget": 1_000_000_000}),
    )
    .await;
    assert_eq!(raised["status"], "paused");
    let workflow_id = raised["workflow_id"]
        .as_str()
        .unwrap_or_else(|| panic!("a raise above the threshold opens a workflow: {raised}"))
        .to_owned();
    let pending = workflows(&admin, "pending").await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["workflow_id"], workflow_id.as_str());
    assert_eq!(
        pending[0]["budget"].as_f64(),
        Some(1e9),
        "the amount to approve"
    );

    // Resuming goes to the human, not to the scheduler.
    let resumed = patch(&buyer, &id, json!({"paused": false})).await;
    assert_eq!(resumed["status"], "pending_approval");
    clock.set(at(2027, 3, 2));
    run_status_cycle(&app).await;
    assert_eq!(buy(&admin, &id).await["status"], "pending_approval");
    assert_no_unapproved_active_buy(&admin).await;

    // Approved, it runs at the amount the admin saw.
    admin.expect(200, approve(&admin, &workflow_id).await).await;
    run_status_cycle(&app).await;
    let running = buy(&admin, &id).await;
    assert_eq!(running["status"], "active");
    assert_eq!(running["budget"].as_f64(), Some(1e9));
    assert_no_unapproved_active_buy(&admin).await;
}

/// Bypass 2: a raise after the workflow was created; the admin then
/// approved a number they never saw.
async fn a_raise_while_waiting_replaces_the_task_and_the_old_one_cannot_be_approved(
    backend: Backend,
) {
    let (app, clock) = app(backend).await;
    let (admin, buyer) = with_threshold(&app).await;
    let (id, created) = create(&buyer, 5_000.0).await;
    assert_eq!(created["status"], "pending_approval");
    let first = created["workflow_id"].as_str().unwrap().to_owned();
    let shown = workflows(&admin, "pending").await;
    assert_eq!(shown[0]["workflow_id"], first.as_str());
    assert_eq!(shown[0]["budget"].as_f64(), Some(5_000.0));

    let raised = patch(&buyer, &id, json!({"budget": 1_000_000_000})).await;
    assert_eq!(raised["status"], "pending_approval");
    let second = raised["workflow_id"]
        .as_str()
        .unwrap_or_else(|| panic!("the raise replaces the pending task: {raised}"))
        .to_owned();
    assert_ne!(second, first);
    let pending = workflows(&admin, "pending").await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["workflow_id"], second.as_str());
    assert_eq!(pending[0]["budget"].as_f64(), Some(1e9));
    let superseded = workflows(&admin, "superseded").await;
    assert_eq!(superseded.len(), 1, "{superseded:?}");
    assert_eq!(superseded[0]["workflow_id"], first.as_str());
    assert_eq!(stored(&app.store, &["workflow_superseded"]).await.len(), 1);

    // The admin approves what they saw (5,000): refused, nothing moves.
    let stale = approve(&admin, &first).await;
    assert_eq!(stale.status(), 409, "{:?}", stale.text().await);
    assert_eq!(buy(&admin, &id).await["status"], "pending_approval");
    clock.set(at(2027, 3, 2));
    run_status_cycle(&app).await;
    assert_eq!(buy(&admin, &id).await["status"], "pending_approval");
    assert_no_unapproved_active_buy(&admin).await;

    // Approving the task that shows 1e9 lets it run at 1e9.
    admin.expect(200, approve(&admin, &second).await).await;
    run_status_cycle(&app).await;
    assert_eq!(buy(&admin, &id).await["status"], "active");
    assert_no_unapproved_active_buy(&admin).await;
}

/// Bypass 3: running buys took budget and flight changes with no approval.
async fn a_running_buy_raised_or_moved_above_the_threshold_stops_until_approved(backend: Backend) {
    let (app, clock) = app(backend).await;
    let (admin, buyer) = with_threshold(&app).await;
    let (small, _) = create(&buyer, 500.0).await;
    let (large, created) = create(&buyer, 5_000.0).await;
    admin
        .expect(
            200,
            approve(&admin, created["workflow_id"].as_str().unwrap()).await,
        )
        .await;
    clock.set(at(2027, 3, 2));
    run_status_cycle(&app).await;
    assert_eq!(buy(&admin, &small).await["status"], "active");
    assert_eq!(buy(&admin, &large).await["status"], "active");

    // A raise above the threshold: it stops and waits for a human.
    let raised = patch(&buyer, &small, json!({"budget": 1_000_000_000})).await;
    assert_eq!(raised["status"], "pending_approval", "{raised}");
    assert!(raised["workflow_id"].is_string(), "{raised}");
    run_status_cycle(&app).await;
    assert_eq!(buy(&admin, &small).await["status"], "pending_approval");
    assert_no_unapproved_active_buy(&admin).await;

    // Back under the threshold: no human needed, the task is withdrawn and
    // the scheduler starts it again.
    let lowered = patch(&buyer, &small, json!({"budget": 600})).await;
    assert_eq!(lowered["status"], "pending_activation", "{lowered}");
    assert!(workflows(&admin, "pending").await.is_empty());
    run_status_cycle(&app).await;
    assert_eq!(buy(&admin, &small).await["status"], "active");

    // A raise that stays under the threshold needs nobody.
    let small_raise = patch(&buyer, &small, json!({"budget": 900})).await;
    assert_eq!(small_raise["status"], "active");

    // Moving the flight of a buy above the threshold: the approved terms
    // changed, so a human decides again.
    let moved = patch(
        &buyer,
        &large,
        json!({"flight_end": "2027-06-30T00:00:00Z"}),
    )
    .await;
    assert_eq!(moved["status"], "pending_approval", "{moved}");
    let task = workflows(&admin, "pending").await;
    assert_eq!(task.len(), 1);
    assert_eq!(task[0]["media_buy_id"], large.as_str());
    run_status_cycle(&app).await;
    assert_eq!(buy(&admin, &large).await["status"], "pending_approval");
    // Under the threshold, the flight moves freely.
    let moved_small = patch(
        &buyer,
        &small,
        json!({"flight_end": "2027-06-30T00:00:00Z"}),
    )
    .await;
    assert_eq!(moved_small["status"], "active");
    // Lowering an approved buy needs nobody either.
    admin
        .expect(
            200,
            approve(&admin, task[0]["workflow_id"].as_str().unwrap()).await,
        )
        .await;
    run_status_cycle(&app).await;
    let lowered = patch(&buyer, &large, json!({"budget": 4_000})).await;
    assert_eq!(lowered["status"], "active");
    assert_no_unapproved_active_buy(&admin).await;
}

/// Whatever wrote the budget, activation checks it against the approved one:
/// the scheduler leaves the buy waiting and says why, and the database
/// itself refuses an `active` row above its approved budget.
async fn the_scheduler_refuses_a_budget_above_the_approved_one(backend: Backend) {
    let (app, clock) = app(backend).await;
    let (admin, buyer) = with_threshold(&app).await;
    let (id, _) = create(&buyer, 500.0).await;
    // A write that skipped the API's rule.
    raw_sql(
        &app,
        backend,
        &format!("UPDATE media_buys SET budget_micros = 1000000000000000 WHERE id = '{id}'"),
    )
    .await
    .unwrap();
    clock.set(at(2027, 3, 2));
    let cycle = run_status_cycle(&app).await;
    assert_eq!(buy(&admin, &id).await["status"], "pending_activation");
    let errors = cycle["errors"].as_array().unwrap();
    assert!(
        errors.iter().any(|e| e["media_buy_id"] == id.as_str()
            && e["reason"].as_str().unwrap().contains("approved")),
        "{cycle}"
    );
    assert_no_unapproved_active_buy(&admin).await;

    let forced = raw_sql(
        &app,
        backend,
        &format!("UPDATE media_buys SET status = 'active' WHERE id = '{id}'"),
    )
    .await;
    assert!(
        forced.is_err(),
        "the database refuses an unapproved active buy"
    );
    assert_eq!(buy(&admin, &id).await["status"], "pending_activation");
}
