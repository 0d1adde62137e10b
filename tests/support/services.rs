//! Real services for the integration tests, started by the harness itself: a throw-away
//! PostgreSQL 15 cluster, a real Synapse from PyPI (on SQLite or on that cluster), and an OIDC
//! provider (PyPI `oidc-provider-mock`) standing in for MAS's discovery.
//!
//! Every process runs under `scripts/lib/guard.py` with a pipe as stdin that only we hold (Rust
//! creates it close-on-exec, so no other child inherits it). `stop` and `Drop` close it and
//! wait; and when the test process ends however it ends (a panic, `abort`, SIGKILL), the kernel
//! closes it, and guard stops the service's whole process group and waits for every
//! descendant. The stack from [`shared`] lives in a static, which is never dropped: an `atexit`
//! hook stops it, and removes its directories, before the process exits.
//!
//! A service that cannot start fails the test loudly, with the tail of its logs; nothing is
//! ever skipped. A missing venv says to run `scripts/install-test-deps.sh`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where the Python venvs live: `${MXWARDEN_CACHE:-$HOME/.cache/mxwarden}`.
pub fn cache() -> PathBuf {
    std::env::var_os("MXWARDEN_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache/mxwarden")
    })
}

/// `$CACHE/<venv>/bin/<program>`, or a panic that says how to install it.
pub fn venv_bin(venv: &str, program: &str) -> PathBuf {
    let path = cache().join(venv).join("bin").join(program);
    assert!(
        path.is_file() && cache().join(venv).join(".installed").is_file(),
        "{} is missing or incomplete: run scripts/install-test-deps.sh (it installs the services the tests need)",
        path.display()
    );
    path
}

/// A free TCP port on 127.0.0.1 (free now: the service binds it a moment later).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free loopback port").port()
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(1)).is_ok()
}

/// A plain HTTP/1.0 GET over a socket, for readiness checks: `(status, body)`, or `None` when
/// nothing answers (or not HTTP). Only `http://host:port/path` URLs; 5 s timeouts.
pub fn http_get(url: &str) -> Option<(u16, String)> {
    http_get_with(url, &[])
}

/// [`http_get`] with extra request headers, e.g. `[("Authorization", "Bearer …")]`.
pub fn http_get_with(url: &str, headers: &[(&str, &str)]) -> Option<(u16, String)> {
    http_request("GET", url, headers)
}

/// One HTTP/1.0 request without a body: `(status, body)`, `None` when nothing answered.
pub fn http_request(method: &str, url: &str, headers: &[(&str, &str)]) -> Option<(u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let addr: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(host).ok()?.next()?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.strip_prefix("HTTP/1.")?.get(2..)?.split_whitespace().next()?.parse().ok()?;
    Some((status, body.to_string()))
}

/// The PostgreSQL 15 server on data directory `data`, as the `postgres` user when we are root.
fn postmaster(data: &Path) -> Command {
    const POSTGRES: &str = "/usr/lib/postgresql/15/bin/postgres";
    let mut c = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", POSTGRES]);
        c
    } else {
        Command::new(POSTGRES)
    };
    c.arg("-D").arg(data);
    c
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Uid:").map(|u| u.split_whitespace().nth(1) == Some("0"))))
        .unwrap_or(false)
}

/// A fresh directory `/tmp/mxwarden-test-<pid>-<n>-<what>`. The first call also removes the
/// directories of earlier test processes that are gone (a static's services, or an aborted run).
pub fn scratch_dir(what: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    static CLEANED: OnceLock<()> = OnceLock::new();
    CLEANED.get_or_init(remove_stale_dirs);
    let dir =
        PathBuf::from(format!("/tmp/mxwarden-test-{}-{}-{what}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir("/tmp") else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("mxwarden-test-") else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read: {e})"),
    }
}

