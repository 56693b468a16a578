use std::time::Duration;

use chrono::Utc;

use super::ports::slack_error;
use super::*;
use crate::audit::AuditEvent;
use crate::slack::route::{Channel, route};

fn answer(status: u16, body: &str) -> Result<Response, String> {
    Ok(Response {
        status,
        retry_after: None,
        body: body.to_owned(),
    })
}

#[test]
fn answers_are_classified_as_slack_documents_them() {
    let default = Duration::from_secs(30);
    assert_eq!(classify(&answer(200, "ok"), default), Verdict::Delivered);
    assert_eq!(
        classify(&answer(429, ""), default),
        Verdict::RateLimited(default)
    );
    let with_header = Ok(Response {
        status: 429,
        retry_after: Some(Duration::from_secs(3)),
        body: String::new(),
    });
    assert_eq!(
        classify(&with_header, default),
        Verdict::RateLimited(Duration::from_secs(3))
    );
    assert!(matches!(
        classify(&answer(503, ""), default),
        Verdict::Transient(_)
    ));
    assert!(matches!(
        classify(&answer(408, ""), default),
        Verdict::Transient(_)
    ));
    assert!(matches!(
        classify(&Err("timed out".into()), default),
        Verdict::Transient(_)
    ));
    for (status, body) in [
        (404, "no_service"),
        (400, "invalid_payload"),
        (410, "channel_is_archived"),
        (403, "action_prohibited"),
    ] {
        assert_eq!(
            classify(&answer(status, body), default),
            Verdict::Permanent {
                status,
                reason: format!("HTTP {status}: {body}")
            }
        );
    }
}

#[test]
fn failed_operations_get_a_notice_and_security_events_do_not() {
    let now = Utc::now();
    let failed = AuditEvent::new("sync_creatives", now)
        .with_tenant("acme")
        .failed("upstream timed out");
    let notice = failure_notice(&failed, now).expect("a notice");
    assert_eq!(notice.tenant_id.as_deref(), Some("acme"));
    assert_eq!(notice.event.kind(), "operation_failed");
    assert_eq!(route(&notice.event).channel, Channel::Audit);

    assert!(failure_notice(&AuditEvent::new("sync_creatives", now), now).is_none());
    for operation in [
        "token_rejected",
        "security_violation",
        "slack_webhook_failing",
    ] {
        let event = AuditEvent::new(operation, now).failed("no");
        assert!(failure_notice(&event, now).is_none(), "{operation}");
    }
    let mut violation = AuditEvent::new("get_media_buy", now).failed("not yours");
    violation.security_violation = true;
    assert!(failure_notice(&violation, now).is_none());
}

#[test]
fn only_an_error_code_of_the_body_is_kept() {
    assert_eq!(slack_error("no_service\n"), ": no_service");
    assert_eq!(slack_error("<html>https://hooks.slack.com/x</html>"), "");
    assert_eq!(slack_error(&"a".repeat(500)).len(), 2 + 64);
}
