//! Short in-memory sample windows, one per series, long enough for the rules in use (their
//! longest range plus lookback plus `for`). Ingest follows Prometheus: every scrape appends
//! its samples; a series that a scrape no longer returns, or every series of a failed scrape,
//! gets a staleness marker, so instant selectors stop seeing it at once instead of five
//! minutes later. Memory is bounded by a series limit, and each series' labels are held once
//! (shared by the index, the series and the per-target list). Fed by the scrape probe, read by
//! the rule evaluator.

use crate::model::{Labels, Sample};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

/// Prometheus's staleness marker: a NaN with this exact bit pattern.
pub(crate) const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Whether `value` is a staleness marker (not any NaN: only that exact one).
pub fn is_stale(value: f64) -> bool {
    value.to_bits() == STALE_NAN_BITS
}

/// The staleness marker.
pub fn stale() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// One point: milliseconds since the epoch and a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Point {
    /// Timestamp, ms.
    pub t: i64,
    /// Value (possibly the staleness marker).
    pub v: f64,
}

/// A series' labels (`__name__` included) and its recent points, oldest first.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    /// Labels, with `__name__` (shared with the store's index).
    pub labels: Arc<Labels>,
    /// Points, oldest first.
    pub points: VecDeque<Point>,
}

/// All series, with retention and a limit.
#[derive(Debug)]
pub struct SeriesStore {
    series: HashMap<Arc<Labels>, Series>,
    /// Which series each scrape target produced last time, to mark the missing ones stale.
    by_target: HashMap<String, BTreeSet<Arc<Labels>>>,
    retention_ms: i64,
    limit: usize,
    dropped: u64,
    warned: bool,
}

