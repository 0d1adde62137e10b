//! Rules over the samples the backup scheduler emits (`backup::schedule`), one series per
//! backed-up item (`service` = the postgres service, or `files`; `database` = the database,
//! `(globals)` for roles, or the file set): no successful backup for 26 h (a daily schedule
//! missed once, plus slack) → warning; the last attempt failed → critical; the newest backup
//! is less than half the size of the one before (a truncated dump) → warning; the last restore
//! drill failed → critical; no drill passed for 35 days → warning.

use crate::rule::RuleDef;

/// 26 hours: a daily backup missed once, with two hours of slack.
pub(crate) const MISSING_AFTER_SECONDS: i64 = 26 * 3600;

fn rule(alert: &str, severity: &str, expr: String, summary: &str) -> RuleDef {
    RuleDef {
        alert: alert.to_string(),
        expr,
        for_ms: 0,
        keep_firing_for_ms: 0,
        labels: [("severity".to_string(), severity.to_string())].into_iter().collect(),
        annotations: [
            ("summary".to_string(), summary.to_string()),
            ("runbook".to_string(), "Backup & Recovery (docs/backups.md)".to_string()),
        ]
        .into_iter()
        .collect(),
        origin: "preset backup".into(),
    }
}

/// 35 days: a monthly drill missed once, with a few days of slack.
pub(crate) const DRILL_MISSING_AFTER_SECONDS: i64 = 35 * 24 * 3600;

/// The backup rules.
pub(crate) fn rules() -> Vec<RuleDef> {
    vec![
        rule(
            "BackupMissing",
            "warning",
            format!("time() - backup_last_success_timestamp_seconds > {MISSING_AFTER_SECONDS}"),
            "{{ $labels.service }}/{{ $labels.database }}: no successful backup for {{ $value | humanizeDuration }}",
        ),
        rule(
            "BackupFailed",
            "critical",
            "backup_last_run_success == 0".into(),
            "{{ $labels.service }}/{{ $labels.database }}: the last backup run failed (mxwarden backup list shows why)",
        ),
        rule(
            "BackupDrillFailed",
            "critical",
            "backup_drill_last_run_success == 0".into(),
            "the last restore drill failed: a backup did not restore with the rows it had when dumped (mxwarden backup drill shows why)",
        ),
        rule(
            "BackupDrillMissing",
            "warning",
            format!("time() - backup_drill_last_success_timestamp_seconds > {DRILL_MISSING_AFTER_SECONDS}"),
            "no restore drill has passed for {{ $value | humanizeDuration }}: nobody knows whether the backups restore",
        ),
        rule(
            "BackupSizeDropped",
            "warning",
            "backup_last_size_bytes < 0.5 * backup_previous_size_bytes".into(),
            "{{ $labels.service }}/{{ $labels.database }}: the newest backup is {{ $value | humanize1024 }}B, less than half the previous one (a truncated dump?)",
        ),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn backup_rules_compile() {
        for def in super::rules() {
            crate::rule::AlertRule::compile(def.clone()).unwrap_or_else(|e| panic!("{e}: {}", def.expr));
        }
    }
}
