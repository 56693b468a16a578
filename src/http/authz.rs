//! Who may call what: the extractors that state it in a handler's signature,
//! and [`ROUTES`], the one table of every route's rule.
//!
//! A handler says who may call it by the type it extracts ([`SuperAdmin`],
//! [`TenantAdmin`], [`Principal`], [`Ingester`], [`DeliveryWriter`],
//! [`AdminOrPrincipal`], [`Reader`]): extracting it authenticates the
//! request ([`Caller`]: 401 without valid credentials) and then refuses any
//! other kind of caller with a 403, before the handler runs. Each extractor
//! lists the kinds it admits ([`Rule::KINDS`]).
//!
//! [`ROUTES`] names, for every method and path the service serves, the
//! extractor of its handler (through its `KINDS`) and the tenant relation
//! the handler enforces ([`Tenancy`]). The generated test
//! (`tests/api/security/authz.rs`) walks every operation of the OpenAPI
//! document with every kind of caller and holds each answer to this table;
//! a route missing from either side fails it, and so does a handler whose
//! extractor admits more (or fewer) kinds than its row says.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest};

use crate::domain::{TenantId, TokenKind};
use crate::error::ApiError;
use crate::http::auth::Caller;

/// A kind of authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `ADMIN_TOKEN`.
    SuperAdmin,
    /// A tenant's admin token (or a dashboard session signed in with one).
    TenantAdmin,
    /// A tenant's ingest token: writes audit events, nothing else.
    Ingest,
    /// A tenant's adapter token: posts delivery data, nothing else.
    Adapter,
    /// A principal's (buyer agent's) token.
    Principal,
}

impl Kind {
    pub fn of(caller: &Caller) -> Self {
        match caller {
            Caller::SuperAdmin => Kind::SuperAdmin,
            Caller::Tenant { kind, .. } => match kind {
                TokenKind::Admin => Kind::TenantAdmin,
                TokenKind::Ingest => Kind::Ingest,
                TokenKind::Adapter => Kind::Adapter,
                TokenKind::Principal => Kind::Principal,
            },
        }
    }
}

/// An extractor that admits some kinds of caller.
pub trait Rule: Sized {
    /// The kinds admitted; any other valid caller gets a 403.
    const KINDS: &'static [Kind];
    /// The 403's message.
    const REFUSAL: &'static str;
    /// Builds the extractor from a caller of one of [`Rule::KINDS`].
    fn admit(caller: Caller) -> Option<Self>;
}

/// Authenticates, then admits the caller by `R`'s rule.
fn extract<R: Rule + 'static>(
    req: &HttpRequest,
    payload: &mut actix_web::dev::Payload,
) -> Pin<Box<dyn Future<Output = Result<R, ApiError>>>> {
    let caller = Caller::from_request(req, payload);
    Box::pin(async move {
        let caller = caller.await?;
        if !R::KINDS.contains(&Kind::of(&caller)) {
            return Err(ApiError::Forbidden(R::REFUSAL.into()));
        }
        R::admit(caller).ok_or_else(|| ApiError::Forbidden(R::REFUSAL.into()))
    })
}

macro_rules! extractor {
    ($($name:ident),* $(,)?) => {$(
        impl FromRequest for $name {
            type Error = ApiError;
            type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

            fn from_request(
                req: &HttpRequest,
                payload: &mut actix_web::dev::Payload,
            ) -> Self::Future {
                extract::<$name>(req, payload)
            }
        }
    )*};
}

extractor!(
    SuperAdmin,
    TenantAdmin,
    Principal,
    Ingester,
    DeliveryWriter,
    AdminOrPrincipal,
    Reader
);

/// The super admin; 403 for any other valid token.
#[derive(Debug)]
pub struct SuperAdmin;

impl Rule for SuperAdmin {
    const KINDS: &'static [Kind] = &[Kind::SuperAdmin];
    const REFUSAL: &'static str = "the super admin token is required";
    fn admit(_: Caller) -> Option<Self> {
        Some(SuperAdmin)
    }
}

/// A tenant admin, with its tenant.
#[derive(Debug)]
pub struct TenantAdmin {
    pub tenant: TenantId,
    pub caller: Caller,
}

impl Rule for TenantAdmin {
    const KINDS: &'static [Kind] = &[Kind::TenantAdmin];
    const REFUSAL: &'static str = "a tenant admin token is required";
    fn admit(caller: Caller) -> Option<Self> {
        Some(Self {
            tenant: caller.tenant()?.clone(),
            caller,
        })
    }
}

/// A principal (buyer agent), with its tenant and id.
#[derive(Debug)]
pub struct Principal {
    pub tenant: TenantId,
    pub id: String,
    pub caller: Caller,
}

