//! What each long-running loop (a pipeline, the relay) reports about
//! itself, for `/readyz` and the metrics: whether it is in the middle of a
//! unit of work and since when, and whether its last attempt failed, how,
//! and since when it has been failing.
//!
//! The loops keep retrying (the guarantees need the same batch applied,
//! in order), but a loop that fails the same way for long is made visible
//! instead of only logging a warning.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How a failure steers the loop and what it tells an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// A dependency is away or asked to retry (connection lost,
    /// serialization failure, broker down): retrying is the fix.
    Transient,
    /// Retrying cannot fix it by itself: a bug (a column that does not
    /// decode, a statement Postgres rejects for every record), or corrupt
    /// data (an outbox row that does not parse). Someone must act.
    Permanent,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Transient => "transient",
            FailureKind::Permanent => "permanent",
        }
    }
}

/// A loop's current failure streak.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The first failed attempt of the streak.
    pub since: Instant,
    /// The kind of the latest failure.
    pub kind: FailureKind,
    pub attempts: u32,
    pub error: String,
}

/// A copy of one loop's state at a moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoopStatus {
    /// When the unit of work in hand (a batch and its retries) started.
    pub busy_since: Option<Instant>,
    pub failure: Option<Failure>,
}

#[derive(Debug, Default)]
struct LoopState {
    status: LoopStatus,
}

/// One loop's handle on its own state. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct LoopHealth {
    name: Arc<str>,
    state: Arc<Mutex<LoopState>>,
}

impl LoopHealth {
    /// The name readiness and the `loop` label of the metrics use
    /// (empty for a loop nobody registered).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A unit of work starts (its retries belong to it).
    pub fn busy(&self) {
        self.lock().status.busy_since = Some(Instant::now());
    }

    /// The unit of work landed: the loop is healthy and idle.
    pub fn done(&self) {
        self.landed(None, false);
    }

    /// One of several units of work in hand at once landed: the loop is
    /// busy since the oldest one still in hand (`None`: idle), and the
    /// failure streak ends unless one of those is still failing. A unit
    /// stuck in retries keeps both its start and its streak, however many
    /// others land meanwhile.
    pub fn landed(&self, oldest_in_hand: Option<Instant>, others_failing: bool) {
        let mut state = self.lock();
        state.status.busy_since = oldest_in_hand;
        if !others_failing {
            state.status.failure = None;
        }
    }

    /// An attempt failed; the streak keeps its start.
    pub fn failed(&self, kind: FailureKind, error: impl ToString) {
        let mut state = self.lock();
        let failure = state.status.failure.get_or_insert_with(|| Failure {
            since: Instant::now(),
            kind,
            attempts: 0,
            error: String::new(),
        });
        failure.kind = kind;
        failure.attempts += 1;
        failure.error = error.to_string();
    }

    pub fn status(&self) -> LoopStatus {
        self.lock().status.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LoopState> {
        // A panic while holding this lock leaves plain data: still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Every loop of the process, by name (`pipeline:voice`, `relay`).
#[derive(Debug, Clone, Default)]
pub struct HealthRegistry(Arc<Mutex<BTreeMap<String, LoopHealth>>>);

impl HealthRegistry {
    /// The handle of the loop named `name` (created on first use).
    pub fn register(&self, name: &str) -> LoopHealth {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_owned())
            .or_insert_with(|| LoopHealth {
                name: name.into(),
                state: Arc::default(),
            })
            .clone()
    }

    pub fn statuses(&self) -> Vec<(String, LoopStatus)> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(name, h)| (name.clone(), h.status()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_still_failing_keeps_the_streak_when_another_lands() {
        let h = LoopHealth::default();
        let oldest = Instant::now();
        h.busy();
        h.failed(FailureKind::Permanent, "undefined column");
        h.landed(Some(oldest), true);
        let s = h.status();
        assert_eq!(s.busy_since, Some(oldest));
        assert_eq!(s.failure.expect("still failing").attempts, 1);
        h.landed(None, false);
        assert_eq!(h.status(), LoopStatus::default());
    }

    #[test]
    fn a_failure_streak_keeps_its_start_and_ends_when_the_work_lands() {
        let h = LoopHealth::default();
        h.busy();
        h.failed(FailureKind::Transient, "connection refused");
        let first = h.status().failure.unwrap();
        h.failed(FailureKind::Permanent, "column decode");
        let second = h.status().failure.unwrap();
        assert_eq!(second.since, first.since);
        assert_eq!(second.attempts, 2);
        assert_eq!(second.kind, FailureKind::Permanent);
        assert!(h.status().busy_since.is_some());
        h.done();
        assert_eq!(h.status(), LoopStatus::default());
    }

    #[test]
    fn the_registry_hands_out_one_state_per_name() {
        let r = HealthRegistry::default();
        r.register("relay").failed(FailureKind::Transient, "x");
        assert!(r.register("relay").status().failure.is_some());
        assert_eq!(r.register("relay").name(), "relay");
        assert_eq!(r.statuses().len(), 1);
    }
}
