//! Port adapters: the actors' port traits implemented over the store and
//! the outbound HTTP client (the audit trail's store, Slack's transport and
//! outbox, the buyers' webhooks).

pub mod audit;
pub mod slack;
pub mod webhooks;
