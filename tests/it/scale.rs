//! mxwarden at size (issue 20, item 4): thousands of checks against a farm of real HTTP targets
//! on loopback (`crates/target-farm`, which counts the requests each target got). Correctness,
//! not timing — the figures are in BENCHMARKS.md ("10,000 endpoints", `scripts/bench-scale.sh`):
//! every check recorded in the history every round, the rules judging exactly the failing
//! ones, the status API paged and quick to answer, `/metrics` complete; a config of 10,000
//! checks loads; and a low soft open-file limit is raised so that hundreds of origins, each
//! keeping connections, all pass.

use crate::alerting::{Daemon, wait_for};
use crate::cli::{config, run};
use crate::support::services;
use mxwarden_target_farm::Counts;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A farm of `targets` targets (side `m`) on `ports` loopback ports, served by its own runtime.
struct Farm {
    _rt: tokio::runtime::Runtime,
    counts: Arc<Counts>,
    ports: Vec<u16>,
}

impl Farm {
    fn start(targets: usize, ports: usize) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let counts = Counts::new(targets, &["m"]);
        let ports = rt.block_on(async {
            let mut bound = Vec::new();
            for _ in 0..ports {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                bound.push(listener.local_addr().unwrap().port());
                mxwarden_target_farm::spawn(listener, counts.clone());
            }
            bound
        });
        Self { _rt: rt, counts, ports }
    }

    /// Target `i`'s URL (any `i`: past the farm's count it answers 404).
    fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}/m/{i}", self.ports[i % self.ports.len()])
    }
}

fn get_json(url: &str) -> Option<Value> {
    let (status, body) = services::http_get(url)?;
    (status == 200).then(|| serde_json::from_str(&body).ok()).flatten()
}

/// Stops the daemon with SIGTERM (it writes its pending results) and waits for it.
fn stop(mut daemon: Daemon) {
    let pid = daemon.0.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while daemon.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "mxwarden run did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every check's results (times, ms, ascending) from the store's history.
fn history(store: &std::path::Path) -> BTreeMap<String, Vec<i64>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let url = format!("sqlite://{}?mode=ro", store.display());
        let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT c.name, r.at FROM results r JOIN checks c ON c.id = r.check_id ORDER BY c.name, r.at",
        )
        .fetch_all(&mut db)
        .await
        .unwrap();
        let mut by_check: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for (name, at) in rows {
            by_check.entry(name).or_default().push(at);
        }
        by_check
    })
}

