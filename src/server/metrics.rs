//! mxwarden's own `/metrics` in the Prometheus text format (0.0.4): the probes' latest
//! results blackbox_exporter-style, alert states as Prometheus's `ALERTS`, the outbox, the
//! scrapes over their sample limit, and the process's memory and CPU (from `/proc/self`, as
//! the Go and Python clients report them).
//!
//! The output is ours, line for line: a scraped page's samples are never exported (only the
//! probes' own samples are, see `live`), every metric and label name is checked against
//! Prometheus's rules before it is written (a sample with an invalid one — say, an alert
//! label read from a hostile page — is left out and counted in
//! `mxwarden_metrics_invalid_names_dropped_total`), and label values and HELP texts are
//! escaped, so nothing a scrape target sends can start a line of its own.

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
        "matrix_canary_success" => "Whether the last Matrix canary message was seen through /sync in time.",
        "matrix_canary_latency_seconds" => "Send to visible through /sync of the last Matrix canary message.",
        "matrix_canary_missed_rounds" => "Matrix canary rounds in a row whose message was not seen.",
        _ => "A probe result.",
    }
}

/// A metric name as the text format 0.0.4 allows it unquoted: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn is_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// A label name as the text format 0.0.4 allows it: `[a-zA-Z_][a-zA-Z0-9_]*`, and not one of
/// the names starting with `__` that Prometheus reserves.
fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    !name.starts_with("__")
        && bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Escapes a label value: backslash, double quote and line feed, as the format requires.
fn escape_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
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

/// The page being written: only valid names get in, and what was left out is counted.
#[derive(Default)]
struct Exposition {
    text: String,
    /// Samples (or whole families) left out for an invalid metric or label name.
    dropped: u64,
}

impl Exposition {
    /// `# HELP` and `# TYPE` of a family; false (and nothing written) for an invalid name.
    fn family(&mut self, name: &str, kind: &str, help: &str) -> bool {
        if !is_metric_name(name) {
            return false;
        }
        let _ = write!(self.text, "# HELP {name} ");
        for c in help.chars() {
            match c {
                '\\' => self.text.push_str("\\\\"),
                '\n' => self.text.push_str("\\n"),
                c => self.text.push(c),
            }
        }
        let _ = writeln!(self.text, "\n# TYPE {name} {kind}");
        true
    }

