//! `synapse-oom` — the runbook's "Synapse Out of Memory": Synapse's resident memory now and
//! its trend over two scrapes, against the configured thresholds; how often `/health` went
//! down in the last day (the store's uptime history, when `mxwarden run` keeps one); its biggest caches
//! (`synapse_util_caches_cache_size` by name); a restart between the two scrapes (a finding:
//! the start time changed); a restart within the hour
//! (`process_start_time_seconds`, evidence beside high memory, not a finding of its own: a
//! deploy restarts too); when the metrics do not answer, whether `/health` does. Reads the service's
//! `metrics_url` and `url`; needs no token.

use super::web::{Cx, join};
use super::{Finding, Notes, Severity, runbook};
use crate::model::{Sample, ServiceKind};
use crate::preset::rules::{Unit, parse_threshold, thresholds};
use crate::probe::spec::ProbeSpec;
use crate::units::human_bytes;
use std::time::Duration;

/// The families read.
const FAMILIES: &[&str] = &[
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "synapse_util_caches_cache_size",
    "synapse_util_caches_cache_max_size",
];

/// How long apart the two scrapes of the trend are.
const TREND_GAP: Duration = Duration::from_secs(2);

/// A restart this recent is worth naming.
const RECENT_RESTART_S: f64 = 3_600.0;

pub(super) async fn run(cx: &Cx<'_>, notes: &mut Notes) -> Result<(), String> {
    let service = cx
        .config
        .services
        .iter()
        .find(|s| s.kind == ServiceKind::Synapse && s.metrics_url.is_some())
        .ok_or("no synapse service with metrics_url")?;
    let name = &service.name;
    let check = cx
        .config
        .checks
        .iter()
        .find(|c| c.id.0 == format!("{name}/metrics"))
        .ok_or_else(|| format!("the check {name}/metrics is disabled; nothing to read Synapse's memory from"))?;
    let ProbeSpec::Scrape(scrape) = &check.probe else { return Err(format!("{name}/metrics is not a scrape")) };
    let mut spec = scrape.clone();
    spec.families = Some(FAMILIES.iter().map(|f| f.to_string()).collect());
    let scrape_once = || async {
        let client = crate::probe::http::client(&crate::probe::tls::system_roots(), &spec.http.tls, true)?;
        let got = crate::probe::scrape::run(&spec, &client, check.timeout, Some(name), jiff::Timestamp::now).await;
        match got.failure {
            Some(why) => Err(why),
            None => Ok(got.samples),
        }
    };
    let limit = |key: &str| -> Option<f64> {
        let t = thresholds(ServiceKind::Synapse).iter().find(|t| t.name == key)?;
        let text = service.thresholds.get(key).map_or(t.default, String::as_str);
        parse_threshold(Unit::Bytes, text).ok()
    };
    let (warning, critical) =
        (limit("memory_warning").unwrap_or(f64::MAX), limit("memory_critical").unwrap_or(f64::MAX));
    let history = match outages(cx, &format!("{name}/health")).await {
        Some((n, minutes)) => {
            let line = format!(
                "{name}/health went down {n} time(s) in the last 24 h, {minutes} min in all (the store's history)"
            );
            notes.saw(line.clone());
            Some(line)
        }
        None => None,
    };
    let first = match scrape_once().await {
        Ok(s) => s,
        Err(why) => {
            let health = match &service.url {
                Some(url) => match cx.get(&join(url, "/health"), &service.tls, None).await {
                    Ok(a) => format!("GET /health answered {} {}", a.status, a.snippet()),
                    Err(e) => format!("GET /health failed: {e}"),
                },
                None => "no url to ask /health".into(),
            };
            notes.found(Finding {
                severity: Severity::Critical,
                title: format!("{name}: Synapse's metrics do not answer"),
                seen: [format!("scrape of {}: {why}", crate::text::escape_controls(&spec_url(&spec))), health]
                    .into_iter()
                    .chain(history.clone())
                    .collect(),
                why: "a Synapse that was killed for running out of memory answers nothing until it has restarted".into(),
                fix: vec![
                    "look at the platform's events for an out-of-memory kill (Render: the service's Events, \"Out of memory\")".into(),
                    format!(
                        "short term: restart it; medium term: lower `caches.global_factor` in homeserver.yaml; long term: a plan with more memory than {} (memory_critical)",
                        human_bytes(critical as u64)
                    ),
                ],
                runbook: runbook::SYNAPSE_OOM,
            });
            return Ok(());
        }
    };
    let rss = value(&first, "process_resident_memory_bytes")
        .ok_or("the metrics page has no process_resident_memory_bytes")?;
    notes.saw(format!(
        "{name}: resident memory {} (warning {}, critical {})",
        human_bytes(rss as u64),
        human_bytes(warning as u64),
        human_bytes(critical as u64)
    ));
    tokio::time::sleep(TREND_GAP).await;
    let second = scrape_once().await.ok();
    let started = |samples: &[Sample]| value(samples, "process_start_time_seconds");
    let restarted_meanwhile = match (&second, started(&first)) {
        (Some(later), Some(before)) => started(later).is_some_and(|after| after != before),
        _ => false,
    };
    // Across a restart the two readings are two processes: no trend.
    let trend =
        second.as_deref().filter(|_| !restarted_meanwhile).and_then(|s| value(s, "process_resident_memory_bytes")).map(
            |later| {
                let per_min = (later - rss) / TREND_GAP.as_secs_f64() * 60.0;
                notes.saw(format!(
                    "{name}: memory trend {:+.1} MiB/min over {} s",
                    per_min / 1_048_576.0,
                    TREND_GAP.as_secs()
                ));
                per_min
            },
        );
    if restarted_meanwhile {
        notes.found(Finding {
            severity: Severity::Critical,
            title: format!("{name}: Synapse restarted while it was being diagnosed"),
            seen: vec![format!(
                "process_start_time_seconds changed between two scrapes {} s apart",
                TREND_GAP.as_secs()
            )],
            why: "a process that restarts on its own is the runbook's first symptom of running out of memory".into(),
            fix: vec![
                "check the platform's events for an out-of-memory kill (Render: Events)".into(),
                "homeserver.yaml: lower `caches.global_factor` (default 0.5, e.g. 0.25); long term a plan with more memory".into(),
            ],
            runbook: runbook::SYNAPSE_OOM,
        });
    }
    let max_of = |cache: &str| {
        first
            .iter()
            .find(|s| {
                s.name == "synapse_util_caches_cache_max_size" && s.labels.get("name").is_some_and(|n| n == cache)
            })
            .map(|s| s.value)
    };
    let mut caches: Vec<(String, f64)> = first
        .iter()
        .filter(|s| s.name == "synapse_util_caches_cache_size")
        .filter_map(|s| Some((s.labels.get("name")?.clone(), s.value)))
        .collect();
    caches.sort_by(|a, b| b.1.total_cmp(&a.1));
    caches.truncate(5);
    let biggest: Vec<String> = caches
        .iter()
        .map(|(n, v)| match max_of(n) {
            Some(max) => format!("{n}: {v:.0} of {max:.0} entries"),
            None => format!("{n}: {v:.0} entries"),
        })
        .collect();
    if !biggest.is_empty() {
        notes.saw(format!("{name}: biggest caches {}", biggest.join(", ")));
    }
    let now = jiff::Timestamp::now().as_second() as f64;
    let uptime = value(&first, "process_start_time_seconds").map(|start| now - start);
    if let Some(up) = uptime {
        notes.saw(format!("{name}: process up for {:.0} min", up / 60.0));
    }
    let cache_fix = match caches.first() {
        Some((n, _)) => format!(
            "homeserver.yaml: `caches: {{ global_factor: 0.25 }}` (default 0.5), or shrink the biggest cache alone: `caches: {{ per_cache_factors: {{ {n}: 0.1 }} }}`; restart Synapse"
        ),
        None => "homeserver.yaml: `caches: { global_factor: 0.25 }` (default 0.5); restart Synapse".to_string(),
    };
    let plan_fix = "long term: a plan with more memory (Render Standard: 2 GB), then raise `thresholds: { memory_warning, memory_critical }` to match";
    let mut seen = vec![format!(
        "resident memory {} (memory_warning {}, memory_critical {})",
        human_bytes(rss as u64),
        human_bytes(warning as u64),
        human_bytes(critical as u64)
    )];
    if let Some(t) = trend {
        seen.push(format!("trend {:+.1} MiB/min", t / 1_048_576.0));
    }
    if !biggest.is_empty() {
        seen.push(format!("biggest caches: {}", biggest.join(", ")));
    }
    seen.extend(history);
    if let Some(up) = uptime.filter(|u| *u < RECENT_RESTART_S) {
        // A restart alone is no finding (a deploy restarts too); beside high memory it is
        // the runbook's first symptom.
        seen.push(format!("process started {:.0} min ago (process_start_time_seconds): a restart", up / 60.0));
    }
    if rss >= warning {
        notes.found(Finding {
            severity: if rss >= critical { Severity::Critical } else { Severity::Warning },
            title: format!("{name}: Synapse uses {} of memory", human_bytes(rss as u64)),
            seen,
            why: "past the plan's memory the platform kills Synapse: restarts, 502/503s, slow answers".into(),
            fix: vec![cache_fix, plan_fix.into()],
            runbook: runbook::SYNAPSE_OOM,
        });
    }
    Ok(())
}

