//! The flush pipeline against an in-memory [`AuditStore`]: batches form on
//! size and on the timer, a batch the store cannot take goes to the spool and
//! comes back from it in order, batches in flight reach the store in the order
//! they were formed, and a durable producer is answered only after commit.
//!
//! The store here is a fake of the port, not of our database: it keeps one
//! hash chain per tenant as the real store does, can be told to fail, and can
//! hold the first batch back after it took the trail's lock. The flush timer is
//! actix's `run_interval` on real time (the [`Clock`] only stamps events and
//! flushes), so the time-flush test uses a short real interval.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use tokio::sync::Notify;
use uuid::Uuid;

use super::*;
use crate::supervisor::{RestartPolicy, Supervisor};
use crate::{Clock, ManualClock};

/// What the fake store has seen and holds.
#[derive(Default)]
struct Trail {
    /// Every committed row, in commit order.
    rows: Vec<CommittedEvent>,
    /// The size of every committed batch, in commit order.
    batches: Vec<usize>,
    /// The first `log_id` of each batch, in the order batches took the lock.
    locked: Vec<Uuid>,
    /// Per chain: the last `seq` and hash.
    heads: HashMap<String, (i64, String)>,
    /// Held by the next batch after it takes the lock, until notified.
    gate: Option<Arc<Notify>>,
}

#[derive(Default)]
struct FakeStore {
    trail: Arc<Mutex<Trail>>,
    failing: Arc<AtomicBool>,
}

impl FakeStore {
    fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// The next batch to take the lock waits, holding it, for the returned
    /// notice.
    fn hold_next(&self) -> Arc<Notify> {
        let gate = Arc::new(Notify::new());
        self.trail.lock().unwrap().gate = Some(gate.clone());
        gate
    }

    fn rows(&self) -> Vec<CommittedEvent> {
        self.trail.lock().unwrap().rows.clone()
    }

    fn batches(&self) -> Vec<usize> {
        self.trail.lock().unwrap().batches.clone()
    }

    fn locked(&self) -> usize {
        self.trail.lock().unwrap().locked.len()
    }
}

/// Commits `events` at the end of their chains, or fails as told.
fn commit(
    trail: &Mutex<Trail>,
    failing: &AtomicBool,
    events: &[AuditEvent],
) -> Result<Appended, AppendError> {
    if failing.load(Ordering::SeqCst) {
        return Err(AppendError {
            transient: true,
            reason: "the database is away".into(),
        });
    }
    let mut trail = trail.lock().unwrap();
    let mut committed = Vec::new();
    for event in events {
        let (seq, prev_hash) = trail
            .heads
            .get(event.chain())
            .cloned()
            .unwrap_or((0, GENESIS_HASH.to_owned()));
        let seq = seq + 1;
        let hash = chain_hash(&prev_hash, seq, event);
        trail
            .heads
            .insert(event.chain().to_owned(), (seq, hash.clone()));
        committed.push(CommittedEvent {
            id: trail.rows.len() as i64 + 1,
            seq,
            prev_hash,
            hash,
            event: event.clone(),
        });
        trail.rows.push(committed[committed.len() - 1].clone());
    }
    trail.batches.push(events.len());
    Ok(committed.into())
}

impl AuditStore for FakeStore {
    fn append(&self, events: Arc<Vec<AuditEvent>>, _now: DateTime<Utc>) -> AppendFuture {
        let (trail, failing) = (self.trail.clone(), self.failing.clone());
        Box::pin(async move { commit(&trail, &failing, &events) })
    }

    /// Overlaps batches as the real store does: the lock in turn, then the
    /// commit only once the batch before committed.
    fn append_after(
        &self,
        events: Arc<Vec<AuditEvent>>,
        _offer: Offer,
        mut turn: Turn,
    ) -> AppendFuture {
        let (trail, failing) = (self.trail.clone(), self.failing.clone());
        Box::pin(async move {
            turn.previous_locked().await;
            let gate = {
                let mut trail = trail.lock().unwrap();
                trail.locked.push(events[0].log_id);
                trail.gate.take()
            };
            turn.locked();
            if let Some(gate) = gate {
                gate.notified().await;
            }
            if !turn.previous_committed().await {
                return Err(AppendError::behind());
            }
            commit(&trail, &failing, &events)
        })
    }
}

