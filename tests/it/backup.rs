//! Backups against real PostgreSQL 15 clusters from `tests/support`, through the real binary:
//! `backup run` → `backup list --json` → `backup verify --restore-test` → `restore --into`
//! round-trips databases with equal row counts, decrypting with a key generated here
//! (`age::x25519::Identity::generate`); one flipped byte fails `verify` naming the file; a run
//! killed with SIGKILL leaves nothing that is listed; `prune` keeps exactly the GFS set of a
//! faked calendar; a config with a private key where a public one belongs is refused without
//! showing it; the daemon takes scheduled backups and a failed one fires `BackupFailed`;
//! `media_persistent: false` raises `SynapseMediaEphemeral`, and so does media uploaded to a
//! real Synapse whose media store is not declared (its admin media statistics).

use crate::cli::{ConfigFile, Run, config, run};
use crate::support::services::PgCluster;
use secrecy::ExposeSecret;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub(super) const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A cluster with `matrix` and `mas` holding data in two schemas, and an owner role.
pub(super) fn cluster_with_data() -> PgCluster {
    let pg = PgCluster::start();
    pg.psql("postgres", "CREATE ROLE synapse LOGIN PASSWORD 'role-pw'");
    for db in ["matrix", "mas"] {
        pg.psql("postgres", &format!("CREATE DATABASE {db} OWNER synapse"));
    }
    pg.psql(
        "matrix",
        "SET ROLE synapse; \
         CREATE TABLE rooms (id serial PRIMARY KEY, name text NOT NULL); \
         INSERT INTO rooms (name) SELECT 'room ' || g FROM generate_series(1, 5000) g; \
         CREATE SCHEMA media; \
         CREATE TABLE media.files (id bigint, body text); \
         INSERT INTO media.files SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 12345) g; \
         CREATE TABLE empty_table (x int);",
    );
    pg.psql(
        "mas",
        "CREATE TABLE sessions (id int PRIMARY KEY, token text); \
         INSERT INTO sessions SELECT g, md5(g::text) FROM generate_series(1, 777) g;",
    );
    pg
}

/// The backup setup of one test: a key pair, key files, a backup dir and the config.
struct Setup {
    dir: tempfile::TempDir,
    identity_file: PathBuf,
    keys_dir: PathBuf,
    file: ConfigFile,
}

impl Setup {
    fn new(pg: Option<&PgCluster>, extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let identity = age::x25519::Identity::generate();
        let identity_file = dir.path().join("identity.txt");
        std::fs::write(&identity_file, format!("# test key\n{}\n", identity.to_string().expose_secret()))
            .expect("write identity");
        let keys_dir = dir.path().join("mas-data");
        std::fs::create_dir_all(&keys_dir).unwrap();
        std::fs::write(keys_dir.join("signing.pem"), "-----BEGIN PRIVATE KEY-----\nAAAA\n").unwrap();
        std::fs::write(keys_dir.join("encryption.pem"), "-----BEGIN PRIVATE KEY-----\nBBBB\n").unwrap();
        std::fs::write(keys_dir.join("notes.txt"), "not a key").unwrap();
        let services = pg.map_or_else(String::new, |pg| {
            format!(
                "services:\n  postgres:\n    kind: postgres\n    dsn: \"postgresql://postgres:unused-pw@127.0.0.1:{}/postgres\"\n",
                pg.port
            )
        });
        let text = format!(
            "{services}backup:\n  dir: {}\n  pg_bin_dir: {PG_BIN}\n  encrypt_to: [\"{}\"]\n  files:\n    mas-keys: [\"{}/*.pem\"]\n{extra}",
            dir.path().join("backups").display(),
            identity.to_public(),
            keys_dir.display(),
        );
        let file = config(&text);
        Self { dir, identity_file, keys_dir, file }
    }

    fn backups(&self) -> PathBuf {
        self.dir.path().join("backups")
    }

    fn mx(&self, args: &[&str]) -> Run {
        let mut all = vec!["--config", self.file.path.to_str().unwrap()];
        all.extend_from_slice(args);
        run(&all, &[])
    }

    fn identity(&self) -> &str {
        self.identity_file.to_str().unwrap()
    }
}

