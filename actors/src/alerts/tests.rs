#![allow(clippy::unwrap_used, reason = "test code")]

use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};

use super::*;
use crate::notify::NotificationEvent;

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
