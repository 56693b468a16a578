//! Operator endpoints under `/admin` (super admin only), and the audit of
//! every `/admin` request.
//!
//! Every action under `/admin` — these endpoints, the dashboard's sign-in,
//! sign-out and session check, its activity stream, fault injection — is
//! one audit row naming its caller, with its parameters and its outcome
//! ([`audit_admin_requests`]). A handler adds what only it knows (the
//! scheduler it ran and what the cycle did, the fault it armed) with
//! [`note`]; a handler that records its own row (the dashboard's sign-in and
//! sign-out) marks the request [`AuditedByHandler`] and the middleware
//! stays out of it. Recorded whatever `AUDIT_REQUESTS` says: operator
//! actions are few and each one matters.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use overseer_actors::audit::{AuditEvent, Source};
use overseer_actors::supervisor::FaultKind;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::InvalidField;
use crate::error::{ApiError, ErrorBody};
use crate::http::audit::AuditedByHandler;
use crate::http::auth::{Caller, client_ip};
use crate::http::authz::SuperAdmin;
use crate::http::{AppState, Json};

/// Operation names of the `/admin` routes, by method and route pattern; any
/// other `/admin` request is an `admin_request`. A refusal is recorded under
/// the same name, with `success: false`.
pub const OPERATIONS: &[(&str, &str, &str)] = &[
    (
        "POST",
        "/admin/schedulers/status/run",
        "admin_scheduler_run",
    ),
    (
        "POST",
        "/admin/schedulers/delivery/run",
        "admin_scheduler_run",
    ),
    ("POST", "/admin/alerts/run", "admin_alerts_run"),
    ("POST", "/admin/debug/faults", "admin_fault_armed"),
    ("POST", "/admin/session", "admin_session_started"),
    ("POST", "/admin/session/end", "admin_session_ended"),
    ("GET", "/admin/session", "admin_session_checked"),
    (
        "GET",
        "/admin/activity/stream",
        "admin_activity_stream_opened",
    ),
];

/// The operation name of an `/admin` request.
pub fn operation_name(method: &str, pattern: Option<&str>) -> &'static str {
    OPERATIONS
        .iter()
        .find(|(m, p, _)| *m == method && Some(*p) == pattern)
        .map_or("admin_request", |(_, _, op)| op)
}

/// What a handler adds to its request's audit row: parameters it parsed
/// from the body, and what the action did.
#[derive(Debug, Clone, Default)]
struct AdminNote(Map<String, Value>);

/// Adds `fields` (a JSON object) to the request's audit row. Never give it
/// a secret: the row is redacted by key name, but a token has no business
/// there in the first place.
pub fn note(req: &HttpRequest, fields: Value) {
    let Value::Object(fields) = fields else {
        return;
    };
    let mut extensions = req.extensions_mut();
    if let Some(AdminNote(kept)) = extensions.get_mut::<AdminNote>() {
        kept.extend(fields);
    } else {
        extensions.insert(AdminNote(fields));
    }
}

/// Longest route or query value recorded (a path nobody routes is the
/// client's text).
const MAX_RECORDED_CHARS: usize = 200;

/// Middleware (on every route; acts on `/admin` and below): one audit row
/// per `/admin` action, through the batcher: the route's operation name
/// ([`OPERATIONS`]), the caller (the super admin, a tenant admin, or none),
/// its address, `details` = `{method, route, status, query}` plus what the
/// handler [`note`]d, and `success: false` with the reason for a refusal
/// (a 4xx or 5xx, or the dashboard's redirect with `?error=`). Unauthenticated
/// reads (the page, its assets) are not actions and are not recorded;
/// unauthenticated writes are.
pub async fn audit_admin_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let path = req.path();
    let is_admin = path == "/admin" || path.starts_with("/admin/");
    let ip = if is_admin {
        client_ip(req.request())
    } else {
        None
    };
    let res = next.call(req).await?;
    if !is_admin {
        return Ok(res);
    }
    let req = res.request();
    if req.extensions().get::<AuditedByHandler>().is_some() {
        return Ok(res);
    }
    let caller = req.extensions().get::<Caller>().cloned();
    if caller.is_none() && matches!(*req.method(), Method::GET | Method::HEAD) {
        return Ok(res);
    }
    let Some(state) = req.app_data::<web::Data<AppState>>() else {
        return Ok(res);
    };
    let pattern = req.match_pattern();
    let route = pattern
        .clone()
        .unwrap_or_else(|| req.path().chars().take(MAX_RECORDED_CHARS).collect());
    let status = res.status();
    let mut details = Map::new();
    details.insert("method".into(), req.method().as_str().into());
    details.insert("route".into(), route.into());
    details.insert("status".into(), status.as_u16().into());
    let query = query_object(req.query_string());
    if !query.is_empty() {
        details.insert("query".into(), Value::Object(query));
    }
    if let Some(AdminNote(noted)) = req.extensions().get::<AdminNote>() {
        details.extend(noted.clone());
    }
    let operation = operation_name(req.method().as_str(), pattern.as_deref());
    let mut event =
        AuditEvent::new(operation, state.clock.now()).with_details(Value::Object(details));
    if let Some(caller) = &caller {
        if let Some(tenant) = caller.tenant() {
            event = event.with_tenant(tenant.as_str());
        }
        event = event.with_principal(caller.principal_id(), Some(caller.display_name().into()));
    }
    event.ip_address = ip;
    if let Some(reason) = refusal(&res) {
        event = event.failed(reason);
    }
    state.actors.auditor.record(Source::Request, event);
    Ok(res)
}

