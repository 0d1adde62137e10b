//! Maintenance windows: planned time when a service may be down without paging anyone.
//! `calendar` answers which services are in maintenance when (pure); `store` keeps the ad hoc
//! windows and the notifications held back; `api` serves them over HTTP. The daemon's
//! notification gate (`crate::mute`) holds pages for services in maintenance and sends those
//! still firing when the window ends.

pub mod calendar;
pub mod deploys;

pub use calendar::{AdHocWindow, Calendar, Occurrence, RecurringWindow, Source};

use serde::Serialize;

/// What `maintenance list` and `GET /api/v1/maintenance` show.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Listing {
    /// When it was taken (RFC 3339).
    pub now: String,
    /// Windows open now.
    pub active: Vec<Shown>,
    /// Each recurring window's next occurrence and every ad hoc window still to come.
    pub upcoming: Vec<Shown>,
}

/// One occurrence with readable times.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Shown {
    /// The occurrence.
    #[serde(flatten)]
    pub occurrence: Occurrence,
    /// Start (RFC 3339).
    pub starts: String,
    /// End (RFC 3339).
    pub ends: String,
}

use crate::units::rfc3339;

impl From<Occurrence> for Shown {
    fn from(occurrence: Occurrence) -> Self {
        let (starts, ends) = (rfc3339(occurrence.starts_at), rfc3339(occurrence.ends_at));
        Self { occurrence, starts, ends }
    }
}

/// What is open at `now` and what comes, given the ad hoc windows the store holds now.
pub(crate) fn listing(calendar: &Calendar, ad_hoc: Vec<AdHocWindow>, now: i64) -> Listing {
    calendar.set_ad_hoc(ad_hoc);
    Listing {
        now: rfc3339(now),
        active: calendar.active(now).into_iter().map(Shown::from).collect(),
        upcoming: calendar.upcoming(now).into_iter().map(Shown::from).collect(),
    }
}

/// A request for an ad hoc window, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewWindow {
    /// Services.
    pub services: Vec<String>,
    /// Start, ms.
    pub starts_at: i64,
    /// End, ms.
    pub ends_at: i64,
    /// Why.
    pub reason: String,
}

/// Checks a request for an ad hoc window starting at `now` (the CLI's and the API's rules):
/// known services, a duration from 1 minute to 7 days, a reason.
pub(crate) fn check_request(
    services: &[String],
    duration: &str,
    reason: &str,
    known: &std::collections::BTreeSet<String>,
    now: i64,
) -> Result<NewWindow, String> {
    if services.is_empty() {
        return Err("name at least one service".into());
    }
    for s in services {
        if !known.contains(s) {
            let hint = crate::units::closest(s, known.iter().map(String::as_str))
                .map(|k| format!(" Did you mean `{k}`?"))
                .unwrap_or_default();
            let names: Vec<&str> = known.iter().map(String::as_str).collect();
            return Err(format!("no service `{s}`.{hint} Services: {}", names.join(", ")));
        }
    }
    let d = crate::units::HumanDuration::parse(duration).map_err(|e| format!("duration: {e}"))?;
    let ms = i64::try_from(d.0.as_millis()).unwrap_or(i64::MAX);
    if !(60_000..=7 * 86_400_000).contains(&ms) {
        return Err(format!("duration {d} is out of range; a window lasts from 1m to 7d"));
    }
    let reason = reason.trim();
    if reason.is_empty() {
        return Err("give a reason (it goes into the reminder and the status page)".into());
    }
    if reason.len() > 500 {
        return Err("the reason is longer than 500 bytes".into());
    }
    let mut unique: Vec<String> = Vec::new();
    for s in services {
        if !unique.contains(s) {
            unique.push(s.clone());
        }
    }
    Ok(NewWindow { services: unique, starts_at: now, ends_at: now + ms, reason: reason.to_string() })
}
