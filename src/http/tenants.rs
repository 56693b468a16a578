//! `/api/v1/tenants`: the super admin creates, lists, reads and changes
//! tenants, and issues their admin and ingest tokens. Issuing a token and
//! reactivating a tenant are privilege changes: their audit rows are marked
//! security-relevant and their notices are critical, on the tenant's audit
//! channel ([`access::privilege_change`]).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use overseer_actors::audit::AuditEvent;
use overseer_actors::notify::{Notification, NotificationEvent};
use serde::{Deserialize, Serialize};

use crate::domain::principal::future_expiry;
use crate::domain::{
    InvalidField, NewApiToken, NewTenant, Tenant, TenantId, TenantName, TokenKind,
};
use crate::error::{ApiError, ErrorBody};
use crate::http::access::{self, Page, page, page_limit};
use crate::http::auth::Caller;
use crate::http::authz::SuperAdmin;
use crate::http::{AppState, Json};
use crate::store::Effects;

pub use crate::http::access::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    create,
    list,
    get,
    update,
    create_admin_token,
    create_ingest_token,
    create_adapter_token
))]
pub struct Doc;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/tenants")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(
        web::resource("/tenants/{tenant_id}")
            .route(web::get().to(get))
            .route(web::patch().to(update)),
    )
    .service(
        web::resource("/tenants/{tenant_id}/admin-tokens")
            .route(web::post().to(create_admin_token)),
    )
    .service(
        web::resource("/tenants/{tenant_id}/ingest-tokens")
            .route(web::post().to(create_ingest_token)),
    )
    .service(
        web::resource("/tenants/{tenant_id}/adapter-tokens")
            .route(web::post().to(create_adapter_token)),
    );
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Optional slug; generated (`tenant_` + 12 hex digits) when absent.
    #[serde(default)]
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    id: Option<String>,
    /// Trimmed, no control characters.
    #[schema(min_length = 1, max_length = 200)]
    name: String,
}

/// `POST /api/v1/tenants` → 201 with the tenant, 409 if the id is taken.
#[utoipa::path(
    post,
    path = "/api/v1/tenants",
    tag = "tenants",
    operation_id = "create_tenant",
    request_body = CreateTenant,
    responses(
        (status = 201, description = "The tenant", body = Tenant,
            headers(("Location" = String, description = "The tenant's URL"))),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not the super admin", body = ErrorBody),
        (status = 409, description = "A tenant with this id exists", body = ErrorBody),
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
    _: SuperAdmin,
    state: web::Data<AppState>,
    req: HttpRequest,
    Json(body): Json<CreateTenant>,
) -> Result<HttpResponse, ApiError> {
    let tenant = NewTenant {
        id: match body.id.as_deref() {
            Some(id) => TenantId::parse("id", id)?,
            None => TenantId::generate(),
        },
        name: TenantName::parse("name", &body.name)?,
    };
    let now = state.clock.now();
    let audit = access::event(&state, &req, &Caller::SuperAdmin, "create_tenant")
        .with_tenant(tenant.id.as_str())
        .with_details(serde_json::json!({"tenant_id": tenant.id, "name": tenant.name.as_str()}));
    let (created, committed) = state.store.insert_tenant(&tenant, now, &[audit]).await?;
    access::committed(&state, &req, committed);
    tracing::info!(tenant_id = %created.id, "tenant created");
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/tenants/{}", created.id)))
        .json(created))
}

fn tenant_path(path: &str) -> Result<TenantId, ApiError> {
    TenantId::parse("tenant_id", path).map_err(|_| ApiError::NotFound("no such tenant".into()))
}

/// `GET /api/v1/tenants/{tenant_id}` → the tenant or 404.
#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant_id}",
    tag = "tenants",
    operation_id = "get_tenant",
    params(("tenant_id" = String, Path, description = "The tenant's id")),
    responses(
        (status = 200, description = "The tenant", body = Tenant),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not the super admin", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
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
) -> Result<web::Json<Tenant>, ApiError> {
    let id = tenant_path(&path)?;
    state
        .store
        .tenant(&id)
        .await?
        .map(web::Json)
        .ok_or_else(|| ApiError::NotFound("no such tenant".into()))
}

