//! `remote_write:` — mxwarden's samples pushed to Prometheus-compatible storage (Prometheus,
//! Mimir, VictoriaMetrics, Thanos) with the remote-write 1.0 protocol, for long-term storage
//! and dashboards. mxwarden still judges and alerts on its own; this only copies what it saw.
//!
//! The evaluator hands every observation it ingests (the probe's own samples and the scraped
//! series the rules read) and every sweep's pending and firing alerts (`ALERTS`, as
//! Prometheus writes them) to a [`Tap`]. The tap never waits: it appends to one bounded
//! in-memory [`queue`] per endpoint, sharded by series so each series stays in order, and
//! one sender task per shard ([`send`]) batches, encodes ([`proto`]) and POSTs with
//! backoff. When a queue is full its shard's oldest sample is dropped and counted, so memory
//! stays bounded however long a receiver is away. The server reads the counters ([`Status`])
//! for `/metrics`. `config::remote_write` builds the [`Endpoint`]s.

pub mod proto;
mod queue;
mod send;

use crate::model::{Labels, Observation};
use crate::rule::AlertStatus;
use queue::{Queue, Series};
use reqwest::header::{HeaderName, HeaderValue};
use secrecy::SecretString;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use url::Url;

/// One configured receiver, ready to send to.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Where to POST (http or https, no credentials in it).
    pub url: Url,
    /// Extra headers, their values marked sensitive unless harmless.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// How requests authenticate.
    pub auth: Auth,
    /// Deadline of one request, body included (`remote_timeout`).
    pub timeout: Duration,
    /// Queue and batching (`queue:`).
    pub queue: QueueSettings,
}

impl Endpoint {
    /// One line for `config show`: the URL without its query, how it authenticates, the
    /// header names (values redacted) and the queue's bounds.
    pub fn describe(&self) -> String {
        let mut url = self.url.clone();
        let query = url.query().is_some();
        url.set_query(None);
        let mut out = format!("{url}{}", if query { "?<redacted>" } else { "" });
        match &self.auth {
            Auth::None => {}
            Auth::Basic { username, .. } => out.push_str(&format!(", basic auth as {username} (password <redacted>)")),
            Auth::Bearer(_) => out.push_str(", bearer token <redacted>"),
        }
        for (name, value) in &self.headers {
            let shown = if value.is_sensitive() { "<redacted>" } else { value.to_str().unwrap_or("<redacted>") };
            out.push_str(&format!(", header {name}: {shown}"));
        }
        let q = &self.queue;
        out.push_str(&format!(
            ", timeout {}, queue max_samples {} max_shards {} max_samples_per_send {}",
            crate::units::HumanDuration(self.timeout),
            q.max_samples,
            q.max_shards,
            q.max_samples_per_send
        ));
        out
    }
}

/// How requests to a receiver authenticate.
#[derive(Debug, Clone)]
pub enum Auth {
    /// No `Authorization` header (unless given under `headers`).
    None,
    /// HTTP basic authentication.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: SecretString,
    },
    /// `Authorization: Bearer …`.
    Bearer(SecretString),
}

/// Queue bounds, batching and backoff of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSettings {
    /// Most samples held (queued and in flight together); past it the oldest are dropped.
    pub max_samples: usize,
    /// Concurrent senders; series are hashed to them, so each series keeps its order.
    pub max_shards: usize,
    /// Most samples in one request.
    pub max_samples_per_send: usize,
    /// Longest a sample waits for its batch to fill.
    pub batch_send_deadline: Duration,
    /// First retry delay; doubled on each failure up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest retry delay (a `Retry-After` may ask for more, up to a minute).
    pub max_backoff: Duration,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            max_samples: 50_000,
            max_shards: 4,
            max_samples_per_send: 2_000,
            batch_send_deadline: Duration::from_secs(5),
            min_backoff: Duration::from_millis(30),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// How long a stopping daemon keeps trying to deliver what is queued.
pub(crate) const FLUSH_DEADLINE: Duration = Duration::from_secs(5);

/// Where the evaluator puts samples: every configured queue (none: every call returns at once).
#[derive(Default)]
pub(crate) struct Tap {
    queues: Vec<Arc<Queue>>,
    /// The `ALERTS` series written last sweep: one missing now gets a staleness marker.
    alerts: HashSet<Labels>,
    /// When `ALERTS` were last written, ms: never twice for one timestamp.
    alerts_at: i64,
    /// Each series built once and shared by its held samples (by [`queue::key`]); an entry
    /// whose samples have all gone holds only a small block, and such entries are pruned.
    series: std::collections::HashMap<u64, std::sync::Weak<Series>>,
    /// Prune dead entries when `series` grows past this.
    prune_at: usize,
}

