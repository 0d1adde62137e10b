//! Alerting rules in Prometheus's shape (`alert`, `expr`, `for`, `keep_firing_for`, `labels`,
//! `annotations`), compiled once, validated against the supported PromQL subset, and
//! evaluated over the series windows. `RuleEngine` keeps each alert's state through
//! `alert::step`; it is fed by the scrape and probe samples, and read by the daemon's
//! evaluator (which judges each new result with the rules that read it) and by the CLI. Rules
//! come from the presets and from the config's `rules:` list.

pub(crate) mod eval;
pub(crate) mod functions;
pub(crate) mod scope;
pub(crate) mod template;

use crate::alert::{self, AlertState, Millis, Phase, Policy, Transition};
use crate::model::Labels;
use crate::series::SeriesStore;
use eval::{Context, EvalError, Value};
use promql_parser::parser::Expr;
use promql_parser::parser::token;
use promql_parser::parser::value::ValueType;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use template::Template;

/// The severities the runbook's tiers use.
pub(crate) const SEVERITIES: &[&str] = &["critical", "warning", "info"];

/// A rule as written (in config or by a preset), before compiling.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleDef {
    /// Alert name.
    pub alert: String,
    /// PromQL expression.
    pub expr: String,
    /// `for`, ms.
    #[serde(skip)]
    pub for_ms: Millis,
    /// `keep_firing_for`, ms.
    #[serde(skip)]
    pub keep_firing_for_ms: Millis,
    /// Labels, including `severity`.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Where it came from: `preset synapse`, `config`.
    #[serde(skip)]
    pub origin: String,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct AlertRule {
    /// The definition.
    pub def: RuleDef,
    expr: Expr,
    labels: Vec<(String, Template)>,
    annotations: Vec<(String, Template)>,
    /// Which checks its result depends on.
    scope: scope::Scope,
}

/// Why a rule cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {alert}: {message}")]
pub struct RuleError {
    /// The rule's alert name.
    pub alert: String,
    /// What is wrong.
    pub message: String,
}

