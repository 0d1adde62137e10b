//! The Render preset rules, for every service linked with `render: srv-…` / `dpg-…`: failed
//! deploys, OOM kills (with the memory limit, the memory just before and the instance's last
//! log lines), crash loops, suspensions, memory against the plan's limit — which closes the
//! runbook's "Memory > 80 % / > 95 %" lines for MAS, Vikunja and authentik, which export no
//! memory metric — and the database's availability and real disk. They judge the samples of
//! `probe::render`; `docs/render.md` lists both.

use crate::rule::RuleDef;
use std::collections::BTreeMap;

fn rule(alert: &str, severity: &str, for_s: i64, expr: &str, summary: &str, runbook: &str) -> RuleDef {
    let mut annotations = BTreeMap::new();
    annotations.insert("summary".to_string(), summary.to_string());
    annotations.insert("runbook".to_string(), runbook.to_string());
    RuleDef {
        alert: alert.to_string(),
        expr: expr.to_string(),
        for_ms: for_s * 1_000,
        keep_firing_for_ms: 0,
        labels: [("severity".to_string(), severity.to_string())].into_iter().collect(),
        annotations,
        origin: "preset render".into(),
    }
}

/// Every Render rule; added once when any service is linked.
pub fn rules() -> Vec<RuleDef> {
    vec![
        rule(
            "RenderDeployFailed",
            "critical",
            0,
            "render_deploy_failure_info == 1",
            "{{ $labels.service }}: deploy {{ $labels.deploy }} of {{ $labels.commit }}{{ $labels.image }} ended {{ $labels.status }} (trigger {{ $labels.trigger }}); the previous version keeps running. Last log lines: {{ $labels.logs }}",
            "Render: a failed deploy leaves the old version running",
        ),
        rule(
            "RenderServiceOOMKilled",
            "critical",
            0,
            "render_server_failure_info{reason=\"oom_killed\"} == 1",
            "{{ $labels.service }} instance {{ $labels.instance }} was OOM-killed at its memory limit {{ $labels.memory_limit }} (memory just before: {{ $labels.memory_before }}). Last log lines: {{ $labels.logs }}",
            "Issue: Synapse Out of Memory",
        ),
        rule(
            "RenderServiceCrashLooping",
            "critical",
            0,
            "render_server_failures_15m >= 3",
            "{{ $labels.service }} failed {{ $value }} times in 15 minutes on Render",
            "Render: repeated server failures within 15 minutes",
        ),
        rule(
            "RenderServiceSuspended",
            "critical",
            0,
            "render_service_suspended{suspender!=\"user\"} == 1",
            "{{ $labels.service }} is suspended on Render by {{ $labels.suspender }}",
            "Render: a suspended service serves nothing",
        ),
        rule(
            "RenderServiceSuspended",
            "info",
            0,
            "render_service_suspended{suspender=\"user\"} == 1",
            "{{ $labels.service }} is suspended on Render by a user",
            "Render: suspended on purpose",
        ),
        rule(
            "RenderMemoryHigh",
            "warning",
            300,
            "render_instance_memory_bytes / render_instance_memory_limit_bytes > 0.8",
            "{{ $labels.service }} instance {{ $labels.instance }} uses {{ $value | humanizePercentage }} of its plan's memory",
            "Memory > 80%: WARNING",
        ),
        rule(
            "RenderMemoryCritical",
            "critical",
            120,
            "render_instance_memory_bytes / render_instance_memory_limit_bytes > 0.95",
            "{{ $labels.service }} instance {{ $labels.instance }} uses {{ $value | humanizePercentage }} of its plan's memory: an OOM kill is near",
            "Memory > 95%: CRITICAL",
        ),
        rule(
            "RenderPostgresUnavailable",
            "critical",
            120,
            "render_postgres_status{status=~\"unavailable|recovery_failed|suspended|unknown\"} == 1",
            "{{ $labels.service }}: Render reports the database {{ $labels.status }}",
            "PostgreSQL down",
        ),
        rule(
            "RenderPostgresDiskHigh",
            "warning",
            600,
            "render_postgres_disk_usage_ratio > 0.8",
            "{{ $labels.service }} uses {{ $value | humanizePercentage }} of its Render disk",
            "Disk > 80%: WARNING",
        ),
        rule(
            "RenderPostgresDiskCritical",
            "critical",
            300,
            "render_postgres_disk_usage_ratio > 0.9",
            "{{ $labels.service }} uses {{ $value | humanizePercentage }} of its Render disk and is close to full (disk autoscaling grows it at about 90 % only when enabled)",
            "Disk > 90%: CRITICAL",
        ),
        rule(
            "RenderPostgresDiskLimitContradicts",
            "warning",
            0,
            "render_postgres_disk_limit_contradiction == 1",
            "{{ $labels.service }}: its disk_limit contradicts Render's real disk; remove disk_limit (a plan like basic_256mb names memory, not disk)",
            "High Database Disk Usage",
        ),
        rule(
            "RenderApiFailing",
            "warning",
            900,
            "render_up == 0",
            "mxwarden cannot read {{ $labels.service }} from Render's API (`mxwarden check` says why)",
            "Render-Specific Monitoring",
        ),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_render_rule_compiles() {
        for def in super::rules() {
            let name = def.alert.clone();
            crate::rule::AlertRule::compile(def).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}
