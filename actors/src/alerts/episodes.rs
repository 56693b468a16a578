//! Episodes: an alert's states, the step each evaluation takes, and the
//! writes, audit rows and notices a step makes; `database_unhealthy` kept in
//! memory.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::rules::{AlertConfig, Breach, Rule, delta};
use super::store::AlertChange;
use crate::audit::AuditEvent;
use crate::notify::{Notification, NotificationEvent};

/// An alert's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Pending,
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(AlertState::Pending),
            "firing" => Some(AlertState::Firing),
            "resolved" => Some(AlertState::Resolved),
            _ => None,
        }
    }
}

/// One episode of a rule in a scope, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub id: i64,
    pub rule: String,
    /// Tenant id, `agent:<name>`, or '' (service-wide).
    pub scope: String,
    pub tenant_id: Option<String>,
    pub severity: String,
    pub channel: String,
    pub state: AlertState,
    /// When the condition was first seen.
    pub since: DateTime<Utc>,
    pub fired_at: Option<DateTime<Utc>>,
    pub last_notified_at: Option<DateTime<Utc>>,
    /// Notices sent for this episode (fired, reminders, resolved).
    pub notifications: i32,
    pub value: f64,
    pub threshold: f64,
    pub summary: String,
    pub resolved_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    /// Grows with every change; writes are conditional on it.
    #[serde(skip)]
    pub revision: i64,
}

impl Alert {
    /// A new episode for `breach`, `state` at `now`.
    pub fn open(breach: &Breach, state: AlertState, now: DateTime<Utc>) -> Self {
        let firing = state == AlertState::Firing;
        Self {
            id: 0,
            rule: breach.rule.as_str().to_owned(),
            scope: breach.scope.clone(),
            tenant_id: breach.tenant_id.clone(),
            severity: breach.rule.severity().to_owned(),
            channel: breach.rule.channel().to_owned(),
            state,
            since: now,
            fired_at: firing.then_some(now),
            last_notified_at: firing.then_some(now),
            notifications: i32::from(firing),
            value: breach.value,
            threshold: breach.threshold,
            summary: breach.summary.clone(),
            resolved_at: None,
            updated_at: now,
            revision: 0,
        }
    }
}

/// What to do with one (rule, scope) this evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Nothing,
    /// A new episode, pending (pages no one yet).
    OpenPending,
    /// A new episode, firing at once: the firing notice.
    OpenFiring,
    /// A pending episode held long enough: the firing notice.
    Fire,
    /// Still firing, the repeat interval passed since the last notice.
    Remind,
    /// Still pending or firing; value or summary changed (no notice).
    Refresh,
    /// Firing, and the condition no longer holds: the resolved notice.
    Resolve,
    /// Pending, and the condition no longer holds: forgotten (it never paged).
    Discard,
}

/// The state machine. `current` is the scope's unresolved episode.
pub fn decide(
    current: Option<&Alert>,
    breach: Option<&Breach>,
    now: DateTime<Utc>,
    config: &AlertConfig,
) -> Step {
    let changed = |a: &Alert, b: &Breach| a.value != b.value || a.summary != b.summary;
    match (current, breach) {
        (None, None) => Step::Nothing,
        (None, Some(_)) if config.pending_for.is_zero() => Step::OpenFiring,
        (None, Some(_)) => Step::OpenPending,
        (Some(a), None) => match a.state {
            AlertState::Pending => Step::Discard,
            AlertState::Firing => Step::Resolve,
            AlertState::Resolved => Step::Nothing,
        },
        (Some(a), Some(b)) => match a.state {
            AlertState::Pending if now - a.since >= delta(config.pending_for) => Step::Fire,
            AlertState::Firing
                if a.last_notified_at
                    .is_none_or(|at| now - at >= delta(config.repeat_interval)) =>
            {
                Step::Remind
            }
            AlertState::Pending | AlertState::Firing if changed(a, b) => Step::Refresh,
            _ => Step::Nothing,
        },
    }
}
/// The notice of a step (`kind`: `fired`, `reminder` or `resolved`).
pub fn notice(alert: &Alert, kind: &str, now: DateTime<Utc>) -> Notification {
    let event = match kind {
        "resolved" => NotificationEvent::AlertResolved {
            rule: alert.rule.clone(),
            severity: alert.severity.clone(),
            channel: alert.channel.clone(),
            summary: alert.summary.clone(),
        },
        _ => NotificationEvent::AlertFiring {
            rule: alert.rule.clone(),
            severity: alert.severity.clone(),
            channel: alert.channel.clone(),
            summary: alert.summary.clone(),
            value: alert.value,
            threshold: alert.threshold,
            reminder: kind == "reminder",
        },
    };
    Notification::new(alert.tenant_id.clone(), event, now)
}

