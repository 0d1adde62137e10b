//! Hostile scrape targets against the real binary: a page with 580,000 series of a family a
//! rule reads (the scrape fails at its limit with the reason, the daemon's peak RSS stays under
//! 64 MB plus one `scrape_body_limit`, and it keeps answering), names and values crafted to
//! write lines into `/metrics`, a target serving its own `up` and `probe_success`, and control
//! characters aimed at the terminal of whoever runs `mxwarden scrape`.

use crate::alerting::{Daemon, wait_for};
use crate::cli::{config, run};
use crate::support::{fakes, services};
use axum::Router;
use axum::body::Bytes;
use axum::routing::get;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Serves `page` at `/metrics`; returns the page's URL.
fn serve_page(page: impl Into<Bytes>) -> String {
    let page: Bytes = page.into();
    let base = fakes::serve(Router::new().route("/metrics", get(move || async move { page.clone() })));
    format!("{base}/metrics")
}

/// A field of `/proc/PID/status` in KiB (`VmHWM`, `VmRSS`).
fn kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the daemon is running");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix(" kB")?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// `/metrics` of the daemon on `base`, after checking that promtool and our parser read every
/// line of it.
fn metrics(base: &str) -> String {
    let (code, text) = services::http_get(&format!("{base}/metrics")).expect("/metrics answers");
    assert_eq!(code, 200, "{text}");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/install-test-deps.sh installs it)");
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let verdict = promtool.wait_with_output().unwrap();
    assert!(
        verdict.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&verdict.stdout),
        String::from_utf8_lossy(&verdict.stderr)
    );
    for (i, line) in text.lines().enumerate() {
        mxwarden::expo::parse(line, |_| {}).unwrap_or_else(|e| panic!("line {} does not parse ({e}): {line:?}", i + 1));
        if !line.starts_with('#') {
            let mut samples = 0;
            mxwarden::expo::parse(line, |e| samples += usize::from(matches!(e, mxwarden::expo::Event::Sample(_))))
                .unwrap();
            assert_eq!(samples, 1, "every line that is not a comment is one sample: {line:?}");
        }
    }
    text
}

/// The sample lines of family `name` (exactly that name, with or without labels).
fn lines_of<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' ']))).collect()
}

