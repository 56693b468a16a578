//! The Slack router: drains the notification outbox to the tenants' Slack
//! webhooks, off every request path.
//!
//! Every poll it reads the due outbox rows (oldest first), routes each by
//! [`super::route`] to the tenant's general, audit or human-in-the-loop
//! webhook, and groups them by webhook. Per webhook, one send runs at a time,
//! paced by a token bucket ([`super::pacer`]); when more than the digest
//! threshold wait, they go as one digest message. Rows are claimed with a
//! lease before a send (so a second replica skips them) and marked after it:
//!
//! - 2xx: `sent`;
//! - 429: the webhook waits `Retry-After` (or the default) and the same
//!   message goes again; a 429 never uses up attempts;
//! - 408, 5xx, timeouts, connection errors: backoff with jitter, up to the
//!   attempt budget, then `failed`;
//! - other 4xx (`invalid_payload`, `no_service`, `channel_is_archived`, 403,
//!   404, 410, …): `failed` at once, and the webhook is marked failing: shown
//!   in `/health`, audited as `slack_webhook_failing` and announced on another
//!   of the tenant's webhooks (once, until a send to it succeeds again).
//!
//! **The one duplicate window**: if the process dies after Slack accepted a
//! message and before the row is marked `sent`, the row's lease expires and
//! the message is sent again after the restart. Slack's incoming webhooks take
//! no idempotency key, so this cannot be closed from our side; the message's
//! context line carries the notification id, so a reader can tell.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::blocks;
use super::pacer::{Pace, Pacer, backoff};
use super::route::{Channel, route};
use crate::Clock;
use crate::audit::{AuditEvent, Auditor, NotableEvent, Source, redact};
use crate::notify::{Notification, NotificationEvent, NotificationOutbox};
use crate::supervisor::{ActorHandle, Child, RestartPolicy, Supervisor};

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'static>>;

/// A webhook URL (a secret) with its masked form for logs and `/health`.
#[derive(Clone)]
pub struct WebhookTarget {
    url: SecretString,
    masked: String,
    key: String,
}

impl WebhookTarget {
    /// `masked` must already hide the secret part of `url`.
    pub fn new(url: SecretString, masked: String) -> Self {
        let key = hex::encode(Sha256::digest(url.expose_secret().as_bytes()));
        Self { url, masked, key }
    }

    pub fn masked(&self) -> &str {
        &self.masked
    }

    pub fn url(&self) -> &SecretString {
        &self.url
    }

    /// Identifies the webhook without holding its URL in the clear.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.masked)
    }
}

/// A tenant's (or the service's default) three webhooks.
#[derive(Debug, Clone, Default)]
pub struct Webhooks {
    pub general: Option<WebhookTarget>,
    pub audit: Option<WebhookTarget>,
    pub hitl: Option<WebhookTarget>,
}

impl Webhooks {
    pub fn get(&self, channel: Channel) -> Option<&WebhookTarget> {
        match channel {
            Channel::General => self.general.as_ref(),
            Channel::Audit => self.audit.as_ref(),
            Channel::Hitl => self.hitl.as_ref(),
        }
    }
}

/// A due outbox row.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingRow {
    pub id: i64,
    pub notification_id: String,
    pub tenant_id: Option<String>,
    /// The serialised [`NotificationEvent`].
    pub payload: String,
    pub created_at: DateTime<Utc>,
    /// Attempts so far (429s not counted).
    pub attempts: u32,
}

/// What became of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Delivered.
    Sent,
    /// Failed for now; one more attempt counted; try again at `at`.
    Retry { at: DateTime<Utc>, error: String },
    /// Not attempted, or rate limited: try again at `at`, attempts unchanged.
    Deferred { at: DateTime<Utc>, error: String },
    /// Given up (permanent error or attempts exhausted).
    Failed { error: String },
    /// Nothing to send it to (no webhook configured).
    Skipped { reason: String },
}

