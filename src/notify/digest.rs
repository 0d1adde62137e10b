//! Daily and weekly digests: when the next one is due in the configured time zone (DST-safe
//! through jiff), and the review message itself — what fired in the period (also alerts that
//! fired and resolved themselves), for how long, what is still open — or "all quiet", which
//! proves the monitor is alive.

use super::{AlertInfo, DigestSchedule, Kind, Notification, html_escape};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};

/// The first digest time strictly after `after`, in `tz`.
pub(crate) fn next_due(schedule: DigestSchedule, tz: &TimeZone, after: Timestamp) -> Timestamp {
    let local = after.to_zoned(tz.clone());
    let (hour, minute) = match schedule {
        DigestSchedule::Daily { hour, minute } | DigestSchedule::Weekly { hour, minute, .. } => (hour, minute),
    };
    let at = |date: jiff::civil::Date| -> Option<Zoned> { date.at(hour, minute, 0, 0).to_zoned(tz.clone()).ok() };
    let mut date = local.date();
    for _ in 0..16 {
        let matches_day = match schedule {
            DigestSchedule::Daily { .. } => true,
            DigestSchedule::Weekly { weekday, .. } => date.weekday() == weekday,
        };
        if matches_day
            && let Some(z) = at(date)
            && z.timestamp() > after
        {
            return z.timestamp();
        }
        date = date.checked_add(1.day()).unwrap_or(date);
    }
    after + jiff::SignedDuration::from_hours(24)
}

/// The runbook's "review weekly" items, counted from Synapse's and MAS's own counters:
/// (what, the counter, a label that must match, or none).
pub(crate) const INFO_COUNTERS: &[(&str, &str, Option<(&str, &str)>)] = &[
    ("new registrations (Synapse)", "synapse_user_registrations_total", None),
    ("new registrations (MAS)", "mas_user_password_registration_total", None),
    ("failed password logins (MAS)", "mas_user_password_login_attempt_total", Some(("result", "error"))),
    ("rate-limit rejections (Synapse federation)", "synapse_rate_limit_reject_total", None),
];

/// One counted item for a digest: what, and how many in the period (`None`: not scraped, or
/// no baseline yet).
pub(crate) type InfoItem = (String, Option<f64>);

/// Joins the firing and resolved items of one incident into one entry each.
pub(crate) fn merge_items(items: Vec<Notification>) -> Vec<AlertInfo> {
    let mut merged: Vec<AlertInfo> = Vec::new();
    for n in items {
        for a in n.alerts {
            match merged.iter_mut().find(|m| m.labels == a.labels && m.fired_at == a.fired_at) {
                Some(m) if n.kind == Kind::Resolved => m.resolved_at = a.resolved_at,
                Some(_) => {}
                None => merged.push(a),
            }
        }
    }
    merged
}

/// Each info counter's total now (summed over its series, stale ones left out), by what it
/// counts; counters not scraped are absent.
pub(crate) fn counter_totals(series: &crate::series::SeriesStore) -> std::collections::BTreeMap<String, f64> {
    let mut totals = std::collections::BTreeMap::new();
    for (what, name, matcher) in INFO_COUNTERS {
        let values: Vec<f64> = series
            .named(name)
            .filter(|s| matcher.is_none_or(|(k, v)| s.labels.get(k).is_some_and(|x| x == v)))
            .filter_map(|s| s.points.back().map(|p| p.v).filter(|v| !crate::series::is_stale(*v)))
            .collect();
        if !values.is_empty() {
            totals.insert(what.to_string(), values.iter().sum());
        }
    }
    totals
}

/// The info items of a digest: each counter's total now minus its total at the last digest
/// (a reset counts from zero; no baseline yet: `None`).
pub(crate) fn info_items(
    before: &std::collections::BTreeMap<String, f64>,
    now: &std::collections::BTreeMap<String, f64>,
) -> Vec<InfoItem> {
    now.iter()
        .map(|(what, total)| {
            let count = before.get(what).map(|b| if total >= b { total - b } else { *total });
            (what.clone(), count)
        })
        .collect()
}

