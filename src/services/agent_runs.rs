//! Recording agent runs: the one path behind `POST /api/v1/agent-runs` (and
//! its finish) and behind the service's own timer actors
//! ([`overseer_actors::agent_run::RunRecorder`]).
//!
//! Each start and finish the service accepts:
//! - is stored in `agent_runs` (unless `AGENT_AUDIT_ENABLED=false`);
//! - is audited as `agent_run_started` / `agent_run_finished` (system
//!   chain, `Source::Internal`, through the batcher, so it reaches the
//!   activity stream once committed; a failed run's event has
//!   `success = false`);
//! - a finish is counted: `agent_runs_total{agent,status}` and
//!   `agent_run_latency_ms{agent}`. A start is not counted: the counter's
//!   statuses are the three ends, so `failed / total` is a failure rate and
//!   the sum is the number of finished runs.
//!
//! **A failure to record never fails the caller.** With the database
//! unavailable (or any other store error) a start or finish is answered as
//! accepted but not recorded ([`NotRecorded::DatabaseUnavailable`]), a
//! warning is logged, the metrics still count, and the audit event still
//! goes to the audit path (which spools it until the database returns).
//! With `AGENT_AUDIT_ENABLED=false` nothing is stored and nothing audited
//! ([`NotRecorded::Disabled`]); the metrics still count.
//!
//! A finish names no agent, so the agent (for the metrics label) and the
//! start time (for a computed duration) of runs started in this process are
//! remembered (at most [`MAX_REMEMBERED`], oldest forgotten first) for the
//! finishes the database cannot answer; an unknown one is counted as agent
//! `unknown`, without a latency.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use overseer_actors::Clock;
use overseer_actors::agent_run::{Recording, RunEnd, RunRecorder, RunStart};
use overseer_actors::audit::{AuditEvent, Auditor, Redactor, Source};
use serde_json::json;

use crate::domain::agent_run::{
    AgentRun, AgentRunEnd, AgentRunStatus, NewAgentRun, agent_name, json_document, objective,
    truncate_error,
};
use crate::store::agent_runs::{Finished, Started, elapsed_ms};
use crate::store::{Store, StoreError};

/// Runs remembered for finishes the database cannot answer.
pub const MAX_REMEMBERED: usize = 10_000;

/// Distinct `agent` label values; later agents are counted as `other`.
pub const MAX_AGENT_LABELS: usize = 200;

/// Why a start or finish was accepted but not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRecorded {
    /// `AGENT_AUDIT_ENABLED=false`.
    Disabled,
    /// The store could not take it (unreachable, timed out, refused).
    DatabaseUnavailable,
    /// A finish of a run whose start was not stored either.
    StartNotRecorded,
}

