//! Dependency-aware paging, pure: whose outage explains an alert, and the one page that
//! names everything it affects ("PostgreSQL down — affects synapse, mas, vikunja,
//! authentik"). The notification gate (`crate::mute`) holds the explained alerts instead of
//! paging for each; resolves are never held.

use super::Topology;
use crate::notify::{Kind, Notification, html_escape};
use std::collections::BTreeSet;

/// The upstream service whose outage explains an alert of `service`, given the services that
/// are `down` now: the root cause when several are (PostgreSQL rather than MAS when both are
/// down and MAS needs PostgreSQL). `None` when nothing `service` needs is down.
pub(crate) fn covering(topology: &Topology, service: &str, down: &BTreeSet<String>) -> Option<String> {
    let upstream = topology.upstream(service);
    let mut candidates: Vec<&String> = upstream.iter().filter(|s| down.contains(*s)).collect();
    candidates.sort_by_key(|s| (topology.upstream(s).iter().filter(|u| down.contains(*u)).count(), s.as_str()));
    candidates.first().map(|s| s.to_string())
}

/// Whether `n` is `service`'s own down alert (`PostgresDown` for a postgres service).
pub(crate) fn is_down_alert(topology: &Topology, service: &str, n: &Notification) -> bool {
    let Some(name) = topology.down_alert(service) else { return false };
    n.alerts.first().is_some_and(|a| a.name == name)
}

/// The headline: `PostgreSQL down — affects authentik, mas, synapse, vikunja`.
pub(crate) fn headline(topology: &Topology, service: &str, affected: &BTreeSet<String>) -> String {
    let names: Vec<&str> = affected.iter().map(String::as_str).collect();
    format!("{} down — affects {}", topology.display(service), names.join(", "))
}

/// Turns `service`'s down page into the group page: the headline as its title and summary,
/// the affected services in an `affects` annotation, and which of them fail now. Pages of a
/// service nothing depends on are returned unchanged.
pub(crate) fn group_page(
    topology: &Topology,
    service: &str,
    n: Notification,
    failing: &BTreeSet<String>,
) -> Notification {
    let affected = topology.downstream(service);
    if affected.is_empty() || !matches!(n.kind, Kind::Firing | Kind::Reminder) {
        return n;
    }
    let headline = headline(topology, service, &affected);
    let failing_now: Vec<&str> = failing.iter().filter(|s| affected.contains(*s)).map(String::as_str).collect();
    let tag = if n.kind == Kind::Firing { "FIRING" } else { "STILL FIRING" };
    let mut g = n;
    g.title = format!("[{tag}] {headline}");
    let failing_line = if failing_now.is_empty() {
        "Their own alerts are held while it is down; resolves are sent as they come.".to_string()
    } else {
        format!("Failing with it now: {}. Their own pages are held while it is down.", failing_now.join(", "))
    };
    g.text = format!("{}\n{failing_line}\n{}", g.title, g.text);
    g.html = format!("<b>{}</b><br/>{}<br/>{}", html_escape(&g.title), html_escape(&failing_line), g.html);
    let affects = affected.iter().map(String::as_str).collect::<Vec<_>>().join(", ");
    for a in &mut g.alerts {
        a.annotations.insert("summary".into(), headline.clone());
        a.annotations.insert("affects".into(), affects.clone());
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::{AlertInfo, alert_message};

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn down_page(alert: &str, service: &str) -> Notification {
        let labels = [("alertname", alert), ("service", service), ("severity", "critical")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let info = AlertInfo {
            name: alert.into(),
            labels,
            annotations: [("summary".to_string(), format!("{service} fails its health checks"))].into_iter().collect(),
            value: 0.0,
            fired_at: 0,
            resolved_at: None,
        };
        alert_message(Kind::Firing, info, 0)
    }

    #[test]
    fn the_root_cause_covers_its_dependents() {
        let t = Topology::runbook_stack();
        let cases: &[(&str, &[&str], Option<&str>, &str)] = &[
            ("synapse", &["postgres"], Some("postgres"), "the database explains Synapse"),
            ("synapse", &["postgres", "mas"], Some("postgres"), "the root cause, not MAS"),
            ("synapse", &["mas"], Some("mas"), "MAS alone explains Synapse's logins"),
            ("vikunja", &["mas"], None, "Vikunja does not need MAS"),
            ("postgres", &["postgres"], None, "nothing explains the root itself"),
            ("authentik", &[], None, "nothing is down"),
        ];
        for (service, down, want, why) in cases {
            assert_eq!(covering(&t, service, &set(down)).as_deref(), *want, "{why}");
        }
    }

    #[test]
    fn the_group_page_names_every_affected_service_once() {
        let t = Topology::runbook_stack();
        let page = group_page(&t, "postgres", down_page("PostgresDown", "postgres"), &set(&["mas", "vikunja"]));
        assert_eq!(page.title, "[FIRING] PostgreSQL down — affects authentik, mas, synapse, vikunja");
        assert!(page.text.contains("Failing with it now: mas, vikunja."), "{}", page.text);
        assert_eq!(page.alerts[0].annotations["affects"], "authentik, mas, synapse, vikunja");
        assert_eq!(page.alerts[0].annotations["summary"], "PostgreSQL down — affects authentik, mas, synapse, vikunja");
        assert!(is_down_alert(&t, "postgres", &page));
        assert!(!is_down_alert(&t, "synapse", &page));
        let leaf = group_page(&t, "vikunja", down_page("VikunjaDown", "vikunja"), &set(&[]));
        assert_eq!(leaf.title, "[FIRING] VikunjaDown (critical)", "nothing depends on Vikunja: unchanged");
    }
}
