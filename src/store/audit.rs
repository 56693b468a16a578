//! The audit trail in the database: appending a batch to the hash chains, the
//! queries, and the walk that verifies a chain.
//!
//! # How `seq` stays gapless with several writers
//!
//! Every append (a batch from the AuditActor, or one row committed with a
//! state change) runs in a transaction that first takes one lock for the
//! whole trail: `pg_advisory_xact_lock` on PostgreSQL, `BEGIN IMMEDIATE` on
//! SQLite (one writer at a time). Under it, the transaction reads each chain's
//! head, skips events the same as the one already stored under their
//! `log_id` (idempotency; a different one is refused or recorded, see
//! `overseer_actors::audit::idempotency`), assigns
//! `seq` and hashes, inserts, and commits, releasing the lock. Two replicas on
//! one PostgreSQL therefore extend a chain one after the other, never from the
//! same head, and the unique `(tenant, seq)` index would refuse it if they
//! did. One lock for every chain rather than one per tenant, because it also
//! makes commit order equal `id` order, which lets the activity stream use
//! `id` as a cursor that never skips a late commit. Batches are large, so one
//! writer at a time costs little.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use overseer_actors::audit::event::Unplaced;
use overseer_actors::audit::event::format_timestamp;
use overseer_actors::audit::idempotency::{Claim, Plan};
use overseer_actors::audit::{AuditEvent, CommittedEvent, GENESIS_HASH, Redactor};
use uuid::Uuid;

/// A state change's audit rows, redacted as the AuditActor redacts what it
/// is given: a state change builds its rows itself and commits them here,
/// in its own transaction, without passing the actor. Secrets only (nothing
/// is cut, as before); the events are few.
pub(super) fn redacted(events: &[AuditEvent]) -> Vec<AuditEvent> {
    events
        .iter()
        .cloned()
        .map(|mut event| {
            Redactor::SECRETS_ONLY.redact_event(&mut event);
            event
        })
        .collect()
}

/// An event placed in its chain, ready to insert.
pub(super) struct Chained<'a> {
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
    pub event: &'a AuditEvent,
}

/// An event of a batch with its canonical bytes but for `seq`, made before
/// the trail's lock is taken, so that only hashing is left under it.
pub(super) struct Prepared<'a> {
    pub event: &'a AuditEvent,
    unplaced: Unplaced,
}

pub(super) fn prepared(events: &[AuditEvent]) -> Vec<Prepared<'_>> {
    events
        .iter()
        .map(|event| Prepared {
            event,
            unplaced: Unplaced::of(event),
        })
        .collect()
}

/// The events of a batch (`events`, prepared in batch order) that `plan`
/// keeps, each row recording a conflict right after the event it replaces.
pub(super) fn fresh<'a>(events: Vec<Prepared<'a>>, plan: &'a Plan) -> Vec<Prepared<'a>> {
    let mut records = plan.records.iter().peekable();
    let mut fresh = Vec::with_capacity(events.len() + plan.records.len());
    for (at, prepared) in events.into_iter().enumerate() {
        if plan.keep.get(at).copied().unwrap_or(false) {
            fresh.push(prepared);
        }
        while let Some((_, record)) = records.next_if(|(after, _)| *after == at) {
            fresh.push(Prepared {
                event: record,
                unplaced: Unplaced::of(record),
            });
        }
    }
    fresh
}

/// What a stored row says about its `log_id` (the lookup before a batch),
/// as both backends return it.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct ClaimRow {
    pub log_id: String,
    pub tenant_id: Option<String>,
    pub ingest_digest: Option<String>,
}

impl TryFrom<ClaimRow> for Claim {
    type Error = sqlx::Error;

    fn try_from(row: ClaimRow) -> Result<Self, sqlx::Error> {
        let log_id = Uuid::parse_str(&row.log_id).map_err(|e| {
            sqlx::Error::Decode(format!("audit_logs log_id {:?}: {e}", row.log_id).into())
        })?;
        Ok(Claim {
            log_id,
            tenant_id: row.tenant_id,
            digest: row.ingest_digest,
        })
    }
}

pub(super) fn into_claims(rows: Vec<ClaimRow>) -> Result<Vec<Claim>, sqlx::Error> {
    rows.into_iter().map(Claim::try_from).collect()
}

/// The distinct chains of `events`, sorted.
pub(super) fn chains(events: &[Prepared<'_>]) -> Vec<String> {
    let mut chains: Vec<String> = events.iter().map(|p| p.event.chain().to_owned()).collect();
    chains.sort_unstable();
    chains.dedup();
    chains
}

/// Assigns `seq`, `prev_hash` and `hash` after each chain's head (`seq` 0 and
/// the genesis hash for a chain with no rows yet).
pub(super) fn assign<'a>(events: Vec<Prepared<'a>>, heads: Vec<ChainHead>) -> Vec<Chained<'a>> {
    let mut heads: HashMap<String, (i64, String)> = heads
        .into_iter()
        .map(|h| {
            let head = match (h.seq, h.hash) {
                (Some(seq), Some(hash)) => (seq, hash),
                _ => (0, GENESIS_HASH.to_owned()),
            };
            (h.chain, head)
        })
        .collect();
    events
        .into_iter()
        .map(|Prepared { event, unplaced }| {
            let head = heads
                .entry(event.chain().to_owned())
                .or_insert_with(|| (0, GENESIS_HASH.to_owned()));
            let seq = head.0 + 1;
            let hash = unplaced.chain_hash(&head.1, seq);
            let prev_hash = std::mem::replace(&mut head.1, hash.clone());
            head.0 = seq;
            Chained {
                seq,
                prev_hash,
                hash,
                event,
            }
        })
        .collect()
}

