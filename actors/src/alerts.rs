//! The alert rules and the AlertActor: every `ALERT_EVAL_INTERVAL` the rules
//! are evaluated over recent data (audit trail, workflow tasks, agent runs,
//! a database check), and each (rule, scope) moves through
//! `pending → firing → resolved` with its state in the database.
//!
//! The arithmetic is plain data: [`Thresholds`] turns what the store counted
//! into a [`Breach`] or nothing, and [`decide`] turns the current episode and
//! the breach into a [`Step`], both unit-tested with explicit times. The
//! actor only times, reads, applies and reports. Every step that pages is one
//! call to [`AlertStore::apply`], which writes the episode, its outbox row and
//! its audit row in one transaction, conditional on the episode's `revision`:
//! a restart re-reads the state and neither pages early nor forgets to send
//! the resolved notice, and two replicas never page twice.
//!
//! `database_unhealthy` is the exception, because its state cannot be written
//! to a database that is down: it lives in memory (a CRITICAL log line, the
//! `alerts_firing` gauge and `/health` say so at once), and the episode —
//! its firing and resolved notices — is written when the database answers
//! again. A process that restarts while the database is down forgets it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use crate::Clock;
use crate::audit::{AuditEvent, Auditor, CommittedEvent};
use crate::db_watch::DatabaseProbe;
use crate::notify::{Notification, NotificationEvent};
use crate::supervisor::{ActorHandle, Child, RestartPolicy, Supervisor};

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'static>>;

/// The rules. `as_str` is the stable name in the table, metrics, audit rows
/// and notices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    HighErrorRate,
    MediaBuyFailures,
    AuthFailureSpike,
    PendingApprovals,
    DatabaseUnhealthy,
    AgentSlow,
    AgentSuccessRate,
}

impl Rule {
    pub const ALL: [Rule; 7] = [
        Rule::HighErrorRate,
        Rule::MediaBuyFailures,
        Rule::AuthFailureSpike,
        Rule::PendingApprovals,
        Rule::DatabaseUnhealthy,
        Rule::AgentSlow,
        Rule::AgentSuccessRate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::HighErrorRate => "high_error_rate",
            Rule::MediaBuyFailures => "media_buy_failures",
            Rule::AuthFailureSpike => "auth_failure_spike",
            Rule::PendingApprovals => "pending_approvals",
            Rule::DatabaseUnhealthy => "database_unhealthy",
            Rule::AgentSlow => "agent_slow",
            Rule::AgentSuccessRate => "agent_success_rate",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn severity(self) -> &'static str {
        match self {
            Rule::HighErrorRate | Rule::MediaBuyFailures | Rule::AuthFailureSpike => "high",
            Rule::PendingApprovals => "medium",
            Rule::DatabaseUnhealthy | Rule::AgentSlow => "critical",
            Rule::AgentSuccessRate => "warning",
        }
    }

