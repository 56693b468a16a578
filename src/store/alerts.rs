//! The alert rules' counts and the `alerts` table (see
//! `overseer_actors::alerts`), the same SQL on both backends (generated into
//! each by [`alert_queries`]).
//!
//! Counts are grouped in SQL over indexed ranges (`audit_logs.created_at`,
//! `workflow_tasks (tenant_id, status, created_at)`, `agent_runs.status`);
//! what crosses a threshold is decided in the actors crate. A write to
//! `alerts` commits its outbox row and audit row in the same transaction and
//! only applies if the episode's `revision` is still the one read.

use chrono::{DateTime, Utc};
use overseer_actors::alerts::{Alert, AlertState};

/// Audit operations that are not "operations" for `high_error_rate`:
/// authentication decisions (they have their own rule and would double every
/// request), derived security rows, and the alerts' own rows.
pub(super) const NOT_OPERATIONS: &str = "'token_validated', 'token_rejected', 'token_expired', \
     'sso_login_failed', 'security_violation', 'alert_fired', 'alert_resolved'";

/// The operations `auth_failure_spike` counts.
pub(super) const AUTH_FAILURES: &str = "'token_rejected', 'token_expired', 'sso_login_failed'";

pub(super) const ALERT_COLUMNS: &str = "id, rule, scope, tenant_id, severity, channel, state, \
     since, fired_at, last_notified_at, notifications, value, threshold, summary, resolved_at, \
     updated_at, revision";

/// An `alerts` row as the store reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct AlertRow {
    pub id: i64,
    pub rule: String,
    pub scope: String,
    pub tenant_id: Option<String>,
    pub severity: String,
    pub channel: String,
    pub state: String,
    pub since: DateTime<Utc>,
    pub fired_at: Option<DateTime<Utc>>,
    pub last_notified_at: Option<DateTime<Utc>>,
    pub notifications: i32,
    pub value: f64,
    pub threshold: f64,
    pub summary: String,
    pub resolved_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub revision: i64,
}

impl From<AlertRow> for Alert {
    fn from(r: AlertRow) -> Self {
        Alert {
            id: r.id,
            rule: r.rule,
            scope: r.scope,
            tenant_id: r.tenant_id,
            severity: r.severity,
            channel: r.channel,
            // The CHECK constraint allows nothing else.
            state: AlertState::parse(&r.state).unwrap_or(AlertState::Resolved),
            since: r.since,
            fired_at: r.fired_at,
            last_notified_at: r.last_notified_at,
            notifications: r.notifications,
            value: r.value,
            threshold: r.threshold,
            summary: r.summary,
            resolved_at: r.resolved_at,
            updated_at: r.updated_at,
            revision: r.revision,
        }
    }
}

/// A run longer than the limit: `(agent, run_id, status, started_at, duration_ms)`.
pub(super) type SlowRow = (String, String, String, DateTime<Utc>, Option<i64>);

/// Slow runs per agent: how many, the longest (a running run counts its age
/// so far), and one run id.
pub(super) fn slow_runs(
    rows: Vec<SlowRow>,
    now: DateTime<Utc>,
) -> Vec<overseer_actors::alerts::SlowRuns> {
    let mut out: Vec<overseer_actors::alerts::SlowRuns> = Vec::new();
    for (agent, run_id, status, started_at, duration_ms) in rows {
        let ms = match (status.as_str(), duration_ms) {
            ("running", _) | (_, None) => (now - started_at).num_milliseconds(),
            (_, Some(ms)) => ms,
        };
        match out.iter_mut().find(|s| s.agent == agent) {
            Some(s) => {
                s.runs += 1;
                if ms > s.longest_ms {
                    s.longest_ms = ms;
                    s.run_id = run_id;
                }
            }
            None => out.push(overseer_actors::alerts::SlowRuns {
                agent,
                runs: 1,
                longest_ms: ms,
                run_id,
            }),
        }
    }
    out
}

