//! The timer schedulers: every interval each asks the service to run one
//! cycle — the media-buy status cycle (`MEDIA_BUY_STATUS_CHECK_INTERVAL`;
//! the transitions are set-based SQL in the service's store) or the delivery
//! report cycle (`DELIVERY_WEBHOOK_INTERVAL`) — and keeps what `/health` and
//! `/metrics` show of it. With `SKIP_CRON=true` they run no timer, and a
//! cycle still runs on demand (`POST /admin/schedulers/{status,delivery}/run`).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::Clock;
use crate::agent_run::{self, NoRecorder, RunEnd, RunRecorder, RunStart};
use crate::supervisor::{ActorHandle, Child, RestartPolicy, Supervisor};

/// How many buys moved from one status to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransitionCount {
    pub from: String,
    pub to: String,
    pub count: u64,
}

/// A media buy a cycle could not move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    pub media_buy_id: String,
    pub reason: String,
}

/// What the store reports of one cycle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CycleOutcome {
    /// Another replica was running a cycle; this one did nothing.
    pub locked_out: bool,
    pub transitions: Vec<TransitionCount>,
    pub errors: Vec<RowError>,
}

/// The port: runs one cycle at `now`. `Err` is a short reason (the cycle
/// could not run at all).
pub trait StatusCycle: Send + Sync + 'static {
    fn run(
        &self,
        now: DateTime<Utc>,
    ) -> Pin<Box<dyn Future<Output = Result<CycleOutcome, String>> + Send + 'static>>;
}

/// The answer of `POST /admin/schedulers/status/run`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CycleReport {
    /// `false` when another replica held the scheduler lock.
    pub ran: bool,
    pub transitions: Vec<TransitionCount>,
    pub errors: Vec<RowError>,
    pub duration_ms: u64,
}

/// `/health` `components.schedulers.status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SchedulerStatus {
    /// `false` with `SKIP_CRON=true` (cycles run on demand only).
    pub enabled: bool,
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_duration_ms: Option<u64>,
    /// Buys moved by the last cycle.
    pub transitions: u64,
    /// Rows the last cycle could not move (or 1 if it could not run).
    pub errors: u64,
    pub last_error: Option<String>,
    pub next_run_at: Option<DateTime<Utc>>,
}

struct Shared {
    /// `status` or `delivery`: the metrics' `scheduler` label.
    label: &'static str,
    cycle: Arc<dyn StatusCycle>,
    clock: Arc<dyn Clock>,
    interval: Option<Duration>,
    status: Mutex<SchedulerStatus>,
    /// Each cycle is recorded as an agent run of `agent`.
    recorder: Arc<dyn RunRecorder>,
    /// `status_scheduler`, `delivery_scheduler`: the actor's name, and the
    /// agent its runs are recorded as.
    agent: &'static str,
}

impl Shared {
    fn status(&self) -> std::sync::MutexGuard<'_, SchedulerStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs one cycle and books it.
    async fn run(self: Arc<Self>) -> Result<CycleReport, String> {
        let now = self.clock.now();
        let ticket = agent_run::begin(
            &self.recorder,
            RunStart::cycle(self.agent, objective(self.label), now),
        );
        let started = Instant::now();
        let outcome = self.cycle.run(now).await;
        let duration_ms = started.elapsed().as_millis() as u64;
        ticket.finish(run_end(&outcome, duration_ms));
        metrics::histogram!("scheduler_run_duration_seconds", "scheduler" => self.label)
            .record(started.elapsed().as_secs_f64());
        let result = match &outcome {
            Ok(o) if o.locked_out => "locked_out",
            Ok(o) if !o.errors.is_empty() => "partial",
            Ok(_) => "ok",
            Err(_) => "error",
        };
        metrics::counter!("scheduler_runs_total", "scheduler" => self.label, "result" => result)
            .increment(1);
        let mut status = self.status();
        status.next_run_at = self
            .interval
            .and_then(|i| chrono::Duration::from_std(i).ok())
            .map(|i| now + i);
        match outcome {
            Ok(outcome) if outcome.locked_out => {
                tracing::debug!(scheduler = self.label, "another replica is running a cycle");
                Ok(CycleReport {
                    ran: false,
                    transitions: Vec::new(),
                    errors: Vec::new(),
                    duration_ms,
                })
            }
            Ok(outcome) => {
                for t in &outcome.transitions {
                    metrics::counter!("media_buy_transitions_total", "from" => t.from.clone(), "to" => t.to.clone())
                        .increment(t.count);
                }
                let moved: u64 = outcome.transitions.iter().map(|t| t.count).sum();
                if moved > 0 || !outcome.errors.is_empty() {
                    tracing::info!(
                        moved,
                        errors = outcome.errors.len(),
                        duration_ms,
                        "status cycle"
                    );
                }
                *status = SchedulerStatus {
                    enabled: status.enabled,
                    last_run_at: Some(now),
                    last_duration_ms: Some(duration_ms),
                    transitions: moved,
                    errors: outcome.errors.len() as u64,
                    last_error: outcome.errors.first().map(|e| e.reason.clone()),
                    next_run_at: status.next_run_at,
                };
                Ok(CycleReport {
                    ran: true,
                    transitions: outcome.transitions,
                    errors: outcome.errors,
                    duration_ms,
                })
            }
            Err(reason) => {
                tracing::warn!(scheduler = self.label, %reason, "a cycle could not run");
                status.last_run_at = Some(now);
                status.last_duration_ms = Some(duration_ms);
                status.transitions = 0;
                status.errors = 1;
                status.last_error = Some(reason.clone());
                Err(reason)
            }
        }
    }
}