    /// The Slack webhook it pages (`general`, `audit` or `hitl`). The agent
    /// rules are operations news, like the error rates: general.
    pub fn channel(self) -> &'static str {
        match self {
            Rule::AuthFailureSpike | Rule::DatabaseUnhealthy => "audit",
            Rule::PendingApprovals => "hitl",
            Rule::HighErrorRate
            | Rule::MediaBuyFailures
            | Rule::AgentSlow
            | Rule::AgentSuccessRate => "general",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The scope of per-agent rules: `agent:<name>`.
pub fn agent_scope(agent: &str) -> String {
    format!("agent:{agent}")
}

/// Thresholds and windows (the `ALERT_*` settings). A time counts in a
/// window while its age is strictly less than the window.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertConfig {
    /// `ALERT_EVAL_INTERVAL` (30 s); `None` runs no timer (`SKIP_CRON`).
    pub interval: Option<Duration>,
    /// `ALERT_REPEAT_INTERVAL` (4 h): a firing alert pages again this long
    /// after its last notice.
    pub repeat_interval: Duration,
    /// `ALERT_PENDING_FOR` (0): how long a condition must hold before it
    /// fires; meanwhile the alert is `pending` and pages no one.
    pub pending_for: Duration,
    /// `high_error_rate`: more than this percentage of audited operations
    /// failed (`ALERT_ERROR_RATE_PERCENT`, 5)...
    pub error_rate_percent: f64,
    /// ...out of at least this many (`ALERT_ERROR_RATE_MIN_OPERATIONS`, 20)...
    pub error_rate_min_operations: u64,
    /// ...within this window; also `media_buy_failures`' window
    /// (`ALERT_ERROR_RATE_WINDOW`, 15 min).
    pub operations_window: Duration,
    /// `media_buy_failures`: at least this many failed `create_media_buy`
    /// (`ALERT_MEDIA_BUY_FAILURES`, 5).
    pub media_buy_failures: u64,
    /// `auth_failure_spike`: more than this many auth failures
    /// (`ALERT_AUTH_FAILURES`, 10)...
    pub auth_failures: u64,
    /// ...within this window (`ALERT_AUTH_FAILURE_WINDOW`, 5 min).
    pub auth_window: Duration,
    /// `pending_approvals`: a task pending longer than this
    /// (`ALERT_APPROVAL_MAX_AGE`, 24 h).
    pub approval_max_age: Duration,
    /// `database_unhealthy`: this many failed checks in a row (2).
    pub database_failures: u32,
    /// `agent_slow`: a run longer than this (`ALERT_AGENT_SLOW_AFTER`, 5 min),
    /// running now or finished within `agent_slow_window` (15 min).
    pub agent_slow_after: Duration,
    pub agent_slow_window: Duration,
    /// `agent_success_rate`: fewer than this percentage succeeded
    /// (`ALERT_AGENT_SUCCESS_PERCENT`, 95) of at least
    /// `agent_min_runs` (10) runs finished within `agent_window` (1 h).
    pub agent_success_percent: f64,
    pub agent_min_runs: u64,
    pub agent_window: Duration,
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self {
            interval: Some(Duration::from_secs(30)),
            repeat_interval: Duration::from_secs(4 * 3_600),
            pending_for: Duration::ZERO,
            error_rate_percent: 5.0,
            error_rate_min_operations: 20,
            operations_window: Duration::from_secs(15 * 60),
            media_buy_failures: 5,
            auth_failures: 10,
            auth_window: Duration::from_secs(5 * 60),
            approval_max_age: Duration::from_secs(24 * 3_600),
            database_failures: 2,
            agent_slow_after: Duration::from_secs(5 * 60),
            agent_slow_window: Duration::from_secs(15 * 60),
            agent_success_percent: 95.0,
            agent_min_runs: 10,
            agent_window: Duration::from_secs(3_600),
        }
    }
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// What the store is asked to count, as absolute times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub now: DateTime<Utc>,
    /// Audit rows with `created_at > operations_since` (and `<= now`).
    pub operations_since: DateTime<Utc>,
    pub auth_since: DateTime<Utc>,
    /// Workflow tasks pending with `created_at < approvals_before`.
    pub approvals_before: DateTime<Utc>,
    /// Runs still running that started before this...
    pub slow_started_before: DateTime<Utc>,
    /// ...or finished after this with a duration above `slow_ms`.
    pub slow_finished_since: DateTime<Utc>,
    pub slow_ms: i64,
    /// Runs finished after this count for the success rate.
    pub agent_since: DateTime<Utc>,
}

impl AlertConfig {
    pub fn windows(&self, now: DateTime<Utc>) -> Windows {
        Windows {
            now,
            operations_since: now - delta(self.operations_window),
            auth_since: now - delta(self.auth_window),
            approvals_before: now - delta(self.approval_max_age),
            slow_started_before: now - delta(self.agent_slow_after),
            slow_finished_since: now - delta(self.agent_slow_window),
            slow_ms: i64::try_from(self.agent_slow_after.as_millis()).unwrap_or(i64::MAX),
            agent_since: now - delta(self.agent_window),
        }
    }
}

/// A count in one scope: `count` of `total` (rules that need no total
/// leave it equal to `count`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Tenant id ('' for tenant-less rows), or agent name.
    pub key: String,
    pub count: u64,
    pub total: u64,
}

impl Tally {
    pub fn new(key: impl Into<String>, count: u64, total: u64) -> Self {
        Self {
            key: key.into(),
            count,
            total,
        }
    }
}

/// An agent's runs longer than the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlowRuns {
    pub agent: String,
    pub runs: u64,
    pub longest_ms: i64,
    /// One of them, for the notice.
    pub run_id: String,
}

/// What the store counted; each rule's reading fails on its own.
#[derive(Debug, Clone, Default)]
pub struct Readings {
    /// Per tenant: failed (`count`) of audited operations (`total`).
    pub operations: Option<Result<Vec<Tally>, String>>,
    /// Per tenant: failed `create_media_buy`.
    pub media_buy_failures: Option<Result<Vec<Tally>, String>>,
    /// Per tenant ('' = no tenant): `token_rejected`, `token_expired`,
    /// `sso_login_failed`.
    pub auth_failures: Option<Result<Vec<Tally>, String>>,
    /// Per tenant: tasks pending since before `approvals_before`.
    pub pending_approvals: Option<Result<Vec<Tally>, String>>,
    pub slow_runs: Option<Result<Vec<SlowRuns>, String>>,
    /// Per agent: succeeded (`count`) of finished runs (`total`).
    pub agent_runs: Option<Result<Vec<Tally>, String>>,
}

