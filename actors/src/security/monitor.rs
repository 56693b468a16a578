//! The state shared by the monitor handles and the actor, and the
//! [`SecurityMonitor`] handle the request path calls.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use uuid::Uuid;

use super::actor::{Report, SecurityActor};
use super::violations::Violation;
use super::windows::{Detector, NotifyGate, SecurityConfig};
use crate::Clock;
use crate::audit::Auditor;
use crate::notify::{Notification, NotificationOutbox};
use crate::supervisor::{ActorHandle, RestartPolicy, Supervisor};

/// The log ids of the violation rows this monitor recorded itself: when
/// they come back committed, they were logged and gated already. Bounded:
/// past [`MAX_OWN_ROWS`] (rows waiting for a database that is away), the
/// oldest are forgotten, and such a row is announced a second time when it
/// is finally committed — through the gate, so at most a second notice.
#[derive(Debug, Default)]
pub(super) struct OwnRows {
    pub(super) order: VecDeque<Uuid>,
    pub(super) ids: HashSet<Uuid>,
}

pub(super) const MAX_OWN_ROWS: usize = 10_000;

impl OwnRows {
    pub(super) fn insert(&mut self, id: Uuid) {
        if self.ids.len() >= MAX_OWN_ROWS
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        if self.ids.insert(id) {
            self.order.push_back(id);
        }
    }

    /// Whether `id` is one of ours; forgets it (each row comes back once).
    pub(super) fn take(&mut self, id: &Uuid) -> bool {
        if !self.ids.remove(id) {
            return false;
        }
        self.order.retain(|kept| kept != id);
        true
    }
}

/// At most this many notices wait for the outbox; more are counted
/// (`security_notices_dropped_total`) and dropped (their violations are in
/// the trail all the same).
pub(super) const MAX_WAITING_NOTICES: usize = 10_000;

pub(super) struct State {
    pub(super) detector: Detector,
    pub(super) gate: NotifyGate,
    pub(super) own: OwnRows,
    /// Notices waiting to be written to the outbox, oldest first.
    pub(super) waiting: Vec<Notification>,
}

/// State that outlives any one instance of the actor.
pub(super) struct Shared {
    state: Mutex<State>,
    pub(super) auditor: Auditor,
    pub(super) outbox: Arc<dyn NotificationOutbox>,
    pub(super) clock: Arc<dyn Clock>,
}

impl Shared {
    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What callers hold. Cheap to clone.
#[derive(Clone)]
pub struct SecurityMonitor {
    shared: Arc<Shared>,
    actor: ActorHandle<SecurityActor>,
}

impl fmt::Debug for SecurityMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecurityMonitor").finish_non_exhaustive()
    }
}

impl SecurityMonitor {
    /// Starts the SecurityActor under `supervisor` as `security_monitor`. It
    /// subscribes to `auditor`'s notable events: every committed violation
    /// row it did not record itself is announced as well.
    pub fn start(
        supervisor: &Supervisor,
        policy: RestartPolicy,
        config: SecurityConfig,
        auditor: Auditor,
        outbox: Arc<dyn NotificationOutbox>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let gate = NotifyGate::new(config.notify_cooldown).with_max_tracked(config.max_tracked);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                detector: Detector::new(config),
                gate,
                own: OwnRows::default(),
                waiting: Vec::new(),
            }),
            auditor,
            outbox,
            clock,
        });
        let for_factory = shared.clone();
        let actor = supervisor.spawn("security_monitor", policy, move |child| SecurityActor {
            child: child.clone(),
            shared: for_factory.clone(),
            flushing: false,
        });
        Self { shared, actor }
    }

    /// A failed authentication from `ip`, counted. `Some(remaining)` when
    /// `ip` was already blocked: answer 429 with it as `Retry-After` (the
    /// attempt counts as refused during the block, never towards a new one).
    /// `None`: answer 401; this attempt may itself have started a block.
    /// Asked only once the token is known to be bad, so a valid token is
    /// never held to its address's block.
    pub fn failed_auth(&self, ip: &str) -> Option<Duration> {
        let now = self.shared.clock.now();
        let (blocked, violation) = {
            let mut state = self.shared.state();
            let blocked = state.detector.blocked(ip, now);
            (blocked, state.detector.failed_auth(ip, now))
        };
        if let Some(violation) = violation {
            self.actor.do_send(Report(violation));
        }
        blocked
    }

    /// `Some(remaining)` while `ip` is blocked: answer 429 with it as
    /// `Retry-After`.
    pub fn blocked(&self, ip: &str) -> Option<Duration> {
        let now = self.shared.clock.now();
        self.shared.state().detector.blocked(ip, now)
    }

    /// One request by an authenticated principal.
    pub fn request(&self, principal_id: &str, tenant_id: Option<&str>) {
        let now = self.shared.clock.now();
        let violation = self
            .shared
            .state()
            .detector
            .request(principal_id, tenant_id, now);
        if let Some(violation) = violation {
            self.actor.do_send(Report(violation));
        }
    }

    /// A violation a handler found (`cross_tenant_access`,
    /// `unauthorized_access`).
    pub fn report(&self, violation: Violation) {
        self.actor.do_send(Report(violation));
    }
}
