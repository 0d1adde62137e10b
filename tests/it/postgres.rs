//! `kind: postgres` against real PostgreSQL 15 clusters from `tests/support` (each test its own,
//! so connection counts and sizes are exact): the connection rule firing and resolving, disk
//! rules against a small `disk_limit` and the days-until-full forecast, replication lag on a
//! paused streaming replica, what a role without `pg_monitor` or a server without
//! `pg_stat_statements` is told, `pg report --json` against `pg_database_size`, a slow server
//! not getting a second poll, and the DSN's password never shown.

use crate::cli::{Run, check_json, config, run};
use crate::support::services::PgCluster;
use mxwarden::alert::Transition;
use mxwarden::clock::{Clock, ManualClock};
use mxwarden::probe::Prober;
use mxwarden::rule::RuleEngine;
use mxwarden::series::SeriesStore;
use sqlx::{Connection, PgConnection};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "Sup3r-s3cret-pw";

/// A cluster with the stack's four databases.
fn stack_cluster() -> PgCluster {
    let pg = PgCluster::start();
    for db in ["matrix", "mas", "vikunja", "authentik"] {
        pg.psql("postgres", &format!("CREATE DATABASE {db}"));
    }
    pg
}

/// A DSN to `db` with a password in it (trust auth ignores it; it must never be shown).
fn dsn(pg: &PgCluster, user: &str, db: &str) -> String {
    format!("postgresql://{user}:{SECRET}@127.0.0.1:{}/{db}", pg.port)
}

fn service_yaml(name: &str, extra: &str) -> String {
    format!(
        "  {name}:\n    kind: postgres\n    dsn: \"${{PG_{}}}\"\n    databases: [matrix, mas, vikunja, authentik]\n{extra}",
        name.to_uppercase()
    )
}

fn rule_row(run: &Run, alert: &str) -> serde_json::Value {
    run.row(alert)
}

fn no_secret(run: &Run) {
    assert!(!run.all().contains(SECRET), "the DSN's password leaked:\n{}", run.all());
}

/// `n` idle connections to `dsn`, held until dropped, on their own runtime.
struct Held {
    runtime: tokio::runtime::Runtime,
    conns: Vec<PgConnection>,
}

impl Held {
    fn open(dsn: &str, n: usize) -> Self {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let conns = runtime.block_on(async {
            let mut conns = Vec::new();
            for _ in 0..n {
                conns.push(PgConnection::connect(dsn).await.expect("open a connection"));
            }
            conns
        });
        Self { runtime, conns }
    }

    fn close(mut self) {
        let conns = std::mem::take(&mut self.conns);
        self.runtime.block_on(async {
            for c in conns {
                let _ = c.close().await;
            }
        });
    }
}

/// A config loaded by the library, for the story tests with a manual clock.
fn load(text: &str, env: &[(&str, &str)]) -> mxwarden::config::Config {
    let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    mxwarden::config::from_source(Path::new("/tmp/mxwarden-pg-story.yaml"), text, &env)
        .unwrap_or_else(|e| panic!("config: {e}"))
}

/// The daemon's loop, by hand: poll every check, ingest, evaluate at the manual clock's time.
struct Story {
    runtime: tokio::runtime::Runtime,
    clock: Arc<ManualClock>,
    prober: Prober,
    engine: RuleEngine,
    series: SeriesStore,
    config: mxwarden::config::Config,
    /// Alerts pending or firing after the last tick.
    active: Vec<String>,
}

impl Story {
    fn new(config: mxwarden::config::Config) -> Self {
        let clock = Arc::new(ManualClock::new(jiff::Timestamp::from_second(1_800_000_000).unwrap()));
        let engine = RuleEngine::new(config.rules.clone());
        let series = SeriesStore::new(engine.retention_ms().max(3 * 3_600_000), 100_000);
        Self {
            runtime: tokio::runtime::Runtime::new().unwrap(),
            prober: Prober::new(clock.clone()),
            clock,
            engine,
            series,
            config,
            active: Vec::new(),
        }
    }

