//! Reading a backup back. Always: each stored file's size and SHA-256 against the manifest.
//! With an identity: decrypt and decompress every file to its end (age authenticates every
//! chunk, zstd checks its frame checksum), compare the size with the manifest, and ask
//! `pg_restore --list` for a dump's table of contents, or list a file set's tar. With
//! `--restore-test`: restore each dump into a scratch database, compare every table's exact
//! row count with the source database, and drop the scratch database again.

use super::manifest::{Item, ItemKind, Manifest};
use super::restore::{self, Identities};
use super::storage::Storage;
use super::{BackupPlan, pg, pipeline};
use serde::Serialize;
use std::process::Stdio;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The verdict on one item.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ItemReport {
    /// `service/name`.
    pub item: String,
    /// The stored file.
    pub file: String,
    /// What was checked and held.
    pub passed: Vec<String>,
    /// What did not hold; `None` when all did.
    pub problem: Option<String>,
    /// The restore test, when one ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_test: Option<RestoreTest>,
}

/// A restore test's result.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RestoreTest {
    /// The scratch database (dropped again).
    pub scratch_database: String,
    /// Tables compared.
    pub tables: usize,
    /// Rows in the restored copy.
    pub rows: i64,
    /// Tables whose counts differ: `schema.table: restored N, source M`.
    pub differences: Vec<String>,
}

/// The verdict on a run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    /// The run.
    pub id: String,
    /// Whether every item passed.
    pub ok: bool,
    /// Per item.
    pub items: Vec<ItemReport>,
}

/// Verifies `manifest`'s run.
pub(crate) async fn verify<S: Storage>(
    plan: &BackupPlan,
    storage: &S,
    manifest: &Manifest,
    identities: Option<&Identities>,
    restore_test: bool,
) -> Report {
    let mut items = Vec::new();
    for item in &manifest.items {
        let mut report = ItemReport {
            item: item.label(),
            file: format!("{}/{}", manifest.id, item.file),
            passed: Vec::new(),
            problem: None,
            restore_test: None,
        };
        if let Some(e) = &item.error {
            report.problem = Some(format!("the run did not store it: {e}"));
            items.push(report);
            continue;
        }
        if let Err(e) = restore::check_sum(storage, &manifest.id, item).await {
            report.problem = Some(e);
            items.push(report);
            continue;
        }
        report.passed.push(format!("sha256 and size ({} bytes)", item.stored_bytes));
        if let Some(ids) = identities {
            match read_back(plan, storage, &manifest.id, item, ids).await {
                Ok(passed) => report.passed.extend(passed),
                Err(e) => report.problem = Some(format!("{}: {e}", report.file)),
            }
            if restore_test && report.problem.is_none() && item.kind == ItemKind::Database {
                match test_restore(plan, storage, &manifest.id, item, ids).await {
                    Ok(t) => {
                        if !t.differences.is_empty() {
                            report.problem = Some(format!(
                                "restored row counts differ from the source (changed since the backup?): {}",
                                t.differences.join("; ")
                            ));
                        } else {
                            report
                                .passed
                                .push(format!("restore test: {} tables, {} rows as in the source", t.tables, t.rows));
                        }
                        report.restore_test = Some(t);
                    }
                    Err(e) => report.problem = Some(format!("restore test: {e}")),
                }
            }
        }
        items.push(report);
    }
    Report { id: manifest.id.clone(), ok: items.iter().all(|i| i.problem.is_none()), items }
}

/// Copies `input` to `sink` while counting; keeps reading to the end when the sink stops
/// taking data (a reader that has seen enough), so the whole stream is always checked.
async fn tee<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    mut input: R,
    mut sink: Option<W>,
    head: &mut Vec<u8>,
) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = input.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        if head.len() < 4096 {
            let take = n.min(4096 - head.len());
            head.extend_from_slice(&buf[..take]);
        }
        total += n as u64;
        if let Some(w) = &mut sink
            && w.write_all(&buf[..n]).await.is_err()
        {
            sink = None;
        }
    }
    if let Some(mut w) = sink {
        let _ = w.shutdown().await;
    }
    Ok(total)
}

