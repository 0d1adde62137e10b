//! Backups in the daily digest: how many runs finished in the period, how many failed and
//! why, and the newest good one — or, loudly, that there was none.

use super::BackupPlan;
use super::manifest::{self, Manifest, RunStatus};
use crate::config::units::human_bytes;
use crate::notify::{Notification, html_escape};

/// The lines for runs that finished in `[from, to)` (ms), given every manifest.
pub fn lines(manifests: &[Manifest], from: i64, to: i64) -> Vec<String> {
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
pub async fn append(n: &mut Notification, plan: &BackupPlan, from: i64, to: i64) {
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