/// At least one key.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    /// Trimmed, no control characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    name: Option<String>,
    /// `false` stops the tenant's tokens at once.
    #[serde(default)]
    is_active: Option<bool>,
}

/// `PATCH /api/v1/tenants/{tenant_id}` `{name?, is_active?}`. Deactivating a
/// tenant stops its tokens at once; its data and audit trail stay.
#[utoipa::path(
    patch,
    path = "/api/v1/tenants/{tenant_id}",
    tag = "tenants",
    operation_id = "update_tenant",
    params(("tenant_id" = String, Path, description = "The tenant's id")),
    request_body = UpdateTenant,
    responses(
        (status = 200, description = "The tenant after the change", body = Tenant),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not the super admin", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 413, description = "The body is over the limit", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 422, description = "A field is invalid, or nothing to change", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn update(
    _: SuperAdmin,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    Json(body): Json<UpdateTenant>,
) -> Result<web::Json<Tenant>, ApiError> {
    let id = tenant_path(&path)?;
    let name = body
        .name
        .as_deref()
        .map(|n| TenantName::parse("name", n))
        .transpose()?;
    let mut changed = Vec::new();
    if name.is_some() {
        changed.push("name");
    }
    if body.is_active.is_some() {
        changed.push("is_active");
    }
    if changed.is_empty() {
        return Err(InvalidField::new("name", "nothing to change: give name or is_active").into());
    }
    // Reactivating a tenant gives every token it ever issued its access back:
    // a privilege change. (Read before the change: only the super admin
    // changes tenants, so a race here can only mislabel its own request.)
    let reactivated = body.is_active == Some(true)
        && !state
            .store
            .tenant(&id)
            .await?
            .ok_or_else(|| ApiError::NotFound("no such tenant".into()))?
            .is_active;
    let now = state.clock.now();
    let mut audit = access::event(&state, &req, &Caller::SuperAdmin, "update_tenant")
        .with_tenant(id.as_str())
        .with_details(serde_json::json!({
            "tenant_id": id,
            "changed": changed,
            "is_active": body.is_active,
        }));
    let mut noted: Vec<String> = changed.iter().map(|s| s.to_string()).collect();
    if reactivated {
        audit = access::privilege_change(audit, "tenant_reactivated");
        noted.push("tenant_reactivated".into());
    }
    let audit = [audit];
    let notes = [Notification::new(
        Some(id.to_string()),
        NotificationEvent::ConfigurationChanged {
            target: "tenant".into(),
            changed: noted,
            actor: "super_admin".into(),
            privilege: reactivated,
        },
        now,
    )];
    let (tenant, committed) = state
        .store
        .update_tenant(
            &id,
            name.as_ref(),
            body.is_active,
            now,
            Effects::with(&audit, &notes),
        )
        .await?
        .ok_or_else(|| ApiError::NotFound("no such tenant".into()))?;
    access::committed(&state, &req, committed);
    Ok(web::Json(tenant))
}

