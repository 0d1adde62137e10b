//! Every way a probe can fail gives exit 1 and an explanation that names the cause:
//! status, JSON, body, refused connection, DNS, silence past the deadline, over-cap bodies,
//! redirects, and each kind of TLS failure — against real sockets, never mocks of the client.

use crate::cli::{check_json, config};
use crate::support::{fakes, tls_server};
use std::sync::OnceLock;

fn hostile() -> &'static fakes::Hostile {
    static H: OnceLock<fakes::Hostile> = OnceLock::new();
    H.get_or_init(fakes::hostile)
}

fn tls() -> &'static tls_server::TlsServers {
    static T: OnceLock<tls_server::TlsServers> = OnceLock::new();
    T.get_or_init(tls_server::start)
}

/// Runs one hand-written HTTP check and returns (exit code, its row).
fn one(http_yaml: &str, timeout: &str) -> (i32, serde_json::Value, crate::cli::Run) {
    let file = config(&format!("checks:\n  - name: probe\n    timeout: {timeout}\n    http:\n{http_yaml}"));
    let run = check_json(&file, &[], &[]);
    let row = run.row("probe");
    (run.code, row, run)
}

fn assert_fails_with(http_yaml: &str, needle: &str) {
    let (code, row, run) = one(http_yaml, "5s");
    assert_eq!(code, 1, "{}", run.all());
    assert_eq!(row["ok"], false, "{}", run.all());
    let detail = row["detail"].as_str().expect("detail");
    assert!(detail.contains(needle), "detail {detail:?} should contain {needle:?}");
}

#[test]
fn status_mismatch_names_the_code_and_the_accepted_list() {
    let url = format!("{}/status/503", hostile().base);
    assert_fails_with(
        &format!("      url: {url}\n      expect: {{ status: [200, 204] }}\n"),
        "status 503 not in [200, 204] (body: \"upstream down\")",
    );
}

#[test]
fn json_mismatch_names_path_value_and_expectation() {
    let url = format!("{}/json-status-down", hostile().base);
    assert_fails_with(
        &format!("      url: {url}\n      expect: {{ json: {{ \"$.status\": \"OK\" }} }}\n"),
        r#"$.status is "DOWN", expected "OK""#,
    );
}

#[test]
fn broken_json_is_explained() {
    let url = format!("{}/json-broken", hostile().base);
    assert_fails_with(
        &format!("      url: {url}\n      expect: {{ json_exists: [\"$.status\"] }}\n"),
        "body is not JSON",
    );
}

#[test]
fn refused_connection_is_named() {
    let port = crate::support::free_port();
    assert_fails_with(
        &format!("      url: http://127.0.0.1:{port}/health\n"),
        &format!("connection refused by 127.0.0.1:{port}"),
    );
}

#[test]
fn dns_failure_is_named() {
    assert_fails_with("      url: http://no-such-host.invalid/health\n", "DNS lookup of no-such-host.invalid failed");
}

#[test]
fn a_listener_that_never_answers_fails_within_timeout_plus_one_second() {
    let url = format!("http://{}/health", hostile().silent);
    let (code, row, run) = one(&format!("      url: {url}\n"), "2s");
    assert_eq!(code, 1, "{}", run.all());
    let detail = row["detail"].as_str().unwrap();
    assert!(detail.contains("timed out after") && detail.contains("waiting for the response headers"), "{detail}");
    let latency = row["latency_ms"].as_u64().unwrap();
    assert!((2000..3000).contains(&latency), "probe took {latency} ms for a 2s timeout");
    assert!(run.elapsed.as_millis() < 2000 + 1000 + 1500, "the whole command took {:?}", run.elapsed);
}

#[test]
fn a_trickling_body_hits_the_same_deadline() {
    let url = format!("{}/slow-body", hostile().base);
    let (code, row, run) = one(&format!("      url: {url}\n"), "2s");
    assert_eq!(code, 1, "{}", run.all());
    assert!(row["detail"].as_str().unwrap().contains("while reading the response body"), "{}", run.all());
    assert!(row["latency_ms"].as_u64().unwrap() < 3000);
}

