//! The daemon's side of backups: a task that takes a backup whenever the cron schedule says
//! so (never two at once) and, every tick, turns the manifests in storage into samples for the
//! rules — also those of runs made with `mxwarden backup run` — sent down the same channel
//! the probes use. Per backed-up item (`service`, `database` labels):
//! `backup_last_success_timestamp_seconds`, `backup_last_size_bytes`,
//! `backup_last_duration_seconds`, `backup_previous_size_bytes` (the successful run before,
//! for the size-drop rule) and `backup_last_run_success` (1/0, the newest attempt).

use super::manifest::{self, ItemKind, Manifest};
use super::run::{self, Progress};
use super::{BackupPlan, DbChoice};
use crate::clock::Clock;
use crate::model::{CheckId, Labels, Observation, Sample};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The check id the samples carry.
pub(crate) const CHECK: &str = "backup";

/// Whether the plan still backs up this item (items of removed databases raise no alerts).
fn configured(plan: &BackupPlan, kind: ItemKind, service: &str, name: &str) -> bool {
    match kind {
        ItemKind::Files => plan.files.iter().any(|f| f.name == name),
        ItemKind::Globals => plan.sources.iter().any(|s| s.service == service && s.globals),
        ItemKind::Database => plan.sources.iter().any(|s| {
            s.service == service
                && match &s.databases {
                    DbChoice::All => true,
                    DbChoice::Only(list) => list.iter().any(|d| d == name),
                }
        }),
    }
}

/// The samples for the manifests (oldest first).
pub(crate) fn samples(plan: &BackupPlan, manifests: &[Manifest]) -> Vec<Sample> {
    #[derive(Default)]
    struct Seen {
        last_ok: Option<bool>,
        success: Option<(f64, f64, f64)>,
        previous_size: Option<f64>,
    }
    let mut seen: std::collections::BTreeMap<(String, String), Seen> = Default::default();
    for m in manifests.iter().rev() {
        for item in &m.items {
            if !configured(plan, item.kind, &item.service, &item.name) {
                continue;
            }
            let s = seen.entry((item.service.clone(), item.name.clone())).or_default();
            s.last_ok.get_or_insert(item.ok());
            if item.ok() {
                let at = m.finished_at.as_millisecond() as f64 / 1000.0;
                match s.success {
                    None => s.success = Some((at, item.stored_bytes as f64, item.duration_seconds)),
                    Some(_) if s.previous_size.is_none() => s.previous_size = Some(item.stored_bytes as f64),
                    Some(_) => {}
                }
            }
        }
    }
    let mut out = Vec::new();
    for ((service, database), s) in seen {
        let labels: Labels =
            [("service".to_string(), service), ("database".to_string(), database)].into_iter().collect();
        let mut push = |name: &str, value: f64| out.push(Sample { name: name.into(), labels: labels.clone(), value });
        if let Some(ok) = s.last_ok {
            push("backup_last_run_success", if ok { 1.0 } else { 0.0 });
        }
        if let Some((at, size, duration)) = s.success {
            push("backup_last_success_timestamp_seconds", at);
            push("backup_last_size_bytes", size);
            push("backup_last_duration_seconds", duration);
        }
        if let Some(previous) = s.previous_size {
            push("backup_previous_size_bytes", previous);
        }
    }
    out
}

async fn observe(plan: &BackupPlan, clock: &dyn Clock) -> Observation {
    let at = clock.now();
    let started = std::time::Instant::now();
    let (samples, failures) = match manifest::manifests(&plan.storage).await {
        Ok(ms) => (samples(plan, &ms), Vec::new()),
        Err(e) => (Vec::new(), vec![format!("cannot read the backups: {e}")]),
    };
    let failed = samples.iter().filter(|s| s.name == "backup_last_run_success" && s.value == 0.0).count();
    Observation {
        check: CheckId(CHECK.into()),
        service: None,
        at,
        ok: failures.is_empty() && failed == 0,
        latency: started.elapsed(),
        summary: format!(
            "{} backed-up items, {failed} failed last time",
            samples.iter().filter(|s| s.name == "backup_last_run_success").count()
        ),
        samples,
        scraped: Vec::new(),
        over_limit: false,
        failures,
    }
}