impl AlertRule {
    /// Parses and checks a rule: PromQL syntax, the supported subset, an instant-vector
    /// result, a known severity, valid templates.
    pub fn compile(def: RuleDef) -> Result<Self, RuleError> {
        let fail = |message: String| RuleError { alert: def.alert.clone(), message };
        if def.alert.is_empty() || !def.alert.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            return Err(fail(format!("`{}` is not a valid alert name (letters, digits, _ and :)", def.alert)));
        }
        let expr = promql_parser::parser::parse(&def.expr).map_err(|e| fail(format!("expr does not parse: {e}")))?;
        let unsupported = unsupported(&expr);
        if !unsupported.is_empty() {
            return Err(fail(format!(
                "expr uses what mxwarden does not evaluate: {} (see docs/rules.md for the supported subset)",
                unsupported.join(", ")
            )));
        }
        if !matches!(expr.value_type(), ValueType::Vector | ValueType::Scalar) {
            return Err(fail("expr must give an instant vector".into()));
        }
        match def.labels.get("severity").map(String::as_str) {
            Some(s) if SEVERITIES.contains(&s) => {}
            Some(other) => return Err(fail(format!("severity `{other}`; expected one of: {}", SEVERITIES.join(", ")))),
            None => return Err(fail(format!("labels.severity is required; one of: {}", SEVERITIES.join(", ")))),
        }
        let compile = |map: &BTreeMap<String, String>, what: &str| -> Result<Vec<(String, Template)>, RuleError> {
            map.iter()
                .map(|(k, v)| Template::parse(v).map(|t| (k.clone(), t)).map_err(|e| fail(format!("{what}.{k}: {e}"))))
                .collect()
        };
        let labels = compile(&def.labels, "labels")?;
        let annotations = compile(&def.annotations, "annotations")?;
        let scope = scope::of(&expr, &def.labels);
        Ok(Self { def, expr, labels, annotations, scope })
    }

    /// Metric names the expression selects; `None` when a selector has no name (needs all).
    pub(crate) fn metric_names(&self) -> Option<BTreeSet<String>> {
        let mut names = BTreeSet::new();
        names_in(&self.expr, &mut names).then_some(names)
    }

    /// Whether one of the expression's selectors would select a series with exactly these
    /// labels (`__name__` included): how `config::build` tells that a rule of the user's
    /// already watches a check, so the check needs no `CheckFailing` of its own.
    pub(crate) fn reads_series(&self, labels: &Labels) -> bool {
        let mut reads = false;
        walk(&self.expr, &mut |e| {
            let vs = match e {
                Expr::VectorSelector(vs) => vs,
                Expr::MatrixSelector(ms) => &ms.vs,
                _ => return,
            };
            reads |= eval::matches(vs.name.as_deref(), &vs.matchers, labels);
        });
        reads
    }

    /// How much history the expression reads back from the evaluation time, ms.
    pub(crate) fn lookback_ms(&self) -> Millis {
        reach(&self.expr) + eval::LOOKBACK_MS
    }

    /// The alert instances whose condition holds at `t`: labels (series labels without the
    /// name, plus the rule's labels and `alertname`), value, and the sample labels its templates see.
    pub(crate) fn instances(&self, store: &SeriesStore, t: Millis) -> Result<Vec<Instance>, EvalError> {
        self.instances_of(store, t, None)
    }

    /// [`Self::instances`] from the series of `checks` only, when given.
    fn instances_of(
        &self,
        store: &SeriesStore,
        t: Millis,
        checks: Option<&BTreeSet<String>>,
    ) -> Result<Vec<Instance>, EvalError> {
        let elems = match eval::eval(&self.expr, &Context { store, t, checks })? {
            Value::Vector(v) => v,
            Value::Scalar(v) => vec![eval::Elem { labels: Labels::new(), value: v }],
            _ => return Err(EvalError("expr did not give an instant vector".into())),
        };
        let mut out: Vec<Instance> = Vec::with_capacity(elems.len());
        let mut seen = BTreeSet::new();
        for e in elems {
            // Templates see the sample's labels, `__name__` included (as Prometheus's
            // `$labels`); a label that renders empty is left out, as Prometheus does.
            let sample = e.labels;
            let mut labels = eval::drop_name(sample.clone());
            for (k, t) in &self.labels {
                let v = t.render(&sample, e.value);
                if v.is_empty() {
                    labels.remove(k);
                } else {
                    labels.insert(k.clone(), v);
                }
            }
            labels.insert("alertname".into(), self.def.alert.clone());
            if !seen.insert(labels.clone()) {
                return Err(EvalError(
                    "vector contains metrics with the same labelset after applying alert labels".into(),
                ));
            }
            out.push(Instance { labels, value: e.value, sample });
        }
        Ok(out)
    }

    /// The annotations for one instance, from its sample's labels (not the alert's: the
    /// rule's own labels and `alertname` are not visible to templates, as in Prometheus).
    pub(crate) fn annotate(&self, sample: &Labels, value: f64) -> BTreeMap<String, String> {
        self.annotations.iter().map(|(k, t)| (k.clone(), t.render(sample, value))).collect()
    }

    fn policy(&self) -> Policy {
        Policy { hold_ms: self.def.for_ms, keep_firing_ms: self.def.keep_firing_for_ms, repeat_ms: 0 }
    }
}

/// Names of the constructs outside the supported subset.
fn unsupported(expr: &Expr) -> Vec<String> {
    let mut found = Vec::new();
    walk(expr, &mut |e| match e {
        Expr::Call(c) if !functions::SUPPORTED.contains(&c.func.name) => {
            found.push(format!("function {}()", c.func.name))
        }
        Expr::Aggregate(a)
            if !matches!(
                a.op.id(),
                token::T_SUM
                    | token::T_AVG
                    | token::T_MIN
                    | token::T_MAX
                    | token::T_COUNT
                    | token::T_GROUP
                    | token::T_STDDEV
                    | token::T_STDVAR
                    | token::T_TOPK
                    | token::T_BOTTOMK
                    | token::T_QUANTILE
            ) =>
        {
            found.push(format!("aggregation {}", a.op))
        }
        Expr::Binary(b) if b.op.id() == token::T_ATAN2 => found.push("operator atan2".into()),
        Expr::Subquery(_) => found.push("subqueries".into()),
        Expr::VectorSelector(vs) if vs.at.is_some() => found.push("the @ modifier".into()),
        Expr::MatrixSelector(ms) if ms.vs.at.is_some() => found.push("the @ modifier".into()),
        Expr::Extension(_) => found.push("extensions".into()),
        _ => {}
    });
    found.dedup();
    found
}

