//! What `/health` reports, and how the verdict is reached.
//!
//! The database check is a real round trip (`SELECT 1`) bounded by
//! `HEALTH_CHECK_TIMEOUT`; the schema must also be current (migrations
//! applied). Reasons are short and never carry the database URL, user or
//! password.

use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use overseer_actors::audit::{AuditStatus, Auditor};
use overseer_actors::supervisor::{ChildState, ChildStatus, SupervisionBoard};
use serde::Serialize;
use tokio::sync::watch;

use crate::store::{PoolStats, Store};

/// Whether the schema is ready for the service's queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaStatus {
    /// Migrations have not been applied (yet); the reason says why.
    Pending(String),
    Current,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Healthy,
    /// Serving, but a supervised component is down (still HTTP 200).
    Degraded,
    /// The database is unreachable or its schema is not ready (HTTP 503).
    Unhealthy,
}

#[derive(Debug, Serialize)]
pub struct HealthReport {
    pub status: Verdict,
    /// `connected` or `connection failed`.
    pub database: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub version: &'static str,
    pub uptime_seconds: u64,
    pub components: Components,
}

#[derive(Debug, Serialize)]
pub struct Components {
    pub database: DatabaseHealth,
    /// Every supervised actor: `running`, `restarting`, `down` or `stopped`,
    /// with its restart count, last restart and last error.
    pub actors: BTreeMap<&'static str, ChildStatus>,
    /// The audit write path: events waiting, events spooled while the database
    /// is away, the last flush and the last error.
    pub audit: AuditStatus,
    /// The Slack router: notifications waiting, the last delivery, webhooks
    /// marked failing (masked).
    pub slack: SlackHealth,
    pub schedulers: Schedulers,
    /// The alert rules: firing and pending alerts, the last evaluation.
    pub alerts: overseer_actors::alerts::AlertsStatus,
    /// The live activity stream: streams open now.
    pub sse: SseHealth,
}

/// The Slack router's status: how many webhooks are failing for everyone,
/// which ones (tenant, channel, masked URL, answer) for the detailed view.
#[derive(Debug, Serialize)]
pub struct SlackHealth {
    pub queue_depth: u64,
    pub last_sent_at: Option<chrono::DateTime<chrono::Utc>>,
    pub last_error: Option<String>,
    /// Webhooks that answered a permanent error, until one succeeds again.
    pub failing_webhooks: usize,
    /// Those webhooks; absent from the anonymous report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing: Option<Vec<overseer_actors::slack::FailingWebhook>>,
}

