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
        let rows = sqlx::query("SELECT key, value FROM meta WHERE key >= ? AND key < ? ORDER BY key")
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
            "SELECT DISTINCT receiver FROM outbox WHERE incident = ? AND created_at >= ? AND fallback_of IS NOT NULL ORDER BY receiver",
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
                insert_delivery(conn, d, now).await?;
                let id: i64 = sqlx::query_scalar("SELECT last_insert_rowid()").fetch_one(&mut *conn).await?;
                first.get_or_insert(id);
                if !fallback.is_empty() {
                    sqlx::query("UPDATE outbox SET fallback_queued = 1 WHERE id = ?")
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
            sqlx::query("DELETE FROM meta WHERE key = ?").bind(key).execute(&mut *conn).await?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::{Kind, Notification};
    use crate::store::Decision;

    fn row(receiver: &str, kind: Kind, fallback_of: Option<i64>) -> NewDelivery {
        NewDelivery {
            receiver: receiver.into(),
            tier: "critical".into(),
            notification: Notification {
                kind,
                incident: "inc".into(),
                title: "t".into(),
                text: String::new(),
                html: String::new(),
                alerts: Vec::new(),
                created_at: 1_000,
            },
            fallback_of,
        }
    }

    #[tokio::test]
    async fn a_follow_up_is_pending_with_its_page_and_queued_in_one_step() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).await.unwrap();
        let page = Decision {
            deliveries: vec![row("room", Kind::Firing, None)],
            meta: vec![(format!("{PREFIX}1000:inc"), "{}".into()), ("digest:warning:last".into(), "5".into())],
            ..Decision::default()
        };
        store.commit(&[page], 1_000).await.unwrap();
        assert_eq!(store.pending_followups().await.unwrap(), [(format!("{PREFIX}1000:inc"), "{}".to_string())]);
        let first = store.due(1_000).await.unwrap()[0].id;
        store.queue_fallback(first, &[row("mail", Kind::Firing, Some(first))], 1_100).await.unwrap();
        assert_eq!(store.fallback_receivers("inc", 1_000).await.unwrap(), ["mail"], "the page fell back");
        assert!(store.fallback_receivers("inc", 2_000).await.unwrap().is_empty(), "not an older incident's");
        store
            .finish_followup(
                &format!("{PREFIX}1000:inc"),
                &[row("room", Kind::Diagnosis, None)],
                &[row("mail", Kind::Diagnosis, None)],
                1_200,
            )
            .await
            .unwrap();
        assert!(store.pending_followups().await.unwrap().is_empty(), "queued: no longer pending");
        let rows = store.outbox(false, 10).await.unwrap();
        let diagnosis: Vec<_> = rows.iter().filter(|d| d.notification.kind == Kind::Diagnosis).collect();
        assert_eq!(diagnosis.len(), 2, "{rows:?}");
        let primary = diagnosis.iter().find(|d| d.receiver == "room").unwrap();
        let copy = diagnosis.iter().find(|d| d.receiver == "mail").unwrap();
        assert!(primary.fallback_queued, "a failing room does not copy it to the fallback again");
        assert_eq!(copy.fallback_of, Some(primary.id), "the copy never falls back itself");
    }
}
