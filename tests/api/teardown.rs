//! The end of a test: every application it started shuts down the way `main`
//! shuts down (the server, the audit drain, the actors, the pools) while the
//! test's runtime still runs; only then are its databases dropped.
//!
//! Why: an `#[actix_web::test]` runtime that ends drops the tasks still on it
//! outside its own context. An actor's query in flight holds a pooled sqlx
//! connection, whose `Drop` hands it back by spawning a task, and with no
//! runtime to spawn on sqlx panics ("this functionality requires a Tokio
//! context"). After a passing test that is noise; after a failing one its
//! backtrace comes last and buries the failure. Nothing of the kind can
//! happen once the applications are stopped and their pools closed.

use std::cell::RefCell;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use actix_web::rt::task::JoinHandle;
use futures_util::FutureExt;
use overseer::store::Store;
use tokio::sync::oneshot;

use crate::helpers::TestDatabase;

/// How long one application may take to stop: the server's graceful stop
/// (`SHUTDOWN_TIMEOUT`, 8 s by default), the audit drain (1 s) and closing
/// its pool fit in it with room to spare.
const STOP_WITHIN: Duration = Duration::from_secs(20);

thread_local! {
    /// The applications started by the test running on this thread (each
    /// test has a thread and a runtime of its own).
    static STARTED: RefCell<Vec<Started>> = const { RefCell::new(Vec::new()) };
}

/// One application started by the test, with what to close after it.
struct Started {
    /// Dropping it starts the application's shutdown.
    stop: oneshot::Sender<()>,
    /// The application's `run_until`, over once it has stopped.
    served: JoinHandle<std::io::Result<()>>,
    /// The test's own store on the application's database.
    store: Store,
    /// The database, dropped last.
    db: Option<TestDatabase>,
}

/// What `run_until` waits for: the end of the test.
pub fn stop_signal() -> (oneshot::Sender<()>, impl Future<Output = &'static str>) {
    let (stop, stopped) = oneshot::channel::<()>();
    (stop, async move {
        // Err: the sender was dropped, which is the point.
        let _ = stopped.await;
        "end of test"
    })
}

/// Records an application to stop at the end of the test.
pub fn started(
    stop: oneshot::Sender<()>,
    served: JoinHandle<std::io::Result<()>>,
    store: Store,
    db: Option<TestDatabase>,
) {
    STARTED.with(|s| {
        s.borrow_mut().push(Started {
            stop,
            served,
            store,
            db,
        });
    });
}

/// Runs a test's body, then [`teardown`] — also when the body panicked,
/// whose panic is raised again afterwards, so that it is the test's failure.
pub async fn run_test(body: impl Future<Output = ()>) {
    let outcome = AssertUnwindSafe(body).catch_unwind().await;
    let stopped = teardown().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    if let Err(what) = stopped {
        panic!("teardown: {what}");
    }
}

/// Stops every application this test started, closes the test's stores,
/// then drops the databases. `on_both_backends!` calls it (through
/// [`run_test`]); a test declared by hand calls `run_test` itself.
pub async fn teardown() -> Result<(), String> {
    let started = STARTED.with(|s| std::mem::take(&mut *s.borrow_mut()));
    let mut databases = Vec::new();
    // All together (replicas of one database stop side by side), and every
    // one of them before any database goes.
    let outcomes = futures_util::future::join_all(started.into_iter().map(|app| {
        let Started {
            stop,
            served,
            store,
            db,
        } = app;
        databases.extend(db);
        async move {
            drop(stop);
            // The server's own error, or a panic in it, is not ours to
            // report: the test has said what it had to. That it stops is
            // what matters here.
            let stopped = tokio::time::timeout(STOP_WITHIN, served)
                .await
                .map(drop)
                .map_err(|_| format!("an application did not stop within {STOP_WITHIN:?}"));
            let closed = tokio::time::timeout(STOP_WITHIN, store.close())
                .await
                .map_err(|_| {
                    format!("the test's store still had connections in use after {STOP_WITHIN:?}")
                });
            stopped.and(closed)
        }
    }))
    .await;
    drop(databases);
    outcomes.into_iter().collect()
}
