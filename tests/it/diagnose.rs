//! `mxwarden diagnose`, `synapse purge-media` / `media-stats`, the diagnosis that follows a
//! page, and alerts that mean what the runbook means — against the real Synapse, PostgreSQL
//! and OIDC provider of the harness; Vikunja is a fake in its documented shape, and the OIDC
//! provider stands in for MAS (its discovery document, like MAS's, has no `email` claim).

use crate::alerting::{Daemon, wait_for};
use crate::cli::{check_json, config, run};
use crate::matrix;
use crate::support::{fakes, services, tls_server};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Vikunja's `/api/v1/info` (v2.5.0 shape) listing one OpenID provider.
fn vikunja_with_provider(key: &str, auth_url: &str) -> String {
    use axum::routing::get;
    let info = serde_json::json!({
        "version": "v2.5.0",
        "frontend_url": "https://tasks.example.com/",
        "auth": {"local": {"enabled": true, "registration_enabled": true}, "ldap": {"enabled": false},
                 "openid_connect": {"enabled": true, "providers": [
                    {"name": key, "key": key, "auth_url": auth_url, "logout_url": "", "client_id": "vikunja",
                     "scope": "openid email profile", "email_fallback": false, "username_fallback": false,
                     "force_user_info": false}]}}
    });
    fakes::serve(
        axum::Router::new()
            .route("/health", get(|| async { "OK" }))
            .route("/api/v1/info", get(move || async move { axum::Json(info) })),
    )
}

/// The findings of `--json` output, flattened.
fn findings(report: &Value) -> Vec<Value> {
    report["playbooks"].as_array().unwrap().iter().flat_map(|p| p["findings"].as_array().unwrap().clone()).collect()
}

fn diagnose(file: &crate::cli::ConfigFile, topics: &[&str], env: &[(&str, &str)]) -> crate::cli::Run {
    let mut args = vec!["--config", file.path.to_str().unwrap(), "diagnose", "--json"];
    args.extend_from_slice(topics);
    run(&args, env)
}

#[test]
fn oidc_finds_that_synapse_serves_no_auth_metadata_without_mas() {
    let s = services::shared();
    let file = config(&format!(
        "services:\n  synapse: {{ kind: synapse, url: \"{}\" }}\n  mas: {{ kind: mas, url: \"{}\" }}\n",
        s.synapse.base_url, s.oidc.issuer
    ));
    let r = diagnose(&file, &["oidc"], &[]);
    assert_eq!(r.code, 1, "a finding exits 1: {}", r.all());
    let found = findings(&r.json());
    let f = found
        .iter()
        .find(|f| f["title"].as_str().unwrap().contains("auth_metadata answers 404"))
        .unwrap_or_else(|| panic!("no auth_metadata finding: {}", r.stdout));
    assert_eq!(f["severity"], "critical");
    assert!(f["seen"][0].as_str().unwrap().contains("404 M_UNRECOGNIZED"), "{f}");
    assert!(f["fix"][0].as_str().unwrap().contains("matrix_authentication_service"), "{f}");
    assert_eq!(f["runbook"], "Common Issues: OIDC Flow Fails");
    let checked = r.json()["playbooks"][0]["checked"].to_string();
    assert!(checked.contains("MAS discovery answers; issuer") && checked.contains("key(s)"), "{checked}");
}