/// A rule's condition holds in a scope.
#[derive(Debug, Clone, PartialEq)]
pub struct Breach {
    pub rule: Rule,
    pub scope: String,
    /// Whose admins see it and whose webhooks it pages; `None`: service-wide.
    pub tenant_id: Option<String>,
    pub value: f64,
    pub threshold: f64,
    pub summary: String,
}

fn minutes(d: Duration) -> String {
    let secs = d.as_secs();
    if secs.is_multiple_of(3_600) && secs >= 3_600 {
        format!("{} h", secs / 3_600)
    } else if secs.is_multiple_of(60) {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        // Rounded to 0.01 for display; the comparisons use whole numbers.
        (part as f64 * 10_000.0 / whole as f64).round() / 100.0
    }
}

fn tenant_scope(key: &str) -> (String, Option<String>) {
    (key.to_owned(), (!key.is_empty()).then(|| key.to_owned()))
}

impl AlertConfig {
    /// `high_error_rate`: strictly more than the percentage, of at least the
    /// minimum number of operations (19 never fire).
    pub fn error_rate(&self, t: &Tally) -> Option<Breach> {
        let over = t.count as f64 * 100.0 > self.error_rate_percent * t.total as f64;
        (t.total >= self.error_rate_min_operations && over).then(|| {
            let (scope, tenant_id) = tenant_scope(&t.key);
            Breach {
                rule: Rule::HighErrorRate,
                scope,
                tenant_id,
                value: percent(t.count, t.total),
                threshold: self.error_rate_percent,
                summary: format!(
                    "{}% of operations failed in the last {} ({} of {}; threshold {}%)",
                    percent(t.count, t.total),
                    minutes(self.operations_window),
                    t.count,
                    t.total,
                    self.error_rate_percent
                ),
            }
        })
    }

    /// `media_buy_failures`: at least the threshold.
    pub fn media_buy_failures(&self, t: &Tally) -> Option<Breach> {
        (t.count >= self.media_buy_failures).then(|| {
            let (scope, tenant_id) = tenant_scope(&t.key);
            Breach {
                rule: Rule::MediaBuyFailures,
                scope,
                tenant_id,
                value: t.count as f64,
                threshold: self.media_buy_failures as f64,
                summary: format!(
                    "{} create_media_buy failures in the last {} (threshold: {} or more)",
                    t.count,
                    minutes(self.operations_window),
                    self.media_buy_failures
                ),
            }
        })
    }

    /// `auth_failure_spike`: strictly more than the threshold.
    pub fn auth_failures(&self, t: &Tally) -> Option<Breach> {
        (t.count > self.auth_failures).then(|| {
            let (scope, tenant_id) = tenant_scope(&t.key);
            let whose = if t.key.is_empty() {
                "without a tenant".to_owned()
            } else {
                format!("in tenant {}", t.key)
            };
            Breach {
                rule: Rule::AuthFailureSpike,
                scope,
                tenant_id,
                value: t.count as f64,
                threshold: self.auth_failures as f64,
                summary: format!(
                    "{} failed authentications {whose} in the last {} (threshold: more than {})",
                    t.count,
                    minutes(self.auth_window),
                    self.auth_failures
                ),
            }
        })
    }

    /// `pending_approvals`: any task pending longer than the maximum age.
    pub fn pending_approvals(&self, t: &Tally) -> Option<Breach> {
        (t.count > 0).then(|| {
            let (scope, tenant_id) = tenant_scope(&t.key);
            Breach {
                rule: Rule::PendingApprovals,
                scope,
                tenant_id,
                value: t.count as f64,
                threshold: 0.0,
                summary: format!(
                    "{} approval(s) pending for more than {}",
                    t.count,
                    minutes(self.approval_max_age)
                ),
            }
        })
    }

    /// `agent_slow`: the store only returns agents with slow runs.
    pub fn agent_slow(&self, s: &SlowRuns) -> Option<Breach> {
        (s.runs > 0).then(|| Breach {
            rule: Rule::AgentSlow,
            scope: agent_scope(&s.agent),
            tenant_id: None,
            value: s.longest_ms as f64 / 60_000.0,
            threshold: self.agent_slow_after.as_secs_f64() / 60.0,
            summary: format!(
                "agent {}: {} run(s) longer than {} (longest {:.1} min, e.g. run {})",
                s.agent,
                s.runs,
                minutes(self.agent_slow_after),
                s.longest_ms as f64 / 60_000.0,
                s.run_id
            ),
        })
    }

