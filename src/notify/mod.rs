//! Notifications: what the rule engine's transitions become (`Notification`), the receivers
//! that deliver them (Matrix, email, webhook — one file each), and the tiers that decide
//! when: critical now (with reminders and a fallback receiver), warning into a daily digest,
//! info into a weekly one. Rows wait in the store's outbox; `dispatch` delivers them.

pub(crate) mod certs;
pub(crate) mod digest;
pub(crate) mod email;
pub(crate) mod matrix;
mod retry;
pub(crate) mod retry_after;
pub mod webhook;

pub use retry::RetryPolicy;

use crate::model::Labels;
use crate::text::{escape_controls, escape_controls_in_prose};
pub(crate) use retry_after::RetryAfter;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Why a delivery failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SendError {
    /// Try again later (timeouts, 5xx, 429); `retry_after` when the server said.
    #[error("{message}")]
    Transient {
        /// What happened.
        message: String,
        /// The server's `Retry-After` (or Matrix's `retry_after_ms`), if it sent a usable one.
        retry_after: Option<RetryAfter>,
    },
    /// Trying again cannot help (bad token, unknown room, rejected address).
    #[error("{0}")]
    Permanent(String),
}

impl SendError {
    /// A transient error without a hint.
    pub(crate) fn transient(message: impl Into<String>) -> Self {
        Self::Transient { message: message.into(), retry_after: None }
    }
}

/// The most of a receiver's answer that is read: far more than any error a server means to
/// send (Matrix's JSON errors are a few hundred bytes), small enough that a huge or endless
/// body from a hostile or broken server costs nothing. The rest is never read; the connection
/// is closed.
pub(crate) const RESPONSE_BODY_LIMIT: usize = 64 * 1024;

/// Reads at most [`RESPONSE_BODY_LIMIT`] bytes of `response`'s body; the flag says whether
/// there was more (left unread). A body that trickles forever is bounded by the request's
/// timeout, which covers the body too.
pub(crate) async fn read_capped(mut response: reqwest::Response) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = RESPONSE_BODY_LIMIT - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// A server's text (an error message, a body) fit for a log line or an outbox row: control
/// characters escaped, at most 200 characters.
pub(crate) fn snippet(text: &str) -> String {
    let text = text.trim();
    let mut cut: String = text.chars().take(200).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    escape_controls(&cut).into_owned()
}

/// What kind of message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An alert started firing.
    Firing,
    /// A still-firing alert, again.
    Reminder,
    /// An alert is over.
    Resolved,
    /// A daily or weekly review.
    Digest,
    /// `mxwarden notify test`.
    Test,
    /// What the diagnosis found after a critical page (`mxwarden diagnose`), in its thread.
    Diagnosis,
    /// A notice that is no alert: an update's announcement and its end (`mxwarden update`).
    Notice,
}

/// One alert as a message shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertInfo {
    /// Alert name.
    pub name: String,
    /// Labels (with `alertname`, `severity`).
    pub labels: Labels,
    /// Rendered annotations.
    pub annotations: BTreeMap<String, String>,
    /// The expression's value.
    pub value: f64,
    /// When it started firing, ms.
    pub fired_at: i64,
    /// When it resolved, ms.
    pub resolved_at: Option<i64>,
}

/// A message to deliver; stored as JSON in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// What it is.
    pub kind: Kind,
    /// The incident it belongs to (alert name + labels); Matrix threads by it.
    pub incident: String,
    /// One line: `[FIRING] SynapseDown synapse`.
    pub title: String,
    /// Plain text body.
    pub text: String,
    /// HTML body.
    pub html: String,
    /// The alerts it is about (one, or a digest's list).
    pub alerts: Vec<AlertInfo>,
    /// When it was decided, ms.
    pub created_at: i64,
}

/// A receiver, ready to send.
#[derive(Debug, Clone)]
pub enum Receiver {
    /// A Matrix room.
    Matrix(matrix::MatrixReceiver),
    /// SMTP.
    Email(email::EmailReceiver),
    /// Alertmanager-style webhook.
    Webhook(webhook::WebhookReceiver),
}

impl Receiver {
    /// `matrix`, `email` or `webhook`.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Matrix(_) => "matrix",
            Self::Email(_) => "email",
            Self::Webhook(_) => "webhook",
        }
    }
}

/// When a tier's digest goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestSchedule {
    /// Every day at this local time.
    Daily {
        /// Hour 0–23.
        hour: i8,
        /// Minute 0–59.
        minute: i8,
    },
    /// Every week on this day at this local time.
    Weekly {
        /// Day of the week.
        weekday: jiff::civil::Weekday,
        /// Hour.
        hour: i8,
        /// Minute.
        minute: i8,
    },
}

/// One tier.
#[derive(Debug, Clone, Default)]
pub struct Tier {
    /// Receivers.
    pub receivers: Vec<String>,
    /// Fallback receivers.
    pub fallback: Vec<String>,
    /// Failures before the fallback.
    pub fallback_after: u32,
    /// Reminder interval, ms (0: none).
    pub repeat_ms: i64,
    /// Digest instead of immediate delivery.
    pub digest: Option<DigestSchedule>,
}

