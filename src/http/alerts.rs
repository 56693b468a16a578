//! `GET /api/v1/alerts`: current (pending, firing) and recently resolved
//! alerts. The super admin sees every alert (or one tenant's with
//! `tenant_id`); a tenant admin sees its tenant's only, never another's nor
//! the service-wide ones.

use actix_web::web;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::InvalidField;
use crate::error::{ApiError, ErrorBody};
use crate::http::AppState;
use crate::http::authz::Reader;

#[derive(utoipa::OpenApi)]
#[openapi(paths(list))]
pub struct Doc;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/alerts").route(web::get().to(list)));
}

/// Any other query parameter is a 400.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this tenant's alerts (the super admin; a tenant admin may name
    /// only its own).
    #[param(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    tenant_id: Option<String>,
    /// How many resolved alerts, most recent first: 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// The answer: unresolved alerts, oldest first, and recent resolved ones.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AlertList {
    pub current: Vec<AlertDoc>,
    pub resolved: Vec<AlertDoc>,
}

/// One episode of an alert rule in a scope.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Alert)]
pub struct AlertDoc {
    pub id: i64,
    /// `high_error_rate`, `media_buy_failures`, `auth_failure_spike`,
    /// `pending_approvals`, `database_unhealthy`, `agent_slow` or
    /// `agent_success_rate`.
    pub rule: String,
    /// The tenant id, `agent:<name>`, or `""` (service-wide).
    pub scope: String,
    /// `null` for service-wide and agent alerts.
    pub tenant_id: Option<String>,
    /// `critical`, `high`, `medium` or `warning`.
    pub severity: String,
    /// The Slack webhook it pages: `general`, `audit` or `hitl`.
    pub channel: String,
    /// `pending`, `firing` or `resolved`.
    pub state: String,
    /// When the condition was first seen.
    pub since: DateTime<Utc>,
    pub fired_at: Option<DateTime<Utc>>,
    pub last_notified_at: Option<DateTime<Utc>>,
    /// Notices sent for this episode (fired, reminders, resolved).
    pub notifications: i32,
    pub value: f64,
    pub threshold: f64,
    pub summary: String,
    pub resolved_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl From<overseer_actors::alerts::Alert> for AlertDoc {
    fn from(a: overseer_actors::alerts::Alert) -> Self {
        Self {
            id: a.id,
            rule: a.rule,
            scope: a.scope,
            tenant_id: a.tenant_id,
            severity: a.severity,
            channel: a.channel,
            state: a.state.as_str().to_owned(),
            since: a.since,
            fired_at: a.fired_at,
            last_notified_at: a.last_notified_at,
            notifications: a.notifications,
            value: a.value,
            threshold: a.threshold,
            summary: a.summary,
            resolved_at: a.resolved_at,
            updated_at: a.updated_at,
        }
    }
}

/// `GET /api/v1/alerts` (super admin, or a tenant admin for its tenant).
#[utoipa::path(
    get,
    path = "/api/v1/alerts",
    tag = "alerts",
    operation_id = "list_alerts",
    params(ListQuery),
    responses(
        (status = 200, description = "Current and recently resolved alerts", body = AlertList),
        (status = 400, description = "An unknown or malformed query parameter", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Neither the super admin nor this tenant's admin", body = ErrorBody),
        (status = 422, description = "`limit` or `tenant_id` is invalid", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn list(
    who: Reader,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<web::Json<AlertList>, ApiError> {
    if let Some(tenant) = &query.tenant_id {
        crate::domain::TenantId::parse("tenant_id", tenant)?;
    }
    let tenant = who.tenant(query.tenant_id.as_deref())?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(InvalidField::new("limit", "must be between 1 and 500").into());
    }
    let current = state.store.current_alerts(tenant.as_deref()).await?;
    let resolved = state
        .store
        .resolved_alerts(tenant.as_deref(), limit)
        .await?;
    Ok(web::Json(AlertList {
        current: current.into_iter().map(Into::into).collect(),
        resolved: resolved.into_iter().map(Into::into).collect(),
    }))
}
