//! The request-audit middleware: every `/api/v1` request becomes an audit
//! event (the route's operation name, the caller, the client IP, `success` =
//! status below 400, the error message of a failure), recorded through the
//! AuditActor's batcher, off the request's critical path. A handler that
//! commits its own audit row with its change marks the request
//! ([`AuditedByHandler`]) and is not recorded twice. A request goes to the
//! chain of the tenant whose credentials it carried, never to one its path
//! merely names ([`chain_of`]).

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};
use overseer_actors::audit::{AuditEvent, Source};

use crate::domain::TenantId;
use crate::http::AppState;
use crate::http::audit::AuditedByHandler;
use crate::http::auth::{Caller, RefusedTokenOf};

/// Operation names by method and route pattern. A route missing here is
/// recorded as `api_request`.
const OPERATIONS: &[(&str, &str, &str)] = &[
    ("POST", "/api/v1/tenants", "create_tenant"),
    ("GET", "/api/v1/tenants", "list_tenants"),
    ("GET", "/api/v1/tenants/{tenant_id}", "get_tenant"),
    (
        "POST",
        "/api/v1/tenants/{tenant_id}/admin-tokens",
        "create_admin_token",
    ),
    (
        "POST",
        "/api/v1/tenants/{tenant_id}/ingest-tokens",
        "create_ingest_token",
    ),
    (
        "POST",
        "/api/v1/tenants/{tenant_id}/adapter-tokens",
        "create_adapter_token",
    ),
    (
        "GET",
        "/api/v1/tenants/{tenant_id}/tokens",
        "list_tenant_tokens",
    ),
    (
        "POST",
        "/api/v1/tenants/{tenant_id}/tokens/{token_id}/revoke",
        "revoke_tenant_token",
    ),
    (
        "POST",
        "/api/v1/tenants/{tenant_id}/tokens/{token_id}/rotate",
        "rotate_tenant_token",
    ),
    ("POST", "/api/v1/audit/events", "ingest_audit_events"),
    ("GET", "/api/v1/audit/logs", "query_audit_logs"),
    ("GET", "/api/v1/audit/verify", "verify_audit_chain"),
    ("POST", "/api/v1/agent-runs", "start_agent_run"),
    (
        "POST",
        "/api/v1/agent-runs/{run_id}/finish",
        "finish_agent_run",
    ),
    ("GET", "/api/v1/agent-runs", "list_agent_runs"),
    ("GET", "/api/v1/agent-runs/{run_id}", "get_agent_run"),
];

pub fn operation_name(method: &str, pattern: Option<&str>) -> &'static str {
    OPERATIONS
        .iter()
        .find(|(m, p, _)| *m == method && Some(*p) == pattern)
        .map_or("api_request", |(_, _, op)| op)
}

/// The chain a request's row goes to. An authenticated tenant token: its
/// tenant's. The super admin: the tenant its path names (it acts on that
/// tenant), or the system chain. A refused token that is one of a tenant's
/// own (revoked, expired): that tenant's, whatever the path names. Anyone
/// else (no credentials, an unknown token): the system chain, never the
/// path's tenant, which is kept as `details.path_tenant_id`. Otherwise an
/// anonymous client could fill any tenant's trail and drive its
/// `high_error_rate` alert, which counts only tenants' rows.
fn chain_of(
    caller: Option<&Caller>,
    refused: Option<&RefusedTokenOf>,
    path_tenant: Option<&TenantId>,
) -> Option<TenantId> {
    match (caller, refused) {
        (Some(Caller::SuperAdmin), _) => path_tenant.cloned(),
        (Some(caller), _) => caller.tenant().cloned(),
        (None, Some(RefusedTokenOf(tenant))) => Some(tenant.clone()),
        (None, None) => None,
    }
}

pub async fn record_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .filter(|s| s.audit_requests)
        .cloned();
    let ip = crate::http::auth::client_ip(req.request());
    let started = Instant::now();
    let res = next.call(req).await?;
    let Some(state) = state else {
        return Ok(res);
    };
    let req = res.request();
    if req.extensions().get::<AuditedByHandler>().is_some() {
        return Ok(res);
    }
    let pattern = req.match_pattern();
    let operation = operation_name(req.method().as_str(), pattern.as_deref());
    let caller = req.extensions().get::<Caller>().cloned();
    let refused = req.extensions().get::<RefusedTokenOf>().cloned();
    let path_tenant = req
        .match_info()
        .get("tenant_id")
        .and_then(|t| TenantId::parse("tenant_id", t).ok());
    let tenant = chain_of(caller.as_ref(), refused.as_ref(), path_tenant.as_ref());
    let status = res.status();
    let mut details = serde_json::json!({
        "method": req.method().as_str(),
        "route": pattern.as_deref().unwrap_or(req.path()),
        "status": status.as_u16(),
        "duration_ms": started.elapsed().as_secs_f64() * 1_000.0,
    });
    if let (Some(named), serde_json::Value::Object(map)) = (&path_tenant, &mut details)
        && tenant.as_ref() != Some(named)
    {
        map.insert("path_tenant_id".into(), named.as_str().into());
    }
    let mut event = AuditEvent::new(operation, state.clock.now()).with_details(details);
    event.tenant_id = tenant.map(|t| t.as_str().to_owned());
    if let Some(caller) = &caller {
        event.principal_id = Some(caller.principal_id().to_owned());
        event.principal_name = Some(caller.display_name().to_owned());
    }
    event.ip_address = ip;
    if status.as_u16() >= 400 {
        event.success = false;
        event.error = Some(
            res.response()
                .error()
                .map_or_else(|| status.to_string(), ToString::to_string),
        );
    }
    state.actors.auditor.record(Source::Request, event);
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_have_operation_names() {
        assert_eq!(
            operation_name("POST", Some("/api/v1/tenants")),
            "create_tenant"
        );
        assert_eq!(
            operation_name("GET", Some("/api/v1/tenants")),
            "list_tenants"
        );
        assert_eq!(
            operation_name("DELETE", Some("/api/v1/tenants")),
            "api_request"
        );
        assert_eq!(operation_name("GET", None), "api_request");
    }

    #[test]
    fn only_a_tenants_own_credentials_put_a_request_in_its_chain() {
        let acme = TenantId::parse("t", "acme").unwrap();
        let globex = TenantId::parse("t", "globex").unwrap();
        let acme_admin = Caller::Tenant {
            tenant_id: acme.clone(),
            kind: crate::domain::TokenKind::Admin,
            token_id: "tok_1".into(),
        };
        assert_eq!(chain_of(None, None, Some(&globex)), None);
        assert_eq!(
            chain_of(None, Some(&RefusedTokenOf(acme.clone())), Some(&globex)),
            Some(acme.clone())
        );
        assert_eq!(chain_of(Some(&acme_admin), None, Some(&globex)), Some(acme));
        assert_eq!(
            chain_of(Some(&Caller::SuperAdmin), None, Some(&globex)),
            Some(globex)
        );
        assert_eq!(chain_of(Some(&Caller::SuperAdmin), None, None), None);
    }
}
