//! Matrix as the control room, on the harness's real Synapse with several users: the canary
//! round trip (latency measured, the canary messages redacted), a stopped Synapse paging
//! `MatrixCanaryFailing`, commands from the allowed user taking effect (a `!silence` holds the
//! next page, and is in the audit) while another user's are ignored, a restart that neither
//! misses nor re-runs a command (even one buried under more than a `/sync` answer holds),
//! `!ack` stopping reminders, `!backup` reporting in its thread, hostile commands and a hostile
//! homeserver, encrypted rooms refused (at start, on reload, by `notify test`), and the
//! heartbeat that stops when the evaluation loop is blocked (the `failpoints` feature's
//! `stall` point).

use crate::alerting::{Daemon, wait_for};
use crate::cli::{config, run};
use crate::support::{fakes, services};
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn url(base: &str, segments: &[&str]) -> url::Url {
    let mut url = url::Url::parse(base).unwrap();
    url.path_segments_mut().unwrap().extend(["_matrix", "client", "v3"]).extend(segments);
    url
}

/// A public room (anyone on the server may join) created by `token`, with `initial_state`.
fn create_room(base: &str, token: &str, name: &str, initial_state: Value) -> String {
    fakes::runtime().block_on(async {
        let r: Value = client()
            .post(url(base, &["createRoom"]))
            .bearer_auth(token)
            .json(&json!({"name": name, "preset": "public_chat", "initial_state": initial_state}))
            .send()
            .await
            .expect("createRoom")
            .json()
            .await
            .expect("createRoom JSON");
        r["room_id"].as_str().unwrap_or_else(|| panic!("no room_id in {r}")).to_string()
    })
}

fn join(base: &str, token: &str, room: &str) {
    fakes::runtime().block_on(async {
        let r =
            client().post(url(base, &["join", room])).bearer_auth(token).json(&json!({})).send().await.expect("join");
        assert!(r.status().is_success(), "join {room}: {}", r.text().await.unwrap_or_default());
    });
}

/// Sends `body` as `m.text`; returns the event id.
fn say(base: &str, token: &str, room: &str, body: &str) -> String {
    static SENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let txn = format!("t{nanos}-{}", SENT.fetch_add(1, Ordering::SeqCst));
    fakes::runtime().block_on(async {
        let r: Value = client()
            .put(url(base, &["rooms", room, "send", "m.room.message", &txn]))
            .bearer_auth(token)
            .json(&json!({"msgtype": "m.text", "body": body}))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("send JSON");
        r["event_id"].as_str().unwrap_or_else(|| panic!("no event_id in {r}")).to_string()
    })
}

/// Every `m.room.message` of the room (redacted ones too), oldest first.
fn messages(base: &str, token: &str, room: &str) -> Vec<Value> {
    crate::matrix::messages(base, token, room)
}

