//! Each preset against its real service (Synapse on PostgreSQL, an OIDC provider for MAS's
//! discovery) or, where the software cannot run here, a fake with the documented shapes
//! (Vikunja, authentik, MAS's internal /health). Also: Synapse stopped mid-way, and the preset
//! rules over a real Synapse's /metrics.

use crate::cli::{Run, check_json, config};
use crate::support::{fakes, services};

fn stack_config(extra_synapse: &str) -> String {
    let s = services::shared();
    format!(
        r#"defaults: {{ timeout: 10s }}
services:
  synapse:
    kind: synapse
    url: {synapse}
    admin_token: "${{MXW_SYNAPSE_TOKEN}}"
    federation_url: {synapse}
    metrics_url: {metrics}
{extra_synapse}
  mas:
    kind: mas
    url: {issuer}
    issuer: {issuer}
    health_url: {mas_health}/health
  vikunja:
    kind: vikunja
    url: {vikunja}
  authentik:
    kind: authentik
    url: {authentik}
    api_token: "${{MXW_AUTHENTIK_TOKEN}}"
"#,
        synapse = s.synapse.base_url,
        metrics = s.synapse.metrics_url,
        issuer = s.oidc.issuer,
        mas_health = fakes::mas_health(true),
        vikunja = fakes::vikunja(),
        authentik = fakes::authentik("ak-test-token", 200),
    )
}

fn run_stack(extra_synapse: &str) -> Run {
    let file = config(&stack_config(extra_synapse));
    let token = services::shared().synapse.admin_token.clone();
    check_json(&file, &[], &[("MXW_SYNAPSE_TOKEN", &token), ("MXW_AUTHENTIK_TOKEN", "ak-test-token")])
}

#[test]
fn every_preset_passes_against_its_service_and_no_rule_fires_on_an_idle_synapse() {
    let run = run_stack("");
    assert_eq!(run.code, 0, "{}", run.all());
    let rows = run.json();
    let rows = rows.as_array().unwrap();
    let probes: Vec<&str> = rows.iter().filter(|r| r["kind"] != "rule").map(|r| r["check"].as_str().unwrap()).collect();
    assert_eq!(
        probes,
        [
            "authentik/live",
            "authentik/ready",
            "authentik/version",
            "mas/discovery",
            "mas/jwks",
            "mas/health",
            "synapse/health",
            "synapse/client-versions",
            "synapse/admin-version",
            "synapse/admin-token",
            "synapse/media",
            "synapse/federation",
            "vikunja/health",
            "vikunja/info",
            "synapse/metrics",
        ],
        "{}",
        run.all()
    );
    for row in rows {
        assert_eq!(row["ok"], true, "{row}");
        assert!(row["service"].is_string() && row["detail"].is_string() && row["latency_ms"].is_u64(), "{row}");
    }
    let rules: Vec<&str> = rows.iter().filter(|r| r["kind"] == "rule").map(|r| r["check"].as_str().unwrap()).collect();
    assert_eq!(
        rules,
        [
            "SynapseMemoryHigh",
            "SynapseMemoryCritical",
            "SynapseCpuSustained",
            "SynapseDbPoolSaturated",
            "SynapseFederationLag",
            "SynapseEventProcessingLag",
            "AuthentikDown",
            "MasDown",
            "SynapseDown",
            "VikunjaDown",
            "AdminTokenInvalid",
            "AdminTokenInvalid",
            "SynapseHighErrorRate",
            "SynapseMediaEphemeral",
        ],
        "the six Synapse metric rules, one Down rule per service, a token rule per service with a token \
         (synapse, authentik), Synapse's error rate and the media-store question are judged"
    );
    let scrape = rows.iter().find(|r| r["check"] == "synapse/metrics").unwrap();
    assert!(scrape["detail"].as_str().unwrap().contains("kept for rules"), "{scrape}");
}

#[test]
fn a_lowered_threshold_makes_a_preset_rule_fire_on_real_metrics() {
    let run = run_stack("    thresholds: { memory_warning: 1MiB }");
    assert_eq!(run.code, 1, "{}", run.all());
    let row = run.row("SynapseMemoryHigh");
    assert_eq!(row["ok"], false, "{row}");
    let detail = row["detail"].as_str().unwrap();
    assert!(
        detail.contains("synapse uses") && detail.contains("MiB of memory") && detail.contains("holds for 5m"),
        "{detail}"
    );
    assert_eq!(run.row("SynapseMemoryCritical")["ok"], true, "the critical threshold is still 500MiB");
}

