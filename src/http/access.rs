//! What the domain handlers share: audit events naming the caller, the
//! ownership check that turns "someone else's" into a 404 and a security
//! violation, and keyset pages.

use actix_web::{HttpMessage, HttpRequest};
use overseer_actors::audit::{AuditEvent, CommittedEvent, Source};
use overseer_actors::security::{Violation, ViolationType};
use serde::{Deserialize, Serialize};

use crate::auth::{Caller, client_ip};
use crate::domain::InvalidField;
use crate::domain::text::client_id;
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
