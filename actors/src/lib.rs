//! Overseer's actors, the typed messages they exchange and the port traits they
//! call.
//!
//! This crate knows nothing about sqlx or HTTP frameworks: it defines small port
//! traits (such as [`Clock`]) and the service crate implements them. That keeps
//! actor logic testable with in-memory fakes *and* with the real store, and keeps
//! the dependency arrow one-way (service -> actors).

pub mod clock;

pub use clock::{Clock, ManualClock, SystemClock};
