//! `GET /health`, `/health/live`, `/health/ready`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::health::Verdict;
use crate::http::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/health").route(web::get().to(health)))
        .service(web::resource("/health/ready").route(web::get().to(health)))
        .service(web::resource("/health/live").route(web::get().to(live)));
}

/// The full report: 200 when healthy or degraded (serving, a component down),
/// 503 when the database is unreachable. `/health/ready` gives the
/// same verdict, for orchestrators that probe readiness separately.
#[tracing::instrument(skip_all)]
async fn health(state: web::Data<AppState>) -> HttpResponse {
    let report = state.health.check().await;
    let status = match report.status {
        Verdict::Healthy | Verdict::Degraded => StatusCode::OK,
        Verdict::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
    };
    HttpResponse::build(status)
        .insert_header(("Cache-Control", "no-store"))
        .json(report)
}

/// 200 while the process runs and serves HTTP; checks nothing else.
async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "alive"}))
}