#[test]
fn two_thousand_checks_are_each_recorded_every_round_and_judged_and_the_status_answers() {
    const N: usize = 2_000;
    const FAILING: usize = 5;
    const INTERVAL_MS: i64 = 4_000;
    let farm = Farm::start(N, 8);
    let dir = tempfile::tempdir().unwrap();
    let port = services::free_port();
    let mut text = format!(
        "store: {}/mxwarden.db\nlisten: 127.0.0.1:{port}\ndefaults: {{ interval: 4s, timeout: 3s, concurrency: 32 }}\nchecks:\n",
        dir.path().display()
    );
    for i in 0..N {
        text.push_str(&format!(
            "  - {{ name: t{i}, http: {{ url: \"{}\", expect: {{ status: 200 }} }} }}\n",
            farm.url(i)
        ));
    }
    // Past the farm's targets: 404, so these fail their expectation.
    for i in 0..FAILING {
        text.push_str(&format!(
            "  - {{ name: gone{i}, http: {{ url: \"{}\", expect: {{ status: 200 }} }} }}\n",
            farm.url(N + i)
        ));
    }
    text.push_str(
        "rules:
  - alert: EndpointDown
    expr: probe_success == 0
    for: 3s
    labels: { severity: critical }
    annotations: { summary: \"{{ $labels.check }} is down\" }
  - alert: GoneZeroDown
    expr: probe_success{check=\"gone0\"} == 0
    labels: { severity: warning }
",
    );
    let file = config(&text);
    let checked = run(&["--config", file.path.to_str().unwrap(), "config", "check"], &[]);
    assert_eq!(checked.code, 0, "{}", checked.all());
    let log = file.path.with_extension("log");
    let started = Instant::now();
    let daemon = Daemon::start(&file.path);
    let base = format!("http://127.0.0.1:{port}");

    // The rules fire for exactly the failing checks: the per-check rule for each, the pinned one.
    let status = wait_for("every check to report and the failing ones to fire", Duration::from_secs(30), &log, || {
        let st = get_json(&format!("{base}/api/v1/status"))?;
        let listing = &st["listing"];
        let firing = st["alerts"].as_array()?.iter().filter(|a| a["state"] == "firing").count();
        (listing["up"] == N && listing["down"] == FAILING && firing == FAILING + 1).then_some(st)
    });
    assert_eq!(status["overall"], "down");
    assert_eq!(status["listing"]["total"], N + FAILING);
    assert_eq!(status["listing"]["failing_first"], true);
    let listed: Vec<&str> = status["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(listed.len(), 100, "one page of the default size");
    assert_eq!(&listed[..FAILING], ["gone0", "gone1", "gone2", "gone3", "gone4"], "failing checks first");
    assert_eq!(listed[FAILING], "t0", "then the rest in config order");
    let mut down: Vec<String> = status["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["alert"] == "EndpointDown")
        .map(|a| a["labels"]["check"].as_str().unwrap().to_string())
        .collect();
    down.sort();
    assert_eq!(down, ["gone0", "gone1", "gone2", "gone3", "gone4"], "exactly the failing checks fire");

    // The status answers quickly at this size, pages through every check, and refuses a huge page.
    let asked = Instant::now();
    let last = get_json(&format!("{base}/api/v1/status?offset=1005&limit=1000")).expect("the last page");
    assert!(asked.elapsed() < Duration::from_secs(10), "a page of 1,000 checks took {:?}", asked.elapsed());
    let names = last["checks"].as_array().unwrap();
    assert_eq!(names.len(), 1000);
    assert_eq!(names.last().unwrap()["name"], format!("t{}", N - 1));
    let (code, body) = services::http_get(&format!("{base}/api/v1/status?limit=5000")).unwrap();
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("limit"), "{body}");
    let (code, page) = services::http_get(&format!("{base}/")).unwrap();
    assert_eq!(code, 200);
    assert!(page.contains("2005 checks: 5 down, 0 unknown, 0 in maintenance, 2000 up"), "the page counts every check");
    assert!(page.contains("href=\"?offset=100&amp;limit=100\">next</a>"), "and links the next page");
    assert!(page.len() < 2 << 20, "the page stays small: {} bytes", page.len());
    let (code, metrics) = services::http_get(&format!("{base}/metrics")).unwrap();
    assert_eq!(code, 200);
    assert_eq!(metrics.lines().filter(|l| l.starts_with("probe_success{")).count(), N + FAILING);

    // Let the rounds go on for at least 18 s, then stop: every check is in the history every
    // round, up to the end.
    std::thread::sleep(Duration::from_secs(18).saturating_sub(started.elapsed()));
    stop(daemon);
    let ran_ms = started.elapsed().as_millis() as i64;
    let stopped_ms = jiff::Timestamp::now().as_millisecond();
    let history = history(&dir.path().join("mxwarden.db"));
    assert_eq!(history.len(), N + FAILING, "every check has results");
    for (check, times) in &history {
        // First runs spread over the first interval; one result per interval after that.
        let rounds = (ran_ms - INTERVAL_MS) / INTERVAL_MS;
        assert!(times.len() as i64 >= rounds, "{check}: {} results in {ran_ms} ms: {times:?}", times.len());
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(gap <= INTERVAL_MS * 3 / 2, "{check} missed a round: {gap} ms between results: {times:?}");
        }
        let last = times.last().unwrap();
        assert!(
            stopped_ms - last <= INTERVAL_MS * 3 / 2,
            "{check} stopped being recorded {} ms early",
            stopped_ms - last
        );
    }
    assert_eq!(farm.counts.targets_ever("m"), N, "every target was asked");
    assert!(
        farm.counts.requests("m") as usize >= N * 3,
        "{} requests for {N} targets over at least three rounds",
        farm.counts.requests("m")
    );
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
}

#[test]
fn a_config_of_ten_thousand_checks_loads_and_nothing_valid_is_refused() {
    let farm_ports = [8081, 8082, 8083, 8084];
    let mut text = String::from("defaults: { interval: 60s, timeout: 5s }\nchecks:\n");
    for i in 0..10_000 {
        let port = farm_ports[i % 4];
        text.push_str(&format!(
            "  - {{ name: t{i}, http: {{ url: \"http://127.0.0.1:{port}/m/{i}\", expect: {{ status: 200, max_latency: 2s }} }} }}\n"
        ));
    }
    text.push_str("rules:\n  - alert: EndpointDown\n    expr: probe_success == 0\n    for: 2m\n    labels: { severity: critical }\n");
    let file = config(&text);
    let checked = run(&["--config", file.path.to_str().unwrap(), "config", "check"], &[]);
    assert_eq!(checked.code, 0, "{}", checked.all());
    let shown = run(&["--config", file.path.to_str().unwrap(), "config", "show", "--json"], &[]);
    assert_eq!(shown.code, 0, "{}", shown.all());
    let checks = shown.json()["checks"].as_array().unwrap().len();
    assert_eq!(checks, 10_000, "every check of the file");
    let rules = run(&["--config", file.path.to_str().unwrap(), "rules", "list", "--json"], &[]);
    let names: Vec<String> = rules.json()["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["alert"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(names.contains(&"EndpointDown".to_string()), "{names:?}");
    assert!(!names.contains(&"CheckFailing".to_string()), "the user's rule reads every check: no 10,000 extra rules");
}

#[test]
fn a_low_soft_open_file_limit_is_raised_and_hundreds_of_origins_all_pass() {
    const ORIGINS: usize = 300;
    let farm = Farm::start(ORIGINS, ORIGINS);
    let dir = tempfile::tempdir().unwrap();
    let port = services::free_port();
    let mut text = format!(
        "store: {}/mxwarden.db\nlisten: 127.0.0.1:{port}\ndefaults: {{ interval: 2s, timeout: 3s, concurrency: 64 }}\nchecks:\n",
        dir.path().display()
    );
    for i in 0..ORIGINS {
        text.push_str(&format!(
            "  - {{ name: o{i}, http: {{ url: \"{}\", expect: {{ status: 200 }} }} }}\n",
            farm.url(i)
        ));
    }
    let file = config(&text);
    let log = file.path.with_extension("log");
    // A soft limit (256) below what 300 kept connections need, under a hard one (4096) that fits.
    let child = Command::new("prlimit")
        .args(["--nofile=256:4096", "--", env!("CARGO_BIN_EXE_mxwarden")])
        .args(["--config", file.path.to_str().unwrap(), "-v", "run"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("prlimit (util-linux) starts mxwarden run");
    let daemon = Daemon(child);
    let base = format!("http://127.0.0.1:{port}");
    let status = wait_for("two rounds of every origin, all up", Duration::from_secs(30), &log, || {
        let st = get_json(&format!("{base}/api/v1/status"))?;
        (st["listing"]["up"] == ORIGINS && farm.counts.requests("m") as usize >= 2 * ORIGINS).then_some(st)
    });
    assert_eq!(status["listing"]["down"], 0, "no probe failed for want of a descriptor");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", daemon.0.id())).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let fields: Vec<&str> = line["Max open files".len()..].split_whitespace().collect();
    assert_eq!(&fields[..2], ["4096", "4096"], "the soft limit was raised to the hard one: {line}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("fewer idle connections are kept to each") && text.contains("idle=11"),
        "300 origins × 64 do not fit under 4096: 11 idle connections each, said once: {text}"
    );
    assert_eq!(farm.counts.targets_ever("m"), ORIGINS);
    stop(daemon);
}
