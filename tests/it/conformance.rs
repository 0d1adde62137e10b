//! Conformance with the real Prometheus: the same rules and input series go through our
//! evaluator and through `promtool test rules` (Prometheus 2.42 from Debian). Our engine runs
//! every evaluation tick like promtool; the alerts it has firing at each checked time become
//! promtool's `exp_alerts` — labels and rendered annotations — and promtool must agree,
//! including where nothing fires. Covers every preset rule and scenarios built to probe the
//! edges: steps, ramps, gaps, staleness, counter resets, `for` boundaries, `keep_firing_for`,
//! aggregations, histogram quantiles, vector matching, set operators, absent, offset,
//! functions and Go number formatting in templates.

use mxwarden::model::Labels;
use mxwarden::model::ServiceKind;
use mxwarden::rule::{AlertRule, RuleDef, RuleEngine};
use mxwarden::series::{SeriesStore, stale};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

const MINUTE: i64 = 60_000;

struct Scenario {
    name: String,
    rules: Vec<RuleDef>,
    series: Vec<(String, String)>,
    eval_minutes: Vec<i64>,
}

fn rule(alert: &str, expr: &str, for_m: i64, keep_m: i64, summary: &str) -> RuleDef {
    RuleDef {
        alert: alert.into(),
        expr: expr.into(),
        for_ms: for_m * MINUTE,
        keep_firing_for_ms: keep_m * MINUTE,
        labels: [("severity".to_string(), "warning".to_string())].into_iter().collect(),
        annotations: if summary.is_empty() {
            BTreeMap::new()
        } else {
            [("summary".to_string(), summary.to_string())].into_iter().collect()
        },
        origin: "conformance".into(),
    }
}

fn scenario(name: &str, rules: Vec<RuleDef>, series: &[(&str, &str)], eval_minutes: &[i64]) -> Scenario {
    Scenario {
        name: name.into(),
        rules,
        series: series.iter().map(|(s, v)| (s.to_string(), v.to_string())).collect(),
        eval_minutes: eval_minutes.to_vec(),
    }
}

/// Expands promtool's value notation: `a+bxn`, `a-bxn`, `axn`, `_`, `_xn`, `stale`.
fn expand(values: &str) -> Vec<Option<f64>> {
    let mut out = Vec::new();
    for token in values.split_whitespace() {
        if token == "stale" {
            out.push(Some(stale()));
            continue;
        }
        if let Some(rest) = token.strip_prefix('_') {
            let n = rest.strip_prefix('x').map_or(1, |n| n.parse::<usize>().expect("count"));
            out.extend(std::iter::repeat_n(None, n));
            continue;
        }
        let Some((head, count)) = token.split_once('x') else {
            out.push(Some(token.parse().expect("number")));
            continue;
        };
        let count: usize = count.parse().expect("count");
        let (start, step) = match head.rfind(['+', '-']).filter(|&i| i > 0 && !head[..i].ends_with(['e', 'E'])) {
            Some(i) => {
                let step: f64 = head[i + 1..].parse().expect("step");
                (head[..i].parse::<f64>().expect("start"), if &head[i..=i] == "-" { -step } else { step })
            }
            None => (head.parse::<f64>().expect("start"), 0.0),
        };
        for k in 0..=count {
            out.push(Some(start + step * k as f64));
        }
    }
    out
}

/// `name{a="b"}` → labels with `__name__`.
fn selector_labels(selector: &str) -> Labels {
    let expr = promql_parser::parser::parse(selector).expect("a series selector");
    let promql_parser::parser::Expr::VectorSelector(vs) = expr else { panic!("{selector} is not a selector") };
    let mut labels = Labels::new();
    for m in &vs.matchers.matchers {
        labels.insert(m.name.clone(), m.value.clone());
    }
    if let Some(name) = vs.name {
        labels.insert("__name__".into(), name);
    }
    labels
}

/// Our firing alerts per (eval minute, alert name): labels without alertname, annotations.
type Firing = BTreeMap<(i64, String), Vec<(Labels, BTreeMap<String, String>)>>;

