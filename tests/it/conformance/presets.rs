//! Every preset rule, exactly as `preset::rules::for_service` and `preset::down::rule` build
//! it with default thresholds, over input that makes it fire and input that keeps it quiet.
//! Metric names and labels are the real ones (`synapse-metrics-sample.txt`, the MAS and
//! PostgreSQL probes), with the `service` and `instance` labels mxwarden adds; a decoy
//! service's series must never match.

use super::harness::{MIN, SEC, Scenario};
use mxwarden::model::ServiceKind;
use mxwarden::preset;
use mxwarden::rule::RuleDef;
use std::collections::{BTreeMap, BTreeSet};

/// Every kind there is (`ServiceKind` cannot be enumerated).
pub const KINDS: [ServiceKind; 5] =
    [ServiceKind::Synapse, ServiceKind::Mas, ServiceKind::Vikunja, ServiceKind::Authentik, ServiceKind::Postgres];

fn preset_rule(kind: ServiceKind, service: &str, alert: &str) -> RuleDef {
    preset::rules::for_service(kind, service, &BTreeMap::new())
        .into_iter()
        .find(|r| r.alert == alert)
        .unwrap_or_else(|| panic!("no preset rule {alert} for {}: renamed or removed?", kind.as_str()))
}

/// The names of all preset rules (the default `down_after` is 1m).
pub fn all_preset_alerts() -> BTreeSet<String> {
    KINDS
        .iter()
        .flat_map(|&k| {
            preset::rules::for_service(k, "svc", &BTreeMap::new())
                .into_iter()
                .map(|r| r.alert)
                .chain([preset::down::alert_name(k)])
        })
        .chain(
            ["CertificateExpiringSoon", "AdminTokenInvalid", "SynapseHighErrorRate", "CheckFailing"].map(String::from),
        )
        .collect()
}

const SYN: &str = r#"instance="synapse:9000",server_name="hs.example",service="synapse""#;
const DECOY: &str = r#"instance="other:9000",server_name="other.example",service="other""#;

