//! The store: a SQLite file (WAL, embedded) or a PostgreSQL database (`store: postgres://…`,
//! for instances sharing one store), and every SQL statement mxwarden runs on it — alert
//! state, the notification outbox, Matrix threads, digest items and settings here; the uptime
//! history (`history`) and maintenance windows with held pages (`maintenance`) in their
//! submodules; every migration in `MIGRATIONS`. A decision of the evaluator (state changes,
//! outbox rows, held and released pages, reminders, digest bookkeeping) is written in ONE
//! transaction (`commit`), so a crash can never leave a fired alert without its notification,
//! page twice, or lose a reminder. The dispatcher claims due rows and records each attempt.
//!
//! Both dialects run the same code through sqlx's `Any` driver, with numbered placeholders
//! (`$1`) in every statement — sqlx's SQLite driver binds `$N` by number — but SQLite's
//! bulk inserts, which take anonymous `?` (`values_placeholders` says why). [`Dialect`] is
//! consulted only where SQL must differ: each [`Migration`] carries both dialects' DDL
//! (PostgreSQL's `INTEGER` is 32-bit and its `REAL` float4, so BIGINT and DOUBLE PRECISION
//! there; identity columns for `AUTOINCREMENT`; `"end"` and `"by"` quoted; bytewise `"C"`
//! collation where text is sorted or compared by range, as SQLite does), the transaction's
//! start, and the few statements with no portable form. Everything else is written once in
//! the subset both understand: `ON CONFLICT` upserts, `RETURNING id`, `CASE` instead of the
//! scalar `max(a, b)`, sums cast to BIGINT. Why `Any` rather than a pool per dialect: one
//! copy of every statement, so the dialects cannot drift; its cost — each row and argument
//! converted once more — did not show beside SQLite's own work (BENCHMARKS.md, "The store's
//! write path"; `cargo bench --bench store_write`).
//! `conformance` holds the store's behavioural checks, run on both dialects by the tests.
//!
//! Every write is one transaction on a connection of its own (`Store::write`), and a
//! connection whose write failed is closed, never returned to the pool: on a full disk or an
//! I/O error SQLite ends the transaction itself, sqlx's count of open transactions does not
//! see it, and the next transaction on that connection became a savepoint that a later error
//! left open — holding the write lock, so every other connection got "database is locked"
//! until a restart. On PostgreSQL the same rule drops a connection the server closed
//! (`pg_terminate_backend`, a restart); the pool also pings a connection before handing it
//! out. Each write's outcome goes to `health`, which `/healthz`, the status page and the
//! daemon's `MxwardenStoreFailing` page read.

pub(crate) mod control;
#[doc(hidden)]
pub mod conformance;
pub(crate) mod health;
pub(crate) mod history;
pub mod location;
pub mod maintenance;
pub(crate) mod followup;
pub(crate) mod updates;
pub mod leader;

pub(crate) use health::Health;
pub use history::History;
pub use leader::Fence;
pub use location::Location;

use crate::alert::{AlertState, Phase};
use crate::clock::{Clock, SystemClock};
use crate::model::Labels;
use crate::notify::Notification;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, Row};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

/// The SQL dialect of the database under the store. Used only where SQL must differ:
/// migrations, the transaction's start, and the few statements without a portable form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// An embedded SQLite file (WAL).
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

/// A store failure.
#[derive(Debug, thiserror::Error)]
#[error("store {path}: {source}")]
pub struct StoreError {
    path: String,
    dialect: Dialect,
    #[source]
    source: sqlx::Error,
}

impl StoreError {
    /// Whether the write was refused because this instance does not lead (its term is not
    /// the lease's current one): not a failure of the store, and never to be retried as is.
    pub fn is_fenced(&self) -> bool {
        matches!(&self.source, sqlx::Error::Configuration(e) if e.is::<leader::Fenced>())
    }

    /// What went wrong, in words: the cause the database reported (a full disk, an I/O error,
    /// a lock, a refused or lost connection, …) before its own message.
    pub fn in_words(&self) -> String {
        let cause = match self.dialect {
            Dialect::Sqlite => sqlite_cause(&self.source),
            Dialect::Postgres => postgres_cause(&self.source),
        };
        match cause {
            Some(cause) => format!("cannot write {}: {cause} ({})", self.path, self.source),
            None => format!("cannot write {}: {}", self.path, self.source),
        }
    }
}

fn sqlite_cause(source: &sqlx::Error) -> Option<&'static str> {
    match source {
        sqlx::Error::Database(e) => {
            // SQLite's extended result code; its low byte is the primary code.
            let code = e.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0) & 0xff;
            match code {
                13 => Some("the disk is full"),
                10 => Some("the disk reported an I/O error"),
                5 | 6 => Some("the database is locked by another connection or process"),
                8 => Some("the database is read-only (file permissions, or a read-only file system)"),
                14 => Some("the database file cannot be opened"),
                11 | 26 => Some("the database file is damaged"),
                _ => None,
            }
        }
        sqlx::Error::Io(_) => Some("the disk reported an I/O error"),
        sqlx::Error::PoolTimedOut => Some("no connection to the database came free in time"),
        _ => None,
    }
}

