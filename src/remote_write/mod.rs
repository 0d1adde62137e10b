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
            max_samples: 100_000,
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
pub struct Tap {
    queues: Vec<Arc<Queue>>,
    /// The `ALERTS` series written last sweep: one missing now gets a staleness marker.
    alerts: HashSet<Labels>,
    /// When `ALERTS` were last written, ms: never twice for one timestamp.
    alerts_at: i64,
}

impl Tap {
    /// Whether nothing is configured.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    fn push(&self, name: &str, labels: &Labels, t: i64, value: f64) {
        let series = Arc::new(Series::new(name, labels));
        for q in &self.queues {
            q.push(series.clone(), t, value);
        }
    }

    /// Queues an observation's samples — the probe's own and the scraped ones — at its time.
    pub fn observation(&self, o: &Observation) {
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
        for gone in self.alerts.difference(&current) {
            self.push("ALERTS", gone, now, proto::STALE_NAN);
        }
        self.alerts = current;
    }
}

/// The counters of every queue, for `/metrics`.
#[derive(Clone, Default)]
pub struct Status {
    queues: Vec<Arc<Queue>>,
}

/// One queue's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStatus {
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

/// Starts one queue and its senders per endpoint; they run until `stop` turns true, then
/// try to deliver what is left for up to [`FLUSH_DEADLINE`]. `redactor` cleans what a
/// receiver's answer might echo before it is logged.
pub fn start(
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
