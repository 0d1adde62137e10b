//! The `maintenance:` windows and the services' `depends_on:`, from config to runtime: cron
//! expressions parsed, time zones found, service names checked, the dependency graph checked
//! for cycles — each problem with its line.

use super::build::Problems;
use super::schema::{FileConfig, ServiceKind};
use crate::maintenance::RecurringWindow;
use crate::topology::Topology;
use crate::units::closest;
use serde_saphyr::Location;
use std::collections::{BTreeMap, BTreeSet};

fn unknown_service(problems: &mut Problems<'_>, at: &Location, key: String, name: &str, known: &BTreeSet<&str>) {
    let hint = closest(name, known.iter().copied()).map(|k| format!("did you mean `{k}`?"));
    let expected = if known.is_empty() {
        "none are configured".to_string()
    } else {
        known.iter().copied().collect::<Vec<_>>().join(", ")
    };
    problems.add_with_hint(at, key, format!("no service `{name}`; expected one of: {expected}"), hint);
}

/// Builds the recurring maintenance windows.
pub(super) fn windows(file: &FileConfig, problems: &mut Problems<'_>) -> Vec<RecurringWindow> {
    let mut known: BTreeSet<&str> = file.services.keys().map(String::as_str).collect();
    known.extend(file.checks.iter().filter_map(|c| c.value.service.as_deref()));
    let mut names = BTreeSet::new();
    let mut built = Vec::new();
    for (index, spanned) in file.maintenance.iter().enumerate() {
        let w = &spanned.value;
        let key = format!("maintenance[{index}]");
        if !names.insert(w.name.value.as_str()) {
            problems.add(
                &w.name.referenced,
                format!("{key}.name"),
                format!("two windows are named `{}`", w.name.value),
            );
        }
        if w.services.is_empty() {
            problems.add(&spanned.referenced, format!("{key}.services"), "a window needs at least one service");
        }
        for (i, s) in w.services.iter().enumerate() {
            if !known.contains(s.value.as_str()) {
                unknown_service(problems, &s.referenced, format!("{key}.services[{i}]"), &s.value, &known);
            }
        }
        let cron = crate::maintenance::calendar::parse_cron(&w.cron.value)
            .map_err(|why| problems.add(&w.cron.referenced, format!("{key}.cron"), why))
            .ok();
        let duration_ms = w.duration.value.0.as_millis() as i64;
        if duration_ms <= 0 {
            problems.add(&w.duration.referenced, format!("{key}.duration"), "must be longer than 0s, e.g. 15m");
        }
        let timezone = match &w.timezone {
            None => Some(jiff::tz::TimeZone::UTC),
            Some(tz) => jiff::tz::TimeZone::get(tz.value.trim())
                .map_err(|_| {
                    problems.add(
                        &tz.referenced,
                        format!("{key}.timezone"),
                        format!("`{}` is not a known time zone; expected e.g. Europe/Berlin or UTC", tz.value),
                    )
                })
                .ok(),
        };
        if let (Some(cron), Some(timezone)) = (cron, timezone) {
            built.push(RecurringWindow {
                name: w.name.value.clone(),
                services: w.services.iter().map(|s| s.value.clone()).collect(),
                cron_text: w.cron.value.trim().to_string(),
                cron,
                duration_ms,
                timezone,
            });
        }
    }
    built
}

/// Builds the dependency topology: `depends_on` where given, the built-in edges elsewhere.
pub(super) fn topology(file: &FileConfig, problems: &mut Problems<'_>) -> Topology {
    let kinds: BTreeMap<String, ServiceKind> =
        file.services.iter().map(|(name, s)| (name.clone(), s.value.kind)).collect();
    let known: BTreeSet<&str> = kinds.keys().map(String::as_str).collect();
    let mut needs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, spanned) in &file.services {
        let edges = match &spanned.value.depends_on {
            None => Topology::builtin_for(name, &kinds),
            Some(list) => {
                let mut edges = BTreeSet::new();
                for (i, dep) in list.iter().enumerate() {
                    let key = format!("services.{name}.depends_on[{i}]");
                    if !known.contains(dep.value.as_str()) {
                        unknown_service(problems, &dep.referenced, key, &dep.value, &known);
                    } else if dep.value == *name {
                        problems.add(&dep.referenced, key, format!("`{name}` cannot depend on itself"));
                    } else {
                        edges.insert(dep.value.clone());
                    }
                }
                edges
            }
        };
        needs.insert(name.clone(), edges);
    }
    if let Some(cycle) = Topology::find_cycle(&needs) {
        let first = &cycle[0];
        let at = file.services.get(first).map_or(Location::UNKNOWN, |s| {
            s.value.depends_on.as_ref().and_then(|l| l.first()).map_or(s.referenced, |d| d.referenced)
        });
        problems.add(
            &at,
            format!("services.{first}.depends_on"),
            format!("dependencies go round in a circle: {}; remove one of them", cycle.join(" → ")),
        );
        needs.values_mut().for_each(BTreeSet::clear);
    }
    Topology::new(kinds, needs)
}