/// Runs until `stop`: scheduled backups, and samples every `every`.
pub(crate) fn spawn(
    plan: Arc<BackupPlan>,
    tx: mpsc::Sender<Observation>,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut next = plan.schedule.as_ref().and_then(|s| s.next_after(clock.now()));
        if let (Some(s), Some(n)) = (&plan.schedule, next) {
            tracing::info!(schedule = %s.expression, next = %n, "Backups scheduled.");
        }
        let mut running: Option<tokio::task::JoinHandle<()>> = None;
        loop {
            let wait = next.map_or(Duration::from_secs(3600), |n| {
                let ms = n.as_millisecond() - clock.now().as_millisecond();
                Duration::from_millis(ms.max(0) as u64)
            });
            tokio::select! {
                _ = ticker.tick() => {
                    if tx.send(observe(&plan, clock.as_ref()).await).await.is_err() { return }
                }
                _ = tokio::time::sleep(wait), if next.is_some() => {
                    let now = clock.now();
                    next = plan.schedule.as_ref().and_then(|s| s.next_after(now));
                    if running.is_some() {
                        tracing::warn!("A scheduled backup is due while the last one still runs; skipped.");
                        continue;
                    }
                    let plan = plan.clone();
                    running = Some(tokio::spawn(async move {
                        if let Err(e) = run::run(&plan, &plan.storage, None, &Progress::hidden(), now).await {
                            tracing::error!(error = %e, "Backup run could not start.");
                        }
                    }));
                }
                _ = async { if let Some(r) = running.as_mut() { let _ = r.await; } }, if running.is_some() => {
                    running = None;
                    if tx.send(observe(&plan, clock.as_ref()).await).await.is_err() { return }
                }
                _ = stop.changed() => {
                    if let Some(r) = running.take() { r.abort(); }
                    return;
                }
            }
        }
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::backup::manifest::{Item, RunStatus};
    use crate::backup::{DbSource, LocalDir, PgTools, Retention};
    use crate::rule::{AlertRule, RuleEngine};
    use crate::series::SeriesStore;

    /// A plan for unit tests: one postgres service, nothing reachable.
    pub(crate) fn plan() -> BackupPlan {
        BackupPlan {
            storage: crate::backup::Store::Dir(LocalDir::new("/nonexistent".into())),
            drill: None,
            drill_identity: None,
            sources: vec![DbSource {
                service: "postgres".into(),
                target: crate::probe::postgres::dsn::PgTarget::parse("postgresql://u@h/postgres").unwrap(),
                databases: DbChoice::Only(vec!["matrix".into(), "mas".into()]),
                globals: false,
            }],
            files: Vec::new(),
            schedule: None,
            retention: Retention::default(),
            zstd_level: 3,
            recipients: Vec::new(),
            tools: PgTools::in_dir(None),
        }
    }

    fn run(at: i64, items: &[(&str, u64, bool)]) -> Manifest {
        let at = jiff::Timestamp::from_second(at).unwrap();
        Manifest {
            format: 1,
            id: at.to_string(),
            status: if items.iter().all(|i| i.2) { RunStatus::Ok } else { RunStatus::Failed },
            scope: "full".into(),
            started_at: at,
            finished_at: at,
            duration_seconds: 3.0,
            mxwarden_version: "test".into(),
            zstd_level: 3,
            recipients: Vec::new(),
            items: items
                .iter()
                .map(|(db, size, ok)| Item {
                    kind: ItemKind::Database,
                    service: "postgres".into(),
                    name: db.to_string(),
                    file: format!("{db}.dump"),
                    stored_bytes: *size,
                    sha256: String::new(),
                    raw_bytes: *size,
                    duration_seconds: 2.0,
                    server_version: None,
                    tool_version: None,
                    entries: None,
                    row_counts: None,
                    error: (!ok).then(|| "pg_dump failed".to_string()),
                })
                .collect(),
        }
    }

    /// The preset rules over these manifests' samples at `now` (seconds): the firing alerts.
    fn firing(manifests: &[Manifest], now: i64) -> Vec<String> {
        let rules = crate::preset::backup::rules().into_iter().map(|d| AlertRule::compile(d).unwrap()).collect();
        let mut engine = RuleEngine::new(rules);
        let mut series = SeriesStore::new(engine.retention_ms(), 1000);
        series.ingest_owned(CHECK, now * 1000, samples(&plan(), manifests));
        let mut out: Vec<String> = engine
            .evaluate(&series, now * 1000)
            .changes
            .iter()
            .filter(|c| c.transition == crate::alert::Transition::Fired)
            .map(|c| format!("{} {}", c.alert, c.labels.get("database").cloned().unwrap_or_default()))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn the_newest_attempt_and_the_newest_success_become_samples() {
        let day = 86_400;
        let manifests = vec![
            run(10 * day, &[("matrix", 1000, true), ("mas", 500, true), ("removed", 9, true)]),
            run(11 * day, &[("matrix", 1100, true), ("mas", 0, false)]),
        ];
        let got: Vec<(String, String, f64)> =
            samples(&plan(), &manifests).into_iter().map(|s| (s.name, s.labels["database"].clone(), s.value)).collect();
        let want: Vec<(String, String, f64)> = [
            ("backup_last_run_success", "mas", 0.0),
            ("backup_last_success_timestamp_seconds", "mas", (10 * day) as f64),
            ("backup_last_size_bytes", "mas", 500.0),
            ("backup_last_duration_seconds", "mas", 2.0),
            ("backup_last_run_success", "matrix", 1.0),
            ("backup_last_success_timestamp_seconds", "matrix", (11 * day) as f64),
            ("backup_last_size_bytes", "matrix", 1100.0),
            ("backup_last_duration_seconds", "matrix", 2.0),
            ("backup_previous_size_bytes", "matrix", 1000.0),
        ]
        .into_iter()
        .map(|(n, d, v)| (n.to_string(), d.to_string(), v))
        .collect();
        assert_eq!(got, want, "`removed` is no longer configured: no samples, no alerts");
    }

    #[test]
    fn the_preset_rules_fire_on_failed_missing_and_shrunken_backups() {
        let (day, hour) = (86_400, 3600);
        let good = [("matrix", 1000, true), ("mas", 500, true)];
        let cases: &[(Vec<Manifest>, i64, &[&str], &str)] = &[
            (vec![run(10 * day, &good)], 10 * day + hour, &[], "one good run, an hour old"),
            (
                vec![run(10 * day, &good)],
                10 * day + 27 * hour,
                &["BackupMissing mas", "BackupMissing matrix"],
                "27 h without a successful backup",
            ),
            (
                vec![run(10 * day, &good), run(11 * day, &[("matrix", 1000, true), ("mas", 0, false)])],
                11 * day + hour,
                &["BackupFailed mas"],
                "the newest attempt failed",
            ),
            (
                vec![run(10 * day, &good), run(11 * day, &[("matrix", 400, true), ("mas", 260, true)])],
                11 * day + hour,
                &["BackupSizeDropped matrix"],
                "matrix shrank to 40 % (mas to 52 %: not below half)",
            ),
        ];
        for (manifests, now, want, why) in cases {
            assert_eq!(firing(manifests, *now), *want, "{why}");
        }
    }
}
