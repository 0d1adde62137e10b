//! Which service needs which: the built-in topology of the runbook's stack (PostgreSQL under
//! Synapse, MAS, Vikunja and authentik; MAS under Synapse's logins), overridable per service
//! with `depends_on:`. The config builds it (`config::build`, which refuses unknown names and
//! cycles); the notification gate (`crate::mute`) asks it whose outage explains an alert, and
//! `group` turns that into one page.

pub(crate) mod group;

use crate::model::ServiceKind;
use std::collections::{BTreeMap, BTreeSet};

/// Services and the services each one needs (direct edges only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    kinds: BTreeMap<String, ServiceKind>,
    needs: BTreeMap<String, BTreeSet<String>>,
}

/// The kinds a kind needs, by the runbook: every app keeps its data in PostgreSQL, and
/// Synapse's logins go through MAS.
pub(crate) fn builtin_needs(kind: ServiceKind) -> &'static [ServiceKind] {
    match kind {
        ServiceKind::Synapse => &[ServiceKind::Postgres, ServiceKind::Mas],
        ServiceKind::Mas | ServiceKind::Vikunja | ServiceKind::Authentik => &[ServiceKind::Postgres],
        ServiceKind::Postgres => &[],
    }
}

/// A kind's name for people: `PostgreSQL`, `Synapse`, `MAS`, …
pub(crate) fn display_kind(kind: ServiceKind) -> &'static str {
    match kind {
        ServiceKind::Synapse => "Synapse",
        ServiceKind::Mas => "MAS",
        ServiceKind::Vikunja => "Vikunja",
        ServiceKind::Authentik => "authentik",
        ServiceKind::Postgres => "PostgreSQL",
    }
}

impl Topology {
    /// A topology from explicit edges.
    pub(crate) fn new(kinds: BTreeMap<String, ServiceKind>, needs: BTreeMap<String, BTreeSet<String>>) -> Self {
        Self { kinds, needs }
    }

    /// Only the built-in edges among `kinds` (tests; the config adds `depends_on:`).
    #[cfg(test)]
    pub(crate) fn builtin(kinds: BTreeMap<String, ServiceKind>) -> Self {
        let needs = kinds.keys().map(|s| (s.clone(), Self::builtin_for(s, &kinds))).collect();
        Self::new(kinds, needs)
    }

    /// The runbook's five services under their kinds' names, with the built-in edges (tests).
    #[cfg(test)]
    pub(crate) fn runbook_stack() -> Self {
        Self::builtin(
            [
                ("synapse", ServiceKind::Synapse),
                ("mas", ServiceKind::Mas),
                ("vikunja", ServiceKind::Vikunja),
                ("authentik", ServiceKind::Authentik),
                ("postgres", ServiceKind::Postgres),
            ]
            .into_iter()
            .map(|(n, k)| (n.to_string(), k))
            .collect(),
        )
    }

    /// The built-in edges for `service` among `kinds`: each needed kind, when exactly one
    /// service of it is configured (with two PostgreSQL servers, which one is meant is the
    /// operator's to say).
    pub(crate) fn builtin_for(service: &str, kinds: &BTreeMap<String, ServiceKind>) -> BTreeSet<String> {
        let Some(kind) = kinds.get(service) else { return BTreeSet::new() };
        builtin_needs(*kind)
            .iter()
            .filter_map(|needed| {
                let mut of_kind = kinds.iter().filter(|(name, k)| *k == needed && name.as_str() != service);
                match (of_kind.next(), of_kind.next()) {
                    (Some((name, _)), None) => Some(name.clone()),
                    _ => None,
                }
            })
            .collect()
    }

    /// The services `service` needs directly.
    pub(crate) fn needs(&self, service: &str) -> impl Iterator<Item = &str> {
        self.needs.get(service).into_iter().flatten().map(String::as_str)
    }

    /// Everything `service` needs, directly or through others.
    pub(crate) fn upstream(&self, service: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&str> = self.needs(service).collect();
        while let Some(s) = todo.pop() {
            if seen.insert(s.to_string()) {
                todo.extend(self.needs(s));
            }
        }
        seen.remove(service);
        seen
    }

