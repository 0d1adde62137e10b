//! Alerts that mean what the runbook means ("Alerting Strategy"): a certificate close to its
//! expiry is a warning that names the host and the days left (`CertificateExpiringSoon`,
//! critical under three days), not an outage; an admin token Synapse refuses is
//! `AdminTokenInvalid` (warning), not `SynapseDown`; the runbook's "High error rate (> 5 % of
//! requests)" is `SynapseHighErrorRate` over `synapse_http_server_responses_total` by code
//! class; and a check written by hand under `checks:` pages when it fails (`CheckFailing`),
//! as every uptime tool does. `config::build` adds these rules; `preset::down` keeps
//! `<Kind>Down` to the availability checks (`super::availability_checks`).

use crate::model::ServiceKind;
use crate::rule::RuleDef;

/// Days left under which `CertificateExpiringSoon` is critical instead of a warning.
pub const CERT_CRITICAL_DAYS: f64 = 3.0;

/// The share of 5xx answers over which `SynapseHighErrorRate` warns (the runbook's 5 %).
pub const ERROR_RATE_WARNING: f64 = 0.05;

fn def(
    alert: &str,
    severity: &str,
    for_ms: i64,
    expr: String,
    summary: String,
    runbook: &str,
    origin: String,
) -> RuleDef {
    RuleDef {
        alert: alert.to_string(),
        expr,
        for_ms,
        keep_firing_for_ms: 0,
        labels: [("severity".to_string(), severity.to_string())].into_iter().collect(),
        annotations: [("summary".to_string(), summary), ("runbook".to_string(), runbook.to_string())]
            .into_iter()
            .collect(),
        origin,
    }
}

/// `CertificateExpiringSoon` for one service's `tls` check: a warning while the certificate
/// of `host` expires within `valid_for_days` (the service's `cert_valid_for`), critical under
/// [`CERT_CRITICAL_DAYS`]. The value is the days left.
pub fn certificate(service: &str, host: &str, valid_for_days: f64) -> Vec<RuleDef> {
    let days =
        format!("(probe_ssl_earliest_cert_expiry{{service=\"{service}\",check=\"{service}/tls\"}} - time()) / 86400");
    let summary = format!("{host}: certificate expires in {{{{ $value | printf \"%.1f\" }}}} days");
    let origin = format!("preset tls for {service}");
    let runbook = "Maintenance Windows: certificate renewal (automatic on Render) has not happened";
    let mut warning = def(
        "CertificateExpiringSoon",
        "warning",
        0,
        format!("({days} < {}) >= {}", num(valid_for_days), num(CERT_CRITICAL_DAYS)),
        summary.clone(),
        runbook,
        origin.clone(),
    );
    let mut critical = def(
        "CertificateExpiringSoon",
        "critical",
        0,
        format!("{days} < {}", num(CERT_CRITICAL_DAYS)),
        summary,
        runbook,
        origin,
    );
    for d in [&mut warning, &mut critical] {
        d.labels.insert("host".to_string(), host.to_string());
    }
    vec![warning, critical]
}

/// `AdminTokenInvalid` for a service's token check (`check`, e.g. `synapse/admin-token`):
/// the server answers but refuses the token (401 or 403). A server that does not answer is
/// `<Kind>Down`'s business, not this one's.
pub fn admin_token(service: &str, check: &str, after_ms: i64) -> RuleDef {
    let status = format!("probe_http_status_code{{service=\"{service}\",check=\"{check}\"}}");
    def(
        "AdminTokenInvalid",
        "warning",
        after_ms,
        format!("{status} == 401 or {status} == 403"),
        format!(
            "{service}: the token of {check} is refused (HTTP {{{{ $value }}}}); issue a new one and update the config"
        ),
        "Alerting Strategy: an invalid admin token is not an outage",
        format!("preset token for {service}"),
    )
}

/// `SynapseHighErrorRate`: 5xx answers as a share of all answers over 5 minutes, above the
/// runbook's 5 %, for 5 minutes.
pub fn synapse_error_rate(service: &str) -> RuleDef {
    let rate = |code: &str| {
        format!("sum by (service) (rate(synapse_http_server_responses_total{{service=\"{service}\"{code}}}[5m]))")
    };
    def(
        "SynapseHighErrorRate",
        "warning",
        300_000,
        format!("{} / {} > {}", rate(",code=~\"5..\""), rate(""), num(ERROR_RATE_WARNING)),
        "{{ $labels.service }} answers {{ $value | humanizePercentage }} of its requests with a 5xx".to_string(),
        "Warning Alerts: High error rate (> 5% of requests)",
        format!("preset {} for {service}", ServiceKind::Synapse.as_str()),
    )
}

/// `CheckFailing` for a check written under `checks:`: critical once it has failed for
/// `after_ms` (`up` for a scrape, `probe_success` otherwise).
pub fn check_failing(check: &str, scrape: bool, after_ms: i64) -> RuleDef {
    let metric = if scrape { "up" } else { "probe_success" };
    let quoted = check.replace('\\', "\\\\").replace('"', "\\\"");
    def(
        "CheckFailing",
        "critical",
        after_ms,
        format!("{metric}{{check=\"{quoted}\"}} == 0"),
        "check {{ $labels.check }} fails".to_string(),
        "Critical Alerts: a check under checks: fails",
        format!("check {check}"),
    )
}

/// A number as PromQL writes it.
fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::AlertRule;

    #[test]
    fn every_rule_compiles() {
        let mut defs = certificate("synapse", "matrix.example.org", 14.0);
        defs.push(admin_token("synapse", "synapse/admin-token", 60_000));
        defs.push(synapse_error_rate("synapse"));
        defs.push(check_failing("home \"page\"", false, 60_000));
        defs.push(check_failing("exporter", true, 60_000));
        for d in defs {
            AlertRule::compile(d.clone()).unwrap_or_else(|e| panic!("{e}: {}", d.expr));
        }
    }

    #[test]
    fn certificate_severity_depends_on_the_days_left() {
        let defs = certificate("s", "h", 14.0);
        assert_eq!(defs[0].labels["severity"], "warning");
        assert!(defs[0].expr.ends_with("< 14) >= 3"), "{}", defs[0].expr);
        assert_eq!(defs[1].labels["severity"], "critical");
        assert!(defs[1].expr.ends_with("< 3"), "{}", defs[1].expr);
        assert_eq!(defs[1].labels["host"], "h");
    }
}