fn postgres_cause(source: &sqlx::Error) -> Option<&'static str> {
    match source {
        sqlx::Error::Database(e) => {
            let code = e.code().unwrap_or_default();
            match code.as_ref() {
                "53100" => Some("PostgreSQL's disk is full"),
                "53200" => Some("PostgreSQL is out of memory"),
                "53300" => Some("PostgreSQL has no connection slots left (max_connections)"),
                "25006" => Some("the database is read-only (a standby, or default_transaction_read_only)"),
                "28P01" | "28000" => Some("PostgreSQL refused the user name or password"),
                "3D000" => Some("the database does not exist"),
                "42501" => Some("the database user lacks a privilege the store needs"),
                "57P01" | "57P02" | "57P03" => Some("PostgreSQL is shutting down, restarting or starting up"),
                "40001" | "40P01" => Some("the write conflicted with another instance's and was rolled back"),
                c if c.starts_with("08") => Some("the connection to PostgreSQL failed"),
                c if c.starts_with("58") => Some("PostgreSQL reported an I/O error"),
                _ => None,
            }
        }
        sqlx::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Some("PostgreSQL refused the connection (is it running, on that host and port?)")
        }
        sqlx::Error::Io(_) => Some("the connection to PostgreSQL failed or was lost"),
        sqlx::Error::Tls(_) => Some("the TLS handshake with PostgreSQL failed"),
        sqlx::Error::Protocol(_) => Some("the connection to PostgreSQL broke off"),
        sqlx::Error::PoolTimedOut => Some("no connection to PostgreSQL came free in time (is it reachable?)"),
        sqlx::Error::Configuration(_) => Some("the store's PostgreSQL URL is not valid"),
        _ => None,
    }
}

type Result<T> = std::result::Result<T, StoreError>;

/// One schema migration, in each dialect's words. Both run under the same version number.
/// SQL that is the same in both (no `INTEGER` or `REAL` columns — PostgreSQL's are 32-bit and
/// `float4` — no `AUTOINCREMENT`, no `WITHOUT ROWID`) can use [`Migration::portable`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    /// The statements for SQLite.
    pub(crate) sqlite: &'static str,
    /// The statements for PostgreSQL.
    pub(crate) postgres: &'static str,
}

impl Migration {
    /// The same statements for both dialects.
    #[allow(dead_code)]
    pub(crate) const fn portable(sql: &'static str) -> Self {
        Self { sqlite: sql, postgres: sql }
    }

    fn sql(&self, dialect: Dialect) -> &'static str {
        match dialect {
            Dialect::Sqlite => self.sqlite,
            Dialect::Postgres => self.postgres,
        }
    }
}

/// The advisory lock held (for the transaction) while PostgreSQL migrates: two instances
/// starting together apply each migration once. "mxwd-mig" in ASCII.
const MIGRATION_LOCK: i64 = 0x6d78_7764_2d6d_6967;