/// Visits every node.
fn walk(expr: &Expr, f: &mut dyn FnMut(&Expr)) {
    f(expr);
    match expr {
        Expr::Aggregate(a) => {
            walk(&a.expr, f);
            if let Some(p) = &a.param {
                walk(p, f);
            }
        }
        Expr::Unary(u) => walk(&u.expr, f),
        Expr::Binary(b) => {
            walk(&b.lhs, f);
            walk(&b.rhs, f);
        }
        Expr::Paren(p) => walk(&p.expr, f),
        Expr::Subquery(s) => walk(&s.expr, f),
        Expr::Call(c) => c.args.args.iter().for_each(|a| walk(a, f)),
        _ => {}
    }
}

fn names_in(expr: &Expr, names: &mut BTreeSet<String>) -> bool {
    let mut all_named = true;
    walk(expr, &mut |e| {
        let vs = match e {
            Expr::VectorSelector(vs) => vs,
            Expr::MatrixSelector(ms) => &ms.vs,
            _ => return,
        };
        match &vs.name {
            Some(n) => {
                names.insert(n.clone());
            }
            None => all_named = false,
        }
    });
    all_named
}

fn reach(expr: &Expr) -> Millis {
    let mut longest = 0;
    walk(expr, &mut |e| {
        let (range, offset) = match e {
            Expr::VectorSelector(vs) => (0, &vs.offset),
            Expr::MatrixSelector(ms) => (ms.range.as_millis() as Millis, &ms.vs.offset),
            _ => return,
        };
        let offset = match offset {
            Some(promql_parser::parser::Offset::Pos(d)) => d.as_millis() as Millis,
            _ => 0,
        };
        longest = longest.max(range + offset);
    });
    longest
}

/// One alert instance of an evaluation.
#[derive(Debug, Clone)]
pub(crate) struct Instance {
    /// The alert's labels (with the rule's labels and `alertname`).
    pub labels: Labels,
    /// The expression's value.
    pub value: f64,
    /// The sample's own labels, `__name__` included: what templates see as `$labels`.
    pub sample: Labels,
}

/// One alert as the engine sees it after an evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct AlertStatus {
    /// Labels, with `alertname` and `severity`.
    pub labels: Labels,
    /// Annotations, rendered.
    pub annotations: BTreeMap<String, String>,
    /// The expression's value.
    pub value: f64,
    /// Pending or firing.
    pub state: Phase,
    /// When the condition started holding, ms.
    pub active_at: Millis,
}

/// One alert's state change, with everything needed to announce and persist it.
#[derive(Debug, Clone)]
pub struct Change {
    /// Alert name.
    pub alert: String,
    /// The alert's labels (with `alertname`, `severity`).
    pub labels: Labels,
    /// What happened.
    pub transition: Transition,
    /// The state after it.
    pub state: AlertState,
    /// The last value.
    pub value: f64,
    /// The annotations.
    pub annotations: BTreeMap<String, String>,
    /// When it started firing (for resolves: when it had), ms.
    pub fired_at: Millis,
}

/// What one evaluation produced.
#[derive(Debug, Default)]
pub struct Evaluation {
    /// Pending and firing alerts.
    pub alerts: Vec<AlertStatus>,
    /// State changes.
    pub changes: Vec<Change>,
    /// Rules that could not be evaluated this time.
    pub errors: Vec<(String, EvalError)>,
}

/// All rules and the state of every alert instance.
#[derive(Debug, Default)]
pub struct RuleEngine {
    rules: Vec<AlertRule>,
    /// The metric names each rule reads (`None`: it may read any series).
    reads: Vec<Option<BTreeSet<String>>>,
    states: HashMap<(usize, Labels), Tracked>,
    /// Reminder interval per severity, ms.
    repeat: BTreeMap<String, Millis>,
    /// The rules pinned to each check (`CheckFailing`: 10,000 of them for 10,000 checks).
    pinned: HashMap<String, Vec<usize>>,
    /// The rules pinned to no check.
    unpinned: Vec<usize>,
}

#[derive(Debug, Clone)]
struct Tracked {
    state: AlertState,
    value: f64,
    annotations: BTreeMap<String, String>,
}

impl RuleEngine {
    /// An engine for these rules, every alert inactive.
    pub fn new(rules: Vec<AlertRule>) -> Self {
        let reads = rules.iter().map(AlertRule::metric_names).collect();
        let (mut pinned, mut unpinned) = (HashMap::<String, Vec<usize>>::new(), Vec::new());
        for (index, rule) in rules.iter().enumerate() {
            match &rule.scope.pinned {
                Some(check) => pinned.entry(check.clone()).or_default().push(index),
                None => unpinned.push(index),
            }
        }
        Self { rules, reads, states: HashMap::new(), repeat: BTreeMap::new(), pinned, unpinned }
    }

