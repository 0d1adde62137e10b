//! `mxwarden run` as a person and as Prometheus see it: the status page loaded in a real
//! headless Chromium (the test asserts what the page shows and saves a screenshot under
//! `target/test-artifacts/`), `/api/v1/status` listing every check with its state, `/metrics`
//! passing `promtool check metrics`, writes refused without the token, a broken config on
//! reload (API and SIGHUP) refused while the daemon keeps running and an alert says so, and a
//! restart after which history survives and the downtime shows as unknown.

use crate::alerting::{Daemon, wait_for};
use crate::cli::{config, run};
use crate::support::{fakes, services};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const TOKEN: &str = "adm1n-t0ken-for-tests";

fn get_json(url: &str) -> Option<Value> {
    let (status, body) = services::http_get(url)?;
    (status == 200).then(|| serde_json::from_str(&body).ok()).flatten()
}

fn post(url: &str, token: Option<&str>) -> (u16, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    services::http_request("POST", url, &headers).expect("the daemon answers")
}

fn artifacts() -> PathBuf {
    let dir = services::repo().join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn chromium() -> &'static str {
    let path = "/usr/bin/chromium";
    assert!(Path::new(path).exists(), "{path} is missing: run scripts/install-test-deps.sh");
    path
}

/// Headless Chromium: the DOM after the page ran, and a screenshot.
fn browse(url: &str, screenshot: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let common = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"];
    let user_dir = format!("--user-data-dir={}", profile.path().display());
    let dom = Command::new(chromium()).args(common).arg(&user_dir).args(["--dump-dom", url]).output().unwrap();
    assert!(dom.status.success(), "chromium --dump-dom failed: {}", String::from_utf8_lossy(&dom.stderr));
    let shot = Command::new(chromium())
        .args(common)
        .arg(&user_dir)
        .args(["--window-size=1280,1400", &format!("--screenshot={}", screenshot.display()), url])
        .output()
        .unwrap();
    assert!(shot.status.success(), "chromium --screenshot failed: {}", String::from_utf8_lossy(&shot.stderr));
    String::from_utf8(dom.stdout).unwrap()
}