    /// Everything that needs `service`, directly or through others.
    pub(crate) fn downstream(&self, service: &str) -> BTreeSet<String> {
        self.needs.keys().filter(|s| s.as_str() != service && self.upstream(s).contains(service)).cloned().collect()
    }

    /// Every configured service.
    pub(crate) fn services(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }

    /// The kind of a configured service.
    pub(crate) fn kind(&self, service: &str) -> Option<ServiceKind> {
        self.kinds.get(service).copied()
    }

    /// The name of `service`'s down alert (`PostgresDown`), if it is a configured service.
    pub(crate) fn down_alert(&self, service: &str) -> Option<String> {
        self.kind(service).map(crate::preset::down::alert_name)
    }

    /// `service` as a page names it: `PostgreSQL` when the service is named after its kind,
    /// `db (PostgreSQL)` otherwise.
    pub(crate) fn display(&self, service: &str) -> String {
        match self.kind(service) {
            Some(k) if k.as_str() == service => display_kind(k).to_string(),
            Some(k) => format!("{service} ({})", display_kind(k)),
            None => service.to_string(),
        }
    }

    /// A cycle in `needs`, as the services along it (first repeated at the end), if any.
    pub(crate) fn find_cycle(needs: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
        fn visit(
            s: &str,
            needs: &BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) -> Option<Vec<String>> {
            if let Some(at) = path.iter().position(|p| p == s) {
                let mut cycle = path[at..].to_vec();
                cycle.push(s.to_string());
                return Some(cycle);
            }
            if done.contains(s) {
                return None;
            }
            path.push(s.to_string());
            for next in needs.get(s).into_iter().flatten() {
                if let Some(c) = visit(next, needs, path, done) {
                    return Some(c);
                }
            }
            path.pop();
            done.insert(s.to_string());
            None
        }
        let mut done = BTreeSet::new();
        needs.keys().find_map(|s| visit(s, needs, &mut Vec::new(), &mut done))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_topology_is_the_runbooks() {
        let t = Topology::runbook_stack();
        let names = |set: BTreeSet<String>| set.into_iter().collect::<Vec<_>>();
        assert_eq!(names(t.downstream("postgres")), ["authentik", "mas", "synapse", "vikunja"]);
        assert_eq!(names(t.downstream("mas")), ["synapse"], "synapse's logins go through MAS");
        assert_eq!(names(t.upstream("synapse")), ["mas", "postgres"], "directly and through MAS");
        assert!(t.upstream("postgres").is_empty());
        assert_eq!(t.display("postgres"), "PostgreSQL");
        assert_eq!(t.down_alert("postgres").as_deref(), Some("PostgresDown"));
    }

    #[test]
    fn two_servers_of_a_kind_make_no_builtin_edge() {
        let mut kinds = Topology::runbook_stack().kinds;
        kinds.insert("replica".into(), ServiceKind::Postgres);
        let t = Topology::builtin(kinds);
        assert_eq!(t.needs("vikunja").count(), 0, "which PostgreSQL is ambiguous");
        assert_eq!(t.needs("synapse").collect::<Vec<_>>(), ["mas"]);
        assert_eq!(t.display("replica"), "replica (PostgreSQL)");
    }

    #[test]
    fn cycles_are_found_and_named() {
        let edges = |pairs: &[(&str, &str)]| {
            let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for (a, b) in pairs {
                m.entry(a.to_string()).or_default().insert(b.to_string());
                m.entry(b.to_string()).or_default();
            }
            m
        };
        assert_eq!(Topology::find_cycle(&edges(&[("a", "b"), ("b", "c")])), None, "a chain");
        assert_eq!(
            Topology::find_cycle(&edges(&[("a", "b"), ("b", "c"), ("c", "a")])),
            Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
        assert_eq!(Topology::find_cycle(&edges(&[("a", "a")])), Some(vec!["a".into(), "a".into()]), "itself");
        assert_eq!(Topology::find_cycle(&edges(&[("x", "b"), ("a", "b"), ("b", "a")])).map(|c| c.len()), Some(3));
    }
}