/// The port onto the outbox table.
pub trait SlackStore: Send + Sync + 'static {
    /// Pending rows due at `now` and not leased, oldest first.
    fn pending(&self, now: DateTime<Utc>, limit: u32) -> BoxFuture<Vec<PendingRow>>;
    /// The webhooks of these tenants (missing tenants are absent).
    fn webhooks(&self, tenant_ids: Vec<String>) -> BoxFuture<HashMap<String, Webhooks>>;
    /// Leases those of `ids` still pending and unleased until `until`;
    /// answers the ids it leased.
    fn claim(&self, ids: Vec<i64>, now: DateTime<Utc>, until: DateTime<Utc>)
    -> BoxFuture<Vec<i64>>;
    /// Records outcomes and releases the leases.
    fn finish(&self, outcomes: Vec<(i64, Outcome)>, now: DateTime<Utc>) -> BoxFuture<()>;
    /// Pending rows, due or not.
    fn depth(&self) -> BoxFuture<u64>;
}

/// What a webhook answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub retry_after: Option<Duration>,
    /// The start of the body (Slack puts its error code there).
    pub body: String,
}

/// The port onto HTTP: posts JSON, no redirects, bounded time. `Err` is a
/// transport failure (timeout, connection) with a reason free of the URL.
pub trait SlackTransport: Send + Sync + 'static {
    fn post(&self, url: &SecretString, body: Vec<u8>) -> BoxFuture<Response>;
}

/// How an answer is treated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    RateLimited(Duration),
    Transient(String),
    Permanent { status: u16, reason: String },
}

/// 2xx delivered; 429 rate limited; 408, 5xx and transport errors transient;
/// every other status permanent.
pub fn classify(answer: &Result<Response, String>, default_retry_after: Duration) -> Verdict {
    match answer {
        Err(reason) => Verdict::Transient(reason.clone()),
        Ok(r) if (200..300).contains(&r.status) => Verdict::Delivered,
        Ok(r) if r.status == 429 => {
            Verdict::RateLimited(r.retry_after.unwrap_or(default_retry_after))
        }
        Ok(r) if r.status == 408 || r.status >= 500 => {
            Verdict::Transient(format!("HTTP {}{}", r.status, slack_error(&r.body)))
        }
        Ok(r) => Verdict::Permanent {
            status: r.status,
            reason: format!("HTTP {}{}", r.status, slack_error(&r.body)),
        },
    }
}

/// Slack's error code from a body (`no_service`, `invalid_payload`, …) as
/// `": code"`, or nothing. Only `[a-z0-9_]`, at most 64 characters: a body
/// is never echoed whole into logs.
fn slack_error(body: &str) -> String {
    let code: String = body
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
        .take(64)
        .collect();
    if code.is_empty() {
        String::new()
    } else {
        format!(": {code}")
    }
}

/// The router's settings.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    /// How often the outbox is read.
    pub poll_interval: Duration,
    pub pace: Pace,
    /// More than this many waiting for one webhook go as one digest.
    pub digest_threshold: usize,
    /// At most this many events in one digest.
    pub max_digest: usize,
    /// Attempts (429s not counted) before a message is `failed`.
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// Wait after a 429 without `Retry-After`.
    pub default_retry_after: Duration,
    /// How long a claimed row stays leased to this process.
    pub lease: Duration,
    /// Admin dashboard base URL for the messages' buttons.
    pub admin_ui_url: Option<String>,
    /// Service-wide webhooks for events with no tenant.
    pub defaults: Webhooks,
}

impl Default for SlackConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(250),
            pace: Pace::default(),
            digest_threshold: 10,
            max_digest: 500,
            max_attempts: 8,
            retry_base: Duration::from_secs(2),
            retry_cap: Duration::from_secs(600),
            default_retry_after: Duration::from_secs(30),
            lease: Duration::from_secs(60),
            admin_ui_url: None,
            defaults: Webhooks::default(),
        }
    }
}

/// A webhook that answered with a permanent error.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailingWebhook {
    pub tenant_id: Option<String>,
    pub channel: Channel,
    /// Masked.
    pub webhook: String,
    pub status: u16,
    pub reason: String,
    pub since: DateTime<Utc>,
}

/// What `/health` shows of the router.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SlackStatus {
    /// Outbox rows waiting (read at most once a second).
    pub queue_depth: u64,
    pub last_sent_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// Webhooks marked failing, until a send to them succeeds.
    pub failing: Vec<FailingWebhook>,
}

