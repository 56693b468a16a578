//! `DatabaseWatch`: probes the database on a timer, so an outage is noticed and
//! logged (critical after two failed checks in a row, once) even when no
//! request arrives, and its end is logged too. `/health` still runs its own
//! check on demand; the watch is what tells operators without being asked.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::supervisor::{Child, InjectedError};

/// The port: one round trip to the database, returning its latency or a short
/// reason (never a URL or credentials).
pub trait DatabaseProbe: Send + Sync + 'static {
    fn ping(&self) -> Pin<Box<dyn Future<Output = Result<Duration, String>> + Send + 'static>>;
}

/// Consecutive failed checks after which the outage is logged as critical.
pub const CRITICAL_AFTER: u32 = 2;

pub struct DatabaseWatch {
    child: Child,
    probe: Arc<dyn DatabaseProbe>,
    interval: Duration,
    consecutive_failures: u32,
}

impl DatabaseWatch {
    pub fn new(child: Child, probe: Arc<dyn DatabaseProbe>, interval: Duration) -> Self {
        Self {
            child,
            probe,
            interval,
            consecutive_failures: 0,
        }
    }

    /// The check as async work the actor waits on; an injected fault fires
    /// inside it, so drills exercise panics in async work too.
    fn check(&self) -> impl ActorFuture<Self, Output = Result<Duration, String>> + 'static {
        let child = self.child.clone();
        let probe = self.probe.clone();
        async move {
            child.check_fault()?;
            Ok::<_, InjectedError>(probe.ping().await)
        }
        .into_actor(self)
        .map(|outcome, act, ctx| match outcome {
            Ok(result) => {
                act.record(&result);
                result
            }
            Err(injected) => {
                act.child.fail(ctx, injected.to_string());
                Err(injected.to_string())
            }
        })
    }

    fn record(&mut self, result: &Result<Duration, String>) {
        match result {
            Ok(latency) => {
                if self.consecutive_failures >= CRITICAL_AFTER {
                    tracing::info!(
                        failed_checks = self.consecutive_failures,
                        latency_ms = latency.as_secs_f64() * 1_000.0,
                        "database reachable again"
                    );
                }
                self.consecutive_failures = 0;
                metrics::gauge!("database_up").set(1.0);
            }
            Err(reason) => {
                self.consecutive_failures += 1;
                metrics::gauge!("database_up").set(0.0);
                if self.consecutive_failures == CRITICAL_AFTER {
                    tracing::error!(
                        critical = true,
                        %reason,
                        failed_checks = self.consecutive_failures,
                        "database check failed twice in a row"
                    );
                } else {
                    tracing::warn!(%reason, failed_checks = self.consecutive_failures, "database check failed");
                }
            }
        }
    }
}

impl Actor for DatabaseWatch {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.interval, |act, ctx| {
            if act.child.trip(ctx) {
                return;
            }
            // `wait`: one check at a time; ticks that come due meanwhile are
            // skipped rather than piling up behind a slow database.
            ctx.wait(act.check().map(|_, _, _| ()));
        });
    }
}

/// Asks for a check now; answers with its outcome.
#[derive(Debug, Message)]
#[rtype(result = "Result<Duration, String>")]
pub struct CheckNow;

impl Handler<CheckNow> for DatabaseWatch {
    type Result = ResponseActFuture<Self, Result<Duration, String>>;

    fn handle(&mut self, _: CheckNow, ctx: &mut Context<Self>) -> Self::Result {
        if self.child.trip(ctx) {
            return Box::pin(fut::ready(Err(InjectedError.to_string())));
        }
        Box::pin(self.check())
    }
}
