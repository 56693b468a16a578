//! Authentication of API callers (`Authorization: Bearer <token>`).
//!
//! Tokens are compared by their SHA-256 digests, never stored or logged in the
//! clear. Today there is one kind of caller, the bootstrap super admin
//! (`ADMIN_TOKEN`), and tenant-scoped tokens ([`TokenKind`]) created by the
//! super admin; principals come with the domain API.

use std::future::{Future, Ready, ready};
use std::pin::Pin;

use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::domain::{TenantId, TokenKind};
use crate::error::ApiError;
use crate::http::AppState;

/// The SHA-256 digest of a token.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    pub fn of_secret(token: &SecretString) -> Self {
        Self::of(token.expose_secret())
    }

    /// The digest as 64 hex digits, as stored.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Compares digests in constant time.
    fn matches(&self, other: &TokenHash) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(****)")
    }
}

/// The bearer token of a request, if it carries one.
fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Extractor: the caller is the super admin. 401 otherwise.
#[derive(Debug)]
pub struct SuperAdmin;

impl FromRequest for SuperAdmin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let Some(state) = req.app_data::<web::Data<AppState>>() else {
            return ready(Err(ApiError::Internal("application state missing".into())));
        };
        let authorized = bearer_token(req)
            .is_some_and(|token| TokenHash::of(token).matches(&state.admin_token_hash));
        ready(if authorized {
            req.extensions_mut().insert(Caller::SuperAdmin);
            Ok(SuperAdmin)
        } else {
            Err(ApiError::Unauthorized)
        })
    }
}

/// Extractor: whoever the bearer token says the caller is. 401 for a missing,
/// unknown, revoked or expired token, or one of a deactivated tenant. The
/// caller is also left in the request's extensions for the audit middleware.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    SuperAdmin,
    Tenant {
        tenant_id: TenantId,
        kind: TokenKind,
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
            Caller::Tenant {
                kind: TokenKind::Ingest,
                ..
            } => "Ingest token",
            Caller::Tenant {
                kind: TokenKind::Admin,
                ..
            } => "Tenant admin",
        }
    }

    /// The tenant the caller is bound to, if any.
    pub fn tenant(&self) -> Option<&TenantId> {
        match self {
            Caller::SuperAdmin => None,
            Caller::Tenant { tenant_id, .. } => Some(tenant_id),
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
            Caller::Tenant { .. } => Err(ApiError::Forbidden(
                "an ingest token may only write events".into(),
            )),
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AppState>>()
                .ok_or_else(|| ApiError::Internal("application state missing".into()))?;
            let hash = TokenHash::of(bearer_token(&req).ok_or(ApiError::Unauthorized)?);
            let caller = if hash.matches(&state.admin_token_hash) {
                Caller::SuperAdmin
            } else {
                let token = state
                    .store
                    .api_token(&hash.to_hex())
                    .await?
                    .ok_or(ApiError::Unauthorized)?;
                let expired = token.expires_at.is_some_and(|at| at <= state.clock.now());
                if token.revoked_at.is_some() || expired || !token.tenant_active {
                    return Err(ApiError::Unauthorized);
                }
                Caller::Tenant {
                    tenant_id: token.tenant_id,
                    kind: token.kind,
                    token_id: token.id,
                }
            };
            req.extensions_mut().insert(caller.clone());
            Ok(caller)
        })
    }
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

    #[test]
    fn token_hashes_match_only_the_same_token() {
        assert!(TokenHash::of("secret").matches(&TokenHash::of("secret")));
        assert!(!TokenHash::of("secret").matches(&TokenHash::of("secreT")));
        assert_eq!(format!("{:?}", TokenHash::of("secret")), "TokenHash(****)");
    }
}
