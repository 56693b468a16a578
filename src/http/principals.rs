//! `/api/v1/principals`: a tenant admin creates its buyer agents and manages
//! their tokens.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use overseer_actors::notify::{Notification, NotificationEvent};
use serde::{Deserialize, Serialize};

use crate::domain::principal::{
    CreatePrincipal, IssuedToken, Principal, RotateToken, future_expiry,
};
use crate::domain::text::generate_id;
use crate::error::{ApiError, ErrorBody};
use crate::http::access::{self, Page, PageQuery, page, page_cursor, page_limit};
use crate::http::auth::Caller;
use crate::http::authz::TenantAdmin;
use crate::http::{AppState, Json};
use crate::store::{Effects, Owner};

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(paths(create, list, get, revoke, rotate))]
pub struct Doc;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/principals")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(web::resource("/principals/{principal_id}").route(web::get().to(get)))
    .service(web::resource("/principals/{principal_id}/revoke-token").route(web::post().to(revoke)))
    .service(
        web::resource("/principals/{principal_id}/rotate-token").route(web::post().to(rotate)),
    );
}

/// A principal with its token, shown once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct WithToken {
    principal_id: String,
    tenant_id: String,
    name: String,
    /// Shown once; only its SHA-256 hash is stored.
    token: String,
    expires_at: Option<DateTime<Utc>>,
}

/// The audit channel's notice of a change to a principal; `privilege` for
/// one that grants access (a rotated token).
fn change_note(
    tenant: &str,
    change: &str,
    actor: &str,
    privilege: bool,
    now: DateTime<Utc>,
) -> [Notification; 1] {
    [Notification::new(
        Some(tenant.to_owned()),
        NotificationEvent::ConfigurationChanged {
            target: "principal".into(),
            changed: vec![change.to_owned()],
            actor: actor.to_owned(),
            privilege,
        },
        now,
    )]
}

/// `POST /api/v1/principals` `{name, expires_at?}` (tenant admin) → 201
/// `{principal_id, token, ...}`.
#[utoipa::path(
    post,
    path = "/api/v1/principals",
    tag = "principals",
    operation_id = "create_principal",
    request_body = CreatePrincipal,
    responses(
        (status = 201, description = "The principal and its token, shown once", body = WithToken),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not a tenant admin", body = ErrorBody),
        (status = 413, description = "The body is over the limit", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 422, description = "A field is invalid", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn create(
    who: TenantAdmin,
    state: web::Data<AppState>,
    req: HttpRequest,
    Json(body): Json<CreatePrincipal>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, caller) = (who.tenant.clone(), &who.caller);
    let now = state.clock.now();
    let (name, expires_at) = body.parse(now)?;
    let id = generate_id("prn");
    let issued = IssuedToken::generate();
    let audit = [access::event(&state, &req, caller, "create_principal")
        .with_details(serde_json::json!({"principal_id": id, "name": name}))];
    let notes = change_note(
        tenant.as_str(),
        "principal_created",
        caller.principal_id(),
        false,
        now,
    );
    let (principal, committed) = state
        .store
        .insert_principal(
            &tenant,
            &id,
            &name,
            &issued.token_hash,
            expires_at,
            now,
            Effects::with(&audit, &notes),
        )
        .await?;
    access::committed(&state, &req, committed);
    Ok(HttpResponse::Created().json(WithToken {
        principal_id: principal.principal_id,
        tenant_id: principal.tenant_id.to_string(),
        name: principal.name,
        token: issued.token,
        expires_at: principal.expires_at,
    }))
}

/// Any other query parameter is a 400.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    cursor: Option<String>,
}

/// `GET /api/v1/principals` (tenant admin), by id, paginated.
#[utoipa::path(
    get,
    path = "/api/v1/principals",
    tag = "principals",
    operation_id = "list_principals",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of principals, by id", body = Page<Principal>),
        (status = 400, description = "An unknown or malformed query parameter", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not a tenant admin", body = ErrorBody),
        (status = 422, description = "`limit` or `cursor` is invalid", body = ErrorBody),
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
) -> Result<web::Json<Page<Principal>>, ApiError> {
    let tenant = &who.tenant;
    let q = PageQuery {
        limit: query.limit,
        cursor: query.cursor.clone(),
    };
    let limit = page_limit(q.limit)?;
    let items = state
        .store
        .principals(tenant, page_cursor(q.cursor.as_deref())?, limit + 1)
        .await?;
    Ok(web::Json(page(items, limit, |p| p.principal_id.clone())))
}

