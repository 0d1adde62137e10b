//! Alerting end to end, against real services: `notify test` into a real Synapse room (read
//! back), the Synapse-down story (the critical reaches email through the fallback while
//! Matrix is down; the resolve lands in the Matrix thread once it is back), kill -9 in the
//! middle of a delivery (restart, and the room still has each message exactly once), and the
//! Alertmanager-shaped, HMAC-signed webhook.

use crate::cli::{config, run};
use crate::matrix;
use crate::support::{fakes, services, smtp::SmtpSink};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `mxwarden run` as a child process (killed on drop).
pub struct Daemon(pub Child);

impl Daemon {
    pub fn start(config: &std::path::Path) -> Self {
        let log = std::fs::File::create(config.with_extension("log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mxwarden"))
            .args(["--config", config.to_str().unwrap(), "-v", "run"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start mxwarden run");
        Self(child)
    }

    pub fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn wait_for<T>(what: &str, within: Duration, log: &std::path::Path, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if Instant::now() > deadline {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            panic!("timed out waiting for {what}; mxwarden log:\n{tail}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn bodies(events: &[serde_json::Value]) -> Vec<String> {
    events.iter().map(|e| e["content"]["body"].as_str().unwrap_or("").to_string()).collect()
}

#[test]
fn notify_test_posts_exactly_one_message_read_back_from_the_room() {
    let s = services::shared();
    let room = matrix::create_room(&s.synapse.base_url, &s.synapse.admin_token, "notify-test");
    let file = config(&format!(
        "alerting:\n  receivers:\n    ops-room: {{ matrix: {{ homeserver: \"{}\", room: \"{room}\", access_token: \"${{T}}\" }} }}\n",
        s.synapse.base_url
    ));
    let r =
        run(&["--config", file.path.to_str().unwrap(), "notify", "test", "ops-room"], &[("T", &s.synapse.admin_token)]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.starts_with("delivered to ops-room (matrix) (event $"), "{}", r.all());
    let events = matrix::messages(&s.synapse.base_url, &s.synapse.admin_token, &room);
    assert_eq!(events.len(), 1, "exactly one message: {events:?}");
    let content = &events[0]["content"];
    assert!(content["body"].as_str().unwrap().starts_with("[TEST] mxwarden can reach ops-room"), "{content}");
    assert_eq!(content["format"], "org.matrix.custom.html");
    assert!(
        content["formatted_body"].as_str().unwrap().contains("<b>[TEST] mxwarden can reach ops-room</b>"),
        "{content}"
    );
    assert_eq!(content["msgtype"], "m.notice");
    assert!(!r.all().contains(&s.synapse.admin_token), "the token never shows");
}

#[test]
fn notify_test_with_a_wrong_token_exits_1_naming_the_permanent_error() {
    let s = services::shared();
    let room = matrix::create_room(&s.synapse.base_url, &s.synapse.admin_token, "wrong-token");
    let file = config(&format!(
        "alerting:\n  receivers:\n    ops-room: {{ matrix: {{ homeserver: \"{}\", room: \"{room}\", access_token: not-a-real-token }} }}\n",
        s.synapse.base_url
    ));
    let r = run(&["--config", file.path.to_str().unwrap(), "notify", "test", "ops-room"], &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("permanent error") && r.stderr.contains("401 M_UNKNOWN_TOKEN"), "{}", r.all());
    assert_eq!(matrix::messages(&s.synapse.base_url, &s.synapse.admin_token, &room).len(), 0);
}

#[test]
fn synapse_down_pages_by_email_through_the_fallback_and_the_resolve_lands_in_the_matrix_thread() {
    let mut synapse = services::Synapse::start_sqlite();
    let (base, token) = (synapse.base_url.clone(), synapse.admin_token.clone());
    let room = matrix::create_room(&base, &token, "ops");
    let mail = SmtpSink::start();
    let file = config(&format!(
        r#"defaults: {{ interval: 1s, timeout: 2s }}
store: ./state.db
services:
  synapse: {{ kind: synapse, url: "{base}", down_after: 2s }}
alerting:
  retry: {{ initial: 300ms }}
  receivers:
    ops-room: {{ matrix: {{ homeserver: "{base}", room: "{room}", access_token: "${{T}}" }} }}
    oncall-mail: {{ email: {{ smtp: "smtp://127.0.0.1:{port}", tls: none, from: "mxwarden@example.org", to: ["oncall@example.org"] }} }}
  tiers:
    critical: {{ receivers: [ops-room], fallback: [oncall-mail], fallback_after: 2 }}
"#,
        port = mail.port
    ));
    // SAFETY of the test: the token reaches the daemon only through its environment.
    unsafe_env_free_daemon(&file.path, &token, |daemon_log| {
        std::thread::sleep(Duration::from_secs(3));
        assert!(matrix::messages(&base, &token, &room).is_empty(), "healthy: nothing is sent");
        synapse.stop();
        let mails = wait_for("the fallback email", Duration::from_secs(60), daemon_log, || {
            let m = mail.messages();
            (!m.is_empty()).then_some(m)
        });
        assert!(mails[0].contains("Subject: [FIRING] SynapseDown (critical)"), "{}", mails[0]);
        assert!(mails[0].contains("sent here because ops-room failed"), "{}", mails[0]);
        restart(&mut synapse);
        let events = wait_for("firing and resolve in Matrix", Duration::from_secs(60), daemon_log, || {
            let e = matrix::messages(&base, &token, &room);
            (e.len() >= 2).then_some(e)
        });
        std::thread::sleep(Duration::from_secs(3));
        let events_after = matrix::messages(&base, &token, &room);
        assert_eq!(events_after.len(), 2, "exactly two messages: {:?}", bodies(&events_after));
        assert!(
            events[0]["content"]["body"].as_str().unwrap().starts_with("[FIRING] SynapseDown"),
            "{:?}",
            bodies(&events)
        );
        assert!(
            events[1]["content"]["body"].as_str().unwrap().starts_with("[RESOLVED] SynapseDown"),
            "{:?}",
            bodies(&events)
        );
        let relation = &events[1]["content"]["m.relates_to"];
        assert_eq!(relation["rel_type"], "m.thread", "{relation}");
        assert_eq!(relation["event_id"], events[0]["event_id"], "the resolve is in the firing message's thread");
        assert_eq!(mail.messages().len(), 1, "one email: the fallback page, nothing else");
    });
}

/// Starts a stopped Synapse again on the same ports and data.
fn restart(synapse: &mut services::Synapse) {
    let mut cmd = Command::new(services::venv_bin("venv-synapse", "python"));
    cmd.args(["-m", "synapse.app.homeserver", "-c"]).arg(synapse.dir.join("homeserver.yaml"));
    synapse.service = services::Service::spawn("synapse", synapse.dir.join("restart.log"), "TERM", &cmd);
    let health = format!("{}/health", synapse.base_url);
    synapse.service.wait_until(Duration::from_secs(90), || {
        services::http_get(&health).is_some_and(|(s, b)| s == 200 && b == "OK")
    });
}

/// Runs `f` while a daemon runs with `T` = token in its environment.
fn unsafe_env_free_daemon(config: &std::path::Path, token: &str, f: impl FnOnce(&std::path::Path)) {
    let log = config.with_extension("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mxwarden"))
        .args(["--config", config.to_str().unwrap(), "-v", "run"])
        .env("T", token)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start mxwarden run");
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&log)));
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!text.contains(token), "the token never appears in the daemon's log");
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
}

