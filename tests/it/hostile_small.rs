//! The small hardening items, attacked the way a hostile peer would, through the real binary:
//! a `Retry-After` / `retry_after_ms` of u64::MAX waits the capped maximum instead of
//! retrying every second; a CA certificate served as the server's is explained in words;
//! crafted tar archives restore only their safe entries, without setuid bits, naming every
//! skipped one and exiting 1; endless Matrix and webhook answers are read only up to the cap;
//! the store, its WAL and backups are private (0600 / 0700) even under umask 000; and a
//! scraped label value with an ANSI escape and a newline reaches Matrix (a real Synapse), email
//! (a real SMTP sink) and the CLI escaped.

use crate::alerting::{Daemon, wait_for};
use crate::cli::{check_json, config, run};
use crate::matrix;
use crate::support::{fakes, services, smtp::SmtpSink, tls_server};
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use secrecy::ExposeSecret;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn tls() -> &'static tls_server::TlsServers {
    static T: std::sync::OnceLock<tls_server::TlsServers> = std::sync::OnceLock::new();
    T.get_or_init(tls_server::start)
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o7777
}

// --- TLS in words -------------------------------------------------------------------------

#[test]
fn a_ca_certificate_served_as_the_servers_is_explained_in_words() {
    let t = tls();
    let file = config(&format!(
        "checks:\n  - name: probe\n    timeout: 5s\n    http:\n      url: {}\n      tls: {{ ca_file: {} }}\n",
        t.ca_as_leaf,
        t.ca_file.display()
    ));
    let r = check_json(&file, &[], &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    let detail = r.row("probe")["detail"].as_str().expect("detail").to_string();
    assert!(
        detail.starts_with("TLS: the server presented a CA certificate as its own certificate"),
        "detail {detail:?}"
    );
    for debug in ["Other(", "OtherError", "CaUsedAsEndEntity"] {
        assert!(!r.all().contains(debug), "{debug} shows: {}", r.all());
    }
}

// --- Retry-After --------------------------------------------------------------------------

/// Counts requests per path; answers each with the response `answer` builds for the path.
fn counting_server(answer: fn(&str) -> axum::response::Response) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    let seen: Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let log = seen.clone();
    let base = fakes::serve(Router::new().fallback(move |uri: axum::http::Uri| {
        let log = log.clone();
        async move {
            let path = uri.path().to_string();
            log.lock().unwrap().push(path.clone());
            answer(&path)
        }
    }));
    (base, seen)
}

fn rate_limiter(path: &str) -> axum::response::Response {
    if path.contains("/join/") {
        return axum::Json(serde_json::json!({"room_id": "!limited:example.org"})).into_response();
    }
    if path.contains("/send/") {
        // Matrix's own hint, at the top of the u64 range (the body's number wins over the header).
        let body = format!(r#"{{"errcode":"M_LIMIT_EXCEEDED","error":"slow down","retry_after_ms":{}}}"#, u64::MAX);
        return (StatusCode::TOO_MANY_REQUESTS, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    }
    let retry_after = match path {
        "/huge" => u64::MAX.to_string(),
        "/i64" => i64::MAX.to_string(),
        "/negative" => "-1".to_string(),
        _ => "soon".to_string(),
    };
    (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, retry_after)], "rate limited").into_response()
}

