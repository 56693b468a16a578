//! The live activity stream's hub: [`SseHub`] (what the HTTP layer holds) and
//! [`SseHubActor`] (the supervised fan-out behind it).
//!
//! Committed audit events reach the hub from an [`ActivityFeed`]: in-process
//! from the AuditActor on SQLite, through PostgreSQL `LISTEN/NOTIFY` when
//! several instances share one database. Either way they arrive in commit
//! order, which is `id` order (every audit append holds the trail's lock until
//! it commits), so an event's `id` is the stream cursor.
//!
//! Each event is encoded once into its SSE frame ([`Frame`]); a committed
//! batch becomes one shared [`Batch`], handed to every subscriber with at
//! least one matching frame (the stream picks its frames out itself, on its
//! own worker thread). A subscriber counts what it has waiting: the matching
//! frames, and the bytes of the batches it keeps alive (a batch is kept
//! whole, whatever part of it matches). One whose frames would pass
//! [`SseConfig::client_buffer`], or whose bytes would pass
//! [`SseConfig::max_buffered_bytes`], has fallen behind: it is marked lagged
//! and removed, and its stream ends with `event: resync` (the client
//! reconnects with `Last-Event-ID` and catches up from the database). The
//! hub never waits on a client, and what a client can hold is bounded: its
//! buffer, or one batch when it had nothing waiting.
//!
//! A client that stops reading altogether stops its stream from being
//! polled, so the stream cannot notice that it was dropped; what it holds
//! meanwhile is the bound above, until the connection's write timeout closes
//! the socket and the stream, its subscription and its slot go with it (see
//! `HTTP_WRITE_TIMEOUT` in the service).
//!
//! What outlives an instance of the actor ([`SseHub`]'s shared part): the
//! connection slots and the shutdown signal. Subscribers do not: a restarted
//! hub starts with none, every open stream ends, and clients reconnect by
//! themselves (`retry:`) and resume from their `Last-Event-ID`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use actix::prelude::*;
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::audit::{AuditCommitted, CommittedEvent, Redactor, redact};
use crate::supervisor::{ActorHandle, Child, RestartPolicy, Supervisor};

/// What an operation is about, for the dashboard's colours and the
/// `category` filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    MediaBuy,
    Creative,
    Workflow,
    Auth,
    Admin,
    Security,
    System,
}

impl Category {
    pub const ALL: [Category; 7] = [
        Category::MediaBuy,
        Category::Creative,
        Category::Workflow,
        Category::Auth,
        Category::Admin,
        Category::Security,
        Category::System,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::MediaBuy => "media-buy",
            Category::Creative => "creative",
            Category::Workflow => "workflow",
            Category::Auth => "auth",
            Category::Admin => "admin",
            Category::Security => "security",
            Category::System => "system",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == text)
    }

    /// The category of an event, from its operation name: security
    /// violations first, then the subject the name mentions; events of no
    /// tenant and everything else are `system`.
    pub fn of(operation: &str, security_violation: bool, tenant: Option<&str>) -> Self {
        let has = |word: &str| operation.contains(word);
        if security_violation || has("security") || has("violation") {
            Category::Security
        } else if has("media_buy") {
            Category::MediaBuy
        } else if has("creative") {
            Category::Creative
        } else if has("workflow") || has("approval") {
            Category::Workflow
        } else if operation.starts_with("token_")
            || has("sso_")
            || has("login")
            || has("logout")
            || has("session")
        {
            Category::Auth
        } else if tenant.is_some()
            && [
                "tenant",
                "principal",
                "settings",
                "token",
                "push_notification",
                "webhook",
                "admin",
            ]
            .iter()
            .any(|w| has(w))
        {
            Category::Admin
        } else {
            Category::System
        }
    }
}