/// How often `check` went down in the last day, and for how long, from the store's uptime
/// history (`mxwarden run` keeps it): (outages, minutes down). `None` without a store.
async fn outages(cx: &Cx<'_>, check: &str) -> Option<(usize, i64)> {
    if cx.config.store.path().is_some_and(|p| !p.is_file()) {
        return None;
    }
    let store = crate::store::Store::open(&cx.config.store).await.ok()?;
    let history = crate::store::History::new(store);
    let now = jiff::Timestamp::now().as_millisecond();
    let results = history.raw(check, now - DAY_MS, now).await.ok()?;
    let mut outages = 0;
    let mut down_ms = 0;
    let mut previous: Option<&crate::history::Result> = None;
    for r in &results {
        let down = r.state == crate::history::State::Down;
        if down && previous.is_none_or(|p| p.state != crate::history::State::Down) {
            outages += 1;
        }
        if let Some(p) = previous.filter(|p| p.state == crate::history::State::Down) {
            down_ms += r.at_ms - p.at_ms;
        }
        previous = Some(r);
    }
    Some((outages, down_ms / 60_000))
}

/// A day, ms.
const DAY_MS: i64 = 86_400_000;

fn value(samples: &[Sample], name: &str) -> Option<f64> {
    samples.iter().find(|s| s.name == name).map(|s| s.value)
}

fn spec_url(spec: &crate::probe::spec::ScrapeSpec) -> String {
    match &spec.http.target {
        crate::probe::spec::Target::Url(u) => u.to_string(),
        crate::probe::spec::Target::Discovered { document, field } => format!("{field} of {document}"),
    }
}
