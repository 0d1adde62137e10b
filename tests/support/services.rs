//! Real services for the integration tests, started by the harness itself: a throw-away
//! PostgreSQL cluster, a real Synapse from PyPI (on SQLite or on that cluster), and an OIDC
//! provider standing in for MAS discovery. Every process runs under `scripts/lib/guard.py`
//! with a pipe as stdin that we never close ourselves: when the test process ends, however it
//! ends, the pipe closes and guard stops the service. A service that cannot start fails the
//! test loudly with the tail of its log; nothing is ever skipped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where the Python venvs live (installed by `scripts/install-test-deps.sh`).
pub fn cache() -> PathBuf {
    std::env::var_os("MXWARDEN_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".cache/mxwarden")
    })
}

fn venv_bin(venv: &str, program: &str) -> PathBuf {
    let path = cache().join(venv).join("bin").join(program);
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-test-deps.sh (it installs the test services)",
        path.display()
    );
    path
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// A fresh directory under /tmp for one service, named after this test process.
fn scratch_dir(what: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    static CLEANED: OnceLock<()> = OnceLock::new();
    CLEANED.get_or_init(remove_stale_dirs);
    let dir =
        PathBuf::from(format!("/tmp/mxwarden-test-{}-{}-{what}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch dir");
    dir
}

/// Removes scratch dirs left by test processes that no longer run.
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir("/tmp") else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("mxwarden-test-") else { continue };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| p != std::process::id() && !Path::new(&format!("/proc/{p}")).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("(no log at {}: {e})", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A process under guard.py.
pub struct Service {
    name: String,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    /// Its log file.
    pub log: PathBuf,
}

impl Service {
    /// Starts `program args` under guard.py, logging to `log`.
    pub fn spawn(name: &str, log: PathBuf, stop_signal: &str, program: &Path, args: &[&str]) -> Self {
        let child = Command::new("python3")
            .arg(repo().join("scripts/lib/guard.py"))
            .args(["--stop-signal", stop_signal, "--log"])
            .arg(&log)
            .arg("--")
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let mut service = Self { name: name.to_string(), child: Some(child), stdin: None, log };
        service.stdin = service.child.as_mut().and_then(|c| c.stdin.take());
        service
    }

    /// Waits until `ready` says yes, or fails with the service's log.
    pub fn wait_until(&mut self, within: Duration, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if ready() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "{} exited ({status}) before it was ready; log {}:\n{}",
                    self.name,
                    self.log.display(),
                    log_tail(&self.log)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{} was not ready within {within:?}; log {}:\n{}", self.name, self.log.display(), log_tail(&self.log));
    }

    /// Stops the service and waits for it.
    pub fn stop(&mut self) {
        drop(self.stdin.take());
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A plain HTTP/1.0 GET over a socket: (status, body), or None when nothing answers.
pub fn http_get(url: &str) -> Option<(u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut stream = TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    Some((status, body))
}

/// A throw-away PostgreSQL 15 cluster.
pub struct PgCluster {
    /// Its directory (socket dir; data in `data/`).
    pub dir: PathBuf,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    service: Service,
}

impl PgCluster {
    /// initdb + start; ready when `SELECT 1` answers.
    pub fn start() -> Self {
        let dir = scratch_dir("pg");
        let port = free_port();
        let init = Command::new("bash")
            .arg(repo().join("scripts/lib/pg-init.sh"))
            .arg(&dir)
            .arg(port.to_string())
            .output()
            .expect("run pg-init.sh");
        assert!(init.status.success(), "pg-init.sh failed:\n{}", String::from_utf8_lossy(&init.stderr));
        let postgres = PathBuf::from("/usr/lib/postgresql/15/bin/postgres");
        let data = dir.join("data");
        let data = data.to_str().expect("utf-8 path");
        let mut service = if is_root() {
            Service::spawn(
                "postgres",
                dir.join("server.log"),
                "INT",
                Path::new("/usr/sbin/runuser"),
                &["-u", "postgres", "--", postgres.to_str().unwrap(), "-D", data],
            )
        } else {
            Service::spawn("postgres", dir.join("server.log"), "INT", &postgres, &["-D", data])
        };
        let cluster_dir = dir.clone();
        service.wait_until(Duration::from_secs(30), || psql_ok(&cluster_dir, port, "postgres", "SELECT 1"));
        Self { dir, port, service }
    }

    /// Runs SQL with psql, panicking with its error output on failure; returns stdout.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = psql_command(&self.dir, self.port, db, sql).output().expect("run psql");
        assert!(out.status.success(), "psql {sql:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A libpq-style DSN for `db`.
    pub fn dsn(&self, db: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.service.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

fn psql_command(dir: &Path, port: u16, db: &str, sql: &str) -> Command {
    let mut c = Command::new("psql");
    c.args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h"]).arg(dir).args([
        "-p",
        &port.to_string(),
        "-U",
        "postgres",
        "-d",
        db,
        "-c",
        sql,
    ]);
    c
}

fn psql_ok(dir: &Path, port: u16, db: &str, sql: &str) -> bool {
    psql_command(dir, port, db, sql).stderr(Stdio::null()).stdout(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// A real Synapse homeserver.
pub struct Synapse {
    /// `http://127.0.0.1:PORT` (client and federation).
    pub base_url: String,
    /// `http://127.0.0.1:MPORT/_synapse/metrics`.
    pub metrics_url: String,
    /// An admin's access token.
    pub admin_token: String,
    /// Its directory.
    pub dir: PathBuf,
    port: u16,
    service: Service,
}

impl Synapse {
    /// A Synapse on SQLite.
    pub fn start_sqlite() -> Self {
        Self::start(None)
    }

    /// A Synapse on `pg`, in database `db` (created here).
    pub fn start_on(pg: &PgCluster, db: &str) -> Self {
        Self::start(Some((pg, db)))
    }

    fn start(pg: Option<(&PgCluster, &str)>) -> Self {
        let dir = scratch_dir("synapse");
        let (port, metrics_port) = (free_port(), free_port());
        let mut init = Command::new("bash");
        init.arg(repo().join("scripts/lib/synapse-init.sh"))
            .arg(&dir)
            .arg(port.to_string())
            .arg(metrics_port.to_string());
        if let Some((pg, db)) = pg {
            init.arg(&pg.dir).arg(pg.port.to_string()).arg(db);
        }
        let out = init.output().expect("run synapse-init.sh");
        assert!(out.status.success(), "synapse-init.sh failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let python = venv_bin("venv-synapse", "python");
        let config = dir.join("homeserver.yaml");
        let mut service = Service::spawn(
            "synapse",
            dir.join("stdout.log"),
            "TERM",
            &python,
            &["-m", "synapse.app.homeserver", "-c", config.to_str().unwrap()],
        );
        let base_url = format!("http://127.0.0.1:{port}");
        let health = format!("{base_url}/health");
        service.wait_until(Duration::from_secs(90), || http_get(&health).is_some_and(|(s, b)| s == 200 && b == "OK"));
        let secret = std::fs::read_to_string(dir.join("shared_secret")).expect("shared secret").trim().to_string();
        let token = Command::new("python3")
            .arg(repo().join("scripts/lib/synapse-admin-token.py"))
            .args([&base_url, &secret, "mxwarden-admin", "Adm1n-pass-for-tests"])
            .output()
            .expect("run synapse-admin-token.py");
        assert!(token.status.success(), "admin registration failed:\n{}", String::from_utf8_lossy(&token.stderr));
        let admin_token = String::from_utf8_lossy(&token.stdout).trim().to_string();
        Self {
            base_url,
            metrics_url: format!("http://127.0.0.1:{metrics_port}/_synapse/metrics"),
            admin_token,
            dir,
            port,
            service,
        }
    }

    /// Stops Synapse and waits until its port refuses connections.
    pub fn stop(&mut self) {
        self.service.stop();
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "Synapse still listens after stop");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        self.service.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The OIDC provider standing in for MAS's discovery (PyPI `oidc-provider-mock`).
pub struct OidcProvider {
    /// Its issuer, `http://127.0.0.1:PORT`.
    pub issuer: String,
    _service: Service,
}

impl OidcProvider {
    /// Starts it; ready when discovery answers.
    pub fn start() -> Self {
        let dir = scratch_dir("oidc");
        let port = free_port();
        let program = venv_bin("venv-tools", "oidc-provider-mock");
        let mut service = Service::spawn(
            "oidc-provider-mock",
            dir.join("oidc.log"),
            "TERM",
            &program,
            &["-H", "127.0.0.1", "-p", &port.to_string()],
        );
        let issuer = format!("http://127.0.0.1:{port}");
        let discovery = format!("{issuer}/.well-known/openid-configuration");
        service.wait_until(Duration::from_secs(30), || http_get(&discovery).is_some_and(|(s, _)| s == 200));
        Self { issuer, _service: service }
    }
}

/// Services shared by the whole test run: PostgreSQL, Synapse on it, and the OIDC provider.
pub struct SharedStack {
    /// The cluster.
    pub pg: PgCluster,
    /// Synapse on database `synapse` of `pg`.
    pub synapse: Synapse,
    /// The OIDC provider.
    pub oidc: OidcProvider,
}

/// Starts the shared services once per test binary.
pub fn shared() -> &'static SharedStack {
    static STACK: OnceLock<SharedStack> = OnceLock::new();
    STACK.get_or_init(|| {
        let pg = PgCluster::start();
        let oidc = OidcProvider::start();
        let synapse = Synapse::start_on(&pg, "synapse");
        SharedStack { pg, synapse, oidc }
    })
}