#[test]
fn a_580k_series_page_fails_its_scrape_at_the_limit_and_the_daemon_stays_small() {
    let mut page = String::from("# HELP hostile_series A family a rule reads.\n# TYPE hostile_series gauge\n");
    for i in 0..580_000 {
        page.push_str(&format!("hostile_series{{id=\"{i:07}\",kind=\"attack\"}} 1\n"));
    }
    assert!(page.len() < 32 << 20, "under the default scrape_body_limit: {} bytes", page.len());
    let url = serve_page(page);
    let port = services::free_port();
    let file = config(&format!(
        "listen: 127.0.0.1:{port}
defaults: {{ interval: 1s, timeout: 10s }}
checks:
  - name: hostile
    scrape: {{ url: \"{url}\" }}
rules:
  - alert: HostileSeriesHigh
    expr: hostile_series > 1e9
    labels: {{ severity: warning }}
"
    ));
    let log = file.path.with_extension("log");
    let daemon = Daemon::start(&file.path);
    let base = format!("http://127.0.0.1:{port}");
    let failures = wait_for("three scrapes over the limit", Duration::from_secs(60), &log, || {
        let (_, text) = services::http_get(&format!("{base}/metrics"))?;
        let line = lines_of(&text, "mxwarden_scrape_limit_exceeded_total").first()?.to_string();
        let n: u64 = line.rsplit(' ').next()?.parse().ok()?;
        (n >= 3).then_some(line)
    });
    assert_eq!(failures.split(' ').next(), Some(r#"mxwarden_scrape_limit_exceeded_total{check="hostile"}"#));

    let pid = daemon.0.id();
    let (peak, rss) = (kib(pid, "VmHWM"), kib(pid, "VmRSS"));
    let bound = 64 * 1000 + 32 * 1024; // 64 MB + the default scrape_body_limit (32 MiB), in KiB
    assert!(peak < bound, "peak RSS {peak} KiB over the bound {bound} KiB (now {rss} KiB)");

    // The scrape failed, saying why in words; the target's series were never kept.
    let (_, status) = services::http_get(&format!("{base}/api/v1/status")).unwrap();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let check = &status["checks"][0];
    assert_eq!(check["state"], "down", "{check}");
    let detail = check["detail"].as_str().unwrap();
    assert!(
        detail.contains("has more than 10000 samples of the families the rules read")
            && detail.contains("stopped reading at line 10003 and kept nothing"),
        "{detail}"
    );
    let text = metrics(&base);
    assert_eq!(lines_of(&text, "up").len(), 1, "{text}");
    assert!(lines_of(&text, "up")[0].ends_with(" 0"), "the failed scrape is `up` 0: {text}");
    assert!(!text.contains("hostile_series"), "scraped series are never exported");

    // Still running and answering.
    assert_eq!(
        services::http_get(&format!("{base}/healthz")).map(|(code, body)| (code, body.trim().to_string())),
        Some((200, "ok".into()))
    );
    let mut daemon = daemon;
    assert!(daemon.0.try_wait().unwrap().is_none(), "the daemon is still running");

    // `mxwarden check` fails the same check, with the same reason, and exits 1.
    let r = run(&["--config", file.path.to_str().unwrap(), "check", "--json"], &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    let row = r.row("hostile");
    assert_eq!(row["ok"], false);
    assert!(row["detail"].as_str().unwrap().contains("has more than 10000 samples"), "{row}");
}

#[test]
fn names_and_values_from_a_scraped_page_never_write_a_line_of_their_own() {
    // As written on the page: `\"` and `\n` are escapes, which the parser undoes, so the label
    // name below reads as `a"} 1<newline>evil_metric 1`.
    let page = concat!(
        "# HELP hostile_x Help with a line break\\nevil_metric 1\n",
        "# TYPE hostile_x gauge\n",
        "hostile_x{\"a\\\"} 1\\nevil_metric 1\"=\"v\"} 1\n",
        "hostile_x{\"my.label\"=\"v\"} 2\n",
        "hostile_x{v=\"line\\\"} 1\\nvalue_evil 1\\\\\"} 3\n",
        "{\"hostile_x\\\"} 1\\nevil_metric 1\", a=\"b\"} 4\n",
    );
    let url = serve_page(page);
    let port = services::free_port();
    let file = config(&format!(
        "listen: 127.0.0.1:{port}
defaults: {{ interval: 1s }}
checks:
  - name: hostile
    scrape: {{ url: \"{url}\" }}
rules:
  - alert: HostileX
    expr: hostile_x > 0
    labels: {{ severity: warning }}
"
    ));
    let log = file.path.with_extension("log");
    let _daemon = Daemon::start(&file.path);
    let base = format!("http://127.0.0.1:{port}");
    let text = wait_for("the HostileX alerts", Duration::from_secs(60), &log, || {
        let (_, text) = services::http_get(&format!("{base}/metrics"))?;
        let alerts = lines_of(&text, "ALERTS");
        let dropped = lines_of(&text, "mxwarden_metrics_invalid_names_dropped_total");
        let dropped: u64 = dropped.first()?.rsplit(' ').next()?.parse().ok()?;
        (alerts.iter().any(|l| l.contains("alertname=\"HostileX\"")) && dropped >= 2).then_some(text)
    });
    let text = {
        let _ = text;
        metrics(&base) // every line parses, with promtool and with our parser
    };
    assert!(!text.contains("evil_metric"), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("value_evil")), "{text}");
    let alerts = lines_of(&text, "ALERTS");
    assert_eq!(alerts.len(), 1, "the two alerts with invalid label names are left out: {text}");
    assert_eq!(
        alerts[0],
        r#"ALERTS{alertname="HostileX",alertstate="firing",instance="127.0.0.1:PORT",severity="warning",v="line\"} 1\nvalue_evil 1\\"} 1"#
            .replace("PORT", url.split(':').nth(2).unwrap().split('/').next().unwrap()),
        "the value is escaped and reads back as it was"
    );
    let dropped = lines_of(&text, "mxwarden_metrics_invalid_names_dropped_total");
    assert!(dropped[0].rsplit(' ').next().unwrap().parse::<u64>().unwrap() >= 2, "{text}");
}

#[test]
fn a_target_serving_up_and_probe_success_does_not_join_our_families() {
    let page = "up 0\nprobe_success{check=\"web\"} 0\nprobe_duration_seconds 12345\nmxwarden_checks 99\n\
                scrape_samples_scraped 12345\npg_up 0\n";
    let url = serve_page(page);
    let port = services::free_port();
    // One rule per name the target serves, each true only of the target's sample.
    let rules: String = [
        "up == 0",
        "probe_success == 0",
        "probe_duration_seconds > 1000",
        "mxwarden_checks > 50",
        "scrape_samples_scraped > 1000",
        "pg_up == 0",
    ]
    .iter()
    .enumerate()
    .map(|(i, expr)| format!("  - {{ alert: TargetSaysDown{i}, expr: \"{expr}\", labels: {{ severity: warning }} }}\n"))
    .collect();
    let file = config(&format!(
        "listen: 127.0.0.1:{port}
defaults: {{ interval: 1s }}
checks:
  - name: hostile
    scrape: {{ url: \"{url}\" }}
  - name: web
    http: {{ url: \"{url}\" }}
rules:
{rules}"
    ));
    let log = file.path.with_extension("log");
    let _daemon = Daemon::start(&file.path);
    let base = format!("http://127.0.0.1:{port}");
    wait_for("both checks and the target's own samples judged", Duration::from_secs(60), &log, || {
        let (_, text) = services::http_get(&format!("{base}/metrics"))?;
        let firing = lines_of(&text, "ALERTS").iter().filter(|l| l.contains("TargetSaysDown")).count();
        (lines_of(&text, "probe_success").len() == 1 && lines_of(&text, "up").len() == 1 && firing >= 6).then_some(())
    });
    let text = metrics(&base);
    // The rules saw the target's samples (six alerts, one per series it served) …
    assert_eq!(lines_of(&text, "ALERTS").iter().filter(|l| l.contains("TargetSaysDown")).count(), 6, "{text}");
    // … but our families hold only our own.
    let instance = url.trim_start_matches("http://").split('/').next().unwrap();
    assert_eq!(lines_of(&text, "up"), [format!(r#"up{{check="hostile",instance="{instance}"}} 1"#)], "{text}");
    assert_eq!(lines_of(&text, "probe_success"), [r#"probe_success{check="web"} 1"#], "{text}");
    assert_eq!(lines_of(&text, "mxwarden_checks"), ["mxwarden_checks 2"], "{text}");
    assert_eq!(lines_of(&text, "probe_duration_seconds").len(), 1, "{text}");
    assert_eq!(
        lines_of(&text, "scrape_samples_scraped"),
        [format!(r#"scrape_samples_scraped{{check="hostile",instance="{instance}"}} 6"#)]
    );
    assert!(lines_of(&text, "pg_up").is_empty(), "{text}");
    assert!(!text.lines().any(|l| l.ends_with(" 12345") || l.ends_with(" 99")), "{text}");
}

#[test]
fn scrape_prints_no_raw_control_character() {
    let page = "# TYPE x gauge\n\
                x{title=\"\u{1b}]0;pwned\u{7}\",clear=\"\u{1b}[2J\u{1b}[H\",rtl=\"\u{202e}gnp.exe\",cr=\"a\rb\",nl=\"a\\nb\"} 1\n\
                {\"name\u{1b}[31m\", \"label\u{8}\"=\"v\"} 2\n";
    let url = serve_page(page);
    let r = run(&["scrape", &url], &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    let controls = |s: &str| s.chars().filter(|&c| (c.is_control() && c != '\n') || c == '\u{202e}').count();
    assert_eq!(controls(&r.stdout), 0, "{:?}", r.stdout);
    assert_eq!(
        r.stdout,
        "x{title=\"\\x1b]0;pwned\\x07\",clear=\"\\x1b[2J\\x1b[H\",rtl=\"\\u{202e}gnp.exe\",cr=\"a\\rb\",nl=\"a\\nb\"} 1\n\
         name\\x1b[31m{label\\x08=\"v\"} 2\n"
    );
    // JSON keeps the values exactly, escaped as JSON escapes them.
    let r = run(&["scrape", "--json", &url], &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    let rows = r.json();
    assert_eq!(rows[0]["labels"]["clear"], "\u{1b}[2J\u{1b}[H");
    assert_eq!(rows[0]["labels"]["nl"], "a\nb");
    assert_eq!(rows[1]["name"], "name\u{1b}[31m");
    assert_eq!(controls(&r.stdout.replace('\u{202e}', "")), 0, "JSON escapes C0 controls: {:?}", r.stdout);
    // A malformed page: the error quotes the page only with its controls escaped.
    let url = serve_page("ok 1\n\u{1b}[2Jnot_a_sample 1\n");
    let r = run(&["scrape", &url], &[]);
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("line 2: `\\x1b[2Jnot_a_sample` is not a metric name"), "{}", r.all());
    assert_eq!(controls(&r.stderr), 0, "{:?}", r.stderr);
}
