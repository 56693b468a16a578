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

use crate::auth::TokenHash;
use crate::error::ApiError;
use crate::http::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/metrics").route(web::get().to(render)));
}

/// `http_request_duration_seconds`'s buckets, in seconds.
pub const HTTP_DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

async fn render(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    if let Some(expected) = &state.metrics_token {
        let given = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(|token| TokenHash::of(token.trim()));
        if !given.is_some_and(|g| g.matches(expected)) {
            return Err(ApiError::Unauthorized);
        }
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
