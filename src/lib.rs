//! Overseer: the operations backbone of an ad-sales agent platform.
//!
//! The map is `shared/design/ARCHITECTURE.md`; the entry point for a running
//! service is [`Application::build`].

pub mod adapters;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod outbound;
pub mod services;
pub mod ssrf;
pub mod startup;
pub mod store;
pub mod supervision;
pub mod telemetry;

pub use startup::Application;
