//! Our exposition parser against Python's `prometheus_client` parser as the oracle: the real
//! Synapse page and a tricky file through `mxwarden scrape --json` (the user's path), and a few
//! hundred generated pages with hostile label values through the library.

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

fn ours_via_lib(text: &str) -> Vec<Value> {
    let number = |v: f64| {
        if v.is_nan() {
            json!("NaN")
        } else if v.is_infinite() {
            json!(if v > 0.0 { "+Inf" } else { "-Inf" })
        } else {
            json!(v)
        }
    };
    mxwarden::expo::parse_samples(text, None)
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
        .samples
        .into_iter()
        .map(|s| {
            let labels: serde_json::Map<String, Value> = s.labels.into_iter().map(|(k, v)| (k, json!(v))).collect();
            json!([s.name, labels, number(s.value), s.timestamp_ms])
        })
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
    assert_same(&ours_via_lib(&body), &python, "live Synapse page");
}

/// A small deterministic generator (no crate needed for a few hundred pages).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
    fn pick_str<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A page of random families with hostile label values, valid text format 0.0.4.
fn generated_page(rng: &mut Lcg) -> String {
    let nasty: &[&str] = &[
        "",
        "plain",
        "quo\"te",
        "back\\slash",
        "new\nline",
        "brace}",
        "comma,=x",
        "ünï ✓",
        "\\n literal",
        "a\\\"b",
        " spaced ",
    ];
    let values = ["0", "1", "-1", "3.25", "1e-09", "-2.5E+10", "NaN", "+Inf", "-Inf", "123456789012", "0.000001"];
    let mut page = String::new();
    for f in 0..(1 + rng.next() % 6) {
        let family = format!("fam_{f}_{}", rng.next() % 1000);
        let kind = *rng.pick(&["gauge", "counter", "histogram", "summary", "untyped", "none"]);
        if rng.next().is_multiple_of(2) {
            page.push_str(&format!("# HELP {family} help with \\\\ and \\n for {kind}\n"));
        }
        if kind != "none" {
            page.push_str(&format!("# TYPE {family} {kind}\n"));
        }
        let names: Vec<String> = match kind {
            "counter" => vec![format!("{family}_total")],
            "histogram" => vec![format!("{family}_bucket"), format!("{family}_sum"), format!("{family}_count")],
            "summary" => vec![family.clone(), format!("{family}_sum"), format!("{family}_count")],
            _ => vec![family.clone()],
        };
        for _ in 0..(rng.next() % 4) {
            for name in &names {
                let mut labels = Vec::new();
                for l in 0..(rng.next() % 3) {
                    labels.push(format!("l{l}=\"{}\"", escape(rng.pick_str(nasty))));
                }
                if name.ends_with("_bucket") {
                    labels.push(format!("le=\"{}\"", rng.pick(&["0.1", "1", "+Inf"])));
                }
                let labels = if labels.is_empty() && rng.next().is_multiple_of(2) {
                    String::new()
                } else {
                    format!("{{{}}}", labels.join(","))
                };
                let ts = if rng.next().is_multiple_of(3) {
                    format!(" {}", 1_700_000_000_000u64 + rng.next() % 1_000_000)
                } else {
                    String::new()
                };
                page.push_str(&format!("{name}{labels} {}{ts}\n", rng.pick(&values)));
            }
        }
        if rng.next().is_multiple_of(3) {
            page.push('\n');
        }
    }
    page
}

#[test]
fn generated_pages_with_hostile_labels_parse_exactly_as_prometheus_client_does() {
    let mut rng = Lcg(0x6d78_7761_7264_656e);
    let dir = tempfile::tempdir().unwrap();
    let pages: Vec<String> = (0..300).map(|_| generated_page(&mut rng)).collect();
    let files: Vec<PathBuf> = pages
        .iter()
        .enumerate()
        .map(|(i, page)| {
            let path = dir.path().join(format!("{i}.prom"));
            std::fs::write(&path, page).unwrap();
            path
        })
        .collect();
    let python = oracle(&files);
    let mut samples = 0;
    for (i, (page, expected)) in pages.iter().zip(&python).enumerate() {
        let ours = ours_via_lib(page);
        samples += ours.len();
        assert_same(&ours, expected, &format!("generated page {i}:\n{page}"));
    }
    assert!(samples > 500, "the generator produced {samples} samples; too few to mean much");
}
