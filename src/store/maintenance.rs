//! The maintenance tables: ad hoc windows (opened by the CLI or the API, read by the daemon)
//! and the notifications held back while a service is in maintenance or its dependency is
//! down (`crate::mute`), so a restart neither loses nor repeats them.

use super::{NewDelivery, Store, StoreError, from_json, to_json};
use crate::maintenance::calendar::{AdHocWindow, Millis};
use sqlx::Row;

/// This module's migration, appended to the store's list.
pub(crate) const MIGRATION: &str = "CREATE TABLE maintenance (
        id INTEGER PRIMARY KEY AUTOINCREMENT, services TEXT NOT NULL, starts_at INTEGER NOT NULL,
        ends_at INTEGER NOT NULL, reason TEXT NOT NULL, created_at INTEGER NOT NULL,
        ended_early INTEGER NOT NULL DEFAULT 0, reminded INTEGER NOT NULL DEFAULT 0);
     CREATE INDEX maintenance_ends ON maintenance (ends_at);
     CREATE TABLE held (receiver TEXT NOT NULL, incident TEXT NOT NULL, service TEXT NOT NULL,
        reason TEXT NOT NULL, tier TEXT NOT NULL, payload TEXT NOT NULL, held_at INTEGER NOT NULL,
        PRIMARY KEY (receiver, incident));";

type Result<T> = std::result::Result<T, StoreError>;

/// Why a page waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldReason {
    /// Its service is in a maintenance window.
    Maintenance,
    /// A service it depends on is down (and pages for itself).
    Dependency(String),
}

impl HoldReason {
    /// As stored: `maintenance`, `dependency:<service>`.
    pub fn encode(&self) -> String {
        match self {
            Self::Maintenance => "maintenance".into(),
            Self::Dependency(service) => format!("dependency:{service}"),
        }
    }

    /// Read back from the store.
    pub(crate) fn decode(text: &str) -> Option<Self> {
        match text.split_once(':') {
            None if text == "maintenance" => Some(Self::Maintenance),
            Some(("dependency", service)) if !service.is_empty() => Some(Self::Dependency(service.to_string())),
            _ => None,
        }
    }
}

impl std::fmt::Display for HoldReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.encode())
    }
}

/// A notification held back, and why.
#[derive(Debug, Clone)]
pub struct Held {
    /// The delivery it will become.
    pub delivery: NewDelivery,
    /// The service it is about.
    pub service: String,
    /// Why it waits.
    pub reason: HoldReason,
    /// When it was held, ms.
    pub held_at: Millis,
}

impl Held {
    /// (receiver, incident): one held notification per incident and receiver.
    pub(crate) fn key(&self) -> (String, String) {
        (self.delivery.receiver.clone(), self.delivery.notification.incident.clone())
    }
}

/// What `end` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The window was open (or not yet started) and is now over.
    Now(AdHocWindow),
    /// The window had already ended.
    AlreadyOver(AdHocWindow),
    /// No window has this id.
    Unknown,
}

fn window(r: &sqlx::sqlite::SqliteRow) -> std::result::Result<AdHocWindow, sqlx::Error> {
    Ok(AdHocWindow {
        id: r.get("id"),
        services: from_json(r.get("services"))?,
        starts_at: r.get("starts_at"),
        ends_at: r.get("ends_at"),
        reason: r.get("reason"),
    })
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
    let services_json = to_json(services).map_err(|e| store.fail(e))?;
    let id: i64 = store
        .write(async |conn| {
            sqlx::query_scalar(
                "INSERT INTO maintenance (services, starts_at, ends_at, reason, created_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
            )
            .bind(services_json)
            .bind(starts_at)
            .bind(ends_at)
            .bind(reason)
            .bind(now)
            .fetch_one(conn)
            .await
        })
        .await?;
    Ok(AdHocWindow { id, services: services.to_vec(), starts_at, ends_at, reason: reason.to_string() })
}

/// Ends window `id` at `now` (a window that has not started yet is over too).
pub(crate) async fn end(store: &Store, id: i64, now: Millis) -> Result<Ended> {
    store
        .write(async |conn| {
            let Some(row) =
                sqlx::query("SELECT * FROM maintenance WHERE id = ?").bind(id).fetch_optional(&mut *conn).await?
            else {
                return Ok(Ended::Unknown);
            };
            let mut w = window(&row)?;
            if w.ends_at <= now {
                return Ok(Ended::AlreadyOver(w));
            }
            w.ends_at = now;
            w.starts_at = w.starts_at.min(now);
            sqlx::query("UPDATE maintenance SET ends_at = ?, starts_at = ?, ended_early = 1 WHERE id = ?")
                .bind(w.ends_at)
                .bind(w.starts_at)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            Ok(Ended::Now(w))
        })
        .await
}

