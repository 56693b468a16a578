//! The [`Alerts`] handle, the shared evaluation state and the supervised
//! [`AlertActor`].

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::episodes::{Alert, AlertState, DatabaseAlert, DatabaseStep, decide, plan};
use super::rules::{AlertConfig, Rule};
use super::store::{AlertChange, AlertStore};
use crate::Clock;
use crate::audit::Auditor;
use crate::db_watch::DatabaseProbe;
use crate::supervisor::{ActorHandle, Child, RestartPolicy, Supervisor};

/// `/health` `components.alerts`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AlertsStatus {
    /// `false` with `SKIP_CRON=true` (evaluations on demand only).
    pub enabled: bool,
    pub firing: u64,
    pub pending: u64,
    pub last_evaluation_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// What one evaluation did (`POST /admin/alerts/run`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EvaluationReport {
    /// `{rule, scope, kind}` of each notice queued: `fired`, `reminder`, `resolved`.
    pub notified: Vec<Notified>,
    pub firing: u64,
    pub pending: u64,
    /// Rules that could not be evaluated, with why (their alerts stay as they were).
    pub errors: Vec<RuleError>,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notified {
    pub rule: String,
    pub scope: String,
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleError {
    pub rule: String,
    pub reason: String,
}

struct Shared {
    config: AlertConfig,
    store: Arc<dyn AlertStore>,
    probe: Arc<dyn DatabaseProbe>,
    auditor: Auditor,
    clock: Arc<dyn Clock>,
    /// Outside the actor: a restart of the actor keeps the in-memory
    /// `database_unhealthy` episode.
    database: Mutex<DatabaseAlert>,
    status: Mutex<AlertsStatus>,
    /// Each evaluation is recorded as a run of the agent `alerts`.
    recorder: Arc<dyn crate::agent_run::RunRecorder>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// One evaluation at the clock's now.
    async fn evaluate(self: Arc<Self>) -> EvaluationReport {
        let started = Instant::now();
        let now = self.clock.now();
        let ticket = crate::agent_run::begin(
            &self.recorder,
            crate::agent_run::RunStart::cycle("alerts", "evaluate the alert rules", now),
        );
        let mut report = EvaluationReport::default();
        let outcome = self.evaluate_at(now, &mut report).await;
        report.duration_ms = started.elapsed().as_millis() as u64;
        let artifacts = serde_json::to_value(&report).ok();
        // Awaited: the next evaluation reads `agent_runs`, and must not see
        // this one still `running` (it would look slow after a long pause).
        let end = match (&outcome, report.errors.first()) {
            (Ok(()), None) => {
                crate::agent_run::RunEnd::succeeded(artifacts, Some(report.duration_ms))
            }
            (Err(reason), _) => {
                crate::agent_run::RunEnd::failed(reason, artifacts, Some(report.duration_ms))
            }
            (Ok(()), Some(e)) => {
                crate::agent_run::RunEnd::failed(&e.reason, artifacts, Some(report.duration_ms))
            }
        };
        ticket.finish_recorded(end).await;
        let result = if outcome.is_ok() && report.errors.is_empty() {
            "ok"
        } else {
            "error"
        };
        metrics::counter!("alert_evaluations_total", "result" => result).increment(1);
        let mut status = lock(&self.status);
        status.last_evaluation_at = Some(now);
        status.last_error = outcome
            .err()
            .or_else(|| report.errors.first().map(|e| e.reason.clone()));
        if let Some(reason) = &status.last_error {
            tracing::warn!(%reason, "alert evaluation incomplete");
        }
        status.firing = report.firing;
        status.pending = report.pending;
        report
    }

    async fn evaluate_at(
        &self,
        now: DateTime<Utc>,
        report: &mut EvaluationReport,
    ) -> Result<(), String> {
        let ping = self.probe.ping().await;
        let step = lock(&self.database).check(&ping, now, self.config.database_failures);
        match step {
            DatabaseStep::Fired => {
                let db = lock(&self.database).clone();
                tracing::error!(
                    critical = true,
                    alert = Rule::DatabaseUnhealthy.as_str(),
                    severity = "critical",
                    failed_checks = db.failures,
                    reason = db.last_reason.as_deref().unwrap_or_default(),
                    "ALERT database_unhealthy: the database check failed {} times in a row; \
                     the Slack notice is queued when the database is back",
                    db.failures
                );
            }
            DatabaseStep::Recovered(episode) => {
                let (audit, notes) = DatabaseAlert::recovery(&episode, now);
                match self
                    .store
                    .apply(AlertChange::Insert(*episode), audit, notes)
                    .await
                {
                    Ok(committed) => {
                        tracing::info!(
                            alert = Rule::DatabaseUnhealthy.as_str(),
                            "ALERT database_unhealthy resolved: the database answers again"
                        );
                        *lock(&self.database) = DatabaseAlert::default();
                        for kind in ["fired", "resolved"] {
                            self.count_notice(Rule::DatabaseUnhealthy.as_str(), "", kind, report);
                        }
                        self.auditor.committed(committed.unwrap_or_default());
                    }
                    // Kept in memory; the next evaluation tries again.
                    Err(reason) => {
                        return Err(format!("database_unhealthy not recorded: {reason}"));
                    }
                }
            }
            DatabaseStep::Nothing => {}
        }
        let database_firing = lock(&self.database).is_firing();
        if let Err(reason) = ping {
            // The other rules' alerts cannot be read: their gauges keep
            // their last values, and the report counts what is known.
            let rule = Rule::DatabaseUnhealthy;
            metrics::gauge!("alerts_firing", "rule" => rule.as_str(), "severity" => rule.severity())
                .set(f64::from(u8::from(database_firing)));
            report.firing = u64::from(database_firing);
            return Err(format!("database check failed: {reason}"));
        }

        let readings = self.store.read(self.config.windows(now)).await?;
        let current = self.store.current().await?;
        let (breaches, failed) = self.config.breaches(&readings);
        let skipped: Vec<&str> = failed.iter().map(|(r, _)| r.as_str()).collect();
        report.errors = failed
            .iter()
            .map(|(rule, reason)| RuleError {
                rule: rule.as_str().to_owned(),
                reason: reason.clone(),
            })
            .collect();

        // Every (rule, scope) that has an episode or a breach.
        let mut keys: Vec<(String, String)> = current
            .iter()
            .map(|a| (a.rule.clone(), a.scope.clone()))
            .chain(
                breaches
                    .iter()
                    .map(|b| (b.rule.as_str().to_owned(), b.scope.clone())),
            )
            .collect();
        keys.sort();
        keys.dedup();
        for (rule, scope) in keys {
            if skipped.contains(&rule.as_str()) || rule == Rule::DatabaseUnhealthy.as_str() {
                continue;
            }
            let alert = current.iter().find(|a| a.rule == rule && a.scope == scope);
            let breach = breaches
                .iter()
                .find(|b| b.rule.as_str() == rule && b.scope == scope);
            let step = decide(alert, breach, now, &self.config);
            let Some((change, audit, notes, kind)) = plan(step, alert, breach, now) else {
                continue;
            };
            match self.store.apply(change, audit, notes).await {
                Ok(Some(committed)) => {
                    if let Some(kind) = kind {
                        self.count_notice(&rule, &scope, kind, report);
                        tracing::warn!(
                            alert = %rule,
                            scope = %scope,
                            kind,
                            severity = Rule::parse(&rule).map_or("", Rule::severity),
                            "ALERT {rule} {kind}"
                        );
                    }
                    self.auditor.committed(committed);
                }
                Ok(None) => {
                    tracing::debug!(alert = %rule, scope = %scope, "alert changed meanwhile (another replica)");
                }
                Err(reason) => report.errors.push(RuleError { rule, reason }),
            }
        }
        let after = self.store.current().await?;
        self.set_gauges(&after, database_firing, report);
        Ok(())
    }

    fn count_notice(&self, rule: &str, scope: &str, kind: &str, report: &mut EvaluationReport) {
        metrics::counter!("alert_notifications_total", "rule" => rule.to_owned(), "kind" => kind.to_owned())
            .increment(1);
        report.notified.push(Notified {
            rule: rule.to_owned(),
            scope: scope.to_owned(),
            kind: kind.to_owned(),
        });
    }

    fn set_gauges(&self, current: &[Alert], database_firing: bool, report: &mut EvaluationReport) {
        let firing = |rule: Rule| {
            current
                .iter()
                .filter(|a| a.rule == rule.as_str() && a.state == AlertState::Firing)
                .count() as u64
        };
        for rule in Rule::ALL {
            let n = if rule == Rule::DatabaseUnhealthy {
                u64::from(database_firing)
            } else {
                firing(rule)
            };
            metrics::gauge!("alerts_firing", "rule" => rule.as_str(), "severity" => rule.severity())
                .set(n as f64);
        }
        report.firing = current
            .iter()
            .filter(|a| a.state == AlertState::Firing)
            .count() as u64
            + u64::from(database_firing);
        report.pending = current
            .iter()
            .filter(|a| a.state == AlertState::Pending)
            .count() as u64;
    }
}

/// What callers hold: runs an evaluation on demand, reports status.
#[derive(Clone)]
pub struct Alerts {
    shared: Arc<Shared>,
    actor: ActorHandle<AlertActor>,
}

impl fmt::Debug for Alerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Alerts").finish_non_exhaustive()
    }
}

