//! Notifications: the typed events that tell people about something on Slack.
//!
//! Producers never post to Slack themselves. A state change writes its
//! [`Notification`] into the outbox in the same transaction as the change (the
//! service's store does that); actors that detect something (the security
//! monitor) enqueue through the [`NotificationOutbox`] port. The Slack router
//! reads the outbox, picks the webhook (general, audit or human-in-the-loop)
//! from the event's kind, paces and retries; a restart loses nothing because
//! the row is there before anyone tries to send it.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Budgets strictly above this amount (in the buy's currency) are a
/// high-value transaction; exactly this amount is not.
pub const HIGH_VALUE_THRESHOLD: f64 = 10_000.0;

/// What happened, with what a message about it needs. Serialised with a
/// `kind` tag; the outbox stores the kind in its own column too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NotificationEvent {
    /// A media buy was created (general channel).
    MediaBuyCreated {
        media_buy_id: String,
        principal_id: String,
        order_name: String,
        budget: f64,
        currency: String,
        status: String,
    },
    /// A media buy's budget is above the tenant's approval threshold: a human
    /// must approve it (human-in-the-loop channel).
    ApprovalRequired {
        media_buy_id: String,
        workflow_id: String,
        principal_id: String,
        order_name: String,
        budget: f64,
        currency: String,
        threshold: f64,
    },
    /// Creatives were synced and wait for review (general channel).
    CreativePendingReview {
        principal_id: String,
        creative_ids: Vec<String>,
    },
    /// Settings, principals, tokens or the tenant itself changed (audit
    /// channel). `changed` names keys, never values: webhook URLs and tokens
    /// stay out of Slack.
    ConfigurationChanged {
        /// `settings`, `principal`, `token` or `tenant`.
        target: String,
        changed: Vec<String>,
        actor: String,
        /// A privilege change: a token issued, a tenant reactivated, a
        /// principal's token rotated. Announced as critical (a privilege
        /// escalation is, to whoever watches the audit channel). Absent in
        /// rows queued before it existed: `false`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        privilege: bool,
    },
    /// A security violation (audit channel, always). `count` is how many
    /// violations of this rule and subject the notice stands for.
    SecurityViolation {
        violation_type: String,
        severity: String,
        subject: String,
        reason: String,
        resource_id: Option<String>,
        count: u64,
    },
    /// A media buy whose budget is strictly above [`HIGH_VALUE_THRESHOLD`]
    /// (audit channel).
    HighValueTransaction {
        media_buy_id: String,
        principal_id: String,
        budget: f64,
        currency: String,
    },
    /// A media buy went live (general channel).
    MediaBuyActivated {
        media_buy_id: String,
        principal_id: String,
        order_name: String,
        reason: String,
    },
    /// A media buy's flight ended (general channel).
    MediaBuyCompleted {
        media_buy_id: String,
        principal_id: String,
        order_name: String,
        reason: String,
    },
    /// A media buy could not run (general channel).
    MediaBuyFailed {
        media_buy_id: String,
        principal_id: String,
        order_name: String,
        error: String,
    },
    /// A media buy was changed (audit channel): `changed` names fields.
    MediaBuyUpdated {
        media_buy_id: String,
        principal_id: String,
        changed: Vec<String>,
        actor: String,
    },
    /// A creative was approved or rejected by a reviewer (audit channel).
    CreativeReviewed {
        creative_id: String,
        principal_id: String,
        /// `approved` or `rejected`.
        decision: String,
        actor: String,
        reason: Option<String>,
    },
    /// A human approved a workflow task (general channel).
    WorkflowApproved {
        workflow_id: String,
        media_buy_id: String,
        decided_by: String,
        comment: Option<String>,
    },
    /// A human rejected a workflow task (general channel).
    WorkflowRejected {
        workflow_id: String,
        media_buy_id: String,
        decided_by: String,
        comment: Option<String>,
    },
    /// An operation reported as failed (audit channel).
    OperationFailed {
        operation: String,
        principal_id: Option<String>,
        error: String,
    },
    /// An alert rule started firing; `channel` is the rule's channel
    /// (`general`, `audit` or `hitl`).
    AlertFiring {
        rule: String,
        severity: String,
        channel: String,
        summary: String,
        value: f64,
        threshold: f64,
        /// A reminder that the alert is still firing (every
        /// `ALERT_REPEAT_INTERVAL`), not its first notice.
        #[serde(default)]
        reminder: bool,
    },
    /// An alert rule stopped firing (same channel as it fired on).
    AlertResolved {
        rule: String,
        severity: String,
        channel: String,
        summary: String,
    },
    /// A webhook we post to keeps failing. `target` is `slack_general`,
    /// `slack_audit`, `slack_hitl` or `buyer`; `endpoint` is already masked.
    /// Audit channel, or general when the audit webhook is the one failing.
    WebhookFailing {
        target: String,
        endpoint: String,
        reason: String,
        status: Option<u16>,
    },
}

impl NotificationEvent {
    /// The event's kind, as in its serialised `kind` tag.
    pub fn kind(&self) -> &'static str {
        match self {
            NotificationEvent::MediaBuyCreated { .. } => "media_buy_created",
            NotificationEvent::ApprovalRequired { .. } => "approval_required",
            NotificationEvent::CreativePendingReview { .. } => "creative_pending_review",
            NotificationEvent::ConfigurationChanged { .. } => "configuration_changed",
            NotificationEvent::SecurityViolation { .. } => "security_violation",
            NotificationEvent::HighValueTransaction { .. } => "high_value_transaction",
            NotificationEvent::MediaBuyActivated { .. } => "media_buy_activated",
            NotificationEvent::MediaBuyCompleted { .. } => "media_buy_completed",
            NotificationEvent::MediaBuyFailed { .. } => "media_buy_failed",
            NotificationEvent::MediaBuyUpdated { .. } => "media_buy_updated",
            NotificationEvent::CreativeReviewed { .. } => "creative_reviewed",
            NotificationEvent::WorkflowApproved { .. } => "workflow_approved",
            NotificationEvent::WorkflowRejected { .. } => "workflow_rejected",
            NotificationEvent::OperationFailed { .. } => "operation_failed",
            NotificationEvent::AlertFiring { .. } => "alert_firing",
            NotificationEvent::AlertResolved { .. } => "alert_resolved",
            NotificationEvent::WebhookFailing { .. } => "webhook_failing",
        }
    }
}

