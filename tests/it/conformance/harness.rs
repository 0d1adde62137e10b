//! The comparison machinery: a `Scenario` (rules, input series in promtool's notation,
//! intervals, checked times, and what we expect our side to see), our engine run over it tick
//! by tick the way promtool runs Prometheus's rule manager, the promtool test and rule files
//! whose `exp_alerts` are *our* firing alerts, and one `promtool test rules` run per batch
//! whose per-file verdicts are mapped back to scenarios.

use super::notation::{expand, selector_labels};
use mxwarden::model::Labels;
use mxwarden::rule::{AlertRule, RuleDef, RuleEngine};
use mxwarden::series::SeriesStore;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One second, ms.
pub const SEC: i64 = 1000;
/// One minute, ms.
pub const MIN: i64 = 60 * SEC;

/// `n` minutes in ms.
pub fn m(n: i64) -> i64 {
    n * MIN
}

/// A rule with `severity: warning` (our engine requires a severity), nothing else.
pub fn rule(alert: &str, expr: &str) -> RuleDef {
    RuleDef {
        alert: alert.into(),
        expr: expr.into(),
        for_ms: 0,
        keep_firing_for_ms: 0,
        labels: [("severity".to_string(), "warning".to_string())].into_iter().collect(),
        annotations: BTreeMap::new(),
        origin: "conformance".into(),
    }
}

/// Chained setters for the parts of a `RuleDef` the scenarios vary.
pub trait RuleExt {
    /// `for`, ms.
    fn hold(self, ms: i64) -> Self;
    /// `keep_firing_for`, ms.
    fn keep(self, ms: i64) -> Self;
    /// One label (a template).
    fn label(self, k: &str, v: &str) -> Self;
    /// One annotation (a template).
    fn note(self, k: &str, v: &str) -> Self;
}

impl RuleExt for RuleDef {
    fn hold(mut self, ms: i64) -> Self {
        self.for_ms = ms;
        self
    }
    fn keep(mut self, ms: i64) -> Self {
        self.keep_firing_for_ms = ms;
        self
    }
    fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.insert(k.into(), v.into());
        self
    }
    fn note(mut self, k: &str, v: &str) -> Self {
        self.annotations.insert(k.into(), v.into());
        self
    }
}

/// Something our side must see, so a scenario cannot pass by testing nothing.
#[derive(Debug, Clone)]
pub enum Expect {
    /// `alert` has exactly `count` firing instances at `at` ms.
    Fires { alert: String, at: i64, count: usize },
    /// `alert` has no firing instance at `at` ms.
    Quiet { alert: String, at: i64 },
}

/// Rules, input series and the times at which firing alerts are compared.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Short name (also in the file name).
    pub name: String,
    /// What it probes, one line.
    pub why: String,
    /// The rules, one group.
    pub rules: Vec<RuleDef>,
    /// `(series selector, values)` in promtool's notation.
    pub series: Vec<(String, String)>,
    /// Spacing of the input samples (promtool's `interval`), ms.
    pub interval: i64,
    /// Rule evaluation interval (promtool's `evaluation_interval`), ms.
    pub eval_interval: i64,
    /// Times at which firing alerts are compared, ms (need not be ticks: promtool compares
    /// the state after the last tick at or before each).
    pub eval_times: Vec<i64>,
    /// What our side must see.
    pub expects: Vec<Expect>,
    /// `(alert, time ms)`: the rule's evaluation must fail first at this tick, in our
    /// engine and in Prometheus (promtool stops at the first failing evaluation).
    pub error: Option<(String, i64)>,
}

