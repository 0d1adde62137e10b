//! The harness proves itself: the shared stack answers as the tests expect, an own Synapse
//! stops cleanly, and a test process that aborts (no destructor runs) leaves nothing behind.

use crate::support::services::{self, PgCluster, Synapse};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn harness_shared_stack_answers() {
    let s = services::shared();
    let synapse = &s.synapse;

    assert_eq!(services::http_get(&format!("{}/health", synapse.base_url)), Some((200, "OK".into())));
    let (status, body) =
        services::http_get(&format!("{}/_matrix/federation/v1/version", synapse.base_url)).expect("federation answers");
    assert!(status == 200 && body.contains("\"Synapse\""), "{status} {body}");
    let (status, metrics) = services::http_get(&synapse.metrics_url).expect("metrics answer");
    assert!(
        status == 200 && metrics.contains("synapse_build_info{"),
        "{status} {}",
        &metrics[..200.min(metrics.len())]
    );

    // The token is an admin's: v2/users needs one (server_version does not).
    let bearer = format!("Bearer {}", synapse.admin_token);
    let (status, users) = services::http_get_with(
        &format!("{}/_synapse/admin/v2/users", synapse.base_url),
        &[("Authorization", &bearer)],
    )
    .expect("admin API answers");
    assert!(status == 200 && users.contains("@mxwarden-admin:localhost"), "{status} {users}");
    let (status, _) = services::http_get_with(
        &format!("{}/_synapse/admin/v2/users", synapse.base_url),
        &[("Authorization", "Bearer not-a-token")],
    )
    .expect("admin API answers");
    assert_eq!(status, 401);

    // Synapse really runs on the cluster, and pg_stat_statements is loaded.
    // (Other tests make admins of their own on the shared Synapse: the harness's is among them.)
    let admins = s.pg.psql("synapse", "SELECT name FROM users WHERE admin = 1");
    assert!(admins.lines().any(|name| name == "@mxwarden-admin:localhost"), "{admins}");
    assert_eq!(s.pg.psql("postgres", "SHOW shared_preload_libraries"), "pg_stat_statements");
    assert_eq!(s.pg.psql("postgres", "SELECT datcollate FROM pg_database WHERE datname = 'synapse'"), "C");
    assert_eq!(s.pg.dsn("synapse"), format!("postgresql://postgres@127.0.0.1:{}/synapse", s.pg.port));
    assert!(services::port_open(s.pg.port), "PostgreSQL listens on 127.0.0.1:{}", s.pg.port);

    let (status, discovery) = services::http_get(&format!("{}/.well-known/openid-configuration", s.oidc.issuer))
        .expect("OIDC discovery answers");
    let discovery: serde_json::Value = serde_json::from_str(&discovery).expect("discovery is JSON");
    assert!(status == 200 && discovery["issuer"] == s.oidc.issuer.as_str(), "{discovery}");
}

#[test]
fn harness_own_synapse_on_sqlite_stops_cleanly() {
    let mut synapse = Synapse::start_sqlite();
    let dir = synapse.dir.clone();
    assert!(dir.join("homeserver.db").exists(), "it runs on SQLite");
    let bearer = format!("Bearer {}", synapse.admin_token);
    let url = format!("{}/_synapse/admin/v2/users/@mxwarden-admin:localhost", synapse.base_url);
    let (status, body) = services::http_get_with(&url, &[("Authorization", &bearer)]).expect("admin API answers");
    let user: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert!(status == 200 && user["admin"] == true, "{status} {body}");
    // Registering the same admin again logs in instead.
    assert_ne!(synapse.register("mxwarden-admin", "Adm1n-pass-for-tests"), synapse.admin_token);

    let pid = synapse.service.guard_pid().expect("guard runs");
    synapse.stop();
    assert!(!services::port_open(synapse.port) && !services::port_open(synapse.metrics_port));
    assert!(!alive(pid), "guard.py {pid} has exited");
    assert!(processes_mentioning(&dir).is_empty(), "left: {:?}", processes_mentioning(&dir));
    drop(synapse);
    assert!(!dir.exists(), "drop removes {}", dir.display());
}

/// The child half of `harness_an_aborted_test_process_leaves_nothing`: starts a cluster,
/// reports it, and aborts, so no destructor runs.
#[test]
#[ignore = "a helper: harness_an_aborted_test_process_leaves_nothing runs it in a child process"]
fn harness_abort_helper() {
    let Some(report) = std::env::var_os("MXWARDEN_HARNESS_ABORT_REPORT") else { return };
    let pg = PgCluster::start();
    let line = format!("{} {} {}\n", pg.port, pg.dir.display(), pg.service.guard_pid().unwrap());
    std::fs::write(report, line).unwrap();
    std::process::abort();
}

#[test]
fn harness_an_aborted_test_process_leaves_nothing() {
    let report = std::env::temp_dir().join(format!("mxwarden-abort-report-{}", std::process::id()));
    let _ = std::fs::remove_file(&report);
    // /proc/self/exe, not current_exe(): it still works when a rebuild has replaced our binary.
    let out = Command::new("/proc/self/exe")
        .args(["--exact", "harness_selftest::harness_abort_helper", "--ignored", "--nocapture"])
        .env("MXWARDEN_HARNESS_ABORT_REPORT", &report)
        .output()
        .unwrap();
    let line = std::fs::read_to_string(&report).unwrap_or_else(|e| {
        panic!(
            "no report ({e}); the child said:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let _ = std::fs::remove_file(&report);
    assert!(!out.status.success(), "the child aborted: {}", out.status);
    let mut parts = line.split_whitespace();
    let port: u16 = parts.next().unwrap().parse().unwrap();
    let dir = Path::new(parts.next().unwrap()).to_path_buf();
    let guard: u32 = parts.next().unwrap().parse().unwrap();

    // guard.py saw its stdin close and stopped PostgreSQL (fast shutdown, well under 10 s).
    let deadline = Instant::now() + Duration::from_secs(15);
    while alive(guard) || services::port_open(port) || !processes_mentioning(&dir).is_empty() {
        assert!(
            Instant::now() < deadline,
            "15 s after the abort: guard alive {}, port {port} open {}, processes {:?}",
            alive(guard),
            services::port_open(port),
            processes_mentioning(&dir)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    assert!(log.contains("received fast shutdown request") && log.contains("database system is shut down"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Alive and not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}

/// Live processes whose command line mentions `path`.
fn processes_mentioning(path: &Path) -> Vec<String> {
    let needle = path.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) && alive(pid) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}
