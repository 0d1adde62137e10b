//! The render probe: the check `<service>/render` of a service linked to Render (`render:
//! srv-…`, or `dpg-…` for PostgreSQL). One poll asks Render's API (through
//! `crate::render::client`) for the service, its newest deploy, the events since the last
//! poll and its memory and CPU per instance — a database for its status, real disk and
//! point-in-time recovery — and turns the answers into samples in the Prometheus model
//! (`render_*`, listed in `docs/render.md`). What must outlive a poll — where the event window
//! ended, the event ids seen at its edge, the counters, the failures still shown with their
//! last log lines — lives in a per-check state owned by the `Prober`. The check emits
//! `render_up`, never `probe_success`: Render's API being down is not the service being down.
//!
//! Calls per poll: 8 for a service (service, newest deploy, events, five metrics; 7 on the
//! first poll, which only marks where events start), 8 for a database (database, recovery,
//! disk usage, five metrics), plus one log read per new OOM kill or failed deploy. Every
//! check of one API and key shares one request budget (`render.requests_per_minute`).

use crate::clock::Clock;
use crate::model::{CheckId, Labels, Observation, Sample};
use crate::render::ResourceKind;
use crate::render::client::{LogQuery, RenderClient, RenderError};
use crate::render::model::{Deploy, DeployPhase, FailureReason, MetricSeries};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use url::Url;

/// Render's API as configured (`render:`).
#[derive(Debug)]
pub struct RenderApi {
    /// Base URL, e.g. `https://api.render.com/v1`.
    pub url: Url,
    /// The API key.
    pub key: SecretString,
    /// The workspace `render discover` lists, if set.
    pub owner_id: Option<String>,
    /// How often each linked service is polled.
    pub interval: Duration,
    /// The request budget, per minute.
    pub requests_per_minute: u32,
}

/// One linked service's check, resolved from config.
#[derive(Debug, Clone)]
pub struct RenderSpec {
    /// The API.
    pub api: Arc<RenderApi>,
    /// `srv-…` or `dpg-…`.
    pub resource: String,
    /// Which of the two.
    pub kind: ResourceKind,
    /// A postgres service's own `disk_limit`, compared with Render's real disk.
    pub disk_limit: Option<u64>,
}

impl RenderSpec {
    /// The printable view for `config show`.
    pub(crate) fn view(&self) -> RenderView {
        RenderView {
            resource: self.resource.clone(),
            api_url: self.api.url.to_string(),
            api_key: crate::redact::REDACTED,
        }
    }
}

/// The render part of `config show`.
#[derive(Debug, Serialize)]
pub(crate) struct RenderView {
    /// The Render id.
    pub resource: String,
    /// The API.
    pub api_url: String,
    /// Always `<redacted>`.
    pub api_key: &'static str,
}

/// How long a failure (with its log lines) stays a sample after its event: its page fires
/// while it is shown and resolves when it is not.
pub const FAILURE_SHOWN: Duration = Duration::from_secs(10 * 60);

/// Log lines a page carries, and their longest length.
pub const LOG_LINES: usize = 10;
/// Longest log line kept, characters.
pub const LOG_LINE_CHARS: usize = 200;

/// Most events read per poll (five pages).
const MAX_EVENTS: usize = 500;

/// A failure still shown.
#[derive(Debug, Clone)]
struct Shown {
    labels: Labels,
    until_ms: i64,
}

/// What one check remembers between polls.
#[derive(Debug, Default)]
struct CheckState {
    /// Where the last event window ended.
    window_end: Option<jiff::Timestamp>,
    /// Event ids seen recently (an event at the window's edge is not counted twice).
    seen: VecDeque<String>,
    failures: BTreeMap<FailureReason, u64>,
    restarts: u64,
    deploys: BTreeMap<String, u64>,
    shown: Vec<Shown>,
    /// Log lines of failed deploys, by deploy id (read once).
    deploy_logs: BTreeMap<String, String>,
    /// When the failures of the last [`CRASH_LOOP_WINDOW`] happened, ms.
    recent_failures: VecDeque<i64>,
}

