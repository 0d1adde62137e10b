//! From what one poll gathered (`sql` facts) and what earlier polls left in the probe's
//! state to samples named like postgres_exporter's, the failures that make the check fail,
//! and one line for people that also says which facts the role cannot see and which need a
//! history of polls. Pure: `probe::postgres` feeds it, table tests drive it.
//!
//! Query time is the mean of `pg_stat_statements` deltas between two reads (the server keeps
//! cumulative sums, no percentiles); the slowest statement's mean over the same interval is
//! reported too. Values that need a database other than the one a poll connected to (other
//! databases' tables; statements when the extension lives elsewhere) are held from the poll
//! that last read them, the way postgres_exporter caches expensive queries.

use super::PostgresSpec;
use super::forecast::SizeHistory;
use super::sql::{Cluster, Statement, Table};
use crate::model::{Labels, Sample};
use crate::units::human_bytes;
use std::collections::{BTreeMap, HashMap};

/// How long a database's table sizes are reused before a poll reads them again.
pub(crate) const TABLES_REFRESH_MS: i64 = 10 * 60_000;
/// The configured databases are first visited one a minute after the first poll, so the
/// first polls stay at home and give `pg_stat_statements` its first delta.
const FIRST_VISIT_STEP_MS: i64 = 60_000;
/// How long a query-time figure is repeated while polls cannot read `pg_stat_statements`.
const HOLD_MS: i64 = 15 * 60_000;

/// How a poll's read of `pg_stat_statements` went.
#[derive(Debug, Clone)]
pub enum StatementsRead {
    /// The rows.
    Rows(Vec<Statement>),
    /// The extension is not installed in the connected database.
    NotInstalled,
    /// Installed, but the library is not in `shared_preload_libraries`.
    NotLoaded,
    /// Failed for another reason.
    Failed(String),
}

/// What one poll gathered from the server.
#[derive(Debug, Clone)]
pub struct Gathered {
    /// The database the poll connected to.
    pub database: String,
    /// The cluster facts.
    pub cluster: Cluster,
    /// WAL on disk: `None` when not read (the role lacks `pg_monitor`).
    pub wal: Option<Result<f64, String>>,
    /// `pg_stat_statements`.
    pub statements: StatementsRead,
    /// The largest tables of `database`, when they were due.
    pub tables: Option<Result<Vec<Table>, String>>,
}

/// `(userid, dbid, queryid)`; the queryid is NULL for other roles' statements without
/// `pg_read_all_stats`, which are then summed per role and database.
type Key = (i64, i64, Option<i64>);

#[derive(Debug, Clone)]
struct Snapshot {
    at_ms: i64,
    by_key: HashMap<Key, (f64, f64)>,
}

impl Snapshot {
    fn of(rows: &[Statement], at_ms: i64) -> Self {
        let mut by_key: HashMap<Key, (f64, f64)> = HashMap::with_capacity(rows.len());
        for Statement(user, db, query, calls, total_ms) in rows {
            let entry = by_key.entry((*user, *db, *query)).or_default();
            entry.0 += calls;
            entry.1 += total_ms;
        }
        Self { at_ms, by_key }
    }
}

/// Statement time in one database over the interval between two reads.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DbQueryTime {
    /// Database.
    pub datname: String,
    /// Statements executed in the interval.
    pub calls: f64,
    /// Their mean execution time, s.
    pub mean_s: f64,
    /// The mean of the slowest statement (by its own mean), s; `None` when every statement
    /// was hidden.
    pub max_mean_s: Option<f64>,
}

/// Query time between two reads of `pg_stat_statements`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QueryTime {
    /// When the later read happened, ms.
    pub at_ms: i64,
    /// The interval, s.
    pub window_s: f64,
    /// Databases where statements ran.
    pub databases: Vec<DbQueryTime>,
}

