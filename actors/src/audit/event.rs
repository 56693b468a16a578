//! The audit record, its chain and its hash.
//!
//! Each tenant's events form a chain (`seq` 1, 2, 3, ... with no gap); system
//! events (no tenant) form their own. `hash = SHA-256(prev_hash || canonical
//! bytes of the record)`, hex-encoded; the first record's `prev_hash` is
//! [`GENESIS_HASH`]. The canonical bytes are a JSON array in a fixed field
//! order with object keys sorted, so the same record hashes the same after a
//! round trip through either database (JSONB reorders keys; SQLite keeps text).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// `prev_hash` of the first record of every chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One operation, as recorded. Build it with [`AuditEvent::new`] and the
/// `with_*` setters; producers hand it to the [`super::Auditor`], which redacts
/// it before anything stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Unique; the idempotency key of ingestion. Any UUID a client sends;
    /// a UUIDv7 when minted here.
    pub log_id: Uuid,
    /// `None` for a system event.
    pub tenant_id: Option<String>,
    pub operation: String,
    pub principal_id: Option<String>,
    pub principal_name: Option<String>,
    pub adapter_id: Option<String>,
    pub success: bool,
    /// Always a JSON object.
    pub details: serde_json::Value,
    pub error: Option<String>,
    pub ip_address: Option<String>,
    pub security_violation: bool,
    /// UTC, microseconds.
    pub created_at: DateTime<Utc>,
    /// For an event a client sent (`POST /api/v1/audit/events`): its
    /// [`content_digest`], which tells a retry of it from another event
    /// under the same `log_id` (see [`super::idempotency`]). Stored beside
    /// the row, outside the chain; never served (the spool keeps it, see
    /// [`super::spool`]).
    #[serde(skip)]
    pub ingest_digest: Option<String>,
    /// For an event a client sent: the id of the token that wrote it (an
    /// ingest token's id, or `super_admin`); `None` for the service's own
    /// events and rows stored before it was recorded. In the chain when
    /// set (see [`record_bytes`]), so it cannot be changed afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingested_by: Option<String>,
}

impl AuditEvent {
    /// A successful operation with no details; set the rest with the `with_*`
    /// methods. Its `log_id` is a UUIDv7: ids minted one after another sort
    /// one after another, so the unique index on `log_id` grows at its end
    /// instead of at a random page per row (a fifth less database time per
    /// inserted batch, measured in docs/benchmarks.md). Its random bits come
    /// from a thread-local CSPRNG seeded by the OS (uuid's `fast-rng`), not
    /// a `getrandom` system call per id: ~110 ns against ~450 ns an id.
    pub fn new(operation: impl Into<String>, created_at: DateTime<Utc>) -> Self {
        Self {
            log_id: Uuid::now_v7(),
            tenant_id: None,
            operation: operation.into(),
            principal_id: None,
            principal_name: None,
            adapter_id: None,
            success: true,
            details: serde_json::Value::Object(serde_json::Map::new()),
            error: None,
            ip_address: None,
            security_violation: false,
            created_at: truncate_to_micros(created_at),
            ingest_digest: None,
            ingested_by: None,
        }
    }

    pub fn with_tenant(mut self, tenant_id: impl Into<String>) -> Self {
        self.tenant_id = Some(tenant_id.into());
        self
    }

    pub fn with_principal(mut self, id: impl Into<String>, name: Option<String>) -> Self {
        self.principal_id = Some(id.into());
        self.principal_name = name;
        self
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    pub fn failed(mut self, error: impl Into<String>) -> Self {
        self.success = false;
        self.error = Some(error.into());
        self
    }

    /// The chain this event belongs to: its tenant, or `""` for system events
    /// (tenant ids are never empty).
    pub fn chain(&self) -> &str {
        self.tenant_id.as_deref().unwrap_or("")
    }
}

/// An event as the database holds it: with its stream cursor (`id`), its place
/// in its chain (`seq`) and the chain's hashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommittedEvent {
    pub id: i64,
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
    #[serde(flatten)]
    pub event: AuditEvent,
}

/// Timestamps are kept to the microsecond, the precision both backends store.
pub fn truncate_to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::SubsecRound;
    at.trunc_subsecs(6)
}

