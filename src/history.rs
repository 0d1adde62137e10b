//! Uptime history: every check result, kept raw for 48 hours and rolled up per minute (14
//! days), per hour (90 days) and per day (400 days), in the store's SQLite file. Rollups are
//! updated as results arrive (one transaction per flush), so reading 90 days of a check is
//! 90 rows. Time when mxwarden itself was not running is recorded as a *gap* (from its own
//! heartbeat) and shown as unknown, never as up; maintenance time counts for neither side.
//!
//! The pure part (buckets, uptime arithmetic) is here; the SQL is in `store::history`.

/// A result's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Every expectation held.
    Up,
    /// At least one failed.
    Down,
    /// Inside a maintenance window of its service: recorded, excluded from uptime.
    Maintenance,
}

impl State {
    pub(crate) fn code(self) -> i64 {
        match self {
            State::Down => 0,
            State::Up => 1,
            State::Maintenance => 2,
        }
    }

    pub(crate) fn from_code(code: i64) -> Self {
        match code {
            1 => State::Up,
            2 => State::Maintenance,
            _ => State::Down,
        }
    }
}

/// One check result, as recorded.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Result {
    /// When the probe started, ms since the epoch.
    pub at_ms: i64,
    /// Its state.
    pub state: State,
    /// Its latency, ms.
    pub latency_ms: i64,
}

/// A rollup resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// One-minute buckets, kept 14 days.
    Minute,
    /// One-hour buckets, kept 90 days.
    Hour,
    /// UTC days, kept 400 days.
    Day,
}

impl Resolution {
    /// All of them, finest first.
    pub(crate) const ALL: [Resolution; 3] = [Resolution::Minute, Resolution::Hour, Resolution::Day];

    /// Bucket width, ms.
    pub fn width_ms(self) -> i64 {
        match self {
            Resolution::Minute => 60_000,
            Resolution::Hour => 3_600_000,
            Resolution::Day => 86_400_000,
        }
    }

    /// How long its buckets are kept, ms.
    pub(crate) fn retention_ms(self) -> i64 {
        match self {
            Resolution::Minute => 14 * DAY_MS,
            Resolution::Hour => 90 * DAY_MS,
            Resolution::Day => 400 * DAY_MS,
        }
    }

    /// The bucket number holding `at_ms`.
    pub fn bucket(self, at_ms: i64) -> i64 {
        at_ms.div_euclid(self.width_ms())
    }

    pub(crate) fn code(self) -> i64 {
        match self {
            Resolution::Minute => 1,
            Resolution::Hour => 2,
            Resolution::Day => 3,
        }
    }

    /// Its name in the API: `minute`, `hour` or `day`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Resolution::Minute => "minute",
            Resolution::Hour => "hour",
            Resolution::Day => "day",
        }
    }

    /// Parses `minute`, `hour` or `day`.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "minute" => Some(Resolution::Minute),
            "hour" => Some(Resolution::Hour),
            "day" => Some(Resolution::Day),
            _ => None,
        }
    }
}

/// A day, in ms.
pub const DAY_MS: i64 = 86_400_000;
/// How long raw results are kept, ms.
pub(crate) const RAW_RETENTION_MS: i64 = 2 * DAY_MS;

/// The counts of one bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Bucket {
    /// Bucket start, ms since the epoch.
    pub start_ms: i64,
    /// Results up.
    pub up: i64,
    /// Results down.
    pub down: i64,
    /// Results inside maintenance.
    pub maintenance: i64,
    /// Mean latency of the results, ms.
    pub latency_avg_ms: f64,
    /// Largest latency, ms.
    pub latency_max_ms: i64,
    /// Share of the bucket mxwarden was not running (0..=1).
    pub unknown: f64,
}

impl Bucket {
    /// Up ÷ (up + down): maintenance and unknown time count for neither; `None` without data.
    pub(crate) fn uptime(&self) -> Option<f64> {
        let judged = self.up + self.down;
        (judged > 0).then(|| self.up as f64 / judged as f64)
    }
}

/// Uptime over buckets: up ÷ (up + down), `None` when nothing was judged.
pub fn uptime(buckets: &[Bucket]) -> Option<f64> {
    let (up, down) = buckets.iter().fold((0, 0), |(u, d), b| (u + b.up, d + b.down));
    (up + down > 0).then(|| up as f64 / (up + down) as f64)
}

/// The share of `[start, end)` covered by `gaps` (sorted or not, possibly overlapping).
pub(crate) fn covered(start: i64, end: i64, gaps: &[(i64, i64)]) -> f64 {
    if end <= start {
        return 0.0;
    }
    let mut parts: Vec<(i64, i64)> =
        gaps.iter().map(|&(a, b)| (a.max(start), b.min(end))).filter(|(a, b)| a < b).collect();
    parts.sort_unstable();
    let mut total = 0;
    let mut reach = start;
    for (a, b) in parts {
        let a = a.max(reach);
        if b > a {
            total += b - a;
            reach = b;
        }
    }
    total as f64 / (end - start) as f64
}

/// The gap a start finds: mxwarden's last heartbeat was at `last_beat`, it is `now`, and it
/// beats every `every_ms`. Silence longer than two beats is a gap; a shorter one is not.
pub(crate) fn gap_at_start(last_beat: Option<i64>, now: i64, every_ms: i64) -> Option<(i64, i64)> {
    let last = last_beat?;
    (now - last > 2 * every_ms).then_some((last, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolutions_parse_their_own_names() {
        for r in Resolution::ALL {
            assert_eq!(Resolution::parse(r.name()), Some(r));
        }
        assert_eq!(Resolution::parse("raw"), None, "raw results are not a rollup");
    }

    #[test]
    fn buckets_are_utc_aligned_and_negative_times_floor() {
        assert_eq!(Resolution::Minute.bucket(59_999), 0);
        assert_eq!(Resolution::Minute.bucket(60_000), 1);
        assert_eq!(Resolution::Day.bucket(-1), -1);
        assert_eq!(Resolution::Hour.bucket(3 * 3_600_000 + 5), 3);
    }

    #[test]
    fn uptime_ignores_maintenance_and_is_none_without_judged_results() {
        let b = |up, down, maintenance| Bucket { up, down, maintenance, ..Bucket::default() };
        assert_eq!(uptime(&[b(3, 1, 10)]), Some(0.75));
        assert_eq!(uptime(&[b(0, 0, 10)]), None);
        assert_eq!(b(0, 0, 0).uptime(), None);
        assert_eq!(uptime(&[b(1, 0, 0), b(0, 1, 0)]), Some(0.5));
    }

    #[test]
    fn covered_merges_overlapping_gaps_and_clips_them_to_the_window() {
        assert_eq!(covered(0, 100, &[]), 0.0);
        assert_eq!(covered(0, 100, &[(10, 30), (20, 40)]), 0.3);
        assert_eq!(covered(0, 100, &[(-50, 10), (90, 500)]), 0.2);
        assert_eq!(covered(0, 100, &[(0, 100), (0, 100)]), 1.0);
        assert_eq!(covered(10, 10, &[(0, 100)]), 0.0);
    }

    #[test]
    fn a_gap_is_silence_longer_than_two_heartbeats() {
        assert_eq!(gap_at_start(None, 1_000_000, 15_000), None, "first start ever: no history to break");
        assert_eq!(gap_at_start(Some(970_000), 1_000_000, 15_000), None, "a quick restart");
        assert_eq!(gap_at_start(Some(900_000), 1_000_000, 15_000), Some((900_000, 1_000_000)));
    }
}
