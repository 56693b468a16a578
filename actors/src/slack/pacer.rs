//! Pacing per webhook: a token bucket (Slack allows about one message per
//! second per incoming webhook, with short bursts), a "do not send before"
//! time set by 429 `Retry-After` or by backoff after 5xx / timeouts, and the
//! backoff schedule itself. Time comes from the caller (a [`crate::Clock`]),
//! so tests move it by hand.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// How fast one webhook may be posted to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    /// Sustained messages per second.
    pub per_second: f64,
    /// Messages that may go at once after a quiet period.
    pub burst: u32,
}

impl Default for Pace {
    fn default() -> Self {
        Self {
            per_second: 1.0,
            burst: 3,
        }
    }
}

/// One webhook's bucket and block.
#[derive(Debug, Clone, PartialEq)]
pub struct Pacer {
    tokens: f64,
    updated: DateTime<Utc>,
    blocked_until: Option<DateTime<Utc>>,
}

impl Pacer {
    /// A full bucket.
    pub fn new(pace: Pace, now: DateTime<Utc>) -> Self {
        Self {
            tokens: f64::from(pace.burst.max(1)),
            updated: now,
            blocked_until: None,
        }
    }

    fn refill(&mut self, pace: Pace, now: DateTime<Utc>) {
        let elapsed = (now - self.updated).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
        if elapsed > 0.0 {
            self.tokens =
                (self.tokens + elapsed * pace.per_second).min(f64::from(pace.burst.max(1)));
            self.updated = now;
        }
    }

    /// Messages that may be sent now: 0 while blocked.
    pub fn available(&mut self, pace: Pace, now: DateTime<Utc>) -> u32 {
        if self.blocked_until.is_some_and(|until| now < until) {
            return 0;
        }
        self.refill(pace, now);
        self.tokens.floor().max(0.0) as u32
    }

    /// Takes up to `n` messages' worth of tokens; answers how many it took.
    pub fn take(&mut self, pace: Pace, now: DateTime<Utc>, n: u32) -> u32 {
        let n = n.min(self.available(pace, now));
        self.tokens -= f64::from(n);
        n
    }

    /// Nothing is sent to this webhook before `until` (a later block wins).
    pub fn block_until(&mut self, until: DateTime<Utc>) {
        self.blocked_until = Some(self.blocked_until.map_or(until, |b| b.max(until)));
    }

    pub fn blocked_until(&self) -> Option<DateTime<Utc>> {
        self.blocked_until
    }
}

/// Exponential backoff with jitter: `base · 2^(attempt−1)`, capped at `cap`,
/// times a factor in 0.8–1.2 drawn from `jitter` ∈ [0, 1).
pub fn backoff(attempt: u32, base: Duration, cap: Duration, jitter: f64) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    exp.min(cap).mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0)
            .single()
            .expect("time")
    }

    #[test]
    fn a_burst_then_one_per_second() {
        let pace = Pace::default();
        let mut p = Pacer::new(pace, t0());
        assert_eq!(p.take(pace, t0(), 10), 3);
        assert_eq!(p.take(pace, t0(), 10), 0);
        let half = t0() + chrono::Duration::milliseconds(500);
        assert_eq!(p.take(pace, half, 10), 0);
        let one = t0() + chrono::Duration::seconds(1);
        assert_eq!(p.take(pace, one, 10), 1);
        assert_eq!(p.take(pace, one, 10), 0);
        // A long quiet period refills to the burst, no more.
        let later = one + chrono::Duration::seconds(60);
        assert_eq!(p.take(pace, later, 10), 3);
    }

    #[test]
    fn a_block_stops_everything_until_it_ends() {
        let pace = Pace::default();
        let mut p = Pacer::new(pace, t0());
        p.block_until(t0() + chrono::Duration::seconds(3));
        p.block_until(t0() + chrono::Duration::seconds(1));
        assert_eq!(
            p.available(pace, t0() + chrono::Duration::milliseconds(2_999)),
            0
        );
        assert_eq!(p.available(pace, t0() + chrono::Duration::seconds(3)), 3);
    }

    #[test]
    fn backoff_doubles_within_its_jitter_and_cap() {
        let base = Duration::from_secs(2);
        let cap = Duration::from_secs(60);
        assert_eq!(backoff(1, base, cap, 0.5), Duration::from_secs(2));
        assert_eq!(backoff(3, base, cap, 0.5), Duration::from_secs(8));
        assert_eq!(backoff(30, base, cap, 0.5), cap);
        assert_eq!(backoff(1, base, cap, 0.0), Duration::from_millis(1_600));
        assert_eq!(backoff(1, base, cap, 1.0), Duration::from_millis(2_400));
    }
}