struct Harness {
    auditor: Auditor,
    store: Arc<FakeStore>,
    clock: ManualClock,
    dir: PathBuf,
}

impl Harness {
    async fn start(batch_size: usize, flush_interval: Duration, pipeline: usize) -> Self {
        let dir = std::env::temp_dir().join(format!("overseer-audit-{}", Uuid::new_v4()));
        let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap());
        let supervisor = Supervisor::new(Arc::new(clock.clone()));
        let store = Arc::new(FakeStore::default());
        let auditor = Auditor::start(
            &supervisor,
            RestartPolicy::default(),
            AuditConfig {
                batch_size,
                flush_interval,
                pipeline,
                queue_capacity: 1_000,
                redactor: Redactor {
                    max_value_chars: 1_000,
                },
                spool_dir: dir.join("spool"),
                sinks: SinkConfig {
                    dir: dir.join("logs"),
                    retention_days: 1,
                    audit_log: false,
                    error_log: false,
                    structured: false,
                    security: false,
                },
            },
            store.clone(),
            Arc::new(clock.clone()),
        )
        .unwrap();
        // The actor's first tick (at start) has run: what is recorded from
        // here waits for a full batch or the timer.
        tokio::time::sleep(Duration::from_millis(50)).await;
        Self {
            auditor,
            store,
            clock,
            dir,
        }
    }

    /// `n` events of one tenant, one millisecond apart.
    fn events(&self, n: usize) -> Vec<AuditEvent> {
        (0..n)
            .map(|i| {
                self.clock.advance(Duration::from_millis(1));
                AuditEvent::new(format!("op_{i}"), self.clock.now()).with_tenant("tenant_a")
            })
            .collect()
    }

    fn record(&self, events: &[AuditEvent]) {
        for event in events {
            self.auditor.record(Source::Internal, event.clone());
        }
    }

    /// The events in the spool's files, oldest file first.
    fn spooled(&self) -> Vec<AuditEvent> {
        spooled_in(&self.dir.join("spool"))
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spooled_in(dir: &Path) -> Vec<AuditEvent> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|path| {
            std::fs::read_to_string(path)
                .unwrap()
                .lines()
                .map(|line| serde_json::from_str::<AuditEvent>(line).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Waits up to five seconds for `done`; says whether it came.
async fn eventually(done: impl Fn() -> bool) -> bool {
    for _ in 0..500 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

fn log_ids<'a>(events: impl IntoIterator<Item = &'a AuditEvent>) -> Vec<Uuid> {
    events.into_iter().map(|e| e.log_id).collect()
}

fn committed_ids(store: &FakeStore) -> Vec<Uuid> {
    log_ids(store.rows().iter().map(|row| &row.event))
}

/// Rows of one chain, in commit order, each following the one before.
fn assert_one_unbroken_chain(rows: &[CommittedEvent]) {
    let mut prev = GENESIS_HASH.to_owned();
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.seq, i as i64 + 1, "seq of row {i}");
        assert_eq!(row.prev_hash, prev, "prev_hash of row {i}");
        assert_eq!(row.hash, chain_hash(&prev, row.seq, &row.event));
        prev = row.hash.clone();
    }
}

#[actix::test]
async fn a_full_batch_is_flushed_at_once_as_one_append_of_batch_size_events() {
    // The timer never fires within the test: only the size can flush.
    let app = Harness::start(4, Duration::from_secs(3_600), 1).await;

    let first = app.events(3);
    app.record(&first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        app.store.batches().is_empty(),
        "flushed before a full batch"
    );

    let fourth = app.events(1);
    app.record(&fourth);
    assert!(eventually(|| !app.store.batches().is_empty()).await);
    let more = app.events(4);
    app.record(&more);
    assert!(eventually(|| app.store.batches().len() == 2).await);

    assert_eq!(app.store.batches(), vec![4, 4]);
    let recorded: Vec<AuditEvent> = [first, fourth, more].concat();
    assert_eq!(committed_ids(&app.store), log_ids(&recorded));
    // The queue lets go of a batch once its commit is handled (just after).
    assert!(eventually(|| app.auditor.status().queue_depth == 0).await);
}

#[actix::test]
async fn fewer_than_a_batch_wait_for_the_flush_interval_then_go_as_one_append() {
    let interval = Duration::from_millis(1_000);
    let app = Harness::start(100, interval, 1).await;

    let events = app.events(3);
    let recorded_at = Instant::now();
    app.record(&events);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        app.store.batches().is_empty(),
        "flushed before the interval"
    );
    assert_eq!(app.auditor.status().queue_depth, 3);

    assert!(eventually(|| !app.store.batches().is_empty()).await);
    // The timer started with the actor, 50 ms before the events.
    assert!(recorded_at.elapsed() >= interval - Duration::from_millis(100));
    assert_eq!(app.store.batches(), vec![3]);
    assert_eq!(committed_ids(&app.store), log_ids(&events));
    let now = app.clock.now();
    assert!(eventually(|| app.auditor.status().last_flush_at == Some(now)).await);
}