#[test]
fn synapse_stopped_gives_exit_1_and_names_the_refused_connection() {
    let mut synapse = services::Synapse::start_sqlite();
    let file = config(&format!(
        "services:\n  synapse: {{ kind: synapse, url: \"{}\", admin_token: \"${{T}}\" }}\n",
        synapse.base_url
    ));
    let env = [("T", synapse.admin_token.as_str())];
    let up = check_json(&file, &[], &env);
    assert_eq!(up.code, 0, "{}", up.all());
    let token = synapse.admin_token.clone();
    synapse.stop();
    let down = check_json(&file, &[], &[("T", token.as_str())]);
    assert_eq!(down.code, 1, "{}", down.all());
    let port = synapse.base_url.rsplit(':').next().unwrap();
    let down_rule = down.row("SynapseDown");
    assert_eq!(down_rule["kind"], "rule");
    assert_eq!(down_rule["detail"], "synapse fails its health checks — fires once this holds for 1m");
    for row in down.json().as_array().unwrap().iter().filter(|r| r["kind"] != "rule") {
        assert_eq!(row["ok"], false);
        let detail = row["detail"].as_str().unwrap();
        assert!(detail.contains(&format!("connection refused by 127.0.0.1:{port}")), "{detail}");
    }
    assert!(!down.all().contains(&token), "the token never appears in output");
}

#[test]
fn a_wrong_synapse_admin_token_is_caught_by_admin_token() {
    let s = services::shared();
    let file = config(&format!(
        "services:\n  synapse: {{ kind: synapse, url: \"{}\", admin_token: not-a-token }}\n",
        s.synapse.base_url
    ));
    let run = check_json(&file, &["synapse/admin-token"], &[]);
    assert_eq!(run.code, 1, "{}", run.all());
    let detail = run.row("synapse/admin-token")["detail"].as_str().unwrap().to_string();
    assert!(detail.starts_with("status 401 not in [200]") && detail.contains("M_UNKNOWN_TOKEN"), "{detail}");
}

#[test]
fn a_mas_issuer_mismatch_and_a_failing_mas_health_are_explained() {
    let s = services::shared();
    let file = config(&format!(
        "services:\n  mas: {{ kind: mas, url: \"{}\", issuer: \"https://auth.example.org/\", health_url: \"{}/health\" }}\n",
        s.oidc.issuer,
        fakes::mas_health(false)
    ));
    let run = check_json(&file, &[], &[]);
    assert_eq!(run.code, 1, "{}", run.all());
    let discovery = run.row("mas/discovery");
    assert_eq!(
        discovery["detail"],
        format!("$.issuer is \"{}\", expected \"https://auth.example.org/\"", s.oidc.issuer),
        "{}",
        run.all()
    );
    assert_eq!(run.row("mas/jwks")["ok"], true, "the JWKS is found through discovery");
    assert!(run.row("mas/health")["detail"].as_str().unwrap().starts_with("status 500 not in [200]"));
}

#[test]
fn authentik_liveness_accepts_an_older_204_and_a_bad_token_is_named() {
    let file = config(&format!(
        "services:\n  authentik: {{ kind: authentik, url: \"{}\", api_token: wrong }}\n",
        fakes::authentik("right", 204)
    ));
    let run = check_json(&file, &[], &[]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert_eq!(run.row("authentik/live")["ok"], true, "204 is live on older releases");
    let detail = run.row("authentik/version")["detail"].as_str().unwrap().to_string();
    assert!(detail.starts_with("status 403 not in [200]") && detail.contains("Authentication credentials"), "{detail}");
}

#[test]
fn disabled_and_overridden_preset_checks_take_effect() {
    let s = services::shared();
    let file = config(&format!(
        "services:\n  synapse:\n    kind: synapse\n    url: \"{}\"\n    disable: [client-versions, synapse/admin-version]\n    overrides:\n      health: {{ expect: {{ body_contains: \"NOT-THERE\" }} }}\n",
        s.synapse.base_url
    ));
    let run = check_json(&file, &[], &[]);
    let names: Vec<String> = run
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] != "rule")
        .map(|r| r["check"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["synapse/health"], "{}", run.all());
    assert_eq!(run.code, 1);
    assert_eq!(run.row("SynapseDown")["ok"], false, "the failing check makes SynapseDown fire");
    assert_eq!(run.row("synapse/health")["detail"], "body does not contain \"NOT-THERE\" (body: \"OK\")");
}

#[test]
fn scraping_the_real_synapse_finds_its_build_info() {
    let s = services::shared();
    let run = crate::cli::run(&["scrape", &s.synapse.metrics_url, "--json", "--family", "synapse_build_info"], &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    let rows = run.json();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{}", run.stdout);
    assert_eq!(rows[0]["name"], "synapse_build_info");
    assert_eq!(rows[0]["labels"]["version"], "1.163.2");
}