impl NotRecorded {
    pub fn as_str(self) -> &'static str {
        match self {
            NotRecorded::Disabled => "disabled",
            NotRecorded::DatabaseUnavailable => "database_unavailable",
            NotRecorded::StartNotRecorded => "start_not_recorded",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum StartOutcome {
    Created(AgentRun),
    /// The same `run_id` and agent were started before: the stored run,
    /// nothing stored, audited or counted again.
    Replayed(AgentRun),
    /// Another agent's run has this `run_id`.
    Conflict(AgentRun),
    NotRecorded {
        run: NewAgentRun,
        reason: NotRecorded,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum FinishOutcome {
    Finished(AgentRun),
    NotFound,
    /// Finished already: the run as it is.
    NotRunning(AgentRun),
    NotRecorded {
        run_id: String,
        /// `None` when this process did not see the start.
        agent: Option<String>,
        status: AgentRunStatus,
        duration_ms: Option<i64>,
        finished_at: DateTime<Utc>,
        reason: NotRecorded,
    },
}

/// Who records: the audit event's principal.
#[derive(Debug, Clone)]
pub struct By {
    pub principal_id: String,
    pub principal_name: Option<String>,
    pub ip: Option<String>,
}

impl By {
    /// One of the service's own actors, named by its agent name.
    pub fn internal(agent: &str) -> Self {
        Self {
            principal_id: agent.to_owned(),
            principal_name: Some("Overseer".to_owned()),
            ip: None,
        }
    }
}

/// What producers hold. Cheap to clone.
#[derive(Clone)]
pub struct AgentRuns {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AgentRuns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentRuns")
            .field("enabled", &self.inner.enabled)
            .finish_non_exhaustive()
    }
}

struct Inner {
    store: Store,
    auditor: Auditor,
    clock: Arc<dyn Clock>,
    enabled: bool,
    redactor: Redactor,
    remembered: Mutex<Remembered>,
    labels: Mutex<HashSet<String>>,
}

/// A run this process saw start.
#[derive(Debug, Clone)]
struct Seen {
    agent: String,
    started_at: DateTime<Utc>,
    recorded: bool,
}

/// Runs by id, forgetting the oldest past [`MAX_REMEMBERED`].
#[derive(Default)]
struct Remembered {
    runs: HashMap<String, Seen>,
    /// Insertion order; ids already forgotten are skipped when evicting.
    order: VecDeque<String>,
}

impl Remembered {
    fn insert(&mut self, run_id: &str, seen: Seen) {
        if self.runs.insert(run_id.to_owned(), seen).is_none() {
            self.order.push_back(run_id.to_owned());
        }
        while self.runs.len() > MAX_REMEMBERED {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.runs.remove(&oldest);
                }
                None => break,
            }
        }
        // Finished runs leave their ids behind in `order`; drop them now
        // and then so it stays bounded too.
        if self.order.len() > 2 * MAX_REMEMBERED {
            let runs = &self.runs;
            self.order.retain(|id| runs.contains_key(id));
        }
    }

    fn take(&mut self, run_id: &str) -> Option<Seen> {
        self.runs.remove(run_id)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl AgentRuns {
    pub fn new(
        store: Store,
        auditor: Auditor,
        clock: Arc<dyn Clock>,
        enabled: bool,
        redactor: Redactor,
    ) -> Self {
        metrics::describe_counter!(
            "agent_runs_total",
            "Agent runs finished, by agent and status (succeeded, failed, canceled)"
        );
        metrics::describe_histogram!(
            "agent_run_latency_ms",
            metrics::Unit::Milliseconds,
            "How long agent runs took, in milliseconds, by agent"
        );
        Self {
            inner: Arc::new(Inner {
                store,
                auditor,
                clock,
                enabled,
                redactor,
                remembered: Mutex::default(),
                labels: Mutex::default(),
            }),
        }
    }

    /// `AGENT_AUDIT_ENABLED`.
    pub fn enabled(&self) -> bool {
        self.inner.enabled
    }

    /// How plans and artifacts are redacted (as audit details are).
    pub fn redactor(&self) -> &Redactor {
        &self.inner.redactor
    }

    /// The port the actors record through (the status and delivery
    /// schedulers; the alert evaluator can take the same).
    pub fn recorder(&self) -> Arc<dyn RunRecorder> {
        Arc::new(self.clone())
    }

    /// Records a start. Never fails: see [`StartOutcome`].
    pub async fn start(&self, run: NewAgentRun, by: &By) -> StartOutcome {
        let inner = &self.inner;
        let mut seen = Seen {
            agent: run.agent.clone(),
            started_at: run.started_at,
            recorded: false,
        };
        if !inner.enabled {
            lock(&inner.remembered).insert(&run.run_id, seen);
            return StartOutcome::NotRecorded {
                run,
                reason: NotRecorded::Disabled,
            };
        }
        match inner.store.start_agent_run(&run).await {
            Ok(Started::Created(stored)) => {
                seen.recorded = true;
                lock(&inner.remembered).insert(&run.run_id, seen);
                self.audit_started(&run, by);
                StartOutcome::Created(stored)
            }
            Ok(Started::Existing(existing)) if existing.agent == run.agent => {
                StartOutcome::Replayed(existing)
            }
            Ok(Started::Existing(existing)) => StartOutcome::Conflict(existing),
            Err(err) => {
                not_recorded("start", &run.run_id, &run.agent, &err);
                lock(&inner.remembered).insert(&run.run_id, seen);
                self.audit_started(&run, by);
                StartOutcome::NotRecorded {
                    run,
                    reason: NotRecorded::DatabaseUnavailable,
                }
            }
        }
    }

    /// Records a finish. Never fails: see [`FinishOutcome`].
    pub async fn finish(&self, run_id: &str, end: AgentRunEnd, by: &By) -> FinishOutcome {
        let inner = &self.inner;
        let seen = lock(&inner.remembered).take(run_id);
        let unrecorded = |reason: NotRecorded| {
            let duration_ms = end.duration_ms.or_else(|| {
                seen.as_ref()
                    .map(|s| elapsed_ms(s.started_at, end.finished_at))
            });
            let agent = seen.as_ref().map(|s| s.agent.clone());
            self.count(
                agent.as_deref().unwrap_or("unknown"),
                end.status,
                duration_ms,
            );
            FinishOutcome::NotRecorded {
                run_id: run_id.to_owned(),
                agent,
                status: end.status,
                duration_ms,
                finished_at: end.finished_at,
                reason,
            }
        };
        if !inner.enabled {
            return unrecorded(NotRecorded::Disabled);
        }
        match inner.store.finish_agent_run(run_id, &end).await {
            Ok(Finished::Finished(run)) => {
                self.count(&run.agent, run.status, run.duration_ms);
                self.audit_finished(&run.run_id, &run.agent, &end, run.duration_ms, by);
                FinishOutcome::Finished(run)
            }
            // Started while the database was away: nothing to finish there.
            Ok(Finished::NotFound) if seen.as_ref().is_some_and(|s| !s.recorded) => {
                let outcome = unrecorded(NotRecorded::StartNotRecorded);
                if let FinishOutcome::NotRecorded {
                    agent: Some(agent),
                    duration_ms,
                    ..
                } = &outcome
                {
                    self.audit_finished(run_id, agent, &end, *duration_ms, by);
                }
                outcome
            }
            Ok(Finished::NotFound) => FinishOutcome::NotFound,
            Ok(Finished::NotRunning(run)) => FinishOutcome::NotRunning(run),
            Err(err) => {
                let agent = seen.as_ref().map_or("unknown", |s| s.agent.as_str());
                not_recorded("finish", run_id, agent, &err);
                let outcome = unrecorded(NotRecorded::DatabaseUnavailable);
                if let FinishOutcome::NotRecorded {
                    agent, duration_ms, ..
                } = &outcome
                {
                    let agent = agent.as_deref().unwrap_or("unknown");
                    self.audit_finished(run_id, agent, &end, *duration_ms, by);
                }
                outcome
            }
        }
    }

    /// `agent_runs_total` and `agent_run_latency_ms`, for one finish.
    fn count(&self, agent: &str, status: AgentRunStatus, duration_ms: Option<i64>) {
        let agent = self.label(agent);
        metrics::counter!("agent_runs_total", "agent" => agent.clone(), "status" => status.as_str())
            .increment(1);
        if let Some(ms) = duration_ms {
            metrics::histogram!("agent_run_latency_ms", "agent" => agent).record(ms as f64);
        }
    }

    /// The `agent` label: the name itself for the first
    /// [`MAX_AGENT_LABELS`] agents, `other` after that.
    fn label(&self, agent: &str) -> String {
        let mut labels = lock(&self.inner.labels);
        if labels.contains(agent) {
            return agent.to_owned();
        }
        if labels.len() < MAX_AGENT_LABELS {
            labels.insert(agent.to_owned());
            return agent.to_owned();
        }
        drop(labels);
        tracing::warn!(
            agent,
            max = MAX_AGENT_LABELS,
            "too many distinct agents for the metrics; counted as `other`"
        );
        "other".to_owned()
    }

    fn audit_started(&self, run: &NewAgentRun, by: &By) {
        let event = self.event("agent_run_started", by).with_details(json!({
            "run_id": run.run_id,
            "agent": run.agent,
            "status": AgentRunStatus::Running.as_str(),
            "objective": run.objective,
            "dry_run": run.dry_run,
        }));
        self.inner.auditor.record(Source::Internal, event);
    }

    fn audit_finished(
        &self,
        run_id: &str,
        agent: &str,
        end: &AgentRunEnd,
        duration_ms: Option<i64>,
        by: &By,
    ) {
        let mut event = self.event("agent_run_finished", by).with_details(json!({
            "run_id": run_id,
            "agent": agent,
            "status": end.status.as_str(),
            "duration_ms": duration_ms,
        }));
        if end.status == AgentRunStatus::Failed {
            event = event.failed(end.error.clone().unwrap_or_else(|| "the run failed".into()));
        }
        self.inner.auditor.record(Source::Internal, event);
    }

    fn event(&self, operation: &str, by: &By) -> AuditEvent {
        let mut event = AuditEvent::new(operation, self.inner.clock.now())
            .with_principal(by.principal_id.clone(), by.principal_name.clone());
        event.ip_address = by.ip.clone();
        event
    }

    /// An actor's start, checked like an API caller's; `None` (logged) if
    /// it does not pass.
    fn internal_start(&self, run: RunStart) -> Option<NewAgentRun> {
        let checked = (|| {
            Ok::<_, crate::domain::InvalidField>(NewAgentRun {
                run_id: crate::domain::agent_run::run_id(&run.run_id)?,
                agent: agent_name("agent", &run.agent)?,
                objective: objective(&run.objective)?,
                plan: run.plan.map(|p| self.internal_document("plan", p)),
                user_email: None,
                dry_run: run.dry_run,
                started_at: crate::domain::time::timestamp("started_at", run.started_at)?,
            })
        })();
        checked
            .map_err(|e| {
                tracing::warn!(agent = %run.agent, error = %e, "an actor's agent run was not recorded");
            })
            .ok()
    }

    fn internal_end(&self, end: RunEnd) -> AgentRunEnd {
        AgentRunEnd {
            status: end.status.into(),
            artifacts: end
                .artifacts
                .map(|a| self.internal_document("artifacts", a)),
            error: end.error.map(truncate_error),
            duration_ms: end
                .duration_ms
                .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
            finished_at: overseer_actors::audit::event::truncate_to_micros(self.inner.clock.now()),
        }
    }

    /// An actor's plan or artifacts: redacted; one that is not an object or
    /// array, or is too large, is replaced by a note saying so.
    fn internal_document(
        &self,
        field: &'static str,
        value: serde_json::Value,
    ) -> serde_json::Value {
        json_document(field, value, &self.inner.redactor)
            .unwrap_or_else(|e| json!({"omitted": e.message}))
    }
}

/// One warning per start or finish the store could not take; the reason
/// is the store's short one (no URL, no credentials).
fn not_recorded(what: &str, run_id: &str, agent: &str, err: &StoreError) {
    tracing::warn!(
        run_id,
        agent,
        reason = %err.short_reason(),
        "agent run {what} not recorded; the caller was answered anyway"
    );
}

impl RunRecorder for AgentRuns {
    fn started(&self, run: RunStart) -> Recording {
        let this = self.clone();
        Box::pin(async move {
            if let Some(run) = this.internal_start(run) {
                let by = By::internal(&run.agent);
                this.start(run, &by).await;
            }
        })
    }

    fn finished(&self, run_id: String, end: RunEnd) -> Recording {
        let this = self.clone();
        Box::pin(async move {
            let agent = lock(&this.inner.remembered)
                .runs
                .get(&run_id)
                .map(|s| s.agent.clone());
            let by = By::internal(agent.as_deref().unwrap_or("overseer"));
            let end = this.internal_end(end);
            this.finish(&run_id, end, &by).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(agent: &str) -> Seen {
        Seen {
            agent: agent.to_owned(),
            started_at: Utc::now(),
            recorded: true,
        }
    }

    #[test]
    fn remembered_runs_are_bounded_oldest_first() {
        let mut remembered = Remembered::default();
        for i in 0..MAX_REMEMBERED + 5 {
            remembered.insert(&format!("r{i}"), seen("a"));
        }
        assert_eq!(remembered.runs.len(), MAX_REMEMBERED);
        assert!(remembered.take("r0").is_none());
        assert!(
            remembered
                .take(&format!("r{}", MAX_REMEMBERED + 4))
                .is_some()
        );
        // Finished runs do not make the order grow without bound.
        for i in 0..3 * MAX_REMEMBERED {
            let id = format!("s{i}");
            remembered.insert(&id, seen("a"));
            remembered.take(&id);
        }
        assert!(remembered.order.len() <= 2 * MAX_REMEMBERED + 1);
    }
}
