//! The maintenance tables: ad hoc windows (opened by the CLI or the API, read by the daemon)
//! and the notifications held back while a service is in maintenance or its dependency is
//! down (`crate::mute`), so a restart neither loses nor repeats them.

use super::{NewDelivery, Store, StoreError};
use crate::maintenance::calendar::{AdHocWindow, Millis};
use sqlx::Row;

/// This module's migration, appended to the store's list.
pub const MIGRATION: &str = "CREATE TABLE maintenance (
        id INTEGER PRIMARY KEY AUTOINCREMENT, services TEXT NOT NULL, starts_at INTEGER NOT NULL,
        ends_at INTEGER NOT NULL, reason TEXT NOT NULL, created_at INTEGER NOT NULL,
        ended_early INTEGER NOT NULL DEFAULT 0, reminded INTEGER NOT NULL DEFAULT 0);
     CREATE INDEX maintenance_ends ON maintenance (ends_at);
     CREATE TABLE held (receiver TEXT NOT NULL, incident TEXT NOT NULL, service TEXT NOT NULL,
        reason TEXT NOT NULL, tier TEXT NOT NULL, payload TEXT NOT NULL, held_at INTEGER NOT NULL,
        PRIMARY KEY (receiver, incident));";

type Result<T> = std::result::Result<T, StoreError>;

/// A notification held back, and why.
#[derive(Debug, Clone)]
pub struct Held {
    /// The delivery it will become.
    pub delivery: NewDelivery,
    /// The service it is about.
    pub service: String,
    /// `maintenance`, or `dependency:<service>`.
    pub reason: String,
    /// When it was held, ms.
    pub held_at: Millis,
}

impl Held {
    /// (receiver, incident): one held notification per incident and receiver.
    pub fn key(&self) -> (String, String) {
        (self.delivery.receiver.clone(), self.delivery.notification.incident.clone())
    }
}

/// What `end` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The window was open (or not yet started) and is now over.
    Now(AdHocWindow),
    /// The window had already ended.
    AlreadyOver(AdHocWindow),
    /// No window has this id.
    Unknown,
}

fn window(r: &sqlx::sqlite::SqliteRow) -> AdHocWindow {
    AdHocWindow {
        id: r.get("id"),
        services: serde_json::from_str(&r.get::<String, _>("services")).unwrap_or_default(),
        starts_at: r.get("starts_at"),
        ends_at: r.get("ends_at"),
        reason: r.get("reason"),
    }
}

/// Opens an ad hoc window.
pub async fn start(
    store: &Store,
    services: &[String],
    starts_at: Millis,
    ends_at: Millis,
    reason: &str,
    now: Millis,
) -> Result<AdHocWindow> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO maintenance (services, starts_at, ends_at, reason, created_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(serde_json::to_string(services).unwrap_or_default())
    .bind(starts_at)
    .bind(ends_at)
    .bind(reason)
    .bind(now)
    .fetch_one(store.pool())
    .await
    .map_err(|e| store.fail(e))?;
    Ok(AdHocWindow { id, services: services.to_vec(), starts_at, ends_at, reason: reason.to_string() })
}

/// Ends window `id` at `now` (a window that has not started yet is over too).
pub async fn end(store: &Store, id: i64, now: Millis) -> Result<Ended> {
    let mut tx = store.pool().begin().await.map_err(|e| store.fail(e))?;
    let Some(row) = sqlx::query("SELECT * FROM maintenance WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| store.fail(e))?
    else {
        return Ok(Ended::Unknown);
    };
    let mut w = window(&row);
    if w.ends_at <= now {
        return Ok(Ended::AlreadyOver(w));
    }
    w.ends_at = now;
    w.starts_at = w.starts_at.min(now);
    sqlx::query("UPDATE maintenance SET ends_at = ?, starts_at = ?, ended_early = 1 WHERE id = ?")
        .bind(w.ends_at)
        .bind(w.starts_at)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| store.fail(e))?;
    tx.commit().await.map_err(|e| store.fail(e))?;
    Ok(Ended::Now(w))
}

/// Ad hoc windows not over by `now` (open or to come), by start.
pub async fn current(store: &Store, now: Millis) -> Result<Vec<AdHocWindow>> {
    let rows = sqlx::query("SELECT * FROM maintenance WHERE ends_at > ? ORDER BY starts_at, id")
        .bind(now)
        .fetch_all(store.pool())
        .await
        .map_err(|e| store.fail(e))?;
    Ok(rows.iter().map(window).collect())
}

