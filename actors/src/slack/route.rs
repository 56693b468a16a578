//! The routing table: which Slack webhook an event goes to, how loud it is and
//! how its message is titled. One table, in code and (the same) in docs/slack.md.

use std::fmt;

use serde::Serialize;

use crate::notify::NotificationEvent;

/// A tenant's three incoming webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// `slack_webhook_url`: operational news.
    General,
    /// `slack_audit_webhook_url`: security and compliance.
    Audit,
    /// `hitl_webhook_url`: a human must act.
    Hitl,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::General, Channel::Audit, Channel::Hitl];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::General => "general",
            Channel::Audit => "audit",
            Channel::Hitl => "hitl",
        }
    }

    /// `general`, `audit` or `hitl`; anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How loud a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// `low`/`medium` read as warning; unknown words as info.
    pub fn parse(s: &str) -> Self {
        match s.to_ascii_lowercase().as_str() {
            "critical" => Severity::Critical,
            "high" => Severity::High,
            "warning" | "medium" | "low" => Severity::Warning,
            _ => Severity::Info,
        }
    }
}

/// One line of the routing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub kind: &'static str,
    pub channel: Channel,
    pub severity: Severity,
    pub emoji: &'static str,
    pub title: &'static str,
}

const fn rule(
    kind: &'static str,
    channel: Channel,
    severity: Severity,
    emoji: &'static str,
    title: &'static str,
) -> Rule {
    Rule {
        kind,
        channel,
        severity,
        emoji,
        title,
    }
}

use Channel::{Audit, General, Hitl};
use Severity::{High, Info, Warning};

/// The routing table. `security_violation` takes its severity from the
/// event; `alert_firing` / `alert_resolved` take channel and severity from the
/// alert rule (the table gives the defaults); `webhook_failing` goes to the
/// general webhook when the audit webhook is the one failing; a
/// `configuration_changed` that is a privilege change (a token issued, a
/// tenant reactivated, a principal's token rotated) is critical and titled
/// [`PRIVILEGE_CHANGE_TITLE`].
pub const ROUTES: &[Rule] = &[
    rule(
        "media_buy_created",
        General,
        Info,
        ":new:",
        "Media buy created",
    ),
    rule(
        "approval_required",
        Hitl,
        Warning,
        ":raising_hand:",
        "Approval required",
    ),
    rule(
        "media_buy_activated",
        General,
        Info,
        ":rocket:",
        "Campaign activated",
    ),
    rule(
        "media_buy_completed",
        General,
        Info,
        ":checkered_flag:",
        "Campaign completed",
    ),
    rule("media_buy_failed", General, High, ":x:", "Media buy failed"),
    rule(
        "media_buy_updated",
        Audit,
        Info,
        ":pencil2:",
        "Media buy updated",
    ),
    rule(
        "creative_pending_review",
        General,
        Info,
        ":art:",
        "Creatives awaiting review",
    ),
    rule(
        "creative_reviewed",
        Audit,
        Info,
        ":mag:",
        "Creative reviewed",
    ),
    rule(
        "workflow_approved",
        General,
        Info,
        ":white_check_mark:",
        "Approval granted",
    ),
    rule(
        "workflow_rejected",
        General,
        Warning,
        ":no_entry:",
        "Approval rejected",
    ),
    rule(
        "configuration_changed",
        Audit,
        Info,
        ":gear:",
        "Configuration changed",
    ),
    rule(
        "operation_failed",
        Audit,
        Warning,
        ":warning:",
        "Operation failed",
    ),
    rule(
        "high_value_transaction",
        Audit,
        Warning,
        ":moneybag:",
        "High-value transaction",
    ),
    rule(
        "security_violation",
        Audit,
        High,
        ":rotating_light:",
        "Security violation",
    ),
    rule("alert_firing", General, High, ":fire:", "Alert firing"),
    rule(
        "alert_resolved",
        General,
        Info,
        ":large_green_circle:",
        "Alert resolved",
    ),
    rule(
        "webhook_failing",
        Audit,
        High,
        ":broken_heart:",
        "Webhook failing",
    ),
];

/// The title of a privilege change's notice (a `configuration_changed`
/// with `privilege`).
pub const PRIVILEGE_CHANGE_TITLE: &str = "Privilege change";

/// Where an event goes and how it looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub channel: Channel,
    pub severity: Severity,
    pub emoji: &'static str,
    pub title: &'static str,
}

/// The table's line for `kind`, if any.
pub fn rule_for(kind: &str) -> Option<&'static Rule> {
    ROUTES.iter().find(|r| r.kind == kind)
}

