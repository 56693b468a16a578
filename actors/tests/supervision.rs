//! Supervision end to end, on a real actix runtime, with a worker actor built
//! to fail in each of the places an actor can fail.

#![allow(clippy::unwrap_used, reason = "test code")]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use overseer_actors::SystemClock;
use overseer_actors::supervisor::{
    ActorHandle, Child, ChildState, ExitReason, FaultKind, RestartPolicy, RestartType, Supervisor,
};

/// Metrics land in one debugging recorder; every test names its actors
/// uniquely, so the `actor` label keeps their counts apart.
fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().unwrap();
        snapshotter
    })
}

/// The total of counter `name` over the label sets that carry `labels`.
/// `Snapshotter::snapshot` drains counters, so every read folds what it drained
/// into a running total that all tests share.
fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
    /// (metric name, labels, running total)
    type Totals = Vec<(String, Vec<(String, String)>, u64)>;
    static TOTALS: Mutex<Totals> = Mutex::new(Vec::new());
    let mut totals = TOTALS.lock().unwrap();
    for (key, _, _, value) in snapshotter().snapshot().into_vec() {
        let DebugValue::Counter(n) = value else {
            continue;
        };
        let key_name = key.key().name().to_owned();
        let key_labels: Vec<(String, String)> = key
            .key()
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        match totals
            .iter_mut()
            .find(|(k, l, _)| *k == key_name && *l == key_labels)
        {
            Some((_, _, total)) => *total += n,
            None => totals.push((key_name, key_labels, n)),
        }
    }
    totals
        .iter()
        .filter(|(k, l, _)| {
            k == name
                && labels
                    .iter()
                    .all(|(lk, lv)| l.iter().any(|(k, v)| k == lk && v == lv))
        })
        .map(|(_, _, n)| n)
        .sum()
}

fn fast_policy() -> RestartPolicy {
    RestartPolicy {
        restart: RestartType::Permanent,
        max_restarts: 5,
        within: Duration::from_secs(30),
        backoff_initial: Duration::from_millis(40),
        backoff_max: Duration::from_millis(400),
    }
}

struct Worker {
    child: Child,
    tick: Option<Duration>,
    ticks: Arc<AtomicU32>,
}

impl Actor for Worker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(every) = self.tick {
            ctx.run_interval(every, |act, ctx| {
                if act.child.trip(ctx) {
                    return;
                }
                act.ticks.fetch_add(1, Ordering::SeqCst);
            });
        }
    }
}

/// Answers with how many restarts came before this instance.
#[derive(Message)]
#[rtype(result = "Result<u64, String>")]
struct Ping;

impl Handler<Ping> for Worker {
    type Result = Result<u64, String>;

    fn handle(&mut self, _: Ping, ctx: &mut Context<Self>) -> Self::Result {
        if self.child.trip(ctx) {
            return Err("injected".into());
        }
        Ok(self.child.restarts())
    }
}

/// Async work the actor waits on; panics inside it when told to.
#[derive(Message)]
#[rtype(result = "u32")]
struct Work {
    panic: bool,
}

impl Handler<Work> for Worker {
    type Result = ResponseActFuture<Self, u32>;

    fn handle(&mut self, work: Work, _: &mut Context<Self>) -> Self::Result {
        Box::pin(
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                assert!(!work.panic, "async work blew up");
                7
            }
            .into_actor(self),
        )
    }
}

/// Work that never finishes by itself; `Held` records how it was dropped.
#[derive(Message)]
#[rtype(result = "()")]
struct Hold(Held);

/// Set when dropped: whether a Tokio runtime was there to drop it on (what a
/// pooled database connection needs to be handed back).
struct Held(Arc<Mutex<Option<bool>>>);

impl Drop for Held {
    fn drop(&mut self) {
        *self.0.lock().unwrap() = Some(tokio::runtime::Handle::try_current().is_ok());
    }
}

impl Handler<Hold> for Worker {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, Hold(held): Hold, _: &mut Context<Self>) -> Self::Result {
        Box::pin(
            async move {
                tokio::time::sleep(Duration::from_secs(3_600)).await;
                drop(held);
            }
            .into_actor(self),
        )
    }
}

/// Stops the instance cleanly.
#[derive(Message)]
#[rtype(result = "()")]
struct Stop;

