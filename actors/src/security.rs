//! The security monitor: turns auth and access events into security
//! violations, and each violation into an audit row, a metric, a critical log
//! line and (at most once per cool-down) a Slack notice on the audit channel.
//! It speaks for every violation, not only its own: violation rows other
//! producers commit (events ingested with `security_violation: true`) reach
//! it as [`NotableEvent`]s and are logged, gated and notified the same way.
//!
//! Detection is plain data and arithmetic ([`Detector`], [`NotifyGate`]) that
//! reads the time it is given, so windows and cool-downs are tested with
//! explicit timestamps. Both live behind a mutex outside the actor: the
//! request path asks "is this IP blocked?" without a mailbox round trip, and a
//! restart of the actor neither unblocks an IP nor sends a notice again. The
//! [`SecurityActor`] only does the slow part of a violation (audit, outbox).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::Clock;
use crate::audit::{AuditEvent, Auditor, NotableEvent, Source};
use crate::notify::{Notification, NotificationEvent, NotificationOutbox};
use crate::supervisor::{ActorHandle, Child, RestartPolicy, Supervisor};

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
struct IpState {
    /// Recent failures, oldest first; at most `failed_auth_threshold` are
    /// kept, as older ones cannot change whether the threshold is reached.
    failures: VecDeque<DateTime<Utc>>,
    blocked_until: Option<DateTime<Utc>>,
    /// Failures that arrived during the current block.
    refused: u64,
    last_seen: DateTime<Utc>,
}

