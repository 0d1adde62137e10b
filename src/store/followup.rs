//! The diagnosis that follows a critical page (`daemon::followup`), made durable: the page's
//! decision also writes a `followup:…` setting naming it (in the same transaction), and the
//! follow-up's outbox rows are written in the same transaction that removes that setting. A
//! crash or restart in between runs the diagnosis again; once queued, the dispatcher delivers
//! it like any other row (retries, fallback), threaded under the page.

use super::{NewDelivery, Result, Store, insert_delivery};
use sqlx::Row;

/// The prefix of a pending follow-up's setting.
pub(crate) const PREFIX: &str = "followup:";

impl Store {
    /// Every pending follow-up: (setting key, its JSON).
    pub(crate) async fn pending_followups(&self) -> Result<Vec<(String, String)>> {
        // A range, not LIKE: `meta.key` collates bytewise in both dialects.
        let rows = sqlx::query("SELECT key, value FROM meta WHERE key >= $1 AND key < $2 ORDER BY key")
            .bind(PREFIX)
            .bind("followup;")
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.fail(e))?;
        Ok(rows.iter().map(|r| (r.get("key"), r.get("value"))).collect())
    }

    /// The receivers that carried `incident`'s messages as a fallback since `since`, ms.
    pub(crate) async fn fallback_receivers(&self, incident: &str, since: i64) -> Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT DISTINCT receiver FROM outbox WHERE incident = $1 AND created_at >= $2 AND fallback_of IS NOT NULL ORDER BY receiver",
        )
        .bind(incident)
        .bind(since)
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.fail(e))
    }

    /// Queues a follow-up's rows and forgets its pending setting, in one transaction. With
    /// `fallback` rows (the page went to the fallback receivers), the primary rows are marked
    /// as fallen back already, so a failing primary does not copy the follow-up there twice.
    pub(crate) async fn finish_followup(
        &self,
        key: &str,
        primary: &[NewDelivery],
        fallback: &[NewDelivery],
        now: i64,
    ) -> Result<()> {
        // Fenced: a follow-up is decided by the leader only.
        self.write_fenced(async |conn, _| {
            let mut first = None;
            for d in primary {
                let id = insert_delivery(conn, d, now).await?;
                first.get_or_insert(id);
                if !fallback.is_empty() {
                    sqlx::query("UPDATE outbox SET fallback_queued = 1 WHERE id = $1")
                        .bind(id)
                        .execute(&mut *conn)
                        .await?;
                }
            }
            for d in fallback {
                // A copy for a fallback receiver never falls back again.
                let d = NewDelivery { fallback_of: d.fallback_of.or(first), ..d.clone() };
                insert_delivery(conn, &d, now).await?;
            }
            sqlx::query("DELETE FROM meta WHERE key = $1").bind(key).execute(&mut *conn).await?;
            Ok(())
        })
        .await
    }
}
