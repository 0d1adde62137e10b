//! The notification gate between routing and the outbox: pages for a service in maintenance
//! are held until its window ends, and pages explained by a dependency's outage are held
//! while that dependency is down (its own page names them). Held is not dropped: a held page
//! whose alert still fires when the reason ends is sent then; one whose alert resolved in the
//! meantime sends nothing for maintenance, and its resolve for a dependency (resolves always
//! flow). Held pages live in the store, so a restart keeps them. Shortly before an ad hoc
//! window ends, a reminder goes to the critical tier. `decide` is the pure core; `Gate` adds
//! the calendar and reads the store — it writes nothing: what it decides goes into the
//! evaluation's one transaction (`store::Decision`), and the gate learns of it once committed.

use crate::alert::Phase;
use crate::maintenance::calendar::{AdHocWindow, Calendar, Millis};
use crate::notify::{AlertInfo, Kind, Notification, html_escape};
use crate::rule::AlertStatus;
use crate::store::maintenance::{self as mstore, Held, HoldReason};
use crate::store::{NewDelivery, Store, StoreError};
use crate::topology::{Topology, group};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// (receiver, incident).
pub(crate) type Key = (String, String);

/// What one evaluation's pages meet.
pub(crate) struct Inputs<'a> {
    /// Now, ms.
    pub now: Millis,
    /// Whether a service is in maintenance now.
    pub in_maintenance: &'a (dyn Fn(&str) -> bool + Sync),
    /// Services whose down alert is pending or firing now, or was within the settle time.
    pub down: &'a BTreeSet<String>,
    /// Services failing now (any pending or firing alert), for the group page.
    pub failing: &'a BTreeSet<String>,
    /// Incidents firing now.
    pub firing: &'a BTreeSet<String>,
    /// The topology.
    pub topology: &'a Topology,
    /// What is held.
    pub held: &'a BTreeMap<Key, Held>,
}

/// What to do.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Deliver now.
    pub send: Vec<NewDelivery>,
    /// Hold (new or changed).
    pub hold: Vec<Held>,
    /// No longer held.
    pub release: Vec<Key>,
    /// Ad hoc windows whose ending reminder is in `send`.
    pub reminded: Vec<i64>,
}

fn service_of(n: &Notification) -> Option<&str> {
    n.alerts.first().and_then(|a| a.labels.get("service")).map(String::as_str)
}

/// Why a page of `service` must wait now, if it must.
fn reason(i: &Inputs<'_>, service: &str) -> Option<HoldReason> {
    if (i.in_maintenance)(service) {
        return Some(HoldReason::Maintenance);
    }
    group::covering(i.topology, service, i.down).map(|d| HoldReason::Dependency(d.to_string()))
}

