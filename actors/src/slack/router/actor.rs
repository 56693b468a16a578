//! The supervised [`SlackRouterActor`]: polls the outbox, groups rows by
//! webhook, dispatches sends and announces failures.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix::prelude::*;
use chrono::{DateTime, Utc};

use super::handle::{FailingWebhook, Shared, lock};
use super::ports::{Outcome, PendingRow, WebhookTarget, Webhooks};
use super::send::{queue_notices, send_group};
use crate::audit::{AuditEvent, NotableEvent, Source, redact};
use crate::notify::{Notification, NotificationEvent};
use crate::slack::pacer::Pacer;
use crate::slack::route::{Channel, route};
use crate::supervisor::Child;

/// Read the outbox now.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(super) struct Poll;

/// The supervised actor.
pub struct SlackRouterActor {
    pub(super) child: Child,
    pub(super) shared: Arc<Shared>,
    /// A read of the outbox is under way.
    pub(super) loading: bool,
    /// Webhooks (by key) with a send under way.
    pub(super) busy: HashSet<String>,
    pub(super) depth_read_at: Option<DateTime<Utc>>,
}

impl Actor for SlackRouterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.shared
            .auditor
            .subscribe_notable(ctx.address().recipient());
        ctx.run_interval(self.shared.config.poll_interval, |act, ctx| act.poll(ctx));
    }
}

/// At most this many failure notices wait for the next poll; more are
/// counted (`slack_notices_dropped_total`) and dropped.
const MAX_WAITING_NOTICES: usize = 10_000;

/// Operations whose failures have notices of their own, or none.
/// `agent_run_finished`: failing runs are the `agent_success_rate` and
/// `agent_slow` alerts' business, not a page per run (a scheduler failing
/// every minute would otherwise page every minute).
const NOT_A_FAILED_OPERATION: &[&str] = &[
    "security_violation",
    "slack_webhook_failing",
    "agent_run_finished",
];

/// The audit-channel notice for a committed failed operation: `None` for
/// successes, security violations and authentication decisions. The
/// security monitor speaks for those: it subscribes to the same committed
/// events and announces every violation row, its own and any other
/// producer's, through its notification gate
/// ([`crate::security::SecurityMonitor::start`]).
pub fn failure_notice(event: &AuditEvent, now: DateTime<Utc>) -> Option<Notification> {
    if event.success
        || event.security_violation
        || event.operation.starts_with("token_")
        || NOT_A_FAILED_OPERATION.contains(&event.operation.as_str())
    {
        return None;
    }
    Some(Notification::new(
        event.tenant_id.clone(),
        NotificationEvent::OperationFailed {
            operation: event.operation.clone(),
            principal_id: event.principal_id.clone(),
            error: event.error.clone().unwrap_or_default(),
        },
        now,
    ))
}

/// Failed operations, after their audit rows are committed: queued as
/// notices for the audit webhook at the next poll.
impl Handler<NotableEvent> for SlackRouterActor {
    type Result = ();

    fn handle(&mut self, NotableEvent(committed): NotableEvent, _: &mut Context<Self>) {
        let Some(notice) = failure_notice(&committed.event, self.shared.clock.now()) else {
            return;
        };
        let mut waiting = lock(&self.shared.notices);
        if waiting.len() >= MAX_WAITING_NOTICES {
            metrics::counter!("slack_notices_dropped_total").increment(1);
        } else {
            waiting.push(notice);
        }
    }
}

impl Handler<Poll> for SlackRouterActor {
    type Result = ();

    fn handle(&mut self, _: Poll, ctx: &mut Context<Self>) {
        self.poll(ctx);
    }
}

/// One webhook's due messages in this poll.
pub(super) struct Group {
    pub(super) target: WebhookTarget,
    pub(super) channel: Channel,
    pub(super) tenant_id: Option<String>,
    pub(super) items: Vec<(PendingRow, Notification)>,
}

/// What one send to one webhook did.
pub(super) struct SendReport {
    pub(super) key: String,
    pub(super) channel: Channel,
    pub(super) tenant_id: Option<String>,
    pub(super) target: WebhookTarget,
    pub(super) delivered: usize,
    pub(super) block_until: Option<DateTime<Utc>>,
    pub(super) rate_limited: bool,
    pub(super) permanent: Option<(u16, String)>,
    pub(super) last_error: Option<String>,
}