/// Schema migrations, applied in order, each once.
const MIGRATIONS: &[Migration] = &[
    Migration {
        sqlite: "CREATE TABLE alerts (
        alert TEXT NOT NULL, labels TEXT NOT NULL, state TEXT NOT NULL,
        active_at INTEGER, fired_at INTEGER, notified_at INTEGER,
        value REAL NOT NULL, annotations TEXT NOT NULL, updated_at INTEGER NOT NULL,
        PRIMARY KEY (alert, labels));
     CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT, created_at INTEGER NOT NULL, receiver TEXT NOT NULL,
        tier TEXT NOT NULL, incident TEXT NOT NULL, payload TEXT NOT NULL, due_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL DEFAULT 'pending',
        last_error TEXT, sent_at INTEGER, fallback_of INTEGER, fallback_queued INTEGER NOT NULL DEFAULT 0);
     CREATE INDEX outbox_due ON outbox (status, due_at);
     CREATE TABLE threads (receiver TEXT NOT NULL, incident TEXT NOT NULL, event_id TEXT NOT NULL,
        PRIMARY KEY (receiver, incident));
     CREATE TABLE digest_items (id INTEGER PRIMARY KEY AUTOINCREMENT, tier TEXT NOT NULL,
        at INTEGER NOT NULL, payload TEXT NOT NULL);
     CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
        // Text that is sorted or compared by range collates bytewise ("C"), as in SQLite.
        postgres: r#"CREATE TABLE alerts (
        alert TEXT NOT NULL, labels TEXT NOT NULL, state TEXT NOT NULL,
        active_at BIGINT, fired_at BIGINT, notified_at BIGINT,
        value DOUBLE PRECISION NOT NULL, annotations TEXT NOT NULL, updated_at BIGINT NOT NULL,
        PRIMARY KEY (alert, labels));
     CREATE TABLE outbox (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, created_at BIGINT NOT NULL,
        receiver TEXT COLLATE "C" NOT NULL,
        tier TEXT NOT NULL, incident TEXT NOT NULL, payload TEXT NOT NULL, due_at BIGINT NOT NULL,
        attempts BIGINT NOT NULL DEFAULT 0, status TEXT NOT NULL DEFAULT 'pending',
        last_error TEXT, sent_at BIGINT, fallback_of BIGINT, fallback_queued BIGINT NOT NULL DEFAULT 0);
     CREATE INDEX outbox_due ON outbox (status, due_at);
     CREATE TABLE threads (receiver TEXT NOT NULL, incident TEXT NOT NULL, event_id TEXT NOT NULL,
        PRIMARY KEY (receiver, incident));
     CREATE TABLE digest_items (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, tier TEXT NOT NULL,
        at BIGINT NOT NULL, payload TEXT NOT NULL);
     CREATE TABLE meta (key TEXT COLLATE "C" PRIMARY KEY, value TEXT NOT NULL);"#,
    },
    // Uptime history (`history`): compact integer rows, one b-tree each.
    Migration {
        sqlite: r#"CREATE TABLE checks (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
     CREATE TABLE results (check_id INTEGER NOT NULL, at INTEGER NOT NULL, state INTEGER NOT NULL,
        latency_ms INTEGER NOT NULL, PRIMARY KEY (check_id, at)) WITHOUT ROWID;
     CREATE TABLE rollups (check_id INTEGER NOT NULL, res INTEGER NOT NULL, bucket INTEGER NOT NULL,
        up INTEGER NOT NULL, down INTEGER NOT NULL, maintenance INTEGER NOT NULL,
        latency_sum INTEGER NOT NULL, latency_max INTEGER NOT NULL,
        PRIMARY KEY (check_id, res, bucket)) WITHOUT ROWID;
     CREATE TABLE gaps (start INTEGER PRIMARY KEY, "end" INTEGER NOT NULL) WITHOUT ROWID;"#,
        postgres: r#"CREATE TABLE checks (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name TEXT NOT NULL UNIQUE);
     CREATE TABLE results (check_id BIGINT NOT NULL, at BIGINT NOT NULL, state BIGINT NOT NULL,
        latency_ms BIGINT NOT NULL, PRIMARY KEY (check_id, at));
     CREATE TABLE rollups (check_id BIGINT NOT NULL, res BIGINT NOT NULL, bucket BIGINT NOT NULL,
        up BIGINT NOT NULL, down BIGINT NOT NULL, maintenance BIGINT NOT NULL,
        latency_sum BIGINT NOT NULL, latency_max BIGINT NOT NULL,
        PRIMARY KEY (check_id, res, bucket));
     CREATE TABLE gaps (start BIGINT PRIMARY KEY, "end" BIGINT NOT NULL);"#,
    },
    maintenance::MIGRATION,
    control::MIGRATION,
    updates::MIGRATION,
    leader::MIGRATION,
];

/// An alert's persisted state.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAlert {
    /// Alert name.
    pub alert: String,
    /// Labels.
    pub labels: Labels,
    /// State.
    pub state: AlertState,
    /// Last value.
    pub value: f64,
    /// Rendered annotations.
    pub annotations: BTreeMap<String, String>,
}

/// A row to add to the outbox.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// Receiver name.
    pub receiver: String,
    /// Tier (severity).
    pub tier: String,
    /// The message.
    pub notification: Notification,
    /// The row this is a fallback for.
    pub fallback_of: Option<i64>,
}

impl NewDelivery {
    /// `notification` for each of `receivers`, as `tier`: one outbox row each.
    pub fn fan_out(receivers: &[String], tier: &str, notification: &Notification) -> Vec<NewDelivery> {
        receivers
            .iter()
            .map(|receiver| NewDelivery {
                receiver: receiver.clone(),
                tier: tier.to_string(),
                notification: notification.clone(),
                fallback_of: None,
            })
            .collect()
    }
}

/// An outbox row.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Row id (also the Matrix transaction id and the webhook delivery id).
    pub id: i64,
    /// Receiver name.
    pub receiver: String,
    /// Tier.
    pub tier: String,
    /// The message.
    pub notification: Notification,
    /// Attempts so far.
    pub attempts: i64,
    /// `pending`, `sent` or `dead`.
    pub status: String,
    /// Last error.
    pub last_error: Option<String>,
    /// When it is due, ms.
    pub due_at: i64,
    /// When it was sent, ms.
    pub sent_at: Option<i64>,
    /// Whether its fallback rows were queued.
    pub fallback_queued: bool,
    /// The row it is a fallback for.
    pub fallback_of: Option<i64>,
}

/// One receiver's outbox figures.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeliveryStats {
    /// Receiver name.
    pub receiver: String,
    /// Waiting to be sent.
    pub pending: i64,
    /// Given up.
    pub dead: i64,
    /// Failed attempts, all time.
    pub failed_attempts: i64,
}

/// Everything one evaluation decided, written in one transaction: alert state changes, the
/// outbox rows they cause, digest items, pages held back and released, maintenance reminders
/// marked as sent, and digest bookkeeping. A crash before the commit leaves none of it, after
/// it all of it: nothing is paged twice and nothing decided is lost.
#[derive(Debug, Default, Clone)]
pub(crate) struct Decision {
    /// Alert state changes.
    pub alerts: Vec<StoredAlert>,
    /// Rows for the outbox.
    pub deliveries: Vec<NewDelivery>,
    /// Items for the digests, by tier.
    pub digest: Vec<(String, Notification)>,
    /// Pages held back (new, or held for another reason now).
    pub hold: Vec<maintenance::Held>,
    /// Held pages no longer held, by (receiver, incident).
    pub release: Vec<(String, String)>,
    /// Ad hoc maintenance windows whose ending reminder is among the deliveries.
    pub reminded: Vec<i64>,
    /// Settings to write (digest bookkeeping).
    pub meta: Vec<(String, String)>,
}