/// Decides the fate of this evaluation's `deliveries` and of every page held before.
pub(crate) fn decide(i: &Inputs<'_>, deliveries: Vec<NewDelivery>) -> Outcome {
    let mut out = Outcome::default();
    let mut touched: BTreeSet<Key> = BTreeSet::new();
    for mut d in deliveries {
        let key = (d.receiver.clone(), d.notification.incident.clone());
        let Some(service) = service_of(&d.notification).map(str::to_string) else {
            out.send.push(d);
            continue;
        };
        touched.insert(key.clone());
        match d.notification.kind {
            Kind::Resolved => {
                if let Some(h) = i.held.get(&key) {
                    out.release.push(key);
                    // Fired and resolved inside a window: nothing was ever said, say nothing.
                    if h.reason == HoldReason::Maintenance && h.delivery.notification.kind == Kind::Firing {
                        continue;
                    }
                }
                out.send.push(d);
            }
            Kind::Firing | Kind::Reminder => {
                if group::is_down_alert(i.topology, &service, &d.notification) {
                    d.notification = group::group_page(i.topology, &service, d.notification, i.failing);
                }
                match reason(i, &service) {
                    None => out.send.push(d),
                    Some(reason) => {
                        let held_firing = i.held.get(&key).filter(|h| h.delivery.notification.kind == Kind::Firing);
                        let delivery = match (held_firing, d.notification.kind) {
                            // A reminder of a page never sent: the page itself stays held.
                            (Some(h), Kind::Reminder) => h.delivery.clone(),
                            _ => d,
                        };
                        out.hold.push(Held { delivery, service, reason, held_at: i.now });
                    }
                }
            }
            Kind::Digest | Kind::Test | Kind::Diagnosis | Kind::Notice => out.send.push(d),
        }
    }
    for (key, h) in i.held {
        if touched.contains(key) {
            continue;
        }
        if !i.firing.contains(&key.1) {
            out.release.push(key.clone());
            continue;
        }
        match reason(i, &h.service) {
            Some(r) if r == h.reason => {}
            Some(reason) => out.hold.push(Held { reason, ..h.clone() }),
            None => {
                let mut d = h.delivery.clone();
                let why = match &h.reason {
                    HoldReason::Dependency(dep) => {
                        format!("held while {} was down; still firing", i.topology.display(dep))
                    }
                    HoldReason::Maintenance => "held during maintenance; still firing now that it is over".to_string(),
                };
                d.notification.text.push_str(&format!("\n({why})"));
                d.notification.html.push_str(&format!("<br/><i>({})</i>", html_escape(&why)));
                out.send.push(d);
                out.release.push(key.clone());
            }
        }
    }
    out
}

/// The reminder that ad hoc window `w` ends soon, for each of `receivers`.
pub(crate) fn ending_reminder(w: &AdHocWindow, receivers: &[String], now: Millis) -> Vec<NewDelivery> {
    let services = w.services.join(", ");
    let left = crate::units::HumanDuration(std::time::Duration::from_millis(
        ((w.ends_at - now).max(0) as u64).div_ceil(60_000) * 60_000,
    ));
    let end = crate::units::utc_minute(w.ends_at);
    let title = format!("[MAINTENANCE] window #{} for {services} ends in {left}", w.id);
    let text = format!(
        "{title}\nReason: {}\nIt ends at {end}; then pages flow again, and alerts still firing are sent. \
         Extend it with `mxwarden maintenance start {} --for …` or end it with `mxwarden maintenance end {}`.",
        w.reason,
        w.services.join(" "),
        w.id
    );
    let labels = [
        ("alertname".to_string(), "MaintenanceEnding".to_string()),
        ("maintenance_id".to_string(), w.id.to_string()),
        ("services".to_string(), services.clone()),
        ("severity".to_string(), "info".to_string()),
    ]
    .into_iter()
    .collect();
    let info = AlertInfo {
        name: "MaintenanceEnding".into(),
        labels,
        annotations: [("summary".to_string(), title.clone()), ("reason".to_string(), w.reason.clone())]
            .into_iter()
            .collect(),
        value: (w.ends_at - now) as f64 / 1000.0,
        fired_at: now,
        resolved_at: None,
    };
    let n = Notification {
        kind: Kind::Reminder,
        incident: format!("maintenance:{}", w.id),
        html: format!("<b>{}</b><br/>Reason: {}<br/>Ends at {end}.", html_escape(&title), html_escape(&w.reason)),
        title,
        text,
        alerts: vec![info],
        created_at: now,
    };
    NewDelivery::fan_out(receivers, "critical", &n)
}

/// The gate as the daemon runs it.
pub(crate) struct Gate {
    store: Store,
    calendar: Arc<Calendar>,
    topology: Topology,
    reminder_lead_ms: Millis,
    settle_ms: Millis,
    receivers: Vec<String>,
    /// What is held, as committed; `None` until read from the store (again after a failed
    /// commit, so the cache never holds what the store does not).
    held: Option<BTreeMap<Key, Held>>,
    last_down: BTreeMap<String, Millis>,
}

