//! What one poll asks the server, and the typed facts it answers. Every question is ONE
//! statement that returns one JSON document, so a poll costs one round trip per question:
//! the cluster facts (always), `pg_stat_statements` (when installed in the connected
//! database), and the largest tables of the connected database (when due). Each runs in its own
//! implicit transaction, read-only, under `SET LOCAL statement_timeout` and `lock_timeout`
//! (LOCAL, so nothing leaks into a pooled server connection behind PgBouncer). The SQL is
//! `stack-reference.md` §6, guarded so that a role without `pg_monitor` gets NULLs, never an
//! error. `probe::postgres` runs these; `samples` and `report` read the facts.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The limits every statement runs under.
pub(crate) fn guard(statement_timeout: Duration, lock_timeout: Duration) -> String {
    format!(
        "SET LOCAL statement_timeout = {}; SET LOCAL lock_timeout = {}; SET LOCAL transaction_read_only = on; ",
        statement_timeout.as_millis().max(1),
        lock_timeout.as_millis().max(1)
    )
}

/// The cluster facts: settings, privileges, sessions, databases, locks, WAL, replication.
/// Visible from any database. `pg_current_wal_lsn()` is only evaluated on a primary (CASE),
/// and every privileged function is behind `pg_has_role` or `has_database_privilege`.
pub(crate) const CLUSTER: &str = r#"
SELECT json_build_object(
  'server_version_num', current_setting('server_version_num')::int,
  'server_version', current_setting('server_version'),
  'current_user', current_user,
  'current_database', current_database(),
  'in_recovery', pg_is_in_recovery(),
  'superuser', (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
  'read_all_stats', pg_has_role('pg_read_all_stats', 'MEMBER'),
  'monitor', pg_has_role('pg_monitor', 'MEMBER'),
  'max_connections', current_setting('max_connections')::int,
  'superuser_reserved_connections', current_setting('superuser_reserved_connections')::int,
  'reserved_connections', coalesce(nullif(current_setting('reserved_connections', true), ''), '0')::int,
  'pgss_version', (SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements'),
  'activity', (SELECT coalesce(json_agg(a), '[]') FROM (
      SELECT datname, state, application_name, backend_type,
             pid = pg_backend_pid() AS me,
             count(*) AS n,
             max(extract(epoch FROM now() - query_start)) FILTER (WHERE state = 'active') AS max_query,
             max(extract(epoch FROM now() - xact_start)) AS max_xact,
             max(extract(epoch FROM now() - state_change))
               FILTER (WHERE state IN ('idle in transaction', 'idle in transaction (aborted)')) AS max_idle_xact,
             count(*) FILTER (WHERE wait_event_type = 'Lock') AS waiting,
             max(extract(epoch FROM now() - query_start)) FILTER (WHERE wait_event_type = 'Lock') AS max_wait
      FROM pg_stat_activity GROUP BY 1, 2, 3, 4, 5) a),
  'databases', (SELECT coalesce(json_agg(d), '[]') FROM (
      SELECT d.oid::bigint AS oid, d.datname AS name, d.datallowconn AS allow_connections,
             CASE WHEN has_database_privilege(d.oid, 'CONNECT') OR pg_has_role('pg_read_all_stats', 'MEMBER')
                  THEN pg_database_size(d.oid) END AS size,
             age(d.datfrozenxid) AS xid_age, mxid_age(d.datminmxid) AS mxid_age,
             s.numbackends, s.xact_commit, s.xact_rollback, s.blks_read, s.blks_hit, s.temp_bytes,
             s.deadlocks, s.conflicts
      FROM pg_database d LEFT JOIN pg_stat_database s ON s.datid = d.oid ORDER BY d.datname) d),
  'locks', (SELECT coalesce(json_agg(l), '[]') FROM (
      SELECT coalesce(d.datname, '') AS datname, l.mode, count(*) AS n
      FROM pg_locks l LEFT JOIN pg_database d ON d.oid = l.database GROUP BY 1, 2) l),
  'replica', CASE WHEN pg_is_in_recovery() THEN json_build_object(
      'caught_up', pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn(),
      'backlog_bytes', pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()),
      'replay_age', extract(epoch FROM now() - pg_last_xact_replay_timestamp()),
      'paused', pg_is_wal_replay_paused(),
      'replay_lsn', pg_last_wal_replay_lsn()::text) END,
  'standbys', CASE WHEN NOT pg_is_in_recovery() THEN (SELECT coalesce(json_agg(r), '[]') FROM (
      SELECT application_name, client_addr::text AS client_addr, state, sync_state,
             extract(epoch FROM write_lag) AS write_lag, extract(epoch FROM flush_lag) AS flush_lag,
             extract(epoch FROM replay_lag) AS replay_lag,
             pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) AS replay_bytes
      FROM pg_stat_replication) r) END,
  'server_ms', 1000 * extract(epoch FROM clock_timestamp() - statement_timestamp())
)::text
"#;

