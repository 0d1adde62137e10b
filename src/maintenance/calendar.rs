//! The maintenance calendar, pure: recurring windows from the config (a cron expression in a
//! time zone, and a duration) and ad hoc windows from the store, asked "is this service in
//! maintenance at this instant?", "which windows are open?" and "what comes next?". No clock
//! and no I/O: callers pass the time. The daemon refreshes the ad hoc windows from the store;
//! the history recorder and the notification gate read it.

use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use serde::Serialize;
use std::sync::RwLock;

pub(crate) use crate::model::Millis;

/// A window from the config: starts at every match of `cron` (local time in `timezone`) and
/// lasts `duration_ms`.
#[derive(Debug, Clone)]
pub struct RecurringWindow {
    /// Its name, e.g. `synapse-monthly-update`.
    pub name: String,
    /// The services it covers.
    pub services: Vec<String>,
    /// The cron expression as written.
    pub cron_text: String,
    /// The parsed expression.
    pub cron: croner::Cron,
    /// How long each occurrence lasts, ms.
    pub duration_ms: Millis,
    /// The zone the expression is read in.
    pub timezone: TimeZone,
}

/// Parses a 5-field crontab expression (`0 3 1 * *`, `@monthly`); the message says why not.
pub fn parse_cron(text: &str) -> Result<croner::Cron, String> {
    use croner::parser::{CronParser, Seconds, Year};
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(text.trim())
        .map_err(|e| format!("`{text}` is not a cron expression ({e}); expected 5 fields, e.g. \"0 3 1 * *\""))
}

impl RecurringWindow {
    fn zoned(&self, at: Millis) -> Option<Zoned> {
        Timestamp::from_millisecond(at).ok().map(|t| t.to_zoned(self.timezone.clone()))
    }

    /// The first start strictly after `after`.
    pub(crate) fn next_start(&self, after: Millis) -> Option<Millis> {
        let from = self.zoned(after)?;
        self.cron.find_next_occurrence(&from, false).ok().map(|z| z.timestamp().as_millisecond())
    }

    /// The occurrence `[start, end)` that contains `at`, if any: the latest start at or before
    /// `at` gives the longest cover.
    pub(crate) fn occurrence_at(&self, at: Millis) -> Option<(Millis, Millis)> {
        let now = self.zoned(at)?;
        let start = self.cron.find_previous_occurrence(&now, true).ok()?.timestamp().as_millisecond();
        let end = start.saturating_add(self.duration_ms);
        (start <= at && at < end).then_some((start, end))
    }
}

/// A window opened by hand (`mxwarden maintenance start`, the API), kept in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdHocWindow {
    /// Its id.
    pub id: i64,
    /// The services it covers.
    pub services: Vec<String>,
    /// When it starts, ms.
    pub starts_at: Millis,
    /// When it ends, ms (moved to the moment it was ended early).
    pub ends_at: Millis,
    /// Why, as given.
    pub reason: String,
}

/// Where an open or upcoming window comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum Source {
    /// A recurring window of the config, by name.
    Config {
        /// The window's name.
        name: String,
        /// Its cron expression.
        cron: String,
    },
    /// An ad hoc window, by id.
    AdHoc {
        /// The window's id.
        id: i64,
        /// Why.
        reason: String,
    },
    /// A Render deploy in progress (`maintenance::deploys`).
    Deploy {
        /// The deploying service.
        service: String,
        /// The deploy (`dep-…`).
        deploy: String,
    },
    /// Maintenance Render itself schedules (`GET /maintenance`); shown, never holding pages.
    Render {
        /// `mrn-…`.
        id: String,
        /// What Render does.
        kind: String,
        /// `scheduled`, `in_progress`, …
        state: String,
    },
}

/// One occurrence of a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Occurrence {
    /// Which window.
    #[serde(flatten)]
    pub source: Source,
    /// The services it covers.
    pub services: Vec<String>,
    /// Start, ms.
    pub starts_at: Millis,
    /// End, ms.
    pub ends_at: Millis,
}