/// The window of `render_server_failures_15m`: repeated failures in it are a crash loop.
pub const CRASH_LOOP_WINDOW: Duration = Duration::from_secs(15 * 60);

/// The state of every render check, and one client per API.
#[derive(Default)]
pub(crate) struct RenderChecks {
    clients: Mutex<HashMap<String, Arc<RenderClient>>>,
    states: Mutex<HashMap<CheckId, Arc<tokio::sync::Mutex<CheckState>>>>,
}

/// The key a client is kept under: the URL and a digest of the key (a new key, a new client).
fn client_key(api: &RenderApi) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(api.key.expose_secret().as_bytes());
    format!("{} {}", api.url, hex::encode(&digest[..8]))
}

impl RenderChecks {
    pub(crate) fn client(
        &self,
        api: &RenderApi,
        http: impl FnOnce() -> Result<reqwest::Client, String>,
        deadline: Duration,
    ) -> Result<Arc<RenderClient>, String> {
        let key = client_key(api);
        let mut clients = self.clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let client = Arc::new(RenderClient::new(
            http()?,
            api.url.clone(),
            api.key.clone(),
            api.requests_per_minute,
            deadline,
            super::explain::transport,
        ));
        clients.insert(key, client.clone());
        Ok(client)
    }

    fn state(&self, id: &CheckId) -> Arc<tokio::sync::Mutex<CheckState>> {
        let mut states = self.states.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        states.entry(id.clone()).or_default().clone()
    }

    /// Runs one poll of `spec` with `client`, within `timeout`.
    pub(crate) async fn run(
        &self,
        id: &CheckId,
        service: Option<&str>,
        spec: &RenderSpec,
        client: Arc<RenderClient>,
        timeout: Duration,
        clock: Arc<dyn Clock>,
    ) -> Observation {
        let at = clock.now();
        let started = std::time::Instant::now();
        let mut base = Labels::new();
        base.insert("check".into(), id.0.clone());
        if let Some(s) = service {
            base.insert("service".into(), s.to_string());
        }
        let state = self.state(id);
        let mut out = Out { base: base.clone(), samples: Vec::new() };
        // What Render answered but the config contradicts: the check fails, the samples stand.
        let mut problems = Vec::new();
        let result = match state.try_lock() {
            Err(_) => Err("the previous poll of Render is still running".to_string()),
            Ok(mut st) => {
                let poll = async {
                    match spec.kind {
                        ResourceKind::Service => poll_service(&client, spec, &mut st, &mut out, at).await,
                        ResourceKind::Postgres => poll_postgres(&client, spec, &mut out, at, &mut problems).await,
                    }
                };
                let r = match tokio::time::timeout(timeout, poll).await {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(_) => Err(format!("the poll of Render took longer than its timeout ({timeout:?})")),
                };
                if spec.kind == ResourceKind::Service {
                    counters(&st, &mut out, at.as_millisecond());
                }
                r
            }
        };
        let latency = started.elapsed();
        let up = result.is_ok();
        let (ok, failures, summary) = match result {
            Ok(summary) if problems.is_empty() => (true, Vec::new(), summary),
            Ok(summary) => (false, problems, summary),
            Err(why) => {
                tracing::debug!(check = %id, error = %why, "Render poll failed.");
                // A failed poll keeps only what is known without Render: the counters.
                out.samples.retain(|s| {
                    s.name.ends_with("_total")
                        || s.name == "render_server_failure_info"
                        || s.name == "render_server_failures_15m"
                });
                (false, vec![why], String::new())
            }
        };
        out.push("render_up", &[], if up { 1.0 } else { 0.0 });
        Observation {
            check: id.clone(),
            service: service.map(str::to_string),
            at,
            ok,
            latency,
            samples: out.samples,
            scraped: Vec::new(),
            over_limit: false,
            failures,
            summary,
        }
    }
}

/// Samples being gathered, with the check's labels.
struct Out {
    base: Labels,
    samples: Vec<Sample>,
}

