//! The webhook outbox: buyers' webhook requests queued with the change they
//! announce, claimed with leases, settled attempt by attempt. The same SQL
//! on both backends (generated into each by [`webhook_queries`]).

use chrono::{DateTime, SecondsFormat, Utc};

/// A row to queue.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub tenant_id: String,
    pub config_id: String,
    pub media_buy_id: String,
    pub task_type: &'static str,
    pub idempotency_key: String,
    pub payload: String,
    pub created_at: DateTime<Utc>,
}

/// The AdCP envelope of a status change, compact JSON, frozen at `now`.
pub fn status_change(
    tenant_id: &str,
    config_id: &str,
    media_buy_id: &str,
    to: &str,
    now: DateTime<Utc>,
) -> NewWebhook {
    let idempotency_key = format!("status.{media_buy_id}.{to}.{config_id}");
    let payload = serde_json::json!({
        "idempotency_key": idempotency_key,
        "operation_id": format!("status.{media_buy_id}"),
        "task_id": media_buy_id,
        "task_type": "update_media_buy",
        "protocol": "media-buy",
        "status": "completed",
        "timestamp": now.to_rfc3339_opts(SecondsFormat::Secs, true),
        "result": {"media_buy_id": media_buy_id, "status": to},
    });
    NewWebhook {
        tenant_id: tenant_id.to_owned(),
        config_id: config_id.to_owned(),
        media_buy_id: media_buy_id.to_owned(),
        task_type: "update_media_buy",
        idempotency_key,
        payload: payload.to_string(),
        created_at: now,
    }
}

/// A due row with its config, as the store reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueWebhook {
    pub id: i64,
    pub tenant_id: String,
    pub config_id: String,
    pub media_buy_id: String,
    pub task_type: String,
    pub payload: String,
    pub attempts: i32,
    pub url: String,
    pub authentication_type: String,
    pub authentication_token: Option<String>,
}

/// A row as the API and tests read it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct WebhookRow {
    pub id: i64,
    pub config_id: String,
    pub media_buy_id: String,
    /// `update_media_buy` (status change).
    pub task_type: String,
    pub idempotency_key: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i32,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

