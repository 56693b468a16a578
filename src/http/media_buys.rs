//! `/api/v1/media-buys`: principals book media buys; they and their tenant's
//! admin read them, change them, and read (or, admins, post) delivery.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::NaiveDate;
use overseer_actors::notify::{HIGH_VALUE_THRESHOLD, Notification, NotificationEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::domain::media_buy::{
    Approval, CreateMediaBuy, DeliveryRow, DeliveryTotals, MAX_NAME_CHARS, MediaBuy,
    MediaBuyStatus, MediaBuyView, UpdateMediaBuy, approval_of_new,
};
use crate::domain::text::{bounded, client_id, generate_id};
use crate::domain::time;
use crate::domain::{Amount, InvalidField};
use crate::error::{ApiError, ErrorBody};
use crate::http::access::{self, Page, page, page_cursor, page_limit};
use crate::http::auth::Caller;
use crate::http::authz::{AdminOrPrincipal, DeliveryWriter, Principal};
use crate::http::{AppState, Json, from_value};
use crate::store::{DeliveryWrite, Effects, NewWorkflow, Owner, StoreError};

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(paths(create, list, get, update, delivery, post_delivery))]
pub struct Doc;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/media-buys")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(
        web::resource("/media-buys/{id}")
            .route(web::get().to(get))
            .route(web::patch().to(update)),
    )
    .service(
        web::resource("/media-buys/{id}/delivery")
            .route(web::get().to(delivery))
            .route(web::post().to(post_delivery)),
    );
}

