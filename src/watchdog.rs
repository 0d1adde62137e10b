//! Whether mxwarden itself is still judging: the evaluator beats a pulse on every turn of
//! its loop (which turns at least once per sweep period, results or not), and the store
//! reports whether it takes writes (`store::Health`). The verdict — healthy, or why not — is
//! what `/healthz` answers and what decides whether the heartbeat (`daemon::heartbeat`)
//! pings the outside watcher: a daemon that runs but no longer judges, or cannot record what
//! it judged, must stop pinging so the watcher pages. Real (monotonic) time, not the
//! daemon's clock: a stall is about the process, not about simulated time.

use crate::store::Health;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The evaluator's pulse and the limit past which it counts as stalled.
#[derive(Debug)]
pub(crate) struct Watchdog {
    last_turn: Mutex<Instant>,
    stall_after: Duration,
}

impl Watchdog {
    /// A watchdog for an evaluator that turns at least every `sweep_every`: stalled after
    /// three missed sweeps and five seconds more (a slow commit is not a stall).
    pub(crate) fn new(sweep_every: Duration) -> Self {
        Self { last_turn: Mutex::new(Instant::now()), stall_after: sweep_every * 3 + Duration::from_secs(5) }
    }

    /// The evaluator turned just now.
    pub(crate) fn beat(&self) {
        *self.last_turn.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }

    /// How long since the evaluator last turned.
    fn quiet_for(&self) -> Duration {
        self.last_turn.lock().unwrap_or_else(std::sync::PoisonError::into_inner).elapsed()
    }

    /// `Ok` while evaluation is healthy; otherwise why not, in words.
    pub(crate) fn verdict(&self, store: &Health) -> Result<(), String> {
        if let Some(f) = store.failure() {
            return Err(format!(
                "store failing since {}: {} ({} writes refused)",
                crate::units::utc_second(f.since_ms),
                f.error,
                f.refused
            ));
        }
        stalled(self.quiet_for(), self.stall_after)
    }
}

/// The stall rule: quiet longer than `limit` is a stall.
fn stalled(quiet: Duration, limit: Duration) -> Result<(), String> {
    if quiet > limit {
        Err(format!(
            "evaluation stalled: the evaluation loop last ran {} s ago (more than {} s)",
            quiet.as_secs(),
            limit.as_secs()
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_past_the_limit_is_a_stall_and_says_so() {
        let limit = Duration::from_secs(8);
        assert!(stalled(Duration::from_secs(8), limit).is_ok(), "at the limit: not yet");
        let why = stalled(Duration::from_secs(9), limit).unwrap_err();
        assert!(why.contains("evaluation stalled") && why.contains("9 s ago"), "{why}");
        assert_eq!(Watchdog::new(Duration::from_secs(1)).stall_after, Duration::from_secs(8));
        assert_eq!(Watchdog::new(Duration::from_secs(15)).stall_after, Duration::from_secs(50));
    }

    #[test]
    fn a_fresh_watchdog_over_a_healthy_store_is_healthy() {
        let health = Health::new(std::sync::Arc::new(crate::clock::SystemClock));
        let w = Watchdog::new(Duration::from_secs(1));
        w.beat();
        assert!(w.verdict(&health).is_ok());
        health.refused("the disk is full");
        assert!(w.verdict(&health).unwrap_err().contains("the disk is full"));
    }
}
