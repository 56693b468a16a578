//! Time is a port: schedulers, windows, retries and dedup read a [`Clock`], so a
//! test can say "it is now flight start + 1 s" instead of sleeping.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};

/// A source of the current time.
///
/// Times are UTC and truncated to microseconds, the precision both database
/// backends store, so a time read here round-trips through the store unchanged.
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }
}

/// A clock that only moves when told to. Cloning shares the same time.
#[derive(Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(Mutex::new(start.trunc_subsecs(6))),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now = now
            .checked_add_signed(by)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
    }

    /// Sets the clock to `to`, which may be in the past.
    pub fn set(&self, to: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = to.trunc_subsecs(6);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("now", &self.now())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_time() {
        let start = Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap();
        let clock = ManualClock::new(start);
        let other = clock.clone();
        assert_eq!(clock.now(), start);

        clock.advance(Duration::from_millis(1_500));
        assert_eq!(other.now(), start + chrono::Duration::milliseconds(1_500));

        other.set(start);
        assert_eq!(clock.now(), start);
    }

    #[test]
    fn clocks_read_microsecond_precision() {
        let start = Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap();
        assert_eq!(
            ManualClock::new(start).now().timestamp_subsec_nanos(),
            123_456_000
        );
        assert_eq!(SystemClock.now().timestamp_subsec_nanos() % 1_000, 0);
    }
}
