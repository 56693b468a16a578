//! Authentication of API callers (`Authorization: Bearer <token>`).
//!
//! Tokens are compared by their SHA-256 digests, never stored or logged in the
//! clear. Today there is one kind of caller, the bootstrap super admin
//! (`ADMIN_TOKEN`); tenant admins and principals come with the domain API.

use std::future::{Ready, ready};

use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

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
            Ok(SuperAdmin)
        } else {
            Err(ApiError::Unauthorized)
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