/// The digest message for a period.
pub(crate) fn compose(
    tier: &str,
    from: i64,
    to: i64,
    items: &[AlertInfo],
    still_open: &[AlertInfo],
    info: &[InfoItem],
) -> Notification {
    let period = crate::units::utc_minute;
    let title = format!("[DIGEST] {tier}: {} alert(s), {} still open", items.len(), still_open.len());
    let mut text = format!("{title}\nperiod {} – {}\n", period(from), period(to));
    let mut html = format!("<b>{}</b><br/><i>period {} – {}</i>", html_escape(&title), period(from), period(to));
    if items.is_empty() && still_open.is_empty() {
        text.push_str("All quiet: nothing fired in this period. mxwarden is running.\n");
        html.push_str("<p>All quiet: nothing fired in this period. mxwarden is running.</p>");
    }
    let describe = |a: &AlertInfo| {
        let summary = crate::text::escape_controls(&super::annotation_shown(
            a.annotations.get("summary").map_or("", String::as_str),
            &a.labels,
        ))
        .into_owned();
        let lasted = match a.resolved_at {
            Some(end) => format!(
                "lasted {}",
                crate::units::HumanDuration(std::time::Duration::from_secs(((end - a.fired_at).max(0) / 1000) as u64))
            ),
            None => "still firing".into(),
        };
        format!("{} — {summary} (since {}, {lasted})", crate::text::escape_controls(&a.name), period(a.fired_at))
    };
    for (heading, list) in [("Fired in this period", items), ("Still open", still_open)] {
        if list.is_empty() {
            continue;
        }
        text.push_str(&format!("{heading}:\n"));
        html.push_str(&format!("<p><b>{heading}</b></p><ul>"));
        for a in list {
            let line = describe(a);
            text.push_str(&format!("- {line}\n"));
            html.push_str(&format!("<li>{}</li>", html_escape(&line)));
        }
        html.push_str("</ul>");
    }
    if !info.is_empty() {
        text.push_str("In this period:\n");
        html.push_str("<p><b>In this period</b></p><ul>");
        for (what, count) in info {
            let shown = count.map_or_else(|| "not known yet".to_string(), |c| format!("{c:.0}"));
            text.push_str(&format!("- {what}: {shown}\n"));
            html.push_str(&format!("<li>{}: {}</li>", html_escape(what), html_escape(&shown)));
        }
        html.push_str("</ul>");
    }
    let mut alerts = items.to_vec();
    alerts.extend(still_open.iter().cloned());
    Notification {
        kind: Kind::Digest,
        incident: format!("digest:{tier}:{to}"),
        title,
        text,
        html,
        alerts,
        created_at: to,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn digests_fall_on_local_time_across_dst() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let daily = DigestSchedule::Daily { hour: 9, minute: 0 };
        let cases = [
            ("2026-11-28T07:59:00Z", "2026-11-28T08:00:00Z", "winter: 09:00 Berlin is 08:00 UTC"),
            ("2026-11-28T08:00:00Z", "2026-11-29T08:00:00Z", "strictly after: the next day"),
            ("2026-03-28T09:00:00Z", "2026-03-29T07:00:00Z", "the spring DST switch moves it to 07:00 UTC"),
        ];
        for (after, want, why) in cases {
            assert_eq!(next_due(daily, &berlin, ts(after)), ts(want), "{why}");
        }
        let weekly = DigestSchedule::Weekly { weekday: jiff::civil::Weekday::Monday, hour: 9, minute: 0 };
        assert_eq!(
            next_due(weekly, &berlin, ts("2026-11-28T12:00:00Z")),
            ts("2026-11-30T08:00:00Z"),
            "Saturday → Monday"
        );
    }

    #[test]
    fn an_empty_period_says_all_quiet() {
        let n = compose("warning", 0, 86_400_000, &[], &[], &[("failed password logins (MAS)".into(), Some(12.0))]);
        assert!(n.text.contains("All quiet"), "{}", n.text);
        assert!(n.text.contains("- failed password logins (MAS): 12"), "{}", n.text);
        assert_eq!(n.kind, Kind::Digest);
    }

    #[test]
    fn info_counts_are_deltas_and_a_reset_counts_from_zero() {
        let map = |pairs: &[(&str, f64)]| pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let before = map(&[("logins", 10.0), ("registrations", 50.0)]);
        let now = map(&[("logins", 14.0), ("registrations", 3.0), ("rejections", 7.0)]);
        let items = info_items(&before, &now);
        assert_eq!(
            items,
            vec![
                ("logins".to_string(), Some(4.0)),        // grew by 4
                ("registrations".to_string(), Some(3.0)), // reset: counts from zero
                ("rejections".to_string(), None),         // no baseline yet
            ]
        );
    }
}
