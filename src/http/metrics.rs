//! `GET /metrics`: Prometheus text format, rendered from the process-wide
//! recorder behind the `metrics` facade; and the HTTP metrics every request
//! adds to it.
//!
//! `http_requests_total{method,route,status}` and
//! `http_request_duration_seconds{method,route}` (until the response head is
//! ready: a stream's body is not timed). `route` is the matched pattern
//! (`/api/v1/media-buys/{id}`), never the path, and `unmatched` for paths no
//! route serves, so the labels stay bounded whatever clients send. The
//! database pool is read when `/metrics` is scraped: `db_pool_connections`,
//! `db_pool_idle_connections`, `db_pool_max_connections`.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::config::{Config, Environment};
use crate::domain::TokenHash;
use crate::error::ApiError;
use crate::http::AppState;
use crate::http::auth::bearer_token;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/metrics").route(web::get().to(render)));
}

/// `http_request_duration_seconds`'s buckets, in seconds.
pub const HTTP_DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Who may read `/metrics`. The counters show how an attacker's probing is
/// being seen (violations by type, 401/403 per route, firing alerts), so
/// production never leaves them open by accident.
#[derive(Debug, Clone)]
pub enum MetricsAccess {
    /// Anyone: development, `METRICS_PUBLIC=true`, or the separate
    /// listener of `METRICS_BIND_ADDR` without a token.
    Open,
    /// The bearer of `METRICS_TOKEN` (its digest; compared in constant time).
    Token(TokenHash),
    /// No one (401): production with neither `METRICS_TOKEN`,
    /// `METRICS_BIND_ADDR` nor `METRICS_PUBLIC=true`.
    Closed,
}

impl MetricsAccess {
    /// The access the configuration gives, and a start-up warning when
    /// production leaves `/metrics` open or closes it for want of a setting.
    pub fn from_config(config: &Config) -> (Self, Option<&'static str>) {
        let http = &config.http;
        if let Some(token) = &http.metrics_token {
            return (Self::Token(TokenHash::of_secret(token)), None);
        }
        let production = config.environment == Environment::Production;
        match (
            production,
            http.metrics_bind_addr.is_some(),
            http.metrics_public,
        ) {
            (false, _, _) | (true, true, _) => (Self::Open, None),
            (true, false, true) => (
                Self::Open,
                Some(
                    "METRICS_PUBLIC=true: /metrics is open to anyone on the public listener; \
                     set METRICS_TOKEN or METRICS_BIND_ADDR instead",
                ),
            ),
            (true, false, false) => (
                Self::Closed,
                Some(
                    "neither METRICS_TOKEN nor METRICS_BIND_ADDR is set: /metrics answers 401 \
                     to everyone (set one of them, or METRICS_PUBLIC=true to leave it open)",
                ),
            ),
        }
    }

    fn allows(&self, req: &HttpRequest) -> bool {
        match self {
            Self::Open => true,
            Self::Closed => false,
            Self::Token(expected) => {
                bearer_token(req).is_some_and(|given| TokenHash::of(given).matches(expected))
            }
        }
    }
}

async fn render(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    if !state.metrics_access.allows(&req) {
        return Err(ApiError::Unauthorized);
    }
    let pool = state.store.pool_stats();
    metrics::gauge!("db_pool_connections").set(f64::from(pool.size));
    metrics::gauge!("db_pool_idle_connections").set(pool.idle as f64);
    metrics::gauge!("db_pool_max_connections").set(f64::from(pool.max));
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render()))
}

/// The method as a bounded label.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts and times every request (the outermost middleware but one).
pub async fn record_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = method_label(req.method());
    let res = next.call(req).await?;
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let status = res.status().as_u16().to_string();
    let elapsed = started.elapsed().as_secs_f64();
    metrics::counter!("http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(elapsed);
    Ok(res)
}
