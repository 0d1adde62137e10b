//! The PromQL functions of the supported subset, with Prometheus 2.x's arithmetic:
//! extrapolated `rate`/`increase`/`delta`, `irate`, least-squares `deriv`, the `*_over_time`
//! family, `histogram_quantile` with linear interpolation, and the element-wise helpers.

use super::eval::{Context, Elem, EvalError, RangeElem, Value, drop_name, eval, range_bounds, vector_arg};
use crate::model::Labels;
use crate::series::Point;
use promql_parser::parser::{Expr, MatrixSelector};
use std::cmp::Ordering;
use std::collections::BTreeMap;

type Result<T> = std::result::Result<T, EvalError>;

/// A function of one series' points in a range `(start, end)`.
type RangeFn<'a> = &'a dyn Fn(&[Point], (i64, i64)) -> Option<f64>;

/// The functions the evaluator implements; anything else is rejected at config load.
pub(crate) const SUPPORTED: &[&str] = &[
    "rate",
    "irate",
    "increase",
    "delta",
    "deriv",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "quantile_over_time",
    "last_over_time",
    "histogram_quantile",
    "abs",
    "ceil",
    "floor",
    "round",
    "clamp",
    "clamp_min",
    "clamp_max",
    "time",
    "vector",
    "scalar",
    "absent",
    "absent_over_time",
];

fn matrix_selector(expr: &Expr) -> Result<&MatrixSelector> {
    match expr {
        Expr::MatrixSelector(ms) => Ok(ms),
        Expr::Paren(p) => matrix_selector(&p.expr),
        _ => Err(EvalError("expected a range vector selector like `metric[5m]`".into())),
    }
}

fn scalar(expr: &Expr, cx: &Context<'_>) -> Result<f64> {
    match eval(expr, cx)? {
        Value::Scalar(v) => Ok(v),
        _ => Err(EvalError("expected a scalar".into())),
    }
}

fn matrix(expr: &Expr, cx: &Context<'_>) -> Result<(Vec<RangeElem>, (i64, i64))> {
    let ms = matrix_selector(expr)?;
    let value = eval(expr, cx)?;
    let Value::Matrix(m) = value else {
        return Err(EvalError("expected a range vector".into()));
    };
    Ok((m, range_bounds(ms, cx)))
}