    /// `agent_success_rate`: strictly fewer than the percentage succeeded, of
    /// at least the minimum number of finished runs.
    pub fn agent_success(&self, t: &Tally) -> Option<Breach> {
        let under = (t.count as f64 * 100.0) < self.agent_success_percent * t.total as f64;
        (t.total >= self.agent_min_runs && under).then(|| Breach {
            rule: Rule::AgentSuccessRate,
            scope: agent_scope(&t.key),
            tenant_id: None,
            value: percent(t.count, t.total),
            threshold: self.agent_success_percent,
            summary: format!(
                "agent {}: {}% of {} runs succeeded in the last {} (threshold {}%)",
                t.key,
                percent(t.count, t.total),
                t.total,
                minutes(self.agent_window),
                self.agent_success_percent
            ),
        })
    }

    /// Every breach in `readings`, and the rules whose reading failed (their
    /// alerts are left as they are: unknown is not resolved).
    pub fn breaches(&self, readings: &Readings) -> (Vec<Breach>, Vec<(Rule, String)>) {
        let mut breaches = Vec::new();
        let mut failed = Vec::new();
        let mut tallies = |rule: Rule,
                           reading: &Option<Result<Vec<Tally>, String>>,
                           check: &dyn Fn(&Tally) -> Option<Breach>| {
            match reading {
                Some(Ok(rows)) => breaches.extend(rows.iter().filter_map(check)),
                Some(Err(reason)) => failed.push((rule, reason.clone())),
                None => failed.push((rule, "not read".to_owned())),
            }
        };
        tallies(Rule::HighErrorRate, &readings.operations, &|t| {
            self.error_rate(t)
        });
        tallies(Rule::MediaBuyFailures, &readings.media_buy_failures, &|t| {
            self.media_buy_failures(t)
        });
        tallies(Rule::AuthFailureSpike, &readings.auth_failures, &|t| {
            self.auth_failures(t)
        });
        tallies(Rule::PendingApprovals, &readings.pending_approvals, &|t| {
            self.pending_approvals(t)
        });
        tallies(Rule::AgentSuccessRate, &readings.agent_runs, &|t| {
            self.agent_success(t)
        });
        match &readings.slow_runs {
            Some(Ok(rows)) => breaches.extend(rows.iter().filter_map(|s| self.agent_slow(s))),
            Some(Err(reason)) => failed.push((Rule::AgentSlow, reason.clone())),
            None => failed.push((Rule::AgentSlow, "not read".to_owned())),
        }
        (breaches, failed)
    }
}

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

/// A write to the `alerts` table. Every variant but `Insert` applies only if
/// the episode's revision is still `revision`.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertChange {
    /// A new episode (refused if the (rule, scope) has an unresolved one).
    Insert(Alert),
    /// The episode's new state (any of its fields), `revision + 1`.
    Update { alert: Alert, revision: i64 },
    /// A pending episode that never fired.
    Delete { id: i64, revision: i64 },
}

/// The port: the `alerts` table, and what the rules count.
pub trait AlertStore: Send + Sync + 'static {
    /// Counts for every rule at `windows`.
    fn read(&self, windows: Windows) -> BoxFuture<Readings>;

    /// Unresolved episodes.
    fn current(&self) -> BoxFuture<Vec<Alert>>;

    /// Applies `change` with its audit rows and notices in one transaction;
    /// `None` when the episode changed meanwhile (another replica), in which
    /// case nothing was written.
    fn apply(
        &self,
        change: AlertChange,
        audit: Vec<AuditEvent>,
        notifications: Vec<Notification>,
    ) -> BoxFuture<Option<Vec<CommittedEvent>>>;
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