impl Tap {
    /// The series of `name` and `labels`: the one already held, or a new one.
    fn series(&mut self, name: &str, labels: &Labels) -> Arc<Series> {
        let key = queue::key(name, labels);
        if let Some(held) = self.series.get(&key).and_then(std::sync::Weak::upgrade)
            && held.matches(name, labels)
        {
            return held;
        }
        let series = Arc::new(Series::new(name, labels));
        debug_assert_eq!(series.hash(), key);
        self.series.insert(key, Arc::downgrade(&series));
        if self.series.len() > self.prune_at {
            self.series.retain(|_, s| s.strong_count() > 0);
            self.prune_at = (self.series.len() * 2).max(10_000);
        }
        series
    }

    fn push(&mut self, name: &str, labels: &Labels, t: i64, value: f64) {
        // A name Prometheus refuses would make the receiver refuse the whole batch (a label
        // read from a hostile page, say): that sample alone is dropped, and counted.
        if !proto::is_metric_name(name) || !labels.keys().all(|k| proto::is_label_name(k)) {
            for q in &self.queues {
                q.count_dropped(1);
            }
            return;
        }
        let series = self.series(name, labels);
        for q in &self.queues {
            q.push(series.clone(), t, value);
        }
    }

    /// Queues an observation's samples — the probe's own and the scraped ones — at its time.
    pub fn observation(&mut self, o: &Observation) {
        if self.queues.is_empty() {
            return;
        }
        let t = o.at.as_millisecond();
        for s in o.samples.iter().chain(&o.scraped) {
            self.push(&s.name, &s.labels, t, s.value);
        }
    }

    /// Queues `ALERTS{alertname, alertstate, …labels} 1` for each pending or firing alert at
    /// `now`, and Prometheus's staleness marker for each alert that was active last time and
    /// no longer is, so the series ends when the alert does.
    pub fn alerts(&mut self, alerts: &[AlertStatus], now: i64) {
        if self.queues.is_empty() || now <= self.alerts_at {
            return;
        }
        self.alerts_at = now;
        let mut current = HashSet::with_capacity(alerts.len());
        for a in alerts {
            let mut labels = a.labels.clone();
            labels.insert("alertstate".into(), a.state.as_str().into());
            self.push("ALERTS", &labels, now, 1.0);
            current.insert(labels);
        }
        let previous = std::mem::replace(&mut self.alerts, current);
        for gone in previous.difference(&self.alerts).cloned().collect::<Vec<_>>() {
            self.push("ALERTS", &gone, now, proto::STALE_NAN);
        }
    }
}

/// The counters of every queue, for `/metrics`.
#[derive(Clone, Default)]
pub(crate) struct Status {
    queues: Vec<Arc<Queue>>,
}

/// One queue's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueueStatus {
    /// The receiver's origin (scheme, host, port: no path, query or credentials).
    pub url: String,
    /// Samples the receiver accepted.
    pub sent: u64,
    /// Samples dropped unsent: the queue was full, or the daemon stopped before they went.
    pub dropped: u64,
    /// Samples in batches the receiver refused for good (a 4xx other than 429).
    pub failed: u64,
    /// Samples in attempts that failed and were tried again (5xx, 429, network errors).
    pub retried: u64,
    /// Samples held now, queued or in flight.
    pub queued: u64,
}

impl Status {
    /// Each queue's counters, in config order.
    pub fn queues(&self) -> Vec<QueueStatus> {
        self.queues.iter().map(|q| q.status()).collect()
    }
}

/// Why a receiver did not accept a write: the HTTP status, when it answered, and what it said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The status, or `None` when no answer came (connection, TLS, deadline).
    pub status: Option<u16>,
    /// In words; an answer's start escaped and redacted.
    pub detail: String,
}

/// Sends one empty write (no series: nothing is stored) with the endpoint's headers and
/// credentials, within `timeout` at most: what `mxwarden doctor` proves.
pub(crate) async fn check(
    endpoint: &Endpoint,
    http: &reqwest::Client,
    redactor: &crate::redact::Redactor,
    timeout: Duration,
) -> Result<(), Refusal> {
    let mut endpoint = endpoint.clone();
    endpoint.timeout = endpoint.timeout.min(timeout);
    let body =
        proto::encode(&proto::WriteRequest::default()).map_err(|e| Refusal { status: None, detail: e.to_string() })?;
    send::attempt(&endpoint, http, redactor, body.into()).await.map_err(|e| match e {
        send::SendError::Later { status, .. } => Refusal { status: Some(status), detail: format!("HTTP {status}") },
        send::SendError::Refused { status, snippet } => {
            Refusal { status: Some(status), detail: format!("HTTP {status}: {snippet}") }
        }
        other => Refusal { status: None, detail: other.to_string() },
    })
}

