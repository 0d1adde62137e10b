//! `mxwarden pg report`'s facts: the runbook's PostgreSQL diagnosis in one pass — connection
//! count and states against the limit ("MAS Database Connection Errors"), database sizes
//! against the plan's disk and the ten largest tables of each database ("High Database Disk
//! Usage"), the longest and the blocked queries, replication, and the statements that took
//! the most time. One connection at a time: one per configured database for its tables,
//! then the DSN's database for everything else. `cli::pg` prints it; its samples feed the rules.

use super::samples::{self, Judged, PgState};
use super::sql::{self, Table};
use super::{PollError, PostgresSpec, connect, json, tables};
use crate::model::Labels;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The whole report. `--json` prints exactly this.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// The service's name.
    pub service: String,
    /// The DSN, password redacted.
    pub dsn: String,
    /// The server and the role.
    pub server: Server,
    /// Client connections against the limit.
    pub connections: Connections,
    /// Every database, largest first.
    pub databases: Vec<DatabaseRow>,
    /// Disk use against the plan's disk.
    pub disk: Disk,
    /// The largest tables of the DSN's database and of each configured database.
    pub tables: Vec<DatabaseTables>,
    /// Sessions in a transaction or running a query, oldest first.
    pub longest_queries: Vec<Session>,
    /// Sessions waiting for a lock, with who holds them up.
    pub blocked: Vec<Blocked>,
    /// Replication, from this server's side.
    pub replication: Replication,
    /// The statements that took the most time since pg_stat_statements was reset.
    pub statements: Statements,
    /// Facts the role cannot see, with the remedy.
    pub missing: Vec<String>,
    /// Configured databases that do not exist.
    pub problems: Vec<String>,
    /// The samples of this pass, for the rules (not printed).
    #[serde(skip)]
    pub judged: Judged,
}

/// The server and who we are on it.
#[derive(Debug, Serialize)]
pub(crate) struct Server {
    /// Version, e.g. `15.18`.
    pub version: String,
    /// `primary` or `replica`.
    pub role: &'static str,
    /// The role connected as.
    pub user: String,
    /// Whether it is a superuser.
    pub superuser: bool,
    /// Whether it has `pg_monitor`.
    pub pg_monitor: bool,
    /// The DSN's database.
    pub database: String,
}

/// A count per key.
#[derive(Debug, Serialize)]
pub(crate) struct Count {
    /// State, database or application.
    pub name: String,
    /// Sessions.
    pub count: u64,
}

/// Client connections.
#[derive(Debug, Serialize)]
pub(crate) struct Connections {
    /// Client sessions (this report's own included), what `max_connections` limits.
    pub total: u64,
    /// `max_connections`.
    pub max: u64,
    /// `superuser_reserved_connections` + `reserved_connections`.
    pub reserved: u64,
    /// What normal roles may open: `max` − `reserved`.
    pub usable: u64,
    /// `total` ÷ `usable`.
    pub usage_ratio: f64,
    /// By state (`unknown`: another role's session the role may not inspect).
    pub by_state: Vec<Count>,
    /// By database.
    pub by_database: Vec<Count>,
    /// By `application_name`.
    pub by_application: Vec<Count>,
}

/// One database.
#[derive(Debug, Serialize)]
pub(crate) struct DatabaseRow {
    /// Name.
    pub name: String,
    /// `pg_database_size`, when readable.
    pub size_bytes: Option<u64>,
    /// Share of `disk_limit`.
    pub share_of_disk: Option<f64>,
    /// Sessions connected.
    pub connections: Option<u64>,
    /// Transaction ID age (wraparound at about 2.1 billion; autovacuum freezes at 200 million).
    pub xid_age: Option<u64>,
    /// Shared-buffer hit ratio since the statistics reset.
    pub cache_hit_ratio: Option<f64>,
    /// Deadlocks since the statistics reset.
    pub deadlocks: Option<u64>,
}

/// Disk use.
#[derive(Debug, Serialize)]
pub(crate) struct Disk {
    /// Sum of the database sizes.
    pub databases_bytes: u64,
    /// WAL on disk (needs `pg_monitor`).
    pub wal_bytes: Option<u64>,
    /// Databases + WAL.
    pub used_bytes: u64,
    /// `disk_limit`.
    pub limit_bytes: Option<u64>,
    /// `used_bytes` ÷ `limit_bytes`.
    pub usage_ratio: Option<f64>,
}