/// The bot's replies in the thread of `event`.
fn replies_to(events: &[Value], event: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| {
            e["content"]["m.relates_to"]["rel_type"] == "m.thread" && e["content"]["m.relates_to"]["event_id"] == event
        })
        .map(|e| e["content"]["body"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn canary_config(base: &str, room: &str, sender: &str, reader: &str, extra: &str) -> String {
    format!(
        r#"defaults: {{ interval: 1s, timeout: 5s }}
store: ./state.db
listen: off
checks:
  - name: matrix-canary
    service: synapse
    matrix_canary:
      homeserver: "{base}"
      room: "{room}"
      access_token: "{sender}"
      reader: {{ access_token: "{reader}" }}
{extra}"#
    )
}

#[test]
fn canary_round_trip_measures_send_to_visible_latency_and_redacts_its_messages() {
    let s = services::shared();
    let base = &s.synapse.base_url;
    let reader = s.synapse.register("canary-reader", "canary-reader-pass");
    let room = create_room(base, &s.synapse.admin_token, "canary", json!([]));
    let file = config(&canary_config(base, &room, &s.synapse.admin_token, &reader, ""));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cfg = mxwarden::config::load(&file.path).unwrap_or_else(|e| panic!("{e}"));
    let spec = cfg.checks.iter().find(|c| c.id.0 == "matrix-canary").expect("the canary check").clone();
    let rules: Vec<String> = cfg.rules.iter().map(|r| r.def.alert.clone()).collect();
    assert!(rules.contains(&"MatrixCanaryFailing".into()) && rules.contains(&"MatrixCanarySlow".into()), "{rules:?}");
    let prober = mxwarden::probe::Prober::new(Arc::new(mxwarden::clock::SystemClock));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut latencies = Vec::new();
    for round in 0..3 {
        let o = rt.block_on(prober.run(&spec));
        assert!(o.ok, "round {round}: {:?}", o.failures);
        assert_eq!(o.sample("matrix_canary_success"), Some(1.0));
        assert_eq!(o.sample("matrix_canary_missed_rounds"), Some(0.0));
        let latency = o.sample("matrix_canary_latency_seconds").expect("a latency sample");
        assert!(latency > 0.0 && latency < 5.0, "round {round}: {latency} s");
        let reader_label = &o.samples[0].labels["reader"];
        assert_eq!(reader_label, "127.0.0.1", "the reader's homeserver labels the samples");
        latencies.push(latency);
    }
    eprintln!("canary send→visible latency on the real Synapse: {latencies:?} s");
    // Three canaries were sent; every one is redacted (no body left), nothing else is there.
    let events = messages(base, &s.synapse.admin_token, &room);
    assert_eq!(events.len(), 3, "{events:?}");
    for e in &events {
        assert!(e["content"].as_object().is_some_and(|c| c.is_empty()), "redacted once seen: {e}");
        assert!(e["unsigned"]["redacted_because"].is_object(), "{e}");
    }
}

#[test]
fn a_stopped_synapse_fails_the_canary_and_pages_matrix_canary_failing_after_two_rounds() {
    let mut synapse = services::Synapse::start_sqlite();
    let room = create_room(&synapse.base_url, &synapse.admin_token, "canary", json!([]));
    let file = config(&canary_config(&synapse.base_url, &room, &synapse.admin_token, &synapse.admin_token, ""));
    let path = file.path.to_str().unwrap().to_string();
    let _daemon = Daemon::start(&file.path);
    let log = file.path.with_extension("log");
    let alerts = || run(&["--config", &path, "alerts", "--json"], &[]);
    // Healthy rounds first: nothing fires.
    wait_for("healthy canary rounds", Duration::from_secs(30), &log, || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        (file.path.with_file_name("state.db").exists() && text.contains("Restored alert state")).then_some(())
    });
    std::thread::sleep(Duration::from_secs(4));
    let before = alerts();
    assert!(!before.stdout.contains("MatrixCanaryFailing"), "{}", before.all());
    let stopped = Instant::now();
    synapse.stop();
    let rows = wait_for("MatrixCanaryFailing to fire", Duration::from_secs(40), &log, || {
        let r = alerts();
        let rows = r.json();
        rows.as_array()?.iter().any(|a| a["alert"] == "MatrixCanaryFailing" && a["state"] == "firing").then_some(rows)
    });
    let firing = rows.as_array().unwrap().iter().find(|a| a["alert"] == "MatrixCanaryFailing").unwrap().clone();
    assert_eq!(firing["labels"]["severity"], "critical", "{firing}");
    assert_eq!(firing["labels"]["check"], "matrix-canary", "{firing}");
    assert!(
        firing["summary"].as_str().unwrap_or_default().contains("were not seen"),
        "the summary says what users notice: {firing}"
    );
    eprintln!("MatrixCanaryFailing fired {:.1?} after Synapse stopped", stopped.elapsed());
}

/// A switchable HTTP endpoint: 200 while `up`, 503 otherwise.
fn switch(up: Arc<AtomicBool>) -> String {
    use axum::http::StatusCode;
    fakes::serve(axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let up = up.load(Ordering::SeqCst);
            async move { if up { (StatusCode::OK, "up") } else { (StatusCode::SERVICE_UNAVAILABLE, "down") } }
        }),
    ))
}

fn control_config(base: &str, flag: &str, page_room: &str, control_room: &str, bot: &str) -> String {
    format!(
        r#"defaults: {{ interval: 1s, timeout: 2s }}
store: ./state.db
listen: off
checks:
  - name: flag
    service: synapse
    http: {{ url: "{flag}" }}
rules:
  - alert: SynapseTestPage
    expr: probe_success{{check="flag"}} == 0
    labels: {{ severity: critical }}
    annotations: {{ summary: "the flag is down" }}
alerting:
  retry: {{ initial: 300ms }}
  receivers:
    ops: {{ matrix: {{ homeserver: "{base}", room: "{page_room}", access_token: "{bot}" }} }}
  tiers:
    critical: {{ receivers: [ops] }}
control: {{ room: "{control_room}", allowed_users: ["@ops-alice:localhost"] }}
"#
    )
}

