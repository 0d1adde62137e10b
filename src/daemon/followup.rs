//! A diagnosis follows every critical page. The page's decision also records a pending
//! follow-up (`store::followup`, same transaction), so once a page is decided its follow-up
//! cannot be lost: this task runs the playbooks that explain the alert (`diagnose::Topic::
//! for_alert`) in the background, bounded by [`DEADLINE`], and queues the findings for the
//! page's Matrix receivers — the dispatcher threads them under the page, after it — and for
//! the fallback receivers (Matrix or email, not webhooks) when those carried the page. The page itself never waits for it. A
//! playbook that fails says so in one line of the follow-up. Pending follow-ups left by a
//! restart run at start; ones older than [`STALE_MS`] are dropped with a log line.

use crate::clock::Clock;
use crate::config::Config;
use crate::diagnose::{self, Topic};
use crate::notify::{AlertInfo, Alerting, Kind, Notification, Receiver};
use crate::store::followup::PREFIX;
use crate::store::{Decision, NewDelivery, Store};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};

/// How long a diagnosis may take.
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

/// A pending follow-up older than this (mxwarden was down meanwhile) is dropped, ms.
const STALE_MS: i64 = 3_600_000;

/// How often the pending list is read again without a signal (after a refused write).
const RESCAN: Duration = Duration::from_secs(15);

/// What a pending follow-up remembers of its page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pending {
    incident: String,
    alert: AlertInfo,
    /// The page's Matrix receivers.
    receivers: Vec<String>,
    /// When the page was decided, ms.
    created_at: i64,
}

/// The settings that mark a follow-up due for each critical page in `decision` that went to a
/// Matrix receiver (pure: the evaluator adds them to the decision before committing it).
pub(super) fn marks(decision: &Decision, alerting: &Alerting) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut pages: Vec<Pending> = Vec::new();
    for d in &decision.deliveries {
        let n = &d.notification;
        if n.kind != Kind::Firing || d.tier != "critical" || d.fallback_of.is_some() {
            continue;
        }
        if !matches!(alerting.receivers.get(&d.receiver), Some(Receiver::Matrix(_))) {
            continue;
        }
        let Some(alert) = n.alerts.first() else { continue };
        match pages.iter_mut().find(|p| p.incident == n.incident) {
            Some(p) => p.receivers.push(d.receiver.clone()),
            None => pages.push(Pending {
                incident: n.incident.clone(),
                alert: alert.clone(),
                receivers: vec![d.receiver.clone()],
                created_at: n.created_at,
            }),
        }
    }
    for p in pages {
        if let Ok(json) = serde_json::to_string(&p) {
            out.push((format!("{PREFIX}{}:{}", p.created_at, p.incident), json));
        }
    }
    out
}

/// The follow-up task.
pub(super) struct FollowUps {
    pub(super) store: Store,
    pub(super) config: Arc<Config>,
    pub(super) clock: Arc<dyn Clock>,
    /// Wakes the dispatcher once rows are queued.
    pub(super) wake: Arc<Notify>,
    /// Woken by the evaluator after a commit that marked follow-ups.
    pub(super) signal: Arc<Notify>,
}

impl FollowUps {
    /// Runs until `stop`.
    pub(super) async fn run(self, mut stop: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let mut running: HashSet<String> = HashSet::new();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
        loop {
            match this.store.pending_followups().await {
                Ok(list) => {
                    for (key, value) in list {
                        if running.insert(key.clone()) {
                            let (job, done) = (this.clone(), done_tx.clone());
                            tokio::spawn(async move {
                                job.follow_up(&key, &value).await;
                                let _ = done.send(key);
                            });
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "Pending diagnoses could not be read; trying again."),
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = this.signal.notified() => {}
                Some(key) = done_rx.recv() => { running.remove(&key); }
                _ = tokio::time::sleep(RESCAN) => {}
            }
        }
    }

    /// Runs one follow-up and queues it; on a refused write the setting stays and the next
    /// scan tries again.
    async fn follow_up(&self, key: &str, value: &str) {
        let now = || self.clock.now().as_millisecond();
        let pending: Pending = match serde_json::from_str(value) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(key, error = %e, "A pending diagnosis could not be read; dropped.");
                let _ = self.store.finish_followup(key, &[], &[], now()).await;
                return;
            }
        };
        if now().saturating_sub(pending.created_at) > STALE_MS {
            tracing::info!(alert = %pending.alert.name, "A diagnosis left by a restart is over an hour old; dropped.");
            let _ = self.store.finish_followup(key, &[], &[], now()).await;
            return;
        }
        let topics: Vec<Topic> =
            Topic::for_alert(&pending.alert.name).into_iter().filter(|t| t.possible(&self.config)).collect();
        if topics.is_empty() {
            tracing::debug!(alert = %pending.alert.name, "No playbook explains this alert; no diagnosis follows.");
            let _ = self.store.finish_followup(key, &[], &[], now()).await;
            return;
        }
        let body = match tokio::time::timeout(
            DEADLINE + Duration::from_secs(1),
            diagnose::run(&self.config, &topics, DEADLINE),
        )
        .await
        {
            Ok(report) => diagnose::render_text(&report),
            Err(_) => format!("The diagnosis did not finish within {} s.", DEADLINE.as_secs()),
        };
        let body = self.config.redactor.redact(&body).into_owned();
        let n = message(&pending, &topics, &body, now());
        let primary = NewDelivery::fan_out(&pending.receivers, "critical", &n);
        let fallback = match self.store.fallback_receivers(&pending.incident, pending.created_at).await {
            Ok(list) => {
                // A webhook would read the follow-up as another firing alert: people's
                // channels only.
                let webhook = |r: &String| {
                    self.config
                        .alerting
                        .as_ref()
                        .is_some_and(|a| matches!(a.receivers.get(r), Some(Receiver::Webhook(_)) | None))
                };
                let extra: Vec<String> =
                    list.into_iter().filter(|r| !pending.receivers.contains(r) && !webhook(r)).collect();
                NewDelivery::fan_out(&extra, "critical", &n)
            }
            Err(e) => {
                tracing::warn!(error = %e, "Could not tell whether the page fell back; the diagnosis goes to the page's receivers.");
                Vec::new()
            }
        };
        match self.store.finish_followup(key, &primary, &fallback, now()).await {
            Ok(()) => {
                tracing::info!(alert = %pending.alert.name, receivers = primary.len() + fallback.len(), "Diagnosis queued.");
                self.wake.notify_one();
            }
            Err(e) => tracing::warn!(error = %e, "The diagnosis could not be queued; it runs again."),
        }
    }
}

