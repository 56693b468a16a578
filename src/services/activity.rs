//! The activity stream's service side: the PostgreSQL feed that carries
//! committed events from every instance to this one's hub, and the stream a
//! connection reads (replay from the trail, then live frames from the hub).
//!
//! How a connection gets every matching event exactly once: it subscribes to
//! the hub *first*, then reads the trail after its cursor in pages until it
//! has caught up, then sends what the hub queued, skipping ids it has already
//! sent. An event committed before a page was read is in that page; one
//! committed after it reaches the hub after the subscription, so it is queued.
//! Ids are the commit order (every audit append holds the trail's lock until
//! it commits), so "after the cursor" never skips a late commit.
//!
//! What a stream may hold: it hands the HTTP layer at most about
//! [`CHUNK_BYTES`] at a time (a large batch or replay page goes out in
//! several writes, never as one copy of itself), so what is copied for one
//! client that stops reading is that chunk and actix's write buffer; the
//! shared batches it keeps waiting are bounded by the hub
//! (`SSE_MAX_BUFFERED_BYTES`), and the socket by the write timeout.
//!
//! Whether it may still run: at each heartbeat the stream asks its
//! [`Recheck`] whether the credentials it was opened with still hold (the
//! session not signed out, the token not revoked or expired, the tenant
//! active). When they do not, it sends `event: end` with `{"reason":
//! "unauthorized"}` and ends; reconnecting then gets 401. The question is
//! asked at heartbeat cadence, never per event.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use actix::Recipient;
use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use futures_util::future::LocalBoxFuture;
use overseer_actors::activity::{
    ActivityFeed, ActivityFilter, Batch, Category, Demand, Frame, Slot, SseHub, Subscription,
};
use overseer_actors::audit::{AuditCommitted, CommittedEvent};
use tokio::sync::watch;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::store::{ActivityQuery, Store, StoreError};

/// The channel migration 14's trigger notifies of appended audit ids.
const AUDIT_CHANNEL: &str = "overseer_audit";

/// Rows read from the trail per query while replaying.
const PAGE: u32 = 500;

/// What a stream hands the HTTP layer at once: frames are gathered up to
/// about this size (a single larger frame goes alone). actix copies each
/// chunk into its write buffer, which it fills up to 32 KiB before writing;
/// for a client that reads nothing, that buffer and one chunk are the
/// stream's own copies.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// The PostgreSQL feed: `LISTEN overseer_audit` (migration 14), then the rows
/// each notification names, in order. Survives a lost connection: it
/// reconnects with backoff and reads what it missed.
///
/// While no stream is open it reads nothing: it moves its cursor past what
/// it was told of (see [`ActivityFeed`] for why no stream misses anything).
/// `activity_feed_events_total{result="read"|"skipped"}` counts the events
/// read and the ids passed over.
pub struct PgFeed {
    pub store: Store,
}

impl ActivityFeed for PgFeed {
    fn attach(
        &self,
        hub: Recipient<AuditCommitted>,
        demand: Demand,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'static>> {
        let store = self.store.clone();
        Box::pin(async move { listen(store, hub, demand).await })
    }
}

