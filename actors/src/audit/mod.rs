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
//! ([`SinkWriter`]), so the next flush never waits for the disk.

pub mod event;
pub mod idempotency;
pub mod redact;
pub mod sinks;
pub mod spool;

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

pub use event::{AuditEvent, CommittedEvent, GENESIS_HASH, chain_hash, content_digest};
pub use idempotency::{Appended, Offer, Share};
pub use redact::Redactor;
pub use sinks::{FileSinks, SinkConfig};
pub use spool::Spool;

use crate::Clock;
use crate::supervisor::{ActorHandle, Child};

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

type Ack = oneshot::Sender<Result<(), AuditError>>;

struct Submission {
    events: Vec<AuditEvent>,
    source: Source,
    ack: Option<Ack>,
    /// Its events may be stored already (see [`Source`]).
    recheck: bool,
}

/// A batch being flushed: its events, and who submitted which of them.
struct Batch {
    id: u64,
    events: Arc<Vec<AuditEvent>>,
    parts: Vec<Part>,
}

/// One submission's share of a [`Batch`], in order.
struct Part {
    len: usize,
    source: Source,
    ack: Option<Ack>,
}

impl Batch {
    /// The submissions again, to be queued anew. Whether the batch
    /// committed is not known (or it failed halfway), so their events are
    /// looked up when flushed again.
    fn into_submissions(self) -> Vec<Submission> {
        let mut offset = 0;
        self.parts
            .into_iter()
            .map(|part| {
                let events = self.events[offset..offset + part.len].to_vec();
                offset += part.len;
                Submission {
                    events,
                    source: part.source,
                    ack: part.ack,
                    recheck: true,
                }
            })
            .collect()
    }
}

#[derive(Default)]
struct Queue {
    pending: VecDeque<Submission>,
    /// Events in `pending` and `inflight`.
    depth: usize,
    /// Events in `pending`.
    waiting: usize,
    /// The batches being flushed, oldest first; each is taken out only once
    /// its outcome is known.
    inflight: VecDeque<Batch>,
    next_batch: u64,
    /// Submissions at the head of `pending` that failed batches put back
    /// since a batch was last formed: a later failed batch puts its own
    /// behind them, so arrival order holds.
    requeued: usize,
    status: AuditStatus,
}

#[derive(Default)]
struct Subscribers {
    committed: Vec<Recipient<AuditCommitted>>,
    notable: Vec<Recipient<NotableEvent>>,
}

/// State that outlives any one instance of the actor.
struct Shared {
    config: AuditConfig,
    queue: Mutex<Queue>,
    subscribers: Mutex<Subscribers>,
    spool: Arc<Mutex<Spool>>,
    sinks: SinkWriter,
    store: Arc<dyn AuditStore>,
    clock: Arc<dyn Clock>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What producers hold. Cheap to clone.
#[derive(Clone)]
pub struct Auditor {
    shared: Arc<Shared>,
    actor: ActorHandle<AuditActor>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor").finish_non_exhaustive()
    }
}

