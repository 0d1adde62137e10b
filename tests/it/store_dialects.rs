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
