//! Leadership among instances sharing one store: the lease row, the registry of instance
//! names, and the fence every deciding write passes.
//!
//! One row, `leader (id = 1, holder, term, expires_at)`, is the lease. An instance takes it
//! when it has expired (`acquire`: the term goes up by one), keeps it by renewing it before it
//! expires (`renew`, only while holder and term are still its own), and gives it up on a
//! graceful stop (`release`). Expiry is judged on the DATABASE's clock, never an instance's,
//! so clock skew between instances cannot make two of them believe they lead.
//!
//! A lease rather than a lock held by a session: a stopped (SIGSTOP) or wedged leader keeps
//! its TCP session, and a session lock with it, for as long as the kernel keeps the socket —
//! no failover. A lease ends on its own after its time-to-live, whatever the holder does.
//!
//! The fence: every write that decides or sends (`Store::write_fenced` — the evaluator's
//! decisions, outbox claims, failed attempts and fallbacks, follow-ups, control-room claims)
//! first reads the lease row for its holder, term and expiry in its own transaction, holding it
//! (`FOR UPDATE` on PostgreSQL, which makes a takeover wait and re-check; SQLite's `BEGIN
//! IMMEDIATE` serialises all writers), and is refused (`StoreError::is_fenced`) when the term
//! is not the current, unexpired one — so a deposed leader that wakes up cannot commit
//! anything after its successor's term began.
//!
//! The store owns all the SQL; the daemon's `leader` task drives the lease and keeps the
//! [`Fence`] (what this process believes, checked in memory first) up to date.

use super::{Dialect, Migration, Store, StoreError};
use sqlx::Row;
use std::sync::Mutex;
use std::time::Instant;

type Result<T> = std::result::Result<T, StoreError>;

/// This module's migration, appended to the store's list: the lease row (nobody holds it,
/// term 0, expired) and the instance names in use.
pub(crate) const MIGRATION: Migration = Migration {
    sqlite: "CREATE TABLE leader (id INTEGER PRIMARY KEY, holder TEXT NOT NULL,
        term INTEGER NOT NULL, expires_at INTEGER NOT NULL);
     INSERT INTO leader (id, holder, term, expires_at) VALUES (1, '', 0, 0);
     CREATE TABLE instances (name TEXT PRIMARY KEY, token TEXT NOT NULL, seen_at INTEGER NOT NULL);",
    postgres: "CREATE TABLE leader (id BIGINT PRIMARY KEY, holder TEXT NOT NULL,
        term BIGINT NOT NULL, expires_at BIGINT NOT NULL);
     INSERT INTO leader (id, holder, term, expires_at) VALUES (1, '', 0, 0);
     CREATE TABLE instances (name TEXT PRIMARY KEY, token TEXT NOT NULL, seen_at BIGINT NOT NULL);",
};

/// The database's clock now, unix milliseconds, as SQL: the lease is judged on it alone.
/// PostgreSQL's `clock_timestamp()` (not `now()`, which stands still for a transaction).
pub(crate) fn now_ms(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
        Dialect::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
    }
}

/// What the lease row says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lease {
    /// The instance that took it last (empty: never taken).
    pub(crate) holder: String,
    /// Its term: one more each time the lease changes hands.
    pub(crate) term: i64,
    /// Whether it is still valid by the database's clock.
    pub(crate) valid: bool,
}

/// The marker inside a `StoreError` whose write was refused by the fence.
#[derive(Debug, thiserror::Error)]
#[error("this instance does not lead (term {term} is not the lease's current term)")]
pub(crate) struct Fenced {
    /// The term the write was made under (0: none).
    pub(crate) term: i64,
}

/// What this process believes about its leadership, shared by the lease task (which sets it)
/// and every fenced write (which reads it). A term is believed only until `until`, a
/// monotonic instant before the database's expiry: a process that was stopped wakes up with
/// its belief already expired, before it has had a chance to talk to the database.
#[derive(Debug)]
pub struct Fence {
    /// This instance's name.
    instance: String,
    /// This process among all that ever used the name (`instances.token`).
    token: String,
    held: Mutex<Option<(i64, Instant)>>,
}