/// The largest tables of one database.
#[derive(Debug, Serialize)]
pub(crate) struct DatabaseTables {
    /// Database.
    pub database: String,
    /// Largest first.
    pub tables: Vec<Table>,
    /// Why they could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A session in a transaction or running a query.
#[derive(Debug, Deserialize, Serialize)]
pub(crate) struct Session {
    /// Backend pid.
    pub pid: i64,
    /// Database.
    pub datname: Option<String>,
    /// Role.
    pub usename: Option<String>,
    /// `application_name`.
    pub application_name: Option<String>,
    /// `active`, `idle in transaction`, …
    pub state: Option<String>,
    /// What it waits for, e.g. `Lock/transactionid`.
    pub wait: Option<String>,
    /// Age of the current query, s.
    pub query_seconds: Option<f64>,
    /// Age of the transaction, s.
    pub xact_seconds: Option<f64>,
    /// Time in this state, s.
    pub state_seconds: Option<f64>,
    /// The query, blanks collapsed, first 200 characters.
    pub query: Option<String>,
}

/// A session waiting for a lock.
#[derive(Debug, Deserialize, Serialize)]
pub(crate) struct Blocked {
    /// Backend pid.
    pub pid: i64,
    /// Database.
    pub datname: Option<String>,
    /// Role.
    pub usename: Option<String>,
    /// The pids holding it up (`pg_blocking_pids`).
    pub blocked_by: Vec<i64>,
    /// How long its query has waited, s.
    pub waiting_seconds: Option<f64>,
    /// Its query, first 200 characters.
    pub query: Option<String>,
}

/// Replication.
#[derive(Debug, Serialize)]
pub(crate) struct Replication {
    /// `primary` or `replica`.
    pub role: &'static str,
    /// On a replica: lag and replay state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<sql::Replica>,
    /// On a replica: the lag the rule uses (0 when everything received is replayed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    /// On a primary: its standbys.
    pub standbys: Vec<sql::Standby>,
}

/// `pg_stat_statements`, cumulative since its last reset.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Statements {
    /// Whether it could be read in the DSN's database.
    pub available: bool,
    /// Why not, or what the figures mean.
    pub note: String,
    /// When the counters were last reset (PostgreSQL 14+).
    pub since: Option<String>,
    /// The ten that took the most total time.
    pub top: Vec<TopStatement>,
}

/// One statement.
#[derive(Debug, Deserialize, Serialize)]
pub(crate) struct TopStatement {
    /// Database.
    pub datname: Option<String>,
    /// Executions.
    pub calls: f64,
    /// Total time, ms.
    pub total_ms: f64,
    /// Mean, ms.
    pub mean_ms: f64,
    /// Slowest single execution, ms.
    pub max_ms: f64,
    /// Rows returned or affected.
    pub rows: f64,
    /// The normalized text (`$1` for constants), first 200 characters; hidden for other roles
    /// without `pg_read_all_stats`.
    pub query: Option<String>,
}

const LONGEST: &str = r#"SELECT coalesce(json_agg(q), '[]')::text FROM (
  SELECT pid, datname, usename, application_name, state,
         CASE WHEN wait_event IS NOT NULL THEN wait_event_type || '/' || wait_event END AS wait,
         extract(epoch FROM now() - query_start) AS query_seconds,
         extract(epoch FROM now() - xact_start) AS xact_seconds,
         extract(epoch FROM now() - state_change) AS state_seconds,
         left(regexp_replace(regexp_replace(query, '\s+', ' ', 'g'), '(password\s+)''(''''|[^''])*''', '\1''<redacted>''', 'gi'), 200) AS query
  FROM pg_stat_activity
  WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND state IS NOT NULL AND state <> 'idle'
  ORDER BY coalesce(xact_start, query_start) NULLS LAST LIMIT 10) q"#;

const BLOCKED: &str = r#"SELECT coalesce(json_agg(b), '[]')::text FROM (
  SELECT pid, datname, usename, pg_blocking_pids(pid) AS blocked_by,
         extract(epoch FROM now() - query_start) AS waiting_seconds,
         left(regexp_replace(regexp_replace(query, '\s+', ' ', 'g'), '(password\s+)''(''''|[^''])*''', '\1''<redacted>''', 'gi'), 200) AS query
  FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND cardinality(pg_blocking_pids(pid)) > 0
  ORDER BY query_start LIMIT 20) b"#;

