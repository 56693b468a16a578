//! The domain's tables: tenants' settings, principals, media buys, creatives,
//! workflow tasks, delivery, idempotency keys and the notification outbox.
//!
//! Every state change commits, in its one transaction, the change, its audit
//! rows (`append_audit_in`) and its outbox rows ([`Effects`]). The SQL is
//! the same on both backends and generated into each by [`domain_queries`].

use overseer_actors::audit::AuditEvent;
use overseer_actors::notify::Notification;

/// Packages and assigned creative ids, by media buy id.
pub type Parts =
    std::collections::HashMap<String, (Vec<crate::domain::media_buy::Package>, Vec<String>)>;

/// What a state change commits with it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Effects<'a> {
    pub audit: &'a [AuditEvent],
    pub notifications: &'a [Notification],
}

impl<'a> Effects<'a> {
    pub fn audit(audit: &'a [AuditEvent]) -> Self {
        Self {
            audit,
            notifications: &[],
        }
    }

    pub fn with(audit: &'a [AuditEvent], notifications: &'a [Notification]) -> Self {
        Self {
            audit,
            notifications,
        }
    }
}

/// A stored `Idempotency-Key`: the request's hash and the response given.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct IdempotencyRecord {
    pub request_hash: String,
    pub status: i32,
    pub response: String,
}

/// One row of the notification outbox.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub notification_id: String,
    pub tenant_id: Option<String>,
    pub kind: String,
    pub payload: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub sent_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// An approval task to open with a state change: its id, its reason, and
/// the budget it approves (what the admin sees and approves).
#[derive(Debug, Clone, Copy)]
pub struct NewWorkflow<'a> {
    pub id: &'a str,
    pub reason: &'a str,
    pub budget: crate::domain::Amount,
}

/// What a delivery post did.
#[derive(Debug)]
pub enum DeliveryWrite {
    /// Stored, with the audit rows committed.
    Stored(Vec<overseer_actors::audit::CommittedEvent>),
    /// Nothing stored: the buy's total spend would exceed the allowed
    /// multiple of its budget (`total` is `None` when the sum does not even
    /// fit in 64 bits).
    SpendAboveCap {
        total: Option<crate::domain::Amount>,
        cap: crate::domain::Amount,
    },
}

/// What deciding a workflow task did.
#[derive(Debug)]
pub enum Decided {
    Done(
        Box<crate::domain::workflow::WorkflowTask>,
        Vec<overseer_actors::audit::CommittedEvent>,
    ),
    /// The task is not pending (decided or superseded meanwhile), or not in
    /// this tenant.
    NotPending,
    /// The buy is no longer waiting at the amount the task shows; nothing
    /// was written.
    BuyChanged,
}

/// Who a resource belongs to, read without scoping: lets a handler tell "no
/// such thing" from "someone else's" (both answer 404; the second is a
/// violation).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Owner {
    pub tenant_id: String,
    pub principal_id: Option<String>,
}

// Column lists are constants, spliced into queries with `AssertSqlSafe`.
pub(super) const MEDIA_BUY_COLUMNS: &str = "id, tenant_id, principal_id, buyer_ref, order_name, \
     advertiser_name, currency, budget_micros, flight_start, flight_end, status, paused_from, \
     approved_budget_micros, reporting_webhook, created_at, updated_at";
pub(super) const PRINCIPAL_COLUMNS: &str =
    "id, tenant_id, name, expires_at, revoked_at, created_at, updated_at";
pub(super) const CREATIVE_COLUMNS: &str = "id, tenant_id, principal_id, name, format, url, status, \
     review_reason, created_at, updated_at";
pub(super) const WORKFLOW_COLUMNS: &str = "id, tenant_id, media_buy_id, kind, status, \
     budget_micros, reason, comment, decided_by, created_at, decided_at";