/// The fixed-width text form used for hashing and for SQLite storage:
/// `2026-11-24T04:05:06.123456Z` (sorts as it orders).
pub fn format_timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The chain hash of `event` placed at `seq` after a record hashed `prev_hash`.
pub fn chain_hash(prev_hash: &str, seq: i64, event: &AuditEvent) -> String {
    Unplaced::of(event).chain_hash(prev_hash, seq)
}

/// The canonical bytes of a record: a JSON array in a fixed field order,
/// object keys sorted at every depth.
pub fn canonical_bytes(seq: i64, e: &AuditEvent) -> Vec<u8> {
    let mut bytes = Vec::new();
    Unplaced::of(e).place(seq, |part| bytes.extend_from_slice(part));
    bytes
}

/// An event's canonical bytes before it has a place in its chain: all but
/// its `seq`. The costly part of hashing (the JSON, its keys sorted) is done
/// with this before the trail's lock is taken; under it, placing the event
/// only hashes.
#[derive(Debug, Clone)]
pub struct Unplaced(Vec<u8>);

impl Unplaced {
    pub fn of(e: &AuditEvent) -> Self {
        Self(record_bytes(e))
    }

    /// [`chain_hash`] of the event placed at `seq` after `prev_hash`.
    pub fn chain_hash(&self, prev_hash: &str, seq: i64) -> String {
        let mut hasher = Sha256::new();
        hasher.update(prev_hash.as_bytes());
        self.place(seq, |part| hasher.update(part));
        hex::encode(hasher.finalize())
    }

    /// Feeds the canonical bytes at `seq` to `out` in parts: `[`, `seq`, and
    /// the other fields (the array of [`record_bytes`] after its `[`).
    fn place(&self, seq: i64, mut out: impl FnMut(&[u8])) {
        out(b"[");
        out(seq.to_string().as_bytes());
        out(b",");
        out(self.0.get(1..).unwrap_or_default());
    }
}

/// The fields of the canonical bytes after `seq`, as a JSON array. An
/// `ingested_by` is appended only when set: a row without one (the
/// service's own, or one stored before the column existed) has the bytes
/// it always had, so chains written before it still verify.
fn record_bytes(e: &AuditEvent) -> Vec<u8> {
    let record = (
        e.log_id.hyphenated().to_string(),
        &e.tenant_id,
        &e.operation,
        &e.principal_id,
        &e.principal_name,
        &e.adapter_id,
        e.success,
        Canonical(&e.details),
        &e.error,
        &e.ip_address,
        e.security_violation,
        format_timestamp(e.created_at),
    );
    // Serializing strings, numbers, booleans and maps into a Vec cannot fail.
    let mut bytes = serde_json::to_vec(&record).unwrap_or_default();
    if let Some(by) = &e.ingested_by
        && bytes.pop() == Some(b']')
    {
        bytes.push(b',');
        bytes.extend(serde_json::to_vec(by).unwrap_or_default());
        bytes.push(b']');
    }
    bytes
}

/// SHA-256 (hex) of the canonical content of an event a client sent, as
/// it is stored: after redaction, with `details` keys sorted at every depth
/// (so neither the client's key order nor JSONB's matters) and the address
/// in its parsed form. `created_at` counts only when the client set it
/// (`created_at_given`): otherwise it is the time of receipt, which a retry
/// does not repeat. The tenant is the event's own, so the same body sent
/// for two tenants has two digests. The `log_id` is left out: it is what
/// the digest is compared under.
pub fn content_digest(e: &AuditEvent, created_at_given: bool) -> String {
    let content = (
        "overseer.ingest.v1",
        &e.tenant_id,
        &e.operation,
        &e.principal_id,
        &e.principal_name,
        &e.adapter_id,
        e.success,
        Canonical(&e.details),
        &e.error,
        &e.ip_address,
        e.security_violation,
        created_at_given.then(|| format_timestamp(e.created_at)),
    );
    // Serializing strings, booleans and maps into a Vec cannot fail.
    let bytes = serde_json::to_vec(&content).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

/// A JSON value serialized with object keys sorted, whatever order its map
/// kept them in.
pub struct Canonical<'a>(pub &'a serde_json::Value);