/// Deltas per statement (a statement absent before, or whose counters went down — evicted
/// and re-added, or reset — counts from zero, as Prometheus treats a counter reset).
fn query_time(before: &Snapshot, now: &Snapshot, names: &HashMap<i64, String>) -> QueryTime {
    #[derive(Default)]
    struct Acc {
        calls: f64,
        total_ms: f64,
        max_mean_ms: Option<f64>,
    }
    let mut per_db: BTreeMap<i64, Acc> = BTreeMap::new();
    for (key, &(calls, total)) in &now.by_key {
        let (d_calls, d_total) = match before.by_key.get(key) {
            Some(&(c, t)) if calls >= c && total >= t => (calls - c, total - t),
            _ => (calls, total),
        };
        if d_calls <= 0.0 {
            continue;
        }
        let acc = per_db.entry(key.1).or_default();
        acc.calls += d_calls;
        acc.total_ms += d_total;
        if key.2.is_some() {
            let mean = d_total / d_calls;
            acc.max_mean_ms = Some(acc.max_mean_ms.map_or(mean, |m: f64| m.max(mean)));
        }
    }
    QueryTime {
        at_ms: now.at_ms,
        window_s: (now.at_ms - before.at_ms) as f64 / 1000.0,
        databases: per_db
            .into_iter()
            .map(|(db, a)| DbQueryTime {
                datname: names.get(&db).cloned().unwrap_or_else(|| format!("oid {db}")),
                calls: a.calls,
                mean_s: a.total_ms / a.calls / 1000.0,
                max_mean_s: a.max_mean_ms.map(|m| m / 1000.0),
            })
            .collect(),
    }
}

/// What the probe keeps between polls of one check.
#[derive(Debug, Default)]
pub(crate) struct PgState {
    /// The largest tables per database: when read (ms) and what.
    pub tables: BTreeMap<String, (i64, Result<Vec<Table>, String>)>,
    /// Databases that accepted connections at the last poll.
    pub known_databases: Option<Vec<String>>,
    snapshot: Option<Snapshot>,
    query_time: Option<QueryTime>,
    /// Disk use over time, for the forecast.
    pub sizes: SizeHistory,
    /// When the first poll was judged, ms.
    first_poll_ms: Option<i64>,
    /// On a replica with WAL waiting: the replay position, and since when polls saw it stay.
    replay_stuck: Option<(String, i64)>,
}

impl PgState {
    /// The database the next poll connects to: the first of the home database and the
    /// configured ones (that exist) whose table sizes are due, else home. One database per
    /// poll keeps a poll at one connection.
    pub(crate) fn next_database(&self, spec: &PostgresSpec, now_ms: i64) -> String {
        let home = &spec.target.database;
        if self.tables_due(home, now_ms) {
            return home.clone();
        }
        let (Some(known), Some(first)) = (&self.known_databases, self.first_poll_ms) else { return home.clone() };
        let away = spec.databases.iter().filter(|db| *db != home);
        for (i, db) in away.enumerate() {
            let due = match self.tables.get(db) {
                Some((at, _)) => now_ms - at >= TABLES_REFRESH_MS,
                None => now_ms - first >= (i as i64 + 1) * FIRST_VISIT_STEP_MS,
            };
            if due && known.contains(db) {
                return db.clone();
            }
        }
        home.clone()
    }

    /// Whether the table sizes of `db` are due.
    pub(crate) fn tables_due(&self, db: &str, now_ms: i64) -> bool {
        self.tables.get(db).is_none_or(|(at, _)| now_ms - at >= TABLES_REFRESH_MS)
    }
}

/// A judged poll.
#[derive(Debug, Clone, Default)]
pub(crate) struct Judged {
    /// The samples (without `pg_up`, `probe_success` and `probe_duration_seconds`).
    pub samples: Vec<Sample>,
    /// Why the check fails, if it does.
    pub failures: Vec<String>,
    /// The line for people.
    pub summary: String,
    /// Facts the role cannot see or the server does not provide, each with the remedy.
    pub missing: Vec<String>,
    /// Facts that need a history of polls.
    pub needs_history: Vec<String>,
}

