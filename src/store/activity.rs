//! What the activity stream reads from the trail: events after a cursor
//! (replay and resume), the newest events up to a cursor (the backfill of a
//! new connection) and how many events a resume would replay. The same SQL on
//! both backends, generated into each by [`activity_queries`]. Cursors are
//! audit `id`s; the `category` filter is applied by the caller (it is derived
//! from the operation name, not stored).

/// The SQL-side filter of an activity query.
#[derive(Debug, Clone, Default)]
pub struct ActivityQuery {
    /// `None`: every tenant and the system events.
    pub tenant_id: Option<String>,
    pub operations: Vec<String>,
    pub principal_id: Option<String>,
    pub success: Option<bool>,
}

macro_rules! activity_queries {
    () => {
        /// Matching events with `id > after`, oldest first, at most `limit`.
        pub(super) async fn activity_after(
            &self,
            after: i64,
            query: &super::activity::ActivityQuery,
            limit: u32,
        ) -> Result<Vec<overseer_actors::audit::CommittedEvent>, sqlx::Error> {
            let mut qb = sqlx::QueryBuilder::<Db>::new(AUDIT_SELECT);
            qb.push(" AND id > ").push_bind(after);
            super::audit::push_who_and_what!(qb, query);
            qb.push(" ORDER BY id LIMIT ").push_bind(i64::from(limit));
            self.audit_events(qb).await
        }

        /// The newest `limit` matching events with `id <= upto`, newest first.
        pub(super) async fn activity_latest(
            &self,
            upto: i64,
            query: &super::activity::ActivityQuery,
            limit: u32,
        ) -> Result<Vec<overseer_actors::audit::CommittedEvent>, sqlx::Error> {
            let mut qb = sqlx::QueryBuilder::<Db>::new(AUDIT_SELECT);
            qb.push(" AND id <= ").push_bind(upto);
            super::audit::push_who_and_what!(qb, query);
            qb.push(" ORDER BY id DESC LIMIT ")
                .push_bind(i64::from(limit));
            self.audit_events(qb).await
        }

        /// How many matching events have `id > after`, counting no further
        /// than `cap`.
        pub(super) async fn activity_count_after(
            &self,
            after: i64,
            query: &super::activity::ActivityQuery,
            cap: u32,
        ) -> Result<i64, sqlx::Error> {
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "SELECT COUNT(*) FROM (SELECT 1 FROM audit_logs WHERE id > ",
            );
            qb.push_bind(after);
            super::audit::push_who_and_what!(qb, query);
            qb.push(" LIMIT ")
                .push_bind(i64::from(cap))
                .push(") AS capped");
            qb.build_query_scalar()
                .persistent(self.persistent)
                .fetch_one(&self.pool)
                .await
        }

        /// The newest audit id (0 for an empty trail).
        pub(super) async fn max_audit_id(&self) -> Result<i64, sqlx::Error> {
            sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM audit_logs")
                .persistent(self.persistent)
                .fetch_one(&self.pool)
                .await
        }

        /// Events with `id` in `from..=to`, oldest first (what a NOTIFY
        /// announced).
        pub(super) async fn audit_range(
            &self,
            from: i64,
            to: i64,
        ) -> Result<Vec<overseer_actors::audit::CommittedEvent>, sqlx::Error> {
            let mut qb = sqlx::QueryBuilder::<Db>::new(AUDIT_SELECT);
            qb.push(" AND id >= ")
                .push_bind(from)
                .push(" AND id <= ")
                .push_bind(to)
                .push(" ORDER BY id");
            self.audit_events(qb).await
        }
    };
}
pub(super) use activity_queries;