/// The audit row of a transition (`alert_fired` or `alert_resolved`).
pub fn audit_row(alert: &Alert, operation: &str, now: DateTime<Utc>) -> AuditEvent {
    let mut event = AuditEvent::new(operation, now)
        .with_principal("system", Some("Alerts".to_owned()))
        .with_details(serde_json::json!({
            "rule": alert.rule,
            "scope": alert.scope,
            "severity": alert.severity,
            "channel": alert.channel,
            "value": alert.value,
            "threshold": alert.threshold,
            "summary": alert.summary,
            "since": alert.since,
        }));
    if let Some(tenant) = &alert.tenant_id {
        event = event.with_tenant(tenant.clone());
    }
    event
}

fn since_text(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M UTC").to_string())
}

/// The write, audit rows and notices of `step` (`None` for `Nothing`), and
/// the notice's kind for the metrics.
#[allow(clippy::type_complexity)]
pub fn plan(
    step: Step,
    current: Option<&Alert>,
    breach: Option<&Breach>,
    now: DateTime<Utc>,
) -> Option<(
    AlertChange,
    Vec<AuditEvent>,
    Vec<Notification>,
    Option<&'static str>,
)> {
    let with_breach = |a: &Alert| {
        let mut next = a.clone();
        if let Some(b) = breach {
            next.value = b.value;
            next.summary = b.summary.clone();
        }
        next.updated_at = now;
        next
    };
    match (step, current, breach) {
        (Step::OpenPending, None, Some(b)) => Some((
            AlertChange::Insert(Alert::open(b, AlertState::Pending, now)),
            Vec::new(),
            Vec::new(),
            None,
        )),
        (Step::OpenFiring, None, Some(b)) => {
            let alert = Alert::open(b, AlertState::Firing, now);
            let audit = vec![audit_row(&alert, "alert_fired", now)];
            let notes = vec![notice(&alert, "fired", now)];
            Some((AlertChange::Insert(alert), audit, notes, Some("fired")))
        }
        (Step::Fire, Some(a), Some(_)) => {
            let mut next = with_breach(a);
            next.state = AlertState::Firing;
            next.fired_at = Some(now);
            next.last_notified_at = Some(now);
            next.notifications += 1;
            let audit = vec![audit_row(&next, "alert_fired", now)];
            let notes = vec![notice(&next, "fired", now)];
            let change = AlertChange::Update {
                alert: next,
                revision: a.revision,
            };
            Some((change, audit, notes, Some("fired")))
        }
        (Step::Remind, Some(a), Some(_)) => {
            let mut next = with_breach(a);
            next.last_notified_at = Some(now);
            next.notifications += 1;
            let mut reminder = next.clone();
            reminder.summary = format!(
                "Reminder: still firing since {}. {}",
                since_text(a.fired_at),
                next.summary
            );
            let notes = vec![notice(&reminder, "reminder", now)];
            let change = AlertChange::Update {
                alert: next,
                revision: a.revision,
            };
            Some((change, Vec::new(), notes, Some("reminder")))
        }
        (Step::Refresh, Some(a), Some(_)) => Some((
            AlertChange::Update {
                alert: with_breach(a),
                revision: a.revision,
            },
            Vec::new(),
            Vec::new(),
            None,
        )),
        (Step::Resolve, Some(a), None) => {
            let mut next = a.clone();
            next.state = AlertState::Resolved;
            next.resolved_at = Some(now);
            next.last_notified_at = Some(now);
            next.notifications += 1;
            next.updated_at = now;
            let mut resolved = next.clone();
            resolved.summary = format!(
                "Resolved: firing since {}. Last seen: {}",
                since_text(a.fired_at),
                a.summary
            );
            let audit = vec![audit_row(&resolved, "alert_resolved", now)];
            let notes = vec![notice(&resolved, "resolved", now)];
            let change = AlertChange::Update {
                alert: next,
                revision: a.revision,
            };
            Some((change, audit, notes, Some("resolved")))
        }
        (Step::Discard, Some(a), None) => Some((
            AlertChange::Delete {
                id: a.id,
                revision: a.revision,
            },
            Vec::new(),
            Vec::new(),
            None,
        )),
        _ => None,
    }
}

