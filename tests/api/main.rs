//! Integration tests: one binary. Every behaviour runs on SQLite and on
//! PostgreSQL (`<test>::sqlite`, `<test>::postgres`).

// A failed unwrap is a failed test, with its location: exactly what we want here.
#![allow(clippy::unwrap_used, reason = "test code")]

mod helpers;
#[path = "../support/prometheus.rs"]
mod prometheus;
mod teardown;

mod activity;
mod agent_runs;
mod alerts;
mod audit;
mod audit_query;
mod audit_resilience;
mod binary;
mod dashboard;
mod domain;
mod errors;
mod health;
mod otlp;
mod outage;
mod push_configs;
mod receiver;
mod reports;
mod scheduler;
mod security;
mod slack;
mod sse;
mod store;
mod supervision;
mod tenants;
mod webhooks;
