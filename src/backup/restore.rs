//! Putting a backup back: a database dump into a new database (created from `template0`;
//! an existing one is refused unless forced, then dropped first), restored by `pg_restore
//! --exit-on-error --single-transaction` from the decrypted stream, so a failed restore leaves
//! nothing half-done — the database it created is dropped again; and a file set unpacked into
//! an empty directory. Every stored file's checksum is checked before it is used. Also used
//! by `verify --restore-test`.

use super::manifest::{Item, ItemKind, Manifest};
use super::pipeline;
use super::storage::Storage;
use super::{BackupPlan, DbSource, pg};
use std::path::Path;
use std::process::Stdio;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Why a restore did not happen.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RestoreError {
    /// The request cannot be served as asked (unknown item, existing target without
    /// `--force`, …): nothing was changed.
    #[error("{0}")]
    Refused(String),
    /// The restore was tried and failed.
    #[error("{0}")]
    Failed(String),
}

/// Identities from a file.
pub(crate) type Identities = [Box<dyn age::Identity + Send + Sync>];

/// The item of `manifest` for database `db` (of `service`, when given).
pub(crate) fn find_database<'a>(
    manifest: &'a Manifest,
    db: &str,
    service: Option<&str>,
) -> Result<&'a Item, RestoreError> {
    let found: Vec<&Item> = manifest
        .items
        .iter()
        .filter(|i| i.kind == ItemKind::Database && i.name == db && service.is_none_or(|s| s == i.service))
        .collect();
    match found.as_slice() {
        [one] if one.ok() => Ok(one),
        [one] => Err(RestoreError::Refused(format!(
            "run {} did not store {}: {}",
            manifest.id,
            one.label(),
            one.error.as_deref().unwrap_or_default()
        ))),
        [] => {
            let dbs: Vec<String> =
                manifest.items.iter().filter(|i| i.kind == ItemKind::Database).map(Item::label).collect();
            Err(RestoreError::Refused(format!(
                "run {} has no dump of database `{db}`; it has: {}",
                manifest.id,
                if dbs.is_empty() { "none".to_string() } else { dbs.join(", ") }
            )))
        }
        many => {
            let services: Vec<&str> = many.iter().map(|i| i.service.as_str()).collect();
            Err(RestoreError::Refused(format!(
                "database `{db}` was dumped from several services ({}); name one with --service",
                services.join(", ")
            )))
        }
    }
}

/// The configured service an item came from.
pub(crate) fn source<'a>(plan: &'a BackupPlan, item: &Item) -> Result<&'a DbSource, RestoreError> {
    plan.sources.iter().find(|s| s.service == item.service).ok_or_else(|| {
        RestoreError::Refused(format!(
            "the dump is from postgres service `{}`, which is not in the config's backup any more",
            item.service
        ))
    })
}

/// Checks the stored file's size and SHA-256 against the manifest.
pub(crate) async fn check_sum<S: Storage>(storage: &S, run: &str, item: &Item) -> Result<(), String> {
    let key = format!("{run}/{}", item.file);
    let reader = storage.open(&key).await.map_err(|e| e.to_string())?;
    let (sha, size) = pipeline::hash(reader).await.map_err(|e| format!("cannot read {key}: {e}"))?;
    if size != item.stored_bytes {
        return Err(format!("{key}: {size} bytes, the manifest says {}: the file is damaged", item.stored_bytes));
    }
    if sha != item.sha256 {
        return Err(format!("{key}: SHA-256 mismatch (manifest {}, file {sha}): the file is damaged", item.sha256));
    }
    Ok(())
}

/// A libpq connection string naming just the database (the rest comes from the environment).
fn dbname_conninfo(db: &str) -> String {
    format!("dbname='{}'", db.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Streams `input` (a plain `pg_dump -Fc` archive) into `pg_restore` against database `into`.
pub(crate) async fn pg_restore<R: AsyncRead + Unpin>(
    plan: &BackupPlan,
    source: &DbSource,
    into: &str,
    mut input: R,
    no_owner: bool,
) -> Result<(), String> {
    let mut cmd = pg::command(&plan.tools.pg_restore, &source.target, into);
    cmd.args(["--exit-on-error", "--single-transaction", "-d", &dbname_conninfo(into)]);
    if no_owner {
        cmd.args(["--no-owner", "--no-privileges"]);
    }
    let tool = plan.tools.pg_restore.display().to_string();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {tool}: {e}"))?;
    let Some(mut stdin) = child.stdin.take() else { return Err(format!("{tool} has no stdin")) };
    let Some(mut stderr) = child.stderr.take() else { return Err(format!("{tool} has no stderr")) };
    let errors = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut buf).await;
        let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
        buf
    });
    let mut copied = tokio::io::copy(&mut input, &mut stdin).await;
    drop(stdin);
    if copied.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) {
        // pg_restore stopped reading (done, or failed: its status says which); read the rest
        // anyway, so a damaged stream is still noticed.
        copied = tokio::io::copy(&mut input, &mut tokio::io::sink()).await;
    }
    let status = child.wait().await.map_err(|e| format!("{tool} did not finish: {e}"))?;
    let stderr = String::from_utf8_lossy(&errors.await.unwrap_or_default()).trim().to_string();
    if !status.success() {
        let lines: Vec<&str> = stderr.lines().collect();
        return Err(format!("{tool} failed ({status}): {}", lines[lines.len().saturating_sub(5)..].join(" | ")));
    }
    copied.map_err(|e| format!("cannot feed {tool}: {e}"))?;
    Ok(())
}