#[test]
fn the_status_page_api_and_metrics_show_every_check_with_its_state() {
    let s = services::shared();
    let vikunja = fakes::vikunja();
    let dead = format!("http://127.0.0.1:{}", services::free_port());
    let port = services::free_port();
    let file = config(&format!(
        "listen: 127.0.0.1:{port}
admin_token: {TOKEN}
defaults: {{ interval: 1s, timeout: 2s }}
services:
  synapse: {{ kind: synapse, url: \"{}\" }}
  vikunja: {{ kind: vikunja, url: \"{vikunja}\" }}
  tasks: {{ kind: vikunja, url: \"{dead}\", down_after: 1s }}
",
        s.synapse.base_url
    ));
    let shown = run(&["--config", file.path.to_str().unwrap(), "config", "show", "--json"], &[]);
    assert_eq!(shown.code, 0, "{}", shown.all());
    assert_eq!(shown.json()["listen"], format!("127.0.0.1:{port}"));
    assert_eq!(shown.json()["admin_token"], "<redacted>");
    // The limits in force are shown with their defaults, not only when set.
    assert_eq!(shown.json()["listen_max_connections"], 512);
    let defaults = &shown.json()["defaults"];
    assert_eq!((defaults["series_limit"].as_u64(), defaults["sample_limit"].as_u64()), (Some(20_000), Some(10_000)));
    assert_eq!(defaults["scrape_body_limit"], "32MiB");
    assert!(!shown.stdout.contains(TOKEN), "config show never prints the token");
    assert!(shown.json().get("depends_on").is_none(), "no postgres and no mas here: nothing to depend on");
    let names: Vec<String> =
        shown.json()["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect();
    assert!(names.len() >= 5, "{names:?}");
    let log = file.path.with_extension("log");
    let _daemon = Daemon::start(&file.path);
    let base = format!("http://127.0.0.1:{port}");
    let status =
        wait_for("every check to report and TasksDown... VikunjaDown to fire", Duration::from_secs(40), &log, || {
            let st = get_json(&format!("{base}/api/v1/status"))?;
            let all_ran = st["checks"].as_array()?.iter().all(|c| c["state"] != "unknown");
            let firing = st["alerts"].as_array()?.iter().any(|a| a["alert"] == "VikunjaDown" && a["state"] == "firing");
            (all_ran && firing).then_some(st)
        });
    let checks = status["checks"].as_array().unwrap();
    let listed: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(listed, names, "every check of the config, in its order");
    for c in checks {
        let expected = if c["service"] == "tasks" { "down" } else { "up" };
        assert_eq!(c["state"], expected, "{c}");
        assert!(c["uptime_24h"].is_number(), "{c}");
    }
    assert_eq!(status["overall"], "down");
    let alert = status["alerts"].as_array().unwrap().iter().find(|a| a["alert"] == "VikunjaDown").unwrap();
    assert_eq!(alert["service"], "tasks", "only the dead one is down: {}", status["alerts"]);

    // /metrics passes promtool and carries the probes and the alert.
    let (code, metrics) = services::http_get(&format!("{base}/metrics")).unwrap();
    assert_eq!(code, 200);
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (scripts/install-test-deps.sh installs it)");
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), metrics.as_bytes()).unwrap();
    let verdict = promtool.wait_with_output().unwrap();
    assert!(
        verdict.status.success(),
        "promtool check metrics: {}{}\n{metrics}",
        String::from_utf8_lossy(&verdict.stdout),
        String::from_utf8_lossy(&verdict.stderr)
    );
    assert!(metrics.contains(r#"probe_success{check="synapse/health",service="synapse"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"probe_success{check="tasks/health",service="tasks"} 0"#), "{metrics}");
    assert!(
        metrics.lines().any(|l| l.starts_with("ALERTS{")
            && l.contains(r#"alertname="VikunjaDown""#)
            && l.contains(r#"alertstate="firing""#)),
        "{metrics}"
    );
    assert!(metrics.contains("process_resident_memory_bytes "), "{metrics}");

    // What a person sees.
    let shot = artifacts().join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let dom = browse(&format!("{base}/"), &shot);
    for seen in [
        "synapse",
        "vikunja",
        "tasks",
        "synapse/health",
        "tasks/health",
        "VikunjaDown",
        "Open alerts",
        "Recent incidents",
    ] {
        assert!(dom.contains(seen), "the page does not show {seen:?}:\n{dom}");
    }
    assert!(dom.contains(r#"class="state up">up<"#), "an up badge:\n{dom}");
    assert!(dom.contains(r#"class="state down">down<"#), "a down badge:\n{dom}");
    assert!(dom.contains(r#"class="bar b-up""#), "today's uptime bar of a passing check:\n{dom}");
    assert!(dom.contains(r#"class="bar b-down""#), "today's uptime bar of the failing one:\n{dom}");
    assert!(dom.contains("<svg"), "the response-time chart:\n{dom}");
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real screenshot: {} bytes", png.len());

    // The history of one check, over the API.
    let history = get_json(&format!("{base}/api/v1/checks/synapse/health/history?resolution=raw")).unwrap();
    assert!(!history["results"].as_array().unwrap().is_empty(), "{history}");
    let (code, _) = services::http_get(&format!("{base}/api/v1/checks/nope/history")).unwrap();
    assert_eq!(code, 404);

    // Writes need the token.
    assert_eq!(post(&format!("{base}/api/v1/reload"), None).0, 401);
    assert_eq!(post(&format!("{base}/api/v1/reload"), Some("wrong")).0, 403);
}

#[test]
fn a_broken_config_on_reload_is_refused_the_daemon_keeps_running_and_an_alert_says_so() {
    let vikunja = fakes::vikunja();
    let sink = fakes::webhook_sink();
    let port = services::free_port();
    let text = |interval: &str| {
        format!(
            "listen: 127.0.0.1:{port}
admin_token: {TOKEN}
defaults: {{ interval: {interval}, timeout: 2s }}
services:
  vikunja: {{ kind: vikunja, url: \"{vikunja}\" }}
alerting:
  receivers:
    hook: {{ webhook: {{ url: \"{}\" }} }}
  tiers:
    critical: {{ receivers: [hook] }}
",
            sink.url
        )
    };
    let file = config(&text("1s"));
    let log = file.path.with_extension("log");
    let daemon = Daemon::start(&file.path);
    let base = format!("http://127.0.0.1:{port}");
    let first = wait_for("every check up", Duration::from_secs(20), &log, || {
        get_json(&format!("{base}/api/v1/status")).filter(|st| {
            st["overall"] == "up" && st["checks"].as_array().is_some_and(|c| c.iter().all(|c| c["state"] == "up"))
        })
    });

    std::fs::write(&file.path, format!("{}intervall: 5s\n", text("1s"))).unwrap();
    let (code, body) = post(&format!("{base}/api/v1/reload"), Some(TOKEN));
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("intervall") && body.contains("keeps running"), "{body}");
    let alerts = |status: &str| -> usize {
        sink.received
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, b)| serde_json::from_slice::<Value>(b).ok())
            .filter(|p| {
                p["status"] == status
                    && p["alerts"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x["labels"]["alertname"] == "MxwardenConfigRefused"))
            })
            .count()
    };
    wait_for("the refused-config page", Duration::from_secs(20), &log, || (alerts("firing") == 1).then_some(()));

    // SIGHUP with the same broken file: refused too, the daemon still runs.
    let pid = daemon.0.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    wait_for("the second refusal", Duration::from_secs(20), &log, || (alerts("firing") == 2).then_some(()));
    assert_eq!(services::http_get(&format!("{base}/healthz")).map(|r| r.0), Some(200));
    let st = get_json(&format!("{base}/api/v1/status")).unwrap();
    assert_eq!(st["started_ms"], first["started_ms"], "the config running since the start still runs: {st}");
    assert!(st["checks"].as_array().unwrap().iter().all(|c| c["state"] == "up"), "{st}");

    // A valid config is taken, and the alert resolves.
    std::fs::write(&file.path, text("2s")).unwrap();
    let (code, body) = post(&format!("{base}/api/v1/reload"), Some(TOKEN));
    assert_eq!(code, 200, "{body}");
    wait_for("the resolve", Duration::from_secs(20), &log, || (alerts("resolved") == 1).then_some(()));
    let reloaded = wait_for("the daemon to serve again", Duration::from_secs(20), &log, || {
        get_json(&format!("{base}/api/v1/status"))
    });
    assert_ne!(reloaded["started_ms"], first["started_ms"], "the new config runs");
}

#[test]
fn after_a_restart_history_survives_and_the_downtime_shows_as_unknown() {
    let vikunja = fakes::vikunja();
    let port = services::free_port();
    let file = config(&format!(
        "listen: 127.0.0.1:{port}
defaults: {{ interval: 1s, timeout: 2s }}
services:
  vikunja: {{ kind: vikunja, url: \"{vikunja}\" }}
"
    ));
    let log = file.path.with_extension("log");
    let base = format!("http://127.0.0.1:{port}");
    let raw = |base: &str| -> Option<Vec<Value>> {
        Some(
            get_json(&format!("{base}/api/v1/checks/vikunja/health/history?resolution=raw"))?["results"]
                .as_array()?
                .clone(),
        )
    };
    let mut daemon = Daemon::start(&file.path);
    let before = wait_for("a few results", Duration::from_secs(20), &log, || raw(&base).filter(|r| r.len() >= 3));
    let stopped_at = before.last().unwrap()["at_ms"].as_i64().unwrap();
    daemon.kill9();
    // Longer than two heartbeats (2 × 15 s): a gap, not a quick restart.
    std::thread::sleep(Duration::from_secs(33));
    let _daemon = Daemon::start(&file.path);
    let after = wait_for("results after the restart", Duration::from_secs(20), &log, || {
        raw(&base).filter(|r| r.iter().any(|x| x["at_ms"].as_i64().unwrap() > stopped_at + 30_000))
    });
    for r in &before {
        assert!(after.contains(r), "result {r} from before the restart is kept");
    }
    let from = stopped_at - 120_000;
    let minutes =
        get_json(&format!("{base}/api/v1/checks/vikunja/health/history?resolution=minute&from={from}")).unwrap();
    let unknown: f64 = minutes["buckets"].as_array().unwrap().iter().map(|b| b["unknown"].as_f64().unwrap()).sum();
    assert!(
        unknown * 60.0 > 25.0,
        "about 30 s unknown over the minute buckets, got {:.1} s: {minutes}",
        unknown * 60.0
    );
    let ups: i64 = minutes["buckets"].as_array().unwrap().iter().map(|b| b["up"].as_i64().unwrap()).sum();
    assert_eq!(ups as usize, after.len(), "every raw result is in the minute rollups once");
}
