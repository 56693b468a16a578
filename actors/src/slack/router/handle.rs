//! The router's settings and status, the state that outlives a restart of
//! the actor, and the [`SlackRouter`] handle callers hold.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::actor::{Poll, SlackRouterActor};
use super::ports::{SlackStore, SlackTransport, Webhooks};
use crate::Clock;
use crate::audit::Auditor;
use crate::notify::{Notification, NotificationOutbox};
use crate::slack::pacer::{Pace, Pacer};
use crate::slack::route::Channel;
use crate::supervisor::{ActorHandle, RestartPolicy, Supervisor};

/// The router's settings.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    /// How often the outbox is read.
    pub poll_interval: Duration,
    pub pace: Pace,
    /// More than this many waiting for one webhook go as one digest.
    pub digest_threshold: usize,
    /// At most this many events in one digest.
    pub max_digest: usize,
    /// Attempts (429s not counted) before a message is `failed`.
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// Wait after a 429 without `Retry-After`.
    pub default_retry_after: Duration,
    /// How long a claimed row stays leased to this process.
    pub lease: Duration,
    /// Admin dashboard base URL for the messages' buttons.
    pub admin_ui_url: Option<String>,
    /// Service-wide webhooks for events with no tenant.
    pub defaults: Webhooks,
}

impl Default for SlackConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(250),
            pace: Pace::default(),
            digest_threshold: 10,
            max_digest: 500,
            max_attempts: 8,
            retry_base: Duration::from_secs(2),
            retry_cap: Duration::from_secs(600),
            default_retry_after: Duration::from_secs(30),
            lease: Duration::from_secs(60),
            admin_ui_url: None,
            defaults: Webhooks::default(),
        }
    }
}

/// A webhook that answered with a permanent error.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailingWebhook {
    pub tenant_id: Option<String>,
    pub channel: Channel,
    /// Masked.
    pub webhook: String,
    pub status: u16,
    pub reason: String,
    pub since: DateTime<Utc>,
}

/// What `/health` shows of the router.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SlackStatus {
    /// Outbox rows waiting (read at most once a second).
    pub queue_depth: u64,
    pub last_sent_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// Webhooks marked failing, until a send to them succeeds.
    pub failing: Vec<FailingWebhook>,
}

/// State that outlives a restart of the actor.
pub(super) struct Shared {
    pub(super) config: SlackConfig,
    pub(super) store: Arc<dyn SlackStore>,
    pub(super) transport: Arc<dyn SlackTransport>,
    pub(super) outbox: Arc<dyn NotificationOutbox>,
    pub(super) auditor: Auditor,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) pacers: Mutex<HashMap<String, Pacer>>,
    pub(super) failing: Mutex<HashMap<String, FailingWebhook>>,
    pub(super) status: Mutex<SlackStatus>,
    /// Failure notices waiting to be queued.
    pub(super) notices: Mutex<Vec<Notification>>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The running router: a handle for `/health` and tests.
#[derive(Clone)]
pub struct SlackRouter {
    shared: Arc<Shared>,
    actor: ActorHandle<SlackRouterActor>,
}

impl std::fmt::Debug for SlackRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackRouter").finish_non_exhaustive()
    }
}

impl SlackRouter {
    /// Starts the router under `supervisor` as `slack_router`.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        supervisor: &Supervisor,
        policy: RestartPolicy,
        config: SlackConfig,
        store: Arc<dyn SlackStore>,
        transport: Arc<dyn SlackTransport>,
        outbox: Arc<dyn NotificationOutbox>,
        auditor: Auditor,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let shared = Arc::new(Shared {
            config,
            store,
            transport,
            outbox,
            auditor,
            clock,
            pacers: Mutex::new(HashMap::new()),
            failing: Mutex::new(HashMap::new()),
            status: Mutex::new(SlackStatus::default()),
            notices: Mutex::new(Vec::new()),
        });
        let for_factory = shared.clone();
        let actor = supervisor.spawn("slack_router", policy, move |child| SlackRouterActor {
            child: child.clone(),
            shared: for_factory.clone(),
            loading: false,
            busy: HashSet::new(),
            depth_read_at: None,
        });
        Self { shared, actor }
    }

    pub fn status(&self) -> SlackStatus {
        let mut status = lock(&self.shared.status).clone();
        status.failing = lock(&self.shared.failing).values().cloned().collect();
        status
            .failing
            .sort_by(|a, b| (a.since, &a.webhook).cmp(&(b.since, &b.webhook)));
        status
    }

    /// Reads the outbox now instead of at the next poll.
    pub fn poke(&self) {
        self.actor.do_send(Poll);
    }
}
