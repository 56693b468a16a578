//! Detection in time windows: the detector's per-IP and per-principal
//! windows, and the notify gate's cool-downs.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::violations::{Violation, ViolationType};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityConfig {
    /// Failed authentications from one IP within `failed_auth_window` that
    /// make a violation and block the IP.
    pub failed_auth_threshold: u32,
    pub failed_auth_window: Duration,
    /// How long a blocked IP is answered 429.
    pub block_duration: Duration,
    /// Requests by one principal within `request_window` above which its
    /// pattern is unusual.
    pub request_limit: u32,
    pub request_window: Duration,
    /// Per (rule, subject): after a notice, further violations within this
    /// time are only counted.
    pub notify_cooldown: Duration,
    /// Bound on the IPs, and separately on the principals and on the
    /// (rule, subject) pairs, kept in memory; the stalest go first, so a flood
    /// of spoofed sources cannot grow memory without limit.
    pub max_tracked: usize,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            failed_auth_threshold: 5,
            failed_auth_window: Duration::from_secs(5 * 60),
            block_duration: Duration::from_secs(5 * 60),
            request_limit: 600,
            request_window: Duration::from_secs(60),
            notify_cooldown: Duration::from_secs(15 * 60),
            max_tracked: 100_000,
        }
    }
}

#[derive(Debug)]
pub(super) struct IpState {
    /// Recent failures, oldest first; at most `failed_auth_threshold` are
    /// kept, as older ones cannot change whether the threshold is reached.
    failures: VecDeque<DateTime<Utc>>,
    blocked_until: Option<DateTime<Utc>>,
    /// Failures that arrived during the current block.
    refused: u64,
    last_seen: DateTime<Utc>,
}

#[derive(Debug)]
pub(super) struct PrincipalState {
    /// Recent requests, oldest first; at most `request_limit + 1` are kept,
    /// enough to tell "above the limit", so memory follows actual traffic.
    hits: VecDeque<DateTime<Utc>>,
    /// When the rule last fired; `None` once re-armed.
    tripped_at: Option<DateTime<Utc>>,
    last_seen: DateTime<Utc>,
}

/// Pure, synchronous, clock-passed-in sliding-window logic; unit-tested
/// without actix.
///
/// A time counts in a window while its age is strictly less than the window:
/// a failure exactly five minutes old has left a five-minute window.
#[derive(Debug)]
pub struct Detector {
    config: SecurityConfig,
    failed_auth_window: TimeDelta,
    block_duration: TimeDelta,
    request_window: TimeDelta,
    pub(super) ips: HashMap<String, IpState>,
    pub(super) principals: HashMap<String, PrincipalState>,
}

impl Detector {
    pub fn new(config: SecurityConfig) -> Self {
        Self {
            failed_auth_window: delta(config.failed_auth_window),
            block_duration: delta(config.block_duration),
            request_window: delta(config.request_window),
            config,
            ips: HashMap::new(),
            principals: HashMap::new(),
        }
    }

    pub fn config(&self) -> &SecurityConfig {
        &self.config
    }

    /// A failed authentication from `ip`. Returns a violation exactly once per
    /// crossing of the threshold (the attempt that makes the count within the
    /// window reach it); from then the IP is blocked until `now +
    /// block_duration`. Attempts while blocked never make a second violation
    /// (they are counted, see [`Detector::refused_while_blocked`]), and counting
    /// starts afresh once the block ends: a block is not extended by the
    /// attempts it refuses, so it ends when the caller was told it would.
    pub fn failed_auth(&mut self, ip: &str, now: DateTime<Utc>) -> Option<Violation> {
        let threshold = self.config.failed_auth_threshold.max(1) as usize;
        let window = self.failed_auth_window;
        let state = slot(
            &mut self.ips,
            ip,
            self.config.max_tracked,
            |s| ip_idle(s, now, window),
            |s| (is_blocked(s, now), s.last_seen),
            || IpState {
                failures: VecDeque::new(),
                blocked_until: None,
                refused: 0,
                last_seen: now,
            },
        );
        state.last_seen = now;
        if let Some(until) = state.blocked_until {
            if now < until {
                state.refused += 1;
                return None;
            }
            state.blocked_until = None;
            state.refused = 0;
        }
        expire(&mut state.failures, now, window);
        state.failures.push_back(now);
        while state.failures.len() > threshold {
            state.failures.pop_front();
        }
        if state.failures.len() < threshold {
            return None;
        }
        state.failures.clear();
        state.blocked_until = Some(after(now, self.block_duration));
        Some(Violation {
            kind: ViolationType::RepeatedFailedAuth,
            subject: ip.to_owned(),
            tenant_id: None,
            principal_id: None,
            ip_address: Some(ip.to_owned()),
            resource_id: None,
            reason: format!(
                "{threshold} failed authentications within {}s",
                self.config.failed_auth_window.as_secs()
            ),
        })
    }

