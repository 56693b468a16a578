//! The audit write path: [`Auditor`] (what producers hold) and [`AuditActor`]
//! (the supervised batcher behind it).
//!
//! Producers put events on a bounded queue that lives outside the actor, so a
//! restart loses nothing; the batch being flushed stays in that shared state
//! until its outcome is known, so a panic mid-flush loses nothing either (the
//! next instance flushes it again, idempotently on `log_id`). Idempotency
//! holds only for the same event: a `log_id` reused by a different one is
//! refused or recorded, never skipped (see [`idempotency`]).
//!
//! The actor flushes when [`AuditConfig::batch_size`] events are waiting or
//! every [`AuditConfig::flush_interval`], through the [`AuditStore`] port (one
//! transaction per batch). Up to [`AuditConfig::pipeline`] batches are in
//! flight at once, so the next batch's transaction is under way while the
//! previous one commits; they still reach the database one after the other
//! and in order ([`Turn`]): a batch takes the trail's lock only once the batch
//! before it holds it, and commits only if that one committed. When the
//! database cannot take a batch, the batch goes to the [`spool::Spool`]
//! (fsync'd) and so does every batch after it until the spool is replayed,
//! so each chain keeps the order the events arrived in. Outcomes are handled
//! in batch order. Durable producers are answered once their events are
//! committed or spooled.
//!
//! After commit, events go to subscribers ([`AuditCommitted`] for the activity
//! stream, [`NotableEvent`] for the Slack router and the security monitor) and
//! to the file sinks, which a thread of their own writes in commit order
//! ([`sink_writer::SinkWriter`]), so the next flush never waits for the disk.
//!
//! Files: this one holds the port ([`AuditStore`]) and the public types;
//! `handle.rs` the [`Auditor`]; `pipeline.rs` the queue, batch forming, the
//! pipelined flush and the actor; `replay.rs` the spool replay;
//! `sink_writer.rs` the sinks' thread.

pub mod event;
pub mod idempotency;
pub mod redact;
pub mod sinks;
pub mod spool;

mod handle;
mod pipeline;
mod replay;
mod sink_writer;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{oneshot, watch};

pub use event::{AuditEvent, CommittedEvent, GENESIS_HASH, chain_hash, content_digest};
pub use idempotency::{Appended, Offer, Share};
pub use redact::Redactor;
pub use sinks::{FileSinks, SinkConfig};
pub use spool::Spool;

pub use handle::Auditor;
pub use pipeline::AuditActor;

/// The port to the database: append a batch in one transaction, assigning
/// each event its `id`, `seq` and hashes. An event the same as the one
/// already stored under its `log_id` is skipped (idempotency); a different
/// one is not stored either, and is refused or recorded as
/// [`idempotency::plan`] says. Returns what it stored and the conflicts.
pub trait AuditStore: Send + Sync + 'static {
    /// Appends with every `log_id` looked up and nobody waiting for the
    /// answer ([`Offer::answered`]): a conflict is recorded, at `now`.
    fn append(&self, events: Arc<Vec<AuditEvent>>, now: DateTime<Utc>) -> AppendFuture;

    /// [`append`](Self::append) for a batch that may follow another one
    /// still in flight, as `turn` says. An implementation that overlaps the
    /// two must take the trail's lock only after [`Turn::previous_locked`],
    /// call [`Turn::locked`] once it holds it, and commit only if
    /// [`Turn::previous_committed`] says so, else roll back and return
    /// [`AppendError::behind`].
    ///
    /// Only the events whose `log_id` is in `offer.maybe_stored` can be in
    /// the trail already, and need looking up: the rest were minted by this
    /// service and never offered to a database (see [`Source`]). A repeat
    /// among those all the same (a bug), or an event stored by another
    /// writer since the lookup (two submissions racing for one `log_id`),
    /// makes the unique index refuse the batch, which is then spooled and
    /// replayed with every `log_id` looked up: the loser of the race is
    /// recorded then, never dropped.
    ///
    /// This default overlaps nothing, looks every `log_id` up and answers
    /// no one (conflicts are recorded): it waits for the previous batch's
    /// outcome, then appends.
    fn append_after(
        &self,
        events: Arc<Vec<AuditEvent>>,
        offer: Offer,
        mut turn: Turn,
    ) -> AppendFuture {
        let append = self.append(events, offer.now);
        Box::pin(async move {
            if !turn.previous_committed().await {
                return Err(AppendError::behind());
            }
            turn.locked();
            append.await
        })
    }
}

/// What [`AuditStore::append`] returns. Nothing happens before it is polled.
pub type AppendFuture =
    Pin<Box<dyn Future<Output = Result<Appended, AppendError>> + Send + 'static>>;

