//! `/api/v1/push-notification-configs`: a buyer (principal) registers where
//! its delivery reports and status changes go. Tokens are write-only; the
//! URL passes the outbound guard at registration (and again when sending).

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

use crate::domain::push_config::{
    CreatePushConfig, MAX_PER_PRINCIPAL, PushConfig, PushConfigView, loggable_url, stored_token,
};
use crate::domain::text::generate_id;
use crate::error::{ApiError, ErrorBody};
use crate::http::access;
use crate::http::authz::Principal;
use crate::http::{AppState, Json};
use crate::store::{Effects, Owner};

#[derive(utoipa::OpenApi)]
#[openapi(paths(create, list, delete))]
pub struct Doc;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/push-notification-configs")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(web::resource("/push-notification-configs/{id}").route(web::delete().to(delete)));
}

/// A principal's configs (at most 20, oldest first).
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ConfigList {
    items: Vec<PushConfigView>,
}

/// `POST /api/v1/push-notification-configs` (principal) `{url,
/// authentication_type, authentication_token}` → 201, the token never shown.
#[utoipa::path(
    post,
    path = "/api/v1/push-notification-configs",
    tag = "media-buys",
    operation_id = "create_push_notification_config",
    request_body = CreatePushConfig,
    responses(
        (status = 201, description = "Registered; the token is stored, never shown", body = PushConfigView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not a principal token", body = ErrorBody),
        (status = 409, description = "The principal has 20 configs already", body = ErrorBody),
        (status = 413, description = "The body is over the limit", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 422, description = "A field is invalid, or the URL's host may not be reached (SSRF rules)", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn create(
    who: Principal,
    state: web::Data<AppState>,
    req: HttpRequest,
    Json(body): Json<CreatePushConfig>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, principal_id, caller) = (&who.tenant, who.id.as_str(), &who.caller);
    let (tenant, principal_id) = (tenant.clone(), principal_id.to_owned());
    let new = body.parse(state.environment.input_policy())?;
    state.ssrf.admit("url", new.url.as_str()).await?;
    let now = state.clock.now();
    let config = PushConfig {
        id: generate_id("pnc"),
        tenant_id: tenant.to_string(),
        principal_id,
        url: new.url.to_string(),
        authentication_type: new.auth.as_str().to_owned(),
        authentication_token: stored_token(&new.token),
        status: "active".to_owned(),
        created_at: now,
        updated_at: now,
    };
    let audit = [
        access::event(&state, &req, caller, "create_push_notification_config").with_details(
            serde_json::json!({
                "config_id": config.id,
                "url": loggable_url(&config.url),
                "authentication_type": config.authentication_type,
            }),
        ),
    ];
    let committed = state
        .store
        .insert_push_config(&config, MAX_PER_PRINCIPAL, Effects::audit(&audit))
        .await?
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "a principal has at most {MAX_PER_PRINCIPAL} push-notification configs"
            ))
        })?;
    access::committed(&state, &req, committed);
    Ok(HttpResponse::Created().json(PushConfigView::from(&config)))
}

/// `GET /api/v1/push-notification-configs` (principal): its own configs.
#[utoipa::path(
    get,
    path = "/api/v1/push-notification-configs",
    tag = "media-buys",
    operation_id = "list_push_notification_configs",
    responses(
        (status = 200, description = "The caller's configs, oldest first", body = ConfigList),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not a principal token", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn list(
    who: Principal,
    state: web::Data<AppState>,
) -> Result<web::Json<ConfigList>, ApiError> {
    let principal_id = who.id.as_str();
    let configs = state.store.push_configs(principal_id).await?;
    Ok(web::Json(ConfigList {
        items: configs.iter().map(PushConfigView::from).collect(),
    }))
}

/// `DELETE /api/v1/push-notification-configs/{id}` (its principal) → 204.
#[utoipa::path(
    delete,
    path = "/api/v1/push-notification-configs/{id}",
    tag = "media-buys",
    operation_id = "delete_push_notification_config",
    params(("id" = String, Path, description = "The config's id", pattern = "^[A-Za-z0-9._:-]{1,128}$")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not a principal token", body = ErrorBody),
        (status = 404, description = "No such config (or someone else's)", body = ErrorBody),
        (status = 422, description = "The id is malformed", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn delete(
    who: Principal,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (principal_id, caller) = (who.id.as_str(), &who.caller);
    let principal_id = principal_id.to_owned();
    let id = path.into_inner();
    access::path_id("push-notification config", &id)?;
    let config = state.store.push_config(&id).await?;
    let owner = config.as_ref().map(|c| Owner {
        tenant_id: c.tenant_id.clone(),
        principal_id: Some(c.principal_id.clone()),
    });
    access::check_owner(&state, &req, caller, "push-notification config", &id, owner)?;
    let audit = [
        access::event(&state, &req, caller, "delete_push_notification_config")
            .with_details(serde_json::json!({"config_id": id})),
    ];
    let committed = state
        .store
        .delete_push_config(&id, &principal_id, Effects::audit(&audit))
        .await?
        .ok_or_else(|| ApiError::NotFound("no such push-notification config".into()))?;
    access::committed(&state, &req, committed);
    Ok(HttpResponse::NoContent().finish())
}
