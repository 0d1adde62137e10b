//! Backups to a real S3-compatible server (`s3s-fs` on 127.0.0.1, `tests/support/s3.rs`)
//! through the real binary and a real PostgreSQL 15: `backup run` → `list` → `verify` →
//! `restore` round-trips databases with equal row counts in multipart uploads; a run
//! stopped by SIGTERM mid-upload leaves no listed run and no unfinished multipart upload; one
//! killed by SIGKILL leaves no listed run, and the next run (or the daemon at start) aborts
//! the upload it left, named in the journal beside the state store; a
//! part cut off mid-upload (a TCP proxy drops the connection) is sent again; a bucket that
//! refuses writes fails the run with its own reason and leaves the earlier runs alone; a
//! flipped byte in the bucket fails `verify`; `prune` over a faked calendar deletes exactly
//! the expired runs in the bucket; wrong credentials fail with the bucket named and no
//! secret; `to:` with `dir:` is refused with file, line and key, and a broken line beside the
//! secret key shows no secret; the restore drill passes on a real cluster and fails when a
//! table's rows differ from the manifest's counts, from the CLI and on the daemon's schedule
//! (`BackupDrillFailed` fires); the daemon fires `BackupFailed` when the bucket refuses every
//! write, though no manifest could be written.

use super::backup::{PG_BIN, cluster_with_data, count, fake_run, flip};
use crate::cli::{ConfigFile, Run, config, run};
use crate::support::s3::S3Server;
use crate::support::services::PgCluster;
use secrecy::ExposeSecret;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const BUCKET: &str = "mxw-backups";
const PREFIX: &str = "nightly/host-1";

/// A key pair, the server and a config that backs up to it.
struct Setup {
    _dir: tempfile::TempDir,
    identity_file: PathBuf,
    s3: S3Server,
    file: ConfigFile,
}

impl Setup {
    fn new(pg: Option<&PgCluster>, extra: &str) -> Self {
        Self::with_secret(pg, extra, None)
    }

    fn with_secret(pg: Option<&PgCluster>, extra: &str, secret: Option<&str>) -> Self {
        let s3 = S3Server::start(BUCKET);
        let dir = tempfile::tempdir().expect("temp dir");
        let identity = age::x25519::Identity::generate();
        let identity_file = dir.path().join("identity.txt");
        std::fs::write(&identity_file, format!("{}\n", identity.to_string().expose_secret())).unwrap();
        let keys = dir.path().join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        std::fs::write(keys.join("signing.pem"), "-----BEGIN PRIVATE KEY-----\nAAAA\n").unwrap();
        let services = pg.map_or_else(String::new, |pg| {
            format!(
                "services:\n  postgres:\n    kind: postgres\n    dsn: \"postgresql://postgres:unused-pw@127.0.0.1:{}/postgres\"\n",
                pg.port
            )
        });
        let text = format!(
            "{services}backup:\n  to: \"s3://{BUCKET}/{PREFIX}/\"\n  endpoint: {}\n  region: us-east-1\n  path_style: true\n  \
             access_key_id: {}\n  secret_access_key: \"{}\"\n  pg_bin_dir: {PG_BIN}\n  encrypt_to: [\"{}\"]\n  \
             files:\n    keys: [\"{}/*.pem\"]\n{extra}",
            s3.endpoint(),
            s3.access_key,
            secret.unwrap_or(&s3.secret_key),
            identity.to_public(),
            keys.display(),
        );
        Self { file: config(&text), _dir: dir, identity_file, s3 }
    }

    fn mx(&self, args: &[&str]) -> Run {
        let mut all = vec!["--config", self.file.path.to_str().unwrap()];
        all.extend_from_slice(args);
        run(&all, &[])
    }

    fn identity(&self) -> &str {
        self.identity_file.to_str().unwrap()
    }

    /// The bucket's directory for the prefix.
    fn prefix_dir(&self) -> PathBuf {
        self.s3.root.join(BUCKET).join(PREFIX)
    }

    fn no_secret(&self, r: &Run) {
        assert!(!r.all().contains(&self.s3.secret_key), "the secret key leaked: {}", r.all());
    }
}

