//! Spool replay: the batches the database could not take, stored again
//! oldest first once it can, event by event when a batch is refused; and the
//! report of the `log_id` conflicts an append met.

use std::sync::Arc;

use super::handle::Shared;
use super::pipeline::after_commit;
use super::{Appended, AuditEvent, blocking, idempotency, lock};

/// Spool files replayed per turn, so a long spool drains in steps.
const REPLAY_FILES_PER_TURN: usize = 16;

/// How a turn of spool replay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Replay {
    Drained,
    /// Files replayed, more left: go on at once.
    MoreToDo,
    /// The database (or the disk) failed: back off.
    Failed,
}

/// Replays up to [`REPLAY_FILES_PER_TURN`] spool files, oldest first.
pub(super) async fn replay(shared: Arc<Shared>) -> Replay {
    for _ in 0..REPLAY_FILES_PER_TURN {
        let spool = shared.spool.clone();
        let oldest = match blocking(move || lock(&spool).oldest()).await {
            Ok(Some(oldest)) => oldest,
            Ok(None) => return Replay::Drained,
            Err(e) => {
                tracing::error!(critical = true, error = %e, "cannot read the audit spool");
                return Replay::Failed;
            }
        };
        let (path, events) = oldest;
        let n = events.len();
        let events = Arc::new(events);
        let appended = match shared
            .store
            .append(events.clone(), shared.clock.now())
            .await
        {
            Ok(appended) => appended,
            Err(e) if e.transient => {
                tracing::debug!(reason = %e, "audit spool replay: database still unavailable");
                return Replay::Failed;
            }
            Err(e) => {
                tracing::error!(reason = %e, events = n, "audit spool batch refused; retrying event by event");
                one_by_one(&shared, &events).await
            }
        };
        report_conflicts(&appended.conflicts);
        after_commit(&shared, appended.committed).await;
        let spool = shared.spool.clone();
        let removed = blocking(move || {
            let mut spool = lock(&spool);
            spool.remove(&path, n).map(|()| spool.events())
        })
        .await;
        match removed {
            Ok(left) => {
                metrics::gauge!("audit_spool_events").set(left as f64);
                let mut queue = lock(&shared.queue);
                queue.status.last_flush_at = Some(shared.clock.now());
                if left == 0 {
                    queue.status.last_error = None;
                    tracing::info!("audit spool replayed and empty");
                }
            }
            Err(e) => {
                tracing::error!(critical = true, error = %e, "cannot remove a replayed spool file");
                return Replay::Failed;
            }
        }
    }
    if lock(&shared.spool).is_empty() {
        Replay::Drained
    } else {
        Replay::MoreToDo
    }
}

/// Stores the events of a refused batch one at a time; the ones the database
/// still refuses go to `rejected/` in the spool, logged as critical.
async fn one_by_one(shared: &Arc<Shared>, events: &[AuditEvent]) -> Appended {
    let mut appended = Appended::default();
    let mut rejected = Vec::new();
    for event in events {
        let one = Arc::new(vec![event.clone()]);
        match shared.store.append(one, shared.clock.now()).await {
            Ok(mut one) => {
                appended.committed.append(&mut one.committed);
                appended.conflicts.append(&mut one.conflicts);
            }
            Err(_) => rejected.push(event.clone()),
        }
    }
    if !rejected.is_empty() {
        let spool = shared.spool.clone();
        let n = rejected.len();
        match blocking(move || lock(&spool).reject(&rejected)).await {
            Ok(path) => tracing::error!(
                critical = true,
                events = n,
                file = %path.display(),
                "audit events refused by the database; set aside"
            ),
            Err(e) => {
                tracing::error!(critical = true, events = n, error = %e, "audit events refused by the database and could not be set aside")
            }
        }
    }
    appended
}

/// Logs and counts the `log_id` conflicts an append met. The `log_id` and
/// tenant only: the refused content stays out of the log as out of the trail.
pub(super) fn report_conflicts(conflicts: &[idempotency::Conflict]) {
    for conflict in conflicts {
        let tenant_id = conflict.tenant_id.as_deref().unwrap_or("");
        if conflict.refused {
            metrics::counter!("audit_log_id_conflicts_total", "answer" => "refused").increment(1);
            tracing::warn!(
                log_id = %conflict.log_id,
                tenant_id,
                "ingest refused: a log_id already used by a different event"
            );
        } else {
            metrics::counter!("audit_log_id_conflicts_total", "answer" => "recorded").increment(1);
            tracing::error!(
                security_violation = true,
                log_id = %conflict.log_id,
                tenant_id,
                "an acknowledged event reused a log_id held by a different event: \
                 not stored, recorded as log_id_conflict"
            );
        }
    }
}
