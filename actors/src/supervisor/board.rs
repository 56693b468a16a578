//! What operators see of supervision: each child's status, restart count, last
//! restart and last error (`/health` `components.actors`), and a short history
//! of restarts.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChildState {
    /// An instance is live.
    Running,
    /// Waiting out a backoff before the next instance starts.
    Restarting,
    /// The restart intensity was exceeded; retried at the backoff cap.
    Down,
    /// A transient child that stopped cleanly, or any child once the
    /// supervisor is shut down; not restarted.
    Stopped,
}

/// Why an instance ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    Panic(String),
    Error(String),
    Stopped,
}

impl ExitReason {
    /// The `reason` label of `actor_restarts_total`.
    pub fn label(&self) -> &'static str {
        match self {
            ExitReason::Panic(_) => "panic",
            ExitReason::Error(_) => "error",
            ExitReason::Stopped => "stopped",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            ExitReason::Panic(m) | ExitReason::Error(m) => m,
            ExitReason::Stopped => "stopped",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChildStatus {
    pub status: ChildState,
    pub restarts: u64,
    pub last_restart_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// One restart, for tests and post-mortems.
#[derive(Debug, Clone)]
pub struct RestartEvent {
    pub actor: &'static str,
    pub reason: ExitReason,
    pub backoff: Duration,
    /// When the failed instance ended (monotonic).
    pub failed_at: Instant,
    pub escalated: bool,
}

const HISTORY: usize = 256;

#[derive(Debug, Default)]
struct Inner {
    children: BTreeMap<&'static str, ChildStatus>,
    history: VecDeque<RestartEvent>,
}

/// Shared, cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct SupervisionBoard {
    inner: Arc<RwLock<Inner>>,
}

impl SupervisionBoard {
    pub fn snapshot(&self) -> BTreeMap<&'static str, ChildStatus> {
        self.read(|inner| inner.children.clone())
    }

    pub fn status(&self, actor: &str) -> Option<ChildStatus> {
        self.read(|inner| inner.children.get(actor).cloned())
    }

    /// Names of the supervised children.
    pub fn names(&self) -> Vec<&'static str> {
        self.read(|inner| inner.children.keys().copied().collect())
    }

    /// True when some child is down.
    pub fn any_down(&self) -> bool {
        self.read(|inner| {
            inner
                .children
                .values()
                .any(|c| c.status == ChildState::Down)
        })
    }

    /// The restarts recorded for `actor`, oldest first (the last 256 of all).
    pub fn history(&self, actor: &str) -> Vec<RestartEvent> {
        self.read(|inner| {
            inner
                .history
                .iter()
                .filter(|e| e.actor == actor)
                .cloned()
                .collect()
        })
    }

    pub(crate) fn register(&self, actor: &'static str) {
        self.write(|inner| {
            inner.children.entry(actor).or_insert(ChildStatus {
                status: ChildState::Running,
                restarts: 0,
                last_restart_at: None,
                last_error: None,
            });
        });
    }

    pub(crate) fn set_state(&self, actor: &'static str, status: ChildState) {
        self.write(|inner| {
            if let Some(child) = inner.children.get_mut(actor) {
                child.status = status;
            }
        });
    }

    pub(crate) fn record_restart(&self, event: RestartEvent, restarts: u64, at: DateTime<Utc>) {
        self.write(|inner| {
            if let Some(child) = inner.children.get_mut(event.actor) {
                child.status = if event.escalated {
                    ChildState::Down
                } else {
                    ChildState::Restarting
                };
                child.restarts = restarts;
                child.last_restart_at = Some(at);
                child.last_error = Some(event.reason.message().to_owned());
            }
            if inner.history.len() == HISTORY {
                inner.history.pop_front();
            }
            inner.history.push_back(event);
        });
    }

    fn read<T>(&self, f: impl FnOnce(&Inner) -> T) -> T {
        f(&self.inner.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn write<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.write().unwrap_or_else(PoisonError::into_inner))
    }
}