/// Everything about where alerts go.
#[derive(Debug, Clone)]
pub struct Alerting {
    /// Receivers by name.
    pub receivers: BTreeMap<String, Receiver>,
    /// Tiers by severity (`critical`, `warning`, `info`).
    pub tiers: BTreeMap<String, Tier>,
    /// Digest time zone.
    pub timezone: jiff::tz::TimeZone,
    /// Retry timing.
    pub retry: RetryPolicy,
}

impl Alerting {
    /// The tier for a severity (unknown severities are treated as warnings).
    pub(crate) fn tier(&self, severity: &str) -> Option<&Tier> {
        self.tiers.get(severity).or_else(|| self.tiers.get("warning"))
    }
}

/// Parses `HH:MM`.
pub(crate) fn parse_clock(text: &str) -> Option<(i8, i8)> {
    let (h, m) = text.trim().split_once(':')?;
    let (h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
    ((0..24).contains(&h) && (0..60).contains(&m)).then_some((h, m))
}

/// Parses a digest setting.
pub(crate) fn parse_schedule(daily: Option<&str>, weekly: Option<&str>) -> Result<DigestSchedule, String> {
    match (daily, weekly) {
        (Some(d), None) => parse_clock(d)
            .map(|(hour, minute)| DigestSchedule::Daily { hour, minute })
            .ok_or_else(|| format!("daily `{d}` is not a time; expected HH:MM, e.g. 09:00")),
        (None, Some(w)) => {
            let (day, clock) = w
                .trim()
                .split_once(' ')
                .ok_or_else(|| format!("weekly `{w}` needs a day and a time, e.g. mon 09:00"))?;
            let weekday = match day.to_ascii_lowercase().get(..3) {
                Some("mon") => jiff::civil::Weekday::Monday,
                Some("tue") => jiff::civil::Weekday::Tuesday,
                Some("wed") => jiff::civil::Weekday::Wednesday,
                Some("thu") => jiff::civil::Weekday::Thursday,
                Some("fri") => jiff::civil::Weekday::Friday,
                Some("sat") => jiff::civil::Weekday::Saturday,
                Some("sun") => jiff::civil::Weekday::Sunday,
                _ => return Err(format!("weekly `{w}`: `{day}` is not a day; expected mon … sun")),
            };
            let (hour, minute) =
                parse_clock(clock).ok_or_else(|| format!("weekly `{w}`: `{clock}` is not a time; expected HH:MM"))?;
            Ok(DigestSchedule::Weekly { weekday, hour, minute })
        }
        _ => Err("a digest has exactly one of `daily` or `weekly`".into()),
    }
}

/// The incident key of an alert: its name and sorted labels.
pub(crate) fn incident_key(labels: &Labels) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// Escapes text for HTML bodies: markup characters as entities, control characters (but line
/// breaks and tabs, which HTML shows as blanks) as visible escapes (`crate::text`).
pub(crate) fn html_escape(text: &str) -> String {
    escape_controls_in_prose(text)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A rendered annotation as a message shows it: the rule author's line breaks stay, every
/// other control character is escaped, and so is every label value holding one wherever the
/// template put it — so a value a scrape target chose cannot forge a line of the message.
pub(crate) fn annotation_shown(text: &str, labels: &Labels) -> String {
    let mut shown = text.to_string();
    for value in labels.values().filter(|v| v.chars().any(crate::text::is_unsafe)) {
        shown = shown.replace(value.as_str(), &escape_controls(value));
    }
    escape_controls_in_prose(&shown).into_owned()
}

/// Builds the message for one alert transition. Label values (which a scrape target chooses)
/// and the name are shown with every control character escaped, so a value cannot colour a
/// terminal, forge a line or reorder the text; the summary keeps its meant line breaks. The
/// alert itself (`alerts`) keeps the raw values, for the webhook's JSON.
pub fn alert_message(kind: Kind, alert: AlertInfo, now: i64) -> Notification {
    let tag = match kind {
        Kind::Firing => "FIRING",
        Kind::Reminder => "STILL FIRING",
        Kind::Resolved => "RESOLVED",
        Kind::Digest => "DIGEST",
        Kind::Test => "TEST",
        Kind::Diagnosis => "DIAGNOSIS",
        Kind::Notice => "NOTICE",
    };
    let severity = escape_controls(alert.labels.get("severity").map_or("", String::as_str)).into_owned();
    let name = escape_controls(&alert.name).into_owned();
    let summary = alert
        .annotations
        .get("summary")
        .or_else(|| alert.annotations.get("description"))
        .map(|s| annotation_shown(s, &alert.labels))
        .unwrap_or_else(|| format!("value {}", crate::rule::template::go_float(alert.value)));
    let shown: Vec<String> = alert
        .labels
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "alertname" | "severity"))
        .map(|(k, v)| format!("{}={}", escape_controls(k), escape_controls(v)))
        .collect();
    let since = crate::units::utc_minute;
    let timing = match (kind, alert.resolved_at) {
        (Kind::Resolved, Some(end)) => {
            let took =
                crate::units::HumanDuration(Duration::from_millis((end - alert.fired_at).max(0) as u64 / 1000 * 1000));
            format!("firing since {}, resolved after {took}", since(alert.fired_at))
        }
        _ => format!("firing since {}", since(alert.fired_at)),
    };
    let title = format!("[{tag}] {name} ({severity})");
    let text = format!("{title}: {summary}\n{}\n{timing}", shown.join(" "));
    let html = format!(
        "<b>[{tag}]</b> <b>{}</b> ({}): {}<br/><code>{}</code><br/><i>{}</i>",
        html_escape(&name),
        html_escape(&severity),
        html_escape(&summary),
        html_escape(&shown.join(" ")),
        html_escape(&timing)
    );
    Notification {
        kind,
        incident: incident_key(&alert.labels),
        title,
        text,
        html,
        alerts: vec![alert],
        created_at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_schedules_parse() {
        let cases: &[(Option<&str>, Option<&str>, Result<DigestSchedule, ()>, &str)] = &[
            (Some("09:00"), None, Ok(DigestSchedule::Daily { hour: 9, minute: 0 }), "daily"),
            (
                None,
                Some("mon 09:30"),
                Ok(DigestSchedule::Weekly { weekday: jiff::civil::Weekday::Monday, hour: 9, minute: 30 }),
                "weekly",
            ),
            (
                None,
                Some("Sunday 23:59"),
                Ok(DigestSchedule::Weekly { weekday: jiff::civil::Weekday::Sunday, hour: 23, minute: 59 }),
                "long day names",
            ),
            (Some("25:00"), None, Err(()), "no 25th hour"),
            (None, Some("funday 09:00"), Err(()), "not a day"),
            (Some("09:00"), Some("mon 09:00"), Err(()), "only one of them"),
        ];
        for (daily, weekly, want, why) in cases {
            assert_eq!(parse_schedule(*daily, *weekly).map_err(|_| ()), *want, "{why}");
        }
    }

    #[test]
    fn messages_say_what_fired_and_escape_html() {
        let labels: Labels = [("alertname", "SynapseDown"), ("severity", "critical"), ("service", "<syn>")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let alert = AlertInfo {
            name: "SynapseDown".into(),
            labels,
            annotations: [("summary".to_string(), "synapse is down".to_string())].into_iter().collect(),
            value: 0.0,
            fired_at: 0,
            resolved_at: Some(125_000),
        };
        let n = alert_message(Kind::Resolved, alert, 125_000);
        assert_eq!(n.title, "[RESOLVED] SynapseDown (critical)");
        assert!(n.text.contains("synapse is down") && n.text.contains("resolved after 2m5s"), "{}", n.text);
        assert!(n.html.contains("service=&lt;syn&gt;"), "{}", n.html);
        assert_eq!(n.incident, "alertname=SynapseDown,service=<syn>,severity=critical");
    }

    #[test]
    fn label_values_from_a_scrape_cannot_write_control_characters_into_a_message() {
        let hostile = "\x1b[2J\x1b[31mok\rFAKE\n[RESOLVED] all fine\u{202e}";
        let labels: Labels = [("alertname", "Evil"), ("severity", "critical"), ("victim", hostile)]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let alert = AlertInfo {
            name: "Evil".into(),
            labels,
            annotations: [("summary".to_string(), format!("line one\nvictim {hostile}"))].into_iter().collect(),
            value: 1.0,
            fired_at: 0,
            resolved_at: None,
        };
        let n = alert_message(Kind::Firing, alert, 0);
        let shown = "victim=\\x1b[2J\\x1b[31mok\\rFAKE\\n[RESOLVED] all fine\\u{202e}";
        assert!(n.text.contains(shown), "the label is shown escaped: {}", n.text);
        assert!(n.html.contains(shown), "in HTML too: {}", n.html);
        assert!(n.text.starts_with("[FIRING] Evil (critical): line one\nvictim \\x1b[2J"), "{}", n.text);
        for body in [&n.title, &n.text, &n.html] {
            assert!(!body.chars().any(|c| c != '\n' && crate::text::is_unsafe(c)), "{body:?}");
        }
        assert_eq!(n.text.lines().count(), 4, "summary (its 2 lines), labels, timing — no forged line: {}", n.text);
        assert_eq!(n.alerts[0].labels["victim"], hostile, "the webhook's JSON keeps the raw value");
    }

    #[test]
    fn answers_are_read_up_to_the_cap_and_snippets_are_short_and_clean() {
        assert_eq!(snippet("  short  "), "short");
        let long = "é".repeat(500);
        let cut = snippet(&long);
        assert_eq!(cut.chars().count(), 201, "200 characters and an ellipsis");
        assert!(cut.ends_with('…'));
        assert_eq!(snippet("a\x1b[31mb\nc"), "a\\x1b[31mb\\nc");
    }
}
