//! The restart policy, as plain data and arithmetic: no actors, no sleeping.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Whether a child that stops on its own (not by panic or error) is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartType {
    /// Always restarted (OTP `permanent`): a long-lived service actor.
    Permanent,
    /// Restarted only after a failure; a clean stop is final (OTP `transient`).
    Transient,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartPolicy {
    pub restart: RestartType,
    /// Intensity: at most this many restarts...
    pub max_restarts: u32,
    /// ...within this window; one more escalates (the child is marked down).
    pub within: Duration,
    /// Backoff before the first restart in a window, doubled for each further one.
    pub backoff_initial: Duration,
    /// Backoff ceiling; also the retry interval of an escalated child.
    pub backoff_max: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            restart: RestartType::Permanent,
            max_restarts: 5,
            within: Duration::from_secs(30),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Restarts of this child since it was first started.
    pub restart_count: u64,
    /// How long to wait before starting the next instance.
    pub backoff: Duration,
    /// True while the intensity is exceeded: the child is `down`.
    pub escalated: bool,
    /// True on the failure that crossed the limit (log it as critical once).
    pub newly_escalated: bool,
}

/// The restart history of one child.
#[derive(Debug, Clone)]
pub struct RestartTracker {
    policy: RestartPolicy,
    recent: VecDeque<DateTime<Utc>>,
    total: u64,
    escalated: bool,
}

impl RestartTracker {
    pub fn new(policy: RestartPolicy) -> Self {
        Self {
            policy,
            recent: VecDeque::new(),
            total: 0,
            escalated: false,
        }
    }

    pub fn policy(&self) -> &RestartPolicy {
        &self.policy
    }

    /// Records a failure at `now` and decides the backoff. `jitter` in `[0, 1]`
    /// picks a point of the "equal jitter" range `[nominal / 2, nominal]`, so
    /// restarts of many children spread out while each next backoff is never
    /// shorter than the previous one's range.
    pub fn on_failure(&mut self, now: DateTime<Utc>, jitter: f64) -> Decision {
        self.total += 1;
        let window =
            chrono::Duration::from_std(self.policy.within).unwrap_or(chrono::Duration::MAX);
        while self
            .recent
            .front()
            .is_some_and(|&at| now.signed_duration_since(at) >= window)
        {
            self.recent.pop_front();
        }
        self.recent.push_back(now);

        let in_window = u32::try_from(self.recent.len()).unwrap_or(u32::MAX);
        let exceeded = in_window > self.policy.max_restarts;
        let backoff = if exceeded {
            self.policy.backoff_max
        } else {
            let doublings = in_window.saturating_sub(1).min(31);
            let nominal = self
                .policy
                .backoff_initial
                .saturating_mul(1u32 << doublings)
                .min(self.policy.backoff_max);
            nominal.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
        };
        let newly_escalated = exceeded && !self.escalated;
        self.escalated = exceeded;
        Decision {
            restart_count: self.total,
            backoff,
            escalated: exceeded,
            newly_escalated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
    }

    fn at(ms: i64) -> DateTime<Utc> {
        t0() + chrono::Duration::milliseconds(ms)
    }

    #[test]
    fn backoff_doubles_from_the_initial_value_up_to_the_cap() {
        let mut tracker = RestartTracker::new(RestartPolicy {
            max_restarts: 100,
            within: Duration::from_secs(3_600),
            ..RestartPolicy::default()
        });
        let backoffs: Vec<u64> = (0..12)
            .map(|i| tracker.on_failure(at(i), 1.0).backoff.as_millis() as u64)
            .collect();
        assert_eq!(
            backoffs,
            [
                100, 200, 400, 800, 1_600, 3_200, 6_400, 12_800, 25_600, 30_000, 30_000, 30_000
            ]
        );
    }

    #[test]
    fn jitter_keeps_each_backoff_within_half_to_all_of_its_nominal_value() {
        let mut low = RestartTracker::new(RestartPolicy::default());
        let mut high = RestartTracker::new(RestartPolicy::default());
        for i in 0..5 {
            let lo = low.on_failure(at(i), 0.0).backoff;
            let hi = high.on_failure(at(i), 1.0).backoff;
            assert_eq!(lo * 2, hi, "restart {i}");
        }
        // The smallest next backoff is never shorter than the largest previous one.
        let mut tracker = RestartTracker::new(RestartPolicy::default());
        let first = tracker.on_failure(at(0), 1.0).backoff;
        let second = tracker.on_failure(at(1), 0.0).backoff;
        assert!(second >= first);
    }

    #[test]
    fn the_sixth_restart_within_thirty_seconds_escalates_once() {
        let mut tracker = RestartTracker::new(RestartPolicy::default());
        for i in 0..5 {
            let decision = tracker.on_failure(at(i * 1_000), 0.5);
            assert!(!decision.escalated, "restart {i}");
        }
        let sixth = tracker.on_failure(at(5_000), 0.5);
        assert!(sixth.escalated && sixth.newly_escalated);
        assert_eq!(sixth.backoff, Duration::from_secs(30), "retries at the cap");
        assert_eq!(sixth.restart_count, 6);

        let seventh = tracker.on_failure(at(6_000), 0.5);
        assert!(
            seventh.escalated && !seventh.newly_escalated,
            "critical is logged once"
        );
    }

    #[test]
    fn restarts_older_than_the_window_are_forgotten() {
        let mut tracker = RestartTracker::new(RestartPolicy::default());
        for i in 0..5 {
            tracker.on_failure(at(i * 1_000), 1.0);
        }
        // 30 s after the first restart it has left the window: 5 in window, fine.
        let decision = tracker.on_failure(at(30_000), 1.0);
        assert!(!decision.escalated);

        // A quiet spell empties the window: escalation ends, backoff restarts small.
        let after_quiet = tracker.on_failure(at(120_000), 1.0);
        assert!(!after_quiet.escalated);
        assert_eq!(after_quiet.backoff, Duration::from_millis(100));
        assert_eq!(after_quiet.restart_count, 7);
    }

    #[test]
    fn an_escalated_child_recovers_once_its_window_clears() {
        let mut tracker = RestartTracker::new(RestartPolicy::default());
        for i in 0..7 {
            tracker.on_failure(at(i), 0.0);
        }
        let later = tracker.on_failure(at(40_000), 0.0);
        assert!(!later.escalated);
        assert_eq!(later.backoff, Duration::from_millis(50));
    }
}
