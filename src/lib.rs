//! Overseer: the operations backbone of an ad-sales agent platform.
//!
//! The map is `shared/design/ARCHITECTURE.md`; the entry point for a running
//! service is [`Application::build`].

pub mod activity;
pub mod agent_runs;
pub mod audit;
pub mod config;
pub mod domain;
pub mod error;
pub mod health;
pub mod http;
pub mod outbound;
pub mod reports;
pub mod services;
pub mod slack;
pub mod ssrf;
pub mod startup;
pub mod store;
pub mod supervision;
pub mod telemetry;
pub mod webhooks;

pub use startup::Application;