impl Out {
    fn push(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let mut l = self.base.clone();
        for (k, v) in labels {
            l.insert((*k).to_string(), (*v).to_string());
        }
        self.samples.push(Sample { name: name.into(), labels: l, value });
    }
}

fn counters(st: &CheckState, out: &mut Out, now_ms: i64) {
    for reason in FailureReason::ALL {
        let n = st.failures.get(&reason).copied().unwrap_or(0);
        out.push("render_server_failures_total", &[("reason", reason.as_str())], n as f64);
    }
    out.push("render_server_restarts_total", &[], st.restarts as f64);
    for status in ["succeeded", "failed", "canceled"] {
        let n = st.deploys.get(status).copied().unwrap_or(0);
        out.push("render_deploys_total", &[("status", status)], n as f64);
    }
    let since = now_ms - CRASH_LOOP_WINDOW.as_millis() as i64;
    let recent = st.recent_failures.iter().filter(|t| **t > since).count();
    out.push("render_server_failures_15m", &[], recent as f64);
    for s in st.shown.iter().filter(|s| s.until_ms > now_ms) {
        let labels: Vec<(&str, &str)> = s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        out.push("render_server_failure_info", &labels, 1.0);
    }
}

/// The five per-instance metrics, as samples; returns each instance's memory peak in the
/// window (for an OOM kill's "memory just before").
async fn instance_metrics(
    client: &RenderClient,
    resource: &str,
    out: &mut Out,
    at: jiff::Timestamp,
) -> Result<BTreeMap<String, f64>, RenderError> {
    let start = at - jiff::SignedDuration::from_mins(5);
    let mut peaks = BTreeMap::new();
    for (path, name) in [
        ("memory", "render_instance_memory_bytes"),
        ("memory-limit", "render_instance_memory_limit_bytes"),
        ("cpu", "render_instance_cpu_cores"),
        ("cpu-limit", "render_instance_cpu_limit_cores"),
    ] {
        let series = client.metric(path, resource, start, at).await?;
        for s in &series {
            let instance = s.label("instance").unwrap_or(resource).to_string();
            if let Some(v) = s.last() {
                out.push(name, &[("instance", &instance)], v);
            }
            if path == "memory" {
                let peak = s.values.iter().map(|p| p.value).filter(|v| v.is_finite()).fold(f64::NAN, f64::max);
                if peak.is_finite() {
                    peaks.insert(instance, peak);
                }
            }
        }
    }
    let count: Vec<MetricSeries> = client.metric("instance-count", resource, start, at).await?;
    if let Some(v) = count.iter().find_map(MetricSeries::last) {
        out.push("render_instance_count", &[], v);
    }
    Ok(peaks)
}

/// Log lines of `resource` (an `instance` of it) up to `until`, oldest first, bounded.
async fn last_lines(
    client: &RenderClient,
    owner_id: &str,
    resource: &str,
    instance: Option<&str>,
    until: jiff::Timestamp,
) -> String {
    let query = LogQuery {
        owner_id: owner_id.to_string(),
        resources: vec![resource.to_string()],
        instances: instance.map(|i| vec![i.to_string()]).unwrap_or_default(),
        start: Some(until - jiff::SignedDuration::from_mins(15)),
        end: Some(until + jiff::SignedDuration::from_mins(1)),
        limit: LOG_LINES,
        ..LogQuery::default()
    };
    match client.logs(&query).await {
        Ok(page) => bounded_lines(page.logs.iter().rev().map(|l| l.message.as_str())),
        Err(e) => format!("(logs unavailable: {e})"),
    }
}

/// At most [`LOG_LINES`] lines of at most [`LOG_LINE_CHARS`] characters, control characters
/// made visible, joined with ` | ` (a page shows labels on one line).
pub(crate) fn bounded_lines<'a>(lines: impl DoubleEndedIterator<Item = &'a str>) -> String {
    let kept: Vec<String> = lines
        .rev()
        .take(LOG_LINES)
        .map(|l| {
            let line: String = l.trim_end().chars().take(LOG_LINE_CHARS).collect();
            crate::text::escape_controls(&line).into_owned()
        })
        .collect();
    let mut kept = kept;
    kept.reverse();
    if kept.is_empty() { "(no log lines)".to_string() } else { kept.join(" | ") }
}