fn run_ours(s: &Scenario) -> Firing {
    let mut store = SeriesStore::new(i64::MAX / 4, 100_000);
    for (selector, values) in &s.series {
        let labels = selector_labels(selector);
        for (i, v) in expand(values).into_iter().enumerate() {
            if let Some(v) = v {
                store.append(labels.clone(), i as i64 * MINUTE, v);
            }
        }
    }
    let rules: Vec<AlertRule> = s.rules.iter().map(|d| AlertRule::compile(d.clone()).expect("rule compiles")).collect();
    let mut engine = RuleEngine::new(rules);
    let last = *s.eval_minutes.iter().max().unwrap();
    let mut firing = Firing::new();
    for minute in 0..=last {
        let evaluation = engine.evaluate(&store, minute * MINUTE);
        assert!(evaluation.errors.is_empty(), "{}: evaluation errors {:?}", s.name, evaluation.errors);
        if !s.eval_minutes.contains(&minute) {
            continue;
        }
        for r in &s.rules {
            firing.entry((minute, r.alert.clone())).or_default();
        }
        for a in evaluation.alerts.into_iter().filter(|a| a.state == mxwarden::alert::Phase::Firing) {
            let mut labels = a.labels.clone();
            let name = labels.remove("alertname").unwrap();
            firing.entry((minute, name)).or_default().push((labels, a.annotations));
        }
    }
    firing
}

fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn write_files(dir: &Path, index: usize, s: &Scenario, firing: &Firing) -> std::path::PathBuf {
    let mut rules = String::from("groups:\n  - name: conformance\n    rules:\n");
    for r in &s.rules {
        let _ = writeln!(rules, "      - alert: {}\n        expr: {}", r.alert, yaml_str(&r.expr));
        if r.for_ms > 0 {
            let _ = writeln!(rules, "        for: {}m", r.for_ms / MINUTE);
        }
        if r.keep_firing_for_ms > 0 {
            let _ = writeln!(rules, "        keep_firing_for: {}m", r.keep_firing_for_ms / MINUTE);
        }
        let _ = writeln!(rules, "        labels: {}", serde_json::to_string(&r.labels).unwrap());
        let _ = writeln!(rules, "        annotations: {}", serde_json::to_string(&r.annotations).unwrap());
    }
    let rule_file = dir.join(format!("rules-{index}.yml"));
    std::fs::write(&rule_file, rules).unwrap();
    let mut test = format!(
        "rule_files: [{}]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n",
        yaml_str(rule_file.to_str().unwrap())
    );
    for (selector, values) in &s.series {
        let _ = writeln!(test, "      - series: {}\n        values: {}", yaml_str(selector), yaml_str(values));
    }
    test.push_str("    alert_rule_test:\n");
    for ((minute, alert), alerts) in firing {
        let _ = writeln!(test, "      - eval_time: {minute}m\n        alertname: {alert}\n        exp_alerts:");
        if alerts.is_empty() {
            test.truncate(test.len() - 1);
            test.push_str(" []\n");
        }
        for (labels, annotations) in alerts {
            let _ = writeln!(test, "          - exp_labels: {}", serde_json::to_string(labels).unwrap());
            let _ = writeln!(test, "            exp_annotations: {}", serde_json::to_string(annotations).unwrap());
        }
    }
    let test_file = dir.join(format!("test-{index}-{}.yml", s.name));
    std::fs::write(&test_file, test).unwrap();
    test_file
}

