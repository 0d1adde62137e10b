//! The runbook's "Key Metrics to Monitor" tables as Prometheus alerting rules, per service
//! kind, with thresholds a user can override per service (`thresholds: { memory_warning:
//! 2GiB }`) without touching an expression. Runbook lines that today's software exposes no
//! metric for are listed as `Unavailable`, with the reason, instead of shipping a rule that
//! can never fire. Metric names and units: `stack-reference.md` §1.3–1.4 (Synapse), §2.5 (MAS).

use crate::model::ServiceKind;
use crate::rule::RuleDef;
use crate::units::{ByteSize, HumanDuration};
use std::collections::BTreeMap;

/// How a threshold is written and what number it becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A size (`450MiB`) → bytes.
    Bytes,
    /// A fraction (`0.8` or `80%`) → 0.8.
    Ratio,
    /// A duration (`5m`) → seconds.
    Seconds,
    /// Events per minute (`10`).
    PerMinute,
}

/// A threshold a preset rule uses.
#[derive(Debug, Clone, Copy)]
pub struct Threshold {
    /// Key under `thresholds:`.
    pub name: &'static str,
    /// Unit.
    pub unit: Unit,
    /// Default, as written in config.
    pub default: &'static str,
    /// What it limits.
    pub help: &'static str,
}

/// A runbook line with no rule, and why.
#[derive(Debug, Clone, Copy)]
pub struct Unavailable {
    /// The name the rule would have.
    pub alert: &'static str,
    /// The runbook's line.
    pub runbook: &'static str,
    /// Why there is no rule, and what to do instead.
    pub why: &'static str,
}

const SYNAPSE_THRESHOLDS: &[Threshold] = &[
    Threshold {
        name: "memory_warning",
        unit: Unit::Bytes,
        default: "450MiB",
        help: "resident memory for SynapseMemoryHigh (Render Starter: 512 MB)",
    },
    Threshold {
        name: "memory_critical",
        unit: Unit::Bytes,
        default: "500MiB",
        help: "resident memory for SynapseMemoryCritical",
    },
    Threshold {
        name: "cpu_warning",
        unit: Unit::Ratio,
        default: "80%",
        help: "CPU use of one core, sustained 10m, for SynapseCpuSustained",
    },
    Threshold {
        name: "db_pool_warning",
        unit: Unit::Ratio,
        default: "90%",
        help: "busy share of the database connection pool for SynapseDbPoolSaturated",
    },
    Threshold {
        name: "federation_lag_warning",
        unit: Unit::Seconds,
        default: "5m",
        help: "age of the event the federation sender is on while behind, for SynapseFederationLag",
    },
    Threshold {
        name: "event_lag_critical",
        unit: Unit::Seconds,
        default: "1m",
        help: "age of the event a sender is on while behind, for SynapseEventProcessingLag",
    },
];

const MAS_THRESHOLDS: &[Threshold] = &[
    Threshold {
        name: "failed_logins_warning",
        unit: Unit::PerMinute,
        default: "10",
        help: "failed password logins per minute for MasFailedLogins",
    },
    Threshold {
        name: "token_errors_critical",
        unit: Unit::PerMinute,
        default: "1",
        help: "5xx answers of the token endpoint per minute for MasTokenErrors",
    },
];

const MAS_UNAVAILABLE: &[Unavailable] = &[
    Unavailable {
        alert: "MasMemoryHigh",
        runbook: "MAS memory usage > 100 MB: WARNING",
        why: "MAS exports no process memory metric (its OpenTelemetry metrics have no process_* instruments); watch the container's memory in Render's metrics instead",
    },
    Unavailable {
        alert: "MasDbQuerySlow",
        runbook: "MAS database query time > 500ms p95: WARNING",
        why: "MAS exports no SQL latency histogram (only connection-pool gauges and connection create time); PostgreSQL's own statistics (pg_stat_statements) cover slow queries",
    },
];

const POSTGRES_THRESHOLDS: &[Threshold] = &[
    Threshold {
        name: "connections_warning",
        unit: Unit::Ratio,
        default: "90%",
        help: "client connections as a share of those open to normal roles (max_connections minus the reserved ones) for PostgresConnectionsHigh",
    },
    Threshold {
        name: "disk_warning",
        unit: Unit::Ratio,
        default: "80%",
        help: "database sizes (plus WAL with pg_monitor) as a share of disk_limit for PostgresDiskUsageHigh",
    },
    Threshold {
        name: "disk_critical",
        unit: Unit::Ratio,
        default: "90%",
        help: "the same share for PostgresDiskUsageCritical",
    },
    Threshold {
        name: "query_time_warning",
        unit: Unit::Seconds,
        default: "1s",
        help: "mean statement time per database between two polls (pg_stat_statements) for PostgresQueriesSlow, and Synapse's p95 query time for PostgresQueriesSlowP95",
    },
    Threshold {
        name: "replication_lag_critical",
        unit: Unit::Seconds,
        default: "1m",
        help: "replay lag of a replica for PostgresReplicationLag, and of a standby seen from the primary for PostgresStandbyLag",
    },
    Threshold {
        name: "disk_full_warning",
        unit: Unit::Seconds,
        default: "14d",
        help: "forecast time until disk_limit is reached at the current growth for PostgresDiskFullSoon",
    },
];

