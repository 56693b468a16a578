//! `/api/v1/creatives`: principals sync their creatives; the tenant's admin
//! approves or rejects them.

use actix_web::{HttpRequest, HttpResponse, web};
use overseer_actors::notify::{Notification, NotificationEvent};
use serde::{Deserialize, Serialize};

use crate::domain::creative::{Creative, CreativeStatus, ReviewInput, SyncCreatives};
use crate::error::{ApiError, ErrorBody};
use crate::http::access::{self, Page, page, page_cursor, page_limit};
use crate::http::authz::{AdminOrPrincipal, Principal, TenantAdmin};
use crate::http::{AppState, Json};
use crate::store::Effects;

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(paths(sync, list, approve, reject))]
pub struct Doc;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/creatives")
            .route(web::post().to(sync))
            .route(web::get().to(list)),
    )
    .service(web::resource("/creatives/{id}/approve").route(web::post().to(approve)))
    .service(web::resource("/creatives/{id}/reject").route(web::post().to(reject)));
}

/// `POST /api/v1/creatives` `{creatives: [{creative_id, name, format, url}]}`
/// (principal): upserts them, each back to `pending_review`. An id another
/// principal of the tenant holds is a 409 (nothing is written). Audited
/// `sync_creatives`.
#[utoipa::path(
    post,
    path = "/api/v1/creatives",
    tag = "creatives",
    operation_id = "sync_creatives",
    request_body = SyncCreatives,
    responses(
        (status = 200, description = "The creatives as stored, each `pending_review`", body = SyncedCreatives),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not a principal", body = ErrorBody),
        (status = 409, description = "A creative id belongs to another principal", body = ErrorBody),
        (status = 413, description = "The body is over the limit", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 422, description = "A creative is invalid", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn sync(
    who: Principal,
    state: web::Data<AppState>,
    req: HttpRequest,
    Json(body): Json<SyncCreatives>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, principal_id, caller) = (&who.tenant, who.id.as_str(), &who.caller);
    let creatives = body.parse()?;
    let now = state.clock.now();
    let ids: Vec<String> = creatives.iter().map(|c| c.id.clone()).collect();
    let audit = [access::event(&state, &req, caller, "sync_creatives")
        .with_details(serde_json::json!({"creative_ids": ids, "count": ids.len()}))];
    let notes = [Notification::new(
        Some(tenant.to_string()),
        NotificationEvent::CreativePendingReview {
            principal_id: principal_id.to_owned(),
            creative_ids: ids,
        },
        now,
    )];
    let (synced, committed) = state
        .store
        .sync_creatives(
            tenant,
            principal_id,
            &creatives,
            now,
            Effects::with(&audit, &notes),
        )
        .await?
        .ok_or_else(|| {
            ApiError::Conflict("a creative id is already used by another principal".into())
        })?;
    access::committed(&state, &req, committed);
    Ok(HttpResponse::Ok().json(SyncedCreatives { creatives: synced }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct SyncedCreatives {
    creatives: Vec<Creative>,
}

/// Any other query parameter is a 400.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only creatives in this status.
    #[param(value_type = Option<CreativeStatus>)]
    status: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    cursor: Option<String>,
}

/// `GET /api/v1/creatives?status=` — a principal sees its own, a tenant
/// admin all of the tenant's. Audited `list_creatives`.
#[utoipa::path(
    get,
    path = "/api/v1/creatives",
    tag = "creatives",
    operation_id = "list_creatives",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of creatives, by id", body = Page<Creative>),
        (status = 400, description = "An unknown or malformed query parameter", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not a tenant admin or a principal", body = ErrorBody),
        (status = 422, description = "`status`, `limit` or `cursor` is invalid", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn list(
    who: AdminOrPrincipal,
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<ListQuery>,
) -> Result<web::Json<Page<Creative>>, ApiError> {
    let (tenant, principal, caller) = (&who.tenant, who.principal.as_deref(), &who.caller);
    let limit = page_limit(query.limit)?;
    let status = query
        .status
        .clone()
        .map(CreativeStatus::try_from)
        .transpose()?;
    let items = state
        .store
        .creatives(
            tenant,
            principal,
            status.map(CreativeStatus::as_str),
            page_cursor(query.cursor.as_deref())?,
            limit + 1,
        )
        .await?;
    let items = page(items, limit, |c| c.creative_id.clone());
    access::record_read(
        &state,
        &req,
        access::event(&state, &req, caller, "list_creatives")
            .with_details(serde_json::json!({"count": items.items.len()})),
    );
    Ok(web::Json(items))
}

/// `POST /api/v1/creatives/{id}/approve` `{reason?}` (tenant admin).
#[utoipa::path(
    post,
    path = "/api/v1/creatives/{id}/approve",
    tag = "creatives",
    operation_id = "approve_creative",
    params(("id" = String, Path, description = "The creative's id")),
    request_body = ReviewInput,
    responses(
        (status = 200, description = "The creative, now `approved`", body = Creative),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not a tenant admin", body = ErrorBody),
        (status = 404, description = "No such creative in this tenant", body = ErrorBody),
        (status = 413, description = "The body is over the limit", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 422, description = "`reason` is invalid", body = ErrorBody),
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
    Json(body): Json<ReviewInput>,
) -> Result<web::Json<Creative>, ApiError> {
    review(
        who,
        state,
        req,
        path.into_inner(),
        body,
        CreativeStatus::Approved,
    )
    .await
}

/// `POST /api/v1/creatives/{id}/reject` `{reason?}` (tenant admin).
#[utoipa::path(
    post,
    path = "/api/v1/creatives/{id}/reject",
    tag = "creatives",
    operation_id = "reject_creative",
    params(("id" = String, Path, description = "The creative's id")),
    request_body = ReviewInput,
    responses(
        (status = 200, description = "The creative, now `rejected`", body = Creative),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not a tenant admin", body = ErrorBody),
        (status = 404, description = "No such creative in this tenant", body = ErrorBody),
        (status = 413, description = "The body is over the limit", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 422, description = "`reason` is invalid", body = ErrorBody),
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
    Json(body): Json<ReviewInput>,
) -> Result<web::Json<Creative>, ApiError> {
    review(
        who,
        state,
        req,
        path.into_inner(),
        body,
        CreativeStatus::Rejected,
    )
    .await
}

async fn review(
    who: TenantAdmin,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: String,
    body: ReviewInput,
    status: CreativeStatus,
) -> Result<web::Json<Creative>, ApiError> {
    let (tenant, caller) = (who.tenant.clone(), &who.caller);
    let reason = body.parse()?;
    access::path_id("creative", &id)?;
    let owners = state.store.creative_owners(&id).await?;
    // Ours if our tenant has one; otherwise someone else's (or nobody's).
    let owner = owners
        .iter()
        .find(|o| o.tenant_id == tenant.as_str())
        .or(owners.first())
        .cloned();
    access::check_owner(&state, &req, caller, "creative", &id, owner)?;
    let operation = match status {
        CreativeStatus::Approved => "approve_creative",
        _ => "reject_creative",
    };
    let now = state.clock.now();
    let audit = [access::event(&state, &req, caller, operation)
        .with_details(serde_json::json!({"creative_id": id, "reason": reason}))];
    let principal_id = owners
        .iter()
        .find(|o| o.tenant_id == tenant.as_str())
        .and_then(|o| o.principal_id.clone())
        .unwrap_or_default();
    let notes = [Notification::new(
        Some(tenant.to_string()),
        NotificationEvent::CreativeReviewed {
            creative_id: id.clone(),
            principal_id,
            decision: match status {
                CreativeStatus::Approved => "approved".into(),
                _ => "rejected".into(),
            },
            actor: caller.principal_id().to_owned(),
            reason: reason.clone(),
        },
        now,
    )];
    let (creative, committed) = state
        .store
        .review_creative(
            &tenant,
            &id,
            status,
            reason.as_deref(),
            now,
            Effects::with(&audit, &notes),
        )
        .await?
        .ok_or_else(|| ApiError::NotFound("no such creative".into()))?;
    access::committed(&state, &req, committed);
    Ok(web::Json(creative))
}
