//! What the domain handlers share: audit events naming the caller, the
//! ownership check that turns "someone else's" into a 404 and a security
//! violation, the middleware that reports a read of another tenant by its
//! `tenant_id`, privilege changes, and keyset pages.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, web};
use overseer_actors::audit::{AuditEvent, CommittedEvent, Source};
use overseer_actors::security::{Violation, ViolationType};
use serde::{Deserialize, Serialize};

use crate::domain::text::client_id;
use crate::domain::{InvalidField, TenantId};
use crate::error::ApiError;
use crate::http::AppState;
use crate::http::audit::AuditedByHandler;
use crate::http::auth::{Caller, client_ip};
use crate::store::Owner;

/// An audit event for `operation` by `caller`, in the caller's tenant chain,
/// with the client's address.
pub fn event(state: &AppState, req: &HttpRequest, caller: &Caller, operation: &str) -> AuditEvent {
    let mut event = AuditEvent::new(operation, state.clock.now())
        .with_principal(caller.principal_id(), Some(caller.display_name().into()));
    if let Some(tenant) = caller.tenant() {
        event = event.with_tenant(tenant.as_str());
    }
    event.ip_address = client_ip(req);
    event
}

/// After a state change committed its audit rows: publish them, and tell the
/// request-audit middleware the request is recorded already.
pub fn committed(state: &AppState, req: &HttpRequest, events: Vec<CommittedEvent>) {
    req.extensions_mut().insert(AuditedByHandler);
    state.actors.auditor.committed(events);
}

/// Records a read (no state change) through the batcher, in place of the
/// middleware's generic row.
pub fn record_read(state: &AppState, req: &HttpRequest, event: AuditEvent) {
    req.extensions_mut().insert(AuditedByHandler);
    state.actors.auditor.record(Source::Request, event);
}

/// Lets the caller see a resource owned by `owner` (`None`: no such
/// resource). Another tenant's resource, or another principal's in the same
/// tenant, is answered exactly like a missing one (404, no existence leak)
/// and reported as `cross_tenant_access` / `unauthorized_access`.
pub fn check_owner(
    state: &AppState,
    req: &HttpRequest,
    caller: &Caller,
    kind: &'static str,
    resource_id: &str,
    owner: Option<Owner>,
) -> Result<(), ApiError> {
    let not_found = || ApiError::NotFound(format!("no such {kind}"));
    let Some(owner) = owner else {
        return Err(not_found());
    };
    let Some(tenant) = caller.tenant() else {
        // The super admin sees every tenant.
        return Ok(());
    };
    let own_principal = caller.principal().ok().map(|(_, id)| id);
    let violation = if owner.tenant_id != tenant.as_str() {
        Some((
            ViolationType::CrossTenantAccess,
            format!("{kind} of another tenant requested"),
        ))
    } else if let (Some(mine), Some(theirs)) = (own_principal, owner.principal_id.as_deref())
        && mine != theirs
    {
        Some((
            ViolationType::UnauthorizedAccess,
            format!("{kind} of another principal requested"),
        ))
    } else {
        None
    };
    match violation {
        None => Ok(()),
        Some((violation_type, reason)) => {
            let mut violation = Violation::access(
                violation_type,
                tenant.as_str(),
                caller.principal_id(),
                resource_id,
                reason,
            );
            if let Some(ip) = client_ip(req) {
                violation = violation.with_ip(ip);
            }
            state.actors.security.report(violation);
            Err(not_found())
        }
    }
}

/// Middleware (on every route): a caller bound to a tenant that names
/// another tenant in a `tenant_id` — a path segment or a query parameter —
/// is reported as `cross_tenant_access`, as the resource routes report
/// another tenant's resource ([`check_owner`]). Every such route refuses a
/// tenant's caller (403 from `Caller::readable_tenant` or the `SuperAdmin`
/// extractor; a malformed body can be refused first); naming the other
/// tenant is the violation, whatever the answer, so it is reported after
/// the response and a route added later that takes a `tenant_id` is
/// covered without a line of its own.
///
/// The row goes to the caller's own chain and audit channel (the named
/// tenant's id is the caller's own input, kept as `resource_id`; it may not
/// even exist, and its chain is not the caller's to write to). Names that
/// are not tenant ids name no tenant and are not reported.
pub async fn report_cross_tenant(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let res = next.call(req).await?;
    let req = res.request();
    let caller = req.extensions().get::<Caller>().cloned();
    let Some(caller) = caller else {
        return Ok(res);
    };
    let Some(own) = caller.tenant() else {
        return Ok(res);
    };
    let Some(other) = named_tenants(req).into_iter().find(|t| t != own) else {
        return Ok(res);
    };
    if let Some(state) = req.app_data::<web::Data<AppState>>() {
        let route = req
            .match_pattern()
            .unwrap_or_else(|| req.path().chars().take(200).collect());
        let mut violation = Violation::access(
            ViolationType::CrossTenantAccess,
            own.as_str(),
            caller.principal_id(),
            other.as_str(),
            format!("{} {route} of another tenant requested", req.method()),
        );
        if let Some(ip) = client_ip(req) {
            violation = violation.with_ip(ip);
        }
        state.actors.security.report(violation);
    }
    Ok(res)
}

