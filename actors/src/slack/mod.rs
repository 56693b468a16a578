//! Slack: the routing table, Block Kit messages, pacing and the router actor
//! that drains the notification outbox.

pub mod blocks;
pub mod pacer;
pub mod route;
pub mod router;

pub use route::{Channel, Route, Severity, route};
pub use router::{
    FailingWebhook, Outcome, PendingRow, Response, SlackConfig, SlackRouter, SlackStatus,
    SlackStore, SlackTransport, WebhookTarget, Webhooks,
};