#[test]
fn an_allowed_users_silence_holds_the_next_page_and_is_audited_while_others_are_ignored() {
    let s = services::shared();
    let base = &s.synapse.base_url;
    let bot = &s.synapse.admin_token;
    let alice = s.synapse.register("ops-alice", "ops-alice-pass");
    let mallory = s.synapse.register("ops-mallory", "ops-mallory-pass");
    let page_room = create_room(base, bot, "pages", json!([]));
    let control_room = create_room(base, bot, "control", json!([]));
    join(base, &alice, &control_room);
    join(base, &mallory, &control_room);
    let up = Arc::new(AtomicBool::new(true));
    let flag = switch(up.clone());
    let file = config(&control_config(base, &flag, &page_room, &control_room, bot));
    let path = file.path.to_str().unwrap().to_string();
    let log = file.path.with_extension("log");
    let mut daemon = Daemon::start(&file.path);
    wait_for("the follower's first position", Duration::from_secs(30), &log, || {
        std::fs::read_to_string(&log).ok()?.contains("commands from now on are obeyed").then_some(())
    });
    let answered = |event: &str| {
        let events = messages(base, bot, &control_room);
        let r = replies_to(&events, event);
        (!r.is_empty()).then_some(r)
    };
    // The follower is live once it answers.
    let status = say(base, &alice, &control_room, "!status");
    let reply = wait_for("the answer to !status", Duration::from_secs(40), &log, || answered(&status));
    assert!(reply[0].contains("checks:") && reply[0].contains("evaluation: healthy"), "{reply:?}");

    // Mallory is not allowed: ignored (no answer, no window, no audit) and logged.
    let forged = say(base, &mallory, &control_room, "!silence synapse 1h");
    let silence = say(base, &alice, &control_room, "!silence synapse 1h");
    let reply = wait_for("the answer to alice's !silence", Duration::from_secs(30), &log, || answered(&silence));
    assert!(reply[0].starts_with("Silenced synapse until"), "{reply:?}");
    assert!(answered(&forged).is_none(), "no answer to a user who is not allowed");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("not allowed") && text.contains("@ops-mallory:localhost"), "logged:\n{text}");
    let audit = run(&["--config", &path, "audit", "--json"], &[]);
    let rows = audit.json();
    let commands: Vec<(&str, &str)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["sender"].as_str().unwrap(), r["command"].as_str().unwrap()))
        .collect();
    assert_eq!(
        commands,
        vec![("@ops-alice:localhost", "!silence synapse 1h"), ("@ops-alice:localhost", "!status")],
        "newest first, alice's only: {}",
        audit.all()
    );
    assert_eq!(rows[0]["done"], true);
    assert!(rows[0]["outcome"].as_str().unwrap().contains("Silenced synapse"), "{rows}");
    let table = run(&["--config", &path, "audit"], &[]);
    assert!(
        table.stdout.contains("!silence synapse 1h") && table.stdout.contains("@ops-alice:localhost"),
        "{}",
        table.all()
    );

    // The next page of synapse is held, not sent.
    up.store(false, Ordering::SeqCst);
    let store_path = file.path.with_file_name("state.db");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let store = rt.block_on(mxwarden::store::Store::open(&store_path)).unwrap();
    wait_for("the page to be held", Duration::from_secs(30), &log, || {
        let held = rt.block_on(mxwarden::store::maintenance::held(&store)).unwrap();
        held.iter().any(|h| h.delivery.notification.title.contains("SynapseTestPage")).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let pages = messages(base, bot, &page_room);
    assert!(pages.is_empty(), "nothing paged while silenced: {pages:?}");

    // A command given while mxwarden is down runs after its restart; none runs twice.
    daemon.kill9();
    let maintenance = say(base, &alice, &control_room, "!maintenance synapse 30m db upgrade");
    let _daemon = Daemon::start(&file.path);
    let reply =
        wait_for("the answer to the command sent while down", Duration::from_secs(40), &log, || answered(&maintenance));
    assert!(reply[0].starts_with("Maintenance for synapse until"), "{reply:?}");
    let again = say(base, &alice, &control_room, "!help");
    let help = wait_for("the answer to !help", Duration::from_secs(30), &log, || answered(&again));
    assert!(
        help[0].contains("!silence SERVICE DURATION [reason]") && help[0].contains("!diagnose [topic]"),
        "{help:?}"
    );
    let rows = run(&["--config", &path, "audit", "--json"], &[]).json();
    let commands: Vec<&str> = rows.as_array().unwrap().iter().map(|r| r["command"].as_str().unwrap()).collect();
    assert_eq!(commands, vec!["!help", "!maintenance synapse 30m db upgrade", "!silence synapse 1h", "!status"]);
    for event in [&status, &silence] {
        assert_eq!(answered(event).unwrap().len(), 1, "answered once, not again after the restart");
    }
    let windows = run(&["--config", &path, "maintenance", "list", "--json"], &[]).json();
    assert_eq!(windows["active"].as_array().unwrap().len(), 2, "one silence, one maintenance: {windows}");
}

#[test]
fn encrypted_rooms_are_refused_at_start_and_by_notify_test() {
    let s = services::shared();
    let base = &s.synapse.base_url;
    let bot = &s.synapse.admin_token;
    let encryption =
        json!([{"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]);
    let secret_room = create_room(base, bot, "encrypted", encryption);
    let plain_room = create_room(base, bot, "plain", json!([]));
    let file = config(&format!(
        r#"store: ./state.db
listen: off
alerting:
  receivers:
    ops: {{ matrix: {{ homeserver: "{base}", room: "{secret_room}", access_token: "{bot}" }} }}
    plain: {{ matrix: {{ homeserver: "{base}", room: "{plain_room}", access_token: "{bot}" }} }}
  tiers:
    critical: {{ receivers: [ops] }}
control: {{ room: "{secret_room}", allowed_users: ["@ops-alice:localhost"] }}
"#
    ));
    let path = file.path.to_str().unwrap();
    let r = run(&["--config", path, "notify", "test", "ops"], &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("end-to-end encrypted") && r.stderr.contains("create a new room with encryption off"),
        "{}",
        r.all()
    );
    let r = run(&["--config", path, "notify", "test", "--control"], &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("end-to-end encrypted"), "{}", r.all());
    let r = run(&["--config", path, "notify", "test", "plain"], &[]);
    assert_eq!(r.code, 0, "an unencrypted room is fine: {}", r.all());
    assert!(messages(base, bot, &secret_room).is_empty(), "nothing was posted into the encrypted room");
    // The daemon refuses to start.
    let out = Command::new(env!("CARGO_BIN_EXE_mxwarden"))
        .args(["--config", path, "run"])
        .stdout(Stdio::null())
        .output()
        .expect("run mxwarden");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("end-to-end encrypted") && stderr.contains("receiver ops"), "{stderr}");
    assert!(!stderr.contains(bot.as_str()), "the token is never shown");
}

#[test]
fn the_heartbeat_pings_every_interval_and_stops_while_the_evaluation_loop_is_blocked() {
    let pings: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let seen = pings.clone();
    let watcher = fakes::serve(axum::Router::new().route(
        "/ping/{uuid}",
        axum::routing::get(move |axum::extract::Path(uuid): axum::extract::Path<String>| {
            if uuid == "f00dfeed-secret" {
                seen.lock().unwrap().push(Instant::now());
            }
            async { "OK" }
        }),
    ));
    let up = Arc::new(AtomicBool::new(true));
    let target = switch(up);
    let port = services::free_port();
    let dir = tempfile::tempdir().unwrap();
    let stall = dir.path().join("stall");
    let file = config(&format!(
        r#"defaults: {{ interval: 1s, timeout: 2s }}
store: ./state.db
listen: 127.0.0.1:{port}
heartbeat: {{ url: "{watcher}/ping/${{HC_UUID}}", every: 1s }}
checks:
  - name: web
    http: {{ url: "{target}" }}
"#
    ));
    let log = file.path.with_extension("log");
    let child = Command::new(env!("CARGO_BIN_EXE_mxwarden"))
        .args(["--config", file.path.to_str().unwrap(), "-v", "run"])
        .env("HC_UUID", "f00dfeed-secret")
        .env("MXWARDEN_FAILPOINT", format!("stall:{}", stall.display()))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start mxwarden run");
    let _daemon = Daemon(child);
    let healthz = format!("http://127.0.0.1:{port}/healthz");
    let count = || pings.lock().unwrap().len();
    wait_for("the first pings", Duration::from_secs(20), &log, || (count() >= 2).then_some(()));
    let (from, start) = (count(), Instant::now());
    std::thread::sleep(Duration::from_secs(5));
    let per_interval = count() - from;
    assert!((4..=6).contains(&per_interval), "one ping per second: {per_interval} in 5 s");
    let gaps: Vec<Duration> = pings.lock().unwrap().windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().skip(1).all(|g| *g > Duration::from_millis(700)), "no bursts: {gaps:?}");
    assert_eq!(services::http_get(&healthz).map(|r| r.0), Some(200));
    let _ = start;

    // Block the evaluation loop: within the stall limit (3 sweeps + 5 s), the pings stop.
    std::fs::write(&stall, "").unwrap();
    let blocked = Instant::now();
    let (code, body) = wait_for("/healthz to say the loop stalled", Duration::from_secs(20), &log, || {
        services::http_get(&healthz).filter(|(code, _)| *code == 503)
    });
    let noticed = blocked.elapsed();
    assert_eq!(code, 503);
    assert!(body.contains("evaluation stalled"), "{body}");
    let stopped_at = count();
    std::thread::sleep(Duration::from_secs(4));
    assert!(count() <= stopped_at + 1, "no pings while the loop is blocked: {} then {}", stopped_at, count());
    eprintln!("/healthz said 503 and the heartbeat stopped {noticed:.1?} after the evaluation loop was blocked");

    // Unblocked, the pings come back.
    std::fs::remove_file(&stall).unwrap();
    let before = count();
    wait_for("the pings to resume", Duration::from_secs(10), &log, || (count() >= before + 2).then_some(()));
    assert_eq!(services::http_get(&healthz).map(|r| r.0), Some(200));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("Heartbeat withheld"), "{text}");
    assert!(!text.contains("f00dfeed-secret"), "the ping URL's credential is never logged:\n{text}");
}

#[test]
fn hostile_commands_from_an_allowed_user_are_refused_with_a_reason_and_change_nothing() {
    let s = services::shared();
    let base = &s.synapse.base_url;
    let bot = &s.synapse.admin_token;
    let alice = s.synapse.register("ops-alice", "ops-alice-pass");
    let page_room = create_room(base, bot, "pages", json!([]));
    let control_room = create_room(base, bot, "control", json!([]));
    join(base, &alice, &control_room);
    let flag = switch(Arc::new(AtomicBool::new(true)));
    let file = config(&control_config(base, &flag, &page_room, &control_room, bot));
    let path = file.path.to_str().unwrap().to_string();
    let log = file.path.with_extension("log");
    let _daemon = Daemon::start(&file.path);
    wait_for("the follower's first position", Duration::from_secs(30), &log, || {
        std::fs::read_to_string(&log).ok()?.contains("commands from now on are obeyed").then_some(())
    });
    let answered = |event: &str| {
        let r = replies_to(&messages(base, bot, &control_room), event);
        (!r.is_empty()).then_some(r)
    };
    let huge = format!("!silence synapse 1h {}", "x".repeat(5_000));
    let cases: Vec<(String, &str)> = vec![
        ("!silence nosuchservice 1h".into(), "no service `nosuchservice`"),
        ("!silence synapse 8d".into(), "out of range"),
        ("!silence synapse 0s".into(), "out of range"),
        ("!silence synapse 18446744073709551616h".into(), "is not a duration"),
        ("!silence ../../etc/passwd 1h".into(), "is not a service name"),
        ("!silence synapse 1h \u{1b}[2Jcleared".into(), "control character"),
        (huge, "at most 4096 bytes"),
        ("!end 999999".into(), "no window 999999"),
        ("!end 1; DROP TABLE maintenance".into(), "one id only"),
        ("!ack ffffff".into(), "no open alert has id ffffff"),
        ("!rm -rf /".into(), "no command `!rm`"),
        ("!silense synapse 1h".into(), "Did you mean `!silence`?"),
    ];
    for (body, expected) in &cases {
        let event = say(base, &alice, &control_room, body);
        let reply = wait_for(&format!("the answer to {expected}"), Duration::from_secs(30), &log, || answered(&event));
        assert!(reply[0].starts_with("Not done:") && reply[0].contains(expected), "{body:.60}: {reply:?}");
        assert!(!reply[0].contains('\u{1b}'), "control characters never echoed: {reply:?}");
    }
    let windows = run(&["--config", &path, "maintenance", "list", "--json"], &[]).json();
    assert!(windows["active"].as_array().unwrap().is_empty(), "nothing was opened: {windows}");
    let audit = run(&["--config", &path, "audit", "--json"], &[]).json();
    let commands: Vec<&str> = audit.as_array().unwrap().iter().map(|r| r["command"].as_str().unwrap()).collect();
    // Parsed commands are audited with their refusal; unparsable ones are answered only.
    assert_eq!(commands, vec!["!ack ffffff", "!end 999999", "!silence nosuchservice 1h"], "{audit}");
    assert!(audit[2]["outcome"].as_str().unwrap().contains("no service"), "{audit}");
}

/// A homeserver that lets the canary join and send, and then answers `/sync` as `mode` says:
/// 0 a 5 MB body, 1 not JSON, 2 the first sync at once and the long-poll never (silent).
fn hostile_homeserver(mode: u8) -> String {
    use axum::routing::{get, post, put};
    let sync = move |axum::extract::RawQuery(query): axum::extract::RawQuery| async move {
        match mode {
            0 => format!("{{\"next_batch\": \"s1\", \"pad\": \"{}\"}}", "x".repeat(5_000_000)),
            1 => "{\"next_batch\": ".to_string(),
            _ if !query.unwrap_or_default().contains("since=") => "{\"next_batch\": \"s0\"}".to_string(),
            _ => {
                tokio::time::sleep(Duration::from_secs(3_600)).await;
                String::new()
            }
        }
    };
    fakes::serve(
        axum::Router::new()
            .route("/_matrix/client/v3/account/whoami", get(|| async { axum::Json(json!({"user_id": "@bot:evil"})) }))
            .route("/_matrix/client/v3/join/{room}", post(|| async { axum::Json(json!({"room_id": "!r"})) }))
            .route(
                "/_matrix/client/v3/rooms/{room}/send/{kind}/{txn}",
                put(|| async { axum::Json(json!({"event_id": "$e"})) }),
            )
            .route("/_matrix/client/v3/sync", get(sync)),
    )
}

#[test]
fn a_hostile_homeserver_fails_the_canary_round_within_its_timeout() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let prober = mxwarden::probe::Prober::new(Arc::new(mxwarden::clock::SystemClock));
    for (mode, expected) in [(0, "over 4096 KiB"), (1, "not JSON"), (2, "did not answer within")] {
        let base = hostile_homeserver(mode);
        let file = config(&format!(
            "defaults: {{ interval: 1s, timeout: 3s }}\nchecks:\n  - name: canary\n    matrix_canary: {{ homeserver: \"{base}\", room: \"#c:evil\", access_token: \"tok-secret-1\" }}\n"
        ));
        let cfg = mxwarden::config::load(&file.path).unwrap_or_else(|e| panic!("{e}"));
        let started = Instant::now();
        let o = rt.block_on(prober.run(&cfg.checks[0]));
        let took = started.elapsed();
        assert!(!o.ok, "mode {mode}");
        assert_eq!(o.sample("matrix_canary_success"), Some(0.0));
        assert_eq!(o.sample("matrix_canary_latency_seconds"), None, "no latency without a sighting");
        let detail = o.detail();
        assert!(detail.contains(expected), "mode {mode}: {detail}");
        assert!(!detail.contains("tok-secret-1") && !detail.contains("filter="), "no token, no URL: {detail}");
        assert!(took < Duration::from_secs(5), "mode {mode}: bounded by the 3 s timeout, took {took:?}");
    }
}

