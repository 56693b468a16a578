//! The audit write path: [`Auditor`] (what producers hold) and [`AuditActor`]
//! (the supervised batcher behind it).
//!
//! Producers put events on a bounded queue that lives outside the actor, so a
//! restart loses nothing; the batch being flushed stays in that shared state
//! until its outcome is known, so a panic mid-flush loses nothing either (the
//! next instance flushes it again, idempotently on `log_id`).
//!
//! The actor flushes when [`AuditConfig::batch_size`] events are waiting or
//! every [`AuditConfig::flush_interval`]: one batch at a time, through the
//! [`AuditStore`] port (one transaction). When the database cannot take a
//! batch, the batch goes to the [`spool::Spool`] (fsync'd) and so does every
//! batch after it until the spool is replayed, so each chain keeps the order
//! the events arrived in. Durable producers are answered once their events are
//! committed or spooled.
//!
//! After commit, events go to subscribers ([`AuditCommitted`] for the activity
//! stream, [`NotableEvent`] for the Slack router and the security monitor) and
//! to the file sinks, which a thread of their own writes in commit order
//! ([`SinkWriter`]), so the next flush never waits for the disk.

pub mod event;
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
use tokio::sync::oneshot;

pub use event::{AuditEvent, CommittedEvent, GENESIS_HASH, chain_hash};
pub use redact::Redactor;
pub use sinks::{FileSinks, SinkConfig};
pub use spool::Spool;

use crate::Clock;
use crate::supervisor::{ActorHandle, Child};

/// The port to the database: append a batch in one transaction, assigning
/// each event its `id`, `seq` and hashes; events whose `log_id` is already
/// stored are skipped (idempotency). Returns the events it stored.
pub trait AuditStore: Send + Sync + 'static {
    fn append(
        &self,
        events: Arc<Vec<AuditEvent>>,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<CommittedEvent>, AppendError>> + Send + 'static>>;
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

#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub batch_size: usize,
    pub flush_interval: Duration,
    /// Events waiting (not yet committed or spooled) beyond which durable
    /// producers are refused. Fire-and-forget events get a quarter more room,
    /// then are dropped and counted.
    pub queue_capacity: usize,
    pub redactor: Redactor,
    pub spool_dir: PathBuf,
    pub sinks: SinkConfig,
}

/// Who produced an event, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `POST /api/v1/audit/events`.
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

struct Submission {
    events: Vec<AuditEvent>,
    source: Source,
    ack: Option<oneshot::Sender<Result<(), AuditError>>>,
}

#[derive(Default)]
struct Queue {
    pending: VecDeque<Submission>,
    /// Events in `pending` and `inflight`.
    depth: usize,
    /// The batch being flushed; taken out only once its outcome is known.
    inflight: Vec<Submission>,
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
        if events.is_empty() {
            return Ok(());
        }
        for event in &mut events {
            self.prepare(event);
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
            let mut events: Vec<AuditEvent> = queue
                .inflight
                .iter()
                .flat_map(|s| s.events.iter().cloned())
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
        let redactor = &self.shared.config.redactor;
        redactor.redact(&mut event.details);
        redact::strip_nul(&mut event.operation);
        for text in [
            &mut event.tenant_id,
            &mut event.principal_id,
            &mut event.principal_name,
            &mut event.adapter_id,
            &mut event.ip_address,
            &mut event.error,
        ]
        .into_iter()
        .flatten()
        {
            redact::strip_nul(text);
        }
        if let Some(error) = event.error.as_mut() {
            redactor.truncate(error);
        }
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
            let before = queue.depth;
            queue.depth += n;
            queue.pending.push_back(Submission {
                events,
                source,
                ack,
            });
            metrics::gauge!("audit_queue_depth").set(queue.depth as f64);
            before < batch_size && queue.depth >= batch_size
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
}

/// The supervised batcher. All its state that matters is in [`Shared`].
pub struct AuditActor {
    child: Child,
    shared: Arc<Shared>,
    flushing: bool,
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
            flushing: false,
            replaying: false,
            replay_backoff: REPLAY_BACKOFF_MIN,
            next_replay: Instant::now(),
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        self.maybe_replay(ctx);
        if self.flushing || lock(&self.shared.queue).depth == 0 {
            return;
        }
        // One flush at a time, in order; the spool replay runs beside it.
        self.flushing = true;
        let shared = self.shared.clone();
        let child = self.child.clone();
        ctx.spawn(
            flush(shared, child)
                .into_actor(self)
                .map(|outcome, act, ctx| act.after_flush(outcome, ctx)),
        );
    }

