//! Maintenance windows, as a user meets them: the daemon under a manual clock (a configured
//! window holds a page until it ends; an alert that fires and resolves inside an ad hoc window
//! sends nothing; a reminder goes out before the ad hoc window expires), the CLI round trip
//! against a real store file, the HTTP API over a real socket, and config errors with lines.

use crate::cli::{config, run};
use crate::support::fakes;
use mxwarden::clock::ManualClock;
use mxwarden::store::Store;
use mxwarden::store::maintenance as mstore;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// `mxwarden run` in this process, on a manual clock.
struct Daemon {
    runtime: tokio::runtime::Runtime,
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    clock: Arc<ManualClock>,
    store: Store,
}

impl Daemon {
    fn start(path: &std::path::Path, start: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = mxwarden::config::load(path).unwrap_or_else(|e| panic!("config: {e}"));
        let store_path = config.store.clone();
        let clock = Arc::new(ManualClock::new(start.parse().unwrap()));
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let task = runtime.spawn(mxwarden::daemon::run_until(config, clock.clone(), stop_rx));
        // The daemon creates the store; wait for its file, then open our own handle.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !store_path.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let store = runtime.block_on(Store::open(&store_path)).expect("open the daemon's store");
        std::thread::sleep(Duration::from_millis(2_500)); // first probes and the warm-up
        Self { runtime, stop, task: Some(task), clock, store }
    }

    /// Moves the clock by `minutes`, one minute at a time, giving each minute a real round of
    /// probes and evaluation (a check runs every second).
    fn minutes(&self, minutes: u32) {
        for _ in 0..minutes {
            self.clock.advance(Duration::from_secs(60));
            std::thread::sleep(Duration::from_millis(1_300));
        }
    }

    /// Moves the clock to `at` (ms), a minute at a time as [`Daemon::minutes`] does.
    fn advance_to(&self, at: i64) {
        while self.now_ms() < at {
            let step = (at - self.now_ms()).min(60_000) as u64;
            self.clock.advance(Duration::from_millis(step));
            std::thread::sleep(Duration::from_millis(1_300));
        }
    }

    /// Lets time pass in 20-second steps until `done` holds, at most until `limit` (ms): the
    /// machine may be busy, so a state is waited for, never assumed after a fixed time.
    fn until(&self, what: &str, limit: i64, done: impl Fn(&Self) -> bool) {
        while !done(self) {
            assert!(self.now_ms() < limit, "{what}: not by {limit} on the manual clock");
            self.clock.advance(Duration::from_secs(20));
            std::thread::sleep(Duration::from_millis(1_300));
        }
    }

    fn now_ms(&self) -> i64 {
        use mxwarden::clock::Clock;
        self.clock.now().as_millisecond()
    }

    fn firing(&self) -> Vec<String> {
        let alerts = self.runtime.block_on(self.store.alerts()).unwrap();
        alerts
            .into_iter()
            .filter(|a| matches!(a.state, mxwarden::alert::AlertState::Firing { .. }))
            .map(|a| a.alert)
            .collect()
    }

    fn held(&self) -> Vec<(String, String)> {
        let held = self.runtime.block_on(mstore::held(&self.store)).unwrap();
        held.into_iter().map(|h| (h.delivery.notification.title, h.reason.encode())).collect()
    }

    /// Outbox rows, oldest first: (title, text).
    fn outbox(&self) -> Vec<(String, String)> {
        let mut rows = self.runtime.block_on(self.store.outbox(false, 100)).unwrap();
        rows.reverse();
        rows.into_iter().map(|d| (d.notification.title, d.notification.text)).collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = self.runtime.block_on(async { tokio::time::timeout(Duration::from_secs(10), task).await });
        }
    }
}