#[test]
fn ack_stops_the_reminders_of_a_firing_alert_and_its_resolve_still_comes() {
    let s = services::shared();
    let base = &s.synapse.base_url;
    let bot = &s.synapse.admin_token;
    let alice = s.synapse.register("ops-alice", "ops-alice-pass");
    let page_room = create_room(base, bot, "pages", json!([]));
    let control_room = create_room(base, bot, "control", json!([]));
    join(base, &alice, &control_room);
    let up = Arc::new(AtomicBool::new(false));
    let flag = switch(up.clone());
    let text = control_config(base, &flag, &page_room, &control_room, bot)
        .replace("critical: { receivers: [ops] }", "critical: { receivers: [ops], repeat: 2s }");
    let file = config(&text);
    let log = file.path.with_extension("log");
    let _daemon = Daemon::start(&file.path);
    let bodies = || -> Vec<String> {
        messages(base, bot, &page_room)
            .iter()
            .map(|e| e["content"]["body"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let count = |tag: &str| bodies().iter().filter(|b| b.starts_with(tag)).count();
    wait_for("reminders", Duration::from_secs(40), &log, || (count("[STILL FIRING]") >= 2).then_some(()));
    let answered = |event: &str| {
        let r = replies_to(&messages(base, bot, &control_room), event);
        (!r.is_empty()).then_some(r)
    };
    let list = say(base, &alice, &control_room, "!alerts");
    let reply = wait_for("the answer to !alerts", Duration::from_secs(30), &log, || answered(&list));
    let line = reply[0].lines().find(|l| l.contains("SynapseTestPage")).unwrap_or_else(|| panic!("{reply:?}"));
    let id = line.split_whitespace().next().unwrap().to_string();
    assert!(line.contains("FIRING") && id.len() == 6, "{line}");
    let ack = say(base, &alice, &control_room, &format!("!ack {id}"));
    let reply = wait_for("the answer to !ack", Duration::from_secs(30), &log, || answered(&ack));
    assert!(reply[0].starts_with("Acknowledged SynapseTestPage"), "{reply:?}");
    // A reminder already decided may still be on its way; after that, none.
    std::thread::sleep(Duration::from_secs(3));
    let after_ack = count("[STILL FIRING]");
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(count("[STILL FIRING]"), after_ack, "no reminders after the ack: {:?}", bodies());
    up.store(true, Ordering::SeqCst);
    wait_for("the resolve", Duration::from_secs(30), &log, || (count("[RESOLVED]") == 1).then_some(()));
    assert_eq!(count("[FIRING]"), 1, "{:?}", bodies());
}

#[test]
fn a_command_buried_under_many_messages_while_mxwarden_was_down_still_runs_once() {
    let s = services::shared();
    let base = &s.synapse.base_url;
    let bot = &s.synapse.admin_token;
    let alice = s.synapse.register("ops-alice", "ops-alice-pass");
    let page_room = create_room(base, bot, "pages", json!([]));
    let control_room = create_room(base, bot, "control", json!([]));
    join(base, &alice, &control_room);
    let flag = switch(Arc::new(AtomicBool::new(true)));
    let file = config(&control_config(base, &flag, &page_room, &control_room, bot));
    let path = file.path.to_str().unwrap().to_string();
    let log = file.path.with_extension("log");
    let mut daemon = Daemon::start(&file.path);
    wait_for("the follower's first position", Duration::from_secs(30), &log, || {
        std::fs::read_to_string(&log).ok()?.contains("commands from now on are obeyed").then_some(())
    });
    daemon.kill9();
    // While it is down: the command, then more chatter than one /sync answer holds (100).
    let buried = say(base, &alice, &control_room, "!maintenance synapse 30m buried");
    for i in 0..130 {
        say(base, &alice, &control_room, &format!("chatter {i}"));
    }
    let _daemon = Daemon::start(&file.path);
    let answer = wait_for("the answer to the buried command", Duration::from_secs(40), &log, || {
        let r = replies_to(&messages_all(base, bot, &control_room), &buried);
        (!r.is_empty()).then_some(r)
    });
    assert!(answer[0].starts_with("Maintenance for synapse until"), "{answer:?}");
    let rows = run(&["--config", &path, "audit", "--json"], &[]).json();
    assert_eq!(rows.as_array().unwrap().len(), 1, "run once: {rows}");
    assert_eq!(rows[0]["command"], "!maintenance synapse 30m buried");
}

/// Every `m.room.message` of the room, paging back through all of it.
fn messages_all(base: &str, token: &str, room: &str) -> Vec<Value> {
    fakes::runtime().block_on(async {
        let mut out = Vec::new();
        let mut from: Option<String> = None;
        for _ in 0..20 {
            let mut u = url(base, &["rooms", room, "messages"]);
            u.query_pairs_mut().append_pair("dir", "b").append_pair("limit", "100");
            if let Some(f) = &from {
                u.query_pairs_mut().append_pair("from", f);
            }
            let r: Value = client().get(u).bearer_auth(token).send().await.unwrap().json().await.unwrap();
            let chunk = r["chunk"].as_array().cloned().unwrap_or_default();
            out.extend(chunk.into_iter().filter(|e| e["type"] == "m.room.message"));
            match r["end"].as_str() {
                Some(end) => from = Some(end.to_string()),
                None => break,
            }
        }
        out.reverse();
        out
    })
}

#[test]
fn a_reload_naming_an_encrypted_room_is_refused_and_the_running_config_stays() {
    let s = services::shared();
    let base = &s.synapse.base_url;
    let bot = &s.synapse.admin_token;
    let encryption =
        json!([{"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]);
    let secret_room = create_room(base, bot, "encrypted", encryption);
    let page_room = create_room(base, bot, "pages", json!([]));
    let control_room = create_room(base, bot, "control", json!([]));
    let flag = switch(Arc::new(AtomicBool::new(true)));
    let port = services::free_port();
    let good = control_config(base, &flag, &page_room, &control_room, bot)
        .replace("listen: off", &format!("listen: 127.0.0.1:{port}\nadmin_token: reload-token-1"));
    let file = config(&good);
    let log = file.path.with_extension("log");
    let _daemon = Daemon::start(&file.path);
    let healthz = format!("http://127.0.0.1:{port}/healthz");
    wait_for("the daemon to serve", Duration::from_secs(30), &log, || {
        services::http_get(&healthz).filter(|(c, _)| *c == 200)
    });
    std::fs::write(&file.path, good.replace(&control_room, &secret_room)).unwrap();
    let reload = format!("http://127.0.0.1:{port}/api/v1/reload");
    let (code, body) = services::http_request("POST", &reload, &[("Authorization", "Bearer reload-token-1")])
        .expect("the daemon answers");
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("end-to-end encrypted") && body.contains("the control"), "{body}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(services::http_get(&healthz).map(|r| r.0), Some(200), "the running config stays");
}

#[test]
fn backup_from_the_control_room_runs_and_reports_in_the_thread() {
    let s = services::shared();
    let base = &s.synapse.base_url;
    let bot = &s.synapse.admin_token;
    let alice = s.synapse.register("ops-alice", "ops-alice-pass");
    let page_room = create_room(base, bot, "pages", json!([]));
    let control_room = create_room(base, bot, "control", json!([]));
    join(base, &alice, &control_room);
    let flag = switch(Arc::new(AtomicBool::new(true)));
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("signing.key"), "ed25519 a_test key-material").unwrap();
    let recipient = age::x25519::Identity::generate().to_public().to_string();
    let backup = format!(
        "backup:\n  dir: {}\n  files: {{ keys: [\"{}\"] }}\n  encrypt_to: [\"{recipient}\"]\n",
        dir.path().join("backups").display(),
        keys.display()
    );
    let file = config(&format!("{}{backup}", control_config(base, &flag, &page_room, &control_room, bot)));
    let path = file.path.to_str().unwrap().to_string();
    let log = file.path.with_extension("log");
    let _daemon = Daemon::start(&file.path);
    wait_for("the follower's first position", Duration::from_secs(30), &log, || {
        std::fs::read_to_string(&log).ok()?.contains("commands from now on are obeyed").then_some(())
    });
    let command = say(base, &alice, &control_room, "!backup");
    let replies = wait_for("the backup's result in the thread", Duration::from_secs(60), &log, || {
        let r = replies_to(&messages(base, bot, &control_room), &command);
        (r.len() >= 2).then_some(r)
    });
    assert_eq!(replies[0], "Backup started; the result follows in this thread.");
    assert!(replies[1].starts_with("Backup ") && replies[1].contains("finished: Ok, 1 items"), "{replies:?}");
    let list = run(&["--config", &path, "backup", "list", "--json"], &[]);
    assert_eq!(list.code, 0, "{}", list.all());
    assert_eq!(list.json().as_array().map(Vec::len), Some(1), "one run on disk: {}", list.stdout);
}

#[test]
fn config_errors_in_control_heartbeat_and_canary_name_the_line_and_key() {
    let file = config(
        r#"control:
  room: ops
  allowed_users: ["admin", "@ok:example.org"]
heartbeat:
  url: "ftp://hc-ping.com/LEAKuuid-1234"
  every: 0s
  method: DELETE
checks:
  - name: canary
    matrix_canary: { homeserver: "https://matrix.example.org", room: "canary" }
  - name: both
    http: { url: "https://example.org/" }
    matrix_canary: { homeserver: "https://matrix.example.org", room: "!r", access_token: "t" }
"#,
    );
    let r = run(&["--config", file.path.to_str().unwrap(), "config", "check"], &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    for expected in [
        "mxwarden.yaml:2:9: control.room",
        "mxwarden.yaml:3:19: control.allowed_users[0]",
        "`admin` is not a Matrix user id",
        "control: needs a bot",
        "mxwarden.yaml:5:8: heartbeat.url",
        "uses scheme `ftp`",
        "heartbeat.every",
        "out of range; expected 1s to 1d",
        "heartbeat.method",
        "checks[0].matrix_canary.room",
        "checks[0].matrix_canary.access_token: the sending account's token is required",
        "checks[1]: a check has one probe",
    ] {
        assert!(r.stderr.contains(expected), "missing {expected:?} in:\n{}", r.stderr);
    }
    assert!(!r.all().contains("LEAKuuid-1234"), "the heartbeat URL is a secret: {}", r.all());
}

#[test]
fn diagnose_from_the_control_room_posts_the_findings_in_the_thread() {
    let s = services::shared();
    let base = &s.synapse.base_url;
    let bot = &s.synapse.admin_token;
    let alice = s.synapse.register("ops-alice", "ops-alice-pass");
    let page_room = create_room(base, bot, "pages", json!([]));
    let control_room = create_room(base, bot, "control", json!([]));
    join(base, &alice, &control_room);
    let flag = switch(Arc::new(AtomicBool::new(true)));
    let services = format!(
        "services:\n  synapse:\n    kind: synapse\n    url: {base}\n    metrics_url: {}\n",
        s.synapse.metrics_url
    );
    let file = config(&format!("{}{services}", control_config(base, &flag, &page_room, &control_room, bot)));
    let log = file.path.with_extension("log");
    let _daemon = Daemon::start(&file.path);
    wait_for("the follower's first position", Duration::from_secs(30), &log, || {
        std::fs::read_to_string(&log).ok()?.contains("commands from now on are obeyed").then_some(())
    });
    let answered = |event: &str, n: usize| {
        let r = replies_to(&messages(base, bot, &control_room), event);
        (r.len() >= n).then_some(r)
    };
    let unknown = say(base, &alice, &control_room, "!diagnose nope");
    let reply = wait_for("the refusal", Duration::from_secs(30), &log, || answered(&unknown, 1));
    assert!(reply[0].starts_with("Not done: no playbook `nope`"), "{reply:?}");
    let command = say(base, &alice, &control_room, "!diagnose synapse-oom");
    let replies = wait_for("the diagnosis in the thread", Duration::from_secs(60), &log, || answered(&command, 2));
    assert_eq!(replies[0], "Diagnosing synapse-oom; the findings follow in this thread.");
    assert!(replies[1].contains("synapse-oom"), "the report names its playbook: {replies:?}");
    assert!(!replies[1].contains(bot.as_str()), "no token in the report");
}

#[test]
fn doctor_proves_the_control_rooms_bot_and_the_canarys_accounts() {
    let s = services::shared();
    let base = &s.synapse.base_url;
    let bot = &s.synapse.admin_token;
    let reader = s.synapse.register("canary-reader", "canary-reader-pass");
    let control_room = create_room(base, bot, "control", json!([]));
    let canary_room = create_room(base, bot, "canary", json!([]));
    let encryption =
        json!([{"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]);
    let secret_room = create_room(base, bot, "encrypted", encryption);
    join(base, &reader, &secret_room);
    let file = config(&format!(
        r#"store: ./state.db
listen: off
control: {{ room: "{control_room}", allowed_users: ["@ops-alice:localhost"], homeserver: "{base}", access_token: "{bot}" }}
checks:
  - name: canary
    matrix_canary:
      homeserver: "{base}"
      room: "{canary_room}"
      access_token: "{bot}"
      reader: {{ access_token: "{reader}" }}
  - name: canary-enc
    matrix_canary: {{ homeserver: "{base}", room: "{secret_room}", access_token: "{reader}" }}
"#
    ));
    let r = run(&["--config", file.path.to_str().unwrap(), "doctor", "--json"], &[]);
    let report = r.json();
    let outcome = |subject: &str, check: &str| -> String {
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["area"] == "matrix" && f["subject"] == subject && f["check"] == check)
            .map(|f| f["outcome"].as_str().unwrap_or_default().to_string())
            .unwrap_or_else(|| panic!("no {subject}/{check} in {report:#}"))
    };
    assert_eq!(outcome("control room", "token"), "pass", "{report:#}");
    assert_eq!(outcome("control room", "joined"), "pass", "{report:#}");
    assert_eq!(outcome("control room", "room not encrypted"), "pass", "{report:#}");
    assert_eq!(outcome("canary sender", "token"), "pass", "{report:#}");
    assert_eq!(outcome("canary reader", "token"), "pass", "{report:#}");
    assert_eq!(outcome("canary-enc sender", "room not encrypted"), "fail", "{report:#}");
    assert_eq!(r.code, 1, "a failed finding: {}", r.all());
    assert!(!r.all().contains(bot.as_str()) && !r.all().contains(reader.as_str()), "no token shown");
}