fn parse_ts(text: &str) -> Option<jiff::Timestamp> {
    text.parse().ok()
}

async fn poll_service(
    client: &RenderClient,
    spec: &RenderSpec,
    st: &mut CheckState,
    out: &mut Out,
    at: jiff::Timestamp,
) -> Result<String, RenderError> {
    let id = spec.resource.as_str();
    let service = client.service(id).await?;
    let suspended = service.is_suspended();
    let suspender = if suspended { service.suspenders.join(",") } else { "none".to_string() };
    let suspender = if suspender.is_empty() { "unknown".to_string() } else { suspender };
    out.push("render_service_suspended", &[("suspender", &suspender)], if suspended { 1.0 } else { 0.0 });
    let newest: Option<Deploy> = client.deploys(id, 1).await?.into_iter().next();
    if let Some(d) = &newest {
        let source = if d.image.as_ref().is_some_and(|i| !i.reference.is_empty()) { "image" } else { "commit" };
        let what = d.source();
        out.push(
            "render_deploy_info",
            &[("deploy", &d.id), ("status", &d.status), ("trigger", &d.trigger), (source, &what)],
            1.0,
        );
        let phase = d.phase();
        out.push(
            "render_deploy_in_progress",
            &[("deploy", &d.id)],
            if phase == DeployPhase::InProgress { 1.0 } else { 0.0 },
        );
        if d.status == "live"
            && let Some(t) = d.finished_at.as_deref().and_then(parse_ts)
        {
            out.push("render_deploy_live_timestamp_seconds", &[], t.as_second() as f64);
        }
        if phase == DeployPhase::Failed {
            if !st.deploy_logs.contains_key(&d.id) {
                let until = d.finished_at.as_deref().and_then(parse_ts).unwrap_or(at);
                let lines = last_lines(client, &service.owner_id, id, None, until).await;
                st.deploy_logs.clear();
                st.deploy_logs.insert(d.id.clone(), lines);
            }
            let logs = st.deploy_logs.get(&d.id).cloned().unwrap_or_default();
            out.push(
                "render_deploy_failure_info",
                &[("deploy", &d.id), ("status", &d.status), ("trigger", &d.trigger), (source, &what), ("logs", &logs)],
                1.0,
            );
        }
    }
    let peaks = instance_metrics(client, id, out, at).await?;
    // Events since the last poll; the first poll only marks where counting starts.
    let mut new_events = 0;
    if let Some(start) = st.window_end {
        let events = client.events(id, start, at, None, MAX_EVENTS).await?;
        for e in events.iter().rev() {
            if st.seen.contains(&e.id) {
                continue;
            }
            st.seen.push_back(e.id.clone());
            if st.seen.len() > 1_000 {
                st.seen.pop_front();
            }
            new_events += 1;
            if let Some(f) = e.failure() {
                *st.failures.entry(f.reason).or_default() += 1;
                let when_ms = parse_ts(&e.timestamp).unwrap_or(at).as_millisecond();
                st.recent_failures.push_back(when_ms);
                while st.recent_failures.len() > 1_000 {
                    st.recent_failures.pop_front();
                }
                let instance = f.instance.clone().unwrap_or_else(|| "unknown".into());
                let when = parse_ts(&e.timestamp).unwrap_or(at);
                let logs = last_lines(client, &service.owner_id, id, f.instance.as_deref(), when).await;
                let before = peaks
                    .get(&instance)
                    .or_else(|| peaks.values().next())
                    .map_or_else(|| "unknown".to_string(), |b| crate::units::human_bytes(*b as u64));
                let mut labels = Labels::new();
                labels.insert("reason".into(), f.reason.as_str().into());
                labels.insert("instance".into(), instance);
                labels.insert("event".into(), e.id.clone());
                labels.insert("memory_limit".into(), f.memory_limit.clone().unwrap_or_else(|| "unknown".into()));
                labels.insert("memory_before".into(), before);
                labels.insert("detail".into(), f.detail.clone());
                labels.insert("logs".into(), logs);
                st.shown.push(Shown { labels, until_ms: at.as_millisecond() + FAILURE_SHOWN.as_millis() as i64 });
            } else if e.kind == "server_restarted" {
                st.restarts += 1;
            } else if let Some((_, status)) = e.deploy_ended() {
                *st.deploys.entry(status).or_default() += 1;
            }
        }
    }
    st.window_end = Some(at);
    let now_ms = at.as_millisecond();
    st.shown.retain(|s| s.until_ms > now_ms);
    let since = now_ms - CRASH_LOOP_WINDOW.as_millis() as i64;
    st.recent_failures.retain(|t| *t > since);
    let deploy = newest.as_ref().map_or_else(|| "no deploy".to_string(), |d| format!("deploy {} {}", d.id, d.status));
    Ok(format!(
        "{}{deploy}, {new_events} new events",
        if suspended { format!("suspended by {suspender}, ") } else { String::new() }
    ))
}

