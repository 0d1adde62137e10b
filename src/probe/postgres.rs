//! The PostgreSQL probe: the check `<service>/postgres` of a `kind: postgres` service. One
//! poll uses ONE connection (to the DSN's database, or to a configured database whose
//! largest tables are due), kept open between polls as postgres_exporter does, asks a few
//! statements each returning one JSON document (`sql`), and turns the answers into
//! postgres_exporter-style samples (`samples`). What a poll must remember — the connection,
//! the `pg_stat_statements` snapshot for deltas, the size history for the days-until-full
//! forecast, other databases' tables — lives in a per-check state owned by the `Prober`, so
//! the daemon keeps it across polls.
//!
//! Cost and safety: every statement runs read-only under `statement_timeout` (server side)
//! and `lock_timeout`; the poll runs in its own task holding the check's state, and a poll
//! that is still running (a slow or stuck server) is not started again — the next call
//! reports that instead of opening another connection. The DSN is a secret: messages show
//! [`dsn::PgTarget::describe`], never the text.

pub mod dsn;
pub(crate) mod forecast;
pub(crate) mod report;
pub(crate) mod samples;
pub(crate) mod sql;

use crate::clock::Clock;
use crate::model::{CheckId, Labels, Observation, Sample};
use crate::units::{ByteSize, HumanDuration};
use dsn::PgTarget;
use samples::{Gathered, PgState, StatementsRead};
use serde::Serialize;
use sqlx::{Connection, PgConnection, Row};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `kind: postgres` service's check, resolved from config.
#[derive(Debug, Clone)]
pub struct PostgresSpec {
    /// The server, from `dsn` (and `password_file`).
    pub target: PgTarget,
    /// The stack's databases (`databases:`): each must exist; their largest tables are tracked.
    pub databases: Vec<String>,
    /// The plan's disk, bytes.
    pub disk_limit: Option<u64>,
    /// Server-side limit per statement.
    pub statement_timeout: Duration,
    /// Largest tables tracked per database.
    pub top_tables: usize,
}

impl PostgresSpec {
    /// `lock_timeout`: a second, or the statement timeout when that is shorter.
    pub(crate) fn lock_timeout(&self) -> Duration {
        self.statement_timeout.min(Duration::from_secs(1))
    }

    /// The printable, secret-free view for `config show`.
    pub(crate) fn view(&self) -> PostgresView {
        PostgresView {
            dsn: self.target.describe(),
            databases: self.databases.clone(),
            disk_limit: self.disk_limit.map(|b| ByteSize(b).to_string()),
            statement_timeout: HumanDuration(self.statement_timeout).to_string(),
            lock_timeout: HumanDuration(self.lock_timeout()).to_string(),
            top_tables: self.top_tables,
        }
    }
}

/// The postgres part of `config show`.
#[derive(Debug, Serialize)]
pub(crate) struct PostgresView {
    /// The DSN, password redacted.
    pub dsn: String,
    /// Databases checked.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<String>,
    /// Disk size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_limit: Option<String>,
    /// Per-statement limit.
    pub statement_timeout: String,
    /// Lock wait limit.
    pub lock_timeout: String,
    /// Largest tables tracked per database.
    pub top_tables: usize,
}

/// Why a poll got no facts at all.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct PollError(pub String);

/// One poll's facts and what it cost.
#[derive(Debug, Clone)]
pub struct Polled {
    /// The facts.
    pub gathered: Gathered,
    /// Connecting (TCP, TLS, authentication, backend start), or checking that the kept
    /// connection still answers.
    pub connect: Duration,
    /// Whether a new connection was opened.
    pub fresh: bool,
    /// The statements, as the client saw them.
    pub queries: Duration,
    /// Statements sent.
    pub statements: usize,
}

/// The per-check states of every postgres check a `Prober` runs.
#[derive(Default)]
pub(crate) struct PgChecks {
    checks: Mutex<HashMap<CheckId, Arc<PgCheck>>>,
}

/// One check's state, and when its running poll started.
#[derive(Default)]
struct PgCheck {
    state: Arc<tokio::sync::Mutex<Polling>>,
    running_since: Arc<Mutex<Option<Instant>>>,
}

