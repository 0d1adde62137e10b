//! The shared vocabulary: labels, samples, observations, check ids. Probes produce
//! `Observation`s of `Sample`s named like blackbox_exporter's; the CLI prints them and later
//! the rule engine judges them.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// A check's unique name, e.g. `synapse/health`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct CheckId(pub String);

impl fmt::Display for CheckId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A sorted label set, as in Prometheus.
pub type Labels = BTreeMap<String, String>;

/// One sample in the Prometheus data model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// Metric name, e.g. `probe_success`.
    pub name: String,
    /// Labels, including `check` and `service`.
    pub labels: Labels,
    /// The value.
    pub value: f64,
}

/// What one probe run saw. A target that is down is a successful observation with
/// `probe_success 0` and failures that say why; an error would mean mxwarden itself broke.
#[derive(Debug, Clone, Serialize)]
pub struct Observation {
    /// Which check.
    pub check: CheckId,
    /// Its service label.
    pub service: Option<String>,
    /// When the probe started.
    pub at: jiff::Timestamp,
    /// Whether every expectation held.
    pub ok: bool,
    /// Wall time of the whole probe.
    pub latency: std::time::Duration,
    /// The probe's own samples, blackbox_exporter style: `probe_success`,
    /// `probe_duration_seconds`, `probe_http_status_code`, `probe_ssl_earliest_cert_expiry`
    /// (a scrape's `up`, `scrape_*`; a poll's `pg_*`).
    pub samples: Vec<Sample>,
    /// Samples read from a scraped page (the families the rules read, with `service` and
    /// `instance`): the rules judge them, but they are the target's, never exported as
    /// mxwarden's own, whatever they are called.
    #[serde(skip)]
    pub scraped: Vec<Sample>,
    /// The scrape failed because the page had more samples to keep than its limit.
    #[serde(skip)]
    pub over_limit: bool,
    /// One sentence per failed expectation, e.g. `status 503 not in [200]`.
    pub failures: Vec<String>,
    /// Facts about a good result, e.g. `status 200`.
    pub summary: String,
}

impl Observation {
    /// The human explanation: the failures joined, or the summary when all is well.
    pub fn detail(&self) -> String {
        if self.failures.is_empty() { self.summary.clone() } else { self.failures.join("; ") }
    }

    /// The value of the first sample called `name`.
    pub fn sample(&self, name: &str) -> Option<f64> {
        self.samples.iter().find(|s| s.name == name).map(|s| s.value)
    }
}