#[test]
fn a_5_mb_body_fails_on_the_cap_before_reading_it() {
    let url = format!("{}/big", hostile().base);
    assert_fails_with(&format!("      url: {url}\n"), "is 4.8 MiB, over the 1.0 MiB cap (body_limit); not read");
}

#[test]
fn a_5_mb_body_without_length_stops_at_the_cap() {
    let url = format!("{}/big-chunked", hostile().base);
    assert_fails_with(&format!("      url: {url}\n"), "larger than the 1.0 MiB cap (body_limit); stopped reading");
}

#[test]
fn the_cap_is_configurable() {
    let url = format!("{}/big", hostile().base);
    let (code, row, run) = one(&format!("      url: {url}\n      body_limit: 8MiB\n"), "5s");
    assert_eq!(code, 0, "{}", run.all());
    assert_eq!(row["ok"], true);
}

#[test]
fn redirects_are_followed_by_default_and_reported_when_not() {
    let url = format!("{}/redirect", hostile().base);
    let (code, _, run) = one(&format!("      url: {url}\n      expect: {{ body_contains: arrived }}\n"), "5s");
    assert_eq!(code, 0, "{}", run.all());
    assert_fails_with(
        &format!("      url: {url}\n      follow_redirects: false\n"),
        "status 302 not in [2xx] (redirect to /elsewhere not followed)",
    );
}

#[test]
fn a_trusted_certificate_passes_and_reports_its_expiry() {
    let t = tls();
    let (code, row, run) = one(
        &format!(
            "      url: {}\n      tls: {{ ca_file: {} }}\n      expect: {{ cert_valid_for: 14d }}\n",
            t.valid,
            t.ca_file.display()
        ),
        "5s",
    );
    assert_eq!(code, 0, "{}", run.all());
    assert!(row["cert_expires_at"].as_str().is_some(), "{}", run.all());
}

#[test]
fn a_certificate_expiring_soon_fails_cert_valid_for() {
    let t = tls();
    assert_fails_with(
        &format!(
            "      url: {}\n      tls: {{ ca_file: {} }}\n      expect: {{ cert_valid_for: 14d }}\n",
            t.expiring,
            t.ca_file.display()
        ),
        "less than the required 14d",
    );
}

#[test]
fn an_expired_certificate_is_named() {
    let t = tls();
    assert_fails_with(
        &format!("      url: {}\n      tls: {{ ca_file: {} }}\n", t.expired, t.ca_file.display()),
        "TLS: certificate expired on",
    );
}

#[test]
fn a_hostname_mismatch_is_named() {
    let t = tls();
    assert_fails_with(
        &format!("      url: {}\n      tls: {{ ca_file: {} }}\n", t.wrong_host, t.ca_file.display()),
        "TLS: hostname mismatch: certificate is not valid for 127.0.0.1",
    );
}

#[test]
fn an_unknown_issuer_is_named() {
    let t = tls();
    assert_fails_with(
        &format!("      url: {}\n      tls: {{ ca_file: {} }}\n", t.unknown_issuer, t.ca_file.display()),
        "TLS: certificate signed by an unknown issuer",
    );
}

#[test]
fn a_self_signed_certificate_is_named() {
    let t = tls();
    assert_fails_with(&format!("      url: {}\n", t.self_signed), "TLS: certificate is self-signed");
}

#[test]
fn insecure_skip_verify_accepts_but_still_measures_expiry() {
    let t = tls();
    let (code, row, run) =
        one(&format!("      url: {}\n      tls: {{ insecure_skip_verify: true }}\n", t.self_signed), "5s");
    assert_eq!(code, 0, "{}", run.all());
    assert!(row["cert_expires_at"].as_str().is_some());
}

#[test]
fn plain_http_on_an_https_url_is_explained() {
    let base = hostile().base.replace("http://", "https://");
    assert_fails_with(&format!("      url: {base}/status/503\n"), "did not answer with TLS");
}
