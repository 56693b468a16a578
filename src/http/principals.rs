//! `/api/v1/principals`: a tenant admin creates its buyer agents and manages
//! their tokens.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use overseer_actors::notify::{Notification, NotificationEvent};
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::domain::principal::{
    CreatePrincipal, IssuedToken, Principal, RotateToken, future_expiry,
};
use crate::domain::text::generate_id;
use crate::error::ApiError;
use crate::http::access::{self, Page, PageQuery, page, page_cursor, page_limit};
use crate::http::{AppState, Json};
use crate::store::{Effects, Owner};

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
#[derive(Debug, Serialize)]
struct WithToken {
    principal_id: String,
    tenant_id: String,
    name: String,
    /// Shown once; only its SHA-256 hash is stored.
    token: String,
    expires_at: Option<DateTime<Utc>>,
}

fn change_note(tenant: &str, change: &str, actor: &str, now: DateTime<Utc>) -> [Notification; 1] {
    [Notification::new(
        Some(tenant.to_owned()),
        NotificationEvent::ConfigurationChanged {
            target: "principal".into(),
            changed: vec![change.to_owned()],
            actor: actor.to_owned(),
        },
        now,
    )]
}

/// `POST /api/v1/principals` `{name, expires_at?}` (tenant admin) → 201
/// `{principal_id, token, ...}`.
#[tracing::instrument(skip_all)]
async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
    Json(body): Json<CreatePrincipal>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant_admin()?.clone();
    let now = state.clock.now();
    let (name, expires_at) = body.parse(now)?;
    let id = generate_id("prn");
    let issued = IssuedToken::generate();
    let audit = [access::event(&state, &req, &caller, "create_principal")
        .with_details(serde_json::json!({"principal_id": id, "name": name}))];
    let notes = change_note(
        tenant.as_str(),
        "principal_created",
        caller.principal_id(),
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /api/v1/principals` (tenant admin), by id, paginated.
#[tracing::instrument(skip_all)]
async fn list(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<web::Json<Page<Principal>>, ApiError> {
    let tenant = caller.tenant_admin()?;
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
    caller.tenant_admin()?;
    let found = state.store.principal(id).await?;
    let owner = found.as_ref().map(|p| Owner {
        tenant_id: p.tenant_id.to_string(),
        principal_id: None,
    });
    access::check_owner(state, req, caller, "principal", id, owner)?;
    found.ok_or_else(|| ApiError::NotFound("no such principal".into()))
}

/// `GET /api/v1/principals/{id}` (tenant admin).
#[tracing::instrument(skip_all)]
async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<web::Json<Principal>, ApiError> {
    Ok(web::Json(visible(&caller, &state, &req, &path).await?))
}

/// `POST /api/v1/principals/{id}/revoke-token` (tenant admin): the token
/// stops working at once. Idempotent.
#[tracing::instrument(skip_all)]
async fn revoke(
    caller: Caller,
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
#[tracing::instrument(skip_all)]
async fn rotate(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    Json(body): Json<RotateToken>,
) -> Result<web::Json<serde_json::Value>, ApiError> {
    let principal = visible(&caller, &state, &req, &path).await?;
    let now = state.clock.now();
    let expires_at = future_expiry(body.expires_at, now)?;
    let issued = IssuedToken::generate();
    let audit = [
        access::event(&state, &req, &caller, "update_principal").with_details(
            serde_json::json!({"principal_id": principal.principal_id, "change": "token_rotated"}),
        ),
    ];
    let notes = change_note(
        principal.tenant_id.as_str(),
        "token_rotated",
        caller.principal_id(),
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
    Ok(web::Json(serde_json::json!(WithToken {
        principal_id: updated.principal_id,
        tenant_id: updated.tenant_id.to_string(),
        name: updated.name,
        token: issued.token,
        expires_at: updated.expires_at,
    })))
}