#[derive(Debug)]
struct PrincipalState {
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
    ips: HashMap<String, IpState>,
    principals: HashMap<String, PrincipalState>,
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
    fn prune(&mut self, now: DateTime<Utc>) {
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
struct GateEntry {
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
    entries: HashMap<(String, String), GateEntry>,
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
    fn prune(&mut self, now: DateTime<Utc>) {
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

fn after(t: DateTime<Utc>, d: TimeDelta) -> DateTime<Utc> {
    t.checked_add_signed(d).unwrap_or(DateTime::<Utc>::MAX_UTC)
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
const MAX_RECORDED_TEXT_CHARS: usize = 500;

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

    fn metric_type(&self) -> &str {
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

/// The log ids of the violation rows this monitor recorded itself: when
/// they come back committed, they were logged and gated already. Bounded:
/// past [`MAX_OWN_ROWS`] (rows waiting for a database that is away), the
/// oldest are forgotten, and such a row is announced a second time when it
/// is finally committed — through the gate, so at most a second notice.
#[derive(Debug, Default)]
struct OwnRows {
    order: VecDeque<Uuid>,
    ids: HashSet<Uuid>,
}

const MAX_OWN_ROWS: usize = 10_000;

impl OwnRows {
    fn insert(&mut self, id: Uuid) {
        if self.ids.len() >= MAX_OWN_ROWS
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        if self.ids.insert(id) {
            self.order.push_back(id);
        }
    }

    /// Whether `id` is one of ours; forgets it (each row comes back once).
    fn take(&mut self, id: &Uuid) -> bool {
        if !self.ids.remove(id) {
            return false;
        }
        self.order.retain(|kept| kept != id);
        true
    }
}

/// At most this many notices wait for the outbox; more are counted
/// (`security_notices_dropped_total`) and dropped (their violations are in
/// the trail all the same).
const MAX_WAITING_NOTICES: usize = 10_000;

struct State {
    detector: Detector,
    gate: NotifyGate,
    own: OwnRows,
    /// Notices waiting to be written to the outbox, oldest first.
    waiting: Vec<Notification>,
}

/// State that outlives any one instance of the actor.
struct Shared {
    state: Mutex<State>,
    auditor: Auditor,
    outbox: Arc<dyn NotificationOutbox>,
    clock: Arc<dyn Clock>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What callers hold. Cheap to clone.
#[derive(Clone)]
pub struct SecurityMonitor {
    shared: Arc<Shared>,
    actor: ActorHandle<SecurityActor>,
}

impl fmt::Debug for SecurityMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecurityMonitor").finish_non_exhaustive()
    }
}

impl SecurityMonitor {
    /// Starts the SecurityActor under `supervisor` as `security_monitor`. It
    /// subscribes to `auditor`'s notable events: every committed violation
    /// row it did not record itself is announced as well.
    pub fn start(
        supervisor: &Supervisor,
        policy: RestartPolicy,
        config: SecurityConfig,
        auditor: Auditor,
        outbox: Arc<dyn NotificationOutbox>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let gate = NotifyGate::new(config.notify_cooldown).with_max_tracked(config.max_tracked);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                detector: Detector::new(config),
                gate,
                own: OwnRows::default(),
                waiting: Vec::new(),
            }),
            auditor,
            outbox,
            clock,
        });
        let for_factory = shared.clone();
        let actor = supervisor.spawn("security_monitor", policy, move |child| SecurityActor {
            child: child.clone(),
            shared: for_factory.clone(),
            flushing: false,
        });
        Self { shared, actor }
    }

    /// A failed authentication from `ip`, counted. `Some(remaining)` when
    /// `ip` was already blocked: answer 429 with it as `Retry-After` (the
    /// attempt counts as refused during the block, never towards a new one).
    /// `None`: answer 401; this attempt may itself have started a block.
    /// Asked only once the token is known to be bad, so a valid token is
    /// never held to its address's block.
    pub fn failed_auth(&self, ip: &str) -> Option<Duration> {
        let now = self.shared.clock.now();
        let (blocked, violation) = {
            let mut state = self.shared.state();
            let blocked = state.detector.blocked(ip, now);
            (blocked, state.detector.failed_auth(ip, now))
        };
        if let Some(violation) = violation {
            self.actor.do_send(Report(violation));
        }
        blocked
    }

    /// `Some(remaining)` while `ip` is blocked: answer 429 with it as
    /// `Retry-After`.
    pub fn blocked(&self, ip: &str) -> Option<Duration> {
        let now = self.shared.clock.now();
        self.shared.state().detector.blocked(ip, now)
    }

    /// One request by an authenticated principal.
    pub fn request(&self, principal_id: &str, tenant_id: Option<&str>) {
        let now = self.shared.clock.now();
        let violation = self
            .shared
            .state()
            .detector
            .request(principal_id, tenant_id, now);
        if let Some(violation) = violation {
            self.actor.do_send(Report(violation));
        }
    }

    /// A violation a handler found (`cross_tenant_access`,
    /// `unauthorized_access`).
    pub fn report(&self, violation: Violation) {
        self.actor.do_send(Report(violation));
    }
}

/// How often idle IPs, principals and gate entries are forgotten (and
/// notices left waiting by an instance that stopped are written).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Records violations and announces them. Its state that matters lives
/// outside it, shared with every [`SecurityMonitor`], so a restart loses
/// none of it.
pub struct SecurityActor {
    child: Child,
    shared: Arc<Shared>,
    /// A write of waiting notices to the outbox is under way.
    flushing: bool,
}

impl Actor for SecurityActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.shared
            .auditor
            .subscribe_notable(ctx.address().recipient());
        // Notices an earlier instance left waiting.
        self.flush(ctx);
        ctx.run_interval(PRUNE_EVERY, |act, ctx| {
            if act.child.trip(ctx) {
                return;
            }
            let now = act.shared.clock.now();
            {
                let mut state = act.shared.state();
                state.detector.prune(now);
                state.gate.prune(now);
            }
            act.flush(ctx);
        });
    }
}

/// A violation to record and perhaps notify.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Report(pub Violation);

impl Handler<Report> for SecurityActor {
    type Result = ();

    fn handle(&mut self, Report(v): Report, ctx: &mut Context<Self>) {
        if self.child.trip(ctx) {
            return;
        }
        let now = self.shared.clock.now();
        let event = audit_event(&v, now);
        self.shared.state().own.insert(event.log_id);
        self.shared.auditor.record(Source::Internal, event);
        self.announce(Alarm::from(&v), now, ctx);
    }
}

/// Committed violation rows that other producers recorded (an ingested
/// event with `security_violation: true`, a `log_id` conflict found on
/// replay): the monitor speaks for every violation, so these are logged,
/// gated and notified like its own. Its own rows come back here too, and
/// are skipped: they were announced when reported.
impl Handler<NotableEvent> for SecurityActor {
    type Result = ();

    fn handle(&mut self, NotableEvent(committed): NotableEvent, ctx: &mut Context<Self>) {
        let event = &committed.event;
        if !event.security_violation {
            return;
        }
        if self.child.trip(ctx) {
            return;
        }
        if self.shared.state().own.take(&event.log_id) {
            return;
        }
        let now = self.shared.clock.now();
        self.announce(Alarm::recorded(event), now, ctx);
    }
}