#[test]
fn vikunja_email_names_the_provider_that_cannot_deliver_an_email_and_the_real_fix() {
    let s = services::shared();
    let vikunja = vikunja_with_provider("mas", &s.oidc.issuer);
    let file = config(&format!(
        "services:\n  vikunja: {{ kind: vikunja, url: \"{vikunja}\" }}\n  mas: {{ kind: mas, url: \"{}\" }}\n",
        s.oidc.issuer
    ));
    let r = diagnose(&file, &["vikunja-email"], &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    let found = findings(&r.json());
    assert_eq!(found.len(), 1, "{}", r.stdout);
    let f = &found[0];
    assert_eq!(f["severity"], "critical", "it is MAS: critical whatever it announces");
    let title = f["title"].as_str().unwrap();
    assert!(title.contains("provider `mas`") && title.contains("(it is MAS)"), "{title}");
    assert!(f["why"].as_str().unwrap().contains("error 1019"), "{f}");
    let fix = f["fix"].to_string();
    assert!(fix.contains("authentik") && fix.contains("does not exist"), "authentik, and no MAS patch: {fix}");
}

#[test]
fn mas_db_finds_that_the_mas_database_is_missing() {
    let s = services::shared();
    let file = config(&format!(
        "services:\n  db: {{ kind: postgres, dsn: \"{}\", databases: [synapse] }}\n  mas: {{ kind: mas, url: \"{}\" }}\n",
        s.pg.dsn("postgres"),
        s.oidc.issuer
    ));
    let r = diagnose(&file, &["mas-db"], &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    let found = findings(&r.json());
    let f = found
        .iter()
        .find(|f| f["title"].as_str().unwrap().contains("the `mas` database does not exist"))
        .unwrap_or_else(|| panic!("no missing-database finding: {}", r.stdout));
    assert!(f["seen"][0].as_str().unwrap().contains("3D000"), "the server's own words: {f}");
    assert!(f["fix"][0].as_str().unwrap().contains("CREATE DATABASE mas"), "{f}");
    let checked = r.json()["playbooks"][0]["checked"].to_string();
    assert!(checked.contains("client connections of") && checked.contains("max_connections"), "{checked}");
}

#[test]
fn a_healthy_stack_finds_nothing_and_exits_0_and_wrong_topics_exit_2() {
    let s = services::shared();
    let vikunja = fakes::vikunja();
    let file = config(&format!(
        "services:
  synapse: {{ kind: synapse, url: \"{}\", metrics_url: \"{}\", admin_token: \"${{T}}\", media_persistent: true,
             thresholds: {{ memory_warning: 4GiB, memory_critical: 5GiB }} }}
  vikunja: {{ kind: vikunja, url: \"{vikunja}\" }}
  db: {{ kind: postgres, dsn: \"{}\", databases: [synapse] }}
",
        s.synapse.base_url,
        s.synapse.metrics_url,
        s.pg.dsn("postgres")
    ));
    let token = s.synapse.admin_token.as_str();
    let r = diagnose(&file, &[], &[("T", token)]);
    assert_eq!(r.code, 0, "healthy: {}", r.all());
    let report = r.json();
    let names: Vec<&str> =
        report["playbooks"].as_array().unwrap().iter().map(|p| p["topic"].as_str().unwrap()).collect();
    assert_eq!(names, ["synapse-oom", "vikunja-email", "db-disk"], "every playbook the config makes possible");
    assert!(findings(&r.json()).is_empty(), "{}", r.stdout);
    let checked = r.json()["playbooks"][0]["checked"].to_string();
    assert!(checked.contains("resident memory") && checked.contains("MiB"), "numbers, not adjectives: {checked}");
    assert!(!r.all().contains(token), "the admin token never shows");
    let text = run(&["--config", file.path.to_str().unwrap(), "diagnose", "db-disk"], &[("T", token)]);
    assert_eq!(text.code, 0, "{}", text.all());
    assert!(text.stdout.contains("== db-disk") && text.stdout.contains("nothing found"), "{}", text.all());
    let unknown = diagnose(&file, &["synapse-omm"], &[("T", token)]);
    assert_eq!(unknown.code, 2, "{}", unknown.all());
    assert!(unknown.stderr.contains("no playbook `synapse-omm`"), "{}", unknown.all());
    let impossible = diagnose(&file, &["oidc"], &[("T", token)]);
    assert_eq!(impossible.code, 2, "{}", impossible.all());
    assert!(impossible.stderr.contains("needs a mas service"), "{}", impossible.all());
}

#[test]
fn purge_media_dry_run_calls_nothing_and_yes_calls_synapse_with_before_ts() {
    let s = services::shared();
    let proxy = fakes::fault_proxy(s.synapse.base_url.clone(), "purge_media_cache", Vec::new());
    let file = config(&format!(
        "services:\n  synapse: {{ kind: synapse, url: \"{}\", admin_token: \"${{T}}\" }}\n  db: {{ kind: postgres, dsn: \"{}\", databases: [synapse] }}\n",
        proxy.base,
        s.pg.dsn("postgres")
    ));
    let token = s.synapse.admin_token.as_str();
    let path = file.path.to_str().unwrap();
    let thirty_days_ago = || jiff::Timestamp::now().as_millisecond() - 30 * 86_400_000;
    let dry =
        run(&["--config", path, "synapse", "purge-media", "--before", "30d", "--dry-run", "--json"], &[("T", token)]);
    assert_eq!(dry.code, 0, "{}", dry.all());
    assert_eq!(proxy.hits.load(std::sync::atomic::Ordering::SeqCst), 0, "a dry run calls nothing");
    let j = dry.json();
    assert_eq!(j["dry_run"], true);
    assert!((j["before_ts"].as_i64().unwrap() - thirty_days_ago()).abs() < 60_000, "{j}");
    assert!(j["would_delete"][0].is_u64(), "counted in the database: {j}");
    let refused = run(&["--config", path, "synapse", "purge-media", "--before", "30d"], &[("T", token)]);
    assert_eq!(refused.code, 2, "no terminal and no --yes: refused, {}", refused.all());
    assert!(refused.stderr.contains("--yes"), "{}", refused.all());
    assert_eq!(proxy.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    let yes = run(&["--config", path, "synapse", "purge-media", "--before", "30d", "--yes", "--json"], &[("T", token)]);
    assert_eq!(yes.code, 0, "{}", yes.all());
    assert_eq!(proxy.hits.load(std::sync::atomic::Ordering::SeqCst), 1, "one call to the endpoint");
    let j = yes.json();
    assert!(j["deleted"].is_u64(), "Synapse's own count: {j}");
    let before_ts = j["before_ts"].as_i64().unwrap();
    assert!((before_ts - thirty_days_ago()).abs() < 60_000, "{j}");
    assert!(j["stats_before"]["database_bytes"].is_u64() && j["stats_after"]["database_bytes"].is_u64(), "{j}");
    let log = std::fs::read_to_string(s.synapse.dir.join("homeserver.log")).unwrap_or_default();
    assert!(
        log.contains(&format!("purge_media_cache?before_ts={before_ts}")),
        "Synapse saw the same before_ts (its access log)"
    );
    let stats = run(&["--config", path, "synapse", "media-stats", "--json"], &[("T", token)]);
    assert_eq!(stats.code, 0, "{}", stats.all());
    assert!(stats.json()["remote_files"].is_u64() && stats.json()["local_files"].is_u64(), "{}", stats.stdout);
    for r in [&dry, &yes, &stats] {
        assert!(!r.all().contains(token), "the admin token never appears in output");
    }
    let bad = run(&["--config", path, "synapse", "purge-media", "--before", "soon", "--yes"], &[("T", token)]);
    assert_eq!(bad.code, 2, "{}", bad.all());
}

#[test]
fn an_expiring_certificate_warns_and_does_not_count_as_synapse_down() {
    let tls = tls_server::start();
    let file = config(&format!(
        "services:
  synapse:
    kind: synapse
    url: \"{}\"
    tls: {{ ca_file: \"{}\" }}
    disable: [client-versions, admin-version]
",
        tls.expiring,
        tls.ca_file.display()
    ));
    let r = check_json(&file, &[], &[]);
    assert_eq!(r.row("synapse/tls")["ok"], false, "the tls check fails: {}", r.stdout);
    assert_eq!(r.row("synapse/health")["ok"], true, "{}", r.stdout);
    let rows = r.json();
    let rules: Vec<&Value> = rows.as_array().unwrap().iter().filter(|x| x["kind"] == "rule").collect();
    let down: Vec<&&Value> = rules.iter().filter(|x| x["check"] == "SynapseDown").collect();
    assert!(!down.is_empty() && down.iter().all(|x| x["ok"] == true), "SynapseDown stays quiet: {}", r.stdout);
    let cert: Vec<&&Value> = rules.iter().filter(|x| x["check"] == "CertificateExpiringSoon").collect();
    assert_eq!(cert.len(), 2, "a warning and a critical rule: {}", r.stdout);
    let firing: Vec<&&&Value> = cert.iter().filter(|x| x["ok"] == false).collect();
    assert_eq!(firing.len(), 1, "5 days left: the warning only, not the critical under 3 days: {}", r.stdout);
    let detail = firing[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("127.0.0.1: certificate expires in 4.")
            || detail.contains("127.0.0.1: certificate expires in 5"),
        "host and days: {detail}"
    );
    let listed = run(&["--config", file.path.to_str().unwrap(), "rules", "list", "--json"], &[]);
    assert!(listed.stdout.contains("CertificateExpiringSoon"), "{}", listed.all());
}

/// The alert names of the firing payloads the webhook sink received.
fn firing(sink: &fakes::WebhookSink) -> Vec<(String, String)> {
    sink.received
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(_, body)| serde_json::from_slice::<Value>(body).ok())
        .filter(|p| p["status"] == "firing")
        .flat_map(|p| p["alerts"].as_array().cloned().unwrap_or_default())
        .map(|a| {
            (
                a["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                a["labels"]["check"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn a_failing_custom_check_pages_unless_it_says_alert_false() {
    let sink = fakes::webhook_sink();
    let (dead, quiet) = (services::free_port(), services::free_port());
    let file = config(&format!(
        r#"defaults: {{ interval: 1s, timeout: 1s }}
store: ./state.db
listen: off
checks:
  - name: homepage
    down_after: 2s
    http: {{ url: "http://127.0.0.1:{dead}/" }}
  - name: lab
    alert: false
    http: {{ url: "http://127.0.0.1:{quiet}/" }}
alerting:
  receivers:
    hook: {{ webhook: {{ url: "{}" }} }}
  tiers:
    critical: {{ receivers: [hook] }}
"#,
        sink.url
    ));
    let _daemon = Daemon::start(&file.path);
    let log = file.path.with_extension("log");
    let pages = wait_for("CheckFailing for homepage", Duration::from_secs(30), &log, || {
        let f = firing(&sink);
        (!f.is_empty()).then_some(f)
    });
    assert_eq!(pages[0], ("CheckFailing".to_string(), "homepage".to_string()), "{pages:?}");
    std::thread::sleep(Duration::from_secs(3));
    let all = firing(&sink);
    assert!(all.iter().all(|(_, check)| check != "lab"), "alert: false never pages: {all:?}");
    assert_eq!(all.len(), 1, "one page: {all:?}");
}

#[test]
fn synapse_stopped_pages_and_its_diagnosis_follows_in_the_same_thread_within_30_s() {
    let s = services::shared();
    let mut watched = services::Synapse::start_sqlite();
    let room = matrix::create_room(&s.synapse.base_url, &s.synapse.admin_token, "ops-diagnose");
    let file = config(&format!(
        r#"defaults: {{ interval: 1s, timeout: 2s }}
store: ./state.db
listen: off
services:
  synapse: {{ kind: synapse, url: "{}", metrics_url: "{}", down_after: 2s }}
alerting:
  receivers:
    ops-room: {{ matrix: {{ homeserver: "{}", room: "{room}", access_token: "{}" }} }}
  tiers:
    critical: {{ receivers: [ops-room] }}
"#,
        watched.base_url, watched.metrics_url, s.synapse.base_url, s.synapse.admin_token
    ));
    let _daemon = Daemon::start(&file.path);
    let log = file.path.with_extension("log");
    std::thread::sleep(Duration::from_secs(3));
    assert!(matrix::messages(&s.synapse.base_url, &s.synapse.admin_token, &room).is_empty(), "healthy: quiet");
    watched.stop();
    let body = |e: &Value| e["content"]["body"].as_str().unwrap_or("").to_string();
    let page = wait_for("the page", Duration::from_secs(30), &log, || {
        matrix::messages(&s.synapse.base_url, &s.synapse.admin_token, &room)
            .into_iter()
            .find(|e| body(e).starts_with("[FIRING] SynapseDown"))
    });
    let paged_at = Instant::now();
    let follow = wait_for("the diagnosis", Duration::from_secs(40), &log, || {
        matrix::messages(&s.synapse.base_url, &s.synapse.admin_token, &room)
            .into_iter()
            .find(|e| body(e).starts_with("[DIAGNOSIS] SynapseDown"))
    });
    let after = paged_at.elapsed();
    eprintln!("the diagnosis arrived {} ms after the page was seen in the room", after.as_millis());
    assert!(after < Duration::from_secs(30), "within 30 s of the page: {after:?}");
    let relation = &follow["content"]["m.relates_to"];
    assert_eq!(relation["rel_type"], "m.thread", "{relation}");
    assert_eq!(relation["event_id"], page["event_id"], "in the page's thread");
    let text = body(&follow);
    assert!(text.contains("synapse-oom") && text.contains("Synapse's metrics do not answer"), "{text}");
    assert!(text.contains("fix:") && text.contains("caches.global_factor"), "{text}");
    assert!(text.contains("synapse/health went down") && text.contains("the store's history"), "{text}");
    std::thread::sleep(Duration::from_secs(2));
    let all = matrix::messages(&s.synapse.base_url, &s.synapse.admin_token, &room);
    assert_eq!(all.iter().filter(|e| body(e).starts_with("[DIAGNOSIS]")).count(), 1, "one diagnosis per page");
}

#[test]
fn hostile_answers_are_bounded_escaped_and_never_hang_a_playbook() {
    use axum::routing::get;
    let base = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let b = base.clone();
    let url = fakes::serve(
        axum::Router::new()
            .route(
                "/api/v1/info",
                get(move || {
                    let b = b.get().cloned().unwrap_or_default();
                    async move {
                        let providers: Vec<Value> = (0..5000)
                            .map(|i| {
                                serde_json::json!({"key": format!("p{i}\u{1b}[2J"), "auth_url": format!("{b}/p/{i}"),
                                                   "scope": "openid"})
                            })
                            .collect();
                        axum::Json(
                            serde_json::json!({"auth": {"openid_connect": {"enabled": true, "providers": providers}}}),
                        )
                    }
                }),
            )
            .route("/p/{i}/.well-known/openid-configuration", get(|| async { "x".repeat(5 * 1000 * 1000) })),
    );
    base.set(url.clone()).unwrap();
    let hostile = fakes::hostile();
    let file = config(&format!(
        "services:\n  vikunja: {{ kind: vikunja, url: \"{url}\" }}\n  mas: {{ kind: mas, url: \"http://{}\" }}\n",
        hostile.silent
    ));
    let started = Instant::now();
    let r = diagnose(&file, &["vikunja-email", "oidc"], &[]);
    assert!(started.elapsed() < Duration::from_secs(35), "bounded: {:?}", started.elapsed());
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(!r.stdout.contains('\u{1b}'), "no raw escape reaches the terminal");
    let report = r.json();
    let vikunja = &report["playbooks"].as_array().unwrap().iter().find(|p| p["topic"] == "vikunja-email").unwrap();
    let found = vikunja["findings"].as_array().unwrap();
    assert_eq!(found.len(), 10, "at most ten providers are looked at: {}", r.stdout);
    assert!(found[0]["seen"][0].as_str().unwrap().contains("over 1024 KiB"), "a 5 MB answer is not read: {}", found[0]);
    assert!(found[0]["title"].as_str().unwrap().contains("\\x1b[2J"), "the name is shown escaped: {}", found[0]);
    let oidc = report["playbooks"].as_array().unwrap().iter().find(|p| p["topic"] == "oidc").unwrap();
    assert_eq!(oidc["findings"][0]["title"], "MAS discovery does not answer", "a silent server: {oidc}");
}

#[test]
fn db_disk_measures_the_databases_against_disk_limit_and_names_the_largest_tables() {
    let s = services::shared();
    let file = config(&format!(
        "listen: off\nservices:\n  synapse: {{ kind: synapse, url: \"{}\", admin_token: \"${{T}}\" }}\n  db: {{ kind: postgres, dsn: \"{}\", databases: [synapse], disk_limit: 8MiB }}\n",
        s.synapse.base_url,
        s.pg.dsn("postgres")
    ));
    let token = s.synapse.admin_token.as_str();
    let r = diagnose(&file, &["db-disk"], &[("T", token)]);
    assert_eq!(r.code, 1, "{}", r.all());
    let found = findings(&r.json());
    let f = found
        .iter()
        .find(|f| f["title"].as_str().unwrap().contains("% of the disk"))
        .unwrap_or_else(|| panic!("no disk finding: {}", r.stdout));
    assert_eq!(f["severity"], "critical", "a real Synapse database is far over 8 MiB");
    assert!(f["seen"][0].as_str().unwrap().contains("of disk_limit 8.0 MiB"), "{f}");
    assert!(f["seen"][2].as_str().unwrap().contains("largest tables of `synapse`"), "{f}");
    assert!(f["fix"].to_string().contains("bigger disk"), "{f}");
    let checked = r.json()["playbooks"][0]["checked"].to_string();
    assert!(
        checked.contains("remote media cache: 0 files") && checked.contains("days until full: not known"),
        "{checked}"
    );
    assert!(!r.all().contains(token));
}

#[test]
fn when_the_fallback_carried_the_page_the_diagnosis_goes_there_too() {
    let s = services::shared();
    let mut watched = services::Synapse::start_sqlite();
    let room = matrix::create_room(&s.synapse.base_url, &s.synapse.admin_token, "ops-unreachable");
    let mail = crate::support::smtp::SmtpSink::start();
    let file = config(&format!(
        r#"defaults: {{ interval: 1s, timeout: 2s }}
store: ./state.db
listen: off
services:
  synapse: {{ kind: synapse, url: "{}", metrics_url: "{}", down_after: 2s }}
alerting:
  retry: {{ initial: 300ms }}
  receivers:
    ops-room: {{ matrix: {{ homeserver: "{}", room: "{room}", access_token: not-a-valid-token }} }}
    oncall-mail: {{ email: {{ smtp: "smtp://127.0.0.1:{}", tls: none, from: "mxwarden@example.org", to: ["oncall@example.org"] }} }}
  tiers:
    critical: {{ receivers: [ops-room], fallback: [oncall-mail], fallback_after: 1 }}
"#,
        watched.base_url, watched.metrics_url, s.synapse.base_url, mail.port
    ));
    let _daemon = Daemon::start(&file.path);
    let log = file.path.with_extension("log");
    std::thread::sleep(Duration::from_secs(3));
    watched.stop();
    let mails = wait_for("the page and its diagnosis by email", Duration::from_secs(60), &log, || {
        let m = mail.messages();
        (m.iter().any(|x| x.contains("Subject: [FIRING] SynapseDown"))
            && m.iter().any(|x| x.contains("[DIAGNOSIS] SynapseDown")))
        .then_some(m)
    });
    let diagnosis = mails.iter().find(|x| x.contains("[DIAGNOSIS] SynapseDown")).unwrap();
    assert!(diagnosis.contains("metrics do not answer"), "{diagnosis}");
    std::thread::sleep(Duration::from_secs(3));
    let again = mail.messages();
    assert_eq!(again.iter().filter(|x| x.contains("[DIAGNOSIS] SynapseDown")).count(), 1, "once: {again:?}");
    assert!(matrix::messages(&s.synapse.base_url, &s.synapse.admin_token, &room).is_empty(), "the room got nothing");
}

#[test]
fn synapse_oom_over_the_thresholds_names_the_memory_the_biggest_caches_and_the_cache_factors() {
    let s = services::shared();
    let file = config(&format!(
        "listen: off\nservices:\n  synapse: {{ kind: synapse, url: \"{}\", metrics_url: \"{}\", thresholds: {{ memory_warning: 1MiB, memory_critical: 2MiB }} }}\n",
        s.synapse.base_url, s.synapse.metrics_url
    ));
    let r = diagnose(&file, &["synapse-oom"], &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    let found = findings(&r.json());
    assert_eq!(found.len(), 1, "{}", r.stdout);
    let f = &found[0];
    assert_eq!(f["severity"], "critical", "over memory_critical");
    let seen = f["seen"].to_string();
    assert!(seen.contains("resident memory") && seen.contains("memory_critical 2.0 MiB"), "{seen}");
    assert!(seen.contains("biggest caches:") && seen.contains(" entries"), "the caches by name: {seen}");
    assert!(seen.contains("trend"), "two scrapes: {seen}");
    let fix = f["fix"].to_string();
    assert!(fix.contains("global_factor") && fix.contains("per_cache_factors"), "{fix}");
    assert!(fix.contains("memory_warning, memory_critical"), "raise the thresholds with the plan: {fix}");
    assert_eq!(f["runbook"], "Common Issues: Synapse Out of Memory");
}

#[test]
fn a_purge_synapse_refuses_exits_1_with_its_answer_and_never_the_token() {
    let s = services::shared();
    let proxy = fakes::fault_proxy(s.synapse.base_url.clone(), "purge_media_cache", vec![fakes::Fault::Status(500)]);
    let file = config(&format!(
        "services:\n  synapse: {{ kind: synapse, url: \"{}\", admin_token: \"${{T}}\" }}\n",
        proxy.base
    ));
    let token = s.synapse.admin_token.as_str();
    let path = file.path.to_str().unwrap();
    let r = run(&["--config", path, "synapse", "purge-media", "--before", "7d", "--yes"], &[("T", token)]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("purge-media failed: Synapse answered 500"), "{}", r.all());
    assert_eq!(proxy.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(!r.all().contains(token), "the token never shows");
    let stats = run(&["--config", path, "synapse", "media-stats"], &[("T", token)]);
    assert_eq!(stats.code, 0, "local media is read, the rest is named as not read: {}", stats.all());
    assert!(stats.stdout.contains("not read: remote media and database size: no postgres service"), "{}", stats.all());
}

#[test]
fn db_disk_measures_a_render_database_against_renders_real_disk_without_disk_limit() {
    const KEY: &str = "rnd_DISKKEYneverShown42";
    let s = services::shared();
    let render = fakes::runtime().block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        mxwarden_render_fake::FakeRender::spawn(listener, KEY)
    });
    render.add_postgres("dpg-disk00000000000000", "matrix-db", "basic_256mb", 1, 50e6);
    let config_with = |key: &str| {
        config(&format!(
            "listen: off\nrender: {{ api_key: \"{key}\", api_url: \"{}\" }}\nservices:\n  synapse: {{ kind: synapse, url: \"{}\", admin_token: \"${{T}}\" }}\n  db: {{ kind: postgres, dsn: \"{}\", databases: [synapse], render: dpg-disk00000000000000 }}\n",
            render.api_url,
            s.synapse.base_url,
            s.pg.dsn("postgres")
        ))
    };
    let token = s.synapse.admin_token.as_str();
    // The plan's name says 256 MB (its memory); the disk Render reports is 1 GB.
    let r = diagnose(&config_with(KEY), &["db-disk"], &[("T", token)]);
    let checked = r.json()["playbooks"][0]["checked"].to_string();
    assert!(checked.contains("of Render's disk 953.7 MiB"), "measured against diskSizeGB: {}", r.all());
    assert!(
        render.requests().iter().any(|q| q.contains("/postgres/dpg-disk00000000000000")),
        "{:?}",
        render.requests()
    );

    let wrong = "rnd_WRONGkeyNeverShown7";
    let r = diagnose(&config_with(wrong), &["db-disk"], &[("T", token)]);
    let checked = r.json()["playbooks"][0]["checked"].to_string();
    assert!(checked.contains("Render's disk of dpg-disk00000000000000 is not known"), "{}", r.all());
    assert!(!r.all().contains(wrong) && !r.all().contains(KEY), "no key in the output: {}", r.all());
}
