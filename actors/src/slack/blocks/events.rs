//! What a message says about each kind of event (per-event copy).

use super::render::{Details, Field, Page};
use super::text::{format_amount, number, plural};
use crate::notify::{HIGH_VALUE_THRESHOLD, NotificationEvent};

/// What a message says about one event, independent of tenant and time.
#[derive(Debug)]
pub(super) struct Description<'a> {
    /// The kind's facts (raw values).
    pub(super) fields: Vec<Field>,
    /// Free text, if the kind has any.
    pub(super) details: Option<Details>,
    /// A short, one-line, raw statement of what happened.
    pub(super) fact: String,
    /// Where the button leads.
    pub(super) page: Page<'a>,
}

/// The per-kind facts of `event`.
pub(super) fn describe(event: &NotificationEvent) -> Description<'_> {
    use NotificationEvent as E;
    let joined = |list: &[String]| list.join(", ");
    match event {
        E::MediaBuyCreated {
            media_buy_id,
            principal_id,
            order_name,
            budget,
            currency,
            status,
        } => {
            let amount = format_amount(*budget, currency);
            Description {
                fact: format!("{order_name} ({media_buy_id}), {amount}, {status}"),
                fields: vec![
                    Field::new("Media buy", media_buy_id),
                    Field::new("Order", order_name),
                    Field::new("Principal", principal_id),
                    Field::new("Budget", amount),
                    Field::new("Status", status),
                ],
                details: None,
                page: Page::MediaBuy(media_buy_id),
            }
        }
        E::ApprovalRequired {
            media_buy_id,
            workflow_id,
            principal_id,
            order_name,
            budget,
            currency,
            threshold,
        } => {
            let amount = format_amount(*budget, currency);
            let threshold = format_amount(*threshold, currency);
            Description {
                fact: format!(
                    "{order_name} ({media_buy_id}): {amount} is above the {threshold} approval threshold"
                ),
                fields: vec![
                    Field::new("Media buy", media_buy_id),
                    Field::new("Workflow", workflow_id),
                    Field::new("Order", order_name),
                    Field::new("Principal", principal_id),
                    Field::new("Budget", amount),
                    Field::new("Threshold", threshold),
                ],
                details: None,
                page: Page::Workflow(workflow_id),
            }
        }
        E::CreativePendingReview {
            principal_id,
            creative_ids,
        } => {
            let count = creative_ids.len() as u64;
            Description {
                fact: format!(
                    "{} from {principal_id}",
                    plural(count, "creative", "creatives")
                ),
                fields: vec![
                    Field::new("Principal", principal_id),
                    Field::new("Creatives", count.to_string()),
                ],
                details: Some(Details::Labelled("Creative ids", joined(creative_ids))),
                page: Page::Creatives,
            }
        }
        E::ConfigurationChanged {
            target,
            changed,
            actor,
            privilege: _,
        } => Description {
            fact: format!("{target} ({}) by {actor}", joined(changed)),
            fields: vec![
                Field::new("Target", target),
                Field::new("Changed", joined(changed)),
                Field::new("Actor", actor),
            ],
            details: None,
            page: Page::Settings,
        },
        E::SecurityViolation {
            violation_type,
            severity: _,
            subject,
            reason,
            resource_id,
            count,
        } => {
            let mut fields = vec![
                Field::new("Violation", violation_type),
                Field::new("Subject", subject),
                Field::new("Count", count.to_string()),
            ];
            if let Some(resource) = resource_id {
                fields.push(Field::new("Resource", resource));
            }
            let times = if *count > 1 {
                format!(" ×{count}")
            } else {
                String::new()
            };
            Description {
                fact: format!("{violation_type} from {subject}{times}"),
                fields,
                details: Some(Details::Labelled("Reason", reason.clone())),
                page: Page::Security,
            }
        }
        E::HighValueTransaction {
            media_buy_id,
            principal_id,
            budget,
            currency,
        } => {
            let amount = format_amount(*budget, currency);
            let threshold = format_amount(HIGH_VALUE_THRESHOLD, currency);
            Description {
                fact: format!("{media_buy_id}: {amount} by {principal_id}"),
                fields: vec![
                    Field::new("Media buy", media_buy_id),
                    Field::new("Principal", principal_id),
                    Field::new("Budget", amount),
                    Field::new("Threshold", format!("above {threshold}")),
                ],
                details: None,
                page: Page::MediaBuy(media_buy_id),
            }
        }
        E::MediaBuyActivated {
            media_buy_id,
            principal_id,
            order_name,
            reason,
        }
        | E::MediaBuyCompleted {
            media_buy_id,
            principal_id,
            order_name,
            reason,
        } => Description {
            fact: format!("{order_name} ({media_buy_id})"),
            fields: vec![
                Field::new("Media buy", media_buy_id),
                Field::new("Order", order_name),
                Field::new("Principal", principal_id),
            ],
            details: Some(Details::Labelled("Reason", reason.clone())),
            page: Page::MediaBuy(media_buy_id),
        },
        E::MediaBuyFailed {
            media_buy_id,
            principal_id,
            order_name,
            error,
        } => Description {
            fact: format!("{order_name} ({media_buy_id})"),
            fields: vec![
                Field::new("Media buy", media_buy_id),
                Field::new("Order", order_name),
                Field::new("Principal", principal_id),
            ],
            details: Some(Details::Error(error.clone())),
            page: Page::MediaBuy(media_buy_id),
        },
        E::MediaBuyUpdated {
            media_buy_id,
            principal_id,
            changed,
            actor,
        } => Description {
            fact: format!("{media_buy_id} ({}) by {actor}", joined(changed)),
            fields: vec![
                Field::new("Media buy", media_buy_id),
                Field::new("Principal", principal_id),
                Field::new("Changed", joined(changed)),
                Field::new("Actor", actor),
            ],
            details: None,
            page: Page::MediaBuy(media_buy_id),
        },
        E::CreativeReviewed {
            creative_id,
            principal_id,
            decision,
            actor,
            reason,
        } => Description {
            fact: format!("{creative_id} {decision} by {actor}"),
            fields: vec![
                Field::new("Creative", creative_id),
                Field::new("Principal", principal_id),
                Field::new("Decision", decision),
                Field::new("Reviewer", actor),
            ],
            details: reason
                .as_ref()
                .map(|reason| Details::Labelled("Reason", reason.clone())),
            page: Page::Creatives,
        },
        E::WorkflowApproved {
            workflow_id,
            media_buy_id,
            decided_by,
            comment,
        }
        | E::WorkflowRejected {
            workflow_id,
            media_buy_id,
            decided_by,
            comment,
        } => {
            let verb = if matches!(event, E::WorkflowApproved { .. }) {
                "approved"
            } else {
                "rejected"
            };
            Description {
                fact: format!("{media_buy_id} {verb} by {decided_by}"),
                fields: vec![
                    Field::new("Workflow", workflow_id),
                    Field::new("Media buy", media_buy_id),
                    Field::new("Decided by", decided_by),
                ],
                details: comment
                    .as_ref()
                    .map(|comment| Details::Labelled("Comment", comment.clone())),
                page: Page::Workflow(workflow_id),
            }
        }
        E::OperationFailed {
            operation,
            principal_id,
            error,
        } => {
            let mut fields = vec![Field::new("Operation", operation)];
            let mut fact = operation.clone();
            if let Some(principal) = principal_id {
                fields.push(Field::new("Principal", principal));
                fact = format!("{operation} for {principal}");
            }
            Description {
                fact,
                fields,
                details: Some(Details::Error(error.clone())),
                page: Page::Activity,
            }
        }
        E::AlertFiring {
            rule,
            severity: _,
            channel,
            summary,
            value,
            threshold,
            reminder,
        } => Description {
            fact: format!(
                "{}{rule} at {} (threshold {})",
                if *reminder { "still firing: " } else { "" },
                number(*value),
                number(*threshold)
            ),
            fields: {
                let mut fields = vec![
                    Field::new("Rule", rule),
                    Field::new("Value", number(*value)),
                    Field::new("Threshold", number(*threshold)),
                    Field::new("Channel", channel),
                ];
                if *reminder {
                    fields.push(Field::new("Reminder", "still firing"));
                }
                fields
            },
            details: Some(Details::Labelled("Summary", summary.clone())),
            page: Page::Alerts,
        },
        E::AlertResolved {
            rule,
            severity: _,
            channel,
            summary,
        } => Description {
            fact: rule.clone(),
            fields: vec![Field::new("Rule", rule), Field::new("Channel", channel)],
            details: Some(Details::Labelled("Summary", summary.clone())),
            page: Page::Alerts,
        },
        E::WebhookFailing {
            target,
            endpoint,
            reason,
            status,
        } => {
            let mut fields = vec![
                Field::new("Target", target),
                Field::new("Endpoint", endpoint),
            ];
            let mut fact = target.clone();
            if let Some(status) = status {
                fields.push(Field::new("Status", status.to_string()));
                fact = format!("{target} (HTTP {status})");
            }
            Description {
                fact,
                fields,
                details: Some(Details::Labelled("Reason", reason.clone())),
                page: Page::Settings,
            }
        }
    }
}
