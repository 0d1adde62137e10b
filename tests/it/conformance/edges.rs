//! Hand-written scenarios aimed at the edges where a re-implementation of Prometheus tends to
//! drift: `for` and `keep_firing_for` boundaries, lookback and staleness, counter resets and
//! extrapolation, aggregation and selection order, vector matching, set operators, `absent`,
//! offsets, the element-wise functions, float summation order, and Go's number formatting
//! and template semantics. Most rules have no threshold, so every output element fires and
//! its `{{ $value }}` (printed by Go as the shortest exact decimal) is compared at every tick.

use super::harness::{MIN, RuleExt, SEC, Scenario, m, rule};

const V: &str = "{{ $value }}";

pub fn scenarios() -> Vec<Scenario> {
    let mut out = Vec::new();
    out.extend(errors());
    out.extend(alert_state());
    out.extend(selection());
    out.extend(rates());
    out.extend(aggregation());
    out.extend(matching());
    out.extend(functions());
    out.extend(templates());
    out
}

/// Evaluations that Prometheus refuses: both sides must fail at the same tick.
fn errors() -> Vec<Scenario> {
    vec![
        Scenario::new("error-duplicate-alert-labels", "two series that differ only in __name__ give the same alert")
            .rule(rule("Dup", r#"{__name__=~"x|y"} > 0"#))
            .series(r#"x{a="1"}"#, "1 1 1 1")
            .series(r#"y{a="1"}"#, "_ _ 1 1")
            .fails("Dup", 2),
        Scenario::new("error-implicit-many-to-one", "one-to-one matching with two series on the left per match group")
            .rule(rule("Implicit", "x + on () y"))
            .series(r#"x{a="1"}"#, "1 1 1 1")
            .series(r#"x{a="2"}"#, "1 1 1 1")
            .series("y", "_ 1 1 1")
            .fails("Implicit", 1),
        Scenario::new("error-duplicate-one-side", "group_left with two series on the `one` side")
            .rule(rule("ManyToMany", "x + on () group_left () y"))
            .series(r#"x{a="1"}"#, "1 1 1 1")
            .series(r#"y{b="1"}"#, "1 1 1 1")
            .series(r#"y{b="2"}"#, "_ _ _ 1")
            .fails("ManyToMany", 3),
    ]
}

/// `for`, `keep_firing_for`, and alert identity.
fn alert_state() -> Vec<Scenario> {
    vec![
        Scenario::new("for-boundary", "fires exactly when it has held for `for`, not one tick before; a dip restarts it")
            .rule(rule("Step", "x > 1").hold(m(3)).note("summary", "{{ $labels.instance }} is {{ $value }}"))
            .series(r#"x{instance="a"}"#, "0 0 5 5 5 5 5 0 0")
            .series(r#"x{instance="b"}"#, "5 5 5 0 5 5 5 5 5")
            .minutes(0..=8)
            .quiet("Step", 4)
            .fires("Step", 5, 1)
            .fires("Step", 7, 1)
            .fires("Step", 8, 1),
        Scenario::new("for-sub-minute", "15s samples, 30s evaluation, `for: 90s`; checked between ticks too")
            .rule(rule("Hold90", "x > 1").hold(90 * SEC).note("v", V))
            .series("x", "0x3 5x30")
            .intervals(15 * SEC, 30 * SEC)
            .times(&[45 * SEC, 120 * SEC, 140 * SEC, 150 * SEC, 165 * SEC, 5 * MIN])
            .quiet_at("Hold90", 140 * SEC)
            .fires_at("Hold90", 150 * SEC, 1)
            .fires_at("Hold90", 165 * SEC, 1),
        Scenario::new("for-between-ticks", "`for: 150s` with 1m ticks fires at the first tick at least 150s on")
            .rule(rule("Hold150", "x > 1").hold(150 * SEC))
            .series("x", "0 5x10")
            .minutes(0..=6)
            .quiet("Hold150", 3)
            .fires("Hold150", 4, 1),
        Scenario::new(
            "keep-firing-for",
            "keep_firing_for holds through a flap, resolves exactly after it, keeps the last value; also with `for`, and over a staleness marker",
        )
        .rule(rule("Flap", "x > 1").keep(m(2)).note("v", V))
        .rule(rule("HoldKeep", "y > 1").hold(m(1)).keep(m(1)).note("v", V))
        .rule(rule("KeepStale", "z > 1").keep(m(2)).note("v", V))
        .series("x", "5 0 7 0 0 0 0 9")
        .series("y", "0 5 5 0 6 0 0 0")
        .series("z", "5 stale _ _ 5 5 5 5")
        .minutes(0..=7)
        .fires("Flap", 4, 1)
        .quiet("Flap", 5)
        .fires("Flap", 7, 1)
        .quiet("HoldKeep", 1)
        .fires("HoldKeep", 5, 1)
        .quiet("HoldKeep", 6)
        .fires("KeepStale", 2, 1)
        .quiet("KeepStale", 3),
        Scenario::new("templated-label-identity", "a label templated from $value makes a new alert when the value changes")
            .rule(rule("ByValue", "x > 0").hold(m(1)).label("v", "{{ $value }}"))
            .series("x", "1 1 2 2 2 2")
            .minutes(0..=5)
            .fires("ByValue", 1, 1)
            .quiet("ByValue", 2)
            .fires("ByValue", 3, 1),
    ]
}

/// Lookback, gaps and staleness for instant and range selectors.
fn selection() -> Vec<Scenario> {
    vec![
        Scenario::new("lookback-gaps", "a sample is visible for exactly 5m (closed lookback window) and no longer")
            .rule(rule("Seen", "x == 1"))
            .series("x", "1 _x6 1 _x6")
            .minutes(0..=13)
            .fires("Seen", 5, 1)
            .quiet("Seen", 6)
            .fires("Seen", 12, 1)
            .quiet("Seen", 13),
        Scenario::new("staleness", "a staleness marker hides a series at once; absent() sees it gone")
            .rule(rule("Seen", "x == 1"))
            .rule(rule("Absent", "absent(x)"))
            .series("x", "1 1 stale 1 _ stale _")
            .minutes(0..=6)
            .fires("Seen", 1, 1)
            .quiet("Seen", 2)
            .fires("Seen", 4, 1)
            .quiet("Seen", 5)
            .fires("Absent", 2, 1)
            .quiet("Absent", 3)
            .fires("Absent", 6, 1),
        Scenario::new(
            "staleness-in-ranges",
            "range functions skip staleness markers; a range holding only a marker is absent",
        )
        .rule(rule("Count", "count_over_time(x[3m])").note("v", V))
        .rule(rule("Last", "last_over_time(x[10m])").note("v", V))
        .rule(rule("Max", "max_over_time(x[2m])").note("v", V))
        .rule(rule("AbsentRange", "absent_over_time(x[2m])"))
        .rule(rule("Rate", "rate(x[3m])").note("v", V))
        .series("x", "1 2 stale 4 5 stale _ _ _ _ _ _")
        .minutes(0..=11)
        .fires("Count", 2, 1)
        .quiet("AbsentRange", 6)
        .fires("AbsentRange", 7, 1),
        Scenario::new("range-closed-edges", "a sample exactly at t-range is inside the range (Prometheus 2.x)")
            .rule(rule("Count", "count_over_time(x[2m])").note("v", V))
            .rule(rule("Count90", "count_over_time(x[90s])").note("v", V))
            .series("x", "1x10")
            .minutes(0..=4)
            .fires("Count", 3, 1),
        Scenario::new("offset", "offset shifts instant and range selectors, also inside aggregations")
            .rule(rule("Off", "x offset 2m > 3").note("v", V))
            .rule(rule("RateOff", "rate(c[2m] offset 1m)").note("v", V))
            .rule(rule("DeltaSelf", "x - x offset 1m").note("v", V))
            .rule(rule("OffAgg", "sum(x offset 3m)").note("v", V))
            .series("x", "1 2 3 4 5 6 _ _ _ 1")
            .series("c", "0+10x10")
            .minutes(0..=10)
            .quiet("Off", 4)
            .fires("Off", 5, 1),
        Scenario::new("absent", "absent() and absent_over_time() take only the equality matchers' labels, once each")
            .rule(
                rule("Missing", r#"absent(nope{job="ghost",env=~"p.*"})"#)
                    .note("s", "{{ $labels.job }}/{{ $labels.env }}"),
            )
            .rule(rule("MissingAgg", "absent(sum(nope))"))
            .rule(rule("Dup", r#"absent(nope{a="1",a="2"})"#))
            .rule(rule("Gone", r#"absent(x{job="a"})"#))
            .rule(rule("GoneRange", r#"absent_over_time(x{job="a"}[2m])"#))
            .series(r#"x{job="a"}"#, "1x3")
            .minutes(0..=10)
            .fires("Missing", 0, 1)
            .quiet("Gone", 8)
            .fires("Gone", 9, 1)
            .quiet("GoneRange", 5)
            .fires("GoneRange", 6, 1),
    ]
}

/// rate, increase, irate, delta: resets and extrapolation.
fn rates() -> Vec<Scenario> {
    vec![
        Scenario::new("counter-reset", "rate/increase/irate across resets; delta of a gauge")
            .rule(rule("Inc", "increase(c[3m])").note("v", V))
            .rule(rule("Rate", "rate(c[5m])").note("v", V))
            .rule(rule("IRate", "irate(c[5m])").note("v", V))
            .rule(rule("Delta", "delta(g[4m])").note("v", V))
            .series("c", "0 10 20 5 15 30 2 4 4 4")
            .series("g", "10 9 8 4 4 1 9 9 9 9")
            .minutes(0..=9)
            .quiet("Inc", 0)
            .fires("Inc", 3, 1),
        Scenario::new(
            "rate-extrapolation-15s",
            "15s samples: extrapolation to the window edges, the zero clamp, a reset, odd ranges",
        )
        .rule(rule("Rate1m", "rate(c[1m])").note("v", V))
        .rule(rule("Inc2m", "increase(c[2m])").note("v", V))
        .rule(rule("Rate45s", "rate(c[45s])").note("v", V))
        .rule(rule("Delta3m", "delta(c[3m])").note("v", V))
        .series(r#"c{s="high-start"}"#, "_x3 100+7x20")
        .series(r#"c{s="low-start"}"#, "_x3 1+7x20")
        .series(r#"c{s="reset"}"#, "0+7x5 0+7x15")
        .series(r#"c{s="decimal"}"#, "0.3+0.7x25")
        .intervals(15 * SEC, MIN)
        .minutes(0..=6)
        .fires("Rate1m", 2, 4),
    ]
}

fn aggregation() -> Vec<Scenario> {
    // Created one tick apart (see `Scenario::staggered`) so Prometheus's float arithmetic
    // runs over them in one fixed order; all four exist from 3m.
    let x = [
        (r#"x{job="a",instance="1"}"#, "1.5 2 8 0.1 0.1 0.3 5"),
        (r#"x{job="a",instance="2"}"#, "3 9 8 0.2 0.7 1.1"),
        (r#"x{job="b",instance="3"}"#, "7 1 0.7 1.3 2.1"),
        (r#"x{job="b",instance="4"}"#, "1 _ 1.3 0.1"),
    ];
    vec![
        Scenario::new("aggregations", "sum/avg/min/max/count/group/quantile with by and without, decimal inputs; two aggregates against each other")
            .rule(rule("SumBy", "sum by (job) (x)").note("s", "{{ $labels.job }} {{ $value }}"))
            .rule(rule("SumAll", "sum(x)").note("v", V))
            .rule(rule("CountWithout", "count without (instance) (x)").note("v", V))
            .rule(rule("Avg", "avg(x)").note("v", V))
            .rule(rule("AvgBy", "avg by (job) (x)").note("v", V))
            .rule(rule("Min", "min(x)").note("v", V))
            .rule(rule("MaxBy", "max by (job) (x)").note("v", V))
            .rule(rule("Spread", "max(x) - min(x) > 5").note("v", V))
            .rule(rule("Group", "group by (job) (x)").note("v", V))
            .rule(rule("Quantile", "quantile(0.3, x)").note("v", V))
            .rule(rule("Threshold", "sum by (job) (x) > 10"))
            .staggered(&x)
            .minutes(0..=6)
            .fires("SumBy", 0, 1)
            .fires("SumBy", 3, 2)
            .fires("Threshold", 2, 1)
            .quiet("Threshold", 3)
            .fires("Spread", 3, 1)
            .quiet("Spread", 4),
        Scenario::new("stddev-stdvar", "stddev/stdvar aggregations: Prometheus's running (Welford) arithmetic")
            .rule(rule("Stddev", "stddev(x)").note("v", V))
            .rule(rule("Stdvar", "stdvar by (job) (x)").note("v", V))
            .staggered(&x)
            .minutes(0..=6)
            .fires("Stddev", 0, 1),
        Scenario::new("topk-bottomk", "topk/bottomk pick among ties as Prometheus's heap does (series in creation order); k=0 selects nothing")
            .rule(rule("Top1", "topk(1, x)").note("i", "{{ $labels.i }}"))
            .rule(rule("Top2", "topk(2, x)").note("i", "{{ $labels.i }}"))
            .rule(rule("Bottom2", "bottomk(2, x)").note("i", "{{ $labels.i }}"))
            .rule(rule("TopBy", "topk by (grp) (1, x)").note("i", "{{ $labels.i }}"))
            .rule(rule("Top0", "topk(0, x)"))
            .staggered(&[
                (r#"x{grp="a",i="1"}"#, "5 5 5 5 3 1 4"),
                (r#"x{grp="a",i="2"}"#, "5 5 5 3 2 4"),
                (r#"x{grp="b",i="3"}"#, "1 1 3 3 4"),
                (r#"x{grp="b",i="4"}"#, "5 0 3 4"),
            ])
            .minutes(0..=6)
            .fires("Top1", 3, 1)
            .fires("Top2", 6, 2)
            .fires("TopBy", 6, 2)
            .quiet("Top0", 3),
        Scenario::new(
            "aggregation-order",
            "what Prometheus's order decides: which tied series topk/bottomk evict (heap Pop then Push), the order topk returns (best first) and aggregation groups come in (first seen)",
        )
        .rule(rule("BottomEvict", "bottomk(2, x)").note("v", V))
        .rule(rule("TopEvict", "topk(2, -x)").note("v", V))
        .rule(rule("SumOfTop", "sum(topk(3, y))").note("v", V))
        .rule(rule("AvgOfGroups", "avg(sum by (job) (z))").note("v", V))
        .staggered(&[
            (r#"x{i="1"}"#, "-0.875 -0.875 -0.875 -0.875"),
            (r#"x{i="2"}"#, "-0.995 -0.995 -0.995"),
            (r#"x{i="3"}"#, "-0.995 -0.995"),
            (r#"x{i="4"}"#, "-1"),
        ])
        .staggered(&[(r#"y{i="1"}"#, "0.1 0.1 0.1 0.1"), (r#"y{i="2"}"#, "0.7 0.7 0.7"), (r#"y{i="3"}"#, "0.2 0.2")])
        .staggered(&[(r#"z{inst="1",job="b"}"#, "0.7 0.7 0.7 0.7"), (r#"z{inst="2",job="a"}"#, "0.1 0.1 0.1")])
        .minutes(0..=3)
        .fires("BottomEvict", 3, 2)
        .fires("TopEvict", 3, 2)
        .fires("SumOfTop", 3, 1)
        .fires("AvgOfGroups", 3, 1),
        Scenario::new("nan-values", "NaN inputs: comparisons, min/max, NaN's place in quantile's sort and in topk/bottomk")
            .rule(rule("NotOne", "x != 1").note("v", V))
            .rule(rule("Max", "max(x)").note("v", V))
            .rule(rule("Min", "min(x)").note("v", V))
            .rule(rule("Avg", "avg(x)").note("v", V))
            .rule(rule("Quantile", "quantile(0.5, x)").note("v", V))
            .rule(rule("Top", "topk(1, x)").note("v", V))
            .rule(rule("Bottom", "bottomk(1, x)").note("v", V))
            .staggered(&[(r#"x{i="1"}"#, "0 0 NaN 1 NaN"), (r#"x{i="2"}"#, "0 2 NaN NaN"), (r#"x{i="3"}"#, "3 3 NaN")])
            .minutes(2..=4)
            .fires("NotOne", 2, 3),
        Scenario::new("quantile-over-time-nan", "quantile_over_time over 21 samples, one of them NaN")
            .rule(rule("Q", "quantile_over_time(0.5, x[20m])").note("v", V))
            .series("x", "0 1 2 NaN 4 5 6 0 1 2 3 4 5 6 0 1 2 3 4 5 6")
            .minutes([20])
            .fires("Q", 20, 1),
        Scenario::new("histogram-quantile", "classic buckets: interpolation, the +Inf bucket, q outside [0,1], no +Inf, non-monotonic counts, le=\"1\" and \"1.0\"")
            .rule(rule("P90", "histogram_quantile(0.9, sum by (le) (rate(h_bucket[5m])))").note("d", "{{ $value | humanizeDuration }}"))
            .rule(rule("P50ByJob", "histogram_quantile(0.5, rate(h_bucket[5m]))").note("v", V))
            .rule(rule("P99InInf", r#"histogram_quantile(0.99, rate(h_bucket{job="a"}[5m]))"#).note("v", V))
            .rule(rule("QAbove1", "histogram_quantile(1.5, rate(h_bucket[5m]))").note("v", V))
            .rule(rule("QBelow0", "histogram_quantile(-1, rate(h_bucket[5m]))").note("v", V))
            .rule(rule("NoInf", "histogram_quantile(0.5, nobkt_bucket)").note("v", V))
            .rule(rule("NonMonotonic", "histogram_quantile(0.5, m_bucket)").note("v", V))
            .rule(rule("Slow", "histogram_quantile(0.9, sum by (le) (rate(h_bucket[5m]))) > 0.1"))
            .series(r#"h_bucket{job="a",le="0.05"}"#, "0+10x10")
            .series(r#"h_bucket{job="a",le="0.1"}"#, "0+12x10")
            .series(r#"h_bucket{job="a",le="0.5"}"#, "0+20x10")
            .series(r#"h_bucket{job="a",le="+Inf"}"#, "0+21x10")
            .series(r#"h_bucket{job="b",le="1"}"#, "0+1x10")
            .series(r#"h_bucket{job="b",le="1.0"}"#, "0+2x10")
            .series(r#"h_bucket{job="b",le="2.5"}"#, "0+7x10")
            .series(r#"h_bucket{job="b",le="+Inf"}"#, "0+7x10")
            .series(r#"nobkt_bucket{le="1"}"#, "1x10")
            .series(r#"nobkt_bucket{le="2"}"#, "2x10")
            .series(r#"m_bucket{le="1"}"#, "5x10")
            .series(r#"m_bucket{le="2"}"#, "3x10")
            .series(r#"m_bucket{le="4"}"#, "8x10")
            .series(r#"m_bucket{le="+Inf"}"#, "10x10")
            .minutes(0..=10)
            .fires("P90", 5, 1)
            .fires("NoInf", 0, 1),
    ]
}

fn matching() -> Vec<Scenario> {
    vec![
        Scenario::new(
            "vector-matching",
            "on/ignoring, group_left/group_right with extra labels, bool, comparison values",
        )
        .rule(
            rule("Ratio", "used / on (pool) group_left (owner) max_")
                .note("s", "{{ $labels.pool }} {{ $labels.owner }} {{ $value | humanizePercentage }}"),
        )
        .rule(rule("Ignoring", "a - ignoring (kind) b").note("v", V))
        .rule(rule("Bool", "a > bool 3").note("v", V))
        .rule(rule("CmpVec", "a > ignoring (kind) b").note("v", V))
        .rule(
            rule("GroupRight", "max_ > on (pool) group_right (owner) used")
                .note("s", "{{ $labels.conn }} {{ $labels.owner }} {{ $value }}"),
        )
        .rule(rule("OnNothing", "sum(used) / on () sum(max_)").note("v", V))
        .rule(rule("HighUse", "used / on (pool) group_left (owner) max_ > 0.5"))
        .series(r#"used{pool="p1",conn="1"}"#, "6 1 2.5")
        .series(r#"used{pool="p1",conn="2"}"#, "2 1 0.5")
        .series(r#"used{pool="p2",conn="1"}"#, "3 3 3")
        .series(r#"max_{pool="p1",owner="ops"}"#, "10 10 10")
        .series(r#"max_{pool="p2",owner="dev"}"#, "4 4 _")
        .series(r#"a{kind="x",j="1"}"#, "5 1 4")
        .series(r#"b{kind="y",j="1"}"#, "2 2 4")
        .minutes(0..=2)
        .fires("Ratio", 0, 3)
        .fires("HighUse", 0, 2)
        .fires("HighUse", 1, 1),
        Scenario::new("set-operators", "and/or/unless with and without on/ignoring")
            .rule(rule("And", "x > 1 and on (i) y").note("v", V))
            .rule(rule("Or", "x > 5 or y > 5").note("v", V))
            .rule(rule("Unless", "x unless y").note("v", V))
            .rule(rule("UnlessIgnoring", "x unless ignoring (k) z").note("v", V))
            .rule(rule("OrOn", "x or on (i) w").note("v", V))
            .series(r#"x{i="1"}"#, "2 9 0")
            .series(r#"x{i="2"}"#, "3 3 7")
            .series(r#"y{i="1"}"#, "1 7 6")
            .series(r#"z{i="2",k="q"}"#, "1 1 _")
            .series(r#"w{i="3"}"#, "1 1 1")
            .series(r#"w{i="1",extra="e"}"#, "4 4 4")
            .minutes(0..=2)
            .fires("And", 0, 1)
            .fires("Unless", 0, 1),
        Scenario::new(
            "arithmetic-and-scalars",
            "vector/scalar arithmetic, scalar on the left of a comparison, bool, division by zero, -0",
        )
        .rule(rule("Lin", "2 * x + 1 > 5").note("v", V))
        .rule(rule("ScalarLeft", "3 < x").note("v", V))
        .rule(rule("BoolScalar", "x >= bool 3").note("v", V))
        .rule(rule("Div0", "x / 0").note("v", V))
        .rule(rule("Neg", "-x").note("v", V))
        .rule(rule("Pow", "x ^ 0.5").note("v", V))
        .rule(rule("Mod", "x % 2.5").note("v", V))
        .rule(rule("Scalar", "vector(scalar(sum(x)) * 2)").note("v", V))
        .series(r#"x{i="1"}"#, "0 3 7.5")
        .series(r#"x{i="2"}"#, "-2 4 _")
        .minutes(0..=2)
        .fires("ScalarLeft", 1, 1),
    ]
}

fn functions() -> Vec<Scenario> {
    vec![
        Scenario::new("math-functions", "abs/ceil/floor/round/clamp*; clamp with min > max selects nothing")
            .rule(rule("Abs", "abs(x)").note("v", V))
            .rule(rule("Ceil", "ceil(x)").note("v", V))
            .rule(rule("Floor", "floor(x)").note("v", V))
            .rule(rule("Round", "round(x)").note("v", V))
            .rule(rule("ClampMax", "clamp_max(abs(x - 10), 4) == 4").note("v", V))
            .rule(rule("ClampMin", "clamp_min(x, 0)").note("v", V))
            .rule(rule("Clamp", "clamp(x, -1, 1)").note("v", V))
            .rule(rule("ClampEmpty", "clamp(x, 2, 1)"))
            .series(r#"x{k="a"}"#, "-2.5 0.5 7.25 -0.5")
            .series(r#"x{k="b"}"#, "1.5 -1.5 14 2.5")
            .minutes(0..=3)
            .fires("Abs", 0, 2)
            .quiet("ClampEmpty", 0),
        Scenario::new("clamp-nan", "clamp*, like Go's math.Max/Min, keep NaN (Rust's f64::max/min drop it)")
            .rule(rule("ClampMin", "clamp_min(x, 1)").note("v", V))
            .rule(rule("ClampMax", "clamp_max(x, 1)").note("v", V))
            .rule(rule("Clamp", "clamp(x, 0, 1)").note("v", V))
            .rule(rule("Below10", "clamp_min(x, 1) < 10"))
            .series(r#"x{k="nan"}"#, "NaN NaN")
            .series(r#"x{k="five"}"#, "5 5")
            .minutes(0..=1)
            .fires("ClampMin", 0, 2)
            .fires("Below10", 0, 1),
        Scenario::new("round-to-nearest", "round(x, 0.1): Prometheus multiplies by the inverse of to_nearest")
            .rule(rule("Round", "round(x, 0.1)").note("v", V))
            .rule(rule("Round5", "round(x, 5)").note("v", V))
            .series(r#"x{k="a"}"#, "1.23 0.35 2.675")
            .series(r#"x{k="b"}"#, "7.77 12.5 -1.25")
            .minutes(0..=2)
            .fires("Round", 0, 2),
        Scenario::new("deriv-integers", "least-squares slope over integer samples, and a flat stretch")
            .rule(rule("Deriv", "deriv(x[4m])").note("v", V))
            .series("x", "1 2 3 4 5 6 6 6 6 6 1")
            .minutes(0..=10)
            .quiet("Deriv", 0)
            .fires("Deriv", 1, 1),
        Scenario::new(
            "deriv-decimals",
            "least-squares slope over decimal samples (Prometheus sums with Kahan) and a constant run",
        )
        .rule(rule("Deriv", "deriv(y[5m])").note("v", V))
        .series("y", "0.1+0.1x10 0.3x8")
        .minutes(0..=18)
        .fires("Deriv", 3, 1),
        Scenario::new("over-time", "the *_over_time family over decimals, a gap and a staleness marker")
            .rule(rule("Avg", "avg_over_time(g[3m])").note("v", V))
            .rule(rule("Sum", "sum_over_time(g[4m])").note("v", V))
            .rule(rule("Min", "min_over_time(g[3m])").note("v", V))
            .rule(rule("Max", "max_over_time(g[3m])").note("v", V))
            .rule(rule("Count", "count_over_time(g[5m])").note("v", V))
            .rule(rule("Last", "last_over_time(g[2m])").note("v", V))
            .rule(rule("Q", "quantile_over_time(0.25, g[5m])").note("v", V))
            .series("g", "0.1 0.2 0.3 0.7 1.1 _ 2.3 0.4 stale 0.5 0.6")
            .minutes(0..=12)
            .fires("Avg", 0, 1),
        Scenario::new("time", "time() alone and against a timestamp-valued series")
            .rule(rule("Late", "vector(time()) > 200").note("v", V))
            .rule(rule("Stuck", "time() - last_seen > 120").note("v", V))
            .series("last_seen", "0 60 120 120 120 120 120")
            .minutes(0..=6)
            .quiet("Late", 3)
            .fires("Late", 4, 1)
            .quiet("Stuck", 4)
            .fires("Stuck", 5, 1),
    ]
}

fn templates() -> Vec<Scenario> {
    let values = [
        "471859200",
        "0.000012345",
        "1234567",
        "0.25",
        "93784",
        "100000",
        "123456",
        "1e6",
        "9.5e14",
        "-0.5",
        "0",
        "1023.5",
        "1024",
        "999.95",
        "1.0625",
        "0.125",
        "2.5",
        "1.5e-7",
        "259205",
        "59.999",
        "0.0005",
        "-3725",
        "0.9132",
        "1e-300",
        "123.456789",
    ];
    let special = ["NaN", "+Inf", "-Inf"];
    let mut formats =
        Scenario::new("template-go-numbers", "$value, humanize*, printf as Go prints them, over awkward values")
            .rule(
                rule("Formats", "x")
                    .note("v", V)
                    .note("h", "{{ $value | humanize }}")
                    .note("b", "{{ humanize1024 $value }}")
                    .note("p", "{{ $value | humanizePercentage }}")
                    .note("d", "{{ $value | humanizeDuration }}")
                    .note("f", r#"{{ printf "%.2f" $value }}"#)
                    .note("g", r#"{{ printf "%.3g" $value }}"#)
                    .note("e", r#"{{ printf "%.3e" $value }}"#)
                    .note("f0", r#"{{ $value | printf "%.0f" }}"#)
                    .note("k", "{{ $labels.k | toUpper }}"),
            )
            .minutes([0])
            .fires("Formats", 0, values.len());
    for (i, v) in values.iter().enumerate() {
        formats = formats.series(&format!(r#"x{{k="v{i:02}"}}"#), v);
    }
    let mut specials =
        Scenario::new("template-special-values", "NaN and infinities through $value, humanize* and printf")
            .rule(
                rule("Special", "x")
                    .note("v", V)
                    .note("h", "{{ $value | humanize }}")
                    .note("b", "{{ humanize1024 $value }}")
                    .note("p", "{{ $value | humanizePercentage }}")
                    .note("d", "{{ $value | humanizeDuration }}"),
            )
            .rule(
                rule("SpecialPrintf", "x")
                    .note("f", r#"{{ printf "%.2f" $value }}"#)
                    .note("g", r#"{{ printf "%.3g" $value }}"#)
                    .note("e", r#"{{ printf "%.3e" $value }}"#)
                    .note("w", r#"{{ printf "%6.1f|%-6v|%06.2f" $value $value $value }}"#),
            )
            .minutes([0])
            .fires("Special", 0, special.len());
    for (i, v) in special.iter().enumerate() {
        specials = specials.series(&format!(r#"x{{k="s{i}"}}"#), v);
    }
    vec![
        formats,
        specials,
        Scenario::new("template-humanize-duration-huge", "humanizeDuration of 1e21 s (beyond int64 seconds)")
            .rule(rule("Huge", "x").note("d", "{{ $value | humanizeDuration }}"))
            .series("x", "1e21")
            .minutes([0])
            .fires("Huge", 0, 1),
        Scenario::new("template-dot-forms", "`.Value` and `.Labels.x` are the same as $value and $labels.x; a missing label is empty")
            .rule(rule("Dot", "x > 1").note("s", "{{ .Labels.instance }}={{ .Value }} [{{ $labels.missing }}]"))
            .series(r#"x{instance="a"}"#, "2")
            .minutes([0])
            .fires("Dot", 0, 1),
        Scenario::new("template-metric-name", "$labels in a template is the sample's labels, so it still has __name__ after a filter")
            .rule(rule("Named", "x > 1").note("name", "{{ $labels.__name__ }}"))
            .series(r#"x{instance="a"}"#, "2")
            .minutes([0])
            .fires("Named", 0, 1),
        Scenario::new("template-sees-sample-labels-only", "annotations see the sample's labels, not the rule's labels or alertname")
            .rule(rule("Own", "x > 1").label("team", "ops").note("s", "{{ $labels.team }}|{{ $labels.severity }}|{{ $labels.alertname }}|{{ $labels.instance }}"))
            .series(r#"x{instance="a"}"#, "2")
            .minutes([0])
            .fires("Own", 0, 1),
        Scenario::new("template-empty-label-dropped", "a rule label whose template renders empty is left out of the alert")
            .rule(rule("Owner", "x > 1").label("owner", "{{ $labels.owner }}"))
            .series(r#"x{instance="a"}"#, "2")
            .series(r#"x{instance="b",owner="ops"}"#, "2")
            .minutes([0])
            .fires("Owner", 0, 2),
        Scenario::new("template-trim-markers", "`{{-` and `-}}` trim the whitespace around the action")
            .rule(rule("Trim", "x > 1").note("s", "a  {{- $value -}}  b\n  {{- $labels.instance }} c"))
            .series(r#"x{instance="a"}"#, "2")
            .minutes([0])
            .fires("Trim", 0, 1),
        Scenario::new("template-printf-verbs", "Go's printf: width, %d/%s of a float, %x of a float")
            .rule(rule("Printf", "x > 1").note("width", r#"{{ printf "%6.2f|%-6.1f|" $value $value }}"#)
                .note("d", r#"{{ printf "%d" $value }}"#).note("s", r#"{{ printf "%s" $value }}"#)
                .note("x", r#"{{ printf "%x" $value }}"#).note("v", r#"{{ printf "%v %%" $value }}"#)
                .note("flags", r#"{{ printf "%05.1f|%+.2f|% .1f|%-7.3g|" $value $value $value $value }}"#)
                .note("ints", r#"{{ printf "%d|%x|%5d|%-3d|" 42 255 7 7 }}"#)
                .note("strings", r#"{{ printf "%q|%10s|%-4s|%.3s" $labels.instance $labels.instance $labels.instance "abcdef" }}"#)
                .note("exp", r#"{{ printf "%e|%E|%G|%.0e" $value $value $value $value }}"#)
                .note("missing", r#"{{ printf "%v %v" $value }}"#)
                .note("extra", r#"{{ printf "%v" $value 1 }}"#))
            .series(r#"x{instance="a"}"#, "2.5")
            .minutes([0])
            .fires("Printf", 0, 1),
    ]
}