/// What the AlertActor reads and writes through.
pub struct AlertPorts {
    pub store: Arc<dyn AlertStore>,
    pub probe: Arc<dyn DatabaseProbe>,
    /// Each evaluation is recorded as a run of the agent `alerts`.
    pub recorder: Arc<dyn crate::agent_run::RunRecorder>,
}

impl Alerts {
    /// Starts the AlertActor under `supervisor` as `alerts`.
    pub fn start(
        supervisor: &Supervisor,
        policy: RestartPolicy,
        config: AlertConfig,
        ports: AlertPorts,
        auditor: Auditor,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let AlertPorts {
            store,
            probe,
            recorder,
        } = ports;
        let shared = Arc::new(Shared {
            status: Mutex::new(AlertsStatus {
                enabled: config.interval.is_some(),
                ..AlertsStatus::default()
            }),
            config,
            store,
            probe,
            auditor,
            clock,
            database: Mutex::new(DatabaseAlert::default()),
            recorder,
        });
        let for_factory = shared.clone();
        let actor = supervisor.spawn("alerts", policy, move |child| AlertActor {
            child: child.clone(),
            shared: for_factory.clone(),
        });
        Self { shared, actor }
    }

    pub fn status(&self) -> AlertsStatus {
        let mut status = lock(&self.shared.status).clone();
        // The database alert is known at once, whatever the last evaluation saw.
        if lock(&self.shared.database).is_firing() && status.firing == 0 {
            status.firing = 1;
        }
        status
    }

