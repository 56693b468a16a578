//! The file sinks' writer thread: committed batches are handed over in
//! commit order and written off the actor's thread.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{CommittedEvent, FileSinks};

/// Batches handed to the sink thread and not yet written, at most; past it a
/// flush waits for the disk (as every flush once did).
const SINK_BACKLOG: usize = 64;
/// How long [`Auditor::shutdown`] waits for the sink thread at least.
pub(super) const SINK_GRACE: Duration = Duration::from_secs(1);

/// A committed batch and the time to file it under.
type SinkJob = (Arc<[CommittedEvent]>, DateTime<Utc>);

/// The file sinks, written on a thread of their own (`audit-sinks`) in the
/// order batches are handed over, which is commit order. The thread ends
/// when the last handle is dropped.
pub(super) struct SinkWriter {
    jobs: tokio::sync::mpsc::Sender<SinkJob>,
    /// Batches handed over and not yet written.
    pending: Arc<std::sync::atomic::AtomicUsize>,
}

impl SinkWriter {
    pub(super) fn start(mut sinks: FileSinks) -> std::io::Result<Self> {
        use std::sync::atomic::Ordering;
        let (jobs, mut queue) = tokio::sync::mpsc::channel::<SinkJob>(SINK_BACKLOG);
        let pending = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let written = pending.clone();
        std::thread::Builder::new()
            .name("audit-sinks".into())
            .spawn(move || {
                while let Some((events, now)) = queue.blocking_recv() {
                    if let Err(e) = sinks.write(&events, now) {
                        tracing::error!(error = %e, "could not write the audit file sinks");
                    }
                    written.fetch_sub(1, Ordering::AcqRel);
                }
            })?;
        Ok(Self { jobs, pending })
    }

    pub(super) async fn write(&self, events: Arc<[CommittedEvent]>, now: DateTime<Utc>) {
        use std::sync::atomic::Ordering;
        self.pending.fetch_add(1, Ordering::AcqRel);
        if self.jobs.send((events, now)).await.is_err() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            tracing::error!("the audit sink thread has stopped; events not written to the files");
        }
    }

    pub(super) fn idle(&self) -> bool {
        self.pending.load(std::sync::atomic::Ordering::Acquire) == 0
    }
}
