//! Short in-memory sample windows, one per series, long enough for the rules in use (their
//! longest range plus lookback plus `for`). Ingest follows Prometheus: every scrape appends
//! its samples; a series that a scrape no longer returns, or every series of a failed scrape,
//! gets a staleness marker, so instant selectors stop seeing it at once instead of five
//! minutes later. Memory is bounded by a series limit — on what scrapes bring; a check's own
//! samples (`probe_*`, `up`, …) are a few per check, bounded by the config, and never refused —
//! and each series' labels are held once (shared by the index, the series, the per-name index
//! and the per-target list). Series are indexed by name and by target (check), so a selector
//! reads only the series of its name, and a rule judged for a few new results only theirs
//! (what keeps 10,000 checks cheap). Fed by the scrape probe, read by the rule evaluator.

use crate::model::{Labels, Sample};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
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
    /// Counted against the series limit (a scraped series, not a check's own sample).
    limited: bool,
}

/// All series, with retention and a limit.
#[derive(Debug)]
pub struct SeriesStore {
    series: HashMap<Arc<Labels>, Series>,
    /// The series of each `__name__`.
    by_name: HashMap<String, HashSet<Arc<Labels>>>,
    /// The series of each value of the `check` label.
    by_check: HashMap<String, HashSet<Arc<Labels>>>,
    /// The series of each value of the `service` label.
    by_service: HashMap<String, HashSet<Arc<Labels>>>,
    /// Which series each scrape target produced last time, to mark the missing ones stale.
    by_target: HashMap<String, BTreeSet<Arc<Labels>>>,
    retention_ms: i64,
    limit: usize,
    /// Series held that count against the limit.
    limited: usize,
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
        Self {
            series: HashMap::new(),
            by_name: HashMap::new(),
            by_check: HashMap::new(),
            by_service: HashMap::new(),
            by_target: HashMap::new(),
            retention_ms,
            limit,
            limited: 0,
            dropped: 0,
            warned: false,
        }
    }

    /// Appends one point; a new series over the limit is refused (and counted).
    pub fn append(&mut self, labels: Labels, t: i64, v: f64) {
        self.append_keyed(labels, t, v, true);
    }

    /// [`Self::append`], returning the series' shared labels (None when it was refused).
    /// `limited`: a new series counts against the limit (and is refused over it).
    fn append_keyed(&mut self, labels: Labels, t: i64, v: f64, limited: bool) -> Option<Arc<Labels>> {
        if let Some(series) = self.series.get_mut(&labels) {
            // Out of order or duplicate points are ignored, as Prometheus rejects them.
            if series.points.back().is_none_or(|p| p.t < t) {
                series.points.push_back(Point { t, v });
            }
            return Some(series.labels.clone());
        }
        if limited && self.limited >= self.limit {
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
        let name = labels.get("__name__").cloned().unwrap_or_default();
        self.by_name.entry(name).or_default().insert(labels.clone());
        if let Some(check) = labels.get("check") {
            self.by_check.entry(check.clone()).or_default().insert(labels.clone());
        }
        if let Some(service) = labels.get("service") {
            self.by_service.entry(service.clone()).or_default().insert(labels.clone());
        }
        self.limited += usize::from(limited);
        self.series.insert(labels.clone(), Series { labels: labels.clone(), points, limited });
        Some(labels)
    }

    /// Ingests one scrape of `target` at `t`: its samples, and staleness markers for the
    /// series it returned last time but not now.
    pub(crate) fn ingest_scrape(&mut self, target: &str, t: i64, samples: Vec<(Labels, f64)>) {
        self.ingest_points(target, t, samples.into_iter().map(|(l, v)| (l, v, true)));
    }

    /// [`Self::ingest_scrape`] of points each marked whether it counts against the limit.
    fn ingest_points(&mut self, target: &str, t: i64, points: impl IntoIterator<Item = (Labels, f64, bool)>) {
        let mut now = BTreeSet::new();
        for (labels, v, limited) in points {
            if let Some(key) = self.append_keyed(labels, t, v, limited) {
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

    /// One result of check `target` at `t`: the probe's `own` samples (never refused: a few
    /// per check, bounded by the config) and what it `scraped` (under the series limit); the
    /// name becomes `__name__`; series the check no longer reports go stale.
    pub(crate) fn ingest_result(
        &mut self,
        target: &str,
        t: i64,
        own: impl IntoIterator<Item = Sample>,
        scraped: impl IntoIterator<Item = Sample>,
    ) {
        let point = |s: Sample, limited| {
            let mut labels = s.labels;
            labels.insert("__name__".into(), s.name);
            (labels, s.value, limited)
        };
        let points: Vec<(Labels, f64, bool)> =
            own.into_iter().map(|s| point(s, false)).chain(scraped.into_iter().map(|s| point(s, true))).collect();
        self.ingest_points(target, t, points);
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
        let mut gone = Vec::new();
        self.series.retain(|_, s| {
            while s.points.front().is_some_and(|p| p.t < oldest) {
                s.points.pop_front();
            }
            if s.points.is_empty() {
                gone.push((s.labels.clone(), s.limited));
            }
            !s.points.is_empty()
        });
        for (labels, limited) in gone {
            self.limited -= usize::from(limited);
            let name = labels.get("__name__").map_or("", String::as_str);
            unindex(&mut self.by_name, name, &labels);
            if let Some(check) = labels.get("check") {
                unindex(&mut self.by_check, check, &labels);
            }
            if let Some(service) = labels.get("service") {
                unindex(&mut self.by_service, service, &labels);
            }
        }
    }

    /// Every series (for the evaluator to filter with matchers).
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Series> {
        self.series.values()
    }

    /// Series whose `__name__` is `name`.
    pub(crate) fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Series> + 'a {
        self.by_name.get(name).into_iter().flatten().filter_map(|labels| self.series.get(labels))
    }

    /// The series whose `check` label is `check`, of `name` when given.
    pub(crate) fn of_check<'a>(&'a self, check: &str, name: Option<&'a str>) -> impl Iterator<Item = &'a Series> + 'a {
        self.indexed(&self.by_check, check, name)
    }

    /// The series whose `service` label is `service`, of `name` when given.
    pub(crate) fn of_service<'a>(
        &'a self,
        service: &str,
        name: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Series> + 'a {
        self.indexed(&self.by_service, service, name)
    }

    fn indexed<'a>(
        &'a self,
        index: &'a HashMap<String, HashSet<Arc<Labels>>>,
        key: &str,
        name: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Series> + 'a {
        index
            .get(key)
            .into_iter()
            .flatten()
            .filter(move |l| name.is_none_or(|n| l.get("__name__").is_some_and(|x| x == n)))
            .filter_map(|labels| self.series.get(labels))
    }
}

