//! Operator endpoints under `/admin` (super admin only).

use actix_web::{HttpResponse, web};
use overseer_actors::supervisor::FaultKind;
use serde::{Deserialize, Serialize};

use crate::auth::SuperAdmin;
use crate::domain::InvalidField;
use crate::error::ApiError;
use crate::http::{AppState, Json};

/// Registers the fault-injection endpoint; call only when
/// `ENABLE_FAULT_INJECTION=true` (otherwise the route does not exist: 404).
pub fn fault_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/admin/debug/faults").route(web::post().to(inject_fault)));
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    actor: String,
    kind: FaultKind,
    #[serde(default = "one")]
    times: u32,
}

fn one() -> u32 {
    1
}

pub const MAX_FAULTS: u32 = 10_000;

/// `POST /admin/debug/faults {"actor", "kind": "panic"|"error", "times"}`: the
/// actor fails on its next `times` messages or ticks. 202 with what was armed.
#[tracing::instrument(skip_all, fields(actor = %body.actor, kind = ?body.kind, times = body.times))]
async fn inject_fault(
    _: SuperAdmin,
    state: web::Data<AppState>,
    Json(body): Json<FaultRequest>,
) -> Result<HttpResponse, ApiError> {
    let board = state.actors.supervisor.board();
    let Some(actor) = board.names().into_iter().find(|name| *name == body.actor) else {
        let known = board.names().join(", ");
        return Err(InvalidField::new("actor", format!("unknown actor; known: {known}")).into());
    };
    if !(1..=MAX_FAULTS).contains(&body.times) {
        return Err(
            InvalidField::new("times", format!("must be between 1 and {MAX_FAULTS}")).into(),
        );
    }
    state
        .actors
        .supervisor
        .faults()
        .arm(actor, body.kind, body.times);
    tracing::warn!("fault injection armed");
    Ok(HttpResponse::Accepted().json(body))
}