const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// `POST /api/v1/media-buys` (principal). 201 with the buy; with an
/// `Idempotency-Key` header, a retry with the same body answers the first
/// response again (`Idempotent-Replayed: true`) and another body with that
/// key is a 409.
#[utoipa::path(
    post,
    path = "/api/v1/media-buys",
    tag = "media-buys",
    operation_id = "create_media_buy",
    params(
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255,
            description = "1 to 255 visible ASCII characters. A retry with the same key and \
body answers the first response again; another body with that key is a 409."),
    ),
    request_body = CreateMediaBuy,
    responses(
        (status = 201, description = "The media buy: `pending_approval` (with `workflow_id`) \
when its budget is above the tenant's approval threshold, `pending_activation` otherwise",
            body = MediaBuyView,
            headers(
                ("Location" = String, description = "The media buy's URL"),
                ("Idempotent-Replayed" = String, description = "`true` on a replayed response"),
            )),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not a principal", body = ErrorBody),
        (status = 404, description = "The principal's tenant is gone", body = ErrorBody),
        (status = 409, description = "The Idempotency-Key was used with another body", body = ErrorBody),
        (status = 413, description = "The body is over the limit", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 422, description = "A field or the Idempotency-Key is invalid, or the reporting webhook's host may not be reached (the outbound guard)", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn create(
    Principal {
        tenant,
        id: principal_id,
        caller,
    }: Principal,
    state: web::Data<AppState>,
    req: HttpRequest,
    Json(body): Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let key = match req.headers().get(IDEMPOTENCY_KEY) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 255)
                .ok_or_else(|| {
                    InvalidField::new(
                        "Idempotency-Key",
                        "must be 1 to 255 visible ASCII characters",
                    )
                })?
                .to_owned(),
        ),
    };
    // serde_json's maps are sorted, so this is a canonical form of the body.
    let request_hash = hex::encode(Sha256::digest(body.to_string().as_bytes()));
    if let Some(key) = &key
        && let Some(replay) = replay(&state, &tenant, &principal_id, key, &request_hash).await?
    {
        return Ok(replay);
    }
    let input: CreateMediaBuy = from_value(body)?;
    let buy = input.parse(state.environment.input_policy())?;
    if let Some(webhook) = &buy.reporting_webhook {
        state
            .ssrf
            .admit("reporting_webhook.url", webhook.url.expose())
            .await?;
    }
    if !buy.creative_ids.is_empty() {
        let owned = state
            .store
            .owned_creatives(&tenant, &principal_id, &buy.creative_ids)
            .await?;
        if let Some(missing) = buy.creative_ids.iter().find(|id| !owned.contains(id)) {
            return Err(InvalidField::new(
                "creative_ids",
                format!("no creative {missing} of this principal"),
            )
            .into());
        }
    }
    let settings = state
        .store
        .tenant_settings(&tenant)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such tenant".into()))?;
    let now = state.clock.now();
    // A new buy has no pending task: it is granted as set, or a human must
    // approve it.
    let required = match approval_of_new(buy.budget, settings.approval_threshold) {
        Approval::Required { threshold } => Some(threshold),
        Approval::Granted(_) | Approval::StillPending => None,
    };
    let (status, approved_budget) = match required {
        Some(_) => (MediaBuyStatus::PendingApproval, None),
        None => (MediaBuyStatus::PendingActivation, Some(buy.budget)),
    };
    let workflow_id = required.map(|_| generate_id("wf"));
    let budget = buy.budget.as_f64();

    let mut audit = vec![
        access::event(&state, &req, &caller, "create_media_buy").with_details(serde_json::json!({
            "media_buy_id": buy.id,
            "budget": budget,
            "currency": buy.currency.as_str(),
            "status": status.as_str(),
            "packages": buy.packages.len(),
        })),
    ];
    let mut notes = vec![Notification::new(
        Some(tenant.to_string()),
        NotificationEvent::MediaBuyCreated {
            media_buy_id: buy.id.clone(),
            principal_id: principal_id.clone(),
            order_name: buy.order_name.clone(),
            budget,
            currency: buy.currency.as_str().to_owned(),
            status: status.as_str().to_owned(),
        },
        now,
    )];
    let reason = required.map(|t| {
        format!(
            "budget {} {} is above the approval threshold {t}",
            buy.budget,
            buy.currency.as_str(),
        )
    });
    if let (Some(workflow_id), Some(threshold)) = (&workflow_id, required) {
        audit.push(
            access::event(&state, &req, &caller, "workflow_created").with_details(
                serde_json::json!({
                    "workflow_id": workflow_id,
                    "media_buy_id": buy.id,
                    "budget": budget,
                    "currency": buy.currency.as_str(),
                    "threshold": threshold.as_f64(),
                }),
            ),
        );
        notes.push(Notification::new(
            Some(tenant.to_string()),
            NotificationEvent::ApprovalRequired {
                media_buy_id: buy.id.clone(),
                workflow_id: workflow_id.clone(),
                principal_id: principal_id.clone(),
                order_name: buy.order_name.clone(),
                budget,
                currency: buy.currency.as_str().to_owned(),
                threshold: threshold.as_f64(),
            },
            now,
        ));
    }
    if budget > HIGH_VALUE_THRESHOLD {
        notes.push(Notification::new(
            Some(tenant.to_string()),
            NotificationEvent::HighValueTransaction {
                media_buy_id: buy.id.clone(),
                principal_id: principal_id.clone(),
                budget,
                currency: buy.currency.as_str().to_owned(),
            },
            now,
        ));
    }

    let stored = MediaBuy {
        id: buy.id.clone(),
        tenant_id: tenant.clone(),
        principal_id: principal_id.clone(),
        buyer_ref: buy.buyer_ref.clone(),
        order_name: buy.order_name.clone(),
        advertiser_name: buy.advertiser_name.clone(),
        currency: buy.currency.clone(),
        budget: buy.budget,
        flight_start: buy.flight_start,
        flight_end: buy.flight_end,
        status,
        paused_from: None,
        approved_budget,
        reporting_webhook: buy.reporting_webhook.as_ref().map(|w| w.to_stored()),
        created_at: now,
        updated_at: now,
    };
    let mut view = stored.view(buy.packages.clone(), buy.creative_ids.clone());
    view.workflow_id = workflow_id.clone();
    let response = serde_json::to_string(&view).map_err(|e| ApiError::Internal(Box::new(e)))?;
    let idempotency = key
        .as_deref()
        .map(|k| (k, request_hash.as_str(), 201, response.as_str()));
    let workflow = workflow_id
        .as_deref()
        .zip(reason.as_deref())
        .map(|(id, reason)| NewWorkflow {
            id,
            reason,
            budget: buy.budget,
        });
    let inserted = state
        .store
        .insert_media_buy(
            &tenant,
            &principal_id,
            &buy,
            status,
            approved_budget,
            workflow,
            idempotency,
            now,
            Effects::with(&audit, &notes),
        )
        .await;
    let committed = match inserted {
        Ok(committed) => committed,
        // A concurrent twin with the same key won the race: answer as it did.
        Err(StoreError::Conflict(_)) if key.is_some() => {
            let key = key.as_deref().unwrap_or_default();
            return match replay(&state, &tenant, &principal_id, key, &request_hash).await? {
                Some(replayed) => Ok(replayed),
                None => Err(ApiError::Conflict(
                    "the request conflicts with existing data".into(),
                )),
            };
        }
        Err(e) => return Err(e.into()),
    };
    access::committed(&state, &req, committed);
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/media-buys/{}", buy.id)))
        .content_type("application/json")
        .body(response))
}