/// Whether an event asks a person to act: a media buy waiting for approval,
/// creatives waiting for review, or a producer that says so
/// (`details.action_required: true`).
pub fn action_required(event: &CommittedEvent) -> bool {
    let e = &event.event;
    if !e.success {
        return false;
    }
    let details = &e.details;
    if details.get("action_required") == Some(&serde_json::Value::Bool(true))
        || details.get("requires_approval") == Some(&serde_json::Value::Bool(true))
    {
        return true;
    }
    let pending = |v: Option<&serde_json::Value>| {
        matches!(
            v.and_then(|v| v.as_str()),
            Some("pending_approval" | "pending_review")
        )
    };
    pending(details.get("status")) || pending(details.get("new_status"))
}

/// One event, encoded once for every subscriber: the fields filters look at
/// and the SSE frame (`id:`, `event: activity`, one-line JSON `data:`).
#[derive(Debug)]
pub struct Frame {
    pub id: i64,
    pub tenant_id: Option<String>,
    pub operation: String,
    pub principal_id: Option<String>,
    pub success: bool,
    pub category: Category,
    pub bytes: Bytes,
}

/// The `data:` of an activity event.
#[derive(Serialize)]
struct Payload<'a> {
    id: i64,
    log_id: uuid::Uuid,
    timestamp: String,
    tenant_id: Option<&'a str>,
    operation: &'a str,
    category: Category,
    principal_id: Option<&'a str>,
    principal_name: &'a str,
    success: bool,
    error: Option<&'a str>,
    details: &'a serde_json::Value,
    action_required: bool,
    security_violation: bool,
}

impl Frame {
    /// Encodes `event`. `details`, `error` and the principal go through the
    /// redactor once more (a producer's redaction is not taken on trust).
    pub fn encode(event: &CommittedEvent) -> Self {
        let e = &event.event;
        let category = Category::of(&e.operation, e.security_violation, e.tenant_id.as_deref());
        let mut details = e.details.clone();
        Redactor::SECRETS_ONLY.redact(&mut details);
        let error = e.error.as_deref().map(redact::scrub);
        let principal_id = e.principal_id.as_deref().map(redact::scrub);
        let principal_name = redact::scrub(e.principal_name.as_deref().unwrap_or("System"));
        let payload = Payload {
            id: event.id,
            log_id: e.log_id,
            timestamp: crate::audit::event::format_timestamp(e.created_at),
            tenant_id: e.tenant_id.as_deref(),
            operation: &e.operation,
            category,
            principal_id: principal_id.as_deref(),
            principal_name: &principal_name,
            success: e.success,
            error: error.as_deref(),
            details: &details,
            action_required: action_required(event),
            security_violation: e.security_violation,
        };
        // Serialising plain data cannot fail; `null` keeps the frame valid if
        // it ever did.
        let json = serde_json::to_string(&payload).unwrap_or_else(|_| "null".into());
        let mut text = String::with_capacity(json.len() + 48);
        text.push_str("id: ");
        text.push_str(&event.id.to_string());
        text.push_str("\nevent: activity\ndata: ");
        text.push_str(&json);
        text.push_str("\n\n");
        Self {
            id: event.id,
            tenant_id: e.tenant_id.clone(),
            operation: e.operation.clone(),
            principal_id: e.principal_id.clone(),
            success: e.success,
            category,
            bytes: Bytes::from(text),
        }
    }
}

/// What a subscriber wants to see. `tenant: None` is every tenant and the
/// system events (the super admin's view).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivityFilter {
    pub tenant: Option<String>,
    /// Any of these (empty: all).
    pub operations: Vec<String>,
    pub principal_id: Option<String>,
    pub success: Option<bool>,
    /// Any of these (empty: all).
    pub categories: Vec<Category>,
}

impl ActivityFilter {
    pub fn matches(&self, frame: &Frame) -> bool {
        (self.tenant.is_none() || self.tenant == frame.tenant_id)
            && (self.operations.is_empty() || self.operations.contains(&frame.operation))
            && (self.principal_id.is_none() || self.principal_id == frame.principal_id)
            && self.success.is_none_or(|s| s == frame.success)
            && (self.categories.is_empty() || self.categories.contains(&frame.category))
    }
}