macro_rules! alert_queries {
    () => {
        /// `(tenant, failed, total)` of audited operations in `(since, until]`.
        pub(super) async fn alert_operations(
            &self,
            since: chrono::DateTime<chrono::Utc>,
            until: chrono::DateTime<chrono::Utc>,
        ) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
            let sql = format!(
                "SELECT tenant_id, SUM(CASE WHEN success THEN 0 ELSE 1 END), COUNT(*) \
                 FROM audit_logs WHERE created_at > $1{TIMESTAMP_CAST} \
                 AND created_at <= $2{TIMESTAMP_CAST} AND tenant_id IS NOT NULL \
                 AND operation NOT IN ({}) GROUP BY tenant_id",
                super::alerts::NOT_OPERATIONS
            );
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .persistent(self.persistent)
                .bind(super::audit::timestamp(since))
                .bind(super::audit::timestamp(until))
                .fetch_all(&self.pool)
                .await
        }

        /// `(tenant, count)` of failed `create_media_buy` in `(since, until]`.
        pub(super) async fn alert_media_buy_failures(
            &self,
            since: chrono::DateTime<chrono::Utc>,
            until: chrono::DateTime<chrono::Utc>,
        ) -> Result<Vec<(String, i64)>, sqlx::Error> {
            let sql = format!(
                "SELECT tenant_id, COUNT(*) FROM audit_logs \
                 WHERE created_at > $1{TIMESTAMP_CAST} AND created_at <= $2{TIMESTAMP_CAST} \
                 AND tenant_id IS NOT NULL AND operation = 'create_media_buy' AND NOT success \
                 GROUP BY tenant_id"
            );
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .persistent(self.persistent)
                .bind(super::audit::timestamp(since))
                .bind(super::audit::timestamp(until))
                .fetch_all(&self.pool)
                .await
        }

        /// `(tenant or '', count)` of authentication failures in `(since, until]`.
        pub(super) async fn alert_auth_failures(
            &self,
            since: chrono::DateTime<chrono::Utc>,
            until: chrono::DateTime<chrono::Utc>,
        ) -> Result<Vec<(String, i64)>, sqlx::Error> {
            let sql = format!(
                "SELECT COALESCE(tenant_id, ''), COUNT(*) FROM audit_logs \
                 WHERE created_at > $1{TIMESTAMP_CAST} AND created_at <= $2{TIMESTAMP_CAST} \
                 AND operation IN ({}) GROUP BY COALESCE(tenant_id, '')",
                super::alerts::AUTH_FAILURES
            );
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .persistent(self.persistent)
                .bind(super::audit::timestamp(since))
                .bind(super::audit::timestamp(until))
                .fetch_all(&self.pool)
                .await
        }

        /// `(tenant, count)` of workflow tasks pending since before `before`.
        pub(super) async fn alert_pending_approvals(
            &self,
            before: chrono::DateTime<chrono::Utc>,
        ) -> Result<Vec<(String, i64)>, sqlx::Error> {
            sqlx::query_as(
                "SELECT tenant_id, COUNT(*) FROM workflow_tasks \
                 WHERE status = 'pending' AND created_at < $1 GROUP BY tenant_id",
            )
            .persistent(self.persistent)
            .bind(before)
            .fetch_all(&self.pool)
            .await
        }

        /// Runs running since before `started_before`, or finished in
        /// `(finished_since, now]` after more than `slow_ms`.
        pub(super) async fn alert_slow_runs(
            &self,
            started_before: chrono::DateTime<chrono::Utc>,
            finished_since: chrono::DateTime<chrono::Utc>,
            now: chrono::DateTime<chrono::Utc>,
            slow_ms: i64,
        ) -> Result<Vec<super::alerts::SlowRow>, sqlx::Error> {
            sqlx::query_as(
                "SELECT agent, run_id, status, started_at, duration_ms FROM agent_runs \
                 WHERE (status = 'running' AND started_at < $1) \
                 OR (status <> 'running' AND finished_at > $2 AND finished_at <= $3 \
                     AND duration_ms > $4) \
                 ORDER BY agent, run_id",
            )
            .persistent(self.persistent)
            .bind(started_before)
            .bind(finished_since)
            .bind(now)
            .bind(slow_ms)
            .fetch_all(&self.pool)
            .await
        }

        /// `(agent, succeeded, finished)` of runs finished in `(since, until]`.
        pub(super) async fn alert_agent_runs(
            &self,
            since: chrono::DateTime<chrono::Utc>,
            until: chrono::DateTime<chrono::Utc>,
        ) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
            sqlx::query_as(
                "SELECT agent, SUM(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END), COUNT(*) \
                 FROM agent_runs WHERE status <> 'running' AND finished_at > $1 \
                 AND finished_at <= $2 GROUP BY agent",
            )
            .persistent(self.persistent)
            .bind(since)
            .bind(until)
            .fetch_all(&self.pool)
            .await
        }

        /// Unresolved episodes (`tenant`: only that tenant's).
        pub(super) async fn current_alerts(
            &self,
            tenant: Option<&str>,
        ) -> Result<Vec<overseer_actors::alerts::Alert>, sqlx::Error> {
            let sql = format!(
                "SELECT {} FROM alerts WHERE state <> 'resolved' \
                 AND ($1 IS NULL OR tenant_id = $1) ORDER BY since, id",
                super::alerts::ALERT_COLUMNS
            );
            let rows: Vec<super::alerts::AlertRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .persistent(self.persistent)
                .bind(tenant)
                .fetch_all(&self.pool)
                .await?;
            Ok(rows.into_iter().map(Into::into).collect())
        }

        /// The `limit` most recently resolved episodes (`tenant`: only its).
        pub(super) async fn resolved_alerts(
            &self,
            tenant: Option<&str>,
            limit: u32,
        ) -> Result<Vec<overseer_actors::alerts::Alert>, sqlx::Error> {
            let sql = format!(
                "SELECT {} FROM alerts WHERE state = 'resolved' \
                 AND ($1 IS NULL OR tenant_id = $1) ORDER BY updated_at DESC, id DESC LIMIT $2",
                super::alerts::ALERT_COLUMNS
            );
            let rows: Vec<super::alerts::AlertRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .persistent(self.persistent)
                .bind(tenant)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
            Ok(rows.into_iter().map(Into::into).collect())
        }

        /// Applies one change to `alerts` with its effects, in one
        /// transaction; `None` (nothing written) when the episode is not the
        /// one read any more.
        pub(super) async fn apply_alert(
            &self,
            change: &overseer_actors::alerts::AlertChange,
            effects: super::domain::Effects<'_>,
        ) -> Result<Option<Vec<overseer_actors::audit::CommittedEvent>>, sqlx::Error> {
            use overseer_actors::alerts::AlertChange;
            let mut tx = self.begin_write().await?;
            let applied = match change {
                AlertChange::Insert(a) => {
                    let inserted = sqlx::query(
                        "INSERT INTO alerts (rule, scope, tenant_id, severity, channel, state, \
                         since, fired_at, last_notified_at, notifications, value, threshold, \
                         summary, resolved_at, updated_at, revision) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 0)",
                    )
                    .persistent(self.persistent)
                    .bind(&a.rule)
                    .bind(&a.scope)
                    .bind(a.tenant_id.as_deref())
                    .bind(&a.severity)
                    .bind(&a.channel)
                    .bind(a.state.as_str())
                    .bind(a.since)
                    .bind(a.fired_at)
                    .bind(a.last_notified_at)
                    .bind(a.notifications)
                    .bind(a.value)
                    .bind(a.threshold)
                    .bind(&a.summary)
                    .bind(a.resolved_at)
                    .bind(a.updated_at)
                    .execute(&mut *tx)
                    .await;
                    match inserted {
                        Ok(_) => true,
                        // Another replica opened this episode first.
                        Err(sqlx::Error::Database(db))
                            if db.kind() == sqlx::error::ErrorKind::UniqueViolation =>
                        {
                            false
                        }
                        Err(err) => return Err(err),
                    }
                }
                AlertChange::Update { alert: a, revision } => {
                    sqlx::query(
                        "UPDATE alerts SET state = $3, fired_at = $4, last_notified_at = $5, \
                         notifications = $6, value = $7, summary = $8, resolved_at = $9, \
                         updated_at = $10, revision = revision + 1 \
                         WHERE id = $1 AND revision = $2",
                    )
                    .persistent(self.persistent)
                    .bind(a.id)
                    .bind(*revision)
                    .bind(a.state.as_str())
                    .bind(a.fired_at)
                    .bind(a.last_notified_at)
                    .bind(a.notifications)
                    .bind(a.value)
                    .bind(&a.summary)
                    .bind(a.resolved_at)
                    .bind(a.updated_at)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        == 1
                }
                AlertChange::Delete { id, revision } => {
                    sqlx::query(
                        "DELETE FROM alerts WHERE id = $1 AND revision = $2 AND state = 'pending'",
                    )
                    .persistent(self.persistent)
                    .bind(*id)
                    .bind(*revision)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        == 1
                }
            };
            if !applied {
                tx.rollback().await?;
                return Ok(None);
            }
            Ok(Some(self.commit_with(tx, effects).await?))
        }
    };
}

pub(super) use alert_queries;

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn slow_runs_count_running_runs_by_their_age_and_keep_the_longest() {
        let now = Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap();
        let rows = vec![
            (
                "a".to_owned(),
                "r1".to_owned(),
                "succeeded".to_owned(),
                now,
                Some(400_000),
            ),
            (
                "a".to_owned(),
                "r2".to_owned(),
                "running".to_owned(),
                now - chrono::Duration::minutes(10),
                None,
            ),
            (
                "b".to_owned(),
                "r3".to_owned(),
                "failed".to_owned(),
                now,
                Some(301_000),
            ),
        ];
        let slow = slow_runs(rows, now);
        assert_eq!(slow.len(), 2);
        assert_eq!((slow[0].runs, slow[0].longest_ms), (2, 600_000));
        assert_eq!(slow[0].run_id, "r2");
        assert_eq!((slow[1].agent.as_str(), slow[1].runs), ("b", 1));
    }
}