/// The stored answer to an earlier request with this key: the same response
/// for the same body, 409 for another.
async fn replay(
    state: &AppState,
    tenant: &crate::domain::TenantId,
    principal_id: &str,
    key: &str,
    request_hash: &str,
) -> Result<Option<HttpResponse>, ApiError> {
    let Some(record) = state
        .store
        .idempotency_record(tenant, principal_id, key)
        .await?
    else {
        return Ok(None);
    };
    if record.request_hash != request_hash {
        return Err(ApiError::Conflict(
            "this Idempotency-Key was used with a different request body".into(),
        ));
    }
    let status = StatusCode::from_u16(record.status as u16).unwrap_or(StatusCode::CREATED);
    Ok(Some(
        HttpResponse::build(status)
            .insert_header(("Idempotent-Replayed", "true"))
            .content_type("application/json")
            .body(record.response),
    ))
}

/// Any other query parameter is a 400.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only buys in this status.
    #[param(value_type = Option<MediaBuyStatus>)]
    status: Option<String>,
    /// Only buys with this `buyer_ref`.
    #[param(min_length = 1, max_length = 200)]
    buyer_ref: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    cursor: Option<String>,
}

/// `GET /api/v1/media-buys?status=&buyer_ref=` — a principal sees its own,
/// a tenant admin every buy of the tenant. Audited `get_media_buys`.
#[utoipa::path(
    get,
    path = "/api/v1/media-buys",
    tag = "media-buys",
    operation_id = "list_media_buys",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of media buys, by id", body = Page<MediaBuyView>),
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
) -> Result<web::Json<Page<MediaBuyView>>, ApiError> {
    let (tenant, principal, caller) = (&who.tenant, who.principal.as_deref(), &who.caller);
    let limit = page_limit(query.limit)?;
    let status = query
        .status
        .as_deref()
        .map(|s| MediaBuyStatus::parse("status", s))
        .transpose()?;
    // Stored buyer references are `bounded`: a filter that is not one
    // matches nothing (and one holding NUL must not reach PostgreSQL).
    let buyer_ref = query
        .buyer_ref
        .as_deref()
        .map(|r| bounded("buyer_ref", r, MAX_NAME_CHARS))
        .transpose()?;
    let buys = state
        .store
        .media_buys(
            tenant,
            principal,
            status.map(MediaBuyStatus::as_str),
            buyer_ref.as_deref(),
            page_cursor(query.cursor.as_deref())?,
            limit + 1,
        )
        .await?;
    let buys = page(buys, limit, |b| b.id.clone());
    let ids: Vec<String> = buys.items.iter().map(|b| b.id.clone()).collect();
    let mut parts = state.store.media_buys_parts(&ids).await?;
    let items: Vec<MediaBuyView> = buys
        .items
        .iter()
        .map(|buy| {
            let (packages, creatives) = parts.remove(&buy.id).unwrap_or_default();
            buy.view(packages, creatives)
        })
        .collect();
    access::record_read(
        &state,
        &req,
        access::event(&state, &req, caller, "get_media_buys").with_details(serde_json::json!({
            "count": items.len(),
            "status": status.map(MediaBuyStatus::as_str),
        })),
    );
    Ok(web::Json(Page {
        items,
        next_cursor: buys.next_cursor,
    }))
}