/// A process under `scripts/lib/guard.py`.
pub struct Service {
    /// A name for messages.
    pub name: String,
    /// guard's log: the service's stdout and stderr, and guard's own lines.
    pub log: PathBuf,
    /// More logs to show when it fails (e.g. Synapse's own `homeserver.log`).
    pub extra_logs: Vec<PathBuf>,
    running: Mutex<Running>,
}

struct Running {
    guard: Option<Child>,
    /// The pipe guard.py watches: dropping it stops the service.
    stdin: Option<ChildStdin>,
}

impl Service {
    /// Starts `cmd` (its program, arguments, environment and directory) under guard.py, which
    /// appends its output to `log` and stops it with `stop_signal` ("TERM" or "INT").
    pub fn spawn(name: &str, log: PathBuf, stop_signal: &str, cmd: &Command) -> Self {
        let mut guard = Command::new("python3");
        guard
            .arg(repo().join("scripts/lib/guard.py"))
            .args(["--stop-signal", stop_signal, "--log"])
            .arg(&log)
            .arg("--")
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (key, value) in cmd.get_envs() {
            match value {
                Some(value) => guard.env(key, value),
                None => guard.env_remove(key),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            guard.current_dir(dir);
        }
        let mut child = guard.spawn().unwrap_or_else(|e| panic!("cannot start python3 guard.py for {name}: {e}"));
        let stdin = child.stdin.take();
        let running = Mutex::new(Running { guard: Some(child), stdin });
        Self { name: name.to_string(), log, extra_logs: Vec::new(), running }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// guard.py's pid, until the service has been stopped.
    pub fn guard_pid(&self) -> Option<u32> {
        self.running().guard.as_ref().map(Child::id)
    }

    /// Whether the service (its guard) still runs.
    pub fn is_running(&self) -> bool {
        self.running().guard.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The last lines of its logs, for failure messages.
    pub fn log_tail(&self) -> String {
        let mut out = format!("--- {} (last 40 lines):\n{}", self.log.display(), tail(&self.log, 40));
        for log in &self.extra_logs {
            out.push_str(&format!("\n--- {} (last 40 lines):\n{}", log.display(), tail(log, 40)));
        }
        out
    }

    /// Polls `ready` every 100 ms until it says yes; panics with the logs when the service
    /// exits first or `within` passes.
    pub fn wait_until(&self, within: Duration, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + within;
        loop {
            if ready() {
                return;
            }
            let exited = self.running().guard.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!("{} exited ({status}) before it was ready\n{}", self.name, self.log_tail());
            }
            if Instant::now() >= deadline {
                panic!("{} was not ready within {within:?}\n{}", self.name, self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Closes guard's stdin: guard sends the stop signal (SIGKILL 10 s later) and exits when
    /// every process of the service is gone. Returns at once; see [`Service::wait`].
    pub fn begin_stop(&self) {
        drop(self.running().stdin.take());
    }

    /// Stops it if [`Service::begin_stop`] has not, and waits until guard has exited, which it
    /// does once every process of the service is gone.
    pub fn wait(&self) {
        self.begin_stop();
        let guard = self.running().guard.take();
        if let Some(mut guard) = guard {
            let _ = guard.wait();
        }
    }

    /// Stops the service and waits until all of its processes are gone.
    pub fn stop(&mut self) {
        self.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A throw-away PostgreSQL 15 cluster (`scripts/lib/pg-init.sh`), run in the foreground as the
/// `postgres` OS user when we are root. Superuser `postgres`, trust auth, pg_stat_statements
/// preloaded (create the extension per database), max_connections 50.
pub struct PgCluster {
    /// Its directory (removed on drop); the data directory is `dir/data`.
    pub dir: PathBuf,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// The unix socket directory (same as `dir`): pass it as `-h` or `host=`.
    pub socket_dir: PathBuf,
    /// The postmaster under guard.py (stopped with SIGINT: fast shutdown).
    pub service: Service,
}

impl PgCluster {
    /// initdb, then start; ready when `SELECT 1` answers (about 1 s).
    pub fn start() -> Self {
        let dir = scratch_dir("pg");
        let port = free_port();
        let init = Command::new("bash")
            .arg(repo().join("scripts/lib/pg-init.sh"))
            .arg(&dir)
            .arg(port.to_string())
            .output()
            .expect("run scripts/lib/pg-init.sh");
        assert!(
            init.status.success(),
            "scripts/lib/pg-init.sh {} {port} failed ({}):\n{}{}",
            dir.display(),
            init.status,
            String::from_utf8_lossy(&init.stdout),
            String::from_utf8_lossy(&init.stderr)
        );
        let data = dir.join("data");
        let cmd = postmaster(&data);
        let service = Service::spawn("postgres", dir.join("server.log"), "INT", &cmd);
        service.wait_until(Duration::from_secs(60), || {
            psql_command(&dir, port, "postgres", "SELECT 1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        Self { socket_dir: dir.clone(), dir, port, service }
    }

    /// Runs `sql` in database `db` with `psql -X -q -At -v ON_ERROR_STOP=1` over the unix
    /// socket; returns its stdout, trimmed. Panics with psql's stderr on failure.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = psql_command(&self.socket_dir, self.port, db, sql).output().expect("run psql");
        assert!(
            out.status.success(),
            "psql -d {db} -c {sql:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A libpq URL for `db` over TCP: `postgresql://postgres@127.0.0.1:PORT/db`.
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

fn psql_command(socket_dir: &Path, port: u16, db: &str, sql: &str) -> Command {
    let mut c = Command::new("psql");
    c.args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h"])
        .arg(socket_dir)
        .args(["-p", &port.to_string(), "-U", "postgres", "-d", db, "-c", sql])
        .env("PGCONNECT_TIMEOUT", "5");
    c
}

/// A real Synapse homeserver (`server_name: localhost`) from `venv-synapse`, configured by
/// `scripts/lib/synapse-init.sh`: client + federation on `base_url`, metrics on `metrics_url`.
pub struct Synapse {
    /// `http://127.0.0.1:PORT`: client, federation, admin APIs and `/health`.
    pub base_url: String,
    /// `http://127.0.0.1:MPORT/_synapse/metrics`.
    pub metrics_url: String,
    /// An access token of the server admin `@mxwarden-admin:localhost`.
    pub admin_token: String,
    /// Its directory (homeserver.yaml, homeserver.log, shared_secret; removed on drop).
    pub dir: PathBuf,
    /// The client port.
    pub port: u16,
    /// The metrics port.
    pub metrics_port: u16,
    /// The registration shared secret (for more users: scripts/lib/synapse-admin-token.py).
    pub shared_secret: String,
    /// The process under guard.py.
    pub service: Service,
}

/// The admin that [`Synapse`] registers.
pub const SYNAPSE_ADMIN: (&str, &str) = ("mxwarden-admin", "Adm1n-pass-for-tests");

impl Synapse {
    /// A Synapse on SQLite.
    pub fn start_sqlite() -> Self {
        Self::spawn(None).ready()
    }

    /// A Synapse on `pg`, in database `db`, which this creates (C collation, as Synapse wants).
    pub fn start_on(pg: &PgCluster, db: &str) -> Self {
        Self::spawn(Some((pg, db))).ready()
    }

    /// Writes the config and starts the process; [`Synapse::ready`] waits for it.
    fn spawn(pg: Option<(&PgCluster, &str)>) -> Self {
        venv_bin("venv-synapse", "python"); // fail early, saying how to install it
        let dir = scratch_dir("synapse");
        let (port, metrics_port) = (free_port(), free_port());
        let mut init = Command::new("bash");
        init.arg(repo().join("scripts/lib/synapse-init.sh"))
            .arg(&dir)
            .arg(port.to_string())
            .arg(metrics_port.to_string());
        if let Some((pg, db)) = pg {
            init.arg(&pg.socket_dir).arg(pg.port.to_string()).arg(db);
        }
        let out = init.output().expect("run scripts/lib/synapse-init.sh");
        assert!(
            out.status.success(),
            "scripts/lib/synapse-init.sh failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let shared_secret =
            std::fs::read_to_string(dir.join("shared_secret")).expect("synapse-init.sh wrote shared_secret");
        let service = Self::process(&dir);
        Self {
            base_url: format!("http://127.0.0.1:{port}"),
            metrics_url: format!("http://127.0.0.1:{metrics_port}/_synapse/metrics"),
            admin_token: String::new(),
            dir,
            port,
            metrics_port,
            shared_secret: shared_secret.trim().to_string(),
            service,
        }
    }

    /// Synapse in `dir` (configured by synapse-init.sh), under guard.py.
    fn process(dir: &Path) -> Service {
        let python = venv_bin("venv-synapse", "python");
        let mut cmd = Command::new(&python);
        cmd.args(["-m", "synapse.app.homeserver", "-c"]).arg(dir.join("homeserver.yaml")).current_dir(dir);
        let mut service = Service::spawn("synapse", dir.join("stdout.log"), "TERM", &cmd);
        service.extra_logs.push(dir.join("homeserver.log"));
        service
    }

    /// Waits for `/health` to answer `OK` (2-4 s; the first start on PostgreSQL creates the
    /// schema), then gets the admin's token.
    fn ready(mut self) -> Self {
        self.wait_healthy();
        self.admin_token = self.register(SYNAPSE_ADMIN.0, SYNAPSE_ADMIN.1);
        self
    }

    fn wait_healthy(&self) {
        let health = format!("{}/health", self.base_url);
        self.service.wait_until(Duration::from_secs(120), || {
            http_get(&health).is_some_and(|(status, body)| status == 200 && body == "OK")
        });
    }

    /// Registers `user` as a server admin with the shared secret (or logs in, if it exists)
    /// and returns its access token.
    pub fn register(&self, user: &str, password: &str) -> String {
        let out = Command::new("python3")
            .arg(repo().join("scripts/lib/synapse-admin-token.py"))
            .args([&self.base_url, &self.shared_secret, user, password])
            .output()
            .expect("run scripts/lib/synapse-admin-token.py");
        let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            out.status.success() && !token.is_empty(),
            "synapse-admin-token.py {user} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.service.log_tail()
        );
        token
    }

    /// Stops Synapse and waits until its ports refuse connections.
    pub fn stop(&mut self) {
        self.service.stop();
        let deadline = Instant::now() + Duration::from_secs(15);
        while port_open(self.port) || port_open(self.metrics_port) {
            assert!(
                Instant::now() < deadline,
                "Synapse still listens 15 s after it stopped\n{}",
                self.service.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Synapse {
    /// Starts it again (after [`Synapse::stop`], or stops it first): same directory, ports,
    /// database and users, so `admin_token` stays valid. Returns when `/health` says `OK`.
    pub fn restart(&mut self) {
        self.stop();
        self.service = Self::process(&self.dir);
        self.wait_healthy();
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        self.service.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An OIDC provider (PyPI `oidc-provider-mock` 0.3.4) standing in for MAS's discovery:
/// `{issuer}/.well-known/openid-configuration`, `/oauth2/authorize`, `/oauth2/token`,
/// `/userinfo`, `/jwks`, dynamic client registration at `/oauth2/clients`.
pub struct OidcProvider {
    /// `http://127.0.0.1:PORT` (no trailing slash), as its discovery document says.
    pub issuer: String,
    /// Its directory (the log; removed on drop).
    pub dir: PathBuf,
    /// The process under guard.py.
    pub service: Service,
}

impl OidcProvider {
    /// Starts it; ready when discovery answers (under 1 s).
    pub fn start() -> Self {
        let provider = Self::spawn();
        provider.ready();
        provider
    }

    fn spawn() -> Self {
        let program = venv_bin("venv-tools", "oidc-provider-mock");
        let dir = scratch_dir("oidc");
        let port = free_port();
        let mut cmd = Command::new(program);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]).env("PYTHONWARNINGS", "ignore");
        let service = Service::spawn("oidc-provider-mock", dir.join("oidc.log"), "TERM", &cmd);
        Self { issuer: format!("http://127.0.0.1:{port}"), dir, service }
    }

    fn ready(&self) {
        let discovery = format!("{}/.well-known/openid-configuration", self.issuer);
        self.service.wait_until(Duration::from_secs(60), || {
            http_get(&discovery).is_some_and(|(status, body)| status == 200 && body.contains("\"issuer\""))
        });
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.service.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The services shared by the whole test binary.
pub struct SharedStack {
    /// A PostgreSQL cluster.
    pub pg: PgCluster,
    /// Synapse on database `synapse` of `pg`.
    pub synapse: Synapse,
    /// The OIDC provider.
    pub oidc: OidcProvider,
}

static SHARED: OnceLock<Result<SharedStack, String>> = OnceLock::new();

/// The shared stack, started on first use (about 4-5 s) and once per test binary; stopped when
/// the process exits. If it cannot start, every test that asks for it fails with the reason.
pub fn shared() -> &'static SharedStack {
    let stack = SHARED.get_or_init(|| {
        catch_unwind(AssertUnwindSafe(|| {
            let t0 = Instant::now();
            let oidc = OidcProvider::spawn(); // starts while PostgreSQL and Synapse do
            let pg = PgCluster::start();
            let t_pg = t0.elapsed();
            let synapse = Synapse::start_on(&pg, "synapse");
            let t_synapse = t0.elapsed();
            oidc.ready();
            register_exit_hook();
            eprintln!(
                "shared test stack ready in {:.1?}: PostgreSQL {t_pg:.1?}, then Synapse {:.1?} (OIDC provider alongside)",
                t0.elapsed(),
                t_synapse - t_pg
            );
            SharedStack { pg, synapse, oidc }
        }))
        .map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(no message)".into())
        })
    });
    match stack {
        Ok(stack) => stack,
        Err(why) => panic!("the shared test stack (PostgreSQL, Synapse, OIDC provider) could not start:\n{why}"),
    }
}

unsafe extern "C" {
    safe fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
}

fn register_exit_hook() {
    assert_eq!(atexit(stop_shared_at_exit), 0, "atexit");
}

/// Runs when the test process exits normally (libtest's end, or `process::exit`): stops the
/// shared services together, waits for them, removes their directories. (On an abort or a
/// kill, guard.py sees its stdin close and stops them all the same.)
extern "C" fn stop_shared_at_exit() {
    let _ = catch_unwind(|| {
        if let Some(Ok(stack)) = SHARED.get() {
            let services = [&stack.synapse.service, &stack.oidc.service, &stack.pg.service];
            for service in services {
                service.begin_stop();
            }
            for service in services {
                service.wait();
            }
            for dir in [&stack.synapse.dir, &stack.oidc.dir, &stack.pg.dir] {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    });
}

impl PgCluster {
    /// A streaming replica of this cluster: `pg_basebackup -R` (which writes `standby.signal`
    /// and `primary_conninfo`) into a fresh directory, then the same postmaster setup as
    /// [`PgCluster::start`] on its own port and socket directory. Ready when it answers
    /// `SELECT pg_is_in_recovery()` with `t`.
    pub fn start_replica(&self) -> PgCluster {
        let dir = scratch_dir("pg-replica");
        let port = free_port();
        let data = dir.join("data");
        let basebackup = "/usr/lib/postgresql/15/bin/pg_basebackup";
        let primary_port = self.port.to_string();
        let args = [
            "-h",
            "127.0.0.1",
            "-p",
            &primary_port,
            "-U",
            "postgres",
            "-R",
            "-X",
            "stream",
            "--checkpoint=fast",
            "--no-sync",
            "-D",
        ];
        let mut backup = if is_root() {
            let status = Command::new("chown").arg("postgres:").arg(&dir).status().expect("run chown");
            assert!(status.success(), "chown postgres {}", dir.display());
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", basebackup]).args(args).arg(&data);
            c
        } else {
            let mut c = Command::new(basebackup);
            c.args(args).arg(&data);
            c
        };
        let out = backup.output().expect("run pg_basebackup");
        assert!(
            out.status.success(),
            "pg_basebackup from port {} failed:\n{}",
            self.port,
            String::from_utf8_lossy(&out.stderr)
        );
        // The copied postgresql.conf names the primary's port and socket; later lines win.
        let mut conf =
            std::fs::OpenOptions::new().append(true).open(data.join("postgresql.conf")).expect("open postgresql.conf");
        writeln!(conf, "port = {port}\nunix_socket_directories = '{}'\nhot_standby = on", dir.display())
            .expect("write postgresql.conf");
        let cmd = postmaster(&data);
        let service = Service::spawn("postgres replica", dir.join("server.log"), "INT", &cmd);
        service.wait_until(Duration::from_secs(60), || {
            psql_command(&dir, port, "postgres", "SELECT pg_is_in_recovery()")
                .stderr(Stdio::null())
                .output()
                .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"t"))
        });
        PgCluster { socket_dir: dir.clone(), dir, port, service }
    }

    /// The postmaster's pid (first line of `data/postmaster.pid`).
    pub fn postmaster_pid(&self) -> u32 {
        let text = std::fs::read_to_string(self.dir.join("data/postmaster.pid")).expect("read postmaster.pid");
        text.lines().next().and_then(|l| l.trim().parse().ok()).expect("a pid in postmaster.pid")
    }
}

impl PgCluster {
    /// Starts the postmaster again on the same data directory and port after
    /// `self.service.stop()`; ready when `SELECT 1` answers.
    pub fn restart(&mut self) {
        let data = self.dir.join("data");
        let cmd = postmaster(&data);
        self.service = Service::spawn("postgres", self.dir.join("server-restart.log"), "INT", &cmd);
        let (dir, port) = (self.socket_dir.clone(), self.port);
        self.service.wait_until(Duration::from_secs(60), || {
            psql_command(&dir, port, "postgres", "SELECT 1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
    }
}

impl Synapse {
    /// A Synapse on SQLite whose logins are delegated to MAS at `mas_endpoint`
    /// (`matrix_authentication_service:` with `secret`): it then serves `auth_metadata` and
    /// names MAS's issuer in `/.well-known/matrix/client`. Shared-secret registration is gone
    /// in this mode, so `admin_token` is `secret` (which Synapse accepts as an admin's).
    pub fn start_with_mas(mas_endpoint: &str, secret: &str) -> Self {
        venv_bin("venv-synapse", "python");
        let dir = scratch_dir("synapse-mas");
        let (port, metrics_port) = (free_port(), free_port());
        let out = Command::new("bash")
            .arg(repo().join("scripts/lib/synapse-init.sh"))
            .arg(&dir)
            .arg(port.to_string())
            .arg(metrics_port.to_string())
            .output()
            .expect("run scripts/lib/synapse-init.sh");
        assert!(out.status.success(), "synapse-init.sh failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let mut conf =
            std::fs::OpenOptions::new().append(true).open(dir.join("homeserver.yaml")).expect("open homeserver.yaml");
        writeln!(
            conf,
            "matrix_authentication_service:\n  enabled: true\n  endpoint: \"{mas_endpoint}\"\n  secret: \"{secret}\""
        )
        .expect("write homeserver.yaml");
        let shared_secret = std::fs::read_to_string(dir.join("shared_secret")).unwrap_or_default();
        let synapse = Self {
            base_url: format!("http://127.0.0.1:{port}"),
            metrics_url: format!("http://127.0.0.1:{metrics_port}/_synapse/metrics"),
            admin_token: secret.to_string(),
            service: Self::process(&dir),
            dir,
            port,
            metrics_port,
            shared_secret: shared_secret.trim().to_string(),
        };
        synapse.wait_healthy();
        synapse
    }
}
