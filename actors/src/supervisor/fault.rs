//! Fault injection for drills and tests: make a named child fail on its next N
//! messages or ticks, by panicking or by reporting an error. The service
//! exposes it only with `ENABLE_FAULT_INJECTION=true`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    Panic,
    Error,
}

/// The faults armed for each child, shared by the supervisor and the children.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    armed: Arc<Mutex<HashMap<&'static str, (FaultKind, u32)>>>,
}

/// An armed error fault fired: the child should fail with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("injected error fault")]
pub struct InjectedError;

impl Faults {
    /// Arms `times` faults of `kind` for `actor`, replacing any armed before.
    pub fn arm(&self, actor: &'static str, kind: FaultKind, times: u32) {
        self.with(|armed| {
            armed.insert(actor, (kind, times));
        });
    }

    /// Faults still armed for `actor`.
    pub fn remaining(&self, actor: &str) -> u32 {
        self.with(|armed| armed.get(actor).map_or(0, |(_, n)| *n))
    }

    /// Called by a child at the start of each message or tick: panics for an
    /// armed panic fault, returns `Err` for an armed error fault.
    pub fn check(&self, actor: &'static str) -> Result<(), InjectedError> {
        let fired = self.with(|armed| match armed.get_mut(actor) {
            Some((kind, n)) if *n > 0 => {
                *n -= 1;
                Some(*kind)
            }
            _ => None,
        });
        match fired {
            None => Ok(()),
            Some(FaultKind::Error) => Err(InjectedError),
            Some(FaultKind::Panic) => panic!("injected panic fault in actor `{actor}`"),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<&'static str, (FaultKind, u32)>) -> T) -> T {
        f(&mut self.armed.lock().unwrap_or_else(PoisonError::into_inner))
    }
}
