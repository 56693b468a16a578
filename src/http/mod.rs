//! The actix-web front: routes by resource, shared state, JSON errors for
//! everything (including actix's own 404/405/413), request ids.

pub mod access;
pub mod activity;
pub mod admin;
pub mod agent_runs;
pub mod alerts;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod connection;
pub mod creatives;
pub mod dashboard;
mod extract;
pub mod health;
pub mod media_buys;
pub mod metrics;
pub mod openapi;
pub mod principals;
pub mod push_configs;
pub mod request_audit;
pub mod settings;
pub mod tenant_tokens;
pub mod tenants;
pub mod webhooks;
pub mod workflows;

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers, Next};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, ResponseError, web};
use overseer_actors::Clock;
use tracing_actix_web::RequestId;

use crate::domain::TokenHash;
use crate::error::{ApiError, error_body};
use crate::services::Actors;
use crate::services::health::Health;
use crate::store::Store;
use metrics_exporter_prometheus::PrometheusHandle;

pub use extract::{BodyLimit, Json, OneOrMany, from_value};

/// What every handler can reach.
pub struct AppState {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub health: Health,
    pub admin_token_hash: TokenHash,
    pub actors: Actors,
    pub metrics: PrometheusHandle,
    /// `AUDIT_REQUESTS`: the middleware records every `/api/v1` request.
    pub audit_requests: bool,
    /// `AUDIT_TOKEN_VALIDATIONS`: every successful token validation is
    /// recorded.
    pub audit_token_validations: bool,
    /// Development allows plain-http webhook URLs; production does not.
    pub environment: crate::config::Environment,
    /// `TRUSTED_PROXIES`: whose `X-Forwarded-*` headers are read.
    pub trusted_proxies: crate::domain::TrustedProxies,
    /// Which hosts every outbound URL (Slack, push configs, reporting
    /// webhooks) may reach.
    pub ssrf: crate::ssrf::SsrfPolicy,
    /// The activity stream's settings.
    pub sse: crate::config::SseSettings,
    /// The dashboard's session key and lifetime.
    pub sessions: dashboard::Sessions,
    /// Who may read `/metrics` (`METRICS_TOKEN`, `METRICS_PUBLIC`).
    pub metrics_access: crate::http::metrics::MetricsAccess,
    /// `HEALTH_DETAILS_TOKEN`'s digest: besides the super admin's token,
    /// the one that reads `/health`'s details.
    pub health_details_token: Option<crate::domain::TokenHash>,
    /// `DELIVERY_SPEND_MAX_BUDGET_MULTIPLE`: delivery posts beyond it are refused.
    pub delivery_spend_max_multiple: crate::domain::SpendMultiple,
}

/// Registers every route. The fault-injection endpoint exists only when
/// enabled; the ingest route has its own, larger, body limit. The OpenAPI
/// document is outside `/api/v1`: no authentication, no request audit.
/// `/metrics` is here unless it has a listener of its own
/// (`METRICS_BIND_ADDR`).
pub fn routes(
    cfg: &mut web::ServiceConfig,
    fault_injection: bool,
    ingest_body_limit: usize,
    serve_metrics: bool,
) {
    if serve_metrics {
        cfg.configure(metrics::routes);
    }
    cfg.configure(health::routes)
        .configure(openapi::routes)
        .configure(admin::routes)
        .configure(activity::routes)
        .configure(dashboard::routes)
        .service(
            web::scope("/api/v1")
                .wrap(actix_web::middleware::from_fn(
                    request_audit::record_request,
                ))
                .configure(tenants::routes)
                .configure(tenant_tokens::routes)
                .configure(settings::routes)
                .configure(principals::routes)
                .configure(media_buys::routes)
                .configure(creatives::routes)
                .configure(workflows::routes)
                .configure(push_configs::routes)
                .configure(webhooks::routes)
                .configure(agent_runs::routes)
                .configure(|cfg| audit::routes(cfg, ingest_body_limit))
                .configure(alerts::routes),
        );
    if fault_injection {
        cfg.configure(admin::fault_routes);
    }
}

/// Extractor configuration: body limit and JSON errors for bad query strings and
/// paths.
pub fn extractor_config(cfg: &mut web::ServiceConfig, max_body_bytes: usize) {
    cfg.app_data(web::PayloadConfig::new(max_body_bytes))
        .app_data(BodyLimit(max_body_bytes))
        .app_data(web::QueryConfig::default().error_handler(|err, _| {
            ApiError::BadRequest(format!("invalid query string: {err}")).into()
        }))
        .app_data(
            web::PathConfig::default().error_handler(|err, _| {
                ApiError::BadRequest(format!("invalid path: {err}")).into()
            }),
        );
}

/// The default service: any path no route matches.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    no_route(&req).error_response()
}

fn no_route(req: &HttpRequest) -> ApiError {
    ApiError::NotFound(format!("no route for {} {}", req.method(), req.path()))
}

/// Makes every error response JSON. Errors raised through [`ApiError`] already
/// are; this catches the ones actix-web answers by itself (a resource's 405, a
/// payload error in a framework extractor) and gives them the same shape.
pub fn json_errors<B: 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().default_handler(|res: ServiceResponse<B>| {
        let is_json = res
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|ct| ct.as_bytes().starts_with(b"application/json"));
        if is_json {
            return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
        }
        let (req, res) = res.into_parts();
        let status = res.status();
        let replacement = match status {
            StatusCode::METHOD_NOT_ALLOWED => {
                ApiError::MethodNotAllowed(req.method().to_string()).error_response()
            }
            StatusCode::NOT_FOUND => no_route(&req).error_response(),
            _ => {
                let code = status
                    .canonical_reason()
                    .unwrap_or("error")
                    .to_ascii_lowercase()
                    .replace(' ', "_");
                let message = status.canonical_reason().unwrap_or("error").to_owned();
                let mut fallback = HttpResponse::build(status);
                fallback
                    .content_type("application/json")
                    .body(error_body(&code, message, None))
            }
        };
        // Keep the headers actix set (Allow on a 405, for one).
        let mut replacement = replacement;
        for (name, value) in res.headers() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                replacement
                    .headers_mut()
                    .insert(name.clone(), value.clone());
            }
        }
        let res = ServiceResponse::new(req, replacement)
            .map_into_boxed_body()
            .map_into_right_body();
        Ok(ErrorHandlerResponse::Response(res))
    })
}

/// Returns the request id of the request's span as `X-Request-Id`.
pub async fn request_id_header(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let request_id = req.extensions().get::<RequestId>().copied();
    let mut res = next.call(req).await?;
    if let Some(id) = request_id
        && let Ok(value) = HeaderValue::from_str(&id.to_string())
    {
        res.headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    Ok(res)
}
