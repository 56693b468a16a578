//! The port: the `alerts` table and what the rules count.

use std::pin::Pin;

use super::episodes::Alert;
use super::rules::{Readings, Windows};
use crate::audit::{AuditEvent, CommittedEvent};
use crate::notify::Notification;

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'static>>;

/// A write to the `alerts` table. Every variant but `Insert` applies only if
/// the episode's revision is still `revision`.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertChange {
    /// A new episode (refused if the (rule, scope) has an unresolved one).
    Insert(Alert),
    /// The episode's new state (any of its fields), `revision + 1`.
    Update { alert: Alert, revision: i64 },
    /// A pending episode that never fired.
    Delete { id: i64, revision: i64 },
}

/// The port: the `alerts` table, and what the rules count.
pub trait AlertStore: Send + Sync + 'static {
    /// Counts for every rule at `windows`.
    fn read(&self, windows: Windows) -> BoxFuture<Readings>;

    /// Unresolved episodes.
    fn current(&self) -> BoxFuture<Vec<Alert>>;

    /// Applies `change` with its audit rows and notices in one transaction;
    /// `None` when the episode changed meanwhile (another replica), in which
    /// case nothing was written.
    fn apply(
        &self,
        change: AlertChange,
        audit: Vec<AuditEvent>,
        notifications: Vec<Notification>,
    ) -> BoxFuture<Option<Vec<CommittedEvent>>>;
}