fn top_statements(version: &str, with_info: bool) -> String {
    let new = !matches!(version.split_once('.'), Some(("1", minor)) if minor.parse::<u32>().is_ok_and(|m| m < 8));
    let (total, mean, max) = if new {
        ("total_exec_time", "mean_exec_time", "max_exec_time")
    } else {
        ("total_time", "mean_time", "max_time")
    };
    let since = if with_info { "(SELECT stats_reset FROM pg_stat_statements_info)::text" } else { "NULL" };
    format!(
        r#"SELECT json_build_object('since', {since}, 'top', (SELECT coalesce(json_agg(s), '[]') FROM (
  SELECT d.datname, s.calls, s.{total} AS total_ms, s.{mean} AS mean_ms, s.{max} AS max_ms, s.rows,
         left(regexp_replace(regexp_replace(s.query, '\s+', ' ', 'g'), '(password\s+)''(''''|[^''])*''', '\1''<redacted>''', 'gi'), 200) AS query
  FROM pg_stat_statements s LEFT JOIN pg_database d ON d.oid = s.dbid
  ORDER BY s.{total} DESC LIMIT 10) s))::text"#
    )
}

#[derive(Deserialize)]
struct StatementsAnswer {
    since: Option<String>,
    top: Vec<TopStatement>,
}

/// Gathers the report for `service`; its samples carry `labels`.
pub(crate) async fn gather(
    service: &str,
    spec: &PostgresSpec,
    labels: &Labels,
    timeout: Duration,
    now_ms: i64,
) -> Result<Report, PollError> {
    let home = spec.target.database.clone();
    let guard = sql::guard(spec.statement_timeout, spec.lock_timeout());
    // The configured databases' tables first, one connection each, one after the other: a
    // first connection to a database writes its relcache init file, so the sizes read last
    // (over the home connection) are the sizes as they stand after this report.
    let mut tables_by_db = Vec::new();
    for db in spec.databases.iter().filter(|d| **d != home) {
        let read = async {
            let mut conn = connect(&spec.target, db, timeout).await.map_err(|e| e.0)?;
            let t = tables(&mut conn, spec, &guard, 10).await;
            let _ = sqlx::Connection::close(conn).await;
            t
        }
        .await;
        tables_by_db.push(match read {
            Ok(tables) => DatabaseTables { database: db.clone(), tables, error: None },
            Err(e) => DatabaseTables { database: db.clone(), tables: Vec::new(), error: Some(e) },
        });
    }
    let mut conn = connect(&spec.target, &home, timeout).await?;
    let details = async {
        let home_tables = tables(&mut conn, spec, &guard, 10).await;
        let (gathered, _) = super::gather(&mut conn, spec, &home, false).await?;
        let longest: Vec<Session> = json(&mut conn, &guard, LONGEST).await.map_err(PollError)?;
        let blocked: Vec<Blocked> = json(&mut conn, &guard, BLOCKED).await.map_err(PollError)?;
        let statements = match &gathered.cluster.pgss_version {
            None => Statements {
                note: format!("pg_stat_statements is not installed in database {home} (CREATE EXTENSION pg_stat_statements)"),
                ..Statements::default()
            },
            Some(version) => {
                let with_info = gathered.cluster.server_version_num >= 140_000;
                match json::<StatementsAnswer>(&mut conn, &guard, &top_statements(version, with_info)).await {
                    Ok(a) => Statements {
                        available: true,
                        note: "cumulative since the reset: the server keeps sums, no percentiles; the probe's query time is \
                               the mean between two polls"
                            .into(),
                        since: a.since,
                        top: a.top,
                    },
                    Err(e) => Statements { note: format!("reading pg_stat_statements failed: {e}"), ..Statements::default() },
                }
            }
        };
        Ok::<_, PollError>((home_tables, gathered, longest, blocked, statements))
    }
    .await;
    let _ = sqlx::Connection::close(conn).await;
    let (home_tables, gathered, longest_queries, blocked, statements) = details?;
    let home_entry = match home_tables {
        Ok(tables) => DatabaseTables { database: home.clone(), tables, error: None },
        Err(e) => DatabaseTables { database: home.clone(), tables: Vec::new(), error: Some(e) },
    };
    tables_by_db.insert(0, home_entry);
    // A configured database that does not exist is a problem (below), not a table error.
    let existing: Vec<&str> = gathered.cluster.databases.iter().map(|d| d.name.as_str()).collect();
    tables_by_db.retain(|t| existing.contains(&t.database.as_str()));

    let mut state = PgState::default();
    let judged = samples::observe(spec, labels, &gathered, &mut state, now_ms);
    Ok(build(service, spec, gathered, judged, tables_by_db, longest_queries, blocked, statements))
}