/// Why the answer is a refusal, if it is one: an error status (with the
/// error's message), or a redirect carrying `error=` (the dashboard's
/// sign-in answers a refused token that way).
fn refusal<B>(res: &ServiceResponse<B>) -> Option<String> {
    let status = res.status();
    if status.is_client_error() || status.is_server_error() {
        return Some(
            res.response()
                .error()
                .map_or_else(|| status.to_string(), ToString::to_string),
        );
    }
    if status.is_redirection() {
        let location = res.headers().get(header::LOCATION)?.to_str().ok()?;
        let (_, query) = location.split_once('?')?;
        let code = serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .ok()?
            .into_iter()
            .find(|(key, _)| key == "error")?
            .1;
        return Some(format!(
            "refused: {}",
            code.chars().take(MAX_RECORDED_CHARS).collect::<String>()
        ));
    }
    None
}

/// The query string as a JSON object (a repeated key's values as an array),
/// each value cut to [`MAX_RECORDED_CHARS`]. The auditor redacts it by key
/// like any `details`.
fn query_object(query: &str) -> Map<String, Value> {
    let mut object = Map::new();
    let pairs = serde_urlencoded::from_str::<Vec<(String, String)>>(query).unwrap_or_default();
    for (key, value) in pairs {
        let key: String = key.chars().take(MAX_RECORDED_CHARS).collect();
        let value = Value::String(value.chars().take(MAX_RECORDED_CHARS).collect());
        match object.get_mut(&key) {
            None => {
                object.insert(key, value);
            }
            Some(Value::Array(values)) => values.push(value),
            Some(first) => *first = Value::Array(vec![first.take(), value]),
        }
    }
    object
}

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
    req: HttpRequest,
) -> Result<web::Json<overseer_actors::alerts::EvaluationReport>, ApiError> {
    let report = state
        .actors
        .alerts
        .run_now()
        .await
        .map_err(|_| ApiError::DatabaseUnavailable)?;
    note(
        &req,
        serde_json::json!({
            "notified": report.notified.len(),
            "firing": report.firing,
            "pending": report.pending,
            "errors": report.errors.len(),
            "duration_ms": report.duration_ms,
        }),
    );
    Ok(web::Json(report))
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
    req: HttpRequest,
) -> Result<web::Json<overseer_actors::scheduler::CycleReport>, ApiError> {
    run_now(&req, "status", &state.actors.status_scheduler).await
}

/// Runs one cycle of `scheduler` (named `name` in the audit row) now; a
/// cycle that could not run is a 503.
async fn run_now(
    req: &HttpRequest,
    name: &str,
    scheduler: &overseer_actors::scheduler::StatusScheduler,
) -> Result<web::Json<overseer_actors::scheduler::CycleReport>, ApiError> {
    note(req, serde_json::json!({ "scheduler": name }));
    let report = scheduler
        .run_now()
        .await
        .map_err(|_| ApiError::DatabaseUnavailable)?;
    note(
        req,
        serde_json::json!({
            "ran": report.ran,
            "transitions": report.transitions.iter().map(|t| t.count).sum::<u64>(),
            "errors": report.errors.len(),
            "duration_ms": report.duration_ms,
        }),
    );
    Ok(web::Json(report))
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
    req: HttpRequest,
) -> Result<web::Json<overseer_actors::scheduler::CycleReport>, ApiError> {
    run_now(&req, "delivery", &state.actors.delivery_scheduler).await
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
    req: HttpRequest,
    Json(body): Json<FaultRequest>,
) -> Result<HttpResponse, ApiError> {
    // What was asked, refused or not.
    note(
        &req,
        serde_json::json!({
            "actor": body.actor.chars().take(MAX_RECORDED_CHARS).collect::<String>(),
            "kind": body.kind,
            "times": body.times,
        }),
    );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_routes_have_operation_names() {
        assert_eq!(
            operation_name("POST", Some("/admin/debug/faults")),
            "admin_fault_armed"
        );
        assert_eq!(
            operation_name("GET", Some("/admin/session")),
            "admin_session_checked"
        );
        assert_eq!(
            operation_name("DELETE", Some("/admin/session")),
            "admin_request"
        );
        assert_eq!(operation_name("POST", None), "admin_request");
    }

    #[test]
    fn queries_are_objects_and_repeated_keys_arrays() {
        assert_eq!(
            Value::Object(query_object(
                "operation=a&tenant_id=acme&operation=b&operation=c"
            )),
            serde_json::json!({"operation": ["a", "b", "c"], "tenant_id": "acme"})
        );
        assert!(query_object("").is_empty());
        let long = format!("q={}", "x".repeat(1_000));
        assert_eq!(
            query_object(&long)["q"].as_str().unwrap().len(),
            MAX_RECORDED_CHARS
        );
    }
}
