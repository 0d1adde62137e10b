//! Two instances on one store (`docs/ha.md`): real `mxwarden run` processes of the built
//! binary, one target, one critical rule, one webhook receiver counting what arrives. Only the
//! leader decides and delivers: one incident is one page and one resolve, whichever instance
//! dies (`kill -9`), hangs (SIGSTOP, then SIGCONT after the other took over — its term is
//! stale, so it cannot send or decide anything) or loses its database connection
//! (`pg_terminate_backend`). Each scenario runs on PostgreSQL (the setup two instances are
//! for) and on one SQLite file shared by both processes (the same lease SQL).

use crate::crash_gaps::{Target, count, payloads, web_down_to_hook};
use crate::support::{fakes, free_port, http_get};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The lease in these tests: short, so failover takes seconds (the default is 15 s).
const LEASE: &str = "3s";
/// Long enough for a duplicate to show up if there were one: a few lease rounds, dispatcher
/// rounds and evaluation periods.
const SETTLE: Duration = Duration::from_secs(6);

/// One `mxwarden run` with its own config, log and status port; killed on drop.
pub(crate) struct Instance {
    pub(crate) name: String,
    config: PathBuf,
    pub(crate) port: u16,
    child: Option<Child>,
}

impl Instance {
    fn new(dir: &Path, name: &str, store: &str, target: &Target, sink: &fakes::WebhookSink) -> Self {
        let port = free_port();
        let config = dir.join(format!("{name}.yaml"));
        let text = format!(
            r#"instance: {name}
leader: {{ lease: {LEASE} }}
defaults: {{ interval: 1s, timeout: 1s }}
store: "{store}"
listen: 127.0.0.1:{port}
{}"#,
            web_down_to_hook(target, sink)
        );
        std::fs::write(&config, text).unwrap();
        Self { name: name.into(), config, port, child: None }
    }

    pub(crate) fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_mxwarden"));
        command.args(["--config", self.config.to_str().unwrap(), "-v", "run"]).stdout(Stdio::null()).stderr(log);
        command.env_remove("RUST_LOG");
        // While this file exists, the instance's lease task is deaf and sure it leads.
        command.env("MXWARDEN_FAILPOINT", format!("deaf:{}", self.deaf_path().display()));
        self.child = Some(command.spawn().expect("start mxwarden run"));
    }

    /// The file that makes this instance's lease task deaf (`failpoint::deaf`).
    pub(crate) fn deaf_path(&self) -> PathBuf {
        self.config.with_extension("deaf")
    }

    fn log_path(&self) -> PathBuf {
        self.config.with_extension("log")
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub(crate) fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub(crate) fn signal(&self, signal: &str) {
        let ok = Command::new("kill").args([&format!("-{signal}"), &self.pid().to_string()]).status().unwrap();
        assert!(ok.success(), "kill -{signal}");
    }

    /// `/api/v1/status`'s `leader`, if the instance answers.
    pub(crate) fn leader(&self) -> Option<Value> {
        let (code, body) = http_get(&format!("http://127.0.0.1:{}/api/v1/status", self.port))?;
        (code == 200).then(|| serde_json::from_str::<Value>(&body).ok()).flatten().map(|s| s["leader"].clone())
    }

    /// Whether the instance says it leads.
    pub(crate) fn leads(&self) -> bool {
        self.leader().is_some_and(|l| l["this_instance"] == true)
    }

    /// `/metrics`' `mxwarden_leader`, if the instance answers.
    fn leader_gauge(&self) -> Option<String> {
        let (_, body) = http_get(&format!("http://127.0.0.1:{}/metrics", self.port))?;
        body.lines().find(|l| l.starts_with("mxwarden_leader ")).map(str::to_string)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if self.child.is_some() {
            // A stopped process would not die of SIGKILL until continued on some kernels.
            let _ = Command::new("kill").args(["-CONT", &self.pid().to_string()]).status();
        }
        self.kill9();
    }
}

/// Two instances on one store, a target, a webhook receiver.
pub(crate) struct Pair {
    _dir: tempfile::TempDir,
    pub(crate) target: Target,
    pub(crate) sink: fakes::WebhookSink,
    pub(crate) instances: [Instance; 2],
}

impl Pair {
    /// `store`: what both configs say under `store:`; `None`: one SQLite file in the
    /// scenario's directory.
    pub(crate) fn start(store: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let target = Target::start();
        let sink = fakes::webhook_sink();
        let sqlite = dir.path().join("shared.db").display().to_string();
        let store = store.unwrap_or(&sqlite);
        let mut instances = [
            Instance::new(dir.path(), "alpha", store, &target, &sink),
            Instance::new(dir.path(), "bravo", store, &target, &sink),
        ];
        for i in &mut instances {
            i.start();
        }
        Self { _dir: dir, target, sink, instances }
    }