struct Out<'a> {
    base: &'a Labels,
    samples: Vec<Sample>,
}

impl Out<'_> {
    fn push(&mut self, name: &str, extra: &[(&str, &str)], value: f64) {
        let mut labels = self.base.clone();
        for (k, v) in extra {
            labels.insert((*k).to_string(), (*v).to_string());
        }
        self.samples.push(Sample { name: name.to_string(), labels, value });
    }
}

fn percent(ratio: f64) -> String {
    format!("{:.0}%", ratio * 100.0)
}

/// Judges one poll; updates `state` (statements snapshot, tables, size history).
pub(crate) fn observe(spec: &PostgresSpec, base: &Labels, g: &Gathered, state: &mut PgState, now_ms: i64) -> Judged {
    let c = &g.cluster;
    state.first_poll_ms.get_or_insert(now_ms);
    let mut out = Out { base, samples: Vec::new() };
    let mut j = Judged::default();
    let mut summary = vec![format!(
        "PostgreSQL {}, {}",
        c.server_version.split_whitespace().next().unwrap_or(&c.server_version),
        if c.in_recovery { "replica" } else { "primary" }
    )];

    // Connections: client backends (what max_connections limits), ours included.
    let clients: Vec<_> = c.activity.iter().filter(|a| a.is_client()).collect();
    let total: f64 = clients.iter().map(|a| a.n).sum();
    let mut by_key: BTreeMap<(String, String, String), f64> = BTreeMap::new();
    for a in &clients {
        let key = (
            a.datname.clone().unwrap_or_default(),
            a.state.clone().unwrap_or_else(|| "unknown".into()),
            a.application_name.clone().unwrap_or_default(),
        );
        *by_key.entry(key).or_default() += a.n;
    }
    for ((datname, st, app), n) in &by_key {
        out.push("pg_stat_activity_count", &[("datname", datname), ("state", st), ("application_name", app)], *n);
    }
    let hidden: f64 = clients.iter().filter(|a| a.state.is_none()).map(|a| a.n).sum();
    let usable = (c.max_connections - c.superuser_reserved_connections - c.reserved_connections).max(1) as f64;
    out.push("pg_connections", &[], total);
    out.push("pg_settings_max_connections", &[], c.max_connections as f64);
    out.push("pg_settings_superuser_reserved_connections", &[], c.superuser_reserved_connections as f64);
    out.push("pg_settings_reserved_connections", &[], c.reserved_connections as f64);
    out.push("pg_connections_usable", &[], usable);
    out.push("pg_connections_usage_ratio", &[], total / usable);
    summary.push(format!("{total} of {usable} connections ({})", percent(total / usable)));
    if hidden > 0.0 {
        j.missing.push(format!(
            "state, query and transaction ages of {hidden} sessions of other roles (shown as state=\"unknown\"): \
             GRANT pg_monitor TO {}",
            c.current_user
        ));
    }

    // Session ages (our own poll excluded); only when every session is visible.
    let others: Vec<_> = clients.iter().filter(|a| !a.me).collect();
    let max_of = |f: fn(&super::sql::Activity) -> Option<f64>| others.iter().filter_map(|a| f(a)).fold(0.0, f64::max);
    out.push("pg_stat_activity_max_tx_duration", &[], max_of(|a| a.max_xact));
    out.push("pg_stat_activity_max_query_duration_seconds", &[], max_of(|a| a.max_query));
    out.push("pg_stat_activity_max_idle_in_transaction_seconds", &[], max_of(|a| a.max_idle_xact));
    out.push("pg_blocked_queries", &[], others.iter().map(|a| a.waiting).sum());
    out.push("pg_blocked_queries_max_wait_seconds", &[], max_of(|a| a.max_wait));

    // Databases.
    let mut names: HashMap<i64, String> = HashMap::new();
    let mut unreadable = Vec::new();
    let mut db_sum = 0.0;
    for d in &c.databases {
        names.insert(d.oid, d.name.clone());
        let l = [("datname", d.name.as_str())];
        match d.size {
            Some(size) => {
                out.push("pg_database_size_bytes", &l, size);
                db_sum += size;
            }
            None => unreadable.push(d.name.clone()),
        }
        let counters = [
            ("pg_database_wraparound_age_datfrozenxid_seconds", d.xid_age),
            ("pg_database_wraparound_age_datminmxid_seconds", d.mxid_age),
            ("pg_stat_database_numbackends", d.numbackends),
            ("pg_stat_database_xact_commit", d.xact_commit),
            ("pg_stat_database_xact_rollback", d.xact_rollback),
            ("pg_stat_database_blks_read", d.blks_read),
            ("pg_stat_database_blks_hit", d.blks_hit),
            ("pg_stat_database_temp_bytes", d.temp_bytes),
            ("pg_stat_database_deadlocks", d.deadlocks),
            ("pg_stat_database_conflicts", d.conflicts),
        ];
        for (name, value) in counters {
            if let Some(v) = value {
                out.push(name, &l, v);
            }
        }
        if let (Some(hit), Some(read)) = (d.blks_hit, d.blks_read)
            && hit + read > 0.0
        {
            out.push("pg_cache_hit_ratio", &l, hit / (hit + read));
        }
    }
    if !unreadable.is_empty() {
        j.missing.push(format!(
            "size of database {} (no CONNECT privilege): GRANT CONNECT ON DATABASE … TO {}, or pg_monitor",
            unreadable.join(", "),
            c.current_user
        ));
    }
    for wanted in &spec.databases {
        if !c.databases.iter().any(|d| &d.name == wanted) {
            j.failures.push(format!(
                "database `{wanted}` does not exist (the runbook's \"verify the database exists\"; its service cannot start without it)"
            ));
        }
    }
    state.known_databases = Some(c.databases.iter().filter(|d| d.allow_connections).map(|d| d.name.clone()).collect());
    for l in &c.locks {
        out.push("pg_locks_count", &[("datname", &l.datname), ("mode", &l.mode)], l.n);
    }

    // Disk: databases plus WAL (when the role may list it) against the plan's disk.
    let wal = match &g.wal {
        Some(Ok(bytes)) => {
            out.push("pg_wal_size_bytes", &[], *bytes);
            Some(*bytes)
        }
        Some(Err(why)) => {
            j.missing.push(format!("WAL size: {why}"));
            None
        }
        None => {
            j.missing.push(format!(
                "WAL size (pg_ls_waldir() needs pg_monitor): disk use counts the databases only; GRANT pg_monitor TO {}",
                c.current_user
            ));
            None
        }
    };
    let used = db_sum + wal.unwrap_or(0.0);
    out.push("pg_disk_used_bytes", &[], used);
    let wal_text = wal.map(|w| format!(" + {} WAL", human_bytes(w as u64))).unwrap_or_default();
    let mut disk =
        format!("{} in {} databases{wal_text}", human_bytes(db_sum as u64), c.databases.len() - unreadable.len());
    state.sizes.record(now_ms, used);
    match spec.disk_limit {
        Some(limit) => {
            let limit = limit as f64;
            out.push("pg_disk_limit_bytes", &[], limit);
            out.push("pg_disk_usage_ratio", &[], used / limit);
            disk.push_str(&format!(
                " = {} of {} ({})",
                human_bytes(used as u64),
                human_bytes(limit as u64),
                percent(used / limit)
            ));
            match state.sizes.forecast(limit) {
                Some(f) => {
                    out.push("pg_disk_growth_bytes_per_day", &[], f.bytes_per_day);
                    out.push("pg_disk_days_until_full", &[], f.days_until_full);
                    if f.days_until_full.is_finite() {
                        disk.push_str(&format!(
                            ", growing {}/day, full in {:.0} days",
                            human_bytes(f.bytes_per_day.max(0.0) as u64),
                            f.days_until_full
                        ));
                    } else {
                        disk.push_str(", not growing");
                    }
                }
                None => j.needs_history.push(format!(
                    "days until the disk is full (a trend over at least {}h of polls; this history spans {}s: `mxwarden run` keeps one)",
                    super::forecast::MIN_SPAN_MS / 3_600_000,
                    state.sizes.span_ms() / 1000
                )),
            }
        }
        None => disk.push_str(" (set disk_limit to compare with the disk)"),
    }
    summary.push(disk);

    // Replication.
    out.push("pg_replication_is_replica", &[], if c.in_recovery { 1.0 } else { 0.0 });
    if let Some(r) = &c.replica {
        // postgres_exporter's rule: caught up means no lag, even when the primary is idle and
        // the last replayed transaction is old.
        let caught_up = r.caught_up == Some(true);
        // WAL waiting while the replay position does not move: stuck at least since we saw it
        // first (the only measure when nothing was replayed since the replica started).
        state.replay_stuck = match (&r.replay_lsn, state.replay_stuck.take()) {
            (Some(lsn), Some((seen, since))) if !caught_up && *lsn == seen => Some((seen, since)),
            (Some(lsn), _) if !caught_up => Some((lsn.clone(), now_ms)),
            _ => None,
        };
        let stuck = state.replay_stuck.as_ref().map(|(_, since)| (now_ms - since) as f64 / 1000.0);
        let lag = if caught_up {
            Some(0.0)
        } else {
            match (r.replay_age.map(|a| a.max(0.0)), stuck) {
                (Some(age), Some(stuck)) => Some(age.max(stuck)),
                (Some(age), None) => Some(age),
                (None, Some(stuck)) if stuck > 0.0 => Some(stuck),
                _ => None,
            }
        };
        match lag {
            Some(lag) => {
                out.push("pg_replication_lag_seconds", &[], lag);
                summary.push(format!(
                    "replication lag {lag:.0}s{}",
                    if r.paused == Some(true) { " (replay paused)" } else { "" }
                ));
            }
            None => j.missing.push(
                "replication lag: WAL is waiting but no transaction was replayed since this replica started; \
                 the next poll measures how long the replay position stays put"
                    .into(),
            ),
        }
        if let Some(b) = r.backlog_bytes {
            out.push("pg_replication_replay_backlog_bytes", &[], b);
        }
        if let Some(p) = r.paused {
            out.push("pg_replication_replay_paused", &[], if p { 1.0 } else { 0.0 });
        }
    } else {
        out.push("pg_replication_lag_seconds", &[], 0.0);
    }
    let mut hidden_standbys = 0;
    for s in c.standbys.iter().flatten() {
        let (app, addr) = (s.application_name.clone().unwrap_or_default(), s.client_addr.clone().unwrap_or_default());
        let (state_, sync) =
            (s.state.clone().unwrap_or_else(|| "unknown".into()), s.sync_state.clone().unwrap_or_default());
        let l = [
            ("application_name", app.as_str()),
            ("client_addr", addr.as_str()),
            ("state", state_.as_str()),
            ("sync_state", sync.as_str()),
        ];
        let Some(bytes) = s.replay_bytes else {
            hidden_standbys += 1;
            continue;
        };
        out.push("pg_stat_replication_pg_wal_lsn_diff", &l, bytes);
        // NULL lags on a standby that has everything mean it is idle and caught up.
        let caught_up = bytes <= 0.0;
        for (name, lag) in [
            ("pg_stat_replication_write_lag_seconds", s.write_lag),
            ("pg_stat_replication_flush_lag_seconds", s.flush_lag),
            ("pg_stat_replication_replay_lag_seconds", s.replay_lag),
        ] {
            if let Some(v) = lag.or(caught_up.then_some(0.0)) {
                out.push(name, &l, v);
            }
        }
    }
    if let Some(standbys) = &c.standbys
        && !standbys.is_empty()
    {
        summary.push(format!("{} standby{}", standbys.len(), if standbys.len() == 1 { "" } else { "s" }));
    }
    if hidden_standbys > 0 {
        j.missing.push(format!(
            "lag of {hidden_standbys} standby(s): pg_stat_replication hides LSNs and lags; GRANT pg_monitor TO {}",
            c.current_user
        ));
    }

    // Tables: this poll's database, the others held from their last read.
    if let Some(tables) = &g.tables {
        state.tables.insert(g.database.clone(), (now_ms, tables.clone()));
    }
    let tracked: Vec<&String> = std::iter::once(&spec.target.database).chain(spec.databases.iter()).collect();
    state.tables.retain(|db, _| tracked.contains(&db));
    for (db, (_, tables)) in &state.tables {
        match tables {
            Ok(tables) => {
                for t in tables {
                    out.push(
                        "pg_table_size_bytes",
                        &[("datname", db), ("schemaname", &t.schema), ("relname", &t.name)],
                        t.total_bytes,
                    );
                }
            }
            Err(why) => j.missing.push(format!("largest tables of {db}: {why}")),
        }
    }

    // Query time.
    match &g.statements {
        StatementsRead::Rows(rows) => {
            let now = Snapshot::of(rows, now_ms);
            if let Some(before) = &state.snapshot
                && now.at_ms > before.at_ms
            {
                state.query_time = Some(query_time(before, &now, &names));
            } else {
                j.needs_history.push(
                    "query time (the difference between two reads of pg_stat_statements: `mxwarden run` keeps one)"
                        .into(),
                );
            }
            if rows.iter().any(|s| s.2.is_none()) {
                j.missing.push(format!(
                    "statement ids of other roles (pg_stat_statements hides them): the slowest-statement figure covers {}'s own; GRANT pg_monitor TO {}",
                    c.current_user, c.current_user
                ));
            }
            state.snapshot = Some(now);
        }
        other => {
            let held = state.query_time.as_ref().is_some_and(|q| now_ms - q.at_ms <= HOLD_MS);
            if !held {
                state.query_time = None;
                j.missing.push(match other {
                    StatementsRead::NotInstalled => format!(
                        "query time: pg_stat_statements is not installed in database {} (CREATE EXTENSION pg_stat_statements; \
                         it must also be in shared_preload_libraries)",
                        g.database
                    ),
                    StatementsRead::NotLoaded => "query time: pg_stat_statements is installed but not loaded \
                                                  (add it to shared_preload_libraries and restart PostgreSQL)"
                        .into(),
                    StatementsRead::Failed(why) => format!("query time: reading pg_stat_statements failed: {why}"),
                    StatementsRead::Rows(_) => String::new(),
                });
            }
        }
    }
    if let Some(q) = &state.query_time {
        out.push("pg_stat_statements_window_seconds", &[], q.window_s);
        for d in &q.databases {
            let l = [("datname", d.datname.as_str())];
            out.push("pg_stat_statements_calls", &l, d.calls);
            out.push("pg_stat_statements_mean_seconds", &l, d.mean_s);
            if let Some(m) = d.max_mean_s {
                out.push("pg_stat_statements_max_mean_seconds", &l, m);
            }
        }
        let calls: f64 = q.databases.iter().map(|d| d.calls).sum();
        if calls > 0.0 {
            let mean = q.databases.iter().map(|d| d.mean_s * d.calls).sum::<f64>() / calls;
            summary.push(format!("queries {:.1} ms mean over {calls} calls in {:.0}s", mean * 1000.0, q.window_s));
        }
    }

    let mut line = summary.join("; ");
    if !j.missing.is_empty() {
        line.push_str(&format!("; missing: {}", j.missing.join("; ")));
    }
    if !j.needs_history.is_empty() {
        line.push_str(&format!("; needs history: {}", j.needs_history.join("; ")));
    }
    j.summary = line;
    j.samples = out.samples;
    j
}

#[cfg(test)]
mod tests;
