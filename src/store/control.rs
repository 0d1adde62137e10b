//! The control room's tables: the audit of accepted commands (who, when, what, with what
//! outcome), acknowledged incidents (whose reminders stop), and — in `meta` — the `/sync`
//! token the follower resumes from. A command is claimed by its event id before it runs and
//! finished with its outcome and the new token in one transaction, so a restart neither runs
//! a command twice nor skips one.

use super::{Migration, Store, StoreError};
use serde::Serialize;
use sqlx::Row;
use std::collections::HashSet;

/// This module's migration, appended to the store's list.
pub(crate) const MIGRATION: Migration = Migration {
    sqlite: "CREATE TABLE control_audit (event_id TEXT PRIMARY KEY, at INTEGER NOT NULL,
        sender TEXT NOT NULL, room TEXT NOT NULL, command TEXT NOT NULL, outcome TEXT NOT NULL DEFAULT '',
        done INTEGER NOT NULL DEFAULT 0);
     CREATE INDEX control_audit_at ON control_audit (at);
     CREATE TABLE acks (incident TEXT NOT NULL, fired_at INTEGER NOT NULL, by TEXT NOT NULL, at INTEGER NOT NULL,
        PRIMARY KEY (incident, fired_at));",
    // `rowid` is SQLite's own insertion order, which the audit breaks ties with; PostgreSQL
    // gets a column of that name. `by` is a reserved word there.
    postgres: r#"CREATE TABLE control_audit (event_id TEXT PRIMARY KEY, at BIGINT NOT NULL,
        sender TEXT NOT NULL, room TEXT NOT NULL, command TEXT NOT NULL, outcome TEXT NOT NULL DEFAULT '',
        done BIGINT NOT NULL DEFAULT 0, rowid BIGINT GENERATED ALWAYS AS IDENTITY);
     CREATE INDEX control_audit_at ON control_audit (at);
     CREATE TABLE acks (incident TEXT NOT NULL, fired_at BIGINT NOT NULL, "by" TEXT NOT NULL, at BIGINT NOT NULL,
        PRIMARY KEY (incident, fired_at));"#,
};

type Result<T> = std::result::Result<T, StoreError>;

/// One accepted command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct AuditEntry {
    /// The command's Matrix event id.
    pub(crate) event_id: String,
    /// When it was accepted, ms.
    pub(crate) at: i64,
    /// Who gave it.
    pub(crate) sender: String,
    /// The room it came from.
    pub(crate) room: String,
    /// The command as parsed (`!silence synapse 1h deploy`).
    pub(crate) command: String,
    /// What it did, or why it failed; empty while it runs (or if the process died running it).
    pub(crate) outcome: String,
    /// Whether it finished.
    pub(crate) done: bool,
}

/// The meta key of the follower's `/sync` token for bot `user`.
fn since_key(user: &str) -> String {
    format!("control:since:{user}")
}

/// Where the follower of bot `user` resumes, if it ran before.
pub(crate) async fn since(store: &Store, user: &str) -> Result<Option<String>> {
    store.meta(&since_key(user)).await
}

/// Records where the follower of bot `user` resumes.
pub(crate) async fn set_since(store: &Store, user: &str, since: &str) -> Result<()> {
    store.set_meta(&since_key(user), since).await
}

/// Claims the command in event `event_id` before it runs: `false` when it was claimed
/// before (it ran, or began to, before a restart) and must not run again. Fenced: only the
/// leader runs commands.
pub(crate) async fn claim(
    store: &Store,
    event_id: &str,
    at: i64,
    sender: &str,
    room: &str,
    command: &str,
) -> Result<bool> {
    store
        .write_fenced(async |conn, _| {
            let done = sqlx::query(
                "INSERT INTO control_audit (event_id, at, sender, room, command) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(event_id)
            .bind(at)
            .bind(sender)
            .bind(room)
            .bind(command)
            .execute(conn)
            .await?;
            Ok(done.rows_affected() == 1)
        })
        .await
}

/// Records the outcome of the command in `event_id`.
pub(crate) async fn finish(store: &Store, event_id: &str, outcome: &str) -> Result<()> {
    store
        .write(async |conn| {
            sqlx::query("UPDATE control_audit SET outcome = $1, done = 1 WHERE event_id = $2")
                .bind(outcome)
                .bind(event_id)
                .execute(conn)
                .await
                .map(|_| ())
        })
        .await
}

/// The newest `limit` accepted commands, newest first.
pub(crate) async fn audit(store: &Store, limit: i64) -> Result<Vec<AuditEntry>> {
    let rows = sqlx::query("SELECT * FROM control_audit ORDER BY at DESC, rowid DESC LIMIT $1")
        .bind(limit)
        .fetch_all(store.pool())
        .await
        .map_err(|e| store.fail(e))?;
    Ok(rows
        .iter()
        .map(|r| AuditEntry {
            event_id: r.get("event_id"),
            at: r.get("at"),
            sender: r.get("sender"),
            room: r.get("room"),
            command: r.get("command"),
            outcome: r.get("outcome"),
            done: r.get::<i64, _>("done") != 0,
        })
        .collect())
}

/// Acknowledges the firing of `incident` that started at `fired_at`: its reminders stop.
pub(crate) async fn ack(store: &Store, incident: &str, fired_at: i64, by: &str, at: i64) -> Result<()> {
    store
        .write(async |conn| {
            sqlx::query(
                "INSERT INTO acks (incident, fired_at, \"by\", at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(incident)
            .bind(fired_at)
            .bind(by)
            .bind(at)
            .execute(conn)
            .await
            .map(|_| ())
        })
        .await
}

/// Which of `firings` (incident, fired_at) are acknowledged.
pub(crate) async fn acked(store: &Store, firings: &[(String, i64)]) -> Result<HashSet<(String, i64)>> {
    let mut found = HashSet::new();
    for (incident, fired_at) in firings {
        let hit: Option<i64> = sqlx::query_scalar("SELECT 1 FROM acks WHERE incident = $1 AND fired_at = $2")
            .bind(incident)
            .bind(fired_at)
            .fetch_optional(store.pool())
            .await
            .map_err(|e| store.fail(e))?;
        if hit.is_some() {
            found.insert((incident.clone(), *fired_at));
        }
    }
    Ok(found)
}