/// Thresholds a kind's rules accept.
pub(crate) fn thresholds(kind: ServiceKind) -> &'static [Threshold] {
    match kind {
        ServiceKind::Synapse => SYNAPSE_THRESHOLDS,
        ServiceKind::Mas => MAS_THRESHOLDS,
        ServiceKind::Postgres => POSTGRES_THRESHOLDS,
        ServiceKind::Vikunja | ServiceKind::Authentik => &[],
    }
}

/// Runbook lines a kind cannot have a rule for.
pub(crate) fn unavailable(kind: ServiceKind) -> &'static [Unavailable] {
    match kind {
        ServiceKind::Mas => MAS_UNAVAILABLE,
        _ => &[],
    }
}

/// Parses a threshold value written in config.
pub(crate) fn parse_threshold(unit: Unit, text: &str) -> Result<f64, String> {
    let t = text.trim();
    match unit {
        Unit::Bytes => ByteSize::parse(t).map(|b| b.0 as f64).map_err(|e| e.to_string()),
        Unit::Seconds => HumanDuration::parse(t).map(|d| d.0.as_secs_f64()).map_err(|e| e.to_string()),
        Unit::Ratio => {
            let (number, scale) = match t.strip_suffix('%') {
                Some(n) => (n.trim(), 100.0),
                None => (t, 1.0),
            };
            number
                .parse::<f64>()
                .ok()
                .map(|v| v / scale)
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("`{text}` is not a ratio; expected e.g. 0.8 or 80%"))
        }
        Unit::PerMinute => t
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("`{text}` is not a rate; expected events per minute, e.g. 10")),
    }
}