/// WAL on disk. A separate statement: `pg_ls_waldir()` needs `pg_monitor` (or superuser),
/// and PostgreSQL checks EXECUTE when it plans the statement, so a CASE cannot guard it.
pub(crate) const WAL: &str = "SELECT json_build_object('bytes', (SELECT sum(size) FROM pg_ls_waldir()))::text";

/// `pg_stat_statements` without query texts (`showtext => false` skips reading the texts
/// file), top-level statements only, for the extension `version` (1.8 renamed `total_time`,
/// 1.9 added `toplevel`).
pub(crate) fn statements(version: &str) -> String {
    let (major, minor) = version
        .split_once('.')
        .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
        .unwrap_or((1, 0));
    let total = if (major, minor) >= (1, 8) { "total_exec_time" } else { "total_time" };
    let toplevel = if (major, minor) >= (1, 9) { "toplevel" } else { "true" };
    format!(
        "SELECT coalesce(json_agg(json_build_array(userid::bigint, dbid::bigint, queryid, calls, {total})), '[]')::text \
         FROM pg_stat_statements(false) WHERE calls > 0 AND {toplevel}"
    )
}

/// The `limit` largest tables of the connected database (heap + TOAST + indexes), as in the
/// runbook's "High Database Disk Usage". `pg_total_relation_size` takes an ACCESS SHARE lock
/// per table: `lock_timeout` keeps a VACUUM FULL from holding the poll.
pub(crate) fn tables(limit: usize) -> String {
    format!(
        r#"SELECT coalesce(json_agg(t), '[]')::text FROM (
  SELECT n.nspname AS schema, c.relname AS name,
         pg_total_relation_size(c.oid) AS total_bytes, pg_relation_size(c.oid) AS heap_bytes,
         pg_indexes_size(c.oid) AS index_bytes,
         s.n_live_tup AS live_rows, s.n_dead_tup AS dead_rows,
         extract(epoch FROM greatest(s.last_vacuum, s.last_autovacuum)) AS last_vacuum
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
  WHERE c.relkind IN ('r', 'm', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname !~ '^pg_toast'
  ORDER BY 3 DESC, 2 LIMIT {limit}) t"#
    )
}

/// What [`CLUSTER`] answers.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Cluster {
    /// `server_version_num`, e.g. 150018.
    pub server_version_num: i64,
    /// `server_version`, e.g. `15.18 (Debian …)`.
    pub server_version: String,
    /// The role we are.
    pub current_user: String,
    /// The database we are connected to.
    pub current_database: String,
    /// A replica (standby) when true.
    pub in_recovery: bool,
    /// The role is a superuser.
    pub superuser: Option<bool>,
    /// The role has `pg_read_all_stats` (through `pg_monitor` or directly).
    pub read_all_stats: bool,
    /// The role has `pg_monitor`.
    pub monitor: bool,
    /// `max_connections`.
    pub max_connections: i64,
    /// `superuser_reserved_connections`.
    pub superuser_reserved_connections: i64,
    /// `reserved_connections` (PostgreSQL 16+; 0 before).
    pub reserved_connections: i64,
    /// The version of `pg_stat_statements` installed in the connected database.
    pub pgss_version: Option<String>,
    /// `pg_stat_activity`, grouped.
    pub activity: Vec<Activity>,
    /// Every database.
    pub databases: Vec<Database>,
    /// `pg_locks` by database and mode.
    pub locks: Vec<Locks>,
    /// Replica facts (on a replica).
    pub replica: Option<Replica>,
    /// Standbys (on a primary).
    pub standbys: Option<Vec<Standby>>,
    /// Server time spent on this statement, ms.
    pub server_ms: Option<f64>,
}

/// One group of sessions from `pg_stat_activity`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Activity {
    /// Database (NULL for background processes).
    pub datname: Option<String>,
    /// State; NULL for other roles' sessions without `pg_read_all_stats`.
    pub state: Option<String>,
    /// `application_name` (visible to everyone).
    pub application_name: Option<String>,
    /// `client backend`, `autovacuum worker`, …; NULL when hidden.
    pub backend_type: Option<String>,
    /// This group is the poll's own session.
    pub me: bool,
    /// Sessions.
    pub n: f64,
    /// Longest-running active query, s.
    pub max_query: Option<f64>,
    /// Oldest open transaction, s.
    pub max_xact: Option<f64>,
    /// Longest idle-in-transaction, s.
    pub max_idle_xact: Option<f64>,
    /// Sessions waiting for a lock.
    pub waiting: f64,
    /// Longest lock wait (time since the waiting query started), s.
    pub max_wait: Option<f64>,
}

impl Activity {
    /// A client session: a client backend, or a hidden session attached to a database
    /// (background processes have no database; hidden rows have no backend type).
    pub(crate) fn is_client(&self) -> bool {
        match self.backend_type.as_deref() {
            Some(t) => t == "client backend",
            None => self.datname.is_some(),
        }
    }
}

