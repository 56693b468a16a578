//! The Slack router: drains the notification outbox to the tenants' Slack
//! webhooks, off every request path.
//!
//! Every poll it reads the due outbox rows (oldest first), routes each by
//! [`super::route`] to the tenant's general, audit or human-in-the-loop
//! webhook, and groups them by webhook. Per webhook, one send runs at a time,
//! paced by a token bucket ([`super::pacer`]); when more than the digest
//! threshold wait, they go as one digest message. Rows are claimed with a
//! lease before a send (so a second replica skips them) and marked after it:
//!
//! - 2xx: `sent`;
//! - 429: the webhook waits `Retry-After` (or the default) and the same
//!   message goes again; a 429 never uses up attempts;
//! - 408, 5xx, timeouts, connection errors: backoff with jitter, up to the
//!   attempt budget, then `failed`;
//! - other 4xx (`invalid_payload`, `no_service`, `channel_is_archived`, 403,
//!   404, 410, …): `failed` at once, and the webhook is marked failing: shown
//!   in `/health`, audited as `slack_webhook_failing` and announced on another
//!   of the tenant's webhooks (once, until a send to it succeeds again).
//!
//! **The one duplicate window**: if the process dies after Slack accepted a
//! message and before the row is marked `sent`, the row's lease expires and
//! the message is sent again after the restart. Slack's incoming webhooks take
//! no idempotency key, so this cannot be closed from our side; the message's
//! context line carries the notification id, so a reader can tell.

mod actor;
mod handle;
mod ports;
mod send;
#[cfg(test)]
mod tests;

pub use self::actor::{SlackRouterActor, failure_notice};
pub use self::handle::{FailingWebhook, SlackConfig, SlackRouter, SlackStatus};
pub use self::ports::{
    Outcome, PendingRow, Response, SlackStore, SlackTransport, Verdict, WebhookTarget, Webhooks,
    classify,
};
