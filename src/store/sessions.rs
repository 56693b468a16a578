//! Dashboard sessions ended by sign-out, the same SQL on both backends
//! (generated into each by [`session_queries`]). A session lives in its
//! cookie; what the server keeps is only the ids of those signed out before
//! they expired, and only until they would have.

macro_rules! session_queries {
    () => {
        /// Records that session `id`, which would expire at `expires_at`
        /// (Unix seconds), has ended; forgets those that had expired by `now`.
        pub(super) async fn end_session(
            &self,
            id: &str,
            expires_at: i64,
            now: i64,
        ) -> Result<(), sqlx::Error> {
            let mut tx = self.begin_write().await?;
            sqlx::query("DELETE FROM ended_sessions WHERE expires_at <= $1")
                .persistent(self.persistent)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO ended_sessions (session_id, expires_at) VALUES ($1, $2) \
                 ON CONFLICT (session_id) DO NOTHING",
            )
            .persistent(self.persistent)
            .bind(id)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        }

        /// Whether session `id` has been ended.
        pub(super) async fn session_ended(&self, id: &str) -> Result<bool, sqlx::Error> {
            let ended: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM ended_sessions WHERE session_id = $1")
                    .persistent(self.persistent)
                    .bind(id)
                    .fetch_one(&self.pool)
                    .await?;
            Ok(ended > 0)
        }
    };
}
pub(super) use session_queries;