impl Fence {
    /// A fence for instance `instance`, leading nothing yet.
    pub fn new(instance: &str) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let token = format!("{}@{}#{:016x}", std::process::id(), host.trim(), rand::random::<u64>());
        Self { instance: instance.to_string(), token, held: Mutex::new(None) }
    }

    /// This process's token among those that used the instance name: `pid@host#random`.
    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// The term believed in and until when, even if that has passed.
    pub(crate) fn held(&self) -> Option<(i64, Instant)> {
        *self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// This instance's name.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Believes in `term` until `until`.
    pub(crate) fn hold(&self, term: i64, until: Instant) {
        *self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((term, until));
    }

    /// Believes in no term any more.
    pub(crate) fn drop_term(&self) {
        *self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// The term this process leads under now, if it believes it leads.
    pub fn term(&self) -> Option<i64> {
        let held = *self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        held.and_then(|(term, until)| (Instant::now() < until).then_some(term))
    }
}

/// Whether `term` of `holder` is the lease's current, unexpired term: the first statement of
/// every fenced transaction. It holds the lease row against a takeover until the transaction
/// ends — PostgreSQL: `FOR UPDATE` (a takeover's `UPDATE` waits, then re-checks); SQLite: the
/// transaction is `BEGIN IMMEDIATE`, which already excludes every other writer. A read, not a
/// write, so that a claim still works on a full disk, as sending did before there were leaders.
pub(crate) async fn check_term(
    conn: &mut sqlx::AnyConnection,
    dialect: Dialect,
    holder: &str,
    term: i64,
) -> std::result::Result<bool, sqlx::Error> {
    let now = now_ms(dialect);
    let lock = match dialect {
        Dialect::Sqlite => "",
        Dialect::Postgres => " FOR UPDATE",
    };
    let sql =
        format!("SELECT holder FROM leader WHERE id = 1 AND holder = $1 AND term = $2 AND expires_at > {now}{lock}");
    let found: Option<String> =
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(holder).bind(term).fetch_optional(&mut *conn).await?;
    Ok(found.is_some())
}

impl Store {
    /// Takes the lease for `holder` for `ttl_ms` if it has expired (or was released), or if
    /// `holder` itself holds it — a previous process of this instance, killed: the caller has
    /// claimed the instance name (`claim_instance`), which only one running process can hold.
    /// Returns the new term, or `None` while another instance holds it.
    pub(crate) async fn acquire_lease(&self, holder: &str, ttl_ms: i64) -> Result<Option<i64>> {
        let now = now_ms(self.dialect());
        let sql = format!(
            "UPDATE leader SET holder = $1, term = term + 1, expires_at = {now} + $2
             WHERE id = 1 AND (expires_at <= {now} OR holder = $1) RETURNING term"
        );
        self.write(async |conn| {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(holder).bind(ttl_ms).fetch_optional(&mut *conn).await
        })
        .await
    }

    /// Extends `holder`'s lease of `term` by `ttl_ms` from now: `false` when it is no longer
    /// theirs or has expired (whoever holds it now, the caller does not).
    pub(crate) async fn renew_lease(&self, holder: &str, term: i64, ttl_ms: i64) -> Result<bool> {
        let now = now_ms(self.dialect());
        let sql = format!(
            "UPDATE leader SET expires_at = {now} + $3
             WHERE id = 1 AND holder = $1 AND term = $2 AND expires_at > {now}"
        );
        self.write(async |conn| {
            let done =
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(holder).bind(term).bind(ttl_ms).execute(&mut *conn).await?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }

    /// Gives up `holder`'s lease of `term` (a graceful stop): another instance may take it at
    /// once instead of after its time-to-live.
    pub(crate) async fn release_lease(&self, holder: &str, term: i64) -> Result<()> {
        self.write(async |conn| {
            sqlx::query("UPDATE leader SET expires_at = 0 WHERE id = 1 AND holder = $1 AND term = $2")
                .bind(holder)
                .bind(term)
                .execute(&mut *conn)
                .await
                .map(|_| ())
        })
        .await
    }

    /// The lease as the database sees it now.
    pub(crate) async fn lease(&self) -> Result<Lease> {
        let now = now_ms(self.dialect());
        let sql = format!(
            "SELECT holder, term, CASE WHEN expires_at > {now} THEN 1 ELSE 0 END AS valid FROM leader WHERE id = 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_one(self.pool()).await.map_err(|e| self.fail(e))?;
        Ok(Lease { holder: row.get("holder"), term: row.get("term"), valid: row.get::<i64, _>("valid") == 1 })
    }

    /// Registers (or keeps alive) instance name `name` for the process with `token`: `false`
    /// when another process with that name was seen within `ttl_ms` — two running instances
    /// with one name on one store are refused.
    pub(crate) async fn claim_instance(&self, name: &str, token: &str, ttl_ms: i64) -> Result<bool> {
        let now = now_ms(self.dialect());
        let sql = format!(
            "INSERT INTO instances (name, token, seen_at) VALUES ($1, $2, {now})
             ON CONFLICT (name) DO UPDATE SET token = excluded.token, seen_at = excluded.seen_at
             WHERE instances.token = excluded.token OR instances.seen_at < {now} - $3"
        );
        self.write(async |conn| {
            let done =
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(name).bind(token).bind(ttl_ms).execute(&mut *conn).await?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }

    /// The token of the process that last kept instance name `name` alive.
    pub(crate) async fn instance_token(&self, name: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT token FROM instances WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await
            .map_err(|e| self.fail(e))
    }

    /// Takes instance name `name` for `token` whoever had it: for a process whose predecessor
    /// of the same name is known to be dead.
    pub(crate) async fn take_instance(&self, name: &str, token: &str) -> Result<()> {
        let now = now_ms(self.dialect());
        let sql = format!(
            "INSERT INTO instances (name, token, seen_at) VALUES ($1, $2, {now})
             ON CONFLICT (name) DO UPDATE SET token = excluded.token, seen_at = excluded.seen_at"
        );
        self.write(async |conn| {
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(name).bind(token).execute(&mut *conn).await.map(|_| ())
        })
        .await
    }

    /// Claims outbox row `id` for sending under this instance's term, right before it is sent:
    /// fenced, and `false` when it is no longer pending. Reads only, so a full disk does not
    /// stop a page decided before it filled (its success is remembered until it can be
    /// recorded, see `dispatch`); not counted as a write in the store's health.
    pub(crate) async fn claim_delivery(&self, id: i64) -> Result<bool> {
        self.fenced(false, async |conn, _| {
            let status: Option<String> = sqlx::query_scalar("SELECT status FROM outbox WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
            Ok(status.as_deref() == Some("pending"))
        })
        .await
    }
}

/// The lease and the fence as every dialect must keep them; run by `conformance` (on SQLite
/// in the unit tests, on SQLite and PostgreSQL in `tests/it/store_dialects.rs`).
#[doc(hidden)]
pub(crate) mod checks {
    use super::*;
    use crate::store::{Decision, NewDelivery};
    use std::sync::Arc;
    use std::time::Duration;

    fn page() -> crate::notify::Notification {
        crate::notify::Notification {
            kind: crate::notify::Kind::Firing,
            incident: "i1".into(),
            title: "t".into(),
            text: "x".into(),
            html: "x".into(),
            alerts: Vec::new(),
            created_at: 1,
        }
    }

    /// The lease changes hands only when it has expired (on the database's clock), was
    /// released, or is retaken by its own instance name; each time the term goes up and the
    /// old term can no longer renew.
    pub(crate) async fn the_lease_changes_hands_with_a_new_term(s: Store) {
        let t1 = s.acquire_lease("a", 60_000).await.unwrap().expect("a free lease is taken");
        assert_eq!(s.acquire_lease("b", 60_000).await.unwrap(), None, "a held lease is not taken");
        assert!(s.renew_lease("a", t1, 60_000).await.unwrap(), "the holder renews");
        assert!(!s.renew_lease("b", t1, 60_000).await.unwrap(), "another name cannot renew it");
        assert!(!s.renew_lease("a", t1 + 1, 60_000).await.unwrap(), "another term cannot renew it");
        s.release_lease("a", t1).await.unwrap();
        let t2 = s.acquire_lease("b", 60_000).await.unwrap().expect("a released lease is taken at once");
        assert_eq!(t2, t1 + 1);
        assert!(!s.renew_lease("a", t1, 60_000).await.unwrap(), "the old holder cannot renew after a takeover");
        assert_eq!(s.lease().await.unwrap(), Lease { holder: "b".into(), term: t2, valid: true });
        // A lease of 1 ms expires on the database's clock without anyone releasing it.
        assert!(s.renew_lease("b", t2, 1).await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!s.lease().await.unwrap().valid);
        assert!(!s.renew_lease("b", t2, 60_000).await.unwrap(), "an expired lease is not renewed");
        assert_eq!(s.acquire_lease("a", 60_000).await.unwrap(), Some(t2 + 1), "an expired lease is taken");
        assert_eq!(
            s.acquire_lease("a", 60_000).await.unwrap(),
            Some(t2 + 2),
            "the instance's next process takes its own name's lease at once, with a new term"
        );
        assert!(!s.renew_lease("a", t2 + 1, 60_000).await.unwrap(), "and the old term is over");
    }

    /// A deposed leader that still believes in its term can neither commit a decision nor
    /// claim an outbox row; nothing of a refused decision is written; a refusal is not a
    /// store failure; the new leader decides; a store without a fence (the CLI) is not fenced.
    pub(crate) async fn a_stale_term_can_neither_decide_nor_claim(plain: Store) {
        let (fence_a, fence_b) = (Arc::new(Fence::new("a")), Arc::new(Fence::new("b")));
        let a = plain.clone().with_fence(fence_a.clone());
        let b = plain.clone().with_fence(fence_b.clone());
        let far = Instant::now() + Duration::from_secs(60);
        let t1 = a.acquire_lease("a", 60_000).await.unwrap().unwrap();
        fence_a.hold(t1, far);
        let decided = |n: &str| Decision { meta: vec![(format!("decided:{n}"), "1".into())], ..Decision::default() };
        a.commit(&[decided("a1")], 1).await.expect("the leader commits");
        plain.enqueue(&NewDelivery::fan_out(&["hook".into()], "critical", &page()), 1).await.unwrap();
        let id = plain.outbox(false, 1).await.unwrap()[0].id;
        // b takes over (a's lease released as if it had run out).
        a.release_lease("a", t1).await.unwrap();
        let t2 = b.acquire_lease("b", 60_000).await.unwrap().unwrap();
        fence_b.hold(t2, far);
        // a still believes it leads (it was stopped, say): the database refuses it.
        let refused = a.commit(&[decided("a2")], 2).await.expect_err("a stale term's decision is refused");
        assert!(refused.is_fenced(), "{refused}");
        let refused = a.claim_delivery(id).await.expect_err("a stale term's claim is refused");
        assert!(refused.is_fenced(), "{refused}");
        let refused = a.mark_failed(id, "x", 1, true).await.expect_err("a stale term cannot give up a row");
        assert!(refused.is_fenced(), "{refused}");
        assert!(a.health().failure().is_none(), "a fenced write is not a store failure");
        assert_eq!(plain.meta("decided:a2").await.unwrap(), None, "nothing of the refused decision was written");
        // The new leader claims and decides.
        assert!(b.claim_delivery(id).await.unwrap());
        b.commit(&[decided("b1")], 3).await.unwrap();
        assert_eq!(plain.meta("decided:b1").await.unwrap().as_deref(), Some("1"));
        // Without a believed term, nothing reaches the database.
        fence_b.drop_term();
        assert!(b.commit(&[decided("b2")], 4).await.unwrap_err().is_fenced());
        assert!(!b.leads());
        // A store without a fence (the CLI) is not fenced.
        plain.commit(&[decided("cli")], 5).await.unwrap();
        assert!(plain.leads());
    }

    /// One running process per instance name: another token is refused while the name is
    /// kept alive, free once it has not been seen for the TTL, and taken over on demand.
    pub(crate) async fn an_instance_name_is_one_running_process(s: Store) {
        assert!(s.claim_instance("a", "token-1", 60_000).await.unwrap());
        assert!(s.claim_instance("a", "token-1", 60_000).await.unwrap(), "the same process keeps it");
        assert!(!s.claim_instance("a", "token-2", 60_000).await.unwrap(), "another process is refused");
        assert!(s.claim_instance("b", "token-2", 60_000).await.unwrap(), "another name is fine");
        assert_eq!(s.instance_token("a").await.unwrap().as_deref(), Some("token-1"));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(s.claim_instance("a", "token-2", 10).await.unwrap(), "a name not seen for the TTL is free");
        s.take_instance("a", "token-3").await.unwrap();
        assert_eq!(s.instance_token("a").await.unwrap().as_deref(), Some("token-3"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_believed_term_ends_at_its_instant() {
        let f = Fence::new("a");
        assert_eq!(f.term(), None);
        f.hold(3, Instant::now() + Duration::from_secs(60));
        assert_eq!(f.term(), Some(3));
        f.hold(4, Instant::now());
        assert_eq!(f.term(), None, "past its instant, a term is not believed");
    }

    #[test]
    fn the_token_names_this_process() {
        let f = Fence::new("a");
        assert!(f.token().starts_with(&format!("{}@", std::process::id())), "{}", f.token());
        assert_ne!(Fence::new("a").token(), f.token(), "two processes' tokens differ even with one pid");
    }
}