impl Decision {
    /// Whether there is nothing to write.
    pub(crate) fn is_empty(&self) -> bool {
        self.alerts.is_empty()
            && self.deliveries.is_empty()
            && self.digest.is_empty()
            && self.hold.is_empty()
            && self.release.is_empty()
            && self.reminded.is_empty()
            && self.meta.is_empty()
    }
}

/// JSON for a column; an encoding failure is the store's error, never an empty string.
pub(crate) fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> std::result::Result<String, sqlx::Error> {
    serde_json::to_string(value).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

/// A JSON column read back; a row that does not decode is the store's error, never a default.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> std::result::Result<T, sqlx::Error> {
    serde_json::from_str(text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// The store.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
    /// How the store is shown: the file, or the URL without its password.
    path: String,
    health: Arc<Health>,
    /// The leadership this process believes in: writes that decide or send are fenced by it
    /// (`write_fenced`). `None` (the CLI) fences nothing.
    fence: Option<Arc<Fence>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("at", &self.path).field("dialect", &self.dialect).finish_non_exhaustive()
    }
}

/// A connection inside a write transaction (`Store::write`): closed on drop unless it
/// committed — whatever the database still has open on it goes with it, and the pool opens a
/// fresh connection in its place.
struct Writing {
    conn: sqlx::pool::PoolConnection<sqlx::Any>,
    committed: bool,
}

impl Drop for Writing {
    fn drop(&mut self) {
        if !self.committed {
            self.conn.close_on_drop();
        }
    }
}

fn state_parts(state: &AlertState) -> (&'static str, Option<i64>, Option<i64>, Option<i64>) {
    let name = state.phase().as_str();
    match *state {
        AlertState::Inactive => (name, None, None, None),
        AlertState::Pending { active_at } => (name, Some(active_at), None, None),
        AlertState::Firing { active_at, fired_at, notified_at, .. } => {
            (name, Some(active_at), Some(fired_at), Some(notified_at))
        }
    }
}

/// `(…), (…)`: the VALUES of a multi-row insert, `rows` rows of `columns` placeholders each.
/// PostgreSQL gets numbered ones from `$1` (sqlx's `QueryBuilder` writes `?` for the `Any`
/// driver, which PostgreSQL does not take). SQLite gets anonymous `?`, the one exception to
/// the store's `$N` rule: SQLite keeps named and numbered parameters in a list it searches
/// linearly, when parsing and again when sqlx asks each parameter's name to bind it, so a
/// statement of 4,000 `$N` cost quadratic time — a flush of 10,000 results took 3.4 s
/// instead of 0.09 s (`cargo bench --bench store_write`).
pub(crate) fn values_placeholders(dialect: Dialect, rows: usize, columns: usize) -> String {
    use std::fmt::Write;
    let mut sql = String::with_capacity(rows * columns * 6);
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            let sep = if column == 0 { "" } else { ", " };
            let _ = match dialect {
                Dialect::Sqlite => write!(sql, "{sep}?"),
                Dialect::Postgres => write!(sql, "{sep}${}", row * columns + column + 1),
            };
        }
        sql.push(')');
    }
    sql
}

impl Store {
    /// The connection pool, for the submodules that keep their own tables (`history`,
    /// `maintenance`).
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The dialect of the database under the store.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// How the store is shown: its file, or its URL without the password.
    pub fn name(&self) -> &str {
        &self.path
    }

    pub(crate) fn fail(&self, source: sqlx::Error) -> StoreError {
        StoreError { path: self.path.clone(), dialect: self.dialect, source }
    }

    /// Whether writes are being refused.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Runs `work` in one write transaction on a connection of its own and reports the outcome
    /// to `health`. On any error (or if the caller gives up waiting) the connection is closed
    /// instead of going back to the pool, so the next write starts from a clean one and
    /// succeeds once the cause (a full disk, an I/O error, a lock, a lost connection) is gone.
    pub(crate) async fn write<T>(
        &self,
        work: impl AsyncFnOnce(&mut AnyConnection) -> std::result::Result<T, sqlx::Error>,
    ) -> Result<T> {
        let outcome = async {
            let mut w = Writing { conn: self.pool.acquire().await?, committed: false };
            // SQLite: IMMEDIATE, so the write lock is taken (or waited for) now, not on the
            // first write after a read, where a busy database could not be waited for.
            // PostgreSQL: READ COMMITTED; row locks and constraints order concurrent writers.
            let begin = match self.dialect {
                Dialect::Sqlite => "BEGIN IMMEDIATE",
                Dialect::Postgres => "BEGIN",
            };
            sqlx::raw_sql(begin).execute(&mut *w.conn).await?;
            let value = work(&mut w.conn).await?;
            sqlx::raw_sql("COMMIT").execute(&mut *w.conn).await?;
            w.committed = true;
            Ok(value)
        };
        match outcome.await {
            Ok(value) => {
                self.health.written();
                Ok(value)
            }
            Err(source) => {
                let e = self.fail(source);
                self.health.refused(&e.in_words());
                Err(e)
            }
        }
    }