    /// Some(remaining) while `ip` is blocked.
    pub fn blocked(&self, ip: &str, now: DateTime<Utc>) -> Option<Duration> {
        let until = self.ips.get(ip)?.blocked_until?;
        (now < until).then(|| (until - now).to_std().unwrap_or_default())
    }

    /// Failed authentications from `ip` refused during its current block: what
    /// a brute force kept trying after it was stopped.
    pub fn refused_while_blocked(&self, ip: &str, now: DateTime<Utc>) -> u64 {
        self.ips
            .get(ip)
            .filter(|s| is_blocked(s, now))
            .map_or(0, |s| s.refused)
    }

    /// One request by an authenticated principal; a violation once when the
    /// count in the window goes above `request_limit`. The rule re-arms when a
    /// request finds the count back at or under the limit, but no sooner than
    /// one window after it fired: a rate hovering at the limit would otherwise
    /// fire on every other request, and one violation already stands for the
    /// window of excess that made it.
    pub fn request(
        &mut self,
        principal_id: &str,
        tenant_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Option<Violation> {
        let limit = self.config.request_limit as usize;
        let window = self.request_window;
        let state = slot(
            &mut self.principals,
            principal_id,
            self.config.max_tracked,
            |s| principal_idle(s, now, window),
            |s| (false, s.last_seen),
            || PrincipalState {
                hits: VecDeque::new(),
                tripped_at: None,
                last_seen: now,
            },
        );
        state.last_seen = now;
        expire(&mut state.hits, now, window);
        state.hits.push_back(now);
        while state.hits.len() > limit.saturating_add(1) {
            state.hits.pop_front();
        }
        let over = state.hits.len() > limit;
        if let Some(at) = state.tripped_at {
            if over || age(now, at) < window {
                return None;
            }
            state.tripped_at = None;
        }
        if !over {
            return None;
        }
        state.tripped_at = Some(now);
        Some(Violation {
            kind: ViolationType::UnusualRequestPattern,
            subject: principal_id.to_owned(),
            tenant_id: tenant_id.map(str::to_owned),
            principal_id: Some(principal_id.to_owned()),
            ip_address: None,
            resource_id: None,
            reason: format!(
                "more than {limit} requests within {}s",
                self.config.request_window.as_secs()
            ),
        })
    }

    /// Forgets IPs and principals with nothing left in their windows, so
    /// memory follows recent traffic rather than everything ever seen.
    pub(super) fn prune(&mut self, now: DateTime<Utc>) {
        let window = self.failed_auth_window;
        self.ips.retain(|_, s| !ip_idle(s, now, window));
        let window = self.request_window;
        self.principals
            .retain(|_, s| !principal_idle(s, now, window));
    }
}

fn is_blocked(state: &IpState, now: DateTime<Utc>) -> bool {
    state.blocked_until.is_some_and(|until| now < until)
}

fn ip_idle(state: &IpState, now: DateTime<Utc>, window: TimeDelta) -> bool {
    !is_blocked(state, now) && state.failures.back().is_none_or(|t| age(now, *t) >= window)
}

/// With no request in the window, the rule could fire again anyway (the hit
/// that tripped it has left the window too), so nothing is lost.
fn principal_idle(state: &PrincipalState, now: DateTime<Utc>, window: TimeDelta) -> bool {
    state.hits.back().is_none_or(|t| age(now, *t) >= window)
}

#[derive(Debug)]
pub(super) struct GateEntry {
    notified_at: DateTime<Utc>,
    suppressed: u64,
}

/// Edge-triggered notification gate per (violation type, subject): the
/// first violation notifies; later ones within the cool-down are only
/// counted; the first after the cool-down notifies with count = 1 +
/// suppressed meanwhile. So a burst becomes one notice that says how big it
/// was, not a flood. The type is a name, not a [`ViolationType`]: violations
/// other producers record (an ingested event, say) carry names of their own.
#[derive(Debug)]
pub struct NotifyGate {
    cooldown: TimeDelta,
    max_tracked: usize,
    pub(super) entries: HashMap<(String, String), GateEntry>,
}

impl NotifyGate {
    pub fn new(cooldown: Duration) -> Self {
        Self {
            cooldown: delta(cooldown),
            max_tracked: SecurityConfig::default().max_tracked,
            entries: HashMap::new(),
        }
    }

