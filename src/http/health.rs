//! `GET /health`, `/health/live`, `/health/ready`.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::health::Verdict;
use crate::http::AppState;

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(paths(health, ready, live))]
pub struct Doc;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/health").route(web::get().to(health)))
        .service(web::resource("/health/ready").route(web::get().to(ready)))
        .service(web::resource("/health/live").route(web::get().to(live)));
}

/// The full report: 200 when healthy or degraded (serving, a component down),
/// 503 when the database is unreachable.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    operation_id = "health",
    responses(
        (status = 200, description = "Healthy, or degraded: serving with a component down", body = HealthReportDoc),
        (status = 503, description = "The database is unreachable or its schema is not ready", body = HealthReportDoc),
    )
)]
#[tracing::instrument(skip_all)]
async fn health(state: web::Data<AppState>) -> HttpResponse {
    let report = state.health.check().await;
    let status = match report.status {
        Verdict::Healthy | Verdict::Degraded => StatusCode::OK,
        Verdict::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
    };
    HttpResponse::build(status)
        .insert_header(("Cache-Control", "no-store"))
        .json(report)
}

/// The same verdict as `/health`, for orchestrators that probe readiness
/// separately.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "health",
    operation_id = "ready",
    responses(
        (status = 200, description = "Ready: healthy or degraded", body = HealthReportDoc),
        (status = 503, description = "Not ready: the database is unreachable or its schema is not ready", body = HealthReportDoc),
    )
)]
async fn ready(state: web::Data<AppState>) -> HttpResponse {
    health(state).await
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Alive {
    /// Always `alive`.
    status: &'static str,
}

/// 200 while the process runs and serves HTTP; checks nothing else.
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "health",
    operation_id = "live",
    responses((status = 200, description = "The process serves HTTP", body = Alive))
)]
async fn live() -> HttpResponse {
    HttpResponse::Ok().json(Alive { status: "alive" })
}

// What `/health` reports (`crate::health::HealthReport` and the actors'
// status types, serialised), as the OpenAPI document describes it.

/// The health report: the verdict, the database, every supervised actor and
/// the audit write path.
#[derive(utoipa::ToSchema)]
#[schema(as = HealthReport)]
#[allow(
    dead_code,
    reason = "describes HealthReport's JSON in the OpenAPI document"
)]
struct HealthReportDoc {
    #[schema(inline)]
    status: VerdictDoc,
    /// `connected` or `connection failed`.
    database: String,
    /// Why the service is unhealthy; absent when it is not.
    #[schema(value_type = String, required = false)]
    error: Option<String>,
    version: String,
    uptime_seconds: u64,
    #[schema(inline)]
    components: ComponentsDoc,
}

#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code, reason = "describes Verdict in the OpenAPI document")]
enum VerdictDoc {
    Healthy,
    Degraded,
    Unhealthy,
}

#[derive(utoipa::ToSchema)]
#[allow(
    dead_code,
    reason = "describes the health report in the OpenAPI document"
)]
struct ComponentsDoc {
    #[schema(inline)]
    database: DatabaseDoc,
    /// Every supervised actor by name.
    #[schema(inline)]
    actors: BTreeMap<String, ActorDoc>,
    #[schema(inline)]
    audit: AuditPathDoc,
    #[schema(inline)]
    slack: SlackDoc,
    #[schema(inline)]
    schedulers: SchedulersDoc,
    #[schema(inline)]
    sse: SseDoc,
    alerts: AlertsDoc,
}

#[derive(utoipa::ToSchema)]
#[allow(
    dead_code,
    reason = "describes the health report in the OpenAPI document"
)]
struct SseDoc {
    /// Activity streams open now.
    connections: u64,
}

