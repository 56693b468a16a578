//! `/api/v1/tenants/{tenant_id}/tokens`: the super admin lists, revokes and
//! rotates a tenant's admin, ingest and adapter tokens (principals' tokens
//! are their tenant admin's, under `/api/v1/principals`).
//!
//! Only the super admin, as for issuing them: a tenant admin cannot issue a
//! token, so it cannot re-issue one either, and revoking another admin token
//! of its own tenant would let one admin lock the others out. Revoking and
//! rotating are privilege changes: the audit row is committed with the change
//! and marked security-relevant ([`access::privilege_change`]), and the
//! notice goes to the tenant's audit channel as critical. The store is asked
//! about every token on every request (there is no cache of verdicts), so a
//! revoked or replaced token is refused from the next request on.
//!
//! Revoking a tenant's last admin token is allowed: the super admin can
//! always issue another. A token of another tenant is answered as a missing
//! one (404), so no one learns which ids exist elsewhere.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use overseer_actors::notify::{Notification, NotificationEvent};
use serde::{Deserialize, Serialize};

use crate::domain::principal::{RotateToken, future_expiry};
use crate::domain::{NewApiToken, TenantId, TenantToken, TokenKind};
use crate::error::{ApiError, ErrorBody};
use crate::http::access::{self, Page, page, page_cursor, page_limit};
use crate::http::auth::Caller;
use crate::http::authz::SuperAdmin;
use crate::http::{AppState, Json};
use crate::store::Effects;
use crate::store::tokens::Rotated;

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, revoke, rotate))]
pub struct Doc;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/tenants/{tenant_id}/tokens").route(web::get().to(list)))
        .service(
            web::resource("/tenants/{tenant_id}/tokens/{token_id}/revoke")
                .route(web::post().to(revoke)),
        )
        .service(
            web::resource("/tenants/{tenant_id}/tokens/{token_id}/rotate")
                .route(web::post().to(rotate)),
        );
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

/// A rotated token: the new token, shown once, and the one it replaced.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct RotatedToken {
    token_id: String,
    tenant_id: TenantId,
    kind: TokenKind,
    /// Shown once; only its SHA-256 hash is stored.
    token: String,
    expires_at: Option<DateTime<Utc>>,
    /// The token it replaced, revoked by the rotation.
    replaces: String,
}

fn tenant_path(path: &str) -> Result<TenantId, ApiError> {
    TenantId::parse("tenant_id", path).map_err(|_| ApiError::NotFound("no such tenant".into()))
}

/// `tenant_id`'s token `token_id`, or 404 (no such tenant, no such token,
/// or another tenant's).
async fn token_of(
    state: &AppState,
    tenant: &str,
    token: &str,
) -> Result<(TenantId, TenantToken), ApiError> {
    let not_found = || ApiError::NotFound("no such token".into());
    let tenant = tenant_path(tenant)?;
    access::path_id("token", token).map_err(|_| not_found())?;
    let found = state
        .store
        .tenant_token(&tenant, token)
        .await?
        .ok_or_else(not_found)?;
    Ok((tenant, found))
}

/// The tenant's audit-channel notice of a token's revocation or rotation
/// (critical: a privilege change).
fn change_note(tenant: &TenantId, change: &str, now: DateTime<Utc>) -> [Notification; 1] {
    [Notification::new(
        Some(tenant.to_string()),
        NotificationEvent::ConfigurationChanged {
            target: "token".into(),
            changed: vec![change.to_owned()],
            actor: "super_admin".into(),
            privilege: true,
        },
        now,
    )]
}