/// The follow-up message: plain text, and the same text preformatted in HTML.
fn message(p: &Pending, topics: &[Topic], body: &str, now: i64) -> Notification {
    let service = p.alert.labels.get("service").map(String::as_str).unwrap_or_default();
    let names: Vec<&str> = topics.iter().map(|t| t.name()).collect();
    let title = crate::text::escape_controls(&format!("[DIAGNOSIS] {} {service} ({})", p.alert.name, names.join(", ")))
        .into_owned();
    Notification {
        kind: Kind::Diagnosis,
        incident: p.incident.clone(),
        text: format!("{title}\n{body}"),
        html: format!("<b>{}</b><pre>{}</pre>", crate::notify::html_escape(&title), crate::notify::html_escape(body)),
        title,
        alerts: vec![p.alert.clone()],
        created_at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alerting() -> Alerting {
        let room = crate::notify::matrix::MatrixReceiver::new(
            url::Url::parse("http://hs.example").unwrap(),
            "!r:hs".into(),
            "t".into(),
            "m.notice".into(),
        );
        let hook = crate::notify::webhook::WebhookReceiver {
            url: url::Url::parse("http://hook.example").unwrap(),
            hmac_secret: None,
            headers: Vec::new(),
        };
        Alerting {
            receivers: [("room".to_string(), Receiver::Matrix(room)), ("hook".to_string(), Receiver::Webhook(hook))]
                .into_iter()
                .collect(),
            tiers: Default::default(),
            timezone: jiff::tz::TimeZone::UTC,
            retry: Default::default(),
        }
    }

    fn delivery(receiver: &str, tier: &str, kind: Kind, incident: &str, fallback_of: Option<i64>) -> NewDelivery {
        let alert = AlertInfo {
            name: "SynapseDown".into(),
            labels: Default::default(),
            annotations: Default::default(),
            value: 0.0,
            fired_at: 7,
            resolved_at: None,
        };
        NewDelivery {
            receiver: receiver.into(),
            tier: tier.into(),
            notification: Notification {
                kind,
                incident: incident.into(),
                title: String::new(),
                text: String::new(),
                html: String::new(),
                alerts: vec![alert],
                created_at: 7,
            },
            fallback_of,
        }
    }

    #[test]
    fn only_critical_pages_to_a_matrix_room_mark_a_follow_up() {
        let cases: &[(&str, &str, Kind, Option<i64>, bool, &str)] = &[
            ("room", "critical", Kind::Firing, None, true, "a critical page in a room"),
            ("hook", "critical", Kind::Firing, None, false, "a webhook has no thread"),
            ("room", "warning", Kind::Firing, None, false, "warnings go to the digest"),
            ("room", "critical", Kind::Resolved, None, false, "a resolve needs no diagnosis"),
            ("room", "critical", Kind::Reminder, None, false, "a reminder had its diagnosis"),
            ("room", "critical", Kind::Firing, Some(3), false, "a fallback copy is not a new page"),
        ];
        for (receiver, tier, kind, fallback_of, want, why) in cases {
            let d = Decision {
                deliveries: vec![delivery(receiver, tier, *kind, "i", *fallback_of)],
                ..Decision::default()
            };
            assert_eq!(!marks(&d, &alerting()).is_empty(), *want, "{why}");
        }
        let two = Decision {
            deliveries: vec![
                delivery("room", "critical", Kind::Firing, "i", None),
                delivery("hook", "critical", Kind::Firing, "i", None),
            ],
            ..Decision::default()
        };
        let m = marks(&two, &alerting());
        assert_eq!(m.len(), 1, "one follow-up per incident");
        assert!(m[0].0.starts_with(PREFIX) && m[0].0.ends_with(":i"), "{}", m[0].0);
        let p: Pending = serde_json::from_str(&m[0].1).unwrap();
        assert_eq!(p.receivers, ["room"], "the page's Matrix receivers only");
    }

    #[test]
    fn a_diagnosis_message_keeps_the_incident_and_escapes() {
        let alert = AlertInfo {
            name: "SynapseDown".into(),
            labels: [("service".to_string(), "syn\u{1b}[2J".to_string())].into_iter().collect(),
            annotations: Default::default(),
            value: 0.0,
            fired_at: 1,
            resolved_at: None,
        };
        let p = Pending { incident: "i".into(), alert, receivers: vec!["room".into()], created_at: 1 };
        let n = message(&p, &[Topic::SynapseOom], "== synapse-oom\n<b>x</b>", 5);
        assert_eq!((n.kind, n.incident.as_str()), (Kind::Diagnosis, "i"), "same incident: same thread");
        assert!(!n.title.contains('\u{1b}'), "{}", n.title);
        assert!(n.html.contains("&lt;b&gt;x"), "{}", n.html);
    }
}
