//! The [`SecurityActor`]: records violations in the trail and writes notices.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};

use super::monitor::{MAX_WAITING_NOTICES, Shared};
use super::violations::{Alarm, Violation};
use crate::audit::{AuditEvent, NotableEvent, Source};
use crate::notify::{Notification, NotificationEvent};
use crate::supervisor::Child;

/// How often idle IPs, principals and gate entries are forgotten (and
/// notices left waiting by an instance that stopped are written).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Records violations and announces them. Its state that matters lives
/// outside it, shared with every [`SecurityMonitor`](super::SecurityMonitor), so a restart loses
/// none of it.
pub struct SecurityActor {
    pub(super) child: Child,
    pub(super) shared: Arc<Shared>,
    /// A write of waiting notices to the outbox is under way.
    pub(super) flushing: bool,
}

impl Actor for SecurityActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.shared
            .auditor
            .subscribe_notable(ctx.address().recipient());
        // Notices an earlier instance left waiting.
        self.flush(ctx);
        ctx.run_interval(PRUNE_EVERY, |act, ctx| {
            if act.child.trip(ctx) {
                return;
            }
            let now = act.shared.clock.now();
            {
                let mut state = act.shared.state();
                state.detector.prune(now);
                state.gate.prune(now);
            }
            act.flush(ctx);
        });
    }
}

/// A violation to record and perhaps notify.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Report(pub Violation);

impl Handler<Report> for SecurityActor {
    type Result = ();

    fn handle(&mut self, Report(v): Report, ctx: &mut Context<Self>) {
        if self.child.trip(ctx) {
            return;
        }
        let now = self.shared.clock.now();
        let event = audit_event(&v, now);
        self.shared.state().own.insert(event.log_id);
        self.shared.auditor.record(Source::Internal, event);
        self.announce(Alarm::from(&v), now, ctx);
    }
}

/// Committed violation rows that other producers recorded (an ingested
/// event with `security_violation: true`, a `log_id` conflict found on
/// replay): the monitor speaks for every violation, so these are logged,
/// gated and notified like its own. Its own rows come back here too, and
/// are skipped: they were announced when reported.
impl Handler<NotableEvent> for SecurityActor {
    type Result = ();

    fn handle(&mut self, NotableEvent(committed): NotableEvent, ctx: &mut Context<Self>) {
        let event = &committed.event;
        if !event.security_violation {
            return;
        }
        if self.child.trip(ctx) {
            return;
        }
        if self.shared.state().own.take(&event.log_id) {
            return;
        }
        let now = self.shared.clock.now();
        self.announce(Alarm::recorded(event), now, ctx);
    }
}

impl SecurityActor {
    /// The critical log line, the metric, and (when the gate lets it
    /// through) a `security_violation` notice for the audit channel of the
    /// violation's tenant, or the service's without one.
    ///
    /// Every violation is logged at the critical level: tracing has no
    /// CRITICAL, so, as for the service's other critical lines, at ERROR with
    /// `critical = true` (`severity` keeps the violation's own).
    fn announce(&mut self, alarm: Alarm, now: DateTime<Utc>, ctx: &mut Context<Self>) {
        metrics::counter!("security_violations_total", "type" => alarm.metric_type().to_owned())
            .increment(1);
        let count =
            self.shared
                .state()
                .gate
                .admit_named(&alarm.violation_type, &alarm.subject, now);
        tracing::error!(
            critical = true,
            violation_type = %alarm.violation_type,
            severity = alarm.severity.as_str(),
            origin = alarm.origin,
            subject = %alarm.subject,
            tenant_id = alarm.tenant_id.as_deref(),
            principal_id = alarm.principal_id.as_deref(),
            ip_address = alarm.ip_address.as_deref(),
            resource_id = alarm.resource_id.as_deref(),
            reason = %alarm.reason,
            notified = count.is_some(),
            "security violation"
        );
        let Some(count) = count else {
            return;
        };
        let notification = Notification::new(
            alarm.tenant_id,
            NotificationEvent::SecurityViolation {
                violation_type: alarm.violation_type,
                severity: alarm.severity.as_str().to_owned(),
                subject: alarm.subject,
                reason: alarm.reason,
                resource_id: alarm.resource_id,
                count,
            },
            now,
        );
        {
            let mut state = self.shared.state();
            if state.waiting.len() >= MAX_WAITING_NOTICES {
                metrics::counter!("security_notices_dropped_total").increment(1);
                return;
            }
            state.waiting.push(notification);
        }
        self.flush(ctx);
    }

    /// Writes the waiting notices to the outbox, in one go: one write at a
    /// time, and what arrives meanwhile goes with the next, so a flood of
    /// violations is a few transactions, not one per notice.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing {
            return;
        }
        let notices = std::mem::take(&mut self.shared.state().waiting);
        if notices.is_empty() {
            return;
        }
        self.flushing = true;
        let n = notices.len();
        let outbox = self.shared.outbox.clone();
        ctx.spawn(
            async move {
                if let Err(reason) = outbox.enqueue_all(notices).await {
                    tracing::warn!(notices = n, %reason, "could not queue security violation notices");
                }
            }
            .into_actor(self)
            .map(|(), act, ctx| {
                act.flushing = false;
                act.flush(ctx);
            }),
        );
    }
}

/// The audit row of a violation. It is recorded as a failed operation: what
/// it stands for is an access the service refused, so it belongs in
/// `error.log` and in failure counts next to the other refusals, and a
/// reader filtering on `success = true` never mistakes it for a granted one.
pub(super) fn audit_event(v: &Violation, now: DateTime<Utc>) -> AuditEvent {
    let mut event = AuditEvent::new("security_violation", now)
        .with_details(serde_json::json!({
            "type": v.kind.as_str(),
            "severity": v.kind.severity().as_str(),
            "resource_id": v.resource_id,
            "reason": v.reason,
            "subject": v.subject,
        }))
        .failed(v.reason.clone());
    if let Some(tenant_id) = &v.tenant_id {
        event = event.with_tenant(tenant_id.clone());
    }
    if let Some(principal_id) = &v.principal_id {
        event = event.with_principal(principal_id.clone(), None);
    }
    event.ip_address = v.ip_address.clone();
    event.security_violation = true;
    event
}
