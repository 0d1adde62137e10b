//! promtool's `input_series` notation, read the way Prometheus 2.42's series-description
//! grammar reads it, so the samples we load are the samples promtool loads: `a+bxn` and
//! `a-bxn` give n+1 values by *repeated addition* (so `0.1+0.1x10` ends on
//! 1.0999999999999999, not 1.1), `axn` gives n+1 copies, `_` one missing sample, `_xn` n
//! missing samples, `stale` a staleness marker; and the series selector `name{a="b"}`.

use mxwarden::model::Labels;
use mxwarden::series::stale;

/// One sample slot: a value (possibly the staleness marker) or nothing (`_`).
pub type Slot = Option<f64>;

/// Expands a `values` string; panics with the offending token on anything else (the
/// scenarios are ours, so a bad token is a bug in the test).
pub fn expand(values: &str) -> Vec<Slot> {
    let mut out = Vec::new();
    for token in values.split_whitespace() {
        expand_token(token, &mut out).unwrap_or_else(|e| panic!("values {values:?}: token {token:?}: {e}"));
    }
    out
}

fn expand_token(token: &str, out: &mut Vec<Slot>) -> Result<(), String> {
    if token == "stale" {
        out.push(Some(stale()));
        return Ok(());
    }
    if token == "_" {
        out.push(None);
        return Ok(());
    }
    if let Some(n) = token.strip_prefix("_x") {
        out.extend(std::iter::repeat_n(None, count(n)?));
        return Ok(());
    }
    let Some((head, n)) = token.rsplit_once('x') else {
        out.push(Some(number(token)?));
        return Ok(());
    };
    let n = count(n)?;
    // The operator between start and step: a sign that is not the number's own leading
    // sign and not an exponent's sign.
    let op = head
        .char_indices()
        .skip(1)
        .find(|&(i, c)| (c == '+' || c == '-') && !head[..i].ends_with(['e', 'E']))
        .map(|(i, _)| i);
    match op {
        None => {
            let v = number(head)?;
            out.extend(std::iter::repeat_n(Some(v), n + 1));
        }
        Some(i) => {
            let mut v = number(&head[..i])?;
            let step = number(&head[i..])?; // keeps its sign: `-2` for `a-2xn`
            out.push(Some(v));
            for _ in 0..n {
                v += step;
                out.push(Some(v));
            }
        }
    }
    Ok(())
}

fn count(text: &str) -> Result<usize, String> {
    text.parse().map_err(|_| format!("`{text}` is not a repeat count"))
}

fn number(text: &str) -> Result<f64, String> {
    let t = text.strip_prefix('+').unwrap_or(text);
    match t {
        "Inf" | "inf" => return Ok(f64::INFINITY),
        "-Inf" | "-inf" => return Ok(f64::NEG_INFINITY),
        "NaN" | "nan" => return Ok(f64::NAN),
        _ => {}
    }
    t.parse().map_err(|_| format!("`{text}` is not a number"))
}

/// `name{a="b",…}` (or `{__name__="name",…}`) → its labels, `__name__` included.
pub fn selector_labels(selector: &str) -> Labels {
    let expr = promql_parser::parser::parse(selector).unwrap_or_else(|e| panic!("series {selector:?}: {e}"));
    let promql_parser::parser::Expr::VectorSelector(vs) = expr else { panic!("series {selector:?} is not a selector") };
    let mut labels = Labels::new();
    for m in &vs.matchers.matchers {
        assert!(
            matches!(m.op, promql_parser::label::MatchOp::Equal),
            "series {selector:?}: only `=` matchers describe a series"
        );
        labels.insert(m.name.clone(), m.value.clone());
    }
    if let Some(name) = vs.name {
        labels.insert("__name__".into(), name);
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use mxwarden::series::is_stale;

    fn show(slots: &[Slot]) -> Vec<String> {
        slots
            .iter()
            .map(|s| match s {
                None => "_".into(),
                Some(v) if is_stale(*v) => "stale".into(),
                Some(v) => format!("{v:?}"),
            })
            .collect()
    }

    #[test]
    fn expansion_follows_the_series_description_grammar() {
        let cases: &[(&str, &[&str], &str)] = &[
            ("1 2 3", &["1.0", "2.0", "3.0"], "plain values"),
            ("0+10x3", &["0.0", "10.0", "20.0", "30.0"], "a+bxn gives n+1 values"),
            ("10-2x2", &["10.0", "8.0", "6.0"], "a-bxn counts down"),
            ("-5+2x1", &["-5.0", "-3.0"], "a negative start is the number's own sign"),
            ("7x2", &["7.0", "7.0", "7.0"], "axn: n+1 copies"),
            ("_ 1 _x2 2", &["_", "1.0", "_", "_", "2.0"], "_xn: n missing samples, not n+1"),
            ("1 stale 2", &["1.0", "stale", "2.0"], "explicit staleness marker"),
            ("1e3-2x1", &["1000.0", "998.0"], "an exponent's sign is not the step"),
            ("1e-3+1e-3x1", &["0.001", "0.002"], "negative exponents too"),
            ("Inf -Inf", &["inf", "-inf"], "infinities"),
            (
                "0.1+0.1x3",
                &["0.1", "0.2", "0.30000000000000004", "0.4"],
                "repeated addition, as Prometheus: 0.2 + 0.1 is not 0.3",
            ),
        ];
        for (values, want, why) in cases {
            assert_eq!(show(&expand(values)), *want, "{values}: {why}");
        }
        assert!(expand("NaN")[0].is_some_and(|v| v.is_nan() && !is_stale(v)), "NaN is a value, not staleness");
    }

    #[test]
    fn selectors_become_labels() {
        let l = selector_labels(r#"x{a="1",b="two words"}"#);
        assert_eq!(l.get("__name__").map(String::as_str), Some("x"));
        assert_eq!(l.get("b").map(String::as_str), Some("two words"));
        let l = selector_labels(r#"{__name__="y",c="3"}"#);
        assert_eq!(l.get("__name__").map(String::as_str), Some("y"));
    }
}