pub(super) fn count(pg: &PgCluster, db: &str, table: &str) -> i64 {
    pg.psql(db, &format!("SELECT count(*) FROM {table}")).parse().expect("a count")
}

#[test]
fn run_list_verify_with_restore_test_and_restore_round_trip_with_equal_row_counts() {
    let pg = cluster_with_data();
    let s = Setup::new(Some(&pg), "  databases: [matrix, mas]\n  zstd_level: 5\n");

    let r = s.mx(&["backup", "run"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("postgres/matrix"), "{}", r.all());

    let r = s.mx(&["backup", "list", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let runs = r.json();
    let runs = runs.as_array().expect("an array");
    assert_eq!(runs.len(), 1, "{}", r.stdout);
    let m = &runs[0];
    assert_eq!(m["status"], "ok", "{}", r.stdout);
    let id = m["id"].as_str().unwrap().to_string();
    let items = m["items"].as_array().unwrap();
    let labels: Vec<String> =
        items.iter().map(|i| format!("{}/{}", i["service"].as_str().unwrap(), i["name"].as_str().unwrap())).collect();
    assert_eq!(labels, ["postgres/(globals)", "postgres/matrix", "postgres/mas", "files/mas-keys"]);
    for item in items {
        let path = s.backups().join(&id).join(item["file"].as_str().unwrap());
        let bytes = std::fs::read(&path).expect("the stored file");
        assert_eq!(bytes.len() as u64, item["stored_bytes"].as_u64().unwrap(), "{}", path.display());
        assert!(bytes.starts_with(b"age-encryption.org/v1"), "{} is age-encrypted", path.display());
        let sha = item["sha256"].as_str().unwrap();
        assert_eq!(sha.len(), 64);
        assert!(!String::from_utf8_lossy(&bytes).contains("room 4999"), "no plain text in {}", path.display());
    }
    assert!(items[1]["server_version"].as_str().unwrap().starts_with("15."), "{}", r.stdout);
    assert!(items[1]["tool_version"].as_str().unwrap().contains("PostgreSQL) 15"), "{}", r.stdout);
    assert_eq!(items[3]["entries"], 2, "two .pem files, not the .txt");
    assert!(m["duration_seconds"].as_f64().unwrap() > 0.0);
    assert!(!r.all().contains("unused-pw"), "the DSN's password leaked: {}", r.all());

    let r = s.mx(&["backup", "verify", &id, "--identity", s.identity(), "--restore-test", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let report = r.json();
    assert_eq!(report["ok"], true, "{}", r.stdout);
    let matrix = report["items"].as_array().unwrap().iter().find(|i| i["item"] == "postgres/matrix").unwrap();
    let test = &matrix["restore_test"];
    assert_eq!(test["rows"], 5000 + 12345, "{}", r.stdout);
    assert_eq!(test["tables"], 3, "{}", r.stdout);
    assert_eq!(test["differences"].as_array().unwrap().len(), 0);
    let scratch = test["scratch_database"].as_str().unwrap();
    assert_eq!(
        pg.psql("postgres", &format!("SELECT count(*) FROM pg_database WHERE datname = '{scratch}'")),
        "0",
        "the scratch database was dropped"
    );
    assert!(matrix["passed"].to_string().contains("pg_restore --list"), "{}", r.stdout);

    let r = s.mx(&["restore", &id, "--db", "matrix", "--into", "matrix_restored", "--identity", s.identity()]);
    assert_eq!(r.code, 0, "{}", r.all());
    for table in ["rooms", "media.files", "empty_table"] {
        assert_eq!(count(&pg, "matrix_restored", table), count(&pg, "matrix", table), "{table}");
    }
    assert_eq!(count(&pg, "matrix_restored", "media.files"), 12345);
    assert_eq!(
        pg.psql("matrix_restored", "SELECT tableowner FROM pg_tables WHERE tablename = 'rooms'"),
        "synapse",
        "owners come back"
    );

    let r = s.mx(&["restore", &id, "--db", "matrix", "--into", "matrix_restored", "--identity", s.identity()]);
    assert_eq!(r.code, 2, "an existing database is refused: {}", r.all());
    assert!(r.stderr.contains("exists") && r.stderr.contains("--force"), "{}", r.all());
    pg.psql("matrix_restored", "DELETE FROM rooms");
    let r =
        s.mx(&["restore", &id, "--db", "matrix", "--into", "matrix_restored", "--force", "--identity", s.identity()]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(count(&pg, "matrix_restored", "rooms"), 5000, "--force replaced it");

    let out = s.dir.path().join("restored-keys");
    let r = s.mx(&[
        "restore",
        "latest",
        "--files",
        "mas-keys",
        "--into",
        out.to_str().unwrap(),
        "--identity",
        s.identity(),
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
    let back = out.join(s.keys_dir.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(back.join("signing.pem")).unwrap(),
        std::fs::read(s.keys_dir.join("signing.pem")).unwrap()
    );
    assert!(!back.join("notes.txt").exists(), "only the set's pattern was archived");
}

/// Flips one bit in the middle of `path`.
pub(super) fn flip(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn one_flipped_byte_fails_verify_naming_the_file_and_a_missing_database_fails_the_run() {
    let pg = cluster_with_data();
    let s = Setup::new(Some(&pg), "  databases: [matrix, nosuchdb]\n");
    let r = s.mx(&["backup", "run", "--json"]);
    assert_eq!(r.code, 1, "a missing database fails the run: {}", r.all());
    let m = r.json();
    assert_eq!(m["status"], "failed");
    let missing = m["items"].as_array().unwrap().iter().find(|i| i["name"] == "nosuchdb").unwrap().clone();
    assert!(missing["error"].as_str().unwrap().contains("does not exist"), "{missing}");
    let id = m["id"].as_str().unwrap().to_string();
    let matrix = m["items"].as_array().unwrap().iter().find(|i| i["name"] == "matrix").unwrap().clone();
    assert!(matrix["error"].is_null(), "the other items were stored: {matrix}");

    let r = s.mx(&["backup", "verify", &id, "--identity", s.identity(), "--json"]);
    assert_eq!(r.code, 1, "the failed item fails verify: {}", r.all());
    let file = format!("{id}/{}", matrix["file"].as_str().unwrap());
    let report = r.json();
    let row = report["items"].as_array().unwrap().iter().find(|i| i["item"] == "postgres/matrix").unwrap().clone();
    assert!(row["problem"].is_null(), "matrix itself is fine before the flip: {row}");

    flip(&s.backups().join(&file));
    let r = s.mx(&["backup", "verify", &id]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stdout.contains(&file) && r.stdout.contains("SHA-256 mismatch"), "names the file: {}", r.all());
    let r = s.mx(&["restore", &id, "--db", "matrix", "--into", "never_created", "--identity", s.identity()]);
    assert_eq!(r.code, 1, "a damaged file is not restored: {}", r.all());
    assert!(r.stderr.contains(&file), "{}", r.all());
    assert_eq!(pg.psql("postgres", "SELECT count(*) FROM pg_database WHERE datname = 'never_created'"), "0");
}

#[test]
fn a_run_killed_mid_dump_leaves_nothing_listed_and_prune_clears_it() {
    let pg = PgCluster::start();
    pg.psql("postgres", "CREATE DATABASE big");
    pg.psql(
        "big",
        "CREATE TABLE t AS SELECT g AS id, repeat(md5(g::text), 8) AS body FROM generate_series(1, 400000) g",
    );
    let s = Setup::new(Some(&pg), "  databases: [big]\n  globals: false\n");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mxwarden"))
        .args(["--config", s.file.path.to_str().unwrap(), "backup", "run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start mxwarden backup run");
    let deadline = Instant::now() + Duration::from_secs(60);
    let partial = loop {
        let found = std::fs::read_dir(s.backups()).ok().and_then(|runs| {
            runs.flatten().filter(|r| r.path().is_dir()).find_map(|r| {
                std::fs::read_dir(r.path()).ok()?.flatten().map(|f| f.path()).find(|p| {
                    p.to_string_lossy().ends_with(".partial") && p.metadata().is_ok_and(|m| m.len() > 64 * 1024)
                })
            })
        });
        if let Some(p) = found {
            break p;
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        assert!(Instant::now() < deadline, "no partial file appeared");
        std::thread::sleep(Duration::from_millis(20));
    };
    // SIGKILL: no destructor, no cleanup.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(partial.exists(), "the half-written file is still there, as .partial");

    let r = s.mx(&["backup", "list", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.json(), serde_json::json!([]), "nothing half-written is listed: {}", r.all());
    assert!(r.stderr.contains("has no manifest"), "{}", r.all());
    let r = s.mx(&["backup", "verify"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("no good run"), "{}", r.all());

    let r = s.mx(&["backup", "prune", "--apply", "--json"]);
    assert_eq!(r.code, 0, "the lock died with the process: {}", r.all());
    assert_eq!(r.json()["runs"][0]["status"], "unfinished");
    assert!(!partial.exists(), "prune removed the unfinished run");
    let r = s.mx(&["backup", "run"]);
    assert_eq!(r.code, 0, "{}", r.all());
}

/// Writes a finished manifest (no items) for a run at `at`, as `backup run` would.
pub(super) fn fake_run(backups: &Path, at: jiff::Timestamp, complete: bool) -> String {
    let id = at.strftime("%Y%m%dT%H%M%SZ").to_string();
    let manifest = serde_json::json!({
        "format": 1, "id": id, "status": if complete { "ok" } else { "failed" }, "scope": "full",
        "started_at": at.to_string(), "finished_at": at.to_string(), "duration_seconds": 1.0,
        "mxwarden_version": "test", "zstd_level": 3, "recipients": [], "items": []
    });
    std::fs::create_dir_all(backups.join(&id)).unwrap();
    std::fs::write(backups.join(&id).join("manifest.json"), manifest.to_string()).unwrap();
    std::fs::write(backups.join(&id).join("files.x.tar.zst.age"), b"x").unwrap();
    id
}

#[test]
fn prune_over_a_faked_calendar_keeps_exactly_the_gfs_set() {
    let s = Setup::new(None, "  retention: { daily: 3, weekly: 2, monthly: 3 }\n");
    // Nightly runs at 02:00 UTC from 2026-01-01 to 2026-04-15 (Wednesday), one failed run in
    // between and a failed run after the newest good one.
    let start: jiff::Timestamp = "2026-01-01T02:00:00Z".parse().unwrap();
    for day in 0..105 {
        fake_run(&s.backups(), start + jiff::SignedDuration::from_hours(24 * day), day != 50);
    }
    fake_run(&s.backups(), "2026-04-15T14:00:00Z".parse().unwrap(), false);
    let want = [
        "20260228T020000Z", // monthly: February (the 3rd month with runs, counting back)
        "20260331T020000Z", // monthly: March
        "20260412T020000Z", // weekly: ISO week 15 (Mon Apr 6 – Sun Apr 12)
        "20260413T020000Z", // daily
        "20260414T020000Z", // daily
        "20260415T020000Z", // newest; daily, weekly (week 16) and monthly (April)
        "20260415T140000Z", // failed, newer than the newest good run: kept as evidence
    ];
    let r = s.mx(&["backup", "prune", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let kept: Vec<String> = r.json()["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["delete"] == false)
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kept, want, "{}", r.stdout);
    assert_eq!(std::fs::read_dir(s.backups()).unwrap().flatten().filter(|e| e.path().is_dir()).count(), 106, "dry run");

    let r = s.mx(&["backup", "prune", "--apply"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("deleted 99 runs"), "{}", r.all());
    let r = s.mx(&["backup", "list", "--json"]);
    let listed: Vec<String> =
        r.json().as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(listed, want);
}

#[test]
fn config_show_prints_the_backup_plan_without_the_connection_secrets() {
    let recipient = age::x25519::Identity::generate().to_public().to_string();
    let file = config(&format!(
        "services:\n  db:\n    kind: postgres\n    dsn: \"postgresql://backup:s3cret-pw@127.0.0.1:5432/postgres\"\n\
         backup:\n  dir: /srv/backups\n  databases: {{ db: [synapse, mas] }}\n  files: {{ mas-keys: [\"/data/mas/*.pem\"] }}\n\
         \x20 encrypt_to: [\"{recipient}\"]\n  schedule: \"30 3 * * *\"\n  retention: {{ daily: 7, weekly: 4, monthly: 6 }}\n"
    ));
    let r = run(&["config", "show", "--json", "--config", file.path.to_str().unwrap()], &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    let shown: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON");
    let backup = &shown["backup"];
    assert_eq!(backup["dir"], "/srv/backups", "{backup}");
    assert!(backup["databases"]["db"].as_str().unwrap().starts_with("synapse, mas"), "{backup}");
    assert_eq!(backup["files"]["mas-keys"][0], "/data/mas/*.pem", "{backup}");
    assert!(backup["schedule"].as_str().unwrap().starts_with("30 3 * * *"), "{backup}");
    assert_eq!(backup["retention"], "daily 7, weekly 4, monthly 6", "{backup}");
    assert_eq!(backup["encrypt_to"][0], recipient.as_str(), "{backup}");
    assert!(!r.all().contains("s3cret-pw"), "the password was shown: {}", r.all());
}

#[test]
fn a_private_key_in_encrypt_to_is_refused_without_showing_it() {
    let identity = age::x25519::Identity::generate();
    let secret = identity.to_string().expose_secret().to_string();
    let file = config(&format!(
        "backup:\n  dir: /tmp/mxwarden-never\n  files: {{ k: [\"/etc/hostname\"] }}\n  encrypt_to: [\"{secret}\"]\n  schedule: \"0 2 * *\"\n  zstd_level: 40\n"
    ));
    let r = run(&["config", "check", file.path.to_str().unwrap()], &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains("mxwarden.yaml:4:") && r.stderr.contains("backup.encrypt_to[0]: this is an age private key"),
        "{}",
        r.all()
    );
    assert!(!r.all().contains(&secret[15..]), "the private key was shown: {}", r.all());
    assert!(r.stderr.contains(":5:") && r.stderr.contains("backup.schedule"), "{}", r.all());
    assert!(r.stderr.contains(":6:") && r.stderr.contains("backup.zstd_level: 40 is not a zstd level"), "{}", r.all());
}

#[test]
fn local_media_on_a_synapse_with_no_declared_store_raises_the_ephemeral_media_warning() {
    let synapse = crate::support::services::Synapse::start_sqlite();
    let file = config(&format!(
        "services:\n  synapse:\n    kind: synapse\n    url: {}\n    admin_token: \"${{MXW_TOKEN}}\"\n",
        synapse.base_url
    ));
    let env = [("MXW_TOKEN", synapse.admin_token.as_str())];
    let r = crate::cli::check_json(&file, &[], &env);
    assert_eq!(r.code, 0, "no media yet, nothing to warn about: {}", r.all());
    assert_eq!(r.row("synapse/media")["ok"], true, "{}", r.all());
    assert_eq!(r.row("SynapseMediaEphemeral")["ok"], true, "{}", r.all());

    // A user uploads a file to the local media store.
    let alice = synapse.register("alice", "alice-pass-for-tests");
    let upload = std::process::Command::new("curl")
        .args(["-sS", "-f", "-X", "POST", "-H", &format!("Authorization: Bearer {alice}")])
        .args(["-H", "Content-Type: text/plain", "--data-binary", "a picture of a cat"])
        .arg(format!("{}/_matrix/media/v3/upload?filename=cat.txt", synapse.base_url))
        .output()
        .expect("run curl");
    assert!(upload.status.success(), "upload failed: {}", String::from_utf8_lossy(&upload.stderr));
    assert!(String::from_utf8_lossy(&upload.stdout).contains("mxc://"), "{upload:?}");

    let r = crate::cli::check_json(&file, &[], &env);
    assert_eq!(r.code, 1, "{}", r.all());
    let row = r.row("SynapseMediaEphemeral");
    assert_eq!(row["ok"], false, "{row}");
    let detail = row["detail"].as_str().unwrap();
    assert!(
        detail.contains("1 users have uploaded media to the local media store")
            && detail.contains("declare media_persistent: true"),
        "{row}"
    );
    assert!(!r.all().contains(&synapse.admin_token), "the admin token was shown: {}", r.all());

    // Declaring the store persistent ends the question: no statistics check, no warning.
    let declared = config(&format!(
        "services:\n  synapse:\n    kind: synapse\n    url: {}\n    admin_token: \"${{MXW_TOKEN}}\"\n    media_persistent: true\n",
        synapse.base_url
    ));
    let r = crate::cli::check_json(&declared, &[], &env);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!r.stdout.contains("SynapseMediaEphemeral") && !r.stdout.contains("synapse/media"), "{}", r.all());
}

#[test]
fn a_synapse_declared_without_persistent_media_gets_the_ephemeral_media_warning() {
    let file = config(
        "services:\n  synapse:\n    kind: synapse\n    url: http://127.0.0.1:1\n    media_persistent: false\n    disable: [client-versions, admin-version]\n",
    );
    let r = crate::cli::check_json(&file, &[], &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    let row = r.row("SynapseMediaEphemeral");
    assert_eq!(row["ok"], false, "{row}");
    assert_eq!(row["service"], "synapse", "{row}");
    assert!(row["detail"].as_str().unwrap().contains("media will be lost on the next redeploy"), "{row}");

    let persistent =
        config("services:\n  synapse:\n    kind: synapse\n    url: http://127.0.0.1:1\n    media_persistent: true\n");
    let r = crate::cli::check_json(&persistent, &[], &[]);
    assert!(!r.stdout.contains("SynapseMediaEphemeral"), "{}", r.all());

    let wrong = config(
        "services:\n  pg:\n    kind: postgres\n    dsn: \"postgresql://u@127.0.0.1/db\"\n    media_persistent: false\n",
    );
    let r = run(&["config", "check", wrong.path.to_str().unwrap()], &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains("services.pg.media_persistent: `media_persistent` does not apply to kind postgres"),
        "{}",
        r.all()
    );
}

#[test]
fn the_daemon_takes_scheduled_backups_and_a_failed_one_fires_backup_failed() {
    let pg = cluster_with_data();
    let s = Setup::new(Some(&pg), "  databases: [matrix, nosuchdb]\n  globals: false\n  schedule: \"*/2 * * * * *\"\n");
    let text = std::fs::read_to_string(&s.file.path).unwrap();
    let store = s.dir.path().join("state.db");
    std::fs::write(&s.file.path, format!("defaults: {{ interval: 1s }}\nstore: {}\n{text}", store.display())).unwrap();
    let log = s.dir.path().join("daemon.log");
    let mut daemon = std::process::Command::new(env!("CARGO_BIN_EXE_mxwarden"))
        .args(["--config", s.file.path.to_str().unwrap(), "run"])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(s.dir.path().join("daemon.err")).unwrap())
        .spawn()
        .expect("start mxwarden run");
    let deadline = Instant::now() + Duration::from_secs(60);
    let fired = loop {
        let r = s.mx(&["alerts", "--json"]);
        // `alerts` exits 1 while something fires.
        if r.code <= 1
            && !r.stdout.is_empty()
            && let Some(a) = r
                .json()
                .as_array()
                .and_then(|a| a.iter().find(|x| x["alert"] == "BackupFailed" && x["state"] == "firing").cloned())
        {
            break a;
        }
        if Instant::now() > deadline {
            let _ = daemon.kill();
            let err = std::fs::read_to_string(s.dir.path().join("daemon.err")).unwrap_or_default();
            panic!("BackupFailed never fired: {}\ndaemon:\n{err}", r.all());
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let _ = std::process::Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status();
    let _ = daemon.wait();
    assert_eq!(fired["labels"]["database"], "nosuchdb", "{fired}");
    assert_eq!(fired["labels"]["severity"], "critical", "{fired}");
    let r = s.mx(&["backup", "list", "--json"]);
    let runs = r.json();
    let first = &runs.as_array().expect("runs")[0];
    assert_eq!(first["status"], "failed", "{}", r.stdout);
    let matrix = first["items"].as_array().unwrap().iter().find(|i| i["name"] == "matrix").unwrap();
    assert!(matrix["error"].is_null(), "the scheduled run stored matrix: {matrix}");
}