#[derive(utoipa::ToSchema)]
#[allow(
    dead_code,
    reason = "describes the health report in the OpenAPI document"
)]
struct AlertsDoc {
    /// `false` with `SKIP_CRON=true`: evaluations on demand only.
    enabled: bool,
    /// Alerts firing (`database_unhealthy` included, known in memory).
    firing: u64,
    pending: u64,
    #[schema(required = true)]
    last_evaluation_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    last_error: Option<String>,
}

#[derive(utoipa::ToSchema)]
#[allow(
    dead_code,
    reason = "describes the health report in the OpenAPI document"
)]
struct SchedulersDoc {
    #[schema(inline)]
    status: SchedulerDoc,
    /// `transitions`: delivery reports queued by the last cycle.
    #[schema(inline)]
    delivery: SchedulerDoc,
}

#[derive(utoipa::ToSchema)]
#[allow(
    dead_code,
    reason = "describes the health report in the OpenAPI document"
)]
struct SchedulerDoc {
    /// `false` with `SKIP_CRON=true`: cycles run on demand only.
    enabled: bool,
    #[schema(required = true)]
    last_run_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    last_duration_ms: Option<u64>,
    /// Media buys moved by the last cycle.
    transitions: u64,
    /// Rows the last cycle could not move (1 if it could not run).
    errors: u64,
    #[schema(required = true)]
    last_error: Option<String>,
    #[schema(required = true)]
    next_run_at: Option<DateTime<Utc>>,
}

#[derive(utoipa::ToSchema)]
#[allow(
    dead_code,
    reason = "describes the health report in the OpenAPI document"
)]
struct SlackDoc {
    /// Notifications waiting in the outbox.
    queue_depth: u64,
    #[schema(required = true)]
    last_sent_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    last_error: Option<String>,
    /// Webhooks that answered a permanent error, until one succeeds again.
    #[schema(inline)]
    failing: Vec<FailingWebhookDoc>,
}

#[derive(utoipa::ToSchema)]
#[allow(
    dead_code,
    reason = "describes the health report in the OpenAPI document"
)]
struct FailingWebhookDoc {
    /// `null` for the service-wide webhooks.
    #[schema(required = true)]
    tenant_id: Option<String>,
    /// `general`, `audit` or `hitl`.
    channel: String,
    /// Masked: `https://hooks.slack.com/services/T…/B…/****`.
    webhook: String,
    status: u16,
    reason: String,
    since: DateTime<Utc>,
}

#[derive(utoipa::ToSchema)]
#[allow(
    dead_code,
    reason = "describes the health report in the OpenAPI document"
)]
struct DatabaseDoc {
    /// `connected` or `connection failed`.
    status: String,
    /// `postgres` or `sqlite`.
    backend: String,
    /// The round trip of `SELECT 1`; absent when it failed.
    #[schema(value_type = f64, required = false)]
    latency_ms: Option<f64>,
    /// `current` or `pending`.
    schema: String,
    #[schema(inline)]
    pool: PoolDoc,
    /// Why the check failed; absent when it did not.
    #[schema(value_type = String, required = false)]
    error: Option<String>,
}

#[derive(utoipa::ToSchema)]
#[allow(
    dead_code,
    reason = "describes the health report in the OpenAPI document"
)]
struct PoolDoc {
    size: u32,
    idle: u64,
    max: u32,
}

#[derive(utoipa::ToSchema)]
#[allow(
    dead_code,
    reason = "describes the health report in the OpenAPI document"
)]
struct ActorDoc {
    /// `running`, `restarting`, `down` or `stopped`.
    status: String,
    restarts: u64,
    #[schema(required = true)]
    last_restart_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    last_error: Option<String>,
}

#[derive(utoipa::ToSchema)]
#[allow(
    dead_code,
    reason = "describes the health report in the OpenAPI document"
)]
struct AuditPathDoc {
    /// Events waiting to be written.
    queue_depth: u64,
    /// Events spooled to disk while the database is away.
    spool_events: u64,
    #[schema(required = true)]
    last_flush_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    last_error: Option<String>,
}