/// Calls function `name` with `args` at `cx`.
pub(crate) fn call(name: &str, args: &[Box<Expr>], cx: &Context<'_>) -> Result<Value> {
    let arg = |i: usize| -> Result<&Expr> {
        args.get(i).map(|b| &**b).ok_or_else(|| EvalError(format!("{name}() needs argument {}", i + 1)))
    };
    let per_series = |f: RangeFn<'_>| -> Result<Value> {
        let (m, bounds) = matrix(arg(0)?, cx)?;
        Ok(Value::Vector(
            m.into_iter()
                .filter_map(|r| f(&r.points, bounds).map(|value| Elem { labels: drop_name(r.labels), value }))
                .collect(),
        ))
    };
    let elementwise = |f: &dyn Fn(f64) -> f64| -> Result<Value> {
        Ok(Value::Vector(
            vector_arg(arg(0)?, cx)?
                .into_iter()
                .map(|e| Elem { labels: drop_name(e.labels), value: f(e.value) })
                .collect(),
        ))
    };
    match name {
        "rate" => per_series(&|p, b| extrapolated(p, b, true, true)),
        "increase" => per_series(&|p, b| extrapolated(p, b, true, false)),
        "delta" => per_series(&|p, b| extrapolated(p, b, false, false)),
        "irate" => per_series(&|p, _| irate(p)),
        "deriv" => per_series(&|p, _| deriv(p)),
        "avg_over_time" => per_series(&|p, _| Some(kahan_mean(&values(p)))),
        "min_over_time" => per_series(&|p, _| Some(min_of(&values(p)))),
        "max_over_time" => per_series(&|p, _| Some(max_of(&values(p)))),
        "sum_over_time" => per_series(&|p, _| Some(kahan_sum(&values(p)))),
        "count_over_time" => per_series(&|p, _| Some(p.len() as f64)),
        "last_over_time" => per_series(&|p, _| p.last().map(|x| x.v)),
        "quantile_over_time" => {
            let q = scalar(arg(0)?, cx)?;
            let (m, _) = matrix(arg(1)?, cx)?;
            Ok(Value::Vector(
                m.into_iter()
                    .map(|r| Elem { value: quantile(q, &values(&r.points)), labels: drop_name(r.labels) })
                    .collect(),
            ))
        }
        "histogram_quantile" => {
            let q = scalar(arg(0)?, cx)?;
            Ok(Value::Vector(histogram_quantile(q, vector_arg(arg(1)?, cx)?)))
        }
        "abs" => elementwise(&f64::abs),
        "ceil" => elementwise(&f64::ceil),
        "floor" => elementwise(&f64::floor),
        "round" => {
            let to = match args.get(1) {
                Some(e) => scalar(e, cx)?,
                None => 1.0,
            };
            // Prometheus multiplies by the inverse: `round(0.35, 0.1)` is 0.4, not 0.30000000000000004.
            let inverse = 1.0 / to;
            elementwise(&|v| (v * inverse + 0.5).floor() / inverse)
        }
        "clamp_min" => {
            let min = scalar(arg(1)?, cx)?;
            elementwise(&|v| go_max(min, v))
        }
        "clamp_max" => {
            let max = scalar(arg(1)?, cx)?;
            elementwise(&|v| go_min(max, v))
        }
        "clamp" => {
            let (min, max) = (scalar(arg(1)?, cx)?, scalar(arg(2)?, cx)?);
            if max < min {
                return Ok(Value::Vector(Vec::new()));
            }
            elementwise(&|v| go_max(min, go_min(max, v)))
        }
        "time" => Ok(Value::Scalar(cx.t as f64 / 1000.0)),
        "vector" => Ok(Value::Vector(vec![Elem { labels: Labels::new(), value: scalar(arg(0)?, cx)? }])),
        "scalar" => {
            let v = vector_arg(arg(0)?, cx)?;
            Ok(Value::Scalar(if v.len() == 1 { v[0].value } else { f64::NAN }))
        }
        "absent" => {
            let present = !vector_arg(arg(0)?, cx)?.is_empty();
            Ok(absent(present, arg(0)?))
        }
        "absent_over_time" => {
            let (m, _) = matrix(arg(0)?, cx)?;
            Ok(absent(!m.is_empty(), arg(0)?))
        }
        other => Err(EvalError(format!("function {other}() is not supported"))),
    }
}

/// Go's `math.Max`: NaN wins (except over +Inf), unlike `f64::max` which ignores it.
fn go_max(a: f64, b: f64) -> f64 {
    if a == f64::INFINITY || b == f64::INFINITY {
        f64::INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() { b } else { a }
    } else {
        a.max(b)
    }
}

/// Go's `math.Min`: NaN wins (except over -Inf).
fn go_min(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY || b == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() { a } else { b }
    } else {
        a.min(b)
    }
}

fn values(points: &[Point]) -> Vec<f64> {
    points.iter().map(|p| p.v).collect()
}

/// `absent`: one element with the selector's equality labels when nothing matched.
fn absent(present: bool, expr: &Expr) -> Value {
    if present {
        return Value::Vector(Vec::new());
    }
    let selector = match expr {
        Expr::VectorSelector(vs) => Some(vs),
        Expr::MatrixSelector(ms) => Some(&ms.vs),
        _ => None,
    };
    let mut labels = Labels::new();
    if let Some(vs) = selector {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for m in &vs.matchers.matchers {
            *seen.entry(m.name.as_str()).or_default() += 1;
        }
        for m in &vs.matchers.matchers {
            if m.name != "__name__"
                && matches!(m.op, promql_parser::label::MatchOp::Equal)
                && seen.get(m.name.as_str()) == Some(&1)
            {
                labels.insert(m.name.clone(), m.value.clone());
            }
        }
    }
    Value::Vector(vec![Elem { labels, value: 1.0 }])
}