/// Every window: the config's, and the ad hoc ones last read from the store.
#[derive(Debug, Default)]
pub struct Calendar {
    recurring: Vec<RecurringWindow>,
    ad_hoc: RwLock<Vec<AdHocWindow>>,
    /// Render deploys in progress (set by the evaluator).
    deploys: RwLock<Vec<super::deploys::DeployWindow>>,
    /// Render's own maintenance (in progress, scheduled), shown but never holding pages.
    render: RwLock<(Vec<Occurrence>, Vec<Occurrence>)>,
}

impl Calendar {
    /// The config's windows.
    #[cfg(test)]
    fn recurring(&self) -> &[RecurringWindow] {
        &self.recurring
    }

    /// A calendar of the config's windows, without ad hoc ones yet.
    pub fn new(recurring: Vec<RecurringWindow>) -> Self {
        Self {
            recurring,
            ad_hoc: RwLock::new(Vec::new()),
            deploys: RwLock::new(Vec::new()),
            render: RwLock::new((Vec::new(), Vec::new())),
        }
    }

    /// Replaces Render's own maintenance: (in progress, scheduled).
    pub(crate) fn set_render(&self, active: Vec<Occurrence>, upcoming: Vec<Occurrence>) {
        *self.render.write().unwrap_or_else(std::sync::PoisonError::into_inner) = (active, upcoming);
    }

    /// Replaces the deploy windows (the evaluator calls this when one opens or closes).
    pub(crate) fn set_deploys(&self, windows: Vec<super::deploys::DeployWindow>) {
        *self.deploys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = windows;
    }

    /// Replaces the ad hoc windows (the daemon calls this after reading the store).
    pub(crate) fn set_ad_hoc(&self, windows: Vec<AdHocWindow>) {
        *self.ad_hoc.write().unwrap_or_else(std::sync::PoisonError::into_inner) = windows;
    }