impl Scenario {
    /// An empty scenario: 1m intervals, no rules, no series, no times.
    pub fn new(name: &str, why: &str) -> Self {
        Self {
            name: name.into(),
            why: why.into(),
            rules: Vec::new(),
            series: Vec::new(),
            interval: MIN,
            eval_interval: MIN,
            eval_times: Vec::new(),
            expects: Vec::new(),
            error: None,
        }
    }
    /// The evaluation of `alert` must fail first at minute `minute`, here and in Prometheus.
    pub fn fails(mut self, alert: &str, minute: i64) -> Self {
        self.error = Some((alert.into(), m(minute)));
        self.eval_times.push(m(minute));
        self
    }
    /// Adds a rule.
    pub fn rule(mut self, r: RuleDef) -> Self {
        self.rules.push(r);
        self
    }
    /// Adds an input series.
    pub fn series(mut self, selector: &str, values: &str) -> Self {
        self.series.push((selector.into(), values.into()));
        self
    }
    /// Adds series that promtool creates one evaluation tick apart, in this order (which must
    /// be their label order): series `k` gets its first sample at tick `k`. Prometheus's
    /// aggregations run over series in creation order, and promtool creates the series of one
    /// tick in random order, so without this a float sum, mean or tie over several series
    /// could come out differently from run to run. Needs the interval to equal the
    /// evaluation interval.
    pub fn staggered(mut self, series: &[(&str, &str)]) -> Self {
        assert_eq!(self.interval, self.eval_interval, "{}: staggering needs equal intervals", self.name);
        let labels: Vec<_> = series.iter().map(|(sel, _)| super::notation::selector_labels(sel)).collect();
        assert!(labels.windows(2).all(|w| w[0] < w[1]), "{}: staggered series must come in label order", self.name);
        for (k, (selector, values)) in series.iter().enumerate() {
            assert!(
                !matches!(values.split_whitespace().next(), None | Some("_" | "stale")) && !values.starts_with("_x"),
                "{}: a staggered series starts with a sample",
                self.name
            );
            let values = if k == 0 { values.to_string() } else { format!("_x{k} {values}") };
            self.series.push((selector.to_string(), values));
        }
        self
    }
    /// Sets the sample spacing and the evaluation interval, ms.
    pub fn intervals(mut self, interval: i64, eval_interval: i64) -> Self {
        self.interval = interval;
        self.eval_interval = eval_interval;
        self
    }
    /// Checks at these minutes.
    pub fn minutes(mut self, minutes: impl IntoIterator<Item = i64>) -> Self {
        self.eval_times.extend(minutes.into_iter().map(m));
        self
    }
    /// Checks at these times, ms.
    pub fn times(mut self, times: &[i64]) -> Self {
        self.eval_times.extend_from_slice(times);
        self
    }
    /// Our side must have `count` firing `alert`s at `at` ms.
    pub fn fires_at(mut self, alert: &str, at: i64, count: usize) -> Self {
        self.expects.push(Expect::Fires { alert: alert.into(), at, count });
        self
    }
    /// Our side must have `count` firing `alert`s at minute `minute`.
    pub fn fires(self, alert: &str, minute: i64, count: usize) -> Self {
        self.fires_at(alert, m(minute), count)
    }
    /// Our side must have no firing `alert` at `at` ms.
    pub fn quiet_at(mut self, alert: &str, at: i64) -> Self {
        self.expects.push(Expect::Quiet { alert: alert.into(), at });
        self
    }
    /// Our side must have no firing `alert` at minute `minute`.
    pub fn quiet(self, alert: &str, minute: i64) -> Self {
        self.quiet_at(alert, m(minute))
    }
}

/// One firing alert as promtool compares it: labels without `alertname`, annotations.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fired {
    /// Labels, `alertname` removed.
    pub labels: Labels,
    /// Rendered annotations.
    pub annotations: BTreeMap<String, String>,
}

/// Our firing alerts per (checked time ms, alert name); every rule has an entry per time.
pub type Firing = BTreeMap<(i64, String), Vec<Fired>>;

/// Why our run of a scenario stopped early.
#[derive(Debug)]
pub enum Stop {
    /// A rule's evaluation failed (as Prometheus's can): when, which rules, why.
    Error { at: i64, alerts: Vec<String>, message: String },
    /// Anything else: a rule we reject, or a panic.
    Broken(String),
}

