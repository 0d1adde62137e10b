//! Render, against the fake of its API (`crates/render-fake`, the documented shapes — Render
//! is a SaaS that cannot run here): the daemon on a manual clock pages an OOM kill with its
//! log lines and resolves it, pages a failed deploy, holds a service's pages while its deploy
//! is in progress and pages when it still fails after the deploy is live, pages memory at 96 %
//! of MAS's limit; the client backs off on 429 as the headers ask and loses no result, reads
//! 250 services over three pages, triggers (202 without a body), follows and rolls back
//! deploys; a bad key is a clear error that never shows the key; hostile answers (huge,
//! silent, malformed) are bounded.

use crate::cli::{config, run};
use crate::support::fakes;
use mxwarden::clock::ManualClock;
use mxwarden::render::RenderClient;
use mxwarden::render::client::Triggered;
use mxwarden::render::model::DeployRequest;
use mxwarden::store::Store;
use mxwarden::store::maintenance as mstore;
use mxwarden_render_fake::FakeRender;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const KEY: &str = "rnd_TESTKEYdoNotShow123";

fn fake() -> FakeRender {
    fakes::runtime().block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        FakeRender::spawn(listener, KEY)
    })
}

fn client(api_url: &str, key: &str, deadline: Duration) -> RenderClient {
    client_with_budget(api_url, key, deadline, RenderClient::default_budget())
}

fn client_with_budget(api_url: &str, key: &str, deadline: Duration, per_minute: u32) -> RenderClient {
    let _ = rustls::crypto::ring::default_provider().install_default();
    RenderClient::new(
        reqwest::Client::new(),
        api_url.parse().unwrap(),
        key.to_string().into(),
        per_minute,
        deadline,
        |e, _| e.to_string(),
    )
}

/// `mxwarden run` in this process, on a manual clock (checks run every real second).
struct Daemon {
    runtime: tokio::runtime::Runtime,
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    clock: Arc<ManualClock>,
    store: Store,
}

impl Daemon {
    fn start(path: &std::path::Path) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = mxwarden::config::load(path).unwrap_or_else(|e| panic!("config: {e}"));
        let store_path = config.store.clone();
        let clock = Arc::new(ManualClock::new(jiff::Timestamp::now()));
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let task = runtime.spawn(mxwarden::daemon::run_until(config, clock.clone(), stop_rx));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !store_path.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let store = runtime.block_on(Store::open(&store_path)).expect("open the daemon's store");
        let d = Self { runtime, stop, task: Some(task), clock, store };
        d.seconds(5); // first probes (the render poll's first one marks where events start)
        d
    }

    fn now(&self) -> jiff::Timestamp {
        use mxwarden::clock::Clock;
        self.clock.now()
    }

    /// Real seconds pass, the manual clock with them.
    fn seconds(&self, n: u64) {
        for _ in 0..n {
            self.clock.advance(Duration::from_secs(1));
            std::thread::sleep(Duration::from_millis(1_000));
        }
    }

    /// Moves the manual clock `secs` in steps of 20 s, each with a real round of probes.
    fn advance(&self, secs: u64) {
        let mut left = secs;
        while left > 0 {
            let step = left.min(20);
            self.clock.advance(Duration::from_secs(step));
            std::thread::sleep(Duration::from_millis(1_300));
            left -= step;
        }
    }

    fn firing(&self) -> Vec<String> {
        let alerts = self.runtime.block_on(self.store.alerts()).unwrap();
        alerts
            .into_iter()
            .filter(|a| matches!(a.state, mxwarden::alert::AlertState::Firing { .. }))
            .map(|a| a.alert)
            .collect()
    }

    fn held(&self) -> Vec<String> {
        let held = self.runtime.block_on(mstore::held(&self.store)).unwrap();
        held.into_iter().map(|h| h.delivery.notification.title).collect()
    }

    /// Waits (real time, up to `secs`) until `done`, advancing the clock a second at a time.
    fn wait(&self, what: &str, secs: u64, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !done(self) {
            assert!(Instant::now() < deadline, "{what}: not within {secs}s; firing {:?}", self.firing());
            self.seconds(1);
        }
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

/// (status, alertname, summary) of every webhook received.
fn hooks(sink: &fakes::WebhookSink) -> Vec<(String, String, String)> {
    sink.received
        .lock()
        .unwrap()
        .iter()
        .flat_map(|(_, body)| {
            let p: serde_json::Value = serde_json::from_slice(body).unwrap();
            let status = p["status"].as_str().unwrap_or_default().to_string();
            p["alerts"].as_array().cloned().unwrap_or_default().into_iter().map(move |a| {
                (
                    status.clone(),
                    a["labels"]["alertname"].as_str().unwrap_or_default().to_string(),
                    a["annotations"]["summary"].as_str().unwrap_or_default().to_string(),
                )
            })
        })
        .collect()
}

fn hooks_named(sink: &fakes::WebhookSink, alert: &str) -> Vec<(String, String)> {
    hooks(sink).into_iter().filter(|(_, a, _)| a == alert).map(|(s, _, summary)| (s, summary)).collect()
}

/// Waits (real time, up to `secs`, the clock advancing with it) for `count` webhooks of `alert`.
fn wait_hooks(d: &Daemon, sink: &fakes::WebhookSink, alert: &str, count: usize, secs: u64) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let got = hooks_named(sink, alert);
        if got.len() >= count {
            return got;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {count} {alert}; webhooks: {:?}", hooks(sink));
        d.seconds(1);
    }
}