/// Restores `item` of run `run` into a new database `into` on the item's server.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn database<S: Storage>(
    plan: &BackupPlan,
    storage: &S,
    run: &str,
    item: &Item,
    identities: &Identities,
    into: &str,
    force: bool,
    no_owner: bool,
) -> Result<(), RestoreError> {
    let source = source(plan, item)?;
    if into.is_empty() || into.len() > 63 {
        return Err(RestoreError::Refused(format!("`{into}` is not a database name (1 to 63 bytes)")));
    }
    check_sum(storage, run, item).await.map_err(RestoreError::Failed)?;
    let mut conn = pg::connect(&source.target, &source.target.database).await.map_err(RestoreError::Failed)?;
    let outcome = async {
        if pg::exists(&mut conn, into).await.map_err(RestoreError::Failed)? {
            if !force {
                return Err(RestoreError::Refused(format!(
                    "database {into} exists on {}; restore into a new name, or pass --force to drop and replace it",
                    source.service
                )));
            }
            pg::drop(&mut conn, into).await.map_err(RestoreError::Failed)?;
        }
        pg::create(&mut conn, into).await.map_err(RestoreError::Failed)?;
        let restored = async {
            let key = format!("{run}/{}", item.file);
            let file = storage.open(&key).await.map_err(|e| e.to_string())?;
            let plain = pipeline::unseal(file, identities).await.map_err(|e| format!("{key}: {e}"))?;
            pg_restore(plan, source, into, plain, no_owner).await
        }
        .await;
        if let Err(e) = restored {
            // Leave nothing half-restored behind.
            let _ = pg::drop(&mut conn, into).await;
            return Err(RestoreError::Failed(e));
        }
        Ok(())
    }
    .await;
    pg::close(conn).await;
    outcome
}

/// Unpacks file set `set` of `manifest` into `dir` (missing or empty, unless `force`; created
/// 0700 when missing). Unsafe entries are left out and listed in the result (see
/// `files::unpack_tar`); the caller reports them.
pub(crate) async fn files<S: Storage>(
    storage: &S,
    manifest: &Manifest,
    set: &str,
    identities: &Identities,
    dir: &Path,
    force: bool,
) -> Result<super::files::Unpacked, RestoreError> {
    let Some(item) = manifest.items.iter().find(|i| i.kind == ItemKind::Files && i.name == set) else {
        let sets: Vec<&str> =
            manifest.items.iter().filter(|i| i.kind == ItemKind::Files).map(|i| i.name.as_str()).collect();
        return Err(RestoreError::Refused(format!(
            "run {} has no file set `{set}`; it has: {}",
            manifest.id,
            if sets.is_empty() { "none".to_string() } else { sets.join(", ") }
        )));
    };
    if let Some(e) = &item.error {
        return Err(RestoreError::Refused(format!("run {} did not store file set {set}: {e}", manifest.id)));
    }
    let non_empty = std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(false);
    if non_empty && !force {
        return Err(RestoreError::Refused(format!(
            "{} is not empty; restore into a new directory, or pass --force to unpack over it",
            dir.display()
        )));
    }
    check_sum(storage, &manifest.id, item).await.map_err(RestoreError::Failed)?;
    crate::private_fs::create_dir_all(dir)
        .map_err(|e| RestoreError::Failed(format!("cannot create {}: {e}", dir.display())))?;
    let key = format!("{}/{}", manifest.id, item.file);
    let file = storage.open(&key).await.map_err(|e| RestoreError::Failed(e.to_string()))?;
    let mut plain =
        pipeline::unseal(file, identities).await.map_err(|e| RestoreError::Failed(format!("{key}: {e}")))?;
    let (mut tar_in, tar_out) = tokio::io::duplex(256 * 1024);
    let bridge = tokio_util::io::SyncIoBridge::new(tar_out);
    let target = dir.to_path_buf();
    let unpack = tokio::task::spawn_blocking(move || super::files::unpack_tar(bridge, &target));
    let copied = tokio::io::copy(&mut plain, &mut tar_in).await;
    let _ = tar_in.shutdown().await;
    drop(tar_in);
    let unpacked = unpack.await.map_err(|e| RestoreError::Failed(format!("the unpack task failed: {e}")))?;
    let n = unpacked.map_err(RestoreError::Failed)?;
    copied.map_err(|e| RestoreError::Failed(format!("{key}: {e}")))?;
    Ok(n)
}
