//! Shipping mxwarden: `init --discover` against the real Synapse (alone, and with MAS's
//! discovery served by the OIDC provider behind a thin MAS-shaped front), `doctor` on a healthy
//! setup and on one where every credential is broken in its own way, completions and man
//! pages, the systemd unit under `systemd-analyze verify`, and the binary as PID 1 (the
//! container engine cannot run on this machine: docs/deploy.md).

use crate::cli::{config, run};
use crate::support::{fakes, services, smtp::SmtpSink};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Creates a room as `token` with `initial_state`; returns its id.
fn create_room(base: &str, token: &str, initial_state: Value) -> String {
    fakes::runtime().block_on(async {
        let r: Value = client()
            .post(format!("{base}/_matrix/client/v3/createRoom"))
            .bearer_auth(token)
            .json(&json!({"preset": "private_chat", "initial_state": initial_state}))
            .send()
            .await
            .expect("createRoom")
            .json()
            .await
            .expect("createRoom JSON");
        r["room_id"].as_str().unwrap_or_else(|| panic!("no room_id in {r}")).to_string()
    })
}

/// `init --discover URL` into a fresh directory, then `config check` and `check --json`.
fn discover_then_check(url: &str) -> (String, crate::cli::Run) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mxwarden.yaml");
    let p = path.to_str().unwrap();
    let init = run(&["--config", p, "init", "--discover", url], &[]);
    assert_eq!(init.code, 0, "{}", init.all());
    for needed in ["/.well-known/matrix/client", "/_matrix/client/versions", "/_matrix/client/v1/auth_metadata"] {
        assert!(init.stdout.contains(needed), "the request to {needed} is listed:\n{}", init.all());
    }
    let yaml = std::fs::read_to_string(&path).unwrap();
    let checked = run(&["--config", p, "config", "check", "--json"], &[]);
    assert_eq!(checked.code, 0, "config check accepts it:\n{}\n{yaml}", checked.all());
    assert_eq!(checked.json()["valid"], true);
    let again = run(&["--config", p, "init", "--discover", url], &[]);
    assert_eq!(again.code, 2, "no overwrite without --force: {}", again.all());
    assert!(again.stderr.contains("--force"), "{}", again.all());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), yaml, "the file is untouched");
    let check = run(&["--config", p, "check", "--json"], &[]);
    (yaml, check)
}