/// `database_unhealthy`, kept in memory: consecutive failed checks, and the
/// episode while the database cannot hold it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DatabaseAlert {
    pub failures: u32,
    pub first_failed_at: Option<DateTime<Utc>>,
    /// Set when the failures reached the threshold: the alert fired.
    pub fired_at: Option<DateTime<Utc>>,
    pub last_reason: Option<String>,
}

/// What a check did to [`DatabaseAlert`].
#[derive(Debug, Clone, PartialEq)]
pub enum DatabaseStep {
    Nothing,
    /// The threshold was reached now: log CRITICAL.
    Fired,
    /// The database answers after the alert fired: the episode to write.
    Recovered(Box<Alert>),
}

impl DatabaseAlert {
    pub fn is_firing(&self) -> bool {
        self.fired_at.is_some()
    }

    /// Books one check at `now`.
    pub fn check(
        &mut self,
        result: &Result<Duration, String>,
        now: DateTime<Utc>,
        threshold: u32,
    ) -> DatabaseStep {
        match result {
            Err(reason) => {
                self.failures = self.failures.saturating_add(1);
                self.first_failed_at.get_or_insert(now);
                self.last_reason = Some(reason.clone());
                if self.failures >= threshold.max(1) && self.fired_at.is_none() {
                    self.fired_at = Some(now);
                    return DatabaseStep::Fired;
                }
                DatabaseStep::Nothing
            }
            Ok(_) => match (self.fired_at, self.first_failed_at) {
                (Some(fired_at), Some(since)) => {
                    DatabaseStep::Recovered(Box::new(self.episode(since, fired_at, now, threshold)))
                }
                _ => {
                    *self = Self::default();
                    DatabaseStep::Nothing
                }
            },
        }
    }

    /// The resolved episode, with the notices it stands for.
    fn episode(
        &self,
        since: DateTime<Utc>,
        fired_at: DateTime<Utc>,
        now: DateTime<Utc>,
        threshold: u32,
    ) -> Alert {
        let rule = Rule::DatabaseUnhealthy;
        Alert {
            id: 0,
            rule: rule.as_str().to_owned(),
            scope: String::new(),
            tenant_id: None,
            severity: rule.severity().to_owned(),
            channel: rule.channel().to_owned(),
            state: AlertState::Resolved,
            since,
            fired_at: Some(fired_at),
            last_notified_at: Some(now),
            notifications: 2,
            value: f64::from(self.failures),
            threshold: f64::from(threshold),
            summary: format!(
                "the database did not answer {} check(s) in a row from {} to {} ({})",
                self.failures,
                since_text(Some(since)),
                since_text(Some(now)),
                self.last_reason.as_deref().unwrap_or("no answer")
            ),
            resolved_at: Some(now),
            updated_at: now,
            revision: 0,
        }
    }

    /// The writes of a recovery: the episode, both transitions' audit rows
    /// and both notices (the firing one could not be queued while the
    /// outbox's database was away; it says so).
    pub fn recovery(episode: &Alert, now: DateTime<Utc>) -> (Vec<AuditEvent>, Vec<Notification>) {
        let mut fired = episode.clone();
        fired.summary = format!(
            "{} — this notice waited for the database to come back (the outbox lives in it)",
            episode.summary
        );
        let audit = vec![
            audit_row(&fired, "alert_fired", now),
            audit_row(episode, "alert_resolved", now),
        ];
        let notes = vec![
            notice(&fired, "fired", now),
            notice(episode, "resolved", now),
        ];
        (audit, notes)
    }
}