impl Handler<Stop> for Worker {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

fn spawn_worker(
    supervisor: &Supervisor,
    name: &'static str,
    policy: RestartPolicy,
    tick: Option<Duration>,
) -> (ActorHandle<Worker>, Arc<AtomicU32>) {
    let ticks = Arc::new(AtomicU32::new(0));
    let shared = ticks.clone();
    let handle = supervisor.spawn(name, policy, move |child| Worker {
        child: child.clone(),
        tick,
        ticks: shared.clone(),
    });
    (handle, ticks)
}

fn supervisor() -> Supervisor {
    snapshotter();
    logs();
    Supervisor::new(Arc::new(SystemClock))
}

/// Every test's log events, as JSON lines, in one shared buffer.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(move || Capture(sink.clone()))
            .init();
        buffer
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The log events about `actor` whose message is `message`.
fn log_lines(actor: &str, message: &str) -> Vec<serde_json::Value> {
    let text = String::from_utf8(logs().lock().unwrap().clone()).unwrap();
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["actor"] == actor && event["message"] == message)
        .collect()
}

async fn wait_until(within: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "condition not met within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[actix::test]
async fn a_panic_in_a_handler_restarts_the_actor_and_the_next_message_is_handled() {
    let supervisor = supervisor();
    let (worker, _) = spawn_worker(&supervisor, "handler-panic", fast_policy(), None);
    assert_eq!(worker.send(Ping).await.unwrap(), Ok(0));

    supervisor
        .faults()
        .arm("handler-panic", FaultKind::Panic, 1);
    let asked = Instant::now();
    let failed = worker.send(Ping).await;

    assert_eq!(
        failed,
        Err(MailboxError::Closed),
        "the caller is told at once"
    );
    assert!(asked.elapsed() < Duration::from_secs(1));
    // The next message waits for the new instance (backoff 20–40 ms) and is handled.
    let answered = worker.send(Ping).await.unwrap();
    assert_eq!(answered, Ok(1), "handled by the restarted instance");
    // Generous: capturing the panic's backtrace takes a while on a loaded
    // 2-core machine; a missed restart would hang, not take 2 s.
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "back within its backoff"
    );

    let status = supervisor.board().status("handler-panic").unwrap();
    assert_eq!(status.status, ChildState::Running);
    assert_eq!(status.restarts, 1);
    assert!(status.last_error.unwrap().contains("injected panic fault"));
    assert!(status.last_restart_at.is_some());
    let history = supervisor.board().history("handler-panic");
    assert_eq!(history.len(), 1);
    assert!(matches!(&history[0].reason, ExitReason::Panic(m) if m.contains("handler-panic")));
    assert_eq!(
        counter(
            "actor_restarts_total",
            &[("actor", "handler-panic"), ("reason", "panic")]
        ),
        1
    );

    let restarts = log_lines("handler-panic", "actor restarting");
    assert_eq!(restarts.len(), 1, "one log line per restart: {restarts:?}");
    let line = &restarts[0];
    assert_eq!(line["level"], "WARN");
    assert!(
        line["reason"]
            .as_str()
            .unwrap()
            .contains("injected panic fault"),
        "{line}"
    );
    assert_eq!(line["kind"], "panic");
    assert_eq!(line["restart_count"], 1);
    assert!(
        line["backoff_ms"]
            .as_u64()
            .is_some_and(|ms| (20..=40).contains(&ms)),
        "{line}"
    );
}

#[actix::test]
async fn a_panic_in_a_timer_body_restarts_the_actor_and_the_timer_fires_again() {
    let supervisor = supervisor();
    let (_worker, ticks) = spawn_worker(
        &supervisor,
        "timer-panic",
        fast_policy(),
        Some(Duration::from_millis(10)),
    );
    wait_until(Duration::from_secs(2), || ticks.load(Ordering::SeqCst) >= 2).await;

    supervisor.faults().arm("timer-panic", FaultKind::Panic, 1);
    wait_until(Duration::from_secs(2), || {
        supervisor.board().history("timer-panic").len() == 1
    })
    .await;
    let before = ticks.load(Ordering::SeqCst);

    wait_until(Duration::from_secs(2), || {
        ticks.load(Ordering::SeqCst) >= before + 3
    })
    .await;
    assert_eq!(
        supervisor.board().status("timer-panic").unwrap().status,
        ChildState::Running
    );
    assert_eq!(
        counter(
            "actor_restarts_total",
            &[("actor", "timer-panic"), ("reason", "panic")]
        ),
        1
    );
}

