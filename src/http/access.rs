//! What the domain handlers share: audit events naming the caller, the
//! ownership check that turns "someone else's" into a 404 and a security
//! violation, and keyset pages.

use actix_web::{HttpMessage, HttpRequest};
use overseer_actors::audit::{AuditEvent, CommittedEvent, Source};
use overseer_actors::security::{Violation, ViolationType};
use serde::{Deserialize, Serialize};

use crate::auth::{Caller, client_ip};
use crate::domain::InvalidField;
use crate::error::ApiError;
use crate::http::AppState;
use crate::http::audit::AuditedByHandler;
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

/// A cursor is the last id of the previous page (ids are ASCII, at most 128
/// characters); anything else is not one of ours.
pub fn page_cursor(cursor: Option<&str>) -> Result<Option<&str>, ApiError> {
    match cursor {
        Some(c) if c.is_empty() || c.len() > 128 || !c.is_ascii() => {
            Err(InvalidField::new("cursor", "not a cursor from this API").into())
        }
        other => Ok(other),
    }
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