/// Runs our engine over a scenario: all samples loaded at `i * interval`, one evaluation per
/// tick `0, E, 2E, …` up to the last checked time, firing alerts recorded at each checked
/// time from the last tick at or before it.
pub fn run_ours(s: &Scenario) -> Result<Firing, Stop> {
    let mut store = SeriesStore::new(i64::MAX / 4, 1_000_000);
    for (selector, values) in &s.series {
        let labels = selector_labels(selector);
        for (i, v) in expand(values).into_iter().enumerate() {
            if let Some(v) = v {
                store.append(labels.clone(), i as i64 * s.interval, v);
            }
        }
    }
    let rules = s
        .rules
        .iter()
        .map(|d| AlertRule::compile(d.clone()).map_err(|e| Stop::Broken(format!("our engine rejects the rule: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let mut engine = RuleEngine::new(rules);
    let last = *s.eval_times.iter().max().expect("a scenario needs checked times");
    let mut firing = Firing::new();
    let mut tick = 0;
    while tick <= last {
        let evaluation = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.evaluate(&store, tick)))
            .map_err(|panic| {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                Stop::Broken(format!("our engine PANICS at {}: {why}", duration(tick)))
            })?;
        if !evaluation.errors.is_empty() {
            return Err(Stop::Error {
                at: tick,
                alerts: evaluation.errors.iter().map(|(a, _)| a.clone()).collect(),
                message: format!("{:?}", evaluation.errors),
            });
        }
        for &at in s.eval_times.iter().filter(|&&at| at - at % s.eval_interval == tick) {
            for r in &s.rules {
                firing.entry((at, r.alert.clone())).or_default();
            }
            for a in evaluation.alerts.iter().filter(|a| a.state == mxwarden::alert::Phase::Firing) {
                let mut labels = a.labels.clone();
                let name = labels.remove("alertname").expect("alertname");
                firing.entry((at, name)).or_default().push(Fired { labels, annotations: a.annotations.clone() });
            }
        }
        tick += s.eval_interval;
    }
    for alerts in firing.values_mut() {
        alerts.sort();
    }
    Ok(firing)
}

/// Problems with our expectations, empty when all hold.
pub fn check_expects(s: &Scenario, firing: &Firing) -> Vec<String> {
    let count = |alert: &str, at: i64| firing.get(&(at, alert.to_string())).map(Vec::len);
    s.expects
        .iter()
        .filter_map(|e| match e {
            Expect::Fires { alert, at, count: want } => (count(alert, *at) != Some(*want)).then(|| {
                format!("expected {want} firing {alert} at {}, ours has {:?}", duration(*at), count(alert, *at))
            }),
            Expect::Quiet { alert, at } => (count(alert, *at) != Some(0))
                .then(|| format!("expected no firing {alert} at {}, ours has {:?}", duration(*at), count(alert, *at))),
        })
        .collect()
}

/// A duration as Go's `time.Duration` prints it: `0s`, `2m0s`, `1m30s`, `1h0m0s`, `1.5s`.
pub fn go_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    if ms < SEC {
        return format!("{ms}ms");
    }
    let (h, m, rest) = (ms / 3_600_000, ms / MIN % 60, ms % MIN);
    let secs = if rest % SEC == 0 {
        format!("{}s", rest / SEC)
    } else {
        format!("{}.{}s", rest / SEC, format!("{:03}", rest % SEC).trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

/// A duration as Prometheus writes it: `5m`, `90s`, `1500ms`.
pub fn duration(ms: i64) -> String {
    if ms % MIN == 0 {
        format!("{}m", ms / MIN)
    } else if ms % SEC == 0 {
        format!("{}s", ms / SEC)
    } else {
        format!("{ms}ms")
    }
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// The rule file: one group, the rules in Prometheus's format.
pub fn rule_file(s: &Scenario) -> String {
    let mut out = String::from("groups:\n  - name: conformance\n    rules:\n");
    for r in &s.rules {
        let _ = writeln!(out, "      - alert: {}\n        expr: {}", r.alert, quoted(&r.expr));
        if r.for_ms > 0 {
            let _ = writeln!(out, "        for: {}", duration(r.for_ms));
        }
        if r.keep_firing_for_ms > 0 {
            let _ = writeln!(out, "        keep_firing_for: {}", duration(r.keep_firing_for_ms));
        }
        let _ = writeln!(out, "        labels: {}", serde_json::to_string(&r.labels).unwrap());
        let _ = writeln!(out, "        annotations: {}", serde_json::to_string(&r.annotations).unwrap());
    }
    out
}

/// The test file: the input series and, per checked time and alert, our firing alerts.
pub fn test_file(s: &Scenario, rules: &Path, firing: &Firing) -> String {
    let mut out = format!(
        "# {}: {}\nrule_files: [{}]\nevaluation_interval: {}\ntests:\n  - interval: {}\n    input_series:\n",
        s.name,
        s.why,
        quoted(rules.to_str().expect("a UTF-8 path")),
        duration(s.eval_interval),
        duration(s.interval)
    );
    for (selector, values) in &s.series {
        let _ = writeln!(out, "      - series: {}\n        values: {}", quoted(selector), quoted(values));
    }
    out.push_str("    alert_rule_test:\n");
    for ((at, alert), alerts) in firing {
        let _ = write!(out, "      - eval_time: {}\n        alertname: {alert}\n        exp_alerts:", duration(*at));
        if alerts.is_empty() {
            out.push_str(" []\n");
            continue;
        }
        out.push('\n');
        for a in alerts {
            let _ = writeln!(out, "          - exp_labels: {}", serde_json::to_string(&a.labels).unwrap());
            let _ = writeln!(out, "            exp_annotations: {}", serde_json::to_string(&a.annotations).unwrap());
        }
    }
    out
}

/// Panics unless promtool is installed.
pub fn require_promtool() {
    let ok = Command::new("promtool").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(ok, "promtool is missing: run scripts/install-test-deps.sh (it installs Debian's `prometheus` package)");
}

/// Totals over a batch, to show it tested something.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    /// Scenarios.
    pub scenarios: usize,
    /// (time, alert) checks where something fires.
    pub firing_checks: usize,
    /// (time, alert) checks where nothing fires.
    pub quiet_checks: usize,
    /// Firing alert instances compared.
    pub alerts: usize,
}

/// Runs every scenario through our engine and the whole batch through one promtool run.
/// Returns the totals, or a report of every disagreement (with the generated files, kept on
/// disk, and promtool's full output) and every unmet expectation.
pub fn check_batch(batch: &str, scenarios: &[Scenario]) -> Result<Tally, String> {
    require_promtool();
    let dir = tempfile::Builder::new().prefix(&format!("conformance-{batch}-")).tempdir().expect("a temp dir");
    let mut problems: Vec<String> = Vec::new();
    let mut files: Vec<(usize, PathBuf, PathBuf)> = Vec::new();
    let mut tally = Tally { scenarios: scenarios.len(), ..Tally::default() };
    for (i, s) in scenarios.iter().enumerate() {
        let firing = match (run_ours(s), &s.error) {
            (Ok(f), None) => f,
            (Err(Stop::Error { at, alerts, .. }), Some((alert, want))) if at == *want && alerts.contains(alert) => {
                // promtool must fail at the same evaluation, for the same rule.
                let mut empty = Firing::new();
                empty.insert((at, alert.clone()), Vec::new());
                empty
            }
            (Ok(_), Some((alert, at))) => {
                problems.push(format!(
                    "== {} ({}): expected {alert} to fail at {}, our engine does not fail",
                    s.name,
                    s.why,
                    duration(*at)
                ));
                continue;
            }
            (Err(Stop::Error { at, alerts, message }), _) => {
                problems.push(format!(
                    "== {} ({}): our engine fails at {} for {alerts:?}: {message}{}\n{}",
                    s.name,
                    s.why,
                    duration(at),
                    s.error.as_ref().map_or(String::new(), |(a, t)| format!(" (expected {a} at {})", duration(*t))),
                    rule_file(s)
                ));
                continue;
            }
            (Err(Stop::Broken(e)), _) => {
                problems.push(format!("== {} ({})\n{e}\n{}", s.name, s.why, rule_file(s)));
                continue;
            }
        };
        for e in check_expects(s, &firing) {
            problems.push(format!("== {} ({}): {e}", s.name, s.why));
        }
        tally.firing_checks += firing.values().filter(|a| !a.is_empty()).count();
        tally.quiet_checks += firing.values().filter(|a| a.is_empty()).count();
        tally.alerts += firing.values().map(Vec::len).sum::<usize>();
        let rules = dir.path().join(format!("rules-{i:03}-{}.yml", s.name));
        std::fs::write(&rules, rule_file(s)).expect("write the rule file");
        let test = dir.path().join(format!("test-{i:03}-{}.yml", s.name));
        std::fs::write(&test, test_file(s, &rules, &firing)).expect("write the test file");
        files.push((i, test, rules));
    }
    // One output stream for stdout and stderr, so each verdict stays under its file's header.
    let log = dir.path().join("promtool.log");
    let out = std::fs::File::create(&log).expect("create the promtool log");
    let status = Command::new("promtool")
        .args(["test", "rules"])
        .args(files.iter().map(|(_, test, _)| test))
        .stdout(Stdio::from(out.try_clone().expect("dup the log")))
        .stderr(Stdio::from(out))
        .status()
        .expect("run promtool");
    let text = std::fs::read_to_string(&log).expect("read the promtool log");
    let verdicts = verdicts(&text);
    let mut disagreements = Vec::new();
    for (i, test, rules) in &files {
        let s = &scenarios[*i];
        let name = test.to_str().unwrap();
        let agrees = |v: &str| match &s.error {
            None => v.trim_start().starts_with("SUCCESS"),
            Some((alert, at)) => v.contains(&format!("rule: {alert}, time: {}, err:", go_duration(*at))),
        };
        match verdicts.get(name) {
            Some(v) if agrees(v) => {}
            other => {
                disagreements.push(s.name.clone());
                problems.push(format!(
                    "== {} ({}) — promtool disagrees:\n{}\n-- {}\n{}\n-- {}\n{}",
                    s.name,
                    s.why,
                    other.map_or("(no verdict from promtool for this file)", String::as_str),
                    rules.display(),
                    std::fs::read_to_string(rules).unwrap_or_default(),
                    test.display(),
                    std::fs::read_to_string(test).unwrap_or_default(),
                ));
            }
        }
    }
    let expected_failures = files.iter().filter(|(i, _, _)| scenarios[*i].error.is_some()).count();
    if status.success() != (disagreements.is_empty() && expected_failures == 0) && problems.is_empty() {
        problems.push(format!("promtool exit status {status} does not fit its verdicts:\n{text}"));
    }
    if !problems.is_empty() {
        let kept = dir.keep();
        return Err(format!(
            "{batch}: {} problem(s); scenarios promtool disagrees with: {disagreements:?}\n\n{}\n\n\
             ===== promtool's full output for {batch} =====\n{text}\n(files kept in {})",
            problems.len(),
            problems.join("\n\n"),
            kept.display()
        ));
    }
    eprintln!(
        "{batch}: promtool agrees on {} scenarios: {} checks with firing alerts ({} alerts), {} without",
        tally.scenarios, tally.firing_checks, tally.alerts, tally.quiet_checks
    );
    Ok(tally)
}

/// promtool's output split per file: file name → what it printed under it.
fn verdicts(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(file) = line.strip_prefix("Unit Testing:") {
            current = Some(file.trim().to_string());
            out.insert(file.trim().to_string(), String::new());
        } else if let Some(f) = &current {
            let section: &mut String = out.get_mut(f).expect("section");
            section.push_str(line);
            section.push('\n');
        }
    }
    out
}
