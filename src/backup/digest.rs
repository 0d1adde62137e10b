//! Backups in the daily digest: how many runs finished in the period, how many failed and
//! why, and the newest good one — or, loudly, that there was none.

use super::BackupPlan;
use super::manifest::{self, Manifest, RunStatus};
use crate::notify::{Notification, html_escape};
use crate::units::human_bytes;

/// The lines for runs that finished in `[from, to)` (ms), given every manifest.
pub(crate) fn lines(manifests: &[Manifest], from: i64, to: i64) -> Vec<String> {
    let in_period: Vec<&Manifest> =
        manifests.iter().filter(|m| (from..to).contains(&m.finished_at.as_millisecond())).collect();
    let failed: Vec<&Manifest> = in_period.iter().copied().filter(|m| m.status == RunStatus::Failed).collect();
    let mut lines = Vec::new();
    if in_period.is_empty() {
        lines.push("no backup finished in this period".to_string());
    } else {
        lines.push(format!(
            "{} run(s): {} ok, {} failed",
            in_period.len(),
            in_period.len() - failed.len(),
            failed.len()
        ));
    }
    for m in &failed {
        for item in m.items.iter().filter(|i| !i.ok()) {
            lines.push(format!("{} failed {}: {}", m.id, item.label(), item.error.as_deref().unwrap_or_default()));
        }
    }
    match manifests.iter().rev().find(|m| m.status == RunStatus::Ok) {
        Some(m) => lines.push(format!(
            "newest good backup: {} ({} items, {}, {:.0}s)",
            m.id,
            m.items.len(),
            human_bytes(m.stored_bytes()),
            m.duration_seconds
        )),
        None => lines.push("there is no good backup at all".to_string()),
    }
    lines
}

/// Adds the backup lines to a digest.
pub(crate) async fn append(n: &mut Notification, plan: &BackupPlan, from: i64, to: i64) {
    let lines = match manifest::manifests(&plan.storage).await {
        Ok(ms) => lines(&ms, from, to),
        Err(e) => vec![format!("cannot read the backups: {e}")],
    };
    n.text.push_str("Backups:\n");
    n.html.push_str("<p><b>Backups</b></p><ul>");
    for line in lines {
        n.text.push_str(&format!("- {line}\n"));
        n.html.push_str(&format!("<li>{}</li>", html_escape(&line)));
    }
    n.html.push_str("</ul>");
}

/// Adds the restore drills to a (weekly) digest.
pub(crate) async fn append_drills(n: &mut Notification, plan: &BackupPlan, from: i64, to: i64) {
    let lines = match super::drill::reports(&plan.storage, None).await {
        Ok(reports) => super::drill::digest_lines(plan, &reports, from, to),
        Err(e) => vec![format!("cannot read the restore drills: {e}")],
    };
    n.text.push_str("Restore drills:\n");
    n.html.push_str("<p><b>Restore drills</b></p><ul>");
    for line in lines {
        n.text.push_str(&format!("- {line}\n"));
        n.html.push_str(&format!("<li>{}</li>", html_escape(&line)));
    }
    n.html.push_str("</ul>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::manifest::{Item, ItemKind};

    fn manifest(at: i64, error: Option<&str>) -> Manifest {
        let at = jiff::Timestamp::from_second(at).unwrap();
        Manifest {
            format: 1,
            id: at.strftime("%Y%m%dT%H%M%SZ").to_string(),
            status: if error.is_some() { RunStatus::Failed } else { RunStatus::Ok },
            scope: "full".into(),
            started_at: at,
            finished_at: at,
            duration_seconds: 12.0,
            mxwarden_version: "test".into(),
            zstd_level: 3,
            recipients: Vec::new(),
            items: vec![Item {
                kind: ItemKind::Database,
                service: "postgres".into(),
                name: "matrix".into(),
                file: "f".into(),
                stored_bytes: 2 << 20,
                sha256: String::new(),
                raw_bytes: 0,
                duration_seconds: 1.0,
                server_version: None,
                tool_version: None,
                entries: None,
                row_counts: None,
                error: error.map(str::to_string),
            }],
        }
    }

    #[test]
    fn the_digest_counts_runs_names_failures_and_the_newest_good_one() {
        let runs = [manifest(1_000, None), manifest(90_000, Some("pg_dump failed (exit 1)")), manifest(100_000, None)];
        let got = lines(&runs, 86_400_000, 2 * 86_400_000);
        assert_eq!(
            got,
            [
                "2 run(s): 1 ok, 1 failed",
                "19700102T010000Z failed postgres/matrix: pg_dump failed (exit 1)",
                "newest good backup: 19700102T034640Z (1 items, 2.0 MiB, 12s)",
            ]
        );
        let none = lines(&runs[..1], 86_400_000, 2 * 86_400_000);
        assert_eq!(none[0], "no backup finished in this period", "an empty period is said loudly");
    }
}
