//! A real `mxwarden run` under hostile clients, on loopback:
//!
//! - numbers at the ends of the i64 range in the history API's query (once they aborted the
//!   daemon: an overflowed bucket count, then an allocation of quintillions of buckets) get a
//!   `400` with a JSON reason, and the daemon keeps running and probing;
//! - 1,100 idle, half-sent requests held open against a daemon whose open-file limit is 1,024
//!   (soft and hard, so it cannot raise it): probes of a real HTTP target keep succeeding,
//!   `/healthz` answers, and the daemon never holds more descriptors than its connection cap
//!   plus what it needs anyway;
//! - 10,000 such connections against a daemon started with a soft limit of 1,024 (which it
//!   raises to the hard one): the same.
//!
//! Every wait is bounded; the daemon is killed when the test ends however it ends.

use crate::alerting::wait_for;
use crate::cli::config;
use crate::support::{fakes, services};
use axum::Router;
use serde_json::Value;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TOKEN: &str = "hostile-api-t0ken";
/// The default `listen_max_connections`.
const CAP: usize = 512;

/// `mxwarden run` started under `prlimit --nofile=SOFT:HARD` (prlimit sets the limits and
/// execs the daemon, so the child's pid is the daemon's).
struct LimitedDaemon {
    child: Child,
    log: PathBuf,
}

impl LimitedDaemon {
    fn start(config: &Path, soft: u64, hard: u64) -> Self {
        let log = config.with_extension("log");
        let child = Command::new("prlimit")
            .arg(format!("--nofile={soft}:{hard}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_mxwarden"))
            .args(["--config", config.to_str().unwrap(), "-v", "run"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("prlimit (util-linux) starts mxwarden run");
        Self { child, log }
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().expect("wait on the daemon").is_none()
    }

    /// The daemon's open-file soft limit.
    fn soft_limit(&self) -> u64 {
        open_file_limits(&self.child.id().to_string()).0
    }

    /// How many descriptors the daemon has open now.
    fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map(|d| d.count()).unwrap_or(0)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for LimitedDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `(soft, hard)` open-file limits of process `pid` (or `self`), from `/proc/PID/limits`.
fn open_file_limits(pid: &str) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find_map(|l| l.strip_prefix("Max open files")).expect("a Max open files line");
    let mut fields = line.split_whitespace().map(|f| f.parse().expect("a number"));
    (fields.next().unwrap(), fields.next().unwrap())
}

/// Raises this test process's own soft open-file limit to its hard one (`prlimit --pid`);
/// returns `(soft, hard)` afterwards.
fn raise_own_open_file_limit() -> (u64, u64) {
    let (_, hard) = open_file_limits("self");
    let pid = std::process::id().to_string();
    let raised = Command::new("prlimit").args(["--pid", &pid, &format!("--nofile={hard}:{hard}")]).status();
    assert!(raised.expect("prlimit (util-linux) runs").success(), "prlimit --pid {pid} --nofile={hard}:{hard}");
    open_file_limits("self")
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A daemon config probing `target` every second, serving on `port`.
fn daemon_config(port: u16, target: &str) -> crate::cli::ConfigFile {
    config(&format!(
        "listen: 127.0.0.1:{port}
admin_token: {TOKEN}
defaults: {{ interval: 1s, timeout: 2s }}
checks:
  - name: web
    http: {{ url: \"{target}/\" }}
"
    ))
}

/// A real HTTP server (in this process) for the daemon to probe.
fn target() -> String {
    fakes::serve(Router::new().route("/", axum::routing::get(|| async { "ok\n" })))
}

/// `(status, JSON body)` of a GET.
fn get_json(url: &str) -> Option<(u16, Value)> {
    let (status, body) = services::http_get(url)?;
    Some((status, serde_json::from_str(&body).ok()?))
}

/// The `web` check's latest result as the status API shows it: `(state, last_run_ms)`.
fn latest(base: &str) -> Option<(String, i64)> {
    let (_, status) = get_json(&format!("{base}/api/v1/status"))?;
    let web = status["checks"].as_array()?.iter().find(|c| c["name"] == "web")?.clone();
    Some((web["state"].as_str()?.to_string(), web["last_run_ms"].as_i64()?))
}

/// Waits until the daemon serves and has probed `web` at least once.
fn wait_ready(base: &str, daemon: &LimitedDaemon) {
    wait_for("the daemon to serve and probe once", Duration::from_secs(30), &daemon.log, || {
        latest(base).filter(|(state, _)| state == "up")
    });
}

/// Opens `n` connections that each send half a request head and then nothing, and keeps them.
fn half_sent(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("connection {i} of {n}: {e}"));
            // The daemon may already have closed it to make room; it stays open on our side.
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
            s
        })
        .collect()
}

/// While `held` connections stay open: `/healthz` answers every time, and the probe keeps
/// producing fresh `up` results (at least three new ones, each newer than the last).
fn probing_and_healthz_hold(base: &str, daemon: &mut LimitedDaemon, held: usize) {
    let since = now_ms();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut fresh = Vec::new();
    while fresh.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "no fresh probe results under {held} idle connections: {fresh:?}\n{}",
            daemon.log()
        );
        let started = Instant::now();
        let health = services::http_get(&format!("{base}/healthz"));
        assert_eq!(health, Some((200, "ok\n".to_string())), "/healthz under {held} idle connections\n{}", daemon.log());
        assert!(started.elapsed() < Duration::from_secs(2), "/healthz took {:?}", started.elapsed());
        let (state, at) = latest(base).expect("the status API answers");
        assert_eq!(state, "up", "the probe of a healthy target succeeds under {held} idle connections");
        if at > since && fresh.last().is_none_or(|last| at > *last) {
            fresh.push(at);
        }
        assert!(daemon.running(), "the daemon keeps running");
        std::thread::sleep(Duration::from_millis(300));
    }
    // Every result recorded since the flood began is up: no probe failed for want of a
    // descriptor. (The history is written in batches: wait for the three to be in it.)
    let url = format!("{base}/api/v1/checks/web/history?resolution=raw&from={since}");
    let history = wait_for("the fresh results in the history", Duration::from_secs(20), &daemon.log, || {
        get_json(&url).filter(|(_, h)| h["results"].as_array().is_some_and(|r| r.len() >= 3)).map(|(_, h)| h)
    });
    let results = history["results"].as_array().unwrap();
    assert!(results.iter().all(|r| r["state"] == "up"), "{history}");
    let log = daemon.log();
    assert!(!log.contains("Too many open files") && !log.contains("os error 24"), "{log}");
}