/// The last row of a chain (`None`s for an empty chain).
#[derive(Debug, sqlx::FromRow)]
pub(super) struct ChainHead {
    pub chain: String,
    pub seq: Option<i64>,
    pub hash: Option<String>,
}

/// Matches the ids the database assigned (by `log_id`) to the inserted events.
pub(super) fn committed(chained: Vec<Chained<'_>>, ids: Vec<(i64, Uuid)>) -> Vec<CommittedEvent> {
    let ids: HashMap<Uuid, i64> = ids.into_iter().map(|(id, log_id)| (log_id, id)).collect();
    let mut out: Vec<CommittedEvent> = chained
        .into_iter()
        .filter_map(|c| {
            let id = *ids.get(&c.event.log_id)?;
            Some(CommittedEvent {
                id,
                seq: c.seq,
                prev_hash: c.prev_hash,
                hash: c.hash,
                event: c.event.clone(),
            })
        })
        .collect();
    out.sort_unstable_by_key(|c| c.id);
    out
}

/// A row as both backends return it (text for the types they store
/// differently), turned into a [`CommittedEvent`] by `TryFrom`.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct AuditRow {
    id: i64,
    log_id: String,
    tenant_id: Option<String>,
    seq: i64,
    operation: String,
    principal_id: Option<String>,
    principal_name: Option<String>,
    adapter_id: Option<String>,
    success: bool,
    details: String,
    error: Option<String>,
    ip_address: Option<String>,
    security_violation: bool,
    created_at: String,
    prev_hash: String,
    hash: String,
    ingested_by: Option<String>,
}

impl TryFrom<AuditRow> for CommittedEvent {
    type Error = sqlx::Error;

    fn try_from(row: AuditRow) -> Result<Self, sqlx::Error> {
        let decode = |what: &str, e: String| {
            sqlx::Error::Decode(format!("audit_logs row {}: bad {what}: {e}", row.id).into())
        };
        let log_id = Uuid::parse_str(&row.log_id).map_err(|e| decode("log_id", e.to_string()))?;
        let details =
            serde_json::from_str(&row.details).map_err(|e| decode("details", e.to_string()))?;
        let created_at = DateTime::parse_from_rfc3339(&row.created_at)
            .map_err(|e| decode("created_at", e.to_string()))?
            .with_timezone(&Utc);
        Ok(CommittedEvent {
            id: row.id,
            seq: row.seq,
            prev_hash: row.prev_hash,
            hash: row.hash,
            event: AuditEvent {
                log_id,
                tenant_id: row.tenant_id,
                operation: row.operation,
                principal_id: row.principal_id,
                principal_name: row.principal_name,
                adapter_id: row.adapter_id,
                success: row.success,
                details,
                error: row.error,
                ip_address: row.ip_address,
                security_violation: row.security_violation,
                created_at,
                ingest_digest: None,
                ingested_by: row.ingested_by,
            },
        })
    }
}

pub(super) fn into_events(rows: Vec<AuditRow>) -> Result<Vec<CommittedEvent>, sqlx::Error> {
    rows.into_iter().map(CommittedEvent::try_from).collect()
}

/// Which rows `GET /api/v1/audit/logs` wants. Every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub tenant_id: Option<String>,
    /// Any of these operations (empty: all).
    pub operations: Vec<String>,
    pub principal_id: Option<String>,
    pub success: Option<bool>,
    pub security_violation: Option<bool>,
    /// `created_at >= since`.
    pub since: Option<DateTime<Utc>>,
    /// `created_at < until`.
    pub until: Option<DateTime<Utc>>,
    /// Rows strictly older than this (`created_at`, `id`) position.
    pub before: Option<AuditPosition>,
    pub limit: u32,
}

/// A position in the newest-first order: `(created_at, id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditPosition {
    pub created_at: DateTime<Utc>,
    pub id: i64,
}

