//! Table tests for `samples::observe`: hand-made server answers in, samples and messages out.

use super::*;
use crate::probe::postgres::dsn::PgTarget;
use crate::probe::postgres::sql::{Activity, Database, Replica, Standby};
use std::time::Duration;

const MIB: f64 = 1_048_576.0;

fn spec(databases: &[&str], disk_limit: Option<u64>) -> PostgresSpec {
    PostgresSpec {
        target: PgTarget::parse("postgresql://monitor@db/matrix").unwrap(),
        databases: databases.iter().map(|d| d.to_string()).collect(),
        disk_limit,
        statement_timeout: Duration::from_secs(5),
        top_tables: 10,
    }
}

fn session(datname: &str, state: Option<&str>, app: &str, n: f64) -> Activity {
    Activity {
        datname: Some(datname.into()),
        state: state.map(str::to_string),
        application_name: Some(app.into()),
        backend_type: state.map(|_| "client backend".to_string()),
        me: false,
        n,
        max_query: None,
        max_xact: None,
        max_idle_xact: None,
        waiting: 0.0,
        max_wait: None,
    }
}

fn database(oid: i64, name: &str, size: Option<f64>) -> Database {
    Database {
        oid,
        name: name.into(),
        allow_connections: true,
        size,
        xid_age: Some(1000.0),
        mxid_age: Some(0.0),
        numbackends: Some(1.0),
        xact_commit: Some(10.0),
        xact_rollback: Some(0.0),
        blks_read: Some(10.0),
        blks_hit: Some(990.0),
        temp_bytes: Some(0.0),
        deadlocks: Some(2.0),
        conflicts: Some(0.0),
    }
}

fn cluster() -> Cluster {
    let mut me = session("matrix", Some("active"), "mxwarden", 1.0);
    me.me = true;
    me.max_query = Some(99.0);
    Cluster {
        server_version_num: 150_018,
        server_version: "15.18 (Debian 15.18-0+deb12u1)".into(),
        current_user: "monitor".into(),
        current_database: "matrix".into(),
        in_recovery: false,
        superuser: Some(false),
        read_all_stats: true,
        monitor: true,
        max_connections: 100,
        superuser_reserved_connections: 3,
        reserved_connections: 0,
        pgss_version: Some("1.10".into()),
        activity: vec![
            me,
            session("matrix", Some("idle"), "synapse", 8.0),
            session("mas", Some("idle in transaction"), "mas", 1.0),
            Activity { backend_type: Some("checkpointer".into()), datname: None, ..session("", Some(""), "", 1.0) },
        ],
        databases: vec![database(16384, "matrix", Some(100.0 * MIB)), database(16385, "mas", Some(20.0 * MIB))],
        locks: vec![],
        replica: None,
        standbys: Some(vec![]),
        server_ms: Some(1.0),
    }
}

fn gathered(c: Cluster) -> Gathered {
    Gathered {
        database: "matrix".into(),
        cluster: c,
        wal: Some(Ok(16.0 * MIB)),
        statements: StatementsRead::Rows(vec![]),
        tables: None,
    }
}

fn value(j: &Judged, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    j.samples
        .iter()
        .find(|s| s.name == name && label.is_none_or(|(k, v)| s.labels.get(k).map(String::as_str) == Some(v)))
        .map(|s| s.value)
}

fn observe_once(spec: &PostgresSpec, g: &Gathered) -> Judged {
    observe(spec, &Labels::new(), g, &mut PgState::default(), 1_000_000)
}

#[test]
fn connections_count_client_sessions_against_what_normal_roles_may_open() {
    let j = observe_once(&spec(&[], None), &gathered(cluster()));
    let cases = [
        ("pg_connections", None, Some(10.0), "our own + 8 synapse + 1 mas; the checkpointer is no client"),
        ("pg_connections_usable", None, Some(97.0), "100 minus 3 reserved for superusers"),
        ("pg_connections_usage_ratio", None, Some(10.0 / 97.0), "against the usable slots"),
        ("pg_stat_activity_count", Some(("application_name", "synapse")), Some(8.0), "by database, state, application"),
        ("pg_stat_activity_max_query_duration_seconds", None, Some(0.0), "our own running poll is not a long query"),
        ("pg_settings_max_connections", None, Some(100.0), "postgres_exporter's name"),
    ];
    for (name, label, want, why) in cases {
        assert_eq!(value(&j, name, label), want, "{name}: {why}");
    }
    assert!(j.summary.contains("10 of 97 connections (10%)"), "{}", j.summary);
    assert!(j.missing.is_empty(), "a role with pg_monitor misses nothing: {:?}", j.missing);
}