    /// One sample line, or nothing (counted) when a name is invalid.
    fn sample<'a>(&mut self, name: &str, labels: impl IntoIterator<Item = (&'a str, &'a str)>, value: &str) {
        let start = self.text.len();
        if !is_metric_name(name) {
            self.dropped += 1;
            return;
        }
        self.text.push_str(name);
        let mut first = true;
        for (k, v) in labels {
            if !is_label_name(k) {
                self.text.truncate(start);
                self.dropped += 1;
                return;
            }
            self.text.push(if first { '{' } else { ',' });
            first = false;
            let _ = write!(self.text, "{k}=\"");
            escape_value(&mut self.text, v);
            self.text.push('"');
        }
        if !first {
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    /// A whole family of samples; a family with an invalid name is left out, each sample counted.
    fn gauges(&mut self, name: &str, help: &str, samples: &[(Labels, f64)]) {
        if !self.family(name, "gauge", help) {
            self.dropped += samples.len() as u64;
            return;
        }
        for (labels, value) in samples {
            self.sample(name, labels.iter().map(|(k, v)| (k.as_str(), v.as_str())), &number(*value));
        }
    }
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    match render(&state).await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn render(state: &AppState) -> Result<String, String> {
    let mut out = Exposition::default();
    // Only the probes' own samples are in `latest` (never a scraped page's): these families
    // are mxwarden's alone.
    let mut families: BTreeMap<String, Vec<(Labels, f64)>> = BTreeMap::new();
    for info in &state.live.checks {
        if let Some(latest) = state.live.latest(&info.name) {
            for s in latest.samples {
                families.entry(s.name).or_default().push((s.labels, s.value));
            }
        }
    }
    for (name, samples) in &families {
        out.gauges(name, help(name), samples);
    }
    let alerts = view::open_alerts(state).await.map_err(|e| e.to_string())?;
    out.family("ALERTS", "gauge", "Pending and firing alerts, as Prometheus reports them.");
    for a in &alerts {
        // An alert's labels come from the series it judged, scraped ones included: checked
        // like every other name.
        let mut labels = a.labels.clone();
        labels.insert("alertname".into(), a.alert.clone());
        labels.insert("alertstate".into(), a.state.into());
        out.sample("ALERTS", labels.iter().map(|(k, v)| (k.as_str(), v.as_str())), "1");
    }
    let stats = state.store.delivery_stats().await.map_err(|e| e.to_string())?;
    out.family("mxwarden_outbox_pending", "gauge", "Notifications waiting to be delivered.");
    for s in &stats {
        out.sample("mxwarden_outbox_pending", [("receiver", s.receiver.as_str())], &s.pending.to_string());
    }
    out.family("mxwarden_outbox_dead", "gauge", "Notifications given up on (dead letters).");
    for s in &stats {
        out.sample("mxwarden_outbox_dead", [("receiver", s.receiver.as_str())], &s.dead.to_string());
    }
    out.family("mxwarden_delivery_failures_total", "counter", "Failed delivery attempts.");
    for s in &stats {
        out.sample(
            "mxwarden_delivery_failures_total",
            [("receiver", s.receiver.as_str())],
            &s.failed_attempts.to_string(),
        );
    }
    out.family(
        "mxwarden_scrape_limit_exceeded_total",
        "counter",
        "Scrapes that failed because the page had more samples to keep than sample_limit (or series_limit).",
    );
    for (check, n) in state.live.limit_exceeded() {
        out.sample("mxwarden_scrape_limit_exceeded_total", [("check", check.as_str())], &n.to_string());
    }
    out.family("mxwarden_build_info", "gauge", "mxwarden's version.");
    out.sample("mxwarden_build_info", [("version", env!("CARGO_PKG_VERSION"))], "1");
    let leader = state.live.leader();
    let leads = leader.as_ref().is_some_and(|l| l.this_instance);
    out.family("mxwarden_leader", "gauge", "1 when this instance leads the instances sharing the store, else 0.");
    out.sample("mxwarden_leader", [], if leads { "1" } else { "0" });
    out.family("mxwarden_leader_term", "gauge", "The current leadership term (0 while unknown).");
    out.sample("mxwarden_leader_term", [], &leader.map_or(0, |l| l.term).to_string());
    out.family("mxwarden_checks", "gauge", "Checks the running config has.");
    out.sample("mxwarden_checks", [], &state.live.checks.len().to_string());
    if let Some(p) = process() {
        out.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
        out.sample("process_resident_memory_bytes", [], &p.rss_bytes.to_string());
        out.family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
        out.sample("process_cpu_seconds_total", [], &p.cpu_seconds.to_string());
    }
    // Last, so that it includes what this very page left out.
    let dropped = state.live.count_invalid_names(out.dropped);
    out.family(
        "mxwarden_metrics_invalid_names_dropped_total",
        "counter",
        "Samples /metrics left out because a metric or label name was not a valid Prometheus name.",
    );
    out.sample("mxwarden_metrics_invalid_names_dropped_total", [], &dropped.to_string());
    Ok(out.text)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_rules() {
        let cases: &[(&str, bool, bool, &str)] = &[
            // (name, valid metric name, valid label name, why)
            ("up", true, true, "plain"),
            ("job:rate5m:sum", true, false, "colons: metric names only"),
            ("_x9", true, true, "leading underscore, digits after"),
            ("__name__", true, false, "`__` is reserved for labels"),
            ("9x", false, false, "a digit cannot start a name"),
            ("", false, false, "empty"),
            ("my.metric", false, false, "a dot needs the quoted syntax 0.0.4 does not have"),
            ("a\"} 1\nevil_metric 1", false, false, "an injection attempt"),
            ("ünï", false, false, "non-ASCII"),
        ];
        for (name, metric, label, why) in cases {
            assert_eq!(is_metric_name(name), *metric, "{why}: {name:?}");
            assert_eq!(is_label_name(name), *label, "{why}: {name:?}");
        }
    }

    #[test]
    fn nothing_a_sample_carries_can_start_a_line_of_its_own() {
        let mut out = Exposition::default();
        out.family("ALERTS", "gauge", "Help with a \\ and a\nnew line.");
        out.sample("ALERTS", [("alertname", "A"), ("a\"} 1\nevil_metric 1", "x")], "1");
        out.sample("ALERTS", [("alertname", "B"), ("v", "q\"uo\\te\nnl} 1\nevil_metric 1")], "1");
        out.sample("evil_metric 1\nALERTS", [], "1");
        out.gauges("bad name", "h", &[(Labels::new(), 1.0), (Labels::new(), 2.0)]);
        assert_eq!(out.dropped, 4, "the bad label name, the bad sample name, the bad family's two samples");
        let lines: Vec<&str> = out.text.lines().collect();
        assert_eq!(lines.len(), 3, "HELP, TYPE and the one good sample:\n{}", out.text);
        assert_eq!(lines[0], r"# HELP ALERTS Help with a \\ and a\nnew line.");
        assert_eq!(lines[2], r#"ALERTS{alertname="B",v="q\"uo\\te\nnl} 1\nevil_metric 1"} 1"#);
        let mut names = Vec::new();
        crate::expo::parse(&out.text, |e| {
            if let crate::expo::Event::Sample(s) = e {
                names.push(s.name.to_string());
                let v = s.labels.iter().find(|l| l.name == "v").map(|l| crate::expo::unescape(l.value).into_owned());
                assert_eq!(v.as_deref(), Some("q\"uo\\te\nnl} 1\nevil_metric 1"), "the value reads back as it was");
            }
        })
        .expect("the page parses");
        assert_eq!(names, ["ALERTS"]);
    }
}
