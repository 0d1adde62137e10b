//! From alert state changes to messages: each change becomes a notification, sent at once to
//! the tier's receivers (critical) or kept as a digest item (warning, info by default), and
//! the alert's new state is persisted with it — the caller writes both in one transaction.

use crate::alert::Transition;
use crate::notify::{AlertInfo, Alerting, Kind, alert_message};
use crate::rule::Change;
use crate::store::{NewDelivery, StoredAlert};

/// What an evaluation's changes amount to.
#[derive(Debug, Default)]
pub(crate) struct Routed {
    /// New alert states.
    pub alerts: Vec<StoredAlert>,
    /// Messages to send now.
    pub deliveries: Vec<NewDelivery>,
    /// Digest items, by tier.
    pub digest: Vec<(String, crate::notify::Notification)>,
}

/// Routes `changes` decided at `now`.
pub(crate) fn route(alerting: Option<&Alerting>, changes: &[Change], now: i64) -> Routed {
    let mut routed = Routed::default();
    for c in changes {
        routed.alerts.push(StoredAlert {
            alert: c.alert.clone(),
            labels: c.labels.clone(),
            state: c.state,
            value: c.value,
            annotations: c.annotations.clone(),
        });
        let kind = match c.transition {
            Transition::Pending => continue,
            Transition::Fired => Kind::Firing,
            Transition::Reminder => Kind::Reminder,
            Transition::Resolved => Kind::Resolved,
        };
        let Some(alerting) = alerting else { continue };
        let severity = c.labels.get("severity").map_or("warning", String::as_str);
        let Some(tier) = alerting.tier(severity) else { continue };
        let info = AlertInfo {
            name: c.alert.clone(),
            labels: c.labels.clone(),
            annotations: c.annotations.clone(),
            value: c.value,
            fired_at: c.fired_at,
            resolved_at: (kind == Kind::Resolved).then_some(now),
        };
        let message = alert_message(kind, info, now);
        if tier.digest.is_some() {
            if kind != Kind::Reminder {
                routed.digest.push((severity.to_string(), message));
            }
            continue;
        }
        routed.deliveries.extend(NewDelivery::fan_out(&tier.receivers, severity, &message));
    }
    routed
}
