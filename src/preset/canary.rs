//! The Matrix canary's rules (`matrix_canary` checks): `MatrixCanaryFailing` (critical) when
//! two rounds in a row were not seen — one lost round is a blip, two are an outage users
//! notice — and `MatrixCanarySlow` (warning) when a message took longer than the check's
//! `slow_after` to be seen, three rounds running.

use crate::rule::RuleDef;

/// The two rules for canary check `check`, slow over `slow_after_s` seconds; a round runs
/// every `interval_ms`.
pub fn rules(check: &str, slow_after_s: f64, interval_ms: i64) -> Vec<RuleDef> {
    let selector = format!("check=\"{}\"", check.replace('\\', "\\\\").replace('"', "\\\""));
    let labels = |severity: &str| [("severity".to_string(), severity.to_string())].into_iter().collect();
    vec![
        RuleDef {
            alert: "MatrixCanaryFailing".into(),
            expr: format!("matrix_canary_missed_rounds{{{selector}}} >= 2"),
            for_ms: 0,
            keep_firing_for_ms: 0,
            labels: labels("critical"),
            annotations: [
                (
                    "summary".to_string(),
                    "Matrix canary {{ $labels.check }}: {{ $value }} messages in a row were not seen".to_string(),
                ),
                ("runbook".to_string(), "A message sent is not a message seen: check Synapse, its workers and the database".to_string()),
            ]
            .into_iter()
            .collect(),
            origin: format!("preset matrix_canary for {check}"),
        },
        RuleDef {
            alert: "MatrixCanarySlow".into(),
            expr: format!("matrix_canary_latency_seconds{{{selector}}} > {slow_after_s}"),
            for_ms: interval_ms.saturating_mul(2),
            keep_firing_for_ms: 0,
            labels: labels("warning"),
            annotations: [(
                "summary".to_string(),
                format!("Matrix canary {{{{ $labels.check }}}}: a message took {{{{ $value }}}} s to be seen (over {slow_after_s} s)"),
            )]
            .into_iter()
            .collect(),
            origin: format!("preset matrix_canary for {check}"),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_rules_compile_even_for_a_hostile_check_name() {
        for name in ["matrix-canary", "we\"ird\\name", "a{b}c"] {
            for def in rules(name, 10.0, 60_000) {
                crate::rule::AlertRule::compile(def).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
        let r = rules("c", 2.5, 30_000);
        assert_eq!(r[0].expr, "matrix_canary_missed_rounds{check=\"c\"} >= 2");
        assert_eq!(r[1].expr, "matrix_canary_latency_seconds{check=\"c\"} > 2.5");
        assert_eq!(r[1].for_ms, 60_000);
    }
}