    /// Runs `work` like [`Store::write`], fenced: the transaction first proves that this
    /// process's term is the lease's current, unexpired term (`leader::check_term`) and is
    /// refused with a fenced error (`StoreError::is_fenced`, not a store failure) otherwise —
    /// at once, without the database, when this process does not believe it leads. `work`
    /// gets the term. A store without a fence runs it unfenced with term 0.
    pub(crate) async fn write_fenced<T>(
        &self,
        work: impl AsyncFnOnce(&mut AnyConnection, i64) -> std::result::Result<T, sqlx::Error>,
    ) -> Result<T> {
        self.fenced(true, work).await
    }

    /// [`Store::write_fenced`]; `report`: whether the outcome goes to `health` (not for a
    /// transaction that only reads).
    pub(crate) async fn fenced<T>(
        &self,
        report: bool,
        work: impl AsyncFnOnce(&mut AnyConnection, i64) -> std::result::Result<T, sqlx::Error>,
    ) -> Result<T> {
        let Some(fence) = &self.fence else {
            return if report {
                self.write(async |conn| work(conn, 0).await).await
            } else {
                let mut conn = self.pool.acquire().await.map_err(|e| self.fail(e))?;
                work(&mut conn, 0).await.map_err(|e| self.fail(e))
            };
        };
        let fenced = |term| self.fail(sqlx::Error::Configuration(Box::new(leader::Fenced { term })));
        let Some(term) = fence.term() else { return Err(fenced(0)) };
        let outcome = async {
            let mut w = Writing { conn: self.pool.acquire().await?, committed: false };
            let begin = match self.dialect {
                Dialect::Sqlite => "BEGIN IMMEDIATE",
                Dialect::Postgres => "BEGIN",
            };
            sqlx::raw_sql(begin).execute(&mut *w.conn).await?;
            if !leader::check_term(&mut w.conn, self.dialect, fence.instance(), term).await? {
                sqlx::raw_sql("ROLLBACK").execute(&mut *w.conn).await?;
                w.committed = true;
                return Ok(None);
            }
            let value = work(&mut w.conn, term).await?;
            sqlx::raw_sql("COMMIT").execute(&mut *w.conn).await?;
            w.committed = true;
            Ok(Some(value))
        };
        match outcome.await {
            Ok(Some(value)) => {
                if report {
                    self.health.written();
                }
                Ok(value)
            }
            Ok(None) => Err(fenced(term)),
            Err(source) => {
                let e = self.fail(source);
                if report {
                    self.health.refused(&e.in_words());
                }
                Err(e)
            }
        }
    }

    /// Whether this process believes it leads (always, without a fence): checked again right
    /// before a claimed row is sent.
    pub(crate) fn leads(&self) -> bool {
        self.fence.as_ref().is_none_or(|f| f.term().is_some())
    }

    /// Fences this store's deciding writes with `fence` (the daemon's leadership).
    pub(crate) fn with_fence(mut self, fence: Arc<Fence>) -> Self {
        self.fence = Some(fence);
        self
    }