    /// Bounds the (rule, subject) pairs remembered; the least recently
    /// notified are forgotten first.
    pub fn with_max_tracked(mut self, max_tracked: usize) -> Self {
        self.max_tracked = max_tracked;
        self
    }

    /// `Some(count)` when `v` should be notified, standing for `count`
    /// violations; `None` when it is only counted.
    pub fn admit(&mut self, v: &Violation, now: DateTime<Utc>) -> Option<u64> {
        self.admit_named(v.kind.as_str(), &v.subject, now)
    }

    /// [`NotifyGate::admit`] for a violation of type `kind` about `subject`.
    pub fn admit_named(&mut self, kind: &str, subject: &str, now: DateTime<Utc>) -> Option<u64> {
        let key = (kind.to_owned(), subject.to_owned());
        match self.entries.get_mut(&key) {
            Some(entry) if age(now, entry.notified_at) < self.cooldown => {
                entry.suppressed += 1;
                None
            }
            Some(entry) => {
                let count = 1 + entry.suppressed;
                entry.notified_at = now;
                entry.suppressed = 0;
                Some(count)
            }
            None => {
                let cooldown = self.cooldown;
                make_room(
                    &mut self.entries,
                    self.max_tracked,
                    |e| gate_idle(e, now, cooldown),
                    |e| (false, e.notified_at),
                );
                self.entries.insert(
                    key,
                    GateEntry {
                        notified_at: now,
                        suppressed: 0,
                    },
                );
                Some(1)
            }
        }
    }

    /// Forgets pairs whose cool-down is over with nothing suppressed; pairs
    /// holding a count stay, so the next notice still carries it.
    pub(super) fn prune(&mut self, now: DateTime<Utc>) {
        let cooldown = self.cooldown;
        self.entries.retain(|_, e| !gate_idle(e, now, cooldown));
    }
}

fn gate_idle(entry: &GateEntry, now: DateTime<Utc>, cooldown: TimeDelta) -> bool {
    entry.suppressed == 0 && age(now, entry.notified_at) >= cooldown
}

/// The entry for `key`, made if missing, making room first when `map` is
/// full.
fn slot<'a, V>(
    map: &'a mut HashMap<String, V>,
    key: &str,
    max: usize,
    idle: impl Fn(&V) -> bool,
    rank: impl Fn(&V) -> (bool, DateTime<Utc>),
    make: impl FnOnce() -> V,
) -> &'a mut V {
    if !map.contains_key(key) {
        make_room(map, max, idle, rank);
    }
    map.entry(key.to_owned()).or_insert_with(make)
}

/// Makes room for one more entry when `map` holds `max`: drops idle entries,
/// then, if that is not enough, the lowest-ranked tenth (at least one) in one
/// sweep, so a full map costs one sort per many inserts rather than a scan
/// per insert. `rank` orders by (keep first, last seen): entries ranked
/// `true` (a blocked IP) go only after all others.
fn make_room<K, V>(
    map: &mut HashMap<K, V>,
    max: usize,
    idle: impl Fn(&V) -> bool,
    rank: impl Fn(&V) -> (bool, DateTime<Utc>),
) where
    K: std::hash::Hash + Eq + Clone,
{
    let max = max.max(1);
    if map.len() < max {
        return;
    }
    map.retain(|_, v| !idle(v));
    if map.len() < max {
        return;
    }
    let evict = (map.len() + 1 - max + max / 10).min(map.len());
    let mut ranked: Vec<((bool, DateTime<Utc>), K)> =
        map.iter().map(|(k, v)| (rank(v), k.clone())).collect();
    ranked.sort_unstable_by_key(|entry| entry.0);
    for (_, key) in ranked.into_iter().take(evict) {
        map.remove(&key);
    }
    tracing::warn!(
        evicted = evict,
        max_tracked = max,
        "security monitor tracking limit reached; forgot the stalest entries"
    );
}

/// Drops times that have left the window (age >= window) from the front.
fn expire(times: &mut VecDeque<DateTime<Utc>>, now: DateTime<Utc>, window: TimeDelta) {
    while times.front().is_some_and(|t| age(now, *t) >= window) {
        times.pop_front();
    }
}

fn age(now: DateTime<Utc>, then: DateTime<Utc>) -> TimeDelta {
    now.signed_duration_since(then)
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

pub(super) fn after(t: DateTime<Utc>, d: TimeDelta) -> DateTime<Utc> {
    t.checked_add_signed(d).unwrap_or(DateTime::<Utc>::MAX_UTC)
}