/// Removes `labels` from `index[key]`, and the key once it has none.
fn unindex(index: &mut HashMap<String, HashSet<Arc<Labels>>>, key: &str, labels: &Arc<Labels>) {
    if let Some(set) = index.get_mut(key) {
        set.remove(labels);
        if set.is_empty() {
            index.remove(key);
        }
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
        assert_eq!(
            Arc::strong_count(&a.labels),
            4,
            "one copy: the index, the series, the name index and the target's list share it"
        );
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
    fn own_samples_pass_the_limit_and_the_indexes_follow_pruning() {
        let sample = |name: &str, check: &str| crate::model::Sample {
            name: name.into(),
            labels: [("check".to_string(), check.to_string())].into_iter().collect(),
            value: 1.0,
        };
        let mut s = SeriesStore::new(60_000, 1);
        s.ingest_result("a", 0, [sample("probe_success", "a"), sample("probe_duration_seconds", "a")], []);
        s.ingest_result(
            "b",
            0,
            [sample("probe_success", "b")],
            [sample("scraped_one", "b"), sample("scraped_two", "b")],
        );
        assert_eq!((s.len(), s.dropped()), (4, 1), "a check's own samples are never refused; the 2nd scraped one is");
        assert_eq!(s.named("probe_success").count(), 2);
        assert_eq!(s.of_check("b", None).count(), 2, "b's own sample and its one scraped series");
        assert_eq!(s.of_check("b", Some("probe_success")).count(), 1);
        assert_eq!(s.of_check("c", None).count(), 0);
        s.ingest_result("a", 90_000, [sample("probe_success", "a")], []);
        s.prune(90_000);
        assert_eq!(s.named("probe_success").count(), 1, "b's pruned series left the name index");
        assert_eq!(s.of_check("b", None).count(), 0, "and the check index");
        assert_eq!(s.of_check("a", None).count(), 2, "a's duration is held with its staleness marker");
        s.ingest_result("c", 90_000, [], [sample("scraped_three", "c")]);
        assert_eq!(s.dropped(), 1, "the pruned scraped series freed its place under the limit");
        let mut of_synapse = sample("probe_success", "synapse/health");
        of_synapse.labels.insert("service".into(), "synapse".into());
        s.ingest_result("synapse/health", 90_000, [of_synapse], []);
        assert_eq!(s.of_service("synapse", Some("probe_success")).count(), 1);
        assert_eq!(s.of_service("synapse", Some("up")).count(), 0);
        s.prune(1_000_000);
        assert_eq!(s.of_service("synapse", None).count(), 0, "pruned: gone from the service index too");
    }

    #[test]
    fn only_the_exact_marker_counts_as_stale() {
        assert!(is_stale(stale()));
        assert!(!is_stale(f64::NAN), "an ordinary NaN is a value, not staleness");
    }
}