impl SlackRouterActor {
    fn poll(&mut self, ctx: &mut Context<Self>) {
        if self.child.trip(ctx) || self.loading {
            return;
        }
        self.loading = true;
        let shared = self.shared.clone();
        let now = shared.clock.now();
        let read_depth = self
            .depth_read_at
            .is_none_or(|at| now - at >= chrono::Duration::seconds(1));
        if read_depth {
            self.depth_read_at = Some(now);
        }
        let notices = std::mem::take(&mut *lock(&shared.notices));
        let read = async move {
            if !notices.is_empty() {
                queue_notices(&shared, notices).await;
            }
            if read_depth {
                match shared.store.depth().await {
                    Ok(depth) => {
                        lock(&shared.status).queue_depth = depth;
                        metrics::gauge!("slack_queue_depth").set(depth as f64);
                    }
                    Err(reason) => tracing::warn!(%reason, "slack: could not read the queue depth"),
                }
            }
            let rows = shared.store.pending(now, 1_000).await?;
            if rows.is_empty() {
                return Ok((rows, HashMap::new()));
            }
            let mut tenants: Vec<String> =
                rows.iter().filter_map(|r| r.tenant_id.clone()).collect();
            tenants.sort_unstable();
            tenants.dedup();
            let hooks = shared.store.webhooks(tenants).await?;
            Ok::<_, String>((rows, hooks))
        };
        ctx.spawn(read.into_actor(self).map(|read, act, ctx| {
            act.loading = false;
            match read {
                Ok((rows, hooks)) => act.dispatch(rows, hooks, ctx),
                Err(reason) => {
                    tracing::warn!(%reason, "slack: could not read the outbox");
                    lock(&act.shared.status).last_error = Some(reason);
                }
            }
        }));
    }

    /// Routes the due rows and starts one send per ready webhook.
    fn dispatch(
        &mut self,
        rows: Vec<PendingRow>,
        hooks: HashMap<String, Webhooks>,
        ctx: &mut Context<Self>,
    ) {
        let shared = self.shared.clone();
        let now = shared.clock.now();
        let mut settled = Vec::new();
        let mut groups: Vec<Group> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for row in rows {
            // What Slack is sent is redacted like the trail: a notice's text
            // (an error, a reason someone typed) may quote a secret.
            let event: NotificationEvent = match serde_json::from_str::<serde_json::Value>(
                &row.payload,
            )
            .map(|mut payload| {
                redact::scrub_strings(&mut payload);
                payload
            })
            .and_then(serde_json::from_value)
            {
                Ok(event) => event,
                Err(err) => {
                    tracing::warn!(outbox_id = row.id, error = %err, "slack: unreadable notification");
                    settled.push((
                        row.id,
                        Outcome::Failed {
                            error: format!("unreadable notification: {err}"),
                        },
                    ));
                    continue;
                }
            };
            let channel = route(&event).channel;
            let target = match &row.tenant_id {
                Some(tenant) => hooks.get(tenant).and_then(|w| w.get(channel)),
                None => shared.config.defaults.get(channel),
            };
            let Some(target) = target.cloned() else {
                metrics::counter!("slack_notifications_total", "channel" => channel.as_str(), "result" => "skipped").increment(1);
                settled.push((
                    row.id,
                    Outcome::Skipped {
                        reason: format!("no {channel} webhook configured"),
                    },
                ));
                continue;
            };
            let notification = Notification {
                id: row.notification_id.parse().unwrap_or_default(),
                tenant_id: row.tenant_id.clone(),
                event,
                created_at: row.created_at,
            };
            let i = *index.entry(target.key().to_owned()).or_insert_with(|| {
                groups.push(Group {
                    target: target.clone(),
                    channel,
                    tenant_id: row.tenant_id.clone(),
                    items: Vec::new(),
                });
                groups.len() - 1
            });
            groups[i].items.push((row, notification));
        }
        if !settled.is_empty() {
            let store = shared.store.clone();
            ctx.spawn(
                async move {
                    if let Err(reason) = store.finish(settled, now).await {
                        tracing::warn!(%reason, "slack: could not record skipped notifications");
                    }
                }
                .into_actor(self),
            );
        }

        let config = &shared.config;
        for mut group in groups {
            let key = group.target.key().to_owned();
            if self.busy.contains(&key) {
                continue;
            }
            let digest = group.items.len() > config.digest_threshold;
            let wanted = if digest { 1 } else { group.items.len() as u32 };
            let granted = {
                let mut pacers = lock(&shared.pacers);
                let pacer = pacers
                    .entry(key.clone())
                    .or_insert_with(|| Pacer::new(config.pace, now));
                pacer.take(config.pace, now, wanted)
            };
            if granted == 0 {
                continue;
            }
            if digest {
                group.items.truncate(config.max_digest);
            } else {
                group.items.truncate(granted as usize);
            }
            self.busy.insert(key);
            let send = send_group(shared.clone(), group, digest);
            ctx.spawn(send.into_actor(self).map(|report, act, _| act.sent(report)));
        }
    }

