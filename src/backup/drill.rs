//! The restore drill: proof that the backups restore. For each database of the plan, the
//! newest good backup holding it is restored (checksum first, then `pg_restore` into a scratch
//! database `mxwarden_drill_…`, without owners), every table's exact row count is compared
//! with the count the manifest recorded in the dump's own snapshot, and the scratch database
//! is dropped again, whatever happened. The outcome is stored next to the run it tested
//! (`RUN/drill.json`, written like a manifest, so it lives and dies with the run), which is
//! where [`samples`] reads it back for the rules (`BackupDrillFailed`, `BackupDrillMissing`)
//! and the weekly digest. Run by the daemon on `backup.drill`'s cron schedule, and by
//! `mxwarden backup drill`.

use super::manifest::{self, ItemKind, Manifest};
use super::restore::{self, Identities};
use super::storage::{ObjectCache, Storage};
use super::{BackupPlan, pg};
use crate::model::{Labels, Sample};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The file of a drill's outcome inside the run it tested.
pub(crate) const DRILL: &str = "drill.json";

/// One database's drill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DrillDb {
    /// The postgres service.
    pub service: String,
    /// The database.
    pub database: String,
    /// The run restored.
    pub run: String,
    /// The scratch database (dropped again).
    pub scratch: String,
    /// Tables compared.
    pub tables: usize,
    /// Rows in the restored copy.
    pub rows: i64,
    /// Tables whose counts differ: `schema.table: restored N, at dump time M`.
    pub differences: Vec<String>,
    /// Why the drill of this database failed; `None` when it passed.
    pub problem: Option<String>,
    /// Seconds it took.
    pub duration_seconds: f64,
}

/// A whole drill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DrillReport {
    /// When it started.
    pub at: jiff::Timestamp,
    /// Every database passed (and there was at least one).
    pub ok: bool,
    /// Per database.
    pub databases: Vec<DrillDb>,
}

/// The scratch database's name for `db`.
fn scratch_name(db: &str) -> String {
    let safe: String =
        db.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).take(30).collect();
    format!("mxwarden_drill_{safe}_{}", std::process::id())
}

/// Compares restored counts with the manifest's.
pub(crate) fn compare(
    restored: &std::collections::BTreeMap<String, i64>,
    recorded: &std::collections::BTreeMap<String, i64>,
) -> Vec<String> {
    let show = |v: Option<&i64>| v.map_or_else(|| "missing".to_string(), i64::to_string);
    restored
        .keys()
        .chain(recorded.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|t| restored.get(*t) != recorded.get(*t))
        .map(|t| format!("{t}: restored {}, at dump time {}", show(restored.get(t)), show(recorded.get(t))))
        .collect()
}

/// Restores one item into a scratch database, counts, drops it.
async fn drill_one<S: Storage>(
    plan: &BackupPlan,
    storage: &S,
    m: &Manifest,
    item: &manifest::Item,
    identities: &Identities,
) -> DrillDb {
    let started = std::time::Instant::now();
    let scratch = scratch_name(&item.name);
    let mut out = DrillDb {
        service: item.service.clone(),
        database: item.name.clone(),
        run: m.id.clone(),
        scratch: scratch.clone(),
        tables: 0,
        rows: 0,
        differences: Vec::new(),
        problem: None,
        duration_seconds: 0.0,
    };
    let source = match restore::source(plan, item) {
        Ok(s) => s,
        Err(e) => {
            out.problem = Some(e.to_string());
            return out;
        }
    };
    let restored = restore::database(plan, storage, &m.id, item, identities, &scratch, true, true).await;
    let counted = match restored {
        Err(e) => Err(format!("restore: {e}")),
        Ok(()) => async {
            let mut conn = pg::connect(&source.target, &scratch).await?;
            let counts = pg::row_counts(&mut conn).await;
            pg::close(conn).await;
            counts
        }
        .await
        .map_err(|e| format!("counting the restored rows: {e}")),
    };
    if let Ok(mut conn) = pg::connect(&source.target, &source.target.database).await {
        if let Err(e) = pg::drop(&mut conn, &scratch).await {
            tracing::warn!(database = %scratch, error = %e, "Scratch database left behind.");
        }
        pg::close(conn).await;
    }
    match counted {
        Err(e) => out.problem = Some(e),
        Ok(counts) => {
            out.tables = counts.len();
            out.rows = counts.values().sum();
            match &item.row_counts {
                Some(recorded) => {
                    out.differences = compare(&counts, recorded);
                    if !out.differences.is_empty() {
                        out.problem = Some(format!(
                            "{} table(s) restored with other row counts than at dump time: {}",
                            out.differences.len(),
                            out.differences.join("; ")
                        ));
                    }
                }
                None => {
                    out.problem = Some(format!(
                        "run {} recorded no row counts for {} (taken by an older mxwarden, or counting failed): \
                         restored, but nothing to compare with",
                        m.id,
                        item.label()
                    ))
                }
            }
        }
    }
    out.duration_seconds = started.elapsed().as_secs_f64();
    out
}