#[test]
fn a_role_without_pg_monitor_is_told_exactly_what_it_cannot_see() {
    let mut c = cluster();
    c.monitor = false;
    c.read_all_stats = false;
    c.activity.push(Activity { backend_type: None, ..session("vikunja", None, "vikunja", 3.0) });
    c.databases.push(database(16386, "authentik", None));
    c.standbys = Some(vec![Standby {
        application_name: Some("walreceiver".into()),
        client_addr: None,
        state: None,
        sync_state: None,
        write_lag: None,
        flush_lag: None,
        replay_lag: None,
        replay_bytes: None,
    }]);
    let mut g = gathered(c);
    g.wal = None;
    g.statements = StatementsRead::Rows(vec![Statement(10, 16384, None, 5.0, 50.0)]);
    let j = observe_once(&spec(&[], None), &g);
    let expected = [
        (
            "state, query and transaction ages of 3 sessions of other roles",
            "hidden sessions are counted, not inspected",
        ),
        ("size of database authentik (no CONNECT privilege)", "pg_database_size needs CONNECT"),
        ("WAL size (pg_ls_waldir() needs pg_monitor)", "the WAL directory is off limits"),
        ("lag of 1 standby(s): pg_stat_replication hides LSNs and lags", "standby details are hidden"),
        ("statement ids of other roles", "pg_stat_statements hides other roles' queryids"),
    ];
    for (needle, why) in expected {
        assert!(j.missing.iter().any(|m| m.contains(needle)), "{why}: {needle:?} not in {:?}", j.missing);
    }
    assert!(j.missing.iter().all(|m| m.contains("pg_monitor") || m.contains("CONNECT")), "each names the remedy");
    assert_eq!(value(&j, "pg_stat_activity_count", Some(("state", "unknown"))), Some(3.0), "hidden state is `unknown`");
    assert_eq!(value(&j, "pg_connections", None), Some(13.0), "hidden sessions still count");
    assert!(j.summary.contains("missing: "), "{}", j.summary);
}

#[test]
fn disk_use_is_the_databases_plus_wal_against_the_plan() {
    let cases: &[(Option<u64>, Option<Result<f64, String>>, Option<f64>, &str)] = &[
        (Some(256 << 20), Some(Ok(16.0 * MIB)), Some(136.0 / 256.0), "120 MiB of databases + 16 MiB WAL"),
        (Some(256 << 20), None, Some(120.0 / 256.0), "without pg_monitor the WAL is left out"),
        (None, Some(Ok(16.0 * MIB)), None, "no disk_limit, no ratio"),
    ];
    for (limit, wal, want, why) in cases {
        let mut g = gathered(cluster());
        g.wal = wal.clone();
        let j = observe_once(&spec(&[], *limit), &g);
        assert_eq!(value(&j, "pg_disk_usage_ratio", None), *want, "{why}");
        assert_eq!(value(&j, "pg_database_size_bytes", Some(("datname", "mas"))), Some(20.0 * MIB), "{why}");
    }
}

#[test]
fn a_configured_database_that_does_not_exist_fails_the_check() {
    let j = observe_once(&spec(&["matrix", "mas", "vikunja"], None), &gathered(cluster()));
    assert_eq!(j.failures.len(), 1, "{:?}", j.failures);
    assert!(j.failures[0].starts_with("database `vikunja` does not exist"), "{:?}", j.failures);
}

