//! Supervision: OTP-grade restarts for actix actors.
//!
//! actix 0.13's own `Supervisor` restarts an actor only when it *stops*, never
//! after a panic (a panic kills the actor's task and its address answers
//! `Closed` forever), and has no restart limit. Here each child runs as a task
//! whose `JoinHandle` the supervisor awaits, so a panic anywhere in the actor's
//! task — a handler, an `ActorFuture` it spawned or waits on, a `run_interval`
//! body — ends that instance and is seen with its message. The supervisor then
//! starts a fresh instance from the child's factory, after a backoff that
//! grows with the restarts in the intensity window, and marks the child `down`
//! (logged once as critical) when the intensity is exceeded while it keeps
//! retrying at the backoff cap.
//!
//! Callers hold an [`ActorHandle`], which follows the child across restarts.
//! A message in flight when an instance fails is answered with
//! `MailboxError::Closed` at once; messages sent during the backoff wait in the
//! next instance's mailbox.
//!
//! State that must survive a restart (the audit buffer, for one) lives outside
//! the actor, captured by the factory; everything else starts clean, and timers
//! are re-armed by the fresh instance's `started()`.

mod board;
mod fault;
mod policy;

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use actix::dev::channel::{AddressReceiver, channel};
use actix::{Actor, ActorContext, Addr, Context, Handler, MailboxError, Message};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use board::{ChildState, ChildStatus, ExitReason, RestartEvent, SupervisionBoard};
pub use fault::{FaultKind, Faults, InjectedError};
pub use policy::{Decision, RestartPolicy, RestartTracker, RestartType};

use crate::Clock;

/// Mailbox capacity of every child; `send` waits when it is full.
const MAILBOX_CAPACITY: usize = 1_024;

/// What a child instance gets from its supervisor: its name, and the means to
/// end itself with an error and to check for injected faults.
#[derive(Debug, Clone)]
pub struct Child {
    name: &'static str,
    restarts: u64,
    exit: Arc<Mutex<Option<String>>>,
    faults: Faults,
}

impl Child {
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// How many times this child was restarted before this instance.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// Ends this instance with an error; it is restarted (reason `error`).
    pub fn fail<A>(&self, ctx: &mut Context<A>, reason: impl Into<String>)
    where
        A: Actor<Context = Context<A>>,
    {
        *self.exit.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason.into());
        ctx.stop();
    }

    /// Fires an injected fault if one is armed: panics for a panic fault; for
    /// an error fault ends this instance and returns `true` (return at once).
    /// Call it at the start of each message and tick.
    pub fn trip<A>(&self, ctx: &mut Context<A>) -> bool
    where
        A: Actor<Context = Context<A>>,
    {
        match self.faults.check(self.name) {
            Ok(()) => false,
            Err(err) => {
                self.fail(ctx, err.to_string());
                true
            }
        }
    }

    /// The same check for async work, where there is no context at hand.
    pub fn check_fault(&self) -> Result<(), InjectedError> {
        self.faults.check(self.name)
    }
}

/// A supervised actor's address that stays valid across restarts.
#[derive(Debug)]
pub struct ActorHandle<A: Actor> {
    name: &'static str,
    addr: Arc<RwLock<Addr<A>>>,
}

impl<A: Actor> Clone for ActorHandle<A> {
    fn clone(&self) -> Self {
        Self {
            name: self.name,
            addr: self.addr.clone(),
        }
    }
}