#[test]
fn init_discover_writes_a_config_that_checks_against_the_real_synapse() {
    let s = services::shared();
    let (yaml, check) = discover_then_check(&s.synapse.base_url);
    assert!(yaml.contains(&format!("url: \"{}\"", s.synapse.base_url)), "{yaml}");
    assert!(yaml.contains("federation_url:"), "the federation endpoint was found:\n{yaml}");
    assert!(yaml.contains("# admin_token: \"${SYNAPSE_ADMIN_TOKEN}\""), "a placeholder for the token:\n{yaml}");
    assert!(yaml.contains("# No MAS"), "no auth_metadata, no MAS:\n{yaml}");
    assert_eq!(check.code, 0, "check passes:\n{}\n{yaml}", check.all());
    let rows = check.json();
    let checks: Vec<&str> = rows.as_array().unwrap().iter().filter_map(|r| r["check"].as_str()).collect();
    for c in ["synapse/health", "synapse/client-versions", "synapse/admin-version", "synapse/federation"] {
        assert!(checks.contains(&c), "{c} in {checks:?}");
    }
    // --json: what was found, the config written all the same (over the old one: --force).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("again.yaml");
    std::fs::write(&path, "old").unwrap();
    let r =
        run(&["--config", path.to_str().unwrap(), "init", "--discover", &s.synapse.base_url, "--force", "--json"], &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    let found = r.json();
    assert_eq!(found["base_url"], format!("{}/", s.synapse.base_url), "{found:#}");
    assert!(found["synapse_version"].as_str().is_some_and(|v| !v.is_empty()), "{found:#}");
    assert_eq!(found["issuer"], Value::Null, "{found:#}");
    let requests = found["requests"].as_array().unwrap();
    assert!(requests.iter().all(|q| q["url"].is_string() && q["outcome"].is_string()), "{found:#}");
    assert!(requests.iter().any(|q| q["outcome"] == "404 M_UNRECOGNIZED"), "auth_metadata's answer: {found:#}");
    assert_ne!(std::fs::read_to_string(&path).unwrap(), "old", "--force overwrote it");
}

#[test]
fn config_check_json_says_valid_or_why_not() {
    let bad = config("services:\n  synapse:\n    kind: synapse\n    url: https://hs.example\n    interval: soon\n");
    let r = run(&["--config", bad.path.to_str().unwrap(), "config", "check", "--json"], &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    let doc = r.json();
    assert_eq!(doc["valid"], false, "{doc:#}");
    assert!(doc["error"].as_str().is_some_and(|e| e.contains("mxwarden.yaml:5")), "file and line: {doc:#}");
    let quiet = run(&["-q", "--config", bad.path.to_str().unwrap(), "config", "check"], &[]);
    assert_eq!((quiet.code, quiet.stdout.as_str()), (2, ""), "{}", quiet.all());
    assert!(quiet.stderr.contains("mxwarden.yaml:5"), "errors still reach stderr: {}", quiet.all());
}

#[test]
fn init_discover_finds_mas_through_synapses_auth_metadata() {
    let s = services::shared();
    // Synapse validates MAS's metadata more strictly than the OIDC provider's discovery
    // provides (it needs `account_management_uri`); this front adds it, as MAS serves it.
    let (status, body) = services::http_get(&format!("{}/.well-known/openid-configuration", s.oidc.issuer)).unwrap();
    assert_eq!(status, 200);
    let mut doc: Value = serde_json::from_str(&body).unwrap();
    doc["account_management_uri"] = json!(format!("{}/account/", s.oidc.issuer));
    let front = fakes::serve(axum::Router::new().route(
        "/.well-known/openid-configuration",
        axum::routing::get(move || {
            let doc = doc.clone();
            async move { axum::Json(doc) }
        }),
    ));
    let synapse = services::Synapse::start_with_mas(&format!("{front}/"), "mas-shared-secret-0123456789abcdef");
    let (yaml, check) = discover_then_check(&synapse.base_url);
    assert!(yaml.contains("kind: mas"), "{yaml}");
    assert!(
        yaml.contains(&format!("issuer: \"{}\"", s.oidc.issuer)),
        "the issuer, confirmed by its discovery:\n{yaml}"
    );
    assert_eq!(check.code, 0, "check passes:\n{}\n{yaml}", check.all());
    let rows = check.json();
    let ok = |name: &str| rows.as_array().unwrap().iter().any(|r| r["check"] == name && r["ok"] == true);
    assert!(ok("mas/discovery") && ok("mas/jwks"), "MAS's checks ran against the OIDC provider: {rows}");
}

#[test]
fn init_discover_refuses_what_is_not_a_homeserver() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.yaml");
    let hostile = fakes::hostile();
    let r = run(&["--config", path.to_str().unwrap(), "init", "--discover", &hostile.base], &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("no Matrix homeserver"), "{}", r.all());
    assert!(!path.exists(), "nothing written");
    let r = run(&["--config", path.to_str().unwrap(), "init", "--discover", "ftp://x"], &[]);
    assert_eq!(r.code, 2, "{}", r.all());
}

/// The pieces both doctor configs share.
struct DoctorSetup {
    dir: tempfile::TempDir,
    smtp: SmtpSink,
    sink: fakes::WebhookSink,
    recipient: String,
}

impl DoctorSetup {
    fn new() -> Self {
        let s = services::shared();
        static ONCE: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
        let mut done = ONCE.lock().unwrap_or_else(|p| p.into_inner());
        let exists = s.pg.psql("postgres", "SELECT count(*) FROM pg_database WHERE datname = 'doctor_ok'");
        if exists == "0" {
            s.pg.psql("postgres", "CREATE DATABASE doctor_ok");
        }
        s.pg.psql("doctor_ok", "CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
        s.pg.psql(
            "postgres",
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'doctor_plain') THEN \
             CREATE ROLE doctor_plain LOGIN; END IF; END $$",
        );
        *done = true;
        drop(done);
        Self {
            dir: tempfile::tempdir().unwrap(),
            smtp: SmtpSink::start(),
            sink: fakes::webhook_sink(),
            recipient: age::x25519::Identity::generate().to_public().to_string(),
        }
    }

    fn config(&self, synapse_token_var: &str, room: &str, role: &str, pg_bin: &Path, backup_dir: &Path) -> String {
        let s = services::shared();
        format!(
            "store: {store}\n\
             services:\n  synapse:\n    kind: synapse\n    url: {base}\n    admin_token: \"${{{synapse_token_var}}}\"\n\
             \x20 postgres:\n    kind: postgres\n    dsn: \"postgresql://{role}@127.0.0.1:{port}/doctor_ok\"\n\
             alerting:\n  receivers:\n\
             \x20   ops-room: {{ matrix: {{ homeserver: {base}, room: \"{room}\", access_token: \"${{DOCTOR_GOOD}}\" }} }}\n\
             \x20   mail: {{ email: {{ smtp: \"smtp://127.0.0.1:{smtp}\", tls: none, from: \"mxwarden@example.org\", to: [\"oncall@example.org\"] }} }}\n\
             \x20   hook: {{ webhook: {{ url: \"{hook}\" }} }}\n\
             \x20 tiers:\n    critical: {{ receivers: [ops-room, mail, hook] }}\n\
             backup:\n  dir: {backup}\n  pg_bin_dir: {pg_bin}\n  encrypt_to: [\"{recipient}\"]\n",
            store = self.dir.path().join("state/mxwarden.db").display(),
            base = s.synapse.base_url,
            port = s.pg.port,
            smtp = self.smtp.port,
            hook = self.sink.url,
            backup = backup_dir.display(),
            pg_bin = pg_bin.display(),
            recipient = self.recipient,
        )
    }
}

fn finding<'a>(report: &'a Value, area: &str, check: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["area"] == area && f["check"] == check)
        .unwrap_or_else(|| panic!("no {area}/{check} finding in {report:#}"))
}