pub fn scenarios() -> Vec<Scenario> {
    let syn = |kind: &str, alert: &str| preset_rule(ServiceKind::Synapse, kind, alert);
    let mas = |alert: &str| preset_rule(ServiceKind::Mas, "mas", alert);
    let mut out = vec![
        Scenario::new("synapse-memory-high", "crosses 450MiB at 11m, fires after 5m, drops at 18m")
            .rule(syn("synapse", "SynapseMemoryHigh"))
            .series(&format!("process_resident_memory_bytes{{{SYN}}}"), "1.30228224e+08x2 4e8+1e7x14 2.5e8x5")
            .series(&format!("process_resident_memory_bytes{{{DECOY}}}"), "9e8x23")
            .minutes(0..=23)
            .quiet("SynapseMemoryHigh", 15)
            .fires("SynapseMemoryHigh", 16, 1)
            .fires("SynapseMemoryHigh", 17, 1)
            .quiet("SynapseMemoryHigh", 18),
        Scenario::new("synapse-memory-critical", "over 500MiB from 3m, for 2m")
            .rule(syn("synapse", "SynapseMemoryCritical"))
            .series(&format!("process_resident_memory_bytes{{{SYN}}}"), "5e8+1e7x10 4e8x5")
            .series(&format!("process_resident_memory_bytes{{{DECOY}}}"), "9e8x16")
            .minutes(0..=16)
            .quiet("SynapseMemoryCritical", 4)
            .fires("SynapseMemoryCritical", 5, 1)
            .quiet("SynapseMemoryCritical", 11),
        Scenario::new(
            "synapse-cpu-sustained",
            "0.9 of a core scraped every 15s (the 5m rate passes 80% at 5m), a restart (counter reset) at 20m15s, 0.2 of a core from 30m30s",
        )
        .rule(syn("synapse", "SynapseCpuSustained"))
        .series(&format!("process_cpu_seconds_total{{{SYN}}}"), "5.09+13.5x80 0.2+13.5x40 543.2+3x60")
        .series(&format!("process_cpu_seconds_total{{{DECOY}}}"), "0+15x180")
        .intervals(15 * SEC, MIN)
        .minutes(0..=45)
        .quiet("SynapseCpuSustained", 14)
        .fires("SynapseCpuSustained", 15, 1)
        .fires("SynapseCpuSustained", 25, 1)
        .quiet("SynapseCpuSustained", 31),
        Scenario::new(
            "synapse-db-pool",
            "database-master full for 10m; database-events at exactly 90% (not above); the default pool is no database pool",
        )
        .rule(syn("synapse", "SynapseDbPoolSaturated"))
        .series(&format!(r#"synapse_threadpool_working_threads{{name="database-master",{SYN}}}"#), "3x5 10x9 4x5")
        .series(&format!(r#"synapse_threadpool_max_threads{{name="database-master",{SYN}}}"#), "10x20")
        .series(&format!(r#"synapse_threadpool_working_threads{{name="database-events",{SYN}}}"#), "9x20")
        .series(&format!(r#"synapse_threadpool_max_threads{{name="database-events",{SYN}}}"#), "10x20")
        .series(&format!(r#"synapse_threadpool_working_threads{{name="default",{SYN}}}"#), "10x20")
        .series(&format!(r#"synapse_threadpool_max_threads{{name="default",{SYN}}}"#), "10x20")
        .series(&format!(r#"synapse_threadpool_working_threads{{name="database-master",{DECOY}}}"#), "1x20")
        .series(&format!(r#"synapse_threadpool_max_threads{{name="database-master",{DECOY}}}"#), "1x20")
        .minutes(0..=20)
        .quiet("SynapseDbPoolSaturated", 10)
        .fires("SynapseDbPoolSaturated", 11, 1)
        .fires("SynapseDbPoolSaturated", 15, 1)
        .quiet("SynapseDbPoolSaturated", 16),
        Scenario::new(
            "synapse-federation-lag",
            "the federation sender sticks at position 150 from 6m while its last event ages past 5m at 10m; catches up at 16m",
        )
        .rule(syn("synapse", "SynapseFederationLag"))
        .series(&format!("synapse_event_persisted_position{{{SYN}}}"), "100+10x30")
        .series(
            &format!(r#"synapse_event_processing_positions{{name="federation_sender",{SYN}}}"#),
            "100+10x5 150x9 250+10x15",
        )
        .series(
            &format!(r#"synapse_event_processing_last_ts{{name="federation_sender",{SYN}}}"#),
            "0+60000x5 300000x9 900000+60000x15",
        )
        .series(&format!(r#"synapse_event_processing_positions{{name="presence",{SYN}}}"#), "0x30")
        .series(&format!(r#"synapse_event_processing_last_ts{{name="presence",{SYN}}}"#), "0x30")
        .series(&format!("synapse_event_persisted_position{{{DECOY}}}"), "1000x30")
        .series(&format!(r#"synapse_event_processing_positions{{name="federation_sender",{DECOY}}}"#), "0x30")
        .series(&format!(r#"synapse_event_processing_last_ts{{name="federation_sender",{DECOY}}}"#), "0x30")
        .minutes(0..=20)
        .quiet("SynapseFederationLag", 11)
        .fires("SynapseFederationLag", 12, 1)
        .fires("SynapseFederationLag", 15, 1)
        .quiet("SynapseFederationLag", 16),
        Scenario::new(
            "synapse-event-processing-lag",
            "the appservice sender is 10 behind and its last event ages 30s per minute: over 1m at 3m; catches up at 10m",
        )
        .rule(syn("synapse", "SynapseEventProcessingLag"))
        .series(&format!("synapse_event_persisted_position{{{SYN}}}"), "100x20")
        .series(&format!(r#"synapse_event_processing_positions{{name="appservice_sender",{SYN}}}"#), "90x9 100x10")
        .series(&format!(r#"synapse_event_processing_last_ts{{name="appservice_sender",{SYN}}}"#), "0+30000x20")
        .series(&format!(r#"synapse_event_processing_positions{{name="federation_sender",{SYN}}}"#), "100x20")
        .series(&format!(r#"synapse_event_processing_last_ts{{name="federation_sender",{SYN}}}"#), "0+60000x20")
        .series(&format!(r#"synapse_event_processing_positions{{name="user_dir",{SYN}}}"#), "0x20")
        .series(&format!(r#"synapse_event_processing_last_ts{{name="user_dir",{SYN}}}"#), "0x20")
        .minutes(0..=12)
        .quiet("SynapseEventProcessingLag", 3)
        .fires("SynapseEventProcessingLag", 4, 1)
        .fires("SynapseEventProcessingLag", 9, 1)
        .quiet("SynapseEventProcessingLag", 10),
    ];
    let mas_labels = r#"instance="mas:8081",mas_listener_name="web",network_protocol_name="http",network_protocol_version="1.1",service="mas",url_scheme="http""#;
    out.push(
        Scenario::new("mas-failed-logins", "5 failed logins a minute, then 30 from 11m; successes do not count")
            .rule(mas("MasFailedLogins"))
            .series(
                r#"mas_user_password_login_attempt_total{instance="mas:8081",result="error",service="mas"}"#,
                "0+5x10 55+30x20",
            )
            .series(
                r#"mas_user_password_login_attempt_total{instance="mas:8081",result="success",service="mas"}"#,
                "0+100x30",
            )
            .series(
                r#"mas_user_password_login_attempt_total{instance="mas2:8081",result="error",service="mas-staging"}"#,
                "0+100x30",
            )
            .minutes(0..=30)
            .quiet("MasFailedLogins", 10)
            .fires("MasFailedLogins", 20, 1)
            .fires("MasFailedLogins", 30, 1),
    );
    out.push(
        Scenario::new("mas-token-errors", "3 token 500s a minute from 7m; introspection errors and 200s do not count")
            .rule(mas("MasTokenErrors"))
            .series(
                &format!(r#"http_server_duration_count{{http_request_method="POST",http_response_status_code="500",http_route="/oauth2/token",{mas_labels}}}"#),
                "0x5 0+3x20",
            )
            .series(
                &format!(r#"http_server_duration_count{{http_request_method="POST",http_response_status_code="503",http_route="/oauth2/token",{mas_labels}}}"#),
                "0x25",
            )
            .series(
                &format!(r#"http_server_duration_count{{http_request_method="POST",http_response_status_code="200",http_route="/oauth2/token",{mas_labels}}}"#),
                "0+100x25",
            )
            .series(
                &format!(r#"http_server_duration_count{{http_request_method="POST",http_response_status_code="500",http_route="/oauth2/introspect",{mas_labels}}}"#),
                "0+50x25",
            )
            .minutes(0..=25)
            .quiet("MasTokenErrors", 7)
            .fires("MasTokenErrors", 15, 1)
            .fires("MasTokenErrors", 25, 1),
    );
    out.extend(postgres_scenarios());
    // `<Kind>Down` for every kind: one availability check of the service fails from 4m to 7m;
    // its `tls` check fails from 1m on and never counts.
    let mut down = Scenario::new(
        "down-rules",
        "one failing availability check makes the service down, after 1m; a failing tls check does not",
    )
    .minutes(0..=10);
    for (i, kind) in KINDS.into_iter().enumerate() {
        let service = format!("{}-svc", kind.as_str());
        let alert = preset::down::alert_name(kind);
        let first = match kind {
            ServiceKind::Synapse | ServiceKind::Vikunja => "health",
            ServiceKind::Mas => "discovery",
            ServiceKind::Authentik => "live",
            ServiceKind::Postgres => "postgres",
        };
        down = down
            .rule(preset::down::rule(kind, &service, MIN))
            .series(
                &format!(r#"probe_success{{check="{service}/{first}",instance="{service}:80",service="{service}"}}"#),
                &format!("1x{} 0x4 1x3", 3 + i % 2),
            )
            .series(
                &format!(r#"probe_success{{check="{service}/tls",instance="{service}:443",service="{service}"}}"#),
                "1x1 0x9",
            )
            .quiet(&alert, 4 + (i % 2) as i64)
            .fires(&alert, 5 + (i % 2) as i64, 1)
            .quiet(&alert, 9 + (i % 2) as i64);
    }
    out.push(down);
    out.extend(semantic_scenarios());
    out
}

/// `preset::alerts`: certificates, refused tokens, Synapse's error rate, hand-written checks.
fn semantic_scenarios() -> Vec<Scenario> {
    let certificate = Scenario::new(
        "certificate-expiring-soon",
        "40 days left until 5m (quiet), then 10 days (a warning), then 2 days from 12m (critical only)",
    )
    .rule(preset::alerts::certificate("synapse", "matrix.example.org", 14.0)[0].clone())
    .rule(preset::alerts::certificate("synapse", "matrix.example.org", 14.0)[1].clone())
    .series(r#"probe_ssl_earliest_cert_expiry{check="synapse/tls",service="synapse"}"#, "3456000x4 864000x7 172800x8")
    .series(r#"probe_ssl_earliest_cert_expiry{check="other/tls",service="other"}"#, "86400x19")
    .minutes(0..=19)
    .quiet("CertificateExpiringSoon", 3)
    .fires("CertificateExpiringSoon", 8, 1)
    .fires("CertificateExpiringSoon", 15, 1);
    vec![
        certificate,
        Scenario::new("admin-token-invalid", "401 from 3m to 8m, for 1m; a 502 (Synapse down) is not the token")
            .rule(preset::alerts::admin_token("synapse", "synapse/admin-token", MIN))
            .series(
                r#"probe_http_status_code{check="synapse/admin-token",service="synapse"}"#,
                "200x2 401x5 502x4 200x2",
            )
            .minutes(0..=13)
            .quiet("AdminTokenInvalid", 3)
            .fires("AdminTokenInvalid", 5, 1)
            .quiet("AdminTokenInvalid", 10),
        Scenario::new("synapse-high-error-rate", "10 of 100 requests a second are 5xx from 10m; 1 % before")
            .rule(preset::alerts::synapse_error_rate("synapse"))
            .series(&format!(r#"synapse_http_server_responses_total{{code="200",method="GET",{SYN}}}"#), "0+5940x40")
            .series(
                &format!(r#"synapse_http_server_responses_total{{code="500",method="GET",{SYN}}}"#),
                "0+60x9 540+600x30",
            )
            .series(&format!(r#"synapse_http_server_responses_total{{code="500",method="GET",{DECOY}}}"#), "0+6000x40")
            .minutes(0..=40)
            .quiet("SynapseHighErrorRate", 9)
            .fires("SynapseHighErrorRate", 25, 1),
        Scenario::new(
            "check-failing",
            "the hand-written check fails from 3m to 7m, for 1m; another check fails all along",
        )
        .rule(preset::alerts::check_failing("homepage", false, MIN))
        .series(r#"probe_success{check="homepage"}"#, "1x2 0x5 1x4")
        .series(r#"probe_success{check="other"}"#, "0x12")
        .minutes(0..=11)
        .quiet("CheckFailing", 3)
        .fires("CheckFailing", 5, 1)
        .quiet("CheckFailing", 9),
    ]
}

const PG: &str = r#"instance="db:5432",service="db""#;
const PG_DECOY: &str = r#"instance="other-db:5432",service="other-db""#;

/// The PostgreSQL preset over the probe's sample names and labels (`src/probe/postgres`).
fn postgres_scenarios() -> Vec<Scenario> {
    let pg = |alert: &str| preset_rule(ServiceKind::Postgres, "db", alert);
    let standby = r#"application_name="replica1",client_addr="127.0.0.1",state="streaming",sync_state="async""#;
    let standby2 = r#"application_name="replica2",client_addr="127.0.0.2",state="streaming",sync_state="async""#;
    vec![
        Scenario::new("postgres-connections-high", "95% of the usable connections from 5m to 15m, for 5m; exactly 90% is not above 90%")
            .rule(pg("PostgresConnectionsHigh"))
            .series(&format!("pg_connections_usage_ratio{{{PG}}}"), "0.9x4 0.95x10 0.9x6")
            .series(&format!("pg_connections_usage_ratio{{{PG_DECOY}}}"), "0.99x22")
            .minutes(0..=22)
            .quiet("PostgresConnectionsHigh", 9)
            .fires("PostgresConnectionsHigh", 10, 1)
            .fires("PostgresConnectionsHigh", 15, 1)
            .quiet("PostgresConnectionsHigh", 16),
        Scenario::new("postgres-disk-high", "85% of disk_limit from 5m to 25m, for 10m")
            .rule(pg("PostgresDiskUsageHigh"))
            .series(&format!("pg_disk_usage_ratio{{{PG}}}"), "0.5x4 0.85x20 0.5x5")
            .series(&format!("pg_disk_usage_ratio{{{PG_DECOY}}}"), "0.99x30")
            .minutes(0..=30)
            .quiet("PostgresDiskUsageHigh", 14)
            .fires("PostgresDiskUsageHigh", 15, 1)
            .fires("PostgresDiskUsageHigh", 25, 1)
            .quiet("PostgresDiskUsageHigh", 26),
        Scenario::new("postgres-disk-critical", "95% from 5m to 15m, for 5m; 85% is only the warning")
            .rule(pg("PostgresDiskUsageCritical"))
            .series(&format!("pg_disk_usage_ratio{{{PG}}}"), "0.85x4 0.95x10 0.85x5")
            .series(&format!("pg_disk_usage_ratio{{{PG_DECOY}}}"), "0.99x20")
            .minutes(0..=20)
            .quiet("PostgresDiskUsageCritical", 9)
            .fires("PostgresDiskUsageCritical", 10, 1)
            .fires("PostgresDiskUsageCritical", 15, 1)
            .quiet("PostgresDiskUsageCritical", 16),
        Scenario::new("postgres-queries-slow", "matrix's mean statement time 1.5s from 5m to 16m, for 10m; mas stays fast")
            .rule(pg("PostgresQueriesSlow"))
            .series(&format!(r#"pg_stat_statements_mean_seconds{{datname="matrix",{PG}}}"#), "0.01x4 1.5x11 0.01x5")
            .series(&format!(r#"pg_stat_statements_mean_seconds{{datname="mas",{PG}}}"#), "0.5x20")
            .series(&format!(r#"pg_stat_statements_mean_seconds{{datname="matrix",{PG_DECOY}}}"#), "5x20")
            .minutes(0..=20)
            .quiet("PostgresQueriesSlow", 14)
            .fires("PostgresQueriesSlow", 15, 1)
            .fires("PostgresQueriesSlow", 16, 1)
            .quiet("PostgresQueriesSlow", 17),
        Scenario::new(
            "postgres-queries-slow-p95",
            "Synapse's queries move from under 0.5s to between 1s and 2.5s at 11m and back at 31m: the p95 of the 5m rate",
        )
        .rule(pg("PostgresQueriesSlowP95"))
        .series(&format!(r#"synapse_storage_query_time_bucket{{le="0.5",verb="get_users",{SYN}}}"#), "0+10x10 100x20 100+10x15")
        .series(&format!(r#"synapse_storage_query_time_bucket{{le="1",verb="get_users",{SYN}}}"#), "0+10x10 100x20 100+10x15")
        .series(&format!(r#"synapse_storage_query_time_bucket{{le="2.5",verb="get_users",{SYN}}}"#), "0+10x45")
        .series(&format!(r#"synapse_storage_query_time_bucket{{le="+Inf",verb="get_users",{SYN}}}"#), "0+10x45")
        .minutes(0..=45)
        .quiet("PostgresQueriesSlowP95", 10)
        .quiet("PostgresQueriesSlowP95", 20)
        .fires("PostgresQueriesSlowP95", 23, 1)
        .fires("PostgresQueriesSlowP95", 30, 1)
        .quiet("PostgresQueriesSlowP95", 40),
        Scenario::new("postgres-replication-lag", "a replica's replay lag grows 30s a minute from 5m, caught up at 12m")
            .rule(pg("PostgresReplicationLag"))
            .series(&format!("pg_replication_lag_seconds{{{PG}}}"), "0x4 30+30x6 0x5")
            .series(&format!("pg_replication_lag_seconds{{{PG_DECOY}}}"), "600x16")
            .minutes(0..=16)
            .quiet("PostgresReplicationLag", 7)
            .fires("PostgresReplicationLag", 8, 1)
            .fires("PostgresReplicationLag", 11, 1)
            .quiet("PostgresReplicationLag", 12),
        Scenario::new("postgres-standby-lag", "one of two standbys lags from 5m (seen from the primary)")
            .rule(pg("PostgresStandbyLag"))
            .series(&format!("pg_stat_replication_replay_lag_seconds{{{standby},{PG}}}"), "0x4 30+30x6 0x5")
            .series(&format!("pg_stat_replication_replay_lag_seconds{{{standby2},{PG}}}"), "0.1x16")
            .minutes(0..=16)
            .quiet("PostgresStandbyLag", 7)
            .fires("PostgresStandbyLag", 8, 1)
            .fires("PostgresStandbyLag", 11, 1)
            .quiet("PostgresStandbyLag", 12),
        Scenario::new("postgres-disk-full-soon", "10 days until full from 10m to 80m, for 1h")
            .rule(pg("PostgresDiskFullSoon"))
            .series(&format!("pg_disk_days_until_full{{{PG}}}"), "30x9 10x70 30x10")
            .series(&format!("pg_disk_days_until_full{{{PG_DECOY}}}"), "1x90")
            .minutes(0..=90)
            .quiet("PostgresDiskFullSoon", 69)
            .fires("PostgresDiskFullSoon", 70, 1)
            .fires("PostgresDiskFullSoon", 80, 1)
            .quiet("PostgresDiskFullSoon", 81),
    ]
}
