//! The shared vocabulary: labels, samples, observations, check ids, service kinds, accepted
//! HTTP statuses. Probes produce `Observation`s of `Sample`s named like blackbox_exporter's;
//! the rule engine judges them, the CLI and the status page show them. A leaf: it imports
//! nothing of ours.

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Milliseconds since the Unix epoch: every instant mxwarden stores or compares.
pub(crate) type Millis = i64;

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
    /// A probe that could not run at all (no client could be built): `why`, no samples.
    pub(crate) fn failed(check: CheckId, service: Option<String>, at: jiff::Timestamp, why: String) -> Self {
        Self {
            check,
            service,
            at,
            ok: false,
            latency: std::time::Duration::ZERO,
            samples: Vec::new(),
            scraped: Vec::new(),
            over_limit: false,
            failures: vec![why],
            summary: String::new(),
        }
    }

    /// The human explanation: the failures joined, or the summary when all is well.
    pub fn detail(&self) -> String {
        if self.failures.is_empty() { self.summary.clone() } else { self.failures.join("; ") }
    }

    /// The value of the first sample called `name`.
    pub fn sample(&self, name: &str) -> Option<f64> {
        self.samples.iter().find(|s| s.name == name).map(|s| s.value)
    }
}

/// The kinds of service mxwarden knows, each with a preset of checks (see `docs/presets.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    /// Synapse homeserver: `/health`, client versions, admin server version, federation, TLS.
    Synapse,
    /// Matrix Authentication Service: OIDC discovery, JWKS, `/health` on the internal listener.
    Mas,
    /// Vikunja: `/health` and `/api/v1/info`.
    Vikunja,
    /// authentik: liveness, readiness and the admin version API.
    Authentik,
    /// PostgreSQL: connections, disk, query time, replication, from the server's statistics.
    Postgres,
}

impl ServiceKind {
    /// The kind's name as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Synapse => "synapse",
            Self::Mas => "mas",
            Self::Vikunja => "vikunja",
            Self::Authentik => "authentik",
            Self::Postgres => "postgres",
        }
    }
}

/// An accepted status: an exact code (`200`) or a class (`2xx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StatusMatcher {
    /// Exactly this code.
    Code(u16),
    /// Any code of this hundred: `Class(2)` is 200–299.
    Class(u16),
}

impl StatusMatcher {
    /// Whether `code` is accepted.
    pub(crate) fn matches(self, code: u16) -> bool {
        match self {
            Self::Code(c) => c == code,
            Self::Class(c) => code / 100 == c,
        }
    }

    fn parse(text: &str) -> Option<Self> {
        let t = text.trim();
        if let Some(class) = t.strip_suffix("xx").or_else(|| t.strip_suffix("XX")) {
            return class.parse().ok().filter(|c| (1..=5).contains(c)).map(Self::Class);
        }
        t.parse().ok().filter(|c| (100..=599).contains(c)).map(Self::Code)
    }
}

impl std::fmt::Display for StatusMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Code(c) => write!(f, "{c}"),
            Self::Class(c) => write!(f, "{c}xx"),
        }
    }
}

impl<'de> Deserialize<'de> for StatusMatcher {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = StatusMatcher;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a status code from 100 to 599 (200) or a class (2xx)")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<StatusMatcher, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<StatusMatcher, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<StatusMatcher, E> {
                StatusMatcher::parse(text).ok_or_else(|| {
                    E::custom(format!(
                        "`{text}` is not a status; expected a code from 100 to 599 (200) or a class (2xx)"
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl serde::Serialize for StatusMatcher {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Code(c) => s.serialize_u16(*c),
            Self::Class(_) => s.collect_str(self),
        }
    }
}
