//! The per-check timers: each check runs every `interval`, its first run at a random 100 ms
//! slot within the interval (at most 5 s, or 6 ms per check in a larger config: 10,000 checks
//! spread over a minute, not 2,000 a second for 5 s) so checks spread out while those sharing
//! a slot wake the process once; at most `defaults.concurrency` probes run at once, each under
//! its hard deadline. Observations go to the evaluator.

use crate::model::Observation;
use crate::probe::Prober;
use crate::probe::spec::CheckSpec;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

/// Starts one timer task per check; they end when `stop` turns true or the evaluator is gone.
pub(super) fn spawn(
    checks: &[CheckSpec],
    prober: Arc<Prober>,
    permits: Arc<Semaphore>,
    tx: mpsc::Sender<Observation>,
    stop: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::with_capacity(checks.len());
    let spread_ms = first_run_spread_ms(checks.len());
    for spec in checks.iter().cloned() {
        let (tx, prober, permits, mut stop) = (tx.clone(), prober.clone(), permits.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            // First run at a random 100 ms slot within the interval (at most the spread): checks
            // spread out, yet those sharing a slot wake the process once.
            let slots = (spec.interval.as_millis().min(spread_ms) / 100).max(1) as u64;
            let jitter = rand::rng().random_range(0..slots) * 100;
            tokio::select! { _ = tokio::time::sleep(Duration::from_millis(jitter)) => {}, _ = stop.changed() => return }
            let mut ticker = tokio::time::interval(spec.interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! { _ = ticker.tick() => {}, _ = stop.changed() => return }
                let Ok(_permit) = permits.acquire().await else { return };
                // Boxed: the probe's future (the HTTP client's, the largest state) is allocated
                // while it runs, not held inline by every idle timer — 10,000 of them.
                let observation = Box::pin(prober.run(&spec)).await;
                if tx.send(observation).await.is_err() {
                    return;
                }
            }
        }));
    }
    tasks
}

/// How far first runs spread at most, ms: 5 s, or 6 ms per check when that is longer.
fn first_run_spread_ms(checks: usize) -> u128 {
    (checks as u128).saturating_mul(6).max(5_000)
}

#[cfg(test)]
mod tests {
    #[test]
    fn first_runs_spread_wider_only_for_large_configs() {
        assert_eq!(super::first_run_spread_ms(1), 5_000, "a small config starts within 5 s, as always");
        assert_eq!(super::first_run_spread_ms(833), 5_000);
        assert_eq!(super::first_run_spread_ms(2_000), 12_000);
        assert_eq!(super::first_run_spread_ms(10_000), 60_000, "10,000 checks: about 170 first runs a second");
    }
}
