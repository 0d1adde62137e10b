//! mxwarden's own `/metrics` in the Prometheus text format (0.0.4): the probes' latest
//! results blackbox_exporter-style, alert states as Prometheus's `ALERTS`, the outbox, and the
//! process's memory and CPU (from `/proc/self`, as the Go and Python clients report them).

use super::{AppState, error, view};
use crate::model::Labels;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::fmt::Write;

/// HELP texts of the probe samples we export.
fn help(name: &str) -> &'static str {
    match name {
        "probe_success" => "Whether the check's last probe met every expectation.",
        "probe_duration_seconds" => "How long the check's last probe took.",
        "probe_http_status_code" => "HTTP status of the check's last probe (0 when none).",
        "probe_ssl_earliest_cert_expiry" => "Earliest expiry of the certificate chain, Unix seconds.",
        "up" => "Whether the check's last scrape succeeded.",
        "scrape_duration_seconds" => "How long the check's last scrape took.",
        "scrape_samples_scraped" => "Samples on the check's last scraped page.",
        "pg_up" => "Whether the last PostgreSQL poll got its facts.",
        _ => "A probe result.",
    }
}

/// Escapes a label value.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn labels_text(labels: &Labels) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    format!("{{{}}}", parts.join(","))
}

/// A finite value in the text format.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{v}")
    }
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> Response {
    match render(&state).await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn render(state: &AppState) -> Result<String, String> {
    let mut out = String::new();
    let mut families: BTreeMap<String, Vec<(Labels, f64)>> = BTreeMap::new();
    for info in &state.live.checks {
        if let Some(latest) = state.live.latest(&info.name) {
            for s in latest.samples {
                families.entry(s.name).or_default().push((s.labels, s.value));
            }
        }
    }
    for (name, samples) in &families {
        let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} gauge", help(name));
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{} {}", labels_text(labels), number(*value));
        }
    }
    let alerts = view::open_alerts(state).await.map_err(|e| e.to_string())?;
    let _ = writeln!(out, "# HELP ALERTS Pending and firing alerts, as Prometheus reports them.\n# TYPE ALERTS gauge");
    for a in &alerts {
        let mut labels = a.labels.clone();
        labels.insert("alertname".into(), a.alert.clone());
        labels.insert("alertstate".into(), a.state.into());
        let _ = writeln!(out, "ALERTS{} 1", labels_text(&labels));
    }
    let stats = state.store.delivery_stats().await.map_err(|e| e.to_string())?;
    let _ = writeln!(
        out,
        "# HELP mxwarden_outbox_pending Notifications waiting to be delivered.\n# TYPE mxwarden_outbox_pending gauge"
    );
    for s in &stats {
        let _ = writeln!(out, "mxwarden_outbox_pending{{receiver=\"{}\"}} {}", escape(&s.receiver), s.pending);
    }
    let _ = writeln!(
        out,
        "# HELP mxwarden_outbox_dead Notifications given up on (dead letters).\n# TYPE mxwarden_outbox_dead gauge"
    );
    for s in &stats {
        let _ = writeln!(out, "mxwarden_outbox_dead{{receiver=\"{}\"}} {}", escape(&s.receiver), s.dead);
    }
    let _ = writeln!(
        out,
        "# HELP mxwarden_delivery_failures_total Failed delivery attempts.\n# TYPE mxwarden_delivery_failures_total counter"
    );
    for s in &stats {
        let _ = writeln!(
            out,
            "mxwarden_delivery_failures_total{{receiver=\"{}\"}} {}",
            escape(&s.receiver),
            s.failed_attempts
        );
    }
    let _ = writeln!(
        out,
        "# HELP mxwarden_build_info mxwarden's version.\n# TYPE mxwarden_build_info gauge\nmxwarden_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        out,
        "# HELP mxwarden_checks Checks the running config has.\n# TYPE mxwarden_checks gauge\nmxwarden_checks {}",
        state.live.checks.len()
    );
    if let Some(p) = process() {
        let _ = writeln!(
            out,
            "# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}",
            p.rss_bytes
        );
        let _ = writeln!(
            out,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {}",
            p.cpu_seconds
        );
    }
    Ok(out)
}

/// The process's own figures.
struct Process {
    rss_bytes: u64,
    cpu_seconds: f64,
}

/// Reads `/proc/self/stat`: utime and stime (fields 14 and 15, in clock ticks of 1/100 s on
/// Linux) and rss (field 24, pages of 4 KiB).
fn process() -> Option<Process> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    let cpu_seconds = (ticks(11)? + ticks(12)?) / 100.0;
    let rss_pages: u64 = fields.get(21)?.parse().ok()?;
    Some(Process { rss_bytes: rss_pages * 4096, cpu_seconds })
}
