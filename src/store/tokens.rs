//! Tenant tokens' lifecycle (admin, ingest and adapter tokens in
//! `api_tokens`): list, revoke, rotate, the same SQL on both backends
//! (generated into each by [`token_queries`]). A change commits its audit
//! rows and notices in the same transaction. Principals' tokens live with
//! the principals.

use chrono::{DateTime, Utc};
use overseer_actors::audit::CommittedEvent;

use super::{Effects, Store, StoreError, timed};
use crate::domain::{NewApiToken, TenantId};

/// The columns of [`crate::domain::TenantToken`], as listed.
pub(super) const TOKEN_COLUMNS: &str =
    "id AS token_id, tenant_id, kind, created_at, expires_at, revoked_at";

/// What a rotation found.
#[derive(Debug)]
pub enum Rotated {
    /// The old token is revoked and the new one stored, with their audit rows.
    Done(Vec<overseer_actors::audit::CommittedEvent>),
    /// No such token in this tenant.
    NotFound,
    /// The token was revoked already: nothing changed.
    AlreadyRevoked,
}

macro_rules! token_queries {
    () => {
        /// One page of `tenant`'s tokens, by id, after `after`.
        pub(super) async fn tenant_tokens(
            &self,
            tenant: &crate::domain::TenantId,
            after: Option<&str>,
            limit: u32,
        ) -> Result<Vec<crate::domain::TenantToken>, sqlx::Error> {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {} FROM api_tokens WHERE tenant_id = $1 AND ($2 IS NULL OR id > $2) \
                 ORDER BY id LIMIT $3",
                super::tokens::TOKEN_COLUMNS
            )))
            .persistent(self.persistent)
            .bind(tenant.as_str())
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
        }

        /// `tenant`'s token `id`, if it has one.
        pub(super) async fn tenant_token(
            &self,
            tenant: &crate::domain::TenantId,
            id: &str,
        ) -> Result<Option<crate::domain::TenantToken>, sqlx::Error> {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {} FROM api_tokens WHERE tenant_id = $1 AND id = $2",
                super::tokens::TOKEN_COLUMNS
            )))
            .persistent(self.persistent)
            .bind(tenant.as_str())
            .bind(id)
            .fetch_optional(&self.pool)
            .await
        }

        /// Revokes `tenant`'s token `id` with `effects`, unless it is revoked
        /// already (or not there): then nothing is written and `None` comes
        /// back.
        pub(super) async fn revoke_tenant_token(
            &self,
            tenant: &crate::domain::TenantId,
            id: &str,
            now: chrono::DateTime<chrono::Utc>,
            effects: super::domain::Effects<'_>,
        ) -> Result<
            Option<(
                crate::domain::TenantToken,
                Vec<overseer_actors::audit::CommittedEvent>,
            )>,
            sqlx::Error,
        > {
            let mut tx = self.begin_write().await?;
            let revoked: Option<crate::domain::TenantToken> =
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "UPDATE api_tokens SET revoked_at = $3 \
                     WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL RETURNING {}",
                    super::tokens::TOKEN_COLUMNS
                )))
                .persistent(self.persistent)
                .bind(tenant.as_str())
                .bind(id)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            match revoked {
                Some(token) => Ok(Some((token, self.commit_with(tx, effects).await?))),
                None => Ok(None),
            }
        }

        /// Replaces `tenant`'s token `id` by `new` in one transaction with
        /// `effects`: the old one is revoked at `new.created_at`, the new one
        /// stored. A revoked token is not rotated.
        pub(super) async fn rotate_tenant_token(
            &self,
            tenant: &crate::domain::TenantId,
            id: &str,
            new: &crate::domain::NewApiToken,
            effects: super::domain::Effects<'_>,
        ) -> Result<super::tokens::Rotated, sqlx::Error> {
            let mut tx = self.begin_write().await?;
            let revoked: Option<String> = sqlx::query_scalar(
                "UPDATE api_tokens SET revoked_at = $3 \
                 WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL RETURNING id",
            )
            .persistent(self.persistent)
            .bind(tenant.as_str())
            .bind(id)
            .bind(new.created_at)
            .fetch_optional(&mut *tx)
            .await?;
            if revoked.is_none() {
                let exists: Option<String> = sqlx::query_scalar(
                    "SELECT id FROM api_tokens WHERE tenant_id = $1 AND id = $2",
                )
                .persistent(self.persistent)
                .bind(tenant.as_str())
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                return Ok(match exists {
                    Some(_) => super::tokens::Rotated::AlreadyRevoked,
                    None => super::tokens::Rotated::NotFound,
                });
            }
            sqlx::query(super::sql::INSERT_API_TOKEN)
                .persistent(self.persistent)
                .bind(&new.id)
                .bind(new.tenant_id.as_str())
                .bind(new.kind.as_str())
                .bind(&new.token_hash)
                .bind(new.created_at)
                .bind(new.expires_at)
                .execute(&mut *tx)
                .await?;
            Ok(super::tokens::Rotated::Done(
                self.commit_with(tx, effects).await?,
            ))
        }
    };
}
pub(super) use token_queries;

/// Tenant tokens' lifecycle.
impl Store {
    /// One page of a tenant's admin, ingest and adapter tokens, by id,
    /// revoked ones included; never a token or its hash.
    #[tracing::instrument(skip_all, fields(tenant_id = %tenant))]
    pub async fn tenant_tokens(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<crate::domain::TenantToken>, StoreError> {
        dispatch!(self.tenant_tokens(tenant, after, limit))
    }

    /// A tenant's token by id; `None` for another tenant's.
    #[tracing::instrument(skip_all, fields(tenant_id = %tenant))]
    pub async fn tenant_token(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<crate::domain::TenantToken>, StoreError> {
        dispatch!(self.tenant_token(tenant, id))
    }

    /// Revokes a tenant's token with its audit rows and notices; `None`
    /// (nothing written) when it is revoked already or not the tenant's.
    #[tracing::instrument(skip_all, fields(tenant_id = %tenant))]
    pub async fn revoke_tenant_token(
        &self,
        tenant: &TenantId,
        id: &str,
        now: DateTime<Utc>,
        effects: Effects<'_>,
    ) -> Result<Option<(crate::domain::TenantToken, Vec<CommittedEvent>)>, StoreError> {
        dispatch!(self.revoke_tenant_token(tenant, id, now, effects))
    }

    /// Replaces a tenant's token by `new` (the old one revoked) with its
    /// audit rows and notices, in one transaction.
    #[tracing::instrument(skip_all, fields(tenant_id = %tenant))]
    pub async fn rotate_tenant_token(
        &self,
        tenant: &TenantId,
        id: &str,
        new: &NewApiToken,
        effects: Effects<'_>,
    ) -> Result<Rotated, StoreError> {
        dispatch!(self.rotate_tenant_token(tenant, id, new, effects))
    }
}