async fn poll_postgres(
    client: &RenderClient,
    spec: &RenderSpec,
    out: &mut Out,
    at: jiff::Timestamp,
    problems: &mut Vec<String>,
) -> Result<String, RenderError> {
    let id = spec.resource.as_str();
    let db = client.postgres(id).await?;
    out.push("render_postgres_status", &[("status", &db.status)], 1.0);
    out.push("render_postgres_disk_autoscaling", &[], if db.disk_autoscaling_enabled { 1.0 } else { 0.0 });
    let recovery = client.recovery(id).await?;
    out.push("render_postgres_pitr_available", &[], if recovery.recovery_status == "AVAILABLE" { 1.0 } else { 0.0 });
    let usage = client.metric("disk-usage", id, at - jiff::SignedDuration::from_mins(10), at).await?;
    let used = usage.iter().find_map(MetricSeries::last);
    let size = db.disk_bytes();
    if let Some(size) = size {
        out.push("render_postgres_disk_size_bytes", &[], size as f64);
    }
    if let Some(used) = used {
        out.push("render_postgres_disk_usage_bytes", &[], used);
        if let Some(size) = size {
            out.push("render_postgres_disk_usage_ratio", &[], used / size as f64);
        }
    }
    instance_metrics(client, id, out, at).await?;
    let mut summary = format!(
        "{} on plan {} (the plan names its memory), disk {} {}",
        db.status,
        db.plan,
        size.map_or_else(|| "unknown".into(), |s| format!("{} GB", s as f64 / 1e9)),
        used.map_or_else(String::new, |u| format!("({} used)", crate::units::human_bytes(u as u64))),
    );
    if let (Some(limit), Some(size)) = (spec.disk_limit, size) {
        let off = (limit as f64 - size as f64).abs() / size as f64;
        let contradicts = off > 0.02;
        out.push("render_postgres_disk_limit_contradiction", &[], if contradicts { 1.0 } else { 0.0 });
        if contradicts {
            problems.push(format!(
                "disk_limit {} contradicts Render's disk of {} GB for {id} (plan {} names its memory, not its disk); remove `disk_limit`: a linked database takes its disk from Render",
                crate::units::ByteSize(limit),
                size as f64 / 1e9,
                db.plan
            ));
        } else {
            summary.push_str("; disk_limit agrees");
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_bounded_in_count_length_and_control_characters() {
        let many: Vec<String> = (0..50).map(|i| format!("line {i}")).collect();
        let joined = bounded_lines(many.iter().map(String::as_str));
        assert!(joined.starts_with("line 40 | ") && joined.ends_with("line 49"), "{joined}");
        let long = "x".repeat(10_000);
        assert_eq!(bounded_lines([long.as_str()].into_iter()).len(), LOG_LINE_CHARS);
        let hostile = bounded_lines(["a\u{1b}[31mred\nb"].into_iter());
        assert!(!hostile.contains('\u{1b}') && !hostile.contains('\n'), "{hostile}");
        assert_eq!(bounded_lines(std::iter::empty()), "(no log lines)");
    }
}
