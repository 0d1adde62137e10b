//! PromQL evaluation over the in-memory series windows, for the documented subset (see
//! `docs/rules.md`). Parsed once by `promql-parser`; `AlertRule::compile` rejects anything outside
//! the subset at config load, so this evaluator never has to guess. Semantics follow
//! Prometheus 2.x, the version `promtool` on this machine kind carries and our conformance
//! tests compare against: lookback and range windows are closed at both ends, rates are
//! extrapolated like `extrapolatedRate`, histogram quantiles interpolate linearly.

use super::functions;
use crate::model::Labels;
use crate::series::{Point, Series, SeriesStore, is_stale};
use promql_parser::label::Matchers;
use promql_parser::parser::token::{self, TokenType};
use promql_parser::parser::{
    AggregateExpr, BinModifier, BinaryExpr, Call, Expr, LabelModifier, MatrixSelector, Offset, VectorMatchCardinality,
    VectorSelector,
};
use std::collections::{BTreeSet, HashMap};

/// How far back an instant selector looks for a sample (Prometheus's default).
pub(crate) const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Elem {
    /// Labels (with `__name__` unless an operation dropped it).
    pub labels: Labels,
    /// Value.
    pub value: f64,
}

/// One series of a range vector.
#[derive(Debug, Clone)]
pub(crate) struct RangeElem {
    /// Labels.
    pub labels: Labels,
    /// Points in the range, oldest first, staleness markers removed.
    pub points: Vec<Point>,
}

/// A PromQL value.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    /// A number.
    Scalar(f64),
    /// An instant vector.
    Vector(Vec<Elem>),
    /// A range vector.
    Matrix(Vec<RangeElem>),
    /// A string (its text is never needed: no supported function takes one).
    String,
}

/// Why an evaluation failed (e.g. many-to-many matching); the rule yields nothing this time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

type Result<T> = std::result::Result<T, EvalError>;

/// What an evaluation reads: the series and the evaluation time.
pub(crate) struct Context<'a> {
    /// The series windows.
    pub store: &'a SeriesStore,
    /// Evaluation time, ms.
    pub t: i64,
    /// Only the series of these checks (a per-check rule judged for new results alone).
    pub checks: Option<&'a BTreeSet<String>>,
}

/// Evaluates `expr` at `cx.t`.
pub(crate) fn eval(expr: &Expr, cx: &Context<'_>) -> Result<Value> {
    match expr {
        Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
        Expr::StringLiteral(_) => Ok(Value::String),
        Expr::Paren(p) => eval(&p.expr, cx),
        Expr::Unary(u) => match eval(&u.expr, cx)? {
            Value::Scalar(v) => Ok(Value::Scalar(-v)),
            Value::Vector(v) => Ok(Value::Vector(
                v.into_iter().map(|e| Elem { labels: drop_name(e.labels), value: -e.value }).collect(),
            )),
            _ => Err(EvalError("unary minus needs a scalar or an instant vector".into())),
        },
        Expr::VectorSelector(vs) => Ok(Value::Vector(select_instant(vs, cx))),
        Expr::MatrixSelector(ms) => Ok(Value::Matrix(select_range(ms, cx))),
        Expr::Call(call) => eval_call(call, cx),
        Expr::Aggregate(agg) => eval_aggregate(agg, cx),
        Expr::Binary(bin) => eval_binary(bin, cx),
        Expr::Subquery(_) | Expr::Extension(_) => {
            Err(EvalError("subqueries are not supported; see docs/rules.md".into()))
        }
    }
}

fn offset_ms(offset: &Option<Offset>) -> i64 {
    match offset {
        None => 0,
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
    }
}

fn label<'a>(labels: &'a Labels, name: &str) -> &'a str {
    labels.get(name).map_or("", String::as_str)
}

/// Whether a series' labels satisfy a selector's name and matchers.
pub(crate) fn matches(name: Option<&str>, matchers: &Matchers, labels: &Labels) -> bool {
    if let Some(n) = name
        && label(labels, "__name__") != n
    {
        return false;
    }
    let all = |ms: &[promql_parser::label::Matcher]| ms.iter().all(|m| m.is_match(label(labels, &m.name)));
    all(&matchers.matchers) && (matchers.or_matchers.is_empty() || matchers.or_matchers.iter().any(|group| all(group)))
}