/// Prometheus's `extrapolatedRate` (2.x): the change over the samples, with counter resets
/// added back, extrapolated towards the range edges when the samples stop short of them.
fn extrapolated(points: &[Point], (start, end): (i64, i64), counter: bool, per_second: bool) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let first = points[0];
    let last = points[points.len() - 1];
    let mut result = last.v - first.v;
    if counter {
        for w in points.windows(2) {
            if w[1].v < w[0].v {
                result += w[0].v;
            }
        }
    }
    let mut to_start = (first.t - start) as f64 / 1000.0;
    let to_end = (end - last.t) as f64 / 1000.0;
    let sampled = (last.t - first.t) as f64 / 1000.0;
    let average_gap = sampled / (points.len() - 1) as f64;
    if counter && result > 0.0 && first.v >= 0.0 {
        let to_zero = sampled * (first.v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = average_gap * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold { to_start } else { average_gap / 2.0 };
    interval += if to_end < threshold { to_end } else { average_gap / 2.0 };
    // One factor, applied once, in Prometheus's order: results agree to the last bit.
    let mut factor = interval / sampled;
    if per_second {
        factor /= (end - start) as f64 / 1000.0;
    }
    Some(result * factor)
}

fn irate(points: &[Point]) -> Option<f64> {
    let [.., prev, last] = points else { return None };
    let dt = (last.t - prev.t) as f64 / 1000.0;
    if dt == 0.0 {
        return None;
    }
    let change = if last.v < prev.v { last.v } else { last.v - prev.v };
    Some(change / dt)
}

/// Least-squares slope per second.
fn deriv(points: &[Point]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    // Prometheus's `linearRegression`: compensated sums, and a constant series has slope 0.
    let t0 = points[0].t;
    let first = points[0].v;
    if points.iter().all(|p| p.v == first) {
        return Some(if first.is_infinite() { f64::NAN } else { 0.0 });
    }
    let n = points.len() as f64;
    let (mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sxx, mut cxx) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for p in points {
        let x = (p.t - t0) as f64 / 1000.0;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(p.v, sy, cy);
        (sxy, cxy) = kahan_inc(x * p.v, sxy, cxy);
        (sxx, cxx) = kahan_inc(x * x, sxx, cxx);
    }
    let (sx, sy, sxy, sxx) = (sx + cx, sy + cy, sxy + cxy, sxx + cxx);
    let cov = sxy - sx * sy / n;
    let var = sxx - sx * sx / n;
    Some(cov / var)
}

/// Neumaier-compensated addition step, as Prometheus's `kahanSumInc`.
fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() { c + ((sum - t) + inc) } else { c + ((inc - t) + sum) };
    (t, c)
}

/// Compensated sum (`sum_over_time`).
fn kahan_sum(values: &[f64]) -> f64 {
    let (mut sum, mut c) = (0.0, 0.0);
    for &v in values {
        (sum, c) = kahan_inc(v, sum, c);
    }
    if sum.is_infinite() { sum } else { sum + c }
}

/// Whether an infinite running mean stays as it is when `v` arrives: a finite value or an
/// infinity of the same sign cannot change it (Prometheus's rule; NaN and the opposite
/// infinity still do).
fn mean_stays_infinite(mean: f64, v: f64) -> bool {
    mean.is_infinite() && ((v.is_infinite() && (mean > 0.0) == (v > 0.0)) || (!v.is_infinite() && !v.is_nan()))
}

/// Incremental, compensated mean (`avg_over_time`), as Prometheus computes it.
fn kahan_mean(values: &[f64]) -> f64 {
    let (mut mean, mut c, mut count) = (0.0f64, 0.0, 0.0);
    for &v in values {
        count += 1.0;
        if mean_stays_infinite(mean, v) {
            continue;
        }
        (mean, c) = kahan_inc(v / count - mean / count, mean, c);
    }
    if mean.is_infinite() { mean } else { mean + c }
}

/// Incremental mean (`avg` aggregation): `mean += v/n - mean/n`, as Prometheus computes it.
pub(crate) fn incremental_mean(values: &[f64]) -> f64 {
    let mut iter = values.iter();
    let Some(&first) = iter.next() else { return f64::NAN };
    let (mut mean, mut count) = (first, 1.0);
    for &v in iter {
        count += 1.0;
        if mean_stays_infinite(mean, v) {
            continue;
        }
        mean += v / count - mean / count;
    }
    mean
}

