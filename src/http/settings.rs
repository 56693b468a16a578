//! `/api/v1/tenant/settings`: a tenant admin reads and changes its tenant's
//! Slack webhooks, approval threshold and time zone.

use actix_web::{HttpRequest, web};
use chrono::{DateTime, Utc};
use overseer_actors::notify::{Notification, NotificationEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{Amount, SettingsChange, TenantSettings, Timezone, WebhookUrl};
use crate::error::{ApiError, ErrorBody};
use crate::http::access;
use crate::http::authz::TenantAdmin;
use crate::http::{AppState, Json};
use crate::store::Effects;

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(paths(get, update))]
pub struct Doc;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/tenant/settings")
            .route(web::get().to(get))
            .route(web::patch().to(update)),
    );
}

/// The settings as shown: webhook URLs masked, never in the clear.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SettingsView {
    tenant_id: String,
    /// Masked, e.g. `https://hooks.slack.com/services/T…/B…/****`.
    slack_webhook_url: Option<String>,
    /// Masked.
    slack_audit_webhook_url: Option<String>,
    /// Masked.
    hitl_webhook_url: Option<String>,
    /// Budgets strictly above this need a human's approval; `null`: never.
    approval_threshold: Option<Amount>,
    timezone: Timezone,
    updated_at: DateTime<Utc>,
}

impl SettingsView {
    fn of(tenant_id: &str, s: &TenantSettings) -> Self {
        let mask = |u: &Option<WebhookUrl>| u.as_ref().map(WebhookUrl::masked);
        Self {
            tenant_id: tenant_id.to_owned(),
            slack_webhook_url: mask(&s.slack_webhook_url),
            slack_audit_webhook_url: mask(&s.slack_audit_webhook_url),
            hitl_webhook_url: mask(&s.hitl_webhook_url),
            approval_threshold: s.approval_threshold,
            timezone: s.timezone.clone(),
            updated_at: s.updated_at,
        }
    }
}

/// `GET /api/v1/tenant/settings` (tenant admin).
#[utoipa::path(
    get,
    path = "/api/v1/tenant/settings",
    tag = "settings",
    operation_id = "get_settings",
    responses(
        (status = 200, description = "The settings, webhook URLs masked", body = SettingsView),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not a tenant admin", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn get(
    who: TenantAdmin,
    state: web::Data<AppState>,
) -> Result<web::Json<SettingsView>, ApiError> {
    let tenant = &who.tenant;
    let settings = state
        .store
        .tenant_settings(tenant)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such tenant".into()))?;
    Ok(web::Json(SettingsView::of(tenant.as_str(), &settings)))
}

/// The PATCH body: a key absent leaves the setting alone, `null` clears it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSettings {
    /// An https URL (plain http in development only) whose host is public
    /// (the outbound guard); `null` or `""` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    slack_webhook_url: Option<Option<String>>,
    /// As `slack_webhook_url`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    slack_audit_webhook_url: Option<Option<String>>,
    /// As `slack_webhook_url`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    hitl_webhook_url: Option<Option<String>>,
    /// 0 to 1e12, at most 6 decimals (a JSON number or a decimal string);
    /// `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<f64>)]
    approval_threshold: Option<Option<Value>>,
    /// An IANA time zone such as `Europe/Paris`.
    #[serde(default)]
    timezone: Option<String>,
}

/// Tells a key given as `null` (`Some(None)`) from an absent one (`None`).
fn present<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

impl UpdateSettings {
    fn parse(self, state: &AppState) -> Result<SettingsChange, ApiError> {
        let policy = state.environment.input_policy();
        let url = |field: &'static str, v: Option<Option<String>>| -> Result<_, ApiError> {
            Ok(match v {
                None => None,
                Some(None) => Some(None),
                Some(Some(s)) if s.is_empty() => Some(None),
                Some(Some(s)) => Some(Some(WebhookUrl::parse(field, &s, policy)?)),
            })
        };
        Ok(SettingsChange {
            slack_webhook_url: url("slack_webhook_url", self.slack_webhook_url)?,
            slack_audit_webhook_url: url("slack_audit_webhook_url", self.slack_audit_webhook_url)?,
            hitl_webhook_url: url("hitl_webhook_url", self.hitl_webhook_url)?,
            approval_threshold: match self.approval_threshold {
                None => None,
                Some(None) => Some(None),
                Some(Some(v)) => Some(Some(Amount::parse("approval_threshold", &v)?)),
            },
            timezone: self
                .timezone
                .as_deref()
                .map(|tz| Timezone::parse("timezone", tz))
                .transpose()?,
        })
    }
}

/// `PATCH /api/v1/tenant/settings` (tenant admin). Audited `update_settings`
/// with the changed keys, never the URLs.
#[utoipa::path(
    patch,
    path = "/api/v1/tenant/settings",
    tag = "settings",
    operation_id = "update_settings",
    request_body = UpdateSettings,
    responses(
        (status = 200, description = "The settings after the change", body = SettingsView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 403, description = "Not a tenant admin", body = ErrorBody),
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 413, description = "The body is over the limit", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 422, description = "A field is invalid, or a webhook URL's host may not be reached (the outbound guard)", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
async fn update(
    who: TenantAdmin,
    state: web::Data<AppState>,
    req: HttpRequest,
    Json(body): Json<UpdateSettings>,
) -> Result<web::Json<SettingsView>, ApiError> {
    let (tenant, caller) = (who.tenant.clone(), &who.caller);
    let change = body.parse(&state)?;
    // Every URL the service will POST to passes the outbound guard: a 422
    // naming the field, and nothing saved.
    for (field, url) in change.new_urls() {
        state.ssrf.admit(field, url.expose()).await?;
    }
    let keys = change.keys();
    let current = state
        .store
        .tenant_settings(&tenant)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such tenant".into()))?;
    let now = state.clock.now();
    let mut updated = change.apply(current);
    updated.updated_at = now;
    let audit = [access::event(&state, &req, caller, "update_settings")
        .with_details(serde_json::json!({"changed": keys}))];
    let notes = [Notification::new(
        Some(tenant.to_string()),
        NotificationEvent::ConfigurationChanged {
            target: "settings".into(),
            changed: keys.iter().map(|k| k.to_string()).collect(),
            actor: caller.principal_id().to_owned(),
            privilege: false,
        },
        now,
    )];
    let committed = state
        .store
        .save_settings(&tenant, &updated, Effects::with(&audit, &notes))
        .await?;
    access::committed(&state, &req, committed);
    Ok(web::Json(SettingsView::of(tenant.as_str(), &updated)))
}
