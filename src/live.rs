//! What the running daemon knows right now, shared with its HTTP server: the checks it runs,
//! the latest result of each (with the probe's own samples, for `/metrics`), and the counters
//! `/metrics` reports about mxwarden itself (scrapes over their limit, samples it left out).

use crate::config::Config;
use crate::model::{Observation, Sample};
use crate::probe::spec::{CheckSpec, ProbeSpec};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A check as the status page lists it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CheckInfo {
    /// `<service>/<check>` or the check's own name.
    pub name: String,
    /// Its service, if any.
    pub service: Option<String>,
    /// `http`, `scrape` or `postgres`.
    pub kind: &'static str,
    /// How often it runs, ms.
    pub interval_ms: i64,
    /// A latest result older than this is stale (two intervals and the timeout), ms.
    pub stale_after_ms: i64,
}

/// A check's latest result.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Latest {
    /// When it ran, ms.
    pub at_ms: i64,
    /// Whether every expectation held.
    pub ok: bool,
    /// Wall time, ms.
    pub latency_ms: i64,
    /// The failures, or what was seen.
    pub detail: String,
    /// The probe's own samples (`probe_*`, `up`, `scrape_*`, `pg_up`).
    #[serde(skip)]
    pub samples: Vec<Sample>,
}

/// The daemon's current view.
#[derive(Debug)]
pub(crate) struct Live {
    /// When this config started running, ms.
    pub started_ms: i64,
    /// The checks, in config order.
    pub checks: Vec<CheckInfo>,
    /// The services, in name order.
    pub services: Vec<String>,
    /// The checks' names, to tell them from other observations (backups) at once.
    names: HashSet<String>,
    latest: Mutex<HashMap<String, Latest>>,
    /// Scrapes that failed over their sample limit, per check, since this config started.
    limit_exceeded: Mutex<HashMap<String, u64>>,
    /// Samples `/metrics` left out for an invalid name or label name, since this config started.
    invalid_names: AtomicU64,
    /// Who leads the instances sharing the store, as last read (`None`: not known yet).
    leader: Mutex<Option<LeaderView>>,
}

/// Who leads, for `/api/v1/status` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct LeaderView {
    /// The leading instance's name.
    pub instance: String,
    /// Its term.
    pub term: i64,
    /// Whether that is this process.
    pub this_instance: bool,
}

/// Whether a sample describes the probe itself (exported on `/metrics`). Only the probe's own
/// samples are asked: a scraped page's samples are never exported, whatever their names.
fn is_probe_sample(name: &str) -> bool {
    name.starts_with("probe_")
        || name.starts_with("matrix_canary_")
        || matches!(name, "up" | "scrape_duration_seconds" | "scrape_samples_scraped" | "pg_up")
}

impl Live {
    /// The view of `config`, nothing run yet.
    pub(crate) fn new(config: &Config, started_ms: i64) -> Self {
        let checks: Vec<CheckInfo> = config.checks.iter().map(info).collect();
        let mut services: Vec<String> = checks.iter().filter_map(|c| c.service.clone()).collect();
        services.sort();
        services.dedup();
        Self {
            started_ms,
            names: checks.iter().map(|c| c.name.clone()).collect(),
            checks,
            services,
            latest: Mutex::new(HashMap::new()),
            limit_exceeded: Mutex::new(HashMap::new()),
            invalid_names: AtomicU64::new(0),
            leader: Mutex::new(None),
        }
    }

    /// Takes in a result: its own samples (never what it scraped), and whether it was a scrape
    /// over its limit.
    pub(crate) fn observe(&self, o: &Observation) {
        if o.over_limit {
            *self
                .limit_exceeded
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(o.check.0.clone())
                .or_default() += 1;
        }
        let latest = Latest {
            at_ms: o.at.as_millisecond(),
            ok: o.ok,
            latency_ms: o.latency.as_millis() as i64,
            detail: o.detail(),
            samples: o.samples.iter().filter(|s| is_probe_sample(&s.name)).cloned().collect(),
        };
        self.latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(o.check.0.clone(), latest);
    }

    /// Whether `check` is one of the config's checks (backup runs also report observations).
    pub(crate) fn has(&self, check: &str) -> bool {
        self.names.contains(check)
    }

    /// Scrapes over their sample limit, per check (checks with none left out).
    pub(crate) fn limit_exceeded(&self) -> Vec<(String, u64)> {
        let counts = self.limit_exceeded.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut counts: Vec<(String, u64)> = counts.iter().map(|(k, v)| (k.clone(), *v)).collect();
        counts.sort();
        counts
    }

    /// Records who leads (`None`: nobody holds a valid lease, or it cannot be read).
    pub(crate) fn set_leader(&self, view: Option<LeaderView>) {
        *self.leader.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = view;
    }

    /// Who leads, as last read.
    pub(crate) fn leader(&self) -> Option<LeaderView> {
        self.leader.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Counts samples `/metrics` left out for an invalid name; returns the new total.
    pub(crate) fn count_invalid_names(&self, n: u64) -> u64 {
        self.invalid_names.fetch_add(n, Ordering::Relaxed) + n
    }

    /// Whether `latest`, the latest result of `check`, is older at `now` than it should be:
    /// the check has missed its runs (the daemon is stuck or overloaded).
    pub(crate) fn is_stale(check: &CheckInfo, latest: &Latest, now: i64) -> bool {
        now.saturating_sub(latest.at_ms) > check.stale_after_ms
    }

    /// The latest result of `check` without its samples (what the status shows), if it ran.
    pub(crate) fn latest_result(&self, check: &str) -> Option<Latest> {
        let latest = self.latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        latest.get(check).map(|l| Latest {
            at_ms: l.at_ms,
            ok: l.ok,
            latency_ms: l.latency_ms,
            detail: l.detail.clone(),
            samples: Vec::new(),
        })
    }

    /// The latest result of `check`, if it ran.
    pub(crate) fn latest(&self, check: &str) -> Option<Latest> {
        self.latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(check).cloned()
    }
}

fn info(spec: &CheckSpec) -> CheckInfo {
    CheckInfo {
        name: spec.id.0.clone(),
        service: spec.service.clone(),
        kind: match spec.probe {
            ProbeSpec::Http(_) => "http",
            ProbeSpec::Scrape(_) => "scrape",
            ProbeSpec::Postgres(_) => "postgres",
            ProbeSpec::Render(_) => "render",
            ProbeSpec::MatrixCanary(_) => "matrix_canary",
        },
        interval_ms: spec.interval.as_millis() as i64,
        stale_after_ms: i64::try_from((2 * spec.interval + spec.timeout).as_millis()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_is_stale_after_two_missed_runs_and_a_timeout() {
        let check =
            CheckInfo { name: "web".into(), service: None, kind: "http", interval_ms: 10_000, stale_after_ms: 25_000 };
        let latest = Latest { at_ms: 100_000, ok: true, latency_ms: 3, detail: String::new(), samples: Vec::new() };
        assert!(!Live::is_stale(&check, &latest, 125_000), "two intervals and the timeout: still fresh");
        assert!(Live::is_stale(&check, &latest, 125_001));
        assert!(!Live::is_stale(&check, &latest, 0), "a clock behind the result is not staleness");
    }
}