/// `/health` `components.alerts`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AlertsStatus {
    /// `false` with `SKIP_CRON=true` (evaluations on demand only).
    pub enabled: bool,
    pub firing: u64,
    pub pending: u64,
    pub last_evaluation_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// What one evaluation did (`POST /admin/alerts/run`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EvaluationReport {
    /// `{rule, scope, kind}` of each notice queued: `fired`, `reminder`, `resolved`.
    pub notified: Vec<Notified>,
    pub firing: u64,
    pub pending: u64,
    /// Rules that could not be evaluated, with why (their alerts stay as they were).
    pub errors: Vec<RuleError>,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notified {
    pub rule: String,
    pub scope: String,
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleError {
    pub rule: String,
    pub reason: String,
}

struct Shared {
    config: AlertConfig,
    store: Arc<dyn AlertStore>,
    probe: Arc<dyn DatabaseProbe>,
    auditor: Auditor,
    clock: Arc<dyn Clock>,
    /// Outside the actor: a restart of the actor keeps the in-memory
    /// `database_unhealthy` episode.
    database: Mutex<DatabaseAlert>,
    status: Mutex<AlertsStatus>,
    /// Each evaluation is recorded as a run of the agent `alerts`.
    recorder: Arc<dyn crate::agent_run::RunRecorder>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// One evaluation at the clock's now.
    async fn evaluate(self: Arc<Self>) -> EvaluationReport {
        let started = Instant::now();
        let now = self.clock.now();
        let ticket = crate::agent_run::begin(
            &self.recorder,
            crate::agent_run::RunStart::cycle("alerts", "evaluate the alert rules", now),
        );
        let mut report = EvaluationReport::default();
        let outcome = self.evaluate_at(now, &mut report).await;
        report.duration_ms = started.elapsed().as_millis() as u64;
        let artifacts = serde_json::to_value(&report).ok();
        // Awaited: the next evaluation reads `agent_runs`, and must not see
        // this one still `running` (it would look slow after a long pause).
        let end = match (&outcome, report.errors.first()) {
            (Ok(()), None) => {
                crate::agent_run::RunEnd::succeeded(artifacts, Some(report.duration_ms))
            }
            (Err(reason), _) => {
                crate::agent_run::RunEnd::failed(reason, artifacts, Some(report.duration_ms))
            }
            (Ok(()), Some(e)) => {
                crate::agent_run::RunEnd::failed(&e.reason, artifacts, Some(report.duration_ms))
            }
        };
        ticket.finish_recorded(end).await;
        let result = if outcome.is_ok() && report.errors.is_empty() {
            "ok"
        } else {
            "error"
        };
        metrics::counter!("alert_evaluations_total", "result" => result).increment(1);
        let mut status = lock(&self.status);
        status.last_evaluation_at = Some(now);
        status.last_error = outcome
            .err()
            .or_else(|| report.errors.first().map(|e| e.reason.clone()));
        if let Some(reason) = &status.last_error {
            tracing::warn!(%reason, "alert evaluation incomplete");
        }
        status.firing = report.firing;
        status.pending = report.pending;
        report
    }

    async fn evaluate_at(
        &self,
        now: DateTime<Utc>,
        report: &mut EvaluationReport,
    ) -> Result<(), String> {
        let ping = self.probe.ping().await;
        let step = lock(&self.database).check(&ping, now, self.config.database_failures);
        match step {
            DatabaseStep::Fired => {
                let db = lock(&self.database).clone();
                tracing::error!(
                    critical = true,
                    alert = Rule::DatabaseUnhealthy.as_str(),
                    severity = "critical",
                    failed_checks = db.failures,
                    reason = db.last_reason.as_deref().unwrap_or_default(),
                    "ALERT database_unhealthy: the database check failed {} times in a row; \
                     the Slack notice is queued when the database is back",
                    db.failures
                );
            }
            DatabaseStep::Recovered(episode) => {
                let (audit, notes) = DatabaseAlert::recovery(&episode, now);
                match self
                    .store
                    .apply(AlertChange::Insert(*episode), audit, notes)
                    .await
                {
                    Ok(committed) => {
                        tracing::info!(
                            alert = Rule::DatabaseUnhealthy.as_str(),
                            "ALERT database_unhealthy resolved: the database answers again"
                        );
                        *lock(&self.database) = DatabaseAlert::default();
                        for kind in ["fired", "resolved"] {
                            self.count_notice(Rule::DatabaseUnhealthy.as_str(), "", kind, report);
                        }
                        self.auditor.committed(committed.unwrap_or_default());
                    }
                    // Kept in memory; the next evaluation tries again.
                    Err(reason) => {
                        return Err(format!("database_unhealthy not recorded: {reason}"));
                    }
                }
            }
            DatabaseStep::Nothing => {}
        }
        let database_firing = lock(&self.database).is_firing();
        if let Err(reason) = ping {
            // The other rules' alerts cannot be read: their gauges keep
            // their last values, and the report counts what is known.
            let rule = Rule::DatabaseUnhealthy;
            metrics::gauge!("alerts_firing", "rule" => rule.as_str(), "severity" => rule.severity())
                .set(f64::from(u8::from(database_firing)));
            report.firing = u64::from(database_firing);
            return Err(format!("database check failed: {reason}"));
        }

        let readings = self.store.read(self.config.windows(now)).await?;
        let current = self.store.current().await?;
        let (breaches, failed) = self.config.breaches(&readings);
        let skipped: Vec<&str> = failed.iter().map(|(r, _)| r.as_str()).collect();
        report.errors = failed
            .iter()
            .map(|(rule, reason)| RuleError {
                rule: rule.as_str().to_owned(),
                reason: reason.clone(),
            })
            .collect();

        // Every (rule, scope) that has an episode or a breach.
        let mut keys: Vec<(String, String)> = current
            .iter()
            .map(|a| (a.rule.clone(), a.scope.clone()))
            .chain(
                breaches
                    .iter()
                    .map(|b| (b.rule.as_str().to_owned(), b.scope.clone())),
            )
            .collect();
        keys.sort();
        keys.dedup();
        for (rule, scope) in keys {
            if skipped.contains(&rule.as_str()) || rule == Rule::DatabaseUnhealthy.as_str() {
                continue;
            }
            let alert = current.iter().find(|a| a.rule == rule && a.scope == scope);
            let breach = breaches
                .iter()
                .find(|b| b.rule.as_str() == rule && b.scope == scope);
            let step = decide(alert, breach, now, &self.config);
            let Some((change, audit, notes, kind)) = plan(step, alert, breach, now) else {
                continue;
            };
            match self.store.apply(change, audit, notes).await {
                Ok(Some(committed)) => {
                    if let Some(kind) = kind {
                        self.count_notice(&rule, &scope, kind, report);
                        tracing::warn!(
                            alert = %rule,
                            scope = %scope,
                            kind,
                            severity = Rule::parse(&rule).map_or("", Rule::severity),
                            "ALERT {rule} {kind}"
                        );
                    }
                    self.auditor.committed(committed);
                }
                Ok(None) => {
                    tracing::debug!(alert = %rule, scope = %scope, "alert changed meanwhile (another replica)");
                }
                Err(reason) => report.errors.push(RuleError { rule, reason }),
            }
        }
        let after = self.store.current().await?;
        self.set_gauges(&after, database_firing, report);
        Ok(())
    }

    fn count_notice(&self, rule: &str, scope: &str, kind: &str, report: &mut EvaluationReport) {
        metrics::counter!("alert_notifications_total", "rule" => rule.to_owned(), "kind" => kind.to_owned())
            .increment(1);
        report.notified.push(Notified {
            rule: rule.to_owned(),
            scope: scope.to_owned(),
            kind: kind.to_owned(),
        });
    }

    fn set_gauges(&self, current: &[Alert], database_firing: bool, report: &mut EvaluationReport) {
        let firing = |rule: Rule| {
            current
                .iter()
                .filter(|a| a.rule == rule.as_str() && a.state == AlertState::Firing)
                .count() as u64
        };
        for rule in Rule::ALL {
            let n = if rule == Rule::DatabaseUnhealthy {
                u64::from(database_firing)
            } else {
                firing(rule)
            };
            metrics::gauge!("alerts_firing", "rule" => rule.as_str(), "severity" => rule.severity())
                .set(n as f64);
        }
        report.firing = current
            .iter()
            .filter(|a| a.state == AlertState::Firing)
            .count() as u64
            + u64::from(database_firing);
        report.pending = current
            .iter()
            .filter(|a| a.state == AlertState::Pending)
            .count() as u64;
    }
}

/// What callers hold: runs an evaluation on demand, reports status.
#[derive(Clone)]
pub struct Alerts {
    shared: Arc<Shared>,
    actor: ActorHandle<AlertActor>,
}

impl fmt::Debug for Alerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Alerts").finish_non_exhaustive()
    }
}

