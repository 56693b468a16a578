//! Tenant-scoped API tokens: random, shown once, stored as SHA-256 hashes.

use chrono::{DateTime, Utc};
use rand::RngExt;
use serde::Serialize;

use super::{InvalidField, TenantId};

/// What a tenant token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// Write audit events for its tenant (`POST /api/v1/audit/events`).
    Ingest,
    /// Administer its tenant (the domain API).
    Admin,
    /// A principal (buyer agent): its own media buys and creatives.
    Principal,
    /// An ad server's integration: posts delivery data for its tenant's
    /// media buys, and nothing else.
    Adapter,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Ingest => "ingest",
            TokenKind::Admin => "admin",
            TokenKind::Principal => "principal",
            TokenKind::Adapter => "adapter",
        }
    }
}

impl TryFrom<String> for TokenKind {
    type Error = InvalidField;

    fn try_from(value: String) -> Result<Self, InvalidField> {
        match value.as_str() {
            "ingest" => Ok(TokenKind::Ingest),
            "admin" => Ok(TokenKind::Admin),
            "principal" => Ok(TokenKind::Principal),
            "adapter" => Ok(TokenKind::Adapter),
            _ => Err(InvalidField::new(
                "kind",
                "expected `ingest`, `admin`, `principal` or `adapter`",
            )),
        }
    }
}

/// A token about to be stored. The clear token is returned to the caller once
/// and never kept.
#[derive(Debug)]
pub struct NewApiToken {
    pub id: String,
    pub tenant_id: TenantId,
    pub kind: TokenKind,
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl NewApiToken {
    /// A fresh token (`ovs_` + 64 hex digits: 32 random bytes) and the record
    /// to store for it.
    pub fn generate(
        tenant_id: TenantId,
        kind: TokenKind,
        now: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
    ) -> (String, Self) {
        let token = format!("ovs_{}", hex::encode(rand::rng().random::<[u8; 32]>()));
        let record = Self {
            id: format!("tok_{}", hex::encode(rand::rng().random::<[u8; 8]>())),
            tenant_id,
            kind,
            token_hash: super::TokenHash::of(&token).to_hex(),
            created_at: now,
            expires_at,
        };
        (token, record)
    }
}

/// A stored token (a tenant token or a principal's), with the state of its
/// tenant. For a principal, `id` is the principal's id.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiToken {
    pub id: String,
    #[sqlx(try_from = "String")]
    pub tenant_id: TenantId,
    #[sqlx(try_from = "String")]
    pub kind: TokenKind,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub tenant_active: bool,
}

/// A tenant token (admin, ingest or adapter) as its tenant's list shows it:
/// never the token or its hash. There is no "last used" time: recording one
/// would be a write on every authenticated request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct TenantToken {
    pub token_id: String,
    #[sqlx(try_from = "String")]
    pub tenant_id: TenantId,
    #[sqlx(try_from = "String")]
    pub kind: TokenKind,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked (by hand, or replaced by a rotation).
    pub revoked_at: Option<DateTime<Utc>>,
}

impl NewApiToken {
    /// How the stored token will be listed.
    pub fn listed(&self) -> TenantToken {
        TenantToken {
            token_id: self.id.clone(),
            tenant_id: self.tenant_id.clone(),
            kind: self.kind,
            created_at: self.created_at,
            expires_at: self.expires_at,
            revoked_at: None,
        }
    }
}