/// A database big enough for several 8 MiB parts after compression: random text.
fn big_database(pg: &PgCluster, db: &str, rows: u32) {
    pg.psql("postgres", &format!("CREATE DATABASE {db}"));
    pg.psql(
        db,
        &format!(
            "CREATE TABLE blobs AS SELECT g AS id, \
             md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) AS body \
             FROM generate_series(1, {rows}) g"
        ),
    );
}

#[test]
fn run_list_verify_restore_round_trip_through_the_bucket_with_equal_rows() {
    let pg = cluster_with_data();
    big_database(&pg, "big", 250_000);
    let s = Setup::new(Some(&pg), "  databases: [matrix, mas, big]\n");

    let r = s.mx(&["backup", "run", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    s.no_secret(&r);
    let m = r.json();
    let id = m["id"].as_str().unwrap().to_string();
    assert!(s.s3.unfinished_uploads().is_empty(), "every upload completed: {:?}", s.s3.unfinished_uploads());
    let big = m["items"].as_array().unwrap().iter().find(|i| i["name"] == "big").unwrap().clone();
    assert!(big["stored_bytes"].as_u64().unwrap() > 16 << 20, "several parts: {big}");
    let stored = s.s3.objects(BUCKET, PREFIX);
    for item in m["items"].as_array().unwrap() {
        let key = format!("{id}/{}", item["file"].as_str().unwrap());
        assert!(stored.contains(&key), "{key} is in the bucket: {stored:?}");
        let bytes = std::fs::read(s.prefix_dir().join(&key)).unwrap();
        assert_eq!(bytes.len() as u64, item["stored_bytes"].as_u64().unwrap(), "{key}");
        assert!(bytes.starts_with(b"age-encryption.org/v1"), "{key} is encrypted");
    }
    assert!(stored.contains(&format!("{id}/manifest.json")), "{stored:?}");
    let manifest = std::fs::read_to_string(s.prefix_dir().join(&id).join("manifest.json")).unwrap();
    assert!(!manifest.contains(&s.s3.secret_key) && !manifest.contains(&s.s3.access_key), "{manifest}");
    let matrix = m["items"].as_array().unwrap().iter().find(|i| i["name"] == "matrix").unwrap().clone();
    assert_eq!(matrix["row_counts"]["public.rooms"], 5000, "counted at dump time: {matrix}");
    assert_eq!(matrix["row_counts"]["media.files"], 12345, "{matrix}");

    let r = s.mx(&["backup", "list", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let listed: Vec<String> = r.json().as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().into()).collect();
    assert_eq!(listed, std::slice::from_ref(&id));
    let r = s.mx(&["backup", "list"]);
    assert!(r.stdout.contains(&format!("s3://{BUCKET}/{PREFIX}")), "{}", r.all());

    let r = s.mx(&["backup", "verify", &id, "--identity", s.identity(), "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.json()["ok"], true, "{}", r.stdout);

    let r = s.mx(&["restore", &id, "--db", "big", "--into", "big_restored", "--identity", s.identity()]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(count(&pg, "big_restored", "blobs"), 250_000);
    assert_eq!(
        pg.psql("big_restored", "SELECT md5(string_agg(body, '' ORDER BY id)) FROM blobs"),
        pg.psql("big", "SELECT md5(string_agg(body, '' ORDER BY id)) FROM blobs"),
        "the same rows"
    );
    let r = s.mx(&["restore", "latest", "--db", "matrix", "--into", "matrix_restored", "--identity", s.identity()]);
    assert_eq!(r.code, 0, "{}", r.all());
    for table in ["rooms", "media.files", "empty_table"] {
        assert_eq!(count(&pg, "matrix_restored", table), count(&pg, "matrix", table), "{table}");
    }

    let r = run(&["config", "show", "--json", "--config", s.file.path.to_str().unwrap()], &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    s.no_secret(&r);
    assert_eq!(r.json()["backup"]["dir"], format!("s3://{BUCKET}/{PREFIX}"), "{}", r.stdout);
}

#[test]
fn a_run_stopped_mid_upload_aborts_its_upload_and_lists_nothing() {
    let pg = PgCluster::start();
    big_database(&pg, "big", 600_000);
    let s = Setup::new(Some(&pg), "  databases: [big]\n  globals: false\n");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mxwarden"))
        .args(["--config", s.file.path.to_str().unwrap(), "backup", "run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start mxwarden backup run");
    let deadline = Instant::now() + Duration::from_secs(120);
    while s.s3.parts() == 0 {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before a part was uploaded");
        assert!(Instant::now() < deadline, "no part was uploaded");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!s.s3.unfinished_uploads().is_empty(), "an upload is under way");
    // SIGTERM, as systemd or `docker stop` would send.
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(s.s3.unfinished_uploads(), Vec::<String>::new(), "the multipart upload was aborted");
    assert_eq!(journals(&s), Vec::<PathBuf>::new(), "and forgotten in the journal");

    let r = s.mx(&["backup", "list", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.json(), serde_json::json!([]), "nothing half-done is listed: {}", r.all());
    let r = s.mx(&["backup", "prune", "--apply"]);
    assert_eq!(r.code, 0, "the host lock died with the process: {}", r.all());
    let r = s.mx(&["backup", "run", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let r = s.mx(&["backup", "list", "--json"]);
    assert_eq!(r.json().as_array().unwrap().len(), 1, "{}", r.all());
}

/// The journals of uploads in flight beside the state store of `s` (`store:` unset).
fn journals(s: &Setup) -> Vec<PathBuf> {
    let dir = s.file.path.parent().unwrap().join("mxwarden-uploads");
    std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default()
}

/// Starts `backup run` of a big database, SIGKILLs it once a part is in the bucket, checks
/// that its upload is left behind and recorded in the journal, and returns the upload's id.
fn kill_mid_upload(s: &Setup) -> String {
    use std::os::unix::process::ExitStatusExt;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mxwarden"))
        .args(["--config", s.file.path.to_str().unwrap(), "backup", "run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start mxwarden backup run");
    let deadline = Instant::now() + Duration::from_secs(120);
    while s.s3.parts() == 0 {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before a part was uploaded");
        assert!(Instant::now() < deadline, "no part was uploaded");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIGKILL: nothing of the process runs after it, so nothing of it can abort the upload.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "killed: {status:?}");
    let orphans: Vec<String> =
        s.s3.unfinished_uploads()
            .iter()
            .filter_map(|n| n.strip_prefix(".upload-").and_then(|n| n.strip_suffix(".json")).map(str::to_string))
            .collect();
    assert_eq!(orphans.len(), 1, "the killed run left its upload behind: {:?}", s.s3.unfinished_uploads());
    let files = journals(s);
    assert_eq!(files.len(), 1, "one journal for the bucket: {files:?}");
    let journal = std::fs::read_to_string(&files[0]).unwrap();
    assert!(journal.contains(&orphans[0]), "the journal names the orphaned upload {}: {journal}", orphans[0]);
    assert!(journal.contains(&format!("{PREFIX}/")), "and its object: {journal}");
    assert!(!journal.contains(&s.s3.secret_key) && !journal.contains(&s.s3.access_key), "no key: {journal}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&files[0]).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the journal is private");
    orphans[0].clone()
}

#[test]
fn a_run_killed_mid_upload_lists_nothing_and_the_next_run_aborts_its_upload() {
    let pg = PgCluster::start();
    big_database(&pg, "big", 600_000);
    let s = Setup::new(Some(&pg), "  databases: [big]\n  globals: false\n");
    let orphan = kill_mid_upload(&s);

    let r = s.mx(&["backup", "list", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.json(), serde_json::json!([]), "nothing half-done is listed: {}", r.all());

    let r = s.mx(&["-v", "backup", "run", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    s.no_secret(&r);
    assert!(
        r.stderr.contains("Aborted an upload an earlier run left unfinished") && r.stderr.contains(&orphan),
        "the orphan's abort is logged: {}",
        r.stderr
    );
    assert_eq!(s.s3.unfinished_uploads(), Vec::<String>::new(), "the orphan was aborted, the new run completed");
    assert_eq!(journals(&s), Vec::<PathBuf>::new(), "nothing left in the journal");
    let r = s.mx(&["backup", "list", "--json"]);
    let listed = r.json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{}", r.all());
    assert_eq!(listed[0]["status"], "ok", "{}", r.all());
}

#[test]
fn the_daemon_aborts_at_start_the_upload_a_killed_run_left() {
    let pg = PgCluster::start();
    big_database(&pg, "big", 600_000);
    let s = Setup::new(Some(&pg), "  databases: [big]\n  globals: false\n");
    let orphan = kill_mid_upload(&s);
    let err = s.file.path.parent().unwrap().join("daemon.err");
    let mut daemon = std::process::Command::new(env!("CARGO_BIN_EXE_mxwarden"))
        .args(["--config", s.file.path.to_str().unwrap(), "-v", "run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("start mxwarden run");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !s.s3.unfinished_uploads().is_empty() || !journals(&s).is_empty() {
        if Instant::now() > deadline || daemon.try_wait().unwrap().is_some() {
            let _ = daemon.kill();
            let _ = daemon.wait();
            panic!(
                "the daemon did not abort {orphan}: {:?} {:?}\n{}",
                s.s3.unfinished_uploads(),
                journals(&s),
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::process::Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status();
    let _ = daemon.wait();
    let log = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(log.contains("Aborted an upload an earlier run left unfinished") && log.contains(&orphan), "{log}");
    assert!(!log.contains(&s.s3.secret_key), "{log}");
    let r = s.mx(&["backup", "list", "--json"]);
    assert_eq!(r.json(), serde_json::json!([]), "still nothing listed: {}", r.all());
}

#[test]
fn a_flipped_byte_in_the_bucket_fails_verify_and_restore() {
    let pg = cluster_with_data();
    let s = Setup::new(Some(&pg), "  databases: [matrix]\n");
    let r = s.mx(&["backup", "run", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let m = r.json();
    let id = m["id"].as_str().unwrap().to_string();
    let matrix = m["items"].as_array().unwrap().iter().find(|i| i["name"] == "matrix").unwrap().clone();
    let key = format!("{id}/{}", matrix["file"].as_str().unwrap());
    let r = s.mx(&["backup", "verify", &id]);
    assert_eq!(r.code, 0, "{}", r.all());

    flip(&s.prefix_dir().join(&key));
    let r = s.mx(&["backup", "verify", &id]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stdout.contains(&key) && r.stdout.contains("SHA-256 mismatch"), "{}", r.all());
    let r = s.mx(&["restore", &id, "--db", "matrix", "--into", "never_created", "--identity", s.identity()]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert_eq!(pg.psql("postgres", "SELECT count(*) FROM pg_database WHERE datname = 'never_created'"), "0");
}

#[test]
fn prune_over_a_faked_calendar_deletes_exactly_the_expired_runs_in_the_bucket() {
    let s = Setup::new(None, "  retention: { daily: 3, weekly: 2, monthly: 3 }\n");
    let start: jiff::Timestamp = "2026-01-01T02:00:00Z".parse().unwrap();
    for day in 0..105 {
        fake_run(&s.prefix_dir(), start + jiff::SignedDuration::from_hours(24 * day), day != 50);
    }
    fake_run(&s.prefix_dir(), "2026-04-15T14:00:00Z".parse().unwrap(), false);
    // Not ours: outside the prefix, and a stray file directly under it.
    std::fs::create_dir_all(s.s3.root.join(BUCKET).join("other")).unwrap();
    std::fs::write(s.s3.root.join(BUCKET).join("other/20260101T020000Z"), b"keep").unwrap();
    let want = [
        "20260228T020000Z",
        "20260331T020000Z",
        "20260412T020000Z",
        "20260413T020000Z",
        "20260414T020000Z",
        "20260415T020000Z",
        "20260415T140000Z",
    ];
    let r = s.mx(&["backup", "prune", "--apply"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("deleted 99 runs"), "{}", r.all());
    let mut runs: Vec<String> =
        s.s3.objects(BUCKET, PREFIX).iter().filter_map(|k| k.split('/').next().map(str::to_string)).collect();
    runs.dedup();
    assert_eq!(runs, want, "the bucket holds exactly the kept runs");
    assert!(s.s3.root.join(BUCKET).join("other/20260101T020000Z").exists(), "outside the prefix is untouched");
    let r = s.mx(&["backup", "list", "--json"]);
    let listed: Vec<String> =
        r.json().as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(listed, want);
}

#[test]
fn wrong_credentials_fail_naming_the_bucket_and_never_the_secret() {
    let pg = cluster_with_data();
    let wrong = "WRONG-secret-value-98765";
    let s = Setup::with_secret(Some(&pg), "  databases: [mas]\n", Some(wrong));
    // A key the bucket refuses is a config error for `list` (2); a failed run is 1.
    for (args, code) in [(&["backup", "list"][..], 2), (&["backup", "run"][..], 1)] {
        let r = s.mx(args);
        assert_eq!(r.code, code, "{args:?}: {}", r.all());
        assert!(r.all().contains(&format!("s3://{BUCKET}/{PREFIX}")), "{args:?} names the bucket: {}", r.all());
        assert!(r.all().contains("403") || r.all().contains("Signature"), "{args:?} says why: {}", r.all());
        assert!(!r.all().contains(wrong), "{args:?} shows the secret: {}", r.all());
    }
    assert!(s.s3.objects(BUCKET, "").is_empty(), "nothing was stored");
}

#[test]
fn dir_and_to_together_are_refused_with_file_line_and_key() {
    let file = config(
        "backup:\n  dir: /srv/backups\n  to: \"s3://bucket-a/x\"\n  secret_access_key: \"NEVER-shown-123\"\n  \
         encrypt_to: [\"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\"]\n  files: { k: [\"/etc/hostname\"] }\n",
    );
    let r = run(&["config", "check", file.path.to_str().unwrap()], &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("mxwarden.yaml:3:") && r.stderr.contains("backup.to"), "{}", r.all());
    assert!(r.stderr.contains("not both"), "{}", r.all());
    assert!(!r.all().contains("NEVER-shown-123"), "{}", r.all());
    let file = config(
        "backup:\n  to: \"s3://Bad_Bucket/x\"\n  encrypt_to: [\"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\"]\n  \
         files: { k: [\"/etc/hostname\"] }\n",
    );
    let r = run(&["config", "check", file.path.to_str().unwrap()], &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains(":2:") && r.stderr.contains("not a bucket name"), "{}", r.all());
    let file = config(
        "backup:\n  to: \"s3://bucket-a/x\"\n  access_key_id: AKID\n  secret_access_key: \"s3cr3t-value\"\n  \
         drill: \"0 4 1 * *\"\n  encrypt_to: [\"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\"]\n  \
         files: { k: [\"/etc/hostname\"] }\n",
    );
    let r = run(&["config", "check", file.path.to_str().unwrap()], &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains(":5:") && r.stderr.contains("backup.drill: the drill decrypts"), "{}", r.all());
    assert!(!r.all().contains("s3cr3t-value"), "{}", r.all());
}

#[test]
fn the_restore_drill_passes_on_a_real_cluster_and_fails_when_a_tables_rows_differ() {
    let pg = cluster_with_data();
    let s = Setup::new(Some(&pg), "  databases: [matrix, mas]\n  drill: \"0 4 1 * *\"\n");
    // The daemon's drill reads the identity from the config.
    let text = std::fs::read_to_string(&s.file.path).unwrap()
        + &format!("  drill_identity_file: {}\n", s.identity_file.display());
    std::fs::write(&s.file.path, text).unwrap();
    let r = run(&["config", "check", s.file.path.to_str().unwrap()], &[]);
    assert_eq!(r.code, 0, "{}", r.all());

    let r = s.mx(&["backup", "drill"]);
    assert_eq!(r.code, 2, "nothing to drill yet: {}", r.all());
    assert!(r.stderr.contains("no good backup"), "{}", r.all());
    let r = s.mx(&["backup", "run", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let id = r.json()["id"].as_str().unwrap().to_string();

    let r = s.mx(&["backup", "drill", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let report = r.json();
    assert_eq!(report["ok"], true, "{}", r.stdout);
    let dbs = report["databases"].as_array().unwrap();
    let names: Vec<&str> = dbs.iter().map(|d| d["database"].as_str().unwrap()).collect();
    assert_eq!(names, ["matrix", "mas"], "{}", r.stdout);
    assert_eq!(dbs[0]["rows"], 5000 + 12345, "{}", r.stdout);
    assert_eq!(dbs[0]["tables"], 3, "{}", r.stdout);
    assert_eq!(dbs[1]["rows"], 777, "{}", r.stdout);
    for d in dbs {
        let scratch = d["scratch"].as_str().unwrap();
        assert_eq!(
            pg.psql("postgres", &format!("SELECT count(*) FROM pg_database WHERE datname = '{scratch}'")),
            "0",
            "{scratch} was dropped"
        );
    }
    let stored = s.s3.objects(BUCKET, PREFIX);
    assert!(stored.contains(&format!("{id}/drill.json")), "the outcome is kept with the run: {stored:?}");

    // The manifest says the dump had one room more than the restored copy has.
    let manifest_path = s.prefix_dir().join(&id).join("manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let matrix = manifest["items"].as_array_mut().unwrap().iter_mut().find(|i| i["name"] == "matrix").unwrap();
    assert_eq!(matrix["row_counts"]["public.rooms"], 5000);
    matrix["row_counts"]["public.rooms"] = 5001.into();
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();

    let r = s.mx(&["backup", "drill"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stdout.contains("public.rooms: restored 5000, at dump time 5001"), "{}", r.all());
    assert!(r.stdout.contains("restore drill FAILED"), "{}", r.all());
    let drill: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.prefix_dir().join(&id).join("drill.json")).unwrap()).unwrap();
    assert_eq!(drill["ok"], false, "the failure is recorded for the rules: {drill}");
}

impl Setup {
    /// Points the config at `endpoint` instead of the server itself.
    fn through(&self, endpoint: &str) {
        let text = std::fs::read_to_string(&self.file.path).unwrap().replace(&self.s3.endpoint(), endpoint);
        std::fs::write(&self.file.path, text).unwrap();
    }
}

#[test]
fn a_part_cut_off_mid_upload_is_retried_and_the_backup_is_whole() {
    let pg = PgCluster::start();
    big_database(&pg, "big", 250_000);
    let s = Setup::new(Some(&pg), "  databases: [big]\n  globals: false\n");
    let proxy = s.s3.proxy(crate::support::s3::ProxyFaults {
        cut_target: Some("partNumber=2".into()),
        cut: 1,
        refuse_writes: None,
    });
    s.through(&proxy.endpoint);
    let r = s.mx(&["backup", "run", "--json"]);
    assert_eq!(r.code, 0, "the cut part was sent again: {}", r.all());
    assert_eq!(proxy.cuts.load(std::sync::atomic::Ordering::SeqCst), 1, "one part was cut off");
    assert!(s.s3.unfinished_uploads().is_empty(), "{:?}", s.s3.unfinished_uploads());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let r = s.mx(&["backup", "verify", &id, "--identity", s.identity()]);
    assert_eq!(r.code, 0, "{}", r.all());
    let r = s.mx(&["restore", &id, "--db", "big", "--into", "big_back", "--identity", s.identity()]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        pg.psql("big_back", "SELECT md5(string_agg(body, '' ORDER BY id)) FROM blobs"),
        pg.psql("big", "SELECT md5(string_agg(body, '' ORDER BY id)) FROM blobs"),
        "the same rows"
    );
}

#[test]
fn a_refusing_bucket_fails_the_run_with_its_reason_and_leaves_earlier_backups_alone() {
    let pg = cluster_with_data();
    let s = Setup::new(Some(&pg), "  databases: [matrix, mas]\n");
    let r = s.mx(&["backup", "run", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let first = r.json()["id"].as_str().unwrap().to_string();
    let before = s.s3.objects(BUCKET, PREFIX);

    let proxy = s.s3.proxy(crate::support::s3::ProxyFaults {
        refuse_writes: Some((403, "QuotaExceeded".into(), "The bucket is over its storage quota".into())),
        ..Default::default()
    });
    s.through(&proxy.endpoint);
    let r = s.mx(&["backup", "run"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.all().contains("QuotaExceeded") && r.all().contains("over its storage quota"),
        "the server's reason: {}",
        r.all()
    );
    assert!(r.all().contains(&format!("s3://{BUCKET}/{PREFIX}")), "{}", r.all());
    s.no_secret(&r);
    assert!(proxy.refused.load(std::sync::atomic::Ordering::SeqCst) > 0);
    assert_eq!(s.s3.objects(BUCKET, PREFIX), before, "nothing in the bucket changed");
    assert!(s.s3.unfinished_uploads().is_empty(), "{:?}", s.s3.unfinished_uploads());
    let r = s.mx(&["backup", "list", "--json"]);
    let listed: Vec<String> =
        r.json().as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(listed, std::slice::from_ref(&first), "the earlier backup is still there: {}", r.all());
    let r = s.mx(&["backup", "verify", &first, "--identity", s.identity()]);
    assert_eq!(r.code, 0, "and still good: {}", r.all());
}

#[test]
fn a_broken_line_beside_the_secret_key_shows_no_secret() {
    let secret = "LEAKs3-secret-5e6f7a";
    for broken in [
        format!("  secret_access_keyx: \"{secret}\"\n"),  // a misspelt key
        format!("  secret_access_key: [\"{secret}\"]\n"), // a wrong type
        format!("  secret_access_key: \"{secret}\n"),     // an unterminated quote
    ] {
        let file = config(&format!(
            "backup:\n  to: \"s3://bucket-a/x\"\n  endpoint: http://127.0.0.1:1\n  path_style: true\n  access_key_id: AKID\n{broken}  \
             encrypt_to: [\"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\"]\n  files: {{ k: [\"/etc/hostname\"] }}\n"
        ));
        for args in [
            &["config", "check", file.path.to_str().unwrap()][..],
            &["-vv", "config", "show", "--config", file.path.to_str().unwrap()][..],
        ] {
            let r = run(args, &[]);
            assert_eq!(r.code, 2, "{broken}: {}", r.all());
            assert!(!r.all().contains(&secret[4..]), "{broken}: the secret was shown: {}", r.all());
        }
    }
}

#[test]
fn the_daemon_drills_on_schedule_and_fires_backup_drill_failed_when_rows_differ() {
    let pg = cluster_with_data();
    let s = Setup::new(Some(&pg), "  databases: [mas]\n  globals: false\n  drill: \"*/3 * * * * *\"\n");
    let text = std::fs::read_to_string(&s.file.path).unwrap();
    std::fs::write(&s.file.path, format!("{text}  drill_identity_file: {}\n", s.identity())).unwrap();
    let r = s.mx(&["backup", "run", "--json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let id = r.json()["id"].as_str().unwrap().to_string();
    // The manifest says the dump had one session more than a restore gives.
    let manifest_path = s.prefix_dir().join(&id).join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path).unwrap();
    assert!(text.contains("\"public.sessions\": 777"), "{text}");
    std::fs::write(&manifest_path, text.replace("\"public.sessions\": 777", "\"public.sessions\": 778")).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&s.file.path).unwrap();
    std::fs::write(
        &s.file.path,
        format!("defaults: {{ interval: 1s }}\nstore: {}\n{text}", dir.path().join("state.db").display(),),
    )
    .unwrap();
    let mut daemon = std::process::Command::new(env!("CARGO_BIN_EXE_mxwarden"))
        .args(["--config", s.file.path.to_str().unwrap(), "run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("daemon.err")).unwrap())
        .spawn()
        .expect("start mxwarden run");
    let deadline = Instant::now() + Duration::from_secs(90);
    let fired = loop {
        let r = s.mx(&["alerts", "--json"]);
        if r.code <= 1
            && !r.stdout.is_empty()
            && let Some(a) = r
                .json()
                .as_array()
                .and_then(|a| a.iter().find(|x| x["alert"] == "BackupDrillFailed" && x["state"] == "firing").cloned())
        {
            break a;
        }
        if Instant::now() > deadline {
            let _ = daemon.kill();
            let err = std::fs::read_to_string(dir.path().join("daemon.err")).unwrap_or_default();
            panic!("BackupDrillFailed never fired: {}\ndaemon:\n{err}", r.all());
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let _ = std::process::Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status();
    let _ = daemon.wait();
    assert_eq!(fired["labels"]["severity"], "critical", "{fired}");
    let drill: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.prefix_dir().join(&id).join("drill.json")).unwrap()).unwrap();
    assert_eq!(drill["ok"], false, "{drill}");
    assert!(
        drill["databases"][0]["problem"].as_str().unwrap().contains("public.sessions: restored 777, at dump time 778"),
        "{drill}"
    );
    assert_eq!(
        pg.psql("postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE 'mxwarden_drill_%'"),
        "0",
        "no scratch database left behind"
    );
}

#[test]
fn the_daemon_fires_backup_failed_when_the_bucket_refuses_every_write() {
    let pg = cluster_with_data();
    let s = Setup::new(Some(&pg), "  databases: [mas]\n  globals: false\n  schedule: \"*/2 * * * * *\"\n");
    let proxy = s.s3.proxy(crate::support::s3::ProxyFaults {
        refuse_writes: Some((403, "AccessDenied".into(), "Access Denied".into())),
        ..Default::default()
    });
    s.through(&proxy.endpoint);
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&s.file.path).unwrap();
    std::fs::write(
        &s.file.path,
        format!("defaults: {{ interval: 1s }}\nstore: {}\n{text}", dir.path().join("state.db").display()),
    )
    .unwrap();
    let mut daemon = std::process::Command::new(env!("CARGO_BIN_EXE_mxwarden"))
        .args(["--config", s.file.path.to_str().unwrap(), "run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("daemon.err")).unwrap())
        .spawn()
        .expect("start mxwarden run");
    let deadline = Instant::now() + Duration::from_secs(90);
    let fired = loop {
        let r = s.mx(&["alerts", "--json"]);
        if r.code <= 1
            && !r.stdout.is_empty()
            && let Some(a) = r.json().as_array().and_then(|a| {
                a.iter()
                    .find(|x| {
                        x["alert"] == "BackupFailed" && x["state"] == "firing" && x["labels"]["database"] == "mas"
                    })
                    .cloned()
            })
        {
            break a;
        }
        if Instant::now() > deadline {
            let _ = daemon.kill();
            let err = std::fs::read_to_string(dir.path().join("daemon.err")).unwrap_or_default();
            panic!("BackupFailed never fired: {}\ndaemon:\n{err}", r.all());
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let _ = std::process::Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status();
    let _ = daemon.wait();
    assert_eq!(
        fired["labels"]["severity"], "critical",
        "a first run that stored nothing still names the item: {fired}"
    );
    assert!(proxy.refused.load(std::sync::atomic::Ordering::SeqCst) > 0);
    let err = std::fs::read_to_string(dir.path().join("daemon.err")).unwrap_or_default();
    assert!(err.contains("AccessDenied"), "the server's reason is logged: {err}");
    assert!(!err.contains(&s.s3.secret_key), "{err}");
    assert!(s.s3.unfinished_uploads().is_empty(), "{:?}", s.s3.unfinished_uploads());
}

/// The `backup` findings of `doctor --json`.
fn doctor_backup(s: &Setup) -> (Run, Vec<serde_json::Value>) {
    let r = s.mx(&["doctor", "--json"]);
    let found = r.json()["findings"]
        .as_array()
        .map(|all| all.iter().filter(|f| f["area"] == "backup" && f["check"] == "writable").cloned().collect())
        .unwrap_or_default();
    (r, found)
}

#[test]
fn doctor_proves_the_bucket_takes_a_write_and_names_a_refused_key_without_the_secret() {
    let s = Setup::new(None, "");
    let (r, found) = doctor_backup(&s);
    assert_eq!(found.len(), 1, "one backup destination finding: {}", r.all());
    assert_eq!(found[0]["outcome"], "pass", "{}", r.all());
    assert!(found[0]["detail"].as_str().unwrap().contains(&format!("s3://{BUCKET}/{PREFIX}")), "{}", r.all());
    assert!(s.s3.objects(BUCKET, "").is_empty(), "the probe object was deleted: {:?}", s.s3.objects(BUCKET, ""));

    let wrong = "WRONG-secret-value-13579";
    let s = Setup::with_secret(None, "", Some(wrong));
    let (r, found) = doctor_backup(&s);
    assert_eq!(r.code, 1, "{}", r.all());
    assert_eq!(found[0]["outcome"], "fail", "{}", r.all());
    assert!(found[0]["detail"].as_str().unwrap().contains(&format!("s3://{BUCKET}/{PREFIX}")), "{}", r.all());
    assert!(found[0]["fix"].as_str().unwrap().contains("PutObject"), "{}", r.all());
    assert!(!r.all().contains(wrong), "the secret never shows: {}", r.all());
}
