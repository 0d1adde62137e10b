//! Days until the disk is full, from the trend of the disk use the polls saw. The history
//! lives in the probe's state (so in the daemon it spans polls; a one-shot `check` has none
//! and says so): at most one point per minute over the last 24 hours. The trend is the
//! least-squares slope over that window, as Prometheus's `deriv()`/`predict_linear()` compute
//! it, so a purge or VACUUM FULL bends it instead of being ignored. Pure; the probe feeds it.

use std::collections::VecDeque;

/// How far back the trend looks.
pub(crate) const WINDOW_MS: i64 = 24 * 3_600_000;
/// The shortest history a forecast is made from: less than this is noise (autovacuum, WAL).
pub(crate) const MIN_SPAN_MS: i64 = 3_600_000;
/// One point per this long; a later poll in the same slot replaces it.
const SLOT_MS: i64 = 60_000;

/// Disk use over time.
#[derive(Debug, Clone, Default)]
pub(crate) struct SizeHistory {
    points: VecDeque<(i64, f64)>,
}

/// What the trend says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Forecast {
    /// Growth, bytes per day (negative when shrinking).
    pub bytes_per_day: f64,
    /// Days until `used` reaches the limit at that growth: 0 when already there, +Inf when
    /// not growing.
    pub days_until_full: f64,
}

impl SizeHistory {
    /// Points held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.points.len()
    }

    /// Records the use seen at `t_ms`, forgetting points older than the window.
    pub(crate) fn record(&mut self, t_ms: i64, bytes: f64) {
        if let Some(last) = self.points.back_mut() {
            if t_ms < last.0 {
                return; // a clock step back: keep the history monotonic
            }
            if t_ms / SLOT_MS == last.0 / SLOT_MS {
                *last = (t_ms, bytes);
                return;
            }
        }
        self.points.push_back((t_ms, bytes));
        while self.points.front().is_some_and(|(t, _)| *t < t_ms - WINDOW_MS) {
            self.points.pop_front();
        }
    }

    /// How long the history spans, ms.
    pub(crate) fn span_ms(&self) -> i64 {
        match (self.points.front(), self.points.back()) {
            (Some(first), Some(last)) => last.0 - first.0,
            _ => 0,
        }
    }

    /// The forecast against `limit` for the latest use, or `None` while the history spans
    /// less than [`MIN_SPAN_MS`].
    pub(crate) fn forecast(&self, limit: f64) -> Option<Forecast> {
        if self.span_ms() < MIN_SPAN_MS || self.points.len() < 2 {
            return None;
        }
        let slope = slope_per_second(&self.points)?;
        let used = self.points.back()?.1;
        let bytes_per_day = slope * 86_400.0;
        let days_until_full = if used >= limit {
            0.0
        } else if bytes_per_day <= 0.0 {
            f64::INFINITY
        } else {
            (limit - used) / bytes_per_day
        };
        Some(Forecast { bytes_per_day, days_until_full })
    }
}

/// Least-squares slope, bytes per second; times taken relative to the first point so the
/// squares stay small.
fn slope_per_second(points: &VecDeque<(i64, f64)>) -> Option<f64> {
    let t0 = points.front()?.0;
    let n = points.len() as f64;
    let (mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0);
    for &(t, y) in points {
        let x = (t - t0) as f64 / 1000.0;
        sx += x;
        sy += y;
        sxx += x * x;
        sxy += x * y;
    }
    let denominator = n * sxx - sx * sx;
    (denominator.abs() > f64::EPSILON).then(|| (n * sxy - sx * sy) / denominator)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;
    const MIB: f64 = 1_048_576.0;

    fn history(points: &[(i64, f64)]) -> SizeHistory {
        let mut h = SizeHistory::default();
        for &(t, v) in points {
            h.record(t, v);
        }
        h
    }

    #[test]
    fn forecasts_follow_the_trend() {
        let cases: &[(&[(i64, f64)], f64, Option<(f64, f64)>, &str)] = &[
            (&[(0, 100.0 * MIB)], 256.0 * MIB, None, "one point is no trend"),
            (&[(0, 100.0 * MIB), (30 * 60_000, 110.0 * MIB)], 256.0 * MIB, None, "half an hour is too short"),
            (
                &[(0, 100.0 * MIB), (2 * H, 110.0 * MIB)],
                256.0 * MIB,
                Some((120.0 * MIB, 146.0 / 120.0)),
                "10 MiB in 2 h is 120 MiB a day; 146 MiB left",
            ),
            (
                &[(0, 100.0 * MIB), (H, 101.0 * MIB), (2 * H, 102.0 * MIB), (3 * H, 103.0 * MIB)],
                128.0 * MIB,
                Some((24.0 * MIB, 25.0 / 24.0)),
                "a steady line",
            ),
            (
                &[(0, 200.0 * MIB), (2 * H, 150.0 * MIB)],
                256.0 * MIB,
                Some((-600.0 * MIB, f64::INFINITY)),
                "shrinking never fills",
            ),
            (&[(0, 100.0 * MIB), (2 * H, 100.0 * MIB)], 256.0 * MIB, Some((0.0, f64::INFINITY)), "flat never fills"),
            (
                &[(0, 250.0 * MIB), (2 * H, 260.0 * MIB)],
                256.0 * MIB,
                Some((120.0 * MIB, 0.0)),
                "already over the limit",
            ),
        ];
        for (points, limit, want, why) in cases {
            let got = history(points).forecast(*limit).map(|f| (f.bytes_per_day, f.days_until_full));
            match (got, want) {
                (None, None) => {}
                (Some((g_rate, g_days)), Some((w_rate, w_days))) => {
                    assert!((g_rate - w_rate).abs() < 1.0, "{why}: rate {g_rate} vs {w_rate}");
                    assert!(g_days == *w_days || (g_days - w_days).abs() < 1e-9, "{why}: days {g_days} vs {w_days}");
                }
                _ => panic!("{why}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn the_history_keeps_one_point_a_minute_for_a_day() {
        let mut h = SizeHistory::default();
        for i in 0..(3 * 24 * 120) {
            h.record(i * 30_000, i as f64); // every 30 s for 3 days
        }
        assert_eq!(h.len(), 24 * 60 + 1, "a day of minutes (both ends kept)");
        assert_eq!(h.span_ms(), WINDOW_MS, "exactly the window");
        h.record(0, 5.0);
        assert_eq!(h.len(), 24 * 60 + 1, "a point from the past is ignored");
    }
}