/// The principal at `id`, if the caller (a tenant admin) may see it.
async fn visible(
    caller: &Caller,
    state: &AppState,
    req: &HttpRequest,
    id: &str,
) -> Result<Principal, ApiError> {
    access::path_id("principal", id)?;
    let found = state.store.principal(id).await?;
    let owner = found.as_ref().map(|p| Owner {
        tenant_id: p.tenant_id.to_string(),
        principal_id: None,
    });
    access::check_owner(state, req, caller, "principal", id, owner)?;
    found.ok_or_else(|| ApiError::NotFound("no such principal".into()))
}

/// `GET /api/v1/principals/{id}` (tenant admin).
#[utoipa::path(
    get,
    path = "/api/v1/principals/{principal_id}",
    tag = "principals",
    operation_id = "get_principal",
    params(("principal_id" = String, Path, description = "The principal's id")),
    responses(
        (status = 200, description = "The principal", body = Principal),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not a tenant admin", body = ErrorBody),
        (status = 404, description = "No such principal in this tenant", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn get(
    TenantAdmin { caller, .. }: TenantAdmin,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<web::Json<Principal>, ApiError> {
    Ok(web::Json(visible(&caller, &state, &req, &path).await?))
}

/// `POST /api/v1/principals/{id}/revoke-token` (tenant admin): the token
/// stops working at once. Idempotent.
#[utoipa::path(
    post,
    path = "/api/v1/principals/{principal_id}/revoke-token",
    tag = "principals",
    operation_id = "revoke_principal_token",
    params(("principal_id" = String, Path, description = "The principal's id")),
    responses(
        (status = 200, description = "The principal, its token revoked", body = Principal),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not a tenant admin", body = ErrorBody),
        (status = 404, description = "No such principal in this tenant", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn revoke(
    TenantAdmin { caller, .. }: TenantAdmin,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<web::Json<Principal>, ApiError> {
    let principal = visible(&caller, &state, &req, &path).await?;
    let now = state.clock.now();
    let audit = [
        access::event(&state, &req, &caller, "update_principal").with_details(
            serde_json::json!({"principal_id": principal.principal_id, "change": "token_revoked"}),
        ),
    ];
    let notes = change_note(
        principal.tenant_id.as_str(),
        "token_revoked",
        caller.principal_id(),
        false,
        now,
    );
    let (updated, committed) = state
        .store
        .update_principal_token(
            &principal.tenant_id,
            &principal.principal_id,
            None,
            None,
            now,
            Effects::with(&audit, &notes),
        )
        .await?
        .ok_or_else(|| ApiError::NotFound("no such principal".into()))?;
    access::committed(&state, &req, committed);
    Ok(web::Json(updated))
}

/// `POST /api/v1/principals/{id}/rotate-token` `{expires_at?}` (tenant
/// admin): a new token replaces the old one (which stops working) and is
/// shown once.
#[utoipa::path(
    post,
    path = "/api/v1/principals/{principal_id}/rotate-token",
    tag = "principals",
    operation_id = "rotate_principal_token",
    params(("principal_id" = String, Path, description = "The principal's id")),
    request_body = RotateToken,
    responses(
        (status = 200, description = "The principal and its new token, shown once", body = WithToken),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not a tenant admin", body = ErrorBody),
        (status = 404, description = "No such principal in this tenant", body = ErrorBody),
        (status = 413, description = "The body is over the limit", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 422, description = "`expires_at` is invalid or not in the future", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn rotate(
    TenantAdmin { caller, .. }: TenantAdmin,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    Json(body): Json<RotateToken>,
) -> Result<web::Json<WithToken>, ApiError> {
    let principal = visible(&caller, &state, &req, &path).await?;
    let now = state.clock.now();
    let expires_at = future_expiry(body.expires_at, now)?;
    let issued = IssuedToken::generate();
    // A new credential for an existing identity: a privilege change.
    let audit = [access::privilege_change(
        access::event(&state, &req, &caller, "update_principal").with_details(
            serde_json::json!({"principal_id": principal.principal_id, "change": "token_rotated"}),
        ),
        "principal_token_rotated",
    )];
    let notes = change_note(
        principal.tenant_id.as_str(),
        "token_rotated",
        caller.principal_id(),
        true,
        now,
    );
    let (updated, committed) = state
        .store
        .update_principal_token(
            &principal.tenant_id,
            &principal.principal_id,
            Some(&issued.token_hash),
            expires_at,
            now,
            Effects::with(&audit, &notes),
        )
        .await?
        .ok_or_else(|| ApiError::NotFound("no such principal".into()))?;
    access::committed(&state, &req, committed);
    Ok(web::Json(WithToken {
        principal_id: updated.principal_id,
        tenant_id: updated.tenant_id.to_string(),
        name: updated.name,
        token: issued.token,
        expires_at: updated.expires_at,
    }))
}