#[actix::test]
async fn a_batch_the_store_cannot_take_is_spooled_and_replayed_in_order_when_it_recovers() {
    let app = Harness::start(2, Duration::from_millis(50), 1).await;
    app.store.fail(true);

    let first = app.events(2);
    app.auditor
        .record_durable(Source::Internal, first.clone())
        .await
        .expect("spooled, so durable");
    // While the spool holds events, later batches queue up behind them.
    let second = app.events(2);
    app.auditor
        .record_durable(Source::Internal, second.clone())
        .await
        .expect("spooled, so durable");

    let recorded: Vec<AuditEvent> = [first, second].concat();
    assert!(app.store.rows().is_empty());
    assert_eq!(log_ids(&app.spooled()), log_ids(&recorded));
    let status = app.auditor.status();
    assert_eq!(status.spool_events, 4);
    assert_eq!(status.last_error.as_deref(), Some("the database is away"));

    app.store.fail(false);
    assert!(eventually(|| app.store.rows().len() == 4).await);
    assert!(eventually(|| app.auditor.status().spool_events == 0).await);

    assert_eq!(committed_ids(&app.store), log_ids(&recorded));
    assert_one_unbroken_chain(&app.store.rows());
    assert!(app.spooled().is_empty());
    // The replay clears the error once the spool is empty (just after).
    assert!(eventually(|| app.auditor.status().last_error.is_none()).await);
}

#[actix::test]
async fn pipelined_batches_reach_the_store_in_the_order_they_were_formed() {
    let app = Harness::start(3, Duration::from_secs(3_600), 2).await;
    let slow_first = app.store.hold_next();

    let a = app.events(3);
    app.record(&a);
    let b = app.events(3);
    app.record(&b);
    // Both batches are in flight: the second one holds its place behind the
    // first, which is slow to commit.
    assert!(eventually(|| app.store.locked() == 2).await);
    assert!(app.store.rows().is_empty());

    // A third batch waits: two are in flight already.
    let c = app.events(3);
    app.record(&c);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        app.store.locked(),
        2,
        "more batches in flight than `pipeline`"
    );

    slow_first.notify_one();
    assert!(eventually(|| app.store.rows().len() == 9).await);

    assert_eq!(app.store.batches(), vec![3, 3, 3]);
    let recorded: Vec<AuditEvent> = [a, b, c].concat();
    assert_eq!(committed_ids(&app.store), log_ids(&recorded));
    assert_one_unbroken_chain(&app.store.rows());
}

#[actix::test]
async fn an_ingested_event_is_answered_only_once_it_is_committed() {
    let app = Harness::start(1, Duration::from_secs(3_600), 1).await;
    let slow = app.store.hold_next();
    let event = app.events(1).remove(0);

    let mut answer = Box::pin(app.auditor.record_ingested(vec![Ingested {
        event: event.clone(),
        created_at_given: true,
    }]));
    // Polling it queues the event; its batch reaches the store and is held.
    let early = tokio::time::timeout(Duration::from_millis(200), &mut answer).await;
    assert!(early.is_err(), "answered before the commit: {early:?}");
    assert!(eventually(|| app.store.locked() == 1).await);
    let early = tokio::time::timeout(Duration::from_millis(100), &mut answer).await;
    assert!(early.is_err(), "answered before the commit: {early:?}");
    assert!(app.store.rows().is_empty());

    slow.notify_one();
    assert_eq!(answer.await, Ok(()));
    let rows = app.store.rows();
    assert_eq!(
        log_ids(rows.iter().map(|row| &row.event)),
        vec![event.log_id]
    );
    assert!(rows[0].event.ingest_digest.is_some());
}