/// A config whose one check always fails and whose critical rule pages `room` on `homeserver`.
fn broken_check_to_room(homeserver: &str, room: &str, token: &str) -> String {
    let dead_port = services::free_port();
    format!(
        r#"defaults: {{ interval: 1s, timeout: 2s }}
store: ./state.db
checks:
  - name: broken
    http: {{ url: "http://127.0.0.1:{dead_port}/" }}
rules:
  - alert: BrokenCheck
    expr: probe_success{{check="broken"}} == 0
    labels: {{ severity: critical }}
    annotations: {{ summary: "the broken check fails" }}
alerting:
  retry: {{ initial: 300ms }}
  receivers:
    ops-room: {{ matrix: {{ homeserver: "{homeserver}", room: "{room}", access_token: "{token}" }} }}
  tiers:
    critical: {{ receivers: [ops-room] }}
"#
    )
}

#[test]
fn kill_9_in_the_middle_of_a_delivery_then_restart_delivers_exactly_once() {
    let s = services::shared();
    let room = matrix::create_room(&s.synapse.base_url, &s.synapse.admin_token, "kill9");
    let upstream = s.synapse.base_url.trim_start_matches("http://").to_string();
    let proxy = fakes::delaying_proxy(upstream);
    let file = config(&broken_check_to_room(&proxy.base, &room, &s.synapse.admin_token));
    // Synapse acts on the send at once; its answer is held back 4 s by the proxy.
    proxy.delay_ms.store(4_000, std::sync::atomic::Ordering::SeqCst);
    let mut daemon = Daemon::start(&file.path);
    let log = file.path.with_extension("log");
    wait_for("the message to reach Synapse", Duration::from_secs(30), &log, || {
        (!matrix::messages(&s.synapse.base_url, &s.synapse.admin_token, &room).is_empty()).then_some(())
    });
    daemon.kill9(); // mid-delivery: Synapse has the event, mxwarden has not recorded it
    proxy.delay_ms.store(0, std::sync::atomic::Ordering::SeqCst);
    let pending = run(&["--config", file.path.to_str().unwrap(), "outbox", "--json"], &[]);
    let rows = pending.json();
    assert_eq!(rows[0]["status"], "pending", "the kill left the row unrecorded: {rows}");
    let _daemon = Daemon::start(&file.path);
    wait_for("the retry to be recorded as sent", Duration::from_secs(30), &log, || {
        let r = run(&["--config", file.path.to_str().unwrap(), "outbox", "--json"], &[]);
        (r.json()[0]["status"] == "sent").then_some(())
    });
    let events = matrix::messages(&s.synapse.base_url, &s.synapse.admin_token, &room);
    assert_eq!(bodies(&events).len(), 1, "the same transaction id made the retry a no-op: {:?}", bodies(&events));
    assert!(bodies(&events)[0].starts_with("[FIRING] BrokenCheck (critical)"));
}

