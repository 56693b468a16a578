//! [`Auditor`], the handle producers hold, and the state it shares with
//! every instance of the [`AuditActor`]: the queue, the subscribers, the
//! spool and the sink writer.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::pipeline::{AuditActor, Publish, Queue, Submission};
use super::sink_writer::{SINK_GRACE, SinkWriter};
use super::{
    AuditCommitted, AuditConfig, AuditError, AuditEvent, AuditStatus, AuditStore, CommittedEvent,
    FileSinks, Flush, Ingested, NotableEvent, Source, Spool, blocking, content_digest, event, lock,
};
use crate::Clock;
use crate::supervisor::ActorHandle;

#[derive(Default)]
pub(super) struct Subscribers {
    pub(super) committed: Vec<Recipient<AuditCommitted>>,
    pub(super) notable: Vec<Recipient<NotableEvent>>,
}

/// State that outlives any one instance of the actor.
pub(super) struct Shared {
    pub(super) config: AuditConfig,
    pub(super) queue: Mutex<Queue>,
    pub(super) subscribers: Mutex<Subscribers>,
    pub(super) spool: Arc<Mutex<Spool>>,
    pub(super) sinks: SinkWriter,
    pub(super) store: Arc<dyn AuditStore>,
    pub(super) clock: Arc<dyn Clock>,
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
