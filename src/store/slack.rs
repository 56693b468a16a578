//! The Slack router's queries on the notification outbox, the same SQL on
//! both backends (generated into each by [`slack_queries`]).
//!
//! A row is `pending` until the router settles it as `sent`, `failed` or
//! `skipped`. Claims are leases (`locked_until`), taken with a conditional
//! `UPDATE … RETURNING`, so two replicas never post the same row at once and
//! a row claimed by a process that died is taken again when its lease ends.

/// A due outbox row as the store reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PendingRow {
    pub id: i64,
    pub notification_id: String,
    pub tenant_id: Option<String>,
    pub payload: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub attempts: i32,
}

/// One column set an outcome writes; rows with equal updates share a statement.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Settle {
    pub status: &'static str,
    pub attempted: bool,
    pub next_attempt_at: Option<chrono::DateTime<chrono::Utc>>,
    pub error: Option<String>,
}

impl Settle {
    pub(super) fn of(outcome: &overseer_actors::slack::Outcome) -> Self {
        use overseer_actors::slack::Outcome;
        match outcome {
            Outcome::Sent => Self {
                status: "sent",
                attempted: true,
                next_attempt_at: None,
                error: None,
            },
            Outcome::Retry { at, error } => Self {
                status: "pending",
                attempted: true,
                next_attempt_at: Some(*at),
                error: Some(error.clone()),
            },
            Outcome::Deferred { at, error } => Self {
                status: "pending",
                attempted: false,
                next_attempt_at: Some(*at),
                error: Some(error.clone()),
            },
            Outcome::Failed { error } => Self {
                status: "failed",
                attempted: true,
                next_attempt_at: None,
                error: Some(error.clone()),
            },
            Outcome::Skipped { reason } => Self {
                status: "skipped",
                attempted: false,
                next_attempt_at: None,
                error: Some(reason.clone()),
            },
        }
    }
}

/// Groups outcomes by the update they need, in first-seen order.
pub(super) fn settle_groups(
    outcomes: &[(i64, overseer_actors::slack::Outcome)],
) -> Vec<(Settle, Vec<i64>)> {
    let mut groups: Vec<(Settle, Vec<i64>)> = Vec::new();
    for (id, outcome) in outcomes {
        let settle = Settle::of(outcome);
        match groups.iter_mut().find(|(s, _)| *s == settle) {
            Some((_, ids)) => ids.push(*id),
            None => groups.push((settle, vec![*id])),
        }
    }
    groups
}

macro_rules! slack_queries {
    () => {
        pub(super) async fn slack_pending(
            &self,
            now: chrono::DateTime<chrono::Utc>,
            limit: u32,
        ) -> Result<Vec<super::slack::PendingRow>, sqlx::Error> {
            sqlx::query_as(
                "SELECT id, notification_id, tenant_id, payload, created_at, attempts \
                 FROM notification_outbox WHERE status = 'pending' \
                 AND (next_attempt_at IS NULL OR next_attempt_at <= $1) \
                 AND (locked_until IS NULL OR locked_until <= $1) \
                 ORDER BY id LIMIT $2",
            )
            .persistent(self.persistent)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
        }

        pub(super) async fn slack_webhooks(
            &self,
            tenant_ids: &[String],
        ) -> Result<Vec<(String, Option<String>, Option<String>, Option<String>)>, sqlx::Error> {
            if tenant_ids.is_empty() {
                return Ok(Vec::new());
            }
            let mut qb = sqlx::QueryBuilder::<Db>::new(
                "SELECT id, slack_webhook_url, slack_audit_webhook_url, hitl_webhook_url \
                 FROM tenants WHERE id IN (",
            );
            let mut list = qb.separated(", ");
            for id in tenant_ids {
                list.push_bind(id.clone());
            }
            qb.push(")");
            qb.build_query_as()
                .persistent(self.persistent)
                .fetch_all(&self.pool)
                .await
        }

        pub(super) async fn slack_claim(
            &self,
            ids: &[i64],
            now: chrono::DateTime<chrono::Utc>,
            until: chrono::DateTime<chrono::Utc>,
        ) -> Result<Vec<i64>, sqlx::Error> {
            let mut claimed = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(1_000) {
                let mut qb =
                    sqlx::QueryBuilder::<Db>::new("UPDATE notification_outbox SET locked_until = ");
                qb.push_bind(until);
                qb.push(" WHERE status = 'pending' AND (locked_until IS NULL OR locked_until <= ");
                qb.push_bind(now);
                qb.push(") AND id IN (");
                let mut list = qb.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                qb.push(") RETURNING id");
                let rows: Vec<i64> = qb
                    .build_query_scalar()
                    .persistent(self.persistent)
                    .fetch_all(&self.pool)
                    .await?;
                claimed.extend(rows);
            }
            Ok(claimed)
        }

        pub(super) async fn slack_finish(
            &self,
            outcomes: &[(i64, overseer_actors::slack::Outcome)],
            now: chrono::DateTime<chrono::Utc>,
        ) -> Result<(), sqlx::Error> {
            let mut tx = self.begin_write().await?;
            for (settle, ids) in super::slack::settle_groups(outcomes) {
                for chunk in ids.chunks(1_000) {
                    let mut qb =
                        sqlx::QueryBuilder::<Db>::new("UPDATE notification_outbox SET status = ");
                    qb.push_bind(settle.status);
                    qb.push(", locked_until = NULL, next_attempt_at = ");
                    qb.push_bind(settle.next_attempt_at);
                    qb.push(", last_error = ");
                    qb.push_bind(settle.error.clone());
                    if settle.attempted {
                        qb.push(", attempts = attempts + 1");
                    }
                    if settle.status == "sent" {
                        qb.push(", sent_at = ");
                        qb.push_bind(now);
                    }
                    qb.push(" WHERE status = 'pending' AND id IN (");
                    let mut list = qb.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    qb.push(")");
                    qb.build()
                        .persistent(self.persistent)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await
        }

        pub(super) async fn slack_depth(&self) -> Result<i64, sqlx::Error> {
            sqlx::query_scalar("SELECT COUNT(*) FROM notification_outbox WHERE status = 'pending'")
                .persistent(self.persistent)
                .fetch_one(&self.pool)
                .await
        }

        pub(super) async fn outbox_status(
            &self,
            notification_id: &str,
        ) -> Result<Option<(String, i32, Option<String>)>, sqlx::Error> {
            sqlx::query_as(
                "SELECT status, attempts, last_error FROM notification_outbox \
                 WHERE notification_id = $1",
            )
            .persistent(self.persistent)
            .bind(notification_id)
            .fetch_optional(&self.pool)
            .await
        }
    };
}

pub(super) use slack_queries;