/// What the AlertActor reads and writes through.
pub struct AlertPorts {
    pub store: Arc<dyn AlertStore>,
    pub probe: Arc<dyn DatabaseProbe>,
    /// Each evaluation is recorded as a run of the agent `alerts`.
    pub recorder: Arc<dyn crate::agent_run::RunRecorder>,
}

impl Alerts {
    /// Starts the AlertActor under `supervisor` as `alerts`.
    pub fn start(
        supervisor: &Supervisor,
        policy: RestartPolicy,
        config: AlertConfig,
        ports: AlertPorts,
        auditor: Auditor,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let AlertPorts {
            store,
            probe,
            recorder,
        } = ports;
        let shared = Arc::new(Shared {
            status: Mutex::new(AlertsStatus {
                enabled: config.interval.is_some(),
                ..AlertsStatus::default()
            }),
            config,
            store,
            probe,
            auditor,
            clock,
            database: Mutex::new(DatabaseAlert::default()),
            recorder,
        });
        let for_factory = shared.clone();
        let actor = supervisor.spawn("alerts", policy, move |child| AlertActor {
            child: child.clone(),
            shared: for_factory.clone(),
        });
        Self { shared, actor }
    }

    pub fn status(&self) -> AlertsStatus {
        let mut status = lock(&self.shared.status).clone();
        // The database alert is known at once, whatever the last evaluation saw.
        if lock(&self.shared.database).is_firing() && status.firing == 0 {
            status.firing = 1;
        }
        status
    }

    /// The in-memory `database_unhealthy` state.
    pub fn database(&self) -> DatabaseAlert {
        lock(&self.shared.database).clone()
    }