async fn listen(
    store: Store,
    hub: Recipient<AuditCommitted>,
    demand: Demand,
) -> Result<(), String> {
    let mut last: Option<i64> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut listener = match store.audit_listener().await {
            Ok(Some(listener)) => Listening(Some(listener)),
            Ok(None) => return Err("LISTEN needs PostgreSQL".into()),
            Err(e) => {
                tracing::warn!(reason = %e.short_reason(), "activity feed cannot connect yet; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let listening = match listener.0.as_mut() {
            Some(l) => l.listen(AUDIT_CHANNEL).await,
            None => continue,
        };
        if let Err(e) = listening {
            tracing::warn!(reason = %StoreError::from_sqlx(e, Duration::from_secs(5)).short_reason(), "activity feed cannot listen yet; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
            continue;
        }
        // Listening first, then the catch-up read: nothing falls between.
        match catch_up(&store, &hub, &demand, &mut last).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!(reason = %e.short_reason(), "activity feed catch-up failed; retrying");
                tokio::time::sleep(backoff).await;
                continue;
            }
        }
        while let Some(l) = listener.0.as_mut() {
            match l.try_recv().await {
                Ok(Some(first)) => {
                    let mut hi = parse_range(first.payload()).map_or(0, |(_, hi)| hi);
                    // Coalesce what is already waiting into one read.
                    while let Some(next) = l.next_buffered() {
                        if let Some((_, h)) = parse_range(next.payload()) {
                            hi = hi.max(h);
                        }
                    }
                    let from = last.unwrap_or(0) + 1;
                    if hi < from {
                        continue;
                    }
                    // Asked after the notification, hence after the commit.
                    if !demand.wanted() {
                        skipped(&mut last, from, hi);
                        continue;
                    }
                    match store.audit_range(from, hi).await {
                        Ok(events) => deliver(&hub, &mut last, events)?,
                        Err(e) => {
                            tracing::warn!(reason = %e.short_reason(), "activity feed read failed; reconnecting");
                            break;
                        }
                    }
                }
                // The connection was lost and re-established: notifications
                // may have been missed.
                Ok(None) => {
                    if let Err(e) = catch_up(&store, &hub, &demand, &mut last).await {
                        tracing::warn!(reason = %e.short_reason(), "activity feed catch-up failed; reconnecting");
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(reason = %StoreError::from_sqlx(e, Duration::from_secs(5)).short_reason(), "activity feed lost its connection; reconnecting");
                    break;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// A `PgListener` that is let go without cleaning up when there is no runtime
/// left to clean up on (the process is ending): its drop would spawn
/// `UNLISTEN` and the connection's return to the pool, which panics there.
struct Listening(Option<sqlx::postgres::PgListener>);

impl Drop for Listening {
    fn drop(&mut self) {
        if tokio::runtime::Handle::try_current().is_err()
            && let Some(listener) = self.0.take()
        {
            std::mem::forget(listener);
        }
    }
}

/// Reads everything after `last` (or, the first time, starts from the newest
/// id: the hub's subscribers replay older events themselves).
async fn catch_up(
    store: &Store,
    hub: &Recipient<AuditCommitted>,
    demand: &Demand,
    last: &mut Option<i64>,
) -> Result<(), StoreError> {
    let Some(after) = *last else {
        *last = Some(store.max_audit_id().await?);
        return Ok(());
    };
    if !demand.wanted() {
        // The newest id first, then the question: what is skipped was
        // committed before no one was found listening.
        let newest = store.max_audit_id().await?;
        if !demand.wanted() {
            skipped(last, after + 1, newest);
            return Ok(());
        }
    }
    let mut after = after;
    loop {
        let events = store
            .activity_after(after, &ActivityQuery::default(), PAGE)
            .await?;
        let full = events.len() == PAGE as usize;
        if let Some(e) = events.last() {
            after = e.id;
        }
        deliver(hub, last, events).map_err(StoreError::Unavailable)?;
        if !full {
            return Ok(());
        }
    }
}

/// Moves the cursor past `from..=hi` without reading it (no stream is open).
fn skipped(last: &mut Option<i64>, from: i64, hi: i64) {
    if hi >= from {
        metrics::counter!("activity_feed_events_total", "result" => "skipped")
            .increment((hi - from + 1) as u64);
        *last = Some(hi);
    }
}

fn deliver(
    hub: &Recipient<AuditCommitted>,
    last: &mut Option<i64>,
    events: Vec<CommittedEvent>,
) -> Result<(), String> {
    let Some(newest) = events.last().map(|e| e.id) else {
        return Ok(());
    };
    metrics::counter!("activity_feed_events_total", "result" => "read")
        .increment(events.len() as u64);
    hub.try_send(AuditCommitted(events.into()))
        .map_err(|e| format!("the SSE hub is not taking events: {e}"))?;
    *last = Some(newest);
    Ok(())
}

fn parse_range(payload: &str) -> Option<(i64, i64)> {
    let (lo, hi) = payload.split_once(':')?;
    Some((lo.parse().ok()?, hi.parse().ok()?))
}

/// How a connection starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The newest `n` matching events, then live ones.
    Backfill(u32),
    /// Every matching event after this id.
    After(i64),
}

/// Whether the credentials a stream was opened with still hold, asked at
/// each heartbeat: `Ok(false)` when they are gone (the stream ends), `Err`
/// with a short reason when the question cannot be answered now.
///
/// A failed question is asked again at the next heartbeat and the stream
/// runs on meanwhile; a second failure in a row ends it with `event:
/// resync` (the client reconnects and is authenticated afresh). Why not end
/// at once: the store is what fails, and while it is down nothing new is
/// committed for the stream to send, so one heartbeat of doubt shows
/// nothing that the check would have refused; ending every stream on a
/// blip would instead send every dashboard back to a full reconnection.
pub type Recheck = Box<dyn Fn() -> LocalBoxFuture<'static, Result<bool, String>>>;

/// What a connection asked for and the limits it runs under.
pub struct StreamSpec {
    pub filter: ActivityFilter,
    pub start: Start,
    pub backfill: u32,
    pub max_replay: u32,
    pub heartbeat: Duration,
    pub retry_ms: u64,
    /// `None`: the credentials cannot go away while the process runs (the
    /// bootstrap super admin's token, from the configuration).
    pub recheck: Option<Recheck>,
}

/// A prepared stream: where replay starts (for the `Overseer-Replay-From`
/// header) and the body.
pub struct Prepared {
    pub replay_from: i64,
    pub body: Pin<Box<dyn Stream<Item = Result<Bytes, std::convert::Infallible>>>>,
}

/// Why a stream could not start.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the activity hub is restarting")]
    HubRestarting,
}

/// Subscribes, decides where replay starts and builds the body. `slot` is
/// held by the body: it is given back when the client goes away.
pub async fn prepare(
    store: Store,
    hub: SseHub,
    slot: Slot,
    spec: StreamSpec,
) -> Result<Prepared, StreamError> {
    let subscription = hub
        .subscribe(spec.filter.clone())
        .await
        .ok_or(StreamError::HubRestarting)?;
    let query = sql_filter(&spec.filter);
    let mut head = BytesMut::new();
    head.extend_from_slice(format!("retry: {}\n\n", spec.retry_ms).as_bytes());

    let after = match spec.start {
        Start::After(id) => {
            let pending = store
                .activity_count_after(id, &query, spec.max_replay.saturating_add(1))
                .await?;
            if pending > i64::from(spec.max_replay) {
                head.extend_from_slice(&resync_frame("replay_limit", Some(id)));
                None
            } else {
                Some(id)
            }
        }
        Start::Backfill(_) => None,
    };
    let cursor = match after {
        Some(id) => id,
        None => {
            let n = match spec.start {
                Start::Backfill(n) => n,
                Start::After(_) => spec.backfill,
            };
            // The newest `n` events up to `floor`; the replay below sends
            // them, then what was committed since (it reads the trail after
            // the cursor, filtered alike), in pieces of at most a chunk.
            let floor = store.max_audit_id().await?;
            let mut newest = store.activity_latest(floor, &query, n).await?;
            newest.retain(|e| category_matches(&spec.filter, e));
            newest.iter().map(|e| e.id).min().map_or(floor, |id| id - 1)
        }
    };

    let mut heartbeat = tokio::time::interval_at(Instant::now() + spec.heartbeat, spec.heartbeat);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let state = State {
        store,
        shutdown: hub.shutdown_signal(),
        hub,
        _slot: slot,
        query,
        filter: spec.filter,
        subscription: Some(subscription),
        cursor,
        replaying: true,
        head: Some(head.freeze()),
        current: None,
        heartbeat,
        recheck: spec.recheck,
        unverified: false,
        done: false,
    };
    Ok(Prepared {
        replay_from: cursor,
        body: Box::pin(futures_util::stream::unfold(state, step)),
    })
}

struct State {
    store: Store,
    hub: SseHub,
    _slot: Slot,
    shutdown: watch::Receiver<bool>,
    query: ActivityQuery,
    filter: ActivityFilter,
    subscription: Option<Subscription>,
    /// Every matching event up to here has been sent (or skipped on purpose).
    cursor: i64,
    replaying: bool,
    head: Option<Bytes>,
    /// The batch being sent and the index of its next frame.
    current: Option<(Batch, usize)>,
    heartbeat: Interval,
    recheck: Option<Recheck>,
    /// The last heartbeat's re-check could not be answered.
    unverified: bool,
    done: bool,
}

type Item = Result<Bytes, std::convert::Infallible>;

async fn step(mut st: State) -> Option<(Item, State)> {
    if let Some(head) = st.head.take() {
        return Some((Ok(head), st));
    }
    if st.done || *st.shutdown.borrow() {
        return None;
    }
    while st.replaying {
        if st.subscription.as_ref().is_none_or(Subscription::lagged) {
            // Dropped by the hub while reading the trail (a burst filled the
            // queue): subscribe again, then read on; nothing falls between.
            st.subscription = Box::pin(st.hub.subscribe(st.filter.clone())).await;
            st.subscription.as_ref()?;
        }
        // Boxed: a database query's future is large, and the stream keeps
        // this function's future inline for as long as it lives (memory per
        // open stream).
        let page = match Box::pin(st.store.activity_after(st.cursor, &st.query, PAGE)).await {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(reason = %e.short_reason(), "activity replay failed; ending the stream");
                return None;
            }
        };
        let full = page.len() == PAGE as usize;
        let mut chunk = BytesMut::new();
        let mut n = 0;
        let mut cut = false;
        for event in &page {
            if chunk.len() >= CHUNK_BYTES {
                // The rest of the page is read again next time.
                cut = true;
                break;
            }
            st.cursor = event.id;
            if category_matches(&st.filter, event) {
                chunk.extend_from_slice(&Frame::encode(event).bytes);
                n += 1;
            }
        }
        if !full && !cut {
            st.replaying = false;
        }
        if n > 0 {
            metrics::counter!("sse_events_sent_total").increment(n);
            return Some((Ok(chunk.freeze()), st));
        }
    }

    enum Next {
        Shutdown,
        Batch(Option<Batch>),
        Beat,
    }
    loop {
        if st.subscription.as_ref()?.lagged() {
            return lagged(st);
        }
        // What is left of a batch goes before anything new.
        if st.current.is_some() {
            let chunk = fill(&mut st);
            if !chunk.is_empty() {
                return Some((Ok(chunk), st));
            }
            continue;
        }
        // The heartbeat before the batches: the re-check is not put off
        // by a busy stream.
        let next = {
            let State {
                subscription,
                heartbeat,
                shutdown,
                ..
            } = &mut st;
            let subscription = subscription.as_mut()?;
            tokio::select! {
                biased;
                _ = shutdown.changed() => Next::Shutdown,
                _ = heartbeat.tick() => Next::Beat,
                batch = subscription.recv() => Next::Batch(batch),
            }
        };
        match next {
            Next::Shutdown => {
                metrics::counter!("sse_clients_dropped_total", "reason" => "shutdown").increment(1);
                return None;
            }
            // Boxed, as the queries above: the stream keeps this future
            // inline for as long as it lives.
            Next::Beat => return Box::pin(beat(st)).await,
            // `None`: the hub restarted; the client reconnects and resumes.
            Next::Batch(batch) => st.current = Some((batch?, 0)),
        }
    }
}

/// Frames of the current batch, then of batches already waiting, up to
/// about [`CHUNK_BYTES`].
fn fill(st: &mut State) -> Bytes {
    let mut chunk = BytesMut::new();
    let mut n = 0u64;
    while let Some((batch, next)) = st.current.as_mut() {
        let subscription = match st.subscription.as_ref() {
            Some(s) => s,
            None => break,
        };
        while *next < batch.len() && chunk.len() < CHUNK_BYTES {
            let frame = &batch[*next];
            *next += 1;
            if frame.id > st.cursor && subscription.wants(frame) {
                st.cursor = frame.id;
                chunk.extend_from_slice(&frame.bytes);
                n += 1;
            }
        }
        if *next < batch.len() {
            break;
        }
        st.current = st
            .subscription
            .as_mut()
            .and_then(Subscription::try_recv)
            .map(|b| (b, 0));
        if chunk.len() >= CHUNK_BYTES {
            break;
        }
    }
    if n > 0 {
        metrics::counter!("sse_events_sent_total").increment(n);
    }
    chunk.freeze()
}

/// A heartbeat: the credentials re-checked, then `: keep-alive` (which also
/// finds a client that has gone away), or the end.
async fn beat(mut st: State) -> Option<(Item, State)> {
    const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";
    let Some(recheck) = st.recheck.as_ref() else {
        return Some((Ok(Bytes::from_static(KEEP_ALIVE)), st));
    };
    match recheck().await {
        Ok(true) => {
            st.unverified = false;
            Some((Ok(Bytes::from_static(KEEP_ALIVE)), st))
        }
        Ok(false) => {
            metrics::counter!("sse_clients_dropped_total", "reason" => "unauthorized").increment(1);
            tracing::info!("activity stream ended: its credentials no longer hold");
            st.done = true;
            Some((Ok(end_frame("unauthorized")), st))
        }
        Err(reason) if st.unverified => {
            metrics::counter!("sse_clients_dropped_total", "reason" => "unverified").increment(1);
            tracing::warn!(%reason, "activity stream ended: its credentials could not be checked twice in a row");
            st.done = true;
            let frame = resync_frame("unverified", Some(st.cursor));
            Some((Ok(frame), st))
        }
        Err(reason) => {
            tracing::warn!(%reason, "activity stream's credentials could not be checked; asking again at the next heartbeat");
            st.unverified = true;
            Some((Ok(Bytes::from_static(KEEP_ALIVE)), st))
        }
    }
}

/// The hub dropped this client for falling behind: say so and end.
fn lagged(mut st: State) -> Option<(Item, State)> {
    st.done = true;
    st.current = None;
    let frame = resync_frame("slow_client", Some(st.cursor));
    Some((Ok(frame), st))
}

/// `event: end`: the stream is over for good (`unauthorized`: the
/// credentials it was opened with no longer hold; reconnecting gets 401).
fn end_frame(reason: &str) -> Bytes {
    let data = serde_json::json!({ "reason": reason });
    Bytes::from(format!("event: end\ndata: {data}\n\n"))
}

/// `event: resync`: the client should reconnect with its `Last-Event-ID`
/// (after `slow_client`) or accept the gap (`replay_limit`).
fn resync_frame(reason: &str, last_event_id: Option<i64>) -> Bytes {
    let data = serde_json::json!({ "reason": reason, "last_event_id": last_event_id });
    Bytes::from(format!("event: resync\ndata: {data}\n\n"))
}

fn sql_filter(filter: &ActivityFilter) -> ActivityQuery {
    ActivityQuery {
        tenant_id: filter.tenant.clone(),
        operations: filter.operations.clone(),
        principal_id: filter.principal_id.clone(),
        success: filter.success,
    }
}

fn category_matches(filter: &ActivityFilter, event: &CommittedEvent) -> bool {
    filter.categories.is_empty() || {
        let e = &event.event;
        let category: Category =
            Category::of(&e.operation, e.security_violation, e.tenant_id.as_deref());
        filter.categories.contains(&category)
    }
}

/// The hub fed from the right place for `store`.
pub fn feed(store: &Store, auditor: &overseer_actors::audit::Auditor) -> Arc<dyn ActivityFeed> {
    match store.backend() {
        crate::store::Backend::Postgres => Arc::new(PgFeed {
            store: store.clone(),
        }),
        crate::store::Backend::Sqlite => {
            Arc::new(overseer_actors::activity::LocalFeed(auditor.clone()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_payloads_are_id_ranges() {
        assert_eq!(parse_range("12:40"), Some((12, 40)));
        assert_eq!(parse_range("x:1"), None);
        assert_eq!(parse_range(""), None);
    }

    #[test]
    fn end_frames_are_one_event() {
        let frame = end_frame("unauthorized");
        assert_eq!(
            std::str::from_utf8(&frame).unwrap(),
            "event: end\ndata: {\"reason\":\"unauthorized\"}\n\n"
        );
    }

    #[test]
    fn resync_frames_are_one_event() {
        let frame = resync_frame("slow_client", Some(7));
        let text = std::str::from_utf8(&frame).unwrap();
        assert!(text.starts_with("event: resync\ndata: {"));
        assert!(text.ends_with("\n\n"));
        assert!(text.contains("\"last_event_id\":7"));
    }
}
