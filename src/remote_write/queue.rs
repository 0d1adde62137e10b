//! One endpoint's bounded queue: a deque per shard, series hashed to shards (so a series'
//! samples stay in order), and one count of what is held — queued or in flight — that never
//! passes `max_samples`. When it is reached the shard's oldest queued sample makes room (the
//! newest data is what dashboards and a recent incident's review want); when that shard has
//! nothing queued (its batch is in flight) the new sample is dropped. Either way the drop is
//! counted. Only the evaluator pushes, so the bound holds exactly.

use super::proto::{self, Label};
use super::{Endpoint, QueueSettings, QueueStatus};
use crate::model::Labels;
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;
use tokio::sync::Notify;

/// One series: its wire labels (sorted, `__name__` included) and which shard it goes to.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Series {
    pub(super) labels: Vec<Label>,
    hash: u64,
}

impl Series {
    pub(super) fn new(name: &str, labels: &Labels) -> Self {
        Self { labels: proto::labels(name, labels), hash: key(name, labels) }
    }

    /// The hash [`Series::new`] gives the series of `name` and `labels`, without building it.
    pub(super) fn hash(&self) -> u64 {
        self.hash
    }

    /// Whether this is the series of `name` and `labels` (what [`Series::new`] would build).
    pub(super) fn matches(&self, name: &str, labels: &Labels) -> bool {
        let named = self.labels.iter().any(|l| l.name == "__name__" && l.value == name);
        let mut mine = self.labels.iter().filter(|l| l.name != "__name__");
        let mut theirs = labels.iter().filter(|(k, v)| k.as_str() != "__name__" && !v.is_empty());
        loop {
            match (mine.next(), theirs.next()) {
                (None, None) => return named,
                (Some(l), Some((k, v))) if l.name == *k && l.value == *v => {}
                _ => return false,
            }
        }
    }
}

/// The hash of a series (which shard it goes to, its cache slot): its name and the labels it
/// keeps.
pub(super) fn key(name: &str, labels: &Labels) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    for (k, v) in labels.iter().filter(|(k, v)| k.as_str() != "__name__" && !v.is_empty()) {
        k.hash(&mut h);
        v.hash(&mut h);
    }
    h.finish()
}

/// One queued sample.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) series: std::sync::Arc<Series>,
    pub(super) t: i64,
    pub(super) v: f64,
}

#[derive(Default)]
struct ShardState {
    entries: VecDeque<Entry>,
    /// When the oldest queued sample arrived: the batch deadline counts from it.
    since: Option<Instant>,
}

struct Shard {
    state: Mutex<ShardState>,
    /// Woken when the first sample arrives in an empty shard, and when a batch is full.
    wake: Notify,
}

/// What a sender finds when it looks at its shard.
pub(super) enum Take {
    /// A batch to send (it stays counted until [`Queue::done`]).
    Batch(Vec<Entry>),
    /// Nothing due yet: wait at most this long (or for a wake-up).
    Wait(Option<std::time::Duration>),
}

/// See the module docs.
pub(crate) struct Queue {
    origin: String,
    settings: QueueSettings,
    shards: Vec<Shard>,
    held: AtomicUsize,
    sent: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    /// When a drop was last logged (a full queue drops on every push: one line a minute).
    drop_logged: Mutex<Option<Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding it cannot leave a deque half-changed: take it as it is.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Queue {
    pub(super) fn new(endpoint: &Endpoint) -> Self {
        let settings = endpoint.queue;
        let shards = (0..settings.max_shards.max(1))
            .map(|_| Shard { state: Mutex::new(ShardState::default()), wake: Notify::new() })
            .collect();
        Self {
            origin: crate::redact::origin_only(&endpoint.url).to_string(),
            settings,
            shards,
            held: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            drop_logged: Mutex::new(None),
        }
    }

    /// The receiver's origin, for logs and the `url` label.
    pub(super) fn origin(&self) -> &str {
        &self.origin
    }

    pub(super) fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Queues one sample; never waits.
    pub(super) fn push(&self, series: std::sync::Arc<Series>, t: i64, v: f64) {
        let shard = &self.shards[(series.hash % self.shards.len() as u64) as usize];
        let mut state = lock(&shard.state);
        if self.held.load(Ordering::Acquire) >= self.settings.max_samples {
            self.count_drop();
            if state.entries.pop_front().is_none() {
                return; // this shard's batch is in flight: the new sample is the one dropped
            }
        } else {
            self.held.fetch_add(1, Ordering::AcqRel);
        }
        state.entries.push_back(Entry { series, t, v });
        // The sender sleeps until the batch deadline of the oldest sample: it is told when
        // there is a first one to count from, and when a batch is full.
        let first = state.since.is_none();
        state.since.get_or_insert_with(Instant::now);
        if first || state.entries.len() == self.settings.max_samples_per_send {
            shard.wake.notify_one();
        }
    }

    fn count_drop(&self) {
        let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let mut logged = lock(&self.drop_logged);
        if logged.is_none_or(|at| at.elapsed().as_secs() >= 60) {
            *logged = Some(Instant::now());
            tracing::warn!(url = %self.origin, max_samples = self.settings.max_samples, dropped_total = total,
                "Remote write queue is full; dropping the oldest samples.");
        }
    }

    /// A full batch, or everything queued once the oldest has waited `batch_send_deadline`
    /// (`flush`: everything now).
    pub(super) fn take(&self, shard: usize, flush: bool) -> Take {
        let max = self.settings.max_samples_per_send.max(1);
        let mut state = lock(&self.shards[shard].state);
        let waited = state.since.map(|s| s.elapsed());
        let due = waited.is_some_and(|w| w >= self.settings.batch_send_deadline);
        if state.entries.is_empty() || !(flush || due || state.entries.len() >= max) {
            return Take::Wait(waited.map(|w| self.settings.batch_send_deadline.saturating_sub(w)));
        }
        let n = state.entries.len().min(max);
        let batch: Vec<Entry> = state.entries.drain(..n).collect();
        state.since = (!state.entries.is_empty()).then(Instant::now);
        Take::Batch(batch)
    }

    /// Wakes a shard's sender when a full batch is waiting.
    pub(super) async fn woken(&self, shard: usize) {
        self.shards[shard].wake.notified().await;
    }

    /// A batch is over: `n` samples no longer held.
    pub(super) fn done(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::AcqRel);
    }