/// Starts one queue and its senders per endpoint; they run until `stop` turns true, then
/// try to deliver what is left for up to [`FLUSH_DEADLINE`]. `redactor` cleans what a
/// receiver's answer might echo before it is logged.
pub(crate) fn start(
    endpoints: &[Endpoint],
    http: &reqwest::Client,
    redactor: &crate::redact::Redactor,
    stop: &watch::Receiver<bool>,
) -> (Tap, Status, Vec<tokio::task::JoinHandle<()>>) {
    let mut queues = Vec::new();
    let mut tasks = Vec::new();
    for endpoint in endpoints {
        let queue = Arc::new(Queue::new(endpoint));
        tracing::info!(url = %queue.origin(), shards = endpoint.queue.max_shards, max_samples = endpoint.queue.max_samples,
            "Remote write on.");
        for shard in 0..queue.shards() {
            let sender = send::Sender::new(queue.clone(), shard, endpoint.clone(), http.clone(), redactor.clone());
            tasks.push(tokio::spawn(sender.run(stop.clone())));
        }
        queues.push(queue);
    }
    (Tap { queues: queues.clone(), ..Tap::default() }, Status { queues }, tasks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Phase;

    fn tap() -> (Tap, Arc<Queue>) {
        let endpoint = Endpoint {
            url: "http://127.0.0.1:9/api/v1/write".parse().unwrap(),
            headers: Vec::new(),
            auth: Auth::None,
            timeout: Duration::from_secs(1),
            queue: QueueSettings { max_shards: 1, ..QueueSettings::default() },
        };
        let q = Arc::new(Queue::new(&endpoint));
        (Tap { queues: vec![q.clone()], ..Tap::default() }, q)
    }

    fn sent(q: &Queue) -> proto::WriteRequest {
        match q.take(0, true) {
            queue::Take::Batch(b) => queue::request(&b),
            queue::Take::Wait(_) => proto::WriteRequest::default(),
        }
    }

    fn alert(name: &str, state: Phase) -> AlertStatus {
        AlertStatus {
            labels: [("alertname".to_string(), name.to_string()), ("severity".into(), "warning".into())].into(),
            annotations: Default::default(),
            value: 1.0,
            state,
            active_at: 0,
        }
    }

    #[test]
    fn alerts_are_written_as_prometheus_does_and_end_with_a_staleness_marker() {
        let (mut tap, q) = tap();
        tap.alerts(&[alert("A", Phase::Pending), alert("B", Phase::Firing)], 1_000);
        tap.alerts(&[alert("A", Phase::Pending)], 1_000); // the same timestamp again: nothing
        tap.alerts(&[alert("A", Phase::Firing)], 2_000);
        let req = sent(&q);
        let series: Vec<(String, Vec<(i64, u64)>)> = req
            .timeseries
            .iter()
            .map(|ts| {
                let l: Vec<String> = ts.labels.iter().map(|l| format!("{}={}", l.name, l.value)).collect();
                (l.join(","), ts.samples.iter().map(|s| (s.timestamp, s.value.to_bits())).collect())
            })
            .collect();
        let one = 1.0f64.to_bits();
        let stale = proto::STALE_NAN.to_bits();
        assert_eq!(
            series,
            vec![
                (
                    "__name__=ALERTS,alertname=A,alertstate=pending,severity=warning".into(),
                    vec![(1_000, one), (2_000, stale)]
                ),
                (
                    "__name__=ALERTS,alertname=B,alertstate=firing,severity=warning".into(),
                    vec![(1_000, one), (2_000, stale)]
                ),
                ("__name__=ALERTS,alertname=A,alertstate=firing,severity=warning".into(), vec![(2_000, one)]),
            ]
        );
    }

    #[test]
    fn a_sample_with_a_name_prometheus_refuses_is_dropped_alone_and_counted() {
        let (mut tap, q) = tap();
        let ok: Labels = [("check".to_string(), "web".to_string())].into();
        let bad: Labels = [("my.label".to_string(), "x".to_string())].into();
        tap.push("probe_success", &ok, 1, 1.0);
        tap.push("probe_success", &bad, 1, 1.0);
        tap.push("bad-name", &ok, 1, 1.0);
        assert_eq!(q.status().dropped, 2);
        assert_eq!(sent(&q).timeseries.len(), 1);
    }

    #[test]
    fn config_show_never_shows_a_credential() {
        let endpoint = Endpoint {
            url: "https://mimir.example.org/api/v1/push?tenant=qs-secret".parse().unwrap(),
            headers: vec![
                (HeaderName::from_static("x-scope-orgid"), {
                    let mut v = HeaderValue::from_static("head-secret");
                    v.set_sensitive(true);
                    v
                }),
                (HeaderName::from_static("accept"), HeaderValue::from_static("*/*")),
            ],
            auth: Auth::Basic { username: "writer".into(), password: SecretString::from("pw-secret") },
            timeout: Duration::from_secs(30),
            queue: QueueSettings::default(),
        };
        let shown = endpoint.describe();
        for secret in ["qs-secret", "head-secret", "pw-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("basic auth as writer") && shown.contains("accept: */*"), "{shown}");
    }
}