/// Decrypts and decompresses an item to its end; what held.
async fn read_back<S: Storage>(
    plan: &BackupPlan,
    storage: &S,
    run: &str,
    item: &Item,
    identities: &Identities,
) -> Result<Vec<String>, String> {
    let key = format!("{run}/{}", item.file);
    let file = storage.open(&key).await.map_err(|e| e.to_string())?;
    let plain = pipeline::unseal(file, identities).await.map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut passed = Vec::new();
    let raw = match item.kind {
        ItemKind::Database => {
            let tool = plan.tools.pg_restore.display().to_string();
            let mut child = tokio::process::Command::new(&plan.tools.pg_restore)
                .arg("--list")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("cannot run {tool}: {e}"))?;
            let stdin = child.stdin.take();
            let out = child.stdout.take();
            let listing = tokio::spawn(async move {
                let mut text = Vec::new();
                if let Some(mut o) = out {
                    let _ = o.read_to_end(&mut text).await;
                }
                text
            });
            let raw = tee(plain, stdin, &mut head).await.map_err(|e| e.to_string())?;
            let output = child.wait_with_output().await.map_err(|e| format!("{tool} did not finish: {e}"))?;
            let toc = listing.await.unwrap_or_default();
            if !output.status.success() {
                return Err(format!(
                    "{tool} --list failed ({}): {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                ));
            }
            let entries =
                String::from_utf8_lossy(&toc).lines().filter(|l| !l.starts_with(';') && !l.trim().is_empty()).count();
            passed.push(format!("pg_restore --list: {entries} entries"));
            raw
        }
        ItemKind::Globals => {
            let raw = tee(plain, None::<tokio::io::Sink>, &mut head).await.map_err(|e| e.to_string())?;
            if !String::from_utf8_lossy(&head).contains("PostgreSQL database cluster dump") {
                return Err("decrypted, but it is not a pg_dumpall script".into());
            }
            passed.push("pg_dumpall script".into());
            raw
        }
        ItemKind::Files => {
            let (tar_in, tar_out) = tokio::io::duplex(256 * 1024);
            let bridge = tokio_util::io::SyncIoBridge::new(tar_out);
            let listing = tokio::task::spawn_blocking(move || super::files::list_tar(bridge));
            let raw = tee(plain, Some(tar_in), &mut head).await.map_err(|e| e.to_string())?;
            let names = listing.await.map_err(|e| format!("the listing task failed: {e}"))??;
            if item.entries.is_some_and(|n| n != names.len() as u64) {
                return Err(format!(
                    "the archive holds {} files, the manifest says {}",
                    names.len(),
                    item.entries.unwrap_or_default()
                ));
            }
            passed.push(format!("tar: {} files", names.len()));
            raw
        }
    };
    if raw != item.raw_bytes {
        return Err(format!("decrypted to {raw} bytes, the manifest says {}", item.raw_bytes));
    }
    passed.insert(0, format!("decrypted and decompressed ({raw} bytes)"));
    Ok(passed)
}

/// Restores into a scratch database, compares row counts with the source, drops it.
async fn test_restore<S: Storage>(
    plan: &BackupPlan,
    storage: &S,
    run: &str,
    item: &Item,
    identities: &Identities,
) -> Result<RestoreTest, String> {
    let source = restore::source(plan, item).map_err(|e| e.to_string())?;
    let safe: String = item
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .take(30)
        .collect();
    let scratch = format!("mxwarden_verify_{safe}_{}", std::process::id());
    restore::database(plan, storage, run, item, identities, &scratch, false, true).await.map_err(|e| e.to_string())?;
    let compared = async {
        let mut restored = pg::connect(&source.target, &scratch).await?;
        let copy = pg::row_counts(&mut restored).await;
        pg::close(restored).await;
        let mut original = pg::connect(&source.target, &item.name).await?;
        let now = pg::row_counts(&mut original).await;
        pg::close(original).await;
        Ok::<_, String>((copy?, now?))
    }
    .await;
    if let Ok(mut conn) = pg::connect(&source.target, &source.target.database).await {
        if let Err(e) = pg::drop(&mut conn, &scratch).await {
            tracing::warn!(database = %scratch, error = %e, "Scratch database left behind.");
        }
        pg::close(conn).await;
    }
    let (copy, now) = compared?;
    let mut differences = Vec::new();
    for table in copy.keys().chain(now.keys()).collect::<std::collections::BTreeSet<_>>() {
        let (a, b) = (copy.get(table), now.get(table));
        if a != b {
            let show = |v: Option<&i64>| v.map_or_else(|| "missing".to_string(), i64::to_string);
            differences.push(format!("{table}: restored {}, source {}", show(a), show(b)));
        }
    }
    Ok(RestoreTest { scratch_database: scratch, tables: copy.len(), rows: copy.values().sum(), differences })
}
