//! `/api/v1/workflows`: the human-in-the-loop tasks of a tenant (today:
//! approving media buys above the approval threshold), decided by its admin.

use actix_web::{HttpRequest, web};
use serde::Deserialize;

use crate::auth::Caller;
use crate::domain::InvalidField;
use crate::domain::workflow::{Decision, DecisionInput, WorkflowTask};
use crate::error::ApiError;
use crate::http::access::{self, Page, page, page_cursor, page_limit};
use crate::http::{AppState, Json};
use crate::store::{Effects, Owner};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/workflows").route(web::get().to(list)))
        .service(web::resource("/workflows/{id}/approve").route(web::post().to(approve)))
        .service(web::resource("/workflows/{id}/reject").route(web::post().to(reject)));
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /api/v1/workflows?status=pending` (tenant admin).
#[tracing::instrument(skip_all)]
async fn list(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<web::Json<Page<WorkflowTask>>, ApiError> {
    let tenant = caller.tenant_admin()?;
    let limit = page_limit(query.limit)?;
    let status = match query.status.as_deref() {
        None => None,
        Some(s @ ("pending" | "approved" | "rejected")) => Some(s),
        Some(_) => {
            return Err(
                InvalidField::new("status", "must be pending, approved or rejected").into(),
            );
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

/// `POST /api/v1/workflows/{id}/approve` `{comment?}`: the media buy moves
/// to `pending_activation`. Audited `workflow_approved`.
#[tracing::instrument(skip_all)]
async fn approve(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    Json(body): Json<DecisionInput>,
) -> Result<web::Json<WorkflowTask>, ApiError> {
    decide(
        caller,
        state,
        req,
        path.into_inner(),
        body,
        Decision::Approve,
    )
    .await
}

/// `POST /api/v1/workflows/{id}/reject` `{comment?}`: the media buy moves to
/// `rejected`. Audited `workflow_rejected`.
#[tracing::instrument(skip_all)]
async fn reject(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    Json(body): Json<DecisionInput>,
) -> Result<web::Json<WorkflowTask>, ApiError> {
    decide(
        caller,
        state,
        req,
        path.into_inner(),
        body,
        Decision::Reject,
    )
    .await
}

async fn decide(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: String,
    body: DecisionInput,
    decision: Decision,
) -> Result<web::Json<WorkflowTask>, ApiError> {
    let tenant = caller.tenant_admin()?.clone();
    let comment = body.parse()?;
    let task = state.store.workflow(&id).await?;
    let owner = task.as_ref().map(|t| Owner {
        tenant_id: t.tenant_id.to_string(),
        principal_id: None,
    });
    access::check_owner(&state, &req, &caller, "workflow", &id, owner)?;
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
        access::event(&state, &req, &caller, operation).with_details(serde_json::json!({
            "workflow_id": task.workflow_id,
            "media_buy_id": task.media_buy_id,
            "comment": comment,
        })),
    ];
    let (decided, committed) = state
        .store
        .decide_workflow(
            &tenant,
            &id,
            decision,
            comment.as_deref(),
            caller.principal_id(),
            now,
            Effects::audit(&audit),
        )
        .await?
        .ok_or_else(|| ApiError::Conflict("the workflow was decided meanwhile".into()))?;
    access::committed(&state, &req, committed);
    Ok(web::Json(decided))
}
