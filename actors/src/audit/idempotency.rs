//! Telling a client's retry from a reuse of its `log_id`.
//!
//! A client may set an event's `log_id` (`POST /api/v1/audit/events`), and
//! retry with the same one: the retry must store nothing twice. The same
//! `log_id` may also come back with something else behind it: another
//! tenant's event, or another event of the same tenant. Skipping that one
//! as a "duplicate" would let whoever knows a `log_id` make an event vanish
//! while its sender is told it was stored. So an event is the same as the
//! one stored under its `log_id` only if it has the same tenant and the same
//! [`content_digest`](super::event::content_digest) (computed once, when
//! the client's event is received, and stored beside the row).
//!
//! What happens to a different event depends on whether its sender is still
//! waiting for the answer:
//!
//! - **Waiting** (the ingest API answers once its events are committed):
//!   the whole submission is refused, none of its events is stored, and the
//!   sender is told which event's `log_id` conflicts (a 409).
//! - **Answered already** (its events were acknowledged from the spool while
//!   the database was away, and are replayed now; or nobody waits, as for
//!   the service's own events): the event is not stored, and a
//!   [`CONFLICT_OPERATION`] row takes its place in its tenant's chain, a
//!   security violation whose details hold the `log_id` and the digest of
//!   the refused content, never the content. The other events of its
//!   submission are stored: they were acknowledged, and are not in doubt.
//!
//! [`plan`] decides, given what the store found under the `log_id`s it
//! looked up. It runs inside the store's transaction, so the decision and
//! the insert see the same rows; two submissions racing for one `log_id`
//! are settled by the unique index on `log_id` (see `AuditStore::append_after`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::event::content_digest;
use super::{AuditEvent, CommittedEvent};

/// The operation of the row that records a refused reuse of a `log_id`.
pub const CONFLICT_OPERATION: &str = "log_id_conflict";

/// One submission's share of a batch offered to the store, in batch order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// Its events, consecutive in the batch.
    pub len: usize,
    /// Its sender waits for the outcome: a conflict refuses the whole
    /// submission (and is answered) instead of being recorded.
    pub waiting: bool,
}

/// What the store needs, besides the events, to append a batch.
#[derive(Debug, Clone, Default)]
pub struct Offer {
    /// The `log_id`s that may be stored already and so must be looked up
    /// (see [`super::Source`]); the others were minted here.
    pub maybe_stored: Vec<Uuid>,
    /// The batch's submissions, in order. Events past the last share count
    /// as submissions nobody waits for.
    pub shares: Vec<Share>,
    /// When a conflict is recorded, if one is.
    pub now: DateTime<Utc>,
}

impl Offer {
    /// `events` with every `log_id` looked up and nobody waiting: the spool's
    /// replay, and appends of the service's own events.
    pub fn answered(events: &[AuditEvent], now: DateTime<Utc>) -> Self {
        Self {
            maybe_stored: events.iter().map(|e| e.log_id).collect(),
            shares: Vec::new(),
            now,
        }
    }
}

/// What a stored row says about its `log_id`, as the store reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub log_id: Uuid,
    pub tenant_id: Option<String>,
    /// `None` for an event the service made, or stored before digests were.
    pub digest: Option<String>,
}

/// An event whose `log_id` was already taken by a different event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// Its submission ([`Offer::shares`]'s index).
    pub share: usize,
    /// Its place in that submission.
    pub index: usize,
    pub log_id: Uuid,
    pub tenant_id: Option<String>,
    /// `true`: the submission was refused, to be answered so. `false`: a
    /// [`CONFLICT_OPERATION`] row records it.
    pub refused: bool,
}

/// What an append stored, and the conflicts it met.
#[derive(Debug, Clone, Default)]
pub struct Appended {
    /// In `id` order.
    pub committed: Vec<CommittedEvent>,
    pub conflicts: Vec<Conflict>,
}

impl From<Vec<CommittedEvent>> for Appended {
    fn from(committed: Vec<CommittedEvent>) -> Self {
        Self {
            committed,
            conflicts: Vec::new(),
        }
    }
}

/// What to insert of a batch.
#[derive(Debug, Default)]
pub struct Plan {
    /// Per event of the batch: insert it.
    pub keep: Vec<bool>,
    /// Rows recording a conflict, each after the event of the batch (its
    /// index) it replaces.
    pub records: Vec<(usize, AuditEvent)>,
    pub conflicts: Vec<Conflict>,
}