/// What a check keeps between polls: the judged state and its one connection.
#[derive(Default)]
struct Polling {
    state: PgState,
    session: Session,
}

/// At most one connection, kept open between polls (a new backend costs the server about
/// three times a warm poll: fork, authentication, catalog caches; see `BENCHMARKS.md`). A poll
/// that needs another database closes it and opens one there; a connection that no longer
/// answers, or whose poll failed, is replaced.
#[derive(Default)]
pub struct Session {
    conn: Option<(String, PgConnection)>,
}

impl Session {
    /// Gathers the facts of `database` over the kept connection when it is to that database
    /// and still answers, else over a new one, which is then kept. `with_tables` adds the
    /// largest tables of that database.
    pub async fn poll(
        &mut self,
        spec: &PostgresSpec,
        database: &str,
        with_tables: bool,
        timeout: Duration,
    ) -> Result<Polled, PollError> {
        let started = Instant::now();
        let reused = match self.conn.take() {
            Some((db, mut conn)) if db == database => match tokio::time::timeout(timeout, conn.ping()).await {
                Ok(Ok(())) => Some(conn),
                _ => None,
            },
            Some((_, conn)) => {
                let _ = conn.close().await;
                None
            }
            None => None,
        };
        let fresh = reused.is_none();
        let mut conn = match reused {
            Some(conn) => conn,
            None => connect(&spec.target, database, timeout).await?,
        };
        let connect = started.elapsed();
        let result = gather(&mut conn, spec, database, with_tables).await;
        let queries = started.elapsed() - connect;
        match result {
            Ok((gathered, statements)) => {
                self.conn = Some((database.to_string(), conn));
                Ok(Polled { gathered, connect, queries, statements, fresh })
            }
            Err(e) => {
                let _ = conn.close().await;
                Err(e)
            }
        }
    }

    /// Closes the kept connection.
    pub async fn close(&mut self) {
        if let Some((_, conn)) = self.conn.take() {
            let _ = conn.close().await;
        }
    }
}

impl PgChecks {
    fn get(&self, id: &CheckId) -> Arc<PgCheck> {
        let mut checks = self.checks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        checks.entry(id.clone()).or_default().clone()
    }

