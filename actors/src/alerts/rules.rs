//! The rules: their thresholds and windows, what the store counts for
//! them, and which (rule, scope) pairs breach.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

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

pub(super) fn delta(d: Duration) -> TimeDelta {
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
