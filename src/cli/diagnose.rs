//! `mxwarden diagnose [TOPIC…] [--json]` (the runbook's common issues, `diagnose`) and
//! `mxwarden synapse media-stats | purge-media`. Exit 0 when nothing is found, 1 on a finding
//! or a failed playbook (or a failed purge), 2 on a wrong config or command line. Output
//! passes through the config's redactor: no token of the config is ever printed.

use crate::cli::{Status, outln};
use crate::config::Config;
use crate::diagnose::{self, synapse_admin};
use crate::units::{HumanDuration, human_bytes};
use anyhow::{Result, bail};
use clap::Subcommand;
use serde::Serialize;
use std::io::IsTerminal;
use std::time::Duration;

/// How long `mxwarden diagnose` gives each playbook.
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

/// `mxwarden synapse …`.
#[derive(Debug, Subcommand)]
pub(crate) enum SynapseCommand {
    /// Local media (admin API) and the remote media cache (database) of a synapse service.
    MediaStats {
        /// The synapse service (needed when the config has several).
        #[arg(long)]
        service: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete cached remote media not accessed for a while
    /// (`POST /_synapse/admin/v1/purge_media_cache`); local uploads are never touched.
    PurgeMedia {
        /// Remote media last accessed longer ago than this goes, e.g. `30d`.
        #[arg(long)]
        before: String,
        /// Say what would be deleted; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask (needed when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
        /// The synapse service (needed when the config has several).
        #[arg(long)]
        service: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `mxwarden diagnose`.
pub(crate) fn diagnose(config: &Config, topics: &[String], json: bool) -> Result<Status> {
    let topics = diagnose::select(config, topics)?;
    let spinner = (!json && std::io::stderr().is_terminal()).then(|| {
        let s = indicatif::ProgressBar::new_spinner();
        s.set_message(format!("running {}", topics.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")));
        s.enable_steady_tick(Duration::from_millis(120));
        s
    });
    let report = crate::cli::runtime()?.block_on(diagnose::run(config, &topics, DEADLINE));
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    let text = if json { serde_json::to_string_pretty(&report)? } else { diagnose::render_text(&report) };
    outln!("{}", config.redactor.redact(text.trim_end()));
    Ok(if report.has_findings() { Status::Unhealthy } else { Status::Healthy })
}

/// Runs a `synapse` subcommand.
pub(crate) fn synapse(config: &Config, command: SynapseCommand) -> Result<Status> {
    match command {
        SynapseCommand::MediaStats { service, json } => media_stats(config, service.as_deref(), json),
        SynapseCommand::PurgeMedia { before, dry_run, yes, service, json } => {
            purge_media(config, &before, dry_run, yes, service.as_deref(), json)
        }
    }
}

fn media_stats(config: &Config, service: Option<&str>, json: bool) -> Result<Status> {
    let cx = diagnose::web_cx(config)?;
    let synapse = synapse_admin::synapse(&cx, service).map_err(anyhow::Error::msg)?;
    let stats = crate::cli::runtime()?.block_on(synapse_admin::media_stats(&cx, synapse));
    let text = if json { serde_json::to_string_pretty(&stats)? } else { stats_text(&stats) };
    outln!("{}", config.redactor.redact(text.trim_end()));
    let read_anything = stats.local_bytes.is_some() || stats.remote_bytes.is_some();
    Ok(if read_anything { Status::Healthy } else { Status::Unhealthy })
}

fn stats_text(s: &synapse_admin::MediaStats) -> String {
    let opt = |v: Option<u64>, bytes: bool| match v {
        Some(v) if bytes => human_bytes(v),
        Some(v) => v.to_string(),
        None => "unknown".into(),
    };
    let mut out = format!(
        "{}: local media {} files, {} ({} users); remote media cache {} files, {}; database {} {}\n",
        s.service,
        opt(s.local_files, false),
        opt(s.local_bytes, true),
        opt(s.local_users, false),
        opt(s.remote_files, false),
        opt(s.remote_bytes, true),
        s.database.as_deref().unwrap_or("(none)"),
        opt(s.database_bytes, true),
    );
    for u in &s.unavailable {
        out.push_str(&format!("  not read: {}\n", crate::text::escape_controls(u)));
    }
    out
}

/// What `purge-media --json` prints.
#[derive(Serialize)]
struct Purged {
    service: String,
    before: String,
    before_ts: i64,
    dry_run: bool,
    /// What the database says the purge would delete: files, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    would_delete: Option<(u64, u64)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deleted: Option<u64>,
    stats_before: synapse_admin::MediaStats,
    #[serde(skip_serializing_if = "Option::is_none")]
    stats_after: Option<synapse_admin::MediaStats>,
}

fn purge_media(
    config: &Config,
    before: &str,
    dry_run: bool,
    yes: bool,
    service: Option<&str>,
    json: bool,
) -> Result<Status> {
    let age = HumanDuration::parse(before).map_err(|e| anyhow::anyhow!("--before {before:?}: {e}"))?;
    if age.0.is_zero() {
        bail!("--before must be more than 0, e.g. 30d");
    }
    let cx = diagnose::web_cx(config)?;
    let synapse = synapse_admin::synapse(&cx, service).map_err(anyhow::Error::msg)?;
    if synapse.admin_token.is_none() || synapse.url.is_none() {
        bail!("services.{} needs url and admin_token to purge media", synapse.name);
    }
    let now = jiff::Timestamp::now().as_millisecond();
    let before_ts = now.saturating_sub(i64::try_from(age.0.as_millis()).unwrap_or(i64::MAX));
    let cut = crate::units::utc_minute(before_ts);
    let rt = crate::cli::runtime()?;
    let stats_before = rt.block_on(synapse_admin::media_stats(&cx, synapse));
    let would = rt.block_on(synapse_admin::remote_older_than(&cx, before_ts)).ok();
    let mut printed = Purged {
        service: synapse.name.clone(),
        before: age.to_string(),
        before_ts,
        dry_run,
        would_delete: would,
        deleted: None,
        stats_before,
        stats_after: None,
    };
    let would_text = would.map_or_else(
        || "an unknown number of files (no database to count them)".to_string(),
        |(n, b)| format!("{n} remote files, {}", human_bytes(b)),
    );
    let show = |text: String| outln!("{}", config.redactor.redact(text.trim_end()));
    if dry_run {
        if json {
            show(serde_json::to_string_pretty(&printed)?);
        } else {
            show(format!(
                "{}dry run: would POST /_synapse/admin/v1/purge_media_cache?before_ts={before_ts} (remote media last accessed before {cut}): {would_text}. Nothing was changed.",
                stats_text(&printed.stats_before)
            ));
        }
        return Ok(Status::Healthy);
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            bail!("purge-media deletes media; on a non-terminal pass --yes (or --dry-run to see what it would do)");
        }
        eprint!("Delete {would_text} of remote media last accessed before {cut} from {}? [y/N] ", synapse.name);
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            outln!("Nothing deleted.");
            return Ok(Status::Healthy);
        }
    }
    let deleted = match rt.block_on(synapse_admin::purge_media_cache(&cx, synapse, before_ts)) {
        Ok(n) => n,
        Err(why) => {
            eprintln!("{}", config.redactor.redact(&format!("purge-media failed: {why}")));
            return Ok(Status::Unhealthy);
        }
    };
    printed.deleted = Some(deleted);
    printed.stats_after = Some(rt.block_on(synapse_admin::media_stats(&cx, synapse)));
    if json {
        show(serde_json::to_string_pretty(&printed)?);
    } else {
        let b = &printed.stats_before;
        let a = printed.stats_after.as_ref().unwrap_or(b);
        let size = |v: Option<u64>| v.map_or_else(|| "unknown".to_string(), human_bytes);
        show(format!(
            "{}: Synapse deleted {deleted} remote media files last accessed before {cut}.\n  remote media cache: {} → {}\n  database {}: {} → {}",
            synapse.name,
            size(b.remote_bytes),
            size(a.remote_bytes),
            a.database.as_deref().unwrap_or("(none)"),
            size(b.database_bytes),
            size(a.database_bytes),
        ));
    }
    Ok(Status::Healthy)
}