/// State that outlives a restart of the actor.
struct Shared {
    config: SlackConfig,
    store: Arc<dyn SlackStore>,
    transport: Arc<dyn SlackTransport>,
    outbox: Arc<dyn NotificationOutbox>,
    auditor: Auditor,
    clock: Arc<dyn Clock>,
    pacers: Mutex<HashMap<String, Pacer>>,
    failing: Mutex<HashMap<String, FailingWebhook>>,
    status: Mutex<SlackStatus>,
    /// Failure notices waiting to be queued.
    notices: Mutex<Vec<Notification>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The running router: a handle for `/health` and tests.
#[derive(Clone)]
pub struct SlackRouter {
    shared: Arc<Shared>,
    actor: ActorHandle<SlackRouterActor>,
}

impl std::fmt::Debug for SlackRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackRouter").finish_non_exhaustive()
    }
}

impl SlackRouter {
    /// Starts the router under `supervisor` as `slack_router`.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        supervisor: &Supervisor,
        policy: RestartPolicy,
        config: SlackConfig,
        store: Arc<dyn SlackStore>,
        transport: Arc<dyn SlackTransport>,
        outbox: Arc<dyn NotificationOutbox>,
        auditor: Auditor,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let shared = Arc::new(Shared {
            config,
            store,
            transport,
            outbox,
            auditor,
            clock,
            pacers: Mutex::new(HashMap::new()),
            failing: Mutex::new(HashMap::new()),
            status: Mutex::new(SlackStatus::default()),
            notices: Mutex::new(Vec::new()),
        });
        let for_factory = shared.clone();
        let actor = supervisor.spawn("slack_router", policy, move |child| SlackRouterActor {
            child: child.clone(),
            shared: for_factory.clone(),
            loading: false,
            busy: HashSet::new(),
            depth_read_at: None,
        });
        Self { shared, actor }
    }

    pub fn status(&self) -> SlackStatus {
        let mut status = lock(&self.shared.status).clone();
        status.failing = lock(&self.shared.failing).values().cloned().collect();
        status
            .failing
            .sort_by(|a, b| (a.since, &a.webhook).cmp(&(b.since, &b.webhook)));
        status
    }

    /// Reads the outbox now instead of at the next poll.
    pub fn poke(&self) {
        self.actor.do_send(Poll);
    }
}

/// Read the outbox now.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Poll;