macro_rules! domain_queries {
    () => {
        /// Writes the outbox rows and audit rows of `effects` into `tx` and
        /// commits.
        async fn commit_with(
            &self,
            mut tx: sqlx::Transaction<'_, Db>,
            effects: super::domain::Effects<'_>,
        ) -> Result<Vec<overseer_actors::audit::CommittedEvent>, sqlx::Error> {
            // Multi-row inserts: 5 parameters a row, well under both
            // backends' limits per statement.
            for chunk in effects.notifications.chunks(1_000) {
                let mut qb = sqlx::QueryBuilder::<Db>::new(
                    "INSERT INTO notification_outbox (notification_id, tenant_id, kind, payload, created_at) ",
                );
                qb.push_values(chunk, |mut row, n| {
                    row.push_bind(n.id.to_string())
                        .push_bind(n.tenant_id.clone())
                        .push_bind(n.event.kind())
                        .push_bind(serde_json::to_string(&n.event).unwrap_or_default())
                        .push_bind(n.created_at);
                });
                qb.build().persistent(self.persistent).execute(&mut *tx).await?;
            }
            let audit = super::audit::redacted(effects.audit);
            let committed = self.append_audit_in(&mut tx, &audit).await?;
            tx.commit().await?;
            Ok(committed)
        }

        pub(super) async fn enqueue_notifications(
            &self,
            notifications: &[overseer_actors::notify::Notification],
        ) -> Result<(), sqlx::Error> {
            let tx = self.pool.begin().await?;
            self.commit_with(tx, super::domain::Effects::with(&[], notifications))
                .await
                .map(drop)
        }

        pub(super) async fn outbox(
            &self,
            after_id: i64,
            limit: u32,
        ) -> Result<Vec<super::domain::OutboxRow>, sqlx::Error> {
            sqlx::query_as(
                "SELECT id, notification_id, tenant_id, kind, payload, created_at, sent_at \
                 FROM notification_outbox WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .persistent(self.persistent)
            .bind(after_id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
        }

        // ---------------------------------------------------------- tenants

        pub(super) async fn update_tenant(
            &self,
            id: &crate::domain::TenantId,
            name: Option<&crate::domain::TenantName>,
            is_active: Option<bool>,
            now: chrono::DateTime<chrono::Utc>,
            effects: super::domain::Effects<'_>,
        ) -> Result<
            Option<(crate::domain::Tenant, Vec<overseer_actors::audit::CommittedEvent>)>,
            sqlx::Error,
        > {
            let mut tx = self.begin_write().await?;
            let updated: Option<crate::domain::Tenant> = sqlx::query_as(
                "UPDATE tenants SET name = COALESCE($2, name), is_active = COALESCE($3, is_active), \
                 updated_at = $4 WHERE id = $1 \
                 RETURNING id, name, is_active, created_at, updated_at",
            )
            .persistent(self.persistent)
            .bind(id.as_str())
            .bind(name.map(crate::domain::TenantName::as_str))
            .bind(is_active)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            match updated {
                Some(tenant) => Ok(Some((tenant, self.commit_with(tx, effects).await?))),
                None => Ok(None),
            }
        }

        pub(super) async fn tenant_settings(
            &self,
            id: &crate::domain::TenantId,
        ) -> Result<Option<crate::domain::TenantSettings>, sqlx::Error> {
            let row: Option<(Option<String>, Option<String>, Option<String>, Option<i64>, String, chrono::DateTime<chrono::Utc>)> =
                sqlx::query_as(
                    "SELECT slack_webhook_url, slack_audit_webhook_url, hitl_webhook_url, \
                     approval_threshold_micros, timezone, updated_at FROM tenants WHERE id = $1",
                )
                .persistent(self.persistent)
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await?;
            Ok(row.map(|(general, audit, hitl, threshold, timezone, updated_at)| {
                crate::domain::TenantSettings {
                    slack_webhook_url: general.map(crate::domain::WebhookUrl::stored),
                    slack_audit_webhook_url: audit.map(crate::domain::WebhookUrl::stored),
                    hitl_webhook_url: hitl.map(crate::domain::WebhookUrl::stored),
                    approval_threshold: threshold.map(crate::domain::Amount::from_micros),
                    timezone: crate::domain::Timezone::parse("timezone", &timezone)
                        .unwrap_or_else(|_| crate::domain::Timezone::utc()),
                    updated_at,
                }
            }))
        }

        pub(super) async fn save_settings(
            &self,
            id: &crate::domain::TenantId,
            settings: &crate::domain::TenantSettings,
            effects: super::domain::Effects<'_>,
        ) -> Result<Vec<overseer_actors::audit::CommittedEvent>, sqlx::Error> {
            let mut tx = self.begin_write().await?;
            sqlx::query(
                "UPDATE tenants SET slack_webhook_url = $2, slack_audit_webhook_url = $3, \
                 hitl_webhook_url = $4, approval_threshold_micros = $5, timezone = $6, \
                 updated_at = $7 WHERE id = $1",
            )
            .persistent(self.persistent)
            .bind(id.as_str())
            .bind(settings.slack_webhook_url.as_ref().map(crate::domain::WebhookUrl::expose))
            .bind(settings.slack_audit_webhook_url.as_ref().map(crate::domain::WebhookUrl::expose))
            .bind(settings.hitl_webhook_url.as_ref().map(crate::domain::WebhookUrl::expose))
            .bind(settings.approval_threshold.map(crate::domain::Amount::micros))
            .bind(settings.timezone.as_str())
            .bind(settings.updated_at)
            .execute(&mut *tx)
            .await?;
            self.commit_with(tx, effects).await
        }

        pub(super) async fn insert_api_token_with(
            &self,
            token: &crate::domain::NewApiToken,
            effects: super::domain::Effects<'_>,
        ) -> Result<Vec<overseer_actors::audit::CommittedEvent>, sqlx::Error> {
            let mut tx = self.begin_write().await?;
            sqlx::query(super::sql::INSERT_API_TOKEN)
                .persistent(self.persistent)
                .bind(&token.id)
                .bind(token.tenant_id.as_str())
                .bind(token.kind.as_str())
                .bind(&token.token_hash)
                .bind(token.created_at)
                .bind(token.expires_at)
                .execute(&mut *tx)
                .await?;
            self.commit_with(tx, effects).await
        }

        // ------------------------------------------------------- principals

        #[allow(clippy::too_many_arguments)]
        pub(super) async fn insert_principal(
            &self,
            tenant: &crate::domain::TenantId,
            id: &str,
            name: &str,
            token_hash: &str,
            expires_at: Option<chrono::DateTime<chrono::Utc>>,
            now: chrono::DateTime<chrono::Utc>,
            effects: super::domain::Effects<'_>,
        ) -> Result<
            (crate::domain::principal::Principal, Vec<overseer_actors::audit::CommittedEvent>),
            sqlx::Error,
        > {
            let mut tx = self.begin_write().await?;
            let principal = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "INSERT INTO principals (id, tenant_id, name, token_hash, expires_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {}",
                super::domain::PRINCIPAL_COLUMNS
            )))
            .persistent(self.persistent)
            .bind(id)
            .bind(tenant.as_str())
            .bind(name)
            .bind(token_hash)
            .bind(expires_at)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            Ok((principal, self.commit_with(tx, effects).await?))
        }

        pub(super) async fn principals(
            &self,
            tenant: &crate::domain::TenantId,
            after: Option<&str>,
            limit: u32,
        ) -> Result<Vec<crate::domain::principal::Principal>, sqlx::Error> {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {} FROM principals WHERE tenant_id = $1 AND ($2 IS NULL OR id > $2) \
                 ORDER BY id LIMIT $3",
                super::domain::PRINCIPAL_COLUMNS
            )))
            .persistent(self.persistent)
            .bind(tenant.as_str())
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
        }

        pub(super) async fn principal(
            &self,
            id: &str,
        ) -> Result<Option<crate::domain::principal::Principal>, sqlx::Error> {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {} FROM principals WHERE id = $1",
                super::domain::PRINCIPAL_COLUMNS
            )))
            .persistent(self.persistent)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
        }

        /// Rotates (`token_hash` = the new hash, clears a revocation) or
        /// revokes (`token_hash` = None) a principal's token.
        pub(super) async fn update_principal_token(
            &self,
            tenant: &crate::domain::TenantId,
            id: &str,
            token_hash: Option<&str>,
            expires_at: Option<chrono::DateTime<chrono::Utc>>,
            now: chrono::DateTime<chrono::Utc>,
            effects: super::domain::Effects<'_>,
        ) -> Result<
            Option<(crate::domain::principal::Principal, Vec<overseer_actors::audit::CommittedEvent>)>,
            sqlx::Error,
        > {
            let mut tx = self.begin_write().await?;
            let query = match token_hash {
                Some(hash) => sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "UPDATE principals SET token_hash = $3, expires_at = $4, revoked_at = NULL, \
                     updated_at = $5 WHERE tenant_id = $1 AND id = $2 RETURNING {}",
                    super::domain::PRINCIPAL_COLUMNS
                )))
                .bind(tenant.as_str())
                .bind(id)
                .bind(hash)
                .bind(expires_at)
                .bind(now),
                None => sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "UPDATE principals SET revoked_at = COALESCE(revoked_at, $3), updated_at = $3 \
                     WHERE tenant_id = $1 AND id = $2 RETURNING {}",
                    super::domain::PRINCIPAL_COLUMNS
                )))
                .bind(tenant.as_str())
                .bind(id)
                .bind(now),
            };
            let updated: Option<crate::domain::principal::Principal> = query
                .persistent(self.persistent)
                .fetch_optional(&mut *tx)
                .await?;
            match updated {
                Some(p) => Ok(Some((p, self.commit_with(tx, effects).await?))),
                None => Ok(None),
            }
        }

        // ------------------------------------------------------- media buys

        pub(super) async fn idempotency_record(
            &self,
            tenant: &crate::domain::TenantId,
            principal_id: &str,
            key: &str,
        ) -> Result<Option<super::domain::IdempotencyRecord>, sqlx::Error> {
            sqlx::query_as(
                "SELECT request_hash, status, response FROM idempotency_keys \
                 WHERE tenant_id = $1 AND principal_id = $2 AND key = $3",
            )
            .persistent(self.persistent)
            .bind(tenant.as_str())
            .bind(principal_id)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
        }

        /// The creatives among `ids` that exist in `tenant` and belong to
        /// `principal_id`.
        pub(super) async fn owned_creatives(
            &self,
            tenant: &crate::domain::TenantId,
            principal_id: &str,
            ids: &[String],
        ) -> Result<Vec<String>, sqlx::Error> {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let mut qb = sqlx::QueryBuilder::<Db>::new("SELECT id FROM creatives WHERE tenant_id = ");
            qb.push_bind(tenant.as_str().to_owned())
                .push(" AND principal_id = ")
                .push_bind(principal_id.to_owned())
                .push(" AND id IN (");
            let mut list = qb.separated(", ");
            for id in ids {
                list.push_bind(id.clone());
            }
            qb.push(")");
            qb.build_query_scalar()
                .persistent(self.persistent)
                .fetch_all(&self.pool)
                .await
        }

        /// Creates a media buy with its packages, creative assignments, its
        /// approved budget (`None` while a human must approve it), an
        /// optional workflow task and an optional idempotency record `(key,
        /// request_hash, status, response)`.
        #[allow(clippy::too_many_arguments)]
        pub(super) async fn insert_media_buy(
            &self,
            tenant: &crate::domain::TenantId,
            principal_id: &str,
            buy: &crate::domain::media_buy::NewMediaBuy,
            status: crate::domain::media_buy::MediaBuyStatus,
            approved_budget: Option<crate::domain::Amount>,
            workflow: Option<super::domain::NewWorkflow<'_>>,
            idempotency: Option<(&str, &str, i32, &str)>,
            now: chrono::DateTime<chrono::Utc>,
            effects: super::domain::Effects<'_>,
        ) -> Result<Vec<overseer_actors::audit::CommittedEvent>, sqlx::Error> {
            let mut tx = self.begin_write().await?;
            if let Some((key, hash, status, response)) = idempotency {
                // First, so a concurrent twin fails here (unique key) before
                // doing anything else.
                sqlx::query(
                    "INSERT INTO idempotency_keys (tenant_id, principal_id, key, request_hash, status, \
                     response, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .persistent(self.persistent)
                .bind(tenant.as_str())
                .bind(principal_id)
                .bind(key)
                .bind(hash)
                .bind(status)
                .bind(response)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "INSERT INTO media_buys (id, tenant_id, principal_id, buyer_ref, order_name, \
                 advertiser_name, currency, budget_micros, flight_start, flight_end, status, \
                 reporting_webhook, created_at, updated_at, approved_budget_micros) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $14)",
            )
            .persistent(self.persistent)
            .bind(&buy.id)
            .bind(tenant.as_str())
            .bind(principal_id)
            .bind(&buy.buyer_ref)
            .bind(&buy.order_name)
            .bind(&buy.advertiser_name)
            .bind(buy.currency.as_str())
            .bind(buy.budget.micros())
            .bind(buy.flight_start)
            .bind(buy.flight_end)
            .bind(status.as_str())
            .bind(buy.reporting_webhook.as_ref().map(|w| w.to_stored()))
            .bind(now)
            .bind(approved_budget.map(crate::domain::Amount::micros))
            .execute(&mut *tx)
            .await?;
            for (position, p) in buy.packages.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO media_buy_packages (media_buy_id, package_id, budget_micros, \
                     pricing_model, rate_micros, position) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .persistent(self.persistent)
                .bind(&buy.id)
                .bind(&p.package_id)
                .bind(p.budget.micros())
                .bind(&p.pricing_model)
                .bind(p.rate.micros())
                .bind(position as i32)
                .execute(&mut *tx)
                .await?;
            }
            for creative in &buy.creative_ids {
                sqlx::query(
                    "INSERT INTO creative_assignments (tenant_id, media_buy_id, creative_id, \
                     principal_id) VALUES ($1, $2, $3, $4)",
                )
                .persistent(self.persistent)
                .bind(tenant.as_str())
                .bind(&buy.id)
                .bind(creative)
                .bind(principal_id)
                .execute(&mut *tx)
                .await?;
            }
            if let Some(workflow) = workflow {
                self.insert_workflow(&mut tx, workflow, tenant.as_str(), &buy.id, now)
                    .await?;
            }
            self.commit_with(tx, effects).await
        }

        /// Opens a media-buy approval task inside the caller's transaction.
        async fn insert_workflow(
            &self,
            tx: &mut sqlx::Transaction<'static, Db>,
            workflow: super::domain::NewWorkflow<'_>,
            tenant: &str,
            media_buy_id: &str,
            now: chrono::DateTime<chrono::Utc>,
        ) -> Result<(), sqlx::Error> {
            sqlx::query(
                "INSERT INTO workflow_tasks (id, tenant_id, media_buy_id, kind, status, reason, \
                 created_at, budget_micros) \
                 VALUES ($1, $2, $3, 'media_buy_approval', 'pending', $4, $5, $6)",
            )
            .persistent(self.persistent)
            .bind(workflow.id)
            .bind(tenant)
            .bind(media_buy_id)
            .bind(workflow.reason)
            .bind(now)
            .bind(workflow.budget.micros())
            .execute(&mut **tx)
            .await
            .map(drop)
        }

        pub(super) async fn media_buy(
            &self,
            id: &str,
        ) -> Result<Option<crate::domain::media_buy::MediaBuy>, sqlx::Error> {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {} FROM media_buys WHERE id = $1",
                super::domain::MEDIA_BUY_COLUMNS
            )))
            .persistent(self.persistent)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
        }

        /// A buy's packages (in the order given) and assigned creatives.
        /// The packages (in the order given) and assigned creatives of each
        /// of `ids`, in two queries whatever their number.
        pub(super) async fn media_buy_parts(
            &self,
            ids: &[String],
        ) -> Result<super::domain::Parts, sqlx::Error> {
            let mut parts = super::domain::Parts::new();
            if ids.is_empty() {
                return Ok(parts);
            }
            let in_list = |qb: &mut sqlx::QueryBuilder<Db>| {
                let mut list = qb.separated(", ");
                for id in ids {
                    list.push_bind(id.clone());
                }
            };
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "SELECT media_buy_id, package_id, budget_micros, pricing_model, rate_micros \
                 FROM media_buy_packages WHERE media_buy_id IN (",
            );
            in_list(&mut qb);
            qb.push(") ORDER BY media_buy_id, position");
            let rows: Vec<(String, String, i64, String, i64)> = qb
                .build_query_as()
                .persistent(self.persistent)
                .fetch_all(&self.pool)
                .await?;
            for (buy, package_id, budget, pricing_model, rate) in rows {
                parts.entry(buy).or_default().0.push(crate::domain::media_buy::Package {
                    package_id,
                    budget: crate::domain::Amount::from_micros(budget),
                    pricing_model,
                    rate: crate::domain::Amount::from_micros(rate),
                });
            }
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "SELECT media_buy_id, creative_id FROM creative_assignments WHERE media_buy_id IN (",
            );
            in_list(&mut qb);
            qb.push(") ORDER BY media_buy_id, creative_id");
            let rows: Vec<(String, String)> = qb
                .build_query_as()
                .persistent(self.persistent)
                .fetch_all(&self.pool)
                .await?;
            for (buy, creative) in rows {
                parts.entry(buy).or_default().1.push(creative);
            }
            Ok(parts)
        }

        #[allow(clippy::too_many_arguments)]
        pub(super) async fn media_buys(
            &self,
            tenant: &crate::domain::TenantId,
            principal_id: Option<&str>,
            status: Option<&str>,
            buyer_ref: Option<&str>,
            after: Option<&str>,
            limit: u32,
        ) -> Result<Vec<crate::domain::media_buy::MediaBuy>, sqlx::Error> {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {} FROM media_buys WHERE tenant_id = $1 \
                 AND ($2 IS NULL OR principal_id = $2) AND ($3 IS NULL OR status = $3) \
                 AND ($4 IS NULL OR buyer_ref = $4) AND ($5 IS NULL OR id > $5) \
                 ORDER BY id LIMIT $6",
                super::domain::MEDIA_BUY_COLUMNS
            )))
            .persistent(self.persistent)
            .bind(tenant.as_str())
            .bind(principal_id)
            .bind(status)
            .bind(buyer_ref)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
        }

        /// The pending approval tasks of a buy (at most one).
        pub(super) async fn pending_workflows(
            &self,
            media_buy_id: &str,
        ) -> Result<Vec<String>, sqlx::Error> {
            sqlx::query_scalar(
                "SELECT id FROM workflow_tasks WHERE media_buy_id = $1 AND status = 'pending' \
                 ORDER BY id",
            )
            .persistent(self.persistent)
            .bind(media_buy_id)
            .fetch_all(&self.pool)
            .await
        }

        /// Saves `buy` if it was not changed since `seen` (its `updated_at`
        /// when read); `None` when it was (or is gone), or when one of the
        /// `superseded` tasks is no longer pending (decided meanwhile).
        /// The superseded tasks are marked first, so this takes the task's
        /// row lock before the buy's, in the same order as a decision does.
        pub(super) async fn save_media_buy(
            &self,
            buy: &crate::domain::media_buy::MediaBuy,
            seen: chrono::DateTime<chrono::Utc>,
            superseded: &[String],
            workflow: Option<super::domain::NewWorkflow<'_>>,
            effects: super::domain::Effects<'_>,
        ) -> Result<Option<Vec<overseer_actors::audit::CommittedEvent>>, sqlx::Error> {
            let mut tx = self.begin_write().await?;
            let comment = match workflow {
                Some(w) => format!("superseded by {}: the budget or flight changed", w.id),
                None => "withdrawn: the budget or flight changed and no approval is needed".to_owned(),
            };
            for id in superseded {
                let done = sqlx::query(
                    "UPDATE workflow_tasks SET status = 'superseded', comment = $2, \
                     decided_by = 'system', decided_at = $3 WHERE id = $1 AND status = 'pending'",
                )
                .persistent(self.persistent)
                .bind(id)
                .bind(&comment)
                .bind(buy.updated_at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if done == 0 {
                    return Ok(None);
                }
            }
            let done = sqlx::query(
                "UPDATE media_buys SET order_name = $3, budget_micros = $4, flight_start = $5, \
                 flight_end = $6, status = $7, paused_from = $8, updated_at = $9, \
                 approved_budget_micros = $10 WHERE id = $1 AND updated_at = $2",
            )
            .persistent(self.persistent)
            .bind(&buy.id)
            .bind(seen)
            .bind(&buy.order_name)
            .bind(buy.budget.micros())
            .bind(buy.flight_start)
            .bind(buy.flight_end)
            .bind(buy.status.as_str())
            .bind(buy.paused_from.as_deref())
            .bind(buy.updated_at)
            .bind(buy.approved_budget.map(crate::domain::Amount::micros))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if done == 0 {
                return Ok(None);
            }
            if let Some(workflow) = workflow {
                self.insert_workflow(
                    &mut tx,
                    workflow,
                    buy.tenant_id.as_str(),
                    &buy.id,
                    buy.updated_at,
                )
                .await?;
            }
            Ok(Some(self.commit_with(tx, effects).await?))
        }

        /// Upserts delivery rows unless the buy's total spend, as it will be
        /// after the upsert, would exceed `multiple` times its budget. The
        /// total is summed here in Rust with checked arithmetic (no SQL
        /// `SUM`, which wraps or errors by backend), inside the write
        /// transaction and with the buy's row locked (a no-op update), so two
        /// concurrent posts cannot each pass the cap with the other's rows
        /// unseen.
        pub(super) async fn upsert_delivery(
            &self,
            media_buy_id: &str,
            rows: &[crate::domain::media_buy::DeliveryRow],
            multiple: crate::domain::SpendMultiple,
            now: chrono::DateTime<chrono::Utc>,
            effects: super::domain::Effects<'_>,
        ) -> Result<super::domain::DeliveryWrite, sqlx::Error> {
            let mut tx = self.begin_write().await?;
            let budget: i64 = sqlx::query_scalar(
                "UPDATE media_buys SET updated_at = updated_at WHERE id = $1 RETURNING budget_micros",
            )
            .persistent(self.persistent)
            .bind(media_buy_id)
            .fetch_one(&mut *tx)
            .await?;
            let stored: Vec<crate::domain::media_buy::DeliveryRow> = sqlx::query_as(
                "SELECT package_id, day, impressions, clicks, spend_micros FROM media_buy_delivery \
                 WHERE media_buy_id = $1",
            )
            .persistent(self.persistent)
            .bind(media_buy_id)
            .fetch_all(&mut *tx)
            .await?;
            let before = crate::domain::Amount::checked_sum(stored.iter().map(|r| r.spend));
            let mut after: std::collections::HashMap<(&str, &str), crate::domain::Amount> = stored
                .iter()
                .map(|r| ((r.package_id.as_str(), r.day.as_str()), r.spend))
                .collect();
            for r in rows {
                after.insert((r.package_id.as_str(), r.day.as_str()), r.spend);
            }
            let after = crate::domain::Amount::checked_sum(after.into_values());
            let budget = crate::domain::Amount::from_micros(budget);
            if !multiple.allows(budget, before, after) {
                // Rolled back when `tx` drops.
                return Ok(super::domain::DeliveryWrite::SpendAboveCap {
                    total: after,
                    cap: multiple.cap(budget),
                });
            }
            for r in rows {
                sqlx::query(
                    "INSERT INTO media_buy_delivery (media_buy_id, package_id, day, impressions, \
                     clicks, spend_micros, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (media_buy_id, package_id, day) DO UPDATE SET \
                     impressions = excluded.impressions, clicks = excluded.clicks, \
                     spend_micros = excluded.spend_micros, updated_at = excluded.updated_at",
                )
                .persistent(self.persistent)
                .bind(media_buy_id)
                .bind(&r.package_id)
                .bind(&r.day)
                .bind(r.impressions)
                .bind(r.clicks)
                .bind(r.spend.micros())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            Ok(super::domain::DeliveryWrite::Stored(
                self.commit_with(tx, effects).await?,
            ))
        }

        /// Every active buy with its packages (for the mock adapter).
        pub(super) async fn active_buys(
            &self,
        ) -> Result<Vec<overseer_actors::mock_adapter::ActiveBuy>, sqlx::Error> {
            type Row = (String, chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>, String, i64, String, i64);
            let rows: Vec<Row> = sqlx::query_as(
                "SELECT b.id, b.flight_start, b.flight_end, p.package_id, p.budget_micros, \
                 p.pricing_model, p.rate_micros FROM media_buys b \
                 JOIN media_buy_packages p ON p.media_buy_id = b.id \
                 WHERE b.status = 'active' ORDER BY b.id, p.position",
            )
            .persistent(self.persistent)
            .fetch_all(&self.pool)
            .await?;
            let mut buys: Vec<overseer_actors::mock_adapter::ActiveBuy> = Vec::new();
            for (id, start, end, package_id, budget, model, rate) in rows {
                let package = overseer_actors::mock_adapter::SimPackage {
                    package_id,
                    budget_micros: budget,
                    pricing_model: model,
                    rate_micros: rate,
                };
                match buys.last_mut() {
                    Some(last) if last.media_buy_id == id => last.packages.push(package),
                    _ => buys.push(overseer_actors::mock_adapter::ActiveBuy {
                        media_buy_id: id,
                        flight_start: start,
                        flight_end: end,
                        packages: vec![package],
                    }),
                }
            }
            Ok(buys)
        }

        pub(super) async fn delivery(
            &self,
            media_buy_id: &str,
        ) -> Result<Vec<crate::domain::media_buy::DeliveryRow>, sqlx::Error> {
            sqlx::query_as(
                "SELECT package_id, day, impressions, clicks, spend_micros FROM media_buy_delivery \
                 WHERE media_buy_id = $1 ORDER BY day, package_id",
            )
            .persistent(self.persistent)
            .bind(media_buy_id)
            .fetch_all(&self.pool)
            .await
        }

        // -------------------------------------------------------- creatives

        /// Upserts `creatives` for `principal_id`. Ids are the principal's
        /// own: another principal's creative of the same id is another row.
        pub(super) async fn sync_creatives(
            &self,
            tenant: &crate::domain::TenantId,
            principal_id: &str,
            creatives: &[crate::domain::creative::NewCreative],
            now: chrono::DateTime<chrono::Utc>,
            effects: super::domain::Effects<'_>,
        ) -> Result<
            (Vec<crate::domain::creative::Creative>, Vec<overseer_actors::audit::CommittedEvent>),
            sqlx::Error,
        > {
            let mut tx = self.begin_write().await?;
            let mut synced = Vec::with_capacity(creatives.len());
            for c in creatives {
                let row: crate::domain::creative::Creative = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO creatives (tenant_id, id, principal_id, name, format, url, status, \
                     created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending_review', $7, $7) \
                     ON CONFLICT (tenant_id, principal_id, id) DO UPDATE SET name = excluded.name, \
                     format = excluded.format, url = excluded.url, status = 'pending_review', \
                     review_reason = NULL, updated_at = excluded.updated_at RETURNING {}",
                    super::domain::CREATIVE_COLUMNS
                )))
                .persistent(self.persistent)
                .bind(tenant.as_str())
                .bind(&c.id)
                .bind(principal_id)
                .bind(&c.name)
                .bind(&c.format)
                .bind(&c.url)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                synced.push(row);
            }
            Ok((synced, self.commit_with(tx, effects).await?))
        }

        pub(super) async fn creatives(
            &self,
            tenant: &crate::domain::TenantId,
            principal_id: Option<&str>,
            status: Option<&str>,
            after: Option<(&str, Option<&str>)>,
            limit: u32,
        ) -> Result<Vec<crate::domain::creative::Creative>, sqlx::Error> {
            // By id, then principal: two principals may each have "c1".
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {} FROM creatives WHERE tenant_id = $1 AND ($2 IS NULL OR principal_id = $2) \
                 AND ($3 IS NULL OR status = $3) \
                 AND ($4 IS NULL OR id > $4 OR (id = $4 AND principal_id > $6)) \
                 ORDER BY id, principal_id LIMIT $5",
                super::domain::CREATIVE_COLUMNS
            )))
            .persistent(self.persistent)
            .bind(tenant.as_str())
            .bind(principal_id)
            .bind(status)
            .bind(after.map(|(id, _)| id))
            .bind(i64::from(limit))
            .bind(after.and_then(|(_, principal)| principal))
            .fetch_all(&self.pool)
            .await
        }

        /// The owners of creatives with this id, in every tenant.
        pub(super) async fn creative_owners(
            &self,
            id: &str,
        ) -> Result<Vec<super::domain::Owner>, sqlx::Error> {
            sqlx::query_as("SELECT tenant_id, principal_id FROM creatives WHERE id = $1")
                .persistent(self.persistent)
                .bind(id)
                .fetch_all(&self.pool)
                .await
        }

        pub(super) async fn review_creative(
            &self,
            tenant: &crate::domain::TenantId,
            // The principal whose creative it is, and the creative's id.
            (principal_id, id): (&str, &str),
            status: crate::domain::creative::CreativeStatus,
            reason: Option<&str>,
            now: chrono::DateTime<chrono::Utc>,
            effects: super::domain::Effects<'_>,
        ) -> Result<
            Option<(crate::domain::creative::Creative, Vec<overseer_actors::audit::CommittedEvent>)>,
            sqlx::Error,
        > {
            let mut tx = self.begin_write().await?;
            let row: Option<crate::domain::creative::Creative> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE creatives SET status = $3, review_reason = $4, updated_at = $5 \
                 WHERE tenant_id = $1 AND id = $2 AND principal_id = $6 RETURNING {}",
                super::domain::CREATIVE_COLUMNS
            )))
            .persistent(self.persistent)
            .bind(tenant.as_str())
            .bind(id)
            .bind(status.as_str())
            .bind(reason)
            .bind(now)
            .bind(principal_id)
            .fetch_optional(&mut *tx)
            .await?;
            match row {
                Some(row) => Ok(Some((row, self.commit_with(tx, effects).await?))),
                None => Ok(None),
            }
        }

        // -------------------------------------------------------- workflows

        pub(super) async fn workflows(
            &self,
            tenant: &crate::domain::TenantId,
            status: Option<&str>,
            after: Option<&str>,
            limit: u32,
        ) -> Result<Vec<crate::domain::workflow::WorkflowTask>, sqlx::Error> {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {} FROM workflow_tasks WHERE tenant_id = $1 AND ($2 IS NULL OR status = $2) \
                 AND ($3 IS NULL OR id > $3) ORDER BY id LIMIT $4",
                super::domain::WORKFLOW_COLUMNS
            )))
            .persistent(self.persistent)
            .bind(tenant.as_str())
            .bind(status)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
        }

        pub(super) async fn workflow(
            &self,
            id: &str,
        ) -> Result<Option<crate::domain::workflow::WorkflowTask>, sqlx::Error> {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {} FROM workflow_tasks WHERE id = $1",
                super::domain::WORKFLOW_COLUMNS
            )))
            .persistent(self.persistent)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
        }

        /// Decides a pending task. Approving sets the buy's approved budget
        /// to the amount the task shows and lets it go on
        /// (`pending_approval` → `pending_activation`; a paused buy will
        /// resume there), only while the buy still waits at exactly that
        /// amount: otherwise [`Decided::BuyChanged`] and nothing is written.
        /// Rejecting rejects the buy.
        #[allow(clippy::too_many_arguments)]
        pub(super) async fn decide_workflow(
            &self,
            tenant: &crate::domain::TenantId,
            id: &str,
            decision: crate::domain::workflow::Decision,
            comment: Option<&str>,
            by: &str,
            now: chrono::DateTime<chrono::Utc>,
            effects: super::domain::Effects<'_>,
        ) -> Result<super::domain::Decided, sqlx::Error> {
            let mut tx = self.begin_write().await?;
            let task: Option<crate::domain::workflow::WorkflowTask> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE workflow_tasks SET status = $3, comment = $4, decided_by = $5, decided_at = $6 \
                 WHERE tenant_id = $1 AND id = $2 AND status = 'pending' RETURNING {}",
                super::domain::WORKFLOW_COLUMNS
            )))
            .persistent(self.persistent)
            .bind(tenant.as_str())
            .bind(id)
            .bind(decision.task_status())
            .bind(comment)
            .bind(by)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(task) = task else {
                return Ok(super::domain::Decided::NotPending);
            };
            let waiting = "(status = 'pending_approval' \
                 OR (status = 'paused' AND paused_from = 'pending_approval'))";
            let moved = match decision {
                crate::domain::workflow::Decision::Approve => sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE media_buys SET approved_budget_micros = budget_micros, \
                     status = CASE WHEN status = 'pending_approval' THEN 'pending_activation' \
                         ELSE status END, \
                     paused_from = CASE WHEN status = 'paused' THEN 'pending_activation' \
                         ELSE paused_from END, \
                     updated_at = $2 WHERE id = $1 AND budget_micros = $3 AND {waiting}"
                )))
                .persistent(self.persistent)
                .bind(&task.media_buy_id)
                .bind(now)
                .bind(task.budget.micros())
                .execute(&mut *tx)
                .await?
                .rows_affected(),
                crate::domain::workflow::Decision::Reject => sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE media_buys SET status = 'rejected', paused_from = NULL, updated_at = $2 \
                     WHERE id = $1 AND {waiting}"
                )))
                .persistent(self.persistent)
                .bind(&task.media_buy_id)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
            };
            if moved == 0 && decision == crate::domain::workflow::Decision::Approve {
                // Rolled back when `tx` drops: the task stays pending.
                return Ok(super::domain::Decided::BuyChanged);
            }
            Ok(super::domain::Decided::Done(
                Box::new(task),
                self.commit_with(tx, effects).await?,
            ))
        }
    };
}
pub(super) use domain_queries;