macro_rules! webhook_queries {
    () => {
        /// Queues `rows` in `tx` (multi-row INSERTs); a row whose
        /// idempotency key is queued already is left alone.
        async fn queue_webhooks_in(
            &self,
            tx: &mut sqlx::Transaction<'_, Db>,
            rows: &[super::webhooks::NewWebhook],
        ) -> Result<(), sqlx::Error> {
            for chunk in rows.chunks(1_000) {
                let mut qb = sqlx::QueryBuilder::<Db>::new(
                    "INSERT INTO webhook_outbox (tenant_id, config_id, media_buy_id, task_type, \
                     idempotency_key, payload, created_at) ",
                );
                qb.push_values(chunk, |mut row, w| {
                    row.push_bind(w.tenant_id.clone())
                        .push_bind(w.config_id.clone())
                        .push_bind(w.media_buy_id.clone())
                        .push_bind(w.task_type)
                        .push_bind(w.idempotency_key.clone())
                        .push_bind(w.payload.clone())
                        .push_bind(w.created_at);
                });
                qb.push(" ON CONFLICT (idempotency_key) DO NOTHING");
                qb.build().persistent(self.persistent).execute(&mut **tx).await?;
            }
            Ok(())
        }

        /// Active configs `(id, principal_id)` of these principals.
        async fn active_push_configs_in(
            &self,
            tx: &mut sqlx::Transaction<'_, Db>,
            principal_ids: &[String],
        ) -> Result<Vec<(String, String)>, sqlx::Error> {
            if principal_ids.is_empty() {
                return Ok(Vec::new());
            }
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "SELECT id, principal_id FROM push_notification_configs \
                 WHERE status = 'active' AND media_buy_id IS NULL AND principal_id IN (",
            );
            let mut list = qb.separated(", ");
            for id in principal_ids {
                list.push_bind(id.clone());
            }
            qb.push(") ORDER BY id");
            qb.build_query_as()
                .persistent(self.persistent)
                .fetch_all(&mut **tx)
                .await
        }

        pub(super) async fn webhooks_due(
            &self,
            now: chrono::DateTime<chrono::Utc>,
            limit: u32,
        ) -> Result<Vec<super::webhooks::DueWebhook>, sqlx::Error> {
            // Two statements, so the plan does not hang on statistics (right
            // after a bulk enqueue the planner thought the table empty and
            // scanned the pending rows once per config): the due ids in id
            // order from the partial index, skipping configs that are not
            // active (a handful, hashed); then those rows and their configs
            // by primary key.
            let ids: Vec<i64> = sqlx::query_scalar(
                "SELECT id FROM webhook_outbox WHERE status = 'pending' \
                 AND (next_attempt_at IS NULL OR next_attempt_at <= $1) \
                 AND (locked_until IS NULL OR locked_until <= $1) \
                 AND config_id NOT IN \
                     (SELECT id FROM push_notification_configs WHERE status <> 'active') \
                 ORDER BY id LIMIT $2",
            )
            .persistent(self.persistent)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "SELECT w.id, w.tenant_id, w.config_id, w.media_buy_id, w.task_type, w.payload, \
                 w.attempts, c.url, c.authentication_type, c.authentication_token \
                 FROM webhook_outbox w JOIN push_notification_configs c ON c.id = w.config_id \
                 WHERE w.id IN (",
            );
            let mut list = qb.separated(", ");
            for id in &ids {
                list.push_bind(*id);
            }
            qb.push(") ORDER BY w.id");
            qb.build_query_as()
                .persistent(self.persistent)
                .fetch_all(&self.pool)
                .await
        }

        pub(super) async fn webhooks_claim(
            &self,
            ids: &[i64],
            now: chrono::DateTime<chrono::Utc>,
            until: chrono::DateTime<chrono::Utc>,
        ) -> Result<Vec<i64>, sqlx::Error> {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let mut qb = sqlx::QueryBuilder::<Db>::new("UPDATE webhook_outbox SET locked_until = ");
            qb.push_bind(until);
            qb.push(" WHERE status = 'pending' AND (locked_until IS NULL OR locked_until <= ");
            qb.push_bind(now);
            qb.push(") AND id IN (");
            let mut list = qb.separated(", ");
            for id in ids {
                list.push_bind(*id);
            }
            qb.push(") RETURNING id");
            qb.build_query_scalar()
                .persistent(self.persistent)
                .fetch_all(&self.pool)
                .await
        }

        /// Records an attempt and the row's new state; `auth_blocked`
        /// marks the config too. One transaction.
        #[allow(clippy::too_many_arguments)]
        pub(super) async fn webhook_settle(
            &self,
            id: i64,
            config_id: &str,
            attempt: i64,
            status_code: Option<i32>,
            duration_ms: i64,
            error: Option<&str>,
            status: &str,
            next_attempt_at: Option<chrono::DateTime<chrono::Utc>>,
            auth_blocked: bool,
            now: chrono::DateTime<chrono::Utc>,
        ) -> Result<(), sqlx::Error> {
            let mut tx = self.begin_write().await?;
            sqlx::query(
                "INSERT INTO webhook_deliveries (outbox_id, attempt, status_code, duration_ms, \
                 error, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .persistent(self.persistent)
            .bind(id)
            .bind(attempt)
            .bind(status_code)
            .bind(duration_ms)
            .bind(error)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE webhook_outbox SET status = $2, attempts = $3, last_status_code = $4, \
                 last_error = $5, next_attempt_at = $6, locked_until = NULL, \
                 delivered_at = CASE WHEN $2 = 'delivered' THEN $7 ELSE delivered_at END \
                 WHERE id = $1",
            )
            .persistent(self.persistent)
            .bind(id)
            .bind(status)
            .bind(attempt)
            .bind(status_code)
            .bind(error)
            .bind(next_attempt_at)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if auth_blocked {
                sqlx::query(
                    "UPDATE push_notification_configs SET status = 'auth_blocked', updated_at = $2 \
                     WHERE id = $1",
                )
                .persistent(self.persistent)
                .bind(config_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await
        }

        pub(super) async fn webhook_rows(
            &self,
            media_buy_id: &str,
        ) -> Result<Vec<super::webhooks::WebhookRow>, sqlx::Error> {
            sqlx::query_as(
                "SELECT id, config_id, media_buy_id, task_type, idempotency_key, status, attempts, \
                 last_status_code, last_error, created_at, delivered_at \
                 FROM webhook_outbox WHERE media_buy_id = $1 ORDER BY id",
            )
            .persistent(self.persistent)
            .bind(media_buy_id)
            .fetch_all(&self.pool)
            .await
        }

        /// Puts a `failed` request of `media_buy_id` back in the queue, with
        /// a fresh attempt budget; `false` if there is no such failed one.
        pub(super) async fn requeue_webhook(
            &self,
            id: i64,
            media_buy_id: &str,
            effects: super::domain::Effects<'_>,
        ) -> Result<Option<Vec<overseer_actors::audit::CommittedEvent>>, sqlx::Error> {
            let mut tx = self.begin_write().await?;
            let moved = sqlx::query(
                "UPDATE webhook_outbox SET status = 'pending', attempts = 0, next_attempt_at = NULL, \
                 locked_until = NULL WHERE id = $1 AND media_buy_id = $2 AND status = 'failed'",
            )
            .persistent(self.persistent)
            .bind(id)
            .bind(media_buy_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if moved == 0 {
                return Ok(None);
            }
            self.commit_with(tx, effects).await.map(Some)
        }

        /// Releases a claimed row, due at `at`, recording no attempt.
        pub(super) async fn webhook_defer(
            &self,
            id: i64,
            at: chrono::DateTime<chrono::Utc>,
        ) -> Result<(), sqlx::Error> {
            sqlx::query(
                "UPDATE webhook_outbox SET next_attempt_at = $2, locked_until = NULL \
                 WHERE id = $1 AND status = 'pending'",
            )
            .persistent(self.persistent)
            .bind(id)
            .bind(at)
            .execute(&self.pool)
            .await
            .map(drop)
        }

        /// Requests waiting (pending), for the depth gauge.
        pub(super) async fn webhook_depth(&self) -> Result<i64, sqlx::Error> {
            sqlx::query_scalar("SELECT COUNT(*) FROM webhook_outbox WHERE status = 'pending'")
                .persistent(self.persistent)
                .fetch_one(&self.pool)
                .await
        }
    };
}

pub(super) use webhook_queries;
