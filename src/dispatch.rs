//! Delivers the outbox: claims due rows (the oldest per receiver and incident, so a resolve
//! never overtakes its firing message), sends each through its receiver, and records the
//! outcome — sent; retry later with exponential backoff and jitter (or the server's
//! Retry-After, honoured up to `notify::retry_after::MAX_RETRY_AFTER`, with saturating
//! arithmetic: no number a server sends can put the due time in the past); dead on a permanent
//! error or after a day. A critical whose receivers keep
//! failing (Matrix may be the very thing that is down) is copied to the tier's fallback
//! receivers once. Matrix sends reuse the row id as transaction id, so a crash between
//! sending and recording can never post twice. A row sent while the store refuses writes
//! (a full disk) is remembered as sent and recorded once the store takes writes again, so it
//! is not sent again every round meanwhile.
//!
//! With instances sharing the store, only the leader delivers: each row is claimed under the
//! leader's term right before it is sent (`Store::claim_delivery`, fenced), and the process's
//! belief in its term is checked again just before the request leaves, so a deposed leader
//! that wakes up sends nothing. Recording a success is not fenced: the message was sent,
//! whoever sent it, and refusing to record it would only send it again.

use crate::clock::Clock;
use crate::notify::RetryPolicy;
use crate::notify::{Alerting, Kind, Notification, Receiver, RetryAfter, SendError};
use crate::store::{Delivery, NewDelivery, Store, StoreError};
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;

/// The wait before the next attempt, ms, from `now_ms`: the backoff, or the server's hint when
/// it asks for longer (a hint is capped, see `RetryAfter::wait_ms`). Never negative.
pub(crate) fn retry_wait(backoff_ms: i64, hint: Option<RetryAfter>, now_ms: i64) -> i64 {
    let backoff = backoff_ms.max(0);
    hint.map_or(backoff, |h| h.wait_ms(now_ms).max(backoff))
}

/// The outbox's delivery loop.
pub struct Dispatcher {
    store: Store,
    alerting: Arc<Alerting>,
    http: reqwest::Client,
    retry: RetryPolicy,
    clock: Arc<dyn Clock>,
    /// Rows sent whose success the store refused to record, with when they were sent, ms.
    unrecorded: std::sync::Mutex<std::collections::BTreeMap<i64, i64>>,
}

/// An HTTP client for notifiers (system roots, rustls).
pub fn http_client() -> Result<reqwest::Client, String> {
    let roots = crate::probe::tls::system_roots();
    crate::probe::http::client(&roots, &crate::probe::spec::TlsOptions::default(), true)
}

/// Sends `n` through `receiver` once. `delivery` identifies the attempt (Matrix txn id,
/// webhook delivery id, email Message-ID); `thread_root` threads Matrix messages.
pub(crate) async fn send_once(
    http: &reqwest::Client,
    name: &str,
    receiver: &Receiver,
    delivery: &str,
    n: &Notification,
    thread_root: Option<&str>,
) -> Result<Option<String>, SendError> {
    match receiver {
        Receiver::Matrix(m) => m.send(http, &format!("mxwarden-{delivery}"), n, thread_root).await.map(Some),
        Receiver::Email(e) => e.send(delivery, n).await.map(|()| None),
        Receiver::Webhook(w) => w.send(http, name, delivery, n).await.map(|()| None),
    }
}

impl Dispatcher {
    /// A dispatcher over `store`.
    pub fn new(
        store: Store,
        alerting: Arc<Alerting>,
        http: reqwest::Client,
        retry: RetryPolicy,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { store, alerting, http, retry, clock, unrecorded: Default::default() }
    }

