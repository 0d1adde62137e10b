//! The store on both dialects: every check of `mxwarden::store::conformance` on a fresh SQLite
//! file and on a fresh database of the real PostgreSQL 15 the harness starts, plus what only a
//! server can do wrong — two instances migrating at once, the server down at start, a
//! connection killed under the store, a password in the URL that must never be shown.

use crate::support::services;
use mxwarden::store::{Dialect, Location, Store, conformance};
use std::sync::atomic::{AtomicUsize, Ordering};

const SECRET: &str = "St0re-s3cret-pw";

/// A fresh, empty database on the shared cluster: its URL, with a password (trust auth
/// ignores it; it must never be shown).
fn fresh_database(what: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let pg = &services::shared().pg;
    let db = format!("store_{what}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
    pg.psql("postgres", &format!("CREATE DATABASE {db}"));
    format!("postgresql://postgres:{SECRET}@127.0.0.1:{}/{db}", pg.port)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn every_store_check_holds_on_sqlite_and_postgres() {
    let rt = runtime();
    for (name, check) in conformance::ALL {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = rt.block_on(Store::open(&dir.path().join("s.db"))).unwrap();
        assert_eq!(sqlite.dialect(), Dialect::Sqlite);
        eprintln!("sqlite: {name}");
        rt.block_on(check(sqlite));
        let url = fresh_database("check");
        let pg = rt.block_on(Store::open(Location::parse(&url))).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(pg.dialect(), Dialect::Postgres);
        eprintln!("postgres: {name}");
        rt.block_on(check(pg));
    }
}

#[test]
fn two_instances_migrating_one_new_database_at_once_both_start() {
    let url = fresh_database("race");
    let rt = runtime();
    let opened = rt.block_on(async {
        let at = Location::parse(&url);
        let (a, b, c) = tokio::join!(Store::open(at.clone()), Store::open(at.clone()), Store::open(at.clone()));
        [a, b, c].map(|s| s.map(|_| ()).map_err(|e| e.in_words()))
    });
    assert!(opened.iter().all(Result::is_ok), "{opened:?}");
    let pg = &services::shared().pg;
    let db = url.rsplit('/').next().unwrap();
    assert_eq!(
        pg.psql(db, "SELECT count(*) = count(DISTINCT version) AND count(*) = max(version) FROM schema_version"),
        "t",
        "each migration applied once"
    );
    assert_ne!(pg.psql(db, "SELECT count(*) FROM schema_version"), "0");
}

#[test]
fn postgres_down_at_start_is_a_clear_error_without_the_password() {
    let port = services::free_port();
    let url = format!("postgres://mxwarden:{SECRET}@127.0.0.1:{port}/mxwarden");
    let rt = runtime();
    let err = rt.block_on(Store::open(Location::parse(&url))).expect_err("nothing listens there");
    let words = err.in_words();
    assert!(words.contains("PostgreSQL refused the connection"), "{words}");
    assert!(words.contains(&format!("postgres://mxwarden@127.0.0.1:{port}/mxwarden")), "names the store: {words}");
    for shown in [words, err.to_string(), format!("{err:?}"), format!("{:#}", anyhow::Error::from(err))] {
        assert!(!shown.contains(SECRET), "the password leaked: {shown}");
    }
}

#[test]
fn a_missing_database_is_named_without_the_password() {
    let pg = &services::shared().pg;
    let url = format!("postgresql://postgres:{SECRET}@127.0.0.1:{}/no_such_database_here", pg.port);
    let rt = runtime();
    let err = rt.block_on(Store::open(Location::parse(&url))).expect_err("no such database");
    let words = err.in_words();
    assert!(words.contains("the database does not exist"), "{words}");
    assert!(!words.contains(SECRET) && !format!("{err:?}").contains(SECRET), "{words}");
}

#[test]
fn a_killed_connection_fails_at_most_one_write_and_the_next_reconnects() {
    let url = fresh_database("kill");
    let db = url.rsplit('/').next().unwrap().to_string();
    let pg = &services::shared().pg;
    let rt = runtime();
    let store = rt.block_on(Store::open(Location::parse(&url))).unwrap();
    rt.block_on(store.set_meta("before", "1")).unwrap();
    let killed = pg.psql(
        "postgres",
        &format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = '{db}' AND application_name = 'mxwarden'"
        ),
    );
    assert_ne!(killed, "0", "the store's idle connections were there to kill");
    // The pool pings a connection before handing it out, so a dead one is replaced; should a
    // write still meet one, it fails once, closes it, and the next write goes through.
    let mut failures = 0;
    for i in 0..5 {
        match rt.block_on(store.set_meta("after", &i.to_string())) {
            Ok(()) => break,
            Err(e) => {
                failures += 1;
                assert!(!e.in_words().contains(SECRET));
            }
        }
    }
    assert!(failures <= 1, "{failures} writes failed after the kill");
    assert_eq!(pg.psql(&db, "SELECT value FROM meta WHERE key = 'before'"), "1");
    assert_ne!(pg.psql(&db, "SELECT count(*) FROM meta WHERE key = 'after'"), "0", "a write after the kill landed");
    assert!(store.health().failure().is_none() || failures == 1);
}

#[test]
fn the_store_is_named_in_pg_stat_activity_and_debug_never_shows_the_password() {
    let url = fresh_database("name");
    let db = url.rsplit('/').next().unwrap().to_string();
    let rt = runtime();
    let store = rt.block_on(Store::open(Location::parse(&url))).unwrap();
    assert!(!format!("{store:?}").contains(SECRET), "{store:?}");
    assert!(!store.name().contains(SECRET) && store.name().ends_with(&db), "{}", store.name());
    let pg = &services::shared().pg;
    let names =
        pg.psql("postgres", &format!("SELECT DISTINCT application_name FROM pg_stat_activity WHERE datname = '{db}'"));
    assert_eq!(names, "mxwarden");
}

/// `mxwarden run` on a PostgreSQL store, end to end: the check's history is recorded there,
/// the page goes out once, the resolve once, and a restart (state restored from the
/// database) repeats neither. The CLI reads the same store, and neither `config show` nor the
/// daemon's log shows the password.
#[test]
fn mxwarden_run_on_a_postgres_store_records_history_and_pages_once() {
    use crate::alerting::Daemon;
    use crate::cli::{config, run};
    use crate::crash_gaps::{Target, count, payloads};
    use crate::support::fakes;
    use std::time::{Duration, Instant};

    let url = fresh_database("run");
    let db = url.rsplit('/').next().unwrap().to_string();
    let pg = &services::shared().pg;
    let target = Target::start();
    let sink = fakes::webhook_sink();
    let text =
        crate::crash_gaps::config_text(&target, &sink, "00:00").replace("store: ./state.db", "store: \"${MX_STORE}\"");
    let file = config(&text);
    let log = file.path.with_extension("log");
    let wait = |what: &str, within: Duration, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + within;
        while !done() {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(Instant::now() < deadline, "timed out waiting for {what}; log:\n{tail}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let start = || {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_mxwarden"))
            .args(["--config", file.path.to_str().unwrap(), "-v", "run"])
            .env("MX_STORE", &url)
            .env_remove("MXWARDEN_FAILPOINT")
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start mxwarden run");
        Daemon(child)
    };

    target.set(false);
    let daemon = start();
    wait("the page", Duration::from_secs(30), &|| count(&sink, "firing", "WebDown") == 1);
    // The recorder flushes once per sweep.
    wait("the history in PostgreSQL", Duration::from_secs(45), &|| {
        pg.psql(&db, "SELECT count(*) FROM results r JOIN checks c ON c.id = r.check_id WHERE c.name = 'web'") != "0"
    });
    assert_ne!(pg.psql(&db, "SELECT count(*) FROM rollups"), "0");
    assert_eq!(pg.psql(&db, "SELECT state FROM alerts WHERE alert = 'WebDown'"), "firing");
    // The CLI reads the daemon's store.
    let alerts = run(&["--config", file.path.to_str().unwrap(), "alerts", "--json"], &[("MX_STORE", &url)]);
    assert_eq!(alerts.code, 1, "a firing alert is a finding: {}", alerts.all());
    assert!(alerts.stdout.contains("WebDown"), "{}", alerts.all());
    drop(daemon);

    // Restarted: the firing alert is restored from PostgreSQL, not paged again; then resolved once.
    let daemon = start();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(count(&sink, "firing", "WebDown"), 1, "no second page after the restart: {:#?}", payloads(&sink));
    target.set(true);
    wait("the resolve", Duration::from_secs(30), &|| count(&sink, "resolved", "WebDown") == 1);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(count(&sink, "resolved", "WebDown"), 1, "{:#?}", payloads(&sink));
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM outbox WHERE status = 'sent'"), "2", "page and resolve, sent");
    drop(daemon);

    let shown = run(&["--config", file.path.to_str().unwrap(), "config", "show"], &[("MX_STORE", &url)]);
    assert_eq!(shown.code, 0, "{}", shown.all());
    let daemon_log = std::fs::read_to_string(&log).unwrap_or_default();
    for (what, text) in [("config show", shown.all()), ("the daemon's log", daemon_log), ("alerts", alerts.all())] {
        assert!(!text.contains(SECRET), "{what} shows the store's password:\n{text}");
    }
}