#[actix::test]
async fn a_panic_in_awaited_async_work_restarts_the_actor() {
    let supervisor = supervisor();
    let (worker, _) = spawn_worker(&supervisor, "async-panic", fast_policy(), None);

    let asked = Instant::now();
    assert_eq!(
        worker.send(Work { panic: true }).await,
        Err(MailboxError::Closed)
    );
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "the caller gets an error within 1 s"
    );

    assert_eq!(worker.send(Work { panic: false }).await, Ok(7));
    assert_eq!(worker.send(Ping).await.unwrap(), Ok(1));
    let history = supervisor.board().history("async-panic");
    assert!(matches!(&history[0].reason, ExitReason::Panic(m) if m.contains("async work blew up")));
}

#[actix::test]
async fn an_error_exit_restarts_with_reason_error() {
    let supervisor = supervisor();
    let (worker, _) = spawn_worker(&supervisor, "error-exit", fast_policy(), None);

    supervisor.faults().arm("error-exit", FaultKind::Error, 1);
    let failed = worker.send(Ping).await;
    assert!(
        matches!(failed, Ok(Err(_)) | Err(MailboxError::Closed)),
        "{failed:?}"
    );

    assert_eq!(worker.send(Ping).await.unwrap(), Ok(1));
    let history = supervisor.board().history("error-exit");
    assert_eq!(
        history[0].reason,
        ExitReason::Error("injected error fault".into())
    );
    assert_eq!(
        counter(
            "actor_restarts_total",
            &[("actor", "error-exit"), ("reason", "error")]
        ),
        1
    );
}