impl Gate {
    /// A gate over `store`. `settle_ms`: how long a dependency must have been up again before
    /// the pages it held are sent (its dependents' checks need a round to see it back);
    /// `receivers`: where maintenance reminders go (the critical tier's).
    pub(crate) fn new(
        store: Store,
        calendar: Arc<Calendar>,
        topology: Topology,
        reminder_lead_ms: Millis,
        settle_ms: Millis,
        receivers: Vec<String>,
    ) -> Self {
        Self {
            store,
            calendar,
            topology,
            reminder_lead_ms,
            settle_ms,
            receivers,
            held: None,
            last_down: BTreeMap::new(),
        }
    }

    /// Re-reads the ad hoc windows (opened by the API or by `mxwarden maintenance` in another
    /// process) into the calendar.
    pub(crate) async fn refresh(&self, now: Millis) -> Result<(), StoreError> {
        self.calendar.set_ad_hoc(mstore::current(&self.store, now).await?);
        Ok(())
    }

    /// Decides this evaluation's `deliveries` given every pending and firing alert: what to
    /// send now (including released pages and, with `remind`, maintenance reminders now due),
    /// what to hold and what to release. Writes nothing: the caller commits the outcome with
    /// the evaluation and then calls [`Gate::decided`].
    pub(crate) async fn pass(
        &mut self,
        deliveries: Vec<NewDelivery>,
        alerts: &[AlertStatus],
        now: Millis,
        remind: bool,
    ) -> Result<Outcome, StoreError> {
        let held = match &self.held {
            Some(h) => h,
            None => self.held.insert(mstore::held(&self.store).await?.into_iter().map(|h| (h.key(), h)).collect()),
        };
        let mut failing = BTreeSet::new();
        let mut firing = BTreeSet::new();
        for a in alerts {
            let Some(service) = a.labels.get("service") else { continue };
            failing.insert(service.clone());
            if a.state == Phase::Firing {
                firing.insert(crate::notify::incident_key(&a.labels));
            }
            if a.labels.get("alertname") == self.topology.down_alert(service).as_ref() {
                self.last_down.insert(service.clone(), now);
            }
        }
        for h in held.values() {
            if let HoldReason::Dependency(dep) = &h.reason {
                // After a restart, a dependency that held pages waits one settle time too.
                self.last_down.entry(dep.clone()).or_insert(now);
            }
        }
        let settle = self.settle_ms.max(1);
        self.last_down.retain(|_, at| now - *at < settle);
        let down: BTreeSet<String> = self.last_down.keys().cloned().collect();
        let calendar = self.calendar.clone();
        let in_maintenance = move |s: &str| calendar.in_maintenance(s, now);
        let inputs = Inputs {
            now,
            in_maintenance: &in_maintenance,
            down: &down,
            failing: &failing,
            firing: &firing,
            topology: &self.topology,
            held,
        };
        let mut out = decide(&inputs, deliveries);
        if remind && self.reminder_lead_ms > 0 && !self.receivers.is_empty() {
            for w in mstore::due_reminders(&self.store, now, self.reminder_lead_ms).await? {
                tracing::info!(window = w.id, "Maintenance window ends soon; reminding.");
                out.send.extend(ending_reminder(&w, &self.receivers, now));
                out.reminded.push(w.id);
            }
        }
        Ok(out)
    }

    /// Forgets what it knows of held pages (read again from the store on the next pass): for
    /// an instance that becomes leader, whose cache may predate the last leader's decisions.
    pub(crate) fn forget(&mut self) {
        self.held = None;
        self.last_down.clear();
    }

    /// Learns what a pass decided. The cache follows decisions, not commits: a decision the
    /// store refuses is kept by the evaluator and committed later, so it stands either way.
    pub(crate) fn decided(&mut self, outcome_hold: &[Held], outcome_release: &[Key]) {
        let Some(held) = &mut self.held else { return };
        for h in outcome_hold {
            tracing::info!(incident = %h.delivery.notification.incident, reason = %h.reason, "Page held.");
            held.insert(h.key(), h.clone());
        }
        for key in outcome_release {
            held.remove(key);
        }
    }