/// Runs a drill now: the newest good backup of each database, restored and compared; writes
/// the outcome into each run tested.
pub(crate) async fn drill<S: Storage>(
    plan: &BackupPlan,
    storage: &S,
    identities: &Identities,
    now: jiff::Timestamp,
) -> Result<DrillReport, String> {
    plan.storage.abort_orphans().await;
    let manifests = manifest::manifests(storage).await.map_err(|e| e.to_string())?;
    // Newest first: the first good item of each (service, database) wins.
    let mut chosen: Vec<(&Manifest, &manifest::Item)> = Vec::new();
    for m in manifests.iter().rev() {
        for item in m.items.iter().filter(|i| i.kind == ItemKind::Database && i.ok()) {
            if plan.sources.iter().any(|s| s.service == item.service)
                && !chosen.iter().any(|(_, c)| c.service == item.service && c.name == item.name)
            {
                chosen.push((m, item));
            }
        }
    }
    if chosen.is_empty() {
        return Err(format!(
            "no good backup of any database in {}; take one with `mxwarden backup run`",
            storage.describe()
        ));
    }
    let mut databases = Vec::new();
    for (m, item) in &chosen {
        let d = drill_one(plan, storage, m, item, identities).await;
        match &d.problem {
            None => {
                tracing::info!(database = %item.label(), run = %m.id, tables = d.tables, rows = d.rows, "Restore drill passed.")
            }
            Some(p) => tracing::warn!(database = %item.label(), run = %m.id, problem = %p, "Restore drill failed."),
        }
        databases.push(d);
    }
    let report = DrillReport { at: now, ok: databases.iter().all(|d| d.problem.is_none()), databases };
    let runs: std::collections::BTreeSet<&str> = report.databases.iter().map(|d| d.run.as_str()).collect();
    for run in runs {
        let part = DrillReport {
            databases: report.databases.iter().filter(|d| d.run == run).cloned().collect(),
            ..report.clone()
        };
        let part = DrillReport { ok: part.databases.iter().all(|d| d.problem.is_none()), ..part };
        write(storage, run, &part).await.map_err(|e| format!("cannot record the drill in run {run}: {e}"))?;
    }
    Ok(report)
}

/// Stores a drill's outcome as `RUN/drill.json`.
async fn write<S: Storage>(storage: &S, run: &str, report: &DrillReport) -> Result<(), String> {
    let key = format!("{run}/{DRILL}");
    let text = serde_json::to_vec_pretty(report).map_err(|e| e.to_string())?;
    let mut w = storage.create(&key).await.map_err(|e| e.to_string())?;
    w.write_all(&text).await.map_err(|e| format!("cannot write {key}: {e}"))?;
    w.shutdown().await.map_err(|e| format!("cannot write {key}: {e}"))?;
    storage.commit(&key).await.map_err(|e| e.to_string())
}

/// Every drill outcome stored, oldest first (a run's own file holds its newest drill); only
/// those not in `cache` already are read.
pub(crate) async fn reports<S: Storage>(
    storage: &S,
    cache: Option<&ObjectCache<DrillReport>>,
) -> Result<Vec<DrillReport>, String> {
    let objects = storage.list().await.map_err(|e| e.to_string())?;
    if let Some(c) = cache {
        c.keep_only(&objects);
    }
    let mut out = Vec::new();
    for o in objects.iter().filter(|o| !o.partial && o.key.ends_with(&format!("/{DRILL}"))) {
        if let Some(d) = cache.and_then(|c| c.get(o)) {
            out.push(d);
            continue;
        }
        let mut r = storage.open(&o.key).await.map_err(|e| e.to_string())?;
        let mut text = Vec::new();
        // A drill report is small; a huge one is not ours.
        (&mut r).take(4 << 20).read_to_end(&mut text).await.map_err(|e| format!("cannot read {}: {e}", o.key))?;
        match serde_json::from_slice::<DrillReport>(&text) {
            Ok(d) => {
                if let Some(c) = cache {
                    c.put(o, d.clone());
                }
                out.push(d)
            }
            Err(e) => tracing::warn!(key = %o.key, error = %e, "Unreadable drill report skipped."),
        }
    }
    out.sort_by_key(|d| d.at);
    Ok(out)
}

