//! Which checks a rule's result depends on, found once from its expression: what lets the
//! evaluator judge a few new results among 10,000 checks without evaluating every rule over
//! every series (`RuleEngine::evaluate_arrivals`).
//!
//! - A rule is **pinned** to a check when every selector in it has the matcher `check="X"` for
//!   the same X (as `CheckFailing` has): nothing but X's results can change it.
//! - A rule is **per check** when each output element depends on one input series only and
//!   keeps its labels (a selector compared with or combined with a number, element-wise
//!   functions, `*_over_time`, `rate`): its instances for check X change only with X's series,
//!   so it can be judged for the checks that just reported alone. Aggregations, vector-vector
//!   operations, `absent`, `label_replace` and the like are not; neither is a rule whose own
//!   labels set `check`.

use promql_parser::label::MatchOp;
use promql_parser::parser::{Expr, VectorSelector};
use std::collections::BTreeMap;

/// What a rule's result depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Scope {
    /// Every selector reads only this check's series.
    pub pinned: Option<String>,
    /// Each instance comes from one series and keeps its `check` label.
    pub per_check: bool,
}

/// Functions whose output element depends on one input series and keeps its labels (minus
/// `__name__`).
const ELEMENTWISE: &[&str] = &[
    "abs",
    "ceil",
    "floor",
    "round",
    "exp",
    "ln",
    "log2",
    "log10",
    "sqrt",
    "sgn",
    "clamp",
    "clamp_min",
    "clamp_max",
    "timestamp",
    "rate",
    "irate",
    "increase",
    "delta",
    "idelta",
    "deriv",
    "changes",
    "resets",
    "predict_linear",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "last_over_time",
    "present_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "quantile_over_time",
];

/// The scope of `expr` for a rule with these `labels`.
pub(crate) fn of(expr: &Expr, labels: &BTreeMap<String, String>) -> Scope {
    Scope { pinned: pinned(expr), per_check: per_check(expr) && !labels.contains_key("check") }
}

/// The check a selector is restricted to by an equality matcher (`check="X"`, X not empty),
/// with no `or` alternatives.
pub(crate) fn selector_check(vs: &VectorSelector) -> Option<&str> {
    selector_equal(vs, "check")
}

/// The value a selector requires of `label` by an equality matcher (not empty), with no `or`
/// alternatives: the presets' `service="X"`, `CheckFailing`'s `check="X"`.
pub(crate) fn selector_equal<'a>(vs: &'a VectorSelector, label: &str) -> Option<&'a str> {
    if !vs.matchers.or_matchers.is_empty() {
        return None;
    }
    vs.matchers
        .matchers
        .iter()
        .find(|m| m.name == label && m.op == MatchOp::Equal && !m.value.is_empty())
        .map(|m| m.value.as_str())
}

fn pinned(expr: &Expr) -> Option<String> {
    let mut found: Option<Option<String>> = None;
    let mut agree = true;
    super::walk(expr, &mut |e| {
        let vs = match e {
            Expr::VectorSelector(vs) => vs,
            Expr::MatrixSelector(ms) => &ms.vs,
            _ => return,
        };
        let this = selector_check(vs).map(str::to_string);
        match &found {
            None => found = Some(this),
            Some(prev) if *prev != this => agree = false,
            Some(_) => {}
        }
    });
    if agree { found.flatten() } else { None }
}

/// A number, possibly in parentheses, negated or computed from numbers.
fn is_number(expr: &Expr) -> bool {
    match expr {
        Expr::NumberLiteral(_) => true,
        Expr::Paren(p) => is_number(&p.expr),
        Expr::Unary(u) => is_number(&u.expr),
        Expr::Binary(b) => is_number(&b.lhs) && is_number(&b.rhs),
        _ => false,
    }
}

fn per_check(expr: &Expr) -> bool {
    match expr {
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => true,
        Expr::VectorSelector(vs) => vs.at.is_none(),
        Expr::MatrixSelector(ms) => ms.vs.at.is_none(),
        Expr::Paren(p) => per_check(&p.expr),
        Expr::Unary(u) => per_check(&u.expr),
        Expr::Binary(b) => {
            !b.op.is_set_operator()
                && (is_number(&b.lhs) || is_number(&b.rhs))
                && per_check(&b.lhs)
                && per_check(&b.rhs)
        }
        Expr::Call(c) => ELEMENTWISE.contains(&c.func.name) && c.args.args.iter().all(|a| per_check(a)),
        Expr::Aggregate(_) | Expr::Subquery(_) | Expr::Extension(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(expr: &str) -> Scope {
        of(&promql_parser::parser::parse(expr).unwrap(), &BTreeMap::new())
    }

    #[test]
    fn what_a_rule_depends_on() {
        let cases: &[(&str, Option<&str>, bool, &str)] = &[
            ("probe_success == 0", None, true, "a selector compared with a number: one series per instance"),
            ("probe_success{check=\"web\"} == 0", Some("web"), true, "CheckFailing: only web's series"),
            ("up{check=\"a\"} == 0 or up{check=\"b\"} == 0", None, false, "two checks, and a set operator"),
            ("probe_duration_seconds > 2 * 1", None, true, "number arithmetic on the right"),
            ("rate(http_total[5m]) > 0.5", None, true, "rate is per series"),
            ("max_over_time(probe_duration_seconds[5m]) > 1", None, true, "per series over time"),
            ("min by (service) (probe_success) == 0", None, false, "an aggregation mixes checks"),
            ("a / b > 1", None, false, "vector-vector matching mixes series"),
            ("absent(probe_success{check=\"web\"})", Some("web"), false, "absent has no labels of its series"),
            ("sum(probe_success{check=\"web\"}) == 0", Some("web"), false, "pinned: only web's series, aggregated"),
            ("label_replace(up, \"check\", \"x\", \"\", \"\") == 0", None, false, "rewrites labels"),
            ("probe_success{check=~\"web\"} == 0", None, true, "a regex matcher does not pin"),
            ("probe_success{check=\"\"} == 0", None, true, "an empty value selects series without the label"),
        ];
        for (expr, pinned, per_check, why) in cases {
            let s = scope(expr);
            assert_eq!(s.pinned.as_deref(), *pinned, "{expr}: {why}");
            assert_eq!(s.per_check, *per_check, "{expr}: {why}");
        }
    }

    #[test]
    fn a_rule_that_sets_check_itself_is_not_per_check() {
        let labels = [("check".to_string(), "all".to_string())].into_iter().collect();
        let s = of(&promql_parser::parser::parse("probe_success == 0").unwrap(), &labels);
        assert!(!s.per_check);
    }
}