    /// Sets the reminder interval for alerts of a severity.
    pub(crate) fn set_repeat(&mut self, severity: &str, repeat_ms: Millis) {
        self.repeat.insert(severity.to_string(), repeat_ms);
    }

    /// Restores an alert's state (after a restart); unknown rules are ignored.
    pub(crate) fn restore(
        &mut self,
        alert: &str,
        labels: Labels,
        state: AlertState,
        value: f64,
        annotations: BTreeMap<String, String>,
    ) {
        if let Some(index) = self.rules.iter().position(|r| r.def.alert == alert) {
            self.states.insert((index, labels), Tracked { state, value, annotations });
        }
    }

    /// History the rules need: the longest reach plus the longest `for`, ms.
    pub fn retention_ms(&self) -> Millis {
        self.rules
            .iter()
            .map(|r| r.lookback_ms() + r.def.for_ms.max(r.def.keep_firing_for_ms))
            .max()
            .unwrap_or(eval::LOOKBACK_MS)
    }

    /// Evaluates every rule at `t` and advances each alert's state.
    pub fn evaluate(&mut self, store: &SeriesStore, t: Millis) -> Evaluation {
        self.evaluate_where(store, t, |_| true, None)
    }

    /// Evaluates the rules that read any of the metrics `names` (and those that may read any
    /// series) at `t`: what a new result can change. The rest wait for their own data or
    /// their deadlines.
    pub(crate) fn evaluate_reading<'a>(
        &mut self,
        store: &SeriesStore,
        t: Millis,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Evaluation {
        let names: BTreeSet<&str> = names.into_iter().collect();
        let selected: Vec<bool> = self
            .reads
            .iter()
            .map(|reads| reads.as_ref().is_none_or(|r| r.iter().any(|n| names.contains(n.as_str()))))
            .collect();
        self.evaluate_where(store, t, |index| selected[index], None)
    }

