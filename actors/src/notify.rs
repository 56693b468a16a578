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
}

#[cfg(test)]
mod tests {
    use super::*;

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
