//! Delivery reports: the buys due one, and queueing a report with its
//! sequence number and its duplicate key in one transaction (same SQL on
//! both backends, generated into each by [`report_queries`]).
//!
//! A buy's reporting webhook becomes a push-notification config of its own
//! (`rw-<media buy id>`, with `media_buy_id` set; the API neither lists nor
//! deletes it), so reports go through the same outbox, sender, SSRF guard and
//! `auth_blocked` rule as everything else.

use chrono::{DateTime, Utc};

/// A media buy with a reporting webhook that may be due a report.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReportCandidate {
    pub id: String,
    pub tenant_id: String,
    pub principal_id: String,
    pub status: String,
    pub currency: String,
    pub flight_start: DateTime<Utc>,
    pub flight_end: DateTime<Utc>,
    pub reporting_webhook: String,
}

/// One report to queue; the payload is built once the sequence number is
/// reserved.
pub struct NewReport<'a> {
    pub buy: &'a ReportCandidate,
    /// `rw-<media buy id>`.
    pub config_id: String,
    pub url: String,
    pub authentication_type: &'static str,
    pub authentication_token: Option<String>,
    /// `scheduled` or `final`.
    pub notification_type: &'static str,
    /// `None` for a forced report.
    pub dedup_key: Option<String>,
    pub now: DateTime<Utc>,
}

macro_rules! report_queries {
    () => {
        /// Active buys with a reporting webhook, and those completed since
        /// `completed_since` (for their final report); `only` that buy if given.
        pub(super) async fn report_candidates(
            &self,
            completed_since: chrono::DateTime<chrono::Utc>,
            only: Option<&str>,
        ) -> Result<Vec<super::reports::ReportCandidate>, sqlx::Error> {
            let sql = format!(
                "SELECT id, tenant_id, principal_id, status, currency, flight_start, flight_end, \
                 reporting_webhook FROM media_buys WHERE reporting_webhook IS NOT NULL \
                 AND {} AND (status = 'active' OR (status = 'completed' AND updated_at >= $1)){} \
                 ORDER BY id",
                super::scheduler::ACTIVE_TENANT,
                if only.is_some() { " AND id = $2" } else { "" },
            );
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .persistent(self.persistent)
                .bind(completed_since);
            if let Some(id) = only {
                query = query.bind(id.to_owned());
            }
            query.fetch_all(&self.pool).await
        }

        /// Queues a report unless its duplicate key is taken: reserves the
        /// next sequence number of the buy, builds the payload with it
        /// (`build(sequence) -> (idempotency key, payload)`) and inserts,
        /// with `effects`, in one transaction. `None` when it is a
        /// duplicate. A race with another writer surfaces as a unique
        /// violation (the caller tries again).
        pub(super) async fn queue_report(
            &self,
            report: &super::reports::NewReport<'_>,
            build: &(dyn Fn(i64) -> (String, String) + Send + Sync),
            effects: super::domain::Effects<'_>,
        ) -> Result<Option<(i64, Vec<overseer_actors::audit::CommittedEvent>)>, sqlx::Error> {
            let mut tx = self.begin_write().await?;
            sqlx::query(
                "INSERT INTO push_notification_configs (id, tenant_id, principal_id, url, \
                 authentication_type, authentication_token, status, created_at, updated_at, \
                 media_buy_id) VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $7, $8) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .persistent(self.persistent)
            .bind(&report.config_id)
            .bind(&report.buy.tenant_id)
            .bind(&report.buy.principal_id)
            .bind(&report.url)
            .bind(report.authentication_type)
            .bind(&report.authentication_token)
            .bind(report.now)
            .bind(&report.buy.id)
            .execute(&mut *tx)
            .await?;
            if let Some(key) = &report.dedup_key {
                let taken: Option<i64> =
                    sqlx::query_scalar("SELECT id FROM webhook_outbox WHERE dedup_key = $1")
                        .persistent(self.persistent)
                        .bind(key)
                        .fetch_optional(&mut *tx)
                        .await?;
                if taken.is_some() {
                    return Ok(None);
                }
            }
            let sequence: i64 = sqlx::query_scalar(
                "SELECT CAST(COALESCE(MAX(sequence_number), 0) + 1 AS BIGINT) FROM webhook_outbox \
                 WHERE media_buy_id = $1 AND sequence_number IS NOT NULL",
            )
            .persistent(self.persistent)
            .bind(&report.buy.id)
            .fetch_one(&mut *tx)
            .await?;
            let (idempotency_key, payload) = build(sequence);
            sqlx::query(
                "INSERT INTO webhook_outbox (tenant_id, config_id, media_buy_id, task_type, \
                 idempotency_key, payload, created_at, notification_type, sequence_number, dedup_key) \
                 VALUES ($1, $2, $3, 'media_buy_delivery', $4, $5, $6, $7, $8, $9)",
            )
            .persistent(self.persistent)
            .bind(&report.buy.tenant_id)
            .bind(&report.config_id)
            .bind(&report.buy.id)
            .bind(idempotency_key)
            .bind(payload)
            .bind(report.now)
            .bind(report.notification_type)
            .bind(sequence)
            .bind(&report.dedup_key)
            .execute(&mut *tx)
            .await?;
            let committed = self.commit_with(tx, effects).await?;
            Ok(Some((sequence, committed)))
        }

        /// `(sequence number, notification type, payload)` of a buy's
        /// reports, in sequence.
        pub(super) async fn reports_of(
            &self,
            media_buy_id: &str,
        ) -> Result<Vec<(i64, String, String)>, sqlx::Error> {
            sqlx::query_as(
                "SELECT CAST(sequence_number AS BIGINT), notification_type, payload FROM webhook_outbox \
                 WHERE media_buy_id = $1 AND sequence_number IS NOT NULL ORDER BY sequence_number",
            )
            .persistent(self.persistent)
            .bind(media_buy_id)
            .fetch_all(&self.pool)
            .await
        }
    };
}

pub(super) use report_queries;
