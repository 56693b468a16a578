//! `GET /health`, `/health/live`, `/health/ready`.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::TokenHash;
use crate::error::{ApiError, ErrorBody};
use crate::http::AppState;
use crate::http::auth::{Caller, bearer_token};
use crate::services::health::Verdict;

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(paths(health, ready, live))]
pub struct Doc;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/health").route(web::get().to(health)))
        .service(web::resource("/health/ready").route(web::get().to(ready)))
        .service(web::resource("/health/live").route(web::get().to(live)));
}

/// The report: 200 when healthy or degraded (serving, a component down),
/// 503 when the database is unreachable. Anonymous callers get the verdict
/// and each component's state, counts and times; error texts read
/// `"withheld"` and the failing Slack webhooks are only counted. The super
/// admin's token or `HEALTH_DETAILS_TOKEN` (a bearer token) gets the
/// details: tenant ids, channels, masked webhook URLs, error texts.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    operation_id = "health",
    responses(
        (status = 200, description = "Healthy, or degraded: serving with a component down", body = HealthReportDoc),
        (status = 401, description = "A bearer token that is neither the super admin's nor `HEALTH_DETAILS_TOKEN` nor any valid token", body = ErrorBody),
        (status = 403, description = "A valid tenant token: the details are for the super admin and monitors", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unreachable or its schema is not ready", body = HealthReportDoc),
    ),
    security((), ("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn health(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let details = may_read_details(&state, &req).await?;
    let report = state.health.check().await;
    let status = match report.status {
        Verdict::Healthy | Verdict::Degraded => StatusCode::OK,
        Verdict::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
    };
    let report = if details { report } else { report.anonymous() };
    Ok(HttpResponse::build(status)
        .insert_header(("Cache-Control", "no-store"))
        .json(report))
}

/// Whether the caller may read the details. No token: no (the anonymous
/// report, for load balancers and orchestrators). `HEALTH_DETAILS_TOKEN`
/// (compared in constant time) or the super admin's token: yes. Any other
/// token goes through the usual authentication, so a wrong one is a 401
/// counted against its address like any refused token (a 429 in a
/// cool-down), never a silent downgrade that would hide a monitor's
/// misconfiguration; a valid tenant token is a 403. Without a token, the
/// dashboard's session of the super admin reads the details (the page
/// shows the actors' errors); any other session the anonymous report.
async fn may_read_details(state: &AppState, req: &HttpRequest) -> Result<bool, ApiError> {
    let Some(token) = bearer_token(req) else {
        let Some(session) = crate::http::dashboard::open_session(req, state) else {
            return Ok(false);
        };
        return Ok(session
            .token(state)
            .await
            .is_ok_and(|hash| hash.matches(&state.admin_token_hash)));
    };
    let hash = TokenHash::of(token);
    if state
        .health_details_token
        .as_ref()
        .is_some_and(|expected| hash.matches(expected))
    {
        return Ok(true);
    }
    match crate::http::auth::authenticate(state, req, hash).await? {
        Caller::SuperAdmin => Ok(true),
        Caller::Tenant { .. } => Err(ApiError::Forbidden(
            "the health details need the super admin's token or HEALTH_DETAILS_TOKEN".into(),
        )),
    }
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
        (status = 401, description = "A bearer token that is neither the super admin's nor `HEALTH_DETAILS_TOKEN` nor any valid token", body = ErrorBody),
        (status = 403, description = "A valid tenant token: the details are for the super admin and monitors", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "Not ready: the database is unreachable or its schema is not ready", body = HealthReportDoc),
    ),
    security((), ("bearer" = []))
)]
async fn ready(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    health(state, req).await
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

// What `/health` reports (`crate::services::health::HealthReport` and the actors'
// status types, serialised), as the OpenAPI document describes it.

/// The health report: the verdict, the database, every supervised actor and
/// the audit write path. Anonymous: error texts read `withheld`, `error`
/// is `database unreachable` or `schema migrations pending`, and
/// `components.slack.failing` is absent.
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
    /// Why the service is unhealthy; absent when it is not. Anonymous:
    /// `database unreachable` or `schema migrations pending`.
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
    /// `withheld` for anonymous callers.
    #[schema(required = true)]
    last_error: Option<String>,
    /// How many webhooks answered a permanent error, until one succeeds again.
    failing_webhooks: u64,
    /// Those webhooks: with the super admin's token or
    /// `HEALTH_DETAILS_TOKEN` only, absent otherwise.
    #[schema(inline, required = false)]
    failing: Option<Vec<FailingWebhookDoc>>,
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
