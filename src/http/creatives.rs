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
use crate::store::{Effects, Owner};

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
/// (principal): upserts them, each back to `pending_review`. Creative ids
/// are the principal's own: another principal of the tenant may have a
/// creative of the same id, and neither learns of nor touches the other's.
/// Audited `sync_creatives`.
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
        .await?;
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
    /// `next_cursor` of the previous page: the last creative id, and for a
    /// tenant admin (whose listing may hold one id under several
    /// principals) `~` and its principal's id.
    #[param(pattern = "^[A-Za-z0-9._:-]{1,128}(~[A-Za-z0-9._:-]{1,128})?$")]
    cursor: Option<String>,
}

/// The principal whose creative a tenant admin reviews.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReviewQuery {
    /// The principal whose creative this is. Needed only when several
    /// principals of the tenant have a creative of this id (409 otherwise).
    principal_id: Option<String>,
}

/// A page cursor of [`list`]: `id` or `id~principal_id`.
fn creative_cursor(cursor: Option<&str>) -> Result<Option<(&str, Option<&str>)>, ApiError> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    let (id, principal) = match cursor.split_once('~') {
        Some((id, principal)) => (id, Some(principal)),
        None => (cursor, None),
    };
    page_cursor(Some(id))?;
    page_cursor(principal)?;
    Ok(Some((id, principal)))
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
            creative_cursor(query.cursor.as_deref())?,
            limit + 1,
        )
        .await?;
    let items = page(items, limit, |c| match principal {
        Some(_) => c.creative_id.clone(),
        None => format!("{}~{}", c.creative_id, c.principal_id),
    });
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
    params(("id" = String, Path, description = "The creative's id"), ReviewQuery),
    request_body = ReviewInput,
    responses(
        (status = 200, description = "The creative, now `approved`", body = Creative),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not a tenant admin", body = ErrorBody),
        (status = 404, description = "No such creative in this tenant (for this principal)", body = ErrorBody),
        (status = 409, description = "Several principals have a creative of this id: name one with `principal_id`", body = ErrorBody),
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
    query: web::Query<ReviewQuery>,
    Json(body): Json<ReviewInput>,
) -> Result<web::Json<Creative>, ApiError> {
    review(
        who,
        state,
        req,
        (path.into_inner(), query.into_inner().principal_id),
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
    params(("id" = String, Path, description = "The creative's id"), ReviewQuery),
    request_body = ReviewInput,
    responses(
        (status = 200, description = "The creative, now `rejected`", body = Creative),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not a tenant admin", body = ErrorBody),
        (status = 404, description = "No such creative in this tenant (for this principal)", body = ErrorBody),
        (status = 409, description = "Several principals have a creative of this id: name one with `principal_id`", body = ErrorBody),
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
    query: web::Query<ReviewQuery>,
    Json(body): Json<ReviewInput>,
) -> Result<web::Json<Creative>, ApiError> {
    review(
        who,
        state,
        req,
        (path.into_inner(), query.into_inner().principal_id),
        body,
        CreativeStatus::Rejected,
    )
    .await
}

async fn review(
    who: TenantAdmin,
    state: web::Data<AppState>,
    req: HttpRequest,
    (id, principal): (String, Option<String>),
    body: ReviewInput,
    status: CreativeStatus,
) -> Result<web::Json<Creative>, ApiError> {
    let (tenant, caller) = (who.tenant.clone(), &who.caller);
    let reason = body.parse()?;
    access::path_id("creative", &id)?;
    let owners = state.store.creative_owners(&id).await?;
    let ours: Vec<&Owner> = owners
        .iter()
        .filter(|o| o.tenant_id == tenant.as_str())
        .collect();
    // Ours (the named principal's, or the only one); otherwise, when our
    // tenant has none, someone else's (reported) or nobody's: 404 alike.
    let owner = match (principal.as_deref(), ours.as_slice()) {
        (_, []) => owners.first(),
        (Some(p), _) => ours
            .iter()
            .find(|o| o.principal_id.as_deref() == Some(p))
            .copied(),
        (None, [only]) => Some(*only),
        (None, _) => {
            return Err(ApiError::Conflict(
                "several principals have a creative with this id: name one with ?principal_id="
                    .into(),
            ));
        }
    }
    .cloned();
    access::check_owner(&state, &req, caller, "creative", &id, owner.clone())?;
    let principal_id = owner.and_then(|o| o.principal_id).unwrap_or_default();
    let operation = match status {
        CreativeStatus::Approved => "approve_creative",
        _ => "reject_creative",
    };
    let now = state.clock.now();
    let audit = [access::event(&state, &req, caller, operation).with_details(
        serde_json::json!({"creative_id": id, "creative_principal_id": principal_id, "reason": reason}),
    )];
    let notes = [Notification::new(
        Some(tenant.to_string()),
        NotificationEvent::CreativeReviewed {
            creative_id: id.clone(),
            principal_id: principal_id.clone(),
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
            (&principal_id, &id),
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