    /// The ad hoc windows known.
    pub(crate) fn ad_hoc(&self) -> Vec<AdHocWindow> {
        self.ad_hoc.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Every window open at `at`.
    pub(crate) fn active(&self, at: Millis) -> Vec<Occurrence> {
        let mut open: Vec<Occurrence> = self
            .recurring
            .iter()
            .filter_map(|w| {
                w.occurrence_at(at).map(|(starts_at, ends_at)| Occurrence {
                    source: Source::Config { name: w.name.clone(), cron: w.cron_text.clone() },
                    services: w.services.clone(),
                    starts_at,
                    ends_at,
                })
            })
            .collect();
        open.extend(self.ad_hoc().into_iter().filter(|w| w.starts_at <= at && at < w.ends_at).map(ad_hoc_occurrence));
        let deploys = self.deploys.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        open.extend(deploys.iter().filter(|w| w.starts_at <= at && at < w.ends_at).map(|w| Occurrence {
            source: Source::Deploy { service: w.service.clone(), deploy: w.deploy.clone() },
            services: w.services.clone(),
            starts_at: w.starts_at,
            ends_at: w.ends_at,
        }));
        drop(deploys);
        open.extend(self.render.read().unwrap_or_else(std::sync::PoisonError::into_inner).0.iter().cloned());
        open
    }

    /// Every window open at `at` that holds pages (Render's own maintenance is only shown).
    fn holding(&self, at: Millis) -> Vec<Occurrence> {
        let mut open = self.active(at);
        open.retain(|o| !matches!(o.source, Source::Render { .. }));
        open
    }

    /// Whether `service` is in maintenance at `at` (ms).
    pub(crate) fn in_maintenance(&self, service: &str, at_ms: Millis) -> bool {
        self.holding(at_ms).iter().any(|o| o.services.iter().any(|s| s == service))
    }

    /// When `service`'s maintenance that is open at `at` ends, following windows that overlap
    /// or touch; `None` when it is not in maintenance.
    pub(crate) fn maintenance_end(&self, service: &str, at: Millis) -> Option<Millis> {
        let mut end = None;
        let mut t = at;
        // Bounded: each step moves past at least one window's end.
        for _ in 0..64 {
            let covering = self.holding(t).into_iter().filter(|o| o.services.iter().any(|s| s == service));
            match covering.map(|o| o.ends_at).max() {
                Some(e) if e > t => {
                    end = Some(e);
                    t = e;
                }
                _ => break,
            }
        }
        end
    }

    /// Occurrences starting after `at`: each recurring window's next one and every future ad
    /// hoc window, soonest first.
    pub(crate) fn upcoming(&self, at: Millis) -> Vec<Occurrence> {
        let mut next: Vec<Occurrence> = self
            .recurring
            .iter()
            .filter_map(|w| {
                w.next_start(at).map(|starts_at| Occurrence {
                    source: Source::Config { name: w.name.clone(), cron: w.cron_text.clone() },
                    services: w.services.clone(),
                    starts_at,
                    ends_at: starts_at + w.duration_ms,
                })
            })
            .collect();
        next.extend(self.ad_hoc().into_iter().filter(|w| w.starts_at > at).map(ad_hoc_occurrence));
        next.extend(self.render.read().unwrap_or_else(std::sync::PoisonError::into_inner).1.iter().cloned());
        next.sort_by_key(|o| o.starts_at);
        next
    }
}

fn ad_hoc_occurrence(w: AdHocWindow) -> Occurrence {
    Occurrence {
        source: Source::AdHoc { id: w.id, reason: w.reason },
        services: w.services,
        starts_at: w.starts_at,
        ends_at: w.ends_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Millis = 60_000;

    fn at(text: &str) -> Millis {
        text.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn window(name: &str, cron: &str, minutes: i64, tz: &str, services: &[&str]) -> RecurringWindow {
        RecurringWindow {
            name: name.into(),
            services: services.iter().map(|s| s.to_string()).collect(),
            cron_text: cron.into(),
            cron: parse_cron(cron).unwrap(),
            duration_ms: minutes * MIN,
            timezone: TimeZone::get(tz).unwrap(),
        }
    }

    #[test]
    fn a_monthly_window_covers_its_duration_in_local_time() {
        // The runbook's "Synapse updates: monthly, 5–10 minutes", at 03:00 Berlin time.
        let cal = Calendar::new(vec![window("synapse-monthly", "0 3 1 * *", 15, "Europe/Berlin", &["synapse"])]);
        let cases = [
            ("2026-03-01T01:59:59Z", false, "just before 03:00 CET (UTC+1)"),
            ("2026-03-01T02:00:00Z", true, "03:00 CET: the window opens"),
            ("2026-03-01T02:14:59Z", true, "inside"),
            ("2026-03-01T02:15:00Z", false, "the end is exclusive"),
            ("2026-03-02T02:05:00Z", false, "the next day is not covered"),
        ];
        for (t, want, why) in cases {
            assert_eq!(cal.in_maintenance("synapse", at(t)), want, "{t}: {why}");
            assert!(!cal.in_maintenance("mas", at(t)), "{t}: mas is not in this window");
        }
    }

    #[test]
    fn daily_windows_follow_the_local_clock_across_dst() {
        // 03:00 Berlin is 02:00 UTC in winter and 01:00 UTC in summer; DST starts 2026-03-29
        // (02:00 → 03:00) and ends 2026-10-25 (03:00 → 02:00).
        let cal = Calendar::new(vec![window("nightly", "0 3 * * *", 60, "Europe/Berlin", &["synapse"])]);
        let w = &cal.recurring()[0];
        let cases = [
            ("2026-03-28T00:00:00Z", "2026-03-28T02:00:00Z", "the day before: CET"),
            ("2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z", "the switch day: 03:00 CEST exists"),
            ("2026-03-30T00:00:00Z", "2026-03-30T01:00:00Z", "summer time"),
            ("2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z", "03:00 on the day the clock goes back is CET again"),
        ];
        for (from, want, why) in cases {
            assert_eq!(w.next_start(at(from)), Some(at(want)), "{why}");
        }
        assert!(cal.in_maintenance("synapse", at("2026-03-29T01:30:00Z")), "summer: covered at 03:30 local");
        assert!(!cal.in_maintenance("synapse", at("2026-03-29T02:00:00Z")), "04:00 CEST: over");
    }

    #[test]
    fn a_window_in_the_skipped_hour_still_happens_once() {
        // 02:30 does not exist in Berlin on 2026-03-29; the window must neither vanish nor repeat.
        let w = window("odd", "30 2 * * *", 30, "Europe/Berlin", &["mas"]);
        let starts: Vec<Millis> =
            std::iter::successors(w.next_start(at("2026-03-28T12:00:00Z")), |s| w.next_start(*s)).take(2).collect();
        assert_eq!(starts.len(), 2);
        let first = Timestamp::from_millisecond(starts[0]).unwrap();
        let second = Timestamp::from_millisecond(starts[1]).unwrap();
        assert_eq!(first, at_ts("2026-03-29T01:00:00Z"), "03:00 CEST: the first moment after the gap");
        assert_eq!(second, at_ts("2026-03-30T00:30:00Z"), "the next day is 02:30 CEST");
    }

    fn at_ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn the_repeated_hour_on_fall_back_opens_the_window_once() {
        // 02:30 happens twice in Berlin on 2026-10-25 (CEST, then CET): one window, not two.
        let w = window("odd", "30 2 * * *", 10, "Europe/Berlin", &["mas"]);
        let first = w.next_start(at("2026-10-24T12:00:00Z")).unwrap();
        let second = w.next_start(first).unwrap();
        assert_eq!(first, at("2026-10-25T00:30:00Z"), "02:30 CEST");
        assert_eq!(second, at("2026-10-26T01:30:00Z"), "the repeat at 02:30 CET is skipped; next is Monday");
    }

    #[test]
    fn ad_hoc_windows_overlap_and_chain_with_recurring_ones() {
        let cal = Calendar::new(vec![window("nightly", "0 3 * * *", 30, "UTC", &["synapse", "postgres"])]);
        cal.set_ad_hoc(vec![AdHocWindow {
            id: 7,
            services: vec!["synapse".into()],
            starts_at: at("2026-05-01T03:20:00Z"),
            ends_at: at("2026-05-01T04:00:00Z"),
            reason: "upgrade".into(),
        }]);
        let t = at("2026-05-01T03:10:00Z");
        assert_eq!(cal.active(t).len(), 1);
        assert_eq!(cal.maintenance_end("synapse", t), Some(at("2026-05-01T04:00:00Z")), "chained into the ad hoc one");
        assert_eq!(cal.maintenance_end("postgres", t), Some(at("2026-05-01T03:30:00Z")));
        assert_eq!(cal.maintenance_end("mas", t), None);
        assert_eq!(cal.active(at("2026-05-01T03:25:00Z")).len(), 2, "both open");
        let upcoming = cal.upcoming(at("2026-05-01T03:10:00Z"));
        assert_eq!(upcoming[0].source, Source::AdHoc { id: 7, reason: "upgrade".into() });
        assert_eq!(upcoming[1].starts_at, at("2026-05-02T03:00:00Z"));
        assert!(cal.in_maintenance("synapse", at("2026-05-01T03:59:59Z")));
        assert!(!cal.in_maintenance("synapse", at("2026-05-01T04:00:00Z")));
    }

    #[test]
    fn bad_cron_expressions_are_refused_with_the_reason() {
        for bad in ["61 * * * *", "0 3 * *", "every monday", "0 0 0 3 1 * *"] {
            let e = parse_cron(bad).unwrap_err();
            assert!(e.contains(bad) && e.contains("expected 5 fields"), "{e}");
        }
        assert!(parse_cron("@monthly").is_ok());
    }
}
