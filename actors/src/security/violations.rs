//! What a violation is: its type and severity, the violation a detector or
//! handler reports, and the alarm the log line, gate and notice speak of.

use std::fmt;

use serde::Serialize;

use crate::audit::AuditEvent;

/// The rule a violation broke; `as_str` is its stable name in audit rows,
/// metrics and notices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationType {
    CrossTenantAccess,
    UnauthorizedAccess,
    RepeatedFailedAuth,
    UnusualRequestPattern,
}

impl ViolationType {
    pub fn as_str(self) -> &'static str {
        match self {
            ViolationType::CrossTenantAccess => "cross_tenant_access",
            ViolationType::UnauthorizedAccess => "unauthorized_access",
            ViolationType::RepeatedFailedAuth => "repeated_failed_auth",
            ViolationType::UnusualRequestPattern => "unusual_request_pattern",
        }
    }

    /// Reaching into another tenant breaks isolation itself, hence critical;
    /// the rest stay inside one tenant or are only a pattern.
    pub fn severity(self) -> Severity {
        match self {
            ViolationType::CrossTenantAccess => Severity::Critical,
            ViolationType::UnauthorizedAccess | ViolationType::RepeatedFailedAuth => Severity::High,
            ViolationType::UnusualRequestPattern => Severity::Medium,
        }
    }
}

impl fmt::Display for ViolationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }

    /// `critical`, `high`, `medium` or `low`, in any case; anything else is
    /// `None`.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Severity::Critical,
            Severity::High,
            Severity::Medium,
            Severity::Low,
        ]
        .into_iter()
        .find(|severity| severity.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One violation, as detected or reported by a handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub kind: ViolationType,
    /// The IP or principal id the rule is about: the key of its windows and of
    /// the notification cool-down.
    pub subject: String,
    /// The tenant of the principal that acted (never the tenant of a resource
    /// it was refused, which the 404 must not reveal); `None` when no principal
    /// is known, as for failed authentications.
    pub tenant_id: Option<String>,
    pub principal_id: Option<String>,
    pub ip_address: Option<String>,
    pub resource_id: Option<String>,
    pub reason: String,
}

impl Violation {
    /// A principal refused a resource (`cross_tenant_access`,
    /// `unauthorized_access`): the subject is the principal, so a principal
    /// probing many resources yields one notice per cool-down.
    pub fn access(
        kind: ViolationType,
        tenant_id: impl Into<String>,
        principal_id: impl Into<String>,
        resource_id: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        let principal_id = principal_id.into();
        Self {
            kind,
            subject: principal_id.clone(),
            tenant_id: Some(tenant_id.into()),
            principal_id: Some(principal_id),
            ip_address: None,
            resource_id: Some(resource_id.into()),
            reason: reason.into(),
        }
    }

    pub fn with_ip(mut self, ip: impl Into<String>) -> Self {
        self.ip_address = Some(ip.into());
        self
    }
}
/// What the log line, the gate and the notice say about one violation:
/// one this monitor detected or a handler reported ([`Violation`]), or one
/// another producer recorded in the trail (an event ingested with
/// `security_violation: true`, a `log_id` conflict found on replay), read
/// back from its committed row ([`Alarm::recorded`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alarm {
    /// The rule's name: a [`ViolationType`]'s, or the recorder's own.
    pub violation_type: String,
    pub severity: Severity,
    /// The gate's key with `violation_type`: who or what the violation is
    /// about.
    pub subject: String,
    /// Whose audit channel hears of it (`None`: the service's).
    pub tenant_id: Option<String>,
    pub principal_id: Option<String>,
    pub ip_address: Option<String>,
    pub resource_id: Option<String>,
    pub reason: String,
    /// `monitor` (detected or reported here) or `recorded` (read from the
    /// trail); also the `type` label of `security_violations_total` for
    /// recorded ones, whose own names come from clients and must not become
    /// label values.
    pub origin: &'static str,
}

/// Longest type name taken from a recorded violation; a longer or stranger
/// one is replaced by the event's operation.
const MAX_RECORDED_TYPE_CHARS: usize = 64;
/// Longest subject, reason or resource taken from a recorded violation (they
/// are a gate key and a line of a Slack message, not a document).
pub(super) const MAX_RECORDED_TEXT_CHARS: usize = 500;

impl From<&Violation> for Alarm {
    fn from(v: &Violation) -> Self {
        Self {
            violation_type: v.kind.as_str().to_owned(),
            severity: v.kind.severity(),
            subject: v.subject.clone(),
            tenant_id: v.tenant_id.clone(),
            principal_id: v.principal_id.clone(),
            ip_address: v.ip_address.clone(),
            resource_id: v.resource_id.clone(),
            reason: v.reason.clone(),
            origin: "monitor",
        }
    }
}

impl Alarm {
    /// A violation another producer recorded, from its (redacted) row. The
    /// type is `details.type` when it is a plain name (`[a-z0-9_.:-]`, at
    /// most 64 characters), else the operation; the severity is
    /// `details.severity` (`critical`, `high`, `medium`, `low`), else high;
    /// the subject is the principal, else the client address, else the
    /// operation; the reason is the error, else `details.reason`, else the
    /// operation.
    pub fn recorded(event: &AuditEvent) -> Self {
        let text = |key: &str| {
            event
                .details
                .get(key)
                .and_then(serde_json::Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let violation_type = text("type")
            .filter(|t| {
                t.len() <= MAX_RECORDED_TYPE_CHARS
                    && t.chars().all(|c| {
                        c.is_ascii_lowercase()
                            || c.is_ascii_digit()
                            || matches!(c, '_' | '.' | ':' | '-')
                    })
            })
            .unwrap_or(&event.operation);
        let nonempty = |s: &Option<String>| {
            s.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let subject = nonempty(&event.principal_id)
            .or_else(|| nonempty(&event.ip_address))
            .unwrap_or_else(|| event.operation.clone());
        let reason = nonempty(&event.error)
            .or_else(|| text("reason").map(str::to_owned))
            .unwrap_or_else(|| event.operation.clone());
        Self {
            violation_type: cut(violation_type, MAX_RECORDED_TYPE_CHARS),
            severity: text("severity")
                .and_then(Severity::parse)
                .unwrap_or(Severity::High),
            subject: cut(&subject, MAX_RECORDED_TEXT_CHARS),
            tenant_id: event.tenant_id.clone(),
            principal_id: event.principal_id.clone(),
            ip_address: event.ip_address.clone(),
            resource_id: text("resource_id").map(|r| cut(r, MAX_RECORDED_TEXT_CHARS)),
            reason: cut(&reason, MAX_RECORDED_TEXT_CHARS),
            origin: "recorded",
        }
    }

    pub(super) fn metric_type(&self) -> &str {
        if self.origin == "monitor" {
            &self.violation_type
        } else {
            self.origin
        }
    }
}

/// At most `max` characters of `s`.
fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}