    fn after_flush(&mut self, outcome: Result<FlushOutcome, String>, ctx: &mut Context<Self>) {
        self.flushing = false;
        match outcome {
            Err(injected) => return self.child.fail(ctx, injected),
            Ok(FlushOutcome::Spooled(_)) => self.maybe_replay(ctx),
            // Neither the database nor the disk took it: the next tick
            // retries, rather than a tight loop.
            Ok(FlushOutcome::Failed(_)) => return,
            Ok(_) => {}
        }
        // More than a batch waiting: go again now rather than at the next tick.
        if lock(&self.shared.queue).depth >= self.shared.config.batch_size {
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
        ctx.run_interval(self.shared.config.flush_interval, |act, ctx| act.tick(ctx));
        // A batch left in flight by a failed instance, or a spool left by an
        // earlier run, is taken up at once.
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

/// Takes the in-flight batch (or forms one from the queue) and makes it
/// durable. `Err` is an injected fault, for drills.
async fn flush(shared: Arc<Shared>, child: Child) -> Result<FlushOutcome, String> {
    let (events, sources) = {
        let mut queue = lock(&shared.queue);
        if queue.inflight.is_empty() {
            let mut taken = 0;
            while taken < shared.config.batch_size {
                let Some(submission) = queue.pending.pop_front() else {
                    break;
                };
                taken += submission.events.len();
                queue.inflight.push(submission);
            }
        }
        if queue.inflight.is_empty() {
            return Ok(FlushOutcome::Nothing);
        }
        let events: Vec<AuditEvent> = queue
            .inflight
            .iter()
            .flat_map(|s| s.events.iter().cloned())
            .collect();
        let sources: Vec<Source> = queue
            .inflight
            .iter()
            .flat_map(|s| std::iter::repeat_n(s.source, s.events.len()))
            .collect();
        (Arc::new(events), sources)
    };
    let n = events.len();
    let started = Instant::now();

    // While the spool holds anything, new batches queue up behind it so each
    // chain keeps arrival order.
    let spool_first = !lock(&shared.spool).is_empty();
    let stored = if spool_first {
        Err(AppendError {
            transient: true,
            reason: "spool not yet replayed".into(),
        })
    } else {
        shared.store.append(events.clone()).await
    };
    // Fault injection fires here, between the commit and the answer: the
    // worst moment, which the in-flight batch must survive.
    child.check_fault().map_err(|e| e.to_string())?;

    let outcome = match stored {
        Ok(committed) => {
            metrics::histogram!("audit_batch_size").record(n as f64);
            metrics::histogram!("audit_flush_seconds").record(started.elapsed().as_secs_f64());
            count(&sources, "committed");
            finish(&shared, Ok(()), |status| {
                status.last_flush_at = Some(shared.clock.now());
                status.last_error = None;
            });
            after_commit(&shared, committed).await;
            FlushOutcome::Flushed(n)
        }
        Err(db_error) => {
            if !spool_first {
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
                    count(&sources, "spooled");
                    metrics::gauge!("audit_spool_events").set(spool_events as f64);
                    finish(&shared, Ok(()), |status| {
                        if !spool_first {
                            status.last_error = Some(db_error.reason.clone());
                        }
                    });
                    FlushOutcome::Spooled(n)
                }
                Err(io) => {
                    let reason = format!("database: {db_error}; spool: {io}");
                    tracing::error!(critical = true, events = n, %reason, "audit batch could not be made durable");
                    finish(
                        &shared,
                        Err(AuditError::NotDurable(reason.clone())),
                        |status| {
                            status.last_error = Some(reason.clone());
                        },
                    );
                    FlushOutcome::Failed(reason)
                }
            }
        }
    };
    Ok(outcome)
}

/// Answers the in-flight batch's durable producers and clears it. On failure,
/// durable submissions are refused (their callers retry) and the others go
/// back to the head of the queue.
fn finish(shared: &Shared, result: Result<(), AuditError>, update: impl FnOnce(&mut AuditStatus)) {
    let mut queue = lock(&shared.queue);
    let inflight = std::mem::take(&mut queue.inflight);
    let mut kept = Vec::new();
    for submission in inflight {
        match (&result, submission.ack) {
            (Ok(()), Some(ack)) => {
                queue.depth -= submission.events.len();
                let _ = ack.send(Ok(()));
            }
            (Ok(()), None) => queue.depth -= submission.events.len(),
            (Err(e), Some(ack)) => {
                queue.depth -= submission.events.len();
                let _ = ack.send(Err(e.clone()));
            }
            (Err(_), None) => kept.push(Submission {
                ack: None,
                ..submission
            }),
        }
    }
    for submission in kept.into_iter().rev() {
        queue.pending.push_front(submission);
    }
    metrics::gauge!("audit_queue_depth").set(queue.depth as f64);
    update(&mut queue.status);
}

fn count(sources: &[Source], result: &'static str) {
    for source in [Source::Api, Source::Request, Source::Internal] {
        let n = sources.iter().filter(|s| **s == source).count();
        if n > 0 {
            metrics::counter!("audit_events_total", "source" => source.label(), "result" => result)
                .increment(n as u64);
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
        let committed = match shared.store.append(events.clone()).await {
            Ok(committed) => committed,
            Err(e) if e.transient => {
                tracing::debug!(reason = %e, "audit spool replay: database still unavailable");
                return Replay::Failed;
            }
            Err(e) => {
                tracing::error!(reason = %e, events = n, "audit spool batch refused; retrying event by event");
                one_by_one(&shared, &events).await
            }
        };
        after_commit(&shared, committed).await;
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
async fn one_by_one(shared: &Arc<Shared>, events: &[AuditEvent]) -> Vec<CommittedEvent> {
    let mut committed = Vec::new();
    let mut rejected = Vec::new();
    for event in events {
        match shared.store.append(Arc::new(vec![event.clone()])).await {
            Ok(mut one) => committed.append(&mut one),
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
    committed
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