/// One database.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Database {
    /// Its oid (what `pg_stat_statements.dbid` holds).
    pub oid: i64,
    /// Name.
    pub name: String,
    /// `datallowconn`.
    pub allow_connections: bool,
    /// `pg_database_size`, when the role may read it.
    pub size: Option<f64>,
    /// `age(datfrozenxid)`: transactions since the oldest unfrozen XID.
    pub xid_age: Option<f64>,
    /// `mxid_age(datminmxid)`.
    pub mxid_age: Option<f64>,
    /// Sessions connected (`pg_stat_database.numbackends`).
    pub numbackends: Option<f64>,
    /// Commits since the statistics reset.
    pub xact_commit: Option<f64>,
    /// Rollbacks.
    pub xact_rollback: Option<f64>,
    /// Blocks read from disk (or the OS cache).
    pub blks_read: Option<f64>,
    /// Blocks found in shared buffers.
    pub blks_hit: Option<f64>,
    /// Bytes written to temporary files.
    pub temp_bytes: Option<f64>,
    /// Deadlocks detected.
    pub deadlocks: Option<f64>,
    /// Queries cancelled by recovery conflicts (replicas).
    pub conflicts: Option<f64>,
}

/// Locks of one mode in one database.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Locks {
    /// Database (empty for cluster-wide locks).
    pub datname: String,
    /// Lock mode.
    pub mode: String,
    /// How many.
    pub n: f64,
}

/// A replica's replay state.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Replica {
    /// Everything received is replayed.
    pub caught_up: Option<bool>,
    /// WAL received but not yet replayed, bytes.
    pub backlog_bytes: Option<f64>,
    /// `now() - pg_last_xact_replay_timestamp()`, s.
    pub replay_age: Option<f64>,
    /// Replay is paused (`pg_wal_replay_pause()`).
    pub paused: Option<bool>,
    /// The last WAL position replayed.
    #[serde(default)]
    pub replay_lsn: Option<String>,
}

/// One standby, seen from the primary.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Standby {
    /// Its `application_name` (`walreceiver` unless set).
    pub application_name: Option<String>,
    /// Its address.
    pub client_addr: Option<String>,
    /// `streaming`, `catchup`, …
    pub state: Option<String>,
    /// `async`, `sync`, …
    pub sync_state: Option<String>,
    /// s; NULL when caught up and idle, or hidden.
    pub write_lag: Option<f64>,
    /// s.
    pub flush_lag: Option<f64>,
    /// s.
    pub replay_lag: Option<f64>,
    /// WAL not yet replayed by the standby, bytes; NULL when hidden.
    pub replay_bytes: Option<f64>,
}

/// One row of [`statements`]: userid, dbid, queryid, calls, total ms.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Statement(pub i64, pub i64, pub Option<i64>, pub f64, pub f64);

/// One table of [`tables`].
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Table {
    /// Schema.
    pub schema: String,
    /// Table.
    pub name: String,
    /// Heap + TOAST + indexes, bytes.
    pub total_bytes: f64,
    /// Heap only.
    pub heap_bytes: f64,
    /// Indexes.
    pub index_bytes: f64,
    /// Estimated live rows.
    pub live_rows: Option<f64>,
    /// Estimated dead rows.
    pub dead_rows: Option<f64>,
    /// Last (auto)vacuum, seconds since the epoch.
    pub last_vacuum: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_sql_follows_the_extension_version() {
        let cases = [
            ("1.10", "total_exec_time", "toplevel", "PostgreSQL 15"),
            ("1.8", "total_exec_time", "AND true", "PostgreSQL 13: no toplevel column yet"),
            ("1.7", "total_time", "AND true", "PostgreSQL 12: the old column name"),
            ("junk", "total_time", "AND true", "an unreadable version gets the oldest shape"),
        ];
        for (version, column, toplevel, why) in cases {
            let sql = statements(version);
            assert!(sql.contains(column) && sql.contains(toplevel), "{version}: {why}: {sql}");
        }
    }

    #[test]
    fn hidden_sessions_attached_to_a_database_count_as_clients() {
        let row = |datname: Option<&str>, backend_type: Option<&str>| Activity {
            datname: datname.map(str::to_string),
            state: None,
            application_name: None,
            backend_type: backend_type.map(str::to_string),
            me: false,
            n: 1.0,
            max_query: None,
            max_xact: None,
            max_idle_xact: None,
            waiting: 0.0,
            max_wait: None,
        };
        let cases = [
            (row(Some("matrix"), Some("client backend")), true, "a visible client"),
            (row(None, Some("checkpointer")), false, "a background process"),
            (row(Some("matrix"), Some("autovacuum worker")), false, "a visible autovacuum worker"),
            (row(Some("matrix"), None), true, "another role's session, hidden without pg_read_all_stats"),
            (row(None, None), false, "a hidden background process"),
        ];
        for (r, want, why) in cases {
            assert_eq!(r.is_client(), want, "{why}");
        }
    }
}
