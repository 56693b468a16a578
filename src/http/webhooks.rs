//! A media buy's webhook requests to its buyer: see them (the buyer or its
//! tenant's admin) and put a failed one back in the queue (tenant admin).

use actix_web::{HttpRequest, web};
use serde::Serialize;

use crate::error::{ApiError, ErrorBody};
use crate::http::authz::{AdminOrPrincipal, TenantAdmin};
use crate::http::media_buys::visible;
use crate::http::{AppState, access};
use crate::store::Effects;
use crate::store::webhooks::WebhookRow;

#[derive(utoipa::OpenApi)]
#[openapi(paths(list, retry, report))]
pub struct Doc;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/media-buys/{id}/webhooks").route(web::get().to(list)))
        .service(
            web::resource("/media-buys/{id}/webhooks/{webhook_id}/retry")
                .route(web::post().to(retry)),
        )
        .service(web::resource("/media-buys/{id}/delivery/report").route(web::post().to(report)));
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
    AdminOrPrincipal { caller, .. }: AdminOrPrincipal,
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
    who: TenantAdmin,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<web::Json<WebhookRow>, ApiError> {
    let caller = &who.caller;
    let (id, webhook_id) = path.into_inner();
    let webhook_id: i64 = webhook_id
        .parse()
        .map_err(|_| crate::domain::InvalidField::new("webhook_id", "must be a whole number"))?;
    let buy = visible(caller, &state, &req, &id).await?;
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
    let audit = [access::event(&state, &req, caller, "webhook_requeued")
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

/// Any other query parameter is a 400.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ReportQuery {
    /// `true`: send a report now even if this period's was sent (audited).
    force: Option<bool>,
}

/// What a report request did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ReportQueued {
    /// Whether a report was queued (`false`: this period's is queued
    /// already, or none is due yet).
    queued: bool,
    /// Its sequence number.
    sequence_number: Option<i64>,
}

/// `POST /api/v1/media-buys/{id}/delivery/report?force=true` (tenant admin):
/// queues the buy's due delivery report now; `force=true` bypasses the
/// duplicate check (and is audited as `delivery_report_forced`).
#[utoipa::path(
    post,
    path = "/api/v1/media-buys/{id}/delivery/report",
    tag = "media-buys",
    operation_id = "queue_delivery_report",
    params(
        ("id" = String, Path, description = "The media buy's id", pattern = "^[A-Za-z0-9._:-]{1,128}$"),
        ReportQuery,
    ),
    responses(
        (status = 200, description = "Queued, or nothing due", body = ReportQueued),
        (status = 400, description = "An unknown or malformed query parameter", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not a tenant admin", body = ErrorBody),
        (status = 404, description = "No such media buy", body = ErrorBody),
        (status = 409, description = "The buy has no reporting webhook or is not reporting (not active or recently completed)", body = ErrorBody),
        (status = 422, description = "The id is malformed", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn report(
    who: TenantAdmin,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<ReportQuery>,
) -> Result<web::Json<ReportQueued>, ApiError> {
    let caller = &who.caller;
    let buy = visible(caller, &state, &req, &path).await?;
    let force = query.force.unwrap_or(false);
    let now = state.clock.now();
    let audit = [
        access::event(&state, &req, caller, "delivery_report_forced")
            .with_details(serde_json::json!({"media_buy_id": buy.id})),
    ];
    let effects = if force {
        Effects::audit(&audit)
    } else {
        Effects::default()
    };
    let mut cycle =
        crate::services::reports::run_cycle(&state.store, now, Some(&buy.id), force, effects)
            .await?;
    access::committed(&state, &req, std::mem::take(&mut cycle.committed));
    if let Some((_, reason)) = cycle.errors.first() {
        return Err(ApiError::Conflict(format!(
            "no report could be queued: {reason}"
        )));
    }
    if cycle.queued.is_empty() && cycle.duplicates == 0 && force {
        return Err(ApiError::Conflict(
            "the buy has no reporting webhook, or is neither active nor recently completed".into(),
        ));
    }
    let sequence_number = cycle.queued.first().map(|(_, s)| *s);
    Ok(web::Json(ReportQueued {
        queued: sequence_number.is_some(),
        sequence_number,
    }))
}
