//! `GET /metrics`: Prometheus text format, rendered from the process-wide
//! recorder behind the `metrics` facade.

use actix_web::{HttpResponse, web};

use crate::http::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/metrics").route(web::get().to(render)));
}

async fn render(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