/// The tenant and digest an event claims its `log_id` with.
type Claimed<'a> = (Option<&'a str>, Option<&'a str>);

fn claimed(event: &AuditEvent) -> Claimed<'_> {
    (event.tenant_id.as_deref(), event.ingest_digest.as_deref())
}

/// Decides what to insert of `events`, given the rows `stored` found under
/// the looked-up `log_id`s. Submissions are taken in order, so the first of
/// two events under one `log_id` is the one that holds it; an event the
/// same as the one holding its `log_id` (a retry, or a repeat within the
/// batch) is skipped.
pub fn plan(events: &[AuditEvent], offer: &Offer, stored: &[Claim]) -> Plan {
    let mut taken: HashMap<Uuid, Claimed<'_>> = HashMap::with_capacity(events.len());
    for claim in stored {
        taken.insert(
            claim.log_id,
            (claim.tenant_id.as_deref(), claim.digest.as_deref()),
        );
    }
    let mut plan = Plan {
        keep: vec![false; events.len()],
        ..Plan::default()
    };
    let mut start = 0;
    let mut shares = offer.shares.iter().copied();
    let mut share = 0;
    while start < events.len() {
        let Share { len, waiting } = shares.next().unwrap_or(Share {
            len: events.len() - start,
            waiting: false,
        });
        let end = (start + len).min(events.len());
        if waiting {
            plan_waiting(events, start..end, share, &mut taken, &mut plan);
        } else {
            plan_answered(events, start..end, share, offer.now, &mut taken, &mut plan);
        }
        start = end;
        share += 1;
    }
    plan
}

/// A submission whose sender waits: all of it, or none of it and a refusal.
fn plan_waiting<'a>(
    events: &'a [AuditEvent],
    range: std::ops::Range<usize>,
    share: usize,
    taken: &mut HashMap<Uuid, Claimed<'a>>,
    plan: &mut Plan,
) {
    let mut added = Vec::new();
    for at in range.clone() {
        let event = &events[at];
        match taken.get(&event.log_id) {
            Some(holder) if *holder == claimed(event) => {}
            Some(_) => {
                for log_id in added {
                    taken.remove(&log_id);
                }
                for keep in &mut plan.keep[range.clone()] {
                    *keep = false;
                }
                plan.conflicts.push(Conflict {
                    share,
                    index: at - range.start,
                    log_id: event.log_id,
                    tenant_id: event.tenant_id.clone(),
                    refused: true,
                });
                return;
            }
            None => {
                taken.insert(event.log_id, claimed(event));
                added.push(event.log_id);
                plan.keep[at] = true;
            }
        }
    }
}

/// A submission answered already: each event on its own, a conflict
/// recorded in its place.
fn plan_answered<'a>(
    events: &'a [AuditEvent],
    range: std::ops::Range<usize>,
    share: usize,
    now: DateTime<Utc>,
    taken: &mut HashMap<Uuid, Claimed<'a>>,
    plan: &mut Plan,
) {
    let start = range.start;
    for at in range {
        let event = &events[at];
        match taken.get(&event.log_id) {
            Some(holder) if *holder == claimed(event) => {}
            Some(_) => {
                plan.records.push((at, conflict_record(event, now)));
                plan.conflicts.push(Conflict {
                    share,
                    index: at - start,
                    log_id: event.log_id,
                    tenant_id: event.tenant_id.clone(),
                    refused: false,
                });
            }
            None => {
                taken.insert(event.log_id, claimed(event));
                plan.keep[at] = true;
            }
        }
    }
}

