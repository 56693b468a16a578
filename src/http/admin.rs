//! Operator endpoints under `/admin` (super admin only).

use actix_web::{HttpResponse, web};
use overseer_actors::supervisor::FaultKind;
use serde::{Deserialize, Serialize};

use crate::auth::SuperAdmin;
use crate::domain::InvalidField;
use crate::error::{ApiError, ErrorBody};
use crate::http::{AppState, Json};

#[derive(utoipa::OpenApi)]
#[openapi(paths(run_status_cycle, run_delivery_cycle, run_alerts))]
pub struct Doc;

/// Operator routes that always exist.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/admin/schedulers/status/run").route(web::post().to(run_status_cycle)),
    )
    .service(
        web::resource("/admin/schedulers/delivery/run").route(web::post().to(run_delivery_cycle)),
    )
    .service(web::resource("/admin/alerts/run").route(web::post().to(run_alerts)));
}

// `overseer_actors::alerts::EvaluationReport` as the OpenAPI document describes it.
/// What one evaluation of the alert rules did.
#[derive(utoipa::ToSchema)]
#[schema(as = EvaluationReport)]
#[allow(
    dead_code,
    reason = "describes EvaluationReport's JSON in the OpenAPI document"
)]
struct EvaluationReportDoc {
    /// Each notice queued: `kind` is `fired`, `reminder` or `resolved`.
    #[schema(inline)]
    notified: Vec<NotifiedDoc>,
    firing: u64,
    pending: u64,
    /// Rules that could not be evaluated (their alerts stay as they were).
    #[schema(inline)]
    errors: Vec<RuleErrorDoc>,
    duration_ms: u64,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "describes EvaluationReport's JSON")]
struct NotifiedDoc {
    rule: String,
    scope: String,
    kind: String,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "describes EvaluationReport's JSON")]
struct RuleErrorDoc {
    rule: String,
    reason: String,
}

/// `POST /admin/alerts/run` (super admin): evaluates every alert rule now
/// and answers what it did.
#[utoipa::path(
    post,
    path = "/admin/alerts/run",
    tag = "operations",
    operation_id = "run_alerts",
    responses(
        (status = 200, description = "The rules were evaluated (`errors` names rules that could not be)", body = EvaluationReportDoc),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not the super admin", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The alert actor is restarting", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn run_alerts(
    _: SuperAdmin,
    state: web::Data<AppState>,
) -> Result<web::Json<overseer_actors::alerts::EvaluationReport>, ApiError> {
    state
        .actors
        .alerts
        .run_now()
        .await
        .map(web::Json)
        .map_err(|_| ApiError::DatabaseUnavailable)
}

// `overseer_actors::scheduler::CycleReport` as the OpenAPI document describes it.
/// What one status cycle did.
#[derive(utoipa::ToSchema)]
#[schema(as = CycleReport)]
#[allow(
    dead_code,
    reason = "describes CycleReport's JSON in the OpenAPI document"
)]
struct CycleReportDoc {
    /// `false` when another replica was running a cycle (nothing was done).
    ran: bool,
    #[schema(inline)]
    transitions: Vec<TransitionDoc>,
    #[schema(inline)]
    errors: Vec<RowErrorDoc>,
    duration_ms: u64,
}

#[derive(utoipa::ToSchema)]
#[allow(
    dead_code,
    reason = "describes CycleReport's JSON in the OpenAPI document"
)]
struct TransitionDoc {
    from: String,
    to: String,
    count: u64,
}

#[derive(utoipa::ToSchema)]
#[allow(
    dead_code,
    reason = "describes CycleReport's JSON in the OpenAPI document"
)]
struct RowErrorDoc {
    media_buy_id: String,
    reason: String,
}

/// `POST /admin/schedulers/status/run` (super admin): runs one media-buy
/// status cycle now and answers what it did.
#[utoipa::path(
    post,
    path = "/admin/schedulers/status/run",
    tag = "operations",
    operation_id = "run_status_cycle",
    responses(
        (status = 200, description = "The cycle ran (or another replica was running one: `ran: false`)", body = CycleReportDoc),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not the super admin", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn run_status_cycle(
    _: SuperAdmin,
    state: web::Data<AppState>,
) -> Result<web::Json<overseer_actors::scheduler::CycleReport>, ApiError> {
    run_now(&state.actors.status_scheduler).await
}

/// Runs one cycle of `scheduler` now; a cycle that could not run is a 503.
async fn run_now(
    scheduler: &overseer_actors::scheduler::StatusScheduler,
) -> Result<web::Json<overseer_actors::scheduler::CycleReport>, ApiError> {
    scheduler
        .run_now()
        .await
        .map(web::Json)
        .map_err(|_| ApiError::DatabaseUnavailable)
}

/// `POST /admin/schedulers/delivery/run` (super admin): runs one
/// delivery-report cycle now (`transitions`: reports queued, `report →
/// scheduled` and `report → final`).
#[utoipa::path(
    post,
    path = "/admin/schedulers/delivery/run",
    tag = "operations",
    operation_id = "run_delivery_cycle",
    responses(
        (status = 200, description = "The cycle ran", body = CycleReportDoc),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not the super admin", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn run_delivery_cycle(
    _: SuperAdmin,
    state: web::Data<AppState>,
) -> Result<web::Json<overseer_actors::scheduler::CycleReport>, ApiError> {
    run_now(&state.actors.delivery_scheduler).await
}

/// Registers the fault-injection endpoint; call only when
/// `ENABLE_FAULT_INJECTION=true` (otherwise the route does not exist: 404).
pub fn fault_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/admin/debug/faults").route(web::post().to(inject_fault)));
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    actor: String,
    kind: FaultKind,
    #[serde(default = "one")]
    times: u32,
}

fn one() -> u32 {
    1
}

pub const MAX_FAULTS: u32 = 10_000;

/// `POST /admin/debug/faults {"actor", "kind": "panic"|"error", "times"}`: the
/// actor fails on its next `times` messages or ticks. 202 with what was armed.
#[tracing::instrument(skip_all, fields(actor = %body.actor, kind = ?body.kind, times = body.times))]
async fn inject_fault(
    _: SuperAdmin,
    state: web::Data<AppState>,
    Json(body): Json<FaultRequest>,
) -> Result<HttpResponse, ApiError> {
    let board = state.actors.supervisor.board();
    let Some(actor) = board.names().into_iter().find(|name| *name == body.actor) else {
        let known = board.names().join(", ");
        return Err(InvalidField::new("actor", format!("unknown actor; known: {known}")).into());
    };
    if !(1..=MAX_FAULTS).contains(&body.times) {
        return Err(
            InvalidField::new("times", format!("must be between 1 and {MAX_FAULTS}")).into(),
        );
    }
    state
        .actors
        .supervisor
        .faults()
        .arm(actor, body.kind, body.times);
    tracing::warn!("fault injection armed");
    Ok(HttpResponse::Accepted().json(body))
}
