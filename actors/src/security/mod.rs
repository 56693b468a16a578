//! The security monitor: turns auth and access events into security
//! violations, and each violation into an audit row, a metric, a critical log
//! line and (at most once per cool-down) a Slack notice on the audit channel.
//! It speaks for every violation, not only its own: violation rows other
//! producers commit (events ingested with `security_violation: true`) reach
//! it as [`NotableEvent`](crate::audit::NotableEvent)s and are logged, gated and notified the same way.
//!
//! Detection is plain data and arithmetic ([`Detector`], [`NotifyGate`]) that
//! reads the time it is given, so windows and cool-downs are tested with
//! explicit timestamps. Both live behind a mutex outside the actor: the
//! request path asks "is this IP blocked?" without a mailbox round trip, and a
//! restart of the actor neither unblocks an IP nor sends a notice again. The
//! [`SecurityActor`] only does the slow part of a violation (audit, outbox).

mod actor;
mod monitor;
#[cfg(test)]
mod tests;
mod violations;
mod windows;

pub use self::actor::{Report, SecurityActor};
pub use self::monitor::SecurityMonitor;
pub use self::violations::{Alarm, Severity, Violation, ViolationType};
pub use self::windows::{Detector, NotifyGate, SecurityConfig};