impl SecurityActor {
    /// The critical log line, the metric, and (when the gate lets it
    /// through) a `security_violation` notice for the audit channel of the
    /// violation's tenant, or the service's without one.
    ///
    /// Every violation is logged at the critical level: tracing has no
    /// CRITICAL, so, as for the service's other critical lines, at ERROR with
    /// `critical = true` (`severity` keeps the violation's own).
    fn announce(&mut self, alarm: Alarm, now: DateTime<Utc>, ctx: &mut Context<Self>) {
        metrics::counter!("security_violations_total", "type" => alarm.metric_type().to_owned())
            .increment(1);
        let count =
            self.shared
                .state()
                .gate
                .admit_named(&alarm.violation_type, &alarm.subject, now);
        tracing::error!(
            critical = true,
            violation_type = %alarm.violation_type,
            severity = alarm.severity.as_str(),
            origin = alarm.origin,
            subject = %alarm.subject,
            tenant_id = alarm.tenant_id.as_deref(),
            principal_id = alarm.principal_id.as_deref(),
            ip_address = alarm.ip_address.as_deref(),
            resource_id = alarm.resource_id.as_deref(),
            reason = %alarm.reason,
            notified = count.is_some(),
            "security violation"
        );
        let Some(count) = count else {
            return;
        };
        let notification = Notification::new(
            alarm.tenant_id,
            NotificationEvent::SecurityViolation {
                violation_type: alarm.violation_type,
                severity: alarm.severity.as_str().to_owned(),
                subject: alarm.subject,
                reason: alarm.reason,
                resource_id: alarm.resource_id,
                count,
            },
            now,
        );
        {
            let mut state = self.shared.state();
            if state.waiting.len() >= MAX_WAITING_NOTICES {
                metrics::counter!("security_notices_dropped_total").increment(1);
                return;
            }
            state.waiting.push(notification);
        }
        self.flush(ctx);
    }

    /// Writes the waiting notices to the outbox, in one go: one write at a
    /// time, and what arrives meanwhile goes with the next, so a flood of
    /// violations is a few transactions, not one per notice.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing {
            return;
        }
        let notices = std::mem::take(&mut self.shared.state().waiting);
        if notices.is_empty() {
            return;
        }
        self.flushing = true;
        let n = notices.len();
        let outbox = self.shared.outbox.clone();
        ctx.spawn(
            async move {
                if let Err(reason) = outbox.enqueue_all(notices).await {
                    tracing::warn!(notices = n, %reason, "could not queue security violation notices");
                }
            }
            .into_actor(self)
            .map(|(), act, ctx| {
                act.flushing = false;
                act.flush(ctx);
            }),
        );
    }
}

