//! `/api/v1/agent-runs`: AI agents (and the service's own timer actors)
//! record each execution: started, then finished once as succeeded, failed
//! or canceled (see [`crate::services::agent_runs`] for what is stored, audited and
//! counted).
//!
//! **Who may call.** Agent runs are service-wide (no tenant column), so
//! every route is the super admin's (`ADMIN_TOKEN`): 401 without valid
//! credentials, 403 for any tenant, ingest, adapter or principal token. A
//! tenant token could otherwise read other tenants' agents' objectives and
//! plans, or write runs no tenant owns.
//!
//! **Idempotency.** A start with a `run_id` that is taken answers the stored
//! run (`200`, nothing stored, audited or counted again) when it names the
//! same agent, so an agent may retry a start whose answer it lost; `409`
//! when another agent holds the `run_id`. A finish is accepted once: a run
//! that is not `running` answers `409`, an unknown `run_id` `404`.
//!
//! **Recording off or impossible.** With `AGENT_AUDIT_ENABLED=false`, or
//! while the database cannot take the write, start and finish answer `202`
//! with `"recorded": false` and a `reason` (`disabled`,
//! `database_unavailable`, `start_not_recorded`): a failure to record never
//! fails the caller. Reads (`GET`) still need the database (`503`).

use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::InvalidField;
use crate::domain::agent_run::{
    AgentRun, AgentRunStatus, FinishAgentRun, StartAgentRun, agent_name,
};
use crate::error::{ApiError, ErrorBody};
use crate::http::access::{Page, page, page_limit, path_id};
use crate::http::audit::AuditedByHandler;
use crate::http::auth::{Caller, client_ip};
use crate::http::authz::SuperAdmin;
use crate::http::{AppState, Json};
use crate::services::agent_runs::{By, FinishOutcome, NotRecorded, StartOutcome};

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(start, finish, get, list),
    tags((name = "agent-runs", description = "Executions of AI agents and of the service's timer actors (super admin)"))
)]
pub struct Doc;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/agent-runs")
            .route(web::post().to(start))
            .route(web::get().to(list)),
    )
    .service(web::resource("/agent-runs/{run_id}").route(web::get().to(get)))
    .service(web::resource("/agent-runs/{run_id}/finish").route(web::post().to(finish)));
}

/// A run as stored, with `recorded: true`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecordedRun {
    /// Always `true`: the run is stored.
    recorded: bool,
    #[serde(flatten)]
    run: AgentRun,
}

/// A start or finish accepted but not stored (`202`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UnrecordedRun {
    /// Always `false`.
    recorded: bool,
    /// `disabled` (`AGENT_AUDIT_ENABLED=false`), `database_unavailable`, or
    /// `start_not_recorded` (a finish of a run whose start was not stored).
    reason: String,
    run_id: String,
    /// `null` for a finish of a run this instance did not see start.
    agent: Option<String>,
    status: AgentRunStatus,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    duration_ms: Option<i64>,
}

fn recorded(status: StatusCode, run: AgentRun) -> HttpResponse {
    HttpResponse::build(status).json(RecordedRun {
        recorded: true,
        run,
    })
}

/// The super admin, from the client's address.
fn by(req: &HttpRequest) -> By {
    let caller = Caller::SuperAdmin;
    By {
        principal_id: caller.principal_id().to_owned(),
        principal_name: Some(caller.display_name().to_owned()),
        ip: client_ip(req),
    }
}

/// The handler audits the start or finish itself (`agent_run_started` /
/// `agent_run_finished`): no generic request row as well.
fn audited_by_handler(req: &HttpRequest, reason: Option<NotRecorded>) {
    if reason != Some(NotRecorded::Disabled) {
        req.extensions_mut().insert(AuditedByHandler);
    }
}

/// `POST /api/v1/agent-runs` (super admin): a run starts.
#[utoipa::path(
    post,
    path = "/api/v1/agent-runs",
    tag = "agent-runs",
    operation_id = "start_agent_run",
    request_body = StartAgentRun,
    responses(
        (status = 201, description = "Started and stored as `running`", body = RecordedRun),
        (status = 200, description = "This agent started this `run_id` before: the stored run, nothing changed", body = RecordedRun),
        (status = 202, description = "Accepted, not stored: `AGENT_AUDIT_ENABLED=false` or the database is unavailable", body = UnrecordedRun),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not the super admin", body = ErrorBody),
        (status = 409, description = "Another agent's run has this `run_id`", body = ErrorBody),
        (status = 413, description = "The body is over the limit", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 422, description = "A field is invalid or unknown (named in `field`)", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(agent, run_id))]
async fn start(
    _: SuperAdmin,
    state: web::Data<AppState>,
    req: HttpRequest,
    Json(body): Json<StartAgentRun>,
) -> Result<HttpResponse, ApiError> {
    let runs = &state.actors.agent_runs;
    let run = body.parse(runs.redactor(), state.clock.now())?;
    tracing::Span::current()
        .record("agent", run.agent.as_str())
        .record("run_id", run.run_id.as_str());
    match runs.start(run, &by(&req)).await {
        StartOutcome::Created(run) => {
            audited_by_handler(&req, None);
            Ok(recorded(StatusCode::CREATED, run))
        }
        StartOutcome::Replayed(run) => Ok(recorded(StatusCode::OK, run)),
        StartOutcome::Conflict(existing) => Err(ApiError::Conflict(format!(
            "run_id {} belongs to a run of another agent",
            existing.run_id
        ))),
        StartOutcome::NotRecorded { run, reason } => {
            audited_by_handler(&req, Some(reason));
            Ok(HttpResponse::Accepted().json(UnrecordedRun {
                recorded: false,
                reason: reason.as_str().to_owned(),
                run_id: run.run_id,
                agent: Some(run.agent),
                status: AgentRunStatus::Running,
                started_at: Some(run.started_at),
                finished_at: None,
                duration_ms: None,
            }))
        }
    }
}