/// Where a batch stands in the flush pipeline: the batch flushed just before
/// it may still be in flight. See [`AuditStore::append_after`].
#[derive(Debug, Default)]
pub struct Turn {
    previous_locked: Option<oneshot::Receiver<()>>,
    locked: Option<oneshot::Sender<()>>,
    previous: Option<watch::Receiver<Stage>>,
}

impl Turn {
    /// Returns once the batch before this one holds the trail's lock, or has
    /// given up on it (at once when there is none): take the lock after this,
    /// never before, or the two could take it in the wrong order.
    pub async fn previous_locked(&mut self) {
        if let Some(locked) = self.previous_locked.take() {
            let _ = locked.await;
        }
    }

    /// Tells the batch after this one that this one holds the lock.
    pub fn locked(&mut self) {
        if let Some(locked) = self.locked.take() {
            let _ = locked.send(());
        }
    }

    /// Waits for the outcome of the batch before this one: `true` if it
    /// committed (or there is none), `false` if it did not, or its outcome
    /// will never be known (its flush was abandoned).
    pub async fn previous_committed(&mut self) -> bool {
        let Some(previous) = self.previous.as_mut() else {
            return true;
        };
        match previous.wait_for(|stage| stage.outcome.is_some()).await {
            Ok(stage) => stage.outcome == Some(Outcome::Committed),
            Err(_) => false,
        }
    }
}

/// How far a batch in flight has got, as the batch after it sees it.
#[derive(Debug, Clone, Copy, Default)]
struct Stage {
    outcome: Option<Outcome>,
    /// Its outcome is handled: producers answered, committed events handed
    /// to subscribers and sinks.
    handled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Committed,
    Spooled,
    /// Neither committed nor spooled.
    Failed,
}

/// Why a batch was not stored. `transient` failures (database unreachable,
/// timed out) are retried from the spool as they are; others are retried event
/// by event, and the events the database still refuses are set aside.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct AppendError {
    pub transient: bool,
    pub reason: String,
}

impl AppendError {
    /// Rolled back because the batch before it did not commit.
    pub fn behind() -> Self {
        Self {
            transient: true,
            reason: "the batch before it was not committed".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub batch_size: usize,
    pub flush_interval: Duration,
    /// Batches in flight at once (at least 1).
    pub pipeline: usize,
    /// Events waiting (not yet committed or spooled) beyond which durable
    /// producers are refused. Fire-and-forget events get a quarter more room,
    /// then are dropped and counted.
    pub queue_capacity: usize,
    pub redactor: Redactor,
    pub spool_dir: PathBuf,
    pub sinks: SinkConfig,
}

/// Who produced an event: for metrics, and for idempotency. Only `Api`
/// events can carry a `log_id` the database has seen (a client's retry), so
/// only theirs are looked up before a batch is inserted; the others were
/// minted by [`AuditEvent::new`] here. Events put back on the queue after a
/// flush whose outcome is not known are looked up whatever their source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `POST /api/v1/audit/events`: the client may set `log_id`.
    Api,
    /// The request-audit middleware.
    Request,
    /// The service itself (auth decisions, actors).
    Internal,
}

impl Source {
    pub fn label(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::Request => "request",
            Source::Internal => "internal",
        }
    }
}

/// Why a durable submission was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    #[error("the audit queue is full")]
    QueueFull,
    #[error("the events could not be made durable: {0}")]
    NotDurable(String),
    /// The event at `index` of the submission has a `log_id` already used
    /// by a different event (another tenant's, or other content): nothing
    /// of the submission was stored.
    #[error("event {index}'s log_id is already used by a different event")]
    LogIdConflict { index: usize },
}

/// An event a client sent through the ingest API, as parsed.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub event: AuditEvent,
    /// The client set `created_at`; otherwise it is the time of receipt,
    /// which is not part of what a retry must repeat.
    pub created_at_given: bool,
}

/// What `/health` shows of the audit path. `queue_depth` and
/// `spool_events` are read when asked; the rest is kept by the actor.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditStatus {
    pub queue_depth: usize,
    pub spool_events: usize,
    pub last_flush_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// Committed events, in commit order, for the activity stream.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct AuditCommitted(pub Arc<[CommittedEvent]>);

/// A committed event someone may need to hear about: a failed operation or a
/// security violation (for the Slack router and the security monitor).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct NotableEvent(pub Arc<CommittedEvent>);

impl NotableEvent {
    pub fn is_notable(event: &AuditEvent) -> bool {
        !event.success || event.security_violation
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Flush now if anything is waiting.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Flush;

/// How one flush ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlushOutcome {
    Nothing,
    Flushed(usize),
    Spooled(usize),
    /// Neither the database nor the spool took the batch; durable producers
    /// were refused, fire-and-forget events stay queued.
    Failed(String),
    /// The flush of the batch before it ended without an outcome (this
    /// instance is failing); the batch stays in flight for the next one.
    Abandoned,
}

/// Runs blocking file I/O off the actor's thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}
