//! The manifest of one run (`RUN/manifest.json`): what was stored, with sizes, SHA-256 of
//! the stored files, the server's and `pg_dump`'s versions and the time taken. It is written
//! last and committed atomically, so a run without one is unfinished (or was killed) and is
//! never listed. It is not encrypted: it names databases and file sets, never their content.
//! Read by `list`, `verify`, `restore`, `prune`, the scheduler's samples and the digest.

use super::storage::{Object, ObjectCache, Storage, StorageError};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The manifest's file name inside a run.
pub(crate) const MANIFEST: &str = "manifest.json";

/// The format version written.
pub(crate) const FORMAT: u32 = 1;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RunStatus {
    /// Every item was stored.
    Ok,
    /// At least one item failed (the others were stored and can be restored).
    Failed,
}

/// What kind of thing an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ItemKind {
    /// A `pg_dump -Fc` of one database.
    Database,
    /// `pg_dumpall --globals-only` of one server (SQL).
    Globals,
    /// A tar of a file set.
    Files,
}

/// One stored (or failed) item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Item {
    /// What it is.
    pub kind: ItemKind,
    /// The postgres service, or `files` for a file set.
    pub service: String,
    /// The database, `(globals)`, or the file set's name.
    pub name: String,
    /// The stored file, inside the run.
    pub file: String,
    /// Bytes stored (compressed and encrypted).
    pub stored_bytes: u64,
    /// SHA-256 of the stored file, hex.
    pub sha256: String,
    /// Bytes before compression (the dump or the tar).
    pub raw_bytes: u64,
    /// Seconds this item took.
    pub duration_seconds: f64,
    /// The server's version (`server_version`), for database items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// `pg_dump --version` (or `pg_dumpall`), for database items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_version: Option<String>,
    /// Files in the archive, for file sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<u64>,
    /// Exact rows per table (`schema.table`) in the dump's snapshot, for database items:
    /// what the restore drill compares a restored copy with. Absent when they could not be
    /// counted (the dump is still good).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_counts: Option<std::collections::BTreeMap<String, i64>>,
    /// Why the item failed; `None` when it was stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Item {
    /// The item was stored.
    pub(crate) fn ok(&self) -> bool {
        self.error.is_none()
    }

    /// `service/name`, for messages.
    pub(crate) fn label(&self) -> String {
        format!("{}/{}", self.service, self.name)
    }
}

/// A run's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    /// Format version.
    pub format: u32,
    /// The run's id (its directory): the start time, `20261128T020000Z`.
    pub id: String,
    /// How it ended.
    pub status: RunStatus,
    /// `full`, or `database NAME` for `backup run --db NAME`.
    pub scope: String,
    /// Start.
    pub started_at: jiff::Timestamp,
    /// End.
    pub finished_at: jiff::Timestamp,
    /// Seconds from start to end.
    pub duration_seconds: f64,
    /// The mxwarden that wrote it.
    pub mxwarden_version: String,
    /// zstd level used.
    pub zstd_level: i32,
    /// age recipients the files are encrypted to.
    pub recipients: Vec<String>,
    /// The items.
    pub items: Vec<Item>,
}

impl Manifest {
    /// Sum of the stored bytes.
    pub(crate) fn stored_bytes(&self) -> u64 {
        self.items.iter().map(|i| i.stored_bytes).sum()
    }

    /// A full run that stored every item: what retention counts.
    pub(crate) fn complete(&self) -> bool {
        self.status == RunStatus::Ok && self.scope == "full"
    }
}

/// Writes the manifest atomically: the last step of a run.
pub(crate) async fn write<S: Storage>(storage: &S, manifest: &Manifest) -> Result<(), StorageError> {
    let key = format!("{}/{MANIFEST}", manifest.id);
    let text = serde_json::to_vec_pretty(manifest).map_err(|e| StorageError::Io {
        what: "cannot encode the manifest".into(),
        source: std::io::Error::other(e),
    })?;
    let mut w = storage.create(&key).await?;
    let io = |source| StorageError::Io { what: format!("cannot write {key}"), source };
    w.write_all(&text).await.map_err(io)?;
    w.shutdown().await.map_err(|source| StorageError::Io { what: format!("cannot write {key}"), source })?;
    storage.commit(&key).await
}