impl Serialize for Canonical<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self.0 {
            serde_json::Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                let mut out = s.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    out.serialize_entry(key, &Canonical(value))?;
                }
                out.end()
            }
            serde_json::Value::Array(items) => s.collect_seq(items.iter().map(Canonical)),
            scalar => scalar.serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn event() -> AuditEvent {
        let at = Utc.with_ymd_and_hms(2026, 11, 24, 4, 5, 6).unwrap();
        AuditEvent::new("create_media_buy", at)
            .with_tenant("acme")
            .with_details(serde_json::json!({"b": 1, "a": {"z": true, "y": [1, "x"]}}))
    }

    #[test]
    fn canonical_bytes_sort_keys_at_every_depth() {
        let value = serde_json::json!({"b": 1, "a": {"z": true, "y": [1, "x"]}});
        assert_eq!(
            serde_json::to_string(&Canonical(&value)).unwrap(),
            r#"{"a":{"y":[1,"x"],"z":true},"b":1}"#
        );
    }

    #[test]
    fn the_hash_covers_every_field_and_the_previous_hash() {
        let base = event();
        let h = chain_hash(GENESIS_HASH, 1, &base);
        assert_eq!(h.len(), 64);
        assert_eq!(h, chain_hash(GENESIS_HASH, 1, &base.clone()));
        assert_ne!(h, chain_hash(&h, 1, &base));
        assert_ne!(h, chain_hash(GENESIS_HASH, 2, &base));
        let mut altered = base.clone();
        altered.details["b"] = serde_json::json!(2);
        assert_ne!(h, chain_hash(GENESIS_HASH, 1, &altered));
        let mut altered = base.clone();
        altered.success = false;
        assert_ne!(h, chain_hash(GENESIS_HASH, 1, &altered));
        let mut altered = base;
        altered.created_at += chrono::Duration::microseconds(1);
        assert_ne!(h, chain_hash(GENESIS_HASH, 1, &altered));
    }

    #[test]
    fn an_unplaced_event_hashes_as_the_whole_record_does() {
        let mut bare = event();
        bare.details = serde_json::json!({});
        let mut full = event();
        full.principal_id = Some("p\"1".into());
        full.error = Some("é".into());
        full.security_violation = true;
        for e in [event(), bare, full] {
            for seq in [1, 10, 987_654_321, i64::MAX] {
                let bytes = canonical_bytes(seq, &e);
                let whole: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(whole[0], serde_json::json!(seq));
                assert_eq!(whole[1], serde_json::json!(e.log_id.to_string()));
                assert_eq!(whole.as_array().unwrap().len(), 13);
                let mut hasher = Sha256::new();
                hasher.update(GENESIS_HASH.as_bytes());
                hasher.update(&bytes);
                assert_eq!(
                    Unplaced::of(&e).chain_hash(GENESIS_HASH, seq),
                    hex::encode(hasher.finalize())
                );
            }
        }
        // The bytes every chain already stored were hashed with: unchanged.
        let at = Utc.with_ymd_and_hms(2026, 11, 24, 4, 5, 6).unwrap();
        let mut e = AuditEvent::new("op", at).with_tenant("acme");
        e.log_id = Uuid::nil();
        assert_eq!(
            String::from_utf8(canonical_bytes(7, &e)).unwrap(),
            "[7,\"00000000-0000-0000-0000-000000000000\",\"acme\",\"op\",null,null,null,\
             true,{},null,null,false,\"2026-11-24T04:05:06.000000Z\"]"
        );
    }

    #[test]
    fn the_content_digest_ignores_key_order_and_an_unset_created_at() {
        let sent = event();
        let mut again = sent.clone();
        again.log_id = Uuid::new_v4();
        again.details = serde_json::json!({"a": {"y": [1, "x"], "z": true}, "b": 1});
        again.created_at += chrono::Duration::seconds(3);
        // No `created_at` from the client: receipt time is not content.
        assert_eq!(content_digest(&sent, false), content_digest(&again, false));
        // Set by the client: it is.
        assert_ne!(content_digest(&sent, true), content_digest(&again, true));
        assert_ne!(content_digest(&sent, false), content_digest(&sent, true));
        assert_eq!(content_digest(&sent, false).len(), 64);
        let mut other = sent.clone();
        other.tenant_id = Some("other".into());
        assert_ne!(content_digest(&sent, false), content_digest(&other, false));
        let mut other = sent.clone();
        other.success = false;
        assert_ne!(content_digest(&sent, false), content_digest(&other, false));
        let mut other = sent;
        other.details["b"] = serde_json::json!("1");
        assert_ne!(
            content_digest(&event(), false),
            content_digest(&other, false)
        );
    }

    #[test]
    fn timestamps_have_a_fixed_width() {
        let at = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(format_timestamp(at), "2026-01-02T03:04:05.000000Z");
    }
}
