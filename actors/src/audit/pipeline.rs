//! The queue and the flush pipeline: batches formed from the queue
//! ([`form_batch`]), made durable up to [`super::AuditConfig::pipeline`] at a time
//! ([`flush`]) and answered in batch order ([`finish`]), by the supervised
//! [`AuditActor`], which flushes on size, on its timer and on demand.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

use super::handle::Shared;
use super::replay::{Replay, replay, report_conflicts};
use super::{
    AppendError, Appended, AuditCommitted, AuditError, AuditEvent, AuditStatus, CommittedEvent,
    Flush, FlushOutcome, NotableEvent, Offer, Outcome, Share, Source, Stage, Turn, blocking,
    idempotency, lock,
};
use crate::supervisor::Child;

pub(super) type Ack = oneshot::Sender<Result<(), AuditError>>;

pub(super) struct Submission {
    pub(super) events: Vec<AuditEvent>,
    pub(super) source: Source,
    pub(super) ack: Option<Ack>,
    /// Its events may be stored already (see [`Source`]).
    pub(super) recheck: bool,
}

/// A batch being flushed: its events, and who submitted which of them.
pub(super) struct Batch {
    pub(super) id: u64,
    pub(super) events: Arc<Vec<AuditEvent>>,
    pub(super) parts: Vec<Part>,
}

/// One submission's share of a [`Batch`], in order.
pub(super) struct Part {
    pub(super) len: usize,
    pub(super) source: Source,
    pub(super) ack: Option<Ack>,
}

impl Batch {
    /// The submissions again, to be queued anew. Whether the batch
    /// committed is not known (or it failed halfway), so their events are
    /// looked up when flushed again.
    pub(super) fn into_submissions(self) -> Vec<Submission> {
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
pub(super) struct Queue {
    pub(super) pending: VecDeque<Submission>,
    /// Events in `pending` and `inflight`.
    pub(super) depth: usize,
    /// Events in `pending`.
    pub(super) waiting: usize,
    /// The batches being flushed, oldest first; each is taken out only once
    /// its outcome is known.
    pub(super) inflight: VecDeque<Batch>,
    pub(super) next_batch: u64,
    /// Submissions at the head of `pending` that failed batches put back
    /// since a batch was last formed: a later failed batch puts its own
    /// behind them, so arrival order holds.
    pub(super) requeued: usize,
    pub(super) status: AuditStatus,
}

/// Write already-committed events to the sinks and subscribers.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(super) struct Publish(pub(super) Vec<CommittedEvent>);

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

impl AuditActor {
    pub(super) fn new(child: Child, shared: Arc<Shared>) -> Self {
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

/// File sinks and subscribers, for events the database holds.
pub(super) async fn after_commit(shared: &Arc<Shared>, events: Vec<CommittedEvent>) {
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
