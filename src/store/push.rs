//! Push-notification configs, the same SQL on both backends (generated into
//! each by [`push_queries`]).

/// The columns of a [`crate::domain::push_config::PushConfig`].
pub(super) const PUSH_CONFIG_COLUMNS: &str = "id, tenant_id, principal_id, url, \
     authentication_type, authentication_token, status, created_at, updated_at";

macro_rules! push_queries {
    () => {
        /// Stores a config with its effects; `None` if the principal has
        /// `max` configs already.
        pub(super) async fn insert_push_config(
            &self,
            config: &crate::domain::push_config::PushConfig,
            max: usize,
            effects: super::domain::Effects<'_>,
        ) -> Result<Option<Vec<overseer_actors::audit::CommittedEvent>>, sqlx::Error> {
            let mut tx = self.begin_write().await?;
            let count: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM push_notification_configs \
                 WHERE principal_id = $1 AND media_buy_id IS NULL",
            )
            .persistent(self.persistent)
            .bind(&config.principal_id)
            .fetch_one(&mut *tx)
            .await?;
            if count >= max as i64 {
                return Ok(None);
            }
            sqlx::query(
                "INSERT INTO push_notification_configs (id, tenant_id, principal_id, url, \
                 authentication_type, authentication_token, status, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .persistent(self.persistent)
            .bind(&config.id)
            .bind(&config.tenant_id)
            .bind(&config.principal_id)
            .bind(&config.url)
            .bind(&config.authentication_type)
            .bind(&config.authentication_token)
            .bind(&config.status)
            .bind(config.created_at)
            .bind(config.updated_at)
            .execute(&mut *tx)
            .await?;
            self.commit_with(tx, effects).await.map(Some)
        }

        /// A principal's configs, oldest first.
        pub(super) async fn push_configs(
            &self,
            principal_id: &str,
        ) -> Result<Vec<crate::domain::push_config::PushConfig>, sqlx::Error> {
            let sql = format!(
                "SELECT {} FROM push_notification_configs \
                 WHERE principal_id = $1 AND media_buy_id IS NULL ORDER BY created_at, id",
                super::push::PUSH_CONFIG_COLUMNS
            );
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .persistent(self.persistent)
                .bind(principal_id)
                .fetch_all(&self.pool)
                .await
        }

        /// One config, unscoped (the handler checks the owner).
        pub(super) async fn push_config(
            &self,
            id: &str,
        ) -> Result<Option<crate::domain::push_config::PushConfig>, sqlx::Error> {
            let sql = format!(
                "SELECT {} FROM push_notification_configs WHERE id = $1 AND media_buy_id IS NULL",
                super::push::PUSH_CONFIG_COLUMNS
            );
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .persistent(self.persistent)
                .bind(id)
                .fetch_optional(&self.pool)
                .await
        }

        /// Deletes the principal's config; `None` if it has no such config.
        pub(super) async fn delete_push_config(
            &self,
            id: &str,
            principal_id: &str,
            effects: super::domain::Effects<'_>,
        ) -> Result<Option<Vec<overseer_actors::audit::CommittedEvent>>, sqlx::Error> {
            let mut tx = self.begin_write().await?;
            let deleted = sqlx::query(
                "DELETE FROM push_notification_configs \
                 WHERE id = $1 AND principal_id = $2 AND media_buy_id IS NULL",
            )
            .persistent(self.persistent)
            .bind(id)
            .bind(principal_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if deleted == 0 {
                return Ok(None);
            }
            self.commit_with(tx, effects).await.map(Some)
        }
    };
}

pub(super) use push_queries;