    /// Every log, for a failure message.
    pub(crate) fn logs(&self) -> String {
        self.instances.iter().map(|i| format!("--- {} ---\n{}", i.name, i.log())).collect()
    }

    pub(crate) fn wait(&self, what: &str, within: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + within;
        while !done() {
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; received {:#?}\n{}", payloads(&self.sink), self.logs());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until exactly one instance says it leads, and both agree who; its index.
    pub(crate) fn leader(&self, within: Duration) -> usize {
        let mut found = None;
        self.wait("one leader that both instances name", within, || {
            let views: Vec<Option<Value>> = self.instances.iter().map(Instance::leader).collect();
            let leading: Vec<usize> =
                (0..2).filter(|&i| views[i].as_ref().is_some_and(|l| l["this_instance"] == true)).collect();
            let agree = views
                .iter()
                .all(|v| v.as_ref().is_some_and(|l| l["instance"] == views[0].as_ref().unwrap()["instance"]));
            if leading.len() == 1 && agree {
                found = Some(leading[0]);
            }
            found.is_some()
        });
        found.unwrap()
    }

    fn fired(&self) -> usize {
        count(&self.sink, "firing", "WebDown")
    }

    fn resolved(&self) -> usize {
        count(&self.sink, "resolved", "WebDown")
    }

    /// Asserts the receiver got `firing` pages and `resolved` resolves, no more, and that no
    /// delivery id came twice.
    fn assert_counts(&self, firing: usize, resolved: usize) {
        std::thread::sleep(SETTLE);
        let ids: Vec<String> = self
            .sink
            .received
            .lock()
            .unwrap()
            .iter()
            .map(|(h, _)| h.get("x-mxwarden-delivery").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string())
            .collect();
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "no delivery twice: {ids:?}\n{}", self.logs());
        assert_eq!(self.fired(), firing, "pages: {:#?}\n{}", payloads(&self.sink), self.logs());
        assert_eq!(self.resolved(), resolved, "resolves: {:#?}\n{}", payloads(&self.sink), self.logs());
    }
}

/// One incident with both instances up: one page, one resolve; the leader is named alike by
/// both, in the status and in `/metrics`.
pub(crate) fn one_page_per_transition(store: Option<&str>) {
    let pair = Pair::start(store);
    let leader = pair.leader(Duration::from_secs(30));
    let follower = 1 - leader;
    assert_eq!(pair.instances[leader].leader_gauge().as_deref(), Some("mxwarden_leader 1"));
    assert_eq!(pair.instances[follower].leader_gauge().as_deref(), Some("mxwarden_leader 0"));
    let view = pair.instances[follower].leader().unwrap();
    assert_eq!(view["instance"], pair.instances[leader].name.as_str(), "the follower names the leader");
    assert!(view["term"].as_i64().is_some_and(|t| t >= 1), "{view}");
    assert!(pair.instances[leader].log().contains("Became leader (term"), "{}", pair.logs());

    pair.target.set(false);
    pair.wait("the page", Duration::from_secs(20), || pair.fired() >= 1);
    pair.target.set(true);
    pair.wait("the resolve", Duration::from_secs(20), || pair.resolved() >= 1);
    pair.assert_counts(1, 1);
}

/// The leader is killed mid-incident: the other takes over within 30 s and sends the resolve,
/// once; the killed one, restarted, follows, and the next incident is paged once too.
pub(crate) fn leader_killed_mid_incident(store: Option<&str>) {
    let mut pair = Pair::start(store);
    let leader = pair.leader(Duration::from_secs(30));
    let other = 1 - leader;
    pair.target.set(false);
    pair.wait("the page", Duration::from_secs(20), || pair.fired() >= 1);
    pair.instances[leader].kill9();
    let killed = Instant::now();
    pair.target.set(true);
    pair.wait("the resolve from the new leader", Duration::from_secs(30), || pair.resolved() >= 1);
    assert!(killed.elapsed() < Duration::from_secs(30), "decided within 30 s of the kill");
    assert!(pair.instances[other].leads(), "{}", pair.logs());
    pair.assert_counts(1, 1);

    pair.instances[leader].start();
    assert_eq!(pair.leader(Duration::from_secs(30)), other, "the restarted instance follows");
    pair.target.set(false);
    pair.wait("the second page", Duration::from_secs(20), || pair.fired() >= 2);
    pair.assert_counts(2, 1);
}

/// The leader hangs (SIGSTOP) mid-incident; the other takes over and resolves; the old one,
/// continued, still has "down" series and a "firing" engine — but its belief in its term ran
/// out while it was stopped and its renewal is refused: it steps down and nothing is sent
/// twice. (That the store's fence alone would stop it is proven by the deaf leader below.)
pub(crate) fn stopped_leader_cannot_send_when_continued(store: Option<&str>) {
    let pair = Pair::start(store);
    let leader = pair.leader(Duration::from_secs(30));
    let other = 1 - leader;
    pair.target.set(false);
    pair.wait("the page", Duration::from_secs(20), || pair.fired() >= 1);
    pair.instances[leader].signal("STOP");
    let stopped = Instant::now();
    pair.wait("the other instance to lead", Duration::from_secs(30), || pair.instances[other].leads());
    assert!(stopped.elapsed() < Duration::from_secs(30), "took over within 30 s");
    pair.target.set(true);
    pair.wait("the resolve from the new leader", Duration::from_secs(20), || pair.resolved() >= 1);
    pair.instances[leader].signal("CONT");
    pair.wait("the continued one to step down", Duration::from_secs(20), || {
        pair.instances[leader].log().contains("Lost leadership")
    });
    pair.assert_counts(1, 1);
    assert!(!pair.instances[leader].leads(), "{}", pair.logs());
    assert!(pair.instances[other].leads(), "{}", pair.logs());
    // The next incident: paged once, by the new leader only.
    pair.target.set(false);
    pair.wait("the second page", Duration::from_secs(20), || pair.fired() >= 2);
    pair.assert_counts(2, 1);
}

/// The leader's lease task goes deaf (a test failpoint): it never learns it was deposed and
/// believes in its term throughout, while its probes, evaluator and dispatcher run on. The
/// other instance takes over when the lease runs out; from then on only the store's fence
/// stands between the two — and every decision of the deaf one is refused: one resolve, one
/// next page. When it hears again, it steps down.
pub(crate) fn a_deaf_leader_is_fenced_by_the_store(store: Option<&str>) {
    let pair = Pair::start(store);
    let leader = pair.leader(Duration::from_secs(30));
    let other = 1 - leader;
    pair.target.set(false);
    pair.wait("the page", Duration::from_secs(20), || pair.fired() >= 1);
    std::fs::write(pair.instances[leader].deaf_path(), b"").unwrap();
    pair.wait("the other instance to lead", Duration::from_secs(30), || pair.instances[other].leads());
    pair.target.set(true);
    pair.wait("the resolve", Duration::from_secs(20), || pair.resolved() >= 1);
    std::thread::sleep(Duration::from_secs(2));
    pair.target.set(false);
    pair.wait("the second page", Duration::from_secs(20), || pair.fired() >= 2);
    pair.assert_counts(2, 1);
    let deaf = pair.instances[leader].log();
    assert!(
        deaf.contains("the store refused this term's decision"),
        "the deaf one decided and was refused: {}",
        pair.logs()
    );
    std::fs::remove_file(pair.instances[leader].deaf_path()).unwrap();
    pair.wait("the deaf one to step down", Duration::from_secs(20), || {
        pair.instances[leader].log().contains("Lost leadership")
    });
    assert_eq!(pair.leader(Duration::from_secs(20)), other);
    pair.assert_counts(2, 1);
}

#[test]
fn sqlite_a_deaf_leader_is_fenced_by_the_store() {
    a_deaf_leader_is_fenced_by_the_store(None);
}

#[test]
fn postgres_a_deaf_leader_is_fenced_by_the_store() {
    a_deaf_leader_is_fenced_by_the_store(Some(&pg_store("deaf")));
}

#[test]
fn sqlite_two_instances_page_once_per_transition() {
    one_page_per_transition(None);
}

#[test]
fn sqlite_leader_killed_mid_incident_resolves_once() {
    leader_killed_mid_incident(None);
}

#[test]
fn sqlite_stopped_leader_cannot_send_when_continued() {
    stopped_leader_cannot_send_when_continued(None);
}

/// A fresh database on the harness's PostgreSQL 15, and its URL.
fn pg_store(what: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let pg = &crate::support::services::shared().pg;
    let db = format!("ha_{what}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
    pg.psql("postgres", &format!("CREATE DATABASE {db}"));
    format!("postgresql://postgres@127.0.0.1:{}/{db}", pg.port)
}

#[test]
fn postgres_two_instances_page_once_per_transition() {
    one_page_per_transition(Some(&pg_store("once")));
}

#[test]
fn postgres_leader_killed_mid_incident_resolves_once() {
    leader_killed_mid_incident(Some(&pg_store("kill")));
}

#[test]
fn postgres_stopped_leader_cannot_send_when_continued() {
    stopped_leader_cannot_send_when_continued(Some(&pg_store("stop")));
}

/// The leader's database sessions are killed with `pg_terminate_backend` — found by their
/// `application_name`, `mxwarden/<instance>` — again and again for twice the lease, while the
/// incident it paged ends: a leader (it, reconnected, or the other) decides the resolve within
/// 30 s, once.
#[test]
fn postgres_leader_losing_its_connections_is_replaced_and_nothing_doubles() {
    let url = pg_store("terminate");
    let db = url.rsplit('/').next().unwrap().to_string();
    let pg = &crate::support::services::shared().pg;
    let pair = Pair::start(Some(&url));
    let leader = pair.leader(Duration::from_secs(30));
    let name = pair.instances[leader].name.clone();
    let sessions = pg.psql(
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND application_name = 'mxwarden/{name}'"
        ),
    );
    assert_ne!(sessions, "0", "the leader's sessions carry its name");
    pair.target.set(false);
    pair.wait("the page", Duration::from_secs(20), || pair.fired() >= 1);
    let cut = Instant::now();
    let mut terminated = 0;
    while cut.elapsed() < Duration::from_secs(6) {
        let killed = pg.psql(
            "postgres",
            &format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{db}' AND application_name = 'mxwarden/{name}'"
            ),
        );
        terminated += killed.parse::<usize>().unwrap();
        if cut.elapsed() > Duration::from_secs(3) {
            // The incident ends while the leader's sessions keep being killed.
            pair.target.set(true);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(terminated > 0, "the leader's sessions were killed");
    pair.wait("the resolve", Duration::from_secs(30).saturating_sub(cut.elapsed()), || pair.resolved() >= 1);
    assert!(cut.elapsed() < Duration::from_secs(30), "a leader decided within 30 s");
    // The leader either reconnected between the kills and kept its lease, or stepped down and
    // the other took over: both are right, as long as one decides, once.
    pair.leader(Duration::from_secs(30));
    pair.assert_counts(1, 1);
}

/// `instance:` and `leader.lease` are checked like every key: a name that would forge a log
/// line or read as part of `mxwarden/<name>`, a lease outside 3 s..5 m — exit 2 naming the
/// file, line and key; a good pair shows in `config show`.
#[test]
fn instance_and_lease_mistakes_name_their_line_and_key() {
    let bad = crate::cli::config("instance: \"mon/1\\nINFO forged\"\nleader: { lease: 1s }\n");
    let r = crate::cli::run(&["config", "check", bad.path.to_str().unwrap()], &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("mxwarden.yaml:1:11: instance: expected 1 to 48 letters"), "{}", r.all());
    assert!(!r.stderr.contains("\nINFO forged"), "the line break is shown escaped: {}", r.all());
    assert!(r.stderr.contains("mxwarden.yaml:2:"), "{}", r.all());
    assert!(r.stderr.contains("leader.lease: expected a lease from 3s to 5m"), "{}", r.all());
    let long = crate::cli::config(&format!("instance: {}\n", "x".repeat(49)));
    let r = crate::cli::run(&["config", "check", long.path.to_str().unwrap()], &[]);
    assert_eq!(r.code, 2, "49 characters do not fit application_name: {}", r.all());
    let good = crate::cli::config("instance: monitor-1\nleader: { lease: 20s }\n");
    let r = crate::cli::run(&["--config", good.path.to_str().unwrap(), "config", "show"], &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("monitor-1 (leader lease 20s)"), "{}", r.all());
}

/// A second running process with an instance name already in use on the store is refused
/// (after waiting one lease for the name to go quiet), naming the fix; the running pair is
/// undisturbed: one leader, and an incident still pages once.
#[test]
fn a_second_process_with_a_name_in_use_is_refused() {
    let pair = Pair::start(None);
    let leader = pair.leader(Duration::from_secs(30));
    let twin = Command::new(env!("CARGO_BIN_EXE_mxwarden"))
        .args(["--config", pair.instances[0].config.to_str().unwrap(), "run"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let out = twin.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(20), "within a lease and a round: {:?}", started.elapsed());
    assert!(
        stderr.contains("another mxwarden process named `alpha` is running on this store")
            && stderr.contains("instance:"),
        "{stderr}"
    );
    assert_eq!(pair.leader(Duration::from_secs(10)), leader, "the running pair is undisturbed");
    pair.target.set(false);
    pair.wait("the page", Duration::from_secs(20), || pair.fired() >= 1);
    pair.assert_counts(1, 0);
}