#[allow(clippy::too_many_arguments)]
fn build(
    service: &str,
    spec: &PostgresSpec,
    g: samples::Gathered,
    judged: Judged,
    tables: Vec<DatabaseTables>,
    longest_queries: Vec<Session>,
    blocked: Vec<Blocked>,
    statements: Statements,
) -> Report {
    let c = &g.cluster;
    let clients: Vec<_> = c.activity.iter().filter(|a| a.is_client()).collect();
    let count_by = |key: &dyn Fn(&sql::Activity) -> String| {
        let mut map = std::collections::BTreeMap::<String, u64>::new();
        for a in &clients {
            *map.entry(key(a)).or_default() += a.n as u64;
        }
        let mut rows: Vec<Count> = map.into_iter().map(|(name, count)| Count { name, count }).collect();
        rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
        rows
    };
    let total: u64 = clients.iter().map(|a| a.n as u64).sum();
    let reserved = (c.superuser_reserved_connections + c.reserved_connections).max(0) as u64;
    let max = c.max_connections.max(0) as u64;
    let usable = max.saturating_sub(reserved).max(1);
    let limit = spec.disk_limit;
    let mut databases: Vec<DatabaseRow> = c
        .databases
        .iter()
        .map(|d| DatabaseRow {
            name: d.name.clone(),
            size_bytes: d.size.map(|s| s as u64),
            share_of_disk: d.size.zip(limit).map(|(s, l)| s / l as f64),
            connections: d.numbackends.map(|n| n as u64),
            xid_age: d.xid_age.map(|n| n as u64),
            cache_hit_ratio: d.blks_hit.zip(d.blks_read).filter(|(h, r)| h + r > 0.0).map(|(h, r)| h / (h + r)),
            deadlocks: d.deadlocks.map(|n| n as u64),
        })
        .collect();
    databases.sort_by(|a, b| b.size_bytes.cmp(&a.size_bytes).then_with(|| a.name.cmp(&b.name)));
    let databases_bytes: u64 = databases.iter().filter_map(|d| d.size_bytes).sum();
    let wal_bytes = match &g.wal {
        Some(Ok(w)) => Some(*w as u64),
        _ => None,
    };
    let used = databases_bytes + wal_bytes.unwrap_or(0);
    let replica_lag = c
        .replica
        .as_ref()
        .and_then(|r| if r.caught_up == Some(true) { Some(0.0) } else { r.replay_age.map(|a| a.max(0.0)) });
    Report {
        service: service.to_string(),
        dsn: spec.target.describe(),
        server: Server {
            version: c.server_version.split_whitespace().next().unwrap_or(&c.server_version).to_string(),
            role: if c.in_recovery { "replica" } else { "primary" },
            user: c.current_user.clone(),
            superuser: c.superuser.unwrap_or(false),
            pg_monitor: c.monitor,
            database: c.current_database.clone(),
        },
        connections: Connections {
            total,
            max,
            reserved,
            usable,
            usage_ratio: total as f64 / usable as f64,
            by_state: count_by(&|a| a.state.clone().unwrap_or_else(|| "unknown".into())),
            by_database: count_by(&|a| a.datname.clone().unwrap_or_default()),
            by_application: count_by(&|a| a.application_name.clone().unwrap_or_default()),
        },
        databases,
        disk: Disk {
            databases_bytes,
            wal_bytes,
            used_bytes: used,
            limit_bytes: limit,
            usage_ratio: limit.map(|l| used as f64 / l as f64),
        },
        tables,
        longest_queries,
        blocked,
        replication: Replication {
            role: if c.in_recovery { "replica" } else { "primary" },
            replica: c.replica.clone(),
            lag_seconds: replica_lag,
            standbys: c.standbys.clone().unwrap_or_default(),
        },
        statements,
        missing: judged.missing.clone(),
        problems: judged.failures.clone(),
        judged,
    }
}