#[test]
fn replication_lag_follows_postgres_exporter_with_the_idle_primary_caveat() {
    let replica = |caught_up, replay_age| Replica {
        caught_up,
        backlog_bytes: Some(0.0),
        replay_age,
        paused: Some(false),
        replay_lsn: None,
    };
    let cases = [
        (
            replica(Some(true), Some(3600.0)),
            Some(0.0),
            "caught up: an idle primary is no lag, however old the last transaction",
        ),
        (replica(Some(false), Some(90.0)), Some(90.0), "behind: the age of the last replayed transaction"),
        (replica(Some(false), Some(-0.5)), Some(0.0), "clock skew between the two servers never gives negative lag"),
        (replica(Some(false), None), None, "nothing replayed yet: no lag can be told"),
    ];
    for (r, want, why) in cases {
        let mut c = cluster();
        c.in_recovery = true;
        c.replica = Some(r);
        c.standbys = None;
        let j = observe_once(&spec(&[], None), &gathered(c));
        assert_eq!(value(&j, "pg_replication_lag_seconds", None), want, "{why}");
        assert_eq!(value(&j, "pg_replication_is_replica", None), Some(1.0), "{why}");
    }
    // Nothing replayed since the replica started, and the replay position does not move.
    let mut state = PgState::default();
    let mut c = cluster();
    c.in_recovery = true;
    c.standbys = None;
    c.replica = Some(Replica { replay_lsn: Some("0/3000148".into()), ..replica(Some(false), None) });
    let first = observe(&spec(&[], None), &Labels::new(), &gathered(c.clone()), &mut state, 0);
    assert_eq!(value(&first, "pg_replication_lag_seconds", None), None, "stuck for how long: not known yet");
    assert!(first.missing.iter().any(|m| m.contains("no transaction was replayed")), "{:?}", first.missing);
    let later = observe(&spec(&[], None), &Labels::new(), &gathered(c.clone()), &mut state, 90_000);
    assert_eq!(value(&later, "pg_replication_lag_seconds", None), Some(90.0), "stuck for as long as polls saw it");
    c.replica = Some(Replica { replay_lsn: Some("0/3000200".into()), ..replica(Some(false), None) });
    let moved = observe(&spec(&[], None), &Labels::new(), &gathered(c), &mut state, 120_000);
    assert_eq!(value(&moved, "pg_replication_lag_seconds", None), None, "it moved: the clock starts again");

    let mut c = cluster();
    let standby = |replay_bytes, replay_lag| Standby {
        application_name: Some("replica1".into()),
        client_addr: Some("127.0.0.1".into()),
        state: Some("streaming".into()),
        sync_state: Some("async".into()),
        write_lag: None,
        flush_lag: None,
        replay_lag,
        replay_bytes: Some(replay_bytes),
    };
    c.standbys = Some(vec![standby(0.0, None)]);
    let j = observe_once(&spec(&[], None), &gathered(c.clone()));
    assert_eq!(
        value(&j, "pg_stat_replication_replay_lag_seconds", None),
        Some(0.0),
        "NULL lag + nothing to replay: caught up"
    );
    assert_eq!(value(&j, "pg_replication_lag_seconds", None), Some(0.0), "a primary has no lag of its own");
    c.standbys = Some(vec![standby(8192.0, Some(75.0))]);
    let j = observe_once(&spec(&[], None), &gathered(c.clone()));
    assert_eq!(value(&j, "pg_stat_replication_replay_lag_seconds", None), Some(75.0), "the primary's measure");
    assert_eq!(value(&j, "pg_stat_replication_pg_wal_lsn_diff", None), Some(8192.0), "bytes not replayed");
    c.standbys = Some(vec![standby(8192.0, None)]);
    let j = observe_once(&spec(&[], None), &gathered(c));
    assert_eq!(
        value(&j, "pg_stat_replication_replay_lag_seconds", None),
        None,
        "behind without a measure: unknown, not 0"
    );
}

#[test]
fn query_time_is_the_mean_of_statement_deltas_between_two_reads() {
    let s = spec(&[], None);
    let mut state = PgState::default();
    let read = |rows: Vec<Statement>| {
        let mut g = gathered(cluster());
        g.statements = StatementsRead::Rows(rows);
        g
    };
    let first = observe(&s, &Labels::new(), &read(vec![Statement(10, 16384, Some(1), 100.0, 1000.0)]), &mut state, 0);
    assert!(first.needs_history.iter().any(|n| n.starts_with("query time")), "{:?}", first.needs_history);
    assert_eq!(value(&first, "pg_stat_statements_mean_seconds", None), None, "one read gives no delta");
    let second = observe(
        &s,
        &Labels::new(),
        &read(vec![
            Statement(10, 16384, Some(1), 110.0, 1100.0), // +10 calls, +100 ms: 10 ms each
            Statement(10, 16384, Some(2), 2.0, 4000.0),   // new since the first read: 2 s each
            Statement(10, 16385, Some(3), 5.0, 50.0),     // another database, new
            Statement(20, 16384, None, 8.0, 80.0),        // another role's, hidden: new
        ]),
        &mut state,
        30_000,
    );
    let matrix = Some(("datname", "matrix"));
    let cases = [
        ("pg_stat_statements_calls", matrix, 20.0, "10 + 2 + 8 hidden calls in matrix"),
        ("pg_stat_statements_mean_seconds", matrix, (100.0 + 4000.0 + 80.0) / 20.0 / 1000.0, "total time over calls"),
        ("pg_stat_statements_max_mean_seconds", matrix, 2.0, "the slowest statement's own mean"),
        ("pg_stat_statements_mean_seconds", Some(("datname", "mas")), 0.01, "per database"),
        ("pg_stat_statements_window_seconds", None, 30.0, "the interval between the reads"),
    ];
    for (name, label, want, why) in cases {
        let got = value(&second, name, label).unwrap_or(f64::NAN);
        assert!((got - want).abs() < 1e-9, "{name}: {why}: {got} vs {want}");
    }
    let reset = observe(&s, &Labels::new(), &read(vec![Statement(10, 16384, Some(1), 3.0, 30.0)]), &mut state, 60_000);
    assert_eq!(
        value(&reset, "pg_stat_statements_calls", matrix),
        Some(3.0),
        "counters that went down were reset: they count from zero"
    );
}