fn preset_scenarios() -> Vec<Scenario> {
    let synapse = mxwarden::preset::rules::for_service(ServiceKind::Synapse, "synapse", &BTreeMap::new());
    let mas = mxwarden::preset::rules::for_service(ServiceKind::Mas, "mas", &BTreeMap::new());
    let pick = |rules: &[RuleDef], name: &str| {
        vec![rules.iter().find(|r| r.alert == name).unwrap_or_else(|| panic!("preset {name}")).clone()]
    };
    let i = r#"instance="synapse:9000",server_name="hs.example",service="synapse""#;
    vec![
        scenario(
            "synapse-memory-high",
            pick(&synapse, "SynapseMemoryHigh"),
            &[(&format!("process_resident_memory_bytes{{{i}}}"), "400000000+10000000x30")],
            &[5, 9, 13, 14, 20, 30],
        ),
        scenario(
            "synapse-memory-critical",
            pick(&synapse, "SynapseMemoryCritical"),
            &[(&format!("process_resident_memory_bytes{{{i}}}"), "500000000+10000000x10 400000000x10")],
            &[2, 4, 6, 12, 20],
        ),
        scenario(
            "synapse-cpu",
            pick(&synapse, "SynapseCpuSustained"),
            &[(&format!("process_cpu_seconds_total{{{i}}}"), "0+54x40 2160+10x20")],
            &[10, 15, 16, 25, 40, 50, 60],
        ),
        scenario(
            "synapse-db-pool",
            pick(&synapse, "SynapseDbPoolSaturated"),
            &[
                (&format!("synapse_threadpool_working_threads{{{i},name=\"database-master\"}}"), "5x5 10x20 2x5"),
                (&format!("synapse_threadpool_max_threads{{{i},name=\"database-master\"}}"), "10x30"),
                (&format!("synapse_threadpool_working_threads{{{i},name=\"default\"}}"), "10x30"),
                (&format!("synapse_threadpool_max_threads{{{i},name=\"default\"}}"), "10x30"),
            ],
            &[5, 10, 11, 20, 28],
        ),
        scenario(
            "synapse-federation-lag",
            pick(&synapse, "SynapseFederationLag"),
            &[
                (&format!("synapse_event_persisted_position{{{i}}}"), "100x5 200x20"),
                (&format!("synapse_event_processing_positions{{{i},name=\"federation_sender\"}}"), "100x5 150x20"),
                (&format!("synapse_event_processing_positions{{{i},name=\"presence\"}}"), "0x25"),
                (&format!("synapse_event_processing_last_ts{{{i},name=\"federation_sender\"}}"), "0x25"),
            ],
            &[3, 7, 8, 15],
        ),
        scenario(
            "synapse-event-lag",
            pick(&synapse, "SynapseEventProcessingLag"),
            &[
                (&format!("synapse_event_persisted_position{{{i}}}"), "100x20"),
                (&format!("synapse_event_processing_positions{{{i},name=\"appservice_sender\"}}"), "90x20"),
                (&format!("synapse_event_processing_last_ts{{{i},name=\"appservice_sender\"}}"), "0+30000x20"),
            ],
            &[2, 3, 4, 5, 10],
        ),
        scenario(
            "mas-failed-logins",
            pick(&mas, "MasFailedLogins"),
            &[
                (
                    r#"mas_user_password_login_attempt_total{instance="mas:8081",result="error",service="mas"}"#,
                    "0+5x10 50+30x20",
                ),
                (
                    r#"mas_user_password_login_attempt_total{instance="mas:8081",result="success",service="mas"}"#,
                    "0+100x30",
                ),
            ],
            &[5, 10, 14, 20, 30],
        ),
        scenario(
            "mas-token-errors",
            pick(&mas, "MasTokenErrors"),
            &[
                (
                    r#"http_server_duration_count{http_route="/oauth2/token",http_response_status_code="500",instance="mas:8081",service="mas"}"#,
                    "0x5 0+3x20",
                ),
                (
                    r#"http_server_duration_count{http_route="/oauth2/token",http_response_status_code="200",instance="mas:8081",service="mas"}"#,
                    "0+100x25",
                ),
            ],
            &[5, 8, 12, 25],
        ),
    ]
}