    /// Evaluates every rule now, through the actor.
    pub async fn run_now(&self) -> Result<EvaluationReport, String> {
        self.actor
            .addr()
            .send(Evaluate)
            .await
            .map_err(|_| "the alert actor is restarting".to_owned())?
    }
}

/// Evaluate every rule now.
#[derive(Debug, Message)]
#[rtype(result = "Result<EvaluationReport, String>")]
pub struct Evaluate;

/// The supervised actor: a timer and a mailbox, one evaluation at a time.
pub struct AlertActor {
    child: Child,
    shared: Arc<Shared>,
}

impl Actor for AlertActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(interval) = self.shared.config.interval {
            ctx.run_interval(interval, |act, ctx| {
                if act.child.trip(ctx) {
                    return;
                }
                let run = act.shared.clone().evaluate();
                ctx.wait(run.into_actor(act).map(|_, _, _| ()));
            });
        }
    }
}

impl Handler<Evaluate> for AlertActor {
    type Result = ResponseActFuture<Self, Result<EvaluationReport, String>>;

    fn handle(&mut self, _: Evaluate, ctx: &mut Context<Self>) -> Self::Result {
        if self.child.trip(ctx) {
            return Box::pin(fut::ready(Err("the alert actor failed".to_owned())));
        }
        // May overlap a timer evaluation; their writes are conditional on
        // each episode's revision, as two replicas' are.
        Box::pin(
            self.shared
                .clone()
                .evaluate()
                .into_actor(self)
                .map(|r, _, _| Ok(r)),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
    }

    fn at(secs: i64) -> DateTime<Utc> {
        t0() + TimeDelta::seconds(secs)
    }

    fn cfg() -> AlertConfig {
        AlertConfig::default()
    }

    #[test]
    fn error_rate_needs_twenty_operations_and_strictly_more_than_five_percent() {
        let c = cfg();
        assert!(
            c.error_rate(&Tally::new("acme", 19, 19)).is_none(),
            "19 never fire"
        );
        assert!(
            c.error_rate(&Tally::new("acme", 1, 20)).is_none(),
            "5% is not > 5%"
        );
        let b = c.error_rate(&Tally::new("acme", 2, 20)).unwrap();
        assert_eq!((b.value, b.threshold), (10.0, 5.0));
        assert_eq!(b.tenant_id.as_deref(), Some("acme"));
        assert!(c.error_rate(&Tally::new("acme", 5, 100)).is_none());
        assert!(c.error_rate(&Tally::new("acme", 6, 100)).is_some());
    }

    #[test]
    fn counts_fire_exactly_at_their_thresholds() {
        let c = cfg();
        assert!(c.auth_failures(&Tally::new("", 10, 10)).is_none(), "> 10");
        let b = c.auth_failures(&Tally::new("", 11, 11)).unwrap();
        assert_eq!((b.scope.as_str(), b.tenant_id.clone()), ("", None));
        assert!(c.media_buy_failures(&Tally::new("t", 4, 4)).is_none());
        assert!(
            c.media_buy_failures(&Tally::new("t", 5, 5)).is_some(),
            ">= 5"
        );
        assert!(c.pending_approvals(&Tally::new("t", 0, 0)).is_none());
        assert!(c.pending_approvals(&Tally::new("t", 1, 1)).is_some());
    }

    #[test]
    fn agent_rules_fire_below_ninety_five_percent_of_ten_runs_and_on_any_slow_run() {
        let c = cfg();
        assert!(c.agent_success(&Tally::new("a", 0, 9)).is_none(), "9 runs");
        assert!(
            c.agent_success(&Tally::new("a", 19, 20)).is_none(),
            "95% is not < 95%"
        );
        let b = c.agent_success(&Tally::new("a", 9, 10)).unwrap();
        assert_eq!((b.scope.as_str(), b.value), ("agent:a", 90.0));
        let slow = SlowRuns {
            agent: "a".into(),
            runs: 1,
            longest_ms: 360_000,
            run_id: "r1".into(),
        };
        let b = c.agent_slow(&slow).unwrap();
        assert_eq!((b.value, b.threshold), (6.0, 5.0));
        let w = c.windows(t0());
        assert_eq!(w.slow_ms, 300_000);
        assert_eq!(w.auth_since, at(-300));
    }

    fn breach(value: f64) -> Breach {
        cfg()
            .auth_failures(&Tally::new("acme", value as u64, value as u64))
            .unwrap()
    }

    #[test]
    fn an_alert_fires_reminds_after_the_repeat_interval_and_resolves_once() {
        let c = cfg();
        let b = breach(11.0);
        assert_eq!(decide(None, None, t0(), &c), Step::Nothing);
        assert_eq!(decide(None, Some(&b), t0(), &c), Step::OpenFiring);
        let (change, audit, notes, kind) = plan(Step::OpenFiring, None, Some(&b), t0()).unwrap();
        let AlertChange::Insert(mut alert) = change else {
            panic!("an insert")
        };
        assert_eq!(kind, Some("fired"));
        assert_eq!(audit[0].operation, "alert_fired");
        assert_eq!(notes[0].event.kind(), "alert_firing");
        alert.id = 1;

        // Same value: nothing until the repeat interval, then a reminder.
        let four_hours = 4 * 3_600;
        assert_eq!(
            decide(Some(&alert), Some(&b), at(four_hours - 1), &c),
            Step::Nothing
        );
        assert_eq!(
            decide(Some(&alert), Some(&b), at(four_hours), &c),
            Step::Remind
        );
        let (change, audit, notes, _) =
            plan(Step::Remind, Some(&alert), Some(&b), at(four_hours)).unwrap();
        assert!(audit.is_empty());
        assert!(matches!(
            &notes[0].event,
            NotificationEvent::AlertFiring { reminder: true, summary, .. } if summary.starts_with("Reminder")
        ));
        let AlertChange::Update {
            alert: reminded,
            revision,
        } = change
        else {
            panic!("an update")
        };
        assert_eq!(revision, alert.revision);
        assert_eq!(reminded.last_notified_at, Some(at(four_hours)));

        // A changed value refreshes without paging.
        assert_eq!(
            decide(
                Some(&reminded),
                Some(&breach(12.0)),
                at(four_hours + 30),
                &c
            ),
            Step::Refresh
        );

        // Cleared: one resolved notice.
        assert_eq!(
            decide(Some(&reminded), None, at(four_hours + 60), &c),
            Step::Resolve
        );
        let (change, audit, notes, kind) =
            plan(Step::Resolve, Some(&reminded), None, at(four_hours + 60)).unwrap();
        assert_eq!(kind, Some("resolved"));
        assert_eq!(audit[0].operation, "alert_resolved");
        assert_eq!(notes[0].event.kind(), "alert_resolved");
        let AlertChange::Update {
            alert: resolved, ..
        } = change
        else {
            panic!("an update")
        };
        assert_eq!(resolved.state, AlertState::Resolved);
        assert_eq!(decide(None, None, at(four_hours + 90), &c), Step::Nothing);
    }

    #[test]
    fn a_pending_alert_fires_after_pending_for_and_is_discarded_if_it_clears() {
        let c = AlertConfig {
            pending_for: Duration::from_secs(60),
            ..cfg()
        };
        let b = breach(11.0);
        assert_eq!(decide(None, Some(&b), t0(), &c), Step::OpenPending);
        let (change, audit, notes, _) = plan(Step::OpenPending, None, Some(&b), t0()).unwrap();
        assert!(audit.is_empty() && notes.is_empty(), "pending pages no one");
        let AlertChange::Insert(alert) = change else {
            panic!("an insert")
        };
        assert_eq!(alert.state, AlertState::Pending);
        assert_eq!(decide(Some(&alert), Some(&b), at(59), &c), Step::Nothing);
        assert_eq!(decide(Some(&alert), Some(&b), at(60), &c), Step::Fire);
        assert_eq!(decide(Some(&alert), None, at(30), &c), Step::Discard);
    }

    #[test]
    fn the_database_alert_fires_on_the_second_failed_check_and_is_recorded_on_recovery() {
        let mut db = DatabaseAlert::default();
        let down: Result<Duration, String> = Err("connection refused".into());
        let up: Result<Duration, String> = Ok(Duration::from_millis(1));
        assert_eq!(db.check(&down, at(0), 2), DatabaseStep::Nothing);
        assert_eq!(
            db.check(&up, at(30), 2),
            DatabaseStep::Nothing,
            "one failure is not two in a row"
        );
        assert_eq!(db, DatabaseAlert::default());
        assert_eq!(db.check(&down, at(60), 2), DatabaseStep::Nothing);
        assert_eq!(db.check(&down, at(90), 2), DatabaseStep::Fired);
        assert_eq!(
            db.check(&down, at(120), 2),
            DatabaseStep::Nothing,
            "fires once"
        );
        let DatabaseStep::Recovered(episode) = db.check(&up, at(150), 2) else {
            panic!("recovered")
        };
        assert_eq!(episode.since, at(60));
        assert_eq!(episode.fired_at, Some(at(90)));
        assert_eq!(episode.resolved_at, Some(at(150)));
        let (audit, notes) = DatabaseAlert::recovery(&episode, at(150));
        assert_eq!(audit.len(), 2);
        assert_eq!(
            notes.iter().map(|n| n.event.kind()).collect::<Vec<_>>(),
            ["alert_firing", "alert_resolved"]
        );
        assert!(notes.iter().all(|n| n.tenant_id.is_none()));
    }
}
