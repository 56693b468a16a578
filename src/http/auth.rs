//! Authentication of API callers (`Authorization: Bearer <token>`).
//!
//! Tokens are compared by their SHA-256 digests, never stored or logged in the
//! clear. Callers: the bootstrap super admin (`ADMIN_TOKEN`), tenant tokens
//! created by the super admin (admin and ingest, [`TokenKind`]) and
//! principals (buyer agents) created by a tenant admin.

use std::future::Future;
use std::pin::Pin;

use actix_web::http::{Method, header};
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};

use overseer_actors::audit::{AuditEvent, Source};

use crate::domain::{TenantId, TokenHash, TokenKind};
use crate::error::ApiError;
use crate::http::AppState;

/// The bearer token of a request, if it carries one.
pub(crate) fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The client's address: the peer's, unless the peer is one of
/// `TRUSTED_PROXIES`; then the right-most `X-Forwarded-For` hop that is not
/// (see [`crate::domain::TrustedProxies::client_address`]). `Forwarded` is
/// not read, nor is anything a client writes when no proxy is trusted.
/// `None` only where there is no connection (unit tests).
pub fn client_ip(req: &HttpRequest) -> Option<String> {
    let peer = req.peer_addr()?.ip();
    let ip = match req.app_data::<web::Data<AppState>>() {
        Some(state) if !state.trusted_proxies.is_empty() => {
            // A line that is not visible ASCII is kept as a garbage hop, so
            // the walk stops there instead of skipping over it.
            let lines: Vec<&str> = req
                .headers()
                .get_all(header::X_FORWARDED_FOR)
                .map(|v| v.to_str().unwrap_or(""))
                .collect();
            state.trusted_proxies.client_address(peer, &lines)
        }
        _ => peer.to_canonical(),
    };
    Some(ip.to_string())
}

/// Who the bearer token says the caller is. Extracting it authenticates the
/// request: 401 for a missing, unknown, revoked or expired token, or one of a
/// deactivated tenant; 429 instead of 401 while the client's address is
/// cooling down after repeated failures. A valid token is served whatever
/// its address has done. Every decision is audited (`token_validated`,
/// `token_rejected`, `token_expired`, through the batcher) and fed to the
/// security monitor. The caller is kept in the request's extensions, so a
/// second extractor (and the audit middleware) sees it without a second
/// lookup or audit row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    SuperAdmin,
    Tenant {
        tenant_id: TenantId,
        kind: TokenKind,
        /// The token's id; for a principal, the principal's id.
        token_id: String,
    },
}

impl Caller {
    /// Who to name in the audit trail.
    pub fn principal_id(&self) -> &str {
        match self {
            Caller::SuperAdmin => "super_admin",
            Caller::Tenant { token_id, .. } => token_id,
        }
    }

    /// A name for people reading the trail.
    pub fn display_name(&self) -> &'static str {
        match self {
            Caller::SuperAdmin => "Super admin",
            Caller::Tenant { kind, .. } => match kind {
                TokenKind::Ingest => "Ingest token",
                TokenKind::Admin => "Tenant admin",
                TokenKind::Principal => "Principal",
                TokenKind::Adapter => "Adapter",
            },
        }
    }

    /// The tenant the caller is bound to, if any.
    pub fn tenant(&self) -> Option<&TenantId> {
        match self {
            Caller::SuperAdmin => None,
            Caller::Tenant { tenant_id, .. } => Some(tenant_id),
        }
    }

    /// The tenant and id of a principal (buyer agent); 403 for anyone else.
    pub fn principal(&self) -> Result<(&TenantId, &str), ApiError> {
        match self {
            Caller::Tenant {
                tenant_id,
                kind: TokenKind::Principal,
                token_id,
            } => Ok((tenant_id, token_id)),
            _ => Err(ApiError::Forbidden("a principal token is required".into())),
        }
    }

    /// The tenant whose data the caller may read: the super admin any
    /// (`requested`, or all), a tenant admin only its own; 403 otherwise.
    pub fn readable_tenant(&self, requested: Option<&str>) -> Result<Option<String>, ApiError> {
        match self {
            Caller::SuperAdmin => Ok(requested.map(str::to_owned)),
            Caller::Tenant {
                tenant_id,
                kind: TokenKind::Admin,
                ..
            } => match requested {
                Some(other) if other != tenant_id.as_str() => Err(ApiError::Forbidden(
                    "a tenant admin may read only its own tenant".into(),
                )),
                _ => Ok(Some(tenant_id.as_str().to_owned())),
            },
            Caller::Tenant {
                kind: TokenKind::Ingest,
                ..
            } => Err(ApiError::Forbidden(
                "an ingest token may only write events".into(),
            )),
            Caller::Tenant { .. } => Err(ApiError::Forbidden(
                "a tenant admin token is required".into(),
            )),
        }
    }
}