/// Minimum, ignoring NaN unless everything is NaN (as Prometheus).
pub(crate) fn min_of(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NAN, |a, v| if a.is_nan() || v < a { v } else { a })
}

/// Maximum, ignoring NaN unless everything is NaN.
pub(crate) fn max_of(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NAN, |a, v| if a.is_nan() || v > a { v } else { a })
}

/// Population variance.
pub(crate) fn stdvar(values: &[f64]) -> f64 {
    // Prometheus's running (Welford) form, started from the first value, so the result
    // agrees to the last bit.
    let Some((&first, rest)) = values.split_first() else { return f64::NAN };
    let (mut count, mut mean, mut acc) = (1.0, first, 0.0);
    for &v in rest {
        count += 1.0;
        let delta = v - mean;
        mean += delta / count;
        acc += delta * (v - mean);
    }
    acc / count
}

/// `topk`/`bottomk` exactly as Prometheus 2.x picks and orders them: a heap filled in input
/// order, started with the first element; a better value (or anything, over a NaN root)
/// evicts the root by `heap.Pop` then `heap.Push` (in place when k is 1); the result is the
/// heap sorted best first (`sort.Sort(sort.Reverse(heap))`, an insertion sort for up to 12
/// elements). So ties, NaN, and the order later aggregations see, all match. Mirrors Go's
/// `container/heap`.
pub(crate) fn select_k(members: Vec<Elem>, k: usize, top: bool) -> Vec<Elem> {
    // Go's `Less` of vectorByValueHeap (topk) and vectorByReverseValueHeap (bottomk).
    let less = |a: f64, b: f64| a.is_nan() || if top { a < b } else { a > b };
    let up = |h: &mut Vec<Elem>, mut j: usize| {
        while j > 0 {
            let i = (j - 1) / 2;
            if !less(h[j].value, h[i].value) {
                break;
            }
            h.swap(i, j);
            j = i;
        }
    };
    let down = |h: &mut Vec<Elem>, i0: usize, n: usize| {
        let mut i = i0;
        loop {
            let j1 = 2 * i + 1;
            if j1 >= n {
                break;
            }
            let mut j = j1;
            if j1 + 1 < n && less(h[j1 + 1].value, h[j1].value) {
                j = j1 + 1;
            }
            if !less(h[j].value, h[i].value) {
                break;
            }
            h.swap(i, j);
            i = j;
        }
    };
    let mut heap: Vec<Elem> = Vec::with_capacity(k.min(members.len()));
    for e in members {
        if heap.is_empty() {
            heap.push(e);
            continue;
        }
        let root = heap[0].value;
        let better = if top { root < e.value } else { root > e.value };
        if !(heap.len() < k || better || root.is_nan()) {
            continue;
        }
        if heap.len() == k {
            if k == 1 {
                heap[0] = e;
                continue;
            }
            let n = heap.len() - 1;
            heap.swap(0, n);
            down(&mut heap, 0, n);
            heap.pop();
        }
        heap.push(e);
        let last = heap.len() - 1;
        up(&mut heap, last);
    }
    for i in 1..heap.len() {
        let mut j = i;
        while j > 0 && less(heap[j - 1].value, heap[j].value) {
            heap.swap(j, j - 1);
            j -= 1;
        }
    }
    heap
}