#[test]
fn doctor_is_clean_on_a_healthy_setup() {
    let s = services::shared();
    let setup = DoctorSetup::new();
    let room = create_room(&s.synapse.base_url, &s.synapse.admin_token, json!([]));
    let text = setup.config(
        "DOCTOR_GOOD",
        &room,
        "postgres",
        Path::new("/usr/lib/postgresql/15/bin"),
        &setup.dir.path().join("backups"),
    );
    let file = config(&text);
    let env = [("DOCTOR_GOOD", s.synapse.admin_token.as_str())];
    let r = run(&["--config", file.path.to_str().unwrap(), "doctor", "--json"], &env);
    assert_eq!(r.code, 0, "{}", r.all());
    let report = r.json();
    assert_eq!(report["ok"], true);
    assert_eq!(report["failed"], 0, "{report:#}");
    for (area, check) in [
        ("synapse", "admin token"),
        ("matrix", "token"),
        ("matrix", "joined"),
        ("matrix", "room not encrypted"),
        ("matrix", "may post"),
        ("smtp", "smtp login"),
        ("webhook", "reachable"),
        ("postgres", "pg_monitor"),
        ("postgres", "pg_stat_statements"),
        ("backup", "pg_dump version"),
        ("backup", "writable"),
        ("backup", "age recipients"),
        ("store", "writable"),
        ("clock", "clock skew"),
    ] {
        assert_eq!(finding(&report, area, check)["outcome"], "pass", "{area}/{check}: {report:#}");
    }
    assert!(setup.smtp.messages().is_empty(), "no mail was sent");
    assert!(setup.sink.received.lock().unwrap().is_empty(), "nothing was delivered to the webhook");
    assert!(crate::matrix::messages(&s.synapse.base_url, &s.synapse.admin_token, &room).is_empty(), "nothing posted");
    // The table for people: one line per finding and the summary.
    let table = run(&["--config", file.path.to_str().unwrap(), "doctor"], &env);
    assert_eq!(table.code, 0, "{}", table.all());
    assert!(table.stdout.contains("0 failed"), "{}", table.all());
    assert!(!table.stdout.contains(&s.synapse.admin_token), "no token in the output");
    // --quiet: the exit status only.
    let quiet = run(&["--quiet", "--config", file.path.to_str().unwrap(), "doctor"], &env);
    assert_eq!((quiet.code, quiet.stdout.as_str()), (0, ""), "{}", quiet.all());
}