    /// The in-memory `database_unhealthy` state.
    pub fn database(&self) -> DatabaseAlert {
        lock(&self.shared.database).clone()
    }

    /// Evaluates every rule now, through the actor.
    pub async fn run_now(&self) -> Result<EvaluationReport, String> {
        self.actor
            .addr()
            .send(Evaluate)
            .await
            .map_err(|_| "the alert actor is restarting".to_owned())?
    }
}

/// Evaluate every rule now.
#[derive(Debug, Message)]
#[rtype(result = "Result<EvaluationReport, String>")]
pub struct Evaluate;

/// The supervised actor: a timer and a mailbox, one evaluation at a time.
pub struct AlertActor {
    child: Child,
    shared: Arc<Shared>,
}

impl Actor for AlertActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(interval) = self.shared.config.interval {
            ctx.run_interval(interval, |act, ctx| {
                if act.child.trip(ctx) {
                    return;
                }
                let run = act.shared.clone().evaluate();
                ctx.wait(run.into_actor(act).map(|_, _, _| ()));
            });
        }
    }
}

impl Handler<Evaluate> for AlertActor {
    type Result = ResponseActFuture<Self, Result<EvaluationReport, String>>;

    fn handle(&mut self, _: Evaluate, ctx: &mut Context<Self>) -> Self::Result {
        if self.child.trip(ctx) {
            return Box::pin(fut::ready(Err("the alert actor failed".to_owned())));
        }
        // May overlap a timer evaluation; their writes are conditional on
        // each episode's revision, as two replicas' are.
        Box::pin(
            self.shared
                .clone()
                .evaluate()
                .into_actor(self)
                .map(|r, _, _| Ok(r)),
        )
    }
}
