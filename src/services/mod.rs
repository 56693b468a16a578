//! The services layer: what the HTTP front and the schedulers call to get
//! work done, between the routes above and the store and adapters below.

pub mod activity;
pub mod agent_runs;
pub mod health;
pub mod reports;

use overseer_actors::supervisor::ActorHandle;

/// The running actors.
#[derive(Clone)]
pub struct Actors {
    pub supervisor: overseer_actors::supervisor::Supervisor,
    pub database_watch: ActorHandle<overseer_actors::db_watch::DatabaseWatch>,
    pub auditor: overseer_actors::audit::Auditor,
    pub security: overseer_actors::security::SecurityMonitor,
    /// Only with `MOCK_ADAPTER=true`.
    pub mock_adapter: Option<ActorHandle<overseer_actors::mock_adapter::MockAdapter>>,
    pub slack: overseer_actors::slack::SlackRouter,
    pub status_scheduler: overseer_actors::scheduler::StatusScheduler,
    pub delivery_scheduler: overseer_actors::scheduler::StatusScheduler,
    pub webhook_sender: overseer_actors::webhook::WebhookSender,
    pub sse: overseer_actors::activity::SseHub,
    pub alerts: overseer_actors::alerts::Alerts,
    /// Agent runs: what the API and the actors record runs through.
    pub agent_runs: crate::services::agent_runs::AgentRuns,
}