/// Appends the filters of `query` (after `WHERE TRUE`) and the order and limit.
/// `cast` turns a bound timestamp text into the column's type (`::timestamptz`
/// on PostgreSQL; nothing on SQLite, whose column is the same fixed-width
/// text).
macro_rules! push_audit_filters {
    ($qb:expr, $query:expr, $cast:expr) => {{
        let q = $query;
        crate::store::audit::push_who_and_what!($qb, q);
        if let Some(violation) = q.security_violation {
            $qb.push(" AND security_violation = ").push_bind(violation);
        }
        if let Some(since) = q.since {
            $qb.push(" AND created_at >= ")
                .push_bind(crate::store::audit::timestamp(since))
                .push($cast);
        }
        if let Some(until) = q.until {
            $qb.push(" AND created_at < ")
                .push_bind(crate::store::audit::timestamp(until))
                .push($cast);
        }
        if let Some(before) = q.before {
            // `(created_at, id) < (t, id)`, spelled so that the bound on
            // `created_at` reaches the index (a row comparison does not match
            // the `(tenant_id, ..., created_at)` indexes, read backward).
            let t = crate::store::audit::timestamp(before.created_at);
            $qb.push(" AND created_at <= ")
                .push_bind(t.clone())
                .push($cast)
                .push(" AND (created_at < ")
                .push_bind(t)
                .push($cast)
                .push(" OR id < ")
                .push_bind(before.id)
                .push(")");
        }
        // Qualified: a bare `created_at` here would name the output column,
        // which PostgreSQL renders as text, and sort without an index.
        $qb.push(" ORDER BY audit_logs.created_at DESC, audit_logs.id DESC LIMIT ")
            .push_bind(i64::from(q.limit));
    }};
}
pub(super) use push_audit_filters;

/// The filters the audit query and the activity stream share: `tenant_id`,
/// `operations` (any of), `principal_id`, `success` of `$q`.
macro_rules! push_who_and_what {
    ($qb:expr, $q:expr) => {{
        if let Some(tenant) = &$q.tenant_id {
            $qb.push(" AND tenant_id = ").push_bind(tenant.clone());
        }
        if !$q.operations.is_empty() {
            $qb.push(" AND operation IN (");
            let mut list = $qb.separated(", ");
            for op in &$q.operations {
                list.push_bind(op.clone());
            }
            $qb.push(")");
        }
        if let Some(principal) = &$q.principal_id {
            $qb.push(" AND principal_id = ")
                .push_bind(principal.clone());
        }
        if let Some(success) = $q.success {
            $qb.push(" AND success = ").push_bind(success);
        }
    }};
}
pub(super) use push_who_and_what;

pub(super) fn timestamp(at: DateTime<Utc>) -> String {
    format_timestamp(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_continue_from_their_heads_and_skip_stored_events() {
        use overseer_actors::audit::idempotency::{Offer, plan};

        let at = Utc::now();
        let a1 = AuditEvent::new("a1", at).with_tenant("a");
        let b1 = AuditEvent::new("b1", at).with_tenant("b");
        let a2 = AuditEvent::new("a2", at).with_tenant("a");
        let sys = AuditEvent::new("s", at);
        let batch = vec![a1.clone(), b1.clone(), a1.clone(), a2, sys];
        let stored = vec![Claim {
            log_id: b1.log_id,
            tenant_id: Some("b".into()),
            digest: None,
        }];
        let plan = plan(&batch, &Offer::answered(&batch, at), &stored);
        let fresh = fresh(prepared(&batch), &plan);
        assert_eq!(fresh.len(), 3, "b1 is stored and a1 repeats");
        assert_eq!(chains(&fresh), vec!["".to_owned(), "a".to_owned()]);

        let heads = vec![ChainHead {
            chain: "a".into(),
            seq: Some(7),
            hash: Some("h7".into()),
        }];
        let chained = assign(fresh, heads);
        assert_eq!(chained[0].seq, 8);
        assert_eq!(chained[0].prev_hash, "h7");
        assert_eq!(chained[1].seq, 9);
        assert_eq!(chained[1].prev_hash, chained[0].hash);
        assert_eq!(chained[2].seq, 1, "the system chain starts at 1");
        assert_eq!(chained[2].prev_hash, GENESIS_HASH);
        assert_eq!(
            chained[2].hash,
            overseer_actors::audit::chain_hash(GENESIS_HASH, 1, chained[2].event)
        );
    }

    #[test]
    fn a_conflict_is_recorded_in_the_place_of_the_event_it_replaces() {
        use overseer_actors::audit::idempotency::{CONFLICT_OPERATION, Offer, plan};

        let at = Utc::now();
        let held = AuditEvent::new("a_op", at).with_tenant("a");
        let mut reuse = AuditEvent::new("b_op", at).with_tenant("b");
        reuse.log_id = held.log_id;
        let after = AuditEvent::new("b_next", at).with_tenant("b");
        let batch = vec![reuse, after];
        let stored = vec![Claim {
            log_id: held.log_id,
            tenant_id: Some("a".into()),
            digest: None,
        }];
        let plan = plan(&batch, &Offer::answered(&batch, at), &stored);
        let chained = assign(fresh(prepared(&batch), &plan), Vec::new());
        let order: Vec<(&str, i64)> = chained
            .iter()
            .map(|c| (c.event.operation.as_str(), c.seq))
            .collect();
        assert_eq!(order, [(CONFLICT_OPERATION, 1), ("b_next", 2)]);
    }
}
