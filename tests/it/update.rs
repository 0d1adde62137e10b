//! `mxwarden update` against a real local Synapse whose deploy is a command: the deploy
//! command stops Synapse and starts it again with a changed config (`max_upload_size`), the
//! rollback command starts it with the config before. Proven by Synapse's own answers (health,
//! its reported version, the media config that shows the change) and by the messages read
//! back from the ops room on that same Synapse. Also: a version that does not verify is
//! rolled back and pages `UpdateFailed` once; `kill -9` during the deploy, then `--resume`,
//! rolls back to a correct end; a second update of the service while one is unfinished is
//! refused; `--dry-run` changes nothing.

use crate::cli::{ConfigFile, Run, config, run};
use crate::support::services::{Synapse, http_get, http_get_with, repo, venv_bin};
use secrecy::ExposeSecret;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A Synapse that the deploy and rollback scripts own: started daemonized (pid file), so a
/// script can stop it and start it again with another config.
struct DeployedSynapse {
    synapse: Synapse,
    scripts: tempfile::TempDir,
}

impl DeployedSynapse {
    fn start() -> Self {
        let mut synapse = Synapse::start_sqlite();
        synapse.stop(); // from here on the scripts run it
        let scripts = tempfile::tempdir().expect("temp dir");
        let me = Self { synapse, scripts };
        me.write_script("start.sh", &me.start_script(false));
        me.write_script("deploy.sh", &me.start_script(true));
        me.write_script("rollback.sh", &me.start_script(false));
        me.write_script(
            "slow-deploy.sh",
            &format!(
                "#!/bin/bash\necho $$ >{dir}/slow.pid\ntouch {dir}/slow.started\nexec sleep 600\n",
                dir = me.dir().display()
            ),
        );
        let r = std::process::Command::new(me.script("start.sh")).output().expect("run start.sh");
        assert!(
            r.status.success(),
            "start.sh: {}{}",
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&r.stderr)
        );
        me
    }

    fn dir(&self) -> &Path {
        &self.synapse.dir
    }

    fn script(&self, name: &str) -> PathBuf {
        self.scripts.path().join(name)
    }

    fn write_script(&self, name: &str, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.script(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Stops a running Synapse (pid file), sets or removes `max_upload_size: 7M`, starts it
    /// daemonized and waits until `/health` says OK.
    fn start_script(&self, changed: bool) -> String {
        let python = venv_bin("venv-synapse", "python").display().to_string();
        let dir = self.dir().display().to_string();
        let change =
            if changed { format!("echo 'max_upload_size: 7M' >>{dir}/homeserver.yaml") } else { String::new() };
        format!(
            r#"#!/bin/bash
set -eu
echo "deploying ${{MXWARDEN_UPDATE_TO:-initial}} (from ${{MXWARDEN_UPDATE_FROM:-?}})"
if [ -f {dir}/homeserver.pid ]; then
  pid=$(cat {dir}/homeserver.pid)
  kill "$pid" 2>/dev/null || true
  for i in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
fi
sed -i '/^max_upload_size:/d' {dir}/homeserver.yaml
{change}
cd {dir}
{python} -m synapse.app.homeserver -c {dir}/homeserver.yaml --daemonize
for i in $(seq 1 600); do
  if python3 -c 'import sys, urllib.request; sys.exit(urllib.request.urlopen(sys.argv[1], timeout=2).read() != b"OK")' http://127.0.0.1:{port}/health 2>/dev/null; then echo deployed; exit 0; fi
  sleep 0.2
done
echo "synapse did not come up" >&2
exit 1
"#,
            port = self.synapse.port,
        )
    }

    /// The upload limit Synapse announces now, bytes.
    fn upload_size(&self) -> i64 {
        let url = format!("{}/_matrix/client/v1/media/config", self.synapse.base_url);
        let auth = format!("Bearer {}", self.synapse.admin_token);
        let (status, body) = http_get_with(&url, &[("Authorization", &auth)]).expect("media config");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["m.upload.size"].as_i64().unwrap_or_else(|| panic!("no m.upload.size in {body}"))
    }

    /// The version Synapse reports over federation.
    fn version(&self) -> String {
        let (status, body) =
            http_get(&format!("{}/_matrix/federation/v1/version", self.synapse.base_url)).expect("version");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["server"]["version"].as_str().expect("a version").split_whitespace().next().unwrap().to_string()
    }

    fn healthy(&self) -> bool {
        http_get(&format!("{}/health", self.synapse.base_url)).is_some_and(|(s, b)| s == 200 && b == "OK")
    }
}

impl Drop for DeployedSynapse {
    fn drop(&mut self) {
        for pid_file in ["homeserver.pid", "slow.pid"] {
            if let Ok(pid) = std::fs::read_to_string(self.dir().join(pid_file)) {
                let _ = std::process::Command::new("kill")
                    .args(["-9", pid.trim()])
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
    }
}

/// The update's config: the Synapse with its deploy commands, the ops room on it, backups of
/// its signing key (encrypted to a key made here, read back with it).
struct Setup {
    s: DeployedSynapse,
    room: String,
    file: ConfigFile,
    identity: PathBuf,
    backups: PathBuf,
    _keys: tempfile::TempDir,
}

impl Setup {
    fn new(deploy_script: &str) -> Self {
        let s = DeployedSynapse::start();
        let room = crate::matrix::create_room(&s.synapse.base_url, &s.synapse.admin_token, "ops");
        let keys = tempfile::tempdir().unwrap();
        let id = age::x25519::Identity::generate();
        let identity = keys.path().join("identity.txt");
        std::fs::write(&identity, format!("{}\n", id.to_string().expose_secret())).unwrap();
        let backups = keys.path().join("backups");
        let file = config(&format!(
            r#"defaults: {{ interval: 1s, timeout: 5s }}
store: ./mxwarden.db
listen: off
services:
  synapse:
    kind: synapse
    url: "{base}"
    admin_token: "${{T}}"
    deploy:
      command: ["{deploy}"]
      timeout: 2m
      rollback: {{ command: ["{rollback}"], timeout: 2m }}
      verify: {{ rounds: 3, interval: 500ms, timeout: 60s }}
      window: 10m
alerting:
  receivers:
    ops-room: {{ matrix: {{ homeserver: "{base}", room: "{room}", access_token: "${{T}}" }} }}
  tiers:
    critical: {{ receivers: [ops-room] }}
backup:
  dir: "{backups}"
  files:
    synapse-signing-key: ["{dir}/localhost.signing.key"]
  encrypt_to: ["{recipient}"]
"#,
            base = s.synapse.base_url,
            deploy = s.script(deploy_script).display(),
            rollback = s.script("rollback.sh").display(),
            dir = s.dir().display(),
            backups = backups.display(),
            recipient = id.to_public(),
        ));
        Self { s, room, file, identity, backups, _keys: keys }
    }

    fn mxwarden(&self, args: &[&str]) -> Run {
        let path = self.file.path.to_str().unwrap();
        let mut all = vec!["--config", path];
        all.extend_from_slice(args);
        let identity = self.identity.to_str().unwrap();
        run(&all, &[("T", self.s.synapse.admin_token.as_str()), ("MXWARDEN_BACKUP_IDENTITY", identity)])
    }

    fn updates(&self) -> serde_json::Value {
        let r = self.mxwarden(&["updates", "--json"]);
        assert_eq!(r.code, 0, "{}", r.all());
        r.json()
    }

    /// The room's message bodies, oldest first.
    fn room(&self) -> Vec<String> {
        crate::matrix::messages(&self.s.synapse.base_url, &self.s.synapse.admin_token, &self.room)
            .iter()
            .map(|e| e["content"]["body"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    fn open_windows(&self) -> serde_json::Value {
        let r = self.mxwarden(&["maintenance", "list", "--json"]);
        assert_eq!(r.code, 0, "{}", r.all());
        r.json()["active"].clone()
    }
}

fn steps(update: &serde_json::Value) -> Vec<(String, String)> {
    update["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| (s["step"].as_str().unwrap().to_string(), s["outcome"].as_str().unwrap_or("running").to_string()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

#[test]
fn a_command_deploy_updates_a_real_synapse_and_a_version_that_does_not_verify_is_rolled_back_and_paged() {
    let setup = Setup::new("deploy.sh");
    let version = setup.s.version();
    let default_upload = setup.s.upload_size();
    assert_ne!(default_upload, 7 * 1024 * 1024, "the test needs a default other than 7M");
    let image = format!("ghcr.io/element-hq/synapse:v{version}");

    // A dry run prints every call and changes nothing: no store, no window, no message.
    let dry = setup.mxwarden(&["update", "synapse", "--to", &image, "--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.all());
    for call in
        ["deploy.sh", "rollback.sh", "GET the reported version; it must be", "maintenance window", "ops-room (Matrix"]
    {
        assert!(dry.stdout.contains(call), "the plan names `{call}`: {}", dry.all());
    }
    assert!(!setup.file.path.with_file_name("mxwarden.db").exists(), "a dry run creates no store");
    assert!(setup.room().is_empty(), "a dry run tells nobody: {:?}", setup.room());
    assert!(!setup.backups.exists(), "a dry run takes no backup");

    // The update: deployed with the changed config, verified by the real Synapse.
    let r = setup.mxwarden(&["update", "synapse", "--to", &image, "--reason", "monthly update", "--yes", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let record = r.json();
    assert_eq!(record["state"], "succeeded", "{}", r.all());
    assert_eq!(
        steps(&record),
        pairs(&[
            ("preflight", "ok"),
            ("announce", "ok"),
            ("backup", "ok"),
            ("deploy", "ok"),
            ("verify", "ok"),
            ("finish", "ok")
        ])
    );
    for s in record["steps"].as_array().unwrap() {
        assert!(s["ended_at"].as_i64() >= s["started_at"].as_i64(), "each step has its start and end: {s}");
    }
    assert_eq!(setup.s.upload_size(), 7 * 1024 * 1024, "the deploy's config change is live");
    assert!(setup.s.healthy());
    let verify = &record["steps"][4]["detail"];
    assert!(verify.as_str().unwrap().contains(&format!("reports version {version}")), "{verify}");
    assert!(verify.as_str().unwrap().contains("passed 3 rounds in a row"), "{verify}");
    assert!(r.stderr.contains("deploy: ok"), "timestamped lines off a terminal: {}", r.stderr);
    // A verified backup exists; the window is over; the room was told before and after.
    let backup_id = record["facts"]["backup_id"].as_str().expect("the backup run is recorded");
    assert!(setup.backups.join(backup_id).join("manifest.json").is_file());
    let backup = record["steps"][2]["detail"].as_str().unwrap();
    assert!(backup.contains("files synapse-signing-key") && backup.contains("decrypted and read back"), "{backup}");
    assert_eq!(setup.open_windows(), serde_json::json!([]), "the update's window has ended");
    let room = setup.room();
    assert!(
        room.iter().any(|m| m.starts_with(&format!("Updating synapse to {image}")) && m.contains("monthly update")),
        "{room:?}"
    );
    assert!(room.iter().any(|m| m.starts_with(&format!("Updated synapse to {image} in"))), "{room:?}");

    // A version the deploy does not bring: verify fails, the rollback puts the config back,
    // verify-rollback passes, one UpdateFailed page names the step and the evidence.
    let wrong = "ghcr.io/element-hq/synapse:v0.0.1";
    let r = setup.mxwarden(&["update", "synapse", "--to", wrong, "--yes", "--json"]);
    assert_eq!(r.code, 1, "{}", r.all());
    let record = r.json();
    assert_eq!(record["state"], "rolled-back", "{}", r.all());
    assert_eq!(
        steps(&record),
        pairs(&[
            ("preflight", "ok"),
            ("announce", "ok"),
            ("backup", "ok"),
            ("deploy", "ok"),
            ("verify", "failed"),
            ("rollback", "ok"),
            ("verify-rollback", "ok"),
            ("page", "ok"),
            ("finish", "ok")
        ])
    );
    assert!(record["steps"][4]["detail"].as_str().unwrap().contains(&format!("reports version {version}, not 0.0.1")));
    assert_eq!(setup.s.upload_size(), default_upload, "the rollback's config is live again");
    let room = setup.room();
    let pages: Vec<&String> = room.iter().filter(|m| m.contains("UpdateFailed")).collect();
    assert_eq!(pages.len(), 1, "one page: {room:?}");
    assert!(pages[0].contains("failed at verify") && pages[0].contains("rolled back and verified"), "{}", pages[0]);
    assert!(pages[0].contains("not 0.0.1"), "the evidence is in the page: {}", pages[0]);
    assert!(room.iter().any(|m| m.starts_with("Update of synapse to") && m.contains("rolled back")), "{room:?}");
    assert_eq!(setup.open_windows(), serde_json::json!([]));

    // Both are on the record, newest first.
    let all = setup.updates();
    assert_eq!(all.as_array().unwrap().len(), 2);
    assert_eq!(all[0]["state"], "rolled-back");
    assert_eq!(all[1]["state"], "succeeded");
    let table = setup.mxwarden(&["updates"]);
    assert!(table.stdout.contains("ROLLED-BACK") && table.stdout.contains("verify-rollback"), "{}", table.all());
}

#[test]
fn kill_9_during_the_deploy_then_resume_rolls_back_to_a_correct_end_and_a_second_update_is_refused_meanwhile() {
    let setup = Setup::new("slow-deploy.sh");
    let image = format!("ghcr.io/element-hq/synapse:v{}", setup.s.version());
    let path = setup.file.path.to_str().unwrap().to_string();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mxwarden"))
        .args(["--config", &path, "update", "synapse", "--to", &image, "--yes"])
        .env("T", &setup.s.synapse.admin_token)
        .env("MXWARDEN_BACKUP_IDENTITY", &setup.identity)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start mxwarden update");
    let started = setup.s.dir().join("slow.started");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !started.exists() {
        assert!(Instant::now() < deadline, "the deploy never started");
        assert!(child.try_wait().unwrap().is_none(), "mxwarden ended before its deploy: {:?}", child.try_wait());
        std::thread::sleep(Duration::from_millis(50));
    }
    // kill -9, as a crash or an OOM kill would: no cleanup of any kind.
    let killed = std::process::Command::new("kill").args(["-9", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let _ = child.wait();
    if let Ok(pid) = std::fs::read_to_string(setup.s.dir().join("slow.pid")) {
        let _ =
            std::process::Command::new("kill").args(["-9", pid.trim()]).stderr(std::process::Stdio::null()).status();
    }
    let record = &setup.updates()[0];
    assert_eq!(record["state"], "running");
    let table = setup.mxwarden(&["updates"]);
    assert!(table.stdout.contains("INTERRUPTED (`mxwarden update --resume 1` continues it)"), "{}", table.all());
    assert_eq!(steps(record).last().unwrap(), &("deploy".to_string(), "running".to_string()), "{record}");

    // While it is unfinished, another update of the service is refused and changes nothing.
    let again = setup.mxwarden(&["update", "synapse", "--to", &image, "--yes"]);
    assert_eq!(again.code, 2, "{}", again.all());
    assert!(again.stderr.contains("already has an unfinished update"), "{}", again.all());
    assert_eq!(setup.updates().as_array().unwrap().len(), 1);

    // --resume: the deploy was in flight and is unverified, so it is rolled back.
    let r = setup.mxwarden(&["update", "--resume", "--json"]);
    assert_eq!(r.code, 1, "rolled back is not a success: {}", r.all());
    let record = r.json();
    assert_eq!(record["state"], "rolled-back", "{}", r.all());
    assert_eq!(
        steps(&record),
        pairs(&[
            ("preflight", "ok"),
            ("announce", "ok"),
            ("backup", "ok"),
            ("deploy", "interrupted"),
            ("rollback", "ok"),
            ("verify-rollback", "ok"),
            ("page", "ok"),
            ("finish", "ok")
        ])
    );
    assert!(setup.s.healthy());
    assert_eq!(setup.open_windows(), serde_json::json!([]), "the window opened before the crash has ended");
    let room = setup.room();
    assert_eq!(room.iter().filter(|m| m.starts_with("Updating synapse")).count(), 1, "{room:?}");
    let pages: Vec<&String> = room.iter().filter(|m| m.contains("UpdateFailed")).collect();
    assert_eq!(pages.len(), 1, "{room:?}");
    assert!(pages[0].contains("failed at deploy"), "{}", pages[0]);
    // Nothing is left to resume.
    let none = setup.mxwarden(&["update", "--resume"]);
    assert_eq!(none.code, 2, "{}", none.all());
    let _ = repo();
}

// ---- Render: the fake of Render's API (a SaaS that cannot run here) plays the platform; the
// service behind it is a Vikunja-shaped fake whose health and version the scenario changes
// as its deploys go live; the ops room is on the harness's real Synapse.

mod render {
    use super::{pairs, steps};
    use crate::cli::{ConfigFile, Run, config, run};
    use crate::support::fakes;
    use mxwarden_render_fake::FakeRender;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    const KEY: &str = "rnd_update_test_key_0123456789";
    const SRV: &str = "srv-vikunja0001";

    /// What the platform does with a new deploy.
    #[derive(Clone, Copy, PartialEq)]
    enum Scenario {
        /// It goes live and the service reports the new version.
        GoesLive,
        /// It fails (`update_failed`, a `server_failed` event); the old version keeps running.
        Fails,
        /// It goes live but the service's health answers 503.
        GoesLiveUnhealthy,
        /// It stays queued (the deploy's timeout is 2 s here).
        Hangs,
    }

    /// The service: `/health` and `/api/v1/info` as Vikunja documents them.
    struct Service {
        url: String,
        healthy: Arc<AtomicBool>,
        version: Arc<Mutex<String>>,
    }

    fn service() -> Service {
        use axum::http::StatusCode;
        use axum::routing::get;
        let healthy = Arc::new(AtomicBool::new(true));
        let version = Arc::new(Mutex::new("v0.24.0".to_string()));
        let (h, v) = (healthy.clone(), version.clone());
        let url =
            fakes::serve(
                axum::Router::new()
                    .route(
                        "/health",
                        get(move || {
                            let up = h.load(Ordering::SeqCst);
                            async move {
                                if up { (StatusCode::OK, "OK") } else { (StatusCode::SERVICE_UNAVAILABLE, "down") }
                            }
                        }),
                    )
                    .route(
                        "/api/v1/info",
                        get(move || {
                            let v = v.lock().unwrap().clone();
                            async move {
                                axum::Json(
                                    serde_json::json!({"version": v, "frontend_url": "https://tasks.example.com/"}),
                                )
                            }
                        }),
                    ),
            );
        Service { url, healthy, version }
    }

    struct Setup {
        fake: FakeRender,
        svc: Service,
        file: ConfigFile,
        room: String,
        stop: Arc<AtomicBool>,
    }

    impl Drop for Setup {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
        }
    }

    impl Setup {
        fn new(scenario: Scenario) -> Self {
            let synapse = &crate::support::services::shared().synapse;
            let room = crate::matrix::create_room(&synapse.base_url, &synapse.admin_token, "ops-render");
            let fake = {
                let _rt = fakes::runtime().enter();
                let listener = fakes::runtime().block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
                FakeRender::spawn(listener, KEY)
            };
            fake.add_service(SRV, "vikunja", "starter", 100e6, 512e6);
            let svc = service();
            let file = config(&format!(
                r#"defaults: {{ interval: 1s, timeout: 3s }}
store: ./mxwarden.db
listen: off
render: {{ api_key: "${{RK}}", api_url: "{api}" }}
services:
  vikunja:
    kind: vikunja
    url: "{url}"
    render: {SRV}
    deploy: {{ render: true, timeout: {timeout}, verify: {{ rounds: 3, interval: 300ms, timeout: 8s }}, window: 5m }}
alerting:
  receivers:
    ops-room: {{ matrix: {{ homeserver: "{base}", room: "{room}", access_token: "${{T}}" }} }}
  tiers:
    critical: {{ receivers: [ops-room] }}
"#,
                api = fake.api_url,
                url = svc.url,
                timeout = if scenario == Scenario::Hangs { "2s" } else { "30s" },
                base = synapse.base_url,
            ));
            let stop = Arc::new(AtomicBool::new(false));
            // The platform: acts on each new deploy as the scenario says, and on a rollback by
            // putting the old version back.
            let (f, healthy, version, done) = (fake.clone(), svc.healthy.clone(), svc.version.clone(), stop.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(100));
                    let newest = f.with(|w| w.deploys.get(SRV).and_then(|l| l.first().cloned()));
                    let Some(d) = newest else { continue };
                    let (id, status, trigger) = (
                        d["id"].as_str().unwrap_or_default().to_string(),
                        d["status"].as_str().unwrap_or_default(),
                        d["trigger"].as_str().unwrap_or_default(),
                    );
                    match (status, trigger) {
                        ("queued", "api") => {
                            let image = d["image"]["ref"].as_str().unwrap_or_default();
                            let tag = image.rsplit(':').next().unwrap_or_default().to_string();
                            match scenario {
                                Scenario::GoesLive => {
                                    *version.lock().unwrap() = tag;
                                    f.set_deploy_status(SRV, &id, "live");
                                }
                                Scenario::GoesLiveUnhealthy => {
                                    *version.lock().unwrap() = tag;
                                    healthy.store(false, Ordering::SeqCst);
                                    f.set_deploy_status(SRV, &id, "live");
                                }
                                Scenario::Hangs => {}
                                Scenario::Fails => {
                                    let now = jiff::Timestamp::now().to_string();
                                    f.push_event(SRV, "server_failed", serde_json::json!({"instanceID": format!("{SRV}-inst2"), "reason": {"evicted": false, "nonZeroExit": 1}}), &now);
                                    f.push_event(SRV, "deploy_ended", serde_json::json!({"deployId": id, "deployStatus": "failed", "reason": {"failure": {"nonZeroExit": 1}}}), &now);
                                    f.set_deploy_status(SRV, &id, "update_failed");
                                }
                            }
                        }
                        ("update_in_progress", "rollback") => {
                            *version.lock().unwrap() = "v0.24.0".into();
                            healthy.store(true, Ordering::SeqCst);
                            f.set_deploy_status(SRV, &id, "live");
                        }
                        _ => {}
                    }
                }
            });
            Self { fake, svc, file, room, stop }
        }

        fn update(&self, to: &str) -> Run {
            let synapse = &crate::support::services::shared().synapse;
            let path = self.file.path.to_str().unwrap();
            run(
                &[
                    "--config",
                    path,
                    "update",
                    "vikunja",
                    "--to",
                    to,
                    "--no-backup",
                    "the fake holds no data",
                    "--yes",
                    "--json",
                ],
                &[("RK", KEY), ("T", synapse.admin_token.as_str())],
            )
        }

        fn room(&self) -> Vec<String> {
            let synapse = &crate::support::services::shared().synapse;
            crate::matrix::messages(&synapse.base_url, &synapse.admin_token, &self.room)
                .iter()
                .map(|e| e["content"]["body"].as_str().unwrap_or_default().to_string())
                .collect()
        }

        fn calls(&self, what: &str) -> usize {
            self.fake.requests().iter().filter(|r| r.starts_with(what)).count()
        }
    }

    #[test]
    fn a_render_deploy_that_goes_live_is_verified_by_the_version_the_service_reports() {
        let s = Setup::new(Scenario::GoesLive);
        let r = s.update("vikunja/vikunja:v0.24.1");
        assert_eq!(r.code, 0, "{}", r.all());
        let record = r.json();
        assert_eq!(
            steps(&record),
            pairs(&[
                ("preflight", "ok"),
                ("announce", "ok"),
                ("backup", "skipped"),
                ("deploy", "ok"),
                ("verify", "ok"),
                ("finish", "ok")
            ])
        );
        assert!(
            record["steps"][2]["detail"].as_str().unwrap().contains("the fake holds no data"),
            "the reason is recorded"
        );
        assert!(record["steps"][4]["detail"].as_str().unwrap().contains("reports version v0.24.1"), "{record}");
        assert!(record["facts"]["deploy_id"].as_str().unwrap().starts_with("dep-"));
        assert_eq!(s.calls(&format!("POST /v1/services/{SRV}/deploys")), 1, "{:?}", s.fake.requests());
        assert_eq!(s.calls(&format!("POST /v1/services/{SRV}/rollback")), 0);
        let deploy = s.fake.with(|w| w.deploys[SRV][0].clone());
        assert_eq!(deploy["image"]["ref"], "vikunja/vikunja:v0.24.1", "the image asked for is what Render deploys");
        let room = s.room();
        assert!(room.iter().any(|m| m.starts_with("Updating vikunja to vikunja/vikunja:v0.24.1")), "{room:?}");
        assert!(room.iter().any(|m| m.starts_with("Updated vikunja to")), "{room:?}");
        assert!(!room.iter().any(|m| m.contains("UpdateFailed")), "{room:?}");
        assert!(!r.stdout.contains(KEY) && !r.stderr.contains(KEY), "the API key is in no output");
    }

    #[test]
    fn a_failed_render_deploy_is_rolled_back_verified_and_paged_once_with_its_evidence() {
        let s = Setup::new(Scenario::Fails);
        let before = s.fake.with(|w| w.deploys[SRV][0]["id"].as_str().unwrap().to_string());
        let r = s.update("vikunja/vikunja:v0.24.1");
        assert_eq!(r.code, 1, "{}", r.all());
        let record = r.json();
        assert_eq!(record["state"], "rolled-back", "{}", r.all());
        assert_eq!(
            steps(&record),
            pairs(&[
                ("preflight", "ok"),
                ("announce", "ok"),
                ("backup", "skipped"),
                ("deploy", "failed"),
                ("rollback", "ok"),
                ("verify-rollback", "ok"),
                ("page", "ok"),
                ("finish", "ok")
            ])
        );
        let deploy = record["steps"][3]["detail"].as_str().unwrap();
        assert!(deploy.contains("update_failed") && deploy.contains("server_failed non_zero_exit"), "{deploy}");
        let rollbacks: Vec<String> = s
            .fake
            .requests()
            .into_iter()
            .filter(|r| r.starts_with(&format!("POST /v1/services/{SRV}/rollback")))
            .collect();
        assert_eq!(rollbacks.len(), 1, "{rollbacks:?}");
        assert_eq!(record["facts"]["previous_deploy"], before.as_str(), "the rollback goes to the deploy live before");
        assert_eq!(*s.svc.version.lock().unwrap(), "v0.24.0");
        let room = s.room();
        let pages: Vec<&String> = room.iter().filter(|m| m.contains("UpdateFailed")).collect();
        assert_eq!(pages.len(), 1, "one page: {room:?}");
        assert!(pages[0].contains("failed at deploy") && pages[0].contains("update_failed"), "{}", pages[0]);
        assert!(room.iter().any(|m| m.starts_with("Update of vikunja") && m.contains("rolled back")), "{room:?}");
    }

    #[test]
    fn a_render_deploy_whose_health_stays_503_is_rolled_back() {
        let s = Setup::new(Scenario::GoesLiveUnhealthy);
        let r = s.update("vikunja/vikunja:v0.24.1");
        assert_eq!(r.code, 1, "{}", r.all());
        let record = r.json();
        assert_eq!(record["state"], "rolled-back", "{}", r.all());
        let taken: Vec<(String, String)> = steps(&record);
        assert_eq!(taken[3], ("deploy".to_string(), "ok".to_string()));
        assert_eq!(taken[4], ("verify".to_string(), "failed".to_string()));
        assert_eq!(taken[5], ("rollback".to_string(), "ok".to_string()));
        assert_eq!(taken[6], ("verify-rollback".to_string(), "ok".to_string()), "{record}");
        let verify = record["steps"][4]["detail"].as_str().unwrap();
        assert!(verify.contains("did not pass 3 rounds") && verify.contains("503"), "{verify}");
        assert!(s.svc.healthy.load(Ordering::SeqCst), "the rollback brought the healthy version back");
        let room = s.room();
        assert_eq!(room.iter().filter(|m| m.contains("UpdateFailed")).count(), 1, "{room:?}");
    }

    #[test]
    fn a_render_deploy_that_never_goes_live_is_canceled_before_the_rollback() {
        let s = Setup::new(Scenario::Hangs);
        let r = s.update("vikunja/vikunja:v0.24.1");
        assert_eq!(r.code, 1, "{}", r.all());
        let record = r.json();
        assert_eq!(record["state"], "rolled-back", "{}", r.all());
        let deploy = record["steps"][3]["detail"].as_str().unwrap();
        assert!(deploy.contains("still queued after 2s") && deploy.contains("is now canceled"), "{deploy}");
        let ours = record["facts"]["deploy_id"].as_str().unwrap().to_string();
        assert_eq!(s.calls(&format!("POST /v1/services/{SRV}/deploys/{ours}/cancel")), 1, "{:?}", s.fake.requests());
        let status =
            s.fake.with(|w| w.deploys[SRV].iter().find(|d| d["id"] == ours.as_str()).unwrap()["status"].clone());
        assert_eq!(status, "canceled", "the hanging deploy cannot go live after the rollback");
        assert_eq!(s.room().iter().filter(|m| m.contains("UpdateFailed")).count(), 1);
    }
}

// ---- The same from the daemon: `POST /api/v1/updates` with the admin token, the update run
// in the background and recorded, the status page showing it while it runs; hostile requests
// refused before anything is recorded.

mod api {
    use crate::cli::config;
    use crate::support::fakes;
    use crate::support::services::{free_port, http_get, http_request};
    use std::time::{Duration, Instant};

    const TOKEN: &str = "update-api-admin-token-0123456789";

    fn post(url: &str, token: Option<&str>, body: Vec<u8>) -> (u16, String) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        fakes::runtime().block_on(async {
            let mut r = reqwest::Client::new().post(url).header("content-type", "application/json").body(body);
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            match r.send().await {
                Ok(resp) => (resp.status().as_u16(), resp.text().await.unwrap_or_default()),
                Err(e) => (0, e.to_string()),
            }
        })
    }

    #[test]
    fn the_daemon_starts_an_update_through_the_api_and_shows_it_on_the_status_page() {
        let svc = fakes::vikunja();
        let info: serde_json::Value =
            serde_json::from_str(&http_get(&format!("{svc}/api/v1/info")).expect("the fake answers").1).unwrap();
        let version = info["version"].as_str().unwrap().to_string();
        let port = free_port();
        let file = config(&format!(
            r#"defaults: {{ interval: 1s, timeout: 3s }}
store: ./mxwarden.db
listen: 127.0.0.1:{port}
admin_token: "${{ADMIN}}"
services:
  vikunja:
    kind: vikunja
    url: "{svc}"
    deploy:
      command: ["sh", "-c", "echo deploying $MXWARDEN_UPDATE_TO; sleep 3"]
      rollback: {{ command: ["true"] }}
      verify: {{ rounds: 2, interval: 200ms, timeout: 10s }}
"#
        ));
        let mut daemon = std::process::Command::new(env!("CARGO_BIN_EXE_mxwarden"))
            .args(["--config", file.path.to_str().unwrap(), "run"])
            .env("ADMIN", TOKEN)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start mxwarden run");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(&format!("{base}/healthz")).is_none_or(|(s, _)| s != 200) {
            assert!(Instant::now() < deadline, "the daemon did not serve");
            std::thread::sleep(Duration::from_millis(100));
        }
        let url = format!("{base}/api/v1/updates");
        let good = serde_json::json!({"service": "vikunja", "to": format!("vikunja/vikunja:{version}"), "no_backup": "the fake holds no data"});

        // Refused before anything is recorded: no token, a wrong one, a huge body, unknown
        // fields, a service without deploy: (its name escaped), a target with spaces.
        assert_eq!(post(&url, None, good.to_string().into_bytes()).0, 401);
        assert_eq!(post(&url, Some("wrong"), good.to_string().into_bytes()).0, 403);
        assert_eq!(post(&url, Some(TOKEN), vec![b'x'; 1 << 20]).0, 413);
        assert_eq!(post(&url, Some(TOKEN), br#"{"service":"vikunja","to":"x","sneaky":1}"#.to_vec()).0, 400);
        let (status, body) = post(&url, Some(TOKEN), br#"{"service":"evil\u001b[31m","to":"x"}"#.to_vec());
        assert_eq!(status, 422, "{body}");
        assert!(!body.contains('\u{1b}'), "an injected name is escaped: {body}");
        assert_eq!(post(&url, Some(TOKEN), br#"{"service":"vikunja","to":"a b"}"#.to_vec()).0, 422);
        assert_eq!(http_get(&url).unwrap().1.trim(), "[]", "nothing was recorded");

        let (status, body) = post(&url, Some(TOKEN), good.to_string().into_bytes());
        assert_eq!(status, 202, "{body}");
        let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"].as_i64().unwrap();
        // A second one while it runs: 409.
        let (status, body) = post(&url, Some(TOKEN), good.to_string().into_bytes());
        assert_eq!(status, 409, "{body}");
        // The status page shows it in progress (the deploy takes 3 s).
        let mut shown = false;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && !shown {
            let (_, page) = http_get(&format!("{base}/")).unwrap();
            shown = page.contains(&format!("Update #{id} in progress: vikunja to vikunja/vikunja:{version}"));
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(shown, "the status page showed the update in progress");
        let deadline = Instant::now() + Duration::from_secs(60);
        let record = loop {
            let (_, body) = http_get(&format!("{url}/{id}")).unwrap();
            let r: serde_json::Value = serde_json::from_str(&body).unwrap();
            if r["state"] != "running" {
                break r;
            }
            assert!(Instant::now() < deadline, "the update did not end: {r}");
            std::thread::sleep(Duration::from_millis(200));
        };
        assert_eq!(record["state"], "succeeded", "{record}");
        let deploy = record["steps"].as_array().unwrap().iter().find(|s| s["step"] == "deploy").unwrap();
        assert!(
            deploy["detail"].as_str().unwrap().contains(&format!("deploying vikunja/vikunja:{version}")),
            "{deploy}"
        );
        let (_, page) = http_get(&format!("{base}/")).unwrap();
        assert!(!page.contains("in progress: vikunja"), "the banner is gone once it ended");
        assert_eq!(http_request("GET", &format!("{url}/nope"), &[]).unwrap().0, 400);
        assert_eq!(http_request("GET", &format!("{url}/999"), &[]).unwrap().0, 404);
        let _ = daemon.kill();
        let _ = daemon.wait();
    }
}

// ---- Refusals: an unhealthy service stops the update before anything is said or changed
// (`--force` goes on, recorded); a wrong `deploy:` is a config error with file, line and key;
// a wrong command line is refused with exit 2.

mod refusals {
    use crate::cli::{config, run};
    use crate::support::fakes;

    fn unhealthy_service() -> String {
        use axum::http::StatusCode;
        use axum::routing::get;
        fakes::serve(
            axum::Router::new()
                .route("/health", get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }))
                .route("/api/v1/info", get(|| async { axum::Json(serde_json::json!({"version": "v1.0.0"})) })),
        )
    }

    #[test]
    fn an_unhealthy_service_is_refused_before_anything_changes_and_force_goes_on_on_the_record() {
        let svc = unhealthy_service();
        let marker = tempfile::tempdir().unwrap();
        let deployed = marker.path().join("deployed");
        let file = config(&format!(
            r#"store: ./mxwarden.db
listen: off
services:
  vikunja:
    kind: vikunja
    url: "{svc}"
    deploy:
      command: ["touch", "{deployed}"]
      rollback: {{ command: ["true"] }}
      verify: {{ rounds: 1, interval: 100ms, timeout: 1s }}
"#,
            deployed = deployed.display()
        ));
        let path = file.path.to_str().unwrap();
        let base = [
            "--config",
            path,
            "update",
            "vikunja",
            "--to",
            "vikunja/vikunja:v1.0.1",
            "--no-backup",
            "test",
            "--yes",
            "--json",
        ];
        let r = run(&base, &[]);
        assert_eq!(r.code, 1, "{}", r.all());
        let record = r.json();
        assert_eq!(record["state"], "refused", "{}", r.all());
        assert_eq!(super::steps(&record), super::pairs(&[("preflight", "failed"), ("finish", "ok")]));
        assert!(record["steps"][0]["detail"].as_str().unwrap().contains("vikunja/health fails"), "{record}");
        assert!(!deployed.exists(), "a refused update deploys nothing");
        let windows = run(&["--config", path, "maintenance", "list", "--json"], &[]);
        assert_eq!(windows.json()["active"], serde_json::json!([]), "no window was opened");

        // --force: on the record, and the deploy runs; the health still fails, so it is rolled back.
        let mut forced = base.to_vec();
        forced.push("--force");
        let r = run(&forced, &[]);
        assert_eq!(r.code, 1, "{}", r.all());
        let record = r.json();
        assert_eq!(record["options"]["force"], true);
        assert!(record["steps"][0]["detail"].as_str().unwrap().contains("going on: --force"), "{record}");
        assert!(deployed.exists(), "forced: the deploy ran");
        assert_eq!(record["state"], "rollback-failed", "the rollback cannot make a 503 healthy: {record}");
    }

    #[test]
    fn a_wrong_deploy_section_names_file_line_and_key() {
        #[rustfmt::skip]
        let cases = [
            ("    deploy: {}\n", 5, "services.vikunja.deploy", "say how to deploy"),
            ("    deploy: { command: [] }\n", 5, "services.vikunja.deploy.command", "the command is empty"),
            ("    deploy:\n      command: [x]\n      verify: { rounds: 0 }\n", 7, "services.vikunja.deploy.verify.rounds", "expected 1 to 100"),
            ("    deploy:\n      command: [x]\n      window: 10s\n", 7, "services.vikunja.deploy.window", "out of range"),
            ("    deploy:\n      render: true\n", 6, "services.vikunja.deploy.render", "top-level `render:"),
            ("    deploy:\n      command: [x]\n      comand: [y]\n", 7, "services.vikunja.deploy.comand", "did you mean `command`?"),
        ];
        for (deploy, line, key, says) in cases {
            let file = config(&format!(
                "services:\n  vikunja:\n    kind: vikunja\n    url: \"http://127.0.0.1:9/\"\n{deploy}"
            ));
            let r = run(&["--config", file.path.to_str().unwrap(), "config", "check"], &[]);
            assert_eq!(r.code, 2, "{}", r.all());
            assert!(r.stderr.contains(&format!("mxwarden.yaml:{line}")), "{key}: line {line}: {}", r.all());
            assert!(r.stderr.contains(key) && r.stderr.contains(says), "{key}: {}", r.all());
        }
    }

    #[test]
    fn a_secret_in_the_deploy_command_appears_in_no_output_record_or_plan() {
        const SECRET: &str = "deploy-secret-7f3a9c2e";
        let svc = fakes::vikunja();
        let file = config(&format!(
            r#"store: ./mxwarden.db
listen: off
services:
  vikunja:
    kind: vikunja
    url: "{svc}"
    deploy:
      command: ["sh", "-c", "echo deploying with token=$1; echo $1 >&2", "sh", "${{DEPLOY_TOKEN}}"]
      rollback: {{ command: ["true"] }}
      verify: {{ rounds: 1, interval: 100ms, timeout: 5s }}
"#
        ));
        let path = file.path.to_str().unwrap();
        let env = [("DEPLOY_TOKEN", SECRET)];
        let to = ["update", "vikunja", "--to", "vikunja/vikunja:v2.5.0", "--no-backup", "test"];
        // In this order: the plan, the update, the record (JSON and table), the config.
        let runs = vec![
            run(&[&["--config", path][..], &to[..], &["--dry-run"]].concat(), &env),
            run(&[&["--config", path][..], &to[..], &["--yes", "--json"]].concat(), &env),
            run(&["--config", path, "updates", "--json"], &env),
            run(&["--config", path, "updates"], &env),
            run(&["--config", path, "config", "show"], &env),
        ];
        assert_eq!(runs[1].json()["state"], "succeeded", "{}", runs[1].all());
        for r in &runs {
            assert!(!r.stdout.contains(SECRET) && !r.stderr.contains(SECRET), "{}", r.all());
        }
        let record = runs[2].json();
        let deploy = record[0]["steps"].as_array().unwrap().iter().find(|s| s["step"] == "deploy").unwrap().clone();
        assert!(
            deploy["detail"].as_str().unwrap().contains("token=<redacted>"),
            "the output is kept, masked: {deploy}"
        );
        assert!(runs[0].stdout.contains("<redacted>"), "{}", runs[0].all());
    }

    #[test]
    fn a_mas_update_is_verified_by_its_login_path_discovery_and_jwks() {
        // The OIDC provider of the harness stands in for MAS's discovery and JWKS.
        let oidc = &crate::support::services::shared().oidc;
        let health = fakes::mas_health(true);
        let file = config(&format!(
            r#"store: ./mxwarden.db
listen: off
services:
  mas:
    kind: mas
    url: "{issuer}"
    health_url: "{health}/health"
    depends_on: []
    deploy:
      command: ["true"]
      rollback: {{ command: ["true"] }}
      verify: {{ rounds: 2, interval: 100ms, timeout: 10s }}
"#,
            issuer = oidc.issuer
        ));
        let r = run(
            &[
                "--config",
                file.path.to_str().unwrap(),
                "update",
                "mas",
                "--to",
                "ghcr.io/element-hq/matrix-authentication-service:1.2.0",
                "--no-backup",
                "test",
                "--yes",
                "--json",
            ],
            &[],
        );
        assert_eq!(r.code, 0, "{}", r.all());
        let record = r.json();
        let verify =
            record["steps"].as_array().unwrap().iter().find(|s| s["step"] == "verify").unwrap()["detail"].clone();
        let verify = verify.as_str().unwrap();
        assert!(
            verify.contains("login path: discovery and JWKS with") && verify.contains("reports no version"),
            "{verify}"
        );
    }

    #[test]
    fn wrong_calls_are_refused_with_exit_2_and_change_nothing() {
        let file = config(
            "store: ./mxwarden.db\nservices:\n  vikunja: { kind: vikunja, url: \"http://127.0.0.1:9/\" }\n  synapse: { kind: synapse, url: \"http://127.0.0.1:9/\", deploy: { command: [x] } }\n",
        );
        let path = file.path.to_str().unwrap();
        for (args, says) in [
            (vec!["update", "vikunja", "--to", "x:1"], "has no `deploy:`"),
            (vec!["update", "vikunj", "--to", "x:1"], "Did you mean `vikunja`?"),
            (vec!["update", "synapse", "--to", "two words"], "--to needs"),
            (vec!["update", "synapse", "--to", "x:1", "--no-backup", " "], "--no-backup needs a reason"),
            (vec!["update", "synapse"], "--to"),
        ] {
            let mut all = vec!["--config", path];
            all.extend(args.iter().copied());
            let r = run(&all, &[]);
            assert_eq!(r.code, 2, "{args:?}: {}", r.all());
            assert!(r.stderr.contains(says), "{args:?}: {}", r.all());
        }
        assert!(!file.path.with_file_name("mxwarden.db").exists(), "nothing was recorded");
        let r = run(&["--config", path, "updates", "--json"], &[]);
        assert_eq!((r.code, r.stdout.trim()), (0, "[]"), "{}", r.all());
    }
}

// ---- A crash at every step: with the `failpoints` feature, `MXWARDEN_FAILPOINT=update:<step>`
// aborts the process right after the step's start is recorded (as `kill -9` would); `--resume`
// must then reach the end the planner promises.

mod crashes {
    use crate::cli::{config, run};
    use crate::support::fakes;

    #[test]
    fn a_crash_in_each_step_resumes_to_a_correct_end() {
        let svc = fakes::vikunja();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("deploys.log");
        let file = config(&format!(
            r#"store: ./mxwarden.db
listen: off
services:
  vikunja:
    kind: vikunja
    url: "{svc}"
    deploy:
      command: ["sh", "-c", "echo deploy >>{log}"]
      rollback: {{ command: ["sh", "-c", "echo rollback >>{log}"] }}
      verify: {{ rounds: 1, interval: 100ms, timeout: 5s }}
"#,
            log = log.display()
        ));
        let path = file.path.to_str().unwrap();
        #[rustfmt::skip]
        let table = [
            ("preflight", "succeeded", "deploy\n", "run again: it changes nothing"),
            ("announce", "succeeded", "deploy\n", "run again"),
            ("backup", "succeeded", "deploy\n", "skipped again (--no-backup)"),
            ("deploy", "rolled-back", "rollback\n", "in flight and unverified: rolled back"),
            ("verify", "succeeded", "deploy\n", "the deploy finished: verified again"),
            ("finish", "succeeded", "deploy\n", "run again"),
        ];
        for (step, end, commands, why) in table {
            let _ = std::fs::remove_file(&log);
            let crashed = run(
                &[
                    "--config",
                    path,
                    "update",
                    "vikunja",
                    "--to",
                    "vikunja/vikunja:v2.5.0",
                    "--no-backup",
                    "fake",
                    "--yes",
                ],
                &[("MXWARDEN_FAILPOINT", &format!("update:{step}"))],
            );
            assert!(crashed.code != 0 && crashed.code != 1, "{step}: the process died: {}", crashed.all());
            let r = run(&["--config", path, "update", "--resume", "--json"], &[]);
            let record = r.json();
            assert_eq!(record["state"], end, "{step}: {why}: {}", r.all());
            let interrupted: Vec<&str> = record["steps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["outcome"] == "interrupted")
                .map(|s| s["step"].as_str().unwrap())
                .collect();
            assert_eq!(interrupted, vec![step], "{step}: the step it died in is on the record");
            assert_eq!(std::fs::read_to_string(&log).unwrap_or_default(), commands, "{step}: {why}");
            let windows = run(&["--config", path, "maintenance", "list", "--json"], &[]);
            assert_eq!(windows.json()["active"], serde_json::json!([]), "{step}: the window has ended");
        }
    }
}
