//! The store's own page, `MxwardenStoreFailing`: sent straight to the critical tier's
//! receivers with the notifiers — not through the outbox, which lives in the store that is
//! failing — once when the store starts refusing writes (with the error in words), and its
//! resolve once writes succeed again (`store::health` decides both). A receiver that fails is
//! tried a few times, then the tier's fallback receivers get the message. Nothing of this is
//! stored: a restart during the failure forgets it (the new run pages again if the store
//! still refuses writes).

use crate::clock::Clock;
use crate::dispatch::{retry_wait, send_once};
use crate::model::Labels;
use crate::notify::{AlertInfo, Alerting, Kind, Notification, SendError};
use crate::store::Store;
use crate::store::health::Failure;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Attempts per receiver before its message goes to the fallback receivers.
const ATTEMPTS: i64 = 3;

/// The alert's name.
pub(super) const ALERT: &str = "MxwardenStoreFailing";

/// Pages about the store's failures.
pub(super) struct StoreAlarm {
    pub(super) store: Store,
    pub(super) alerting: Arc<Alerting>,
    pub(super) http: reqwest::Client,
    pub(super) clock: Arc<dyn Clock>,
}

impl StoreAlarm {
    /// Follows the store's health until `stop` turns true.
    pub(super) async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut changes = self.store.health().subscribe();
        // The failure paged for, and the Matrix events that started its threads.
        let mut paged: Option<Failure> = None;
        let mut roots = BTreeMap::new();
        let mut now = self.store.health().failure();
        loop {
            let follow = async {
                if let Some(old) = paged.take_if(|o| now.as_ref().is_none_or(|f| f.since_ms != o.since_ms)) {
                    tracing::info!(since_ms = old.since_ms, "The store takes writes again.");
                    self.page(Kind::Resolved, &old, &mut roots).await;
                    roots.clear();
                }
                if let Some(failure) = now.take()
                    && paged.is_none()
                {
                    tracing::error!(error = %failure.error, "The store refuses writes; paging without it.");
                    self.page(Kind::Firing, &failure, &mut roots).await;
                    paged = Some(failure);
                }
            };
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return,
                () = follow => {}
            }
            now = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return,
                change = changes.changed() => match change {
                    Ok(failure) => failure,
                    Err(_) => return,
                },
            };
        }
    }

    /// The message about `failure`.
    fn message(&self, kind: Kind, failure: &Failure) -> Notification {
        let labels: Labels = [("alertname", ALERT), ("severity", "critical")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let summary = match kind {
            Kind::Resolved => {
                "mxwarden's store takes writes again; what was decided meanwhile is being written and delivered"
                    .to_string()
            }
            _ => format!(
                "mxwarden {}. Alert state, history and notifications are not being saved: decisions are kept in memory and retried every second, and this page did not go through the store",
                failure.error
            ),
        };
        let now = self.clock.now().as_millisecond();
        let alert = AlertInfo {
            name: ALERT.into(),
            labels,
            annotations: [("summary".to_string(), summary)].into_iter().collect(),
            value: 1.0,
            fired_at: failure.since_ms,
            resolved_at: (kind == Kind::Resolved).then_some(now),
        };
        crate::notify::alert_message(kind, alert, now)
    }

    /// Sends the message to the critical tier's receivers, and to its fallback receivers when
    /// one of them fails. A Matrix firing's event id is kept in `roots` to thread its resolve.
    async fn page(&self, kind: Kind, failure: &Failure, roots: &mut BTreeMap<String, String>) {
        let Some(tier) = self.alerting.tier("critical") else { return };
        let n = self.message(kind, failure);
        let delivery = format!(
            "store-failing-{}-{}",
            failure.since_ms,
            if kind == Kind::Resolved { "resolved" } else { "firing" }
        );
        let mut failed = Vec::new();
        for name in &tier.receivers {
            match self.send(name, &n, &delivery, roots.get(name).map(String::as_str)).await {
                Ok(Some(event)) if kind == Kind::Firing => {
                    roots.insert(name.clone(), event);
                }
                Ok(_) => {}
                Err(e) => failed.push(format!("{name}: {e}")),
            }
        }
        if failed.is_empty() || tier.fallback.is_empty() {
            return;
        }
        let mut fallback = n.clone();
        fallback.text = format!("{}\n(sent here because {} failed)", n.text, failed.join("; "));
        fallback.html = format!(
            "{}<br/><i>(sent here because {} failed)</i>",
            n.html,
            crate::notify::html_escape(&failed.join("; "))
        );
        for name in &tier.fallback {
            if let Err(e) = self.send(name, &fallback, &format!("{delivery}-fallback"), None).await {
                tracing::error!(receiver = %name, error = %e, "The store-failing page reached no fallback receiver.");
            }
        }
    }

    /// Sends `n` through receiver `name`, a few times while the error is transient.
    async fn send(
        &self,
        name: &str,
        n: &Notification,
        delivery: &str,
        root: Option<&str>,
    ) -> Result<Option<String>, SendError> {
        let Some(receiver) = self.alerting.receivers.get(name) else {
            return Err(SendError::Permanent(format!("receiver `{name}` is not configured")));
        };
        let mut attempt = 0;
        loop {
            let error = match send_once(&self.http, name, receiver, delivery, n, root).await {
                Ok(event) => {
                    tracing::info!(receiver = %name, title = %n.title, "Notification delivered without the store.");
                    return Ok(event);
                }
                Err(e) => e,
            };
            attempt += 1;
            tracing::warn!(receiver = %name, attempt, error = %error, "Store-failing page not delivered.");
            let SendError::Transient { retry_after, .. } = &error else { return Err(error) };
            if attempt >= ATTEMPTS {
                return Err(error);
            }
            let backoff = self.alerting.retry.backoff(attempt - 1, 0.5);
            // The server's hint is honoured (capped), but never beyond the backoff's own cap:
            // the resolve waits behind this.
            let wait = retry_wait(backoff, *retry_after, self.clock.now().as_millisecond());
            tokio::time::sleep(Duration::from_millis(u64::try_from(wait.min(self.alerting.retry.max_ms)).unwrap_or(0)))
                .await;
        }
    }
}