/// Where committed events come from. The returned future delivers them to
/// `hub` in commit order for as long as it runs; it is dropped when the hub
/// stops. It ends with `Err` if it can no longer deliver (the hub is then
/// restarted and attaches a new feed).
///
/// A feed that has to fetch what it delivers (the PostgreSQL feed reads the
/// rows each notification names) may skip the fetch while `demand` says no
/// one is subscribed: a subscriber replays from the trail everything
/// committed before it subscribed, so only events committed after the
/// subscriber count was seen at zero can matter, and those are read once it
/// is not.
pub trait ActivityFeed: Send + Sync + 'static {
    fn attach(
        &self,
        hub: Recipient<AuditCommitted>,
        demand: Demand,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'static>>;
}

/// Whether the hub has subscribers now, for its feed (see [`ActivityFeed`]).
///
/// The count goes up in the hub before a subscriber is told it is
/// subscribed, hence before its replay reads the trail; it goes down when
/// the hub lets a subscriber go (noticed at the next delivery, so it errs on
/// the side of reading).
#[derive(Debug, Clone, Default)]
pub struct Demand(Arc<AtomicUsize>);

impl Demand {
    /// True while at least one subscriber is registered.
    pub fn wanted(&self) -> bool {
        self.0.load(Ordering::SeqCst) > 0
    }

    fn set(&self, subscribers: usize) {
        self.0.store(subscribers, Ordering::SeqCst);
    }
}

/// The in-process feed: the AuditActor's committed events (one instance, or
/// SQLite).
pub struct LocalFeed(pub crate::audit::Auditor);

impl ActivityFeed for LocalFeed {
    fn attach(
        &self,
        hub: Recipient<AuditCommitted>,
        _demand: Demand,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'static>> {
        self.0.subscribe(hub);
        Box::pin(std::future::pending())
    }
}

#[derive(Debug, Clone)]
pub struct SseConfig {
    /// Frames a subscriber may have waiting before it counts as too slow.
    pub client_buffer: usize,
    /// Bytes of batches a subscriber may keep waiting before it counts as
    /// too slow (each batch counted whole: it is what stays in memory).
    pub max_buffered_bytes: usize,
    pub max_per_tenant: usize,
    pub max_total: usize,
}

/// Why a stream was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("this tenant has {0} activity streams open, the most allowed")]
    Tenant(usize),
    #[error("the service has {0} activity streams open, the most allowed")]
    Total(usize),
}

#[derive(Default)]
struct Slots {
    total: usize,
    per_tenant: HashMap<Option<String>, usize>,
}

struct HubShared {
    config: SseConfig,
    slots: Mutex<Slots>,
    shutdown: watch::Sender<bool>,
    /// The current instance's subscriber count, for the feed.
    demand: Demand,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A stream's place among the open streams, given back when dropped (the
/// client went away or the stream ended).
#[derive(Debug)]
pub struct Slot {
    shared: Arc<HubShared>,
    tenant: Option<String>,
}

impl std::fmt::Debug for HubShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubShared").finish_non_exhaustive()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut slots = lock(&self.shared.slots);
        slots.total = slots.total.saturating_sub(1);
        if let Some(n) = slots.per_tenant.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                slots.per_tenant.remove(&self.tenant);
            }
        }
        metrics::gauge!("sse_connections").set(slots.total as f64);
    }
}

/// Frames committed together, shared by every subscriber.
pub type Batch = Arc<[Frame]>;

/// A batch handed to one subscriber, with what it was charged for it.
#[derive(Debug)]
struct Delivery {
    batch: Batch,
    frames: usize,
    bytes: usize,
}

