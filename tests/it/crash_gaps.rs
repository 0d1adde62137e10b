//! One transaction per decision, proven the hard way: the daemon is made to die (`abort`, as
//! `kill -9` would) right before and right after it commits a decision that resolves an
//! alert, releases a page held for maintenance, reminds that a window ends, or sends a digest
//! — the places where the old code wrote part of a decision in its own transaction. After a
//! restart, every one of those notifications arrives exactly once: no duplicate page, no lost
//! reminder, no lost resolve, no digest twice. Needs the `failpoints` feature (scripts/test.sh
//! turns it on).

use crate::cli::{config, run};
use crate::support::fakes;
use axum::Router;
use axum::http::StatusCode;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A target whose `/health` answers 200 or 503, as the test says.
pub struct Target {
    pub base: String,
    up: Arc<AtomicBool>,
}

impl Target {
    pub fn start() -> Self {
        let up = Arc::new(AtomicBool::new(true));
        let flag = up.clone();
        let base = fakes::serve(Router::new().route(
            "/health",
            axum::routing::get(move || {
                let up = flag.load(Ordering::SeqCst);
                async move { if up { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE } }
            }),
        ));
        Self { base, up }
    }

    pub fn set(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }
}

/// `mxwarden run`, optionally with a failpoint armed; killed on drop.
struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(config: &Path, failpoint: Option<&str>) -> Self {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(config.with_extension("log")).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_mxwarden"));
        command.args(["--config", config.to_str().unwrap(), "-v", "run"]).stdout(Stdio::null()).stderr(log);
        command.env_remove("MXWARDEN_FAILPOINT").env_remove("RUST_LOG");
        if let Some(point) = failpoint {
            command.env("MXWARDEN_FAILPOINT", point);
        }
        Self { child: command.spawn().expect("start mxwarden run") }
    }

    /// Waits for the armed failpoint to end the process; panics if it does not.
    fn expect_abort(&mut self, config: &Path, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(!status.success(), "the failpoint ends the process: {status:?}");
                let log = std::fs::read_to_string(config.with_extension("log")).unwrap_or_default();
                assert!(log.contains("failpoint"), "it died at the failpoint:\n{log}");
                return;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(config.with_extension("log")).unwrap_or_default();
                panic!("the failpoint was never reached; log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The config: one check of service `web`, a critical rule on it, a webhook for the critical
/// tier and a daily digest for warnings at `digest_at` (UTC), reminders 55 s before an ad hoc
/// window ends.
pub fn config_text(target: &Target, sink: &fakes::WebhookSink, digest_at: &str) -> String {
    format!(
        r#"defaults: {{ interval: 1s, timeout: 1s }}
store: ./state.db
listen: off
maintenance_reminder: 55s
{}    warning: {{ receivers: [hook], digest: {{ daily: "{digest_at}" }} }}
"#,
        web_down_to_hook(target, sink)
    )
}

/// The config's `checks:`, `rules:` and `alerting:` (ending in its `tiers:`, so a caller may
/// add tiers): one check of service `web`, the critical rule `WebDown` on it, and the webhook
/// `hook` for the critical tier.
pub fn web_down_to_hook(target: &Target, sink: &fakes::WebhookSink) -> String {
    format!(
        r#"checks:
  - name: web
    service: web
    http: {{ url: "{}/health" }}
rules:
  - alert: WebDown
    expr: probe_success{{check="web"}} == 0
    labels: {{ severity: critical, service: web }}
    annotations: {{ summary: "web is down" }}
alerting:
  receivers:
    hook: {{ webhook: {{ url: "{}" }} }}
  tiers:
    critical: {{ receivers: [hook] }}
"#,
        target.base, sink.url
    )
}

pub fn payloads(sink: &fakes::WebhookSink) -> Vec<Value> {
    sink.received.lock().unwrap().iter().map(|(_, b)| serde_json::from_slice(b).expect("JSON payload")).collect()
}

/// Payloads with `status` about alert `name`.
pub fn count(sink: &fakes::WebhookSink, status: &str, name: &str) -> usize {
    payloads(sink)
        .iter()
        .filter(|p| p["status"] == status)
        .filter(|p| p["alerts"].as_array().is_some_and(|a| a.iter().any(|x| x["labels"]["alertname"] == name)))
        .count()
}

fn wait(what: &str, config: &Path, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(config.with_extension("log")).unwrap_or_default();
            panic!("timed out waiting for {what}; log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Long enough for a duplicate to show up if there were one: several evaluation periods and
/// dispatcher rounds.
const SETTLE: Duration = Duration::from_secs(4);

fn crash_at_resolve(point: &str) {
    let target = Target::start();
    let sink = fakes::webhook_sink();
    let file = config(&config_text(&target, &sink, "00:00"));
    target.set(false);
    let daemon = Daemon::start(&file.path, None);
    wait("the page", &file.path, Duration::from_secs(20), || count(&sink, "firing", "WebDown") == 1);
    drop(daemon);

    let mut armed = Daemon::start(&file.path, Some(&format!("{point}:resolve")));
    target.set(true);
    armed.expect_abort(&file.path, Duration::from_secs(20));

    let _daemon = Daemon::start(&file.path, None);
    wait("the resolve", &file.path, Duration::from_secs(20), || count(&sink, "resolved", "WebDown") >= 1);
    std::thread::sleep(SETTLE);
    assert_eq!(count(&sink, "resolved", "WebDown"), 1, "exactly one resolve: {:#?}", payloads(&sink));
    assert_eq!(count(&sink, "firing", "WebDown"), 1, "and the page was not repeated: {:#?}", payloads(&sink));
}

#[test]
fn a_crash_before_committing_a_resolve_loses_no_resolve() {
    crash_at_resolve("before-commit");
}

#[test]
fn a_crash_after_committing_a_resolve_sends_it_once() {
    crash_at_resolve("after-commit");
}

fn maintenance(file: &Path, args: &[&str]) -> String {
    let mut all = vec!["--config", file.to_str().unwrap(), "maintenance"];
    all.extend_from_slice(args);
    let r = run(&all, &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    r.stdout
}

fn crash_at_release(point: &str) {
    let target = Target::start();
    let sink = fakes::webhook_sink();
    let file = config(&config_text(&target, &sink, "00:00"));
    let daemon = Daemon::start(&file.path, None);
    std::thread::sleep(Duration::from_secs(2));
    maintenance(&file.path, &["start", "web", "--for", "10m", "--reason", "upgrade"]);
    // A window opened by another process is read at the daemon's next full sweep (every
    // second here); only then does the outage begin.
    std::thread::sleep(Duration::from_millis(2_500));
    target.set(false);
    // The page is decided and held: the status shows nothing was sent.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(count(&sink, "firing", "WebDown"), 0, "held during maintenance: {:#?}", payloads(&sink));
    drop(daemon);

    let mut armed = Daemon::start(&file.path, Some(&format!("{point}:release")));
    let listing = maintenance(&file.path, &["list", "--json"]);
    let id = serde_json::from_str::<Value>(&listing).unwrap()["active"][0]["id"].as_i64().expect("the window's id");
    maintenance(&file.path, &["end", &id.to_string()]);
    armed.expect_abort(&file.path, Duration::from_secs(30));

    let _daemon = Daemon::start(&file.path, None);
    wait("the released page", &file.path, Duration::from_secs(30), || count(&sink, "firing", "WebDown") >= 1);
    std::thread::sleep(SETTLE);
    assert_eq!(count(&sink, "firing", "WebDown"), 1, "exactly one page: {:#?}", payloads(&sink));
}

#[test]
fn a_crash_before_committing_a_release_still_pages_once() {
    crash_at_release("before-commit");
}

#[test]
fn a_crash_after_committing_a_release_pages_once() {
    crash_at_release("after-commit");
}

fn crash_at_reminder(point: &str) {
    let target = Target::start();
    let sink = fakes::webhook_sink();
    let file = config(&config_text(&target, &sink, "00:00"));
    let mut armed = Daemon::start(&file.path, Some(&format!("{point}:reminder")));
    std::thread::sleep(Duration::from_secs(2));
    // Reminders go out 55 s before the end: for a 1-minute window, 5 s after it opens.
    maintenance(&file.path, &["start", "web", "--for", "1m", "--reason", "reboot"]);
    armed.expect_abort(&file.path, Duration::from_secs(30));

    let _daemon = Daemon::start(&file.path, None);
    wait("the reminder", &file.path, Duration::from_secs(30), || count(&sink, "firing", "MaintenanceEnding") >= 1);
    std::thread::sleep(SETTLE);
    assert_eq!(count(&sink, "firing", "MaintenanceEnding"), 1, "exactly one reminder: {:#?}", payloads(&sink));
}

#[test]
fn a_crash_before_committing_a_reminder_loses_no_reminder() {
    crash_at_reminder("before-commit");
}

#[test]
fn a_crash_after_committing_a_reminder_sends_it_once() {
    crash_at_reminder("after-commit");
}

/// Makes the warning tier's digest due at the daemon's first sweep: the last one was 25 hours
/// ago, and the daily time was an hour ago.
fn seed_last_digest(store: &Path) -> String {
    let now = jiff::Timestamp::now();
    let at = (now - jiff::SignedDuration::from_hours(1)).strftime("%H:%M").to_string();
    let last = (now - jiff::SignedDuration::from_hours(25)).as_millisecond();
    fakes::runtime().block_on(async {
        let s = mxwarden::store::Store::open(store).await.unwrap();
        s.set_meta("digest:warning:last", &last.to_string()).await.unwrap();
    });
    at
}

fn crash_at_digest(point: &str) {
    let target = Target::start();
    let sink = fakes::webhook_sink();
    let dir = tempfile::tempdir().unwrap();
    let at = seed_last_digest(&dir.path().join("state.db"));
    let path = dir.path().join("mxwarden.yaml");
    std::fs::write(&path, config_text(&target, &sink, &at)).unwrap();
    let digests = |sink: &fakes::WebhookSink| payloads(sink).iter().filter(|p| is_digest(p)).count();
    let mut armed = Daemon::start(&path, Some(&format!("{point}:digest")));
    armed.expect_abort(&path, Duration::from_secs(30));

    let _daemon = Daemon::start(&path, None);
    wait("the digest", &path, Duration::from_secs(30), || digests(&sink) >= 1);
    std::thread::sleep(SETTLE);
    assert_eq!(digests(&sink), 1, "exactly one digest: {:#?}", payloads(&sink));
}

/// Whether a webhook payload carries a digest (its group is the digest's incident).
fn is_digest(p: &Value) -> bool {
    p["groupKey"].as_str().is_some_and(|k| k.contains("incident=\"digest:warning:"))
}

#[test]
fn a_crash_before_committing_a_digest_loses_no_digest() {
    crash_at_digest("before-commit");
}

#[test]
fn a_crash_after_committing_a_digest_sends_it_once() {
    crash_at_digest("after-commit");
}