/// (status, alertname) of every webhook received.
fn hooks(sink: &fakes::WebhookSink) -> Vec<(String, String)> {
    sink.received
        .lock()
        .unwrap()
        .iter()
        .map(|(_, body)| {
            let p: serde_json::Value = serde_json::from_slice(body).unwrap();
            (
                p["status"].as_str().unwrap().to_string(),
                p["alerts"][0]["labels"]["alertname"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn wait_for_hooks(sink: &fakes::WebhookSink, count: usize, what: &str) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = hooks(sink);
        if got.len() >= count {
            return got;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; webhooks so far: {got:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn story_config(vikunja: &str, sink: &str) -> String {
    format!(
        r#"defaults: {{ interval: 1s, timeout: 2s }}
store: ./state.db
services:
  vikunja: {{ kind: vikunja, url: "{vikunja}", down_after: 30s }}
maintenance:
  - name: vikunja-monthly-update
    services: [vikunja]
    cron: "0 3 1 * *"
    timezone: Europe/Berlin
    duration: 10m
maintenance_reminder: 5m
alerting:
  retry: {{ initial: 300ms }}
  receivers:
    hook: {{ webhook: {{ url: "{sink}" }} }}
  tiers:
    critical: {{ receivers: [hook] }}
"#
    )
}

#[test]
fn the_maintenance_story_on_a_manual_clock() {
    let healthy = Arc::new(AtomicBool::new(true));
    let vikunja = fakes::switchable_vikunja(healthy.clone());
    let sink = fakes::webhook_sink();
    let file = config(&story_config(&vikunja, &sink.url));
    // 02:58 in Berlin on 1 March: the monthly window opens at 03:00 local, 02:00 UTC.
    let d = Daemon::start(&file.path, "2026-03-01T01:58:00Z");

    let at = |t: &str| t.parse::<jiff::Timestamp>().unwrap().as_millisecond();
    d.minutes(3); // 02:01 UTC: inside the window
    healthy.store(false, Ordering::SeqCst);
    d.until("VikunjaDown firing", at("2026-03-01T02:07:00Z"), |d| d.firing() == ["VikunjaDown"]);
    assert!(hooks(&sink).is_empty(), "checks still run and the alert fires, but nothing is sent inside the window");
    assert_eq!(d.held(), [("[FIRING] VikunjaDown (critical)".to_string(), "maintenance".to_string())]);

    d.advance_to(at("2026-03-01T02:09:30Z")); // the last minute of the window
    assert!(hooks(&sink).is_empty(), "still held at 02:09:30");
    d.advance_to(at("2026-03-01T02:10:30Z")); // over
    let got = wait_for_hooks(&sink, 1, "the held page");
    assert_eq!(got, [("firing".to_string(), "VikunjaDown".to_string())], "sent when the window ends");
    let (title, text) = d.outbox()[0].clone();
    assert_eq!(title, "[FIRING] VikunjaDown (critical)");
    assert!(text.contains("held during maintenance; still firing now that it is over"), "{text}");
    assert!(d.held().is_empty());

    healthy.store(true, Ordering::SeqCst);
    d.until("the resolve", at("2026-03-01T02:15:00Z"), |_| hooks(&sink).len() >= 2);
    assert_eq!(hooks(&sink)[1], ("resolved".to_string(), "VikunjaDown".to_string()));

    // An ad hoc window of 12 minutes; down and back up inside it says nothing.
    let opened_at = d.now_ms();
    let w = d
        .runtime
        .block_on(mstore::start(
            &d.store,
            &["vikunja".into()],
            opened_at,
            opened_at + 12 * 60_000,
            "db migration",
            opened_at,
        ))
        .unwrap();
    d.minutes(1);
    healthy.store(false, Ordering::SeqCst);
    let reminder_due = opened_at + 7 * 60_000;
    d.until("VikunjaDown firing again", reminder_due, |d| d.firing() == ["VikunjaDown"]);
    assert_eq!(d.held().len(), 1, "held");
    healthy.store(true, Ordering::SeqCst);
    d.until("the resolve inside the window", reminder_due, |d| d.firing().is_empty());
    assert!(d.held().is_empty(), "fired and resolved inside: forgotten");
    assert_eq!(hooks(&sink).len(), 2, "nothing sent for it");

    d.advance_to(reminder_due); // 5 minutes before the end: the reminder is due
    let got = wait_for_hooks(&sink, 3, "the reminder");
    assert_eq!(got[2], ("firing".to_string(), "MaintenanceEnding".to_string()));
    let (title, text) = d.outbox().last().cloned().unwrap();
    assert_eq!(title, format!("[MAINTENANCE] window #{} for vikunja ends in 5m", w.id));
    assert!(text.contains("Reason: db migration"), "{text}");

    d.advance_to(opened_at + 13 * 60_000); // past the end: nothing more to say
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        hooks(&sink).len(),
        3,
        "one reminder, and nothing for the alert that resolved inside: {:?}",
        hooks(&sink)
    );
}

#[test]
fn cli_start_list_end_round_trip_against_a_real_store() {
    let file = config(
        r#"store: ./state.db
services:
  synapse: { kind: synapse, url: "http://127.0.0.1:9/" }
  vikunja: { kind: vikunja, url: "http://127.0.0.1:9/" }
maintenance:
  - name: synapse-monthly-update
    services: [synapse]
    cron: "0 3 1 * *"
    timezone: Europe/Berlin
    duration: 15m
"#,
    );
    let path = file.path.to_str().unwrap();
    let started = run(
        &["--config", path, "maintenance", "start", "vikunja", "synapse", "--for", "30m", "--reason", "v2.6", "--json"],
        &[],
    );
    assert_eq!(started.code, 0, "{}", started.all());
    let window = started.json();
    let id = window["id"].as_i64().unwrap();
    assert_eq!(window["services"], serde_json::json!(["vikunja", "synapse"]));
    assert_eq!(window["ends_at"].as_i64().unwrap() - window["starts_at"].as_i64().unwrap(), 30 * 60_000);
    assert!(file.path.with_file_name("state.db").exists(), "the store file the daemon reads");

    let listed = run(&["--config", path, "maintenance", "list", "--json"], &[]);
    assert_eq!(listed.code, 0, "{}", listed.all());
    let l = listed.json();
    assert_eq!(l["active"].as_array().unwrap().len(), 1, "{l}");
    assert_eq!(l["active"][0]["source"], "ad_hoc");
    assert_eq!(l["active"][0]["id"], id);
    assert_eq!(l["active"][0]["reason"], "v2.6");
    let next = &l["upcoming"][0];
    assert_eq!(next["name"], "synapse-monthly-update");
    assert!(next["starts"].as_str().unwrap().contains("-01T0"), "the first of a month, 03:00 Berlin: {next}");
    let table = run(&["--config", path, "maintenance", "list"], &[]);
    assert!(table.stdout.contains("OPEN") && table.stdout.contains("v2.6"), "{}", table.all());
    assert!(table.stdout.contains("synapse-monthly-update"), "{}", table.all());

    let ended = run(&["--config", path, "maintenance", "end", &id.to_string()], &[]);
    assert_eq!(ended.code, 0, "{}", ended.all());
    assert!(ended.stdout.contains(&format!("window {id} for vikunja, synapse ended")), "{}", ended.all());
    let again = run(&["--config", path, "maintenance", "end", &id.to_string()], &[]);
    assert_eq!(again.code, 1, "already over: {}", again.all());
    assert!(again.stderr.contains("already ended"), "{}", again.all());
    let unknown = run(&["--config", path, "maintenance", "end", "999"], &[]);
    assert_eq!(unknown.code, 1, "{}", unknown.all());
    let l = run(&["--config", path, "maintenance", "list", "--json"], &[]).json();
    assert!(l["active"].as_array().unwrap().is_empty(), "{l}");

    let typo = run(&["--config", path, "maintenance", "start", "vikunj", "--for", "30m", "--reason", "x"], &[]);
    assert_eq!(typo.code, 2, "{}", typo.all());
    assert!(typo.stderr.contains("no service `vikunj`. Did you mean `vikunja`?"), "{}", typo.all());
    let bad = run(&["--config", path, "maintenance", "start", "vikunja", "--for", "30", "--reason", "x"], &[]);
    assert_eq!(bad.code, 2, "{}", bad.all());
    let long = run(&["--config", path, "maintenance", "start", "vikunja", "--for", "30d", "--reason", "x"], &[]);
    assert_eq!(long.code, 2, "{}", long.all());
    assert!(long.stderr.contains("from 1m to 7d"), "{}", long.all());
    let missing = run(&["--config", path, "maintenance", "start", "vikunja", "--for", "30m"], &[]);
    assert_eq!(missing.code, 2, "--reason is required: {}", missing.all());
}

#[test]
fn config_errors_name_the_line_and_the_key() {
    let cases = [
        ("    cron: \"0 3 1 *\"\n", "maintenance[0].cron", 6, "is not a cron expression"),
        (
            "    cron: \"0 3 1 * *\"\n    timezone: Europe/Brlin\n",
            "maintenance[0].timezone",
            7,
            "not a known time zone",
        ),
    ];
    for (cron, key, line, says) in cases {
        let text = format!(
            "services:\n  vikunja: {{ kind: vikunja, url: \"http://127.0.0.1:9/\" }}\nmaintenance:\n  - name: w\n    services: [vikunja]\n{cron}    duration: 10m\n"
        );
        let file = config(&text);
        let r = run(&["--config", file.path.to_str().unwrap(), "config", "check"], &[]);
        assert_eq!(r.code, 2, "{}", r.all());
        assert!(r.stderr.contains(&format!("mxwarden.yaml:{line}:")) && r.stderr.contains(key), "{key}: {}", r.all());
        assert!(r.stderr.contains(says), "{}", r.all());
    }
    let unknown = config(
        "services:\n  vikunja: { kind: vikunja, url: \"http://127.0.0.1:9/\" }\nmaintenance:\n  - name: w\n    services: [vikunja, synapse]\n    cron: \"@daily\"\n    duration: 10m\n",
    );
    let r = run(&["--config", unknown.path.to_str().unwrap(), "config", "check"], &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("mxwarden.yaml:5:") && r.stderr.contains("maintenance[0].services[1]"), "{}", r.all());
    assert!(r.stderr.contains("no service `synapse`; expected one of: vikunja"), "{}", r.all());

    let deps = config(
        "services:\n  a: { kind: vikunja, url: \"http://127.0.0.1:9/\", depends_on: [b] }\n  b: { kind: vikunja, url: \"http://127.0.0.1:9/\", depends_on: [a] }\n  c: { kind: vikunja, url: \"http://127.0.0.1:9/\", depends_on: [postgre] }\n",
    );
    let r = run(&["--config", deps.path.to_str().unwrap(), "config", "check"], &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("services.a.depends_on: dependencies go round in a circle: a → b → a"), "{}", r.all());
    assert!(r.stderr.contains("mxwarden.yaml:2:"), "{}", r.all());
    assert!(
        r.stderr.contains("mxwarden.yaml:4:") && r.stderr.contains("services.c.depends_on[0]: no service `postgre`"),
        "{}",
        r.all()
    );
}

#[test]
fn the_api_lists_opens_and_ends_windows_with_a_bearer_token() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let rt = fakes::runtime();
    let store = rt.block_on(Store::open(&dir.path().join("api.db"))).unwrap();
    let window = mxwarden::maintenance::RecurringWindow {
        name: "nightly".into(),
        services: vec!["synapse".into()],
        cron_text: "0 3 * * *".into(),
        cron: mxwarden::maintenance::calendar::parse_cron("0 3 * * *").unwrap(),
        duration_ms: 600_000,
        timezone: jiff::tz::TimeZone::UTC,
    };
    let calendar = Arc::new(mxwarden::maintenance::Calendar::new(vec![window]));
    let clock = Arc::new(ManualClock::new("2026-05-01T12:00:00Z".parse().unwrap()));
    let services = ["synapse".to_string(), "mas".to_string()].into_iter().collect();
    let router = mxwarden::server::maintenance::router(
        store,
        Some(secrecy::SecretString::from("t0ken")),
        calendar,
        services,
        clock,
    );
    let base = fakes::serve(router);
    let url = format!("{base}/api/v1/maintenance");
    let http = reqwest::Client::new();
    let send = |req: reqwest::RequestBuilder| -> (u16, serde_json::Value) {
        rt.block_on(async {
            let r = req.send().await.expect("request");
            let status = r.status().as_u16();
            let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let body = r.text().await.unwrap();
            assert!(ct.starts_with("application/json"), "{status} {ct}: {body}");
            (status, serde_json::from_str(&body).unwrap())
        })
    };
    let body = serde_json::json!({"services": ["synapse"], "for": "30m", "reason": "upgrade to 1.120"});

    let (s, l) = send(http.get(&url));
    assert_eq!(s, 200);
    assert!(l["active"].as_array().unwrap().is_empty());
    assert_eq!(l["upcoming"][0]["name"], "nightly");
    assert_eq!(l["upcoming"][0]["starts"], "2026-05-02T03:00:00Z");

    let (s, e) = send(http.post(&url).json(&body));
    assert_eq!((s, e["error"].as_str().unwrap()), (401, "writes need `Authorization: Bearer <admin_token>`"));
    let (s, e) = send(http.post(&url).bearer_auth("wrong").json(&body));
    assert_eq!((s, e["error"].as_str().unwrap()), (403, "wrong token"));
    let (s, e) = send(http.post(&url).bearer_auth("t0ken").body("{not json"));
    assert_eq!(s, 400, "{e}");
    let (s, e) = send(http.post(&url).bearer_auth("t0ken").body(vec![b' '; 64 * 1024]));
    assert_eq!(s, 413, "bodies are bounded: {e}");
    let (s, e) = send(
        http.post(&url)
            .bearer_auth("t0ken")
            .json(&serde_json::json!({"services": ["synapes"], "for": "30m", "reason": "x"})),
    );
    assert_eq!(s, 422);
    assert!(e["error"].as_str().unwrap().contains("Did you mean `synapse`?"), "{e}");

    let (s, w) = send(http.post(&url).bearer_auth("t0ken").json(&body));
    assert_eq!(s, 201, "{w}");
    let id = w["id"].as_i64().unwrap();
    assert_eq!(w["ends_at"].as_i64().unwrap() - w["starts_at"].as_i64().unwrap(), 1_800_000);
    let (_, l) = send(http.get(&url));
    assert_eq!(l["active"][0]["id"], id);
    assert_eq!(l["active"][0]["reason"], "upgrade to 1.120");

    let (s, _) = send(http.delete(format!("{url}/{id}")));
    assert_eq!(s, 401, "ending needs the token too");
    let (s, w) = send(http.delete(format!("{url}/{id}")).bearer_auth("t0ken"));
    assert_eq!(s, 200, "{w}");
    let (s, _) = send(http.delete(format!("{url}/{id}")).bearer_auth("t0ken"));
    assert_eq!(s, 409, "already over");
    let (s, _) = send(http.delete(format!("{url}/424242")).bearer_auth("t0ken"));
    assert_eq!(s, 404);
    let (s, _) = send(http.delete(format!("{url}/abc")).bearer_auth("t0ken"));
    assert_eq!(s, 400);
    let (_, l) = send(http.get(&url));
    assert!(l["active"].as_array().unwrap().is_empty(), "{l}");
}