    /// Runs one poll of `spec` (a postgres check) and returns its observation. A poll still
    /// running from an earlier call is not started again: the observation says so.
    pub(crate) async fn run(
        &self,
        id: &CheckId,
        service: Option<&str>,
        spec: &PostgresSpec,
        timeout: Duration,
        clock: Arc<dyn Clock>,
    ) -> Observation {
        let check = self.get(id);
        let at = clock.now();
        let started = Instant::now();
        let mut labels = Labels::new();
        labels.insert("check".into(), id.0.clone());
        if let Some(service) = service {
            labels.insert("service".into(), service.to_string());
        }
        labels.insert("instance".into(), spec.target.instance());
        let observation = |ok: bool, samples: Vec<Sample>, failures: Vec<String>, summary: String| Observation {
            check: id.clone(),
            service: service.map(str::to_string),
            at,
            ok,
            latency: started.elapsed(),
            samples,
            scraped: Vec::new(),
            over_limit: false,
            failures,
            summary,
        };
        let Ok(state) = check.state.clone().try_lock_owned() else {
            let since =
                check.running_since.lock().unwrap_or_else(std::sync::PoisonError::into_inner).map(|s| s.elapsed());
            let why = format!(
                "the previous poll of {} is still running ({} so far; the server is slow): not starting another",
                spec.target.describe(),
                crate::probe::expect::seconds(since.unwrap_or_default())
            );
            tracing::warn!(check = %id, "PostgreSQL poll skipped: the previous one is still running.");
            let samples = vec![sample(&labels, "pg_up", 0.0), sample(&labels, "probe_success", 0.0)];
            return observation(false, samples, vec![why], String::new());
        };
        *check.running_since.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(started);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (task_spec, task_labels, running) = (spec.clone(), labels.clone(), check.running_since.clone());
        // The poll owns the state until it is really done (at the latest when every statement
        // has hit statement_timeout), even when this call stops waiting for it at `timeout`.
        let cap = timeout + spec.statement_timeout + Duration::from_secs(5);
        tokio::spawn(async move {
            let mut state = state;
            // A poll cut off here drops its connection with it (the session lends it out
            // while in use), so a half-done exchange is never reused.
            let result =
                tokio::time::timeout(cap, poll_and_judge(&task_spec, &task_labels, &mut state, timeout, clock))
                    .await
                    .unwrap_or_else(|_| Err(PollError(format!("gave up after {}", HumanDuration(cap)))));
            *running.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            drop(state);
            let _ = tx.send(result);
        });
        let result = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(PollError("the poll task ended without an answer".into())),
            Err(_) => Err(PollError(format!(
                "timed out after {} (timeout {}); the poll finishes on the server within statement_timeout {} before another starts",
                crate::probe::expect::seconds(started.elapsed()),
                HumanDuration(timeout),
                HumanDuration(spec.statement_timeout)
            ))),
        };
        let duration = |labels: &Labels| sample(labels, "probe_duration_seconds", started.elapsed().as_secs_f64());
        match result {
            Ok(judged) => {
                let ok = judged.failures.is_empty();
                let mut samples = vec![
                    sample(&labels, "pg_up", 1.0),
                    sample(&labels, "probe_success", if ok { 1.0 } else { 0.0 }),
                    duration(&labels),
                ];
                samples.extend(judged.samples);
                observation(ok, samples, judged.failures, judged.summary)
            }
            Err(PollError(why)) => {
                tracing::debug!(check = %id, error = %why, "PostgreSQL poll failed.");
                let samples =
                    vec![sample(&labels, "pg_up", 0.0), sample(&labels, "probe_success", 0.0), duration(&labels)];
                observation(false, samples, vec![why], String::new())
            }
        }
    }
}

fn sample(labels: &Labels, name: &str, value: f64) -> Sample {
    Sample { name: name.to_string(), labels: labels.clone(), value }
}

async fn poll_and_judge(
    spec: &PostgresSpec,
    labels: &Labels,
    polling: &mut Polling,
    timeout: Duration,
    clock: Arc<dyn Clock>,
) -> Result<samples::Judged, PollError> {
    let now_ms = clock.now().as_millisecond();
    let database = polling.state.next_database(spec, now_ms);
    let with_tables = polling.state.tables_due(&database, now_ms);
    let polled = polling.session.poll(spec, &database, with_tables, timeout).await?;
    let now_ms = clock.now().as_millisecond();
    Ok(samples::observe(spec, labels, &polled.gathered, &mut polling.state, now_ms))
}

/// The facts, over an open connection to `database`; also the number of statements sent.
pub(crate) async fn gather(
    conn: &mut PgConnection,
    spec: &PostgresSpec,
    database: &str,
    with_tables: bool,
) -> Result<(Gathered, usize), PollError> {
    let guard = sql::guard(spec.statement_timeout, spec.lock_timeout());
    let mut statements = 1;
    let cluster: sql::Cluster = json(conn, &guard, sql::CLUSTER).await.map_err(|e| {
        PollError(format!("reading the cluster facts from {} failed: {e}", spec.target.describe_db(database)))
    })?;
    let wal = if cluster.monitor {
        statements += 1;
        Some(json::<serde_json::Value>(conn, &guard, sql::WAL).await.map(|v| v["bytes"].as_f64().unwrap_or(0.0)))
    } else {
        None
    };
    let statements_read = match &cluster.pgss_version {
        None => StatementsRead::NotInstalled,
        Some(version) => {
            statements += 1;
            match json::<Vec<sql::Statement>>(conn, &guard, &sql::statements(version)).await {
                Ok(rows) => StatementsRead::Rows(rows),
                Err(e) if e.contains("shared_preload_libraries") => StatementsRead::NotLoaded,
                Err(e) => StatementsRead::Failed(e),
            }
        }
    };
    let tables = if with_tables {
        statements += 1;
        Some(tables(conn, spec, &guard, spec.top_tables).await)
    } else {
        None
    };
    Ok((Gathered { database: database.to_string(), cluster, wal, statements: statements_read, tables }, statements))
}