/// A store URL that cannot work is a config error naming file, line and key, and never the
/// password — written in the file or taken from `${VAR}`.
#[test]
fn a_broken_store_url_is_a_config_error_naming_the_line_not_the_password() {
    use crate::cli::{config, run};
    for (store, env, why) in [
        (format!("\"postgres://mx:{SECRET}@db.internal:notaport/mx\""), None, "not a valid PostgreSQL URL"),
        (format!("postgresql://mx:{SECRET}@db.internal:5432"), None, "names no database"),
        (
            "\"${MX_STORE}\"".to_string(),
            Some(format!("postgres://mx:{SECRET}@db.internal/mx?sslmode=maybe")),
            "not usable",
        ),
    ] {
        let file = config(&format!("listen: off\nstore: {store}\n"));
        let env: Vec<(&str, &str)> = env.as_deref().map(|v| vec![("MX_STORE", v)]).unwrap_or_default();
        let r = run(&["config", "check", file.path.to_str().unwrap()], &env);
        assert_eq!(r.code, 2, "{}", r.all());
        assert!(r.stderr.contains("mxwarden.yaml:2:") && r.stderr.contains("store:"), "file, line, key: {}", r.all());
        assert!(r.stderr.contains(why), "{why}: {}", r.all());
        assert!(!r.all().contains(SECRET), "the password was shown: {}", r.all());
    }
}

