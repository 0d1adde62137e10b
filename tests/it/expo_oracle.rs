//! Our exposition parser against Python's `prometheus_client` parser as the oracle, on the
//! user's path (`mxwarden scrape --json` over HTTP): the recorded Synapse page, a tricky file
//! and a live Synapse's page. The library-level oracle (strictness table, generated hostile
//! pages and their mutations) is `tests/expo_oracle.rs`.

use crate::support::{fakes, services};
use serde_json::{Value, json};
use std::path::PathBuf;

/// Python's view: one list of `[name, labels, value, ts_ms]` per file.
fn oracle(files: &[PathBuf]) -> Vec<Vec<Value>> {
    let python = services::cache().join("venv-tools/bin/python");
    assert!(python.exists(), "{} is missing: run scripts/install-test-deps.sh", python.display());
    let out = std::process::Command::new(python)
        .arg(services::repo().join("tests/data/oracle.py"))
        .args(files)
        .output()
        .expect("run the Python oracle");
    assert!(out.status.success(), "oracle failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Vec<Value>>(l).expect("oracle JSON"))
        .collect()
}

/// `mxwarden scrape --json` on `text` served over HTTP, as `[name, labels, value, ts_ms]`.
fn ours_via_cli(text: String) -> Vec<Value> {
    let base = fakes::serve(axum::Router::new().route("/metrics", axum::routing::get(move || async move { text })));
    let run = crate::cli::run(&["scrape", &format!("{base}/metrics"), "--json"], &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    run.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| json!([s["name"], s["labels"], s["value"], s.get("timestamp_ms").cloned().unwrap_or(Value::Null)]))
        .collect()
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn assert_same(ours: &[Value], python: &[Value], what: &str) {
    assert_eq!(ours.len(), python.len(), "{what}: sample count differs");
    for (i, (o, p)) in ours.iter().zip(python).enumerate() {
        let ok = o[0] == p[0] && o[1] == p[1] && same_value(&o[2], &p[2]) && o[3] == p[3];
        assert!(ok, "{what}: sample {i} differs:\n ours:   {o}\n python: {p}");
    }
}

fn data(name: &str) -> PathBuf {
    services::repo().join("tests/data").join(name)
}

#[test]
fn the_real_synapse_page_parses_exactly_as_prometheus_client_does() {
    let path = data("synapse-metrics-sample.txt");
    let python = oracle(std::slice::from_ref(&path)).remove(0);
    let ours = ours_via_cli(std::fs::read_to_string(&path).unwrap());
    assert_eq!(ours.len(), 2439);
    assert_same(&ours, &python, "synapse sample");
}

#[test]
fn tricky_exposition_text_parses_exactly_as_prometheus_client_does() {
    let path = data("tricky.prom");
    let python = oracle(std::slice::from_ref(&path)).remove(0);
    let ours = ours_via_cli(std::fs::read_to_string(&path).unwrap());
    assert!(ours.len() > 25, "the tricky file has many samples");
    assert_same(&ours, &python, "tricky.prom");
}

#[test]
fn a_live_synapse_scrape_parses_exactly_as_prometheus_client_does() {
    let s = services::shared();
    let body = services::http_get(&s.synapse.metrics_url).expect("Synapse metrics answer").1;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.prom");
    std::fs::write(&path, &body).unwrap();
    let python = oracle(std::slice::from_ref(&path)).remove(0);
    assert_same(&ours_via_cli(body), &python, "live Synapse page");
}