/// `GET /api/v1/tenants?limit=&cursor=` → tenants by id, keyset-paginated.
#[utoipa::path(
    get,
    path = "/api/v1/tenants",
    tag = "tenants",
    operation_id = "list_tenants",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of tenants, by id", body = Page<Tenant>),
        (status = 400, description = "An unknown or malformed query parameter", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not the super admin", body = ErrorBody),
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
    query: web::Query<ListQuery>,
) -> Result<web::Json<Page<Tenant>>, ApiError> {
    let limit = page_limit(query.limit)?;
    let after = query
        .cursor
        .as_deref()
        .map(|c| {
            TenantId::parse("cursor", c)
                .map_err(|_| InvalidField::new("cursor", "not a cursor from this API"))
        })
        .transpose()?;
    let items = state.store.list_tenants(after.as_ref(), limit + 1).await?;
    Ok(web::Json(page(items, limit, |t| t.id.to_string())))
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
    #[param(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    /// Optional expiry, in the future.
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct CreatedToken {
    token_id: String,
    tenant_id: TenantId,
    kind: TokenKind,
    /// Shown once; only its SHA-256 hash is stored.
    token: String,
    expires_at: Option<DateTime<Utc>>,
}

/// `POST /api/v1/tenants/{tenant_id}/admin-tokens` (super admin), body `{}`
/// or `{"expires_at": "..."}`: a token that administers that tenant.
#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant_id}/admin-tokens",
    tag = "tenants",
    operation_id = "create_admin_token",
    params(("tenant_id" = String, Path, description = "The tenant's id")),
    request_body = CreateToken,
    responses(
        (status = 201, description = "The token, shown once", body = CreatedToken),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not the super admin", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 409, description = "The tenant went away meanwhile", body = ErrorBody),
        (status = 413, description = "The body is over the limit", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 422, description = "`expires_at` is invalid or not in the future", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn create_admin_token(
    _: SuperAdmin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    Json(body): Json<CreateToken>,
) -> Result<HttpResponse, ApiError> {
    create_token(&state, &req, &path, body, TokenKind::Admin).await
}

/// `POST /api/v1/tenants/{tenant_id}/ingest-tokens` (super admin): a token
/// that may write audit events for that tenant, and nothing else.
#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant_id}/ingest-tokens",
    tag = "tenants",
    operation_id = "create_ingest_token",
    params(("tenant_id" = String, Path, description = "The tenant's id")),
    request_body = CreateToken,
    responses(
        (status = 201, description = "The token, shown once", body = CreatedToken),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not the super admin", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 409, description = "The tenant went away meanwhile", body = ErrorBody),
        (status = 413, description = "The body is over the limit", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 422, description = "`expires_at` is invalid or not in the future", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn create_ingest_token(
    _: SuperAdmin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    Json(body): Json<CreateToken>,
) -> Result<HttpResponse, ApiError> {
    create_token(&state, &req, &path, body, TokenKind::Ingest).await
}

/// `POST /api/v1/tenants/{tenant_id}/adapter-tokens` (super admin): a token
/// for an ad server's integration: it may post delivery data for that
/// tenant's media buys, and nothing else.
#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant_id}/adapter-tokens",
    tag = "tenants",
    operation_id = "create_adapter_token",
    params(("tenant_id" = String, Path, description = "The tenant's id")),
    request_body = CreateToken,
    responses(
        (status = 201, description = "The token, shown once", body = CreatedToken),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not the super admin", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 409, description = "The tenant went away meanwhile", body = ErrorBody),
        (status = 413, description = "The body is over the limit", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 422, description = "`expires_at` is invalid or not in the future", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn create_adapter_token(
    _: SuperAdmin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    Json(body): Json<CreateToken>,
) -> Result<HttpResponse, ApiError> {
    create_token(&state, &req, &path, body, TokenKind::Adapter).await
}

async fn create_token(
    state: &AppState,
    req: &HttpRequest,
    path: &str,
    body: CreateToken,
    kind: TokenKind,
) -> Result<HttpResponse, ApiError> {
    let tenant_id = tenant_path(path)?;
    if state.store.tenant(&tenant_id).await?.is_none() {
        return Err(ApiError::NotFound("no such tenant".into()));
    }
    let now = state.clock.now();
    let expires_at = future_expiry(body.expires_at, now)?;
    let (token, record) = NewApiToken::generate(tenant_id, kind, now, expires_at);
    let operation = match kind {
        TokenKind::Admin => "create_admin_token",
        TokenKind::Adapter => "create_adapter_token",
        _ => "create_ingest_token",
    };
    // Every token issued is access granted: a privilege change.
    let change = format!("{}_token_created", kind.as_str());
    let audit: [AuditEvent; 1] = [access::privilege_change(
        access::event(state, req, &Caller::SuperAdmin, operation)
            .with_tenant(record.tenant_id.as_str())
            .with_details(serde_json::json!({
                "token_id": record.id,
                "kind": kind.as_str(),
                "expires_at": expires_at,
            })),
        &change,
    )];
    let notes = [Notification::new(
        Some(record.tenant_id.to_string()),
        NotificationEvent::ConfigurationChanged {
            target: "token".into(),
            changed: vec![change],
            actor: "super_admin".into(),
            privilege: true,
        },
        now,
    )];
    let committed = state
        .store
        .insert_api_token_with(&record, Effects::with(&audit, &notes))
        .await?;
    access::committed(state, req, committed);
    Ok(HttpResponse::Created().json(CreatedToken {
        token_id: record.id,
        tenant_id: record.tenant_id,
        kind: record.kind,
        token,
        expires_at,
    }))
}
