//! The live activity stream over Server-Sent Events: `GET
//! /api/activity-stream` (admin bearer token) and `GET /admin/activity/stream`
//! (the dashboard's session cookie). Both answer the same stream (see
//! [`crate::services::activity`] for replay and resume).
//!
//! Who sees what: a tenant admin its own tenant's events; the super admin
//! every tenant and the system events, or one tenant with `tenant_id`. A
//! principal (buyer) or ingest token gets 403; no credentials 401. Filters:
//! `operation` and `category` (repeat, or separate with commas),
//! `principal_id`, `success`. Resume: the `Last-Event-ID` header, or
//! `last_event_id` for clients that cannot set headers (the header wins).
//!
//! A stream lasts as long as the credentials it was opened with: at each
//! heartbeat it asks the same question again, with the same credentials (the
//! session cookie's session, or the bearer token), and ends with `event: end`
//! (`{"reason":"unauthorized"}`) once they no longer hold. See
//! [`crate::services::activity::Recheck`].

use std::rc::Rc;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use overseer_actors::activity::{ActivityFilter, Category, Refused};

use crate::domain::TenantId;
use crate::domain::TokenHash;
use crate::error::ApiError;
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::authz::Reader;
use crate::http::dashboard::OpenSession;
use crate::services::activity::{Recheck, Start, StreamError, StreamSpec};

/// Names where replay started: every matching event with a greater id is
/// sent. A client that resumed from a smaller id than this missed events.
pub const REPLAY_FROM: &str = "Overseer-Replay-From";

#[derive(utoipa::OpenApi)]
#[openapi(paths(api_stream))]
pub struct Doc;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api/activity-stream").route(web::get().to(api_stream)));
}

#[utoipa::path(
    get,
    path = "/api/activity-stream",
    tag = "activity",
    operation_id = "activity_stream",
    params(
        ("tenant_id" = Option<String>, Query, description = "Super admin only: one tenant's events"),
        ("operation" = Option<Vec<String>>, Query, style = Form, explode,
            description = "Only these operations: repeat the parameter, or separate names with commas"),
        ("category" = Option<Vec<String>>, Query, style = Form, explode,
            description = "Only these categories: media-buy, creative, workflow, auth, admin, security, system"),
        ("principal_id" = Option<String>, Query, description = "Only this principal's operations"),
        ("success" = Option<bool>, Query, description = "Only successes (true) or failures (false)"),
        ("last_event_id" = Option<i64>, Query, description = "Resume after this event id (the Last-Event-ID header wins)"),
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this event id"),
    ),
    responses(
        (status = 200, description = "`text/event-stream`: `retry:`, then `event: activity` frames with `id:`, heartbeat comments, and `event: resync` when the client must reconnect", content_type = "text/event-stream", body = String,
            headers(("Overseer-Replay-From" = i64, description = "Every matching event with a greater id follows"))),
        (status = 400, description = "Unknown query parameter", body = crate::error::ErrorBody),
        (status = 401, description = "No or bad token", body = crate::error::ErrorBody),
        (status = 403, description = "Not an admin token, or another tenant", body = crate::error::ErrorBody),
        (status = 422, description = "A parameter is invalid", body = crate::error::ErrorBody),
        (status = 429, description = "Too many open streams", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn api_stream(
    state: web::Data<AppState>,
    req: HttpRequest,
    Reader { caller }: Reader,
) -> Result<HttpResponse, ApiError> {
    open(&state, &req, &caller).await
}

/// Opens a stream for `caller` with the request's parameters.
pub async fn open(
    state: &AppState,
    req: &HttpRequest,
    caller: &Caller,
) -> Result<HttpResponse, ApiError> {
    let params = parse_params(req.query_string())?;
    let tenant = caller.readable_tenant(params.tenant.as_deref())?;
    let header_id = match req.headers().get("last-event-id") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|id| *id >= 0)
                .ok_or_else(|| ApiError::InvalidField {
                    field: "Last-Event-ID".into(),
                    message: "expected an event id this stream sent".into(),
                })?,
        ),
    };
    let settings = &state.sse;
    let start = match header_id.or(params.last_event_id) {
        Some(id) => Start::After(id),
        None => Start::Backfill(settings.backfill),
    };
    let filter = ActivityFilter {
        tenant: tenant.clone(),
        ..params.filter
    };
    let hub = state.actors.sse.clone();
    let slot = hub.admit(tenant.as_deref()).map_err(|refused| {
        metrics::counter!("sse_connections_refused_total", "reason" => match refused {
            Refused::Tenant(_) => "tenant_limit",
            Refused::Total(_) => "total_limit",
        })
        .increment(1);
        ApiError::TooManyStreams(refused.to_string())
    })?;
    let spec = StreamSpec {
        filter,
        start,
        backfill: settings.backfill,
        max_replay: settings.max_replay,
        heartbeat: settings.heartbeat,
        retry_ms: settings.retry_ms,
        recheck: recheck(req, caller)?,
    };
    let prepared = crate::services::activity::prepare(state.store.clone(), hub, slot, spec)
        .await
        .map_err(|e| match e {
            StreamError::Store(e) => ApiError::from(e),
            StreamError::HubRestarting => ApiError::DatabaseUnavailable,
        })?;
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .insert_header(("X-Accel-Buffering", HeaderValue::from_static("no")))
        .insert_header((REPLAY_FROM, prepared.replay_from))
        .streaming(prepared.body))
}