/// Why a token was refused, as audited.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// Unknown, revoked, or of a deactivated tenant.
    Rejected(&'static str),
    Expired,
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            if let Some(caller) = req.extensions().get::<Caller>() {
                return Ok(caller.clone());
            }
            let state = req
                .app_data::<web::Data<AppState>>()
                .ok_or_else(|| ApiError::Internal("application state missing".into()))?;
            let hash = match bearer_token(&req) {
                Some(token) => TokenHash::of(token),
                // The dashboard's session stands in for the token, for
                // reading only (its cookie is SameSite=Strict).
                None if matches!(*req.method(), Method::GET | Method::HEAD) => {
                    match crate::http::dashboard::open_session(&req, state) {
                        Some(session) => session.token(state).await?,
                        // A session that lapsed (expired, or from before a
                        // restart with a new key): a browser, not a guess.
                        None if req.cookie(crate::http::dashboard::COOKIE).is_some() => {
                            return Err(ApiError::Unauthorized);
                        }
                        None => return Err(missing_credentials(state, &req)),
                    }
                }
                None => return Err(missing_credentials(state, &req)),
            };
            authenticate(state, &req, hash).await
        })
    }
}

/// The answer to a request that presented no credentials at all (no bearer
/// token, no session cookie) to a route that demands them: a failed
/// authentication of its address, counted by the same limiter as a refused
/// token, so the address that keeps knocking gets 429 with `Retry-After`
/// and the `repeated_failed_auth` violation. Routes that do not demand
/// credentials (`/health`, `/api/openapi.json`, the dashboard's page and
/// assets) never get here. Two requests are not counted: `GET
/// /admin/session`, the dashboard's "am I signed in?" question that every
/// browser opening the dashboard asks first, and a read carrying a session
/// cookie that no longer opens (a lapsed session; see the caller). A
/// valid token from the same address is still served ([`authenticate`]).
fn missing_credentials(state: &AppState, req: &HttpRequest) -> ApiError {
    let sign_in_probe =
        *req.method() == Method::GET && req.match_pattern().as_deref() == Some(SIGN_IN_PROBE);
    if sign_in_probe {
        return ApiError::Unauthorized;
    }
    match client_ip(req).and_then(|ip| state.actors.security.failed_auth(&ip)) {
        Some(remaining) => ApiError::TooManyRequests {
            retry_after_secs: remaining.as_secs().max(1),
        },
        None => ApiError::Unauthorized,
    }
}

/// The dashboard's "who am I" route: asked without a session by design.
const SIGN_IN_PROBE: &str = "/admin/session";

/// Who holds the token whose digest is `hash`: the checks, the audit row and
/// the security monitor's bookkeeping of [`Caller`]'s extractor, for a token
/// however it arrived (header, or the dashboard's sign-in form and session).
///
/// The token is checked before the address's cool-down, and only a refused
/// token is held to it: one address is often many people (a proxy, a NAT, an
/// office), and a cool-down that refused valid tokens would let anyone lock
/// every operator out with a handful of made-up ones. What the cool-down
/// still does is count (the `repeated_failed_auth` violation, and
/// `refused` attempts while blocked) and tell a guessing client to back off
/// (429, `Retry-After`). It cannot make guessing harder: a blocked guesser
/// still learns a right guess by its 200. That rests on the tokens' length
/// (256 random bits for the ones Overseer issues, at least 32 characters for
/// `ADMIN_TOKEN` in production), not on the throttle.
///
/// A refusal during a cool-down is a 429 with no `token_rejected` row, as
/// before this order was chosen: the violation row that started the block
/// stands for what follows, so one source cannot flood the trail.
pub async fn authenticate(
    state: &AppState,
    req: &HttpRequest,
    hash: TokenHash,
) -> Result<Caller, ApiError> {
    let ip = client_ip(req);
    let security = &state.actors.security;
    let outcome = verdict(state, &hash).await?;
    if let Err((_, Some(Caller::Tenant { tenant_id, .. }))) = &outcome {
        req.extensions_mut()
            .insert(RefusedTokenOf(tenant_id.clone()));
    }
    if outcome.is_err()
        && let Some(remaining) = ip.as_deref().and_then(|ip| security.failed_auth(ip))
    {
        return Err(ApiError::TooManyRequests {
            retry_after_secs: remaining.as_secs().max(1),
        });
    }
    audit_decision(state, req, ip.as_deref(), &outcome);
    match outcome {
        Ok(caller) => {
            if let Caller::Tenant {
                tenant_id,
                kind: TokenKind::Principal,
                token_id,
            } = &caller
            {
                security.request(token_id, Some(tenant_id.as_str()));
            }
            req.extensions_mut().insert(caller.clone());
            Ok(caller)
        }
        Err(_) => Err(ApiError::Unauthorized),
    }
}