/// `doctor` proves a PostgreSQL store reachable (and says when it is not), never showing the
/// password; `config show` shows the URL without it.
#[test]
fn doctor_proves_a_postgres_store_reachable_and_config_show_hides_its_password() {
    use crate::cli::{config, run};
    let url = fresh_database("doctor");
    let file = config("listen: off\nstore: \"${MX_STORE}\"\n");
    let finding = |r: &crate::cli::Run| -> (String, String) {
        let report = r.json();
        let f = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["area"] == "store")
            .unwrap_or_else(|| panic!("no store finding in {report:#}"))
            .clone();
        (f["outcome"].as_str().unwrap_or_default().to_string(), f["detail"].as_str().unwrap_or_default().to_string())
    };
    let r = run(&["--config", file.path.to_str().unwrap(), "doctor", "--json"], &[("MX_STORE", &url)]);
    let (outcome, detail) = finding(&r);
    assert_eq!(outcome, "pass", "{}", r.all());
    assert!(detail.contains("creates its tables"), "a new database: {detail}");
    assert!(!r.all().contains(SECRET), "{}", r.all());

    let down = format!("postgres://mx:{SECRET}@127.0.0.1:{}/mx", services::free_port());
    let r = run(&["--config", file.path.to_str().unwrap(), "doctor", "--json"], &[("MX_STORE", &down)]);
    let (outcome, detail) = finding(&r);
    assert_eq!((outcome.as_str(), r.code), ("fail", 1), "{}", r.all());
    assert!(detail.contains("cannot connect to postgres://mx@127.0.0.1:"), "{detail}");
    assert!(!r.all().contains(SECRET), "{}", r.all());

    let shown = run(&["--config", file.path.to_str().unwrap(), "config", "show"], &[("MX_STORE", &url)]);
    assert_eq!(shown.code, 0, "{}", shown.all());
    assert!(!shown.all().contains(SECRET), "{}", shown.all());
}

/// PostgreSQL stopped under a running store: writes are refused with words that say why (and
/// no password), the store's health reports the failure, and once the server is back the
/// writes succeed again on fresh connections — no restart of mxwarden.
#[test]
fn writes_fail_while_postgres_is_down_and_resume_when_it_is_back() {
    let mut pg = services::PgCluster::start();
    pg.psql("postgres", "CREATE DATABASE mx");
    let url = format!("postgresql://postgres:{SECRET}@127.0.0.1:{}/mx", pg.port);
    let rt = runtime();
    let store = rt.block_on(Store::open(Location::parse(&url))).unwrap();
    rt.block_on(store.set_meta("before", "1")).unwrap();
    pg.service.stop();
    let err = rt.block_on(store.set_meta("during", "1")).expect_err("the server is down");
    let words = err.in_words();
    assert!(
        ["PostgreSQL refused the connection", "no connection to PostgreSQL came free", "the connection to PostgreSQL"]
            .iter()
            .any(|w| words.contains(w)),
        "{words}"
    );
    assert!(!words.contains(SECRET), "{words}");
    let failure = store.health().failure().expect("the failure is reported");
    assert!(!failure.error.contains(SECRET), "{failure:?}");
    pg.restart();
    let mut last = None;
    for _ in 0..3 {
        match rt.block_on(store.set_meta("after", "1")) {
            Ok(()) => {
                last = None;
                break;
            }
            Err(e) => last = Some(e.in_words()),
        }
    }
    assert_eq!(last, None, "writes resume once PostgreSQL is back");
    assert_eq!(pg.psql("mx", "SELECT string_agg(key, ',' ORDER BY key) FROM meta"), "after,before");
}

/// A database turned read-only under the store (a standby promoted the wrong way, or
/// `default_transaction_read_only`): the refused write says so, in words.
#[test]
fn a_read_only_database_is_named_as_such() {
    let url = fresh_database("ro");
    let db = url.rsplit('/').next().unwrap().to_string();
    let pg = &services::shared().pg;
    let rt = runtime();
    let store = rt.block_on(Store::open(Location::parse(&url))).unwrap();
    pg.psql("postgres", &format!("ALTER DATABASE {db} SET default_transaction_read_only = on"));
    pg.psql("postgres", &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"));
    let words: Vec<String> =
        (0..3).filter_map(|i| rt.block_on(store.set_meta("k", &i.to_string())).err().map(|e| e.in_words())).collect();
    assert!(words.iter().any(|w| w.contains("the database is read-only")), "{words:#?}");
    assert!(words.iter().all(|w| !w.contains(SECRET)), "{words:#?}");
}
