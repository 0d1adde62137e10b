//! When a failed delivery is tried again: exponential backoff with jitter, capped, and when to
//! give up. The alerting config sets it; the dispatcher applies it.

/// Retry timing.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First retry after this, ms; doubled each time.
    pub initial_ms: i64,
    /// Longest wait between attempts, ms.
    pub max_ms: i64,
    /// Give up (dead-letter) when a row is older than this, ms.
    pub give_up_ms: i64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { initial_ms: 2_000, max_ms: 300_000, give_up_ms: 86_400_000 }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempts + 1`, with ±20 % jitter.
    pub(crate) fn backoff(&self, attempts: i64, jitter: f64) -> i64 {
        let base = self.initial_ms.saturating_mul(1i64 << attempts.clamp(0, 20)).min(self.max_ms);
        (base as f64 * (0.8 + 0.4 * jitter.clamp(0.0, 1.0))) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_stops_at_the_cap() {
        let p = RetryPolicy { initial_ms: 1_000, max_ms: 10_000, give_up_ms: 0 };
        let cases = [
            (0, 0.5, 1_000, "first retry: the initial wait"),
            (1, 0.5, 2_000, "doubles"),
            (3, 0.5, 8_000, "keeps doubling"),
            (10, 0.5, 10_000, "capped"),
            (0, 0.0, 800, "jitter −20 %"),
            (0, 1.0, 1_200, "jitter +20 %"),
        ];
        for (attempts, jitter, want, why) in cases {
            assert_eq!(p.backoff(attempts, jitter), want, "{why}");
        }
    }
}