/// The buy at `id` if it is the caller's tenant's (and, for a principal, its
/// own); 404 and a violation otherwise. Who may call at all is the
/// handler's extractor.
pub(crate) async fn visible(
    caller: &Caller,
    state: &AppState,
    req: &HttpRequest,
    id: &str,
) -> Result<MediaBuy, ApiError> {
    access::path_id("media buy", id)?;
    let found = state.store.media_buy(id).await?;
    let owner = found.as_ref().map(|b| Owner {
        tenant_id: b.tenant_id.to_string(),
        principal_id: Some(b.principal_id.clone()),
    });
    access::check_owner(state, req, caller, "media buy", id, owner)?;
    found.ok_or_else(|| ApiError::NotFound("no such media buy".into()))
}

async fn view_of(state: &AppState, buy: &MediaBuy) -> Result<MediaBuyView, ApiError> {
    let (packages, creatives) = state.store.media_buy_parts(&buy.id).await?;
    Ok(buy.view(packages, creatives))
}

/// `GET /api/v1/media-buys/{id}`. Audited `get_media_buys`.
#[utoipa::path(
    get,
    path = "/api/v1/media-buys/{id}",
    tag = "media-buys",
    operation_id = "get_media_buy",
    params(("id" = String, Path, description = "The media buy's id")),
    responses(
        (status = 200, description = "The media buy", body = MediaBuyView),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not a tenant admin or a principal", body = ErrorBody),
        (status = 404, description = "No such media buy (or not the caller's)", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn get(
    AdminOrPrincipal { caller, .. }: AdminOrPrincipal,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<web::Json<MediaBuyView>, ApiError> {
    let buy = visible(&caller, &state, &req, &path).await?;
    access::record_read(
        &state,
        &req,
        access::event(&state, &req, &caller, "get_media_buys").with_details(serde_json::json!({
            "media_buy_id": buy.id,
            "budget": buy.budget.as_f64(),
            "currency": buy.currency.as_str(),
        })),
    );
    Ok(web::Json(view_of(&state, &buy).await?))
}

/// `PATCH /api/v1/media-buys/{id}` `{paused?, budget?, flight_start?,
/// flight_end?, order_name?}` (the owning principal or a tenant admin).
/// Pausing records `paused`; resuming restores the lifecycle status. A
/// change the status does not allow (changing a completed buy, pausing one
/// that waits for approval) is a 409. A budget raised above the tenant's
/// approval threshold (beyond what was approved), or a new flight for a buy
/// above it, needs a human again in every status: the buy waits in
/// `pending_approval` (a paused one stays paused and resumes there), any
/// pending task is superseded and a new one shows the new amount
/// (`workflow_id` in the answer).
#[utoipa::path(
    patch,
    path = "/api/v1/media-buys/{id}",
    tag = "media-buys",
    operation_id = "update_media_buy",
    params(("id" = String, Path, description = "The media buy's id")),
    request_body = UpdateMediaBuy,
    responses(
        (status = 200, description = "The media buy after the change (with `workflow_id` when it now waits for a new approval)", body = MediaBuyView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not a tenant admin or a principal", body = ErrorBody),
        (status = 404, description = "No such media buy (or not the caller's)", body = ErrorBody),
        (status = 409, description = "The buy's status does not allow the change, or it changed meanwhile", body = ErrorBody),
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
    AdminOrPrincipal { caller, .. }: AdminOrPrincipal,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    Json(body): Json<UpdateMediaBuy>,
) -> Result<web::Json<MediaBuyView>, ApiError> {
    let change = body.parse()?;
    if change.keys().is_empty() {
        return Err(InvalidField::new("paused", "nothing to change").into());
    }
    let buy = visible(&caller, &state, &req, &path).await?;
    let seen = buy.updated_at;
    let before = buy.status;
    let now = state.clock.now();
    let old_budget = buy.budget;
    let threshold = state
        .store
        .tenant_settings(&buy.tenant_id)
        .await?
        .and_then(|s| s.approval_threshold);
    // The domain decides what the new terms need (media_buy::apply); this
    // handler turns it into rows, audit and notices.
    let changed = change
        .apply(buy, threshold, now)
        .map_err(|refused| ApiError::Conflict(refused.0))?;
    let superseded = if changed.supersedes_pending {
        state.store.pending_workflows(&changed.buy.id).await?
    } else {
        Vec::new()
    };
    let updated = changed.buy;
    let required = match changed.approval {
        Approval::Required { threshold } => Some(threshold),
        Approval::Granted(_) | Approval::StillPending => None,
    };
    let workflow_id = required.map(|_| generate_id("wf"));
    let raised = updated.budget > old_budget;
    let budget = updated.budget.as_f64();
    let mut notes = vec![Notification::new(
        Some(updated.tenant_id.to_string()),
        NotificationEvent::MediaBuyUpdated {
            media_buy_id: updated.id.clone(),
            principal_id: updated.principal_id.clone(),
            changed: change.keys().into_iter().map(str::to_owned).collect(),
            actor: caller.principal_id().to_owned(),
        },
        now,
    )];
    if raised && budget > HIGH_VALUE_THRESHOLD && old_budget.as_f64() <= HIGH_VALUE_THRESHOLD {
        notes.push(Notification::new(
            Some(updated.tenant_id.to_string()),
            NotificationEvent::HighValueTransaction {
                media_buy_id: updated.id.clone(),
                principal_id: updated.principal_id.clone(),
                budget,
                currency: updated.currency.as_str().to_owned(),
            },
            now,
        ));
    }
    let mut audit = vec![
        access::event(&state, &req, &caller, "update_media_buy").with_details(serde_json::json!({
            "media_buy_id": updated.id,
            "budget": updated.budget.as_f64(),
            "approved_budget": updated.approved_budget.map(Amount::as_f64),
            "currency": updated.currency.as_str(),
            "changed": change.keys(),
            "from": before.as_str(),
            "to": updated.status.as_str(),
        })),
    ];
    for superseded_id in &superseded {
        audit.push(
            access::event(&state, &req, &caller, "workflow_superseded").with_details(
                serde_json::json!({
                    "workflow_id": superseded_id,
                    "media_buy_id": updated.id,
                    "replaced_by": workflow_id,
                    "budget": budget,
                    "currency": updated.currency.as_str(),
                }),
            ),
        );
    }
    let reason = required.map(|t| {
        format!(
            "budget {} {} (changed while {}) is above the approval threshold {t}",
            updated.budget,
            updated.currency.as_str(),
            before.as_str(),
        )
    });
    if let (Some(workflow_id), Some(threshold)) = (&workflow_id, required) {
        audit.push(
            access::event(&state, &req, &caller, "workflow_created").with_details(
                serde_json::json!({
                    "workflow_id": workflow_id,
                    "media_buy_id": updated.id,
                    "budget": budget,
                    "currency": updated.currency.as_str(),
                    "threshold": threshold.as_f64(),
                }),
            ),
        );
        notes.push(Notification::new(
            Some(updated.tenant_id.to_string()),
            NotificationEvent::ApprovalRequired {
                media_buy_id: updated.id.clone(),
                workflow_id: workflow_id.clone(),
                principal_id: updated.principal_id.clone(),
                order_name: updated.order_name.clone(),
                budget,
                currency: updated.currency.as_str().to_owned(),
                threshold: threshold.as_f64(),
            },
            now,
        ));
    }
    let workflow = workflow_id
        .as_deref()
        .zip(reason.as_deref())
        .map(|(id, reason)| NewWorkflow {
            id,
            reason,
            budget: updated.budget,
        });
    let committed = state
        .store
        .save_media_buy(
            &updated,
            seen,
            &superseded,
            workflow,
            Effects::with(&audit, &notes),
        )
        .await?
        .ok_or_else(|| {
            ApiError::Conflict("the media buy changed meanwhile; read it and try again".into())
        })?;
    access::committed(&state, &req, committed);
    let mut view = view_of(&state, &updated).await?;
    view.workflow_id = workflow_id;
    Ok(web::Json(view))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct DeliveryReport {
    media_buy_id: String,
    currency: String,
    /// Every row counted (checked sums: a total that cannot be counted is a
    /// 422, never a wrapped or partial figure).
    totals: DeliveryTotals,
    days: Vec<DeliveryRow>,
}

/// `GET /api/v1/media-buys/{id}/delivery`: per day and package, with totals.
/// Audited `get_media_buy_delivery`.
#[utoipa::path(
    get,
    path = "/api/v1/media-buys/{id}/delivery",
    tag = "media-buys",
    operation_id = "get_media_buy_delivery",
    params(("id" = String, Path, description = "The media buy's id")),
    responses(
        (status = 200, description = "Delivery per day and package, with totals", body = DeliveryReport),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not a tenant admin or a principal", body = ErrorBody),
        (status = 404, description = "No such media buy (or not the caller's)", body = ErrorBody),
        (status = 422, description = "The totals are too large to count (rows stored before the spend cap)", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn delivery(
    AdminOrPrincipal { caller, .. }: AdminOrPrincipal,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<web::Json<DeliveryReport>, ApiError> {
    let buy = visible(&caller, &state, &req, &path).await?;
    let days = state.store.delivery(&buy.id).await?;
    // Rows stored before the spend cap could sum past 64 bits: say so
    // rather than show a wrapped, saturated or partial total.
    let totals = DeliveryTotals::of(&days)
        .map_err(|overflow| InvalidField::new("totals", overflow.to_string()))?;
    access::record_read(
        &state,
        &req,
        access::event(&state, &req, &caller, "get_media_buy_delivery").with_details(
            serde_json::json!({
                "media_buy_id": buy.id,
                "budget": buy.budget.as_f64(),
                "currency": buy.currency.as_str(),
            }),
        ),
    );
    Ok(web::Json(DeliveryReport {
        media_buy_id: buy.id,
        currency: buy.currency.as_str().to_owned(),
        totals,
        days,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostDelivery {
    #[schema(min_items = 1, max_items = 1000)]
    rows: Vec<DeliveryInput>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryInput {
    /// A package of this media buy.
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    package_id: String,
    /// `YYYY-MM-DD`.
    date: NaiveDate,
    impressions: u32,
    /// At most `impressions`.
    clicks: u32,
    /// 0 to 1e12, at most 6 decimals (a JSON number or a decimal string).
    #[schema(value_type = f64, minimum = 0, maximum = 1_000_000_000_000_f64)]
    spend: Value,
}

/// What a delivery post stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct DeliveryPosted {
    media_buy_id: String,
    /// Rows upserted.
    rows: usize,
}

/// Most rows in one delivery post.
const MAX_DELIVERY_ROWS: usize = 1_000;

/// `POST /api/v1/media-buys/{id}/delivery` `{rows: [{package_id, date,
/// impressions, clicks, spend}]}` (tenant admin or adapter token): upserts per day and
/// package. Audited `update_media_buy_delivery`. Refused (422, nothing
/// stored) when the same package and day come twice, or when the buy's
/// total spend after the post would exceed `DELIVERY_SPEND_MAX_BUDGET_MULTIPLE`
/// times its budget (a post that does not raise the total is accepted).
#[utoipa::path(
    post,
    path = "/api/v1/media-buys/{id}/delivery",
    tag = "media-buys",
    operation_id = "update_media_buy_delivery",
    params(("id" = String, Path, description = "The media buy's id")),
    request_body = PostDelivery,
    responses(
        (status = 200, description = "The rows were stored", body = DeliveryPosted),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not a tenant admin or adapter token", body = ErrorBody),
        (status = 404, description = "No such media buy (or not the caller's)", body = ErrorBody),
        (status = 413, description = "The body is over the limit", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 422, description = "A row is invalid, a package and day come twice, or the buy's total spend would exceed its budget times `DELIVERY_SPEND_MAX_BUDGET_MULTIPLE`", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn post_delivery(
    DeliveryWriter { caller, .. }: DeliveryWriter,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    Json(body): Json<PostDelivery>,
) -> Result<HttpResponse, ApiError> {
    if body.rows.is_empty() || body.rows.len() > MAX_DELIVERY_ROWS {
        return Err(InvalidField::new("rows", "1 to 1000 rows").into());
    }
    let buy = visible(&caller, &state, &req, &path).await?;
    let (packages, _) = state.store.media_buy_parts(&buy.id).await?;
    let mut rows = Vec::with_capacity(body.rows.len());
    for r in body.rows {
        let package_id = client_id("rows.package_id", &r.package_id)?;
        if !packages.iter().any(|p| p.package_id == package_id) {
            return Err(
                InvalidField::new("rows.package_id", "no such package in this media buy").into(),
            );
        }
        if r.clicks > r.impressions {
            return Err(InvalidField::new("rows.clicks", "must not exceed impressions").into());
        }
        let day = time::date("rows.date", r.date)?
            .format("%Y-%m-%d")
            .to_string();
        // The upsert would keep one of the two silently: refuse instead.
        if rows
            .iter()
            .any(|seen: &DeliveryRow| seen.package_id == package_id && seen.day == day)
        {
            return Err(InvalidField::new(
                "rows.date",
                format!("package {package_id} on {day} comes twice"),
            )
            .into());
        }
        rows.push(DeliveryRow {
            package_id,
            day,
            impressions: i64::from(r.impressions),
            clicks: i64::from(r.clicks),
            spend: Amount::parse("rows.spend", &r.spend)?,
        });
    }
    let now = state.clock.now();
    let audit = [
        access::event(&state, &req, &caller, "update_media_buy_delivery").with_details(
            serde_json::json!({
                "media_buy_id": buy.id,
                "budget": buy.budget.as_f64(),
                "currency": buy.currency.as_str(),
                "rows": rows.len(),
            }),
        ),
    ];
    let written = state
        .store
        .upsert_delivery(
            &buy.id,
            &rows,
            state.delivery_spend_max_multiple,
            now,
            Effects::audit(&audit),
        )
        .await?;
    let committed = match written {
        DeliveryWrite::Stored(committed) => committed,
        DeliveryWrite::SpendAboveCap { total, cap } => {
            let total =
                total.map_or_else(|| "more than can be counted".to_owned(), |t| t.to_string());
            return Err(InvalidField::new(
                "rows.spend",
                format!(
                    "the buy's total spend would be {total} {}, above {cap} \
                     ({} times its budget of {}); nothing was stored",
                    buy.currency.as_str(),
                    state.delivery_spend_max_multiple,
                    buy.budget,
                ),
            )
            .into());
        }
    };
    access::committed(&state, &req, committed);
    Ok(HttpResponse::Ok().json(DeliveryPosted {
        media_buy_id: buy.id,
        rows: rows.len(),
    }))
}
