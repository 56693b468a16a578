//! Overseer's actors, the typed messages they exchange and the port traits they
//! call.
//!
//! This crate knows nothing about sqlx or HTTP frameworks: it defines small port
//! traits (such as [`Clock`] and [`db_watch::DatabaseProbe`]) and the service
//! crate implements them. That keeps actor logic testable with in-memory fakes
//! *and* with the real store, and keeps the dependency arrow one-way
//! (service -> actors).
//!
//! Every actor of the service is started through [`supervisor::Supervisor`].

pub mod activity;
pub mod agent_run;
pub mod alerts;
pub mod audit;
pub mod clock;
pub mod db_watch;
pub mod mock_adapter;
pub mod notify;
pub mod scheduler;
pub mod security;
pub mod slack;
pub mod supervisor;
pub mod webhook;

pub use clock::{Clock, ManualClock, SystemClock};