impl From<overseer_actors::slack::SlackStatus> for SlackHealth {
    fn from(status: overseer_actors::slack::SlackStatus) -> Self {
        Self {
            queue_depth: status.queue_depth,
            last_sent_at: status.last_sent_at,
            last_error: status.last_error,
            failing_webhooks: status.failing.len(),
            failing: Some(status.failing),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SseHealth {
    pub connections: usize,
}

/// The timer actors' last and next runs.
#[derive(Debug, Serialize)]
pub struct Schedulers {
    /// The media-buy status scheduler.
    pub status: overseer_actors::scheduler::SchedulerStatus,
    /// The delivery-report scheduler (`transitions`: reports queued).
    pub delivery: overseer_actors::scheduler::SchedulerStatus,
}

#[derive(Debug, Serialize)]
pub struct DatabaseHealth {
    pub status: &'static str,
    pub backend: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// `current` or `pending`.
    pub schema: &'static str,
    pub pool: PoolStats,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub const CONNECTED: &str = "connected";
pub const CONNECTION_FAILED: &str = "connection failed";

#[derive(Debug, Clone)]
pub struct Health {
    store: Store,
    schema: watch::Receiver<SchemaStatus>,
    actors: SupervisionBoard,
    auditor: Auditor,
    slack: overseer_actors::slack::SlackRouter,
    status_scheduler: overseer_actors::scheduler::StatusScheduler,
    delivery_scheduler: overseer_actors::scheduler::StatusScheduler,
    sse: overseer_actors::activity::SseHub,
    alerts: overseer_actors::alerts::Alerts,
    started: Instant,
    check_timeout: Duration,
}

impl Health {
    /// What `/health` reads: the store, the schema status, and the actors'
    /// own status handles.
    pub fn new(
        store: Store,
        schema: watch::Receiver<SchemaStatus>,
        actors: &crate::services::Actors,
        check_timeout: Duration,
    ) -> Self {
        Self {
            store,
            schema,
            actors: actors.supervisor.board().clone(),
            auditor: actors.auditor.clone(),
            slack: actors.slack.clone(),
            status_scheduler: actors.status_scheduler.clone(),
            delivery_scheduler: actors.delivery_scheduler.clone(),
            sse: actors.sse.clone(),
            alerts: actors.alerts.clone(),
            started: Instant::now(),
            check_timeout,
        }
    }

    /// Runs the checks and returns the report.
    pub async fn check(&self) -> HealthReport {
        let ping = match tokio::time::timeout(self.check_timeout, self.store.ping()).await {
            Ok(Ok(latency)) => Ok(latency),
            Ok(Err(err)) => Err(err.short_reason()),
            Err(_) => Err(format!("no answer within {:?}", self.check_timeout)),
        };
        let schema = self.schema.borrow().clone();

        let (database, latency_ms, error) = match &ping {
            Ok(latency) => (CONNECTED, Some(latency.as_secs_f64() * 1_000.0), None),
            Err(reason) => (CONNECTION_FAILED, None, Some(reason.clone())),
        };
        let error = error.or_else(|| match &schema {
            SchemaStatus::Pending(reason) => Some(format!("schema migrations pending: {reason}")),
            SchemaStatus::Current => None,
        });
        let actors = self.actors.snapshot();
        let status = if error.is_some() {
            Verdict::Unhealthy
        } else if actors.values().any(|a| a.status == ChildState::Down) {
            Verdict::Degraded
        } else {
            Verdict::Healthy
        };

        HealthReport {
            status,
            database,
            error: error.clone(),
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: self.started.elapsed().as_secs(),
            components: Components {
                database: DatabaseHealth {
                    status: database,
                    backend: self.store.backend().as_str(),
                    latency_ms,
                    schema: match schema {
                        SchemaStatus::Current => "current",
                        SchemaStatus::Pending(_) => "pending",
                    },
                    pool: self.store.pool_stats(),
                    error,
                },
                actors,
                audit: self.auditor.status(),
                slack: self.slack.status().into(),
                schedulers: Schedulers {
                    status: self.status_scheduler.status(),
                    delivery: self.delivery_scheduler.status(),
                },
                sse: SseHealth {
                    connections: self.sse.connections(),
                },
                alerts: self.alerts.status(),
            },
        }
    }
}

/// What an anonymous `/health` shows in place of an error text.
pub const WITHHELD: &str = "withheld";

impl HealthReport {
    /// The report for an anonymous caller: the verdict and each component's
    /// state, counts and times, but no text that could name a tenant, a
    /// host or a cause (error texts, failing webhooks). An error that exists
    /// is still said to exist (`"withheld"`), and the top-level `error`
    /// keeps its category: the database is unreachable, or its schema is
    /// pending.
    pub fn anonymous(mut self) -> Self {
        let withhold = |text: &mut Option<String>| {
            if text.is_some() {
                *text = Some(WITHHELD.to_owned());
            }
        };
        let category = if self.database == CONNECTION_FAILED {
            "database unreachable"
        } else {
            "schema migrations pending"
        };
        if self.error.is_some() {
            self.error = Some(category.to_owned());
        }
        let c = &mut self.components;
        if c.database.error.is_some() {
            c.database.error = Some(category.to_owned());
        }
        for actor in c.actors.values_mut() {
            withhold(&mut actor.last_error);
        }
        withhold(&mut c.audit.last_error);
        withhold(&mut c.slack.last_error);
        c.slack.failing = None;
        withhold(&mut c.schedulers.status.last_error);
        withhold(&mut c.schedulers.delivery.last_error);
        withhold(&mut c.alerts.last_error);
        self
    }
}