/// A read-only tmpfs on a temporary directory (unmounted on drop): root writes anywhere
/// else, so this is how a directory is made unwritable for the test.
struct ReadOnlyMount(tempfile::TempDir);

impl ReadOnlyMount {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount -o ro tmpfs failed (these tests need root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(dir)
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn doctor_names_each_broken_credential_with_its_fix() {
    let s = services::shared();
    let setup = DoctorSetup::new();
    let encrypted = create_room(
        &s.synapse.base_url,
        &s.synapse.admin_token,
        json!([{"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]),
    );
    // A pg_dump that is too old for the server (PostgreSQL 15).
    let old_bin = setup.dir.path().join("old-pg-bin");
    std::fs::create_dir_all(&old_bin).unwrap();
    let fake = old_bin.join("pg_dump");
    std::fs::write(&fake, "#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n").unwrap();
    Command::new("chmod").arg("755").arg(&fake).status().unwrap();
    let readonly = ReadOnlyMount::new();
    let text = setup.config("DOCTOR_WRONG", &encrypted, "doctor_plain", &old_bin, &readonly.0.path().join("backups"));
    let file = config(&text);
    let wrong = "syt_bW9ub2l0b3I_wrongwrongwrong_0abc12";
    let env = [("DOCTOR_GOOD", s.synapse.admin_token.as_str()), ("DOCTOR_WRONG", wrong)];
    let r = run(&["--config", file.path.to_str().unwrap(), "doctor", "--json"], &env);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(!r.stdout.contains(wrong) && !r.stderr.contains(wrong), "the wrong token is never shown");
    let report = r.json();
    let cases = [
        ("synapse", "admin token", "log in as a server admin again", "a wrong admin token"),
        ("matrix", "room not encrypted", "create a new room without encryption", "an encrypted room"),
        ("postgres", "pg_monitor", "GRANT pg_monitor TO \"doctor_plain\";", "a role without pg_monitor"),
        ("backup", "pg_dump version", "postgresql-client-15", "an old pg_dump"),
        ("backup", "writable", "ReadWritePaths=", "an unwritable backup directory"),
    ];
    for (area, check, fix, why) in cases {
        let f = finding(&report, area, check);
        assert_eq!(f["outcome"], "fail", "{why}: {f:#}");
        let shown = f["fix"].as_str().unwrap_or_default();
        assert!(shown.contains(fix), "{why}: the fix {shown:?} should say {fix:?}");
    }
    assert_eq!(finding(&report, "matrix", "token")["outcome"], "pass", "the receiver's own token is fine");
    assert_eq!(report["failed"], 5, "exactly the five broken things: {report:#}");
}

#[test]
fn completions_and_man_pages_generate() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let r = run(&["completions", shell], &[]);
        assert_eq!(r.code, 0, "{shell}: {}", r.all());
        assert!(r.stdout.contains("doctor") && r.stdout.contains("--discover"), "{shell} knows the commands");
    }
    let bash = run(&["completions", "bash"], &[]);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("mxwarden.bash");
    std::fs::write(&script, &bash.stdout).unwrap();
    let syntax = Command::new("bash").arg("-n").arg(&script).output().unwrap();
    assert!(syntax.status.success(), "bash -n: {}", String::from_utf8_lossy(&syntax.stderr));
    let man = run(&["man"], &[]);
    assert_eq!(man.code, 0, "{}", man.all());
    assert!(man.stdout.contains("\n.TH mxwarden 1 ") && man.stdout.contains("\n.SH NAME\n"), "roff: {}", man.stdout);
    assert!(man.stdout.contains("doctor"), "the page lists the commands");
    let pages = dir.path().join("man");
    let r = run(&["man", "--dir", pages.to_str().unwrap()], &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    for page in ["mxwarden.1", "mxwarden-doctor.1", "mxwarden-init.1", "mxwarden-completions.1"] {
        assert!(
            pages.join(page).is_file(),
            "{page} written: {:?}",
            std::fs::read_dir(&pages).unwrap().collect::<Vec<_>>()
        );
    }
}

#[test]
fn the_systemd_unit_verifies() {
    let analyze = Command::new("systemd-analyze").arg("--version").output();
    assert!(
        analyze.is_ok_and(|o| o.status.success()),
        "systemd-analyze is missing: run scripts/install-test-deps.sh (it installs the systemd package)"
    );
    let unit = std::fs::read_to_string(services::repo().join("deploy/mxwarden.service")).unwrap();
    for needed in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "StateDirectory=mxwarden",
        "NoNewPrivileges=yes",
        "RestrictAddressFamilies=",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.contains(needed), "{needed} in the unit");
    }
    // verify checks that ExecStart's binary exists: point it at the one under test.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mxwarden.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/mxwarden", env!("CARGO_BIN_EXE_mxwarden"))).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=30"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(security.status.success(), "exposure above 3.0: {}", String::from_utf8_lossy(&security.stdout));
}

/// `mxwarden run` as PID 1 of a new PID namespace (as in a container): SIGHUP reloads, SIGTERM
/// ends it with exit 0 — PID 1 gets no default signal actions from the kernel, so this only
/// works because mxwarden handles them itself.
#[test]
fn as_pid_1_it_reloads_on_sighup_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = services::free_port();
    let file = dir.path().join("mxwarden.yaml");
    std::fs::write(
        &file,
        format!("listen: 127.0.0.1:{port}\nstore: {}\nchecks: []\n", dir.path().join("m.db").display()),
    )
    .unwrap();
    let log = dir.path().join("log");
    let mut child = Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child", "--"])
        .arg(env!("CARGO_BIN_EXE_mxwarden"))
        .args(["--config", file.to_str().unwrap(), "run"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("unshare --pid --fork (util-linux)");
    let healthz = format!("http://127.0.0.1:{port}/healthz");
    let deadline = Instant::now() + Duration::from_secs(20);
    while services::http_get(&healthz).is_none_or(|(s, _)| s != 200) {
        assert!(Instant::now() < deadline, "no /healthz: {}", std::fs::read_to_string(&log).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(100));
    }
    // The process whose parent is unshare is mxwarden, PID 1 in its namespace.
    let pid = children_of(child.id()).into_iter().next().expect("mxwarden under unshare");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(nspid.trim_end().ends_with("\t1") || nspid.split_whitespace().last() == Some("1"), "PID 1 inside: {nspid}");
    let kill =
        |sig: &str| assert!(Command::new("kill").args(["-s", sig, &pid.to_string()]).status().unwrap().success());
    kill("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("reload") {
        assert!(Instant::now() < deadline, "SIGHUP reloads: {}", std::fs::read_to_string(&log).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(100));
    }
    // The reload restarts the server on the new config: /healthz answers again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while services::http_get(&healthz).is_none_or(|(s, _)| s != 200) {
        assert!(
            Instant::now() < deadline,
            "serving after the reload: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(child.try_wait().unwrap().is_none(), "SIGHUP did not end it");
    kill("TERM");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "SIGTERM ends PID 1: {}", std::fs::read_to_string(&log).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "exit 0 on SIGTERM: {}", std::fs::read_to_string(&log).unwrap_or_default());
}

fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// A homeserver that answers every request the same way, whatever the path.
fn answering_everything(body: fn() -> axum::body::Body) -> String {
    fakes::serve(axum::Router::new().fallback(move || async move { body() }))
}

#[test]
fn init_discover_bounds_what_a_hostile_homeserver_sends() {
    let hostile = fakes::hostile();
    let silent = hostile.silent;
    let five_mb = "x".repeat(5 * 1000 * 1000);
    let base = fakes::serve(
        axum::Router::new()
            .route(
                "/.well-known/matrix/client",
                axum::routing::get(move || {
                    let b = five_mb.clone();
                    async move { b }
                }),
            )
            .route(
                "/.well-known/matrix/server",
                axum::routing::get(|| async { axum::Json(json!({"m.server": "evil/../x?y"})) }),
            )
            .route(
                "/_matrix/client/versions",
                axum::routing::get(|| async { axum::Json(json!({"versions": ["v1.11\nservices: {}"]})) }),
            )
            .route(
                "/_synapse/admin/v1/server_version",
                axum::routing::get(|| async { axum::Json(json!({"server_version": "1.0\n  admin_token: leaked"})) }),
            )
            .route(
                "/_matrix/client/v1/auth_metadata",
                axum::routing::get(move || async move { axum::Json(json!({"issuer": format!("http://{silent}/")})) }),
            ),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mxwarden.yaml");
    let p = path.to_str().unwrap();
    let started = Instant::now();
    let r = run(&["--config", p, "init", "--discover", &base], &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(started.elapsed() < Duration::from_secs(40), "each request has its own deadline: {:?}", started.elapsed());
    assert!(r.stdout.contains("over 64 KiB: not read"), "the 5 MB well-known is not read: {}", r.all());
    assert!(r.stdout.contains(&format!("GET http://{silent}/.well-known/openid-configuration")), "{}", r.all());
    let yaml = std::fs::read_to_string(&path).unwrap();
    for line in yaml.lines() {
        assert!(
            !line.starts_with("  admin_token") && !line.starts_with("services: {}"),
            "injected line {line:?}:\n{yaml}"
        );
    }
    assert!(yaml.contains("  # mas:"), "an issuer that never answered stays commented:\n{yaml}");
    let checked = run(&["--config", p, "config", "check"], &[]);
    assert_eq!(checked.code, 0, "{}\n{yaml}", checked.all());
}

#[test]
fn doctor_bounds_huge_and_silent_servers() {
    let huge = answering_everything(|| axum::body::Body::from(vec![b'{'; 5 * 1000 * 1000]));
    let slow = answering_everything(|| {
        let ticks = futures::stream::unfold(0u32, |n| async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            (n < 60).then(|| (Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b" ")), n + 1))
        });
        axum::body::Body::from_stream(ticks)
    });
    let hostile = fakes::hostile();
    let dir = tempfile::tempdir().unwrap();
    let file = config(&format!(
        "store: {}\nchecks: []\nalerting:\n  receivers:\n\
         \x20   huge: {{ matrix: {{ homeserver: \"{huge}\", room: \"!r:x\", access_token: \"tok-huge-0123456789\" }} }}\n\
         \x20   slow: {{ matrix: {{ homeserver: \"{slow}\", room: \"!r:x\", access_token: \"tok-slow-0123456789\" }} }}\n\
         \x20   hook: {{ webhook: {{ url: \"http://{}/hook/secret-path-0123\" }} }}\n\
         \x20 tiers:\n    critical: {{ receivers: [huge, slow, hook] }}\n",
        dir.path().join("m.db").display(),
        hostile.silent,
    ));
    let started = Instant::now();
    let r = run(&["--config", file.path.to_str().unwrap(), "doctor", "--json"], &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(started.elapsed() < Duration::from_secs(30), "bounded: {:?}", started.elapsed());
    for secret in ["tok-huge-0123456789", "tok-slow-0123456789", "secret-path-0123"] {
        assert!(!r.stdout.contains(secret) && !r.stderr.contains(secret), "{secret} never shown: {}", r.all());
    }
    let report = r.json();
    let by_subject = |s: &str| {
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["subject"] == s)
            .cloned()
            .unwrap_or_else(|| panic!("{s}: {report:#}"))
    };
    for subject in ["huge", "slow", "hook"] {
        let f = by_subject(subject);
        assert_eq!(f["outcome"], "fail", "{subject}: {f:#}");
        assert!(f["fix"].as_str().is_some_and(|x| !x.is_empty()), "{subject} has a fix: {f:#}");
    }
}

#[test]
fn doctor_names_a_missing_starttls_and_a_refused_connection() {
    let sink = SmtpSink::start();
    let closed = services::free_port();
    let dir = tempfile::tempdir().unwrap();
    let file = config(&format!(
        "store: {}\nchecks: []\nalerting:\n  receivers:\n\
         \x20   no-tls: {{ email: {{ smtp: \"smtp://127.0.0.1:{}\", from: \"m@example.org\", to: [\"o@example.org\"] }} }}\n\
         \x20   closed: {{ email: {{ smtp: \"smtp://127.0.0.1:{closed}\", tls: none, from: \"m@example.org\", to: [\"o@example.org\"] }} }}\n\
         \x20 tiers:\n    critical: {{ receivers: [no-tls, closed] }}\n",
        dir.path().join("m.db").display(),
        sink.port,
    ));
    let r = run(&["--config", file.path.to_str().unwrap(), "doctor", "--json"], &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    let report = r.json();
    let fix_of = |subject: &str| {
        let f = report["findings"].as_array().unwrap().iter().find(|f| f["subject"] == subject).unwrap().clone();
        assert_eq!(f["outcome"], "fail", "{subject}: {f:#}");
        format!("{} | {}", f["detail"], f["fix"])
    };
    let no_tls = fix_of("no-tls");
    assert!(no_tls.contains("offers no STARTTLS on this port"), "the server offers no STARTTLS: {no_tls}");
    let closed = fix_of("closed");
    assert!(closed.contains("host and port"), "nothing listens: {closed}");
    assert!(sink.messages().is_empty(), "no mail sent");
}

/// An SMTP server that requires STARTTLS (with a certificate from a test CA) and then AUTH
/// with one user and password (aiosmtpd, the same package as the mail sink).
const STARTTLS_AUTH_SERVER: &str = r#"
import pathlib, signal, ssl, sys
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
port, cert, key, user, password, out = sys.argv[1:7]
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user and auth_data.password.decode() == password
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself
class Handler:
    async def handle_DATA(self, server, session, envelope):
        (pathlib.Path(out) / "sent.eml").write_bytes(envelope.content)
        return "250 OK"
c = Controller(Handler(), hostname="127.0.0.1", port=int(port), tls_context=ctx, require_starttls=True,
               authenticator=authenticator, auth_require_tls=True)
c.start()
print("ready", flush=True)
signal.sigwait({signal.SIGTERM, signal.SIGINT})
c.stop()
"#;

#[test]
fn doctor_proves_starttls_and_the_smtp_login_and_names_a_wrong_password() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.subject_alt_names = vec![SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())];
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca).unwrap();
    let (ca_pem, cert_pem, key_pem) =
        (dir.path().join("ca.pem"), dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    std::fs::write(&cert_pem, cert.pem()).unwrap();
    std::fs::write(&key_pem, key.serialize_pem()).unwrap();
    let script = dir.path().join("smtp.py");
    std::fs::write(&script, STARTTLS_AUTH_SERVER).unwrap();
    let port = services::free_port();
    let mut cmd = Command::new(services::cache().join("venv-tools/bin/python"));
    cmd.arg(&script)
        .arg(port.to_string())
        .args([&cert_pem, &key_pem])
        .args(["mxwarden", "right-password-0123"])
        .arg(dir.path());
    let server = services::Service::spawn("smtp-starttls-auth", dir.path().join("smtp.log"), "TERM", &cmd);
    server.wait_until(Duration::from_secs(30), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    let file = config(&format!(
        "store: {}\nchecks: []\nalerting:\n  receivers:\n\
         \x20   mail: {{ email: {{ smtp: \"smtp://127.0.0.1:{port}\", from: \"m@example.org\", to: [\"o@example.org\"], username: mxwarden, password: \"${{SMTP_PW}}\" }} }}\n\
         \x20 tiers:\n    critical: {{ receivers: [mail] }}\n",
        dir.path().join("m.db").display(),
    ));
    let ca = ca_pem.to_str().unwrap();
    let doctor = |password: &str| {
        let r = run(
            &["--config", file.path.to_str().unwrap(), "doctor", "--json"],
            &[("SMTP_PW", password), ("SSL_CERT_FILE", ca)],
        );
        assert!(!r.stdout.contains(password) && !r.stderr.contains(password), "no password shown: {}", r.all());
        r
    };
    let good = doctor("right-password-0123");
    assert_eq!(good.code, 0, "{}", good.all());
    let f = finding(&good.json(), "smtp", "smtp login").clone();
    assert!(f["detail"].as_str().unwrap().contains("STARTTLS, logged in"), "{f:#}");
    let bad = doctor("wrong-password-4567");
    assert_eq!(bad.code, 1, "{}", bad.all());
    let f = finding(&bad.json(), "smtp", "smtp login").clone();
    assert_eq!(f["outcome"], "fail", "{f:#}");
    assert!(f["fix"].as_str().unwrap().contains("app password"), "the login is named: {f:#}");
    assert!(!dir.path().join("sent.eml").exists(), "no mail was sent");
    drop(server);
}
