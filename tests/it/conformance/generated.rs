//! Seeded random scenarios: expressions drawn from a small grammar over gauges, counters and
//! a histogram, with random `for`/`keep_firing_for`, sample spacing, evaluation interval and
//! input series (decimals, gaps, staleness markers, resets, runs in `a+bxn` notation). The
//! grammar tracks each expression's label *shape* so vector matching is always one-to-one or
//! an explicit many-to-one, and no two outputs differ only in `__name__`: every generated
//! rule is valid in Prometheus and evaluates without error, and any difference is ours.
//!
//! [`classics`] puts the common alert shapes through the same random inputs in every run.
//! `CONFORMANCE_SEED` and `CONFORMANCE_CASES` pick another seed or more cases, to hunt for
//! disagreements beyond the fixed set the test suite runs.

use super::harness::{MIN, RuleExt, SEC, Scenario, m, rule};

/// A small, fast, seeded generator (SplitMix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// Which labels identify an expression's elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `job` and `inst` (a raw series).
    Full,
    /// `job` only.
    Job,
    /// No labels: at most one element.
    Empty,
}

const RANGES: &[&str] = &["1m", "2m", "3m", "5m", "90s"];
const GAUGE_FNS: &[&str] = &[
    "delta",
    "deriv",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "last_over_time",
];
const COUNTER_FNS: &[&str] = &["rate", "increase", "irate"];
const AGGS: &[&str] = &["sum", "avg", "min", "max", "count", "group", "stddev", "stdvar"];
const ARITH: &[&str] = &["+", "-", "*", "/"];
const CMP: &[&str] = &[">", "<", ">=", "<=", "!=", "=="];
const NUMS: &[&str] = &["0", "1", "2", "2.5", "0.5", "10"];

fn leaf(r: &mut Rng) -> (String, Shape) {
    let range = *r.pick(RANGES);
    let text = match r.below(9) {
        0 => "g".to_string(),
        1 => r#"g{job="a"}"#.to_string(),
        2 => "g offset 1m".to_string(),
        3 => format!("quantile_over_time({}, g[{range}])", r.pick(&["0.5", "0.1", "0.9"])),
        4 | 5 => format!("{}(g[{range}])", r.pick(GAUGE_FNS)),
        6 => format!("{}(c_total[{range}] offset 1m)", r.pick(COUNTER_FNS)),
        _ => format!("{}(c_total[{range}])", r.pick(COUNTER_FNS)),
    };
    (text, Shape::Full)
}