impl Rule for Principal {
    const KINDS: &'static [Kind] = &[Kind::Principal];
    const REFUSAL: &'static str = "a principal token is required";
    fn admit(caller: Caller) -> Option<Self> {
        Some(Self {
            tenant: caller.tenant()?.clone(),
            id: caller.principal_id().to_owned(),
            caller,
        })
    }
}

/// Who may write audit events (`POST /api/v1/audit/events`): the super
/// admin (any tenant's chain, or the system chain) or an ingest token (its
/// own tenant's chain).
#[derive(Debug)]
pub struct Ingester {
    pub caller: Caller,
}

impl Rule for Ingester {
    const KINDS: &'static [Kind] = &[Kind::SuperAdmin, Kind::Ingest];
    const REFUSAL: &'static str = "the super admin or an ingest token is required";
    fn admit(caller: Caller) -> Option<Self> {
        Some(Self { caller })
    }
}

impl Ingester {
    /// The tenant the token is bound to; `None` for the super admin.
    pub fn tenant(&self) -> Option<&TenantId> {
        self.caller.tenant()
    }

    /// What ingested rows record as their writer (`ingested_by`): the
    /// ingest token's id, or `super_admin`.
    pub fn token_id(&self) -> &str {
        self.caller.principal_id()
    }
}

/// A tenant admin or an adapter token: the tenant whose delivery data it
/// may write.
#[derive(Debug)]
pub struct DeliveryWriter {
    pub tenant: TenantId,
    pub caller: Caller,
}

impl Rule for DeliveryWriter {
    const KINDS: &'static [Kind] = &[Kind::TenantAdmin, Kind::Adapter];
    const REFUSAL: &'static str = "a tenant admin or adapter token is required";
    fn admit(caller: Caller) -> Option<Self> {
        Some(Self {
            tenant: caller.tenant()?.clone(),
            caller,
        })
    }
}

/// A tenant admin or a principal: its tenant, and for a principal its id
/// (what it may see is then limited to its own).
#[derive(Debug)]
pub struct AdminOrPrincipal {
    pub tenant: TenantId,
    pub principal: Option<String>,
    pub caller: Caller,
}

impl Rule for AdminOrPrincipal {
    const KINDS: &'static [Kind] = &[Kind::TenantAdmin, Kind::Principal];
    const REFUSAL: &'static str = "a tenant admin or principal token is required";
    fn admit(caller: Caller) -> Option<Self> {
        let principal =
            matches!(Kind::of(&caller), Kind::Principal).then(|| caller.principal_id().to_owned());
        Some(Self {
            tenant: caller.tenant()?.clone(),
            principal,
            caller,
        })
    }
}

/// Who may read a tenant's trail, alerts and activity: the super admin (any
/// tenant, or all) or a tenant admin (its own).
#[derive(Debug)]
pub struct Reader {
    pub caller: Caller,
}

impl Rule for Reader {
    const KINDS: &'static [Kind] = &[Kind::SuperAdmin, Kind::TenantAdmin];
    const REFUSAL: &'static str = "the super admin or a tenant admin token is required";
    fn admit(caller: Caller) -> Option<Self> {
        Some(Self { caller })
    }
}