/// Ad hoc windows not over by `now` (open or to come), by start.
pub(crate) async fn current(store: &Store, now: Millis) -> Result<Vec<AdHocWindow>> {
    let rows = sqlx::query("SELECT * FROM maintenance WHERE ends_at > ? ORDER BY starts_at, id")
        .bind(now)
        .fetch_all(store.pool())
        .await
        .map_err(|e| store.fail(e))?;
    rows.iter().map(|r| window(r).map_err(|e| store.fail(e))).collect()
}

/// Open windows ending within `lead_ms` of `now` whose reminder has not gone out. The
/// reminder is marked as sent (`Decision::reminded`) in the transaction that queues it, so it
/// goes out exactly once.
pub(crate) async fn due_reminders(store: &Store, now: Millis, lead_ms: Millis) -> Result<Vec<AdHocWindow>> {
    let rows = sqlx::query(
        "SELECT * FROM maintenance WHERE reminded = 0 AND starts_at <= ? AND ends_at > ? AND ends_at - ? <= ? ORDER BY id",
    )
    .bind(now)
    .bind(now)
    .bind(lead_ms)
    .bind(now)
    .fetch_all(store.pool())
    .await
    .map_err(|e| store.fail(e))?;
    rows.iter().map(|r| window(r).map_err(|e| store.fail(e))).collect()
}

/// Marks the reminders of `windows` as sent, inside the decision's transaction.
pub(super) async fn mark_reminded(
    tx: &mut sqlx::SqliteConnection,
    windows: &[i64],
) -> std::result::Result<(), sqlx::Error> {
    for id in windows {
        sqlx::query("UPDATE maintenance SET reminded = 1 WHERE id = ?").bind(id).execute(&mut *tx).await?;
    }
    Ok(())
}

/// Every held notification.
pub async fn held(store: &Store) -> Result<Vec<Held>> {
    let rows =
        sqlx::query("SELECT * FROM held ORDER BY held_at").fetch_all(store.pool()).await.map_err(|e| store.fail(e))?;
    rows.into_iter()
        .map(|r| {
            let reason: String = r.get("reason");
            let reason = HoldReason::decode(&reason)
                .ok_or_else(|| store.fail(sqlx::Error::Decode(format!("hold reason `{reason}`").into())))?;
            Ok(Held {
                delivery: NewDelivery {
                    receiver: r.get("receiver"),
                    tier: r.get("tier"),
                    notification: from_json(r.get("payload")).map_err(|e| store.fail(e))?,
                    fallback_of: None,
                },
                service: r.get("service"),
                reason,
                held_at: r.get("held_at"),
            })
        })
        .collect()
}

/// Records `hold` and forgets `release` (by key), inside the decision's transaction.
pub(super) async fn write_held(
    tx: &mut sqlx::SqliteConnection,
    hold: &[Held],
    release: &[(String, String)],
) -> std::result::Result<(), sqlx::Error> {
    for (receiver, incident) in release {
        sqlx::query("DELETE FROM held WHERE receiver = ? AND incident = ?")
            .bind(receiver)
            .bind(incident)
            .execute(&mut *tx)
            .await?;
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
        .bind(h.reason.encode())
        .bind(&h.delivery.tier)
        .bind(to_json(&h.delivery.notification)?)
        .bind(h.held_at)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
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
        assert!(due_reminders(&store, 2_000, 10_000).await.unwrap().is_empty(), "not yet within the lead");
        assert_eq!(due_reminders(&store, 51_000, 10_000).await.unwrap(), vec![w.clone()]);
        let decision = crate::store::Decision { reminded: vec![w.id], ..Default::default() };
        store.commit(&[decision], 51_000).await.unwrap();
        assert!(due_reminders(&store, 52_000, 10_000).await.unwrap().is_empty(), "once marked, never again");
        assert!(matches!(end(&store, w.id, 30_000).await.unwrap(), Ended::AlreadyOver(_) | Ended::Now(_)));
        assert!(matches!(end(&store, w.id, 40_000).await.unwrap(), Ended::AlreadyOver(x) if x.ends_at == 30_000));
        assert_eq!(end(&store, 99, 40_000).await.unwrap(), Ended::Unknown);
        assert!(current(&store, 30_000).await.unwrap().is_empty());
    }

    #[test]
    fn hold_reasons_round_trip_and_refuse_garbage() {
        for reason in [HoldReason::Maintenance, HoldReason::Dependency("postgres".into())] {
            assert_eq!(HoldReason::decode(&reason.encode()), Some(reason));
        }
        for garbage in ["", "dependency:", "maintenance:x", "dependency", "other"] {
            assert_eq!(HoldReason::decode(garbage), None, "{garbage}");
        }
    }
}