/// `POST /api/v1/agent-runs/{run_id}/finish` (super admin): a running run
/// ends, once.
#[utoipa::path(
    post,
    path = "/api/v1/agent-runs/{run_id}/finish",
    tag = "agent-runs",
    operation_id = "finish_agent_run",
    params(("run_id" = String, Path, description = "The run's id", pattern = "^[A-Za-z0-9._:-]{1,128}$")),
    request_body = FinishAgentRun,
    responses(
        (status = 200, description = "Finished and stored", body = RecordedRun),
        (status = 202, description = "Accepted, not stored: `AGENT_AUDIT_ENABLED=false`, the database is unavailable, or the start was not stored", body = UnrecordedRun),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not the super admin", body = ErrorBody),
        (status = 404, description = "No run has this id", body = ErrorBody),
        (status = 409, description = "The run is not running (finished already)", body = ErrorBody),
        (status = 413, description = "The body is over the limit", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 422, description = "A field is invalid or unknown (named in `field`)", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(run_id))]
async fn finish(
    _: SuperAdmin,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    Json(body): Json<FinishAgentRun>,
) -> Result<HttpResponse, ApiError> {
    let run_id = path.into_inner();
    path_id("agent run", &run_id)?;
    tracing::Span::current().record("run_id", run_id.as_str());
    let runs = &state.actors.agent_runs;
    let end = body.parse(runs.redactor(), state.clock.now())?;
    match runs.finish(&run_id, end, &by(&req)).await {
        FinishOutcome::Finished(run) => {
            audited_by_handler(&req, None);
            Ok(recorded(StatusCode::OK, run))
        }
        FinishOutcome::NotFound => Err(ApiError::NotFound("no such agent run".into())),
        FinishOutcome::NotRunning(run) => Err(ApiError::Conflict(format!(
            "the run is {} already; a run is finished once",
            run.status.as_str()
        ))),
        FinishOutcome::NotRecorded {
            run_id,
            agent,
            status,
            duration_ms,
            finished_at,
            reason,
        } => {
            audited_by_handler(&req, Some(reason));
            Ok(HttpResponse::Accepted().json(UnrecordedRun {
                recorded: false,
                reason: reason.as_str().to_owned(),
                run_id,
                agent,
                status,
                started_at: None,
                finished_at: Some(finished_at),
                duration_ms,
            }))
        }
    }
}

/// `GET /api/v1/agent-runs/{run_id}` (super admin).
#[utoipa::path(
    get,
    path = "/api/v1/agent-runs/{run_id}",
    tag = "agent-runs",
    operation_id = "get_agent_run",
    params(("run_id" = String, Path, description = "The run's id", pattern = "^[A-Za-z0-9._:-]{1,128}$")),
    responses(
        (status = 200, description = "The run", body = AgentRun),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not the super admin", body = ErrorBody),
        (status = 404, description = "No run has this id", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn get(
    _: SuperAdmin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<web::Json<AgentRun>, ApiError> {
    let run_id = path.into_inner();
    path_id("agent run", &run_id)?;
    state
        .store
        .agent_run(&run_id)
        .await?
        .map(web::Json)
        .ok_or_else(|| ApiError::NotFound("no such agent run".into()))
}

/// Any other query parameter is a 400.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this agent's runs.
    #[param(pattern = "^[A-Za-z0-9._:-]{1,64}$")]
    agent: Option<String>,
    /// `running`, `succeeded`, `failed` or `canceled`.
    status: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,19}$")]
    cursor: Option<String>,
}

/// `GET /api/v1/agent-runs?agent=&status=&limit=&cursor=` (super admin):
/// the most recently started first (then the most recently stored).
#[utoipa::path(
    get,
    path = "/api/v1/agent-runs",
    tag = "agent-runs",
    operation_id = "list_agent_runs",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of runs, most recently started first", body = Page<AgentRun>),
        (status = 400, description = "An unknown or malformed query parameter", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not the super admin", body = ErrorBody),
        (status = 422, description = "`agent`, `status`, `limit` or `cursor` is invalid", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn list(
    _: SuperAdmin,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<web::Json<Page<AgentRun>>, ApiError> {
    let limit = page_limit(query.limit)?;
    let agent = query
        .agent
        .as_deref()
        .map(|a| agent_name("agent", a))
        .transpose()?;
    let status = query
        .status
        .as_deref()
        .map(|s| AgentRunStatus::parse("status", s))
        .transpose()?;
    let after = query
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| InvalidField::new("cursor", "not a cursor from this API"))
        })
        .transpose()?;
    let items = state
        .store
        .agent_runs(agent.as_deref(), status, after, limit + 1)
        .await?;
    Ok(web::Json(page(items, limit, |r| r.id.to_string())))
}