/// The drill samples: `backup_drill_last_run_success` (1/0, the newest drill) and
/// `backup_drill_last_success_timestamp_seconds` (the newest drill that passed; without
/// one, the oldest backup's end, so that `BackupDrillMissing` counts from when there was
/// something to drill). Nothing when no drill is configured and none ever ran.
pub(crate) fn samples(plan: &BackupPlan, reports: &[DrillReport], manifests: &[Manifest]) -> Vec<Sample> {
    let mut out = Vec::new();
    let push = |out: &mut Vec<Sample>, name: &str, value: f64| {
        out.push(Sample { name: name.into(), labels: Labels::default(), value })
    };
    let newest = reports.iter().map(|r| r.at).max();
    if let Some(at) = newest {
        let ok = reports.iter().filter(|r| r.at == at).all(|r| r.ok);
        push(&mut out, "backup_drill_last_run_success", if ok { 1.0 } else { 0.0 });
    }
    let since = reports
        .iter()
        .filter(|r| r.ok)
        .map(|r| r.at)
        .max()
        .or_else(|| plan.drill.as_ref().and_then(|_| manifests.first().map(|m| m.finished_at)));
    if let Some(at) = since {
        push(&mut out, "backup_drill_last_success_timestamp_seconds", at.as_millisecond() as f64 / 1000.0);
    }
    out
}

/// Lines for the weekly digest: the drills that ran in `[from, to)` (ms) and the newest pass.
pub(crate) fn digest_lines(plan: &BackupPlan, reports: &[DrillReport], from: i64, to: i64) -> Vec<String> {
    let mut lines = Vec::new();
    for r in reports.iter().filter(|r| (from..to).contains(&r.at.as_millisecond())) {
        for d in &r.databases {
            lines.push(match &d.problem {
                None => format!(
                    "restore drill {}: {}/{} from run {} passed ({} tables, {} rows)",
                    r.at, d.service, d.database, d.run, d.tables, d.rows
                ),
                Some(p) => {
                    format!("restore drill {}: {}/{} from run {} FAILED: {p}", r.at, d.service, d.database, d.run)
                }
            });
        }
    }
    match reports.iter().filter(|r| r.ok).map(|r| r.at).max() {
        Some(at) => lines.push(format!("newest passing restore drill: {at}")),
        None if plan.drill.is_some() => lines.push("no restore drill has passed yet".into()),
        None => lines.push("no restore drill is scheduled (backup.drill); `mxwarden backup drill` runs one".into()),
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_compared_table_by_table() {
        let m = |pairs: &[(&str, i64)]| pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let cases: &[(&[(&str, i64)], &[(&str, i64)], &[&str], &str)] = &[
            (&[("public.a", 3)], &[("public.a", 3)], &[], "equal"),
            (&[("public.a", 2)], &[("public.a", 3)], &["public.a: restored 2, at dump time 3"], "a row lost"),
            (&[], &[("public.a", 0)], &["public.a: restored missing, at dump time 0"], "a table lost"),
            (&[("x.b", 1)], &[], &["x.b: restored 1, at dump time missing"], "a table not in the manifest"),
        ];
        for (restored, recorded, want, why) in cases {
            assert_eq!(compare(&m(restored), &m(recorded)), *want, "{why}");
        }
    }

    #[test]
    fn the_newest_drill_decides_success_and_the_newest_pass_the_timestamp() {
        let plan = crate::backup::schedule::tests::plan();
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let report = |t: &str, ok: bool| DrillReport { at: at(t), ok, databases: Vec::new() };
        let reports = [report("2026-01-01T04:00:00Z", true), report("2026-02-01T04:00:00Z", false)];
        let s = samples(&plan, &reports, &[]);
        let get = |n: &str| s.iter().find(|x| x.name == n).map(|x| x.value);
        assert_eq!(get("backup_drill_last_run_success"), Some(0.0), "the newest failed");
        assert_eq!(
            get("backup_drill_last_success_timestamp_seconds"),
            Some(at("2026-01-01T04:00:00Z").as_second() as f64)
        );
        assert!(samples(&plan, &[], &[]).is_empty(), "no drill configured, none ran: nothing");
    }
}