#[actix::test]
async fn a_restart_storm_backs_off_escalates_to_down_and_recovers_by_itself() {
    let supervisor = supervisor();
    let (_stormy, ticks) = spawn_worker(
        &supervisor,
        "stormy",
        fast_policy(),
        Some(Duration::from_millis(2)),
    );
    let (bystander, _) = spawn_worker(&supervisor, "bystander", fast_policy(), None);

    supervisor.faults().arm("stormy", FaultKind::Panic, 20);
    let mut seen_down = false;
    let mut bystander_answers = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while supervisor.faults().remaining("stormy") > 0
        || supervisor.board().status("stormy").unwrap().status != ChildState::Running
    {
        assert!(Instant::now() < deadline, "the storm did not end");
        seen_down |= supervisor.board().status("stormy").unwrap().status == ChildState::Down;
        seen_down |= supervisor.board().any_down();
        // Other actors keep working throughout.
        assert_eq!(bystander.send(Ping).await.unwrap(), Ok(0));
        bystander_answers += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let history = supervisor.board().history("stormy");
    assert_eq!(history.len(), 20, "one restart per injected fault");
    assert!(
        seen_down,
        "the actor was marked down after the intensity was exceeded"
    );
    assert!(bystander_answers > 10);
    // Gaps between failures grow while within the intensity (each next backoff
    // is at least the previous one's lower bound), then sit at the cap.
    let gaps: Vec<Duration> = history
        .windows(2)
        .map(|w| w[1].failed_at - w[0].failed_at)
        .collect();
    for i in 1..4 {
        assert!(
            gaps[i] >= gaps[i - 1] / 2 + gaps[i - 1] / 4,
            "gaps {gaps:?}"
        );
        assert!(
            history[i].backoff > history[i - 1].backoff / 2,
            "{:?}",
            history[i].backoff
        );
    }
    // Nominal backoffs 40, 80, 160, 320, 400 ms with equal jitter: the fifth
    // gap is at least 200 ms, the first at most 40 ms plus scheduling.
    assert!(gaps[4] > gaps[0] * 2, "backoff grew: {gaps:?}");
    assert!(gaps[4] >= Duration::from_millis(200), "{gaps:?}");
    assert!(
        !history[4].escalated && history[5].escalated,
        "the sixth restart escalates"
    );
    assert!(
        history[5..]
            .iter()
            .all(|e| e.escalated && e.backoff == Duration::from_millis(400))
    );

    // Recovered by itself: running, and its timer works again.
    let before = ticks.load(Ordering::SeqCst);
    wait_until(Duration::from_secs(2), || {
        ticks.load(Ordering::SeqCst) > before + 3
    })
    .await;
    assert_eq!(counter("actor_restarts_total", &[("actor", "stormy")]), 20);
    assert_eq!(log_lines("stormy", "actor restarting").len(), 20);
    let critical = log_lines(
        "stormy",
        "actor exceeded its restart intensity; marked down, retrying at the backoff cap",
    );
    assert_eq!(critical.len(), 1, "escalation is logged once: {critical:?}");
    assert_eq!(critical[0]["level"], "ERROR");
    assert_eq!(critical[0]["critical"], true);
    assert_eq!(
        counter("actor_restarts_total", &[("actor", "bystander")]),
        0
    );
}

#[actix::test]
async fn a_transient_child_that_stops_cleanly_stays_stopped_and_a_permanent_one_restarts() {
    let supervisor = supervisor();
    let transient = RestartPolicy {
        restart: RestartType::Transient,
        ..fast_policy()
    };
    let (once, _) = spawn_worker(&supervisor, "transient", transient, None);
    let (always, _) = spawn_worker(&supervisor, "permanent", fast_policy(), None);

    once.send(Stop).await.unwrap();
    always.send(Stop).await.unwrap();

    wait_until(Duration::from_secs(2), || {
        supervisor.board().status("transient").unwrap().status == ChildState::Stopped
    })
    .await;
    assert_eq!(always.send(Ping).await.unwrap(), Ok(1));
    assert_eq!(
        counter(
            "actor_restarts_total",
            &[("actor", "permanent"), ("reason", "stopped")]
        ),
        1
    );
    assert_eq!(
        counter("actor_restarts_total", &[("actor", "transient")]),
        0
    );
}

#[actix::test]
async fn messages_sent_during_the_backoff_are_handled_after_the_restart() {
    let supervisor = supervisor();
    let policy = RestartPolicy {
        backoff_initial: Duration::from_millis(300),
        ..fast_policy()
    };
    let (worker, _) = spawn_worker(&supervisor, "queued", policy, None);
    supervisor.faults().arm("queued", FaultKind::Panic, 1);
    assert_eq!(worker.send(Ping).await, Err(MailboxError::Closed));

    // Sent while the supervisor waits out the backoff.
    assert_eq!(
        supervisor.board().status("queued").unwrap().status,
        ChildState::Restarting
    );
    let answers = futures_join(worker.clone(), 5).await;
    assert!(answers.iter().all(|a| *a == Ok(Ok(1))), "{answers:?}");
}

async fn futures_join(
    worker: ActorHandle<Worker>,
    n: usize,
) -> Vec<Result<Result<u64, String>, MailboxError>> {
    let mut pending = Vec::new();
    for _ in 0..n {
        let worker = worker.clone();
        pending.push(actix::spawn(async move { worker.send(Ping).await }));
    }
    let mut answers = Vec::new();
    for p in pending {
        answers.push(p.await.unwrap());
    }
    answers
}

#[actix::test]
async fn shutdown_ends_every_child_and_drops_its_work_while_the_runtime_runs() {
    let supervisor = supervisor();
    let (busy, ticks) = spawn_worker(
        &supervisor,
        "shutdown-busy",
        fast_policy(),
        Some(Duration::from_millis(5)),
    );
    let slow_restart = RestartPolicy {
        backoff_initial: Duration::from_secs(3_600),
        backoff_max: Duration::from_secs(3_600),
        ..fast_policy()
    };
    let (waiting, _) = spawn_worker(&supervisor, "shutdown-backoff", slow_restart, None);
    // One child mid-work, one waiting out an hour's backoff.
    let dropped = Arc::new(Mutex::new(None));
    busy.do_send(Hold(Held(dropped.clone())));
    supervisor
        .faults()
        .arm("shutdown-backoff", FaultKind::Panic, 1);
    assert_eq!(waiting.send(Ping).await, Err(MailboxError::Closed));
    wait_until(Duration::from_secs(2), || ticks.load(Ordering::SeqCst) > 0).await;

    let asked = Instant::now();
    supervisor.shutdown().await;

    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "neither the work nor the backoff is waited for"
    );
    assert_eq!(
        *dropped.lock().unwrap(),
        Some(true),
        "the work in flight is dropped by the time shutdown returns, on the runtime"
    );
    for name in ["shutdown-busy", "shutdown-backoff"] {
        assert_eq!(
            supervisor.board().status(name).unwrap().status,
            ChildState::Stopped,
            "{name}"
        );
    }
    let after = ticks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(ticks.load(Ordering::SeqCst), after, "no instance runs on");
    assert_eq!(busy.send(Ping).await, Err(MailboxError::Closed));
    assert_eq!(waiting.send(Ping).await, Err(MailboxError::Closed));
    assert_eq!(
        counter("actor_restarts_total", &[("actor", "shutdown-busy")]),
        0,
        "stopping is not a failure"
    );
}