#[test]
fn statements_missing_or_elsewhere_are_explained_or_held() {
    let s = spec(&["mas"], None);
    let cases = [
        (StatementsRead::NotInstalled, "pg_stat_statements is not installed in database matrix (CREATE EXTENSION"),
        (StatementsRead::NotLoaded, "add it to shared_preload_libraries and restart"),
        (StatementsRead::Failed("permission denied".into()), "reading pg_stat_statements failed: permission denied"),
    ];
    for (read, needle) in cases {
        let mut g = gathered(cluster());
        g.statements = read;
        let j = observe_once(&s, &g);
        assert!(j.missing.iter().any(|m| m.contains(needle)), "{needle:?} not in {:?}", j.missing);
    }
    let mut state = PgState::default();
    let mut g = gathered(cluster());
    g.statements = StatementsRead::Rows(vec![Statement(10, 16384, Some(1), 1.0, 5.0)]);
    observe(&s, &Labels::new(), &g, &mut state, 0);
    g.statements = StatementsRead::Rows(vec![Statement(10, 16384, Some(1), 2.0, 10.0)]);
    observe(&s, &Labels::new(), &g, &mut state, 30_000);
    g.database = "mas".into();
    g.statements = StatementsRead::NotInstalled;
    let away = observe(&s, &Labels::new(), &g, &mut state, 60_000);
    assert_eq!(
        value(&away, "pg_stat_statements_mean_seconds", None),
        Some(0.005),
        "held while polling a database without it"
    );
    assert!(away.missing.is_empty(), "held values need no excuse: {:?}", away.missing);
    let later = observe(&s, &Labels::new(), &g, &mut state, 60_000 + 16 * 60_000);
    assert_eq!(value(&later, "pg_stat_statements_mean_seconds", None), None, "held for 15 minutes at most");
}

#[test]
fn the_forecast_needs_an_hour_of_history_then_counts_the_days() {
    let s = spec(&[], Some(256 << 20));
    let mut state = PgState::default();
    let mut c = cluster();
    let first = observe(&s, &Labels::new(), &gathered(c.clone()), &mut state, 0);
    assert!(
        first.needs_history.iter().any(|n| n.starts_with("days until the disk is full")),
        "{:?}",
        first.needs_history
    );
    assert_eq!(value(&first, "pg_disk_days_until_full", None), None);
    c.databases[0].size = Some(110.0 * MIB); // +10 MiB in 2 h: 120 MiB a day
    let later = observe(&s, &Labels::new(), &gathered(c), &mut state, 2 * 3_600_000);
    let used = 146.0; // 110 + 20 + 16 MiB WAL
    let days = value(&later, "pg_disk_days_until_full", None).unwrap();
    assert!((days - (256.0 - used) / 120.0).abs() < 1e-9, "{days}");
    assert!(later.summary.contains("full in 1 days"), "{}", later.summary);
}

#[test]
fn each_poll_connects_to_one_database_whose_tables_are_due() {
    let s = spec(&["matrix", "mas", "vikunja", "authentik"], None);
    let mut state = PgState::default();
    assert_eq!(state.next_database(&s, 0), "matrix", "first the DSN's own database");
    let mut g = gathered(cluster()); // has matrix and mas; vikunja and authentik do not exist
    g.tables = Some(Ok(vec![]));
    observe(&s, &Labels::new(), &g, &mut state, 0);
    assert_eq!(state.next_database(&s, 30_000), "matrix", "home again: a statements delta first");
    assert_eq!(state.next_database(&s, 60_000), "mas", "a minute in, the first configured database");
    state.tables.insert("mas".into(), (60_000, Ok(vec![])));
    assert_eq!(state.next_database(&s, 120_000), "matrix", "vikunja does not exist: home");
    assert!(!state.tables_due("matrix", 120_000), "home's tables are fresh");
    assert_eq!(state.next_database(&s, TABLES_REFRESH_MS), "matrix", "after ten minutes home is due again");
    state.tables.insert("matrix".into(), (TABLES_REFRESH_MS, Ok(vec![])));
    assert_eq!(state.next_database(&s, TABLES_REFRESH_MS + 60_000), "mas", "then mas, ten minutes after its last read");
}