impl Auditor {
    /// Opens the spool and the file sinks and starts the AuditActor under
    /// `supervisor` as `audit`. A spool left by an earlier run is replayed.
    pub fn start(
        supervisor: &crate::supervisor::Supervisor,
        policy: crate::supervisor::RestartPolicy,
        config: AuditConfig,
        store: Arc<dyn AuditStore>,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<Self> {
        let spool = Spool::open(&config.spool_dir)?;
        if !spool.is_empty() {
            tracing::warn!(
                events = spool.events(),
                dir = %config.spool_dir.display(),
                "audit spool holds events from an earlier run; replaying them"
            );
        }
        let sinks = FileSinks::open(config.sinks.clone())?;
        metrics::gauge!("audit_spool_events").set(spool.events() as f64);
        let shared = Arc::new(Shared {
            config,
            queue: Mutex::new(Queue::default()),
            subscribers: Mutex::default(),
            spool: Arc::new(Mutex::new(spool)),
            sinks: SinkWriter::start(sinks)?,
            store,
            clock,
        });
        let for_factory = shared.clone();
        let actor = supervisor.spawn("audit", policy, move |child| {
            AuditActor::new(child.clone(), for_factory.clone())
        });
        Ok(Self { shared, actor })
    }

    /// Records `event` without waiting. Never blocks; if the queue is far past
    /// its capacity the event is dropped, counted and logged.
    pub fn record(&self, source: Source, mut event: AuditEvent) {
        self.prepare(&mut event);
        let limit = self.shared.config.queue_capacity + self.shared.config.queue_capacity / 4;
        if !self.enqueue(source, vec![event], None, limit) {
            metrics::counter!("audit_events_total", "source" => source.label(), "result" => "dropped")
                .increment(1);
            tracing::error!(source = source.label(), "audit queue full; event dropped");
        }
    }

    /// Records `events` and returns once they are durable: committed to the
    /// database or fsync'd to the spool.
    pub async fn record_durable(
        &self,
        source: Source,
        mut events: Vec<AuditEvent>,
    ) -> Result<(), AuditError> {
        for event in &mut events {
            self.prepare(event);
        }
        self.enqueue_durable(source, events).await
    }

    /// Records the events of one ingest request ([`Source::Api`]) as
    /// [`record_durable`](Self::record_durable) does, each with its
    /// [`content_digest`] (of the event as stored, after redaction), so that
    /// a retry is told from a reuse of its `log_id`. All or nothing: if one
    /// event's `log_id` is already used by a different event (while the
    /// database answers; see [`idempotency`] for the spool),
    /// [`AuditError::LogIdConflict`] names it and none is stored.
    pub async fn record_ingested(&self, events: Vec<Ingested>) -> Result<(), AuditError> {
        let events = events
            .into_iter()
            .map(|mut ingested| {
                self.prepare(&mut ingested.event);
                let digest = content_digest(&ingested.event, ingested.created_at_given);
                ingested.event.ingest_digest = Some(digest);
                ingested.event
            })
            .collect();
        self.enqueue_durable(Source::Api, events).await
    }

    async fn enqueue_durable(
        &self,
        source: Source,
        events: Vec<AuditEvent>,
    ) -> Result<(), AuditError> {
        if events.is_empty() {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        let n = events.len() as u64;
        if !self.enqueue(source, events, Some(tx), self.shared.config.queue_capacity) {
            metrics::counter!("audit_events_total", "source" => source.label(), "result" => "refused")
                .increment(n);
            return Err(AuditError::QueueFull);
        }
        rx.await
            .unwrap_or_else(|_| Err(AuditError::NotDurable("the audit actor went away".into())))
    }

    /// Publishes events another path already committed (a state change and
    /// its audit row in one transaction): file sinks and subscribers.
    pub fn committed(&self, events: Vec<CommittedEvent>) {
        if !events.is_empty() {
            self.actor.do_send(Publish(events));
        }
    }

    /// Subscribes to every committed event.
    pub fn subscribe(&self, recipient: Recipient<AuditCommitted>) {
        let mut subscribers = lock(&self.shared.subscribers);
        // A restarted subscriber subscribes again; its old address is gone.
        subscribers.committed.retain(Recipient::connected);
        subscribers.committed.push(recipient);
    }

    /// Subscribes to notable committed events.
    pub fn subscribe_notable(&self, recipient: Recipient<NotableEvent>) {
        let mut subscribers = lock(&self.shared.subscribers);
        // A restarted subscriber subscribes again; its old address is gone.
        subscribers.notable.retain(Recipient::connected);
        subscribers.notable.push(recipient);
    }

    pub fn status(&self) -> AuditStatus {
        let spool_events = lock(&self.shared.spool).events();
        let queue = lock(&self.shared.queue);
        AuditStatus {
            queue_depth: queue.depth,
            spool_events,
            ..queue.status.clone()
        }
    }

    /// Asks for a flush now.
    pub fn flush(&self) {
        self.actor.do_send(Flush);
    }

    /// At shutdown: flushes what waits for up to `within`; whatever is still
    /// waiting then (the database is slow or away) is written to the spool,
    /// to be replayed at the next start. Durable producers still waiting are
    /// answered once their events are spooled.
    pub async fn shutdown(&self, within: Duration) {
        let deadline = Instant::now() + within;
        self.drain(deadline).await;
        // What was committed reaches the files too (the thread writes on
        // after `deadline` for a little while if the disk is slow).
        let sinks_deadline = deadline.max(Instant::now() + SINK_GRACE);
        while !self.shared.sinks.idle() && Instant::now() < sinks_deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn drain(&self, deadline: Instant) {
        while Instant::now() < deadline {
            if lock(&self.shared.queue).depth == 0 {
                return;
            }
            self.flush();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The batch in flight is spooled too: if its commit lands after all,
        // the replay skips it (idempotent on `log_id`).
        let (events, acks) = {
            let mut queue = lock(&self.shared.queue);
            let pending: Vec<Submission> = queue.pending.drain(..).collect();
            queue.waiting = 0;
            let mut events: Vec<AuditEvent> = queue
                .inflight
                .iter()
                .flat_map(|batch| batch.events.iter().cloned())
                .collect();
            let mut acks = Vec::new();
            for submission in pending {
                events.extend(submission.events);
                acks.extend(submission.ack);
            }
            (events, acks)
        };
        if events.is_empty() {
            return;
        }
        let n = events.len();
        let spool = self.shared.spool.clone();
        match blocking(move || lock(&spool).append(&events)).await {
            Ok(()) => {
                tracing::warn!(
                    events = n,
                    "audit events still waiting at shutdown were spooled"
                );
                for ack in acks {
                    let _ = ack.send(Ok(()));
                }
            }
            Err(e) => tracing::error!(
                critical = true,
                events = n,
                error = %e,
                "audit events waiting at shutdown could not be spooled and are lost"
            ),
        }
    }

    /// Redaction, and the clock's precision for timestamps.
    fn prepare(&self, event: &mut AuditEvent) {
        self.shared.config.redactor.redact_event(event);
        event.created_at = event::truncate_to_micros(event.created_at);
    }

    /// Queues a submission unless that would take the depth past `limit`.
    fn enqueue(
        &self,
        source: Source,
        events: Vec<AuditEvent>,
        ack: Option<oneshot::Sender<Result<(), AuditError>>>,
        limit: usize,
    ) -> bool {
        let n = events.len();
        let batch_size = self.shared.config.batch_size;
        let crossed = {
            let mut queue = lock(&self.shared.queue);
            if queue.depth + n > limit {
                return false;
            }
            let before = queue.waiting;
            queue.depth += n;
            queue.waiting += n;
            queue.pending.push_back(Submission {
                events,
                source,
                ack,
                recheck: source == Source::Api,
            });
            metrics::gauge!("audit_queue_depth").set(queue.depth as f64);
            before < batch_size && queue.waiting >= batch_size
        };
        if crossed {
            self.actor.do_send(Flush);
        }
        true
    }
}

/// Flush now if anything is waiting.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Flush;

/// Write already-committed events to the sinks and subscribers.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Publish(Vec<CommittedEvent>);

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

/// The supervised batcher. All its state that matters is in [`Shared`].
pub struct AuditActor {
    child: Child,
    shared: Arc<Shared>,
    /// Flushes under way.
    flushing: usize,
    /// The batch flushed last, while it is in flight: the next one follows it.
    last: Option<Last>,
    replaying: bool,
    replay_backoff: Duration,
    next_replay: Instant,
}

const REPLAY_BACKOFF_MIN: Duration = Duration::from_millis(100);
const REPLAY_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Spool files replayed per turn, so a long spool drains in steps.
const REPLAY_FILES_PER_TURN: usize = 16;

impl AuditActor {
    fn new(child: Child, shared: Arc<Shared>) -> Self {
        Self {
            child,
            shared,
            flushing: 0,
            last: None,
            replaying: false,
            replay_backoff: REPLAY_BACKOFF_MIN,
            next_replay: Instant::now(),
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        self.maybe_replay(ctx);
        // Up to `pipeline` flushes, in order; the spool replay runs beside them.
        while self.flushing < self.shared.config.pipeline.max(1) {
            let Some(formed) = form_batch(&self.shared) else {
                return;
            };
            self.start_flush(formed, ctx);
        }
    }

    fn start_flush(&mut self, formed: Formed, ctx: &mut Context<Self>) {
        let (locked, locked_rx) = oneshot::channel();
        let (stage, stage_rx) = watch::channel(Stage::default());
        let mut previous = self.last.take();
        let turn = Turn {
            previous_locked: previous.as_mut().and_then(|p| p.locked.take()),
            locked: Some(locked),
            previous: previous.as_ref().map(|p| p.stage.clone()),
        };
        let id = formed.id;
        self.last = Some(Last {
            id,
            locked: Some(locked_rx),
            stage: stage_rx,
        });
        self.flushing += 1;
        let handoff = Handoff {
            turn,
            previous: previous.map(|p| p.stage),
            stage,
        };
        ctx.spawn(
            flush(self.shared.clone(), self.child.clone(), formed, handoff)
                .into_actor(self)
                .map(move |outcome, act, ctx| act.after_flush(id, outcome, ctx)),
        );
    }

    fn after_flush(
        &mut self,
        id: u64,
        outcome: Result<FlushOutcome, String>,
        ctx: &mut Context<Self>,
    ) {
        self.flushing -= 1;
        if self.last.as_ref().is_some_and(|last| last.id == id) {
            self.last = None;
        }
        match outcome {
            Err(injected) => return self.child.fail(ctx, injected),
            Ok(FlushOutcome::Spooled(_)) => self.maybe_replay(ctx),
            // Neither the database nor the disk took it: the next tick
            // retries, rather than a tight loop.
            Ok(FlushOutcome::Failed(_)) => return,
            // The batch before failed this instance.
            Ok(FlushOutcome::Abandoned) => return,
            Ok(_) => {}
        }
        // A batch waiting: go again now rather than at the next tick.
        if lock(&self.shared.queue).waiting >= self.shared.config.batch_size {
            ctx.notify(Flush);
        }
    }

    /// Replays the spool in the background while fresh batches keep being
    /// spooled behind it, so an unreachable database never holds up producers
    /// for longer than one attempt.
    fn maybe_replay(&mut self, ctx: &mut Context<Self>) {
        if self.replaying
            || Instant::now() < self.next_replay
            || lock(&self.shared.spool).is_empty()
        {
            return;
        }
        self.replaying = true;
        let shared = self.shared.clone();
        ctx.spawn(replay(shared).into_actor(self).map(|outcome, act, ctx| {
            act.replaying = false;
            match outcome {
                Replay::Drained => act.replay_backoff = REPLAY_BACKOFF_MIN,
                Replay::MoreToDo => {
                    act.replay_backoff = REPLAY_BACKOFF_MIN;
                    ctx.notify(Flush);
                }
                Replay::Failed => {
                    act.next_replay = Instant::now() + act.replay_backoff;
                    act.replay_backoff = (act.replay_backoff * 2).min(REPLAY_BACKOFF_MAX);
                }
            }
        }));
    }
}

impl Actor for AuditActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Batches left in flight by a failed instance go back to the head of
        // the queue, in order, to be flushed again (idempotently on `log_id`:
        // some may have committed).
        {
            let mut queue = lock(&self.shared.queue);
            let batches: Vec<Batch> = queue.inflight.drain(..).collect();
            for batch in batches.into_iter().rev() {
                for submission in batch.into_submissions().into_iter().rev() {
                    queue.waiting += submission.events.len();
                    queue.pending.push_front(submission);
                }
            }
            queue.requeued = 0;
        }
        ctx.run_interval(self.shared.config.flush_interval, |act, ctx| act.tick(ctx));
        // Those, or a spool left by an earlier run, are taken up at once.
        ctx.notify(Flush);
    }
}

impl Handler<Flush> for AuditActor {
    type Result = ();

    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) {
        self.tick(ctx);
    }
}

impl Handler<Publish> for AuditActor {
    type Result = ();

    fn handle(&mut self, Publish(events): Publish, ctx: &mut Context<Self>) {
        let shared = self.shared.clone();
        ctx.spawn(
            async move { after_commit(&shared, events).await }
                .into_actor(self)
                .map(|_, _, _| ()),
        );
    }
}

/// The batch flushed last, while in flight, as the next batch follows it.
struct Last {
    id: u64,
    locked: Option<oneshot::Receiver<()>>,
    stage: watch::Receiver<Stage>,
}

/// A batch taken from the queue to be flushed.
struct Formed {
    id: u64,
    events: Arc<Vec<AuditEvent>>,
    /// The `log_id`s of `events` that may be stored already.
    maybe_stored: Vec<Uuid>,
    /// Its submissions, in order.
    shares: Vec<Share>,
    sources: SourceCounts,
    /// Each submission's source and length, for the counts of a refusal.
    part_sources: Vec<(Source, usize)>,
}

/// What links a flush to the one before it and the one after it.
struct Handoff {
    /// For the store: the lock and commit order.
    turn: Turn,
    /// The batch before, while in flight: this one's outcome is handled
    /// after that one's.
    previous: Option<watch::Receiver<Stage>>,
    /// This batch's progress, for the batch after it.
    stage: watch::Sender<Stage>,
}

/// Moves up to a batch of submissions from the queue into flight.
fn form_batch(shared: &Shared) -> Option<Formed> {
    let mut queue = lock(&shared.queue);
    let mut events = Vec::new();
    let mut maybe_stored = Vec::new();
    let mut shares = Vec::new();
    let mut part_sources = Vec::new();
    let mut parts = Vec::new();
    let mut sources = SourceCounts::default();
    while events.len() < shared.config.batch_size {
        let Some(submission) = queue.pending.pop_front() else {
            break;
        };
        sources.add(submission.source, submission.events.len());
        if submission.recheck {
            maybe_stored.extend(submission.events.iter().map(|e| e.log_id));
        }
        shares.push(Share {
            len: submission.events.len(),
            waiting: submission.ack.is_some(),
        });
        part_sources.push((submission.source, submission.events.len()));
        parts.push(Part {
            len: submission.events.len(),
            source: submission.source,
            ack: submission.ack,
        });
        events.extend(submission.events);
    }
    if parts.is_empty() {
        return None;
    }
    queue.waiting -= events.len();
    queue.requeued = 0;
    let id = queue.next_batch;
    queue.next_batch += 1;
    let events = Arc::new(events);
    queue.inflight.push_back(Batch {
        id,
        events: events.clone(),
        parts,
    });
    Some(Formed {
        id,
        events,
        maybe_stored,
        shares,
        sources,
        part_sources,
    })
}

/// How the batch before this one ended, once its outcome is handled.
async fn previous_outcome(previous: Option<watch::Receiver<Stage>>) -> Option<Outcome> {
    let Some(mut previous) = previous else {
        return Some(Outcome::Committed);
    };
    match previous.wait_for(|stage| stage.handled).await {
        Ok(stage) => stage.outcome,
        // Ended without handling it: this instance is failing.
        Err(_) => None,
    }
}

/// Makes a formed batch durable: commits it, or spools it, in batch order.
/// `Err` is an injected fault, for drills.
async fn flush(
    shared: Arc<Shared>,
    child: Child,
    formed: Formed,
    handoff: Handoff,
) -> Result<FlushOutcome, String> {
    let Formed {
        id,
        events,
        maybe_stored,
        shares,
        mut sources,
        part_sources,
    } = formed;
    let Handoff {
        turn,
        previous,
        stage,
    } = handoff;
    let n = events.len();
    let started = Instant::now();

    // While the spool holds anything, new batches queue up behind it so each
    // chain keeps arrival order.
    let spool_first = !lock(&shared.spool).is_empty();
    let stored = if spool_first {
        drop(turn);
        Err(AppendError {
            transient: true,
            reason: "spool not yet replayed".into(),
        })
    } else {
        // A task of its own, so that a transaction is never cut off halfway
        // when this instance ends: it runs to its end, and rolls back if the
        // batch before it never got an outcome.
        let offer = Offer {
            maybe_stored,
            shares,
            now: shared.clock.now(),
        };
        let append = shared.store.append_after(events.clone(), offer, turn);
        tokio::spawn(append).await.unwrap_or_else(|e| {
            Err(AppendError {
                transient: true,
                reason: format!("the append task ended: {e}"),
            })
        })
    };
    // Outcomes are handled in batch order.
    let Some(before) = previous_outcome(previous).await else {
        return Ok(FlushOutcome::Abandoned);
    };
    // Fault injection fires here, between the commit and the answer: the
    // worst moment, which the batches in flight must survive.
    child.check_fault().map_err(|e| e.to_string())?;

    let outcome = match stored {
        Ok(Appended {
            committed,
            conflicts,
        }) => {
            metrics::histogram!("audit_batch_size").record(n as f64);
            metrics::histogram!("audit_flush_seconds").record(started.elapsed().as_secs_f64());
            // A submission refused for a `log_id` conflict is not stored.
            sources
                .take_refused(&conflicts, &part_sources)
                .count("refused");
            sources.count("committed");
            report_conflicts(&conflicts);
            finish(&shared, id, Ok(&conflicts), |status| {
                status.last_flush_at = Some(shared.clock.now());
                status.last_error = None;
            });
            stage.send_modify(|s| s.outcome = Some(Outcome::Committed));
            after_commit(&shared, committed).await;
            FlushOutcome::Flushed(n)
        }
        // The batch before could be neither committed nor spooled: neither
        // is this one (spooling it would put it ahead of that one).
        Err(_) if before == Outcome::Failed => {
            let reason = "an earlier batch could not be made durable".to_owned();
            finish(
                &shared,
                id,
                Err(AuditError::NotDurable(reason.clone())),
                |_| {},
            );
            stage.send_modify(|s| s.outcome = Some(Outcome::Failed));
            FlushOutcome::Failed(reason)
        }
        Err(db_error) => {
            // Behind a spooled batch, the reason is that batch's.
            let quiet = spool_first || before == Outcome::Spooled;
            if !quiet {
                tracing::warn!(events = n, reason = %db_error, "audit flush failed; spooling the batch");
            }
            let spool = shared.spool.clone();
            let to_spool = events.clone();
            let spooled = blocking(move || {
                let mut spool = lock(&spool);
                spool.append(&to_spool).map(|()| spool.events())
            })
            .await;
            match spooled {
                Ok(spool_events) => {
                    sources.count("spooled");
                    metrics::gauge!("audit_spool_events").set(spool_events as f64);
                    finish(&shared, id, Ok(&[]), |status| {
                        if !quiet {
                            status.last_error = Some(db_error.reason.clone());
                        }
                    });
                    stage.send_modify(|s| s.outcome = Some(Outcome::Spooled));
                    FlushOutcome::Spooled(n)
                }
                Err(io) => {
                    let reason = format!("database: {db_error}; spool: {io}");
                    tracing::error!(critical = true, events = n, %reason, "audit batch could not be made durable");
                    finish(
                        &shared,
                        id,
                        Err(AuditError::NotDurable(reason.clone())),
                        |status| {
                            status.last_error = Some(reason.clone());
                        },
                    );
                    stage.send_modify(|s| s.outcome = Some(Outcome::Failed));
                    FlushOutcome::Failed(reason)
                }
            }
        }
    };
    stage.send_modify(|s| s.handled = true);
    Ok(outcome)
}

/// Takes batch `id` out of flight and answers its durable producers: those
/// whose submission `conflicts` refused are told which event's `log_id`
/// conflicts. On failure, durable submissions are refused (their callers
/// retry) and the others go back to the head of the queue, behind those of
/// earlier failed batches. Nothing happens if the batch is no longer in
/// flight (a restarted instance took it back).
fn finish(
    shared: &Shared,
    id: u64,
    result: Result<&[idempotency::Conflict], AuditError>,
    update: impl FnOnce(&mut AuditStatus),
) {
    let mut queue = lock(&shared.queue);
    let Some(at) = queue.inflight.iter().position(|batch| batch.id == id) else {
        return;
    };
    let Some(batch) = queue.inflight.remove(at) else {
        return;
    };
    match &result {
        Ok(conflicts) => {
            queue.depth -= batch.events.len();
            for (share, part) in batch.parts.into_iter().enumerate() {
                let Some(ack) = part.ack else {
                    continue;
                };
                let refused = conflicts
                    .iter()
                    .find(|c| c.refused && c.share == share)
                    .map(|c| AuditError::LogIdConflict { index: c.index });
                let _ = ack.send(refused.map_or(Ok(()), Err));
            }
        }
        Err(e) => {
            let mut kept = Vec::new();
            for submission in batch.into_submissions() {
                match submission.ack {
                    Some(ack) => {
                        queue.depth -= submission.events.len();
                        let _ = ack.send(Err(e.clone()));
                    }
                    None => kept.push(submission),
                }
            }
            let at = queue.requeued;
            queue.requeued += kept.len();
            for (i, submission) in kept.into_iter().enumerate() {
                queue.waiting += submission.events.len();
                queue.pending.insert(at + i, submission);
            }
        }
    }
    metrics::gauge!("audit_queue_depth").set(queue.depth as f64);
    update(&mut queue.status);
}

/// Events of a batch per source, for `audit_events_total`.
#[derive(Debug, Default, Clone, Copy)]
struct SourceCounts([u64; 3]);

impl SourceCounts {
    const SOURCES: [Source; 3] = [Source::Api, Source::Request, Source::Internal];

    fn add(&mut self, source: Source, n: usize) {
        let at = Self::SOURCES.iter().position(|s| *s == source).unwrap_or(0);
        self.0[at] += n as u64;
    }

    /// Moves the events of the submissions `conflicts` refused (`parts`:
    /// each submission's source and length) to a count of their own.
    fn take_refused(
        &mut self,
        conflicts: &[idempotency::Conflict],
        parts: &[(Source, usize)],
    ) -> Self {
        let mut refused = Self::default();
        for conflict in conflicts.iter().filter(|c| c.refused) {
            if let Some(&(source, n)) = parts.get(conflict.share) {
                refused.add(source, n);
            }
        }
        for (all, gone) in self.0.iter_mut().zip(refused.0) {
            *all = all.saturating_sub(gone);
        }
        refused
    }

    fn count(&self, result: &'static str) {
        for (source, n) in Self::SOURCES.iter().zip(self.0) {
            if n > 0 {
                metrics::counter!("audit_events_total", "source" => source.label(), "result" => result)
                    .increment(n);
            }
        }
    }
}

/// How a turn of spool replay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    Drained,
    /// Files replayed, more left: go on at once.
    MoreToDo,
    /// The database (or the disk) failed: back off.
    Failed,
}

/// Replays up to [`REPLAY_FILES_PER_TURN`] spool files, oldest first.
async fn replay(shared: Arc<Shared>) -> Replay {
    for _ in 0..REPLAY_FILES_PER_TURN {
        let spool = shared.spool.clone();
        let oldest = match blocking(move || lock(&spool).oldest()).await {
            Ok(Some(oldest)) => oldest,
            Ok(None) => return Replay::Drained,
            Err(e) => {
                tracing::error!(critical = true, error = %e, "cannot read the audit spool");
                return Replay::Failed;
            }
        };
        let (path, events) = oldest;
        let n = events.len();
        let events = Arc::new(events);
        let appended = match shared
            .store
            .append(events.clone(), shared.clock.now())
            .await
        {
            Ok(appended) => appended,
            Err(e) if e.transient => {
                tracing::debug!(reason = %e, "audit spool replay: database still unavailable");
                return Replay::Failed;
            }
            Err(e) => {
                tracing::error!(reason = %e, events = n, "audit spool batch refused; retrying event by event");
                one_by_one(&shared, &events).await
            }
        };
        report_conflicts(&appended.conflicts);
        after_commit(&shared, appended.committed).await;
        let spool = shared.spool.clone();
        let removed = blocking(move || {
            let mut spool = lock(&spool);
            spool.remove(&path, n).map(|()| spool.events())
        })
        .await;
        match removed {
            Ok(left) => {
                metrics::gauge!("audit_spool_events").set(left as f64);
                let mut queue = lock(&shared.queue);
                queue.status.last_flush_at = Some(shared.clock.now());
                if left == 0 {
                    queue.status.last_error = None;
                    tracing::info!("audit spool replayed and empty");
                }
            }
            Err(e) => {
                tracing::error!(critical = true, error = %e, "cannot remove a replayed spool file");
                return Replay::Failed;
            }
        }
    }
    if lock(&shared.spool).is_empty() {
        Replay::Drained
    } else {
        Replay::MoreToDo
    }
}

/// Stores the events of a refused batch one at a time; the ones the database
/// still refuses go to `rejected/` in the spool, logged as critical.
async fn one_by_one(shared: &Arc<Shared>, events: &[AuditEvent]) -> Appended {
    let mut appended = Appended::default();
    let mut rejected = Vec::new();
    for event in events {
        let one = Arc::new(vec![event.clone()]);
        match shared.store.append(one, shared.clock.now()).await {
            Ok(mut one) => {
                appended.committed.append(&mut one.committed);
                appended.conflicts.append(&mut one.conflicts);
            }
            Err(_) => rejected.push(event.clone()),
        }
    }
    if !rejected.is_empty() {
        let spool = shared.spool.clone();
        let n = rejected.len();
        match blocking(move || lock(&spool).reject(&rejected)).await {
            Ok(path) => tracing::error!(
                critical = true,
                events = n,
                file = %path.display(),
                "audit events refused by the database; set aside"
            ),
            Err(e) => {
                tracing::error!(critical = true, events = n, error = %e, "audit events refused by the database and could not be set aside")
            }
        }
    }
    appended
}

/// Logs and counts the `log_id` conflicts an append met. The `log_id` and
/// tenant only: the refused content stays out of the log as out of the trail.
fn report_conflicts(conflicts: &[idempotency::Conflict]) {
    for conflict in conflicts {
        let tenant_id = conflict.tenant_id.as_deref().unwrap_or("");
        if conflict.refused {
            metrics::counter!("audit_log_id_conflicts_total", "answer" => "refused").increment(1);
            tracing::warn!(
                log_id = %conflict.log_id,
                tenant_id,
                "ingest refused: a log_id already used by a different event"
            );
        } else {
            metrics::counter!("audit_log_id_conflicts_total", "answer" => "recorded").increment(1);
            tracing::error!(
                security_violation = true,
                log_id = %conflict.log_id,
                tenant_id,
                "an acknowledged event reused a log_id held by a different event: \
                 not stored, recorded as log_id_conflict"
            );
        }
    }
}

/// File sinks and subscribers, for events the database holds.
async fn after_commit(shared: &Arc<Shared>, events: Vec<CommittedEvent>) {
    if events.is_empty() {
        return;
    }
    let events: Arc<[CommittedEvent]> = events.into();
    {
        let subscribers = lock(&shared.subscribers);
        for recipient in &subscribers.committed {
            recipient.do_send(AuditCommitted(events.clone()));
        }
        if !subscribers.notable.is_empty() {
            for event in events.iter().filter(|e| NotableEvent::is_notable(&e.event)) {
                let event = Arc::new(event.clone());
                for recipient in &subscribers.notable {
                    recipient.do_send(NotableEvent(event.clone()));
                }
            }
        }
    }
    shared.sinks.write(events, shared.clock.now()).await;
}

/// Batches handed to the sink thread and not yet written, at most; past it a
/// flush waits for the disk (as every flush once did).
const SINK_BACKLOG: usize = 64;
/// How long [`Auditor::shutdown`] waits for the sink thread at least.
const SINK_GRACE: Duration = Duration::from_secs(1);

/// A committed batch and the time to file it under.
type SinkJob = (Arc<[CommittedEvent]>, DateTime<Utc>);

/// The file sinks, written on a thread of their own (`audit-sinks`) in the
/// order batches are handed over, which is commit order. The thread ends
/// when the last handle is dropped.
struct SinkWriter {
    jobs: tokio::sync::mpsc::Sender<SinkJob>,
    /// Batches handed over and not yet written.
    pending: Arc<std::sync::atomic::AtomicUsize>,
}

impl SinkWriter {
    fn start(mut sinks: FileSinks) -> std::io::Result<Self> {
        use std::sync::atomic::Ordering;
        let (jobs, mut queue) = tokio::sync::mpsc::channel::<SinkJob>(SINK_BACKLOG);
        let pending = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let written = pending.clone();
        std::thread::Builder::new()
            .name("audit-sinks".into())
            .spawn(move || {
                while let Some((events, now)) = queue.blocking_recv() {
                    if let Err(e) = sinks.write(&events, now) {
                        tracing::error!(error = %e, "could not write the audit file sinks");
                    }
                    written.fetch_sub(1, Ordering::AcqRel);
                }
            })?;
        Ok(Self { jobs, pending })
    }

    async fn write(&self, events: Arc<[CommittedEvent]>, now: DateTime<Utc>) {
        use std::sync::atomic::Ordering;
        self.pending.fetch_add(1, Ordering::AcqRel);
        if self.jobs.send((events, now)).await.is_err() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            tracing::error!("the audit sink thread has stopped; events not written to the files");
        }
    }

    fn idle(&self) -> bool {
        self.pending.load(std::sync::atomic::Ordering::Acquire) == 0
    }
}

/// Runs blocking file I/O off the actor's thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}
