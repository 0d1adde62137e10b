//! The runbook's first critical alerts — "Synapse down (health check fails)", "MAS down (OIDC
//! discovery fails)" — for every service: `<Kind>Down` fires when any of the service's
//! availability checks (`preset::availability_checks`: not `tls`, not the token checks, not
//! `media`) has failed for `down_after` (default 1m). One alert per service, not one per
//! failing check, so a dead Synapse pages once; an expiring certificate or a refused admin
//! token is a warning of its own (`preset::alerts`), never an outage.

use crate::model::ServiceKind;
use crate::rule::RuleDef;

/// The alert name for a kind: `SynapseDown`, `MasDown`, …
pub fn alert_name(kind: ServiceKind) -> String {
    let name = kind.as_str();
    let mut chars = name.chars();
    let first = chars.next().map(|c| c.to_ascii_uppercase()).unwrap_or_default();
    format!("{first}{}Down", chars.as_str())
}

/// The `<Kind>Down` rule for one service.
pub fn rule(kind: ServiceKind, service: &str, after_ms: i64) -> RuleDef {
    RuleDef {
        alert: alert_name(kind),
        expr: format!(
            "min by (service) (probe_success{{service=\"{service}\",check=~\"{service}/({})\"}}) == 0",
            super::availability_checks(kind).join("|")
        ),
        for_ms: after_ms,
        keep_firing_for_ms: 0,
        labels: [("severity".to_string(), "critical".to_string())].into_iter().collect(),
        annotations: [
            ("summary".to_string(), "{{ $labels.service }} fails its health checks".to_string()),
            ("runbook".to_string(), format!("Critical alerts: {} down (health check fails)", kind.as_str())),
        ]
        .into_iter()
        .collect(),
        origin: format!("preset {} for {service}", kind.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_rules_are_named_after_the_kind_and_compile() {
        assert_eq!(alert_name(ServiceKind::Synapse), "SynapseDown");
        assert_eq!(alert_name(ServiceKind::Mas), "MasDown");
        let def = rule(ServiceKind::Vikunja, "tasks", 60_000);
        assert_eq!(def.expr, "min by (service) (probe_success{service=\"tasks\",check=~\"tasks/(health|info)\"}) == 0");
        crate::rule::AlertRule::compile(def).unwrap();
    }
}