/// The tenants a request names: its `{tenant_id}` path segment and every
/// `tenant_id` query parameter that is a tenant id.
fn named_tenants(req: &HttpRequest) -> Vec<TenantId> {
    let from_path = req.match_info().get("tenant_id").map(str::to_owned);
    let from_query = serde_urlencoded::from_str::<Vec<(String, String)>>(req.query_string())
        .unwrap_or_default()
        .into_iter()
        .filter(|(key, _)| key == "tenant_id")
        .map(|(_, value)| value);
    from_path
        .into_iter()
        .chain(from_query)
        .filter_map(|t| TenantId::parse("tenant_id", &t).ok())
        .collect()
}

/// Marks `event` as a privilege change (`change`: `admin_token_created`,
/// `tenant_reactivated`, `principal_token_rotated`, ...): its details say
/// `"security_relevant": true` and name the change, so a search of the trail
/// finds every grant of access. Its notice goes with `privilege: true`
/// (critical, audit channel).
pub fn privilege_change(mut event: AuditEvent, change: &str) -> AuditEvent {
    if let serde_json::Value::Object(details) = &mut event.details {
        details.insert("security_relevant".into(), true.into());
        details.insert("privilege_change".into(), change.into());
    }
    event
}

/// `?limit=&cursor=` of every list.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 500;

/// One page of a list: `next_cursor` is absent on the last page.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub next_cursor: Option<String>,
}

/// The page size asked for, checked.
pub fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(n @ 1..=MAX_PAGE_SIZE) => Ok(n),
        Some(_) => {
            Err(InvalidField::new("limit", format!("must be between 1 and {MAX_PAGE_SIZE}")).into())
        }
    }
}

/// A cursor is the last id of the previous page (an id: 1 to 128 ASCII
/// letters, digits, `-`, `_`, `.` or `:`); anything else is not one of ours.
/// (PostgreSQL refuses text holding NUL: such a cursor must not reach it.)
pub fn page_cursor(cursor: Option<&str>) -> Result<Option<&str>, ApiError> {
    match cursor {
        Some(c) if client_id("cursor", c).is_err() => {
            Err(InvalidField::new("cursor", "not a cursor from this API").into())
        }
        other => Ok(other),
    }
}

/// The id of a resource in a URL path. Server-made ids (`mb_…`, `prn_…`,
/// `wf_…`) and client-chosen ones (creatives, packages) are all
/// [`client_id`]s, so anything else names no resource: 404 without a query
/// (PostgreSQL would refuse one holding NUL, a 500).
pub fn path_id(kind: &str, raw: &str) -> Result<(), ApiError> {
    client_id("id", raw)
        .map(drop)
        .map_err(|_| ApiError::NotFound(format!("no such {kind}")))
}

/// Cuts `items` (fetched with `limit + 1`) to a page.
pub fn page<T>(mut items: Vec<T>, limit: u32, id: impl Fn(&T) -> String) -> Page<T> {
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(id)
    } else {
        None
    };
    Page { items, next_cursor }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tenants_a_request_names_are_its_path_and_query_tenant_ids() {
        use actix_web::test::TestRequest;

        let req = TestRequest::get()
            .uri("/x?tenant_id=other&tenant_id=Not%20One&operation=a&tenant_id=third")
            .param("tenant_id", "acme")
            .to_http_request();
        let named: Vec<String> = named_tenants(&req)
            .into_iter()
            .map(|t| t.as_str().to_owned())
            .collect();
        assert_eq!(named, ["acme", "other", "third"]);
        let none = TestRequest::get().uri("/x?tenant=acme").to_http_request();
        assert!(named_tenants(&none).is_empty());
    }

    #[test]
    fn a_privilege_change_is_marked_security_relevant() {
        let event = AuditEvent::new("create_admin_token", chrono::Utc::now())
            .with_details(serde_json::json!({"token_id": "tok_1"}));
        let marked = privilege_change(event, "admin_token_created");
        assert_eq!(
            marked.details,
            serde_json::json!({
                "token_id": "tok_1",
                "security_relevant": true,
                "privilege_change": "admin_token_created",
            })
        );
    }

    #[test]
    fn cursors_and_path_ids_are_ids_or_nothing() {
        for ok in ["mb_0a1b2c3d4e5f6a7b", "cr-1_a.b:c", "prn_00"] {
            assert_eq!(page_cursor(Some(ok)).unwrap(), Some(ok));
            assert!(path_id("thing", ok).is_ok());
        }
        assert_eq!(page_cursor(None).unwrap(), None);
        let long = "x".repeat(129);
        for bad in ["", "a\0b", "\0", "a b", "a/b", "é", long.as_str()] {
            assert!(
                matches!(page_cursor(Some(bad)), Err(ApiError::InvalidField { .. })),
                "{bad:?}"
            );
            assert!(
                matches!(path_id("thing", bad), Err(ApiError::NotFound(_))),
                "{bad:?}"
            );
        }
    }
}