/// The `limit` largest tables of the connected database.
pub(crate) async fn tables(
    conn: &mut PgConnection,
    spec: &PostgresSpec,
    guard: &str,
    limit: usize,
) -> Result<Vec<sql::Table>, String> {
    json::<Vec<sql::Table>>(conn, guard, &sql::tables(limit)).await.map_err(|e| {
        if e.contains("lock timeout") {
            format!(
                "a table was locked for longer than lock_timeout {} (VACUUM FULL, ALTER TABLE?)",
                HumanDuration(spec.lock_timeout())
            )
        } else {
            e
        }
    })
}

/// Opens one connection to `database` within `timeout` (or the DSN's `connect_timeout`).
pub(crate) async fn connect(target: &PgTarget, database: &str, timeout: Duration) -> Result<PgConnection, PollError> {
    let limit = target.connect_timeout.map_or(timeout, |t| t.min(timeout));
    let options = target.connect_options(database);
    match tokio::time::timeout(limit, PgConnection::connect_with(&options)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(PollError(explain_connect(&e, target, database))),
        Err(_) => Err(PollError(format!(
            "timed out connecting to {} after {}",
            target.describe_db(database),
            HumanDuration(limit)
        ))),
    }
}

/// Runs `guard` + `select` as one simple query (one round trip, one implicit transaction)
/// and parses the JSON text of its single row.
pub(crate) async fn json<T: serde::de::DeserializeOwned>(
    conn: &mut PgConnection,
    guard: &str,
    select: &str,
) -> Result<T, String> {
    let text = format!("{guard}{select}");
    let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(text)).fetch_all(&mut *conn).await.map_err(|e| explain_query(&e))?;
    let row = rows.last().ok_or("the statement returned no row")?;
    let json: String = row.try_get(0).map_err(|e| format!("unexpected answer: {e}"))?;
    serde_json::from_str(&json).map_err(|e| format!("unexpected answer: {e}"))
}

/// A query error in words, with the server's SQLSTATE.
pub(crate) fn explain_query(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| format!(" (SQLSTATE {c})")).unwrap_or_default();
            format!("{}{code}", db.message())
        }
        sqlx::Error::Io(e) => format!("the connection broke: {e}"),
        other => other.to_string(),
    }
}

/// A connection error in words: refused, TLS, authentication, a missing database, too many
/// connections. Never contains the password.
pub(crate) fn explain_connect(error: &sqlx::Error, target: &PgTarget, database: &str) -> String {
    let at = target.describe_db(database);
    match error {
        sqlx::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("connection refused by {} ({at})", target.instance())
        }
        sqlx::Error::Io(e) if e.kind() == std::io::ErrorKind::NotFound => {
            format!("no PostgreSQL socket at {} ({at})", target.instance())
        }
        sqlx::Error::Io(e) => format!("cannot reach {}: {e} ({at})", target.instance()),
        sqlx::Error::Tls(e) => {
            let host = match &target.host {
                dsn::PgHost::Tcp(h) => h.clone(),
                dsn::PgHost::Socket(_) => target.instance(),
            };
            let why = super::explain_tls(e.as_ref(), &host).unwrap_or_else(|| e.to_string());
            format!("TLS with {} failed (sslmode={}): {why} ({at})", target.instance(), target.sslmode.as_str())
        }
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            let hint = match code.as_str() {
                "28P01" if target.password.is_none() => {
                    " — no password is configured: put it in the dsn or in password_file".to_string()
                }
                "53300" => " — every connection slot is taken (the runbook's \"too many connections\")".to_string(),
                _ => String::new(),
            };
            format!("{} (SQLSTATE {code}){hint} ({at})", db.message())
        }
        sqlx::Error::Protocol(p) => format!("protocol error talking to {}: {p} ({at})", target.instance()),
        other => format!("cannot connect to {at}: {other}"),
    }
}
