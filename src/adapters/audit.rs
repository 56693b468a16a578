//! The service's side of the audit trail: the store behind the AuditActor's
//! port, and the walk that verifies a chain.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use overseer_actors::audit::{
    AppendError, AppendFuture, AuditEvent, AuditStore, GENESIS_HASH, Offer, Turn, chain_hash,
};
use serde::Serialize;

use crate::store::{Store, StoreError};

impl AuditStore for Store {
    fn append(&self, events: Arc<Vec<AuditEvent>>, now: DateTime<Utc>) -> AppendFuture {
        let store = self.clone();
        Box::pin(async move {
            let offer = Offer::answered(&events, now);
            store
                .append_audit_offered(&events, &offer)
                .await
                .map_err(append_error)
        })
    }

    fn append_after(
        &self,
        events: Arc<Vec<AuditEvent>>,
        offer: Offer,
        mut turn: Turn,
    ) -> AppendFuture {
        let store = self.clone();
        Box::pin(async move {
            match store.append_audit_after(&events, &offer, &mut turn).await {
                Ok(Some(committed)) => Ok(committed),
                Ok(None) => Err(AppendError::behind()),
                Err(e) => Err(append_error(e)),
            }
        })
    }
}

fn append_error(e: StoreError) -> AppendError {
    AppendError {
        transient: matches!(e, StoreError::Unavailable(_) | StoreError::QueryTimeout(_)),
        reason: e.short_reason(),
    }
}

/// The outcome of re-walking a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub ok: bool,
    /// Records found intact before the first break (all of them when `ok`).
    pub checked: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken_seq: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Rows read per round trip while verifying.
const VERIFY_PAGE: u32 = 1_000;

/// Re-walks the chain of `tenant` (`None`: the system chain) from `seq` 1:
/// each record must follow the previous one with no gap, name its hash as
/// `prev_hash`, and hash to its own `hash`.
pub async fn verify_chain(store: &Store, tenant: Option<&str>) -> Result<Verification, StoreError> {
    let chain = tenant.unwrap_or("");
    let mut prev_hash = GENESIS_HASH.to_owned();
    let mut checked: u64 = 0;
    let broken = |checked, seq, reason: String| Verification {
        ok: false,
        checked,
        broken_seq: Some(seq),
        reason: Some(reason),
    };
    loop {
        let page = store
            .audit_chain(chain, checked as i64, VERIFY_PAGE)
            .await?;
        let full = page.len() == VERIFY_PAGE as usize;
        for record in page {
            let expected = checked as i64 + 1;
            if record.seq != expected {
                return Ok(broken(
                    checked,
                    expected,
                    format!(
                        "record {expected} is missing (the next one is {})",
                        record.seq
                    ),
                ));
            }
            if record.prev_hash != prev_hash {
                return Ok(broken(
                    checked,
                    record.seq,
                    "prev_hash does not match the previous record's hash".into(),
                ));
            }
            if chain_hash(&prev_hash, record.seq, &record.event) != record.hash {
                return Ok(broken(
                    checked,
                    record.seq,
                    "hash mismatch: the record was altered after it was written".into(),
                ));
            }
            prev_hash = record.hash;
            checked += 1;
        }
        if !full {
            return Ok(Verification {
                ok: true,
                checked,
                broken_seq: None,
                reason: None,
            });
        }
    }
}
