//! Render's own backups of a linked PostgreSQL: its point-in-time recovery (PITR) window and
//! the logical exports Render keeps, judged against what the operator may be counting on. A
//! free instance (or one whose recovery is `NOT_AVAILABLE`) with no export made in the last
//! 7 days has no backup on Render at all: mxwarden's own are the only ones.
//!
//! An export's download URL is signed, as good as a password while it lasts: only its host
//! and whether there is one ever leave this module.

use super::client::{RenderClient, RenderError};
use super::model::{Export, Postgres, Recovery};
use serde::Serialize;
use std::time::Duration;

/// How long Render keeps a logical export.
pub const EXPORT_KEEP: Duration = Duration::from_secs(7 * 86_400);

/// The newest minutes PITR cannot restore to.
pub const PITR_LAG: Duration = Duration::from_secs(10 * 60);

/// The most exports shown for one database (newest first); the rest are counted.
pub const MAX_EXPORTS: usize = 50;

/// The PITR window of one database.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pitr {
    /// Render's `recoveryStatus`: `AVAILABLE`, `BACKUP_NOT_READY` or `NOT_AVAILABLE`.
    pub status: String,
    /// Whether a restore to a point in time is possible now.
    pub available: bool,
    /// The earliest point it can restore to (RFC 3339), when available.
    pub starts_at: Option<String>,
    /// The latest point (now minus 10 minutes), when available.
    pub ends_at: Option<String>,
    /// The window's length in seconds, when available.
    pub window_seconds: Option<u64>,
}

/// One export as shown: never its URL, only whether there is one and its host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportView {
    /// Its id.
    pub id: String,
    /// When it was made, as Render wrote it.
    pub created_at: String,
    /// When Render deletes it (made + 7 days), if the creation time could be read.
    pub expires_at: Option<String>,
    /// Whether it is still within Render's 7-day keep.
    pub within_keep: bool,
    /// Whether Render gave a download URL.
    pub has_url: bool,
    /// That URL's host (the signed path and query are never shown).
    pub url_host: Option<String>,
}

/// Render's backups of one linked database.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DbBackups {
    /// The service under `services:`.
    pub service: String,
    /// `dpg-…`.
    pub id: String,
    /// The name in Render's dashboard.
    pub name: String,
    /// Render's plan, e.g. `free`, `basic_256mb`, `pro_4gb`.
    pub plan: String,
    /// Point-in-time recovery.
    pub pitr: Pitr,
    /// The exports, newest first (at most [`MAX_EXPORTS`]).
    pub exports: Vec<ExportView>,
    /// Exports left out beyond [`MAX_EXPORTS`].
    pub exports_not_shown: usize,
    /// Why Render holds no backup of this database, if it holds none.
    pub warning: Option<String>,
}

/// Judges what Render reported for `service` (`pg`, its recovery and exports) at `now`.
pub fn assess(
    service: &str,
    pg: &Postgres,
    recovery: &Recovery,
    exports: Vec<Export>,
    now: jiff::Timestamp,
) -> DbBackups {
    let esc = |s: &str| crate::text::escape_controls(s).into_owned();
    let plan = esc(&pg.plan);
    let free = pg.plan.eq_ignore_ascii_case("free");
    let status = esc(&recovery.recovery_status);
    let starts = recovery.starts_at.as_deref().and_then(|s| s.parse::<jiff::Timestamp>().ok());
    let end = now - jiff::SignedDuration::try_from(PITR_LAG).unwrap_or_default();
    let available = recovery.recovery_status == "AVAILABLE" && !free;
    let pitr = match starts {
        Some(s) if available => {
            let window = end.duration_since(s).as_secs().max(0) as u64;
            Pitr {
                status,
                available: window > 0,
                starts_at: Some(s.to_string()),
                ends_at: Some(end.to_string()),
                window_seconds: Some(window),
            }
        }
        _ => Pitr { status, available: false, starts_at: None, ends_at: None, window_seconds: None },
    };
    let keep = jiff::SignedDuration::try_from(EXPORT_KEEP).unwrap_or_default();
    let mut views: Vec<(Option<jiff::Timestamp>, ExportView)> = exports
        .into_iter()
        .map(|e| {
            let made = e.created_at.parse::<jiff::Timestamp>().ok();
            let expires = made.map(|m| m + keep);
            let host = e.url.as_deref().and_then(|u| url::Url::parse(u).ok()).and_then(|u| u.host_str().map(&esc));
            let view = ExportView {
                id: esc(&e.id),
                created_at: esc(&e.created_at),
                expires_at: expires.map(|x| x.to_string()),
                within_keep: made.is_some_and(|m| m <= now + jiff::SignedDuration::from_mins(5))
                    && expires.is_some_and(|x| x > now),
                has_url: e.url.as_deref().is_some_and(|u| !u.is_empty()),
                url_host: host,
            };
            (made, view)
        })
        .collect();
    views.sort_by_key(|v| std::cmp::Reverse(v.0));
    let recent = views.iter().any(|(_, v)| v.within_keep);
    let not_shown = views.len().saturating_sub(MAX_EXPORTS);
    views.truncate(MAX_EXPORTS);
    let warning = (!pitr.available && !recent).then(|| {
        let why = if free {
            "a free instance has no point-in-time recovery".to_string()
        } else if recovery.recovery_status == "BACKUP_NOT_READY" {
            "point-in-time recovery is not ready yet (BACKUP_NOT_READY)".to_string()
        } else if recovery.recovery_status == "AVAILABLE" {
            "point-in-time recovery has no window yet".to_string()
        } else {
            format!("point-in-time recovery is {}", pitr.status)
        };
        format!("{why} and no export was made in the last 7 days: mxwarden's backups are the only ones for {service}")
    });
    DbBackups {
        service: esc(service),
        id: esc(&pg.id),
        name: esc(&pg.name),
        plan,
        pitr,
        exports: views.into_iter().map(|(_, v)| v).collect(),
        exports_not_shown: not_shown,
        warning,
    }
}

