//! Conformance of mxwarden's rules with the real Prometheus (`promtool`, Prometheus 2.42 as
//! Debian ships it).
//!
//! Each scenario — rules plus input series in promtool's notation — runs through our
//! `RuleEngine` tick by tick exactly as promtool drives Prometheus's rule manager (samples at
//! `i * interval`, one evaluation every `evaluation_interval` from 0). The alerts *we* have
//! firing at each checked time, with their labels and rendered annotations, become promtool's
//! `exp_alerts`, including the times where nothing fires; `promtool test rules` passing means
//! Prometheus agrees on which alerts fire, when, with which labels and which annotation text
//! (so also on `$value` to the last bit, as Go prints it, and on Go's number formatting).
//!
//! * our reading of promtool's input notation (`notation.rs`);
//! * every preset rule (`presets.rs`), firing and quiet, on real metric names and labels;
//! * hand-written edge cases (`edges.rs`);
//! * the classic alert shapes and seeded random rules and series (`generated.rs`;
//!   `CONFORMANCE_SEED`, `CONFORMANCE_CASES`);
//! * the rules file `mxwarden rules export` writes, through `promtool check rules`.
//!
//! Each scenario also states what our side must see, so nothing passes vacuously; a few
//! state instead that a rule's evaluation fails (many-to-many matching, duplicate alert
//! labels), and then both sides must fail at the same tick. A failure prints promtool's full
//! output and the generated files (kept on disk). promtool must be installed
//! (`scripts/install-test-deps.sh`); the tests fail, never skip, without it.
//!
//! One property of promtool shapes the data: it creates the input series of one evaluation
//! tick in random order (a Go map), and Prometheus aggregates series in creation order, so a
//! float sum or mean over three or more series, an `avg`/`stddev` over two, or a tie in
//! `topk`, could come out differently from run to run. Where that matters the series are
//! created one tick apart, in label order (`Scenario::staggered`, and the generator does the
//! same); `histogram_quantile` returns its groups in random order too, so the generator never
//! feeds its output to an order-sensitive aggregation.
//!
//! Run: `cargo test --test it conformance`.

mod edges;
mod generated;
mod harness;
mod notation;
mod presets;

use harness::{MIN, check_batch, duration, require_promtool};
use mxwarden::series::is_stale;
use std::collections::BTreeSet;
use std::fmt::Write;

const DEFAULT_SEED: u64 = 20_240_611;
const DEFAULT_CASES: usize = 60;

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// Our reading of the `values` notation is promtool's: every slot of handwritten and
/// generated value strings, looked up through a 5m lookback, gives promtool's sample.
#[test]
fn input_notation_matches_promtool() {
    require_promtool();
    let mut values: Vec<String> = [
        "0.1+0.1x10 stale 5 _x2 7 3x2 1e3-2x2 Inf -Inf",
        "-5+2.5x4 _ _ 1e-3+1e-3x3",
        "1 _x7 2 stale _x3 4",
        "0.3+0.7x25",
        "5.09+13.5x20",
        "20-0.25x20",
        "1.30228224e+08x2 4e8+1e7x14",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for s in generated::scenarios(DEFAULT_SEED, 6) {
        values.extend(s.series.into_iter().map(|(_, v)| v));
    }
    let slots: Vec<Vec<notation::Slot>> = values.iter().map(|v| notation::expand(v)).collect();
    let ticks = slots.iter().map(Vec::len).max().unwrap() as i64 + 6;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("empty.yml");
    std::fs::write(&rules, "groups: []\n").unwrap();
    let mut test =
        format!("rule_files: [{:?}]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n", rules);
    for (i, v) in values.iter().enumerate() {
        let _ = writeln!(test, "      - series: 'n{i}'\n        values: {}", serde_json::to_string(v).unwrap());
    }
    test.push_str("    promql_expr_test:\n");
    let yaml_float = |v: f64| match v {
        f64::INFINITY => ".inf".to_string(),
        f64::NEG_INFINITY => "-.inf".to_string(),
        v => format!("{v:?}"),
    };
    let mut checked = 0;
    for t in 0..ticks {
        // NaN is left out (`>= -Inf` drops it): it never equals itself in a comparison.
        let _ = writeln!(
            test,
            "      - expr: '{{__name__=~\"n.*\"}} >= -Inf'\n        eval_time: {}\n        exp_samples:",
            duration(t * MIN)
        );
        let mut any = false;
        for (i, s) in slots.iter().enumerate() {
            let latest = (0..=t.min(s.len() as i64 - 1)).rev().find_map(|j| s[j as usize].map(|v| (j, v)));
            if let Some((j, v)) = latest
                && t - j <= 5
                && !is_stale(v)
                && !v.is_nan()
            {
                let _ = writeln!(test, "          - labels: 'n{i}'\n            value: {}", yaml_float(v));
                any = true;
                checked += 1;
            }
        }
        if !any {
            test.truncate(test.len() - 1);
            test.push_str(" []\n");
        }
    }
    let file = dir.path().join("notation.yml");
    std::fs::write(&file, &test).unwrap();
    let out = std::process::Command::new("promtool").args(["test", "rules"]).arg(&file).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && text.contains("SUCCESS"),
        "promtool reads the notation differently:\n{text}\n{test}"
    );
    assert!(checked > 500, "only {checked} samples compared");
}

