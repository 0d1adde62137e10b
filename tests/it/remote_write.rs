//! `remote_write:` into a real Prometheus (started with `--web.enable-remote-write-receiver`
//! by `tests/support/prometheus.rs`), read back through its HTTP API: the probes' samples
//! against a real local HTTP target, a scraped series from a local exposition endpoint, and
//! `ALERTS` for a firing and a pending rule, with equal values. A switchable front
//! (`WriteProxy`) takes the receiver away for a minute (samples queued, delivered after, none
//! lost within the bound), overflows the queue (drops counted, the bound held), answers 400
//! (dropped with one log line, not retried), 429 (retried), never, or with an endless body
//! (probing goes on). Config errors name line and key; no credential is ever shown.

use crate::alerting::{Daemon, wait_for};
use crate::cli::{config, run};
use crate::support::fakes;
use crate::support::prometheus::{Mode, Prometheus, WriteProxy};
use crate::support::services;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A local target: `/` answers 200 or 503 as `up` says; `/metrics` is an exposition page
/// with two series of `rw_queue_depth`.
fn target(up: Arc<AtomicBool>) -> String {
    fakes::serve(
        Router::new()
            .route(
                "/",
                get(move || {
                    let ok = up.load(Ordering::SeqCst);
                    async move { if ok { (StatusCode::OK, "fine") } else { (StatusCode::SERVICE_UNAVAILABLE, "down") } }
                }),
            )
            .route(
                "/metrics",
                get(|| async {
                    "# HELP rw_queue_depth Jobs waiting.\n# TYPE rw_queue_depth gauge\n\
                     rw_queue_depth{queue=\"a\"} 123.5\nrw_queue_depth{queue=\"b\"} 7\n"
                }),
            ),
    )
}

/// A config with one HTTP check (`web`), one scrape (`exporter`), a rule that fires at once
/// and one that stays pending, and `remote_write` to `url` with `extra` keys.
fn daemon_config(port: u16, target: &str, url: &str, extra: &str) -> crate::cli::ConfigFile {
    config(&format!(
        r#"listen: 127.0.0.1:{port}
defaults: {{ interval: 1s, timeout: 2s }}
checks:
  - name: web
    http: {{ url: "{target}/" }}
  - name: exporter
    service: jobs
    scrape: {{ url: "{target}/metrics" }}
rules:
  - alert: RwQueueDeep
    expr: rw_queue_depth > 100
    labels: {{ severity: warning }}
  - alert: RwQueueSlowBurn
    expr: rw_queue_depth > 1
    for: 1h
    labels: {{ severity: info }}
remote_write:
  - url: "{url}"
{extra}"#
    ))
}