/// The rules for one service, thresholds taken from `given` (by name, already parsed) or
/// the defaults.
pub fn for_service(kind: ServiceKind, service: &str, given: &BTreeMap<String, f64>) -> Vec<RuleDef> {
    let value = |name: &str| -> f64 {
        given.get(name).copied().unwrap_or_else(|| {
            thresholds(kind)
                .iter()
                .find(|t| t.name == name)
                .and_then(|t| parse_threshold(t.unit, t.default).ok())
                .unwrap_or(f64::NAN)
        })
    };
    let s = service;
    let rule = |alert: &str, severity: &str, for_s: i64, expr: String, summary: &str, runbook: &str| RuleDef {
        alert: alert.to_string(),
        expr,
        for_ms: for_s * 1000,
        keep_firing_for_ms: 0,
        labels: [("severity".to_string(), severity.to_string())].into_iter().collect(),
        annotations: [("summary".to_string(), summary.to_string()), ("runbook".to_string(), runbook.to_string())]
            .into_iter()
            .collect(),
        origin: format!("preset {} for {service}", kind.as_str()),
    };
    match kind {
        ServiceKind::Synapse => {
            let behind = |name_matcher: &str, seconds: f64| {
                format!(
                    "(max by (service) (synapse_event_persisted_position{{service=\"{s}\"}}) - on (service) group_right () \
                     synapse_event_processing_positions{{service=\"{s}\",{name_matcher}}} > 0) \
                     and on (service, name) \
                     (time() * 1000 - synapse_event_processing_last_ts{{service=\"{s}\",{name_matcher}}} > {})",
                    num(seconds * 1000.0)
                )
            };
            vec![
                rule(
                    "SynapseMemoryHigh",
                    "warning",
                    300,
                    format!("process_resident_memory_bytes{{service=\"{s}\"}} > {}", num(value("memory_warning"))),
                    "{{ $labels.service }} uses {{ $value | humanize1024 }}B of memory",
                    "Memory usage > 450 MB (Starter): WARNING",
                ),
                rule(
                    "SynapseMemoryCritical",
                    "critical",
                    120,
                    format!("process_resident_memory_bytes{{service=\"{s}\"}} > {}", num(value("memory_critical"))),
                    "{{ $labels.service }} uses {{ $value | humanize1024 }}B of memory and is near its limit",
                    "Memory usage > 500 MB (Starter): CRITICAL",
                ),
                rule(
                    "SynapseCpuSustained",
                    "warning",
                    600,
                    format!("rate(process_cpu_seconds_total{{service=\"{s}\"}}[5m]) > {}", num(value("cpu_warning"))),
                    "{{ $labels.service }} has used {{ $value | humanizePercentage }} of a CPU core for 10 minutes",
                    "CPU usage > 80% sustained: WARNING",
                ),
                rule(
                    "SynapseDbPoolSaturated",
                    "warning",
                    300,
                    format!(
                        "synapse_threadpool_working_threads{{service=\"{s}\",name=~\"database-.*\"}} / \
                         synapse_threadpool_max_threads{{service=\"{s}\",name=~\"database-.*\"}} > {}",
                        num(value("db_pool_warning"))
                    ),
                    "{{ $labels.service }} database pool {{ $labels.name }} is {{ $value | humanizePercentage }} busy",
                    "Database connections > 90% pool: WARNING",
                ),
                rule(
                    "SynapseFederationLag",
                    "warning",
                    60,
                    behind("name=\"federation_sender\"", value("federation_lag_warning")),
                    "{{ $labels.service }} federation sender is {{ $value }} events behind and stuck on old events",
                    "Federation lag > 5 minutes: WARNING",
                ),
                rule(
                    "SynapseEventProcessingLag",
                    "critical",
                    60,
                    behind("name=~\"federation_sender|appservice_sender\"", value("event_lag_critical")),
                    "{{ $labels.service }} {{ $labels.name }} is {{ $value }} events behind and stuck on old events",
                    "Event processing lag > 1 minute: CRITICAL",
                ),
            ]
        }
        ServiceKind::Mas => vec![
            rule(
                "MasFailedLogins",
                "warning",
                120,
                format!(
                    "sum by (service) (rate(mas_user_password_login_attempt_total{{service=\"{s}\",result=\"error\"}}[5m])) * 60 > {}",
                    num(value("failed_logins_warning"))
                ),
                "{{ $labels.service }} sees {{ $value | humanize }} failed password logins per minute",
                "Failed logins > 10/minute: WARNING",
            ),
            rule(
                "MasTokenErrors",
                "critical",
                60,
                format!(
                    "sum by (service) (rate(http_server_duration_count{{service=\"{s}\",http_route=\"/oauth2/token\",http_response_status_code=~\"5..\"}}[5m])) * 60 > {}",
                    num(value("token_errors_critical"))
                ),
                "{{ $labels.service }} token endpoint fails {{ $value | humanize }} times per minute",
                "Token generation errors > 1/minute: CRITICAL",
            ),
        ],
        ServiceKind::Postgres => {
            let no_data = |mut def: RuleDef, why: &str| {
                def.annotations.insert("no_data".to_string(), why.to_string());
                def
            };
            let disk_limit = "set `disk_limit` on the service (the disk's size) to measure disk usage; on Render, link it with `render: dpg-…` instead: RenderPostgresDisk* judge Render's real disk";
            vec![
                rule(
                    "PostgresConnectionsHigh",
                    "warning",
                    300,
                    format!("pg_connections_usage_ratio{{service=\"{s}\"}} > {}", num(value("connections_warning"))),
                    "{{ $labels.service }} has {{ $value | humanizePercentage }} of its connections in use (max_connections minus the reserved ones)",
                    "Connection count > 90% max: WARNING",
                ),
                no_data(
                    rule(
                        "PostgresDiskUsageHigh",
                        "warning",
                        600,
                        format!("pg_disk_usage_ratio{{service=\"{s}\"}} > {}", num(value("disk_warning"))),
                        "{{ $labels.service }} uses {{ $value | humanizePercentage }} of its disk (disk_limit)",
                        "Disk usage > 80%: WARNING",
                    ),
                    disk_limit,
                ),
                no_data(
                    rule(
                        "PostgresDiskUsageCritical",
                        "critical",
                        300,
                        format!("pg_disk_usage_ratio{{service=\"{s}\"}} > {}", num(value("disk_critical"))),
                        "{{ $labels.service }} uses {{ $value | humanizePercentage }} of its disk (disk_limit) and is close to full",
                        "Disk usage > 90%: CRITICAL",
                    ),
                    disk_limit,
                ),
                no_data(
                    rule(
                        "PostgresQueriesSlow",
                        "warning",
                        600,
                        format!(
                            "pg_stat_statements_mean_seconds{{service=\"{s}\"}} > {}",
                            num(value("query_time_warning"))
                        ),
                        "{{ $labels.service }}: statements in {{ $labels.datname }} took {{ $value | humanizeDuration }} on average between two polls (pg_stat_statements)",
                        "Query time > 1s p95: WARNING (mean from pg_stat_statements: the server keeps no percentiles)",
                    ),
                    "needs pg_stat_statements (shared_preload_libraries and CREATE EXTENSION) and two polls: see the postgres check's detail",
                ),
                no_data(
                    rule(
                        "PostgresQueriesSlowP95",
                        "warning",
                        600,
                        format!(
                            "histogram_quantile(0.95, sum by (service, le) (rate(synapse_storage_query_time_bucket[5m]))) > {}",
                            num(value("query_time_warning"))
                        ),
                        "{{ $labels.service }}'s database queries: p95 {{ $value | humanizeDuration }} (Synapse's synapse_storage_query_time histogram)",
                        "Query time > 1s p95: WARNING (true p95, client side, from Synapse)",
                    ),
                    "needs a Synapse service with `metrics_url` (its synapse_storage_query_time histogram)",
                ),
                no_data(
                    rule(
                        "PostgresReplicationLag",
                        "critical",
                        60,
                        format!(
                            "pg_replication_lag_seconds{{service=\"{s}\"}} > {}",
                            num(value("replication_lag_critical"))
                        ),
                        "{{ $labels.service }} (a replica) replays {{ $value | humanizeDuration }} behind its primary",
                        "Replication lag > 1 minute: CRITICAL",
                    ),
                    "no lag known yet (a replica that has not replayed a transaction since it started)",
                ),
                no_data(
                    rule(
                        "PostgresStandbyLag",
                        "critical",
                        60,
                        format!(
                            "pg_stat_replication_replay_lag_seconds{{service=\"{s}\"}} > {}",
                            num(value("replication_lag_critical"))
                        ),
                        "{{ $labels.service }}: standby {{ $labels.application_name }} replays {{ $value | humanizeDuration }} behind",
                        "Replication lag > 1 minute: CRITICAL (seen from the primary)",
                    ),
                    "no standby is connected to this primary (or the role lacks pg_monitor to see its lag)",
                ),
                no_data(
                    rule(
                        "PostgresDiskFullSoon",
                        "warning",
                        3600,
                        format!(
                            "pg_disk_days_until_full{{service=\"{s}\"}} < {}",
                            num(value("disk_full_warning") / 86_400.0)
                        ),
                        "{{ $labels.service }}'s disk is full in {{ $value | humanize }} days at its current growth",
                        "(added) disk full within 14 days at the current growth: WARNING",
                    ),
                    "needs `disk_limit` and a history of polls spanning at least 1h (`mxwarden run` keeps one)",
                ),
            ]
        }
        ServiceKind::Vikunja | ServiceKind::Authentik => Vec::new(),
    }
}