/// The objective an agent run of this scheduler's cycle is recorded with.
fn objective(label: &str) -> &'static str {
    match label {
        "status" => "media-buy status cycle",
        "delivery" => "delivery-report cycle",
        _ => "scheduler cycle",
    }
}

/// At most this many row errors go into a run's artifacts (`errors_total`
/// says how many there were).
const MAX_ERRORS_IN_ARTIFACTS: usize = 20;

/// How a cycle ends as an agent run: `succeeded` when it ran without row
/// errors, `failed` when some rows could not be moved (the first reason is
/// the error) or it could not run at all, `canceled` when another replica
/// held the lock (nothing was done). The artifacts are the cycle report.
fn run_end(outcome: &Result<CycleOutcome, String>, duration_ms: u64) -> RunEnd {
    match outcome {
        Ok(o) if o.locked_out => RunEnd::canceled(
            Some(serde_json::json!({
                "ran": false,
                "reason": "another replica was running this cycle",
                "duration_ms": duration_ms,
            })),
            Some(duration_ms),
        ),
        Ok(o) => {
            let artifacts = serde_json::json!({
                "ran": true,
                "transitions": o.transitions,
                "errors": o.errors.iter().take(MAX_ERRORS_IN_ARTIFACTS).collect::<Vec<_>>(),
                "errors_total": o.errors.len(),
                "duration_ms": duration_ms,
            });
            match o.errors.first() {
                None => RunEnd::succeeded(Some(artifacts), Some(duration_ms)),
                Some(first) => RunEnd::failed(
                    format!(
                        "{} media buy(s) could not be processed; first: {}: {}",
                        o.errors.len(),
                        first.media_buy_id,
                        first.reason
                    ),
                    Some(artifacts),
                    Some(duration_ms),
                ),
            }
        }
        Err(reason) => RunEnd::failed(
            format!("the cycle could not run: {reason}"),
            Some(serde_json::json!({"ran": false, "duration_ms": duration_ms})),
            Some(duration_ms),
        ),
    }
}

/// The running scheduler: runs cycles on demand and reports its status.
#[derive(Clone)]
pub struct StatusScheduler {
    shared: Arc<Shared>,
    actor: ActorHandle<StatusSchedulerActor>,
}

impl std::fmt::Debug for StatusScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusScheduler").finish_non_exhaustive()
    }
}

impl StatusScheduler {
    /// Starts `<label>_scheduler` under `supervisor`; `interval: None` runs
    /// no timer (`SKIP_CRON`). Its cycles are not recorded as agent runs.
    pub fn start(
        supervisor: &Supervisor,
        policy: RestartPolicy,
        label: &'static str,
        interval: Option<Duration>,
        cycle: Arc<dyn StatusCycle>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self::start_recorded(
            supervisor,
            policy,
            label,
            interval,
            cycle,
            clock,
            Arc::new(NoRecorder),
        )
    }