fn edge_scenarios() -> Vec<Scenario> {
    vec![
        scenario(
            "step-and-for-boundary",
            vec![rule("Step", "x > 1", 3, 0, "{{ $labels.instance }} is {{ $value }}")],
            &[(r#"x{instance="a"}"#, "0 0 5 5 5 5 5 0 0"), (r#"x{instance="b"}"#, "5 5 5 0 5 5 5 5 5")],
            &[2, 4, 5, 6, 7, 8],
        ),
        scenario(
            "keep-firing-for",
            vec![rule("Flap", "x > 1", 0, 2, "")],
            &[("x", "5 0 5 0 0 0 0 5")],
            &[0, 1, 2, 3, 4, 5, 6, 7],
        ),
        scenario(
            "gaps-and-lookback",
            vec![rule("Seen", "x == 1", 0, 0, "")],
            &[("x", "1 _ _ _ _ _ _ 1 _x3")],
            &[3, 5, 6, 7, 9, 10],
        ),
        scenario(
            "staleness",
            vec![rule("Seen", "x == 1", 0, 0, ""), rule("Absent", "absent(x)", 0, 0, "")],
            &[("x", "1 1 stale 1 _ stale")],
            &[1, 2, 3, 4, 5, 6],
        ),
        scenario(
            "counter-reset",
            vec![
                rule("Inc", "increase(c_total[3m]) > 10", 0, 0, "{{ $value }}"),
                rule("Rate", "rate(c_total[5m]) > 0.2", 0, 0, "{{ $value | humanize }}"),
                rule("IRate", "irate(c_total[5m]) > 0.1", 0, 0, "{{ $value }}"),
                rule("Delta", "delta(g[4m]) < -2", 0, 0, "{{ $value }}"),
            ],
            &[("c_total", "0 10 20 5 15 30 2 4"), ("g", "10 9 8 4 4 1 9")],
            &[1, 2, 3, 4, 5, 6, 7],
        ),
        scenario(
            "aggregations",
            vec![
                rule("SumBy", "sum by (job) (x) > 10", 0, 0, "{{ $labels.job }} {{ $value }}"),
                rule("CountWithout", "count without (instance) (x) >= 2", 0, 0, ""),
                rule("Top", "topk(1, x) > 0", 0, 0, "{{ $labels.instance }}"),
                rule("Bottom", "bottomk(2, x)", 0, 0, ""),
                // promtool loads input series in map order, so Prometheus itself averages across
                // series in a random order: show such values to 4 digits (humanize).
                rule("Avg", "avg(x) > 3", 0, 0, "{{ $value | humanize }}"),
                rule("Quantile", "quantile(0.5, x) >= 4", 0, 0, "{{ $value }}"),
                rule("MinMax", "max(x) - min(x) > 5", 0, 0, "{{ $value }}"),
            ],
            &[
                (r#"x{job="a",instance="1"}"#, "1 2 8"),
                // Distinct values at each step: which of two equal values topk keeps depends on
                // that random order too.
                (r#"x{job="a",instance="2"}"#, "3 9 7"),
                (r#"x{job="b",instance="3"}"#, "7 1 2"),
            ],
            &[0, 1, 2],
        ),
        scenario(
            "histogram-quantile",
            vec![
                rule(
                    "P90",
                    "histogram_quantile(0.9, sum by (le) (rate(h_bucket[5m]))) > 0.1",
                    0,
                    0,
                    "p90 {{ $value | humanizeDuration }}",
                ),
                rule("P50", "histogram_quantile(0.5, rate(h_bucket[5m])) > 0", 0, 0, "{{ $value }}"),
            ],
            &[
                (r#"h_bucket{le="0.05"}"#, "0+10x10"),
                (r#"h_bucket{le="0.1"}"#, "0+12x10"),
                (r#"h_bucket{le="0.5"}"#, "0+20x10"),
                (r#"h_bucket{le="+Inf"}"#, "0+21x10"),
            ],
            &[2, 5, 10],
        ),
        scenario(
            "vector-matching",
            vec![
                rule(
                    "Ratio",
                    "used / on (pool) group_left (owner) max_ > 0.5",
                    0,
                    0,
                    "{{ $labels.pool }} {{ $labels.owner }} {{ $value | humanizePercentage }}",
                ),
                rule("Ignoring", "a - ignoring (kind) b > 0", 0, 0, "{{ $value }}"),
                rule("Bool", "(a > bool 3) == 1", 0, 0, ""),
            ],
            &[
                (r#"used{pool="p1",conn="1"}"#, "6 1"),
                (r#"used{pool="p1",conn="2"}"#, "2 1"),
                (r#"max_{pool="p1",owner="ops"}"#, "10 10"),
                (r#"a{kind="x",j="1"}"#, "5 1"),
                (r#"b{kind="y",j="1"}"#, "2 2"),
            ],
            &[0, 1],
        ),
        scenario(
            "set-operators",
            vec![
                rule("And", "x > 1 and on (i) y", 0, 0, ""),
                rule("Or", "x > 5 or y > 5", 0, 0, "{{ $value }}"),
                rule("Unless", "x unless y", 0, 0, ""),
            ],
            &[(r#"x{i="1"}"#, "2 9"), (r#"x{i="2"}"#, "3 3"), (r#"y{i="1"}"#, "1 7")],
            &[0, 1],
        ),
        scenario(
            "absent-offset-functions",
            vec![
                rule("Missing", r#"absent(nope{job="ghost"})"#, 0, 0, "{{ $labels.job }}"),
                rule("MissingRange", "absent_over_time(x[2m])", 0, 0, ""),
                rule("Offset", "x offset 2m > 3", 0, 0, "{{ $value }}"),
                rule("Clamp", "clamp_max(abs(x - 10), 4) == 4", 0, 0, "{{ $value }}"),
                rule("Deriv", "deriv(x[4m]) > 0.5", 0, 0, "{{ $value }}"),
                rule(
                    "OverTime",
                    "avg_over_time(x[3m]) > 3 and max_over_time(x[3m]) < 9 and min_over_time(x[3m]) > 0",
                    0,
                    0,
                    "{{ $value }}",
                ),
                rule("Count", "count_over_time(x[5m]) >= 4", 0, 0, "{{ $value }}"),
                rule("Last", "last_over_time(x[2m]) > 4", 0, 0, "{{ $value }}"),
                rule("Time", "vector(time()) > 200", 0, 0, "{{ $value }}"),
            ],
            &[("x", "1 2 3 4 5 6 _ _ _ 1")],
            &[0, 2, 3, 4, 5, 7, 9],
        ),
        scenario(
            "go-number-formats",
            vec![rule(
                "Formats",
                "x > 0",
                0,
                0,
                "v={{ $value }} h={{ $value | humanize }} b={{ humanize1024 $value }} p={{ $value | humanizePercentage }} d={{ $value | humanizeDuration }} f={{ printf \"%.2f\" $value }}",
            )],
            &[
                (r#"x{k="a"}"#, "471859200"),
                (r#"x{k="b"}"#, "0.000012345"),
                (r#"x{k="c"}"#, "1234567"),
                (r#"x{k="d"}"#, "0.25"),
                (r#"x{k="e"}"#, "93784"),
                (r#"x{k="f"}"#, "100000"),
            ],
            &[0],
        ),
    ]
}

/// A seeded generator of extra rule/series combinations.
fn generated_scenarios() -> Vec<Scenario> {
    let mut seed: u64 = 0x00c0_ffee;
    let mut next = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        seed >> 33
    };
    let exprs = [
        "rate(c[3m]) > 0.05",
        "increase(c[4m]) >= 5",
        "sum(rate(c[2m])) > 0.1",
        "g > 4",
        "avg_over_time(g[3m]) > 3",
        "max by (j) (g) > 5",
        "delta(g[3m]) > 1",
        "g - g offset 1m > 0",
        "count(g > 2) > 1",
        "irate(c[5m]) > 0.1",
    ];
    (0..30)
        .map(|n| {
            let expr = exprs[(next() % exprs.len() as u64) as usize];
            let for_m = (next() % 3) as i64;
            let keep_m = (next() % 2) as i64 * (next() % 3) as i64;
            let mut series = Vec::new();
            for j in 0..2 {
                let mut counter = 0u64;
                let c: Vec<String> = (0..12)
                    .map(|_| match next() % 10 {
                        0 => "_".to_string(),
                        1 => {
                            counter = next() % 3;
                            counter.to_string()
                        }
                        _ => {
                            counter += next() % 8;
                            counter.to_string()
                        }
                    })
                    .collect();
                let g: Vec<String> =
                    (0..12).map(|_| if next() % 9 == 0 { "_".into() } else { (next() % 8).to_string() }).collect();
                series.push((format!("c{{j=\"{j}\"}}"), c.join(" ")));
                series.push((format!("g{{j=\"{j}\"}}"), g.join(" ")));
            }
            Scenario {
                name: format!("generated-{n}"),
                rules: vec![rule(&format!("Gen{n}"), expr, for_m, keep_m, "{{ $value }}")],
                series,
                eval_minutes: (0..12).collect(),
            }
        })
        .collect()
}

#[test]
fn our_alerts_match_promtool_for_every_preset_rule_and_edge_case() {
    assert!(
        std::process::Command::new("promtool").arg("--version").output().is_ok_and(|o| o.status.success()),
        "promtool is missing: run scripts/install-test-deps.sh"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let (mut fired, mut quiet) = (0, 0);
    let scenarios: Vec<Scenario> =
        preset_scenarios().into_iter().chain(edge_scenarios()).chain(generated_scenarios()).collect();
    for (index, s) in scenarios.iter().enumerate() {
        let firing = run_ours(s);
        let any = firing.values().any(|a| !a.is_empty());
        if s.name.starts_with("synapse") || s.name.starts_with("mas") {
            assert!(any, "{}: the preset rule must fire somewhere in its scenario", s.name);
            assert!(firing.values().any(|a| a.is_empty()), "{}: and be quiet somewhere", s.name);
        }
        fired += firing.values().filter(|a| !a.is_empty()).count();
        quiet += firing.values().filter(|a| a.is_empty()).count();
        files.push(write_files(dir.path(), index, s, &firing));
    }
    assert!(fired > 50 && quiet > 50, "checks with alerts: {fired}, without: {quiet}");
    let out =
        std::process::Command::new("promtool").args(["test", "rules"]).args(&files).output().expect("run promtool");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        let failing: Vec<&str> = text.lines().filter(|l| l.contains("FAILED") || l.contains("test-")).collect();
        panic!("promtool disagrees:\n{text}\n(files kept in {})\n{failing:?}", dir.keep().display());
    }
    assert_eq!(text.matches("SUCCESS").count(), files.len(), "{text}");
}

#[test]
fn exported_rules_pass_promtool_check_rules() {
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
    assert!(text.contains("SUCCESS: 12 rules found"), "6 Synapse + 2 MAS + 3 Down + 1 config rule: {text}");
    assert!(run.stdout.contains("> 1887436800"), "the threshold override is in the expression");
}