/// The supervised actor.
pub struct SlackRouterActor {
    child: Child,
    shared: Arc<Shared>,
    /// A read of the outbox is under way.
    loading: bool,
    /// Webhooks (by key) with a send under way.
    busy: HashSet<String>,
    depth_read_at: Option<DateTime<Utc>>,
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
struct Group {
    target: WebhookTarget,
    channel: Channel,
    tenant_id: Option<String>,
    items: Vec<(PendingRow, Notification)>,
}

/// What one send to one webhook did.
struct SendReport {
    key: String,
    channel: Channel,
    tenant_id: Option<String>,
    target: WebhookTarget,
    delivered: usize,
    block_until: Option<DateTime<Utc>>,
    rate_limited: bool,
    permanent: Option<(u16, String)>,
    last_error: Option<String>,
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

/// Queues the failure notices whose tenant (or, without a tenant, the
/// service) has an audit webhook: the others would only be skipped.
async fn queue_notices(shared: &Shared, notices: Vec<Notification>) {
    let mut tenants: Vec<String> = notices.iter().filter_map(|n| n.tenant_id.clone()).collect();
    tenants.sort_unstable();
    tenants.dedup();
    let hooks = if tenants.is_empty() {
        HashMap::new()
    } else {
        match shared.store.webhooks(tenants).await {
            Ok(hooks) => hooks,
            Err(reason) => {
                tracing::warn!(%reason, notices = notices.len(), "slack: could not queue failure notices");
                return;
            }
        }
    };
    let wanted: Vec<Notification> = notices
        .into_iter()
        .filter(|n| {
            let channel = route(&n.event).channel;
            match &n.tenant_id {
                Some(tenant) => hooks.get(tenant).is_some_and(|w| w.get(channel).is_some()),
                None => shared.config.defaults.get(channel).is_some(),
            }
        })
        .collect();
    if wanted.is_empty() {
        return;
    }
    let n = wanted.len();
    if let Err(reason) = shared.outbox.enqueue_all(wanted).await {
        tracing::warn!(%reason, notices = n, "slack: could not queue failure notices");
    }
}

/// Claims a group's rows, posts (one digest, or each message in turn) and
/// records the outcomes.
async fn send_group(shared: Arc<Shared>, group: Group, digest: bool) -> SendReport {
    let config = &shared.config;
    let Group {
        target,
        channel,
        tenant_id,
        items,
    } = group;
    let mut report = SendReport {
        key: target.key().to_owned(),
        channel,
        tenant_id,
        target: target.clone(),
        delivered: 0,
        block_until: None,
        rate_limited: false,
        permanent: None,
        last_error: None,
    };
    let now = shared.clock.now();
    let lease = chrono::Duration::from_std(config.lease).unwrap_or(chrono::Duration::MAX);
    let ids: Vec<i64> = items.iter().map(|(row, _)| row.id).collect();
    let claimed: HashSet<i64> = match shared.store.claim(ids, now, now + lease).await {
        Ok(claimed) => claimed.into_iter().collect(),
        Err(reason) => {
            tracing::warn!(%reason, "slack: could not claim notifications");
            report.last_error = Some(reason);
            return report;
        }
    };
    let items: Vec<_> = items
        .into_iter()
        .filter(|(row, _)| claimed.contains(&row.id))
        .collect();
    if items.is_empty() {
        return report;
    }

    let mut outcomes = Vec::with_capacity(items.len());
    let admin = config.admin_ui_url.as_deref();
    let batches: Vec<(serde_json::Value, Vec<&PendingRow>)> = if digest {
        let notifications: Vec<Notification> = items.iter().map(|(_, n)| n.clone()).collect();
        vec![(
            blocks::render_digest(&notifications, now, admin),
            items.iter().map(|(row, _)| row).collect(),
        )]
    } else {
        items
            .iter()
            .map(|(row, n)| (blocks::render(n, admin), vec![row]))
            .collect()
    };

    let mut stop: Option<Outcome> = None;
    for (message, rows) in batches {
        if let Some(outcome) = &stop {
            outcomes.extend(rows.iter().map(|row| (row.id, outcome.clone())));
            continue;
        }
        let body = serde_json::to_vec(&message).unwrap_or_default();
        let sent_at = shared.clock.now();
        let started = std::time::Instant::now();
        let answer = shared.transport.post(target.url(), body).await;
        let elapsed = started.elapsed();
        metrics::histogram!("slack_post_duration_seconds").record(elapsed.as_secs_f64());
        // Waits count from when the answer came: the clock when the request
        // went out plus how long it took (read this way, a manual clock
        // moved by a test after the receiver answered cannot shift them).
        let at = sent_at + chrono::Duration::from_std(elapsed).unwrap_or_default();
        let verdict = classify(&answer, config.default_retry_after);
        let result = match &verdict {
            Verdict::Delivered => "sent",
            Verdict::RateLimited(_) => "rate_limited",
            Verdict::Transient(_) => "retried",
            Verdict::Permanent { .. } => "failed",
        };
        metrics::counter!("slack_notifications_total", "channel" => channel.as_str(), "result" => result)
            .increment(rows.len() as u64);
        match verdict {
            Verdict::Delivered => {
                report.delivered += rows.len();
                outcomes.extend(rows.iter().map(|row| (row.id, Outcome::Sent)));
            }
            Verdict::RateLimited(wait) => {
                let until = at + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
                tracing::warn!(webhook = %target.masked(), %channel, retry_after_s = wait.as_secs_f64(), "slack: rate limited (429)");
                report.rate_limited = true;
                report.block_until = Some(until);
                let outcome = Outcome::Deferred {
                    at: until,
                    error: "rate limited (429)".to_owned(),
                };
                outcomes.extend(rows.iter().map(|row| (row.id, outcome.clone())));
                stop = Some(outcome);
            }
            Verdict::Transient(error) => {
                // The attempt this was: the largest of the batch's rows.
                let attempt = rows.iter().map(|r| r.attempts).max().unwrap_or(0) + 1;
                tracing::warn!(webhook = %target.masked(), %channel, attempt, %error, "slack: post failed; will retry");
                report.last_error = Some(error.clone());
                if attempt >= config.max_attempts {
                    let error = format!("gave up after {attempt} attempts: {error}");
                    outcomes.extend(rows.iter().map(|row| {
                        (
                            row.id,
                            Outcome::Failed {
                                error: error.clone(),
                            },
                        )
                    }));
                } else {
                    let wait = backoff(
                        attempt,
                        config.retry_base,
                        config.retry_cap,
                        rand::random::<f64>(),
                    );
                    let until =
                        at + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
                    report.block_until = Some(until);
                    outcomes.extend(rows.iter().map(|row| {
                        (
                            row.id,
                            Outcome::Retry {
                                at: until,
                                error: error.clone(),
                            },
                        )
                    }));
                    stop = Some(Outcome::Deferred {
                        at: until,
                        error: "waiting for an earlier message".to_owned(),
                    });
                }
            }
            Verdict::Permanent { status, reason } => {
                report.last_error = Some(reason.clone());
                outcomes.extend(rows.iter().map(|row| {
                    (
                        row.id,
                        Outcome::Failed {
                            error: reason.clone(),
                        },
                    )
                }));
                report.permanent = Some((status, reason));
            }
        }
    }

    if let Err(reason) = shared.store.finish(outcomes, shared.clock.now()).await {
        // The lease runs out and the rows are tried again: a duplicate at
        // worst, never a loss.
        tracing::warn!(%reason, "slack: could not record delivery outcomes");
        report.last_error = Some(reason);
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Result<Response, String> {
        Ok(Response {
            status,
            retry_after: None,
            body: body.to_owned(),
        })
    }

    #[test]
    fn answers_are_classified_as_slack_documents_them() {
        let default = Duration::from_secs(30);
        assert_eq!(classify(&answer(200, "ok"), default), Verdict::Delivered);
        assert_eq!(
            classify(&answer(429, ""), default),
            Verdict::RateLimited(default)
        );
        let with_header = Ok(Response {
            status: 429,
            retry_after: Some(Duration::from_secs(3)),
            body: String::new(),
        });
        assert_eq!(
            classify(&with_header, default),
            Verdict::RateLimited(Duration::from_secs(3))
        );
        assert!(matches!(
            classify(&answer(503, ""), default),
            Verdict::Transient(_)
        ));
        assert!(matches!(
            classify(&answer(408, ""), default),
            Verdict::Transient(_)
        ));
        assert!(matches!(
            classify(&Err("timed out".into()), default),
            Verdict::Transient(_)
        ));
        for (status, body) in [
            (404, "no_service"),
            (400, "invalid_payload"),
            (410, "channel_is_archived"),
            (403, "action_prohibited"),
        ] {
            assert_eq!(
                classify(&answer(status, body), default),
                Verdict::Permanent {
                    status,
                    reason: format!("HTTP {status}: {body}")
                }
            );
        }
    }

    #[test]
    fn failed_operations_get_a_notice_and_security_events_do_not() {
        let now = Utc::now();
        let failed = AuditEvent::new("sync_creatives", now)
            .with_tenant("acme")
            .failed("upstream timed out");
        let notice = failure_notice(&failed, now).expect("a notice");
        assert_eq!(notice.tenant_id.as_deref(), Some("acme"));
        assert_eq!(notice.event.kind(), "operation_failed");
        assert_eq!(route(&notice.event).channel, Channel::Audit);

        assert!(failure_notice(&AuditEvent::new("sync_creatives", now), now).is_none());
        for operation in [
            "token_rejected",
            "security_violation",
            "slack_webhook_failing",
        ] {
            let event = AuditEvent::new(operation, now).failed("no");
            assert!(failure_notice(&event, now).is_none(), "{operation}");
        }
        let mut violation = AuditEvent::new("get_media_buy", now).failed("not yours");
        violation.security_violation = true;
        assert!(failure_notice(&violation, now).is_none());
    }

    #[test]
    fn only_an_error_code_of_the_body_is_kept() {
        assert_eq!(slack_error("no_service\n"), ": no_service");
        assert_eq!(slack_error("<html>https://hooks.slack.com/x</html>"), "");
        assert_eq!(slack_error(&"a".repeat(500)).len(), 2 + 64);
    }
}