#[test]
fn webhooks_get_alertmanagers_payload_signed_with_hmac() {
    let sink = fakes::webhook_sink();
    let dead_port = services::free_port();
    let file = config(&format!(
        r#"defaults: {{ interval: 1s, timeout: 2s }}
store: ./state.db
checks:
  - name: broken
    service: web
    http: {{ url: "http://127.0.0.1:{dead_port}/" }}
rules:
  - alert: BrokenCheck
    expr: probe_success{{check="broken"}} == 0
    labels: {{ severity: critical, team: ops }}
    annotations: {{ summary: "{{{{ $labels.check }}}} fails" }}
alerting:
  retry: {{ initial: 300ms }}
  receivers:
    hook: {{ webhook: {{ url: "{}", hmac_secret: "s3cret", headers: {{ X-Team: ops }} }} }}
  tiers:
    critical: {{ receivers: [hook] }}
"#,
        sink.url
    ));
    let _daemon = Daemon::start(&file.path);
    let log = file.path.with_extension("log");
    let (headers, body) =
        wait_for("the webhook", Duration::from_secs(30), &log, || sink.received.lock().unwrap().first().cloned());
    let payload: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(payload["version"], "4");
    assert_eq!(payload["status"], "firing");
    assert_eq!(payload["receiver"], "hook");
    assert_eq!(payload["alerts"][0]["labels"]["alertname"], "BrokenCheck");
    assert_eq!(payload["alerts"][0]["labels"]["team"], "ops");
    assert_eq!(payload["alerts"][0]["annotations"]["summary"], "broken fails");
    assert_eq!(headers["x-team"], "ops");
    let signature = headers["x-mxwarden-signature"].to_str().unwrap();
    let expected = mxwarden::notify::webhook::sign(&secrecy::SecretString::from("s3cret"), &body);
    assert_eq!(signature, format!("sha256={expected}"));
    assert!(headers.contains_key("x-mxwarden-delivery"));
}

#[test]
fn injected_500_429_and_lost_answers_still_give_exactly_one_message() {
    let s = services::shared();
    let room = matrix::create_room(&s.synapse.base_url, &s.synapse.admin_token, "faults");
    let proxy = fakes::fault_proxy(
        s.synapse.base_url.clone(),
        "/send/",
        vec![
            fakes::Fault::Status(500),
            fakes::Fault::RateLimited(1_000),
            fakes::Fault::ResetAfterForward,
            fakes::Fault::Status(502),
        ],
    );
    let file = config(&broken_check_to_room(&proxy.base, &room, &s.synapse.admin_token));
    let _daemon = Daemon::start(&file.path);
    let log = file.path.with_extension("log");
    let rows = wait_for("the delivery to succeed", Duration::from_secs(60), &log, || {
        let r = run(&["--config", file.path.to_str().unwrap(), "outbox", "--json"], &[]);
        (r.code == 0 && r.json()[0]["status"] == "sent").then(|| r.json())
    });
    assert_eq!(rows[0]["attempts"], 5, "500, 429, lost answer, 502, then success: {rows}");
    assert_eq!(proxy.hits.load(std::sync::atomic::Ordering::SeqCst), 5);
    let events = matrix::messages(&s.synapse.base_url, &s.synapse.admin_token, &room);
    assert_eq!(bodies(&events).len(), 1, "the lost answer's retry reused the transaction id: {:?}", bodies(&events));
}