/// One notification to queue: the event, for whom, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Idempotency key of the outbox row.
    pub id: Uuid,
    /// `None` for system events (service-wide default webhooks).
    pub tenant_id: Option<String>,
    pub event: NotificationEvent,
    pub created_at: DateTime<Utc>,
}

impl Notification {
    pub fn new(tenant_id: Option<String>, event: NotificationEvent, now: DateTime<Utc>) -> Self {
        Self {
            id: Uuid::new_v4(),
            tenant_id,
            event,
            created_at: now,
        }
    }
}

/// The port: puts a notification into the durable outbox. The error is a short
/// reason (never a URL).
pub trait NotificationOutbox: Send + Sync + 'static {
    fn enqueue(
        &self,
        notification: Notification,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'static>>;

    /// Several at once (one transaction where the implementation can).
    fn enqueue_all(
        &self,
        notifications: Vec<Notification>,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'static>> {
        let each: Vec<_> = notifications.into_iter().map(|n| self.enqueue(n)).collect();
        Box::pin(async move {
            for enqueued in each {
                enqueued.await?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One event of every kind, with plausible values.
    pub(crate) fn one_of_each() -> Vec<NotificationEvent> {
        use NotificationEvent::*;
        let s = |v: &str| v.to_owned();
        vec![
            MediaBuyCreated {
                media_buy_id: s("mb_1"),
                principal_id: s("p_1"),
                order_name: s("Spring launch"),
                budget: 5_000.0,
                currency: s("USD"),
                status: s("pending_activation"),
            },
            ApprovalRequired {
                media_buy_id: s("mb_1"),
                workflow_id: s("wf_1"),
                principal_id: s("p_1"),
                order_name: s("Spring launch"),
                budget: 50_000.0,
                currency: s("USD"),
                threshold: 25_000.0,
            },
            CreativePendingReview {
                principal_id: s("p_1"),
                creative_ids: vec![s("cr_1"), s("cr_2")],
            },
            ConfigurationChanged {
                target: s("settings"),
                changed: vec![s("slack_webhook_url")],
                actor: s("tenant admin"),
                privilege: false,
            },
            SecurityViolation {
                violation_type: s("failed_auth_threshold"),
                severity: s("high"),
                subject: s("203.0.113.9"),
                reason: s("5 failed authentications in 5 minutes"),
                resource_id: None,
                count: 5,
            },
            HighValueTransaction {
                media_buy_id: s("mb_1"),
                principal_id: s("p_1"),
                budget: 10_000.01,
                currency: s("USD"),
            },
            MediaBuyActivated {
                media_buy_id: s("mb_1"),
                principal_id: s("p_1"),
                order_name: s("Spring launch"),
                reason: s("flight started and creatives approved"),
            },
            MediaBuyCompleted {
                media_buy_id: s("mb_1"),
                principal_id: s("p_1"),
                order_name: s("Spring launch"),
                reason: s("flight ended"),
            },
            MediaBuyFailed {
                media_buy_id: s("mb_1"),
                principal_id: s("p_1"),
                order_name: s("Spring launch"),
                error: s("the ad server refused the order"),
            },
            MediaBuyUpdated {
                media_buy_id: s("mb_1"),
                principal_id: s("p_1"),
                changed: vec![s("budget")],
                actor: s("p_1"),
            },
            CreativeReviewed {
                creative_id: s("cr_1"),
                principal_id: s("p_1"),
                decision: s("rejected"),
                actor: s("tenant admin"),
                reason: Some(s("brand safety")),
            },
            WorkflowApproved {
                workflow_id: s("wf_1"),
                media_buy_id: s("mb_1"),
                decided_by: s("tenant admin"),
                comment: None,
            },
            WorkflowRejected {
                workflow_id: s("wf_1"),
                media_buy_id: s("mb_1"),
                decided_by: s("tenant admin"),
                comment: Some(s("budget too high")),
            },
            OperationFailed {
                operation: s("sync_creatives"),
                principal_id: Some(s("p_1")),
                error: s("upstream timeout"),
            },
            AlertFiring {
                rule: s("high_error_rate"),
                severity: s("high"),
                channel: s("general"),
                summary: s("7.5% of operations failed in the last 15 minutes"),
                value: 7.5,
                threshold: 5.0,
                reminder: false,
            },
            AlertResolved {
                rule: s("high_error_rate"),
                severity: s("high"),
                channel: s("general"),
                summary: s("error rate back under 5%"),
            },
            WebhookFailing {
                target: s("slack_general"),
                endpoint: s("https://hooks.slack.com/services/T…/B…/****"),
                reason: s("no_service"),
                status: Some(404),
            },
        ]
    }

    #[test]
    fn events_serialise_with_their_kind_tag() {
        let event = NotificationEvent::HighValueTransaction {
            media_buy_id: "mb_1".into(),
            principal_id: "p_1".into(),
            budget: 10_000.01,
            currency: "USD".into(),
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["kind"], event.kind());
        assert_eq!(
            serde_json::from_value::<NotificationEvent>(json).unwrap(),
            event
        );
    }
}