impl<A> ActorHandle<A>
where
    A: Actor<Context = Context<A>>,
{
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The current instance's address.
    pub fn addr(&self) -> Addr<A> {
        self.addr
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sends `msg` and waits for the answer. If the instance fails while the
    /// message is queued or being handled, the answer is
    /// `Err(MailboxError::Closed)` at once.
    pub async fn send<M>(&self, msg: M) -> Result<M::Result, MailboxError>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
    {
        self.addr().send(msg).await
    }

    /// Sends `msg` without waiting for an answer.
    pub fn do_send<M>(&self, msg: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
    {
        self.addr().do_send(msg);
    }
}

/// Starts children and watches them. Cheap to clone; clones share the board,
/// the faults and the shutdown.
#[derive(Debug, Clone)]
pub struct Supervisor {
    board: SupervisionBoard,
    faults: Faults,
    clock: Arc<dyn Clock>,
    /// Raised once, by [`Supervisor::shutdown`]; every child's loop watches it.
    stop: Arc<watch::Sender<bool>>,
    /// Each child's loop, awaited by [`Supervisor::shutdown`].
    loops: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Supervisor {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            board: SupervisionBoard::default(),
            faults: Faults::default(),
            clock,
            stop: Arc::new(watch::channel(false).0),
            loops: Arc::default(),
        }
    }

    /// Stops every child for good, and returns once each instance has ended:
    /// a live instance is aborted (its in-flight futures dropped on this
    /// runtime, so whatever they held, a pooled database connection for one,
    /// goes back while there is still a runtime to take it), a child waiting
    /// out a backoff is not restarted. Each child is then `stopped` on the
    /// board. For the end of the process (or of a test): run it before the
    /// runtime ends and before closing the pools the actors use.
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        let loops = std::mem::take(&mut *self.loops.lock().unwrap_or_else(PoisonError::into_inner));
        for child in loops {
            // Err: the loop itself was cancelled (its runtime is ending).
            let _ = child.await;
        }
    }

    pub fn board(&self) -> &SupervisionBoard {
        &self.board
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Starts the child `name` on the current arbiter: `factory` builds each
    /// instance (the first and every restart), `policy` governs restarts.
    pub fn spawn<A, F>(
        &self,
        name: &'static str,
        policy: RestartPolicy,
        factory: F,
    ) -> ActorHandle<A>
    where
        A: Actor<Context = Context<A>>,
        F: FnMut(&Child) -> A + 'static,
    {
        self.board.register(name);
        let (tx, rx) = channel::<A>(MAILBOX_CAPACITY);
        let handle = ActorHandle {
            name,
            addr: Arc::new(RwLock::new(Addr::new(tx))),
        };
        let watch = ChildLoop {
            name,
            tracker: RestartTracker::new(policy),
            factory,
            addr: handle.addr.clone(),
            board: self.board.clone(),
            faults: self.faults.clone(),
            clock: self.clock.clone(),
        };
        let child = actix::spawn(watch.run(rx, self.stop.subscribe()));
        self.loops
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(child);
        handle
    }
}

struct ChildLoop<A: Actor, F> {
    name: &'static str,
    tracker: RestartTracker,
    factory: F,
    addr: Arc<RwLock<Addr<A>>>,
    board: SupervisionBoard,
    faults: Faults,
    clock: Arc<dyn Clock>,
}

impl<A, F> ChildLoop<A, F>
where
    A: Actor<Context = Context<A>>,
    F: FnMut(&Child) -> A + 'static,
{
    async fn run(mut self, mut mailbox: AddressReceiver<A>, mut stop: watch::Receiver<bool>) {
        let name = self.name;
        let mut restarts = 0;
        loop {
            if *stop.borrow() {
                return self.stopped();
            }
            let child = Child {
                name,
                restarts,
                exit: Arc::new(Mutex::new(None)),
                faults: self.faults.clone(),
            };
            let instance = Context::with_receiver(mailbox).into_future((self.factory)(&child));
            self.board.set_state(name, ChildState::Running);
            metrics::gauge!("actor_up", "actor" => name).set(1.0);

            let mut instance = actix::spawn(instance);
            let outcome = tokio::select! {
                outcome = &mut instance => outcome,
                () = stop_requested(&mut stop) => {
                    instance.abort();
                    let _ = instance.await;
                    return self.stopped();
                }
            };
            let failed_at = Instant::now();

            // The next mailbox at once: messages sent during the backoff wait
            // for the next instance instead of failing.
            let (tx, rx) = channel::<A>(MAILBOX_CAPACITY);
            *self.addr.write().unwrap_or_else(PoisonError::into_inner) = Addr::new(tx);
            mailbox = rx;

            let reason = match outcome {
                Ok(()) => child
                    .exit
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take()
                    .map_or(ExitReason::Stopped, ExitReason::Error),
                Err(err) if err.is_panic() => ExitReason::Panic(panic_message(&*err.into_panic())),
                // Cancelled: the arbiter is shutting down.
                Err(_) => return,
            };
            metrics::gauge!("actor_up", "actor" => name).set(0.0);

            if reason == ExitReason::Stopped
                && self.tracker.policy().restart == RestartType::Transient
            {
                tracing::info!(actor = name, "actor stopped; transient, not restarted");
                self.board.set_state(name, ChildState::Stopped);
                return;
            }

            let decision = self.tracker.on_failure(self.clock.now(), rand::random());
            restarts = decision.restart_count;
            metrics::counter!("actor_restarts_total", "actor" => name, "reason" => reason.label())
                .increment(1);
            tracing::warn!(
                actor = name,
                reason = reason.message(),
                kind = reason.label(),
                restart_count = decision.restart_count,
                backoff_ms = decision.backoff.as_millis() as u64,
                "actor restarting"
            );
            if decision.newly_escalated {
                let policy = self.tracker.policy();
                tracing::error!(
                    critical = true,
                    actor = name,
                    max_restarts = policy.max_restarts,
                    within_ms = policy.within.as_millis() as u64,
                    retry_every_ms = policy.backoff_max.as_millis() as u64,
                    "actor exceeded its restart intensity; marked down, retrying at the backoff cap"
                );
            }
            self.board.record_restart(
                RestartEvent {
                    actor: name,
                    reason,
                    backoff: decision.backoff,
                    failed_at,
                    escalated: decision.escalated,
                },
                decision.restart_count,
                self.clock.now(),
            );
            tokio::select! {
                () = tokio::time::sleep(decision.backoff) => {}
                () = stop_requested(&mut stop) => return self.stopped(),
            }
        }
    }

    /// The supervisor is shut down: this child is over.
    fn stopped(&self) {
        metrics::gauge!("actor_up", "actor" => self.name).set(0.0);
        self.board.set_state(self.name, ChildState::Stopped);
    }
}

/// Resolves once the supervisor is shut down; never if it is dropped without
/// a shutdown (its children then live as long as their arbiter).
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stopped| *stopped).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The text of a panic payload (`&str` or `String`), else a placeholder.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}