/// Asks Render about database `id` (linked to `service`) and judges it at `now`.
pub async fn fetch(
    client: &RenderClient,
    service: &str,
    id: &str,
    now: jiff::Timestamp,
) -> Result<DbBackups, RenderError> {
    let pg = client.postgres(id).await?;
    let recovery = client.recovery(id).await?;
    let exports = client.exports(id).await?;
    tracing::debug!(service, id, exports = exports.len(), status = %recovery.recovery_status, "read Render's backups");
    Ok(assess(service, &pg, &recovery, exports, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(plan: &str) -> Postgres {
        serde_json::from_value(serde_json::json!({"id": "dpg-a", "name": "db", "plan": plan})).unwrap()
    }

    fn rec(status: &str, starts: Option<&str>) -> Recovery {
        Recovery { recovery_status: status.into(), starts_at: starts.map(str::to_string) }
    }

    fn export(id: &str, at: &str, url: Option<&str>) -> Export {
        Export { id: id.into(), created_at: at.into(), url: url.map(str::to_string) }
    }

    const NOW: &str = "2026-12-05T12:00:00Z";

    #[test]
    fn a_paid_plan_shows_its_window_up_to_ten_minutes_ago_and_its_exports_newest_first() {
        let now: jiff::Timestamp = NOW.parse().unwrap();
        let exports = vec![
            export("exp-old", "2026-11-20T00:00:00Z", Some("https://exports.render.com/x?X-Amz-Signature=abc")),
            export("exp-new", "2026-12-04T00:00:00Z", Some("https://exports.render.com/y?X-Amz-Signature=def")),
        ];
        let b = assess("postgres", &pg("pro_4gb"), &rec("AVAILABLE", Some("2026-11-28T12:00:00Z")), exports, now);
        assert!(b.pitr.available && b.warning.is_none());
        assert_eq!(b.pitr.ends_at.as_deref(), Some("2026-12-05T11:50:00Z"));
        assert_eq!(b.pitr.window_seconds, Some(7 * 86_400 - 600));
        let ids: Vec<(&str, bool)> = b.exports.iter().map(|e| (e.id.as_str(), e.within_keep)).collect();
        assert_eq!(ids, [("exp-new", true), ("exp-old", false)]);
        assert_eq!(b.exports[0].url_host.as_deref(), Some("exports.render.com"));
        let json = serde_json::to_string(&b).unwrap();
        assert!(!json.contains("Signature") && !format!("{b:?}").contains("Signature"), "{json}");
    }

    #[test]
    fn no_pitr_and_no_recent_export_warns_and_a_recent_export_is_enough() {
        let now: jiff::Timestamp = NOW.parse().unwrap();
        let free = assess("postgres", &pg("free"), &rec("NOT_AVAILABLE", None), vec![], now);
        assert!(!free.pitr.available);
        let w = free.warning.unwrap();
        assert!(w.contains("free instance") && w.contains("mxwarden's backups are the only ones for postgres"), "{w}");
        let stale = vec![export("exp-1", "2026-11-01T00:00:00Z", None)];
        assert!(assess("db", &pg("basic_256mb"), &rec("NOT_AVAILABLE", None), stale, now).warning.is_some());
        let fresh = vec![export("exp-2", "2026-12-03T00:00:00Z", None)];
        let b = assess("db", &pg("free"), &rec("NOT_AVAILABLE", None), fresh, now);
        assert!(b.warning.is_none() && b.exports[0].within_keep && !b.exports[0].has_url);
        let garbled = vec![export("exp-3", "yesterday\u{1b}[2J", Some("not a url"))];
        let b = assess("db", &pg("basic_256mb"), &rec("BACKUP_NOT_READY", None), garbled, now);
        assert!(b.warning.unwrap().contains("BACKUP_NOT_READY"));
        assert!(
            !b.exports[0].within_keep && b.exports[0].url_host.is_none() && !b.exports[0].created_at.contains('\u{1b}')
        );
    }
}
