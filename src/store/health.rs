//! Whether the store takes writes. Every write transaction (`Store::write`) reports its
//! outcome here; the daemon's server reads it (`/healthz`, the status page marks its data as
//! stale) and the daemon pages on its changes (`MxwardenStoreFailing`) without the store.
//!
//! A failure starts with the first refused write and ends after `WRITES_TO_HEAL` writes in a
//! row succeed: on a disk at the edge of full, a small write may fit where a larger one does
//! not, and one lucky write must not resolve the page only for the next one to fire it again.

use crate::clock::Clock;
use std::sync::Arc;
use tokio::sync::watch;

/// Writes in a row that must succeed before a failure is over.
pub(crate) const WRITES_TO_HEAL: u32 = 3;

/// The store refusing writes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Failure {
    /// When the first write was refused, ms.
    pub since_ms: i64,
    /// Why the last one was, in words.
    pub error: String,
    /// Writes refused since it started.
    pub refused: u64,
}

#[derive(Debug, Default)]
struct State {
    failure: Option<Failure>,
    /// Writes that succeeded since the last refused one.
    streak: u32,
}

/// The store's write health, shared by every clone of the store.
pub struct Health {
    clock: Arc<dyn Clock>,
    state: watch::Sender<State>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health").field("failure", &self.failure()).finish_non_exhaustive()
    }
}

impl Health {
    /// Healthy, with failures timed by `clock`.
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        Self { clock, state: watch::Sender::new(State::default()) }
    }

    /// The current failure, if writes are being refused.
    pub fn failure(&self) -> Option<Failure> {
        self.state.borrow().failure.clone()
    }

    /// Records a refused write (`error` in words).
    pub(crate) fn refused(&self, error: &str) {
        let now = self.clock.now().as_millisecond();
        self.state.send_if_modified(|s| {
            s.streak = 0;
            match &mut s.failure {
                Some(f) => {
                    f.error = error.to_string();
                    f.refused += 1;
                    false
                }
                None => {
                    s.failure = Some(Failure { since_ms: now, error: error.to_string(), refused: 1 });
                    true
                }
            }
        });
    }

    /// Records a write that succeeded.
    pub(crate) fn written(&self) {
        self.state.send_if_modified(|s| {
            if s.failure.is_none() {
                return false;
            }
            s.streak += 1;
            if s.streak < WRITES_TO_HEAL {
                return false;
            }
            s.failure = None;
            true
        });
    }

    /// Follows the failure as it starts and ends (not each refused write).
    pub(crate) fn subscribe(&self) -> Changes {
        Changes(self.state.subscribe())
    }
}

/// A failure's start and end, as they happen (see `Health::subscribe`).
#[derive(Debug)]
pub(crate) struct Changes(watch::Receiver<State>);

impl Changes {
    /// Waits for the next start or end, and returns the failure then (`None`: over). `Err`
    /// when the store is gone.
    pub(crate) async fn changed(&mut self) -> Result<Option<Failure>, watch::error::RecvError> {
        self.0.changed().await?;
        Ok(self.0.borrow_and_update().failure.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[tokio::test]
    async fn a_failure_starts_once_and_ends_after_writes_in_a_row() {
        let clock = Arc::new(ManualClock::new(jiff::Timestamp::from_millisecond(1_000).unwrap()));
        let health = Health::new(clock.clone());
        let mut changes = health.subscribe();
        health.written();
        assert_eq!(health.failure(), None, "writes while healthy change nothing");

        health.refused("the disk is full");
        clock.advance(std::time::Duration::from_secs(5));
        health.refused("the disk is full, still");
        let started = changes.changed().await.unwrap().expect("a failure");
        assert_eq!(started.since_ms, 1_000, "it started with the first refused write");
        let now = health.failure().unwrap();
        assert_eq!((now.refused, now.error.as_str()), (2, "the disk is full, still"), "{now:?}");

        // One lucky write between refused ones does not end it.
        health.written();
        health.refused("the disk is full");
        for _ in 1..WRITES_TO_HEAL {
            health.written();
        }
        assert!(health.failure().is_some(), "not yet {WRITES_TO_HEAL} in a row");
        health.written();
        assert_eq!(health.failure(), None);
        assert_eq!(changes.changed().await.unwrap(), None, "the end is one change");
        assert!(!changes.0.has_changed().unwrap(), "refused writes within a failure are not changes");
    }
}