/// The audit row of a violation. It is recorded as a failed operation: what
/// it stands for is an access the service refused, so it belongs in
/// `error.log` and in failure counts next to the other refusals, and a
/// reader filtering on `success = true` never mistakes it for a granted one.
fn audit_event(v: &Violation, now: DateTime<Utc>) -> AuditEvent {
    let mut event = AuditEvent::new("security_violation", now)
        .with_details(serde_json::json!({
            "type": v.kind.as_str(),
            "severity": v.kind.severity().as_str(),
            "resource_id": v.resource_id,
            "reason": v.reason,
            "subject": v.subject,
        }))
        .failed(v.reason.clone());
    if let Some(tenant_id) = &v.tenant_id {
        event = event.with_tenant(tenant_id.clone());
    }
    if let Some(principal_id) = &v.principal_id {
        event = event.with_principal(principal_id.clone(), None);
    }
    event.ip_address = v.ip_address.clone();
    event.security_violation = true;
    event
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

    const IP: &str = "198.51.100.7";
    const OTHER_IP: &str = "203.0.113.9";

    #[test]
    fn the_fifth_failure_within_the_window_is_one_violation_and_blocks_the_ip() {
        let mut detector = Detector::new(SecurityConfig::default());
        for i in 0..4 {
            assert_eq!(detector.failed_auth(IP, at(i * 10)), None);
            assert_eq!(detector.blocked(IP, at(i * 10)), None);
        }

        let violation = detector.failed_auth(IP, at(40)).unwrap();

        assert_eq!(violation.kind, ViolationType::RepeatedFailedAuth);
        assert_eq!(violation.kind.severity(), Severity::High);
        assert_eq!(violation.subject, IP);
        assert_eq!(violation.ip_address.as_deref(), Some(IP));
        assert_eq!(violation.tenant_id, None);
        assert_eq!(
            detector.blocked(IP, at(40)),
            Some(Duration::from_secs(5 * 60))
        );
        assert_eq!(
            detector.blocked(IP, at(100)),
            Some(Duration::from_secs(4 * 60))
        );
    }

    #[test]
    fn failures_while_blocked_are_counted_but_never_a_second_violation() {
        let mut detector = Detector::new(SecurityConfig::default());
        let violations = (0..1_000)
            .filter_map(|i| detector.failed_auth(IP, t0() + TimeDelta::milliseconds(i * 10)))
            .count();

        assert_eq!(violations, 1);
        assert_eq!(detector.refused_while_blocked(IP, at(10)), 995);
        // Refused attempts do not extend the block (it began at 40 ms).
        assert_eq!(detector.blocked(IP, at(5 * 60 + 1)), None);
    }

    #[test]
    fn failures_older_than_the_window_no_longer_count() {
        let mut detector = Detector::new(SecurityConfig::default());
        for minute in 0..4 {
            assert_eq!(detector.failed_auth(IP, at(minute * 60)), None);
        }
        // Exactly five minutes after the first, it has left the window.
        assert_eq!(detector.failed_auth(IP, at(5 * 60)), None);
        assert!(detector.failed_auth(IP, at(5 * 60 + 1)).is_some());
    }

    #[test]
    fn a_block_ends_after_its_duration_and_counting_starts_afresh() {
        let mut detector = Detector::new(SecurityConfig::default());
        for i in 0..5 {
            detector.failed_auth(IP, at(i));
        }
        assert_eq!(
            detector.blocked(IP, at(4 + 299)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(detector.blocked(IP, at(4 + 300)), None);

        for i in 0..4 {
            assert_eq!(detector.failed_auth(IP, at(400 + i)), None);
        }
        assert!(detector.failed_auth(IP, at(404)).is_some());
        assert!(detector.blocked(IP, at(404)).is_some());
    }

    #[test]
    fn other_ips_are_unaffected_by_a_blocked_one() {
        let mut detector = Detector::new(SecurityConfig::default());
        for i in 0..5 {
            detector.failed_auth(IP, at(i));
        }
        for i in 0..4 {
            assert_eq!(detector.failed_auth(OTHER_IP, at(i)), None);
        }
        assert!(detector.blocked(IP, at(10)).is_some());
        assert_eq!(detector.blocked(OTHER_IP, at(10)), None);
        assert_eq!(detector.blocked("192.0.2.1", at(10)), None);
    }

    fn limited(limit: u32) -> SecurityConfig {
        SecurityConfig {
            request_limit: limit,
            request_window: Duration::from_secs(60),
            ..SecurityConfig::default()
        }
    }

    #[test]
    fn going_above_the_request_limit_is_one_violation() {
        let mut detector = Detector::new(limited(600));
        let violations: Vec<Violation> = (0..1_200)
            .filter_map(|i| {
                detector.request("p_1", Some("acme"), t0() + TimeDelta::milliseconds(i * 40))
            })
            .collect();

        assert_eq!(violations.len(), 1);
        let v = &violations[0];
        assert_eq!(v.kind, ViolationType::UnusualRequestPattern);
        assert_eq!(v.kind.severity(), Severity::Medium);
        assert_eq!(v.subject, "p_1");
        assert_eq!(v.principal_id.as_deref(), Some("p_1"));
        assert_eq!(v.tenant_id.as_deref(), Some("acme"));
        assert!(detector.request("p_2", Some("acme"), at(50)).is_none());
    }

    #[test]
    fn the_request_rule_re_arms_once_the_rate_is_back_under_the_limit_for_a_window() {
        let mut detector = Detector::new(limited(3));
        for s in [-50, -40, -30] {
            assert_eq!(detector.request("p_1", None, at(s)), None);
        }
        assert!(detector.request("p_1", None, at(0)).is_some());

        // Under the limit again at 45 s, but the violation's window is not
        // over: going above again is the same violation.
        for s in [45, 46, 47] {
            assert_eq!(detector.request("p_1", None, at(s)), None);
        }
        // Still above the limit a window later: not re-armed.
        assert_eq!(detector.request("p_1", None, at(61)), None);

        // Under the limit and a window after it fired: re-armed.
        for s in [120, 121, 122] {
            assert_eq!(detector.request("p_1", None, at(s)), None);
        }
        assert!(detector.request("p_1", None, at(123)).is_some());
    }

    #[test]
    fn tracked_ips_are_bounded_and_blocked_ones_are_forgotten_last() {
        let config = SecurityConfig {
            failed_auth_threshold: 2,
            max_tracked: 2,
            ..SecurityConfig::default()
        };
        let mut detector = Detector::new(config.clone());
        detector.failed_auth("a", at(0));
        detector.failed_auth("b", at(1));
        detector.failed_auth("c", at(2));
        assert_eq!(detector.ips.len(), 2);
        assert!(!detector.ips.contains_key("a"), "the stalest goes first");

        let mut detector = Detector::new(config);
        detector.failed_auth("b", at(0));
        assert!(detector.failed_auth("b", at(1)).is_some());
        detector.failed_auth("c", at(2));
        detector.failed_auth("a", at(3));
        assert_eq!(detector.ips.len(), 2);
        assert!(!detector.ips.contains_key("c"));
        assert!(
            detector.blocked("b", at(4)).is_some(),
            "a blocked IP outlives fresher unblocked ones"
        );
    }

    #[test]
    fn idle_entries_make_room_before_anything_active_is_forgotten() {
        let mut detector = Detector::new(SecurityConfig {
            max_tracked: 2,
            ..limited(10)
        });
        detector.request("old", None, at(0));
        detector.request("busy", None, at(100));
        detector.request("new", None, at(110));
        assert!(detector.principals.contains_key("busy"));
        assert!(detector.principals.contains_key("new"));

        detector.prune(at(500));
        assert!(detector.principals.is_empty());
    }

    fn violation(kind: ViolationType, subject: &str) -> Violation {
        Violation {
            kind,
            subject: subject.into(),
            tenant_id: None,
            principal_id: None,
            ip_address: None,
            resource_id: None,
            reason: "test".into(),
        }
    }

    #[test]
    fn the_gate_notifies_once_per_cool_down_with_the_count_suppressed_meanwhile() {
        let mut gate = NotifyGate::new(Duration::from_secs(15 * 60));
        let v = violation(ViolationType::RepeatedFailedAuth, IP);

        assert_eq!(gate.admit(&v, at(0)), Some(1));
        for s in [1, 60, 899] {
            assert_eq!(gate.admit(&v, at(s)), None);
        }
        assert_eq!(gate.admit(&v, at(900)), Some(4));
        assert_eq!(gate.admit(&v, at(901)), None);
        assert_eq!(gate.admit(&v, at(1_800)), Some(2));
    }

    #[test]
    fn the_gate_keeps_rules_and_subjects_apart() {
        let mut gate = NotifyGate::new(Duration::from_secs(60));
        let v = violation(ViolationType::CrossTenantAccess, "p_1");

        assert_eq!(gate.admit(&v, at(0)), Some(1));
        assert_eq!(
            gate.admit(&violation(ViolationType::CrossTenantAccess, "p_2"), at(1)),
            Some(1)
        );
        assert_eq!(
            gate.admit(&violation(ViolationType::UnauthorizedAccess, "p_1"), at(2)),
            Some(1)
        );
        assert_eq!(gate.admit(&v, at(3)), None);
    }

    #[test]
    fn the_gate_forgets_quiet_pairs_but_keeps_counts_owed() {
        let mut gate = NotifyGate::new(Duration::from_secs(60));
        let quiet = violation(ViolationType::CrossTenantAccess, "p_1");
        let owed = violation(ViolationType::CrossTenantAccess, "p_2");
        gate.admit(&quiet, at(0));
        gate.admit(&owed, at(0));
        gate.admit(&owed, at(1));

        gate.prune(at(3_600));

        assert_eq!(gate.entries.len(), 1);
        assert_eq!(gate.admit(&owed, at(3_601)), Some(2));
    }

    #[test]
    fn the_audit_row_marks_a_refused_operation_and_a_violation() {
        let v = Violation::access(
            ViolationType::CrossTenantAccess,
            "acme",
            "p_1",
            "mb_9",
            "media buy of another tenant",
        )
        .with_ip("192.0.2.1");

        let event = audit_event(&v, at(0));

        assert_eq!(event.operation, "security_violation");
        assert!(event.security_violation);
        assert!(!event.success);
        assert_eq!(event.tenant_id.as_deref(), Some("acme"));
        assert_eq!(event.principal_id.as_deref(), Some("p_1"));
        assert_eq!(event.ip_address.as_deref(), Some("192.0.2.1"));
        assert_eq!(
            event.details,
            serde_json::json!({
                "type": "cross_tenant_access",
                "severity": "critical",
                "resource_id": "mb_9",
                "reason": "media buy of another tenant",
                "subject": "p_1",
            })
        );
    }

    #[test]
    fn a_recorded_violation_is_read_from_its_row_with_bounded_names() {
        let mut event = AuditEvent::new("login_anomaly", at(0))
            .with_tenant("acme")
            .with_principal("p_evil", None)
            .with_details(serde_json::json!({
                "type": "credential_stuffing",
                "severity": "CRITICAL",
                "resource_id": "acct_9",
            }))
            .failed("42 passwords tried");
        event.security_violation = true;
        let alarm = Alarm::recorded(&event);
        assert_eq!(alarm.violation_type, "credential_stuffing");
        assert_eq!(alarm.severity, Severity::Critical);
        assert_eq!(alarm.subject, "p_evil");
        assert_eq!(alarm.tenant_id.as_deref(), Some("acme"));
        assert_eq!(alarm.resource_id.as_deref(), Some("acct_9"));
        assert_eq!(alarm.reason, "42 passwords tried");
        assert_eq!(alarm.origin, "recorded");
        assert_eq!(alarm.metric_type(), "recorded", "no client text as a label");

        // Nothing usable given: the operation names it, high, the address is
        // the subject.
        let mut bare = AuditEvent::new("odd_thing", at(0)).with_details(serde_json::json!({
            "type": "Not A Name <!channel>",
            "severity": "apocalyptic",
            "reason": "because",
        }));
        bare.ip_address = Some(IP.into());
        bare.security_violation = true;
        let alarm = Alarm::recorded(&bare);
        assert_eq!(alarm.violation_type, "odd_thing");
        assert_eq!(alarm.severity, Severity::High);
        assert_eq!(alarm.subject, IP);
        assert_eq!(alarm.reason, "because");
        assert_eq!(alarm.tenant_id, None);

        let mut long = bare.clone();
        long.ip_address = None;
        long.error = Some("x".repeat(10_000));
        let alarm = Alarm::recorded(&long);
        assert_eq!(alarm.subject, "odd_thing");
        assert_eq!(alarm.reason.chars().count(), MAX_RECORDED_TEXT_CHARS);
    }

    #[test]
    fn own_rows_are_remembered_once_and_bounded() {
        let mut own = OwnRows::default();
        let first = Uuid::now_v7();
        own.insert(first);
        assert!(own.take(&first));
        assert!(!own.take(&first), "each row comes back once");
        for _ in 0..MAX_OWN_ROWS + 5 {
            own.insert(Uuid::now_v7());
        }
        assert_eq!(own.ids.len(), MAX_OWN_ROWS);
        assert_eq!(own.order.len(), MAX_OWN_ROWS);
    }

    mod actor {
        use std::future::Future;
        use std::path::PathBuf;
        use std::pin::Pin;

        use metrics_util::debugging::{DebugValue, DebuggingRecorder};

        use super::*;
        use crate::ManualClock;
        use crate::audit::{
            AuditConfig, AuditStore, CommittedEvent, GENESIS_HASH, Redactor, SinkConfig,
        };

        #[derive(Default)]
        struct MemoryStore {
            events: Mutex<Vec<AuditEvent>>,
        }

        impl AuditStore for MemoryStore {
            fn append(
                &self,
                events: Arc<Vec<AuditEvent>>,
                _now: chrono::DateTime<chrono::Utc>,
            ) -> crate::audit::AppendFuture {
                let mut stored = self.events.lock().unwrap();
                let committed: Vec<CommittedEvent> = events
                    .iter()
                    .map(|event| {
                        stored.push(event.clone());
                        CommittedEvent {
                            id: stored.len() as i64,
                            seq: stored.len() as i64,
                            prev_hash: GENESIS_HASH.into(),
                            hash: String::new(),
                            event: event.clone(),
                        }
                    })
                    .collect();
                Box::pin(std::future::ready(Ok(committed.into())))
            }
        }

        #[derive(Default)]
        struct MemoryOutbox {
            queued: Mutex<Vec<Notification>>,
        }

        impl NotificationOutbox for MemoryOutbox {
            fn enqueue(
                &self,
                notification: Notification,
            ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> {
                self.queued.lock().unwrap().push(notification);
                Box::pin(std::future::ready(Ok(())))
            }
        }

        struct Harness {
            monitor: SecurityMonitor,
            auditor: Auditor,
            store: Arc<MemoryStore>,
            outbox: Arc<MemoryOutbox>,
            clock: ManualClock,
            dir: PathBuf,
        }

        impl Harness {
            fn start() -> Self {
                let dir = std::env::temp_dir()
                    .join(format!("overseer-security-{}", uuid::Uuid::new_v4()));
                let clock = ManualClock::new(t0());
                let supervisor = Supervisor::new(Arc::new(clock.clone()));
                let store = Arc::new(MemoryStore::default());
                let auditor = Auditor::start(
                    &supervisor,
                    RestartPolicy::default(),
                    AuditConfig {
                        batch_size: 100,
                        flush_interval: Duration::from_millis(10),
                        pipeline: 2,
                        queue_capacity: 1_000,
                        redactor: Redactor {
                            max_value_chars: 1_000,
                        },
                        spool_dir: dir.join("spool"),
                        sinks: SinkConfig {
                            dir: dir.join("logs"),
                            retention_days: 1,
                            audit_log: false,
                            error_log: false,
                            structured: false,
                            security: true,
                        },
                    },
                    store.clone(),
                    Arc::new(clock.clone()),
                )
                .unwrap();
                let outbox = Arc::new(MemoryOutbox::default());
                let monitor = SecurityMonitor::start(
                    &supervisor,
                    RestartPolicy::default(),
                    SecurityConfig::default(),
                    auditor.clone(),
                    outbox.clone(),
                    Arc::new(clock.clone()),
                );
                Self {
                    monitor,
                    auditor,
                    store,
                    outbox,
                    clock,
                    dir,
                }
            }

            fn audit_rows(&self) -> Vec<AuditEvent> {
                self.store.events.lock().unwrap().clone()
            }

            fn notifications(&self) -> Vec<Notification> {
                self.outbox.queued.lock().unwrap().clone()
            }

            fn security_log_lines(&self) -> usize {
                std::fs::read_to_string(self.dir.join("logs").join("security.jsonl"))
                    .unwrap_or_default()
                    .lines()
                    .count()
            }

            /// Waits until `done` holds, then a little longer so that anything
            /// extra would have arrived too.
            async fn settle(&self, done: impl Fn(&Self) -> bool) {
                for _ in 0..300 {
                    if done(self) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }

        impl Drop for Harness {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
        }

        fn counter(recorder: &DebuggingRecorder, name: &str, kind: &str) -> u64 {
            recorder
                .snapshotter()
                .snapshot()
                .into_vec()
                .into_iter()
                .filter(|(key, ..)| {
                    key.key().name() == name
                        && key
                            .key()
                            .labels()
                            .any(|l| l.key() == "type" && l.value() == kind)
                })
                .map(|(.., value)| match value {
                    DebugValue::Counter(n) => n,
                    _ => 0,
                })
                .sum()
        }

        #[actix::test]
        async fn fifty_bad_tokens_from_one_ip_make_one_violation_one_notice_and_a_block() {
            let recorder = DebuggingRecorder::new();
            let _metrics = metrics::set_default_local_recorder(&recorder);
            let app = Harness::start();

            // As the HTTP layer does: every refused token is passed on; the
            // five that make the block are answered 401, the rest 429 with
            // the time left.
            let mut answers = Vec::new();
            for _ in 0..50 {
                answers.push(app.monitor.failed_auth(IP));
                app.clock.advance(Duration::from_millis(100));
            }
            assert!(answers[..5].iter().all(Option::is_none), "{answers:?}");
            assert!(answers[5..].iter().all(Option::is_some), "{answers:?}");
            for _ in 0..3 {
                app.monitor.failed_auth(OTHER_IP);
            }
            app.settle(|app| {
                !app.audit_rows().is_empty()
                    && !app.notifications().is_empty()
                    && app.security_log_lines() > 0
            })
            .await;

            let rows = app.audit_rows();
            assert_eq!(rows.len(), 1);
            assert_eq!(rows[0].operation, "security_violation");
            assert!(rows[0].security_violation);
            assert_eq!(rows[0].ip_address.as_deref(), Some(IP));
            assert_eq!(rows[0].details["type"], "repeated_failed_auth");
            assert_eq!(rows[0].details["severity"], "high");
            assert_eq!(app.security_log_lines(), 1);

            let notifications = app.notifications();
            assert_eq!(notifications.len(), 1);
            assert_eq!(notifications[0].tenant_id, None);
            let NotificationEvent::SecurityViolation {
                violation_type,
                subject,
                count,
                ..
            } = &notifications[0].event
            else {
                panic!("not a security violation: {:?}", notifications[0].event);
            };
            assert_eq!(violation_type, "repeated_failed_auth");
            assert_eq!(subject, IP);
            assert_eq!(*count, 1);

            assert!(app.monitor.blocked(IP).is_some());
            assert_eq!(app.monitor.blocked(OTHER_IP), None);
            assert_eq!(
                counter(
                    &recorder,
                    "security_violations_total",
                    "repeated_failed_auth"
                ),
                1
            );
        }

        #[actix::test]
        async fn repeated_cross_tenant_probes_are_each_audited_but_notified_once() {
            let app = Harness::start();
            for resource in ["mb_1", "mb_2", "mb_3"] {
                app.monitor.report(Violation::access(
                    ViolationType::CrossTenantAccess,
                    "acme",
                    "p_1",
                    resource,
                    "media buy of another tenant",
                ));
                app.clock.advance(Duration::from_secs(1));
            }
            app.settle(|app| app.audit_rows().len() == 3).await;

            let rows = app.audit_rows();
            assert_eq!(rows.len(), 3);
            assert!(rows.iter().all(|r| r.security_violation
                && r.tenant_id.as_deref() == Some("acme")
                && r.principal_id.as_deref() == Some("p_1")));
            let notifications = app.notifications();
            assert_eq!(notifications.len(), 1);
            assert_eq!(notifications[0].tenant_id.as_deref(), Some("acme"));
            assert!(matches!(
                &notifications[0].event,
                NotificationEvent::SecurityViolation { severity, resource_id, .. }
                    if severity == "critical" && resource_id.as_deref() == Some("mb_1")
            ));
        }

        #[actix::test]
        async fn violations_other_producers_record_are_announced_through_the_gate() {
            let app = Harness::start();
            // The monitor's own violation: one row, one notice, never a
            // second one when its row comes back committed.
            app.monitor.report(Violation::access(
                ViolationType::CrossTenantAccess,
                "acme",
                "p_1",
                "mb_1",
                "media buy of another tenant",
            ));
            // Another service's violations, ingested: a burst from one
            // subject is one notice; another subject is another; a failed
            // operation that is no violation is none.
            let ingested = |principal: &str| {
                let mut event = AuditEvent::new("login_anomaly", t0())
                    .with_tenant("acme")
                    .with_principal(principal, None)
                    .with_details(serde_json::json!({
                        "type": "credential_stuffing",
                        "severity": "critical",
                    }))
                    .failed("42 passwords tried");
                event.security_violation = true;
                event
            };
            for _ in 0..5 {
                app.auditor.record(Source::Api, ingested("p_evil"));
            }
            app.auditor.record(Source::Api, ingested("p_other"));
            app.auditor.record(
                Source::Api,
                AuditEvent::new("sync_creatives", t0())
                    .with_tenant("acme")
                    .failed("upstream timed out"),
            );
            app.settle(|app| app.audit_rows().len() == 8 && app.notifications().len() >= 3)
                .await;

            let notifications = app.notifications();
            let told: Vec<(String, String, u64)> = notifications
                .iter()
                .map(|n| match &n.event {
                    NotificationEvent::SecurityViolation {
                        violation_type,
                        subject,
                        count,
                        ..
                    } => (violation_type.clone(), subject.clone(), *count),
                    other => panic!("not a violation notice: {other:?}"),
                })
                .collect();
            assert_eq!(
                told,
                [
                    ("cross_tenant_access".to_owned(), "p_1".to_owned(), 1),
                    ("credential_stuffing".to_owned(), "p_evil".to_owned(), 1),
                    ("credential_stuffing".to_owned(), "p_other".to_owned(), 1),
                ]
            );
            assert!(
                notifications
                    .iter()
                    .all(|n| n.tenant_id.as_deref() == Some("acme"))
            );
        }
    }
}