/// The value of mxwarden's own `/metrics` line `name{url="…"}` (the only queue).
fn counter(base: &str, name: &str) -> Option<f64> {
    let (_, text) = services::http_get(&format!("{base}/metrics"))?;
    text.lines().find(|l| l.starts_with(&format!("{name}{{"))).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn log_of(file: &crate::cli::ConfigFile) -> String {
    std::fs::read_to_string(file.path.with_extension("log")).unwrap_or_default()
}

#[test]
fn probe_samples_scraped_series_and_alerts_read_back_from_a_real_prometheus_with_equal_values() {
    let prom = Prometheus::start();
    let proxy = WriteProxy::start(prom.write_url(), Mode::Pass);
    let up = Arc::new(AtomicBool::new(true));
    let target = target(up.clone());
    let port = services::free_port();
    let token = "rw-bearer-s3cret-value";
    let file = daemon_config(
        port,
        &target,
        &proxy.url,
        &format!("    bearer_token: {token}\n    headers: {{ X-Scope-OrgID: tenant-a }}\n    queue: {{ batch_send_deadline: 200ms }}\n"),
    );
    let log = file.path.with_extension("log");
    let _daemon = Daemon::start(&file.path);
    let base = format!("http://127.0.0.1:{port}");

    wait_for("probe_success 1 in Prometheus", Duration::from_secs(30), &log, || {
        (prom.value(r#"probe_success{check="web"}"#)? == 1.0).then_some(())
    });
    let switched = Instant::now();
    up.store(false, Ordering::SeqCst);
    wait_for("probe_success 0 in Prometheus", Duration::from_secs(30), &log, || {
        (prom.value(r#"probe_success{check="web"}"#)? == 0.0).then_some(())
    });

    // The probe's own series, sample by sample: 1s while the target answered 200, then 0s,
    // in time order about one interval apart.
    let samples = prom.samples(r#"probe_success{check="web"}"#, "5m");
    assert!(samples.windows(2).all(|w| w[0].0 < w[1].0), "time order: {samples:?}");
    let first_zero = samples.iter().position(|s| s.1 == 0.0).expect("a 0 arrived");
    assert!(first_zero >= 1 && samples[..first_zero].iter().all(|s| s.1 == 1.0), "1s first: {samples:?}");
    assert!(samples[first_zero..].iter().all(|s| s.1 == 0.0), "then 0s only: {samples:?}");
    assert!(switched.elapsed() < Duration::from_secs(30));
    let status_codes = prom.samples(r#"probe_http_status_code{check="web"}"#, "5m");
    assert_eq!(status_codes.len(), samples.len(), "one status code per probe: {status_codes:?}");
    for ((t1, ok), (t2, code)) in samples.iter().zip(&status_codes) {
        assert_eq!(t1, t2, "same probe, same timestamp");
        assert_eq!(*code, if *ok == 1.0 { 200.0 } else { 503.0 }, "at {t1}");
    }

    // The same values mxwarden itself shows, for every probe family of the web check.
    std::thread::sleep(Duration::from_secs(2));
    let (_, own) = services::http_get(&format!("{base}/metrics")).unwrap();
    let mut compared = 0;
    for line in own.lines().filter(|l| l.starts_with("probe_") && l.contains(r#"check="web""#)) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let name = series.split('{').next().unwrap();
        if name == "probe_duration_seconds" {
            // Changes every probe: compare with one of the samples Prometheus holds instead.
            let v: f64 = value.parse().unwrap();
            assert!(prom.samples(series, "5m").iter().any(|s| s.1 == v), "{line} is among Prometheus's samples");
        } else if name != "probe_ssl_earliest_cert_expiry" {
            assert_eq!(prom.value(series), Some(value.parse().unwrap()), "{line}");
        }
        compared += 1;
    }
    assert!(compared >= 3, "probe families compared: {compared}\n{own}");

    // The scraped series, as read, with the target's labels plus service and instance.
    let instance = target.trim_start_matches("http://").to_string();
    let scraped = prom.query(r#"rw_queue_depth{queue="a"}"#);
    assert_eq!(scraped.len(), 1, "{scraped:?}");
    assert_eq!(scraped[0]["value"][1], "123.5");
    assert_eq!(scraped[0]["metric"]["service"], "jobs");
    assert_eq!(scraped[0]["metric"]["instance"], instance.as_str());
    assert_eq!(prom.value(r#"rw_queue_depth{queue="b",service="jobs"}"#), Some(7.0));

    // ALERTS as Prometheus itself writes them: firing, and pending for the `for: 1h` rule.
    let firing = wait_for("ALERTS firing", Duration::from_secs(20), &log, || {
        let r = prom.query(r#"ALERTS{alertname="RwQueueDeep"}"#);
        (!r.is_empty()).then_some(r)
    });
    assert_eq!(firing.len(), 1, "only queue a is over 100: {firing:?}");
    assert_eq!(firing[0]["metric"]["alertstate"], "firing");
    assert_eq!(firing[0]["metric"]["queue"], "a");
    assert_eq!(firing[0]["metric"]["severity"], "warning");
    assert_eq!(firing[0]["value"][1], "1");
    let pending = prom.query(r#"ALERTS{alertname="RwQueueSlowBurn"}"#);
    assert_eq!(pending.len(), 2, "both queues over 1: {pending:?}");
    assert!(pending.iter().all(|p| p["metric"]["alertstate"] == "pending" && p["value"][1] == "1"), "{pending:?}");

    // On the wire: the protocol's headers, the credential, sorted labels with __name__.
    let (headers, request) = proxy.last.lock().unwrap().clone().expect("a request passed through");
    assert_eq!(headers["content-encoding"], "snappy");
    assert_eq!(headers["content-type"], "application/x-protobuf");
    assert_eq!(headers["x-prometheus-remote-write-version"], "0.1.0");
    assert!(headers["user-agent"].to_str().unwrap().starts_with("mxwarden/"));
    assert_eq!(headers["authorization"], format!("Bearer {token}").as_str());
    assert_eq!(headers["x-scope-orgid"], "tenant-a");
    for ts in &request.timeseries {
        let names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
        assert!(names.contains(&"__name__") && names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
    }

    // Counters: everything sent, nothing dropped or failed; the URL label is the origin.
    let origin = format!("{}/", proxy.url.trim_end_matches("/api/v1/write"));
    let (_, own) = services::http_get(&format!("{base}/metrics")).unwrap();
    assert!(own.contains(&format!("mxwarden_remote_write_samples_sent_total{{url=\"{origin}\"}}")), "{own}");
    assert!(counter(&base, "mxwarden_remote_write_samples_sent_total").unwrap() > 20.0);
    assert_eq!(counter(&base, "mxwarden_remote_write_samples_dropped_total"), Some(0.0));
    assert_eq!(counter(&base, "mxwarden_remote_write_samples_failed_total"), Some(0.0));
    assert!(!own.contains(token) && !log_of(&file).contains(token), "the token is never shown");
}