#[test]
fn history_numbers_at_the_ends_of_i64_are_a_400_and_the_daemon_keeps_running() {
    let port = services::free_port();
    let file = daemon_config(port, &target());
    let mut daemon = LimitedDaemon::start(&file.path, 1024, 1024);
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base, &daemon);
    let history = format!("{base}/api/v1/checks/web/history");
    let (min, max) = (i64::MIN, i64::MAX);
    let refused: Vec<(String, &str)> = vec![
        (format!("from={min}&to={max}"), "is outside 0..=253402300799999"),
        (format!("resolution=raw&from={min}&to={max}"), "is outside"),
        (format!("resolution=minute&from={min}&to={max}"), "is outside"),
        (format!("resolution=hour&from={min}&to={max}"), "is outside"),
        (format!("resolution=day&from={min}&to={max}"), "is outside"),
        (format!("resolution=day&from={min}"), "from: -9223372036854775808 is outside"),
        (format!("resolution=day&to={max}"), "to: 9223372036854775807 is outside"),
        ("from=0&to=253402300799999".to_string(), "at most 20160 per request"),
        ("from=99999999999999999999".to_string(), "is not a whole number of ms"),
        ("resolution=raw&limit=18446744073709551616".to_string(), "limit must be between 1 and 20160"),
        ("resolution=raw&limit=0".to_string(), "limit must be between 1 and 20160"),
        ("from=5&to=5".to_string(), "must be before to"),
        ("fromm=5".to_string(), "unknown parameter `fromm`"),
    ];
    for (query, reason) in &refused {
        let (code, body) = services::http_get(&format!("{history}?{query}")).expect("the daemon answers");
        assert_eq!(code, 400, "{query}: {body}");
        let error: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{query}: not JSON ({e}): {body}"));
        let text = error["error"].as_str().unwrap_or_else(|| panic!("{query}: no error field: {body}"));
        assert!(text.contains(reason), "{query}: {text}");
        assert!(daemon.running(), "the daemon survives {query}\n{}", daemon.log());
    }
    // A window id beyond i64 is refused too.
    let auth = format!("Bearer {TOKEN}");
    let (code, body) = services::http_request(
        "DELETE",
        &format!("{base}/api/v1/maintenance/99999999999999999999"),
        &[("Authorization", auth.as_str())],
    )
    .unwrap();
    assert_eq!(code, 400, "{body}");

    // The defaults stay within the bounds: the whole 14 days of minutes, and raw pages.
    let (code, minutes) = get_json(&format!("{history}?resolution=minute")).unwrap();
    assert_eq!(code, 200, "{minutes}");
    assert_eq!(minutes["buckets"].as_array().unwrap().len(), 20_160);
    // (The history is written in batches: wait for two results to be in it.)
    let page = wait_for("two results in the history", Duration::from_secs(20), &daemon.log, || {
        let (code, p) = get_json(&format!("{history}?resolution=raw&limit=1"))?;
        (code == 200 && p["next_from"].is_i64()).then_some(p)
    });
    assert_eq!(page["results"].as_array().unwrap().len(), 1, "limit=1: one result, and more follow: {page}");
    let next = page["next_from"].as_i64().unwrap();
    assert_eq!(next, page["results"][0]["at_ms"].as_i64().unwrap() + 1, "the next page starts after this one");

    // Still alive, still probing.
    let (_, before) = latest(&base).unwrap();
    wait_for("a fresh probe result after the attack", Duration::from_secs(10), &daemon.log, || {
        latest(&base).filter(|(state, at)| state == "up" && *at > before)
    });
    assert_eq!(services::http_get(&format!("{base}/healthz")), Some((200, "ok\n".to_string())));
    assert!(daemon.running(), "{}", daemon.log());
}

