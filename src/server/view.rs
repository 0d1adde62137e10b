//! The status as both the page and `/api/v1/status` show it: every check with its state,
//! latest result and uptime, grouped by service, plus the open alerts. Built from the live
//! view, the history and the store. A large config lists one page of checks, failing first
//! (`listing`); the counts and `overall` cover every check.

use super::AppState;
use crate::history::{self, Bucket, DAY_MS, Resolution};
use crate::store::StoreError;
use serde::Serialize;

/// One check's status.
#[derive(Debug, Serialize)]
pub(crate) struct CheckStatus {
    /// Name.
    pub name: String,
    /// Service.
    pub service: Option<String>,
    /// `http`, `scrape` or `postgres`.
    pub kind: &'static str,
    /// `up`, `down`, `maintenance` (its service is in a maintenance window now) or `unknown`
    /// (not run yet, or `stale`).
    pub state: &'static str,
    /// What is shown is older than it should be: the store refuses writes, or the latest
    /// result is older than two intervals and the timeout. The state is then `unknown`.
    pub stale: bool,
    /// When it last ran, ms.
    pub last_run_ms: Option<i64>,
    /// Its latency then, ms.
    pub latency_ms: Option<i64>,
    /// What it saw.
    pub detail: Option<String>,
    /// Uptime over the last 24 hours, 30 and 90 days (`None` without data).
    pub uptime_24h: Option<f64>,
    /// 30 days.
    pub uptime_30d: Option<f64>,
    /// 90 days.
    pub uptime_90d: Option<f64>,
    /// The last 90 UTC days, oldest first.
    #[serde(skip)]
    pub days: Vec<Bucket>,
    /// The last 24 hours in 15-minute steps: mean latency (ms), oldest first.
    #[serde(skip)]
    pub latency_24h: Vec<Option<f64>>,
}

/// An open alert.
#[derive(Debug, Serialize)]
pub(crate) struct OpenAlert {
    /// Alert name.
    pub alert: String,
    /// `pending` or `firing`.
    pub state: &'static str,
    /// Severity label.
    pub severity: String,
    /// Service label.
    pub service: Option<String>,
    /// Summary annotation.
    pub summary: String,
    /// Since, ms.
    pub since_ms: i64,
    /// Every label.
    pub labels: crate::model::Labels,
}

/// A stretch of failed results of one check (from the last 48 hours of raw results).
#[derive(Debug, Serialize)]
pub(crate) struct Incident {
    /// Check.
    pub check: String,
    /// First failed result, ms.
    pub from_ms: i64,
    /// First good result after it, ms; `None` while it lasts.
    pub to_ms: Option<i64>,
}

/// The whole status.
#[derive(Debug, Serialize)]
pub(crate) struct Status {
    /// When this was computed, ms.
    pub generated_ms: i64,
    /// When the running config started, ms.
    pub started_ms: i64,
    /// `unknown` while the store refuses writes; else `down` when a check is down, else `up`.
    pub overall: &'static str,
    /// How many checks are in each state, and which of them `checks` lists.
    pub listing: super::listing::Listing,
    /// Why the store refuses writes, since when; `None` while it takes them.
    pub store_failure: Option<crate::store::health::Failure>,
    /// The checks listed (every check of a config that fits in one listing).
    pub checks: Vec<CheckStatus>,
    /// Pending and firing alerts.
    pub alerts: Vec<OpenAlert>,
    /// Recent incidents, newest first.
    pub incidents: Vec<Incident>,
    /// Maintenance windows open now.
    pub maintenance: Vec<crate::maintenance::calendar::Occurrence>,
    /// Maintenance windows coming next.
    pub upcoming_maintenance: Vec<crate::maintenance::calendar::Occurrence>,
    /// Updates in progress (`mxwarden update`, `POST /api/v1/updates`), with their steps.
    pub updates: Vec<crate::store::updates::UpdateRow>,
    /// Who leads the instances sharing the store (`null` while unknown).
    pub leader: Option<crate::live::LeaderView>,
}

/// Open alerts from the store.
pub(crate) async fn open_alerts(state: &AppState) -> Result<Vec<OpenAlert>, StoreError> {
    Ok(state
        .store
        .alerts()
        .await?
        .into_iter()
        .map(|a| {
            let (kind, since) = (a.state.phase().as_str(), a.state.since());
            OpenAlert {
                alert: a.alert,
                state: kind,
                severity: a.labels.get("severity").cloned().unwrap_or_default(),
                service: a.labels.get("service").cloned(),
                summary: a.annotations.get("summary").cloned().unwrap_or_default(),
                since_ms: since,
                labels: a.labels,
            }
        })
        .collect())
}