#[test]
fn every_preset_rule_agrees_with_promtool() {
    let scenarios = presets::scenarios();
    let covered: BTreeSet<String> = scenarios.iter().flat_map(|s| s.rules.iter().map(|r| r.alert.clone())).collect();
    let missing: Vec<String> = presets::all_preset_alerts().difference(&covered).cloned().collect();
    assert!(
        missing.is_empty(),
        "preset rules without a conformance scenario (add one to tests/it/conformance/presets.rs): {missing:?}"
    );
    for s in &scenarios {
        let fires = s.expects.iter().any(|e| matches!(e, harness::Expect::Fires { .. }));
        let quiet = s.expects.iter().any(|e| matches!(e, harness::Expect::Quiet { .. }));
        assert!(fires && quiet, "{}: a preset scenario must expect firing and quiet times", s.name);
    }
    check_batch("presets", &scenarios).unwrap_or_else(|report| panic!("{report}"));
}

#[test]
fn edge_cases_agree_with_promtool() {
    let scenarios = edges::scenarios();
    for s in &scenarios {
        assert!(!s.expects.is_empty() || s.error.is_some(), "{}: says nothing about what it expects", s.name);
    }
    let tally = check_batch("edges", &scenarios).unwrap_or_else(|report| panic!("{report}"));
    assert!(tally.firing_checks > 100 && tally.quiet_checks > 50, "{tally:?}");
}

#[test]
fn generated_rules_agree_with_promtool() {
    let seed = env_number("CONFORMANCE_SEED", DEFAULT_SEED);
    let cases = env_number("CONFORMANCE_CASES", DEFAULT_CASES);
    let scenarios: Vec<_> = generated::classics(seed).into_iter().chain(generated::scenarios(seed, cases)).collect();
    let mut total = harness::Tally::default();
    let mut reports = Vec::new();
    for (n, batch) in scenarios.chunks(40).enumerate() {
        match check_batch(&format!("generated-seed{seed}-batch{n}"), batch) {
            Ok(t) => {
                total.firing_checks += t.firing_checks;
                total.quiet_checks += t.quiet_checks;
                total.alerts += t.alerts;
            }
            Err(report) => reports.push(report),
        }
    }
    assert!(reports.is_empty(), "{}", reports.join("\n\n"));
    // Not vacuous: both outcomes occur often.
    assert!(
        total.firing_checks >= cases * 3 && total.quiet_checks >= cases * 3,
        "seed {seed}: too one-sided to test much: {total:?}"
    );
}

/// What `mxwarden rules export` writes — preset rules with a threshold override, the `<Kind>Down`
/// rules and a rule from the config — is a rules file Prometheus loads as it is.
#[test]
fn exported_rules_pass_promtool_check_rules() {
    require_promtool();
    let file = crate::cli::config(
        r#"services:
  synapse: { kind: synapse, url: "http://127.0.0.1:1", metrics_url: "http://127.0.0.1:1/m", thresholds: { memory_warning: 1800MiB } }
  mas: { kind: mas, url: "http://127.0.0.1:1", metrics_url: "http://127.0.0.1:1/m" }
  tasks: { kind: vikunja, url: "http://127.0.0.1:1" }
rules:
  - alert: SynapseFederationQueueBacklog
    expr: sum(synapse_federation_transaction_queue_pending_pdus) > 500
    for: 10m
    keep_firing_for: 5m
    labels: { severity: warning }
    annotations: { summary: "{{ $value }} PDUs waiting to be sent" }
"#,
    );
    let run = crate::cli::run(&["--config", file.path.to_str().unwrap(), "rules", "export"], &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    let exported = file.path.with_file_name("rules.yml");
    std::fs::write(&exported, &run.stdout).unwrap();
    let check =
        std::process::Command::new("promtool").arg("check").arg("rules").arg(&exported).output().expect("run promtool");
    let text = format!("{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
    assert!(check.status.success(), "promtool rejects the export:\n{text}\n{}", run.stdout);
    assert!(
        text.contains("SUCCESS: 13 rules found"),
        "6 Synapse + Synapse's error rate + 2 MAS + 3 Down + 1 config rule: {text}"
    );
    assert!(run.stdout.contains("> 1887436800"), "the threshold override is in the expression");
}