#[test]
fn idle_connections_beyond_a_1024_descriptor_limit_do_not_blind_the_probes() {
    let port = services::free_port();
    let file = daemon_config(port, &target());
    let mut daemon = LimitedDaemon::start(&file.path, 1024, 1024);
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base, &daemon);
    assert_eq!(daemon.soft_limit(), 1024, "the hard limit is 1,024 too: nothing to raise");

    let flood = half_sent(SocketAddr::from(([127, 0, 0, 1], port)), 1_100);
    probing_and_healthz_hold(&base, &mut daemon, flood.len());
    let fds = daemon.open_fds();
    assert!(fds <= CAP + 128, "the listener keeps to its cap: {fds} descriptors open");
    drop(flood);
    assert_eq!(services::http_get(&format!("{base}/healthz")), Some((200, "ok\n".to_string())));
    assert!(daemon.running(), "{}", daemon.log());
}

#[test]
fn ten_thousand_idle_connections_leave_probing_and_healthz_unaffected() {
    // This process holds the 10,000 connections: raise our own limit first.
    let (soft, hard) = raise_own_open_file_limit();
    assert!(soft >= 10_500, "holding 10,000 connections needs a hard open-file limit of 10,500 or more: {soft}:{hard}");
    let port = services::free_port();
    let file = daemon_config(port, &target());
    let mut daemon = LimitedDaemon::start(&file.path, 1024, hard);
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base, &daemon);
    assert_eq!(daemon.soft_limit(), hard, "mxwarden raised its soft limit to the hard one");

    let flood = half_sent(SocketAddr::from(([127, 0, 0, 1], port)), 10_000);
    probing_and_healthz_hold(&base, &mut daemon, flood.len());
    let fds = daemon.open_fds();
    assert!(fds <= CAP + 128, "the listener keeps to its cap: {fds} descriptors open");
    drop(flood);
    assert_eq!(services::http_get(&format!("{base}/healthz")), Some((200, "ok\n".to_string())));
    assert!(daemon.running(), "{}", daemon.log());
}
