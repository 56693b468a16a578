//! The alert rules and the AlertActor: every `ALERT_EVAL_INTERVAL` the rules
//! are evaluated over recent data (audit trail, workflow tasks, agent runs,
//! a database check), and each (rule, scope) moves through
//! `pending → firing → resolved` with its state in the database.
//!
//! The arithmetic is plain data: [`Thresholds`] turns what the store counted
//! into a [`Breach`] or nothing, and [`decide`] turns the current episode and
//! the breach into a [`Step`], both unit-tested with explicit times. The
//! actor only times, reads, applies and reports. Every step that pages is one
//! call to [`AlertStore::apply`], which writes the episode, its outbox row and
//! its audit row in one transaction, conditional on the episode's `revision`:
//! a restart re-reads the state and neither pages early nor forgets to send
//! the resolved notice, and two replicas never page twice.
//!
//! `database_unhealthy` is the exception, because its state cannot be written
//! to a database that is down: it lives in memory (a CRITICAL log line, the
//! `alerts_firing` gauge and `/health` say so at once), and the episode —
//! its firing and resolved notices — is written when the database answers
//! again. A process that restarts while the database is down forgets it.

mod actor;
mod episodes;
mod rules;
mod store;
#[cfg(test)]
mod tests;

pub use self::actor::{
    AlertActor, AlertPorts, Alerts, AlertsStatus, Evaluate, EvaluationReport, Notified, RuleError,
};
pub use self::episodes::{
    Alert, AlertState, DatabaseAlert, DatabaseStep, Step, audit_row, decide, notice, plan,
};
pub use self::rules::{AlertConfig, Breach, Readings, Rule, SlowRuns, Tally, Windows, agent_scope};
pub use self::store::{AlertChange, AlertStore};