/// What a subscriber has waiting: handed over by the hub, not yet received
/// by its stream.
#[derive(Debug, Default)]
struct Pending {
    frames: AtomicUsize,
    bytes: AtomicUsize,
}

/// A live subscription: batches as the hub publishes them, and whether the
/// hub dropped it for falling behind. Dropping it lets go of every batch
/// still waiting.
#[derive(Debug)]
pub struct Subscription {
    batches: mpsc::UnboundedReceiver<Delivery>,
    filter: Arc<ActivityFilter>,
    pending: Arc<Pending>,
    lagged: Arc<AtomicBool>,
}

impl Subscription {
    /// True once the hub has dropped this subscriber for being too slow.
    pub fn lagged(&self) -> bool {
        self.lagged.load(Ordering::Acquire)
    }

    /// The next batch; `None` once the hub has let go of this subscriber.
    /// A received batch no longer counts as waiting.
    pub async fn recv(&mut self) -> Option<Batch> {
        let delivery = self.batches.recv().await?;
        Some(self.received(delivery))
    }

    /// A batch already waiting, if any.
    pub fn try_recv(&mut self) -> Option<Batch> {
        let delivery = self.batches.try_recv().ok()?;
        Some(self.received(delivery))
    }

    fn received(&self, delivery: Delivery) -> Batch {
        self.pending
            .frames
            .fetch_sub(delivery.frames, Ordering::AcqRel);
        self.pending
            .bytes
            .fetch_sub(delivery.bytes, Ordering::AcqRel);
        delivery.batch
    }

    /// Whether this subscriber wants `frame` (a batch holds every frame
    /// committed together).
    pub fn wants(&self, frame: &Frame) -> bool {
        self.filter.matches(frame)
    }
}

/// What the HTTP layer holds. Cheap to clone.
#[derive(Clone)]
pub struct SseHub {
    shared: Arc<HubShared>,
    actor: ActorHandle<SseHubActor>,
}

impl std::fmt::Debug for SseHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseHub").finish_non_exhaustive()
    }
}

impl SseHub {
    /// Starts the hub under `supervisor` as `sse_hub`, fed by `feed`.
    pub fn start(
        supervisor: &Supervisor,
        policy: RestartPolicy,
        config: SseConfig,
        feed: Arc<dyn ActivityFeed>,
    ) -> Self {
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(HubShared {
            config,
            slots: Mutex::default(),
            shutdown,
            demand: Demand::default(),
        });
        metrics::gauge!("sse_connections").set(0.0);
        let for_factory = shared.clone();
        let actor = supervisor.spawn("sse_hub", policy, move |child| SseHubActor {
            child: child.clone(),
            shared: for_factory.clone(),
            feed: feed.clone(),
            subscribers: Vec::new(),
            last_id: 0,
        });
        Self { shared, actor }
    }

    /// Takes a slot for a stream of `tenant` (`None`: the all-tenants view,
    /// which counts toward the total only).
    pub fn admit(&self, tenant: Option<&str>) -> Result<Slot, Refused> {
        let config = &self.shared.config;
        let mut slots = lock(&self.shared.slots);
        if slots.total >= config.max_total {
            return Err(Refused::Total(config.max_total));
        }
        let key = tenant.map(str::to_owned);
        let open = slots.per_tenant.get(&key).copied().unwrap_or(0);
        if key.is_some() && open >= config.max_per_tenant {
            return Err(Refused::Tenant(config.max_per_tenant));
        }
        slots.total += 1;
        *slots.per_tenant.entry(key.clone()).or_default() += 1;
        metrics::gauge!("sse_connections").set(slots.total as f64);
        Ok(Slot {
            shared: self.shared.clone(),
            tenant: key,
        })
    }

    /// Streams open now.
    pub fn connections(&self) -> usize {
        lock(&self.shared.slots).total
    }

