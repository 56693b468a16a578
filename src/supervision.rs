//! The service's actors, each started under the supervisor, and the ports the
//! actors crate asks the service to implement.
//!
//! Adding an actor is one `supervisor.spawn(name, policy, factory)` line in
//! [`start`]; its status then shows in `/health` and its restarts in the logs
//! and `/metrics` without further work.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use overseer_actors::Clock;
use overseer_actors::db_watch::{DatabaseProbe, DatabaseWatch};
use overseer_actors::supervisor::{ActorHandle, Supervisor};

use crate::config::SupervisionConfig;
use crate::store::Store;

impl DatabaseProbe for Store {
    fn ping(&self) -> Pin<Box<dyn Future<Output = Result<Duration, String>> + Send + 'static>> {
        let store = self.clone();
        Box::pin(async move { store.ping().await.map_err(|e| e.short_reason()) })
    }
}

/// The running actors.
#[derive(Clone)]
pub struct Actors {
    pub supervisor: Supervisor,
    pub database_watch: ActorHandle<DatabaseWatch>,
}

/// Starts every actor of the service on the current actix arbiter.
pub fn start(config: &SupervisionConfig, store: &Store, clock: Arc<dyn Clock>) -> Actors {
    let supervisor = Supervisor::new(clock);
    let policy = config.policy.clone();

    let probe: Arc<dyn DatabaseProbe> = Arc::new(store.clone());
    let interval = config.database_watch_interval;
    let database_watch = supervisor.spawn("database_watch", policy, move |child| {
        DatabaseWatch::new(child.clone(), probe.clone(), interval)
    });

    Actors {
        supervisor,
        database_watch,
    }
}