/// Kept in a request's extensions when its token was refused (revoked,
/// expired, of a deactivated tenant) but is one of this tenant's: the
/// request-audit middleware may record the request in that tenant's chain,
/// since the credential is that tenant's own.
#[derive(Debug, Clone)]
pub struct RefusedTokenOf(pub TenantId);

type Verdict = Result<Caller, (Refusal, Option<Caller>)>;

/// The checks of [`authenticate`] on the token whose digest is `hash`, with
/// none of its effects (no audit row, no throttling, no security
/// bookkeeping): one store lookup, none for the super admin's token.
async fn verdict(state: &AppState, hash: &TokenHash) -> Result<Verdict, ApiError> {
    if hash.matches(&state.admin_token_hash) {
        return Ok(Ok(Caller::SuperAdmin));
    }
    Ok(match state.store.api_token(&hash.to_hex()).await? {
        None => Err((Refusal::Rejected("unknown token"), None)),
        Some(token) => {
            let caller = Caller::Tenant {
                tenant_id: token.tenant_id.clone(),
                kind: token.kind,
                token_id: token.id.clone(),
            };
            if token.revoked_at.is_some() {
                Err((Refusal::Rejected("revoked token"), Some(caller)))
            } else if !token.tenant_active {
                Err((Refusal::Rejected("tenant deactivated"), Some(caller)))
            } else if token.expires_at.is_some_and(|at| at <= state.clock.now()) {
                Err((Refusal::Expired, Some(caller)))
            } else {
                Ok(caller)
            }
        }
    })
}

/// Whether the token whose digest is `hash` would still be accepted: the
/// checks of [`authenticate`] (unknown, revoked, expired, tenant
/// deactivated) without its effects. For credentials accepted earlier and
/// asked about again, such as an open activity stream's at each heartbeat:
/// that question is not a new authentication, and auditing it would write a
/// row per stream per heartbeat.
pub async fn still_valid(state: &AppState, hash: &TokenHash) -> Result<bool, ApiError> {
    Ok(verdict(state, hash).await?.is_ok())
}

/// One audit row per authentication decision, through the batcher. Names the
/// token's id (never the token) and the route. Successful validations are
/// recorded unless `AUDIT_TOKEN_VALIDATIONS=false`, whatever `AUDIT_REQUESTS`
/// says (the middleware's rows are another producer); refusals always are.
fn audit_decision(
    state: &AppState,
    req: &HttpRequest,
    ip: Option<&str>,
    outcome: &Result<Caller, (Refusal, Option<Caller>)>,
) {
    if outcome.is_ok() && !state.audit_token_validations {
        return;
    }
    let now = state.clock.now();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let (caller, mut event) = match outcome {
        Ok(caller) => (
            Some(caller),
            AuditEvent::new("token_validated", now)
                .with_details(serde_json::json!({"route": route, "method": req.method().as_str()})),
        ),
        Err((refusal, caller)) => {
            let (operation, reason) = match refusal {
                Refusal::Rejected(reason) => ("token_rejected", *reason),
                Refusal::Expired => ("token_expired", "expired token"),
            };
            (
                caller.as_ref(),
                AuditEvent::new(operation, now)
                    .with_details(serde_json::json!({
                        "route": route,
                        "method": req.method().as_str(),
                        "reason": reason,
                    }))
                    .failed(reason),
            )
        }
    };
    if let Some(caller) = caller {
        if let Some(tenant) = caller.tenant() {
            event = event.with_tenant(tenant.as_str());
        }
        event = event.with_principal(caller.principal_id(), Some(caller.display_name().into()));
        if let serde_json::Value::Object(details) = &mut event.details
            && let Caller::Tenant { kind, .. } = caller
        {
            details.insert("token_kind".into(), kind.as_str().into());
        }
    }
    event.ip_address = ip.map(str::to_owned);
    state.actors.auditor.record(Source::Internal, event);
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let req = TestRequest::default()
            .insert_header((header::AUTHORIZATION, "Bearer abc"))
            .to_http_request();
        assert_eq!(bearer_token(&req), Some("abc"));
        let req = TestRequest::default()
            .insert_header((header::AUTHORIZATION, "bearer   abc "))
            .to_http_request();
        assert_eq!(bearer_token(&req), Some("abc"));
        for value in ["Basic abc", "Bearer", "Bearer  ", "abc"] {
            let req = TestRequest::default()
                .insert_header((header::AUTHORIZATION, value))
                .to_http_request();
            assert_eq!(bearer_token(&req), None, "{value}");
        }
    }
}