    /// Registers a subscriber; every event the hub publishes from now on
    /// that `filter` matches goes to it. `None` if the hub is restarting.
    pub async fn subscribe(&self, filter: ActivityFilter) -> Option<Subscription> {
        self.actor.send(Subscribe(filter)).await.ok()
    }

    /// Fires when the service shuts down: streams end at once instead of
    /// holding the graceful shutdown open.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shared.shutdown.subscribe()
    }

    /// Ends every open stream (at shutdown).
    pub fn close_all(&self) {
        self.shared.shutdown.send_replace(true);
    }
}

struct Subscriber {
    filter: Arc<ActivityFilter>,
    tx: mpsc::UnboundedSender<Delivery>,
    pending: Arc<Pending>,
    lagged: Arc<AtomicBool>,
}

/// The supervised fan-out. See the module documentation.
pub struct SseHubActor {
    child: Child,
    shared: Arc<HubShared>,
    feed: Arc<dyn ActivityFeed>,
    subscribers: Vec<Subscriber>,
    /// The newest event published; older or equal ids are not published
    /// twice (a feed may deliver an event again after reconnecting).
    last_id: i64,
}

impl Actor for SseHubActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // A new instance starts with no subscribers.
        self.shared.demand.set(0);
        let feed = self
            .feed
            .attach(ctx.address().recipient(), self.shared.demand.clone());
        ctx.spawn(feed.into_actor(self).map(|outcome, act, ctx| {
            let reason = outcome
                .err()
                .unwrap_or_else(|| "the activity feed ended".into());
            tracing::error!(%reason, "activity feed lost; restarting the SSE hub");
            act.child.fail(ctx, reason);
        }));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if !self.subscribers.is_empty() {
            metrics::counter!("sse_clients_dropped_total", "reason" => "hub_restart")
                .increment(self.subscribers.len() as u64);
        }
    }
}

#[derive(Debug, Message)]
#[rtype(result = "Subscription")]
struct Subscribe(ActivityFilter);

impl Handler<Subscribe> for SseHubActor {
    type Result = MessageResult<Subscribe>;

    fn handle(&mut self, Subscribe(filter): Subscribe, _: &mut Context<Self>) -> Self::Result {
        let (tx, batches) = mpsc::unbounded_channel();
        let (filter, pending, lagged) = (Arc::new(filter), Arc::default(), Arc::default());
        self.subscribers.push(Subscriber {
            filter: Arc::clone(&filter),
            tx,
            pending: Arc::clone(&pending),
            lagged: Arc::clone(&lagged),
        });
        self.shared.demand.set(self.subscribers.len());
        MessageResult(Subscription {
            batches,
            filter,
            pending,
            lagged,
        })
    }
}

impl Handler<AuditCommitted> for SseHubActor {
    type Result = ();