/// `GET /api/v1/tenants/{tenant_id}/tokens` (super admin): the tenant's
/// admin, ingest and adapter tokens by id, revoked ones included, never
/// a token or its hash.
#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant_id}/tokens",
    tag = "tenants",
    operation_id = "list_tenant_tokens",
    params(("tenant_id" = String, Path, description = "The tenant's id"), ListQuery),
    responses(
        (status = 200, description = "One page of the tenant's tokens, by id", body = Page<TenantToken>),
        (status = 400, description = "An unknown or malformed query parameter", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not the super admin", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 422, description = "`limit` or `cursor` is invalid", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn list(
    _: SuperAdmin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<web::Json<Page<TenantToken>>, ApiError> {
    let tenant = tenant_path(&path)?;
    let limit = page_limit(query.limit)?;
    let after = page_cursor(query.cursor.as_deref())?;
    if state.store.tenant(&tenant).await?.is_none() {
        return Err(ApiError::NotFound("no such tenant".into()));
    }
    let items = state.store.tenant_tokens(&tenant, after, limit + 1).await?;
    Ok(web::Json(page(items, limit, |t| t.token_id.clone())))
}

/// `POST /api/v1/tenants/{tenant_id}/tokens/{token_id}/revoke` (super
/// admin): the token is refused from the next request on. Idempotent: a
/// revoked token is answered as it is, with nothing written.
#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant_id}/tokens/{token_id}/revoke",
    tag = "tenants",
    operation_id = "revoke_tenant_token",
    params(
        ("tenant_id" = String, Path, description = "The tenant's id"),
        ("token_id" = String, Path, description = "The token's id"),
    ),
    responses(
        (status = 200, description = "The token, revoked", body = TenantToken),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not the super admin", body = ErrorBody),
        (status = 404, description = "No such token in this tenant", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn revoke(
    _: SuperAdmin,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<web::Json<TenantToken>, ApiError> {
    let (tenant, token) = token_of(&state, &path.0, &path.1).await?;
    if token.revoked_at.is_some() {
        return Ok(web::Json(token));
    }
    let now = state.clock.now();
    let change = format!("{}_token_revoked", token.kind.as_str());
    let audit = [access::privilege_change(
        access::event(&state, &req, &Caller::SuperAdmin, "revoke_tenant_token")
            .with_tenant(tenant.as_str())
            .with_details(serde_json::json!({
                "token_id": token.token_id,
                "kind": token.kind.as_str(),
            })),
        &change,
    )];
    let notes = change_note(&tenant, &change, now);
    match state
        .store
        .revoke_tenant_token(&tenant, &token.token_id, now, Effects::with(&audit, &notes))
        .await?
    {
        Some((revoked, committed)) => {
            access::committed(&state, &req, committed);
            Ok(web::Json(revoked))
        }
        // Revoked meanwhile by another request, which wrote the audit row.
        None => token_of(&state, tenant.as_str(), &token.token_id)
            .await
            .map(|(_, token)| web::Json(token)),
    }
}

/// `POST /api/v1/tenants/{tenant_id}/tokens/{token_id}/rotate`
/// `{expires_at?}` (super admin): a new token of the same kind replaces the
/// old one, which is revoked in the same transaction; the new token is
/// shown once. Its expiry is the body's, as when a token is issued (absent:
/// it does not expire), so a rotation can also renew an expired token. A
/// revoked token is not rotated (409): the super admin issues a new one.
#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant_id}/tokens/{token_id}/rotate",
    tag = "tenants",
    operation_id = "rotate_tenant_token",
    params(
        ("tenant_id" = String, Path, description = "The tenant's id"),
        ("token_id" = String, Path, description = "The token's id"),
    ),
    request_body = RotateToken,
    responses(
        (status = 201, description = "The new token, shown once", body = RotatedToken),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not the super admin", body = ErrorBody),
        (status = 404, description = "No such token in this tenant", body = ErrorBody),
        (status = 409, description = "The token is revoked", body = ErrorBody),
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
    _: SuperAdmin,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    Json(body): Json<RotateToken>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, old) = token_of(&state, &path.0, &path.1).await?;
    let revoked = || ApiError::Conflict("the token is revoked; issue a new one".into());
    if old.revoked_at.is_some() {
        return Err(revoked());
    }
    let now = state.clock.now();
    let expires_at = future_expiry(body.expires_at, now)?;
    let (token, new) = NewApiToken::generate(tenant.clone(), old.kind, now, expires_at);
    let change = format!("{}_token_rotated", old.kind.as_str());
    let audit = [access::privilege_change(
        access::event(&state, &req, &Caller::SuperAdmin, "rotate_tenant_token")
            .with_tenant(tenant.as_str())
            .with_details(serde_json::json!({
                "token_id": new.id,
                "replaces": old.token_id,
                "kind": old.kind.as_str(),
                "expires_at": expires_at,
            })),
        &change,
    )];
    let notes = change_note(&tenant, &change, now);
    match state
        .store
        .rotate_tenant_token(&tenant, &old.token_id, &new, Effects::with(&audit, &notes))
        .await?
    {
        Rotated::Done(committed) => access::committed(&state, &req, committed),
        Rotated::AlreadyRevoked => return Err(revoked()),
        Rotated::NotFound => return Err(ApiError::NotFound("no such token".into())),
    }
    Ok(HttpResponse::Created().json(RotatedToken {
        token_id: new.id,
        tenant_id: new.tenant_id,
        kind: new.kind,
        token,
        expires_at,
        replaces: old.token_id,
    }))
}