    /// Times the store's failures with `clock` (the daemon's) instead of the system's.
    pub(crate) fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.health = Arc::new(Health::new(clock));
        self
    }

    /// Opens the store at `location` — a SQLite file (created, with its migrations) or a
    /// PostgreSQL database (migrated) — and applies migrations.
    ///
    /// A new SQLite store is created 0600 (its directory 0700 when that is new too); SQLite
    /// gives the WAL and shared-memory files the database file's mode. A PostgreSQL store
    /// connects with `application_name=mxwarden` unless the URL names one.
    pub async fn open(location: impl Into<Location>) -> Result<Self> {
        Self::open_as(location, "mxwarden").await
    }

    /// [`Store::open`], with `application_name` for PostgreSQL's connections (unless the URL
    /// names one): the daemon gives `mxwarden/<instance>`, so an operator can tell the
    /// instances' sessions apart in `pg_stat_activity`.
    pub async fn open_as(location: impl Into<Location>, application_name: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let location = location.into();
        let shown = location.display();
        let (pool, dialect) = match &location {
            Location::File(path) => {
                let fail = |source| StoreError { path: shown.clone(), dialect: Dialect::Sqlite, source };
                crate::private_fs::ensure_file(path).map_err(|e| fail(sqlx::Error::Io(e)))?;
                (open_sqlite(path).await.map_err(fail)?, Dialect::Sqlite)
            }
            Location::Postgres(url) => {
                let fail = |source| StoreError { path: shown.clone(), dialect: Dialect::Postgres, source };
                (open_postgres(url, application_name).await.map_err(fail)?, Dialect::Postgres)
            }
        };
        let store =
            Self { pool, dialect, path: shown, health: Arc::new(Health::new(Arc::new(SystemClock))), fence: None };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the migrations not applied yet, in one write transaction ([`Store::write`]):
    /// a CLI command and a starting daemon that open a new store at the same moment wait for
    /// each other (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: a transaction-scoped advisory lock)
    /// instead of one failing with "database is locked" or a duplicate table.
    async fn migrate(&self) -> Result<()> {
        let dialect = self.dialect;
        self.write(async |conn| {
            if dialect == Dialect::Postgres {
                // The lock function returns `void`, which the `Any` driver cannot decode.
                sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1)) AS locked")
                    .bind(MIGRATION_LOCK)
                    .execute(&mut *conn)
                    .await?;
            }
            let version_table = match dialect {
                Dialect::Sqlite => "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
                Dialect::Postgres => "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)",
            };
            sqlx::raw_sql(version_table).execute(&mut *conn).await?;
            let version: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_version")
                .fetch_one(&mut *conn)
                .await?;
            for (i, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
                sqlx::raw_sql(sqlx::AssertSqlSafe(migration.sql(dialect))).execute(&mut *conn).await?;
                sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
                    .bind(i as i64 + 1)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(())
        })
        .await
    }

    /// Every pending or firing alert, to restore the rule engine at start.
    pub async fn alerts(&self) -> Result<Vec<StoredAlert>> {
        let rows = sqlx::query("SELECT alert, labels, state, active_at, fired_at, notified_at, value, annotations FROM alerts WHERE state <> 'inactive'")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.fail(e))?;
        rows.into_iter()
            .map(|r| {
                let active_at: i64 = r.get::<Option<i64>, _>("active_at").unwrap_or(0);
                let state = match Phase::parse(r.get::<&str, _>("state")) {
                    Some(Phase::Pending) => AlertState::Pending { active_at },
                    Some(Phase::Firing) => AlertState::Firing {
                        active_at,
                        fired_at: r.get::<Option<i64>, _>("fired_at").unwrap_or(active_at),
                        false_since: None,
                        notified_at: r.get::<Option<i64>, _>("notified_at").unwrap_or(active_at),
                    },
                    _ => {
                        let e = format!("alert state `{}` is not pending or firing", r.get::<&str, _>("state"));
                        return Err(self.fail(sqlx::Error::Decode(e.into())));
                    }
                };
                Ok(StoredAlert {
                    alert: r.get("alert"),
                    labels: from_json(r.get("labels")).map_err(|e| self.fail(e))?,
                    state,
                    value: r.get("value"),
                    annotations: from_json(r.get("annotations")).map_err(|e| self.fail(e))?,
                })
            })
            .collect()
    }

    /// Writes `decisions`, in order, in one transaction: all of them or none. Fenced: only
    /// the leader decides.
    pub(crate) async fn commit(&self, decisions: &[Decision], now: i64) -> Result<()> {
        if decisions.iter().all(Decision::is_empty) {
            return Ok(());
        }
        self.write_fenced(async |conn, _| {
            for decision in decisions {
                write_decision(conn, decision, now).await?;
            }
            Ok(())
        })
        .await
    }

    /// Adds deliveries on their own (an operator's request: not fenced, whichever instance
    /// takes it; the leader delivers them).
    pub async fn enqueue(&self, deliveries: &[NewDelivery], now: i64) -> Result<()> {
        let decision = Decision { deliveries: deliveries.to_vec(), ..Decision::default() };
        if decision.is_empty() {
            return Ok(());
        }
        self.write(async |conn| write_decision(conn, &decision, now).await).await
    }

    fn delivery(&self, r: AnyRow) -> Result<Delivery> {
        Ok(Delivery {
            id: r.get("id"),
            receiver: r.get("receiver"),
            tier: r.get("tier"),
            notification: from_json(r.get("payload")).map_err(|e| self.fail(e))?,
            attempts: r.get("attempts"),
            status: r.get("status"),
            last_error: r.get("last_error"),
            due_at: r.get("due_at"),
            sent_at: r.get("sent_at"),
            fallback_queued: r.get::<i64, _>("fallback_queued") != 0,
            fallback_of: r.get("fallback_of"),
        })
    }

    /// Pending rows due by `now`, oldest first — only the oldest per (receiver, incident), so a
    /// resolve never overtakes its firing message.
    pub(crate) async fn due(&self, now: i64) -> Result<Vec<Delivery>> {
        let rows = sqlx::query(
            "SELECT * FROM outbox o WHERE status = 'pending' AND due_at <= $1
               AND id = (SELECT MIN(id) FROM outbox p WHERE p.status = 'pending' AND p.receiver = o.receiver AND p.incident = o.incident)
             ORDER BY id",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.fail(e))?;
        rows.into_iter().map(|r| self.delivery(r)).collect()
    }

    /// When the next pending row is due, if any.
    pub(crate) async fn next_due(&self) -> Result<Option<i64>> {
        sqlx::query_scalar("SELECT MIN(due_at) FROM outbox WHERE status = 'pending'")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.fail(e))
    }

    /// Rows, newest first; only dead ones with `dead_only`.
    pub async fn outbox(&self, dead_only: bool, limit: i64) -> Result<Vec<Delivery>> {
        let sql = if dead_only {
            "SELECT * FROM outbox WHERE status = 'dead' ORDER BY id DESC LIMIT $1"
        } else {
            "SELECT * FROM outbox ORDER BY id DESC LIMIT $1"
        };
        let rows = sqlx::query(sql).bind(limit).fetch_all(&self.pool).await.map_err(|e| self.fail(e))?;
        rows.into_iter().map(|r| self.delivery(r)).collect()
    }

    /// Per receiver: deliveries waiting, dead letters, and failed attempts so far (every
    /// attempt of a row but the one that succeeded).
    pub(crate) async fn delivery_stats(&self) -> Result<Vec<DeliveryStats>> {
        let rows = sqlx::query(
            // Portable sums: no boolean arithmetic, and PostgreSQL's SUM of BIGINT is NUMERIC.
            "SELECT receiver,
                    CAST(SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END) AS BIGINT),
                    CAST(SUM(CASE WHEN status = 'dead' THEN 1 ELSE 0 END) AS BIGINT),
                    CAST(SUM(attempts - CASE WHEN status = 'sent' THEN 1 ELSE 0 END) AS BIGINT)
             FROM outbox GROUP BY receiver ORDER BY receiver",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.fail(e))?;
        Ok(rows
            .iter()
            .map(|r| DeliveryStats { receiver: r.get(0), pending: r.get(1), dead: r.get(2), failed_attempts: r.get(3) })
            .collect())
    }

    /// Records a successful delivery.
    pub(crate) async fn mark_sent(&self, id: i64, now: i64) -> Result<()> {
        self.write(async |conn| {
            sqlx::query(
                "UPDATE outbox SET status = 'sent', sent_at = $1, attempts = attempts + 1, last_error = NULL WHERE id = $2",
            )
            .bind(now)
            .bind(id)
            .execute(conn)
            .await
            .map(|_| ())
        })
        .await
    }

    /// Records a failed attempt: retry at `due_at`, or dead when `dead`. Fenced: giving up
    /// on a row is a decision.
    pub(crate) async fn mark_failed(&self, id: i64, error: &str, due_at: i64, dead: bool) -> Result<()> {
        self.write_fenced(async |conn, _| {
            sqlx::query("UPDATE outbox SET attempts = attempts + 1, last_error = $1, due_at = $2, status = CASE WHEN $3 THEN 'dead' ELSE status END WHERE id = $4")
                .bind(error)
                .bind(due_at)
                .bind(dead)
                .bind(id)
                .execute(conn)
                .await
                .map(|_| ())
        })
        .await
    }

    /// Queues fallback rows for `id`, once. Fenced.
    pub(crate) async fn queue_fallback(&self, id: i64, fallbacks: &[NewDelivery], now: i64) -> Result<()> {
        self.write_fenced(async |conn, _| {
            let done = sqlx::query("UPDATE outbox SET fallback_queued = 1 WHERE id = $1 AND fallback_queued = 0")
                .bind(id)
                .execute(&mut *conn)
                .await?;
            if done.rows_affected() == 1 {
                for d in fallbacks {
                    insert_delivery(conn, d, now).await?;
                }
            }
            Ok(())
        })
        .await
    }

    /// The Matrix event that starts an incident's thread for a receiver.
    pub(crate) async fn thread_root(&self, receiver: &str, incident: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT event_id FROM threads WHERE receiver = $1 AND incident = $2")
            .bind(receiver)
            .bind(incident)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.fail(e))
    }

    /// Remembers an incident's thread root.
    pub(crate) async fn set_thread_root(&self, receiver: &str, incident: &str, event_id: &str) -> Result<()> {
        self.write(async |conn| {
            sqlx::query(
                "INSERT INTO threads (receiver, incident, event_id) VALUES ($1, $2, $3) ON CONFLICT (receiver, incident) DO NOTHING",
            )
                .bind(receiver)
                .bind(incident)
                .bind(event_id)
                .execute(conn)
                .await
                .map(|_| ())
        })
        .await
    }

    /// Digest items of `tier` recorded in `(from, to]`.
    pub(crate) async fn digest_items(&self, tier: &str, from: i64, to: i64) -> Result<Vec<Notification>> {
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT payload FROM digest_items WHERE tier = $1 AND at > $2 AND at <= $3 ORDER BY id")
                .bind(tier)
                .bind(from)
                .bind(to)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.fail(e))?;
        rows.iter().map(|p| from_json(p).map_err(|e| self.fail(e))).collect()
    }

    /// A small key/value setting.
    pub(crate) async fn meta(&self, key: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.fail(e))
    }

    /// Sets a key/value setting.
    pub async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.write(async |conn| {
            sqlx::query(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(key)
            .bind(value)
            .execute(conn)
            .await
            .map(|_| ())
        })
        .await
    }
}

