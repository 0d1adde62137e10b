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

/// A run that could not write its manifest (the destination refused, was unreachable, or
/// the run could not start): `backup_last_run_success` is 0 for every item, as after a failed
/// run, until a newer run writes a manifest. Items that never had one get a sample too, named
/// after the plan, so `BackupFailed` fires even for a first run into a refusing bucket.
pub(crate) fn failed_attempt(
    plan: &BackupPlan,
    manifests: &[Manifest],
    samples: &mut Vec<Sample>,
    failed_at: jiff::Timestamp,
) {
    if manifests.last().is_some_and(|m| m.started_at >= failed_at) {
        return;
    }
    for s in samples.iter_mut().filter(|s| s.name == "backup_last_run_success") {
        s.value = 0.0;
    }
    let mut wanted: Vec<(String, String)> = Vec::new();
    for source in &plan.sources {
        if source.globals {
            wanted.push((source.service.clone(), "(globals)".into()));
        }
        match &source.databases {
            DbChoice::Only(list) => wanted.extend(list.iter().map(|d| (source.service.clone(), d.clone()))),
            DbChoice::All => wanted.push((source.service.clone(), "(all)".into())),
        }
    }
    wanted.extend(plan.files.iter().map(|f| ("files".to_string(), f.name.clone())));
    for (service, database) in wanted {
        let known = samples.iter().any(|s| {
            s.name == "backup_last_run_success"
                && s.labels.get("service") == Some(&service)
                && s.labels.get("database") == Some(&database)
        });
        if !known {
            let labels: Labels =
                [("service".to_string(), service), ("database".to_string(), database)].into_iter().collect();
            samples.push(Sample { name: "backup_last_run_success".into(), labels, value: 0.0 });
        }
    }
}

/// What the daemon keeps of the storage between ticks, so each tick lists the runs but reads
/// only new manifests and drill reports.
#[derive(Default)]
struct Caches {
    manifests: super::storage::ObjectCache<Manifest>,
    drills: super::storage::ObjectCache<super::drill::DrillReport>,
}