/// Ordering with NaN below every number.
pub(crate) fn nan_low_cmp(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// Prometheus's φ-quantile with linear interpolation between closest ranks.
pub(crate) fn quantile(q: f64, values: &[f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    let mut sorted = values.to_vec();
    // NaN sorts below every number, as in Prometheus (and a total order: `sort_by` may
    // panic on one that is not).
    sorted.sort_by(|a, b| nan_low_cmp(*a, *b));
    let n = sorted.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    sorted[lower as usize] * (1.0 - weight) + sorted[upper as usize] * weight
}

/// `histogram_quantile` over classic buckets (`le` labels), as Prometheus's `bucketQuantile`.
fn histogram_quantile(q: f64, input: Vec<Elem>) -> Vec<Elem> {
    let mut groups: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
    for e in input {
        let Some(le) = e.labels.get("le").and_then(|s| parse_le(s)) else { continue };
        let mut labels = drop_name(e.labels);
        labels.remove("le");
        groups.entry(labels).or_default().push((le, e.value));
    }
    groups.into_iter().map(|(labels, buckets)| Elem { labels, value: bucket_quantile(q, buckets) }).collect()
}

fn parse_le(text: &str) -> Option<f64> {
    match text.trim() {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        other => other.parse().ok(),
    }
}

fn bucket_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    if q.is_nan() {
        return f64::NAN;
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(Ordering::Equal));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Coalesce equal bounds, then force cumulative counts to be monotonic.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for (le, count) in buckets {
        match merged.last_mut() {
            Some(last) if last.0 == le => last.1 += count,
            _ => merged.push((le, count)),
        }
    }
    let mut max = f64::NEG_INFINITY;
    for b in &mut merged {
        if b.1 > max {
            max = b.1;
        } else {
            b.1 = max;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = merged.partition_point(|x| x.1 < rank);
    if b == merged.len() - 1 {
        return merged[merged.len() - 2].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let mut start = 0.0;
    let end = merged[b].0;
    let mut count = merged[b].1;
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(v: &[(i64, f64)]) -> Vec<Point> {
        v.iter().map(|&(t, v)| Point { t: t * 1000, v }).collect()
    }

    #[test]
    fn rate_extrapolates_to_the_range_edges() {
        let cases: &[(&[(i64, f64)], (i64, i64), Option<f64>, &str)] = &[
            (&[(0, 0.0), (60, 60.0)], (0, 60), Some(1.0), "samples at both edges: plain slope"),
            (
                &[(15, 15.0), (30, 30.0), (45, 45.0), (60, 60.0)],
                (0, 60),
                Some(1.0),
                "extrapolated back to zero, not past it",
            ),
            (
                &[(0, 10.0), (30, 20.0), (60, 5.0)],
                (0, 60),
                Some(15.0 / 60.0),
                "a counter reset adds the pre-reset value: 10 up to 20, then 0 up to 5",
            ),
            (&[(0, 5.0)], (0, 60), None, "one sample has no rate"),
        ];
        for (points, bounds, want, why) in cases {
            let got = extrapolated(&pts(points), (bounds.0 * 1000, bounds.1 * 1000), true, true);
            match (got, want) {
                (Some(g), Some(w)) => assert!((g - w).abs() < 1e-9, "{why}: {g} vs {w}"),
                (g, w) => assert_eq!(g, *w, "{why}"),
            }
        }
    }

    #[test]
    fn irate_uses_the_last_two_samples() {
        assert_eq!(irate(&pts(&[(0, 0.0), (10, 5.0), (20, 25.0)])), Some(2.0));
        assert_eq!(irate(&pts(&[(0, 50.0), (10, 5.0)])), Some(0.5), "after a reset the new value is the increase");
    }

    #[test]
    fn deriv_is_the_least_squares_slope() {
        let got = deriv(&pts(&[(0, 1.0), (10, 3.0), (20, 5.0)])).unwrap();
        assert!((got - 0.2).abs() < 1e-12);
    }

    #[test]
    fn quantiles_interpolate_between_ranks() {
        assert_eq!(quantile(0.5, &[1.0, 2.0, 3.0, 4.0]), 2.5);
        assert_eq!(quantile(0.0, &[3.0, 1.0]), 1.0);
        assert_eq!(quantile(2.0, &[1.0]), f64::INFINITY);
    }

    #[test]
    fn histogram_quantile_interpolates_inside_the_bucket() {
        let buckets = vec![(0.1, 50.0), (0.5, 90.0), (1.0, 100.0), (f64::INFINITY, 100.0)];
        assert!((bucket_quantile(0.5, buckets.clone()) - 0.1).abs() < 1e-12, "rank 50 is the top of the first bucket");
        assert!((bucket_quantile(0.7, buckets.clone()) - 0.3).abs() < 1e-12, "rank 70 is halfway into (0.1, 0.5]");
        assert!(bucket_quantile(0.5, vec![(1.0, 1.0)]).is_nan(), "no +Inf bucket");
        assert_eq!(
            bucket_quantile(0.99, vec![(1.0, 0.0), (f64::INFINITY, 10.0)]),
            1.0,
            "rank in +Inf bucket: the last finite bound"
        );
    }
}