/// Computes the status now, listing the checks `selection` asks for.
pub(crate) async fn status(state: &AppState, selection: super::listing::Selection) -> Result<Status, StoreError> {
    let now = state.clock.now().as_millisecond();
    let store_failure = state.store.health().failure();
    let mut checks = Vec::new();
    let mut incidents = Vec::new();
    // Every check's state from memory; the history is read for the listed ones only.
    let mut latest: Vec<Option<crate::live::Latest>> =
        state.live.checks.iter().map(|info| state.live.latest_result(&info.name)).collect();
    let states: Vec<(&'static str, bool)> = state
        .live
        .checks
        .iter()
        .zip(&latest)
        .map(|(info, latest)| {
            let stale =
                store_failure.is_some() || latest.as_ref().is_some_and(|l| crate::live::Live::is_stale(info, l, now));
            let shown = match latest {
                _ if stale => "unknown",
                _ if info.service.as_deref().is_some_and(|s| state.calendar.in_maintenance(s, now)) => "maintenance",
                Some(l) if l.ok => "up",
                Some(_) => "down",
                None => "unknown",
            };
            (shown, stale)
        })
        .collect();
    let names: Vec<&str> = states.iter().map(|(s, _)| *s).collect();
    let (page, listing) = super::listing::select(&names, selection);
    for index in page {
        let info = &state.live.checks[index];
        let latest = latest[index].take();
        let (shown, stale) = states[index];
        let days = state.history.daily(&info.name, 90, now).await?;
        let hours = state.history.buckets(&info.name, Resolution::Hour, now - DAY_MS, now).await?;
        let from = now - DAY_MS;
        let minutes = state.history.buckets(&info.name, Resolution::Minute, from, now).await?;
        let latency_24h = minutes
            .chunks(15)
            .map(|c| {
                let n: i64 = c.iter().map(|b| b.up + b.down + b.maintenance).sum();
                (n > 0).then(|| {
                    c.iter().map(|b| b.latency_avg_ms * (b.up + b.down + b.maintenance) as f64).sum::<f64>() / n as f64
                })
            })
            .collect();
        let raw = state.history.raw(&info.name, now - history::RAW_RETENTION_MS, now + 1).await?;
        incidents.extend(runs_of_failures(&info.name, &raw));
        checks.push(CheckStatus {
            name: info.name.clone(),
            service: info.service.clone(),
            kind: info.kind,
            state: shown,
            stale,
            last_run_ms: latest.as_ref().map(|l| l.at_ms),
            latency_ms: latest.as_ref().map(|l| l.latency_ms),
            detail: latest.map(|l| l.detail),
            uptime_24h: history::uptime(&hours),
            uptime_30d: history::uptime(&days[days.len().saturating_sub(30)..]),
            uptime_90d: history::uptime(&days),
            days,
            latency_24h,
        });
    }
    incidents.sort_by_key(|i| std::cmp::Reverse(i.from_ms));
    incidents.truncate(20);
    let overall = if store_failure.is_some() {
        "unknown"
    } else if listing.down > 0 {
        "down"
    } else {
        "up"
    };
    Ok(Status {
        generated_ms: now,
        started_ms: state.live.started_ms,
        overall,
        listing,
        store_failure,
        checks,
        alerts: open_alerts(state).await?,
        incidents,
        maintenance: state.calendar.active(now),
        upcoming_maintenance: state.calendar.upcoming(now),
        updates: crate::store::updates::list(&state.store, true, 20)
            .await?
            .into_iter()
            .map(|mut u| {
                // Its process is gone (a crash): say so rather than "in progress" for ever.
                if !crate::update::run::owner_alive(&u.owner) && u.owner != crate::update::run::owner() {
                    u.state = "interrupted".into();
                }
                u
            })
            .collect(),
        leader: state.live.leader(),
    })
}

/// The runs of consecutive failed results.
fn runs_of_failures(check: &str, raw: &[history::Result]) -> Vec<Incident> {
    let mut out = Vec::new();
    let mut open: Option<i64> = None;
    for r in raw {
        match (r.state, open) {
            (history::State::Down, None) => open = Some(r.at_ms),
            (history::State::Up, Some(from)) => {
                out.push(Incident { check: check.to_string(), from_ms: from, to_ms: Some(r.at_ms) });
                open = None;
            }
            _ => {}
        }
    }
    if let Some(from) = open {
        out.push(Incident { check: check.to_string(), from_ms: from, to_ms: None });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::State;

    #[test]
    fn incidents_are_runs_of_failures_and_the_last_may_be_open() {
        let r = |at_ms, state| history::Result { at_ms, state, latency_ms: 1 };
        let raw = [r(1, State::Up), r(2, State::Down), r(3, State::Down), r(4, State::Up), r(5, State::Down)];
        let runs = runs_of_failures("c", &raw);
        assert_eq!(runs.len(), 2);
        assert_eq!((runs[0].from_ms, runs[0].to_ms), (2, Some(4)));
        assert_eq!((runs[1].from_ms, runs[1].to_ms), (5, None));
    }
}
