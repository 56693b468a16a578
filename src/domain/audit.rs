//! Audit events as other services send them (`POST /api/v1/audit/events`),
//! parsed into [`AuditEvent`]s.

use std::net::IpAddr;

use chrono::{DateTime, TimeDelta, Utc};
use overseer_actors::audit::{AuditEvent, Ingested};
use serde::Deserialize;
use uuid::Uuid;

use super::TenantId;

/// Largest `details` accepted, serialized (64 KiB).
pub const MAX_DETAILS_BYTES: usize = 64 * 1024;
/// Most events in one ingest request.
pub const MAX_EVENTS_PER_REQUEST: usize = 1_000;
const MAX_OPERATION_CHARS: usize = 100;
/// How old a client's `created_at` may be: a client that buffered events
/// while it could not reach Overseer replays them within a day, with the
/// times they happened. Older events are refused (422 on `created_at`):
/// backdating a row into a period already read, exported or alerted on is
/// what a forger would want. Overseer's own spool is not held to it (its
/// events were checked when received).
pub const MAX_INGEST_AGE: TimeDelta = TimeDelta::hours(24);
/// How far ahead of the server's clock a client's `created_at` may be: the
/// clock skew of a well-run fleet.
pub const MAX_CLOCK_SKEW: TimeDelta = TimeDelta::minutes(5);
/// The principal id the trail gives the super admin; no tenant token may
/// claim it (nor its display name).
pub const SUPER_ADMIN_ID: &str = "super_admin";
const SUPER_ADMIN_NAME: &str = "super admin";
const MAX_NAME_CHARS: usize = 200;

/// One event in an ingest request. `success` and `operation` are required.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestEvent {
    /// The idempotency key: a retry of the same event (same tenant, same
    /// content) with the same `log_id` stores nothing twice; a different
    /// event under a `log_id` already used is refused (409).
    #[serde(default)]
    pub log_id: Option<Uuid>,
    /// With a tenant token: absent or that token's tenant.
    #[serde(default)]
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    pub tenant_id: Option<String>,
    #[schema(pattern = "^[a-z0-9_.:-]{1,100}$")]
    pub operation: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub principal_id: Option<String>,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub principal_name: Option<String>,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub adapter_id: Option<String>,
    pub success: bool,
    /// A JSON object of at most 64 KiB, serialised.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub error: Option<String>,
    /// An IPv4 or IPv6 address.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub ip_address: Option<IpAddr>,
    #[serde(default)]
    pub security_violation: bool,
    /// When the operation happened; default: when it was received.
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
}

/// Why an ingested event was refused; `field` is its JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestError {
    Invalid { field: String, message: String },
    DetailsTooLarge { field: String },
}