    /// One tick: poll, then the transitions of `alert`, and the observations' details.
    fn tick(&mut self, alert: &str) -> (Vec<Transition>, Vec<mxwarden::model::Observation>) {
        let observations = self.runtime.block_on(self.prober.run_all(&self.config.checks, 4));
        let t = self.clock.now().as_millisecond();
        for o in &observations {
            self.series.ingest_samples(&o.check.0, t, &o.samples);
        }
        let evaluation = self.engine.evaluate(&self.series, t);
        self.active = evaluation.alerts.iter().map(|a| a.labels["alertname"].clone()).collect();
        let transitions = evaluation.changes.iter().filter(|c| c.alert == alert).map(|c| c.transition).collect();
        (transitions, observations)
    }

    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }
}

#[test]
fn report_json_lists_every_database_with_its_exact_size_and_the_connections() {
    let pg = stack_cluster();
    pg.psql("matrix", "CREATE TABLE events (id serial PRIMARY KEY, body text); INSERT INTO events (body) SELECT repeat('x', 500) FROM generate_series(1, 5000)");
    pg.psql("matrix", "CREATE TABLE small (id int)");
    pg.psql("mas", "CREATE TABLE sessions (id int); INSERT INTO sessions SELECT generate_series(1, 1000)");
    let held = Held::open(&pg.dsn("mas"), 3);
    let file = config(&format!("services:\n{}    disk_limit: 1GiB\n", service_yaml("db", "")));
    let path = file.path.to_str().unwrap();
    let env = [("PG_DB", dsn(&pg, "postgres", "matrix"))];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let report = run(&["--config", path, "pg", "report", "--json"], &env);
    assert_eq!(report.code, 0, "{}", report.all());
    no_secret(&report);
    let json = report.json();
    let sizes: HashMap<String, u64> = pg
        .psql("postgres", "SELECT datname || '=' || pg_database_size(datname) FROM pg_database")
        .lines()
        .map(|l| {
            let (name, size) = l.split_once('=').unwrap();
            (name.to_string(), size.parse().unwrap())
        })
        .collect();
    let listed: HashMap<String, u64> = json["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["name"].as_str().unwrap().to_string(), d["size_bytes"].as_u64().unwrap()))
        .collect();
    assert_eq!(listed, sizes, "every database, with exactly pg_database_size's figure");
    let order: Vec<u64> =
        json["databases"].as_array().unwrap().iter().map(|d| d["size_bytes"].as_u64().unwrap()).collect();
    assert!(order.windows(2).all(|w| w[0] >= w[1]), "largest first: {order:?}");
    assert_eq!(json["connections"]["total"], 4, "3 held + the report's own: {}", json["connections"]);
    assert_eq!(json["connections"]["max"], 50, "pg-init.sh sets max_connections 50");
    assert_eq!(json["connections"]["usable"], 47, "3 reserved for superusers");
    let by_db = &json["connections"]["by_database"];
    assert!(by_db.as_array().unwrap().iter().any(|c| c["name"] == "mas" && c["count"] == 3), "{by_db}");
    let matrix_tables = json["tables"].as_array().unwrap().iter().find(|t| t["database"] == "matrix").unwrap();
    let events_size: f64 = pg.psql("matrix", "SELECT pg_total_relation_size('events')").parse().unwrap();
    assert_eq!(matrix_tables["tables"][0]["name"], "events", "{matrix_tables}");
    assert_eq!(matrix_tables["tables"][0]["total_bytes"].as_f64(), Some(events_size), "heap + TOAST + indexes");
    let databases_with_tables: Vec<&str> =
        json["tables"].as_array().unwrap().iter().map(|t| t["database"].as_str().unwrap()).collect();
    assert_eq!(databases_with_tables, ["matrix", "mas", "vikunja", "authentik"], "each database, one connection each");
    assert_eq!(json["server"]["role"], "primary");
    assert_eq!(json["replication"]["standbys"], serde_json::json!([]));
    assert!(json["dsn"].as_str().unwrap().contains(":<redacted>@"), "{}", json["dsn"]);
    assert!(json["alerts"].as_array().unwrap().iter().any(|a| a["alert"] == "PostgresConnectionsHigh"), "rules judged");

    let text = run(&["--config", path, "pg", "report"], &env);
    assert_eq!(text.code, 0, "{}", text.all());
    no_secret(&text);
    for needle in [
        "Connections: 4 of 47 usable",
        "Databases, largest first",
        "Largest tables in matrix:",
        "public.events",
        "Replication: primary, no standbys",
    ] {
        assert!(text.stdout.contains(needle), "{needle:?} missing:\n{}", text.stdout);
    }
    held.close();
}

#[test]
fn connections_over_90_percent_fire_the_rule_which_resolves_when_they_close() {
    let pg = stack_cluster();
    let text = format!("services:\n{}", service_yaml("db", ""));
    let dsn = dsn(&pg, "postgres", "matrix");
    let file = config(&text);
    let env = [("PG_DB", dsn.as_str())];
    let quiet = check_json(&file, &[], &env);
    assert_eq!(quiet.code, 0, "{}", quiet.all());
    assert_eq!(rule_row(&quiet, "PostgresConnectionsHigh")["ok"], true);

    // 43 idle + the poll's own = 44 of the 47 a normal role may open: 94 %.
    let held = Held::open(&pg.dsn("vikunja"), 43);
    let busy = check_json(&file, &[], &env);
    assert_eq!(busy.code, 1, "{}", busy.all());
    no_secret(&busy);
    let row = rule_row(&busy, "PostgresConnectionsHigh");
    assert_eq!(row["ok"], false, "{row}");
    let detail = row["detail"].as_str().unwrap();
    assert!(detail.contains("db has 93.62% of its connections in use") && detail.contains("holds for 5m"), "{detail}");
    assert!(
        busy.row("db/postgres")["detail"].as_str().unwrap().contains("44 of 47 connections (94%)"),
        "{}",
        busy.stdout
    );

    // The daemon's view: pending, firing after `for: 5m`, resolved once the connections close.
    let mut story = Story::new(load(&text, &env));
    let (t, _) = story.tick("PostgresConnectionsHigh");
    assert_eq!(t, [Transition::Pending]);
    story.advance(Duration::from_secs(150));
    assert_eq!(story.tick("PostgresConnectionsHigh").0, [], "still pending after 2m30s");
    story.advance(Duration::from_secs(150));
    assert_eq!(story.tick("PostgresConnectionsHigh").0, [Transition::Fired], "fires after 5m");
    held.close();
    story.advance(Duration::from_secs(30));
    let (t, observations) = story.tick("PostgresConnectionsHigh");
    assert_eq!(t, [Transition::Resolved], "{:?}", observations.iter().map(|o| o.detail()).collect::<Vec<_>>());
    let after = check_json(&file, &[], &env);
    assert_eq!(after.code, 0, "{}", after.all());
}

#[test]
fn a_table_growing_against_a_small_disk_limit_fires_the_disk_rules_and_the_forecast() {
    let pg = stack_cluster();
    let dsn = dsn(&pg, "postgres", "matrix");
    let env = [("PG_DB", dsn.as_str())];
    let probe = config(&format!("services:\n{}", service_yaml("db", "")));
    let before = run(&["--config", probe.path.to_str().unwrap(), "pg", "report", "--json"], &env);
    let used = before.json()["disk"]["used_bytes"].as_u64().unwrap();
    let limit = used * 3 / 2; // 67 %: below the warning
    let text = format!("services:\n{}    disk_limit: {limit}\n", service_yaml("db", ""));
    let file = config(&text);
    let quiet = check_json(&file, &[], &env);
    assert_eq!(quiet.code, 0, "{}", quiet.all());
    assert_eq!(rule_row(&quiet, "PostgresDiskUsageHigh")["ok"], true, "{}", quiet.stdout);
    let history = rule_row(&quiet, "PostgresDiskFullSoon");
    assert!(history["detail"].as_str().unwrap().contains("a history of polls"), "one-shot check: {history}");
    assert!(
        quiet.row("db/postgres")["detail"].as_str().unwrap().contains("needs history: days until the disk is full")
    );

    let mut story = Story::new(load(&text, &env));
    story.tick("PostgresDiskFullSoon");
    // Grow a table by half the limit: over 90 % (its WAL grows too).
    let rows = limit / 2 / 1100 + 1;
    pg.psql("matrix", &format!("CREATE TABLE media (id bigserial, body text); INSERT INTO media (body) SELECT repeat(md5(i::text), 32) FROM generate_series(1, {rows}) i"));
    let full = check_json(&file, &[], &env);
    assert_eq!(full.code, 1, "{}", full.all());
    for alert in ["PostgresDiskUsageHigh", "PostgresDiskUsageCritical"] {
        let row = rule_row(&full, alert);
        assert_eq!(row["ok"], false, "{alert}: {row}");
        assert!(row["detail"].as_str().unwrap().contains("of its disk (disk_limit)"), "{row}");
    }

    // The forecast: two hours of (manual) time between the polls.
    story.advance(Duration::from_secs(2 * 3600));
    let (t, observations) = story.tick("PostgresDiskFullSoon");
    assert_eq!(t, [Transition::Pending], "{}", observations[0].detail());
    let days = observations[0].sample("pg_disk_days_until_full").unwrap();
    assert!(days < 1.0, "at this growth the disk is full within hours: {days}");
    assert!(
        observations[0].summary.contains("growing") && observations[0].summary.contains("full in 0 days"),
        "{}",
        observations[0].summary
    );
    story.advance(Duration::from_secs(3600));
    assert_eq!(story.tick("PostgresDiskFullSoon").0, [Transition::Fired], "after `for: 1h`");
}

#[test]
fn a_paused_replica_fires_the_replication_lag_critical() {
    let primary = stack_cluster();
    primary.psql("matrix", "CREATE TABLE t (id int); INSERT INTO t VALUES (1)");
    let replica = primary.start_replica();
    let wait_replayed = |n: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while replica.psql("matrix", "SELECT count(*) FROM t") != n {
            assert!(Instant::now() < deadline, "the replica did not replay the insert");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_replayed("1");
    // A transaction replayed by the replica itself (the first row came with the base backup):
    // from now on its lag is the age of the last replayed commit.
    primary.psql("matrix", "INSERT INTO t VALUES (2)");
    wait_replayed("2");
    let text = format!(
        "services:\n{}{}",
        service_yaml("primary", ""),
        service_yaml("replica", "    thresholds: { replication_lag_critical: 2s }\n")
    );
    let file = config(&text);
    let (p, r) = (dsn(&primary, "postgres", "matrix"), dsn(&replica, "postgres", "matrix"));
    let env = [("PG_PRIMARY", p.as_str()), ("PG_REPLICA", r.as_str())];
    let caught_up = check_json(&file, &[], &env);
    assert_eq!(caught_up.code, 0, "{}", caught_up.all());
    assert!(
        caught_up.row("replica/postgres")["detail"].as_str().unwrap().contains("replica; "),
        "{}",
        caught_up.stdout
    );
    assert!(
        caught_up.row("replica/postgres")["detail"].as_str().unwrap().contains("replication lag 0s"),
        "{}",
        caught_up.stdout
    );
    assert!(
        caught_up.row("primary/postgres")["detail"].as_str().unwrap().contains("1 standby"),
        "{}",
        caught_up.stdout
    );

    replica.psql("postgres", "SELECT pg_wal_replay_pause()");
    primary.psql("matrix", "INSERT INTO t VALUES (3)");
    std::thread::sleep(Duration::from_secs(3));
    primary.psql("matrix", "INSERT INTO t VALUES (4)");
    let lagging = check_json(&file, &[], &env);
    assert_eq!(lagging.code, 1, "{}", lagging.all());
    no_secret(&lagging);
    let row = lagging
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["check"] == "PostgresReplicationLag" && r["service"] == "replica")
        .cloned()
        .unwrap();
    assert_eq!(row["ok"], false, "{row}");
    assert!(
        row["detail"].as_str().unwrap().split(" — ").next().unwrap().contains("replica (a replica) replays"),
        "{row}"
    );
    let report =
        run(&["--config", file.path.to_str().unwrap(), "pg", "report", "--service", "replica", "--json"], &env);
    assert_eq!(report.code, 1, "a firing rule makes the report unhealthy: {}", report.all());
    let replication = &report.json()["replication"];
    assert_eq!(replication["role"], "replica");
    assert_eq!(replication["replica"]["paused"], true, "{replication}");
    assert!(replication["lag_seconds"].as_f64().unwrap() >= 3.0, "{replication}");
    let primary_report =
        run(&["--config", file.path.to_str().unwrap(), "pg", "report", "--service", "primary", "--json"], &env);
    let standby = &primary_report.json()["replication"]["standbys"][0];
    assert_eq!(standby["state"], "streaming", "{standby}");
    assert!(standby["replay_bytes"].as_f64().unwrap() > 0.0, "the primary sees WAL not replayed: {standby}");

    replica.psql("postgres", "SELECT pg_wal_replay_resume()");
    wait_replayed("4");
    let resumed = check_json(&file, &[], &env);
    assert_eq!(resumed.code, 0, "{}", resumed.all());
}

#[test]
fn a_role_without_pg_monitor_and_a_server_without_pg_stat_statements_are_told_what_is_missing() {
    let pg = stack_cluster();
    pg.psql("postgres", "CREATE ROLE monitor LOGIN");
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("pgpass");
    std::fs::write(&password, format!("{SECRET}\n")).unwrap();
    let text = format!(
        "services:\n  db:\n    kind: postgres\n    dsn: \"postgresql://monitor@127.0.0.1:{}/matrix\"\n    password_file: {}\n    databases: [matrix, mas]\n",
        pg.port,
        password.display()
    );
    let file = config(&text);
    // Another role's session, idle in a transaction: the monitor role sees it, but not its state.
    let other = Held::open(&pg.dsn("mas"), 1);
    let mut other = other;
    other.runtime.block_on(async {
        sqlx::raw_sql("BEGIN; SELECT 1").execute(&mut other.conns[0]).await.unwrap();
    });
    let plain = check_json(&file, &[], &[]);
    assert_eq!(plain.code, 0, "missing facts do not fail the check: {}", plain.all());
    no_secret(&plain);
    let detail = plain.row("db/postgres")["detail"].as_str().unwrap().to_string();
    for needle in [
        "missing: ",
        "state, query and transaction ages of 1 sessions of other roles (shown as state=\"unknown\"): GRANT pg_monitor TO monitor",
        "WAL size (pg_ls_waldir() needs pg_monitor): disk use counts the databases only",
        "query time: pg_stat_statements is not installed in database matrix (CREATE EXTENSION pg_stat_statements; it must also be in shared_preload_libraries)",
    ] {
        assert!(detail.contains(needle), "{needle:?} not in {detail}");
    }
    assert!(rule_row(&plain, "PostgresQueriesSlow")["detail"].as_str().unwrap().contains("needs pg_stat_statements"));
    let report = run(&["--config", file.path.to_str().unwrap(), "pg", "report"], &[]);
    no_secret(&report);
    assert!(
        report.stdout.contains("Not visible to monitor:")
            && report.stdout.contains("pg_stat_statements is not installed"),
        "{}",
        report.stdout
    );
    assert!(report.stdout.contains("unknown"), "hidden sessions are listed as `unknown`: {}", report.stdout);

    pg.psql("postgres", "GRANT pg_monitor TO monitor");
    pg.psql("matrix", "CREATE EXTENSION pg_stat_statements");
    let granted = check_json(&file, &[], &[]);
    assert_eq!(granted.code, 0, "{}", granted.all());
    let detail = granted.row("db/postgres")["detail"].as_str().unwrap().to_string();
    assert!(!detail.contains("missing:"), "pg_monitor and the extension leave nothing missing: {detail}");
    assert!(detail.contains("needs history: query time"), "one poll has no delta yet: {detail}");
    assert!(detail.contains("WAL"), "the WAL is counted now: {detail}");
    other.close();
}

#[test]
fn query_time_comes_from_pg_stat_statements_deltas_between_polls() {
    let pg = stack_cluster();
    pg.psql("matrix", "CREATE EXTENSION pg_stat_statements");
    let text = format!("services:\n{}", service_yaml("db", "    thresholds: { query_time_warning: 100ms }\n"));
    let dsn = dsn(&pg, "postgres", "matrix");
    let mut story = Story::new(load(&text, &[("PG_DB", dsn.as_str())]));
    story.tick("PostgresQueriesSlow");
    for _ in 0..3 {
        pg.psql("mas", "SELECT pg_sleep(0.3)");
    }
    story.advance(Duration::from_secs(30));
    let (t, observations) = story.tick("PostgresQueriesSlow");
    assert_eq!(t, [Transition::Pending], "{}", observations[0].detail());
    let mean = observations[0]
        .samples
        .iter()
        .find(|s| s.name == "pg_stat_statements_mean_seconds" && s.labels["datname"] == "mas")
        .map(|s| s.value)
        .unwrap();
    assert!((0.3..0.5).contains(&mean), "three 300 ms statements in mas: {mean}");
    // The next poll visits mas for its tables (no extension there: the figure is held), the one
    // after reads pg_stat_statements at home again: only the probe's own quick statements ran
    // in mas since, so the (pending) alert is gone.
    story.advance(Duration::from_secs(30));
    let (t, observations) = story.tick("PostgresQueriesSlow");
    assert_eq!(t, [], "held while away: {}", observations[0].detail());
    assert!(story.active.contains(&"PostgresQueriesSlow".to_string()), "still pending");
    story.advance(Duration::from_secs(30));
    let (_, observations) = story.tick("PostgresQueriesSlow");
    assert!(!story.active.contains(&"PostgresQueriesSlow".to_string()), "{}", observations[0].detail());
}

#[test]
fn a_poll_still_running_on_a_stuck_server_is_not_started_again() {
    let pg = stack_cluster();
    let text =
        format!("defaults: {{ timeout: 1s }}\nservices:\n{}", service_yaml("db", "    statement_timeout: 500ms\n"));
    let dsn = dsn(&pg, "postgres", "matrix");
    let config = load(&text, &[("PG_DB", dsn.as_str())]);
    let spec = config.checks.iter().find(|c| c.id.0 == "db/postgres").unwrap().clone();
    let prober = Arc::new(Prober::new(Arc::new(mxwarden::clock::SystemClock)));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let pid = pg.postmaster_pid().to_string();
    struct Resume(String);
    impl Drop for Resume {
        fn drop(&mut self) {
            let _ = std::process::Command::new("kill").args(["-CONT", &self.0]).status();
        }
    }
    assert!(std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let resume = Resume(pid);
    let (first, second) = runtime.block_on(async {
        let (p, s) = (prober.clone(), spec.clone());
        let first = tokio::spawn(async move { p.run(&s).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        let second = prober.run(&spec).await;
        let took = started.elapsed();
        (first.await.unwrap(), (second, took))
    });
    assert!(!first.ok && first.failures[0].starts_with("timed out"), "{:?}", first.failures);
    let (second, took) = second;
    assert!(!second.ok, "{second:?}");
    assert!(
        second.failures[0].contains("is still running") && second.failures[0].contains("not starting another"),
        "{:?}",
        second.failures
    );
    assert!(took < Duration::from_millis(200), "answered at once, no second connection: {took:?}");
    assert_eq!(second.sample("pg_up"), Some(0.0));
    drop(resume);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let third = runtime.block_on(prober.run(&spec));
        if third.ok {
            break;
        }
        assert!(Instant::now() < deadline, "the server answers again once resumed: {:?}", third.failures);
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn config_errors_name_the_line_and_never_show_the_dsn() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "services:\n  db:\n    kind: postgres\n    dsn: \"postgresql://u:Sup3r-s3cret-pw@h/d?sslmode=verify\"\n",
            "mxwarden.yaml:4:10: services.db.dsn: unknown sslmode `verify`",
            "a bad sslmode, with its line, without the line's text",
        ),
        (
            "services:\n  db:\n    kind: postgres\n    url: http://x\n",
            "services.db.dsn: kind postgres needs `dsn`",
            "no dsn",
        ),
        (
            "services:\n  db: { kind: postgres, dsn: \"host=h user=u password=Sup3r-s3cret-pw\", url: \"http://x\" }\n",
            "`url` does not apply to kind postgres",
            "an HTTP key on a postgres service",
        ),
        (
            "defaults: { timeout: 2s }\nservices:\n  db: { kind: postgres, dsn: \"host=h user=u\", statement_timeout: 5s }\n",
            "services.db.statement_timeout: must be more than 0 and shorter than the check's timeout (2s)",
            "the server must give up first",
        ),
        (
            "services:\n  db: { kind: postgres, dsn: \"host=h user=u\", thresholds: { disk_warnng: 70% } }\n",
            "did you mean `disk_warning`?",
            "threshold names are checked",
        ),
        (
            "services:\n  web: { kind: vikunja, dsn: \"host=h user=u\" }\n",
            "services.web.url: kind vikunja needs `url`",
            "other kinds still need a url",
        ),
    ];
    for (text, want, why) in cases {
        let file = config(text);
        let out = run(&["--config", file.path.to_str().unwrap(), "config", "check"], &[]);
        assert_eq!(out.code, 2, "{why}: {}", out.all());
        assert!(out.stderr.contains(want), "{why}: {want:?} not in {}", out.stderr);
        no_secret(&out);
    }
}

#[test]
fn the_password_never_shows_in_config_show_check_or_errors() {
    let pg = stack_cluster();
    let file = config(&format!("services:\n{}    disk_limit: 256MiB\n", service_yaml("db", "")));
    let path = file.path.to_str().unwrap();
    let good = dsn(&pg, "postgres", "matrix");
    let show = run(&["--config", path, "config", "show", "--json"], &[("PG_DB", &good)]);
    assert_eq!(show.code, 0, "{}", show.all());
    no_secret(&show);
    let check = show.json()["checks"].as_array().unwrap().iter().find(|c| c["name"] == "db/postgres").unwrap().clone();
    assert_eq!(
        check["postgres"]["dsn"],
        format!("postgresql://postgres:<redacted>@127.0.0.1:{}/matrix?sslmode=prefer", pg.port)
    );
    assert_eq!(check["postgres"]["disk_limit"], "256MiB");
    assert_eq!(check["postgres"]["statement_timeout"], "5s");

    let closed = crate::support::free_port();
    let refused = format!("postgresql://postgres:{SECRET}@127.0.0.1:{closed}/matrix");
    let down = check_json(&file, &[], &[("PG_DB", &refused)]);
    assert_eq!(down.code, 1, "{}", down.all());
    no_secret(&down);
    let detail = down.row("db/postgres")["detail"].as_str().unwrap().to_string();
    assert!(
        detail.starts_with(&format!("connection refused by 127.0.0.1:{closed} (postgresql://postgres:<redacted>@")),
        "{detail}"
    );
    assert_eq!(down.row("PostgresDown")["ok"], false, "PostgreSQL down is the runbook's critical alert");
    let report = run(&["--config", path, "pg", "report", "--json"], &[("PG_DB", &refused)]);
    assert_eq!(report.code, 1, "{}", report.all());
    no_secret(&report);
    assert!(report.json()["error"].as_str().unwrap().starts_with("connection refused"), "{}", report.stdout);

    let missing_db = format!("postgresql://postgres:{SECRET}@127.0.0.1:{}/nope", pg.port);
    let nope = check_json(&file, &[], &[("PG_DB", &missing_db)]);
    no_secret(&nope);
    let detail = nope.row("db/postgres")["detail"].as_str().unwrap().to_string();
    assert!(detail.starts_with("database \"nope\" does not exist (SQLSTATE 3D000)"), "{detail}");
    let tls = format!("postgresql://postgres:{SECRET}@127.0.0.1:{}/matrix?sslmode=require", pg.port);
    let no_tls = check_json(&file, &[], &[("PG_DB", &tls)]);
    no_secret(&no_tls);
    let detail = no_tls.row("db/postgres")["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("TLS with 127.0.0.1") && detail.contains("sslmode=require"), "{detail}");
}

#[test]
fn exported_postgres_rules_pass_promtool_check_rules() {
    let file = config(
        "services:\n  db: { kind: postgres, dsn: \"host=h user=u\", disk_limit: 256MiB, thresholds: { disk_warning: 75% } }\n",
    );
    let out = run(&["--config", file.path.to_str().unwrap(), "rules", "export"], &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    let exported = file.path.with_file_name("rules.yml");
    std::fs::write(&exported, &out.stdout).unwrap();
    let check =
        std::process::Command::new("promtool").arg("check").arg("rules").arg(&exported).output().expect("run promtool");
    let text = format!("{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
    assert!(check.status.success(), "promtool rejects the export:\n{text}\n{}", out.stdout);
    assert!(text.contains("SUCCESS: 9 rules found"), "8 preset rules + PostgresDown: {text}");
    assert!(out.stdout.contains("pg_disk_usage_ratio{service=\"db\"} > 0.75"), "the override: {}", out.stdout);

    // Two postgres services: the rule over Synapse's histogram is exported once.
    let two = config(
        "services:\n  db: { kind: postgres, dsn: \"host=h user=u\" }\n  other: { kind: postgres, dsn: \"host=h2 user=u\" }\n",
    );
    let out = run(&["--config", two.path.to_str().unwrap(), "rules", "export"], &[]);
    assert_eq!(out.stdout.matches("alert: PostgresQueriesSlowP95").count(), 1, "{}", out.stdout);
    assert_eq!(out.stdout.matches("alert: PostgresConnectionsHigh").count(), 2, "{}", out.stdout);
}
