//! `/api/v1/tenants`: the super admin creates, lists and reads tenants.

use actix_web::http::header;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use overseer_actors::audit::AuditEvent;
use serde::{Deserialize, Serialize};

use crate::auth::SuperAdmin;
use crate::domain::{InvalidField, NewTenant, Tenant, TenantId, TenantName};
use crate::error::ApiError;
use crate::http::audit::AuditedByHandler;
use crate::http::{AppState, Json};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/tenants")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(web::resource("/tenants/{tenant_id}").route(web::get().to(get)));
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Optional slug; generated (`tenant_` + 12 hex digits) when absent.
    #[serde(default)]
    id: Option<String>,
    name: String,
}

/// `POST /api/v1/tenants` → 201 with the tenant, 409 if the id is taken.
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
    let audit = AuditEvent::new("create_tenant", now)
        .with_tenant(tenant.id.as_str())
        .with_principal("super_admin", Some("Super admin".into()))
        .with_details(serde_json::json!({"tenant_id": tenant.id, "name": tenant.name.as_str()}));
    let (created, committed) = state.store.insert_tenant(&tenant, now, &[audit]).await?;
    // The audit row committed with the tenant; the middleware need not record
    // the request again.
    req.extensions_mut().insert(AuditedByHandler);
    state.actors.auditor.committed(committed);
    tracing::info!(tenant_id = %created.id, "tenant created");
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/tenants/{}", created.id)))
        .json(created))
}

/// `GET /api/v1/tenants/{tenant_id}` → the tenant or 404.
#[tracing::instrument(skip_all)]
async fn get(
    _: SuperAdmin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<web::Json<Tenant>, ApiError> {
    let not_found = || ApiError::NotFound("no such tenant".into());
    let id = TenantId::parse("tenant_id", &path).map_err(|_| not_found())?;
    state
        .store
        .tenant(&id)
        .await?
        .map(web::Json)
        .ok_or_else(not_found)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

/// One page of a list: `next_cursor` is absent on the last page.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 500;

/// `GET /api/v1/tenants?limit=&cursor=` → tenants by id, keyset-paginated. The
/// cursor is opaque to clients (today: the last id of the previous page).
#[tracing::instrument(skip_all)]
async fn list(
    _: SuperAdmin,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<web::Json<Page<Tenant>>, ApiError> {
    let limit = match query.limit {
        None => DEFAULT_PAGE_SIZE,
        Some(n @ 1..=MAX_PAGE_SIZE) => n,
        Some(_) => {
            return Err(InvalidField::new(
                "limit",
                format!("must be between 1 and {MAX_PAGE_SIZE}"),
            )
            .into());
        }
    };
    let after = query
        .cursor
        .as_deref()
        .map(|c| {
            TenantId::parse("cursor", c)
                .map_err(|_| InvalidField::new("cursor", "not a cursor from this API"))
        })
        .transpose()?;
    let mut items = state.store.list_tenants(after.as_ref(), limit + 1).await?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|t| t.id.to_string())
    } else {
        None
    };
    Ok(web::Json(Page { items, next_cursor }))
}
