//! Agent runs, the same SQL on both backends (generated into each by
//! [`agent_run_queries`]). JSON columns are bound and read as
//! `sqlx::types::Json` (JSONB on PostgreSQL, text on SQLite).
//!
//! Rules kept here, on both backends:
//! - a start is idempotent on `run_id`: a second start with a taken `run_id`
//!   stores nothing and answers the stored run ([`Started::Existing`]); the
//!   caller decides whether that is a replay or a conflict;
//! - only a `running` run can be finished, once: the update matches
//!   `status = 'running'`, so of two concurrent finishes one wins and the
//!   other sees [`Finished::NotRunning`];
//! - `duration_ms`, when not given, is computed from `started_at` (never
//!   negative, should a clock step back).

use crate::domain::agent_run::AgentRun;

/// The columns of an [`AgentRun`].
pub(super) const AGENT_RUN_COLUMNS: &str = "id, run_id, agent, objective, status, started_at, \
     finished_at, duration_ms, plan, artifacts, error, user_email, dry_run, created_at";

/// What a start did.
#[derive(Debug, Clone, PartialEq)]
pub enum Started {
    Created(AgentRun),
    /// The `run_id` was taken: nothing stored, the stored run.
    Existing(AgentRun),
}

/// What a finish did.
#[derive(Debug, Clone, PartialEq)]
pub enum Finished {
    Finished(AgentRun),
    /// No run has this id.
    NotFound,
    /// The run is finished already (as it is now).
    NotRunning(AgentRun),
}

/// Milliseconds from `started` to `finished`, at least 0.
pub(crate) fn elapsed_ms(
    started: chrono::DateTime<chrono::Utc>,
    finished: chrono::DateTime<chrono::Utc>,
) -> i64 {
    (finished - started).num_milliseconds().max(0)
}

macro_rules! agent_run_queries {
    () => {
        /// Inserts a run as `running` unless its `run_id` is taken.
        pub(super) async fn start_agent_run(
            &self,
            run: &crate::domain::agent_run::NewAgentRun,
        ) -> Result<super::agent_runs::Started, sqlx::Error> {
            let sql = format!(
                "INSERT INTO agent_runs (run_id, agent, objective, status, started_at, plan, \
                 user_email, dry_run, created_at) \
                 VALUES ($1, $2, $3, 'running', $4, $5, $6, $7, $4) \
                 ON CONFLICT (run_id) DO NOTHING RETURNING {}",
                super::agent_runs::AGENT_RUN_COLUMNS
            );
            let created: Option<crate::domain::agent_run::AgentRun> =
                sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .persistent(self.persistent)
                    .bind(&run.run_id)
                    .bind(&run.agent)
                    .bind(&run.objective)
                    .bind(run.started_at)
                    .bind(run.plan.as_ref().map(sqlx::types::Json))
                    .bind(&run.user_email)
                    .bind(run.dry_run)
                    .fetch_optional(&self.pool)
                    .await?;
            if let Some(run) = created {
                return Ok(super::agent_runs::Started::Created(run));
            }
            match self.agent_run(&run.run_id).await? {
                Some(existing) => Ok(super::agent_runs::Started::Existing(existing)),
                // Inserted and gone again: nothing deletes runs, so this is
                // a row the database refused silently; say so.
                None => Err(sqlx::Error::RowNotFound),
            }
        }

        /// Finishes a running run, once.
        pub(super) async fn finish_agent_run(
            &self,
            run_id: &str,
            end: &crate::domain::agent_run::AgentRunEnd,
        ) -> Result<super::agent_runs::Finished, sqlx::Error> {
            use super::agent_runs::Finished;
            let mut tx = self.begin_write().await?;
            let select = format!(
                "SELECT {} FROM agent_runs WHERE run_id = $1",
                super::agent_runs::AGENT_RUN_COLUMNS
            );
            let current: Option<crate::domain::agent_run::AgentRun> =
                sqlx::query_as(sqlx::AssertSqlSafe(select))
                    .persistent(self.persistent)
                    .bind(run_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(current) = current else {
                return Ok(Finished::NotFound);
            };
            if current.status != crate::domain::agent_run::AgentRunStatus::Running {
                return Ok(Finished::NotRunning(current));
            }
            let duration_ms = end.duration_ms.unwrap_or_else(|| {
                super::agent_runs::elapsed_ms(current.started_at, end.finished_at)
            });
            let update = format!(
                "UPDATE agent_runs SET status = $2, finished_at = $3, duration_ms = $4, \
                 artifacts = $5, error = $6 WHERE run_id = $1 AND status = 'running' \
                 RETURNING {}",
                super::agent_runs::AGENT_RUN_COLUMNS
            );
            let finished: Option<crate::domain::agent_run::AgentRun> =
                sqlx::query_as(sqlx::AssertSqlSafe(update))
                    .persistent(self.persistent)
                    .bind(run_id)
                    .bind(end.status.as_str())
                    .bind(end.finished_at)
                    .bind(duration_ms)
                    .bind(end.artifacts.as_ref().map(sqlx::types::Json))
                    .bind(&end.error)
                    .fetch_optional(&mut *tx)
                    .await?;
            match finished {
                Some(run) => {
                    tx.commit().await?;
                    Ok(Finished::Finished(run))
                }
                // Another finish won between the read and the update
                // (PostgreSQL; SQLite's write transaction excludes it).
                None => Ok(Finished::NotRunning(current)),
            }
        }

        pub(super) async fn agent_run(
            &self,
            run_id: &str,
        ) -> Result<Option<crate::domain::agent_run::AgentRun>, sqlx::Error> {
            let sql = format!(
                "SELECT {} FROM agent_runs WHERE run_id = $1",
                super::agent_runs::AGENT_RUN_COLUMNS
            );
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .persistent(self.persistent)
                .bind(run_id)
                .fetch_optional(&self.pool)
                .await
        }

        /// Runs, most recently started first (then by id, newest first),
        /// `limit` of them after the run whose `id` is `after`.
        pub(super) async fn agent_runs(
            &self,
            agent: Option<&str>,
            status: Option<&str>,
            after: Option<i64>,
            limit: u32,
        ) -> Result<Vec<crate::domain::agent_run::AgentRun>, sqlx::Error> {
            let sql = format!(
                "SELECT {} FROM agent_runs WHERE ($1 IS NULL OR agent = $1) \
                 AND ($2 IS NULL OR status = $2) \
                 AND ($3 IS NULL OR (started_at, id) < \
                     (SELECT started_at, id FROM agent_runs WHERE id = $3)) \
                 ORDER BY started_at DESC, id DESC LIMIT $4",
                super::agent_runs::AGENT_RUN_COLUMNS
            );
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .persistent(self.persistent)
                .bind(agent)
                .bind(status)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
        }
    };
}

pub(super) use agent_run_queries;