    /// Counts delivered samples.
    pub(super) fn count_sent(&self, n: usize) {
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts samples refused for good.
    pub(super) fn count_failed(&self, n: usize) {
        self.failed.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts samples of a failed attempt that will be tried again.
    pub(super) fn count_retried(&self, n: usize) {
        self.retried.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts samples given up on at shutdown.
    pub(super) fn count_dropped(&self, n: usize) {
        self.dropped.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(super) fn status(&self) -> QueueStatus {
        QueueStatus {
            url: self.origin.clone(),
            sent: self.sent.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            queued: self.held.load(Ordering::Acquire) as u64,
        }
    }
}

/// The request for `batch`: one series per distinct label set, each with its samples in the
/// order they were queued (time order: one series is always on one shard).
pub(super) fn request(batch: &[Entry]) -> proto::WriteRequest {
    let mut index: std::collections::HashMap<&[Label], usize> = std::collections::HashMap::new();
    let mut timeseries: Vec<proto::TimeSeries> = Vec::new();
    for e in batch {
        let i = *index.entry(e.series.labels.as_slice()).or_insert_with(|| {
            timeseries.push(proto::TimeSeries { labels: e.series.labels.clone(), samples: Vec::new() });
            timeseries.len() - 1
        });
        timeseries[i].samples.push(proto::Sample { value: e.v, timestamp: e.t });
    }
    proto::WriteRequest { timeseries }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn queue(max_samples: usize, max_shards: usize, per_send: usize) -> Queue {
        Queue::new(&Endpoint {
            url: "https://user:pw@metrics.example.org:9090/api/v1/write?token=t".parse().unwrap(),
            headers: Vec::new(),
            auth: super::super::Auth::None,
            timeout: Duration::from_secs(1),
            queue: QueueSettings {
                max_samples,
                max_shards,
                max_samples_per_send: per_send,
                batch_send_deadline: Duration::from_secs(3600),
                ..QueueSettings::default()
            },
        })
    }

    fn series(name: &str, check: &str) -> Arc<Series> {
        Arc::new(Series::new(name, &[("check".to_string(), check.to_string())].into_iter().collect()))
    }

    fn drain(q: &Queue) -> Vec<Entry> {
        (0..q.shards())
            .flat_map(|s| match q.take(s, true) {
                Take::Batch(b) => b,
                Take::Wait(_) => Vec::new(),
            })
            .collect()
    }

    #[test]
    fn a_series_is_known_by_its_name_and_kept_labels() {
        let l =
            |pairs: &[(&str, &str)]| -> Labels { pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() };
        let s = Series::new("up", &l(&[("check", "a"), ("service", "s")]));
        let cases: &[(&str, &[(&str, &str)], bool, &str)] = &[
            ("up", &[("check", "a"), ("service", "s")], true, "the same"),
            ("up", &[("check", "a"), ("service", "s"), ("zone", "")], true, "an empty label is no label"),
            ("up", &[("check", "b"), ("service", "s")], false, "another value"),
            ("up", &[("check", "a")], false, "a label fewer"),
            ("up", &[("check", "a"), ("service", "s"), ("x", "1")], false, "a label more"),
            ("down", &[("check", "a"), ("service", "s")], false, "another name"),
        ];
        for (name, labels, same, why) in cases {
            assert_eq!(s.matches(name, &l(labels)), *same, "{why}");
            assert_eq!(key(name, &l(labels)) == s.hash(), *same, "{why}: the hash agrees");
        }
    }

    #[test]
    fn the_url_label_is_the_origin_only() {
        assert_eq!(queue(10, 1, 10).status().url, "https://metrics.example.org:9090/", "no credentials, path or query");
    }

    #[test]
    fn a_full_queue_drops_its_oldest_and_counts_them() {
        let q = queue(100, 1, 1_000);
        let s = series("probe_success", "a");
        for t in 0..250 {
            q.push(s.clone(), t, t as f64);
        }
        let st = q.status();
        assert_eq!((st.queued, st.dropped), (100, 150), "held at the bound, the rest counted");
        let kept: Vec<i64> = drain(&q).iter().map(|e| e.t).collect();
        assert_eq!(kept, (150..250).collect::<Vec<_>>(), "the newest 100, still in order");
    }

    #[test]
    fn the_bound_holds_across_shards_and_in_flight_batches() {
        let q = queue(1_000, 4, 100);
        for i in 0..20_000 {
            q.push(series("up", &format!("c{}", i % 37)), i, 1.0);
            if i % 1_000 == 0 {
                // A sender takes a batch and keeps it in flight: it still counts.
                let _ = q.take(0, true);
            }
            assert!(q.status().queued <= 1_000, "at {i}: {:?}", q.status());
        }
        let st = q.status();
        assert_eq!(st.queued, 1_000);
        assert_eq!(st.dropped, 20_000 - 1_000, "every sample is held or counted as dropped");
    }

    #[test]
    fn a_series_stays_on_one_shard_in_order() {
        let q = queue(10_000, 4, 10_000);
        for t in 0..300 {
            for c in ["a", "b", "c", "d", "e"] {
                q.push(series("probe_duration_seconds", c), t, t as f64);
            }
        }
        let mut shards_of = std::collections::BTreeMap::<String, std::collections::BTreeSet<usize>>::new();
        for shard in 0..q.shards() {
            let Take::Batch(b) = q.take(shard, true) else { continue };
            let req = request(&b);
            for ts in &req.timeseries {
                let check = ts.labels.iter().find(|l| l.name == "check").unwrap().value.clone();
                shards_of.entry(check).or_default().insert(shard);
                assert_eq!(ts.samples.len(), 300, "one series per label set in a request");
                assert!(ts.samples.windows(2).all(|w| w[0].timestamp < w[1].timestamp), "time order");
            }
        }
        assert_eq!(shards_of.len(), 5);
        assert!(shards_of.values().all(|s| s.len() == 1), "{shards_of:?}");
    }

    #[test]
    fn batches_wait_for_size_or_deadline() {
        let q = queue(1_000, 1, 10);
        assert!(matches!(q.take(0, false), Take::Wait(None)), "empty: wait for a wake-up");
        for t in 0..9 {
            q.push(series("up", "a"), t, 1.0);
        }
        assert!(matches!(q.take(0, false), Take::Wait(Some(_))), "9 of 10, deadline an hour away");
        q.push(series("up", "a"), 9, 1.0);
        q.push(series("up", "a"), 10, 1.0);
        let Take::Batch(b) = q.take(0, false) else { panic!("a full batch is due") };
        assert_eq!(b.len(), 10, "at most max_samples_per_send");
        assert_eq!(q.status().queued, 11, "in flight still counts");
        q.done(b.len());
        assert_eq!(q.status().queued, 1);
        assert!(matches!(q.take(0, true), Take::Batch(b) if b.len() == 1), "flush takes the rest");
    }

    /// Memory per held sample, as the docs quote it (not a pass/fail test):
    /// `cargo test --lib remote_write::queue::tests::memory_per_held_sample -- --ignored --nocapture`
    /// (allocation sizes, so the build profile does not matter).
    #[test]
    #[ignore = "a measurement: run by hand"]
    fn memory_per_held_sample() {
        fn rss_kib() -> u64 {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .unwrap()
                .trim()
                .trim_end_matches(" kB")
                .parse()
                .unwrap()
        }
        // Samples of 100 series (a series is built once and shared while any of its samples
        // is held), and of as many series as samples (the worst case).
        for distinct in [100, usize::MAX] {
            let n = 500_000;
            let q = Arc::new(queue(n, 4, 2_000));
            let mut tap = super::super::Tap { queues: vec![q.clone()], ..Default::default() };
            let before = rss_kib();
            for i in 0..n {
                let labels: Labels = [
                    ("check".to_string(), format!("synapse/health-{}", i % distinct)),
                    ("service".to_string(), "synapse".to_string()),
                ]
                .into();
                tap.push("probe_duration_seconds", &labels, i as i64, 0.25);
            }
            let after = rss_kib();
            assert_eq!(q.status().queued, n as u64);
            let per = (after - before) * 1024 / n as u64;
            println!(
                "{per} bytes per held sample, {} series ({n} samples, RSS {before} -> {after} KiB)",
                distinct.min(n)
            );
        }
    }
}