    /// Judges the new results of `checks`, which brought the metrics `names`, at `t`, for a
    /// config with many checks: a rule pinned to one check is evaluated only when that check
    /// reported; a per-check rule only over the series of `checks`, stepping only their
    /// alerts; other rules that read `names` as [`Self::evaluate_reading`] does. The alerts of
    /// checks that did not report wait for their own results, deadlines or the next full
    /// sweep — which is what keeps 10,000 checks from costing 10,000 series per result.
    pub(crate) fn evaluate_arrivals<'a>(
        &mut self,
        store: &SeriesStore,
        t: Millis,
        names: impl IntoIterator<Item = &'a str>,
        checks: &BTreeSet<String>,
    ) -> Evaluation {
        let names: BTreeSet<&str> = names.into_iter().collect();
        let reads_new =
            |index: usize| self.reads[index].as_ref().is_none_or(|r| r.iter().any(|n| names.contains(n.as_str())));
        // Only the unpinned rules and those of the checks that reported are looked at.
        let mut selected = vec![false; self.rules.len()];
        let of_reporters = checks.iter().filter_map(|c| self.pinned.get(c)).flatten();
        for &index in self.unpinned.iter().chain(of_reporters) {
            selected[index] = reads_new(index);
        }
        self.evaluate_where(store, t, |index| selected[index], Some(checks))
    }

    /// The policy alert instances of the rule at `index` follow, reminders included.
    fn policy(&self, index: usize) -> alert::Policy {
        let rule = &self.rules[index];
        let mut policy = rule.policy();
        policy.repeat_ms = rule.def.labels.get("severity").and_then(|s| self.repeat.get(s)).copied().unwrap_or(0);
        policy
    }

    /// The next moment at which an alert's state changes with time alone (`for`,
    /// `keep_firing_for`, reminders); `None` when no alert is waiting for time.
    pub(crate) fn next_deadline(&self) -> Option<Millis> {
        self.states
            .iter()
            .filter_map(|((index, _), tracked)| alert::next_deadline(tracked.state, self.policy(*index)))
            .min()
    }

    /// Every pending and firing alert.
    pub(crate) fn alerts(&self) -> Vec<AlertStatus> {
        let mut alerts: Vec<AlertStatus> = self
            .states
            .iter()
            .filter_map(|((_, labels), tracked)| {
                let (state, active_at) = match tracked.state {
                    AlertState::Pending { active_at } => (Phase::Pending, active_at),
                    AlertState::Firing { active_at, .. } => (Phase::Firing, active_at),
                    AlertState::Inactive => return None,
                };
                Some(AlertStatus {
                    labels: labels.clone(),
                    annotations: tracked.annotations.clone(),
                    value: tracked.value,
                    state,
                    active_at,
                })
            })
            .collect();
        alerts.sort_by(|a, b| a.labels.cmp(&b.labels));
        alerts
    }

    /// Evaluates the selected rules; with `only`, the per-check ones (not pinned) over the
    /// series of those checks alone, stepping only the alerts labelled with one of them.
    fn evaluate_where(
        &mut self,
        store: &SeriesStore,
        t: Millis,
        selected: impl Fn(usize) -> bool,
        only: Option<&BTreeSet<String>>,
    ) -> Evaluation {
        let mut result = Evaluation::default();
        for index in (0..self.rules.len()).filter(|i| selected(*i)) {
            let policy = self.policy(index);
            let rule = &self.rules[index];
            let only = only.filter(|_| rule.scope.per_check && rule.scope.pinned.is_none());
            let active = match rule.instances_of(store, t, only) {
                Ok(a) => a,
                Err(e) => {
                    result.errors.push((rule.def.alert.clone(), e));
                    continue;
                }
            };
            let mut now_active: HashMap<Labels, (f64, Labels)> =
                active.into_iter().map(|i| (i.labels, (i.value, i.sample))).collect();
            let in_scope = |l: &Labels| only.is_none_or(|c| l.get("check").is_some_and(|v| c.contains(v)));
            let known: Vec<Labels> = self
                .states
                .keys()
                .filter(|(i, l)| *i == index && in_scope(l))
                .map(|(_, l)| l.clone())
                .chain(now_active.keys().cloned())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            for labels in known {
                let value = now_active.remove(&labels);
                let key = (index, labels.clone());
                let mut tracked = self.states.remove(&key).unwrap_or(Tracked {
                    state: AlertState::Inactive,
                    value: 0.0,
                    annotations: BTreeMap::new(),
                });
                let before = tracked.state;
                let (state, transition) = alert::step(tracked.state, value.is_some(), policy, t);
                if let Some((v, sample)) = &value {
                    tracked.value = *v;
                    tracked.annotations = rule.annotate(sample, *v);
                }
                tracked.state = state;
                if let Some(tr) = transition {
                    tracing::info!(alert = %rule.def.alert, ?labels, transition = ?tr, "Alert state changed.");
                    let fired_at = match (state, before) {
                        (AlertState::Firing { fired_at, .. }, _) | (_, AlertState::Firing { fired_at, .. }) => fired_at,
                        _ => t,
                    };
                    result.changes.push(Change {
                        alert: rule.def.alert.clone(),
                        labels: labels.clone(),
                        transition: tr,
                        state,
                        value: tracked.value,
                        annotations: tracked.annotations.clone(),
                        fired_at,
                    });
                }
                if state != AlertState::Inactive {
                    self.states.insert(key, tracked);
                }
            }
        }
        result.alerts = self.alerts();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(expr: &str, for_ms: Millis) -> RuleDef {
        RuleDef {
            alert: "TestAlert".into(),
            expr: expr.into(),
            for_ms,
            keep_firing_for_ms: 0,
            labels: [("severity".to_string(), "warning".to_string())].into_iter().collect(),
            annotations: [("summary".to_string(), "{{ $labels.instance }} at {{ $value }}".to_string())]
                .into_iter()
                .collect(),
            origin: "test".into(),
        }
    }

    fn store(points: &[(i64, f64)]) -> SeriesStore {
        let mut s = SeriesStore::new(3_600_000, 100);
        let labels: Labels =
            [("__name__", "mem"), ("instance", "a")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        for &(t, v) in points {
            s.append(labels.clone(), t * 60_000, v);
        }
        s
    }

    #[test]
    fn rules_outside_the_subset_are_rejected_naming_the_construct() {
        let cases = [
            ("label_replace(up, \"a\", \"b\", \"c\", \"d\")", "function label_replace()"),
            ("count_values(\"v\", up)", "aggregation count_values"),
            ("max_over_time(up[10m:1m])", "subqueries"),
            ("up @ 100", "the @ modifier"),
            ("up[5m]", "must give an instant vector"),
            ("up >", "does not parse"),
        ];
        for (expr, needle) in cases {
            let err = AlertRule::compile(def(expr, 0)).unwrap_err();
            assert!(err.message.contains(needle), "{expr}: {}", err.message);
        }
        let mut no_severity = def("up == 0", 0);
        no_severity.labels.clear();
        assert!(AlertRule::compile(no_severity).unwrap_err().message.contains("severity is required"));
    }

    #[test]
    fn the_engine_holds_for_then_fires_and_renders_annotations() {
        let rule = AlertRule::compile(def("mem > 10", 2 * 60_000)).unwrap();
        let s = store(&[(0, 20.0), (1, 20.0), (2, 30.0), (3, 5.0)]);
        let mut engine = RuleEngine::new(vec![rule]);
        let states: Vec<Vec<Phase>> =
            (0..4).map(|m| engine.evaluate(&s, m * 60_000).alerts.iter().map(|a| a.state).collect()).collect();
        assert_eq!(states, [vec![Phase::Pending], vec![Phase::Pending], vec![Phase::Firing], vec![]]);
        let mut engine = RuleEngine::new(vec![AlertRule::compile(def("mem > 10", 0)).unwrap()]);
        let e = engine.evaluate(&s, 2 * 60_000);
        assert_eq!(e.alerts[0].annotations["summary"], "a at 30");
        assert_eq!(e.alerts[0].labels["alertname"], "TestAlert");
        assert_eq!(e.alerts[0].labels["severity"], "warning");
    }

    #[test]
    fn arrivals_are_judged_by_the_checks_that_reported() {
        let ok = |s: &mut SeriesStore, check: &str, t: Millis, v: f64| {
            let labels = [("check".to_string(), check.to_string())].into_iter().collect();
            s.ingest_result(check, t, [crate::model::Sample { name: "probe_success".into(), labels, value: v }], []);
        };
        let mut s = SeriesStore::new(3_600_000, 100);
        for c in ["a", "b", "c"] {
            ok(&mut s, c, 0, 0.0);
        }
        let per_check = AlertRule::compile(def("probe_success == 0", 0)).unwrap();
        let pinned =
            AlertRule::compile(RuleDef { alert: "Pinned".into(), ..def("probe_success{check=\"c\"} == 0", 0) })
                .unwrap();
        let mut engine = RuleEngine::new(vec![per_check, pinned]);
        let only = |checks: &[&str]| checks.iter().map(|c| c.to_string()).collect::<BTreeSet<String>>();
        let e = engine.evaluate_arrivals(&s, 1_000, ["probe_success"], &only(&["a"]));
        let fired: Vec<(String, String)> =
            e.changes.iter().map(|c| (c.alert.clone(), c.labels["check"].clone())).collect();
        assert_eq!(fired, [("TestAlert".into(), "a".into())], "only a's alert: b and c wait for their own results");
        let e = engine.evaluate_arrivals(&s, 2_000, ["probe_success"], &only(&["b", "c"]));
        let mut fired: Vec<(String, String)> =
            e.changes.iter().map(|c| (c.alert.clone(), c.labels["check"].clone())).collect();
        fired.sort();
        assert_eq!(
            fired,
            [("Pinned".into(), "c".into()), ("TestAlert".into(), "b".into()), ("TestAlert".into(), "c".into())],
            "c's pinned rule runs when c reports"
        );
        assert_eq!(e.alerts.len(), 4, "a's alert is still firing: it was not stepped without a's result");
        ok(&mut s, "a", 3_000, 1.0);
        let e = engine.evaluate_arrivals(&s, 3_000, ["probe_success"], &only(&["a"]));
        assert_eq!(e.changes.len(), 1, "a resolves; nothing else moves");
        assert_eq!(e.changes[0].labels["check"], "a");
        assert_eq!(engine.evaluate(&s, 4_000).alerts.len(), 3, "a full sweep agrees: b and c (twice) firing");
    }

    #[test]
    fn metric_names_and_reach_size_the_windows() {
        let rule = AlertRule::compile(def("rate(a_total[5m] offset 1m) > 0 and b", 0)).unwrap();
        assert_eq!(rule.metric_names().unwrap().into_iter().collect::<Vec<_>>(), ["a_total", "b"]);
        assert_eq!(rule.lookback_ms(), 6 * 60_000 + eval::LOOKBACK_MS);
        let any = AlertRule::compile(def("{__name__=~\"x.*\"} > 0", 0)).unwrap();
        assert!(any.metric_names().is_none());
    }
}