/// A number as PromQL writes it (no exponent for integers).
fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::AlertRule;

    #[test]
    fn every_preset_rule_compiles_with_defaults_and_overrides() {
        for kind in [
            ServiceKind::Synapse,
            ServiceKind::Mas,
            ServiceKind::Vikunja,
            ServiceKind::Authentik,
            ServiceKind::Postgres,
        ] {
            for def in for_service(kind, "svc", &BTreeMap::new()) {
                AlertRule::compile(def.clone()).unwrap_or_else(|e| panic!("{e}: {}", def.expr));
            }
        }
        let over: BTreeMap<String, f64> =
            [("memory_warning".to_string(), 2.0 * 1024.0 * 1024.0 * 1024.0)].into_iter().collect();
        let rules = for_service(ServiceKind::Synapse, "synapse", &over);
        assert_eq!(rules[0].expr, "process_resident_memory_bytes{service=\"synapse\"} > 2147483648");
        assert_eq!(
            rules[1].expr, "process_resident_memory_bytes{service=\"synapse\"} > 524288000",
            "the other stays default"
        );
    }

    #[test]
    fn thresholds_parse_in_their_units() {
        let cases: &[(Unit, &str, Option<f64>, &str)] = &[
            (Unit::Bytes, "450MiB", Some(471_859_200.0), "the runbook's Starter threshold"),
            (Unit::Ratio, "80%", Some(0.8), "percent"),
            (Unit::Ratio, "0.9", Some(0.9), "fraction"),
            (Unit::Seconds, "5m", Some(300.0), "duration"),
            (Unit::PerMinute, "10", Some(10.0), "rate"),
            (Unit::Bytes, "lots", None, "words are not sizes"),
            (Unit::Ratio, "-5%", None, "negative ratio"),
        ];
        for (unit, text, want, why) in cases {
            assert_eq!(parse_threshold(*unit, text).ok(), *want, "{text}: {why}");
        }
    }
}