fn vector(r: &mut Rng, depth: usize) -> (String, Shape) {
    if depth == 0 {
        return leaf(r);
    }
    match r.below(13) {
        0 | 1 => leaf(r),
        2 => {
            let (inner, shape) = vector(r, depth - 1);
            // histogram_quantile returns its groups in Go map order, at random: over its
            // output only aggregations that do not depend on the order.
            let op = if inner.contains("histogram_quantile") {
                r.pick(&["sum", "min", "max", "count", "group"])
            } else {
                r.pick(AGGS)
            };
            match (shape, r.below(3)) {
                (Shape::Full, 0) => (format!("{op} by (job) ({inner})"), Shape::Job),
                (Shape::Full, 1) => (format!("{op} without (inst) ({inner})"), Shape::Job),
                _ => (format!("{op}({inner})"), Shape::Empty),
            }
        }
        3 => {
            let (mut inner, mut shape) = vector(r, depth - 1);
            if inner.contains("histogram_quantile") {
                // Ties among its randomly ordered output would be broken at random.
                (inner, shape) = leaf(r);
            }
            let which = r.pick(&["topk", "bottomk"]);
            let k = r.pick(&["1", "2", "3"]);
            if shape == Shape::Full && r.chance(50) {
                (format!("{which} by (job) ({k}, {inner})"), shape)
            } else {
                (format!("{which}({k}, {inner})"), shape)
            }
        }
        4 => {
            let (inner, shape) = vector(r, depth - 1);
            if shape == Shape::Full && r.chance(50) {
                (format!("quantile by (job) (0.5, {inner})"), Shape::Job)
            } else {
                (format!("quantile(0.75, {inner})"), Shape::Empty)
            }
        }
        5 => {
            let (inner, shape) = vector(r, depth - 1);
            let f = match r.below(10) {
                0 => format!("abs({inner})"),
                1 => format!("ceil({inner})"),
                2 => format!("floor({inner})"),
                3 => format!("round({inner})"),
                4 => format!("clamp_min({inner}, 1)"),
                5 => format!("clamp({inner}, -1, 2.5)"),
                6 => format!("round({inner}, {})", r.pick(&["0.1", "0.5", "3"])),
                7 => format!("-({inner})"),
                8 => format!("time() - ({inner})"),
                _ => format!("clamp_max({inner}, 3)"),
            };
            (f, shape)
        }
        6 => {
            let (inner, shape) = vector(r, depth - 1);
            let (op, n) = (r.pick(ARITH), r.pick(NUMS));
            if r.chance(50) { (format!("({inner}) {op} {n}"), shape) } else { (format!("{n} {op} ({inner})"), shape) }
        }
        7 => {
            // Same shape on both sides: default one-to-one matching.
            let (a, shape) = vector(r, depth - 1);
            let b = same_shape(r, shape, depth - 1);
            let op = if r.chance(70) { r.pick(ARITH) } else { r.pick(CMP) };
            (format!("({a}) {op} ({b})"), shape)
        }
        8 => {
            // Many-to-one: raw series against a per-job aggregate.
            let (a, _) = leaf(r);
            let (inner, _) = leaf(r);
            let op = if r.chance(70) { r.pick(ARITH) } else { r.pick(CMP) };
            (format!("({a}) {op} on (job) group_left () ({} by (job) ({inner}))", r.pick(AGGS)), Shape::Full)
        }
        9 => {
            let (a, shape) = vector(r, depth - 1);
            let b = same_shape(r, shape, depth - 1);
            let op = r.pick(&["and", "or", "unless"]);
            if shape == Shape::Full && r.chance(30) {
                let (inner, _) = leaf(r);
                (format!("({a}) {op} on (job) (max by (job) ({inner}) > 2)"), shape)
            } else {
                (format!("({a}) {op} ({b})"), shape)
            }
        }
        10 => {
            let range = r.pick(RANGES);
            if r.chance(50) {
                (
                    format!(
                        "histogram_quantile({}, sum by (le) (rate(h_bucket[{range}])))",
                        r.pick(&["0.5", "0.9", "0.99"])
                    ),
                    Shape::Empty,
                )
            } else {
                (
                    format!(
                        "histogram_quantile({}, sum by (job, le) (rate(h_bucket[{range}])))",
                        r.pick(&["0.25", "0.95", "1"])
                    ),
                    Shape::Job,
                )
            }
        }
        11 => match r.below(4) {
            0 => (r#"absent(g{job="c"})"#.to_string(), Shape::Empty),
            1 => (format!(r#"absent_over_time(g{{job="a",inst="1"}}[{}])"#, r.pick(RANGES)), Shape::Empty),
            2 => {
                let (inner, _) = leaf(r);
                (format!("vector(scalar(sum({inner})))"), Shape::Empty)
            }
            _ => {
                let (a, shape) = vector(r, depth - 1);
                let b = same_shape(r, shape, depth - 1);
                (format!("({a}) {} bool ({b})", r.pick(CMP)), shape)
            }
        },
        _ => {
            let (inner, shape) = vector(r, depth - 1);
            (format!("({inner}) {} {}", r.pick(CMP), r.pick(NUMS)), shape)
        }
    }
}

/// An expression of the given shape.
fn same_shape(r: &mut Rng, shape: Shape, depth: usize) -> String {
    for _ in 0..20 {
        let (e, s) = vector(r, depth);
        if s == shape {
            return e;
        }
    }
    let (inner, _) = leaf(r);
    match shape {
        Shape::Full => inner,
        Shape::Job => format!("{} by (job) ({inner})", r.pick(AGGS)),
        Shape::Empty => format!("{}({inner})", r.pick(AGGS)),
    }
}

fn expression(r: &mut Rng) -> String {
    let (e, _) = vector(r, 2);
    match r.below(5) {
        0 | 1 => e,
        2 => format!("{e} > bool {}", r.pick(NUMS)),
        _ => format!("{e} {} {}", r.pick(CMP), r.pick(NUMS)),
    }
}

fn gauge_values(r: &mut Rng, n: usize) -> String {
    const STEPS: &[f64] = &[0.0, 0.1, 0.25, 0.5, 1.0, 1.3, 2.0, 3.7];
    let mut v: f64 = *r.pick(&[0.0, 1.0, 2.5, 4.0]);
    // The first sample is a number: it decides when promtool creates the series.
    let mut tokens = vec![format!("{v}")];
    for _ in 1..n {
        match r.below(100) {
            0..=6 => tokens.push("_".to_string()),
            7..=9 => tokens.push("stale".to_string()),
            10 => tokens.push("NaN".to_string()),
            _ => {
                let step = *r.pick(STEPS);
                v = if r.chance(50) { v + step } else { v - step };
                v = (v * 100.0).round() / 100.0; // stay on short decimals
                tokens.push(format!("{v}"));
            }
        }
    }
    tokens.join(" ")
}

fn counter_values(r: &mut Rng, n: usize) -> String {
    const INCS: &[f64] = &[0.0, 1.0, 2.0, 5.0, 7.5, 13.0, 0.3];
    let mut v: f64 = *r.pick(&[0.0, 3.0, 100.0]);
    // The first sample is a number: it decides when promtool creates the series.
    let mut tokens = vec![format!("{v}")];
    let mut i = 1;
    while i < n {
        match r.below(100) {
            0..=4 => tokens.push("_".to_string()),
            5..=7 => {
                v = *r.pick(&[0.0, 1.0, 4.0]);
                tokens.push(format!("{v}"));
            }
            8..=17 if i + 4 < n => {
                // A run in promtool's notation: v, v+inc, … (repeated addition on both sides).
                let inc = *r.pick(INCS);
                let k = 2 + r.below(3);
                tokens.push(format!("{v}+{inc}x{k}"));
                for _ in 0..k {
                    v += inc;
                }
                i += k;
            }
            _ => {
                v += *r.pick(INCS);
                tokens.push(format!("{v}"));
            }
        }
        i += 1;
    }
    tokens.join(" ")
}

/// Cumulative bucket counters for one job: le 0.1, 0.5, 1, +Inf.
fn histogram(r: &mut Rng, job: &str, n: usize) -> Vec<(String, String)> {
    let mut counts = [0u64; 4];
    let mut columns: [Vec<String>; 4] = Default::default();
    for _ in 0..n {
        let mut add = 0;
        for (b, count) in counts.iter_mut().enumerate() {
            add += r.below(if b == 0 { 4 } else { 6 }) as u64;
            *count += add;
            columns[b].push(count.to_string());
        }
    }
    ["0.1", "0.5", "1", "+Inf"]
        .iter()
        .zip(columns)
        .map(|(le, c)| (format!(r#"h_bucket{{job="{job}",le="{le}"}}"#), c.join(" ")))
        .collect()
}

const TEMPLATES: &[&str] = &[
    "{{ $value | humanize }}",
    "{{ $labels.job }}/{{ $labels.inst }} {{ $value | humanizePercentage }}",
    r#"{{ printf "%.3f" $value }}"#,
    "{{ humanize1024 $value }}",
    "{{ $value | humanizeDuration }}",
];

/// The shapes most alert rules take — a rate, an increase, a sum of rates, a gauge threshold,
/// an average over time, a max by a label, a delta, a difference with an offset, a count of a
/// filter, an irate — each in a scenario of its own over random series, with random `for`,
/// `keep_firing_for` and intervals, so that the common forms are compared in every run
/// whatever the random grammar draws.
pub const CLASSICS: [&str; 10] = [
    "rate(c_total[3m]) > 0.05",
    "increase(c_total[4m]) >= 5",
    "sum(rate(c_total[2m])) > 0.1",
    "g > 4",
    "avg_over_time(g[3m]) > 3",
    "max by (job) (g) > 5",
    "delta(g[3m]) > 1",
    "g - g offset 1m > 0",
    "count(g > 2) > 1",
    "irate(c_total[5m]) > 0.1",
];

/// The [`CLASSICS`], two to a scenario, with inputs from `seed`.
pub fn classics(seed: u64) -> Vec<Scenario> {
    let mut r = Rng::new(seed ^ 0xc1a5_51c5);
    CLASSICS
        .chunks(2)
        .enumerate()
        .map(|(n, pair)| {
            scenario(&mut r, &format!("classic-{seed}-{n}"), &format!("Classic{n}"), |_, j| pair[j].into())
        })
        .collect()
}

/// `cases` scenarios from `seed`.
pub fn scenarios(seed: u64, cases: usize) -> Vec<Scenario> {
    let mut r = Rng::new(seed);
    (0..cases).map(|n| scenario(&mut r, &format!("gen-{seed}-{n}"), &format!("Gen{n}"), |r, _| expression(r))).collect()
}

/// Two rules, `{alert}a` and `{alert}b`, with expressions from `expr` and random `for`,
/// `keep_firing_for` and templates, over random series at random intervals.
fn scenario(r: &mut Rng, name: &str, alert: &str, mut expr: impl FnMut(&mut Rng, usize) -> String) -> Scenario {
    let (interval, eval_interval) =
        *r.pick(&[(MIN, MIN), (MIN, MIN), (30 * SEC, MIN), (15 * SEC, MIN), (MIN, 30 * SEC)]);
    let span = m(12);
    let samples = (span / interval) as usize + 1;
    let mut s = Scenario::new(name, "generated");
    for j in 0..2 {
        let expr = expr(r, j);
        let hold = *r.pick(&[0, 0, m(1), m(2), 90 * SEC]);
        let keep = *r.pick(&[0, 0, 0, m(1), m(3)]);
        s = s.rule(
            rule(&format!("{alert}{}", ["a", "b"][j]), &expr)
                .hold(hold)
                .keep(keep)
                .note("v", "{{ $value }}")
                .note("s", r.pick::<&str>(TEMPLATES)),
        );
    }
    // g and c_total series start one tick apart, in label order (inst, then job), so
    // promtool creates them in that order and Prometheus aggregates them in the
    // order we do (see `Scenario::staggered`). h_bucket needs no order: no group of
    // its series has more than two members, and adding two floats commutes.
    let tick = (interval.max(eval_interval) / interval) as usize;
    let lead = |k: usize, values: String| if k == 0 { values } else { format!("_x{} {values}", k * tick) };
    for (k, (inst, job)) in [("1", "a"), ("1", "b"), ("2", "a"), ("2", "b")].into_iter().enumerate() {
        let g = gauge_values(r, samples - k * tick);
        s = s.series(&format!(r#"g{{job="{job}",inst="{inst}"}}"#), &lead(k, g));
        let c = counter_values(r, samples - k * tick);
        s = s.series(&format!(r#"c_total{{job="{job}",inst="{inst}"}}"#), &lead(k, c));
    }
    for job in ["a", "b"] {
        for (sel, values) in histogram(r, job, samples) {
            s = s.series(&sel, &values);
        }
    }
    s.intervals(interval, eval_interval)
        .times(&(0..=span / eval_interval).map(|k| k * eval_interval).collect::<Vec<_>>())
}