/// The series a selector may match, from the narrowest index: a check's series for
/// `check="X"` (or the checks the evaluation is limited to), a service's for `service="X"`,
/// else those of its name.
fn candidates<'a>(vs: &'a VectorSelector, cx: &Context<'a>) -> Box<dyn Iterator<Item = &'a Series> + 'a> {
    let (store, name) = (cx.store, vs.name.as_deref());
    match (super::scope::selector_check(vs), cx.checks) {
        (Some(check), Some(only)) if !only.contains(check) => Box::new(std::iter::empty()),
        (Some(check), _) => Box::new(store.of_check(check, name)),
        (None, Some(only)) => Box::new(only.iter().flat_map(move |c| store.of_check(c, name))),
        (None, None) if let Some(service) = super::scope::selector_equal(vs, "service") => {
            Box::new(store.of_service(service, name))
        }
        (None, None) => match name {
            Some(name) => Box::new(store.named(name)),
            None => Box::new(store.iter()),
        },
    }
}

/// The series a selector matches at `cx.t`, sorted by labels as Prometheus returns them
/// (which decides, e.g., which of two equal values `topk` keeps).
fn select_instant(vs: &VectorSelector, cx: &Context<'_>) -> Vec<Elem> {
    let at = cx.t - offset_ms(&vs.offset);
    let mut out: Vec<Elem> = candidates(vs, cx)
        .filter(|s| matches(vs.name.as_deref(), &vs.matchers, &s.labels))
        .filter_map(|s| {
            let point = s.points.iter().rev().find(|p| p.t <= at)?;
            (point.t >= at - LOOKBACK_MS && !is_stale(point.v))
                .then(|| Elem { labels: Labels::clone(&s.labels), value: point.v })
        })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

fn select_range(ms: &MatrixSelector, cx: &Context<'_>) -> Vec<RangeElem> {
    let end = cx.t - offset_ms(&ms.vs.offset);
    let start = end - ms.range.as_millis() as i64;
    let mut out: Vec<RangeElem> = candidates(&ms.vs, cx)
        .filter(|s| matches(ms.vs.name.as_deref(), &ms.vs.matchers, &s.labels))
        .filter_map(|s| {
            let points: Vec<Point> =
                s.points.iter().filter(|p| p.t >= start && p.t <= end && !is_stale(p.v)).copied().collect();
            (!points.is_empty()).then(|| RangeElem { labels: Labels::clone(&s.labels), points })
        })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

/// The range `[start, end]` a matrix selector covers at `cx.t`, in ms.
pub(crate) fn range_bounds(ms: &MatrixSelector, cx: &Context<'_>) -> (i64, i64) {
    let end = cx.t - offset_ms(&ms.vs.offset);
    (end - ms.range.as_millis() as i64, end)
}

/// Removes `__name__`, as most operations do.
pub(crate) fn drop_name(mut labels: Labels) -> Labels {
    labels.remove("__name__");
    labels
}

fn eval_call(call: &Call, cx: &Context<'_>) -> Result<Value> {
    functions::call(call.func.name, &call.args.args, cx)
}

fn scalar_arg(expr: &Expr, cx: &Context<'_>, what: &str) -> Result<f64> {
    match eval(expr, cx)? {
        Value::Scalar(v) => Ok(v),
        _ => Err(EvalError(format!("{what} must be a scalar"))),
    }
}

/// Evaluates to an instant vector or fails naming what was expected.
pub(crate) fn vector_arg(expr: &Expr, cx: &Context<'_>) -> Result<Vec<Elem>> {
    match eval(expr, cx)? {
        Value::Vector(v) => Ok(v),
        _ => Err(EvalError("expected an instant vector".into())),
    }
}

/// The grouping labels of an element under `by`/`without`.
fn group_labels(labels: &Labels, modifier: &Option<LabelModifier>) -> Labels {
    match modifier {
        None => Labels::new(),
        Some(LabelModifier::Include(by)) => {
            by.labels.iter().filter_map(|l| labels.get(l).map(|v| (l.clone(), v.clone()))).collect()
        }
        Some(LabelModifier::Exclude(without)) => labels
            .iter()
            .filter(|(k, _)| k.as_str() != "__name__" && !without.labels.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

fn eval_aggregate(agg: &AggregateExpr, cx: &Context<'_>) -> Result<Value> {
    let input = vector_arg(&agg.expr, cx)?;
    let op = agg.op.id();
    let param = match &agg.param {
        Some(p) if matches!(op, token::T_TOPK | token::T_BOTTOMK | token::T_QUANTILE) => {
            Some(scalar_arg(p, cx, "the aggregation parameter")?)
        }
        _ => None,
    };
    // Groups in order of first appearance, as Prometheus returns them (what a later
    // order-sensitive aggregation, such as a float sum, sees).
    let mut groups: Vec<(Labels, Vec<Elem>)> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for e in input {
        let key = group_labels(&e.labels, &agg.modifier);
        let i = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(e);
    }
    let mut out = Vec::new();
    for (labels, members) in groups {
        let values: Vec<f64> = members.iter().map(|e| e.value).collect();
        let one = |value| Elem { labels: labels.clone(), value };
        match op {
            token::T_SUM => out.push(one(values.iter().sum())),
            token::T_AVG => out.push(one(functions::incremental_mean(&values))),
            token::T_COUNT => out.push(one(values.len() as f64)),
            token::T_GROUP => out.push(one(1.0)),
            token::T_MIN => out.push(one(functions::min_of(&values))),
            token::T_MAX => out.push(one(functions::max_of(&values))),
            token::T_STDDEV => out.push(one(functions::stdvar(&values).sqrt())),
            token::T_STDVAR => out.push(one(functions::stdvar(&values))),
            token::T_QUANTILE => out.push(one(functions::quantile(param.unwrap_or(f64::NAN), &values))),
            token::T_TOPK | token::T_BOTTOMK => {
                let k = param.unwrap_or(0.0);
                if k >= 1.0 {
                    out.extend(functions::select_k(members, k as usize, op == token::T_TOPK));
                }
            }
            _ => return Err(EvalError(format!("aggregation `{}` is not supported", agg.op))),
        }
    }
    Ok(Value::Vector(out))
}

fn is_comparison(op: TokenType) -> bool {
    op.is_comparison_operator()
}

/// Applies an arithmetic or comparison operator; for comparisons returns 1/0 and whether it held.
fn apply(op: TokenType, l: f64, r: f64) -> Result<(f64, bool)> {
    let b = |c: bool| (if c { 1.0 } else { 0.0 }, c);
    Ok(match op.id() {
        token::T_ADD => (l + r, true),
        token::T_SUB => (l - r, true),
        token::T_MUL => (l * r, true),
        token::T_DIV => (l / r, true),
        token::T_MOD => (l % r, true),
        token::T_POW => (l.powf(r), true),
        token::T_EQLC => b(l == r),
        token::T_NEQ => b(l != r),
        token::T_GTR => b(l > r),
        token::T_LSS => b(l < r),
        token::T_GTE => b(l >= r),
        token::T_LTE => b(l <= r),
        _ => return Err(EvalError(format!("operator `{op}` is not supported"))),
    })
}

fn eval_binary(bin: &BinaryExpr, cx: &Context<'_>) -> Result<Value> {
    let lhs = eval(&bin.lhs, cx)?;
    let rhs = eval(&bin.rhs, cx)?;
    let return_bool = bin.modifier.as_ref().is_some_and(|m| m.return_bool);
    let op = bin.op;
    match (lhs, rhs) {
        (Value::Scalar(l), Value::Scalar(r)) => {
            let (v, _) = apply(op, l, r)?;
            Ok(Value::Scalar(v))
        }
        (Value::Vector(v), Value::Scalar(s)) => Ok(Value::Vector(vector_scalar(op, v, s, false, return_bool)?)),
        (Value::Scalar(s), Value::Vector(v)) => Ok(Value::Vector(vector_scalar(op, v, s, true, return_bool)?)),
        (Value::Vector(l), Value::Vector(r)) => {
            let modifier = bin.modifier.as_ref();
            if op.is_set_operator() {
                Ok(Value::Vector(set_op(op, l, r, modifier)))
            } else {
                Ok(Value::Vector(vector_vector(op, l, r, modifier, return_bool)?))
            }
        }
        _ => Err(EvalError("binary operators need scalars or instant vectors".into())),
    }
}

fn vector_scalar(op: TokenType, v: Vec<Elem>, s: f64, scalar_left: bool, return_bool: bool) -> Result<Vec<Elem>> {
    let mut out = Vec::new();
    for e in v {
        let (l, r) = if scalar_left { (s, e.value) } else { (e.value, s) };
        let (value, keep) = apply(op, l, r)?;
        if is_comparison(op) {
            if return_bool {
                out.push(Elem { labels: drop_name(e.labels), value });
            } else if keep {
                out.push(Elem { labels: e.labels, value: e.value });
            }
        } else {
            out.push(Elem { labels: drop_name(e.labels), value });
        }
    }
    Ok(out)
}

/// The matching signature of an element under `on`/`ignoring` (default: all but the name).
fn signature(labels: &Labels, matching: Option<&LabelModifier>) -> Labels {
    match matching {
        Some(LabelModifier::Include(on)) => {
            on.labels.iter().filter_map(|l| labels.get(l).map(|v| (l.clone(), v.clone()))).collect()
        }
        Some(LabelModifier::Exclude(ignoring)) => labels
            .iter()
            .filter(|(k, _)| k.as_str() != "__name__" && !ignoring.labels.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        None => drop_name(labels.clone()),
    }
}

fn set_op(op: TokenType, l: Vec<Elem>, r: Vec<Elem>, modifier: Option<&BinModifier>) -> Vec<Elem> {
    let matching = modifier.and_then(|m| m.matching.as_ref());
    let right: std::collections::BTreeSet<Labels> = r.iter().map(|e| signature(&e.labels, matching)).collect();
    match op.id() {
        token::T_LAND => l.into_iter().filter(|e| right.contains(&signature(&e.labels, matching))).collect(),
        token::T_LUNLESS => l.into_iter().filter(|e| !right.contains(&signature(&e.labels, matching))).collect(),
        _ => {
            let left: std::collections::BTreeSet<Labels> = l.iter().map(|e| signature(&e.labels, matching)).collect();
            let mut out = l;
            out.extend(r.into_iter().filter(|e| !left.contains(&signature(&e.labels, matching))));
            out
        }
    }
}

fn vector_vector(
    op: TokenType,
    l: Vec<Elem>,
    r: Vec<Elem>,
    modifier: Option<&BinModifier>,
    return_bool: bool,
) -> Result<Vec<Elem>> {
    let matching = modifier.and_then(|m| m.matching.as_ref());
    let card = modifier.map_or(VectorMatchCardinality::OneToOne, |m| m.card.clone());
    // The "one" side must be unique per signature; group_right swaps the roles.
    let (many, one, swapped, include) = match &card {
        VectorMatchCardinality::OneToMany(include) => (r, l, true, include.labels.clone()),
        VectorMatchCardinality::ManyToOne(include) => (l, r, false, include.labels.clone()),
        _ => (l, r, false, Vec::new()),
    };
    let mut one_side: HashMap<Labels, Elem> = HashMap::new();
    for e in one {
        let sig = signature(&e.labels, matching);
        if one_side.insert(sig.clone(), e).is_some() {
            let side = if swapped { "left" } else { "right" };
            return Err(EvalError(format!(
                "found duplicate series for the match group {sig:?} on the {side} hand-side of the operation; many-to-many matching is not allowed"
            )));
        }
    }
    let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
    let mut seen: HashMap<Labels, ()> = HashMap::new();
    let mut out = Vec::new();
    for m in many {
        let sig = signature(&m.labels, matching);
        let Some(o) = one_side.get(&sig) else { continue };
        let (lv, rv) = if swapped { (o.value, m.value) } else { (m.value, o.value) };
        let (value, keep) = apply(op, lv, rv)?;
        let comparison = is_comparison(op);
        if comparison && !return_bool && !keep {
            continue;
        }
        let mut labels = m.labels.clone();
        if !comparison || return_bool {
            labels = drop_name(labels);
        }
        if one_to_one {
            labels = match matching {
                Some(LabelModifier::Include(on)) => {
                    on.labels.iter().filter_map(|k| labels.get(k).map(|v| (k.clone(), v.clone()))).collect()
                }
                Some(LabelModifier::Exclude(ignoring)) => {
                    labels.into_iter().filter(|(k, _)| !ignoring.labels.contains(k)).collect()
                }
                None => labels,
            };
        } else {
            for name in &include {
                match o.labels.get(name) {
                    Some(v) => labels.insert(name.clone(), v.clone()),
                    None => labels.remove(name),
                };
            }
        }
        if one_to_one && seen.insert(labels.clone(), ()).is_some() {
            return Err(EvalError(
                "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
            ));
        }
        let value = if comparison && !return_bool { lv } else { value };
        out.push(Elem { labels, value });
    }
    Ok(out)
}