    fn handle(&mut self, AuditCommitted(events): AuditCommitted, ctx: &mut Context<Self>) {
        if self.child.trip(ctx) {
            return;
        }
        let fresh: Vec<&CommittedEvent> = events.iter().filter(|e| e.id > self.last_id).collect();
        let Some(newest) = fresh.last().map(|e| e.id) else {
            return;
        };
        self.last_id = newest;
        if self.subscribers.is_empty() {
            return;
        }
        let batch: Batch = fresh.into_iter().map(Frame::encode).collect();
        // What each subscriber handed this batch keeps alive.
        let bytes: usize = batch.iter().map(|f| f.bytes.len()).sum();
        let (max_frames, max_bytes) = (
            self.shared.config.client_buffer,
            self.shared.config.max_buffered_bytes,
        );
        self.subscribers.retain(|s| {
            let matching = batch.iter().filter(|f| s.filter.matches(f)).count();
            if matching == 0 {
                return !s.tx.is_closed();
            }
            let frames = s.pending.frames.load(Ordering::Acquire);
            let queued = s.pending.bytes.load(Ordering::Acquire);
            // One with nothing waiting takes the batch whatever its size.
            if frames > 0 && (frames + matching > max_frames || queued + bytes > max_bytes) {
                s.lagged.store(true, Ordering::Release);
                metrics::counter!("sse_clients_dropped_total", "reason" => "slow").increment(1);
                return false;
            }
            s.pending.frames.fetch_add(matching, Ordering::AcqRel);
            s.pending.bytes.fetch_add(bytes, Ordering::AcqRel);
            // An error: the client went away; its stream gave back its slot.
            s.tx.send(Delivery {
                batch: batch.clone(),
                frames: matching,
                bytes,
            })
            .is_ok()
        });
        self.shared.demand.set(self.subscribers.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditEvent;
    use chrono::Utc;

    fn committed(id: i64, operation: &str, tenant: Option<&str>) -> CommittedEvent {
        let mut event = AuditEvent::new(operation, Utc::now());
        event.tenant_id = tenant.map(str::to_owned);
        CommittedEvent {
            id,
            seq: id,
            prev_hash: String::new(),
            hash: String::new(),
            event,
        }
    }

    #[test]
    fn categories_follow_the_operation() {
        let of = |op: &str| Category::of(op, false, Some("acme"));
        assert_eq!(of("create_media_buy"), Category::MediaBuy);
        assert_eq!(of("media_buy_status_changed"), Category::MediaBuy);
        assert_eq!(of("sync_creatives"), Category::Creative);
        assert_eq!(of("approve_workflow"), Category::Workflow);
        assert_eq!(of("token_rejected"), Category::Auth);
        assert_eq!(of("sso_login_failed"), Category::Auth);
        assert_eq!(of("update_settings"), Category::Admin);
        assert_eq!(of("create_principal"), Category::Admin);
        assert_eq!(of("security_violation"), Category::Security);
        assert_eq!(
            Category::of("anything", true, Some("acme")),
            Category::Security
        );
        assert_eq!(Category::of("create_tenant", false, None), Category::System);
        assert_eq!(of("agent_run_finished"), Category::System);
        for c in Category::ALL {
            assert_eq!(Category::parse(c.as_str()), Some(c));
        }
    }

    #[test]
    fn a_frame_is_one_sse_event_with_one_line_of_json() {
        let mut e = committed(42, "create_media_buy", Some("acme"));
        e.event.details = serde_json::json!({
            "order_name": "line\nbreak",
            "api_key": "sk-live-123",
            "status": "pending_approval",
        });
        let frame = Frame::encode(&e);
        let text = std::str::from_utf8(&frame.bytes).unwrap();
        let lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(lines[0], "id: 42");
        assert_eq!(lines[1], "event: activity");
        assert!(lines[2].starts_with("data: {"));
        assert_eq!(&lines[3..], ["", ""]);
        let data: serde_json::Value = serde_json::from_str(&lines[2][6..]).unwrap();
        assert_eq!(data["category"], "media-buy");
        assert_eq!(data["principal_name"], "System");
        assert_eq!(data["action_required"], true);
        assert_eq!(data["details"]["api_key"], "[REDACTED]");
        assert_eq!(data["details"]["order_name"], "line\nbreak");
        assert!(!text.contains("sk-live-123"));
    }

    #[test]
    fn filters_combine() {
        let frame = Frame::encode(&committed(1, "create_media_buy", Some("acme")));
        let all = ActivityFilter::default();
        assert!(all.matches(&frame));
        let other_tenant = ActivityFilter {
            tenant: Some("other".into()),
            ..all.clone()
        };
        assert!(!other_tenant.matches(&frame));
        let ops = ActivityFilter {
            tenant: Some("acme".into()),
            operations: vec!["sync_creatives".into(), "create_media_buy".into()],
            categories: vec![Category::MediaBuy],
            success: Some(true),
            ..all.clone()
        };
        assert!(ops.matches(&frame));
        let failures = ActivityFilter {
            success: Some(false),
            ..all
        };
        assert!(!failures.matches(&frame));
    }
}
