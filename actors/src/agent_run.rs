//! Agent runs as the service's own actors record them.
//!
//! An agent run is one execution of an AI agent or of one of the service's
//! timer actors (a status cycle, a delivery-report cycle, an alert
//! evaluation): started as `running`, finished once as `succeeded`, `failed`
//! or `canceled`. The service implements [`RunRecorder`] over its store (the
//! same path as `POST /api/v1/agent-runs`: rows, metrics, audit events);
//! actors only call it.
//!
//! Recording never fails or slows the work it records: [`begin`] and
//! [`RunTicket::finish`] hand the calls to background tasks and return at
//! once, the finish waits for its start to be written first, and a recorder
//! that fails (or panics) loses the record, never the cycle.
//!
//! An actor records a cycle in two lines:
//!
//! ```ignore
//! let ticket = agent_run::begin(&recorder, RunStart::cycle("alert_evaluator", "evaluate alert rules", now));
//! // ... the work ...
//! ticket.finish(RunEnd::succeeded(Some(report_json), Some(elapsed_ms)));
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::oneshot;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Succeeded,
    Failed,
    Canceled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Canceled => "canceled",
        }
    }
}

/// A run that starts now.
#[derive(Debug, Clone, PartialEq)]
pub struct RunStart {
    /// Unique; a UUID for the service's own runs.
    pub run_id: String,
    /// Short and stable (it is a metrics label): `status_scheduler`, ...
    pub agent: String,
    pub objective: String,
    pub plan: Option<serde_json::Value>,
    pub dry_run: bool,
    pub started_at: DateTime<Utc>,
}

impl RunStart {
    /// One cycle of a timer actor: a fresh run id, no plan, not a dry run.
    pub fn cycle(agent: &str, objective: &str, started_at: DateTime<Utc>) -> Self {
        Self {
            run_id: uuid::Uuid::new_v4().to_string(),
            agent: agent.to_owned(),
            objective: objective.to_owned(),
            plan: None,
            dry_run: false,
            started_at,
        }
    }
}

/// How a run ended, and what it produced.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEnd {
    pub status: RunStatus,
    pub artifacts: Option<serde_json::Value>,
    pub error: Option<String>,
    /// `None`: the recorder computes it from the start.
    pub duration_ms: Option<u64>,
}

impl RunEnd {
    pub fn succeeded(artifacts: Option<serde_json::Value>, duration_ms: Option<u64>) -> Self {
        Self {
            status: RunStatus::Succeeded,
            artifacts,
            error: None,
            duration_ms,
        }
    }

    pub fn failed(
        error: impl Into<String>,
        artifacts: Option<serde_json::Value>,
        duration_ms: Option<u64>,
    ) -> Self {
        Self {
            status: RunStatus::Failed,
            artifacts,
            error: Some(error.into()),
            duration_ms,
        }
    }

    pub fn canceled(artifacts: Option<serde_json::Value>, duration_ms: Option<u64>) -> Self {
        Self {
            status: RunStatus::Canceled,
            artifacts,
            error: None,
            duration_ms,
        }
    }
}

pub type Recording = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The port: records a run's start and its end. Infallible by contract: an
/// implementation logs (and counts) what it could not store and returns.
pub trait RunRecorder: Send + Sync + 'static {
    fn started(&self, run: RunStart) -> Recording;
    fn finished(&self, run_id: String, end: RunEnd) -> Recording;
}

/// Records nothing: for components started without a recorder, and tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRecorder;

impl RunRecorder for NoRecorder {
    fn started(&self, _: RunStart) -> Recording {
        Box::pin(async {})
    }

    fn finished(&self, _: String, _: RunEnd) -> Recording {
        Box::pin(async {})
    }
}

/// A run whose start is being recorded; [`RunTicket::finish`] records its end.
/// Dropped without `finish`, the run stays `running` in the record (as a
/// crashed agent's would).
#[must_use = "a run that is never finished stays `running`"]
pub struct RunTicket {
    recorder: Arc<dyn RunRecorder>,
    run_id: String,
    started: oneshot::Receiver<()>,
}

impl std::fmt::Debug for RunTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunTicket")
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

/// Starts recording `run` in the background and returns at once. Needs a
/// Tokio runtime (every actor has one).
pub fn begin(recorder: &Arc<dyn RunRecorder>, run: RunStart) -> RunTicket {
    let (done, started) = oneshot::channel();
    let run_id = run.run_id.clone();
    let start = recorder.started(run);
    tokio::spawn(async move {
        start.await;
        let _ = done.send(());
    });
    RunTicket {
        recorder: recorder.clone(),
        run_id,
        started,
    }
}

impl RunTicket {
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Records the end after the start is written (or has failed to be),
    /// and returns once it is: for a caller whose next step reads the
    /// record (the alert rules read `agent_runs`).
    pub async fn finish_recorded(self, end: RunEnd) {
        let _ = self.started.await;
        self.recorder.finished(self.run_id, end).await;
    }

    /// Records the end in the background, after the start is written (or
    /// has failed to be), and returns at once.
    pub fn finish(self, end: RunEnd) {
        let RunTicket {
            recorder,
            run_id,
            started,
        } = self;
        tokio::spawn(async move {
            // Err: the start's task is gone (it panicked); finish anyway.
            let _ = started.await;
            recorder.finished(run_id, end).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    /// Remembers calls in order; `slow_start` delays the start's write.
    #[derive(Default)]
    struct Log {
        calls: Mutex<Vec<String>>,
        slow_start: bool,
        panic_on_start: bool,
    }

    impl RunRecorder for Arc<Log> {
        fn started(&self, run: RunStart) -> Recording {
            let log = self.clone();
            Box::pin(async move {
                if log.panic_on_start {
                    panic!("the recorder failed");
                }
                if log.slow_start {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                log.calls
                    .lock()
                    .unwrap()
                    .push(format!("start {} {}", run.agent, run.run_id));
            })
        }

        fn finished(&self, run_id: String, end: RunEnd) -> Recording {
            let log = self.clone();
            Box::pin(async move {
                log.calls
                    .lock()
                    .unwrap()
                    .push(format!("finish {run_id} {}", end.status.as_str()));
            })
        }
    }

    async fn settle(log: &Log, n: usize) -> Vec<String> {
        for _ in 0..200 {
            if log.calls.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        log.calls.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn the_finish_is_recorded_after_a_slow_start_and_the_caller_never_waits() {
        let log = Arc::new(Log {
            slow_start: true,
            ..Log::default()
        });
        let recorder: Arc<dyn RunRecorder> = Arc::new(log.clone());
        let begun = std::time::Instant::now();
        let ticket = begin(&recorder, RunStart::cycle("x", "o", Utc::now()));
        let id = ticket.run_id().to_owned();
        ticket.finish(RunEnd::succeeded(None, Some(1)));
        assert!(
            begun.elapsed() < Duration::from_millis(40),
            "the caller waited"
        );
        assert_eq!(
            settle(&log, 2).await,
            vec![format!("start x {id}"), format!("finish {id} succeeded")]
        );
    }

    #[tokio::test]
    async fn a_recorder_that_panics_on_start_still_gets_the_finish() {
        let log = Arc::new(Log {
            panic_on_start: true,
            ..Log::default()
        });
        let recorder: Arc<dyn RunRecorder> = Arc::new(log.clone());
        let ticket = begin(&recorder, RunStart::cycle("x", "o", Utc::now()));
        let id = ticket.run_id().to_owned();
        ticket.finish(RunEnd::failed("boom", None, None));
        assert_eq!(settle(&log, 1).await, vec![format!("finish {id} failed")]);
    }
}