    /// Books a send's result: pacing, failing marks, status.
    fn sent(&mut self, report: SendReport) {
        self.busy.remove(&report.key);
        let shared = &self.shared;
        let now = shared.clock.now();
        if let Some(until) = report.block_until {
            lock(&shared.pacers)
                .entry(report.key.clone())
                .or_insert_with(|| Pacer::new(shared.config.pace, now))
                .block_until(until);
        }
        if report.rate_limited {
            metrics::counter!("slack_rate_limited_total").increment(1);
        }
        {
            let mut status = lock(&shared.status);
            if report.delivered > 0 {
                status.last_sent_at = Some(now);
            }
            if let Some(error) = &report.last_error {
                status.last_error = Some(error.clone());
            }
        }
        if report.delivered > 0 && lock(&shared.failing).remove(&report.key).is_some() {
            tracing::info!(webhook = %report.target.masked(), channel = %report.channel, "slack: webhook delivers again");
        }
        if let Some((status, reason)) = report.permanent {
            self.mark_failing(
                report.key,
                report.channel,
                report.tenant_id,
                &report.target,
                status,
                reason,
                now,
            );
        }
    }

    /// Marks a webhook failing; the first time, audits it and tells another
    /// of the tenant's channels.
    #[allow(clippy::too_many_arguments)]
    fn mark_failing(
        &mut self,
        key: String,
        channel: Channel,
        tenant_id: Option<String>,
        target: &WebhookTarget,
        status: u16,
        reason: String,
        now: DateTime<Utc>,
    ) {
        let shared = &self.shared;
        let mut failing = lock(&shared.failing);
        if failing.contains_key(&key) {
            return;
        }
        failing.insert(
            key,
            FailingWebhook {
                tenant_id: tenant_id.clone(),
                channel,
                webhook: target.masked().to_owned(),
                status,
                reason: reason.clone(),
                since: now,
            },
        );
        drop(failing);
        tracing::warn!(webhook = %target.masked(), %channel, status, %reason, "slack: webhook failing; its messages are not retried");
        let mut event = AuditEvent::new("slack_webhook_failing", now)
            .with_principal("system", Some("System".to_owned()))
            .with_details(serde_json::json!({
                "channel": channel.as_str(),
                "webhook": target.masked(),
                "status": status,
                "reason": reason,
            }))
            .failed(reason.clone());
        if let Some(tenant) = &tenant_id {
            event = event.with_tenant(tenant.clone());
        }
        shared.auditor.record(Source::Internal, event);
        let notice = Notification::new(
            tenant_id,
            NotificationEvent::WebhookFailing {
                target: format!("slack_{channel}"),
                endpoint: target.masked().to_owned(),
                reason,
                status: Some(status),
            },
            now,
        );
        let outbox = shared.outbox.clone();
        actix::spawn(async move {
            if let Err(reason) = outbox.enqueue(notice).await {
                tracing::warn!(%reason, "slack: could not queue the webhook-failing notice");
            }
        });
    }
}