    /// The next moment time alone changes what the gate decides after `now`: a dependency's
    /// settle time running out, the end of a maintenance window that holds pages, a window's
    /// ending reminder.
    pub(crate) fn next_deadline(&self, now: Millis) -> Option<Millis> {
        let settled = self.last_down.values().map(|at| at.saturating_add(self.settle_ms.max(1)));
        let window_ends = self
            .held
            .iter()
            .flat_map(|h| h.values())
            .filter(|h| h.reason == HoldReason::Maintenance)
            .filter_map(|h| self.calendar.maintenance_end(&h.service, now));
        let reminders = (self.reminder_lead_ms > 0 && !self.receivers.is_empty())
            .then(|| self.calendar.ad_hoc())
            .into_iter()
            .flatten()
            .map(|w| w.ends_at.saturating_sub(self.reminder_lead_ms).max(w.starts_at))
            .filter(|at| *at > now);
        settled.chain(window_ends).chain(reminders).filter(|at| *at > now).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ServiceKind;
    use crate::notify::alert_message;

    fn topology() -> Topology {
        Topology::builtin(
            [("synapse", ServiceKind::Synapse), ("vikunja", ServiceKind::Vikunja), ("postgres", ServiceKind::Postgres)]
                .into_iter()
                .map(|(n, k)| (n.to_string(), k))
                .collect(),
        )
    }

    fn page(kind: Kind, alert: &str, service: &str) -> NewDelivery {
        let labels = [("alertname", alert), ("service", service), ("severity", "critical")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let info = AlertInfo {
            name: alert.into(),
            labels,
            annotations: BTreeMap::new(),
            value: 0.0,
            fired_at: 0,
            resolved_at: (kind == Kind::Resolved).then_some(1),
        };
        NewDelivery {
            receiver: "ops".into(),
            tier: "critical".into(),
            notification: alert_message(kind, info, 0),
            fallback_of: None,
        }
    }

    /// One step of the story: maintenance on these services, these down, these incidents firing.
    struct World {
        topology: Topology,
        held: BTreeMap<Key, Held>,
    }

    impl World {
        fn step(&mut self, maint: &[&str], down: &[&str], firing: &[&NewDelivery], d: Vec<NewDelivery>) -> Vec<String> {
            let maint: BTreeSet<String> = maint.iter().map(|s| s.to_string()).collect();
            let down: BTreeSet<String> = down.iter().map(|s| s.to_string()).collect();
            let firing: BTreeSet<String> = firing.iter().map(|d| d.notification.incident.clone()).collect();
            let in_maintenance = |s: &str| maint.contains(s);
            let inputs = Inputs {
                now: 0,
                in_maintenance: &in_maintenance,
                down: &down,
                failing: &down,
                firing: &firing,
                topology: &self.topology,
                held: &self.held,
            };
            let out = decide(&inputs, d);
            for k in &out.release {
                self.held.remove(k);
            }
            for h in out.hold {
                self.held.insert(h.key(), h);
            }
            out.send.into_iter().map(|d| d.notification.title).collect()
        }
    }

    #[test]
    fn maintenance_holds_pages_and_sends_those_still_firing_at_its_end() {
        let mut w = World { topology: topology(), held: BTreeMap::new() };
        let fire = page(Kind::Firing, "SynapseDown", "synapse");
        let resolve = page(Kind::Resolved, "SynapseDown", "synapse");
        assert!(w.step(&["synapse"], &[], &[&fire], vec![fire.clone()]).is_empty(), "held in the window");
        assert!(w.step(&["synapse"], &[], &[&fire], vec![]).is_empty(), "still held");
        assert_eq!(w.step(&[], &[], &[&fire], vec![]), ["[FIRING] SynapseDown (critical)"], "sent at the end");
        assert!(w.held.is_empty());
        assert_eq!(w.step(&[], &[], &[], vec![resolve.clone()]), ["[RESOLVED] SynapseDown (critical)"]);

        assert!(w.step(&["synapse"], &[], &[&fire], vec![fire.clone()]).is_empty());
        assert!(w.step(&["synapse"], &[], &[], vec![resolve]).is_empty(), "fired and resolved inside: nothing");
        assert!(w.step(&[], &[], &[], vec![]).is_empty() && w.held.is_empty(), "nothing later either");
    }

    #[test]
    fn a_page_sent_before_the_window_gets_its_resolve() {
        let mut w = World { topology: topology(), held: BTreeMap::new() };
        let fire = page(Kind::Firing, "SynapseDown", "synapse");
        let remind = page(Kind::Reminder, "SynapseDown", "synapse");
        assert_eq!(w.step(&[], &[], &[&fire], vec![fire.clone()]).len(), 1, "paged before the window");
        assert!(w.step(&["synapse"], &[], &[&fire], vec![remind]).is_empty(), "the reminder waits");
        let resolved = w.step(&["synapse"], &[], &[], vec![page(Kind::Resolved, "SynapseDown", "synapse")]);
        assert_eq!(resolved, ["[RESOLVED] SynapseDown (critical)"], "its firing was said, so its resolve is too");
        assert!(w.held.is_empty());
    }

    #[test]
    fn a_dependency_outage_pages_once_and_resolves_flow() {
        let mut w = World { topology: topology(), held: BTreeMap::new() };
        let pg = page(Kind::Firing, "PostgresDown", "postgres");
        let syn = page(Kind::Firing, "SynapseDown", "synapse");
        let vik = page(Kind::Firing, "VikunjaDown", "vikunja");
        // PostgreSQL is failing (pending): Synapse fires first and waits.
        assert!(w.step(&[], &["postgres"], &[&syn], vec![syn.clone()]).is_empty());
        let sent = w.step(&[], &["postgres"], &[&syn, &pg, &vik], vec![pg.clone(), vik.clone()]);
        assert_eq!(sent, ["[FIRING] PostgreSQL down — affects synapse, vikunja"], "one page");
        let sent = w.step(
            &[],
            &[],
            &[],
            vec![
                page(Kind::Resolved, "PostgresDown", "postgres"),
                page(Kind::Resolved, "SynapseDown", "synapse"),
                page(Kind::Resolved, "VikunjaDown", "vikunja"),
            ],
        );
        assert_eq!(sent.len(), 3, "every resolve flows: {sent:?}");
        assert!(w.held.is_empty());
    }

    #[test]
    fn a_dependent_still_failing_after_the_dependency_recovers_pages_then() {
        let mut w = World { topology: topology(), held: BTreeMap::new() };
        let syn = page(Kind::Firing, "SynapseDown", "synapse");
        assert!(w.step(&[], &["postgres"], &[&syn], vec![syn.clone()]).is_empty());
        let sent = w.step(&[], &[], &[&syn], vec![]);
        assert_eq!(sent, ["[FIRING] SynapseDown (critical)"]);
        assert!(w.held.is_empty());
    }

    #[test]
    fn a_dependency_blip_releases_what_it_held() {
        let mut w = World { topology: topology(), held: BTreeMap::new() };
        let vik = page(Kind::Firing, "VikunjaDown", "vikunja");
        assert!(w.step(&[], &["postgres"], &[&vik], vec![vik.clone()]).is_empty(), "postgres pending");
        assert!(w.step(&[], &[], &[], vec![]).is_empty(), "vikunja recovered too: nothing to say");
        assert!(w.held.is_empty());
    }

    #[test]
    fn reminders_name_the_window_and_how_to_extend_it() {
        let w = AdHocWindow {
            id: 4,
            services: vec!["synapse".into()],
            starts_at: 0,
            ends_at: 300_000,
            reason: "v1.120".into(),
        };
        let d = ending_reminder(&w, &["ops".into()], 1_000);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].notification.title, "[MAINTENANCE] window #4 for synapse ends in 5m");
        assert!(d[0].notification.text.contains("mxwarden maintenance end 4"), "{}", d[0].notification.text);
    }
}
