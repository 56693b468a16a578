//! A media buy's webhook requests to its buyer: see them (the buyer or its
//! tenant's admin) and put a failed one back in the queue (tenant admin).

use actix_web::{HttpRequest, web};
use serde::Serialize;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::http::media_buys::visible;
use crate::http::{AppState, access};
use crate::store::Effects;
use crate::store::webhooks::WebhookRow;

#[derive(utoipa::OpenApi)]
#[openapi(paths(list, retry))]
pub struct Doc;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/media-buys/{id}/webhooks").route(web::get().to(list)))
        .service(
            web::resource("/media-buys/{id}/webhooks/{webhook_id}/retry")
                .route(web::post().to(retry)),
        );
}

/// A buy's webhook requests, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct WebhookList {
    items: Vec<WebhookRow>,
}

/// `GET /api/v1/media-buys/{id}/webhooks` (its principal or a tenant admin).
#[utoipa::path(
    get,
    path = "/api/v1/media-buys/{id}/webhooks",
    tag = "media-buys",
    operation_id = "list_media_buy_webhooks",
    params(("id" = String, Path, description = "The media buy's id", pattern = "^[A-Za-z0-9._:-]{1,128}$")),
    responses(
        (status = 200, description = "Every request to the buyer's webhooks for this buy, with its state", body = WebhookList),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Neither a tenant admin nor a principal", body = ErrorBody),
        (status = 404, description = "No such media buy (or someone else's)", body = ErrorBody),
        (status = 422, description = "The id is malformed", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn list(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<web::Json<WebhookList>, ApiError> {
    let buy = visible(&caller, &state, &req, &path).await?;
    let items = state.store.webhook_rows(&buy.id).await?;
    Ok(web::Json(WebhookList { items }))
}

/// `POST /api/v1/media-buys/{id}/webhooks/{webhook_id}/retry` (tenant
/// admin): a `failed` request goes back in the queue with a fresh budget.
#[utoipa::path(
    post,
    path = "/api/v1/media-buys/{id}/webhooks/{webhook_id}/retry",
    tag = "media-buys",
    operation_id = "retry_media_buy_webhook",
    params(
        ("id" = String, Path, description = "The media buy's id", pattern = "^[A-Za-z0-9._:-]{1,128}$"),
        ("webhook_id" = i64, Path, description = "The request's id"),
    ),
    responses(
        (status = 200, description = "Queued again", body = WebhookRow),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not a tenant admin", body = ErrorBody),
        (status = 404, description = "No such media buy or request", body = ErrorBody),
        (status = 409, description = "The request has not failed", body = ErrorBody),
        (status = 422, description = "An id is malformed", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn retry(
    caller: Caller,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<web::Json<WebhookRow>, ApiError> {
    caller.tenant_admin()?;
    let (id, webhook_id) = path.into_inner();
    let webhook_id: i64 = webhook_id
        .parse()
        .map_err(|_| crate::domain::InvalidField::new("webhook_id", "must be a whole number"))?;
    let buy = visible(&caller, &state, &req, &id).await?;
    let rows = state.store.webhook_rows(&buy.id).await?;
    let Some(row) = rows.iter().find(|r| r.id == webhook_id) else {
        return Err(ApiError::NotFound("no such webhook request".into()));
    };
    if row.status != "failed" {
        return Err(ApiError::Conflict(format!(
            "the request is {}, not failed",
            row.status
        )));
    }
    let audit = [access::event(&state, &req, &caller, "webhook_requeued")
        .with_details(serde_json::json!({"media_buy_id": buy.id, "webhook_id": webhook_id}))];
    let committed = state
        .store
        .requeue_webhook(webhook_id, &buy.id, Effects::audit(&audit))
        .await?
        .ok_or_else(|| ApiError::Conflict("the request changed meanwhile".into()))?;
    access::committed(&state, &req, committed);
    let rows = state.store.webhook_rows(&buy.id).await?;
    rows.into_iter()
        .find(|r| r.id == webhook_id)
        .map(web::Json)
        .ok_or_else(|| ApiError::NotFound("no such webhook request".into()))
}