    /// Delivers every due row once; returns how many were attempted.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let recorded = self.record_unrecorded().await;
        let now = self.clock.now().as_millisecond();
        let mut due = self.store.due(now).await?;
        due.retain(|d| !self.unrecorded().contains_key(&d.id));
        for d in &due {
            self.deliver(d).await?;
        }
        recorded.map(|()| due.len())
    }

    fn unrecorded(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<i64, i64>> {
        self.unrecorded.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records the rows sent while the store refused writes.
    async fn record_unrecorded(&self) -> Result<(), StoreError> {
        let sent: Vec<(i64, i64)> = self.unrecorded().iter().map(|(id, at)| (*id, *at)).collect();
        for (id, at) in sent {
            self.store.mark_sent(id, at).await?;
            self.unrecorded().remove(&id);
        }
        Ok(())
    }

    /// When the next row is due, if any.
    pub(crate) async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        self.store.next_due().await
    }

    async fn deliver(&self, d: &Delivery) -> Result<(), StoreError> {
        let now = || self.clock.now().as_millisecond();
        let Some(receiver) = self.alerting.receivers.get(&d.receiver) else {
            let why = format!("receiver `{}` is no longer configured", d.receiver);
            return self.store.mark_failed(d.id, &why, now(), true).await;
        };
        if !self.store.claim_delivery(d.id).await? {
            return Ok(());
        }
        let n = &d.notification;
        let root = match receiver {
            Receiver::Matrix(_) => self.store.thread_root(&d.receiver, &n.incident).await?,
            _ => None,
        };
        if !self.store.leads() {
            // Stopped between the claim and here for longer than the lease is believed.
            return Ok(());
        }
        match send_once(&self.http, &d.receiver, receiver, &d.id.to_string(), n, root.as_deref()).await {
            Ok(event_id) => {
                if let (Some(event), None, Kind::Firing) = (&event_id, &root, n.kind) {
                    self.store.set_thread_root(&d.receiver, &n.incident, event).await?;
                }
                tracing::info!(id = d.id, receiver = %d.receiver, title = %n.title, "Notification delivered.");
                let sent_at = now();
                let recorded = self.store.mark_sent(d.id, sent_at).await;
                if recorded.is_err() {
                    self.unrecorded().insert(d.id, sent_at);
                }
                recorded
            }
            Err(error) => {
                let attempts = d.attempts.saturating_add(1);
                let old = now().saturating_sub(n.created_at) > self.retry.give_up_ms;
                let at = now();
                let (dead, wait) = match &error {
                    SendError::Permanent(_) => (true, 0),
                    SendError::Transient { retry_after, .. } => {
                        let backoff = self.retry.backoff(d.attempts, rand::rng().random::<f64>());
                        (old, retry_wait(backoff, *retry_after, at))
                    }
                };
                tracing::warn!(id = d.id, receiver = %d.receiver, attempts, dead, wait_ms = wait, error = %error, "Notification not delivered.");
                self.store.mark_failed(d.id, &error.to_string(), at.saturating_add(wait), dead).await?;
                self.maybe_fall_back(d, attempts, dead).await
            }
        }
    }

    /// Copies a failing critical to the tier's fallback receivers, once.
    async fn maybe_fall_back(&self, d: &Delivery, attempts: i64, dead: bool) -> Result<(), StoreError> {
        let Some(tier) = self.alerting.tiers.get(&d.tier) else { return Ok(()) };
        if d.fallback_of.is_some() || d.fallback_queued || tier.fallback.is_empty() {
            return Ok(());
        }
        if !dead && attempts < i64::from(tier.fallback_after) {
            return Ok(());
        }
        let mut n = d.notification.clone();
        n.text = format!("{}\n(sent here because {} failed)", n.text, d.receiver);
        n.html =
            format!("{}<br/><i>(sent here because {} failed)</i>", n.html, crate::notify::html_escape(&d.receiver));
        let mut fallbacks = NewDelivery::fan_out(&tier.fallback, &d.tier, &n);
        for f in &mut fallbacks {
            f.fallback_of = Some(d.id);
        }
        tracing::warn!(id = d.id, receiver = %d.receiver, fallback = ?tier.fallback, "Falling back.");
        self.store.queue_fallback(d.id, &fallbacks, self.clock.now().as_millisecond()).await
    }

    /// Delivers until `stop` is set; wakes early when `wake` is notified.
    pub(crate) async fn run(&self, wake: Arc<tokio::sync::Notify>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            match self.run_once().await {
                Ok(_) => {}
                Err(e) if e.is_fenced() => tracing::info!(error = %e, "Not delivering: this instance does not lead."),
                Err(e) => tracing::error!(error = %e, "Outbox delivery failed; retrying."),
            }
            let now = self.clock.now().as_millisecond();
            let wait = match self.next_due().await {
                Ok(Some(due)) => Duration::from_millis(due.saturating_sub(now).clamp(50, 1_000) as u64),
                _ => Duration::from_secs(1),
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = wake.notified() => {}
                _ = stop.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_servers_hint_lengthens_the_wait_but_never_past_the_cap_or_below_zero() {
        use std::time::Duration;
        let cap = crate::notify::retry_after::MAX_RETRY_AFTER.as_millis() as i64;
        let now = 1_700_000_000_000;
        let header = |v: &str| RetryAfter::from_header(v);
        let cases = [
            (2_000, None, 2_000, "no hint: the backoff"),
            (2_000, header("1"), 2_000, "a shorter hint does not hurry the backoff"),
            (2_000, header("30"), 30_000, "a longer hint is honoured"),
            (2_000, header("18446744073709551615"), cap, "u64::MAX seconds waits the cap, not -1 ms"),
            (2_000, header("-5"), 2_000, "a negative header is ignored"),
            (2_000, header("never"), 2_000, "a non-numeric header is ignored"),
            (2_000, RetryAfter::from_matrix_ms(&serde_json::json!(u64::MAX)), cap, "retry_after_ms u64::MAX"),
            (2_000, RetryAfter::from_matrix_ms(&serde_json::json!(i64::MAX)), cap, "retry_after_ms i64::MAX"),
            (2_000, Some(RetryAfter::Delay(Duration::MAX)), cap, "Duration::MAX"),
            (2_000, header("Thu, 01 Jan 1970 00:00:00 GMT"), 2_000, "a date in the past: the backoff"),
            (2_000, header("Thu, 01 Jan 2099 00:00:00 GMT"), cap, "a date far ahead: the cap"),
            (-5, None, 0, "a negative backoff cannot happen, and would not be used"),
        ];
        for (backoff, hint, want, why) in cases {
            let wait = retry_wait(backoff, hint, now);
            assert_eq!(wait, want, "{why}");
            assert!(now.saturating_add(wait) >= now, "{why}: the due time is not in the past");
        }
    }
}