impl SeriesStore {
    /// Number of series held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.series.len()
    }

    /// New series refused because the limit was reached, since start.
    #[cfg(test)]
    fn dropped(&self) -> u64 {
        self.dropped
    }

    /// A store keeping `retention_ms` of history and at most `limit` series.
    pub fn new(retention_ms: i64, limit: usize) -> Self {
        Self { series: HashMap::new(), by_target: HashMap::new(), retention_ms, limit, dropped: 0, warned: false }
    }

    /// Appends one point; a new series over the limit is refused (and counted).
    pub fn append(&mut self, labels: Labels, t: i64, v: f64) {
        self.append_keyed(labels, t, v);
    }

    /// [`Self::append`], returning the series' shared labels (None when it was refused).
    fn append_keyed(&mut self, labels: Labels, t: i64, v: f64) -> Option<Arc<Labels>> {
        if let Some(series) = self.series.get_mut(&labels) {
            // Out of order or duplicate points are ignored, as Prometheus rejects them.
            if series.points.back().is_none_or(|p| p.t < t) {
                series.points.push_back(Point { t, v });
            }
            return Some(series.labels.clone());
        }
        if self.series.len() >= self.limit {
            self.dropped += 1;
            if !self.warned {
                self.warned = true;
                tracing::warn!(
                    limit = self.limit,
                    "Series limit reached; new series are dropped. Raise `series_limit` or narrow what rules select."
                );
            }
            return None;
        }
        let labels = Arc::new(labels);
        let mut points = VecDeque::new();
        points.push_back(Point { t, v });
        self.series.insert(labels.clone(), Series { labels: labels.clone(), points });
        Some(labels)
    }

    /// Ingests one scrape of `target` at `t`: its samples, and staleness markers for the
    /// series it returned last time but not now.
    pub(crate) fn ingest_scrape(&mut self, target: &str, t: i64, samples: Vec<(Labels, f64)>) {
        let mut now = BTreeSet::new();
        for (labels, v) in samples {
            if let Some(key) = self.append_keyed(labels, t, v) {
                now.insert(key);
            }
        }
        if let Some(before) = self.by_target.remove(target) {
            for gone in before.difference(&now) {
                self.mark_stale(gone, t);
            }
        }
        self.by_target.insert(target.to_string(), now);
    }

    /// A probe's samples at `t`, as points of the series of `target` (the check): the name
    /// becomes `__name__`; series the check no longer reports go stale.
    pub fn ingest_samples<'a>(&mut self, target: &str, t: i64, samples: impl IntoIterator<Item = &'a Sample>) {
        self.ingest_owned(target, t, samples.into_iter().cloned());
    }

    /// [`Self::ingest_samples`] taking the samples, so their labels become the series' own
    /// without a copy (a scrape's may be thousands).
    pub(crate) fn ingest_owned(&mut self, target: &str, t: i64, samples: impl IntoIterator<Item = Sample>) {
        let points = samples
            .into_iter()
            .map(|s| {
                let mut labels = s.labels;
                labels.insert("__name__".into(), s.name);
                (labels, s.value)
            })
            .collect();
        self.ingest_scrape(target, t, points);
    }

    /// Appends a staleness marker to a series still held (a pruned one stays gone).
    fn mark_stale(&mut self, labels: &Labels, t: i64) {
        if let Some(series) = self.series.get_mut(labels)
            && series.points.back().is_none_or(|p| p.t < t)
        {
            series.points.push_back(Point { t, v: stale() });
        }
    }

    /// Drops points older than the retention and series left empty.
    pub(crate) fn prune(&mut self, now: i64) {
        let oldest = now - self.retention_ms;
        self.series.retain(|_, s| {
            while s.points.front().is_some_and(|p| p.t < oldest) {
                s.points.pop_front();
            }
            !s.points.is_empty()
        });
    }

    /// Every series (for the evaluator to filter with matchers).
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Series> {
        self.series.values()
    }

    /// Series whose `__name__` is `name`.
    pub(crate) fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Series> + 'a {
        self.series.values().filter(move |s| s.labels.get("__name__").is_some_and(|n| n == name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(name: &str, instance: &str) -> Labels {
        [("__name__".to_string(), name.to_string()), ("instance".to_string(), instance.to_string())]
            .into_iter()
            .collect()
    }

    #[test]
    fn a_series_missing_from_a_scrape_gets_a_staleness_marker() {
        let mut s = SeriesStore::new(600_000, 100);
        s.ingest_scrape("t", 0, vec![(l("up", "a"), 1.0), (l("up", "b"), 1.0)]);
        s.ingest_scrape("t", 15_000, vec![(l("up", "a"), 1.0)]);
        let b = s.iter().find(|x| x.labels["instance"] == "b").unwrap();
        assert!(is_stale(b.points.back().unwrap().v), "b vanished, so it is stale");
        let a = s.iter().find(|x| x.labels["instance"] == "a").unwrap();
        assert_eq!(a.points.len(), 2);
    }

    #[test]
    fn a_failed_scrape_marks_all_its_series_stale_and_a_later_one_revives_them() {
        let mut s = SeriesStore::new(600_000, 100);
        s.ingest_scrape("t", 0, vec![(l("x", "a"), 1.0)]);
        s.ingest_scrape("t", 15_000, vec![]); // a failed scrape reports nothing
        assert!(is_stale(s.iter().next().unwrap().points.back().unwrap().v));
        s.ingest_scrape("t", 30_000, vec![(l("x", "a"), 2.0)]);
        assert_eq!(s.iter().next().unwrap().points.back().unwrap().v, 2.0);
    }

    #[test]
    fn the_limit_refuses_new_series_but_keeps_old_ones_growing() {
        let mut s = SeriesStore::new(600_000, 1);
        s.append(l("x", "a"), 0, 1.0);
        s.append(l("x", "b"), 0, 1.0);
        s.append(l("x", "a"), 1, 2.0);
        assert_eq!((s.len(), s.dropped()), (1, 1));
        assert_eq!(s.iter().next().unwrap().points.len(), 2);
    }

    #[test]
    fn labels_are_held_once_and_refused_series_are_not_tracked() {
        let mut s = SeriesStore::new(600_000, 1);
        s.ingest_scrape("t", 0, vec![(l("x", "a"), 1.0), (l("x", "b"), 1.0)]);
        assert_eq!((s.len(), s.dropped()), (1, 1), "b is over the limit");
        let a = s.iter().next().unwrap();
        assert_eq!(Arc::strong_count(&a.labels), 3, "one copy: the index, the series and the target's list share it");
        s.ingest_scrape("t", 15_000, vec![]);
        assert_eq!(s.dropped(), 1, "b was never held, so it gets no staleness marker and is not refused again");
        assert!(is_stale(s.iter().next().unwrap().points.back().unwrap().v), "a went stale");
    }

    #[test]
    fn pruning_keeps_only_the_retention_window() {
        let mut s = SeriesStore::new(60_000, 10);
        for t in (0..=120_000).step_by(15_000) {
            s.append(l("x", "a"), t, 1.0);
        }
        s.prune(120_000);
        let first = s.iter().next().unwrap().points.front().unwrap().t;
        assert_eq!(first, 60_000);
        s.prune(10_000_000);
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn only_the_exact_marker_counts_as_stale() {
        assert!(is_stale(stale()));
        assert!(!is_stale(f64::NAN), "an ordinary NaN is a value, not staleness");
    }
}