/// The SQLite pool: WAL, synchronous FULL, a 10 s busy timeout and a small page cache on
/// every connection (set when it opens: the `Any` driver takes its options as a URL, which
/// carries no pragmas).
async fn open_sqlite(path: &std::path::Path) -> std::result::Result<AnyPool, sqlx::Error> {
    let options = AnyConnectOptions::from_str(&sqlite_url(path)?)?;
    AnyPoolOptions::new()
        .max_connections(4)
        // Each connection is a thread with its own page cache; the ones a burst opened
        // (a status-page read during a history flush) close again a minute later.
        .idle_timeout(std::time::Duration::from_secs(60))
        .after_connect(|conn, _| {
            Box::pin(async move {
                // The busy timeout first: switching to WAL may wait for another connection.
                // SQLite's default page cache is 2 MiB per connection; the daemon's reads are
                // a few pages of rollups, so 512 KiB each keeps a months-old store from growing
                // the RSS.
                sqlx::raw_sql(
                    "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
                     PRAGMA cache_size = -512;",
                )
                .execute(conn)
                .await
                .map(|_| ())
            })
        })
        .connect_with(options)
        .await
}

/// `sqlite:///ABSOLUTE/PATH?mode=rwc`: the path made absolute (a relative one would read as a
/// URL's host) and every byte but `[A-Za-z0-9/._~-]` percent-encoded (sqlx decodes the path,
/// so a `%`, `?` or `#` in a file name must not be taken as URL syntax).
fn sqlite_url(path: &std::path::Path) -> std::result::Result<String, sqlx::Error> {
    use std::fmt::Write;
    let absolute = std::path::absolute(path)?;
    let text = absolute.to_str().ok_or_else(|| {
        sqlx::Error::Configuration(format!("the store's path {} is not UTF-8", absolute.display()).into())
    })?;
    let mut url = String::from("sqlite://");
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"/._~-".contains(&byte) {
            url.push(char::from(byte));
        } else {
            let _ = write!(url, "%{byte:02X}");
        }
    }
    url.push_str("?mode=rwc");
    Ok(url)
}

