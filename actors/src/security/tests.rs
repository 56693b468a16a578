#![allow(clippy::unwrap_used, reason = "test code")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use uuid::Uuid;

use super::actor::audit_event;
use super::monitor::{MAX_OWN_ROWS, OwnRows};
use super::violations::MAX_RECORDED_TEXT_CHARS;
use super::*;
use crate::audit::{AuditEvent, Auditor, Source};
use crate::notify::{Notification, NotificationEvent, NotificationOutbox};
use crate::supervisor::{RestartPolicy, Supervisor};

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
            let dir =
                std::env::temp_dir().join(format!("overseer-security-{}", uuid::Uuid::new_v4()));
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