/// A run in storage: its manifest, or why it has none that can be read.
#[derive(Debug, Clone)]
pub(crate) enum Run {
    /// A finished run.
    Done(Manifest),
    /// A run directory without a committed manifest: still running, or killed.
    Unfinished {
        /// The run id.
        id: String,
    },
    /// A manifest that cannot be read.
    Unreadable {
        /// The run id.
        id: String,
        /// Why.
        error: String,
    },
}

impl Run {
    /// The run's id.
    pub(crate) fn id(&self) -> &str {
        match self {
            Self::Done(m) => &m.id,
            Self::Unfinished { id, .. } | Self::Unreadable { id, .. } => id,
        }
    }
}

/// Every run in storage, oldest first (ids sort by time).
pub(crate) async fn runs<S: Storage>(storage: &S) -> Result<Vec<Run>, StorageError> {
    runs_cached(storage, None).await
}

/// [`runs`], reading only the manifests that are not in `cache` already.
pub(crate) async fn runs_cached<S: Storage>(
    storage: &S,
    cache: Option<&ObjectCache<Manifest>>,
) -> Result<Vec<Run>, StorageError> {
    let objects = storage.list().await?;
    if let Some(c) = cache {
        c.keep_only(&objects);
    }
    let mut by_run: std::collections::BTreeMap<String, Vec<Object>> = Default::default();
    for o in objects {
        let run = o.key.split('/').next().unwrap_or_default().to_string();
        by_run.entry(run).or_default().push(o);
    }
    let mut runs = Vec::new();
    for (id, objects) in by_run {
        let Some(manifest) = objects.iter().find(|o| !o.partial && o.key.ends_with(&format!("/{MANIFEST}"))) else {
            runs.push(Run::Unfinished { id });
            continue;
        };
        if let Some(m) = cache.and_then(|c| c.get(manifest)) {
            runs.push(Run::Done(m));
            continue;
        }
        match read(storage, &id).await {
            Ok(m) => {
                if let Some(c) = cache {
                    c.put(manifest, m.clone());
                }
                runs.push(Run::Done(m))
            }
            Err(error) => runs.push(Run::Unreadable { id, error }),
        }
    }
    Ok(runs)
}

/// The finished runs, oldest first.
pub(crate) async fn manifests<S: Storage>(storage: &S) -> Result<Vec<Manifest>, StorageError> {
    manifests_cached(storage, None).await
}

/// [`manifests`] through a cache (see [`runs_cached`]).
pub(crate) async fn manifests_cached<S: Storage>(
    storage: &S,
    cache: Option<&ObjectCache<Manifest>>,
) -> Result<Vec<Manifest>, StorageError> {
    Ok(runs_cached(storage, cache)
        .await?
        .into_iter()
        .filter_map(|r| match r {
            Run::Done(m) => Some(m),
            _ => None,
        })
        .collect())
}

/// Reads one run's manifest.
pub(crate) async fn read<S: Storage>(storage: &S, id: &str) -> Result<Manifest, String> {
    let key = format!("{id}/{MANIFEST}");
    let mut r = storage.open(&key).await.map_err(|e| e.to_string())?;
    let mut text = Vec::new();
    // A manifest is small; a huge one is not ours.
    (&mut r).take(16 << 20).read_to_end(&mut text).await.map_err(|e| format!("cannot read {key}: {e}"))?;
    let m: Manifest = serde_json::from_slice(&text).map_err(|e| format!("{key} is not a manifest: {e}"))?;
    if m.id != id {
        return Err(format!("{key} names run {}, not {id}", m.id));
    }
    Ok(m)
}
