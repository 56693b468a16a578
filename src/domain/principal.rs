//! Principals: the buyer agents of a tenant, each with one bearer token.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::text::bounded;
use super::{InvalidField, TenantId};

/// `POST /api/v1/principals`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePrincipal {
    /// Trimmed.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// `POST /api/v1/principals/{id}/rotate-token`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateToken {
    /// In the future; absent: the token does not expire.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

pub const MAX_NAME_CHARS: usize = 200;

impl CreatePrincipal {
    pub fn parse(
        self,
        now: DateTime<Utc>,
    ) -> Result<(String, Option<DateTime<Utc>>), InvalidField> {
        let name = bounded("name", &self.name, MAX_NAME_CHARS)?;
        Ok((name, future_expiry(self.expires_at, now)?))
    }
}

/// An expiry must lie in the future (and before the year 10000).
pub fn future_expiry(
    at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, InvalidField> {
    match at
        .map(|at| super::time::timestamp("expires_at", at))
        .transpose()?
    {
        Some(at) if at <= now => Err(InvalidField::new("expires_at", "must be in the future")),
        other => Ok(other),
    }
}

/// A principal as stored and shown (never its token or hash).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Principal {
    #[sqlx(rename = "id")]
    pub principal_id: String,
    #[sqlx(try_from = "String")]
    pub tenant_id: TenantId,
    pub name: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A principal's new token: the record to store and the clear token to show
/// once.
pub struct IssuedToken {
    pub token: String,
    pub token_hash: String,
}

impl IssuedToken {
    /// `ovs_` + 64 hex digits (32 random bytes).
    pub fn generate() -> Self {
        use rand::RngExt;
        let token = format!("ovs_{}", hex::encode(rand::rng().random::<[u8; 32]>()));
        let token_hash = super::TokenHash::of(&token).to_hex();
        Self { token, token_hash }
    }
}