#[test]
fn a_huge_retry_after_waits_the_capped_maximum_and_a_malformed_one_the_backoff() {
    let (base, seen) = counting_server(rate_limiter);
    let dead_port = services::free_port();
    let file = config(&format!(
        r#"defaults: {{ interval: 1s, timeout: 2s }}
store: ./state.db
checks:
  - name: broken
    http: {{ url: "http://127.0.0.1:{dead_port}/" }}
rules:
  - alert: BrokenCheck
    expr: probe_success{{check="broken"}} == 0
    labels: {{ severity: critical }}
alerting:
  retry: {{ initial: 200ms, max: 1s }}
  receivers:
    huge: {{ webhook: {{ url: "{base}/huge" }} }}
    i64: {{ webhook: {{ url: "{base}/i64" }} }}
    negative: {{ webhook: {{ url: "{base}/negative" }} }}
    words: {{ webhook: {{ url: "{base}/words" }} }}
    room: {{ matrix: {{ homeserver: "{base}", room: "!limited:example.org", access_token: t }} }}
  tiers:
    critical: {{ receivers: [huge, i64, negative, words, room] }}
"#
    ));
    let _daemon = Daemon::start(&file.path);
    let log = file.path.with_extension("log");
    let hits = |needle: &str| seen.lock().unwrap().iter().filter(|p| p.contains(needle)).count();
    wait_for("the first attempts", Duration::from_secs(30), &log, || {
        (hits("/huge") > 0 && hits("/i64") > 0 && hits("/send/") > 0).then_some(())
    });
    // The backoff alone (200 ms doubling to 1 s) retries about five times in these 5 s.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(hits("/huge"), 1, "Retry-After u64::MAX: one attempt, then the capped wait");
    assert_eq!(hits("/i64"), 1, "Retry-After i64::MAX: one attempt");
    assert_eq!(hits("/send/"), 1, "retry_after_ms u64::MAX: one attempt");
    assert!(hits("/negative") >= 3, "a negative Retry-After is ignored: the backoff applies ({})", hits("/negative"));
    assert!(hits("/words") >= 3, "so is a non-numeric one ({})", hits("/words"));
    let text = std::fs::read_to_string(&log).unwrap();
    for receiver in ["huge", "i64", "room"] {
        assert!(
            text.contains(&format!("receiver={receiver} attempts=1 dead=false wait_ms=900000")),
            "{receiver}: the capped wait is logged:\n{text}"
        );
    }
    let r = run(&["--config", file.path.to_str().unwrap(), "outbox", "--json"], &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    for row in r.json().as_array().unwrap() {
        assert_eq!(row["status"], "pending", "still retrying, never dead-lettered for it: {row}");
    }
}

// --- Endless answers ----------------------------------------------------------------------

/// A server whose every answer (`status`) is an endless body; counts the bytes it produced.
fn endless(status: StatusCode) -> (String, Arc<AtomicU64>) {
    static CHUNK: [u8; 64 * 1024] = [b'{'; 64 * 1024];
    let produced = Arc::new(AtomicU64::new(0));
    let count = produced.clone();
    let base = fakes::serve(Router::new().fallback(move || {
        let count = count.clone();
        async move {
            let stream = futures::stream::repeat_with(move || {
                count.fetch_add(CHUNK.len() as u64, Ordering::Relaxed);
                Ok::<_, std::io::Error>(axum::body::Bytes::from_static(&CHUNK))
            });
            (status, [(header::CONTENT_TYPE, "application/json")], axum::body::Body::from_stream(stream))
        }
    }));
    (base, produced)
}

#[test]
fn endless_matrix_and_webhook_answers_are_read_only_up_to_the_cap() {
    let (ok_base, ok_bytes) = endless(StatusCode::OK);
    let (err_base, err_bytes) = endless(StatusCode::INTERNAL_SERVER_ERROR);
    let file = config(&format!(
        r#"alerting:
  receivers:
    endless-ok: {{ matrix: {{ homeserver: "{ok_base}", room: "!r:example.org", access_token: t }} }}
    endless-500: {{ matrix: {{ homeserver: "{err_base}", room: "!r:example.org", access_token: t }} }}
    endless-hook: {{ webhook: {{ url: "{err_base}/hook" }} }}
"#
    ));
    let cases = [
        ("endless-ok", &ok_bytes, "could not join the room: its answer is over 64 KiB and was not read"),
        ("endless-500", &err_bytes, "could not join the room in !r:example.org: 500 (its answer is over 64 KiB"),
        ("endless-hook", &err_bytes, "answered 500: {{{{"),
    ];
    for (receiver, produced, want) in cases {
        produced.store(0, Ordering::SeqCst);
        let r = run(&["--config", file.path.to_str().unwrap(), "notify", "test", receiver], &[]);
        assert_eq!(r.code, 1, "{}", r.all());
        assert!(r.stderr.contains("transient error") && r.stderr.contains(want), "{receiver}: {}", r.all());
        assert!(r.stderr.len() < 2_000, "{receiver}: the error quotes a short snippet: {} bytes", r.stderr.len());
        // Without the cap the client reads until its 30 s timeout (gigabytes on loopback).
        assert!(r.elapsed < Duration::from_secs(20), "{receiver}: took {:?}", r.elapsed);
        std::thread::sleep(Duration::from_millis(300));
        let sent = produced.load(Ordering::SeqCst);
        assert!(
            sent < 32 * 1024 * 1024,
            "{receiver}: the server could push {sent} bytes: more than the cap plus the sockets' buffers"
        );
    }
}

// --- Private files ------------------------------------------------------------------------

/// Runs `mxwarden ARGS` under umask 000, where a file created with the default mode is 0666.
fn run_umask_000(args: &[&str]) -> crate::cli::Run {
    let started = Instant::now();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 000 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_mxwarden"))
        .args(args)
        .env_remove("MXWARDEN_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .expect("run mxwarden");
    crate::cli::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

#[test]
fn the_store_its_wal_and_backups_are_created_private_even_under_umask_000() {
    let dir = tempfile::tempdir().unwrap();
    let identity = age::x25519::Identity::generate();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    std::fs::write(keys.join("signing.pem"), "-----BEGIN PRIVATE KEY-----\n").unwrap();
    let store = dir.path().join("state/nested/state.db");
    let backups = dir.path().join("backups/mxwarden");
    let file = config(&format!(
        "store: {}\nbackup:\n  dir: {}\n  encrypt_to: [\"{}\"]\n  files:\n    keys: [\"{}/*.pem\"]\n",
        store.display(),
        backups.display(),
        identity.to_public(),
        keys.display()
    ));
    let cfg = file.path.to_str().unwrap();

    // The daemon creates the store (and its directories); while it holds the store open, the
    // WAL and shared-memory files exist.
    let log = file.path.with_extension("log");
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 000 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_mxwarden"))
        .args(["--config", cfg, "-v", "run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start mxwarden run");
    let daemon = Daemon(child);
    let wal = store.with_file_name("state.db-wal");
    let shm = store.with_file_name("state.db-shm");
    wait_for("the store's WAL", Duration::from_secs(20), &log, || (wal.exists() && shm.exists()).then_some(()));
    assert_eq!(mode(&store), 0o600, "the store");
    assert_eq!((mode(&wal), mode(&shm)), (0o600, 0o600), "the WAL and shared-memory files");
    assert_eq!(mode(store.parent().unwrap()), 0o700, "its new directory");
    assert_eq!(mode(&dir.path().join("state")), 0o700, "and the new one above it");
    drop(daemon);
    // A log written to a file is plain text: no terminal colour codes for a journal to show raw.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("INFO"), "the daemon logged at -v: {logged}");
    assert!(!logged.contains('\u{1b}'), "no escape codes in a log file: {logged:?}");

    let r = run_umask_000(&["--config", cfg, "backup", "run", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(mode(&backups), 0o700, "the backup directory");
    assert_eq!(mode(backups.parent().unwrap()), 0o700, "its new parent");
    assert_eq!(mode(&backups.join(&id)), 0o700, "the run's directory");
    let files: Vec<PathBuf> = std::fs::read_dir(backups.join(&id)).unwrap().flatten().map(|e| e.path()).collect();
    assert!(files.len() >= 2, "a manifest and the file set: {files:?}");
    for f in files.iter().chain([&backups.join(".lock")]) {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
}

// --- Restores of crafted archives ---------------------------------------------------------

/// One tar entry written byte for byte, so names the tar crate's builder would refuse can be
/// crafted.
fn raw_entry(out: &mut Vec<u8>, name: &str, kind: tar::EntryType, link: &str, mode: u32, data: &[u8]) {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(data.len() as u64);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

/// Replaces the stored archive of file set `set` in run `id` with `tar`, sealed for
/// `recipient` as `backup run` would, and fixes the manifest's size and checksum.
fn replace_archive(backups: &Path, id: &str, set: &str, tar: Vec<u8>, recipient: &str) {
    let manifest_path = backups.join(id).join("manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let item = manifest["items"].as_array_mut().unwrap().iter_mut().find(|i| i["name"] == set).expect("the set");
    let stored = backups.join(id).join(item["file"].as_str().unwrap());
    let recipients = mxwarden::backup::pipeline::recipients(&[recipient.to_string()]).unwrap();
    let sealed = fakes::runtime().block_on(async {
        let out = tokio::fs::File::create(&stored).await.unwrap();
        mxwarden::backup::pipeline::seal(std::io::Cursor::new(tar), out, 3, &recipients, &|_| {}).await.unwrap()
    });
    item["stored_bytes"] = sealed.stored_bytes.into();
    item["raw_bytes"] = sealed.raw_bytes.into();
    item["sha256"] = sealed.sha256.into();
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
}

#[test]
fn a_crafted_archive_restores_only_its_safe_entries_without_special_bits_and_names_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let identity = age::x25519::Identity::generate();
    let identity_file = dir.path().join("identity.txt");
    std::fs::write(&identity_file, format!("{}\n", identity.to_string().expose_secret())).unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    std::fs::write(keys.join("a.pem"), "A").unwrap();
    let backups = dir.path().join("backups");
    let file = config(&format!(
        "backup:\n  dir: {}\n  encrypt_to: [\"{}\"]\n  files:\n    keys: [\"{}/*.pem\"]\n",
        backups.display(),
        identity.to_public(),
        keys.display()
    ));
    let cfg = file.path.to_str().unwrap();
    let r = run(&["--config", cfg, "backup", "run", "--json"], &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    let id = r.json()["id"].as_str().unwrap().to_string();

    use tar::EntryType::*;
    let mut tar = Vec::new();
    raw_entry(&mut tar, "keys/", Directory, "", 0o1777, b"");
    raw_entry(&mut tar, "keys/suid-shell", Regular, "", 0o4755, b"#!/bin/sh\n");
    raw_entry(&mut tar, "keys/sgid.pem", Regular, "", 0o2640, b"KEY");
    raw_entry(&mut tar, "/etc/cron.d/evil", Regular, "", 0o644, b"* * * * * root sh\n");
    raw_entry(&mut tar, "../outside", Regular, "", 0o644, b"x");
    raw_entry(&mut tar, "keys/passwd", Symlink, "/etc/passwd", 0o777, b"");
    raw_entry(&mut tar, "keys/up", Symlink, "../../../etc", 0o777, b"");
    raw_entry(&mut tar, "keys/self", Symlink, ".", 0o777, b"");
    raw_entry(&mut tar, "keys/self/sneaky", Symlink, "../..", 0o777, b"");
    raw_entry(&mut tar, "keys/shadow", Link, "/etc/shadow", 0o644, b"");
    raw_entry(&mut tar, "keys/null", Char, "", 0o666, b"");
    raw_entry(&mut tar, "keys/pipe", Fifo, "", 0o666, b"");
    raw_entry(&mut tar, "keys/\x1b[2Jansi", Fifo, "", 0o644, b"");
    tar.extend_from_slice(&[0; 1024]);
    replace_archive(&backups, &id, "keys", tar, &identity.to_public().to_string());

    let out = dir.path().join("restored");
    let r = run(
        &["--config", cfg, "restore", &id, "--files", "keys", "--into", out.to_str().unwrap(), "--identity"]
            .into_iter()
            .chain([identity_file.to_str().unwrap()])
            .collect::<Vec<_>>(),
        &[],
    );
    assert_eq!(r.code, 1, "skipped entries make the restore a failure: {}", r.all());
    assert!(r.stdout.contains("restored 2 files of set keys"), "{}", r.all());
    let expected = [
        "skipped /etc/cron.d/evil: absolute path",
        "skipped ../outside: `..` in the path",
        "skipped keys/passwd: symbolic link to an absolute path (/etc/passwd)",
        "skipped keys/up: symbolic link escaping the directory (to ../../../etc)",
        "skipped keys/self/sneaky: symbolic link resolving outside the directory (through another link)",
        "skipped keys/shadow: hard link to outside the directory (/etc/shadow)",
        "skipped keys/null: device node",
        "skipped keys/pipe: named pipe (FIFO)",
        r"skipped keys/\x1b[2Jansi: named pipe (FIFO)",
        "restore incomplete: 9 unsafe entries of the archive were skipped (listed above)",
    ];
    for line in expected {
        assert!(r.stderr.contains(line), "missing {line:?} in:\n{}", r.all());
    }
    assert!(!r.all().contains('\x1b'), "a name's control characters are not printed raw: {}", r.all());
    assert_eq!(mode(&out.join("keys/suid-shell")), 0o755, "setuid dropped");
    assert_eq!(mode(&out.join("keys/sgid.pem")), 0o640, "setgid dropped");
    assert_eq!(mode(&out.join("keys")), 0o777, "sticky dropped");
    assert_eq!(mode(&out), 0o700, "the new target directory is private");
    assert_eq!(std::fs::read(out.join("keys/sgid.pem")).unwrap(), b"KEY");
    for gone in ["etc", "keys/passwd", "keys/up", "keys/sneaky", "keys/shadow", "keys/null", "keys/pipe"] {
        assert!(std::fs::symlink_metadata(out.join(gone)).is_err(), "{gone} was not unpacked");
    }
    assert!(!dir.path().join("outside").exists(), "nothing escaped");
}

// --- Control characters from a scrape -----------------------------------------------------

const VICTIM: &str = "\x1b[31mRED\x1b[0m\nFORGED [RESOLVED] all fine\r";
const VICTIM_SHOWN: &str = r"\x1b[31mRED\x1b[0m\nFORGED [RESOLVED] all fine\r";

/// An exporter whose one series carries [`VICTIM`] as a label value (a raw ESC, and `\n` the
/// exposition format's escape for a newline).
fn hostile_exporter() -> String {
    let body =
        "# TYPE evil_metric gauge\nevil_metric{victim=\"\x1b[31mRED\x1b[0m\\nFORGED [RESOLVED] all fine\r\"} 1\n";
    fakes::serve(Router::new().route(
        "/metrics",
        axum::routing::get(move || async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body) }),
    ))
}

/// The body of a MIME message's parts, quoted-printable undone.
fn decoded(mail: &str) -> String {
    mail.replace("=\r\n", "").replace("=\n", "").replace("=1B", "\x1b").replace("=3D", "=")
}

#[test]
fn a_scraped_label_value_with_an_ansi_escape_and_a_newline_reaches_matrix_email_and_the_cli_escaped() {
    let s = services::shared();
    let room = matrix::create_room(&s.synapse.base_url, &s.synapse.admin_token, "control-characters");
    let mail = SmtpSink::start();
    let exporter = hostile_exporter();
    let file = config(&format!(
        r#"defaults: {{ interval: 1s, timeout: 2s }}
store: ./state.db
checks:
  - name: exporter
    scrape: {{ url: "{exporter}/metrics" }}
rules:
  - alert: EvilLabel
    expr: evil_metric > 0
    labels: {{ severity: critical }}
    annotations: {{ summary: "victim {{{{ $labels.victim }}}} is hit" }}
alerting:
  retry: {{ initial: 300ms }}
  receivers:
    ops-room: {{ matrix: {{ homeserver: "{}", room: "{room}", access_token: "{}" }} }}
    mail: {{ email: {{ smtp: "smtp://127.0.0.1:{}", tls: none, from: "mxwarden@example.org", to: ["oncall@example.org"] }} }}
  tiers:
    critical: {{ receivers: [ops-room, mail] }}
"#,
        s.synapse.base_url, s.synapse.admin_token, mail.port
    ));
    let _daemon = Daemon::start(&file.path);
    let log = file.path.with_extension("log");
    let events = wait_for("the page in Matrix", Duration::from_secs(60), &log, || {
        let e = matrix::messages(&s.synapse.base_url, &s.synapse.admin_token, &room);
        (!e.is_empty()).then_some(e)
    });
    let content = &events[0]["content"];
    let body = content["body"].as_str().unwrap();
    let html = content["formatted_body"].as_str().unwrap();
    assert!(body.starts_with("[FIRING] EvilLabel (critical): victim "), "{body}");
    assert!(body.contains(&format!("victim={VICTIM_SHOWN}")), "the label line shows the value escaped: {body}");
    assert!(body.contains(&format!("victim {VICTIM_SHOWN} is hit")), "so does the summary: {body}");
    assert!(html.contains(VICTIM_SHOWN), "and the HTML body: {html}");
    for text in [body, html] {
        assert!(!text.contains(['\x1b', '\r']), "no raw control character: {text:?}");
        assert!(!text.lines().any(|l| l.starts_with("FORGED")), "no forged line: {text}");
    }
    assert_eq!(body.lines().count(), 3, "summary, labels, timing: {body}");

    let mails = wait_for("the page by email", Duration::from_secs(30), &log, || {
        let m = mail.messages();
        (!m.is_empty()).then_some(m)
    });
    let plain = decoded(&mails[0]);
    assert!(plain.contains(&format!("victim={VICTIM_SHOWN}")), "the email shows the value escaped: {plain}");
    assert!(!plain.contains('\x1b'), "no raw ESC in the email: {plain}");
    assert!(!plain.lines().any(|l| l.starts_with("FORGED")), "no forged line in the email: {plain}");

    let r = run(&["--config", file.path.to_str().unwrap(), "alerts"], &[]);
    assert_eq!(r.code, 1, "a firing alert: {}", r.all());
    assert!(r.stdout.contains(VICTIM_SHOWN), "the CLI table shows the summary escaped: {}", r.stdout);
    assert!(!r.stdout.contains(['\x1b', '\r']), "no raw control character in the table: {:?}", r.stdout);
    assert!(!r.stdout.lines().any(|l| l.trim_start().starts_with("FORGED")), "no forged row: {}", r.stdout);
    let raw = run(&["--config", file.path.to_str().unwrap(), "alerts", "--json"], &[]);
    assert_eq!(raw.json()[0]["labels"]["victim"], VICTIM, "--json keeps the value as scraped (JSON-escaped)");
}