fn story_config(api: &str, vikunja: &str, mas: &str, sink: &str) -> String {
    format!(
        r#"defaults: {{ interval: 1s, timeout: 2s }}
store: ./state.db
render: {{ api_key: "{KEY}", api_url: "{api}", interval: 3s, requests_per_minute: 400 }}
services:
  vikunja: {{ kind: vikunja, url: "{vikunja}", down_after: 30s, render: srv-vikunja0000000000 }}
  mas: {{ kind: mas, url: "{mas}", health_url: "{mas}/health", disable: [discovery, jwks], render: srv-mas00000000000000 }}
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
fn an_oom_kill_pages_once_with_its_log_lines_and_resolves() {
    let render = fake();
    render.demo_stack();
    let vikunja = fakes::switchable_vikunja(Arc::new(AtomicBool::new(true)));
    let mas = fakes::mas_health(true);
    let sink = fakes::webhook_sink();
    let file = config(&story_config(&render.api_url, &vikunja, &mas, &sink.url));
    let d = Daemon::start(&file.path);

    let at = d.now().to_string();
    for i in 0..14 {
        render.push_log(
            "srv-vikunja0000000000",
            "srv-vikunja0000000000-inst1",
            "info",
            &format!("request {i} ok"),
            &at,
        );
    }
    render.push_log(
        "srv-vikunja0000000000",
        "srv-vikunja0000000000-inst1",
        "error",
        "fatal error: runtime: out of memory",
        &at,
    );
    render.push_log("srv-vikunja0000000000", "srv-other-inst", "error", "a line of another instance", &at);
    render.push_event(
        "srv-vikunja0000000000",
        "server_failed",
        serde_json::json!({"instanceID": "srv-vikunja0000000000-inst1", "reason": {"evicted": false, "oomKilled": {"memoryLimit": "512Mi"}}}),
        &at,
    );
    let pages = wait_hooks(&d, &sink, "RenderServiceOOMKilled", 1, 20);
    let (status, summary) = &pages[0];
    assert_eq!(status, "firing");
    assert!(summary.contains("srv-vikunja0000000000-inst1") && summary.contains("512Mi"), "{summary}");
    assert!(summary.contains("memory just before: 114.4 MiB"), "the memory before the kill: {summary}");
    assert!(summary.contains("fatal error: runtime: out of memory"), "the last log lines: {summary}");
    assert!(!summary.contains("another instance"), "only that instance's lines: {summary}");
    assert!(
        !summary.contains("request 0 ok") && summary.contains("request 13 ok"),
        "bounded to the last lines: {summary}"
    );

    d.advance(11 * 60);
    let pages = wait_hooks(&d, &sink, "RenderServiceOOMKilled", 2, 30);
    assert_eq!(pages.len(), 2, "one page and its resolve, nothing more: {pages:?}");
    assert_eq!(pages[1].0, "resolved");
    assert!(hooks_named(&sink, "RenderServiceCrashLooping").is_empty(), "one failure is no crash loop");
}

#[test]
fn a_failed_deploy_pages_at_once_naming_it() {
    let render = fake();
    render.demo_stack();
    let vikunja = fakes::switchable_vikunja(Arc::new(AtomicBool::new(true)));
    let mas = fakes::mas_health(true);
    let sink = fakes::webhook_sink();
    let file = config(&story_config(&render.api_url, &vikunja, &mas, &sink.url));
    let d = Daemon::start(&file.path);
    let dep = render.push_deploy("srv-vikunja0000000000", "build_in_progress", "new_commit", "0badc0de1234abcd");
    d.seconds(4); // the render poll sees it in progress
    render.push_log(
        "srv-vikunja0000000000",
        "srv-vikunja0000000000-inst1",
        "error",
        "go: build failed",
        &d.now().to_string(),
    );
    render.set_deploy_status("srv-vikunja0000000000", &dep, "build_failed");
    let pages = wait_hooks(&d, &sink, "RenderDeployFailed", 1, 20);
    let summary = &pages[0].1;
    assert!(
        summary.contains(&dep) && summary.contains("0badc0de1234") && summary.contains("build_failed"),
        "{summary}"
    );
    assert!(summary.contains("go: build failed"), "the build's last lines: {summary}");
    assert!(d.held().is_empty(), "a failed deploy ends its window: nothing held");
}

#[test]
fn a_deploy_in_progress_holds_the_health_pages_until_it_is_live_and_a_round_has_run() {
    let render = fake();
    render.demo_stack();
    let healthy = Arc::new(AtomicBool::new(true));
    let vikunja = fakes::switchable_vikunja(healthy.clone());
    let mas = fakes::mas_health(true);
    let sink = fakes::webhook_sink();
    let file = config(&story_config(&render.api_url, &vikunja, &mas, &sink.url));
    let d = Daemon::start(&file.path);

    let dep = render.push_deploy("srv-vikunja0000000000", "update_in_progress", "api", "feedface00000000");
    d.seconds(4); // the render poll sees it
    healthy.store(false, Ordering::SeqCst);
    d.advance(60);
    d.wait("VikunjaDown firing", 30, |d| d.firing().contains(&"VikunjaDown".to_string()));
    assert!(hooks_named(&sink, "VikunjaDown").is_empty(), "held during the deploy");
    assert_eq!(d.held(), ["[FIRING] VikunjaDown (critical)"]);

    render.set_deploy_status("srv-vikunja0000000000", &dep, "live");
    let pages = wait_hooks(&d, &sink, "VikunjaDown", 1, 20);
    assert_eq!(pages[0].0, "firing", "still failing after the deploy went live and its checks ran: paged");
    assert!(d.held().is_empty());

    // A deploy that heals: down during the deploy, fine after it: nothing is sent.
    healthy.store(true, Ordering::SeqCst);
    wait_hooks(&d, &sink, "VikunjaDown", 2, 30);
    let dep = render.push_deploy("srv-vikunja0000000000", "update_in_progress", "api", "feedface00000001");
    d.seconds(4);
    healthy.store(false, Ordering::SeqCst);
    d.advance(60);
    d.wait("VikunjaDown firing again", 30, |d| d.firing().contains(&"VikunjaDown".to_string()));
    healthy.store(true, Ordering::SeqCst);
    d.wait("VikunjaDown resolved", 30, |d| !d.firing().contains(&"VikunjaDown".to_string()));
    render.set_deploy_status("srv-vikunja0000000000", &dep, "live");
    d.seconds(5);
    assert_eq!(hooks_named(&sink, "VikunjaDown").len(), 2, "the outage inside the deploy said nothing");
}

#[test]
fn mas_at_96_percent_of_its_memory_pages_render_memory_critical() {
    let render = fake();
    render.demo_stack();
    render.set_memory("srv-mas00000000000000", "srv-mas00000000000000-inst1", 0.96 * 512e6, 512e6);
    render.with(|w| {
        w.maintenance.push(serde_json::json!({"id": "mrn-upgrade1", "resourceId": "srv-mas00000000000000", "type": "host_upgrade", "scheduledAt": "2099-01-01T03:00:00Z", "state": "scheduled"}));
    });
    let vikunja = fakes::switchable_vikunja(Arc::new(AtomicBool::new(true)));
    let mas = fakes::mas_health(true);
    let sink = fakes::webhook_sink();
    let port = crate::support::services::free_port();
    let text = format!("listen: 127.0.0.1:{port}\n{}", story_config(&render.api_url, &vikunja, &mas, &sink.url));
    let file = config(&text);
    let d = Daemon::start(&file.path);
    let (status, page) =
        crate::support::services::http_get(&format!("http://127.0.0.1:{port}/")).expect("the status page");
    assert_eq!(status, 200);
    assert!(
        page.contains("Render maintenance mrn-upgrade1: host_upgrade (scheduled)"),
        "Render's own maintenance is shown: {page}"
    );
    d.advance(3 * 60);
    let pages = wait_hooks(&d, &sink, "RenderMemoryCritical", 1, 30);
    assert!(pages[0].1.starts_with("mas instance srv-mas00000000000000-inst1 uses 96%"), "{}", pages[0].1);
    assert!(hooks_named(&sink, "RenderMemoryCritical").iter().all(|(_, s)| s.starts_with("mas ")), "only MAS");
}

#[test]
fn repeated_429s_are_waited_out_as_the_headers_ask_and_the_result_is_whole() {
    let render = fake();
    render.demo_stack();
    render.rate_limit(3, 1);
    let c = client(&render.api_url, KEY, Duration::from_secs(20));
    let started = Instant::now();
    let services = fakes::runtime().block_on(c.services(None)).expect("the listing after the 429s");
    assert_eq!(services.len(), 4, "no result lost");
    assert!(started.elapsed() >= Duration::from_secs(3), "waited Retry-After each time: {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(10), "and not much longer: {:?}", started.elapsed());
    assert_eq!(c.calls(), 4, "three refused, one answered");

    // A deadline shorter than the wait: a clear error, no crash, no endless retrying.
    render.rate_limit(100, 30);
    let short = client(&render.api_url, KEY, Duration::from_secs(2));
    let e = fakes::runtime().block_on(short.service("srv-mas00000000000000")).unwrap_err();
    assert!(e.to_string().contains("rate-limiting") && e.is_transient(), "{e}");
    assert_eq!(short.calls(), 1, "a 30 s Retry-After is not retried inside a 2 s deadline");
    render.rate_limit(0, 1);

    // The probe through the CLI: 429s on its calls, still a whole poll.
    render.rate_limit(2, 1);
    let file = config(&format!(
        "render: {{ api_key: \"{KEY}\", api_url: \"{}\" }}\nservices:\n  mas: {{ kind: mas, url: \"http://127.0.0.1:9\", disable: [discovery, jwks], render: srv-mas00000000000000 }}\n",
        render.api_url
    ));
    let out = run(&["--config", file.path.to_str().unwrap(), "check", "mas/render", "--json"], &[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("deploy dep-fake") && out.stdout.contains("\"ok\": true"), "{}", out.stdout);
    assert!(out.stdout.contains("\"kind\": \"render\""), "{}", out.stdout);
}

#[test]
fn a_bad_key_is_a_clear_error_and_the_key_is_never_shown() {
    let render = fake();
    render.demo_stack();
    let wrong = "rnd_WRONGkeyNeverPrint99";
    let file = config(&format!(
        "render: {{ api_key: \"${{RENDER_API_KEY}}\", api_url: \"{}\" }}\nstore: ./s.db\nservices:\n  mas: {{ kind: mas, url: \"http://127.0.0.1:9\", disable: [discovery, jwks], render: srv-mas00000000000000 }}\n",
        render.api_url
    ));
    let p = file.path.to_str().unwrap();
    let env = [("RENDER_API_KEY", wrong)];
    for args in [
        vec!["--config", p, "render", "status", "--json"],
        vec!["--config", p, "render", "status"],
        vec!["--config", p, "render", "discover"],
        vec!["--config", p, "check", "--json"],
        vec!["--config", p, "config", "show"],
        vec!["-vv", "--config", p, "render", "logs", "mas"],
    ] {
        let out = run(&args, &env);
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(!all.contains(wrong), "{args:?} shows the key: {all}");
        if args.contains(&"render") || args.contains(&"check") {
            assert!(all.contains("Render refused the API key (401 unauthorized)"), "{args:?}: {all}");
            assert_eq!(out.code, 1, "{args:?}: {all}");
        }
    }
    assert!(render.requests().iter().all(|r| !r.contains(wrong)), "the key never travels in a URL");
    let shown = run(&["--config", p, "config", "show", "--json"], &env);
    let v: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(
        (v["render"]["api_key"].as_str(), v["render"]["requests_per_minute"].as_u64()),
        (Some("<redacted>"), Some(60))
    );

    // A server that echoes the Authorization header back in its error: masked.
    let echo = fakes::serve(axum::Router::new().fallback(|headers: axum::http::HeaderMap| async move {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(serde_json::json!({"id": "x", "message": format!("bad auth {auth}")})),
        )
    }));
    let c = client(&format!("{echo}/v1"), wrong, Duration::from_secs(5));
    let e = fakes::runtime().block_on(c.service("srv-abc")).unwrap_err().to_string();
    assert!(e.contains("500") && e.contains("transient") && !e.contains(wrong), "{e}");
}

#[test]
fn two_hundred_fifty_services_are_read_over_three_pages() {
    let render = fake();
    for i in 0..250 {
        render.add_service(&format!("srv-bulk{i:04}"), &format!("bulk-{i}"), "starter", 1e8, 5e8);
    }
    let c = client(&render.api_url, KEY, Duration::from_secs(20));
    let services = fakes::runtime().block_on(c.services(None)).unwrap();
    assert_eq!(services.len(), 250);
    assert_eq!(services[249].id, "srv-bulk0249");
    let pages: Vec<String> = render.requests().into_iter().filter(|r| r.starts_with("GET /v1/services?")).collect();
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert!(
        pages[1].contains("cursor=cur-99") && pages[2].contains("cursor=cur-199"),
        "the last item's cursor: {pages:?}"
    );
    assert!(pages.iter().all(|p| p.contains("limit=100")), "{pages:?}");

    let file = config(&format!("render: {{ api_key: \"{KEY}\", api_url: \"{}\" }}\n", render.api_url));
    let out = run(&["--config", file.path.to_str().unwrap(), "render", "discover", "--json"], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let listed: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(listed.len(), 250);
}

#[test]
fn deploys_are_triggered_followed_and_rolled_back() {
    let render = fake();
    render.demo_stack();
    let c = client(&render.api_url, KEY, Duration::from_secs(20));
    let rt = fakes::runtime();
    let id = "srv-synapse0000000000";
    let before = rt.block_on(c.deploys(id, 5)).unwrap();
    assert_eq!(before.len(), 1);
    let request = DeployRequest { image_url: Some("ghcr.io/element-hq/synapse:v1.120.0".into()), ..Default::default() };
    let queued = match rt.block_on(c.trigger_deploy(id, &request)).unwrap() {
        Triggered::Queued(Some(d)) => d,
        other => panic!("202 without a body, then the queued deploy: {other:?}"),
    };
    assert_eq!((queued.status.as_str(), queued.source().as_str()), ("queued", "ghcr.io/element-hq/synapse:v1.120.0"));
    render.set_deploy_status(id, &queued.id, "live");
    let followed = rt.block_on(c.deploy(id, &queued.id)).unwrap();
    assert_eq!(followed.status, "live");
    let rolled = rt.block_on(c.rollback(id, &before[0].id)).unwrap();
    assert_eq!((rolled.trigger.as_str(), rolled.source().as_str()), ("rollback", "a1b2c3d4e5f6"));
    render.with(|w| w.deploy_answer = mxwarden_render_fake::DeployAnswer::Created);
    assert!(matches!(rt.block_on(c.trigger_deploy(id, &DeployRequest::default())).unwrap(), Triggered::Created(_)));
    let listed = rt.block_on(c.deploys(id, 10)).unwrap();
    assert_eq!(listed.len(), 4, "the first, the image, the rollback, the last");
    assert_eq!(rt.block_on(c.cancel_deploy(id, &listed[0].id)).unwrap().status, "canceled");
    let e = rt.block_on(c.deploy(id, "dep-nope")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Render knows no deploy `dep-nope` (404): check the id (`mxwarden render discover` lists them)"
    );
    let e = rt.block_on(c.deploys("srv-unknown", 1)).unwrap_err();
    assert!(e.to_string().contains("no service `srv-unknown`"), "{e}");

    // restart: asks on a terminal; without one it needs --yes.
    let file = config(&format!(
        "render: {{ api_key: \"{KEY}\", api_url: \"{}\" }}\nservices:\n  synapse: {{ kind: synapse, url: \"http://127.0.0.1:9\", render: {id} }}\n",
        render.api_url
    ));
    let p = file.path.to_str().unwrap();
    let out = run(&["--config", p, "render", "deploys", "srv-x/../owners\u{1b}[2J"], &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("no service `srv-x/../owners\\x1b[2J` is linked"), "named, escaped: {}", out.stderr);
    let out = run(&["--config", p, "render", "restart", "synapse"], &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("pass --yes"), "{}", out.stderr);
    let out = run(&["--config", p, "render", "restart", "synapse", "--yes", "--json"], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(render.with(|w| w.restarts.clone()), [id]);
}

#[test]
fn render_status_reports_suspension_deploys_memory_and_the_real_disk() {
    let render = fake();
    render.demo_stack();
    render.suspend("srv-vikunja0000000000", &["billing"]);
    render.with(|w| {
        w.maintenance.push(serde_json::json!({"id": "mrn-1", "resourceId": "dpg-postgres0000000000", "type": "postgres_upgrade", "scheduledAt": "2099-01-01T03:00:00Z", "state": "scheduled"}));
    });
    let file = config(&format!(
        "render: {{ api_key: \"{KEY}\", api_url: \"{}\" }}\nstore: ./s.db\nservices:\n  synapse: {{ kind: synapse, url: \"http://127.0.0.1:9\", render: srv-synapse0000000000 }}\n  vikunja: {{ kind: vikunja, url: \"http://127.0.0.1:9\", render: srv-vikunja0000000000 }}\n  postgres: {{ kind: postgres, dsn: \"postgresql://u@127.0.0.1:9/d\", render: dpg-postgres0000000000 }}\n",
        render.api_url
    ));
    let p = file.path.to_str().unwrap();
    let out = run(&["--config", p, "render", "status", "--json"], &[]);
    assert_eq!(out.code, 1, "a suspended service is a finding: {}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let row = |name: &str| v["services"].as_array().unwrap().iter().find(|r| r["service"] == name).unwrap().clone();
    let synapse = row("synapse");
    assert_eq!(synapse["suspended"], false);
    assert_eq!(synapse["deploy"]["status"], "live");
    assert_eq!(synapse["instances"][0]["memory_bytes"], 301e6);
    assert_eq!(synapse["instances"][0]["memory_limit_bytes"], 512e6);
    assert!((synapse["instances"][0]["memory_ratio"].as_f64().unwrap() - 301.0 / 512.0).abs() < 1e-9);
    let vikunja = row("vikunja");
    assert_eq!((vikunja["suspended"].clone(), vikunja["suspenders"][0].clone()), (true.into(), "billing".into()));
    let pg = row("postgres");
    assert_eq!((pg["plan"].as_str(), pg["disk_size_bytes"].as_u64()), (Some("basic_256mb"), Some(15_000_000_000)));
    assert_eq!(v["maintenance"][0]["id"], "mrn-1");

    let out = run(&["--config", p, "maintenance", "list", "--json"], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("\"source\": \"render\"") && out.stdout.contains("postgres_upgrade"), "{}", out.stdout);

    // What one poll costs: 7 calls for a service's first poll (8 later, with the events since
    // the one before) and 8 for a database; nothing else.
    let before = render.requests().len();
    let out = run(&["--config", p, "check", "synapse/render", "postgres/render"], &[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let calls: Vec<String> = render.requests()[before..].to_vec();
    let of = |id: &str| calls.iter().filter(|c| c.contains(id)).count();
    assert_eq!((of("srv-synapse0000000000"), of("dpg-postgres0000000000"), calls.len()), (7, 8, 15), "{calls:#?}");

    // A disk_limit that contradicts Render's disk is refused by the check, with the reason.
    let file = config(&format!(
        "render: {{ api_key: \"{KEY}\", api_url: \"{}\" }}\nservices:\n  postgres: {{ kind: postgres, dsn: \"postgresql://u@127.0.0.1:9/d\", disk_limit: 256MiB, render: dpg-postgres0000000000 }}\n",
        render.api_url
    ));
    let out = run(&["--config", file.path.to_str().unwrap(), "check", "postgres/render"], &[]);
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("disk_limit 256MiB contradicts Render's disk of 15 GB"), "{}", out.stdout);
}

#[test]
fn hostile_answers_are_bounded_with_clear_errors() {
    use axum::routing::get;
    let huge = fakes::serve(
        axum::Router::new()
            .route("/v1/services/{id}", get(|| async { "[".to_string() + &"0,".repeat(3 << 20) + "0]" })),
    );
    let c = client(&format!("{huge}/v1"), KEY, Duration::from_secs(10));
    let e = fakes::runtime().block_on(c.service("srv-a")).unwrap_err().to_string();
    assert!(e.contains("over 4194304 bytes"), "{e}");

    let silent = fakes::serve(axum::Router::new().route(
        "/v1/services/{id}",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            "{}"
        }),
    ));
    let c = client(&format!("{silent}/v1"), KEY, Duration::from_secs(1));
    let started = Instant::now();
    let e = fakes::runtime().block_on(c.service("srv-a")).unwrap_err().to_string();
    assert!(
        e.contains("did not answer") && started.elapsed() < Duration::from_secs(3),
        "{e} after {:?}",
        started.elapsed()
    );

    let malformed =
        fakes::serve(axum::Router::new().route("/v1/services", get(|| async { r#"[{"cursor":"x","nothing":{}}]"# })));
    let c = client(&format!("{malformed}/v1"), KEY, Duration::from_secs(5));
    let e = fakes::runtime().block_on(c.services(None)).unwrap_err().to_string();
    assert!(e.contains("not the documented JSON") && e.contains("no `service`"), "{e}");

    let endless = fakes::serve(axum::Router::new().route(
        "/v1/owners",
        get(|| async {
            let page: Vec<serde_json::Value> =
                (0..100).map(|_| serde_json::json!({"cursor": "same", "owner": {"id": "tea-x"}})).collect();
            axum::Json(page)
        }),
    ));
    let c = client_with_budget(&format!("{endless}/v1"), KEY, Duration::from_secs(30), 1_000);
    let e = fakes::runtime().block_on(c.owners()).unwrap_err().to_string();
    assert!(e.contains("more than 100 pages"), "{e}");
}

fn tls() -> Arc<rustls::ClientConfig> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Arc::new(
        rustls::ClientConfig::builder().with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth(),
    )
}

#[test]
fn the_log_stream_delivers_new_lines_and_refuses_a_bad_key() {
    let render = fake();
    render.demo_stack();
    let id = "srv-synapse0000000000";
    let query = mxwarden::render::client::LogQuery {
        owner_id: "tea-fake000001".into(),
        resources: vec![id.into()],
        ..Default::default()
    };
    let rt = fakes::runtime();
    let c = client(&render.api_url, KEY, Duration::from_secs(5));
    let mut stream = rt.block_on(c.subscribe_logs(&query, tls())).expect("the stream opens");
    render.push_log("srv-other", "srv-other-inst1", "info", "not this service", &jiff::Timestamp::now().to_string());
    render.push_log(
        id,
        &format!("{id}-inst1"),
        "error",
        "MemoryError while persisting events",
        &jiff::Timestamp::now().to_string(),
    );
    let line = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(5), stream.next()).await })
        .expect("a line within 5 s")
        .expect("open")
        .expect("a log line");
    assert_eq!((line.message.as_str(), line.label("level")), ("MemoryError while persisting events", Some("error")));
    assert!(
        render
            .requests()
            .iter()
            .any(|r| r.starts_with("GET /v1/logs/subscribe?ownerId=tea-fake000001&resource=srv-synapse"))
    );

    // A frame over 1 MiB ends the stream with an error, not with memory.
    render.push_log(id, &format!("{id}-inst1"), "info", &"x".repeat(2 << 20), &jiff::Timestamp::now().to_string());
    let huge =
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), stream.next()).await }).expect("within 5 s");
    assert!(matches!(&huge, Some(Err(e)) if e.to_string().contains("the log stream broke")), "{huge:?}");

    let bad = client(&render.api_url, "rnd_wrong", Duration::from_secs(5));
    let e = rt.block_on(bad.subscribe_logs(&query, tls())).unwrap_err();
    assert_eq!(e, mxwarden::render::RenderError::Unauthorized);

    // `render logs --follow`: the history, then what the stream brings, until stopped.
    let file = config(&format!(
        "render: {{ api_key: \"{KEY}\", api_url: \"{}\" }}\nservices:\n  synapse: {{ kind: synapse, url: \"http://127.0.0.1:9\", render: {id} }}\n",
        render.api_url
    ));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mxwarden"))
        .args(["--config", file.path.to_str().unwrap(), "render", "logs", "synapse", "--follow", "--grep", "memory"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(10)).expect("the history line");
    assert!(first.contains("MemoryError while persisting events"), "{first}");
    let deadline = Instant::now() + Duration::from_secs(10);
    // Two subscriptions above, the CLI's is the third.
    while render.requests().iter().filter(|r| r.contains("logs/subscribe")).count() < 3 {
        assert!(Instant::now() < deadline, "the CLI subscribes");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    render.push_log(
        id,
        &format!("{id}-inst1"),
        "warning",
        "memory at 91% \u{1b}[31m",
        &jiff::Timestamp::now().to_string(),
    );
    let next = rx.recv_timeout(Duration::from_secs(10)).expect("the streamed line");
    assert!(next.contains("memory at 91%") && !next.contains('\u{1b}'), "{next}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_crash_loop_and_a_suspension_by_billing_page_but_a_user_s_suspension_does_not() {
    let render = fake();
    render.demo_stack();
    let vikunja = fakes::switchable_vikunja(Arc::new(AtomicBool::new(true)));
    let mas = fakes::mas_health(true);
    let sink = fakes::webhook_sink();
    let file = config(&story_config(&render.api_url, &vikunja, &mas, &sink.url));
    let d = Daemon::start(&file.path);
    for exit in [1, 137, 1] {
        d.seconds(1);
        render.push_event(
            "srv-vikunja0000000000",
            "server_failed",
            serde_json::json!({"instanceID": "srv-vikunja0000000000-inst1", "reason": {"evicted": false, "nonZeroExit": exit}}),
            &d.now().to_string(),
        );
    }
    let pages = wait_hooks(&d, &sink, "RenderServiceCrashLooping", 1, 30);
    assert!(pages[0].1.starts_with("vikunja failed 3 times in 15 minutes"), "{}", pages[0].1);
    assert!(hooks_named(&sink, "RenderServiceOOMKilled").is_empty(), "exits are no OOM kills");

    render.suspend("srv-mas00000000000000", &["user"]);
    d.seconds(5);
    render.suspend("srv-vikunja0000000000", &["billing"]);
    let pages = wait_hooks(&d, &sink, "RenderServiceSuspended", 1, 30);
    assert_eq!(pages.len(), 1, "only the critical one pages: {pages:?}");
    assert_eq!(pages[0].1, "vikunja is suspended on Render by billing");
}