/// The PostgreSQL pool, named `mxwarden` in `pg_stat_activity` unless the URL names it. A
/// connection that broke (the server restarted, `pg_terminate_backend`) fails its ping when
/// next acquired and is replaced; a write that failed on one closes it (`Writing`).
async fn open_postgres(url: &str, application_name: &str) -> std::result::Result<AnyPool, sqlx::Error> {
    let mut parsed = url::Url::parse(url.trim()).map_err(|e| sqlx::Error::Configuration(Box::new(e)))?;
    if !parsed.query_pairs().any(|(k, _)| k == "application_name") {
        parsed.query_pairs_mut().append_pair("application_name", application_name);
    }
    let options = AnyConnectOptions::from_str(parsed.as_str())?;
    // One connection first, so a server that is down or refuses us is reported as such,
    // not as the pool's time-out that would hide why.
    use sqlx::Connection;
    AnyConnection::connect_with(&options).await?.close().await?;
    AnyPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .idle_timeout(std::time::Duration::from_secs(60))
        .connect_with(options)
        .await
}

async fn write_decision(tx: &mut AnyConnection, d: &Decision, now: i64) -> std::result::Result<(), sqlx::Error> {
    for a in &d.alerts {
        let (state, active_at, fired_at, notified_at) = state_parts(&a.state);
        sqlx::query(
            "INSERT INTO alerts (alert, labels, state, active_at, fired_at, notified_at, value, annotations, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (alert, labels) DO UPDATE SET state = excluded.state, active_at = excluded.active_at,
               fired_at = excluded.fired_at, notified_at = excluded.notified_at, value = excluded.value,
               annotations = excluded.annotations, updated_at = excluded.updated_at",
        )
        .bind(&a.alert)
        .bind(to_json(&a.labels)?)
        .bind(state)
        .bind(active_at)
        .bind(fired_at)
        .bind(notified_at)
        .bind(a.value)
        .bind(to_json(&a.annotations)?)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    for delivery in &d.deliveries {
        insert_delivery(tx, delivery, now).await?;
    }
    for (tier, n) in &d.digest {
        sqlx::query("INSERT INTO digest_items (tier, at, payload) VALUES ($1, $2, $3)")
            .bind(tier)
            .bind(now)
            .bind(to_json(n)?)
            .execute(&mut *tx)
            .await?;
    }
    maintenance::write_held(tx, &d.hold, &d.release).await?;
    maintenance::mark_reminded(tx, &d.reminded).await?;
    for (key, value) in &d.meta {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Adds an outbox row; its id.
async fn insert_delivery(tx: &mut AnyConnection, d: &NewDelivery, now: i64) -> std::result::Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO outbox (created_at, receiver, tier, incident, payload, due_at, fallback_of)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(now)
    .bind(&d.receiver)
    .bind(&d.tier)
    .bind(&d.notification.incident)
    .bind(to_json(&d.notification)?)
    .bind(now)
    .bind(d.fallback_of)
    .fetch_one(&mut *tx)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_name_with_url_syntax_in_it_is_the_file_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd %41 name?x=1#frag ü.db");
        let store = Store::open(&path).await.unwrap();
        store.set_meta("k", "v").await.unwrap();
        assert!(path.is_file(), "the file is named as given");
        assert_eq!(
            std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "db"))
                .count(),
            1
        );
        assert!(sqlite_url(std::path::Path::new("rel/x.db")).unwrap().starts_with("sqlite:///"), "made absolute");
    }

    #[test]
    fn values_placeholders_are_numbered_across_rows_on_postgres_and_anonymous_on_sqlite() {
        assert_eq!(values_placeholders(Dialect::Postgres, 2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(values_placeholders(Dialect::Sqlite, 2, 2), "(?, ?), (?, ?)");
    }
}
