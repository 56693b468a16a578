//! `/api/v1/workflows`: the human-in-the-loop tasks of a tenant (today:
//! approving media buys above the approval threshold), decided by its admin.

use actix_web::{HttpRequest, web};
use overseer_actors::notify::{Notification, NotificationEvent};
use serde::Deserialize;

use crate::domain::InvalidField;
use crate::domain::workflow::{Decision, DecisionInput, WORKFLOW_STATUSES, WorkflowTask};
use crate::error::{ApiError, ErrorBody};
use crate::http::access::{self, Page, page, page_cursor, page_limit};
use crate::http::authz::TenantAdmin;
use crate::http::{AppState, Json};
use crate::store::{Decided, Effects, Owner};

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, approve, reject))]
pub struct Doc;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/workflows").route(web::get().to(list)))
        .service(web::resource("/workflows/{id}/approve").route(web::post().to(approve)))
        .service(web::resource("/workflows/{id}/reject").route(web::post().to(reject)));
}

/// Any other query parameter is a 400.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `pending`, `approved`, `rejected` or `superseded`.
    status: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    cursor: Option<String>,
}

/// `GET /api/v1/workflows?status=pending` (tenant admin).
#[utoipa::path(
    get,
    path = "/api/v1/workflows",
    tag = "workflows",
    operation_id = "list_workflows",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of workflow tasks, by id", body = Page<WorkflowTask>),
        (status = 400, description = "An unknown or malformed query parameter", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not a tenant admin", body = ErrorBody),
        (status = 422, description = "`status`, `limit` or `cursor` is invalid", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn list(
    who: TenantAdmin,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<web::Json<Page<WorkflowTask>>, ApiError> {
    let tenant = &who.tenant;
    let limit = page_limit(query.limit)?;
    let status = match query.status.as_deref() {
        None => None,
        Some(s) if WORKFLOW_STATUSES.contains(&s) => Some(s),
        Some(_) => {
            return Err(InvalidField::new(
                "status",
                "must be pending, approved, rejected or superseded",
            )
            .into());
        }
    };
    let items = state
        .store
        .workflows(
            tenant,
            status,
            page_cursor(query.cursor.as_deref())?,
            limit + 1,
        )
        .await?;
    Ok(web::Json(page(items, limit, |w| w.workflow_id.clone())))
}

/// `POST /api/v1/workflows/{id}/approve` `{comment?}`: approves the budget
/// the task shows (its `budget`), and the media buy moves to
/// `pending_activation` (a paused one will resume there). A superseded task
/// (the buy's budget or flight changed since) cannot be approved: 409.
/// Audited `workflow_approved`.
#[utoipa::path(
    post,
    path = "/api/v1/workflows/{id}/approve",
    tag = "workflows",
    operation_id = "approve_workflow",
    params(("id" = String, Path, description = "The workflow's id")),
    request_body = DecisionInput,
    responses(
        (status = 200, description = "The workflow, approved; its media buy is now `pending_activation`", body = WorkflowTask),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not a tenant admin", body = ErrorBody),
        (status = 404, description = "No such workflow in this tenant", body = ErrorBody),
        (status = 409, description = "The workflow is decided or superseded already, or the buy no longer waits at the amount it shows", body = ErrorBody),
        (status = 413, description = "The body is over the limit", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 422, description = "`comment` is invalid", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn approve(
    who: TenantAdmin,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    Json(body): Json<DecisionInput>,
) -> Result<web::Json<WorkflowTask>, ApiError> {
    decide(who, state, req, path.into_inner(), body, Decision::Approve).await
}

/// `POST /api/v1/workflows/{id}/reject` `{comment?}`: the media buy moves to
/// `rejected`. Audited `workflow_rejected`.
#[utoipa::path(
    post,
    path = "/api/v1/workflows/{id}/reject",
    tag = "workflows",
    operation_id = "reject_workflow",
    params(("id" = String, Path, description = "The workflow's id")),
    request_body = DecisionInput,
    responses(
        (status = 200, description = "The workflow, rejected; so is its media buy", body = WorkflowTask),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not a tenant admin", body = ErrorBody),
        (status = 404, description = "No such workflow in this tenant", body = ErrorBody),
        (status = 409, description = "The workflow is decided or superseded already", body = ErrorBody),
        (status = 413, description = "The body is over the limit", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 422, description = "`comment` is invalid", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn reject(
    who: TenantAdmin,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    Json(body): Json<DecisionInput>,
) -> Result<web::Json<WorkflowTask>, ApiError> {
    decide(who, state, req, path.into_inner(), body, Decision::Reject).await
}

async fn decide(
    who: TenantAdmin,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: String,
    body: DecisionInput,
    decision: Decision,
) -> Result<web::Json<WorkflowTask>, ApiError> {
    let (tenant, caller) = (who.tenant.clone(), &who.caller);
    let comment = body.parse()?;
    access::path_id("workflow", &id)?;
    let task = state.store.workflow(&id).await?;
    let owner = task.as_ref().map(|t| Owner {
        tenant_id: t.tenant_id.to_string(),
        principal_id: None,
    });
    access::check_owner(&state, &req, caller, "workflow", &id, owner)?;
    let task = task.ok_or_else(|| ApiError::NotFound("no such workflow".into()))?;
    if task.status != "pending" {
        return Err(ApiError::Conflict(format!(
            "the workflow is {} already",
            task.status
        )));
    }
    let operation = match decision {
        Decision::Approve => "workflow_approved",
        Decision::Reject => "workflow_rejected",
    };
    let now = state.clock.now();
    let audit = [
        access::event(&state, &req, caller, operation).with_details(serde_json::json!({
            "workflow_id": task.workflow_id,
            "media_buy_id": task.media_buy_id,
            "budget": task.budget.as_f64(),
            "comment": comment,
        })),
    ];
    let (workflow_id, media_buy_id, decided_by) = (
        task.workflow_id.clone(),
        task.media_buy_id.clone(),
        caller.principal_id().to_owned(),
    );
    let event = match decision {
        Decision::Approve => NotificationEvent::WorkflowApproved {
            workflow_id,
            media_buy_id,
            decided_by,
            comment: comment.clone(),
        },
        Decision::Reject => NotificationEvent::WorkflowRejected {
            workflow_id,
            media_buy_id,
            decided_by,
            comment: comment.clone(),
        },
    };
    let notes = [Notification::new(Some(tenant.to_string()), event, now)];
    let decided = state
        .store
        .decide_workflow(
            &tenant,
            &id,
            decision,
            comment.as_deref(),
            caller.principal_id(),
            now,
            Effects::with(&audit, &notes),
        )
        .await?;
    let (decided, committed) = match decided {
        Decided::Done(task, committed) => (*task, committed),
        Decided::NotPending => {
            return Err(ApiError::Conflict(
                "the workflow was decided or superseded meanwhile".into(),
            ));
        }
        Decided::BuyChanged => {
            return Err(ApiError::Conflict(format!(
                "the media buy no longer waits for approval at {}, the amount this workflow shows",
                task.budget
            )));
        }
    };
    access::committed(&state, &req, committed);
    Ok(web::Json(decided))
}