    /// [`Self::start`], recording each cycle (on the timer or on demand) as
    /// an agent run of `<label>_scheduler` through `recorder`.
    pub fn start_recorded(
        supervisor: &Supervisor,
        policy: RestartPolicy,
        label: &'static str,
        interval: Option<Duration>,
        cycle: Arc<dyn StatusCycle>,
        clock: Arc<dyn Clock>,
        recorder: Arc<dyn RunRecorder>,
    ) -> Self {
        let next_run_at = interval
            .and_then(|i| chrono::Duration::from_std(i).ok())
            .map(|i| clock.now() + i);
        let name = match label {
            "status" => "status_scheduler",
            "delivery" => "delivery_scheduler",
            _ => "scheduler",
        };
        let shared = Arc::new(Shared {
            label,
            cycle,
            clock,
            interval,
            status: Mutex::new(SchedulerStatus {
                enabled: interval.is_some(),
                next_run_at,
                ..SchedulerStatus::default()
            }),
            recorder,
            agent: name,
        });
        let for_factory = shared.clone();
        let actor = supervisor.spawn(name, policy, move |child| StatusSchedulerActor {
            child: child.clone(),
            shared: for_factory.clone(),
        });
        Self { shared, actor }
    }

    pub fn status(&self) -> SchedulerStatus {
        self.shared.status().clone()
    }

    /// Runs one cycle now, through the actor (so a stopped actor answers
    /// with an error rather than running outside supervision).
    pub async fn run_now(&self) -> Result<CycleReport, String> {
        self.actor
            .addr()
            .send(RunCycle)
            .await
            .map_err(|_| "the status scheduler is restarting".to_owned())?
    }
}

/// Runs one cycle now.
#[derive(Debug, Message)]
#[rtype(result = "Result<CycleReport, String>")]
pub struct RunCycle;

/// The supervised actor.
pub struct StatusSchedulerActor {
    child: Child,
    shared: Arc<Shared>,
}

impl Actor for StatusSchedulerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(interval) = self.shared.interval {
            ctx.run_interval(interval, |act, ctx| {
                if act.child.trip(ctx) {
                    return;
                }
                let run = act.shared.clone().run();
                // One cycle at a time: the next tick waits for this one.
                ctx.wait(run.into_actor(act).map(|_, _, _| ()));
            });
        }
    }
}

impl Handler<RunCycle> for StatusSchedulerActor {
    type Result = ResponseActFuture<Self, Result<CycleReport, String>>;

    fn handle(&mut self, _: RunCycle, ctx: &mut Context<Self>) -> Self::Result {
        if self.child.trip(ctx) {
            return Box::pin(fut::ready(Err("the status scheduler failed".to_owned())));
        }
        Box::pin(self.shared.clone().run().into_actor(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent_run::RunStatus;

    fn errors(n: usize) -> Vec<RowError> {
        (0..n)
            .map(|i| RowError {
                media_buy_id: format!("mb_{i}"),
                reason: "refused".into(),
            })
            .collect()
    }

    #[test]
    fn a_cycle_ends_as_a_run_by_its_outcome() {
        let clean = CycleOutcome {
            transitions: vec![TransitionCount {
                from: "scheduled".into(),
                to: "active".into(),
                count: 2,
            }],
            ..CycleOutcome::default()
        };
        let end = run_end(&Ok(clean), 12);
        assert_eq!(end.status, RunStatus::Succeeded);
        assert_eq!(end.duration_ms, Some(12));
        let artifacts = end.artifacts.unwrap();
        assert_eq!(artifacts["ran"], true);
        assert_eq!(artifacts["transitions"][0]["count"], 2);

        let partial = CycleOutcome {
            errors: errors(30),
            ..CycleOutcome::default()
        };
        let end = run_end(&Ok(partial), 5);
        assert_eq!(end.status, RunStatus::Failed);
        assert!(end.error.unwrap().starts_with("30 media buy(s)"));
        let artifacts = end.artifacts.unwrap();
        assert_eq!(artifacts["errors_total"], 30);
        assert_eq!(
            artifacts["errors"].as_array().unwrap().len(),
            MAX_ERRORS_IN_ARTIFACTS
        );

        let end = run_end(&Err("database unavailable".into()), 1);
        assert_eq!(end.status, RunStatus::Failed);
        assert!(end.error.unwrap().contains("database unavailable"));

        let locked = CycleOutcome {
            locked_out: true,
            ..CycleOutcome::default()
        };
        assert_eq!(run_end(&Ok(locked), 0).status, RunStatus::Canceled);
    }
}
