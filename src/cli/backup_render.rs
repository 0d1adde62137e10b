//! `mxwarden backup list --render`: Render's own backups (`render::backups`) of each
//! PostgreSQL linked to Render — point-in-time recovery window and exports — and a warning for
//! each database Render holds no backup of. Export download URLs (signed) are never shown:
//! only their host. Exit 0 all covered, 1 a warning or an API error, 2 no `render:` or no
//! linked database.

use crate::cli::{Status, outln};
use crate::config::Config;
use crate::probe::spec::ProbeSpec;
use crate::render::ResourceKind;
use crate::render::backups::{self, DbBackups};
use anyhow::{Result, bail};
use serde::Serialize;
use std::time::Duration;

/// Deadline of each call.
const DEADLINE: Duration = Duration::from_secs(30);

/// One linked database: what Render holds, or why it could not be read.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Row {
    /// Render answered.
    Read {
        #[serde(flatten)]
        backups: DbBackups,
        /// Always `null` here (the key is there in every row).
        error: Option<String>,
    },
    /// Render could not be read.
    Failed {
        /// The service under `services:`.
        service: String,
        /// `dpg-…`.
        id: String,
        /// Why, in words.
        error: String,
    },
}

impl Row {
    fn needs_attention(&self) -> bool {
        match self {
            Row::Read { backups, .. } => backups.warning.is_some(),
            Row::Failed { .. } => true,
        }
    }
}

#[derive(Debug, Serialize)]
struct Report {
    databases: Vec<Row>,
    /// Databases with a warning or an error.
    warnings: usize,
}

/// `backup list --render [--json]`.
pub(crate) fn list(config: &Config, json: bool) -> Result<Status> {
    let Some(api) = config.render.clone() else {
        bail!(
            "{} has no `render:`; `backup list --render` reads Render's API: add render: {{ api_key: \"${{RENDER_API_KEY}}\" }} and `render: dpg-…` on the postgres service (docs/render.md)",
            config.path.display()
        );
    };
    let linked: Vec<(String, String)> = config
        .checks
        .iter()
        .filter_map(|c| match &c.probe {
            ProbeSpec::Render(r) if r.kind == ResourceKind::Postgres => {
                Some((c.service.clone().unwrap_or_default(), r.resource.clone()))
            }
            _ => None,
        })
        .collect();
    if linked.is_empty() {
        bail!(
            "{} links no PostgreSQL to Render: add `render: dpg-…` to a `kind: postgres` service (`mxwarden render discover` prints the ids)",
            config.path.display()
        );
    }
    let prober = crate::probe::Prober::new(std::sync::Arc::new(crate::clock::SystemClock));
    let client = prober.render_client(&api, DEADLINE).map_err(anyhow::Error::msg)?;
    let now = jiff::Timestamp::now();
    let now = now.round(jiff::Unit::Second).unwrap_or(now);
    let rt = crate::cli::runtime()?;
    let databases: Vec<Row> = rt.block_on(async {
        let mut rows = Vec::new();
        for (service, id) in linked {
            let row = match backups::fetch(&client, &service, &id, now).await {
                Ok(backups) => Row::Read { backups, error: None },
                Err(e) => Row::Failed { service, id, error: e.to_string() },
            };
            rows.push(row);
        }
        rows
    });
    let warnings = databases.iter().filter(|r| r.needs_attention()).count();
    let report = Report { databases, warnings };
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report);
    }
    Ok(if warnings > 0 { Status::Unhealthy } else { Status::Healthy })
}

fn print(report: &Report) {
    for row in &report.databases {
        let b = match row {
            Row::Read { backups, .. } => backups,
            Row::Failed { service, id, error } => {
                outln!("{service} ({id}): {error}");
                continue;
            }
        };
        outln!(
            "{} ({}, Render name {}, plan {})",
            b.service,
            b.id,
            b.name,
            if b.plan.is_empty() { "?" } else { &b.plan }
        );
        match (&b.pitr.starts_at, &b.pitr.ends_at, b.pitr.available) {
            (Some(s), Some(e), true) => {
                let days = b.pitr.window_seconds.unwrap_or(0) as f64 / 86_400.0;
                outln!("  point-in-time recovery: {s} to {e} ({days:.1} days)");
            }
            _ => outln!("  point-in-time recovery: none ({})", b.pitr.status),
        }
        if b.exports.is_empty() {
            outln!("  exports: none");
        } else {
            let mut t = crate::cli::output::table(vec!["export", "created", "kept until", "download"]);
            for e in &b.exports {
                let kept = match (&e.expires_at, e.within_keep) {
                    (Some(x), true) => x.clone(),
                    (Some(x), false) => format!("expired {x}"),
                    (None, _) => "unknown".to_string(),
                };
                let download = match (&e.url_host, e.has_url) {
                    (Some(h), _) => format!("link on {h}"),
                    (None, true) => "link".to_string(),
                    (None, false) => "none".to_string(),
                };
                t.add_row(vec![e.id.clone(), e.created_at.clone(), kept, download]);
            }
            outln!("{t}");
            if b.exports_not_shown > 0 {
                outln!("  … and {} older exports", b.exports_not_shown);
            }
        }
        if let Some(w) = &b.warning {
            outln!("  warning: {w}");
        }
    }
}