/// Routes `event` by the table, with the per-event overrides described on
/// [`ROUTES`].
pub fn route(event: &NotificationEvent) -> Route {
    let rule = rule_for(event.kind()).unwrap_or(&ROUTES[0]);
    let mut route = Route {
        channel: rule.channel,
        severity: rule.severity,
        emoji: rule.emoji,
        title: rule.title,
    };
    match event {
        NotificationEvent::SecurityViolation { severity, .. } => {
            route.severity = Severity::parse(severity).max(Severity::Warning);
        }
        NotificationEvent::AlertFiring {
            channel, severity, ..
        } => {
            route.channel = Channel::parse(channel).unwrap_or(route.channel);
            route.severity = Severity::parse(severity);
        }
        NotificationEvent::AlertResolved { channel, .. } => {
            route.channel = Channel::parse(channel).unwrap_or(route.channel);
        }
        NotificationEvent::WebhookFailing { target, .. } if target == "slack_audit" => {
            route.channel = Channel::General;
        }
        NotificationEvent::ConfigurationChanged {
            privilege: true, ..
        } => {
            route.severity = Severity::Critical;
            route.emoji = ":key:";
            route.title = PRIVILEGE_CHANGE_TITLE;
        }
        _ => {}
    }
    route
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_in_the_table_once() {
        let mut kinds: Vec<_> = ROUTES.iter().map(|r| r.kind).collect();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), ROUTES.len());
        for event in crate::notify::tests::one_of_each() {
            assert!(
                rule_for(event.kind()).is_some(),
                "{} not routed",
                event.kind()
            );
        }
        assert_eq!(crate::notify::tests::one_of_each().len(), ROUTES.len());
    }

    /// The routing table in docs/slack.md says what this table says.
    #[test]
    fn the_documented_table_is_this_table() {
        let page = include_str!("../../../docs/slack.md");
        for rule in ROUTES {
            let row = page
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", rule.kind)))
                .unwrap_or_else(|| panic!("{} is not in docs/slack.md's routing table", rule.kind));
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            assert!(
                cells[2].starts_with(rule.channel.as_str()) || cells[2].starts_with("the rule's"),
                "{row}"
            );
            assert!(
                cells[3].starts_with(rule.severity.as_str()) || cells[3].starts_with("the "),
                "{row}"
            );
            assert!(
                cells[4].starts_with(&format!("{} {}", rule.emoji, rule.title)),
                "{row}"
            );
        }
    }

    #[test]
    fn approvals_go_to_the_human_in_the_loop_and_security_to_audit() {
        let events = crate::notify::tests::one_of_each();
        let channel_of =
            |kind: &str| route(events.iter().find(|e| e.kind() == kind).expect("sample")).channel;
        assert_eq!(channel_of("approval_required"), Channel::Hitl);
        assert_eq!(channel_of("security_violation"), Channel::Audit);
        assert_eq!(channel_of("high_value_transaction"), Channel::Audit);
        assert_eq!(channel_of("media_buy_activated"), Channel::General);
    }

    #[test]
    fn alerts_follow_their_rule_and_a_failing_audit_webhook_reports_elsewhere() {
        let alert = NotificationEvent::AlertFiring {
            rule: "approvals_pending".into(),
            severity: "warning".into(),
            channel: "hitl".into(),
            summary: "3 approvals pending for more than 24 h".into(),
            value: 3.0,
            threshold: 0.0,
            reminder: false,
        };
        assert_eq!(route(&alert).channel, Channel::Hitl);
        assert_eq!(route(&alert).severity, Severity::Warning);
        let failing = |target: &str| NotificationEvent::WebhookFailing {
            target: target.into(),
            endpoint: "https://hooks.slack.com/services/T…/B…/****".into(),
            reason: "no_service".into(),
            status: Some(404),
        };
        assert_eq!(route(&failing("slack_audit")).channel, Channel::General);
        assert_eq!(route(&failing("slack_general")).channel, Channel::Audit);
    }

    #[test]
    fn a_privilege_change_is_critical_on_the_audit_channel() {
        let change = |privilege: bool| NotificationEvent::ConfigurationChanged {
            target: "token".into(),
            changed: vec!["admin_token_created".into()],
            actor: "super_admin".into(),
            privilege,
        };
        let plain = route(&change(false));
        assert_eq!(
            (plain.channel, plain.severity, plain.title),
            (Channel::Audit, Severity::Info, "Configuration changed")
        );
        let privileged = route(&change(true));
        assert_eq!(
            (privileged.channel, privileged.severity, privileged.title),
            (Channel::Audit, Severity::Critical, PRIVILEGE_CHANGE_TITLE)
        );
        // Rows queued before the flag existed read as no privilege change.
        let old: NotificationEvent = serde_json::from_str(
            r#"{"kind":"configuration_changed","target":"settings","changed":["x"],"actor":"a"}"#,
        )
        .unwrap();
        assert_eq!(old, change_of("settings", false));
        assert!(
            !serde_json::to_string(&change(false))
                .unwrap()
                .contains("privilege")
        );
    }

    fn change_of(target: &str, privilege: bool) -> NotificationEvent {
        NotificationEvent::ConfigurationChanged {
            target: target.into(),
            changed: vec!["x".into()],
            actor: "a".into(),
            privilege,
        }
    }
}