/// The row recording that `refused` was not stored: in its tenant's chain
/// (the system chain for a system event), a failed security violation with
/// the `log_id` and the digest of the refused content in its details.
pub fn conflict_record(refused: &AuditEvent, now: DateTime<Utc>) -> AuditEvent {
    let digest = refused
        .ingest_digest
        .clone()
        .unwrap_or_else(|| content_digest(refused, true));
    let mut record = AuditEvent::new(CONFLICT_OPERATION, now)
        .with_details(serde_json::json!({
            "log_id": refused.log_id,
            "refused_digest": digest,
            "digest_algorithm": "sha256",
        }))
        .failed(
            "an acknowledged event was not stored: its log_id is already used by a different event",
        );
    record.tenant_id = refused.tenant_id.clone();
    record.security_violation = true;
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(tenant: &str, operation: &str, log_id: Uuid) -> AuditEvent {
        let mut event = AuditEvent::new(operation, Utc::now()).with_tenant(tenant);
        event.log_id = log_id;
        event.ingest_digest = Some(content_digest(&event, false));
        event
    }

    fn holding(event: &AuditEvent) -> Claim {
        Claim {
            log_id: event.log_id,
            tenant_id: event.tenant_id.clone(),
            digest: event.ingest_digest.clone(),
        }
    }

    fn offer(shares: &[(usize, bool)]) -> Offer {
        Offer {
            maybe_stored: Vec::new(),
            shares: shares
                .iter()
                .map(|&(len, waiting)| Share { len, waiting })
                .collect(),
            now: Utc::now(),
        }
    }

    #[test]
    fn a_retry_is_skipped_and_a_reuse_refuses_its_whole_submission() {
        let (u, v) = (Uuid::new_v4(), Uuid::new_v4());
        let stored = [holding(&sent("a", "a_op", u))];
        let batch = vec![
            // A retry, and a fresh event: one submission.
            sent("a", "a_op", u),
            sent("a", "fresh", v),
            // Another tenant under `u`, with a fresh event before it.
            sent("b", "b_fresh", Uuid::new_v4()),
            sent("b", "b_op", u),
            // The same tenant, other content.
            sent("a", "a_other", u),
        ];
        let plan = plan(&batch, &offer(&[(2, true), (2, true), (1, true)]), &stored);
        assert_eq!(plan.keep, [false, true, false, false, false]);
        assert!(plan.records.is_empty());
        let refused: Vec<_> = plan
            .conflicts
            .iter()
            .map(|c| (c.share, c.index, c.refused))
            .collect();
        assert_eq!(refused, [(1, 1, true), (2, 0, true)]);
    }

    #[test]
    fn within_a_batch_the_first_holder_wins_and_a_refused_one_holds_nothing() {
        let u = Uuid::new_v4();
        let batch = vec![
            // Refused (its second event conflicts with itself): it must not
            // hold `u` for the next submission.
            sent("a", "first", u),
            sent("a", "second", u),
            sent("a", "third", u),
            sent("a", "third", u),
        ];
        let plan = plan(&batch, &offer(&[(2, true), (1, true), (1, true)]), &[]);
        assert_eq!(plan.keep, [false, false, true, false]);
        assert_eq!(plan.conflicts.len(), 1);
        assert_eq!((plan.conflicts[0].share, plan.conflicts[0].index), (0, 1));
    }

    #[test]
    fn a_reuse_nobody_waits_for_is_recorded_with_a_digest_and_no_content() {
        let u = Uuid::new_v4();
        let stored = [holding(&sent("a", "a_op", u))];
        let mut refused = sent("b", "b_op", u);
        refused.details = serde_json::json!({"secret_plan": "hide b_op"});
        refused.ingest_digest = Some(content_digest(&refused, false));
        let fresh = sent("b", "b_fresh", Uuid::new_v4());
        let batch = vec![refused.clone(), fresh];
        let now = Utc::now();
        let plan = plan(&batch, &Offer::answered(&batch, now), &stored);
        assert_eq!(plan.keep, [false, true], "the rest of it is stored");
        assert_eq!(plan.records.len(), 1);
        let (at, record) = &plan.records[0];
        assert_eq!(*at, 0);
        assert_eq!(record.operation, CONFLICT_OPERATION);
        assert_eq!(record.tenant_id.as_deref(), Some("b"));
        assert!(record.security_violation && !record.success);
        assert_eq!(record.details["log_id"], serde_json::json!(u));
        assert_eq!(
            record.details["refused_digest"],
            serde_json::json!(refused.ingest_digest)
        );
        let text = serde_json::to_string(record).unwrap();
        assert!(!text.contains("b_op") && !text.contains("hide"), "{text}");
        assert!(!plan.conflicts[0].refused);
    }

    #[test]
    fn the_services_own_events_repeated_are_skipped() {
        let event = AuditEvent::new("internal", Utc::now()).with_tenant("a");
        let stored = [Claim {
            log_id: event.log_id,
            tenant_id: Some("a".into()),
            digest: None,
        }];
        let batch = vec![event.clone(), event];
        let plan = plan(&batch, &Offer::answered(&batch, Utc::now()), &stored);
        assert_eq!(plan.keep, [false, false]);
        assert!(plan.conflicts.is_empty());
    }
}