async fn observe(
    plan: &BackupPlan,
    clock: &dyn Clock,
    failed_at: Option<jiff::Timestamp>,
    caches: &Caches,
) -> Observation {
    let at = clock.now();
    let started = std::time::Instant::now();
    let (mut samples, mut failures) = match manifest::manifests_cached(&plan.storage, Some(&caches.manifests)).await {
        Ok(ms) => {
            let mut out = samples(plan, &ms);
            if let Some(t) = failed_at {
                failed_attempt(plan, &ms, &mut out, t);
            }
            match super::drill::reports(&plan.storage, Some(&caches.drills)).await {
                Ok(reports) => out.extend(super::drill::samples(plan, &reports, &ms)),
                Err(e) => tracing::warn!(error = %e, "Cannot read the drill reports."),
            }
            (out, Vec::new())
        }
        Err(e) => (Vec::new(), vec![format!("cannot read the backups: {e}")]),
    };
    if samples.is_empty()
        && let Some(t) = failed_at
    {
        failed_attempt(plan, &[], &mut samples, t);
        failures.push(format!("the last backup run failed at {t}"));
    }
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
        // Uploads a killed process left unfinished in the bucket are aborted at start.
        plan.storage.abort_orphans().await;
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut next = plan.schedule.as_ref().and_then(|s| s.next_after(clock.now()));
        if let (Some(s), Some(n)) = (&plan.schedule, next) {
            tracing::info!(schedule = %s.expression, next = %n, "Backups scheduled.");
        }
        let mut running: Option<tokio::task::JoinHandle<()>> = None;
        // When the newest run failed without a manifest (shared with the run's task).
        let failed_at: Arc<std::sync::Mutex<Option<jiff::Timestamp>>> = Arc::default();
        let failed = |f: &std::sync::Mutex<Option<jiff::Timestamp>>| f.lock().ok().and_then(|g| *g);
        let mut next_drill = plan.drill.as_ref().and_then(|s| s.next_after(clock.now()));
        if let (Some(s), Some(n)) = (&plan.drill, next_drill) {
            tracing::info!(schedule = %s.expression, next = %n, "Restore drills scheduled.");
        }
        let mut drilling: Option<tokio::task::JoinHandle<()>> = None;
        let caches = Caches::default();
        loop {
            let wait = next.map_or(Duration::from_secs(3600), |n| {
                let ms = n.as_millisecond() - clock.now().as_millisecond();
                Duration::from_millis(ms.max(0) as u64)
            });
            let wait_drill = next_drill.map_or(Duration::from_secs(3600), |n| {
                let ms = n.as_millisecond() - clock.now().as_millisecond();
                Duration::from_millis(ms.max(0) as u64)
            });
            tokio::select! {
                _ = ticker.tick() => {
                    if tx.send(observe(&plan, clock.as_ref(), failed(&failed_at), &caches).await).await.is_err() { return }
                }
                _ = tokio::time::sleep(wait_drill), if next_drill.is_some() => {
                    let now = clock.now();
                    next_drill = plan.drill.as_ref().and_then(|s| s.next_after(now));
                    if drilling.is_some() || running.is_some() {
                        tracing::warn!("A restore drill is due while a backup or drill still runs; skipped.");
                        continue;
                    }
                    let plan = plan.clone();
                    drilling = Some(tokio::spawn(async move {
                        let Some(path) = plan.drill_identity.as_deref() else { return };
                        let outcome = match super::pipeline::identities(path) {
                            Ok(ids) => super::drill::drill(&plan, &plan.storage, &ids, now).await.map(|_| ()),
                            Err(e) => Err(e),
                        };
                        if let Err(e) = outcome {
                            tracing::error!(error = %e, "Restore drill could not run.");
                        }
                    }));
                }
                _ = async { if let Some(r) = drilling.as_mut() { let _ = r.await; } }, if drilling.is_some() => {
                    drilling = None;
                    if tx.send(observe(&plan, clock.as_ref(), failed(&failed_at), &caches).await).await.is_err() { return }
                }
                _ = tokio::time::sleep(wait), if next.is_some() => {
                    let now = clock.now();
                    next = plan.schedule.as_ref().and_then(|s| s.next_after(now));
                    if running.is_some() {
                        tracing::warn!("A scheduled backup is due while the last one still runs; skipped.");
                        continue;
                    }
                    let plan = plan.clone();
                    let failed_at = failed_at.clone();
                    running = Some(tokio::spawn(async move {
                        let outcome = run::run(&plan, &plan.storage, None, &Progress::hidden(), now).await;
                        if let Err(e) = &outcome {
                            tracing::error!(error = %e, "Backup run failed without a manifest.");
                        }
                        if let Ok(mut f) = failed_at.lock() {
                            *f = outcome.is_err().then_some(now);
                        }
                    }));
                }
                _ = async { if let Some(r) = running.as_mut() { let _ = r.await; } }, if running.is_some() => {
                    running = None;
                    if tx.send(observe(&plan, clock.as_ref(), failed(&failed_at), &caches).await).await.is_err() { return }
                }
                _ = stop.changed() => {
                    if let Some(r) = running.take() { r.abort(); }
                    if let Some(r) = drilling.take() { r.abort(); }
                    // The aborted run's uploads are aborted too, before the daemon exits.
                    plan.storage.settle().await;
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

    #[test]
    fn a_run_that_wrote_no_manifest_fails_every_item_until_a_newer_run_does() {
        let day = 86_400;
        let at = |secs: i64| jiff::Timestamp::from_second(secs).unwrap();
        let manifests = vec![run(10 * day, &[("matrix", 1000, true), ("mas", 500, true)])];
        let mut got = samples(&plan(), &manifests);
        failed_attempt(&plan(), &manifests, &mut got, at(11 * day));
        let mut failed: Vec<String> = got
            .iter()
            .filter(|s| s.name == "backup_last_run_success")
            .map(|s| format!("{}={}", s.labels["database"], s.value))
            .collect();
        failed.sort();
        assert_eq!(failed, ["mas=0", "matrix=0"], "a refusing bucket fails every item");

        let mut got = samples(&plan(), &manifests);
        failed_attempt(&plan(), &manifests, &mut got, at(9 * day));
        assert!(
            got.iter().filter(|s| s.name == "backup_last_run_success").all(|s| s.value == 1.0),
            "a failure older than the newest manifest is history"
        );

        let mut none = Vec::new();
        failed_attempt(&plan(), &[], &mut none, at(day));
        assert!(
            none.iter().any(|s| s.name == "backup_last_run_success" && s.value == 0.0),
            "a first run into a refusing bucket still raises BackupFailed: {none:?}"
        );
    }
}
