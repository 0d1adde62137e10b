//! Every preset rule, exactly as `preset::rules::for_service` and `preset::down::rule` build
//! it with default thresholds, over input that makes it fire and input that keeps it quiet.
//! Metric names and labels are the real ones (`synapse-metrics-sample.txt`, the MAS and
//! PostgreSQL probes), with the `service` and `instance` labels mxwarden adds; a decoy
//! service's series must never match.

use super::harness::{MIN, SEC, Scenario};
use mxwarden::config::schema::ServiceKind;
use mxwarden::preset;
use mxwarden::rule::RuleDef;
use std::collections::{BTreeMap, BTreeSet};

/// Every kind there is (`ServiceKind` cannot be enumerated).
pub const KINDS: [ServiceKind; 4] =
    [ServiceKind::Synapse, ServiceKind::Mas, ServiceKind::Vikunja, ServiceKind::Authentik];

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
    // `<Kind>Down` for every kind: one check of the service fails from 4m to 7m.
    let mut down =
        Scenario::new("down-rules", "one failing check (of two) makes the service down, after 1m").minutes(0..=10);
    for (i, kind) in KINDS.into_iter().enumerate() {
        let service = format!("{}-svc", kind.as_str());
        let alert = preset::down::alert_name(kind);
        down = down
            .rule(preset::down::rule(kind, &service, MIN))
            .series(
                &format!(r#"probe_success{{check="{service}-health",instance="{service}:80",service="{service}"}}"#),
                &format!("1x{} 0x4 1x3", 3 + i % 2),
            )
            .series(
                &format!(r#"probe_success{{check="{service}-tls",instance="{service}:443",service="{service}"}}"#),
                "1x10",
            )
            .quiet(&alert, 4 + (i % 2) as i64)
            .fires(&alert, 5 + (i % 2) as i64, 1)
            .quiet(&alert, 9 + (i % 2) as i64);
    }
    out.push(down);
    out
}
