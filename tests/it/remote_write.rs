//! `remote_write:` into a real Prometheus (started with `--web.enable-remote-write-receiver`
//! by `tests/support/prometheus.rs`), read back through its HTTP API: the probes' samples
//! against a real local HTTP target, a scraped series from a local exposition endpoint, and
//! `ALERTS` for a firing and a pending rule, with equal values. A switchable front
//! (`WriteProxy`) takes the receiver away for a minute (samples queued, delivered after, none
//! lost within the bound), overflows the queue (drops counted, the bound held), answers 400
//! (dropped with one log line, not retried), 429 (retried), never, or with an endless body
//! (probing goes on). Config errors name line and key; no credential is ever shown; `doctor`
//! proves each receiver with an empty write; of two instances on one store only the leader
//! writes.

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
    target_with(up, Arc::new(AtomicBool::new(true)))
}

/// [`target`] whose queue `a` is 123.5 deep while `deep` says so, 50 otherwise.
fn target_with(up: Arc<AtomicBool>, deep: Arc<AtomicBool>) -> String {
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
                get(move || {
                    let a = if deep.load(Ordering::SeqCst) { "123.5" } else { "50" };
                    async move {
                        format!(
                            "# HELP rw_queue_depth Jobs waiting.\n# TYPE rw_queue_depth gauge\n\
                             rw_queue_depth{{queue=\"a\"}} {a}\nrw_queue_depth{{queue=\"b\"}} 7\n"
                        )
                    }
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
    let (up, deep) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicBool::new(true)));
    let target = target_with(up.clone(), deep.clone());
    let port = services::free_port();
    let token = "rw-bearer-s3cret-value";
    let file = daemon_config(
        port,
        &target,
        &proxy.url,
        &format!(
            "    bearer_token: {token}\n    headers: {{ X-Scope-OrgID: tenant-a }}\n    queue: {{ batch_send_deadline: 200ms }}\n"
        ),
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
    // When the alert resolves its series ends at once (a staleness marker), not five minutes
    // later as a series that merely stops would.
    deep.store(false, Ordering::SeqCst);
    let resolved = Instant::now();
    wait_for("ALERTS gone", Duration::from_secs(30), &log, || {
        prom.query(r#"ALERTS{alertname="RwQueueDeep"}"#).is_empty().then_some(())
    });
    assert!(resolved.elapsed() < Duration::from_secs(30));
    assert_eq!(prom.value(r#"rw_queue_depth{queue="a"}"#), Some(50.0));
    assert_eq!(prom.query(r#"ALERTS{alertname="RwQueueSlowBurn"}"#).len(), 2, "still pending");

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

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

#[test]
fn the_receiver_away_for_a_minute_gets_every_queued_sample_after() {
    let prom = Prometheus::start();
    let proxy = WriteProxy::start(prom.write_url(), Mode::Unavailable);
    let target = target(Arc::new(AtomicBool::new(true)));
    let port = services::free_port();
    let file = daemon_config(
        port,
        &target,
        &proxy.url,
        "    queue: { max_samples: 5000, batch_send_deadline: 200ms, max_backoff: 2s }\n",
    );
    let log = file.path.with_extension("log");
    let base = format!("http://127.0.0.1:{port}");
    let from = now_ms();
    let _daemon = Daemon::start(&file.path);
    // A full minute of 503s: nothing gets through, everything is held and retried.
    let mut held = Vec::new();
    while now_ms() - from < 60_000 {
        std::thread::sleep(Duration::from_secs(5));
        if let Some(q) = counter(&base, "mxwarden_remote_write_queue_samples") {
            held.push(q);
        }
    }
    let to = now_ms();
    assert_eq!(counter(&base, "mxwarden_remote_write_samples_sent_total"), Some(0.0), "the receiver was away");
    assert!(held.windows(2).all(|w| w[0] <= w[1]) && held.len() >= 10, "held samples only grow: {held:?}");
    let queued = *held.last().unwrap();
    assert!((300.0..=5000.0).contains(&queued), "a minute of samples held, within the bound: {queued}");
    assert!(counter(&base, "mxwarden_remote_write_samples_retried_total").unwrap() > 0.0);
    assert!(proxy.hits(Mode::Unavailable) >= 20, "retried with backoff: {} attempts", proxy.hits(Mode::Unavailable));
    assert!(log_of(&file).contains("Remote write failing; retrying with backoff."), "{}", log_of(&file));

    proxy.set(Mode::Pass);
    wait_for("the queue delivered", Duration::from_secs(30), &log, || {
        let sent = counter(&base, "mxwarden_remote_write_samples_sent_total")?;
        (sent >= queued && counter(&base, "mxwarden_remote_write_queue_samples")? < 50.0).then_some(())
    });
    // Every probe of the minute away is in Prometheus, about one a second, no gap.
    let samples = prom.samples(r#"probe_success{check="web"}"#, "5m");
    let away: Vec<i64> = samples.iter().map(|s| s.0).filter(|t| (from..=to).contains(t)).collect();
    assert!(away.len() >= 55, "{} probes of the minute away delivered: {away:?}", away.len());
    assert!(away.windows(2).all(|w| w[1] - w[0] < 2_500), "no gap: {away:?}");
    assert!(samples.iter().all(|s| s.1 == 1.0));
    let scraped = prom.samples(r#"rw_queue_depth{queue="a"}"#, "5m");
    assert!(scraped.iter().filter(|s| (from..=to).contains(&s.0)).count() >= 55, "scraped series too");
    assert_eq!(counter(&base, "mxwarden_remote_write_samples_dropped_total"), Some(0.0), "none lost");
    assert_eq!(counter(&base, "mxwarden_remote_write_samples_failed_total"), Some(0.0));
    assert!(log_of(&file).contains("Remote write delivering again."));
}

#[test]
fn a_full_queue_drops_and_counts_while_holding_its_bound() {
    let prom = Prometheus::start();
    let proxy = WriteProxy::start(prom.write_url(), Mode::Unavailable);
    let target = target(Arc::new(AtomicBool::new(true)));
    let port = services::free_port();
    let file = daemon_config(
        port,
        &target,
        &proxy.url,
        "    queue: { max_samples: 100, max_shards: 1, max_samples_per_send: 20, batch_send_deadline: 100ms }\n",
    );
    let log = file.path.with_extension("log");
    let base = format!("http://127.0.0.1:{port}");
    let start_ms = now_ms();
    let _daemon = Daemon::start(&file.path);
    let mut last_dropped = 0.0;
    let started = Instant::now();
    wait_for("samples dropped", Duration::from_secs(60), &log, || {
        let q = counter(&base, "mxwarden_remote_write_queue_samples")?;
        assert!(q <= 100.0, "the bound holds: {q}");
        last_dropped = counter(&base, "mxwarden_remote_write_samples_dropped_total")?;
        (last_dropped >= 100.0).then_some(())
    });
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(300));
        let q = counter(&base, "mxwarden_remote_write_queue_samples").unwrap();
        let d = counter(&base, "mxwarden_remote_write_samples_dropped_total").unwrap();
        assert!((90.0..=100.0).contains(&q), "held at the bound: {q}");
        assert!(d >= last_dropped, "drops only grow");
        last_dropped = d;
    }
    let text = log_of(&file);
    assert_eq!(text.matches("queue is full").count(), 1, "one line a minute, not one per drop:\n{text}");

    proxy.set(Mode::Pass);
    let switched = now_ms();
    wait_for("delivered after", Duration::from_secs(30), &log, || {
        (counter(&base, "mxwarden_remote_write_samples_sent_total")? >= 90.0).then_some(())
    });
    // What was held is the newest: the probes just before the switch are there, most of the
    // earlier ones (dropped) are not.
    let samples = prom.samples(r#"probe_success{check="web"}"#, "5m");
    assert!(samples.iter().any(|s| (switched - 3_000..switched).contains(&s.0)), "the newest held: {samples:?}");
    let probes = (switched - start_ms) / 1_000;
    let before: Vec<_> = samples.iter().filter(|s| s.0 < switched).collect();
    assert!((before.len() as i64) < probes - 5, "of ~{probes} probes the oldest were dropped: {samples:?}");
    assert!(started.elapsed() < Duration::from_secs(90));
}

#[test]
fn a_400_is_dropped_with_one_bounded_log_line_and_a_429_is_retried() {
    let prom = Prometheus::start();
    let proxy = WriteProxy::start(prom.write_url(), Mode::BadRequestEndless);
    let target = target(Arc::new(AtomicBool::new(true)));
    let port = services::free_port();
    let file = daemon_config(
        port,
        &target,
        &proxy.url,
        "    remote_timeout: 5s\n    queue: { max_shards: 1, batch_send_deadline: 200ms, max_backoff: 200ms }\n",
    );
    let log = file.path.with_extension("log");
    let base = format!("http://127.0.0.1:{port}");
    let _daemon = Daemon::start(&file.path);
    wait_for("three batches refused", Duration::from_secs(30), &log, || {
        (counter(&base, "mxwarden_remote_write_samples_failed_total")? > 0.0
            && proxy.hits(Mode::BadRequestEndless) >= 3)
            .then_some(())
    });
    assert_eq!(counter(&base, "mxwarden_remote_write_samples_retried_total"), Some(0.0), "a 400 is never retried");
    let text = log_of(&file);
    let refusals: Vec<&str> = text.lines().filter(|l| l.contains("refused a batch")).collect();
    assert!(refusals.len() >= 3, "one line per refused batch:\n{text}");
    for line in &refusals {
        assert!(line.contains("status=400"), "{line}");
        assert!(line.contains("xxxx"), "the start of the answer is shown: {line}");
        assert!(line.len() < 1_500, "an endless body is cut short: {} bytes", line.len());
    }

    let switched = now_ms();
    proxy.set(Mode::TooMany);
    std::thread::sleep(Duration::from_secs(4));
    let attempts = proxy.hits(Mode::TooMany);
    assert!((2..=6).contains(&attempts), "retried, but after Retry-After: 1 rather than max_backoff: {attempts}");
    assert!(counter(&base, "mxwarden_remote_write_samples_retried_total").unwrap() > 0.0);
    let back = now_ms();
    proxy.set(Mode::Pass);
    wait_for("delivered after the 429s", Duration::from_secs(30), &log, || {
        let samples = prom.samples(r#"probe_success{check="web"}"#, "5m");
        samples.iter().any(|s| (switched + 1_000..back).contains(&s.0)).then_some(samples)
    });
    let samples = prom.samples(r#"probe_success{check="web"}"#, "5m");
    assert!(
        samples.iter().all(|s| s.0 >= switched - 2_000),
        "what the 400s refused never arrived: {samples:?} (switched at {switched})"
    );
}

#[test]
fn a_receiver_that_never_answers_or_never_ends_its_body_does_not_hold_up_probing() {
    let proxy = WriteProxy::start("http://127.0.0.1:9/api/v1/write".into(), Mode::ServerErrorEndless);
    let up = Arc::new(AtomicBool::new(true));
    let target = target(up.clone());
    let port = services::free_port();
    // A long request deadline: stopping must not wait it out.
    let file = daemon_config(
        port,
        &target,
        &proxy.url,
        "    remote_timeout: 20s\n    queue: { batch_send_deadline: 100ms }\n",
    );
    let log = file.path.with_extension("log");
    let base = format!("http://127.0.0.1:{port}");
    let mut daemon = Daemon::start(&file.path);
    let own = |name: &str| -> Option<f64> {
        let (_, text) = services::http_get(&format!("{base}/metrics"))?;
        let line = text.lines().find(|l| l.starts_with(name) && l.contains(r#"check="web""#))?;
        line.rsplit(' ').next()?.parse().ok()
    };
    wait_for("the web check up", Duration::from_secs(20), &log, || (own("probe_success")? == 1.0).then_some(()));
    for mode in [Mode::ServerErrorEndless, Mode::Hang] {
        proxy.set(mode);
        std::thread::sleep(Duration::from_secs(2));
        up.store(false, Ordering::SeqCst);
        let flipped = Instant::now();
        wait_for("the outage seen", Duration::from_secs(10), &log, || (own("probe_success")? == 0.0).then_some(()));
        assert!(flipped.elapsed() < Duration::from_secs(5), "{mode:?}: probing went on: {:?}", flipped.elapsed());
        up.store(true, Ordering::SeqCst);
        wait_for("back up", Duration::from_secs(10), &log, || (own("probe_success")? == 1.0).then_some(()));
        assert!(proxy.hits(mode) >= 1, "{mode:?} was met");
    }
    assert!(counter(&base, "mxwarden_remote_write_samples_retried_total").unwrap() > 0.0, "500s are retried");
    assert_eq!(counter(&base, "mxwarden_remote_write_samples_sent_total"), Some(0.0));

    // Stopping with a receiver that never answers takes the flush deadline (5 s), not the
    // request's 20 s, and says what was lost.
    let stopping = Instant::now();
    let pid = daemon.0.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let exited = loop {
        if let Some(status) = daemon.0.try_wait().unwrap() {
            break status;
        }
        assert!(stopping.elapsed() < Duration::from_secs(30), "the daemon did not stop:\n{}", log_of(&file));
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exited.success(), "{exited:?}\n{}", log_of(&file));
    assert!(stopping.elapsed() < Duration::from_secs(10), "flush is bounded: {:?}", stopping.elapsed());
    assert!(log_of(&file).contains("Remote write stopped with samples undelivered."), "{}", log_of(&file));
}

#[test]
fn config_errors_name_line_and_key_and_no_credential_is_ever_shown() {
    let bad = config(
        "remote_write:
  - url: ftp://metrics.example.org/write
  - url: https://user:pa55-w0rd-x@metrics.example.org/api/v1/write
  - url: https://m.example.org/api/v1/write
    bearer_token: tok
    basic_auth: { username: u, password: p }
  - url: https://m.example.org/api/v1/write
    headers: { Content-Encoding: gzip }
    queue: { max_samples: 5, max_shards: 0 }
    remote_timeout: 1h
",
    );
    let r = run(&["config", "check", bad.path.to_str().unwrap()], &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    let out = r.all();
    for (line, key) in [
        (2, "remote_write[0].url"),
        (3, "remote_write[1].url"),
        (6, "remote_write[2].basic_auth"),
        (7, "remote_write[3].headers.content-encoding"),
        (9, "remote_write[3].queue.max_samples"),
        (9, "remote_write[3].queue.max_shards"),
        (10, "remote_write[3].remote_timeout"),
    ] {
        assert!(out.contains(&format!(":{line}:")) && out.contains(key), "line {line}, {key}:\n{out}");
    }
    assert!(!out.contains("pa55-w0rd-x"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("rw-token");
    std::fs::write(&token_file, "filed-t0ken-value\n").unwrap();
    let good = config(&format!(
        "remote_write:
  - url: https://mimir.example.org/api/v1/push?tenant=qs-s3cret
    basic_auth: {{ username: writer, password: b4sic-pw-value }}
    headers: {{ X-Scope-OrgID: team-a, X-Api-Key: head3r-key-value }}
  - url: http://127.0.0.1:9090/api/v1/write
    bearer_token_file: {}
",
        token_file.display()
    ));
    let shown = run(&["--config", good.path.to_str().unwrap(), "config", "show", "--json"], &[]);
    assert_eq!(shown.code, 0, "{}", shown.all());
    let text = shown.all();
    for secret in ["b4sic-pw-value", "head3r-key-value", "filed-t0ken-value", "qs-s3cret"] {
        assert!(!text.contains(secret), "{secret} shown:\n{text}");
    }
    let views = shown.json()["remote_write"].as_array().cloned().unwrap_or_default();
    assert_eq!(views.len(), 2, "{text}");
    assert!(views[0].as_str().unwrap().contains("basic auth as writer"), "{text}");
    assert!(views[0].as_str().unwrap().contains("X-Api-Key") || views[0].as_str().unwrap().contains("x-api-key"));
    assert!(views[1].as_str().unwrap().contains("bearer token <redacted>"), "{text}");
}

#[test]
fn doctor_proves_each_receiver_with_an_empty_write() {
    let prom = Prometheus::start();
    let refusing = WriteProxy::start(prom.write_url(), Mode::BadRequestEndless);
    let file = config(&format!(
        "remote_write:
  - url: \"{}\"
    bearer_token: doct0r-t0ken-value
  - url: \"{}/api/v1/no-such-path\"
  - url: \"{}\"
  - url: \"http://127.0.0.1:{}/api/v1/write\"
",
        prom.write_url(),
        prom.base,
        refusing.url,
        services::free_port()
    ));
    let r = run(&["--config", file.path.to_str().unwrap(), "doctor", "--json"], &[]);
    assert_eq!(r.code, 1, "two receivers fail: {}", r.all());
    let findings: Vec<serde_json::Value> =
        r.json()["findings"].as_array().unwrap().iter().filter(|f| f["area"] == "remote_write").cloned().collect();
    let outcomes: Vec<&str> = findings.iter().map(|f| f["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["pass", "fail", "warn", "fail"], "{findings:#?}");
    assert!(findings[1]["fix"].as_str().unwrap().contains("--web.enable-remote-write-receiver"), "{findings:#?}");
    assert!(findings[2]["detail"].as_str().unwrap().len() < 1_000, "an endless answer is cut short");
    assert!(findings[3]["detail"].as_str().unwrap().contains("connection refused"), "{findings:#?}");
    assert!(findings.iter().all(|f| !f["subject"].as_str().unwrap().contains("/api/")), "origins only: {findings:#?}");
    assert!(!r.all().contains("doct0r-t0ken-value"));
    // Nothing was stored by the empty writes.
    assert!(prom.query("count({__name__=~\".+\"})").is_empty(), "an empty write stores nothing");
}

#[test]
fn of_two_instances_on_one_store_only_the_leader_writes() {
    let prom = Prometheus::start();
    let target = target(Arc::new(AtomicBool::new(true)));
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("shared.db");
    let mut daemons = Vec::new();
    let mut bases = Vec::new();
    for name in ["alpha", "bravo"] {
        let port = services::free_port();
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(
            &path,
            format!(
                "instance: {name}
store: \"{}\"
listen: 127.0.0.1:{port}
defaults: {{ interval: 1s, timeout: 1s }}
checks:
  - name: web
    http: {{ url: \"{target}/\" }}
remote_write:
  - url: \"{}\"
    queue: {{ batch_send_deadline: 200ms }}
",
                store.display(),
                prom.write_url()
            ),
        )
        .unwrap();
        daemons.push(Daemon::start(&path));
        bases.push(format!("http://127.0.0.1:{port}"));
    }
    let log = dir.path().join("alpha.log");
    let leads = |base: &str| -> Option<bool> {
        let (_, body) = services::http_get(&format!("{base}/api/v1/status"))?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["leader"]["this_instance"].as_bool()
    };
    let leader = wait_for("one instance leads", Duration::from_secs(30), &log, || {
        let l: Vec<bool> = bases.iter().map(|b| leads(b).unwrap_or(false)).collect();
        (l.iter().filter(|x| **x).count() == 1).then(|| l.iter().position(|x| *x).unwrap())
    });
    let follower = 1 - leader;
    wait_for("ten probes in Prometheus", Duration::from_secs(30), &log, || {
        (prom.samples(r#"probe_success{check="web"}"#, "5m").len() >= 10).then_some(())
    });
    let samples = prom.samples(r#"probe_success{check="web"}"#, "5m");
    let gaps: Vec<i64> = samples.windows(2).map(|w| w[1].0 - w[0].0).collect();
    assert!(gaps.iter().all(|g| *g >= 500), "one writer's probes, about a second apart: {gaps:?}");
    assert!(counter(&bases[leader], "mxwarden_remote_write_samples_sent_total").unwrap() > 0.0);
    assert_eq!(
        counter(&bases[follower], "mxwarden_remote_write_samples_sent_total"),
        Some(0.0),
        "the follower sends nothing"
    );
    for base in &bases {
        assert_eq!(counter(base, "mxwarden_remote_write_samples_failed_total"), Some(0.0), "no refused batch");
    }
}