impl IngestEvent {
    /// Checks the event and builds its [`AuditEvent`], noting whether the
    /// client set `created_at` (which its idempotency then covers). `prefix`
    /// is the event's place in the request (`""` or `"[3]."`), for error
    /// paths; `tenant` is the tenant the caller's token is bound to, if any
    /// (the event's own `tenant_id` must then be absent or the same).
    pub fn parse(
        self,
        prefix: &str,
        tenant: Option<&TenantId>,
        now: DateTime<Utc>,
    ) -> Result<Ingested, IngestError> {
        let invalid = |name: &str, message: &str| IngestError::Invalid {
            field: format!("{prefix}{name}"),
            message: message.to_owned(),
        };
        let op = &self.operation;
        if op.is_empty() || op.chars().count() > MAX_OPERATION_CHARS {
            return Err(invalid("operation", "must be 1 to 100 characters"));
        }
        if !op
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.:-".contains(c))
        {
            return Err(invalid(
                "operation",
                "may contain only lowercase letters, digits, '_', '.', ':' and '-'",
            ));
        }
        let tenant_id = match (self.tenant_id.as_deref(), tenant) {
            (Some(given), Some(bound)) if given != bound.as_str() => {
                return Err(invalid(
                    "tenant_id",
                    "must be the tenant of the token (or absent)",
                ));
            }
            (Some(given), _) => Some(
                TenantId::parse("tenant_id", given)
                    .map_err(|e| invalid("tenant_id", &e.message))?
                    .as_str()
                    .to_owned(),
            ),
            (None, bound) => bound.map(|t| t.as_str().to_owned()),
        };
        // A tenant's token writing as the super admin is a forgery, in the
        // id or in the name people read.
        if tenant.is_some() {
            if self.principal_id.as_deref().map(str::trim) == Some(SUPER_ADMIN_ID) {
                return Err(invalid(
                    "principal_id",
                    "only the super admin is `super_admin`",
                ));
            }
            if self
                .principal_name
                .as_deref()
                .is_some_and(|n| n.trim().eq_ignore_ascii_case(SUPER_ADMIN_NAME))
            {
                return Err(invalid(
                    "principal_name",
                    "only the super admin is `Super admin`",
                ));
            }
        }
        for (name, value) in [
            ("principal_id", &self.principal_id),
            ("principal_name", &self.principal_name),
            ("adapter_id", &self.adapter_id),
        ] {
            if value
                .as_deref()
                .is_some_and(|v| v.chars().count() > MAX_NAME_CHARS)
            {
                return Err(invalid(name, "must be at most 200 characters"));
            }
        }
        let details = serde_json::Value::Object(self.details.unwrap_or_default());
        if details.to_string().len() > MAX_DETAILS_BYTES {
            return Err(IngestError::DetailsTooLarge {
                field: format!("{prefix}details"),
            });
        }
        let created_at_given = self.created_at.is_some();
        let created_at = match self.created_at {
            Some(at) => {
                let at = super::time::timestamp("created_at", at)
                    .map_err(|e| invalid("created_at", &e.message))?;
                // Both sides to the microsecond, as stored.
                let now = chrono::SubsecRound::trunc_subsecs(now, 6);
                if at < now - MAX_INGEST_AGE || at > now + MAX_CLOCK_SKEW {
                    return Err(invalid(
                        "created_at",
                        "must be within the last 24 hours, and at most 5 minutes ahead",
                    ));
                }
                at
            }
            None => now,
        };
        let mut event = AuditEvent::new(self.operation, created_at);
        if let Some(log_id) = self.log_id {
            event.log_id = log_id;
        }
        event.tenant_id = tenant_id;
        event.principal_id = self.principal_id;
        event.principal_name = self.principal_name;
        event.adapter_id = self.adapter_id;
        event.success = self.success;
        event.details = details;
        event.error = self.error;
        event.ip_address = self.ip_address.map(|ip| ip.to_string());
        event.security_violation = self.security_violation;
        Ok(Ingested {
            event,
            created_at_given,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: serde_json::Value) -> IngestEvent {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_bound_tenant_fills_in_and_must_match() {
        let acme = TenantId::parse("t", "acme").unwrap();
        let e = event(serde_json::json!({"operation": "x", "success": true}))
            .parse("", Some(&acme), Utc::now())
            .unwrap();
        assert_eq!(e.event.tenant_id.as_deref(), Some("acme"));
        assert!(!e.created_at_given);
        let err =
            event(serde_json::json!({"operation": "x", "success": true, "tenant_id": "other"}))
                .parse("[2].", Some(&acme), Utc::now())
                .unwrap_err();
        assert!(matches!(err, IngestError::Invalid { field, .. } if field == "[2].tenant_id"));
    }

    #[test]
    fn a_tenant_token_cannot_name_the_super_admin() {
        let acme = TenantId::parse("t", "acme").unwrap();
        for (json, field) in [
            (
                serde_json::json!({"operation": "x", "success": true, "principal_id": "super_admin"}),
                "principal_id",
            ),
            (
                serde_json::json!({"operation": "x", "success": true, "principal_name": "super ADMIN "}),
                "principal_name",
            ),
        ] {
            let err = event(json.clone())
                .parse("", Some(&acme), Utc::now())
                .unwrap_err();
            assert!(
                matches!(err, IngestError::Invalid { field: f, .. } if f == field),
                "{json}"
            );
            assert!(
                event(json).parse("", None, Utc::now()).is_ok(),
                "the super admin itself"
            );
        }
    }

    #[test]
    fn client_times_are_held_to_a_day_back_and_five_minutes_ahead() {
        let now = super::super::time::timestamp("t", Utc::now()).unwrap();
        let at = |t: DateTime<Utc>| {
            event(serde_json::json!({"operation": "x", "success": true, "created_at": t}))
                .parse("[1].", None, now)
        };
        let micro = TimeDelta::microseconds(1);
        assert!(at(now - MAX_INGEST_AGE).is_ok());
        assert!(at(now + MAX_CLOCK_SKEW).is_ok());
        for t in [now - MAX_INGEST_AGE - micro, now + MAX_CLOCK_SKEW + micro] {
            let err = at(t).unwrap_err();
            assert!(
                matches!(err, IngestError::Invalid { field, .. } if field == "[1].created_at"),
                "{t}"
            );
        }
    }

    #[test]
    fn operations_are_names_not_sentences() {
        for bad in ["", "Create Media Buy", "drop;table", &"x".repeat(101)] {
            let err = event(serde_json::json!({"operation": bad, "success": true}))
                .parse("", None, Utc::now())
                .unwrap_err();
            assert!(
                matches!(err, IngestError::Invalid { field, .. } if field == "operation"),
                "{bad}"
            );
        }
    }

    #[test]
    fn details_over_64_kib_are_refused() {
        let big = "x".repeat(MAX_DETAILS_BYTES);
        let err =
            event(serde_json::json!({"operation": "x", "success": true, "details": {"note": big}}))
                .parse("", None, Utc::now())
                .unwrap_err();
        assert_eq!(
            err,
            IngestError::DetailsTooLarge {
                field: "details".into()
            }
        );
    }
}