/// The credentials a stream was opened with, as the request presented them.
enum Credentials {
    Token(TokenHash),
    Session(OpenSession),
}

/// The stream's heartbeat question: do the request's credentials still
/// hold? Asked of the same credentials the [`Caller`] extractor accepted: the
/// bearer token when there is one, or else the dashboard's session. `None`
/// for the bootstrap super admin's token, which holds as long as the
/// process runs (it comes from the configuration).
fn recheck(req: &HttpRequest, caller: &Caller) -> Result<Option<Recheck>, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Internal("application state missing".into()))?
        .clone();
    let credentials = match crate::http::auth::bearer_token(req) {
        Some(_) if *caller == Caller::SuperAdmin => return Ok(None),
        Some(token) => Credentials::Token(TokenHash::of(token)),
        None => Credentials::Session(
            crate::http::dashboard::open_session(req, &state).ok_or(ApiError::Unauthorized)?,
        ),
    };
    let credentials = Rc::new(credentials);
    Ok(Some(Box::new(move || {
        let (state, credentials) = (state.clone(), credentials.clone());
        Box::pin(async move {
            let holds = match &*credentials {
                Credentials::Token(hash) => crate::http::auth::still_valid(&state, hash).await,
                Credentials::Session(session) => session.still_open(&state).await,
            };
            holds.map_err(|e| e.to_string())
        })
    })))
}

struct Params {
    tenant: Option<String>,
    last_event_id: Option<i64>,
    filter: ActivityFilter,
}

fn parse_params(qs: &str) -> Result<Params, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(qs)
        .map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))?;
    let invalid = |field: &str, message: &str| ApiError::InvalidField {
        field: field.to_owned(),
        message: message.to_owned(),
    };
    let text = |field: &str, v: String| {
        if v.contains('\0') {
            Err(invalid(field, "must not contain NUL characters"))
        } else {
            Ok(v)
        }
    };
    let list = |v: &str| {
        v.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let mut params = Params {
        tenant: None,
        last_event_id: None,
        filter: ActivityFilter::default(),
    };
    for (key, value) in pairs {
        match key.as_str() {
            "tenant_id" => {
                TenantId::parse("tenant_id", &value)?;
                params.tenant = Some(value);
            }
            "operation" => params
                .filter
                .operations
                .extend(list(&text("operation", value)?)),
            "category" => {
                for name in list(&value) {
                    params.filter.categories.push(Category::parse(&name).ok_or_else(|| {
                        invalid(
                            "category",
                            "expected media-buy, creative, workflow, auth, admin, security or system",
                        )
                    })?);
                }
            }
            "principal_id" => params.filter.principal_id = Some(text("principal_id", value)?),
            "success" => {
                params.filter.success = Some(match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(invalid("success", "expected true or false")),
                });
            }
            "last_event_id" => {
                params.last_event_id = Some(
                    value
                        .parse::<i64>()
                        .ok()
                        .filter(|id| *id >= 0)
                        .ok_or_else(|| invalid("last_event_id", "expected an event id"))?,
                );
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter `{other}`"
                )));
            }
        }
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_repeat_or_list_and_typos_are_refused() {
        let p = parse_params(
            "operation=a&operation=b,c&category=auth,media-buy&success=false&last_event_id=9",
        )
        .unwrap();
        assert_eq!(p.filter.operations, vec!["a", "b", "c"]);
        assert_eq!(
            p.filter.categories,
            vec![Category::Auth, Category::MediaBuy]
        );
        assert_eq!(p.filter.success, Some(false));
        assert_eq!(p.last_event_id, Some(9));
        assert!(matches!(
            parse_params("categroy=auth"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse_params("category=fun"),
            Err(ApiError::InvalidField { field, .. }) if field == "category"
        ));
        assert!(matches!(
            parse_params("last_event_id=-1"),
            Err(ApiError::InvalidField { field, .. }) if field == "last_event_id"
        ));
    }
}