/// Ad hoc windows that ended in `(since, now]`, newest first.
pub async fn ended_since(store: &Store, since: Millis, now: Millis) -> Result<Vec<AdHocWindow>> {
    let rows =
        sqlx::query("SELECT * FROM maintenance WHERE ends_at > ? AND ends_at <= ? ORDER BY ends_at DESC, id DESC")
            .bind(since)
            .bind(now)
            .fetch_all(store.pool())
            .await
            .map_err(|e| store.fail(e))?;
    Ok(rows.iter().map(window).collect())
}

/// Open windows ending within `lead_ms` of `now` whose reminder has not gone out; each is
/// marked as reminded in the same call, so a reminder goes out at most once.
pub async fn take_reminders(store: &Store, now: Millis, lead_ms: Millis) -> Result<Vec<AdHocWindow>> {
    let mut tx = store.pool().begin().await.map_err(|e| store.fail(e))?;
    let rows = sqlx::query(
        "SELECT * FROM maintenance WHERE reminded = 0 AND starts_at <= ? AND ends_at > ? AND ends_at - ? <= ? ORDER BY id",
    )
    .bind(now)
    .bind(now)
    .bind(lead_ms)
    .bind(now)
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| store.fail(e))?;
    let due: Vec<AdHocWindow> = rows.iter().map(window).collect();
    for w in &due {
        sqlx::query("UPDATE maintenance SET reminded = 1 WHERE id = ?")
            .bind(w.id)
            .execute(&mut *tx)
            .await
            .map_err(|e| store.fail(e))?;
    }
    tx.commit().await.map_err(|e| store.fail(e))?;
    Ok(due)
}

/// Every held notification.
pub async fn held(store: &Store) -> Result<Vec<Held>> {
    let rows =
        sqlx::query("SELECT * FROM held ORDER BY held_at").fetch_all(store.pool()).await.map_err(|e| store.fail(e))?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            Some(Held {
                delivery: NewDelivery {
                    receiver: r.get("receiver"),
                    tier: r.get("tier"),
                    notification: serde_json::from_str(&r.get::<String, _>("payload")).ok()?,
                    fallback_of: None,
                },
                service: r.get("service"),
                reason: r.get("reason"),
                held_at: r.get("held_at"),
            })
        })
        .collect())
}

/// Records `hold` and forgets `release` (by key), in one transaction.
pub async fn update_held(store: &Store, hold: &[Held], release: &[(String, String)]) -> Result<()> {
    if hold.is_empty() && release.is_empty() {
        return Ok(());
    }
    let mut tx = store.pool().begin().await.map_err(|e| store.fail(e))?;
    for (receiver, incident) in release {
        sqlx::query("DELETE FROM held WHERE receiver = ? AND incident = ?")
            .bind(receiver)
            .bind(incident)
            .execute(&mut *tx)
            .await
            .map_err(|e| store.fail(e))?;
    }
    for h in hold {
        sqlx::query(
            "INSERT INTO held (receiver, incident, service, reason, tier, payload, held_at) VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (receiver, incident) DO UPDATE SET service = excluded.service, reason = excluded.reason,
               tier = excluded.tier, payload = excluded.payload, held_at = excluded.held_at",
        )
        .bind(&h.delivery.receiver)
        .bind(&h.delivery.notification.incident)
        .bind(&h.service)
        .bind(&h.reason)
        .bind(&h.delivery.tier)
        .bind(serde_json::to_string(&h.delivery.notification).unwrap_or_default())
        .bind(h.held_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| store.fail(e))?;
    }
    tx.commit().await.map_err(|e| store.fail(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn windows_start_end_and_remind_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).await.unwrap();
        let w = start(&store, &["synapse".into()], 1_000, 61_000, "upgrade", 1_000).await.unwrap();
        assert_eq!(current(&store, 2_000).await.unwrap(), vec![w.clone()]);
        assert!(take_reminders(&store, 2_000, 10_000).await.unwrap().is_empty(), "not yet within the lead");
        assert_eq!(take_reminders(&store, 51_000, 10_000).await.unwrap().len(), 1);
        assert!(take_reminders(&store, 52_000, 10_000).await.unwrap().is_empty(), "once");
        assert!(matches!(end(&store, w.id, 30_000).await.unwrap(), Ended::AlreadyOver(_) | Ended::Now(_)));
        assert!(matches!(end(&store, w.id, 40_000).await.unwrap(), Ended::AlreadyOver(x) if x.ends_at == 30_000));
        assert_eq!(end(&store, 99, 40_000).await.unwrap(), Ended::Unknown);
        assert!(current(&store, 30_000).await.unwrap().is_empty());
        assert_eq!(ended_since(&store, 20_000, 40_000).await.unwrap().len(), 1);
    }
}