impl Reader {
    /// The tenant to read: the super admin's `requested` one (or all), a
    /// tenant admin's own (403 when it names another).
    pub fn tenant(&self, requested: Option<&str>) -> Result<Option<String>, ApiError> {
        self.caller.readable_tenant(requested)
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// Anyone, without credentials.
    Anyone,
    /// Anyone without credentials (a reduced answer); a caller who gives
    /// credentials must be of one of these kinds (`/health`'s details:
    /// a tenant's token is 403 there, not silently the anonymous answer).
    AnonymousOr(&'static [Kind]),
    /// An authenticated caller of one of these kinds (an extractor's
    /// [`Rule::KINDS`]).
    Only(&'static [Kind]),
}

/// Which tenant's data an admitted caller reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tenancy {
    /// None: public, or the service itself.
    None,
    /// Any tenant, named in the path or the body (the super admin's).
    Any,
    /// The caller's own tenant (the super admin's reads: any, or all). A
    /// `tenant_id` naming another tenant is a 403.
    Own,
    /// The object the path names, which must be the caller's tenant's (and,
    /// for a principal, its own): anyone else's is a 404, exactly like a
    /// missing one, and a security violation.
    OwnObject,
}

/// One route's rule.
#[derive(Debug, Clone, Copy)]
pub struct RouteRule {
    pub method: &'static str,
    /// actix's pattern, the OpenAPI document's path.
    pub path: &'static str,
    pub who: Who,
    pub tenancy: Tenancy,
    /// Described in the OpenAPI document (the dashboard, `/metrics`, the
    /// document itself and the fault-injection route are not).
    pub documented: bool,
}

const fn rule(method: &'static str, path: &'static str, who: Who, tenancy: Tenancy) -> RouteRule {
    RouteRule {
        method,
        path,
        who,
        tenancy,
        documented: true,
    }
}

const fn undocumented(
    method: &'static str,
    path: &'static str,
    who: Who,
    tenancy: Tenancy,
) -> RouteRule {
    RouteRule {
        method,
        path,
        who,
        tenancy,
        documented: false,
    }
}

use Tenancy::{Any, Own, OwnObject};

const ANYONE: Who = Who::Anyone;
/// `HEALTH_DETAILS_TOKEN` is a credential of its own, like `METRICS_TOKEN`.
const HEALTH: Who = Who::AnonymousOr(SuperAdmin::KINDS);
const SUPER_ADMIN: Who = Who::Only(SuperAdmin::KINDS);
const TENANT_ADMIN: Who = Who::Only(TenantAdmin::KINDS);
const PRINCIPAL: Who = Who::Only(Principal::KINDS);
const INGESTER: Who = Who::Only(Ingester::KINDS);
const DELIVERY_WRITER: Who = Who::Only(DeliveryWriter::KINDS);
const ADMIN_OR_PRINCIPAL: Who = Who::Only(AdminOrPrincipal::KINDS);
const READER: Who = Who::Only(Reader::KINDS);

/// Every route the service serves, with who may call it.
#[rustfmt::skip]
pub const ROUTES: &[RouteRule] = &[
    // Liveness, readiness and the document: anyone.
    rule("GET", "/health", HEALTH, Tenancy::None),
    rule("GET", "/health/ready", HEALTH, Tenancy::None),
    rule("GET", "/health/live", ANYONE, Tenancy::None),
    undocumented("GET", "/api/openapi.json", ANYONE, Tenancy::None),
    // `METRICS_TOKEN`, when set, is a credential of its own (not a caller).
    undocumented("GET", "/metrics", ANYONE, Tenancy::None),
    // Tenants and their tokens: the super admin.
    rule("POST", "/api/v1/tenants", SUPER_ADMIN, Any),
    rule("GET", "/api/v1/tenants", SUPER_ADMIN, Any),
    rule("GET", "/api/v1/tenants/{tenant_id}", SUPER_ADMIN, Any),
    rule("PATCH", "/api/v1/tenants/{tenant_id}", SUPER_ADMIN, Any),
    rule("POST", "/api/v1/tenants/{tenant_id}/admin-tokens", SUPER_ADMIN, Any),
    rule("POST", "/api/v1/tenants/{tenant_id}/ingest-tokens", SUPER_ADMIN, Any),
    rule("POST", "/api/v1/tenants/{tenant_id}/adapter-tokens", SUPER_ADMIN, Any),
    rule("GET", "/api/v1/tenants/{tenant_id}/tokens", SUPER_ADMIN, Any),
    rule("POST", "/api/v1/tenants/{tenant_id}/tokens/{token_id}/revoke", SUPER_ADMIN, Any),
    rule("POST", "/api/v1/tenants/{tenant_id}/tokens/{token_id}/rotate", SUPER_ADMIN, Any),
    // A tenant's settings, principals and decisions: its admin.
    rule("GET", "/api/v1/tenant/settings", TENANT_ADMIN, Own),
    rule("PATCH", "/api/v1/tenant/settings", TENANT_ADMIN, Own),
    rule("POST", "/api/v1/principals", TENANT_ADMIN, Own),
    rule("GET", "/api/v1/principals", TENANT_ADMIN, Own),
    rule("GET", "/api/v1/principals/{principal_id}", TENANT_ADMIN, OwnObject),
    rule("POST", "/api/v1/principals/{principal_id}/revoke-token", TENANT_ADMIN, OwnObject),
    rule("POST", "/api/v1/principals/{principal_id}/rotate-token", TENANT_ADMIN, OwnObject),
    rule("GET", "/api/v1/workflows", TENANT_ADMIN, Own),
    rule("POST", "/api/v1/workflows/{id}/approve", TENANT_ADMIN, OwnObject),
    rule("POST", "/api/v1/workflows/{id}/reject", TENANT_ADMIN, OwnObject),
    rule("POST", "/api/v1/creatives/{id}/approve", TENANT_ADMIN, OwnObject),
    rule("POST", "/api/v1/creatives/{id}/reject", TENANT_ADMIN, OwnObject),
    rule("POST", "/api/v1/media-buys/{id}/webhooks/{webhook_id}/retry", TENANT_ADMIN, OwnObject),
    rule("POST", "/api/v1/media-buys/{id}/delivery/report", TENANT_ADMIN, OwnObject),
    // A buyer's own buys, creatives and push configs.
    rule("POST", "/api/v1/media-buys", PRINCIPAL, Own),
    rule("POST", "/api/v1/creatives", PRINCIPAL, Own),
    rule("POST", "/api/v1/push-notification-configs", PRINCIPAL, Own),
    rule("GET", "/api/v1/push-notification-configs", PRINCIPAL, Own),
    rule("DELETE", "/api/v1/push-notification-configs/{id}", PRINCIPAL, OwnObject),
    // Read (and pause) by the tenant's admin or the buy's principal.
    rule("GET", "/api/v1/media-buys", ADMIN_OR_PRINCIPAL, Own),
    rule("GET", "/api/v1/media-buys/{id}", ADMIN_OR_PRINCIPAL, OwnObject),
    rule("PATCH", "/api/v1/media-buys/{id}", ADMIN_OR_PRINCIPAL, OwnObject),
    rule("GET", "/api/v1/media-buys/{id}/delivery", ADMIN_OR_PRINCIPAL, OwnObject),
    rule("GET", "/api/v1/media-buys/{id}/webhooks", ADMIN_OR_PRINCIPAL, OwnObject),
    rule("GET", "/api/v1/creatives", ADMIN_OR_PRINCIPAL, Own),
    // Delivery data: the tenant's admin or its ad server's adapter.
    rule("POST", "/api/v1/media-buys/{id}/delivery", DELIVERY_WRITER, OwnObject),
    // The trail: written by the super admin and ingest tokens only, read by
    // the super admin and tenant admins.
    rule("POST", "/api/v1/audit/events", INGESTER, Own),
    rule("GET", "/api/v1/audit/logs", READER, Own),
    rule("GET", "/api/v1/audit/verify", READER, Own),
    rule("GET", "/api/v1/alerts", READER, Own),
    rule("GET", "/api/activity-stream", READER, Own),
    // Operator actions and agent runs: the super admin.
    rule("POST", "/admin/schedulers/status/run", SUPER_ADMIN, Tenancy::None),
    rule("POST", "/admin/schedulers/delivery/run", SUPER_ADMIN, Tenancy::None),
    rule("POST", "/admin/alerts/run", SUPER_ADMIN, Tenancy::None),
    undocumented("POST", "/admin/debug/faults", SUPER_ADMIN, Tenancy::None),
    rule("POST", "/api/v1/agent-runs", SUPER_ADMIN, Any),
    rule("GET", "/api/v1/agent-runs", SUPER_ADMIN, Any),
    rule("GET", "/api/v1/agent-runs/{run_id}", SUPER_ADMIN, Any),
    rule("POST", "/api/v1/agent-runs/{run_id}/finish", SUPER_ADMIN, Any),
    // The dashboard: its page and assets are public; signing in takes a
    // super admin or tenant admin token (the form's own check), and what a
    // session reads goes through the routes above.
    undocumented("GET", "/admin", ANYONE, Tenancy::None),
    undocumented("GET", "/admin/", ANYONE, Tenancy::None),
    undocumented("GET", "/admin/assets/{file}", ANYONE, Tenancy::None),
    undocumented("POST", "/admin/session", ANYONE, Tenancy::None),
    undocumented("POST", "/admin/session/end", ANYONE, Tenancy::None),
    undocumented("GET", "/admin/session", READER, Own),
    undocumented("GET", "/admin/activity/stream", READER, Own),
];

/// The rule of `method` `path` (an actix pattern), if the table has one.
pub fn rule_of(method: &str, path: &str) -> Option<&'static RouteRule> {
    ROUTES
        .iter()
        .find(|r| r.method.eq_ignore_ascii_case(method) && r.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_each_route_once() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    !(a.method == b.method && a.path == b.path),
                    "{} {} twice",
                    a.method,
                    a.path
                );
            }
        }
    }

    #[test]
    fn the_table_covers_every_documented_operation() {
        let doc = serde_json::to_value(crate::http::openapi::document()).expect("serialises");
        let paths = doc["paths"].as_object().expect("paths");
        for (path, item) in paths {
            for method in item.as_object().expect("operations").keys() {
                assert!(
                    rule_of(method, path).is_some_and(|r| r.documented),
                    "{method} {path} is not in authz::ROUTES"
                );
            }
        }
        for rule in ROUTES.iter().filter(|r| r.documented) {
            assert!(
                paths
                    .get(rule.path)
                    .and_then(|p| p.get(rule.method.to_ascii_lowercase()))
                    .is_some(),
                "{} {} is in authz::ROUTES but not in the document",
                rule.method,
                rule.path
            );
        }
    }
}
